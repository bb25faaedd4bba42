/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* xdm-sim: a simulated appliance (or dom0 client) for the XDM integration
 * tests. It is an ordinary libdhf-1 DhfClient at ADDRESS (listen:PATH for a
 * domain whose channel socket is PATH, unix:PATH for dom0), driven by the
 * test over stdin/stdout, one line per command and per report:
 *
 *   register TAG SERVICE MODE     MODE: echo, hang, fail, stream-echo, echo-quiet
 *   unregister TAG SERVICE
 *   call TAG SERVICE TARGET TIMEOUT_MS [PARAMS-JSON]   TARGET "-" = none
 *   subscribe TAG TOPIC
 *   publish TAG TOPIC [DATA-JSON]
 *   stream TAG SERVICE TARGET BYTES   writes BYTES, expects them echoed
 *
 * Answers: "ok TAG [RESULT]" or "error TAG CODE MESSAGE" (CODE: the DhfError
 * nick, or "other"). Unsolicited: "ready DOMAIN" once the first session is
 * up, then "connected DOMAIN" / "disconnected" as it comes and goes,
 * "invoked SERVICE ARG SOURCE PARAMS" (ARG "-" for none), "cancelled SERVICE
 * SOURCE", "event TOPIC SOURCE DATA". A hang-mode invocation is held until
 * the caller gives up. */
#include "config.h"

#include <stdio.h>
#include <stdlib.h>

#include <dhf/dhf.h>
#include <gio/gunixinputstream.h>

typedef struct
{
  DhfClient *client;
  GDataInputStream *input;
  GMainLoop *loop;
  GHashTable *registrations; /* service -> registration id */
  GPtrArray *held;           /* hang-mode invocations */
} Sim;

static Sim sim;

static void G_GNUC_PRINTF (1, 2) say (const gchar *format, ...)
{
  va_list args;

  va_start (args, format);
  vprintf (format, args);
  va_end (args);
  putchar ('\n');
  fflush (stdout);
}

static const gchar *
error_code (const GError *error)
{
  GEnumClass *klass;
  GEnumValue *value;

  if (error->domain != DHF_ERROR)
    return "other";
  klass = g_type_class_ref (DHF_TYPE_ERROR);
  value = g_enum_get_value (klass, error->code);
  g_type_class_unref (klass);
  return value != NULL ? value->value_nick : "other";
}

static void
say_error (const gchar *tag, const GError *error)
{
  g_autofree gchar *message = g_strdup (error->message);

  /* One report per line. */
  g_strdelimit (message, "\n", ' ');
  say ("error %s %s %s", tag, error_code (error), message);
}

/* --- provider side ---------------------------------------------------- */

typedef enum
{
  MODE_ECHO,
  MODE_HANG,
  MODE_FAIL,
  MODE_STREAM_ECHO,
  MODE_ECHO_QUIET, /* echo without the "invoked" report: for floods */
} Mode;

static void
on_held_cancelled (GCancellable *cancellable, gpointer data)
{
  DhfInvocation *invocation = data;

  say ("cancelled %s %s", dhf_invocation_get_service (invocation),
       dhf_invocation_get_source (invocation));
}

static void
on_splice_done (GObject *source, GAsyncResult *result, gpointer data)
{
  g_autoptr (DhfStream) stream = data;
  g_autoptr (GError) error = NULL;

  if (g_output_stream_splice_finish (G_OUTPUT_STREAM (source), result, &error) < 0)
    say ("stream-failed %s %s", dhf_stream_get_peer (stream), error->message);
  g_io_stream_close (G_IO_STREAM (stream), NULL, NULL);
}

static void
handle (DhfClient *client, DhfInvocation *invocation, gpointer data)
{
  Mode mode = GPOINTER_TO_INT (data);
  const gchar *arg = dhf_invocation_get_argument (invocation);

  if (mode != MODE_ECHO_QUIET)
    say ("invoked %s %s %s %s", dhf_invocation_get_service (invocation), arg != NULL ? arg : "-",
         dhf_invocation_get_source (invocation), dhf_invocation_get_params_json (invocation));
  switch (mode)
    {
      case MODE_ECHO:
      case MODE_ECHO_QUIET:
        {
          g_autofree gchar *result = g_strdup_printf (
              "{\"domain\": \"%s\", \"service\": \"%s\", \"arg\": %s%s%s, \"source\": \"%s\","
              " \"params\": %s}",
              dhf_client_get_domain (client), dhf_invocation_get_service (invocation),
              arg != NULL ? "\"" : "", arg != NULL ? arg : "null", arg != NULL ? "\"" : "",
              dhf_invocation_get_source (invocation), dhf_invocation_get_params_json (invocation));

          if (!dhf_invocation_return_json (invocation, result))
            say ("bad-result %s", result);
          break;
        }
      case MODE_FAIL:
        dhf_invocation_return_error (invocation, DHF_ERROR_INVALID_STATE, "refused by the test");
        break;
      case MODE_HANG:
        g_cancellable_connect (dhf_invocation_get_cancellable (invocation),
                               G_CALLBACK (on_held_cancelled), invocation, NULL);
        g_ptr_array_add (sim.held, g_object_ref (invocation));
        break;
      case MODE_STREAM_ECHO:
        {
          g_autoptr (GError) error = NULL;
          DhfStream *stream = dhf_invocation_accept_stream (invocation, &error);

          if (stream == NULL)
            {
              say ("stream-failed accept %s", error->message);
              break;
            }
          g_output_stream_splice_async (g_io_stream_get_output_stream (G_IO_STREAM (stream)),
                                        g_io_stream_get_input_stream (G_IO_STREAM (stream)),
                                        G_OUTPUT_STREAM_SPLICE_CLOSE_TARGET, G_PRIORITY_DEFAULT,
                                        NULL, on_splice_done, stream);
          break;
        }
    }
}

static gboolean
parse_mode (const gchar *text, Mode *mode)
{
  static const gchar *const names[] = { "echo", "hang", "fail", "stream-echo", "echo-quiet" };

  for (guint i = 0; i < G_N_ELEMENTS (names); i++)
    {
      if (g_str_equal (text, names[i]))
        {
          *mode = (Mode) i;
          return TRUE;
        }
    }
  return FALSE;
}

/* --- caller side ------------------------------------------------------ */

static void
on_call_done (GObject *source, GAsyncResult *result, gpointer data)
{
  g_autofree gchar *tag = data;
  g_autoptr (GError) error = NULL;
  g_autofree gchar *json = dhf_client_call_finish (DHF_CLIENT (source), result, &error);

  if (json == NULL)
    say_error (tag, error);
  else
    say ("ok %s %s", tag, json);
}

static void
on_event (DhfClient *client, const gchar *topic, const gchar *source, const gchar *data_json,
          gpointer data)
{
  say ("event %s %s %s", topic, source, data_json != NULL ? data_json : "null");
}

/* A stream the test opened: BYTES of a pattern go out, the provider echoes
 * them, and what comes back must be the same. */
typedef struct
{
  gchar *tag;
  DhfStream *stream;
  guint64 total;
  guint64 written;
  guint64 read;
  gboolean write_done;
  gboolean read_done;
  gboolean failed;
  guint8 out[65536];
  guint8 in[65536];
} StreamJob;

static guint8
pattern_at (guint64 offset)
{
  return (guint8) ((offset * 31u + offset / 65536u) % 251u);
}

static void
stream_job_finish (StreamJob *job)
{
  if (!job->write_done || !job->read_done)
    return;
  if (!job->failed)
    {
      if (job->read == job->total)
        say ("ok %s %" G_GUINT64_FORMAT, job->tag, job->read);
      else
        say ("error %s failed %" G_GUINT64_FORMAT " bytes came back of %" G_GUINT64_FORMAT,
             job->tag, job->read, job->total);
    }
  g_io_stream_close (G_IO_STREAM (job->stream), NULL, NULL);
  g_object_unref (job->stream);
  g_free (job->tag);
  g_free (job);
}

static void stream_write_next (StreamJob *job);
static void stream_read_next (StreamJob *job);

static void
stream_fail (StreamJob *job, const GError *error)
{
  if (!job->failed)
    say_error (job->tag, error);
  job->failed = TRUE;
}

static void
on_stream_closed_output (GObject *source, GAsyncResult *result, gpointer data)
{
  StreamJob *job = data;
  g_autoptr (GError) error = NULL;

  if (!g_output_stream_close_finish (G_OUTPUT_STREAM (source), result, &error))
    stream_fail (job, error);
  job->write_done = TRUE;
  stream_job_finish (job);
}

static void
on_stream_written (GObject *source, GAsyncResult *result, gpointer data)
{
  StreamJob *job = data;
  g_autoptr (GError) error = NULL;
  gsize written = 0;

  if (!g_output_stream_write_all_finish (G_OUTPUT_STREAM (source), result, &written, &error))
    {
      stream_fail (job, error);
      job->write_done = TRUE;
      stream_job_finish (job);
      return;
    }
  job->written += written;
  stream_write_next (job);
}

static void
stream_write_next (StreamJob *job)
{
  GOutputStream *out = g_io_stream_get_output_stream (G_IO_STREAM (job->stream));
  gsize n = (gsize) MIN (sizeof job->out, job->total - job->written);

  if (n == 0)
    {
      g_output_stream_close_async (out, G_PRIORITY_DEFAULT, NULL, on_stream_closed_output, job);
      return;
    }
  for (gsize i = 0; i < n; i++)
    job->out[i] = pattern_at (job->written + i);
  g_output_stream_write_all_async (out, job->out, n, G_PRIORITY_DEFAULT, NULL, on_stream_written,
                                   job);
}

static void
on_stream_read (GObject *source, GAsyncResult *result, gpointer data)
{
  StreamJob *job = data;
  g_autoptr (GError) error = NULL;
  gssize n = g_input_stream_read_finish (G_INPUT_STREAM (source), result, &error);

  if (n < 0)
    {
      stream_fail (job, error);
      job->read_done = TRUE;
      stream_job_finish (job);
      return;
    }
  if (n == 0)
    {
      job->read_done = TRUE;
      stream_job_finish (job);
      return;
    }
  for (gssize i = 0; i < n; i++)
    {
      if (job->in[i] != pattern_at (job->read + (guint64) i) && !job->failed)
        {
          say ("error %s failed byte %" G_GUINT64_FORMAT " differs", job->tag,
               job->read + (guint64) i);
          job->failed = TRUE;
        }
    }
  job->read += (guint64) n;
  stream_read_next (job);
}

static void
stream_read_next (StreamJob *job)
{
  g_input_stream_read_async (g_io_stream_get_input_stream (G_IO_STREAM (job->stream)), job->in,
                             sizeof job->in, G_PRIORITY_DEFAULT, NULL, on_stream_read, job);
}

static void
on_stream_opened (GObject *source, GAsyncResult *result, gpointer data)
{
  StreamJob *job = data;
  g_autoptr (GError) error = NULL;

  job->stream = dhf_client_open_stream_finish (DHF_CLIENT (source), result, &error);
  if (job->stream == NULL)
    {
      say_error (job->tag, error);
      g_free (job->tag);
      g_free (job);
      return;
    }
  stream_write_next (job);
  stream_read_next (job);
}

/* --- commands --------------------------------------------------------- */

static void
run_command (const gchar *line)
{
  /* publish's data is the rest of the line, spaces and all. */
  g_auto (GStrv) words = g_strsplit (line, " ", g_str_has_prefix (line, "publish ") ? 4 : 6);
  guint n = g_strv_length (words);
  g_autoptr (GError) error = NULL;
  const gchar *cmd = n > 0 ? words[0] : "";
  const gchar *tag = n > 1 ? words[1] : "-";

  if (g_str_equal (cmd, "register") && n == 4)
    {
      Mode mode;
      guint id;

      if (!parse_mode (words[3], &mode))
        {
          say ("error %s other unknown mode %s", tag, words[3]);
          return;
        }
      id = dhf_client_register_service (sim.client, words[2], handle, GINT_TO_POINTER (mode), NULL,
                                        &error);
      if (id == 0)
        {
          say_error (tag, error);
          return;
        }
      g_hash_table_insert (sim.registrations, g_strdup (words[2]), GUINT_TO_POINTER (id));
      say ("ok %s", tag);
    }
  else if (g_str_equal (cmd, "unregister") && n == 3)
    {
      guint id = GPOINTER_TO_UINT (g_hash_table_lookup (sim.registrations, words[2]));

      if (!dhf_client_unregister_service (sim.client, id, &error))
        {
          say_error (tag, error);
          return;
        }
      g_hash_table_remove (sim.registrations, words[2]);
      say ("ok %s", tag);
    }
  else if (g_str_equal (cmd, "call") && (n == 5 || n == 6))
    {
      const gchar *target = g_str_equal (words[3], "-") ? NULL : words[3];

      dhf_client_call (sim.client, words[2], target, n == 6 ? words[5] : NULL, atoi (words[4]),
                       NULL, on_call_done, g_strdup (tag));
    }
  else if (g_str_equal (cmd, "subscribe") && n == 3)
    {
      if (dhf_client_subscribe (sim.client, words[2], on_event, NULL, NULL, &error) == 0)
        say_error (tag, error);
      else
        say ("ok %s", tag);
    }
  else if (g_str_equal (cmd, "publish") && (n == 3 || n == 4))
    {
      if (!dhf_client_publish (sim.client, words[2], n == 4 ? words[3] : NULL, &error))
        say_error (tag, error);
      else
        say ("ok %s", tag);
    }
  else if (g_str_equal (cmd, "stream") && n == 5)
    {
      StreamJob *job = g_new0 (StreamJob, 1);

      job->tag = g_strdup (tag);
      job->total = g_ascii_strtoull (words[4], NULL, 10);
      dhf_client_open_stream (sim.client, words[2], g_str_equal (words[3], "-") ? NULL : words[3],
                              NULL, on_stream_opened, job);
    }
  else
    say ("error %s other bad command: %s", tag, line);
}

static void read_next_line (void);

static void
on_line (GObject *source, GAsyncResult *result, gpointer data)
{
  g_autoptr (GError) error = NULL;
  g_autofree gchar *line = g_data_input_stream_read_line_finish_utf8 (G_DATA_INPUT_STREAM (source),
                                                                      result, NULL, &error);

  if (line == NULL)
    {
      /* The test went away (or closed stdin): so do we. */
      g_main_loop_quit (sim.loop);
      return;
    }
  run_command (line);
  read_next_line ();
}

static void
read_next_line (void)
{
  g_data_input_stream_read_line_async (sim.input, G_PRIORITY_DEFAULT, NULL, on_line, NULL);
}

static void
on_connected_changed (GObject *object, GParamSpec *pspec, gpointer data)
{
  if (dhf_client_get_connected (sim.client))
    say ("connected %s", dhf_client_get_domain (sim.client));
  else
    say ("disconnected");
}

static void
on_connect_done (GObject *source, GAsyncResult *result, gpointer data)
{
  g_autoptr (GError) error = NULL;

  if (!dhf_client_connect_finish (sim.client, result, &error))
    {
      g_printerr ("xdm-sim: connecting: %s\n", error->message);
      exit (1);
    }
  say ("ready %s", dhf_client_get_domain (sim.client));
  /* Reads commands only once there is a session to use them on. */
  read_next_line ();
}

int
main (int argc, char **argv)
{
  g_autoptr (GInputStream) stdin_stream = NULL;

  if (argc != 2)
    {
      g_printerr ("usage: xdm-sim ADDRESS\n");
      return 2;
    }
  sim.loop = g_main_loop_new (NULL, FALSE);
  sim.registrations = g_hash_table_new_full (g_str_hash, g_str_equal, g_free, NULL);
  sim.held = g_ptr_array_new_with_free_func (g_object_unref);
  stdin_stream = g_unix_input_stream_new (0, FALSE);
  sim.input = g_data_input_stream_new (stdin_stream);
  sim.client = dhf_client_new (argv[1]);
  g_signal_connect (sim.client, "notify::connected", G_CALLBACK (on_connected_changed), NULL);
  dhf_client_connect (sim.client, NULL, on_connect_done, NULL);
  g_main_loop_run (sim.loop);

  g_ptr_array_unref (sim.held);
  dhf_client_close (sim.client);
  g_object_unref (sim.client);
  g_object_unref (sim.input);
  g_hash_table_unref (sim.registrations);
  g_main_loop_unref (sim.loop);
  return 0;
}
