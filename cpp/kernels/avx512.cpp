// AVX-512F kernels (x86-64, Skylake-X / Zen 4 and later): 16-lane vectors, one per block of
// hidden units, 32 zmm registers. This file alone is compiled with -mavx512f -mavx2 -mfma (GCC's
// -mavx512f does not imply FMA); dispatch only calls it when the CPU and OS support all three.
// GCC 12 warns "__Y is used uninitialized" inside its own AVX-512 header (the `__Y = __Y` idiom
// of _mm512_undefined_ps, GCC bug 105593) when the fused batched step inlines deeply enough; the
// diagnostic points into the header, so it is silenced for the header only.
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wuninitialized"
#include <immintrin.h>
#pragma GCC diagnostic pop
#else
#include <immintrin.h>
#endif

#include <math.h>

#include <cstddef>
#include <cstdint>
#include <type_traits>

#include "kernels/kernels.h"

namespace pyrnn::avx512 {
namespace {

struct V {
  static constexpr int kLanes = 16;
  __m512 v;
};
using Mask = __mmask16;

inline V load(const float* p) noexcept { return {_mm512_loadu_ps(p)}; }
inline void store(float* p, V x) noexcept { _mm512_storeu_ps(p, x.v); }
inline V broadcast(float x) noexcept { return {_mm512_set1_ps(x)}; }
inline V zero() noexcept { return {_mm512_setzero_ps()}; }
inline V add(V a, V b) noexcept { return {_mm512_add_ps(a.v, b.v)}; }
inline V sub(V a, V b) noexcept { return {_mm512_sub_ps(a.v, b.v)}; }
inline V mul(V a, V b) noexcept { return {_mm512_mul_ps(a.v, b.v)}; }
inline V div(V a, V b) noexcept { return {_mm512_div_ps(a.v, b.v)}; }
// 1/d for finite d: a 14-bit estimate and one Newton step (relative error about 2^-27), 12 cycles
// of latency against vdivps' 18 (Sapphire Rapids): the tiny kernels' activations are latency-bound.
inline V reciprocal(V d) noexcept {
  const __m512 r = _mm512_rcp14_ps(d.v);
  return {_mm512_fmadd_ps(_mm512_fnmadd_ps(d.v, r, _mm512_set1_ps(1.0f)), r, r)};
}
inline V fma(V a, V b, V c) noexcept { return {_mm512_fmadd_ps(a.v, b.v, c.v)}; }
// Sign-bit logic in the integer domain: AVX-512F alone has no float and/or (that is AVX-512DQ).
inline V abs(V x) noexcept {
  return {_mm512_castsi512_ps(
      _mm512_and_si512(_mm512_castps_si512(x.v), _mm512_set1_epi32(0x7fffffff)))};
}
inline V copysign(V magnitude, V sign) noexcept {
  const __m512i magnitude_bits =
      _mm512_and_si512(_mm512_castps_si512(magnitude.v), _mm512_set1_epi32(0x7fffffff));
  const __m512i sign_bit = _mm512_and_si512(_mm512_castps_si512(sign.v),
                                            _mm512_set1_epi32(static_cast<int>(0x80000000u)));
  return {_mm512_castsi512_ps(_mm512_or_si512(magnitude_bits, sign_bit))};
}
// vmaxps/vminps return their second operand when either is NaN: x goes second to keep NaN.
inline V clamp(V x, V lo, V hi) noexcept { return {_mm512_min_ps(hi.v, _mm512_max_ps(lo.v, x.v))}; }
inline V round_nearest(V x) noexcept {
  return {_mm512_roundscale_ps(x.v, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC)};
}
inline V pow2(V n) noexcept {
  const __m512i bits =
      _mm512_slli_epi32(_mm512_add_epi32(_mm512_cvtps_epi32(n.v), _mm512_set1_epi32(127)), 23);
  return {_mm512_castsi512_ps(bits)};
}
inline Mask less(V a, V b) noexcept { return _mm512_cmp_ps_mask(a.v, b.v, _CMP_LT_OQ); }
inline V select(Mask m, V if_true, V if_false) noexcept {
  return {_mm512_mask_blend_ps(m, if_false.v, if_true.v)};
}
// The first `count` (< 16) lanes from p, `fill` in the others; stores only the first `count`.
inline V load_partial(const float* p, int count, float fill) noexcept {
  return {_mm512_mask_loadu_ps(_mm512_set1_ps(fill), static_cast<Mask>((1u << count) - 1), p)};
}
inline void store_partial(float* p, V x, int count) noexcept {
  _mm512_mask_storeu_ps(p, static_cast<Mask>((1u << count) - 1), x.v);
}
inline float reduce_max(V x) noexcept { return _mm512_reduce_max_ps(x.v); }
// 16 weights widened to float: binary16 by the AVX-512F conversion, bfloat16 by a shift into
// the high half, int8 by sign extension (its scale is applied to the sums).
inline V load_w(const float* p) noexcept { return load(p); }
inline V load_w(const Half* p) noexcept {
  return {_mm512_cvtph_ps(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(p)))};
}
inline V load_w(const BFloat16* p) noexcept {
  const __m512i wide =
      _mm512_cvtepu16_epi32(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(p)));
  return {_mm512_castsi512_ps(_mm512_slli_epi32(wide, 16))};
}
inline V load_w(const std::int8_t* p) noexcept {
  return {_mm512_cvtepi32_ps(
      _mm512_cvtepi8_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p))))};
}
inline float reduce_add(V x) noexcept { return _mm512_reduce_add_ps(x.v); }

// Tiles sized for 32 registers: LSTM 6 rows x 4 gates = 24 accumulators, GRU 8 x 3 = 24,
// RNN 12 x 1 = 12 (the weight vector and the row broadcasts take the rest). One vector per gate
// is a whole block, so the GEMM tiles are the same (a whole panel row).
constexpr int kTileRows4 = 6, kTileVecs4 = 1, kGemmRows4 = 6, kGemmCols4 = 4;
constexpr int kTileRows3 = 8, kTileVecs3 = 1, kGemmRows3 = 8, kGemmCols3 = 3;
constexpr int kTileRows1 = 12, kTileVecs1 = 1, kGemmRows1 = 12, kGemmCols1 = 1;

// Fused one-step kernel (KernelTable::use_input_step): whole-block tiles; measured (Zen 4,
// LSTM stream step) faster up to 16 rows at H = 256 (b4 61 -> 41 us, b16 H=128 73 -> 61) and at
// 64 rows while a block's two panels fit L1 (H = 64: 32 KiB), slower at 64 rows of H = 128.
constexpr int kFusedRows = 16;
constexpr std::size_t kFusedPanelBytes = 32 * 1024;
// Split a step across threads when each gets this many recurrent flops: measured on Sapphire
// Rapids (a barrier ~0.3 us between its two cores), forced onto 2 threads: LSTM 64 batch 1
// (33 kflop) 1.01x, LSTM 96 (74 kflop) 1.22x, LSTM 128 (131 kflop) 1.34x, GRU 64 0.73x.
constexpr double kSplitStepFlops = 35e3;
// Tiny networks: accumulators one group of units holds (32 zmm registers: an LSTM group of
// 64 units).
constexpr int kTinyAccs = 16;

#include "kernels/simd-inl.h"

}  // namespace

const KernelTable& kernel_table() noexcept { return make_table("avx512"); }

}  // namespace pyrnn::avx512
