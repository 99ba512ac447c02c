// The packed forward pass agrees with the reference oracle for every cell kind and every ISA
// this CPU runs, over awkward sizes; and so do ONNX's cell variants (core/cell_options.h), and
// packed batches of sequences of different lengths (each row against the oracle alone).
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <random>
#include <vector>

#include "check.h"
#include "core/dispatch.h"
#include "core/sequence.h"
#include "reference/reference.h"

namespace {

using pyrnn::CellKind;

struct Case {
  CellKind kind;
  int input, hidden, layers;
  bool bidirectional;
  int proj, steps, rows;
  pyrnn::CellOptions options = {};
};

void run_case(const Case& c, const std::string& isa) {
  pyrnn::NetworkConfig config{c.kind,          c.input, c.hidden, c.layers,
                              c.bidirectional, c.proj,  c.options};
  std::mt19937 rng(1234);
  std::uniform_real_distribution<float> uniform(-0.5f, 0.5f);
  // Weights scaled as PyTorch initialises them (+-1/sqrt(H)), so relu RNNs do not explode.
  const float scale = 2.0f / std::sqrt(static_cast<float>(c.hidden));
  auto random_vector = [&](std::size_t n, float factor = 1.0f) {
    std::vector<float> v(n);
    for (float& x : v) x = factor * uniform(rng);
    return v;
  };
  const int G = config.gates(), H = c.hidden, P = config.output_size(), D = config.directions();
  std::vector<std::vector<float>> storage;
  std::vector<pyrnn::RawLayerWeights> weights;
  storage.reserve(c.layers * D * 6);
  for (int l = 0; l < c.layers; ++l) {
    for (int d = 0; d < D; ++d) {
      pyrnn::RawLayerWeights w;
      storage.push_back(random_vector(std::size_t(G) * H * config.layer_input_size(l), scale));
      w.w_ih = storage.back().data();
      storage.push_back(random_vector(std::size_t(G) * H * P, scale));
      w.w_hh = storage.back().data();
      storage.push_back(random_vector(std::size_t(G) * H, scale));
      w.b_ih = storage.back().data();
      storage.push_back(random_vector(std::size_t(G) * H, scale));
      w.b_hh = storage.back().data();
      if (c.proj > 0) {
        storage.push_back(random_vector(std::size_t(P) * H, scale));
        w.w_hr = storage.back().data();
      }
      if (c.options.peepholes) {
        storage.push_back(random_vector(std::size_t(3) * H));
        w.peephole = storage.back().data();
      }
      weights.push_back(w);
    }
  }
  const pyrnn::Network network(config, weights);
  const std::vector<float> x = random_vector(std::size_t(c.steps) * c.rows * c.input);
  const std::size_t out_size = std::size_t(c.steps) * c.rows * D * P;
  const std::size_t hn_size = std::size_t(c.layers) * D * c.rows * P;
  const std::size_t cn_size = std::size_t(c.layers) * D * c.rows * H;
  const std::vector<float> h0 = random_vector(hn_size), c0 = random_vector(cn_size);
  std::vector<float> out(out_size), hn(hn_size), cn(cn_size);
  std::vector<float> ref_out(out_size), ref_hn(hn_size), ref_cn(cn_size);

  pyrnn::set_isa(isa);
  const pyrnn::SequenceIn in{x.data(), std::ptrdiff_t(c.rows) * c.input, c.input, c.steps, c.rows,
                             c.input};
  const pyrnn::SequenceOut dst{out.data(), std::ptrdiff_t(c.rows) * D * P, D * P, c.steps, c.rows,
                               D * P};
  pyrnn::forward(pyrnn::active_kernels(), network, in, dst, h0.data(), c0.data(), hn.data(),
                 cn.data());
  pyrnn::reference::forward(config, weights, c.steps, c.rows, x.data(), h0.data(), c0.data(),
                            ref_out.data(), ref_hn.data(), ref_cn.data());
  // float32 kernels vs a double-accumulating oracle: 1e-5 absolute for the bounded (tanh,
  // sigmoid) values, plus 1e-5 relative for relu RNNs whose values grow without bound.
  for (std::size_t i = 0; i < out_size; ++i) PYRNN_CHECK_CLOSE(out[i], ref_out[i], 1e-5, 1e-5);
  for (std::size_t i = 0; i < hn_size; ++i) PYRNN_CHECK_CLOSE(hn[i], ref_hn[i], 1e-5, 1e-5);
  if (c.kind == CellKind::Lstm)
    for (std::size_t i = 0; i < cn_size; ++i) PYRNN_CHECK_CLOSE(cn[i], ref_cn[i], 1e-5, 1e-5);
  if (c.steps == 0) return;

  // Packed: row n runs its first lengths[n] steps only (longest first, 1 and the full length
  // among them), and equals the oracle over that row alone.
  std::vector<int> lengths(c.rows);
  for (int n = 0; n < c.rows; ++n)
    lengths[n] = n > 0 && n == c.rows - 1 ? 1 : std::max(1, c.steps - (n * c.steps) / c.rows);
  std::vector<std::ptrdiff_t> offsets(std::size_t(c.steps) + 2, 0);
  for (int t = 0; t < c.steps; ++t) {
    int active = 0;
    while (active < c.rows && lengths[active] > t) ++active;
    offsets[t + 1] = offsets[t] + active;
  }
  offsets.back() = offsets[c.steps];
  const std::size_t S = offsets[c.steps];
  std::vector<float> packed_x(S * c.input), packed_out(S * D * P);
  for (int t = 0; t < c.steps; ++t)
    for (std::ptrdiff_t i = 0; i < offsets[t + 1] - offsets[t]; ++i)
      std::copy_n(x.data() + (std::size_t(t) * c.rows + i) * c.input, c.input,
                  packed_x.data() + (offsets[t] + i) * c.input);
  const pyrnn::SequenceIn packed_in{packed_x.data(), 0,       c.input,       c.steps,
                                    c.rows,          c.input, offsets.data()};
  const pyrnn::SequenceOut packed_dst{packed_out.data(), 0, D * P, c.steps, c.rows, D * P,
                                      offsets.data()};
  pyrnn::forward(pyrnn::active_kernels(), network, packed_in, packed_dst, h0.data(), c0.data(),
                 hn.data(), cn.data());
  for (int n = 0; n < c.rows; ++n) {
    const int T = lengths[n];
    std::vector<float> row_x(std::size_t(T) * c.input), row_h0(std::size_t(c.layers) * D * P),
        row_c0(std::size_t(c.layers) * D * H);
    for (int t = 0; t < T; ++t)
      std::copy_n(x.data() + (std::size_t(t) * c.rows + n) * c.input, c.input,
                  row_x.data() + std::size_t(t) * c.input);
    for (int b = 0; b < c.layers * D; ++b) {
      std::copy_n(h0.data() + (std::size_t(b) * c.rows + n) * P, P, row_h0.data() + b * P);
      std::copy_n(c0.data() + (std::size_t(b) * c.rows + n) * H, H, row_c0.data() + b * H);
    }
    std::vector<float> row_out(std::size_t(T) * D * P), row_hn(row_h0.size()),
        row_cn(row_c0.size());
    pyrnn::reference::forward(config, weights, T, 1, row_x.data(), row_h0.data(), row_c0.data(),
                              row_out.data(), row_hn.data(), row_cn.data());
    for (int t = 0; t < T; ++t)
      for (int f = 0; f < D * P; ++f)
        PYRNN_CHECK_CLOSE(packed_out[(offsets[t] + n) * D * P + f],
                          row_out[std::size_t(t) * D * P + f], 1e-5, 1e-5);
    for (int b = 0; b < c.layers * D; ++b) {
      for (int f = 0; f < P; ++f)
        PYRNN_CHECK_CLOSE(hn[(std::size_t(b) * c.rows + n) * P + f], row_hn[b * P + f], 1e-5, 1e-5);
      if (c.kind == CellKind::Lstm)
        for (int f = 0; f < H; ++f)
          PYRNN_CHECK_CLOSE(cn[(std::size_t(b) * c.rows + n) * H + f], row_cn[b * H + f], 1e-5,
                            1e-5);
    }
  }
}

// ONNX cell variants, each option alone and together, every activation function in some slot.
std::vector<pyrnn::CellOptions> general_options() {
  using pyrnn::Activation;
  std::vector<pyrnn::CellOptions> all;
  pyrnn::CellOptions base;
  base.general = true;
  all.push_back(base);  // PyTorch's equations through the general kernels
  pyrnn::CellOptions o = base;
  o.linear_before_reset = false;
  all.push_back(o);
  o = base;
  o.clip = 0.4f;
  all.push_back(o);
  o = base;
  o.peepholes = true;
  all.push_back(o);
  o = base;
  o.input_forget = true;
  o.peepholes = true;
  o.clip = 1.5f;
  o.linear_before_reset = false;
  all.push_back(o);
  const pyrnn::ActivationFn functions[] = {
      {Activation::Relu, 0.0f, 0.0f},       {Activation::Affine, 0.7f, 0.2f},
      {Activation::LeakyRelu, 0.3f, 0.0f},  {Activation::ThresholdedRelu, 0.4f, 0.0f},
      {Activation::ScaledTanh, 1.3f, 0.8f}, {Activation::HardSigmoid, 0.3f, 0.45f},
      {Activation::Elu, 0.6f, 0.0f},        {Activation::Softsign, 0.0f, 0.0f},
      {Activation::Softplus, 0.0f, 0.0f},   {Activation::Sigmoid, 0.0f, 0.0f},
      {Activation::Tanh, 0.0f, 0.0f}};
  const int count = static_cast<int>(sizeof(functions) / sizeof(functions[0]));
  for (int i = 0; i < count; ++i) {
    o = base;
    o.f = functions[i];
    o.g = functions[(i + 3) % count];
    o.h = functions[(i + 7) % count];
    o.linear_before_reset = i % 2 == 0;
    all.push_back(o);
  }
  return all;
}

}  // namespace

int main() {
  const CellKind kinds[] = {CellKind::RnnTanh, CellKind::RnnRelu, CellKind::Lstm, CellKind::Gru};
  for (const std::string& isa : pyrnn::available_isas()) {
    for (CellKind kind : kinds) {
      for (int hidden : {1, 3, 17, 64}) {
        for (bool bidirectional : {false, true}) {
          run_case({kind, 5, hidden, 2, bidirectional, 0, 7, 3, {}}, isa);
          run_case({kind, 1, hidden, 1, bidirectional, 0, 1, 1, {}}, isa);
          // No steps: hn and cn must still be written (they equal h0 and c0).
          run_case({kind, 5, hidden, 2, bidirectional, 0, 0, 3, {}}, isa);
        }
      }
    }
    run_case({CellKind::Lstm, 9, 33, 2, true, 5, 11, 4, {}}, isa);
    run_case({CellKind::Lstm, 16, 16, 3, false, 1, 300, 2, {}}, isa);
    for (const pyrnn::CellOptions& options : general_options()) {
      for (CellKind kind : kinds) {
        if (kind == CellKind::RnnRelu) continue;  // one general RNN kernel serves both
        pyrnn::CellOptions o = options;
        if (kind != CellKind::Lstm) o.peepholes = o.input_forget = false;
        if (kind != CellKind::Gru) o.linear_before_reset = true;
        for (int hidden : {1, 17, 64})
          for (int rows : {1, 3, 9}) {
            run_case({kind, 5, hidden, 2, false, 0, 6, rows, o}, isa);
            run_case({kind, 4, hidden, 1, true, 0, 5, rows, o}, isa);
          }
      }
    }
  }
  if (pyrnn::testing::failures() != 0) {
    std::fprintf(stderr, "%d checks failed\n", pyrnn::testing::failures());
    return 1;
  }
  std::printf("test_forward: all checks passed on %zu ISAs\n", pyrnn::available_isas().size());
  return 0;
}
