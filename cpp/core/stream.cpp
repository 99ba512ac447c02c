// Stateful streams (see stream.h): argument checks, the one-thread-at-a-time guard (released in
// the child of a fork), and state get/set one layer block at a time in PyTorch's compact
// h_n/c_n layout.
#include "core/stream.h"

#include <stdexcept>
#include <string>

#include "core/busy.h"
#include "runtime/fork_generation.h"

namespace pyrnn {
namespace {

// A stream found held: taken if the hold is from an earlier fork generation (a thread of a
// parent process, which does not exist in this one), else refused. Kept out of the Exclusive
// constructor, whose free case (one compare-and-swap) is on the path of every step.
void take_stale_hold(std::atomic<std::uint32_t>& holder, std::uint32_t seen, std::uint32_t now) {
  do {
    if (seen == now)
      throw StreamBusy(
          "stream is already in use by another thread; use one stream per thread (clone() forks "
          "one) or serialise the calls");
  } while (!holder.compare_exchange_weak(seen, now, std::memory_order_acquire,
                                         std::memory_order_relaxed));
}

// Feeds are processed this many GEMM rows at a time (as forward() does): enough to amortise
// reading W_ih, small enough that the scratch of a stream stays a few KB per row.
int stream_chunk_steps(int rows) { return default_chunk_steps(rows, 1 << 30); }

const NetworkConfig& checked_config(const std::shared_ptr<const Network>& network, int rows) {
  if (!network) throw std::invalid_argument("network: expected a network, got null");
  if (network->config().bidirectional)
    throw std::invalid_argument(
        "network: a stream needs a unidirectional network; a bidirectional one reads the "
        "sequence backwards, which needs every future step before the first output");
  if (rows < 1)
    throw std::invalid_argument("rows: expected at least 1, got " + std::to_string(rows));
  return network->config();
}

std::vector<LayerState> make_states(const NetworkConfig& config, int rows) {
  std::vector<LayerState> states;
  states.reserve(config.num_layers);
  for (int l = 0; l < config.num_layers; ++l) states.emplace_back(config, rows);
  return states;
}

// The tiny kernels' size index for `config` over `rows` rows, or -1 for the general path. Tiny:
// one row, H <= 64 (kTinySizes), I <= 4 (kTinyMaxInput), fp32 weights, PyTorch's cells (no ONNX
// options, no projection). Beyond that the fixed costs of a step no longer dominate: at H = 64
// the general path's blocks of 16 units and its input GEMM cost little next to the arithmetic.
int tiny_index(const Network& network, int rows) {
  const NetworkConfig& config = network.config();
  if (rows != 1 || config.bidirectional || config.proj_size > 0 || config.options.general ||
      config.input_size > kTinyMaxInput || network.weight_type() != WeightType::F32)
    return -1;
  return tiny_size_index(config.hidden_size);
}

}  // namespace

void Stream::choose_path() {
  tiny_index_ = tiny_index(*network_, rows_);
  if (tiny_index_ < 0) return;
  tiny_layers_.clear();
  tiny_layers_.reserve(states_.size());
  for (int l = 0; l < config().num_layers; ++l) {
    const PackedLayer& weights = network_->layer(l, 0);
    LayerState& state = states_[l];
    tiny_layers_.push_back({&weights.w_ih,
                            &weights.w_hh,
                            weights.input_bias.data(),
                            weights.recurrent_bias.data(),
                            {state.h(0), state.h(1)},
                            state.c(),
                            state.current()});
  }
}

void Stream::feed_tiny(const KernelTable& kernels, SequenceIn x, SequenceOut out) noexcept {
  for (std::size_t l = 0; l < tiny_layers_.size(); ++l)
    tiny_layers_[l].parity = states_[l].current();
  (*kernels.tiny)[static_cast<int>(config().kind)][tiny_index_](
      {tiny_layers_.data(), static_cast<int>(tiny_layers_.size()), x.data, x.step_stride, out.data,
       out.step_stride, config().hidden_size, x.steps});
  if (x.steps % 2 != 0)
    for (LayerState& state : states_) state.advance();
}

Stream::Exclusive::Exclusive(const Stream& stream) : holder_(stream.holder_) {
  const std::uint32_t now = fork_generation();
  std::uint32_t seen = 0;
  if (!holder_.compare_exchange_strong(seen, now, std::memory_order_acquire,
                                       std::memory_order_relaxed))
    take_stale_hold(holder_, seen, now);
}

Stream::Stream(std::shared_ptr<const Network> network, int rows)
    : network_(std::move(network)),
      rows_(rows),
      states_(make_states(checked_config(network_, rows), rows)),
      workspace_(network_->config(), rows, stream_chunk_steps(rows)) {
  choose_path();
  if (!register_fork_handler())
    throw std::runtime_error("pthread_atfork failed: cannot make streams fork-safe");
}

std::vector<LayerState> Stream::copy_states(const Stream& other) {
  const Exclusive exclusive(other);
  return other.states_;
}

Stream::Stream(const Stream& other)
    : network_(other.network_),
      rows_(other.rows_),
      states_(copy_states(other)),
      workspace_(network_->config(), rows_, other.workspace_.chunk_steps()) {
  choose_path();
}

void Stream::step(const KernelTable& kernels, const float* x, std::ptrdiff_t ldx, float* out,
                  std::ptrdiff_t ldout) {
  const int input = config().input_size, output = config().output_size();
  feed(kernels, SequenceIn{x, ldx * rows_, ldx, 1, rows_, input},
       SequenceOut{out, ldout * rows_, ldout, 1, rows_, output});
}

void Stream::feed(const KernelTable& kernels, SequenceIn x, SequenceOut out) {
  const Exclusive exclusive(*this);
  if (tiny_index_ >= 0) return feed_tiny(kernels, x, out);
  run_unidirectional(kernels, *network_, x, out, states_.data(), workspace_);
}

void Stream::reset() {
  const Exclusive exclusive(*this);
  for (LayerState& state : states_) state.reset();
}

void Stream::reset_row(int n) {
  if (n < 0 || n >= rows_)
    throw std::out_of_range("rows: expected indices in [0, " + std::to_string(rows_) + "), got " +
                            std::to_string(n));
  const Exclusive exclusive(*this);
  for (LayerState& state : states_) state.reset_row(n);
}

void Stream::get_state(float* h, float* c) const {
  const Exclusive exclusive(*this);
  const std::size_t h_block = static_cast<std::size_t>(rows_) * config().output_size();
  const std::size_t c_block = static_cast<std::size_t>(rows_) * config().hidden_size;
  const bool lstm = config().kind == CellKind::Lstm;
  for (std::size_t l = 0; l < states_.size(); ++l)
    states_[l].store(h + l * h_block, lstm && c ? c + l * c_block : nullptr);
}

void Stream::set_state(const float* h, const float* c) {
  const Exclusive exclusive(*this);
  const std::size_t h_block = static_cast<std::size_t>(rows_) * config().output_size();
  const std::size_t c_block = static_cast<std::size_t>(rows_) * config().hidden_size;
  const bool lstm = config().kind == CellKind::Lstm;
  for (std::size_t l = 0; l < states_.size(); ++l)
    states_[l].load(h + l * h_block, lstm && c ? c + l * c_block : nullptr);
}

}  // namespace pyrnn
