#!/usr/bin/env bash
# Builds tests/sdk/consumer.c against libdhf-1 through pkg-config alone, as
# an ISV would, and runs it: the public headers must be self-contained and
# the exported symbols enough.
set -euo pipefail

: "${DHF_BUILD_ROOT:?set by meson}"
: "${DHF_SOURCE_ROOT:?set by meson}"
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT

echo "1..2"
export PKG_CONFIG_PATH="$DHF_BUILD_ROOT/meson-uninstalled"
sanitize=()
if [[ -n "${DHF_SANITIZE:-}" && "$DHF_SANITIZE" != none ]]; then
  sanitize=("-fsanitize=$DHF_SANITIZE")
fi
# shellcheck disable=SC2046 # pkg-config output is a list of flags
if ${CC:-cc} -std=c11 -Wall -Wextra -Werror "${sanitize[@]}" -o "$tmp/consumer" \
  "$DHF_SOURCE_ROOT/tests/sdk/consumer.c" $(pkg-config --cflags --libs dhf-1) 2>"$tmp/err"; then
  echo "ok 1 - consumer.c builds with pkg-config dhf-1 and <dhf/dhf.h> only"
else
  sed 's/^/# /' "$tmp/err"
  echo "not ok 1 - consumer.c builds with pkg-config dhf-1 and <dhf/dhf.h> only"
  exit 1
fi
if out="$(LD_LIBRARY_PATH="$DHF_BUILD_ROOT/sdk/dhf" "$tmp/consumer")"; then
  echo "ok 2 - it runs: $out"
else
  echo "not ok 2 - it runs"
  exit 1
fi
