// The worker pool and its barrier: teams get the size asked for (capped by the pool), every
// phase of a barrier sees all writes of the phase before, shares cover a range exactly, a region
// started while the pool is busy (nested, or from another thread) runs alone without waiting,
// many callers at once never deadlock, and a forked child runs regions with its own workers.
#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <thread>
#include <vector>

#if defined(__unix__)
#include <sys/wait.h>
#include <unistd.h>
#define PYRNN_TEST_FORK 1
#else
#define PYRNN_TEST_FORK 0
#endif

#include "check.h"
#include "runtime/thread_pool.h"

namespace {

using pyrnn::Range;
using pyrnn::Team;
using pyrnn::ThreadPool;

void check_shares() {
  for (int size = 1; size <= 9; ++size) {
    for (int items = 0; items <= 40; ++items) {
      int next = 0;
      for (int index = 0; index < size; ++index) {
        const Range r = Team{index, size, nullptr}.share(items);
        PYRNN_CHECK(r.begin == next);
        PYRNN_CHECK(r.size() == items / size || r.size() == items / size + 1);
        next = r.end;
      }
      PYRNN_CHECK(next == items);
    }
  }
}

// Each phase, every thread writes its slot; after the barrier, every thread checks all slots of
// that phase. A barrier that let a thread through early would see a stale slot.
void check_barrier_phases(int threads) {
  ThreadPool& pool = ThreadPool::instance();
  pool.set_threads(threads);
  constexpr int kPhases = 2000;
  std::vector<std::atomic<int>> slots(static_cast<std::size_t>(threads));
  std::atomic<int> wrong{0};
  const int used = pool.parallel(threads, [&](const Team& team) {
    for (int phase = 1; phase <= kPhases; ++phase) {
      slots[team.index].store(phase, std::memory_order_relaxed);
      team.sync();
      for (int i = 0; i < team.size; ++i)
        if (slots[i].load(std::memory_order_relaxed) < phase) wrong.fetch_add(1);
      team.sync();
    }
  });
  PYRNN_CHECK(used == threads);
  PYRNN_CHECK(wrong.load() == 0);
}

void check_team_sizes() {
  ThreadPool& pool = ThreadPool::instance();
  pool.set_threads(3);
  std::atomic<int> calls{0};
  PYRNN_CHECK(pool.parallel(8, [&](const Team& team) {
    PYRNN_CHECK(team.size == 3);
    calls.fetch_add(1 << (4 * team.index));
  }) == 3);
  PYRNN_CHECK(calls.load() == 0x111);  // each index exactly once
  PYRNN_CHECK(pool.parallel(1, [&](const Team& team) { PYRNN_CHECK(team.size == 1); }) == 1);
  pool.set_threads(1);
  PYRNN_CHECK(pool.parallel(4, [&](const Team& team) { PYRNN_CHECK(team.size == 1); }) == 1);
  pool.set_threads(0);  // clamped
  PYRNN_CHECK(pool.threads() == 1);
  pool.set_threads(1 << 20);
  PYRNN_CHECK(pool.threads() == ThreadPool::kMaxThreads);
}

void check_nested_region_runs_alone() {
  ThreadPool& pool = ThreadPool::instance();
  pool.set_threads(2);
  std::atomic<int> inner_sizes{0};
  pool.parallel(2, [&](const Team&) {
    pool.parallel(2, [&](const Team& inner) { inner_sizes.fetch_add(inner.size); });
  });
  PYRNN_CHECK(inner_sizes.load() == 2);  // two inner regions, each of one thread
}

// Four callers, each running many regions of three threads with barriers: whoever finds the
// pool busy runs alone. Each region sums its team's indices; a region that mixed teams, lost a
// thread or deadlocked would show here (or hang the test, which ctest times out).
void check_concurrent_callers() {
  ThreadPool& pool = ThreadPool::instance();
  pool.set_threads(3);
  std::atomic<int> bad{0}, shared_regions{0};
  std::vector<std::thread> callers;
  for (int c = 0; c < 4; ++c) {
    callers.emplace_back([&] {
      for (int i = 0; i < 500; ++i) {
        std::atomic<int> sum{0};
        const int size = pool.parallel(3, [&](const Team& team) {
          sum.fetch_add(team.index);
          team.sync();
          sum.fetch_add(team.index);
        });
        if (size > 1) shared_regions.fetch_add(1);
        if (sum.load() != size * (size - 1)) bad.fetch_add(1);
      }
    });
  }
  for (std::thread& t : callers) t.join();
  PYRNN_CHECK(bad.load() == 0);
  PYRNN_CHECK(shared_regions.load() > 0);
}

#if PYRNN_TEST_FORK
void check_fork() {
  ThreadPool& pool = ThreadPool::instance();
  pool.set_threads(2);
  pool.parallel(2, [](const Team&) {});  // the parent's workers are running
  const pid_t pid = fork();
  if (pid == 0) {
    std::atomic<int> seen{0};
    ThreadPool& child = ThreadPool::instance();
    const int size = child.parallel(2, [&](const Team& team) {
      team.sync();
      seen.fetch_add(1);
    });
    _exit(&child != &pool && child.threads() == 2 && size == 2 && seen.load() == 2 ? 0 : 3);
  }
  int status = 0;
  PYRNN_CHECK(waitpid(pid, &status, 0) == pid);
  PYRNN_CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0);
  PYRNN_CHECK(&ThreadPool::instance() == &pool);
}
#endif

}  // namespace

int main() {
  check_shares();
  for (int threads : {1, 2, 3, 8}) check_barrier_phases(threads);
  check_team_sizes();
  check_nested_region_runs_alone();
  check_concurrent_callers();
#if PYRNN_TEST_FORK
  if (std::getenv("PYRNN_TEST_EMULATED") == nullptr)
    check_fork();
  else  // qemu-user's fork of a threaded process fails inside qemu (tools/check_neon.sh)
    std::printf("test_thread_pool: fork check skipped under an emulator\n");
#endif
  if (pyrnn::testing::failures() != 0) return 1;
  std::printf("test_thread_pool: ok\n");
  return 0;
}
