// Machine probes for `pyrnn bench`: the single-core FMA peak and the read bandwidth of a buffer
// of a given size (L2-, L3- or DRAM-sized), so every benchmark figure is shown against hardware.
// Each ISA's inner loops live in their own file and namespace, built with only that ISA's flags;
// probe.cpp (built without ISA flags) times them and picks what the CPU can run.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

namespace pyrnn::probe {

// One ISA's probe loops. fma_loop runs `iterations` rounds of independent FMA chains and
// returns the FLOPs done (2 per multiply-add lane); read_sum sums `count` floats (a multiple of
// kReadBlock) so that every byte is loaded once. Both store into *sink so no work is elided.
struct ProbeLoops {
  const char* isa;
  std::uint64_t (*fma_loop)(std::int64_t iterations, float* sink) noexcept;
  float (*read_sum)(const float* data, std::size_t count) noexcept;
};

// Floats per read_sum block in every ISA: 128 floats = 512 bytes = 8 AVX-512 vectors.
constexpr std::size_t kReadBlock = 128;

namespace scalar {
const ProbeLoops& loops() noexcept;
}
#if defined(PYRNN_PROBE_X86)
namespace avx2 {
const ProbeLoops& loops() noexcept;
}
namespace avx512 {
const ProbeLoops& loops() noexcept;
}
#endif

// ISAs whose probe loops this CPU can run, worst to best ("scalar" first).
std::vector<std::string> probe_isas();
// The loops of `isa` ("" = the best), or nullptr if unknown or not runnable on this CPU.
const ProbeLoops* find_loops(const std::string& isa) noexcept;

struct FmaPeak {
  double gflops;    // best rate over the trials, in 1e9 FLOP/s
  std::string isa;  // the loops that ran
};
// Single-thread FMA peak with `isa`'s loops ("" = best available), measured for about
// `seconds`; the best ~5 ms trial is kept, so other processes on the core lower it little.
FmaPeak fma_peak(double seconds, const std::string& isa = "");

struct ReadBandwidth {
  double gbytes_per_s;  // best rate over the trials, in 1e9 bytes/s
  std::size_t bytes;    // buffer size actually read (rounded up to a whole block)
  std::string isa;
};
// Single-thread read bandwidth over a buffer of `bytes`, read again and again for `seconds`.
ReadBandwidth read_bandwidth(std::size_t bytes, double seconds, const std::string& isa = "");

}  // namespace pyrnn::probe
