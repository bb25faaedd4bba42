/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <unistd.h>

#include <gio/gio.h>
#include <glib-unix.h>

#include "dhf-xdm-conn.h"

/* The shared read buffer: most frames are handled where they were read. */
#define SCRATCH_SIZE (256 * 1024)
/* What one connection may read per dispatch before the others get their
 * turn. */
#define READ_BUDGET (512 * 1024)
/* Ready connections taken from epoll per dispatch (the rest come next
 * time: epoll rotates its ready list). */
#define MAX_EVENTS 64
/* The first allocation for a partial frame; it doubles up to the frame's
 * size as bytes arrive, so a peer that sends a large header and then
 * nothing costs at most this. */
#define PEND_MIN (256 * 1024)
/* Frames this large are written straight from where they were read when
 * nothing is queued ahead of them. */
#define WRITE_THROUGH_MIN (16 * 1024)
/* An output buffer that grew beyond this is freed once drained. */
#define OUT_KEEP (16 * 1024)

struct _DhfXdmPoller
{
  GSource *source;
  gpointer tag;
  gint epfd;
  gint64 timer; /* the wake-up asked for, -1 for none */
  gboolean dispatching;
  gboolean freed; /* freed during a dispatch: goes at its end */
  DhfXdmPollerFuncs funcs;
  gpointer user_data;
  guint8 *scratch;
};

typedef struct
{
  GSource source;
  DhfXdmPoller *poller;
} PollerSource;

static void conn_set_events (DhfXdmConn *conn, guint32 events);

static void
conn_fail (DhfXdmConn *conn, GError *error)
{
  DhfXdmPoller *poller = conn->poller;

  dhf_xdm_conn_stop_reading (conn);
  poller->funcs.failed (conn, error, poller->user_data);
}

static void
conn_fail_errno (DhfXdmConn *conn, gint saved_errno, const gchar *what)
{
  g_autoptr (GError) error = g_error_new (G_IO_ERROR, g_io_error_from_errno (saved_errno), "%s: %s",
                                          what, g_strerror (saved_errno));

  conn_fail (conn, error);
}

static void
pend_free (DhfXdmConn *conn)
{
  g_clear_pointer (&conn->pend, g_free);
  conn->pend_len = conn->pend_cap = conn->pend_total = 0;
}

/* Whether the owner takes a frame with this (valid) header now. */
static gboolean
conn_admit (DhfXdmConn *conn, const DhfXdmHeader *header, GError **error)
{
  if (conn->only_type != 0 && header->type != conn->only_type)
    {
      g_set_error (error, DHF_ERROR, DHF_ERROR_PROTOCOL, "%s before %s",
                   dhf_xdm_type_to_string (header->type), dhf_xdm_type_to_string (conn->only_type));
      return FALSE;
    }
  if (conn->max_length != 0 && header->length > conn->max_length)
    {
      g_set_error (error, DHF_ERROR, DHF_ERROR_PROTOCOL,
                   "a %s frame with a body of %u bytes, over the limit of %u bytes at this point",
                   dhf_xdm_type_to_string (header->type), header->length, conn->max_length);
      return FALSE;
    }
  return TRUE;
}

/* Hands the complete frames at the start of buf to the router and keeps
 * the incomplete rest. FALSE when the connection must not be read on. */
static gboolean
deliver (DhfXdmConn *conn, guint8 *buf, gsize len)
{
  DhfXdmPoller *poller = conn->poller;
  gsize off = 0;

  while (off < len)
    {
      g_autoptr (GError) error = NULL;
      DhfXdmHeader header;
      gssize size = dhf_xdm_frame_scan (buf + off, len - off, &header, &error);

      /* A header is judged as soon as it is in, before its body is
       * waited for. */
      if (size < 0 || (len - off >= DHF_XDM_HEADER_SIZE && !conn_admit (conn, &header, &error)))
        {
          conn_fail (conn, error);
          return FALSE;
        }
      if (size == 0)
        break;
      if (!poller->funcs.frame (conn, &header, buf + off, poller->user_data) || !conn->reading)
        return FALSE;
      off += (gsize) size;
    }

  len -= off;
  if (len < DHF_XDM_HEADER_SIZE)
    {
      memcpy (conn->head, buf + off, len);
      conn->head_len = len;
      return TRUE;
    }
  /* The header is there (and valid: scanned above), the body is not. */
  dhf_xdm_header_parse (buf + off, &conn->pend_header, NULL);
  conn->pend_total = DHF_XDM_HEADER_SIZE + conn->pend_header.length;
  conn->pend_cap = MIN (conn->pend_total, MAX (2 * len, PEND_MIN));
  conn->pend = g_malloc (conn->pend_cap);
  memcpy (conn->pend, buf + off, len);
  conn->pend_len = len;
  return TRUE;
}

/* Reads what the socket has, up to READ_BUDGET, with as few system calls
 * and copies as it can: into the shared scratch buffer, or, for the rest
 * of a large frame, straight into that frame's own buffer (and what
 * follows it into scratch, in the same readv). */
static void
conn_read (DhfXdmConn *conn)
{
  DhfXdmPoller *poller = conn->poller;
  guint8 *scratch = poller->scratch;
  gsize budget = READ_BUDGET;

  while (conn->reading && budget > 0)
    {
      struct iovec iov[2];
      gint n_iov;
      gsize requested, base = 0, in_scratch;
      gssize n;

      if (conn->pend != NULL)
        {
          if (conn->pend_len == conn->pend_cap)
            {
              conn->pend_cap = MIN (conn->pend_total, conn->pend_cap * 2);
              conn->pend = g_realloc (conn->pend, conn->pend_cap);
            }
          iov[0].iov_base = conn->pend + conn->pend_len;
          iov[0].iov_len = conn->pend_cap - conn->pend_len;
          n_iov = 1;
          /* Only once the frame can be completed may bytes beyond it come. */
          if (conn->pend_cap == conn->pend_total)
            {
              iov[1].iov_base = scratch;
              iov[1].iov_len = SCRATCH_SIZE;
              n_iov = 2;
            }
        }
      else
        {
          base = conn->head_len;
          memcpy (scratch, conn->head, base);
          conn->head_len = 0;
          iov[0].iov_base = scratch + base;
          iov[0].iov_len = SCRATCH_SIZE - base;
          n_iov = 1;
        }
      requested = iov[0].iov_len + (n_iov == 2 ? iov[1].iov_len : 0);

      n = readv (conn->fd, iov, n_iov);
      if (n < 0)
        {
          gint saved_errno = errno;

          memcpy (conn->head, scratch, base);
          conn->head_len = base;
          if (saved_errno == EINTR)
            continue;
          if (saved_errno != EAGAIN && saved_errno != EWOULDBLOCK)
            conn_fail_errno (conn, saved_errno, "read");
          return;
        }
      if (n == 0)
        {
          g_autoptr (GError) error = NULL;

          if (base > 0 || conn->pend != NULL)
            error = g_error_new (DHF_ERROR, DHF_ERROR_PROTOCOL,
                                 "the connection ended in the middle of a frame");
          conn_fail (conn, error);
          return;
        }
      conn->bytes_in += (guint64) n;
      budget -= MIN (budget, (gsize) n);

      if (conn->pend != NULL)
        {
          gsize taken = MIN ((gsize) n, conn->pend_cap - conn->pend_len);

          conn->pend_len += taken;
          in_scratch = (gsize) n - taken;
          if (conn->pend_len == conn->pend_total)
            {
              gboolean go_on
                  = poller->funcs.frame (conn, &conn->pend_header, conn->pend, poller->user_data);

              pend_free (conn);
              if (!go_on || !conn->reading)
                return;
            }
        }
      else
        in_scratch = base + (gsize) n;

      if (in_scratch > 0 && !deliver (conn, scratch, in_scratch))
        return;
      /* A short read emptied the socket: save the system call that would
       * say so. */
      if ((gsize) n < requested)
        return;
    }
}

static void
poller_finish (DhfXdmPoller *poller)
{
  g_source_unref (poller->source);
  close (poller->epfd);
  g_free (poller->scratch);
  g_free (poller);
}

static gboolean
poller_dispatch (GSource *source, GSourceFunc callback, gpointer data)
{
  DhfXdmPoller *poller = ((PollerSource *) source)->poller;

  /* The source may recurse (see dhf_xdm_poller_new()), but a callback
   * that iterates the context must not re-enter the loop below. */
  if (poller->dispatching)
    return G_SOURCE_CONTINUE;
  poller->dispatching = TRUE;
  if (poller->timer >= 0 && g_get_monotonic_time () >= poller->timer)
    {
      poller->timer = -1;
      g_source_set_ready_time (source, -1);
      poller->funcs.timer (poller->user_data);
    }

  if (g_source_query_unix_fd (source, poller->tag) & G_IO_IN)
    {
      struct epoll_event events[MAX_EVENTS];
      gint n;

      do
        n = epoll_wait (poller->epfd, events, MAX_EVENTS, 0);
      while (n < 0 && errno == EINTR);
      if (n < 0)
        g_warning ("xdm: epoll_wait: %s", g_strerror (errno));

      /* Nothing is freed during the loop: the router clears connections
       * in settle(), after it. */
      for (gint i = 0; i < n; i++)
        {
          DhfXdmConn *conn = events[i].data.ptr;
          guint32 ev = events[i].events;

          if ((ev & EPOLLOUT) && conn->blocked)
            {
              g_autoptr (GError) error = NULL;

              conn->blocked = FALSE;
              if (!dhf_xdm_conn_flush (conn, &error) && conn->reading)
                conn_fail (conn, error);
            }
          if ((ev & (EPOLLIN | EPOLLHUP | EPOLLERR)) && conn->reading)
            conn_read (conn);
        }
    }

  poller->funcs.settle (poller->user_data);
  poller->dispatching = FALSE;
  if (poller->freed)
    {
      poller_finish (poller);
      return G_SOURCE_REMOVE;
    }
  return G_SOURCE_CONTINUE;
}

static GSourceFuncs poller_source_funcs = {
  .dispatch = poller_dispatch,
};

DhfXdmPoller *
dhf_xdm_poller_new (GMainContext *context, const DhfXdmPollerFuncs *funcs, gpointer user_data)
{
  DhfXdmPoller *poller = g_new0 (DhfXdmPoller, 1);
  PollerSource *source;

  poller->epfd = epoll_create1 (EPOLL_CLOEXEC);
  if (poller->epfd < 0)
    g_error ("xdm: epoll_create1: %s", g_strerror (errno));
  poller->funcs = *funcs;
  poller->user_data = user_data;
  poller->timer = -1;
  poller->scratch = g_malloc (SCRATCH_SIZE);

  source = (PollerSource *) g_source_new (&poller_source_funcs, sizeof (PollerSource));
  source->poller = poller;
  poller->source = (GSource *) source;
  g_source_set_static_name (poller->source, "dhf-xdm");
  /* GLib "blocks" a source that cannot recurse while it dispatches, by
   * taking its fds out of the poll set and putting them back, which wakes
   * the context up twice per dispatch: two system calls per wake-up for
   * nothing, since the dispatch never iterates the context. */
  g_source_set_can_recurse (poller->source, TRUE);
  poller->tag = g_source_add_unix_fd (poller->source, poller->epfd, G_IO_IN);
  g_source_attach (poller->source, context);
  return poller;
}

void
dhf_xdm_poller_free (DhfXdmPoller *poller)
{
  if (poller == NULL)
    return;
  g_source_destroy (poller->source);
  /* From a callback of its own dispatch (the router's last reference
   * dropped by a closed func): the dispatch still uses it. */
  if (poller->dispatching)
    {
      poller->freed = TRUE;
      return;
    }
  poller_finish (poller);
}

void
dhf_xdm_poller_set_timer (DhfXdmPoller *poller, gint64 time)
{
  if (time < 0 || (poller->timer >= 0 && poller->timer <= time))
    return;
  poller->timer = time;
  g_source_set_ready_time (poller->source, time);
}

void
dhf_xdm_poller_rearm (DhfXdmPoller *poller, gint64 time)
{
  if (poller->timer == time)
    return;
  poller->timer = time;
  g_source_set_ready_time (poller->source, time);
}

/* --- connections ------------------------------------------------------- */

static void
conn_set_events (DhfXdmConn *conn, guint32 events)
{
  struct epoll_event ev = { .events = events, .data.ptr = conn };
  gint op;

  if (conn->events == events || conn->fd < 0)
    return;
  op = events == 0 ? EPOLL_CTL_DEL : conn->events == 0 ? EPOLL_CTL_ADD : EPOLL_CTL_MOD;
  if (epoll_ctl (conn->poller->epfd, op, conn->fd, &ev) < 0)
    g_warning ("xdm: epoll_ctl: %s", g_strerror (errno));
  conn->events = events;
}

gboolean
dhf_xdm_conn_init (DhfXdmConn *conn, DhfXdmPoller *poller, gint fd, GError **error)
{
  struct epoll_event ev = { .events = EPOLLIN, .data.ptr = conn };

  memset (conn, 0, sizeof *conn);
  conn->poller = poller;
  conn->fd = -1;
  if (!g_unix_set_fd_nonblocking (fd, TRUE, error))
    return FALSE;
  if (epoll_ctl (poller->epfd, EPOLL_CTL_ADD, fd, &ev) < 0)
    {
      gint saved_errno = errno;

      g_set_error (error, G_IO_ERROR, g_io_error_from_errno (saved_errno),
                   "cannot watch the connection: %s", g_strerror (saved_errno));
      return FALSE;
    }
  conn->fd = fd;
  conn->events = EPOLLIN;
  conn->reading = TRUE;
  return TRUE;
}

void
dhf_xdm_conn_clear (DhfXdmConn *conn)
{
  if (conn->fd >= 0)
    {
      conn_set_events (conn, 0);
      close (conn->fd);
      conn->fd = -1;
    }
  conn->reading = FALSE;
  pend_free (conn);
  g_clear_pointer (&conn->out, g_byte_array_unref);
  conn->out_head = 0;
}

void
dhf_xdm_conn_stop_reading (DhfXdmConn *conn)
{
  conn->reading = FALSE;
  /* A hung-up socket stays readable for ever: stop watching it. */
  conn_set_events (conn, 0);
  conn->blocked = FALSE;
}

GByteArray *
dhf_xdm_conn_get_out (DhfXdmConn *conn)
{
  if (conn->out == NULL)
    conn->out = g_byte_array_new ();
  return conn->out;
}

gsize
dhf_xdm_conn_get_queued (DhfXdmConn *conn)
{
  return conn->out != NULL ? conn->out->len - conn->out_head : 0;
}

gboolean
dhf_xdm_conn_is_blocked (DhfXdmConn *conn)
{
  return conn->blocked;
}

/* One non-blocking write: bytes taken, 0 when it would block, -1 (errno
 * set) on error. */
static gssize
conn_write (DhfXdmConn *conn, const guint8 *data, gsize length)
{
  gssize n;

  for (;;)
    {
      if (conn->use_write)
        n = write (conn->fd, data, length);
      else
        n = send (conn->fd, data, length, MSG_NOSIGNAL | MSG_DONTWAIT);
      if (n >= 0)
        {
          conn->bytes_out += (guint64) n;
          return n;
        }
      if (errno == EINTR)
        continue;
      if (errno == ENOTSOCK && !conn->use_write)
        {
          conn->use_write = TRUE;
          continue;
        }
      if (errno == EAGAIN || errno == EWOULDBLOCK)
        return 0;
      return -1;
    }
}

static void
out_drained (DhfXdmConn *conn)
{
  if (conn->out_peak > OUT_KEEP)
    {
      g_clear_pointer (&conn->out, g_byte_array_unref);
      conn->out_peak = 0;
    }
  else if (conn->out != NULL)
    g_byte_array_set_size (conn->out, 0);
  conn->out_head = 0;
  conn->out_bound = 0;
}

static inline guint32
read_le32 (const guint8 *p)
{
  return (guint32) p[0] | (guint32) p[1] << 8 | (guint32) p[2] << 16 | (guint32) p[3] << 24;
}

/* Moves out_bound to the first frame start at or after out_head. */
static void
out_find_bound (DhfXdmConn *conn)
{
  while (conn->out_bound < conn->out_head)
    conn->out_bound += DHF_XDM_HEADER_SIZE + read_le32 (conn->out->data + conn->out_bound + 12);
}

gsize
dhf_xdm_conn_discard_queued (DhfXdmConn *conn)
{
  gsize dropped;

  if (dhf_xdm_conn_get_queued (conn) == 0)
    return 0;
  out_find_bound (conn);
  dropped = conn->out->len - conn->out_bound;
  g_byte_array_set_size (conn->out, (guint) conn->out_bound);
  if (conn->out_head == conn->out->len)
    out_drained (conn);
  return dropped;
}

void
dhf_xdm_conn_queue_frame (DhfXdmConn *conn, const guint8 *frame, gsize length)
{
  gsize full = length;
  GByteArray *out;

  if (length >= WRITE_THROUGH_MIN && dhf_xdm_conn_get_queued (conn) == 0 && !conn->blocked
      && conn->fd >= 0)
    {
      gssize n = conn_write (conn, frame, length);

      /* An error shows again at the next flush, which reports it. */
      if (n > 0)
        {
          frame += n;
          length -= (gsize) n;
        }
      if (length == 0)
        return;
    }
  out = dhf_xdm_conn_get_out (conn);
  /* Nothing was queued: the queue starts here, with this frame or with
   * the part of it the socket did not take. */
  if (conn->out_head == out->len)
    conn->out_bound = out->len + (length < full ? length : 0);
  g_byte_array_append (out, frame, (guint) length);
  conn->out_peak = MAX (conn->out_peak, out->len);
}

gboolean
dhf_xdm_conn_flush (DhfXdmConn *conn, GError **error)
{
  gsize queued = dhf_xdm_conn_get_queued (conn);

  if (conn->out != NULL)
    conn->out_peak = MAX (conn->out_peak, conn->out->len);
  if (conn->blocked || conn->fd < 0)
    return TRUE;
  if (queued == 0)
    {
      /* Emptied by dhf_xdm_conn_discard_queued() while it waited. */
      if (conn->events & EPOLLOUT)
        conn_set_events (conn, conn->reading ? EPOLLIN : 0);
      return TRUE;
    }

  while (queued > 0)
    {
      gssize n = conn_write (conn, conn->out->data + conn->out_head, queued);

      if (n < 0)
        {
          gint saved_errno = errno;

          g_set_error (error, G_IO_ERROR, g_io_error_from_errno (saved_errno), "write: %s",
                       g_strerror (saved_errno));
          return FALSE;
        }
      conn->out_head += (gsize) n;
      queued -= (gsize) n;
      /* A short write filled the socket: wait for room rather than make
       * the system call that would say so. */
      if (queued > 0)
        {
          conn->blocked = TRUE;
          conn_set_events (conn, conn->reading ? EPOLLIN | EPOLLOUT : EPOLLOUT);
          /* Keep the queue from creeping forward in memory. */
          if (conn->out_head >= OUT_KEEP && conn->out_head >= queued)
            {
              out_find_bound (conn);
              g_byte_array_remove_range (conn->out, 0, (guint) conn->out_head);
              conn->out_bound -= conn->out_head;
              conn->out_head = 0;
            }
          return TRUE;
        }
    }
  out_drained (conn);
  if (conn->events & EPOLLOUT)
    conn_set_events (conn, conn->reading ? EPOLLIN : 0);
  return TRUE;
}
