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
 * "The vendor directory alone" leaves out every vendor file whose name an
 * admin directory has a file (or anything else) of: such a file disables
 * the vendor one, even when it is the broken one.
 *
 * The watch waits for a file written in place to be closed
 * (CHANGES_DONE_HINT) before it reloads, at most WRITE_TIMEOUT_MS (2 s)
 * after the latest write; renames are complete at once. Included files
 * are watched as the files on disk name them, for a refused set too.
 *
 * The saved last good policy is written mode 0600 (its directory, when
 * dhfd creates it, 0700) and read back only when it is a regular file
 * owned by dhfd's uid or root and not writable by group or others.
 *
 * Signals:
 *   "changed"   (no arguments) the policy in force was replaced.
 *   "reloaded"  (gboolean applied) after every reload attempt, whether
 *               from dhf_policy_store_reload() or from the watch, once the
 *               diagnostics, the degraded state and the generation are
 *               updated; applied is what dhf_policy_store_reload() would
 *               return. dhfd publishes its D-Bus properties from it, so a
 *               refused edit shows up as Degraded without a reload call. */

/* Which policy is in force. */
typedef enum
{
  DHF_POLICY_SOURCE_FILES,            /* the files on disk (not degraded) */
  DHF_POLICY_SOURCE_LAST_GOOD_MEMORY, /* the previous good set, kept after a refused edit */
  DHF_POLICY_SOURCE_LAST_GOOD_SAVED,  /* startup: the last good policy saved on disk */
  DHF_POLICY_SOURCE_VENDOR_ONLY,      /* startup: the vendor directory alone */
  DHF_POLICY_SOURCE_EMPTY,            /* nothing: everything is denied */
} DhfPolicySource;

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
/* Which policy is in force (DHF_POLICY_SOURCE_EMPTY before the first
 * reload). */
DhfPolicySource dhf_policy_store_get_source (DhfPolicyStore *self);
/* "the vendor defaults alone are in force", ...: for status texts. */
const gchar *dhf_policy_source_describe (DhfPolicySource source);
/* A monotonic count of successful swaps. */
guint64 dhf_policy_store_get_generation (DhfPolicyStore *self);

G_END_DECLS
