// Readable, unoptimised recurrent cells on PyTorch-layout weights: the oracle that every kernel
// and ISA is tested against, kept forever. The equations are torch.nn's, written out literally;
// dot products accumulate in double so the oracle is more exact than anything it checks.
#pragma once

#include <vector>

#include "core/network.h"

namespace pyrnn::reference {

// One step of one cell for one row. x (I), h (P), c (H, LSTM only) -> h_out (P), c_out (H).
void cell_step(const NetworkConfig& config, const RawLayerWeights& w, int input_size,
               const float* x, const float* h, const float* c, float* h_out, float* c_out);

// A whole forward pass with the same contract as pyrnn::forward, but contiguous arrays only:
// x (T, N, I), out (T, N, D*P), h0/hn (L*D, N, P), c0/cn (L*D, N, H); h0/c0 may be null.
void forward(const NetworkConfig& config, const std::vector<RawLayerWeights>& weights, int steps,
             int rows, const float* x, const float* h0, const float* c0, float* out, float* hn,
             float* cn);

}  // namespace pyrnn::reference
