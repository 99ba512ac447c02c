// A stateful stream over a unidirectional network: the recurrent state of every layer for N
// independent rows, advanced one step (step) or a chunk of steps (feed) at a time, with all
// scratch preallocated so step and feed never allocate.
//
// Shapes: x (N, I) per step or (T, N, I) per chunk, out (N, P) or (T, N, P); state h (L, N, P)
// and, for LSTM, c (L, N, H) in PyTorch's h_n / c_n layout (compact, contiguous).
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <vector>

#include "core/kernel_table.h"
#include "core/network.h"
#include "core/sequence.h"
#include "runtime/fork_generation.h"

namespace pyrnn {

class Stream {
 public:
  // Throws std::invalid_argument for a bidirectional network (a backward pass needs the future)
  // or rows < 1. The network is shared read-only: any number of streams may use it at once.
  Stream(std::shared_ptr<const Network> network, int rows);
  // A fork: same network, a copy of `other`'s state, its own scratch.
  Stream(const Stream& other);
  Stream& operator=(const Stream&) = delete;

  const NetworkConfig& config() const noexcept { return network_->config(); }
  const std::shared_ptr<const Network>& network() const noexcept { return network_; }
  int rows() const noexcept { return rows_; }
  int chunk_steps() const noexcept { return workspace_.chunk_steps(); }
  // Whether step and feed run the tiny kernels (KernelTable::tiny): chosen at construction for
  // one row of a small network (see tiny_size_index in stream.cpp), else the general path.
  bool tiny() const noexcept { return tiny_index_ >= 0; }

  // One step: x (N, I) rows `ldx` floats apart -> out (N, P) rows `ldout` floats apart.
  void step(const KernelTable& kernels, const float* x, std::ptrdiff_t ldx, float* out,
            std::ptrdiff_t ldout);
  // x.steps steps (x.rows must equal rows()), the input projection hoisted per chunk.
  void feed(const KernelTable& kernels, SequenceIn x, SequenceOut out);

  void reset();
  // Throws std::out_of_range unless 0 <= n < rows().
  void reset_row(int n);
  // h (L, N, P), c (L, N, H); c is ignored (may be null) unless the cell is an LSTM.
  void get_state(float* h, float* c) const;
  void set_state(const float* h, const float* c);

  // Every public method holds the stream exclusively while it runs; a second thread calling in
  // meanwhile gets std::runtime_error instead of corrupting the state. Scoped guard, public so
  // callers (the bindings) can hold it across a longer operation.
  //
  // After fork() the child has only the forking thread: a hold taken by any other thread of the
  // parent would never be released there. A hold records the fork generation it was taken in,
  // and a hold from an earlier generation counts as free (see fork_generation()).
  class Exclusive {
   public:
    explicit Exclusive(const Stream& stream);
    ~Exclusive() { holder_.store(0, std::memory_order_release); }
    Exclusive(const Exclusive&) = delete;
    Exclusive& operator=(const Exclusive&) = delete;

   private:
    std::atomic<std::uint32_t>& holder_;
  };

 private:
  static std::vector<LayerState> copy_states(const Stream& other);
  // Points tiny_layers_ at the weights and states when the network is tiny; else tiny_index_ -1.
  void choose_path();
  void feed_tiny(const KernelTable& kernels, SequenceIn x, SequenceOut out) noexcept;

  std::shared_ptr<const Network> network_;
  int rows_;
  std::vector<LayerState> states_;  // one per layer
  Workspace workspace_;
  std::vector<TinyLayer> tiny_layers_;  // one per layer; empty on the general path
  int tiny_index_ = -1;                 // kTinySizes index of the tiny kernel, or -1
  // 0: free; otherwise the fork generation in which the current hold was taken.
  mutable std::atomic<std::uint32_t> holder_{0};
};

}  // namespace pyrnn
