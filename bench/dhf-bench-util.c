/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include "config.h"

#include <stdlib.h>
#include <string.h>

#include <dhf/dhf.h>
#include <glib/gstdio.h>

#include "dhf-bench-util.h"
#include "dhf-domain-xml.h"
#include "dhf-manifest.h"

gchar *
dhf_bench_dhfd_path (GError **error)
{
  const gchar *env = g_getenv ("DHFD");
  g_autofree gchar *path = g_strdup (env != NULL ? env : DHF_BENCH_DHFD);

  if (!g_file_test (path, G_FILE_TEST_IS_EXECUTABLE))
    {
      g_set_error (error, DHF_ERROR, DHF_ERROR_NOT_FOUND,
                   "no dhfd at %s (build first, or set DHFD)", path);
      return NULL;
    }
  return g_steal_pointer (&path);
}

GSubprocess *
dhf_bench_spawn_dhfd (GSubprocessLauncher *launcher, const gchar *dhfd, const gchar *bus_address,
                      const gchar *uri, const gchar *config, const gchar *const *extra,
                      GError **error)
{
  g_autoptr (GSubprocessLauncher) silent = NULL;
  g_autoptr (GPtrArray) argv = g_ptr_array_new ();

  if (launcher == NULL)
    launcher = silent = g_subprocess_launcher_new (G_SUBPROCESS_FLAGS_STDERR_SILENCE);
  g_ptr_array_add (argv, (gpointer) dhfd);
  g_ptr_array_add (argv, "--address");
  g_ptr_array_add (argv, (gpointer) bus_address);
  g_ptr_array_add (argv, "--hypervisor");
  g_ptr_array_add (argv, (gpointer) uri);
  g_ptr_array_add (argv, "--config");
  g_ptr_array_add (argv, (gpointer) config);
  for (guint i = 0; extra != NULL && extra[i] != NULL; i++)
    g_ptr_array_add (argv, (gpointer) extra[i]);
  g_ptr_array_add (argv, NULL);
  return g_subprocess_launcher_spawnv (launcher, (const gchar *const *) argv->pdata, error);
}

GDBusConnection *
dhf_bench_bus_connect (const gchar *address, GError **error)
{
  return g_dbus_connection_new_for_address_sync (
      address,
      G_DBUS_CONNECTION_FLAGS_AUTHENTICATION_CLIENT
          | G_DBUS_CONNECTION_FLAGS_MESSAGE_BUS_CONNECTION,
      NULL, NULL, error);
}

gchar *
dhf_bench_domain_xml (const gchar *manifest_json, const gchar *domain_type, GError **error)
{
  g_autoptr (DhfManifest) manifest = dhf_manifest_parse (manifest_json, -1, NULL, error);
  DhfDomainXmlOptions options = { .domain_type = domain_type };

  if (manifest == NULL)
    return NULL;
  return dhf_domain_xml_build (manifest, &options);
}

static gint
cmp_double (gconstpointer a, gconstpointer b)
{
  gdouble x = *(const gdouble *) a, y = *(const gdouble *) b;

  return (x > y) - (x < y);
}

gdouble
dhf_bench_percentile (gdouble *values, guint n, gdouble p)
{
  qsort (values, n, sizeof *values, (gint (*) (const void *, const void *)) cmp_double);
  return values[(guint) (p * (n - 1) + 0.5)];
}

glong
dhf_bench_status_kib (GPid pid, const gchar *key)
{
  g_autofree gchar *path = g_strdup_printf ("/proc/%d/status", pid);
  g_autofree gchar *status = NULL;
  const gchar *line;

  if (!g_file_get_contents (path, &status, NULL, NULL))
    return -1;
  line = strstr (status, key);
  return line != NULL ? strtol (line + strlen (key), NULL, 10) : -1;
}

void
dhf_bench_remove_tree (const gchar *path)
{
  g_autoptr (GDir) dir = g_dir_open (path, 0, NULL);
  const gchar *name;

  while (dir != NULL && (name = g_dir_read_name (dir)) != NULL)
    {
      g_autofree gchar *child = g_build_filename (path, name, NULL);

      if (g_file_test (child, G_FILE_TEST_IS_DIR) && !g_file_test (child, G_FILE_TEST_IS_SYMLINK))
        dhf_bench_remove_tree (child);
      else
        g_unlink (child);
    }
  g_rmdir (path);
}
