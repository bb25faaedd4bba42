#!/usr/bin/python3
# SPDX-License-Identifier: LGPL-2.1-or-later
"""libdhf-1 through GObject introspection (Dhf 1.0), as a Python appliance
would use it: two clients (a provider and a caller) talk through
client-relay, a minimal stand-in for dhfd's router.

Environment (set by meson): GI_TYPELIB_PATH and LD_LIBRARY_PATH point at
the build's sdk/dhf, DHF_CLIENT_RELAY at the relay. Output is TAP."""

import json
import os
import subprocess
import sys
import tempfile
import threading

import gi

gi.require_version("Dhf", "1.0")
gi.require_version("Gio", "2.0")
from gi.repository import Dhf, Gio, GLib  # noqa: E402

TESTS = []


def test(func):
    TESTS.append(func)
    return func


def wake():
    """Lets run_until() in the main thread look again (from another thread)."""
    GLib.MainContext.default().wakeup()


def run_until(loop_check, what, timeout_s=30):
    """Iterates the default main context until loop_check() is true."""
    context = GLib.MainContext.default()
    deadline = GLib.get_monotonic_time() + timeout_s * 1000000
    # Only so that a test that never gets its event fails instead of hanging.
    guard = GLib.timeout_add_seconds(1, lambda: True)
    try:
        while not loop_check():
            if GLib.get_monotonic_time() > deadline:
                raise AssertionError("waited too long for " + what)
            context.iteration(True)
    finally:
        GLib.source_remove(guard)


class Setup:
    def __init__(self, tmpdir):
        self.sock = os.path.join(tmpdir, "relay.sock")
        self.relay = subprocess.Popen(
            [os.environ["DHF_CLIENT_RELAY"], self.sock],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        # The relay says when it listens: no polling for the socket.
        assert self.relay.stdout.readline().strip() == "ready"
        self.provider = Dhf.Client.new("unix:" + self.sock)
        self.caller = Dhf.Client.new("unix:" + self.sock)
        assert self.provider.connect_sync(None)
        assert self.caller.connect_sync(None)

    def close(self):
        self.provider.close()
        self.caller.close()
        self.relay.stdin.close()
        self.relay.wait(timeout=30)


@test
def connect_and_properties(s):
    assert s.provider.get_connected()
    assert s.provider.props.connected
    assert s.provider.get_domain().startswith("dom-")
    assert s.caller.get_domain() != s.provider.get_domain()
    assert s.caller.props.address == "unix:" + s.sock
    assert s.caller.get_auto_reconnect()


@test
def register_and_call(s):
    seen = {}

    def handler(client, invocation):
        assert client is s.provider
        seen["source"] = invocation.get_source()
        seen["argument"] = invocation.get_argument()
        seen["kind"] = invocation.get_kind()
        params = json.loads(invocation.get_params_json())
        invocation.return_json(json.dumps({"sum": params["a"] + params["b"]}))

    reg = s.provider.register_service("org.example.Sum1", handler)
    assert reg > 0

    # Async, completing in this thread's main context.
    done = {}

    def on_done(client, result):
        done["result"] = client.call_finish(result)

    s.caller.call("org.example.Sum1+fast", None, '{"a": 2, "b": 40}', 5000, None, on_done)
    run_until(lambda: "result" in done, "the async call")
    assert json.loads(done["result"]) == {"sum": 42}
    assert seen["source"] == s.caller.get_domain()
    assert seen["argument"] == "fast"
    assert seen["kind"] == Dhf.InvocationKind.CALL

    # Sync, from another thread, while this one runs the handler.
    out = {}

    def worker():
        out["result"] = s.caller.call_sync("org.example.Sum1", None, '{"a": 1, "b": 1}', 0, None)
        wake()

    thread = threading.Thread(target=worker)
    thread.start()
    run_until(lambda: "result" in out, "the sync call")
    thread.join()
    assert json.loads(out["result"]) == {"sum": 2}
    assert seen["argument"] is None
    assert s.provider.unregister_service(reg)


@test
def errors(s):
    def handler(client, invocation):
        invocation.return_error(Dhf.Error.NOT_AUTHORIZED, "not for you")

    reg = s.provider.register_service("org.example.Secret1", handler)
    done = {}

    def on_done(client, result):
        try:
            client.call_finish(result)
            done["error"] = None
        except GLib.Error as e:
            done["error"] = e

    s.caller.call("org.example.Secret1", None, None, 0, None, on_done)
    run_until(lambda: "error" in done, "the refused call")
    e = done["error"]
    assert e is not None
    assert e.matches(Dhf.error_quark(), Dhf.Error.NOT_AUTHORIZED), e
    assert "not for you" in e.message

    # Invalid parameters never leave the client.
    try:
        s.caller.call_sync("org.example.Secret1", None, "{oops", 0, None)
        raise AssertionError("invalid JSON was accepted")
    except GLib.Error as e:
        assert e.matches(Dhf.error_quark(), Dhf.Error.INVALID_ARGS), e

    # Nobody provides it.
    try:
        s.caller.call_sync("org.example.Nobody1", None, None, 0, None)
        raise AssertionError("a call to nobody succeeded")
    except GLib.Error as e:
        assert e.matches(Dhf.error_quark(), Dhf.Error.NOT_FOUND), e

    # Registering twice from one client.
    try:
        s.provider.register_service("org.example.Secret1", handler)
        raise AssertionError("a second registration succeeded")
    except GLib.Error as e:
        assert e.matches(Dhf.error_quark(), Dhf.Error.EXISTS), e
    assert s.provider.unregister_service(reg)


@test
def events(s):
    got = []

    def on_event(client, topic, source, data):
        got.append((topic, source, data))

    sub = s.caller.subscribe("org.example.Alerts", on_event)
    assert sub > 0
    assert s.provider.publish("org.example.Alerts", '{"level": 2}')
    assert s.provider.publish("org.example.Alerts", None)
    run_until(lambda: len(got) == 2, "two events")
    assert got[0][0] == "org.example.Alerts"
    assert got[0][1] == s.provider.get_domain()
    assert json.loads(got[0][2]) == {"level": 2}
    assert got[1][2] is None
    assert s.caller.unsubscribe(sub)


@test
def streams(s):
    size = 3 * 1024 * 1024 + 17
    payload = bytes((i * 7 + 3) & 0xFF for i in range(size))
    accepted = {}

    def echo_upper(stream):
        # Reads all, answers with every byte + 1.
        data = bytearray()
        instream = stream.get_input_stream()
        while True:
            chunk = instream.read_bytes(65536, None).get_data()
            if not chunk:
                break
            data += chunk
        out = stream.get_output_stream()
        out.write_all(bytes((b + 1) & 0xFF for b in data), None)
        out.close(None)

    def handler(client, invocation):
        assert invocation.get_kind() == Dhf.InvocationKind.STREAM
        stream = invocation.accept_stream()
        accepted["peer"] = stream.get_peer()
        accepted["thread"] = threading.Thread(target=echo_upper, args=(stream,))
        accepted["thread"].start()

    reg = s.provider.register_service("org.example.Pipe1", handler)
    opened = {}

    def on_open(client, result):
        opened["stream"] = client.open_stream_finish(result)

    s.caller.open_stream("org.example.Pipe1", None, None, on_open)
    run_until(lambda: "stream" in opened, "the stream to open")
    stream = opened["stream"]
    assert isinstance(stream, Gio.IOStream)
    assert stream.get_service() == "org.example.Pipe1"
    result = {}

    def talk():
        stream.get_output_stream().write_all(payload, None)
        stream.get_output_stream().close(None)
        data = bytearray()
        while True:
            chunk = stream.get_input_stream().read_bytes(65536, None).get_data()
            if not chunk:
                break
            data += chunk
        result["data"] = bytes(data)
        wake()

    thread = threading.Thread(target=talk)
    thread.start()
    run_until(lambda: "data" in result, "the echoed stream")
    thread.join()
    accepted["thread"].join()
    assert accepted["peer"] == s.caller.get_domain()
    assert result["data"] == bytes((b + 1) & 0xFF for b in payload)
    stream.close(None)
    assert s.provider.unregister_service(reg)


@test
def not_connected(s):
    client = Dhf.Client.new("unix:" + os.path.join(os.path.dirname(s.sock), "nobody.sock"))
    try:
        client.connect_sync(None)
        raise AssertionError("connected to nobody")
    except GLib.Error as e:
        assert e.matches(Dhf.error_quark(), Dhf.Error.DISCONNECTED), e
    assert not client.get_connected()


def main():
    print("1..%d" % len(TESTS))
    failed = 0
    with tempfile.TemporaryDirectory(prefix="dhf-test-client-gi-") as tmpdir:
        s = Setup(tmpdir)
        try:
            for i, func in enumerate(TESTS, 1):
                try:
                    func(s)
                    print("ok %d - %s" % (i, func.__name__))
                except Exception as e:  # report and go on
                    failed += 1
                    print("not ok %d - %s: %r" % (i, func.__name__, e))
                sys.stdout.flush()
        finally:
            s.close()
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
