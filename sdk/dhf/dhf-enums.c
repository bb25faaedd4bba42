/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include "config.h"

#include "dhf-enums.h"

static const gchar *const state_names[] = {
  [DHF_APPLIANCE_STATE_UNKNOWN] = "unknown",
  [DHF_APPLIANCE_STATE_SHUTOFF] = "shutoff",
  [DHF_APPLIANCE_STATE_RUNNING] = "running",
  [DHF_APPLIANCE_STATE_PAUSED] = "paused",
  [DHF_APPLIANCE_STATE_SHUTTING_DOWN] = "shutting-down",
  [DHF_APPLIANCE_STATE_CRASHED] = "crashed",
  [DHF_APPLIANCE_STATE_SUSPENDED] = "suspended",
  [DHF_APPLIANCE_STATE_BLOCKED] = "blocked",
};

static const gchar *const role_names[] = {
  [DHF_APPLIANCE_ROLE_ENVIRONMENT] = "environment",
  [DHF_APPLIANCE_ROLE_SERVICE] = "service",
};

/**
 * dhf_appliance_state_to_string:
 * @state: a #DhfApplianceState
 *
 * Returns: (transfer none): the state's name, as the D-Bus `State` property
 *   carries it; "unknown" for out-of-range values
 *
 * Since: 0.1
 */
const gchar *
dhf_appliance_state_to_string (DhfApplianceState state)
{
  if ((guint) state >= G_N_ELEMENTS (state_names))
    return state_names[DHF_APPLIANCE_STATE_UNKNOWN];
  return state_names[state];
}

/**
 * dhf_appliance_state_from_string:
 * @str: a state name such as "running"
 * @state: (out): where to store the state
 *
 * Returns: %TRUE if @str names a state
 *
 * Since: 0.1
 */
gboolean
dhf_appliance_state_from_string (const gchar *str, DhfApplianceState *state)
{
  for (guint i = 0; str != NULL && i < G_N_ELEMENTS (state_names); i++)
    {
      if (g_str_equal (str, state_names[i]))
        {
          *state = (DhfApplianceState) i;
          return TRUE;
        }
    }
  return FALSE;
}

/**
 * dhf_appliance_role_to_string:
 * @role: a #DhfApplianceRole
 *
 * Returns: (transfer none): "environment" or "service"
 *
 * Since: 0.1
 */
const gchar *
dhf_appliance_role_to_string (DhfApplianceRole role)
{
  if ((guint) role >= G_N_ELEMENTS (role_names))
    return role_names[DHF_APPLIANCE_ROLE_ENVIRONMENT];
  return role_names[role];
}

/**
 * dhf_appliance_role_from_string:
 * @str: "environment" or "service"
 * @role: (out): where to store the role
 *
 * Returns: %TRUE if @str names a role
 *
 * Since: 0.1
 */
gboolean
dhf_appliance_role_from_string (const gchar *str, DhfApplianceRole *role)
{
  for (guint i = 0; str != NULL && i < G_N_ELEMENTS (role_names); i++)
    {
      if (g_str_equal (str, role_names[i]))
        {
          *role = (DhfApplianceRole) i;
          return TRUE;
        }
    }
  return FALSE;
}
