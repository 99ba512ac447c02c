// One kernel table per ISA, each defined in its own file and namespace, compiled with its own
// flags. Only the ISAs this build targets are declared; dispatch picks among them at run time.
#pragma once

#include "core/kernel_table.h"

namespace pyrnn {
namespace scalar {
const KernelTable& kernel_table() noexcept;
}
#if defined(PYRNN_BUILD_AVX2)
namespace avx2 {
const KernelTable& kernel_table() noexcept;
}
#endif
#if defined(PYRNN_BUILD_AVX512)
namespace avx512 {
const KernelTable& kernel_table() noexcept;
}
#endif
#if defined(PYRNN_BUILD_NEON)
namespace neon {
const KernelTable& kernel_table() noexcept;
}
#endif
}  // namespace pyrnn
