# shellcheck shell=bash
# Conditions are shell snippets evaluated later, hence single quotes.
# shellcheck disable=SC2016
# SPDX-License-Identifier: LGPL-2.1-or-later
#
# What the shell suites that drive a real dhfd on a private dbus-daemon,
# over libvirt's test driver, share (sourced after DHFD, DHFCTL,
# DHF_TESTNODE and DHF_SOURCE_ROOT are checked): $tmp and the cleanup on
# exit, the bus, dhfd's start and stop, dhfctl, and checks in TAP
# (tests/tap.sh).
#
# Sourcing it makes $tmp and sets the EXIT trap. The cleanup stops the
# processes in $bg_pids (the script's own: watchers, providers), dhfd and
# the bus, then removes $tmp.

# shellcheck source=tests/tap.sh
. "$DHF_SOURCE_ROOT/tests/tap.sh"

tmp=$(mktemp -d "${TMPDIR:-/tmp}/$(basename "$0" .sh).XXXXXX")
bus_pid=
dhfd_pid=
bg_pids=()
addr=
rc=
# Seconds that run gives each command (empty: no bound). A suite whose
# commands could wait for ever on a broken peer sets it: a guard, not a
# synchronisation.
run_timeout=
n=0
failed=0

# stop_pid PID: ends a background process of ours, if any, and reaps it.
stop_pid() {
  if [ -n "$1" ]; then
    kill "$1" 2>/dev/null || true
    wait "$1" 2>/dev/null || true
  fi
}

stop_dhfd() {
  stop_pid "$dhfd_pid"
  dhfd_pid=
}

cleanup() {
  local pid
  for pid in "${bg_pids[@]}"; do
    stop_pid "$pid"
  done
  stop_dhfd
  stop_pid "$bus_pid"
  rm -rf "$tmp"
}
trap cleanup EXIT

# bail MESSAGE [FILE...]: ends the suite ("Bail out!"), with each FILE
# that exists and dhfd's log as TAP comments.
bail() {
  local file
  echo "Bail out! $1"
  shift
  for file in "$@" "$tmp/dhfd.log"; do
    if [ -f "$file" ]; then
      diag "$file"
    fi
  done
  exit 1
}

# --- checks -----------------------------------------------------------------

# run CMD...: runs CMD (within $run_timeout seconds, when set), leaving
# its status in $rc and its output in $tmp/out and $tmp/err (stderr also
# appended to $tmp/all-stderr, for a final no-GLib-warnings check).
run() {
  rc=0
  if [ -n "$run_timeout" ]; then
    timeout "$run_timeout" "$@" >"$tmp/out" 2>"$tmp/err" || rc=$?
  else
    "$@" >"$tmp/out" 2>"$tmp/err" || rc=$?
  fi
  cat "$tmp/err" >>"$tmp/all-stderr"
}

# ctl ARG...: dhfctl ARG... on the private bus, through run.
ctl() {
  run env DHF_BUS_ADDRESS="$addr" "$DHFCTL" "$@"
}

# expect DESCRIPTION CONDITION: CONDITION is evaluated by the shell; when
# it fails, the TAP comments show it, $rc, $tmp/out and $tmp/err.
expect() {
  if eval "$2"; then
    ok "$1"
  else
    not_ok "$1"
    echo "# condition:"
    # shellcheck disable=SC2001 # sed: every line of a multi-line condition
    sed 's/^/#   /' <<<"$2"
    echo "# exit status: ${rc:-}"
    echo "# stdout:"
    diag "$tmp/out"
    echo "# stderr:"
    diag "$tmp/err"
  fi
}

# wait_until DESCRIPTION CONDITION [SECONDS]: polls CONDITION (every
# 0.1 s, at most SECONDS, default 30).
wait_until() {
  local i
  for ((i = 0; i < ${3:-30} * 10; i++)); do
    if eval "$2"; then
      return 0
    fi
    sleep 0.1
  done
  echo "# timed out waiting for $1"
  return 1
}

# json_ok EXPR: the JSON in $tmp/out parses and EXPR (Python, over d;
# it may span lines) holds. Its failure goes to $tmp/err, which expect
# shows.
json_ok() {
  /usr/bin/python3 -c 'import json, sys; d = json.load(open(sys.argv[1], encoding="utf-8")); sys.exit(0 if eval("(" + sys.argv[2] + ")") else 1)' \
    "$tmp/out" "$1" 2>>"$tmp/err"
}

# sanitizing: whether the build is instrumented (DHF_SANITIZE, as meson's
# b_sanitize).
sanitizing() {
  [[ -n "${DHF_SANITIZE:-}" && "$DHF_SANITIZE" != none ]]
}

# isv_cc OUTPUT SOURCE...: builds SOURCE... into OUTPUT as an ISV would,
# with the flags of pkg-config dhf-1 json-c alone (from the uninstalled
# build tree $DHF_BUILD_ROOT) and the build's sanitizers; the compiler's
# messages in $tmp/cc.err.
isv_cc() {
  local output=$1 sanitize=()
  shift
  if sanitizing; then
    sanitize=("-fsanitize=$DHF_SANITIZE")
  fi
  # shellcheck disable=SC2046 # pkg-config output is a list of flags
  PKG_CONFIG_PATH="$DHF_BUILD_ROOT/meson-uninstalled" ${CC:-cc} -std=c11 -Wall -Werror \
    "${sanitize[@]}" -o "$output" "$@" \
    $(PKG_CONFIG_PATH="$DHF_BUILD_ROOT/meson-uninstalled" pkg-config --cflags --libs dhf-1 json-c) \
    2>"$tmp/cc.err"
}

# table_aligned FILE: every row of the table in FILE (but PROBLEM lines)
# starts each column where the header does, with at least two blanks
# before it.
table_aligned() {
  python3 - "$1" <<'EOF'
import re, sys
lines = open(sys.argv[1], encoding="utf-8").read().splitlines()
lines = [l for l in lines if not l.startswith("PROBLEM ")]
starts = [m.start() for m in re.finditer(r"\S+", lines[0])]
for row in lines[1:]:
    for s in starts[1:]:
        if len(row) <= s or row[s] == " " or row[s - 2:s] != "  ":
            sys.exit(f"misaligned at column {s}: {row!r}")
EOF
}

# fields_aligned FILE: every "Key: value" line has its value in one column.
fields_aligned() {
  python3 - "$1" <<'EOF'
import re, sys
columns = {re.match(r"^[^:]*:\s+", line).end() for line in open(sys.argv[1], encoding="utf-8")}
sys.exit(0 if len(columns) == 1 else f"values start at columns {sorted(columns)}")
EOF
}

# finish: the TAP plan; when a check failed, dhfd's log too, and exit 1.
finish() {
  echo "1..$n"
  if [ "$failed" -ne 0 ]; then
    echo "# $failed of $n failed; dhfd's log:"
    diag "$tmp/dhfd.log"
    exit 1
  fi
}

# --- the bus, the node, dhfd ------------------------------------------------

# start_bus: a private dbus-daemon listening in $tmp; its address in $addr.
start_bus() {
  cat >"$tmp/bus.conf" <<EOF
<!DOCTYPE busconfig PUBLIC "-//freedesktop//DTD D-Bus Bus Configuration 1.0//EN"
 "http://www.freedesktop.org/standards/dbus/1.0/busconfig.dtd">
<busconfig>
  <type>session</type>
  <listen>unix:dir=$tmp</listen>
  <auth>EXTERNAL</auth>
  <policy context="default">
    <allow user="*"/>
    <allow own="*"/>
    <allow send_destination="*" eavesdrop="true"/>
    <allow eavesdrop="true"/>
  </policy>
</busconfig>
EOF
  dbus-daemon --config-file="$tmp/bus.conf" --nofork --print-address=3 3>"$tmp/address" 2>"$tmp/bus.log" &
  bus_pid=$!
  wait_until "dbus-daemon's address" '[ -s "$tmp/address" ]' || true
  addr=$(head -n 1 "$tmp/address")
  [ -n "$addr" ] || bail "dbus-daemon did not start"
}

# make_node ARG...: the test node $tmp/node.xml, made by dhf-testnode ARG...
make_node() {
  "$DHF_TESTNODE" "$@" >"$tmp/node.xml" 2>"$tmp/testnode.err" ||
    bail "dhf-testnode failed" "$tmp/testnode.err"
}

# name_owned true|false: whether org.dhf.Framework1 has an owner on the bus.
name_owned() {
  dbus-send --bus="$addr" --print-reply --dest=org.freedesktop.DBus / \
    org.freedesktop.DBus.NameHasOwner string:org.dhf.Framework1 2>/dev/null | grep -q "boolean $1"
}

# write_xdm_config POLICY: a dhfd configuration for the simulated-domain
# XDM tests in $tmp/dhfd.conf: the vendor policy of the source tree under
# POLICY (copied to $tmp/policy.d), state in $tmp, no vsock listener.
write_xdm_config() {
  mkdir "$tmp/channels" "$tmp/policy.d" "$tmp/vendor.d" "$tmp/storage"
  cp "$DHF_SOURCE_ROOT"/policies/policy.d/*.policy "$tmp/vendor.d/"
  cp "$1" "$tmp/policy.d/50-${1##*/}"
  cat >"$tmp/dhfd.conf" <<EOF
[Appliances]
StorageDirectory=$tmp/storage

[Authorization]
Mode=peer-uid

[Policy]
Directories=$tmp/policy.d;$tmp/vendor.d
LastGood=$tmp/policy.last-good

[Devices]
StateFile=$tmp/devices.json

[XDM]
VsockPort=0
EOF
}

# start_dhfd CONFIG: dhfd on the private bus over $tmp/node.xml (the test
# driver keeps the domains in dhfd's process: each run starts from the
# node file), its log appended to $tmp/dhfd.log; returns once dhfd owns
# org.dhf.Framework1.
start_dhfd() {
  "$DHFD" --address "$addr" --hypervisor "test://$tmp/node.xml" --config "$1" --verbose \
    --xdm-socket "$tmp/xdm.sock" >>"$tmp/dhfd.log" 2>&1 &
  dhfd_pid=$!
  for _ in $(seq 300); do
    if name_owned true; then
      return 0
    fi
    kill -0 "$dhfd_pid" 2>/dev/null || break
    sleep 0.1
  done
  bail "dhfd did not take org.dhf.Framework1 within 30 s"
}

# wait_name_gone: after stop_dhfd, until the bus has seen dhfd go (at
# most 5 s).
wait_name_gone() {
  for _ in $(seq 50); do
    if name_owned false; then
      break
    fi
    sleep 0.1
  done
}
