/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include "config.h"

#include <string.h>

#include "dhf-device-engine-private.h"

/* The device engine (docs/devices.md): the records of devices, domains,
 * focus and pins; the queue of transactions, each planned on the main
 * context just before it runs, run on the worker (dhf-device-txn.c) and
 * applied back here; the signals. */

#define DEFAULT_HISTORY_LENGTH 16

typedef enum
{
  REQUEST_SYNC,
  REQUEST_RECONCILE,
  REQUEST_SWITCH,
  REQUEST_FALLBACK,
  REQUEST_ASSIGN,
  REQUEST_RELEASE,
} RequestKind;

typedef struct
{
  gint ref_count;
  RequestKind kind;
  DhfDeviceEngine *self; /* borrowed; a reference is held while it waits for others */
  GTask *task;           /* NULL for the engine's own */
  gchar *target;         /* SWITCH: as asked; ASSIGN: the domain */
  gchar *requester;      /* SWITCH */
  guint *keys;           /* SWITCH: held keys to release in the old focus */
  guint n_keys;
  gchar *device_id; /* ASSIGN, RELEASE */

  /* While it runs. */
  gchar *resolved; /* SWITCH, FALLBACK: the domain to focus */
  DhfTxn *txn;
  GCancellable *ask_cancellable;
  gulong cancel_handler;
  gboolean asking;
} Request;

struct _DhfDeviceEngine
{
  GObject parent_instance;

  const DhfDeviceOps *ops;
  gpointer ops_data;
  gchar *state_file;
  gchar *fallback;
  guint focused_weight;
  guint normal_weight;
  gchar **order;
  gboolean cycle_dom0;
  guint history_length;

  DhfEngineDecideFunc decide;
  gpointer decide_data;
  DhfEngineAskFunc ask;
  gpointer ask_data;

  GMainContext *context;
  DhfTxnRunner *runner;
  DhfStateWriter *writer; /* NULL without a state file */

  GHashTable *devices;    /* id -> DhfEngDevice */
  GHashTable *domains;    /* name -> DhfEngDomain */
  GHashTable *admin_pins; /* device id -> domain */
  gchar *focus;           /* "dom0" or a domain */
  GPtrArray *history;     /* gchar *, most recent first, never the focus */
  gchar *saved_focus;     /* from the state file, for the first sync */
  GHashTable *weights;    /* active domain -> the CPU weight the engine set */

  GHashTable *plan;  /* id -> DhfPlanEntry: where the devices should be now */
  GHashTable *shown; /* id -> the status last announced by "device-changed" */

  gboolean synced;      /* the first synced() came: devices may move */
  gboolean ever_synced; /* a sync has read the domains */
  GQueue queue;         /* Request, waiting */
  Request *current;     /* running */
  gboolean reconcile_queued;
  gboolean sync_queued;
  gboolean fallback_queued;
  GSource *kick;
};

G_DEFINE_TYPE (DhfDeviceEngine, dhf_device_engine, G_TYPE_OBJECT)

enum
{
  SIGNAL_FOCUS_CHANGED,
  SIGNAL_DEVICE_CHANGED,
  SIGNAL_IDLE,
  N_SIGNALS
};

static guint signals[N_SIGNALS];

static void start_request (Request *req);
static void continue_switch (Request *req);
static void start_reconcile (Request *req);

/* --- records ----------------------------------------------------------- */

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

static void
record_set_owner (DhfEngDevice *record, const gchar *owner)
{
  g_free (record->owner);
  record->owner = g_strdup (owner);
}

static void
record_clear_failure (DhfEngDevice *record)
{
  g_clear_pointer (&record->failure, g_free);
  g_clear_pointer (&record->failure_want, g_free);
}

/* A device that was pinned by an admin but never seen since dhfd started:
 * shown with what its id tells. */
static DhfDevice *
placeholder_device (const gchar *id)
{
  DhfDevice *device = g_new0 (DhfDevice, 1);

  device->id = g_strdup (id);
  device->kind = g_str_has_prefix (id, "pci-")     ? DHF_DEVICE_KIND_PCI
                 : g_str_has_prefix (id, "input-") ? DHF_DEVICE_KIND_INPUT
                                                   : DHF_DEVICE_KIND_USB;
  device->selector = g_strdup ("");
  device->description = g_strdup ("not present");
  device->iommu_group = -1;
  return device;
}

static gboolean
is_dom0 (const gchar *name)
{
  return g_strcmp0 (name, DHF_DOM0) == 0;
}

static const DhfEngDomain *
find_domain (DhfDeviceEngine *self, const gchar *name)
{
  return name != NULL ? g_hash_table_lookup (self->domains, name) : NULL;
}

static gboolean
domain_active (DhfDeviceEngine *self, const gchar *name)
{
  const DhfEngDomain *domain = find_domain (self, name);

  return domain != NULL && domain->active;
}

static gint
compare_strings (gconstpointer a, gconstpointer b)
{
  return strcmp (*(const gchar *const *) a, *(const gchar *const *) b);
}

/* The table's keys, sorted: a fixed order for steps and signals. */
static GPtrArray *
sorted_keys (GHashTable *table)
{
  GPtrArray *keys = g_ptr_array_new ();
  GHashTableIter iter;
  gpointer key;

  g_hash_table_iter_init (&iter, table);
  while (g_hash_table_iter_next (&iter, &key, NULL))
    g_ptr_array_add (keys, key);
  g_ptr_array_sort (keys, compare_strings);
  return keys;
}

/* --- plan and status --------------------------------------------------- */

static GHashTable *
compute_plan (DhfDeviceEngine *self, const gchar *focus)
{
  DhfPlanInput input = {
    .devices = self->devices,
    .domains = self->domains,
    .admin_pins = self->admin_pins,
    .focus = focus,
    .decide = self->decide,
    .decide_data = self->decide_data,
  };

  return dhf_plan_compute (&input);
}

static DhfDeviceStatus *
make_status (DhfDeviceEngine *self, const DhfEngDevice *record)
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
           && g_strcmp0 (record->owner, entry->want) != 0)
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
 * changed; after all the state is updated, so handlers see it whole. */
static void
refresh (DhfDeviceEngine *self)
{
  g_autoptr (GPtrArray) changed = g_ptr_array_new_with_free_func (g_free);
  g_autoptr (GPtrArray) ids = NULL;
  g_autoptr (GPtrArray) gone = g_ptr_array_new ();
  GHashTableIter iter;
  gpointer key;

  g_clear_pointer (&self->plan, g_hash_table_unref);
  self->plan = compute_plan (self, self->focus);

  ids = sorted_keys (self->devices);
  for (guint i = 0; i < ids->len; i++)
    {
      const gchar *id = g_ptr_array_index (ids, i);
      g_autoptr (DhfDeviceStatus) status
          = make_status (self, g_hash_table_lookup (self->devices, id));
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
  g_ptr_array_sort (changed, compare_strings);
  for (guint i = 0; i < changed->len; i++)
    g_signal_emit (self, signals[SIGNAL_DEVICE_CHANGED], 0, g_ptr_array_index (changed, i));
}

/* --- focus, history, state --------------------------------------------- */

static void
history_remove (DhfDeviceEngine *self, const gchar *name)
{
  for (guint i = self->history->len; i-- > 0;)
    {
      if (g_strcmp0 (g_ptr_array_index (self->history, i), name) == 0)
        g_ptr_array_remove_index (self->history, i);
    }
}

static void
history_trim (DhfDeviceEngine *self)
{
  if (self->history->len > self->history_length)
    g_ptr_array_set_size (self->history, self->history_length);
}

/* Makes focus the focused one; previous (may be NULL) goes to the front
 * of the history. */
static void
set_focus (DhfDeviceEngine *self, const gchar *focus, const gchar *previous)
{
  history_remove (self, focus);
  /* A domain that is gone is nothing to go back to. */
  if (previous != NULL && g_strcmp0 (previous, focus) != 0
      && (is_dom0 (previous) || find_domain (self, previous) != NULL))
    {
      history_remove (self, previous);
      g_ptr_array_insert (self->history, 0, g_strdup (previous));
    }
  history_trim (self);
  g_free (self->focus);
  self->focus = g_strdup (focus);
}

static void
save_state (DhfDeviceEngine *self)
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
    g_hash_table_insert (state->pins, g_strdup (key), g_strdup (value));
  dhf_state_writer_save (self->writer, dhf_device_state_to_json (state));
}

static gboolean
may_focus (DhfDeviceEngine *self, const gchar *name)
{
  const DhfEngDomain *domain = find_domain (self, name);

  return is_dom0 (name) || (domain != NULL && domain->running && domain->environment);
}

/* Where the focus goes when the focused domain stops ([Display] Fallback). */
static const gchar *
fallback_target (DhfDeviceEngine *self, const gchar *leaving)
{
  if (g_strcmp0 (self->fallback, "@previous") == 0)
    {
      for (guint i = 0; i < self->history->len; i++)
        {
          const gchar *name = g_ptr_array_index (self->history, i);

          if (!is_dom0 (name) && g_strcmp0 (name, leaving) != 0 && may_focus (self, name))
            return name;
        }
      return DHF_DOM0;
    }
  if (self->fallback != NULL && g_strcmp0 (self->fallback, leaving) != 0
      && may_focus (self, self->fallback))
    return self->fallback;
  return DHF_DOM0;
}

/* --- the queue --------------------------------------------------------- */

static Request *
request_new (DhfDeviceEngine *self, RequestKind kind, GTask *task)
{
  Request *req = g_new0 (Request, 1);

  req->ref_count = 1;
  req->kind = kind;
  req->self = self;
  req->task = task != NULL ? g_object_ref (task) : NULL;
  return req;
}

static Request *
request_ref (Request *req)
{
  g_atomic_int_inc (&req->ref_count);
  return req;
}

static void
request_unref (Request *req)
{
  if (!g_atomic_int_dec_and_test (&req->ref_count))
    return;
  g_clear_object (&req->task);
  g_free (req->target);
  g_free (req->requester);
  g_free (req->keys);
  g_free (req->device_id);
  g_free (req->resolved);
  g_clear_pointer (&req->txn, dhf_txn_free);
  g_clear_object (&req->ask_cancellable);
  g_free (req);
}

G_DEFINE_AUTOPTR_CLEANUP_FUNC (Request, request_unref)

static gboolean
run_next (gpointer data)
{
  DhfDeviceEngine *self = data;
  Request *req;

  g_clear_pointer (&self->kick, g_source_unref);
  if (self->current != NULL || g_queue_is_empty (&self->queue))
    return G_SOURCE_REMOVE;
  req = g_queue_pop_head (&self->queue);
  self->current = req;
  start_request (req);
  return G_SOURCE_REMOVE;
}

/* Starts the next request from the main loop, never inline: a burst of
 * inputs then makes one reconciliation. */
static void
kick (DhfDeviceEngine *self)
{
  if (self->kick != NULL || self->current != NULL || g_queue_is_empty (&self->queue))
    return;
  self->kick = g_idle_source_new ();
  g_source_set_priority (self->kick, G_PRIORITY_DEFAULT);
  g_source_set_callback (self->kick, run_next, self, NULL);
  g_source_set_static_name (self->kick, "[dhf] device engine queue");
  g_source_attach (self->kick, self->context);
}

static void
enqueue (DhfDeviceEngine *self, Request *req)
{
  g_queue_push_tail (&self->queue, req);
  kick (self);
}

static void
queue_reconcile (DhfDeviceEngine *self)
{
  if (!self->synced || self->reconcile_queued)
    return;
  self->reconcile_queued = TRUE;
  enqueue (self, request_new (self, REQUEST_RECONCILE, NULL));
}

/* The focused domain stopped (or went away): the engine decides the next
 * focus itself. */
static void
check_focus (DhfDeviceEngine *self)
{
  const DhfEngDomain *domain;

  if (!self->ever_synced || self->fallback_queued || is_dom0 (self->focus))
    return;
  domain = find_domain (self, self->focus);
  if (domain != NULL && domain->running && domain->environment)
    return;
  self->fallback_queued = TRUE;
  enqueue (self, request_new (self, REQUEST_FALLBACK, NULL));
}

static void
finish (Request *req, GError *error /* taken */, const gchar *focused)
{
  DhfDeviceEngine *self = req->self;

  g_assert (self->current == req);
  self->current = NULL;
  check_focus (self);
  if (req->task != NULL)
    {
      if (error != NULL)
        g_task_return_error (req->task, error);
      else if (req->kind == REQUEST_SWITCH)
        g_task_return_pointer (req->task, g_strdup (focused), g_free);
      else
        g_task_return_boolean (req->task, TRUE);
    }
  else if (error != NULL)
    {
      g_debug ("device engine: %s", error->message);
      g_error_free (error);
    }
  request_unref (req);
  if (self->current == NULL && g_queue_is_empty (&self->queue))
    g_signal_emit (self, signals[SIGNAL_IDLE], 0);
  else
    kick (self);
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
          {
            record_set_owner (record,
                              find_domain (self, step->domain) != NULL ? step->domain : DHF_DOM0);
            record_clear_failure (record);
          }
        else if (g_strcmp0 (record->owner, step->domain) == 0)
          record_set_owner (record, DHF_DOM0);
        break;
      case DHF_STEP_SET_WEIGHT:
        if (domain_active (self, step->domain))
          g_hash_table_insert (self->weights, g_strdup (step->domain),
                               GUINT_TO_POINTER (step->weight));
        break;
      case DHF_STEP_RELEASE_KEYS:
        break;
    }
}

static void
apply_unit (DhfDeviceEngine *self, const DhfTxnUnit *unit)
{
  for (guint i = 0; i < unit->steps->len; i++)
    {
      const DhfStep *step = g_ptr_array_index (unit->steps, i);

      if (unit->ok)
        apply_step (self, step);
      else if (step->kind == DHF_STEP_SET_WEIGHT)
        /* Undone, or not if its undo failed: the next reconciliation
         * sets it again rather than trust either. */
        g_hash_table_remove (self->weights, step->domain);
    }
}

/* What list_attached said: the devices whose alias a domain holds are
 * there; those the engine thought there and that are not, are not. */
static void
apply_attached (DhfDeviceEngine *self, GHashTable *attached, gboolean whole)
{
  g_autoptr (GHashTable) by_alias = g_hash_table_new_full (g_str_hash, g_str_equal, g_free, NULL);
  g_autoptr (GPtrArray) domains = sorted_keys (attached);
  GHashTableIter iter;
  gpointer value;

  g_hash_table_iter_init (&iter, self->devices);
  while (g_hash_table_iter_next (&iter, NULL, &value))
    {
      DhfEngDevice *record = value;

      g_hash_table_insert (by_alias, dhf_device_alias (record->device), record);
      /* On a whole sync, a device of a domain that was not read keeps
       * its owner only when the read failed. */
      if (!is_dom0 (record->owner)
          && (g_hash_table_contains (attached, record->owner)
              || (whole && find_domain (self, record->owner) == NULL)))
        record_set_owner (record, DHF_DOM0);
    }
  for (guint i = 0; i < domains->len; i++)
    {
      const gchar *domain = g_ptr_array_index (domains, i);
      const gchar *const *aliases = g_hash_table_lookup (attached, domain);

      if (find_domain (self, domain) == NULL)
        continue;

      for (guint k = 0; aliases[k] != NULL; k++)
        {
          DhfEngDevice *record = g_hash_table_lookup (by_alias, aliases[k]);

          if (record == NULL)
            {
              g_message ("%s holds the device %s, which dhfd does not know; leaving it alone",
                         domain, aliases[k]);
              continue;
            }
          record_set_owner (record, domain);
        }
    }
}

static void
txn_run (Request *req, DhfTxnDoneFunc done)
{
  /* The engine stays alive until the worker's result is applied. */
  g_object_ref (req->self);
  dhf_txn_runner_run (req->self->runner, req->txn, done, req);
}

/* --- sync and reconcile ------------------------------------------------ */

static void
restore_focus (DhfDeviceEngine *self, gboolean first)
{
  g_autofree gchar *candidate
      = g_strdup (first && self->saved_focus != NULL ? self->saved_focus : self->focus);
  g_autofree gchar *old = g_strdup (self->focus);
  const gchar *focus = candidate;

  if (!may_focus (self, candidate))
    {
      focus = fallback_target (self, candidate);
      g_message ("%s cannot have the focus now; it goes to %s", candidate, focus);
    }
  set_focus (self, focus, g_strcmp0 (focus, candidate) != 0 ? candidate : NULL);
  g_clear_pointer (&self->saved_focus, g_free);
  /* The file already says so unless the focus had to fall back. */
  if (g_strcmp0 (candidate, self->focus) != 0)
    save_state (self);
  refresh (self);
  if (g_strcmp0 (old, self->focus) != 0)
    g_signal_emit (self, signals[SIGNAL_FOCUS_CHANGED], 0, self->focus, old);
}

static void
sync_done (DhfTxn *txn, gpointer data)
{
  Request *req = data;
  DhfDeviceEngine *self = req->self;
  gboolean first = !self->ever_synced;

  apply_attached (self, txn->attached, TRUE);
  self->ever_synced = TRUE;
  /* Whatever weights were, they are set again. */
  g_hash_table_remove_all (self->weights);
  restore_focus (self, first);
  g_clear_pointer (&req->txn, dhf_txn_free);
  start_reconcile (req);
  g_object_unref (self);
}

static void
start_sync (Request *req)
{
  DhfDeviceEngine *self = req->self;
  g_autoptr (GPtrArray) names = sorted_keys (self->domains);

  self->sync_queued = FALSE;
  req->txn = dhf_txn_new ();
  for (guint i = 0; i < names->len; i++)
    g_ptr_array_add (req->txn->reads, g_strdup (g_ptr_array_index (names, i)));
  txn_run (req, sync_done);
}

static void
reconcile_done (DhfTxn *txn, gpointer data)
{
  Request *req = data;
  DhfDeviceEngine *self = req->self;

  for (guint i = 0; i < txn->units->len; i++)
    {
      const DhfTxnUnit *unit = g_ptr_array_index (txn->units, i);
      DhfEngDevice *record;

      if (unit->ok)
        {
          apply_unit (self, unit);
          continue;
        }
      g_warning ("%s", unit->error->message);
      apply_unit (self, unit);
      apply_attached (self, unit->attached, FALSE);
      record
          = unit->device_id != NULL ? g_hash_table_lookup (self->devices, unit->device_id) : NULL;
      if (record != NULL)
        {
          const gchar *want = DHF_DOM0;

          for (guint k = 0; k < unit->steps->len; k++)
            {
              const DhfStep *step = g_ptr_array_index (unit->steps, k);

              if (step->kind == DHF_STEP_ATTACH)
                want = step->domain;
            }
          g_free (record->failure);
          record->failure = g_strdup (unit->error->message);
          g_free (record->failure_want);
          record->failure_want = g_strdup (want);
        }
    }
  refresh (self);
  finish (req, NULL, NULL);
  g_object_unref (self);
}

/* Moves every device that is not where it should be, each in a unit of
 * its own, and sets the CPU weights the engine has not set yet. */
static void
start_reconcile (Request *req)
{
  DhfDeviceEngine *self = req->self;
  g_autoptr (GPtrArray) ids = NULL;
  g_autoptr (GPtrArray) names = NULL;

  if (req->kind == REQUEST_RECONCILE)
    self->reconcile_queued = FALSE;
  refresh (self);
  req->txn = dhf_txn_new ();

  ids = sorted_keys (self->devices);
  for (guint i = 0; i < ids->len; i++)
    {
      DhfEngDevice *record = g_hash_table_lookup (self->devices, g_ptr_array_index (ids, i));
      const DhfPlanEntry *entry = g_hash_table_lookup (self->plan, record->device->id);
      DhfTxnUnit *unit;

      if (!record->present || entry == NULL || g_strcmp0 (record->owner, entry->want) == 0)
        continue;
      unit = dhf_txn_unit_new (NULL, record->device->id);
      dhf_plan_move_steps (record, entry->want, self->domains, unit->steps, unit->steps);
      if (unit->steps->len == 0)
        {
          /* Held by a domain that is no longer defined: nothing to undo. */
          record_set_owner (record, entry->want);
          dhf_txn_unit_free (unit);
          continue;
        }
      g_ptr_array_add (req->txn->units, unit);
    }

  names = sorted_keys (self->domains);
  for (guint i = 0; self->focused_weight != 0 && i < names->len; i++)
    {
      const DhfEngDomain *domain
          = g_hash_table_lookup (self->domains, g_ptr_array_index (names, i));
      guint weight
          = g_strcmp0 (domain->name, self->focus) == 0 ? self->focused_weight : self->normal_weight;
      gpointer set = NULL;
      DhfTxnUnit *unit;

      if (!domain->active
          || (g_hash_table_lookup_extended (self->weights, domain->name, NULL, &set)
              && GPOINTER_TO_UINT (set) == weight))
        continue;
      unit = dhf_txn_unit_new (NULL, NULL);
      g_ptr_array_add (unit->steps, dhf_step_new_weight (domain->name, weight,
                                                         set != NULL ? GPOINTER_TO_UINT (set)
                                                                     : self->normal_weight));
      g_ptr_array_add (req->txn->units, unit);
    }

  if (req->txn->units->len == 0)
    {
      finish (req, NULL, NULL);
      return;
    }
  txn_run (req, reconcile_done);
}

/* --- switching --------------------------------------------------------- */

static gboolean
validate_target (DhfDeviceEngine *self, const gchar *name, GError **error)
{
  const DhfEngDomain *domain;

  if (is_dom0 (name))
    return TRUE;
  domain = find_domain (self, name);
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

static void
switch_done (DhfTxn *txn, gpointer data)
{
  Request *req = data;
  DhfDeviceEngine *self = req->self;
  const DhfTxnUnit *unit = g_ptr_array_index (txn->units, 0);
  g_autofree gchar *previous = NULL;

  apply_unit (self, unit);
  if (!unit->ok)
    {
      apply_attached (self, unit->attached, FALSE);
      refresh (self);
      finish (req, g_error_copy (unit->error), NULL);
      g_object_unref (self);
      return;
    }
  previous = g_strdup (self->focus);
  set_focus (self, req->resolved, previous);
  save_state (self);
  refresh (self);
  g_signal_emit (self, signals[SIGNAL_FOCUS_CHANGED], 0, self->focus, previous);
  finish (req, NULL, self->focus);
  g_object_unref (self);
}

/* The switch as one transaction: keys, detaches, attaches, weights. */
static void
continue_switch (Request *req)
{
  DhfDeviceEngine *self = req->self;
  g_autoptr (GError) error = NULL;
  g_autoptr (GHashTable) plan = NULL;
  g_autoptr (GPtrArray) ids = NULL;
  g_autoptr (GPtrArray) detaches = g_ptr_array_new_with_free_func ((GDestroyNotify) dhf_step_free);
  g_autoptr (GPtrArray) attaches = g_ptr_array_new_with_free_func ((GDestroyNotify) dhf_step_free);
  g_autofree gchar *label = NULL;
  const gchar *old = self->focus;
  DhfTxnUnit *unit;

  /* An answer may have taken a while: look again. */
  if (!validate_target (self, req->resolved, &error))
    {
      finish (req, g_steal_pointer (&error), NULL);
      return;
    }
  if (g_strcmp0 (req->resolved, self->focus) == 0)
    {
      finish (req, NULL, self->focus);
      return;
    }

  refresh (self);
  plan = compute_plan (self, req->resolved);
  label = g_strdup_printf ("switching to %s", req->resolved);
  unit = dhf_txn_unit_new (label, NULL);

  if (req->n_keys > 0 && !is_dom0 (old) && domain_active (self, old))
    g_ptr_array_add (unit->steps, dhf_step_new_release_keys (old, req->keys, req->n_keys));

  ids = sorted_keys (self->devices);
  for (guint i = 0; i < ids->len; i++)
    {
      const DhfEngDevice *record = g_hash_table_lookup (self->devices, g_ptr_array_index (ids, i));
      const DhfPlanEntry *before = g_hash_table_lookup (self->plan, record->device->id);
      const DhfPlanEntry *after = g_hash_table_lookup (plan, record->device->id);

      /* Only what follows the focus moves; the rest is reconcile's. */
      if (!record->present || after == NULL || g_strcmp0 (record->owner, after->want) == 0
          || (after->mode != DHF_DEVICE_MODE_FOLLOW_FOCUS
              && (before == NULL || before->mode != DHF_DEVICE_MODE_FOLLOW_FOCUS)))
        continue;
      dhf_plan_move_steps (record, after->want, self->domains, detaches, attaches);
    }
  g_ptr_array_extend_and_steal (unit->steps, g_steal_pointer (&detaches));
  g_ptr_array_extend_and_steal (unit->steps, g_steal_pointer (&attaches));

  if (self->focused_weight != 0)
    {
      gpointer set;

      if (!is_dom0 (req->resolved) && domain_active (self, req->resolved))
        {
          set = g_hash_table_lookup (self->weights, req->resolved);
          g_ptr_array_add (unit->steps, dhf_step_new_weight (req->resolved, self->focused_weight,
                                                             set != NULL ? GPOINTER_TO_UINT (set)
                                                                         : self->normal_weight));
        }
      if (!is_dom0 (old) && domain_active (self, old))
        {
          set = g_hash_table_lookup (self->weights, old);
          g_ptr_array_add (unit->steps, dhf_step_new_weight (old, self->normal_weight,
                                                             set != NULL ? GPOINTER_TO_UINT (set)
                                                                         : self->normal_weight));
        }
    }

  req->txn = dhf_txn_new ();
  g_ptr_array_add (req->txn->units, unit);
  if (unit->steps->len == 0)
    {
      /* Nothing to move: the unit is done as it is. */
      unit->ok = TRUE;
      g_object_ref (self);
      switch_done (req->txn, req);
      return;
    }
  txn_run (req, switch_done);
}

static void
ask_stop (Request *req)
{
  GCancellable *cancellable = req->task != NULL ? g_task_get_cancellable (req->task) : NULL;

  req->asking = FALSE;
  if (req->cancel_handler != 0)
    g_cancellable_disconnect (cancellable, req->cancel_handler);
  req->cancel_handler = 0;
}

static void
ask_done (gboolean allow, gpointer data)
{
  Request *req = data;
  DhfDeviceEngine *self = req->self;

  /* The asker promised no answer after a cancellation. */
  g_return_if_fail (req->asking);
  ask_stop (req);
  if (allow)
    continue_switch (req);
  else
    finish (req,
            g_error_new (DHF_ERROR, DHF_ERROR_NOT_AUTHORIZED,
                         "switching from %s to %s was refused when asked", req->requester,
                         req->resolved),
            NULL);
  g_object_unref (self);
}

static gboolean
ask_cancelled_idle (gpointer data)
{
  Request *req = data;
  DhfDeviceEngine *self = req->self;

  if (!req->asking)
    return G_SOURCE_REMOVE;
  ask_stop (req);
  g_cancellable_cancel (req->ask_cancellable);
  finish (req, g_error_new_literal (DHF_ERROR, DHF_ERROR_CANCELLED, "the switch was cancelled"),
          NULL);
  g_object_unref (self);
  return G_SOURCE_REMOVE;
}

/* Any thread: the caller cancelled while the user was being asked. */
static void
on_task_cancelled (GCancellable *cancellable, gpointer data)
{
  Request *req = data;
  g_autoptr (GSource) source = g_idle_source_new ();

  g_source_set_priority (source, G_PRIORITY_DEFAULT);
  g_source_set_callback (source, ask_cancelled_idle, request_ref (req),
                         (GDestroyNotify) request_unref);
  g_source_attach (source, req->self->context);
}

static void
start_switch (Request *req)
{
  DhfDeviceEngine *self = req->self;
  g_autoptr (GError) error = NULL;
  DhfEngineVerdict verdict = { DHF_POLICY_ACTION_DENY, NULL, FALSE, NULL };
  GCancellable *cancellable;

  if (req->kind == REQUEST_FALLBACK)
    {
      self->fallback_queued = FALSE;
      if (is_dom0 (self->focus) || may_focus (self, self->focus))
        {
          finish (req, NULL, self->focus);
          return;
        }
      req->resolved = g_strdup (fallback_target (self, self->focus));
      g_message ("%s lost the focus; it goes to %s", self->focus, req->resolved);
      continue_switch (req);
      return;
    }

  if (g_cancellable_is_cancelled (g_task_get_cancellable (req->task)))
    {
      finish (req, g_error_new_literal (DHF_ERROR, DHF_ERROR_CANCELLED, "the switch was cancelled"),
              NULL);
      return;
    }
  req->resolved = resolve_target (self, req->target, &error);
  if (req->resolved == NULL || !validate_target (self, req->resolved, &error))
    {
      finish (req, g_steal_pointer (&error), NULL);
      return;
    }
  if (g_strcmp0 (req->resolved, self->focus) == 0)
    {
      finish (req, NULL, self->focus);
      return;
    }

  if (self->decide != NULL)
    self->decide (DHF_POLICY_KIND_SWITCH, NULL, req->requester, req->resolved, &verdict,
                  self->decide_data);
  switch (verdict.action)
    {
      case DHF_POLICY_ACTION_ALLOW:
        continue_switch (req);
        break;
      case DHF_POLICY_ACTION_ASK:
        if (self->ask != NULL)
          {
            req->asking = TRUE;
            req->ask_cancellable = g_cancellable_new ();
            g_object_ref (self);
            cancellable = g_task_get_cancellable (req->task);
            if (cancellable != NULL)
              req->cancel_handler
                  = g_cancellable_connect (cancellable, G_CALLBACK (on_task_cancelled), req, NULL);
            self->ask (req->requester, req->resolved, verdict.rule, req->ask_cancellable, ask_done,
                       req, self->ask_data);
            break;
          }
        finish (req,
                g_error_new (DHF_ERROR, DHF_ERROR_NOT_AUTHORIZED,
                             "switching from %s to %s needs an answer (%s) and no one can be "
                             "asked",
                             req->requester, req->resolved,
                             verdict.rule != NULL ? verdict.rule : "policy"),
                NULL);
        break;
      case DHF_POLICY_ACTION_DENY:
      default:
        if (verdict.rule != NULL)
          error = g_error_new (DHF_ERROR, DHF_ERROR_NOT_AUTHORIZED,
                               "switching from %s to %s is denied by %s", req->requester,
                               req->resolved, verdict.rule);
        else
          error = g_error_new (DHF_ERROR, DHF_ERROR_NOT_AUTHORIZED,
                               "switching from %s to %s is denied: no rule allows it",
                               req->requester, req->resolved);
        finish (req, g_steal_pointer (&error), NULL);
        break;
    }
  dhf_engine_verdict_clear (&verdict);
}

/* --- assign and release ------------------------------------------------ */

static void
pin_set (DhfDeviceEngine *self, const gchar *id, const gchar *domain)
{
  if (domain != NULL)
    g_hash_table_insert (self->admin_pins, g_strdup (id), g_strdup (domain));
  else
    g_hash_table_remove (self->admin_pins, id);
}

/* The plan as it would be with the admin pin of id set to domain (NULL:
 * none); the engine's own pins are left as they are. */
static GHashTable *
plan_with_pin (DhfDeviceEngine *self, const gchar *id, const gchar *domain)
{
  g_autofree gchar *before = g_strdup (g_hash_table_lookup (self->admin_pins, id));
  GHashTable *plan;

  pin_set (self, id, domain);
  plan = compute_plan (self, self->focus);
  pin_set (self, id, before);
  return plan;
}

static void
pin_done (DhfTxn *txn, gpointer data)
{
  Request *req = data;
  DhfDeviceEngine *self = req->self;
  const DhfTxnUnit *unit = g_ptr_array_index (txn->units, 0);
  DhfEngDevice *record;

  if (!unit->ok)
    {
      /* The pin stays as it was. */
      apply_attached (self, unit->attached, FALSE);
      refresh (self);
      finish (req, g_error_copy (unit->error), NULL);
      g_object_unref (self);
      return;
    }
  apply_unit (self, unit);
  pin_set (self, req->device_id, req->kind == REQUEST_ASSIGN ? req->target : NULL);
  record = g_hash_table_lookup (self->devices, req->device_id);
  if (record != NULL && !record->present && is_dom0 (record->owner)
      && !g_hash_table_contains (self->admin_pins, req->device_id))
    g_hash_table_remove (self->devices, req->device_id);
  save_state (self);
  refresh (self);
  finish (req, NULL, NULL);
  g_object_unref (self);
}

/* Moves the request's device to want, then sets its pin; the pin changes
 * only when the move worked. */
static void
run_pin_move (Request *req, const gchar *label, const gchar *want)
{
  DhfDeviceEngine *self = req->self;
  const DhfEngDevice *record = g_hash_table_lookup (self->devices, req->device_id);
  DhfTxnUnit *unit = dhf_txn_unit_new (label, req->device_id);

  req->txn = dhf_txn_new ();
  g_ptr_array_add (req->txn->units, unit);
  if (record != NULL && record->present && g_strcmp0 (record->owner, want) != 0)
    dhf_plan_move_steps (record, want, self->domains, unit->steps, unit->steps);
  if (unit->steps->len == 0)
    {
      unit->ok = TRUE;
      g_object_ref (self);
      pin_done (req->txn, req);
      return;
    }
  txn_run (req, pin_done);
}

static gboolean
check_assign (DhfDeviceEngine *self, const gchar *id, const gchar *name, GError **error)
{
  const DhfEngDevice *record = g_hash_table_lookup (self->devices, id);
  const DhfPlanEntry *entry;
  const gchar *pinned = g_hash_table_lookup (self->admin_pins, id);
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
  if (is_dom0 (name))
    {
      g_set_error_literal (error, DHF_ERROR, DHF_ERROR_INVALID_ARGS,
                           "devices go back to dom0 by releasing them, not by assigning");
      return FALSE;
    }
  if (find_domain (self, name) == NULL)
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

  if (self->decide != NULL)
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

  if (pinned != NULL && g_strcmp0 (pinned, name) != 0)
    {
      g_set_error (error, DHF_ERROR, DHF_ERROR_EXISTS, "%s is pinned to %s (admin)", id, pinned);
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

static void
start_assign (Request *req)
{
  DhfDeviceEngine *self = req->self;
  g_autoptr (GError) error = NULL;
  g_autoptr (GHashTable) plan = NULL;
  g_autofree gchar *label = NULL;
  const DhfPlanEntry *entry;

  refresh (self);
  if (!check_assign (self, req->device_id, req->target, &error))
    {
      finish (req, g_steal_pointer (&error), NULL);
      return;
    }
  plan = plan_with_pin (self, req->device_id, req->target);
  entry = g_hash_table_lookup (plan, req->device_id);
  if (g_strcmp0 (entry->want, req->target) != 0)
    {
      /* Its IOMMU group keeps it back. */
      finish (req,
              g_error_new (DHF_ERROR, DHF_ERROR_EXISTS, "cannot assign %s to %s: %s",
                           req->device_id, req->target,
                           entry->problem != NULL ? entry->problem : "it is claimed elsewhere"),
              NULL);
      return;
    }
  label = g_strdup_printf ("assigning %s to %s", req->device_id, req->target);
  run_pin_move (req, label, req->target);
}

static void
start_release (Request *req)
{
  DhfDeviceEngine *self = req->self;
  g_autoptr (GHashTable) plan = NULL;
  g_autofree gchar *label = NULL;
  const DhfPlanEntry *entry;

  if (!g_hash_table_contains (self->admin_pins, req->device_id))
    {
      finish (req,
              g_error_new (DHF_ERROR, DHF_ERROR_NOT_FOUND, "%s has no admin pin", req->device_id),
              NULL);
      return;
    }
  plan = plan_with_pin (self, req->device_id, NULL);
  entry = g_hash_table_lookup (plan, req->device_id);
  label = g_strdup_printf ("releasing %s", req->device_id);
  run_pin_move (req, label, entry != NULL ? entry->want : DHF_DOM0);
}

static void
start_request (Request *req)
{
  switch (req->kind)
    {
      case REQUEST_SYNC:
        start_sync (req);
        break;
      case REQUEST_RECONCILE:
        start_reconcile (req);
        break;
      case REQUEST_SWITCH:
      case REQUEST_FALLBACK:
        start_switch (req);
        break;
      case REQUEST_ASSIGN:
        start_assign (req);
        break;
      case REQUEST_RELEASE:
        start_release (req);
        break;
    }
}

/* --- inputs ------------------------------------------------------------ */

void
dhf_device_engine_set_decider (DhfDeviceEngine *self, DhfEngineDecideFunc decide,
                               gpointer user_data)
{
  g_return_if_fail (DHF_IS_DEVICE_ENGINE (self));
  self->decide = decide;
  self->decide_data = user_data;
  refresh (self);
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
  history_trim (self);
  g_hash_table_remove_all (self->admin_pins);
  g_hash_table_iter_init (&iter, state->pins);
  while (g_hash_table_iter_next (&iter, &key, &value))
    {
      pin_set (self, key, value);
      /* Shown while it is not plugged in, like any pinned device. */
      if (!g_hash_table_contains (self->devices, key))
        {
          g_autoptr (DhfDevice) device = placeholder_device (key);
          DhfEngDevice *record = dhf_eng_device_new (device);

          record->present = FALSE;
          g_hash_table_insert (self->devices, g_strdup (key), record);
        }
    }
  refresh (self);
  return TRUE;
}

void
dhf_device_engine_set_inventory (DhfDeviceEngine *self, GPtrArray *devices)
{
  g_autoptr (GHashTable) seen = g_hash_table_new (g_str_hash, g_str_equal);
  g_autoptr (GPtrArray) gone = g_ptr_array_new ();
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
        }
      else
        {
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

      if (g_hash_table_contains (seen, key))
        continue;
      record->present = FALSE;
      /* Kept while the engine must remember it: a domain holds it, or an
       * admin pinned it. */
      if (is_dom0 (record->owner) && !g_hash_table_contains (self->admin_pins, key))
        g_ptr_array_add (gone, key);
    }
  for (guint i = 0; i < gone->len; i++)
    g_hash_table_remove (self->devices, g_ptr_array_index (gone, i));
  refresh (self);
  queue_reconcile (self);
}

void
dhf_device_engine_domain_changed (DhfDeviceEngine *self, const DhfEngineDomain *domain)
{
  DhfEngDomain *copy;
  const DhfEngDomain *old;

  g_return_if_fail (DHF_IS_DEVICE_ENGINE (self));
  g_return_if_fail (domain != NULL && domain->name != NULL && !is_dom0 (domain->name));

  copy = dhf_eng_domain_new (domain);
  old = find_domain (self, domain->name);
  if (old != NULL && !dhf_eng_domain_differs (old, copy))
    {
      dhf_eng_domain_free (copy);
      return;
    }
  /* A domain that stops loses its live settings. */
  if (!copy->active)
    g_hash_table_remove (self->weights, copy->name);
  g_hash_table_replace (self->domains, copy->name, copy);
  refresh (self);
  queue_reconcile (self);
  check_focus (self);
}

void
dhf_device_engine_domain_removed (DhfDeviceEngine *self, const gchar *name)
{
  GHashTableIter iter;
  gpointer value;

  g_return_if_fail (DHF_IS_DEVICE_ENGINE (self));
  if (name == NULL || !g_hash_table_remove (self->domains, name))
    return;
  g_hash_table_remove (self->weights, name);
  /* Its devices went with its definition. */
  g_hash_table_iter_init (&iter, self->devices);
  while (g_hash_table_iter_next (&iter, NULL, &value))
    {
      DhfEngDevice *record = value;

      if (g_strcmp0 (record->owner, name) == 0)
        {
          record_set_owner (record, DHF_DOM0);
          record_clear_failure (record);
        }
    }
  if (g_strcmp0 (name, self->focus) != 0)
    history_remove (self, name);
  refresh (self);
  queue_reconcile (self);
  check_focus (self);
}

void
dhf_device_engine_synced (DhfDeviceEngine *self)
{
  g_return_if_fail (DHF_IS_DEVICE_ENGINE (self));
  self->synced = TRUE;
  if (self->sync_queued)
    return;
  self->sync_queued = TRUE;
  enqueue (self, request_new (self, REQUEST_SYNC, NULL));
}

void
dhf_device_engine_policy_changed (DhfDeviceEngine *self)
{
  g_return_if_fail (DHF_IS_DEVICE_ENGINE (self));
  refresh (self);
  queue_reconcile (self);
}

/* --- queries ----------------------------------------------------------- */

const gchar *
dhf_device_engine_get_focused (DhfDeviceEngine *self)
{
  g_return_val_if_fail (DHF_IS_DEVICE_ENGINE (self), NULL);
  return self->focus;
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

      if (!is_dom0 (name) && may_focus (self, name) && g_hash_table_add (taken, (gpointer) name))
        g_strv_builder_add (builder, name);
    }
  names = sorted_keys (self->domains);
  for (guint i = 0; i < names->len; i++)
    {
      const gchar *name = g_ptr_array_index (names, i);

      if (may_focus (self, name) && !g_hash_table_contains (taken, name))
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
  ids = sorted_keys (self->devices);
  for (guint i = 0; i < ids->len; i++)
    g_ptr_array_add (
        list, make_status (self, g_hash_table_lookup (self->devices, g_ptr_array_index (ids, i))));
  return list;
}

DhfDeviceStatus *
dhf_device_engine_lookup (DhfDeviceEngine *self, const gchar *id)
{
  const DhfEngDevice *record;

  g_return_val_if_fail (DHF_IS_DEVICE_ENGINE (self), NULL);
  record = id != NULL ? g_hash_table_lookup (self->devices, id) : NULL;
  return record != NULL ? make_status (self, record) : NULL;
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
  Request *req;

  g_return_if_fail (DHF_IS_DEVICE_ENGINE (self));
  g_return_if_fail (target != NULL);
  g_return_if_fail (n_held_keys == 0 || held_keys != NULL);

  task = g_task_new (self, cancellable, callback, user_data);
  g_task_set_source_tag (task, dhf_device_engine_switch_async);
  /* A switch that happened is reported as done, cancelled or not. */
  g_task_set_check_cancellable (task, FALSE);
  if (refuse_unsynced (self, task))
    return;
  if (g_strcmp0 (target, self->focus) == 0 && dhf_device_engine_is_idle (self))
    {
      g_task_return_pointer (task, g_strdup (self->focus), g_free);
      return;
    }
  req = request_new (self, REQUEST_SWITCH, task);
  req->target = g_strdup (target);
  req->requester = g_strdup (requester != NULL ? requester : DHF_DOM0);
  req->keys = n_held_keys > 0 ? g_memdup2 (held_keys, sizeof (guint) * n_held_keys) : NULL;
  req->n_keys = n_held_keys;
  enqueue (self, req);
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
  Request *req;

  g_return_if_fail (DHF_IS_DEVICE_ENGINE (self));
  g_return_if_fail (id != NULL && domain != NULL);

  task = g_task_new (self, cancellable, callback, user_data);
  g_task_set_source_tag (task, dhf_device_engine_assign_async);
  g_task_set_check_cancellable (task, FALSE);
  if (refuse_unsynced (self, task))
    return;
  req = request_new (self, REQUEST_ASSIGN, task);
  req->device_id = g_strdup (id);
  req->target = g_strdup (domain);
  enqueue (self, req);
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
  Request *req;

  g_return_if_fail (DHF_IS_DEVICE_ENGINE (self));
  g_return_if_fail (id != NULL);

  task = g_task_new (self, cancellable, callback, user_data);
  g_task_set_source_tag (task, dhf_device_engine_release_async);
  g_task_set_check_cancellable (task, FALSE);
  if (refuse_unsynced (self, task))
    return;
  req = request_new (self, REQUEST_RELEASE, task);
  req->device_id = g_strdup (id);
  enqueue (self, req);
}

gboolean
dhf_device_engine_release_finish (DhfDeviceEngine *self, GAsyncResult *result, GError **error)
{
  g_return_val_if_fail (g_task_is_valid (result, self), FALSE);
  return g_task_propagate_boolean (G_TASK (result), error);
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
  self->admin_pins = g_hash_table_new_full (g_str_hash, g_str_equal, g_free, g_free);
  self->weights = g_hash_table_new_full (g_str_hash, g_str_equal, g_free, NULL);
  self->shown = g_hash_table_new_full (g_str_hash, g_str_equal, g_free, g_free);
  self->history = g_ptr_array_new_with_free_func (g_free);
  self->focus = g_strdup (DHF_DOM0);
  self->plan = g_hash_table_new (g_str_hash, g_str_equal);
  g_queue_init (&self->queue);
}

static void
dhf_device_engine_dispose (GObject *object)
{
  DhfDeviceEngine *self = DHF_DEVICE_ENGINE (object);
  Request *req;

  if (self->kick != NULL)
    {
      g_source_destroy (self->kick);
      g_clear_pointer (&self->kick, g_source_unref);
    }
  /* Requests with a task keep the engine alive, so these are the
   * engine's own; a running one holds a reference too. */
  while ((req = g_queue_pop_head (&self->queue)) != NULL)
    {
      if (req->task != NULL)
        g_task_return_new_error (req->task, DHF_ERROR, DHF_ERROR_CANCELLED,
                                 "the device engine is shutting down");
      request_unref (req);
    }
  g_clear_pointer (&self->runner, dhf_txn_runner_free);
  g_clear_pointer (&self->writer, dhf_state_writer_free);
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
