// Reference timings for bench/mlx-ops.ts: the same MLX ops driven directly from C++ (no FFI),
// built by the bench script against the same libmlx. Prints one JSON object per line.
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <vector>

#include "mlx/mlx.h"

using namespace mlx::core;
using clk = std::chrono::steady_clock;

static double since_ns(clk::time_point t0) {
  return std::chrono::duration<double, std::nano>(clk::now() - t0).count();
}

static double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v[v.size() / 2];
}

int main() {
  auto a = random::normal({64}, float32, 0, 1, random::key(1));
  auto b = random::normal({64}, float32, 0, 1, random::key(2));
  eval({a, b});

  // Graph-node creation + release of one op (what an FFI call wraps), no evaluation.
  const int n = 200000;
  std::vector<double> reps;
  for (int r = 0; r < 5; r++) {
    auto t0 = clk::now();
    for (int i = 0; i < n; i++) {
      array c = add(a, b);
    }
    reps.push_back(since_ns(t0) / n);
  }
  std::printf("{\"name\":\"add_graph\",\"ns\":%.1f}\n", median(reps));

  // A chain of 1000 dependent adds evaluated once: per-op build + schedule + run.
  reps.clear();
  for (int r = 0; r < 7; r++) {
    auto t0 = clk::now();
    array x = a;
    for (int i = 0; i < 1000; i++) x = add(x, b);
    eval({x});
    reps.push_back(since_ns(t0) / 1000);
  }
  std::printf("{\"name\":\"add_chain_eval\",\"ns\":%.1f}\n", median(reps));

  // quantized_matmul at a decode shape, f32 activations, one stream.
  int K = 896, N = 4864;
  auto w = random::normal({N, K}, float32, 0, 1, random::key(3));
  auto q = quantize(w, 64, 4);
  auto x = random::normal({1, K}, float32, 0, 1, random::key(4));
  eval({q[0], q[1], q[2], x});
  reps.clear();
  for (int r = 0; r < 15; r++) {
    auto t0 = clk::now();
    auto y = quantized_matmul(x, q[0], q[1], q[2], true, 64, 4);
    eval({y});
    reps.push_back(since_ns(t0));
  }
  std::printf("{\"name\":\"qmm_f32_1x896x4864\",\"ns\":%.1f}\n", median(reps));
  return 0;
}
