#!/bin/bash
# SPDX-License-Identifier: LGPL-2.1-or-later
#
# dhfd against a real libvirtd + QEMU (qemu:///system, TCG): install, the
# lifecycle, the XDM channel connection, foreign domains, libvirtd restarts
# and disks, each checked against what libvirt itself says. TAP output; meson runs it with the DHFD,
# DHFCTL and DHF_SOURCE_ROOT variables of tests/meson.build.
#
# Needs root. It starts libvirtd with scripts/libvirtd-up, restarts and stops
# it (other users of qemu:///system see that), and fails, never skips, when
# it cannot run. Everything it makes is named dhftest-PID-* and cleaned up on
# exit: domains, dhfd, its dbus-daemon, temporary files.
set -euo pipefail
shopt -s nullglob

: "${DHFD:?path to dhfd}" "${DHFCTL:?path to dhfctl}" "${DHF_SOURCE_ROOT:?source tree}"

# shellcheck source=tests/qemu/qemu-lib.sh
source "$DHF_SOURCE_ROOT/tests/qemu/qemu-lib.sh"

# What scripts/libvirtd-up uses, so that a stop here never races its starts.
readonly LIBVIRTD_PIDFILE='/run/libvirtd.pid'
readonly LIBVIRTD_LOCK='/run/lock/dhf-libvirtd-up.lock'
readonly A="${PREFIX}a" # the appliance most scenarios drive
readonly B="${PREFIX}b" # the one with a disk
readonly F="${PREFIX}f" # defined behind dhfd's back
readonly PLAN=13

# --- helpers ----------------------------------------------------------------

# xml_get FILE PATH: the text of the element, or with PATH ending in /@ATTR
# the attribute, that the ElementTree path PATH selects in FILE ("dhf:" is
# dhf's metadata namespace). Fails when nothing matches.
xml_get() {
  "$PY" - "$@" <<'EOF'
import sys
import xml.etree.ElementTree as ET

path, attr = sys.argv[2], None
if "/@" in path:
    path, attr = path.rsplit("/@", 1)
root = ET.parse(sys.argv[1]).getroot()
el = root if path in ("", ".") else root.find(path, {"dhf": "urn:dhf:appliance:1"})
if el is None:
    sys.exit(f"xml_get: nothing at {path} in {sys.argv[1]}")
value = el.get(attr) if attr else (el.text or "")
if value is None:
    sys.exit(f"xml_get: no attribute {attr} at {path} in {sys.argv[1]}")
print(value)
EOF
}

# listed NAME: true or false, from `dhfctl --json list`.
listed() {
  ctl --json list | json 'any(x["name"] == a[0] for x in d)' "$1"
}

is_listed() {
  [[ "$(listed "$1" 2>/dev/null)" == true ]]
}

is_not_listed() {
  [[ "$(listed "$1" 2>/dev/null)" == false ]]
}

# xdm_conn_ids NAME: the ids of dhfd's channel connections to NAME, one a
# line (none: empty), from `dhfctl --json xdm list` (D-Bus ListConnections).
xdm_conn_ids() {
  ctl --json xdm list |
    json '"\n".join(str(c["id"]) for c in d if c["domain"] == a[0] and c["transport"] == "channel")' "$1"
}

# has_xdm_conn NAME [NOT-ID]: dhfd has a channel connection to NAME (other
# than NOT-ID).
has_xdm_conn() {
  local ids
  ids=$(xdm_conn_ids "$1" 2>/dev/null) || return 1
  [[ -n "$ids" ]] || return 1
  [[ -z "${2:-}" ]] || ! grep -qx "$2" <<<"$ids"
}

no_xdm_conn() {
  local ids
  ids=$(xdm_conn_ids "$1" 2>/dev/null) || return 1
  [[ -z "$ids" ]]
}

# live_channel_path NAME: the host socket of NAME's org.dhf.xdm.0 channel
# in its live XML.
live_channel_path() {
  vsh dumpxml "$1" >"$tmp/live.xml"
  xml_get "$tmp/live.xml" "./devices/channel/target[@name='org.dhf.xdm.0']/../source/@path"
}

# dhfd_connected_to PATH: a socket of dhfd is connected to the listening
# socket PATH (ss shows PATH as the local address of QEMU's end; the peer
# inode of that end is dhfd's socket).
dhfd_connected_to() {
  ss -xpn 2>/dev/null | awk -v path="$1" -v pid="pid=$dhfd_pid," '
    index($0, pid) { mine[$6] = 1 }
    $5 == path { peers[$8] = 1 }
    END { for (p in peers) if (p in mine) found = 1; exit !found }'
}

# xdm_log_lines NAME: how many lines of dhfd's log are about NAME's XDM
# channel connection.
xdm_log_lines() {
  grep -ciE "(xdm|channel|hello).*$1|$1.*(xdm|channel|hello)" "$tmp/dhfd.log" || true
}

# saw_disconnect SINCE: a PropertiesChanged of the Manager with
# HypervisorConnected false after line SINCE of dbus-monitor's output.
saw_disconnect() {
  tail -n "+$(($1 + 1))" "$tmp/monitor.txt" | grep -A1 '"HypervisorConnected"' | grep -q 'boolean false'
}

# Stops libvirtd but not virtlogd, which keeps the QEMU processes' logs
# (scripts/libvirtd-up --stop stops both). Holds libvirtd-up's lock.
stop_libvirtd_only() {
  local pid
  pid=$(tr -dc '0-9' <"$LIBVIRTD_PIDFILE")
  if [[ -z "$pid" || "$(cat "/proc/$pid/comm" 2>/dev/null)" != libvirtd ]]; then
    echo "# $LIBVIRTD_PIDFILE does not name a running libvirtd"
    return 1
  fi
  (
    flock -w 90 9 || exit 1
    kill -TERM "$pid"
    wait_until 30 "libvirtd (pid $pid) to exit" pid_gone "$pid"
  ) 9>"$LIBVIRTD_LOCK"
}

# ensure_running NAME: starts NAME unless dhfctl says it runs already (a
# failed scenario may leave it either way).
ensure_running() {
  state_is "$1" running || ctl start "$1" >/dev/null
}

write_manifest() { # FILE NAME VERSION ROLE [EXTRA-JSON]
  cat >"$1" <<EOF
{
  "manifest-version": 1,
  "name": "$2",
  "vendor": "dhf tests",
  "version": "$3",
  "role": "$4",
  "memory": "64MiB",
  "vcpus": 1${5:+,
  $5}
}
EOF
}

# --- scenarios --------------------------------------------------------------
# Each runs in a subshell with errexit: the first failing command or check
# ends it and makes it "not ok". They build on each other, in order.

scenario_install() {
  local out
  write_manifest "$tmp/a.json" "$A" 1.0.0 environment '"display": "none"'
  out=$(ctl --json install "$tmp/a.json")
  expect_eq "install: name" "$(json 'd["name"]' <<<"$out")" "$A"
  expect_eq "install: upgraded" "$(json 'd["upgraded"]' <<<"$out")" false
  expect_eq "listed" "$(listed "$A")" true
  expect_eq "state" "$(ctl_field "$A" state)" shutoff
  expect_eq "managed" "$(ctl_field "$A" managed)" true
  expect_eq "memory" "$(ctl_field "$A" memory)" $((64 * 1024 * 1024))
  vsh dumpxml --inactive "$A" >"$tmp/a.xml"
  expect_eq "domain type (DomainType=qemu)" "$(xml_get "$tmp/a.xml" ./@type)" qemu
  expect_eq "dhf metadata schema" "$(xml_get "$tmp/a.xml" ./metadata/dhf:appliance/@schema)" 1
  expect_eq "manifest in the metadata" \
    "$(xml_get "$tmp/a.xml" ./metadata/dhf:appliance/dhf:manifest | json 'd["name"]')" "$A"
  expect_eq "xdm channel type" \
    "$(xml_get "$tmp/a.xml" "./devices/channel/target[@name='org.dhf.xdm.0']/../@type")" unix
  expect_eq "xdm channel target" \
    "$(xml_get "$tmp/a.xml" "./devices/channel/target[@name='org.dhf.xdm.0']/@type")" virtio
}

scenario_start() {
  local out path t0
  t0=$(now_ms)
  out=$(ctl --json start "$A")
  echo "# start took $(($(now_ms) - t0)) ms"
  expect_eq "start: state" "$(json 'd["state"]' <<<"$out")" running
  expect_eq "dhfctl state" "$(ctl_field "$A" state)" running
  expect_eq "virsh domstate" "$(vsh domstate "$A")" running
  vsh dumpxml "$A" >"$tmp/a-live.xml"
  path=$(xml_get "$tmp/a-live.xml" "./devices/channel/target[@name='org.dhf.xdm.0']/../source/@path")
  echo "# xdm channel socket: $path"
  [[ "$path" == /var/lib/libvirt/qemu/channel/target/* ]] || {
    echo "# the channel socket is not under /var/lib/libvirt/qemu/channel/target/"
    return 1
  }
  [[ -S "$path" ]] || {
    echo "# $path is not a socket"
    return 1
  }
}

# No guest OS runs, so nobody at the guest end says HELLO: dhfd's connection
# to the host side of the channel is there, and must stay quiet while the
# router waits for a HELLO that never comes (no reconnect storm, no log
# flood).
scenario_xdm_connect() {
  local path t0 lines before after ids
  expect_eq "precondition: A running" "$(ctl_field "$A" state)" running
  path=$(live_channel_path "$A")
  t0=$(now_ms)
  wait_until 20 "dhfd's XDM connection to $A" has_xdm_conn "$A"
  echo "# dhfd listed a channel connection to $A $(($(now_ms) - t0)) ms after the check began"
  ctl xdm list | sed 's/^/# dhfctl xdm list: /'
  ids=$(xdm_conn_ids "$A")
  expect_eq "channel connections to $A" "$(wc -l <<<"$ids")" 1
  wait_until 10 "a dhfd socket connected to $path" dhfd_connected_to "$path"
  # Watch for 25 s, more than two HELLO timeouts (10 s): dhfd may close and
  # reconnect, but with a backoff, and without flooding its log.
  before=$(xdm_log_lines "$A")
  sleep 25
  after=$(xdm_log_lines "$A")
  lines=$((after - before))
  echo "# dhfd logged $lines lines about $A's XDM channel in 25 s without a guest; the last ones:"
  grep -iE "(xdm|channel|hello).*$A|$A.*(xdm|channel|hello)" "$tmp/dhfd.log" | tail -n 8 | sed 's/^/#   /'
  if ((lines > 12)); then
    echo "# more than 12 log lines in 25 s: a reconnect loop floods the log"
    return 1
  fi
  wait_until 20 "dhfd's XDM connection to $A" has_xdm_conn "$A"
  echo "# after 25 s: connection ids $(xdm_conn_ids "$A" | tr '\n' ' ')(were $ids)"
}

scenario_xdm_domain_restart() {
  local id path path2
  id=$(xdm_conn_ids "$A" | head -n 1)
  path=$(live_channel_path "$A")
  vsh destroy "$A" >/dev/null
  wait_until 20 "dhfd to drop its XDM connection to the destroyed $A" no_xdm_conn "$A"
  expect_eq "start" "$(ctl --json start "$A" | json 'd["state"]')" running
  path2=$(live_channel_path "$A")
  echo "# channel socket before: $path"
  echo "# channel socket after:  $path2"
  [[ -S "$path2" ]]
  wait_until 20 "dhfd's XDM connection to the restarted $A" has_xdm_conn "$A" "$id"
  wait_until 10 "a dhfd socket connected to $path2" dhfd_connected_to "$path2"
}

# Needs dhfd_status: the main shell restarts dhfd just before.
scenario_xdm_dhfd_restart() {
  local path
  expect_eq "dhfd exit status after SIGTERM" "$dhfd_status" 0
  expect_eq "A still running" "$(vsh domstate "$A")" running
  path=$(live_channel_path "$A")
  wait_until 20 "the new dhfd's XDM connection to $A" has_xdm_conn "$A"
  wait_until 10 "a socket of the new dhfd connected to $path" dhfd_connected_to "$path"
  expect_eq "dhfctl state" "$(ctl_field "$A" state)" running
}

scenario_pause_resume() {
  local out
  out=$(ctl --json pause "$A")
  expect_eq "pause: state" "$(json 'd["state"]' <<<"$out")" paused
  expect_eq "dhfctl state" "$(ctl_field "$A" state)" paused
  expect_eq "virsh domstate" "$(vsh domstate "$A")" paused
  out=$(ctl --json resume "$A")
  expect_eq "resume: state" "$(json 'd["state"]' <<<"$out")" running
  expect_eq "dhfctl state" "$(ctl_field "$A" state)" running
  expect_eq "virsh domstate" "$(vsh domstate "$A")" running
}

scenario_forced_stop() {
  local out t0 took
  t0=$(now_ms)
  out=$(ctl --json stop "$A" --timeout 2)
  took=$(($(now_ms) - t0))
  echo "# stop --timeout 2 of a guest without an OS took $took ms"
  expect_eq "stop: state" "$(json 'd["state"]' <<<"$out")" shutoff
  expect_eq "stop: forced" "$(json 'd["forced"]' <<<"$out")" true
  expect_eq "dhfctl state" "$(ctl_field "$A" state)" shutoff
  expect_eq "virsh domstate" "$(vsh domstate "$A")" "shut off"
  grep -q "$A did not shut down in time; forcing it off" "$tmp/dhfd.log"
}

scenario_foreign() {
  local t0 rc=0
  cat >"$tmp/f.xml" <<EOF
<domain type='qemu'>
  <name>$F</name>
  <memory unit='MiB'>64</memory>
  <vcpu>1</vcpu>
  <os><type arch='x86_64'>hvm</type></os>
</domain>
EOF
  t0=$(now_ms)
  vsh define "$tmp/f.xml" >/dev/null
  wait_until 10 "$F in dhfctl list" is_listed "$F"
  echo "# a domain defined with virsh was listed after $(($(now_ms) - t0)) ms"
  expect_eq "managed" "$(ctl_field "$F" managed)" false
  expect_eq "vendor" "$(ctl_field "$F" vendor)" ""
  expect_eq "state" "$(ctl_field "$F" state)" shutoff
  # dhfd never removes what it did not install.
  ctl remove "$F" 2>"$tmp/err" || rc=$?
  expect_eq "dhfctl remove of a foreign domain: exit status" "$rc" 1
  vsh dominfo "$F" >/dev/null
  t0=$(now_ms)
  vsh start "$F" >/dev/null
  wait_until 10 "$F running in dhfctl" state_is "$F" running
  echo "# virsh start was seen after $(($(now_ms) - t0)) ms"
  t0=$(now_ms)
  vsh destroy "$F" >/dev/null
  vsh undefine "$F" >/dev/null
  wait_until 10 "$F gone from dhfctl list" is_not_listed "$F"
  echo "# virsh destroy + undefine was seen after $(($(now_ms) - t0)) ms"
}

scenario_libvirtd_restart() {
  local since t0 samples degraded
  ensure_running "$A"
  since=$(monitor_lines)
  # Poll dhfctl status in the background while libvirtd restarts (bounded:
  # at most 600 samples).
  (
    exec >"$tmp/poll.txt" 2>/dev/null 7>&- 8>&-
    for ((i = 0; i < 600; i++)); do
      [[ -e "$tmp/poll.stop" ]] && break
      ctl --json status | tr -d ' \n' || true
      echo
      sleep 0.05
    done
  ) &
  echo $! >"$tmp/poll.pid"
  t0=$(now_ms)
  touch "$tmp/libvirtd-stopped"
  "$LIBVIRTD_UP" --restart 2>&1 | sed 's/^/# /'
  rm -f "$tmp/libvirtd-stopped"
  echo "# libvirtd-up --restart took $(($(now_ms) - t0)) ms"
  wait_until 20 "dhfd to reconnect" status_is true running
  echo "# dhfd answered connected again $(($(now_ms) - t0)) ms after the restart began"
  touch "$tmp/poll.stop"
  wait "$(cat "$tmp/poll.pid")" || true
  samples=$(grep -c . "$tmp/poll.txt" || true)
  degraded=$(grep -c '"hypervisor_connected":false,"status":"degraded"' "$tmp/poll.txt" || true)
  echo "# dhfctl status polled $samples times: $degraded said disconnected+degraded"
  if saw_disconnect "$since"; then
    echo "# PropertiesChanged HypervisorConnected=false was emitted"
  else
    echo "# dbus-monitor saw no PropertiesChanged with HypervisorConnected=false"
    return 1
  fi
  grep -q "lost the connection to $URI" "$tmp/dhfd.log"
  expect_eq "dhfctl state after the reconnect" "$(ctl_field "$A" state)" running
  expect_eq "virsh domstate" "$(vsh domstate "$A")" running
  expect_eq "pause after the reconnect" "$(ctl --json pause "$A" | json 'd["state"]')" paused
  expect_eq "virsh domstate" "$(vsh domstate "$A")" paused
  expect_eq "resume after the reconnect" "$(ctl --json resume "$A" | json 'd["state"]')" running
  expect_eq "virsh domstate" "$(vsh domstate "$A")" running
}

scenario_resync() {
  local since qemu_pid out t0 rc=0
  expect_eq "precondition: A running" "$(ctl_field "$A" state)" running
  since=$(monitor_lines)
  qemu_pid=$(tr -dc '0-9' <"/run/libvirt/qemu/$A.pid")
  touch "$tmp/libvirtd-stopped"
  stop_libvirtd_only
  wait_until 10 "dhfctl status to say disconnected and degraded" status_is false degraded
  ctl --json status | json '"\n".join(d["status_reasons"])' | sed 's/^/# status reason: /'
  # The cache still answers, and calls fail cleanly.
  out=$(ctl --json list)
  expect_eq "listed while disconnected" "$(json 'any(x["name"] == a[0] for x in d)' "$A" <<<"$out")" true
  expect_eq "state while disconnected (cached)" "$(ctl_field "$A" state)" running
  out=$(ctl --json pause "$A" 2>/dev/null) || rc=$?
  expect_eq "pause while disconnected: exit status" "$rc" 1
  expect_eq "pause while disconnected: error" "$(json 'd["error"]["name"]' <<<"$out")" \
    org.dhf.Framework1.Error.HypervisorUnavailable
  # The appliance dies while nobody is watching.
  kill -KILL "$qemu_pid"
  wait_until 5 "QEMU (pid $qemu_pid) to die" pid_gone "$qemu_pid"
  t0=$(now_ms)
  "$LIBVIRTD_UP" 2>&1 | sed 's/^/# /'
  rm -f "$tmp/libvirtd-stopped"
  wait_until 20 "dhfd to reconnect" status_is true running
  echo "# dhfd reconnected $(($(now_ms) - t0)) ms after libvirtd was started again"
  expect_eq "dhfctl state after the resync" "$(ctl_field "$A" state)" shutoff
  expect_eq "virsh domstate" "$(vsh domstate "$A")" "shut off"
  wait_until 5 "StateChanged $A shutoff" saw_state_change "$since" "$A" shutoff
  state_changes_since "$since" | sed 's/^/# StateChanged: /'
}

scenario_remove_force() {
  local out
  ensure_running "$A"
  expect_eq "virsh domstate" "$(vsh domstate "$A")" running
  out=$(ctl --json remove --force "$A")
  expect_eq "remove: removed" "$(json 'd["removed"]' <<<"$out")" true
  expect_eq "listed" "$(listed "$A")" false
  if vsh list --all --name | grep -qx "$A"; then
    echo "# virsh list --all still shows $A"
    return 1
  fi
}

scenario_disk() {
  local out disk uuid uuid2 sum sum2 inode inode2 t0
  mkdir "$tmp/vendor"
  qemu-img create -q -f qcow2 "$tmp/vendor/vendor.qcow2" 16M
  write_manifest "$tmp/vendor/b.json" "$B" 1.0.0 service '"disk": "vendor.qcow2"'
  t0=$(now_ms)
  out=$(ctl --json install "$tmp/vendor/b.json")
  echo "# install with a 16M qcow2 took $(($(now_ms) - t0)) ms"
  expect_eq "install: upgraded" "$(json 'd["upgraded"]' <<<"$out")" false
  vsh dumpxml --inactive "$B" >"$tmp/b.xml"
  disk=$(xml_get "$tmp/b.xml" "./devices/disk[@device='disk']/source/@file")
  echo "# disk: $disk"
  expect_eq "disk directory" "$(dirname "$disk")" "$tmp/images"
  expect_eq "disk format" "$(xml_get "$tmp/b.xml" "./devices/disk[@device='disk']/driver/@type")" qcow2
  [[ -f "$disk" ]]
  expect_eq "storage directory mode" "$(stat -c %a "$tmp/images")" 711
  expect_eq "start" "$(ctl --json start "$B" | json 'd["state"]')" running
  expect_eq "virsh domstate" "$(vsh domstate "$B")" running
  # The text form of a forced stop.
  out=$(ctl stop "$B" --timeout 1)
  expect_eq "dhfctl stop output" "$out" "$B: forced off after 1s"
  expect_eq "virsh domstate" "$(vsh domstate "$B")" "shut off"
  # Data written by the appliance (here: by qemu-io) survives an upgrade.
  qemu-io -f qcow2 -c 'write -q -P 0xab 0 4k' "$disk" >/dev/null
  sum=$(md5sum <"$disk")
  inode=$(stat -c %i "$disk")
  uuid=$(ctl_field "$B" uuid)
  write_manifest "$tmp/vendor/b.json" "$B" 1.1.0 service '"disk": "vendor.qcow2"'
  out=$(ctl --json install "$tmp/vendor/b.json")
  expect_eq "upgrade: upgraded" "$(json 'd["upgraded"]' <<<"$out")" true
  expect_eq "version after the upgrade" "$(ctl_field "$B" version)" 1.1.0
  uuid2=$(ctl_field "$B" uuid)
  expect_eq "UUID after the upgrade" "$uuid2" "$uuid"
  vsh dumpxml --inactive "$B" >"$tmp/b2.xml"
  expect_eq "disk after the upgrade" \
    "$(xml_get "$tmp/b2.xml" "./devices/disk[@device='disk']/source/@file")" "$disk"
  sum2=$(md5sum <"$disk")
  inode2=$(stat -c %i "$disk")
  expect_eq "disk md5 after the upgrade" "$sum2" "$sum"
  expect_eq "disk inode after the upgrade" "$inode2" "$inode"
  qemu-io -f qcow2 -r -c 'read -q -P 0xab 0 4k' "$disk" >"$tmp/qemu-io.out"
  if grep -q 'Pattern verification failed' "$tmp/qemu-io.out"; then
    echo "# the data written before the upgrade is gone"
    return 1
  fi
  expect_eq "start after the upgrade" "$(ctl --json start "$B" | json 'd["state"]')" running
  expect_eq "remove --force" "$(ctl --json remove --force "$B" | json 'd["removed"]')" true
  if [[ -e "$disk" ]]; then
    echo "# remove left the disk $disk behind"
    return 1
  fi
  expect_eq "listed" "$(listed "$B")" false
  if vsh list --all --name | grep -qx "$B"; then
    echo "# virsh list --all still shows $B"
    return 1
  fi
}

# Needs dhfd_status: the main shell stops dhfd (its parent) just before.
scenario_dhfd_exit() {
  local left
  expect_eq "dhfd exit status after SIGTERM" "$dhfd_status" 0
  if grep -E 'CRITICAL|assertion' "$tmp/dhfd.log" | sed 's/^/# /' | grep .; then
    echo "# dhfd logged criticals"
    return 1
  fi
  left=$(libvirt_domains)
  expect_eq "test domains left in libvirt" "$left" ""
}

# --- setup and cleanup ------------------------------------------------------

# Called by cleanup (tests/qemu/qemu-lib.sh) before it stops dhfd.
stop_watchers() {
  if [[ -n "$tmp" && -s "$tmp/poll.pid" ]]; then
    kill "$(cat "$tmp/poll.pid")" 2>/dev/null
  fi
}

require_root_and virsh dbus-daemon dbus-monitor qemu-img qemu-io flock ss "$PY"
start_libvirtd

# libvirt's QEMU (user libvirt-qemu) opens the disks under $tmp/images.
make_qemu_tmp dhf-qemu-test "disks"

start_bus

start_monitor \
  "type='signal',interface='org.dhf.Framework1.Manager',member='StateChanged'" \
  "type='signal',interface='org.freedesktop.DBus.Properties',member='PropertiesChanged',path='/org/dhf/Framework1'"

# TCG: new appliances get <domain type='qemu'> whatever auto would pick.
# The vendor policy from the source tree; the last good copy stays in $tmp.
printf '[Hypervisor]\nDomainType=qemu\n[Appliances]\nStorageDirectory=%s/images\nShutdownTimeout=3\n[Policy]\nDirectories=%s/policy.d;%s\nLastGood=%s/policy.last-good\n[Devices]\nStateFile=%s/devices.json\n' \
  "$tmp" "$tmp" "$DHF_SOURCE_ROOT/policies/policy.d" "$tmp" "$tmp" >"$tmp/dhfd.conf"
start_dhfd

auto_type=$(sed -n 's/.*new appliances are type \([a-z]*\)).*/\1/p' "$tmp/dhfd.log" | head -n 1)
echo "# dhfd connected to $URI; DomainType=auto would pick: ${auto_type:-?} (this run uses qemu)"

echo "1..$PLAN"
run_scenario "install: listed, dhf metadata and the xdm channel in the domain XML" scenario_install
run_scenario "start: running in dhfctl and virsh, the xdm channel socket in the live XML" scenario_start
run_scenario "xdm: dhfd connects to the running appliance's channel socket, quietly without a guest" scenario_xdm_connect
run_scenario "xdm: destroyed and started again, dhfd connects to the new channel socket" scenario_xdm_domain_restart
echo "# restarting dhfd while $A runs"
stop_dhfd
start_dhfd
run_scenario "xdm: a restarted dhfd connects to the running appliance's channel again" scenario_xdm_dhfd_restart
run_scenario "pause and resume, as virsh sees them" scenario_pause_resume
run_scenario "stop --timeout 2 of a guest that ignores ACPI is forced off" scenario_forced_stop
run_scenario "a domain defined with virsh shows up unmanaged, follows virsh start, goes with undefine" scenario_foreign
run_scenario "libvirtd restart: dhfd reports the disconnect, reconnects, lifecycle works again" scenario_libvirtd_restart
run_scenario "QEMU killed while libvirtd is down: dhfd serves from its cache, then resyncs to shutoff with StateChanged" scenario_resync
run_scenario "remove --force of a running appliance undefines it" scenario_remove_force
run_scenario "a disk is copied to the storage directory, kept by an upgrade with the UUID, deleted by remove" scenario_disk
stop_dhfd
run_scenario "dhfd exits 0 on SIGTERM without criticals; no test domains left" scenario_dhfd_exit

if ((failed != 0)); then
  echo "# $failed of $n failed"
  exit 1
fi
