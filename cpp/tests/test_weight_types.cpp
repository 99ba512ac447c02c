// Narrow weight types (fp16, bf16, int8 with per-row scales) through every kernel of every ISA
// this CPU runs: a network of narrow weights must give what an fp32 network of the same values
// widened gives. fp16 and bf16 widen exactly, so their results are bit-identical to the fp32
// kernels on the widened weights; int8 scales the sums instead of each weight, which changes
// rounding only. Both are also held to the double-precision oracle. Sizes cover batch 1 (the
// matrix-vector and fused paths), small batches (the GEMM and batched step), projections and
// awkward widths.
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <memory>
#include <random>
#include <vector>

#include "check.h"
#include "core/dispatch.h"
#include "core/packed_panels.h"
#include "core/sequence.h"
#include "reference/reference.h"

namespace {

using pyrnn::CellKind;
using pyrnn::WeightType;

std::uint16_t to_half(float value) {  // round to nearest even, normal range only (test data)
  std::uint32_t bits;
  std::memcpy(&bits, &value, sizeof bits);
  const std::uint32_t sign = (bits >> 16) & 0x8000u;
  const int exponent = static_cast<int>((bits >> 23) & 0xff) - 127 + 15;
  std::uint32_t mantissa = bits & 0x7fffffu;
  if (exponent <= 0) return static_cast<std::uint16_t>(sign);  // flush tiny test values
  std::uint32_t half = sign | (std::uint32_t(exponent) << 10) | (mantissa >> 13);
  const std::uint32_t rest = mantissa & 0x1fffu;
  if (rest > 0x1000u || (rest == 0x1000u && (half & 1u))) ++half;
  return static_cast<std::uint16_t>(half);
}

std::uint16_t to_bfloat16(float value) {
  std::uint32_t bits;
  std::memcpy(&bits, &value, sizeof bits);
  return static_cast<std::uint16_t>((bits + 0x7fffu + ((bits >> 16) & 1u)) >> 16);
}

// A weight matrix in one type, and its values widened to float (what fp32 kernels get).
struct Matrix {
  std::vector<std::uint16_t> halves;
  std::vector<std::int8_t> bytes;
  std::vector<float> scales, widened;
  pyrnn::WeightMatrix narrow;

  Matrix(WeightType type, int rows, int cols, std::mt19937& rng, float scale) {
    std::uniform_real_distribution<float> uniform(-scale, scale);
    const std::size_t n = std::size_t(rows) * cols;
    std::vector<float> values(n);
    // Rows spanning three orders of magnitude, as trained weights often do (per-row int8
    // scales exist for this).
    for (int r = 0; r < rows; ++r)
      for (int c = 0; c < cols; ++c)
        values[std::size_t(r) * cols + c] = uniform(rng) * std::pow(10.0f, -float(r % 3));
    widened.resize(n);
    if (type == WeightType::I8) {
      scales.resize(rows);
      bytes.resize(n);
      for (int r = 0; r < rows; ++r) {
        float peak = 0.0f;
        for (int c = 0; c < cols; ++c) peak = std::fmax(peak, std::fabs(values[r * cols + c]));
        scales[r] = peak > 0.0f ? peak / 127.0f : 1.0f;
        for (int c = 0; c < cols; ++c) {
          const std::size_t i = std::size_t(r) * cols + c;
          bytes[i] = static_cast<std::int8_t>(std::lrint(values[i] / scales[r]));
          widened[i] = float(bytes[i]) * scales[r];
        }
      }
      narrow = {type, bytes.data(), scales.data()};
    } else {
      halves.resize(n);
      for (std::size_t i = 0; i < n; ++i) {
        halves[i] = type == WeightType::F16 ? to_half(values[i]) : to_bfloat16(values[i]);
        widened[i] = type == WeightType::F16 ? pyrnn::half_to_float(halves[i])
                                             : pyrnn::bfloat16_to_float(halves[i]);
      }
      narrow = {type, halves.data(), nullptr};
    }
  }
};

struct Case {
  CellKind kind;
  int input, hidden, layers;
  bool bidirectional;
  int proj, steps, rows;
};

void run_case(const Case& c, WeightType type, const std::string& isa) {
  const pyrnn::NetworkConfig config{c.kind,          c.input, c.hidden, c.layers,
                                    c.bidirectional, c.proj,  {}};
  std::mt19937 rng(99);
  const int G = config.gates(), H = c.hidden, P = config.output_size(), D = config.directions();
  const float scale = 2.0f / std::sqrt(float(H));
  std::vector<std::unique_ptr<Matrix>> matrices;
  std::vector<std::vector<float>> biases;
  std::vector<pyrnn::RawLayerWeights> narrow, wide;
  for (int l = 0; l < c.layers; ++l) {
    for (int d = 0; d < D; ++d) {
      pyrnn::RawLayerWeights n, w;
      matrices.push_back(
          std::make_unique<Matrix>(type, G * H, config.layer_input_size(l), rng, scale));
      n.w_ih = matrices.back()->narrow;
      w.w_ih = matrices.back()->widened.data();
      matrices.push_back(std::make_unique<Matrix>(type, G * H, P, rng, scale));
      n.w_hh = matrices.back()->narrow;
      w.w_hh = matrices.back()->widened.data();
      if (c.proj > 0) {
        matrices.push_back(std::make_unique<Matrix>(type, P, H, rng, scale));
        n.w_hr = matrices.back()->narrow;
        w.w_hr = matrices.back()->widened.data();
      }
      std::uniform_real_distribution<float> uniform(-scale, scale);
      for (int b = 0; b < 2; ++b) {
        biases.emplace_back(std::size_t(G) * H);
        for (float& v : biases.back()) v = uniform(rng);
      }
      n.b_ih = w.b_ih = biases[biases.size() - 2].data();
      n.b_hh = w.b_hh = biases.back().data();
      narrow.push_back(n);
      wide.push_back(w);
    }
  }
  const pyrnn::Network narrow_net(config, narrow), wide_net(config, wide);
  PYRNN_CHECK(narrow_net.weight_type() == type);
  std::uniform_real_distribution<float> unit(-1.0f, 1.0f);
  std::vector<float> x(std::size_t(c.steps) * c.rows * c.input);
  for (float& v : x) v = unit(rng);
  const std::size_t out_size = std::size_t(c.steps) * c.rows * D * P;
  const std::size_t hn_size = std::size_t(c.layers) * D * c.rows * P;
  const std::size_t cn_size = std::size_t(c.layers) * D * c.rows * H;
  std::vector<float> out_n(out_size), hn_n(hn_size), cn_n(cn_size), out_w(out_size), hn_w(hn_size),
      cn_w(cn_size);
  const pyrnn::KernelTable& kernels = pyrnn::kernels_for(isa);
  const pyrnn::SequenceIn in{x.data(), std::ptrdiff_t(c.rows) * c.input, c.input, c.steps, c.rows,
                             c.input};
  const auto out_view = [&](std::vector<float>& out) {
    return pyrnn::SequenceOut{out.data(), std::ptrdiff_t(c.rows) * D * P, D * P, c.steps, c.rows,
                              D * P};
  };
  pyrnn::forward(kernels, narrow_net, in, out_view(out_n), nullptr, nullptr, hn_n.data(),
                 cn_n.data());
  pyrnn::forward(kernels, wide_net, in, out_view(out_w), nullptr, nullptr, hn_w.data(),
                 cn_w.data());
  // The oracle on the narrow weights (widened by WeightMatrix::at).
  std::vector<float> out_r(out_size), hn_r(hn_size), cn_r(cn_size);
  pyrnn::reference::forward(config, narrow, c.steps, c.rows, x.data(), nullptr, nullptr,
                            out_r.data(), hn_r.data(), cn_r.data());
  int reported = 0;
  for (std::size_t i = 0; i < out_size; ++i) {
    // fp16/bf16: the same floats through the same kernels. int8: the same values, scaled after
    // the sums (float rounding apart), so held to the oracle as fp32 kernels are.
    const bool same = type == WeightType::I8 || out_n[i] == out_w[i];
    const bool near = std::fabs(out_n[i] - out_r[i]) <= 1e-5f + 1e-5f * std::fabs(out_r[i]);
    if (!(same && near)) {
      if (reported++ < 3)
        std::fprintf(stderr,
                     "%s %s kind %d H=%d rows=%d steps=%d at %zu: narrow %.9g, fp32 %.9g, "
                     "oracle %.9g\n",
                     isa.c_str(), pyrnn::weight_type_name(type), int(c.kind), H, c.rows, c.steps, i,
                     out_n[i], out_w[i], out_r[i]);
      ++pyrnn::testing::failures();
    }
  }
}

}  // namespace

// Packing then unpacking gives back every byte of the matrix, whatever the type and however
// the hidden units fill the last block (the panels are a module's only copy of its weights).
void check_unpack_round_trip() {
  std::mt19937 rng(7);
  for (WeightType type : {WeightType::F32, WeightType::F16, WeightType::BF16, WeightType::I8}) {
    for (int gates : {1, 3, 4}) {
      for (int units : {1, 3, 15, 16, 17, 33}) {
        for (int k : {1, 2, 9}) {
          const std::size_t rows = static_cast<std::size_t>(gates) * units;
          const std::size_t bytes = rows * k * pyrnn::weight_size(type);
          std::vector<unsigned char> matrix(bytes);
          for (unsigned char& byte : matrix) byte = static_cast<unsigned char>(rng());
          std::vector<float> scales(rows, 0.5f);
          const pyrnn::PackedPanels panels(pyrnn::WeightMatrix(type, matrix.data(), scales.data()),
                                           gates, units, k);
          std::vector<unsigned char> back(bytes, 0xAB);
          panels.unpack(back.data());
          PYRNN_CHECK(back == matrix);
        }
      }
    }
  }
}

int main() {
  check_unpack_round_trip();
  const Case cases[] = {
      {CellKind::Lstm, 5, 17, 1, false, 0, 4, 1},      {CellKind::Lstm, 33, 40, 2, false, 0, 3, 3},
      {CellKind::Lstm, 7, 33, 2, true, 9, 3, 2},       {CellKind::Gru, 16, 16, 2, false, 0, 5, 1},
      {CellKind::Gru, 9, 35, 1, true, 0, 2, 7},        {CellKind::RnnTanh, 3, 1, 3, false, 0, 6, 1},
      {CellKind::RnnRelu, 20, 48, 1, false, 0, 4, 17}, {CellKind::Lstm, 64, 64, 1, false, 0, 1, 1},
      {CellKind::Gru, 64, 64, 1, false, 0, 1, 5},
  };
  for (const std::string& isa : pyrnn::available_isas())
    for (WeightType type : {WeightType::F16, WeightType::BF16, WeightType::I8})
      for (const Case& c : cases) run_case(c, type, isa);
  if (pyrnn::testing::failures() != 0) {
    std::fprintf(stderr, "%d checks failed\n", pyrnn::testing::failures());
    return 1;
  }
  std::printf("test_weight_types: all checks passed on %zu ISAs\n", pyrnn::available_isas().size());
  return 0;
}
