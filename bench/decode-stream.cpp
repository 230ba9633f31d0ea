// Decode matmuls (one x row) on weights that stream from memory: the kernels of this checkout against another
// build of the same sources (e.g. main's, compiled with -Dmlxk=mlxkold), interleaved in one process, CPU time
// per call (median of 7 rounds), the weights cycled through copies totalling > 128 MB so no call finds them in
// the caches (bench/qmm-rows.ts reuses one matrix, which the 32 MB L3 holds for the smaller shapes).
// Prints per shape: old and new ms per call, GB/s of weights, the speed ratio and the largest |difference|.
//
// Build (from the repo root; OLD = a directory with the baseline's mlx-c/src/kernels files):
//   K=mlx-c/src/kernels; F="-std=c++20 -O2 -pthread"
//   for f in qmm qmm_avx512 pool kquant kquant512 kquant_f32 kquant_run gemm512; do
//     g++ $F -Dmlxk=mlxkold -I$OLD -c $OLD/$f.cpp -o /tmp/old_$f.o; g++ $F -I$K -c $K/$f.cpp -o /tmp/new_$f.o; done
//   g++ $F -I$K bench/decode-stream.cpp /tmp/old_*.o /tmp/new_*.o -o /tmp/decode-stream
// Run: MLXK_THREADS=1 /tmp/decode-stream [a4:1x1536x8960,q6k:1x1024x151936,...]   (a4/a8 gs 32 unless
//   a4g64:…; mx4 = mxfp4; q4k/q5k/q6k = GGUF K-quants; M ≤ 8 rows decode as independent rows)
#include <time.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <random>
#include <string>
#include <vector>

#include "kquant.h"
#include "qmm.h"

namespace mlxkold::kern {
struct QmmProblem;
struct KqProblem;
void qmm(const QmmProblem&);
void kqmm(const KqProblem&);
} // namespace mlxkold::kern

using namespace mlxk::kern;

static double cpu_now() {
  timespec t;
  clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &t);
  return t.tv_sec + t.tv_nsec * 1e-9;
}

int main(int argc, char** argv) {
  const std::string list = argc > 1 ? argv[1] : "a4:1x1536x1536,a4:1x1536x8960,a4:1x8960x1536,a4:1x1536x151936,q4k:1x1024x3072,q6k:1x3072x1024,q6k:1x1024x151936";
  std::mt19937 rng(1);
  std::normal_distribution<float> nd;
  size_t pos = 0;
  while (pos < list.size()) {
    size_t e = list.find(',', pos);
    if (e == std::string::npos) e = list.size();
    const std::string item = list.substr(pos, e - pos);
    pos = e + 1;
    const std::string kind = item.substr(0, item.find(':'));
    int M, K, N;
    if (std::sscanf(item.c_str() + kind.size() + 1, "%dx%dx%d", &M, &K, &N) != 3) return 1;
    const bool kq = kind[0] == 'q';
    const KType kt = kind == "q4k" ? KType::Q4K : kind == "q5k" ? KType::Q5K : KType::Q6K;
    const QFormat qf = kind.rfind("a8", 0) == 0 ? QFormat::Affine8 : kind == "mx4" ? QFormat::Mxfp4 : QFormat::Affine4;
    const int gs = kind.find("g64") != std::string::npos ? 64 : kind.find("g128") != std::string::npos ? 128 : 32;
    const int G = K / gs;
    const size_t wbytes = kq ? static_cast<size_t>(N) * (K / 256) * kq_block_bytes(kt) : static_cast<size_t>(N) * K * (qf == QFormat::Affine8 ? 8 : 4) / 8;
    const double bytes = static_cast<double>(wbytes) + (kq ? 0.0 : 8.0 * N * G);
    const int copies = std::max(1, static_cast<int>(128e6 / bytes));
    std::vector<std::vector<uint8_t>> w(copies, std::vector<uint8_t>(wbytes)), es(copies);
    std::vector<std::vector<float>> sc(copies), bi(copies);
    for (int c = 0; c < copies; c++) {
      for (auto& b : w[c]) b = static_cast<uint8_t>(rng());
      if (kq) { // f16 block scales in a sane range (random bytes could be inf/NaN)
        const int bb = kq_block_bytes(kt);
        for (size_t o = 0; o < wbytes; o += bb) {
          const uint16_t d = 0x1c00 + rng() % 0x400, dm = 0x1c00 + rng() % 0x400;
          if (kt == KType::Q6K) std::memcpy(&w[c][o + 208], &d, 2);
          else std::memcpy(&w[c][o], &d, 2), std::memcpy(&w[c][o + 2], &dm, 2);
        }
      } else {
        sc[c].resize(static_cast<size_t>(N) * G), bi[c].resize(sc[c].size()), es[c].resize(sc[c].size());
        for (auto& v : sc[c]) v = 0.01f * nd(rng);
        for (auto& v : bi[c]) v = 0.05f * nd(rng);
        for (auto& v : es[c]) v = static_cast<uint8_t>(120 + rng() % 8);
      }
    }
    std::vector<float> x(static_cast<size_t>(M) * K), out[2] = {std::vector<float>(static_cast<size_t>(M) * N), std::vector<float>(static_cast<size_t>(M) * N)};
    for (auto& v : x) v = nd(rng);
    auto call = [&](int which, int c) {
      float* o = out[which].data();
      if (kq) {
        const KqProblem p{x.data(), w[c].data(), o, M, K, N, N, kt};
        if (which) kqmm(p);
        else mlxkold::kern::kqmm(*reinterpret_cast<const mlxkold::kern::KqProblem*>(&p));
      } else {
        QmmProblem p{x.data(), w[c].data(), sc[c].data(), bi[c].data(), es[c].data(), o, M, K, N, gs, qf};
        p.independent_rows = M > 1;
        if (which) qmm(p);
        else mlxkold::kern::qmm(*reinterpret_cast<const mlxkold::kern::QmmProblem*>(&p));
      }
    };
    const int reps = std::max(copies, static_cast<int>(1e9 / bytes) / copies * copies);
    std::vector<double> t[2];
    for (int r = 0; r < 7; r++)
      for (int which = 0; which < 2; which++) {
        const double t0 = cpu_now();
        for (int i = 0; i < reps; i++) call(which, i % copies);
        t[which].push_back((cpu_now() - t0) / reps);
      }
    for (auto& v : t) std::sort(v.begin(), v.end());
    double maxd = 0, maxa = 0;
    for (size_t i = 0; i < out[0].size(); i++) {
      maxd = std::max(maxd, static_cast<double>(std::fabs(out[0][i] - out[1][i])));
      maxa = std::max(maxa, static_cast<double>(std::fabs(out[0][i])));
    }
    std::printf("%s: old %.3f ms (%.1f GB/s)  new %.3f ms (%.1f GB/s)  new/old speed %.2fx  max |diff| %.3g (of %.3g)\n", item.c_str(), t[0][3] * 1e3,
                bytes / t[0][3] / 1e9, t[1][3] * 1e3, bytes / t[1][3] / 1e9, t[0][3] / t[1][3], maxd, maxa);
  }
}
