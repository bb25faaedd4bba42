/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* dhf-example-notes-provider: an appliance's service, as an ISV writes it.
 *
 * It offers org.dhf.example.Notes1 to other domains through dhfd:
 *
 *   CALL   params {"op": "add", "text": "..."}  -> {"id": N}
 *   CALL   params {"op": "list"}                -> {"notes": [{"id", "text", "by"}, ...]}
 *   STREAM org.dhf.example.Notes1+export        -> every note as "ID<TAB>BY<TAB>TEXT\n"
 *
 * and publishes org.dhf.example.NoteAdded {"id", "text", "by"} whenever a
 * note is added. Who may call it, and who receives the events, is the
 * administrator's policy (examples/xdm/notes.policy); "by" is the caller's
 * domain as dhfd established it, not anything the caller claimed.
 *
 * Build: cc $(pkg-config --cflags --libs dhf-1 json-c) dhf-example-notes-provider.c
 * Run inside the appliance: dhf-example-notes-provider
 * (the default address, the virtio-serial port org.dhf.xdm.0). */
#include <dhf/dhf.h>
#include <glib-unix.h>
#include <json.h>
#include <locale.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>

#define SERVICE     "org.dhf.example.Notes1"
#define EVENT_TOPIC "org.dhf.example.NoteAdded"
#define MAX_NOTES   1000
#define MAX_TEXT    4096 /* bytes */

typedef struct
{
  guint id;
  gchar *text;
  gchar *by; /* the domain that added it */
} Note;

typedef struct
{
  GPtrArray *notes; /* Note */
  guint next_id;
} Notes;

static void
note_free (Note *note)
{
  g_free (note->text);
  g_free (note->by);
  g_free (note);
}

G_DEFINE_AUTOPTR_CLEANUP_FUNC (json_object, json_object_put)

static json_object *
note_to_json (const Note *note)
{
  json_object *object = json_object_new_object ();

  json_object_object_add (object, "id", json_object_new_int64 (note->id));
  json_object_object_add (object, "text", json_object_new_string (note->text));
  json_object_object_add (object, "by", json_object_new_string (note->by));
  return object;
}

static const gchar *
to_text (json_object *object)
{
  return json_object_to_json_string_ext (object, JSON_C_TO_STRING_PLAIN);
}

static void
add_note (DhfClient *client, Notes *notes, DhfInvocation *invocation, json_object *params)
{
  g_autoptr (json_object) result = json_object_new_object ();
  g_autoptr (json_object) event = NULL;
  g_autoptr (GError) error = NULL;
  json_object *text = NULL;
  Note *note;

  if (!json_object_object_get_ex (params, "text", &text)
      || !json_object_is_type (text, json_type_string) || json_object_get_string_len (text) == 0
      || json_object_get_string_len (text) > MAX_TEXT)
    {
      dhf_invocation_return_error (invocation, DHF_ERROR_INVALID_ARGS,
                                   "add needs \"text\": a string of 1 to 4096 bytes");
      return;
    }
  if (notes->notes->len >= MAX_NOTES)
    {
      dhf_invocation_return_error (invocation, DHF_ERROR_LIMIT_EXCEEDED,
                                   "the notebook is full (1000 notes)");
      return;
    }

  note = g_new0 (Note, 1);
  note->id = notes->next_id++;
  note->text = g_strdup (json_object_get_string (text));
  note->by = g_strdup (dhf_invocation_get_source (invocation));
  g_ptr_array_add (notes->notes, note);

  /* Tell the subscribers; dhfd delivers it to those the policy allows. */
  event = note_to_json (note);
  if (!dhf_client_publish (client, EVENT_TOPIC, to_text (event), &error))
    g_printerr ("notes-provider: cannot publish %s: %s\n", EVENT_TOPIC, error->message);

  json_object_object_add (result, "id", json_object_new_int64 (note->id));
  dhf_invocation_return_json (invocation, to_text (result));
}

static void
list_notes (Notes *notes, DhfInvocation *invocation)
{
  g_autoptr (json_object) result = json_object_new_object ();
  json_object *array = json_object_new_array ();

  for (guint i = 0; i < notes->notes->len; i++)
    json_object_array_add (array, note_to_json (g_ptr_array_index (notes->notes, i)));
  json_object_object_add (result, "notes", array);
  dhf_invocation_return_json (invocation, to_text (result));
}

static void
handle_call (DhfClient *client, Notes *notes, DhfInvocation *invocation)
{
  g_autoptr (json_object) params = json_tokener_parse (dhf_invocation_get_params_json (invocation));
  json_object *op = NULL;

  if (dhf_invocation_get_argument (invocation) != NULL)
    {
      dhf_invocation_return_error (invocation, DHF_ERROR_INVALID_ARGS,
                                   "calls take no argument (+export is a stream)");
      return;
    }
  if (params == NULL || !json_object_is_type (params, json_type_object)
      || !json_object_object_get_ex (params, "op", &op)
      || !json_object_is_type (op, json_type_string))
    {
      dhf_invocation_return_error (invocation, DHF_ERROR_INVALID_ARGS,
                                   "params must be {\"op\": \"add\" or \"list\", ...}");
      return;
    }

  if (g_str_equal (json_object_get_string (op), "add"))
    add_note (client, notes, invocation, params);
  else if (g_str_equal (json_object_get_string (op), "list"))
    list_notes (notes, invocation);
  else
    dhf_invocation_return_error (invocation, DHF_ERROR_INVALID_ARGS,
                                 "unknown op (expected \"add\" or \"list\")");
}

/* The export stream: one write of everything, then end-of-stream. The
 * stream's credit paces the write; the main loop keeps serving calls. */
static void
export_closed (GObject *source, GAsyncResult *result, gpointer user_data)
{
  g_autoptr (GError) error = NULL;

  if (!g_io_stream_close_finish (G_IO_STREAM (source), result, &error))
    g_printerr ("notes-provider: export: %s\n", error->message);
  g_object_unref (source);
}

static void
export_written (GObject *source, GAsyncResult *result, gpointer user_data)
{
  DhfStream *stream = user_data;
  g_autoptr (GError) error = NULL;

  if (!g_output_stream_write_all_finish (G_OUTPUT_STREAM (source), result, NULL, &error))
    g_printerr ("notes-provider: export to %s: %s\n", dhf_stream_get_peer (stream), error->message);
  g_io_stream_close_async (G_IO_STREAM (stream), G_PRIORITY_DEFAULT, NULL, export_closed, stream);
}

static void
handle_stream (Notes *notes, DhfInvocation *invocation)
{
  g_autoptr (GError) error = NULL;
  g_autoptr (GString) text = g_string_new (NULL);
  GBytes *bytes;
  DhfStream *stream;

  if (g_strcmp0 (dhf_invocation_get_argument (invocation), "export") != 0)
    {
      dhf_invocation_return_error (invocation, DHF_ERROR_NOT_FOUND,
                                   "the only stream is " SERVICE "+export");
      return;
    }
  stream = dhf_invocation_accept_stream (invocation, &error);
  if (stream == NULL)
    {
      g_printerr ("notes-provider: cannot accept the export stream: %s\n", error->message);
      return;
    }

  for (guint i = 0; i < notes->notes->len; i++)
    {
      const Note *note = g_ptr_array_index (notes->notes, i);

      g_string_append_printf (text, "%u\t%s\t%s\n", note->id, note->by, note->text);
    }
  /* The buffer must live until the write is done: the stream owns it. */
  bytes = g_string_free_to_bytes (g_steal_pointer (&text));
  g_object_set_data_full (G_OBJECT (stream), "export", bytes, (GDestroyNotify) g_bytes_unref);
  g_output_stream_write_all_async (g_io_stream_get_output_stream (G_IO_STREAM (stream)),
                                   g_bytes_get_data (bytes, NULL), g_bytes_get_size (bytes),
                                   G_PRIORITY_DEFAULT, NULL, export_written, stream);
}

static void
handle_request (DhfClient *client, DhfInvocation *invocation, gpointer user_data)
{
  Notes *notes = user_data;

  if (dhf_invocation_get_kind (invocation) == DHF_INVOCATION_STREAM)
    handle_stream (notes, invocation);
  else
    handle_call (client, notes, invocation);
}

static gboolean
quit (gpointer user_data)
{
  g_main_loop_quit (user_data);
  return G_SOURCE_CONTINUE;
}

int
main (int argc, char **argv)
{
  g_autofree gchar *address = NULL;
  const GOptionEntry entries[] = {
    { "address", 'a', 0, G_OPTION_ARG_STRING, &address,
      "Reach dhfd at ADDR (default: $DHF_XDM_ADDRESS, else the appliance's XDM channel)", "ADDR" },
    G_OPTION_ENTRY_NULL,
  };
  g_autoptr (GOptionContext) context = g_option_context_new ("— offer " SERVICE);
  g_autoptr (GError) error = NULL;
  g_autoptr (DhfClient) client = NULL;
  g_autoptr (GMainLoop) loop = g_main_loop_new (NULL, FALSE);
  Notes notes = { g_ptr_array_new_with_free_func ((GDestroyNotify) note_free), 1 };

  setlocale (LC_ALL, "");
  g_option_context_add_main_entries (context, entries, NULL);
  if (!g_option_context_parse (context, &argc, &argv, &error))
    {
      g_printerr ("notes-provider: %s\n", error->message);
      return 2;
    }

  client = dhf_client_new (address);
  /* In a guest this waits for dhfd to open the channel. If dhfd restarts
   * later, the client reconnects and registers the service again. */
  if (!dhf_client_connect_sync (client, NULL, &error))
    {
      g_printerr ("notes-provider: cannot reach dhfd at %s: %s\n", dhf_client_get_address (client),
                  error->message);
      return 1;
    }
  if (dhf_client_register_service (client, SERVICE, handle_request, &notes, NULL, &error) == 0)
    {
      g_printerr ("notes-provider: cannot offer %s: %s\n", SERVICE, error->message);
      return 1;
    }
  g_print ("notes-provider: serving %s as %s\n", SERVICE, dhf_client_get_domain (client));
  fflush (stdout);

  g_unix_signal_add (SIGINT, quit, loop);
  g_unix_signal_add (SIGTERM, quit, loop);
  g_main_loop_run (loop);

  dhf_client_close (client);
  g_ptr_array_unref (notes.notes);
  return 0;
}
