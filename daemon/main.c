/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include "config.h"

#include <locale.h>
#include <glib-unix.h>

#include "dhf-config.h"
#include "dhf-daemon.h"

static gboolean
on_signal (gpointer user_data)
{
  g_message ("shutting down on request");
  g_main_loop_quit (user_data);
  return G_SOURCE_CONTINUE;
}

static void
on_stopped (DhfDaemon *daemon, GMainLoop *loop)
{
  g_main_loop_quit (loop);
}

int
main (int argc, char **argv)
{
  gboolean opt_system = FALSE, opt_session = FALSE, opt_replace = FALSE, opt_verbose = FALSE;
  gboolean opt_version = FALSE;
  g_autofree gchar *opt_address = NULL;
  g_autofree gchar *opt_hypervisor = NULL;
  g_autofree gchar *opt_config = NULL;
  g_autofree gchar *opt_xdm_socket = NULL;
  const GOptionEntry entries[] = {
    { "system", 0, 0, G_OPTION_ARG_NONE, &opt_system, "Serve on the system bus (default)", NULL },
    { "session", 0, 0, G_OPTION_ARG_NONE, &opt_session, "Serve on the session bus", NULL },
    { "address", 0, 0, G_OPTION_ARG_STRING, &opt_address, "Serve on the bus at ADDRESS",
      "ADDRESS" },
    { "hypervisor", 0, 0, G_OPTION_ARG_STRING, &opt_hypervisor,
      "libvirt URI to manage (overrides the config file)", "URI" },
    { "config", 0, 0, G_OPTION_ARG_FILENAME, &opt_config,
      "Configuration file (default " DHF_CONFIG_DEFAULT_PATH ")", "FILE" },
    { "xdm-socket", 0, 0, G_OPTION_ARG_FILENAME, &opt_xdm_socket,
      "Listen for dom0 XDM clients on PATH (overrides the config file)", "PATH" },
    { "replace", 0, 0, G_OPTION_ARG_NONE, &opt_replace, "Take over from a running dhfd", NULL },
    { "verbose", 'v', 0, G_OPTION_ARG_NONE, &opt_verbose, "Log debug messages", NULL },
    { "version", 0, 0, G_OPTION_ARG_NONE, &opt_version, "Print the version and exit", NULL },
    { NULL }
  };
  g_autoptr (GOptionContext) context
      = g_option_context_new ("- Desktop Hypervisor Framework daemon");
  g_autoptr (GError) error = NULL;
  g_autoptr (DhfConfig) config = dhf_config_new ();
  g_autoptr (DhfDaemon) daemon = NULL;
  g_autoptr (GMainLoop) loop = NULL;
  DhfBusKind bus_kind = DHF_BUS_SYSTEM;
  gint status;

  setlocale (LC_ALL, "");
  /* Every log line goes to stderr (the journal under systemd), never to
   * stdout, whatever its level. */
  g_log_writer_default_set_use_stderr (TRUE);
  g_option_context_add_main_entries (context, entries, NULL);
  if (!g_option_context_parse (context, &argc, &argv, &error))
    {
      g_printerr ("dhfd: %s\n", error->message);
      return DHF_EXIT_USAGE;
    }
  if (opt_version)
    {
      g_print ("dhfd %s\n", DHF_VERSION);
      return DHF_EXIT_OK;
    }
  if (opt_system + opt_session + (opt_address != NULL) > 1)
    {
      g_printerr ("dhfd: --system, --session and --address exclude each other\n");
      return DHF_EXIT_USAGE;
    }
  if (opt_session)
    bus_kind = DHF_BUS_SESSION;
  else if (opt_address != NULL)
    bus_kind = DHF_BUS_ADDRESS;
  /* Debug output from dhf only, not from every library underneath. */
  if (opt_verbose)
    g_setenv ("G_MESSAGES_DEBUG", G_LOG_DOMAIN, FALSE);

  if (!dhf_config_load (config, opt_config != NULL ? opt_config : DHF_CONFIG_DEFAULT_PATH,
                        opt_config != NULL, &error))
    {
      g_printerr ("dhfd: configuration: %s\n", error->message);
      return DHF_EXIT_STARTUP_FAILED;
    }
  if (opt_hypervisor != NULL)
    {
      g_free (config->hypervisor_uri);
      config->hypervisor_uri = g_strdup (opt_hypervisor);
    }
  if (opt_xdm_socket != NULL && !dhf_config_set_xdm_socket (config, opt_xdm_socket, &error))
    {
      g_printerr ("dhfd: --xdm-socket: %s\n", error->message);
      return DHF_EXIT_USAGE;
    }

  loop = g_main_loop_new (NULL, FALSE);
  daemon = dhf_daemon_new (g_steal_pointer (&config), bus_kind, opt_address, opt_replace);
  g_signal_connect (daemon, "stopped", G_CALLBACK (on_stopped), loop);
  g_unix_signal_add (SIGTERM, on_signal, loop);
  g_unix_signal_add (SIGINT, on_signal, loop);
  if (!dhf_daemon_start (daemon, &error))
    {
      g_printerr ("dhfd: %s\n", error->message);
      return DHF_EXIT_STARTUP_FAILED;
    }
  g_main_loop_run (loop);
  status = dhf_daemon_get_exit_status (daemon);
  g_clear_object (&daemon);
  /* Let what is still queued (bus messages, finished worker results) run
   * and free itself, so that shutdown leaves nothing behind. */
  while (g_main_context_iteration (NULL, FALSE))
    ;
  return status;
}
