/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include "config.h"

#include <errno.h>
#include <poll.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <unistd.h>

#include <glib/gstdio.h>

#include "dhf-client-private.h"
#include "dhf-version.h"

/* Threads. Every client has an I/O thread running its own GMainContext:
 * it connects, reads and dispatches every frame, flushes what the socket
 * did not take at once, and enforces the deadlines of async requests.
 * Writers (callers, handlers answering, stream writers) write directly
 * from their own thread under core->lock when nothing is queued, so a
 * call costs the caller one wake-up (the reply) and the provider one (its
 * handler running in the registration's context).
 *
 * Ids. Our request ids are allocated per connection in 1..2^31-1, wrap
 * around, and skip ids still in use by a request or a stream. dhfd's
 * requests (CALL, STREAM_OPEN to us) carry dhfd's own ids; answers and
 * CANCELs say by their direction which side's id they mean. Stream frames
 * do not, so an incoming STREAM_OPEN whose id we use for a stream or a
 * request of ours is refused. */

#define BACKOFF_MIN_MS       100
#define BACKOFF_MAX_MS       2000
#define HANDSHAKE_TIMEOUT_MS 10000
#define INBUF_MIN            (256 * 1024)
#define REQUEST_ID_MAX       0x7fffffffu
#define CLOSE_FLUSH_MS       2000

struct _DhfClient
{
  GObject parent_instance;

  DhfClientCore *core;
  gchar *address; /* construct property, before the core exists */
};

enum
{
  PROP_0,
  PROP_ADDRESS,
  PROP_DOMAIN,
  PROP_CONNECTED,
  PROP_AUTO_RECONNECT,
  N_PROPS
};

static GParamSpec *props[N_PROPS];

G_DEFINE_FINAL_TYPE (DhfClient, dhf_client, G_TYPE_OBJECT)

/* ---- requests in flight ------------------------------------------------ */

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

static DhfPending *
pending_new (DhfClientCore *core, PendingKind kind)
{
  DhfPending *p = g_new0 (DhfPending, 1);

  g_atomic_ref_count_init (&p->ref_count);
  p->link.data = p;
  p->core = core;
  p->kind = kind;
  return p;
}

static void
pending_clear_fields (DhfPending *p)
{
  g_clear_pointer (&p->result, g_free);
  g_clear_error (&p->error);
  g_clear_object (&p->stream);
  g_clear_pointer (&p->service, g_free);
  g_clear_pointer (&p->target, g_free);
  g_clear_pointer (&p->what, g_free);
  g_clear_object (&p->task);
  g_clear_object (&p->cancellable);
}

static void
pending_unref (gpointer data)
{
  DhfPending *p = data;

  if (!g_atomic_ref_count_dec (&p->ref_count))
    return;
  pending_clear_fields (p);
  g_free (p);
}

static DhfPending *
pending_ref (DhfPending *p)
{
  g_atomic_ref_count_inc (&p->ref_count);
  return p;
}

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

static gboolean
cancel_in_context_cb (gpointer data)
{
  g_cancellable_cancel (data);
  return G_SOURCE_REMOVE;
}

/* Abandons an invocation: its cancellable (if it has one yet) is
 * cancelled in its handler's context, not on the I/O thread, so that
 * "cancelled" handlers may do what they do in any handler. */
static void
later_abandon (Later *later, DhfInvocation *invocation)
{
  GMainContext *context = NULL;
  GCancellable *cancellable = dhf_core_invocation_abandon_locked (invocation, &context);

  if (cancellable == NULL)
    return;
  if (later->cancel == NULL)
    later->cancel = g_ptr_array_new ();
  g_ptr_array_add (later->cancel, cancellable);
  g_ptr_array_add (later->cancel, context);
}

/* ---- handlers: registered services and subscriptions ------------------- */

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

static void
event_item_free (EventItem *item)
{
  g_free (item->topic);
  g_free (item->source);
  if (item->data != NULL)
    g_ref_string_release (item->data);
  g_free (item);
}

static void handler_finish (DhfHandler *h);
static void update_io_events_locked (DhfClientCore *core);

/* Over DHF_CLIENT_MAX_HANDLER_QUEUE the I/O thread stops reading: dhfd
 * queues (and over its limit drops events, refuses calls) instead of us. */
static void
charge_handlers_locked (DhfClientCore *core, gsize bytes)
{
  core->handler_bytes += bytes;
  if (!core->read_paused && core->handler_bytes >= DHF_CLIENT_MAX_HANDLER_QUEUE)
    {
      core->read_paused = TRUE;
      update_io_events_locked (core);
    }
}

/* Reading resumes once the handlers have drained half of it; the I/O
 * thread is woken for the frames it had buffered already. */
static void
uncharge_handlers_locked (DhfClientCore *core, gsize bytes)
{
  core->handler_bytes -= MIN (bytes, core->handler_bytes);
  if (core->read_paused && core->handler_bytes <= DHF_CLIENT_MAX_HANDLER_QUEUE / 2)
    {
      core->read_paused = FALSE;
      update_io_events_locked (core);
      if (core->io_source != NULL)
        g_source_set_ready_time (core->io_source, 0);
    }
}

static gsize
queued_item_size (DhfHandler *h, gpointer item)
{
  return h->is_service ? dhf_core_invocation_get_size (item) : ((EventItem *) item)->size;
}

static gboolean
handler_dispatch (GSource *source, GSourceFunc callback, gpointer user_data)
{
  DhfHandler *h = (DhfHandler *) source;
  DhfClientCore *core = h->core;
  g_autoptr (DhfClient) client = NULL;
  GQueue batch;
  gboolean active;
  gboolean finished;
  GList *link;

  g_source_set_ready_time (source, -1);
  g_mutex_lock (&core->lock);
  batch = h->queue;
  g_queue_init (&h->queue);
  active = h->active;
  h->running++;
  g_mutex_unlock (&core->lock);

  if (active)
    client = g_weak_ref_get (&core->client);
  while ((link = g_queue_pop_head_link (&batch)) != NULL)
    {
      if (h->is_service)
        {
          DhfInvocation *invocation = link->data;

          /* A handler may unregister itself: later items are refused. */
          g_mutex_lock (&core->lock);
          active = h->active;
          uncharge_handlers_locked (core, dhf_core_invocation_get_size (invocation));
          g_mutex_unlock (&core->lock);
          if (active && client != NULL)
            h->service_handler (client, invocation, h->user_data);
          else
            dhf_invocation_return_error (invocation, DHF_ERROR_NOT_FOUND,
                                         "the service is no longer provided");
          g_object_unref (invocation);
        }
      else
        {
          EventItem *item = link->data;

          g_mutex_lock (&core->lock);
          active = h->active;
          uncharge_handlers_locked (core, item->size);
          g_mutex_unlock (&core->lock);
          if (active && client != NULL)
            h->event_handler (client, item->topic, item->source, item->data, h->user_data);
          event_item_free (item);
        }
    }

  g_mutex_lock (&core->lock);
  h->running--;
  finished = !h->active && h->running == 0 && h->queue.length == 0 && !h->notified;
  if (finished)
    h->notified = TRUE;
  g_mutex_unlock (&core->lock);
  if (finished)
    handler_finish (h);
  return G_SOURCE_CONTINUE;
}

static void
handler_finalize (GSource *source)
{
  DhfHandler *h = (DhfHandler *) source;
  GList *link;

  /* Only reached once the handler is inactive and drained, or never
   * attached; drop whatever is left without calling user code. */
  g_mutex_lock (&h->core->lock);
  for (GList *l = h->queue.head; l != NULL; l = l->next)
    uncharge_handlers_locked (h->core, queued_item_size (h, l->data));
  g_mutex_unlock (&h->core->lock);
  while ((link = g_queue_pop_head_link (&h->queue)) != NULL)
    {
      if (h->is_service)
        g_object_unref (link->data);
      else
        event_item_free (link->data);
    }
  g_free (h->name);
  dhf_core_unref (h->core);
}

static GSourceFuncs handler_funcs = {
  .dispatch = handler_dispatch,
  .finalize = handler_finalize,
};

/* Calls the destroy notify and detaches the source: the registration is
 * gone. Called once, without core->lock. */
static void
handler_finish (DhfHandler *h)
{
  if (h->notify != NULL)
    h->notify (h->user_data);
  h->notify = NULL;
  g_source_destroy (&h->source);
}

static DhfHandler *
handler_new (DhfClientCore *core, gboolean is_service, const gchar *name)
{
  GSource *source = g_source_new (&handler_funcs, sizeof (DhfHandler));
  DhfHandler *h = (DhfHandler *) source;

  g_source_set_static_name (source, is_service ? "dhf service" : "dhf subscription");
  h->core = dhf_core_ref (core);
  h->is_service = is_service;
  h->name = g_strdup (name);
  h->active = TRUE;
  g_queue_init (&h->queue);
  return h;
}

/* Deactivates h (already out of the tables). With nothing queued or
 * running its notify runs now; otherwise its context drains the queue
 * (refusing the invocations) and then calls it. */
static void
handler_deactivate (DhfClientCore *core, DhfHandler *h)
{
  gboolean finish_now;

  g_mutex_lock (&core->lock);
  h->active = FALSE;
  finish_now = h->running == 0 && h->queue.length == 0 && !h->notified;
  if (finish_now)
    h->notified = TRUE;
  else if (!h->notified)
    g_source_set_ready_time (&h->source, 0);
  g_mutex_unlock (&core->lock);
  if (finish_now)
    handler_finish (h);
  g_source_unref (&h->source);
}

/* ---- the core ----------------------------------------------------------- */

typedef struct
{
  GSource source;
  DhfClientCore *core;
} CoreSource;

static gboolean io_dispatch (GSource *source, GSourceFunc callback, gpointer user_data);
static gboolean listen_dispatch (GSource *source, GSourceFunc callback, gpointer user_data);
static gboolean deadline_dispatch (GSource *source, GSourceFunc callback, gpointer user_data);

static GSourceFuncs io_funcs = { .dispatch = io_dispatch };
static GSourceFuncs listen_funcs = { .dispatch = listen_dispatch };
static GSourceFuncs deadline_funcs = { .dispatch = deadline_dispatch };

static GSource *
core_source_new (DhfClientCore *core, GSourceFuncs *funcs, const gchar *name)
{
  GSource *source = g_source_new (funcs, sizeof (CoreSource));

  ((CoreSource *) source)->core = core;
  g_source_set_static_name (source, name);
  return source;
}

DhfClientCore *
dhf_core_ref (DhfClientCore *core)
{
  g_atomic_ref_count_inc (&core->ref_count);
  return core;
}

void
dhf_core_unref (DhfClientCore *core)
{
  if (!g_atomic_ref_count_dec (&core->ref_count))
    return;
  g_assert (core->fd < 0 && core->thread == NULL);
  g_weak_ref_clear (&core->client);
  g_free (core->address);
  dhf_transport_address_clear (&core->taddr);
  g_clear_error (&core->address_error);
  g_clear_error (&core->fail_error);
  if (core->deadline_source != NULL)
    {
      g_source_destroy (core->deadline_source);
      g_source_unref (core->deadline_source);
    }
  g_clear_pointer (&core->owner_context, g_main_context_unref);
  g_clear_pointer (&core->context, g_main_context_unref);
  g_byte_array_unref (core->outq);
  g_free (core->inbuf);
  g_free (core->domain);
  g_free (core->uuid);
  g_hash_table_unref (core->pending);
  g_hash_table_unref (core->streams);
  g_hash_table_unref (core->invocations);
  g_hash_table_unref (core->handlers);
  g_hash_table_unref (core->services);
  g_hash_table_unref (core->topics);
  g_hash_table_unref (core->abandoned_opens);
  g_hash_table_unref (core->subscribing);
  g_mutex_clear (&core->lock);
  g_cond_clear (&core->state_cond);
  g_free (core);
}

static DhfClientCore *
core_new (const gchar *address)
{
  DhfClientCore *core = g_new0 (DhfClientCore, 1);

  g_atomic_ref_count_init (&core->ref_count);
  g_weak_ref_init (&core->client, NULL);
  g_mutex_init (&core->lock);
  g_cond_init (&core->state_cond);
  core->address = address != NULL ? g_strdup (address) : dhf_transport_default_address ();
  if (!dhf_transport_address_parse (core->address, &core->taddr, &core->address_error))
    g_prefix_error (&core->address_error, "cannot connect: ");
  core->owner_context = g_main_context_ref_thread_default ();
  core->context = g_main_context_new ();
  core->auto_reconnect = TRUE;
  core->backoff_ms = BACKOFF_MIN_MS;
  core->fd = -1;
  core->listen_fd = -1;
  core->armed_deadline = -1;
  core->outq = g_byte_array_new ();
  core->next_id = 1;
  core->next_handler_id = 1;
  core->pending = g_hash_table_new (NULL, NULL);
  core->streams = g_hash_table_new_full (NULL, NULL, NULL, (GDestroyNotify) dhf_core_stream_unref);
  core->invocations = g_hash_table_new (NULL, NULL);
  core->handlers = g_hash_table_new (NULL, NULL);
  core->services = g_hash_table_new (g_str_hash, g_str_equal);
  core->topics
      = g_hash_table_new_full (g_str_hash, g_str_equal, g_free, (GDestroyNotify) g_ptr_array_unref);
  core->abandoned_opens = g_hash_table_new (NULL, NULL);
  core->subscribing = g_hash_table_new_full (g_str_hash, g_str_equal, g_free, NULL);
  core->deadline_source = core_source_new (core, &deadline_funcs, "dhf deadlines");
  g_source_attach (core->deadline_source, core->context);
  return core;
}

static void
run_in_context (GMainContext *context, GSourceFunc func, gpointer data, GDestroyNotify destroy)
{
  GSource *source = g_idle_source_new ();

  g_source_set_priority (source, G_PRIORITY_DEFAULT);
  g_source_set_callback (source, func, data, destroy);
  g_source_set_static_name (source, "dhf client");
  g_source_attach (source, context);
  g_source_unref (source);
}

/* ---- writing ------------------------------------------------------------ */

static GPrivate scratch_key = G_PRIVATE_INIT ((GDestroyNotify) g_byte_array_unref);

GByteArray *
dhf_core_scratch_frame (void)
{
  GByteArray *buf = g_private_get (&scratch_key);

  if (buf == NULL)
    {
      buf = g_byte_array_sized_new (4096);
      g_private_set (&scratch_key, buf);
    }
  g_byte_array_set_size (buf, 0);
  return buf;
}

static gssize
write_vectors (DhfClientCore *core, struct iovec *iov, gint n_iov)
{
  gssize r;

  do
    {
      if (core->fd_is_socket)
        {
          struct msghdr msg = { .msg_iov = iov, .msg_iovlen = n_iov };

          r = sendmsg (core->fd, &msg, MSG_NOSIGNAL | MSG_DONTWAIT);
        }
      else
        r = writev (core->fd, iov, n_iov);
    }
  while (r < 0 && errno == EINTR);
  if (r < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
    return 0;
  return r;
}

/* What the connection's fd is watched for: G_IO_IN unless handlers hold
 * too much (no fd at all when nothing is wanted, or a hang-up would be
 * reported over and over), G_IO_OUT while bytes are queued. */
static void
update_io_events_locked (DhfClientCore *core)
{
  GIOCondition events = (core->read_paused ? 0 : G_IO_IN) | (core->want_out ? G_IO_OUT : 0);

  if (core->io_source == NULL || core->fd < 0 || core->state < DHF_CONN_HANDSHAKE)
    return;
  if (events == 0)
    {
      if (core->io_tag != NULL)
        g_source_remove_unix_fd (core->io_source, core->io_tag);
      core->io_tag = NULL;
    }
  else if (core->io_tag == NULL)
    core->io_tag = g_source_add_unix_fd (core->io_source, core->fd, events);
  else
    g_source_modify_unix_fd (core->io_source, core->io_tag, events);
}

static void
want_writable_locked (DhfClientCore *core, gboolean on)
{
  core->want_out = on;
  update_io_events_locked (core);
}

static gsize
outq_pending_locked (DhfClientCore *core)
{
  return core->outq->len - core->outq_off;
}

gboolean
dhf_core_outq_full_locked (DhfClientCore *core)
{
  return outq_pending_locked (core) >= DHF_CLIENT_MAX_OUTGOING_QUEUE;
}

typedef enum
{
  SEND_OK,
  SEND_GONE,
  SEND_FULL,
} SendResult;

static SendResult
send_limited_locked (DhfClientCore *core, guint gen, const guint8 *frame, gsize frame_len,
                     const guint8 *extra, gsize extra_len, gsize limit)
{
  gsize written = 0;

  if (core->fd < 0 || core->broken || gen != core->gen || core->state < DHF_CONN_HANDSHAKE)
    return SEND_GONE;
  if (core->outq_off == core->outq->len)
    {
      struct iovec iov[2] = { { (void *) frame, frame_len }, { (void *) extra, extra_len } };
      gssize r = write_vectors (core, iov, extra_len > 0 ? 2 : 1);

      if (r < 0)
        {
          /* The I/O thread notices too (hang-up); make sure it looks. */
          core->broken = TRUE;
          want_writable_locked (core, TRUE);
          return SEND_GONE;
        }
      written = (gsize) r;
      if (written == frame_len + extra_len)
        return SEND_OK;
      if (core->outq_off > 0)
        {
          g_byte_array_set_size (core->outq, 0);
          core->outq_off = 0;
        }
    }
  else if (outq_pending_locked (core) + frame_len + extra_len > limit)
    return SEND_FULL;
  if (written < frame_len)
    {
      g_byte_array_append (core->outq, frame + written, frame_len - written);
      written = frame_len;
    }
  if (extra_len > 0)
    g_byte_array_append (core->outq, extra + (written - frame_len),
                         extra_len - (written - frame_len));
  want_writable_locked (core, TRUE);
  return SEND_OK;
}

gboolean
dhf_core_send_locked (DhfClientCore *core, guint gen, const guint8 *frame, gsize frame_len,
                      const guint8 *extra, gsize extra_len)
{
  switch (send_limited_locked (core, gen, frame, frame_len, extra, extra_len,
                               2 * (gsize) DHF_CLIENT_MAX_OUTGOING_QUEUE))
    {
      case SEND_OK:
        return TRUE;
      case SEND_FULL:
        /* dhfd does not read what it must: the I/O thread drops the
         * connection (and reconnects as usual). */
        core->broken = TRUE;
        core->broken_full = TRUE;
        want_writable_locked (core, TRUE);
        return FALSE;
      case SEND_GONE:
      default:
        return FALSE;
    }
}

gboolean
dhf_core_send_request_locked (DhfClientCore *core, guint gen, const guint8 *frame, gsize frame_len,
                              GError **error)
{
  switch (send_limited_locked (core, gen, frame, frame_len, NULL, 0, DHF_CLIENT_MAX_OUTGOING_QUEUE))
    {
      case SEND_OK:
        return TRUE;
      case SEND_FULL:
        g_set_error (error, DHF_ERROR, DHF_ERROR_LIMIT_EXCEEDED,
                     "%" G_GSIZE_FORMAT " bytes are queued for dhfd already (at most %u)",
                     outq_pending_locked (core), DHF_CLIENT_MAX_OUTGOING_QUEUE);
        return FALSE;
      case SEND_GONE:
      default:
        g_set_error_literal (error, DHF_ERROR, DHF_ERROR_DISCONNECTED,
                             "the connection to dhfd was lost");
        return FALSE;
    }
}

/* I/O thread: writes what is queued; FALSE if the connection broke. */
static gboolean
flush_locked (DhfClientCore *core)
{
  gboolean was_full = dhf_core_outq_full_locked (core);

  while (core->outq_off < core->outq->len)
    {
      struct iovec iov = { core->outq->data + core->outq_off, core->outq->len - core->outq_off };
      gssize r = write_vectors (core, &iov, 1);

      if (r < 0)
        return FALSE;
      if (r == 0)
        break;
      core->outq_off += (gsize) r;
    }
  if (was_full && !dhf_core_outq_full_locked (core))
    {
      GHashTableIter iter;
      gpointer value;

      g_hash_table_iter_init (&iter, core->streams);
      while (g_hash_table_iter_next (&iter, NULL, &value))
        dhf_core_stream_wake_writers_locked (value);
    }
  if (core->outq_off < core->outq->len)
    return TRUE;
  g_byte_array_set_size (core->outq, 0);
  core->outq_off = 0;
  want_writable_locked (core, FALSE);
  return TRUE;
}

static gboolean
send_frame_locked (DhfClientCore *core, GByteArray *frame)
{
  return dhf_core_send_locked (core, core->gen, frame->data, frame->len, NULL, 0);
}

static void
send_error_locked (DhfClientCore *core, guint32 id, DhfError code, const gchar *message)
{
  GByteArray *frame = dhf_core_scratch_frame ();

  dhf_xdm_append_error (frame, id, code, message);
  (void) send_frame_locked (core, frame);
}

static void
send_empty_locked (DhfClientCore *core, DhfXdmType type, guint32 id)
{
  GByteArray *frame = dhf_core_scratch_frame ();

  dhf_xdm_append_json (frame, type, id, NULL);
  (void) send_frame_locked (core, frame);
}

/* Refuses a stream dhfd considers open: a reset (a CLOSE with a code),
 * never a half-close, which would leave the other direction open. */
static void
send_stream_reset_locked (DhfClientCore *core, guint32 id, DhfError code, const gchar *message)
{
  g_autoptr (json_object) body = json_object_new_object ();
  GByteArray *frame = dhf_core_scratch_frame ();

  json_object_object_add (body, "code",
                          json_object_new_string (dhf_xdm_error_code_to_string (code)));
  json_object_object_add (body, "message", json_object_new_string (message));
  dhf_xdm_append_json (frame, DHF_XDM_STREAM_CLOSE, id, body);
  (void) send_frame_locked (core, frame);
}

/* ---- JSON helpers --------------------------------------------------------- */

gchar *
dhf_core_json_to_text (json_object *value)
{
  if (value == NULL)
    return g_strdup ("null");
  return g_strdup (json_object_to_json_string_ext (value, JSON_C_TO_STRING_PLAIN
                                                              | JSON_C_TO_STRING_NOSLASHESCAPE));
}

/* A JSON syntax check that allocates nothing (json-c's parser builds a
 * tree and makes a locale per call): RFC 8259, UTF-8 checked, containers
 * nested at most max_depth deep. */
typedef struct
{
  const gchar *p;
  const gchar *end;
  const gchar *start;
  gint depth;
  gint max_depth;
  const gchar *problem;
} JsonScan;

static void
scan_space (JsonScan *s)
{
  while (s->p < s->end && (*s->p == ' ' || *s->p == '\t' || *s->p == '\n' || *s->p == '\r'))
    s->p++;
}

static gboolean
scan_fail (JsonScan *s, const gchar *problem)
{
  s->problem = problem;
  return FALSE;
}

static gboolean
scan_string (JsonScan *s)
{
  s->p++; /* the opening quote */
  while (s->p < s->end)
    {
      guchar c = (guchar) *s->p;

      if (c == '"')
        {
          s->p++;
          return TRUE;
        }
      if (c < 0x20)
        return scan_fail (s, "control character in a string");
      if (c == '\\')
        {
          if (++s->p >= s->end)
            break;
          if (strchr ("\"\\/bfnrt", *s->p) != NULL && *s->p != '\0')
            s->p++;
          else if (*s->p == 'u')
            {
              for (gint i = 1; i <= 4; i++)
                if (s->p + i >= s->end || !g_ascii_isxdigit (s->p[i]))
                  return scan_fail (s, "invalid \\u escape");
              s->p += 5;
            }
          else
            return scan_fail (s, "invalid escape in a string");
          continue;
        }
      if (c < 0x80)
        {
          s->p++;
          continue;
        }
      if (g_utf8_get_char_validated (s->p, s->end - s->p) >= 0x110000)
        return scan_fail (s, "invalid UTF-8 in a string");
      s->p = g_utf8_next_char (s->p);
    }
  return scan_fail (s, "unterminated string");
}

static gboolean
scan_digits (JsonScan *s)
{
  const gchar *first = s->p;

  while (s->p < s->end && g_ascii_isdigit (*s->p))
    s->p++;
  return s->p > first;
}

static gboolean
scan_number (JsonScan *s)
{
  if (*s->p == '-')
    s->p++;
  if (s->p < s->end && *s->p == '0')
    s->p++;
  else if (!scan_digits (s))
    return scan_fail (s, "invalid number");
  if (s->p < s->end && *s->p == '.')
    {
      s->p++;
      if (!scan_digits (s))
        return scan_fail (s, "invalid number");
    }
  if (s->p < s->end && (*s->p == 'e' || *s->p == 'E'))
    {
      s->p++;
      if (s->p < s->end && (*s->p == '+' || *s->p == '-'))
        s->p++;
      if (!scan_digits (s))
        return scan_fail (s, "invalid number");
    }
  return TRUE;
}

static gboolean
scan_literal (JsonScan *s, const gchar *word)
{
  gsize n = strlen (word);

  if ((gsize) (s->end - s->p) < n || memcmp (s->p, word, n) != 0)
    return scan_fail (s, "unexpected character");
  s->p += n;
  return TRUE;
}

static gboolean scan_value (JsonScan *s);

/* An object or array: members (or elements) separated by commas. */
static gboolean
scan_container (JsonScan *s, gchar close)
{
  if (++s->depth > s->max_depth)
    return scan_fail (s, "nested too deeply");
  s->p++;
  scan_space (s);
  if (s->p < s->end && *s->p == close)
    {
      s->p++;
      s->depth--;
      return TRUE;
    }
  for (;;)
    {
      if (close == '}')
        {
          if (s->p >= s->end || *s->p != '"')
            return scan_fail (s, "expected a member name");
          if (!scan_string (s))
            return FALSE;
          scan_space (s);
          if (s->p >= s->end || *s->p != ':')
            return scan_fail (s, "expected ':'");
          s->p++;
        }
      if (!scan_value (s))
        return FALSE;
      scan_space (s);
      if (s->p < s->end && *s->p == ',')
        {
          s->p++;
          scan_space (s);
          continue;
        }
      if (s->p < s->end && *s->p == close)
        {
          s->p++;
          s->depth--;
          return TRUE;
        }
      return scan_fail (s, s->p >= s->end ? "unexpected end" : "expected ',' or a closing bracket");
    }
}

static gboolean
scan_value (JsonScan *s)
{
  scan_space (s);
  if (s->p >= s->end)
    return scan_fail (s, "unexpected end");
  switch (*s->p)
    {
      case '{':
        return scan_container (s, '}');
      case '[':
        return scan_container (s, ']');
      case '"':
        return scan_string (s);
      case 't':
        return scan_literal (s, "true");
      case 'f':
        return scan_literal (s, "false");
      case 'n':
        return scan_literal (s, "null");
      default:
        if (*s->p == '-' || g_ascii_isdigit (*s->p))
          return scan_number (s);
        return scan_fail (s, "unexpected character");
    }
}

gboolean
dhf_core_json_validate (const gchar *text, gint max_depth, const gchar *what, GError **error)
{
  JsonScan s = { text, text + strlen (text), text, 0, max_depth, NULL };

  if (scan_value (&s))
    {
      scan_space (&s);
      if (s.p == s.end)
        return TRUE;
      s.problem = "trailing characters";
    }
  g_set_error (error, DHF_ERROR, DHF_ERROR_INVALID_ARGS,
               "%s is not valid JSON: %s at offset %" G_GSIZE_FORMAT, what, s.problem,
               (gsize) (s.p - s.start));
  return FALSE;
}

/* Appends ,"key":"value" — value already checked against the name,
 * argument or domain grammar, none of which needs escaping. */
static void
append_member (GString *body, const gchar *key, const gchar *value)
{
  if (value == NULL)
    return;
  g_string_append_printf (body, ",\"%s\":\"%s\"", key, value);
}

/* Checks "SERVICE[+ARG]" and the target, and starts a body with them. */
static GString *
start_service_body (const gchar *service, const gchar *target, GError **error)
{
  g_autofree gchar *name = NULL;
  g_autofree gchar *arg = NULL;
  GString *body;

  if (service == NULL || !dhf_xdm_split_service (service, &name, &arg, error))
    {
      if (service == NULL)
        g_set_error_literal (error, DHF_ERROR, DHF_ERROR_INVALID_ARGS, "no service name");
      return NULL;
    }
  if (target != NULL && !dhf_xdm_domain_is_valid (target))
    {
      g_set_error (error, DHF_ERROR, DHF_ERROR_INVALID_ARGS, "invalid target domain '%s'", target);
      return NULL;
    }
  body = g_string_sized_new (128);
  g_string_append_printf (body, "{\"service\":\"%s\"", name);
  append_member (body, "arg", arg);
  append_member (body, "target", target);
  return body;
}

static gboolean
check_body_size (GString *body, GError **error)
{
  if (body->len > DHF_XDM_MAX_BODY)
    {
      g_set_error (error, DHF_ERROR, DHF_ERROR_INVALID_ARGS,
                   "message too large (%" G_GSIZE_FORMAT " bytes, at most %u)", body->len,
                   DHF_XDM_MAX_BODY);
      return FALSE;
    }
  return TRUE;
}

/* ---- request ids and the deadline timer -------------------------------- */

static guint32
alloc_id_locked (DhfClientCore *core)
{
  for (;;)
    {
      guint32 id = core->next_id;

      core->next_id = id >= REQUEST_ID_MAX ? 1 : id + 1;
      if (id != 0 && !g_hash_table_contains (core->pending, GUINT_TO_POINTER (id))
          && !g_hash_table_contains (core->streams, GUINT_TO_POINTER (id))
          && !g_hash_table_contains (core->abandoned_opens, GUINT_TO_POINTER (id)))
        return id;
    }
}

/* Only an earlier deadline re-arms the timer (and wakes the I/O thread):
 * with one timeout for every call, a stream of calls never does. */
static void
arm_deadline_locked (DhfClientCore *core, gint64 deadline)
{
  if (core->armed_deadline >= 0 && core->armed_deadline <= deadline)
    return;
  core->armed_deadline = deadline;
  g_source_set_ready_time (core->deadline_source, deadline);
}

static void
insert_pending_locked (DhfClientCore *core, DhfPending *p, gint timeout_ms)
{
  p->id = alloc_id_locked (core);
  p->gen = core->gen;
  p->deadline = g_get_monotonic_time () + (gint64) timeout_ms * 1000;
  g_hash_table_insert (core->pending, GUINT_TO_POINTER (p->id), p);
  if (!p->sync)
    arm_deadline_locked (core, p->deadline);
}

/* Marks p answered; the sync waiter is woken now, an async one is
 * completed once the lock is released. p has left the table. */
static void
finish_pending_locked (DhfClientCore *core, DhfPending *p, Later *later)
{
  p->done = TRUE;
  if (p->sync)
    g_cond_signal (&p->cond);
  else if (p->kind != PENDING_RESTORE)
    g_queue_push_tail_link (&later->finished, &p->link);
  else
    pending_unref (p);
}

static void
send_cancel_locked (DhfClientCore *core, DhfPending *p)
{
  GByteArray *frame;

  if (p->gen != core->gen)
    return;
  frame = dhf_core_scratch_frame ();
  dhf_xdm_append_json (frame, DHF_XDM_CANCEL, p->id, NULL);
  (void) send_frame_locked (core, frame);
  /* The CANCEL may cross dhfd's REPLY accepting the stream. */
  if (p->kind == PENDING_OPEN)
    g_hash_table_add (core->abandoned_opens, GUINT_TO_POINTER (p->id));
}

static void set_state_locked (DhfClientCore *core, DhfConnState state, Later *later);

static void
restore_done_locked (DhfClientCore *core, Later *later)
{
  if (core->restoring > 0 && --core->restoring == 0 && core->state == DHF_CONN_RESTORING)
    set_state_locked (core, DHF_CONN_CONNECTED, later);
}

/* ---- completing after the lock ---------------------------------------- */

/* Disconnecting an async request from its cancellable, away from the
 * "cancelled" handler that asked for it (the id is the one p->cancel_id
 * had: the handler cleared that so that nobody else disconnects). */
typedef struct
{
  DhfPending *p;
  gulong cancel_id;
} CancelDisconnect;

static void
cancel_disconnect_cb (gpointer data)
{
  CancelDisconnect *cd = data;

  /* Drops the cancellable's reference on p (its destroy notify). */
  g_cancellable_disconnect (cd->p->cancellable, cd->cancel_id);
  pending_unref (cd->p);
  g_free (cd);
}

static void emit_connected (DhfClientCore *core, gboolean value);

/* Completes an async request; in its task's context, so the callback
 * runs at once. */
static void
complete_pending (DhfPending *p)
{
  DhfClientCore *core = p->core;
  gulong cancel_id;

  if (p->error != NULL)
    g_task_return_error (p->task, g_steal_pointer (&p->error));
  else if (p->kind == PENDING_OPEN)
    g_task_return_pointer (p->task, g_steal_pointer (&p->stream), g_object_unref);
  else
    g_task_return_pointer (p->task, g_steal_pointer (&p->result), g_free);
  g_mutex_lock (&core->lock);
  cancel_id = p->cancel_id;
  p->cancel_id = 0;
  g_mutex_unlock (&core->lock);
  if (cancel_id != 0)
    g_cancellable_disconnect (p->cancellable, cancel_id);
  pending_unref (p);
}

static gboolean
complete_batch_cb (gpointer data)
{
  GQueue *batch = data;
  GList *link;

  while ((link = g_queue_pop_head_link (batch)) != NULL)
    complete_pending (link->data);
  g_queue_free (batch);
  return G_SOURCE_REMOVE;
}

static void
run_later (DhfClientCore *core, Later *later)
{
  /* The answers of one read go to their callers in one batch per context
   * (one wake-up, not one per answer, when calls are pipelined). */
  while (later->finished.length > 0)
    {
      GQueue *batch = g_queue_new ();
      GMainContext *context
          = g_task_get_context (((DhfPending *) later->finished.head->data)->task);
      GList *link = later->finished.head;

      while (link != NULL)
        {
          GList *next = link->next;

          if (g_task_get_context (((DhfPending *) link->data)->task) == context)
            {
              g_queue_unlink (&later->finished, link);
              g_queue_push_tail_link (batch, link);
            }
          link = next;
        }
      run_in_context (context, complete_batch_cb, batch, NULL);
    }
  if (later->cancel != NULL)
    {
      for (guint i = 0; i < later->cancel->len; i += 2)
        {
          GMainContext *context = later->cancel->pdata[i + 1];

          run_in_context (context, cancel_in_context_cb, later->cancel->pdata[i], g_object_unref);
          g_main_context_unref (context);
        }
      g_clear_pointer (&later->cancel, g_ptr_array_unref);
    }
  if (later->dropped != NULL)
    {
      for (guint i = 0; i < later->dropped->len; i++)
        handler_deactivate (core, later->dropped->pdata[i]);
      g_clear_pointer (&later->dropped, g_ptr_array_unref);
    }
  if (later->notify)
    emit_connected (core, later->notify_value);
  later->notify = FALSE;
}

/* ---- the connection's state -------------------------------------------- */

typedef struct
{
  DhfClient *client;
  gboolean value;
} NotifyData;

static void
notify_data_free (gpointer data)
{
  NotifyData *nd = data;

  g_object_unref (nd->client);
  g_free (nd);
}

static gboolean
notify_connected_cb (gpointer data)
{
  NotifyData *nd = data;
  DhfClientCore *core = nd->client->core;
  gboolean changed;

  g_mutex_lock (&core->lock);
  changed = core->notified_connected != nd->value;
  core->notified_connected = nd->value;
  g_mutex_unlock (&core->lock);
  if (changed)
    {
      g_object_notify_by_pspec (G_OBJECT (nd->client), props[PROP_DOMAIN]);
      g_object_notify_by_pspec (G_OBJECT (nd->client), props[PROP_CONNECTED]);
    }
  return G_SOURCE_REMOVE;
}

/* Emits notify::connected (and ::domain) in the client's context, one
 * emission per transition, in order. */
static void
emit_connected (DhfClientCore *core, gboolean value)
{
  DhfClient *client = g_weak_ref_get (&core->client);
  NotifyData *nd;

  if (client == NULL)
    return;
  nd = g_new0 (NotifyData, 1);
  nd->client = client;
  nd->value = value;
  run_in_context (core->owner_context, notify_connected_cb, nd, notify_data_free);
}

static void
set_state_locked (DhfClientCore *core, DhfConnState state, Later *later)
{
  gboolean was = core->state == DHF_CONN_CONNECTED;
  gboolean is = state == DHF_CONN_CONNECTED;

  core->state = state;
  if (is)
    {
      core->backoff_ms = BACKOFF_MIN_MS;
      core->connect_serial++;
    }
  if (was != is)
    {
      later->notify = TRUE;
      later->notify_value = is;
    }
  g_cond_broadcast (&core->state_cond);
}

static void
destroy_source (GSource **source)
{
  if (*source == NULL)
    return;
  g_source_destroy (*source);
  g_source_unref (*source);
  *source = NULL;
}

/* Closes the fd and fails everything that belonged to the connection with
 * error. The state is the caller's to set. */
static void
drop_connection_locked (DhfClientCore *core, const GError *error, Later *later)
{
  GHashTableIter iter;
  gpointer value;
  GList *streams;

  destroy_source (&core->io_source);
  destroy_source (&core->handshake_timeout);
  core->io_tag = NULL;
  if (core->fd >= 0)
    close (core->fd);
  core->fd = -1;
  core->broken = FALSE;
  core->broken_full = FALSE;
  core->want_out = FALSE;
  core->read_paused = FALSE;
  g_byte_array_set_size (core->outq, 0);
  core->outq_off = 0;
  core->in_len = 0;
  core->restoring = 0;
  g_hash_table_remove_all (core->abandoned_opens);
  core->gen++; /* nothing still holding the old generation may send */

  g_hash_table_iter_init (&iter, core->pending);
  while (g_hash_table_iter_next (&iter, NULL, &value))
    {
      DhfPending *p = value;

      g_hash_table_iter_remove (&iter);
      p->error = g_error_copy (error);
      finish_pending_locked (core, p, later);
    }
  /* Out of the table first: closing a stream may remove it. */
  streams = g_hash_table_get_values (core->streams);
  g_hash_table_steal_all (core->streams);
  for (GList *l = streams; l != NULL; l = l->next)
    {
      dhf_core_stream_remote_closed_locked (l->data, error);
      dhf_core_stream_unref (l->data);
    }
  g_list_free (streams);
  g_hash_table_iter_init (&iter, core->invocations);
  while (g_hash_table_iter_next (&iter, NULL, &value))
    {
      g_hash_table_iter_remove (&iter);
      later_abandon (later, value);
    }
}

static void start_attempt_locked (DhfClientCore *core, Later *later);

static gboolean
retry_cb (gpointer data)
{
  DhfClientCore *core = data;
  Later later = { G_QUEUE_INIT };

  g_mutex_lock (&core->lock);
  destroy_source (&core->retry_source);
  if (core->state == DHF_CONN_CONNECTING && core->fd < 0)
    start_attempt_locked (core, &later);
  g_mutex_unlock (&core->lock);
  run_later (core, &later);
  return G_SOURCE_REMOVE;
}

static void
watch_listen_locked (DhfClientCore *core)
{
  if (core->listen_source != NULL)
    return;
  core->listen_source = core_source_new (core, &listen_funcs, "dhf listen");
  g_source_add_unix_fd (core->listen_source, core->listen_fd, G_IO_IN);
  g_source_attach (core->listen_source, core->context);
}

/* Tries again: a listening client waits for dhfd's next connection at
 * once; the others after the backoff. */
static void
schedule_retry_locked (DhfClientCore *core, Later *later)
{
  set_state_locked (core, DHF_CONN_CONNECTING, later);
  if (core->taddr.kind == DHF_TRANSPORT_LISTEN && core->listen_fd >= 0)
    {
      watch_listen_locked (core);
      return;
    }
  destroy_source (&core->retry_source);
  core->retry_source = g_timeout_source_new (core->backoff_ms);
  g_source_set_static_name (core->retry_source, "dhf reconnect");
  g_source_set_callback (core->retry_source, retry_cb, core, NULL);
  g_source_attach (core->retry_source, core->context);
  core->backoff_ms = MIN (core->backoff_ms * 2, BACKOFF_MAX_MS);
}

/* A connection attempt failed before WELCOME. soft: dhfd is not there yet
 * on a channel or listening socket (the host side is closed): keep
 * waiting. Otherwise connect waiters hear of it; a client that was
 * connected before keeps trying in the background. */
static void
attempt_failed_locked (DhfClientCore *core, const GError *error, gboolean soft, Later *later)
{
  drop_connection_locked (core, error, later);
  if (!soft)
    {
      g_clear_error (&core->fail_error);
      core->fail_error = g_error_copy (error);
      core->fail_serial++;
      g_cond_broadcast (&core->state_cond);
    }
  if (soft || (core->keep_connected && core->auto_reconnect))
    schedule_retry_locked (core, later);
  else
    set_state_locked (core, DHF_CONN_IDLE, later);
}

/* The connection went after WELCOME. */
static void
connection_lost_locked (DhfClientCore *core, const GError *why, Later *later)
{
  g_autoptr (GError) error = g_error_new (DHF_ERROR, DHF_ERROR_DISCONNECTED,
                                          "the connection to dhfd was lost: %s", why->message);

  drop_connection_locked (core, error, later);
  if (core->keep_connected && core->auto_reconnect)
    schedule_retry_locked (core, later);
  else
    set_state_locked (core, DHF_CONN_IDLE, later);
}

/* Anything going wrong with the fd, whatever the state. */
static void
fail_connection_locked (DhfClientCore *core, const GError *error, gboolean soft, Later *later)
{
  if (core->state == DHF_CONN_RESTORING || core->state == DHF_CONN_CONNECTED)
    connection_lost_locked (core, error, later);
  else
    attempt_failed_locked (core, error, soft, later);
}

static gboolean
is_soft_transport (DhfClientCore *core)
{
  return core->taddr.kind == DHF_TRANSPORT_CHANNEL || core->taddr.kind == DHF_TRANSPORT_LISTEN;
}

static gboolean
handshake_timeout_cb (gpointer data)
{
  DhfClientCore *core = data;
  Later later = { G_QUEUE_INIT };
  g_autoptr (GError) error
      = g_error_new (DHF_ERROR, DHF_ERROR_TIMEOUT, "dhfd did not answer HELLO within %d s",
                     HANDSHAKE_TIMEOUT_MS / 1000);

  g_mutex_lock (&core->lock);
  if (core->state == DHF_CONN_HANDSHAKE)
    attempt_failed_locked (core, error, is_soft_transport (core), &later);
  g_mutex_unlock (&core->lock);
  run_later (core, &later);
  return G_SOURCE_REMOVE;
}

static void
send_hello_locked (DhfClientCore *core)
{
  g_autoptr (json_object) body = json_object_new_object ();
  json_object *versions = json_object_new_array ();
  g_autofree gchar *client = NULL;
  const gchar *prgname = g_get_prgname ();
  GByteArray *frame = dhf_core_scratch_frame ();

  json_object_array_add (versions, json_object_new_int (DHF_XDM_PROTOCOL_VERSION));
  json_object_object_add (body, "versions", versions);
  client = g_strdup_printf ("libdhf-1 %s%s%s", DHF_VERSION_STRING, prgname != NULL ? " " : "",
                            prgname != NULL ? prgname : "");
  if (strlen (client) > DHF_XDM_MAX_CLIENT)
    client[DHF_XDM_MAX_CLIENT] = '\0';
  if (g_utf8_validate (client, -1, NULL))
    json_object_object_add (body, "client", json_object_new_string (client));
  dhf_xdm_append_json (frame, DHF_XDM_HELLO, 0, body);
  (void) send_frame_locked (core, frame);
}

static void
setup_connection_locked (DhfClientCore *core, gint fd, gboolean is_socket, Later *later)
{
  core->fd = fd;
  core->fd_is_socket = is_socket;
  core->broken = FALSE;
  core->broken_full = FALSE;
  core->want_out = FALSE;
  core->read_paused = FALSE;
  core->gen++;
  core->next_id = 1;
  destroy_source (&core->io_source);
  core->io_source = core_source_new (core, &io_funcs, "dhf connection");
  core->io_tag = g_source_add_unix_fd (core->io_source, fd, G_IO_IN);
  g_source_attach (core->io_source, core->context);
  set_state_locked (core, DHF_CONN_HANDSHAKE, later);
  send_hello_locked (core);
  destroy_source (&core->handshake_timeout);
  core->handshake_timeout = g_timeout_source_new (HANDSHAKE_TIMEOUT_MS);
  g_source_set_static_name (core->handshake_timeout, "dhf handshake");
  g_source_set_callback (core->handshake_timeout, handshake_timeout_cb, core, NULL);
  g_source_attach (core->handshake_timeout, core->context);
}

static void
start_attempt_locked (DhfClientCore *core, Later *later)
{
  g_autoptr (GError) error = NULL;
  gboolean in_progress = FALSE;
  gboolean is_socket = FALSE;
  gint fd;

  if (core->taddr.kind == DHF_TRANSPORT_LISTEN)
    {
      if (core->listen_fd < 0)
        core->listen_fd = dhf_transport_listen (core->taddr.path, &error);
      if (core->listen_fd < 0)
        {
          attempt_failed_locked (core, error, FALSE, later);
          return;
        }
      watch_listen_locked (core);
      return;
    }
  fd = dhf_transport_connect (&core->taddr, &in_progress, &is_socket, &error);
  if (fd < 0)
    {
      attempt_failed_locked (core, error, FALSE, later);
      return;
    }
  if (!in_progress)
    {
      setup_connection_locked (core, fd, is_socket, later);
      return;
    }
  /* connect() under way: io_dispatch finishes it when the fd is writable. */
  core->fd = fd;
  core->fd_is_socket = is_socket;
  core->io_source = core_source_new (core, &io_funcs, "dhf connection");
  core->io_tag = g_source_add_unix_fd (core->io_source, fd, G_IO_OUT);
  g_source_attach (core->io_source, core->context);
}

static gboolean
listen_dispatch (GSource *source, GSourceFunc callback, gpointer user_data)
{
  DhfClientCore *core = ((CoreSource *) source)->core;
  Later later = { G_QUEUE_INIT };
  g_autoptr (GError) error = NULL;
  gint fd;

  g_mutex_lock (&core->lock);
  if (core->state != DHF_CONN_CONNECTING || core->fd >= 0)
    {
      g_mutex_unlock (&core->lock);
      return G_SOURCE_CONTINUE;
    }
  fd = dhf_transport_accept (core->listen_fd, &error);
  if (fd >= 0)
    {
      /* One dhfd connection at a time, as a virtio-serial port has. */
      destroy_source (&core->listen_source);
      setup_connection_locked (core, fd, TRUE, &later);
    }
  else if (!g_error_matches (error, G_IO_ERROR, G_IO_ERROR_WOULD_BLOCK))
    g_message ("dhf: %s: %s", core->address, error->message);
  g_mutex_unlock (&core->lock);
  run_later (core, &later);
  return G_SOURCE_CONTINUE;
}

/* ---- incoming frames ----------------------------------------------------- */

static void
handle_welcome_locked (DhfClientCore *core, const DhfXdmMessage *msg, Later *later)
{
  GHashTableIter iter;
  gpointer key, value;

  destroy_source (&core->handshake_timeout);
  if (msg->version != DHF_XDM_PROTOCOL_VERSION || msg->domain == NULL)
    {
      g_autoptr (GError) error = g_error_new (
          DHF_ERROR, DHF_ERROR_PROTOCOL, "dhfd chose protocol version %u; this client speaks %d",
          msg->version, DHF_XDM_PROTOCOL_VERSION);

      attempt_failed_locked (core, error, FALSE, later);
      return;
    }
  /* Replaced only when it changes: dhf_client_get_domain() hands it out. */
  if (g_strcmp0 (core->domain, msg->domain) != 0)
    {
      g_free (core->domain);
      core->domain = g_strdup (msg->domain);
    }
  if (g_strcmp0 (core->uuid, msg->uuid) != 0)
    {
      g_free (core->uuid);
      core->uuid = g_strdup (msg->uuid);
    }
  core->keep_connected = TRUE;
  set_state_locked (core, DHF_CONN_RESTORING, later);

  /* Services and subscriptions of the previous connection, pipelined;
   * the client counts as connected once dhfd has answered them all. */
  g_hash_table_iter_init (&iter, core->services);
  while (g_hash_table_iter_next (&iter, &key, NULL))
    {
      DhfPending *p = pending_new (core, PENDING_RESTORE);
      GByteArray *frame = dhf_core_scratch_frame ();
      g_autofree gchar *body = g_strdup_printf ("{\"service\":\"%s\"}", (const gchar *) key);

      p->what = g_strdup_printf ("service %s", (const gchar *) key);
      p->service = g_strdup (key);
      p->restore_service = TRUE;
      insert_pending_locked (core, p, DHF_XDM_DEFAULT_TIMEOUT_MS);
      dhf_xdm_append_text (frame, DHF_XDM_REGISTER, p->id, body, strlen (body));
      (void) send_frame_locked (core, frame);
      core->restoring++;
    }
  g_hash_table_iter_init (&iter, core->topics);
  while (g_hash_table_iter_next (&iter, &key, &value))
    {
      DhfPending *p;
      GByteArray *frame;
      g_autofree gchar *body = NULL;

      if (((GPtrArray *) value)->len == 0)
        continue;
      p = pending_new (core, PENDING_RESTORE);
      frame = dhf_core_scratch_frame ();
      body = g_strdup_printf ("{\"topic\":\"%s\"}", (const gchar *) key);
      p->what = g_strdup_printf ("subscription to %s", (const gchar *) key);
      p->service = g_strdup (key);
      insert_pending_locked (core, p, DHF_XDM_DEFAULT_TIMEOUT_MS);
      dhf_xdm_append_text (frame, DHF_XDM_SUBSCRIBE, p->id, body, strlen (body));
      (void) send_frame_locked (core, frame);
      core->restoring++;
    }
  if (core->restoring == 0)
    set_state_locked (core, DHF_CONN_CONNECTED, later);
}

/* dhfd refused to restore a registration or subscription after a
 * reconnection: it is gone, so its handlers are (their notify runs),
 * rather than waiting for calls or events that cannot come. */
static void
drop_refused_restore_locked (DhfClientCore *core, DhfPending *p, Later *later)
{
  g_warning ("dhf: dhfd refused to restore the %s; it is dropped: %s", p->what, p->error->message);
  if (later->dropped == NULL)
    later->dropped = g_ptr_array_new ();
  if (p->restore_service)
    {
      DhfHandler *h = g_hash_table_lookup (core->services, p->service);

      if (h == NULL)
        return; /* unregistered meanwhile */
      g_hash_table_remove (core->services, p->service);
      g_hash_table_remove (core->handlers, GUINT_TO_POINTER (h->id));
      g_ptr_array_add (later->dropped, h);
    }
  else
    {
      GPtrArray *subs = g_hash_table_lookup (core->topics, p->service);

      if (subs == NULL)
        return;
      for (guint i = 0; i < subs->len; i++)
        {
          DhfHandler *h = subs->pdata[i];

          g_hash_table_remove (core->handlers, GUINT_TO_POINTER (h->id));
          g_ptr_array_add (later->dropped, h);
        }
      g_hash_table_remove (core->topics, p->service);
    }
}

static void
handle_answer_locked (DhfClientCore *core, const DhfXdmMessage *msg, Later *later)
{
  DhfPending *p = g_hash_table_lookup (core->pending, GUINT_TO_POINTER (msg->id));

  if (p == NULL)
    {
      /* Late answers of requests we gave up on; ERROR 0 is dhfd's word on
       * something we sent that it could not even frame. A stream we gave
       * up opening but dhfd accepted is reset, or it would stay open. */
      if (msg->type == DHF_XDM_ERROR && msg->id == 0)
        g_message ("dhf: dhfd reports an error: %s: %s", msg->code, msg->message);
      else if (g_hash_table_remove (core->abandoned_opens, GUINT_TO_POINTER (msg->id))
               && msg->type == DHF_XDM_REPLY)
        send_stream_reset_locked (core, msg->id, DHF_ERROR_CANCELLED,
                                  "the opener gave up on the stream");
      return;
    }
  g_hash_table_remove (core->pending, GUINT_TO_POINTER (msg->id));
  if (msg->type == DHF_XDM_ERROR)
    p->error = dhf_xdm_message_to_error (msg);
  else if (p->kind == PENDING_CALL)
    p->result = dhf_core_json_to_text (msg->value);
  else if (p->kind == PENDING_OPEN)
    {
      /* A window of 0 is valid: our writes wait for the peer's credit. */
      p->stream = dhf_core_stream_new_locked (core, core->gen, msg->id, p->service, p->target,
                                              msg->window);
    }
  if (p->kind == PENDING_RESTORE)
    {
      if (p->error != NULL)
        drop_refused_restore_locked (core, p, later);
      restore_done_locked (core, later);
    }
  finish_pending_locked (core, p, later);
}

static void
handle_request_locked (DhfClientCore *core, const DhfXdmMessage *msg)
{
  DhfHandler *h = g_hash_table_lookup (core->services, msg->service);
  DhfInvocation *invocation;
  gpointer key = GUINT_TO_POINTER (msg->id);

  if (h == NULL)
    {
      g_autofree gchar *text = g_strdup_printf ("%s is not provided here", msg->service);

      send_error_locked (core, msg->id, DHF_ERROR_NOT_FOUND, text);
      return;
    }
  if (g_hash_table_contains (core->invocations, key)
      || (msg->type == DHF_XDM_STREAM_OPEN
          && (g_hash_table_contains (core->streams, key)
              || g_hash_table_contains (core->pending, key))))
    {
      send_error_locked (core, msg->id, DHF_ERROR_EXISTS, "request id already in use");
      return;
    }
  invocation = dhf_core_invocation_new (core, core->gen, msg, g_source_get_context (&h->source));
  g_hash_table_insert (core->invocations, key, invocation);
  if (h->queue.length == 0)
    g_source_set_ready_time (&h->source, 0);
  g_queue_push_tail_link (&h->queue, dhf_core_invocation_link (invocation));
  charge_handlers_locked (core, dhf_core_invocation_get_size (invocation));
}

static void
handle_event_locked (DhfClientCore *core, const DhfXdmMessage *msg)
{
  GPtrArray *subs = g_hash_table_lookup (core->topics, msg->topic);
  GRefString *data = NULL;

  if (subs == NULL || subs->len == 0)
    return;
  if (msg->value != NULL)
    {
      g_autofree gchar *text = dhf_core_json_to_text (msg->value);

      data = g_ref_string_new (text);
    }
  for (guint i = 0; i < subs->len; i++)
    {
      DhfHandler *h = subs->pdata[i];
      EventItem *item = g_new0 (EventItem, 1);

      item->link.data = item;
      item->topic = g_strdup (msg->topic);
      item->source = g_strdup (msg->source != NULL ? msg->source : "");
      item->data = data != NULL ? g_ref_string_acquire (data) : NULL;
      item->size = sizeof (*item) + strlen (item->topic) + strlen (item->source)
                   + (data != NULL ? strlen (data) : 0);
      if (h->queue.length == 0)
        g_source_set_ready_time (&h->source, 0);
      g_queue_push_tail_link (&h->queue, &item->link);
      charge_handlers_locked (core, item->size);
    }
  if (data != NULL)
    g_ref_string_release (data);
}

static void
handle_stream_frame_locked (DhfClientCore *core, const DhfXdmMessage *msg)
{
  DhfStreamState *st = g_hash_table_lookup (core->streams, GUINT_TO_POINTER (msg->id));

  if (st == NULL)
    return; /* frames racing a reset or close */
  switch (msg->type)
    {
      case DHF_XDM_STREAM_DATA:
        dhf_core_stream_data_locked (st, msg->raw, msg->raw_length);
        break;
      case DHF_XDM_STREAM_CREDIT:
        dhf_core_stream_credit_locked (st, msg->bytes);
        break;
      case DHF_XDM_STREAM_CLOSE:
        if (msg->code != NULL)
          {
            g_autoptr (GError) error = dhf_xdm_message_to_error (msg);

            dhf_core_stream_remote_closed_locked (st, error);
          }
        else
          dhf_core_stream_remote_closed_locked (st, NULL);
        break;
      default:
        g_assert_not_reached ();
    }
}

/* A frame whose body did not validate: answered if it was a request of
 * dhfd's, failing the request it answers otherwise. */
static void
handle_bad_frame_locked (DhfClientCore *core, const DhfXdmHeader *header, const GError *error,
                         Later *later)
{
  DhfPending *p;

  switch (header->type)
    {
      case DHF_XDM_WELCOME:
        attempt_failed_locked (core, error, FALSE, later);
        break;
      case DHF_XDM_CALL:
      case DHF_XDM_STREAM_OPEN:
      case DHF_XDM_PING:
        send_error_locked (core, header->id, DHF_ERROR_INVALID_ARGS, error->message);
        break;
      case DHF_XDM_REPLY:
      case DHF_XDM_ERROR:
        p = g_hash_table_lookup (core->pending, GUINT_TO_POINTER (header->id));
        if (p == NULL)
          {
            if (g_hash_table_remove (core->abandoned_opens, GUINT_TO_POINTER (header->id))
                && header->type == DHF_XDM_REPLY)
              send_stream_reset_locked (core, header->id, DHF_ERROR_CANCELLED,
                                        "the opener gave up on the stream");
            break;
          }
        g_hash_table_remove (core->pending, GUINT_TO_POINTER (header->id));
        /* dhfd may hold the stream open on an invalid accepting answer. */
        if (p->kind == PENDING_OPEN && header->type == DHF_XDM_REPLY)
          send_stream_reset_locked (core, header->id, DHF_ERROR_PROTOCOL,
                                    "invalid answer to STREAM_OPEN");
        p->error = g_error_new (DHF_ERROR, DHF_ERROR_PROTOCOL, "invalid answer from dhfd: %s",
                                error->message);
        if (p->kind == PENDING_RESTORE)
          restore_done_locked (core, later);
        finish_pending_locked (core, p, later);
        break;
      default:
        g_message ("dhf: dropped an invalid %s from dhfd: %s",
                   dhf_xdm_type_to_string (header->type), error->message);
        break;
    }
}

static void
handle_frame_locked (DhfClientCore *core, const DhfXdmHeader *header, const guint8 *body,
                     Later *later)
{
  DhfXdmMessage msg;
  g_autoptr (GError) error = NULL;

  if (!dhf_xdm_message_parse (header, body, &msg, &error))
    {
      handle_bad_frame_locked (core, header, error, later);
      return;
    }
  if (core->state == DHF_CONN_HANDSHAKE)
    {
      if (msg.type == DHF_XDM_WELCOME)
        handle_welcome_locked (core, &msg, later);
      else if (msg.type == DHF_XDM_ERROR)
        {
          g_autoptr (GError) refusal = dhf_xdm_message_to_error (&msg);

          g_prefix_error (&refusal, "dhfd refused the connection: ");
          attempt_failed_locked (core, refusal, FALSE, later);
        }
      else if (msg.type == DHF_XDM_PING)
        send_empty_locked (core, DHF_XDM_PONG, msg.id);
      else
        {
          g_autoptr (GError) unexpected
              = g_error_new (DHF_ERROR, DHF_ERROR_PROTOCOL, "dhfd sent %s before WELCOME",
                             dhf_xdm_type_to_string (msg.type));

          attempt_failed_locked (core, unexpected, FALSE, later);
        }
      dhf_xdm_message_clear (&msg);
      return;
    }

  switch (msg.type)
    {
      case DHF_XDM_REPLY:
      case DHF_XDM_ERROR:
        handle_answer_locked (core, &msg, later);
        break;
      case DHF_XDM_CALL:
      case DHF_XDM_STREAM_OPEN:
        handle_request_locked (core, &msg);
        break;
      case DHF_XDM_CANCEL:
        {
          gpointer key = GUINT_TO_POINTER (msg.id);
          DhfInvocation *invocation = g_hash_table_lookup (core->invocations, key);

          if (invocation != NULL)
            {
              g_hash_table_remove (core->invocations, key);
              later_abandon (later, invocation);
            }
        }
        break;
      case DHF_XDM_EVENT:
        handle_event_locked (core, &msg);
        break;
      case DHF_XDM_STREAM_DATA:
      case DHF_XDM_STREAM_CREDIT:
      case DHF_XDM_STREAM_CLOSE:
        handle_stream_frame_locked (core, &msg);
        break;
      case DHF_XDM_PING:
        send_empty_locked (core, DHF_XDM_PONG, msg.id);
        break;
      case DHF_XDM_PONG:
        break;
      default:
        {
          g_autofree gchar *text
              = g_strdup_printf ("unexpected %s from dhfd", dhf_xdm_type_to_string (msg.type));

          send_error_locked (core, msg.id, DHF_ERROR_PROTOCOL, text);
        }
        break;
    }
  dhf_xdm_message_clear (&msg);
}

/* Frames every complete frame buffered. FALSE when the connection was
 * dropped on the way (framing lost, or a frame ended the attempt). */
static gboolean
process_input_locked (DhfClientCore *core, Later *later)
{
  guint gen = core->gen;
  gsize off = 0;

  while (core->fd >= 0 && core->gen == gen && !core->read_paused)
    {
      DhfXdmHeader header;
      g_autoptr (GError) error = NULL;
      gssize size = dhf_xdm_frame_scan (core->inbuf + off, core->in_len - off, &header, &error);

      if (size < 0)
        {
          send_error_locked (core, 0, DHF_ERROR_PROTOCOL, error->message);
          (void) flush_locked (core);
          g_prefix_error (&error, "dhfd broke the framing: ");
          fail_connection_locked (core, error, FALSE, later);
          return FALSE;
        }
      if (size == 0)
        break;
      handle_frame_locked (core, &header, core->inbuf + off + DHF_XDM_HEADER_SIZE, later);
      off += (gsize) size;
    }
  if (core->fd < 0 || core->gen != gen)
    return FALSE;
  if (off > 0)
    {
      memmove (core->inbuf, core->inbuf + off, core->in_len - off);
      core->in_len -= off;
    }
  /* Room for the whole of the next frame (its header is valid: scanned). */
  if (core->in_len >= DHF_XDM_HEADER_SIZE)
    {
      DhfXdmHeader header;

      if (dhf_xdm_header_parse (core->inbuf, &header, NULL))
        {
          gsize need = DHF_XDM_HEADER_SIZE + (gsize) header.length;

          if (need > core->in_cap)
            {
              core->in_cap = need;
              core->inbuf = g_realloc (core->inbuf, core->in_cap);
            }
        }
    }
  return TRUE;
}

/* At most this many reads per dispatch: a fast sender must not starve
 * the flush, the deadline timer and the close job. */
#define READS_PER_DISPATCH 4

static void
read_input_locked (DhfClientCore *core, Later *later)
{
  for (guint n = 0; n < READS_PER_DISPATCH && !core->read_paused; n++)
    {
      gssize r;
      gsize space;

      if (core->in_cap - core->in_len < INBUF_MIN / 4)
        {
          core->in_cap = MAX (core->in_cap * 2, INBUF_MIN);
          core->inbuf = g_realloc (core->inbuf, core->in_cap);
        }
      space = core->in_cap - core->in_len;
      /* The lock is not needed to read (only this thread reads), but
       * writers wait for it briefly only. */
      g_mutex_unlock (&core->lock);
      do
        r = read (core->fd, core->inbuf + core->in_len, space);
      while (r < 0 && errno == EINTR);
      g_mutex_lock (&core->lock);
      if (r < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
        return;
      if (r <= 0)
        {
          g_autoptr (GError) error = NULL;

          /* A virtio port reads EOF (a pty EIO) while the host side is
           * closed: dhfd went away. */
          if (r == 0 || errno == EIO)
            error = g_error_new_literal (DHF_ERROR, DHF_ERROR_DISCONNECTED,
                                         "dhfd closed the connection");
          else
            error = g_error_new (DHF_ERROR, DHF_ERROR_DISCONNECTED, "read: %s", g_strerror (errno));
          fail_connection_locked (core, error, is_soft_transport (core), later);
          return;
        }
      core->in_len += (gsize) r;
      if (!process_input_locked (core, later))
        return;
      if ((gsize) r < space)
        return;
    }
}

static gboolean
io_dispatch (GSource *source, GSourceFunc callback, gpointer user_data)
{
  DhfClientCore *core = ((CoreSource *) source)->core;
  Later later = { G_QUEUE_INIT };
  GIOCondition revents;

  g_mutex_lock (&core->lock);
  if (source != core->io_source || core->fd < 0)
    {
      g_mutex_unlock (&core->lock);
      return G_SOURCE_CONTINUE;
    }
  revents = core->io_tag != NULL ? g_source_query_unix_fd (source, core->io_tag) : 0;
  if (core->state == DHF_CONN_CONNECTING)
    {
      /* A non-blocking connect() finished. */
      g_autoptr (GError) error = NULL;
      gint fd = core->fd;

      if (revents == 0)
        {
          g_mutex_unlock (&core->lock);
          return G_SOURCE_CONTINUE;
        }
      destroy_source (&core->io_source);
      core->fd = -1;
      if (dhf_transport_finish_connect (fd, &core->taddr, &error))
        setup_connection_locked (core, fd, core->fd_is_socket, &later);
      else
        {
          close (fd);
          attempt_failed_locked (core, error, FALSE, &later);
        }
      g_mutex_unlock (&core->lock);
      run_later (core, &later);
      return G_SOURCE_CONTINUE;
    }
  /* Woken because handlers drained: first the frames buffered already. */
  g_source_set_ready_time (source, -1);
  if (!core->read_paused && core->in_len > 0 && core->state >= DHF_CONN_HANDSHAKE
      && !process_input_locked (core, &later))
    {
      g_mutex_unlock (&core->lock);
      run_later (core, &later);
      return G_SOURCE_CONTINUE;
    }
  if ((revents & G_IO_OUT) || core->broken)
    {
      if (core->broken || !flush_locked (core))
        {
          g_autoptr (GError) error = NULL;

          if (core->broken_full)
            error = g_error_new (DHF_ERROR, DHF_ERROR_DISCONNECTED,
                                 "dhfd does not read: over %u bytes queued for it",
                                 2 * DHF_CLIENT_MAX_OUTGOING_QUEUE);
          else
            error = g_error_new (DHF_ERROR, DHF_ERROR_DISCONNECTED, "write: %s",
                                 core->broken ? "broken pipe" : g_strerror (errno));

          fail_connection_locked (core, error, is_soft_transport (core), &later);
          g_mutex_unlock (&core->lock);
          run_later (core, &later);
          return G_SOURCE_CONTINUE;
        }
    }
  if ((revents & (G_IO_IN | G_IO_HUP | G_IO_ERR)) && !core->read_paused)
    read_input_locked (core, &later);
  g_mutex_unlock (&core->lock);
  run_later (core, &later);
  return G_SOURCE_CONTINUE;
}

static gboolean
deadline_dispatch (GSource *source, GSourceFunc callback, gpointer user_data)
{
  DhfClientCore *core = ((CoreSource *) source)->core;
  Later later = { G_QUEUE_INIT };
  gint64 now = g_get_monotonic_time ();
  gint64 next = -1;
  GHashTableIter iter;
  gpointer value;

  g_mutex_lock (&core->lock);
  g_hash_table_iter_init (&iter, core->pending);
  while (g_hash_table_iter_next (&iter, NULL, &value))
    {
      DhfPending *p = value;

      if (p->sync)
        continue; /* its waiter watches its own deadline */
      if (p->deadline > now)
        {
          next = next < 0 ? p->deadline : MIN (next, p->deadline);
          continue;
        }
      g_hash_table_iter_remove (&iter);
      send_cancel_locked (core, p);
      p->error = g_error_new_literal (DHF_ERROR, DHF_ERROR_TIMEOUT, "no answer within the timeout");
      if (p->kind == PENDING_RESTORE)
        {
          g_message ("dhf: dhfd did not answer the restoring of the %s", p->what);
          restore_done_locked (core, &later);
        }
      finish_pending_locked (core, p, &later);
    }
  core->armed_deadline = next;
  g_source_set_ready_time (source, next);
  g_mutex_unlock (&core->lock);
  run_later (core, &later);
  return G_SOURCE_CONTINUE;
}

/* ---- the I/O thread ------------------------------------------------------ */

static gpointer
io_thread_main (gpointer data)
{
  DhfClientCore *core = data;

  g_main_context_push_thread_default (core->context);
  while (!g_atomic_int_get (&core->quit))
    g_main_context_iteration (core->context, TRUE);
  g_main_context_pop_thread_default (core->context);
  dhf_core_unref (core);
  return NULL;
}

/* Asks for a connection (if none is there or under way). The listening
 * socket of a listen: address is made here, in the caller's thread, so
 * that dhfd can connect as soon as this returns. */
static gboolean
core_request_connect (DhfClientCore *core, GError **error)
{
  Later later = { G_QUEUE_INIT };

  if (core->address_error != NULL)
    {
      g_propagate_error (error, g_error_copy (core->address_error));
      return FALSE;
    }
  g_mutex_lock (&core->lock);
  if (core->taddr.kind == DHF_TRANSPORT_LISTEN && core->listen_fd < 0)
    {
      core->listen_fd = dhf_transport_listen (core->taddr.path, error);
      if (core->listen_fd < 0)
        {
          g_mutex_unlock (&core->lock);
          return FALSE;
        }
    }
  if (core->state == DHF_CONN_IDLE)
    {
      set_state_locked (core, DHF_CONN_CONNECTING, &later);
      core->backoff_ms = BACKOFF_MIN_MS;
      /* Watching sockets belongs to the I/O thread; a zero timeout there. */
      destroy_source (&core->retry_source);
      core->retry_source = g_timeout_source_new (0);
      g_source_set_callback (core->retry_source, retry_cb, core, NULL);
      g_source_attach (core->retry_source, core->context);
    }
  g_mutex_unlock (&core->lock);
  return TRUE;
}

static void
wake_state_cb (GCancellable *cancellable, gpointer data)
{
  DhfClientCore *core = data;

  g_mutex_lock (&core->lock);
  g_cond_broadcast (&core->state_cond);
  g_mutex_unlock (&core->lock);
}

/* Where connecting stands when a caller starts waiting (both counters
 * fit in the 64 bits of a task's data). */
static guint64
core_get_serials (DhfClientCore *core)
{
  guint64 serials;

  g_mutex_lock (&core->lock);
  serials = ((guint64) core->connect_serial << 32) | core->fail_serial;
  g_mutex_unlock (&core->lock);
  return serials;
}

/* Waits until a connection was made or an attempt failed since serials
 * were taken: a connection that is lost right after its WELCOME still
 * counts as made (the client then reconnects on its own). */
static gboolean
core_wait_connected (DhfClientCore *core, guint64 serials, GCancellable *cancellable,
                     GError **error)
{
  guint connect_serial = (guint) (serials >> 32);
  guint serial = (guint) serials;
  gulong cancel_id = 0;
  gboolean ok = FALSE;

  if (cancellable != NULL)
    cancel_id = g_cancellable_connect (cancellable, G_CALLBACK (wake_state_cb), core, NULL);
  g_mutex_lock (&core->lock);
  while (core->state != DHF_CONN_CONNECTED && core->connect_serial == connect_serial
         && core->fail_serial == serial && !g_cancellable_is_cancelled (cancellable))
    g_cond_wait (&core->state_cond, &core->lock);
  if (core->state == DHF_CONN_CONNECTED || core->connect_serial != connect_serial)
    ok = TRUE;
  else if (core->fail_serial != serial)
    g_propagate_error (error, g_error_copy (core->fail_error));
  else
    g_set_error_literal (error, DHF_ERROR, DHF_ERROR_CANCELLED, "connecting was cancelled");
  g_mutex_unlock (&core->lock);
  if (cancel_id != 0)
    g_cancellable_disconnect (cancellable, cancel_id);
  return ok;
}

typedef struct
{
  DhfClientCore *core;
  GError *error;
  gboolean done;
} CloseJob;

/* What was written before dhf_client_close() (answers, the end of a
 * stream) still goes out, if dhfd takes it within a short while. */
static void
flush_before_close_locked (DhfClientCore *core)
{
  gint64 end = g_get_monotonic_time () + CLOSE_FLUSH_MS * 1000;

  while (core->fd >= 0 && !core->broken && core->outq_off < core->outq->len
         && core->state >= DHF_CONN_HANDSHAKE)
    {
      struct pollfd pfd = { .fd = core->fd, .events = POLLOUT };
      gint64 left = end - g_get_monotonic_time ();

      if (left <= 0 || poll (&pfd, 1, (int) (left / 1000) + 1) <= 0 || !flush_locked (core))
        break;
    }
}

/* Tears everything down (on the I/O thread, which owns the fds). */
static void
close_in_io_thread (CloseJob *job)
{
  DhfClientCore *core = job->core;
  Later later = { G_QUEUE_INIT };

  g_mutex_lock (&core->lock);
  flush_before_close_locked (core);
  core->keep_connected = FALSE;
  destroy_source (&core->retry_source);
  destroy_source (&core->listen_source);
  drop_connection_locked (core, job->error, &later);
  if (core->listen_fd >= 0)
    {
      close (core->listen_fd);
      core->listen_fd = -1;
      (void) g_unlink (core->taddr.path);
    }
  if (core->state != DHF_CONN_IDLE)
    {
      g_clear_error (&core->fail_error);
      core->fail_error = g_error_copy (job->error);
      core->fail_serial++;
    }
  set_state_locked (core, DHF_CONN_IDLE, &later);
  job->done = TRUE;
  g_cond_broadcast (&core->state_cond);
  g_mutex_unlock (&core->lock);
  run_later (core, &later);
}

static gboolean
close_job_cb (gpointer data)
{
  close_in_io_thread (data);
  return G_SOURCE_REMOVE;
}

static void
core_close (DhfClientCore *core, const gchar *why)
{
  CloseJob job = { core, g_error_new_literal (DHF_ERROR, DHF_ERROR_CANCELLED, why), FALSE };

  if (core->thread == NULL || g_thread_self () == core->thread)
    close_in_io_thread (&job);
  else
    {
      run_in_context (core->context, close_job_cb, &job, NULL);
      g_mutex_lock (&core->lock);
      while (!job.done)
        g_cond_wait (&core->state_cond, &core->lock);
      g_mutex_unlock (&core->lock);
    }
  g_error_free (job.error);
}

/* ---- requests ------------------------------------------------------------ */

static void
sync_cancelled_cb (GCancellable *cancellable, gpointer data)
{
  DhfPending *p = data;

  g_mutex_lock (&p->core->lock);
  p->cancelled = TRUE;
  g_cond_signal (&p->cond);
  g_mutex_unlock (&p->core->lock);
}

static gboolean
require_connected_locked (DhfClientCore *core, GError **error)
{
  if (core->state == DHF_CONN_CONNECTED)
    return TRUE;
  g_set_error_literal (error, DHF_ERROR, DHF_ERROR_DISCONNECTED,
                       core->keep_connected ? "not connected to dhfd (reconnecting)"
                                            : "not connected to dhfd");
  return FALSE;
}

/* Sends type with body and waits for the answer, with core->lock held
 * (released while waiting), so that what the caller changed under the
 * same hold and the frame cannot be reordered against other threads.
 * p (on the caller's stack, set up by pending_sync_init()) holds the
 * result or stream, the caller's. */
static gboolean
request_sync_locked (DhfClientCore *core, DhfPending *p, DhfXdmType type, const GString *body,
                     gint timeout_ms, GError **error)
{
  GByteArray *frame = dhf_core_scratch_frame ();

  insert_pending_locked (core, p, timeout_ms);
  dhf_xdm_append_text (frame, type, p->id, body->str, body->len);
  if (!dhf_core_send_request_locked (core, core->gen, frame->data, frame->len, &p->error))
    {
      g_hash_table_remove (core->pending, GUINT_TO_POINTER (p->id));
      p->done = TRUE;
    }
  while (!p->done && !p->cancelled)
    {
      if (!g_cond_wait_until (&p->cond, &core->lock, p->deadline))
        break;
    }
  if (!p->done)
    {
      /* Gave up first: the request leaves the table, dhfd is told. */
      g_hash_table_remove (core->pending, GUINT_TO_POINTER (p->id));
      send_cancel_locked (core, p);
      if (p->cancelled)
        p->error
            = g_error_new_literal (DHF_ERROR, DHF_ERROR_CANCELLED, "the request was cancelled");
      else
        p->error = g_error_new (DHF_ERROR, DHF_ERROR_TIMEOUT, "no answer within %d ms", timeout_ms);
      p->done = TRUE;
    }
  if (p->error == NULL)
    return TRUE;
  g_propagate_error (error, g_steal_pointer (&p->error));
  return FALSE;
}

static void
pending_sync_init (DhfPending *p, DhfClientCore *core, PendingKind kind)
{
  p->sync = TRUE;
  p->core = core;
  p->kind = kind;
  g_cond_init (&p->cond);
}

/* Sends type with body and waits for the answer, in the calling thread.
 * p is on the caller's stack; its result or stream is the caller's. */
static gboolean
request_sync (DhfClientCore *core, DhfPending *p, DhfXdmType type, const GString *body,
              gint timeout_ms, GCancellable *cancellable, GError **error)
{
  gulong cancel_id = 0;
  gboolean ok;

  pending_sync_init (p, core, p->kind);
  if (g_cancellable_is_cancelled (cancellable))
    {
      g_set_error_literal (error, DHF_ERROR, DHF_ERROR_CANCELLED, "the request was cancelled");
      g_cond_clear (&p->cond);
      return FALSE;
    }
  if (cancellable != NULL)
    cancel_id = g_cancellable_connect (cancellable, G_CALLBACK (sync_cancelled_cb), p, NULL);

  g_mutex_lock (&core->lock);
  ok = require_connected_locked (core, error)
       && request_sync_locked (core, p, type, body, timeout_ms, error);
  g_mutex_unlock (&core->lock);
  if (cancel_id != 0)
    g_cancellable_disconnect (cancellable, cancel_id);
  g_cond_clear (&p->cond);
  return ok;
}

static gboolean
async_cancel_idle_cb (gpointer data)
{
  return G_SOURCE_REMOVE; /* the work is in the destroy notify */
}

/* The cancellable of an async request fired (in whatever thread). */
static void
async_cancelled_cb (GCancellable *cancellable, gpointer data)
{
  DhfPending *p = data;
  DhfClientCore *core = p->core;
  gboolean ours = FALSE;
  gulong cancel_id;

  g_mutex_lock (&core->lock);
  if (!p->done && g_hash_table_lookup (core->pending, GUINT_TO_POINTER (p->id)) == p)
    {
      g_hash_table_remove (core->pending, GUINT_TO_POINTER (p->id));
      send_cancel_locked (core, p);
      p->done = TRUE;
      ours = TRUE;
    }
  cancel_id = p->cancel_id;
  if (ours)
    p->cancel_id = 0;
  g_mutex_unlock (&core->lock);
  if (!ours)
    return;
  g_task_return_new_error (p->task, DHF_ERROR, DHF_ERROR_CANCELLED, "the request was cancelled");
  /* Disconnecting from inside this handler would deadlock: the I/O thread
   * does it (the table's reference goes with it), with the id cleared
   * from p above. As the idle's destroy notify, it happens even if the
   * I/O thread's context is torn down before the idle runs. */
  if (cancel_id != 0)
    {
      CancelDisconnect *cd = g_new0 (CancelDisconnect, 1);

      cd->p = p;
      cd->cancel_id = cancel_id;
      run_in_context (core->context, async_cancel_idle_cb, cd, cancel_disconnect_cb);
    }
  else
    pending_unref (p);
}

/* Sends type with body for an async request p (heap, one reference). */
static void
request_async (DhfClientCore *core, DhfPending *p, DhfXdmType type, const GString *body,
               gint timeout_ms)
{
  g_autoptr (GError) error = NULL;
  GCancellable *cancellable = p->cancellable;
  gboolean sent = FALSE;
  gulong cancel_id;

  /* Cancellation is reported as DHF_ERROR_CANCELLED, like the rest. */
  g_task_set_check_cancellable (p->task, FALSE);
  g_mutex_lock (&core->lock);
  if (g_cancellable_is_cancelled (p->cancellable))
    error = g_error_new_literal (DHF_ERROR, DHF_ERROR_CANCELLED, "the request was cancelled");
  else if (require_connected_locked (core, &error))
    {
      GByteArray *frame = dhf_core_scratch_frame ();

      insert_pending_locked (core, p, timeout_ms);
      dhf_xdm_append_text (frame, type, p->id, body->str, body->len);
      sent = dhf_core_send_request_locked (core, core->gen, frame->data, frame->len, &error);
      if (!sent)
        g_hash_table_remove (core->pending, GUINT_TO_POINTER (p->id));
      else if (cancellable != NULL)
        {
          /* The cancellable's reference, taken before the answer can come
           * and complete p; released by whoever disconnects it. */
          pending_ref (p);
        }
    }
  g_mutex_unlock (&core->lock);
  if (!sent)
    {
      g_task_return_error (p->task, g_steal_pointer (&error));
      pending_unref (p);
      return;
    }
  if (cancellable == NULL)
    return; /* p may be gone already */
  cancel_id
      = g_cancellable_connect (cancellable, G_CALLBACK (async_cancelled_cb), p, pending_unref);
  if (cancel_id == 0)
    return; /* was cancelled already: the handler ran (and data was released) */
  g_mutex_lock (&core->lock);
  if (p->done)
    {
      /* Answered (or cancelled) before we could record the id. */
      g_mutex_unlock (&core->lock);
      g_cancellable_disconnect (cancellable, cancel_id);
      return;
    }
  p->cancel_id = cancel_id;
  g_mutex_unlock (&core->lock);
}

/* ---- GObject -------------------------------------------------------------- */

static void
dhf_client_constructed (GObject *object)
{
  DhfClient *self = DHF_CLIENT (object);
  DhfClientCore *core = core_new (self->address);

  G_OBJECT_CLASS (dhf_client_parent_class)->constructed (object);
  self->core = core;
  g_weak_ref_set (&core->client, self);
  core->thread = g_thread_new ("dhf-client", io_thread_main, dhf_core_ref (core));
}

static void
dhf_client_dispose (GObject *object)
{
  DhfClient *self = DHF_CLIENT (object);
  DhfClientCore *core = self->core;
  g_autoptr (GPtrArray) handlers = g_ptr_array_new ();
  GHashTableIter iter;
  gpointer value;

  if (core == NULL || core->thread == NULL)
    {
      G_OBJECT_CLASS (dhf_client_parent_class)->dispose (object);
      return;
    }
  core_close (core, "the client was finalized");

  g_mutex_lock (&core->lock);
  g_hash_table_iter_init (&iter, core->handlers);
  while (g_hash_table_iter_next (&iter, NULL, &value))
    g_ptr_array_add (handlers, value);
  g_hash_table_remove_all (core->handlers);
  g_hash_table_remove_all (core->services);
  g_hash_table_remove_all (core->topics);
  g_atomic_int_set (&core->quit, TRUE);
  g_mutex_unlock (&core->lock);
  for (guint i = 0; i < handlers->len; i++)
    handler_deactivate (core, handlers->pdata[i]);

  g_main_context_wakeup (core->context);
  /* The last reference may be dropped on the I/O thread itself (a GTask it
   * completed): it then exits once this dispatch returns. */
  if (g_thread_self () == core->thread)
    g_thread_unref (core->thread);
  else
    g_thread_join (core->thread);
  core->thread = NULL;
  G_OBJECT_CLASS (dhf_client_parent_class)->dispose (object);
}

static void
dhf_client_finalize (GObject *object)
{
  DhfClient *self = DHF_CLIENT (object);

  g_clear_pointer (&self->core, dhf_core_unref);
  g_free (self->address);
  G_OBJECT_CLASS (dhf_client_parent_class)->finalize (object);
}

static void
dhf_client_get_property (GObject *object, guint prop_id, GValue *value, GParamSpec *pspec)
{
  DhfClient *self = DHF_CLIENT (object);

  switch (prop_id)
    {
      case PROP_ADDRESS:
        g_value_set_string (value, dhf_client_get_address (self));
        break;
      case PROP_DOMAIN:
        g_mutex_lock (&self->core->lock);
        g_value_set_string (value, self->core->domain);
        g_mutex_unlock (&self->core->lock);
        break;
      case PROP_CONNECTED:
        g_value_set_boolean (value, dhf_client_get_connected (self));
        break;
      case PROP_AUTO_RECONNECT:
        g_value_set_boolean (value, dhf_client_get_auto_reconnect (self));
        break;
      default:
        G_OBJECT_WARN_INVALID_PROPERTY_ID (object, prop_id, pspec);
    }
}

static void
dhf_client_set_property (GObject *object, guint prop_id, const GValue *value, GParamSpec *pspec)
{
  DhfClient *self = DHF_CLIENT (object);

  switch (prop_id)
    {
      case PROP_ADDRESS:
        self->address = g_value_dup_string (value);
        break;
      case PROP_AUTO_RECONNECT:
        dhf_client_set_auto_reconnect (self, g_value_get_boolean (value));
        break;
      default:
        G_OBJECT_WARN_INVALID_PROPERTY_ID (object, prop_id, pspec);
    }
}

static void
dhf_client_class_init (DhfClientClass *klass)
{
  GObjectClass *object_class = G_OBJECT_CLASS (klass);

  object_class->constructed = dhf_client_constructed;
  object_class->dispose = dhf_client_dispose;
  object_class->finalize = dhf_client_finalize;
  object_class->get_property = dhf_client_get_property;
  object_class->set_property = dhf_client_set_property;

  /**
   * DhfClient:address:
   *
   * The XDM address (see #DhfClient), or %NULL at construction for the
   * default one; reads back the address in use.
   *
   * Since: 0.2
   */
  props[PROP_ADDRESS]
      = g_param_spec_string ("address", NULL, NULL, NULL,
                             G_PARAM_READWRITE | G_PARAM_CONSTRUCT_ONLY | G_PARAM_STATIC_STRINGS);
  /**
   * DhfClient:domain:
   *
   * The domain dhfd identifies this client as, from its WELCOME; %NULL
   * before the first connection.
   *
   * Since: 0.2
   */
  props[PROP_DOMAIN]
      = g_param_spec_string ("domain", NULL, NULL, NULL, G_PARAM_READABLE | G_PARAM_STATIC_STRINGS);
  /**
   * DhfClient:connected:
   *
   * Whether the client is connected to dhfd (and, after a reconnection,
   * its services and subscriptions are restored). Change notifications are
   * emitted in the thread-default main context of the thread that created
   * the client.
   *
   * Since: 0.2
   */
  props[PROP_CONNECTED] = g_param_spec_boolean ("connected", NULL, NULL, FALSE,
                                                G_PARAM_READABLE | G_PARAM_STATIC_STRINGS);
  /**
   * DhfClient:auto-reconnect:
   *
   * Whether a lost connection is re-established (with a backoff of 100 ms
   * to 2 s). Default %TRUE.
   *
   * Since: 0.2
   */
  props[PROP_AUTO_RECONNECT] = g_param_spec_boolean ("auto-reconnect", NULL, NULL, TRUE,
                                                     G_PARAM_READWRITE | G_PARAM_STATIC_STRINGS);
  g_object_class_install_properties (object_class, N_PROPS, props);
}

static void
dhf_client_init (DhfClient *self)
{
}

/* ---- public API ------------------------------------------------------------- */

/**
 * dhf_client_new:
 * @address: (nullable): an XDM address (`channel:`, `vsock:`, `unix:PATH`,
 *   `listen:PATH`), or %NULL for the default one
 *
 * Creates a client; it does not connect until dhf_client_connect_sync()
 * or dhf_client_connect(). An invalid address makes connecting fail with
 * %DHF_ERROR_INVALID_ARGS.
 *
 * The thread-default main context of the calling thread is where
 * notifications of #DhfClient:connected are emitted.
 *
 * Returns: (transfer full): a new #DhfClient
 *
 * Since: 0.2
 */
DhfClient *
dhf_client_new (const gchar *address)
{
  return g_object_new (DHF_TYPE_CLIENT, "address", address, NULL);
}

/**
 * dhf_client_get_address:
 * @self: a #DhfClient
 *
 * Returns: (transfer none): the address the client connects to
 *
 * Since: 0.2
 */
const gchar *
dhf_client_get_address (DhfClient *self)
{
  g_return_val_if_fail (DHF_IS_CLIENT (self), NULL);
  return self->core->address;
}

/**
 * dhf_client_get_domain:
 * @self: a #DhfClient
 *
 * Returns: (nullable) (transfer none): the domain dhfd identifies this
 *   client as (from its WELCOME), or %NULL before the first connection
 *
 * Since: 0.2
 */
const gchar *
dhf_client_get_domain (DhfClient *self)
{
  const gchar *domain;

  g_return_val_if_fail (DHF_IS_CLIENT (self), NULL);
  /* Set once per connection; the string stays valid until the next
   * WELCOME names another domain (which a given transport never does). */
  g_mutex_lock (&self->core->lock);
  domain = self->core->domain;
  g_mutex_unlock (&self->core->lock);
  return domain;
}

/**
 * dhf_client_get_connected:
 * @self: a #DhfClient
 *
 * Returns: whether the client is connected to dhfd now
 *
 * Since: 0.2
 */
gboolean
dhf_client_get_connected (DhfClient *self)
{
  gboolean connected;

  g_return_val_if_fail (DHF_IS_CLIENT (self), FALSE);
  g_mutex_lock (&self->core->lock);
  connected = self->core->state == DHF_CONN_CONNECTED;
  g_mutex_unlock (&self->core->lock);
  return connected;
}

/**
 * dhf_client_get_auto_reconnect:
 * @self: a #DhfClient
 *
 * Returns: whether a lost connection is re-established
 *
 * Since: 0.2
 */
gboolean
dhf_client_get_auto_reconnect (DhfClient *self)
{
  gboolean value;

  g_return_val_if_fail (DHF_IS_CLIENT (self), FALSE);
  g_mutex_lock (&self->core->lock);
  value = self->core->auto_reconnect;
  g_mutex_unlock (&self->core->lock);
  return value;
}

/**
 * dhf_client_set_auto_reconnect:
 * @self: a #DhfClient
 * @auto_reconnect: whether to re-establish a lost connection
 *
 * Sets #DhfClient:auto-reconnect. Turning it off does not stop a
 * reconnection already under way.
 *
 * Since: 0.2
 */
void
dhf_client_set_auto_reconnect (DhfClient *self, gboolean auto_reconnect)
{
  gboolean changed;

  g_return_if_fail (DHF_IS_CLIENT (self));
  g_mutex_lock (&self->core->lock);
  changed = self->core->auto_reconnect != !!auto_reconnect;
  self->core->auto_reconnect = !!auto_reconnect;
  g_mutex_unlock (&self->core->lock);
  if (changed)
    g_object_notify_by_pspec (G_OBJECT (self), props[PROP_AUTO_RECONNECT]);
}

/**
 * dhf_client_connect_sync:
 * @self: a #DhfClient
 * @cancellable: (nullable): a #GCancellable
 * @error: return location for a #GError
 *
 * Connects and says HELLO; returns once dhfd's WELCOME arrived. For
 * `channel:` and `listen:` addresses this waits for dhfd to connect (the
 * listening socket exists as soon as the call started). `unix:` and
 * `vsock:` fail at once when dhfd cannot be reached
 * (%DHF_ERROR_DISCONNECTED). No common protocol version:
 * %DHF_ERROR_PROTOCOL. Cancelling stops the waiting, not a connection
 * attempt already under way (dhf_client_close() does).
 *
 * Returns: %TRUE once connected
 *
 * Since: 0.2
 */
gboolean
dhf_client_connect_sync (DhfClient *self, GCancellable *cancellable, GError **error)
{
  guint64 serial;

  g_return_val_if_fail (DHF_IS_CLIENT (self), FALSE);
  g_return_val_if_fail (error == NULL || *error == NULL, FALSE);
  serial = core_get_serials (self->core);
  if (!core_request_connect (self->core, error))
    return FALSE;
  return core_wait_connected (self->core, serial, cancellable, error);
}

static void
connect_thread (GTask *task, gpointer source_object, gpointer task_data, GCancellable *cancellable)
{
  GError *error = NULL;

  if (core_wait_connected (DHF_CLIENT (source_object)->core, *(guint64 *) task_data, cancellable,
                           &error))
    g_task_return_boolean (task, TRUE);
  else
    g_task_return_error (task, error);
}

/**
 * dhf_client_connect:
 * @self: a #DhfClient
 * @cancellable: (nullable): a #GCancellable
 * @callback: (scope async) (nullable): called when connected or failed
 * @user_data: (closure): data for @callback
 *
 * Connects asynchronously; see dhf_client_connect_sync(). For a `listen:`
 * address the socket is listening when this returns. @callback runs in
 * the thread-default main context of the caller.
 *
 * Since: 0.2
 */
void
dhf_client_connect (DhfClient *self, GCancellable *cancellable, GAsyncReadyCallback callback,
                    gpointer user_data)
{
  g_autoptr (GTask) task = NULL;
  GError *error = NULL;
  guint64 *serials;

  g_return_if_fail (DHF_IS_CLIENT (self));
  task = g_task_new (self, cancellable, callback, user_data);
  g_task_set_source_tag (task, dhf_client_connect);
  serials = g_new (guint64, 1);
  *serials = core_get_serials (self->core);
  g_task_set_task_data (task, serials, g_free);
  if (!core_request_connect (self->core, &error))
    {
      g_task_return_error (task, error);
      return;
    }
  g_task_run_in_thread (task, connect_thread);
}

/**
 * dhf_client_connect_finish:
 * @self: a #DhfClient
 * @result: the #GAsyncResult
 * @error: return location for a #GError
 *
 * Returns: %TRUE once connected
 *
 * Since: 0.2
 */
gboolean
dhf_client_connect_finish (DhfClient *self, GAsyncResult *result, GError **error)
{
  g_return_val_if_fail (g_task_is_valid (result, self), FALSE);
  return g_task_propagate_boolean (G_TASK (result), error);
}

/**
 * dhf_client_close:
 * @self: a #DhfClient
 *
 * Closes the connection (and the listening socket of a `listen:`
 * address). Requests in flight fail with %DHF_ERROR_CANCELLED, streams
 * are reset, invocations not answered yet are cancelled. No reconnection
 * follows; services and subscriptions stay registered in the client and
 * are registered again by the next dhf_client_connect_sync().
 *
 * Since: 0.2
 */
void
dhf_client_close (DhfClient *self)
{
  g_return_if_fail (DHF_IS_CLIENT (self));
  core_close (self->core, "the client was closed");
}

/**
 * dhf_client_register_service:
 * @self: a #DhfClient
 * @service: the service name, e.g. "org.example.Echo1"
 * @handler: (scope notified) (closure user_data) (destroy notify): called
 *   for each request
 * @user_data: data for @handler
 * @notify: (nullable): frees @user_data when the registration goes
 * @error: return location for a #GError
 *
 * Offers @service to other domains (dhfd's policy decides who may call
 * it). @handler runs in the thread-default main context of the thread
 * calling this function, once per call or stream request; it answers with
 * dhf_invocation_return_json() and friends, now or later. Blocks until
 * dhfd has accepted the registration. The registration is restored after
 * a reconnection.
 *
 * @notify runs when the registration goes (dhf_client_unregister_service(),
 * or the client's finalization) once no handler runs any more, and also
 * when the registration fails.
 *
 * Returns: a registration id (> 0), or 0 with @error set (dhfd refused it:
 *   %DHF_ERROR_EXISTS, %DHF_ERROR_NOT_AUTHORIZED for reserved names,
 *   %DHF_ERROR_LIMIT_EXCEEDED; %DHF_ERROR_DISCONNECTED when not connected)
 *
 * Since: 0.2
 */
guint
dhf_client_register_service (DhfClient *self, const gchar *service, DhfServiceHandler handler,
                             gpointer user_data, GDestroyNotify notify, GError **error)
{
  DhfClientCore *core;
  DhfHandler *h;
  g_autoptr (GString) body = NULL;
  DhfPending p = { 0 };
  gboolean ok;
  guint id;

  g_return_val_if_fail (DHF_IS_CLIENT (self), 0);
  g_return_val_if_fail (handler != NULL, 0);
  g_return_val_if_fail (error == NULL || *error == NULL, 0);
  core = self->core;
  if (service == NULL || !dhf_xdm_name_is_valid (service))
    {
      g_set_error (error, DHF_ERROR, DHF_ERROR_INVALID_ARGS, "invalid service name '%s'",
                   service != NULL ? service : "(null)");
      if (notify != NULL)
        notify (user_data);
      return 0;
    }

  /* Attached before it is in the tables: the I/O thread queues calls to
   * it (and takes its context) as soon as it is there. */
  h = handler_new (core, TRUE, service);
  h->service_handler = handler;
  h->user_data = user_data;
  h->notify = notify;
  g_source_attach (&h->source, g_main_context_get_thread_default ());

  g_mutex_lock (&core->lock);
  if (!require_connected_locked (core, error) || g_hash_table_contains (core->services, service))
    {
      if (error == NULL || *error == NULL)
        g_set_error (error, DHF_ERROR, DHF_ERROR_EXISTS, "%s is already registered by this client",
                     service);
      g_mutex_unlock (&core->lock);
      handler_deactivate (core, h); /* calls notify */
      return 0;
    }
  /* In the table before REGISTER goes out (under the same hold of the
   * lock): dhfd may route a call to it right after its REPLY. */
  h->id = id = core->next_handler_id++;
  g_hash_table_insert (core->handlers, GUINT_TO_POINTER (id), h);
  g_hash_table_insert (core->services, h->name, h);
  body = g_string_new (NULL);
  g_string_printf (body, "{\"service\":\"%s\"}", service);
  pending_sync_init (&p, core, PENDING_SIMPLE);
  ok = request_sync_locked (core, &p, DHF_XDM_REGISTER, body, DHF_XDM_DEFAULT_TIMEOUT_MS, error);
  if (!ok)
    {
      if (g_hash_table_lookup (core->handlers, GUINT_TO_POINTER (id)) == h)
        g_hash_table_remove (core->handlers, GUINT_TO_POINTER (id));
      if (g_hash_table_lookup (core->services, service) == h)
        g_hash_table_remove (core->services, service);
    }
  g_mutex_unlock (&core->lock);
  g_cond_clear (&p.cond);
  pending_clear_fields (&p);
  if (!ok)
    {
      g_prefix_error (error, "cannot register %s: ", service);
      handler_deactivate (core, h);
      return 0;
    }
  return id;
}

/* Unregisters or unsubscribes a handler: kind is DHF_XDM_UNREGISTER or
 * DHF_XDM_UNSUBSCRIBE. */
static gboolean
remove_handler (DhfClient *self, guint id, gboolean is_service, GError **error)
{
  DhfClientCore *core = self->core;
  DhfHandler *h;
  gboolean tell_dhfd = FALSE;
  gboolean ok = TRUE;

  g_mutex_lock (&core->lock);
  h = g_hash_table_lookup (core->handlers, GUINT_TO_POINTER (id));
  if (h == NULL || h->is_service != is_service)
    {
      g_mutex_unlock (&core->lock);
      g_set_error (error, DHF_ERROR, DHF_ERROR_NOT_FOUND, "no %s with id %u",
                   is_service ? "registration" : "subscription", id);
      return FALSE;
    }
  g_hash_table_remove (core->handlers, GUINT_TO_POINTER (id));
  if (is_service)
    {
      g_hash_table_remove (core->services, h->name);
      tell_dhfd = TRUE;
    }
  else
    {
      GPtrArray *subs = g_hash_table_lookup (core->topics, h->name);

      g_ptr_array_remove (subs, h);
      tell_dhfd = subs->len == 0;
      if (tell_dhfd)
        g_hash_table_remove (core->topics, h->name);
    }
  /* Also while the registrations are being restored (after WELCOME): it
   * goes out after the restoring REGISTER / SUBSCRIBE, and under the same
   * hold of the lock as the tables' change, so that a SUBSCRIBE of another
   * thread cannot overtake it. */
  tell_dhfd = tell_dhfd && core->state >= DHF_CONN_RESTORING;
  if (tell_dhfd)
    {
      g_autoptr (GString) body = g_string_new (NULL);
      DhfPending p = { 0 };

      g_string_printf (body, is_service ? "{\"service\":\"%s\"}" : "{\"topic\":\"%s\"}", h->name);
      pending_sync_init (&p, core, PENDING_SIMPLE);
      ok = request_sync_locked (core, &p, is_service ? DHF_XDM_UNREGISTER : DHF_XDM_UNSUBSCRIBE,
                                body, DHF_XDM_DEFAULT_TIMEOUT_MS, error);
      g_cond_clear (&p.cond);
      pending_clear_fields (&p);
    }
  g_mutex_unlock (&core->lock);
  handler_deactivate (core, h);
  return ok;
}

/**
 * dhf_client_unregister_service:
 * @self: a #DhfClient
 * @registration_id: the id dhf_client_register_service() returned
 * @error: return location for a #GError
 *
 * Withdraws a service. Requests already queued for its handler are
 * refused (%DHF_ERROR_NOT_FOUND). The registration is gone from the
 * client even when dhfd could not be told (not connected: nothing to
 * tell; an error from dhfd is returned).
 *
 * Returns: %TRUE on success; %FALSE with %DHF_ERROR_NOT_FOUND for an
 *   unknown id, or dhfd's error
 *
 * Since: 0.2
 */
gboolean
dhf_client_unregister_service (DhfClient *self, guint registration_id, GError **error)
{
  g_return_val_if_fail (DHF_IS_CLIENT (self), FALSE);
  g_return_val_if_fail (error == NULL || *error == NULL, FALSE);
  return remove_handler (self, registration_id, TRUE, error);
}

static GString *
build_call_body (const gchar *service, const gchar *target, const gchar *params_json,
                 gint *timeout_ms, GError **error)
{
  g_autoptr (GString) body = NULL;

  if (*timeout_ms <= 0)
    *timeout_ms = DHF_XDM_DEFAULT_TIMEOUT_MS;
  if (*timeout_ms > DHF_XDM_MAX_TIMEOUT_MS)
    {
      g_set_error (error, DHF_ERROR, DHF_ERROR_INVALID_ARGS, "timeout over %d ms",
                   DHF_XDM_MAX_TIMEOUT_MS);
      return NULL;
    }
  if (params_json != NULL
      && !dhf_core_json_validate (params_json, DHF_XDM_MAX_DEPTH - 1, "params", error))
    return NULL;
  body = start_service_body (service, target, error);
  if (body == NULL)
    return NULL;
  g_string_append_printf (body, ",\"timeout_ms\":%d", *timeout_ms);
  if (params_json != NULL)
    {
      g_string_append (body, ",\"params\":");
      g_string_append (body, params_json);
    }
  g_string_append_c (body, '}');
  if (!check_body_size (body, error))
    return NULL;
  return g_steal_pointer (&body);
}

/**
 * dhf_client_call_sync:
 * @self: a #DhfClient
 * @service: "SERVICE" or "SERVICE+ARG"
 * @target: (nullable): the domain to call, or %NULL to let dhfd's policy
 *   pick the one provider the caller may call
 * @params_json: (nullable): the parameters as JSON text, or %NULL for none
 * @timeout_ms: how long to wait; <= 0 for the default (25 s), at most
 *   600000
 * @cancellable: (nullable): a #GCancellable
 * @error: return location for a #GError
 *
 * Calls a service of another domain and waits for its result, from any
 * thread. The deadline is enforced here as well as by dhfd (which may be
 * gone): after exactly @timeout_ms the call fails with %DHF_ERROR_TIMEOUT
 * and dhfd is told to CANCEL it. Cancelling @cancellable fails it with
 * %DHF_ERROR_CANCELLED (and CANCELs it too). Errors of the provider or of
 * dhfd arrive with their #DhfError code (%DHF_ERROR_NOT_AUTHORIZED,
 * %DHF_ERROR_NOT_FOUND, %DHF_ERROR_UNAVAILABLE, ...); a lost connection is
 * %DHF_ERROR_DISCONNECTED.
 *
 * Returns: (transfer full): the result as JSON text ("null" when the
 *   provider returned nothing), or %NULL with @error set
 *
 * Since: 0.2
 */
gchar *
dhf_client_call_sync (DhfClient *self, const gchar *service, const gchar *target,
                      const gchar *params_json, gint timeout_ms, GCancellable *cancellable,
                      GError **error)
{
  g_autoptr (GString) body = NULL;
  DhfPending p = { 0 };
  gchar *result = NULL;

  g_return_val_if_fail (DHF_IS_CLIENT (self), NULL);
  g_return_val_if_fail (error == NULL || *error == NULL, NULL);
  body = build_call_body (service, target, params_json, &timeout_ms, error);
  if (body == NULL)
    return NULL;
  p.kind = PENDING_CALL;
  if (request_sync (self->core, &p, DHF_XDM_CALL, body, timeout_ms, cancellable, error))
    result = g_steal_pointer (&p.result);
  pending_clear_fields (&p);
  return result;
}

/**
 * dhf_client_call:
 * @self: a #DhfClient
 * @service: "SERVICE" or "SERVICE+ARG"
 * @target: (nullable): the domain to call, or %NULL to let policy pick
 * @params_json: (nullable): the parameters as JSON text, or %NULL
 * @timeout_ms: how long to wait; <= 0 for the default (25 s)
 * @cancellable: (nullable): a #GCancellable
 * @callback: (scope async) (nullable): called with the result
 * @user_data: (closure): data for @callback
 *
 * Calls a service asynchronously; see dhf_client_call_sync(). @callback
 * runs in the thread-default main context of the caller. Any number of
 * calls may be in flight (up to dhfd's limit).
 *
 * Since: 0.2
 */
void
dhf_client_call (DhfClient *self, const gchar *service, const gchar *target,
                 const gchar *params_json, gint timeout_ms, GCancellable *cancellable,
                 GAsyncReadyCallback callback, gpointer user_data)
{
  g_autoptr (GString) body = NULL;
  GError *error = NULL;
  DhfPending *p;
  GTask *task;

  g_return_if_fail (DHF_IS_CLIENT (self));
  task = g_task_new (self, cancellable, callback, user_data);
  g_task_set_source_tag (task, dhf_client_call);
  body = build_call_body (service, target, params_json, &timeout_ms, &error);
  if (body == NULL)
    {
      g_task_return_error (task, error);
      g_object_unref (task);
      return;
    }
  p = pending_new (self->core, PENDING_CALL);
  p->task = task;
  p->cancellable = cancellable != NULL ? g_object_ref (cancellable) : NULL;
  request_async (self->core, p, DHF_XDM_CALL, body, timeout_ms);
}

/**
 * dhf_client_call_finish:
 * @self: a #DhfClient
 * @result: the #GAsyncResult
 * @error: return location for a #GError
 *
 * Returns: (transfer full): the result as JSON text, or %NULL with @error
 *   set
 *
 * Since: 0.2
 */
gchar *
dhf_client_call_finish (DhfClient *self, GAsyncResult *result, GError **error)
{
  g_return_val_if_fail (g_task_is_valid (result, self), NULL);
  return g_task_propagate_pointer (G_TASK (result), error);
}

/**
 * dhf_client_subscribe:
 * @self: a #DhfClient
 * @topic: the topic, e.g. "org.example.Alerts"
 * @handler: (scope notified) (closure user_data) (destroy notify): called
 *   for each event
 * @user_data: data for @handler
 * @notify: (nullable): frees @user_data when the subscription goes
 * @error: return location for a #GError
 *
 * Receives the events of @topic that dhfd's policy lets this domain
 * receive. @handler runs in the thread-default main context of the thread
 * calling this function. Blocks until dhfd has accepted the subscription
 * (only the first subscription of a topic asks dhfd). Restored after a
 * reconnection. @notify runs when the subscription goes, or fails.
 *
 * Returns: a subscription id (> 0), or 0 with @error set
 *
 * Since: 0.2
 */
guint
dhf_client_subscribe (DhfClient *self, const gchar *topic, DhfEventHandler handler,
                      gpointer user_data, GDestroyNotify notify, GError **error)
{
  DhfClientCore *core;
  DhfHandler *h;
  GPtrArray *subs;
  gboolean first;
  guint id;

  g_return_val_if_fail (DHF_IS_CLIENT (self), 0);
  g_return_val_if_fail (handler != NULL, 0);
  g_return_val_if_fail (error == NULL || *error == NULL, 0);
  core = self->core;
  if (topic == NULL || !dhf_xdm_name_is_valid (topic))
    {
      g_set_error (error, DHF_ERROR, DHF_ERROR_INVALID_ARGS, "invalid topic '%s'",
                   topic != NULL ? topic : "(null)");
      if (notify != NULL)
        notify (user_data);
      return 0;
    }
  /* Attached before it is in the tables (events are queued at once). */
  h = handler_new (core, FALSE, topic);
  h->event_handler = handler;
  h->user_data = user_data;
  h->notify = notify;
  g_source_attach (&h->source, g_main_context_get_thread_default ());

  g_mutex_lock (&core->lock);
  for (;;)
    {
      if (!require_connected_locked (core, error))
        {
          g_mutex_unlock (&core->lock);
          handler_deactivate (core, h); /* calls notify */
          return 0;
        }
      /* Another thread's SUBSCRIBE of the topic is in flight: its outcome
       * decides whether this one is the first. */
      if (!g_hash_table_contains (core->subscribing, topic))
        break;
      g_cond_wait (&core->state_cond, &core->lock);
    }
  h->id = id = core->next_handler_id++;
  subs = g_hash_table_lookup (core->topics, topic);
  if (subs == NULL)
    {
      subs = g_ptr_array_new ();
      g_hash_table_insert (core->topics, g_strdup (topic), subs);
    }
  first = subs->len == 0;
  g_ptr_array_add (subs, h);
  g_hash_table_insert (core->handlers, GUINT_TO_POINTER (id), h);
  if (first)
    {
      g_autoptr (GString) body = g_string_new (NULL);
      DhfPending p = { 0 };
      gboolean ok;

      g_string_printf (body, "{\"topic\":\"%s\"}", topic);
      g_hash_table_add (core->subscribing, g_strdup (topic));
      pending_sync_init (&p, core, PENDING_SIMPLE);
      ok = request_sync_locked (core, &p, DHF_XDM_SUBSCRIBE, body, DHF_XDM_DEFAULT_TIMEOUT_MS,
                                error);
      g_cond_clear (&p.cond);
      pending_clear_fields (&p);
      g_hash_table_remove (core->subscribing, topic);
      g_cond_broadcast (&core->state_cond);
      if (!ok)
        {
          if (g_hash_table_lookup (core->handlers, GUINT_TO_POINTER (id)) == h)
            g_hash_table_remove (core->handlers, GUINT_TO_POINTER (id));
          subs = g_hash_table_lookup (core->topics, topic);
          if (subs != NULL && g_ptr_array_remove (subs, h) && subs->len == 0)
            g_hash_table_remove (core->topics, topic);
          g_mutex_unlock (&core->lock);
          g_prefix_error (error, "cannot subscribe to %s: ", topic);
          handler_deactivate (core, h);
          return 0;
        }
    }
  g_mutex_unlock (&core->lock);
  return id;
}

/**
 * dhf_client_unsubscribe:
 * @self: a #DhfClient
 * @subscription_id: the id dhf_client_subscribe() returned
 * @error: return location for a #GError
 *
 * Stops receiving events through that subscription. Events already
 * queued for its handler are dropped.
 *
 * Returns: %TRUE on success; %FALSE with %DHF_ERROR_NOT_FOUND for an
 *   unknown id, or dhfd's error
 *
 * Since: 0.2
 */
gboolean
dhf_client_unsubscribe (DhfClient *self, guint subscription_id, GError **error)
{
  g_return_val_if_fail (DHF_IS_CLIENT (self), FALSE);
  g_return_val_if_fail (error == NULL || *error == NULL, FALSE);
  return remove_handler (self, subscription_id, FALSE, error);
}

/**
 * dhf_client_publish:
 * @self: a #DhfClient
 * @topic: the topic
 * @data_json: (nullable): the event's data as JSON text, or %NULL for none
 * @error: return location for a #GError
 *
 * Publishes an event; dhfd delivers it to the subscribers its policy lets
 * receive it (never back to this connection). Does not wait.
 *
 * Returns: %TRUE when the event was sent; %FALSE with @error for invalid
 *   arguments or when not connected
 *
 * Since: 0.2
 */
gboolean
dhf_client_publish (DhfClient *self, const gchar *topic, const gchar *data_json, GError **error)
{
  DhfClientCore *core;
  g_autoptr (GString) body = NULL;
  gboolean ok;

  g_return_val_if_fail (DHF_IS_CLIENT (self), FALSE);
  g_return_val_if_fail (error == NULL || *error == NULL, FALSE);
  core = self->core;
  if (topic == NULL || !dhf_xdm_name_is_valid (topic))
    {
      g_set_error (error, DHF_ERROR, DHF_ERROR_INVALID_ARGS, "invalid topic '%s'",
                   topic != NULL ? topic : "(null)");
      return FALSE;
    }
  if (data_json != NULL
      && !dhf_core_json_validate (data_json, DHF_XDM_MAX_DEPTH - 1, "data", error))
    return FALSE;
  body = g_string_new (NULL);
  g_string_printf (body, "{\"topic\":\"%s\"", topic);
  if (data_json != NULL)
    {
      g_string_append (body, ",\"data\":");
      g_string_append (body, data_json);
    }
  g_string_append_c (body, '}');
  if (!check_body_size (body, error))
    return FALSE;
  g_mutex_lock (&core->lock);
  ok = require_connected_locked (core, error);
  if (ok)
    {
      GByteArray *frame = dhf_core_scratch_frame ();

      dhf_xdm_append_text (frame, DHF_XDM_PUBLISH, 0, body->str, body->len);
      ok = dhf_core_send_request_locked (core, core->gen, frame->data, frame->len, error);
    }
  g_mutex_unlock (&core->lock);
  return ok;
}

static GString *
build_open_body (const gchar *service, const gchar *target, GError **error)
{
  g_autoptr (GString) body = start_service_body (service, target, error);

  if (body == NULL)
    return NULL;
  g_string_append_printf (body, ",\"window\":%u}", DHF_STREAM_WINDOW);
  return g_steal_pointer (&body);
}

/**
 * dhf_client_open_stream_sync:
 * @self: a #DhfClient
 * @service: "SERVICE" or "SERVICE+ARG"
 * @target: (nullable): the domain, or %NULL to let policy pick
 * @cancellable: (nullable): a #GCancellable
 * @error: return location for a #GError
 *
 * Opens a byte stream to a service of another domain, whose handler
 * accepts it with dhf_invocation_accept_stream(). Waits (up to the
 * default timeout of 25 s) for the provider to accept or refuse.
 *
 * Returns: (transfer full): the stream, or %NULL with @error set
 *
 * Since: 0.2
 */
DhfStream *
dhf_client_open_stream_sync (DhfClient *self, const gchar *service, const gchar *target,
                             GCancellable *cancellable, GError **error)
{
  g_autoptr (GString) body = NULL;
  DhfPending p = { 0 };
  DhfStream *stream = NULL;

  g_return_val_if_fail (DHF_IS_CLIENT (self), NULL);
  g_return_val_if_fail (error == NULL || *error == NULL, NULL);
  body = build_open_body (service, target, error);
  if (body == NULL)
    return NULL;
  p.kind = PENDING_OPEN;
  p.service = g_strdup (service);
  p.target = g_strdup (target);
  if (request_sync (self->core, &p, DHF_XDM_STREAM_OPEN, body, DHF_XDM_DEFAULT_TIMEOUT_MS,
                    cancellable, error))
    stream = g_steal_pointer (&p.stream);
  pending_clear_fields (&p);
  return stream;
}

/**
 * dhf_client_open_stream:
 * @self: a #DhfClient
 * @service: "SERVICE" or "SERVICE+ARG"
 * @target: (nullable): the domain, or %NULL to let policy pick
 * @cancellable: (nullable): a #GCancellable
 * @callback: (scope async) (nullable): called when the stream is open or refused
 * @user_data: (closure): data for @callback
 *
 * Opens a stream asynchronously; see dhf_client_open_stream_sync().
 *
 * Since: 0.2
 */
void
dhf_client_open_stream (DhfClient *self, const gchar *service, const gchar *target,
                        GCancellable *cancellable, GAsyncReadyCallback callback, gpointer user_data)
{
  g_autoptr (GString) body = NULL;
  GError *error = NULL;
  DhfPending *p;
  GTask *task;

  g_return_if_fail (DHF_IS_CLIENT (self));
  task = g_task_new (self, cancellable, callback, user_data);
  g_task_set_source_tag (task, dhf_client_open_stream);
  body = build_open_body (service, target, &error);
  if (body == NULL)
    {
      g_task_return_error (task, error);
      g_object_unref (task);
      return;
    }
  p = pending_new (self->core, PENDING_OPEN);
  p->task = task;
  p->cancellable = cancellable != NULL ? g_object_ref (cancellable) : NULL;
  p->service = g_strdup (service);
  p->target = g_strdup (target);
  request_async (self->core, p, DHF_XDM_STREAM_OPEN, body, DHF_XDM_DEFAULT_TIMEOUT_MS);
}

/**
 * dhf_client_open_stream_finish:
 * @self: a #DhfClient
 * @result: the #GAsyncResult
 * @error: return location for a #GError
 *
 * Returns: (transfer full): the stream, or %NULL with @error set
 *
 * Since: 0.2
 */
DhfStream *
dhf_client_open_stream_finish (DhfClient *self, GAsyncResult *result, GError **error)
{
  g_return_val_if_fail (g_task_is_valid (result, self), NULL);
  return g_task_propagate_pointer (G_TASK (result), error);
}

void
dhf_core_set_next_request_id (DhfClient *self, guint32 id)
{
  g_mutex_lock (&self->core->lock);
  self->core->next_id = id;
  g_mutex_unlock (&self->core->lock);
}

gsize
dhf_core_get_handler_bytes (DhfClient *self, gboolean *read_paused)
{
  gsize bytes;

  g_mutex_lock (&self->core->lock);
  bytes = self->core->handler_bytes;
  *read_paused = self->core->read_paused;
  g_mutex_unlock (&self->core->lock);
  return bytes;
}
