#!/bin/sh
# Builds the kernel pool + qmm stress test (qmm's many-row problems run through qgemm.cpp, hence the K-quant files) with ThreadSanitizer and runs it (no MLX needed):
#   sh test/kernels/native/tsan.sh [reps]
# Exit status 0 = no data race reported and bit-identical results.
set -eu
here=$(cd "$(dirname "$0")" && pwd)
src="$here/../../../mlx-c/src/kernels"
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
${CXX:-g++} -std=c++20 -O1 -g -fsanitize=thread -I"$src" "$here/pool-stress.cpp" "$src/qmm.cpp" "$src/qmm_avx512.cpp" "$src/pool.cpp" \
  "$src/qgemm.cpp" "$src/gemm_packed.cpp" "$src/kquant.cpp" "$src/kquant512.cpp" "$src/kquant_f32.cpp" "$src/kquant_run.cpp" "$src/kqgemm8.cpp" "$src/gemm512.cpp" -o "$out/pool-stress" -lpthread
TSAN_OPTIONS="halt_on_error=1 exitcode=66" "$out/pool-stress" "${1:-100}"
