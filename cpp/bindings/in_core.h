// How many calls are computing in the core at once, with the GIL released: a test hook
// (pyrnn._testing.count_core_calls) that lets the concurrency tests prove their threads' calls
// really overlapped. A test whose threads only took turns would show nothing about sharing a
// module. Off (always, outside those tests) it costs one relaxed load of a flag nobody writes,
// which stays in every core's cache: nothing measurable against a step's 1 microsecond budget.
#pragma once

#include <atomic>

namespace pyrnn::bindings {

inline std::atomic<bool> g_count_core_calls{false};
inline std::atomic<int> g_core_calls{0};       // inside the core now
inline std::atomic<int> g_most_core_calls{0};  // the most at once since counting started

// Declared right after the GIL is released, around the core call.
class InCore {
 public:
  InCore() noexcept : counted_(g_count_core_calls.load(std::memory_order_relaxed)) {
    if (!counted_) return;
    const int now = g_core_calls.fetch_add(1, std::memory_order_acq_rel) + 1;
    int most = g_most_core_calls.load(std::memory_order_relaxed);
    while (now > most && !g_most_core_calls.compare_exchange_weak(most, now)) {
    }
  }
  ~InCore() {
    if (counted_) g_core_calls.fetch_sub(1, std::memory_order_acq_rel);
  }
  InCore(const InCore&) = delete;
  InCore& operator=(const InCore&) = delete;

 private:
  bool counted_;  // a call that began before counting started is never subtracted
};

}  // namespace pyrnn::bindings
