/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* dhf-bench-guests: real guests end to end. How long a tiny Linux
 * appliance (tests/vm/build-guest) takes from Appliance.Start to its first
 * XDM HELLO, and what a guest-to-guest call through dhfd over the real
 * virtio-serial channels costs, next to the same call between two
 * simulated domains (dhf-example-guest on the listen: sockets of libvirt's
 * test driver) in the same run.
 *
 * Takes no arguments and must run as root: it starts libvirtd
 * (scripts/libvirtd-up), builds the guests, starts a private dbus-daemon
 * and dhfd on qemu:///system with its own configuration and policy in a
 * temporary directory, installs the appliances of tests/vm/appliances
 * through dhfd, and later a second dhfd over the test driver. Its domains
 * and processes are removed on exit, also when it fails or is interrupted;
 * the temporary directory too, unless it failed. See bench/README.md. */
#include "config.h"

#include <errno.h>
#include <json-c/json.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include <dhf/dhf.h>
#include <glib-unix.h>
#include <glib/gstdio.h>
#include <libvirt/libvirt.h>
#include <libvirt/virterror.h>

#include "dhf-bench-runner.h"
#include "dhf-bench-util.h"

#define PROGRAM         "dhf-bench-guests"
#define URI             "qemu:///system"
#define N_BOOTS         5
#define CALL_COUNT      1000
#define CALL_WARMUP     50
#define PAYLOAD         64 /* bytes of the echoed JSON string, quotes included */
#define GUEST_SERVICE   "org.dhf.example.Guest1"
#define DHFD_READY_S    30
#define BOOT_TIMEOUT_S  60
#define READY_TIMEOUT_S 30
#define START_CALL_MS   120000
#define INFO_CALL_MS    10000
#define BENCH_CALL_MS   (10 * 60 * 1000)
#define POLL_US         10000
#define CONSOLE_LINES   25
#define MANAGER_IFACE   "org.dhf.Framework1.Manager"
#define APPLIANCE_IFACE "org.dhf.Framework1.Appliance"
#define XDM_IFACE       "org.dhf.Framework1.Xdm"

G_DEFINE_AUTOPTR_CLEANUP_FUNC (json_object, json_object_put)

/* The real appliances: two cloud-flavour services (the calls' provider
 * and caller; the first one's boots are the ones timed, as the issue asks
 * of the cloud kernel) and a generic-flavour environment, whose boots are
 * timed for comparison. */
typedef enum
{
  GUEST_A,
  GUEST_B,
  GUEST_DESK,
  N_GUESTS
} GuestIndex;

typedef struct
{
  const gchar *suffix;   /* the domain is dhfbench-PID-SUFFIX */
  const gchar *manifest; /* in tests/vm/appliances */
  const gchar *flavour;  /* what its "boot" names: FLAVOUR/vmlinuz */
} GuestSpec;

static const GuestSpec guest_specs[N_GUESTS] = {
  [GUEST_A] = { "a", "store.json", "cloud" },
  [GUEST_B] = { "b", "store.json", "cloud" },
  [GUEST_DESK] = { "desk", "desk-a.json", "generic" },
};
static const gchar *const flavours[] = { "cloud", "generic" };
/* The simulated pair: provider, caller. */
static const gchar *const sim_names[2] = { "sim-a", "sim-b" };

/* What there is to clean up, for cleanup() (dhf-bench-runner.h). */
typedef struct
{
  GMutex lock;
  gboolean cleaned;
  gchar *tmpdir;
  gchar *names[N_GUESTS];
  GSubprocess *dhfd;
  GSubprocess *sim_guests[G_N_ELEMENTS (sim_names)];
  GTestDBus *bus;
  const gchar *agent;     /* dhf-example-guest: in the guests and simulated */
  gboolean real_channels; /* our dhfd drives real guests now */
  gchar *own_dhfd_pid;    /* its pid; the bench thread's only */
  gboolean keep;
} Bench;

static Bench bench;

/* One bench op's answer, as the calling guest measured it. */
typedef struct
{
  gint64 count, errors;
  gdouble min_us, p50_us, p99_us, max_us;
} CallFigures;

/* --- cleanup and failure ---------------------------------------------- */

/* Called with bench.lock held. */
static void
stop_sim_guests_locked (void)
{
  for (guint i = 0; i < G_N_ELEMENTS (bench.sim_guests); i++)
    {
      GSubprocess *guest = g_steal_pointer (&bench.sim_guests[i]);

      if (guest == NULL)
        continue;
      g_subprocess_send_signal (guest, SIGTERM);
      g_subprocess_wait (guest, NULL, NULL);
      g_object_unref (guest);
    }
}

/* Idempotent, and safe from any thread: the first caller cleans up, a
 * second waits until that is done. */
static void
cleanup (gboolean failed)
{
  g_mutex_lock (&bench.lock);
  if (!bench.cleaned)
    {
      GSubprocess *dhfd = g_steal_pointer (&bench.dhfd);

      bench.cleaned = TRUE;
      if (dhfd != NULL)
        {
          dhf_bench_stop_dhfd (dhfd);
          g_object_unref (dhfd);
        }
      stop_sim_guests_locked ();
      dhf_bench_remove_domains (URI, (const gchar *const *) bench.names, N_GUESTS);
      if (bench.bus != NULL)
        g_test_dbus_down (bench.bus);
      g_clear_object (&bench.bus);
      if (bench.tmpdir != NULL && !bench.keep && !failed)
        dhf_bench_remove_tree (bench.tmpdir);
      else if (bench.tmpdir != NULL)
        fprintf (stderr, PROGRAM ": kept %s (dhfd.log, console/ with the guests' consoles, sim/)\n",
                 bench.tmpdir);
    }
  g_mutex_unlock (&bench.lock);
}

static void G_GNUC_NORETURN
die_virt (const gchar *what, const gchar *name)
{
  dhf_bench_fail ("%s %s: %s", what, name, virGetLastErrorMessage ());
}

/* Hands a process the bench thread started to cleanup(), which stops it if
 * the run is interrupted; the bench thread keeps its own reference, so
 * that cleanup() on the main thread never frees what it uses. */
static void
adopt (GSubprocess **slot, GSubprocess *process)
{
  gboolean late;

  g_mutex_lock (&bench.lock);
  late = bench.cleaned;
  if (!late)
    *slot = g_object_ref (process);
  g_mutex_unlock (&bench.lock);
  if (late)
    {
      g_subprocess_force_exit (process);
      dhf_bench_fail ("interrupted");
    }
}

/* Stops the dhfd of the moment with SIGTERM, holding the lock so that an
 * interrupt's cleanup() waits for it instead of racing it. */
static void
stop_dhfd (const gchar *what, const gchar *log_path)
{
  GSubprocess *dhfd;
  gboolean clean = FALSE;

  g_mutex_lock (&bench.lock);
  dhfd = g_steal_pointer (&bench.dhfd);
  if (dhfd != NULL)
    {
      clean = dhf_bench_stop_dhfd (dhfd);
      g_object_unref (dhfd);
    }
  g_mutex_unlock (&bench.lock);
  if (dhfd == NULL)
    dhf_bench_fail ("interrupted");
  if (!clean)
    dhf_bench_fail ("%s did not exit cleanly on SIGTERM (its log: %s)", what, log_path);
}

/* --- files ------------------------------------------------------------ */

static void
write_file (const gchar *path, const gchar *contents)
{
  g_autoptr (GError) error = NULL;

  if (!g_file_set_contents (path, contents, -1, &error))
    dhf_bench_fail ("%s", error->message);
}

static gchar *
make_dir (const gchar *parent, const gchar *name)
{
  gchar *path = g_build_filename (parent, name, NULL);

  if (g_mkdir (path, 0755) != 0)
    dhf_bench_fail ("creating %s: %s", path, g_strerror (errno));
  return path;
}

/* The last lines of a guest's serial console (virtlogd keeps it, part of
 * what dhfd's ConsoleLogDirectory does), for a failure's message. */
static gchar *
console_tail (const gchar *name)
{
  g_autofree gchar *log_name = g_strconcat (name, ".log", NULL);
  g_autofree gchar *path = g_build_filename (bench.tmpdir, "console", log_name, NULL);
  g_autofree gchar *text = NULL;
  const gchar *start;
  guint lines = 0;

  if (!g_file_get_contents (path, &text, NULL, NULL) || *text == '\0')
    return g_strdup_printf ("(nothing in %s)", path);
  start = text + strlen (text);
  while (start > text && lines <= CONSOLE_LINES)
    lines += *--start == '\n';
  if (*start == '\n')
    start++;
  return g_strdup_printf ("the end of %s:\n%s", path, start);
}

/* The payload echoed by every call: a JSON string of PAYLOAD bytes. */
static gchar *
payload_string (void)
{
  GString *s = g_string_new (NULL);

  for (guint i = 0; i < PAYLOAD - 2; i++)
    g_string_append_c (s, (gchar) ('a' + i % 26));
  return g_string_free (s, FALSE);
}

/* --- other dhfds ------------------------------------------------------ */

/* Whether the dhfd with this pid drives libvirt's test driver, which has
 * no channels to take (the test suites' simulated domains). */
static gboolean
drives_test_driver (const gchar *pid)
{
  g_autofree gchar *path = g_build_filename ("/proc", pid, "cmdline", NULL);
  g_autofree gchar *cmdline = NULL;
  gsize length = 0;

  if (!g_file_get_contents (path, &cmdline, &length, NULL))
    return FALSE;
  /* NUL-separated arguments; g_file_get_contents() adds a final NUL. */
  for (const gchar *arg = cmdline; arg < cmdline + length; arg += strlen (arg) + 1)
    {
      const gchar *next = arg + strlen (arg) + 1;

      if (g_str_has_prefix (arg, "--hypervisor=test:")
          || (g_str_equal (arg, "--hypervisor") && next < cmdline + length
              && g_str_has_prefix (next, "test:")))
        return TRUE;
    }
  return FALSE;
}

/* The pids of the dhfd processes running now but ours and those on the
 * test driver, space-separated, or NULL. */
static gchar *
other_dhfds (void)
{
  g_autoptr (GDir) proc = g_dir_open ("/proc", 0, NULL);
  g_autoptr (GString) pids = g_string_new (NULL);
  const gchar *own = bench.own_dhfd_pid;
  const gchar *entry;

  while (proc != NULL && (entry = g_dir_read_name (proc)) != NULL)
    {
      g_autofree gchar *comm_path = g_build_filename ("/proc", entry, "comm", NULL);
      g_autofree gchar *comm = NULL;

      if (!g_ascii_isdigit (entry[0]) || g_strcmp0 (entry, own) == 0
          || !g_file_get_contents (comm_path, &comm, NULL, NULL))
        continue;
      if (g_str_equal (g_strchomp (comm), "dhfd") && !drives_test_driver (entry))
        g_string_append_printf (pids, "%s%s", pids->len > 0 ? " " : "", entry);
    }
  return pids->len > 0 ? g_string_free (g_steal_pointer (&pids), FALSE) : NULL;
}

/* The suites and benchmarks on a real hypervisor take one lock
 * (dhf_bench_lock_hypervisor()); a dhfd running outside them (an
 * installed one, say) would still take our guests' sessions, and ours
 * its guests'. */
static void
refuse_other_dhfds (void)
{
  g_autofree gchar *pids = other_dhfds ();

  if (pids != NULL)
    dhf_bench_fail ("another dhfd (pid %s) drives a real hypervisor: it would take the guests' XDM "
                    "channels; stop it first",
                    pids);
}

/* While our dhfd drives the real guests, fails when another dhfd started
 * after ours: it takes the channels of the guests that boot. */
static void
check_no_other_dhfd (void)
{
  g_autofree gchar *pids = bench.real_channels ? other_dhfds () : NULL;

  if (pids != NULL)
    dhf_bench_fail (
        "another dhfd (pid %s) started during the run: it takes the guests' XDM channels; run "
        "again when it is gone",
        pids);
}

/* --- the guest images and their manifests ----------------------------- */

/* tests/vm/build-guest --out TMP/FLAVOUR: the kernel and initramfs the
 * manifests name as FLAVOUR/vmlinuz and FLAVOUR/initrd.img. */
static void
build_guest (const gchar *flavour)
{
  g_autofree gchar *script
      = g_build_filename (DHF_BENCH_SOURCE_ROOT, "tests", "vm", "build-guest", NULL);
  g_autofree gchar *out_dir = g_build_filename (bench.tmpdir, flavour, NULL);
  const gchar *argv[]
      = { script, "--agent", bench.agent, "--flavour", flavour, "--out", out_dir, "--quiet", NULL };
  g_autoptr (GError) error = NULL;
  g_autofree gchar *output = NULL;
  g_autofree gchar *errors = NULL;
  g_auto (GStrv) lines = NULL;
  const gchar *version = "?", *cached = "?";
  gint64 t0 = g_get_monotonic_time ();
  gint status = 0;

  if (!g_spawn_sync (NULL, (gchar **) argv, NULL, G_SPAWN_DEFAULT, NULL, NULL, &output, &errors,
                     &status, &error)
      || !g_spawn_check_wait_status (status, &error))
    dhf_bench_fail ("%s --flavour %s: %s\n%s", script, flavour, error->message,
                    errors ? errors : "");
  lines = g_strsplit (output, "\n", -1);
  for (guint i = 0; lines[i] != NULL; i++)
    {
      if (g_str_has_prefix (lines[i], "kernel_version="))
        version = lines[i] + strlen ("kernel_version=");
      else if (g_str_has_prefix (lines[i], "cached="))
        cached = lines[i] + strlen ("cached=");
    }
  printf ("%s guest: kernel %s, image %s (%.1f s)\n", flavour, version,
          g_str_equal (cached, "yes") ? "from the cache" : "built",
          (g_get_monotonic_time () - t0) / 1e6);
  fflush (stdout);
}

/* The appliance's manifest from tests/vm/appliances under a name of ours,
 * written next to the guest images it names (TMP/NAME.json). */
static gchar *
guest_manifest (const GuestSpec *spec, const gchar *name)
{
  g_autofree gchar *source
      = g_build_filename (DHF_BENCH_SOURCE_ROOT, "tests", "vm", "appliances", spec->manifest, NULL);
  g_autofree gchar *file = g_strconcat (name, ".json", NULL);
  g_autofree gchar *target = g_build_filename (bench.tmpdir, file, NULL);
  g_autofree gchar *kernel = g_strconcat (spec->flavour, "/vmlinuz", NULL);
  g_autofree gchar *text = NULL;
  g_autoptr (GError) error = NULL;
  g_autoptr (json_object) root = NULL;
  json_object *boot, *value;
  gchar *json;

  if (!g_file_get_contents (source, &text, NULL, &error))
    dhf_bench_fail ("%s", error->message);
  root = json_tokener_parse (text);
  if (root == NULL || !json_object_is_type (root, json_type_object))
    dhf_bench_fail ("%s: not a JSON object", source);
  /* The image this program built for it must be the one it boots. */
  if (!json_object_object_get_ex (root, "boot", &boot)
      || !json_object_object_get_ex (boot, "kernel", &value)
      || !json_object_is_type (value, json_type_string)
      || !g_str_equal (json_object_get_string (value), kernel))
    dhf_bench_fail ("%s: expected \"boot\": {\"kernel\": \"%s\", ...}", source, kernel);
  json_object_object_add (root, "name", json_object_new_string (name));
  json = g_strdup (json_object_to_json_string_ext (root, JSON_C_TO_STRING_PRETTY
                                                             | JSON_C_TO_STRING_NOSLASHESCAPE));
  write_file (target, json);
  return json;
}

/* --- dhfd over D-Bus -------------------------------------------------- */

static GVariant *
call_dhfd (GDBusConnection *bus, const gchar *path, const gchar *iface, const gchar *method,
           GVariant *args, const gchar *reply_type, gint timeout_ms, GError **error)
{
  GVariant *reply
      = g_dbus_connection_call_sync (bus, DHF_BUS_NAME, path, iface, method, args,
                                     reply_type != NULL ? G_VARIANT_TYPE (reply_type) : NULL,
                                     G_DBUS_CALL_FLAGS_NONE, timeout_ms, NULL, error);

  if (reply == NULL)
    g_dbus_error_strip_remote_error (*error);
  return reply;
}

static gchar *
install (GDBusConnection *bus, const gchar *name, const gchar *manifest)
{
  g_autoptr (GError) error = NULL;
  g_autoptr (GVariantBuilder) options = g_variant_builder_new (G_VARIANT_TYPE_VARDICT);
  g_autoptr (GVariant) reply = NULL;
  gchar *path = NULL;

  /* The manifest names its kernel relative to its own directory. */
  g_variant_builder_add (options, "{sv}", "base-directory", g_variant_new_string (bench.tmpdir));
  reply = call_dhfd (bus, DHF_OBJECT_PATH, MANAGER_IFACE, "Install",
                     g_variant_new ("(sa{sv})", manifest, options), "(ob)", START_CALL_MS, &error);
  if (reply == NULL)
    dhf_bench_fail ("installing %s: %s", name, error->message);
  g_variant_get (reply, "(ob)", &path, NULL);
  return path;
}

static gchar *
appliance_state (GDBusConnection *bus, const gchar *path)
{
  g_autoptr (GError) error = NULL;
  g_autoptr (GVariant) reply
      = call_dhfd (bus, path, "org.freedesktop.DBus.Properties", "Get",
                   g_variant_new ("(ss)", APPLIANCE_IFACE, "State"), "(v)", 5000, &error);
  g_autoptr (GVariant) value = NULL;

  if (reply == NULL)
    dhf_bench_fail ("reading the State of %s: %s", path, error->message);
  g_variant_get (reply, "(v)", &value);
  if (!g_variant_is_of_type (value, G_VARIANT_TYPE_STRING))
    dhf_bench_fail ("the State of %s is not a string", path);
  return g_variant_dup_string (value, NULL);
}

static void
start_appliance (GDBusConnection *bus, const gchar *path, const gchar *name)
{
  g_autoptr (GError) error = NULL;
  g_autoptr (GVariant) reply
      = call_dhfd (bus, path, APPLIANCE_IFACE, "Start", NULL, NULL, START_CALL_MS, &error);

  if (reply == NULL)
    dhf_bench_fail ("Appliance.Start of %s: %s", name, error->message);
}

/* Destroys the domain with a libvirt call of our own (dhfd's Shutdown
 * would first ask the guest by ACPI) and waits until dhfd has seen it
 * off, so that the next Start finds it shut off. */
static void
destroy_guest (virConnectPtr conn, GDBusConnection *bus, const gchar *path, const gchar *name)
{
  virDomainPtr dom = virDomainLookupByName (conn, name);
  gint64 deadline = g_get_monotonic_time () + READY_TIMEOUT_S * G_USEC_PER_SEC;

  if (dom == NULL)
    die_virt ("looking up", name);
  if (virDomainDestroy (dom) != 0)
    die_virt ("destroying", name);
  virDomainFree (dom);
  for (;;)
    {
      g_autofree gchar *state = appliance_state (bus, path);

      if (g_str_equal (state, "shutoff"))
        return;
      if (g_get_monotonic_time () > deadline)
        dhf_bench_fail ("dhfd still reports %s %s %d s after it was destroyed", name, state,
                        READY_TIMEOUT_S);
      g_usleep (POLL_US);
    }
}

/* When dhfd sent the WELCOME of the current session on the domain's
 * channel (µs of real time), or -1 when it has none. With seen, adds a
 * line per connection of the domain, for a failure's message. */
static gint64
session_started_at (GDBusConnection *bus, const gchar *name, GString *seen)
{
  g_autoptr (GError) error = NULL;
  g_autoptr (GVariant) reply = call_dhfd (bus, DHF_OBJECT_PATH, XDM_IFACE, "ListConnections", NULL,
                                          "(aa{sv})", 5000, &error);
  g_autoptr (GVariantIter) iter = NULL;
  GVariant *entry = NULL;
  gint64 latest = -1;

  if (reply == NULL)
    dhf_bench_fail ("Xdm.ListConnections: %s", error->message);
  g_variant_get (reply, "(aa{sv})", &iter);
  /* g_variant_iter_loop() frees each entry in turn. */
  while (g_variant_iter_loop (iter, "@a{sv}", &entry))
    {
      const gchar *domain, *transport;
      gint64 started;

      if (!g_variant_lookup (entry, "domain", "&s", &domain) || !g_str_equal (domain, name))
        continue;
      if (seen != NULL)
        {
          g_autofree gchar *text = g_variant_print (entry, FALSE);

          g_string_append_printf (seen, "\n  %s", text);
        }
      if (g_variant_lookup (entry, "transport", "&s", &transport)
          && g_str_equal (transport, "channel")
          && g_variant_lookup (entry, "session-started-at", "x", &started))
        latest = MAX (latest, started);
    }
  return latest;
}

static gboolean
provides (GDBusConnection *bus, const gchar *service, const gchar *name)
{
  g_autoptr (GError) error = NULL;
  g_autoptr (GVariant) reply
      = call_dhfd (bus, DHF_OBJECT_PATH, XDM_IFACE, "ListServices", NULL, "(aa{sv})", 5000, &error);
  g_autoptr (GVariantIter) iter = NULL;
  GVariant *entry = NULL;
  gboolean found = FALSE;

  if (reply == NULL)
    dhf_bench_fail ("Xdm.ListServices: %s", error->message);
  g_variant_get (reply, "(aa{sv})", &iter);
  while (g_variant_iter_loop (iter, "@a{sv}", &entry))
    {
      const gchar *s, *domain;

      found |= g_variant_lookup (entry, "service", "&s", &s) && g_str_equal (s, service)
               && g_variant_lookup (entry, "domain", "&s", &domain) && g_str_equal (domain, name);
    }
  return found;
}

/* Waits until the guest's agent has registered its service with dhfd
 * (it does so right after its WELCOME). */
static void
wait_for_service (GDBusConnection *bus, const gchar *name)
{
  gint64 deadline = g_get_monotonic_time () + READY_TIMEOUT_S * G_USEC_PER_SEC;

  while (!provides (bus, GUEST_SERVICE, name))
    {
      check_no_other_dhfd ();
      if (g_get_monotonic_time () > deadline)
        dhf_bench_fail ("%s did not register %s within %d s", name, GUEST_SERVICE, READY_TIMEOUT_S);
      g_usleep (POLL_US);
    }
}

/* --- calls into the guests -------------------------------------------- */

/* dom0's own client on dhfd's local socket. */
static DhfClient *
dom0_client (const gchar *socket_path)
{
  g_autofree gchar *address = g_strconcat ("unix:", socket_path, NULL);
  g_autoptr (GError) error = NULL;
  DhfClient *client = dhf_client_new (address);

  if (!dhf_client_connect_sync (client, NULL, &error))
    dhf_bench_fail ("connecting to dhfd's XDM socket %s: %s", socket_path, error->message);
  return client;
}

static void
close_client (DhfClient *client)
{
  dhf_client_close (client);
  g_object_unref (client);
}

/* Calls the guest's GUEST_SERVICE; its result as a JSON object. */
static json_object *
guest_call (DhfClient *client, const gchar *target, json_object *params, gint timeout_ms)
{
  const gchar *text = json_object_to_json_string_ext (params, JSON_C_TO_STRING_PLAIN);
  g_autoptr (GError) error = NULL;
  g_autofree gchar *result
      = dhf_client_call_sync (client, GUEST_SERVICE, target, text, timeout_ms, NULL, &error);
  json_object *root;

  if (result == NULL)
    dhf_bench_fail ("%s on %s with %s: %s", GUEST_SERVICE, target, text, error->message);
  root = json_tokener_parse (result);
  if (root == NULL || !json_object_is_type (root, json_type_object))
    dhf_bench_fail ("%s on %s with %s: the result is not a JSON object: %s", GUEST_SERVICE, target,
                    text, result);
  return root;
}

static gdouble
number_field (json_object *root, const gchar *key, const gchar *what)
{
  json_object *value;

  if (!json_object_object_get_ex (root, key, &value)
      || (!json_object_is_type (value, json_type_int)
          && !json_object_is_type (value, json_type_double)))
    dhf_bench_fail ("%s: no number \"%s\" in %s", what, key, json_object_to_json_string (root));
  return json_object_get_double (value);
}

/* The bench op: CALL_COUNT sequential echo calls from caller to provider,
 * timed inside the caller. */
static CallFigures
bench_call (DhfClient *client, const gchar *caller, const gchar *provider)
{
  g_autoptr (json_object) params = json_object_new_object ();
  g_autoptr (json_object) result = NULL;
  g_autofree gchar *data = payload_string ();
  g_autofree gchar *what = g_strdup_printf ("the bench op of %s", caller);
  json_object *echo = json_object_new_object ();
  CallFigures f;

  json_object_object_add (echo, "op", json_object_new_string ("echo"));
  json_object_object_add (echo, "data", json_object_new_string (data));
  json_object_object_add (params, "op", json_object_new_string ("bench"));
  json_object_object_add (params, "service", json_object_new_string (GUEST_SERVICE));
  json_object_object_add (params, "target", json_object_new_string (provider));
  json_object_object_add (params, "params", echo);
  json_object_object_add (params, "count", json_object_new_int (CALL_COUNT));
  json_object_object_add (params, "warmup", json_object_new_int (CALL_WARMUP));
  result = guest_call (client, caller, params, BENCH_CALL_MS);

  f.count = (gint64) number_field (result, "count", what);
  f.errors = (gint64) number_field (result, "errors", what);
  if (f.count != CALL_COUNT || f.errors != 0)
    dhf_bench_fail ("%s: %" G_GINT64_FORMAT " calls, %" G_GINT64_FORMAT
                    " failed (asked for %d): %s",
                    what, f.count, f.errors, CALL_COUNT, json_object_to_json_string (result));
  f.min_us = number_field (result, "min_us", what);
  f.p50_us = number_field (result, "p50_us", what);
  f.p99_us = number_field (result, "p99_us", what);
  f.max_us = number_field (result, "max_us", what);
  return f;
}

static void
print_call_figures (const gchar *what, const CallFigures *f)
{
  printf ("%s: %" G_GINT64_FORMAT " calls after %d warm-up: p50 %.0f us, p99 %.0f us, min %.0f "
          "us, max %.0f us\n",
          what, f->count, CALL_WARMUP, f->p50_us, f->p99_us, f->min_us, f->max_us);
  fflush (stdout);
}

/* --- boots ------------------------------------------------------------ */

/* Starts the appliance, returns the ms from just before Appliance.Start
 * to the WELCOME of its first session, and destroys it again. */
static gdouble
boot_once (virConnectPtr conn, GDBusConnection *bus, DhfClient *client, const gchar *path,
           const gchar *name, const gchar *flavour, guint round)
{
  g_autoptr (json_object) info_params = json_object_new_object ();
  g_autoptr (json_object) info = NULL;
  gint64 deadline, started;
  gint64 t0 = g_get_real_time ();
  gint64 m0 = g_get_monotonic_time ();
  gdouble start_ms, hello_ms;

  start_appliance (bus, path, name);
  start_ms = (gdouble) (g_get_monotonic_time () - m0) / 1e3;
  deadline = m0 + BOOT_TIMEOUT_S * G_USEC_PER_SEC;
  /* Polling only finds the session: its time is dhfd's. */
  while ((started = session_started_at (bus, name, NULL)) < t0)
    {
      check_no_other_dhfd ();
      if (g_get_monotonic_time () > deadline)
        {
          g_autoptr (GString) seen = g_string_new (NULL);
          g_autofree gchar *tail = console_tail (name);

          session_started_at (bus, name, seen);
          dhf_bench_fail (
              "%s: no XDM session on its channel %d s after Appliance.Start at %" G_GINT64_FORMAT
              " us; its connections in Xdm.ListConnections:%s\n%s",
              name, BOOT_TIMEOUT_S, t0, seen->len > 0 ? seen->str : " none", tail);
        }
      g_usleep (POLL_US);
    }
  hello_ms = (gdouble) (started - t0) / 1e3;

  /* The guest's own view: its uptime when its first WELCOME came. */
  wait_for_service (bus, name);
  json_object_object_add (info_params, "op", json_object_new_string ("info"));
  info = guest_call (client, name, info_params, INFO_CALL_MS);
  printf ("%-7s boot %u: %6.0f ms to the first HELLO (Start answered after %.0f ms; the guest's "
          "uptime at its WELCOME: %.0f ms)\n",
          flavour, round + 1, hello_ms, start_ms,
          number_field (info, "first_session_uptime_ms", "info"));
  fflush (stdout);
  destroy_guest (conn, bus, path, name);
  return hello_ms;
}

/* --- the simulated pair ----------------------------------------------- */

/* Two dhf-example-guest processes listening on the channel sockets of two
 * test-driver domains, dhfd over that node; returns the bench op's figures
 * between them. dhfd is stopped again, and the guests. */
static CallFigures
simulated_call (GDBusConnection *bus, const gchar *dhfd_path, const gchar *policy_dir)
{
  g_autofree gchar *sim_dir = make_dir (bench.tmpdir, "sim");
  g_autofree gchar *channels = make_dir (sim_dir, "channels");
  g_autofree gchar *node = g_build_filename (sim_dir, "node.xml", NULL);
  g_autofree gchar *config_path = g_build_filename (sim_dir, "dhfd.conf", NULL);
  g_autofree gchar *xdm_socket = g_build_filename (sim_dir, "xdm.sock", NULL);
  g_autofree gchar *log_path = g_build_filename (bench.tmpdir, "dhfd.log", NULL);
  g_autofree gchar *uri = g_strconcat ("test://", node, NULL);
  g_autofree gchar *config = NULL;
  g_autoptr (GPtrArray) testnode = g_ptr_array_new_with_free_func (g_free);
  g_autoptr (GError) error = NULL;
  g_autofree gchar *errors = NULL;
  const gchar *const extra[] = { "--xdm-socket", xdm_socket, NULL };
  g_autoptr (GSubprocess) dhfd = NULL;
  DhfClient *client;
  CallFigures figures;
  gint status = 0;

  g_ptr_array_add (testnode, g_strdup (DHF_BENCH_TESTNODE));
  g_ptr_array_add (testnode, g_strdup ("--running"));
  g_ptr_array_add (testnode, g_strdup ("--channel-dir"));
  g_ptr_array_add (testnode, g_strdup (channels));
  g_ptr_array_add (testnode, g_strdup ("--output"));
  g_ptr_array_add (testnode, g_strdup (node));
  for (guint i = 0; i < G_N_ELEMENTS (sim_names); i++)
    {
      g_autofree gchar *file = g_strconcat (sim_names[i], ".json", NULL);
      gchar *path = g_build_filename (sim_dir, file, NULL);
      g_autofree gchar *manifest = g_strdup_printf (
          "{\"manifest-version\": 1, \"name\": \"%s\", \"vendor\": \"dhf bench\","
          " \"version\": \"1.0.0\", \"role\": \"service\", \"memory\": \"128MiB\", \"vcpus\": 1}\n",
          sim_names[i]);

      write_file (path, manifest);
      g_ptr_array_add (testnode, path);
    }
  g_ptr_array_add (testnode, NULL);
  if (!g_spawn_sync (NULL, (gchar **) testnode->pdata, NULL, G_SPAWN_STDOUT_TO_DEV_NULL, NULL, NULL,
                     NULL, &errors, &status, &error)
      || !g_spawn_check_wait_status (status, &error))
    dhf_bench_fail ("%s: %s\n%s", DHF_BENCH_TESTNODE, error->message, errors ? errors : "");

  /* The agents listen first, as booted guests' channels would. */
  for (guint i = 0; i < G_N_ELEMENTS (sim_names); i++)
    {
      g_autofree gchar *socket_name = g_strconcat (sim_names[i], ".sock", NULL);
      g_autofree gchar *socket_path = g_build_filename (channels, socket_name, NULL);
      g_autofree gchar *address = g_strconcat ("listen:", socket_path, NULL);
      g_autofree gchar *log_name = g_strconcat (sim_names[i], ".log", NULL);
      g_autofree gchar *agent_log = g_build_filename (sim_dir, log_name, NULL);
      g_autoptr (GSubprocessLauncher) launcher
          = g_subprocess_launcher_new (G_SUBPROCESS_FLAGS_STDERR_MERGE);
      gint64 deadline = g_get_monotonic_time () + READY_TIMEOUT_S * G_USEC_PER_SEC;

      g_autoptr (GSubprocess) agent = NULL;

      g_subprocess_launcher_set_stdout_file_path (launcher, agent_log);
      agent
          = g_subprocess_launcher_spawn (launcher, &error, bench.agent, "--address", address, NULL);
      if (agent == NULL)
        dhf_bench_fail ("spawning %s: %s", bench.agent, error->message);
      adopt (&bench.sim_guests[i], agent);
      while (!g_file_test (socket_path, G_FILE_TEST_EXISTS))
        {
          if (g_subprocess_get_identifier (agent) == NULL)
            dhf_bench_fail ("%s exited before listening on %s (its log: %s)", bench.agent,
                            socket_path, agent_log);
          if (g_get_monotonic_time () > deadline)
            dhf_bench_fail ("%s did not listen on %s within %d s", bench.agent, socket_path,
                            READY_TIMEOUT_S);
          g_usleep (POLL_US);
        }
    }

  config = g_strdup_printf ("[Appliances]\nStorageDirectory=%s/images\n"
                            "[Authorization]\nMode=peer-uid\n"
                            "[Policy]\nDirectories=%s\nLastGood=%s/policy.last-good\n"
                            "[Devices]\nStateFile=%s/devices.json\n"
                            "[XDM]\nVsockPort=0\n",
                            sim_dir, policy_dir, sim_dir, sim_dir);
  write_file (config_path, config);
  dhfd = dhf_bench_spawn_dhfd_logged (dhfd_path, g_test_dbus_get_bus_address (bench.bus), uri,
                                      config_path, log_path, extra, &error);
  if (dhfd == NULL)
    dhf_bench_fail ("spawning %s: %s", dhfd_path, error->message);
  adopt (&bench.dhfd, dhfd);
  if (!dhf_bench_wait_for_dhfd (bus, dhfd, DHFD_READY_S, &error))
    dhf_bench_fail ("the simulated domains' dhfd: %s (its log: %s)", error->message, log_path);
  for (guint i = 0; i < G_N_ELEMENTS (sim_names); i++)
    wait_for_service (bus, sim_names[i]);

  client = dom0_client (xdm_socket);
  figures = bench_call (client, sim_names[1], sim_names[0]);
  close_client (client);

  stop_dhfd ("the simulated domains' dhfd", log_path);
  g_mutex_lock (&bench.lock);
  stop_sim_guests_locked ();
  g_mutex_unlock (&bench.lock);
  return figures;
}

/* --- the run ---------------------------------------------------------- */

static void
check_executable (const gchar *path, const gchar *what)
{
  if (!g_file_test (path, G_FILE_TEST_IS_EXECUTABLE))
    dhf_bench_fail ("no %s at %s (build it first)", what, path);
}

static gdouble
median_of (const gdouble *values, guint n)
{
  g_autofree gdouble *sorted = g_memdup2 (values, n * sizeof *values);

  return dhf_bench_percentile (sorted, n, 0.5);
}

static void
print_boots (const gchar *flavour, const gdouble *ms)
{
  g_autofree gdouble *sorted = g_memdup2 (ms, N_BOOTS * sizeof *ms);
  gdouble median = dhf_bench_percentile (sorted, N_BOOTS, 0.5);

  printf ("%s boot to the first HELLO (%d boots): median %.0f ms, min %.0f ms, max %.0f ms\n",
          flavour, N_BOOTS, median, sorted[0], sorted[N_BOOTS - 1]);
}

static gchar *
load_average (void)
{
  g_autofree gchar *text = NULL;

  if (!g_file_get_contents ("/proc/loadavg", &text, NULL, NULL))
    return g_strdup ("?");
  return g_strndup (text, strcspn (text, " "));
}

static void
run (void)
{
  g_autoptr (GError) error = NULL;
  g_autofree gchar *dhfd_path = NULL;
  g_autofree gchar *policy_dir = NULL;
  g_autofree gchar *console_dir = NULL;
  g_autofree gchar *config_path = NULL;
  g_autofree gchar *log_path = NULL;
  g_autofree gchar *xdm_socket = NULL;
  g_autofree gchar *config = NULL;
  g_autofree gchar *loadavg = load_average ();
  g_autoptr (GString) policy = g_string_new (NULL);
  g_autoptr (GDBusConnection) bus = NULL;
  g_autoptr (GSubprocess) dhfd = NULL;
  gchar *paths[N_GUESTS] = { NULL };
  gdouble boots[G_N_ELEMENTS (flavours)][N_BOOTS];
  CallFigures real, sim;
  DhfClient *client;
  virConnectPtr conn;
  const gchar *extra[3] = { "--xdm-socket", NULL, NULL };
  gdouble cloud_ms, generic_ms;

  /* A debugging run keeps its directory to read afterwards. */
  bench.keep = g_getenv ("G_MESSAGES_DEBUG") != NULL;
  if (geteuid () != 0)
    dhf_bench_fail ("must run as root: it drives the system libvirtd (%s) and QEMU", URI);
  dhfd_path = dhf_bench_dhfd_path (&error);
  if (dhfd_path == NULL)
    dhf_bench_fail ("%s", error->message);
  check_executable (DHF_BENCH_TESTNODE, "dhf-testnode");
  bench.agent = g_getenv ("DHF_EXAMPLE_GUEST");
  if (bench.agent == NULL)
    bench.agent = DHF_BENCH_EXAMPLE_GUEST;
  check_executable (bench.agent, "dhf-example-guest");

  if (!dhf_bench_lock_hypervisor (&error) || !dhf_bench_libvirtd_up (&error))
    dhf_bench_fail ("%s", error->message);
  virSetErrorFunc (NULL, dhf_bench_silence_libvirt);
  conn = virConnectOpen (URI);
  if (conn == NULL)
    dhf_bench_fail ("connecting to %s: %s", URI, virGetLastErrorMessage ());
  if (!dhf_bench_reclaim_stale_domains (conn, &error))
    dhf_bench_fail ("%s", error->message);

  /* The temporary directory first: die() cleans up what it lists. QEMU
   * runs as its own user and reads the guests' kernels in it. */
  bench.tmpdir = g_dir_make_tmp (PROGRAM "-XXXXXX", &error);
  if (bench.tmpdir == NULL)
    dhf_bench_fail ("temporary directory: %s", error->message);
  if (g_chmod (bench.tmpdir, 0755) != 0)
    dhf_bench_fail ("chmod %s: %s", bench.tmpdir, g_strerror (errno));

  printf (PROGRAM ": %d boots per flavour to the first XDM HELLO; %d guest-to-guest echo calls "
                  "(%d bytes) after %d warm-up, real and simulated; %u CPUs online, load %s\n",
          N_BOOTS, CALL_COUNT, PAYLOAD, CALL_WARMUP, (guint) sysconf (_SC_NPROCESSORS_ONLN),
          loadavg);
  fflush (stdout);
  for (guint i = 0; i < G_N_ELEMENTS (flavours); i++)
    build_guest (flavours[i]);

  policy_dir = make_dir (bench.tmpdir, "policy.d");
  console_dir = make_dir (bench.tmpdir, "console");
  config_path = g_build_filename (bench.tmpdir, "dhfd.conf", NULL);
  log_path = g_build_filename (bench.tmpdir, "dhfd.log", NULL);
  xdm_socket = g_build_filename (bench.tmpdir, "xdm.sock", NULL);
  extra[1] = xdm_socket;
  for (guint i = 0; i < N_GUESTS; i++)
    {
      bench.names[i] = g_strdup_printf ("dhfbench-%d-%s", (gint) getpid (), guest_specs[i].suffix);
      g_string_append_printf (policy, GUEST_SERVICE " @dom0 %s allow\n", bench.names[i]);
    }
  g_string_append_printf (policy, GUEST_SERVICE " %s %s allow\n", bench.names[GUEST_B],
                          bench.names[GUEST_A]);
  g_string_append_printf (policy, GUEST_SERVICE " @dom0 %s allow\n", sim_names[1]);
  g_string_append_printf (policy, GUEST_SERVICE " %s %s allow\n", sim_names[1], sim_names[0]);
  {
    g_autofree gchar *policy_path = g_build_filename (policy_dir, "50-bench.policy", NULL);

    write_file (policy_path, policy->str);
  }
  /* CPU weights left alone: the unfocused environment would otherwise boot
   * with dhfd's NormalWeight, slower than the service when the CPUs are
   * busy, and the flavours would not compare. */
  config = g_strdup_printf ("[Hypervisor]\nDomainType=qemu\n"
                            "[Appliances]\nStorageDirectory=%s/images\nConsoleLogDirectory=%s\n"
                            "[Authorization]\nMode=peer-uid\n"
                            "[Policy]\nDirectories=%s\nLastGood=%s/policy.last-good\n"
                            "[Devices]\nStateFile=%s/devices.json\n"
                            "[Display]\nFocusedWeight=0\nNormalWeight=0\n"
                            "[XDM]\nVsockPort=0\n",
                            bench.tmpdir, console_dir, policy_dir, bench.tmpdir, bench.tmpdir);
  write_file (config_path, config);

  refuse_other_dhfds ();
  bench.real_channels = TRUE;
  dhfd = dhf_bench_spawn_dhfd_logged (dhfd_path, g_test_dbus_get_bus_address (bench.bus), URI,
                                      config_path, log_path, extra, &error);
  if (dhfd == NULL)
    dhf_bench_fail ("spawning %s: %s", dhfd_path, error->message);
  adopt (&bench.dhfd, dhfd);
  bench.own_dhfd_pid = g_strdup (g_subprocess_get_identifier (dhfd));
  bus = dhf_bench_bus_connect (g_test_dbus_get_bus_address (bench.bus), &error);
  if (bus == NULL)
    dhf_bench_fail ("connecting to the private bus: %s", error->message);
  if (!dhf_bench_wait_for_dhfd (bus, dhfd, DHFD_READY_S, &error))
    dhf_bench_fail ("%s (its log: %s)", error->message, log_path);
  for (guint i = 0; i < N_GUESTS; i++)
    {
      g_autofree gchar *manifest = guest_manifest (&guest_specs[i], bench.names[i]);

      paths[i] = install (bus, bench.names[i], manifest);
    }
  client = dom0_client (xdm_socket);

  /* The flavours take turns, so that a change in the machine's load
   * weighs on both alike. */
  for (guint round = 0; round < N_BOOTS; round++)
    {
      boots[0][round]
          = boot_once (conn, bus, client, paths[GUEST_A], bench.names[GUEST_A], flavours[0], round);
      boots[1][round] = boot_once (conn, bus, client, paths[GUEST_DESK], bench.names[GUEST_DESK],
                                   flavours[1], round);
    }
  for (guint i = 0; i < G_N_ELEMENTS (flavours); i++)
    print_boots (flavours[i], boots[i]);
  fflush (stdout);

  /* The real pair: B calls A, both over their virtio-serial channels. */
  start_appliance (bus, paths[GUEST_A], bench.names[GUEST_A]);
  start_appliance (bus, paths[GUEST_B], bench.names[GUEST_B]);
  wait_for_service (bus, bench.names[GUEST_A]);
  wait_for_service (bus, bench.names[GUEST_B]);
  real = bench_call (client, bench.names[GUEST_B], bench.names[GUEST_A]);
  print_call_figures ("real guests (cloud), B -> dhfd -> A over virtio-serial, timed in B", &real);
  close_client (client);
  /* Nothing of the real guests runs during the simulated calls. */
  destroy_guest (conn, bus, paths[GUEST_A], bench.names[GUEST_A]);
  destroy_guest (conn, bus, paths[GUEST_B], bench.names[GUEST_B]);
  stop_dhfd ("dhfd", log_path);
  bench.real_channels = FALSE;

  sim = simulated_call (bus, dhfd_path, policy_dir);
  print_call_figures ("simulated domains, sim-b -> dhfd -> sim-a over AF_UNIX, timed in sim-b",
                      &sim);

  cloud_ms = median_of (boots[0], N_BOOTS);
  generic_ms = median_of (boots[1], N_BOOTS);
  printf ("real call p50 / simulated call p50: %.1fx\n", real.p50_us / sim.p50_us);
  printf ("RESULT boot_to_hello_ms=%.0f call_p50_us=%.0f call_p99_us=%.0f "
          "simulated_call_p50_us=%.0f simulated_call_p99_us=%.0f call_ratio_to_simulated=%.1f "
          "generic_boot_to_hello_ms=%.0f\n",
          cloud_ms, real.p50_us, real.p99_us, sim.p50_us, sim.p99_us, real.p50_us / sim.p50_us,
          generic_ms);
  fflush (stdout);

  for (guint i = 0; i < N_GUESTS; i++)
    g_free (paths[i]);
  virConnectClose (conn);
}

int
main (int argc, char **argv)
{
  static const DhfBenchRunner runner = { PROGRAM, run, cleanup };

  return dhf_bench_runner_main (&runner, argc, &bench.bus);
}
