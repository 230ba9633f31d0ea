// The code bytes of a K-quant block for the AVX-512 tiles (kquant512.cpp's bf16/int8 tiles, kquant_f32.cpp's
// Q5_K/Q6_K decode): internal to those files.
#pragma once

#if defined(__x86_64__)
#include <immintrin.h>

#include <cstdint>

#include "kquant.h"

namespace mlxk::kern::kq512 {
namespace {

// The 64 codes of (half h, vector c) of block b, one byte each.
template <KType T>
__attribute__((target("avx512f,avx512bw,avx512vl,avx2"))) inline __m512i code_vec(const uint8_t* b, int h, int c) {
  const __m512i m4 = _mm512_set1_epi8(0x0f);
  if constexpr (T == KType::Q4K) {
    const __m512i qs = _mm512_loadu_si512(b + 16 + 64 * h);
    return c ? _mm512_and_si512(_mm512_srli_epi16(qs, 4), m4) : _mm512_and_si512(qs, m4);
  } else if constexpr (T == KType::Q5K) {
    const __m512i qs = _mm512_loadu_si512(b + 48 + 64 * h);
    const __m512i lo = c ? _mm512_and_si512(_mm512_srli_epi16(qs, 4), m4) : _mm512_and_si512(qs, m4);
    // qh bit 2j (+1 for high nibbles) of group j = 2h (bytes 0..31) or 2h + 1 (bytes 32..63)
    const __m512i qh = _mm512_broadcast_i64x4(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(b + 16)));
    const __m512i sh = _mm512_inserti64x4(_mm512_set1_epi16(static_cast<short>(4 * h + c)), _mm256_set1_epi16(static_cast<short>(4 * h + 2 + c)), 1);
    const __m512i bit = _mm512_and_si512(_mm512_srlv_epi16(qh, sh), _mm512_set1_epi8(1));
    return _mm512_or_si512(lo, _mm512_slli_epi16(bit, 4));
  } else {
    const __m512i ql = _mm512_loadu_si512(b + 64 * h);
    const __m512i lo = c ? _mm512_and_si512(_mm512_srli_epi16(ql, 4), m4) : _mm512_and_si512(ql, m4);
    // qh bits 2i..2i+1 (i = 2c for bytes 0..31, 2c + 1 for bytes 32..63)
    const __m512i qh = _mm512_broadcast_i64x4(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(b + 128 + 32 * h)));
    const __m512i sh = _mm512_inserti64x4(_mm512_set1_epi16(static_cast<short>(4 * c)), _mm256_set1_epi16(static_cast<short>(4 * c + 2)), 1);
    const __m512i hi = _mm512_and_si512(_mm512_srlv_epi16(qh, sh), _mm512_set1_epi8(3));
    return _mm512_or_si512(lo, _mm512_slli_epi16(hi, 4));
  }
}

} // namespace
} // namespace mlxk::kern::kq512
#endif
