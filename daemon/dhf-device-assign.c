/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include "config.h"

#include "dhf-device-engine-private.h"

/* Admin pins (Assign, Release): the checks, the move that puts the
 * device where the pin wants it, and the pin itself, which changes only
 * when the move worked. */

/* --- assign and release ------------------------------------------------ */

/* Takes pin (NULL: drops the pin of id). */
void
dhf_engine_pin_set (DhfDeviceEngine *self, const gchar *id, DhfAdminPin *pin)
{
  if (pin != NULL)
    g_hash_table_insert (self->admin_pins, g_strdup (id), pin);
  else
    g_hash_table_remove (self->admin_pins, id);
}

/* The plan as it would be with the admin pin of id set to pin (NULL:
 * none); the engine's own pins are left as they are. */
static GHashTable *
plan_with_pin (DhfDeviceEngine *self, const gchar *id, const DhfAdminPin *pin)
{
  const DhfAdminPin *current = g_hash_table_lookup (self->admin_pins, id);
  DhfAdminPin *before = current != NULL ? dhf_admin_pin_copy (current) : NULL;
  GHashTable *plan;

  dhf_engine_pin_set (self, id, pin != NULL ? dhf_admin_pin_copy (pin) : NULL);
  plan = dhf_engine_compute_plan (self, self->focus);
  dhf_engine_pin_set (self, id, before);
  return plan;
}

/* A pin loaded from a state file written before selectors were kept is
 * for the device at its id when the engine first sees one there (at the
 * first sync, or when it is plugged in later): from then on it holds for
 * that device only. TRUE when one was taken (the state is to be saved). */
gboolean
dhf_engine_adopt_pin_selectors (DhfDeviceEngine *self)
{
  GHashTableIter iter;
  gpointer key, value;
  gboolean adopted = FALSE;

  g_hash_table_iter_init (&iter, self->admin_pins);
  while (g_hash_table_iter_next (&iter, &key, &value))
    {
      DhfAdminPin *pin = value;
      const DhfEngDevice *record = g_hash_table_lookup (self->devices, key);

      if (pin->selector != NULL || record == NULL || !record->present
          || !dhf_device_selector_is_valid (record->device->selector))
        continue;
      pin->selector = g_strdup (record->device->selector);
      g_message ("the admin pin of %s to %s is for %s from now on", (const gchar *) key,
                 pin->domain, pin->selector);
      adopted = TRUE;
    }
  return adopted;
}

static void
pin_done (DhfTxn *txn, gpointer data)
{
  DhfEngineRequest *req = data;
  DhfDeviceEngine *self = req->self;
  const DhfTxnUnit *unit = g_ptr_array_index (txn->units, 0);
  DhfEngDevice *record;

  req->in_flight = FALSE;
  /* The pin changes what the rest should be (its IOMMU group), and a
   * failure may have left devices elsewhere. */
  dhf_engine_queue_reconcile (self);
  if (!unit->ok)
    {
      /* The pin stays as it was. */
      dhf_engine_apply_unit (self, unit);
      dhf_engine_apply_attached (self, unit->attached, FALSE);
      dhf_engine_refresh (self);
      dhf_engine_finish (req, g_error_copy (unit->error), NULL);
      g_object_unref (self);
      return;
    }
  dhf_engine_apply_unit (self, unit);
  dhf_engine_pin_set (
      self, req->device_id,
      req->kind == DHF_REQUEST_ASSIGN ? dhf_admin_pin_new (req->target, req->selector) : NULL);
  record = g_hash_table_lookup (self->devices, req->device_id);
  if (record != NULL && !record->present && dhf_engine_is_dom0 (record->owner)
      && !g_hash_table_contains (self->admin_pins, req->device_id))
    g_hash_table_remove (self->devices, req->device_id);
  dhf_engine_save_state (self);
  dhf_engine_refresh (self);
  dhf_engine_finish (req, NULL, NULL);
  g_object_unref (self);
}

/* Moves the request's device to want, then sets its pin; the pin changes
 * only when the move worked. */
static void
run_pin_move (DhfEngineRequest *req, const gchar *label, const gchar *want)
{
  DhfDeviceEngine *self = req->self;
  const DhfEngDevice *record = g_hash_table_lookup (self->devices, req->device_id);
  DhfTxnUnit *unit = dhf_txn_unit_new (label);

  req->txn = dhf_txn_new ();
  g_ptr_array_add (req->txn->units, unit);
  if (record != NULL && record->present && dhf_plan_needs_move (record, want))
    dhf_plan_move_steps (record, want, self->domains, unit->steps, unit->steps);
  if (unit->steps->len == 0)
    {
      unit->ok = TRUE;
      g_object_ref (self);
      req->in_flight = TRUE;
      pin_done (req->txn, req);
      return;
    }
  dhf_engine_txn_run (req, pin_done);
}

static gboolean
check_assign (DhfDeviceEngine *self, const gchar *id, const gchar *name, GError **error)
{
  const DhfEngDevice *record = g_hash_table_lookup (self->devices, id);
  const DhfPlanEntry *entry;
  const DhfAdminPin *pinned = g_hash_table_lookup (self->admin_pins, id);
  DhfEngineVerdict verdict = { DHF_POLICY_ACTION_DENY, NULL, FALSE, NULL };
  gboolean allowed;

  if (record == NULL)
    {
      g_set_error (error, DHF_ERROR, DHF_ERROR_NOT_FOUND, "no device %s", id);
      return FALSE;
    }
  if (!record->present)
    {
      g_set_error (error, DHF_ERROR, DHF_ERROR_INVALID_STATE, "%s is not plugged in", id);
      return FALSE;
    }
  if (dhf_engine_is_dom0 (name))
    {
      g_set_error_literal (error, DHF_ERROR, DHF_ERROR_INVALID_ARGS,
                           "devices go back to dom0 by releasing them, not by assigning");
      return FALSE;
    }
  if (dhf_engine_find_domain (self, name) == NULL)
    {
      g_set_error (error, DHF_ERROR, DHF_ERROR_NOT_FOUND, "no domain named %s", name);
      return FALSE;
    }
  if (record->device->kind == DHF_DEVICE_KIND_PCI && record->device->pci_bridge)
    {
      g_set_error (error, DHF_ERROR, DHF_ERROR_INVALID_ARGS,
                   "%s is a PCI bridge: bridges stay with dom0", id);
      return FALSE;
    }
  if (record->device->kind == DHF_DEVICE_KIND_PCI && record->device->iommu_group < 0)
    {
      g_set_error (error, DHF_ERROR, DHF_ERROR_NOT_SUPPORTED,
                   "%s is in no IOMMU group: the host has no IOMMU to assign it with", id);
      return FALSE;
    }

  self->decide (DHF_POLICY_KIND_DEVICE, record->device->selector, DHF_DOM0, name, &verdict,
                self->decide_data);
  allowed = verdict.action == DHF_POLICY_ACTION_ALLOW;
  if (verdict.action == DHF_POLICY_ACTION_ASK)
    g_set_error (error, DHF_ERROR, DHF_ERROR_NOT_AUTHORIZED,
                 "assigning %s to %s needs an answer (%s), which a pin cannot wait for", id, name,
                 verdict.rule != NULL ? verdict.rule : "policy");
  else if (!allowed && verdict.rule != NULL)
    g_set_error (error, DHF_ERROR, DHF_ERROR_NOT_AUTHORIZED, "assigning %s to %s is denied by %s",
                 id, name, verdict.rule);
  else if (!allowed)
    g_set_error (error, DHF_ERROR, DHF_ERROR_NOT_AUTHORIZED,
                 "assigning %s to %s is denied: no rule allows it", id, name);
  dhf_engine_verdict_clear (&verdict);
  if (!allowed)
    return FALSE;

  /* One pin per id: the one for the device that was there is dropped
   * explicitly (Release), not replaced by a pin for another device. */
  if (pinned != NULL && !dhf_admin_pin_matches (pinned, record->device))
    {
      g_set_error (error, DHF_ERROR, DHF_ERROR_EXISTS,
                   "%s is pinned to %s (admin) for another device (%s); release that pin first", id,
                   pinned->domain, pinned->selector);
      return FALSE;
    }
  if (pinned != NULL && g_strcmp0 (pinned->domain, name) != 0)
    {
      g_set_error (error, DHF_ERROR, DHF_ERROR_EXISTS, "%s is pinned to %s (admin)", id,
                   pinned->domain);
      return FALSE;
    }
  entry = g_hash_table_lookup (self->plan, id);
  if (entry != NULL && entry->mode == DHF_DEVICE_MODE_PINNED
      && g_strcmp0 (entry->holder, name) != 0)
    {
      g_set_error (error, DHF_ERROR, DHF_ERROR_EXISTS, "%s is pinned to %s (%s)", id, entry->holder,
                   entry->origin);
      return FALSE;
    }
  return TRUE;
}

/* Assign and release ask the policy: without it they cannot be done. */
static gboolean
refuse_undecided (DhfEngineRequest *req)
{
  DhfEngDevice *record;

  if (req->self->decide == NULL)
    {
      dhf_engine_finish (req,
                         g_error_new (DHF_ERROR, DHF_ERROR_NOT_AUTHORIZED,
                                      "%s cannot be moved: no policy is in force", req->device_id),
                         NULL);
      return TRUE;
    }
  /* Asked for explicitly: a move that failed before is tried again. */
  record = g_hash_table_lookup (req->self->devices, req->device_id);
  if (record != NULL)
    dhf_engine_record_clear_failure (record);
  return FALSE;
}

void
dhf_engine_start_assign (DhfEngineRequest *req)
{
  DhfDeviceEngine *self = req->self;
  g_autoptr (GError) error = NULL;
  g_autoptr (GHashTable) plan = NULL;
  g_autoptr (DhfAdminPin) pin = NULL;
  g_autofree gchar *label = NULL;
  const DhfEngDevice *record;
  const DhfPlanEntry *entry;

  if (refuse_undecided (req))
    return;
  dhf_engine_refresh (self);
  if (!check_assign (self, req->device_id, req->target, &error))
    {
      dhf_engine_finish (req, g_steal_pointer (&error), NULL);
      return;
    }
  /* The pin is for the device there now, whatever is plugged in while
   * it moves. */
  record = g_hash_table_lookup (self->devices, req->device_id);
  g_free (req->selector);
  req->selector = g_strdup (record->device->selector);
  pin = dhf_admin_pin_new (req->target, req->selector);
  plan = plan_with_pin (self, req->device_id, pin);
  entry = g_hash_table_lookup (plan, req->device_id);
  if (g_strcmp0 (entry->want, req->target) != 0)
    {
      /* Its IOMMU group keeps it back. */
      dhf_engine_finish (
          req,
          g_error_new (DHF_ERROR, DHF_ERROR_EXISTS, "cannot assign %s to %s: %s", req->device_id,
                       req->target,
                       entry->problem != NULL ? entry->problem : "it is claimed elsewhere"),
          NULL);
      return;
    }
  label = g_strdup_printf ("assigning %s to %s", req->device_id, req->target);
  run_pin_move (req, label, req->target);
}

void
dhf_engine_start_release (DhfEngineRequest *req)
{
  DhfDeviceEngine *self = req->self;
  g_autoptr (GHashTable) plan = NULL;
  g_autofree gchar *label = NULL;
  const DhfPlanEntry *entry;

  if (refuse_undecided (req))
    return;
  if (!g_hash_table_contains (self->admin_pins, req->device_id))
    {
      dhf_engine_finish (
          req, g_error_new (DHF_ERROR, DHF_ERROR_NOT_FOUND, "%s has no admin pin", req->device_id),
          NULL);
      return;
    }
  plan = plan_with_pin (self, req->device_id, NULL);
  entry = g_hash_table_lookup (plan, req->device_id);
  label = g_strdup_printf ("releasing %s", req->device_id);
  run_pin_move (req, label, entry != NULL ? entry->want : DHF_DOM0);
}
