/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

#include "dhf-device-engine.h"

G_BEGIN_DECLS

/* What the device engine's files share (docs/devices.md): the engine's
 * records (dhf-device-engine.c), the plan (dhf-device-plan.c: where every
 * device should be and the steps that get it there), the transactions
 * (dhf-device-txn.c: the steps run on the worker thread, undone on
 * failure) and the state file (dhf-device-state.c). */

#define DHF_DOM0 "dom0"

/* --- the engine's records --------------------------------------------- */

/* A domain as the engine keeps it (a deep copy of DhfEngineDomain). */
typedef struct
{
  gchar *name;
  gboolean active;
  gboolean running;
  gboolean environment;
  GPtrArray *wishes; /* DhfManifestDevice, owned copies; never NULL */
} DhfEngDomain;

DhfEngDomain *dhf_eng_domain_new (const DhfEngineDomain *domain);
void dhf_eng_domain_free (DhfEngDomain *domain);
/* TRUE when a and b differ in anything the plan looks at. */
gboolean dhf_eng_domain_differs (const DhfEngDomain *a, const DhfEngDomain *b);

/* One device the engine knows: in the inventory now, or not present but
 * still attached somewhere or pinned by an admin. */
typedef struct
{
  DhfDevice *device;
  gboolean present;
  gchar *owner;     /* where it is: "dom0" or a domain */
  gboolean partial; /* owner holds it in one of its scopes only (live or persistent) */
  /* The last move that failed: why, and the owner it was for. Until an
   * input concerning the device or that domain changes, reconciliation
   * does not try that move again. */
  gchar *failure;
  gchar *failure_want;
} DhfEngDevice;

DhfEngDevice *dhf_eng_device_new (const DhfDevice *device);
void dhf_eng_device_free (DhfEngDevice *record);

/* An admin pin (Assign). It is kept by device id, but the id of a USB
 * device is its port: the pin holds for the device it was made for (its
 * selector), not for whatever is plugged into that port later. */
typedef struct
{
  gchar *domain;
  gchar *selector; /* NULL: not known yet (a state file from before selectors were kept) */
} DhfAdminPin;

DhfAdminPin *dhf_admin_pin_new (const gchar *domain, const gchar *selector);
DhfAdminPin *dhf_admin_pin_copy (const DhfAdminPin *pin);
void dhf_admin_pin_free (DhfAdminPin *pin);
G_DEFINE_AUTOPTR_CLEANUP_FUNC (DhfAdminPin, dhf_admin_pin_free)
/* Whether the pin is for this device: same selector (or not known yet). */
gboolean dhf_admin_pin_matches (const DhfAdminPin *pin, const DhfDevice *device);

/* --- the plan ---------------------------------------------------------- */

typedef struct
{
  GHashTable *devices;        /* id -> DhfEngDevice */
  GHashTable *domains;        /* name -> DhfEngDomain */
  GHashTable *admin_pins;     /* device id -> DhfAdminPin */
  const gchar *focus;         /* "dom0" or a domain name */
  DhfEngineDecideFunc decide; /* never NULL: without a decider nothing is planned */
  gpointer decide_data;
} DhfPlanInput;

/* Where one device should be, and why. */
typedef struct
{
  gchar *want; /* "dom0" or a domain */
  DhfDeviceMode mode;
  gchar *holder; /* PINNED: the domain of the claim that won; else NULL */
  gchar *origin; /* "admin", "policy FILE:LINE", "manifest", "focus", "none" */
  gchar *problem;
} DhfPlanEntry;

void dhf_plan_entry_free (DhfPlanEntry *entry);

/* Every device of input->devices: id -> DhfPlanEntry. Asks the decider
 * once per (device, domain). */
GHashTable *dhf_plan_compute (const DhfPlanInput *input);

typedef enum
{
  DHF_STEP_ATTACH,
  DHF_STEP_DETACH,
  DHF_STEP_SET_WEIGHT,
  DHF_STEP_RELEASE_KEYS,
} DhfStepKind;

/* One hypervisor operation and how it is undone. */
typedef struct
{
  DhfStepKind kind;
  gchar *domain;
  gchar *device_id; /* ATTACH, DETACH */
  gchar *xml;       /* ATTACH, DETACH: NULL when the device has no XML */
  DhfDeviceScope scope;
  guint weight;      /* SET_WEIGHT */
  guint undo_weight; /* SET_WEIGHT: what an undo puts back */
  guint *keys;       /* RELEASE_KEYS: not undone */
  guint n_keys;
} DhfStep;

DhfStep *dhf_step_new_device (DhfStepKind kind, const DhfDevice *device, const gchar *domain,
                              DhfDeviceScope scope);
DhfStep *dhf_step_new_weight (const gchar *domain, guint weight, guint undo_weight);
DhfStep *dhf_step_new_release_keys (const gchar *domain, const guint *keys, guint n_keys);
void dhf_step_free (DhfStep *step);
/* "attaching input-keyboard to work": what error messages say. */
gchar *dhf_step_describe (const DhfStep *step);

/* LIVE|CONFIG while the domain is active, CONFIG alone otherwise. */
DhfDeviceScope dhf_plan_scope (const DhfEngDomain *domain);
/* Appends the steps that move record's device from its owner to to:
 * DETACH from the owner (unless dom0 or no longer defined), then ATTACH
 * to to (unless dom0); a device the owner holds in one scope only and
 * that stays there is attached again (the ops add the missing scope).
 * detaches and attaches may be the same array. */
void dhf_plan_move_steps (const DhfEngDevice *record, const gchar *to, GHashTable *domains,
                          GPtrArray *detaches, GPtrArray *attaches);
/* Whether the device is not (wholly) where to wants it. */
gboolean dhf_plan_needs_move (const DhfEngDevice *record, const gchar *to);

/* The key codes a switch away from domain releases there, given the keys
 * held when it was asked for and the steps that take devices out of
 * domain in the same switch (devices: id -> DhfEngDevice); NULL when it
 * releases none. See docs/devices.md: none when a keyboard (an input of
 * type keyboard, or any USB device) leaves domain, else only the
 * modifiers among keys, at most DHF_PLAN_MAX_RELEASED_KEYS. */
#define DHF_PLAN_MAX_RELEASED_KEYS 16
GArray *dhf_plan_released_keys (const gchar *domain, const guint *keys, guint n_keys,
                                const GPtrArray *steps, GHashTable *devices);

/* --- transactions ------------------------------------------------------ */

/* Steps that succeed or fail together: on a failure the done ones are
 * undone in reverse. A transaction's units run in order; one failing does
 * not stop the next. */
/* What list_attached (and list_attached_config) read of one domain. */
typedef struct
{
  gboolean active;
  GStrv aliases; /* live definition when active, else the persistent one */
  GStrv config;  /* active: the persistent definition's; NULL when not read */
} DhfAttached;

void dhf_attached_free (DhfAttached *attached);

typedef struct
{
  gchar *label;     /* context for its error ("switching to work"), or NULL */
  GPtrArray *steps; /* DhfStep */
  /* Results, written by the worker. */
  gboolean ok;
  gboolean cancelled;      /* stopped before a step, at shutdown: nothing undone */
  gint failed_step;        /* the index of the step that failed, -1 */
  gint n_done;             /* steps that ran and succeeded */
  GHashTable *undo_failed; /* indexes (GINT_TO_POINTER + 1) of steps whose undo failed */
  GError *error;           /* the failing step's error with context, and failed undos */
  GHashTable *attached;    /* after a failure: domain -> DhfAttached, read back from the
                            * domains it touched (applied in unit order) */
} DhfTxnUnit;

DhfTxnUnit *dhf_txn_unit_new (const gchar *label);
void dhf_txn_unit_free (DhfTxnUnit *unit);
/* The step that failed, or NULL. */
const DhfStep *dhf_txn_unit_failed_step (const DhfTxnUnit *unit);

typedef struct
{
  GPtrArray *reads;     /* domain names to list_attached before the units */
  GPtrArray *units;     /* DhfTxnUnit */
  GHashTable *attached; /* result of reads: domain -> DhfAttached */
} DhfTxn;

DhfTxn *dhf_txn_new (void);
void dhf_txn_free (DhfTxn *txn);
G_DEFINE_AUTOPTR_CLEANUP_FUNC (DhfTxn, dhf_txn_free)
/* Whether a step or a read of txn concerns domain. */
gboolean dhf_txn_touches (const DhfTxn *txn, const gchar *domain);

/* Runs txn synchronously with ops (on the calling thread). When *stop
 * (may be NULL) becomes non-zero, no further read or step is started:
 * the unit running is marked cancelled and the rest are not run. */
void dhf_txn_execute (DhfTxn *txn, const DhfDeviceOps *ops, gpointer ops_data, const gint *stop);

/* One worker thread that runs transactions in order and hands each back
 * to context through an idle source. */
typedef struct _DhfTxnRunner DhfTxnRunner;
typedef void (*DhfTxnDoneFunc) (DhfTxn *txn, gpointer user_data);

DhfTxnRunner *dhf_txn_runner_new (const DhfDeviceOps *ops, gpointer ops_data,
                                  GMainContext *context);
/* Stops it: the transaction running stops before its next step and is
 * waited for (at most the one operation running); transactions queued
 * are not run, and results not handed back yet are dropped (their done
 * is never called). On the context's thread. */
void dhf_txn_runner_free (DhfTxnRunner *runner);
/* txn stays the caller's; done(txn, user_data) runs on the context. */
void dhf_txn_runner_run (DhfTxnRunner *runner, DhfTxn *txn, DhfTxnDoneFunc done,
                         gpointer user_data);

/* --- the state file ---------------------------------------------------- */

#define DHF_DEVICE_STATE_VERSION  1
#define DHF_DEVICE_STATE_MAX_SIZE (1024 * 1024)

typedef struct
{
  gchar *focused;     /* NULL when none was saved */
  GPtrArray *history; /* gchar *, most recent first */
  GHashTable *pins;   /* device id -> DhfAdminPin */
} DhfDeviceState;

DhfDeviceState *dhf_device_state_new (void);
void dhf_device_state_free (DhfDeviceState *state);
G_DEFINE_AUTOPTR_CLEANUP_FUNC (DhfDeviceState, dhf_device_state_free)

/* Parses the file's text: NULL with an error when it is not a state file
 * of this version at all; invalid entries are skipped with a warning. */
DhfDeviceState *dhf_device_state_parse (const gchar *text, gsize length, GError **error);
gchar *dhf_device_state_to_json (const DhfDeviceState *state);
/* A missing file is an empty state. A corrupt one is renamed
 * path.corrupt with a warning and is an empty state too. NULL with error
 * only when the file cannot be read. */
DhfDeviceState *dhf_device_state_load (const gchar *path, GError **error);
/* Atomically and durably, mode 0600, creating the directory (0700). */
gboolean dhf_device_state_write (const gchar *path, const gchar *json, GError **error);

/* Writes the state on a thread of its own, newest text only. */
typedef struct _DhfStateWriter DhfStateWriter;

DhfStateWriter *dhf_state_writer_new (const gchar *path);
void dhf_state_writer_save (DhfStateWriter *writer, gchar *json /* taken */);
/* Writes what is pending first. */
void dhf_state_writer_free (DhfStateWriter *writer);

/* Device ids ([A-Za-z0-9:._-], 1 to 64 bytes), domain names (printable
 * UTF-8, 1 to 256 bytes) and device selectors (printable ASCII without
 * spaces, 1 to 256 bytes) as the state file may hold them. */
gboolean dhf_device_id_is_valid (const gchar *id);
gboolean dhf_domain_name_is_valid (const gchar *name);
gboolean dhf_device_selector_is_valid (const gchar *selector);

/* --- the engine itself ------------------------------------------------ */

/* Shared by dhf-device-engine.c and the files that hold the rest of it:
 * dhf-device-queue.c, -reconcile.c, -switch.c and -assign.c. */

typedef enum
{
  DHF_REQUEST_SYNC,
  DHF_REQUEST_RECONCILE,
  DHF_REQUEST_SWITCH,
  DHF_REQUEST_FALLBACK,
  DHF_REQUEST_ASSIGN,
  DHF_REQUEST_RELEASE,
} DhfEngineRequestKind;

/* One request. A reference is held by whichever holds it: the queue, the
 * engine while it runs (current), or the parked list while the user is
 * asked about it. */
typedef struct
{
  gint ref_count;
  DhfEngineRequestKind kind;
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
} DhfEngineRequest;

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
  GQueue queue;              /* DhfEngineRequest, waiting */
  DhfEngineRequest *current; /* running */
  GPtrArray *parked;         /* DhfEngineRequest: switches whose user is being asked */
  gboolean reconcile_queued;
  gboolean sync_queued;
  gboolean fallback_queued;
  GSource *kick;
};

/* dhf-device-engine.c: the records, and the signals. */
void dhf_engine_record_set_owner (DhfEngDevice *record, const gchar *owner);
void dhf_engine_record_clear_failure (DhfEngDevice *record);
gboolean dhf_engine_is_dom0 (const gchar *name);
const DhfEngDomain *dhf_engine_find_domain (DhfDeviceEngine *self, const gchar *name);
gboolean dhf_engine_domain_active (DhfDeviceEngine *self, const gchar *name);
gint dhf_engine_compare_strings (gconstpointer a, gconstpointer b);
GPtrArray *dhf_engine_sorted_keys (GHashTable *table);
void dhf_engine_emit_focus_changed (DhfDeviceEngine *self, const gchar *focused,
                                    const gchar *previous);
void dhf_engine_emit_device_changed (DhfDeviceEngine *self, const gchar *id);
void dhf_engine_emit_idle (DhfDeviceEngine *self);

/* dhf-device-queue.c: failures, focus and history, the queue, applying results. */
void dhf_engine_forget_failures_of_domain (DhfDeviceEngine *self, const gchar *name);
void dhf_engine_forget_all_failures (DhfDeviceEngine *self);
void dhf_engine_history_remove (DhfDeviceEngine *self, const gchar *name);
void dhf_engine_history_trim (DhfDeviceEngine *self);
void dhf_engine_set_focus (DhfDeviceEngine *self, const gchar *focus, const gchar *previous);
void dhf_engine_save_state (DhfDeviceEngine *self);
gboolean dhf_engine_may_focus (DhfDeviceEngine *self, const gchar *name);
const gchar *dhf_engine_fallback_target (DhfDeviceEngine *self, const gchar *leaving);
DhfEngineRequest *dhf_engine_request_new (DhfDeviceEngine *self, DhfEngineRequestKind kind,
                                          GTask *task);
DhfEngineRequest *dhf_engine_request_ref (DhfEngineRequest *req);
void dhf_engine_request_unref (DhfEngineRequest *req);
G_DEFINE_AUTOPTR_CLEANUP_FUNC (DhfEngineRequest, dhf_engine_request_unref)
GError *dhf_engine_shutting_down_error (void);
GError *dhf_engine_cancelled_error (const DhfEngineRequest *req);
void dhf_engine_cancel_watch (DhfEngineRequest *req);
void dhf_engine_cancel_unwatch (DhfEngineRequest *req);
void dhf_engine_complete (DhfEngineRequest *req, GError *error /* taken */, const gchar *focused);
void dhf_engine_enqueue (DhfDeviceEngine *self, DhfEngineRequest *req);
void dhf_engine_queue_reconcile (DhfDeviceEngine *self);
void dhf_engine_check_focus (DhfDeviceEngine *self);
void dhf_engine_run_on (DhfDeviceEngine *self);
void dhf_engine_finish (DhfEngineRequest *req, GError *error /* taken */, const gchar *focused);
void dhf_engine_txn_run (DhfEngineRequest *req, DhfTxnDoneFunc done);
void dhf_engine_apply_unit (DhfDeviceEngine *self, const DhfTxnUnit *unit);
void dhf_engine_note_failure (DhfDeviceEngine *self, const DhfTxnUnit *unit);
void dhf_engine_apply_attached (DhfDeviceEngine *self, GHashTable *attached, gboolean whole);

/* dhf-device-reconcile.c: the plan and status, sync and reconcile. */
GHashTable *dhf_engine_compute_plan (DhfDeviceEngine *self, const gchar *focus);
DhfDeviceStatus *dhf_engine_make_status (DhfDeviceEngine *self, const DhfEngDevice *record);
void dhf_engine_refresh (DhfDeviceEngine *self);
void dhf_engine_start_sync (DhfEngineRequest *req);
void dhf_engine_add_moves (DhfDeviceEngine *self, GHashTable *plan, gboolean follow_only,
                           gboolean skip_failed, const gchar *label, DhfTxn *txn);
void dhf_engine_start_reconcile (DhfEngineRequest *req);

/* dhf-device-switch.c: targets, asking, switching, falling back. */
void dhf_engine_ask_stop (DhfEngineRequest *req);
void dhf_engine_on_task_cancelled (GCancellable *cancellable, gpointer data);
gboolean dhf_engine_switch_check_now (DhfDeviceEngine *self, DhfEngineRequest *req);
void dhf_engine_start_switch (DhfEngineRequest *req);
void dhf_engine_start_fallback (DhfEngineRequest *req);

/* dhf-device-assign.c: assign and release. */
void dhf_engine_pin_set (DhfDeviceEngine *self, const gchar *id, DhfAdminPin *pin);
gboolean dhf_engine_adopt_pin_selectors (DhfDeviceEngine *self);
void dhf_engine_start_assign (DhfEngineRequest *req);
void dhf_engine_start_release (DhfEngineRequest *req);

G_END_DECLS
