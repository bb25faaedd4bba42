/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* dhfctl: the commands on org.dhf.Framework1.Appliance objects: list, show,
 * start, stop, pause and resume. */
#include "config.h"

#include <dhf/dhf.h>

#include "dhfctl.h"

static json_object *
appliance_to_json (DhfDBusAppliance *appliance)
{
  json_object *object = json_object_new_object ();

  json_object_object_add (object, "name",
                          dhfctl_json_string (dhf_dbus_appliance_get_name (appliance)));
  json_object_object_add (
      object, "object_path",
      dhfctl_json_string (g_dbus_proxy_get_object_path (G_DBUS_PROXY (appliance))));
  json_object_object_add (object, "uuid",
                          dhfctl_json_string (dhf_dbus_appliance_get_uuid (appliance)));
  json_object_object_add (object, "role",
                          dhfctl_json_string (dhf_dbus_appliance_get_role (appliance)));
  json_object_object_add (object, "state",
                          dhfctl_json_string (dhf_dbus_appliance_get_state (appliance)));
  json_object_object_add (object, "state_reason",
                          dhfctl_json_string (dhf_dbus_appliance_get_state_reason (appliance)));
  json_object_object_add (object, "autostart",
                          json_object_new_boolean (dhf_dbus_appliance_get_autostart (appliance)));
  json_object_object_add (object, "managed",
                          json_object_new_boolean (dhf_dbus_appliance_get_managed (appliance)));
  json_object_object_add (object, "vendor",
                          dhfctl_json_string (dhf_dbus_appliance_get_vendor (appliance)));
  json_object_object_add (object, "version",
                          dhfctl_json_string (dhf_dbus_appliance_get_version (appliance)));
  json_object_object_add (object, "memory",
                          json_object_new_uint64 (dhf_dbus_appliance_get_memory (appliance)));
  json_object_object_add (object, "vcpus",
                          json_object_new_int64 (dhf_dbus_appliance_get_vcpus (appliance)));
  return object;
}

/* "512 MiB (536870912 bytes)". Not g_format_size(): its output is
 * translated and has a no-break space, which trips up scripts. */
static gchar *
format_memory (guint64 bytes)
{
  static const gchar *const units[] = { "KiB", "MiB", "GiB", "TiB", "PiB" };
  gchar number[G_ASCII_DTOSTR_BUF_SIZE];
  guint64 divisor = 1024;
  gsize unit = 0;

  if (bytes < 1024)
    return g_strdup_printf ("%" G_GUINT64_FORMAT " bytes", bytes);
  while (unit + 1 < G_N_ELEMENTS (units) && bytes / divisor >= 1024)
    {
      divisor *= 1024;
      unit++;
    }
  if (bytes % divisor == 0)
    g_snprintf (number, sizeof number, "%" G_GUINT64_FORMAT, bytes / divisor);
  else
    g_ascii_formatd (number, sizeof number, "%.1f", (gdouble) bytes / (gdouble) divisor);
  return g_strdup_printf ("%s %s (%" G_GUINT64_FORMAT " bytes)", number, units[unit], bytes);
}

/* Prints what a lifecycle command left the appliance in. */
static void
print_new_state (DhfctlContext *ctx, const gchar *name, const gchar *state, const gchar *text)
{
  g_autoptr (json_object) root = NULL;
  g_autofree gchar *safe_name = NULL;

  if (!ctx->json)
    {
      safe_name = dhfctl_sanitize (name);
      g_print ("%s: %s\n", safe_name, text);
      return;
    }
  root = json_object_new_object ();
  json_object_object_add (root, "name", dhfctl_json_string (name));
  json_object_object_add (root, "state", dhfctl_json_string (state));
  dhfctl_print_json (root);
}

gboolean
dhfctl_cmd_list (DhfctlContext *ctx, const DhfctlCommand *cmd, int argc, char **argv,
                 GError **error)
{
  g_autoptr (GDBusObjectManager) manager = NULL;
  g_autolist (DhfDBusAppliance) appliances = NULL;
  g_autoptr (DhfctlTable) table = NULL;
  g_autoptr (json_object) array = NULL;

  if (!dhfctl_parse_command_line (ctx, cmd, NULL, 0, 0, &argc, &argv, error))
    return FALSE;

  manager = dhfctl_get_object_manager (ctx, error);
  if (manager == NULL)
    return FALSE;
  appliances = dhfctl_list_appliances (manager);

  if (ctx->json)
    {
      array = json_object_new_array ();
      for (GList *l = appliances; l != NULL; l = l->next)
        json_object_array_add (array, appliance_to_json (l->data));
      dhfctl_print_json (array);
      return TRUE;
    }

  table = dhfctl_table_new (6);
  dhfctl_table_add_row (table, "NAME", "ROLE", "STATE", "VENDOR", "VERSION", "AUTOSTART", NULL);
  for (GList *l = appliances; l != NULL; l = l->next)
    {
      DhfDBusAppliance *appliance = l->data;

      dhfctl_table_add_row (table, dhfctl_or_dash (dhf_dbus_appliance_get_name (appliance)),
                            dhfctl_or_dash (dhf_dbus_appliance_get_role (appliance)),
                            dhfctl_or_dash (dhf_dbus_appliance_get_state (appliance)),
                            dhfctl_or_dash (dhf_dbus_appliance_get_vendor (appliance)),
                            dhfctl_or_dash (dhf_dbus_appliance_get_version (appliance)),
                            dhfctl_yes_no (dhf_dbus_appliance_get_autostart (appliance)), NULL);
    }
  dhfctl_table_print (table);
  return TRUE;
}

gboolean
dhfctl_cmd_show (DhfctlContext *ctx, const DhfctlCommand *cmd, int argc, char **argv,
                 GError **error)
{
  g_autoptr (GDBusObjectManager) manager = NULL;
  g_autoptr (DhfDBusAppliance) appliance = NULL;
  g_autoptr (DhfctlTable) table = NULL;
  g_autofree gchar *memory = NULL;
  g_autofree gchar *vcpus = NULL;

  if (!dhfctl_parse_command_line (ctx, cmd, NULL, 1, 1, &argc, &argv, error))
    return FALSE;
  if (!dhfctl_check_name (argv[1], error))
    return FALSE;

  manager = dhfctl_get_object_manager (ctx, error);
  if (manager == NULL)
    return FALSE;
  appliance = dhfctl_lookup_appliance (manager, argv[1], error);
  if (appliance == NULL)
    return FALSE;

  if (ctx->json)
    {
      g_autoptr (json_object) object = appliance_to_json (appliance);

      dhfctl_print_json (object);
      return TRUE;
    }

  memory = format_memory (dhf_dbus_appliance_get_memory (appliance));
  vcpus = g_strdup_printf ("%u", dhf_dbus_appliance_get_vcpus (appliance));

  table = dhfctl_table_new (2);
  dhfctl_table_add_row (table, "Name:", dhfctl_or_dash (dhf_dbus_appliance_get_name (appliance)),
                        NULL);
  dhfctl_table_add_row (
      table, "Object path:", g_dbus_proxy_get_object_path (G_DBUS_PROXY (appliance)), NULL);
  dhfctl_table_add_row (table, "UUID:", dhfctl_or_dash (dhf_dbus_appliance_get_uuid (appliance)),
                        NULL);
  dhfctl_table_add_row (table, "Role:", dhfctl_or_dash (dhf_dbus_appliance_get_role (appliance)),
                        NULL);
  dhfctl_table_add_row (table, "State:", dhfctl_or_dash (dhf_dbus_appliance_get_state (appliance)),
                        NULL);
  dhfctl_table_add_row (table, "State reason:",
                        dhfctl_or_dash (dhf_dbus_appliance_get_state_reason (appliance)), NULL);
  dhfctl_table_add_row (
      table, "Autostart:", dhfctl_yes_no (dhf_dbus_appliance_get_autostart (appliance)), NULL);
  dhfctl_table_add_row (
      table, "Managed:", dhfctl_yes_no (dhf_dbus_appliance_get_managed (appliance)), NULL);
  dhfctl_table_add_row (
      table, "Vendor:", dhfctl_or_dash (dhf_dbus_appliance_get_vendor (appliance)), NULL);
  dhfctl_table_add_row (
      table, "Version:", dhfctl_or_dash (dhf_dbus_appliance_get_version (appliance)), NULL);
  dhfctl_table_add_row (table, "Memory:", memory, NULL);
  dhfctl_table_add_row (table, "VCPUs:", vcpus, NULL);
  dhfctl_table_print (table);
  return TRUE;
}

/* start, pause and resume: one call without arguments each. */
gboolean
dhfctl_cmd_lifecycle (DhfctlContext *ctx, const DhfctlCommand *cmd, int argc, char **argv,
                      GError **error)
{
  g_autoptr (GError) local_error = NULL;
  g_autoptr (GDBusObjectManager) manager = NULL;
  g_autoptr (DhfDBusAppliance) appliance = NULL;
  const gchar *name = NULL;
  const gchar *state = NULL;
  gboolean ok = FALSE;

  if (!dhfctl_parse_command_line (ctx, cmd, NULL, 1, 1, &argc, &argv, error))
    return FALSE;
  name = argv[1];
  if (!dhfctl_check_name (name, error))
    return FALSE;

  manager = dhfctl_get_object_manager (ctx, error);
  if (manager == NULL)
    return FALSE;
  appliance = dhfctl_lookup_appliance (manager, name, error);
  if (appliance == NULL)
    return FALSE;

  dhfctl_set_call_timeout (ctx, appliance, DHFCTL_DEFAULT_TIMEOUT_S);
  if (g_str_equal (cmd->name, "start"))
    {
      ok = dhf_dbus_appliance_call_start_sync (appliance, NULL, &local_error);
      state = "running";
    }
  else if (g_str_equal (cmd->name, "pause"))
    {
      ok = dhf_dbus_appliance_call_pause_sync (appliance, NULL, &local_error);
      state = "paused";
    }
  else
    {
      g_assert (g_str_equal (cmd->name, "resume"));
      ok = dhf_dbus_appliance_call_resume_sync (appliance, NULL, &local_error);
      state = "running";
    }

  if (!ok)
    {
      dhfctl_strip_remote_error (local_error);
      g_propagate_prefixed_error (error, g_steal_pointer (&local_error),
                                  "cannot %s '%s': ", cmd->name, name);
      return FALSE;
    }

  print_new_state (ctx, name, state, state);
  return TRUE;
}

gboolean
dhfctl_cmd_stop (DhfctlContext *ctx, const DhfctlCommand *cmd, int argc, char **argv,
                 GError **error)
{
  g_autoptr (GError) local_error = NULL;
  g_autofree gchar *grace_text = NULL;
  const GOptionEntry entries[] = {
    { "timeout", 0, 0, G_OPTION_ARG_STRING, &grace_text,
      "Wait SECONDS for the guest to shut down before forcing it off "
      "(default: dhfd's ShutdownTimeout)",
      "SECONDS" },
    G_OPTION_ENTRY_NULL,
  };
  g_autoptr (GDBusObjectManager) manager = NULL;
  g_autoptr (DhfDBusAppliance) appliance = NULL;
  g_autofree gchar *forced_text = NULL;
  guint64 grace_s = 0;
  gboolean forced = FALSE;
  gint64 started = 0;
  gint64 elapsed_s = 0;
  const gchar *name = NULL;

  if (!dhfctl_parse_command_line (ctx, cmd, entries, 1, 1, &argc, &argv, error))
    return FALSE;
  name = argv[1];
  if (!dhfctl_check_name (name, error))
    return FALSE;

  /* Shutdown takes milliseconds in a guint32; 0 means dhfd's default. */
  if (grace_text != NULL
      && !g_ascii_string_to_unsigned (grace_text, 10, 0, G_MAXUINT32 / 1000, &grace_s, NULL))
    {
      g_set_error (error, G_OPTION_ERROR, G_OPTION_ERROR_BAD_VALUE,
                   "stop --timeout needs a number of seconds from 0 to %u, not '%s'",
                   G_MAXUINT32 / 1000, grace_text);
      return FALSE;
    }

  manager = dhfctl_get_object_manager (ctx, error);
  if (manager == NULL)
    return FALSE;
  appliance = dhfctl_lookup_appliance (manager, name, error);
  if (appliance == NULL)
    return FALSE;

  /* The call returns once the appliance is off: leave room for the grace
   * period and for forcing it off afterwards. */
  dhfctl_set_call_timeout (ctx, appliance, (guint) MAX (DHFCTL_LONG_TIMEOUT_S, grace_s + 30));
  started = g_get_monotonic_time ();
  if (!dhf_dbus_appliance_call_shutdown_sync (appliance, (guint) grace_s * 1000, &forced, NULL,
                                              &local_error))
    {
      dhfctl_strip_remote_error (local_error);
      g_propagate_prefixed_error (error, g_steal_pointer (&local_error),
                                  "cannot stop '%s': ", name);
      return FALSE;
    }
  elapsed_s = (g_get_monotonic_time () - started + G_USEC_PER_SEC / 2) / G_USEC_PER_SEC;

  if (ctx->json)
    {
      g_autoptr (json_object) root = json_object_new_object ();

      json_object_object_add (root, "name", dhfctl_json_string (name));
      json_object_object_add (root, "state", dhfctl_json_string ("shutoff"));
      json_object_object_add (root, "forced", json_object_new_boolean (forced));
      dhfctl_print_json (root);
      return TRUE;
    }

  if (!forced)
    {
      print_new_state (ctx, name, "shutoff", "shut off");
      return TRUE;
    }
  /* The grace period the user chose, else how long it really took. */
  forced_text = g_strdup_printf ("forced off after %" G_GINT64_FORMAT "s",
                                 grace_s > 0 ? (gint64) grace_s : elapsed_s);
  print_new_state (ctx, name, "shutoff", forced_text);
  return TRUE;
}
