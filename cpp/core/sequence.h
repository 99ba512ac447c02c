// Running a packed network over time: views on (T, N, F) sequences, the recurrent state of one
// (layer, direction), preallocated scratch, and the loops that drive the kernels.
//
// Per (layer, direction) and per chunk of steps, the input projection of all steps in the chunk
// is one GEMM; then each step is one fused kernel call. Time is processed in chunks so scratch
// memory is bounded by the chunk, never by T.
#pragma once

#include <cstddef>
#include <memory>
#include <vector>

#include "core/aligned_buffer.h"
#include "core/kernel_table.h"
#include "core/network.h"
#include "runtime/thread_pool.h"

namespace pyrnn {

// A (T, N, F) float sequence with arbitrary step and row strides (in floats) and unit feature
// stride. `Float` is const for inputs.
//
// Packed (offsets not null; PyTorch's PackedSequence layout): the sequences are sorted by length,
// longest first, and step t holds only the first active(t) rows, stored one after another
// (row_stride apart) right after the rows of step t - 1; step_stride is unused. offsets holds the
// running row count: step t's rows are offsets[t] - offsets[0] .. offsets[t + 1] - offsets[0]
// of the view, and active(t) never grows with t. offsets[steps + 1] must exist and give the
// next step's rows (the sequence's end: a final entry equal to the one before it), so that the
// state of rows ending at the view's last step is kept (see run_layer). rows is active(0).
template <class Float>
struct SequenceView {
  Float* data = nullptr;
  std::ptrdiff_t step_stride = 0;
  std::ptrdiff_t row_stride = 0;
  int steps = 0;
  int rows = 0;
  int features = 0;
  const std::ptrdiff_t* offsets = nullptr;

  bool packed() const noexcept { return offsets != nullptr; }
  // Rows that step t runs; t == steps is allowed for a packed view (the next step's).
  int active(int t) const noexcept {
    return packed() ? static_cast<int>(offsets[t + 1] - offsets[t]) : rows;
  }
  // Rows before step t, in the view's row order (packed) or t * rows.
  std::ptrdiff_t first_row(int t) const noexcept {
    return packed() ? offsets[t] - offsets[0] : static_cast<std::ptrdiff_t>(t) * rows;
  }
  std::ptrdiff_t total_rows() const noexcept { return first_row(steps); }
  Float* row(int t, int n) const noexcept {
    if (packed()) return data + (offsets[t] - offsets[0] + n) * row_stride;
    return data + static_cast<std::ptrdiff_t>(t) * step_stride + n * row_stride;
  }
  SequenceView time_slice(int t0, int t1) const noexcept {
    return {row(t0, 0),
            step_stride,
            row_stride,
            t1 - t0,
            rows,
            features,
            packed() ? offsets + t0 : nullptr};
  }
  SequenceView columns(int offset, int count) const noexcept {
    return {data + offset, step_stride, row_stride, steps, rows, count, offsets};
  }
  // Another buffer laid out like this view, `features` wide, rows contiguous.
  template <class Other>
  SequenceView<Other> like(Other* buffer, int width) const noexcept {
    return {buffer, static_cast<std::ptrdiff_t>(rows) * width, width, steps, rows, width, offsets};
  }
  operator SequenceView<const float>() const noexcept {
    return {data, step_stride, row_stride, steps, rows, features, offsets};
  }
};
using SequenceIn = SequenceView<const float>;
using SequenceOut = SequenceView<float>;

// The recurrent state of one (layer, direction) for N rows, in the kernels' padded layout:
// h (N, padded P) double-buffered so a step reads one and writes the other; c (N, padded H).
class LayerState {
 public:
  LayerState(const NetworkConfig& config, int rows);

  int rows() const noexcept { return rows_; }
  std::ptrdiff_t ld_h() const noexcept { return ld_h_; }
  std::ptrdiff_t ld_c() const noexcept { return ld_c_; }
  float* h() noexcept { return h_[current_].data(); }
  const float* h() const noexcept { return h_[current_].data(); }
  float* h_next() noexcept { return h_[1 - current_].data(); }
  // The two h buffers by parity: h(current()) is the state, h(1 - current()) the next one.
  float* h(int parity) noexcept { return h_[parity].data(); }
  int current() const noexcept { return current_; }
  void set_current(int parity) noexcept { current_ = parity; }
  float* c() noexcept { return c_.data(); }
  const float* c() const noexcept { return c_.data(); }
  void advance() noexcept { current_ = 1 - current_; }
  // Flips at every step, across calls too (streams run one step per call).
  bool odd_step() const noexcept { return current_ == 1; }

  void reset() noexcept;
  void reset_row(int n) noexcept;
  // Copies between the padded state and compact (N, features) arrays with the given row stride.
  void load(const float* h, const float* c) noexcept;
  void store(float* h, float* c) const noexcept;

 private:
  int rows_;
  int h_features_;
  int c_features_;
  std::ptrdiff_t ld_h_;
  std::ptrdiff_t ld_c_;
  AlignedBuffer h_[2];
  AlignedBuffer c_;
  int current_ = 0;
};

// Scratch for running `config` over N rows, `chunk_steps` steps at a time. Allocated once.
class Workspace {
 public:
  Workspace(const NetworkConfig& config, int rows, int chunk_steps);

  int chunk_steps() const noexcept { return chunk_steps_; }
  float* input_rows() noexcept { return input_rows_.data(); }
  float* projected() noexcept { return projected_.data(); }
  float* cell_output() noexcept { return cell_output_.data(); }
  // Ping-pong buffers holding one chunk of a layer's output for the next layer, laid out like
  // `chunk` (that chunk's input: padded or packed).
  SequenceOut layer_output(int which, const SequenceIn& chunk) noexcept;

 private:
  int rows_;
  int chunk_steps_;
  int layer_features_;
  AlignedBuffer input_rows_;   // (chunk*N, max layer input) when input rows are not uniform
  AlignedBuffer projected_;    // (chunk*N, blocks*G*16): input projection of the chunk
  AlignedBuffer cell_output_;  // (N, padded H): LSTM o*tanh(c) before the projection, or
                               // the general GRU step's scratch (StepArgs::scratch)
  AlignedBuffer layer_output_[2];
};

// Steps per chunk for N rows: enough GEMM rows to amortise reading W_ih, few enough to stay small.
int default_chunk_steps(int rows, int steps) noexcept;

// Threads worth using for `network` over `rows` rows and `steps` steps: 1 when a step is too
// small to pay for a barrier (KernelTable::split_step_flops per thread, measured per ISA), else
// up to one per block of hidden units; bidirectional networks run their two directions at once
// when the call is long enough. Capped by the pool's thread count.
int planned_threads(const KernelTable& kernels, const Network& network, int rows,
                    int steps) noexcept;
// Whether any thread count could split `config`'s work (more than one block, or two directions).
bool can_split(const NetworkConfig& config) noexcept;
// For tests: split steps of any size (true), so that small models exercise every split.
void set_split_every_step(bool split) noexcept;

// Runs one (layer, direction) over every step of `in` (backwards for direction 1), writing
// H_out features per step into `out` and carrying `state` forward. Every thread of `team` calls
// it with the same arguments; each computes its own share of the blocks of hidden units (and of
// the projection), and they meet at one barrier per step. Returns after a final barrier.
// Packed `in` (and `out` laid out alike): step t runs its active(t) rows only; each row's state
// ends as that of its own last step, and backwards each row starts from `state` at its own
// last step.
void run_layer(const KernelTable& kernels, const Network& network, int layer, int direction,
               SequenceIn in, SequenceOut out, LayerState& state, Workspace& workspace,
               const Team& team = Team{}) noexcept;

// One unidirectional network over every step of `x`, chunk by chunk and layer after layer within
// each chunk, so scratch stays one chunk deep however long T is. `states` holds num_layers
// entries carried forward. Shared by forward() and Stream::feed/step; allocates nothing.
// Runs on planned_threads() threads of the pool.
void run_unidirectional(const KernelTable& kernels, const Network& network, SequenceIn x,
                        SequenceOut out, LayerState* states, Workspace& workspace) noexcept;

// Everything a whole forward pass over (T, N) needs besides its arguments, allocated once so
// that repeated passes of the same shape (a model graph's plan) allocate nothing.
class ForwardPass {
 public:
  ForwardPass(const Network& network, int rows, int steps);

  // h0/c0 (may be null: zeros) and hn/cn (may be null: not written) are compact contiguous
  // (L*D, N, P) and (L*D, N, H) arrays; c0/cn are ignored unless the cell is an LSTM. x and out
  // must have the rows and steps given at construction. Packed x and out (SequenceView) run
  // each row for its own steps; state row n is then the packed order's row n.
  void run(const KernelTable& kernels, SequenceIn x, SequenceOut out, const float* h0,
           const float* c0, float* hn, float* cn) noexcept;

 private:
  const Network& network_;
  int rows_;
  std::vector<LayerState> states_;
  Workspace workspace_;
  // Bidirectional: the backward direction's scratch (the directions run at once) and the
  // barriers of the two halves of the team.
  std::unique_ptr<Workspace> backward_workspace_;
  std::unique_ptr<Barrier> direction_barriers_[2];
  AlignedBuffer between_[2];  // bidirectional stacks: a whole layer's output for the next
};

// A whole forward pass (a ForwardPass made and run once).
void forward(const KernelTable& kernels, const Network& network, SequenceIn x, SequenceOut out,
             const float* h0, const float* c0, float* hn, float* cn);

}  // namespace pyrnn
