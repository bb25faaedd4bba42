#!/bin/bash
# Expectations are shell snippets evaluated later, hence single quotes.
# shellcheck disable=SC2016,SC2034
# SPDX-License-Identifier: LGPL-2.1-or-later
#
# dhfctl switch, focus, screenshot and devices against a real dhfd on a
# private dbus-daemon, over libvirt's test driver. Two runs of dhfd: the
# first without emulated input devices (the test driver cannot hot-plug, so
# a switch there moves no device), the second with [Devices]
# EmulatedInput=keyboard;tablet, for the devices commands and for a switch
# that the hypervisor fails. The policy is the test's own, not the vendor
# defaults. TAP output; meson runs it with the DHFD, DHFCTL, DHF_TESTNODE
# and DHF_SOURCE_ROOT variables of tests/meson.build.
set -euo pipefail
shopt -s nullglob
# A umask that lets others read: what dhfctl writes must not rely on it.
umask 022

: "${DHFD:?path to dhfd}" "${DHFCTL:?path to dhfctl}" "${DHF_TESTNODE:?path to dhf-testnode}"
: "${DHF_SOURCE_ROOT:?source tree}"

# shellcheck source=tests/dhfctl/dhfctl-env.sh
. "$DHF_SOURCE_ROOT/tests/dhfctl/dhfctl-env.sh"

# --- checks -----------------------------------------------------------------

# json_error NAME: $tmp/out is dhfctl's JSON error with that D-Bus name.
json_error() {
  json_ok "d[\"error\"][\"name\"] == \"$1\""
}

# json_lines FILE EXPR: every line of FILE is a JSON object (each one
# through python3 -m json.tool) and EXPR (Python, over the list l) holds.
json_lines() {
  local line
  while IFS= read -r line; do
    python3 -m json.tool <<<"$line" >/dev/null || return 1
  done <"$1"
  python3 -c 'import json, sys; l = [json.loads(x) for x in open(sys.argv[1], encoding="utf-8")]; sys.exit(0 if eval(sys.argv[2]) else 1)' \
    "$1" "$2"
}

# focused: what dhfctl focus says now.
focused() {
  env DHF_BUS_ADDRESS="$addr" "$DHFCTL" focus 2>>"$tmp/all-stderr"
}

# after NAME DIRECTION: the environment after (next) or before (prev) NAME
# in the Cycle that dhfctl --json focus reports.
after() {
  env DHF_BUS_ADDRESS="$addr" "$DHFCTL" --json focus 2>>"$tmp/all-stderr" |
    python3 -c 'import json, sys
cycle = json.load(sys.stdin)["cycle"]
i = cycle.index(sys.argv[1])
print(cycle[(i + (1 if sys.argv[2] == "next" else -1)) % len(cycle)])' "$1" "$2"
}

# --- fixtures ---------------------------------------------------------------

# manifest NAME ROLE: an appliance of the test node.
manifest() {
  cat >"$tmp/$1.json" <<EOF
{
  "manifest-version": 1,
  "name": "$1",
  "vendor": "Example",
  "version": "1.0.0",
  "role": "$2",
  "memory": "256MiB",
  "vcpus": 1
}
EOF
}
manifest disp-one environment
manifest disp-two environment
manifest disp-off environment
manifest disp-denied environment
manifest disp-svc service

# The test's own policy: switching to every environment but disp-denied
# (and to the service appliance, so that its refusal is the display's and
# not the policy's), and the emulated input devices following the focus
# into environments only.
mkdir "$tmp/policy.d" "$tmp/storage"
cat >"$tmp/policy.d/20-display.policy" <<'EOF'
switch                @dom0  disp-denied        deny
switch                @dom0  disp-svc           allow
switch                @dom0  @dom0              allow
switch                @dom0  @role:environment  allow
device:input:*        @dom0  @role:environment  allow mode=follow-focus
EOF

# write_config FILE [EXTRA...]: dhfd.conf for one run; EXTRA lines go into
# [Devices].
write_config() {
  local file=$1 state
  state="$tmp/devices-$(basename "$file" .conf).json"
  shift
  cat >"$file" <<EOF
[Appliances]
StorageDirectory=$tmp/storage
ShutdownTimeout=5

[Authorization]
Mode=peer-uid

[Policy]
Directories=$tmp/policy.d
LastGood=$tmp/policy.last-good

[XDM]
VsockPort=0

[Display]
Fallback=dom0

[Devices]
StateFile=$state
EOF
  printf '%s\n' "$@" >>"$file"
}
write_config "$tmp/plain.conf"
write_config "$tmp/input.conf" "EmulatedInput=keyboard;tablet"

# --- without a bus or dhfd --------------------------------------------------

run "$DHFCTL" --help
expect "--help lists switch, focus, screenshot and devices" \
  '[ $rc -eq 0 ] && grep -Eq "^  switch NAME\|dom0\|next\|prev " "$tmp/out" && grep -Eq "^  focus " "$tmp/out" &&
   grep -Eq "^  screenshot NAME FILE " "$tmp/out" && grep -Eq "^  devices \[SUBCOMMAND\] " "$tmp/out"'
run "$DHFCTL" help focus
expect "help focus shows --watch" '[ $rc -eq 0 ] && grep -q -- "--watch" "$tmp/out"'
run "$DHFCTL" help screenshot
expect "help screenshot shows --max-width and --max-height" \
  '[ $rc -eq 0 ] && grep -q -- "--max-width=N" "$tmp/out" && grep -q -- "--max-height=N" "$tmp/out"'
run "$DHFCTL" devices --help
expect "devices --help lists the subcommands" \
  '[ $rc -eq 0 ] && grep -Eq "^  assign ID DOMAIN " "$tmp/out" && grep -Eq "^  watch " "$tmp/out"'

run "$DHFCTL" switch
expect "switch without a target is a usage error" '[ $rc -eq 2 ] && grep -q "missing NAME|dom0|next|prev" "$tmp/err"'
run "$DHFCTL" switch disp-one disp-two
expect "switch with two targets is a usage error" '[ $rc -eq 2 ]'
run "$DHFCTL" switch ""
expect "switch to an empty name is a usage error" '[ $rc -eq 2 ]'
run "$DHFCTL" focus extra
expect "focus takes no argument" '[ $rc -eq 2 ]'
run "$DHFCTL" screenshot disp-one
expect "screenshot without FILE is a usage error" '[ $rc -eq 2 ] && grep -q "missing NAME FILE" "$tmp/err"'
run "$DHFCTL" screenshot disp-one "$tmp/x.png" --max-width 0
expect "screenshot --max-width 0 is a usage error" '[ $rc -eq 2 ] && grep -q -- "--max-width needs a number" "$tmp/err"'
run "$DHFCTL" screenshot disp-one "$tmp/x.png" --max-height wide
expect "screenshot --max-height with a non-number is a usage error" '[ $rc -eq 2 ]'
run "$DHFCTL" --json screenshot disp-one -
expect "--json screenshot to standard output is a usage error, reported as JSON" \
  '[ $rc -eq 2 ] && json_error org.dhf.Framework1.Error.InvalidArgs'
run "$DHFCTL" screenshot disp-one ""
expect "screenshot to an empty file name is a usage error" '[ $rc -eq 2 ]'
run "$DHFCTL" devices frobnicate
expect "devices: an unknown subcommand is a usage error" '[ $rc -eq 2 ] && grep -q "unknown subcommand .frobnicate." "$tmp/err"'
run "$DHFCTL" devices assign input-keyboard
expect "devices assign without DOMAIN is a usage error" '[ $rc -eq 2 ] && grep -q "missing ID DOMAIN" "$tmp/err"'
run "$DHFCTL" devices show ""
expect "devices show of an empty id is a usage error" '[ $rc -eq 2 ]'
run "$DHFCTL" devices release a b
expect "devices release with two ids is a usage error" '[ $rc -eq 2 ]'

run "$DHFCTL" --address "unix:path=$tmp/no-such-socket" switch disp-one
expect "no bus: switch exits 3" '[ $rc -eq 3 ] && grep -q "^dhfctl: cannot connect" "$tmp/err"'
run "$DHFCTL" --address "unix:path=$tmp/no-such-socket" --json devices
expect "no bus: devices exits 3, the error as JSON" \
  '[ $rc -eq 3 ] && json_ok "d[\"error\"][\"name\"].startswith(\"org.freedesktop.DBus.Error.\")"'

# --- a private bus, without dhfd yet ----------------------------------------

start_bus

ctl focus
expect "dhfd not running: focus exits 3" '[ $rc -eq 3 ] && grep -q "dhfd is not running" "$tmp/err"'
ctl focus --watch
expect "dhfd not running: focus --watch exits 3 at once" '[ $rc -eq 3 ]'
ctl switch next
expect "dhfd not running: switch exits 3" '[ $rc -eq 3 ]'
ctl devices
expect "dhfd not running: devices exits 3" '[ $rc -eq 3 ] && grep -q "dhfd is not running" "$tmp/err"'

make_node "$tmp/disp-one.json" "$tmp/disp-two.json" "$tmp/disp-off.json" "$tmp/disp-denied.json" \
  "$tmp/disp-svc.json"

# --- focus and switching (no emulated input) --------------------------------

start_dhfd "$tmp/plain.conf"

ctl focus
expect "focus: dom0 at first" '[ $rc -eq 0 ] && [ "$(cat "$tmp/out")" = dom0 ]'
ctl --json focus
expect "--json focus: focused, history and cycle (nothing runs: empty)" \
  '[ $rc -eq 0 ] && json_ok "d[\"focused\"] == \"dom0\" and isinstance(d[\"history\"], list) and d[\"cycle\"] == []"'

for name in disp-one disp-two disp-svc; do
  ctl start "$name"
done
expect "the environments and the service appliance run" '[ $rc -eq 0 ]'
wait_until "disp-one and disp-two in the cycle" \
  'env DHF_BUS_ADDRESS="$addr" "$DHFCTL" --json focus 2>/dev/null | python3 -c "import json, sys; sys.exit(0 if sorted(json.load(sys.stdin)[\"cycle\"]) == [\"disp-one\", \"disp-two\"] else 1)"' || true
ctl --json focus
expect "--json focus: the cycle is the running environments (no service, no dom0)" \
  '[ $rc -eq 0 ] && json_ok "sorted(d[\"cycle\"]) == [\"disp-one\", \"disp-two\"]"'

# Two watchers, one per output format; each prints the focus first, so
# that once a line is there the watcher is subscribed.
env DHF_BUS_ADDRESS="$addr" "$DHFCTL" --json focus --watch >"$tmp/watch.json" 2>"$tmp/watch-json.err" &
json_watch=$!
bg_pids+=("$json_watch")
env DHF_BUS_ADDRESS="$addr" "$DHFCTL" focus --watch >"$tmp/watch.txt" 2>"$tmp/watch-txt.err" &
text_watch=$!
bg_pids+=("$text_watch")
wait_until "the watchers' first lines" '[ -s "$tmp/watch.json" ] && [ -s "$tmp/watch.txt" ]' || true
expect "focus --watch prints the focus first" \
  'json_lines "$tmp/watch.json" "l == [{\"focused\": \"dom0\", \"previous\": l[0][\"previous\"]}]" &&
   head -n 1 "$tmp/watch.txt" | grep -Eq "^dom0( \(was .*\))?$"'

# The focus each successful switch leads to, in order: the watchers must
# show exactly these.
switches=()

ctl switch disp-one
expect "switch NAME prints the focused name" '[ $rc -eq 0 ] && [ "$(cat "$tmp/out")" = disp-one ]'
switches+=(disp-one)
expect "focus follows" '[ "$(focused)" = disp-one ]'
ctl --json focus
expect "--json focus: dom0 is in the history now" '[ $rc -eq 0 ] && json_ok "d[\"focused\"] == \"disp-one\" and d[\"history\"][0] == \"dom0\""'

want=$(after disp-one next)
ctl switch next
expect "switch next: the environment after the focused one in the cycle" \
  '[ $rc -eq 0 ] && [ -n "$want" ] && [ "$(cat "$tmp/out")" = "$want" ] && [ "$(focused)" = "$want" ]'
switches+=("$want")

current=$want
want=$(after "$current" next)
ctl switch next
expect "switch next again wraps around the cycle" \
  '[ $rc -eq 0 ] && [ "$(cat "$tmp/out")" = "$want" ] && [ "$want" = disp-one ]'
switches+=("$want")

want=$(after disp-one prev)
ctl switch prev
expect "switch prev: the environment before the focused one" \
  '[ $rc -eq 0 ] && [ "$(cat "$tmp/out")" = "$want" ] && [ "$(focused)" = "$want" ]'
switches+=("$want")
current=$want

ctl switch dom0
expect "switch dom0" '[ $rc -eq 0 ] && [ "$(cat "$tmp/out")" = dom0 ] && [ "$(focused)" = dom0 ]'
switches+=(dom0)

ctl --json switch "$current"
expect "--json switch: {\"focused\": NAME}" '[ $rc -eq 0 ] && json_ok "d == {\"focused\": \"$current\"}"'
switches+=("$current")

# --- refused switches: nothing moves ----------------------------------------

ctl switch no-such-appliance
expect "switch to an unknown appliance exits 4" \
  '[ $rc -eq 4 ] && grep -q "^dhfctl: cannot switch to .no-such-appliance.: " "$tmp/err" && ! grep -q "GDBus.Error" "$tmp/err"'
ctl --json switch no-such-appliance
expect "--json: ... NotFound" '[ $rc -eq 4 ] && json_error org.dhf.Framework1.Error.NotFound'

ctl switch disp-off
expect "switch to a shut-off appliance exits 1" '[ $rc -eq 1 ] && grep -q "^dhfctl: cannot switch to .disp-off.: " "$tmp/err"'
ctl --json switch disp-off
expect "--json: ... InvalidState" '[ $rc -eq 1 ] && json_error org.dhf.Framework1.Error.InvalidState'

ctl switch disp-svc
expect "switch to a service appliance exits 1" '[ $rc -eq 1 ] && grep -q "^dhfctl: cannot switch to .disp-svc.: " "$tmp/err"'
ctl --json switch disp-svc
expect "--json: ... InvalidArgs (not an environment)" '[ $rc -eq 1 ] && json_error org.dhf.Framework1.Error.InvalidArgs'

ctl start disp-denied
ctl switch disp-denied
expect "switch denied by the policy exits 5" '[ $rc -eq 5 ] && grep -q "^dhfctl: cannot switch to .disp-denied.: " "$tmp/err"'
ctl --json switch disp-denied
expect "--json: ... NotAuthorized" '[ $rc -eq 5 ] && json_error org.dhf.Framework1.Error.NotAuthorized'
ctl stop disp-denied

expect "no refused switch moved the focus" '[ "$(focused)" = "$current" ]'

# --- the watchers -----------------------------------------------------------

# The focused appliance stops: dhfd falls back to dom0 ([Display] Fallback).
ctl stop "$current"
expect "stopping the focused appliance" '[ $rc -eq 0 ]'
wait_until "the fallback to dom0" '[ "$(focused)" = dom0 ]' || true
expect "the focus falls back to dom0" '[ "$(focused)" = dom0 ]'
switches+=(dom0)

want_json=$(printf '%s\n' "${switches[@]}" | python3 -c 'import json, sys; print(json.dumps(sys.stdin.read().split()))')
wait_until "every change at the watchers" \
  '[ "$(wc -l <"$tmp/watch.json")" -gt "${#switches[@]}" ] && [ "$(wc -l <"$tmp/watch.txt")" -gt "${#switches[@]}" ]' || true
expect "focus --watch --json: one object per change, in order, each with the one before" \
  'json_lines "$tmp/watch.json" "[x[\"focused\"] for x in l[1:]] == $want_json and all(l[i][\"previous\"] == l[i - 1][\"focused\"] for i in range(1, len(l)))"'
expect "focus --watch: \"NAME (was PREVIOUS)\" lines" \
  '[ "$(tail -n +2 "$tmp/watch.txt" | sed "s/ (was .*)$//")" = "$(printf "%s\n" "${switches[@]}")" ] &&
   sed -n 2p "$tmp/watch.txt" | grep -qx "disp-one (was dom0)"'

kill -INT "$text_watch"
rc=0
wait "$text_watch" || rc=$?
expect "focus --watch ends cleanly on SIGINT" '[ $rc -eq 0 ]'
cat "$tmp/watch-txt.err" >>"$tmp/all-stderr"

# --- screenshots ------------------------------------------------------------

ctl start disp-one
ctl screenshot no-such-appliance "$tmp/none.png"
expect "screenshot of an unknown appliance exits 4, writes nothing" '[ $rc -eq 4 ] && [ ! -e "$tmp/none.png" ]'
ctl screenshot disp-off "$tmp/off.png"
expect "screenshot of a shut-off appliance exits 1, writes nothing" \
  '[ $rc -eq 1 ] && grep -q "^dhfctl: cannot take a screenshot of .disp-off.: " "$tmp/err" && [ ! -e "$tmp/off.png" ]'

# libvirt's test driver sends a fixed PNG: a real picture to check. The
# file it replaces is world-readable, and so is the umask (022, above):
# the picture is not (a screen may show anything).
echo "old contents" >"$tmp/shot.png"
chmod 0644 "$tmp/shot.png"
ctl screenshot disp-one "$tmp/shot.png"
cp "$tmp/err" "$tmp/shot.err"
if [ $rc -eq 0 ]; then
  expect "screenshot writes a PNG and says so" \
    'grep -Eqx "Wrote $tmp/shot.png \([0-9]+x[0-9]+ PNG, [0-9]+ bytes\)" "$tmp/out" &&
     [ "$(head -c 8 "$tmp/shot.png" | od -An -tx1 | tr -d " \n")" = 89504e470d0a1a0a ]'
  expect "screenshot leaves no temporary file behind" '[ "$(ls "$tmp" | grep -c "^shot\.png.")" -eq 0 ]'
  expect "screenshot replaces a 0644 file by one of mode 0600, whatever the umask" \
    '[ "$(stat -c %a "$tmp/shot.png")" = 600 ]'
  run env DHF_BUS_ADDRESS="$addr" "$DHFCTL" screenshot disp-one -
  cp "$tmp/out" "$tmp/stdout.png"
  expect "screenshot to - writes the same image to standard output" '[ $rc -eq 0 ] && cmp -s "$tmp/stdout.png" "$tmp/shot.png"'
  ctl --json screenshot disp-one "$tmp/thumb.png" --max-width 64 --max-height 64
  expect "--json screenshot --max-width/--max-height: a thumbnail that fits" \
    '[ $rc -eq 0 ] && json_ok "d[\"appliance\"] == \"disp-one\" and 0 < d[\"width\"] <= 64 and 0 < d[\"height\"] <= 64 and d[\"bytes\"] == $(stat -c %s "$tmp/thumb.png")"'
  expect "... a new file is 0600 too" '[ "$(stat -c %a "$tmp/thumb.png")" = 600 ]'
else
  expect "screenshot on the test driver: dhfd's error, exit 1, the old file kept" \
    '[ $rc -eq 1 ] && grep -q "^dhfctl: cannot take a screenshot of .disp-one.: " "$tmp/shot.err" &&
     [ "$(cat "$tmp/shot.png")" = "old contents" ]'
fi
ctl screenshot disp-one "$tmp/no-such-dir/shot.png"
expect "screenshot into a missing directory exits 1" \
  '[ $rc -eq 1 ] && grep -Eq "^dhfctl: (cannot write $tmp/no-such-dir/shot.png|cannot take a screenshot)" "$tmp/err"'

ctl devices
expect "devices without EmulatedInput: no input device" \
  '[ $rc -eq 0 ] && head -n 1 "$tmp/out" | grep -Eq "^ID +KIND +OWNER +MODE +HOLDER +DESCRIPTION$" && ! grep -q "^input-" "$tmp/out"'

stop_dhfd
wait_name_gone
rc=0
wait "$json_watch" || rc=$?
expect "focus --watch exits 3 when dhfd goes away" '[ $rc -eq 3 ] && grep -q "^dhfctl: lost dhfd while watching the focus" "$tmp/watch-json.err"'
expect "... its --json error is one more line: Disconnected" \
  'json_lines "$tmp/watch.json" "l[-1][\"error\"][\"name\"] == \"org.dhf.Framework1.Error.Disconnected\" and all(\"focused\" in x for x in l[:-1])"'
bg_pids=()
cat "$tmp/watch-json.err" >>"$tmp/all-stderr"

# --- devices, with emulated input (and a switch the test driver fails) ------

start_dhfd "$tmp/input.conf"

ctl devices
cp "$tmp/out" "$tmp/devices"
expect "devices lists the emulated keyboard and tablet, in dom0" \
  '[ $rc -eq 0 ] && grep -Eq "^input-keyboard +input +dom0 +follow-focus +- +" "$tmp/devices" &&
   grep -Eq "^input-tablet +input +dom0 +follow-focus +- +" "$tmp/devices"'
expect "devices: header and aligned columns" \
  'head -n 1 "$tmp/devices" | grep -Eq "^ID +KIND +OWNER +MODE +HOLDER +DESCRIPTION$" && table_aligned "$tmp/devices" 2>>"$tmp/err"'
ctl devices list
expect "devices list is devices" '[ $rc -eq 0 ] && cmp -s "$tmp/out" "$tmp/devices"'

ctl --json devices
expect "--json devices: the List dictionaries, keys in snake_case" \
  '[ $rc -eq 0 ] && json_ok "any(x[\"id\"] == \"input-keyboard\" and x[\"kind\"] == \"input\" and x[\"input_type\"] == \"keyboard\" and x[\"present\"] is True and x[\"owner\"] == \"dom0\" and x[\"problem\"] == \"\" for x in d) and [x[\"id\"] for x in d] == sorted(x[\"id\"] for x in d)"'
ctl devices --json
expect "devices --json lists too" '[ $rc -eq 0 ] && json_ok "isinstance(d, list)"'

ctl devices show input-keyboard
cp "$tmp/out" "$tmp/show"
expect "devices show: id, kind, owner, mode and input type" \
  '[ $rc -eq 0 ] && grep -Eq "^ID: +input-keyboard$" "$tmp/show" && grep -Eq "^Kind: +input$" "$tmp/show" &&
   grep -Eq "^Owner: +dom0$" "$tmp/show" && grep -Eq "^Mode: +follow-focus$" "$tmp/show" &&
   grep -Eq "^Input type: +keyboard$" "$tmp/show" && grep -Eq "^Present: +yes$" "$tmp/show"'
expect "devices show aligns its values" 'fields_aligned "$tmp/show" 2>>"$tmp/err"'
ctl --json devices show input-tablet
expect "--json devices show: one dictionary" \
  '[ $rc -eq 0 ] && json_ok "d[\"id\"] == \"input-tablet\" and d[\"input_type\"] == \"tablet\" and d[\"holder\"] == \"\""'
ctl devices show no-such-device
expect "devices show of an unknown id exits 4" '[ $rc -eq 4 ] && grep -q "no device with the id .no-such-device." "$tmp/err"'

env DHF_BUS_ADDRESS="$addr" "$DHFCTL" --json devices watch >"$tmp/devwatch.json" 2>"$tmp/devwatch.err" &
dev_watch=$!
bg_pids+=("$dev_watch")
env DHF_BUS_ADDRESS="$addr" "$DHFCTL" devices watch >"$tmp/devwatch.txt" 2>"$tmp/devwatch-txt.err" &
dev_text_watch=$!
bg_pids+=("$dev_text_watch")
env DHF_BUS_ADDRESS="$addr" "$DHFCTL" --json focus --watch >"$tmp/watch2.json" 2>"$tmp/watch2.err" &
focus_watch=$!
bg_pids+=("$focus_watch")
wait_until "devices watch's first lines" \
  'grep -q "\"input-tablet\"" "$tmp/devwatch.json" && grep -q "^input-tablet: " "$tmp/devwatch.txt"' || true
expect "devices watch --json prints every device first, one object per line" \
  'json_lines "$tmp/devwatch.json" "{\"input-keyboard\", \"input-tablet\"} <= {x[\"id\"] for x in l}"'
expect "devices watch prints \"ID: owner OWNER, mode MODE, holder HOLDER\" lines" \
  'grep -qx "input-keyboard: owner dom0, mode follow-focus, holder -" "$tmp/devwatch.txt"'

for name in disp-one disp-two disp-svc; do
  ctl start "$name"
done

ctl devices assign no-such-device disp-one
expect "devices assign of an unknown device exits 4" '[ $rc -eq 4 ] && grep -q "^dhfctl: cannot assign no-such-device to .disp-one.: " "$tmp/err"'
ctl devices assign input-keyboard no-such-appliance
expect "devices assign to an unknown appliance exits 4" '[ $rc -eq 4 ]'
ctl devices assign input-keyboard disp-svc
expect "devices assign the policy denies exits 5" '[ $rc -eq 5 ] && grep -q "^dhfctl: cannot assign input-keyboard to .disp-svc.: " "$tmp/err"'
ctl --json devices assign input-keyboard disp-svc
expect "--json: ... NotAuthorized" '[ $rc -eq 5 ] && json_error org.dhf.Framework1.Error.NotAuthorized'
ctl devices assign input-keyboard disp-one
expect "devices assign on the test driver (no hot-plug) fails with exit 1" \
  '[ $rc -eq 1 ] && grep -q "^dhfctl: cannot assign input-keyboard to .disp-one.: " "$tmp/err"'
ctl devices show input-keyboard
expect "... and the keyboard stays in dom0, unpinned" \
  'grep -Eq "^Owner: +dom0$" "$tmp/out" && grep -Eq "^Holder: +-$" "$tmp/out" && grep -Eq "^Mode: +follow-focus$" "$tmp/out"'
ctl devices release input-keyboard
expect "devices release without a pin exits 4" '[ $rc -eq 4 ] && grep -q "^dhfctl: cannot release input-keyboard: " "$tmp/err"'
ctl --json devices release no-such-device
expect "--json devices release of an unknown device: NotFound" '[ $rc -eq 4 ] && json_error org.dhf.Framework1.Error.NotFound'

# The keyboard and tablet follow the focus: the test driver cannot move
# them, so the switch fails and nothing moves.
ctl switch disp-one
expect "a switch the hypervisor fails exits 1" '[ $rc -eq 1 ] && grep -q "^dhfctl: cannot switch to .disp-one.: " "$tmp/err"'
expect "... the focus stays" '[ "$(focused)" = dom0 ]'
ctl devices
expect "... and the devices stay in dom0" \
  '[ $rc -eq 0 ] && grep -Eq "^input-keyboard +input +dom0 " "$tmp/out" && grep -Eq "^input-tablet +input +dom0 " "$tmp/out"'

kill -INT "$dev_text_watch"
rc=0
wait "$dev_text_watch" || rc=$?
expect "devices watch ends cleanly on SIGINT" '[ $rc -eq 0 ]'
cat "$tmp/devwatch-txt.err" >>"$tmp/all-stderr"
bg_pids=("$dev_watch" "$focus_watch")

# --- dhfd gone --------------------------------------------------------------

stop_dhfd
wait_name_gone
rc=0
wait "$dev_watch" || rc=$?
expect "devices watch exits 3 when dhfd goes away" \
  '[ $rc -eq 3 ] && grep -q "^dhfctl: lost dhfd while watching the devices" "$tmp/devwatch.err"'
expect "devices watch: a device dictionary per line, then the error" \
  'json_lines "$tmp/devwatch.json" "all(\"id\" in x and \"owner\" in x for x in l[:-1]) and l[-1][\"error\"][\"name\"] == \"org.dhf.Framework1.Error.Disconnected\""'
rc=0
wait "$focus_watch" || rc=$?
expect "focus --watch exits 3 when dhfd goes away (second run)" '[ $rc -eq 3 ]'
expect "... having printed only the focus it started with: the failed switch changed nothing" \
  'json_lines "$tmp/watch2.json" "[x.get(\"focused\") for x in l] == [\"dom0\", None]"'
bg_pids=()
cat "$tmp/devwatch.err" "$tmp/watch2.err" >>"$tmp/all-stderr"

ctl devices
expect "devices after dhfd stopped exits 3" '[ $rc -eq 3 ]'
ctl switch dom0
expect "switch after dhfd stopped exits 3" '[ $rc -eq 3 ]'

expect "no GLib warnings or criticals from dhfctl" \
  '! grep -Eq "(CRITICAL|WARNING) \*\*" "$tmp/all-stderr"'

finish
