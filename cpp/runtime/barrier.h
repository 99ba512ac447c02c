// A reusable barrier for a fixed number of threads: the last to arrive opens the next phase.
// Arrivals spin briefly, then sleep (see wait_word.h). Its memory effects are those of a full
// barrier: everything written before arrive_and_wait is visible to every thread after it.
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>

#include "runtime/wait_word.h"

namespace pyrnn {

class Barrier {
 public:
  // How long an early arrival spins before it sleeps: far longer than the threads of one step
  // drift apart, so that inside a region nobody sleeps unless a thread was descheduled.
  static constexpr std::chrono::microseconds kBarrierSpin{2000};

  // `spin`: kBarrierSpin when every participant has a core of its own; with more threads than
  // cores, a spinning thread holds the core the awaited one needs, so sleep at once.

  explicit Barrier(int participants, std::chrono::nanoseconds spin = kBarrierSpin) noexcept
      : participants_(participants), spin_(spin) {}
  Barrier(const Barrier&) = delete;
  Barrier& operator=(const Barrier&) = delete;

  int participants() const noexcept { return participants_; }
  // Only while no thread is at the barrier.
  void reset(int participants, std::chrono::nanoseconds spin) noexcept {
    participants_ = participants;
    spin_ = spin;
  }

  void arrive_and_wait() noexcept {
    if (participants_ <= 1) return;
    const std::uint32_t phase = phase_.load();
    if (arrived_.fetch_add(1, std::memory_order_acq_rel) == participants_ - 1) {
      arrived_.store(0, std::memory_order_relaxed);
      phase_.increment_and_wake();
    } else {
      phase_.wait_while_equal(phase, spin_);
    }
  }

 private:
  int participants_;
  std::chrono::nanoseconds spin_;
  // Apart, so that arrivals and the waiters' polling do not share a cache line.
  alignas(64) std::atomic<int> arrived_{0};
  alignas(64) WaitWord phase_;
};

}  // namespace pyrnn
