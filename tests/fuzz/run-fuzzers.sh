#!/bin/sh
# SPDX-License-Identifier: LGPL-2.1-or-later
#
# Usage: run-fuzzers.sh BUILDDIR SECONDS
#
# Runs every libFuzzer target of BUILDDIR (configured with CC=clang and
# -Dfuzzing=true) for SECONDS each, on a scratch copy of its seed corpus so
# that the corpus in git stays small. Fails on the first crash, leak or
# timeout; the reproducer is kept in BUILDDIR/fuzz-artifacts/.

set -eu

if [ $# -ne 2 ]; then
  echo "usage: $0 BUILDDIR SECONDS" >&2
  exit 2
fi
builddir=$(cd "$1" && pwd)
seconds=$2
srcdir=$(cd "$(dirname "$0")" && pwd)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT INT TERM

# Leaks count as failures; G_SLICE/G_DEBUG make GLib use plain malloc.
export ASAN_OPTIONS="${ASAN_OPTIONS:-abort_on_error=1:detect_leaks=1}"
export UBSAN_OPTIONS="${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}"
export G_SLICE=always-malloc G_DEBUG=gc-friendly

status=0
for name in manifest metadata policy xdm uevent hotkey guest-uevent guest-procfs; do
  fuzzer="$builddir/tests/fuzz/fuzz-$name"
  if [ ! -x "$fuzzer" ]; then
    echo "run-fuzzers: $fuzzer is missing (CC=clang meson setup BUILDDIR -Dfuzzing=true)" >&2
    exit 1
  fi
  mkdir -p "$work/$name/corpus" "$work/$name/artifacts"
  cp "$srcdir/corpus/$name/"* "$work/$name/corpus/"
  log="$work/$name/log"

  echo "run-fuzzers: fuzz-$name for ${seconds}s"
  if "$fuzzer" -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 \
       -max_len=65536 -print_final_stats=1 -dict="$srcdir/$name.dict" \
       -artifact_prefix="$work/$name/artifacts/" "$work/$name/corpus" >"$log" 2>&1; then
    execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log")
    rate=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$log")
    cov=$(grep -o 'cov: [0-9]*' "$log" | tail -n 1)
    echo "run-fuzzers: fuzz-$name passed: $execs runs, $rate execs/s, $cov"
  else
    status=1
    mkdir -p "$builddir/fuzz-artifacts"
    cp "$work/$name/artifacts/"* "$builddir/fuzz-artifacts/" 2>/dev/null || true
    echo "run-fuzzers: fuzz-$name FAILED; reproducers in $builddir/fuzz-artifacts/" >&2
    grep -v '^#' "$log" | tail -n 60 >&2
  fi
done
exit $status
