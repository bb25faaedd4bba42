/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

#include <gio/gio.h>

#include "dhf-config.h"

G_BEGIN_DECLS

/* Named polkit actions, one per kind of mutating call. */
#define DHF_ACTION_INSTALL       "org.dhf.framework1.appliance.install"
#define DHF_ACTION_REMOVE        "org.dhf.framework1.appliance.remove"
#define DHF_ACTION_START         "org.dhf.framework1.appliance.start"
#define DHF_ACTION_STOP          "org.dhf.framework1.appliance.stop"
#define DHF_ACTION_PAUSE         "org.dhf.framework1.appliance.pause"
#define DHF_ACTION_POLICY_RELOAD "org.dhf.framework1.policy.reload"
/* Devices and the display (docs/display.md). */
#define DHF_ACTION_DEVICES_ASSIGN     "org.dhf.framework1.devices.assign"
#define DHF_ACTION_DISPLAY_SWITCH     "org.dhf.framework1.display.switch"
#define DHF_ACTION_DISPLAY_OPEN       "org.dhf.framework1.display.open"
#define DHF_ACTION_DISPLAY_SCREENSHOT "org.dhf.framework1.display.screenshot"

#define DHF_TYPE_AUTHORITY (dhf_authority_get_type ())
G_DECLARE_FINAL_TYPE (DhfAuthority, dhf_authority, DHF, AUTHORITY, GObject)

DhfAuthority *dhf_authority_new (DhfAuthMode mode, GDBusConnection *connection);
DhfAuthMode dhf_authority_get_mode (DhfAuthority *self);
void dhf_authority_check_async (DhfAuthority *self, GDBusMethodInvocation *invocation,
                                const gchar *action_id, GCancellable *cancellable,
                                GAsyncReadyCallback callback, gpointer user_data);
gboolean dhf_authority_check_finish (DhfAuthority *self, GAsyncResult *result, GError **error);

G_END_DECLS
