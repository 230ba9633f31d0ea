// Safetensors and GGUF files: loading into an indexable map (keys, lazy arrays, metadata) and saving.
#include <algorithm>
#include <cstring>

#include "common.h"

using namespace mlxk;

namespace {
struct TensorMap {
  std::vector<std::string> keys;
  std::vector<array> arrays;
  std::vector<std::string> meta_keys;
  std::vector<GGUFMetaData> meta;
};

TensorMap* M(mlxk_map m) {
  if (!m) throw std::invalid_argument("[mlxk] null map handle");
  return static_cast<TensorMap*>(m);
}

// Keys sorted so the order is stable across runs (unordered_map iteration order is not).
template <typename V>
void fill(TensorMap& tm, std::unordered_map<std::string, array>& arrays, std::unordered_map<std::string, V>& meta) {
  std::vector<std::string> keys;
  for (auto& [k, v] : arrays) keys.push_back(k);
  std::sort(keys.begin(), keys.end());
  for (auto& k : keys) {
    tm.keys.push_back(k);
    tm.arrays.push_back(arrays.at(k));
  }
  std::vector<std::string> mkeys;
  for (auto& [k, v] : meta) mkeys.push_back(k);
  std::sort(mkeys.begin(), mkeys.end());
  for (auto& k : mkeys) {
    tm.meta_keys.push_back(k);
    tm.meta.push_back(GGUFMetaData(meta.at(k)));
  }
}

const char* next_str(const char*& p) {
  const char* s = p;
  p += std::strlen(p) + 1;
  return s;
}
} // namespace

MLXK_API int mlxk_load_safetensors(mlxk_map* out, const char* path, mlxk_stream s) {
  MLXK_TRY auto loaded = load_safetensors(std::string(path), S(s));
  auto tm = std::make_unique<TensorMap>();
  fill(*tm, loaded.first, loaded.second);
  *out = tm.release();
  return 0;
  MLXK_END
}

MLXK_API int mlxk_load_gguf(mlxk_map* out, const char* path, mlxk_stream s) {
  MLXK_TRY auto loaded = load_gguf(std::string(path), S(s));
  auto tm = std::make_unique<TensorMap>();
  fill(*tm, loaded.first, loaded.second);
  *out = tm.release();
  return 0;
  MLXK_END
}

MLXK_API void mlxk_map_free(mlxk_map m) {
  delete static_cast<TensorMap*>(m);
}

MLXK_API int mlxk_map_size(mlxk_map m) {
  return m ? static_cast<int>(static_cast<TensorMap*>(m)->keys.size()) : -1;
}

MLXK_API const char* mlxk_map_key(mlxk_map m, int i) {
  auto* tm = static_cast<TensorMap*>(m);
  if (!tm || i < 0 || i >= static_cast<int>(tm->keys.size())) return nullptr;
  return tm->keys[i].c_str();
}

MLXK_API int mlxk_map_array(mlxk_array* out, mlxk_map m, int i) {
  MLXK_TRY TensorMap* tm = M(m);
  if (i < 0 || i >= static_cast<int>(tm->arrays.size())) throw std::out_of_range("[mlxk] map index out of range");
  return put(out, tm->arrays[i]);
  MLXK_END
}

MLXK_API int mlxk_map_meta_size(mlxk_map m) {
  return m ? static_cast<int>(static_cast<TensorMap*>(m)->meta.size()) : -1;
}

MLXK_API const char* mlxk_map_meta_key(mlxk_map m, int i) {
  auto* tm = static_cast<TensorMap*>(m);
  if (!tm || i < 0 || i >= static_cast<int>(tm->meta_keys.size())) return nullptr;
  return tm->meta_keys[i].c_str();
}

static const GGUFMetaData* meta_at(mlxk_map m, int i) {
  auto* tm = static_cast<TensorMap*>(m);
  if (!tm || i < 0 || i >= static_cast<int>(tm->meta.size())) return nullptr;
  return &tm->meta[i];
}

MLXK_API int mlxk_map_meta_kind(mlxk_map m, int i) {
  const GGUFMetaData* v = meta_at(m, i);
  if (!v) return -1;
  if (std::holds_alternative<array>(*v)) return MLXK_META_ARRAY;
  if (std::holds_alternative<std::string>(*v)) return MLXK_META_STRING;
  if (std::holds_alternative<std::vector<std::string>>(*v)) return MLXK_META_STRINGS;
  return MLXK_META_NONE;
}

MLXK_API const char* mlxk_map_meta_string(mlxk_map m, int i) {
  const GGUFMetaData* v = meta_at(m, i);
  if (!v || !std::holds_alternative<std::string>(*v)) return nullptr;
  return std::get<std::string>(*v).c_str();
}

MLXK_API int mlxk_map_meta_array(mlxk_array* out, mlxk_map m, int i) {
  MLXK_TRY const GGUFMetaData* v = meta_at(m, i);
  if (!v || !std::holds_alternative<array>(*v)) throw std::invalid_argument("[mlxk] metadata value is not an array");
  return put(out, std::get<array>(*v));
  MLXK_END
}

MLXK_API int mlxk_map_meta_strings_size(mlxk_map m, int i) {
  const GGUFMetaData* v = meta_at(m, i);
  if (!v || !std::holds_alternative<std::vector<std::string>>(*v)) return -1;
  return static_cast<int>(std::get<std::vector<std::string>>(*v).size());
}

MLXK_API const char* mlxk_map_meta_strings_at(mlxk_map m, int i, int j) {
  const GGUFMetaData* v = meta_at(m, i);
  if (!v || !std::holds_alternative<std::vector<std::string>>(*v)) return nullptr;
  const auto& vs = std::get<std::vector<std::string>>(*v);
  if (j < 0 || j >= static_cast<int>(vs.size())) return nullptr;
  return vs[j].c_str();
}

MLXK_API int mlxk_save_safetensors(const char* path, const mlxk_array* arrs, const char* keys, int n, const char* meta,
                                   int n_meta) {
  MLXK_TRY std::unordered_map<std::string, array> tensors;
  const char* p = keys;
  for (int i = 0; i < n; i++) tensors.insert_or_assign(next_str(p), A(arrs[i]));
  std::unordered_map<std::string, std::string> md;
  p = meta;
  for (int i = 0; i < n_meta; i++) {
    std::string k = next_str(p);
    md.insert_or_assign(k, next_str(p));
  }
  save_safetensors(std::string(path), std::move(tensors), std::move(md));
  return 0;
  MLXK_END
}
