// How much memory one plan may take: this machine's physical memory. A plan that would need more
// (any one tensor, its arena plus the outputs it fills, or its kernels' scratch on top) is
// refused before that memory is allocated, instead of failing in the allocator or, under
// overcommit, being killed when the pages are first touched. Sizes come from model files and
// input shapes, so nothing here may overflow: every size is compared, never multiplied blindly.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>

namespace pyrnn::graph {

// This machine's physical memory in bytes, or nullopt where the OS does not say (then only
// sizes that do not fit the address space are refused). A test may pretend a smaller machine.
std::optional<std::size_t> physical_memory_bytes() noexcept;
void set_physical_memory_for_testing(std::optional<std::size_t> bytes) noexcept;

// The byte limit a plan is held to: physical memory, or a quarter of the address space when
// unknown (and never more, so that sums of sizes under it cannot wrap).
std::size_t plan_memory_limit() noexcept;

// "117.7 MiB" for messages (a double: sizes refused may not fit in size_t).
std::string bytes_text(double bytes);

// Throws std::length_error: `what` needs `bytes` (as a double: may exceed size_t), more than
// the limit. The message names the machine's memory and says nothing was allocated.
[[noreturn]] void refuse_memory(const std::string& what, double bytes);

}  // namespace pyrnn::graph
