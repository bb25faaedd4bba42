/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

#include <gio/gio.h>

#include "dhf-config.h"

G_BEGIN_DECLS

/* dhfd itself: owns the bus name, the Manager and the appliance objects,
 * and keeps them in step with the hypervisor. */

/* Exit statuses (dhfd(8)). */
#define DHF_EXIT_OK             0
#define DHF_EXIT_STARTUP_FAILED 1
#define DHF_EXIT_USAGE          2
#define DHF_EXIT_BUS_LOST       3

typedef enum
{
  DHF_BUS_SYSTEM,
  DHF_BUS_SESSION,
  DHF_BUS_ADDRESS,
} DhfBusKind;

#define DHF_TYPE_DAEMON (dhf_daemon_get_type ())
G_DECLARE_FINAL_TYPE (DhfDaemon, dhf_daemon, DHF, DAEMON, GObject)

DhfDaemon *dhf_daemon_new (DhfConfig *config, DhfBusKind bus_kind, const gchar *address,
                           gboolean replace);
gboolean dhf_daemon_start (DhfDaemon *self, GError **error);
gint dhf_daemon_get_exit_status (DhfDaemon *self);

G_END_DECLS
