#!/bin/bash
# SPDX-License-Identifier: LGPL-2.1-or-later
#
# Real guests end to end, against a real libvirtd + QEMU (qemu:///system,
# TCG): three tiny Linux appliances built by tests/vm/build-guest (a Debian
# kernel and a busybox initramfs whose init runs examples/guest's
# dhf-example-guest), installed through dhfd from the manifests of
# tests/vm/appliances and booted once, in parallel, for every scenario:
#
#   desk-a, desk-b  environments on the generic kernel (they see USB)
#   store           a service appliance on the cloud kernel (no USB)
#
# Each guest's agent talks XDM to dhfd over its real virtio-serial channel;
# dom0 drives the agents' org.dhf.example.Guest1 operations with `dhfctl
# xdm call`, and every check reads what the guests themselves saw. TAP
# output, with each scenario's time; meson runs it with the variables of
# tests/vm/meson.build (DHFD, DHFCTL, DHF_SOURCE_ROOT, DHF_EXAMPLE_GUEST).
#
# Needs root. It starts libvirtd with scripts/libvirtd-up and fails, never
# skips, when it cannot run. The first run downloads the kernels into
# build-guest's cache. Everything it makes is named dhftest-PID-* and
# cleaned up on exit: domains, dhfd, its dbus-daemon, temporary files.
set -euo pipefail
shopt -s nullglob

: "${DHFD:?path to dhfd}" "${DHFCTL:?path to dhfctl}" "${DHF_SOURCE_ROOT:?source tree}"
: "${DHF_EXAMPLE_GUEST:?path to dhf-example-guest}"

# shellcheck source=tests/qemu/qemu-lib.sh
source "$DHF_SOURCE_ROOT/tests/qemu/qemu-lib.sh"

readonly A="${PREFIX}desk-a"
readonly B="${PREFIX}desk-b"
readonly S="${PREFIX}store"
readonly GUESTS=("$A" "$B" "$S")
readonly BUILD_GUEST="$DHF_SOURCE_ROOT/tests/vm/build-guest"
readonly APPLIANCES="$DHF_SOURCE_ROOT/tests/vm/appliances"
readonly SERVICE=org.dhf.example.Guest1
readonly STATE_TOPIC=org.dhf.framework.ApplianceState
readonly NOTICE_TOPIC=org.dhf.test.Notice
readonly INPUT_TOPIC=org.dhf.example.guest.Input
readonly POWER_TOPIC=org.dhf.example.guest.Power
# What QEMU's usb-kbd calls itself (HID manufacturer and product).
readonly USB_KEYBOARD='QEMU QEMU USB Keyboard'
# Items B's writer puts into the store while dhfd is killed and restarted.
readonly WRITER_COUNT=1000
readonly PLAN=7
# dhfd's log is long: show only its end when something failed.
readonly DHFD_LOG_TAIL=200

finished=0
timings=()

# --- helpers ----------------------------------------------------------------

# short NAME: NAME without the test's prefix, for messages.
short() {
  echo "${1#"$PREFIX"}"
}

# guest NAME PARAMS: the result of NAME's org.dhf.example.Guest1 called
# from dom0 with PARAMS (a JSON object with "op").
guest() {
  ctl --timeout 30 xdm call "$SERVICE" "$2" --target "$1"
}

# guest_info NAME FIELD: one field of NAME's `info`.
guest_info() {
  guest "$1" '{"op":"info"}' | json 'd[a[0]]' "$2"
}

# from_guest NAME TARGET PARAMS: what NAME's op `call` says when NAME
# itself calls Guest1 on TARGET with PARAMS: {"result": ...} or {"error":
# {"code", "message"}}.
from_guest() {
  guest "$1" "{\"op\":\"call\",\"service\":\"$SERVICE\",\"target\":\"$2\",\"params\":$3,\"timeout_ms\":10000}"
}

# with_session: the domains whose channel connection has a session (dhfd
# answered the guest's HELLO), one per line, as `dhfctl xdm list` says.
with_session() {
  ctl --json xdm list 2>/dev/null | json '"\n".join(sorted({c["domain"] for c in d
      if c.get("transport") == "channel" and "session_started_at" in c}))'
}

# wait_sessions SECONDS WHAT: waits for every guest's session, printing
# when each one came.
wait_sessions() {
  local limit=$1 what=$2 t0 d now
  local -A seen=() has=()
  t0=$(now_ms)
  while ((${#seen[@]} < ${#GUESTS[@]})); do
    has=()
    while read -r d; do
      [[ -n "$d" ]] && has[$d]=1
    done < <(with_session || true)
    now=$(now_ms)
    for d in "${GUESTS[@]}"; do
      if [[ -z "${seen[$d]:-}" && -n "${has[$d]:-}" ]]; then
        seen[$d]=1
        echo "# $(short "$d"): XDM session $((now - t0)) ms after $what"
      fi
    done
    ((${#seen[@]} < ${#GUESTS[@]})) || break
    if ((now - t0 >= limit * 1000)); then
      echo "# timed out after ${limit}s waiting for the XDM sessions (got ${!seen[*]})"
      return 1
    fi
    sleep 0.2
  done
}

# subscribed TOPIC DOMAIN: dhfd lists DOMAIN's subscription to TOPIC.
subscribed() {
  local out
  out=$(ctl --json xdm subscriptions 2>/dev/null) || return 1
  [[ "$(json 'any(s.get("topic") == a[0] and s.get("domain") == a[1] for s in d)' "$1" "$2" <<<"$out")" == true ]]
}

# policy_says SUBJECT SOURCE TARGET ACTION: dhfd's policy in force decides
# ACTION.
policy_says() {
  [[ "$(ctl --json policy test "$1" "$2" "$3" 2>/dev/null | json 'd["action"]' 2>/dev/null)" == "$4" ]]
}

# write_policy FILE TEXT: by rename, as docs/policy.md asks.
write_policy() {
  printf '%s\n' "$2" >"$tmp/policy.d/.new"
  mv "$tmp/policy.d/.new" "$tmp/policy.d/$1"
}

# calls_policy ACTION: the rule for B's calls to the store.
calls_policy() {
  write_policy 40-calls.policy "# B may call the store's agent (scenario 2 turns this to deny and back)
$SERVICE $B $S $1"
}

# start_watch TOPIC FILE: `dhfctl xdm watch TOPIC` in the background, its
# events into FILE (a JSON object a line), its pid in FILE.pid; returns
# once dhfd lists dom0's subscription.
start_watch() {
  ctl xdm watch "$1" >"$2" 2>"$2.err" 7>&- 8>&- </dev/null &
  echo $! >"$2.pid"
  wait_until 20 "dom0's watch of $1" subscribed "$1" dom0
}

# stop_watch FILE: stops the watch start_watch started.
stop_watch() {
  local pid
  [[ -s "$1.pid" ]] || return 0
  pid=$(cat "$1.pid")
  kill "$pid" 2>/dev/null || true
  wait "$pid" 2>/dev/null || true
  rm -f "$1.pid"
}

# watched FILE EXPR [ARG...]: evaluates EXPR over the list ev of the
# events in FILE (see json).
watched() {
  local file=$1
  shift
  "$PY" -c '
import json, sys
a = sys.argv[3:]
ev = [json.loads(line) for line in open(sys.argv[1]) if line.strip()]
v = eval(sys.argv[2])
print(v if isinstance(v, str) else json.dumps(v))' "$file" "$@"
}

# saw FILE EXPR [ARG...]: EXPR over ev is true.
saw() {
  [[ "$(watched "$@" 2>/dev/null)" == true ]]
}

# usb_keyboard NAME: true or false, NAME's kernel lists QEMU's USB
# keyboard as a keyboard (the agent's op `input`).
usb_keyboard() {
  guest "$1" '{"op":"input"}' |
    json 'any(x["name"] == a[0] and x["keyboard"] for x in d["devices"])' "$USB_KEYBOARD"
}

has_usb_keyboard() {
  [[ "$(usb_keyboard "$1" 2>/dev/null)" == true ]]
}

lacks_usb_keyboard() {
  [[ "$(usb_keyboard "$1" 2>/dev/null)" == false ]]
}

# console NAME: the file the guest's serial console is logged to.
console() {
  echo "$tmp/console/$1.log"
}

# timed DESCRIPTION FUNCTION: run_scenario, keeping its time for the
# summary.
timed() {
  local t0
  t0=$(now_ms)
  run_scenario "$1" "$2"
  timings+=("$n:$(($(now_ms) - t0))ms")
}

# store_states: the store's states in the ApplianceState events that A
# received from dom0, repeats folded, separated by spaces.
store_states() {
  guest "$A" "{\"op\":\"events\",\"topic\":\"$STATE_TOPIC\"}" | json '
(lambda states: " ".join(x for i, x in enumerate(states) if i == 0 or states[i - 1] != x))(
    [e["data"]["state"] for e in d["events"]
     if e["source"] == "dom0" and e["data"]["appliance"] == a[0]])' "$S"
}

store_paused_and_resumed() {
  [[ "$(store_states 2>/dev/null)" == "paused running" ]]
}

# notice_arrived NONCE: A received dom0's notice with NONCE.
notice_arrived() {
  [[ "$(guest "$A" "{\"op\":\"events\",\"topic\":\"$NOTICE_TOPIC\"}" 2>/dev/null |
    json 'any(e["source"] == "dom0" and e.get("data") == {"nonce": a[0]} for e in d["events"])' "$1" 2>/dev/null)" == true ]]
}

# writer_started_putting: B's writer has items acked; their number is in
# $tmp/acked-before-kill.
writer_started_putting() {
  local acked
  acked=$(guest "$B" '{"op":"writer-status"}' 2>/dev/null | json 'd["done"]' 2>/dev/null) || return 1
  echo "$acked" >"$tmp/acked-before-kill"
  ((acked > 0))
}

writer_finished() {
  [[ "$(guest "$B" '{"op":"writer-status"}' 2>/dev/null | json 'd["running"]' 2>/dev/null)" == false ]]
}

# name_released: nobody owns org.dhf.Framework1 on the test's bus (the bus
# daemon sees a killed dhfd's connection close a little after it died).
name_released() {
  dbus-send --bus="$addr" --print-reply --dest=org.freedesktop.DBus / \
    org.freedesktop.DBus.NameHasOwner string:org.dhf.Framework1 2>/dev/null | grep -q 'boolean false'
}

# --- scenarios --------------------------------------------------------------
# Each runs in a subshell with errexit: the first failing command or check
# ends it and makes it "not ok". They build on each other, in order.

# Builds both flavours, installs the three guests from the manifests (only
# their names changed), starts them and waits for their XDM sessions.
scenario_boot() {
  local flavour t0 out d kernel want
  for flavour in cloud generic; do
    t0=$(now_ms)
    if ! "$BUILD_GUEST" --agent "$DHF_EXAMPLE_GUEST" --flavour "$flavour" \
      --out "$tmp/guests/$flavour" >"$tmp/build-$flavour.out" 2>"$tmp/build-$flavour.err"; then
      echo "# build-guest --flavour $flavour failed:"
      diag "$tmp/build-$flavour.err"
      return 1
    fi
    out=$(cat "$tmp/build-$flavour.out")
    kernel=$(sed -n 's/^kernel_version=//p' <<<"$out")
    echo "# build-guest $flavour: cached=$(sed -n 's/^cached=//p' <<<"$out")," \
      "kernel $kernel, $(($(now_ms) - t0)) ms"
    [[ -n "$kernel" ]] || {
      echo "# build-guest printed no kernel_version"
      return 1
    }
    expect_eq "build-guest's kernel" "$(sed -n 's/^kernel=//p' <<<"$out")" "$tmp/guests/$flavour/vmlinuz"
    expect_eq "build-guest's initrd" "$(sed -n 's/^initrd=//p' <<<"$out")" "$tmp/guests/$flavour/initrd.img"
    [[ -s "$tmp/guests/$flavour/vmlinuz" && -s "$tmp/guests/$flavour/initrd.img" ]]
    echo "$kernel" >"$tmp/guests/$flavour.kernel"
  done

  # The manifests next to the guests, only their names changed.
  for d in "${GUESTS[@]}"; do
    "$PY" - "$APPLIANCES/$(short "$d").json" "$tmp/guests/$(short "$d").json" "$d" <<'EOF'
import json
import sys

manifest = json.load(open(sys.argv[1]))
manifest["name"] = sys.argv[3]
json.dump(manifest, open(sys.argv[2], "w"), indent=2)
EOF
    expect_eq "install $(short "$d")" \
      "$(ctl --json install "$tmp/guests/$(short "$d").json" | json 'd["name"]')" "$d"
  done
  vsh dumpxml --inactive "$S" >"$tmp/store.xml"
  grep -q "<kernel>$tmp/guests/cloud/vmlinuz</kernel>" "$tmp/store.xml"
  grep -q "<log file='$(console "$S")'" "$tmp/store.xml"

  t0=$(now_ms)
  for d in "${GUESTS[@]}"; do
    expect_eq "start $(short "$d")" "$(ctl --json start "$d" | json 'd["state"]')" running
  done
  echo "# the three started in $(($(now_ms) - t0)) ms"
  wait_sessions 120 "the first start"

  for d in "${GUESTS[@]}"; do
    want=$(cat "$tmp/guests/generic.kernel")
    [[ "$d" == "$S" ]] && want=$(cat "$tmp/guests/cloud.kernel")
    out=$(guest "$d" '{"op":"info"}')
    echo "# $(short "$d") info: ${out//$NL/ }"
    expect_eq "info of $(short "$d"): domain" "$(json 'd["domain"]' <<<"$out")" "$d"
    expect_eq "info of $(short "$d"): kernel" "$(json 'd["kernel"]' <<<"$out")" "$want"
    expect_eq "info of $(short "$d"): sessions >= 1" "$(json 'd["sessions"] >= 1' <<<"$out")" true
  done
}

# B calls the store's agent through dhfd as the policy allows; the policy
# file turns to deny and the same call fails with not-authorized, nothing
# restarted; then back to allow (scenario 5 needs it).
scenario_calls() {
  local nonce out sessions_b sessions_s
  nonce="n$$-$RANDOM"
  sessions_b=$(guest_info "$B" sessions)
  sessions_s=$(guest_info "$S" sessions)
  policy_says "$SERVICE" "$B" "$S" allow

  out=$(from_guest "$B" "$S" "{\"op\":\"echo\",\"data\":{\"nonce\":\"$nonce\"}}")
  echo "# B -> store echo: ${out//$NL/ }"
  expect_eq "echo from B" "$(json 'd["result"]["data"]["nonce"]' <<<"$out")" "$nonce"
  out=$(from_guest "$B" "$S" "{\"op\":\"put\",\"item\":\"from-b-$nonce\"}")
  expect_eq "put from B: stored" "$(json '"stored" in d["result"]' <<<"$out")" true
  expect_eq "the store has B's item" \
    "$(guest "$S" '{"op":"items"}' | json 'a[0] in d["items"]' "from-b-$nonce")" true

  # A has no rule: default deny.
  out=$(from_guest "$A" "$S" '{"op":"echo","data":1}')
  expect_eq "A -> store without a rule" "$(json 'd["error"]["code"]' <<<"$out")" not-authorized

  calls_policy deny
  wait_until 20 "dhfd to reload the policy (deny)" policy_says "$SERVICE" "$B" "$S" deny
  out=$(from_guest "$B" "$S" '{"op":"echo","data":2}')
  echo "# B -> store denied: ${out//$NL/ }"
  expect_eq "B -> store after deny" "$(json 'd["error"]["code"]' <<<"$out")" not-authorized
  expect_eq "B's call has no result" "$(json '"result" in d' <<<"$out")" false

  # Nothing restarted: the same dhfd, the same guest sessions.
  kill -0 "$dhfd_pid"
  expect_eq "B's sessions" "$(guest_info "$B" sessions)" "$sessions_b"
  expect_eq "store's sessions" "$(guest_info "$S" sessions)" "$sessions_s"

  calls_policy allow
  wait_until 20 "dhfd to reload the policy (allow)" policy_says "$SERVICE" "$B" "$S" allow
  out=$(from_guest "$B" "$S" '{"op":"echo","data":3}')
  expect_eq "B -> store allowed again" "$(json 'd["result"]["data"]' <<<"$out")" 3
}

# A subscribes to the framework's appliance states and to a dom0 notice;
# the store pauses and resumes; dom0 publishes. B subscribes too but no rule
# lets the events reach it.
scenario_events() {
  local nonce out states
  nonce="n$$-$RANDOM"
  expect_eq "A subscribes $STATE_TOPIC" \
    "$(guest "$A" "{\"op\":\"subscribe\",\"topic\":\"$STATE_TOPIC\"}" | tr -d ' \n')" '{}'
  expect_eq "A subscribes $NOTICE_TOPIC" \
    "$(guest "$A" "{\"op\":\"subscribe\",\"topic\":\"$NOTICE_TOPIC\"}" | tr -d ' \n')" '{}'
  expect_eq "B subscribes $STATE_TOPIC" \
    "$(guest "$B" "{\"op\":\"subscribe\",\"topic\":\"$STATE_TOPIC\"}" | tr -d ' \n')" '{}'
  subscribed "$STATE_TOPIC" "$A"
  subscribed "$STATE_TOPIC" "$B"

  expect_eq "pause store" "$(ctl --json pause "$S" | json 'd["state"]')" paused
  expect_eq "resume store" "$(ctl --json resume "$S" | json 'd["state"]')" running
  wait_until 20 "A to receive the store's paused and running states" store_paused_and_resumed
  guest "$A" "{\"op\":\"events\",\"topic\":\"$STATE_TOPIC\"}" |
    json '"\n".join(json.dumps(e) for e in d["events"])' | sed 's/^/# A received: /'
  # dhfd queued the events for B before our call, on the same connection.
  out=$(guest "$B" "{\"op\":\"events\",\"topic\":\"$STATE_TOPIC\"}")
  expect_eq "events B received without a rule" "$(json 'd["events"]' <<<"$out")" '[]'

  ctl xdm publish "$NOTICE_TOPIC" "{\"nonce\":\"$nonce\"}"
  wait_until 20 "A to receive dom0's $NOTICE_TOPIC" notice_arrived "$nonce"
  states=$(store_states)
  expect_eq "the store's states A received in the end" "$states" "paused running"
}

# The keyboard follows the focus from A to B: each guest's kernel sees it
# come or go, and says so on the Input topic.
scenario_switch_keyboard() {
  local ev="$tmp/input.jsonl" t0 devpath
  start_watch "$INPUT_TOPIC" "$ev"
  lacks_usb_keyboard "$A"
  lacks_usb_keyboard "$B"

  t0=$(now_ms)
  ctl switch "$A" >/dev/null
  wait_until 60 "A's kernel to list the USB keyboard" has_usb_keyboard "$A"
  echo "# A's kernel has the keyboard $(($(now_ms) - t0)) ms after the switch began"
  wait_until 20 "A's Input add" saw "$ev" \
    'any(e["source"] == a[0] and e["data"]["action"] == "add" and e["data"].get("name") == a[1] for e in ev)' \
    "$A" "$USB_KEYBOARD"
  devpath=$(watched "$ev" \
    '[e["data"]["devpath"] for e in ev if e["source"] == a[0] and e["data"].get("name") == a[1]][-1]' \
    "$A" "$USB_KEYBOARD")
  echo "# A added the keyboard at $devpath"

  t0=$(now_ms)
  ctl switch "$B" >/dev/null
  wait_until 60 "B's kernel to list the USB keyboard" has_usb_keyboard "$B"
  echo "# B's kernel has the keyboard $(($(now_ms) - t0)) ms after the switch began"
  wait_until 20 "A's kernel to lose the USB keyboard" lacks_usb_keyboard "$A"
  wait_until 20 "B's Input add" saw "$ev" \
    'any(e["source"] == a[0] and e["data"]["action"] == "add" and e["data"].get("name") == a[1] for e in ev)' \
    "$B" "$USB_KEYBOARD"
  wait_until 20 "A's Input remove" saw "$ev" \
    'any(e["source"] == a[0] and e["data"]["action"] == "remove" and e["data"]["devpath"] == a[1] for e in ev)' \
    "$A" "$devpath"
  sed 's/^/# dom0 watched: /' "$ev"
  stop_watch "$ev"
}

# dhfd is killed while B's writer puts items into the store, then started
# again: the guests reconnect by themselves and the writer finishes with
# every acknowledged item in the store.
scenario_dhfd_restart() {
  local prefix d t0 before status items
  prefix="w$$"
  for d in "${GUESTS[@]}"; do
    guest_info "$d" sessions >"$tmp/sessions-$(short "$d")"
  done
  expect_eq "writer started" \
    "$(guest "$B" "{\"op\":\"writer\",\"service\":\"$SERVICE\",\"target\":\"$S\",\"count\":$WRITER_COUNT,\"prefix\":\"$prefix\"}" |
      json 'd["started"]')" true
  # Killed as soon as the writer is under way: the sooner, the surer it
  # still runs.
  wait_until 30 "B's writer to put its first items" writer_started_putting
  t0=$(now_ms)
  kill -KILL "$dhfd_pid"
  before=$(cat "$tmp/acked-before-kill")
  wait_until 10 "the killed dhfd to be gone" pid_gone "$dhfd_pid"
  wait_until 10 "the bus to release the killed dhfd's name" name_released
  echo "# killed dhfd with $before of $WRITER_COUNT items acked"
  ((before < WRITER_COUNT)) || {
    echo "# the writer was done before the kill: raise WRITER_COUNT"
    return 1
  }
  # start_dhfd writes the new pid to $tmp/dhfd.pid: the main shell takes
  # this dhfd over after the scenario.
  start_dhfd
  wait_sessions 60 "dhfd was killed"
  echo "# every guest has a new session $(($(now_ms) - t0)) ms after the kill"

  for d in "${GUESTS[@]}"; do
    (($(guest_info "$d" sessions) > $(cat "$tmp/sessions-$(short "$d")"))) || {
      echo "# $(short "$d")'s sessions did not grow"
      return 1
    }
  done

  wait_until 120 "B's writer to finish" writer_finished
  status=$(guest "$B" '{"op":"writer-status"}')
  echo "# writer: $(json '"done %d of %d, %d retries, last error: %s" % (d["done"], d["count"], d["retries"], d.get("last_error"))' <<<"$status")"
  expect_eq "writer done" "$(json 'd["done"]' <<<"$status")" "$WRITER_COUNT"
  expect_eq "writer count" "$(json 'd["count"]' <<<"$status")" "$WRITER_COUNT"
  # A call was in flight when dhfd died: it failed for want of dhfd (or of
  # the store's service, not registered again yet) and was retried.
  expect_eq "writer retried" "$(json 'd["retries"] > 0' <<<"$status")" true
  expect_eq "why the writer retried" \
    "$(json 'd["last_error"].split(":")[0] in ("disconnected", "unavailable", "not-found")' <<<"$status")" true
  expect_eq "acked, in order" \
    "$(json 'd["acked"] == ["%s-%d" % (a[0], i) for i in range(1, int(a[1]) + 1)]' "$prefix" "$WRITER_COUNT" <<<"$status")" true
  # Every acked item is in the store, and nothing else of the writer's.
  items=$(guest "$S" '{"op":"items"}')
  expect_eq "the writer's items in the store" \
    "$(json 'sorted(x for x in d["items"] if x.startswith(a[0] + "-")) == sorted("%s-%d" % (a[0], i) for i in range(1, int(a[1]) + 1))' \
      "$prefix" "$WRITER_COUNT" <<<"$items")" true

  expect_eq "a new call from B" \
    "$(from_guest "$B" "$S" '{"op":"echo","data":"after"}' | json 'd["result"]["data"]')" after
}

# dom0 asks the store to stop (libvirt's graceful shutdown: the ACPI power
# button, as no guest agent runs): the guest's agent reports the button
# and exits 0, its init powers off cleanly.
scenario_power_button() {
  local ev="$tmp/power.jsonl" since out t0
  start_watch "$POWER_TOPIC" "$ev"
  since=$(monitor_lines)
  t0=$(now_ms)
  out=$(ctl --json stop "$S")
  echo "# dhfctl stop took $(($(now_ms) - t0)) ms (ShutdownTimeout=120): ${out//$NL/ }"
  expect_eq "stop: state" "$(json 'd["state"]' <<<"$out")" shutoff
  expect_eq "stop: forced" "$(json 'd["forced"]' <<<"$out")" false
  wait_until 20 "the store's Power event" saw "$ev" \
    'any(e["source"] == a[0] and e.get("data") == {"button": "power"} for e in ev)' "$S"
  sed 's/^/# dom0 watched: /' "$ev"
  wait_until 20 "StateChanged $S shutoff shutdown" saw_state_change "$since" "$S" shutoff shutdown
  state_changes_since "$since" | sed 's/^/# StateChanged: /'
  expect_eq "state" "$(ctl_field "$S" state)" shutoff
  expect_eq "state reason" "$(ctl_field "$S" state_reason)" shutdown
  expect_eq "virsh domstate --reason" "$(vsh domstate --reason "$S")" "shut off (shutdown)"
  wait_until 10 "the clean poweroff line in the store's console log" \
    grep -q '^dhf-guest: clean poweroff' "$(console "$S")"
  grep '^dhf-guest:' "$(console "$S")" | tail -n 4 | sed 's/^/# store console: /'
  stop_watch "$ev"
}

# dhfd stopped on SIGTERM with status 0, and neither of its runs logged a
# critical or a sanitizer report. Needs dhfd_status: the main shell stops
# dhfd just before.
scenario_dhfd_exit() {
  expect_eq "dhfd exit status after SIGTERM" "$dhfd_status" 0
  if grep -E 'CRITICAL|assertion|Sanitizer|runtime error:' "$tmp/dhfd.log" | sed 's/^/# /' | grep .; then
    echo "# dhfd logged criticals or sanitizer reports"
    return 1
  fi
}

# --- setup and cleanup ------------------------------------------------------

# Called by cleanup (tests/qemu/qemu-lib.sh) before it stops dhfd.
stop_watchers() {
  local f d
  if [[ -n "$tmp" ]]; then
    for f in "$tmp"/*.jsonl.pid; do
      stop_watch "${f%.pid}"
    done
  fi
  if ((failed != 0 || !finished)) && [[ -n "$tmp" ]]; then
    for d in "${GUESTS[@]}"; do
      [[ -f "$(console "$d")" ]] || continue
      echo "# $(short "$d")'s console (last 40 lines):"
      tail -n 40 "$(console "$d")" | sed 's/^/#   /'
    done
  fi
}

require_root_and virsh dbus-daemon dbus-monitor dbus-send flock "$PY"
[[ -x "$BUILD_GUEST" ]] || bail "$BUILD_GUEST is missing or not executable"
[[ -x "$DHF_EXAMPLE_GUEST" ]] || bail "$DHF_EXAMPLE_GUEST is missing or not executable"
t_start=$(now_ms)
start_libvirtd

# libvirt's QEMU (user libvirt-qemu) reads the kernels under $tmp.
make_qemu_tmp dhf-guests-test "the kernels"
mkdir -m 0755 "$tmp/guests"

start_bus
start_monitor \
  "type='signal',interface='org.dhf.Framework1.Manager',member='StateChanged'"

# Only this test's policy.
mkdir "$tmp/policy.d"
write_policy 50-guests.policy "# dom0's tools drive the agents of the test guests
$SERVICE @dom0 @any allow
# What the guests publish reaches dom0's watchers
$INPUT_TOPIC @any @dom0 allow
$POWER_TOPIC @any @dom0 allow
# The agent's barrier before it powers off
org.dhf.framework.Whoami @any @dom0 allow
# dom0's events reach A only
$STATE_TOPIC @dom0 $A allow
$NOTICE_TOPIC @dom0 $A allow
# The keyboard follows the focus among the environments
switch @dom0 @role:environment allow
device:input:keyboard @dom0 @role:environment allow mode=follow-focus"
calls_policy allow

# A graceful stop gets 120 s before dhfd forces the guest off: a clean
# shutdown is seen as such.
cat >"$tmp/dhfd.conf" <<EOF
[Hypervisor]
DomainType=qemu
[Appliances]
StorageDirectory=$tmp/images
ShutdownTimeout=120
ConsoleLogDirectory=$tmp/console
[Policy]
Directories=$tmp/policy.d
LastGood=$tmp/policy.last-good
[Devices]
EmulatedInput=keyboard
StateFile=$tmp/devices.json
EOF
start_dhfd
echo "# dhfd connected to $URI"

echo "1..$PLAN"
timed "build both guest flavours, install desk-a, desk-b and store from their manifests, boot them: XDM sessions, info names the domain and kernel" scenario_boot
# Every other scenario needs the three guests.
((failed == 0)) || bail "the guests did not come up (their consoles follow): the other scenarios need them"
timed "B calls the store's Guest1 through dhfd as the policy allows; the policy file turns to deny: not-authorized, nothing restarted" scenario_calls
timed "A receives dhfd's ApplianceState events of the store's pause and resume and dom0's published event; B, without a rule, none" scenario_events
timed "a switch moves the USB keyboard from A to B: B's kernel sees it (Input add), A's loses it (Input remove)" scenario_switch_keyboard
timed "dhfd killed while B's writer puts items in the store: the guests reconnect, the writer finishes, every acked item is stored" scenario_dhfd_restart
# The scenario started a new dhfd (when it got that far): this shell stops
# it in the end.
dhfd_pid=$(cat "$tmp/dhfd.pid")
if pid_gone "$dhfd_pid"; then
  echo "# dhfd is not running: starting it for the scenarios that follow"
  start_dhfd
fi
timed "ACPI power button (dhfctl stop): the store reports it and powers off cleanly, shutoff (shutdown), not forced" scenario_power_button
stop_dhfd
timed "dhfd stops on SIGTERM; neither of its runs logged a critical or a sanitizer report" scenario_dhfd_exit

finished=1
summary="# timings: ${timings[*]}; total $(($(now_ms) - t_start - lock_waited_ms))ms"
((lock_waited_ms == 0)) || summary+=" (not counting ${lock_waited_ms}ms of waiting for the hypervisor lock)"
echo "$summary"
if ((failed != 0)); then
  echo "# $failed of $n failed"
  exit 1
fi
