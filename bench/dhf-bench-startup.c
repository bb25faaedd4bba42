/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* dhf-bench-startup: how fast dhfd comes up with 100 appliances, how much
 * memory it then holds, and what a Start call costs over D-Bus, next to a
 * bare D-Bus round trip to the same daemon (the floor of any call).
 *
 * Starts its own private dbus-daemon and dhfd over libvirt's test driver;
 * takes no arguments. See bench/README.md. */
#include "config.h"

#include <signal.h>
#include <stdio.h>

#include <dhf/dhf.h>

#include "dhf-bench-util.h"

#define N_APPLIANCES 100
#define STARTUP_RUNS 15
#define CALL_ROUNDS  10

typedef struct
{
  GTestDBus *bus;
  GDBusConnection *conn;
  gchar *dhfd;
  gchar *uri;
  gchar *config;
  gboolean owned;
} Bench;

static gchar *
build_node (void)
{
  g_autoptr (GString) node = g_string_new ("<node>\n");

  for (guint i = 0; i < N_APPLIANCES; i++)
    {
      g_autofree gchar *json = g_strdup_printf (
          "{\"manifest-version\": 1, \"name\": \"bench-%03u\", \"vendor\": \"dhf bench\","
          " \"version\": \"1.0.%u\", \"role\": \"%s\", \"memory\": \"512MiB\", \"vcpus\": 1,"
          " \"services\": [{\"name\": \"org.dhf.bench.Service%u\"}]}",
          i, i, i % 2 ? "service" : "environment", i);
      g_autoptr (GError) error = NULL;
      g_autofree gchar *xml = dhf_bench_domain_xml (json, "test", &error);
      g_autoptr (GString) domain = NULL;

      if (xml == NULL)
        g_error ("bench manifest: %s", error->message);
      domain = g_string_new (xml);
      /* Test-driver domains come up running unless told otherwise. */
      if (g_string_replace (domain, "<domain type='test'>",
                            "<domain type='test' "
                            "xmlns:test='http://libvirt.org/schemas/domain/test/1.0'>"
                            "<test:runstate>5</test:runstate>",
                            1)
          != 1)
        g_error ("unexpected domain XML head: %.40s", xml);
      g_string_append (node, domain->str);
    }
  g_string_append (node, "</node>\n");
  return g_string_free (g_steal_pointer (&node), FALSE);
}

static void
on_name_owner_changed (GDBusConnection *conn, const gchar *sender, const gchar *path,
                       const gchar *iface, const gchar *signal, GVariant *params, gpointer data)
{
  Bench *b = data;
  const gchar *name, *old_owner, *new_owner;

  g_variant_get (params, "(&s&s&s)", &name, &old_owner, &new_owner);
  if (g_str_equal (name, DHF_BUS_NAME) && new_owner[0] != '\0')
    b->owned = TRUE;
}

static void
stop_dhfd (GSubprocess *proc)
{
  g_subprocess_send_signal (proc, SIGTERM);
  g_subprocess_wait (proc, NULL, NULL);
}

/* Sorts values in place: their first and last are then the min and max. */
static gdouble
percentile (GArray *values, gdouble p)
{
  return dhf_bench_percentile ((gdouble *) values->data, values->len, p);
}

static GVariant *
call (Bench *b, const gchar *path, const gchar *iface, const gchar *method, GVariant *args,
      GError **error)
{
  return g_dbus_connection_call_sync (b->conn, DHF_BUS_NAME, path, iface, method, args, NULL,
                                      G_DBUS_CALL_FLAGS_NONE, 60000, NULL, error);
}

static void
fail (const gchar *what, const GError *error)
{
  g_printerr ("dhf-bench-startup: %s: %s\n", what, error->message);
  exit (1);
}

int
main (int argc, char **argv)
{
  Bench b = { 0 };
  g_autoptr (GError) error = NULL;
  g_autofree gchar *tmpdir = NULL;
  g_autofree gchar *node = NULL;
  g_autofree gchar *node_path = NULL;
  g_autofree gchar *config = NULL;
  g_autoptr (GArray) startups = g_array_new (FALSE, FALSE, sizeof (gdouble));
  g_autoptr (GArray) starts = g_array_new (FALSE, FALSE, sizeof (gdouble));
  g_autoptr (GArray) pings = g_array_new (FALSE, FALSE, sizeof (gdouble));
  g_autoptr (GSubprocess) proc = NULL;
  glong rss, anon;
  gdouble start_ms, start_p50, start_p99, ping_p50;
  guint sub;

  if (argc > 1)
    {
      g_printerr ("usage: dhf-bench-startup (no arguments)\n");
      return 2;
    }
  /* The dhfd of the same build, unless DHFD names another. */
  b.dhfd = dhf_bench_dhfd_path (&error);
  if (b.dhfd == NULL)
    {
      g_printerr ("dhf-bench-startup: %s\n", error->message);
      return 1;
    }

  tmpdir = g_dir_make_tmp ("dhf-bench-XXXXXX", &error);
  if (tmpdir == NULL)
    fail ("temporary directory", error);
  node = build_node ();
  node_path = g_build_filename (tmpdir, "node.xml", NULL);
  b.config = g_build_filename (tmpdir, "dhfd.conf", NULL);
  /* No policy files, and the last good copy kept in the temporary dir. */
  config = g_strdup_printf ("[Appliances]\nStorageDirectory=%s\n[Policy]\nDirectories=%s/"
                            "policy.d\nLastGood=%s/policy.last-good\n"
                            "[Devices]\nStateFile=%s/devices.json\n",
                            tmpdir, tmpdir, tmpdir, tmpdir);
  if (!g_file_set_contents (node_path, node, -1, &error)
      || !g_file_set_contents (b.config, config, -1, &error))
    fail ("writing the test node", error);
  b.uri = g_strconcat ("test://", node_path, NULL);

  b.bus = g_test_dbus_new (G_TEST_DBUS_NONE);
  g_test_dbus_up (b.bus);
  b.conn = dhf_bench_bus_connect (g_test_dbus_get_bus_address (b.bus), &error);
  if (b.conn == NULL)
    fail ("connecting to the private bus", error);
  sub = g_dbus_connection_signal_subscribe (b.conn, "org.freedesktop.DBus", "org.freedesktop.DBus",
                                            "NameOwnerChanged", "/org/freedesktop/DBus",
                                            DHF_BUS_NAME, G_DBUS_SIGNAL_FLAGS_NONE,
                                            on_name_owner_changed, &b, NULL);

  /* 1. Start to name owned, with N_APPLIANCES defined. */
  for (guint run = 0; run < STARTUP_RUNS; run++)
    {
      gint64 t0, elapsed;

      b.owned = FALSE;
      t0 = g_get_monotonic_time ();
      proc = dhf_bench_spawn_dhfd (NULL, b.dhfd, g_test_dbus_get_bus_address (b.bus), b.uri,
                                   b.config, NULL, &error);
      if (proc == NULL)
        fail ("spawning dhfd", error);
      while (!b.owned)
        {
          if (g_get_monotonic_time () - t0 > 30 * G_USEC_PER_SEC)
            {
              g_printerr ("dhf-bench-startup: dhfd did not own the name in 30 s\n");
              return 1;
            }
          g_main_context_iteration (NULL, TRUE);
        }
      elapsed = g_get_monotonic_time () - t0;
      g_array_append_val (startups, (gdouble){ elapsed / 1000.0 });
      if (run + 1 < STARTUP_RUNS)
        {
          stop_dhfd (proc);
          g_clear_object (&proc);
        }
    }

  /* 2. Memory once every appliance is on the bus. */
  {
    g_autoptr (GVariant) objects = g_dbus_connection_call_sync (
        b.conn, DHF_BUS_NAME, DHF_OBJECT_PATH, "org.freedesktop.DBus.ObjectManager",
        "GetManagedObjects", NULL, NULL, G_DBUS_CALL_FLAGS_NONE, -1, NULL, &error);
    g_autoptr (GVariant) dict = NULL;

    if (objects == NULL)
      fail ("GetManagedObjects", error);
    dict = g_variant_get_child_value (objects, 0);
    if (g_variant_n_children (dict) != N_APPLIANCES)
      {
        g_printerr ("dhf-bench-startup: expected %u appliances, dhfd has %zu\n", N_APPLIANCES,
                    g_variant_n_children (dict));
        return 1;
      }
    rss = dhf_bench_status_kib (atoi (g_subprocess_get_identifier (proc)), "VmRSS:");
    anon = dhf_bench_status_kib (atoi (g_subprocess_get_identifier (proc)), "RssAnon:");
  }

  /* 3. Start round trips (each followed by an unmeasured Shutdown), and
   * the floor: Peer.Ping to the same dhfd through the same bus. */
  for (guint round = 0; round < CALL_ROUNDS; round++)
    {
      for (guint i = 0; i < N_APPLIANCES; i++)
        {
          g_autofree gchar *path = g_strdup_printf (DHF_APPLIANCE_PATH_PREFIX "/bench_2d%03u", i);
          g_autoptr (GVariant) r1 = NULL;
          g_autoptr (GVariant) r2 = NULL;
          gint64 t0 = g_get_monotonic_time ();

          r1 = call (&b, path, "org.dhf.Framework1.Appliance", "Start", NULL, &error);
          if (r1 == NULL)
            fail ("Start", error);
          g_array_append_val (starts, (gdouble){ (gdouble) (g_get_monotonic_time () - t0) });
          t0 = g_get_monotonic_time ();
          r2 = call (&b, path, "org.freedesktop.DBus.Peer", "Ping", NULL, &error);
          if (r2 == NULL)
            fail ("Ping", error);
          g_array_append_val (pings, (gdouble){ (gdouble) (g_get_monotonic_time () - t0) });
        }
      for (guint i = 0; i < N_APPLIANCES; i++)
        {
          g_autofree gchar *path = g_strdup_printf (DHF_APPLIANCE_PATH_PREFIX "/bench_2d%03u", i);
          g_autoptr (GVariant) r = call (&b, path, "org.dhf.Framework1.Appliance", "Shutdown",
                                         g_variant_new ("(u)", 5000), &error);

          if (r == NULL)
            fail ("Shutdown", error);
        }
    }

  start_ms = percentile (startups, 0.5);
  start_p50 = percentile (starts, 0.5);
  start_p99 = percentile (starts, 0.99);
  ping_p50 = percentile (pings, 0.5);
  printf ("dhfd start to %s owned, %u appliances: median %.1f ms, min %.1f ms, max %.1f ms "
          "(%u runs)\n",
          DHF_BUS_NAME, N_APPLIANCES, start_ms, g_array_index (startups, gdouble, 0),
          g_array_index (startups, gdouble, startups->len - 1), STARTUP_RUNS);
  /* Most of the RSS is shared library text (libvirt and its dependencies)
   * that every libvirt client maps; RssAnon is dhfd's own memory. */
  printf ("dhfd RSS with %u appliances: %ld KiB (of which anonymous, dhfd's own: %ld KiB)\n",
          N_APPLIANCES, rss, anon);
  printf ("Start round trip over %u calls: p50 %.0f us, p99 %.0f us\n", starts->len, start_p50,
          start_p99);
  printf ("floor (Peer.Ping to dhfd, same bus): p50 %.0f us; Start costs %.1fx the floor\n",
          ping_p50, start_p50 / ping_p50);
  printf ("RESULT start_ms=%.1f rss_kib=%ld start_call_p50_us=%.0f start_call_p99_us=%.0f "
          "rss_anon_kib=%ld ping_p50_us=%.0f start_call_ratio_to_ping=%.2f\n",
          start_ms, rss, start_p50, start_p99, anon, ping_p50, start_p50 / ping_p50);
  fflush (stdout);

  stop_dhfd (proc);
  g_dbus_connection_signal_unsubscribe (b.conn, sub);
  g_dbus_connection_close_sync (b.conn, NULL, NULL);
  g_clear_object (&b.conn);
  g_test_dbus_down (b.bus);
  g_clear_object (&b.bus);
  dhf_bench_remove_tree (tmpdir);
  g_free (b.dhfd);
  g_free (b.uri);
  g_free (b.config);
  return 0;
}
