/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include "config.h"

#include <errno.h>
#include <poll.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "fake-dhfd.h"

/* A frame that does not come within this long fails the test. */
#define FAKE_TIMEOUT_MS 20000

FakeConn *
fake_conn_new (gint fd)
{
  FakeConn *conn = g_new0 (FakeConn, 1);

  g_assert_cmpint (fd, >=, 0);
  conn->fd = fd;
  conn->in = g_byte_array_new ();
  return conn;
}

void
fake_conn_free (FakeConn *conn)
{
  if (conn->has_msg)
    dhf_xdm_message_clear (&conn->msg);
  if (conn->fd >= 0)
    close (conn->fd);
  g_byte_array_unref (conn->in);
  g_free (conn);
}

static void
wait_fd (gint fd, short events)
{
  struct pollfd pfd = { .fd = fd, .events = events };
  int r;

  do
    r = poll (&pfd, 1, FAKE_TIMEOUT_MS);
  while (r < 0 && errno == EINTR);
  if (r == 0)
    g_error ("fake dhfd: nothing happened within %d ms", FAKE_TIMEOUT_MS);
  g_assert_cmpint (r, ==, 1);
}

const DhfXdmMessage *
fake_conn_read (FakeConn *conn)
{
  if (conn->has_msg)
    {
      dhf_xdm_message_clear (&conn->msg);
      conn->has_msg = FALSE;
    }
  if (conn->consumed > 0)
    {
      g_byte_array_remove_range (conn->in, 0, (guint) conn->consumed);
      conn->consumed = 0;
    }
  for (;;)
    {
      DhfXdmHeader header;
      g_autoptr (GError) error = NULL;
      gssize size = dhf_xdm_frame_scan (conn->in->data, conn->in->len, &header, &error);
      guint8 buf[65536];
      gssize r;

      g_assert_no_error (error);
      if (size > 0)
        {
          g_assert_true (dhf_xdm_message_parse (&header, conn->in->data + DHF_XDM_HEADER_SIZE,
                                                &conn->msg, &error));
          g_assert_no_error (error);
          conn->has_msg = TRUE;
          conn->consumed = (gsize) size;
          return &conn->msg;
        }
      wait_fd (conn->fd, POLLIN);
      do
        r = read (conn->fd, buf, sizeof (buf));
      while (r < 0 && errno == EINTR);
      if (r < 0 && (errno == EAGAIN || errno == EIO || errno == ECONNRESET))
        {
          if (errno == EAGAIN)
            continue;
          r = 0;
        }
      g_assert_cmpint (r, >=, 0);
      if (r == 0)
        {
          g_assert_cmpuint (conn->in->len, ==, 0);
          return NULL;
        }
      g_byte_array_append (conn->in, buf, (guint) r);
    }
}

const DhfXdmMessage *
fake_conn_expect (FakeConn *conn, DhfXdmType type)
{
  const DhfXdmMessage *msg = fake_conn_read (conn);

  /* A reader gives credit as it reads, possibly after the writer's end of
   * stream went out: such credit may come before anything a script waits
   * for. */
  while (msg != NULL && msg->type == DHF_XDM_STREAM_CREDIT && type != DHF_XDM_STREAM_CREDIT)
    msg = fake_conn_read (conn);

  if (msg == NULL)
    g_error ("fake dhfd: expected %s, got end of file", dhf_xdm_type_to_string (type));
  if (msg->type != type)
    g_error ("fake dhfd: expected %s, got %s %s", dhf_xdm_type_to_string (type),
             dhf_xdm_type_to_string (msg->type),
             msg->body != NULL ? json_object_to_json_string (msg->body) : "");
  return msg;
}

gboolean
fake_conn_wait_eof (FakeConn *conn)
{
  const DhfXdmMessage *msg = fake_conn_read (conn);

  while (msg != NULL && msg->type == DHF_XDM_STREAM_CREDIT)
    msg = fake_conn_read (conn);
  return msg == NULL;
}

void
fake_conn_send_bytes (FakeConn *conn, const guint8 *data, gsize length)
{
  while (length > 0)
    {
      gssize r = send (conn->fd, data, length, MSG_NOSIGNAL);

      if (r < 0 && errno == ENOTSOCK)
        r = write (conn->fd, data, length);
      if (r < 0 && (errno == EINTR || errno == EAGAIN))
        {
          if (errno == EAGAIN)
            wait_fd (conn->fd, POLLOUT);
          continue;
        }
      /* The client may close once it has sent all it had to (credit for
       * its last data then has nowhere to go); what it sent is still read. */
      if (r < 0 && (errno == EPIPE || errno == ECONNRESET))
        return;
      if (r <= 0)
        g_error ("fake dhfd: write: %s", g_strerror (errno));
      data += r;
      length -= (gsize) r;
    }
}

void
fake_conn_send_text (FakeConn *conn, DhfXdmType type, guint32 id, const gchar *json)
{
  g_autoptr (GByteArray) frame = g_byte_array_new ();

  dhf_xdm_append_text (frame, type, id, json, json != NULL ? strlen (json) : 0);
  fake_conn_send_bytes (conn, frame->data, frame->len);
}

void
fake_conn_send_raw (FakeConn *conn, guint32 id, const guint8 *data, gsize length)
{
  g_autoptr (GByteArray) frame = g_byte_array_new ();

  dhf_xdm_append_raw (frame, DHF_XDM_STREAM_DATA, id, data, length);
  fake_conn_send_bytes (conn, frame->data, frame->len);
}

void
fake_conn_send_error (FakeConn *conn, guint32 id, const gchar *code, const gchar *message)
{
  g_autoptr (json_object) body = json_object_new_object ();
  g_autoptr (GByteArray) frame = g_byte_array_new ();

  json_object_object_add (body, "code", json_object_new_string (code));
  json_object_object_add (body, "message", json_object_new_string (message));
  dhf_xdm_append_json (frame, DHF_XDM_ERROR, id, body);
  fake_conn_send_bytes (conn, frame->data, frame->len);
}

void
fake_conn_handshake (FakeConn *conn, const gchar *domain)
{
  const DhfXdmMessage *hello = fake_conn_expect (conn, DHF_XDM_HELLO);
  g_autofree gchar *welcome = NULL;

  g_assert_cmpuint (hello->version, ==, DHF_XDM_PROTOCOL_VERSION);
  g_assert_nonnull (hello->client);
  g_assert_true (g_str_has_prefix (hello->client, "libdhf-1 "));
  welcome = g_strdup_printf ("{\"version\":1,\"domain\":\"%s\","
                             "\"uuid\":\"4b1d6b7e-8a5a-4d0c-9f3e-2f6a1c9d0e11\","
                             "\"limits\":{\"max_body\":1048576,\"max_calls_in_flight\":256}}",
                             domain);
  fake_conn_send_text (conn, DHF_XDM_WELCOME, hello->id, welcome);
}

gint
fake_listen_unix (const gchar *path)
{
  struct sockaddr_un sa = { .sun_family = AF_UNIX };
  gint fd = socket (AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);

  g_assert_cmpint (fd, >=, 0);
  g_strlcpy (sa.sun_path, path, sizeof (sa.sun_path));
  (void) unlink (path);
  g_assert_cmpint (bind (fd, (struct sockaddr *) &sa, sizeof (sa)), ==, 0);
  g_assert_cmpint (listen (fd, 8), ==, 0);
  return fd;
}

gint
fake_accept (gint listen_fd)
{
  gint fd;

  wait_fd (listen_fd, POLLIN);
  fd = accept4 (listen_fd, NULL, NULL, SOCK_CLOEXEC);
  g_assert_cmpint (fd, >=, 0);
  return fd;
}

gint
fake_connect_unix (const gchar *path)
{
  struct sockaddr_un sa = { .sun_family = AF_UNIX };
  gint fd = socket (AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);

  g_assert_cmpint (fd, >=, 0);
  g_strlcpy (sa.sun_path, path, sizeof (sa.sun_path));
  g_assert_cmpint (connect (fd, (struct sockaddr *) &sa, sizeof (sa)), ==, 0);
  return fd;
}

const gchar *
fake_msg_string (const DhfXdmMessage *msg, const gchar *member)
{
  json_object *value = NULL;

  if (msg->body == NULL || !json_object_object_get_ex (msg->body, member, &value))
    return NULL;
  if (json_object_is_type (value, json_type_string))
    return json_object_get_string (value);
  return json_object_to_json_string_ext (value, JSON_C_TO_STRING_PLAIN);
}
