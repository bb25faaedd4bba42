/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

#include <gio/gio.h>

#include "dhf-device-ops.h"
#include "dhf-device.h"
#include "dhf-manifest.h"
#include "dhf-policy.h"

G_BEGIN_DECLS

/* The device-assignment engine and the focus (docs/devices.md,
 * docs/display.md). It keeps, for every device, where it is (its owner:
 * "dom0" or a domain) and where it should be, and moves devices through
 * the DhfDeviceOps seam in transactions that roll back on failure. The
 * focus is part of the same state: a switch is one transaction that moves
 * the follow-focus devices and the CPU weights.
 *
 * Where a device should be, in order:
 *  1. pinned by an admin (Assign; kept in the state file with the
 *     device's selector) to domain T, while the policy allows the device
 *     to T (else the pin claims nothing and the device's problem names
 *     the rule) and while the device at the pin's id is the one it was
 *     made for (a USB id is a port: another device plugged in there is
 *     not claimed, and its problem says so; the pin waits for its own);
 *  2. pinned by the policy: a device rule whose TARGET names T itself,
 *     allow with mode=pinned;
 *  3. pinned by T's manifest (a wish of mode pinned, or of no mode given
 *     by the rule) when the policy allows the device to T;
 *     -- a pin holds the device for T while T is defined; it is attached
 *        live while T runs (and kept in T's persistent definition) --
 *  4. follow-focus: the focused domain F gets it when the policy allows
 *     it to F with mode=follow-focus, or allows it without a mode and F's
 *     manifest wishes it follow-focus;
 *  5. else dom0.
 * Every device query is "device:SELECTOR @dom0 T". "ask" counts as deny
 * here (a device cannot wait for an answer mid-switch). Two pins of the
 * same rank on one device: the holder keeps it, the other gets a problem.
 * An IOMMU group is kept whole, both ways: a PCI function goes to T only
 * if every other non-bridge function of its group goes to T too or has
 * no host driver, and leaves a domain only if no other function stays
 * there; else it stays and its problem says why. The functions of a group
 * that move, move in one unit (undone together). Inputs and devices
 * without an IOMMU group (PCI) that cannot be assigned say so as their
 * problem.
 *
 * A move that failed is not tried again by reconciliation until an input
 * concerning it changes: the device (plugged again, its identity, a host
 * driver of another function of its IOMMU group), the domain it was for
 * or is in (any change reported), the policy, a sync; Assign, Release and
 * switches try at once.
 *
 * When the focused domain stops running, the engine moves the focus to
 * the configured fallback itself. A fallback always ends with the focus
 * moved: devices that cannot follow keep a problem; when the target
 * cannot take them, dom0 is tried once and gets the focus. Another
 * fallback is queued only when the new focus stops in turn.
 *
 * Without a decider nothing is planned and nothing moves.
 *
 * Everything is on the main context except the DhfDeviceOps calls, which
 * run on one worker thread, one transaction at a time, in order. The
 * engine keeps no reference on ops_data nor on the decider's and asker's
 * data: its owner calls dhf_device_engine_shutdown() before they go. */

typedef struct
{
  DhfPolicyAction action;
  gchar *mode;           /* device rules: the rule's mode= option, NULL when unset */
  gboolean target_named; /* the rule's TARGET is this domain's NAME (not a pattern) */
  gchar *rule;           /* "FILE:LINE" of the deciding rule, NULL when none matched */
} DhfEngineVerdict;

void dhf_engine_verdict_clear (DhfEngineVerdict *verdict);

/* Decides one query with the policy in force: kind DEVICE (subject the
 * selector, source "dom0") or SWITCH (subject NULL, source the requester).
 * source and target are "dom0" or domain names. */
typedef void (*DhfEngineDecideFunc) (DhfPolicyKind kind, const gchar *subject, const gchar *source,
                                     const gchar *target, DhfEngineVerdict *verdict,
                                     gpointer user_data);

/* Asks the user about a switch an "ask" rule decides (the XDM prompt
 * agents); calls done(allow, done_data) once on the main context unless
 * cancellable is cancelled first. NULL asker: ask means deny. */
typedef void (*DhfEngineAskDone) (gboolean allow, gpointer done_data);
typedef void (*DhfEngineAskFunc) (const gchar *source, const gchar *target, const gchar *rule,
                                  GCancellable *cancellable, DhfEngineAskDone done,
                                  gpointer done_data, gpointer user_data);

/* One domain as the engine needs it (copied). */
typedef struct
{
  const gchar *name;
  gboolean active;      /* it runs, possibly paused: devices can be attached live */
  gboolean running;     /* active and not paused: it may hold the focus */
  gboolean environment; /* may be focused: role environment, or a foreign domain */
  GPtrArray *wishes;    /* its manifest's DhfManifestDevice, NULL for none */
} DhfEngineDomain;

typedef struct
{
  const gchar *state_file;   /* where focus, history and admin pins are kept; NULL: nowhere */
  const gchar *fallback;     /* "dom0", "@previous" or a domain name: the focus after the
                              * focused domain stops or pauses */
  guint focused_weight;      /* CPU weight of the focused domain; 0: weights are not touched */
  guint normal_weight;       /* of every other running domain */
  const gchar *const *order; /* environments first in Next/Previous order; the rest by name */
  gboolean cycle_dom0;       /* dom0 takes part in Next/Previous */
  guint history_length;      /* 0: 16 */
} DhfDeviceEngineConfig;

/* What List and Changed show of one device. */
typedef struct
{
  DhfDevice *device;
  gboolean present;   /* in the inventory now (a pinned device may be unplugged) */
  gchar *owner;       /* where it is: "dom0" or a domain */
  DhfDeviceMode mode; /* how it is claimed */
  gchar *holder;      /* PINNED: the domain it is pinned to (possibly shut off); else NULL */
  gchar *origin;      /* why: "admin", "policy FILE:LINE", "manifest", "focus", "none" */
  gchar *problem;     /* NULL, or why it is not where its claim wants it */
} DhfDeviceStatus;

void dhf_device_status_free (DhfDeviceStatus *status);
G_DEFINE_AUTOPTR_CLEANUP_FUNC (DhfDeviceStatus, dhf_device_status_free)

#define DHF_TYPE_DEVICE_ENGINE (dhf_device_engine_get_type ())
G_DECLARE_FINAL_TYPE (DhfDeviceEngine, dhf_device_engine, DHF, DEVICE_ENGINE, GObject)

DhfDeviceEngine *dhf_device_engine_new (const DhfDeviceOps *ops, gpointer ops_data,
                                        const DhfDeviceEngineConfig *config);
void dhf_device_engine_set_decider (DhfDeviceEngine *self, DhfEngineDecideFunc decide,
                                    gpointer user_data);
void dhf_device_engine_set_asker (DhfDeviceEngine *self, DhfEngineAskFunc ask, gpointer user_data);

/* Loads the state file: a missing one is a fresh start; a corrupt one is
 * logged, moved aside (FILE.corrupt) and treated as missing. A pin without
 * a selector (an older file) takes the selector of the device at its id at
 * the first sync (or when one is first plugged in there). Nothing moves
 * before dhf_device_engine_synced(). */
gboolean dhf_device_engine_load (DhfDeviceEngine *self, GError **error);

/* Inputs; each may start a reconciliation (a transaction that puts every
 * device where it should be, device by device or IOMMU group by group:
 * one that fails goes back to where it was and gets a problem, the others
 * go on). An inventory that changes nothing the plan or the steps read
 * (a rescan) starts none. A domain the engine has not read (one that
 * appears after synced(), a renamed one) is read with list_attached
 * before anything moves for it; so is one that starts after a step
 * changed its persistent definition only, or that starts or stops while
 * a transaction touching it runs. */
void dhf_device_engine_set_inventory (DhfDeviceEngine *self, GPtrArray *devices /* DhfDevice */);
void dhf_device_engine_domain_changed (DhfDeviceEngine *self, const DhfEngineDomain *domain);
void dhf_device_engine_domain_removed (DhfDeviceEngine *self, const gchar *name);
/* Every domain has been reported (dhfd's first sync, or a reconnect):
 * reads where dhf's devices are (list_attached of each domain), restores
 * the saved focus if that domain runs (else the fallback), then
 * reconciles. Until the first call the engine only records. */
void dhf_device_engine_synced (DhfDeviceEngine *self);
/* The policy changed: verdicts are asked again and devices follow. */
void dhf_device_engine_policy_changed (DhfDeviceEngine *self);

const gchar *dhf_device_engine_get_focused (DhfDeviceEngine *self); /* "dom0" or a name */
/* The focus the decider's answers are for: while the engine plans a
 * switch (or a fallback), the focus being planned; else the focused one.
 * A decider that evaluates @focused rules uses this, so that a device
 * rule on @focused follows the switch it is asked for. */
const gchar *dhf_device_engine_get_planning_focus (DhfDeviceEngine *self);
/* Previously focused, most recent first (never the focused one). */
GStrv dhf_device_engine_dup_history (DhfDeviceEngine *self);
/* The Next/Previous cycle over the running environments (and dom0 when
 * configured), in order. */
GStrv dhf_device_engine_dup_cycle (DhfDeviceEngine *self);
GPtrArray *dhf_device_engine_list (DhfDeviceEngine *self); /* DhfDeviceStatus, sorted by id */
DhfDeviceStatus *dhf_device_engine_lookup (DhfDeviceEngine *self, const gchar *id);

/* Puts target on screen: "dom0", a domain name, "@next" or "@previous".
 * requester is the switch rule's SOURCE ("dom0" for the user's own
 * switches). Checks the target and the switch policy when called; a
 * refusal answers at once. For dom0 the target is checked first, with
 * detailed errors; for any other requester (a guest) the policy decides
 * first, on the target as named (@next/@previous resolved first), and a
 * refusal is NOT_AUTHORIZED with the same text whatever the target: the
 * target is checked only once the policy (or the user) allowed it. An
 * "ask" goes to the asker at once, outside the queue (other requests go
 * on meanwhile); a yes queues the switch. When it runs, the target is
 * checked again (and the policy, unless the user answered or the same
 * target was allowed under the same policy). Then, best-effort (a failure
 * is logged, nothing is undone): the modifiers among held_keys (may be
 * NULL/0) are released in the old focus, unless a keyboard (an input of
 * type keyboard, or any USB device) leaves it in this switch (see
 * docs/devices.md). Then, as one transaction: moves the follow-focus
 * devices (planned with the new focus as the one @focused rules see),
 * sets the new focus' weight; any failure undoes every step done, in
 * reverse, and reports the first error (and any undo that failed, in its
 * message). Then emits "focus-changed" and saves the state. A
 * reconciliation follows every switch, done or failed: it sets the old
 * focus' weight (best-effort: its failure does not undo the switch) and
 * moves what the new focus changes besides. Errors: NOT_FOUND (no such
 * domain), INVALID_STATE (not running), INVALID_ARGS (not an
 * environment), NOT_AUTHORIZED (policy), CANCELLED, the ops' errors.
 * Switching to the focused domain succeeds at once (a guest's, once the
 * policy allowed it). Returns the focused domain's name.
 *
 * Switch, assign and release: a request whose cancellable is cancelled
 * while it waits (queued, or for the asker) leaves at once and fails with
 * CANCELLED; one that runs by then finishes its transaction. */
void dhf_device_engine_switch_async (DhfDeviceEngine *self, const gchar *target,
                                     const gchar *requester, const guint *held_keys,
                                     guint n_held_keys, GCancellable *cancellable,
                                     GAsyncReadyCallback callback, gpointer user_data);
gchar *dhf_device_engine_switch_finish (DhfDeviceEngine *self, GAsyncResult *result,
                                        GError **error);

/* Pins device id to domain (an admin pin, saved with the device's
 * selector: it holds for this device, not for another plugged in at that
 * id later; it survives the domain being undefined, for a reinstall, and
 * is checked against the policy at every plan): checked against the
 * policy (the device rule for domain must allow it), conflicts (a pin at
 * that id for another device included) refused
 * with DHF_ERROR_EXISTS naming the holder or the IOMMU group members;
 * attached at once (live when the domain runs, and in its definition);
 * a failed attach leaves the device where it was and no pin. */
void dhf_device_engine_assign_async (DhfDeviceEngine *self, const gchar *id, const gchar *domain,
                                     GCancellable *cancellable, GAsyncReadyCallback callback,
                                     gpointer user_data);
gboolean dhf_device_engine_assign_finish (DhfDeviceEngine *self, GAsyncResult *result,
                                          GError **error);
/* Drops the admin pin of device id; the device goes where the rest of the
 * rules put it (usually dom0; its IOMMU group may keep it where it is).
 * NOT_FOUND when it has no admin pin. */
void dhf_device_engine_release_async (DhfDeviceEngine *self, const gchar *id,
                                      GCancellable *cancellable, GAsyncReadyCallback callback,
                                      gpointer user_data);
gboolean dhf_device_engine_release_finish (DhfDeviceEngine *self, GAsyncResult *result,
                                           GError **error);

/* Stops the engine for good, before what it uses goes (the DhfDeviceOps
 * data, the decider's and asker's data: the engine keeps no reference on
 * them, so its owner calls this first). Queued requests fail with
 * DHF_ERROR_CANCELLED, an open question to the asker is cancelled (and
 * its switch fails so), the transaction running stops before its next
 * hypervisor call and is waited for (at most the one call running); what
 * it did is not applied (the next start reads where the devices are).
 * The state file's last write is flushed. Afterwards inputs are recorded
 * but nothing moves, requests fail with DHF_ERROR_CANCELLED, the decider
 * and asker are dropped. Disposing the engine does the same. Idempotent. */
void dhf_device_engine_shutdown (DhfDeviceEngine *self);

/* Signals (main context):
 *   "focus-changed" (const gchar *focused, const gchar *previous)
 *   "device-changed" (const gchar *id): its status changed (owner, mode,
 *                    presence, problem); look it up again.
 *   "idle" (): no transaction queued or running (tests wait on it; a
 *              switch waiting for the asker's answer does not count). */
gboolean dhf_device_engine_is_idle (DhfDeviceEngine *self);

G_END_DECLS
