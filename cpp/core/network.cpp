// Validating a network's sizes and packing its PyTorch-layout weights once (see network.h),
// including the bias folding: b_ih + b_hh, except GRU's b_hn, which stays apart.
#include "core/network.h"

#include <cstdint>
#include <limits>
#include <stdexcept>
#include <string>

namespace pyrnn {

void NetworkConfig::validate() const {
  auto require = [](bool ok, const std::string& message) {
    if (!ok) throw std::invalid_argument("pyrnn core: " + message);
  };
  require(input_size >= 1, "input_size must be >= 1, got " + std::to_string(input_size));
  require(hidden_size >= 1, "hidden_size must be >= 1, got " + std::to_string(hidden_size));
  require(num_layers >= 1, "num_layers must be >= 1, got " + std::to_string(num_layers));
  require(proj_size >= 0 && proj_size < hidden_size,
          "proj_size must be in [0, hidden_size), got " + std::to_string(proj_size));
  require(proj_size == 0 || kind == CellKind::Lstm, "proj_size is only supported by LSTM");
  // The core indexes with int: every width derived from the sizes must fit, computed here in
  // 64 bits so that a huge size is refused instead of wrapping (Python checks this first).
  constexpr std::int64_t kIntMax = std::numeric_limits<int>::max();
  const auto padded = [](std::int64_t units) {
    return (units + kUnitBlock - 1) / kUnitBlock * kUnitBlock;
  };
  const std::int64_t gate_width = std::int64_t{gates()} * padded(hidden_size);
  const std::int64_t layer_width = std::int64_t{directions()} * padded(output_size());
  const std::int64_t entries = std::int64_t{num_layers} * directions();
  require(gate_width <= kIntMax,
          "gates * padded hidden_size = " + std::to_string(gate_width) + " exceeds 2^31-1");
  require(layer_width <= kIntMax,
          "directions * padded output size = " + std::to_string(layer_width) + " exceeds 2^31-1");
  require(!options.general || !options.peepholes || kind == CellKind::Lstm,
          "peepholes are only supported by LSTM");
  require(!options.general || !options.input_forget || kind == CellKind::Lstm,
          "input_forget is only supported by LSTM");
  require(!options.general || options.linear_before_reset || kind == CellKind::Gru,
          "linear_before_reset is a GRU option");
  require(!options.general || proj_size == 0, "ONNX cell options take no projection");
  require(options.clip >= 0.0f, "clip must be >= 0");
  require(entries <= kIntMax,
          "num_layers * directions = " + std::to_string(entries) + " exceeds 2^31-1");
}

void pack_biases(const NetworkConfig& config, const float* b_ih, const float* b_hh,
                 PackedLayer& packed) {
  const int gates = config.gates(), hidden = config.hidden_size;
  if (config.kind == CellKind::Gru) {
    // r and z take both biases up front; n keeps b_hn apart for r * (W_hn h + b_hn).
    const int rz = 2 * hidden;
    std::vector<float> folded(static_cast<std::size_t>(gates) * hidden, 0.0f);
    for (int row = 0; row < gates * hidden; ++row) {
      if (b_ih) folded[row] += b_ih[row];
      if (b_hh && row < rz) folded[row] += b_hh[row];
    }
    packed.input_bias = pack_bias(folded.data(), nullptr, gates, hidden);
    packed.recurrent_bias = pack_bias(b_hh ? b_hh + rz : nullptr, nullptr, 1, hidden);
  } else {
    packed.input_bias = pack_bias(b_ih, b_hh, gates, hidden);
  }
}

Network::Network(const NetworkConfig& config, std::vector<PackedLayer> layers)
    : config_(config), layers_(std::move(layers)) {
  config_.validate();
  const int expected = config_.num_layers * config_.directions();
  if (static_cast<int>(layers_.size()) != expected)
    throw std::invalid_argument("pyrnn core: expected " + std::to_string(expected) +
                                " packed layers, got " + std::to_string(layers_.size()));
  const int gates = config_.gates(), hidden = config_.hidden_size;
  const WeightType type = layers_.front().w_hh.type();
  const auto fits = [type](const PackedPanels& panels, int g, int units, int k) {
    return !panels.empty() && panels.type() == type && panels.gates() == g &&
           panels.units() == units && panels.k() == k;
  };
  for (int index = 0; index < expected; ++index) {
    const PackedLayer& packed = layers_[index];
    const int layer = index / config_.directions();
    const bool ok =
        fits(packed.w_ih, gates, hidden, config_.layer_input_size(layer)) &&
        fits(packed.w_hh, gates, hidden, config_.output_size()) &&
        (config_.proj_size == 0 ? packed.w_hr.empty()
                                : fits(packed.w_hr, 1, config_.proj_size, hidden)) &&
        packed.input_bias.size() == static_cast<std::size_t>(gates) * padded_units(hidden) &&
        (config_.kind != CellKind::Gru ||
         packed.recurrent_bias.size() == static_cast<std::size_t>(padded_units(hidden))) &&
        (!config_.options.general || !config_.options.peepholes ||
         packed.peephole.size() == static_cast<std::size_t>(3) * padded_units(hidden));
    if (!ok)
      throw std::invalid_argument("pyrnn core: packed layer entry " + std::to_string(index) +
                                  " is missing a matrix or does not match the network");
  }
}

Network::Network(const NetworkConfig& config, const std::vector<RawLayerWeights>& weights)
    : config_(config) {
  config_.validate();
  const int expected = config_.num_layers * config_.directions();
  if (static_cast<int>(weights.size()) != expected) {
    throw std::invalid_argument("pyrnn core: expected " + std::to_string(expected) +
                                " weight sets, got " + std::to_string(weights.size()));
  }
  const int gates = config_.gates(), hidden = config_.hidden_size;
  layers_.reserve(weights.size());
  for (int index = 0; index < expected; ++index) {
    const RawLayerWeights& raw = weights[index];
    if (!raw.w_ih || !raw.w_hh || (config_.proj_size > 0 && !raw.w_hr)) {
      throw std::invalid_argument("pyrnn core: missing weight matrix for layer entry " +
                                  std::to_string(index));
    }
    const WeightType type = weights.front().w_hh.type;
    if (raw.w_ih.type != type || raw.w_hh.type != type ||
        (config_.proj_size > 0 && raw.w_hr.type != type))
      throw std::invalid_argument("pyrnn core: every weight matrix of a network has one type");
    PackedLayer packed;
    const int layer = index / config_.directions();
    packed.w_ih = PackedPanels(raw.w_ih, gates, hidden, config_.layer_input_size(layer));
    packed.w_hh = PackedPanels(raw.w_hh, gates, hidden, config_.output_size());
    pack_biases(config_, raw.b_ih, raw.b_hh, packed);
    if (config_.proj_size > 0) packed.w_hr = PackedPanels(raw.w_hr, 1, config_.proj_size, hidden);
    if (config_.options.general && config_.options.peepholes) {
      if (!raw.peephole)
        throw std::invalid_argument("pyrnn core: missing peephole weights for layer entry " +
                                    std::to_string(index));
      packed.peephole = pack_bias(raw.peephole, nullptr, 3, hidden);
    }
    layers_.push_back(std::move(packed));
  }
}

}  // namespace pyrnn
