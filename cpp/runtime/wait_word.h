// Waiting for a 32-bit atomic word to change: spin briefly (the other thread usually answers
// within a recurrent step, a few microseconds), then sleep in the kernel until woken.
//
// A futex round trip costs several microseconds (tens in a virtual machine), more than a whole
// small step, so the spin comes first; sleeping after it keeps idle workers off the CPU. Waiters
// announce themselves in a sleeper count so that a waker pays for the system call only when someone
// actually sleeps.
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>

namespace pyrnn {

class WaitWord {
 public:
  std::uint32_t load() const noexcept { return word_.load(std::memory_order_acquire); }

  // Returns once the word differs from `seen` (acquire): spins for `spin`, then sleeps.
  void wait_while_equal(std::uint32_t seen, std::chrono::nanoseconds spin) noexcept;

  // Stores `value` (release) and wakes every sleeper.
  void store_and_wake(std::uint32_t value) noexcept;

  // Adds one (release) and wakes every sleeper; returns the new value.
  std::uint32_t increment_and_wake() noexcept;

 private:
  void wake_sleepers() noexcept;

  std::atomic<std::uint32_t> word_{0};
  std::atomic<std::uint32_t> sleepers_{0};
};

// One iteration of a polite busy-wait (the CPU's pause/yield hint).
inline void cpu_relax() noexcept {
#if defined(__x86_64__) || defined(__i386__)
  __builtin_ia32_pause();
#elif defined(__aarch64__)
  asm volatile("yield" ::: "memory");
#endif
}

}  // namespace pyrnn
