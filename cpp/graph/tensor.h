// The vocabulary of graph values: element types, shapes, and the per-plan facts about a value
// (a tensor's dtype and shape, or an int's value). Every tensor the executor touches is dense
// and row-major (C order); views are expressed as an offset into another tensor's bytes.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>

namespace pyrnn::graph {

// F16, BF16 and I8 are storage types of weight constants only (a quantised model's matrices,
// read by the ops that pack weights); every value an op computes is F32 or I64.
enum class DType : std::uint8_t { F32, I64, F16, BF16, I8 };

constexpr std::size_t dtype_size(DType type) noexcept {
  return type == DType::I64 ? 8 : type == DType::F32 ? 4 : type == DType::I8 ? 1 : 2;
}
constexpr bool is_narrow(DType type) noexcept {
  return type == DType::F16 || type == DType::BF16 || type == DType::I8;
}
const char* dtype_name(DType type) noexcept;

// Ranks above this are refused when a graph is built (torch allows 64; models here use <= 4).
constexpr int kMaxRank = 8;

struct Shape {
  int rank = 0;
  std::int64_t dims[kMaxRank] = {};

  std::int64_t operator[](int axis) const noexcept { return dims[axis]; }
  std::int64_t& operator[](int axis) noexcept { return dims[axis]; }
  // Product of the dims; throws std::length_error beyond 2^62 elements.
  std::int64_t numel() const;
  // Product of dims [begin, end).
  std::int64_t span(int begin, int end) const;
  void push_back(std::int64_t extent);
  void insert(int axis, std::int64_t extent);
  void erase(int axis) noexcept;
  std::string str() const;
  bool operator==(const Shape& other) const noexcept;
  bool operator!=(const Shape& other) const noexcept { return !(*this == other); }
};

// What a plan knows about one value: a tensor's dtype and shape, or an int's value.
struct ValueMeta {
  bool is_int = false;
  DType dtype = DType::F32;
  Shape shape;
  std::int64_t int_value = 0;
  // Streams only: the axis that carries time (frames), or -1. Set before shapes are inferred;
  // ops whose meaning changes frame by frame (a slice along time) read it.
  int time_axis = -1;

  // The tensor's size in bytes; throws std::length_error when it does not fit in size_t (2^62
  // float32 elements would wrap to 0).
  std::size_t bytes() const;
};

// `axis` in [-rank, rank) as an index in [0, rank); throws std::invalid_argument naming `what`.
int normalize_axis(std::int64_t axis, int rank, const char* what);

}  // namespace pyrnn::graph
