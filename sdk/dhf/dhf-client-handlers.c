/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include "config.h"

/* Registered services and subscriptions (DhfHandler): each a GSource in
 * the context of the thread that registered it, to which the I/O thread
 * queues invocations and events, and the accounting that pauses reading
 * while they hold too much. */

#include "dhf-client-private.h"

/* ---- handlers: registered services and subscriptions ------------------- */

static void
event_item_free (EventItem *item)
{
  g_free (item->topic);
  g_free (item->source);
  if (item->data != NULL)
    g_ref_string_release (item->data);
  g_free (item);
}

static void handler_finish (DhfHandler *h);

/* Over DHF_CLIENT_MAX_HANDLER_QUEUE the I/O thread stops reading: dhfd
 * queues (and over its limit drops events, refuses calls) instead of us. */
void
dhf_core_charge_handlers_locked (DhfClientCore *core, gsize bytes)
{
  core->handler_bytes += bytes;
  if (!core->read_paused && core->handler_bytes >= DHF_CLIENT_MAX_HANDLER_QUEUE)
    {
      core->read_paused = TRUE;
      dhf_core_update_io_events_locked (core);
    }
}

/* Reading resumes once the handlers have drained half of it; the I/O
 * thread is woken for the frames it had buffered already. */
static void
uncharge_handlers_locked (DhfClientCore *core, gsize bytes)
{
  core->handler_bytes -= MIN (bytes, core->handler_bytes);
  if (core->read_paused && core->handler_bytes <= DHF_CLIENT_MAX_HANDLER_QUEUE / 2)
    {
      core->read_paused = FALSE;
      dhf_core_update_io_events_locked (core);
      if (core->io_source != NULL)
        g_source_set_ready_time (core->io_source, 0);
    }
}

static gsize
queued_item_size (DhfHandler *h, gpointer item)
{
  return h->is_service ? dhf_core_invocation_get_size (item) : ((EventItem *) item)->size;
}

static gboolean
handler_dispatch (GSource *source, GSourceFunc callback, gpointer user_data)
{
  DhfHandler *h = (DhfHandler *) source;
  DhfClientCore *core = h->core;
  g_autoptr (DhfClient) client = NULL;
  GQueue batch;
  gboolean active;
  gboolean finished;
  GList *link;

  g_source_set_ready_time (source, -1);
  g_mutex_lock (&core->lock);
  batch = h->queue;
  g_queue_init (&h->queue);
  active = h->active;
  h->running++;
  g_mutex_unlock (&core->lock);

  if (active)
    client = g_weak_ref_get (&core->client);
  while ((link = g_queue_pop_head_link (&batch)) != NULL)
    {
      if (h->is_service)
        {
          DhfInvocation *invocation = link->data;

          /* A handler may unregister itself: later items are refused. */
          g_mutex_lock (&core->lock);
          active = h->active;
          uncharge_handlers_locked (core, dhf_core_invocation_get_size (invocation));
          g_mutex_unlock (&core->lock);
          if (active && client != NULL)
            h->service_handler (client, invocation, h->user_data);
          else
            dhf_invocation_return_error (invocation, DHF_ERROR_NOT_FOUND,
                                         "the service is no longer provided");
          g_object_unref (invocation);
        }
      else
        {
          EventItem *item = link->data;

          g_mutex_lock (&core->lock);
          active = h->active;
          uncharge_handlers_locked (core, item->size);
          g_mutex_unlock (&core->lock);
          if (active && client != NULL)
            h->event_handler (client, item->topic, item->source, item->data, h->user_data);
          event_item_free (item);
        }
    }

  g_mutex_lock (&core->lock);
  h->running--;
  finished = !h->active && h->running == 0 && h->queue.length == 0 && !h->notified;
  if (finished)
    h->notified = TRUE;
  g_mutex_unlock (&core->lock);
  if (finished)
    handler_finish (h);
  return G_SOURCE_CONTINUE;
}

static void
handler_finalize (GSource *source)
{
  DhfHandler *h = (DhfHandler *) source;
  GList *link;

  /* Only reached once the handler is inactive and drained, or never
   * attached; drop whatever is left without calling user code. */
  g_mutex_lock (&h->core->lock);
  for (GList *l = h->queue.head; l != NULL; l = l->next)
    uncharge_handlers_locked (h->core, queued_item_size (h, l->data));
  g_mutex_unlock (&h->core->lock);
  while ((link = g_queue_pop_head_link (&h->queue)) != NULL)
    {
      if (h->is_service)
        g_object_unref (link->data);
      else
        event_item_free (link->data);
    }
  g_free (h->name);
  dhf_core_unref (h->core);
}

static GSourceFuncs handler_funcs = {
  .dispatch = handler_dispatch,
  .finalize = handler_finalize,
};

/* Calls the destroy notify and detaches the source: the registration is
 * gone. Called once, without core->lock. */
static void
handler_finish (DhfHandler *h)
{
  if (h->notify != NULL)
    h->notify (h->user_data);
  h->notify = NULL;
  g_source_destroy (&h->source);
}

DhfHandler *
dhf_core_handler_new (DhfClientCore *core, gboolean is_service, const gchar *name)
{
  GSource *source = g_source_new (&handler_funcs, sizeof (DhfHandler));
  DhfHandler *h = (DhfHandler *) source;

  g_source_set_static_name (source, is_service ? "dhf service" : "dhf subscription");
  h->core = dhf_core_ref (core);
  h->is_service = is_service;
  h->name = g_strdup (name);
  h->active = TRUE;
  g_queue_init (&h->queue);
  return h;
}

/* Deactivates h (already out of the tables). With nothing queued or
 * running its notify runs now; otherwise its context drains the queue
 * (refusing the invocations) and then calls it. */
void
dhf_core_handler_deactivate (DhfClientCore *core, DhfHandler *h)
{
  gboolean finish_now;

  g_mutex_lock (&core->lock);
  h->active = FALSE;
  finish_now = h->running == 0 && h->queue.length == 0 && !h->notified;
  if (finish_now)
    h->notified = TRUE;
  else if (!h->notified)
    g_source_set_ready_time (&h->source, 0);
  g_mutex_unlock (&core->lock);
  if (finish_now)
    handler_finish (h);
  g_source_unref (&h->source);
}
