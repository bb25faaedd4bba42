/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include "config.h"

#include <dhf/dhf.h>

/* Every code must survive the trip through D-Bus with its domain intact. */
static void
test_error_dbus_round_trip (void)
{
  for (gint code = 0; code < DHF_ERROR_LAST; code++)
    {
      g_autoptr (GError) error = g_error_new (DHF_ERROR, code, "code %d", code);
      g_autofree gchar *name = g_dbus_error_encode_gerror (error);
      g_autoptr (GError) back = g_dbus_error_new_for_dbus_error (name, "message");

      g_assert_cmpstr (name, ==, dhf_error_to_dbus_name (code));
      g_assert_true (g_str_has_prefix (name, "org.dhf.Framework1.Error."));
      g_assert_error (back, DHF_ERROR, code);
    }
}

static void
test_error_names_unique (void)
{
  g_autoptr (GHashTable) seen = g_hash_table_new (g_str_hash, g_str_equal);

  for (gint code = 0; code < DHF_ERROR_LAST; code++)
    g_assert_true (g_hash_table_add (seen, (gpointer) dhf_error_to_dbus_name (code)));
  g_assert_cmpstr (dhf_error_to_dbus_name (DHF_ERROR_LAST + 5), ==,
                   "org.dhf.Framework1.Error.Failed");
}

static void
test_enums_strings (void)
{
  DhfApplianceState state;
  DhfApplianceRole role;

  for (gint s = DHF_APPLIANCE_STATE_UNKNOWN; s <= DHF_APPLIANCE_STATE_BLOCKED; s++)
    {
      g_assert_true (dhf_appliance_state_from_string (dhf_appliance_state_to_string (s), &state));
      g_assert_cmpint (state, ==, s);
    }
  g_assert_cmpstr (dhf_appliance_state_to_string (DHF_APPLIANCE_STATE_SHUTTING_DOWN), ==,
                   "shutting-down");
  g_assert_false (dhf_appliance_state_from_string ("Running", &state));
  g_assert_false (dhf_appliance_state_from_string (NULL, &state));
  g_assert_cmpstr (dhf_appliance_state_to_string (99), ==, "unknown");
  g_assert_true (dhf_appliance_role_from_string ("service", &role));
  g_assert_cmpint (role, ==, DHF_APPLIANCE_ROLE_SERVICE);
  g_assert_false (dhf_appliance_role_from_string ("desktop", &role));
  g_assert_cmpstr (dhf_appliance_role_to_string (DHF_APPLIANCE_ROLE_ENVIRONMENT), ==,
                   "environment");
}

static void
test_enum_gtypes (void)
{
  g_autoptr (GEnumClass) klass = g_type_class_ref (DHF_TYPE_APPLIANCE_STATE);

  g_assert_nonnull (g_enum_get_value (klass, DHF_APPLIANCE_STATE_PAUSED));
  g_assert_true (G_TYPE_IS_ENUM (DHF_TYPE_ERROR));
}

int
main (int argc, char **argv)
{
  g_test_init (&argc, &argv, NULL);
  g_test_add_func ("/error/dbus-round-trip", test_error_dbus_round_trip);
  g_test_add_func ("/error/names-unique", test_error_names_unique);
  g_test_add_func ("/enums/strings", test_enums_strings);
  g_test_add_func ("/enums/gtypes", test_enum_gtypes);
  return g_test_run ();
}
