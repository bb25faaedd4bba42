/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "xdm-harness.h"
#include "xdm-raw.h"

static struct sockaddr_un
unix_address (const gchar *path)
{
  struct sockaddr_un addr = { .sun_family = AF_UNIX };

  g_assert_cmpuint (strlen (path), <, sizeof addr.sun_path);
  memcpy (addr.sun_path, path, strlen (path));
  return addr;
}

gint
xdm_raw_listen (const gchar *path)
{
  struct sockaddr_un addr = unix_address (path);
  gint fd = socket (AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);

  g_assert_cmpint (fd, >=, 0);
  g_assert_cmpint (bind (fd, (struct sockaddr *) &addr, sizeof addr), ==, 0);
  g_assert_cmpint (listen (fd, 16), ==, 0);
  return fd;
}

static XdmRaw *
raw_new (gint fd)
{
  XdmRaw *raw = g_new0 (XdmRaw, 1);

  g_assert_cmpint (fcntl (fd, F_SETFL, fcntl (fd, F_GETFL) | O_NONBLOCK), ==, 0);
  raw->fd = fd;
  raw->in = g_byte_array_new ();
  return raw;
}

/* Waits for events on fd, running the main context in between. */
static gint
wait_fd (gint fd, gshort events)
{
  gint64 deadline = g_get_monotonic_time () + XDM_WAIT_TIMEOUT_S * G_USEC_PER_SEC;

  for (;;)
    {
      struct pollfd pfd = { .fd = fd, .events = events };
      gint n;

      while (g_main_context_iteration (NULL, FALSE))
        ;
      n = poll (&pfd, 1, 5);
      if (n > 0)
        return pfd.revents;
      if (n < 0 && errno != EINTR)
        g_error ("poll: %s", g_strerror (errno));
      if (g_get_monotonic_time () > deadline)
        g_error ("gave up waiting on a raw socket after %d s", XDM_WAIT_TIMEOUT_S);
    }
}

XdmRaw *
xdm_raw_accept (gint listen_fd)
{
  for (;;)
    {
      gint fd = accept4 (listen_fd, NULL, NULL, SOCK_CLOEXEC);

      if (fd >= 0)
        return raw_new (fd);
      g_assert_true (errno == EAGAIN || errno == EINTR);
      wait_fd (listen_fd, POLLIN);
    }
}

XdmRaw *
xdm_raw_connect (const gchar *path)
{
  struct sockaddr_un addr = unix_address (path);
  gint fd = socket (AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);

  g_assert_cmpint (fd, >=, 0);
  if (connect (fd, (struct sockaddr *) &addr, sizeof addr) != 0)
    g_error ("connecting to %s: %s", path, g_strerror (errno));
  return raw_new (fd);
}

void
xdm_raw_free (XdmRaw *raw)
{
  if (raw == NULL)
    return;
  close (raw->fd);
  g_byte_array_unref (raw->in);
  g_free (raw);
}

gboolean
xdm_raw_write (XdmRaw *raw, const void *data, gsize length)
{
  const guint8 *p = data;

  while (length > 0)
    {
      gssize n = send (raw->fd, p, length, MSG_NOSIGNAL);

      if (n > 0)
        {
          p += n;
          length -= (gsize) n;
          continue;
        }
      if (errno == EPIPE || errno == ECONNRESET)
        return FALSE;
      g_assert_true (errno == EAGAIN || errno == EINTR);
      wait_fd (raw->fd, POLLOUT);
    }
  return TRUE;
}

gssize
xdm_raw_send_some (XdmRaw *raw, const void *data, gsize length)
{
  for (;;)
    {
      gssize n = send (raw->fd, data, length, MSG_NOSIGNAL);

      if (n >= 0)
        return n;
      if (errno == EPIPE || errno == ECONNRESET)
        return -1;
      if (errno == EAGAIN)
        return 0;
      g_assert_cmpint (errno, ==, EINTR);
    }
}

void
xdm_raw_poll (XdmRaw *raw, gboolean want_write)
{
  wait_fd (raw->fd, POLLIN | (want_write ? POLLOUT : 0));
}

gboolean
xdm_raw_send (XdmRaw *raw, DhfXdmType type, guint32 id, const gchar *json)
{
  g_autoptr (GByteArray) frame = g_byte_array_new ();

  dhf_xdm_append_text (frame, type, id, json != NULL ? json : "", json != NULL ? strlen (json) : 0);
  return xdm_raw_write (raw, frame->data, frame->len);
}

/* Reads what the socket has; FALSE at EOF. */
static gboolean
fill (XdmRaw *raw)
{
  for (;;)
    {
      guint8 buf[65536];
      gssize n = recv (raw->fd, buf, sizeof buf, 0);

      if (n > 0)
        {
          g_byte_array_append (raw->in, buf, (guint) n);
          continue;
        }
      if (n == 0 || errno == ECONNRESET)
        return FALSE;
      g_assert_true (errno == EAGAIN || errno == EINTR);
      return TRUE;
    }
}

static gboolean
take_frame (XdmRaw *raw, DhfXdmMessage *msg)
{
  g_autoptr (GError) error = NULL;
  DhfXdmHeader header;
  gssize size = dhf_xdm_frame_scan (raw->in->data, raw->in->len, &header, &error);

  /* dhfd only ever sends valid frames. */
  g_assert_no_error (error);
  if (size == 0)
    return FALSE;
  g_assert_true (dhf_xdm_message_parse (&header, raw->in->data + DHF_XDM_HEADER_SIZE, msg, &error));
  g_assert_no_error (error);
  if (msg->type == DHF_XDM_STREAM_DATA)
    msg->raw = NULL; /* would point into the buffer dropped below */
  g_byte_array_remove_range (raw->in, 0, (guint) size);
  return TRUE;
}

gboolean
xdm_raw_try_read (XdmRaw *raw, DhfXdmMessage *msg, gboolean *eof)
{
  *eof = !fill (raw);
  return take_frame (raw, msg);
}

gboolean
xdm_raw_read (XdmRaw *raw, DhfXdmMessage *msg)
{
  for (;;)
    {
      gboolean eof;

      if (xdm_raw_try_read (raw, msg, &eof))
        return TRUE;
      if (eof)
        return FALSE;
      wait_fd (raw->fd, POLLIN);
    }
}

void
xdm_raw_hello (XdmRaw *raw, const gchar *domain)
{
  DhfXdmMessage msg = { 0 };

  g_assert_true (
      xdm_raw_send (raw, DHF_XDM_HELLO, 1, "{\"versions\": [1], \"client\": \"xdm raw test\"}"));
  g_assert_true (xdm_raw_read (raw, &msg));
  if (msg.type == DHF_XDM_ERROR)
    g_error ("HELLO answered %s: %s", msg.code, msg.message);
  g_assert_cmpint (msg.type, ==, DHF_XDM_WELCOME);
  g_assert_cmpuint (msg.id, ==, 0); /* protos/xdm.md 4.1 */
  g_assert_cmpstr (msg.domain, ==, domain);
  g_assert_cmpuint (msg.version, ==, 1);
  dhf_xdm_message_clear (&msg);
}

void
xdm_raw_expect_error (XdmRaw *raw, guint32 id, const gchar *code, gboolean closes)
{
  DhfXdmMessage msg = { 0 };

  g_assert_true (xdm_raw_read (raw, &msg));
  g_assert_cmpstr (dhf_xdm_type_to_string (msg.type), ==, "ERROR");
  g_assert_cmpuint (msg.id, ==, id);
  g_assert_cmpstr (msg.code, ==, code);
  g_test_message ("ERROR %s: %s", msg.code, msg.message);
  dhf_xdm_message_clear (&msg);
  if (closes)
    g_assert_false (xdm_raw_read (raw, &msg));
}
