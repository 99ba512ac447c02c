// An immutable, packed recurrent network: configuration plus per-(layer, direction) weights in
// the kernels' layout. Built once from PyTorch-layout weights; shared read-only by any number of
// forward calls and streams on any number of threads.
#pragma once

#include <vector>

#include "core/aligned_buffer.h"
#include "core/cell_options.h"
#include "core/dims.h"
#include "core/packed_panels.h"

namespace pyrnn {

struct NetworkConfig {
  CellKind kind = CellKind::Lstm;
  int input_size = 0;
  int hidden_size = 0;
  int num_layers = 1;
  bool bidirectional = false;
  int proj_size = 0;    // LSTM only; 0 = no projection
  CellOptions options;  // ONNX's cell variants (see core/cell_options.h); default PyTorch's

  int directions() const noexcept { return bidirectional ? 2 : 1; }
  int gates() const noexcept { return gate_count(kind); }
  // Features of h: P with a projection, else H.
  int output_size() const noexcept { return proj_size > 0 ? proj_size : hidden_size; }
  int layer_input_size(int layer) const noexcept {
    return layer == 0 ? input_size : output_size() * directions();
  }
  // Throws std::invalid_argument if sizes are inconsistent (Python validates first).
  void validate() const;
};

// Weights of one (layer, direction) in PyTorch layout: w_ih (G*H, I_l), w_hh (G*H, P),
// b_ih and b_hh (G*H) or null when bias=False, w_hr (P, H) or null without projection. The
// matrices may be of a narrow weight type (all three the same); biases are always fp32.
struct RawLayerWeights {
  WeightMatrix w_ih;
  WeightMatrix w_hh;
  const float* b_ih = nullptr;
  const float* b_hh = nullptr;
  WeightMatrix w_hr;
  const float* peephole = nullptr;  // LSTM with options.peepholes: (3H) in the order i, f, o
};

struct PackedLayer {
  PackedPanels w_ih;
  PackedPanels w_hh;
  // Added to the input projection: b_ih + b_hh, except GRU's n gate, which gets b_in only.
  AlignedBuffer input_bias;
  // GRU only: b_hn, which PyTorch applies inside r * (W_hn h + b_hn).
  AlignedBuffer recurrent_bias;
  PackedPanels w_hr;  // LSTM projection (1 gate, P units, K = H); empty without projection
  // LSTM with peepholes: i, f, o weights, each padded to blocks*16 (3 * padded H floats).
  AlignedBuffer peephole;
};

// Packs the biases of one (layer, direction) into `packed`: b_ih, b_hh (G*H, or null) folded
// as PackedLayer describes.
void pack_biases(const NetworkConfig& config, const float* b_ih, const float* b_hh,
                 PackedLayer& packed);

class Network {
 public:
  // `weights` holds num_layers * directions entries, layer-major then direction.
  Network(const NetworkConfig& config, const std::vector<RawLayerWeights>& weights);
  // Adopts layers packed one matrix at a time (so that the PyTorch-layout weights never all
  // exist at once); checks that every matrix is there with the sizes and type of `config`.
  Network(const NetworkConfig& config, std::vector<PackedLayer> layers);

  const NetworkConfig& config() const noexcept { return config_; }
  // How the matrices are stored (every layer the same).
  WeightType weight_type() const noexcept { return layers_.front().w_hh.type(); }
  const PackedLayer& layer(int layer, int direction) const noexcept {
    return layers_[layer * config_.directions() + direction];
  }

 private:
  NetworkConfig config_;
  std::vector<PackedLayer> layers_;
};

}  // namespace pyrnn
