// Every available ISA's vectorised sigmoid and tanh against double-precision libm over a sweep
// of float bit patterns (every exponent, both signs) plus the special values. The Python test
// tests/test_activations.py does the same densely; this one also runs under qemu for NEON.
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <limits>
#include <vector>

#include "check.h"
#include "core/dispatch.h"

namespace {

// The documented bound (cpp/kernels/simd-inl.h): |y - ref| <= 2e-7 |ref| + FLT_MIN.
constexpr double kRtol = 2e-7;
constexpr double kAtol = std::numeric_limits<float>::min();

double sigmoid_ref(double x) { return 1.0 / (1.0 + std::exp(-x)); }

void check_function(const pyrnn::KernelTable& table, const char* name, pyrnn::ActivationKernel f,
                    double (*ref)(double), const std::vector<float>& x) {
  std::vector<float> y(x.size());
  f(x.data(), y.data(), x.size());
  int reported = 0;
  for (std::size_t i = 0; i < x.size(); ++i) {
    if (std::isnan(x[i])) {
      if (!std::isnan(y[i])) {
        std::fprintf(stderr, "%s %s(NaN) = %g, expected NaN\n", table.name, name, y[i]);
        ++pyrnn::testing::failures();
      }
      continue;
    }
    const double expected = ref(x[i]);
    if (!(std::fabs(y[i] - expected) <= kRtol * std::fabs(expected) + kAtol)) {
      if (reported++ < 5)
        std::fprintf(stderr, "%s %s(%.9g) = %.9g, expected %.9g\n", table.name, name, x[i], y[i],
                     expected);
      ++pyrnn::testing::failures();
    }
  }
}

}  // namespace

int main() {
  std::vector<float> x;
  for (std::uint64_t bits = 0; bits < (std::uint64_t{1} << 32); bits += 65521) {
    const auto b = static_cast<std::uint32_t>(bits);
    float value;
    std::memcpy(&value, &b, sizeof value);
    x.push_back(value);
  }
  for (int i = -200000; i <= 200000; ++i) x.push_back(static_cast<float>(i) * 1e-4f);
  const float inf = std::numeric_limits<float>::infinity();
  for (float special : {0.0f, -0.0f, inf, -inf, std::numeric_limits<float>::quiet_NaN(),
                        std::numeric_limits<float>::denorm_min(), 1e-40f, -1e-40f, 88.3f, -88.3f,
                        88.72f, -104.0f, 3e38f, -3e38f})
    x.push_back(special);

  for (const std::string& isa : pyrnn::available_isas()) {
    const pyrnn::KernelTable& table = pyrnn::kernels_for(isa);
    check_function(table, "sigmoid", table.sigmoid, sigmoid_ref, x);
    check_function(table, "tanh", table.tanh, [](double v) { return std::tanh(v); }, x);
    // Exact limits and signed zero.
    float in[4] = {inf, -inf, -0.0f, 0.0f}, out[4];
    table.tanh(in, out, 4);
    PYRNN_CHECK(out[0] == 1.0f && out[1] == -1.0f && out[2] == 0.0f && std::signbit(out[2]) &&
                !std::signbit(out[3]));
    table.sigmoid(in, out, 4);
    PYRNN_CHECK(out[0] == 1.0f && out[1] == 0.0f && out[2] == 0.5f && out[3] == 0.5f);
  }
  if (pyrnn::testing::failures() != 0) {
    std::fprintf(stderr, "%d checks failed\n", pyrnn::testing::failures());
    return 1;
  }
  std::printf("test_activations: all checks passed on %zu ISAs\n", pyrnn::available_isas().size());
  return 0;
}
