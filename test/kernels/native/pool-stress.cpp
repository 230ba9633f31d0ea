// Stress test for the kernel pool, qmm and the K-quant prefill GEMMs without MLX: two caller threads (like two MLX CPU streams) run the
// same quantized matmuls concurrently, hundreds of times; every result must be bit-identical to a first run.
// Built and run by test/kernels/native/tsan.sh under ThreadSanitizer.
#include <cstdio>
#include <cstring>
#include <random>
#include <thread>
#include <vector>

#include "../../../mlx-c/src/kernels/kquant.h"
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

// K-quant prefill problems (the f32 panel GEMM; with int8 on, kqgemm8's VNNI GEMM): random blocks, small fp16 d.
struct KCase {
  int M, K, N;
  KType t;
  std::vector<float> x, ref;
  std::vector<uint8_t> w;
};

static KCase make_kq(int M, int K, int N, KType t, unsigned seed) {
  std::mt19937 rng(seed);
  std::uniform_real_distribution<float> u(-1.f, 1.f);
  KCase c{M, K, N, t, {}, {}, {}};
  c.x.resize(static_cast<size_t>(M) * K);
  for (auto& v : c.x) v = u(rng);
  const int bb = kq_block_bytes(t);
  c.w.resize(static_cast<size_t>(N) * (K / 256) * bb);
  for (auto& v : c.w) v = static_cast<uint8_t>(rng());
  for (size_t b = 0; b < c.w.size() / bb; b++)
    for (int o : t == KType::Q6K ? std::vector<int>{208} : std::vector<int>{0, 2}) c.w[b * bb + o + 1] = (c.w[b * bb + o + 1] & 0x83) | 0x2c;
  return c;
}

static std::vector<float> run_kq(const KCase& c) {
  std::vector<float> out(static_cast<size_t>(c.M) * c.N);
  KqProblem p{c.x.data(), c.w.data(), out.data(), c.M, c.K, c.N, c.N, c.t};
  kqmm(p);
  return out;
}

int main(int argc, char** argv) {
  const int reps = argc > 1 ? std::atoi(argv[1]) : 200;
  std::vector<Case> cases;
  cases.push_back(make(1, 576, 1536, 64, QFormat::Affine4, 1));
  cases.push_back(make(9, 384, 200, 32, QFormat::Affine8, 2));
  cases.push_back(make(3, 256, 300, 32, QFormat::Mxfp4, 3));
  cases.push_back(make(17, 640, 130, 128, QFormat::Affine4, 4));
  std::vector<KCase> kcases;
  kcases.push_back(make_kq(70, 512, 70, KType::Q4K, 5));
  kcases.push_back(make_kq(30, 256, 45, KType::Q6K, 6));
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
    kq_set_int8(m.int8);
    for (auto& c : cases) c.ref = run(c);
    for (auto& c : kcases) c.ref = run_kq(c);
    auto worker = [&](int id) {
      for (int r = 0; r < reps; r++) {
        const Case& c = cases[(r + id) % cases.size()];
        if (std::memcmp(run(c).data(), c.ref.data(), c.ref.size() * sizeof(float)) != 0) __atomic_add_fetch(&bad, 1, __ATOMIC_RELAXED);
        const KCase& k = kcases[(r + id) % kcases.size()];
        if (std::memcmp(run_kq(k).data(), k.ref.data(), k.ref.size() * sizeof(float)) != 0) __atomic_add_fetch(&bad, 1, __ATOMIC_RELAXED);
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
