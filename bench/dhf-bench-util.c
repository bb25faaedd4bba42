/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <unistd.h>

#include <dhf/dhf.h>
#include <glib/gstdio.h>
#include <libvirt/libvirt.h>
#include <libvirt/virterror.h>

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

GSubprocess *
dhf_bench_spawn_dhfd_logged (const gchar *dhfd, const gchar *bus_address, const gchar *uri,
                             const gchar *config, const gchar *log_path, const gchar *const *extra,
                             GError **error)
{
  g_autoptr (GSubprocessLauncher) launcher
      = g_subprocess_launcher_new (G_SUBPROCESS_FLAGS_STDERR_MERGE);
  g_autoptr (GPtrArray) args = g_ptr_array_new ();
  gint log_fd = open (log_path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600);

  if (log_fd < 0)
    {
      gint saved = errno;

      g_set_error (error, DHF_ERROR, DHF_ERROR_FAILED, "opening %s: %s", log_path,
                   g_strerror (saved));
      return NULL;
    }
  g_subprocess_launcher_take_stdout_fd (launcher, log_fd);
  if (g_getenv ("G_MESSAGES_DEBUG") != NULL)
    g_ptr_array_add (args, "--verbose");
  for (guint i = 0; extra != NULL && extra[i] != NULL; i++)
    g_ptr_array_add (args, (gpointer) extra[i]);
  g_ptr_array_add (args, NULL);
  return dhf_bench_spawn_dhfd (launcher, dhfd, bus_address, uri, config,
                               (const gchar *const *) args->pdata, error);
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

gboolean
dhf_bench_lock_hypervisor (GError **error)
{
  gint64 deadline = g_get_monotonic_time () + (gint64) DHF_BENCH_LOCK_WAIT_S * G_USEC_PER_SEC;
  /* Never closed: the lock lasts as long as the process. O_CLOEXEC keeps
   * it out of dhfd and QEMU, which may outlive a crashed run. */
  gint fd = g_mkdir_with_parents ("/run/lock", 0755) == 0
                ? open (DHF_BENCH_HYPERVISOR_LOCK, O_RDWR | O_CREAT | O_CLOEXEC, 0644)
                : -1;
  gboolean told = FALSE;

  if (fd < 0)
    {
      gint saved = errno;

      g_set_error (error, DHF_ERROR, DHF_ERROR_FAILED, "opening %s: %s", DHF_BENCH_HYPERVISOR_LOCK,
                   g_strerror (saved));
      return FALSE;
    }
  while (flock (fd, LOCK_EX | LOCK_NB) != 0)
    {
      gint saved = errno;

      if (saved != EWOULDBLOCK && saved != EINTR)
        {
          g_set_error (error, DHF_ERROR, DHF_ERROR_FAILED, "locking %s: %s",
                       DHF_BENCH_HYPERVISOR_LOCK, g_strerror (saved));
          close (fd);
          return FALSE;
        }
      if (g_get_monotonic_time () > deadline)
        {
          g_set_error (error, DHF_ERROR, DHF_ERROR_TIMEOUT, "%s still held after %d s",
                       DHF_BENCH_HYPERVISOR_LOCK, DHF_BENCH_LOCK_WAIT_S);
          close (fd);
          return FALSE;
        }
      if (!told)
        {
          printf ("another suite or benchmark drives the real hypervisor: waiting for it (%s)\n",
                  DHF_BENCH_HYPERVISOR_LOCK);
          fflush (stdout);
          told = TRUE;
        }
      g_usleep (500000);
    }
  return TRUE;
}

gboolean
dhf_bench_libvirtd_up (GError **error)
{
  g_autofree gchar *script
      = g_build_filename (DHF_BENCH_SOURCE_ROOT, "scripts", "libvirtd-up", NULL);
  const gchar *argv[] = { script, NULL };
  g_autofree gchar *errors = NULL;
  g_autoptr (GError) local_error = NULL;
  gint status = 0;

  if (!g_spawn_sync (NULL, (gchar **) argv, NULL, G_SPAWN_STDOUT_TO_DEV_NULL, NULL, NULL, NULL,
                     &errors, &status, &local_error)
      || !g_spawn_check_wait_status (status, &local_error))
    {
      g_set_error (error, DHF_ERROR, DHF_ERROR_FAILED, "%s: %s%s%s", script, local_error->message,
                   errors != NULL && *errors != '\0' ? ":\n" : "", errors != NULL ? errors : "");
      return FALSE;
    }
  return TRUE;
}

/* The PID in NAME when it is PREFIX-PID-..., else 0. */
static guint64
run_pid (const gchar *name)
{
  static const gchar *const prefixes[] = { "dhfbench-", "dhftest-" };

  for (guint i = 0; i < G_N_ELEMENTS (prefixes); i++)
    {
      const gchar *digits = name + strlen (prefixes[i]);
      gchar *end = NULL;
      guint64 pid;

      if (!g_str_has_prefix (name, prefixes[i]) || !g_ascii_isdigit (*digits))
        continue;
      pid = g_ascii_strtoull (digits, &end, 10);
      if (*end == '-')
        return pid;
    }
  return 0;
}

gboolean
dhf_bench_reclaim_stale_domains (virConnectPtr conn, GError **error)
{
  virDomainPtr *domains = NULL;
  gint n = virConnectListAllDomains (conn, &domains, 0);
  gboolean ok = TRUE;

  if (n < 0)
    {
      g_set_error (error, DHF_ERROR, DHF_ERROR_FAILED, "listing the domains: %s",
                   virGetLastErrorMessage ());
      return FALSE;
    }
  for (gint i = 0; i < n; i++)
    {
      const gchar *name = virDomainGetName (domains[i]);
      guint64 pid = run_pid (name);
      g_autofree gchar *proc = g_strdup_printf ("/proc/%" G_GUINT64_FORMAT, pid);

      if (ok && pid != 0 && !g_file_test (proc, G_FILE_TEST_EXISTS))
        {
          printf ("removing %s, left behind by an interrupted run (pid %" G_GUINT64_FORMAT
                  " is gone)\n",
                  name, pid);
          if (virDomainIsActive (domains[i]) == 1)
            virDomainDestroy (domains[i]);
          if (virDomainUndefine (domains[i]) != 0)
            {
              g_set_error (error, DHF_ERROR, DHF_ERROR_FAILED, "undefining the stale domain %s: %s",
                           name, virGetLastErrorMessage ());
              ok = FALSE;
            }
        }
      virDomainFree (domains[i]);
    }
  free (domains);
  fflush (stdout);
  return ok;
}

gboolean
dhf_bench_wait_for_dhfd (GDBusConnection *bus, GSubprocess *dhfd, guint timeout_s, GError **error)
{
  gint64 deadline = g_get_monotonic_time () + (gint64) timeout_s * G_USEC_PER_SEC;

  for (;;)
    {
      g_autoptr (GVariant) reply = g_dbus_connection_call_sync (
          bus, DHF_BUS_NAME, DHF_OBJECT_PATH, "org.freedesktop.DBus.Properties", "Get",
          g_variant_new ("(ss)", "org.dhf.Framework1.Manager", "HypervisorConnected"),
          G_VARIANT_TYPE ("(v)"), G_DBUS_CALL_FLAGS_NONE, 5000, NULL, NULL);

      if (reply != NULL)
        {
          g_autoptr (GVariant) value = NULL;

          g_variant_get (reply, "(v)", &value);
          if (g_variant_is_of_type (value, G_VARIANT_TYPE_BOOLEAN) && g_variant_get_boolean (value))
            return TRUE;
        }
      if (g_subprocess_get_identifier (dhfd) == NULL)
        {
          g_set_error (error, DHF_ERROR, DHF_ERROR_FAILED, "dhfd exited at startup");
          return FALSE;
        }
      if (g_get_monotonic_time () > deadline)
        {
          g_set_error (error, DHF_ERROR, DHF_ERROR_TIMEOUT,
                       "dhfd did not serve and connect to its hypervisor within %u s", timeout_s);
          return FALSE;
        }
      g_usleep (50000);
    }
}

gboolean
dhf_bench_stop_dhfd (GSubprocess *dhfd)
{
  g_subprocess_send_signal (dhfd, SIGTERM);
  /* GLib reaps the child on its worker thread and then forgets its pid. */
  for (guint i = 0; i < 150 && g_subprocess_get_identifier (dhfd) != NULL; i++)
    g_usleep (100000);
  if (g_subprocess_get_identifier (dhfd) != NULL)
    {
      g_printerr ("dhfd ignored SIGTERM for 15 s, killing it\n");
      g_subprocess_force_exit (dhfd);
    }
  g_subprocess_wait (dhfd, NULL, NULL);
  return g_subprocess_get_if_exited (dhfd) && g_subprocess_get_exit_status (dhfd) == 0;
}
