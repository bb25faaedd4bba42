/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include "config.h"

#include "dhf-device-engine-private.h"

/* Where the devices should be (the plan and each device's status), and
 * the requests that make it so: a sync reads every domain, a
 * reconciliation moves what is not where the plan wants it and sets the
 * CPU weights. */

/* --- plan and status --------------------------------------------------- */

/* Only with a decider: without one nothing is known, so nothing moves. */
GHashTable *
dhf_engine_compute_plan (DhfDeviceEngine *self, const gchar *focus)
{
  DhfPlanInput input = {
    .devices = self->devices,
    .domains = self->domains,
    .admin_pins = self->admin_pins,
    .focus = focus,
    .decide = self->decide,
    .decide_data = self->decide_data,
  };
  GHashTable *plan;

  g_return_val_if_fail (self->decide != NULL, g_hash_table_new (g_str_hash, g_str_equal));
  /* The decider's user may ask which focus the answers are for
   * (dhf_device_engine_get_planning_focus(): @focused rules). */
  self->planning = focus;
  plan = dhf_plan_compute (&input);
  self->planning = NULL;
  return plan;
}

DhfDeviceStatus *
dhf_engine_make_status (DhfDeviceEngine *self, const DhfEngDevice *record)
{
  DhfDeviceStatus *status = g_new0 (DhfDeviceStatus, 1);
  const DhfPlanEntry *entry = g_hash_table_lookup (self->plan, record->device->id);

  status->device = dhf_device_copy (record->device);
  status->present = record->present;
  status->owner = g_strdup (record->owner);
  if (entry == NULL)
    {
      status->mode = DHF_DEVICE_MODE_DOM0;
      status->origin = g_strdup ("none");
      return status;
    }
  status->mode = entry->mode;
  status->holder = g_strdup (entry->holder);
  status->origin = g_strdup (entry->origin);
  if (entry->problem != NULL)
    status->problem = g_strdup (entry->problem);
  else if (record->failure != NULL && g_strcmp0 (record->failure_want, entry->want) == 0
           && dhf_plan_needs_move (record, entry->want))
    status->problem = g_strdup (record->failure);
  return status;
}

static gchar *
status_text (const DhfDeviceStatus *status)
{
  return g_strdup_printf ("%d|%s|%d|%s|%s|%s", status->present, status->owner, status->mode,
                          status->holder != NULL ? status->holder : "",
                          status->origin != NULL ? status->origin : "",
                          status->problem != NULL ? status->problem : "");
}

/* Recomputes where devices should be and tells about every status that
 * changed; after all the state is updated, so handlers see it whole.
 * Without a decider the last plan stays: no answers is not "deny all". */
void
dhf_engine_refresh (DhfDeviceEngine *self)
{
  g_autoptr (GPtrArray) changed = g_ptr_array_new_with_free_func (g_free);
  g_autoptr (GPtrArray) ids = NULL;
  g_autoptr (GPtrArray) gone = g_ptr_array_new ();
  GHashTableIter iter;
  gpointer key;

  if (self->decide != NULL)
    {
      g_clear_pointer (&self->plan, g_hash_table_unref);
      self->plan = dhf_engine_compute_plan (self, self->focus);
    }

  ids = dhf_engine_sorted_keys (self->devices);
  for (guint i = 0; i < ids->len; i++)
    {
      const gchar *id = g_ptr_array_index (ids, i);
      g_autoptr (DhfDeviceStatus) status
          = dhf_engine_make_status (self, g_hash_table_lookup (self->devices, id));
      gchar *text = status_text (status);

      if (g_strcmp0 (g_hash_table_lookup (self->shown, id), text) == 0)
        {
          g_free (text);
          continue;
        }
      g_hash_table_replace (self->shown, g_strdup (id), text);
      g_ptr_array_add (changed, g_strdup (id));
    }
  g_hash_table_iter_init (&iter, self->shown);
  while (g_hash_table_iter_next (&iter, &key, NULL))
    {
      if (!g_hash_table_contains (self->devices, key))
        g_ptr_array_add (gone, key);
    }
  for (guint i = 0; i < gone->len; i++)
    {
      g_ptr_array_add (changed, g_strdup (g_ptr_array_index (gone, i)));
      g_hash_table_remove (self->shown, g_ptr_array_index (gone, i));
    }
  g_ptr_array_sort (changed, dhf_engine_compare_strings);
  for (guint i = 0; i < changed->len; i++)
    dhf_engine_emit_device_changed (self, g_ptr_array_index (changed, i));
}

/* --- sync and reconcile ------------------------------------------------ */

static void
restore_focus (DhfDeviceEngine *self, gboolean first)
{
  g_autofree gchar *candidate
      = g_strdup (first && self->saved_focus != NULL ? self->saved_focus : self->focus);
  g_autofree gchar *old = g_strdup (self->focus);
  const gchar *focus = candidate;

  if (!dhf_engine_may_focus (self, candidate))
    {
      focus = dhf_engine_fallback_target (self, candidate);
      g_message ("%s cannot have the focus now; it goes to %s", candidate, focus);
    }
  dhf_engine_set_focus (self, focus, g_strcmp0 (focus, candidate) != 0 ? candidate : NULL);
  g_clear_pointer (&self->saved_focus, g_free);
  /* The file already says so unless the focus had to fall back. */
  if (g_strcmp0 (candidate, self->focus) != 0)
    dhf_engine_save_state (self);
  dhf_engine_refresh (self);
  if (g_strcmp0 (old, self->focus) != 0)
    dhf_engine_emit_focus_changed (self, self->focus, old);
}

/* History entries naming domains that do not exist (any more): a sync has
 * every domain, so what it does not have is gone. */
static gboolean
history_prune (DhfDeviceEngine *self)
{
  gboolean pruned = FALSE;

  for (guint i = self->history->len; i-- > 0;)
    {
      const gchar *name = g_ptr_array_index (self->history, i);

      if (!dhf_engine_is_dom0 (name) && dhf_engine_find_domain (self, name) == NULL)
        {
          g_ptr_array_remove_index (self->history, i);
          pruned = TRUE;
        }
    }
  return pruned;
}

static void
sync_done (DhfTxn *txn, gpointer data)
{
  DhfEngineRequest *req = data;
  DhfDeviceEngine *self = req->self;
  gboolean first = !self->ever_synced;

  req->in_flight = FALSE;
  dhf_engine_apply_attached (self, txn->attached, TRUE);
  self->ever_synced = TRUE;
  if (dhf_engine_adopt_pin_selectors (self))
    dhf_engine_save_state (self);
  /* Whatever weights were, they are set again. */
  g_hash_table_remove_all (self->weights);
  if (history_prune (self))
    dhf_engine_save_state (self);
  restore_focus (self, first);
  g_clear_pointer (&req->txn, dhf_txn_free);
  dhf_engine_start_reconcile (req);
  g_object_unref (self);
}

void
dhf_engine_start_sync (DhfEngineRequest *req)
{
  DhfDeviceEngine *self = req->self;
  g_autoptr (GPtrArray) names = dhf_engine_sorted_keys (self->domains);

  self->sync_queued = FALSE;
  /* It reads them all; and a reconnect is a fresh start for failed moves. */
  g_hash_table_remove_all (self->to_read);
  dhf_engine_forget_all_failures (self);
  req->txn = dhf_txn_new ();
  for (guint i = 0; i < names->len; i++)
    g_ptr_array_add (req->txn->reads, g_strdup (g_ptr_array_index (names, i)));
  dhf_engine_txn_run (req, sync_done);
}

static void
read_done (DhfTxn *txn, gpointer data)
{
  DhfEngineRequest *req = data;
  DhfDeviceEngine *self = req->self;

  req->in_flight = FALSE;
  dhf_engine_apply_attached (self, txn->attached, FALSE);
  g_clear_pointer (&req->txn, dhf_txn_free);
  dhf_engine_start_reconcile (req);
  g_object_unref (self);
}

static void
reconcile_done (DhfTxn *txn, gpointer data)
{
  DhfEngineRequest *req = data;
  DhfDeviceEngine *self = req->self;

  req->in_flight = FALSE;
  for (guint i = 0; i < txn->units->len; i++)
    {
      const DhfTxnUnit *unit = g_ptr_array_index (txn->units, i);

      dhf_engine_apply_unit (self, unit);
      if (unit->ok)
        continue;
      g_warning ("%s", unit->error->message);
      dhf_engine_apply_attached (self, unit->attached, FALSE);
      dhf_engine_note_failure (self, unit);
    }
  g_clear_pointer (&req->txn, dhf_txn_free);
  dhf_engine_refresh (self);
  dhf_engine_finish (req, NULL, NULL);
  g_object_unref (self);
}

/* A present, non-bridge PCI function in an IOMMU group: moved with its
 * group, in one unit. */
static gboolean
moves_with_group (const DhfEngDevice *record)
{
  const DhfDevice *device = record->device;

  return device->kind == DHF_DEVICE_KIND_PCI && !device->pci_bridge && device->iommu_group >= 0;
}

typedef struct
{
  DhfTxnUnit *unit;
  GPtrArray *detaches;
  GPtrArray *attaches;
  gboolean skip; /* a move it holds failed and nothing has changed since */
} Move;

static void
move_free (Move *move)
{
  dhf_txn_unit_free (move->unit);
  g_ptr_array_unref (move->detaches);
  g_ptr_array_unref (move->attaches);
  g_free (move);
}

/* Adds to txn the units that move devices to where plan wants them: one
 * unit per device, or per IOMMU group (its detaches, then its attaches,
 * undone together). follow_only: only devices that follow the focus in
 * the current plan or in this one (a fallback). skip_failed: not the
 * moves that failed before and that nothing has changed for
 * (reconciliation). */
void
dhf_engine_add_moves (DhfDeviceEngine *self, GHashTable *plan, gboolean follow_only,
                      gboolean skip_failed, const gchar *label, DhfTxn *txn)
{
  g_autoptr (GPtrArray) ids = dhf_engine_sorted_keys (self->devices);
  g_autoptr (GPtrArray) moves = g_ptr_array_new_with_free_func ((GDestroyNotify) move_free);
  g_autoptr (GHashTable) groups = g_hash_table_new (g_direct_hash, g_direct_equal);

  for (guint i = 0; i < ids->len; i++)
    {
      DhfEngDevice *record = g_hash_table_lookup (self->devices, g_ptr_array_index (ids, i));
      const DhfPlanEntry *before = g_hash_table_lookup (self->plan, record->device->id);
      const DhfPlanEntry *after = g_hash_table_lookup (plan, record->device->id);
      Move *move = NULL;
      guint n_steps;

      if (!record->present || after == NULL || !dhf_plan_needs_move (record, after->want))
        continue;
      if (follow_only && after->mode != DHF_DEVICE_MODE_FOLLOW_FOCUS
          && (before == NULL || before->mode != DHF_DEVICE_MODE_FOLLOW_FOCUS))
        continue;
      if (moves_with_group (record))
        move = g_hash_table_lookup (groups, GINT_TO_POINTER (record->device->iommu_group + 1));
      if (move == NULL)
        {
          move = g_new0 (Move, 1);
          move->unit = dhf_txn_unit_new (label);
          move->detaches = g_ptr_array_new_with_free_func ((GDestroyNotify) dhf_step_free);
          move->attaches = g_ptr_array_new_with_free_func ((GDestroyNotify) dhf_step_free);
          g_ptr_array_add (moves, move);
          if (moves_with_group (record))
            g_hash_table_insert (groups, GINT_TO_POINTER (record->device->iommu_group + 1), move);
        }
      if (skip_failed && record->failure != NULL
          && g_strcmp0 (record->failure_want, after->want) == 0)
        move->skip = TRUE;
      n_steps = move->detaches->len + move->attaches->len;
      dhf_plan_move_steps (record, after->want, self->domains, move->detaches, move->attaches);
      /* Held by a domain that is no longer defined: nothing to undo. */
      if (move->detaches->len + move->attaches->len == n_steps)
        dhf_engine_record_set_owner (record, after->want);
    }
  for (guint i = 0; i < moves->len; i++)
    {
      Move *move = g_ptr_array_index (moves, i);

      if (move->skip || move->detaches->len + move->attaches->len == 0)
        continue;
      g_ptr_array_extend_and_steal (move->unit->steps, g_steal_pointer (&move->detaches));
      g_ptr_array_extend_and_steal (move->unit->steps, g_steal_pointer (&move->attaches));
      move->detaches = g_ptr_array_new ();
      move->attaches = g_ptr_array_new ();
      g_ptr_array_add (txn->units, g_steal_pointer (&move->unit));
    }
}

/* One unit per active domain whose weight the engine has not set to what
 * it should be (the focused one first), unless setting it failed and the
 * domain has not changed since. */
static void
add_weights (DhfDeviceEngine *self, DhfTxn *txn)
{
  g_autoptr (GPtrArray) names = dhf_engine_sorted_keys (self->domains);

  if (self->focused_weight == 0)
    return;
  for (guint pass = 0; pass < 2; pass++)
    {
      for (guint i = 0; i < names->len; i++)
        {
          const gchar *name = g_ptr_array_index (names, i);
          gboolean focused = g_strcmp0 (name, self->focus) == 0;
          guint weight = focused ? self->focused_weight : self->normal_weight;
          gpointer set = NULL, failed = NULL;
          DhfTxnUnit *unit;

          if (focused != (pass == 0) || !dhf_engine_domain_active (self, name)
              || (g_hash_table_lookup_extended (self->weights, name, NULL, &set)
                  && GPOINTER_TO_UINT (set) == weight)
              || (g_hash_table_lookup_extended (self->weight_failed, name, NULL, &failed)
                  && GPOINTER_TO_UINT (failed) == weight))
            continue;
          unit = dhf_txn_unit_new (NULL);
          g_ptr_array_add (unit->steps, dhf_step_new_weight (name, weight,
                                                             set != NULL ? GPOINTER_TO_UINT (set)
                                                                         : self->normal_weight));
          g_ptr_array_add (txn->units, unit);
        }
    }
}

/* Moves every device that is not where it should be and sets the CPU
 * weights the engine has not set yet. Domains it has not read (new ones,
 * ones that started or stopped under a transaction) are read first. */
void
dhf_engine_start_reconcile (DhfEngineRequest *req)
{
  DhfDeviceEngine *self = req->self;

  if (req->kind == DHF_REQUEST_RECONCILE)
    self->reconcile_queued = FALSE;
  /* No decider, no answers: nothing moves (it is not "deny all"). */
  if (self->decide == NULL)
    {
      dhf_engine_finish (req, NULL, NULL);
      return;
    }
  req->txn = dhf_txn_new ();
  if (g_hash_table_size (self->to_read) > 0)
    {
      g_autoptr (GPtrArray) names = dhf_engine_sorted_keys (self->to_read);

      for (guint i = 0; i < names->len; i++)
        g_ptr_array_add (req->txn->reads, g_strdup (g_ptr_array_index (names, i)));
      g_hash_table_remove_all (self->to_read);
      dhf_engine_txn_run (req, read_done);
      return;
    }

  dhf_engine_refresh (self);
  dhf_engine_add_moves (self, self->plan, FALSE, TRUE, NULL, req->txn);
  add_weights (self, req->txn);
  if (req->txn->units->len == 0)
    {
      g_clear_pointer (&req->txn, dhf_txn_free);
      dhf_engine_finish (req, NULL, NULL);
      return;
    }
  dhf_engine_txn_run (req, reconcile_done);
}
