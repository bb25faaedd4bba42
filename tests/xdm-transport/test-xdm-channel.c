/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* The channel transport (DhfXdmChannel) on its own: a fake domain listens
 * on a unix socket as QEMU does on the host side of a virtio-serial
 * channel, and a fake router (the sink) holds the connections, tells when
 * one ends, and closes them on request. */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <dhf/dhf.h>
#include <glib-unix.h>
#include <glib/gstdio.h>

#include "dhf-xdm-channel.h"

#include "dhf-test-util.h"

#define WAIT_TIMEOUT_S 20
#define UUID           "6a1f4f3e-1b2c-4d5e-8f90-0123456789ab"

/* A connection as the fake router holds it. */
typedef struct
{
  guint64 id;
  gint fd;
  guint watch_id;
  DhfXdmTransport transport;
  gchar *domain;
  gchar *uuid;
  uid_t uid;
  pid_t pid;
  DhfXdmClosedFunc closed;
  gpointer closed_data;
  gboolean open;
} Connection;

typedef struct
{
  gchar *tmpdir;
  DhfXdmChannel *channel;
  GPtrArray *connections; /* Connection, in the order they came */
  guint64 next_id;
  GError *refuse; /* the sink refuses connections with it */
  guint n_closed_by_channel;
} Fixture;

static void
connection_free (gpointer data)
{
  Connection *connection = data;

  g_clear_handle_id (&connection->watch_id, g_source_remove);
  if (connection->fd >= 0)
    close (connection->fd);
  g_free (connection->domain);
  g_free (connection->uuid);
  g_free (connection);
}

static Connection *
find_connection (Fixture *fx, guint64 id)
{
  for (guint i = 0; i < fx->connections->len; i++)
    {
      Connection *connection = g_ptr_array_index (fx->connections, i);

      if (connection->id == id)
        return connection;
    }
  return NULL;
}

/* The router's side of a connection's end; established: a session had
 * started on it. */
static void
end_session (Connection *connection, const GError *error, gboolean established, gboolean notify)
{
  g_assert_true (connection->open);
  connection->open = FALSE;
  g_clear_handle_id (&connection->watch_id, g_source_remove);
  close (connection->fd);
  connection->fd = -1;
  if (notify)
    connection->closed (connection->id, error, established, connection->closed_data);
}

static void
end_connection (Connection *connection, const GError *error, gboolean notify)
{
  end_session (connection, error, FALSE, notify);
}

/* The peer hung up: the router reads EOF and tells the transport. */
static gboolean
on_readable (gint fd, GIOCondition condition, gpointer user_data)
{
  Connection *connection = user_data;
  char buf[64];
  gssize n = read (fd, buf, sizeof buf);

  if (n > 0 || (n < 0 && errno == EAGAIN))
    return G_SOURCE_CONTINUE;
  connection->watch_id = 0;
  end_connection (connection, NULL, TRUE);
  return G_SOURCE_REMOVE;
}

static guint64
sink_add (gint fd, const DhfXdmPeer *peer, DhfXdmClosedFunc closed, gpointer closed_data,
          gpointer user_data, GError **error)
{
  Fixture *fx = user_data;
  Connection *connection;

  if (fx->refuse != NULL)
    {
      close (fd);
      g_propagate_error (error, g_error_copy (fx->refuse));
      return 0;
    }
  connection = g_new0 (Connection, 1);
  connection->id = ++fx->next_id;
  connection->fd = fd;
  connection->transport = peer->transport;
  connection->domain = g_strdup (peer->domain);
  connection->uuid = g_strdup (peer->uuid);
  connection->uid = peer->uid;
  connection->pid = peer->pid;
  connection->closed = closed;
  connection->closed_data = closed_data;
  connection->open = TRUE;
  connection->watch_id = g_unix_fd_add (fd, G_IO_IN | G_IO_HUP, on_readable, connection);
  g_ptr_array_add (fx->connections, connection);
  return connection->id;
}

static void
sink_close (guint64 id, gpointer user_data)
{
  Fixture *fx = user_data;
  Connection *connection = find_connection (fx, id);

  if (connection == NULL)
    g_error ("the channel closed connection %" G_GUINT64_FORMAT ", which it does not have", id);
  fx->n_closed_by_channel++;
  end_connection (connection, NULL, FALSE);
}

static const DhfXdmChannelSink sink = {
  .add_connection = sink_add,
  .close_connection = sink_close,
};

static void
fixture_set_up (Fixture *fx, gconstpointer data)
{
  g_autoptr (GError) error = NULL;

  fx->tmpdir = g_dir_make_tmp ("dhf-xdm-channel-XXXXXX", &error);
  g_assert_no_error (error);
  fx->connections = g_ptr_array_new_with_free_func (connection_free);
  fx->channel = dhf_xdm_channel_new (&sink, fx);
  dhf_test_log_clear ();
}

static void
fixture_tear_down (Fixture *fx, gconstpointer data)
{
  g_clear_object (&fx->channel);
  /* Every connection the channel still had was closed by it. */
  for (guint i = 0; i < fx->connections->len; i++)
    g_assert_false (((Connection *) g_ptr_array_index (fx->connections, i))->open);
  g_ptr_array_unref (fx->connections);
  g_clear_error (&fx->refuse);
  dhf_test_remove_tree (fx->tmpdir);
  /* Only the test that expects one may log a warning. */
  if (!g_test_failed ())
    g_assert_cmpuint (dhf_test_log_count (G_LOG_LEVEL_WARNING, "*"), <=,
                      g_strcmp0 (data, "warns") == 0 ? 1 : 0);
  g_free (fx->tmpdir);
}

/* The host side of a domain's channel: a listening unix socket. */
static gint
domain_listen (Fixture *fx, const gchar *name, gchar **path)
{
  struct sockaddr_un address = { .sun_family = AF_UNIX };
  gint fd = socket (AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);

  *path = g_strdup_printf ("%s/%s.sock", fx->tmpdir, name);
  g_assert_cmpuint (strlen (*path), <, sizeof address.sun_path);
  strcpy (address.sun_path, *path);
  g_assert_cmpint (bind (fd, (struct sockaddr *) &address, sizeof address), ==, 0);
  g_assert_cmpint (listen (fd, 8), ==, 0);
  return fd;
}

/* The connection dhfd made, as the domain accepts it. */
static gint
domain_accept (gint listen_fd)
{
  struct pollfd pfd = { .fd = listen_fd, .events = POLLIN };
  gint fd;

  g_assert_cmpint (poll (&pfd, 1, WAIT_TIMEOUT_S * 1000), ==, 1);
  fd = accept4 (listen_fd, NULL, NULL, SOCK_CLOEXEC);
  g_assert_cmpint (fd, >=, 0);
  return fd;
}

/* Runs the main loop until the sink has n connections. */
static Connection *
wait_connection (Fixture *fx, guint n)
{
  gint64 deadline = g_get_monotonic_time () + WAIT_TIMEOUT_S * G_USEC_PER_SEC;

  while (fx->connections->len < n)
    {
      g_assert_cmpint (g_get_monotonic_time (), <, deadline);
      g_main_context_iteration (NULL, TRUE);
    }
  return g_ptr_array_index (fx->connections, n - 1);
}

static void
assert_eof (gint fd)
{
  struct pollfd pfd = { .fd = fd, .events = POLLIN };
  char byte;

  g_assert_cmpint (poll (&pfd, 1, WAIT_TIMEOUT_S * 1000), ==, 1);
  g_assert_cmpint (read (fd, &byte, 1), ==, 0);
}

static void
test_connect (Fixture *fx, gconstpointer data)
{
  g_autofree gchar *path = NULL;
  gint listen_fd = domain_listen (fx, "alpha", &path);
  Connection *connection;
  gint fd;
  char byte = 0;

  dhf_xdm_channel_update (fx->channel, "alpha", UUID, path);
  connection = wait_connection (fx, 1);
  g_assert_cmpint (connection->transport, ==, DHF_XDM_TRANSPORT_CHANNEL);
  g_assert_cmpstr (connection->domain, ==, "alpha");
  g_assert_cmpstr (connection->uuid, ==, UUID);
  g_assert_cmpint ((gint) connection->uid, ==, -1);
  g_assert_cmpint (connection->pid, ==, 0);
  g_assert_cmpint (fcntl (connection->fd, F_GETFL) & O_NONBLOCK, !=, 0);
  g_assert_cmpuint (dhf_xdm_channel_get_connection (fx->channel, "alpha"), ==, connection->id);
  g_assert_cmpuint (dhf_xdm_channel_get_retry_delay (fx->channel, "alpha"), ==, 0);

  /* It is the domain's socket: bytes pass. */
  fd = domain_accept (listen_fd);
  g_assert_cmpint (write (connection->fd, "h", 1), ==, 1);
  g_assert_cmpint (read (fd, &byte, 1), ==, 1);
  g_assert_cmpint (byte, ==, 'h');

  /* The same snapshot again changes nothing. */
  dhf_xdm_channel_update (fx->channel, "alpha", UUID, path);
  g_assert_cmpuint (dhf_xdm_channel_get_connection (fx->channel, "alpha"), ==, connection->id);
  g_assert_cmpuint (fx->n_closed_by_channel, ==, 0);
  close (fd);
  close (listen_fd);
}

/* The guest side closes: dhfd connects again. */
static void
test_reconnect_after_peer_closes (Fixture *fx, gconstpointer data)
{
  g_autofree gchar *path = NULL;
  gint listen_fd = domain_listen (fx, "alpha", &path);
  Connection *first, *second;
  gint fd;

  dhf_xdm_channel_update (fx->channel, "alpha", UUID, path);
  first = wait_connection (fx, 1);
  fd = domain_accept (listen_fd);
  close (fd);

  second = wait_connection (fx, 2);
  g_assert_false (first->open);
  g_assert_true (second->open);
  g_assert_cmpstr (second->domain, ==, "alpha");
  g_assert_cmpuint (dhf_xdm_channel_get_connection (fx->channel, "alpha"), ==, second->id);
  fd = domain_accept (listen_fd);
  close (fd);
  close (listen_fd);
}

/* Runs the main loop until the domain's channel has made n attempts. */
static void
wait_attempts (Fixture *fx, const gchar *name, guint n)
{
  gint64 deadline = g_get_monotonic_time () + WAIT_TIMEOUT_S * G_USEC_PER_SEC;

  while (dhf_xdm_channel_get_attempts (fx->channel, name) < n)
    {
      g_assert_cmpint (g_get_monotonic_time (), <, deadline);
      g_main_context_iteration (NULL, TRUE);
    }
  g_assert_cmpuint (dhf_xdm_channel_get_attempts (fx->channel, name), ==, n);
}

/* Nobody listens: each failed attempt doubles the delay, up to the cap. */
static void
test_backoff_growth (Fixture *fx, gconstpointer data)
{
  g_autofree gchar *path = g_build_filename (fx->tmpdir, "nobody.sock", NULL);
  static const guint expected[] = { 2, 4, 8, 16, 16, 16 };
  g_autofree gchar *listening = NULL;
  gint listen_fd;

  dhf_xdm_channel_set_backoff (fx->channel, &(DhfXdmChannelBackoff){ 2, 16, 1000, 1000 });
  dhf_xdm_channel_update (fx->channel, "alpha", UUID, path);
  for (guint i = 0; i < G_N_ELEMENTS (expected); i++)
    {
      wait_attempts (fx, "alpha", i + 1);
      g_assert_cmpuint (dhf_xdm_channel_get_retry_delay (fx->channel, "alpha"), ==, expected[i]);
    }
  g_assert_cmpuint (fx->connections->len, ==, 0);
  g_assert_cmpuint (dhf_xdm_channel_get_connection (fx->channel, "alpha"), ==, 0);

  /* The domain's socket appears: the next attempt connects. */
  listen_fd = domain_listen (fx, "nobody", &listening);
  g_assert_cmpstr (listening, ==, path);
  wait_connection (fx, 1);
  g_assert_cmpuint (dhf_xdm_channel_get_retry_delay (fx->channel, "alpha"), ==, 0);
  close (listen_fd);
}

/* Short delays to see the policy without waiting for the real ones. */
static const DhfXdmChannelBackoff short_backoff = {
  .min_ms = 5,
  .max_ms = 40,
  .violation_ms = 7,
  .penalty_ms = 11,
};

/* The router closed the connection for a violation (a protocol error, a
 * limit, the guest's own ERROR): the first retry is soon (a guest
 * program that died mid-frame leaves bytes the next one cannot help), the
 * long penalty while violations go on without a session that ended
 * cleanly between them (an agent that breaks every session it starts). */
static void
test_backoff_after_violation (Fixture *fx, gconstpointer data)
{
  g_autofree gchar *path = NULL;
  gint listen_fd = domain_listen (fx, "alpha", &path);
  g_autoptr (GError) protocol
      = g_error_new_literal (DHF_ERROR, DHF_ERROR_PROTOCOL, "bad frame header");
  g_autoptr (GError) limit = g_error_new_literal (DHF_ERROR, DHF_ERROR_LIMIT_EXCEEDED, "queue");
  g_autoptr (GError) ended
      = g_error_new_literal (DHF_ERROR, DHF_ERROR_DISCONNECTED, "it ended the session");
  Connection *connection;

  /* The real delays. */
  dhf_xdm_channel_update (fx->channel, "alpha", UUID, path);
  connection = wait_connection (fx, 1);
  end_session (connection, protocol, TRUE, TRUE);
  g_assert_cmpuint (dhf_xdm_channel_get_connection (fx->channel, "alpha"), ==, 0);
  g_assert_cmpuint (dhf_xdm_channel_get_retry_delay (fx->channel, "alpha"), ==,
                    DHF_XDM_CHANNEL_RETRY_VIOLATION_MS);
  /* A new snapshot of the same running domain does not cut the wait. */
  dhf_xdm_channel_update (fx->channel, "alpha", UUID, path);
  g_assert_cmpuint (dhf_xdm_channel_get_retry_delay (fx->channel, "alpha"), ==,
                    DHF_XDM_CHANNEL_RETRY_VIOLATION_MS);
  g_assert_cmpuint (fx->connections->len, ==, 1);
  dhf_xdm_channel_remove (fx->channel, "alpha");

  dhf_xdm_channel_set_backoff (fx->channel, &short_backoff);
  dhf_xdm_channel_update (fx->channel, "alpha", UUID, path);
  /* A working session broken by a violation: soon. */
  connection = wait_connection (fx, 2);
  end_session (connection, protocol, TRUE, TRUE);
  g_assert_cmpuint (dhf_xdm_channel_get_retry_delay (fx->channel, "alpha"), ==, 7);
  /* Again: the penalty, for every kind, whether the session had started
   * or not. */
  connection = wait_connection (fx, 3);
  end_session (connection, protocol, TRUE, TRUE);
  g_assert_cmpuint (dhf_xdm_channel_get_retry_delay (fx->channel, "alpha"), ==, 11);
  connection = wait_connection (fx, 4);
  end_session (connection, limit, FALSE, TRUE);
  g_assert_cmpuint (dhf_xdm_channel_get_retry_delay (fx->channel, "alpha"), ==, 11);
  connection = wait_connection (fx, 5);
  end_session (connection, ended, FALSE, TRUE);
  g_assert_cmpuint (dhf_xdm_channel_get_retry_delay (fx->channel, "alpha"), ==, 11);
  /* A session that works forgives them. */
  connection = wait_connection (fx, 6);
  end_session (connection, NULL, TRUE, TRUE);
  g_assert_cmpuint (dhf_xdm_channel_get_retry_delay (fx->channel, "alpha"), ==, 5);
  connection = wait_connection (fx, 7);
  end_session (connection, limit, FALSE, TRUE);
  g_assert_cmpuint (dhf_xdm_channel_get_retry_delay (fx->channel, "alpha"), ==, 7);
  wait_connection (fx, 8);
  close (listen_fd);
}

/* Connections that end before a session starts are retried later and
 * later; the end of a session that worked is followed by a quick
 * reconnection, however long the backoff had grown. */
static void
test_backoff_after_session (Fixture *fx, gconstpointer data)
{
  g_autofree gchar *path = NULL;
  gint listen_fd = domain_listen (fx, "alpha", &path);
  g_autoptr (GError) reset
      = g_error_new_literal (G_IO_ERROR, G_IO_ERROR_CONNECTION_CLOSED, "read: reset by peer");
  Connection *connection;

  dhf_xdm_channel_set_backoff (fx->channel, &short_backoff);
  dhf_xdm_channel_update (fx->channel, "alpha", UUID, path);
  connection = wait_connection (fx, 1);
  end_session (connection, NULL, FALSE, TRUE);
  g_assert_cmpuint (dhf_xdm_channel_get_retry_delay (fx->channel, "alpha"), ==, 5);
  connection = wait_connection (fx, 2);
  end_session (connection, NULL, FALSE, TRUE);
  g_assert_cmpuint (dhf_xdm_channel_get_retry_delay (fx->channel, "alpha"), ==, 10);
  connection = wait_connection (fx, 3);
  end_session (connection, reset, FALSE, TRUE);
  g_assert_cmpuint (dhf_xdm_channel_get_retry_delay (fx->channel, "alpha"), ==, 20);
  /* However briefly it lasted, a session that started: quick. */
  connection = wait_connection (fx, 4);
  end_session (connection, NULL, TRUE, TRUE);
  g_assert_cmpuint (dhf_xdm_channel_get_retry_delay (fx->channel, "alpha"), ==, 5);
  connection = wait_connection (fx, 5);
  end_session (connection, reset, TRUE, TRUE);
  g_assert_cmpuint (dhf_xdm_channel_get_retry_delay (fx->channel, "alpha"), ==, 5);
  wait_connection (fx, 6);
  close (listen_fd);
}

/* The domain stops: its connection is closed, and nothing is retried. */
static void
test_stop_when_domain_stops (Fixture *fx, gconstpointer data)
{
  g_autofree gchar *path = NULL;
  gint listen_fd = domain_listen (fx, "alpha", &path);
  Connection *connection;
  gint fd;

  dhf_xdm_channel_update (fx->channel, "alpha", UUID, path);
  connection = wait_connection (fx, 1);
  fd = domain_accept (listen_fd);

  dhf_xdm_channel_update (fx->channel, "alpha", UUID, NULL);
  g_assert_false (connection->open);
  g_assert_cmpuint (fx->n_closed_by_channel, ==, 1);
  assert_eof (fd);
  g_assert_cmpuint (dhf_xdm_channel_get_connection (fx->channel, "alpha"), ==, 0);
  g_assert_cmpuint (dhf_xdm_channel_get_retry_delay (fx->channel, "alpha"), ==, 0);
  /* Nothing is pending: the main loop has no source of the channel's. */
  while (g_main_context_iteration (NULL, FALSE))
    ;
  g_assert_cmpuint (fx->connections->len, ==, 1);
  close (fd);

  /* A stopped domain waiting for a retry stops waiting too. */
  close (listen_fd);
  g_unlink (path);
  dhf_xdm_channel_update (fx->channel, "alpha", UUID, path);
  g_assert_cmpuint (dhf_xdm_channel_get_retry_delay (fx->channel, "alpha"), >, 0);
  dhf_xdm_channel_remove (fx->channel, "alpha");
  g_assert_cmpuint (dhf_xdm_channel_get_retry_delay (fx->channel, "alpha"), ==, 0);
  while (g_main_context_iteration (NULL, FALSE))
    ;
  g_assert_cmpuint (fx->connections->len, ==, 1);
}

/* Restarted (libvirt gives the channel a new path): the new one is
 * connected, at once, also when dhfd never saw the domain stop. */
static void
test_path_change_on_restart (Fixture *fx, gconstpointer data)
{
  g_autofree gchar *path1 = NULL;
  g_autofree gchar *path2 = NULL;
  g_autofree gchar *path3 = NULL;
  gint listen1 = domain_listen (fx, "alpha-1", &path1);
  gint listen2 = domain_listen (fx, "alpha-2", &path2);
  gint listen3 = domain_listen (fx, "alpha-3", &path3);
  Connection *first, *second, *third;
  gint fd1, fd2, fd3;

  dhf_xdm_channel_update (fx->channel, "alpha", UUID, path1);
  first = wait_connection (fx, 1);
  fd1 = domain_accept (listen1);

  dhf_xdm_channel_update (fx->channel, "alpha", UUID, NULL);
  dhf_xdm_channel_update (fx->channel, "alpha", UUID, path2);
  second = wait_connection (fx, 2);
  g_assert_false (first->open);
  assert_eof (fd1);
  fd2 = domain_accept (listen2);

  dhf_xdm_channel_update (fx->channel, "alpha", UUID, path3);
  third = wait_connection (fx, 3);
  g_assert_false (second->open);
  g_assert_true (third->open);
  assert_eof (fd2);
  fd3 = domain_accept (listen3);
  g_assert_cmpuint (dhf_xdm_channel_get_connection (fx->channel, "alpha"), ==, third->id);

  close (fd1);
  close (fd2);
  close (fd3);
  close (listen1);
  close (listen2);
  close (listen3);
}

/* Domains are independent of each other. */
static void
test_two_domains (Fixture *fx, gconstpointer data)
{
  g_autofree gchar *path_a = NULL;
  g_autofree gchar *path_b = NULL;
  gint listen_a = domain_listen (fx, "alpha", &path_a);
  gint listen_b = domain_listen (fx, "beta", &path_b);
  Connection *a, *b;

  dhf_xdm_channel_update (fx->channel, "alpha", UUID, path_a);
  dhf_xdm_channel_update (fx->channel, "beta", NULL, path_b);
  a = wait_connection (fx, 1);
  b = wait_connection (fx, 2);
  g_assert_cmpstr (a->domain, ==, "alpha");
  g_assert_cmpstr (b->domain, ==, "beta");
  g_assert_null (b->uuid);
  dhf_xdm_channel_remove (fx->channel, "alpha");
  g_assert_false (a->open);
  g_assert_true (b->open);
  close (listen_a);
  close (listen_b);
}

/* The router refuses the connection: like a failed attempt. */
static void
test_refused_by_router (Fixture *fx, gconstpointer data)
{
  g_autofree gchar *path = NULL;
  gint listen_fd = domain_listen (fx, "alpha", &path);

  fx->refuse = g_error_new_literal (DHF_ERROR, DHF_ERROR_INVALID_ARGS, "no");
  dhf_xdm_channel_set_backoff (fx->channel, &(DhfXdmChannelBackoff){ 3, 100, 1000, 1000 });
  dhf_xdm_channel_update (fx->channel, "alpha", UUID, path);
  g_assert_cmpuint (dhf_test_log_count (G_LOG_LEVEL_WARNING, "*"), ==, 1);
  g_assert_cmpuint (
      dhf_test_log_count (G_LOG_LEVEL_WARNING, "XDM: alpha's channel */alpha.sock: no"), ==, 1);
  g_assert_cmpuint (dhf_xdm_channel_get_retry_delay (fx->channel, "alpha"), ==, 3);
  g_assert_cmpuint (fx->connections->len, ==, 0);
  g_clear_error (&fx->refuse);
  wait_connection (fx, 1);
  g_assert_cmpuint (dhf_xdm_channel_get_attempts (fx->channel, "alpha"), ==, 2);
  g_assert_cmpuint (dhf_xdm_channel_get_retry_delay (fx->channel, "alpha"), ==, 0);
  close (listen_fd);
}

int
main (int argc, char **argv)
{
  /* Warnings are checked, not fatal; so are messages (the ones the
   * journal would show). */
  dhf_test_log_init ();
  g_test_init (&argc, &argv, NULL);

#define ADD(path, func) g_test_add (path, Fixture, NULL, fixture_set_up, func, fixture_tear_down)
  ADD ("/xdm-channel/connect", test_connect);
  ADD ("/xdm-channel/reconnect-after-peer-closes", test_reconnect_after_peer_closes);
  ADD ("/xdm-channel/backoff-growth", test_backoff_growth);
  ADD ("/xdm-channel/backoff-after-violation", test_backoff_after_violation);
  ADD ("/xdm-channel/backoff-after-session", test_backoff_after_session);
  ADD ("/xdm-channel/stop-when-domain-stops", test_stop_when_domain_stops);
  ADD ("/xdm-channel/path-change-on-restart", test_path_change_on_restart);
  ADD ("/xdm-channel/two-domains", test_two_domains);
  g_test_add ("/xdm-channel/refused-by-router", Fixture, "warns", fixture_set_up,
              test_refused_by_router, fixture_tear_down);
#undef ADD
  return g_test_run ();
}
