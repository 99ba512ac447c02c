// ARM NEON (Advanced SIMD) kernels for AArch64, where NEON is mandatory: 4-lane vectors, 32
// q registers. Compiled only for aarch64 targets (no extra flags needed there).
#include <arm_neon.h>
#include <math.h>

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <type_traits>

#include "kernels/kernels.h"

namespace pyrnn::neon {
namespace {

struct V {
  static constexpr int kLanes = 4;
  float32x4_t v;
};
using Mask = uint32x4_t;

inline V load(const float* p) noexcept { return {vld1q_f32(p)}; }
inline void store(float* p, V x) noexcept { vst1q_f32(p, x.v); }
inline V broadcast(float x) noexcept { return {vdupq_n_f32(x)}; }
inline V zero() noexcept { return {vdupq_n_f32(0.0f)}; }
inline V add(V a, V b) noexcept { return {vaddq_f32(a.v, b.v)}; }
inline V sub(V a, V b) noexcept { return {vsubq_f32(a.v, b.v)}; }
inline V mul(V a, V b) noexcept { return {vmulq_f32(a.v, b.v)}; }
inline V div(V a, V b) noexcept { return {vdivq_f32(a.v, b.v)}; }
// 1/d for the tiny kernels: a division (an estimate needs two Newton steps for float precision,
// which take as long as fdiv on the cores we measured).
inline V reciprocal(V d) noexcept { return div({vdupq_n_f32(1.0f)}, d); }
inline V fma(V a, V b, V c) noexcept { return {vfmaq_f32(c.v, a.v, b.v)}; }
inline V abs(V x) noexcept { return {vabsq_f32(x.v)}; }
inline V copysign(V magnitude, V sign) noexcept {
  return {vbslq_f32(vdupq_n_u32(0x80000000u), sign.v, magnitude.v)};
}
// FMAX/FMIN return NaN when either operand is NaN, so clamping keeps NaN.
inline V clamp(V x, V lo, V hi) noexcept { return {vminq_f32(hi.v, vmaxq_f32(lo.v, x.v))}; }
inline V round_nearest(V x) noexcept { return {vrndnq_f32(x.v)}; }
inline V pow2(V n) noexcept {
  const int32x4_t bits = vshlq_n_s32(vaddq_s32(vcvtnq_s32_f32(n.v), vdupq_n_s32(127)), 23);
  return {vreinterpretq_f32_s32(bits)};
}
inline Mask less(V a, V b) noexcept { return vcltq_f32(a.v, b.v); }
inline V select(Mask m, V if_true, V if_false) noexcept {
  return {vbslq_f32(m, if_true.v, if_false.v)};
}
// The first `count` (< 4) lanes from p, `fill` in the others; stores only the first `count`
// (lane by lane: NEON has no masked loads).
inline V load_partial(const float* p, int count, float fill) noexcept {
  float32x4_t v = vdupq_n_f32(fill);
  if (count > 0) v = vsetq_lane_f32(p[0], v, 0);
  if (count > 1) v = vsetq_lane_f32(p[1], v, 1);
  if (count > 2) v = vsetq_lane_f32(p[2], v, 2);
  return {v};
}
inline void store_partial(float* p, V x, int count) noexcept {
  if (count > 0) p[0] = vgetq_lane_f32(x.v, 0);
  if (count > 1) p[1] = vgetq_lane_f32(x.v, 1);
  if (count > 2) p[2] = vgetq_lane_f32(x.v, 2);
}
inline float reduce_max(V x) noexcept { return vmaxvq_f32(x.v); }
// 4 weights widened to float: binary16 by FCVTL, bfloat16 by a shift into the high half, int8
// by sign extension (its scale is applied to the sums; 4 bytes read, never past the panel).
inline V load_w(const float* p) noexcept { return load(p); }
inline V load_w(const Half* p) noexcept {
  return {vcvt_f32_f16(vreinterpret_f16_u16(vld1_u16(reinterpret_cast<const std::uint16_t*>(p))))};
}
inline V load_w(const BFloat16* p) noexcept {
  const uint32x4_t wide = vmovl_u16(vld1_u16(reinterpret_cast<const std::uint16_t*>(p)));
  return {vreinterpretq_f32_u32(vshlq_n_u32(wide, 16))};
}
inline V load_w(const std::int8_t* p) noexcept {
  std::int32_t four;
  std::memcpy(&four, p, sizeof four);
  const int16x8_t wide = vmovl_s8(vreinterpret_s8_s32(vdup_n_s32(four)));
  return {vcvtq_f32_s32(vmovl_s16(vget_low_s16(wide)))};
}
inline float reduce_add(V x) noexcept { return vaddvq_f32(x.v); }

// Tiles sized for 32 registers: LSTM 6 rows x 4 gates x 1 = 24 accumulators, GRU 8 x 3 x 1 = 24,
// RNN 6 x 1 x 4 = 24 (a whole block of 16 units). GEMM: 6 rows x 4 contiguous vectors (one
// cache line per k) for every kind.
constexpr int kTileRows4 = 6, kTileVecs4 = 1, kGemmRows4 = 6, kGemmCols4 = 4;
constexpr int kTileRows3 = 8, kTileVecs3 = 1, kGemmRows3 = 6, kGemmCols3 = 4;
constexpr int kTileRows1 = 6, kTileVecs1 = 4, kGemmRows1 = 6, kGemmCols1 = 4;

// Fused one-step kernel only for one row: as on AVX2, a batched tile covers part of a block
// (a quarter for LSTM/GRU), so it would re-read every panel line per tile.
constexpr int kFusedRows = 1;
constexpr std::size_t kFusedPanelBytes = 0;
// Split a step across threads when each gets this many recurrent flops: not measured on ARM
// hardware; set between the AVX2 and scalar figures.
constexpr double kSplitStepFlops = 30e3;
// Tiny networks: accumulators one group of units holds (32 q registers: an LSTM group of 16
// units).
constexpr int kTinyAccs = 16;

#include "kernels/simd-inl.h"

}  // namespace

const KernelTable& kernel_table() noexcept { return make_table("neon"); }

}  // namespace pyrnn::neon
