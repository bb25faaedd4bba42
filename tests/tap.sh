# shellcheck shell=bash
# TAP output for the shell test scripts (sourced). The caller sets n=0 and
# failed=0 and prints the plan and the final status itself.

ok() {
  n=$((n + 1))
  echo "ok $n - $1"
}

not_ok() {
  n=$((n + 1))
  failed=$((failed + 1))
  echo "not ok $n - $1"
}

skip() {
  n=$((n + 1))
  echo "ok $n - $1 # SKIP $2"
}

# diag FILE...: the files as TAP comments.
diag() {
  sed 's/^/# /' "$@" || true
}
