/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* dhfctl policy: check (a local lint with the policy library, no daemon),
 * and test, show and reload on org.dhf.Framework1.Policy. */
#include "config.h"

#include <string.h>

#include <dhf/dhf.h>

#include "dhf-policy.h"
#include "dhfctl.h"

static gboolean cmd_check (DhfctlContext *ctx, const DhfctlCommand *cmd, int argc, char **argv,
                           GError **error);
static gboolean cmd_test (DhfctlContext *ctx, const DhfctlCommand *cmd, int argc, char **argv,
                          GError **error);
static gboolean cmd_show (DhfctlContext *ctx, const DhfctlCommand *cmd, int argc, char **argv,
                          GError **error);
static gboolean cmd_reload (DhfctlContext *ctx, const DhfctlCommand *cmd, int argc, char **argv,
                            GError **error);

/* Named "policy X" so that GOption's usage lines read "dhfctl policy X". */
static const DhfctlCommand subcommands[] = {
  { "policy check", "[FILE…]", "Check policy files for errors and shadowed rules (no dhfd needed)",
    cmd_check },
  { "policy test", "SUBJECT SOURCE TARGET", "Ask dhfd what the policy in force decides", cmd_test },
  { "policy show", NULL, "Show the policy in force and the state of the last reload", cmd_show },
  { "policy reload", NULL, "Make dhfd reload the policy files now", cmd_reload },
};

/* The installed directories, admin first: what dhfd reads by default. */
static const gchar *const default_dirs[]
    = { DHF_SYSCONFDIR "/policy.d", DHF_DATADIR "/policy.d", NULL };

static const gchar *
plural (guint n, const gchar *one, const gchar *many)
{
  return n == 1 ? one : many;
}

static GPtrArray *
new_diagnostics (void)
{
  return g_ptr_array_new_with_free_func ((GDestroyNotify) dhf_policy_diagnostic_free);
}

/* The rule files dhf_policy_load_dirs() would read (an admin file replaces
 * the vendor file of the same name): only for the summary of a refused set. */
static guint
count_dir_files (const gchar *const *dirs)
{
  g_autoptr (GHashTable) names = g_hash_table_new_full (g_str_hash, g_str_equal, g_free, NULL);

  for (guint i = 0; dirs[i] != NULL; i++)
    {
      g_autoptr (GDir) dir = g_dir_open (dirs[i], 0, NULL);
      const gchar *name;

      while (dir != NULL && (name = g_dir_read_name (dir)) != NULL)
        {
          if (g_str_has_suffix (name, ".policy"))
            g_hash_table_add (names, g_strdup (name));
        }
    }
  return g_hash_table_size (names);
}

static json_object *
diagnostic_to_json (const DhfPolicyDiagnostic *diagnostic)
{
  json_object *object = json_object_new_object ();

  json_object_object_add (object, "severity",
                          json_object_new_string (diagnostic->severity == DHF_POLICY_SEVERITY_ERROR
                                                      ? "error"
                                                      : "warning"));
  json_object_object_add (object, "file", dhfctl_json_string (diagnostic->file));
  json_object_object_add (object, "line", json_object_new_int64 (diagnostic->line));
  json_object_object_add (object, "column", json_object_new_int64 (diagnostic->column));
  json_object_object_add (object, "message", dhfctl_json_string (diagnostic->message));
  return object;
}

static json_object *
strv_to_json (const gchar *const *strv)
{
  json_object *array = json_object_new_array ();

  for (guint i = 0; strv != NULL && strv[i] != NULL; i++)
    json_object_array_add (array, dhfctl_json_string (strv[i]));
  return array;
}

static void
print_lines (const gchar *const *lines, const gchar *indent)
{
  for (guint i = 0; lines != NULL && lines[i] != NULL; i++)
    {
      g_autofree gchar *safe = dhfctl_sanitize (lines[i]);

      g_print ("%s%s\n", indent, safe);
    }
}

static gboolean
cmd_check (DhfctlContext *ctx, const DhfctlCommand *cmd, int argc, char **argv, GError **error)
{
  g_auto (GStrv) dirs = NULL;
  const GOptionEntry entries[] = {
    { "dir", 0, 0, G_OPTION_ARG_FILENAME_ARRAY, &dirs,
      "Check the rule files of DIR (repeat it: the first takes precedence; default " DHF_SYSCONFDIR
      "/policy.d then " DHF_DATADIR "/policy.d)",
      "DIR" },
    G_OPTION_ENTRY_NULL,
  };
  g_autoptr (GPtrArray) diagnostics = new_diagnostics ();
  g_autoptr (DhfPolicy) policy = NULL;
  const gchar *const *searched = NULL;
  guint n_errors = 0, n_warnings = 0, n_files = 0;

  if (!dhfctl_parse_command_line (ctx, cmd, entries, 0, G_MAXINT, &argc, &argv, error))
    return FALSE;
  if (argc > 1 && dirs != NULL)
    {
      g_set_error_literal (error, G_OPTION_ERROR, G_OPTION_ERROR_FAILED,
                           "policy check: give FILEs or --dir, not both");
      return FALSE;
    }

  if (argc > 1)
    {
      policy = dhf_policy_load_files ((const gchar *const *) argv + 1, diagnostics);
      n_files = (guint) argc - 1;
    }
  else
    {
      searched = dirs != NULL ? (const gchar *const *) dirs : default_dirs;
      policy = dhf_policy_load_dirs (searched, diagnostics);
      n_files = count_dir_files (searched);
    }
  if (policy != NULL)
    n_files = g_strv_length ((gchar **) dhf_policy_get_files (policy));
  for (guint i = 0; i < diagnostics->len; i++)
    {
      const DhfPolicyDiagnostic *diagnostic = g_ptr_array_index (diagnostics, i);

      if (diagnostic->severity == DHF_POLICY_SEVERITY_ERROR)
        n_errors++;
      else
        n_warnings++;
    }
  /* A library that refuses a set says why; never report a refused set as
   * clean. */
  if (policy == NULL && n_errors == 0)
    n_errors = 1;
  if (n_errors > 0)
    ctx->exit_status = DHFCTL_EXIT_FAILED;

  if (ctx->json)
    {
      g_autoptr (json_object) root = json_object_new_object ();
      json_object *list = json_object_new_array ();

      for (guint i = 0; i < diagnostics->len; i++)
        json_object_array_add (list, diagnostic_to_json (g_ptr_array_index (diagnostics, i)));
      json_object_object_add (root, "valid", json_object_new_boolean (policy != NULL));
      json_object_object_add (
          root, "rules",
          policy != NULL ? json_object_new_int64 (dhf_policy_get_n_rules (policy)) : NULL);
      json_object_object_add (root, "files",
                              policy != NULL ? strv_to_json (dhf_policy_get_files (policy))
                                             : json_object_new_array ());
      json_object_object_add (root, "errors", json_object_new_int64 (n_errors));
      json_object_object_add (root, "warnings", json_object_new_int64 (n_warnings));
      json_object_object_add (root, "diagnostics", list);
      dhfctl_print_json (root);
      return TRUE;
    }

  for (guint i = 0; i < diagnostics->len; i++)
    {
      g_autofree gchar *line = dhf_policy_diagnostic_format (g_ptr_array_index (diagnostics, i));
      g_autofree gchar *safe = dhfctl_sanitize (line);

      g_print ("%s\n", safe);
    }
  if (policy != NULL)
    g_print ("%u %s in %u %s: %u %s, %u %s\n", dhf_policy_get_n_rules (policy),
             plural (dhf_policy_get_n_rules (policy), "rule", "rules"), n_files,
             plural (n_files, "file", "files"), n_errors, plural (n_errors, "error", "errors"),
             n_warnings, plural (n_warnings, "warning", "warnings"));
  else
    g_print ("%u %s: %u %s, %u %s; dhfd would refuse this set and keep its last good policy\n",
             n_files, plural (n_files, "file", "files"), n_errors,
             plural (n_errors, "error", "errors"), n_warnings,
             plural (n_warnings, "warning", "warnings"));
  return TRUE;
}

/* "redirected to vpn-gateway, notify": what the rule's options do. */
static gchar *
describe_options (GVariant *options)
{
  g_autoptr (GString) text = g_string_new (NULL);
  const gchar *value;

  if (g_variant_lookup (options, "target", "&s", &value))
    g_string_append_printf (text, ", redirected to %s", value);
  if (g_variant_lookup (options, "quota", "&s", &value))
    g_string_append_printf (text, ", at most %s calls in flight", value);
  if (g_variant_lookup (options, "mode", "&s", &value))
    g_string_append_printf (text, ", %s", value);
  if (g_variant_lookup (options, "host", "&s", &value))
    g_string_append_printf (text, ", dom0 does: %s", value);
  if (g_variant_lookup (options, "notify", "&s", &value) && g_str_equal (value, "yes"))
    g_string_append (text, ", notify");
  if (text->len == 0)
    return g_strdup ("");
  return g_strdup_printf (" (%s)", text->str + 2);
}

static gboolean
cmd_test (DhfctlContext *ctx, const DhfctlCommand *cmd, int argc, char **argv, GError **error)
{
  g_autoptr (GError) local_error = NULL;
  g_autoptr (DhfDBusPolicy) policy = NULL;
  g_autoptr (GVariant) options = NULL;
  g_autofree gchar *action = NULL;
  g_autofree gchar *rule = NULL;
  g_autofree gchar *file = NULL;
  g_autofree gchar *notes = NULL;
  g_autofree gchar *summary = NULL;
  guint line = 0;

  if (!dhfctl_parse_command_line (ctx, cmd, NULL, 3, 3, &argc, &argv, error))
    return FALSE;
  for (int i = 1; i < argc; i++)
    {
      if (!g_utf8_validate (argv[i], -1, NULL))
        {
          g_set_error (error, G_OPTION_ERROR, G_OPTION_ERROR_BAD_VALUE,
                       "policy test: argument %d is not valid UTF-8", i);
          return FALSE;
        }
    }
  policy = dhfctl_get_policy (ctx, error);
  if (policy == NULL)
    return FALSE;
  dhfctl_set_call_timeout (ctx, policy, DHFCTL_DEFAULT_TIMEOUT_S);
  if (!dhf_dbus_policy_call_test_sync (policy, argv[1], argv[2], argv[3], &action, &rule, &file,
                                       &line, &options, NULL, &local_error))
    {
      dhfctl_strip_remote_error (local_error);
      g_propagate_prefixed_error (error, g_steal_pointer (&local_error),
                                  "cannot test %s %s %s: ", argv[1], argv[2], argv[3]);
      return FALSE;
    }

  if (ctx->json)
    {
      g_autoptr (json_object) root = json_object_new_object ();
      json_object *opts = json_object_new_object ();
      GVariantIter iter;
      const gchar *key, *value;

      g_variant_iter_init (&iter, options);
      while (g_variant_iter_next (&iter, "{&s&s}", &key, &value))
        json_object_object_add (opts, key, dhfctl_json_string (value));
      json_object_object_add (root, "subject", dhfctl_json_string (argv[1]));
      json_object_object_add (root, "source", dhfctl_json_string (argv[2]));
      json_object_object_add (root, "target", dhfctl_json_string (argv[3]));
      json_object_object_add (root, "action", dhfctl_json_string (action));
      json_object_object_add (root, "default", json_object_new_boolean (line == 0));
      json_object_object_add (root, "rule", line != 0 ? dhfctl_json_string (rule) : NULL);
      json_object_object_add (root, "file", line != 0 ? dhfctl_json_string (file) : NULL);
      json_object_object_add (root, "line", line != 0 ? json_object_new_int64 (line) : NULL);
      json_object_object_add (root, "options", opts);
      dhfctl_print_json (root);
      return TRUE;
    }

  if (line == 0)
    {
      g_autofree gchar *safe_action = dhfctl_sanitize (action);

      g_print ("%s (no rule matched: default deny)\n", safe_action);
      return TRUE;
    }
  notes = describe_options (options);
  summary = g_strdup_printf ("%s%s", action, notes);
  {
    g_autofree gchar *safe_summary = dhfctl_sanitize (summary);
    g_autofree gchar *by = g_strdup_printf ("%s:%u: %s", file, line, rule);
    g_autofree gchar *safe_by = dhfctl_sanitize (by);

    g_print ("%s\n  by %s\n", safe_summary, safe_by);
  }
  return TRUE;
}

/* What dhfd says is in force while degraded: the "note: the policy files
 * were refused; ..." line its diagnostics end with. */
static const gchar *
in_force_text (const gchar *const *diagnostics)
{
  static const gchar prefix[] = "note: the policy files were refused; ";

  for (guint i = 0; diagnostics != NULL && diagnostics[i] != NULL; i++)
    if (g_str_has_prefix (diagnostics[i], prefix))
      return diagnostics[i] + strlen (prefix);
  return "the last good policy stays in force";
}

static gboolean
cmd_show (DhfctlContext *ctx, const DhfctlCommand *cmd, int argc, char **argv, GError **error)
{
  g_autoptr (GError) local_error = NULL;
  g_autoptr (DhfDBusPolicy) policy = NULL;
  g_autoptr (DhfctlTable) table = NULL;
  g_autofree gchar *text = NULL;
  g_autofree gchar *rules = NULL;
  g_autofree gchar *generation = NULL;
  g_autofree gchar *degraded_text = NULL;
  const gchar *const *files;
  const gchar *const *diagnostics;

  if (!dhfctl_parse_command_line (ctx, cmd, NULL, 0, 0, &argc, &argv, error))
    return FALSE;
  policy = dhfctl_get_policy (ctx, error);
  if (policy == NULL)
    return FALSE;
  dhfctl_set_call_timeout (ctx, policy, DHFCTL_DEFAULT_TIMEOUT_S);
  if (!dhf_dbus_policy_call_show_sync (policy, &text, NULL, &local_error))
    {
      dhfctl_strip_remote_error (local_error);
      g_propagate_prefixed_error (error, g_steal_pointer (&local_error),
                                  "cannot show the policy: ");
      return FALSE;
    }
  files = dhf_dbus_policy_get_files (policy);
  diagnostics = dhf_dbus_policy_get_diagnostics (policy);

  if (ctx->json)
    {
      g_autoptr (json_object) root = json_object_new_object ();

      json_object_object_add (root, "files", strv_to_json (files));
      json_object_object_add (root, "rules",
                              json_object_new_int64 (dhf_dbus_policy_get_rules (policy)));
      json_object_object_add (root, "generation",
                              json_object_new_uint64 (dhf_dbus_policy_get_generation (policy)));
      json_object_object_add (root, "degraded",
                              json_object_new_boolean (dhf_dbus_policy_get_degraded (policy)));
      json_object_object_add (root, "diagnostics", strv_to_json (diagnostics));
      json_object_object_add (root, "text", dhfctl_json_string (text));
      dhfctl_print_json (root);
      return TRUE;
    }

  table = dhfctl_table_new (2);
  rules = g_strdup_printf ("%u", dhf_dbus_policy_get_rules (policy));
  generation = g_strdup_printf ("%" G_GUINT64_FORMAT, dhf_dbus_policy_get_generation (policy));
  for (guint i = 0; files != NULL && files[i] != NULL; i++)
    dhfctl_table_add_row (table, i == 0 ? "Files:" : "", files[i], NULL);
  if (files == NULL || files[0] == NULL)
    dhfctl_table_add_row (table, "Files:", "-", NULL);
  dhfctl_table_add_row (table, "Rules:", rules, NULL);
  dhfctl_table_add_row (table, "Generation:", generation, NULL);
  degraded_text = dhf_dbus_policy_get_degraded (policy) ? g_strdup_printf (
                      "yes (the files on disk were refused; %s)", in_force_text (diagnostics))
                                                        : g_strdup ("no");
  dhfctl_table_add_row (table, "Degraded:", degraded_text, NULL);
  for (guint i = 0; diagnostics != NULL && diagnostics[i] != NULL; i++)
    dhfctl_table_add_row (table, i == 0 ? "Diagnostics:" : "", diagnostics[i], NULL);
  dhfctl_table_print (table);
  if (text != NULL && *text != '\0')
    {
      g_auto (GStrv) lines = g_strsplit (text, "\n", -1);
      guint n = g_strv_length (lines);

      /* The text ends with a newline: no empty last line. */
      if (n > 0 && *lines[n - 1] == '\0')
        g_clear_pointer (&lines[n - 1], g_free);
      g_print ("\n");
      print_lines ((const gchar *const *) lines, "");
    }
  return TRUE;
}

static gboolean
cmd_reload (DhfctlContext *ctx, const DhfctlCommand *cmd, int argc, char **argv, GError **error)
{
  g_autoptr (GError) local_error = NULL;
  g_autoptr (DhfDBusPolicy) policy = NULL;
  g_auto (GStrv) diagnostics = NULL;
  const gchar *const *files;
  gboolean applied = FALSE;
  guint n_files;

  if (!dhfctl_parse_command_line (ctx, cmd, NULL, 0, 0, &argc, &argv, error))
    return FALSE;
  policy = dhfctl_get_policy (ctx, error);
  if (policy == NULL)
    return FALSE;
  dhfctl_set_call_timeout (ctx, policy, DHFCTL_DEFAULT_TIMEOUT_S);
  if (!dhf_dbus_policy_call_reload_sync (policy, &applied, &diagnostics, NULL, &local_error))
    {
      dhfctl_strip_remote_error (local_error);
      g_propagate_prefixed_error (error, g_steal_pointer (&local_error),
                                  "cannot reload the policy: ");
      return FALSE;
    }
  /* dhfd sends PropertiesChanged before its reply: let the proxy see it. */
  while (g_main_context_iteration (NULL, FALSE))
    ;
  if (!applied)
    ctx->exit_status = DHFCTL_EXIT_FAILED;
  files = dhf_dbus_policy_get_files (policy);
  n_files = files != NULL ? g_strv_length ((gchar **) files) : 0;

  if (ctx->json)
    {
      g_autoptr (json_object) root = json_object_new_object ();

      json_object_object_add (root, "applied", json_object_new_boolean (applied));
      json_object_object_add (root, "rules",
                              json_object_new_int64 (dhf_dbus_policy_get_rules (policy)));
      json_object_object_add (root, "files", strv_to_json (files));
      json_object_object_add (root, "generation",
                              json_object_new_uint64 (dhf_dbus_policy_get_generation (policy)));
      json_object_object_add (root, "diagnostics",
                              strv_to_json ((const gchar *const *) diagnostics));
      dhfctl_print_json (root);
      return TRUE;
    }

  print_lines ((const gchar *const *) diagnostics, "");
  if (applied)
    g_print ("Reloaded: %u %s from %u %s in force\n", dhf_dbus_policy_get_rules (policy),
             plural (dhf_dbus_policy_get_rules (policy), "rule", "rules"), n_files,
             plural (n_files, "file", "files"));
  else
    {
      const gchar *in_force = in_force_text ((const gchar *const *) diagnostics);

      if (g_str_equal (in_force, "the last good policy stays in force"))
        g_printerr ("dhfctl: the policy files were refused; dhfd keeps the last good policy (%u "
                    "%s) and reports itself degraded\n",
                    dhf_dbus_policy_get_rules (policy),
                    plural (dhf_dbus_policy_get_rules (policy), "rule", "rules"));
      else
        g_printerr ("dhfctl: the policy files were refused and dhfd reports itself degraded; %s "
                    "(%u %s)\n",
                    in_force, dhf_dbus_policy_get_rules (policy),
                    plural (dhf_dbus_policy_get_rules (policy), "rule", "rules"));
    }
  return TRUE;
}

static void
print_policy_help (void)
{
  g_print ("Usage:\n  dhfctl policy SUBCOMMAND [OPTION…] [ARGUMENTS…]\n\nSubcommands:\n");
  for (gsize i = 0; i < G_N_ELEMENTS (subcommands); i++)
    {
      g_autofree gchar *usage
          = g_strjoin (" ", subcommands[i].name + strlen ("policy "), subcommands[i].args, NULL);

      /* Pad by display width: "…" is one column but three bytes. */
      g_print ("  %s%*s  %s\n", usage, (int) (30 - MIN (dhfctl_display_width (usage), 30)), "",
               subcommands[i].summary);
    }
  g_print ("\nRun 'dhfctl policy SUBCOMMAND --help' for the options of one subcommand.\n");
}

gboolean
dhfctl_cmd_policy (DhfctlContext *ctx, const DhfctlCommand *cmd, int argc, char **argv,
                   GError **error)
{
  g_autofree gchar *name = NULL;

  if (argc < 2)
    {
      g_set_error_literal (error, G_OPTION_ERROR, G_OPTION_ERROR_FAILED,
                           "policy: missing subcommand (check, test, show or reload)");
      return FALSE;
    }
  if (g_str_equal (argv[1], "--help") || g_str_equal (argv[1], "-h")
      || g_str_equal (argv[1], "help"))
    {
      print_policy_help ();
      return TRUE;
    }
  name = g_strconcat ("policy ", argv[1], NULL);
  for (gsize i = 0; i < G_N_ELEMENTS (subcommands); i++)
    {
      if (g_str_equal (subcommands[i].name, name))
        return subcommands[i].func (ctx, &subcommands[i], argc - 1, argv + 1, error);
    }
  g_set_error (error, G_OPTION_ERROR, G_OPTION_ERROR_FAILED,
               "policy: unknown subcommand '%s' (check, test, show or reload)", argv[1]);
  return FALSE;
}
