/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

#if !defined(DHF_INSIDE) && !defined(DHF_COMPILATION)
#error "Only <dhf/dhf.h> can be included directly."
#endif

#include <glib.h>

G_BEGIN_DECLS

/**
 * DhfApplianceState:
 * @DHF_APPLIANCE_STATE_UNKNOWN: The state could not be read.
 * @DHF_APPLIANCE_STATE_SHUTOFF: Not running.
 * @DHF_APPLIANCE_STATE_RUNNING: Running.
 * @DHF_APPLIANCE_STATE_PAUSED: vCPUs suspended by the host.
 * @DHF_APPLIANCE_STATE_SHUTTING_DOWN: A shutdown is under way.
 * @DHF_APPLIANCE_STATE_CRASHED: The guest crashed.
 * @DHF_APPLIANCE_STATE_SUSPENDED: The guest suspended itself (S3/S4).
 * @DHF_APPLIANCE_STATE_BLOCKED: Blocked on a resource.
 *
 * The lifecycle state of an appliance, as the `State` D-Bus property
 * spells it (see dhf_appliance_state_to_string()).
 *
 * Since: 0.1
 */
typedef enum
{
  DHF_APPLIANCE_STATE_UNKNOWN,
  DHF_APPLIANCE_STATE_SHUTOFF,
  DHF_APPLIANCE_STATE_RUNNING,
  DHF_APPLIANCE_STATE_PAUSED,
  DHF_APPLIANCE_STATE_SHUTTING_DOWN,
  DHF_APPLIANCE_STATE_CRASHED,
  DHF_APPLIANCE_STATE_SUSPENDED,
  DHF_APPLIANCE_STATE_BLOCKED,
} DhfApplianceState;

/**
 * DhfApplianceRole:
 * @DHF_APPLIANCE_ROLE_ENVIRONMENT: A desktop environment the user switches to.
 * @DHF_APPLIANCE_ROLE_SERVICE: A headless service appliance.
 *
 * What an appliance is for.
 *
 * Since: 0.1
 */
typedef enum
{
  DHF_APPLIANCE_ROLE_ENVIRONMENT,
  DHF_APPLIANCE_ROLE_SERVICE,
} DhfApplianceRole;

const gchar *dhf_appliance_state_to_string (DhfApplianceState state);
gboolean dhf_appliance_state_from_string (const gchar *str, DhfApplianceState *state);
const gchar *dhf_appliance_role_to_string (DhfApplianceRole role);
gboolean dhf_appliance_role_from_string (const gchar *str, DhfApplianceRole *role);

G_END_DECLS
