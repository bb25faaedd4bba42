#!/bin/bash
# SPDX-License-Identifier: LGPL-2.1-or-later
#
# Display switching and device assignment against a real libvirtd + QEMU
# (qemu:///system, TCG): the follow-focus inputs, the CPU weights, a switch
# whose attach fails for real, a device pinned by the policy, the fallback
# when the focused domain dies, a dhfd restart, screenshots and the
# graphics fd. Every check compares what dhfd says (dhfctl) with the domain
# XML libvirt itself keeps, live and persistent. TAP output; meson runs it
# with the DHFD, DHFCTL and DHF_SOURCE_ROOT variables of tests/meson.build.
#
# Needs root. It starts libvirtd with scripts/libvirtd-up and fails, never
# skips, when it cannot run. Everything it makes is named dhftest-PID-* and
# cleaned up on exit: domains, dhfd, its dbus-daemon, temporary files.
set -euo pipefail
shopt -s nullglob

: "${DHFD:?path to dhfd}" "${DHFCTL:?path to dhfctl}" "${DHF_SOURCE_ROOT:?source tree}"

# shellcheck source=tests/qemu/qemu-lib.sh
source "$DHF_SOURCE_ROOT/tests/qemu/qemu-lib.sh"

readonly A="${PREFIX}a" # an environment; the mouse is pinned to it
readonly B="${PREFIX}b" # another environment
readonly C="${PREFIX}c" # an environment without a USB bus: attaching there fails
readonly DOMAINS=("$A" "$B" "$C")
readonly KBD=ua-dhf-input-keyboard
readonly TAB=ua-dhf-input-tablet
readonly MOUSE=ua-dhf-input-mouse
readonly PLAN=12
# dhfd's log is long: show only its end when something failed.
readonly DHFD_LOG_TAIL=300

events_pid=

# --- helpers ----------------------------------------------------------------

# focused: the focused environment as `dhfctl focus` gives it.
focused() {
  ctl --json focus | json 'd["focused"] if isinstance(d, dict) else d'
}

focus_is() {
  [[ "$(focused 2>/dev/null)" == "$1" ]]
}

# device_field ID FIELD: one field of a device in `dhfctl devices list`.
device_field() {
  ctl --json devices list | json '
[x for x in (d.get("devices", d) if isinstance(d, dict) else d) if x["id"] == a[0]][0].get(a[1]) or ""' "$1" "$2"
}

# owners: "ID=OWNER ..." of the three inputs, from `dhfctl devices list`.
owners() {
  ctl --json devices list | json '
" ".join("%s=%s" % (x["id"], x["owner"])
         for x in sorted(d.get("devices", d) if isinstance(d, dict) else d, key=lambda x: x["id"])
         if x["id"] in ("input-keyboard", "input-mouse", "input-tablet"))'
}

owners_are() {
  [[ "$(owners 2>/dev/null)" == "$1" ]]
}

# expected_owners FOLLOW MOUSE: the owners line when the follow-focus inputs
# are in FOLLOW and the mouse in MOUSE.
expected_owners() {
  echo "input-keyboard=$1 input-mouse=$2 input-tablet=$1"
}

# dhf_aliases FILE: the dhf devices in the domain XML FILE, one alias per
# line, sorted; an element that is not the USB input its alias names is
# shown with what it is instead.
dhf_aliases() {
  "$PY" - "$1" <<'EOF'
import sys
import xml.etree.ElementTree as ET

found = []
for el in ET.parse(sys.argv[1]).getroot().find("devices"):
    alias = el.find("alias")
    if alias is None or not alias.get("name", "").startswith("ua-dhf-"):
        continue
    name = alias.get("name")
    if el.tag == "input" and el.get("bus") == "usb" and name == "ua-dhf-input-" + str(el.get("type")):
        found.append(name)
    else:
        found.append("%s(a <%s type=%s bus=%s>)" % (name, el.tag, el.get("type"), el.get("bus")))
print("\n".join(sorted(found)))
EOF
}

is_active() {
  [[ "$(vsh domstate "$1")" == running || "$(vsh domstate "$1")" == paused ]]
}

# save_xml DIR: live (when running) and persistent XML of every domain.
save_xml() {
  local d
  mkdir -p "$1"
  for d in "${DOMAINS[@]}"; do
    vsh dumpxml --inactive "$d" >"$1/$d.inactive.xml"
    if is_active "$d"; then
      vsh dumpxml "$d" >"$1/$d.live.xml"
    fi
  done
}

# expect_same_xml BEFORE AFTER WHEN DOMAIN...: the XML save_xml kept in
# BEFORE and in AFTER is the same, live and persistent, for every DOMAIN
# (WHEN completes the message when it is not).
expect_same_xml() {
  local before=$1 after=$2 when=$3 d scope
  shift 3
  for d in "$@"; do
    for scope in live inactive; do
      if ! cmp -s "$before/$d.$scope.xml" "$after/$d.$scope.xml"; then
        echo "# the $scope XML of $d changed$when:"
        diff "$before/$d.$scope.xml" "$after/$d.$scope.xml" | sed 's/^/#   /'
        return 1
      fi
    done
  done
}

# expect_devices FOCUS KBD TAB MOUSE: dhfd says the focus is FOCUS and the
# keyboard, tablet and mouse are in KBD, TAB and MOUSE ("dom0" for none);
# and every domain's live XML (when it runs) and persistent XML hold
# exactly those of the three that are theirs, each once.
expect_devices() {
  local focus=$1 kbd=$2 tab=$3 mouse=$4 d want scope dir="$tmp/xml-check"
  expect_eq "dhfctl focus" "$(focused)" "$focus"
  expect_eq "dhfctl devices list: owners" "$(owners)" \
    "input-keyboard=$kbd input-mouse=$mouse input-tablet=$tab"
  rm -rf "$dir"
  save_xml "$dir"
  for d in "${DOMAINS[@]}"; do
    # Sorted, as dhf_aliases prints them.
    want=
    [[ "$d" == "$kbd" ]] && want+="$KBD "
    [[ "$d" == "$mouse" ]] && want+="$MOUSE "
    [[ "$d" == "$tab" ]] && want+="$TAB "
    for scope in live inactive; do
      [[ -f "$dir/$d.$scope.xml" ]] || continue
      expect_eq "dhf devices in the $scope XML of $d" \
        "$(dhf_aliases "$dir/$d.$scope.xml" | tr '\n' ' ' | sed 's/^ $//')" "$want"
    done
  done
}

# expect_placement FOLLOW MOUSE: the focus, keyboard and tablet in FOLLOW,
# the mouse in MOUSE.
expect_placement() {
  expect_devices "$1" "$1" "$1" "$2"
}

# cpu_shares NAME: the live cpu_shares of NAME.
cpu_shares() {
  vsh schedinfo --live "$1" | awk -F: '$1 ~ /^cpu_shares/ { gsub(/ /, "", $2); print $2 }'
}

# expect_weights FOCUSED: 1024 for FOCUSED, 256 for the other running
# domains.
expect_weights() {
  local d want
  for d in "${DOMAINS[@]}"; do
    is_active "$d" || continue
    want=256
    [[ "$d" == "$1" ]] && want=1024
    expect_eq "cpu_shares of $d" "$(cpu_shares "$d")" "$want"
  done
}

# switch_to NAME: `dhfctl switch NAME`, which must answer NAME.
switch_to() {
  local out t0
  t0=$(now_ms)
  out=$(ctl switch "$1")
  echo "# switch to ${1#"$PREFIX"}: $(($(now_ms) - t0)) ms (dhfctl says: ${out//$NL/ })"
}

write_manifest() { # FILE NAME
  cat >"$1" <<EOF
{
  "manifest-version": 1,
  "name": "$2",
  "vendor": "dhf tests",
  "version": "1.0.0",
  "role": "environment",
  "display": "vnc",
  "memory": "128MiB",
  "vcpus": 1
}
EOF
}

# device_events: the device-added and device-removed events libvirt sent
# about our domains since the event monitor started.
device_events() {
  grep -E "event 'device-(added|removed)' for domain '$PREFIX" "$tmp/events.txt" || true
}

# Starts `virsh event` in the background (into $tmp/events.txt): libvirt
# reports every hot-plug and unplug it performs.
start_event_monitor() {
  : >"$tmp/events.txt"
  virsh -c "$URI" event --all --loop --timestamp >"$tmp/events.txt" 2>&1 8>&- &
  events_pid=$!
  # It has registered once it answers; give it a moment to do so.
  sleep 1
}

stop_event_monitor() {
  [[ -n "$events_pid" ]] || return 0
  kill "$events_pid" 2>/dev/null || true
  wait "$events_pid" 2>/dev/null || true
  events_pid=
}

# --- scenarios --------------------------------------------------------------
# Each runs in a subshell with errexit: the first failing command or check
# ends it and makes it "not ok". They build on each other, in order.

scenario_setup() {
  local d
  for d in "${DOMAINS[@]}"; do
    write_manifest "$tmp/$d.json" "$d"
    ctl --json install "$tmp/$d.json" >/dev/null
  done
  # C loses its USB controller: every USB attach to it fails in libvirt.
  vsh dumpxml --inactive "$C" >"$tmp/c.xml"
  "$PY" - "$tmp/c.xml" <<'EOF'
import re
import sys

path = sys.argv[1]
text = open(path).read()
text, n = re.subn(r"<controller type='usb'[^>]*?(/>|>.*?</controller>)",
                  "<controller type='usb' index='0' model='none'/>", text, flags=re.S)
if n != 1:
    sys.exit(f"{n} USB controllers in {path}, expected 1")
open(path, "w").write(text)
EOF
  vsh define "$tmp/c.xml" >/dev/null
  vsh dumpxml --inactive "$C" >"$tmp/c2.xml"
  grep -q "<controller type='usb' index='0' model='none'/>" "$tmp/c2.xml"
  for d in "${DOMAINS[@]}"; do
    expect_eq "start $d" "$(ctl --json start "$d" | json 'd["state"]')" running
  done
  for d in "$A" "$B"; do
    vsh dumpxml "$d" >"$tmp/d.xml"
    grep -q "<controller type='usb' index='0' model='qemu-xhci'" "$tmp/d.xml"
    grep -q "<graphics type='vnc'" "$tmp/d.xml"
  done
  # The policy pins the mouse to A: dhfd attaches it once A runs.
  wait_until 20 "the mouse in $A" owners_are "$(expected_owners dom0 "$A")"
  expect_eq "mouse mode" "$(device_field input-mouse mode)" pinned
  expect_eq "mouse holder" "$(device_field input-mouse holder)" "$A"
  expect_eq "keyboard mode" "$(device_field input-keyboard mode)" follow-focus
  expect_placement dom0 "$A"
}

scenario_switch_devices() {
  local target
  for target in "$A" "$B" "$A" "$B" "$A" "$B"; do
    switch_to "$target"
    expect_placement "$target" "$A"
  done
  expect_eq "keyboard origin" "$(device_field input-keyboard origin)" focus
}

scenario_switch_weights() {
  local target
  for target in "$A" "$B" "$A" "$B"; do
    switch_to "$target"
    expect_weights "$target"
  done
}

scenario_switch_failure() {
  local rc=0 before="$tmp/before-c" after="$tmp/after-c"
  expect_eq "precondition: focus" "$(focused)" "$B"
  save_xml "$before"
  ctl switch "$C" >"$tmp/out" 2>"$tmp/err" || rc=$?
  sed 's/^/# dhfctl switch C: /' "$tmp/err"
  expect_eq "dhfctl switch $C: exit status" "$rc" 1
  # libvirt says why ("Domain has no USB bus support"): dhfd passes it on.
  if ! grep -qi 'usb' "$tmp/err"; then
    echo "# the error does not say what failed"
    return 1
  fi
  expect_placement "$B" "$A"
  expect_weights "$B"
  save_xml "$after"
  # B's inputs may have gone and come back (the undo): expect_placement
  # checked them; A and C must not have changed at all.
  expect_same_xml "$before" "$after" "" "$A" "$C"
  expect_eq "keyboard problem" "$(device_field input-keyboard problem)" ""
}

# An admin pin keeps the tablet in B while the keyboard follows the
# focus; assigning where the attach fails, or a device the policy pins
# elsewhere, changes nothing; release lets the tablet follow again.
scenario_admin_pin() {
  local rc=0
  expect_eq "precondition: focus" "$(focused)" "$B"
  ctl devices assign input-tablet "$B" >/dev/null
  expect_eq "tablet origin" "$(device_field input-tablet origin)" admin
  expect_eq "tablet mode" "$(device_field input-tablet mode)" pinned
  expect_eq "tablet holder" "$(device_field input-tablet holder)" "$B"
  expect_placement "$B" "$A"
  switch_to "$A"
  expect_devices "$A" "$A" "$B" "$A"
  switch_to "$B"
  expect_devices "$B" "$B" "$B" "$A"
  switch_to "$A"
  expect_devices "$A" "$A" "$B" "$A"

  ctl devices assign input-keyboard "$C" >"$tmp/out" 2>"$tmp/err" || rc=$?
  sed 's/^/# dhfctl devices assign input-keyboard C: /' "$tmp/err"
  expect_eq "dhfctl devices assign to $C: exit status" "$rc" 1
  if ! grep -qi 'usb' "$tmp/err"; then
    echo "# the error does not say what failed"
    return 1
  fi
  expect_eq "keyboard origin after the failed assign" "$(device_field input-keyboard origin)" focus
  expect_eq "keyboard mode after the failed assign" "$(device_field input-keyboard mode)" follow-focus
  expect_devices "$A" "$A" "$B" "$A"

  rc=0
  ctl devices assign input-mouse "$B" >"$tmp/out" 2>"$tmp/err" || rc=$?
  sed 's/^/# dhfctl devices assign input-mouse B: /' "$tmp/err"
  [[ "$rc" != 0 ]] || {
    echo "# assigning the mouse that the policy pins to A succeeded"
    return 1
  }
  grep -q "$A" "$tmp/err" || {
    echo "# the refusal does not name the holder $A"
    return 1
  }
  expect_devices "$A" "$A" "$B" "$A"

  ctl devices release input-tablet >/dev/null
  wait_until 20 "the released tablet to follow the focus to $A" \
    owners_are "$(expected_owners "$A" "$A")"
  expect_eq "tablet origin after release" "$(device_field input-tablet origin)" focus
  expect_placement "$A" "$A"
  switch_to "$B"
  expect_placement "$B" "$A"
}

scenario_pinned() {
  expect_eq "precondition: focus" "$(focused)" "$B"
  vsh destroy "$A" >/dev/null
  wait_until 20 "$A shut off in dhfctl" state_is "$A" shutoff
  # Pinned: it stays in A's definition while A is off.
  vsh dumpxml --inactive "$A" >"$tmp/a-off.xml"
  expect_eq "dhf devices of the stopped $A" "$(dhf_aliases "$tmp/a-off.xml")" "$MOUSE"
  expect_eq "mouse holder while $A is off" "$(device_field input-mouse holder)" "$A"
  vsh start "$A" >/dev/null
  wait_until 20 "$A running in dhfctl" state_is "$A" running
  wait_until 20 "the mouse in the restarted $A" owners_are "$(expected_owners "$B" "$A")"
  expect_placement "$B" "$A"
  expect_eq "mouse mode" "$(device_field input-mouse mode)" pinned
  switch_to "$A"
  expect_placement "$A" "$A"
  switch_to "$B"
  expect_placement "$B" "$A"
  expect_weights "$B"
}

scenario_focused_destroyed() {
  local t0
  expect_eq "precondition: focus" "$(focused)" "$B"
  t0=$(now_ms)
  vsh destroy "$B" >/dev/null
  wait_until 20 "the focus to fall back to dom0" focus_is dom0
  wait_until 20 "the inputs back in dom0" owners_are "$(expected_owners dom0 "$A")"
  echo "# focus and inputs back in dom0 $(($(now_ms) - t0)) ms after virsh destroy"
  expect_placement dom0 "$A"
  expect_weights dom0
  vsh start "$B" >/dev/null
  wait_until 20 "$B running in dhfctl" state_is "$B" running
  # A domain that starts does not take the focus.
  sleep 1
  expect_placement dom0 "$A"
}

scenario_switch_from_dom0() {
  expect_eq "precondition: focus" "$(focused)" dom0
  switch_to "$A"
  expect_placement "$A" "$A"
  expect_weights "$A"
  [[ -s "$tmp/devices.json" ]] || {
    echo "# no state file at $tmp/devices.json"
    return 1
  }
  save_xml "$tmp/before-restart"
}

# The main shell restarts dhfd just before (with the event monitor
# running) and sets dhfd_status.
scenario_dhfd_restart() {
  local before="$tmp/before-restart" after="$tmp/after-restart"
  expect_eq "dhfd exit status after SIGTERM" "$dhfd_status" 0
  [[ -d "$before" ]] || {
    echo "# no XML saved before the restart"
    return 1
  }
  wait_until 20 "the restarted dhfd to report the focus" focus_is "$A"
  wait_until 20 "the restarted dhfd to list the inputs" owners_are "$(expected_owners "$A" "$A")"
  # A reconciliation would start right after the sync: give it time to
  # show before comparing.
  sleep 3
  expect_placement "$A" "$A"
  expect_weights "$A"
  save_xml "$after"
  expect_same_xml "$before" "$after" " across the restart" "${DOMAINS[@]}"
  if [[ -n "$(device_events)" ]]; then
    echo "# libvirt hot-plugged or unplugged devices across the restart:"
    device_events | sed 's/^/#   /'
    return 1
  fi
  # The event monitor does see hot-plugs: a switch shows.
  switch_to "$B"
  wait_until 10 "libvirt's device-removed event for the keyboard in $A" \
    grep -q "event 'device-removed' for domain '$A': $KBD" "$tmp/events.txt"
  expect_placement "$B" "$A"
}

scenario_screenshot() {
  "$PY" - "$addr" "$A" <<'EOF'
import struct
import sys

from gi.repository import Gio, GLib

addr, name = sys.argv[1], sys.argv[2]
bus = Gio.DBusConnection.new_for_address_sync(
    addr,
    Gio.DBusConnectionFlags.AUTHENTICATION_CLIENT | Gio.DBusConnectionFlags.MESSAGE_BUS_CONNECTION,
    None, None)


def screenshot(options):
    reply = bus.call_sync("org.dhf.Framework1", "/org/dhf/Framework1",
                          "org.dhf.Framework1.Display", "Screenshot",
                          GLib.Variant("(sa{sv})", (name, options)),
                          GLib.VariantType("(ay)"), Gio.DBusCallFlags.NONE, 30000, None)
    png = bytes(reply.get_child_value(0).get_data_as_bytes().get_data())
    if png[:8] != b"\x89PNG\r\n\x1a\n" or png[12:16] != b"IHDR":
        sys.exit("Screenshot: not a PNG image: %r" % png[:16])
    width, height = struct.unpack(">II", png[16:24])
    if width == 0 or height == 0:
        sys.exit("Screenshot: a PNG of %ux%u" % (width, height))
    return len(png), width, height


size, width, height = screenshot({})
print("# Screenshot of %s: a PNG of %u bytes, %ux%u" % (name, size, width, height))
size, w, h = screenshot({"max-width": GLib.Variant("u", 64), "max-height": GLib.Variant("u", 64)})
print("# Screenshot with max 64x64: a PNG of %u bytes, %ux%u" % (size, w, h))
if w > 64 or h > 64 or max(w, h) < 32:
    sys.exit("a thumbnail of %ux%u does not fit 64x64 as it should" % (w, h))
EOF
}

scenario_open_display() {
  "$PY" - "$addr" "$A" "${PREFIX}nonexistent" <<'EOF'
import os
import select
import sys

from gi.repository import Gio, GLib

addr, name, missing = sys.argv[1:4]
bus = Gio.DBusConnection.new_for_address_sync(
    addr,
    Gio.DBusConnectionFlags.AUTHENTICATION_CLIENT | Gio.DBusConnectionFlags.MESSAGE_BUS_CONNECTION,
    None, None)


def open_display(appliance):
    return bus.call_with_unix_fd_list_sync(
        "org.dhf.Framework1", "/org/dhf/Framework1", "org.dhf.Framework1.Display", "OpenDisplay",
        GLib.Variant("(s)", (appliance,)), GLib.VariantType("(h)"), Gio.DBusCallFlags.NONE,
        30000, None, None)


reply, fds = open_display(name)
fd = fds.get(reply.get_child_value(0).get_handle())
banner = b""
while len(banner) < 12:
    ready, _, _ = select.select([fd], [], [], 10)
    if not ready:
        sys.exit("OpenDisplay: no RFB banner within 10 s (got %r)" % banner)
    chunk = os.read(fd, 12 - len(banner))
    if not chunk:
        sys.exit("OpenDisplay: the connection closed after %r" % banner)
    banner += chunk
os.close(fd)
if not banner.startswith(b"RFB "):
    sys.exit("OpenDisplay: %r is not an RFB banner" % banner)
print("# OpenDisplay(%s): fd %d says %r" % (name, fd, banner))
try:
    open_display(missing)
    sys.exit("OpenDisplay of a domain that does not exist succeeded")
except GLib.Error as e:
    remote = Gio.DBusError.get_remote_error(e)
    print("# OpenDisplay(nonexistent): %s: %s" % (remote, e.message))
    if remote != "org.dhf.Framework1.Error.NotFound":
        sys.exit("expected org.dhf.Framework1.Error.NotFound")
EOF
}

# Needs dhfd_status: the main shell stops dhfd just before.
scenario_dhfd_exit() {
  expect_eq "dhfd exit status after SIGTERM" "$dhfd_status" 0
  if grep -E 'CRITICAL|assertion' "$tmp/dhfd.log" | sed 's/^/# /' | grep .; then
    echo "# dhfd logged criticals"
    return 1
  fi
  # dhfd leaves the devices where they are when it stops.
  expect_eq "keyboard in $B after dhfd stopped" \
    "$(vsh dumpxml "$B" >"$tmp/b.xml" && dhf_aliases "$tmp/b.xml" | tr '\n' ' ')" "$KBD $TAB "
}

# --- setup and cleanup ------------------------------------------------------

# Called by cleanup (tests/qemu/qemu-lib.sh) before it stops dhfd.
stop_watchers() {
  stop_event_monitor
}

require_root_and virsh dbus-daemon cmp "$PY"
"$PY" -c 'from gi.repository import Gio' 2>/dev/null || bail "$PY cannot import gi (python3-gi)"

start_libvirtd
make_tmp dhf-devices-test
start_bus

# Only this test's policy: the inputs follow the focus, the mouse is
# pinned to A (that rule comes first: the first match wins).
mkdir "$tmp/policy.d"
cat >"$tmp/policy.d/50-devices-test.policy" <<EOF
switch              @dom0 @role:environment allow
device:input:mouse  @dom0 $A                allow mode=pinned
device:input:*      @dom0 @role:environment allow mode=follow-focus
EOF
cat >"$tmp/dhfd.conf" <<EOF
[Hypervisor]
DomainType=qemu
[Appliances]
StorageDirectory=$tmp/images
ShutdownTimeout=3
[Policy]
Directories=$tmp/policy.d
LastGood=$tmp/policy.last-good
[Devices]
EmulatedInput=keyboard;tablet;mouse
StateFile=$tmp/devices.json
[Display]
Fallback=dom0
EOF
start_dhfd
echo "# dhfd connected to $URI"

echo "1..$PLAN"
run_scenario "three environments installed and running; the policy-pinned mouse in A, the inputs in dom0 (XML)" scenario_setup
run_scenario "switch A-B-A-B-A-B: keyboard and tablet follow the focus, in exactly one domain, live and persistent" scenario_switch_devices
run_scenario "switches set cpu_shares: 1024 for the focused domain, 256 for the others" scenario_switch_weights
run_scenario "a switch to a domain without USB fails clearly; focus, devices (XML) and weights stay" scenario_switch_failure
run_scenario "devices assign pins the tablet to B (XML) across switches; failed and refused assigns change nothing; release" scenario_admin_pin
run_scenario "the pinned mouse stays in A's definition while it is off, is live again after start, never moves" scenario_pinned
run_scenario "destroying the focused domain sends the focus and its inputs to dom0" scenario_focused_destroyed
run_scenario "a switch from dom0 brings the inputs and the weight to A" scenario_switch_from_dom0
echo "# restarting dhfd, watching libvirt's device events"
start_event_monitor
stop_dhfd
start_dhfd
run_scenario "a restarted dhfd keeps the focus and moves nothing (same XML, no hot-plug events)" scenario_dhfd_restart
stop_event_monitor
run_scenario "Display.Screenshot returns a PNG, scaled down on request" scenario_screenshot
run_scenario "Display.OpenDisplay returns a fd that speaks RFB; NotFound for no such domain" scenario_open_display
stop_dhfd
run_scenario "dhfd exits 0 on SIGTERM without criticals and leaves the devices in place" scenario_dhfd_exit

if ((failed != 0)); then
  echo "# $failed of $n failed"
  exit 1
fi
