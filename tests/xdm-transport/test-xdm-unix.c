/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* dhfd's dom0 socket (DhfXdmUnix) on its own: who connected, the file it
 * makes, and what it does with a path that is taken. */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <poll.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include <dhf/dhf.h>
#include <glib/gstdio.h>

#include "dhf-xdm-unix.h"

#include "dhf-test-util.h"

#define WAIT_TIMEOUT_S 20

typedef struct
{
  gchar *tmpdir;
  gchar *path;         /* tmpdir/run/xdm.sock: its directory does not exist yet */
  GPtrArray *accepted; /* Accepted */
} Fixture;

typedef struct
{
  gint fd;
  DhfXdmTransport transport;
  gchar *domain;
  gchar *uuid;
  uid_t uid;
  pid_t pid;
} Accepted;

static void
accepted_free (gpointer data)
{
  Accepted *accepted = data;

  if (accepted->fd >= 0)
    close (accepted->fd);
  g_free (accepted->domain);
  g_free (accepted->uuid);
  g_free (accepted);
}

static void
on_accept (gint fd, const DhfXdmPeer *peer, gpointer user_data)
{
  Fixture *fx = user_data;
  Accepted *accepted = g_new0 (Accepted, 1);

  accepted->fd = fd;
  accepted->transport = peer->transport;
  accepted->domain = g_strdup (peer->domain);
  accepted->uuid = g_strdup (peer->uuid);
  accepted->uid = peer->uid;
  accepted->pid = peer->pid;
  g_ptr_array_add (fx->accepted, accepted);
}

static void
wait_accepted (Fixture *fx, guint n)
{
  gint64 deadline = g_get_monotonic_time () + WAIT_TIMEOUT_S * G_USEC_PER_SEC;

  while (fx->accepted->len < n)
    {
      g_assert_cmpint (g_get_monotonic_time (), <, deadline);
      g_main_context_iteration (NULL, TRUE);
    }
}

static void
fixture_set_up (Fixture *fx, gconstpointer data)
{
  g_autoptr (GError) error = NULL;

  fx->tmpdir = g_dir_make_tmp ("dhf-xdm-unix-XXXXXX", &error);
  g_assert_no_error (error);
  fx->path = g_build_filename (fx->tmpdir, "run", "xdm.sock", NULL);
  fx->accepted = g_ptr_array_new_with_free_func (accepted_free);
}

static void
fixture_tear_down (Fixture *fx, gconstpointer data)
{
  g_ptr_array_unref (fx->accepted);
  dhf_test_remove_tree (fx->tmpdir);
  g_free (fx->tmpdir);
  g_free (fx->path);
}

static DhfXdmUnix *
listen_on (Fixture *fx, guint mode, const gchar *group, gboolean replace, GError **error)
{
  DhfXdmUnixOptions options = {
    .path = fx->path,
    .mode = mode,
    .group = group,
    .replace = replace,
  };

  return dhf_xdm_unix_new (&options, on_accept, fx, error);
}

/* A blocking connection to path, or -1 with errno. */
static gint
connect_to (const gchar *path)
{
  struct sockaddr_un address = { .sun_family = AF_UNIX };
  gint fd = socket (AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);

  g_assert_cmpint (fd, >=, 0);
  g_assert_cmpuint (strlen (path), <, sizeof address.sun_path);
  strcpy (address.sun_path, path);
  if (connect (fd, (struct sockaddr *) &address, sizeof address) < 0)
    {
      int saved_errno = errno;

      close (fd);
      errno = saved_errno;
      return -1;
    }
  return fd;
}

/* A socket file nobody listens on, as a crashed dhfd leaves it. */
static void
make_stale_socket (const gchar *path)
{
  struct sockaddr_un address = { .sun_family = AF_UNIX };
  gint fd = socket (AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  g_autofree gchar *dir = g_path_get_dirname (path);

  g_assert_cmpint (g_mkdir_with_parents (dir, 0755), ==, 0);
  strcpy (address.sun_path, path);
  g_assert_cmpint (bind (fd, (struct sockaddr *) &address, sizeof address), ==, 0);
  close (fd);
}

/* The peer's credentials: a child process connects, and the listener
 * reports its pid and uid, and "dom0". */
static void
test_peer_credentials (Fixture *fx, gconstpointer data)
{
  g_autoptr (GError) error = NULL;
  g_autoptr (DhfXdmUnix) listener = listen_on (fx, 0660, NULL, FALSE, &error);
  g_autofree gchar *dir = g_path_get_dirname (fx->path);
  Accepted *accepted;
  struct stat st;
  char byte = 0;
  int status = 0;
  pid_t child;

  g_assert_no_error (error);
  g_assert_nonnull (listener);
  g_assert_cmpstr (dhf_xdm_unix_get_path (listener), ==, fx->path);
  /* The missing directory was made, 0755. */
  g_assert_cmpint (g_stat (dir, &st), ==, 0);
  g_assert_cmpuint (st.st_mode & 07777, ==, 0755);
  g_assert_cmpint (lstat (fx->path, &st), ==, 0);
  g_assert_true (S_ISSOCK (st.st_mode));
  g_assert_cmpuint (st.st_mode & 0777, ==, 0660);

  child = fork ();
  g_assert_cmpint (child, >=, 0);
  if (child == 0)
    {
      /* Async-signal-safe only: connect, wait for the parent to close. */
      struct sockaddr_un address = { .sun_family = AF_UNIX };
      int fd = socket (AF_UNIX, SOCK_STREAM, 0);
      char buf;

      memcpy (address.sun_path, fx->path, strlen (fx->path) + 1);
      if (fd < 0 || connect (fd, (struct sockaddr *) &address, sizeof address) < 0)
        _exit (1);
      if (write (fd, "x", 1) != 1)
        _exit (2);
      _exit (read (fd, &buf, 1) == 0 ? 0 : 3);
    }
  wait_accepted (fx, 1);
  accepted = g_ptr_array_index (fx->accepted, 0);
  g_assert_cmpint (accepted->transport, ==, DHF_XDM_TRANSPORT_UNIX);
  g_assert_cmpstr (accepted->domain, ==, "dom0");
  g_assert_null (accepted->uuid);
  g_assert_cmpint (accepted->pid, ==, child);
  g_assert_cmpuint (accepted->uid, ==, getuid ());
  /* The fd is the connection, and non-blocking. */
  g_assert_cmpint (fcntl (accepted->fd, F_GETFL) & O_NONBLOCK, !=, 0);
  {
    struct pollfd pfd = { .fd = accepted->fd, .events = POLLIN };

    g_assert_cmpint (poll (&pfd, 1, WAIT_TIMEOUT_S * 1000), ==, 1);
  }
  g_assert_cmpint (read (accepted->fd, &byte, 1), ==, 1);
  g_assert_cmpint (byte, ==, 'x');
  close (accepted->fd);
  accepted->fd = -1;
  g_assert_cmpint (waitpid (child, &status, 0), ==, child);
  g_assert_true (WIFEXITED (status));
  g_assert_cmpint (WEXITSTATUS (status), ==, 0);

  /* Gone with the listener. */
  g_clear_object (&listener);
  g_assert_cmpint (lstat (fx->path, &st), <, 0);
  g_assert_cmpint (errno, ==, ENOENT);
}

/* Several connections in one go are all taken. */
static void
test_many_connections (Fixture *fx, gconstpointer data)
{
  g_autoptr (GError) error = NULL;
  g_autoptr (DhfXdmUnix) listener = listen_on (fx, 0600, NULL, FALSE, &error);
  gint fds[50];

  g_assert_no_error (error);
  g_assert_nonnull (listener);
  for (guint i = 0; i < G_N_ELEMENTS (fds); i++)
    {
      fds[i] = connect_to (fx->path);
      g_assert_cmpint (fds[i], >=, 0);
    }
  wait_accepted (fx, G_N_ELEMENTS (fds));
  for (guint i = 0; i < fx->accepted->len; i++)
    {
      Accepted *accepted = g_ptr_array_index (fx->accepted, i);

      g_assert_cmpint (accepted->pid, ==, getpid ());
    }
  for (guint i = 0; i < G_N_ELEMENTS (fds); i++)
    close (fds[i]);
}

static void
test_mode_and_group (Fixture *fx, gconstpointer data)
{
  g_autoptr (GError) error = NULL;
  struct group *own = getgrgid (getegid ());
  g_autoptr (DhfXdmUnix) listener = NULL;
  struct stat st;

  if (own == NULL)
    {
      g_test_skip ("the process's group has no name");
      return;
    }
  listener = listen_on (fx, 0600, own->gr_name, FALSE, &error);
  g_assert_no_error (error);
  g_assert_cmpint (lstat (fx->path, &st), ==, 0);
  g_assert_cmpuint (st.st_mode & 0777, ==, 0600);
  g_assert_cmpuint (st.st_gid, ==, getegid ());
}

/* A group named in the configuration must exist; nothing is left. */
static void
test_unknown_group (Fixture *fx, gconstpointer data)
{
  g_autoptr (GError) error = NULL;
  g_autoptr (DhfXdmUnix) listener = listen_on (fx, 0660, "no-such-group-dhf", FALSE, &error);
  struct stat st;

  g_assert_null (listener);
  g_assert_error (error, DHF_ERROR, DHF_ERROR_NOT_FOUND);
  g_assert_nonnull (strstr (error->message, "there is no group 'no-such-group-dhf'"));
  g_assert_cmpint (lstat (fx->path, &st), <, 0);
}

/* A socket nobody answers on (a crashed dhfd's) is replaced. */
static void
test_stale_socket (Fixture *fx, gconstpointer data)
{
  g_autoptr (GError) error = NULL;
  g_autoptr (DhfXdmUnix) listener = NULL;
  gint fd;

  make_stale_socket (fx->path);
  fd = connect_to (fx->path);
  g_assert_cmpint (fd, <, 0);
  g_assert_cmpint (errno, ==, ECONNREFUSED);

  listener = listen_on (fx, 0660, NULL, FALSE, &error);
  g_assert_no_error (error);
  g_assert_nonnull (listener);
  fd = connect_to (fx->path);
  g_assert_cmpint (fd, >=, 0);
  wait_accepted (fx, 1);
  close (fd);
}

/* Anything but a socket at the path is left alone. */
static void
test_not_a_socket (Fixture *fx, gconstpointer data)
{
  g_autoptr (GError) error = NULL;
  g_autoptr (DhfXdmUnix) listener = NULL;
  g_autofree gchar *dir = g_path_get_dirname (fx->path);
  g_autofree gchar *contents = NULL;

  dhf_test_write_file (dir, "xdm.sock", "precious");
  listener = listen_on (fx, 0660, NULL, FALSE, &error);
  g_assert_null (listener);
  g_assert_error (error, DHF_ERROR, DHF_ERROR_EXISTS);
  g_assert_nonnull (strstr (error->message, "exists and is not a socket"));
  g_assert_true (g_file_get_contents (fx->path, &contents, NULL, NULL));
  g_assert_cmpstr (contents, ==, "precious");
}

/* Another listener answers: refused, and the other one keeps working. */
static void
test_another_listener (Fixture *fx, gconstpointer data)
{
  g_autoptr (GError) error = NULL;
  g_autoptr (DhfXdmUnix) first = listen_on (fx, 0660, NULL, FALSE, &error);
  g_autoptr (DhfXdmUnix) second = NULL;
  gint fd;

  g_assert_no_error (error);
  g_assert_nonnull (first);
  second = listen_on (fx, 0660, NULL, FALSE, &error);
  g_assert_null (second);
  g_assert_error (error, DHF_ERROR, DHF_ERROR_EXISTS);
  g_assert_nonnull (strstr (error->message, "is listening on"));
  g_assert_nonnull (strstr (error->message, fx->path));

  fd = connect_to (fx->path);
  g_assert_cmpint (fd, >=, 0);
  wait_accepted (fx, 1);
  close (fd);
  /* The refused one did not remove the first one's socket. */
  g_assert_true (g_file_test (fx->path, G_FILE_TEST_EXISTS));
}

/* --replace: the new listener takes the path; the old one, going, does not
 * remove the new one's socket. */
static void
test_replace (Fixture *fx, gconstpointer data)
{
  g_autoptr (GError) error = NULL;
  g_autoptr (DhfXdmUnix) first = listen_on (fx, 0660, NULL, FALSE, &error);
  g_autoptr (DhfXdmUnix) second = NULL;
  Fixture *other = g_new0 (Fixture, 1);
  DhfXdmUnixOptions options = { .path = fx->path, .mode = 0660, .replace = TRUE };
  gint fd;

  g_assert_no_error (error);
  other->accepted = g_ptr_array_new_with_free_func (accepted_free);
  second = dhf_xdm_unix_new (&options, on_accept, other, &error);
  g_assert_no_error (error);
  g_assert_nonnull (second);

  g_clear_object (&first);
  g_assert_true (g_file_test (fx->path, G_FILE_TEST_EXISTS));
  fd = connect_to (fx->path);
  g_assert_cmpint (fd, >=, 0);
  wait_accepted (other, 1);
  g_assert_cmpuint (fx->accepted->len, ==, 0);
  close (fd);
  g_clear_object (&second);
  g_assert_false (g_file_test (fx->path, G_FILE_TEST_EXISTS));
  g_ptr_array_unref (other->accepted);
  g_free (other);
}

static void
test_bad_path (Fixture *fx, gconstpointer data)
{
  g_autoptr (GError) error = NULL;
  g_autofree gchar *long_path = g_strnfill (120, 'x');
  DhfXdmUnixOptions options = { .path = "relative.sock", .mode = 0660 };
  g_autoptr (DhfXdmUnix) listener = dhf_xdm_unix_new (&options, on_accept, fx, &error);

  g_assert_null (listener);
  g_assert_error (error, DHF_ERROR, DHF_ERROR_INVALID_ARGS);
  g_clear_error (&error);
  long_path[0] = '/';
  options.path = long_path;
  listener = dhf_xdm_unix_new (&options, on_accept, fx, &error);
  g_assert_null (listener);
  g_assert_error (error, DHF_ERROR, DHF_ERROR_INVALID_ARGS);
}

int
main (int argc, char **argv)
{
  g_test_init (&argc, &argv, NULL);

#define ADD(path, func) g_test_add (path, Fixture, NULL, fixture_set_up, func, fixture_tear_down)
  ADD ("/xdm-unix/peer-credentials", test_peer_credentials);
  ADD ("/xdm-unix/many-connections", test_many_connections);
  ADD ("/xdm-unix/mode-and-group", test_mode_and_group);
  ADD ("/xdm-unix/unknown-group", test_unknown_group);
  ADD ("/xdm-unix/stale-socket", test_stale_socket);
  ADD ("/xdm-unix/not-a-socket", test_not_a_socket);
  ADD ("/xdm-unix/another-listener", test_another_listener);
  ADD ("/xdm-unix/replace", test_replace);
  ADD ("/xdm-unix/bad-path", test_bad_path);
#undef ADD
  return g_test_run ();
}
