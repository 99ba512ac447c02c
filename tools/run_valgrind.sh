#!/usr/bin/env bash
# Runs every C++ unit test binary of the core (cpp/tests, registered with ctest) under valgrind
# memcheck; fails on any error or leak. Usage: tools/run_valgrind.sh [build-dir]
# (default build/valgrind). Built RelWithDebInfo so reports have lines, with kernels optimised
# as shipped. Valgrind's virtual CPU has no AVX-512, so under valgrind the runtime dispatch
# (cpuid) offers at most AVX2: the AVX-512 kernels are covered by the sanitizer run instead.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
build="${1:-$root/build/valgrind}"

cmake -S "$root" -B "$build" -G Ninja -DPYRNN_BUILD_TESTS=ON -DCMAKE_BUILD_TYPE=RelWithDebInfo \
  >/dev/null
cmake --build "$build"

# ctest runs each test command through valgrind: --error-exitcode makes any memcheck error a
# failure; definite and indirect leaks count as errors (possible/reachable are reported only).
valgrind_options=(
  --error-exitcode=99
  --leak-check=full
  --show-leak-kinds=definite,indirect
  --errors-for-leak-kinds=definite,indirect
  --track-origins=yes
  --quiet
)
tests=$(cd "$build" && ctest -N | sed -n 's/^ *Test *#[0-9]*: //p')
[ -n "$tests" ] || { echo "no C++ tests registered" >&2; exit 1; }
status=0
for name in $tests; do
  if [ ! -x "$build/$name" ]; then  # e.g. isa_objects, a cmake -P check: no binary to run
    echo "== $name: not a test binary, skipped (plain ctest runs it)"
    continue
  fi
  echo "== valgrind $name"
  if ! valgrind "${valgrind_options[@]}" "$build/$name"; then
    echo "valgrind: $name FAILED" >&2
    status=1
  fi
done
[ "$status" -eq 0 ] && echo "valgrind: all C++ tests clean"
exit "$status"
