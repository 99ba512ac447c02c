// Portable probe loops: the fallback on any CPU. The compiler may vectorise them with the
// baseline ISA (SSE2 on x86-64), which is exactly what "scalar" code can reach.
#include "probe/probe.h"

namespace pyrnn::probe::scalar {
namespace {

constexpr int kChains = 16;  // independent chains: more than latency x pipes on current cores

std::uint64_t fma_loop(std::int64_t iterations, float* sink) noexcept {
  float acc[kChains];
  for (int c = 0; c < kChains; ++c) acc[c] = 1.0f + 0.01f * static_cast<float>(c);
  // x -> 0.999999 x + 1e-6 keeps every value near 1: no overflow, no denormals.
  const float mul = 0.999999f, add = 1e-6f;
  for (std::int64_t i = 0; i < iterations; ++i) {
    for (int c = 0; c < kChains; ++c) acc[c] = acc[c] * mul + add;
  }
  float total = 0.0f;
  for (int c = 0; c < kChains; ++c) total += acc[c];
  *sink = total;
  return static_cast<std::uint64_t>(iterations) * kChains * 2;
}

float read_sum(const float* data, std::size_t count) noexcept {
  // Integer adds of the bit patterns: associative, so the compiler may vectorise freely.
  const auto* words = reinterpret_cast<const std::uint32_t*>(data);
  std::uint32_t acc[8] = {};
  for (std::size_t i = 0; i < count; i += 8) {
    for (int k = 0; k < 8; ++k) acc[k] += words[i + k];
  }
  std::uint32_t total = 0;
  for (std::uint32_t value : acc) total += value;
  return static_cast<float>(total);
}

}  // namespace

const ProbeLoops& loops() noexcept {
  static const ProbeLoops table{"scalar", fma_loop, read_sum};
  return table;
}

}  // namespace pyrnn::probe::scalar
