"""Reference side of bench/gemm.ts: torch CPU float32 x @ w.T, GFLOP/s (wall and per CPU-second) per shape.

  python bench/gemm_ref.py <threads> <M,K,N>...    prints one JSON object {"M,K,N": [gflops, gflops_per_cpu_s]}
"""
import json, sys, time
import torch

torch.set_num_threads(int(sys.argv[1]))
out = {}
with torch.inference_mode():
    for spec in sys.argv[2:]:
        M, K, N = (int(v) for v in spec.split(","))
        x, w = torch.randn(M, K), torch.randn(N, K)
        torch.nn.functional.linear(x, w)  # warm-up
        flop = 2.0 * M * N * K
        reps = max(1, int(0.25e9 * 2 / flop))  # ~0.25 s at 2 GFLOP/s... a few tenths at real speeds
        t0, c0 = time.perf_counter(), time.process_time()
        for _ in range(reps):
            torch.nn.functional.linear(x, w)
        out[spec] = [reps * flop / (time.perf_counter() - t0) / 1e9, reps * flop / (time.process_time() - c0) / 1e9]
print(json.dumps(out))
