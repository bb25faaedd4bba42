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
# processes), then stops dbus-monitor and dhfd, removes every domain named $PREFIX*, stops
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
monitor_pid=
lock_waited_ms=0
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

# The suites and benchmarks that run dhfd on the system libvirtd run one at
# a time: every dhfd connects to the XDM channel of every running domain
# and QEMU serves one client per channel, so a second dhfd would take the
# first one's guests. bench/ takes the same lock. Held on fd 8 until the
# script exits: every process this script leaves running in the
# background is started with 8>&- (a dbus-daemon that kept it would hold
# the lock after an interrupted run). The wait stays below meson's
# timeout for the suite (600 s), so that a waiting suite says why.
readonly HYPERVISOR_LOCK=/run/lock/dhf-real-hypervisor.lock
readonly HYPERVISOR_LOCK_WAIT_S=420

lock_hypervisor() {
  local t0
  mkdir -p "${HYPERVISOR_LOCK%/*}"
  exec 8>"$HYPERVISOR_LOCK"
  if ! flock -n 8; then
    echo "# another suite or benchmark drives $URI: waiting for it ($HYPERVISOR_LOCK)"
    t0=$(now_ms)
    flock -w "$HYPERVISOR_LOCK_WAIT_S" 8 ||
      bail "$HYPERVISOR_LOCK still held after $HYPERVISOR_LOCK_WAIT_S s (lslocks names its holder)"
    lock_waited_ms=$(($(now_ms) - t0))
    echo "# waited $lock_waited_ms ms for $HYPERVISOR_LOCK"
  fi
}

# Domains that a run of these suites or of bench/ left behind when it was
# killed before its cleanup (dhftest-PID-* and dhfbench-PID-* whose PID is
# gone): they would load the CPUs and their channels would be taken by our
# dhfd. Safe under the lock: no other run of ours drives the hypervisor.
reclaim_stale_domains() {
  local name pid
  for name in $(vsh list --all --name | grep -E '^dhf(test|bench)-[0-9]+-' || true); do
    pid=${name#dhf*-}
    pid=${pid%%-*}
    [[ -d "/proc/$pid" ]] && continue
    echo "# removing $name, left behind by an interrupted run (pid $pid is gone)"
    vsh destroy "$name" >/dev/null 2>&1 || true
    vsh undefine "$name" >/dev/null || bail "cannot undefine the stale domain $name"
  done
}

# other_dhfds: the pids of the dhfd processes that drive a real hypervisor
# now, but ours. Under the lock they are not ours to wait for (an
# installed dhfd, say).
other_dhfds() {
  local p cmdline pids=()
  for p in /proc/[0-9]*; do
    [[ "$(cat "$p/comm" 2>/dev/null)" == dhfd && "${p#/proc/}" != "$dhfd_pid" ]] || continue
    cmdline=$(tr '\0' ' ' <"$p/cmdline" 2>/dev/null) || continue
    # On libvirt's test driver it reaches no QEMU channel.
    [[ " $cmdline" == *" --hypervisor test:"* || " $cmdline" == *" --hypervisor=test:"* ]] && continue
    pids+=("${p#/proc/}")
  done
  echo "${pids[*]}"
}

# Bails when another dhfd drives a real hypervisor: it would connect to
# the XDM channels of this suite's guests, and QEMU serves one client per
# channel.
refuse_other_dhfds() {
  local pids
  pids=$(other_dhfds)
  [[ -z "$pids" ]] || bail "another dhfd (pid $pids) drives a real hypervisor and would take the guests' XDM channels: stop it first"
}

# Takes the lock above, starts libvirtd unless it runs, removes stale
# domains, and bails when libvirtd does not answer, another dhfd drives it,
# or it already has domains with our names.
start_libvirtd() {
  lock_hypervisor
  echo "# starting libvirtd: $LIBVIRTD_UP"
  "$LIBVIRTD_UP" 2>&1 | sed 's/^/# /' || bail "libvirtd cannot be started (scripts/libvirtd-up failed)"
  libvirtd_started=1
  vsh version >/dev/null || bail "libvirtd started but $URI does not answer"
  reclaim_stale_domains
  refuse_other_dhfds
  if [[ -n "$(libvirt_domains)" ]]; then
    bail "libvirt already has domains named $PREFIX*"
  fi
}

# make_tmp NAME: a new temporary directory $tmp, its path without links.
make_tmp() {
  tmp=$(mktemp -d "${TMPDIR:-/tmp}/$1.XXXXXX")
  tmp=$(cd "$tmp" && pwd -P)
}

# make_qemu_tmp NAME WHAT: make_tmp for files QEMU opens (it runs as
# libvirt-qemu): $tmp is 0711 and every directory above it has to be
# traversable by others; bails naming WHAT otherwise.
make_qemu_tmp() {
  local dir
  make_tmp "$1"
  chmod 0711 "$tmp"
  dir=$(dirname "$tmp")
  while [[ "$dir" != / ]]; do
    (($(stat -c %a "$dir" | tail -c 2) & 1)) ||
      bail "$dir is not traversable by others, so QEMU cannot open $2 below it: set TMPDIR"
    dir=$(dirname "$dir")
  done
}

# Starts a private dbus-daemon (bus_pid) and sets addr to its address. It
# stays in the foreground, a child in our process group: a run that meson
# kills takes it along.
start_bus() {
  dbus-daemon --session --nofork --print-address=1 \
    >"$tmp/bus.address" 2>"$tmp/bus.err" </dev/null 8>&- &
  bus_pid=$!
  wait_until 10 "dbus-daemon's address" test -s "$tmp/bus.address" >/dev/null ||
    bail "dbus-daemon did not start: $(cat "$tmp/bus.err")"
  addr=$(head -n 1 "$tmp/bus.address")
}

# start_monitor MATCH...: dbus-monitor on the private bus with these match
# rules, its output in $tmp/monitor.txt (monitor_pid); returns once it
# monitors. The cleanup stops it.
start_monitor() {
  dbus-monitor --address "$addr" "$@" >"$tmp/monitor.txt" 2>"$tmp/monitor.err" 8>&- &
  monitor_pid=$!
  wait_until 10 "dbus-monitor to start monitoring" test -s "$tmp/monitor.txt" >/dev/null ||
    bail "dbus-monitor did not start: $(cat "$tmp/monitor.err")"
}

monitor_lines() {
  wc -l <"$tmp/monitor.txt"
}

# state_changes_since LINE: the StateChanged signals that dbus-monitor saw
# after line LINE of its output, one "NAME STATE REASON" per line.
state_changes_since() {
  tail -n "+$(($1 + 1))" "$tmp/monitor.txt" | awk '
    /member=StateChanged/ { n = 4; rec = ""; next }
    n > 0 {
      sub(/^ *(string|object path) /, ""); gsub(/"/, "")
      if (n < 4) rec = rec (rec == "" ? "" : " ") $0
      if (--n == 0) print rec
    }'
}

# saw_state_change SINCE NAME STATE [REASON]
saw_state_change() {
  state_changes_since "$1" | awk -v name="$2" -v state="$3" -v reason="${4-}" '
    $1 == name && $2 == state && (reason == "" || $3 == reason) { found = 1 }
    END { exit !found }'
}

dhfd_serving() {
  pid_gone "$dhfd_pid" && bail "dhfd exited at startup: $(cat "$tmp/dhfd.log")"
  ctl status >/dev/null 2>&1
}

# Starts dhfd with $tmp/dhfd.conf (its log appended to $tmp/dhfd.log) and
# waits until it serves and is connected to libvirtd. Its dom0 XDM socket
# is in $tmp. A wrapper subshell writes dhfd's pid to $tmp/dhfd.pid and,
# when dhfd ends, its exit status to $tmp/dhfd.exit, so that its status
# can be read whichever shell started it (a scenario's subshell restarts
# dhfd too); neither the TAP stream (fd 7) nor the lock goes with it.
start_dhfd() {
  rm -f "$tmp/dhfd.pid" "$tmp/dhfd.exit"
  (
    rc=0
    "$DHFD" --address "$addr" --hypervisor "$URI" --config "$tmp/dhfd.conf" --verbose \
      --xdm-socket "$tmp/xdm.sock" &
    pid=$!
    echo "$pid" >"$tmp/dhfd.pid.new" && mv "$tmp/dhfd.pid.new" "$tmp/dhfd.pid"
    wait "$pid" || rc=$?
    echo "$rc" >"$tmp/dhfd.exit"
  ) >>"$tmp/dhfd.log" 2>&1 </dev/null 7>&- 8>&- &
  wait_until 5 "dhfd's pid" test -s "$tmp/dhfd.pid" >/dev/null || bail "dhfd's wrapper wrote no pid"
  dhfd_pid=$(cat "$tmp/dhfd.pid")
  wait_until 20 "dhfd to own org.dhf.Framework1" dhfd_serving >/dev/null ||
    bail "dhfd did not serve org.dhf.Framework1 within 20 s: $(cat "$tmp/dhfd.log")"
  wait_until 20 "dhfd to connect to $URI" status_is true running >/dev/null ||
    bail "dhfd did not connect to $URI within 20 s: $(ctl status 2>&1)"
}

# dhfd_exit_status: what the wrapper of start_dhfd recorded, once dhfd
# has ended ("none" when it did not).
dhfd_exit_status() {
  wait_until 5 "dhfd's exit status" test -s "$tmp/dhfd.exit" >/dev/null || {
    echo none
    return 0
  }
  cat "$tmp/dhfd.exit"
}

# Stops dhfd (SIGTERM, then SIGKILL after 10 s) and sets dhfd_status.
# shellcheck disable=SC2034 # the scenarios read dhfd_status
stop_dhfd() {
  [[ -n "$dhfd_pid" ]] || return 0
  kill -TERM "$dhfd_pid" 2>/dev/null || true
  wait_until 10 "dhfd to exit on SIGTERM" pid_gone "$dhfd_pid" || kill -KILL "$dhfd_pid" 2>/dev/null || true
  wait_until 10 "dhfd to be gone" pid_gone "$dhfd_pid" || true
  dhfd_status=$(dhfd_exit_status)
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
  if [[ -n "$monitor_pid" ]]; then
    kill "$monitor_pid" 2>/dev/null
    wait "$monitor_pid" 2>/dev/null
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
    wait "$bus_pid" 2>/dev/null
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
