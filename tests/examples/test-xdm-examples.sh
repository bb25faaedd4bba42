#!/bin/bash
# Expectations are shell snippets evaluated later, hence single quotes.
# shellcheck disable=SC2016
# SPDX-License-Identifier: LGPL-2.1-or-later
#
# The notes example of examples/xdm through a real dhfd, as its README
# describes: dhfd on a private dbus-daemon over libvirt's test driver, two
# simulated domains made from the example's manifests (dhf-testnode
# --channel-dir: each domain's XDM channel is a socket that the example
# program listens on with the address listen:PATH, and dhfd connects to it
# as to a real virtio-serial channel), and the example's policy file.
# The C provider runs in "notes"; the C and the Python consumer run, one
# after the other, in "writer". Then the policy file is changed to deny and
# the consumers fail with not-authorized, with nothing restarted.
#
# TAP output. Variables (tests/examples/meson.build): DHFD, DHFCTL,
# DHF_TESTNODE, DHF_SOURCE_ROOT, DHF_BUILD_ROOT, NOTES_PROVIDER, NOTES_CLIENT,
# DHF_LIBDIR, DHF_TYPELIB_DIR, DHF_SANITIZE.
set -euo pipefail

: "${DHFD:?path to dhfd}" "${DHFCTL:?path to dhfctl}" "${DHF_TESTNODE:?path to dhf-testnode}"
: "${DHF_SOURCE_ROOT:?source tree}" "${NOTES_PROVIDER:?}" "${NOTES_CLIENT:?}"
: "${DHF_LIBDIR:?directory of libdhf-1}" "${DHF_TYPELIB_DIR:?directory of Dhf-1.0.typelib}"
: "${DHF_BUILD_ROOT:?build tree}"

example="$DHF_SOURCE_ROOT/examples/xdm"
python_client="$example/python/notes-client.py"
# shellcheck source=tests/dhfctl/dhfctl-env.sh
. "$DHF_SOURCE_ROOT/tests/dhfctl/dhfctl-env.sh"

# A consumer that never got its session would wait for dhfd for ever:
# run bounds that.
run_timeout=60

# --- the Python environment of a build tree (README.md) ---------------------

python_env=(env "GI_TYPELIB_PATH=$DHF_TYPELIB_DIR${GI_TYPELIB_PATH:+:$GI_TYPELIB_PATH}"
  "LD_LIBRARY_PATH=$DHF_LIBDIR${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}")
if sanitizing; then
  # An instrumented libdhf-1 in an uninstrumented python: the runtime must
  # be loaded first. Python's own allocations are not ours to check.
  python_env+=("LD_PRELOAD=$(${CC:-cc} -print-file-name=libasan.so) $(${CC:-cc} -print-file-name=libubsan.so)"
    "ASAN_OPTIONS=detect_leaks=0")
fi
have_python=yes
if [ ! -f "$DHF_TYPELIB_DIR/Dhf-1.0.typelib" ]; then
  have_python="no Dhf-1.0.typelib in $DHF_TYPELIB_DIR (built without introspection)"
elif ! "${python_env[@]}" /usr/bin/python3 -c 'import gi; gi.require_version("Dhf", "1.0"); from gi.repository import Dhf; Dhf.Client' 2>"$tmp/gi.err"; then
  have_python="python3-gi cannot load Dhf-1.0: $(head -n 1 "$tmp/gi.err")"
fi

run_python() {
  run "${python_env[@]}" /usr/bin/python3 "$python_client" "$@"
}

# --- built as an ISV builds them (README.md) --------------------------------

for program in provider client; do
  if isv_cc "$tmp/notes-$program" "$example/c/dhf-example-notes-$program.c"; then
    ok "dhf-example-notes-$program.c builds with pkg-config dhf-1 json-c alone"
  else
    not_ok "dhf-example-notes-$program.c builds with pkg-config dhf-1 json-c alone"
    diag "$tmp/cc.err"
  fi
done

# --- the bus, the node, the policy, dhfd ------------------------------------

write_xdm_config "$example/notes.policy"

make_node --running --channel-dir "$tmp/channels" "$example/notes.json" "$example/writer.json"
start_bus
start_dhfd "$tmp/dhfd.conf"

# --- the provider in "notes" ------------------------------------------------

"$NOTES_PROVIDER" --address "listen:$tmp/channels/notes.sock" >"$tmp/provider.out" 2>"$tmp/provider.err" &
provider_pid=$!
bg_pids+=("$provider_pid")
provider_ready() {
  kill -0 "$provider_pid" 2>/dev/null || return 2
  grep -q "^notes-provider: serving" "$tmp/provider.out"
}
if wait_until "the provider's session" provider_ready; then
  ok "the C provider got its session from dhfd and registered org.dhf.example.Notes1"
else
  not_ok "the C provider got its session from dhfd and registered org.dhf.example.Notes1"
  diag "$tmp/provider.out" "$tmp/provider.err"
  bail "no provider"
fi
expect "dhfd knows the provider as the domain of its channel (notes)" \
  'grep -qx "notes-provider: serving org.dhf.example.Notes1 as notes" "$tmp/provider.out"'

ctl xdm services
expect "dhfctl xdm services lists Notes1 provided by notes" \
  '[ $rc -eq 0 ] && grep -Eq "^org\.dhf\.example\.Notes1 +notes " "$tmp/out"'

# --- the consumers in "writer": the policy allows -----------------------------

writer="listen:$tmp/channels/writer.sock"

run "$NOTES_CLIENT" --address "$writer" add "first note"
expect "C consumer: add returns the note's id" '[ $rc -eq 0 ] && grep -qx "added note 1" "$tmp/out"'
expect "C consumer: the NoteAdded event comes from notes, naming writer as the author" \
  'grep -q "^event org.dhf.example.NoteAdded from notes: " "$tmp/out" &&
   grep "^event " "$tmp/out" | sed "s/^[^{]*//" | /usr/bin/python3 -c "import json, sys; d = json.load(sys.stdin); sys.exit(0 if d == {\"id\": 1, \"text\": \"first note\", \"by\": \"writer\"} else 1)"'

run "$NOTES_CLIENT" --address "$writer" --target notes add "second note, with a target"
expect "C consumer: add with --target notes" '[ $rc -eq 0 ] && grep -qx "added note 2" "$tmp/out"'

run "$NOTES_CLIENT" --address "$writer" list
expect "C consumer: list" \
  '[ $rc -eq 0 ] && [ "$(cat "$tmp/out")" = "$(printf "1\twriter\tfirst note\n2\twriter\tsecond note, with a target")" ]'

run "$NOTES_CLIENT" --address "$writer" export
expect "C consumer: the +export stream carries every note" \
  '[ $rc -eq 0 ] && [ "$(cat "$tmp/out")" = "$(printf "1\twriter\tfirst note\n2\twriter\tsecond note, with a target")" ]'

run "$NOTES_CLIENT" --address "$writer" frobnicate
expect "C consumer: an unknown command is a usage error" '[ $rc -eq 2 ]'

if [ "$have_python" = yes ]; then
  run_python --address "$writer" add "from Python"
  expect "Python consumer: add, and the event from notes" \
    '[ $rc -eq 0 ] && grep -qx "added note 3" "$tmp/out" &&
     grep -q "^event org.dhf.example.NoteAdded from notes: .*\"from Python\"" "$tmp/out"'
  run_python --address "$writer" list
  expect "Python consumer: list sees the C consumer's notes too" \
    '[ $rc -eq 0 ] && [ "$(wc -l <"$tmp/out")" -eq 3 ] && grep -qx "$(printf "3\twriter\tfrom Python")" "$tmp/out"'
  run_python --address "$writer" export
  expect "Python consumer: export" \
    '[ $rc -eq 0 ] && [ "$(wc -l <"$tmp/out")" -eq 3 ] && grep -qx "$(printf "1\twriter\tfirst note")" "$tmp/out"'
else
  for what in "add" "list" "export"; do
    skip "Python consumer: $what" "$have_python"
  done
fi

# --- the policy file changed to deny, nothing restarted -------------------------

sed 's/^\(org\.dhf\.example\.Notes1 .*\) allow .*$/\1 deny/' "$example/notes.policy" >"$tmp/policy.d/.50-notes.new"
grep -q "^org.dhf.example.Notes1 .* deny$" "$tmp/policy.d/.50-notes.new" ||
  bail "could not write the deny policy" "$tmp/provider.err"
mv "$tmp/policy.d/.50-notes.new" "$tmp/policy.d/50-notes.policy"
denied() {
  ctl policy test org.dhf.example.Notes1 writer notes
  [ $rc -eq 0 ] && grep -q "^deny" "$tmp/out"
}
if wait_until "dhfd to reload the policy" denied; then
  ok "dhfd reloaded the changed policy file by itself"
else
  not_ok "dhfd reloaded the changed policy file by itself"
fi

run "$NOTES_CLIENT" --address "$writer" list
expect "C consumer: denied by the policy, not-authorized" \
  '[ $rc -eq 1 ] && grep -q "^notes-client: cannot list the notes: not-authorized: " "$tmp/err"'
run "$NOTES_CLIENT" --address "$writer" export
expect "C consumer: the stream is denied too" \
  '[ $rc -eq 1 ] && grep -q "^notes-client: cannot open the export stream: not-authorized: " "$tmp/err"'
if [ "$have_python" = yes ]; then
  run_python --address "$writer" add "denied"
  expect "Python consumer: denied by the policy, not-authorized" \
    '[ $rc -eq 1 ] && grep -q "^notes-client: cannot add a note: not-authorized: " "$tmp/err"'
else
  skip "Python consumer: denied by the policy, not-authorized" "$have_python"
fi

expect "the provider and dhfd kept running throughout" \
  'kill -0 "$provider_pid" 2>/dev/null && kill -0 "$dhfd_pid" 2>/dev/null'

kill -TERM "$provider_pid"
provider_rc=0
wait "$provider_pid" || provider_rc=$?
bg_pids=()
rc=$provider_rc
cp "$tmp/provider.out" "$tmp/out"
cp "$tmp/provider.err" "$tmp/err"
expect "the provider ends cleanly on SIGTERM" '[ $rc -eq 0 ]'

expect "no GLib warnings or criticals from the examples" \
  '! grep -Eq "(CRITICAL|WARNING) \*\*" "$tmp/provider.err"'

finish
