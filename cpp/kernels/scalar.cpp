// Portable kernels in plain C++: the fallback on every CPU and the path any test can force with
// PYRNN_ISA=scalar. Written for clarity, not speed; the SIMD files must agree with these.
#include <math.h>

#include <cmath>
#include <cstdint>

#include "kernels/kernels.h"

namespace pyrnn::scalar {
namespace {

constexpr int kMaxRowWidth = 4 * kUnitBlock;  // LSTM: 4 gates x one block

inline float sigmoid(float x) noexcept { return 1.0f / (1.0f + std::exp(-x)); }
// NaN must propagate like torch.relu, so no std::max here.
inline float relu(float x) noexcept { return x < 0.0f ? 0.0f : x; }

// A weight widened to float: exact for every type (int8 scales are applied to the sums).
inline float widen(float w) noexcept { return w; }
inline float widen(Half w) noexcept { return half_to_float(w.bits); }
inline float widen(BFloat16 w) noexcept { return bfloat16_to_float(w.bits); }
inline float widen(std::int8_t w) noexcept { return static_cast<float>(w); }

// acc[col] = sum_k a[k] * panel[k][col] for every column of one panel of block j (of weight
// type W), then times the column's scale for int8 panels.
template <class W>
void panel_dot(const float* a, const PackedPanels& w, int j, float* acc) noexcept {
  const int width = w.row_width(), k = w.k();
  const W* panel = w.panel_as<W>(j);
  for (int col = 0; col < width; ++col) acc[col] = 0.0f;
  for (int kk = 0; kk < k; ++kk) {
    const float x = a[kk];
    const W* row = panel + static_cast<std::ptrdiff_t>(kk) * width;
    for (int col = 0; col < width; ++col) acc[col] += x * widen(row[col]);
  }
  if (const float* scales = w.scales())
    for (int col = 0; col < width; ++col) acc[col] *= scales[j * width + col];
}

// Calls body.template operator()<W>() for the storage type of `type`.
template <class Body>
void with_weight_type(WeightType type, Body&& body) noexcept {
  switch (type) {
    case WeightType::F32:
      return body(float{});
    case WeightType::F16:
      return body(Half{});
    case WeightType::BF16:
      return body(BFloat16{});
    case WeightType::I8:
      return body(std::int8_t{});
  }
}

void gemm(const GemmArgs& g) noexcept {
  with_weight_type(g.w->type(), [&](auto tag) {
    using W = decltype(tag);
    const int width = g.w->row_width();
    float acc[kMaxRowWidth];
    for (int j = g.block_begin; j < g.block_end; ++j) {
      const float* bias = g.bias != nullptr ? g.bias + j * width : nullptr;
      for (int m = 0; m < g.m; ++m) {
        panel_dot<W>(g.a + m * g.lda, *g.w, j, acc);
        float* out = g.c + m * g.ldc + j * width;
        for (int col = 0; col < width; ++col) out[col] = acc[col] + (bias ? bias[col] : 0.0f);
      }
    }
  });
}

// The cell update of row n, block j, from the recurrent sums `acc` (G*16) and the input
// projection `xp` of that row and block (biases folded in).
template <CellKind kKind>
void update_block(const StepArgs& s, int j, int n, const float* acc, const float* xp) noexcept {
  const float* h_prev = s.h_prev + n * s.ldh_prev;
  float* h_next = s.h_next + n * s.ldh + j * kUnitBlock;
  for (int u = 0; u < kUnitBlock; ++u) {
    if constexpr (kKind == CellKind::Lstm) {
      float* c = s.c + n * s.ldc + j * kUnitBlock + u;
      const float i = sigmoid(xp[u] + acc[u]);
      const float f = sigmoid(xp[kUnitBlock + u] + acc[kUnitBlock + u]);
      const float g = std::tanh(xp[2 * kUnitBlock + u] + acc[2 * kUnitBlock + u]);
      const float o = sigmoid(xp[3 * kUnitBlock + u] + acc[3 * kUnitBlock + u]);
      *c = f * *c + i * g;
      h_next[u] = o * std::tanh(*c);
    } else if constexpr (kKind == CellKind::Gru) {
      const float r = sigmoid(xp[u] + acc[u]);
      const float z = sigmoid(xp[kUnitBlock + u] + acc[kUnitBlock + u]);
      const float hn = acc[2 * kUnitBlock + u] + s.rec_bias[j * kUnitBlock + u];
      const float cand = std::tanh(xp[2 * kUnitBlock + u] + r * hn);
      h_next[u] = (1.0f - z) * cand + z * h_prev[j * kUnitBlock + u];
    } else if constexpr (kKind == CellKind::RnnTanh) {
      h_next[u] = std::tanh(xp[u] + acc[u]);
    } else {
      h_next[u] = relu(xp[u] + acc[u]);
    }
  }
}

// General (ONNX) cells, core/cell_options.h: the spec's activation functions, written out.
float activate(float x, const ActivationFn& a) noexcept {
  switch (a.kind) {
    case Activation::Sigmoid:
      return sigmoid(x);
    case Activation::Tanh:
      return std::tanh(x);
    case Activation::Relu:
      return relu(x);
    case Activation::Affine:
      return a.alpha * x + a.beta;
    case Activation::LeakyRelu:
      return x < 0.0f ? a.alpha * x : x;
    case Activation::ThresholdedRelu:
      return x < a.alpha ? 0.0f : x;
    case Activation::ScaledTanh:
      return a.alpha * std::tanh(a.beta * x);
    case Activation::HardSigmoid: {
      const float y = a.alpha * x + a.beta;
      return y < 0.0f ? 0.0f : (y > 1.0f ? 1.0f : y);
    }
    case Activation::Elu:
      return x >= 0.0f ? x : a.alpha * std::expm1(x);
    case Activation::Softsign:
      return x / (1.0f + std::fabs(x));
    case Activation::Softplus:
      return std::log1p(std::exp(x));
  }
  return x;
}

// activation(clip(x)): clip bounds every gate's pre-activation.
float gate(float x, const ActivationFn& a, float clip) noexcept {
  if (clip > 0.0f) x = x < -clip ? -clip : (x > clip ? clip : x);
  return activate(x, a);
}

// The general cell update of row n, block j (GRU: linear_before_reset = 1 only).
template <CellKind kKind>
void general_block(const StepArgs& s, int j, int n, const float* acc, const float* xp) noexcept {
  const CellOptions& o = *s.options;
  const float* h_prev = s.h_prev + n * s.ldh_prev + j * kUnitBlock;
  float* h_next = s.h_next + n * s.ldh + j * kUnitBlock;
  for (int u = 0; u < kUnitBlock; ++u) {
    if constexpr (kKind == CellKind::Lstm) {
      float* c = s.c + n * s.ldc + j * kUnitBlock + u;
      const float* p = s.peephole != nullptr ? s.peephole + j * 3 * kUnitBlock + u : nullptr;
      const float c_prev = *c;
      float pi = xp[u] + acc[u], pf = xp[kUnitBlock + u] + acc[kUnitBlock + u];
      const float pg = xp[2 * kUnitBlock + u] + acc[2 * kUnitBlock + u];
      float po = xp[3 * kUnitBlock + u] + acc[3 * kUnitBlock + u];
      if (p != nullptr) {
        pi += p[0] * c_prev;
        pf += p[kUnitBlock] * c_prev;
      }
      const float i = gate(pi, o.f, o.clip);
      const float f = o.input_forget ? 1.0f - i : gate(pf, o.f, o.clip);
      *c = f * c_prev + i * gate(pg, o.g, o.clip);
      if (p != nullptr) po += p[2 * kUnitBlock] * *c;
      h_next[u] = gate(po, o.f, o.clip) * activate(*c, o.h);
    } else if constexpr (kKind == CellKind::Gru) {
      const float r = gate(xp[u] + acc[u], o.f, o.clip);
      const float z = gate(xp[kUnitBlock + u] + acc[kUnitBlock + u], o.f, o.clip);
      const float hn = acc[2 * kUnitBlock + u] + s.rec_bias[j * kUnitBlock + u];
      const float cand = gate(xp[2 * kUnitBlock + u] + r * hn, o.g, o.clip);
      h_next[u] = (1.0f - z) * cand + z * h_prev[u];
    } else {
      h_next[u] = gate(xp[u] + acc[u], o.f, o.clip);
    }
  }
}

template <CellKind kKind>
void step(const StepArgs& s) noexcept {
  with_weight_type(s.w_hh->type(), [&](auto tag) {
    using W = decltype(tag);
    constexpr int kWidth = gate_count(kKind) * kUnitBlock;
    float acc[kWidth];
    for (int j = s.block_begin; j < s.block_end; ++j) {
      for (int n = 0; n < s.n; ++n) {
        panel_dot<W>(s.h_prev + n * s.ldh_prev, *s.w_hh, j, acc);
        if (s.options != nullptr)
          general_block<kKind>(s, j, n, acc, s.xp + n * s.ldxp + j * kWidth);
        else
          update_block<kKind>(s, j, n, acc, s.xp + n * s.ldxp + j * kWidth);
      }
    }
  });
}

// step with the input projection of the row computed right before it, block by block.
template <CellKind kKind>
void input_step(const InputStepArgs& f) noexcept {
  with_weight_type(f.step.w_hh->type(), [&](auto tag) {
    using W = decltype(tag);
    constexpr int kWidth = gate_count(kKind) * kUnitBlock;
    const StepArgs& s = f.step;
    float acc[kWidth], xp[kWidth];
    for (int j = s.block_begin; j < s.block_end; ++j) {
      const float* bias = s.xp + j * kWidth;
      for (int n = 0; n < s.n; ++n) {
        panel_dot<W>(f.x + n * f.ldx, *f.w_ih, j, xp);
        for (int col = 0; col < kWidth; ++col) xp[col] += bias[col];
        panel_dot<W>(s.h_prev + n * s.ldh_prev, *s.w_hh, j, acc);
        if (s.options != nullptr)
          general_block<kKind>(s, j, n, acc, xp);
        else
          update_block<kKind>(s, j, n, acc, xp);
      }
    }
  });
}

// The GRU that resets before the recurrent product (linear_before_reset = 0): two passes over
// all blocks, r * h of every unit first (in scratch), then z and n (see simd-inl.h).
void gru_reset_first(const StepArgs& s) noexcept {
  with_weight_type(s.w_hh->type(), [&](auto tag) {
    using W = decltype(tag);
    constexpr int kWidth = 3 * kUnitBlock;
    const CellOptions& o = *s.options;
    const std::ptrdiff_t ld_rh = static_cast<std::ptrdiff_t>(s.w_hh->blocks()) * kUnitBlock;
    float acc[kWidth];
    for (int j = s.block_begin; j < s.block_end; ++j)
      for (int n = 0; n < s.n; ++n) {
        panel_dot<W>(s.h_prev + n * s.ldh_prev, *s.w_hh, j, acc);
        const float* xp = s.xp + n * s.ldxp + j * kWidth;
        for (int u = 0; u < kUnitBlock; ++u) {
          const int col = j * kUnitBlock + u;
          s.scratch[n * ld_rh + col] =
              gate(xp[u] + acc[u], o.f, o.clip) * s.h_prev[n * s.ldh_prev + col];
        }
      }
    float by_rh[kWidth];
    for (int j = s.block_begin; j < s.block_end; ++j)
      for (int n = 0; n < s.n; ++n) {
        panel_dot<W>(s.h_prev + n * s.ldh_prev, *s.w_hh, j, acc);
        panel_dot<W>(s.scratch + n * ld_rh, *s.w_hh, j, by_rh);
        const float* xp = s.xp + n * s.ldxp + j * kWidth;
        for (int u = 0; u < kUnitBlock; ++u) {
          const int col = j * kUnitBlock + u;
          const float z = gate(xp[kUnitBlock + u] + acc[kUnitBlock + u], o.f, o.clip);
          const float cand = gate(
              xp[2 * kUnitBlock + u] + by_rh[2 * kUnitBlock + u] + s.rec_bias[col], o.g, o.clip);
          s.h_next[n * s.ldh + col] = (1.0f - z) * cand + z * s.h_prev[n * s.ldh_prev + col];
        }
      }
  });
}

void gru_general_step(const StepArgs& s) noexcept {
  if (s.options->linear_before_reset) return step<CellKind::Gru>(s);
  gru_reset_first(s);
}

void gru_general_input_step(const InputStepArgs& f) noexcept {
  if (f.step.options->linear_before_reset) return input_step<CellKind::Gru>(f);
  StepArgs s = f.step;
  const std::ptrdiff_t width = f.w_ih->output_width();
  float* xp = s.scratch + static_cast<std::ptrdiff_t>(s.n) * s.w_hh->blocks() * kUnitBlock;
  gemm({f.x, f.ldx, s.n, f.w_ih, s.xp, xp, width, s.block_begin, s.block_end});
  s.xp = xp;
  s.ldxp = width;
  gru_reset_first(s);
}

void sigmoid_array(const float* x, float* y, std::size_t n) noexcept {
  for (std::size_t i = 0; i < n; ++i) y[i] = sigmoid(x[i]);
}
void tanh_array(const float* x, float* y, std::size_t n) noexcept {
  for (std::size_t i = 0; i < n; ++i) y[i] = std::tanh(x[i]);
}

#include "kernels/elementwise-inl.h"

// Tiny networks (TinyArgs in core/kernel_table.h): unit by unit, the arithmetic of update_block
// with the input projection summed into the gates. kUnits only bounds the loops, as the SIMD
// kernels' vector counts do; units beyond H are zero padding.
template <CellKind kKind, int kUnits>
void tiny_feed(const TinyArgs& a) noexcept {
  constexpr int G = gate_count(kKind), kWidth = G * kUnitBlock;
  constexpr bool kGru = kKind == CellKind::Gru;
  const int k_rec = a.layers[0].w_hh->k();
  for (int t = 0; t < a.steps; ++t) {
    const float* in = a.x + t * a.x_step;
    for (int l = 0; l < a.num_layers; ++l) {
      const TinyLayer& layer = a.layers[l];
      const int parity = layer.parity ^ (t & 1);
      const float* h_prev = layer.h[parity];
      float* h_next = layer.h[1 - parity];
      const int k_in = layer.w_ih->k();
      for (int u = 0; u < kUnits; ++u) {
        const int block = u / kUnitBlock, offset = u % kUnitBlock;
        // xp = x W_ih + bias and acc = h W_hh, each summed from zero in k order, then xp + acc:
        // the general path's arithmetic (gemm, then update_block), so the results are identical.
        float xp[G], acc[G];
        const float* w_in = layer.w_ih->panel(block) + offset;
        for (int g = 0; g < G; ++g) {
          xp[g] = 0.0f;
          for (int k = 0; k < k_in; ++k) xp[g] += in[k] * w_in[k * kWidth + g * kUnitBlock];
          xp[g] += layer.input_bias[block * kWidth + g * kUnitBlock + offset];
        }
        const float* w_rec = layer.w_hh->panel(block) + offset;
        for (int g = 0; g < G; ++g) {
          acc[g] = 0.0f;
          for (int k = 0; k < k_rec; ++k) acc[g] += h_prev[k] * w_rec[k * kWidth + g * kUnitBlock];
        }
        float pre[G];
        for (int g = 0; g < G; ++g) pre[g] = xp[g] + acc[g];
        if constexpr (kKind == CellKind::Lstm) {
          const float i = sigmoid(pre[0]), f = sigmoid(pre[1]), g = std::tanh(pre[2]);
          const float o = sigmoid(pre[3]);
          layer.c[u] = f * layer.c[u] + i * g;
          h_next[u] = o * std::tanh(layer.c[u]);
        } else if constexpr (kGru) {
          const float r = sigmoid(pre[0]), z = sigmoid(pre[1]);
          const float n = std::tanh(xp[2] + r * (acc[2] + layer.rec_bias[u]));
          h_next[u] = (1.0f - z) * n + z * h_prev[u];
        } else if constexpr (kKind == CellKind::RnnTanh) {
          h_next[u] = std::tanh(pre[0]);
        } else {
          h_next[u] = relu(pre[0]);
        }
      }
      in = h_next;
    }
    float* out = a.out + t * a.out_step;
    for (int u = 0; u < a.hidden; ++u) out[u] = in[u];
  }
}

template <CellKind kKind>
constexpr TinyKernel tiny_kernel(int index) {
  constexpr TinyKernel kernels[kTinySizeCount] = {
      tiny_feed<kKind, 4>,  tiny_feed<kKind, 8>,  tiny_feed<kKind, 12>, tiny_feed<kKind, 16>,
      tiny_feed<kKind, 24>, tiny_feed<kKind, 32>, tiny_feed<kKind, 48>, tiny_feed<kKind, 64>};
  return kernels[index];
}

}  // namespace

// fused_rows: the scalar kernels go row by row either way, so the fused step is never slower.
// Split a step across threads when each gets this many recurrent flops: scalar steps are slow
// enough that LSTM 32 (8 kflop) already runs 1.57x faster on 2 threads (Sapphire Rapids).
constexpr double kSplitStepFlops = 4e3;
const KernelTable& kernel_table() noexcept {
  static const TinyKernels tiny_kernels = {
      {tiny_kernel<CellKind::RnnTanh>(0), tiny_kernel<CellKind::RnnTanh>(1),
       tiny_kernel<CellKind::RnnTanh>(2), tiny_kernel<CellKind::RnnTanh>(3),
       tiny_kernel<CellKind::RnnTanh>(4), tiny_kernel<CellKind::RnnTanh>(5),
       tiny_kernel<CellKind::RnnTanh>(6), tiny_kernel<CellKind::RnnTanh>(7)},
      {tiny_kernel<CellKind::RnnRelu>(0), tiny_kernel<CellKind::RnnRelu>(1),
       tiny_kernel<CellKind::RnnRelu>(2), tiny_kernel<CellKind::RnnRelu>(3),
       tiny_kernel<CellKind::RnnRelu>(4), tiny_kernel<CellKind::RnnRelu>(5),
       tiny_kernel<CellKind::RnnRelu>(6), tiny_kernel<CellKind::RnnRelu>(7)},
      {tiny_kernel<CellKind::Lstm>(0), tiny_kernel<CellKind::Lstm>(1),
       tiny_kernel<CellKind::Lstm>(2), tiny_kernel<CellKind::Lstm>(3),
       tiny_kernel<CellKind::Lstm>(4), tiny_kernel<CellKind::Lstm>(5),
       tiny_kernel<CellKind::Lstm>(6), tiny_kernel<CellKind::Lstm>(7)},
      {tiny_kernel<CellKind::Gru>(0), tiny_kernel<CellKind::Gru>(1), tiny_kernel<CellKind::Gru>(2),
       tiny_kernel<CellKind::Gru>(3), tiny_kernel<CellKind::Gru>(4), tiny_kernel<CellKind::Gru>(5),
       tiny_kernel<CellKind::Gru>(6), tiny_kernel<CellKind::Gru>(7)}};
  static const KernelTable table{"scalar",
                                 gemm,
                                 step<CellKind::RnnTanh>,
                                 step<CellKind::RnnRelu>,
                                 step<CellKind::Lstm>,
                                 step<CellKind::Gru>,
                                 sigmoid_array,
                                 tanh_array,
                                 input_step<CellKind::RnnTanh>,
                                 input_step<CellKind::RnnRelu>,
                                 input_step<CellKind::Lstm>,
                                 input_step<CellKind::Gru>,
                                 1 << 30,
                                 0,
                                 kSplitStepFlops,
                                 unary,
                                 binary,
                                 softmax,
                                 layer_norm,
                                 step<CellKind::RnnTanh>,
                                 step<CellKind::Lstm>,
                                 gru_general_step,
                                 input_step<CellKind::RnnTanh>,
                                 input_step<CellKind::Lstm>,
                                 gru_general_input_step,
                                 &tiny_kernels};
  return table;
}

}  // namespace pyrnn::scalar
