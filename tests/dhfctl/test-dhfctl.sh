#!/bin/bash
# Expectations are shell snippets evaluated later, hence single quotes.
# shellcheck disable=SC2016,SC2034
# SPDX-License-Identifier: LGPL-2.1-or-later
#
# dhfctl against a real dhfd on a private dbus-daemon, over libvirt's test
# driver (domains come up shut off). TAP output; meson runs it with the
# DHFD, DHFCTL, DHF_TESTNODE and DHF_SOURCE_ROOT variables of tests/meson.build.
set -euo pipefail
shopt -s nullglob

: "${DHFD:?path to dhfd}" "${DHFCTL:?path to dhfctl}" "${DHF_TESTNODE:?path to dhf-testnode}"
: "${DHF_SOURCE_ROOT:?source tree}"

# shellcheck source=tests/dhfctl/dhfctl-env.sh
. "$DHF_SOURCE_ROOT/tests/dhfctl/dhfctl-env.sh"

# all_listed FILE NAME...: each NAME is a row of the table in FILE.
all_listed() {
  local file=$1 name
  shift
  for name in "$@"; do
    table_names "$file" | grep -qx -- "$name" || return 1
  done
}

# table_names FILE: the first column of the table, without the header.
table_names() {
  tail -n +2 "$1" | awk '{ print $1 }'
}

# --- fixtures ---------------------------------------------------------------

cat >"$tmp/alpha.json" <<'EOF'
{
  "manifest-version": 1,
  "name": "ctl-alpha",
  "vendor": "Ünïcøde Labs",
  "version": "1.0.0",
  "role": "environment",
  "memory": "512MiB",
  "vcpus": 2
}
EOF

cat >"$tmp/beta.json" <<'EOF'
{
  "manifest-version": 1,
  "name": "ctl-beta",
  "vendor": "Example",
  "version": "1.0.0",
  "role": "service",
  "memory": "256MiB",
  "vcpus": 1
}
EOF
sed 's/"1\.0\.0"/"1.1.0"/' "$tmp/beta.json" >"$tmp/beta-1.1.json"
sed -e 's/ctl-beta/ctl-gamma/' "$tmp/beta.json" >"$tmp/gamma.json"

cat >"$tmp/personal.json" <<'EOF'
{
  "manifest-version": 1,
  "name": "personal",
  "vendor": "Example",
  "version": "1.0",
  "role": "environment",
  "memory": "lots",
  "vcpus": "two"
}
EOF

head -c 300000 /dev/zero | tr '\0' ' ' >"$tmp/huge.json"

mkdir "$tmp/storage"
cat >"$tmp/dhfd.conf" <<EOF
[Appliances]
StorageDirectory=$tmp/storage
ShutdownTimeout=5

[Authorization]
Mode=peer-uid

[Policy]
Directories=$tmp/policy.d;$tmp/vendor.d
LastGood=$tmp/policy.last-good

[XDM]
VsockPort=0

[Devices]
StateFile=$tmp/devices.json
EOF

# The policy: the vendor defaults from the source tree, and one admin file.
mkdir "$tmp/policy.d" "$tmp/vendor.d"
cp "$DHF_SOURCE_ROOT"/policies/policy.d/*.policy "$tmp/vendor.d/"
# Counted, not written down: the vendor set grows with the framework.
vendor_files=("$tmp"/vendor.d/*.policy)
n_vendor=${#vendor_files[@]}
n_files=$((n_vendor + 1))
cat >"$tmp/policy.d/20-corp.policy" <<'EOF'
# corporate environments sync through the VPN gateway
org.dhf.example.Sync1 @tag:corp vpn-gateway allow target=file-sync quota=8
EOF
printf 'org.dhf.example.Sync1 @any nowhere allow quota=0\n' >"$tmp/broken.policy"

examples=("$DHF_SOURCE_ROOT"/examples/appliances/*.json)
example_names=()
for manifest in "${examples[@]}"; do
  example_names+=("$(python3 -c 'import json, sys; print(json.load(open(sys.argv[1]))["name"])' "$manifest")")
done

# --- without a bus or dhfd --------------------------------------------------

run "$DHFCTL" --version
expect "--version prints the version" '[ $rc -eq 0 ] && grep -Eq "^dhfctl [0-9]+\.[0-9]+\.[0-9]+$" "$tmp/out"'

run "$DHFCTL" --help
expect "--help lists the commands" '[ $rc -eq 0 ] && grep -q "install MANIFEST" "$tmp/out"'

run "$DHFCTL" help stop
expect "help stop shows the command's options" '[ $rc -eq 0 ] && grep -q -- "--timeout=SECONDS" "$tmp/out"'

run "$DHFCTL"
expect "no command is a usage error" '[ $rc -eq 2 ] && grep -q "^dhfctl: no command given" "$tmp/err"'

run "$DHFCTL" frobnicate
expect "an unknown command is a usage error that lists the commands" \
  '[ $rc -eq 2 ] && grep -q "unknown command .frobnicate." "$tmp/err" && grep -q "list, show, start" "$tmp/err"'

run "$DHFCTL" show
expect "a missing NAME is a usage error" '[ $rc -eq 2 ] && grep -q "missing NAME" "$tmp/err"'

run "$DHFCTL" list extra
expect "an extra argument is a usage error" '[ $rc -eq 2 ]'

run "$DHFCTL" list --no-such-option
expect "an unknown option is a usage error" '[ $rc -eq 2 ]'

run "$DHFCTL" --timeout 0 list
expect "--timeout 0 is a usage error" '[ $rc -eq 2 ] && grep -q -- "--timeout" "$tmp/err"'

run "$DHFCTL" --system --session list
expect "two bus options are a usage error" '[ $rc -eq 2 ]'

run "$DHFCTL" show ""
expect "an empty name is a usage error" '[ $rc -eq 2 ]'

run "$DHFCTL" --address "unix:path=$tmp/no-such-socket" list
expect "no bus at the address: exit 3" '[ $rc -eq 3 ] && grep -q "^dhfctl: cannot connect" "$tmp/err"'

run env DHF_BUS_ADDRESS="unix:path=$tmp/no-such-socket" "$DHFCTL" --json status
expect "DHF_BUS_ADDRESS is used; --json reports the error on stdout" \
  '[ $rc -eq 3 ] && json_ok "d[\"error\"][\"name\"].startswith(\"org.freedesktop.DBus.Error.\")"'

# --- a private bus, without dhfd yet ----------------------------------------

start_bus

ctl list
expect "dhfd not running: list exits 3" '[ $rc -eq 3 ] && grep -q "dhfd is not running" "$tmp/err"'

ctl start ctl-alpha
expect "dhfd not running: start exits 3" '[ $rc -eq 3 ]'

ctl install "$tmp/beta.json"
expect "dhfd not running: install exits 3" '[ $rc -eq 3 ]'

# --- dhfd on the test driver ------------------------------------------------

# Each domain's XDM channel is $tmp/channels/NAME.sock: a process listening
# there (address listen:PATH) is that domain for dhfd.
mkdir "$tmp/channels"
make_node --channel-dir "$tmp/channels" "${examples[@]}" "$tmp/alpha.json"

start_dhfd "$tmp/dhfd.conf"

ctl list
cp "$tmp/out" "$tmp/list"
expect "list succeeds" '[ $rc -eq 0 ]'
expect "list has a header row" 'head -n 1 "$tmp/list" | grep -Eq "^NAME +ROLE +STATE +VENDOR +VERSION +AUTOSTART$"'
expect "list columns are aligned (UTF-8 vendor included)" 'table_aligned "$tmp/list" 2>>"$tmp/err"'
expect "list is sorted by name" 'table_names "$tmp/list" | LC_ALL=C sort -c'
expect "list shows ctl-alpha shut off with its vendor and version" \
  'grep -Eq "^ctl-alpha +environment +shutoff +Ünïcøde Labs +1\.0\.0 +no$" "$tmp/list"'
if [ ${#example_names[@]} -eq 0 ]; then
  skip "list shows the demo appliances" "no manifests in examples/appliances"
else
  expect "list shows the demo appliances (${example_names[*]})" 'all_listed "$tmp/list" "${example_names[@]}"'
fi

ctl --json list
expect "--json list is a JSON array with every appliance" \
  '[ $rc -eq 0 ] && json_ok "sorted(a[\"name\"] for a in d) == sorted(\"$(table_names "$tmp/list" | tr "\n" " ")\".split())"'
expect "--json list carries every property" \
  'json_ok "all({\"name\", \"object_path\", \"uuid\", \"role\", \"state\", \"state_reason\", \"autostart\", \"managed\", \"vendor\", \"version\", \"memory\", \"vcpus\"} <= set(a) for a in d)"'

ctl list --json
expect "--json works after the command too" '[ $rc -eq 0 ] && json_ok "isinstance(d, list)"'

ctl show ctl-alpha
cp "$tmp/out" "$tmp/show"
expect "show succeeds" '[ $rc -eq 0 ]'
expect "show gives the object path" \
  'grep -Eq "^Object path: +/org/dhf/Framework1/appliance/ctl_2dalpha$" "$tmp/show"'
expect "show gives name, state, vendor, memory and vCPUs" \
  'grep -Eq "^Name: +ctl-alpha$" "$tmp/show" && grep -Eq "^State: +shutoff$" "$tmp/show" &&
   grep -Eq "^Vendor: +Ünïcøde Labs$" "$tmp/show" && grep -Eq "^Memory: +512 MiB \(536870912 bytes\)$" "$tmp/show" &&
   grep -Eq "^VCPUs: +2$" "$tmp/show"'
expect "show aligns its values" 'fields_aligned "$tmp/show" 2>>"$tmp/err"'

ctl --json show ctl-alpha
expect "--json show" \
  '[ $rc -eq 0 ] && json_ok "d[\"name\"] == \"ctl-alpha\" and d[\"memory\"] == 536870912 and d[\"vcpus\"] == 2 and d[\"managed\"] is True"'

ctl show no-such-appliance
expect "show of an unknown appliance exits 4" \
  '[ $rc -eq 4 ] && grep -q "^dhfctl: no appliance named .no-such-appliance.$" "$tmp/err"'

ctl --json show no-such-appliance
expect "--json show of an unknown appliance reports NotFound on stdout" \
  '[ $rc -eq 4 ] && json_ok "d[\"error\"][\"name\"] == \"org.dhf.Framework1.Error.NotFound\""'

ctl start no-such-appliance
expect "start of an unknown appliance exits 4" '[ $rc -eq 4 ]'

ctl start ctl-alpha
expect "start prints the new state" '[ $rc -eq 0 ] && grep -qx "ctl-alpha: running" "$tmp/out"'
ctl show ctl-alpha
expect "started appliance is running" 'grep -Eq "^State: +running$" "$tmp/out"'

ctl start ctl-alpha
expect "starting a running appliance fails with exit 1" \
  '[ $rc -eq 1 ] && grep -q "^dhfctl: cannot start .ctl-alpha.: " "$tmp/err" && ! grep -q "GDBus.Error" "$tmp/err"'
ctl --json start ctl-alpha
expect "... with InvalidState" \
  '[ $rc -eq 1 ] && json_ok "d[\"error\"][\"name\"] == \"org.dhf.Framework1.Error.InvalidState\""'

ctl pause ctl-alpha
expect "pause" '[ $rc -eq 0 ] && grep -qx "ctl-alpha: paused" "$tmp/out"'
ctl show ctl-alpha
expect "paused appliance is paused" 'grep -Eq "^State: +paused$" "$tmp/out"'

ctl resume ctl-alpha
expect "resume" '[ $rc -eq 0 ] && grep -qx "ctl-alpha: running" "$tmp/out"'
ctl show ctl-alpha
expect "resumed appliance is running" 'grep -Eq "^State: +running$" "$tmp/out"'

ctl stop ctl-alpha --timeout 5
expect "stop --timeout" '[ $rc -eq 0 ] && grep -Eqx "ctl-alpha: (shut off|forced off after [0-9]+s)" "$tmp/out"'
ctl show ctl-alpha
expect "stopped appliance is shut off" 'grep -Eq "^State: +shutoff$" "$tmp/out"'

ctl stop ctl-alpha --timeout soon
expect "stop --timeout with a non-number is a usage error" '[ $rc -eq 2 ]'

ctl start ctl-alpha
ctl --json stop ctl-alpha
expect "--json stop" '[ $rc -eq 0 ] && json_ok "d[\"name\"] == \"ctl-alpha\" and d[\"forced\"] in (True, False)"'

# --- install, upgrade, remove -----------------------------------------------

ctl install "$tmp/beta.json"
expect "install a valid manifest" '[ $rc -eq 0 ] && grep -qx "Installed ctl-beta (1.0.0)" "$tmp/out"'
ctl list
expect "installed appliance is listed" 'table_names "$tmp/out" | grep -qx ctl-beta'

ctl install "$tmp/beta.json"
expect "installing the same version again fails with exit 1" '[ $rc -eq 1 ] && grep -q "^dhfctl: cannot install " "$tmp/err"'

ctl install "$tmp/beta-1.1.json"
expect "installing a newer version upgrades" '[ $rc -eq 0 ] && grep -qx "Upgraded ctl-beta to 1.1.0" "$tmp/out"'

# Relative, as users type it: problem lines carry the name as given.
pushd "$tmp" >/dev/null
ctl install personal.json
popd >/dev/null
expect "an invalid manifest fails with exit 1" \
  '[ $rc -eq 1 ] && head -n 1 "$tmp/err" | grep -q "^dhfctl: cannot install personal.json: invalid manifest"'
expect "... and one line per problem, prefixed by the file name" \
  'grep -q "^personal.json: \$\.memory: expected a size like \"512MiB\"$" "$tmp/err" &&
   grep -q "^personal.json: \$\.vcpus: " "$tmp/err" && [ "$(tail -n +2 "$tmp/err" | grep -vc "^personal.json: \$\.")" -eq 0 ]'

ctl --json install "$tmp/personal.json"
expect "--json install of an invalid manifest reports InvalidManifest" \
  '[ $rc -eq 1 ] && json_ok "d[\"error\"][\"name\"] == \"org.dhf.Framework1.Error.InvalidManifest\""'

run env DHF_BUS_ADDRESS="$addr" "$DHFCTL" install - <"$tmp/personal.json"
expect "problems in a manifest on stdin are prefixed <stdin>" \
  '[ $rc -eq 1 ] && grep -q "^<stdin>: \$\.memory: " "$tmp/err"'

run env DHF_BUS_ADDRESS="$addr" "$DHFCTL" --json install - <"$tmp/gamma.json"
expect "--json install from stdin" \
  '[ $rc -eq 0 ] && json_ok "d[\"name\"] == \"ctl-gamma\" and d[\"upgraded\"] is False and d[\"object_path\"].endswith(\"/ctl_2dgamma\")"'

ctl install "$tmp/huge.json"
expect "a manifest over 256 KiB is refused" '[ $rc -eq 1 ] && grep -q "larger than 256 KiB" "$tmp/err"'

ctl install "$tmp/no-such-file.json"
expect "a missing manifest file fails with exit 1" '[ $rc -eq 1 ] && grep -q "No such file" "$tmp/err"'

ctl remove ctl-beta
expect "remove" '[ $rc -eq 0 ] && grep -qx "Removed ctl-beta" "$tmp/out"'
ctl show ctl-beta
expect "removed appliance is gone" '[ $rc -eq 4 ]'
ctl remove ctl-beta
expect "removing it again exits 4" '[ $rc -eq 4 ]'

ctl remove --force ctl-gamma
expect "remove --force" '[ $rc -eq 0 ]'

# --- status -----------------------------------------------------------------

ctl list
n_appliances=$(($(wc -l <"$tmp/out") - 1))

ctl status
cp "$tmp/out" "$tmp/status"
dhfd_version=$("$DHFD" --version | awk '{ print $2 }')
expect "status" '[ $rc -eq 0 ] && fields_aligned "$tmp/status" 2>>"$tmp/err"'
expect "status gives version, hypervisor and connection" \
  'grep -Eq "^Version: +$dhfd_version$" "$tmp/status" && grep -Eq "^Hypervisor: +test://$tmp/node.xml$" "$tmp/status" &&
   grep -Eq "^Hypervisor connected: +yes$" "$tmp/status" && grep -Eq "^Status: +(running|degraded)$" "$tmp/status"'
expect "status counts the appliances by state" \
  'grep -Eq "^Appliances: +$n_appliances \(.*[0-9]+ shutoff.*\)$" "$tmp/status"'

ctl --json status
expect "--json status" \
  '[ $rc -eq 0 ] && json_ok "d[\"hypervisor_connected\"] is True and d[\"appliances\"][\"total\"] == $n_appliances and sum(d[\"appliances\"][\"by_state\"].values()) == $n_appliances and isinstance(d[\"status_reasons\"], list)"'

ctl --address "$addr" list
expect "--address overrides DHF_BUS_ADDRESS" '[ $rc -eq 0 ]'

# --- policy -----------------------------------------------------------------

expect "status shows the policy in force" \
  'grep -Eq "^Policy: +[1-9][0-9]* rules from $n_files files$" "$tmp/status"'
ctl --json status
expect "--json status has the policy" \
  '[ $rc -eq 0 ] && json_ok "d[\"policy\"][\"degraded\"] is False and len(d[\"policy\"][\"files\"]) == $n_files"'

run "$DHFCTL" policy check --dir "$tmp/policy.d" --dir "$tmp/vendor.d"
expect "policy check: no dhfd needed, a summary" \
  '[ $rc -eq 0 ] && grep -Eqx "[1-9][0-9]* rules in $n_files files: 0 errors, 0 warnings" "$tmp/out"'
run "$DHFCTL" policy check "$tmp/broken.policy"
expect "policy check of a broken file: file:line:col: error, exit 1" \
  '[ $rc -eq 1 ] && grep -Eq "^$tmp/broken.policy:1:[0-9]+: error: " "$tmp/out" &&
   grep -Eq "^1 file: [1-9][0-9]* errors?, 0 warnings; " "$tmp/out"'
run "$DHFCTL" --json policy check "$tmp/broken.policy"
expect "--json policy check" \
  '[ $rc -eq 1 ] && json_ok "d[\"valid\"] is False and d[\"errors\"] >= 1 and d[\"diagnostics\"][0][\"line\"] == 1"'
run "$DHFCTL" policy check --dir "$tmp/policy.d" "$tmp/broken.policy"
expect "policy check: FILEs and --dir exclude each other" '[ $rc -eq 2 ]'

ctl policy test org.dhf.example.Sync1 corporate vpn-gateway
expect "policy test: allow, redirected, by file:line and rule" \
  '[ $rc -eq 0 ] && [ "$(head -n 1 "$tmp/out")" = "allow (redirected to file-sync, at most 8 calls in flight)" ] &&
   grep -Eq "^  by $tmp/policy.d/20-corp.policy:2: org.dhf.example.Sync1 @tag:corp vpn-gateway allow " "$tmp/out"'
ctl policy test org.dhf.example.Sync1 personal vpn-gateway
expect "policy test: default deny, exit 0" \
  '[ $rc -eq 0 ] && grep -qx "deny (no rule matched: default deny)" "$tmp/out"'
ctl policy test hotkey:Ctrl+Alt+Tab dom0 @next
expect "policy test: a vendor hotkey rule" \
  '[ $rc -eq 0 ] && grep -qx "allow" "$tmp/out" && grep -Eq "^  by $tmp/vendor.d/[^/]+\.policy:[0-9]+: hotkey:Ctrl\+Alt\+Tab " "$tmp/out"'
ctl --json policy test org.dhf.example.Sync1 corporate vpn-gateway
expect "--json policy test" \
  '[ $rc -eq 0 ] && json_ok "d[\"action\"] == \"allow\" and d[\"line\"] == 2 and d[\"options\"] == {\"target\": \"file-sync\", \"quota\": \"8\"}"'
ctl policy test switch dom0 no-such-appliance
expect "policy test: unknown domain exits 4" '[ $rc -eq 4 ]'

ctl policy show
expect "policy show: state, then the rules with file:line" \
  '[ $rc -eq 0 ] && grep -Eq "^Degraded: +no$" "$tmp/out" && grep -Eq "^Rules: +[1-9]" "$tmp/out" &&
   grep -q "^$tmp/policy.d/20-corp.policy:2: org.dhf.example.Sync1 " "$tmp/out"'
ctl policy reload
expect "policy reload" '[ $rc -eq 0 ] && grep -Eq "^Reloaded: [1-9][0-9]* rules from $n_files files in force$" "$tmp/out"'

cp "$tmp/broken.policy" "$tmp/policy.d/20-corp.policy"
ctl policy reload
expect "policy reload of a broken set: diagnostics, exit 1" \
  '[ $rc -eq 1 ] && grep -Eq "^$tmp/policy.d/20-corp.policy:1:[0-9]+: error: " "$tmp/out" &&
   grep -q "keeps the last good policy" "$tmp/err"'
ctl status
expect "status: degraded by the policy" \
  'grep -Eq "^Status: +degraded$" "$tmp/out" && grep -Eq "policy: [0-9]+ errors? in the policy files" "$tmp/out" &&
   grep -Eq "^Policy: +.*, degraded" "$tmp/out"'
ctl policy test org.dhf.example.Sync1 corporate vpn-gateway
expect "the last good policy stays in force" '[ $rc -eq 0 ] && grep -q "^allow" "$tmp/out"'
rm "$tmp/policy.d/20-corp.policy"
ctl policy reload
expect "policy reload after the fix" '[ $rc -eq 0 ] && grep -Eq "^Reloaded: .* from $n_vendor files in force$" "$tmp/out"'
ctl policy bogus
expect "policy: unknown subcommand exits 2" '[ $rc -eq 2 ]'

# --- authorization ----------------------------------------------------------

# dhfd runs as us with Mode=peer-uid: another uid must be turned away.
if [ "$(id -u)" -eq 0 ] && command -v setpriv >/dev/null; then
  chmod 0755 "$tmp"
  run setpriv --reuid=65534 --regid=65534 --clear-groups env DHF_BUS_ADDRESS="$addr" "$DHFCTL" start ctl-alpha
  if [ $rc -eq 126 ] || [ $rc -eq 127 ]; then
    skip "start by another uid exits 5" "dhfctl is not executable by uid 65534"
  else
    expect "start by another uid exits 5" '[ $rc -eq 5 ] && grep -q "^dhfctl: cannot start .ctl-alpha.: " "$tmp/err"'
  fi
  chmod 0700 "$tmp"
else
  skip "start by another uid exits 5" "needs root and setpriv"
fi

# --- cross-domain messaging (XDM) -------------------------------------------

ctl xdm
expect "xdm without a subcommand is a usage error" '[ $rc -eq 2 ] && grep -q "missing subcommand" "$tmp/err"'
ctl xdm frobnicate
expect "xdm: an unknown subcommand is a usage error" '[ $rc -eq 2 ]'
ctl xdm --help
expect "xdm --help lists the subcommands" '[ $rc -eq 0 ] && grep -q "call SERVICE\[+ARG\] \[PARAMS_JSON\]" "$tmp/out"'
ctl xdm call "not a service"
expect "xdm call: a malformed service name is a usage error" '[ $rc -eq 2 ] && grep -q "is not a service name" "$tmp/err"'
ctl xdm call org.dhf.framework.Whoami --target dom0 '{"unterminated": '
expect "xdm call: bad JSON params exit 2" '[ $rc -eq 2 ] && grep -q "PARAMS_JSON is not valid JSON" "$tmp/err"'
ctl xdm call org.dhf.framework.Whoami --target dom0 '{} trailing'
expect "xdm call: text after the JSON value exits 2" '[ $rc -eq 2 ] && grep -q "PARAMS_JSON is not valid JSON" "$tmp/err"'
ctl --json xdm call org.dhf.framework.Whoami --target dom0 '[1,'
expect "--json xdm call: bad JSON params reported as InvalidArgs" \
  '[ $rc -eq 2 ] && json_ok "d[\"error\"][\"name\"] == \"org.dhf.Framework1.Error.InvalidArgs\""'
ctl xdm call org.dhf.framework.Whoami --target "no such/domain"
expect "xdm call: a malformed --target is a usage error" '[ $rc -eq 2 ]'
ctl xdm call --address bogus:x org.dhf.framework.Whoami
expect "xdm call: a bad --address is a usage error" '[ $rc -eq 2 ] && grep -q "bad XDM address" "$tmp/err"'
ctl xdm call --address vsock:not-a-cid org.dhf.framework.Whoami
expect "xdm call: an address the SDK refuses is a usage error" '[ $rc -eq 2 ] && grep -q "^dhfctl: bad XDM address: " "$tmp/err"'
ctl --timeout 1 xdm call --address "listen:$tmp/nobody.sock" org.dhf.framework.Whoami
expect "xdm call: no session within --timeout exits 3" \
  '[ $rc -eq 3 ] && grep -q "^dhfctl: cannot reach dhfd over XDM: no session at listen:$tmp/nobody.sock within 1 s" "$tmp/err"'
ctl --timeout 601 xdm call org.dhf.framework.Whoami
expect "xdm call: --timeout over 600 s is a usage error" '[ $rc -eq 2 ]'
ctl xdm call --address "unix:$tmp/no-such.sock" org.dhf.framework.Whoami --target dom0
expect "xdm call: nothing at the address exits 3" \
  '[ $rc -eq 3 ] && grep -q "^dhfctl: cannot reach dhfd over XDM: .*unix:$tmp/no-such.sock" "$tmp/err"'
ctl xdm publish "bad topic"
expect "xdm publish: a malformed topic is a usage error" '[ $rc -eq 2 ]'
ctl xdm publish org.dhf.test.Alert 'nope'
expect "xdm publish: bad JSON data exits 2" '[ $rc -eq 2 ] && grep -q "DATA_JSON is not valid JSON" "$tmp/err"'

# dom0 may ask who it is (the vendor defaults already allow it: the rule
# is repeated so that the test does not depend on them), and the test
# topic goes from dom0 to dom0 and to ctl-alpha. Nothing else.
printf '%s\n' "org.dhf.framework.Whoami  @dom0  @dom0      allow" \
  "org.dhf.test.Alert        @dom0  @dom0      allow" \
  "org.dhf.test.Alert        @dom0  ctl-alpha  allow" >"$tmp/policy.d/.05-xdm.policy"
mv "$tmp/policy.d/.05-xdm.policy" "$tmp/policy.d/05-xdm.policy"
ctl policy reload
expect "the XDM test rules are in force" '[ $rc -eq 0 ] && grep -q "^Reloaded: " "$tmp/out"'

# Two watchers: ctl-alpha, simulated (dhfd connects to its channel socket
# once the domain runs), and a dom0 client on dhfd's socket (the address
# read from the Xdm.Socket property).
ctl start ctl-alpha
expect "ctl-alpha runs, for its XDM channel" '[ $rc -eq 0 ]'
env DHF_BUS_ADDRESS="$addr" "$DHFCTL" xdm watch --address "listen:$tmp/channels/ctl-alpha.sock" \
  org.dhf.test.Alert >"$tmp/alpha-watch.out" 2>"$tmp/alpha-watch.err" &
alpha_watch=$!
bg_pids+=("$alpha_watch")
env DHF_BUS_ADDRESS="$addr" "$DHFCTL" xdm watch org.dhf.test.Alert >"$tmp/dom0-watch.out" 2>"$tmp/dom0-watch.err" &
dom0_watch=$!
bg_pids+=("$dom0_watch")

both_subscribed() {
  ctl xdm subscriptions
  [ $rc -eq 0 ] && grep -Eq "^org\.dhf\.test\.Alert +ctl-alpha " "$tmp/out" &&
    grep -Eq "^org\.dhf\.test\.Alert +dom0 " "$tmp/out"
}
wait_until "both watchers to subscribe" both_subscribed || true
expect "xdm subscriptions: the simulated domain and the dom0 client" 'both_subscribed'
cp "$tmp/out" "$tmp/subscriptions"
expect "xdm subscriptions: header and aligned columns" \
  'head -n 1 "$tmp/subscriptions" | grep -Eq "^TOPIC +DOMAIN +CONNECTION +DELIVERED +DROPPED$" && table_aligned "$tmp/subscriptions" 2>>"$tmp/err"'

ctl xdm list
cp "$tmp/out" "$tmp/xdm-list"
expect "xdm list: header and aligned columns" \
  '[ $rc -eq 0 ] && head -n 1 "$tmp/xdm-list" | grep -Eq "^ID +DOMAIN +TRANSPORT +UID +IN-FLIGHT +QUEUED +SERVICES +TOPICS$" &&
   table_aligned "$tmp/xdm-list" 2>>"$tmp/err"'
expect "xdm list: the simulated domain on its channel, with its topic" \
  'grep -Eq "^[0-9]+ +ctl-alpha +channel +- +0 +[0-9]+ +- +org\.dhf\.test\.Alert$" "$tmp/xdm-list"'
expect "xdm list: a dom0 client on the local socket, with our uid" \
  'grep -Eq "^[0-9]+ +dom0 +unix +$(id -u) +[0-9]+ +[0-9]+ +- +org\.dhf\.test\.Alert$" "$tmp/xdm-list"'
ctl --json xdm list
expect "--json xdm list" \
  '[ $rc -eq 0 ] && json_ok "any(c[\"domain\"] == \"ctl-alpha\" and c[\"transport\"] == \"channel\" and c[\"topics\"] == [\"org.dhf.test.Alert\"] for c in d) and any(c[\"domain\"] == \"dom0\" and c[\"uid\"] == $(id -u) and \"connected_at\" in c and \"session_started_at\" in c and c.get(\"client\", \"\").startswith(\"libdhf-1 \") and \"calls_in_flight\" in c for c in d)"'
ctl --json xdm subscriptions
expect "--json xdm subscriptions" \
  '[ $rc -eq 0 ] && json_ok "sorted(s[\"domain\"] for s in d if s[\"topic\"] == \"org.dhf.test.Alert\") == [\"ctl-alpha\", \"dom0\"]"'
ctl xdm services
expect "xdm services: a header, no service registered" \
  '[ $rc -eq 0 ] && [ "$(cat "$tmp/out")" = "SERVICE  DOMAIN  CONNECTION  CALLS" ]'

ctl xdm call org.dhf.framework.Whoami --target dom0
expect "xdm call Whoami on dom0: dom0 over unix, with our uid" \
  '[ $rc -eq 0 ] && json_ok "d[\"domain\"] == \"dom0\" and d[\"transport\"] == \"unix\" and d[\"uid\"] == $(id -u)"'
ctl --json xdm call org.dhf.framework.Whoami --target dom0 '{}'
expect "--json xdm call prints the result" '[ $rc -eq 0 ] && json_ok "d[\"domain\"] == \"dom0\""'
echo '{"ignored": true}' >"$tmp/params.json"
run env DHF_BUS_ADDRESS="$addr" DHF_XDM_ADDRESS="unix:$tmp/xdm.sock" "$DHFCTL" xdm call \
  org.dhf.framework.Whoami --target dom0 - <"$tmp/params.json"
expect "xdm call: params from stdin, the address from DHF_XDM_ADDRESS" \
  '[ $rc -eq 0 ] && json_ok "d[\"domain\"] == \"dom0\""'

ctl xdm call org.dhf.framework.ListAppliances --target dom0
expect "xdm call ListAppliances from dom0 (vendor defaults): dom0 itself" \
  '[ $rc -eq 0 ] && json_ok "any(a[\"name\"] == \"dom0\" for a in d[\"appliances\"])"'
ctl xdm call org.dhf.test.Secret1 --target ctl-alpha
expect "xdm call denied by the policy exits 5 with dhfd's message" \
  '[ $rc -eq 5 ] && grep -q "^dhfctl: cannot call org.dhf.test.Secret1 on ctl-alpha: dom0 may not call org.dhf.test.Secret1 on ctl-alpha" "$tmp/err"'
ctl --json xdm call org.dhf.test.Secret1 --target ctl-alpha
expect "--json: the denied call is NotAuthorized" \
  '[ $rc -eq 5 ] && json_ok "d[\"error\"][\"name\"] == \"org.dhf.Framework1.Error.NotAuthorized\""'
ctl xdm call org.dhf.test.NobodyOffersThis1
expect "xdm call of a service nobody provides exits 4" '[ $rc -eq 4 ]'

ctl xdm publish org.dhf.test.Alert '{"level": "high", "text": "Ünïcøde"}'
expect "xdm publish" '[ $rc -eq 0 ] && [ ! -s "$tmp/out" ]'
# event_line FILE: FILE has the line of the event just published.
event_line() {
  python3 -c 'import json, sys
want = {"topic": "org.dhf.test.Alert", "source": "dom0", "data": {"level": "high", "text": "Ünïcøde"}}
sys.exit(0 if any(json.loads(line) == want for line in open(sys.argv[1], encoding="utf-8")) else 1)' "$1"
}
wait_until "the event at the dom0 watcher" 'event_line "$tmp/dom0-watch.out" 2>/dev/null' || true
expect "xdm watch (dom0) prints the event as one JSON line" 'event_line "$tmp/dom0-watch.out"'
wait_until "the event at ctl-alpha" 'event_line "$tmp/alpha-watch.out" 2>/dev/null' || true
expect "xdm watch (the simulated ctl-alpha) gets it from dom0 too" 'event_line "$tmp/alpha-watch.out"'
ctl --json xdm publish org.dhf.test.Alert
expect "--json xdm publish" '[ $rc -eq 0 ] && json_ok "d == {\"topic\": \"org.dhf.test.Alert\", \"published\": True}"'

kill -INT "$dom0_watch" "$alpha_watch"
rc=0
wait "$dom0_watch" || rc=$?
expect "xdm watch ends cleanly on SIGINT" '[ $rc -eq 0 ]'
rc=0
wait "$alpha_watch" || rc=$?
expect "xdm watch on a listen: address ends cleanly on SIGINT" '[ $rc -eq 0 ]'
bg_pids=()
cat "$tmp/dom0-watch.err" "$tmp/alpha-watch.err" >>"$tmp/all-stderr"

# --- dhfd gone --------------------------------------------------------------

stop_dhfd
wait_name_gone

ctl status
expect "status after dhfd stopped exits 3" '[ $rc -eq 3 ] && grep -q "dhfd is not running" "$tmp/err"'

ctl show ctl-alpha
expect "show after dhfd stopped exits 3" '[ $rc -eq 3 ]'

ctl xdm list
expect "xdm list after dhfd stopped exits 3" '[ $rc -eq 3 ] && grep -q "dhfd is not running" "$tmp/err"'

ctl xdm call --address "unix:$tmp/xdm.sock" org.dhf.framework.Whoami --target dom0
expect "xdm call after dhfd stopped exits 3" '[ $rc -eq 3 ]'

expect "no GLib warnings or criticals from dhfctl" \
  '! grep -Eq "(CRITICAL|WARNING) \*\*" "$tmp/all-stderr"'

finish
