#!/bin/sh
# Install the mlxk release archive for this machine: picks mlxk-<version>-<os>-<arch>.tar.gz, checks it against
# SHA256SUMS, unpacks it into $MLXK_INSTALL_DIR (default ~/.local/lib/mlxk) and links mlxk into $MLXK_BIN_DIR
# (default ~/.local/bin). Usage: curl -fsSL <release>/install.sh | sh   (MLXK_VERSION, MLXK_RELEASE_BASE override)
set -eu
version=${MLXK_VERSION:-@VERSION@}
base=${MLXK_RELEASE_BASE:-@RELEASE_BASE@}
dest=${MLXK_INSTALL_DIR:-$HOME/.local/lib/mlxk}
bindir=${MLXK_BIN_DIR:-$HOME/.local/bin}

die() { echo "mlxk install: $*" >&2; exit 1; }
case $(uname -s) in Linux) os=linux ;; Darwin) os=darwin ;; *) die "no mlxk build for $(uname -s) (MLX runs on Linux and macOS)" ;; esac
case $(uname -m) in x86_64 | amd64) arch=x64 ;; aarch64 | arm64) arch=arm64 ;; *) die "no mlxk build for $(uname -m)" ;; esac
[ "$os-$arch" = darwin-x64 ] && die "MLX needs Apple silicon on macOS (no darwin-x64 build)"
name="mlxk-$version-$os-$arch"

command -v curl >/dev/null 2>&1 || die "curl is needed"
if command -v sha256sum >/dev/null 2>&1; then sum() { sha256sum "$1" | cut -d' ' -f1; }
elif command -v shasum >/dev/null 2>&1; then sum() { shasum -a 256 "$1" | cut -d' ' -f1; }
else die "sha256sum or shasum is needed to check the download"; fi

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT INT TERM
echo "mlxk install: fetching $name.tar.gz from $base" >&2
curl -fsSL "$base/SHA256SUMS" -o "$tmp/SHA256SUMS" || die "cannot fetch $base/SHA256SUMS"
curl -fL --progress-bar "$base/$name.tar.gz" -o "$tmp/$name.tar.gz" || die "cannot fetch $base/$name.tar.gz"
want=$(awk -v f="$name.tar.gz" '$2 == f { print $1 }' "$tmp/SHA256SUMS")
[ -n "$want" ] || die "$name.tar.gz is not listed in SHA256SUMS"
got=$(sum "$tmp/$name.tar.gz")
[ "$want" = "$got" ] || die "sha256 mismatch for $name.tar.gz: expected $want, got $got"

mkdir -p "$dest" "$bindir"
tar -xzf "$tmp/$name.tar.gz" -C "$tmp"
rm -rf "$dest/$name"
mv "$tmp/$name" "$dest/$name"
ln -sfn "$dest/$name/mlxk" "$bindir/mlxk"
ln -sfn "$dest/$name/mlxk" "$bindir/mlxk-json"
echo "mlxk install: $("$bindir/mlxk" --version) in $dest/$name, linked as $bindir/mlxk" >&2
case ":$PATH:" in *":$bindir:"*) ;; *) echo "mlxk install: add $bindir to your PATH" >&2 ;; esac
