/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* dhfctl: the main loop of the watch commands (devices watch, focus
 * --watch): they print from their proxy's signal handlers until
 * interrupted, or until dhfd leaves the bus. */
#include "config.h"

#include <dhf/dhf.h>

#include <glib-unix.h>
#include <signal.h>

#include "dhfctl.h"

typedef struct
{
  GMainLoop *loop;
  gboolean lost;
  gboolean interrupted;
} Watch;

static gboolean
stop_watching (gpointer user_data)
{
  Watch *watch = user_data;

  watch->interrupted = TRUE;
  g_main_loop_quit (watch->loop);
  return G_SOURCE_CONTINUE;
}

/* dhfd exited or was replaced: a new dhfd's first signals would describe
 * changes the reader never saw the start of, so the watch ends. */
static void
on_name_owner_changed (GObject *object, GParamSpec *pspec, gpointer user_data)
{
  Watch *watch = user_data;

  watch->lost = TRUE;
  g_main_loop_quit (watch->loop);
}

static void
on_closed (GDBusConnection *connection, gboolean remote_peer_vanished, GError *error,
           gpointer user_data)
{
  Watch *watch = user_data;

  watch->lost = TRUE;
  g_main_loop_quit (watch->loop);
}

gboolean
dhfctl_watch_run (DhfctlContext *ctx, GDBusProxy *proxy, const gchar *what, GError **error)
{
  g_autoptr (GMainLoop) loop = g_main_loop_new (NULL, FALSE);
  g_autofree gchar *owner = NULL;
  Watch watch = { loop, FALSE, FALSE };
  guint sigint_id, sigterm_id, sighup_id;
  gulong owner_id, closed_id;

  /* GIO would otherwise SIGTERM a process whose system or session bus goes
   * away, which would pass for an interrupt. */
  g_dbus_connection_set_exit_on_close (ctx->connection, FALSE);
  owner_id = g_signal_connect (proxy, "notify::g-name-owner", G_CALLBACK (on_name_owner_changed),
                               &watch);
  closed_id = g_signal_connect (ctx->connection, "closed", G_CALLBACK (on_closed), &watch);
  sigint_id = g_unix_signal_add (SIGINT, stop_watching, &watch);
  sigterm_id = g_unix_signal_add (SIGTERM, stop_watching, &watch);
  sighup_id = g_unix_signal_add (SIGHUP, stop_watching, &watch);

  /* dhfd may have left between the caller's check and the handlers. */
  owner = g_dbus_proxy_get_name_owner (proxy);
  if (owner != NULL && !g_dbus_connection_is_closed (ctx->connection))
    g_main_loop_run (loop);
  else
    watch.lost = TRUE;

  g_source_remove (sigint_id);
  g_source_remove (sigterm_id);
  g_source_remove (sighup_id);
  g_signal_handler_disconnect (ctx->connection, closed_id);
  g_signal_handler_disconnect (proxy, owner_id);

  if (watch.lost && !watch.interrupted)
    {
      g_set_error (error, DHF_ERROR, DHF_ERROR_DISCONNECTED, "lost dhfd while watching %s", what);
      return FALSE;
    }
  return TRUE;
}
