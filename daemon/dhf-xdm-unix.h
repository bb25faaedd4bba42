/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

#include <gio/gio.h>

#include "dhf-xdm-router.h"

G_BEGIN_DECLS

/* The dom0 transport of XDM: dhfd's local stream socket (dhfd.conf [XDM]
 * Socket=). Every connection it accepts is dom0, with the peer's uid and
 * pid from SO_PEERCRED, and is handed on as it is (the daemon hands it to
 * dhf_xdm_router_add_connection()). */

/* Takes ownership of fd, a connected, non-blocking stream socket. */
typedef void (*DhfXdmUnixAcceptFunc) (gint fd, const DhfXdmPeer *peer, gpointer user_data);

typedef struct
{
  const gchar *path;  /* absolute */
  guint mode;         /* permission bits of the socket file */
  const gchar *group; /* NULL: "dhf" if that group exists, else as created */
  gboolean replace;   /* take the path over even if a listener answers there */
} DhfXdmUnixOptions;

#define DHF_TYPE_XDM_UNIX (dhf_xdm_unix_get_type ())
G_DECLARE_FINAL_TYPE (DhfXdmUnix, dhf_xdm_unix, DHF, XDM_UNIX, GObject)

/* Creates the socket's directory (0755) if it is missing, removes a stale
 * socket (one nobody answers on), binds, sets the mode and group and
 * listens; accepted connections go to accept on the thread-default main
 * context. Fails (DHF_ERROR_EXISTS) when another process answers on the
 * path, unless options->replace; fails when the path is something other
 * than a socket (which is left alone), when a group named in options does
 * not exist, or on any system error. The socket file is removed when the
 * object goes, if it is still the one it made. */
DhfXdmUnix *dhf_xdm_unix_new (const DhfXdmUnixOptions *options, DhfXdmUnixAcceptFunc accept,
                              gpointer user_data, GError **error);
const gchar *dhf_xdm_unix_get_path (DhfXdmUnix *self);

G_END_DECLS
