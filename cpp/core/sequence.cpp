// The time loops of the core (see sequence.h): per-layer state and scratch, chunked input
// projection plus one fused kernel call per step, and forward() over whole sequences.
#include "core/sequence.h"

#include <algorithm>
#include <atomic>
#include <cstdint>
#include <cstring>

namespace pyrnn {

LayerState::LayerState(const NetworkConfig& config, int rows)
    : rows_(rows),
      h_features_(config.output_size()),
      c_features_(config.kind == CellKind::Lstm ? config.hidden_size : 0),
      ld_h_(padded_units(config.output_size())),
      ld_c_(padded_units(config.hidden_size)) {
  const std::size_t h_floats = checked_mul(static_cast<std::size_t>(rows), ld_h_);
  h_[0].resize(h_floats);
  h_[1].resize(h_floats);
  if (c_features_ > 0) c_.resize(checked_mul(static_cast<std::size_t>(rows), ld_c_));
}

void LayerState::reset() noexcept {
  h_[0].fill_zero();
  h_[1].fill_zero();
  c_.fill_zero();
}

void LayerState::reset_row(int n) noexcept {
  for (AlignedBuffer& h : h_) std::memset(h.data() + n * ld_h_, 0, ld_h_ * sizeof(float));
  if (c_features_ > 0) std::memset(c_.data() + n * ld_c_, 0, ld_c_ * sizeof(float));
}

void LayerState::load(const float* h, const float* c) noexcept {
  reset();
  for (int n = 0; n < rows_; ++n) {
    const std::ptrdiff_t row = n;  // row * features can exceed int for large N * H
    if (h != nullptr)
      std::memcpy(this->h() + row * ld_h_, h + row * h_features_, h_features_ * sizeof(float));
    if (c != nullptr && c_features_ > 0)
      std::memcpy(c_.data() + row * ld_c_, c + row * c_features_, c_features_ * sizeof(float));
  }
}

void LayerState::store(float* h, float* c) const noexcept {
  for (int n = 0; n < rows_; ++n) {
    const std::ptrdiff_t row = n;
    if (h != nullptr)
      std::memcpy(h + row * h_features_, this->h() + row * ld_h_, h_features_ * sizeof(float));
    if (c != nullptr && c_features_ > 0)
      std::memcpy(c + row * c_features_, c_.data() + row * ld_c_, c_features_ * sizeof(float));
  }
}

int default_chunk_steps(int rows, int steps) noexcept {
  constexpr std::int64_t kTargetRows = 128;
  // In 64 bits: kTargetRows + rows would overflow int for rows near 2^31.
  const std::int64_t chunk = (kTargetRows + rows - 1) / std::max(rows, 1);
  return static_cast<int>(std::clamp<std::int64_t>(chunk, 1, std::max(steps, 1)));
}

Workspace::Workspace(const NetworkConfig& config, int rows, int chunk_steps)
    : rows_(rows),
      chunk_steps_(chunk_steps),
      layer_features_(config.output_size() * config.directions()) {
  // Every run that may split has scratch: its workers start now rather than in its first step,
  // which then allocates nothing.
  if (can_split(config)) ThreadPool::instance().start();
  const std::size_t chunk_rows = checked_mul(static_cast<std::size_t>(chunk_steps), rows);
  const int max_input = std::max(config.input_size, layer_features_);
  const int projected_width = block_count(config.hidden_size) * config.gates() * kUnitBlock;
  input_rows_.resize(checked_mul(chunk_rows, max_input));
  projected_.resize(checked_mul(chunk_rows, projected_width));
  if (config.proj_size > 0)
    cell_output_.resize(
        checked_mul(static_cast<std::size_t>(rows), padded_units(config.hidden_size)));
  else if (config.options.whole_step())  // the step kernels' scratch (StepArgs::scratch)
    cell_output_.resize(checked_mul(static_cast<std::size_t>(rows),
                                    padded_units(config.hidden_size) * (1 + config.gates())));
  if (config.num_layers > 1 && !config.bidirectional) {
    for (AlignedBuffer& buffer : layer_output_)
      buffer.resize(checked_mul(chunk_rows, layer_features_));
  }
}

SequenceOut Workspace::layer_output(int which, const SequenceIn& chunk) noexcept {
  return chunk.like(layer_output_[which].data(), layer_features_);
}

namespace {

// Rows (t, n) of a chunk, in order t-major, as one matrix with a single row stride. Returns
// false when the strides do not allow it (then the rows are copied into contiguous scratch).
bool uniform_row_stride(const SequenceIn& in, std::ptrdiff_t* stride) {
  if (in.packed()) {  // rows follow each other across steps too
    *stride = in.row_stride;
    return true;
  }
  if (in.rows == 1) {
    *stride = in.step_stride;
    return true;
  }
  if (in.steps == 1 || in.step_stride == in.rows * in.row_stride) {
    *stride = in.row_stride;
    return true;
  }
  return false;
}

}  // namespace

namespace {
std::atomic<bool> g_split_every_step{false};
}  // namespace

bool can_split(const NetworkConfig& config) noexcept {
  return config.bidirectional || block_count(config.hidden_size) > 1;
}

void set_split_every_step(bool split) noexcept {
  g_split_every_step.store(split, std::memory_order_relaxed);
}

int planned_threads(const KernelTable& kernels, const Network& network, int rows,
                    int steps) noexcept {
  const NetworkConfig& config = network.config();
  // Never the pool for a network that cannot split: its first use starts the workers, which
  // allocates, and the Workspace did not start them for such a network.
  if (!can_split(config) || steps <= 0 || rows <= 0) return 1;
  const int pool = ThreadPool::instance().threads();
  if (pool <= 1) return 1;
  const int blocks = block_count(config.hidden_size);
  const bool every_step = g_split_every_step.load(std::memory_order_relaxed);
  // The recurrent product of one step: the part every step must wait for. Each thread gets at
  // least one block.
  const double step_flops =
      2.0 * rows * config.gates() * blocks * kUnitBlock * padded_units(config.output_size());
  const int by_work = every_step ? blocks : static_cast<int>(step_flops / kernels.split_step_flops);
  // A cell whose step needs every block in one kernel call (ONNX's GRU that resets before the
  // recurrent product) keeps each direction's steps on one thread.
  const int per_direction = config.options.whole_step() ? 1 : std::clamp(by_work, 1, blocks);
  if (!config.bidirectional) return std::min(pool, per_direction);
  // The two directions are independent all along: apart when the call is long enough to pay
  // for starting a region and one barrier per layer.
  const bool apart = every_step || step_flops * steps >= 10 * kernels.split_step_flops;
  return apart ? std::min(pool, 2 * per_direction) : 1;
}

namespace {

// The chunk of steps that follows [.., t0) forwards, or precedes [t1, ..) backwards: `chunk`
// steps aligned on multiples of `chunk` (padded), or as many steps as fit in chunk * rows rows
// (packed: the rows of a step shrink, and a chunk of a few rows would read W_ih for little).
int chunk_end(const SequenceIn& in, int t0, int chunk) noexcept {
  if (!in.packed()) return std::min(in.steps, t0 + chunk);
  const std::ptrdiff_t capacity = static_cast<std::ptrdiff_t>(chunk) * in.rows;
  int t1 = t0 + 1;
  while (t1 < in.steps && in.offsets[t1 + 1] - in.offsets[t0] <= capacity) ++t1;
  return t1;
}

int chunk_begin(const SequenceIn& in, int t1, int chunk) noexcept {
  if (!in.packed()) return (t1 - 1) / chunk * chunk;
  const std::ptrdiff_t capacity = static_cast<std::ptrdiff_t>(chunk) * in.rows;
  int t0 = t1 - 1;
  while (t0 > 0 && in.offsets[t1] - in.offsets[t0 - 1] <= capacity) --t0;
  return t0;
}

// Copies rows [begin, end) of one h buffer to the other (both ld apart, `features` used).
void copy_rows(const float* from, float* to, std::ptrdiff_t ld, int begin, int end,
               int features) noexcept {
  for (int n = begin; n < end; ++n)
    std::memcpy(to + n * ld, from + n * ld, features * sizeof(float));
}

}  // namespace

void run_layer(const KernelTable& kernels, const Network& network, int layer, int direction,
               SequenceIn in, SequenceOut out, LayerState& state, Workspace& workspace,
               const Team& team) noexcept {
  const NetworkConfig& config = network.config();
  const PackedLayer& weights = network.layer(layer, direction);
  const bool general = config.options.general;
  const StepKernel step = kernels.step_for(config.kind, general);
  const InputStepKernel input_step = kernels.input_step_for(config.kind, general);
  const bool reverse = direction == 1;
  const int rows = in.rows, features = in.features, h_out = config.output_size();
  const std::ptrdiff_t ld_projected = weights.w_ih.output_width();
  const int chunk = workspace.chunk_steps();
  // This thread's blocks of hidden units, and of the projection for LSTM-P.
  const Range mine = team.share(weights.w_hh.blocks());
  const Range mine_out = team.share(block_count(h_out));
  // Parity of the state buffers, kept locally: every thread flips it alike each step.
  int current = state.current();

  // Packed backwards: a row starts at its own last step, which comes after the others' steps
  // flipped the parity, so its state goes into both buffers first. (Forwards, a row's state is
  // copied to the other buffer as it ends: see below.)
  if (in.packed() && reverse && in.steps > 0) {
    const Range idle = team.share(rows - in.active(in.steps - 1));
    const int first = in.active(in.steps - 1);
    copy_rows(state.h(current), state.h(1 - current), state.ld_h(), first + idle.begin,
              first + idle.end, h_out);
    team.sync();
  }

  // Chunks [t0, t1) in the order of the direction.
  int t0 = 0, t1 = 0;
  if (in.steps > 0) {
    if (reverse) {
      t1 = in.steps;
      t0 = chunk_begin(in, t1, chunk);
    } else {
      t1 = chunk_end(in, t0, chunk);
    }
  }
  while (reverse ? t1 > 0 : t0 < in.steps) {
    const SequenceIn part = in.time_slice(t0, t1);

    // 1. The input projection of every step in the chunk: one GEMM, each thread its own blocks
    // (the only ones its steps read, so no barrier before them). A chunk of one step (a stream
    // step) skips it when the ISA measured it faster: the fused kernel projects x block by
    // block inside the step.
    const bool fused =
        part.steps == 1 && kernels.use_input_step(part.active(0), weights.w_ih, weights.w_hh);
    const float* a = part.data;
    std::ptrdiff_t lda = 0;
    if (!uniform_row_stride(part, &lda)) {
      float* packed = workspace.input_rows();
      const Range rows_mine = team.share(part.steps * rows);
      for (int r = rows_mine.begin; r < rows_mine.end; ++r)
        std::memcpy(packed + static_cast<std::ptrdiff_t>(r) * features,
                    part.row(r / rows, r % rows), features * sizeof(float));
      a = packed;
      lda = features;
      team.sync();
    }
    if (!fused && mine.size() > 0)
      kernels.gemm({a, lda, static_cast<int>(part.total_rows()), &weights.w_ih,
                    weights.input_bias.data(), workspace.projected(), ld_projected, mine.begin,
                    mine.end});

    // 2. The recurrence: one fused kernel call per step (plus the projection GEMM for LSTM-P),
    // then a barrier: the next step reads every thread's units.
    for (int s = 0; s < part.steps; ++s) {
      const int t = reverse ? part.steps - 1 - s : s;
      const int active = part.active(t);
      const bool odd = current == 1;
      float* h_next = state.h(1 - current);
      float* cell_out = config.proj_size > 0 ? workspace.cell_output() : h_next;
      const std::ptrdiff_t ld_cell =
          config.proj_size > 0 ? padded_units(config.hidden_size) : state.ld_h();
      // Fused: xp is the input bias, shared by every row.
      const float* xp = fused ? weights.input_bias.data()
                              : workspace.projected() + part.first_row(t) * ld_projected;
      InputStepArgs args{
          {&weights.w_hh, xp, ld_projected, weights.recurrent_bias.data(), state.h(current),
           state.ld_h(), cell_out, ld_cell, state.c(), state.ld_c(), active, mine.begin, mine.end,
           general ? &config.options : nullptr, weights.peephole.data(), workspace.cell_output()},
          &weights.w_ih,
          a,
          lda};
      if (mine.size() == 0) {
        // More threads than blocks: this one only meets the others at the barriers.
      } else if (fused) {
        // The kernel walks the blocks itself, backwards on odd steps (see below and
        // InputStepArgs::descending): one call per step.
        args.descending = odd;
        input_step(args);
      } else if (!odd || config.options.whole_step()) {
        step(args.step);
      } else {
        // Odd steps walk the blocks backwards, so each step starts on the panels the previous
        // one left in L2 instead of on the ones it evicted first: with W_hh (1 MiB for
        // LSTM 256) about the size of L2, batch-1 steps measured 12.0 -> 10.6 us on Zen 4.
        for (int j = mine.end - 1; j >= mine.begin; --j) {
          args.step.block_begin = j;
          args.step.block_end = j + 1;
          step(args.step);
        }
      }
      if (config.proj_size > 0) {
        team.sync();  // the projection reads every unit of the cell output
        if (mine_out.size() > 0)
          kernels.gemm({cell_out, ld_cell, active, &weights.w_hr, nullptr, h_next, state.ld_h(),
                        mine_out.begin, mine_out.end});
      }
      team.sync();
      // After the barrier, this thread's rows of the output: whole rows, so that no two threads
      // write one cache line of the caller's array.
      const Range my_rows = team.share(active);
      for (int n = my_rows.begin; n < my_rows.end; ++n)
        std::memcpy(out.row(t0 + t, n), h_next + n * state.ld_h(), h_out * sizeof(float));
      if (part.packed() && !reverse) {
        // Rows whose sequence ended at this step: their final h goes into the buffer the next
        // steps write too (they skip these rows), so that it is the state whatever the parity
        // at the end. Nothing reads that buffer's rows past active(t + 1) before the next
        // barrier.
        const int next = part.active(t + 1);
        const Range ended = team.share(active - next);
        copy_rows(h_next, state.h(current), state.ld_h(), next + ended.begin, next + ended.end,
                  h_out);
      }
      current = 1 - current;
    }
    if (reverse) {
      t1 = t0;
      if (t1 > 0) t0 = chunk_begin(in, t1, chunk);
    } else {
      t0 = t1;
      if (t0 < in.steps) t1 = chunk_end(in, t0, chunk);
    }
  }
  // Every thread read the parity before the first barrier above; the last one keeps it from
  // being read again before it is stored.
  if (team.leader()) state.set_current(current);
  team.sync();
}

ForwardPass::ForwardPass(const Network& network, int rows, int steps)
    : network_(network),
      rows_(rows),
      workspace_(network.config(), rows, default_chunk_steps(rows, steps)) {
  const NetworkConfig& config = network.config();
  const int layers = config.num_layers, dirs = config.directions();
  states_.reserve(static_cast<std::size_t>(layers) * dirs);
  for (int i = 0; i < layers * dirs; ++i) states_.emplace_back(config, rows);
  if (dirs == 2) {
    // The backward direction needs the whole sequence of the layer below: full-length buffers.
    const std::size_t seq_floats =
        checked_mul(checked_mul(steps, rows), config.output_size() * dirs);
    if (layers > 1) between_[0].resize(seq_floats);
    if (layers > 2) between_[1].resize(seq_floats);
    backward_workspace_ =
        std::make_unique<Workspace>(config, rows, default_chunk_steps(rows, steps));
    for (std::unique_ptr<Barrier>& barrier : direction_barriers_)
      barrier = std::make_unique<Barrier>(1);
  }
}

void ForwardPass::run(const KernelTable& kernels, SequenceIn x, SequenceOut out, const float* h0,
                      const float* c0, float* hn, float* cn) noexcept {
  const NetworkConfig& config = network_.config();
  const int layers = config.num_layers, dirs = config.directions();
  const int rows = rows_, h_out = config.output_size();
  // No rows: hn and cn are empty. No steps: the loops below run zero times and hn/cn get h0/c0.
  if (rows == 0) return;
  const std::size_t h_block = static_cast<std::size_t>(rows) * h_out;
  const std::size_t c_block = static_cast<std::size_t>(rows) * config.hidden_size;
  for (int i = 0; i < layers * dirs; ++i)
    states_[i].load(h0 ? h0 + i * h_block : nullptr, c0 ? c0 + i * c_block : nullptr);

  if (dirs == 1) {
    run_unidirectional(kernels, network_, x, out, states_.data(), workspace_);
  } else {
    ThreadPool::instance().parallel(
        planned_threads(kernels, network_, rows, x.steps), [&](const Team& team) {
          // Two directions at once when there are two threads or more: the team splits in halves,
          // each with its own barrier and scratch; alone, one direction after the other.
          const bool split = team.size > 1;
          const int first_half = (team.size + 1) / 2;
          const int half = team.index < first_half ? 0 : 1;
          if (split && team.leader()) {
            const std::chrono::nanoseconds spin = ThreadPool::instance().barrier_spin(team.size);
            direction_barriers_[0]->reset(first_half, spin);
            direction_barriers_[1]->reset(team.size - first_half, spin);
          }
          team.sync();
          const Team direction_team = split ? Team{half == 0 ? team.index : team.index - first_half,
                                                   half == 0 ? first_half : team.size - first_half,
                                                   direction_barriers_[half].get()}
                                            : Team{};
          const int features = h_out * dirs;
          SequenceIn in = x;
          for (int l = 0; l < layers; ++l) {
            SequenceOut dst = out;
            if (l < layers - 1) dst = x.like(between_[l % 2].data(), features);
            for (int d = 0; d < dirs; ++d) {
              if (split && d != half) continue;
              run_layer(kernels, network_, l, d, in, dst.columns(d * h_out, h_out),
                        states_[l * dirs + d], d == 0 ? workspace_ : *backward_workspace_,
                        direction_team);
            }
            team.sync();  // the next layer reads both directions' outputs
            in = dst;
          }
        });
  }
  for (int i = 0; i < layers * dirs; ++i)
    states_[i].store(hn ? hn + i * h_block : nullptr, cn ? cn + i * c_block : nullptr);
}

void forward(const KernelTable& kernels, const Network& network, SequenceIn x, SequenceOut out,
             const float* h0, const float* c0, float* hn, float* cn) {
  if (x.rows == 0) return;
  ForwardPass(network, x.rows, x.steps).run(kernels, x, out, h0, c0, hn, cn);
}

void run_unidirectional(const KernelTable& kernels, const Network& network, SequenceIn x,
                        SequenceOut out, LayerState* states, Workspace& workspace) noexcept {
  const int layers = network.config().num_layers;
  const int chunk = workspace.chunk_steps();
  const auto run = [&](const Team& team) {
    for (int t0 = 0, t1 = 0; t0 < x.steps; t0 = t1) {
      t1 = chunk_end(x, t0, chunk);
      SequenceIn in = x.time_slice(t0, t1);
      for (int l = 0; l < layers; ++l) {
        const SequenceOut dst =
            l == layers - 1 ? out.time_slice(t0, t1) : workspace.layer_output(l % 2, in);
        run_layer(kernels, network, l, 0, in, dst, states[l], workspace, team);
        in = dst;
      }
    }
  };
  const int threads = planned_threads(kernels, network, x.rows, x.steps);
  if (threads <= 1) {
    run(Team{});  // small steps never leave the calling thread
  } else {
    ThreadPool::instance().parallel(threads, run);
  }
}

}  // namespace pyrnn
