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

// Registers for one group of kVecs vectors of every gate of a layer, starting at vector v0.
template <CellKind kKind, int kVecs>
PYRNN_SIMD_INLINE void tiny_group(const TinyLayer& layer, const float* in, int k_in,
                                  const float* h_prev, int k_rec, float* h_next, int v0) noexcept {
  constexpr int G = gate_count(kKind), kWidth = G * kUnitBlock;
  constexpr bool kGru = kKind == CellKind::Gru;
  constexpr int kAccs = G * kVecs;
  // Independent sets over alternate k: at least 8 FMA chains in flight (4-cycle latency, 2 ports).
  constexpr int kSets = kAccs >= 8 ? 1 : (8 + kAccs - 1) / kAccs;
  // Vectors never straddle a block (L divides 16): each has one panel column offset.
  const float* w_in[kVecs];
  const float* w_rec[kVecs];
  int col[kVecs];
  for (int v = 0; v < kVecs; ++v) {
    const int unit = (v0 + v) * kLanes, block = unit / kUnitBlock, offset = unit % kUnitBlock;
    w_in[v] = layer.w_ih->panel(block) + offset;
    w_rec[v] = layer.w_hh->panel(block) + offset;
    col[v] = block * kWidth + offset;
  }
  // The input part plus the bias, then the recurrent part, added last: the order of the
  // general path's fused step, so the two round alike.
  V x_part[kAccs];
  for (int c = 0; c < kAccs; ++c) x_part[c] = zero();
  for (int k = 0; k < k_in; ++k) {
    const V x = broadcast(in[k]);
    for (int g = 0; g < G; ++g)
      for (int v = 0; v < kVecs; ++v)
        x_part[g * kVecs + v] =
            fma(x, load(w_in[v] + k * kWidth + g * kUnitBlock), x_part[g * kVecs + v]);
  }
  for (int g = 0; g < G; ++g)
    for (int v = 0; v < kVecs; ++v)
      x_part[g * kVecs + v] =
          add(x_part[g * kVecs + v], load(layer.input_bias + col[v] + g * kUnitBlock));
  V acc[kSets][kAccs];
  for (int s = 0; s < kSets; ++s)
    for (int c = 0; c < kAccs; ++c) acc[s][c] = zero();
  int k = 0;
  for (; k + kSets <= k_rec; k += kSets)
    for (int s = 0; s < kSets; ++s) {
      const V h = broadcast(h_prev[k + s]);
      for (int g = 0; g < G; ++g)
        for (int v = 0; v < kVecs; ++v)
          acc[s][g * kVecs + v] =
              fma(h, load(w_rec[v] + (k + s) * kWidth + g * kUnitBlock), acc[s][g * kVecs + v]);
    }
  for (; k < k_rec; ++k) {
    const V h = broadcast(h_prev[k]);
    for (int g = 0; g < G; ++g)
      for (int v = 0; v < kVecs; ++v)
        acc[0][g * kVecs + v] =
            fma(h, load(w_rec[v] + k * kWidth + g * kUnitBlock), acc[0][g * kVecs + v]);
  }
  for (int s = 1; s < kSets; ++s)
    for (int c = 0; c < kAccs; ++c) acc[0][c] = add(acc[0][c], acc[s][c]);
  // GRU: r scales only the recurrent part of n (plus b_hn), so n's input part stays apart.
  for (int g = 0; g < G; ++g)
    if (!(kGru && g == 2))
      for (int v = 0; v < kVecs; ++v)
        acc[0][g * kVecs + v] = add(acc[0][g * kVecs + v], x_part[g * kVecs + v]);
  const V* pre = acc[0];
  for (int v = 0; v < kVecs; ++v) {
    const int unit = (v0 + v) * kLanes;
    if constexpr (kKind == CellKind::Lstm) {
      const V i = sigmoid(pre[v]);
      const V f = sigmoid(pre[kVecs + v]);
      const V g = tanh(pre[2 * kVecs + v]);
      const V o = sigmoid(pre[3 * kVecs + v]);
      const V c_new = fma(f, load(layer.c + unit), mul(i, g));
      store(layer.c + unit, c_new);
      store(h_next + unit, mul(o, tanh(c_new)));
    } else if constexpr (kGru) {
      const V r = sigmoid(pre[v]);
      const V z = sigmoid(pre[kVecs + v]);
      const V n = tanh(fma(r, add(pre[2 * kVecs + v], load(layer.rec_bias + unit)), x_part[2 * kVecs + v]));
      store(h_next + unit, fma(sub(broadcast(1.0f), z), n, mul(z, load(h_prev + unit))));
    } else if constexpr (kKind == CellKind::RnnTanh) {
      store(h_next + unit, tanh(pre[v]));
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
