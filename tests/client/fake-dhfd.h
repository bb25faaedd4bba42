/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/* A scripted stand-in for dhfd's end of an XDM connection, for the client
 * tests: blocking reads and writes of frames through the codec, each read
 * bounded by a timeout so that a missing frame fails the test instead of
 * hanging it. */

#include <glib.h>

#include "dhf-client-private.h"

G_BEGIN_DECLS

typedef struct
{
  gint fd;
  GByteArray *in;
  gsize consumed; /* bytes of in that the last message borrowed */
  DhfXdmMessage msg;
  gboolean has_msg;
} FakeConn;

FakeConn *fake_conn_new (gint fd);
void fake_conn_free (FakeConn *conn);
G_DEFINE_AUTOPTR_CLEANUP_FUNC (FakeConn, fake_conn_free)

/* The next frame (borrowed until the next read), or NULL at end of file. */
const DhfXdmMessage *fake_conn_read (FakeConn *conn);
/* The next frame, which must be of type. */
const DhfXdmMessage *fake_conn_expect (FakeConn *conn, DhfXdmType type);
/* TRUE when the peer closed the connection (nothing else arrives first). */
gboolean fake_conn_wait_eof (FakeConn *conn);

void fake_conn_send_text (FakeConn *conn, DhfXdmType type, guint32 id, const gchar *json);
void fake_conn_send_raw (FakeConn *conn, guint32 id, const guint8 *data, gsize length);
void fake_conn_send_error (FakeConn *conn, guint32 id, const gchar *code, const gchar *message);
void fake_conn_send_bytes (FakeConn *conn, const guint8 *data, gsize length);

/* Reads HELLO and answers WELCOME naming domain. */
void fake_conn_handshake (FakeConn *conn, const gchar *domain);

gint fake_listen_unix (const gchar *path);
/* Accepts one connection (waits up to the timeout). */
gint fake_accept (gint listen_fd);
gint fake_connect_unix (const gchar *path);

/* The text of a JSON member of the current message body (NULL if absent). */
const gchar *fake_msg_string (const DhfXdmMessage *msg, const gchar *member);

G_END_DECLS
