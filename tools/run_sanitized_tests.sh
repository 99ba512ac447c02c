#!/usr/bin/env bash
# Builds the extension with AddressSanitizer + UndefinedBehaviorSanitizer into its own venv and
# runs the whole pytest suite with the ASan runtime preloaded; fails on any sanitizer report.
# Also runs the C++ unit tests (ctest) from the same instrumented build, leaks included.
# Usage: tools/run_sanitized_tests.sh [extra pytest args]
# Env: PYRNN_SAN_VENV (default build/asan-venv), PYTHON (default python3).
#
# Why the options:
# - LD_PRELOAD=libasan.so libstdc++.so: python itself is not built with ASan, and the ASan
#   runtime must be the first library loaded for its malloc interposition to work in the
#   extension. libstdc++ is preloaded too because python does not link it: ASan resolves the
#   real __cxa_throw once, at start-up, and without libstdc++ loaded by then the first C++
#   exception thrown by any extension (ours, or torch's on a corrupt .pt file) aborts with
#   "CHECK failed: real___cxa_throw != 0" instead of being thrown.
# - detect_leaks=0: CPython (interned strings, module state, arenas) and numpy/torch keep memory
#   until exit by design, so LeakSanitizer would report thousands of leaks that are not ours.
#   pyrnn's own C++ leaks are checked by tools/run_valgrind.sh (memcheck on the ctest binaries).
# - allocator_may_return_null=1: tests deliberately ask for impossible sizes and expect
#   MemoryError/ValueError; without it ASan aborts on the request instead of returning null.
# - halt_on_error / -fno-sanitize-recover=all: the first report aborts the process (pytest then
#   fails); the log is also scanned, so a report from a subprocess fails the run too.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
venv="${PYRNN_SAN_VENV:-$root/build/asan-venv}"
python="${PYTHON:-python3}"

# -O1: instrumented SIMD kernels compile in a third less time (and memory) than at -O2, and
# the suite still runs at a useful speed.
# One instrumented build serves both stages: the extension (installed into its own venv) and the
# C++ unit tests, built beside it in the same build directory, so the kernels are compiled with
# the sanitizers once, not twice.
if [ ! -x "$venv/bin/python" ]; then
  "$python" -m venv --system-site-packages "$venv"
fi
# The test dependencies (pytest, hypothesis, torch, ...) come from the environment of $python,
# which may itself be a venv: its site-packages is appended to the sanitized venv's path by a
# .pth file. The sanitized venv's own pyrnn comes first on sys.path, so it is the one tested.
parent_site=$("$python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
own_site=$("$venv/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
if [ "$parent_site" != "$own_site" ]; then
  echo "$parent_site" >"$own_site/pyrnn_parent_env.pth"
fi
"$venv/bin/pip" install --quiet "scikit-build-core>=0.10" "pybind11>=3.1,<3.2"  # no-op if present
build="$root/build/asan"
"$venv/bin/pip" install --quiet --no-build-isolation --force-reinstall --no-deps \
  -C cmake.define.PYRNN_SANITIZE_ADDRESS=ON \
  -C cmake.define.PYRNN_SANITIZE_UNDEFINED=ON \
  -C cmake.define.PYRNN_BUILD_TESTS=ON \
  -C cmake.build-type=RelWithDebInfo \
  -C "cmake.define.CMAKE_CXX_FLAGS_RELWITHDEBINFO=-O1 -g -DNDEBUG" \
  -C build-dir="$build" \
  "$root"

# 1. The C++ unit tests (no preload needed: they link the runtime), leaks included. Unlike
# valgrind, this runs the AVX-512 kernels too when the CPU has them.
[ -x "$build/test_forward" ] || { echo "$build: the C++ tests were not built" >&2; exit 1; }
(cd "$build" &&
  ASAN_OPTIONS="detect_leaks=1:halt_on_error=1" UBSAN_OPTIONS="halt_on_error=1:print_stacktrace=1" \
    ctest --output-on-failure)

# 2. The whole pytest suite on the installed extension.
# Locate the extension without importing it (it cannot load without the ASan runtime).
package=$(cd /tmp && "$venv/bin/python" -c \
  'import importlib.util as u; print(u.find_spec("pyrnn").submodule_search_locations[0])')
core=$(ls "$package"/_core*.so)
asan_runtime="$(gcc -print-file-name=libasan.so)"
[ -f "$asan_runtime" ] || { echo "libasan.so not found (gcc -print-file-name)" >&2; exit 1; }
cxx_runtime="$(readlink -f "$(gcc -print-file-name=libstdc++.so)")"
# The build really is instrumented (a silently ignored option would make this run worthless).
symbols="$(nm -D "$core")"  # not `nm | grep -q`: with pipefail, grep's early exit fails nm
grep -q '__asan_report' <<<"$symbols" || { echo "$core: not built with ASan" >&2; exit 1; }
grep -q '__ubsan_handle' <<<"$symbols" || { echo "$core: not built with UBSan" >&2; exit 1; }
echo "sanitized extension: $core"

log="$(mktemp /tmp/pyrnn-sanitized.XXXXXX.log)"
# Reports go to files: pytest captures a test's stderr, and when the sanitizer aborts the
# process the captured report would be lost with it.
reports="$(mktemp -d /tmp/pyrnn-sanitizer-reports.XXXXXX)"
status=0
(
  cd /tmp  # never the source tree: its pyrnn/ lacks the compiled extension
  LD_PRELOAD="$asan_runtime $cxx_runtime" \
  ASAN_OPTIONS="detect_leaks=0:allocator_may_return_null=1:halt_on_error=1:abort_on_error=1:log_path=$reports/asan" \
  UBSAN_OPTIONS="halt_on_error=1:print_stacktrace=1:log_path=$reports/ubsan" \
  PYTHONFAULTHANDLER=1 \
    "$venv/bin/python" -m pytest "$root/tests" -q -p no:cacheprovider "$@"
) 2>&1 | tee "$log" || status=$?
if [ -n "$(ls -A "$reports")" ]; then
  for report in "$reports"/*; do
    echo "== $report" >&2
    head -40 "$report" >&2
  done
  echo "sanitizer reports found (in $reports; pytest log: $log)" >&2
  status=1
elif grep -qE 'ERROR: AddressSanitizer|runtime error:' "$log"; then
  echo "sanitizer reports found (log: $log)" >&2
  status=1
fi
if [ "$status" -eq 0 ]; then
  echo "sanitized test suite: clean"
  rm -rf "$log" "$reports"
else
  echo "sanitized test suite FAILED (status $status)" >&2
fi
exit "$status"
