/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include "config.h"

/* Requests of ours in flight (DhfPending): their ids, deadlines, sending
 * (sync and async), and their completion once core->lock is released
 * (Later: what must not run under the lock). */

#include "dhf-client-private.h"

#define REQUEST_ID_MAX 0x7fffffffu

/* ---- requests in flight ------------------------------------------------ */

DhfPending *
dhf_core_pending_new (DhfClientCore *core, PendingKind kind)
{
  DhfPending *p = g_new0 (DhfPending, 1);

  g_atomic_ref_count_init (&p->ref_count);
  p->link.data = p;
  p->core = core;
  p->kind = kind;
  return p;
}

void
dhf_core_pending_clear_fields (DhfPending *p)
{
  g_clear_pointer (&p->result, g_free);
  g_clear_error (&p->error);
  g_clear_object (&p->stream);
  g_clear_pointer (&p->service, g_free);
  g_clear_pointer (&p->target, g_free);
  g_clear_pointer (&p->what, g_free);
  g_clear_object (&p->task);
  g_clear_object (&p->cancellable);
}

static void
pending_unref (gpointer data)
{
  DhfPending *p = data;

  if (!g_atomic_ref_count_dec (&p->ref_count))
    return;
  dhf_core_pending_clear_fields (p);
  g_free (p);
}

static DhfPending *
pending_ref (DhfPending *p)
{
  g_atomic_ref_count_inc (&p->ref_count);
  return p;
}

static gboolean
cancel_in_context_cb (gpointer data)
{
  g_cancellable_cancel (data);
  return G_SOURCE_REMOVE;
}

/* Abandons an invocation: its cancellable (if it has one yet) is
 * cancelled in its handler's context, not on the I/O thread, so that
 * "cancelled" handlers may do what they do in any handler. */
void
dhf_core_later_abandon (Later *later, DhfInvocation *invocation)
{
  GMainContext *context = NULL;
  GCancellable *cancellable = dhf_core_invocation_abandon_locked (invocation, &context);

  if (cancellable == NULL)
    return;
  if (later->cancel == NULL)
    later->cancel = g_ptr_array_new ();
  g_ptr_array_add (later->cancel, cancellable);
  g_ptr_array_add (later->cancel, context);
}

/* ---- request ids and the deadline timer -------------------------------- */

static guint32
alloc_id_locked (DhfClientCore *core)
{
  for (;;)
    {
      guint32 id = core->next_id;

      core->next_id = id >= REQUEST_ID_MAX ? 1 : id + 1;
      if (id != 0 && !g_hash_table_contains (core->pending, GUINT_TO_POINTER (id))
          && !g_hash_table_contains (core->streams, GUINT_TO_POINTER (id))
          && !g_hash_table_contains (core->abandoned_opens, GUINT_TO_POINTER (id)))
        return id;
    }
}

/* Only an earlier deadline re-arms the timer (and wakes the I/O thread):
 * with one timeout for every call, a stream of calls never does. */
static void
arm_deadline_locked (DhfClientCore *core, gint64 deadline)
{
  if (core->armed_deadline >= 0 && core->armed_deadline <= deadline)
    return;
  core->armed_deadline = deadline;
  g_source_set_ready_time (core->deadline_source, deadline);
}

void
dhf_core_insert_pending_locked (DhfClientCore *core, DhfPending *p, gint timeout_ms)
{
  p->id = alloc_id_locked (core);
  p->gen = core->gen;
  p->deadline = g_get_monotonic_time () + (gint64) timeout_ms * 1000;
  g_hash_table_insert (core->pending, GUINT_TO_POINTER (p->id), p);
  if (!p->sync)
    arm_deadline_locked (core, p->deadline);
}

/* Marks p answered; the sync waiter is woken now, an async one is
 * completed once the lock is released. p has left the table. */
void
dhf_core_finish_pending_locked (DhfClientCore *core, DhfPending *p, Later *later)
{
  p->done = TRUE;
  if (p->sync)
    g_cond_signal (&p->cond);
  else if (p->kind != PENDING_RESTORE)
    g_queue_push_tail_link (&later->finished, &p->link);
  else
    pending_unref (p);
}

void
dhf_core_send_cancel_locked (DhfClientCore *core, DhfPending *p)
{
  GByteArray *frame;

  if (p->gen != core->gen)
    return;
  frame = dhf_core_scratch_frame ();
  dhf_xdm_append_json (frame, DHF_XDM_CANCEL, p->id, NULL);
  (void) dhf_core_send_frame_locked (core, frame);
  /* The CANCEL may cross dhfd's REPLY accepting the stream. */
  if (p->kind == PENDING_OPEN)
    g_hash_table_add (core->abandoned_opens, GUINT_TO_POINTER (p->id));
}

void
dhf_core_restore_done_locked (DhfClientCore *core, Later *later)
{
  if (core->restoring > 0 && --core->restoring == 0 && core->state == DHF_CONN_RESTORING)
    dhf_core_set_state_locked (core, DHF_CONN_CONNECTED, later);
}

/* ---- completing after the lock ---------------------------------------- */

/* Disconnecting an async request from its cancellable, away from the
 * "cancelled" handler that asked for it (the id is the one p->cancel_id
 * had: the handler cleared that so that nobody else disconnects). */
typedef struct
{
  DhfPending *p;
  gulong cancel_id;
} CancelDisconnect;

static void
cancel_disconnect_cb (gpointer data)
{
  CancelDisconnect *cd = data;

  /* Drops the cancellable's reference on p (its destroy notify). */
  g_cancellable_disconnect (cd->p->cancellable, cd->cancel_id);
  pending_unref (cd->p);
  g_free (cd);
}

/* Completes an async request; in its task's context, so the callback
 * runs at once. */
static void
complete_pending (DhfPending *p)
{
  DhfClientCore *core = p->core;
  gulong cancel_id;

  if (p->error != NULL)
    g_task_return_error (p->task, g_steal_pointer (&p->error));
  else if (p->kind == PENDING_OPEN)
    g_task_return_pointer (p->task, g_steal_pointer (&p->stream), g_object_unref);
  else
    g_task_return_pointer (p->task, g_steal_pointer (&p->result), g_free);
  g_mutex_lock (&core->lock);
  cancel_id = p->cancel_id;
  p->cancel_id = 0;
  g_mutex_unlock (&core->lock);
  if (cancel_id != 0)
    g_cancellable_disconnect (p->cancellable, cancel_id);
  pending_unref (p);
}

static gboolean
complete_batch_cb (gpointer data)
{
  GQueue *batch = data;
  GList *link;

  while ((link = g_queue_pop_head_link (batch)) != NULL)
    complete_pending (link->data);
  g_queue_free (batch);
  return G_SOURCE_REMOVE;
}

void
dhf_core_run_later (DhfClientCore *core, Later *later)
{
  /* The answers of one read go to their callers in one batch per context
   * (one wake-up, not one per answer, when calls are pipelined). */
  while (later->finished.length > 0)
    {
      GQueue *batch = g_queue_new ();
      GMainContext *context
          = g_task_get_context (((DhfPending *) later->finished.head->data)->task);
      GList *link = later->finished.head;

      while (link != NULL)
        {
          GList *next = link->next;

          if (g_task_get_context (((DhfPending *) link->data)->task) == context)
            {
              g_queue_unlink (&later->finished, link);
              g_queue_push_tail_link (batch, link);
            }
          link = next;
        }
      dhf_core_run_in_context (context, complete_batch_cb, batch, NULL);
    }
  if (later->cancel != NULL)
    {
      for (guint i = 0; i < later->cancel->len; i += 2)
        {
          GMainContext *context = later->cancel->pdata[i + 1];

          dhf_core_run_in_context (context, cancel_in_context_cb, later->cancel->pdata[i],
                                   g_object_unref);
          g_main_context_unref (context);
        }
      g_clear_pointer (&later->cancel, g_ptr_array_unref);
    }
  if (later->dropped != NULL)
    {
      for (guint i = 0; i < later->dropped->len; i++)
        dhf_core_handler_deactivate (core, later->dropped->pdata[i]);
      g_clear_pointer (&later->dropped, g_ptr_array_unref);
    }
  if (later->notify)
    dhf_core_emit_connected (core, later->notify_value);
  later->notify = FALSE;
}

/* ---- requests ------------------------------------------------------------ */

static void
sync_cancelled_cb (GCancellable *cancellable, gpointer data)
{
  DhfPending *p = data;

  g_mutex_lock (&p->core->lock);
  p->cancelled = TRUE;
  g_cond_signal (&p->cond);
  g_mutex_unlock (&p->core->lock);
}

gboolean
dhf_core_require_connected_locked (DhfClientCore *core, GError **error)
{
  if (core->state == DHF_CONN_CONNECTED)
    return TRUE;
  g_set_error_literal (error, DHF_ERROR, DHF_ERROR_DISCONNECTED,
                       core->keep_connected ? "not connected to dhfd (reconnecting)"
                                            : "not connected to dhfd");
  return FALSE;
}

/* Sends type with body and waits for the answer, with core->lock held
 * (released while waiting), so that what the caller changed under the
 * same hold and the frame cannot be reordered against other threads.
 * p (on the caller's stack, set up by dhf_core_pending_sync_init()) holds the
 * result or stream, the caller's. */
gboolean
dhf_core_request_sync_locked (DhfClientCore *core, DhfPending *p, DhfXdmType type,
                              const GString *body, gint timeout_ms, GError **error)
{
  GByteArray *frame = dhf_core_scratch_frame ();

  dhf_core_insert_pending_locked (core, p, timeout_ms);
  dhf_xdm_append_text (frame, type, p->id, body->str, body->len);
  if (!dhf_core_send_request_locked (core, core->gen, frame->data, frame->len, &p->error))
    {
      g_hash_table_remove (core->pending, GUINT_TO_POINTER (p->id));
      p->done = TRUE;
    }
  while (!p->done && !p->cancelled)
    {
      if (!g_cond_wait_until (&p->cond, &core->lock, p->deadline))
        break;
    }
  if (!p->done)
    {
      /* Gave up first: the request leaves the table, dhfd is told. */
      g_hash_table_remove (core->pending, GUINT_TO_POINTER (p->id));
      dhf_core_send_cancel_locked (core, p);
      if (p->cancelled)
        p->error
            = g_error_new_literal (DHF_ERROR, DHF_ERROR_CANCELLED, "the request was cancelled");
      else
        p->error = g_error_new (DHF_ERROR, DHF_ERROR_TIMEOUT, "no answer within %d ms", timeout_ms);
      p->done = TRUE;
    }
  if (p->error == NULL)
    return TRUE;
  g_propagate_error (error, g_steal_pointer (&p->error));
  return FALSE;
}

void
dhf_core_pending_sync_init (DhfPending *p, DhfClientCore *core, PendingKind kind)
{
  p->sync = TRUE;
  p->core = core;
  p->kind = kind;
  g_cond_init (&p->cond);
}

/* Sends type with body and waits for the answer, in the calling thread.
 * p is on the caller's stack; its result or stream is the caller's. */
gboolean
dhf_core_request_sync (DhfClientCore *core, DhfPending *p, DhfXdmType type, const GString *body,
                       gint timeout_ms, GCancellable *cancellable, GError **error)
{
  gulong cancel_id = 0;
  gboolean ok;

  dhf_core_pending_sync_init (p, core, p->kind);
  if (g_cancellable_is_cancelled (cancellable))
    {
      g_set_error_literal (error, DHF_ERROR, DHF_ERROR_CANCELLED, "the request was cancelled");
      g_cond_clear (&p->cond);
      return FALSE;
    }
  if (cancellable != NULL)
    cancel_id = g_cancellable_connect (cancellable, G_CALLBACK (sync_cancelled_cb), p, NULL);

  g_mutex_lock (&core->lock);
  ok = dhf_core_require_connected_locked (core, error)
       && dhf_core_request_sync_locked (core, p, type, body, timeout_ms, error);
  g_mutex_unlock (&core->lock);
  if (cancel_id != 0)
    g_cancellable_disconnect (cancellable, cancel_id);
  g_cond_clear (&p->cond);
  return ok;
}

static gboolean
async_cancel_idle_cb (gpointer data)
{
  return G_SOURCE_REMOVE; /* the work is in the destroy notify */
}

/* The cancellable of an async request fired (in whatever thread). */
static void
async_cancelled_cb (GCancellable *cancellable, gpointer data)
{
  DhfPending *p = data;
  DhfClientCore *core = p->core;
  gboolean ours = FALSE;
  gulong cancel_id;

  g_mutex_lock (&core->lock);
  if (!p->done && g_hash_table_lookup (core->pending, GUINT_TO_POINTER (p->id)) == p)
    {
      g_hash_table_remove (core->pending, GUINT_TO_POINTER (p->id));
      dhf_core_send_cancel_locked (core, p);
      p->done = TRUE;
      ours = TRUE;
    }
  cancel_id = p->cancel_id;
  if (ours)
    p->cancel_id = 0;
  g_mutex_unlock (&core->lock);
  if (!ours)
    return;
  g_task_return_new_error (p->task, DHF_ERROR, DHF_ERROR_CANCELLED, "the request was cancelled");
  /* Disconnecting from inside this handler would deadlock: the I/O thread
   * does it (the table's reference goes with it), with the id cleared
   * from p above. As the idle's destroy notify, it happens even if the
   * I/O thread's context is torn down before the idle runs. */
  if (cancel_id != 0)
    {
      CancelDisconnect *cd = g_new0 (CancelDisconnect, 1);

      cd->p = p;
      cd->cancel_id = cancel_id;
      dhf_core_run_in_context (core->context, async_cancel_idle_cb, cd, cancel_disconnect_cb);
    }
  else
    pending_unref (p);
}

/* Sends type with body for an async request p (heap, one reference). */
void
dhf_core_request_async (DhfClientCore *core, DhfPending *p, DhfXdmType type, const GString *body,
                        gint timeout_ms)
{
  g_autoptr (GError) error = NULL;
  GCancellable *cancellable = p->cancellable;
  gboolean sent = FALSE;
  gulong cancel_id;

  /* Cancellation is reported as DHF_ERROR_CANCELLED, like the rest. */
  g_task_set_check_cancellable (p->task, FALSE);
  g_mutex_lock (&core->lock);
  if (g_cancellable_is_cancelled (p->cancellable))
    error = g_error_new_literal (DHF_ERROR, DHF_ERROR_CANCELLED, "the request was cancelled");
  else if (dhf_core_require_connected_locked (core, &error))
    {
      GByteArray *frame = dhf_core_scratch_frame ();

      dhf_core_insert_pending_locked (core, p, timeout_ms);
      dhf_xdm_append_text (frame, type, p->id, body->str, body->len);
      sent = dhf_core_send_request_locked (core, core->gen, frame->data, frame->len, &error);
      if (!sent)
        g_hash_table_remove (core->pending, GUINT_TO_POINTER (p->id));
      else if (cancellable != NULL)
        {
          /* The cancellable's reference, taken before the answer can come
           * and complete p; released by whoever disconnects it. */
          pending_ref (p);
        }
    }
  g_mutex_unlock (&core->lock);
  if (!sent)
    {
      g_task_return_error (p->task, g_steal_pointer (&error));
      pending_unref (p);
      return;
    }
  if (cancellable == NULL)
    return; /* p may be gone already */
  cancel_id
      = g_cancellable_connect (cancellable, G_CALLBACK (async_cancelled_cb), p, pending_unref);
  if (cancel_id == 0)
    return; /* was cancelled already: the handler ran (and data was released) */
  g_mutex_lock (&core->lock);
  if (p->done)
    {
      /* Answered (or cancelled) before we could record the id. */
      g_mutex_unlock (&core->lock);
      g_cancellable_disconnect (cancellable, cancel_id);
      return;
    }
  p->cancel_id = cancel_id;
  g_mutex_unlock (&core->lock);
}
