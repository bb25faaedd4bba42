/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* The writer: puts PREFIX-1 .. PREFIX-COUNT into another guest, strictly
 * one call at a time, and retries a call that failed (dhfd restarting,
 * the other guest not registered yet, a timeout) with the same item until
 * it goes through. An item is acked when its REPLY arrived; the other
 * guest keeps a set, so an item whose REPLY was lost and that is put
 * again is not stored twice. Together: after any outage, the items acked
 * are exactly PREFIX-1 .. PREFIX-done, and all are in the other guest. */
#include "guest-log.h"
#include "guest-params.h"
#include "guest-writer.h"

#define MAX_PREFIX_BYTES   200
#define RETRY_MS           100
#define DEFAULT_TIMEOUT_MS 10000

struct _GuestWriter
{
  DhfClient *client;
  GCancellable *cancellable; /* of the run; cancelled when the writer is freed */
  gboolean running;
  gboolean in_flight; /* a call is out */
  gchar *service;
  gchar *target;
  gchar *prefix;
  guint count;
  gint timeout_ms;
  guint next; /* the item being written, 1-based */
  /* Items acked: always PREFIX-1 .. PREFIX-done, so they are not kept
   * but named again when asked for. */
  guint done;
  guint retries;     /* calls that failed and were made again */
  guint failing;     /* failures in a row, for the log */
  gchar *last_error; /* "code: message" */
  guint retry_id;
};

static void write_next (GuestWriter *self);

static gchar *
item_name (GuestWriter *self, guint i)
{
  return g_strdup_printf ("%s-%u", self->prefix, i);
}

static json_object *
item_json (GuestWriter *self, guint i)
{
  g_autofree gchar *name = item_name (self, i);

  return json_object_new_string (name);
}

static void
retry (gpointer user_data)
{
  write_next (user_data);
}

static void
put_done (GObject *source, GAsyncResult *res, gpointer user_data)
{
  GuestWriter *self = user_data;
  g_autoptr (GError) error = NULL;
  g_autofree gchar *result = dhf_client_call_finish (DHF_CLIENT (source), res, &error);

  self->in_flight = FALSE;
  if (g_cancellable_is_cancelled (self->cancellable))
    return;
  if (result == NULL)
    {
      g_free (self->last_error);
      self->last_error = g_strdup_printf ("%s: %s", guest_error_nick (error), error->message);
      self->retries++;
      /* The console gets the first failure of a run of them, not ten a second. */
      if (self->failing++ == 0)
        guest_log ("writer: %s-%u failed (%s); retrying every %d ms", self->prefix, self->next,
                   self->last_error, RETRY_MS);
      else
        guest_debug ("writer: %s-%u failed again (%s)", self->prefix, self->next, self->last_error);
      self->retry_id = g_timeout_add_once (RETRY_MS, retry, self);
      return;
    }
  if (self->failing > 0)
    guest_log ("writer: %s-%u went through after %u failures", self->prefix, self->next,
               self->failing);
  self->failing = 0;
  self->done = self->next;
  if (self->next == self->count)
    {
      self->running = FALSE;
      guest_log ("writer: done, %u items to %s on %s, %u retries", self->count, self->service,
                 self->target, self->retries);
      return;
    }
  self->next++;
  write_next (self);
}

static void
write_next (GuestWriter *self)
{
  g_autoptr (json_object) params = json_object_new_object ();
  g_autofree gchar *item = item_name (self, self->next);
  g_autofree gchar *text = NULL;

  self->retry_id = 0;
  json_object_object_add (params, "op", json_object_new_string ("put"));
  json_object_object_add (params, "item", json_object_new_string (item));
  text = guest_json_to_text (params);
  self->in_flight = TRUE;
  dhf_client_call (self->client, self->service, self->target, text, self->timeout_ms,
                   self->cancellable, put_done, self);
}

GuestWriter *
guest_writer_new (DhfClient *client)
{
  GuestWriter *self = g_new0 (GuestWriter, 1);

  self->client = g_object_ref (client);
  return self;
}

/* Stops a run: its call fails with "cancelled" at once, and its callback
 * must have run before the writer can go. */
static void
stop (GuestWriter *self)
{
  if (self->cancellable != NULL)
    g_cancellable_cancel (self->cancellable);
  g_clear_handle_id (&self->retry_id, g_source_remove);
  while (self->in_flight)
    g_main_context_iteration (NULL, TRUE);
  g_clear_object (&self->cancellable);
  self->running = FALSE;
}

void
guest_writer_free (GuestWriter *self)
{
  stop (self);
  g_object_unref (self->client);
  g_free (self->service);
  g_free (self->target);
  g_free (self->prefix);
  g_free (self->last_error);
  g_free (self);
}

void
guest_writer_op_start (GuestWriter *self, DhfInvocation *invocation, json_object *params)
{
  g_autoptr (GError) error = NULL;
  const gchar *service = NULL;
  const gchar *target = NULL;
  const gchar *prefix = NULL;
  gint64 count = 0;
  gint64 timeout_ms = DEFAULT_TIMEOUT_MS;

  if (!guest_params_get_service (params, "service", TRUE, &service, &error)
      || !guest_params_get_domain (params, "target", TRUE, &target, &error)
      || !guest_params_get_int (params, "count", TRUE, 1, GUEST_MAX_COUNT, &count, &error)
      || !guest_params_get_string (params, "prefix", TRUE, MAX_PREFIX_BYTES, &prefix, &error)
      || !guest_params_get_int (params, "timeout_ms", FALSE, 1, GUEST_MAX_TIMEOUT_MS, &timeout_ms,
                                &error))
    {
      dhf_invocation_return_gerror (invocation, error);
      return;
    }
  if (self->running)
    {
      g_autofree gchar *message = g_strdup_printf ("a writer is running (%u of %u items to %s)",
                                                   self->done, self->count, self->target);

      dhf_invocation_return_error (invocation, DHF_ERROR_EXISTS, message);
      return;
    }

  /* A new run replaces what the last one left. */
  stop (self);
  self->done = 0;
  g_free (self->service);
  self->service = g_strdup (service);
  g_free (self->target);
  self->target = g_strdup (target);
  g_free (self->prefix);
  self->prefix = g_strdup (prefix);
  g_clear_pointer (&self->last_error, g_free);
  self->count = (guint) count;
  self->timeout_ms = (gint) timeout_ms;
  self->retries = 0;
  self->failing = 0;
  self->next = 1;
  self->running = TRUE;
  self->cancellable = g_cancellable_new ();
  guest_log ("writer: putting %s-1 .. %s-%u into %s on %s", self->prefix, self->prefix, self->count,
             self->service, self->target);
  write_next (self);
  dhf_invocation_return_json (invocation, "{\"started\": true}");
}

void
guest_writer_op_status (GuestWriter *self, DhfInvocation *invocation, json_object *params)
{
  static const gchar page[] = "a slice of \"acked\" with \"offset\" and \"limit\"";
  g_autoptr (json_object) result = json_object_new_object ();
  g_autoptr (GuestResultList) acked = guest_result_list_new ();
  g_autoptr (GError) error = NULL;
  guint start, end;

  if (!guest_params_get_slice (params, self->done, &start, &end, &error))
    {
      dhf_invocation_return_gerror (invocation, error);
      return;
    }
  for (guint i = start; i < end; i++)
    if (!guest_result_list_add (acked, item_json (self, i + 1)))
      {
        guest_return_list_too_long (invocation, acked, end - start, page);
        return;
      }
  json_object_object_add (result, "running", json_object_new_boolean (self->running));
  json_object_object_add (result, "done", json_object_new_int64 (self->done));
  json_object_object_add (result, "count", json_object_new_int64 (self->count));
  json_object_object_add (result, "acked", guest_result_list_steal (acked));
  json_object_object_add (result, "retries", json_object_new_int64 (self->retries));
  if (self->last_error != NULL)
    json_object_object_add (result, "last_error", json_object_new_string (self->last_error));
  guest_return_result (invocation, g_steal_pointer (&result));
}
