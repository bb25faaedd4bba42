/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* dhfctl devices: where every assignable device is and why (list, show,
 * watch), and the administrator's pins (assign, release), on
 * org.dhf.Framework1.Devices. */
#include "config.h"

#include <dhf/dhf.h>

#include <stdio.h>
#include <string.h>

#include "dhfctl.h"

static gboolean cmd_list (DhfctlContext *ctx, const DhfctlCommand *cmd, int argc, char **argv,
                          GError **error);
static gboolean cmd_show (DhfctlContext *ctx, const DhfctlCommand *cmd, int argc, char **argv,
                          GError **error);
static gboolean cmd_assign (DhfctlContext *ctx, const DhfctlCommand *cmd, int argc, char **argv,
                            GError **error);
static gboolean cmd_release (DhfctlContext *ctx, const DhfctlCommand *cmd, int argc, char **argv,
                             GError **error);
static gboolean cmd_watch (DhfctlContext *ctx, const DhfctlCommand *cmd, int argc, char **argv,
                           GError **error);

/* Named "devices X" so that GOption's usage lines read "dhfctl devices X". */
static const DhfctlCommand subcommands[] = {
  { "devices list", NULL, "List the devices, who has each one and why (the default)", cmd_list },
  { "devices show", "ID", "Show everything dhfd knows about one device", cmd_show },
  { "devices assign", "ID DOMAIN", "Pin a device to an appliance", cmd_assign },
  { "devices release", "ID", "Drop the pin; the device goes where the policy puts it",
    cmd_release },
  { "devices watch", NULL, "Print the devices, then each change, until interrupted", cmd_watch },
};

/* The keys "devices show" names, in its order; any others follow as they
 * come. */
typedef struct
{
  const gchar *key;
  const gchar *label;
} Field;

static const Field fields[] = {
  { "id", "ID:" },
  { "kind", "Kind:" },
  { "selector", "Selector:" },
  { "description", "Description:" },
  { "present", "Present:" },
  { "owner", "Owner:" },
  { "mode", "Mode:" },
  { "holder", "Holder:" },
  { "origin", "Origin:" },
  { "problem", "Problem:" },
  { "vendor", "Vendor:" },
  { "product", "Product:" },
  { "serial", "Serial:" },
  { "port", "Port:" },
  { "address", "Address:" },
  { "iommu-group", "IOMMU group:" },
  { "driver", "Driver:" },
  { "input-type", "Input type:" },
};

static gboolean
check_device_id (const gchar *id, GError **error)
{
  if (*id == '\0')
    {
      g_set_error_literal (error, G_OPTION_ERROR, G_OPTION_ERROR_BAD_VALUE,
                           "the device id must not be empty");
      return FALSE;
    }
  if (!g_utf8_validate (id, -1, NULL))
    {
      g_set_error_literal (error, G_OPTION_ERROR, G_OPTION_ERROR_BAD_VALUE,
                           "the device id is not valid UTF-8");
      return FALSE;
    }
  return TRUE;
}

/* For the subcommands that take one device id: parses the command line,
 * checks the id (*id then points into argv) and returns the Devices
 * proxy. */
static DhfDBusDevices *
devices_for_id (DhfctlContext *ctx, const DhfctlCommand *cmd, int argc, char **argv,
                const gchar **id, GError **error)
{
  if (!dhfctl_parse_command_line (ctx, cmd, NULL, 1, 1, &argc, &argv, error)
      || !check_device_id (argv[1], error))
    return NULL;
  *id = argv[1];
  return dhfctl_get_devices (ctx, error);
}

static const gchar *
lookup_string (GVariant *device, const gchar *key)
{
  const gchar *value = NULL;

  if (!g_variant_lookup (device, key, "&s", &value))
    return NULL;
  return value;
}

/* One value as "devices show" prints it: USB ids in hex as lsusb does, no
 * IOMMU group as "none". */
static gchar *
format_value (const gchar *key, GVariant *value)
{
  if (g_variant_is_of_type (value, G_VARIANT_TYPE_STRING))
    return g_strdup (dhfctl_or_dash (g_variant_get_string (value, NULL)));
  if (g_variant_is_of_type (value, G_VARIANT_TYPE_BOOLEAN))
    return g_strdup (dhfctl_yes_no (g_variant_get_boolean (value)));
  if (g_variant_is_of_type (value, G_VARIANT_TYPE_UINT16)
      && (g_str_equal (key, "vendor") || g_str_equal (key, "product")))
    return g_strdup_printf ("%04x", g_variant_get_uint16 (value));
  if (g_variant_is_of_type (value, G_VARIANT_TYPE_INT32) && g_str_equal (key, "iommu-group"))
    return g_variant_get_int32 (value) < 0 ? g_strdup ("none")
                                           : g_strdup_printf ("%d", g_variant_get_int32 (value));
  return g_variant_print (value, FALSE);
}

/* Calls List; returns its aa{sv}. */
static GVariant *
list_devices (DhfctlContext *ctx, DhfDBusDevices *devices, GError **error)
{
  g_autoptr (GError) local_error = NULL;
  GVariant *list = NULL;

  dhfctl_set_call_timeout (ctx, devices, DHFCTL_DEFAULT_TIMEOUT_S);
  if (!dhf_dbus_devices_call_list_sync (devices, &list, NULL, &local_error))
    {
      dhfctl_propagate_call_error (error, g_steal_pointer (&local_error), DHFCTL_DEVICES_INTERFACE,
                                   "cannot list the devices: ");
      return NULL;
    }
  return list;
}

static gboolean
cmd_list (DhfctlContext *ctx, const DhfctlCommand *cmd, int argc, char **argv, GError **error)
{
  g_autoptr (DhfDBusDevices) devices = NULL;
  g_autoptr (GVariant) list = NULL;
  g_autoptr (DhfctlTable) table = NULL;
  g_autoptr (GPtrArray) problems = g_ptr_array_new_with_free_func (g_free);
  gsize n;

  if (!dhfctl_parse_command_line (ctx, cmd, NULL, 0, 0, &argc, &argv, error))
    return FALSE;
  devices = dhfctl_get_devices (ctx, error);
  if (devices == NULL)
    return FALSE;
  list = list_devices (ctx, devices, error);
  if (list == NULL)
    return FALSE;
  n = g_variant_n_children (list);

  if (ctx->json)
    {
      g_autoptr (json_object) array = dhfctl_variant_to_json (list);

      dhfctl_print_json (array);
      return TRUE;
    }

  table = dhfctl_table_new (6);
  dhfctl_table_add_row (table, "ID", "KIND", "OWNER", "MODE", "HOLDER", "DESCRIPTION", NULL);
  for (gsize i = 0; i < n; i++)
    {
      g_autoptr (GVariant) device = g_variant_get_child_value (list, i);
      const gchar *id = lookup_string (device, "id");
      const gchar *problem = lookup_string (device, "problem");

      dhfctl_table_add_row (table, dhfctl_or_dash (id),
                            dhfctl_or_dash (lookup_string (device, "kind")),
                            dhfctl_or_dash (lookup_string (device, "owner")),
                            dhfctl_or_dash (lookup_string (device, "mode")),
                            dhfctl_or_dash (lookup_string (device, "holder")),
                            dhfctl_or_dash (lookup_string (device, "description")), NULL);
      /* Below the table, where they cannot break its columns. */
      if (problem != NULL && *problem != '\0')
        g_ptr_array_add (problems,
                         g_strdup_printf ("PROBLEM %s: %s", dhfctl_or_dash (id), problem));
    }
  dhfctl_table_print (table);
  for (guint i = 0; i < problems->len; i++)
    {
      g_autofree gchar *safe = dhfctl_sanitize (g_ptr_array_index (problems, i));

      g_print ("%s\n", safe);
    }
  return TRUE;
}

static gboolean
cmd_show (DhfctlContext *ctx, const DhfctlCommand *cmd, int argc, char **argv, GError **error)
{
  g_autoptr (DhfDBusDevices) devices = NULL;
  g_autoptr (GVariant) list = NULL;
  g_autoptr (GVariant) device = NULL;
  g_autoptr (DhfctlTable) table = NULL;
  GVariantIter iter;
  const gchar *key;
  GVariant *value;
  const gchar *id;

  devices = devices_for_id (ctx, cmd, argc, argv, &id, error);
  if (devices == NULL)
    return FALSE;
  list = list_devices (ctx, devices, error);
  if (list == NULL)
    return FALSE;

  /* List is the one source: there is no call for a single device. */
  for (gsize i = 0; device == NULL && i < g_variant_n_children (list); i++)
    {
      g_autoptr (GVariant) entry = g_variant_get_child_value (list, i);

      if (g_strcmp0 (lookup_string (entry, "id"), id) == 0)
        device = g_steal_pointer (&entry);
    }
  if (device == NULL)
    {
      g_set_error (error, DHF_ERROR, DHF_ERROR_NOT_FOUND, "no device with the id '%s'", id);
      return FALSE;
    }

  if (ctx->json)
    {
      g_autoptr (json_object) object = dhfctl_vardict_to_json (device);

      dhfctl_print_json (object);
      return TRUE;
    }

  table = dhfctl_table_new (2);
  for (gsize i = 0; i < G_N_ELEMENTS (fields); i++)
    {
      g_autoptr (GVariant) field = g_variant_lookup_value (device, fields[i].key, NULL);
      g_autofree gchar *text = NULL;

      /* The kind-specific keys only where the kind has them. */
      if (field == NULL)
        continue;
      text = format_value (fields[i].key, field);
      dhfctl_table_add_row (table, fields[i].label, text, NULL);
    }
  g_variant_iter_init (&iter, device);
  while (g_variant_iter_loop (&iter, "{&sv}", &key, &value))
    {
      g_autofree gchar *label = NULL;
      g_autofree gchar *text = NULL;
      gboolean known = FALSE;

      for (gsize i = 0; i < G_N_ELEMENTS (fields); i++)
        known = known || g_str_equal (fields[i].key, key);
      if (known)
        continue;
      /* A key from a newer dhfd: shown rather than hidden. */
      label = g_strconcat (key, ":", NULL);
      text = format_value (key, value);
      dhfctl_table_add_row (table, label, text, NULL);
    }
  dhfctl_table_print (table);
  return TRUE;
}

/* What assign and release did: {"id": ID, KEY: VALUE} with --json (value
 * is taken), else "ID: TEXT". */
static void
print_outcome (DhfctlContext *ctx, const gchar *id, const gchar *key, json_object *value,
               const gchar *text)
{
  g_autoptr (json_object) owned = value;

  if (ctx->json)
    {
      g_autoptr (json_object) root = json_object_new_object ();

      json_object_object_add (root, "id", dhfctl_json_string (id));
      json_object_object_add (root, key, g_steal_pointer (&owned));
      dhfctl_print_json (root);
    }
  else
    {
      g_autofree gchar *line = g_strconcat (id, ": ", text, NULL);
      g_autofree gchar *safe = dhfctl_sanitize (line);

      g_print ("%s\n", safe);
    }
}

static gboolean
cmd_assign (DhfctlContext *ctx, const DhfctlCommand *cmd, int argc, char **argv, GError **error)
{
  g_autoptr (GError) local_error = NULL;
  g_autoptr (DhfDBusDevices) devices = NULL;
  g_autofree gchar *pinned = NULL;
  GVariantBuilder options;
  const gchar *id, *domain;

  if (!dhfctl_parse_command_line (ctx, cmd, NULL, 2, 2, &argc, &argv, error))
    return FALSE;
  id = argv[1];
  domain = argv[2];
  if (!check_device_id (id, error) || !dhfctl_check_name (domain, error))
    return FALSE;
  devices = dhfctl_get_devices (ctx, error);
  if (devices == NULL)
    return FALSE;

  g_variant_builder_init (&options, G_VARIANT_TYPE_VARDICT);
  dhfctl_set_call_timeout (ctx, devices, DHFCTL_DEFAULT_TIMEOUT_S);
  if (!dhf_dbus_devices_call_assign_sync (devices, id, domain, g_variant_builder_end (&options),
                                          NULL, &local_error))
    {
      dhfctl_propagate_call_error (error, g_steal_pointer (&local_error), DHFCTL_DEVICES_INTERFACE,
                                   "cannot assign %s to '%s': ", id, domain);
      return FALSE;
    }

  pinned = g_strconcat ("pinned to ", domain, NULL);
  print_outcome (ctx, id, "holder", dhfctl_json_string (domain), pinned);
  return TRUE;
}

static gboolean
cmd_release (DhfctlContext *ctx, const DhfctlCommand *cmd, int argc, char **argv, GError **error)
{
  g_autoptr (GError) local_error = NULL;
  g_autoptr (DhfDBusDevices) devices = NULL;
  const gchar *id;

  devices = devices_for_id (ctx, cmd, argc, argv, &id, error);
  if (devices == NULL)
    return FALSE;

  dhfctl_set_call_timeout (ctx, devices, DHFCTL_DEFAULT_TIMEOUT_S);
  if (!dhf_dbus_devices_call_release_sync (devices, id, NULL, &local_error))
    {
      dhfctl_propagate_call_error (error, g_steal_pointer (&local_error), DHFCTL_DEVICES_INTERFACE,
                                   "cannot release %s: ", id);
      return FALSE;
    }

  print_outcome (ctx, id, "released", json_object_new_boolean (TRUE), "released");
  return TRUE;
}

/* "usb-1-2.3: owner corporate, mode pinned, holder corporate", then
 * ", not present" and ", problem: TEXT" when they apply; or the
 * dictionary as one JSON line. */
static void
print_device_line (DhfctlContext *ctx, GVariant *device)
{
  g_autoptr (GString) line = NULL;
  g_autofree gchar *safe = NULL;
  const gchar *problem = lookup_string (device, "problem");
  gboolean present = TRUE;

  if (ctx->json)
    {
      g_autoptr (json_object) object = dhfctl_vardict_to_json (device);

      dhfctl_print_json_line (object);
      return;
    }
  line = g_string_new (dhfctl_or_dash (lookup_string (device, "id")));
  g_string_append_printf (line, ": owner %s, mode %s, holder %s",
                          dhfctl_or_dash (lookup_string (device, "owner")),
                          dhfctl_or_dash (lookup_string (device, "mode")),
                          dhfctl_or_dash (lookup_string (device, "holder")));
  if (g_variant_lookup (device, "present", "b", &present) && !present)
    g_string_append (line, ", not present");
  if (problem != NULL && *problem != '\0')
    g_string_append_printf (line, ", problem: %s", problem);
  safe = dhfctl_sanitize (line->str);
  g_print ("%s\n", safe);
  /* The reader may be a pipe that acts on each line. */
  fflush (stdout);
}

static void
on_changed (DhfDBusDevices *devices, GVariant *device, gpointer user_data)
{
  print_device_line (user_data, device);
}

/* Every device as it is, then one line per Changed: a reader that keeps
 * the last line per id always knows where each device is. */
static gboolean
cmd_watch (DhfctlContext *ctx, const DhfctlCommand *cmd, int argc, char **argv, GError **error)
{
  g_autoptr (DhfDBusDevices) devices = NULL;
  g_autoptr (GVariant) list = NULL;
  gulong handler_id;
  gboolean ok;

  if (!dhfctl_parse_command_line (ctx, cmd, NULL, 0, 0, &argc, &argv, error))
    return FALSE;
  ctx->json_lines = TRUE;
  devices = dhfctl_get_devices (ctx, error);
  if (devices == NULL)
    return FALSE;
  /* Subscribed (by the proxy) before List: no change falls in between. */
  handler_id = g_signal_connect (devices, "changed", G_CALLBACK (on_changed), ctx);
  list = list_devices (ctx, devices, error);
  if (list == NULL)
    {
      g_signal_handler_disconnect (devices, handler_id);
      return FALSE;
    }
  for (gsize i = 0; i < g_variant_n_children (list); i++)
    {
      g_autoptr (GVariant) device = g_variant_get_child_value (list, i);

      print_device_line (ctx, device);
    }
  ok = dhfctl_watch_run (ctx, G_DBUS_PROXY (devices), "the devices", error);
  g_signal_handler_disconnect (devices, handler_id);
  return ok;
}

static void
print_devices_help (void)
{
  g_print ("Usage:\n  dhfctl devices [SUBCOMMAND] [OPTION…] [ARGUMENTS…]\n\nSubcommands:\n");
  for (gsize i = 0; i < G_N_ELEMENTS (subcommands); i++)
    {
      g_autofree gchar *usage
          = g_strjoin (" ", subcommands[i].name + strlen ("devices "), subcommands[i].args, NULL);

      g_print ("  %s%*s  %s\n", usage, (int) (18 - MIN (dhfctl_display_width (usage), 18)), "",
               subcommands[i].summary);
    }
  g_print ("\nRun 'dhfctl devices SUBCOMMAND --help' for the options of one subcommand.\n");
}

gboolean
dhfctl_cmd_devices (DhfctlContext *ctx, const DhfctlCommand *cmd, int argc, char **argv,
                    GError **error)
{
  g_autofree gchar *name = NULL;

  /* "dhfctl devices" and "dhfctl devices --json" list. */
  if (argc < 2
      || (argv[1][0] == '-' && !g_str_equal (argv[1], "--help") && !g_str_equal (argv[1], "-h")))
    return subcommands[0].func (ctx, &subcommands[0], argc, argv, error);
  if (g_str_equal (argv[1], "--help") || g_str_equal (argv[1], "-h")
      || g_str_equal (argv[1], "help"))
    {
      print_devices_help ();
      return TRUE;
    }
  name = g_strconcat ("devices ", argv[1], NULL);
  for (gsize i = 0; i < G_N_ELEMENTS (subcommands); i++)
    {
      if (g_str_equal (subcommands[i].name, name))
        return subcommands[i].func (ctx, &subcommands[i], argc - 1, argv + 1, error);
    }
  g_set_error (error, G_OPTION_ERROR, G_OPTION_ERROR_FAILED,
               "devices: unknown subcommand '%s' (list, show, assign, release or watch)", argv[1]);
  return FALSE;
}
