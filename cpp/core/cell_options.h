// What a recurrent cell may do beyond PyTorch's equations, as ONNX's LSTM, GRU and RNN operators
// define them: other activation functions (with their alpha and beta), clipping of every gate's
// pre-activation, LSTM peepholes and coupled input-forget gates, and the GRU that resets before
// the recurrent product (linear_before_reset = 0). The defaults are PyTorch's cells exactly; a
// network whose options are the defaults runs the PyTorch kernels, any other the general ones.
#pragma once

#include <cstdint>

namespace pyrnn {

// ONNX's activation functions for recurrent operators (alpha and beta as the spec names them).
enum class Activation : std::uint8_t {
  Sigmoid,
  Tanh,
  Relu,
  Affine,           // alpha * x + beta
  LeakyRelu,        // x >= 0 ? x : alpha * x
  ThresholdedRelu,  // x >= alpha ? x : 0  (x > alpha in ONNX Runtime; equal only at alpha)
  ScaledTanh,       // alpha * tanh(beta * x)
  HardSigmoid,      // min(max(alpha * x + beta, 0), 1)
  Elu,              // x >= 0 ? x : alpha * (e^x - 1)
  Softsign,         // x / (1 + |x|)
  Softplus,         // log(1 + e^x)
};

struct ActivationFn {
  Activation kind = Activation::Sigmoid;
  float alpha = 0.0f, beta = 0.0f;
  bool operator==(const ActivationFn& o) const noexcept {
    return kind == o.kind && alpha == o.alpha && beta == o.beta;
  }
};

struct CellOptions {
  // f: the gates (LSTM i, f, o; GRU z, r) or an RNN's only activation; g: the candidate (LSTM
  // c, GRU n); h: LSTM's output activation, applied to the cell state.
  ActivationFn f{Activation::Sigmoid, 0.0f, 0.0f}, g{Activation::Tanh, 0.0f, 0.0f},
      h{Activation::Tanh, 0.0f, 0.0f};
  float clip = 0.0f;                // > 0: every gate pre-activation clamped to [-clip, clip]
  bool input_forget = false;        // LSTM: f = 1 - i
  bool peepholes = false;           // LSTM: P (i, f, o) * c added to the gates
  bool linear_before_reset = true;  // GRU: r * (W_hn h + b_hn); false: W_hn (r * h) + b_hn

  // Set when any option above differs from PyTorch's cell (made so by the recurrent graph op,
  // which knows the kind's defaults): the network then runs the general kernels.
  bool general = false;

  // The GRU that resets before the recurrent product needs every block's r before any block's
  // candidate: its step kernel must be given all blocks in one call.
  bool whole_step() const noexcept { return general && !linear_before_reset; }
};

}  // namespace pyrnn
