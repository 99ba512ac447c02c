// WaitWord (see wait_word.h): futex on Linux, a short sleep loop elsewhere.
#include "runtime/wait_word.h"

#include <algorithm>
#include <chrono>
#include <thread>

#if defined(__linux__)
#include <linux/futex.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <climits>
#endif

namespace pyrnn {
namespace {

// Pure spinning (no yield) for this long: longer than threads of one step usually drift apart.
constexpr long kBusySpinNs = 20000;

void sleep_while_equal(std::atomic<std::uint32_t>& word, std::uint32_t seen) noexcept {
#if defined(__linux__)
  // Returns at once if the word already changed; spurious wake-ups are re-checked by the caller.
  syscall(SYS_futex, reinterpret_cast<std::uint32_t*>(&word), FUTEX_WAIT_PRIVATE, seen, nullptr,
          nullptr, 0);
#else
  (void)word;
  (void)seen;
  std::this_thread::sleep_for(std::chrono::microseconds(50));
#endif
}

void wake_all(std::atomic<std::uint32_t>& word) noexcept {
#if defined(__linux__)
  syscall(SYS_futex, reinterpret_cast<std::uint32_t*>(&word), FUTEX_WAKE_PRIVATE, INT_MAX, nullptr,
          nullptr, 0);
#else
  (void)word;
#endif
}

}  // namespace

void WaitWord::wait_while_equal(std::uint32_t seen, std::chrono::nanoseconds spin) noexcept {
  // Spin for a time, not a count: a pause lasts from ~10 to ~140 cycles by CPU, and under a
  // hypervisor a spin cut short puts both threads of a barrier into a cycle of sleeping and
  // waking each other (measured in a VM: LSTM 256 steps at 50 us instead of 7.5). Past the
  // first microseconds each round yields the CPU: with more threads than cores, the thread
  // being waited for may need this very core.
  const auto start = std::chrono::steady_clock::now();
  const auto busy_until = start + std::min(spin, std::chrono::nanoseconds(kBusySpinNs));
  const auto deadline = start + spin;
  for (int i = 1;; ++i) {
    if (word_.load(std::memory_order_acquire) != seen) return;
    if (i % 64 != 0) {
      cpu_relax();
      continue;
    }
    const auto now = std::chrono::steady_clock::now();
    if (now >= deadline) break;
    if (now >= busy_until) std::this_thread::yield();
  }
  while (true) {
    // The sleeper count and the word are ordered against the waker's store-then-check (both
    // sequentially consistent): either the waker sees this sleeper, or this thread sees the
    // new value before it sleeps.
    sleepers_.fetch_add(1, std::memory_order_seq_cst);
    if (word_.load(std::memory_order_seq_cst) != seen) {
      sleepers_.fetch_sub(1, std::memory_order_relaxed);
      return;
    }
    sleep_while_equal(word_, seen);
    sleepers_.fetch_sub(1, std::memory_order_relaxed);
    if (word_.load(std::memory_order_acquire) != seen) return;
  }
}

void WaitWord::wake_sleepers() noexcept {
  if (sleepers_.load(std::memory_order_seq_cst) != 0) wake_all(word_);
}

void WaitWord::store_and_wake(std::uint32_t value) noexcept {
  word_.store(value, std::memory_order_seq_cst);
  wake_sleepers();
}

std::uint32_t WaitWord::increment_and_wake() noexcept {
  const std::uint32_t value = word_.fetch_add(1, std::memory_order_seq_cst) + 1;
  wake_sleepers();
  return value;
}

}  // namespace pyrnn
