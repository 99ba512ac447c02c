// Every ISA's kernels, called directly: GEMM and each cell's step against the scalar table over
// awkward sizes, and the threads seam: a kernel given blocks [b0, b1) writes only those blocks,
// and running the blocks one range at a time, in any order, gives bit-identical results.
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <random>
#include <vector>

#include "check.h"
#include "core/dispatch.h"
#include "core/packed_panels.h"

namespace {

using pyrnn::AlignedBuffer;
using pyrnn::CellKind;
using pyrnn::KernelTable;
using pyrnn::PackedPanels;

constexpr float kSentinel = 12345.0f;
std::mt19937 rng(7);

void fill(float* data, std::size_t n, float scale) {
  std::uniform_real_distribution<float> uniform(-scale, scale);
  for (std::size_t i = 0; i < n; ++i) data[i] = uniform(rng);
}

// Buffers for one step call of `kind` with n rows, h units, k inputs.
struct StepCase {
  CellKind kind;
  int n, h, k;
  PackedPanels w;
  AlignedBuffer xp, rec_bias, h_prev, h_next, c;
  std::ptrdiff_t ldxp, ldh_prev, ldh, ldc;

  StepCase(CellKind kind_, int n_, int h_, int k_) : kind(kind_), n(n_), h(h_), k(k_) {
    const int g = pyrnn::gate_count(kind);
    std::vector<float> raw(std::size_t(g) * h * k);
    fill(raw.data(), raw.size(), 1.0f / std::sqrt(float(k)));
    w = PackedPanels(raw.data(), g, h, k);
    ldxp = w.output_width() + 16;  // row strides larger than needed, as in real workspaces
    ldh_prev = pyrnn::padded_units(k) + 16;
    ldh = ldc = pyrnn::padded_units(h) + 32;
    xp.resize(std::size_t(n) * ldxp);
    rec_bias.resize(pyrnn::padded_units(h));
    h_prev.resize(std::size_t(n) * ldh_prev);
    h_next.resize(std::size_t(n) * ldh);
    c.resize(std::size_t(n) * ldc);
    fill(xp.data(), xp.size(), 1.0f);
    fill(rec_bias.data(), rec_bias.size(), 0.5f);
    fill(h_prev.data(), h_prev.size(), 1.0f);
    fill(c.data(), c.size(), 1.0f);
  }

  // Runs `step` over the given block ranges on copies of h_next/c preset to the sentinel.
  void run(const KernelTable& table, const std::vector<std::pair<int, int>>& ranges,
           std::vector<float>* h_out, std::vector<float>* c_out) const {
    h_out->assign(h_next.size(), kSentinel);
    c_out->assign(c.data(), c.data() + c.size());
    for (auto [b0, b1] : ranges) {
      table.step_for(kind)({&w, xp.data(), ldxp, rec_bias.data(), h_prev.data(), ldh_prev,
                            h_out->data(), ldh, c_out->data(), ldc, n, b0, b1});
    }
  }
};

bool in_ranges(int unit, const std::vector<std::pair<int, int>>& ranges) {
  for (auto [b0, b1] : ranges)
    if (unit >= b0 * pyrnn::kUnitBlock && unit < b1 * pyrnn::kUnitBlock) return true;
  return false;
}

void check_step(const KernelTable& table, CellKind kind, int n, int h, int k) {
  const StepCase sc(kind, n, h, k);
  const int blocks = pyrnn::block_count(h);
  std::vector<float> ref_h, ref_c, h_all, c_all, h_split, c_split;
  sc.run(pyrnn::kernels_for("scalar"), {{0, blocks}}, &ref_h, &ref_c);
  sc.run(table, {{0, blocks}}, &h_all, &c_all);
  // Against the scalar reference: float32 with other summation orders and the documented
  // activation error (2e-7 relative); the values are O(1), K <= 80 terms.
  for (int r = 0; r < n; ++r)
    for (int u = 0; u < h; ++u) {
      PYRNN_CHECK_CLOSE(h_all[r * sc.ldh + u], ref_h[r * sc.ldh + u], 2e-6, 2e-6);
      if (kind == CellKind::Lstm)
        PYRNN_CHECK_CLOSE(c_all[r * sc.ldc + u], ref_c[r * sc.ldc + u], 2e-6, 2e-6);
    }
  // The seam: blocks one at a time, last first, give the same bits.
  std::vector<std::pair<int, int>> singles;
  for (int b = blocks - 1; b >= 0; --b) singles.push_back({b, b + 1});
  sc.run(table, singles, &h_split, &c_split);
  PYRNN_CHECK(std::memcmp(h_split.data(), h_all.data(), h_all.size() * 4) == 0);
  PYRNN_CHECK(std::memcmp(c_split.data(), c_all.data(), c_all.size() * 4) == 0);
  // A partial range writes its blocks and nothing else.
  if (blocks >= 2) {
    const std::vector<std::pair<int, int>> part = {{1, blocks}};
    sc.run(table, part, &h_split, &c_split);
    for (int r = 0; r < n; ++r)
      for (int u = 0; u < static_cast<int>(sc.ldh); ++u) {
        const std::size_t i = std::size_t(r) * sc.ldh + u;
        if (in_ranges(u, part)) {
          PYRNN_CHECK(h_split[i] == h_all[i]);
        } else {
          PYRNN_CHECK(h_split[i] == kSentinel);
          PYRNN_CHECK(c_split[i] == sc.c.data()[i]);
        }
      }
  }
}

// A fused input step: StepCase's recurrent part plus x (N, I), W_ih and the packed input bias.
struct InputStepCase : StepCase {
  int i;
  PackedPanels w_ih;
  AlignedBuffer x, bias;
  std::ptrdiff_t ldx;

  InputStepCase(CellKind kind_, int n_, int h_, int k_, int i_)
      : StepCase(kind_, n_, h_, k_), i(i_) {
    const int g = pyrnn::gate_count(kind);
    std::vector<float> raw(std::size_t(g) * h * i), raw_bias(std::size_t(g) * h);
    fill(raw.data(), raw.size(), 1.0f / std::sqrt(float(i)));
    fill(raw_bias.data(), raw_bias.size(), 0.5f);
    w_ih = PackedPanels(raw.data(), g, h, i);
    bias = pyrnn::pack_bias(raw_bias.data(), nullptr, g, h);
    ldx = i + 5;
    x.resize(std::size_t(n) * ldx);
    fill(x.data(), x.size(), 1.0f);
  }

  void run_fused(const KernelTable& table, const std::vector<std::pair<int, int>>& ranges,
                 bool descending, std::vector<float>* h_out, std::vector<float>* c_out) const {
    h_out->assign(h_next.size(), kSentinel);
    c_out->assign(c.data(), c.data() + c.size());
    for (auto [b0, b1] : ranges) {
      pyrnn::InputStepArgs args{{&w, bias.data(), 0, rec_bias.data(), h_prev.data(), ldh_prev,
                                 h_out->data(), ldh, c_out->data(), ldc, n, b0, b1},
                                &w_ih,
                                x.data(),
                                ldx};
      args.descending = descending;
      table.input_step_for(kind)(args);
    }
  }

  // The unfused reference: the scalar GEMM into xp, then the scalar step.
  void run_unfused(std::vector<float>* h_out, std::vector<float>* c_out) {
    const KernelTable& scalar = pyrnn::kernels_for("scalar");
    scalar.gemm({x.data(), ldx, n, &w_ih, bias.data(), xp.data(), ldxp, 0, w.blocks()});
    run(scalar, {{0, w.blocks()}}, h_out, c_out);
  }
};

void check_input_step(const KernelTable& table, CellKind kind, int n, int h, int k, int i) {
  InputStepCase sc(kind, n, h, k, i);
  const int blocks = pyrnn::block_count(h);
  std::vector<float> ref_h, ref_c, h_all, c_all, h_split, c_split;
  sc.run_unfused(&ref_h, &ref_c);
  sc.run_fused(table, {{0, blocks}}, false, &h_all, &c_all);
  // Same tolerance as check_step: only the summation order and the activations differ.
  for (int r = 0; r < n; ++r)
    for (int u = 0; u < h; ++u) {
      PYRNN_CHECK_CLOSE(h_all[r * sc.ldh + u], ref_h[r * sc.ldh + u], 2e-6, 2e-6);
      if (kind == CellKind::Lstm)
        PYRNN_CHECK_CLOSE(c_all[r * sc.ldc + u], ref_c[r * sc.ldc + u], 2e-6, 2e-6);
    }
  // Descending block order and blocks one at a time, last first, give the same bits.
  sc.run_fused(table, {{0, blocks}}, true, &h_split, &c_split);
  PYRNN_CHECK(std::memcmp(h_split.data(), h_all.data(), h_all.size() * 4) == 0);
  PYRNN_CHECK(std::memcmp(c_split.data(), c_all.data(), c_all.size() * 4) == 0);
  std::vector<std::pair<int, int>> singles;
  for (int b = blocks - 1; b >= 0; --b) singles.push_back({b, b + 1});
  sc.run_fused(table, singles, false, &h_split, &c_split);
  PYRNN_CHECK(std::memcmp(h_split.data(), h_all.data(), h_all.size() * 4) == 0);
  PYRNN_CHECK(std::memcmp(c_split.data(), c_all.data(), c_all.size() * 4) == 0);
  // A partial range writes its blocks and nothing else.
  if (blocks >= 3) {
    const std::vector<std::pair<int, int>> part = {{1, blocks - 1}};
    sc.run_fused(table, part, true, &h_split, &c_split);
    for (int r = 0; r < n; ++r)
      for (int u = 0; u < static_cast<int>(sc.ldh); ++u) {
        const std::size_t idx = std::size_t(r) * sc.ldh + u;
        if (in_ranges(u, part)) {
          PYRNN_CHECK(h_split[idx] == h_all[idx]);
        } else {
          PYRNN_CHECK(h_split[idx] == kSentinel);
          PYRNN_CHECK(c_split[idx] == sc.c.data()[idx]);
        }
      }
  }
}

void check_gemm(const KernelTable& table, int gates, int m, int h, int k) {
  std::vector<float> raw(std::size_t(gates) * h * k), bias(std::size_t(gates) * h);
  fill(raw.data(), raw.size(), 1.0f);
  fill(bias.data(), bias.size(), 1.0f);
  const PackedPanels w(raw.data(), gates, h, k);
  const AlignedBuffer packed_bias = pyrnn::pack_bias(bias.data(), nullptr, gates, h);
  const std::ptrdiff_t lda = k + 3, ldc = w.output_width() + 16;
  std::vector<float> a(std::size_t(m) * lda);
  fill(a.data(), a.size(), 1.0f);
  const auto run = [&](const KernelTable& t, const std::vector<std::pair<int, int>>& ranges) {
    std::vector<float> c(std::size_t(m) * ldc, kSentinel);
    for (auto [b0, b1] : ranges)
      t.gemm({a.data(), lda, m, &w, packed_bias.data(), c.data(), ldc, b0, b1});
    return c;
  };
  const int blocks = w.blocks();
  const std::vector<float> ref = run(pyrnn::kernels_for("scalar"), {{0, blocks}});
  const std::vector<float> all = run(table, {{0, blocks}});
  for (std::size_t i = 0; i < ref.size(); ++i)
    PYRNN_CHECK_CLOSE(all[i], ref[i], 1e-5 * std::sqrt(double(k)), 1e-6);
  std::vector<std::pair<int, int>> singles;
  for (int b = blocks - 1; b >= 0; --b) singles.push_back({b, b + 1});
  const std::vector<float> split = run(table, singles);
  PYRNN_CHECK(std::memcmp(split.data(), all.data(), all.size() * 4) == 0);
  if (blocks >= 2) {
    const std::vector<float> part = run(table, {{0, 1}});
    const int width = w.row_width();
    for (int r = 0; r < m; ++r)
      for (int col = 0; col < static_cast<int>(ldc); ++col) {
        const std::size_t i = std::size_t(r) * ldc + col;
        PYRNN_CHECK(col < width ? part[i] == all[i] : part[i] == kSentinel);
      }
  }
}

}  // namespace

int main() {
  const CellKind kinds[] = {CellKind::RnnTanh, CellKind::RnnRelu, CellKind::Lstm, CellKind::Gru};
  for (const std::string& isa : pyrnn::available_isas()) {
    const KernelTable& table = pyrnn::kernels_for(isa);
    for (CellKind kind : kinds)
      for (int n : {1, 2, 3, 5, 7, 13, 25, 64})
        for (int h : {1, 9, 17, 33, 65})
          for (int k : {1, 3, 16, 33, 80}) {
            // A GRU blends h_prev into h_next unit by unit, so its K is always H.
            if (kind == CellKind::Gru && k != 1) continue;
            check_step(table, kind, n, h, kind == CellKind::Gru ? h : k);
          }
    for (CellKind kind : kinds)
      for (int n : {1, 2, 3, 7, 13, 64})
        for (int h : {1, 17, 33, 65})
          for (int i : {1, 3, 16, 33, 80})
            check_input_step(table, kind, n, h, kind == CellKind::Gru ? h : (h * 7) % 40 + 1, i);
    for (int gates : {1, 3, 4})
      for (int m : {1, 2, 5, 7, 13, 64, 129})
        for (int h : {1, 17, 40})
          for (int k : {1, 8, 33, 300}) check_gemm(table, gates, m, h, k);
  }
  if (pyrnn::testing::failures() != 0) {
    std::fprintf(stderr, "%d checks failed\n", pyrnn::testing::failures());
    return 1;
  }
  std::printf("test_kernels: all checks passed on %zu ISAs\n", pyrnn::available_isas().size());
  return 0;
}
