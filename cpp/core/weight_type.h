// How weights are stored: fp32, or narrower types that move fewer bytes per step (the time of a
// batch-1 step is its weight bytes over the bandwidth of the cache that holds them). Arithmetic
// stays fp32: kernels widen each weight as they load it. int8 weights carry one fp32 scale per
// output row (a gate unit), weight = q * scale.
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstring>

namespace pyrnn {

enum class WeightType : std::uint8_t { F32, F16, BF16, I8 };

constexpr std::size_t weight_size(WeightType type) noexcept {
  return type == WeightType::F32 ? 4 : type == WeightType::I8 ? 1 : 2;
}

const char* weight_type_name(WeightType type) noexcept;

// Storage types the kernels overload on: IEEE binary16 and bfloat16 bit patterns.
struct Half {
  std::uint16_t bits;
};
struct BFloat16 {
  std::uint16_t bits;
};
static_assert(sizeof(Half) == 2 && sizeof(BFloat16) == 2, "16-bit weight storage");

// Exact widening, in portable code (the scalar kernels and the oracle).
float half_to_float(std::uint16_t bits) noexcept;
inline float bfloat16_to_float(std::uint16_t bits) noexcept {
  const std::uint32_t wide = std::uint32_t{bits} << 16;
  float value;
  std::memcpy(&value, &wide, sizeof value);
  return value;
}

// One weight matrix (rows x cols, row-major) as given to the packing code: fp32 values, or a
// narrow type with, for int8, one scale per row.
struct WeightMatrix {
  WeightType type = WeightType::F32;
  const void* data = nullptr;
  const float* scales = nullptr;

  WeightMatrix() = default;
  WeightMatrix(const float* values) noexcept : data(values) {}  // NOLINT: fp32 is the default
  WeightMatrix(WeightType t, const void* values, const float* row_scales) noexcept
      : type(t), data(values), scales(row_scales) {}

  explicit operator bool() const noexcept { return data != nullptr; }
  // Element (row, col) of a matrix with `cols` columns, widened to float (scaled for int8).
  float at(std::size_t row, std::size_t col, std::size_t cols) const noexcept {
    const std::size_t i = row * cols + col;
    switch (type) {
      case WeightType::F32:
        return static_cast<const float*>(data)[i];
      case WeightType::F16:
        return half_to_float(static_cast<const std::uint16_t*>(data)[i]);
      case WeightType::BF16:
        return bfloat16_to_float(static_cast<const std::uint16_t*>(data)[i]);
      case WeightType::I8:
        return static_cast<float>(static_cast<const std::int8_t*>(data)[i]) * scales[row];
    }
    return 0.0f;
  }
};

}  // namespace pyrnn
