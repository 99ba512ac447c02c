#!/usr/bin/env bash
# Runs each atheris fuzzer for a bounded time, seeded with its committed corpus (the hostile
# files for fuzz_load, fuzz/corpus/forward for fuzz_forward) and with what earlier runs found in
# $PYRNN_FUZZ_DIR (each input there is replayed first); fails if one finds a crash, leaving the
# input in tests/hostile/crashers/<fuzzer>-crash-<sha1> (commit it: tests/test_fuzz_crashers.py
# replays every file there).
# Usage: tools/run_fuzzers.sh            Env: PYRNN_FUZZ_SECONDS (default 60 per fuzzer),
#        PYTHON (default python3; must have pyrnn installed and atheris importable).
#
# Coverage: atheris instruments the Python layer (pyrnn/*.py) for guidance. The C++ extension is
# built normally (GCC; atheris' native coverage needs clang's -fsanitize=fuzzer-no-link), so the
# core is exercised but not coverage-guided; tools/run_sanitized_tests.sh covers it with ASan.
# PYRNN_FUZZ_ASAN=1 runs the fuzzers on the ASan+UBSan build that tools/run_sanitized_tests.sh
# leaves in build/asan-venv, with its runtime preloaded: memory errors in the core then abort
# the run. Under GCC's preloaded ASan atheris loses its coverage feedback ("no interesting
# inputs"), so that mode is a random-input memory check, not guided fuzzing.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
python="${PYTHON:-python3}"
seconds="${PYRNN_FUZZ_SECONDS:-60}"
work="${PYRNN_FUZZ_DIR:-$root/build/fuzz}"
crashers="$root/tests/hostile/crashers"
mkdir -p "$crashers"
if [ "${PYRNN_FUZZ_ASAN:-0}" = 1 ]; then
  python="${PYRNN_SAN_VENV:-$root/build/asan-venv}/bin/python"
  [ -x "$python" ] || { echo "no $python: run tools/run_sanitized_tests.sh first" >&2; exit 1; }
  export LD_PRELOAD="$(gcc -print-file-name=libasan.so) $(readlink -f "$(gcc -print-file-name=libstdc++.so)")"
  # A small quarantine keeps the RSS flat over 10^5 runs (the default grows past -rss_limit_mb).
  export ASAN_OPTIONS="detect_leaks=0:allocator_may_return_null=1:quarantine_size_mb=16"
  export UBSAN_OPTIONS="halt_on_error=1:print_stacktrace=1"
fi
for module in atheris pyrnn; do
  if ! (cd /tmp && "$python" -c "import $module") 2>/dev/null; then
    echo "$module is not importable by $python (pip install atheris / pip install .)" >&2
    exit 1
  fi
done

status=0
for fuzzer in load forward; do
  scratch="$work/$fuzzer-corpus"  # new inputs go to the first directory: never the seeds
  mkdir -p "$scratch"
  seeds=()
  [ "$fuzzer" = load ] && seeds=("$root/tests/hostile/corpus")
  [ "$fuzzer" = forward ] && seeds=("$root/fuzz/corpus/forward")
  echo "== fuzz_$fuzzer for ${seconds}s"
  # cd /tmp: the source tree's pyrnn/ lacks the compiled extension and must not shadow it.
  log="$work/$fuzzer.log"
  rc=0
  (cd /tmp && "$python" "$root/fuzz/fuzz_$fuzzer.py" \
    -max_total_time="$seconds" -timeout=20 -rss_limit_mb=4096 -max_len=8192 \
    -print_final_stats=1 -artifact_prefix="$crashers/$fuzzer-" \
    "$scratch" "${seeds[@]}") >"$log" 2>&1 || rc=$?
  grep -E '^#[0-9]+[[:space:]]+(INITED|DONE)|stat::number_of_executed_units|Uncaught|ERROR|Test unit written' "$log" || true
  if [ "$rc" -ne 0 ] || ! grep -q 'stat::number_of_executed_units' "$log"; then
    echo "fuzz_$fuzzer FAILED with status $rc (log: $log; any crasher is in $crashers)" >&2
    status=1
  fi
done
[ "$status" -eq 0 ] && echo "fuzzers: nothing found"
exit "$status"
