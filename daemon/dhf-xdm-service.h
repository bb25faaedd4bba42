/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

#include <dhf/dhf.h>

#include "dhf-authority.h"
#include "dhf-xdm-router.h"

G_BEGIN_DECLS

/* org.dhf.Framework1.Xdm on D-Bus: what the router has (ListConnections,
 * ListServices, ListSubscriptions, the Socket and Connections properties),
 * and the prompt agents that answer the questions of "ask" rules for the
 * router (dhf_xdm_service_ask(), a DhfXdmAsker). */

/* The polkit actions of its methods (policies/polkit). */
#define DHF_ACTION_XDM_INSPECT      "org.dhf.framework1.xdm.inspect"
#define DHF_ACTION_XDM_PROMPT_AGENT "org.dhf.framework1.xdm.prompt-agent"

/* How many prompt agents may be registered at once. */
#define DHF_XDM_MAX_PROMPT_AGENTS 32

#define DHF_TYPE_XDM_SERVICE (dhf_xdm_service_get_type ())
G_DECLARE_FINAL_TYPE (DhfXdmService, dhf_xdm_service, DHF, XDM_SERVICE, DhfDBusXdmSkeleton)

/* socket_path: the dom0 socket, or NULL for none. ask_timeout_ms: how long
 * an agent may take (the router cancels the question then, too). */
DhfXdmService *dhf_xdm_service_new (DhfAuthority *authority, DhfXdmRouter *router,
                                    const gchar *socket_path, guint ask_timeout_ms);
/* Publishes the router's connection count as the Connections property. */
void dhf_xdm_service_update_connections (DhfXdmService *self);

/* A DhfXdmAsker (user_data: the service): asks the most recently
 * registered prompt agent, and answers deny when there is none or it
 * fails. Must be exported first. */
void dhf_xdm_service_ask (const DhfXdmQuestion *question, GCancellable *cancellable,
                          DhfXdmAskDone done, gpointer done_data, gpointer user_data);

G_END_DECLS
