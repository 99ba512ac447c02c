// The oracle's cells and whole forward pass (see reference.h): torch.nn's equations written out
// literally, one row and one step at a time, dot products accumulated in double.
#include "reference/reference.h"

#include <algorithm>
#include <cmath>
#include <cstring>

namespace pyrnn::reference {
namespace {

double sigmoid(double x) { return 1.0 / (1.0 + std::exp(-x)); }

// y[r] = sum_k w[r, k] * v[k] + (bias ? bias[r] : 0), w row-major (rows, k) of any weight type
// (widened exactly: the oracle of a narrow model is the math on its dequantized weights).
std::vector<double> affine(const WeightMatrix& w, const float* bias, const float* v, int rows,
                           int k) {
  std::vector<double> y(rows, 0.0);
  for (int r = 0; r < rows; ++r) {
    double sum = bias ? bias[r] : 0.0;
    for (int i = 0; i < k; ++i)
      sum += static_cast<double>(w.at(static_cast<std::size_t>(r), i, k)) * v[i];
    y[r] = sum;
  }
  return y;
}

// ONNX's activation functions (core/cell_options.h), in double.
double activate(double x, const ActivationFn& a) {
  switch (a.kind) {
    case Activation::Sigmoid:
      return sigmoid(x);
    case Activation::Tanh:
      return std::tanh(x);
    case Activation::Relu:
      return x < 0 ? 0.0 : x;
    case Activation::Affine:
      return a.alpha * x + a.beta;
    case Activation::LeakyRelu:
      return x < 0 ? a.alpha * x : x;
    case Activation::ThresholdedRelu:
      return x < a.alpha ? 0.0 : x;
    case Activation::ScaledTanh:
      return a.alpha * std::tanh(a.beta * x);
    case Activation::HardSigmoid:
      return std::min(std::max(a.alpha * x + a.beta, 0.0), 1.0);
    case Activation::Elu:
      return x >= 0 ? x : a.alpha * std::expm1(x);
    case Activation::Softsign:
      return x / (1.0 + std::fabs(x));
    case Activation::Softplus:
      return std::log1p(std::exp(x));
  }
  return x;
}

// The general cells: ONNX's LSTM, GRU and RNN equations as the operator spec writes them, with
// clip on every gate's pre-activation.
void general_step(const NetworkConfig& config, const RawLayerWeights& w, int input_size,
                  const float* x, const float* h, const float* c, float* h_out, float* c_out) {
  const CellOptions& o = config.options;
  const int H = config.hidden_size, G = config.gates();
  const auto act = [&](double v, const ActivationFn& fn) {
    if (o.clip > 0) v = std::min(std::max(v, -static_cast<double>(o.clip)), double{o.clip});
    return activate(v, fn);
  };
  const std::vector<double> gx = affine(w.w_ih, w.b_ih, x, G * H, input_size);
  const std::vector<double> gh = affine(w.w_hh, w.b_hh, h, G * H, H);
  if (config.kind == CellKind::Lstm) {
    for (int u = 0; u < H; ++u) {
      const double p_i = o.peepholes ? w.peephole[u] : 0, p_f = o.peepholes ? w.peephole[H + u] : 0,
                   p_o = o.peepholes ? w.peephole[2 * H + u] : 0;
      const double i = act(gx[u] + gh[u] + p_i * c[u], o.f);
      const double f = o.input_forget ? 1.0 - i : act(gx[H + u] + gh[H + u] + p_f * c[u], o.f);
      const double g = act(gx[2 * H + u] + gh[2 * H + u], o.g);
      const double c_new = f * c[u] + i * g;
      const double out = act(gx[3 * H + u] + gh[3 * H + u] + p_o * c_new, o.f);
      c_out[u] = static_cast<float>(c_new);
      h_out[u] = static_cast<float>(out * activate(c_new, o.h));
    }
  } else if (config.kind == CellKind::Gru) {
    std::vector<float> rh(H);
    std::vector<double> r(H);
    for (int u = 0; u < H; ++u) {
      r[u] = act(gx[u] + gh[u], o.f);
      rh[u] = static_cast<float>(r[u] * h[u]);
    }
    // linear_before_reset = 0: (r * h) W_hn + b_hn, with r * h rounded to float as kernels keep it.
    std::vector<double> by_rh;
    if (!o.linear_before_reset) {
      const WeightMatrix w_hn{w.w_hh.type,
                              static_cast<const char*>(w.w_hh.data) +
                                  static_cast<std::size_t>(2) * H * H * weight_size(w.w_hh.type),
                              w.w_hh.scales ? w.w_hh.scales + 2 * H : nullptr};
      by_rh = affine(w_hn, w.b_hh ? w.b_hh + 2 * H : nullptr, rh.data(), H, H);
    }
    for (int u = 0; u < H; ++u) {
      const double z = act(gx[H + u] + gh[H + u], o.f);
      const double n = o.linear_before_reset ? act(gx[2 * H + u] + r[u] * gh[2 * H + u], o.g)
                                             : act(gx[2 * H + u] + by_rh[u], o.g);
      h_out[u] = static_cast<float>((1.0 - z) * n + z * h[u]);
    }
  } else {
    for (int u = 0; u < H; ++u) h_out[u] = static_cast<float>(act(gx[u] + gh[u], o.f));
  }
}

}  // namespace

void cell_step(const NetworkConfig& config, const RawLayerWeights& w, int input_size,
               const float* x, const float* h, const float* c, float* h_out, float* c_out) {
  if (config.options.general) {
    general_step(config, w, input_size, x, h, c, h_out, c_out);
    return;
  }
  const int H = config.hidden_size, P = config.output_size(), G = config.gates();
  const std::vector<double> gx = affine(w.w_ih, w.b_ih, x, G * H, input_size);
  const std::vector<double> gh = affine(w.w_hh, w.b_hh, h, G * H, P);
  switch (config.kind) {
    case CellKind::RnnTanh:
    case CellKind::RnnRelu:
      for (int u = 0; u < H; ++u) {
        const double a = gx[u] + gh[u];
        // relu written so that NaN propagates, as torch.relu does.
        h_out[u] =
            static_cast<float>(config.kind == CellKind::RnnTanh ? std::tanh(a) : (a < 0 ? 0.0 : a));
      }
      break;
    case CellKind::Lstm: {
      std::vector<float> m(H);  // o * tanh(c'), before the optional projection
      for (int u = 0; u < H; ++u) {
        const double i = sigmoid(gx[u] + gh[u]);
        const double f = sigmoid(gx[H + u] + gh[H + u]);
        const double g = std::tanh(gx[2 * H + u] + gh[2 * H + u]);
        const double o = sigmoid(gx[3 * H + u] + gh[3 * H + u]);
        const double c_new = f * c[u] + i * g;
        c_out[u] = static_cast<float>(c_new);
        m[u] = static_cast<float>(o * std::tanh(c_new));
      }
      if (config.proj_size > 0) {
        const std::vector<double> projected = affine(w.w_hr, nullptr, m.data(), P, H);
        for (int p = 0; p < P; ++p) h_out[p] = static_cast<float>(projected[p]);
      } else {
        std::memcpy(h_out, m.data(), H * sizeof(float));
      }
      break;
    }
    case CellKind::Gru:
      for (int u = 0; u < H; ++u) {
        const double r = sigmoid(gx[u] + gh[u]);
        const double z = sigmoid(gx[H + u] + gh[H + u]);
        const double n = std::tanh(gx[2 * H + u] + r * gh[2 * H + u]);
        h_out[u] = static_cast<float>((1.0 - z) * n + z * h[u]);
      }
      break;
  }
}

void forward(const NetworkConfig& config, const std::vector<RawLayerWeights>& weights, int steps,
             int rows, const float* x, const float* h0, const float* c0, float* out, float* hn,
             float* cn) {
  config.validate();
  const int L = config.num_layers, D = config.directions();
  const int H = config.hidden_size, P = config.output_size();
  std::vector<float> layer_in(x, x + static_cast<std::size_t>(steps) * rows * config.input_size);
  std::vector<float> layer_out;
  for (int l = 0; l < L; ++l) {
    const int in_features = config.layer_input_size(l);
    layer_out.assign(static_cast<std::size_t>(steps) * rows * D * P, 0.0f);
    for (int d = 0; d < D; ++d) {
      const int index = l * D + d;
      for (int n = 0; n < rows; ++n) {
        std::vector<float> h(P, 0.0f), c(H, 0.0f), h_next(P), c_next(H);
        if (h0) std::memcpy(h.data(), h0 + (static_cast<std::size_t>(index) * rows + n) * P, P * 4);
        if (c0 && config.kind == CellKind::Lstm)
          std::memcpy(c.data(), c0 + (static_cast<std::size_t>(index) * rows + n) * H, H * 4);
        for (int s = 0; s < steps; ++s) {
          const int t = d == 0 ? s : steps - 1 - s;
          const float* xt =
              layer_in.data() + (static_cast<std::size_t>(t) * rows + n) * in_features;
          cell_step(config, weights[index], in_features, xt, h.data(), c.data(), h_next.data(),
                    c_next.data());
          h.swap(h_next);
          c.swap(c_next);
          std::memcpy(layer_out.data() + (static_cast<std::size_t>(t) * rows + n) * D * P + d * P,
                      h.data(), P * 4);
        }
        if (hn) std::memcpy(hn + (static_cast<std::size_t>(index) * rows + n) * P, h.data(), P * 4);
        if (cn && config.kind == CellKind::Lstm)
          std::memcpy(cn + (static_cast<std::size_t>(index) * rows + n) * H, c.data(), H * 4);
      }
    }
    layer_in.swap(layer_out);
  }
  std::copy(layer_in.begin(), layer_in.end(), out);  // not memcpy: out may be null when T = 0
}

}  // namespace pyrnn::reference
