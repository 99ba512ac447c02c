// The worker pool (see thread_pool.h).
#include "runtime/thread_pool.h"

#include <algorithm>
#include <memory>
#include <new>
#include <thread>

#include "runtime/fork_generation.h"

#if defined(__unix__) || defined(__APPLE__)
#include <pthread.h>
#include <signal.h>
#endif
#if defined(__linux__)
#include <sched.h>
#endif

namespace pyrnn {
namespace {

// How long an idle worker spins for the next region before it sleeps: a stream stepping back to
// back finds it awake; one stepping every few milliseconds pays a wake-up per step instead of
// keeping a core busy.
constexpr std::chrono::microseconds kIdleSpin{300};

constexpr std::uint32_t kCountBits = 16;
constexpr std::uint32_t kCountMask = (1u << kCountBits) - 1;

std::uint32_t job_word(std::uint32_t sequence, int count) noexcept {
  return (sequence << kCountBits) | static_cast<std::uint32_t>(count);
}

// The pool and the fork generation it was made in.
std::atomic<ThreadPool*> g_pool{nullptr};
std::atomic<std::uint32_t> g_pool_generation{0};
// Held (by its holder's fork generation) while a pool is made. Not a mutex: a fork while another
// thread held it would leave it locked forever in the child, where a hold from an earlier
// generation counts as free instead.
std::atomic<std::uint32_t> g_making{0};

// Starts a detached thread running pool->worker_loop(index, seen), with every signal blocked so
// that signals meant for the process (Ctrl-C in Python) go to the threads that expect them.
// Raw pthreads on POSIX: std::thread keeps its start state on the heap, reachable only from the
// new thread, which a forked child lacks (a leak in every child, to valgrind).
bool start_thread(ThreadPool::WorkerStart* start) noexcept {
#if defined(__unix__) || defined(__APPLE__)
  sigset_t all, previous;
  sigfillset(&all);
  pthread_sigmask(SIG_SETMASK, &all, &previous);
  pthread_t thread;
  const bool started =
      pthread_create(
          &thread, nullptr,
          [](void* raw) -> void* {
            ThreadPool::WorkerStart::run(static_cast<ThreadPool::WorkerStart*>(raw));
            return nullptr;
          },
          start) == 0;
  if (started) pthread_detach(thread);
  pthread_sigmask(SIG_SETMASK, &previous, nullptr);
  return started;
#else
  try {
    std::thread([start] { ThreadPool::WorkerStart::run(start); }).detach();
    return true;
  } catch (const std::exception&) {
    return false;
  }
#endif
}

}  // namespace

int available_cpus() noexcept {
#if defined(__linux__)
  cpu_set_t set;
  if (sched_getaffinity(0, sizeof(set), &set) == 0) return std::max(1, CPU_COUNT(&set));
#endif
  return std::max(1u, std::thread::hardware_concurrency());
}

ThreadPool::ThreadPool(int threads, ThreadPool* before_fork)
    : threads_(threads), cpus_(available_cpus()), before_fork_(before_fork) {}

ThreadPool& ThreadPool::instance() noexcept {
  const std::uint32_t now = fork_generation();
  ThreadPool* pool = g_pool.load(std::memory_order_acquire);
  if (pool != nullptr && g_pool_generation.load(std::memory_order_acquire) == now) return *pool;

  for (std::uint32_t seen = g_making.load(std::memory_order_relaxed);;
       seen = g_making.load(std::memory_order_relaxed)) {
    if (seen != now && g_making.compare_exchange_weak(seen, now, std::memory_order_acquire)) break;
    cpu_relax();
  }
  pool = g_pool.load(std::memory_order_acquire);
  if (pool == nullptr || g_pool_generation.load(std::memory_order_acquire) != now) {
    // Without the fork handler a child could not tell that its workers are gone: then never
    // start any. The parent's pool, if any, stays reachable from the new one (never freed: it
    // describes threads of the parent).
    const bool fork_safe = register_fork_handler();
    const int threads = !fork_safe ? 1 : pool != nullptr ? pool->threads() : available_cpus();
    static ThreadPool fallback(1, nullptr);  // when even a pool object cannot be made
    ThreadPool* fresh = new (std::nothrow) ThreadPool(threads, pool);
    if (fresh != nullptr && !fork_safe) fresh->fixed_ = true;
    pool = fresh != nullptr ? fresh : &fallback;
    g_pool.store(pool, std::memory_order_release);
    g_pool_generation.store(now, std::memory_order_release);
  }
  g_making.store(0, std::memory_order_release);
  return *pool;
}

void ThreadPool::set_threads(int threads) noexcept {
  if (fixed_) return;
  threads_.store(std::clamp(threads, 1, kMaxThreads), std::memory_order_relaxed);
}

void ThreadPool::WorkerStart::run(WorkerStart* start) noexcept {
  start->pool->worker_loop(start->index, start->seen);
}

int ThreadPool::start_workers(int count) noexcept {
  const std::uint32_t seen = job_.load();
  while (static_cast<int>(workers_.size()) < count - 1) {
    const int index = static_cast<int>(workers_.size()) + 1;
    // No memory or no threads left: run with the workers there are.
    try {
      workers_.push_back(std::make_unique<WorkerStart>(WorkerStart{this, index, seen}));
    } catch (const std::exception&) {
      break;
    }
    if (!start_thread(workers_.back().get())) {
      workers_.pop_back();
      break;
    }
  }
  return std::min(count, static_cast<int>(workers_.size()) + 1);
}

void ThreadPool::start() noexcept {
  if (threads() <= 1 || busy_.exchange(true, std::memory_order_acquire)) return;
  start_workers(threads());
  busy_.store(false, std::memory_order_release);
}

int ThreadPool::acquire(int requested) noexcept {
  int count = std::min(requested, threads());
  if (count <= 1) return 1;
  if (busy_.exchange(true, std::memory_order_acquire)) return 1;
  count = start_workers(count);
  if (count <= 1) busy_.store(false, std::memory_order_release);
  return count;
}

void ThreadPool::dispatch(int count, Body body, void* context) noexcept {
  body_ = body;
  context_ = context;
  running_.store(count - 1, std::memory_order_relaxed);
  const std::uint32_t sequence = (job_.load() >> kCountBits) + 1;
  std::uint32_t done = done_.load();
  job_.store_and_wake(job_word(sequence, count));
  body(context, 0, count);
  while (running_.load(std::memory_order_acquire) != 0) {
    done_.wait_while_equal(done, barrier_spin(count));
    done = done_.load();
  }
  busy_.store(false, std::memory_order_release);
}

void ThreadPool::worker_loop(int index, std::uint32_t seen) noexcept {
  while (true) {
    job_.wait_while_equal(seen, kIdleSpin);
    seen = job_.load();
    const int count = static_cast<int>(seen & kCountMask);
    if (index >= count) continue;
    body_(context_, index, count);
    if (running_.fetch_sub(1, std::memory_order_acq_rel) == 1) done_.increment_and_wake();
  }
}

}  // namespace pyrnn
