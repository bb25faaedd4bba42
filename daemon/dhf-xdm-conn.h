/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

#include <glib.h>

#include "dhf-xdm-codec.h"

G_BEGIN_DECLS

/* The bytes of XDM connections: non-blocking sockets, their input framing
 * and their output queues, for the router (dhf-xdm-router.c), which keeps
 * everything else.
 *
 * All connections of a router share one DhfXdmPoller: an epoll set that
 * is one GSource on the main context, so a wake-up costs the ready
 * connections, not all of them (dhfd may hold thousands of idle dom0
 * clients), and one read buffer, so an idle connection holds no buffer at
 * all. A dispatch reads each ready connection a bounded number of times
 * (READ_BUDGET bytes) and hands every complete frame to the router; a
 * connection that floods is served in turn with the others, the kernel
 * keeping the rest of its bytes. The poller also carries the router's
 * timer (one wake-up time), and after every dispatch calls settle(), where
 * the router flushes what it queued and closes what it condemned. */

typedef struct _DhfXdmPoller DhfXdmPoller;
typedef struct _DhfXdmConn DhfXdmConn;

typedef struct
{
  /* One complete frame whose header is valid (header). frame points at
   * the header, the body follows; the bytes are writable (the router
   * relays frames by patching the id) and valid until it returns. Returns
   * FALSE when the connection must not be read any further. */
  gboolean (*frame) (DhfXdmConn *conn, const DhfXdmHeader *header, guint8 *frame,
                     gpointer user_data);
  /* The connection is finished: error NULL for end of file at a frame
   * boundary, else why (DHF_ERROR_PROTOCOL for a bad header or end of file
   * inside a frame, the socket error as G_IO_ERROR). Reading has stopped;
   * the owner clears the connection when it suits it. */
  void (*failed) (DhfXdmConn *conn, GError *error, gpointer user_data);
  /* The time given to dhf_xdm_poller_set_timer() has come. */
  void (*timer) (gpointer user_data);
  /* After every dispatch. */
  void (*settle) (gpointer user_data);
} DhfXdmPollerFuncs;

DhfXdmPoller *dhf_xdm_poller_new (GMainContext *context, const DhfXdmPollerFuncs *funcs,
                                  gpointer user_data);
void dhf_xdm_poller_free (DhfXdmPoller *poller);
/* Asks for timer() at time (monotonic µs) or earlier; only ever moves the
 * wake-up earlier (a wake-up with nothing due is cheap, a reschedule is a
 * system call). dhf_xdm_poller_rearm() sets it exactly (-1: none). */
void dhf_xdm_poller_set_timer (DhfXdmPoller *poller, gint64 time);
void dhf_xdm_poller_rearm (DhfXdmPoller *poller, gint64 time);

/* Embedded in the owner's per-connection state; the fields are private to
 * dhf-xdm-conn.c except where noted. */
struct _DhfXdmConn
{
  DhfXdmPoller *poller;
  gint fd;
  guint32 events;     /* registered with epoll */
  gboolean reading;   /* FALSE once failed() was called or reading stopped */
  gboolean blocked;   /* the last write would have blocked: waiting for EPOLLOUT */
  gboolean use_write; /* not a socket: write() rather than send() */

  /* What a header must say to be taken, checked as soon as it is in,
   * before the body is buffered (the owner sets them; 0: no check beyond
   * the codec's): frames of another type than only_type, or with a body
   * longer than max_length, fail the connection (DHF_ERROR_PROTOCOL). */
  guint8 only_type;
  guint32 max_length;

  /* A partial header (fewer than DHF_XDM_HEADER_SIZE bytes) ... */
  guint8 head[DHF_XDM_HEADER_SIZE];
  gsize head_len;
  /* ... or a partial frame whose header was read. */
  DhfXdmHeader pend_header;
  guint8 *pend;
  gsize pend_len, pend_cap, pend_total;

  /* Output: out->data[out_head .. out->len] is still to be written.
   * Whole frames follow one another from out_bound to the end; when
   * out_bound > out_head, what lies between is the rest of a frame of
   * which a part was written already. */
  GByteArray *out;
  gsize out_head;
  gsize out_bound;
  gsize out_peak;

  guint64 bytes_in, bytes_out; /* public, read only */
};

/* Makes fd non-blocking and adds it to the poller; FALSE (fd untouched)
 * on failure. */
gboolean dhf_xdm_conn_init (DhfXdmConn *conn, DhfXdmPoller *poller, gint fd, GError **error);
/* Removes the connection from the poller, closes the socket, frees the
 * buffers. */
void dhf_xdm_conn_clear (DhfXdmConn *conn);
void dhf_xdm_conn_stop_reading (DhfXdmConn *conn);

/* The output queue, to append frames to with the codec's encoders. */
GByteArray *dhf_xdm_conn_get_out (DhfXdmConn *conn);
/* Bytes queued and not yet written. */
gsize dhf_xdm_conn_get_queued (DhfXdmConn *conn);
/* Queues a complete frame; when nothing is queued ahead of it and it is
 * large, writes it at once, copying only what the socket does not take. */
void dhf_xdm_conn_queue_frame (DhfXdmConn *conn, const guint8 *frame, gsize length);
/* Writes what the socket takes; when it blocks, waits for it to be
 * writable again (and flushes then by itself). FALSE on a socket error. */
gboolean dhf_xdm_conn_flush (DhfXdmConn *conn, GError **error);
gboolean dhf_xdm_conn_is_blocked (DhfXdmConn *conn);
/* Drops every queued frame not yet begun; a frame partly written is
 * finished (the peer must not see a cut frame). Returns the bytes
 * dropped. Frames must have been queued whole (the codec's encoders and
 * dhf_xdm_conn_queue_frame() do). */
gsize dhf_xdm_conn_discard_queued (DhfXdmConn *conn);

G_END_DECLS
