#!/bin/sh
# The package's `mlxk` (and `mlxk-json`) command: finds a Bun to run bin/mlxk with, so the package works under
# npx, `npm i -g` (where no `bun` is on PATH) and bunx alike. Prefers the Bun this package pins (the
# @oven/bun-<os>-<arch> binary installed beside it, or where bun's postinstall moved it), then PATH.
self=$0
while [ -L "$self" ]; do
  link=$(readlink "$self")
  case $link in /*) self=$link ;; *) self=$(dirname "$self")/$link ;; esac
done
pkg=$(cd "$(dirname "$self")/.." && pwd -P)
entry="$pkg/bin/mlxk"
# `--postinstall` (package.json): the install-time fast path. npm may run it before (or without) bun's own
# postinstall, so it must not need that, and it never fails the install: without a Bun, run/server set up on first use.
postinstall=""
if [ "${1:-}" = "--postinstall" ]; then
  shift
  entry="$pkg/scripts/install-mlx.ts"
  postinstall=1
fi
case $(uname -s) in Darwin) os=darwin ;; *) os=linux ;; esac
case $(uname -m) in x86_64 | amd64) arch=x64 ;; *) arch=aarch64 ;; esac
for base in "$pkg/node_modules" "$pkg/.." "$pkg/node_modules/bun/.." "$pkg/../bun/.."; do
  [ -d "$base" ] || continue
  base=$(cd "$base" && pwd -P)
  for v in "" -baseline -musl; do
    b="$base/@oven/bun-$os-$arch$v/bin/bun"
    [ -x "$b" ] && exec "$b" "$entry" "$@"
  done
  # npm runs bun's postinstall, which moves that binary over the 450-byte placeholder bun/bin/bun.exe
  b="$base/bun/bin/bun.exe"
  [ -x "$b" ] && [ "$(head -c 4 "$b")" != "echo" ] && exec "$b" "$entry" "$@"
done
if command -v bun >/dev/null 2>&1; then exec bun "$entry" "$@"; fi
[ -n "$postinstall" ] && exit 0
echo "mlxk: Bun not found (expected the bun package installed beside mlxk, or bun on PATH: https://bun.sh)" >&2
exit 127
