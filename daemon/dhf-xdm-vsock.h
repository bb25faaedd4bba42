/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

#include <gio/gio.h>

#include "dhf-xdm-router.h"

G_BEGIN_DECLS

/* The vsock transport of XDM: dhfd listens on an AF_VSOCK port (dhfd.conf
 * [XDM] VsockPort=, DHF_XDM_VSOCK_PORT) and a guest connecting there is
 * the running domain whose live XML gives it that CID
 * (dhf_domain_xml_get_vsock_cid()). A CID no running domain has, or more
 * than one claims, is refused. */

/* Takes ownership of fd, a connected, non-blocking stream socket. */
typedef void (*DhfXdmVsockAcceptFunc) (gint fd, const DhfXdmPeer *peer, gpointer user_data);

/* The socket calls, a seam for tests (which stand AF_UNIX socketpairs in
 * for vsock). */
typedef struct
{
  /* A non-blocking listening socket on port, or -1 with error:
   * DHF_ERROR_NOT_SUPPORTED when the host has no vsock. */
  gint (*listen) (guint32 port, GError **error);
  /* One waiting connection, non-blocking and close-on-exec, with the
   * CID of its peer; -1 with errno set (EAGAIN: none waiting). */
  gint (*accept) (gint listen_fd, guint32 *peer_cid);
} DhfXdmVsockOps;

/* AF_VSOCK itself. */
const DhfXdmVsockOps *dhf_xdm_vsock_ops_default (void);

#define DHF_TYPE_XDM_VSOCK (dhf_xdm_vsock_get_type ())
G_DECLARE_FINAL_TYPE (DhfXdmVsock, dhf_xdm_vsock, DHF, XDM_VSOCK, GObject)

/* Listens on port (ops: NULL for dhf_xdm_vsock_ops_default()); accepted
 * connections of known domains go to accept on the thread-default main
 * context. Fails with the listen error. */
DhfXdmVsock *dhf_xdm_vsock_new (const DhfXdmVsockOps *ops, guint32 port,
                                DhfXdmVsockAcceptFunc accept, gpointer user_data, GError **error);
guint32 dhf_xdm_vsock_get_port (DhfXdmVsock *self);

/* Domain name has CID cid while it runs (0: none, it stopped). */
void dhf_xdm_vsock_update (DhfXdmVsock *self, const gchar *name, const gchar *uuid, guint32 cid);
/* The domain is gone. */
void dhf_xdm_vsock_remove (DhfXdmVsock *self, const gchar *name);
/* Forgets every CID: the hypervisor cannot be asked, so a CID may belong
 * to another domain by now. Every connection is refused until
 * dhf_xdm_vsock_update() tells again. */
void dhf_xdm_vsock_clear (DhfXdmVsock *self);
/* The only running domain with that CID, or NULL. */
const gchar *dhf_xdm_vsock_lookup (DhfXdmVsock *self, guint32 cid, const gchar **uuid);

G_END_DECLS
