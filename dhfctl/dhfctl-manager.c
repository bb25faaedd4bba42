/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* dhfctl: the commands on org.dhf.Framework1.Manager: install, remove and
 * status. */
#include "config.h"

#include <dhf/dhf.h>

#include <errno.h>
#include <fcntl.h>
#include <gio/gunixinputstream.h>
#include <glib/gstdio.h>
#include <unistd.h>

#include "dhfctl.h"

/* The order status lists appliance counts in: active states first. */
static const DhfApplianceState state_order[] = {
  DHF_APPLIANCE_STATE_RUNNING,   DHF_APPLIANCE_STATE_PAUSED,  DHF_APPLIANCE_STATE_SHUTTING_DOWN,
  DHF_APPLIANCE_STATE_SUSPENDED, DHF_APPLIANCE_STATE_BLOCKED, DHF_APPLIANCE_STATE_CRASHED,
  DHF_APPLIANCE_STATE_SHUTOFF,   DHF_APPLIANCE_STATE_UNKNOWN,
};

/* Reads at most DHFCTL_MANIFEST_MAX_SIZE bytes of UTF-8 text from @path,
 * or from stdin for "-". */
static gchar *
read_manifest (const gchar *path, GError **error)
{
  g_autoptr (GInputStream) stream = NULL;
  g_autofree gchar *text = g_malloc (DHFCTL_MANIFEST_MAX_SIZE + 1);
  gsize length = 0;

  if (g_str_equal (path, "-"))
    {
      stream = g_unix_input_stream_new (STDIN_FILENO, FALSE);
    }
  else
    {
      int fd = g_open (path, O_RDONLY | O_CLOEXEC, 0);

      if (fd < 0)
        {
          int saved_errno = errno;

          g_set_error_literal (error, G_FILE_ERROR, g_file_error_from_errno (saved_errno),
                               g_strerror (saved_errno));
          return NULL;
        }
      stream = g_unix_input_stream_new (fd, TRUE);
    }

  /* One byte beyond the limit tells a file that is too large from one that
   * is exactly at it, without reading (say) /dev/zero forever. */
  if (!g_input_stream_read_all (stream, text, DHFCTL_MANIFEST_MAX_SIZE + 1, &length, NULL, error))
    return NULL;
  if (length > DHFCTL_MANIFEST_MAX_SIZE)
    {
      g_set_error (error, DHF_ERROR, DHF_ERROR_INVALID_MANIFEST, "larger than %u KiB",
                   DHFCTL_MANIFEST_MAX_SIZE / 1024);
      return NULL;
    }
  /* D-Bus strings are UTF-8 without NULs; this also rejects NULs. */
  if (!g_utf8_validate_len (text, length, NULL))
    {
      g_set_error_literal (error, DHF_ERROR, DHF_ERROR_INVALID_MANIFEST, "not UTF-8 text");
      return NULL;
    }
  text[length] = '\0';
  return g_steal_pointer (&text);
}

/* Relative paths in a manifest are relative to its directory; for stdin,
 * to the working directory. */
static gchar *
manifest_base_directory (const gchar *path, GError **error)
{
  g_autofree gchar *absolute = NULL;
  g_autofree gchar *directory = NULL;

  if (g_str_equal (path, "-"))
    {
      directory = g_get_current_dir ();
    }
  else
    {
      absolute = g_canonicalize_filename (path, NULL);
      directory = g_path_get_dirname (absolute);
    }

  if (!g_utf8_validate (directory, -1, NULL))
    {
      g_set_error (error, G_FILE_ERROR, G_FILE_ERROR_INVAL,
                   "the manifest's directory name is not valid UTF-8");
      return NULL;
    }
  return g_steal_pointer (&directory);
}

/* dhfd reports "summary:\n$.a: problem\n$.b: problem". Prefix each problem
 * with the file name, as compilers do, so that editors can jump to it. */
static void
label_problems (GError *error, const gchar *label)
{
  g_auto (GStrv) lines = g_strsplit (error->message, "\n", -1);
  g_autoptr (GString) message = g_string_new (lines[0]);

  for (guint i = 1; lines[i] != NULL; i++)
    {
      const gchar *problem = g_strstrip (lines[i]);

      /* Only problem lines start with a JSON path; not "... and 3 more". */
      if (*problem == '$')
        g_string_append_printf (message, "\n%s: %s", label, problem);
      else if (*problem != '\0')
        g_string_append_printf (message, "\n%s", problem);
    }
  g_free (error->message);
  error->message = g_string_free (g_steal_pointer (&message), FALSE);
}

gboolean
dhfctl_cmd_install (DhfctlContext *ctx, const DhfctlCommand *cmd, int argc, char **argv,
                    GError **error)
{
  g_autoptr (GError) local_error = NULL;
  gboolean allow_downgrade = FALSE;
  const GOptionEntry entries[] = {
    { "allow-downgrade", 0, 0, G_OPTION_ARG_NONE, &allow_downgrade,
      "Replace an installed appliance even with an older version", NULL },
    G_OPTION_ENTRY_NULL,
  };
  g_autofree gchar *text = NULL;
  g_autofree gchar *base_directory = NULL;
  g_autoptr (DhfDBusManager) manager = NULL;
  g_autoptr (DhfDBusAppliance) appliance = NULL;
  g_autofree gchar *object_path = NULL;
  g_autofree gchar *safe_name = NULL;
  g_autofree gchar *safe_version = NULL;
  GVariantBuilder options;
  gboolean upgraded = FALSE;
  const gchar *path = NULL;
  const gchar *label = NULL;
  const gchar *name = NULL;
  const gchar *version = NULL;

  if (!dhfctl_parse_command_line (ctx, cmd, entries, 1, 1, &argc, &argv, error))
    return FALSE;
  path = argv[1];
  label = g_str_equal (path, "-") ? "<stdin>" : path;

  text = read_manifest (path, &local_error);
  if (text == NULL)
    {
      g_propagate_prefixed_error (error, g_steal_pointer (&local_error), "cannot read %s: ", label);
      return FALSE;
    }
  base_directory = manifest_base_directory (path, &local_error);
  if (base_directory == NULL)
    {
      g_propagate_prefixed_error (error, g_steal_pointer (&local_error),
                                  "cannot install %s: ", label);
      return FALSE;
    }

  manager = dhfctl_get_manager (ctx, error);
  if (manager == NULL)
    return FALSE;

  g_variant_builder_init (&options, G_VARIANT_TYPE_VARDICT);
  g_variant_builder_add (&options, "{sv}", "base-directory", g_variant_new_string (base_directory));
  if (allow_downgrade)
    g_variant_builder_add (&options, "{sv}", "allow-downgrade", g_variant_new_boolean (TRUE));

  dhfctl_set_call_timeout (ctx, manager, DHFCTL_LONG_TIMEOUT_S);
  if (!dhf_dbus_manager_call_install_sync (manager, text, g_variant_builder_end (&options),
                                           &object_path, &upgraded, NULL, &local_error))
    {
      dhfctl_strip_remote_error (local_error);
      if (g_error_matches (local_error, DHF_ERROR, DHF_ERROR_INVALID_MANIFEST))
        label_problems (local_error, label);
      g_propagate_prefixed_error (error, g_steal_pointer (&local_error),
                                  "cannot install %s: ", label);
      return FALSE;
    }

  /* A proxy of its own: the ObjectManager may not have seen the new object
   * yet. Failing to read it back does not undo the install. */
  appliance = dhf_dbus_appliance_proxy_new_sync (ctx->connection,
                                                 G_DBUS_PROXY_FLAGS_DO_NOT_CONNECT_SIGNALS,
                                                 DHF_BUS_NAME, object_path, NULL, NULL);
  if (appliance != NULL)
    {
      name = dhf_dbus_appliance_get_name (appliance);
      version = dhf_dbus_appliance_get_version (appliance);
    }
  if (name == NULL)
    name = object_path;
  if (version == NULL)
    version = "";

  if (ctx->json)
    {
      g_autoptr (json_object) root = json_object_new_object ();

      json_object_object_add (root, "name", dhfctl_json_string (name));
      json_object_object_add (root, "version", dhfctl_json_string (version));
      json_object_object_add (root, "object_path", dhfctl_json_string (object_path));
      json_object_object_add (root, "upgraded", json_object_new_boolean (upgraded));
      dhfctl_print_json (root);
      return TRUE;
    }

  safe_name = dhfctl_sanitize (name);
  safe_version = dhfctl_sanitize (version);
  if (upgraded)
    g_print ("Upgraded %s to %s\n", safe_name, dhfctl_or_dash (safe_version));
  else if (*safe_version != '\0')
    g_print ("Installed %s (%s)\n", safe_name, safe_version);
  else
    g_print ("Installed %s\n", safe_name);
  return TRUE;
}

gboolean
dhfctl_cmd_remove (DhfctlContext *ctx, const DhfctlCommand *cmd, int argc, char **argv,
                   GError **error)
{
  g_autoptr (GError) local_error = NULL;
  gboolean force = FALSE;
  gboolean keep_storage = FALSE;
  const GOptionEntry entries[] = {
    { "force", 0, 0, G_OPTION_ARG_NONE, &force, "Stop the appliance first if it is running", NULL },
    { "keep-storage", 0, 0, G_OPTION_ARG_NONE, &keep_storage,
      "Keep the disk dhfd created at install", NULL },
    G_OPTION_ENTRY_NULL,
  };
  g_autoptr (DhfDBusManager) manager = NULL;
  g_autofree gchar *safe_name = NULL;
  GVariantBuilder options;
  const gchar *name = NULL;

  if (!dhfctl_parse_command_line (ctx, cmd, entries, 1, 1, &argc, &argv, error))
    return FALSE;
  name = argv[1];
  if (!dhfctl_check_name (name, error))
    return FALSE;

  manager = dhfctl_get_manager (ctx, error);
  if (manager == NULL)
    return FALSE;

  g_variant_builder_init (&options, G_VARIANT_TYPE_VARDICT);
  if (force)
    g_variant_builder_add (&options, "{sv}", "force", g_variant_new_boolean (TRUE));
  if (keep_storage)
    g_variant_builder_add (&options, "{sv}", "keep-storage", g_variant_new_boolean (TRUE));

  /* --force may shut the appliance down first. */
  dhfctl_set_call_timeout (ctx, manager, DHFCTL_LONG_TIMEOUT_S);
  if (!dhf_dbus_manager_call_remove_sync (manager, name, g_variant_builder_end (&options), NULL,
                                          &local_error))
    {
      dhfctl_strip_remote_error (local_error);
      g_propagate_prefixed_error (error, g_steal_pointer (&local_error),
                                  "cannot remove '%s': ", name);
      return FALSE;
    }

  if (ctx->json)
    {
      g_autoptr (json_object) root = json_object_new_object ();

      json_object_object_add (root, "name", dhfctl_json_string (name));
      json_object_object_add (root, "removed", json_object_new_boolean (TRUE));
      dhfctl_print_json (root);
      return TRUE;
    }
  safe_name = dhfctl_sanitize (name);
  g_print ("Removed %s\n", safe_name);
  return TRUE;
}

/* Counts appliances per state, indexed by DhfApplianceState; states this
 * dhfctl does not know count as unknown. */
static guint
count_states (GList *appliances, guint counts[DHF_APPLIANCE_STATE_BLOCKED + 1])
{
  guint total = 0;

  for (GList *l = appliances; l != NULL; l = l->next, total++)
    {
      DhfApplianceState state = DHF_APPLIANCE_STATE_UNKNOWN;

      if (!dhf_appliance_state_from_string (dhf_dbus_appliance_get_state (l->data), &state))
        state = DHF_APPLIANCE_STATE_UNKNOWN;
      counts[state]++;
    }
  return total;
}

/* FALSE when dhfd has no Policy interface (an older dhfd): the proxy
 * then caches no properties. */
static gboolean
has_policy (DhfDBusPolicy *policy)
{
  g_auto (GStrv) names = NULL;

  if (policy == NULL)
    return FALSE;
  names = g_dbus_proxy_get_cached_property_names (G_DBUS_PROXY (policy));
  return names != NULL && names[0] != NULL;
}

static json_object *
policy_to_json (DhfDBusPolicy *policy)
{
  json_object *object = json_object_new_object ();
  json_object *files = json_object_new_array ();
  const gchar *const *names = dhf_dbus_policy_get_files (policy);

  for (guint i = 0; names != NULL && names[i] != NULL; i++)
    json_object_array_add (files, dhfctl_json_string (names[i]));
  json_object_object_add (object, "rules",
                          json_object_new_int64 (dhf_dbus_policy_get_rules (policy)));
  json_object_object_add (object, "files", files);
  json_object_object_add (object, "degraded",
                          json_object_new_boolean (dhf_dbus_policy_get_degraded (policy)));
  json_object_object_add (object, "generation",
                          json_object_new_uint64 (dhf_dbus_policy_get_generation (policy)));
  return object;
}

/* "14 rules from 3 files", ", degraded" when the files on disk were refused. */
static gchar *
policy_summary (DhfDBusPolicy *policy)
{
  const gchar *const *files = dhf_dbus_policy_get_files (policy);
  guint n_files = files != NULL ? g_strv_length ((gchar **) files) : 0;
  guint n_rules = dhf_dbus_policy_get_rules (policy);

  return g_strdup_printf (
      "%u rule%s from %u file%s%s", n_rules, n_rules == 1 ? "" : "s", n_files,
      n_files == 1 ? "" : "s",
      dhf_dbus_policy_get_degraded (policy) ? ", degraded (see dhfctl policy show)" : "");
}

static void
print_status_json (DhfDBusManager *manager, DhfDBusPolicy *policy, guint total, const guint *counts)
{
  g_autoptr (json_object) root = json_object_new_object ();
  json_object *reasons = json_object_new_array ();
  json_object *appliances = json_object_new_object ();
  json_object *by_state = json_object_new_object ();
  const gchar *const *status_reasons = dhf_dbus_manager_get_status_reasons (manager);

  for (guint i = 0; status_reasons != NULL && status_reasons[i] != NULL; i++)
    json_object_array_add (reasons, dhfctl_json_string (status_reasons[i]));
  for (gsize i = 0; i < G_N_ELEMENTS (state_order); i++)
    json_object_object_add (by_state, dhf_appliance_state_to_string (state_order[i]),
                            json_object_new_int64 (counts[state_order[i]]));
  json_object_object_add (appliances, "total", json_object_new_int64 (total));
  json_object_object_add (appliances, "by_state", by_state);

  json_object_object_add (root, "version",
                          dhfctl_json_string (dhf_dbus_manager_get_version (manager)));
  json_object_object_add (root, "hypervisor",
                          dhfctl_json_string (dhf_dbus_manager_get_hypervisor (manager)));
  json_object_object_add (
      root, "hypervisor_connected",
      json_object_new_boolean (dhf_dbus_manager_get_hypervisor_connected (manager)));
  json_object_object_add (root, "status",
                          dhfctl_json_string (dhf_dbus_manager_get_status (manager)));
  json_object_object_add (root, "status_reasons", reasons);
  json_object_object_add (root, "appliances", appliances);
  json_object_object_add (root, "policy", has_policy (policy) ? policy_to_json (policy) : NULL);
  dhfctl_print_json (root);
}

static void
print_status_text (DhfDBusManager *manager, DhfDBusPolicy *policy, guint total, const guint *counts)
{
  g_autoptr (DhfctlTable) table = dhfctl_table_new (2);
  g_autoptr (GString) summary = g_string_new (NULL);
  const gchar *const *reasons = dhf_dbus_manager_get_status_reasons (manager);
  const gchar *separator = " (";

  g_string_printf (summary, "%u", total);
  for (gsize i = 0; i < G_N_ELEMENTS (state_order); i++)
    {
      if (counts[state_order[i]] == 0)
        continue;
      g_string_append_printf (summary, "%s%u %s", separator, counts[state_order[i]],
                              dhf_appliance_state_to_string (state_order[i]));
      separator = ", ";
    }
  if (total > 0)
    g_string_append_c (summary, ')');

  dhfctl_table_add_row (table, "Version:", dhfctl_or_dash (dhf_dbus_manager_get_version (manager)),
                        NULL);
  dhfctl_table_add_row (
      table, "Hypervisor:", dhfctl_or_dash (dhf_dbus_manager_get_hypervisor (manager)), NULL);
  dhfctl_table_add_row (table, "Hypervisor connected:",
                        dhfctl_yes_no (dhf_dbus_manager_get_hypervisor_connected (manager)), NULL);
  dhfctl_table_add_row (table, "Status:", dhfctl_or_dash (dhf_dbus_manager_get_status (manager)),
                        NULL);
  /* One line per reason, aligned under the first. */
  for (guint i = 0; reasons != NULL && reasons[i] != NULL; i++)
    dhfctl_table_add_row (table, i == 0 ? "Status reasons:" : "", reasons[i], NULL);
  dhfctl_table_add_row (table, "Appliances:", summary->str, NULL);
  if (has_policy (policy))
    {
      g_autofree gchar *text = policy_summary (policy);

      dhfctl_table_add_row (table, "Policy:", text, NULL);
    }
  dhfctl_table_print (table);
}

gboolean
dhfctl_cmd_status (DhfctlContext *ctx, const DhfctlCommand *cmd, int argc, char **argv,
                   GError **error)
{
  g_autoptr (DhfDBusManager) manager = NULL;
  g_autoptr (DhfDBusPolicy) policy = NULL;
  g_autoptr (GDBusObjectManager) object_manager = NULL;
  g_autolist (DhfDBusAppliance) appliances = NULL;
  guint counts[DHF_APPLIANCE_STATE_BLOCKED + 1] = { 0 };
  guint total = 0;

  if (!dhfctl_parse_command_line (ctx, cmd, NULL, 0, 0, &argc, &argv, error))
    return FALSE;

  manager = dhfctl_get_manager (ctx, error);
  if (manager == NULL)
    return FALSE;
  object_manager = dhfctl_get_object_manager (ctx, error);
  if (object_manager == NULL)
    return FALSE;
  appliances = dhfctl_list_appliances (object_manager);
  total = count_states (appliances, counts);
  /* The policy is part of dhfd's state, but a dhfd without it still has a
   * status worth showing. */
  policy = dhfctl_get_policy (ctx, NULL);

  if (ctx->json)
    print_status_json (manager, policy, total, counts);
  else
    print_status_text (manager, policy, total, counts);
  return TRUE;
}
