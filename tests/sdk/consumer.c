/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* An ISV program built the way an ISV builds it: only <dhf/dhf.h> and
 * pkg-config dhf-1, nothing from dhf's source tree. */
#include <dhf/dhf.h>

int
main (void)
{
  g_autoptr (GError) error = g_error_new (DHF_ERROR, DHF_ERROR_NOT_FOUND, "no such appliance");
  g_autofree gchar *name = g_dbus_error_encode_gerror (error);
  DhfApplianceState state = DHF_APPLIANCE_STATE_UNKNOWN;

  /* The error mapping is registered when the library loads. */
  if (g_strcmp0 (name, "org.dhf.Framework1.Error.NotFound") != 0)
    return 1;
  if (!dhf_appliance_state_from_string ("running", &state) || state != DHF_APPLIANCE_STATE_RUNNING)
    return 1;
  if (dhf_dbus_manager_proxy_get_type () == 0 || DHF_TYPE_APPLIANCE_STATE == 0)
    return 1;
  g_print ("libdhf-1 %s: %s\n", DHF_VERSION_STRING, name);
  return 0;
}
