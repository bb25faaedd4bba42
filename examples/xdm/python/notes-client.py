#!/usr/bin/python3
# SPDX-License-Identifier: LGPL-2.1-or-later
"""The notes consumer of examples/xdm/c/ in Python, through GObject
introspection (libdhf-1's typelib Dhf-1.0).

    notes-client.py [--address ADDR] [--target DOMAIN] add TEXT | list | export

Same commands, output and exit statuses as dhf-example-notes-client:
0 done, 1 failed (the error's code is printed, e.g. "not-authorized"),
2 usage.
"""

import argparse
import json
import sys

import gi

gi.require_version("Dhf", "1.0")
gi.require_version("GLib", "2.0")
from gi.repository import Dhf, GLib  # noqa: E402

SERVICE = "org.dhf.example.Notes1"
EVENT_TOPIC = "org.dhf.example.NoteAdded"
EVENT_WAIT_SEC = 10


class Failed(Exception):
    pass


def error_code(error):
    """The DhfError nick of a GLib.Error ("not-authorized"), else "failed"."""
    if error.domain == GLib.quark_to_string(Dhf.error_quark()):
        try:
            return Dhf.Error(error.code).value_nick
        except ValueError:
            pass
    return "failed"


def fail(what, error):
    raise Failed(f"{what}: {error_code(error)}: {error.message}")


def cmd_add(client, target, text):
    wait = {"id": None, "seen": False, "early": []}

    def on_note_added(_client, topic, source, data_json):
        data = json.loads(data_json) if data_json else None
        if not isinstance(data, dict):
            return
        if wait["id"] is None:
            # The event may come before the reply that tells us our id.
            wait["early"].append((topic, source, data_json, data))
            return
        show(topic, source, data_json, data)

    def show(topic, source, data_json, data):
        if data.get("id") != wait["id"] or wait["seen"]:
            return  # others' notes arrive too
        print(f"event {topic} from {source}: {data_json}", flush=True)
        wait["seen"] = True

    # Subscribe first, so that the event of our own note cannot be missed.
    try:
        subscription = client.subscribe(EVENT_TOPIC, on_note_added)
    except GLib.Error as e:
        fail("events", e)
    try:
        params = json.dumps({"op": "add", "text": text})
        try:
            result = client.call_sync(SERVICE, target, params, 0, None)
        except GLib.Error as e:
            fail("cannot add a note", e)
        wait["id"] = json.loads(result)["id"]
        print(f"added note {wait['id']}", flush=True)
        for early in wait["early"]:
            show(*early)

        context = GLib.MainContext.default()
        expired = []
        timeout = GLib.timeout_add_seconds(EVENT_WAIT_SEC, lambda: expired.append(True))
        while not wait["seen"] and not expired:
            context.iteration(True)
        if not expired:
            GLib.source_remove(timeout)
        if not wait["seen"]:
            raise Failed(f"no {EVENT_TOPIC} event within {EVENT_WAIT_SEC} s: "
                         "does the policy let it reach us?")
    finally:
        client.unsubscribe(subscription)


def cmd_list(client, target):
    try:
        result = client.call_sync(SERVICE, target, json.dumps({"op": "list"}), 0, None)
    except GLib.Error as e:
        fail("cannot list the notes", e)
    for note in json.loads(result)["notes"]:
        print(f"{note['id']}\t{note['by']}\t{note['text']}")


def cmd_export(client, target):
    try:
        stream = client.open_stream_sync(SERVICE + "+export", target, None)
    except GLib.Error as e:
        fail("cannot open the export stream", e)
    incoming = stream.get_input_stream()
    try:
        while True:
            chunk = incoming.read_bytes(4096, None).get_data()
            if not chunk:
                break
            sys.stdout.buffer.write(chunk)
        sys.stdout.flush()
        stream.close(None)
    except GLib.Error as e:
        fail("export stream", e)


def main():
    parser = argparse.ArgumentParser(prog="notes-client.py",
                                     description="Use org.dhf.example.Notes1 through dhfd.")
    parser.add_argument("--address", "-a",
                        help="reach dhfd at ADDR (default: $DHF_XDM_ADDRESS, else the "
                        "appliance's XDM channel)")
    parser.add_argument("--target", "-t",
                        help="use the notes of DOMAIN (default: the provider the policy "
                        "lets us reach)")
    sub = parser.add_subparsers(dest="command", required=True)
    add = sub.add_parser("add", help="add a note and wait for its NoteAdded event")
    add.add_argument("text")
    sub.add_parser("list", help="print every note")
    sub.add_parser("export", help="copy the +export stream to standard output")
    args = parser.parse_args()  # exits 2 on a usage error

    client = Dhf.Client.new(args.address)
    try:
        try:
            client.connect_sync(None)
        except GLib.Error as e:
            fail(f"cannot reach dhfd at {client.get_address()}", e)
        if args.command == "add":
            cmd_add(client, args.target, args.text)
        elif args.command == "list":
            cmd_list(client, args.target)
        else:
            cmd_export(client, args.target)
    except Failed as e:
        print(f"notes-client: {e}", file=sys.stderr)
        return 1
    finally:
        client.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
