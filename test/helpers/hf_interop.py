"""Drive Python huggingface_hub against a cache and a loopback Hub; prints one JSON object.

  scan <cache_dir>                     scan_cache_dir(): repos, revisions, files, sizes, warnings
  download <repo_id> <cache_dir>       snapshot_download() from HF_ENDPOINT into cache_dir
  offline <repo_id> <cache_dir>        snapshot_download() with HF_HUB_OFFLINE (must find a complete snapshot)
"""
import json
import sys
import warnings


def main() -> None:
    cmd = sys.argv[1]
    if cmd == "scan":
        from huggingface_hub import scan_cache_dir

        info = scan_cache_dir(sys.argv[2])
        out = {
            "warnings": [str(w) for w in info.warnings],
            "repos": [
                {
                    "repo_id": r.repo_id,
                    "repo_type": r.repo_type,
                    "nb_files": r.nb_files,
                    "size_on_disk": r.size_on_disk,
                    "refs": sorted(r.refs),
                    "revisions": [
                        {
                            "commit_hash": rev.commit_hash,
                            "refs": sorted(rev.refs),
                            "files": sorted(
                                [{"name": str(f.file_path.relative_to(rev.snapshot_path)), "size": f.size_on_disk, "blob": f.blob_path.name} for f in rev.files],
                                key=lambda x: x["name"],
                            ),
                        }
                        for rev in r.revisions
                    ],
                }
                for r in info.repos
            ],
        }
    elif cmd in ("download", "offline"):
        from huggingface_hub import snapshot_download

        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            path = snapshot_download(repo_id=sys.argv[2], cache_dir=sys.argv[3], local_files_only=(cmd == "offline"))
        out = {"path": path, "warnings": [str(w.message) for w in caught]}
    else:
        raise SystemExit(f"unknown command {cmd}")
    print(json.dumps(out))


if __name__ == "__main__":
    main()
