// Shared vocabulary of the core: dimension letters, cell kinds and the packing block.
//
// Dimension letters used in every shape contract of the core:
//   T steps, N batch rows, I input features, H hidden units, P projection size
//   (LSTM proj_size; P = H when there is no projection), G gates per unit, K reduction length.
#pragma once

#include <cstddef>
#include <cstdint>

namespace pyrnn {

enum class CellKind : std::uint8_t { RnnTanh, RnnRelu, Lstm, Gru };

// Gates per hidden unit, in PyTorch's row order: LSTM (i, f, g, o), GRU (r, z, n).
constexpr int gate_count(CellKind kind) {
  switch (kind) {
    case CellKind::Lstm:
      return 4;
    case CellKind::Gru:
      return 3;
    default:
      return 1;
  }
}

// Hidden units are packed in blocks of this many so that one kernel pass produces every gate
// of a block and updates the cell in registers. 16 = one AVX-512 vector, two AVX2 vectors, four
// NEON vectors: one layout serves every ISA, so switching ISA at run time never repacks.
constexpr int kUnitBlock = 16;

constexpr int block_count(int units) { return (units + kUnitBlock - 1) / kUnitBlock; }
constexpr int padded_units(int units) { return block_count(units) * kUnitBlock; }

}  // namespace pyrnn
