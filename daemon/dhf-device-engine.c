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

/* One request. A reference is held by whichever holds it: the queue, the
 * engine while it runs (current), or the parked list while the user is
 * asked about it. */
typedef struct
{
  gint ref_count;
  RequestKind kind;
  DhfDeviceEngine *self; /* borrowed: a task, or a running transaction, keeps it alive */
  GTask *task;           /* NULL for the engine's own */
  gchar *target;         /* SWITCH: as asked; ASSIGN: the domain */
  gchar *requester;      /* SWITCH */
  guint *keys;           /* SWITCH: held keys to release in the old focus */
  guint n_keys;
  gchar *device_id; /* ASSIGN, RELEASE */
  gchar *selector;  /* ASSIGN: the selector of the device it moves, for the pin */

  /* SWITCH: the policy allowed decided_target when it was called, under
   * the policy of decided_generation; or the user was asked (approved). */
  gchar *decided_target;
  guint decided_generation;
  gboolean approved;

  /* While it runs. */
  gchar *resolved;     /* SWITCH, FALLBACK: the domain to focus */
  gboolean dom0_tried; /* FALLBACK: its target failed, dom0 is tried */
  DhfTxn *txn;
  gboolean in_flight; /* txn is on the worker (the engine holds a reference) */

  /* While it waits, queued or parked: the caller's cancellable is watched
   * (a cancelled request leaves at once). */
  gulong cancel_handler;
  /* While the user is asked (parked). */
  GCancellable *ask_cancellable;
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
  guint policy_generation; /* of the decider's answers: set_decider, policy_changed */

  GMainContext *context;
  DhfTxnRunner *runner;   /* NULL once shut down */
  DhfStateWriter *writer; /* NULL without a state file, and once shut down */

  GHashTable *devices;       /* id -> DhfEngDevice */
  GHashTable *domains;       /* name -> DhfEngDomain */
  GHashTable *admin_pins;    /* device id -> DhfAdminPin */
  gchar *focus;              /* "dom0" or a domain */
  const gchar *planning;     /* while a plan is computed: the focus it is for */
  GPtrArray *history;        /* gchar *, most recent first, never the focus */
  gchar *saved_focus;        /* from the state file, for the first sync */
  GHashTable *weights;       /* active domain -> the CPU weight the engine set */
  GHashTable *weight_failed; /* domain -> the weight that could not be set */
  GHashTable *to_read;       /* domains to list_attached before the next reconciliation */
  GHashTable *config_only;   /* domains changed while stopped (CONFIG scope) since they started */

  GHashTable *plan;  /* id -> DhfPlanEntry: where the devices should be now */
  GHashTable *shown; /* id -> the status last announced by "device-changed" */

  gboolean synced;      /* the first synced() came: devices may move */
  gboolean ever_synced; /* a sync has read the domains */
  gboolean shut_down;
  GQueue queue;      /* Request, waiting */
  Request *current;  /* running */
  GPtrArray *parked; /* Request: switches whose user is being asked */
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
static void on_task_cancelled (GCancellable *cancellable, gpointer data);
static void continue_switch (Request *req);
static void start_reconcile (Request *req);
static void fallback_attempt (Request *req);
static gboolean adopt_pin_selectors (DhfDeviceEngine *self);
static void request_unref (Request *req);

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
static void
record_set_owner (DhfEngDevice *record, const gchar *owner)
{
  g_free (record->owner);
  record->owner = g_strdup (owner);
  record->partial = FALSE;
}

static void
record_clear_failure (DhfEngDevice *record)
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

/* Only with a decider: without one nothing is known, so nothing moves. */
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
  GHashTable *plan;

  g_return_val_if_fail (self->decide != NULL, g_hash_table_new (g_str_hash, g_str_equal));
  /* The decider's user may ask which focus the answers are for
   * (dhf_device_engine_get_planning_focus(): @focused rules). */
  self->planning = focus;
  plan = dhf_plan_compute (&input);
  self->planning = NULL;
  return plan;
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
static void
refresh (DhfDeviceEngine *self)
{
  g_autoptr (GPtrArray) changed = g_ptr_array_new_with_free_func (g_free);
  g_autoptr (GPtrArray) ids = NULL;
  g_autoptr (GPtrArray) gone = g_ptr_array_new ();
  GHashTableIter iter;
  gpointer key;

  if (self->decide != NULL)
    {
      g_clear_pointer (&self->plan, g_hash_table_unref);
      self->plan = compute_plan (self, self->focus);
    }

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

/* --- failures ---------------------------------------------------------- */

/* Failed moves are not tried again until something they depend on
 * changes: the device, the domain it was for or is in, the policy, a sync
 * (docs/devices.md). These forget them. */
static void
forget_failures_of_domain (DhfDeviceEngine *self, const gchar *name)
{
  GHashTableIter iter;
  gpointer value;

  g_hash_table_remove (self->weight_failed, name);
  g_hash_table_iter_init (&iter, self->devices);
  while (g_hash_table_iter_next (&iter, NULL, &value))
    {
      DhfEngDevice *record = value;

      if (g_strcmp0 (record->failure_want, name) == 0 || g_strcmp0 (record->owner, name) == 0)
        record_clear_failure (record);
    }
}

static void
forget_all_failures (DhfDeviceEngine *self)
{
  GHashTableIter iter;
  gpointer value;

  g_hash_table_remove_all (self->weight_failed);
  g_hash_table_iter_init (&iter, self->devices);
  while (g_hash_table_iter_next (&iter, NULL, &value))
    record_clear_failure (value);
}

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
    g_hash_table_insert (state->pins, g_strdup (key), dhf_admin_pin_copy (value));
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
  g_free (req->selector);
  g_free (req->decided_target);
  g_free (req->resolved);
  g_clear_pointer (&req->txn, dhf_txn_free);
  g_clear_object (&req->ask_cancellable);
  g_free (req);
}

G_DEFINE_AUTOPTR_CLEANUP_FUNC (Request, request_unref)

static GError *
shutting_down_error (void)
{
  return g_error_new_literal (DHF_ERROR, DHF_ERROR_CANCELLED, "the device engine is shutting down");
}

static GError *
cancelled_error (const Request *req)
{
  return g_error_new_literal (DHF_ERROR, DHF_ERROR_CANCELLED,
                              req->kind == REQUEST_SWITCH ? "the switch was cancelled"
                                                          : "the request was cancelled");
}

static GCancellable *
request_cancellable (const Request *req)
{
  return req->task != NULL ? g_task_get_cancellable (req->task) : NULL;
}

/* While req waits (queued, or parked for the user's answer), its caller's
 * cancellable is watched: a request cancelled then leaves at once, so a
 * caller that asks and cancels over and over fills no queue. The handler
 * holds a reference (it may run on another thread). */
static void
cancel_watch (Request *req)
{
  GCancellable *cancellable = request_cancellable (req);

  if (cancellable == NULL || req->cancel_handler != 0)
    return;
  req->cancel_handler = g_cancellable_connect (cancellable, G_CALLBACK (on_task_cancelled),
                                               request_ref (req), (GDestroyNotify) request_unref);
}

/* On the context's thread, never from the handler itself. */
static void
cancel_unwatch (Request *req)
{
  if (req->cancel_handler == 0)
    return;
  g_cancellable_disconnect (request_cancellable (req), req->cancel_handler);
  req->cancel_handler = 0;
}

/* Answers the request's caller (or logs the engine's own failures). */
static void
complete (Request *req, GError *error /* taken */, const gchar *focused)
{
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
}

static gboolean
run_next (gpointer data)
{
  DhfDeviceEngine *self = data;
  Request *req;

  g_clear_pointer (&self->kick, g_source_unref);
  if (self->current != NULL || g_queue_is_empty (&self->queue))
    return G_SOURCE_REMOVE;
  req = g_queue_pop_head (&self->queue);
  /* Running: it finishes (a transaction is never cut in half). */
  cancel_unwatch (req);
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
static void
enqueue (DhfDeviceEngine *self, Request *req)
{
  if (self->shut_down)
    {
      complete (req, shutting_down_error (), NULL);
      request_unref (req);
      return;
    }
  g_queue_push_tail (&self->queue, req);
  cancel_watch (req);
  kick (self);
}

static void
queue_reconcile (DhfDeviceEngine *self)
{
  if (!self->synced || self->shut_down || self->reconcile_queued)
    return;
  self->reconcile_queued = TRUE;
  enqueue (self, request_new (self, REQUEST_RECONCILE, NULL));
}

/* The focused domain stopped (or went away): the engine decides the next
 * focus itself. A fallback always moves the focus (docs/devices.md), so
 * this queues another one only after the new focus stops in turn. */
static void
check_focus (DhfDeviceEngine *self)
{
  const DhfEngDomain *domain;

  if (!self->ever_synced || self->shut_down || self->fallback_queued || is_dom0 (self->focus))
    return;
  domain = find_domain (self, self->focus);
  if (domain != NULL && domain->running && domain->environment)
    return;
  self->fallback_queued = TRUE;
  enqueue (self, request_new (self, REQUEST_FALLBACK, NULL));
}

/* Nothing runs now: the next request starts, or the engine is idle. */
static void
run_on (DhfDeviceEngine *self)
{
  if (self->current == NULL && g_queue_is_empty (&self->queue))
    g_signal_emit (self, signals[SIGNAL_IDLE], 0);
  else
    kick (self);
}

/* The running request is done. */
static void
finish (Request *req, GError *error /* taken */, const gchar *focused)
{
  /* Answering may drop the last reference the caller had. */
  g_autoptr (DhfDeviceEngine) self = g_object_ref (req->self);

  g_assert (self->current == req);
  self->current = NULL;
  check_focus (self);
  complete (req, error, focused);
  request_unref (req);
  run_on (self);
}

/* The engine keeps a reference until the worker's result is applied. */
static void
txn_run (Request *req, DhfTxnDoneFunc done)
{
  DhfDeviceEngine *self = req->self;

  if (self->runner == NULL)
    {
      finish (req, shutting_down_error (), NULL);
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
          record_set_owner (record,
                            find_domain (self, step->domain) != NULL ? step->domain : DHF_DOM0);
        else if (g_strcmp0 (record->owner, step->domain) == 0)
          record_set_owner (record, DHF_DOM0);
        record_clear_failure (record);
        break;
      case DHF_STEP_SET_WEIGHT:
        g_hash_table_remove (self->weight_failed, step->domain);
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
static void
note_failure (DhfDeviceEngine *self, const DhfTxnUnit *unit)
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
static void
apply_attached (DhfDeviceEngine *self, GHashTable *attached, gboolean whole)
{
  g_autoptr (GHashTable) by_alias = g_hash_table_new_full (g_str_hash, g_str_equal, g_free, NULL);
  g_autoptr (GHashTable) placed = g_hash_table_new (g_direct_hash, g_direct_equal);
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

          if (find_domain (self, domain) == NULL || aliases == NULL)
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
                      || (!is_dom0 (record->owner) && g_strcmp0 (record->owner, domain) != 0)))
                {
                  g_message ("%s keeps %s in its persistent definition while %s has it", domain,
                             record->device->id, record->owner);
                  continue;
                }
              record_set_owner (record, domain);
              record->partial = pass == 1
                                || (read->config != NULL
                                    && !strv_has ((const gchar *const *) read->config, aliases[k]));
              g_hash_table_add (placed, record);
            }
        }
    }
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

/* History entries naming domains that do not exist (any more): a sync has
 * every domain, so what it does not have is gone. */
static gboolean
history_prune (DhfDeviceEngine *self)
{
  gboolean pruned = FALSE;

  for (guint i = self->history->len; i-- > 0;)
    {
      const gchar *name = g_ptr_array_index (self->history, i);

      if (!is_dom0 (name) && find_domain (self, name) == NULL)
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
  Request *req = data;
  DhfDeviceEngine *self = req->self;
  gboolean first = !self->ever_synced;

  req->in_flight = FALSE;
  apply_attached (self, txn->attached, TRUE);
  self->ever_synced = TRUE;
  if (adopt_pin_selectors (self))
    save_state (self);
  /* Whatever weights were, they are set again. */
  g_hash_table_remove_all (self->weights);
  if (history_prune (self))
    save_state (self);
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
  /* It reads them all; and a reconnect is a fresh start for failed moves. */
  g_hash_table_remove_all (self->to_read);
  forget_all_failures (self);
  req->txn = dhf_txn_new ();
  for (guint i = 0; i < names->len; i++)
    g_ptr_array_add (req->txn->reads, g_strdup (g_ptr_array_index (names, i)));
  txn_run (req, sync_done);
}

static void
read_done (DhfTxn *txn, gpointer data)
{
  Request *req = data;
  DhfDeviceEngine *self = req->self;

  req->in_flight = FALSE;
  apply_attached (self, txn->attached, FALSE);
  g_clear_pointer (&req->txn, dhf_txn_free);
  start_reconcile (req);
  g_object_unref (self);
}

static void
reconcile_done (DhfTxn *txn, gpointer data)
{
  Request *req = data;
  DhfDeviceEngine *self = req->self;

  req->in_flight = FALSE;
  for (guint i = 0; i < txn->units->len; i++)
    {
      const DhfTxnUnit *unit = g_ptr_array_index (txn->units, i);

      apply_unit (self, unit);
      if (unit->ok)
        continue;
      g_warning ("%s", unit->error->message);
      apply_attached (self, unit->attached, FALSE);
      note_failure (self, unit);
    }
  g_clear_pointer (&req->txn, dhf_txn_free);
  refresh (self);
  finish (req, NULL, NULL);
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
static void
add_moves (DhfDeviceEngine *self, GHashTable *plan, gboolean follow_only, gboolean skip_failed,
           const gchar *label, DhfTxn *txn)
{
  g_autoptr (GPtrArray) ids = sorted_keys (self->devices);
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
        record_set_owner (record, after->want);
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
  g_autoptr (GPtrArray) names = sorted_keys (self->domains);

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

          if (focused != (pass == 0) || !domain_active (self, name)
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
static void
start_reconcile (Request *req)
{
  DhfDeviceEngine *self = req->self;

  if (req->kind == REQUEST_RECONCILE)
    self->reconcile_queued = FALSE;
  /* No decider, no answers: nothing moves (it is not "deny all"). */
  if (self->decide == NULL)
    {
      finish (req, NULL, NULL);
      return;
    }
  req->txn = dhf_txn_new ();
  if (g_hash_table_size (self->to_read) > 0)
    {
      g_autoptr (GPtrArray) names = sorted_keys (self->to_read);

      for (guint i = 0; i < names->len; i++)
        g_ptr_array_add (req->txn->reads, g_strdup (g_ptr_array_index (names, i)));
      g_hash_table_remove_all (self->to_read);
      txn_run (req, read_done);
      return;
    }

  refresh (self);
  add_moves (self, self->plan, FALSE, TRUE, NULL, req->txn);
  add_weights (self, req->txn);
  if (req->txn->units->len == 0)
    {
      g_clear_pointer (&req->txn, dhf_txn_free);
      finish (req, NULL, NULL);
      return;
    }
  txn_run (req, reconcile_done);
}

/* --- targets ----------------------------------------------------------- */

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

/* A switch a guest asks for is decided by the policy before anything is
 * checked or told about its target: whether it exists, runs, is an
 * environment or has the focus, and where @next leads, are for those the
 * policy lets switch there. dom0 (the user) is told the details. */
static gboolean
from_guest (const Request *req)
{
  return !is_dom0 (req->requester);
}

/* A guest's refusal says the same whatever the target, and names no rule
 * (which rule matched may depend on the target). */
static GError *
guest_refused (const Request *req, const gchar *why)
{
  return g_error_new (DHF_ERROR, DHF_ERROR_NOT_AUTHORIZED,
                      "%s may not switch the display there: %s", req->requester, why);
}

/* The switch policy for req's requester -> target: ALLOW; ASK with *rule;
 * DENY with error set. */
static DhfPolicyAction
decide_switch (DhfDeviceEngine *self, const Request *req, const gchar *target, gchar **rule,
               GError **error)
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

static void
ask_stop (Request *req)
{
  DhfDeviceEngine *self = req->self;

  req->asking = FALSE;
  cancel_unwatch (req);
  g_ptr_array_remove_fast (self->parked, req);
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
    {
      /* Checked again when it runs: the answer may have taken a while. */
      req->approved = TRUE;
      enqueue (self, req);
      return;
    }
  complete (req,
            from_guest (req) ? guest_refused (req, "it was refused when asked")
                             : g_error_new (DHF_ERROR, DHF_ERROR_NOT_AUTHORIZED,
                                            "switching from %s to %s was refused when asked",
                                            req->requester, req->resolved),
            NULL);
  request_unref (req);
}

/* The caller cancelled a request that waits: parked, its question is
 * cancelled too; queued, it leaves the queue. One that runs by now
 * finishes. */
static gboolean
cancelled_idle (gpointer data)
{
  Request *req = data;
  /* Answering may drop the last reference the caller had. */
  g_autoptr (DhfDeviceEngine) self = g_object_ref (req->self);

  if (req->asking)
    {
      ask_stop (req);
      g_cancellable_cancel (req->ask_cancellable);
      complete (req, cancelled_error (req), NULL);
      /* The parked reference. */
      request_unref (req);
      return G_SOURCE_REMOVE;
    }
  if (!g_queue_remove (&self->queue, req))
    return G_SOURCE_REMOVE;
  cancel_unwatch (req);
  complete (req, cancelled_error (req), NULL);
  /* The queue's reference. */
  request_unref (req);
  run_on (self);
  return G_SOURCE_REMOVE;
}

/* Any thread: the caller cancelled while the request waited. */
static void
on_task_cancelled (GCancellable *cancellable, gpointer data)
{
  Request *req = data;
  g_autoptr (GSource) source = g_idle_source_new ();

  g_source_set_priority (source, G_PRIORITY_DEFAULT);
  g_source_set_callback (source, cancelled_idle, request_ref (req), (GDestroyNotify) request_unref);
  g_source_set_static_name (source, "[dhf] device engine request cancelled");
  g_source_attach (source, req->self->context);
}

/* Takes req (not running) and asks about req->resolved. */
static void
park_and_ask (Request *req, const gchar *rule)
{
  DhfDeviceEngine *self = req->self;

  if (self->ask == NULL)
    {
      complete (req,
                from_guest (req)
                    ? guest_refused (req, "it needs an answer and no one can be asked")
                    : g_error_new (DHF_ERROR, DHF_ERROR_NOT_AUTHORIZED,
                                   "switching from %s to %s needs an answer (%s) and no one can "
                                   "be asked",
                                   req->requester, req->resolved, rule != NULL ? rule : "policy"),
                NULL);
      request_unref (req);
      return;
    }
  req->asking = TRUE;
  g_clear_object (&req->ask_cancellable);
  req->ask_cancellable = g_cancellable_new ();
  g_ptr_array_add (self->parked, req);
  cancel_watch (req);
  self->ask (req->requester, req->resolved, rule, req->ask_cancellable, ask_done, req,
             self->ask_data);
}

/* When switch_async is called: checks what can be checked now and asks
 * the user at once when a rule says so. TRUE when it took req (answered
 * or parked); FALSE: queue it. */
static gboolean
switch_check_now (DhfDeviceEngine *self, Request *req)
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
      complete (req, g_steal_pointer (&error), NULL);
      request_unref (req);
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
            complete (req, g_steal_pointer (&error), NULL);
            request_unref (req);
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
        complete (req, g_steal_pointer (&error), NULL);
        request_unref (req);
        return TRUE;
    }
}

/* --- switching --------------------------------------------------------- */

static void
switch_done (DhfTxn *txn, gpointer data)
{
  Request *req = data;
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
  apply_unit (self, unit);
  /* Whatever happened, a reconciliation looks at everything the switch
   * did not move (pins a rule on @focused gives, weights). */
  queue_reconcile (self);
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

/* The switch as one transaction: detaches, attaches, the new focus'
 * weight, after a release of the held modifiers in the old focus, in a
 * unit of its own (best-effort). The old focus' weight is the
 * reconciliation's that follows: best-effort too, a domain that cannot
 * take it must not undo the user's switch. */
static void
continue_switch (Request *req)
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
      finish (req,
              g_error_new (DHF_ERROR, DHF_ERROR_NOT_AUTHORIZED,
                           "switching to %s cannot be planned: no policy is in force",
                           req->resolved),
              NULL);
      return;
    }
  refresh (self);
  plan = compute_plan (self, req->resolved);
  label = g_strdup_printf ("switching to %s", req->resolved);
  unit = dhf_txn_unit_new (label);
  req->txn = dhf_txn_new ();

  ids = sorted_keys (self->devices);
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

  if (req->n_keys > 0 && !is_dom0 (old) && domain_active (self, old))
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

  if (self->focused_weight != 0 && !is_dom0 (req->resolved) && domain_active (self, req->resolved))
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
  txn_run (req, switch_done);
}

/* The policy (or the user) let it: the target is checked, then it runs. */
static void
switch_allowed (Request *req)
{
  DhfDeviceEngine *self = req->self;
  g_autoptr (GError) error = NULL;

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
  continue_switch (req);
}

static void
start_switch (Request *req)
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
      finish (req, g_steal_pointer (&error), NULL);
      return;
    }
  /* Checked again: the state may have changed since it was called. For
   * dom0 the target first (switch_check_now() says why). */
  if (!from_guest (req))
    {
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
        run_on (self);
        break;
      case DHF_POLICY_ACTION_DENY:
      default:
        finish (req, g_steal_pointer (&error), NULL);
        break;
    }
}

/* --- falling back ------------------------------------------------------ */

static void
fallback_finish (Request *req)
{
  DhfDeviceEngine *self = req->self;
  g_autofree gchar *previous = g_strdup (self->focus);

  set_focus (self, req->resolved, previous);
  save_state (self);
  refresh (self);
  queue_reconcile (self);
  if (g_strcmp0 (previous, self->focus) != 0)
    g_signal_emit (self, signals[SIGNAL_FOCUS_CHANGED], 0, self->focus, previous);
  finish (req, NULL, self->focus);
}

/* A fallback ends, whatever fails: the user must not be left on a domain
 * that stopped. Devices that could not move keep their problem; when the
 * target itself cannot take them, dom0 is tried once, and the focus goes
 * there in any case. Weights are the reconciliation's that follows. */
static void
fallback_done (DhfTxn *txn, gpointer data)
{
  Request *req = data;
  DhfDeviceEngine *self = req->self;
  gboolean target_failed = FALSE;

  req->in_flight = FALSE;
  for (guint i = 0; i < txn->units->len; i++)
    {
      const DhfTxnUnit *unit = g_ptr_array_index (txn->units, i);
      const DhfStep *failed;

      apply_unit (self, unit);
      if (unit->ok)
        continue;
      g_warning ("%s", unit->error->message);
      apply_attached (self, unit->attached, FALSE);
      note_failure (self, unit);
      failed = dhf_txn_unit_failed_step (unit);
      if (failed != NULL && failed->kind == DHF_STEP_ATTACH
          && g_strcmp0 (failed->domain, req->resolved) == 0)
        target_failed = TRUE;
    }
  g_clear_pointer (&req->txn, dhf_txn_free);
  refresh (self);
  if (target_failed && !is_dom0 (req->resolved) && !req->dom0_tried)
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
fallback_attempt (Request *req)
{
  DhfDeviceEngine *self = req->self;
  g_autofree gchar *label = g_strdup_printf ("falling back to %s", req->resolved);

  req->txn = dhf_txn_new ();
  /* Without a decider nothing moves; the focus does. */
  if (self->decide != NULL)
    {
      g_autoptr (GHashTable) plan = NULL;

      refresh (self);
      plan = compute_plan (self, req->resolved);
      add_moves (self, plan, TRUE, FALSE, label, req->txn);
    }
  if (req->txn->units->len == 0)
    {
      g_clear_pointer (&req->txn, dhf_txn_free);
      fallback_finish (req);
      return;
    }
  txn_run (req, fallback_done);
}

static void
start_fallback (Request *req)
{
  DhfDeviceEngine *self = req->self;

  self->fallback_queued = FALSE;
  if (is_dom0 (self->focus) || may_focus (self, self->focus))
    {
      finish (req, NULL, self->focus);
      return;
    }
  req->resolved = g_strdup (fallback_target (self, self->focus));
  g_message ("%s lost the focus; it goes to %s", self->focus, req->resolved);
  fallback_attempt (req);
}

/* --- assign and release ------------------------------------------------ */

/* Takes pin (NULL: drops the pin of id). */
static void
pin_set (DhfDeviceEngine *self, const gchar *id, DhfAdminPin *pin)
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

  pin_set (self, id, pin != NULL ? dhf_admin_pin_copy (pin) : NULL);
  plan = compute_plan (self, self->focus);
  pin_set (self, id, before);
  return plan;
}

/* A pin loaded from a state file written before selectors were kept is
 * for the device at its id when the engine first sees one there (at the
 * first sync, or when it is plugged in later): from then on it holds for
 * that device only. TRUE when one was taken (the state is to be saved). */
static gboolean
adopt_pin_selectors (DhfDeviceEngine *self)
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
  Request *req = data;
  DhfDeviceEngine *self = req->self;
  const DhfTxnUnit *unit = g_ptr_array_index (txn->units, 0);
  DhfEngDevice *record;

  req->in_flight = FALSE;
  /* The pin changes what the rest should be (its IOMMU group), and a
   * failure may have left devices elsewhere. */
  queue_reconcile (self);
  if (!unit->ok)
    {
      /* The pin stays as it was. */
      apply_unit (self, unit);
      apply_attached (self, unit->attached, FALSE);
      refresh (self);
      finish (req, g_error_copy (unit->error), NULL);
      g_object_unref (self);
      return;
    }
  apply_unit (self, unit);
  pin_set (self, req->device_id,
           req->kind == REQUEST_ASSIGN ? dhf_admin_pin_new (req->target, req->selector) : NULL);
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
  txn_run (req, pin_done);
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
refuse_undecided (Request *req)
{
  DhfEngDevice *record;

  if (req->self->decide == NULL)
    {
      finish (req,
              g_error_new (DHF_ERROR, DHF_ERROR_NOT_AUTHORIZED,
                           "%s cannot be moved: no policy is in force", req->device_id),
              NULL);
      return TRUE;
    }
  /* Asked for explicitly: a move that failed before is tried again. */
  record = g_hash_table_lookup (req->self->devices, req->device_id);
  if (record != NULL)
    record_clear_failure (record);
  return FALSE;
}

static void
start_assign (Request *req)
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
  refresh (self);
  if (!check_assign (self, req->device_id, req->target, &error))
    {
      finish (req, g_steal_pointer (&error), NULL);
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

  if (refuse_undecided (req))
    return;
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
  GCancellable *cancellable = request_cancellable (req);

  /* Cancelled before it started: nothing of it has run. */
  if (cancellable != NULL && g_cancellable_is_cancelled (cancellable))
    {
      finish (req, cancelled_error (req), NULL);
      return;
    }
  switch (req->kind)
    {
      case REQUEST_SYNC:
        start_sync (req);
        break;
      case REQUEST_RECONCILE:
        start_reconcile (req);
        break;
      case REQUEST_SWITCH:
        start_switch (req);
        break;
      case REQUEST_FALLBACK:
        start_fallback (req);
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
  self->policy_generation++;
  /* Without one the last plan is kept for the status; nothing moves. */
  if (decide == NULL)
    return;
  forget_all_failures (self);
  refresh (self);
  queue_reconcile (self);
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
      const DhfAdminPin *pin = value;

      pin_set (self, key, dhf_admin_pin_copy (pin));
      /* Shown while it is not plugged in, like any pinned device. */
      if (!g_hash_table_contains (self->devices, key))
        {
          g_autoptr (DhfDevice) device = placeholder_device (key, pin->selector);
          DhfEngDevice *record = dhf_eng_device_new (device);

          record->present = FALSE;
          g_hash_table_insert (self->devices, g_strdup (key), record);
        }
    }
  refresh (self);
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
        record_clear_failure (record);
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
            record_clear_failure (record);
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
      if (is_dom0 (record->owner) && pin == NULL)
        g_ptr_array_add (gone, key);
      /* Another device was there last: what is missing is the pin's own. */
      else if (is_dom0 (record->owner) && pin != NULL && pin->selector != NULL
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
  if (self->ever_synced && adopt_pin_selectors (self))
    save_state (self);
  /* A rescan that finds what the engine knows changes nothing: it must
   * not retry anything (a failed PCI attach makes uevents, hence a
   * rescan). */
  if (!changed && gone->len == 0)
    return;
  refresh (self);
  queue_reconcile (self);
}

void
dhf_device_engine_domain_changed (DhfDeviceEngine *self, const DhfEngineDomain *domain)
{
  DhfEngDomain *copy;
  const DhfEngDomain *old;
  gboolean started_or_stopped;

  g_return_if_fail (DHF_IS_DEVICE_ENGINE (self));
  g_return_if_fail (domain != NULL && domain->name != NULL && !is_dom0 (domain->name));

  copy = dhf_eng_domain_new (domain);
  old = find_domain (self, domain->name);
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
  forget_failures_of_domain (self, copy->name);
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
  if (name == NULL || !g_hash_table_contains (self->domains, name))
    return;
  forget_failures_of_domain (self, name);
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
        record_set_owner (record, DHF_DOM0);
    }
  /* Nothing to go back to. Its admin pins stay (docs/devices.md). */
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
  if (self->shut_down)
    return;
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
  self->policy_generation++;
  forget_all_failures (self);
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
  if (self->shut_down)
    {
      g_task_return_error (task, shutting_down_error ());
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
  /* Only dom0's: a guest's is decided by the policy first. */
  if (is_dom0 (requester != NULL ? requester : DHF_DOM0) && g_strcmp0 (target, self->focus) == 0
      && dhf_device_engine_is_idle (self))
    {
      g_task_return_pointer (task, g_strdup (self->focus), g_free);
      return;
    }
  req = request_new (self, REQUEST_SWITCH, task);
  req->target = g_strdup (target);
  req->requester = g_strdup (requester != NULL ? requester : DHF_DOM0);
  req->keys = n_held_keys > 0 ? g_memdup2 (held_keys, sizeof (guint) * n_held_keys) : NULL;
  req->n_keys = n_held_keys;
  if (!switch_check_now (self, req))
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
/* --- shutting down ----------------------------------------------------- */

static void
shutdown_now (DhfDeviceEngine *self)
{
  Request *req;

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
      complete (req, shutting_down_error (), NULL);
      request_unref (req);
      /* The reference the transaction held. */
      g_object_unref (self);
    }
  while ((req = g_queue_pop_head (&self->queue)) != NULL)
    {
      cancel_unwatch (req);
      complete (req, shutting_down_error (), NULL);
      request_unref (req);
    }
  while (self->parked->len > 0)
    {
      req = g_ptr_array_index (self->parked, self->parked->len - 1);
      ask_stop (req);
      g_cancellable_cancel (req->ask_cancellable);
      complete (req, shutting_down_error (), NULL);
      request_unref (req);
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
