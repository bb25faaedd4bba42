/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* The vsock transport (DhfXdmVsock) through its socket seam: AF_UNIX
 * socketpairs stand in for vsock connections, each handed to the listener
 * with the CID its peer would have. */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <linux/vm_sockets.h>

#include <dhf/dhf.h>

#include "dhf-xdm-vsock.h"

#define WAIT_TIMEOUT_S 20
#define PORT           5477
#define UUID_A         "6a1f4f3e-1b2c-4d5e-8f90-0123456789ab"
#define UUID_B         "0c3d1f7e-2b2c-4d5e-8f90-0123456789ab"

/* --- the seam: a "listening socket" is one end of a SOCK_SEQPACKET pair;
 * a connection arrives as a message carrying the CID and, by SCM_RIGHTS,
 * one end of a stream socketpair. */

static gint injector = -1; /* the test's end */
static guint32 listened_port;
static gboolean listen_unsupported;

static gint
fake_listen (guint32 port, GError **error)
{
  gint pair[2];

  if (listen_unsupported)
    {
      g_set_error (error, DHF_ERROR, DHF_ERROR_NOT_SUPPORTED,
                   "creating an AF_VSOCK socket: Address family not supported by protocol");
      return -1;
    }
  g_assert_cmpint (socketpair (AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, pair), ==, 0);
  g_assert_cmpint (fcntl (pair[0], F_SETFL, O_NONBLOCK), ==, 0);
  injector = pair[1];
  listened_port = port;
  return pair[0];
}

static gint
fake_accept (gint listen_fd, guint32 *peer_cid)
{
  guint32 cid = 0;
  struct iovec iov = { .iov_base = &cid, .iov_len = sizeof cid };
  union
  {
    char buf[CMSG_SPACE (sizeof (int))];
    struct cmsghdr align;
  } control;
  struct msghdr msg = {
    .msg_iov = &iov,
    .msg_iovlen = 1,
    .msg_control = control.buf,
    .msg_controllen = sizeof control.buf,
  };
  struct cmsghdr *cmsg;
  gint fd;

  if (recvmsg (listen_fd, &msg, MSG_CMSG_CLOEXEC) <= 0)
    return -1; /* errno is EAGAIN when nothing waits */
  cmsg = CMSG_FIRSTHDR (&msg);
  if (cmsg == NULL || cmsg->cmsg_type != SCM_RIGHTS)
    g_error ("a connection arrived without its descriptor");
  memcpy (&fd, CMSG_DATA (cmsg), sizeof fd);
  g_assert_cmpint (fcntl (fd, F_SETFL, O_NONBLOCK), ==, 0);
  *peer_cid = cid;
  return fd;
}

static const DhfXdmVsockOps fake_ops = {
  .listen = fake_listen,
  .accept = fake_accept,
};

/* A guest with that CID connects; returns the guest's end. */
static gint
guest_connect (guint32 cid)
{
  gint pair[2];
  struct iovec iov = { .iov_base = &cid, .iov_len = sizeof cid };
  union
  {
    char buf[CMSG_SPACE (sizeof (int))];
    struct cmsghdr align;
  } control;
  struct msghdr msg = {
    .msg_iov = &iov,
    .msg_iovlen = 1,
    .msg_control = control.buf,
    .msg_controllen = sizeof control.buf,
  };
  struct cmsghdr *cmsg;

  g_assert_cmpint (socketpair (AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, pair), ==, 0);
  memset (control.buf, 0, sizeof control.buf);
  cmsg = CMSG_FIRSTHDR (&msg);
  if (cmsg == NULL)
    g_error ("no room for the descriptor");
  cmsg->cmsg_level = SOL_SOCKET;
  cmsg->cmsg_type = SCM_RIGHTS;
  cmsg->cmsg_len = CMSG_LEN (sizeof (int));
  memcpy (CMSG_DATA (cmsg), &pair[1], sizeof (int));
  g_assert_cmpint (sendmsg (injector, &msg, 0), ==, sizeof cid);
  close (pair[1]);
  return pair[0];
}

/* --- the tests ----------------------------------------------------------- */

typedef struct
{
  gint fd;
  DhfXdmTransport transport;
  gchar *domain;
  gchar *uuid;
  uid_t uid;
  pid_t pid;
} Accepted;

typedef struct
{
  DhfXdmVsock *vsock;
  GPtrArray *accepted;
} Fixture;

static void
accepted_free (gpointer data)
{
  Accepted *accepted = data;

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
fixture_set_up (Fixture *fx, gconstpointer data)
{
  g_autoptr (GError) error = NULL;

  listen_unsupported = FALSE;
  fx->accepted = g_ptr_array_new_with_free_func (accepted_free);
  fx->vsock = dhf_xdm_vsock_new (&fake_ops, PORT, on_accept, fx, &error);
  g_assert_no_error (error);
  g_assert_nonnull (fx->vsock);
  g_assert_cmpuint (listened_port, ==, PORT);
  g_assert_cmpuint (dhf_xdm_vsock_get_port (fx->vsock), ==, PORT);
}

static void
fixture_tear_down (Fixture *fx, gconstpointer data)
{
  g_clear_object (&fx->vsock);
  g_ptr_array_unref (fx->accepted);
  if (injector >= 0)
    close (injector);
  injector = -1;
}

/* Runs the main loop until the guest's end sees EOF: the listener closed
 * the connection without handing it on. */
static void
wait_refused (gint fd)
{
  gint64 deadline = g_get_monotonic_time () + WAIT_TIMEOUT_S * G_USEC_PER_SEC;
  char byte;

  g_assert_cmpint (fcntl (fd, F_SETFL, O_NONBLOCK), ==, 0);
  for (;;)
    {
      gssize n = read (fd, &byte, 1);

      if (n == 0)
        break;
      g_assert_cmpint (n, <, 0);
      g_assert_cmpint (errno, ==, EAGAIN);
      g_assert_cmpint (g_get_monotonic_time (), <, deadline);
      g_main_context_iteration (NULL, TRUE);
    }
  close (fd);
}

static Accepted *
wait_accepted (Fixture *fx, guint n)
{
  gint64 deadline = g_get_monotonic_time () + WAIT_TIMEOUT_S * G_USEC_PER_SEC;

  while (fx->accepted->len < n)
    {
      g_assert_cmpint (g_get_monotonic_time (), <, deadline);
      g_main_context_iteration (NULL, TRUE);
    }
  return g_ptr_array_index (fx->accepted, n - 1);
}

/* A running domain's CID: the connection is that domain's. */
static void
test_known_cid (Fixture *fx, gconstpointer data)
{
  Accepted *accepted;
  gint guest;
  char byte = 0;

  dhf_xdm_vsock_update (fx->vsock, "alpha", UUID_A, 3);
  dhf_xdm_vsock_update (fx->vsock, "beta", UUID_B, 42);
  guest = guest_connect (42);
  accepted = wait_accepted (fx, 1);
  g_assert_cmpint (accepted->transport, ==, DHF_XDM_TRANSPORT_VSOCK);
  g_assert_cmpstr (accepted->domain, ==, "beta");
  g_assert_cmpstr (accepted->uuid, ==, UUID_B);
  g_assert_cmpint ((gint) accepted->uid, ==, -1);
  g_assert_cmpint (accepted->pid, ==, 0);
  /* The fd handed on is the guest's connection. */
  g_assert_cmpint (write (guest, "v", 1), ==, 1);
  {
    struct pollfd pfd = { .fd = accepted->fd, .events = POLLIN };

    g_assert_cmpint (poll (&pfd, 1, WAIT_TIMEOUT_S * 1000), ==, 1);
  }
  g_assert_cmpint (read (accepted->fd, &byte, 1), ==, 1);
  g_assert_cmpint (byte, ==, 'v');
  close (guest);

  guest = guest_connect (3);
  accepted = wait_accepted (fx, 2);
  g_assert_cmpstr (accepted->domain, ==, "alpha");
  close (guest);
}

/* A CID no running domain has: closed, never handed on. */
static void
test_unknown_cid (Fixture *fx, gconstpointer data)
{
  Accepted *accepted;
  gint guest;

  dhf_xdm_vsock_update (fx->vsock, "alpha", UUID_A, 3);
  wait_refused (guest_connect (4));
  wait_refused (guest_connect (VMADDR_CID_HOST));
  wait_refused (guest_connect (VMADDR_CID_ANY));
  g_assert_cmpuint (fx->accepted->len, ==, 0);
  /* And the listener goes on. */
  guest = guest_connect (3);
  accepted = wait_accepted (fx, 1);
  g_assert_cmpstr (accepted->domain, ==, "alpha");
  close (guest);
}

/* The domain stopped (CID 0), or was removed: its CID is nobody's. A
 * restart with a new CID counts from then on. */
static void
test_stopped_domain (Fixture *fx, gconstpointer data)
{
  Accepted *accepted;
  gint guest;

  dhf_xdm_vsock_update (fx->vsock, "alpha", UUID_A, 3);
  dhf_xdm_vsock_update (fx->vsock, "alpha", UUID_A, 0);
  wait_refused (guest_connect (3));
  dhf_xdm_vsock_update (fx->vsock, "alpha", UUID_A, 5);
  wait_refused (guest_connect (3));
  guest = guest_connect (5);
  accepted = wait_accepted (fx, 1);
  g_assert_cmpstr (accepted->domain, ==, "alpha");
  close (guest);
  dhf_xdm_vsock_remove (fx->vsock, "alpha");
  wait_refused (guest_connect (5));
  g_assert_cmpuint (fx->accepted->len, ==, 1);
}

/* The hypervisor cannot be asked (dhfd lost it): a CID may be another
 * domain's by now, so none is trusted until the map is told again. */
static void
test_cleared (Fixture *fx, gconstpointer data)
{
  Accepted *accepted;
  gint guest;

  dhf_xdm_vsock_update (fx->vsock, "alpha", UUID_A, 3);
  dhf_xdm_vsock_update (fx->vsock, "beta", UUID_B, 4);
  dhf_xdm_vsock_clear (fx->vsock);
  g_assert_null (dhf_xdm_vsock_lookup (fx->vsock, 3, NULL));
  wait_refused (guest_connect (3));
  wait_refused (guest_connect (4));
  g_assert_cmpuint (fx->accepted->len, ==, 0);
  /* The next sync tells again: beta has 3 now. */
  dhf_xdm_vsock_update (fx->vsock, "beta", UUID_B, 3);
  guest = guest_connect (3);
  accepted = wait_accepted (fx, 1);
  g_assert_cmpstr (accepted->domain, ==, "beta");
  close (guest);
  wait_refused (guest_connect (4));
}

/* Two domains with one CID cannot be told apart: refused. */
static GPtrArray *warnings;

static GLogWriterOutput
record_warnings (GLogLevelFlags level, const GLogField *fields, gsize n_fields, gpointer data)
{
  if (!(level & G_LOG_LEVEL_WARNING))
    return g_log_writer_default (level, fields, n_fields, data);
  for (gsize i = 0; i < n_fields; i++)
    {
      if (g_str_equal (fields[i].key, "MESSAGE"))
        g_ptr_array_add (warnings, g_strdup (fields[i].value));
    }
  return G_LOG_WRITER_HANDLED;
}

static void
test_ambiguous_cid (Fixture *fx, gconstpointer data)
{
  const gchar *uuid = NULL;

  g_ptr_array_set_size (warnings, 0);
  dhf_xdm_vsock_update (fx->vsock, "alpha", UUID_A, 7);
  dhf_xdm_vsock_update (fx->vsock, "beta", UUID_B, 7);
  wait_refused (guest_connect (7));
  g_assert_cmpuint (fx->accepted->len, ==, 0);
  g_assert_cmpuint (warnings->len, ==, 1);
  g_assert_true (g_pattern_match_simple ("XDM: vsock CID 7 is claimed by both * and *; refusing it",
                                         g_ptr_array_index (warnings, 0)));
  g_ptr_array_set_size (warnings, 0);
  dhf_xdm_vsock_update (fx->vsock, "beta", UUID_B, 8);
  g_assert_cmpstr (dhf_xdm_vsock_lookup (fx->vsock, 7, &uuid), ==, "alpha");
  g_assert_cmpstr (uuid, ==, UUID_A);
  g_assert_cmpstr (dhf_xdm_vsock_lookup (fx->vsock, 8, &uuid), ==, "beta");
  g_assert_cmpstr (uuid, ==, UUID_B);
  g_assert_null (dhf_xdm_vsock_lookup (fx->vsock, 9, NULL));
}

/* A burst of connections, more than one wakeup takes. */
static void
test_burst (Fixture *fx, gconstpointer data)
{
  gint guests[100];

  dhf_xdm_vsock_update (fx->vsock, "alpha", UUID_A, 3);
  for (guint i = 0; i < G_N_ELEMENTS (guests); i++)
    guests[i] = guest_connect (3);
  wait_accepted (fx, G_N_ELEMENTS (guests));
  for (guint i = 0; i < G_N_ELEMENTS (guests); i++)
    close (guests[i]);
}

/* No vsock on the host: the listener is not made, and says why. */
static void
test_unsupported (void)
{
  g_autoptr (GError) error = NULL;
  g_autoptr (DhfXdmVsock) vsock = NULL;

  listen_unsupported = TRUE;
  vsock = dhf_xdm_vsock_new (&fake_ops, PORT, on_accept, NULL, &error);
  g_assert_null (vsock);
  g_assert_error (error, DHF_ERROR, DHF_ERROR_NOT_SUPPORTED);
  g_assert_true (g_str_has_prefix (error->message, "XDM vsock: "));
  listen_unsupported = FALSE;
}

/* The real AF_VSOCK operations: a listening vsock socket, or the error
 * that says there is no vsock here. */
static void
test_default_ops (void)
{
  const DhfXdmVsockOps *ops = dhf_xdm_vsock_ops_default ();
  g_autoptr (GError) error = NULL;
  struct sockaddr_vm address = { 0 };
  socklen_t length = sizeof address;
  gint accepting = 0;
  socklen_t int_length = sizeof accepting;
  guint32 cid = 0;
  gint fd;

  /* An unusual port, to stay clear of a dhfd running here. */
  fd = ops->listen (54770, &error);
  if (fd < 0)
    {
      g_assert_true (g_error_matches (error, DHF_ERROR, DHF_ERROR_NOT_SUPPORTED)
                     || g_error_matches (error, DHF_ERROR, DHF_ERROR_FAILED));
      g_test_skip (error->message);
      return;
    }
  g_assert_no_error (error);
  g_assert_cmpint (getsockname (fd, (struct sockaddr *) &address, &length), ==, 0);
  g_assert_cmpint (address.svm_family, ==, AF_VSOCK);
  g_assert_cmpuint (address.svm_port, ==, 54770);
  g_assert_cmpint (getsockopt (fd, SOL_SOCKET, SO_ACCEPTCONN, &accepting, &int_length), ==, 0);
  g_assert_cmpint (accepting, ==, 1);
  g_assert_cmpint (fcntl (fd, F_GETFL) & O_NONBLOCK, !=, 0);
  g_assert_cmpint (fcntl (fd, F_GETFD) & FD_CLOEXEC, !=, 0);
  /* Nobody connects: accept says so instead of blocking. */
  g_assert_cmpint (ops->accept (fd, &cid), ==, -1);
  g_assert_cmpint (errno, ==, EAGAIN);
  close (fd);
}

int
main (int argc, char **argv)
{
  warnings = g_ptr_array_new_with_free_func (g_free);
  g_log_set_writer_func (record_warnings, NULL, NULL);
  g_test_init (&argc, &argv, NULL);

#define ADD(path, func) g_test_add (path, Fixture, NULL, fixture_set_up, func, fixture_tear_down)
  ADD ("/xdm-vsock/known-cid", test_known_cid);
  ADD ("/xdm-vsock/unknown-cid", test_unknown_cid);
  ADD ("/xdm-vsock/stopped-domain", test_stopped_domain);
  ADD ("/xdm-vsock/cleared", test_cleared);
  ADD ("/xdm-vsock/ambiguous-cid", test_ambiguous_cid);
  ADD ("/xdm-vsock/burst", test_burst);
#undef ADD
  g_test_add_func ("/xdm-vsock/unsupported", test_unsupported);
  g_test_add_func ("/xdm-vsock/default-ops", test_default_ops);
  return g_test_run ();
}
