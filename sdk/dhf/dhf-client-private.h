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

/* The parts of DhfClient, split by concept over dhf-client*.c. */

typedef enum
{
  PENDING_CALL,    /* REPLY {"result"} */
  PENDING_OPEN,    /* REPLY {"window"}: the stream is created on arrival */
  PENDING_SIMPLE,  /* REGISTER, SUBSCRIBE, ...: REPLY {} */
  PENDING_RESTORE, /* re-REGISTER / re-SUBSCRIBE after a reconnection (I/O thread) */
} PendingKind;

typedef struct
{
  gatomicrefcount ref_count; /* heap pendings: the table and a cancellable connection */
  GList link;                /* in a completion batch */
  DhfClientCore *core;
  PendingKind kind;
  gboolean sync;
  guint32 id;
  guint gen;
  gint64 deadline; /* monotonic µs */

  /* guarded by core->lock */
  gboolean done;
  gboolean cancelled; /* sync: the cancellable fired */
  GCond cond;         /* sync waiter */
  gulong cancel_id;   /* async */

  gchar *result; /* CALL */
  GError *error;
  DhfStream *stream;        /* OPEN */
  gchar *service;           /* OPEN: the name as given, for the stream */
  gchar *target;            /* OPEN */
  gchar *what;              /* RESTORE: "service org.x.Y" */
  gboolean restore_service; /* RESTORE: of a service (its name in service), else a topic */
  GTask *task;              /* async */
  GCancellable *cancellable;
} DhfPending;

/* What the I/O thread (or a canceller) does once core->lock is released:
 * completing GTasks and cancelling invocations must not happen under it. */
typedef struct
{
  GQueue finished;    /* async DhfPending, removed from the table */
  GPtrArray *cancel;  /* GCancellable, GMainContext pairs of abandoned invocations */
  GPtrArray *dropped; /* DhfHandler out of the tables, to deactivate */
  gboolean notify;    /* "connected" changed */
  gboolean notify_value;
} Later;

/* A service registration or a subscription. It is a GSource attached to
 * the thread-default context of the thread that registered it: the I/O
 * thread queues invocations (or events) and wakes it; it runs them in a
 * batch. It lives until it is unregistered and its queue has drained. */
typedef struct
{
  GSource source;
  DhfClientCore *core; /* ref */
  guint id;
  gboolean is_service;
  gchar *name; /* service or topic */
  DhfServiceHandler service_handler;
  DhfEventHandler event_handler;
  gpointer user_data;
  GDestroyNotify notify;

  /* guarded by core->lock */
  GQueue queue;
  gboolean active;
  guint running;
  gboolean notified; /* notify was called */
} DhfHandler;

typedef struct
{
  GList link;
  gchar *topic;
  gchar *source;
  GRefString *data; /* NULL when the event had none */
  gsize size;       /* counted in core->handler_bytes */
} EventItem;
/* JSON helpers (dhf-client-json.c). */
gboolean dhf_core_check_body_size (GString *body, GError **error);
GString *dhf_core_start_service_body (const gchar *service, const gchar *target, GError **error);

/* Requests of ours in flight (dhf-client-requests.c). */
void dhf_core_finish_pending_locked (DhfClientCore *core, DhfPending *p, Later *later);
void dhf_core_insert_pending_locked (DhfClientCore *core, DhfPending *p, gint timeout_ms);
void dhf_core_later_abandon (Later *later, DhfInvocation *invocation);
void dhf_core_pending_clear_fields (DhfPending *p);
DhfPending *dhf_core_pending_new (DhfClientCore *core, PendingKind kind);
void dhf_core_pending_sync_init (DhfPending *p, DhfClientCore *core, PendingKind kind);
void dhf_core_request_async (DhfClientCore *core, DhfPending *p, DhfXdmType type,
                             const GString *body, gint timeout_ms);
gboolean dhf_core_request_sync (DhfClientCore *core, DhfPending *p, DhfXdmType type,
                                const GString *body, gint timeout_ms, GCancellable *cancellable,
                                GError **error);
gboolean dhf_core_request_sync_locked (DhfClientCore *core, DhfPending *p, DhfXdmType type,
                                       const GString *body, gint timeout_ms, GError **error);
gboolean dhf_core_require_connected_locked (DhfClientCore *core, GError **error);
void dhf_core_restore_done_locked (DhfClientCore *core, Later *later);
void dhf_core_run_later (DhfClientCore *core, Later *later);
void dhf_core_send_cancel_locked (DhfClientCore *core, DhfPending *p);

/* Services and subscriptions (dhf-client-handlers.c). */
void dhf_core_charge_handlers_locked (DhfClientCore *core, gsize bytes);
void dhf_core_handler_deactivate (DhfClientCore *core, DhfHandler *h);
DhfHandler *dhf_core_handler_new (DhfClientCore *core, gboolean is_service, const gchar *name);

/* The connection and the I/O thread (dhf-client-core.c). */
void dhf_core_close (DhfClientCore *core, const gchar *why);
guint64 dhf_core_get_serials (DhfClientCore *core);
gpointer dhf_core_io_thread_main (gpointer data);
DhfClientCore *dhf_core_new (const gchar *address);
gboolean dhf_core_request_connect (DhfClientCore *core, GError **error);
void dhf_core_run_in_context (GMainContext *context, GSourceFunc func, gpointer data,
                              GDestroyNotify destroy);
gboolean dhf_core_send_frame_locked (DhfClientCore *core, GByteArray *frame);
void dhf_core_set_state_locked (DhfClientCore *core, DhfConnState state, Later *later);
void dhf_core_update_io_events_locked (DhfClientCore *core);
gboolean dhf_core_wait_connected (DhfClientCore *core, guint64 serials, GCancellable *cancellable,
                                  GError **error);

/* The client object (dhf-client.c). */
void dhf_core_emit_connected (DhfClientCore *core, gboolean value);

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
