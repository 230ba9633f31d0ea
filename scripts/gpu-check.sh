#!/usr/bin/env bash
# One GPU check for a lent CUDA (or Metal) machine, in the order a short device lease allows: install the GPU
# build, doctor, `npm run test:gpu`, then the benchmark vs node-llama-cpp. Logs land in $OUT (the device tool's
# return folder) or .cache/gpu-check. Stops at the first failing step; the benchmark is skipped with --no-bench.
# On a machine without network, stage the wheels first: PIP_NO_INDEX=1 PIP_FIND_LINKS=<dir with mlx-cuda-1x and
# the nvidia-* wheels> (pip reads both from the environment), or point MLX_DIR at an installed mlx-cuda.
set -euo pipefail
cd "$(dirname "$0")/.."
out="${OUT:-.cache/gpu-check}"
mkdir -p "$out"
bun=./node_modules/.bin/bun
step() { local name=$1; shift; echo "== $name: $*"; "$@" 2>&1 | tee "$out/$name.log"; }
gpu=1
step nvidia-smi nvidia-smi || { [[ "$(uname)" == Darwin ]] || gpu=0; echo "(no nvidia-smi)"; }
step install "$bun" scripts/install-mlx.ts
cp .mlx/status.json "$out/status.json"
if grep -q '"backend": "cpu"' .mlx/status.json; then
  echo "gpu-check: the installer chose the CPU build ($(grep backendReason .mlx/status.json)); see $out/install.log"
  [[ $gpu == 1 ]] && exit 1
fi
step doctor bin/mlxk-launcher.sh doctor
step version bin/mlxk-launcher.sh --version --json
step test-gpu "$bun" test test/gpu --timeout 300000
# a GPU machine must run them all: a skip there means the GPU was not used
if [[ $gpu == 1 ]] && grep -qE '^ *[1-9][0-9]* skip' "$out/test-gpu.log"; then echo "gpu-check: GPU tests were skipped on a GPU machine"; exit 1; fi
if [[ "${1:-}" != "--no-bench" ]]; then
  [[ -d .cache/llama-ref/node_modules/node-llama-cpp ]] || npm install --prefix .cache/llama-ref node-llama-cpp@3.22.1
  step bench "$bun" bench/gpu.ts --rounds 2 --prompt 512 --gen 128
fi
