/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/* How a DhfClient reaches dhfd: parsing of XDM addresses and opening of
 * the file descriptor for each kind. Private to libdhf-1. Every fd returned
 * here is non-blocking and close-on-exec. */

#include <glib.h>

G_BEGIN_DECLS

typedef enum
{
  DHF_TRANSPORT_CHANNEL, /* the guest side of a virtio-serial (or Xen) port */
  DHF_TRANSPORT_VSOCK,
  DHF_TRANSPORT_UNIX,   /* dom0: dhfd's local socket */
  DHF_TRANSPORT_LISTEN, /* a socket dhfd connects to (simulated domains) */
} DhfTransportKind;

typedef struct
{
  DhfTransportKind kind;
  gchar *path; /* channel: the device (NULL: find the port by name); unix, listen: the socket */
  guint32 cid; /* vsock */
  guint32 port;
} DhfTransportAddress;

/* Parses "channel:[DEVICE]", "vsock:[CID[:PORT]]", "unix:[PATH]" or
 * "listen:PATH". DHF_ERROR_INVALID_ARGS when malformed. */
gboolean dhf_transport_address_parse (const gchar *text, DhfTransportAddress *address,
                                      GError **error);
void dhf_transport_address_clear (DhfTransportAddress *address);

/* $DHF_XDM_ADDRESS if set, else "channel:" when a port named
 * DHF_XDM_CHANNEL_NAME exists, else "unix:" DHF_XDM_DEFAULT_SOCKET. */
gchar *dhf_transport_default_address (void);

/* The device node of the virtio port named name: the directory
 * /sys/class/virtio-ports/vportNpM whose "name" file holds it gives
 * /dev/vportNpM (guests have no udev symlinks to rely on). Both paths are
 * prefixed with $DHF_SYSFS_ROOT when set (a fake root for tests).
 * DHF_ERROR_NOT_FOUND when there is no such port. */
gchar *dhf_transport_find_channel (const gchar *name, GError **error);

/* Opens a connection of a channel, vsock or unix address. Returns the fd;
 * *in_progress is set when a non-blocking connect() is still under way
 * (wait until the fd is writable, then call dhf_transport_finish_connect()).
 * *is_socket tells whether send() can be used on it. */
gint dhf_transport_connect (const DhfTransportAddress *address, gboolean *in_progress,
                            gboolean *is_socket, GError **error);
gboolean dhf_transport_finish_connect (gint fd, const DhfTransportAddress *address, GError **error);

/* Listens on the unix socket path (a stale socket file left by a dead
 * process is replaced; a live one is DHF_ERROR_EXISTS). */
gint dhf_transport_listen (const gchar *path, GError **error);
/* Accepts one connection; -1 with G_IO_ERROR_WOULD_BLOCK when none is
 * waiting. */
gint dhf_transport_accept (gint listen_fd, GError **error);

/* "unix:/run/dhf/xdm.sock", for messages. */
gchar *dhf_transport_address_to_string (const DhfTransportAddress *address);

G_END_DECLS
