/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* dhfctl: the administrator's command line for dhfd. This file holds main(),
 * the command table and option parsing; the commands live in
 * dhfctl-appliance.c, dhfctl-manager.c, dhfctl-policy.c, dhfctl-xdm.c,
 * dhfctl-display.c and dhfctl-devices.c. */
#include "config.h"

#include <dhf/dhf.h>

#include <locale.h>

#include "dhfctl.h"

static gboolean cmd_help (DhfctlContext *ctx, const DhfctlCommand *cmd, int argc, char **argv,
                          GError **error);

static const DhfctlCommand commands[] = {
  { "list", NULL, "List the appliances", dhfctl_cmd_list },
  { "show", "NAME", "Show all properties of an appliance", dhfctl_cmd_show },
  { "start", "NAME", "Boot an appliance", dhfctl_cmd_lifecycle },
  { "stop", "NAME", "Shut an appliance down, forcing it off after a timeout", dhfctl_cmd_stop },
  { "pause", "NAME", "Suspend an appliance's virtual CPUs", dhfctl_cmd_lifecycle },
  { "resume", "NAME", "Resume a paused appliance", dhfctl_cmd_lifecycle },
  { "install", "MANIFEST", "Install or upgrade an appliance from a manifest", dhfctl_cmd_install },
  { "remove", "NAME", "Remove an appliance that dhfd installed", dhfctl_cmd_remove },
  { "status", NULL, "Show the state of dhfd and the hypervisor", dhfctl_cmd_status },
  { "policy", "check|test|show|reload", "Check, test, show or reload the admin policy",
    dhfctl_cmd_policy },
  { "xdm", "SUBCOMMAND",
    "Cross-domain messaging: list, services, subscriptions, call, publish, watch", dhfctl_cmd_xdm },
  { "switch", "NAME|dom0|next|prev", "Switch the display and input to an environment",
    dhfctl_cmd_switch },
  { "focus", NULL, "Show the focused environment (--watch: follow it)", dhfctl_cmd_focus },
  { "screenshot", "NAME FILE",
    "Save an appliance's screen as a PNG image (FILE -: standard output)", dhfctl_cmd_screenshot },
  { "devices", "[SUBCOMMAND]", "Device assignment: list, show, assign, release, watch",
    dhfctl_cmd_devices },
  { "help", "[COMMAND]", "Show help on dhfctl or on one command", cmd_help },
};

static void
dhfctl_context_clear (DhfctlContext *ctx)
{
  g_clear_pointer (&ctx->address, g_free);
  g_clear_pointer (&ctx->timeout, g_free);
  g_clear_pointer (&ctx->bus_description, g_free);
  g_clear_object (&ctx->connection);
}

G_DEFINE_AUTO_CLEANUP_CLEAR_FUNC (DhfctlContext, dhfctl_context_clear)

static const DhfctlCommand *
find_command (const gchar *name)
{
  for (gsize i = 0; i < G_N_ELEMENTS (commands); i++)
    {
      if (g_str_equal (commands[i].name, name))
        return &commands[i];
    }
  return NULL;
}

static gchar *
command_names (void)
{
  g_autoptr (GString) names = g_string_new (NULL);

  for (gsize i = 0; i < G_N_ELEMENTS (commands); i++)
    g_string_append_printf (names, "%s%s", i > 0 ? ", " : "", commands[i].name);
  return g_string_free (g_steal_pointer (&names), FALSE);
}

/* A command's own options, the global ones, then @extra. Globals work after
 * the command too, except where the command gives the name a meaning of its
 * own (stop --timeout). */
static GArray *
option_entries (DhfctlContext *ctx, const GOptionEntry *own, const GOptionEntry *extra)
{
  const GOptionEntry globals[] = {
    { "system", 0, 0, G_OPTION_ARG_NONE, &ctx->system_bus,
      "Talk to dhfd on the system bus (the default)", NULL },
    { "session", 0, 0, G_OPTION_ARG_NONE, &ctx->session_bus, "Talk to dhfd on the session bus",
      NULL },
    { "address", 0, 0, G_OPTION_ARG_STRING, &ctx->address, "Talk to dhfd on the bus at ADDR",
      "ADDR" },
    { "json", 0, 0, G_OPTION_ARG_NONE, &ctx->json, "Print JSON instead of text", NULL },
    { "timeout", 0, 0, G_OPTION_ARG_STRING, &ctx->timeout,
      "Wait at most SECONDS for dhfd to answer (default: 25; install, remove, stop: 120)",
      "SECONDS" },
  };
  GArray *entries = g_array_new (TRUE, TRUE, sizeof (GOptionEntry));

  for (const GOptionEntry *e = own; e != NULL && e->long_name != NULL; e++)
    g_array_append_val (entries, *e);
  for (gsize i = 0; i < G_N_ELEMENTS (globals); i++)
    {
      gboolean shadowed = FALSE;

      for (const GOptionEntry *e = own; e != NULL && e->long_name != NULL; e++)
        shadowed = shadowed || g_str_equal (e->long_name, globals[i].long_name);
      if (!shadowed)
        g_array_append_val (entries, globals[i]);
    }
  for (const GOptionEntry *e = extra; e != NULL && e->long_name != NULL; e++)
    g_array_append_val (entries, *e);
  return entries;
}

/* Checks what GOption cannot: exclusive bus options and a sane --timeout. */
static gboolean
check_global_options (DhfctlContext *ctx, GError **error)
{
  guint64 seconds = 0;

  if (ctx->system_bus + ctx->session_bus + (ctx->address != NULL) > 1)
    {
      g_set_error_literal (error, G_OPTION_ERROR, G_OPTION_ERROR_BAD_VALUE,
                           "use only one of --system, --session and --address");
      return FALSE;
    }
  if (ctx->timeout == NULL)
    return TRUE;
  /* The D-Bus timeout is a gint of milliseconds. */
  if (!g_ascii_string_to_unsigned (ctx->timeout, 10, 1, G_MAXINT / 1000, &seconds, NULL))
    {
      g_set_error (error, G_OPTION_ERROR, G_OPTION_ERROR_BAD_VALUE,
                   "--timeout needs a number of seconds from 1 to %d, not '%s'", G_MAXINT / 1000,
                   ctx->timeout);
      return FALSE;
    }
  ctx->timeout_s = (guint) seconds;
  return TRUE;
}

gboolean
dhfctl_parse_command_line (DhfctlContext *ctx, const DhfctlCommand *cmd,
                           const GOptionEntry *entries, int min_args, int max_args, int *argc,
                           char ***argv, GError **error)
{
  g_autoptr (GArray) all = option_entries (ctx, entries, NULL);
  g_autoptr (GOptionContext) context = g_option_context_new (cmd->args);
  g_autofree gchar *prgname = g_strdup_printf ("dhfctl %s", cmd->name);
  gboolean parsed;
  int n_args;

  g_option_context_set_summary (context, cmd->summary);
  g_option_context_add_main_entries (context, (const GOptionEntry *) (gpointer) all->data, NULL);

  /* GOption builds the usage line ("dhfctl stop [OPTION…] NAME") from it. */
  g_set_prgname (prgname);
  parsed = g_option_context_parse (context, argc, argv, error);
  g_set_prgname ("dhfctl");
  if (!parsed)
    return FALSE;

  n_args = *argc - 1;
  if (n_args < min_args)
    {
      g_set_error (error, G_OPTION_ERROR, G_OPTION_ERROR_FAILED, "%s: missing %s", cmd->name,
                   cmd->args);
      return FALSE;
    }
  if (n_args > max_args)
    {
      g_set_error (error, G_OPTION_ERROR, G_OPTION_ERROR_FAILED, "%s: unexpected argument '%s'",
                   cmd->name, (*argv)[max_args + 1]);
      return FALSE;
    }
  return check_global_options (ctx, error);
}

static gchar *
help_summary (void)
{
  g_autoptr (GString) summary = g_string_new ("Commands:\n");
  gsize width = 0;

  for (gsize i = 0; i < G_N_ELEMENTS (commands); i++)
    {
      g_autofree gchar *usage = g_strjoin (" ", commands[i].name, commands[i].args, NULL);

      width = MAX (width, strlen (usage));
    }
  for (gsize i = 0; i < G_N_ELEMENTS (commands); i++)
    {
      g_autofree gchar *usage = g_strjoin (" ", commands[i].name, commands[i].args, NULL);

      g_string_append_printf (summary, "  %-*s  %s\n", (int) width, usage, commands[i].summary);
    }
  g_string_truncate (summary, summary->len - 1);
  return g_string_free (g_steal_pointer (&summary), FALSE);
}

static GOptionContext *
main_option_context (DhfctlContext *ctx, gboolean *version)
{
  const GOptionEntry extra[] = {
    { "version", 0, 0, G_OPTION_ARG_NONE, version, "Print dhfctl's version and exit", NULL },
    G_OPTION_ENTRY_NULL,
  };
  g_autoptr (GArray) entries = option_entries (ctx, NULL, extra);
  g_autofree gchar *summary = help_summary ();
  GOptionContext *context = g_option_context_new ("COMMAND [ARGUMENTS…]");

  g_option_context_add_main_entries (context, (const GOptionEntry *) (gpointer) entries->data,
                                     NULL);
  /* Stop at the command: what follows is the command's to parse. */
  g_option_context_set_strict_posix (context, TRUE);
  g_option_context_set_summary (context, summary);
  g_option_context_set_description (
      context, "Without --system, --session or --address, dhfctl talks to the bus whose address\n"
               "is in $DHF_BUS_ADDRESS, or else to the system bus.\n"
               "\n"
               "Exit status: 0 success, 1 the operation failed, 2 usage error,\n"
               "3 dhfd not reachable, 4 no such appliance (or XDM service, device, pin),\n"
               "5 not authorized.\n"
               "\n"
               "Run 'dhfctl help COMMAND' for the options of one command.");
  return context;
}

static gboolean
cmd_help (DhfctlContext *ctx, const DhfctlCommand *cmd, int argc, char **argv, GError **error)
{
  const DhfctlCommand *topic = NULL;
  char *help_argv[] = { NULL, (char *) "--help", NULL };
  gboolean version = FALSE;
  g_autoptr (GOptionContext) context = NULL;
  g_autofree gchar *help = NULL;

  if (!dhfctl_parse_command_line (ctx, cmd, NULL, 0, 1, &argc, &argv, error))
    return FALSE;

  if (argc == 1)
    {
      context = main_option_context (ctx, &version);
      help = g_option_context_get_help (context, TRUE, NULL);
      g_print ("%s", help);
      return TRUE;
    }

  topic = find_command (argv[1]);
  if (topic == NULL)
    {
      g_autofree gchar *names = command_names ();

      g_set_error (error, G_OPTION_ERROR, G_OPTION_ERROR_FAILED,
                   "no command named '%s'\nCommands: %s", argv[1], names);
      return FALSE;
    }
  /* GOption prints the command's help and exits. */
  help_argv[0] = (char *) topic->name;
  return topic->func (ctx, topic, 2, help_argv, error);
}

static int
report_error (DhfctlContext *ctx, const DhfctlCommand *cmd, const GError *error)
{
  DhfctlExit status = dhfctl_exit_status_for_error (error);

  dhfctl_print_error (ctx, error);
  if (status == DHFCTL_EXIT_USAGE)
    g_printerr ("Try 'dhfctl%s%s --help' for more information.\n", cmd != NULL ? " " : "",
                cmd != NULL ? cmd->name : "");
  return status;
}

static int
run (DhfctlContext *ctx, int argc, char **argv)
{
  g_autoptr (GError) error = NULL;
  gboolean version = FALSE;
  g_autoptr (GOptionContext) context = main_option_context (ctx, &version);
  const DhfctlCommand *cmd = NULL;

  if (!g_option_context_parse (context, &argc, &argv, &error))
    return report_error (ctx, NULL, error);

  if (version)
    {
      g_print ("dhfctl %s\n", DHF_VERSION);
      return DHFCTL_EXIT_OK;
    }

  if (argc < 2)
    {
      g_set_error_literal (&error, G_OPTION_ERROR, G_OPTION_ERROR_FAILED, "no command given");
      return report_error (ctx, NULL, error);
    }

  cmd = find_command (argv[1]);
  if (cmd == NULL)
    {
      g_autofree gchar *names = command_names ();

      g_set_error (&error, G_OPTION_ERROR, G_OPTION_ERROR_FAILED,
                   "unknown command '%s'\nCommands: %s", argv[1], names);
      return report_error (ctx, NULL, error);
    }

  if (!cmd->func (ctx, cmd, argc - 1, argv + 1, &error))
    return report_error (ctx, cmd, error);
  return ctx->exit_status;
}

int
main (int argc, char **argv)
{
  g_auto (DhfctlContext) ctx = { 0 };

  setlocale (LC_ALL, "");
  g_set_prgname ("dhfctl");

  /* Registers org.dhf.Framework1.Error.* with GDBus, so that dhfd's errors
   * arrive in DHF_ERROR with their codes. */
  (void) dhf_error_quark ();

  return run (&ctx, argc, argv);
}
