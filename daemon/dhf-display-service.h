/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

#include <dhf/dhf.h>

#include "dhf-authority.h"
#include "dhf-device-engine.h"
#include "dhf-hypervisor.h"

G_BEGIN_DECLS

/* org.dhf.Framework1.Display on D-Bus: the focus (Focused, History, Cycle,
 * FocusChanged) kept in step with the device engine; Switch, Next and
 * Previous through the engine for the user at the console (requester
 * "dom0"); OpenDisplay and Screenshot through the hypervisor. Each method
 * checks its polkit action (dhf-authority.h). */

#define DHF_TYPE_DISPLAY_SERVICE (dhf_display_service_get_type ())
G_DECLARE_FINAL_TYPE (DhfDisplayService, dhf_display_service, DHF, DISPLAY_SERVICE,
                      DhfDBusDisplaySkeleton)

/* Whether an appliance called name exists (FALSE: NotFound) and, if so,
 * whether it is active, running or paused (*active FALSE: InvalidState for
 * OpenDisplay and Screenshot, which need a display that exists now). */
typedef gboolean (*DhfDisplayLookup) (const gchar *name, gboolean *active, gpointer user_data);

DhfDisplayService *dhf_display_service_new (DhfDeviceEngine *engine, DhfAuthority *authority,
                                            DhfHypervisor *hypervisor, DhfDisplayLookup lookup,
                                            gpointer lookup_data);

/* Publishes Focused, History and Cycle as the engine has them now (call it
 * when domains start, stop, appear or go: the cycle follows them). */
void dhf_display_service_update (DhfDisplayService *self);

G_END_DECLS
