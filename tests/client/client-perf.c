/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* Measures libdhf-1 between two clients in one process (a provider whose
 * handler runs in its own thread's main context, and a caller) through a
 * router on a unix socket (client-relay, or dhfd's unix socket):
 *
 *   client-perf unix:PATH [SECONDS]
 *
 * prints one line of key=value: sequential 64-byte call latency
 * (p50/p99 µs), pipelined async calls per second (64 in flight), and
 * stream throughput (MB/s, 1 GiB). Not a test: numbers depend on the
 * machine. */
#include "config.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dhf-client-private.h"

#define IN_FLIGHT    64
#define STREAM_BYTES (1024ull * 1024 * 1024)

typedef struct
{
  DhfClient *client;
  GMainContext *context;
  gboolean ready;
  gboolean quit;
  GMutex lock;
  GCond cond;
} Provider;

static void
echo_handler (DhfClient *client, DhfInvocation *invocation, gpointer user_data)
{
  if (dhf_invocation_get_kind (invocation) == DHF_INVOCATION_STREAM)
    {
      g_autoptr (GError) error = NULL;
      DhfStream *stream = dhf_invocation_accept_stream (invocation, &error);
      GInputStream *in = g_io_stream_get_input_stream (G_IO_STREAM (stream));
      g_autofree guint8 *buf = g_malloc (1024 * 1024);
      gssize n;

      /* Drains in this thread: the provider's context has nothing else. */
      while ((n = g_input_stream_read (in, buf, 1024 * 1024, NULL, &error)) > 0)
        ;
      g_io_stream_close (G_IO_STREAM (stream), NULL, NULL);
      g_object_unref (stream);
      return;
    }
  dhf_invocation_return_json (invocation, dhf_invocation_get_params_json (invocation));
}

static gpointer
provider_thread (gpointer data)
{
  Provider *p = data;
  g_autoptr (GError) error = NULL;

  g_main_context_push_thread_default (p->context);
  if (dhf_client_register_service (p->client, "org.example.Perf1", echo_handler, NULL, NULL, &error)
      == 0)
    g_error ("register: %s", error->message);
  g_mutex_lock (&p->lock);
  p->ready = TRUE;
  g_cond_signal (&p->cond);
  g_mutex_unlock (&p->lock);
  while (!g_atomic_int_get (&p->quit))
    g_main_context_iteration (p->context, TRUE);
  g_main_context_pop_thread_default (p->context);
  return NULL;
}

static gint
compare_i64 (gconstpointer a, gconstpointer b)
{
  gint64 x = *(const gint64 *) a, y = *(const gint64 *) b;

  return x < y ? -1 : x > y;
}

typedef struct
{
  DhfClient *client;
  const gchar *params;
  guint outstanding;
  guint64 done;
  gboolean stop;
} Pipeline;

static void pipeline_call (Pipeline *pl);

static void
pipeline_done (GObject *source, GAsyncResult *result, gpointer data)
{
  Pipeline *pl = data;
  g_autoptr (GError) error = NULL;
  g_autofree gchar *text = dhf_client_call_finish (DHF_CLIENT (source), result, &error);

  if (text == NULL)
    g_error ("call: %s", error->message);
  pl->outstanding--;
  pl->done++;
  if (!pl->stop)
    pipeline_call (pl);
}

static void
pipeline_call (Pipeline *pl)
{
  pl->outstanding++;
  dhf_client_call (pl->client, "org.example.Perf1", NULL, pl->params, 0, NULL, pipeline_done, pl);
}

int
main (int argc, char **argv)
{
  g_autoptr (GError) error = NULL;
  Provider p = { 0 };
  g_autoptr (DhfClient) caller = NULL;
  g_autoptr (GArray) samples = g_array_new (FALSE, FALSE, sizeof (gint64));
  g_autofree gchar *params = NULL;
  gdouble seconds = argc > 2 ? g_ascii_strtod (argv[2], NULL) : 2.0;
  Pipeline pl = { 0 };
  GThread *thread;
  gint64 start, end;
  gint64 p50, p99;
  gdouble calls_per_s, mb_per_s;

  if (argc < 2)
    {
      g_printerr ("usage: %s unix:PATH [SECONDS]\n", argv[0]);
      return 2;
    }
  /* 64 bytes of JSON params: a string of 62 characters in quotes. */
  params
      = g_strdup_printf ("\"%s\"", "0123456789012345678901234567890123456789012345678901234567890");
  g_assert_cmpuint (strlen (params), ==, 63);

  p.context = g_main_context_new ();
  g_mutex_init (&p.lock);
  g_cond_init (&p.cond);
  p.client = dhf_client_new (argv[1]);
  caller = dhf_client_new (argv[1]);
  if (!dhf_client_connect_sync (p.client, NULL, &error)
      || !dhf_client_connect_sync (caller, NULL, &error))
    g_error ("connect: %s", error->message);
  thread = g_thread_new ("provider", provider_thread, &p);
  g_mutex_lock (&p.lock);
  while (!p.ready)
    g_cond_wait (&p.cond, &p.lock);
  g_mutex_unlock (&p.lock);

  /* Sequential calls: latency. */
  start = g_get_monotonic_time ();
  while (g_get_monotonic_time () - start < seconds * G_USEC_PER_SEC)
    {
      gint64 t0 = g_get_monotonic_time ();
      g_autofree gchar *result
          = dhf_client_call_sync (caller, "org.example.Perf1", NULL, params, 0, NULL, &error);
      gint64 dt = g_get_monotonic_time () - t0;

      if (result == NULL)
        g_error ("call: %s", error->message);
      g_array_append_val (samples, dt);
    }
  g_array_sort (samples, compare_i64);
  p50 = g_array_index (samples, gint64, samples->len / 2);
  p99 = g_array_index (samples, gint64, samples->len * 99 / 100);

  /* Pipelined async calls: throughput. */
  pl.client = caller;
  pl.params = params;
  for (guint i = 0; i < IN_FLIGHT; i++)
    pipeline_call (&pl);
  start = g_get_monotonic_time ();
  while (g_get_monotonic_time () - start < seconds * G_USEC_PER_SEC)
    g_main_context_iteration (NULL, TRUE);
  end = g_get_monotonic_time ();
  calls_per_s = (gdouble) pl.done / ((gdouble) (end - start) / G_USEC_PER_SEC);
  pl.stop = TRUE;
  while (pl.outstanding > 0)
    g_main_context_iteration (NULL, TRUE);

  /* A stream: 1 GiB one way. */
  {
    g_autoptr (DhfStream) stream
        = dhf_client_open_stream_sync (caller, "org.example.Perf1", NULL, NULL, &error);
    GOutputStream *out;
    g_autofree guint8 *buf = g_malloc (1024 * 1024);

    if (stream == NULL)
      g_error ("open: %s", error->message);
    memset (buf, 0x5a, 1024 * 1024);
    out = g_io_stream_get_output_stream (G_IO_STREAM (stream));
    start = g_get_monotonic_time ();
    for (guint64 sent = 0; sent < STREAM_BYTES; sent += 1024 * 1024)
      if (!g_output_stream_write_all (out, buf, 1024 * 1024, NULL, NULL, &error))
        g_error ("write: %s", error->message);
    g_output_stream_close (out, NULL, NULL);
    /* Done when the provider has read everything and closed its side. */
    {
      guint8 c;

      (void) g_input_stream_read (g_io_stream_get_input_stream (G_IO_STREAM (stream)), &c, 1, NULL,
                                  NULL);
    }
    end = g_get_monotonic_time ();
    mb_per_s = (gdouble) STREAM_BYTES / ((gdouble) (end - start) / G_USEC_PER_SEC) / 1e6;
  }

  printf ("calls=%u call_p50_us=%" G_GINT64_FORMAT " call_p99_us=%" G_GINT64_FORMAT
          " pipelined_calls_per_s=%.0f stream_mb_per_s=%.0f\n",
          samples->len, p50, p99, calls_per_s, mb_per_s);

  g_atomic_int_set (&p.quit, TRUE);
  g_main_context_wakeup (p.context);
  g_thread_join (thread);
  dhf_client_close (p.client);
  dhf_client_close (caller);
  g_object_unref (p.client);
  g_main_context_unref (p.context);
  return 0;
}
