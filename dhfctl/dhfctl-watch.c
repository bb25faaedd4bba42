/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* dhfctl: the main loop of the watch commands (devices watch, focus
 * --watch, xdm watch): they print from their signal handlers until
 * interrupted, or until what they watch goes away. */
#include "config.h"

#include <dhf/dhf.h>

#include <glib-unix.h>
#include <signal.h>

#include "dhfctl.h"

static gboolean
on_interrupt (gpointer user_data)
{
  DhfctlWatch *watch = user_data;

  watch->interrupted = TRUE;
  g_main_loop_quit (watch->loop);
  return G_SOURCE_CONTINUE;
}

void
dhfctl_watch_set_lost (DhfctlWatch *watch)
{
  watch->lost = TRUE;
  if (watch->loop != NULL)
    g_main_loop_quit (watch->loop);
}

gboolean
dhfctl_watch_wait (DhfctlWatch *watch)
{
  guint sigint_id, sigterm_id, sighup_id;

  watch->loop = g_main_loop_new (NULL, FALSE);
  sigint_id = g_unix_signal_add (SIGINT, on_interrupt, watch);
  sigterm_id = g_unix_signal_add (SIGTERM, on_interrupt, watch);
  sighup_id = g_unix_signal_add (SIGHUP, on_interrupt, watch);
  /* Lost before the loop ran: quitting a loop that is not running yet
   * would not stop it. */
  if (!watch->lost)
    g_main_loop_run (watch->loop);
  g_source_remove (sigint_id);
  g_source_remove (sigterm_id);
  g_source_remove (sighup_id);
  g_clear_pointer (&watch->loop, g_main_loop_unref);
  return !watch->lost || watch->interrupted;
}

/* dhfd exited or was replaced: a new dhfd's first signals would describe
 * changes the reader never saw the start of, so the watch ends. */
static void
on_name_owner_changed (GObject *object, GParamSpec *pspec, gpointer user_data)
{
  dhfctl_watch_set_lost (user_data);
}

static void
on_closed (GDBusConnection *connection, gboolean remote_peer_vanished, GError *error,
           gpointer user_data)
{
  dhfctl_watch_set_lost (user_data);
}

gboolean
dhfctl_watch_run (DhfctlContext *ctx, GDBusProxy *proxy, const gchar *what, GError **error)
{
  g_autofree gchar *owner = NULL;
  DhfctlWatch watch = { 0 };
  gulong owner_id, closed_id;
  gboolean ok;

  /* GIO would otherwise SIGTERM a process whose system or session bus goes
   * away, which would pass for an interrupt. */
  g_dbus_connection_set_exit_on_close (ctx->connection, FALSE);
  owner_id = g_signal_connect (proxy, "notify::g-name-owner", G_CALLBACK (on_name_owner_changed),
                               &watch);
  closed_id = g_signal_connect (ctx->connection, "closed", G_CALLBACK (on_closed), &watch);

  /* dhfd may have left between the caller's check and the handlers. */
  owner = g_dbus_proxy_get_name_owner (proxy);
  if (owner == NULL || g_dbus_connection_is_closed (ctx->connection))
    dhfctl_watch_set_lost (&watch);
  ok = dhfctl_watch_wait (&watch);

  g_signal_handler_disconnect (ctx->connection, closed_id);
  g_signal_handler_disconnect (proxy, owner_id);

  if (!ok)
    {
      g_set_error (error, DHF_ERROR, DHF_ERROR_DISCONNECTED, "lost dhfd while watching %s", what);
      return FALSE;
    }
  return TRUE;
}
