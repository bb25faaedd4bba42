/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

#include <gio/gio.h>

#include "dhf-authority.h"

G_BEGIN_DECLS

/* What dhfd's D-Bus services (Devices, Display) share in answering a
 * method call: the authorization before it runs, and the error reply. */

/* Replies with error as org.dhf.Framework1.Error.*: an error of another
 * domain becomes Failed, with its message. */
void dhf_dbus_call_return_error (GDBusMethodInvocation *invocation, const GError *error);

/* Runs an authorized call; data is its own from then on. */
typedef void (*DhfDBusCallFunc) (gpointer data);

/* Asks authority whether invocation's caller may do action_id, then runs
 * authorized (data), or replies with the refusal and frees data with
 * free_data. Returns G_DBUS_METHOD_INVOCATION_HANDLED, for the handle-*
 * signal handler to return. */
gboolean dhf_dbus_call_authorize (DhfAuthority *authority, GDBusMethodInvocation *invocation,
                                  const gchar *action_id, DhfDBusCallFunc authorized, gpointer data,
                                  GDestroyNotify free_data);

G_END_DECLS
