// Every available ISA's element-wise kernels of model graphs (activations, broadcast arithmetic,
// softmax and layer-norm rows) against the scalar table, over the lengths where vector tails
// break (1..65 around the vector widths) and special values. Runs under qemu for NEON too.
#include <cmath>
#include <cstdio>
#include <limits>
#include <random>
#include <vector>

#include "check.h"
#include "core/dispatch.h"

namespace {

using pyrnn::BinaryOp;
using pyrnn::KernelTable;
using pyrnn::UnaryOp;
using pyrnn::UnaryParams;

const int kLengths[] = {1, 3, 7, 8, 9, 15, 16, 17, 31, 33, 63, 64, 65, 200};

// Both NaN, or equal within the vector activations' documented bound (2e-7 relative, here with
// margin for the composed ones such as silu) plus a small absolute floor.
bool agrees(float got, float want, double rtol) {
  if (std::isnan(want)) return std::isnan(got);
  if (std::isinf(want)) return got == want;
  return std::fabs(got - want) <= rtol * std::fabs(want) + 1e-30;
}

std::vector<float> values(int n, std::mt19937& rng, float scale) {
  std::normal_distribution<float> normal(0.0f, scale);
  std::vector<float> x(n);
  for (float& v : x) v = normal(rng);
  const float inf = std::numeric_limits<float>::infinity();
  const float specials[] = {0.0f,   -0.0f,  inf,  -inf, std::numeric_limits<float>::quiet_NaN(),
                            1e-40f, -90.0f, 90.0f};
  for (int i = 0; i < n; i += 5) x[i] = specials[(i / 5) % 8];
  return x;
}

void check_unary(const KernelTable& table, const KernelTable& scalar, std::mt19937& rng) {
  struct Case {
    UnaryOp op;
    UnaryParams params;
    const char* name;
  };
  const Case cases[] = {
      {UnaryOp::Relu, {}, "relu"},
      {UnaryOp::Sigmoid, {}, "sigmoid"},
      {UnaryOp::Tanh, {}, "tanh"},
      {UnaryOp::Silu, {}, "silu"},
      {UnaryOp::Gelu, {}, "gelu"},
      {UnaryOp::GeluTanh, {}, "gelu_tanh"},
      {UnaryOp::LeakyRelu, {0.01f, 0, 0}, "leaky_relu"},
      {UnaryOp::Elu, {1.0f, 1.0507f, 1.0f}, "elu"},
      {UnaryOp::Hardtanh, {-1.0f, 6.0f, 0}, "hardtanh"},
      {UnaryOp::Softplus, {1.0f, 20.0f, 0}, "softplus"},
      {UnaryOp::Neg, {}, "neg"},
      {UnaryOp::Exp, {}, "exp"},
      {UnaryOp::Log, {}, "log"},
      {UnaryOp::Sqrt, {}, "sqrt"},
      {UnaryOp::Rsqrt, {}, "rsqrt"},
      {UnaryOp::Abs, {}, "abs"},
  };
  for (const Case& c : cases) {
    for (int n : kLengths) {
      std::vector<float> x = values(n, rng, 4.0f);
      if (c.op == UnaryOp::Log || c.op == UnaryOp::Sqrt || c.op == UnaryOp::Rsqrt)
        for (float& v : x) v = std::fabs(v);
      std::vector<float> got(n), want(n);
      table.unary(c.op, c.params, x.data(), got.data(), n);
      scalar.unary(c.op, c.params, x.data(), want.data(), n);
      // exp flushes results below the normal range to 0 on vector ISAs.
      for (int i = 0; i < n; ++i) {
        const bool tiny = c.op == UnaryOp::Exp && std::fabs(want[i]) < 1.2e-38f;
        if (!(tiny ? std::fabs(got[i]) < 1.2e-38f : agrees(got[i], want[i], 5e-7))) {
          std::fprintf(stderr, "%s %s(%.9g) = %.9g, scalar %.9g (n=%d)\n", table.name, c.name, x[i],
                       got[i], want[i], n);
          ++pyrnn::testing::failures();
        }
      }
    }
  }
}

void check_binary(const KernelTable& table, const KernelTable& scalar, std::mt19937& rng) {
  for (BinaryOp op : {BinaryOp::Add, BinaryOp::Sub, BinaryOp::Mul, BinaryOp::Div}) {
    for (int n : kLengths) {
      const std::vector<float> a = values(n, rng, 3.0f), b = values(n, rng, 3.0f);
      for (int a_step : {0, 1}) {
        for (int b_step : {0, 1}) {
          std::vector<float> got(n), want(n);
          table.binary(op, a.data(), a_step, b.data(), b_step, got.data(), n);
          scalar.binary(op, a.data(), a_step, b.data(), b_step, want.data(), n);
          for (int i = 0; i < n; ++i) {
            if (!agrees(got[i], want[i], 0.0)) {
              std::fprintf(stderr, "%s binary %d steps %d/%d at %d of %d: %.9g vs %.9g\n",
                           table.name, static_cast<int>(op), a_step, b_step, i, n, got[i], want[i]);
              ++pyrnn::testing::failures();
            }
          }
        }
      }
    }
  }
}

void check_rows(const KernelTable& table, const KernelTable& scalar, std::mt19937& rng) {
  for (int cols : kLengths) {
    const int rows = 3;
    std::vector<float> x = values(rows * cols, rng, 5.0f);
    for (float& v : x)
      if (!std::isfinite(v)) v = 1.0f;  // finite rows; NaN rows are checked below
    std::vector<float> got(x.size()), want(x.size());
    for (bool log : {false, true}) {
      table.softmax(x.data(), got.data(), rows, cols, log);
      scalar.softmax(x.data(), want.data(), rows, cols, log);
      for (std::size_t i = 0; i < x.size(); ++i) {
        if (!(std::fabs(got[i] - want[i]) <= 2e-6 * std::fabs(want[i]) + 1e-7)) {
          std::fprintf(stderr, "%s %ssoftmax cols=%d at %zu: %.9g vs %.9g\n", table.name,
                       log ? "log_" : "", cols, i, got[i], want[i]);
          ++pyrnn::testing::failures();
        }
      }
    }
    std::vector<float> weight = values(cols, rng, 1.0f), bias = values(cols, rng, 1.0f);
    for (float& v : weight)
      if (!std::isfinite(v)) v = 0.5f;
    for (float& v : bias)
      if (!std::isfinite(v)) v = 0.5f;
    table.layer_norm(x.data(), got.data(), rows, cols, weight.data(), bias.data(), 1e-5f);
    scalar.layer_norm(x.data(), want.data(), rows, cols, weight.data(), bias.data(), 1e-5f);
    for (std::size_t i = 0; i < x.size(); ++i) PYRNN_CHECK_CLOSE(got[i], want[i], 1e-6, 1e-6);
  }
  // A NaN anywhere in a row makes the whole row NaN, as in torch.
  std::vector<float> row = {1.0f,  std::numeric_limits<float>::quiet_NaN(),
                            2.0f,  3.0f,
                            4.0f,  5.0f,
                            6.0f,  7.0f,
                            8.0f,  9.0f,
                            10.0f, 11.0f,
                            12.0f, 13.0f,
                            14.0f, 15.0f,
                            16.0f, 17.0f};
  std::vector<float> out(row.size());
  for (bool log : {false, true}) {
    table.softmax(row.data(), out.data(), 1, row.size(), log);
    for (float v : out) PYRNN_CHECK(std::isnan(v));
    // Shorter than a vector: the NaN in the padded tail.
    table.softmax(row.data(), out.data(), 1, 10, log);
    for (int i = 0; i < 10; ++i) PYRNN_CHECK(std::isnan(out[i]));
    // Every value -inf: NaN, as torch gives (-inf minus the -inf maximum).
    const float minus_inf = -std::numeric_limits<float>::infinity();
    const std::vector<float> empty_mass(5, minus_inf);
    table.softmax(empty_mass.data(), out.data(), 1, 5, log);
    for (int i = 0; i < 5; ++i) PYRNN_CHECK(std::isnan(out[i]));
  }
}

}  // namespace

int main() {
  const KernelTable& scalar = pyrnn::kernels_for("scalar");
  for (const std::string& isa : pyrnn::available_isas()) {
    const KernelTable& table = pyrnn::kernels_for(isa);
    std::mt19937 rng(17);
    check_unary(table, scalar, rng);
    check_binary(table, scalar, rng);
    check_rows(table, scalar, rng);
  }
  if (pyrnn::testing::failures() != 0) {
    std::fprintf(stderr, "%d checks failed\n", pyrnn::testing::failures());
    return 1;
  }
  std::printf("test_elementwise: all checks passed on %zu ISAs\n", pyrnn::available_isas().size());
  return 0;
}
