// The interface every ISA implements: a GEMM against packed panels and one fused recurrent step
// per cell kind. Each ISA file (kernels/<isa>.cpp, namespace pyrnn::<isa>) fills one table.
//
// Shape contract (letters in core/dims.h; "padded" widths are multiples of kUnitBlock):
//   gemm:  c[m, :] = bias + a[m, :K] x panels        a (M, K) lda; c (M, blocks*G*16) ldc
//   step:  gates[n] = xp[n] + h_prev[n, :K] x w_hh   xp (N, blocks*G*16) ldxp, biases folded in
//          then the cell update, writing h_next (N, padded H) ldh; LSTM also c (N, padded H) ldc
//          in place. For GRU, rec_bias (padded H) is b_hn, added inside r * (W_hn h + b_hn).
//   input_step: one step with the input projection fused in (no projected buffer): for each
//          block, x[n, :I] x w_ih and h_prev[n] x w_hh in one pass while the block's panels are
//          hot, the cell update in registers. step.xp is the packed input bias (blocks*G*16),
//          the same for every row (step.ldxp is ignored). Equals gemm (m = N) + step.
// Every kernel works on blocks [block_begin, block_end) only: the seam for splitting hidden
// units across threads. Kernels never allocate and never throw.
#pragma once

#include <cstddef>
#include <cstdint>

#include "core/cell_options.h"
#include "core/packed_panels.h"

namespace pyrnn {

struct GemmArgs {
  const float* a;
  std::ptrdiff_t lda;
  int m;
  const PackedPanels* w;
  const float* bias;  // packed (blocks*G*16) or null
  float* c;
  std::ptrdiff_t ldc;
  int block_begin;
  int block_end;
};

struct StepArgs {
  const PackedPanels* w_hh;
  const float* xp;
  std::ptrdiff_t ldxp;
  const float* rec_bias;  // GRU only: packed b_hn (blocks*16)
  const float* h_prev;
  std::ptrdiff_t ldh_prev;
  float* h_next;
  std::ptrdiff_t ldh;
  float* c;  // LSTM only
  std::ptrdiff_t ldc;
  int n;
  int block_begin;
  int block_end;
  // General (ONNX) cells only (core/cell_options.h): the options; LSTM peepholes (i, f, o per
  // block, packed like a bias; null without); scratch of N * (padded H + blocks*G*16) floats
  // for the GRU that resets before the recurrent product (r * h, then x's projection).
  const CellOptions* options = nullptr;
  const float* peephole = nullptr;
  float* scratch = nullptr;
};

struct InputStepArgs {
  StepArgs step;  // step.xp: packed input bias (b_ih + b_hh, GRU n gate b_in only)
  const PackedPanels* w_ih;
  const float* x;  // (N, I) rows ldx apart
  std::ptrdiff_t ldx;
  // Walk the blocks last to first (and, batch 1, each block's W_hh panel before its W_ih one):
  // alternated every step, so each step starts on the panels the previous one left in L1/L2.
  // Results do not depend on it.
  bool descending = false;
};

// Tiny networks (core/tiny.h): every layer of a stack of small cells, run over a whole chunk of
// steps in one call, batch 1. Layer l reads the input x (layer 0: I <= kTinyMaxInput features)
// or layer l-1's new h, and h[parity] of its own; writes h[1 - parity] (and c in place), the
// parity flipping every step. out gets the top layer's H features per step.
struct TinyLayer {
  const PackedPanels* w_ih;
  const PackedPanels* w_hh;
  const float* input_bias;  // PackedLayer::input_bias
  const float* rec_bias;    // GRU: b_hn (PackedLayer::recurrent_bias); else unused
  float* h[2];              // LayerState's two h buffers (padded H)
  float* c;                 // LSTM only
  int parity;               // h[parity] is the state on entry
};

struct TinyArgs {
  const TinyLayer* layers;
  int num_layers;
  const float* x;  // (T, I) rows x_step floats apart
  std::ptrdiff_t x_step;
  float* out;  // (T, H) rows out_step floats apart
  std::ptrdiff_t out_step;
  int hidden;  // H
  int steps;   // T
};

// Hidden sizes with a kernel of their own: a network of H units runs the first size >= H, the
// units beyond H being padding that stays zero (zero weights and biases).
constexpr int kTinySizes[] = {4, 8, 12, 16, 24, 32, 48, 64};
constexpr int kTinySizeCount = 8;
// Input features of the first layer the tiny kernels fuse as broadcasts.
constexpr int kTinyMaxInput = 4;
// Index into kTinySizes of the kernel for H units, or -1 beyond the largest.
constexpr int tiny_size_index(int units) {
  for (int i = 0; i < kTinySizeCount; ++i)
    if (units <= kTinySizes[i]) return i;
  return -1;
}

// Element-wise operations of model graphs (activations, arithmetic, row-wise normalisations).
// Parameters by op: LeakyRelu a = negative slope; Elu a = alpha, b = scale, c = input scale;
// Hardtanh a = min, b = max; Softplus a = beta, b = threshold.
enum class UnaryOp : std::uint8_t {
  Relu,
  Sigmoid,
  Tanh,
  Silu,
  Gelu,
  GeluTanh,
  LeakyRelu,
  Elu,
  Hardtanh,
  Softplus,
  Neg,
  Exp,
  Log,
  Sqrt,
  Rsqrt,
  Abs,
};
struct UnaryParams {
  float a = 0.0f, b = 0.0f, c = 0.0f;
};
enum class BinaryOp : std::uint8_t { Add, Sub, Mul, Div };

using GemmKernel = void (*)(const GemmArgs&) noexcept;
// y[i] = f(x[i]) for n floats (y may be x).
using UnaryKernel = void (*)(UnaryOp op, const UnaryParams& params, const float* x, float* y,
                             std::size_t n) noexcept;
// y[i] = a[i * a_step] op b[i * b_step], steps 0 (broadcast one value) or 1.
using BinaryKernel = void (*)(BinaryOp op, const float* a, std::ptrdiff_t a_step, const float* b,
                              std::ptrdiff_t b_step, float* y, std::size_t n) noexcept;
// Over `rows` contiguous rows of `cols` floats: softmax (or log-softmax) of each row.
using SoftmaxKernel = void (*)(const float* x, float* y, std::size_t rows, std::size_t cols,
                               bool log) noexcept;
// Layer normalisation of each row: (x - mean) / sqrt(var + eps) * weight + bias (weight and
// bias: cols floats, or null for 1 and 0).
using LayerNormKernel = void (*)(const float* x, float* y, std::size_t rows, std::size_t cols,
                                 const float* weight, const float* bias, float eps) noexcept;
using StepKernel = void (*)(const StepArgs&) noexcept;
using TinyKernel = void (*)(const TinyArgs&) noexcept;
// One kernel per cell kind (CellKind order) and size (kTinySizes order).
using TinyKernels = TinyKernel[4][kTinySizeCount];
using InputStepKernel = void (*)(const InputStepArgs&) noexcept;
// y[i] = f(x[i]) for n floats with the ISA's vectorised activation (tests measure its error).
using ActivationKernel = void (*)(const float* x, float* y, std::size_t n) noexcept;

struct KernelTable {
  const char* name;
  GemmKernel gemm;
  StepKernel rnn_tanh_step;
  StepKernel rnn_relu_step;
  StepKernel lstm_step;
  StepKernel gru_step;
  ActivationKernel sigmoid;
  ActivationKernel tanh;
  InputStepKernel rnn_tanh_input_step;
  InputStepKernel rnn_relu_input_step;
  InputStepKernel lstm_input_step;
  InputStepKernel gru_input_step;
  // When a one-step chunk of N rows runs input_step instead of gemm + step: N <= fused_rows, or
  // one block's W_ih and W_hh panels together fit in fused_panel_bytes. Measured per ISA: a batched
  // input_step re-reads both panels for every row tile, which costs more than the GEMM's reads
  // once the panels leave L1 or a tile covers only part of each cache line (AVX2, NEON).
  int fused_rows;
  std::size_t fused_panel_bytes;
  // Recurrent flops per step that one more thread must get for a split across threads to pay
  // for its barrier (one per step, ~0.2-1 us): measured per ISA, since it scales with the
  // kernels' speed.
  double split_step_flops;
  UnaryKernel unary;
  BinaryKernel binary;
  SoftmaxKernel softmax;
  LayerNormKernel layer_norm;
  // General (ONNX) cells: any activation functions, clip, peepholes, input_forget, and the GRU
  // that resets first (which needs all blocks in one call: CellOptions::whole_step). One kernel
  // serves both RNN kinds (options.f is their activation).
  StepKernel rnn_general_step;
  StepKernel lstm_general_step;
  StepKernel gru_general_step;
  InputStepKernel rnn_general_input_step;
  InputStepKernel lstm_general_input_step;
  InputStepKernel gru_general_input_step;
  // Tiny networks, by kind and tiny_size_index (see TinyArgs).
  const TinyKernels* tiny;

  bool use_input_step(int rows, const PackedPanels& w_ih, const PackedPanels& w_hh) const noexcept {
    if (rows <= fused_rows) return true;
    // Bytes as stored: narrow weights leave more of a block's panels in L1.
    const std::size_t panel_elements =
        static_cast<std::size_t>(w_ih.k() + w_hh.k()) * static_cast<std::size_t>(w_hh.row_width());
    return panel_elements * weight_size(w_hh.type()) <= fused_panel_bytes;
  }

  StepKernel step_for(CellKind kind, bool general = false) const noexcept {
    if (general)
      return kind == CellKind::Lstm  ? lstm_general_step
             : kind == CellKind::Gru ? gru_general_step
                                     : rnn_general_step;
    switch (kind) {
      case CellKind::RnnTanh:
        return rnn_tanh_step;
      case CellKind::RnnRelu:
        return rnn_relu_step;
      case CellKind::Lstm:
        return lstm_step;
      case CellKind::Gru:
        return gru_step;
    }
    return nullptr;
  }
  InputStepKernel input_step_for(CellKind kind, bool general = false) const noexcept {
    if (general)
      return kind == CellKind::Lstm  ? lstm_general_input_step
             : kind == CellKind::Gru ? gru_general_input_step
                                     : rnn_general_input_step;
    switch (kind) {
      case CellKind::RnnTanh:
        return rnn_tanh_input_step;
      case CellKind::RnnRelu:
        return rnn_relu_input_step;
      case CellKind::Lstm:
        return lstm_input_step;
      case CellKind::Gru:
        return gru_input_step;
    }
    return nullptr;
  }
};

}  // namespace pyrnn
