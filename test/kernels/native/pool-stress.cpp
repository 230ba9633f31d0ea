// Stress test for the kernel pool and qmm without MLX: two caller threads (like two MLX CPU streams) run the
// same quantized matmuls concurrently, hundreds of times; every result must be bit-identical to a first run.
// Built and run by test/kernels/native/tsan.sh under ThreadSanitizer.
#include <cstdio>
#include <cstring>
#include <random>
#include <thread>
#include <vector>

#include "../../../mlx-c/src/kernels/pool.h"
#include "../../../mlx-c/src/kernels/qmm.h"

using namespace mlxk::kern;

struct Case {
  int M, K, N, gs;
  QFormat fmt;
  std::vector<float> x, scales, biases, ref;
  std::vector<uint8_t> w, e;
};

static Case make(int M, int K, int N, int gs, QFormat fmt, unsigned seed) {
  std::mt19937 rng(seed);
  std::uniform_real_distribution<float> u(-1.f, 1.f);
  Case c{M, K, N, gs, fmt, {}, {}, {}, {}, {}, {}};
  c.x.resize(static_cast<size_t>(M) * K);
  for (auto& v : c.x) v = u(rng);
  c.w.resize(static_cast<size_t>(N) * K / (fmt == QFormat::Affine8 ? 1 : 2));
  for (auto& v : c.w) v = static_cast<uint8_t>(rng());
  c.scales.resize(static_cast<size_t>(N) * K / gs);
  c.biases.resize(c.scales.size());
  for (auto& v : c.scales) v = 0.01f + 0.01f * u(rng);
  for (auto& v : c.biases) v = 0.05f * u(rng);
  c.e.resize(static_cast<size_t>(N) * K / 32);
  for (auto& v : c.e) v = static_cast<uint8_t>(120 + rng() % 10);
  return c;
}

static std::vector<float> run(const Case& c) {
  std::vector<float> out(static_cast<size_t>(c.M) * c.N);
  QmmProblem p{c.x.data(), c.w.data(), c.scales.data(), c.biases.data(), c.e.data(), out.data(), c.M, c.K, c.N, c.gs, c.fmt};
  qmm(p);
  return out;
}

int main(int argc, char** argv) {
  const int reps = argc > 1 ? std::atoi(argv[1]) : 200;
  std::vector<Case> cases;
  cases.push_back(make(1, 576, 1536, 64, QFormat::Affine4, 1));
  cases.push_back(make(9, 384, 200, 32, QFormat::Affine8, 2));
  cases.push_back(make(3, 256, 300, 32, QFormat::Mxfp4, 3));
  cases.push_back(make(17, 640, 130, 128, QFormat::Affine4, 4));
  int bad = 0;
  // Every ISA this CPU has, plus the int8-activation path where VNNI exists: references first, then two
  // concurrent callers comparing bit for bit.
  struct Mode { int isa; bool int8; };
  std::vector<Mode> modes;
  for (int isa = kIsaScalar; isa <= kernels_level(); isa++) modes.push_back({isa, false});
  if (int8_available()) modes.push_back({kIsaAvx512, true});
  for (const Mode& m : modes) {
    set_isa(m.isa);
    set_int8(m.int8);
    for (auto& c : cases) c.ref = run(c);
    auto worker = [&](int id) {
      for (int r = 0; r < reps; r++) {
        const Case& c = cases[(r + id) % cases.size()];
        if (std::memcmp(run(c).data(), c.ref.data(), c.ref.size() * sizeof(float)) != 0) __atomic_add_fetch(&bad, 1, __ATOMIC_RELAXED);
      }
    };
    std::thread a(worker, 0), b(worker, 1);
    a.join();
    b.join();
    std::printf("isa %d int8 %d: pool threads %d, %d runs per caller\n", m.isa, m.int8 ? 1 : 0, pool_threads(), reps);
  }
  std::printf("mismatches %d\n", bad);
  return bad == 0 ? 0 : 1;
}
