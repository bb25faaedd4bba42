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
 * "dom0"); OpenDisplay and Screenshot through the hypervisor, for what
 * the policy lets dom0 put on screen. Each method checks its polkit
 * action (dhf-authority.h). */

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

/* The policy's answer to "switch @dom0 APPLIANCE", the question a switch
 * to it asks (DhfEngineDecideFunc, as the engine gets it): OpenDisplay and
 * Screenshot show an appliance only where it allows dom0 to put it on
 * screen ("ask" counts as deny: a thumbnail cannot wait for the user).
 * Without a decider (the default), they ask no rule; NULL after a decider
 * (its data is going away) refuses them from then on. */
void dhf_display_service_set_decider (DhfDisplayService *self, DhfEngineDecideFunc decide,
                                      gpointer user_data);

/* The largest PNG Screenshot answers with: one message on the system bus
 * is at most 32 MiB (dbus-daemon's max_message_size), and a reply over it
 * gets dhfd disconnected from the bus. */
#define DHF_DISPLAY_SCREENSHOT_MAX_BYTES (16 * 1024 * 1024)

/* Lowers (or restores) that limit: tests, whose screens are small. */
void dhf_display_service_set_screenshot_limit (DhfDisplayService *self, gsize max_bytes);

/* Publishes Focused, History and Cycle as the engine has them now (call it
 * when domains start, stop, appear or go: the cycle follows them). */
void dhf_display_service_update (DhfDisplayService *self);

G_END_DECLS
