/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

#include <dhf/dhf.h>

#include "dhf-authority.h"
#include "dhf-policy-audit.h"
#include "dhf-policy-store.h"

G_BEGIN_DECLS

/* org.dhf.Framework1.Policy: the policy in force on D-Bus (Files, Rules,
 * Degraded, Diagnostics, Generation; Reload, Test, Show), and the one
 * place where the framework's subsystems get their decisions
 * (dhf_policy_service_decide(): evaluate, then audit a deny). It owns the
 * store and the audit log. */

#define DHF_TYPE_POLICY_SERVICE (dhf_policy_service_get_type ())
G_DECLARE_FINAL_TYPE (DhfPolicyService, dhf_policy_service, DHF, POLICY_SERVICE,
                      DhfDBusPolicySkeleton)

/* Describes the appliance called name for a decision; FALSE when there is
 * none. The pointers in *domain borrow from the appliance: valid until the
 * main loop runs again. */
typedef gboolean (*DhfPolicyDomainLookup) (const gchar *name, DhfPolicyDomain *domain,
                                           gpointer user_data);

DhfPolicyService *dhf_policy_service_new (DhfPolicyStore *store, DhfAuthority *authority,
                                          DhfPolicyDomainLookup lookup, gpointer user_data);

/* Loads the policy (with the store's startup fallbacks), publishes it and
 * starts watching the files. */
void dhf_policy_service_start (DhfPolicyService *self);
/* Reloads now (SIGHUP) and publishes the outcome; TRUE when the files on
 * disk were valid and are now in force. */
gboolean dhf_policy_service_reload (DhfPolicyService *self);

/* The Manager's status reason while the files on disk are refused, else
 * NULL. "published" (no arguments) is emitted after every reload attempt,
 * when the properties (and this reason) may have changed. */
gchar *dhf_policy_service_dup_status_reason (DhfPolicyService *self);

/* Decides query with the policy in force and audits it if it is a deny.
 * Returns that policy (a new reference): the decision borrows from it.
 * Any thread. */
DhfPolicy *dhf_policy_service_decide (DhfPolicyService *self, const DhfPolicyQuery *query,
                                      DhfPolicyDecision *decision);

DhfPolicyStore *dhf_policy_service_get_store (DhfPolicyService *self);

G_END_DECLS
