// One persistent worker pool per process for the CPU kernels: never more threads than usable cores.
#pragma once

#include <cstdint>

namespace mlxk::kern {

// Task body: runs task index `i` (0 <= i < n); called concurrently from several threads.
using TaskFn = void (*)(void* ctx, int i);

// Threads the pool uses including the calling thread (= cores in this process's CPU affinity mask).
int pool_threads();

// Runs fn(ctx, 0..n-1) across the pool; the caller works too and returns when every task is done.
// Concurrent callers (several MLX streams) are serialised, so the pool never oversubscribes.
void parallel_for(int n, TaskFn fn, void* ctx);

} // namespace mlxk::kern
