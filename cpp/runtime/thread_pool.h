// The process's one pool of worker threads, and the team a parallel region runs on.
//
// Workers start lazily, the first time a region asks for them, and then wait for work (spinning
// briefly, then asleep). A region runs one function on `count` threads, the caller being thread 0,
// and returns when all of them have returned; nothing is allocated per region.
//
// Policy for concurrent callers: the pool runs one region at a time. A caller that finds it busy
// (another thread's region, or a region started from inside a region) runs its region alone on
// its own thread instead of waiting, so calls from many Python threads never deadlock and never
// add threads beyond the pool and the callers themselves. Results do not depend on it: work is
// split only along independent outputs, so any thread count gives the same bits.
//
// After fork() the child gets a fresh pool (the parent's workers do not exist there), with the
// same thread count, started lazily like the first one.
#pragma once

#include <atomic>
#include <cstdint>
#include <memory>
#include <vector>

#include "runtime/barrier.h"
#include "runtime/wait_word.h"

namespace pyrnn {

// [begin, end) of a range of items.
struct Range {
  int begin;
  int end;
  int size() const noexcept { return end - begin; }
};

// The threads sharing one piece of work: this thread's index among `size`, and the barrier they
// all meet at (null when size is 1).
struct Team {
  int index = 0;
  int size = 1;
  Barrier* barrier = nullptr;

  void sync() const noexcept {
    if (size > 1) barrier->arrive_and_wait();
  }
  // This thread's contiguous share of `items` items (shares differ by at most one item).
  Range share(int items) const noexcept {
    const auto part = [&](int i) {
      return static_cast<int>(static_cast<long long>(items) * i / size);
    };
    return {part(index), part(index + 1)};
  }
  bool leader() const noexcept { return index == 0; }
};

class ThreadPool {
 public:
  // Most threads a region may use (set_threads clamps to it).
  static constexpr int kMaxThreads = 1024;

  // The pool of this process (a new one in a forked child). Thread-safe.
  static ThreadPool& instance() noexcept;

  // Threads a region may use, the caller included, clamped to [1, kMaxThreads]. Takes effect for
  // regions that start afterwards; never blocks.
  void set_threads(int threads) noexcept;
  int threads() const noexcept { return threads_.load(std::memory_order_relaxed); }

  // Starts the workers for threads() now rather than in the first region that needs them, so
  // that region allocates nothing (a stream's first step). No-op while the pool is busy.
  void start() noexcept;

  // Runs f(team) on up to `requested` threads sharing one barrier, the caller being team index
  // 0; returns the team size used: min(requested, threads()), or 1 if the pool is busy (or no
  // worker could be started).
  template <class F>
  int parallel(int requested, const F& f) noexcept {
    const int count = requested > 1 ? acquire(requested) : 1;
    if (count == 1) {
      f(Team{});
      return 1;
    }
    Barrier barrier(count, barrier_spin(count));
    struct Context {
      const F* f;
      Barrier* barrier;
    } context{&f, &barrier};
    dispatch(
        count,
        [](void* raw, int index, int size) {
          const Context& c = *static_cast<const Context*>(raw);
          (*c.f)(Team{index, size, c.barrier});
        },
        &context);
    return count;
  }

  // How long a barrier of `count` threads spins (Barrier's constructor): none when they
  // outnumber the CPUs this process may run on.
  std::chrono::nanoseconds barrier_spin(int count) const noexcept {
    return count <= cpus_ ? std::chrono::nanoseconds(Barrier::kBarrierSpin)
                          : std::chrono::nanoseconds(0);
  }

  ThreadPool(const ThreadPool&) = delete;
  ThreadPool& operator=(const ThreadPool&) = delete;

  // What a worker thread starts from (kept by the pool, so it stays reachable).
  struct WorkerStart {
    ThreadPool* pool;
    int index;
    std::uint32_t seen;
    static void run(WorkerStart* start) noexcept;
  };

 private:
  using Body = void (*)(void* context, int index, int count);

  ThreadPool(int threads, ThreadPool* before_fork);

  // Takes the pool for a region of up to `requested` threads, starting workers as needed, and
  // returns the count granted; 1 means the pool was not taken.
  int acquire(int requested) noexcept;
  // Starts workers until `count` threads can run (the pool taken); returns the count that can.
  int start_workers(int count) noexcept;
  // Runs the region on `count` threads (the pool taken by acquire), then releases the pool.
  void dispatch(int count, Body body, void* context) noexcept;
  void worker_loop(int index, std::uint32_t seen) noexcept;

  std::atomic<int> threads_;
  int cpus_;                 // available_cpus() when the pool was made
  bool fixed_ = false;       // one thread for good: forks cannot be detected
  ThreadPool* before_fork_;  // the parent's pool, in a forked child
  std::atomic<bool> busy_{false};
  std::vector<std::unique_ptr<WorkerStart>> workers_;  // grows only, while the pool is taken

  // The current region: body_ and context_ are read only by the workers taking part, which the
  // caller waits for before it can start another region; the job word carries the region's
  // sequence number (high 16 bits) and its thread count (low 16 bits), so a worker left out of a
  // region never reads the fields being rewritten for the next one.
  Body body_ = nullptr;
  void* context_ = nullptr;
  alignas(64) WaitWord job_;
  alignas(64) std::atomic<int> running_{0};  // workers still inside the region
  alignas(64) WaitWord done_;                // counts regions whose workers have all finished
};

// Number of CPUs this process may run on (its affinity mask), at least 1.
int available_cpus() noexcept;

}  // namespace pyrnn
