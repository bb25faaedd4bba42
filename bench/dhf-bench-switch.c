/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* dhf-bench-switch: what a display switch through dhfd costs against a
 * real libvirtd + QEMU, next to the floor: the bare libvirt hot-plug calls
 * that move the same two input devices, made by this program with dhfd
 * stopped.
 *
 * Takes no arguments and must run as root: it starts libvirtd
 * (scripts/libvirtd-up), a private dbus-daemon and dhfd on qemu:///system
 * with its own configuration, policy and state in a temporary directory,
 * and defines two QEMU (TCG) environments with a qemu-xhci controller.
 * Everything it made is removed on exit, also when it fails or is
 * interrupted. See bench/README.md. */
#include "config.h"

#include <signal.h>
#include <stdio.h>
#include <time.h>
#include <unistd.h>

#include <dhf/dhf.h>
#include <glib-unix.h>
#include <glib/gstdio.h>
#include <libvirt/libvirt.h>
#include <libvirt/virterror.h>

#include "dhf-bench-runner.h"
#include "dhf-bench-util.h"
#include "dhf-device-inventory.h"
#include "dhf-device.h"

#define URI        "qemu:///system"
#define N_SWITCHES 100
/* The two series alternate in blocks (dhfd runs, then is stopped for the
 * floor), so that a change in the machine's load during the run weighs on
 * both alike. Even counts: every block ends where it started, and a dhfd
 * started again finds the devices where its saved focus says. */
#define N_BLOCKS  5
#define PER_BLOCK (N_SWITCHES / N_BLOCKS)
#define N_WARMUP  4 /* unmeasured switches after each start of dhfd */
G_STATIC_ASSERT ((PER_BLOCK * N_BLOCKS) == N_SWITCHES && (PER_BLOCK % 2) == 0
                 && (N_WARMUP % 2) == 0);
#define CALL_TIMEOUT  60000
#define DHFD_READY_S  30
#define DISPLAY_IFACE "org.dhf.Framework1.Display"
#define PROGRAM       "dhf-bench-switch"
/* dhfd's flags for a running domain (dhf-hypervisor-devices.h). */
#define HOTPLUG_FLAGS (VIR_DOMAIN_AFFECT_LIVE | VIR_DOMAIN_AFFECT_CONFIG)

/* What there is to clean up, for cleanup() (dhf-bench-runner.h). */
typedef struct
{
  GMutex lock;
  gboolean cleaned;
  gchar *tmpdir;
  gchar *names[2];
  gboolean defined[2];
  GSubprocess *dhfd;
  GTestDBus *bus;
  gboolean keep_log;
} Bench;

static Bench bench;

static gdouble
now_ms (void)
{
  struct timespec ts;

  clock_gettime (CLOCK_MONOTONIC, &ts);
  return (gdouble) ts.tv_sec * 1e3 + (gdouble) ts.tv_nsec / 1e6;
}

/* Returns FALSE when dhfd did not exit with status 0 on SIGTERM. */
static gboolean
stop_dhfd (void)
{
  g_autoptr (GSubprocess) dhfd = g_steal_pointer (&bench.dhfd);

  return dhfd == NULL || dhf_bench_stop_dhfd (dhfd);
}

/* Idempotent, and safe from any thread: the first caller cleans up, a
 * second waits until that is done. */
static void
cleanup (gboolean failed)
{
  g_mutex_lock (&bench.lock);
  if (!bench.cleaned)
    {
      /* Only the domains we defined: one that was there before is not ours. */
      const gchar *ours[G_N_ELEMENTS (bench.names)] = { NULL };

      bench.cleaned = TRUE;
      stop_dhfd ();
      for (guint i = 0; i < G_N_ELEMENTS (bench.names); i++)
        ours[i] = bench.defined[i] ? bench.names[i] : NULL;
      dhf_bench_remove_domains (URI, ours, G_N_ELEMENTS (ours));
      if (bench.bus != NULL)
        g_test_dbus_down (bench.bus);
      g_clear_object (&bench.bus);
      if (bench.tmpdir != NULL && !bench.keep_log && !failed)
        dhf_bench_remove_tree (bench.tmpdir);
      else if (bench.tmpdir != NULL)
        fprintf (stderr, PROGRAM ": dhfd's log is kept in %s/dhfd.log\n", bench.tmpdir);
    }
  g_mutex_unlock (&bench.lock);
}

static void G_GNUC_NORETURN
die_virt (const gchar *what)
{
  dhf_bench_fail ("%s: %s", what, virGetLastErrorMessage ());
}

typedef struct
{
  gdouble p50, p99, mean, min, max;
} Stats;

static Stats
stats_of (const gdouble *values, guint n)
{
  g_autofree gdouble *sorted = g_memdup2 (values, n * sizeof *values);
  Stats s = { 0 };

  s.p50 = dhf_bench_percentile (sorted, n, 0.5);
  s.p99 = dhf_bench_percentile (sorted, n, 0.99);
  s.min = sorted[0];
  s.max = sorted[n - 1];
  for (guint i = 0; i < n; i++)
    s.mean += sorted[i] / n;
  return s;
}

static void
print_stats (const gchar *what, const gdouble *values, guint n)
{
  Stats s = stats_of (values, n);

  printf ("%s (%u): p50 %.1f ms, p99 %.1f ms, mean %.1f ms, min %.1f ms, max %.1f ms\n", what, n,
          s.p50, s.p99, s.mean, s.min, s.max);
  fflush (stdout);
}

/* --- setup ------------------------------------------------------------ */

/* The hypervisor lock first (so that no suite or other benchmark runs a
 * dhfd on the same libvirtd meanwhile), then libvirtd. */
static void
start_libvirtd (void)
{
  g_autoptr (GError) error = NULL;

  if (!dhf_bench_lock_hypervisor (&error) || !dhf_bench_libvirtd_up (&error))
    dhf_bench_fail ("%s", error->message);
}

static gchar *
domain_xml (const gchar *name)
{
  g_autofree gchar *json
      = g_strdup_printf ("{\"manifest-version\": 1, \"name\": \"%s\", \"vendor\": \"dhf bench\","
                         " \"version\": \"1.0.0\", \"role\": \"environment\", \"display\": \"vnc\","
                         " \"memory\": \"128MiB\", \"vcpus\": 1}",
                         name);
  g_autoptr (GError) error = NULL;
  gchar *xml = dhf_bench_domain_xml (json, "qemu", &error);

  if (xml == NULL)
    dhf_bench_fail ("the bench's manifest for %s: %s", name, error->message);
  /* The hot-plugged inputs need a USB bus. */
  if (strstr (xml, "model='qemu-xhci'") == NULL)
    dhf_bench_fail ("dhf's domain XML for %s has no qemu-xhci controller", name);
  return xml;
}

static void
define_and_start (virConnectPtr conn, guint index)
{
  g_autofree gchar *xml = domain_xml (bench.names[index]);
  virDomainPtr dom = virDomainLookupByName (conn, bench.names[index]);

  if (dom != NULL)
    {
      virDomainFree (dom);
      dhf_bench_fail ("libvirt already has a domain named %s", bench.names[index]);
    }
  dom = virDomainDefineXML (conn, xml);
  if (dom == NULL)
    die_virt ("defining a domain");
  bench.defined[index] = TRUE;
  if (virDomainCreate (dom) != 0)
    die_virt ("starting a domain");
  virDomainFree (dom);
}

static void
write_file (const gchar *path, const gchar *contents)
{
  g_autoptr (GError) error = NULL;

  if (!g_file_set_contents (path, contents, -1, &error))
    dhf_bench_fail ("%s", error->message);
}

/* dhfd on our bus, appending to TMPDIR/dhfd.log: every start writes to the
 * same log. Returns once it serves and is connected to libvirtd. */
static void
start_dhfd (GDBusConnection *bus, const gchar *dhfd_path, const gchar *config_path)
{
  g_autofree gchar *log_path = g_build_filename (bench.tmpdir, "dhfd.log", NULL);
  g_autoptr (GError) error = NULL;

  bench.dhfd = dhf_bench_spawn_dhfd_logged (dhfd_path, g_test_dbus_get_bus_address (bench.bus), URI,
                                            config_path, log_path, NULL, &error);
  if (bench.dhfd == NULL)
    dhf_bench_fail ("spawning %s: %s", dhfd_path, error->message);
  if (!dhf_bench_wait_for_dhfd (bus, bench.dhfd, DHFD_READY_S, &error))
    dhf_bench_fail ("%s (its log: %s)", error->message, log_path);
}

/* --- the measured operations ------------------------------------------ */

/* Display.Switch to target; the reply comes once the transaction is done. */
static gboolean
switch_to (GDBusConnection *bus, const gchar *target, GError **error)
{
  g_autoptr (GVariant) reply = g_dbus_connection_call_sync (
      bus, DHF_BUS_NAME, DHF_OBJECT_PATH, DISPLAY_IFACE, "Switch", g_variant_new ("(s)", target),
      G_VARIANT_TYPE ("(s)"), G_DBUS_CALL_FLAGS_NONE, CALL_TIMEOUT, NULL, error);
  const gchar *focused;

  if (reply == NULL)
    {
      g_dbus_error_strip_remote_error (*error);
      return FALSE;
    }
  g_variant_get (reply, "(&s)", &focused);
  if (!g_str_equal (focused, target))
    {
      g_set_error (error, DHF_ERROR, DHF_ERROR_FAILED, "Switch(%s) answered %s", target, focused);
      return FALSE;
    }
  return TRUE;
}

/* The first switch waits for dhfd's device engine to have seen both
 * domains run (it answers NotFound or InvalidState until then). */
static void
first_switch (GDBusConnection *bus, const gchar *target)
{
  gdouble deadline = now_ms () + DHFD_READY_S * 1000;

  for (;;)
    {
      g_autoptr (GError) error = NULL;

      if (switch_to (bus, target, &error))
        return;
      if (!g_error_matches (error, DHF_ERROR, DHF_ERROR_NOT_FOUND)
          && !g_error_matches (error, DHF_ERROR, DHF_ERROR_INVALID_STATE)
          && !g_error_matches (error, DHF_ERROR, DHF_ERROR_HYPERVISOR_UNAVAILABLE))
        dhf_bench_fail ("the first Switch to %s: %s", target, error->message);
      if (now_ms () > deadline)
        dhf_bench_fail ("the first Switch to %s still fails after %d s: %s", target, DHFD_READY_S,
                        error->message);
      g_usleep (100000);
    }
}

/* How many of the aliases the domain's live (or persistent) XML holds. */
static guint
count_aliases (virDomainPtr dom, guint flags, const gchar *const *aliases)
{
  g_autofree gchar *xml = virDomainGetXMLDesc (dom, flags);
  guint count = 0;

  if (xml == NULL)
    die_virt ("reading a domain's XML");
  for (guint i = 0; aliases[i] != NULL; i++)
    {
      g_autofree gchar *needle = g_strdup_printf ("<alias name='%s'/>", aliases[i]);

      count += strstr (xml, needle) != NULL;
    }
  return count;
}

/* Checks that holder has both devices, live and persistent, and the other
 * domain none: a switch (or a floor step) did what it claims. */
static void
check_placement (virDomainPtr *doms, guint holder, const gchar *const *aliases, const gchar *when)
{
  guint n = g_strv_length ((gchar **) aliases);

  for (guint i = 0; i < 2; i++)
    {
      guint want = i == holder ? n : 0;
      guint live = count_aliases (doms[i], 0, aliases);
      guint config = count_aliases (doms[i], VIR_DOMAIN_XML_INACTIVE, aliases);

      if (live != want || config != want)
        dhf_bench_fail (
            "%s: %s has %u of the %u devices live and %u in its definition, expected %u", when,
            bench.names[i], live, n, config, want);
    }
}

/* The libvirt XML of the emulated inputs, as dhfd builds it. */
static GPtrArray *
input_xml (const gchar *const *types, GPtrArray **aliases)
{
  g_autofree gchar *nosys = g_build_filename (bench.tmpdir, "no-sysfs", NULL);
  g_autoptr (GError) error = NULL;
  g_autoptr (GPtrArray) devices = dhf_device_inventory_scan (nosys, types, &error);
  GPtrArray *xml = g_ptr_array_new_with_free_func (g_free);

  if (devices == NULL)
    dhf_bench_fail ("listing the emulated inputs: %s", error->message);
  *aliases = g_ptr_array_new_with_free_func (g_free);
  for (guint i = 0; i < devices->len; i++)
    {
      const DhfDevice *device = g_ptr_array_index (devices, i);

      if (device->kind != DHF_DEVICE_KIND_INPUT)
        continue;
      g_ptr_array_add (xml, dhf_device_to_xml (device));
      g_ptr_array_add (*aliases, dhf_device_alias (device));
    }
  if (xml->len != g_strv_length ((gchar **) types))
    dhf_bench_fail ("expected %u emulated inputs, the inventory gave %u",
                    g_strv_length ((gchar **) types), xml->len);
  g_ptr_array_add (*aliases, NULL);
  return xml;
}

/* One floor step: the devices from one domain to the other with nothing
 * but the hot-plug calls, one per device each way, and the flags of
 * dhf-hypervisor-devices.h; no lookups, XML reads or weights. */
static void
floor_move (virDomainPtr from, virDomainPtr to, GPtrArray *xml)
{
  for (guint i = 0; i < xml->len; i++)
    {
      if (virDomainDetachDeviceFlags (from, g_ptr_array_index (xml, i), HOTPLUG_FLAGS) != 0)
        die_virt ("virDomainDetachDeviceFlags");
    }
  for (guint i = 0; i < xml->len; i++)
    {
      if (virDomainAttachDeviceFlags (to, g_ptr_array_index (xml, i), HOTPLUG_FLAGS) != 0)
        die_virt ("virDomainAttachDeviceFlags");
    }
}

static void
run (void)
{
  static const gchar *const inputs[] = { "keyboard", "tablet", NULL };
  g_autoptr (GError) error = NULL;
  g_autofree gchar *dhfd_path = NULL;
  g_autofree gchar *policy_dir = NULL;
  g_autofree gchar *config_path = NULL;
  g_autofree gchar *config = NULL;
  g_autofree gchar *policy_path = NULL;
  g_autoptr (GDBusConnection) bus = NULL;
  g_autoptr (GPtrArray) xml = NULL;
  g_autoptr (GPtrArray) aliases = NULL;
  gdouble switch_ms[N_SWITCHES], floor_ms[N_SWITCHES];
  virDomainPtr doms[2];
  virConnectPtr conn;
  Stats sw, fl;
  guint holder;

  /* A debugging run keeps dhfd's log to read afterwards. */
  bench.keep_log = g_getenv ("G_MESSAGES_DEBUG") != NULL;
  if (geteuid () != 0)
    dhf_bench_fail ("must run as root: it drives the system libvirtd (%s) and QEMU", URI);
  dhfd_path = dhf_bench_dhfd_path (&error);
  if (dhfd_path == NULL)
    dhf_bench_fail ("%s", error->message);

  start_libvirtd ();
  virSetErrorFunc (NULL, dhf_bench_silence_libvirt);
  conn = virConnectOpen (URI);
  if (conn == NULL)
    die_virt ("connecting to " URI);
  if (!dhf_bench_reclaim_stale_domains (conn, &error))
    dhf_bench_fail ("%s", error->message);

  /* The temporary directory first: die() cleans up what it lists. */
  bench.tmpdir = g_dir_make_tmp (PROGRAM "-XXXXXX", &error);
  if (bench.tmpdir == NULL)
    dhf_bench_fail ("temporary directory: %s", error->message);
  xml = input_xml (inputs, &aliases);

  policy_dir = g_build_filename (bench.tmpdir, "policy.d", NULL);
  policy_path = g_build_filename (policy_dir, "50-bench.policy", NULL);
  config_path = g_build_filename (bench.tmpdir, "dhfd.conf", NULL);
  g_mkdir (policy_dir, 0700);
  write_file (policy_path, "switch          @dom0 @role:environment allow\n"
                           "device:input:*  @dom0 @role:environment allow mode=follow-focus\n");
  config = g_strdup_printf ("[Hypervisor]\nDomainType=qemu\n"
                            "[Appliances]\nStorageDirectory=%s/images\n"
                            "[Policy]\nDirectories=%s\nLastGood=%s/policy.last-good\n"
                            "[Devices]\nEmulatedInput=keyboard;tablet\nStateFile=%s/devices.json\n"
                            "[Display]\nFallback=dom0\n",
                            bench.tmpdir, policy_dir, bench.tmpdir, bench.tmpdir);
  write_file (config_path, config);

  printf (PROGRAM
          ": %u Display.Switch calls between two QEMU (TCG) domains moving %u emulated "
          "USB inputs, and %u moves of the floor (the same hot-plug calls with dhfd stopped), in "
          "%u alternating blocks; %u warm-up switches after each start of dhfd; %u CPUs online\n",
          N_SWITCHES, xml->len, N_SWITCHES, N_BLOCKS, N_WARMUP,
          (guint) sysconf (_SC_NPROCESSORS_ONLN));
  fflush (stdout);

  for (guint i = 0; i < 2; i++)
    {
      bench.names[i] = g_strdup_printf ("dhfbench-%d-%c", (gint) getpid (), 'a' + i);
      define_and_start (conn, i);
      doms[i] = virDomainLookupByName (conn, bench.names[i]);
      if (doms[i] == NULL)
        die_virt ("looking the domain up");
    }

  bus = dhf_bench_bus_connect (g_test_dbus_get_bus_address (bench.bus), &error);
  if (bus == NULL)
    dhf_bench_fail ("connecting to the private bus: %s", error->message);
  /* The devices start in dom0; "holder" is where they are at the start of
   * a block, and where each block leaves them. */
  holder = 1;
  for (guint block = 0; block < N_BLOCKS; block++)
    {
      const gchar *const *alias_list = (const gchar *const *) aliases->pdata;
      gdouble *sw_block = switch_ms + block * PER_BLOCK;
      gdouble *fl_block = floor_ms + block * PER_BLOCK;
      g_autofree gchar *when = NULL;

      start_dhfd (bus, dhfd_path, config_path);
      /* Warm-up; the first switch also waits for dhfd's first sync. */
      first_switch (bus, bench.names[1 - holder]);
      for (guint i = 1; i < N_WARMUP; i++)
        {
          if (!switch_to (bus, bench.names[(1 - holder + i) % 2], &error))
            dhf_bench_fail ("block %u: warm-up switch %u: %s", block, i, error->message);
        }
      when = g_strdup_printf ("block %u, after the warm-up switches", block);
      check_placement (doms, holder, alias_list, when);

      for (guint i = 0; i < PER_BLOCK; i++)
        {
          guint target = (1 - holder + i) % 2;
          gdouble t0 = now_ms ();

          if (!switch_to (bus, bench.names[target], &error))
            dhf_bench_fail ("block %u: switch %u to %s: %s", block, i, bench.names[target],
                            error->message);
          sw_block[i] = now_ms () - t0;
        }
      g_free (when);
      when = g_strdup_printf ("block %u, after the timed switches", block);
      check_placement (doms, holder, alias_list, when);

      /* The floor, with dhfd gone so that nothing else touches the
       * domains. */
      if (!stop_dhfd ())
        dhf_bench_fail ("dhfd did not exit cleanly on SIGTERM (its log: %s/dhfd.log)",
                        bench.tmpdir);
      for (guint i = 0; i < PER_BLOCK; i++)
        {
          guint from = (holder + i) % 2;
          gdouble t0 = now_ms ();

          floor_move (doms[from], doms[1 - from], xml);
          fl_block[i] = now_ms () - t0;
        }
      g_free (when);
      when = g_strdup_printf ("block %u, after the floor", block);
      check_placement (doms, holder, alias_list, when);
      printf ("block %u: switch p50 %.1f ms, floor p50 %.1f ms\n", block,
              stats_of (sw_block, PER_BLOCK).p50, stats_of (fl_block, PER_BLOCK).p50);
      fflush (stdout);
    }
  print_stats ("Display.Switch through dhfd", switch_ms, N_SWITCHES);
  print_stats ("floor: virDomainDetachDeviceFlags x2 + virDomainAttachDeviceFlags x2", floor_ms,
               N_SWITCHES);

  sw = stats_of (switch_ms, N_SWITCHES);
  fl = stats_of (floor_ms, N_SWITCHES);
  printf ("median switch minus the median floor: %+.1f ms (%.2fx the floor)\n", sw.p50 - fl.p50,
          sw.p50 / fl.p50);
  printf ("RESULT switches=%u p50_ms=%.1f p99_ms=%.1f floor_p50_ms=%.1f ratio_to_floor=%.2f\n",
          N_SWITCHES, sw.p50, sw.p99, fl.p50, sw.p50 / fl.p50);
  fflush (stdout);

  for (guint i = 0; i < 2; i++)
    virDomainFree (doms[i]);
  virConnectClose (conn);
}

int
main (int argc, char **argv)
{
  static const DhfBenchRunner runner = { PROGRAM, run, cleanup };

  return dhf_bench_runner_main (&runner, argc, &bench.bus);
}
