// Persistent spin-then-sleep worker pool. A job is published as a 64-bit ticket (generation | next task);
// workers claim tasks by CAS on it, so a worker waking late can never take a task of a newer job.
#include "pool.h"

#ifdef __linux__
#include <sched.h>
#include <unistd.h>
#endif

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <condition_variable>
#include <cstdio>
#include <mutex>
#include <stdexcept>
#include <thread>
#include <vector>

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#define MLXK_PAUSE() _mm_pause()
#elif defined(__aarch64__)
#define MLXK_PAUSE() asm volatile("yield")
#else
#define MLXK_PAUSE() ((void)0)
#endif

namespace mlxk::kern {
namespace {

int usable_cores() {
  int n = 0;
#ifdef __linux__
  cpu_set_t set;
  CPU_ZERO(&set);
  if (sched_getaffinity(0, sizeof(set), &set) == 0) n = CPU_COUNT(&set);
#endif
  if (n <= 0) n = static_cast<int>(std::thread::hardware_concurrency());
  return n < 1 ? 1 : (n > 64 ? 64 : n);
}

// MLXK_THREADS=N (1..64) pins the pool size and every op's thread count; 0 when unset or invalid.
int env_threads() {
  const char* v = std::getenv("MLXK_THREADS");
  if (v == nullptr || *v == 0) return 0;
  char* end = nullptr;
  const long n = std::strtol(v, &end, 10);
  return (end != nullptr && *end == 0 && n >= 1 && n <= 64) ? static_cast<int>(n) : 0;
}

// Thread policy thresholds in multiply-adds (≈ 1 ns each on one core with AVX2). Below kSplitWork an op is a
// few µs: waking a helper and joining it costs about that much, so it runs inline. Up to kBusyWork (decode
// matmuls of models up to a few B parameters) the split only pays when helpers keep up; when recent helpers
// came late (the cores are busy with other processes: a helper that claimed a task and lost its core holds
// the op up for a time slice), such ops run inline too. Above it (prefill) splitting wins anyway.
constexpr double kSplitWork = 1 << 18;
constexpr double kBusyWork = 1 << 26;

// How long an idle worker keeps polling before it sleeps: within a decode step matmuls come every few µs.
constexpr int kPollMicros = 200;
// The caller yields its core after this many pause iterations waiting for a task a worker claimed: on an
// oversubscribed machine that worker may be preempted, and yielding lets it (or someone) run.
constexpr int kYieldAfter = 200;
constexpr int kMaxTasks = (1 << 20) - 1;

class Pool {
 public:
  explicit Pool(int threads) : threads_(threads) {
    for (int t = 1; t < threads_; t++) workers_.emplace_back([this] { loop(); });
  }
  ~Pool() {
    {
      std::lock_guard<std::mutex> lk(mu_);
      stop_.store(true);
      gen_.fetch_add(1);
    }
    cv_.notify_all();
    for (auto& w : workers_) w.join();
  }

  int threads() const { return threads_; }

  // ticket = generation (24 bits) | task count (20 bits) | next task (20 bits)
  static uint64_t make_ticket(uint32_t g, int n, int next) {
    return (static_cast<uint64_t>(g & 0xffffffu) << 40) | (static_cast<uint64_t>(n) << 20) | static_cast<uint64_t>(next);
  }

  void run(int n, TaskFn fn, void* ctx) {
    if (n <= 0) return;
    if (n > kMaxTasks) throw std::invalid_argument("[mlxk] too many kernel tasks");
    if (threads_ == 1 || n == 1) {
      for (int i = 0; i < n; i++) fn(ctx, i);
      return;
    }
    std::lock_guard<std::mutex> submit(submit_mu_);
    fn_.store(fn, std::memory_order_relaxed);
    ctx_.store(ctx, std::memory_order_relaxed);
    done_.store(0, std::memory_order_relaxed);
    uint32_t g = ++job_gen_;
    ticket_.store(make_ticket(g, n, 0), std::memory_order_release);
    // seq_cst store/load pair against the sleeper's increment-then-check: no lost wake-up.
    gen_.store(g);
    if (sleepers_.load() > 0) {
      std::lock_guard<std::mutex> lk(mu_);
      cv_.notify_all();
    }
    const auto t0 = std::chrono::steady_clock::now();
    work(g);
    const auto t1 = std::chrono::steady_clock::now();
    for (int s = 0; done_.load(std::memory_order_acquire) != n; s++) {
      if (s < kYieldAfter) MLXK_PAUSE();
      else std::this_thread::yield();
    }
    // Share of the job's time the caller spent waiting for helpers after its own tasks ran out, averaged
    // over recent jobs: high means a helper claimed a task and then lost its core (other processes).
    const double total = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    const double waited = std::chrono::duration<double>(std::chrono::steady_clock::now() - t1).count();
    const float w = total > 0 ? static_cast<float>(waited / total) : 0.f;
    wait_.store(0.9f * wait_.load(std::memory_order_relaxed) + 0.1f * w, std::memory_order_relaxed);
  }

  // Recent jobs' share of time spent waiting for late helpers (0 = they finish with the caller).
  float helper_wait() const { return wait_.load(std::memory_order_relaxed); }

 private:
  // Claims and runs tasks of job g until none are left; returns (with the count it ran) when the ticket
  // moved to another job.
  int work(uint32_t g) {
    int ran = 0;
    uint64_t t = ticket_.load(std::memory_order_acquire);
    for (;;) {
      if ((t >> 40) != (g & 0xffffffu)) return ran;
      // The task count travels in the ticket itself, so a stale reader can never claim past the end.
      if ((t & 0xfffffu) >= ((t >> 20) & 0xfffffu)) return ran;
      int i = static_cast<int>(t & 0xfffffu);
      if (!ticket_.compare_exchange_weak(t, t + 1, std::memory_order_acq_rel, std::memory_order_acquire)) continue;
      fn_.load(std::memory_order_relaxed)(ctx_.load(std::memory_order_relaxed), i);
      done_.fetch_add(1, std::memory_order_release);
      ran++;
      t = ticket_.load(std::memory_order_acquire);
    }
  }

  void loop() {
    uint32_t seen = 0;
    for (;;) {
      uint32_t g = gen_.load(std::memory_order_acquire);
      // Spin briefly, then keep polling with sched_yield: on an idle core that costs ~1 µs per poll, on a
      // busy (oversubscribed) one it hands the core to whoever needs it instead of burning the time slice.
      if (g == seen) {
        const auto until = std::chrono::steady_clock::now() + std::chrono::microseconds(kPollMicros);
        for (int s = 0; g == seen; s++) {
          if (s < 64) {
            MLXK_PAUSE();
          } else {
            if ((s & 7) == 0 && std::chrono::steady_clock::now() > until) break;
            std::this_thread::yield();
          }
          g = gen_.load(std::memory_order_acquire);
        }
      }
      if (g == seen) {
        std::unique_lock<std::mutex> lk(mu_);
        sleepers_.fetch_add(1);
        cv_.wait(lk, [&] { return gen_.load() != seen; });
        sleepers_.fetch_sub(1, std::memory_order_acq_rel);
        g = gen_.load(std::memory_order_acquire);
      }
      if (stop_.load()) return;
      seen = g;
      work(g);
    }
  }

  const int threads_;
  std::vector<std::thread> workers_;
  std::mutex submit_mu_;
  std::mutex mu_;
  std::condition_variable cv_;
  std::atomic<int> sleepers_{0};
  std::atomic<bool> stop_{false};
  std::atomic<uint32_t> gen_{0};
  uint32_t job_gen_ = 0; // guarded by submit_mu_
  std::atomic<uint64_t> ticket_{0};
  std::atomic<TaskFn> fn_{nullptr};
  std::atomic<void*> ctx_{nullptr};
  std::atomic<int> done_{0};
  std::atomic<float> wait_{0.f};
};

Pool& pool() {
  // Leaked on purpose: joining threads from a static destructor at exit can deadlock with MLX's own teardown.
  static Pool* p = new Pool(env_threads() > 0 ? env_threads() : usable_cores());
  return *p;
}

std::atomic<int> g_override{0};

// ---- other processes' load (Linux /proc): how many cores they kept busy over the last ~100 ms window

// Jiffies the cores of this process's affinity mask spent busy (everything but idle and iowait; steal counts
// as busy: the VM's core was not ours) and jiffies of this process (all its threads); false when /proc
// cannot be read. Only our cores count: on a big host (a container) the rest of the machine is not ours.
bool read_jiffies(uint64_t& busy, uint64_t& self) {
#ifdef __linux__
  static const cpu_set_t mine = [] {
    cpu_set_t set;
    CPU_ZERO(&set);
    if (sched_getaffinity(0, sizeof(set), &set) != 0) CPU_ZERO(&set);
    return set;
  }();
  FILE* f = std::fopen("/proc/stat", "r");
  if (!f) return false;
  char line[512];
  busy = 0;
  int seen = 0;
  while (std::fgets(line, sizeof(line), f)) {
    unsigned cpu = 0;
    unsigned long long v[8] = {0};
    if (std::strncmp(line, "cpu", 3) != 0) break;
    if (line[3] == ' ') continue; // the aggregate line; per-core lines are "cpuN ..."
    if (std::sscanf(line, "cpu%u %llu %llu %llu %llu %llu %llu %llu %llu", &cpu, &v[0], &v[1], &v[2], &v[3], &v[4], &v[5], &v[6], &v[7]) < 6)
      continue;
    if (cpu >= CPU_SETSIZE || !CPU_ISSET(cpu, &mine)) continue;
    busy += v[0] + v[1] + v[2] + v[5] + v[6] + v[7];
    seen++;
  }
  std::fclose(f);
  if (seen == 0) return false;
  f = std::fopen("/proc/self/stat", "r");
  if (!f) return false;
  char buf[1024];
  const size_t len = std::fread(buf, 1, sizeof(buf) - 1, f);
  std::fclose(f);
  buf[len] = 0;
  // fields after the ")" closing the command name: state is field 3, utime and stime are fields 14 and 15
  const char* p = std::strrchr(buf, ')');
  if (!p) return false;
  unsigned long long ut = 0, st = 0;
  if (std::sscanf(p + 1, " %*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %llu %llu", &ut, &st) != 2) return false;
  self = ut + st;
  return true;
#else
  (void)busy;
  (void)self;
  return false;
#endif
}

constexpr double kLoadWindow = 0.1; // seconds between samples
std::atomic<float> g_others{0.f};
std::atomic<float> g_others_pin{-1.f};
std::atomic<bool> g_sampling{false};
std::atomic<int64_t> g_next_sample{0};

// Cores other processes kept busy, smoothed over recent windows; refreshed at most every kLoadWindow by
// whichever caller gets here first (a few µs of /proc reads per window, never on every op).
float others_load() {
  const float pin = g_others_pin.load(std::memory_order_relaxed);
  if (pin >= 0.f) return pin;
  using clk = std::chrono::steady_clock;
  const int64_t now = clk::now().time_since_epoch().count();
  if (now < g_next_sample.load(std::memory_order_relaxed) || g_sampling.exchange(true, std::memory_order_acquire))
    return g_others.load(std::memory_order_relaxed);
  static uint64_t busy0 = 0, self0 = 0;
  static int64_t t0 = 0;
  static const double tick = [] {
#ifdef __linux__
    const long t = sysconf(_SC_CLK_TCK);
    return t > 0 ? 1.0 / static_cast<double>(t) : 0.01;
#else
    return 0.01;
#endif
  }();
  uint64_t busy = 0, self = 0;
  if (read_jiffies(busy, self)) {
    const double dt = std::chrono::duration<double>(clk::duration(now - t0)).count();
    if (t0 != 0 && dt > 0 && busy >= busy0 && self >= self0) {
      const double others = (static_cast<double>(busy - busy0) - static_cast<double>(self - self0)) * tick / dt;
      static bool smoothed = false; // the first window stands alone
      const double prev = smoothed ? g_others.load(std::memory_order_relaxed) : std::max(0.0, others);
      smoothed = true;
      g_others.store(static_cast<float>(0.5 * prev + 0.5 * std::max(0.0, others)), std::memory_order_relaxed);
    }
    busy0 = busy, self0 = self, t0 = now;
  }
  g_next_sample.store(now + std::chrono::duration_cast<clk::duration>(std::chrono::duration<double>(kLoadWindow)).count(),
                      std::memory_order_relaxed);
  g_sampling.store(false, std::memory_order_release);
  return g_others.load(std::memory_order_relaxed);
}

} // namespace

int pool_threads() {
  return pool().threads();
}

int set_threads_override(int n) {
  return g_override.exchange(std::max(0, n));
}

int threads_for(double work) {
  Pool& p = pool();
  const int all = p.threads();
  const int pin = g_override.load(std::memory_order_relaxed);
  if (pin > 0) return std::min(pin, all);
  if (all == 1 || work < kSplitWork) return 1;
  static const bool pinned = env_threads() > 0;
  if (pinned) return all;
  // Ops use the cores other processes leave free: on a 2-core machine, one thread once others keep ~a core
  // (0.9) busy. A helper sharing its core with another process claims a task and loses the core for a time
  // slice, and the whole op waits for it (llama.cpp's 2-thread decode collapses this way here). Measured
  // here: a 1.5B decode is 1.7× faster on 2 threads on an idle machine and equal with one core busy;
  // prefill is ~1.3× faster on one thread with others at 1.2–1.6 cores.
  const int free_cores = static_cast<int>(std::floor(static_cast<float>(all) - others_load() + 0.9f));
  if (free_cores <= 1) return 1;
  if (work >= kBusyWork) return std::min(all, free_cores);
  // When the caller of recent jobs spent over a quarter of their time waiting for a helper anyway, the split
  // costs more than it saves. Every 16th such op still goes out, so the estimate recovers when the
  // other cores free up.
  static std::atomic<unsigned> probe{0};
  if (p.helper_wait() > 0.25f && (probe.fetch_add(1, std::memory_order_relaxed) & 15) != 0) return 1;
  return std::min(all, free_cores);
}

float others_load_now() {
  return others_load();
}

float set_others_load(float cores) {
  return g_others_pin.exchange(cores < 0.f ? -1.f : cores);
}

void parallel_for(int n, TaskFn fn, void* ctx) {
  pool().run(n, fn, ctx);
}

void parallel_for_work(int n, TaskFn fn, void* ctx, double work) {
  if (threads_for(work) == 1) {
    for (int i = 0; i < n; i++) fn(ctx, i);
    return;
  }
  pool().run(n, fn, ctx);
}

} // namespace mlxk::kern
