/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

#include <glib.h>

#include "dhf-policy.h"

G_BEGIN_DECLS

/* The audit log of policy denials. Every deny is logged with structured
 * fields (DHF_POLICY_SUBJECT, DHF_POLICY_SOURCE, DHF_POLICY_TARGET,
 * DHF_POLICY_RULE = "file:line" or "default"), rate-limited per (subject,
 * source, target): the first deny of a key is logged at once; further ones
 * within the window are counted and logged as one summary line ("... and
 * 41 more in the last 10 s") when the window closes.
 *
 * The volume is bounded whatever the keys: at most
 * DHF_POLICY_AUDIT_MAX_RECORDS records (first denies and summaries) per
 * window; what the budget leaves out is counted and logged as one record
 * "policy: N other denies suppressed in the last 10 s" when that window
 * closes. At most max_keys keys are tracked, and a key is never evicted
 * while its window is open: denies of new keys while the table is full are
 * counted in that same record, so a flood of distinct requests grows
 * neither dhfd's memory nor the log. Logged subjects, names and rules are
 * cut to DHF_POLICY_AUDIT_MAX_FIELD bytes.
 *
 * Thread-safe: decisions may be made on any thread. Windows close from a
 * timer on the main context the audit was created in, and whenever
 * dhf_policy_audit_deny() or dhf_policy_audit_expire() runs. */

#define DHF_POLICY_AUDIT_WINDOW_US   (10 * G_USEC_PER_SEC)
#define DHF_POLICY_AUDIT_MAX_KEYS    1024
#define DHF_POLICY_AUDIT_MAX_RECORDS 20
#define DHF_POLICY_AUDIT_MAX_FIELD   256

typedef struct _DhfPolicyAudit DhfPolicyAudit;

/* Monotonic time in microseconds. */
typedef gint64 (*DhfPolicyAuditClock) (gpointer user_data);
/* Where audit records go; the default is g_log_structured_array(). */
typedef void (*DhfPolicyAuditWriter) (GLogLevelFlags level, const GLogField *fields, gsize n_fields,
                                      gpointer user_data);

DhfPolicyAudit *dhf_policy_audit_new (void);
/* For tests: clock and writer may be NULL for the defaults; max_keys 0
 * means DHF_POLICY_AUDIT_MAX_KEYS. With a clock of its own the audit sets
 * no timer: the caller closes windows with dhf_policy_audit_expire(). */
DhfPolicyAudit *dhf_policy_audit_new_full (DhfPolicyAuditClock clock, DhfPolicyAuditWriter writer,
                                           gpointer user_data, guint max_keys);
/* Logs the summaries still pending, then frees. */
void dhf_policy_audit_free (DhfPolicyAudit *self);
G_DEFINE_AUTOPTR_CLEANUP_FUNC (DhfPolicyAudit, dhf_policy_audit_free)

/* Records the decision on query if it is a deny (other actions are
 * ignored, so callers may pass every decision). */
void dhf_policy_audit_deny (DhfPolicyAudit *self, const DhfPolicyQuery *query,
                            const DhfPolicyDecision *decision);
/* Closes the windows that have ended, logging their summaries. */
void dhf_policy_audit_expire (DhfPolicyAudit *self);
/* Keys currently tracked (for tests). */
guint dhf_policy_audit_get_n_keys (DhfPolicyAudit *self);

G_END_DECLS
