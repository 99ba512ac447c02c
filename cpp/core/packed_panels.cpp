// Re-laying-out one PyTorch gate matrix into per-block panels of its weight type, and its bias
// into the same column order (layout in packed_panels.h).
#include "core/packed_panels.h"

#include <cstring>
#include <stdexcept>
#include <utility>

namespace pyrnn {

namespace {

// Calls copy(row_major_offset, panel_offset) for every element of the packed matrix, offsets
// in elements: the one place that spells the permutation, for packing and unpacking alike.
template <class Copy>
void for_each_element(int gates, int units, int k, int row_width, Copy copy) {
  const std::size_t panel_elements = static_cast<std::size_t>(k) * row_width;
  for (int j = 0; j < block_count(units); ++j) {
    for (int g = 0; g < gates; ++g) {
      for (int u = 0; u < kUnitBlock; ++u) {
        const int unit = j * kUnitBlock + u;
        if (unit >= units) break;  // padding stays zero (0 in every type)
        const std::size_t row = static_cast<std::size_t>(g) * units + unit;
        // kk * row_width in size_t: k * 64 exceeds int for k > 2^25.
        const std::size_t column = j * panel_elements + g * kUnitBlock + u;
        for (std::size_t kk = 0; kk < static_cast<std::size_t>(k); ++kk)
          copy(row * k + kk, column + kk * row_width);
      }
    }
  }
}

}  // namespace

PackedPanels::PackedPanels(const WeightMatrix& weights, int gates, int units, int k)
    : type_(weights.type), gates_(gates), units_(units), k_(k) {
  if (weights.type == WeightType::I8 && weights.scales == nullptr)
    throw std::invalid_argument("pyrnn core: int8 weights need one scale per row");
  const std::size_t element = weight_size(type_);
  const std::size_t panel_elements = checked_mul(static_cast<std::size_t>(k), row_width());
  const std::size_t total = checked_mul(panel_elements, blocks());
  // Storage is counted in floats; narrow elements are packed into them.
  auto storage = std::make_shared<AlignedBuffer>((checked_mul(total, element) + sizeof(float) - 1) /
                                                 sizeof(float));
  auto* out = reinterpret_cast<unsigned char*>(storage->data());
  const auto* in = static_cast<const unsigned char*>(weights.data);
  for_each_element(gates, units, k, row_width(), [&](std::size_t from, std::size_t to) {
    std::memcpy(out + to * element, in + from * element, element);
  });
  data_ = storage->data();
  storage_ = std::move(storage);
  if (type_ == WeightType::I8) scales_ = pack_bias(weights.scales, nullptr, gates, units);
}

void PackedPanels::unpack(void* out) const noexcept {
  const std::size_t element = weight_size(type_);
  const auto* in = reinterpret_cast<const unsigned char*>(data_);
  auto* dst = static_cast<unsigned char*>(out);
  for_each_element(gates_, units_, k_, row_width(), [&](std::size_t to, std::size_t from) {
    std::memcpy(dst + to * element, in + from * element, element);
  });
}

AlignedBuffer pack_bias(const float* bias, const float* extra, int gates, int units) {
  AlignedBuffer packed(
      checked_mul(checked_mul(static_cast<std::size_t>(block_count(units)), gates), kUnitBlock));
  for (int g = 0; g < gates; ++g) {
    for (int unit = 0; unit < units; ++unit) {
      const int j = unit / kUnitBlock, u = unit % kUnitBlock;
      float value = 0.0f;
      if (bias != nullptr) value += bias[g * units + unit];
      if (extra != nullptr) value += extra[g * units + unit];
      packed.data()[(j * gates + g) * kUnitBlock + u] = value;
    }
  }
  return packed;
}

}  // namespace pyrnn
