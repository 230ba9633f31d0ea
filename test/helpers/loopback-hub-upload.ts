/**
 * The write side of the loopback Hub, as huggingface_hub (Python) and @huggingface/hub send it:
 *   POST /api/repos/create                         {name, organization, type, private | visibility}
 *   POST /api/models/{id}/branch/{branch}          {startingPoint?}
 *   POST /api/models/{id}/preupload/{rev}          {files: [{path, size, sample}]} → uploadMode lfs | regular
 *   POST /{id}.git/info/lfs/objects/batch          git-lfs batch API: upload actions for objects not yet stored
 *   PUT  /lfs-upload/{oid}                          the object bytes (sha256 and size checked), POST /lfs-verify/{oid}
 *   POST /api/models/{id}/commit/{rev}             NDJSON: header, file (base64), lfsFile, deletedFile, deletedFolder
 * Writes need a valid token whose namespace (`namespaces`) owns the repo. An upload only lands once its whole body
 * arrived and hashed right, so a client killed mid-upload leaves nothing half-stored.
 */
import { createHash } from "node:crypto";
import type { HubFile, LoopbackHub } from "./loopback-hub.ts";

export interface LoggedCommit {
  repo: string;
  branch: string;
  summary: string;
  lines: Record<string, unknown>[];
}

function json(status: number, body: unknown, headers: Record<string, string> = {}): Response {
  return Response.json(body, { status, headers });
}

function fail(status: number, message: string, code?: string): Response {
  const headers: Record<string, string> = { "X-Error-Message": message };
  if (code) headers["X-Error-Code"] = code;
  return json(status, { error: message }, headers);
}

export class HubUploads {
  /** LFS objects by sha256. */
  readonly lfs = new Map<string, Uint8Array>();
  /** Bytes received so far of uploads in flight (tests wait on this to interrupt one). */
  readonly receiving = new Map<string, number>();
  /** Token → the user namespace it may write. */
  readonly namespaces = new Map<string, string>();
  readonly commits: LoggedCommit[] = [];
  /** Read upload bodies slowly (backpressure), so a test can kill the client mid-upload. */
  throttle: { delayMs: number } | null = null;

  constructor(private readonly hub: LoopbackHub) {}

  private writer(req: Request, repoId: string): string | Response {
    const who = this.hub.callerOf(req);
    if (who === undefined) return fail(401, "You must be authenticated to write");
    if (who === null) return fail(401, "Invalid credentials in Authorization header");
    const ns = this.namespaces.get(who);
    if (ns === undefined || repoId.split("/")[0] !== ns) return fail(403, `You don't have the rights to write to ${repoId}`);
    return who;
  }

  async handle(req: Request, url: URL, segs: string[]): Promise<Response | null> {
    if (req.method === "POST" && segs.join("/") === "api/repos/create") return this.create(req);
    if (req.method === "PUT" && segs[0] === "lfs-upload" && segs.length === 2) return this.put(req, segs[1]!);
    if (req.method === "POST" && segs[0] === "lfs-verify" && segs.length === 2) return this.lfs.has(segs[1]!) ? json(200, {}) : fail(404, "Object not found");
    const git = segs.findIndex((s) => s.endsWith(".git"));
    if (req.method === "POST" && git >= 0 && segs.slice(git + 1).join("/") === "info/lfs/objects/batch") {
      return this.batch(req, url, [...segs.slice(0, git), segs[git]!.slice(0, -4)].join("/"));
    }
    if (req.method === "POST" && segs[0] === "api" && segs[1] === "models") {
      const rest = segs.slice(2);
      const kw = rest.findIndex((s, i) => i > 0 && ["preupload", "commit", "branch"].includes(s));
      if (kw < 0) return null;
      const id = rest.slice(0, kw).join("/");
      const rev = rest.slice(kw + 1).join("/") || "main";
      if (!this.hub.repos.has(id)) return fail(404, "Repository not found", "RepoNotFound");
      const w = this.writer(req, id);
      if (w instanceof Response) return w;
      if (rest[kw] === "preupload") return this.preupload(req, id, rev);
      if (rest[kw] === "branch") return this.branch(req, id, rev);
      return this.commit(req, url, id, rev);
    }
    return null;
  }

  private async create(req: Request): Promise<Response> {
    const body = (await req.json()) as { name?: string; organization?: string; type?: string; private?: boolean; visibility?: string };
    const who = this.hub.callerOf(req);
    if (!who) return fail(401, "You must be authenticated to create a repo");
    const ns = body.organization ?? this.namespaces.get(who);
    const id = `${ns}/${body.name}`;
    const w = this.writer(req, id);
    if (w instanceof Response) return w;
    if ((body.type ?? "model") !== "model") return fail(400, "loopback hub: model repos only");
    if (this.hub.repos.has(id)) return fail(409, "You already created this model repo");
    const priv = body.private === true || body.visibility === "private";
    // a new Hub repo starts with one commit holding .gitattributes
    await this.hub.addRepo(id, [{ path: ".gitattributes", content: "*.safetensors filter=lfs diff=lfs merge=lfs -text\n", lfs: false }], { private: priv });
    this.hub.grant(id, who);
    return json(200, { url: `${this.hub.url}/${id}`, name: id, id: `id-${id}` });
  }

  private async branch(req: Request, id: string, branch: string): Promise<Response> {
    const body = (await req.json().catch(() => ({}))) as { startingPoint?: string };
    const repo = this.hub.repos.get(id)!;
    if (repo.refs.has(branch)) return fail(409, `Reference already exists: refs/heads/${branch}`);
    const from = this.hub.commitOf(id, body.startingPoint ?? "main");
    if (!from) return fail(404, `Invalid rev id: ${body.startingPoint}`, "RevisionNotFound");
    repo.refs.set(branch, from.sha);
    return json(200, {});
  }

  private async preupload(req: Request, id: string, rev: string): Promise<Response> {
    if (!this.hub.commitOf(id, rev)) return fail(404, `Invalid rev id: ${rev}`, "RevisionNotFound");
    const body = (await req.json()) as { files?: { path: string; size: number; sample: string }[] };
    if (!Array.isArray(body.files)) return fail(400, "files: expected a list");
    const files = body.files.map((f) => ({
      path: f.path,
      // the Hub's rule: big files and binary weights go through LFS
      uploadMode: f.size >= 10_000 || /\.(safetensors|bin|gguf|npz|pt)$/.test(f.path) ? "lfs" : "regular",
      shouldIgnore: false,
    }));
    return json(200, { files, commitOid: this.hub.commitOf(id, rev)!.sha });
  }

  private async batch(req: Request, url: URL, id: string): Promise<Response> {
    if (!this.hub.repos.has(id)) return fail(404, "Repository not found", "RepoNotFound");
    const w = this.writer(req, id);
    if (w instanceof Response) return w;
    const body = (await req.json()) as { operation?: string; objects?: { oid: string; size: number }[]; transfers?: string[] };
    if (body.operation !== "upload" || !Array.isArray(body.objects)) return fail(422, "batch: upload operation with objects expected");
    const objects = body.objects.map((o) =>
      this.lfs.has(o.oid)
        ? { oid: o.oid, size: o.size }
        : {
            oid: o.oid,
            size: o.size,
            authenticated: true,
            actions: {
              upload: { href: `${url.origin}/lfs-upload/${o.oid}?size=${o.size}` },
              verify: { href: `${url.origin}/lfs-verify/${o.oid}` },
            },
          },
    );
    return json(200, { transfer: "basic", objects, hash_algo: "sha256" }, { "Content-Type": "application/vnd.git-lfs+json" });
  }

  private async put(req: Request, oid: string): Promise<Response> {
    const want = Number(new URL(req.url).searchParams.get("size"));
    const parts: Uint8Array[] = [];
    let got = 0;
    this.receiving.set(oid, 0);
    try {
      const reader = req.body!.getReader();
      for (;;) {
        const { done, value } = await reader.read();
        if (done) break;
        parts.push(value);
        got += value.length;
        this.receiving.set(oid, got);
        if (this.throttle) await Bun.sleep(this.throttle.delayMs);
      }
    } catch {
      return fail(400, "upload interrupted");
    } finally {
      this.receiving.delete(oid);
    }
    const bytes = Buffer.concat(parts);
    if (bytes.length !== want) return fail(400, `size mismatch: got ${bytes.length}, expected ${want}`);
    if (createHash("sha256").update(bytes).digest("hex") !== oid) return fail(400, "sha256 mismatch");
    this.lfs.set(oid, new Uint8Array(bytes));
    return new Response(null, { status: 200, headers: { ETag: `"${oid}"` } });
  }

  private async commit(req: Request, url: URL, id: string, branch: string): Promise<Response> {
    const base = this.hub.commitOf(id, branch);
    if (!base) return fail(404, `Invalid rev id: ${branch}`, "RevisionNotFound");
    const lines = (await req.text()).split("\n").filter((l) => l.trim() !== "").map((l) => JSON.parse(l) as { key: string; value: Record<string, unknown> });
    const header = lines.find((l) => l.key === "header")?.value ?? {};
    const files = new Map<string, HubFile>();
    for (const f of base.files.values()) files.set(f.path, { path: f.path, content: await this.hub.storedBytes(f), lfs: f.lfs });
    for (const { key, value } of lines) {
      const path = String(value.path ?? "");
      if (key === "file") files.set(path, { path, content: Buffer.from(String(value.content), value.encoding === "base64" ? "base64" : "utf8"), lfs: false });
      else if (key === "lfsFile") {
        const bytes = this.lfs.get(String(value.oid));
        if (!bytes) return fail(400, `LFS object ${value.oid} for ${path} was never uploaded`);
        files.set(path, { path, content: bytes, lfs: true });
      } else if (key === "deletedFile") files.delete(path);
      else if (key === "deletedFolder") {
        for (const p of [...files.keys()]) if (p.startsWith(`${path.replace(/\/$/, "")}/`)) files.delete(p);
      } else if (key !== "header") return fail(400, `unknown commit line '${key}'`);
    }
    const sha = await this.hub.commit(id, [...files.values()], branch);
    this.commits.push({ repo: id, branch, summary: String(header.summary ?? ""), lines: lines.map((l) => ({ key: l.key, path: l.value.path })) });
    return json(200, { success: true, commitOid: sha, commitUrl: `${url.origin}/${id}/commit/${sha}`, commitMessage: header.summary ?? "" });
  }
}
