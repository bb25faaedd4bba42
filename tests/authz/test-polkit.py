#!/usr/bin/python3
# SPDX-License-Identifier: LGPL-2.1-or-later
"""Authorization test for dhfd, with TAP output.

dhfd runs over libvirt's test driver on a private dbus-daemon that stands in
for the system bus (DBUS_SYSTEM_BUS_ADDRESS points at it, so libpolkit asks
it), next to python-dbusmock's polkitd template, whose SetAllowed decides
which actions polkit grants.  Checked:

  * with Mode=polkit every mutating call is refused with
    org.dhf.Framework1.Error.NotAuthorized naming its action, and changes
    nothing, while read-only calls work and never consult polkit;
  * polkit is asked about the calling connection (system-bus-name subject)
    and is told when the caller allows interactive authorization;
  * each of the twelve actions gates exactly the methods the API
    (protos/org.dhf.Framework1.xml) says it does, the read-only methods
    (Policy.Test, Policy.Show, Devices.List) name none, and the policy file
    defines exactly those twelve actions; the device and display methods,
    once authorized, get dhfd's own answer (the test driver attaches no
    device and opens no display);
  * without polkitd (never started, or killed) dhfd fails closed and keeps
    serving reads, and it uses polkitd again once it is back;
  * with Mode=peer-uid root may change things and `nobody` may only read
    (needs root; skipped otherwise).

Run with /usr/bin/python3 (it needs python3-gi and python3-dbusmock) and the
environment meson's test_env sets: DHFD, DHF_TESTNODE, DHF_SOURCE_ROOT.
"""

import glob
import json
import os
import pwd
import re
import select
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import traceback
from xml.etree import ElementTree

import gi

gi.require_version('Gio', '2.0')
from gi.repository import Gio, GLib  # noqa: E402

PYTHON = '/usr/bin/python3'

DHF_NAME = 'org.dhf.Framework1'
DHF_PATH = '/org/dhf/Framework1'
MANAGER = 'org.dhf.Framework1.Manager'
POLICY = 'org.dhf.Framework1.Policy'
XDM = 'org.dhf.Framework1.Xdm'
DEVICES = 'org.dhf.Framework1.Devices'
DISPLAY = 'org.dhf.Framework1.Display'
APPLIANCE = 'org.dhf.Framework1.Appliance'
PROPERTIES = 'org.freedesktop.DBus.Properties'
OBJECT_MANAGER = 'org.freedesktop.DBus.ObjectManager'
NOT_AUTHORIZED = 'org.dhf.Framework1.Error.NotAuthorized'

POLKIT_NAME = 'org.freedesktop.PolicyKit1'
POLKIT_PATH = '/org/freedesktop/PolicyKit1/Authority'
MOCK_IFACE = 'org.freedesktop.DBus.Mock'

INSTALL = 'org.dhf.framework1.appliance.install'
REMOVE = 'org.dhf.framework1.appliance.remove'
START = 'org.dhf.framework1.appliance.start'
STOP = 'org.dhf.framework1.appliance.stop'
PAUSE = 'org.dhf.framework1.appliance.pause'
RELOAD = 'org.dhf.framework1.policy.reload'
XDM_INSPECT = 'org.dhf.framework1.xdm.inspect'
XDM_PROMPT_AGENT = 'org.dhf.framework1.xdm.prompt-agent'
DEVICES_ASSIGN = 'org.dhf.framework1.devices.assign'
DISPLAY_SWITCH = 'org.dhf.framework1.display.switch'
DISPLAY_OPEN = 'org.dhf.framework1.display.open'
DISPLAY_SCREENSHOT = 'org.dhf.framework1.display.screenshot'
ACTIONS = [INSTALL, REMOVE, START, STOP, PAUSE, RELOAD, XDM_INSPECT, XDM_PROMPT_AGENT,
           DEVICES_ASSIGN, DISPLAY_SWITCH, DISPLAY_OPEN, DISPLAY_SCREENSHOT]

# The contract: which action gates which method. It must agree with the
# "Authorization:" lines of protos/org.dhf.Framework1.xml (checked below)
# and with man/dhfd.8.
CONTRACT = {
    'Start': START,
    'Shutdown': STOP,
    'Pause': PAUSE,
    'Resume': PAUSE,
    'Install': INSTALL,
    'Remove': REMOVE,
    'Reload': RELOAD,
    'ListConnections': XDM_INSPECT,
    'ListServices': XDM_INSPECT,
    'ListSubscriptions': XDM_INSPECT,
    'RegisterPromptAgent': XDM_PROMPT_AGENT,
    'UnregisterPromptAgent': XDM_PROMPT_AGENT,
    'Assign': DEVICES_ASSIGN,
    'Release': DEVICES_ASSIGN,
    'Switch': DISPLAY_SWITCH,
    'Next': DISPLAY_SWITCH,
    'Previous': DISPLAY_SWITCH,
    'OpenDisplay': DISPLAY_OPEN,
    'Screenshot': DISPLAY_SCREENSHOT,
}
METHODS = list(CONTRACT)
# Methods that need no action (the XML gives them no "Authorization:" line).
READ_ONLY = {'Test', 'Show', 'List'}
# Methods of org.dhf.Framework1.Devices and .Display (they change no
# appliance), and what dhfd answers each once polkit allowed it, over the
# test driver with the empty admin policy this test uses: None is success,
# a set names the errors that may come instead (the focus is dom0 and the
# demo appliances may be off), a string the one error that must come.
DEVICES_METHODS = {'Assign', 'Release'}
DISPLAY_METHODS = {'Switch', 'Next', 'Previous', 'OpenDisplay', 'Screenshot'}
AUTHORIZED_ANSWER = {
    'Switch': None,                    # to dom0, focused already
    'Next': {'InvalidState', 'NotAuthorized'},
    'Previous': {'InvalidState', 'NotAuthorized'},
    # Showing an appliance asks the policy "switch @dom0 NAME", which the
    # empty policy denies once personal runs; off, it is InvalidState.
    'OpenDisplay': {'NotAuthorized', 'InvalidState'},
    'Screenshot': {'NotAuthorized', 'InvalidState'},
    'Assign': 'NotFound',              # no such device
    'Release': 'NotFound',
}
# Methods of org.dhf.Framework1.Xdm; they change no appliance.
XDM_METHODS = {'ListConnections', 'ListServices', 'ListSubscriptions', 'RegisterPromptAgent',
               'UnregisterPromptAgent'}
# Interfaces the XML describes for clients to implement, not dhfd.
CLIENT_INTERFACES = ['org.dhf.Framework1.PromptAgent']
AGENT_PATH = '/org/dhf/test/Agent'


DEMO_APPLIANCES = ['corporate', 'file-sync', 'personal', 'vpn-gateway']
PROBE = 'authz-probe'
PROBE_MANIFEST = json.dumps({
    'manifest-version': 1, 'name': PROBE, 'vendor': 'dhf tests', 'version': '1.0',
    'role': 'service', 'memory': '256MiB', 'vcpus': 1,
})

# Which appliance each appliance method is tried on, the state it must be in
# for the call to succeed, and the state a successful call leaves.
APPLIANCE_CALLS = {
    'Start': ('personal', 'shutoff', 'running'),
    'Shutdown': ('personal', 'running', 'shutoff'),
    'Pause': ('corporate', 'running', 'paused'),
    'Resume': ('corporate', 'paused', 'running'),
}

WAIT_S = 20          # for a daemon or a state to show up: a hang, not a benchmark
CALL_TIMEOUT_MS = 25000


class Fatal(Exception):
    """Setup failed: nothing further can be checked."""


# What to clean up if the test is killed (meson's timeout sends SIGTERM).
CLEANUP = {'procs': None, 'tmp': None}


def on_sigterm(signum, frame):
    # Cleans up here rather than raising: an exception raised from a signal
    # handler is lost when it lands in a __del__ or a library's except.
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    print(f'Bail out! killed by signal {signum}', flush=True)
    if CLEANUP['procs'] is not None:
        CLEANUP['procs'].stop_all()
    if CLEANUP['tmp'] is not None:
        shutil.rmtree(CLEANUP['tmp'], ignore_errors=True)
    os._exit(1)


# --- TAP ------------------------------------------------------------------

class Tap:
    def __init__(self):
        self.n = 0
        self.failed = 0

    def diag(self, text):
        for line in str(text).splitlines() or ['']:
            print('#   ' + line, flush=True)

    def point(self, ok, desc, diag=None):
        self.n += 1
        print(f'{"ok" if ok else "not ok"} {self.n} - {desc}', flush=True)
        if not ok:
            self.failed += 1
            if diag:
                self.diag(diag)
        return ok

    def skip(self, desc, why):
        self.n += 1
        print(f'ok {self.n} - {desc} # SKIP {why}', flush=True)

    def check(self, desc, fn):
        """fn() returns None when the check holds, else what went wrong."""
        try:
            problem = fn()
        except Fatal:
            raise
        except Exception:  # a broken check is a failed check, not a crash
            problem = 'exception in the check:\n' + traceback.format_exc()
        return self.point(problem is None, desc, problem)


tap = Tap()


# --- D-Bus client -----------------------------------------------------------

class Reply:
    def __init__(self, value=None, error_name=None, error_message=None):
        self.value = value
        self.error_name = error_name
        self.error_message = error_message

    @property
    def ok(self):
        return self.error_name is None

    def __str__(self):
        if self.ok:
            return f'success, returned {self.value!r}'
        return f'error {self.error_name}: {self.error_message}'


def split_remote_error(message, name):
    prefix = f'GDBus.Error:{name}: '
    return message[len(prefix):] if name and message.startswith(prefix) else message


def connect(address):
    return Gio.DBusConnection.new_for_address_sync(
        address,
        Gio.DBusConnectionFlags.AUTHENTICATION_CLIENT
        | Gio.DBusConnectionFlags.MESSAGE_BUS_CONNECTION,
        None, None)


def call(conn, dest, path, iface, method, params=None, flags=Gio.DBusCallFlags.NONE,
         timeout_ms=CALL_TIMEOUT_MS):
    try:
        result = conn.call_sync(dest, path, iface, method, params, None, flags, timeout_ms, None)
    except GLib.Error as e:
        name = Gio.DBusError.get_remote_error(e)
        if name is None:
            name = f'(local {GLib.quark_to_string(e.domain)} {e.code})'
        return Reply(error_name=name, error_message=split_remote_error(e.message, name))
    return Reply(value=result.unpack() if result is not None else None)


def bus_call(conn, method, params=None):
    r = call(conn, 'org.freedesktop.DBus', '/org/freedesktop/DBus', 'org.freedesktop.DBus',
             method, params)
    if not r.ok:
        raise Fatal(f'org.freedesktop.DBus.{method}: {r}')
    return r.value


def name_has_owner(conn, name):
    return bus_call(conn, 'NameHasOwner', GLib.Variant('(s)', (name,)))[0]


def method_params(method, target):
    """GVariant arguments of a mutating call on target (an appliance name)."""
    if method == 'Shutdown':
        return GLib.Variant('(u)', (5000,))
    if method == 'Install':
        return GLib.Variant('(sa{sv})', (PROBE_MANIFEST, {}))
    if method == 'Remove':
        return GLib.Variant('(sa{sv})', (target, {}))
    if method in ('RegisterPromptAgent', 'UnregisterPromptAgent'):
        return GLib.Variant('(o)', (AGENT_PATH,))
    if method == 'Assign':
        return GLib.Variant('(ssa{sv})', ('usb-99-9', target, {}))
    if method == 'Release':
        return GLib.Variant('(s)', ('usb-99-9',))
    if method == 'Switch':
        return GLib.Variant('(s)', ('dom0',))
    if method == 'OpenDisplay':
        return GLib.Variant('(s)', (target,))
    if method == 'Screenshot':
        return GLib.Variant('(sa{sv})', (target, {'max-width': GLib.Variant('u', 64)}))
    return None


def authorized_answer(method, r):
    """None if r is what dhfd answers an authorized call of a device or
    display method, else what is wrong."""
    want = AUTHORIZED_ANSWER[method]
    if r.ok:
        if want is None or isinstance(want, set):
            return None
        return f'{method}: expected {want}, got {r}'
    name = r.error_name.rsplit('.', 1)[1] if r.error_name.startswith('org.dhf.') else ''
    if r.error_message.startswith('not authorized for '):
        return f'{method}: refused by polkit although its action is allowed: {r}'
    if isinstance(want, str) and name == want:
        return None
    if isinstance(want, set) and name in want:
        return None
    return f'{method}: expected {want or "success"}, got {r}'


def expect_not_authorized(r, action=None):
    """None if r is NotAuthorized naming action (any dhf action if None)."""
    if r.ok or r.error_name != NOT_AUTHORIZED:
        want = action or 'an org.dhf.framework1.appliance.* action'
        return f'expected {NOT_AUTHORIZED} naming {want}; got {r}'
    if action is not None:
        if not r.error_message.startswith(f'not authorized for {action}: '):
            return (f'NotAuthorized names the wrong action: expected the message to start '
                    f'"not authorized for {action}: ", got "{r.error_message}"')
    elif not any(r.error_message.startswith(f'not authorized for {a}: ') for a in ACTIONS):
        return f'NotAuthorized names no dhf action: "{r.error_message}"'
    return None


# --- processes ------------------------------------------------------------

class Processes:
    """Every process the test starts, stopped in reverse order at the end."""

    def __init__(self):
        self.procs = []

    def start(self, argv, log_path, **kwargs):
        log = open(log_path, 'ab')
        try:
            proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL,
                                    stdout=kwargs.pop('stdout', log), stderr=log, **kwargs)
        finally:
            log.close()
        proc.log_path = log_path
        self.procs.append(proc)
        return proc

    def stop(self, proc, sig=signal.SIGTERM, timeout=10):
        """Stops proc; returns its exit status (negative: killed by a signal)."""
        if proc.poll() is None:
            proc.send_signal(sig)
            try:
                proc.wait(timeout)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        if proc in self.procs:
            self.procs.remove(proc)
        if proc.stdout is not None:
            proc.stdout.close()
        return proc.returncode

    def stop_all(self):
        for proc in reversed(list(self.procs)):
            try:
                self.stop(proc, timeout=5)
            except Exception as e:  # keep cleaning up
                print(f'# cleanup: stopping pid {proc.pid}: {e}', flush=True)


def log_tail(path, lines=25):
    try:
        with open(path, errors='replace') as f:
            tail = f.read().splitlines()[-lines:]
    except OSError as e:
        return f'(no log: {e})'
    return f'last lines of {path}:\n' + '\n'.join(tail)


def wait_for(what, predicate, timeout=WAIT_S, proc=None):
    deadline = time.monotonic() + timeout
    while True:
        if predicate():
            return
        if proc is not None and proc.poll() is not None:
            raise Fatal(f'{what}: the process exited with status {proc.returncode}\n'
                        + log_tail(proc.log_path))
        if time.monotonic() > deadline:
            extra = ('\n' + log_tail(proc.log_path)) if proc is not None else ''
            raise Fatal(f'{what}: not after {timeout} s{extra}')
        time.sleep(0.02)


BUS_CONFIG = '''<!DOCTYPE busconfig PUBLIC "-//freedesktop//DTD D-Bus Bus Configuration 1.0//EN"
 "http://www.freedesktop.org/standards/dbus/1.0/busconfig.dtd">
<busconfig>
  <type>system</type>
  <listen>unix:path={socket}</listen>
  <auth>EXTERNAL</auth>
  <policy context="default">
    <allow user="*"/>
    <allow send_destination="*" eavesdrop="true"/>
    <allow eavesdrop="true"/>
    <allow own="*"/>
  </policy>
</busconfig>
'''


def start_bus(procs, tmp):
    """A system-bus-like dbus-daemon any local user may connect to."""
    sock_dir = os.path.join(tmp, 'bus')
    os.mkdir(sock_dir)
    os.chmod(sock_dir, 0o711)
    socket_path = os.path.join(sock_dir, 'socket')
    config = os.path.join(tmp, 'bus.conf')
    with open(config, 'w') as f:
        f.write(BUS_CONFIG.format(socket=socket_path))
    proc = procs.start(['dbus-daemon', f'--config-file={config}', '--nofork', '--print-address'],
                       os.path.join(tmp, 'dbus-daemon.log'), stdout=subprocess.PIPE)
    ready, _, _ = select.select([proc.stdout], [], [], WAIT_S)
    address = proc.stdout.readline().decode().strip() if ready else ''
    if not address:
        raise Fatal('dbus-daemon printed no address\n' + log_tail(proc.log_path))
    # Unix sockets need write permission to connect; the umask may deny it.
    os.chmod(socket_path, 0o666)
    return address


class Polkitd:
    """python-dbusmock's polkitd template on the bus."""

    def __init__(self, procs, conn, address, tmp):
        self.procs, self.conn, self.address, self.tmp = procs, conn, address, tmp
        self.proc = None

    def start(self):
        env = dict(os.environ, DBUS_SYSTEM_BUS_ADDRESS=self.address,
                   DBUS_SESSION_BUS_ADDRESS=self.address)
        self.proc = self.procs.start([PYTHON, '-m', 'dbusmock', '--template', 'polkitd',
                                      '--system'],
                                     os.path.join(self.tmp, 'polkitd-mock.log'), env=env)
        wait_for('the polkitd mock owning ' + POLKIT_NAME,
                 lambda: name_has_owner(self.conn, POLKIT_NAME), proc=self.proc)

    def stop(self):
        self.procs.stop(self.proc)
        self.proc = None
        wait_for(POLKIT_NAME + ' to lose its owner',
                 lambda: not name_has_owner(self.conn, POLKIT_NAME))

    def _mock(self, method, params=None):
        r = call(self.conn, POLKIT_NAME, POLKIT_PATH, MOCK_IFACE, method, params)
        if not r.ok:
            raise Fatal(f'polkitd mock {method}: {r}')
        return r.value

    def set_allowed(self, actions):
        self._mock('SetAllowed', GLib.Variant('(as)', (list(actions),)))

    def clear_calls(self):
        self._mock('ClearCalls')

    def checks(self):
        """[(subject, action_id, flags)] of the CheckAuthorization calls logged."""
        calls = self._mock('GetMethodCalls', GLib.Variant('(s)', ('CheckAuthorization',)))[0]
        return [(args[0], args[1], args[3]) for _, args in calls]


class Dhfd:
    def __init__(self, procs, tmp, address, node_path):
        self.procs, self.tmp, self.address, self.node_path = procs, tmp, address, node_path
        self.proc = None

    def start(self, conn, mode):
        storage = os.path.join(self.tmp, 'storage')
        os.makedirs(storage, exist_ok=True)
        config = os.path.join(self.tmp, f'dhfd-{mode}.conf')
        policy = os.path.join(self.tmp, 'policy.d')
        os.makedirs(policy, exist_ok=True)
        # This bus stands in for the system bus: without [XDM], dhfd would
        # take the system's XDM socket and vsock port.
        with open(config, 'w') as f:
            f.write(f'[Authorization]\nMode={mode}\n\n'
                    f'[Appliances]\nStorageDirectory={storage}\nShutdownTimeout=2\n\n'
                    f'[Policy]\nDirectories={policy}\n'
                    f'LastGood={os.path.join(self.tmp, "policy.last-good")}\n\n'
                    f'[XDM]\nSocket={os.path.join(self.tmp, "xdm.sock")}\nVsockPort=0\n\n'
                    f'[Devices]\nStateFile={os.path.join(self.tmp, "devices.json")}\n')
        env = dict(os.environ, DBUS_SYSTEM_BUS_ADDRESS=self.address,
                   DBUS_SESSION_BUS_ADDRESS=self.address)
        self.proc = self.procs.start(
            [os.environ['DHFD'], '--address', self.address,
             '--hypervisor', 'test://' + self.node_path, '--config', config, '--verbose'],
            os.path.join(self.tmp, f'dhfd-{mode}.log'), env=env)
        wait_for(f'dhfd (Mode={mode}) owning {DHF_NAME}',
                 lambda: name_has_owner(conn, DHF_NAME), proc=self.proc)

    def stop(self):
        status = self.procs.stop(self.proc)
        self.proc = None
        return status

    def alive(self):
        return self.proc is not None and self.proc.poll() is None


# --- dhfd state -------------------------------------------------------------

def managed_objects(conn):
    r = call(conn, DHF_NAME, DHF_PATH, OBJECT_MANAGER, 'GetManagedObjects')
    if not r.ok:
        raise Fatal(f'GetManagedObjects: {r}')
    return r.value[0]


def appliances(conn):
    """{name: (path, State)} of every appliance dhfd publishes."""
    found = {}
    for path, ifaces in managed_objects(conn).items():
        props = ifaces.get(APPLIANCE)
        if props is not None:
            found[props['Name']] = (path, props['State'])
    return found


def state_of(conn, name):
    entry = appliances(conn).get(name)
    return entry[1] if entry else None


def path_of(conn, name):
    entry = appliances(conn).get(name)
    if entry is None:
        raise Fatal(f'dhfd publishes no appliance named {name}')
    return entry[0]


def invoke(conn, method, target, flags=Gio.DBusCallFlags.NONE):
    """Calls a mutating method on its object; target is an appliance name
    (ignored by Reload)."""
    if method == 'Reload':
        return call(conn, DHF_NAME, DHF_PATH, POLICY, method, None, flags)
    if method in XDM_METHODS:
        return call(conn, DHF_NAME, DHF_PATH, XDM, method, method_params(method, target), flags)
    if method in DEVICES_METHODS:
        return call(conn, DHF_NAME, DHF_PATH, DEVICES, method, method_params(method, target),
                    flags)
    if method in DISPLAY_METHODS:
        return call(conn, DHF_NAME, DHF_PATH, DISPLAY, method, method_params(method, target),
                    flags)
    if method in ('Install', 'Remove'):
        return call(conn, DHF_NAME, DHF_PATH, MANAGER, method, method_params(method, target),
                    flags)
    return call(conn, DHF_NAME, path_of(conn, target), APPLIANCE, method,
                method_params(method, target), flags)


def wait_state(conn, name, state, timeout=5):
    """None once name is in state (None: absent), else what it is instead."""
    deadline = time.monotonic() + timeout
    while True:
        now = state_of(conn, name)
        if now == state:
            return None
        if time.monotonic() > deadline:
            return (f'{name} is {now or "not installed"}, expected {state or "not installed"} '
                    f'(waited {timeout} s)')
        time.sleep(0.02)


def do(conn, method, target):
    r = invoke(conn, method, target)
    if not r.ok:
        raise Fatal(f'setup: {method} {target} with every action allowed: {r}')


def bring_to(conn, name, state):
    """Moves an appliance to shutoff/running/paused (every action allowed)."""
    for _ in range(4):
        now = state_of(conn, name)
        if now == state:
            return
        if now == 'shutoff':
            do(conn, 'Start', name)
        elif now == 'paused':
            do(conn, 'Resume', name)
        elif now == 'running':
            do(conn, 'Pause' if state == 'paused' else 'Shutdown', name)
        else:
            raise Fatal(f'setup: {name} is {now}, cannot bring it to {state}')
        deadline = time.monotonic() + 5
        while state_of(conn, name) == now and time.monotonic() < deadline:
            time.sleep(0.02)
    problem = wait_state(conn, name, state)
    if problem:
        raise Fatal('setup: ' + problem)


def prepare(conn, polkitd, method):
    """Puts the target of method where a permitted call succeeds.

    Returns (target, state before, state a successful call leaves)."""
    polkitd.set_allowed(ACTIONS)
    if method == 'Reload' or method in XDM_METHODS | DEVICES_METHODS | DISPLAY_METHODS:
        if method == 'UnregisterPromptAgent':
            do(conn, 'RegisterPromptAgent', None)  # there is one to unregister
        return None, None, None  # changes no appliance
    installed = PROBE in appliances(conn)
    if method == 'Install':
        if installed:
            do(conn, 'Remove', PROBE)
        return PROBE, None, 'shutoff'
    if method == 'Remove':
        if not installed:
            do(conn, 'Install', PROBE)
            problem = wait_state(conn, PROBE, 'shutoff')
            if problem:
                raise Fatal('setup: ' + problem)
        return PROBE, 'shutoff', None
    name, before, after = APPLIANCE_CALLS[method]
    bring_to(conn, name, before)
    return name, before, after


def snapshot(conn):
    return {name: state for name, (_, state) in appliances(conn).items()}


# --- `nobody` -----------------------------------------------------------------

# Runs as nobody: makes the calls given as JSON, prints the replies as JSON.
NOBODY_CLIENT = r'''
import json, os, sys
import gi
gi.require_version('Gio', '2.0')
from gi.repository import Gio, GLib
address, calls = sys.argv[1], json.loads(sys.argv[2])
conn = Gio.DBusConnection.new_for_address_sync(
    address, Gio.DBusConnectionFlags.AUTHENTICATION_CLIENT
    | Gio.DBusConnectionFlags.MESSAGE_BUS_CONNECTION, None, None)
out = {"uid": os.getuid(), "replies": []}
uid = conn.call_sync("org.freedesktop.DBus", "/org/freedesktop/DBus", "org.freedesktop.DBus",
                     "GetConnectionUnixUser", GLib.Variant("(s)", (conn.get_unique_name(),)),
                     None, 0, -1, None)
out["bus_uid"] = uid.unpack()[0]
for path, iface, method, signature, args in calls:
    params = GLib.Variant(signature, tuple(args)) if signature else None
    try:
        v = conn.call_sync("org.dhf.Framework1", path, iface, method, params, None, 0, 25000, None)
        out["replies"].append({"value": repr(v.unpack() if v is not None else None)})
    except GLib.Error as e:
        out["replies"].append({"name": Gio.DBusError.get_remote_error(e), "message": e.message})
print(json.dumps(out))
'''


def run_as_nobody(address, calls):
    """Makes calls [(path, iface, method, signature, args)] as nobody."""
    pw = pwd.getpwnam('nobody')
    argv = ['setpriv', f'--reuid={pw.pw_uid}', f'--regid={pw.pw_gid}', '--clear-groups',
            PYTHON, '-c', NOBODY_CLIENT, address, json.dumps(calls)]
    env = {'PATH': '/usr/bin:/bin', 'LANG': 'C.UTF-8', 'HOME': '/nonexistent'}
    p = subprocess.run(argv, cwd='/', env=env, stdin=subprocess.DEVNULL, capture_output=True,
                       timeout=60)
    if p.returncode != 0:
        raise Fatal(f'the client running as nobody exited with {p.returncode}:\n'
                    + p.stderr.decode(errors='replace'))
    out = json.loads(p.stdout)
    replies = []
    for r in out['replies']:
        if 'name' in r:
            replies.append(Reply(error_name=r['name'],
                                 error_message=split_remote_error(r['message'], r['name'])))
        else:
            replies.append(Reply(value=r['value']))
    return pw.pw_uid, out['uid'], out['bus_uid'], replies


# --- the checks -------------------------------------------------------------

def main():
    for var in ('DHFD', 'DHF_TESTNODE', 'DHF_SOURCE_ROOT'):
        if not os.environ.get(var):
            raise Fatal(f'${var} is not set (run through meson test, or set it)')
    signal.signal(signal.SIGTERM, on_sigterm)
    signal.signal(signal.SIGINT, on_sigterm)

    procs = Processes()
    tmp = tempfile.mkdtemp(prefix='dhf-authz-')
    CLEANUP.update(procs=procs, tmp=tmp)
    try:
        os.chmod(tmp, 0o711)  # nobody must reach the bus socket below it
        run_checks(procs, tmp)
    finally:
        procs.stop_all()
        shutil.rmtree(tmp, ignore_errors=True)


def check_documents():
    root = os.environ['DHF_SOURCE_ROOT']

    def api_agrees():
        with open(os.path.join(root, 'protos', 'org.dhf.Framework1.xml')) as f:
            text = f.read()
        for iface in CLIENT_INTERFACES:
            text = re.sub(rf'<interface name="{re.escape(iface)}">.*?</interface>', '', text,
                          flags=re.S)
        documented = {}
        for m in re.finditer(r'<!--((?:(?!-->).)*)-->\s*<method name="(\w+)"', text, re.S):
            action = re.search(r'Authorization:\s*(\S+)', m.group(1))
            documented[m.group(2)] = action.group(1) if action else None
        gated = {method: action for method, action in documented.items() if action}
        free = {method for method, action in documented.items() if not action}
        if gated != CONTRACT or free != READ_ONLY:
            return ('protos/org.dhf.Framework1.xml documents (method: Authorization) '
                    f'{documented}\nthis test expects {CONTRACT}, and no action for '
                    f'{sorted(READ_ONLY)}')
    tap.check('the method -> action table agrees with the Authorization: lines of '
              'protos/org.dhf.Framework1.xml', api_agrees)

    def policy_defines():
        tree = ElementTree.parse(os.path.join(root, 'policies', 'polkit',
                                              'org.dhf.framework1.policy'))
        defined = sorted(a.get('id') for a in tree.getroot().iter('action'))
        if defined != sorted(ACTIONS):
            return f'the policy defines {defined}, dhfd checks {sorted(ACTIONS)}'
    tap.check(f'policies/polkit/org.dhf.framework1.policy defines exactly the {len(ACTIONS)} '
              'actions', policy_defines)


def run_checks(procs, tmp):
    check_documents()
    node_path = os.path.join(tmp, 'node.xml')
    manifests = sorted(glob.glob(os.path.join(os.environ['DHF_SOURCE_ROOT'],
                                              'examples', 'appliances', '*.json')))
    with open(node_path, 'wb') as f:
        p = subprocess.run([os.environ['DHF_TESTNODE']] + manifests, stdout=f,
                           stderr=subprocess.PIPE)
    if p.returncode != 0:
        raise Fatal('dhf-testnode failed: ' + p.stderr.decode(errors='replace'))

    address = start_bus(procs, tmp)
    conn = connect(address)
    polkitd = Polkitd(procs, conn, address, tmp)
    dhfd = Dhfd(procs, tmp, address, node_path)

    # --- Mode=polkit, before any polkitd exists ---------------------------
    dhfd.start(conn, 'polkit')

    def served():
        got = snapshot(conn)
        want = {name: 'shutoff' for name in DEMO_APPLIANCES}
        if got != want:
            return f'expected appliances {want}, got {got}'
    tap.check('dhfd (Mode=polkit) serves the 4 demo appliances, all shut off', served)

    def fail_closed_never_started():
        r = invoke(conn, 'Start', 'personal')
        return expect_not_authorized(r, START) or wait_state(conn, 'personal', 'shutoff', 0)
    tap.check('no polkitd on the bus yet: Start fails closed with NotAuthorized naming '
              + START, fail_closed_never_started)

    polkitd.start()
    polkitd.set_allowed([])
    polkitd.clear_calls()

    # --- nothing allowed ----------------------------------------------------
    # The state does not matter: authorization comes before state checks.
    before = snapshot(conn)
    for method in METHODS:
        target = 'file-sync' if method == 'Remove' else 'personal'

        def refused(method=method, target=target):
            return expect_not_authorized(invoke(conn, method, target), CONTRACT[method])
        tap.check(f'nothing allowed: {method} fails with NotAuthorized naming '
                  f'{CONTRACT[method]}', refused)

    tap.check('nothing allowed: the refused calls changed nothing (no state change, '
              f'{PROBE} not installed, file-sync not removed)',
              lambda: None if snapshot(conn) == before
              else f'before: {before}\nafter:  {snapshot(conn)}')

    def asked_about_caller():
        checks = polkitd.checks()
        me = conn.get_unique_name()
        problems = []
        if len(checks) != len(METHODS):
            problems.append(f'expected {len(METHODS)} CheckAuthorization calls, '
                            f'got {len(checks)}: {checks}')
        for subject, action, flags in checks:
            if tuple(subject) != ('system-bus-name', {'name': me}):
                problems.append(f'{action}: subject {subject}, expected the caller '
                                f"('system-bus-name', {{'name': '{me}'}})")
            if flags != 0:
                problems.append(f'{action}: flags {flags}, expected 0 (no '
                                'ALLOW_INTERACTIVE_AUTHORIZATION on the call)')
        return '\n'.join(problems) or None
    tap.check('polkit was asked once per refused call, about the caller\'s bus name '
              '(system-bus-name subject), without user interaction', asked_about_caller)

    # --- read-only calls ------------------------------------------------
    polkitd.clear_calls()

    def read_manager():
        r = call(conn, DHF_NAME, DHF_PATH, PROPERTIES, 'GetAll', GLib.Variant('(s)', (MANAGER,)))
        if not r.ok:
            return f'GetAll({MANAGER}): {r}'
        props = r.value[0]
        if props.get('Hypervisor') != 'test://' + dhfd.node_path or not props.get('Version'):
            return f'unexpected Manager properties: {props}'
    tap.check('nothing allowed: Properties.GetAll on the Manager works', read_manager)

    def read_appliance():
        r = call(conn, DHF_NAME, path_of(conn, 'personal'), PROPERTIES, 'GetAll',
                 GLib.Variant('(s)', (APPLIANCE,)))
        if not r.ok:
            return f'GetAll({APPLIANCE}): {r}'
        if r.value[0].get('Name') != 'personal' or 'State' not in r.value[0]:
            return f'unexpected properties of personal: {r.value[0]}'
        r = call(conn, DHF_NAME, path_of(conn, 'personal'), PROPERTIES, 'Get',
                 GLib.Variant('(ss)', (APPLIANCE, 'Managed')))
        if not r.ok or r.value[0] is not True:
            return f'Get({APPLIANCE}, Managed): {r}'
    tap.check('nothing allowed: Properties.GetAll/Get on an appliance work', read_appliance)

    def read_objects(expected=DEMO_APPLIANCES):
        r = call(conn, DHF_NAME, DHF_PATH, OBJECT_MANAGER, 'GetManagedObjects')
        if not r.ok:
            return f'GetManagedObjects: {r}'
        names = sorted(i[APPLIANCE]['Name'] for i in r.value[0].values() if APPLIANCE in i)
        if names != expected:
            return f'GetManagedObjects lists {names}, expected {expected}'
    tap.check('nothing allowed: ObjectManager.GetManagedObjects works', read_objects)

    def read_introspect():
        r = call(conn, DHF_NAME, DHF_PATH, 'org.freedesktop.DBus.Introspectable', 'Introspect')
        if not r.ok or MANAGER not in r.value[0]:
            return f'Introspect: {r}'
    tap.check('nothing allowed: Introspect works', read_introspect)

    def read_policy():
        r = call(conn, DHF_NAME, DHF_PATH, POLICY, 'Show')
        if not r.ok:
            return f'Policy.Show: {r}'
        r = call(conn, DHF_NAME, DHF_PATH, POLICY, 'Test',
                 GLib.Variant('(sss)', ('switch', 'dom0', 'personal')))
        if not r.ok or r.value[0] != 'deny':
            return f'Policy.Test: {r}'
        r = call(conn, DHF_NAME, DHF_PATH, PROPERTIES, 'GetAll', GLib.Variant('(s)', (POLICY,)))
        if not r.ok or 'Degraded' not in r.value[0]:
            return f'GetAll({POLICY}): {r}'
    tap.check('nothing allowed: Policy.Show, Policy.Test and the Policy properties work',
              read_policy)

    def read_devices_display():
        r = call(conn, DHF_NAME, DHF_PATH, DEVICES, 'List')
        if not r.ok:
            return f'Devices.List: {r}'
        r = call(conn, DHF_NAME, DHF_PATH, PROPERTIES, 'GetAll', GLib.Variant('(s)', (DISPLAY,)))
        if not r.ok or r.value[0].get('Focused') != 'dom0' or 'Cycle' not in r.value[0]:
            return f'GetAll({DISPLAY}): {r}'
    tap.check('nothing allowed: Devices.List and the Display properties work',
              read_devices_display)

    tap.check('read-only calls did not consult polkit',
              lambda: None if not polkitd.checks()
              else f'CheckAuthorization was called: {polkitd.checks()}')

    # --- start allowed ------------------------------------------------------
    polkitd.set_allowed([START])
    polkitd.clear_calls()

    def start_allowed():
        r = invoke(conn, 'Start', 'personal')
        if not r.ok:
            return f'Start on personal: {r}'
        return wait_state(conn, 'personal', 'running')
    tap.check(f'only {START} allowed: Start succeeds and personal runs', start_allowed)

    def subject_of_granted():
        checks = polkitd.checks()
        me = conn.get_unique_name()
        want = [(('system-bus-name', {'name': me}), START, 0)]
        got = [(tuple(s), a, f) for s, a, f in checks]
        if got != want:
            return f'CheckAuthorization calls: expected {want}, got {got}'
    tap.check('the granted Start was checked with polkit for the caller\'s bus name',
              subject_of_granted)

    def pause_still_refused():
        r = invoke(conn, 'Pause', 'personal')
        return expect_not_authorized(r) or wait_state(conn, 'personal', 'running', 0)
    tap.check(f'only {START} allowed: Pause on the running personal still fails with '
              'NotAuthorized and it keeps running', pause_still_refused)

    def interactive_flag():
        polkitd.clear_calls()
        r = invoke(conn, 'Shutdown', 'personal',
                   Gio.DBusCallFlags.ALLOW_INTERACTIVE_AUTHORIZATION)
        problems = [expect_not_authorized(r)]
        checks = polkitd.checks()
        if len(checks) != 1 or checks[0][2] != 1:
            problems.append('expected one CheckAuthorization with flags=1 '
                            f'(AllowUserInteraction), got {checks}')
        return '\n'.join(p for p in problems if p) or None
    tap.check('a call with ALLOW_INTERACTIVE_AUTHORIZATION asks polkit with '
              'AllowUserInteraction (flags=1)', interactive_flag)

    # --- each action gates exactly its methods ---------------------------
    observed = {method: [] for method in METHODS}
    for method in METHODS:
        for action in ACTIONS:
            target, before_state, after_state = prepare(conn, polkitd, method)
            polkitd.set_allowed([action])
            should_pass = CONTRACT[method] == action

            def gated(method=method, action=action, target=target, before_state=before_state,
                      after_state=after_state, should_pass=should_pass):
                r = invoke(conn, method, target or 'personal')
                if method in AUTHORIZED_ANSWER:
                    if should_pass:
                        problem = authorized_answer(method, r)
                        if problem is None:
                            observed[method].append(action.rsplit('.', 1)[1])
                        return problem
                    return expect_not_authorized(r, CONTRACT[method])
                if r.ok:
                    observed[method].append(action.rsplit('.', 1)[1])
                if should_pass:
                    if not r.ok:
                        return f'{method} on {target}: {r}'
                    return wait_state(conn, target, after_state)
                if r.ok:
                    return f'{method} on {target} was authorized: {r}'
                return expect_not_authorized(r) or wait_state(conn, target, before_state, 0)
            if method in AUTHORIZED_ANSWER:
                outcome = ('gets dhfd\'s own answer' if should_pass
                           else f'fails with NotAuthorized naming {CONTRACT[method]}')
            else:
                outcome = 'succeeds' if should_pass else 'fails with NotAuthorized, no effect'
            tap.check(f'only {action} allowed: {method} {outcome}', gated)
    tap.diag('observed: ' + ', '.join(f'{m} <- {"/".join(a) or "nothing"}'
                                      for m, a in observed.items()))

    # --- polkitd gone ------------------------------------------------------
    prepare(conn, polkitd, 'Remove')           # probe installed, everything allowed
    bring_to(conn, 'personal', 'shutoff')
    polkitd.stop()

    def fail_closed_gone():
        problems = []
        r = invoke(conn, 'Start', 'personal')
        p = expect_not_authorized(r, START)
        if p:
            problems.append('Start: ' + p)
        r = invoke(conn, 'Remove', PROBE)
        p = expect_not_authorized(r, REMOVE)
        if p:
            problems.append('Remove: ' + p)
        for name, state in (('personal', 'shutoff'), (PROBE, 'shutoff')):
            p = wait_state(conn, name, state, 0)
            if p:
                problems.append(p)
        return '\n'.join(problems) or None
    tap.check('polkitd killed (all actions were allowed): Start and Remove fail closed with '
              'NotAuthorized and change nothing', fail_closed_gone)

    def still_serving():
        if not dhfd.alive():
            return (f'dhfd exited with status {dhfd.proc.returncode}\n'
                    + log_tail(dhfd.proc.log_path))
        return read_objects(sorted(DEMO_APPLIANCES + [PROBE])) or read_manager()
    tap.check('polkitd killed: dhfd keeps running and serving reads', still_serving)

    polkitd.start()
    polkitd.set_allowed([START])

    def back():
        r = invoke(conn, 'Start', 'personal')
        if not r.ok:
            return f'Start on personal: {r}'
        return wait_state(conn, 'personal', 'running')
    tap.check(f'polkitd back (allowing {START}): dhfd asks it again and Start succeeds', back)

    def clean_exit():
        status = dhfd.stop()
        if status != 0:
            return (f'dhfd exited with status {status}\n'
                    + log_tail(os.path.join(tmp, 'dhfd-polkit.log')))
    tap.check('dhfd (Mode=polkit) exits with status 0 on SIGTERM', clean_exit)

    # --- Mode=peer-uid -----------------------------------------------------
    # The mock stays up allowing nothing: were polkit asked, root would fail.
    polkitd.set_allowed([])
    polkitd.clear_calls()
    dhfd.start(conn, 'peer-uid')
    check_peer_uid(conn, polkitd, dhfd, address)
    tap.check('dhfd (Mode=peer-uid) exits with status 0 on SIGTERM',
              lambda: None if dhfd.stop() == 0
              else 'non-zero exit\n' + log_tail(os.path.join(tmp, 'dhfd-peer-uid.log')))


def check_peer_uid(conn, polkitd, dhfd, address):
    own = 'root' if os.getuid() == 0 else f'uid {os.getuid()} (dhfd\'s own)'

    def own_start():
        r = invoke(conn, 'Start', 'personal')
        if not r.ok:
            return f'Start on personal as {own}: {r}'
        return wait_state(conn, 'personal', 'running')
    tap.check(f'Mode=peer-uid: {own} may Start (personal runs)', own_start)

    why_not = None
    if os.getuid() != 0:
        why_not = 'needs root to make calls as nobody'
    elif shutil.which('setpriv') is None:
        why_not = 'setpriv (util-linux) is not installed'
    else:
        try:
            pwd.getpwnam('nobody')
        except KeyError:
            why_not = 'there is no user nobody'
    if why_not:
        for desc in ('nobody can connect and read',
                     'nobody\'s mutating calls fail with NotAuthorized',
                     'nobody\'s refused calls changed nothing'):
            tap.skip('Mode=peer-uid: ' + desc, why_not)
    else:
        check_nobody(conn, address)

    def own_install_remove():
        for method in ('Install', 'Remove'):
            r = invoke(conn, method, PROBE)
            if not r.ok:
                return f'{method} {PROBE} as {own}: {r}'
        return wait_state(conn, PROBE, None)
    tap.check(f'Mode=peer-uid: {own} may Install and Remove', own_install_remove)

    tap.check('Mode=peer-uid: polkit was never consulted',
              lambda: None if not polkitd.checks()
              else f'CheckAuthorization was called: {polkitd.checks()}')


def check_nobody(conn, address):
    personal = path_of(conn, 'personal')
    before = snapshot(conn)
    # (path, iface, method, signature, args) as JSON for the client.
    reads = [
        (personal, PROPERTIES, 'Get', '(ss)', [APPLIANCE, 'Name']),
        (DHF_PATH, OBJECT_MANAGER, 'GetManagedObjects', '', []),
        (DHF_PATH, POLICY, 'Show', '', []),
        (DHF_PATH, POLICY, 'Test', '(sss)', ['switch', 'dom0', 'personal']),
        (DHF_PATH, DEVICES, 'List', '', []),
    ]
    mutating = [
        (personal, APPLIANCE, 'Pause', '', []),
        (personal, APPLIANCE, 'Shutdown', '(u)', [5000]),
        (personal, APPLIANCE, 'Resume', '', []),
        (path_of(conn, 'corporate'), APPLIANCE, 'Start', '', []),
        (DHF_PATH, MANAGER, 'Install', '(sa{sv})', [PROBE_MANIFEST, {}]),
        (DHF_PATH, MANAGER, 'Remove', '(sa{sv})', ['file-sync', {}]),
        (DHF_PATH, POLICY, 'Reload', '', []),
        (DHF_PATH, XDM, 'ListConnections', '', []),
        (DHF_PATH, XDM, 'RegisterPromptAgent', '(o)', [AGENT_PATH]),
        (DHF_PATH, DEVICES, 'Assign', '(ssa{sv})', ['usb-99-9', 'personal', {}]),
        (DHF_PATH, DISPLAY, 'Switch', '(s)', ['dom0']),
        (DHF_PATH, DISPLAY, 'Screenshot', '(sa{sv})', ['personal', {}]),
    ]
    nobody_uid, uid, bus_uid, replies = run_as_nobody(address, reads + mutating)

    def reads_ok():
        if uid != nobody_uid or bus_uid != nobody_uid:
            return (f'the client ran as uid {uid} and the bus saw uid {bus_uid}, '
                    f'expected nobody ({nobody_uid})')
        problems = [f'{c[2]}: {r}' for c, r in zip(reads, replies) if not r.ok]
        if not problems and replies[0].value != "('personal',)":
            problems.append(f'Get Name: {replies[0]}')
        return '\n'.join(problems) or None
    tap.check('Mode=peer-uid: nobody (the bus sees its uid) can connect and read', reads_ok)

    def refused():
        problems = []
        for c, r in zip(mutating, replies[len(reads):]):
            p = expect_not_authorized(r)
            if p:
                problems.append(f'{c[2]}: {p}')
        return '\n'.join(problems) or None
    tap.check('Mode=peer-uid: nobody\'s Start/Shutdown/Pause/Resume/Install/Remove/Reload/'
              'ListConnections/RegisterPromptAgent/Assign/Switch/Screenshot all fail with '
              'NotAuthorized', refused)
    tap.check('Mode=peer-uid: nobody\'s refused calls changed nothing',
              lambda: None if snapshot(conn) == before
              else f'before: {before}\nafter:  {snapshot(conn)}')


if __name__ == '__main__':
    try:
        main()
    except Exception as e:
        tap.diag(str(e) if isinstance(e, Fatal) else traceback.format_exc())
        print(f'Bail out! {str(e).splitlines()[0] if str(e) else type(e).__name__}', flush=True)
        sys.exit(1)
    print(f'1..{tap.n}', flush=True)
    sys.exit(1 if tap.failed else 0)
