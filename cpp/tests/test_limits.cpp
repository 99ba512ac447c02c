// Size arithmetic cannot overflow: checked_mul and AlignedBuffer refuse impossible sizes, and
// NetworkConfig::validate refuses configs whose derived widths would not fit the core's int
// indices; default_chunk_steps is defined for any row count. Graph values' byte counts do not
// wrap, and an allocation budget refuses buffers before allocating them.
#include <climits>
#include <cstdint>
#include <cstdio>
#include <limits>
#include <new>
#include <optional>
#include <stdexcept>
#include <string>

#include "check.h"
#include "core/aligned_buffer.h"
#include "core/network.h"
#include "core/sequence.h"
#include "graph/memory_limit.h"
#include "graph/tensor.h"

namespace {

using pyrnn::CellKind;
using pyrnn::NetworkConfig;

template <class Exception, class Body>
bool throws(Body body) {
  try {
    body();
  } catch (const Exception&) {
    return true;
  } catch (...) {
    return false;
  }
  return false;
}

bool valid(const NetworkConfig& config) {
  return !throws<std::invalid_argument>([&] { config.validate(); });
}

void check_multiplication() {
  constexpr std::size_t kMax = std::numeric_limits<std::size_t>::max();
  PYRNN_CHECK(pyrnn::checked_mul(0, kMax) == 0);
  PYRNN_CHECK(pyrnn::checked_mul(kMax, 1) == kMax);
  PYRNN_CHECK(pyrnn::checked_mul(std::size_t{1} << 31, std::size_t{1} << 31) == std::size_t{1}
                                                                                    << 62);
  PYRNN_CHECK(throws<std::length_error>([] { pyrnn::checked_mul(kMax / 2 + 1, 2); }));
  PYRNN_CHECK(throws<std::length_error>(
      [] { pyrnn::checked_mul(std::size_t{1} << 32, std::size_t{1} << 32); }));
  // count * sizeof(float) overflows: refused before asking the allocator.
  PYRNN_CHECK(throws<std::length_error>([] { pyrnn::AlignedBuffer buffer(kMax / 2); }));
  // count * sizeof(float) fits, but rounding it up to the 64-byte alignment would wrap to a
  // few bytes, leaving a buffer far smaller than its size().
  PYRNN_CHECK(throws<std::length_error>([] { pyrnn::AlignedBuffer buffer(kMax / 4); }));
  PYRNN_CHECK(throws<std::length_error>([] { pyrnn::AlignedBuffer buffer(kMax / 4 - 7); }));
  pyrnn::AlignedBuffer empty(0);
  PYRNN_CHECK(empty.size() == 0 && empty.data() == nullptr);
}

void check_value_bytes() {
  using pyrnn::graph::DType;
  pyrnn::graph::ValueMeta meta;
  meta.shape.push_back(std::int64_t{1} << 31);
  meta.shape.push_back(std::int64_t{1} << 31);
  // 2^62 elements pass the element limit, but 2^62 * 4 bytes wrapped to 0.
  PYRNN_CHECK(meta.shape.numel() == std::int64_t{1} << 62);
  PYRNN_CHECK(throws<std::length_error>([&] { (void)meta.bytes(); }));
  meta.dtype = DType::I64;
  PYRNN_CHECK(throws<std::length_error>([&] { (void)meta.bytes(); }));
  meta.shape[0] = 3;
  PYRNN_CHECK(meta.bytes() == (std::size_t{3} << 31) * 8);
}

void check_allocation_budget() {
  using pyrnn::AllocationBudget;
  {
    const AllocationBudget budget(1000, "the test");
    pyrnn::AlignedBuffer fits(100);  // 400 bytes, 448 rounded up to the alignment
    PYRNN_CHECK(budget.remaining() == 1000 - 448);
    PYRNN_CHECK(throws<std::length_error>([] { pyrnn::AlignedBuffer over(200); }));
    PYRNN_CHECK(budget.remaining() == 1000 - 448);  // a refused buffer costs nothing
    {
      const AllocationBudget inner(64, "the inner test");  // the innermost budget is charged
      PYRNN_CHECK(throws<std::length_error>([] { pyrnn::AlignedBuffer over(17); }));
      pyrnn::AlignedBuffer small(16);
      PYRNN_CHECK(inner.remaining() == 0);
    }
    pyrnn::AlignedBuffer next(100);
    PYRNN_CHECK(budget.remaining() == 1000 - 2 * 448);
  }
  pyrnn::AlignedBuffer unbudgeted(1 << 20);  // no budget installed: nothing is refused
  PYRNN_CHECK(unbudgeted.size() == std::size_t{1} << 20);
}

void check_memory_limit() {
  namespace g = pyrnn::graph;
  g::set_physical_memory_for_testing(std::size_t{12345});
  PYRNN_CHECK(g::physical_memory_bytes() == std::size_t{12345});
  PYRNN_CHECK(g::plan_memory_limit() == 12345);
  bool named = false;
  try {
    g::refuse_memory("node 3 (full)", 4.0 * 1024 * 1024 * 1024 * 1024);
  } catch (const std::length_error& error) {
    const std::string text = error.what();
    named = text.find(
                "node 3 (full) needs 4.0 TiB, more than this machine's physical memory "
                "(12.1 KiB)") != std::string::npos;
  }
  PYRNN_CHECK(named);
  g::set_physical_memory_for_testing(std::nullopt);
  PYRNN_CHECK(g::plan_memory_limit() <= std::numeric_limits<std::size_t>::max() / 4);
}

void check_config_limits() {
  PYRNN_CHECK(valid({CellKind::Lstm, 7, 33, 2, true, 5, {}}));
  // gates * padded hidden: 4 * 2^29 = 2^31 does not fit; 4 * (2^29 - 16) does.
  PYRNN_CHECK(!valid({CellKind::Lstm, 1, 1 << 29, 1, false, 0, {}}));
  PYRNN_CHECK(valid({CellKind::Lstm, 1, (1 << 29) - 16, 1, false, 0, {}}));
  // Padding INT_MAX hidden units to a multiple of 16 would wrap in int arithmetic.
  PYRNN_CHECK(!valid({CellKind::RnnTanh, 1, INT_MAX, 1, false, 0, {}}));
  PYRNN_CHECK(!valid({CellKind::Gru, 1, INT_MAX - 3, 1, false, 0, {}}));
  // directions * padded output size.
  PYRNN_CHECK(!valid({CellKind::RnnTanh, 1, INT_MAX - 20, 1, true, 0, {}}));
  // num_layers * directions.
  PYRNN_CHECK(!valid({CellKind::RnnTanh, 1, 1, INT_MAX, true, 0, {}}));
  PYRNN_CHECK(valid({CellKind::RnnTanh, 1, 1, INT_MAX, false, 0, {}}));
  PYRNN_CHECK(!valid({CellKind::Lstm, 0, 4, 1, false, 0, {}}));
  PYRNN_CHECK(!valid({CellKind::Lstm, 4, 4, 1, false, 4, {}}));
  PYRNN_CHECK(!valid({CellKind::Gru, 4, 4, 1, false, 2, {}}));
}

void check_chunking() {
  PYRNN_CHECK(pyrnn::default_chunk_steps(INT_MAX, 5) == 1);
  PYRNN_CHECK(pyrnn::default_chunk_steps(INT_MAX - 1, INT_MAX) == 1);
  PYRNN_CHECK(pyrnn::default_chunk_steps(1, INT_MAX) == 128);
  PYRNN_CHECK(pyrnn::default_chunk_steps(1, 3) == 3);
  PYRNN_CHECK(pyrnn::default_chunk_steps(0, 0) == 1);
}

}  // namespace

int main() {
  check_multiplication();
  check_value_bytes();
  check_allocation_budget();
  check_memory_limit();
  check_config_limits();
  check_chunking();
  if (pyrnn::testing::failures() != 0) {
    std::fprintf(stderr, "%d checks failed\n", pyrnn::testing::failures());
    return 1;
  }
  std::printf("test_limits: all checks passed\n");
  return 0;
}
