#!/usr/bin/env bash
# Cross-compiles the core and its C++ tests for AArch64 (so the NEON kernels are built with the
# real compiler), and runs every C++ test (test_*) under qemu-aarch64 when it is installed, which
# checks the NEON kernels against the scalar ones and the reference oracle. Needs g++-aarch64-linux-gnu (Debian/Ubuntu:
# apt-get install g++-aarch64-linux-gnu qemu-user).
#   tools/check_neon.sh [build-dir]      (default /tmp/pyrnn-aarch64)
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
build="${1:-/tmp/pyrnn-aarch64}"
cxx="${PYRNN_AARCH64_CXX:-aarch64-linux-gnu-g++}"
# Where qemu finds the aarch64 dynamic loader and libraries (Debian's cross toolchain layout).
sysroot="${PYRNN_AARCH64_SYSROOT:-/usr/aarch64-linux-gnu}"
if ! command -v "$cxx" > /dev/null; then
  echo "check_neon: $cxx not found; install g++-aarch64-linux-gnu or set PYRNN_AARCH64_CXX" >&2
  exit 2
fi
generator=()
if command -v ninja > /dev/null; then generator=(-G Ninja); fi
cmake -S "$root" -B "$build" "${generator[@]}" \
  -DCMAKE_SYSTEM_NAME=Linux -DCMAKE_SYSTEM_PROCESSOR=aarch64 \
  -DCMAKE_CXX_COMPILER="$cxx" \
  -DPYRNN_BUILD_TESTS=ON -DPYRNN_WERROR=ON > /dev/null
cmake --build "$build"
if command -v nm > /dev/null && ! nm -C "$build/libpyrnn_core.a" | grep "T pyrnn::neon::kernel_table" > /dev/null; then
  echo "check_neon: the NEON kernel table was not compiled in" >&2
  exit 1
fi
echo "check_neon: NEON kernels compiled for aarch64"
if command -v qemu-aarch64 > /dev/null; then
  for test in "$build"/test_*; do
    echo "check_neon: running $(basename "$test") under qemu-aarch64"
    # qemu-user cannot fork a process whose threads it emulates (its own assertion fails in the
    # child): the tests skip their fork checks that start threads, and say so.
    PYRNN_TEST_EMULATED=1 qemu-aarch64 -L "$sysroot" "$test"
  done
else
  echo "check_neon: qemu-aarch64 not installed; compile-only check"
fi
