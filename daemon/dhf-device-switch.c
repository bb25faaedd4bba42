/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include "config.h"

#include "dhf-device-engine-private.h"

/* Switching the focus: the target a request names, the policy's and the
 * user's say on it, the transaction that moves what follows the focus,
 * and the fallback when the focused domain stops. Kept together because
 * a fallback is a switch the engine decides itself. */

static void fallback_attempt (DhfEngineRequest *req);

/* --- targets ----------------------------------------------------------- */

static gboolean
validate_target (DhfDeviceEngine *self, const gchar *name, GError **error)
{
  const DhfEngDomain *domain;

  if (dhf_engine_is_dom0 (name))
    return TRUE;
  domain = dhf_engine_find_domain (self, name);
  if (domain == NULL)
    {
      g_set_error (error, DHF_ERROR, DHF_ERROR_NOT_FOUND, "no domain named %s", name);
      return FALSE;
    }
  if (!domain->environment)
    {
      g_set_error (error, DHF_ERROR, DHF_ERROR_INVALID_ARGS,
                   "%s is not an environment: only environments can have the focus", name);
      return FALSE;
    }
  if (!domain->running)
    {
      g_set_error (error, DHF_ERROR, DHF_ERROR_INVALID_STATE, "%s is not running", name);
      return FALSE;
    }
  return TRUE;
}

static gchar *
resolve_target (DhfDeviceEngine *self, const gchar *target, GError **error)
{
  g_auto (GStrv) cycle = NULL;
  guint n, i;
  gboolean next;

  if (target[0] != '@')
    return g_strdup (target);
  if (g_strcmp0 (target, "@next") != 0 && g_strcmp0 (target, "@previous") != 0)
    {
      g_set_error (error, DHF_ERROR, DHF_ERROR_INVALID_ARGS,
                   "unknown switch target %s: a domain name, dom0, @next or @previous", target);
      return NULL;
    }
  next = g_strcmp0 (target, "@next") == 0;
  cycle = dhf_device_engine_dup_cycle (self);
  n = g_strv_length (cycle);
  if (n == 0)
    {
      g_set_error_literal (error, DHF_ERROR, DHF_ERROR_INVALID_STATE,
                           "nothing to switch to: no environment is running");
      return NULL;
    }
  for (i = 0; i < n && g_strcmp0 (cycle[i], self->focus) != 0; i++)
    ;
  /* From a focus outside the cycle, @next is the first, @previous the last. */
  if (i == n)
    return g_strdup (cycle[next ? 0 : n - 1]);
  return g_strdup (cycle[next ? (i + 1) % n : (i + n - 1) % n]);
}

/* A switch a guest asks for is decided by the policy before anything is
 * checked or told about its target: whether it exists, runs, is an
 * environment or has the focus, and where @next leads, are for those the
 * policy lets switch there. dom0 (the user) is told the details. */
static gboolean
from_guest (const DhfEngineRequest *req)
{
  return !dhf_engine_is_dom0 (req->requester);
}

/* A guest's refusal says the same whatever the target, and names no rule
 * (which rule matched may depend on the target). */
static GError *
guest_refused (const DhfEngineRequest *req, const gchar *why)
{
  return g_error_new (DHF_ERROR, DHF_ERROR_NOT_AUTHORIZED,
                      "%s may not switch the display there: %s", req->requester, why);
}

/* The switch policy for req's requester -> target: ALLOW; ASK with *rule;
 * DENY with error set. */
static DhfPolicyAction
decide_switch (DhfDeviceEngine *self, const DhfEngineRequest *req, const gchar *target,
               gchar **rule, GError **error)
{
  DhfEngineVerdict verdict = { DHF_POLICY_ACTION_DENY, NULL, FALSE, NULL };
  DhfPolicyAction action;

  if (self->decide == NULL)
    {
      if (from_guest (req))
        g_propagate_error (error, guest_refused (req, "no policy is in force"));
      else
        g_set_error (error, DHF_ERROR, DHF_ERROR_NOT_AUTHORIZED,
                     "switching from %s to %s cannot be decided: no policy is in force",
                     req->requester, target);
      return DHF_POLICY_ACTION_DENY;
    }
  self->decide (DHF_POLICY_KIND_SWITCH, NULL, req->requester, target, &verdict, self->decide_data);
  action = verdict.action;
  if (action == DHF_POLICY_ACTION_ASK)
    *rule = g_steal_pointer (&verdict.rule);
  else if (action != DHF_POLICY_ACTION_ALLOW)
    {
      action = DHF_POLICY_ACTION_DENY;
      if (from_guest (req))
        g_propagate_error (error, guest_refused (req, "the policy does not allow it"));
      else if (verdict.rule != NULL)
        g_set_error (error, DHF_ERROR, DHF_ERROR_NOT_AUTHORIZED,
                     "switching from %s to %s is denied by %s", req->requester, target,
                     verdict.rule);
      else
        g_set_error (error, DHF_ERROR, DHF_ERROR_NOT_AUTHORIZED,
                     "switching from %s to %s is denied: no rule allows it", req->requester,
                     target);
    }
  dhf_engine_verdict_clear (&verdict);
  return action;
}

/* --- asking ------------------------------------------------------------ */

/* A switch an "ask" rule decides waits for the answer outside the queue
 * (parked): other requests go on meanwhile. */

void
dhf_engine_ask_stop (DhfEngineRequest *req)
{
  DhfDeviceEngine *self = req->self;

  req->asking = FALSE;
  dhf_engine_cancel_unwatch (req);
  g_ptr_array_remove_fast (self->parked, req);
}

static void
ask_done (gboolean allow, gpointer data)
{
  DhfEngineRequest *req = data;
  DhfDeviceEngine *self = req->self;

  /* The asker promised no answer after a cancellation. */
  g_return_if_fail (req->asking);
  dhf_engine_ask_stop (req);
  if (allow)
    {
      /* Checked again when it runs: the answer may have taken a while. */
      req->approved = TRUE;
      dhf_engine_enqueue (self, req);
      return;
    }
  dhf_engine_complete (req,
                       from_guest (req)
                           ? guest_refused (req, "it was refused when asked")
                           : g_error_new (DHF_ERROR, DHF_ERROR_NOT_AUTHORIZED,
                                          "switching from %s to %s was refused when asked",
                                          req->requester, req->resolved),
                       NULL);
  dhf_engine_request_unref (req);
}

/* The caller cancelled a request that waits: parked, its question is
 * cancelled too; queued, it leaves the queue. One that runs by now
 * finishes. */
static gboolean
cancelled_idle (gpointer data)
{
  DhfEngineRequest *req = data;
  /* Answering may drop the last reference the caller had. */
  g_autoptr (DhfDeviceEngine) self = g_object_ref (req->self);

  if (req->asking)
    {
      dhf_engine_ask_stop (req);
      g_cancellable_cancel (req->ask_cancellable);
      dhf_engine_complete (req, dhf_engine_cancelled_error (req), NULL);
      /* The parked reference. */
      dhf_engine_request_unref (req);
      return G_SOURCE_REMOVE;
    }
  if (!g_queue_remove (&self->queue, req))
    return G_SOURCE_REMOVE;
  dhf_engine_cancel_unwatch (req);
  dhf_engine_complete (req, dhf_engine_cancelled_error (req), NULL);
  /* The queue's reference. */
  dhf_engine_request_unref (req);
  dhf_engine_run_on (self);
  return G_SOURCE_REMOVE;
}

/* Any thread: the caller cancelled while the request waited. */
void
dhf_engine_on_task_cancelled (GCancellable *cancellable, gpointer data)
{
  DhfEngineRequest *req = data;
  g_autoptr (GSource) source = g_idle_source_new ();

  g_source_set_priority (source, G_PRIORITY_DEFAULT);
  g_source_set_callback (source, cancelled_idle, dhf_engine_request_ref (req),
                         (GDestroyNotify) dhf_engine_request_unref);
  g_source_set_static_name (source, "[dhf] device engine request cancelled");
  g_source_attach (source, req->self->context);
}

/* Takes req (not running) and asks about req->resolved. */
static void
park_and_ask (DhfEngineRequest *req, const gchar *rule)
{
  DhfDeviceEngine *self = req->self;

  if (self->ask == NULL)
    {
      dhf_engine_complete (
          req,
          from_guest (req)
              ? guest_refused (req, "it needs an answer and no one can be asked")
              : g_error_new (DHF_ERROR, DHF_ERROR_NOT_AUTHORIZED,
                             "switching from %s to %s needs an answer (%s) and no one can "
                             "be asked",
                             req->requester, req->resolved, rule != NULL ? rule : "policy"),
          NULL);
      dhf_engine_request_unref (req);
      return;
    }
  req->asking = TRUE;
  g_clear_object (&req->ask_cancellable);
  req->ask_cancellable = g_cancellable_new ();
  g_ptr_array_add (self->parked, req);
  dhf_engine_cancel_watch (req);
  self->ask (req->requester, req->resolved, rule, req->ask_cancellable, ask_done, req,
             self->ask_data);
}

/* When switch_async is called: checks what can be checked now and asks
 * the user at once when a rule says so. TRUE when it took req (answered
 * or parked); FALSE: queue it. */
gboolean
dhf_engine_switch_check_now (DhfDeviceEngine *self, DhfEngineRequest *req)
{
  g_autoptr (GError) error = NULL;
  g_autofree gchar *resolved = resolve_target (self, req->target, &error);
  g_autofree gchar *rule = NULL;

  /* dom0's: the target first, for the details; a guest's: the policy
   * first (on the raw name, or on where @next/@previous lead among the
   * running environments), then the target. */
  if (resolved == NULL && from_guest (req)
      && g_error_matches (error, DHF_ERROR, DHF_ERROR_INVALID_STATE))
    {
      g_autoptr (GError) refusal = NULL;

      /* No environment runs for @next/@previous to lead to: that too is
       * for a guest the policy lets switch (decided on the name given). */
      if (decide_switch (self, req, req->target, &rule, &refusal) != DHF_POLICY_ACTION_ALLOW)
        {
          g_clear_error (&error);
          error = refusal != NULL ? g_steal_pointer (&refusal)
                                  : guest_refused (req, "the policy does not allow it");
        }
    }
  if (resolved == NULL || (!from_guest (req) && !validate_target (self, resolved, &error)))
    {
      dhf_engine_complete (req, g_steal_pointer (&error), NULL);
      dhf_engine_request_unref (req);
      return TRUE;
    }
  /* The focus may be another by the time it runs: decided then. */
  if (!from_guest (req) && g_strcmp0 (resolved, self->focus) == 0)
    return FALSE;
  switch (decide_switch (self, req, resolved, &rule, &error))
    {
      case DHF_POLICY_ACTION_ALLOW:
        if (from_guest (req) && !validate_target (self, resolved, &error))
          {
            dhf_engine_complete (req, g_steal_pointer (&error), NULL);
            dhf_engine_request_unref (req);
            return TRUE;
          }
        req->decided_target = g_steal_pointer (&resolved);
        req->decided_generation = self->policy_generation;
        return FALSE;
      case DHF_POLICY_ACTION_ASK:
        req->resolved = g_steal_pointer (&resolved);
        park_and_ask (req, rule);
        return TRUE;
      case DHF_POLICY_ACTION_DENY:
      default:
        dhf_engine_complete (req, g_steal_pointer (&error), NULL);
        dhf_engine_request_unref (req);
        return TRUE;
    }
}

/* --- switching --------------------------------------------------------- */

static void
switch_done (DhfTxn *txn, gpointer data)
{
  DhfEngineRequest *req = data;
  DhfDeviceEngine *self = req->self;
  /* The switch is the last unit; a release of held keys may come first. */
  const DhfTxnUnit *unit = g_ptr_array_index (txn->units, txn->units->len - 1);
  g_autofree gchar *previous = NULL;

  req->in_flight = FALSE;
  for (guint i = 0; i + 1 < txn->units->len; i++)
    {
      const DhfTxnUnit *keys = g_ptr_array_index (txn->units, i);

      /* Best-effort: a key left down is not worth undoing the switch. */
      if (!keys->ok)
        g_warning ("%s", keys->error->message);
    }
  dhf_engine_apply_unit (self, unit);
  /* Whatever happened, a reconciliation looks at everything the switch
   * did not move (pins a rule on @focused gives, weights). */
  dhf_engine_queue_reconcile (self);
  if (!unit->ok)
    {
      dhf_engine_apply_attached (self, unit->attached, FALSE);
      dhf_engine_refresh (self);
      dhf_engine_finish (req, g_error_copy (unit->error), NULL);
      g_object_unref (self);
      return;
    }
  previous = g_strdup (self->focus);
  dhf_engine_set_focus (self, req->resolved, previous);
  dhf_engine_save_state (self);
  dhf_engine_refresh (self);
  dhf_engine_emit_focus_changed (self, self->focus, previous);
  dhf_engine_finish (req, NULL, self->focus);
  g_object_unref (self);
}

/* The switch as one transaction: detaches, attaches, the new focus'
 * weight, after a release of the held modifiers in the old focus, in a
 * unit of its own (best-effort). The old focus' weight is the
 * reconciliation's that follows: best-effort too, a domain that cannot
 * take it must not undo the user's switch. */
static void
continue_switch (DhfEngineRequest *req)
{
  DhfDeviceEngine *self = req->self;
  g_autoptr (GHashTable) plan = NULL;
  g_autoptr (GPtrArray) ids = NULL;
  g_autoptr (GPtrArray) detaches = g_ptr_array_new_with_free_func ((GDestroyNotify) dhf_step_free);
  g_autoptr (GPtrArray) attaches = g_ptr_array_new_with_free_func ((GDestroyNotify) dhf_step_free);
  g_autofree gchar *label = NULL;
  const gchar *old = self->focus;
  DhfTxnUnit *unit;

  if (self->decide == NULL)
    {
      dhf_engine_finish (req,
                         g_error_new (DHF_ERROR, DHF_ERROR_NOT_AUTHORIZED,
                                      "switching to %s cannot be planned: no policy is in force",
                                      req->resolved),
                         NULL);
      return;
    }
  dhf_engine_refresh (self);
  plan = dhf_engine_compute_plan (self, req->resolved);
  label = g_strdup_printf ("switching to %s", req->resolved);
  unit = dhf_txn_unit_new (label);
  req->txn = dhf_txn_new ();

  ids = dhf_engine_sorted_keys (self->devices);
  for (guint i = 0; i < ids->len; i++)
    {
      const DhfEngDevice *record = g_hash_table_lookup (self->devices, g_ptr_array_index (ids, i));
      const DhfPlanEntry *before = g_hash_table_lookup (self->plan, record->device->id);
      const DhfPlanEntry *after = g_hash_table_lookup (plan, record->device->id);

      /* Only what follows the focus moves; the rest is reconcile's. */
      if (!record->present || after == NULL || !dhf_plan_needs_move (record, after->want)
          || (after->mode != DHF_DEVICE_MODE_FOLLOW_FOCUS
              && (before == NULL || before->mode != DHF_DEVICE_MODE_FOLLOW_FOCUS)))
        continue;
      dhf_plan_move_steps (record, after->want, self->domains, detaches, attaches);
    }

  if (req->n_keys > 0 && !dhf_engine_is_dom0 (old) && dhf_engine_domain_active (self, old))
    {
      g_autoptr (GArray) released
          = dhf_plan_released_keys (old, req->keys, req->n_keys, detaches, self->devices);

      if (released != NULL)
        {
          DhfTxnUnit *keys = dhf_txn_unit_new (label);

          g_ptr_array_add (keys->steps, dhf_step_new_release_keys (
                                            old, (const guint *) released->data, released->len));
          g_ptr_array_add (req->txn->units, keys);
        }
    }

  g_ptr_array_extend_and_steal (unit->steps, g_steal_pointer (&detaches));
  g_ptr_array_extend_and_steal (unit->steps, g_steal_pointer (&attaches));

  if (self->focused_weight != 0 && !dhf_engine_is_dom0 (req->resolved)
      && dhf_engine_domain_active (self, req->resolved))
    {
      gpointer set = g_hash_table_lookup (self->weights, req->resolved);

      g_ptr_array_add (unit->steps, dhf_step_new_weight (req->resolved, self->focused_weight,
                                                         set != NULL ? GPOINTER_TO_UINT (set)
                                                                     : self->normal_weight));
    }

  g_ptr_array_add (req->txn->units, unit);
  if (req->txn->units->len == 1 && unit->steps->len == 0)
    {
      /* Nothing to move: the unit is done as it is. */
      unit->ok = TRUE;
      g_object_ref (self);
      req->in_flight = TRUE;
      switch_done (req->txn, req);
      return;
    }
  dhf_engine_txn_run (req, switch_done);
}

/* The policy (or the user) let it: the target is checked, then it runs. */
static void
switch_allowed (DhfEngineRequest *req)
{
  DhfDeviceEngine *self = req->self;
  g_autoptr (GError) error = NULL;

  if (!validate_target (self, req->resolved, &error))
    {
      dhf_engine_finish (req, g_steal_pointer (&error), NULL);
      return;
    }
  if (g_strcmp0 (req->resolved, self->focus) == 0)
    {
      dhf_engine_finish (req, NULL, self->focus);
      return;
    }
  continue_switch (req);
}

void
dhf_engine_start_switch (DhfEngineRequest *req)
{
  DhfDeviceEngine *self = req->self;
  g_autoptr (GError) error = NULL;
  g_autofree gchar *rule = NULL;

  if (!req->approved)
    {
      g_free (req->resolved);
      req->resolved = resolve_target (self, req->target, &error);
    }
  if (req->resolved == NULL)
    {
      dhf_engine_finish (req, g_steal_pointer (&error), NULL);
      return;
    }
  /* Checked again: the state may have changed since it was called. For
   * dom0 the target first (dhf_engine_switch_check_now() says why). */
  if (!from_guest (req))
    {
      if (!validate_target (self, req->resolved, &error))
        {
          dhf_engine_finish (req, g_steal_pointer (&error), NULL);
          return;
        }
      if (g_strcmp0 (req->resolved, self->focus) == 0)
        {
          dhf_engine_finish (req, NULL, self->focus);
          return;
        }
    }
  if (req->approved
      || (g_strcmp0 (req->decided_target, req->resolved) == 0
          && req->decided_generation == self->policy_generation))
    {
      switch_allowed (req);
      return;
    }

  switch (decide_switch (self, req, req->resolved, &rule, &error))
    {
      case DHF_POLICY_ACTION_ALLOW:
        switch_allowed (req);
        break;
      case DHF_POLICY_ACTION_ASK:
        /* Waits outside the queue; the next request starts. */
        self->current = NULL;
        park_and_ask (req, rule);
        dhf_engine_run_on (self);
        break;
      case DHF_POLICY_ACTION_DENY:
      default:
        dhf_engine_finish (req, g_steal_pointer (&error), NULL);
        break;
    }
}

/* --- falling back ------------------------------------------------------ */

static void
fallback_finish (DhfEngineRequest *req)
{
  DhfDeviceEngine *self = req->self;
  g_autofree gchar *previous = g_strdup (self->focus);

  dhf_engine_set_focus (self, req->resolved, previous);
  dhf_engine_save_state (self);
  dhf_engine_refresh (self);
  dhf_engine_queue_reconcile (self);
  if (g_strcmp0 (previous, self->focus) != 0)
    dhf_engine_emit_focus_changed (self, self->focus, previous);
  dhf_engine_finish (req, NULL, self->focus);
}

/* A fallback ends, whatever fails: the user must not be left on a domain
 * that stopped. Devices that could not move keep their problem; when the
 * target itself cannot take them, dom0 is tried once, and the focus goes
 * there in any case. Weights are the reconciliation's that follows. */
static void
fallback_done (DhfTxn *txn, gpointer data)
{
  DhfEngineRequest *req = data;
  DhfDeviceEngine *self = req->self;
  gboolean target_failed = FALSE;

  req->in_flight = FALSE;
  for (guint i = 0; i < txn->units->len; i++)
    {
      const DhfTxnUnit *unit = g_ptr_array_index (txn->units, i);
      const DhfStep *failed;

      dhf_engine_apply_unit (self, unit);
      if (unit->ok)
        continue;
      g_warning ("%s", unit->error->message);
      dhf_engine_apply_attached (self, unit->attached, FALSE);
      dhf_engine_note_failure (self, unit);
      failed = dhf_txn_unit_failed_step (unit);
      if (failed != NULL && failed->kind == DHF_STEP_ATTACH
          && g_strcmp0 (failed->domain, req->resolved) == 0)
        target_failed = TRUE;
    }
  g_clear_pointer (&req->txn, dhf_txn_free);
  dhf_engine_refresh (self);
  if (target_failed && !dhf_engine_is_dom0 (req->resolved) && !req->dom0_tried)
    {
      g_message ("%s cannot take the devices that follow the focus; the focus goes to dom0",
                 req->resolved);
      req->dom0_tried = TRUE;
      g_free (req->resolved);
      req->resolved = g_strdup (DHF_DOM0);
      fallback_attempt (req);
    }
  else
    fallback_finish (req);
  g_object_unref (self);
}

/* Moves what follows the focus to req->resolved, a unit per device (or
 * IOMMU group), so that one that fails does not hold back the others. */
static void
fallback_attempt (DhfEngineRequest *req)
{
  DhfDeviceEngine *self = req->self;
  g_autofree gchar *label = g_strdup_printf ("falling back to %s", req->resolved);

  req->txn = dhf_txn_new ();
  /* Without a decider nothing moves; the focus does. */
  if (self->decide != NULL)
    {
      g_autoptr (GHashTable) plan = NULL;

      dhf_engine_refresh (self);
      plan = dhf_engine_compute_plan (self, req->resolved);
      dhf_engine_add_moves (self, plan, TRUE, FALSE, label, req->txn);
    }
  if (req->txn->units->len == 0)
    {
      g_clear_pointer (&req->txn, dhf_txn_free);
      fallback_finish (req);
      return;
    }
  dhf_engine_txn_run (req, fallback_done);
}

void
dhf_engine_start_fallback (DhfEngineRequest *req)
{
  DhfDeviceEngine *self = req->self;

  self->fallback_queued = FALSE;
  if (dhf_engine_is_dom0 (self->focus) || dhf_engine_may_focus (self, self->focus))
    {
      dhf_engine_finish (req, NULL, self->focus);
      return;
    }
  req->resolved = g_strdup (dhf_engine_fallback_target (self, self->focus));
  g_message ("%s lost the focus; it goes to %s", self->focus, req->resolved);
  fallback_attempt (req);
}
