/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* The service org.dhf.example.Guest1: a JSON object with "op" in, a JSON
 * object out. This file has the table of operations and those that only
 * read or keep this guest's own state; calls made from the guest are in
 * guest-calls.c, the writer in guest-writer.c. */
#include <string.h>
#include <sys/utsname.h>

#include "guest-app.h"
#include "guest-calls.h"
#include "guest-log.h"
#include "guest-params.h"
#include "guest-procfs.h"

/* Bounds on what callers can make this guest keep in memory: a guest may
 * have 128 MiB, its root file system included. Each item counts its
 * bytes and its NUL, each event the bytes of its topic, source and data,
 * plus about what malloc and GLib spend on keeping it. */
#define MAX_ITEM_BYTES   1024
#define MAX_ITEMS_BYTES  (16 * 1024 * 1024) /* then put is refused */
#define ITEM_OVERHEAD    48
#define MAX_EVENTS       10000             /* the latest are kept */
#define MAX_EVENTS_BYTES (8 * 1024 * 1024) /* the latest are kept */
#define EVENT_OVERHEAD   128

/* Slices of the lists that outgrow one reply. */
#define PAGE_HINT "a slice with \"offset\" and \"limit\""

typedef struct
{
  gchar *topic;
  gchar *source;
  gchar *data_json; /* NULL: the event had no data */
  gsize bytes;      /* as counted against MAX_EVENTS_BYTES */
} GuestEvent;

static void
guest_event_free (GuestEvent *event)
{
  g_free (event->topic);
  g_free (event->source);
  g_free (event->data_json);
  g_free (event);
}

/* ---- info, echo ---------------------------------------------------------- */

static void
op_info (GuestApp *app, DhfInvocation *invocation, json_object *params)
{
  g_autoptr (json_object) result = json_object_new_object ();
  g_autoptr (GError) error = NULL;
  struct utsname uts;
  gint64 uptime_ms = 0;

  if (!guest_procfs_read_uptime (GUEST_PROC_UPTIME, &uptime_ms, &error))
    {
      dhf_invocation_return_error (invocation, DHF_ERROR_FAILED, error->message);
      return;
    }
  if (uname (&uts) != 0)
    {
      dhf_invocation_return_error (invocation, DHF_ERROR_FAILED, "uname() failed");
      return;
    }
  json_object_object_add (result, "domain",
                          json_object_new_string (dhf_client_get_domain (app->client)));
  json_object_object_add (result, "kernel", json_object_new_string (uts.release));
  json_object_object_add (result, "uptime_ms", json_object_new_int64 (uptime_ms));
  json_object_object_add (result, "sessions", json_object_new_int64 (app->sessions));
  if (app->first_session_uptime_ms >= 0)
    json_object_object_add (result, "first_session_uptime_ms",
                            json_object_new_int64 (app->first_session_uptime_ms));
  guest_return_result (invocation, g_steal_pointer (&result));
}

static void
op_echo (GuestApp *app, DhfInvocation *invocation, json_object *params)
{
  g_autoptr (json_object) result = json_object_new_object ();
  json_object *data = NULL;

  if (!json_object_object_get_ex (params, "data", &data))
    {
      dhf_invocation_return_error (invocation, DHF_ERROR_INVALID_ARGS,
                                   "echo needs \"data\" (any JSON value)");
      return;
    }
  json_object_object_add (result, "data", json_object_get (data));
  guest_return_result (invocation, g_steal_pointer (&result));
}

/* ---- put, items ------------------------------------------------------------ */

static void
op_put (GuestApp *app, DhfInvocation *invocation, json_object *params)
{
  g_autoptr (json_object) result = json_object_new_object ();
  g_autoptr (GError) error = NULL;
  const gchar *item = NULL;

  if (!guest_params_get_string (params, "item", TRUE, MAX_ITEM_BYTES, &item, &error))
    {
      dhf_invocation_return_gerror (invocation, error);
      return;
    }
  /* A set: the writer retries an item whose answer was lost, and the
   * retry must not store it twice. */
  if (!g_hash_table_contains (app->item_set, item))
    {
      gsize bytes = strlen (item) + 1 + ITEM_OVERHEAD;
      gchar *copy;

      if (app->item_bytes + bytes > MAX_ITEMS_BYTES)
        {
          g_autofree gchar *message
              = g_strdup_printf ("this guest keeps at most %d MiB of items (each counts its bytes, "
                                 "its NUL and %d more); it has %u",
                                 MAX_ITEMS_BYTES / (1024 * 1024), ITEM_OVERHEAD, app->items->len);

          dhf_invocation_return_error (invocation, DHF_ERROR_LIMIT_EXCEEDED, message);
          return;
        }
      copy = g_strdup (item);
      g_ptr_array_add (app->items, copy);
      g_hash_table_add (app->item_set, copy);
      app->item_bytes += bytes;
    }
  json_object_object_add (result, "stored", json_object_new_int64 (app->items->len));
  guest_return_result (invocation, g_steal_pointer (&result));
}

static void
op_items (GuestApp *app, DhfInvocation *invocation, json_object *params)
{
  g_autoptr (json_object) result = json_object_new_object ();
  g_autoptr (GuestResultList) list = guest_result_list_new ();
  g_autoptr (GError) error = NULL;
  guint start, end;

  if (!guest_params_get_slice (params, app->items->len, &start, &end, &error))
    {
      dhf_invocation_return_gerror (invocation, error);
      return;
    }
  for (guint i = start; i < end; i++)
    if (!guest_result_list_add (list, json_object_new_string (app->items->pdata[i])))
      {
        guest_return_list_too_long (invocation, list, end - start, PAGE_HINT);
        return;
      }
  json_object_object_add (result, "items", guest_result_list_steal (list));
  guest_return_result (invocation, g_steal_pointer (&result));
}

/* ---- subscribe, events ------------------------------------------------------- */

static void
on_event (DhfClient *client, const gchar *topic, const gchar *source, const gchar *data_json,
          gpointer user_data)
{
  GuestApp *app = user_data;
  GuestEvent *event = g_new0 (GuestEvent, 1);

  event->topic = g_strdup (topic);
  event->source = g_strdup (source);
  event->data_json = g_strdup (data_json);
  event->bytes = strlen (topic) + strlen (source) + (data_json != NULL ? strlen (data_json) : 0)
                 + EVENT_OVERHEAD;
  g_queue_push_tail (app->events, event);
  app->event_bytes += event->bytes;
  /* The oldest go first; the newest stays (an event is at most 1 MiB). */
  while (g_queue_get_length (app->events) > MAX_EVENTS || app->event_bytes > MAX_EVENTS_BYTES)
    {
      GuestEvent *oldest = g_queue_pop_head (app->events);

      app->event_bytes -= oldest->bytes;
      guest_event_free (oldest);
      if (app->events_dropped++ == 0)
        guest_log ("events: over %d or %d MiB of them; the oldest are dropped from now on",
                   MAX_EVENTS, MAX_EVENTS_BYTES / (1024 * 1024));
    }
  guest_debug ("event %s from %s: %s", topic, source, data_json != NULL ? data_json : "(no data)");
}

static void
op_subscribe (GuestApp *app, DhfInvocation *invocation, json_object *params)
{
  g_autoptr (GError) error = NULL;
  const gchar *topic = NULL;
  guint id;

  if (!guest_params_get_topic (params, "topic", TRUE, &topic, &error))
    {
      dhf_invocation_return_gerror (invocation, error);
      return;
    }
  if (g_hash_table_contains (app->subscriptions, topic))
    {
      g_autofree gchar *message = g_strdup_printf ("already subscribed to %s", topic);

      dhf_invocation_return_error (invocation, DHF_ERROR_EXISTS, message);
      return;
    }
  /* A round trip to dhfd on the main thread: the answer is read by the
   * SDK's I/O thread, so this does not wait for this loop. The SDK
   * subscribes again by itself after a reconnection. */
  id = dhf_client_subscribe (app->client, topic, on_event, app, NULL, &error);
  if (id == 0)
    {
      g_prefix_error (&error, "cannot subscribe to %s: ", topic);
      dhf_invocation_return_gerror (invocation, error);
      return;
    }
  g_hash_table_insert (app->subscriptions, g_strdup (topic), GUINT_TO_POINTER (id));
  guest_log ("subscribed to %s", topic);
  dhf_invocation_return_json (invocation, "{}");
}

static json_object *
event_to_json (const GuestEvent *event)
{
  json_object *object = json_object_new_object ();

  json_object_object_add (object, "topic", json_object_new_string (event->topic));
  json_object_object_add (object, "source", json_object_new_string (event->source));
  /* The SDK handed over valid JSON: embedded as it is. Data null counts
   * as no data. */
  if (event->data_json != NULL && !g_str_equal (event->data_json, "null"))
    json_object_object_add (object, "data", guest_json_from_text (g_strdup (event->data_json)));
  return object;
}

static void
op_events (GuestApp *app, DhfInvocation *invocation, json_object *params)
{
  g_autoptr (json_object) result = json_object_new_object ();
  g_autoptr (GPtrArray) matching = g_ptr_array_new ();
  g_autoptr (GuestResultList) list = guest_result_list_new ();
  g_autoptr (GError) error = NULL;
  const gchar *topic = NULL;
  guint start, end;

  if (!guest_params_get_topic (params, "topic", FALSE, &topic, &error))
    {
      dhf_invocation_return_gerror (invocation, error);
      return;
    }
  for (GList *l = app->events->head; l != NULL; l = l->next)
    {
      GuestEvent *event = l->data;

      if (topic == NULL || g_str_equal (event->topic, topic))
        g_ptr_array_add (matching, event);
    }
  if (!guest_params_get_slice (params, matching->len, &start, &end, &error))
    {
      dhf_invocation_return_gerror (invocation, error);
      return;
    }
  for (guint i = start; i < end; i++)
    if (!guest_result_list_add (list, event_to_json (matching->pdata[i])))
      {
        guest_return_list_too_long (invocation, list, end - start, PAGE_HINT);
        return;
      }
  json_object_object_add (result, "events", guest_result_list_steal (list));
  if (app->events_dropped > 0)
    json_object_object_add (result, "dropped", json_object_new_uint64 (app->events_dropped));
  guest_return_result (invocation, g_steal_pointer (&result));
}

/* ---- writer ------------------------------------------------------------------ */

static void
op_writer (GuestApp *app, DhfInvocation *invocation, json_object *params)
{
  guest_writer_op_start (app->writer, invocation, params);
}

static void
op_writer_status (GuestApp *app, DhfInvocation *invocation, json_object *params)
{
  guest_writer_op_status (app->writer, invocation, params);
}

/* ---- input ------------------------------------------------------------------- */

static void
op_input (GuestApp *app, DhfInvocation *invocation, json_object *params)
{
  g_autoptr (json_object) result = json_object_new_object ();
  g_autoptr (GPtrArray) devices = NULL;
  g_autoptr (GError) error = NULL;
  json_object *array;

  devices = guest_procfs_read_input_devices (GUEST_PROC_DEVICES, &error);
  if (devices == NULL)
    {
      dhf_invocation_return_error (invocation, DHF_ERROR_FAILED, error->message);
      return;
    }
  array = json_object_new_array_ext ((int) devices->len);
  for (guint i = 0; i < devices->len; i++)
    {
      const GuestInputDevice *device = devices->pdata[i];
      json_object *object = json_object_new_object ();
      json_object *handlers = json_object_new_array ();

      for (guint j = 0; device->handlers[j] != NULL; j++)
        json_object_array_add (handlers, json_object_new_string (device->handlers[j]));
      json_object_object_add (object, "name", json_object_new_string (device->name));
      json_object_object_add (object, "handlers", handlers);
      json_object_object_add (object, "keyboard", json_object_new_boolean (device->keyboard));
      json_object_array_add (array, object);
    }
  json_object_object_add (result, "devices", array);
  guest_return_result (invocation, g_steal_pointer (&result));
}

/* ---- the table ------------------------------------------------------------- */

static const struct
{
  const gchar *name;
  GuestOpFunc func;
} ops[] = {
  { "info", op_info },
  { "echo", op_echo },
  { "put", op_put },
  { "items", op_items },
  { "call", guest_op_call },
  { "bench", guest_op_bench },
  { "writer", op_writer },
  { "writer-status", op_writer_status },
  { "subscribe", op_subscribe },
  { "events", op_events },
  { "input", op_input },
};

void
guest_service_handle (DhfClient *client, DhfInvocation *invocation, gpointer user_data)
{
  GuestApp *app = user_data;
  g_autoptr (json_object) params = NULL;
  g_autoptr (GError) error = NULL;
  const gchar *op = NULL;

  if (dhf_invocation_get_kind (invocation) != DHF_INVOCATION_CALL)
    {
      dhf_invocation_return_error (invocation, DHF_ERROR_NOT_SUPPORTED,
                                   GUEST_SERVICE " offers no streams");
      return;
    }
  if (dhf_invocation_get_argument (invocation) != NULL)
    {
      dhf_invocation_return_error (invocation, DHF_ERROR_INVALID_ARGS,
                                   GUEST_SERVICE " takes no +ARG: the op is in the params");
      return;
    }
  params = guest_params_parse (dhf_invocation_get_params_json (invocation), &op, &error);
  if (params == NULL)
    {
      dhf_invocation_return_gerror (invocation, error);
      return;
    }
  guest_debug ("%s from %s", op, dhf_invocation_get_source (invocation));
  for (guint i = 0; i < G_N_ELEMENTS (ops); i++)
    if (g_str_equal (ops[i].name, op))
      {
        ops[i].func (app, invocation, params);
        return;
      }
  {
    g_autofree gchar *message = g_strdup_printf (
        "unknown op '%.64s' (info, echo, put, items, call, bench, writer, writer-status, "
        "subscribe, events, input)",
        op);

    dhf_invocation_return_error (invocation, DHF_ERROR_INVALID_ARGS, message);
  }
}

/* ---- the state --------------------------------------------------------------- */

void
guest_app_init (GuestApp *app, DhfClient *client)
{
  memset (app, 0, sizeof *app);
  app->client = g_object_ref (client);
  app->loop = g_main_loop_new (NULL, FALSE);
  app->exit_status = 1;
  app->shutdown = g_cancellable_new ();
  app->first_session_uptime_ms = -1;
  app->items = g_ptr_array_new_with_free_func (g_free);
  app->item_set = g_hash_table_new (g_str_hash, g_str_equal);
  app->subscriptions = g_hash_table_new_full (g_str_hash, g_str_equal, g_free, NULL);
  app->events = g_queue_new ();
  app->writer = guest_writer_new (client);
}

void
guest_app_clear (GuestApp *app)
{
  g_cancellable_cancel (app->shutdown);
  g_clear_pointer (&app->writer, guest_writer_free);
  /* A bench's worker thread holds the client until its call in flight
   * ended with the cancellation and it handed back its result here. */
  while (app->bench_running)
    g_main_context_iteration (NULL, TRUE);
  /* Events and answers the client queued for this loop before it closed. */
  while (g_main_context_iteration (NULL, FALSE))
    continue;
  g_clear_pointer (&app->item_set, g_hash_table_unref);
  g_clear_pointer (&app->items, g_ptr_array_unref);
  g_clear_pointer (&app->subscriptions, g_hash_table_unref);
  if (app->events != NULL)
    g_queue_free_full (g_steal_pointer (&app->events), (GDestroyNotify) guest_event_free);
  g_clear_object (&app->shutdown);
  g_clear_pointer (&app->loop, g_main_loop_unref);
  g_clear_object (&app->client);
}
