// The SIMD kernels, written once over a vector type `V` and its operations, and compiled once per
// ISA: each kernels/<isa>.cpp defines `struct V` and its free functions, then includes this file
// inside `namespace pyrnn::<isa> { namespace { ... } }`, so every function here is internal to
// one ISA-compiled file and the linker can never merge an AVX-512 copy into baseline code.
// No include guard on purpose; include no headers from here (they would land in the namespace).
//
// What the including file provides (L = V::kLanes, a divisor of kUnitBlock):
//   V load(const float*), store(float*, V), broadcast(float), zero()
//   add, sub, mul, div, fma(a, b, c) = a*b + c, abs, copysign(magnitude, sign_source)
//   clamp(x, lo, hi) that returns NaN for NaN x, round_nearest(x) (integral float),
//   pow2(n) = 2^n for integral float n in [-127, 127] (0 for -127),
//   Mask less(a, b) (false for NaN), select(mask, if_true, if_false),
//   load_partial(p, count, fill) / store_partial(p, v, count) for the first count < L lanes,
//   reduce_max(v) and reduce_add(v) across the lanes (reduce_max may return NaN or skip it),
//   load_w(const W*) for each weight storage type W (float, Half, BFloat16, std::int8_t): L
//   weights widened to float.
//
// Shape contract as in core/kernel_table.h: panels are K rows of G*16 elements per block,
// panel[k][g*16 + u]; a tile covers R rows of the left operand and, for each gate g, S vectors
// starting at unit v0*L of the block, so one tile holds every gate of L*S units.

// Forced inlining for the activations and the cell updates: GCC -O3 kept exp_approx, tanh and
// CellUpdate::apply as calls (5 per LSTM vector), which serialised the otherwise independent gate
// activations of a batch-1 step; inlined, their dependency chains overlap.
#if defined(__GNUC__)
#define PYRNN_SIMD_INLINE inline __attribute__((always_inline))
#else
#define PYRNN_SIMD_INLINE inline
#endif

constexpr int kLanes = V::kLanes;
constexpr int kVecPerGate = kUnitBlock / kLanes;

// Local min/max rather than std::min/max: an unoptimised build would emit std::min<int> from
// this ISA-compiled file as a weak symbol the linker might pick for baseline code.
template <class T>
constexpr T smaller(T a, T b) noexcept {
  return b < a ? b : a;
}
template <class T>
constexpr T larger(T a, T b) noexcept {
  return a < b ? b : a;
}

// ---------------------------------------------------------------------------------------------
// Activations. Polynomial coefficients were fitted for this file (weighted least squares with
// Lawson iterations, numpy float64) and rounded to float. Errors measured against float64 over
// every 13th float32 bit pattern (330 million inputs, every exponent and sign; AVX2 and AVX-512
// agree; tests/test_activations.py asserts the bound for every ISA):
//
//   exp_approx: e^x = 2^n * e^r, n = round(x / ln 2), r in [-ln2/2, ln2/2], e^r = 1 + r + r^2 Q(r)
//     (Q of degree 4, fit error 3e-9). Only an internal step of sigmoid/tanh.
//   sigmoid(x) = 1 / (1 + e^-x): max relative error 1.47e-7 (about 2 ulp) where the result is
//     a normal float; where it is sub-normal (x < -87.3) the absolute error is < 4.5e-39.
//     sigmoid(+inf) = 1, sigmoid(-inf) = 0, sigmoid(+-0) = 0.5, NaN -> NaN.
//   tanh(x): |x| < 0.625: x + x^3 P(x^2) (P of degree 4, fit error 4e-9 relative);
//     else sign(x) * (1 - 2 / (1 + e^{2|x|})). Max relative error 1.42e-7 over every float
//     (glibc's tanhf: 1.65e-7); tanh(+-inf) = +-1, tanh(+-0) = +-0, denormals return
//     themselves, NaN -> NaN.
//   Documented bound, for both: |y - ref| <= 2e-7 |ref| + FLT_MIN.
// ---------------------------------------------------------------------------------------------

// e^x for x <= 88.3 (larger x return +inf); below -88 the result is 0 or a tiny float, which is
// all sigmoid and tanh need (they only ever add 1 to it).
PYRNN_SIMD_INLINE V exp_approx(V x) noexcept {
  const V t = clamp(x, broadcast(-88.0f), broadcast(88.3f));  // keeps NaN: n <= 127 below
  const V n = round_nearest(mul(t, broadcast(1.44269504f)));
  // r = t - n*ln2 in two parts so r is exact to float precision for every n.
  V r = fma(n, broadcast(-0.693145752f), t);
  r = fma(n, broadcast(-1.42860677e-6f), r);
  V q = broadcast(0.00138146128f);
  q = fma(q, r, broadcast(0.00836871006f));
  q = fma(q, r, broadcast(0.041668389f));
  q = fma(q, r, broadcast(0.166665211f));
  q = fma(q, r, broadcast(0.49999994f));
  const V er = add(fma(mul(q, r), r, r), broadcast(1.0f));
  const V result = mul(er, pow2(n));
  return select(less(broadcast(88.3f), x), broadcast(__builtin_inff()), result);
}

PYRNN_SIMD_INLINE V sigmoid(V x) noexcept {
  const V one = broadcast(1.0f);
  return div(one, add(one, exp_approx(sub(zero(), x))));
}

PYRNN_SIMD_INLINE V tanh(V x) noexcept {
  const V a = abs(x);
  // Small |x|: odd polynomial, exact for denormals and signed zeros.
  const V s = mul(x, x);
  V p = broadcast(-0.0057049864f);
  p = fma(p, s, broadcast(0.0206390861f));
  p = fma(p, s, broadcast(-0.0537397154f));
  p = fma(p, s, broadcast(0.133314416f));
  p = fma(p, s, broadcast(-0.333332807f));
  const V small = fma(mul(p, s), x, x);
  // Large |x| (and NaN, which fails the comparison below): through e^{2|x|}.
  const V e = exp_approx(add(a, a));
  const V large = sub(broadcast(1.0f), div(broadcast(2.0f), add(broadcast(1.0f), e)));
  // copysign also keeps tanh(-0) = -0, which the polynomial rounds to +0.
  return copysign(select(less(a, broadcast(0.625f)), small, large), x);
}

// NaN propagates (a NaN compares false), unlike max(0, x) on x86.
PYRNN_SIMD_INLINE V relu(V x) noexcept { return select(less(x, zero()), zero(), x); }

// Applies an activation to n floats (any n): the test hook behind pyrnn._testing.activation.
template <V (*kFunction)(V)>
void apply_array(const float* x, float* y, std::size_t n) noexcept {
  std::size_t i = 0;
  for (; i + kLanes <= n; i += kLanes) store(y + i, kFunction(load(x + i)));
  if (i < n) {
    alignas(64) float buffer[kLanes] = {};
    for (std::size_t k = i; k < n; ++k) buffer[k - i] = x[k];
    store(buffer, kFunction(load(buffer)));
    for (std::size_t k = i; k < n; ++k) y[k] = buffer[k - i];
  }
}
void sigmoid_array(const float* x, float* y, std::size_t n) noexcept {
  apply_array<sigmoid>(x, y, n);
}
void tanh_array(const float* x, float* y, std::size_t n) noexcept { apply_array<tanh>(x, y, n); }

// ---------------------------------------------------------------------------------------------
// Micro-kernels.
// ---------------------------------------------------------------------------------------------

// acc[r][g*S + s] = sum_k a[r*lda + k] * panel[k*width + g*16 + (v0 + s)*L + lane], R rows.
// R*G*S accumulators live in registers; each k loads G*S weight vectors once for all R rows.
// With G = 1 the tile is S contiguous vectors starting at vector v0 of a row. kAccumulate adds to
// acc instead (a fused step sums x W_ih and h W_hh in the same registers).
template <int R, int G, int S, bool kAccumulate = false, class W = float>
inline void tile_dot(const float* a, std::ptrdiff_t lda, const W* panel, int k, int width, int v0,
                     V (&acc)[R][G * S]) noexcept {
  if constexpr (!kAccumulate)
    for (int r = 0; r < R; ++r)
      for (int c = 0; c < G * S; ++c) acc[r][c] = zero();
  const W* w = panel + v0 * kLanes;
  for (int kk = 0; kk < k; ++kk, w += width) {
    V b[G * S];
    for (int g = 0; g < G; ++g)
      for (int s = 0; s < S; ++s) b[g * S + s] = load_w(w + g * kUnitBlock + s * kLanes);
    for (int r = 0; r < R; ++r) {
      const V x = broadcast(a[r * lda + kk]);
      for (int c = 0; c < G * S; ++c) acc[r][c] = fma(x, b[c], acc[r][c]);
    }
  }
}

// One row against a whole block: acc[c] = sum_k a[k] * panel[k][c*L + lane], c < G*16/L.
// kSets independent accumulator sets take alternate k so enough FMAs are in flight to hide
// their latency even when a block has few vectors (1 for an RNN on AVX-512). No software
// prefetch: the panels are one sequential stream the hardware prefetcher follows; prefetching
// 512-2048 bytes ahead measured no different (LSTM/GRU H=256 on Zen 4, ~100 GB/s either way).
template <int G, int kSets, class W = float>
PYRNN_SIMD_INLINE void row_dot(const float* a, const W* panel, int k,
                               V (&acc)[G * kVecPerGate]) noexcept {
  constexpr int kWidth = G * kUnitBlock, kCols = G * kVecPerGate;
  V part[kSets][kCols];
  for (int p = 0; p < kSets; ++p)
    for (int c = 0; c < kCols; ++c) part[p][c] = zero();
  const W* w = panel;
  int kk = 0;
  for (; kk + kSets <= k; kk += kSets, w += kSets * kWidth) {
    for (int p = 0; p < kSets; ++p) {
      const V x = broadcast(a[kk + p]);
      for (int c = 0; c < kCols; ++c)
        part[p][c] = fma(x, load_w(w + p * kWidth + c * kLanes), part[p][c]);
    }
  }
  for (; kk < k; ++kk, w += kWidth) {
    const V x = broadcast(a[kk]);
    for (int c = 0; c < kCols; ++c) part[0][c] = fma(x, load_w(w + c * kLanes), part[0][c]);
  }
  for (int c = 0; c < kCols; ++c) {
    acc[c] = part[0][c];
    for (int p = 1; p < kSets; ++p) acc[c] = add(acc[c], part[p][c]);
  }
}

// ---------------------------------------------------------------------------------------------
// Cell updates on one vector of L units, gates in PyTorch order. `pre[g]` holds the recurrent
// pre-activation of gate g, `xp` points at the unit's input projection (biases folded in),
// with gate g at xp[g*16].
// ---------------------------------------------------------------------------------------------

template <CellKind kKind>
struct CellUpdate;

template <>
struct CellUpdate<CellKind::Lstm> {
  static constexpr int kGates = 4;
  // c is updated in place; h written.
  PYRNN_SIMD_INLINE static void apply(const V* pre, const float* xp, const float*, const float*,
                                      float* c, float* h) noexcept {
    const V i = sigmoid(add(pre[0], load(xp)));
    const V f = sigmoid(add(pre[1], load(xp + kUnitBlock)));
    const V g = tanh(add(pre[2], load(xp + 2 * kUnitBlock)));
    const V o = sigmoid(add(pre[3], load(xp + 3 * kUnitBlock)));
    const V c_new = fma(f, load(c), mul(i, g));
    store(c, c_new);
    store(h, mul(o, tanh(c_new)));
  }
};

template <>
struct CellUpdate<CellKind::Gru> {
  static constexpr int kGates = 3;
  // rec_bias: b_hn of these units; h_prev: their previous state.
  PYRNN_SIMD_INLINE static void apply(const V* pre, const float* xp, const float* rec_bias,
                                      const float* h_prev, float*, float* h) noexcept {
    const V r = sigmoid(add(pre[0], load(xp)));
    const V z = sigmoid(add(pre[1], load(xp + kUnitBlock)));
    const V n = tanh(fma(r, add(pre[2], load(rec_bias)), load(xp + 2 * kUnitBlock)));
    store(h, fma(sub(broadcast(1.0f), z), n, mul(z, load(h_prev))));
  }
};

template <>
struct CellUpdate<CellKind::RnnTanh> {
  static constexpr int kGates = 1;
  PYRNN_SIMD_INLINE static void apply(const V* pre, const float* xp, const float*, const float*,
                                      float*, float* h) noexcept {
    store(h, tanh(add(pre[0], load(xp))));
  }
};

template <>
struct CellUpdate<CellKind::RnnRelu> {
  static constexpr int kGates = 1;
  PYRNN_SIMD_INLINE static void apply(const V* pre, const float* xp, const float*, const float*,
                                      float*, float* h) noexcept {
    store(h, relu(add(pre[0], load(xp))));
  }
};

// ---------------------------------------------------------------------------------------------
// General (ONNX) cells: core/cell_options.h. The activation is chosen per vector at run time (a
// predictable branch beside a block's G*16*K FMAs); Elu and Softplus go lane by lane through
// libm, the others stay in registers.
// ---------------------------------------------------------------------------------------------

PYRNN_SIMD_INLINE V lane_by_lane(V x, const ActivationFn& a) noexcept {
  alignas(64) float lanes[kLanes];
  store(lanes, x);
  for (int i = 0; i < kLanes; ++i) {
    const float v = lanes[i];
    lanes[i] = a.kind == Activation::Elu ? (v >= 0.0f ? v : a.alpha * expm1f(v)) : log1pf(expf(v));
  }
  return load(lanes);
}

PYRNN_SIMD_INLINE V activate(V x, const ActivationFn& a) noexcept {
  switch (a.kind) {
    case Activation::Sigmoid:
      return sigmoid(x);
    case Activation::Tanh:
      return tanh(x);
    case Activation::Relu:
      return relu(x);
    case Activation::Affine:
      return fma(broadcast(a.alpha), x, broadcast(a.beta));
    case Activation::LeakyRelu:
      return select(less(x, zero()), mul(broadcast(a.alpha), x), x);
    case Activation::ThresholdedRelu:
      return select(less(x, broadcast(a.alpha)), zero(), x);
    case Activation::ScaledTanh:
      return mul(broadcast(a.alpha), tanh(mul(broadcast(a.beta), x)));
    case Activation::HardSigmoid:
      return clamp(fma(broadcast(a.alpha), x, broadcast(a.beta)), zero(), broadcast(1.0f));
    case Activation::Softsign:
      return div(x, add(broadcast(1.0f), abs(x)));
    case Activation::Elu:
    case Activation::Softplus:
      return lane_by_lane(x, a);
  }
  return x;
}

// activation(clip(x)): clip bounds every gate's pre-activation.
PYRNN_SIMD_INLINE V gate(V x, const ActivationFn& a, float clip) noexcept {
  if (clip > 0.0f) x = clamp(x, broadcast(-clip), broadcast(clip));
  return activate(x, a);
}

// `peep`: the unit's peephole weights (i, f, o at peep[g*16]), or null.
template <CellKind kKind>
struct GeneralUpdate {
  PYRNN_SIMD_INLINE static void apply(const CellOptions& o, const V* pre, const float* xp,
                                      const float* rec_bias, const float* h_prev, float* c,
                                      float* h, const float* peep) noexcept {
    if constexpr (kKind == CellKind::Lstm) {
      V pi = add(pre[0], load(xp)), pf = add(pre[1], load(xp + kUnitBlock));
      const V pg = add(pre[2], load(xp + 2 * kUnitBlock));
      V po = add(pre[3], load(xp + 3 * kUnitBlock));
      const V c_prev = load(c);
      if (peep != nullptr) {
        pi = fma(load(peep), c_prev, pi);
        pf = fma(load(peep + kUnitBlock), c_prev, pf);
      }
      const V i = gate(pi, o.f, o.clip);
      const V f = o.input_forget ? sub(broadcast(1.0f), i) : gate(pf, o.f, o.clip);
      const V c_new = fma(f, c_prev, mul(i, gate(pg, o.g, o.clip)));
      store(c, c_new);
      if (peep != nullptr) po = fma(load(peep + 2 * kUnitBlock), c_new, po);
      store(h, mul(gate(po, o.f, o.clip), activate(c_new, o.h)));
    } else if constexpr (kKind == CellKind::Gru) {
      // linear_before_reset = 1 (the other GRU has kernels of its own, below).
      const V r = gate(add(pre[0], load(xp)), o.f, o.clip);
      const V z = gate(add(pre[1], load(xp + kUnitBlock)), o.f, o.clip);
      const V n = gate(fma(r, add(pre[2], load(rec_bias)), load(xp + 2 * kUnitBlock)), o.g, o.clip);
      store(h, fma(sub(broadcast(1.0f), z), n, mul(z, load(h_prev))));
    } else {
      store(h, gate(add(pre[0], load(xp)), o.f, o.clip));
    }
  }
};

// Runs the cell update of R rows x (S vectors of every gate) from a tile's accumulators. `xp`
// points at the input projection of row n0, block j (column 0), rows `ldxp` floats apart.
// `scales` (int8 weights: W_hh's column scales, packed like a bias; else null) scale the sums.
// kGeneral: the general cell (s.options, s.peephole) instead of PyTorch's.
template <CellKind kKind, int R, int S, bool kGeneral = false>
inline void update_tile(const StepArgs& s, int j, int n0, int v0,
                        const V (&acc)[R][gate_count(kKind) * S], const float* xp,
                        std::ptrdiff_t ldxp, const float* scales = nullptr) noexcept {
  constexpr int G = gate_count(kKind);
  for (int r = 0; r < R; ++r) {
    const int n = n0 + r;
    for (int v = 0; v < S; ++v) {
      const int unit = j * kUnitBlock + (v0 + v) * kLanes;
      V pre[G];
      for (int g = 0; g < G; ++g) {
        pre[g] = acc[r][g * S + v];
        if (scales != nullptr)
          pre[g] =
              mul(pre[g], load(scales + j * G * kUnitBlock + g * kUnitBlock + (v0 + v) * kLanes));
      }
      const float* rec_bias = s.rec_bias != nullptr ? s.rec_bias + unit : nullptr;
      float* c = s.c != nullptr ? s.c + n * s.ldc + unit : nullptr;
      if constexpr (kGeneral) {
        const float* peep =
            s.peephole != nullptr ? s.peephole + j * 3 * kUnitBlock + (v0 + v) * kLanes : nullptr;
        GeneralUpdate<kKind>::apply(*s.options, pre, xp + r * ldxp + (v0 + v) * kLanes, rec_bias,
                                    s.h_prev + n * s.ldh_prev + unit, c,
                                    s.h_next + n * s.ldh + unit, peep);
      } else {
        CellUpdate<kKind>::apply(pre, xp + r * ldxp + (v0 + v) * kLanes, rec_bias,
                                 s.h_prev + n * s.ldh_prev + unit, c, s.h_next + n * s.ldh + unit);
      }
    }
  }
}

// Splits `count` rows into ceil(count/kMax) tiles of nearly equal height, so 64 rows with
// 3-row tiles become 20x3 + 2x2 instead of 21x3 + 1x1 (a 1-row tile wastes most of the FMAs).
template <int kMax, class Body>
inline void for_each_row_tile(int count, Body&& body) noexcept {
  const int tiles = (count + kMax - 1) / kMax;
  if (tiles == 0) return;
  const int base = count / tiles, extra = count % tiles;
  int row = 0;
  for (int t = 0; t < tiles; ++t) {
    const int height = base + (t < extra ? 1 : 0);
    body(row, height);
    row += height;
  }
}

// Calls body(std::integral_constant<int, R>{}) for a run-time height R in 1..kMax, so each
// tile height gets its own fully unrolled register tile.
template <int kMax, class Body>
inline void with_height(int height, Body&& body) noexcept {
  if constexpr (kMax >= 1) {
    if (height == kMax) {
      body(std::integral_constant<int, kMax>{});
      return;
    }
    if constexpr (kMax > 1) with_height<kMax - 1>(height, body);
  }
}

// ---------------------------------------------------------------------------------------------
// Table entries.
// ---------------------------------------------------------------------------------------------

// Step tiles per gate count: kRows rows x (G gates x kVecs vectors), so a tile holds every gate
// of kVecs*L units; GEMM tiles: kGemmRows rows x kGemmCols contiguous vectors of a panel row,
// which reads whole cache lines (a gate-grouped AVX2 tile uses half of 4 lines per k, and
// re-reading the other halves from L2 held the AVX2 GEMM at 74% of peak). Chosen per ISA by
// the including file.
template <int G>
struct Tile;
template <>
struct Tile<1> {
  static constexpr int kRows = kTileRows1, kVecs = kTileVecs1;
  static constexpr int kGemmRows = kGemmRows1, kGemmCols = kGemmCols1;
};
template <>
struct Tile<3> {
  static constexpr int kRows = kTileRows3, kVecs = kTileVecs3;
  static constexpr int kGemmRows = kGemmRows3, kGemmCols = kGemmCols3;
};
template <>
struct Tile<4> {
  static constexpr int kRows = kTileRows4, kVecs = kTileVecs4;
  static constexpr int kGemmRows = kGemmRows4, kGemmCols = kGemmCols4;
};

// Calls body(W{}) for the storage type W of `type`, so each kernel is one template per type.
template <class Body>
PYRNN_SIMD_INLINE void with_weight_type(WeightType type, Body&& body) noexcept {
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

// A GEMM's output vector: the sums, times the column scales of int8 panels, plus the bias.
PYRNN_SIMD_INLINE V finish_column(V sum, const float* scales, const float* bias, int col) noexcept {
  if (scales != nullptr) sum = mul(sum, load(scales + col));
  if (bias != nullptr) sum = add(sum, load(bias + col));
  return sum;
}

template <int G, class W>
void gemm_slice(const GemmArgs& g, int row0, int m) noexcept;

// c = a x panels + bias for blocks [block_begin, block_end).
template <int G, class W>
void gemm_g(const GemmArgs& g) noexcept {
  constexpr int kRows = Tile<G>::kGemmRows;
  const int k = g.w->k();
  // Rows of `a` are taken kSliceBytes at a time, so the slice stays in L2 while every panel
  // passes over it: with 128 rows of K = 1024 (512 KiB) plus the output lines, the 1 MiB L2
  // of Zen 4 thrashed and the GEMM ran at 56 GFLOP/s instead of 111 (64-row slices).
  constexpr std::ptrdiff_t kSliceBytes = 256 * 1024;
  const int slice_rows =
      static_cast<int>(larger<std::ptrdiff_t>(kRows, kSliceBytes / (4 * larger(k, 1))));
  for (int slice = 0; slice < g.m; slice += slice_rows) {
    const int slice_m = smaller(slice_rows, g.m - slice);
    gemm_slice<G, W>(g, slice, slice_m);
  }
}

// gemm_g on rows [row0, row0 + m) of a and c.
template <int G, class W>
void gemm_slice(const GemmArgs& g, int row0, int m) noexcept {
  constexpr int kRows = Tile<G>::kGemmRows, kCols = Tile<G>::kGemmCols, kWidth = G * kUnitBlock;
  static_assert(kWidth % (kCols * kLanes) == 0, "GEMM tile columns must divide a panel row");
  const int k = g.w->k();
  const float* scales = g.w->scales();
  // Narrow weights are widened a K-slice at a time into a 32 KiB stack buffer that every row
  // tile then reads as fp32: widening once per slice instead of once per tile keeps the GEMM at
  // the fp32 FMA rate (widening in the tile loop cost 1.5x: 3 uops per int8 vector).
  constexpr bool kWiden = !std::is_same_v<W, float>;
  constexpr int kSliceK = kWiden ? 8192 / kWidth : 1;
  alignas(64) float wide[kWiden ? kSliceK * kWidth : 1];
  for (int j = g.block_begin; j < g.block_end; ++j) {
    const W* panel = g.w->panel_as<W>(j);
    const int slice_k = kWiden ? kSliceK : larger(k, 1);
    for (int k0 = 0; k0 < k || k0 == 0; k0 += slice_k) {
      const int slice = smaller(slice_k, k - k0);
      const bool first = k0 == 0, last = k0 + slice >= k;
      const float* weights = nullptr;
      if constexpr (kWiden) {
        const W* from = panel + static_cast<std::ptrdiff_t>(k0) * kWidth;
        for (int i = 0; i < slice * kWidth; i += kLanes) store(wide + i, load_w(from + i));
        weights = wide;
      }
      for (int v0 = 0; v0 < kWidth / kLanes; v0 += kCols) {
        for_each_row_tile<kRows>(m, [&](int tile_row, int height) {
          const int m0 = row0 + tile_row;
          with_height<kRows>(height, [&](auto rows) {
            constexpr int R = decltype(rows)::value;
            const int col0 = j * kWidth + v0 * kLanes;
            V acc[R][kCols];
            if constexpr (kWiden) {
              // Sums of earlier slices wait in c (raw, before scales and bias).
              for (int r = 0; r < R; ++r)
                for (int c = 0; c < kCols; ++c)
                  acc[r][c] = first ? zero() : load(g.c + (m0 + r) * g.ldc + col0 + c * kLanes);
              tile_dot<R, 1, kCols, true, float>(g.a + m0 * g.lda + k0, g.lda, weights, slice,
                                                 kWidth, v0, acc);
            } else {
              tile_dot<R, 1, kCols, false, W>(g.a + m0 * g.lda, g.lda, panel, k, kWidth, v0, acc);
            }
            for (int r = 0; r < R; ++r) {
              float* out = g.c + (m0 + r) * g.ldc + col0;
              for (int c = 0; c < kCols; ++c)
                store(
                    out + c * kLanes,
                    last ? finish_column(acc[r][c], scales, g.bias, col0 + c * kLanes) : acc[r][c]);
            }
          });
        });
      }
      if (!kWiden) break;
    }
  }
}

// One row (a linear layer on a stream's frame): a register tile of one row gives each output
// vector a single chain of K dependent FMAs (64 x 4 cycles for a 64-input layer); row_dot's
// independent accumulator sets keep enough FMAs in flight instead. Measured on a streamed
// Linear(64, 64) frame: the one-row tile took about 0.2 us, 5x its throughput bound.
template <int G, class W>
void gemv_g(const GemmArgs& g) noexcept {
  constexpr int kWidth = G * kUnitBlock, kCols = G * kVecPerGate;
  constexpr int kSets = kCols >= 8 ? 1 : (8 + kCols - 1) / kCols;
  const int k = g.w->k();
  const float* scales = g.w->scales();
  for (int j = g.block_begin; j < g.block_end; ++j) {
    V acc[kCols];
    row_dot<G, kSets, W>(g.a, g.w->panel_as<W>(j), k, acc);
    float* out = g.c + j * kWidth;
    for (int c = 0; c < kCols; ++c)
      store(out + c * kLanes, finish_column(acc[c], scales, g.bias, j * kWidth + c * kLanes));
  }
}

template <int G>
void gemm_gates(const GemmArgs& g) noexcept {
  with_weight_type(g.w->type(), [&](auto tag) {
    using W = decltype(tag);
    if (g.m == 1)
      gemv_g<G, W>(g);
    else
      gemm_g<G, W>(g);
  });
}

void gemm(const GemmArgs& g) noexcept {
  switch (g.w->gates()) {
    case 4:
      return gemm_gates<4>(g);
    case 3:
      return gemm_gates<3>(g);
    default:
      return gemm_gates<1>(g);
  }
}

// Batch > 1: register tiles of several rows x every gate of kVecs*L units, the cell update
// right after the last K-slice. When a tile covers only part of a block (AVX2: half, NEON: a
// quarter), each pass over the panel would use that part of every cache line it pulls from L2;
// so K is taken kSliceK at a time, the panel slice (8 KiB for an LSTM) staying in L1 while every
// tile and vector offset v0 passes over it, and partial sums of a group of rows wait on the
// stack between slices. Measured on Zen 4, batch 64 LSTM 256: AVX2 step 68 -> 79 GFLOP/s; on
// AVX-512 (whole-block tiles) slicing only cost time (102 -> 88), so it is off there.
template <CellKind kKind, class W, bool kGeneral = false>
void step_batched(const StepArgs& s) noexcept {
  constexpr int G = gate_count(kKind), kWidth = G * kUnitBlock;
  constexpr int kRows = Tile<G>::kRows, kVecs = Tile<G>::kVecs;
  constexpr bool kSlice = kVecs * kLanes < kUnitBlock;
  constexpr int kSliceK = 32, kSliceRows = 24;
  alignas(64) float partial[kSlice ? kSliceRows * kWidth : 1];
  const int k = s.w_hh->k();
  const int slice_k = kSlice ? kSliceK : larger(k, 1);
  const int group_rows = kSlice ? kSliceRows : s.n;
  const float* scales = s.w_hh->scales();
  for (int j = s.block_begin; j < s.block_end; ++j) {
    const W* panel = s.w_hh->panel_as<W>(j);
    for (int g0 = 0; g0 < s.n; g0 += group_rows) {
      const int group = smaller(group_rows, s.n - g0);
      for (int k0 = 0; k0 < k || k0 == 0; k0 += slice_k) {
        const int slice = smaller(slice_k, k - k0);
        const bool first = k0 == 0, last = k0 + slice == k;
        for (int v0 = 0; v0 < kVecPerGate; v0 += kVecs) {
          for_each_row_tile<kRows>(group, [&](int r0, int height) {
            with_height<kRows>(height, [&](auto rows) {
              constexpr int R = decltype(rows)::value;
              const int n0 = g0 + r0;
              V acc[R][G * kVecs];
              tile_dot<R, G, kVecs, false, W>(s.h_prev + n0 * s.ldh_prev + k0, s.ldh_prev,
                                              panel + static_cast<std::ptrdiff_t>(k0) * kWidth,
                                              slice, kWidth, v0, acc);
              if constexpr (kSlice) {
                for (int r = 0; r < R; ++r)
                  for (int gate = 0; gate < G; ++gate)
                    for (int v = 0; v < kVecs; ++v) {
                      float* p =
                          partial + (r0 + r) * kWidth + gate * kUnitBlock + (v0 + v) * kLanes;
                      V& a = acc[r][gate * kVecs + v];
                      if (!first) a = add(a, load(p));
                      if (!last) store(p, a);
                    }
              }
              if (last)
                update_tile<kKind, R, kVecs, kGeneral>(
                    s, j, n0, v0, acc, s.xp + n0 * s.ldxp + j * kWidth, s.ldxp, scales);
            });
          });
        }
      }
    }
  }
}

// One time step of one cell kind for blocks [block_begin, block_end).
template <CellKind kKind, class W, bool kGeneral = false>
void step_typed(const StepArgs& s) noexcept {
  constexpr int G = gate_count(kKind), kCols = G * kVecPerGate;
  const int k = s.w_hh->k();
  if (s.n == 1) {
    // Matrix-vector: the whole block's gates in registers, then the cell update right away.
    constexpr int kSets = kCols >= 8 ? 1 : (8 + kCols - 1) / kCols;
    for (int j = s.block_begin; j < s.block_end; ++j) {
      V acc[1][kCols];
      row_dot<G, kSets, W>(s.h_prev, s.w_hh->panel_as<W>(j), k, acc[0]);
      update_tile<kKind, 1, kVecPerGate, kGeneral>(s, j, 0, 0, acc, s.xp + j * G * kUnitBlock, 0,
                                                   s.w_hh->scales());
    }
    return;
  }
  step_batched<kKind, W, kGeneral>(s);
}

template <CellKind kKind, bool kGeneral = false>
void step(const StepArgs& s) noexcept {
  with_weight_type(s.w_hh->type(),
                   [&](auto tag) { step_typed<kKind, decltype(tag), kGeneral>(s); });
}

// One step with the input projection fused in (see InputStepArgs): per block, the x rows against
// the W_ih panel and the h rows against the W_hh panel, the gates never leaving registers (a
// GRU's input part of the n gate, which r must not scale, waits in a tile buffer on the stack).
// Saves the m = N GEMM call, the projected buffer's write and read, and a second pass over the
// blocks: for a batch-1 LSTM 64 stream step about half the time went to the separate GEMM.
template <CellKind kKind, class W, bool kGeneral = false>
void input_step_typed(const InputStepArgs& f) noexcept {
  constexpr int G = gate_count(kKind), kWidth = G * kUnitBlock, kCols = G * kVecPerGate;
  const StepArgs& s = f.step;
  const int k_in = f.w_ih->k(), k_rec = s.w_hh->k();
  // int8: the input and recurrent sums have scales of their own, so they cannot share
  // accumulators before scaling; the input part is finished on the stack, as for a GRU.
  const float* in_scales = f.w_ih->scales();
  const float* rec_scales = s.w_hh->scales();
  if (s.n == 1) {
    constexpr int kSets = kCols >= 8 ? 1 : (8 + kCols - 1) / kCols;
    const int blocks = s.block_end - s.block_begin;
    for (int b = 0; b < blocks; ++b) {
      const int j = f.descending ? s.block_end - 1 - b : s.block_begin + b;
      // The input part goes to the stack as soon as it is summed: held in registers through the
      // recurrent pass it made an AVX2 LSTM (8 + 8 accumulators in 16 registers) spill.
      alignas(64) float xp[kWidth];
      const auto input_part = [&] {
        V in[kCols];
        row_dot<G, kSets, W>(f.x, f.w_ih->panel_as<W>(j), k_in, in);
        const float* bias = s.xp + j * kWidth;
        for (int c = 0; c < kCols; ++c)
          store(xp + c * kLanes, finish_column(in[c], in_scales ? in_scales + j * kWidth : nullptr,
                                               bias, c * kLanes));
      };
      V acc[1][kCols];
      if (f.descending) {
        alignas(64) float held[kWidth];
        row_dot<G, kSets, W>(s.h_prev, s.w_hh->panel_as<W>(j), k_rec, acc[0]);
        for (int c = 0; c < kCols; ++c) store(held + c * kLanes, acc[0][c]);
        input_part();
        for (int c = 0; c < kCols; ++c) acc[0][c] = load(held + c * kLanes);
      } else {
        input_part();
        row_dot<G, kSets, W>(s.h_prev, s.w_hh->panel_as<W>(j), k_rec, acc[0]);
      }
      update_tile<kKind, 1, kVecPerGate, kGeneral>(s, j, 0, 0, acc, xp, 0, rec_scales);
    }
    return;
  }
  constexpr int kRows = Tile<G>::kRows, kVecs = Tile<G>::kVecs;
  const int blocks = s.block_end - s.block_begin;
  for (int b = 0; b < blocks; ++b) {
    const int j = f.descending ? s.block_end - 1 - b : s.block_begin + b;
    const W* w_ih = f.w_ih->panel_as<W>(j);
    const W* w_hh = s.w_hh->panel_as<W>(j);
    const float* bias = s.xp + j * kWidth;
    for (int v0 = 0; v0 < kVecPerGate; v0 += kVecs) {
      for_each_row_tile<kRows>(s.n, [&](int n0, int height) {
        with_height<kRows>(height, [&](auto rows) {
          constexpr int R = decltype(rows)::value;
          V acc[R][G * kVecs];
          tile_dot<R, G, kVecs, false, W>(f.x + n0 * f.ldx, f.ldx, w_ih, k_in, kWidth, v0, acc);
          if constexpr (kKind == CellKind::Gru || std::is_same_v<W, std::int8_t>) {
            alignas(64) float xp[R * kWidth];
            const float* col_scales = in_scales ? in_scales + j * kWidth : nullptr;
            for (int r = 0; r < R; ++r)
              for (int gate = 0; gate < G; ++gate)
                for (int v = 0; v < kVecs; ++v) {
                  const int col = gate * kUnitBlock + (v0 + v) * kLanes;
                  store(xp + r * kWidth + col,
                        finish_column(acc[r][gate * kVecs + v], col_scales, bias, col));
                }
            tile_dot<R, G, kVecs, false, W>(s.h_prev + n0 * s.ldh_prev, s.ldh_prev, w_hh, k_rec,
                                            kWidth, v0, acc);
            update_tile<kKind, R, kVecs, kGeneral>(s, j, n0, v0, acc, xp, kWidth, rec_scales);
          } else {
            tile_dot<R, G, kVecs, true, W>(s.h_prev + n0 * s.ldh_prev, s.ldh_prev, w_hh, k_rec,
                                           kWidth, v0, acc);
            update_tile<kKind, R, kVecs, kGeneral>(s, j, n0, v0, acc, bias, 0);
          }
        });
      });
    }
  }
}

template <CellKind kKind, bool kGeneral = false>
void input_step(const InputStepArgs& f) noexcept {
  with_weight_type(f.step.w_hh->type(),
                   [&](auto tag) { input_step_typed<kKind, decltype(tag), kGeneral>(f); });
}

// The GRU that resets before the recurrent product (ONNX linear_before_reset = 0, Keras'
// reset_after=False): n = g(x W_in + (r * h) W_hn + b_in + b_hn). Every block's r is needed
// before any block's candidate, so the step runs in two passes over all blocks (one call, see
// CellOptions::whole_step): first r and r * h into scratch, then z and n. Each pass reads only
// its gates' columns of the (r, z, n) panel, so the step reads W_hh once, as the other cells do.
template <int R, class W>
PYRNN_SIMD_INLINE void gate_dot(const float* a, std::ptrdiff_t lda, const PackedPanels& w, int j,
                                int gate, V (&acc)[R][kVecPerGate]) noexcept {
  constexpr int kWidth = 3 * kUnitBlock;
  tile_dot<R, 1, kVecPerGate, false, W>(a, lda, w.panel_as<W>(j) + gate * kUnitBlock, w.k(), kWidth,
                                        0, acc);
  if (const float* scales = w.scales())
    for (int r = 0; r < R; ++r)
      for (int v = 0; v < kVecPerGate; ++v)
        acc[r][v] = mul(acc[r][v], load(scales + j * kWidth + gate * kUnitBlock + v * kLanes));
}

template <class W>
void gru_reset_first_typed(const StepArgs& s) noexcept {
  constexpr int kWidth = 3 * kUnitBlock, kRows = 4;
  const CellOptions& o = *s.options;
  const std::ptrdiff_t ld_rh = static_cast<std::ptrdiff_t>(s.w_hh->blocks()) * kUnitBlock;
  float* rh = s.scratch;
  for (int j = s.block_begin; j < s.block_end; ++j) {
    for_each_row_tile<kRows>(s.n, [&](int n0, int height) {
      with_height<kRows>(height, [&](auto rows) {
        constexpr int R = decltype(rows)::value;
        V acc[R][kVecPerGate];
        gate_dot<R, W>(s.h_prev + n0 * s.ldh_prev, s.ldh_prev, *s.w_hh, j, 0, acc);
        for (int r = 0; r < R; ++r)
          for (int v = 0; v < kVecPerGate; ++v) {
            const int col = j * kUnitBlock + v * kLanes;
            const V reset =
                gate(add(acc[r][v], load(s.xp + (n0 + r) * s.ldxp + j * kWidth + v * kLanes)), o.f,
                     o.clip);
            store(rh + (n0 + r) * ld_rh + col,
                  mul(reset, load(s.h_prev + (n0 + r) * s.ldh_prev + col)));
          }
      });
    });
  }
  for (int j = s.block_begin; j < s.block_end; ++j) {
    for_each_row_tile<kRows>(s.n, [&](int n0, int height) {
      with_height<kRows>(height, [&](auto rows) {
        constexpr int R = decltype(rows)::value;
        V zs[R][kVecPerGate], ns[R][kVecPerGate];
        gate_dot<R, W>(s.h_prev + n0 * s.ldh_prev, s.ldh_prev, *s.w_hh, j, 1, zs);
        gate_dot<R, W>(rh + n0 * ld_rh, ld_rh, *s.w_hh, j, 2, ns);
        for (int r = 0; r < R; ++r)
          for (int v = 0; v < kVecPerGate; ++v) {
            const int col = j * kUnitBlock + v * kLanes;
            const float* xp = s.xp + (n0 + r) * s.ldxp + j * kWidth + v * kLanes;
            const V z = gate(add(zs[r][v], load(xp + kUnitBlock)), o.f, o.clip);
            const V n = gate(add(add(ns[r][v], load(s.rec_bias + col)), load(xp + 2 * kUnitBlock)),
                             o.g, o.clip);
            const V h_prev = load(s.h_prev + (n0 + r) * s.ldh_prev + col);
            store(s.h_next + (n0 + r) * s.ldh + col,
                  fma(sub(broadcast(1.0f), z), n, mul(z, h_prev)));
          }
      });
    });
  }
}

void gru_general_step(const StepArgs& s) noexcept {
  if (s.options->linear_before_reset) return step<CellKind::Gru, true>(s);
  with_weight_type(s.w_hh->type(), [&](auto tag) { gru_reset_first_typed<decltype(tag)>(s); });
}

// The fused step of that GRU: x's projection of the N rows into scratch (after r * h), then the
// two passes.
void gru_general_input_step(const InputStepArgs& f) noexcept {
  if (f.step.options->linear_before_reset) return input_step<CellKind::Gru, true>(f);
  StepArgs s = f.step;
  const std::ptrdiff_t width = f.w_ih->output_width();
  float* xp = s.scratch + static_cast<std::ptrdiff_t>(s.n) * s.w_hh->blocks() * kUnitBlock;
  gemm({f.x, f.ldx, s.n, f.w_ih, s.xp, xp, width, s.block_begin, s.block_end});
  s.xp = xp;
  s.ldxp = width;
  gru_general_step(s);
}

#define PYRNN_ELEMENTWISE_SIMD
#include "kernels/elementwise-inl.h"
#undef PYRNN_ELEMENTWISE_SIMD

#include "kernels/tiny-inl.h"

const KernelTable& make_table(const char* name) noexcept {
  static const KernelTable table{name,
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
                                 kFusedRows,
                                 kFusedPanelBytes,
                                 kSplitStepFlops,
                                 unary,
                                 binary,
                                 softmax,
                                 layer_norm,
                                 step<CellKind::RnnTanh, true>,
                                 step<CellKind::Lstm, true>,
                                 gru_general_step,
                                 input_step<CellKind::RnnTanh, true>,
                                 input_step<CellKind::Lstm, true>,
                                 gru_general_input_step,
                                 &tiny_kernels()};
  return table;
}

#undef PYRNN_SIMD_INLINE
