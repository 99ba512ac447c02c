// Tiny networks (TinyArgs in core/kernel_table.h): H <= 64 units, batch 1, a whole chunk of steps
// and every layer in one call. Included by simd-inl.h inside an ISA's namespace (same rules: no
// include guard, no headers). The including file sets kTinyAccs, the accumulators a group of
// units may hold in registers.
//
// Per layer and step: the gates of a group of units start from the packed bias, take the input
// as broadcasts (I <= 4 FMAs per vector for layer 0) and h_prev (H FMAs per vector), and are
// updated in registers. At batch 1 a general step spent most of its time around the arithmetic
// (GEMM call for the input projection, per-step kernel calls, loops over blocks); here the sizes
// are compile-time, so every loop but the k loops unrolls and nothing is called per step.

// Activations on the tiny kernels' critical path. A tiny step is latency-bound: h -> gates ->
// c -> tanh(c) -> h is one dependency chain per step, two activations long, and the activations
// were most of it (about 90 of 220 cycles each, LSTM 8 on AVX-512). These compute the functions of
// simd-inl.h with the same polynomials and shorter chains: n = round(x / ln 2) by adding and
// subtracting 1.5 * 2^23 (8 cycles against 12 for mul + roundscale), Q(r) by Estrin's scheme
// (12 cycles against 28), and 1/d by the ISA's reciprocal() (an estimate and a Newton step where
// that is faster than a division). They round differently by an ulp or two (tests/test_tiny.py
// holds them to the oracle and to the general path).
//
// e^x for x clamped to [-88, 88.3]: at most 2.4e38, so 1 + e^x stays finite for reciprocal();
// sigmoid and tanh need nothing beyond. NaN propagates.
PYRNN_SIMD_INLINE V tiny_exp(V x) noexcept {
  const V t = clamp(x, broadcast(-88.0f), broadcast(88.3f));
  const V magic = broadcast(12582912.0f);  // 1.5 * 2^23
  const V n = sub(fma(t, broadcast(1.44269504f), magic), magic);
  V r = fma(n, broadcast(-0.693145752f), t);
  r = fma(n, broadcast(-1.42860677e-6f), r);
  const V r2 = mul(r, r);
  const V low = fma(broadcast(0.166665211f), r, broadcast(0.49999994f));
  V high = fma(broadcast(0.00836871006f), r, broadcast(0.041668389f));
  high = fma(broadcast(0.00138146128f), r2, high);
  const V q = fma(high, r2, low);
  return mul(fma(q, r2, add(r, broadcast(1.0f))), pow2(n));
}

PYRNN_SIMD_INLINE V tiny_sigmoid(V x) noexcept {
  return reciprocal(add(broadcast(1.0f), tiny_exp(sub(zero(), x))));
}

// tanh as in simd-inl.h: the odd polynomial below |x| = 0.625, else 1 - 2 / (1 + e^{2x}), which
// needs no sign handling there (e^{2x} tends to 0 or 2.4e38).
PYRNN_SIMD_INLINE V tiny_tanh(V x) noexcept {
  const V s = mul(x, x);
  V p = broadcast(-0.0057049864f);
  p = fma(p, s, broadcast(0.0206390861f));
  p = fma(p, s, broadcast(-0.0537397154f));
  p = fma(p, s, broadcast(0.133314416f));
  p = fma(p, s, broadcast(-0.333332807f));
  const V small = fma(mul(p, s), x, x);
  const V e = tiny_exp(add(x, x));
  const V large = fma(broadcast(-2.0f), reciprocal(add(broadcast(1.0f), e)), broadcast(1.0f));
  return select(less(abs(x), broadcast(0.625f)), small, large);
}

// Every loop over gates, vectors and sets has a compile-time trip count and must unroll: GCC 12
// left some rolled, which put the accumulators on the stack (a store and a reload on every step's
// critical path, and the stack traffic besides).
#if defined(__clang__)
#define PYRNN_TINY_UNROLL _Pragma("unroll")
#elif defined(__GNUC__)
#define PYRNN_TINY_UNROLL _Pragma("GCC unroll 64")
#else
#define PYRNN_TINY_UNROLL
#endif

// Registers for one group of kVecs vectors of every gate of a layer, starting at vector v0.
template <CellKind kKind, int kVecs>
PYRNN_SIMD_INLINE void tiny_group(const TinyLayer& layer, const float* in, int k_in,
                                  const float* h_prev, int k_rec, float* h_next, int v0) noexcept {
  constexpr int G = gate_count(kKind), kWidth = G * kUnitBlock;
  constexpr bool kGru = kKind == CellKind::Gru;
  constexpr int kAccs = G * kVecs;
  // Independent sets over alternate k (at most 4, kTinyAccs accumulators in all): the recurrent
  // sums are on the step's critical path, so they should be a few FMAs deep rather than K. More
  // sets measured slower (AVX-512, LSTM 32 with 3 sets of 8: 118 -> 135 ns per step).
  constexpr int kSets = smaller(4, larger(1, kTinyAccs / kAccs));
  // Vectors never straddle a block (L divides 16): each has one panel column offset.
  const float* w_in[kVecs];
  const float* w_rec[kVecs];
  int col[kVecs];
  PYRNN_TINY_UNROLL
  for (int v = 0; v < kVecs; ++v) {
    const int unit = (v0 + v) * kLanes, block = unit / kUnitBlock, offset = unit % kUnitBlock;
    w_in[v] = layer.w_ih->panel(block) + offset;
    w_rec[v] = layer.w_hh->panel(block) + offset;
    col[v] = block * kWidth + offset;
  }
  // Set 0 starts from the input part plus the bias (off the critical path: x is known), then
  // takes the recurrent part. GRU: r scales only n's recurrent part, so n's input part stays apart.
  V acc[kSets][kAccs];
  V x_n[kGru ? kVecs : 1];
  PYRNN_TINY_UNROLL
  for (int g = 0; g < G; ++g) PYRNN_TINY_UNROLL
  for (int v = 0; v < kVecs; ++v) {
    V sum = zero();
    for (int k = 0; k < k_in; ++k)
      sum = fma(broadcast(in[k]), load(w_in[v] + k * kWidth + g * kUnitBlock), sum);
    sum = add(sum, load(layer.input_bias + col[v] + g * kUnitBlock));
    if (kGru && g == 2) {
      x_n[kGru ? v : 0] = sum;
      acc[0][g * kVecs + v] = zero();
    } else {
      acc[0][g * kVecs + v] = sum;
    }
  }
  PYRNN_TINY_UNROLL
  for (int s = 1; s < kSets; ++s) PYRNN_TINY_UNROLL
  for (int c = 0; c < kAccs; ++c) acc[s][c] = zero();
  int k = 0;
  for (; k + kSets <= k_rec; k += kSets) PYRNN_TINY_UNROLL
  for (int s = 0; s < kSets; ++s) {
    const V h = broadcast(h_prev[k + s]);
    PYRNN_TINY_UNROLL
    for (int g = 0; g < G; ++g) PYRNN_TINY_UNROLL
    for (int v = 0; v < kVecs; ++v)
      acc[s][g * kVecs + v] =
          fma(h, load(w_rec[v] + (k + s) * kWidth + g * kUnitBlock), acc[s][g * kVecs + v]);
  }
  for (; k < k_rec; ++k) {
    const V h = broadcast(h_prev[k]);
    PYRNN_TINY_UNROLL
    for (int g = 0; g < G; ++g) PYRNN_TINY_UNROLL
    for (int v = 0; v < kVecs; ++v)
      acc[0][g * kVecs + v] =
          fma(h, load(w_rec[v] + k * kWidth + g * kUnitBlock), acc[0][g * kVecs + v]);
  }
  // Pairwise: two adds deep for four sets.
  PYRNN_TINY_UNROLL
  for (int step = 1; step < kSets; step *= 2) PYRNN_TINY_UNROLL
  for (int s = 0; s + step < kSets; s += 2 * step) PYRNN_TINY_UNROLL
  for (int c = 0; c < kAccs; ++c) acc[s][c] = add(acc[s][c], acc[s + step][c]);
  const V(&pre)[kAccs] = acc[0];
  PYRNN_TINY_UNROLL
  for (int v = 0; v < kVecs; ++v) {
    const int unit = (v0 + v) * kLanes;
    if constexpr (kKind == CellKind::Lstm) {
      const V i = tiny_sigmoid(pre[v]);
      const V f = tiny_sigmoid(pre[kVecs + v]);
      const V g = tiny_tanh(pre[2 * kVecs + v]);
      const V o = tiny_sigmoid(pre[3 * kVecs + v]);
      const V c_new = fma(f, load(layer.c + unit), mul(i, g));
      store(layer.c + unit, c_new);
      store(h_next + unit, mul(o, tiny_tanh(c_new)));
    } else if constexpr (kGru) {
      const V r = tiny_sigmoid(pre[v]);
      const V z = tiny_sigmoid(pre[kVecs + v]);
      const V n = tiny_tanh(
          fma(r, add(pre[2 * kVecs + v], load(layer.rec_bias + unit)), x_n[kGru ? v : 0]));
      store(h_next + unit, fma(sub(broadcast(1.0f), z), n, mul(z, load(h_prev + unit))));
    } else if constexpr (kKind == CellKind::RnnTanh) {
      store(h_next + unit, tiny_tanh(pre[v]));
    } else {
      store(h_next + unit, relu(pre[v]));
    }
  }
}

template <CellKind kKind, int kUnits>
void tiny_feed(const TinyArgs& a) noexcept {
  constexpr int G = gate_count(kKind);
  constexpr int kVecs = (kUnits + kLanes - 1) / kLanes;
  constexpr int kPerVec = G + (kKind == CellKind::Gru ? 1 : 0);
  constexpr int kGroup = smaller(kVecs, larger(1, kTinyAccs / kPerVec));
  constexpr int kFull = kVecs / kGroup, kTail = kVecs % kGroup;
  const int k_rec = a.layers[0].w_hh->k();
  for (int t = 0; t < a.steps; ++t) {
    const float* in = a.x + t * a.x_step;
    for (int l = 0; l < a.num_layers; ++l) {
      const TinyLayer& layer = a.layers[l];
      const int parity = layer.parity ^ (t & 1);
      const float* h_prev = layer.h[parity];
      float* h_next = layer.h[1 - parity];
      const int k_in = layer.w_ih->k();
      for (int group = 0; group < kFull; ++group)
        tiny_group<kKind, kGroup>(layer, in, k_in, h_prev, k_rec, h_next, group * kGroup);
      if constexpr (kTail > 0)
        tiny_group<kKind, kTail>(layer, in, k_in, h_prev, k_rec, h_next, kFull * kGroup);
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

const TinyKernels& tiny_kernels() noexcept {
  static const TinyKernels kernels = {
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
  return kernels;
}

#undef PYRNN_TINY_UNROLL
