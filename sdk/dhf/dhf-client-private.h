/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/* What DhfClient, DhfInvocation and DhfStream share inside libdhf-1.
 *
 * A DhfClient is a thin handle on a DhfClientCore, which holds the
 * connection and everything in flight. The core is reference counted so
 * that invocations, streams and the I/O thread can outlive the client
 * object: whichever thread drops the last reference of the client (even
 * the I/O thread, through a GTask it completed) only closes the
 * connection and stops the thread, and the memory goes with the last
 * reference of the core.
 *
 * One mutex (core->lock) guards all shared state: the connection, the
 * tables of requests, invocations, streams and handlers, and the state of
 * every stream. It is never held while user code runs, nor across
 * g_cancellable_connect()/g_cancellable_disconnect(). */

#include <json.h>

#include "dhf-client.h"
#include "dhf-invocation.h"
#include "dhf-stream.h"
#include "dhf-transport.h"
#include "dhf-xdm-codec.h"

G_BEGIN_DECLS

G_DEFINE_AUTOPTR_CLEANUP_FUNC (json_object, json_object_put)

/* Receive window of a stream, and the largest STREAM_DATA we send. */
#define DHF_STREAM_WINDOW    (1024u * 1024u)
#define DHF_STREAM_MAX_FRAME (256u * 1024u)

typedef enum
{
  DHF_CONN_IDLE,       /* no connection, not trying */
  DHF_CONN_CONNECTING, /* connect()/accept()/open() under way, or waiting to retry one */
  DHF_CONN_HANDSHAKE,  /* HELLO sent */
  DHF_CONN_RESTORING,  /* WELCOME received; services and subscriptions being restored */
  DHF_CONN_CONNECTED,
} DhfConnState;

typedef struct _DhfClientCore DhfClientCore;
typedef struct _DhfStreamState DhfStreamState;

struct _DhfClientCore
{
  gatomicrefcount ref_count;
  GWeakRef client; /* for callbacks: handlers get the DhfClient */

  gchar *address;
  DhfTransportAddress taddr;
  GError *address_error; /* the address did not parse */

  GMainContext *owner_context; /* where notify:: is emitted */
  GMainContext *context;       /* the I/O thread's */
  GThread *thread;
  gboolean quit; /* guarded by lock; the I/O thread exits */

  GMutex lock;
  GCond state_cond; /* connect waiters, close */

  DhfConnState state;
  guint gen;               /* bumped for every new connection */
  gboolean keep_connected; /* reconnect when the connection goes (connected once, not closed) */
  gboolean auto_reconnect;
  guint fail_serial;    /* bumped when an attempt waiters asked for failed */
  guint connect_serial; /* bumped at every transition to CONNECTED */
  GError *fail_error;
  GPtrArray *connect_tasks; /* GTask of dhf_client_connect() */
  guint backoff_ms;
  gboolean notified_connected; /* the value "connected" last had in the owner context */

  gint fd;
  gboolean fd_is_socket;
  gboolean broken;      /* a write failed: the I/O thread tears the connection down */
  gboolean broken_full; /* ... or what we must send would go over the hard cap */
  gboolean want_out;    /* outq has bytes: watch G_IO_OUT */
  gboolean read_paused; /* handlers hold over DHF_CLIENT_MAX_HANDLER_QUEUE: not reading */
  gsize handler_bytes;  /* queued for handlers (calls, events), all connections */
  GSource *io_source;
  gpointer io_tag;
  gint listen_fd;
  GSource *listen_source;
  GSource *retry_source;
  GSource *handshake_timeout;
  GSource *deadline_source; /* async requests' deadlines */
  gint64 armed_deadline;    /* its ready time, -1 if none */

  GByteArray *outq; /* bytes the socket did not take yet (I/O thread flushes) */
  gsize outq_off;

  guint8 *inbuf; /* I/O thread only */
  gsize in_len;
  gsize in_cap;

  gchar *domain;
  gchar *uuid;

  guint32 next_id;
  GHashTable *pending;     /* our request id -> DhfPending */
  GHashTable *streams;     /* stream id -> DhfStreamState (ref) */
  GHashTable *invocations; /* dhfd's request id -> DhfInvocation (no ref) */
  GHashTable *handlers;    /* registration / subscription id -> DhfHandler */
  GHashTable *services;    /* service name -> DhfHandler (no ref) */
  GHashTable *topics;      /* topic -> GPtrArray of DhfHandler (no ref) */
  guint next_handler_id;
  guint restoring; /* re-REGISTER / re-SUBSCRIBE not answered yet */
  /* Our STREAM_OPEN ids of this connection that we gave up on (cancel,
   * timeout) and dhfd has not answered yet: a late accepting REPLY is
   * answered with a reset, so that dhfd and the provider free the stream. */
  GHashTable *abandoned_opens;
  GHashTable *subscribing; /* topics whose first SUBSCRIBE is in flight (others wait) */
};

DhfClientCore *dhf_core_ref (DhfClientCore *core);
void dhf_core_unref (DhfClientCore *core);

/* Queues one frame (frame, then extra) on the connection of generation
 * gen: written at once when the socket takes it, the rest flushed by the
 * I/O thread. FALSE when that connection is gone. */
gboolean dhf_core_send_locked (DhfClientCore *core, guint gen, const guint8 *frame, gsize frame_len,
                               const guint8 *extra, gsize extra_len);
/* The same for a request of ours: refused with DHF_ERROR_LIMIT_EXCEEDED
 * (connection kept) when the outgoing queue would go over
 * DHF_CLIENT_MAX_OUTGOING_QUEUE, DHF_ERROR_DISCONNECTED when it is gone.
 * dhf_core_send_locked() is for what must go out (answers, credit,
 * CANCEL): beyond twice the limit it drops the connection. */
gboolean dhf_core_send_request_locked (DhfClientCore *core, guint gen, const guint8 *frame,
                                       gsize frame_len, GError **error);
/* Whether the outgoing queue is at DHF_CLIENT_MAX_OUTGOING_QUEUE: stream
 * writers wait (on their send_cond, broadcast when it drains). */
gboolean dhf_core_outq_full_locked (DhfClientCore *core);
/* A per-thread buffer to build frames in (emptied). */
GByteArray *dhf_core_scratch_frame (void);
/* The text of a JSON value (plain, compact), "null" for NULL. */
gchar *dhf_core_json_to_text (json_object *value);
/* Checks that text is one JSON value and nothing else, at most max_depth
 * deep; DHF_ERROR_INVALID_ARGS otherwise. */
gboolean dhf_core_json_validate (const gchar *text, gint max_depth, const gchar *what,
                                 GError **error);

/* Invocations (dhf-invocation.c). */
/* context: the handler's, where its cancellable is cancelled. */
DhfInvocation *dhf_core_invocation_new (DhfClientCore *core, guint gen, const DhfXdmMessage *msg,
                                        GMainContext *context);
/* The link by which the invocation is queued for its handler (no allocation). */
GList *dhf_core_invocation_link (DhfInvocation *self);
/* About how many bytes it holds (counted against DHF_CLIENT_MAX_HANDLER_QUEUE). */
gsize dhf_core_invocation_get_size (DhfInvocation *self);
/* The caller gave up, or the connection went: answers are dropped from now
 * on. Returns the cancellable to cancel once the lock is released (NULL if
 * none was asked for yet; a later one is born cancelled), and a reference
 * on the context to cancel it in. */
GCancellable *dhf_core_invocation_abandon_locked (DhfInvocation *self, GMainContext **context);

/* Streams (dhf-stream.c); all with core->lock held. */
DhfStream *dhf_core_stream_new_locked (DhfClientCore *core, guint gen, guint32 id,
                                       const gchar *service, const gchar *peer,
                                       guint32 peer_window);
void dhf_core_stream_data_locked (DhfStreamState *state, const guint8 *data, gsize length);
void dhf_core_stream_credit_locked (DhfStreamState *state, guint32 bytes);
/* error NULL: end of stream; else a reset (or the connection went). */
void dhf_core_stream_remote_closed_locked (DhfStreamState *state, const GError *error);
void dhf_core_stream_unref (DhfStreamState *state);
/* The outgoing queue drained below its limit: blocked writers go on. */
void dhf_core_stream_wake_writers_locked (DhfStreamState *state);

/* For tests: where the request ids of the current connection continue. */
void dhf_core_set_next_request_id (DhfClient *self, guint32 id);
/* For tests: bytes queued for handlers, and whether reading is paused. */
gsize dhf_core_get_handler_bytes (DhfClient *self, gboolean *read_paused);

G_END_DECLS
