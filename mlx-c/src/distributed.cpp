// mlx::core::distributed: backend availability, group init (ring/mpi/… as libmlx has them) and the
// collectives the pipeline uses. A group handle is a heap Group*; errors are returned, never thrown or exited.
#include "mlx/distributed/distributed.h"
#include "mlx/distributed/ops.h"

#include "common.h"

using namespace mlxk;
namespace dist = mlx::core::distributed;

namespace {
dist::Group& G(mlxk_group g) {
  if (g == nullptr) throw std::invalid_argument("[mlxk] null group handle");
  return *static_cast<dist::Group*>(g);
}
std::string backend_name(const char* b) {
  return (b == nullptr || *b == '\0') ? std::string("any") : std::string(b);
}
} // namespace

MLXK_API int mlxk_distributed_is_available(const char* backend) {
  try {
    return dist::is_available(backend_name(backend)) ? 1 : 0;
  } catch (...) {
    return 0;
  }
}

MLXK_API int mlxk_distributed_init(mlxk_group* out, const char* backend, bool strict) {
  MLXK_TRY *out = new dist::Group(dist::init(strict, backend_name(backend)));
  return 0;
  MLXK_END
}

MLXK_API void mlxk_group_free(mlxk_group g) {
  delete static_cast<dist::Group*>(g);
}

MLXK_API int mlxk_group_rank(mlxk_group g) {
  return g ? static_cast<dist::Group*>(g)->rank() : -1;
}

MLXK_API int mlxk_group_size(mlxk_group g) {
  return g ? static_cast<dist::Group*>(g)->size() : -1;
}

MLXK_API int mlxk_all_sum(mlxk_array* out, mlxk_array x, mlxk_group g, mlxk_stream s) {
  MLXK_TRY return put(out, dist::all_sum(A(x), G(g), S(s)));
  MLXK_END
}

MLXK_API int mlxk_all_gather(mlxk_array* out, mlxk_array x, mlxk_group g, mlxk_stream s) {
  MLXK_TRY return put(out, dist::all_gather(A(x), G(g), S(s)));
  MLXK_END
}

MLXK_API int mlxk_all_max(mlxk_array* out, mlxk_array x, mlxk_group g, mlxk_stream s) {
  MLXK_TRY return put(out, dist::all_max(A(x), G(g), S(s)));
  MLXK_END
}

MLXK_API int mlxk_send(mlxk_array* out, mlxk_array x, int dst, mlxk_group g, mlxk_stream s) {
  MLXK_TRY return put(out, dist::send(A(x), dst, G(g), S(s)));
  MLXK_END
}

MLXK_API int mlxk_recv(mlxk_array* out, const int* shape, int ndim, int dtype, int src, mlxk_group g, mlxk_stream s) {
  MLXK_TRY return put(out, dist::recv(to_shape(shape, ndim), to_dtype(dtype), src, G(g), S(s)));
  MLXK_END
}

MLXK_API int mlxk_recv_like(mlxk_array* out, mlxk_array x, int src, mlxk_group g, mlxk_stream s) {
  MLXK_TRY return put(out, dist::recv_like(A(x), src, G(g), S(s)));
  MLXK_END
}
