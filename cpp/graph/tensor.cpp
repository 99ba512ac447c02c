// Shapes: checked element counts, edits, and printing for error messages.
#include "graph/tensor.h"

#include <limits>
#include <stdexcept>

namespace pyrnn::graph {

const char* dtype_name(DType type) noexcept {
  switch (type) {
    case DType::F32:
      return "float32";
    case DType::I64:
      return "int64";
    case DType::F16:
      return "float16";
    case DType::BF16:
      return "bfloat16";
    case DType::I8:
      return "int8";
  }
  return "?";
}

std::int64_t Shape::numel() const { return span(0, rank); }

std::int64_t Shape::span(int begin, int end) const {
  constexpr std::int64_t kLimit = std::int64_t{1} << 62;
  std::int64_t count = 1;
  for (int axis = begin; axis < end; ++axis) {
    if (dims[axis] == 0) return 0;
  }
  for (int axis = begin; axis < end; ++axis) {
    if (dims[axis] < 0 || count > kLimit / (dims[axis] ? dims[axis] : 1))
      throw std::length_error("shape " + str() + " has more than 2^62 elements");
    count *= dims[axis];
  }
  return count;
}

void Shape::push_back(std::int64_t extent) { insert(rank, extent); }

void Shape::insert(int axis, std::int64_t extent) {
  if (rank >= kMaxRank)
    throw std::invalid_argument("a tensor of rank " + std::to_string(rank + 1) +
                                " exceeds the limit of " + std::to_string(kMaxRank));
  for (int i = rank; i > axis; --i) dims[i] = dims[i - 1];
  dims[axis] = extent;
  ++rank;
}

void Shape::erase(int axis) noexcept {
  for (int i = axis; i + 1 < rank; ++i) dims[i] = dims[i + 1];
  --rank;
  dims[rank] = 0;
}

std::string Shape::str() const {
  std::string text = "(";
  for (int i = 0; i < rank; ++i) text += (i ? ", " : "") + std::to_string(dims[i]);
  return text + (rank == 1 ? ",)" : ")");
}

bool Shape::operator==(const Shape& other) const noexcept {
  if (rank != other.rank) return false;
  for (int i = 0; i < rank; ++i)
    if (dims[i] != other.dims[i]) return false;
  return true;
}

std::size_t ValueMeta::bytes() const {
  const auto count = static_cast<std::size_t>(shape.numel());
  const std::size_t item = dtype_size(dtype);
  if (count > std::numeric_limits<std::size_t>::max() / item)
    throw std::length_error("shape " + shape.str() + " of " + dtype_name(dtype) +
                            " has more bytes than the address space");
  return count * item;
}

int normalize_axis(std::int64_t axis, int rank, const char* what) {
  const std::int64_t count = rank == 0 ? 1 : rank;  // torch lets dim 0/-1 name a scalar's axis
  if (axis < -count || axis >= count)
    throw std::invalid_argument(std::string(what) + " " + std::to_string(axis) +
                                " is out of range for a tensor of rank " + std::to_string(rank));
  return static_cast<int>(axis < 0 ? axis + count : axis);
}

}  // namespace pyrnn::graph
