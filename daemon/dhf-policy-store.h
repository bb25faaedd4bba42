/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

#include <gio/gio.h>

#include "dhf-policy.h"

G_BEGIN_DECLS

/* The policy in force, and how it is replaced. A reload parses and
 * validates the whole set of files first; only a valid set replaces the
 * policy in force (an atomic swap: evaluations already running finish on
 * the old one). An invalid set keeps the last good policy and leaves the
 * store "degraded" with every diagnostic kept for D-Bus and dhfctl.
 *
 * At startup there is no last good policy in memory; the store then uses,
 * in order: the set on disk if valid; the last good policy saved at the
 * previous successful load (last_good_path) if it parses; the vendor
 * directory alone (the last of dirs) if valid; else the empty policy
 * (deny everything). All but the first leave the store degraded.
 *
 * Signals:
 *   "changed"   (no arguments) the policy in force was replaced.
 *   "reloaded"  (gboolean applied) after every reload attempt, whether
 *               from dhf_policy_store_reload() or from the watch, once the
 *               diagnostics, the degraded state and the generation are
 *               updated; applied is what dhf_policy_store_reload() would
 *               return. dhfd publishes its D-Bus properties from it, so a
 *               refused edit shows up as Degraded without a reload call. */

#define DHF_TYPE_POLICY_STORE (dhf_policy_store_get_type ())
G_DECLARE_FINAL_TYPE (DhfPolicyStore, dhf_policy_store, DHF, POLICY_STORE, GObject)

/* dirs: admin directory first, vendor directory last. last_good_path may
 * be NULL (nothing saved). Loads nothing: until the first
 * dhf_policy_store_reload(), get() returns the empty policy. */
DhfPolicyStore *dhf_policy_store_new (const gchar *const *dirs, const gchar *last_good_path);

/* Loads as described above; emits "changed" when the policy in force was
 * replaced. Returns TRUE when the files on disk were valid and are now in
 * force. Safe to call from the main thread only. */
gboolean dhf_policy_store_reload (DhfPolicyStore *self);

/* Watches the directories (and included files) with GFileMonitor and
 * reloads, debounced, when they change. */
void dhf_policy_store_watch (DhfPolicyStore *self);

/* The policy in force, with a new reference: callable from any thread. */
DhfPolicy *dhf_policy_store_get (DhfPolicyStore *self);

gboolean dhf_policy_store_is_degraded (DhfPolicyStore *self);
/* Diagnostics of the last reload attempt (errors and warnings). */
GPtrArray *dhf_policy_store_get_diagnostics (DhfPolicyStore *self);
/* A monotonic count of successful swaps. */
guint64 dhf_policy_store_get_generation (DhfPolicyStore *self);

G_END_DECLS
