/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include "config.h"

/* The core of DhfClient (DhfClientCore): the connection, writing to it,
 * its state, the incoming frames and the I/O thread that runs it all. */

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
#define CLOSE_FLUSH_MS       2000

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

DhfClientCore *
dhf_core_new (const gchar *address)
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

void
dhf_core_run_in_context (GMainContext *context, GSourceFunc func, gpointer data,
                         GDestroyNotify destroy)
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
void
dhf_core_update_io_events_locked (DhfClientCore *core)
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
  dhf_core_update_io_events_locked (core);
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

gboolean
dhf_core_send_frame_locked (DhfClientCore *core, GByteArray *frame)
{
  return dhf_core_send_locked (core, core->gen, frame->data, frame->len, NULL, 0);
}

static void
send_error_locked (DhfClientCore *core, guint32 id, DhfError code, const gchar *message)
{
  GByteArray *frame = dhf_core_scratch_frame ();

  dhf_xdm_append_error (frame, id, code, message);
  (void) dhf_core_send_frame_locked (core, frame);
}

static void
send_empty_locked (DhfClientCore *core, DhfXdmType type, guint32 id)
{
  GByteArray *frame = dhf_core_scratch_frame ();

  dhf_xdm_append_json (frame, type, id, NULL);
  (void) dhf_core_send_frame_locked (core, frame);
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
  (void) dhf_core_send_frame_locked (core, frame);
}

/* ---- the connection's state -------------------------------------------- */

void
dhf_core_set_state_locked (DhfClientCore *core, DhfConnState state, Later *later)
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
      dhf_core_finish_pending_locked (core, p, later);
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
      dhf_core_later_abandon (later, value);
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
  dhf_core_run_later (core, &later);
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
  dhf_core_set_state_locked (core, DHF_CONN_CONNECTING, later);
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
    dhf_core_set_state_locked (core, DHF_CONN_IDLE, later);
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
    dhf_core_set_state_locked (core, DHF_CONN_IDLE, later);
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
  dhf_core_run_later (core, &later);
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
  (void) dhf_core_send_frame_locked (core, frame);
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
  dhf_core_set_state_locked (core, DHF_CONN_HANDSHAKE, later);
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
  dhf_core_run_later (core, &later);
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
  dhf_core_set_state_locked (core, DHF_CONN_RESTORING, later);

  /* Services and subscriptions of the previous connection, pipelined;
   * the client counts as connected once dhfd has answered them all. */
  g_hash_table_iter_init (&iter, core->services);
  while (g_hash_table_iter_next (&iter, &key, NULL))
    {
      DhfPending *p = dhf_core_pending_new (core, PENDING_RESTORE);
      GByteArray *frame = dhf_core_scratch_frame ();
      g_autofree gchar *body = g_strdup_printf ("{\"service\":\"%s\"}", (const gchar *) key);

      p->what = g_strdup_printf ("service %s", (const gchar *) key);
      p->service = g_strdup (key);
      p->restore_service = TRUE;
      dhf_core_insert_pending_locked (core, p, DHF_XDM_DEFAULT_TIMEOUT_MS);
      dhf_xdm_append_text (frame, DHF_XDM_REGISTER, p->id, body, strlen (body));
      (void) dhf_core_send_frame_locked (core, frame);
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
      p = dhf_core_pending_new (core, PENDING_RESTORE);
      frame = dhf_core_scratch_frame ();
      body = g_strdup_printf ("{\"topic\":\"%s\"}", (const gchar *) key);
      p->what = g_strdup_printf ("subscription to %s", (const gchar *) key);
      p->service = g_strdup (key);
      dhf_core_insert_pending_locked (core, p, DHF_XDM_DEFAULT_TIMEOUT_MS);
      dhf_xdm_append_text (frame, DHF_XDM_SUBSCRIBE, p->id, body, strlen (body));
      (void) dhf_core_send_frame_locked (core, frame);
      core->restoring++;
    }
  if (core->restoring == 0)
    dhf_core_set_state_locked (core, DHF_CONN_CONNECTED, later);
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
      dhf_core_restore_done_locked (core, later);
    }
  dhf_core_finish_pending_locked (core, p, later);
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
  dhf_core_charge_handlers_locked (core, dhf_core_invocation_get_size (invocation));
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
      dhf_core_charge_handlers_locked (core, item->size);
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
          dhf_core_restore_done_locked (core, later);
        dhf_core_finish_pending_locked (core, p, later);
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
              dhf_core_later_abandon (later, invocation);
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
      dhf_core_run_later (core, &later);
      return G_SOURCE_CONTINUE;
    }
  /* Woken because handlers drained: first the frames buffered already. */
  g_source_set_ready_time (source, -1);
  if (!core->read_paused && core->in_len > 0 && core->state >= DHF_CONN_HANDSHAKE
      && !process_input_locked (core, &later))
    {
      g_mutex_unlock (&core->lock);
      dhf_core_run_later (core, &later);
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
          dhf_core_run_later (core, &later);
          return G_SOURCE_CONTINUE;
        }
    }
  if ((revents & (G_IO_IN | G_IO_HUP | G_IO_ERR)) && !core->read_paused)
    read_input_locked (core, &later);
  g_mutex_unlock (&core->lock);
  dhf_core_run_later (core, &later);
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
      dhf_core_send_cancel_locked (core, p);
      p->error = g_error_new_literal (DHF_ERROR, DHF_ERROR_TIMEOUT, "no answer within the timeout");
      if (p->kind == PENDING_RESTORE)
        {
          g_message ("dhf: dhfd did not answer the restoring of the %s", p->what);
          dhf_core_restore_done_locked (core, &later);
        }
      dhf_core_finish_pending_locked (core, p, &later);
    }
  core->armed_deadline = next;
  g_source_set_ready_time (source, next);
  g_mutex_unlock (&core->lock);
  dhf_core_run_later (core, &later);
  return G_SOURCE_CONTINUE;
}

/* ---- the I/O thread ------------------------------------------------------ */

gpointer
dhf_core_io_thread_main (gpointer data)
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
gboolean
dhf_core_request_connect (DhfClientCore *core, GError **error)
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
      dhf_core_set_state_locked (core, DHF_CONN_CONNECTING, &later);
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
guint64
dhf_core_get_serials (DhfClientCore *core)
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
gboolean
dhf_core_wait_connected (DhfClientCore *core, guint64 serials, GCancellable *cancellable,
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
  dhf_core_set_state_locked (core, DHF_CONN_IDLE, &later);
  job->done = TRUE;
  g_cond_broadcast (&core->state_cond);
  g_mutex_unlock (&core->lock);
  dhf_core_run_later (core, &later);
}

static gboolean
close_job_cb (gpointer data)
{
  close_in_io_thread (data);
  return G_SOURCE_REMOVE;
}

void
dhf_core_close (DhfClientCore *core, const gchar *why)
{
  CloseJob job = { core, g_error_new_literal (DHF_ERROR, DHF_ERROR_CANCELLED, why), FALSE };

  if (core->thread == NULL || g_thread_self () == core->thread)
    close_in_io_thread (&job);
  else
    {
      dhf_core_run_in_context (core->context, close_job_cb, &job, NULL);
      g_mutex_lock (&core->lock);
      while (!job.done)
        g_cond_wait (&core->state_cond, &core->lock);
      g_mutex_unlock (&core->lock);
    }
  g_error_free (job.error);
}
