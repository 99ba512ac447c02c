// Timing and ISA choice for the machine probes. Built without ISA flags: the CPU is asked what it
// has before any ISA file's loops run.
#include "probe/probe.h"

#include <algorithm>
#include <chrono>
#include <stdexcept>

#include "core/aligned_buffer.h"
#include "core/dispatch.h"

namespace pyrnn::probe {
namespace {

using Clock = std::chrono::steady_clock;

// A trial this long is far above the clock's resolution yet short enough that, on a core shared
// with other processes, some trials run undisturbed; the best trial is reported.
constexpr double kTrialSeconds = 0.005;

double seconds_since(Clock::time_point start) {
  return std::chrono::duration<double>(Clock::now() - start).count();
}

std::vector<const ProbeLoops*> runnable_loops() {
  std::vector<const ProbeLoops*> loops = {&scalar::loops()};
#if defined(PYRNN_PROBE_X86)
  // The kernels' own test of what this CPU runs (dispatch.cpp): one list of needed features.
  const std::vector<std::string> available = available_isas();
  const auto runs = [&](const char* isa) {
    return std::find(available.begin(), available.end(), isa) != available.end();
  };
  if (runs("avx2")) loops.push_back(&avx2::loops());
  if (runs("avx512")) loops.push_back(&avx512::loops());
#endif
  return loops;
}

const ProbeLoops& choose(const std::string& isa) {
  if (const ProbeLoops* found = find_loops(isa)) return *found;
  const auto loops = runnable_loops();
  std::string known;
  for (const ProbeLoops* entry : loops)
    known += (known.empty() ? "" : ", ") + std::string(entry->isa);
  throw std::invalid_argument("isa: expected one of " + known + " (or '' for the best), got '" +
                              isa + "'");
}

void require_seconds(double seconds) {
  if (!(seconds > 0.0 && seconds <= 60.0))
    throw std::invalid_argument("seconds: expected a duration in (0, 60], got " +
                                std::to_string(seconds));
}

// Runs work(repeats) -> units done, with `repeats` first doubled until one trial lasts at least
// kTrialSeconds / 2, then trial after trial until `seconds` have passed (at least 3 trials);
// returns the best units per second seen.
template <class Work>
double best_rate(double seconds, Work&& work) {
  std::int64_t repeats = 1;
  for (;;) {
    const Clock::time_point start = Clock::now();
    work(repeats);
    if (seconds_since(start) >= kTrialSeconds / 2 || repeats >= (std::int64_t{1} << 40)) break;
    repeats *= 2;
  }
  double best = 0.0;
  const Clock::time_point begin = Clock::now();
  for (int trial = 0; trial < 3 || seconds_since(begin) < seconds; ++trial) {
    const Clock::time_point start = Clock::now();
    const double units = static_cast<double>(work(repeats));
    const double elapsed = seconds_since(start);
    if (elapsed > 0.0) best = std::max(best, units / elapsed);
  }
  return best;
}

}  // namespace

const ProbeLoops* find_loops(const std::string& isa) noexcept {
  try {
    const auto loops = runnable_loops();
    if (isa.empty()) return loops.back();
    for (const ProbeLoops* entry : loops)
      if (isa == entry->isa) return entry;
  } catch (...) {  // only bad_alloc of a 3-entry vector: treat as not found
  }
  return nullptr;
}

std::vector<std::string> probe_isas() {
  std::vector<std::string> names;
  for (const ProbeLoops* entry : runnable_loops()) names.emplace_back(entry->isa);
  return names;
}

FmaPeak fma_peak(double seconds, const std::string& isa) {
  require_seconds(seconds);
  const ProbeLoops& loops = choose(isa);
  float sink = 0.0f;
  const double rate = best_rate(
      seconds, [&](std::int64_t repeats) { return loops.fma_loop(repeats * 1000, &sink); });
  return {rate * 1e-9, loops.isa};
}

ReadBandwidth read_bandwidth(std::size_t bytes, double seconds, const std::string& isa) {
  require_seconds(seconds);
  if (bytes == 0 || bytes > (std::size_t{1} << 34))
    throw std::invalid_argument("bytes: expected a buffer size in [1, 16 GiB], got " +
                                std::to_string(bytes));
  const ProbeLoops& loops = choose(isa);
  const std::size_t count = (bytes / sizeof(float) + kReadBlock - 1) / kReadBlock * kReadBlock;
  AlignedBuffer buffer(count);  // zero-filled: every page is touched before timing
  volatile float sink = 0.0f;
  const double rate = best_rate(seconds, [&](std::int64_t repeats) {
    float total = 0.0f;
    for (std::int64_t r = 0; r < repeats; ++r) total += loops.read_sum(buffer.data(), count);
    sink = total;
    return static_cast<double>(repeats) * static_cast<double>(count * sizeof(float));
  });
  (void)sink;
  return {rate * 1e-9, count * sizeof(float), loops.isa};
}

}  // namespace pyrnn::probe
