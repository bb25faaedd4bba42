/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* dhf-example-notes-client: uses org.dhf.example.Notes1 of another domain
 * (dhf-example-notes-provider) through dhfd.
 *
 *   dhf-example-notes-client add TEXT   subscribe to NoteAdded, add a note,
 *                                       print its id and the event it caused
 *   dhf-example-notes-client list       print every note: ID, domain, text
 *   dhf-example-notes-client export     copy the +export stream to stdout
 *
 * Without --target, dhfd sends the call to the one provider of the service
 * that the policy lets this domain reach.
 *
 * Build: cc $(pkg-config --cflags --libs dhf-1 json-c) dhf-example-notes-client.c
 * Exit status: 0 done, 1 failed (the error's code is printed, e.g.
 * "not-authorized" when the policy says no), 2 usage. */
#include <dhf/dhf.h>
#include <json.h>
#include <locale.h>
#include <stdio.h>
#include <stdlib.h>

#define SERVICE        "org.dhf.example.Notes1"
#define EVENT_TOPIC    "org.dhf.example.NoteAdded"
#define EVENT_WAIT_SEC 10

G_DEFINE_AUTOPTR_CLEANUP_FUNC (json_object, json_object_put)

/* "not-authorized: org.dhf.example.Notes1 ... denied" */
static void
print_error (const gchar *what, const GError *error)
{
  const gchar *code = "failed";

  if (error->domain == DHF_ERROR)
    {
      g_autoptr (GEnumClass) codes = g_type_class_ref (DHF_TYPE_ERROR);
      GEnumValue *value = g_enum_get_value (codes, error->code);

      if (value != NULL)
        code = value->value_nick;
    }
  g_printerr ("notes-client: %s: %s: %s\n", what, code, error->message);
}

typedef struct
{
  gint64 id;        /* the note we wait for; -1 until the reply told us */
  gboolean seen;    /* its NoteAdded arrived */
  GPtrArray *early; /* "SOURCE\nDATA" of events that came before the reply */
} EventWait;

static void
check_event (EventWait *wait, const gchar *source, const gchar *data_json)
{
  g_autoptr (json_object) data = data_json != NULL ? json_tokener_parse (data_json) : NULL;
  json_object *id = NULL;

  if (data == NULL || !json_object_object_get_ex (data, "id", &id))
    return;
  /* Others' notes arrive too: print only ours. */
  if (wait->seen || json_object_get_int64 (id) != wait->id)
    return;
  g_print ("event %s from %s: %s\n", EVENT_TOPIC, source, data_json);
  wait->seen = TRUE;
}

static void
on_note_added (DhfClient *client, const gchar *topic, const gchar *source, const gchar *data_json,
               gpointer user_data)
{
  EventWait *wait = user_data;

  /* The provider publishes before it replies: the event may be first. */
  if (wait->id < 0)
    g_ptr_array_add (wait->early,
                     g_strdup_printf ("%s\n%s", source, data_json != NULL ? data_json : "null"));
  else
    check_event (wait, source, data_json);
}

static gboolean
timed_out (gpointer user_data)
{
  *(gboolean *) user_data = TRUE;
  return G_SOURCE_REMOVE;
}

static int
add_and_wait (DhfClient *client, const gchar *target, const gchar *text, EventWait *wait)
{
  g_autoptr (GError) error = NULL;
  g_autoptr (json_object) params = json_object_new_object ();
  g_autoptr (json_object) reply = NULL;
  g_autofree gchar *result = NULL;
  json_object *id = NULL;
  gboolean expired = FALSE;
  guint timeout_id;

  json_object_object_add (params, "op", json_object_new_string ("add"));
  json_object_object_add (params, "text", json_object_new_string (text));
  result = dhf_client_call_sync (client, SERVICE, target,
                                 json_object_to_json_string_ext (params, JSON_C_TO_STRING_PLAIN), 0,
                                 NULL, &error);
  if (result == NULL)
    {
      print_error ("cannot add a note", error);
      return 1;
    }
  reply = json_tokener_parse (result);
  if (reply == NULL || !json_object_object_get_ex (reply, "id", &id))
    {
      g_printerr ("notes-client: unexpected reply %s\n", result);
      return 1;
    }
  wait->id = json_object_get_int64 (id);
  g_print ("added note %" G_GINT64_FORMAT "\n", wait->id);
  for (guint i = 0; i < wait->early->len; i++)
    {
      g_auto (GStrv) parts = g_strsplit (g_ptr_array_index (wait->early, i), "\n", 2);

      check_event (wait, parts[0], parts[1]);
    }
  fflush (stdout);

  /* The provider published the event before it replied; it may be here
   * already, or still on its way. */
  timeout_id = g_timeout_add_seconds (EVENT_WAIT_SEC, timed_out, &expired);
  while (!wait->seen && !expired)
    g_main_context_iteration (NULL, TRUE);
  if (!expired)
    g_source_remove (timeout_id);
  if (!wait->seen)
    {
      g_printerr ("notes-client: no %s event within %d s: does the policy let it reach us?\n",
                  EVENT_TOPIC, EVENT_WAIT_SEC);
      return 1;
    }
  return 0;
}

static int
cmd_add (DhfClient *client, const gchar *target, const gchar *text)
{
  g_autoptr (GError) error = NULL;
  g_autoptr (GPtrArray) early = g_ptr_array_new_with_free_func (g_free);
  EventWait wait = { -1, FALSE, early };
  guint subscription;
  int status;

  /* Subscribe first, so that the event of our own note cannot be missed. */
  subscription = dhf_client_subscribe (client, EVENT_TOPIC, on_note_added, &wait, NULL, &error);
  if (subscription == 0)
    {
      print_error ("events", error);
      return 1;
    }
  status = add_and_wait (client, target, text, &wait);
  /* wait lives on this stack frame: no event may reach it any more. */
  dhf_client_unsubscribe (client, subscription, NULL);
  return status;
}

static int
cmd_list (DhfClient *client, const gchar *target)
{
  g_autoptr (GError) error = NULL;
  g_autoptr (json_object) reply = NULL;
  g_autofree gchar *result = NULL;
  json_object *notes = NULL;

  result = dhf_client_call_sync (client, SERVICE, target, "{\"op\": \"list\"}", 0, NULL, &error);
  if (result == NULL)
    {
      print_error ("cannot list the notes", error);
      return 1;
    }
  reply = json_tokener_parse (result);
  if (reply == NULL || !json_object_object_get_ex (reply, "notes", &notes)
      || !json_object_is_type (notes, json_type_array))
    {
      g_printerr ("notes-client: unexpected reply %s\n", result);
      return 1;
    }
  for (gsize i = 0; i < json_object_array_length (notes); i++)
    {
      json_object *note = json_object_array_get_idx (notes, i);
      json_object *id = NULL, *by = NULL, *text = NULL;

      json_object_object_get_ex (note, "id", &id);
      json_object_object_get_ex (note, "by", &by);
      json_object_object_get_ex (note, "text", &text);
      g_print ("%" G_GINT64_FORMAT "\t%s\t%s\n", json_object_get_int64 (id),
               json_object_get_string (by), json_object_get_string (text));
    }
  return 0;
}

static int
cmd_export (DhfClient *client, const gchar *target)
{
  g_autoptr (GError) error = NULL;
  g_autoptr (DhfStream) stream = NULL;
  GInputStream *in;
  guint8 buffer[4096];
  gssize n;

  stream = dhf_client_open_stream_sync (client, SERVICE "+export", target, NULL, &error);
  if (stream == NULL)
    {
      print_error ("cannot open the export stream", error);
      return 1;
    }
  in = g_io_stream_get_input_stream (G_IO_STREAM (stream));
  while ((n = g_input_stream_read (in, buffer, sizeof buffer, NULL, &error)) > 0)
    {
      if (fwrite (buffer, 1, (gsize) n, stdout) != (gsize) n)
        {
          g_printerr ("notes-client: cannot write to standard output\n");
          return 1;
        }
    }
  if (n < 0)
    {
      print_error ("export stream", error);
      return 1;
    }
  fflush (stdout);
  return g_io_stream_close (G_IO_STREAM (stream), NULL, NULL) ? 0 : 1;
}

int
main (int argc, char **argv)
{
  g_autofree gchar *address = NULL;
  g_autofree gchar *target = NULL;
  const GOptionEntry entries[] = {
    { "address", 'a', 0, G_OPTION_ARG_STRING, &address,
      "Reach dhfd at ADDR (default: $DHF_XDM_ADDRESS, else the appliance's XDM channel)", "ADDR" },
    { "target", 't', 0, G_OPTION_ARG_STRING, &target,
      "Use the notes of DOMAIN (default: the provider the policy lets us reach)", "DOMAIN" },
    G_OPTION_ENTRY_NULL,
  };
  g_autoptr (GOptionContext) context = g_option_context_new ("add TEXT | list | export");
  g_autoptr (GError) error = NULL;
  g_autoptr (DhfClient) client = NULL;
  const gchar *command;
  int status;

  setlocale (LC_ALL, "");
  g_option_context_add_main_entries (context, entries, NULL);
  if (!g_option_context_parse (context, &argc, &argv, &error))
    {
      g_printerr ("notes-client: %s\n", error->message);
      return 2;
    }
  command = argc > 1 ? argv[1] : "";
  if (!((g_str_equal (command, "add") && argc == 3)
        || ((g_str_equal (command, "list") || g_str_equal (command, "export")) && argc == 2)))
    {
      g_printerr ("usage: notes-client [--address ADDR] [--target DOMAIN] add TEXT | list | "
                  "export\n");
      return 2;
    }

  client = dhf_client_new (address);
  if (!dhf_client_connect_sync (client, NULL, &error))
    {
      g_autofree gchar *what
          = g_strdup_printf ("cannot reach dhfd at %s", dhf_client_get_address (client));

      print_error (what, error);
      return 1;
    }

  if (g_str_equal (command, "add"))
    status = cmd_add (client, target, argv[2]);
  else if (g_str_equal (command, "list"))
    status = cmd_list (client, target);
  else
    status = cmd_export (client, target);

  dhf_client_close (client);
  return status;
}
