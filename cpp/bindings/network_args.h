// Reading a network's description and PyTorch-layout weights from Python arguments, checked
// against each other: shared by the Network constructor and the double-precision oracle.
#pragma once

#include <optional>
#include <string>
#include <tuple>
#include <vector>

#include "bindings/arrays.h"
#include "core/network.h"

namespace pyrnn::bindings {

using OptionalArray = std::optional<FloatArray>;
// (w_ih, w_hh, b_ih, b_hh, w_hr) per (layer, direction), layer-major. The matrices are float32
// (converted when they are not) or, with a narrow weight_type, arrays of its storage dtype.
using WeightTuple = std::tuple<py::object, py::object, OptionalArray, OptionalArray, py::object>;
// int8 only: (s_ih, s_hh, s_hr) per (layer, direction), one float32 scale per matrix row.
using ScaleTuple = std::tuple<FloatArray, FloatArray, OptionalArray>;
using OptionalScales = std::optional<std::vector<ScaleTuple>>;

// Raw pointers into the caller's weights (and the float32 conversions made of them, kept
// here): valid while this lives.
struct RawWeights {
  std::vector<RawLayerWeights> layers;
  std::vector<py::array> held;
};

// "lstm", "gru", "rnn_tanh", "rnn_relu" with the sizes, validated.
NetworkConfig make_config(const std::string& kind, int input_size, int hidden_size, int num_layers,
                          bool bidirectional, int proj_size);

// One matrix of the network as the core takes it, its shape checked; float32 converted, a
// narrow type taken as it is (int8 with its row scales, each checked finite and > 0).
WeightMatrix matrix(py::handle value, WeightType type, const std::vector<py::ssize_t>& shape,
                    const FloatArray* scales, const std::string& name, RawWeights& raw);

// Checks every weight's shape (and, for narrow types, dtype) against the config and returns
// raw pointers into the arrays, which the caller keeps alive.
RawWeights raw_weights(const NetworkConfig& config, const std::vector<WeightTuple>& weights,
                       const std::string& weight_type, const OptionalScales& scales);

}  // namespace pyrnn::bindings
