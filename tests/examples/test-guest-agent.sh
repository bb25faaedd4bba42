#!/bin/bash
# Expectations are shell snippets evaluated later, hence single quotes.
# shellcheck disable=SC2016
# SPDX-License-Identifier: LGPL-2.1-or-later
#
# The example guest appliance program (examples/guest/) through a real
# dhfd, as simulated domains: dhfd on a private dbus-daemon over libvirt's
# test driver, two running domains made from the example's manifests
# (dhf-testnode --channel-dir: each domain's XDM channel is a socket that a
# dhf-example-guest listens on with --address listen:PATH, and dhfd
# connects to it as to the host side of a virtio-serial channel).
#
# Every op of org.dhf.example.Guest1 is driven from dom0 with dhfctl xdm
# call: a call from guest-b to guest-a through dhfd, allowed and then
# denied by a changed policy file; events from dom0 and dhfd's own
# ApplianceState; the writer across a SIGKILL and restart of dhfd; the
# bench; bad params; sizes and encodings meant to hurt, and the byte
# budgets, each followed by a check that the guest still answers. Input
# devices and the power button need a guest kernel: their parsers are
# covered by test-guest-parsers (and tests/fuzz).
#
# TAP output. Variables (tests/examples/meson.build): DHFD, DHFCTL,
# DHF_TESTNODE, DHF_SOURCE_ROOT, DHF_BUILD_ROOT, GUEST_AGENT, DHF_SANITIZE.
set -euo pipefail

: "${DHFD:?path to dhfd}" "${DHFCTL:?path to dhfctl}" "${DHF_TESTNODE:?path to dhf-testnode}"
: "${DHF_SOURCE_ROOT:?source tree}" "${DHF_BUILD_ROOT:?build tree}"
: "${GUEST_AGENT:?path to dhf-example-guest}"

example="$DHF_SOURCE_ROOT/examples/guest"
service=org.dhf.example.Guest1
# shellcheck source=tests/dhfctl/dhfctl-env.sh
. "$DHF_SOURCE_ROOT/tests/dhfctl/dhfctl-env.sh"

# A call that never got an answer would wait for ever: run bounds that.
run_timeout=60

# op NAME JSON: one call of the service on guest NAME, from dom0; the
# result (or the error, with --json) in $tmp/out.
op() {
  ctl --json xdm call "$service" --target "$1" "$2"
}

# op_file NAME FILE: op with the params in FILE (an argument is at most
# 128 KiB).
op_file() {
  ctl --json xdm call "$service" --target "$1" - <"$2"
}

# failed_with ERROR: the last op failed with org.dhf.Framework1.Error.ERROR.
failed_with() {
  [ "$rc" -ne 0 ] && json_ok "d[\"error\"][\"name\"] == \"org.dhf.Framework1.Error.$1\""
}

# invalid_args: the last op failed with invalid-args.
invalid_args() {
  failed_with InvalidArgs
}

# answers NAME: NAME still answers info (after something meant to hurt it).
answers() {
  op "$1" '{"op": "info"}'
  [ $rc -eq 0 ] && json_ok "d[\"domain\"] == \"$1\""
}

# repeat CHAR COUNT: CHAR COUNT times.
repeat() {
  /usr/bin/python3 -c 'import sys; sys.stdout.write(sys.argv[1] * int(sys.argv[2]))' "$1" "$2"
}

# --- built as an ISV builds it ------------------------------------------------

if isv_cc "$tmp/isv-guest" "$example"/*.c; then
  ok "examples/guest/*.c builds with pkg-config dhf-1 json-c alone"
else
  not_ok "examples/guest/*.c builds with pkg-config dhf-1 json-c alone"
  diag "$tmp/cc.err"
fi

# --- addresses that are not ones: bad usage, not an outage ---------------------

long_path="/$(repeat x 120)"
for address in bogus:foo vsock:x "listen:$long_path"; do
  run "$GUEST_AGENT" --address "$address"
  expect "--address ${address:0:20}: exit status 2 at once, with the reason" \
    '[ $rc -eq 2 ] && grep -q "^dhf-example-guest: bad address " "$tmp/err" &&
     grep -q "^dhf-example-guest: exiting with status 2$" "$tmp/err"'
done

# --- the bus, the node, the policy, dhfd ------------------------------------

write_xdm_config "$example/guest.policy"

make_node --running --channel-dir "$tmp/channels" "$example/guest-a.json" "$example/guest-b.json"
start_bus
start_dhfd "$tmp/dhfd.conf"

# --- the two guests -------------------------------------------------------------

declare -A guest_pid
start_guest() {
  local name=$1
  shift
  "$GUEST_AGENT" --address "listen:$tmp/channels/$name.sock" "$@" \
    >"$tmp/$name.out" 2>"$tmp/$name.err" &
  guest_pid[$name]=$!
  bg_pids+=("$!")
}
guest_ready() {
  kill -0 "${guest_pid[$1]}" 2>/dev/null || return 2
  grep -q "^dhf-example-guest: offering $service as $1\$" "$tmp/$1.err"
}

# guest-a also watches for a power button: the host has no /dev/input, so
# this only shows that its absence is no failure.
start_guest guest-a --power-button --verbose
start_guest guest-b
for name in guest-a guest-b; do
  if wait_until "$name's session" "guest_ready $name"; then
    ok "$name got its session from dhfd and offers $service"
  else
    not_ok "$name got its session from dhfd and offers $service"
    bail "no $name" "$tmp/$name.err"
  fi
done
expect "--power-button without /dev/input: said so, and goes on" \
  'grep -q "^dhf-example-guest: power button: .*watching for devices added later" "$tmp/guest-a.err"'

ctl xdm services
expect "dhfctl xdm services lists $service provided by both guests" \
  '[ $rc -eq 0 ] && grep -Eq "^org\.dhf\.example\.Guest1 +guest-a " "$tmp/out" &&
   grep -Eq "^org\.dhf\.example\.Guest1 +guest-b " "$tmp/out"'

# --- info, echo, put, items, input -------------------------------------------

op guest-a '{"op": "info"}'
expect "info: the domain, the kernel, the uptime and one session" \
  '[ $rc -eq 0 ] && json_ok "d[\"domain\"] == \"guest-a\" and d[\"kernel\"] == \"$(uname -r)\" and d[\"sessions\"] == 1
      and isinstance(d[\"uptime_ms\"], int) and 0 < d[\"first_session_uptime_ms\"] <= d[\"uptime_ms\"]"'

op guest-b '{"op": "echo", "data": {"a": [1, "x", null, {"b": true}], "s": "\u00e9\u2603"}}'
expect "echo returns any JSON as it came" \
  '[ $rc -eq 0 ] && json_ok "d == {\"data\": {\"a\": [1, \"x\", None, {\"b\": True}], \"s\": \"\u00e9\u2603\"}}"'

op guest-a '{"op": "put", "item": "one"}'
expect "put stores an item" '[ $rc -eq 0 ] && json_ok "d == {\"stored\": 1}"'
op guest-a '{"op": "put", "item": "two"}'
op guest-a '{"op": "put", "item": "one"}'
expect "put of an item already there does not add it twice" '[ $rc -eq 0 ] && json_ok "d == {\"stored\": 2}"'
op guest-a '{"op": "items"}'
expect "items: a set in insertion order" '[ $rc -eq 0 ] && json_ok "d == {\"items\": [\"one\", \"two\"]}"'
op guest-a '{"op": "items", "offset": 1, "limit": 5}'
expect "items: a slice with offset and limit" '[ $rc -eq 0 ] && json_ok "d == {\"items\": [\"two\"]}"'

# What the guest reads from /proc/bus/input/devices: the names, as the
# file says them (the host's here; none when it has no input support).
names_in_proc() {
  /usr/bin/python3 - <<'EOF'
import json, os
names = []
if os.path.exists("/proc/bus/input/devices"):
    for line in open("/proc/bus/input/devices", encoding="utf-8"):
        if line.startswith('N: Name="'):
            names.append(line.rstrip("\n")[len('N: Name="'):-1])
print(json.dumps(names))
EOF
}
op guest-a '{"op": "input"}'
if [ "$(names_in_proc)" = "[]" ]; then
  # Nothing to compare but the empty list: say so rather than pass as if
  # devices had been read (test-guest-parsers reads recorded lists).
  echo "# this host's /proc/bus/input/devices lists no device: input is only checked to be []"
  expect "input: [] as this host's /proc/bus/input/devices lists no device" \
    '[ $rc -eq 0 ] && json_ok "d == {\"devices\": []}"'
else
  expect "input lists the devices of /proc/bus/input/devices" \
    '[ $rc -eq 0 ] && json_ok "[x[\"name\"] for x in d[\"devices\"]] == $(names_in_proc)
        and all(isinstance(x[\"handlers\"], list) and isinstance(x[\"keyboard\"], bool) for x in d[\"devices\"])"'
fi

# --- calls from guest-b through dhfd -------------------------------------------

op guest-b '{"op": "call", "service": "org.dhf.example.Guest1", "target": "guest-a", "params": {"op": "echo", "data": [1, 2]}}'
expect "call: guest-b calls guest-a through dhfd (the policy allows it)" \
  '[ $rc -eq 0 ] && json_ok "d == {\"result\": {\"data\": [1, 2]}}"'
op guest-b '{"op": "call", "service": "org.dhf.framework.Whoami", "target": "dom0"}'
expect "call: dhfd tells guest-b who it is (org.dhf.framework.Whoami)" \
  '[ $rc -eq 0 ] && json_ok "d[\"result\"][\"domain\"] == \"guest-b\" and d[\"result\"][\"transport\"] == \"channel\""'
op guest-a '{"op": "call", "service": "org.dhf.example.Guest1", "target": "guest-b", "params": {"op": "info"}}'
expect "call: guest-a may not call guest-b (no rule): the failure is the op's data" \
  '[ $rc -eq 0 ] && json_ok "d[\"error\"][\"code\"] == \"not-authorized\" and d[\"error\"][\"message\"] != \"\""'
op guest-b '{"op": "call", "service": "org.dhf.example.Nobody1", "params": {"op": "info"}, "timeout_ms": 5000}'
expect "call: a service nobody offers is not-found" \
  '[ $rc -eq 0 ] && json_ok "d[\"error\"][\"code\"] == \"not-found\""'

# --- events: from dom0, and dhfd's ApplianceState --------------------------------

op guest-b '{"op": "subscribe", "topic": "org.dhf.example.Hello"}'
expect "subscribe" '[ $rc -eq 0 ] && json_ok "d == {}"'
op guest-b '{"op": "subscribe", "topic": "org.dhf.example.Hello"}'
expect "subscribe twice: exists" \
  '[ $rc -ne 0 ] && json_ok "d[\"error\"][\"name\"] == \"org.dhf.Framework1.Error.Exists\""'

ctl xdm publish org.dhf.example.Hello '{"n": 1}'
expect "dhfctl xdm publish from dom0" '[ $rc -eq 0 ]'
hello_seen() {
  op guest-b '{"op": "events", "topic": "org.dhf.example.Hello"}'
  [ $rc -eq 0 ] && json_ok 'd == {"events": [{"topic": "org.dhf.example.Hello", "source": "dom0", "data": {"n": 1}}]}'
}
if wait_until "the event in guest-b" hello_seen; then
  ok "events: guest-b received dom0's event, with its source and data"
else
  not_ok "events: guest-b received dom0's event, with its source and data"
  diag "$tmp/out" "$tmp/err"
fi
op guest-a '{"op": "events"}'
expect "events: guest-a, not subscribed, received nothing" '[ $rc -eq 0 ] && json_ok "d == {\"events\": []}"'

op guest-b '{"op": "subscribe", "topic": "org.dhf.framework.ApplianceState"}'
expect "subscribe to dhfd's org.dhf.framework.ApplianceState" '[ $rc -eq 0 ]'
ctl pause guest-a
expect "dhfctl pause guest-a" '[ $rc -eq 0 ]'
ctl resume guest-a
expect "dhfctl resume guest-a" '[ $rc -eq 0 ]'
states_seen() {
  op guest-b '{"op": "events", "topic": "org.dhf.framework.ApplianceState"}'
  [ $rc -eq 0 ] && json_ok '[e["data"]["state"] for e in d["events"]
      if e["source"] == "dom0" and e["data"]["appliance"] == "guest-a"] == ["paused", "running"]'
}
if wait_until "ApplianceState in guest-b" states_seen; then
  ok "events: guest-b saw guest-a paused, then running, from dom0"
else
  not_ok "events: guest-b saw guest-a paused, then running, from dom0"
  diag "$tmp/out" "$tmp/err"
fi
op guest-b '{"op": "events", "limit": 1}'
expect "events: a slice" '[ $rc -eq 0 ] && json_ok "len(d[\"events\"]) == 1 and d[\"events\"][0][\"topic\"] == \"org.dhf.example.Hello\""'

# --- bench --------------------------------------------------------------------

op guest-b '{"op": "bench", "service": "org.dhf.example.Guest1", "target": "guest-a", "params": {"op": "echo", "data": 1}, "count": 200, "warmup": 10}'
expect "bench: 200 calls from guest-b to guest-a, no errors, ordered percentiles" \
  '[ $rc -eq 0 ] && json_ok "d[\"count\"] == 200 and d[\"errors\"] == 0
      and 0 < d[\"min_us\"] <= d[\"p50_us\"] <= d[\"p99_us\"] <= d[\"max_us\"]"'
op guest-a '{"op": "bench", "service": "org.dhf.example.Guest1", "target": "guest-b", "params": {"op": "info"}, "count": 5, "warmup": 0}'
expect "bench: denied calls are counted as errors, with no times" \
  '[ $rc -eq 0 ] && json_ok "d[\"count\"] == 5 and d[\"errors\"] == 5 and d[\"min_us\"] is None
      and d[\"max_us\"] is None and d[\"last_error\"].startswith(\"not-authorized: \")"'

# A bench whose call hangs (guest-a stopped, a 600 s timeout): when its
# caller gives up, the call in flight is cancelled too, not waited for.
kill -STOP "${guest_pid[guest-a]}"
ctl --json --timeout 1 xdm call "$service" --target guest-b \
  '{"op": "bench", "service": "org.dhf.example.Guest1", "target": "guest-a", "params": {"op": "info"}, "count": 10, "warmup": 0, "timeout_ms": 600000}'
expect "bench to a stopped guest: the caller times out" 'failed_with Timeout'
hung_bench_stopped() {
  grep -q "bench of org.dhf.example.Guest1 stopped after 0 calls: the caller gave up" \
    "$tmp/guest-b.err"
}
if wait_until "the hung bench to stop" hung_bench_stopped; then
  ok "bench: the call in flight ends when the caller gives up"
else
  not_ok "bench: the call in flight ends when the caller gives up"
  diag "$tmp/guest-b.err"
fi
kill -CONT "${guest_pid[guest-a]}"
expect "guest-a answers again after SIGCONT" 'answers guest-a'

# --- the writer across a restart of dhfd ----------------------------------------

count=10000
op guest-b "{\"op\": \"writer\", \"service\": \"$service\", \"target\": \"guest-a\", \"count\": $count, \"prefix\": \"w\"}"
expect "writer: started" '[ $rc -eq 0 ] && json_ok "d == {\"started\": True}"'
writer_progressed() {
  op guest-b '{"op": "writer-status", "limit": 1}'
  [ $rc -eq 0 ] && json_ok 'd["done"] >= 1'
}
wait_until "the writer's first item" writer_progressed || true
# guest-a stops answering, so the writer is certainly in the middle when
# dhfd goes.
kill -STOP "${guest_pid[guest-a]}"
guest_a_stopped=no
if grep -q '^State:[[:space:]]*T' "/proc/${guest_pid[guest-a]}/status"; then
  guest_a_stopped=yes
fi
op guest-b '{"op": "writer-status", "limit": 1}'
expect "writer-status: running, part of the items acked" \
  '[ $rc -eq 0 ] && json_ok "d[\"running\"] is True and 1 <= d[\"done\"] < $count and d[\"count\"] == $count"'
op guest-b "{\"op\": \"writer\", \"service\": \"$service\", \"target\": \"guest-a\", \"count\": 1, \"prefix\": \"x\"}"
expect "writer while one runs: exists" \
  '[ $rc -ne 0 ] && json_ok "d[\"error\"][\"name\"] == \"org.dhf.Framework1.Error.Exists\""'

killed_pid=$dhfd_pid
kill -KILL "$dhfd_pid"
killed_status=0
wait "$dhfd_pid" 2>/dev/null || killed_status=$?
dhfd_pid=
wait_name_gone
start_dhfd "$tmp/dhfd.conf"
kill -CONT "${guest_pid[guest-a]}"
# 137: killed by SIGKILL; a new dhfd of another pid runs.
if [ "$guest_a_stopped" = yes ] && [ "$killed_status" -eq 137 ] &&
  [ "$dhfd_pid" != "$killed_pid" ] && kill -0 "$dhfd_pid"; then
  ok "dhfd killed (SIGKILL) and started again while guest-a was stopped"
else
  not_ok "dhfd killed (SIGKILL) and started again while guest-a was stopped"
  echo "# guest-a stopped: $guest_a_stopped; the old dhfd's status: $killed_status"
fi

writer_finished() {
  op guest-b '{"op": "writer-status"}'
  [ $rc -eq 0 ] && json_ok 'd["running"] is False'
}
if wait_until "the writer to finish" writer_finished; then
  cp "$tmp/out" "$tmp/writer-status.json"
  expect "writer-status: done == count, every item acked in order, retries after the outage" \
    'json_ok "d[\"done\"] == $count and d[\"count\"] == $count and d[\"retries\"] >= 1
        and d[\"acked\"] == [\"w-%d\" % i for i in range(1, $count + 1)] and d[\"last_error\"] != \"\""'
else
  not_ok "writer-status: done == count, every item acked in order, retries after the outage"
  diag "$tmp/out" "$tmp/guest-b.err"
fi
op guest-a '{"op": "items"}'
expect "every acked item is in guest-a's items, once" \
  '[ $rc -eq 0 ] && json_ok "[i for i in d[\"items\"] if i.startswith(\"w-\")]
      == json.load(open(\"$tmp/writer-status.json\"))[\"acked\"]"'
for name in guest-a guest-b; do
  op "$name" '{"op": "info"}'
  expect "$name counts two sessions (before and after dhfd's restart)" \
    '[ $rc -eq 0 ] && json_ok "d[\"sessions\"] == 2 and d[\"domain\"] == \"$name\""'
done
op guest-b '{"op": "events", "topic": "org.dhf.example.Hello"}'
expect "events received before the restart are kept" '[ $rc -eq 0 ] && json_ok "len(d[\"events\"]) == 1"'
ctl xdm publish org.dhf.example.Hello '{"n": 2}'
resubscribed() {
  op guest-b '{"op": "events", "topic": "org.dhf.example.Hello"}'
  [ $rc -eq 0 ] && json_ok '[e["data"]["n"] for e in d["events"]] == [1, 2]'
}
if wait_until "the event after the restart" resubscribed; then
  ok "the subscription came back with the session"
else
  not_ok "the subscription came back with the session"
fi

# --- bad params: invalid-args ------------------------------------------------------

bad_params=(
  '{}'
  '{"op": 5}'
  '{"op": "frobnicate"}'
  '{"op": "echo"}'
  '{"op": "put"}'
  '{"op": "put", "item": 5}'
  '{"op": "put", "item": ""}'
  '{"op": "items", "offset": -1}'
  '{"op": "items", "limit": 0}'
  '{"op": "call"}'
  '{"op": "call", "service": "not a name"}'
  '{"op": "call", "service": "org.dhf.example.Guest1", "target": "no/such"}'
  '{"op": "call", "service": "org.dhf.example.Guest1", "timeout_ms": 0}'
  '{"op": "bench", "service": "org.dhf.example.Guest1", "target": "guest-a"}'
  '{"op": "bench", "service": "org.dhf.example.Guest1", "count": 0}'
  '{"op": "bench", "service": "org.dhf.example.Guest1", "count": 100001}'
  '{"op": "bench", "service": "org.dhf.example.Guest1", "count": 1.5}'
  '{"op": "bench", "service": "org.dhf.example.Guest1", "count": 10, "warmup": -1}'
  '{"op": "writer", "service": "org.dhf.example.Guest1", "count": 10, "prefix": "p"}'
  '{"op": "writer", "service": "org.dhf.example.Guest1", "target": "guest-a", "count": "10", "prefix": "p"}'
  '{"op": "writer", "service": "org.dhf.example.Guest1", "target": "guest-a", "count": 10}'
  '{"op": "subscribe"}'
  '{"op": "subscribe", "topic": "org"}'
  '{"op": "events", "topic": 7}'
  "{\"op\": \"put\", \"item\": \"$(repeat i 1025)\"}"
  '{"op": "put", "item": "a\u0000b"}'
  '{"op": "subscribe", "topic": "org.dhf.example.A\u0000"}'
  "{\"op\": \"writer\", \"service\": \"$service\", \"target\": \"guest-a\", \"count\": 1, \"prefix\": \"$(repeat p 201)\"}"
  '{"op": "writer", "service": "org.dhf.example.Guest1", "target": "guest-a", "count": 1, "prefix": "p\u0000"}'
)
for params in "${bad_params[@]}"; do
  op guest-a "$params"
  expect "invalid-args: ${params:0:100}" 'invalid_args'
done
expect "guest-a answers after the bad params" 'answers guest-a'
ctl --json xdm call "$service+arg" --target guest-a '{"op": "info"}'
expect "invalid-args: a +ARG" 'invalid_args'
ctl --json xdm call "$service" --target guest-a '[1]'
expect "invalid-args: params that are not an object" 'invalid_args'

# --- sizes meant to hurt -----------------------------------------------------------

op guest-a "{\"op\": \"put\", \"item\": \"$(repeat i 1024)\"}"
expect "put: an item of 1024 bytes is taken" '[ $rc -eq 0 ]'

# The largest echo a call can carry (about 1 MiB) comes back whole: an
# answer is never larger than the call that brought its data.
/usr/bin/python3 -c 'import json; print(json.dumps({"op": "echo", "data": "e" * 1048000}))' \
  >"$tmp/echo.json"
op_file guest-a "$tmp/echo.json"
expect "echo of about 1 MiB comes back whole" '[ $rc -eq 0 ] && json_ok "d == {\"data\": \"e\" * 1048000}"'
expect "guest-a answers after the echo of about 1 MiB" 'answers guest-a'

# Lists are refused as soon as they are over one message, and not before:
# guest-a's events are made to fill its answer to the byte.
hello=org.dhf.example.Hello
# hello_data N SIZE: the data of event N, SIZE bytes of filling.
hello_data() {
  printf '{"n": %d, "s": "%s"}' "$1" "$(repeat x "$2")"
}
# hello_arrived NAME N: NAME's events of $hello end with event N.
hello_arrived() {
  op "$1" "{\"op\": \"events\", \"topic\": \"$hello\", \"offset\": $(($2 - 1)), \"limit\": 1}"
  [ $rc -eq 0 ] && json_ok "len(d[\"events\"]) == 1 and d[\"events\"][0][\"data\"][\"n\"] == $2"
}
op guest-a "{\"op\": \"subscribe\", \"topic\": \"$hello\"}"
expect "guest-a subscribes to $hello" '[ $rc -eq 0 ]'
for i in $(seq 10); do
  ctl xdm publish "$hello" "$(hello_data "$i" 100000)"
done
# The eleventh makes {"events": [...]} exactly 1 MiB less the
# {"result":} around it: 1048565 bytes.
fill=$(/usr/bin/python3 - <<'PY'
import json
def entry(n, size):
    return json.dumps({"topic": "org.dhf.example.Hello", "source": "dom0",
                       "data": {"n": n, "s": "x" * size}}, separators=(",", ":"))
used = len('{"events":[') + sum(len(entry(n, 100000)) + 1 for n in range(1, 11)) + len("]}")
print(1048576 - len('{"result":}') - used - len(entry(11, 0)))
PY
)
ctl xdm publish "$hello" "$(hello_data 11 "$fill")"
if wait_until "event 11 in guest-a" "hello_arrived guest-a 11"; then
  op guest-a "{\"op\": \"events\", \"topic\": \"$hello\"}"
  expect "events: an answer of exactly the most one message carries is given" \
    '[ $rc -eq 0 ] && json_ok "len(d[\"events\"]) == 11 and \"dropped\" not in d
        and len(json.dumps(d, separators=(\",\", \":\"), ensure_ascii=False)) == 1048565"'
  op guest-b "{\"op\": \"call\", \"service\": \"$service\", \"target\": \"guest-a\", \"params\": {\"op\": \"events\", \"topic\": \"$hello\"}}"
  expect "call: a result that fits guest-a's answer but not guest-b's is limit-exceeded" \
    'failed_with LimitExceeded && json_ok "\"does not fit in one message of 1 MiB\" in d[\"error\"][\"message\"]"'
  expect "guest-b answers after that" 'answers guest-b'
else
  not_ok "events: an answer of exactly the most one message carries is given"
  not_ok "call: a result that fits guest-a's answer but not guest-b's is limit-exceeded"
  not_ok "guest-b answers after that"
fi
ctl xdm publish "$hello" '{"n": 12}'
wait_until "event 12 in guest-a" "hello_arrived guest-a 12" || true
op guest-a "{\"op\": \"events\", \"topic\": \"$hello\"}"
expect "events: one more is limit-exceeded, saying how many would fit" \
  'failed_with LimitExceeded && json_ok "\"only the first 11 of its 12 entries\" in d[\"error\"][\"message\"]
      and \"offset\" in d[\"error\"][\"message\"]"'

# The events kept have a byte budget (8 MiB) besides their number: 88 more
# of 100 kB each go over it, and the oldest are dropped.
for i in $(seq 13 100); do
  ctl xdm publish "$hello" "$(hello_data "$i" 100000)"
done
# all_events NAME: every event NAME keeps, read in slices, as
# {"events": [...], "dropped": N} in $tmp/out.
all_events() {
  local offset=0
  : >"$tmp/pages"
  while :; do
    op "$1" "{\"op\": \"events\", \"offset\": $offset, \"limit\": 5}"
    [ $rc -eq 0 ] || return 1
    /usr/bin/python3 -c 'import json, sys; print(json.dumps(json.load(open(sys.argv[1]))))' \
      "$tmp/out" >>"$tmp/pages"
    json_ok 'len(d["events"]) == 5' || break
    offset=$((offset + 5))
  done
  /usr/bin/python3 -c '
import json, sys
pages = [json.loads(line) for line in open(sys.argv[1])]
print(json.dumps({"events": [e for p in pages for e in p["events"]], "dropped": pages[-1].get("dropped", 0)}))' \
    "$tmp/pages" >"$tmp/out"
}
all_arrived() {
  all_events guest-a && json_ok 'd["events"][-1]["data"]["n"] == 100'
}
if wait_until "event 100 in guest-a" all_arrived; then
  expect "events: the latest kept within 8 MiB, the oldest dropped and counted" \
    'json_ok "(lambda cost: (lambda kept:
          [e[\"data\"][\"n\"] for e in d[\"events\"]] == list(range(101 - len(kept), 101))
          and d[\"dropped\"] == 100 - len(kept)
          and sum(kept) <= 8 * 1024 * 1024 < sum(kept) + cost(d[\"events\"][0]))(
        [cost(e) for e in d[\"events\"]]))(
      lambda e: len(e[\"topic\"]) + len(e[\"source\"]) + len(json.dumps(e[\"data\"], separators=(\",\", \":\"))) + 128)"'
else
  not_ok "events: the latest kept within 8 MiB, the oldest dropped and counted"
fi
op guest-a '{"op": "events"}'
expect "events: all of them at once is limit-exceeded" 'failed_with LimitExceeded'
expect "guest-a answers after 100 events of 100 kB" 'answers guest-a'

# The items kept have a byte budget (16 MiB, each item counting its
# bytes, its NUL and 48 more): guest-b's writer fills guest-a with items
# of 200 bytes and more until put is refused; the writer goes on retrying.
prefix=$(repeat p 200)
op guest-b "{\"op\": \"writer\", \"service\": \"$service\", \"target\": \"guest-a\", \"count\": 100000, \"prefix\": \"$prefix\"}"
expect "writer of 100000 items of 200 bytes and more: started" '[ $rc -eq 0 ]'
writer_refused() {
  op guest-b '{"op": "writer-status", "limit": 1}'
  [ $rc -eq 0 ] && json_ok 'd.get("last_error", "").startswith("limit-exceeded: ")'
}
if wait_until "guest-a to refuse items" writer_refused 180; then
  cp "$tmp/out" "$tmp/refused.json"
  expect "writer-status: still running, its last error limit-exceeded from guest-a" \
    'json_ok "d[\"running\"] is True and 0 < d[\"done\"] < 100000
        and \"keeps at most 16 MiB of items\" in d[\"last_error\"]"'
  op guest-a '{"op": "put", "item": "one"}'
  expect "put of an item kept already still answers, within the budget" \
    '[ $rc -eq 0 ] && json_ok "(lambda done: d[\"stored\"] == 10003 + done
        and (2 * 4 + sum(len(\"w-%d\" % i) + 1 for i in range(1, 10001)) + 1025
             + sum(201 + len(str(i)) + 1 for i in range(1, done + 1)) + 48 * d[\"stored\"])
            <= 16 * 1024 * 1024)(json.load(open(\"$tmp/refused.json\"))[\"done\"])"'
  op guest-a "{\"op\": \"put\", \"item\": \"$(repeat n 1024)\"}"
  expect "put of a new item over the budget: limit-exceeded" \
    'failed_with LimitExceeded && json_ok "\"keeps at most 16 MiB of items\" in d[\"error\"][\"message\"]"'
else
  not_ok "writer-status: still running, its last error limit-exceeded from guest-a"
  diag "$tmp/guest-a.err"
fi
op guest-a '{"op": "items"}'
expect "items: all of them at once is limit-exceeded" \
  'failed_with LimitExceeded && json_ok "\"offset\" in d[\"error\"][\"message\"]"'
op guest-a '{"op": "items", "offset": 10003, "limit": 2}'
expect "items: a slice of them" \
  '[ $rc -eq 0 ] && json_ok "d == {\"items\": [\"$prefix-1\", \"$prefix-2\"]}"'
op guest-b '{"op": "writer-status"}'
expect "writer-status: all of acked at once is limit-exceeded" 'failed_with LimitExceeded'
op guest-b '{"op": "writer-status", "offset": 2, "limit": 2}'
expect "writer-status: a slice of acked, named again" \
  '[ $rc -eq 0 ] && json_ok "d[\"acked\"] == [\"$prefix-3\", \"$prefix-4\"]"'
expect "guest-a answers with 16 MiB of items" 'answers guest-a'
expect "guest-b answers with its writer retrying" 'answers guest-b'

# --- the policy file changed to deny, nothing restarted ----------------------------

sed 's/^\(org\.dhf\.example\.Guest1  *guest-b  *guest-a  *\)allow$/\1deny/' "$example/guest.policy" \
  >"$tmp/policy.d/.50-guest.new"
grep -q "^org.dhf.example.Guest1 .*guest-b .*guest-a .*deny$" "$tmp/policy.d/.50-guest.new" ||
  bail "could not write the deny policy"
mv "$tmp/policy.d/.50-guest.new" "$tmp/policy.d/50-guest.policy"
denied() {
  ctl policy test "$service" guest-b guest-a
  [ $rc -eq 0 ] && grep -q "^deny" "$tmp/out"
}
if wait_until "dhfd to reload the policy" denied; then
  ok "dhfd reloaded the changed policy file by itself"
else
  not_ok "dhfd reloaded the changed policy file by itself"
fi
op guest-b '{"op": "call", "service": "org.dhf.example.Guest1", "target": "guest-a", "params": {"op": "info"}}'
expect "call: guest-b to guest-a is now not-authorized" \
  '[ $rc -eq 0 ] && json_ok "d[\"error\"][\"code\"] == \"not-authorized\""'

# --- stopping in the middle of things ---------------------------------------------

# A bench whose caller gives up stops; so do a bench and a writer that
# are still at it when the program ends.
ctl --json --timeout 1 xdm call "$service" --target guest-b \
  '{"op": "bench", "service": "org.dhf.framework.Whoami", "target": "dom0", "count": 100000}'
expect "bench: the caller's timeout ends the call" 'failed_with Timeout'
bench_stopped() {
  grep -q "bench of org.dhf.framework.Whoami stopped after [0-9]* calls: the caller gave up" \
    "$tmp/guest-b.err"
}
if wait_until "the bench to stop" bench_stopped; then
  ok "bench: the guest stops the bench when its caller gives up"
else
  not_ok "bench: the guest stops the bench when its caller gives up"
fi
env DHF_BUS_ADDRESS="$addr" "$DHFCTL" xdm call "$service" --target guest-b \
  '{"op": "bench", "service": "org.dhf.framework.Whoami", "target": "dom0", "count": 100000}' \
  >/dev/null 2>&1 &
bg_pids+=("$!")
op guest-a "{\"op\": \"writer\", \"service\": \"$service\", \"target\": \"nobody\", \"count\": 5, \"prefix\": \"n\"}"
expect "writer to a domain that does not exist: started (it retries)" '[ $rc -eq 0 ]'
busy() {
  grep -q "writer: n-1 failed" "$tmp/guest-a.err" &&
    [ "$(grep -c "bench of org.dhf.framework.Whoami on dom0: 100000 calls" "$tmp/guest-b.err")" -eq 2 ]
}
if wait_until "the writer and the bench" busy; then
  ok "guest-a's writer retries, guest-b benches"
else
  not_ok "guest-a's writer retries, guest-b benches"
fi
op guest-b '{"op": "bench", "service": "org.dhf.framework.Whoami", "target": "dom0", "count": 10}'
expect "bench while one runs: exists" \
  'failed_with Exists && json_ok "\"one at a time\" in d[\"error\"][\"message\"]"'

# --- the end -------------------------------------------------------------------------

expect "the guests and dhfd kept running throughout" \
  'kill -0 "${guest_pid[guest-a]}" && kill -0 "${guest_pid[guest-b]}" && kill -0 "$dhfd_pid"'
for name in guest-a guest-b; do
  kill -TERM "${guest_pid[$name]}"
  rc=0
  wait "${guest_pid[$name]}" || rc=$?
  cp "$tmp/$name.out" "$tmp/out"
  cp "$tmp/$name.err" "$tmp/err"
  expect "$name exits 1 on SIGTERM (0 would mean power off), even in the middle of things" \
    '[ $rc -eq 1 ] && grep -q "^dhf-example-guest: exiting with status 1$" "$tmp/err"'
  # A sanitizer's leak report exits 1 too: its text tells it apart.
  expect "$name: no GLib warnings or criticals, no sanitizer reports" \
    '! grep -Eq "(CRITICAL|WARNING) \*\*|Sanitizer|runtime error:" "$tmp/err"'
done
bg_pids=()

finish
