// AVX2+FMA probe loops, built with -mavx2 -mfma only and called only when the CPU has both.
#include <immintrin.h>

#include "probe/probe.h"

namespace pyrnn::probe::avx2 {
namespace {

constexpr int kLanes = 8;
// 12 independent FMA chains: FMA latency 4 cycles x 2 pipes = 8 in flight saturates both pipes
// on Zen and Intel cores; 12 leaves margin for a 5-cycle latency or a third pipe's worth.
constexpr int kChains = 12;
// 8 accumulators for the read loop: add latency 3 x 2 pipes = 6 adds in flight.
constexpr int kReadAccumulators =
    static_cast<int>(kReadBlock) / kLanes < 8 ? static_cast<int>(kReadBlock) / kLanes : 8;

float horizontal_sum(__m256 v) noexcept {
  alignas(64) float lanes[kLanes];
  _mm256_storeu_ps(lanes, v);
  float total = 0.0f;
  for (float lane : lanes) total += lane;
  return total;
}

std::uint64_t fma_loop(std::int64_t iterations, float* sink) noexcept {
  __m256 acc[kChains];
  for (int c = 0; c < kChains; ++c) acc[c] = _mm256_set1_ps(1.0f + 0.01f * static_cast<float>(c));
  // x -> 0.999999 x + 1e-6 keeps every value near 1: no overflow, no denormals.
  const __m256 mul = _mm256_set1_ps(0.999999f), add = _mm256_set1_ps(1e-6f);
  for (std::int64_t i = 0; i < iterations; ++i) {
    for (int c = 0; c < kChains; ++c) acc[c] = _mm256_fmadd_ps(acc[c], mul, add);
  }
  __m256 total = acc[0];
  for (int c = 1; c < kChains; ++c) total = _mm256_add_ps(total, acc[c]);
  *sink = horizontal_sum(total);
  return static_cast<std::uint64_t>(iterations) * kChains * kLanes * 2;
}

float read_sum(const float* data, std::size_t count) noexcept {
  __m256 acc[kReadAccumulators];
  for (auto& a : acc) a = _mm256_setzero_ps();
  for (std::size_t i = 0; i < count; i += kReadAccumulators * kLanes) {
    for (int k = 0; k < kReadAccumulators; ++k)
      acc[k] = _mm256_add_ps(acc[k], _mm256_load_ps(data + i + k * kLanes));
  }
  __m256 total = acc[0];
  for (int k = 1; k < kReadAccumulators; ++k) total = _mm256_add_ps(total, acc[k]);
  return horizontal_sum(total);
}

}  // namespace

const ProbeLoops& loops() noexcept {
  static const ProbeLoops table{"avx2", fma_loop, read_sum};
  return table;
}

}  // namespace pyrnn::probe::avx2
