/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include "config.h"

#include <string.h>

#include "dhf-device-engine-private.h"

/* The device engine (docs/devices.md): the records of devices, domains,
 * focus and pins; the queue of transactions, each planned on the main
 * context just before it runs, run on the worker (dhf-device-txn.c) and
 * applied back here; the signals. This file holds the records, the API
 * (inputs, queries, requests), shutting down and the GObject; the rest is
 * in dhf-device-queue.c, -reconcile.c, -switch.c and -assign.c. */

#define DEFAULT_HISTORY_LENGTH 16

G_DEFINE_TYPE (DhfDeviceEngine, dhf_device_engine, G_TYPE_OBJECT)

enum
{
  SIGNAL_FOCUS_CHANGED,
  SIGNAL_DEVICE_CHANGED,
  SIGNAL_IDLE,
  N_SIGNALS
};

static guint signals[N_SIGNALS];

void
dhf_engine_verdict_clear (DhfEngineVerdict *verdict)
{
  g_clear_pointer (&verdict->mode, g_free);
  g_clear_pointer (&verdict->rule, g_free);
  verdict->action = DHF_POLICY_ACTION_DENY;
  verdict->target_named = FALSE;
}

void
dhf_device_status_free (DhfDeviceStatus *status)
{
  if (status == NULL)
    return;
  dhf_device_free (status->device);
  g_free (status->owner);
  g_free (status->holder);
  g_free (status->origin);
  g_free (status->problem);
  g_free (status);
}

static DhfManifestDevice *
wish_copy (const DhfManifestDevice *wish)
{
  DhfManifestDevice *copy = g_memdup2 (wish, sizeof *wish);

  copy->input_type = g_strdup (wish->input_type);
  copy->usb_serial = g_strdup (wish->usb_serial);
  copy->pci_address = g_strdup (wish->pci_address);
  return copy;
}

static void
wish_free (DhfManifestDevice *wish)
{
  g_free (wish->input_type);
  g_free (wish->usb_serial);
  g_free (wish->pci_address);
  g_free (wish);
}

static gboolean
wish_equal (const DhfManifestDevice *a, const DhfManifestDevice *b)
{
  return a->kind == b->kind && a->mode == b->mode && a->usb_vendor == b->usb_vendor
         && a->usb_product == b->usb_product && g_strcmp0 (a->input_type, b->input_type) == 0
         && g_strcmp0 (a->usb_serial, b->usb_serial) == 0
         && g_strcmp0 (a->pci_address, b->pci_address) == 0;
}

DhfEngDomain *
dhf_eng_domain_new (const DhfEngineDomain *domain)
{
  DhfEngDomain *copy = g_new0 (DhfEngDomain, 1);

  copy->name = g_strdup (domain->name);
  copy->active = domain->active;
  copy->running = domain->running;
  copy->environment = domain->environment;
  copy->wishes = g_ptr_array_new_with_free_func ((GDestroyNotify) wish_free);
  for (guint i = 0; domain->wishes != NULL && i < domain->wishes->len; i++)
    g_ptr_array_add (copy->wishes, wish_copy (g_ptr_array_index (domain->wishes, i)));
  return copy;
}

void
dhf_eng_domain_free (DhfEngDomain *domain)
{
  if (domain == NULL)
    return;
  g_free (domain->name);
  g_ptr_array_unref (domain->wishes);
  g_free (domain);
}

gboolean
dhf_eng_domain_differs (const DhfEngDomain *a, const DhfEngDomain *b)
{
  if (a->active != b->active || a->running != b->running || a->environment != b->environment
      || a->wishes->len != b->wishes->len)
    return TRUE;
  for (guint i = 0; i < a->wishes->len; i++)
    {
      if (!wish_equal (g_ptr_array_index (a->wishes, i), g_ptr_array_index (b->wishes, i)))
        return TRUE;
    }
  return FALSE;
}

DhfEngDevice *
dhf_eng_device_new (const DhfDevice *device)
{
  DhfEngDevice *record = g_new0 (DhfEngDevice, 1);

  record->device = dhf_device_copy (device);
  record->present = TRUE;
  record->owner = g_strdup (DHF_DOM0);
  return record;
}

void
dhf_eng_device_free (DhfEngDevice *record)
{
  if (record == NULL)
    return;
  dhf_device_free (record->device);
  g_free (record->owner);
  g_free (record->failure);
  g_free (record->failure_want);
  g_free (record);
}

/* Wholly there: a read of the domain says otherwise (partial). */
void
dhf_engine_record_set_owner (DhfEngDevice *record, const gchar *owner)
{
  g_free (record->owner);
  record->owner = g_strdup (owner);
  record->partial = FALSE;
}

void
dhf_engine_record_clear_failure (DhfEngDevice *record)
{
  g_clear_pointer (&record->failure, g_free);
  g_clear_pointer (&record->failure_want, g_free);
}

/* A device that was pinned by an admin but is not plugged in (never seen
 * since dhfd started, or another device was there last): shown with what
 * its id and its pin's selector (NULL: unknown) tell. */
static DhfDevice *
placeholder_device (const gchar *id, const gchar *selector)
{
  DhfDevice *device = g_new0 (DhfDevice, 1);

  device->id = g_strdup (id);
  device->kind = g_str_has_prefix (id, "pci-")     ? DHF_DEVICE_KIND_PCI
                 : g_str_has_prefix (id, "input-") ? DHF_DEVICE_KIND_INPUT
                                                   : DHF_DEVICE_KIND_USB;
  device->selector = g_strdup (selector != NULL ? selector : "");
  device->description = g_strdup ("not present");
  device->iommu_group = -1;
  return device;
}

gboolean
dhf_engine_is_dom0 (const gchar *name)
{
  return g_strcmp0 (name, DHF_DOM0) == 0;
}

const DhfEngDomain *
dhf_engine_find_domain (DhfDeviceEngine *self, const gchar *name)
{
  return name != NULL ? g_hash_table_lookup (self->domains, name) : NULL;
}

gboolean
dhf_engine_domain_active (DhfDeviceEngine *self, const gchar *name)
{
  const DhfEngDomain *domain = dhf_engine_find_domain (self, name);

  return domain != NULL && domain->active;
}

gint
dhf_engine_compare_strings (gconstpointer a, gconstpointer b)
{
  return strcmp (*(const gchar *const *) a, *(const gchar *const *) b);
}

/* The table's keys, sorted: a fixed order for steps and signals. */
GPtrArray *
dhf_engine_sorted_keys (GHashTable *table)
{
  GPtrArray *keys = g_ptr_array_new ();
  GHashTableIter iter;
  gpointer key;

  g_hash_table_iter_init (&iter, table);
  while (g_hash_table_iter_next (&iter, &key, NULL))
    g_ptr_array_add (keys, key);
  g_ptr_array_sort (keys, dhf_engine_compare_strings);
  return keys;
}

/* --- inputs ------------------------------------------------------------ */

void
dhf_device_engine_set_decider (DhfDeviceEngine *self, DhfEngineDecideFunc decide,
                               gpointer user_data)
{
  g_return_if_fail (DHF_IS_DEVICE_ENGINE (self));
  self->decide = decide;
  self->decide_data = user_data;
  self->policy_generation++;
  /* Without one the last plan is kept for the status; nothing moves. */
  if (decide == NULL)
    return;
  dhf_engine_forget_all_failures (self);
  dhf_engine_refresh (self);
  dhf_engine_queue_reconcile (self);
}

void
dhf_device_engine_set_asker (DhfDeviceEngine *self, DhfEngineAskFunc ask, gpointer user_data)
{
  g_return_if_fail (DHF_IS_DEVICE_ENGINE (self));
  self->ask = ask;
  self->ask_data = user_data;
}

gboolean
dhf_device_engine_load (DhfDeviceEngine *self, GError **error)
{
  g_autoptr (DhfDeviceState) state = NULL;
  GHashTableIter iter;
  gpointer key, value;

  g_return_val_if_fail (DHF_IS_DEVICE_ENGINE (self), FALSE);
  if (self->state_file == NULL)
    return TRUE;
  state = dhf_device_state_load (self->state_file, error);
  if (state == NULL)
    return FALSE;

  g_free (self->saved_focus);
  self->saved_focus = g_steal_pointer (&state->focused);
  g_ptr_array_set_size (self->history, 0);
  for (guint i = 0; i < state->history->len; i++)
    g_ptr_array_add (self->history, g_strdup (g_ptr_array_index (state->history, i)));
  dhf_engine_history_trim (self);
  g_hash_table_remove_all (self->admin_pins);
  g_hash_table_iter_init (&iter, state->pins);
  while (g_hash_table_iter_next (&iter, &key, &value))
    {
      const DhfAdminPin *pin = value;

      dhf_engine_pin_set (self, key, dhf_admin_pin_copy (pin));
      /* Shown while it is not plugged in, like any pinned device. */
      if (!g_hash_table_contains (self->devices, key))
        {
          g_autoptr (DhfDevice) device = placeholder_device (key, pin->selector);
          DhfEngDevice *record = dhf_eng_device_new (device);

          record->present = FALSE;
          g_hash_table_insert (self->devices, g_strdup (key), record);
        }
    }
  dhf_engine_refresh (self);
  return TRUE;
}

/* What the plan and the steps read of a device, its own host driver
 * aside: what names it, selects it, places it in a group, and its XML. */
static gboolean
device_identity_differs (const DhfDevice *a, const DhfDevice *b)
{
  return a->kind != b->kind || g_strcmp0 (a->selector, b->selector) != 0
         || a->usb_vendor != b->usb_vendor || a->usb_product != b->usb_product
         || g_strcmp0 (a->usb_serial, b->usb_serial) != 0 || a->usb_bus != b->usb_bus
         || a->usb_devnum != b->usb_devnum || g_strcmp0 (a->usb_port, b->usb_port) != 0
         || g_strcmp0 (a->pci_address, b->pci_address) != 0 || a->pci_vendor != b->pci_vendor
         || a->pci_device != b->pci_device || a->pci_class != b->pci_class
         || a->iommu_group != b->iommu_group || a->pci_bridge != b->pci_bridge
         || g_strcmp0 (a->input_type, b->input_type) != 0;
}

/* A host driver changed in an IOMMU group: what its other functions may
 * do has changed (an admin unbound the one that held the group back). The
 * function's own driver is not counted: libvirt's managed mode rebinds it
 * on every attach, failed ones too, and that must not retry the attach. */
static void
forget_group_failures (DhfDeviceEngine *self, const DhfDevice *changed)
{
  GHashTableIter iter;
  gpointer value;

  if (changed->kind != DHF_DEVICE_KIND_PCI || changed->iommu_group < 0)
    return;
  g_hash_table_iter_init (&iter, self->devices);
  while (g_hash_table_iter_next (&iter, NULL, &value))
    {
      DhfEngDevice *record = value;

      if (record->device->kind == DHF_DEVICE_KIND_PCI
          && record->device->iommu_group == changed->iommu_group
          && g_strcmp0 (record->device->id, changed->id) != 0)
        dhf_engine_record_clear_failure (record);
    }
}

void
dhf_device_engine_set_inventory (DhfDeviceEngine *self, GPtrArray *devices)
{
  g_autoptr (GHashTable) seen = g_hash_table_new (g_str_hash, g_str_equal);
  g_autoptr (GPtrArray) gone = g_ptr_array_new ();
  g_autoptr (GPtrArray) drivers = g_ptr_array_new ();
  gboolean changed = FALSE;
  GHashTableIter iter;
  gpointer key, value;

  g_return_if_fail (DHF_IS_DEVICE_ENGINE (self));
  for (guint i = 0; devices != NULL && i < devices->len; i++)
    {
      const DhfDevice *device = g_ptr_array_index (devices, i);
      DhfEngDevice *record;

      if (device == NULL || device->id == NULL || g_hash_table_contains (seen, device->id))
        continue;
      record = g_hash_table_lookup (self->devices, device->id);
      if (record == NULL)
        {
          record = dhf_eng_device_new (device);
          g_hash_table_insert (self->devices, g_strdup (device->id), record);
          changed = TRUE;
        }
      else
        {
          gboolean identity = device_identity_differs (record->device, device);
          gboolean driver = g_strcmp0 (record->device->pci_driver, device->pci_driver) != 0;

          /* Plugged in again, or another device under that id. */
          if (!record->present || identity)
            dhf_engine_record_clear_failure (record);
          if (driver)
            g_ptr_array_add (drivers, record);
          changed |= !record->present || identity || driver
                     || g_strcmp0 (record->device->description, device->description) != 0;
          dhf_device_free (record->device);
          record->device = dhf_device_copy (device);
          record->present = TRUE;
        }
      g_hash_table_add (seen, record->device->id);
    }
  g_hash_table_iter_init (&iter, self->devices);
  while (g_hash_table_iter_next (&iter, &key, &value))
    {
      DhfEngDevice *record = value;
      const DhfAdminPin *pin = g_hash_table_lookup (self->admin_pins, key);

      if (g_hash_table_contains (seen, key))
        continue;
      changed |= record->present;
      record->present = FALSE;
      /* Kept while the engine must remember it: a domain holds it, or an
       * admin pinned it. */
      if (dhf_engine_is_dom0 (record->owner) && pin == NULL)
        g_ptr_array_add (gone, key);
      /* Another device was there last: what is missing is the pin's own. */
      else if (dhf_engine_is_dom0 (record->owner) && pin != NULL && pin->selector != NULL
               && !dhf_admin_pin_matches (pin, record->device))
        {
          dhf_device_free (record->device);
          record->device = placeholder_device (key, pin->selector);
        }
    }
  for (guint i = 0; i < drivers->len; i++)
    forget_group_failures (self, ((DhfEngDevice *) g_ptr_array_index (drivers, i))->device);
  for (guint i = 0; i < gone->len; i++)
    g_hash_table_remove (self->devices, g_ptr_array_index (gone, i));
  if (self->ever_synced && dhf_engine_adopt_pin_selectors (self))
    dhf_engine_save_state (self);
  /* A rescan that finds what the engine knows changes nothing: it must
   * not retry anything (a failed PCI attach makes uevents, hence a
   * rescan). */
  if (!changed && gone->len == 0)
    return;
  dhf_engine_refresh (self);
  dhf_engine_queue_reconcile (self);
}

void
dhf_device_engine_domain_changed (DhfDeviceEngine *self, const DhfEngineDomain *domain)
{
  DhfEngDomain *copy;
  const DhfEngDomain *old;
  gboolean started_or_stopped;

  g_return_if_fail (DHF_IS_DEVICE_ENGINE (self));
  g_return_if_fail (domain != NULL && domain->name != NULL && !dhf_engine_is_dom0 (domain->name));

  copy = dhf_eng_domain_new (domain);
  old = dhf_engine_find_domain (self, domain->name);
  if (old != NULL && !dhf_eng_domain_differs (old, copy))
    {
      dhf_eng_domain_free (copy);
      return;
    }
  /* A domain that appears once the domains are read (defined, renamed)
   * is read before anything moves for it: it may hold dhf's devices. */
  if (old == NULL && self->synced)
    g_hash_table_add (self->to_read, g_strdup (copy->name));
  /* A transaction running for it was planned for the scope it had: what
   * it did is read back once its results are in. So is what was done to
   * its persistent definition while it was stopped (it may have started
   * before that was done). */
  started_or_stopped = old != NULL && old->active != copy->active;
  if (started_or_stopped
      && ((self->current != NULL && self->current->in_flight && self->current->txn != NULL
           && dhf_txn_touches (self->current->txn, copy->name))
          || (copy->active && g_hash_table_contains (self->config_only, copy->name))))
    g_hash_table_add (self->to_read, g_strdup (copy->name));
  if (started_or_stopped)
    g_hash_table_remove (self->config_only, copy->name);
  /* A domain that stops loses its live settings. */
  if (!copy->active)
    g_hash_table_remove (self->weights, copy->name);
  dhf_engine_forget_failures_of_domain (self, copy->name);
  g_hash_table_replace (self->domains, copy->name, copy);
  dhf_engine_refresh (self);
  dhf_engine_queue_reconcile (self);
  dhf_engine_check_focus (self);
}

void
dhf_device_engine_domain_removed (DhfDeviceEngine *self, const gchar *name)
{
  GHashTableIter iter;
  gpointer value;

  g_return_if_fail (DHF_IS_DEVICE_ENGINE (self));
  if (name == NULL || !g_hash_table_contains (self->domains, name))
    return;
  dhf_engine_forget_failures_of_domain (self, name);
  g_hash_table_remove (self->domains, name);
  g_hash_table_remove (self->weights, name);
  g_hash_table_remove (self->to_read, name);
  g_hash_table_remove (self->config_only, name);
  /* Its devices went with its definition. */
  g_hash_table_iter_init (&iter, self->devices);
  while (g_hash_table_iter_next (&iter, NULL, &value))
    {
      DhfEngDevice *record = value;

      if (g_strcmp0 (record->owner, name) == 0)
        dhf_engine_record_set_owner (record, DHF_DOM0);
    }
  /* Nothing to go back to. Its admin pins stay (docs/devices.md). */
  if (g_strcmp0 (name, self->focus) != 0)
    dhf_engine_history_remove (self, name);
  dhf_engine_refresh (self);
  dhf_engine_queue_reconcile (self);
  dhf_engine_check_focus (self);
}

void
dhf_device_engine_synced (DhfDeviceEngine *self)
{
  g_return_if_fail (DHF_IS_DEVICE_ENGINE (self));
  if (self->shut_down)
    return;
  self->synced = TRUE;
  if (self->sync_queued)
    return;
  self->sync_queued = TRUE;
  dhf_engine_enqueue (self, dhf_engine_request_new (self, DHF_REQUEST_SYNC, NULL));
}

void
dhf_device_engine_policy_changed (DhfDeviceEngine *self)
{
  g_return_if_fail (DHF_IS_DEVICE_ENGINE (self));
  self->policy_generation++;
  dhf_engine_forget_all_failures (self);
  dhf_engine_refresh (self);
  dhf_engine_queue_reconcile (self);
}

/* --- queries ----------------------------------------------------------- */

const gchar *
dhf_device_engine_get_focused (DhfDeviceEngine *self)
{
  g_return_val_if_fail (DHF_IS_DEVICE_ENGINE (self), NULL);
  return self->focus;
}

const gchar *
dhf_device_engine_get_planning_focus (DhfDeviceEngine *self)
{
  g_return_val_if_fail (DHF_IS_DEVICE_ENGINE (self), NULL);
  return self->planning != NULL ? self->planning : self->focus;
}

GStrv
dhf_device_engine_dup_history (DhfDeviceEngine *self)
{
  g_autoptr (GStrvBuilder) builder = g_strv_builder_new ();

  g_return_val_if_fail (DHF_IS_DEVICE_ENGINE (self), NULL);
  for (guint i = 0; i < self->history->len; i++)
    {
      const gchar *name = g_ptr_array_index (self->history, i);

      if (g_strcmp0 (name, self->focus) != 0)
        g_strv_builder_add (builder, name);
    }
  return g_strv_builder_end (builder);
}

GStrv
dhf_device_engine_dup_cycle (DhfDeviceEngine *self)
{
  g_autoptr (GStrvBuilder) builder = g_strv_builder_new ();
  g_autoptr (GHashTable) taken = g_hash_table_new (g_str_hash, g_str_equal);
  g_autoptr (GPtrArray) names = NULL;

  g_return_val_if_fail (DHF_IS_DEVICE_ENGINE (self), NULL);
  if (self->cycle_dom0)
    g_strv_builder_add (builder, DHF_DOM0);
  for (guint i = 0; self->order != NULL && self->order[i] != NULL; i++)
    {
      const gchar *name = self->order[i];

      if (!dhf_engine_is_dom0 (name) && dhf_engine_may_focus (self, name)
          && g_hash_table_add (taken, (gpointer) name))
        g_strv_builder_add (builder, name);
    }
  names = dhf_engine_sorted_keys (self->domains);
  for (guint i = 0; i < names->len; i++)
    {
      const gchar *name = g_ptr_array_index (names, i);

      if (dhf_engine_may_focus (self, name) && !g_hash_table_contains (taken, name))
        g_strv_builder_add (builder, name);
    }
  return g_strv_builder_end (builder);
}

GPtrArray *
dhf_device_engine_list (DhfDeviceEngine *self)
{
  GPtrArray *list = g_ptr_array_new_with_free_func ((GDestroyNotify) dhf_device_status_free);
  g_autoptr (GPtrArray) ids = NULL;

  g_return_val_if_fail (DHF_IS_DEVICE_ENGINE (self), list);
  ids = dhf_engine_sorted_keys (self->devices);
  for (guint i = 0; i < ids->len; i++)
    g_ptr_array_add (list,
                     dhf_engine_make_status (
                         self, g_hash_table_lookup (self->devices, g_ptr_array_index (ids, i))));
  return list;
}

DhfDeviceStatus *
dhf_device_engine_lookup (DhfDeviceEngine *self, const gchar *id)
{
  const DhfEngDevice *record;

  g_return_val_if_fail (DHF_IS_DEVICE_ENGINE (self), NULL);
  record = id != NULL ? g_hash_table_lookup (self->devices, id) : NULL;
  return record != NULL ? dhf_engine_make_status (self, record) : NULL;
}

gboolean
dhf_device_engine_is_idle (DhfDeviceEngine *self)
{
  g_return_val_if_fail (DHF_IS_DEVICE_ENGINE (self), TRUE);
  return self->current == NULL && g_queue_is_empty (&self->queue);
}

/* --- requests ---------------------------------------------------------- */

static gboolean
refuse_unsynced (DhfDeviceEngine *self, GTask *task)
{
  if (self->shut_down)
    {
      g_task_return_error (task, dhf_engine_shutting_down_error ());
      return TRUE;
    }
  if (self->synced)
    return FALSE;
  g_task_return_new_error (task, DHF_ERROR, DHF_ERROR_HYPERVISOR_UNAVAILABLE,
                           "the domains have not been read from the hypervisor yet");
  return TRUE;
}

void
dhf_device_engine_switch_async (DhfDeviceEngine *self, const gchar *target, const gchar *requester,
                                const guint *held_keys, guint n_held_keys,
                                GCancellable *cancellable, GAsyncReadyCallback callback,
                                gpointer user_data)
{
  g_autoptr (GTask) task = NULL;
  DhfEngineRequest *req;

  g_return_if_fail (DHF_IS_DEVICE_ENGINE (self));
  g_return_if_fail (target != NULL);
  g_return_if_fail (n_held_keys == 0 || held_keys != NULL);

  task = g_task_new (self, cancellable, callback, user_data);
  g_task_set_source_tag (task, dhf_device_engine_switch_async);
  /* A switch that happened is reported as done, cancelled or not. */
  g_task_set_check_cancellable (task, FALSE);
  if (refuse_unsynced (self, task))
    return;
  /* Only dom0's: a guest's is decided by the policy first. */
  if (dhf_engine_is_dom0 (requester != NULL ? requester : DHF_DOM0)
      && g_strcmp0 (target, self->focus) == 0 && dhf_device_engine_is_idle (self))
    {
      g_task_return_pointer (task, g_strdup (self->focus), g_free);
      return;
    }
  req = dhf_engine_request_new (self, DHF_REQUEST_SWITCH, task);
  req->target = g_strdup (target);
  req->requester = g_strdup (requester != NULL ? requester : DHF_DOM0);
  req->keys = n_held_keys > 0 ? g_memdup2 (held_keys, sizeof (guint) * n_held_keys) : NULL;
  req->n_keys = n_held_keys;
  if (!dhf_engine_switch_check_now (self, req))
    dhf_engine_enqueue (self, req);
}

gchar *
dhf_device_engine_switch_finish (DhfDeviceEngine *self, GAsyncResult *result, GError **error)
{
  g_return_val_if_fail (g_task_is_valid (result, self), NULL);
  return g_task_propagate_pointer (G_TASK (result), error);
}

void
dhf_device_engine_assign_async (DhfDeviceEngine *self, const gchar *id, const gchar *domain,
                                GCancellable *cancellable, GAsyncReadyCallback callback,
                                gpointer user_data)
{
  g_autoptr (GTask) task = NULL;
  DhfEngineRequest *req;

  g_return_if_fail (DHF_IS_DEVICE_ENGINE (self));
  g_return_if_fail (id != NULL && domain != NULL);

  task = g_task_new (self, cancellable, callback, user_data);
  g_task_set_source_tag (task, dhf_device_engine_assign_async);
  g_task_set_check_cancellable (task, FALSE);
  if (refuse_unsynced (self, task))
    return;
  req = dhf_engine_request_new (self, DHF_REQUEST_ASSIGN, task);
  req->device_id = g_strdup (id);
  req->target = g_strdup (domain);
  dhf_engine_enqueue (self, req);
}

gboolean
dhf_device_engine_assign_finish (DhfDeviceEngine *self, GAsyncResult *result, GError **error)
{
  g_return_val_if_fail (g_task_is_valid (result, self), FALSE);
  return g_task_propagate_boolean (G_TASK (result), error);
}

void
dhf_device_engine_release_async (DhfDeviceEngine *self, const gchar *id, GCancellable *cancellable,
                                 GAsyncReadyCallback callback, gpointer user_data)
{
  g_autoptr (GTask) task = NULL;
  DhfEngineRequest *req;

  g_return_if_fail (DHF_IS_DEVICE_ENGINE (self));
  g_return_if_fail (id != NULL);

  task = g_task_new (self, cancellable, callback, user_data);
  g_task_set_source_tag (task, dhf_device_engine_release_async);
  g_task_set_check_cancellable (task, FALSE);
  if (refuse_unsynced (self, task))
    return;
  req = dhf_engine_request_new (self, DHF_REQUEST_RELEASE, task);
  req->device_id = g_strdup (id);
  dhf_engine_enqueue (self, req);
}

gboolean
dhf_device_engine_release_finish (DhfDeviceEngine *self, GAsyncResult *result, GError **error)
{
  g_return_val_if_fail (g_task_is_valid (result, self), FALSE);
  return g_task_propagate_boolean (G_TASK (result), error);
}

/* --- shutting down ----------------------------------------------------- */

static void
shutdown_now (DhfDeviceEngine *self)
{
  DhfEngineRequest *req;

  if (self->shut_down)
    return;
  self->shut_down = TRUE;
  if (self->kick != NULL)
    {
      g_source_destroy (self->kick);
      g_clear_pointer (&self->kick, g_source_unref);
    }
  /* The operation running finishes; nothing after it runs, and what it
   * did is not applied: the next start reads where the devices are. */
  g_clear_pointer (&self->runner, dhf_txn_runner_free);
  req = self->current;
  if (req != NULL && req->in_flight)
    {
      self->current = NULL;
      req->in_flight = FALSE;
      dhf_engine_complete (req, dhf_engine_shutting_down_error (), NULL);
      dhf_engine_request_unref (req);
      /* The reference the transaction held. */
      g_object_unref (self);
    }
  while ((req = g_queue_pop_head (&self->queue)) != NULL)
    {
      dhf_engine_cancel_unwatch (req);
      dhf_engine_complete (req, dhf_engine_shutting_down_error (), NULL);
      dhf_engine_request_unref (req);
    }
  while (self->parked->len > 0)
    {
      req = g_ptr_array_index (self->parked, self->parked->len - 1);
      dhf_engine_ask_stop (req);
      g_cancellable_cancel (req->ask_cancellable);
      dhf_engine_complete (req, dhf_engine_shutting_down_error (), NULL);
      dhf_engine_request_unref (req);
    }
  self->reconcile_queued = self->sync_queued = self->fallback_queued = FALSE;
  /* What was saved last is on disk when this returns. */
  g_clear_pointer (&self->writer, dhf_state_writer_free);
  self->decide = NULL;
  self->decide_data = NULL;
  self->ask = NULL;
  self->ask_data = NULL;
}

void
dhf_device_engine_shutdown (DhfDeviceEngine *self)
{
  g_autoptr (DhfDeviceEngine) hold = NULL;

  g_return_if_fail (DHF_IS_DEVICE_ENGINE (self));
  hold = g_object_ref (self);
  shutdown_now (self);
}

/* --- GObject ----------------------------------------------------------- */

DhfDeviceEngine *
dhf_device_engine_new (const DhfDeviceOps *ops, gpointer ops_data,
                       const DhfDeviceEngineConfig *config)
{
  DhfDeviceEngine *self;

  g_return_val_if_fail (ops != NULL, NULL);
  g_return_val_if_fail (config != NULL, NULL);

  self = g_object_new (DHF_TYPE_DEVICE_ENGINE, NULL);
  self->ops = ops;
  self->ops_data = ops_data;
  self->state_file = g_strdup (config->state_file);
  self->fallback = g_strdup (config->fallback != NULL ? config->fallback : DHF_DOM0);
  self->focused_weight = config->focused_weight;
  self->normal_weight = config->normal_weight;
  self->order = g_strdupv ((gchar **) config->order);
  self->cycle_dom0 = config->cycle_dom0;
  self->history_length
      = config->history_length > 0 ? config->history_length : DEFAULT_HISTORY_LENGTH;
  self->runner = dhf_txn_runner_new (ops, ops_data, self->context);
  if (self->state_file != NULL)
    self->writer = dhf_state_writer_new (self->state_file);
  return self;
}

static void
dhf_device_engine_init (DhfDeviceEngine *self)
{
  self->context = g_main_context_ref_thread_default ();
  self->devices = g_hash_table_new_full (g_str_hash, g_str_equal, g_free,
                                         (GDestroyNotify) dhf_eng_device_free);
  self->domains
      = g_hash_table_new_full (g_str_hash, g_str_equal, NULL, (GDestroyNotify) dhf_eng_domain_free);
  self->admin_pins = g_hash_table_new_full (g_str_hash, g_str_equal, g_free,
                                            (GDestroyNotify) dhf_admin_pin_free);
  self->weights = g_hash_table_new_full (g_str_hash, g_str_equal, g_free, NULL);
  self->shown = g_hash_table_new_full (g_str_hash, g_str_equal, g_free, g_free);
  self->history = g_ptr_array_new_with_free_func (g_free);
  self->focus = g_strdup (DHF_DOM0);
  self->plan = g_hash_table_new (g_str_hash, g_str_equal);
  self->weight_failed = g_hash_table_new_full (g_str_hash, g_str_equal, g_free, NULL);
  self->to_read = g_hash_table_new_full (g_str_hash, g_str_equal, g_free, NULL);
  self->config_only = g_hash_table_new_full (g_str_hash, g_str_equal, g_free, NULL);
  self->parked = g_ptr_array_new ();
  g_queue_init (&self->queue);
}

static void
dhf_device_engine_dispose (GObject *object)
{
  DhfDeviceEngine *self = DHF_DEVICE_ENGINE (object);

  /* Requests with a task, and a running transaction, keep the engine
   * alive: what is left here is the engine's own. */
  shutdown_now (self);
  G_OBJECT_CLASS (dhf_device_engine_parent_class)->dispose (object);
}

static void
dhf_device_engine_finalize (GObject *object)
{
  DhfDeviceEngine *self = DHF_DEVICE_ENGINE (object);

  g_free (self->state_file);
  g_free (self->fallback);
  g_strfreev (self->order);
  g_hash_table_unref (self->devices);
  g_hash_table_unref (self->domains);
  g_hash_table_unref (self->admin_pins);
  g_hash_table_unref (self->weights);
  g_hash_table_unref (self->weight_failed);
  g_hash_table_unref (self->to_read);
  g_hash_table_unref (self->config_only);
  g_ptr_array_unref (self->parked);
  g_hash_table_unref (self->shown);
  g_clear_pointer (&self->plan, g_hash_table_unref);
  g_ptr_array_unref (self->history);
  g_free (self->focus);
  g_free (self->saved_focus);
  g_main_context_unref (self->context);
  G_OBJECT_CLASS (dhf_device_engine_parent_class)->finalize (object);
}

static void
dhf_device_engine_class_init (DhfDeviceEngineClass *klass)
{
  GObjectClass *object_class = G_OBJECT_CLASS (klass);

  object_class->dispose = dhf_device_engine_dispose;
  object_class->finalize = dhf_device_engine_finalize;

  signals[SIGNAL_FOCUS_CHANGED]
      = g_signal_new ("focus-changed", G_TYPE_FROM_CLASS (klass), G_SIGNAL_RUN_LAST, 0, NULL, NULL,
                      NULL, G_TYPE_NONE, 2, G_TYPE_STRING, G_TYPE_STRING);
  signals[SIGNAL_DEVICE_CHANGED]
      = g_signal_new ("device-changed", G_TYPE_FROM_CLASS (klass), G_SIGNAL_RUN_LAST, 0, NULL, NULL,
                      NULL, G_TYPE_NONE, 1, G_TYPE_STRING);
  signals[SIGNAL_IDLE] = g_signal_new ("idle", G_TYPE_FROM_CLASS (klass), G_SIGNAL_RUN_LAST, 0,
                                       NULL, NULL, NULL, G_TYPE_NONE, 0);
}

/* The signals are the GObject's: the other files emit them through these. */
void
dhf_engine_emit_focus_changed (DhfDeviceEngine *self, const gchar *focused, const gchar *previous)
{
  g_signal_emit (self, signals[SIGNAL_FOCUS_CHANGED], 0, focused, previous);
}

void
dhf_engine_emit_device_changed (DhfDeviceEngine *self, const gchar *id)
{
  g_signal_emit (self, signals[SIGNAL_DEVICE_CHANGED], 0, id);
}

void
dhf_engine_emit_idle (DhfDeviceEngine *self)
{
  g_signal_emit (self, signals[SIGNAL_IDLE], 0);
}
