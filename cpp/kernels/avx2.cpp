// AVX2 + FMA kernels (x86-64, Haswell and later): 8-lane vectors, 16 ymm registers. This file
// alone is compiled with -mavx2 -mfma; dispatch only calls it when the CPU reports both.
#include <immintrin.h>
#include <math.h>

#include <cstddef>
#include <cstdint>
#include <type_traits>

#include "kernels/kernels.h"

namespace pyrnn::avx2 {
namespace {

struct V {
  static constexpr int kLanes = 8;
  __m256 v;
};
using Mask = __m256;

inline V load(const float* p) noexcept { return {_mm256_loadu_ps(p)}; }
inline void store(float* p, V x) noexcept { _mm256_storeu_ps(p, x.v); }
inline V broadcast(float x) noexcept { return {_mm256_set1_ps(x)}; }
inline V zero() noexcept { return {_mm256_setzero_ps()}; }
inline V add(V a, V b) noexcept { return {_mm256_add_ps(a.v, b.v)}; }
inline V sub(V a, V b) noexcept { return {_mm256_sub_ps(a.v, b.v)}; }
inline V mul(V a, V b) noexcept { return {_mm256_mul_ps(a.v, b.v)}; }
inline V div(V a, V b) noexcept { return {_mm256_div_ps(a.v, b.v)}; }
// 1/d for finite d: a 12-bit estimate and one Newton step (relative error about 2^-23), for the
// tiny kernels' latency-bound activations (vdivps: 11 cycles of latency).
inline V reciprocal(V d) noexcept {
  const __m256 r = _mm256_rcp_ps(d.v);
  return {_mm256_fmadd_ps(_mm256_fnmadd_ps(d.v, r, _mm256_set1_ps(1.0f)), r, r)};
}
inline V fma(V a, V b, V c) noexcept { return {_mm256_fmadd_ps(a.v, b.v, c.v)}; }
inline V abs(V x) noexcept { return {_mm256_andnot_ps(_mm256_set1_ps(-0.0f), x.v)}; }
inline V copysign(V magnitude, V sign) noexcept {
  const __m256 bit = _mm256_set1_ps(-0.0f);
  return {_mm256_or_ps(_mm256_andnot_ps(bit, magnitude.v), _mm256_and_ps(bit, sign.v))};
}
// maxps/minps return their second operand when either is NaN: x goes second to keep NaN.
inline V clamp(V x, V lo, V hi) noexcept { return {_mm256_min_ps(hi.v, _mm256_max_ps(lo.v, x.v))}; }
inline V round_nearest(V x) noexcept {
  return {_mm256_round_ps(x.v, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC)};
}
inline V pow2(V n) noexcept {
  const __m256i bits =
      _mm256_slli_epi32(_mm256_add_epi32(_mm256_cvtps_epi32(n.v), _mm256_set1_epi32(127)), 23);
  return {_mm256_castsi256_ps(bits)};
}
inline Mask less(V a, V b) noexcept { return _mm256_cmp_ps(a.v, b.v, _CMP_LT_OQ); }
inline V select(Mask m, V if_true, V if_false) noexcept {
  return {_mm256_blendv_ps(if_false.v, if_true.v, m)};
}
// Lanes [0, count) set, count < 8.
inline __m256i first_lanes(int count) noexcept {
  return _mm256_cmpgt_epi32(_mm256_set1_epi32(count), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
}
// The first `count` (< 8) lanes from p, `fill` in the others; stores only the first `count`.
inline V load_partial(const float* p, int count, float fill) noexcept {
  const __m256i lanes = first_lanes(count);
  return {_mm256_blendv_ps(_mm256_set1_ps(fill), _mm256_maskload_ps(p, lanes),
                           _mm256_castsi256_ps(lanes))};
}
inline void store_partial(float* p, V x, int count) noexcept {
  _mm256_maskstore_ps(p, first_lanes(count), x.v);
}
inline float reduce_max(V x) noexcept {
  __m128 m = _mm_max_ps(_mm256_castps256_ps128(x.v), _mm256_extractf128_ps(x.v, 1));
  m = _mm_max_ps(m, _mm_movehl_ps(m, m));
  m = _mm_max_ss(m, _mm_shuffle_ps(m, m, 1));
  return _mm_cvtss_f32(m);
}
// 8 weights widened to float: binary16 by F16C (required with AVX2 by dispatch), bfloat16 by a
// shift into the high half, int8 by sign extension (its scale is applied to the sums).
inline V load_w(const float* p) noexcept { return load(p); }
inline V load_w(const Half* p) noexcept {
  return {_mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p)))};
}
inline V load_w(const BFloat16* p) noexcept {
  const __m256i wide = _mm256_cvtepu16_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p)));
  return {_mm256_castsi256_ps(_mm256_slli_epi32(wide, 16))};
}
inline V load_w(const std::int8_t* p) noexcept {
  return {_mm256_cvtepi32_ps(
      _mm256_cvtepi8_epi32(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(p))))};
}
inline float reduce_add(V x) noexcept {
  __m128 s = _mm_add_ps(_mm256_castps256_ps128(x.v), _mm256_extractf128_ps(x.v, 1));
  s = _mm_add_ps(s, _mm_movehl_ps(s, s));
  s = _mm_add_ss(s, _mm_shuffle_ps(s, s, 1));
  return _mm_cvtss_f32(s);
}

// Step tiles (rows x vectors per gate) sized for 16 registers: LSTM 3 x 4 gates x 1 = 12
// accumulators, GRU 4 x 3 x 1 = 12, RNN 6 x 1 x 2 = 12, leaving room for the weight loads.
// GEMM tiles: 3 rows x 4 contiguous vectors (two full cache lines per k), GRU 4 x 3, RNN 6 x 2.
constexpr int kTileRows4 = 3, kTileVecs4 = 1, kGemmRows4 = 3, kGemmCols4 = 4;
constexpr int kTileRows3 = 4, kTileVecs3 = 1, kGemmRows3 = 4, kGemmCols3 = 3;
constexpr int kTileRows1 = 6, kTileVecs1 = 2, kGemmRows1 = 6, kGemmCols1 = 2;

// Fused one-step kernel only for one row: a batched tile covers half a block, so the batched
// fused step reads each panel line twice per row tile (LSTM 256 x 4 rows: 104 -> 132 us).
constexpr int kFusedRows = 1;
constexpr std::size_t kFusedPanelBytes = 0;
// Split a step across threads when each gets this many recurrent flops: measured with these
// kernels on Sapphire Rapids, batch 1 forced onto 2 threads: LSTM 64 (33 kflop) 0.91x, LSTM 96
// (74 kflop) 1.21x, LSTM 128 (131 kflop) 1.38x.
constexpr double kSplitStepFlops = 30e3;
// Tiny networks: accumulators one group of units holds (16 ymm registers: 8 accumulators
// leave room for the weights and the broadcasts).
constexpr int kTinyAccs = 8;

#include "kernels/simd-inl.h"

}  // namespace

const KernelTable& kernel_table() noexcept { return make_table("avx2"); }

}  // namespace pyrnn::avx2
