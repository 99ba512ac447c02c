// The tiny kernels (KernelTable::tiny): a stream of one row of a small network runs them, on
// every ISA this CPU runs (NEON under qemu via tools/check_neon.sh), for every specialised hidden
// size and the sizes between them, stacked layers included; they agree with the reference oracle
// and with forward() (the general path) from the same initial state. Streams the tiny kernels do
// not cover (more rows, more inputs, more units) take the general path.
#include <cmath>
#include <cstdio>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "check.h"
#include "core/dispatch.h"
#include "core/sequence.h"
#include "core/stream.h"
#include "reference/reference.h"

namespace {

using pyrnn::CellKind;

struct Case {
  CellKind kind;
  int input, hidden, layers;
};

// A network with PyTorch-scaled random weights, its raw weights kept for the oracle.
struct Model {
  pyrnn::NetworkConfig config;
  std::vector<std::vector<float>> storage;
  std::vector<pyrnn::RawLayerWeights> weights;
  std::shared_ptr<const pyrnn::Network> network;
};

std::unique_ptr<Model> make_model(const Case& c, std::mt19937& rng) {
  auto model = std::make_unique<Model>();
  model->config = {c.kind, c.input, c.hidden, c.layers, false, 0, {}};
  std::uniform_real_distribution<float> uniform(-1.0f, 1.0f);
  const float scale = 1.0f / std::sqrt(static_cast<float>(c.hidden));
  const int G = model->config.gates(), H = c.hidden;
  model->storage.reserve(c.layers * 4);
  auto add = [&](std::size_t n) {
    model->storage.emplace_back(n);
    for (float& x : model->storage.back()) x = scale * uniform(rng);
    return model->storage.back().data();
  };
  for (int l = 0; l < c.layers; ++l) {
    pyrnn::RawLayerWeights w;
    w.w_ih = add(std::size_t(G) * H * model->config.layer_input_size(l));
    w.w_hh = add(std::size_t(G) * H * H);
    w.b_ih = add(std::size_t(G) * H);
    w.b_hh = add(std::size_t(G) * H);
    model->weights.push_back(w);
  }
  model->network = std::make_shared<const pyrnn::Network>(model->config, model->weights);
  return model;
}

std::vector<float> random_vector(std::size_t n, std::mt19937& rng) {
  std::uniform_real_distribution<float> uniform(-1.0f, 1.0f);
  std::vector<float> v(n);
  for (float& x : v) x = uniform(rng);
  return v;
}

void check_case(const Case& c, const pyrnn::KernelTable& kernels, bool scalar) {
  std::mt19937 rng(17);
  const auto model = make_model(c, rng);
  const int I = c.input, H = c.hidden, L = c.layers, T = 300;
  const std::vector<float> x = random_vector(std::size_t(T) * I, rng);
  const std::vector<float> h0 = random_vector(std::size_t(L) * H, rng);
  const std::vector<float> c0 = random_vector(std::size_t(L) * H, rng);
  pyrnn::Stream stream(model->network, 1);
  PYRNN_CHECK(stream.tiny() == (I <= 4 && H <= 64));
  stream.set_state(h0.data(), c0.data());
  // Steps, then feeds of 7 and of 256 steps and one of the rest.
  std::vector<float> out(std::size_t(T) * H, -1.0f);
  int t = 0;
  for (; t < 5; ++t) stream.step(kernels, x.data() + t * I, I, out.data() + t * H, H);
  for (int length : {7, 256, T - 5 - 7 - 256}) {
    stream.feed(kernels, {x.data() + t * I, I, I, length, 1, I},
                {out.data() + t * H, H, H, length, 1, H});
    t += length;
  }
  std::vector<float> hn(std::size_t(L) * H), cn(std::size_t(L) * H);
  stream.get_state(hn.data(), cn.data());

  std::vector<float> ref(out.size()), ref_h(hn.size()), ref_c(cn.size());
  pyrnn::reference::forward(model->config, model->weights, T, 1, x.data(), h0.data(), c0.data(),
                            ref.data(), ref_h.data(), ref_c.data());
  std::vector<float> general(out.size()), general_h(hn.size()), general_c(cn.size());
  pyrnn::forward(kernels, *model->network, {x.data(), I, I, T, 1, I},
                 {general.data(), H, H, T, 1, H}, h0.data(), c0.data(), general_h.data(),
                 general_c.data());
  const int failures = pyrnn::testing::failures();
  // Against the double oracle as test_forward holds forward(): 1e-5 absolute, plus 1e-5
  // relative for relu RNNs. Against forward(), as streams always are (test_stream_alloc):
  // identical on the scalar kernels, within 1e-6 on SIMD ones (sums grouped differently).
  const double tol = scalar ? 0.0 : 1e-6;
  for (std::size_t i = 0; i < out.size(); ++i) {
    PYRNN_CHECK_CLOSE(out[i], ref[i], 1e-5, 1e-5);
    PYRNN_CHECK_CLOSE(out[i], general[i], tol, tol);
  }
  for (std::size_t i = 0; i < hn.size(); ++i) PYRNN_CHECK_CLOSE(hn[i], general_h[i], tol, tol);
  if (c.kind == CellKind::Lstm)
    for (std::size_t i = 0; i < cn.size(); ++i) {
      PYRNN_CHECK_CLOSE(cn[i], ref_c[i], 1e-5, 1e-5);
      PYRNN_CHECK_CLOSE(cn[i], general_c[i], tol, tol);
    }
  if (pyrnn::testing::failures() != failures)
    std::fprintf(stderr, "  in kind %d, I=%d, H=%d, %d layers, %s\n", int(c.kind), I, H, L,
                 kernels.name);
}

// More than one row: the general path, with the same results as forward().
void check_rows_fall_back(const pyrnn::KernelTable& kernels) {
  std::mt19937 rng(5);
  const auto model = make_model({CellKind::Lstm, 1, 8, 1}, rng);
  pyrnn::Stream stream(model->network, 2);
  PYRNN_CHECK(!stream.tiny());
  const std::vector<float> x = random_vector(40 * 2, rng);
  std::vector<float> out(40 * 2 * 8), ref(out.size());
  stream.feed(kernels, {x.data(), 2, 1, 40, 2, 1}, {out.data(), 16, 8, 40, 2, 8});
  pyrnn::forward(kernels, *model->network, {x.data(), 2, 1, 40, 2, 1},
                 {ref.data(), 16, 8, 40, 2, 8}, nullptr, nullptr, nullptr, nullptr);
  for (std::size_t i = 0; i < out.size(); ++i) PYRNN_CHECK_CLOSE(out[i], ref[i], 1e-6, 1e-6);
}

}  // namespace

int main() {
  for (const std::string& isa : pyrnn::available_isas()) {
    pyrnn::set_isa(isa);
    const pyrnn::KernelTable& kernels = pyrnn::active_kernels();
    for (CellKind kind : {CellKind::RnnTanh, CellKind::RnnRelu, CellKind::Lstm, CellKind::Gru}) {
      // Every specialised size (4 ... 64), the sizes just around them, and 65 (general path).
      for (int hidden : {1, 3, 4, 5, 8, 9, 12, 13, 16, 17, 24, 25, 31, 32, 33, 48, 49, 63, 64, 65})
        check_case({kind, 1, hidden, 1}, kernels, isa == "scalar");
      for (int input : {2, 3, 4, 5}) check_case({kind, input, 17, 1}, kernels, isa == "scalar");
      for (int hidden : {5, 16, 33}) check_case({kind, 2, hidden, 2}, kernels, isa == "scalar");
      check_case({kind, 1, 8, 3}, kernels, isa == "scalar");
    }
    check_rows_fall_back(kernels);
  }
  if (pyrnn::testing::failures() != 0) {
    std::fprintf(stderr, "%d checks failed\n", pyrnn::testing::failures());
    return 1;
  }
  std::printf("test_tiny: all checks passed on %zu ISAs\n", pyrnn::available_isas().size());
  return 0;
}
