// The machine probes of `pyrnn bench`: every ISA's loops do the work they claim (all FLOPs
// counted, every float read), and the timed probes validate their arguments. No timing checks.
#include <cmath>
#include <cstdint>
#include <stdexcept>
#include <string>

#include "check.h"
#include "core/aligned_buffer.h"
#include "probe/probe.h"

namespace {

using namespace pyrnn::probe;

template <class F>
bool throws_invalid_argument(F&& f) {
  try {
    f();
  } catch (const std::invalid_argument&) {
    return true;
  }
  return false;
}

void check_loops(const ProbeLoops& loops) {
  const std::string isa = loops.isa;
  float sink = 0.0f;
  const std::uint64_t once = loops.fma_loop(1000, &sink);
  PYRNN_CHECK(once > 0 && once % 2000 == 0);  // 2 FLOPs per lane per chain per iteration
  PYRNN_CHECK(loops.fma_loop(3000, &sink) == 3 * once);
  // x -> 0.999999 x + 1e-6 keeps values near 1: the sum over all lanes is finite and positive.
  PYRNN_CHECK(std::isfinite(sink) && sink > 0.0f);

  const std::size_t count = 16 * kReadBlock;
  pyrnn::AlignedBuffer ones(count);
  for (std::size_t i = 0; i < count; ++i) ones.data()[i] = 1.0f;
  const float total = loops.read_sum(ones.data(), count);
  if (isa == "scalar") {
    // The scalar loop sums bit patterns as uint32 (so it may vectorise); 1.0f is 0x3f800000.
    const std::uint32_t expected = static_cast<std::uint32_t>(count) * 0x3f800000u;
    PYRNN_CHECK(total == static_cast<float>(expected));
  } else {
    PYRNN_CHECK(total == static_cast<float>(count));  // every element read exactly once
  }
  ones.data()[count - 1] = 2.0f;  // the last element is read too
  PYRNN_CHECK(loops.read_sum(ones.data(), count) != total);
}

}  // namespace

int main() {
  const auto isas = probe_isas();
  PYRNN_CHECK(!isas.empty() && isas.front() == "scalar");
  for (const std::string& isa : isas) {
    const ProbeLoops* loops = find_loops(isa);
    PYRNN_CHECK(loops != nullptr);
    if (loops != nullptr) check_loops(*loops);
    const FmaPeak peak = fma_peak(0.02, isa);
    PYRNN_CHECK(peak.gflops > 0.0 && peak.isa == isa);
    const ReadBandwidth bandwidth = read_bandwidth(100000, 0.02, isa);
    PYRNN_CHECK(bandwidth.gbytes_per_s > 0.0 && bandwidth.isa == isa);
    PYRNN_CHECK(bandwidth.bytes >= 100000 && bandwidth.bytes % (kReadBlock * 4) == 0);
  }
  PYRNN_CHECK(find_loops("") == find_loops(isas.back()));
  PYRNN_CHECK(find_loops("sse9") == nullptr);
  PYRNN_CHECK(throws_invalid_argument([] { fma_peak(0.0); }));
  PYRNN_CHECK(throws_invalid_argument([] { fma_peak(0.01, "sse9"); }));
  PYRNN_CHECK(throws_invalid_argument([] { read_bandwidth(0, 0.01); }));
  PYRNN_CHECK(throws_invalid_argument([] { read_bandwidth(1024, -1.0); }));
  if (pyrnn::testing::failures() == 0) std::printf("test_probe: %zu ISAs ok\n", isas.size());
  return pyrnn::testing::failures() == 0 ? 0 : 1;
}
