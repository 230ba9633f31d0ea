// One persistent worker pool per process for the CPU kernels: never more threads than usable cores.
#pragma once

#include <cstdint>

namespace mlxk::kern {

// Task body: runs task index `i` (0 <= i < n); called concurrently from several threads.
using TaskFn = void (*)(void* ctx, int i);

// Threads the pool uses including the calling thread: MLXK_THREADS when set (1..64), else the cores in this
// process's CPU affinity mask.
int pool_threads();

// Threads the policy gives an op of `work` multiply-adds (1 = run inline on the calling thread): MLXK_THREADS
// pins it; otherwise small ops run on one thread (the hand-off costs more than the split saves), others on
// the cores other processes leave free (others_load_now), mid-size ones on one while helpers arrive late.
// See pool.cpp.
int threads_for(double work);

// Cores other processes kept busy recently (Linux /proc/stat less this process's time, sampled every
// ~100 ms; 0 where unknown), and a test override (< 0 = measure again); set returns the previous override.
float others_load_now();
float set_others_load(float cores);

// Runs fn(ctx, 0..n-1) across the pool; the caller works too and returns when every task is done.
// Concurrent callers (several MLX streams) are serialised, so the pool never oversubscribes.
void parallel_for(int n, TaskFn fn, void* ctx);

// parallel_for on threads_for(work) threads (inline when that is 1).
void parallel_for_work(int n, TaskFn fn, void* ctx, double work);

// Tests: overrides the thread count for ops (0 = back to MLXK_THREADS / the policy); returns the previous one.
int set_threads_override(int n);

} // namespace mlxk::kern
