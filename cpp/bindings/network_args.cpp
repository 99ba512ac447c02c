#include "bindings/network_args.h"

#include <cmath>

namespace pyrnn::bindings {
namespace {

CellKind parse_kind(const std::string& kind) {
  if (kind == "rnn_tanh") return CellKind::RnnTanh;
  if (kind == "rnn_relu") return CellKind::RnnRelu;
  if (kind == "lstm") return CellKind::Lstm;
  if (kind == "gru") return CellKind::Gru;
  throw std::invalid_argument("kind: expected 'rnn_tanh', 'rnn_relu', 'lstm' or 'gru', got '" +
                              kind + "'");
}

}  // namespace

WeightMatrix matrix(py::handle value, WeightType type, const std::vector<py::ssize_t>& shape,
                    const FloatArray* scales, const std::string& name, RawWeights& raw) {
  if (type == WeightType::F32) {
    FloatArray array = py::reinterpret_borrow<py::object>(value).cast<FloatArray>();
    require_shape(array, shape, name.c_str());
    raw.held.push_back(array);
    return WeightMatrix(array.data());
  }
  py::array array = py::reinterpret_borrow<py::object>(value).cast<py::array>();
  require_weight_dtype(array, type, name);
  require_shape(array, shape, name.c_str());
  raw.held.push_back(array);
  if (type != WeightType::I8) return {type, array.data(), nullptr};
  const std::string scale_name = name + " scales";
  require_shape(*scales, {shape[0]}, scale_name.c_str());
  for (py::ssize_t row = 0; row < shape[0]; ++row) {
    const float scale = scales->data()[row];
    if (!(std::isfinite(scale) && scale > 0.0f))
      throw std::invalid_argument(scale_name + ": row " + std::to_string(row) + " has scale " +
                                  std::to_string(scale) + "; expected finite and > 0");
  }
  return {type, array.data(), scales->data()};
}

RawWeights raw_weights(const NetworkConfig& config, const std::vector<WeightTuple>& weights,
                       const std::string& weight_type, const OptionalScales& scales) {
  config.validate();
  const WeightType type = parse_weight_type(weight_type, "Network");
  const int D = config.directions();
  if (static_cast<int>(weights.size()) != config.num_layers * D) {
    throw std::invalid_argument("weights: expected " + std::to_string(config.num_layers * D) +
                                " (layer, direction) entries, got " +
                                std::to_string(weights.size()));
  }
  if ((type == WeightType::I8) != scales.has_value())
    throw std::invalid_argument(type == WeightType::I8
                                    ? "scales: required for weight_type 'int8' (one list entry "
                                      "(s_ih, s_hh, s_hr) per (layer, direction))"
                                    : "scales: only weight_type 'int8' takes scales, got "
                                      "weight_type '" +
                                          weight_type + "'");
  if (scales && scales->size() != weights.size())
    throw std::invalid_argument("scales: expected " + std::to_string(weights.size()) +
                                " (layer, direction) entries, got " +
                                std::to_string(scales->size()));
  const py::ssize_t GH = static_cast<py::ssize_t>(config.gates()) * config.hidden_size;
  RawWeights raw;
  raw.layers.reserve(weights.size());  // no regrowth copies held at once with millions of layers
  for (std::size_t index = 0; index < weights.size(); ++index) {
    const auto& [w_ih, w_hh, b_ih, b_hh, w_hr] = weights[index];
    const ScaleTuple* s = scales ? &(*scales)[index] : nullptr;
    const int layer = static_cast<int>(index) / D;
    RawLayerWeights entry;
    entry.w_ih = matrix(w_ih, type, {GH, config.layer_input_size(layer)},
                        s ? &std::get<0>(*s) : nullptr, "w_ih", raw);
    entry.w_hh =
        matrix(w_hh, type, {GH, config.output_size()}, s ? &std::get<1>(*s) : nullptr, "w_hh", raw);
    if (b_ih) require_shape(*b_ih, {GH}, "b_ih");
    if (b_hh) require_shape(*b_hh, {GH}, "b_hh");
    entry.b_ih = b_ih ? b_ih->data() : nullptr;
    entry.b_hh = b_hh ? b_hh->data() : nullptr;
    if (config.proj_size > 0) {
      if (w_hr.is_none()) throw std::invalid_argument("w_hr: required when proj_size > 0");
      if (s && !std::get<2>(*s))
        throw std::invalid_argument("scales: s_hr required when proj_size > 0");
      entry.w_hr = matrix(w_hr, type, {config.proj_size, config.hidden_size},
                          s ? &*std::get<2>(*s) : nullptr, "w_hr", raw);
    }
    raw.layers.push_back(entry);
  }
  return raw;
}

NetworkConfig make_config(const std::string& kind, int input_size, int hidden_size, int num_layers,
                          bool bidirectional, int proj_size) {
  NetworkConfig config{parse_kind(kind), input_size, hidden_size, num_layers,
                       bidirectional,    proj_size,  {}};
  config.validate();
  return config;
}

}  // namespace pyrnn::bindings
