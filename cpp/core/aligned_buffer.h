// A zero-initialised, 64-byte aligned array of floats: the only owner of memory in the hot path.
// Sizes are checked for overflow before allocating, so a lying size fails cleanly.
#pragma once

#include <cstddef>
#include <cstdlib>
#include <cstring>
#include <limits>
#include <new>
#include <stdexcept>
#include <string>
#include <utility>

// Not under AddressSanitizer: pages of our own would escape its bounds checks, and a sanitized
// build is about finding memory errors, not about resident memory.
#if (defined(__unix__) || defined(__APPLE__)) && !defined(__SANITIZE_ADDRESS__)
#include <sys/mman.h>
#define PYRNN_MAP_LARGE_BUFFERS 1
#endif

namespace pyrnn {

// Multiplies sizes, throwing std::length_error on overflow (sizes come from user input).
inline std::size_t checked_mul(std::size_t a, std::size_t b) {
  if (a != 0 && b > std::numeric_limits<std::size_t>::max() / a) {
    throw std::length_error("pyrnn: size computation overflows");
  }
  return a * b;
}

// While a budget is installed on a thread, every AlignedBuffer allocated on that thread is
// charged to it, and one that would exceed what is left throws std::length_error before any
// memory is taken. Graphs install one while they pack their weights, and plans while their
// kernels allocate scratch, so sizes from a hostile file are refused rather than attempted.
class AllocationBudget {
 public:
  // `purpose` (a string literal) names what the budget holds, for the error message.
  AllocationBudget(std::size_t remaining, const char* purpose) noexcept
      : remaining_(remaining), purpose_(purpose), previous_(current()) {
    current() = this;
  }
  ~AllocationBudget() { current() = previous_; }
  AllocationBudget(const AllocationBudget&) = delete;
  AllocationBudget& operator=(const AllocationBudget&) = delete;

  std::size_t remaining() const noexcept { return remaining_; }

  // Charges `bytes` to the thread's budget, if one is installed.
  static void charge(std::size_t bytes) {
    AllocationBudget* budget = current();
    if (budget == nullptr) return;
    if (bytes > budget->remaining_)
      throw std::length_error("a buffer of " + std::to_string(bytes) + " bytes would take " +
                              budget->purpose_ + " past this machine's physical memory (" +
                              std::to_string(budget->remaining_) +
                              " bytes left); nothing more was allocated");
    budget->remaining_ -= bytes;
  }

 private:
  static AllocationBudget*& current() noexcept {
    thread_local AllocationBudget* installed = nullptr;
    return installed;
  }

  std::size_t remaining_;
  const char* purpose_;
  AllocationBudget* previous_;
};

class AlignedBuffer {
 public:
  static constexpr std::size_t kAlignment = 64;  // one cache line, one AVX-512 vector
  // Buffers from this size on (packed weights, mostly) take pages of their own. glibc would put
  // them in its heap once it has raised its mmap threshold (it does after freeing any large
  // block, such as the tensor a matrix was packed from), between freed temporaries that it
  // then cannot return: a 64 MiB model stayed at 96 MiB resident after loading.
  static constexpr std::size_t kMapThreshold = std::size_t{1} << 20;

  AlignedBuffer() = default;
  explicit AlignedBuffer(std::size_t count) { resize(count); }
  AlignedBuffer(const AlignedBuffer& other) : AlignedBuffer(other.size_) {
    if (size_ != 0) std::memcpy(data_, other.data_, size_ * sizeof(float));
  }
  AlignedBuffer(AlignedBuffer&& other) noexcept
      : data_(std::exchange(other.data_, nullptr)), size_(std::exchange(other.size_, 0)) {}
  AlignedBuffer& operator=(AlignedBuffer other) noexcept {
    std::swap(data_, other.data_);
    std::swap(size_, other.size_);
    return *this;
  }
  ~AlignedBuffer() { release(); }

  // Reallocates to `count` zeroed floats (previous contents are discarded).
  void resize(std::size_t count) {
    release();
    if (count == 0) return;
    std::size_t bytes = checked_mul(count, sizeof(float));
    if (bytes > std::numeric_limits<std::size_t>::max() - (kAlignment - 1))
      throw std::length_error("pyrnn: size computation overflows");  // rounding up would wrap
    bytes = (bytes + kAlignment - 1) / kAlignment * kAlignment;
    AllocationBudget::charge(bytes);
#ifdef PYRNN_MAP_LARGE_BUFFERS
    if (bytes >= kMapThreshold) {
      void* pages =
          mmap(nullptr, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
      if (pages == MAP_FAILED) throw std::bad_alloc();
      data_ = static_cast<float*>(pages);  // page-aligned and zeroed already
      size_ = count;
      return;
    }
#endif
    data_ = static_cast<float*>(std::aligned_alloc(kAlignment, bytes));
    if (data_ == nullptr) throw std::bad_alloc();
    std::memset(data_, 0, bytes);
    size_ = count;
  }
  void fill_zero() noexcept {
    if (size_ != 0) std::memset(data_, 0, size_ * sizeof(float));
  }

  float* data() noexcept { return data_; }
  const float* data() const noexcept { return data_; }
  std::size_t size() const noexcept { return size_; }

 private:
  void release() noexcept {
    float* data = std::exchange(data_, nullptr);
    const std::size_t count = std::exchange(size_, 0);
    if (data == nullptr) return;
#ifdef PYRNN_MAP_LARGE_BUFFERS
    const std::size_t bytes = (count * sizeof(float) + kAlignment - 1) / kAlignment * kAlignment;
    if (bytes >= kMapThreshold) {
      munmap(data, bytes);
      return;
    }
#endif
    std::free(data);
  }

  float* data_ = nullptr;
  std::size_t size_ = 0;
};

}  // namespace pyrnn
