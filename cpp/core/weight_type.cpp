// Names of weight types and the portable binary16 widening.
#include "core/weight_type.h"

#include <cmath>

namespace pyrnn {

const char* weight_type_name(WeightType type) noexcept {
  switch (type) {
    case WeightType::F32:
      return "fp32";
    case WeightType::F16:
      return "fp16";
    case WeightType::BF16:
      return "bf16";
    case WeightType::I8:
      return "int8";
  }
  return "?";
}

float half_to_float(std::uint16_t bits) noexcept {
  const std::uint32_t sign = static_cast<std::uint32_t>(bits >> 15) << 31;
  const int exponent = (bits >> 10) & 0x1f;
  const std::uint32_t mantissa = bits & 0x3ffu;
  std::uint32_t wide;
  if (exponent == 0x1f) {
    wide = sign | 0x7f800000u | (mantissa << 13);  // inf, NaN (payload kept)
  } else if (exponent != 0) {
    wide = sign | (std::uint32_t(exponent - 15 + 127) << 23) | (mantissa << 13);
  } else {
    // Zero or subnormal: mantissa * 2^-24, exact in float.
    const float magnitude = std::ldexp(static_cast<float>(mantissa), -24);
    std::memcpy(&wide, &magnitude, sizeof wide);
    wide |= sign;
  }
  float value;
  std::memcpy(&value, &wide, sizeof value);
  return value;
}

}  // namespace pyrnn
