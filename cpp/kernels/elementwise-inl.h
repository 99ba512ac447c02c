// Element-wise kernels of model graphs: activations, broadcast arithmetic, softmax and layer
// normalisation over rows. Included inside each ISA's namespace (like simd-inl.h), so every ISA
// gets its own copy compiled with its own flags.
//
// The scalar formulas below are the reference (they follow torch's definitions, through libm
// for the transcendental ones). With PYRNN_ELEMENTWISE_SIMD defined, the including file also
// provides V and simd-inl.h's helpers (load, store, exp_approx, sigmoid, tanh, ...), and the
// common operations run on whole vectors; the rest go element by element through the formulas.
// Only C library functions are called (expf, erff ...): a std:: inline wrapper compiled with
// ISA flags could be emitted as a weak symbol and picked by the linker for baseline code.
// The including file includes <math.h> before opening its namespace.

inline float unary_formula(UnaryOp op, const UnaryParams& p, float x) noexcept {
  switch (op) {
    case UnaryOp::Relu:
      return x < 0.0f ? 0.0f : x;  // NaN propagates, as in torch
    case UnaryOp::Sigmoid:
      return 1.0f / (1.0f + expf(-x));
    case UnaryOp::Tanh:
      return tanhf(x);
    case UnaryOp::Silu:
      return x / (1.0f + expf(-x));
    case UnaryOp::Gelu:
      return 0.5f * x * (1.0f + erff(x * 0.70710678118654752f));
    case UnaryOp::GeluTanh: {
      const float inner = 0.79788456080286536f * (x + 0.044715f * x * x * x);
      return 0.5f * x * (1.0f + tanhf(inner));
    }
    case UnaryOp::LeakyRelu:
      return x > 0.0f ? x : x * p.a;
    case UnaryOp::Elu:
      return x > 0.0f ? x * p.b : expm1f(x * p.c) * (p.a * p.b);
    case UnaryOp::Hardtanh:
      return x < p.a ? p.a : (x > p.b ? p.b : x);
    case UnaryOp::Softplus:
      return x * p.a > p.b ? x : log1pf(expf(x * p.a)) / p.a;
    case UnaryOp::Neg:
      return -x;
    case UnaryOp::Exp:
      return expf(x);
    case UnaryOp::Log:
      return logf(x);
    case UnaryOp::Sqrt:
      return sqrtf(x);
    case UnaryOp::Rsqrt:
      return 1.0f / sqrtf(x);
    case UnaryOp::Abs:
      return fabsf(x);
  }
  return x;
}

inline float binary_formula(BinaryOp op, float a, float b) noexcept {
  switch (op) {
    case BinaryOp::Add:
      return a + b;
    case BinaryOp::Sub:
      return a - b;
    case BinaryOp::Mul:
      return a * b;
    case BinaryOp::Div:
      return a / b;
  }
  return a;
}

// log of a softmax denominator, sum = 1 (the max's own term) + the rest: log1p of the rest
// keeps the digits a float log(sum) would round away when the max dominates (a confident
// class's log-probability near 0).
inline float log_of_sum(double sum) noexcept { return static_cast<float>(log1p(sum - 1.0)); }

#if defined(PYRNN_ELEMENTWISE_SIMD)

// e^x with results below the normal range flushed to 0 (exp_approx is meant for sigmoid and
// tanh, which only add 1 to it): absolute error < 1.2e-38 there, ~2 ulp elsewhere.
PYRNN_SIMD_INLINE V exp_flushed(V x) noexcept {
  return select(less(x, broadcast(-87.3f)), zero(), exp_approx(x));
}

// Applies f to n floats in whole vectors, the tail through a padded stack buffer.
template <class F>
PYRNN_SIMD_INLINE void map_vectors(const float* x, float* y, std::size_t n, F f) noexcept {
  std::size_t i = 0;
  for (; i + kLanes <= n; i += kLanes) store(y + i, f(load(x + i)));
  if (i < n) {
    const int rest = static_cast<int>(n - i);
    store_partial(y + i, f(load_partial(x + i, rest, 0.0f)), rest);
  }
}

void unary(UnaryOp op, const UnaryParams& p, const float* x, float* y, std::size_t n) noexcept {
  switch (op) {
    case UnaryOp::Relu:
      return map_vectors(x, y, n, [](V v) { return relu(v); });
    case UnaryOp::Sigmoid:
      return map_vectors(x, y, n, [](V v) { return sigmoid(v); });
    case UnaryOp::Tanh:
      return map_vectors(x, y, n, [](V v) { return tanh(v); });
    case UnaryOp::Silu:
      return map_vectors(x, y, n, [](V v) { return mul(v, sigmoid(v)); });
    case UnaryOp::LeakyRelu: {
      const V slope = broadcast(p.a);
      return map_vectors(x, y, n,
                         [slope](V v) { return select(less(v, zero()), mul(v, slope), v); });
    }
    case UnaryOp::Hardtanh: {
      const V lo = broadcast(p.a), hi = broadcast(p.b);
      return map_vectors(x, y, n, [lo, hi](V v) { return clamp(v, lo, hi); });
    }
    case UnaryOp::Neg:
      return map_vectors(x, y, n, [](V v) { return sub(zero(), v); });
    case UnaryOp::Abs:
      return map_vectors(x, y, n, [](V v) { return abs(v); });
    case UnaryOp::Exp:
      return map_vectors(x, y, n, [](V v) { return exp_flushed(v); });
    default:
      for (std::size_t i = 0; i < n; ++i) y[i] = unary_formula(op, p, x[i]);
  }
}

template <class F>
PYRNN_SIMD_INLINE void combine(const float* a, std::ptrdiff_t a_step, const float* b,
                               std::ptrdiff_t b_step, float* y, std::size_t n, F f) noexcept {
  std::size_t i = 0;
  const V a0 = broadcast(a[0]), b0 = broadcast(b[0]);
  for (; i + kLanes <= n; i += kLanes)
    store(y + i, f(a_step ? load(a + i) : a0, b_step ? load(b + i) : b0));
  if (i < n) {
    const int rest = static_cast<int>(n - i);
    // Padding lanes read 1 so a division there is harmless (they are never stored).
    const V u = a_step ? load_partial(a + i, rest, 1.0f) : a0;
    const V v = b_step ? load_partial(b + i, rest, 1.0f) : b0;
    store_partial(y + i, f(u, v), rest);
  }
}

void binary(BinaryOp op, const float* a, std::ptrdiff_t a_step, const float* b,
            std::ptrdiff_t b_step, float* y, std::size_t n) noexcept {
  if (n == 0) return;
  switch (op) {
    case BinaryOp::Add:
      return combine(a, a_step, b, b_step, y, n, [](V u, V v) { return add(u, v); });
    case BinaryOp::Sub:
      return combine(a, a_step, b, b_step, y, n, [](V u, V v) { return sub(u, v); });
    case BinaryOp::Mul:
      return combine(a, a_step, b, b_step, y, n, [](V u, V v) { return mul(u, v); });
    case BinaryOp::Div:
      return combine(a, a_step, b, b_step, y, n, [](V u, V v) { return div(u, v); });
  }
}

#else

void unary(UnaryOp op, const UnaryParams& p, const float* x, float* y, std::size_t n) noexcept {
  for (std::size_t i = 0; i < n; ++i) y[i] = unary_formula(op, p, x[i]);
}

void binary(BinaryOp op, const float* a, std::ptrdiff_t a_step, const float* b,
            std::ptrdiff_t b_step, float* y, std::size_t n) noexcept {
  for (std::size_t i = 0; i < n; ++i) {
    const std::ptrdiff_t k = static_cast<std::ptrdiff_t>(i);
    y[i] = binary_formula(op, a[k * a_step], b[k * b_step]);
  }
}

#endif

// Softmax in three passes over the row: max, sum of exp(x - max), then scale (or, for
// log-softmax, x - max - log(sum)). Subtracting the max keeps exp finite, as torch does.
#if defined(PYRNN_ELEMENTWISE_SIMD)
// Rows in whole vectors; the tail goes through one padded vector (-inf pads give exp 0), so a
// row shorter than a vector (10 classes) still runs vectorised instead of 10 libm calls.
// A row that fits one vector (the classes of a streamed frame): masked loads and stores, the
// max and sum across lanes in registers, so the whole row is one short dependency chain.
PYRNN_SIMD_INLINE void softmax_short(const float* in, float* out, int cols, bool log) noexcept {
  const V v = cols == kLanes ? load(in) : load_partial(in, cols, -INFINITY);
  // A NaN lane: whether or not the max sees it, exp of it makes the sum, so every output, NaN.
  const V shift = broadcast(reduce_max(v));
  const V e = exp_flushed(sub(v, shift));
  // The max's own term is exactly 1: log1pf of the rest keeps a dominant class's
  // log-probability accurate, as log_of_sum does for longer rows.
  const float sum = reduce_add(e);
  const V result =
      log ? sub(sub(v, shift), broadcast(log1pf(sum - 1.0f))) : mul(e, broadcast(1.0f / sum));
  if (cols == kLanes)
    store(out, result);
  else
    store_partial(out, result, cols);
}

void softmax(const float* x, float* y, std::size_t rows, std::size_t cols, bool log) noexcept {
  if (cols <= static_cast<std::size_t>(kLanes)) {
    for (std::size_t r = 0; r < rows; ++r)
      softmax_short(x + r * cols, y + r * cols, static_cast<int>(cols), log);
    return;
  }
  const std::size_t whole = cols / kLanes * kLanes, tail = cols - whole;
  alignas(64) float lanes[kLanes], padded[kLanes];
  for (std::size_t r = 0; r < rows; ++r) {
    const float* in = x + r * cols;
    float* out = y + r * cols;
    for (int k = 0; k < kLanes; ++k)
      padded[k] = static_cast<std::size_t>(k) < tail ? in[whole + k] : -INFINITY;
    // NaN in a row makes the row NaN, as in torch: the max may skip it, the sum keeps it.
    V top_v = load(padded);
    for (std::size_t i = 0; i < whole; i += kLanes)
      top_v = clamp(load(in + i), top_v, broadcast(INFINITY));
    store(lanes, top_v);
    float top = -INFINITY;
    for (int k = 0; k < kLanes; ++k) top = lanes[k] > top ? lanes[k] : top;
    const V shift = broadcast(top);
    V sum_v = zero();
    for (std::size_t i = 0; i < whole; i += kLanes) {
      const V e = exp_flushed(sub(load(in + i), shift));
      if (!log) store(out + i, e);
      sum_v = add(sum_v, e);
    }
    const V tail_e = exp_flushed(sub(load(padded), shift));
    sum_v = add(sum_v, tail_e);
    store(lanes, sum_v);
    double sum = 0.0;
    for (int k = 0; k < kLanes; ++k) sum += lanes[k];
    if (log) {
      // (x - max) - log(sum) as torch does: adding log(sum) to the max first would round it
      // to the max's ulp.
      const float log_sum = log_of_sum(sum);
      const V l = broadcast(log_sum);
      for (std::size_t i = 0; i < whole; i += kLanes)
        store(out + i, sub(sub(load(in + i), shift), l));
      for (std::size_t i = whole; i < cols; ++i) out[i] = (in[i] - top) - log_sum;
    } else {
      const float inverse = static_cast<float>(1.0 / sum);
      const V scale = broadcast(inverse);
      for (std::size_t i = 0; i < whole; i += kLanes) store(out + i, mul(load(out + i), scale));
      store(lanes, mul(tail_e, scale));
      for (std::size_t i = whole; i < cols; ++i) out[i] = lanes[i - whole];
    }
  }
}
#else
void softmax(const float* x, float* y, std::size_t rows, std::size_t cols, bool log) noexcept {
  for (std::size_t r = 0; r < rows; ++r) {
    const float* in = x + r * cols;
    float* out = y + r * cols;
    float top = -INFINITY;
    for (std::size_t i = 0; i < cols; ++i) top = in[i] > top ? in[i] : top;
    double sum = 0.0;
    for (std::size_t i = 0; i < cols; ++i) {
      const float e = expf(in[i] - top);
      if (!log) out[i] = e;
      sum += e;
    }
    if (log) {
      const float log_sum = log_of_sum(sum);
      for (std::size_t i = 0; i < cols; ++i) out[i] = (in[i] - top) - log_sum;
    } else {
      const float scale = static_cast<float>(1.0 / sum);
      for (std::size_t i = 0; i < cols; ++i) out[i] *= scale;
    }
  }
}
#endif

// Mean and variance in double (two passes), as exact as the float result can show.
void layer_norm(const float* x, float* y, std::size_t rows, std::size_t cols, const float* weight,
                const float* bias, float eps) noexcept {
  for (std::size_t r = 0; r < rows; ++r) {
    const float* in = x + r * cols;
    float* out = y + r * cols;
    double sum = 0.0;
    for (std::size_t i = 0; i < cols; ++i) sum += in[i];
    const double mean = cols ? sum / static_cast<double>(cols) : 0.0;
    double squares = 0.0;
    for (std::size_t i = 0; i < cols; ++i) squares += (in[i] - mean) * (in[i] - mean);
    const double variance = cols ? squares / static_cast<double>(cols) : 0.0;
    const float inv = static_cast<float>(1.0 / sqrt(variance + eps));
    const float m = static_cast<float>(mean);
    for (std::size_t i = 0; i < cols; ++i) {
      float v = (in[i] - m) * inv;
      if (weight) v *= weight[i];
      if (bias) v += bias[i];
      out[i] = v;
    }
  }
}
