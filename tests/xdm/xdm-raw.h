/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

#include <dhf/dhf.h>

#include "dhf-xdm-codec.h"

G_BEGIN_DECLS

/* A peer that speaks the XDM wire format by hand (dhf-xdm-codec.h), so
 * that a test can misbehave in ways libdhf-1 never would. All waits run
 * the main context (the simulated appliances' output keeps flowing) and
 * fail the test after XDM_WAIT_TIMEOUT_S. */
typedef struct
{
  gint fd;
  GByteArray *in;
} XdmRaw;

/* A listening socket at path (a simulated domain's channel socket). */
gint xdm_raw_listen (const gchar *path);
/* Waits for dhfd to connect to listen_fd. */
XdmRaw *xdm_raw_accept (gint listen_fd);
/* Connects to dhfd's dom0 socket. */
XdmRaw *xdm_raw_connect (const gchar *path);
void xdm_raw_free (XdmRaw *raw);
G_DEFINE_AUTOPTR_CLEANUP_FUNC (XdmRaw, xdm_raw_free)

/* Writes all of data; FALSE if the peer has closed the connection. */
gboolean xdm_raw_write (XdmRaw *raw, const void *data, gsize length);
/* Sends what the socket takes of data now: the byte count (maybe 0), or
 * -1 if the peer has closed the connection. */
gssize xdm_raw_send_some (XdmRaw *raw, const void *data, gsize length);
/* Waits until the socket is readable, or writable too if want_write. */
void xdm_raw_poll (XdmRaw *raw, gboolean want_write);
/* One frame with a JSON body (NULL: empty). */
gboolean xdm_raw_send (XdmRaw *raw, DhfXdmType type, guint32 id, const gchar *json);
/* Reads one frame; FALSE at the end of the connection. */
gboolean xdm_raw_read (XdmRaw *raw, DhfXdmMessage *msg);
/* Non-blocking: TRUE and a frame if a whole one is there (after reading
 * what the socket has); FALSE otherwise (*eof set at the end). */
gboolean xdm_raw_try_read (XdmRaw *raw, DhfXdmMessage *msg, gboolean *eof);
/* HELLO, then expects WELCOME naming domain. */
void xdm_raw_hello (XdmRaw *raw, const gchar *domain);
/* Expects ERROR with id and code; then, if closes, the end of the
 * connection (skipping nothing else). */
void xdm_raw_expect_error (XdmRaw *raw, guint32 id, const gchar *code, gboolean closes);

G_END_DECLS
