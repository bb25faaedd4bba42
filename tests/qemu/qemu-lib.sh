# shellcheck shell=bash
# SPDX-License-Identifier: LGPL-2.1-or-later
#
# What the shell suites against a real libvirtd + QEMU (qemu:///system)
# share (sourced after DHFD, DHFCTL and DHF_SOURCE_ROOT are checked):
# starting libvirtd, a private dbus-daemon and dhfd, dhfctl and virsh
# helpers, scenarios in TAP (tests/tap.sh), and the cleanup on exit.
#
# Sourcing it sets the EXIT, HUP, INT and TERM traps. The cleanup first
# calls stop_watchers when the script defines it (its own background
# processes), then stops dhfd, removes every domain named $PREFIX*, stops
# the bus and removes $tmp; dhfd's log is shown when something failed
# (the last DHFD_LOG_TAIL lines when the script sets it, else all of it).

# shellcheck source=tests/tap.sh
source "$DHF_SOURCE_ROOT/tests/tap.sh"

readonly URI='qemu:///system'
readonly PY=/usr/bin/python3 # the system one: pyenv's may lack modules
readonly LIBVIRTD_UP="$DHF_SOURCE_ROOT/scripts/libvirtd-up"
readonly PREFIX="dhftest-$$-"
readonly NL=$'\n'

tmp=
addr=
bus_pid=
dhfd_pid=
dhfd_status=
libvirtd_started=0
n=0
failed=0

bail() {
  local name=${0##*/}
  echo "Bail out! $*"
  echo "${name%.sh}: error: $*" >&2
  exit 1
}

now_ms() {
  local t=${EPOCHREALTIME//[.,]/}
  echo $((10#$t / 1000))
}

# wait_until SECONDS WHAT CMD...: polls CMD every 0.1 s until it succeeds;
# fails (with a TAP comment) after SECONDS.
wait_until() {
  local limit=$1 what=$2 deadline
  shift 2
  deadline=$(($(now_ms) + limit * 1000))
  until "$@"; do
    if (($(now_ms) >= deadline)); then
      echo "# timed out after ${limit}s waiting for $what"
      return 1
    fi
    sleep 0.1
  done
}

ctl() {
  DHF_BUS_ADDRESS="$addr" "$DHFCTL" "$@"
}

vsh() {
  virsh -q -c "$URI" "$@"
}

# json EXPR [ARG...]: evaluates the Python expression EXPR over the JSON
# document d read from stdin (ARGs are a[0], a[1], ...); prints strings as
# they are and anything else as JSON (true, false, 3, ...).
json() {
  "$PY" -c '
import json, sys
a = sys.argv[2:]
d = json.load(sys.stdin)
v = eval(sys.argv[1])
print(v if isinstance(v, str) else json.dumps(v))' "$@"
}

# expect_eq WHAT ACTUAL EXPECTED
expect_eq() {
  if [[ "$2" != "$3" ]]; then
    echo "# $1: expected '$3', got '$2'"
    return 1
  fi
}

# ctl_field NAME FIELD: one field of `dhfctl --json show NAME`.
ctl_field() {
  ctl --json show "$1" | json 'd[a[0]]' "$2"
}

state_is() {
  [[ "$(ctl_field "$1" state 2>/dev/null)" == "$2" ]]
}

# status_is CONNECTED STATUS: dhfctl status says so.
status_is() {
  [[ "$(ctl --json status 2>/dev/null | json '"%s %s" % (json.dumps(d["hypervisor_connected"]), d["status"])')" == "$1 $2" ]]
}

pid_gone() {
  local stat
  stat=$(cat "/proc/$1/stat" 2>/dev/null) || return 0
  # A zombie is gone too, as far as libvirt can tell.
  [[ "$stat" =~ ^[0-9]+\ \(.*\)\ Z ]]
}

libvirt_domains() {
  local all
  all=$(vsh list --all --name) || return 1
  grep "^$PREFIX" <<<"$all" || true
}

# run_scenario DESCRIPTION FUNCTION: runs FUNCTION in a subshell with
# errexit (the first failing command or check ends it and makes it "not
# ok") and prints its TAP line.
run_scenario() {
  local rc t0
  t0=$(now_ms)
  set +e
  (
    # fd 7: the TAP stream, also from inside command substitutions.
    exec 7>&1
    set -eE
    trap 'echo "# failed (status $?) at line $LINENO: ${BASH_COMMAND%%"$NL"*}" >&7' ERR
    "$2"
  )
  rc=$?
  set -e
  if ((rc == 0)); then
    ok "$1"
  else
    not_ok "$1"
  fi
  echo "# ($(($(now_ms) - t0)) ms)"
  # A scenario that stops libvirtd marks it with $tmp/libvirtd-stopped: when
  # it failed while libvirtd was stopped, it must not take the following
  # ones down with it.
  if [[ -e "$tmp/libvirtd-stopped" ]]; then
    echo "# starting libvirtd again after the failure"
    "$LIBVIRTD_UP" 2>&1 | sed 's/^/# /' || true
    rm -f "$tmp/libvirtd-stopped"
    wait_until 20 "dhfd to reconnect" status_is true running || true
  fi
}

# --- setup and cleanup ------------------------------------------------------

# require_root_and BIN...: bails unless this runs as root and every BIN is
# installed.
require_root_and() {
  local bin
  if [[ "$(id -u)" -ne 0 ]]; then
    bail "must run as root: it drives the system libvirtd (qemu:///system) and QEMU"
  fi
  for bin in "$@"; do
    command -v "$bin" >/dev/null || bail "$bin not found (scripts/install-deps installs it)"
  done
}

# The suites and benchmarks that drive the system libvirtd run one at a
# time: every dhfd connects to the XDM channel of every running domain and
# QEMU serves one client per channel, so a second dhfd would take the
# first one's guests. bench/dhf-bench-guests takes the same lock. Held on
# fd 8 until the script exits; dhfd is started without it.
readonly HYPERVISOR_LOCK=/run/lock/dhf-real-hypervisor.lock

lock_hypervisor() {
  mkdir -p "${HYPERVISOR_LOCK%/*}"
  exec 8>"$HYPERVISOR_LOCK"
  if ! flock -n 8; then
    echo "# another suite or benchmark drives $URI: waiting for it ($HYPERVISOR_LOCK)"
    flock -w 900 8 || bail "$HYPERVISOR_LOCK still held after 900 s"
  fi
}

# Takes the lock above, starts libvirtd unless it runs, and bails when it
# does not answer or already has domains with our names.
start_libvirtd() {
  lock_hypervisor
  echo "# starting libvirtd: $LIBVIRTD_UP"
  "$LIBVIRTD_UP" 2>&1 | sed 's/^/# /' || bail "libvirtd cannot be started (scripts/libvirtd-up failed)"
  libvirtd_started=1
  vsh version >/dev/null || bail "libvirtd started but $URI does not answer"
  if [[ -n "$(libvirt_domains)" ]]; then
    bail "libvirt already has domains named $PREFIX*"
  fi
}

# make_tmp NAME: a new temporary directory $tmp, its path without links.
make_tmp() {
  tmp=$(mktemp -d "${TMPDIR:-/tmp}/$1.XXXXXX")
  tmp=$(cd "$tmp" && pwd -P)
}

# Starts a private dbus-daemon (bus_pid) and sets addr to its address.
start_bus() {
  dbus-daemon --session --fork --print-address=1 --print-pid=3 \
    >"$tmp/bus.address" 3>"$tmp/bus.pid" 2>"$tmp/bus.err" ||
    bail "dbus-daemon did not start: $(cat "$tmp/bus.err")"
  bus_pid=$(tr -dc '0-9' <"$tmp/bus.pid")
  addr=$(head -n 1 "$tmp/bus.address")
  [[ -n "$addr" && -n "$bus_pid" ]] || bail "dbus-daemon printed no address or pid"
}

dhfd_serving() {
  pid_gone "$dhfd_pid" && bail "dhfd exited at startup: $(cat "$tmp/dhfd.log")"
  ctl status >/dev/null 2>&1
}

# Starts dhfd with $tmp/dhfd.conf (its log appended to $tmp/dhfd.log) and
# waits until it serves and is connected to libvirtd. Its dom0 XDM socket
# is in $tmp.
start_dhfd() {
  "$DHFD" --address "$addr" --hypervisor "$URI" --config "$tmp/dhfd.conf" --verbose \
    --xdm-socket "$tmp/xdm.sock" >>"$tmp/dhfd.log" 2>&1 </dev/null 8>&- &
  dhfd_pid=$!
  wait_until 20 "dhfd to own org.dhf.Framework1" dhfd_serving >/dev/null ||
    bail "dhfd did not serve org.dhf.Framework1 within 20 s: $(cat "$tmp/dhfd.log")"
  wait_until 20 "dhfd to connect to $URI" status_is true running >/dev/null ||
    bail "dhfd did not connect to $URI within 20 s: $(ctl status 2>&1)"
}

# Stops dhfd (SIGTERM, then SIGKILL after 10 s) and sets dhfd_status.
# shellcheck disable=SC2034 # the scenarios read dhfd_status
stop_dhfd() {
  [[ -n "$dhfd_pid" ]] || return 0
  kill -TERM "$dhfd_pid" 2>/dev/null || true
  wait_until 10 "dhfd to exit on SIGTERM" pid_gone "$dhfd_pid" || kill -KILL "$dhfd_pid" 2>/dev/null || true
  dhfd_status=0
  wait "$dhfd_pid" 2>/dev/null || dhfd_status=$?
  dhfd_pid=
}

cleanup() {
  local status=$? name
  set +e
  # Finish cleaning up even if the signal that got us here comes again.
  trap '' HUP INT TERM
  if declare -F stop_watchers >/dev/null; then
    stop_watchers
  fi
  stop_dhfd
  if ((libvirtd_started)); then
    # Never leave libvirtd stopped behind us (a no-op when it runs).
    "$LIBVIRTD_UP" 2>&1 | sed 's/^/# cleanup: /'
    for name in $(libvirt_domains); do
      echo "# cleanup: removing leftover domain $name"
      vsh destroy "$name" >/dev/null 2>&1
      vsh undefine "$name" >/dev/null 2>&1
    done
  fi
  if [[ -n "$bus_pid" ]]; then
    kill "$bus_pid" 2>/dev/null
  fi
  if ((status != 0 || failed != 0)) && [[ -n "$tmp" && -f "$tmp/dhfd.log" ]]; then
    if [[ -n "${DHFD_LOG_TAIL:-}" ]]; then
      echo "# dhfd's log (last $DHFD_LOG_TAIL lines):"
      tail -n "$DHFD_LOG_TAIL" "$tmp/dhfd.log" | sed 's/^/#   /'
    else
      echo "# dhfd's log:"
      sed 's/^/#   /' "$tmp/dhfd.log"
    fi
    echo "# QEMU logs kept: /var/log/libvirt/qemu/${PREFIX}*.log"
  else
    rm -f "/var/log/libvirt/qemu/${PREFIX}"*.log
  fi
  [[ -n "$tmp" ]] && rm -rf "$tmp"
  exit "$status"
}
trap cleanup EXIT
# meson's timeout sends SIGTERM: clean up then too.
trap 'exit 129' HUP
trap 'exit 130' INT
trap 'exit 143' TERM
