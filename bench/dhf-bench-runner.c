/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include "config.h"

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#include <dhf/dhf.h>
#include <glib-unix.h>
#include <libvirt/virterror.h>

#include "dhf-bench-runner.h"

static const DhfBenchRunner *the_runner;
static gint interrupted; /* atomic: a signal's cleanup runs or ran */

void
dhf_bench_fail (const gchar *format, ...)
{
  va_list args;

  if (g_atomic_int_get (&interrupted))
    {
      the_runner->cleanup (FALSE);
      for (;;)
        pause ();
    }
  va_start (args, format);
  fprintf (stderr, "%s: ", the_runner->program);
  vfprintf (stderr, format, args);
  fputc ('\n', stderr);
  va_end (args);
  the_runner->cleanup (TRUE);
  exit (1);
}

static gboolean
on_signal (gpointer data)
{
  gint signal = GPOINTER_TO_INT (data);

  g_atomic_int_set (&interrupted, 1);
  fprintf (stderr, "%s: interrupted (signal %d), cleaning up\n", the_runner->program, signal);
  the_runner->cleanup (FALSE);
  _exit (128 + signal);
}

static gpointer
run_thread (gpointer data)
{
  the_runner->run ();
  the_runner->cleanup (FALSE);
  exit (0);
}

int
dhf_bench_runner_main (const DhfBenchRunner *runner, int argc, GTestDBus **bus)
{
  g_autoptr (GMainLoop) loop = g_main_loop_new (NULL, FALSE);
  static const gint signals[] = { SIGINT, SIGTERM, SIGHUP };

  if (argc > 1)
    {
      g_printerr ("usage: %s (no arguments; run as root)\n", runner->program);
      return 2;
    }
  the_runner = runner;
  /* Registers org.dhf.Framework1.Error.* with GDBus. */
  (void) dhf_error_quark ();
  *bus = g_test_dbus_new (G_TEST_DBUS_NONE);
  g_test_dbus_up (*bus);
  for (guint i = 0; i < G_N_ELEMENTS (signals); i++)
    g_unix_signal_add (signals[i], on_signal, GINT_TO_POINTER (signals[i]));
  g_thread_unref (g_thread_new ("bench", run_thread, NULL));
  g_main_loop_run (loop);
  return 1;
}

void
dhf_bench_remove_domains (const gchar *uri, const gchar *const *names, guint n)
{
  virConnectPtr conn = NULL;

  for (guint i = 0; i < n; i++)
    {
      virDomainPtr dom;

      if (names[i] == NULL)
        continue;
      if (conn == NULL && (conn = virConnectOpen (uri)) == NULL)
        {
          fprintf (stderr, "%s: cannot reach %s to remove %s: %s\n", the_runner->program, uri,
                   names[i], virGetLastErrorMessage ());
          return;
        }
      dom = virDomainLookupByName (conn, names[i]);
      if (dom == NULL)
        continue;
      if (virDomainIsActive (dom) == 1)
        virDomainDestroy (dom);
      if (virDomainUndefine (dom) != 0)
        fprintf (stderr, "%s: undefining %s: %s\n", the_runner->program, names[i],
                 virGetLastErrorMessage ());
      virDomainFree (dom);
    }
  if (conn != NULL)
    virConnectClose (conn);
}

void
dhf_bench_silence_libvirt (void *data, virErrorPtr error)
{
}
