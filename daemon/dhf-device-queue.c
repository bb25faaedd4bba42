/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include "config.h"

#include "dhf-device-engine-private.h"

/* The device engine's queue (docs/devices.md): requests wait here, run one
 * at a time with their transaction on the worker, and what the worker did
 * is applied back to the records here; so are the failures it leaves and
 * the focus, history and state file the requests change. */

/* --- failures ---------------------------------------------------------- */

/* Failed moves are not tried again until something they depend on
 * changes: the device, the domain it was for or is in, the policy, a sync
 * (docs/devices.md). These forget them. */
void
dhf_engine_forget_failures_of_domain (DhfDeviceEngine *self, const gchar *name)
{
  GHashTableIter iter;
  gpointer value;

  g_hash_table_remove (self->weight_failed, name);
  g_hash_table_iter_init (&iter, self->devices);
  while (g_hash_table_iter_next (&iter, NULL, &value))
    {
      DhfEngDevice *record = value;

      if (g_strcmp0 (record->failure_want, name) == 0 || g_strcmp0 (record->owner, name) == 0)
        dhf_engine_record_clear_failure (record);
    }
}

void
dhf_engine_forget_all_failures (DhfDeviceEngine *self)
{
  GHashTableIter iter;
  gpointer value;

  g_hash_table_remove_all (self->weight_failed);
  g_hash_table_iter_init (&iter, self->devices);
  while (g_hash_table_iter_next (&iter, NULL, &value))
    dhf_engine_record_clear_failure (value);
}

void
dhf_engine_history_remove (DhfDeviceEngine *self, const gchar *name)
{
  for (guint i = self->history->len; i-- > 0;)
    {
      if (g_strcmp0 (g_ptr_array_index (self->history, i), name) == 0)
        g_ptr_array_remove_index (self->history, i);
    }
}

void
dhf_engine_history_trim (DhfDeviceEngine *self)
{
  if (self->history->len > self->history_length)
    g_ptr_array_set_size (self->history, self->history_length);
}

/* Makes focus the focused one; previous (may be NULL) goes to the front
 * of the history. */
void
dhf_engine_set_focus (DhfDeviceEngine *self, const gchar *focus, const gchar *previous)
{
  dhf_engine_history_remove (self, focus);
  /* A domain that is gone is nothing to go back to. */
  if (previous != NULL && g_strcmp0 (previous, focus) != 0
      && (dhf_engine_is_dom0 (previous) || dhf_engine_find_domain (self, previous) != NULL))
    {
      dhf_engine_history_remove (self, previous);
      g_ptr_array_insert (self->history, 0, g_strdup (previous));
    }
  dhf_engine_history_trim (self);
  g_free (self->focus);
  self->focus = g_strdup (focus);
}

void
dhf_engine_save_state (DhfDeviceEngine *self)
{
  g_autoptr (DhfDeviceState) state = NULL;
  GHashTableIter iter;
  gpointer key, value;

  if (self->writer == NULL)
    return;
  state = dhf_device_state_new ();
  state->focused = g_strdup (self->focus);
  for (guint i = 0; i < self->history->len; i++)
    g_ptr_array_add (state->history, g_strdup (g_ptr_array_index (self->history, i)));
  g_hash_table_iter_init (&iter, self->admin_pins);
  while (g_hash_table_iter_next (&iter, &key, &value))
    g_hash_table_insert (state->pins, g_strdup (key), dhf_admin_pin_copy (value));
  dhf_state_writer_save (self->writer, dhf_device_state_to_json (state));
}

gboolean
dhf_engine_may_focus (DhfDeviceEngine *self, const gchar *name)
{
  const DhfEngDomain *domain = dhf_engine_find_domain (self, name);

  return dhf_engine_is_dom0 (name) || (domain != NULL && domain->running && domain->environment);
}

/* Where the focus goes when the focused domain stops ([Display] Fallback). */
const gchar *
dhf_engine_fallback_target (DhfDeviceEngine *self, const gchar *leaving)
{
  if (g_strcmp0 (self->fallback, "@previous") == 0)
    {
      for (guint i = 0; i < self->history->len; i++)
        {
          const gchar *name = g_ptr_array_index (self->history, i);

          if (!dhf_engine_is_dom0 (name) && g_strcmp0 (name, leaving) != 0
              && dhf_engine_may_focus (self, name))
            return name;
        }
      return DHF_DOM0;
    }
  if (self->fallback != NULL && g_strcmp0 (self->fallback, leaving) != 0
      && dhf_engine_may_focus (self, self->fallback))
    return self->fallback;
  return DHF_DOM0;
}

/* --- the queue --------------------------------------------------------- */

DhfEngineRequest *
dhf_engine_request_new (DhfDeviceEngine *self, DhfEngineRequestKind kind, GTask *task)
{
  DhfEngineRequest *req = g_new0 (DhfEngineRequest, 1);

  req->ref_count = 1;
  req->kind = kind;
  req->self = self;
  req->task = task != NULL ? g_object_ref (task) : NULL;
  return req;
}

DhfEngineRequest *
dhf_engine_request_ref (DhfEngineRequest *req)
{
  g_atomic_int_inc (&req->ref_count);
  return req;
}

void
dhf_engine_request_unref (DhfEngineRequest *req)
{
  if (!g_atomic_int_dec_and_test (&req->ref_count))
    return;
  g_clear_object (&req->task);
  g_free (req->target);
  g_free (req->requester);
  g_free (req->keys);
  g_free (req->device_id);
  g_free (req->selector);
  g_free (req->decided_target);
  g_free (req->resolved);
  g_clear_pointer (&req->txn, dhf_txn_free);
  g_clear_object (&req->ask_cancellable);
  g_free (req);
}

GError *
dhf_engine_shutting_down_error (void)
{
  return g_error_new_literal (DHF_ERROR, DHF_ERROR_CANCELLED, "the device engine is shutting down");
}

GError *
dhf_engine_cancelled_error (const DhfEngineRequest *req)
{
  return g_error_new_literal (DHF_ERROR, DHF_ERROR_CANCELLED,
                              req->kind == DHF_REQUEST_SWITCH ? "the switch was cancelled"
                                                              : "the request was cancelled");
}

static GCancellable *
request_cancellable (const DhfEngineRequest *req)
{
  return req->task != NULL ? g_task_get_cancellable (req->task) : NULL;
}

/* While req waits (queued, or parked for the user's answer), its caller's
 * cancellable is watched: a request cancelled then leaves at once, so a
 * caller that asks and cancels over and over fills no queue. The handler
 * holds a reference (it may run on another thread). */
void
dhf_engine_cancel_watch (DhfEngineRequest *req)
{
  GCancellable *cancellable = request_cancellable (req);

  if (cancellable == NULL || req->cancel_handler != 0)
    return;
  req->cancel_handler = g_cancellable_connect (
      cancellable, G_CALLBACK (dhf_engine_on_task_cancelled), dhf_engine_request_ref (req),
      (GDestroyNotify) dhf_engine_request_unref);
}

/* On the context's thread, never from the handler itself. */
void
dhf_engine_cancel_unwatch (DhfEngineRequest *req)
{
  if (req->cancel_handler == 0)
    return;
  g_cancellable_disconnect (request_cancellable (req), req->cancel_handler);
  req->cancel_handler = 0;
}

/* Answers the request's caller (or logs the engine's own failures). */
void
dhf_engine_complete (DhfEngineRequest *req, GError *error /* taken */, const gchar *focused)
{
  if (req->task != NULL)
    {
      if (error != NULL)
        g_task_return_error (req->task, error);
      else if (req->kind == DHF_REQUEST_SWITCH)
        g_task_return_pointer (req->task, g_strdup (focused), g_free);
      else
        g_task_return_boolean (req->task, TRUE);
    }
  else if (error != NULL)
    {
      g_debug ("device engine: %s", error->message);
      g_error_free (error);
    }
}

static void
start_request (DhfEngineRequest *req)
{
  GCancellable *cancellable = request_cancellable (req);

  /* Cancelled before it started: nothing of it has run. */
  if (cancellable != NULL && g_cancellable_is_cancelled (cancellable))
    {
      dhf_engine_finish (req, dhf_engine_cancelled_error (req), NULL);
      return;
    }
  switch (req->kind)
    {
      case DHF_REQUEST_SYNC:
        dhf_engine_start_sync (req);
        break;
      case DHF_REQUEST_RECONCILE:
        dhf_engine_start_reconcile (req);
        break;
      case DHF_REQUEST_SWITCH:
        dhf_engine_start_switch (req);
        break;
      case DHF_REQUEST_FALLBACK:
        dhf_engine_start_fallback (req);
        break;
      case DHF_REQUEST_ASSIGN:
        dhf_engine_start_assign (req);
        break;
      case DHF_REQUEST_RELEASE:
        dhf_engine_start_release (req);
        break;
    }
}

static gboolean
run_next (gpointer data)
{
  DhfDeviceEngine *self = data;
  DhfEngineRequest *req;

  g_clear_pointer (&self->kick, g_source_unref);
  if (self->current != NULL || g_queue_is_empty (&self->queue))
    return G_SOURCE_REMOVE;
  req = g_queue_pop_head (&self->queue);
  /* Running: it finishes (a transaction is never cut in half). */
  dhf_engine_cancel_unwatch (req);
  self->current = req;
  start_request (req);
  return G_SOURCE_REMOVE;
}

/* Starts the next request from the main loop, never inline: a burst of
 * inputs then makes one reconciliation. */
static void
kick (DhfDeviceEngine *self)
{
  if (self->shut_down || self->kick != NULL || self->current != NULL
      || g_queue_is_empty (&self->queue))
    return;
  self->kick = g_idle_source_new ();
  g_source_set_priority (self->kick, G_PRIORITY_DEFAULT);
  g_source_set_callback (self->kick, run_next, self, NULL);
  g_source_set_static_name (self->kick, "[dhf] device engine queue");
  g_source_attach (self->kick, self->context);
}

/* Takes req. */
void
dhf_engine_enqueue (DhfDeviceEngine *self, DhfEngineRequest *req)
{
  if (self->shut_down)
    {
      dhf_engine_complete (req, dhf_engine_shutting_down_error (), NULL);
      dhf_engine_request_unref (req);
      return;
    }
  g_queue_push_tail (&self->queue, req);
  dhf_engine_cancel_watch (req);
  kick (self);
}

void
dhf_engine_queue_reconcile (DhfDeviceEngine *self)
{
  if (!self->synced || self->shut_down || self->reconcile_queued)
    return;
  self->reconcile_queued = TRUE;
  dhf_engine_enqueue (self, dhf_engine_request_new (self, DHF_REQUEST_RECONCILE, NULL));
}

/* The focused domain stopped (or went away): the engine decides the next
 * focus itself. A fallback always moves the focus (docs/devices.md), so
 * this queues another one only after the new focus stops in turn. */
void
dhf_engine_check_focus (DhfDeviceEngine *self)
{
  const DhfEngDomain *domain;

  if (!self->ever_synced || self->shut_down || self->fallback_queued
      || dhf_engine_is_dom0 (self->focus))
    return;
  domain = dhf_engine_find_domain (self, self->focus);
  if (domain != NULL && domain->running && domain->environment)
    return;
  self->fallback_queued = TRUE;
  dhf_engine_enqueue (self, dhf_engine_request_new (self, DHF_REQUEST_FALLBACK, NULL));
}

/* Nothing runs now: the next request starts, or the engine is idle. */
void
dhf_engine_run_on (DhfDeviceEngine *self)
{
  if (self->current == NULL && g_queue_is_empty (&self->queue))
    dhf_engine_emit_idle (self);
  else
    kick (self);
}

/* The running request is done. */
void
dhf_engine_finish (DhfEngineRequest *req, GError *error /* taken */, const gchar *focused)
{
  /* Answering may drop the last reference the caller had. */
  g_autoptr (DhfDeviceEngine) self = g_object_ref (req->self);

  g_assert (self->current == req);
  self->current = NULL;
  dhf_engine_check_focus (self);
  dhf_engine_complete (req, error, focused);
  dhf_engine_request_unref (req);
  dhf_engine_run_on (self);
}

/* The engine keeps a reference until the worker's result is applied. */
void
dhf_engine_txn_run (DhfEngineRequest *req, DhfTxnDoneFunc done)
{
  DhfDeviceEngine *self = req->self;

  if (self->runner == NULL)
    {
      dhf_engine_finish (req, dhf_engine_shutting_down_error (), NULL);
      return;
    }
  /* A step planned for a stopped domain changes its persistent definition
   * only; if the domain starts before the step runs, it starts without
   * the change. Such a domain is read back when it is seen starting. */
  for (guint i = 0; i < req->txn->units->len; i++)
    {
      const DhfTxnUnit *unit = g_ptr_array_index (req->txn->units, i);

      for (guint k = 0; k < unit->steps->len; k++)
        {
          const DhfStep *step = g_ptr_array_index (unit->steps, k);

          if ((step->kind == DHF_STEP_ATTACH || step->kind == DHF_STEP_DETACH)
              && !(step->scope & DHF_DEVICE_SCOPE_LIVE))
            g_hash_table_add (self->config_only, g_strdup (step->domain));
        }
    }
  g_object_ref (self);
  req->in_flight = TRUE;
  dhf_txn_runner_run (self->runner, req->txn, done, req);
}

/* --- applying results -------------------------------------------------- */

static void
apply_step (DhfDeviceEngine *self, const DhfStep *step)
{
  DhfEngDevice *record;

  switch (step->kind)
    {
      case DHF_STEP_ATTACH:
      case DHF_STEP_DETACH:
        record = g_hash_table_lookup (self->devices, step->device_id);
        if (record == NULL)
          break;
        /* A domain removed while the step ran took the device with it. */
        if (step->kind == DHF_STEP_ATTACH)
          dhf_engine_record_set_owner (record, dhf_engine_find_domain (self, step->domain) != NULL
                                                   ? step->domain
                                                   : DHF_DOM0);
        else if (g_strcmp0 (record->owner, step->domain) == 0)
          dhf_engine_record_set_owner (record, DHF_DOM0);
        dhf_engine_record_clear_failure (record);
        break;
      case DHF_STEP_SET_WEIGHT:
        g_hash_table_remove (self->weight_failed, step->domain);
        if (dhf_engine_domain_active (self, step->domain))
          g_hash_table_insert (self->weights, g_strdup (step->domain),
                               GUINT_TO_POINTER (step->weight));
        break;
      case DHF_STEP_RELEASE_KEYS:
        break;
    }
}

void
dhf_engine_apply_unit (DhfDeviceEngine *self, const DhfTxnUnit *unit)
{
  for (guint i = 0; i < unit->steps->len; i++)
    {
      const DhfStep *step = g_ptr_array_index (unit->steps, i);

      if (unit->ok)
        apply_step (self, step);
      else if (step->kind == DHF_STEP_SET_WEIGHT
               && ((gint) i == unit->failed_step
                   || g_hash_table_contains (unit->undo_failed, GINT_TO_POINTER (i + 1))))
        /* It failed, or its undo did: the next reconciliation sets it
         * again rather than trust either. Undone ones are as they were. */
        g_hash_table_remove (self->weights, step->domain);
    }
}

/* A failed unit's devices remember why, and where they were to go: the
 * status shows it, and reconciliation does not try that move again until
 * something changes. */
void
dhf_engine_note_failure (DhfDeviceEngine *self, const DhfTxnUnit *unit)
{
  const DhfStep *failed = dhf_txn_unit_failed_step (unit);

  if (unit->ok || unit->cancelled || unit->error == NULL)
    return;
  if (failed != NULL && failed->kind == DHF_STEP_SET_WEIGHT)
    g_hash_table_insert (self->weight_failed, g_strdup (failed->domain),
                         GUINT_TO_POINTER (failed->weight));
  for (guint i = 0; i < unit->steps->len; i++)
    {
      const DhfStep *step = g_ptr_array_index (unit->steps, i);
      DhfEngDevice *record;
      const gchar *want = DHF_DOM0;

      if (step->kind != DHF_STEP_ATTACH && step->kind != DHF_STEP_DETACH)
        continue;
      record = g_hash_table_lookup (self->devices, step->device_id);
      if (record == NULL)
        continue;
      for (guint k = 0; k < unit->steps->len; k++)
        {
          const DhfStep *other = g_ptr_array_index (unit->steps, k);

          if (other->kind == DHF_STEP_ATTACH && g_strcmp0 (other->device_id, step->device_id) == 0)
            want = other->domain;
        }
      g_free (record->failure);
      record->failure = g_strdup (unit->error->message);
      g_free (record->failure_want);
      record->failure_want = g_strdup (want);
    }
}

static gboolean
strv_has (const gchar *const *strv, const gchar *text)
{
  return strv != NULL && g_strv_contains (strv, text);
}

/* What list_attached said: the devices whose alias a domain holds are
 * there (partial when in one of an active domain's scopes only); those
 * the engine thought there and that are not, are not. */
void
dhf_engine_apply_attached (DhfDeviceEngine *self, GHashTable *attached, gboolean whole)
{
  g_autoptr (GHashTable) by_alias = g_hash_table_new_full (g_str_hash, g_str_equal, g_free, NULL);
  g_autoptr (GHashTable) placed = g_hash_table_new (g_direct_hash, g_direct_equal);
  g_autoptr (GPtrArray) domains = dhf_engine_sorted_keys (attached);
  GHashTableIter iter;
  gpointer value;

  g_hash_table_iter_init (&iter, self->devices);
  while (g_hash_table_iter_next (&iter, NULL, &value))
    {
      DhfEngDevice *record = value;

      g_hash_table_insert (by_alias, dhf_device_alias (record->device), record);
      /* On a whole sync, a device of a domain that was not read keeps
       * its owner only when the read failed. */
      if (!dhf_engine_is_dom0 (record->owner)
          && (g_hash_table_contains (attached, record->owner)
              || (whole && dhf_engine_find_domain (self, record->owner) == NULL)))
        dhf_engine_record_set_owner (record, DHF_DOM0);
    }
  /* Held in the definition that runs (or the only one) first; then what
   * is only in an active domain's persistent definition. */
  for (guint pass = 0; pass < 2; pass++)
    {
      for (guint i = 0; i < domains->len; i++)
        {
          const gchar *domain = g_ptr_array_index (domains, i);
          const DhfAttached *read = g_hash_table_lookup (attached, domain);
          const gchar *const *aliases
              = (const gchar *const *) (pass == 0 ? read->aliases : read->config);

          if (dhf_engine_find_domain (self, domain) == NULL || aliases == NULL)
            continue;
          for (guint k = 0; aliases[k] != NULL; k++)
            {
              DhfEngDevice *record = g_hash_table_lookup (by_alias, aliases[k]);

              if (pass == 1 && strv_has ((const gchar *const *) read->aliases, aliases[k]))
                continue;
              if (record == NULL)
                {
                  g_message ("%s holds the device %s, which dhfd does not know; leaving it alone",
                             domain, aliases[k]);
                  continue;
                }
              if (pass == 1
                  && (g_hash_table_contains (placed, record)
                      || (!dhf_engine_is_dom0 (record->owner)
                          && g_strcmp0 (record->owner, domain) != 0)))
                {
                  g_message ("%s keeps %s in its persistent definition while %s has it", domain,
                             record->device->id, record->owner);
                  continue;
                }
              dhf_engine_record_set_owner (record, domain);
              record->partial = pass == 1
                                || (read->config != NULL
                                    && !strv_has ((const gchar *const *) read->config, aliases[k]));
              g_hash_table_add (placed, record);
            }
        }
    }
}
