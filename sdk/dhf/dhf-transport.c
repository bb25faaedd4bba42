/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <termios.h>
#include <unistd.h>

#include <linux/vm_sockets.h>

#include <gio/gio.h>
#include <glib/gstdio.h>

#include "dhf-error.h"
#include "dhf-transport.h"
#include "dhf-xdm-codec.h"

#define VSOCK_HOST_CID 2

static gboolean
parse_u32 (const gchar *text, guint32 *value)
{
  guint64 v = 0;

  if (text == NULL || *text == '\0'
      || !g_ascii_string_to_unsigned (text, 10, 0, G_MAXUINT32, &v, NULL))
    return FALSE;
  *value = (guint32) v;
  return TRUE;
}

gboolean
dhf_transport_address_parse (const gchar *text, DhfTransportAddress *address, GError **error)
{
  memset (address, 0, sizeof (*address));
  if (text == NULL)
    {
      g_set_error (error, DHF_ERROR, DHF_ERROR_INVALID_ARGS, "no XDM address");
      return FALSE;
    }
  if (g_str_has_prefix (text, "channel:"))
    {
      const gchar *dev = text + strlen ("channel:");

      address->kind = DHF_TRANSPORT_CHANNEL;
      if (*dev == '\0')
        return TRUE;
      /* "channel:vport1p1" is short for the device node of that name. */
      address->path = dev[0] == '/' ? g_strdup (dev) : g_build_filename ("/dev", dev, NULL);
      return TRUE;
    }
  if (g_str_has_prefix (text, "vsock:"))
    {
      const gchar *rest = text + strlen ("vsock:");
      g_auto (GStrv) parts = NULL;

      address->kind = DHF_TRANSPORT_VSOCK;
      address->cid = VSOCK_HOST_CID;
      address->port = DHF_XDM_VSOCK_PORT;
      if (*rest == '\0')
        return TRUE;
      parts = g_strsplit (rest, ":", -1);
      if (g_strv_length (parts) > 2 || !parse_u32 (parts[0], &address->cid)
          || (parts[1] != NULL && !parse_u32 (parts[1], &address->port)))
        {
          g_set_error (error, DHF_ERROR, DHF_ERROR_INVALID_ARGS,
                       "invalid vsock address '%s' (expected vsock:CID:PORT)", text);
          return FALSE;
        }
      return TRUE;
    }
  if (g_str_has_prefix (text, "unix:"))
    {
      const gchar *path = text + strlen ("unix:");

      address->kind = DHF_TRANSPORT_UNIX;
      address->path = g_strdup (*path != '\0' ? path : DHF_XDM_DEFAULT_SOCKET);
    }
  else if (g_str_has_prefix (text, "listen:"))
    {
      address->kind = DHF_TRANSPORT_LISTEN;
      address->path = g_strdup (text + strlen ("listen:"));
      if (*address->path == '\0')
        {
          g_clear_pointer (&address->path, g_free);
          g_set_error (error, DHF_ERROR, DHF_ERROR_INVALID_ARGS,
                       "invalid XDM address '%s': listen: needs a path", text);
          return FALSE;
        }
    }
  else
    {
      g_set_error (error, DHF_ERROR, DHF_ERROR_INVALID_ARGS,
                   "invalid XDM address '%s' (expected channel:, vsock:, unix: or listen:)", text);
      return FALSE;
    }
  if (strlen (address->path) >= sizeof (((struct sockaddr_un *) NULL)->sun_path))
    {
      g_clear_pointer (&address->path, g_free);
      g_set_error (error, DHF_ERROR, DHF_ERROR_INVALID_ARGS,
                   "invalid XDM address '%s': socket path too long", text);
      return FALSE;
    }
  return TRUE;
}

void
dhf_transport_address_clear (DhfTransportAddress *address)
{
  g_clear_pointer (&address->path, g_free);
}

gchar *
dhf_transport_address_to_string (const DhfTransportAddress *address)
{
  switch (address->kind)
    {
      case DHF_TRANSPORT_CHANNEL:
        return g_strdup_printf ("channel:%s", address->path != NULL ? address->path : "");
      case DHF_TRANSPORT_VSOCK:
        return g_strdup_printf ("vsock:%u:%u", address->cid, address->port);
      case DHF_TRANSPORT_UNIX:
        return g_strdup_printf ("unix:%s", address->path);
      case DHF_TRANSPORT_LISTEN:
        return g_strdup_printf ("listen:%s", address->path);
      default:
        g_assert_not_reached ();
    }
}

/* DHF_SYSFS_ROOT prefixes both /sys and /dev, so that a test can lay out
 * a fake tree with its own device stand-in. */
static gchar *
root_path (const gchar *path)
{
  const gchar *root = g_getenv ("DHF_SYSFS_ROOT");

  if (root == NULL || *root == '\0')
    return g_strdup (path);
  return g_build_filename (root, path, NULL);
}

gchar *
dhf_transport_find_channel (const gchar *name, GError **error)
{
  g_autofree gchar *class_dir = root_path ("/sys/class/virtio-ports");
  g_autoptr (GDir) dir = g_dir_open (class_dir, 0, NULL);
  const gchar *entry;

  while (dir != NULL && (entry = g_dir_read_name (dir)) != NULL)
    {
      g_autofree gchar *name_file = g_build_filename (class_dir, entry, "name", NULL);
      g_autofree gchar *contents = NULL;

      if (!g_file_get_contents (name_file, &contents, NULL, NULL))
        continue;
      g_strchomp (contents);
      if (g_str_equal (contents, name))
        {
          g_autofree gchar *dev = g_build_filename ("/dev", entry, NULL);

          return root_path (dev);
        }
    }
  g_set_error (error, DHF_ERROR, DHF_ERROR_NOT_FOUND, "no virtio-serial port named %s in %s", name,
               class_dir);
  return NULL;
}

gchar *
dhf_transport_default_address (void)
{
  const gchar *env = g_getenv ("DHF_XDM_ADDRESS");
  g_autofree gchar *channel = NULL;

  if (env != NULL && *env != '\0')
    return g_strdup (env);
  channel = dhf_transport_find_channel (DHF_XDM_CHANNEL_NAME, NULL);
  if (channel != NULL)
    return g_strdup ("channel:");
  return g_strdup ("unix:" DHF_XDM_DEFAULT_SOCKET);
}

static void
set_errno_error (GError **error, DhfError code, int errsv, const gchar *what,
                 const DhfTransportAddress *address)
{
  g_autofree gchar *text = dhf_transport_address_to_string (address);

  g_set_error (error, DHF_ERROR, code, "%s %s: %s", what, text, g_strerror (errsv));
}

static gint
open_channel (const DhfTransportAddress *address, GError **error)
{
  g_autofree gchar *path = NULL;
  gint fd;

  if (address->path != NULL)
    path = g_strdup (address->path);
  else if ((path = dhf_transport_find_channel (DHF_XDM_CHANNEL_NAME, error)) == NULL)
    return -1;
  fd = open (path, O_RDWR | O_NOCTTY | O_CLOEXEC | O_NONBLOCK);
  if (fd < 0)
    {
      int errsv = errno;

      g_set_error (error, DHF_ERROR, errsv == ENOENT ? DHF_ERROR_NOT_FOUND : DHF_ERROR_DISCONNECTED,
                   "cannot open the XDM channel %s: %s", path, g_strerror (errsv));
      return -1;
    }
  /* A virtio port passes bytes as they are; a tty (Xen console channels,
   * a pty standing in for a port) must be made to do the same. */
  if (isatty (fd))
    {
      struct termios tio;

      if (tcgetattr (fd, &tio) == 0)
        {
          cfmakeraw (&tio);
          (void) tcsetattr (fd, TCSANOW, &tio);
        }
    }
  return fd;
}

gint
dhf_transport_connect (const DhfTransportAddress *address, gboolean *in_progress,
                       gboolean *is_socket, GError **error)
{
  gint fd;
  int r;

  *in_progress = FALSE;
  *is_socket = TRUE;
  if (address->kind == DHF_TRANSPORT_CHANNEL)
    {
      *is_socket = FALSE;
      return open_channel (address, error);
    }
  if (address->kind == DHF_TRANSPORT_VSOCK)
    {
      struct sockaddr_vm sa = { 0 };

      fd = socket (AF_VSOCK, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
      if (fd < 0)
        {
          set_errno_error (error, DHF_ERROR_DISCONNECTED, errno, "cannot connect to", address);
          return -1;
        }
      sa.svm_family = AF_VSOCK;
      sa.svm_cid = address->cid;
      sa.svm_port = address->port;
      r = connect (fd, (struct sockaddr *) &sa, sizeof (sa));
    }
  else
    {
      struct sockaddr_un sa = { .sun_family = AF_UNIX };

      g_return_val_if_fail (address->kind == DHF_TRANSPORT_UNIX, -1);
      fd = socket (AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
      if (fd < 0)
        {
          set_errno_error (error, DHF_ERROR_DISCONNECTED, errno, "cannot connect to", address);
          return -1;
        }
      g_strlcpy (sa.sun_path, address->path, sizeof (sa.sun_path));
      r = connect (fd, (struct sockaddr *) &sa, sizeof (sa));
    }
  if (r < 0 && (errno == EINPROGRESS || errno == EAGAIN))
    {
      *in_progress = TRUE;
      return fd;
    }
  if (r < 0)
    {
      int errsv = errno;

      close (fd);
      set_errno_error (error, DHF_ERROR_DISCONNECTED, errsv, "cannot connect to", address);
      return -1;
    }
  return fd;
}

gboolean
dhf_transport_finish_connect (gint fd, const DhfTransportAddress *address, GError **error)
{
  int err = 0;
  socklen_t len = sizeof (err);

  if (getsockopt (fd, SOL_SOCKET, SO_ERROR, &err, &len) < 0)
    err = errno;
  if (err != 0)
    {
      set_errno_error (error, DHF_ERROR_DISCONNECTED, err, "cannot connect to", address);
      return FALSE;
    }
  return TRUE;
}

/* A socket file nobody listens on any more (its process died) may be
 * replaced; one that answers belongs to a live process. */
static gboolean
remove_stale_socket (const gchar *path, GError **error)
{
  struct stat st;
  struct sockaddr_un sa = { .sun_family = AF_UNIX };
  gint fd;
  int r;

  if (lstat (path, &st) < 0)
    return TRUE;
  if (!S_ISSOCK (st.st_mode))
    {
      g_set_error (error, DHF_ERROR, DHF_ERROR_EXISTS, "cannot listen on %s: not a socket", path);
      return FALSE;
    }
  fd = socket (AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0)
    {
      g_set_error (error, DHF_ERROR, DHF_ERROR_FAILED, "socket: %s", g_strerror (errno));
      return FALSE;
    }
  g_strlcpy (sa.sun_path, path, sizeof (sa.sun_path));
  r = connect (fd, (struct sockaddr *) &sa, sizeof (sa));
  close (fd);
  if (r == 0)
    {
      g_set_error (error, DHF_ERROR, DHF_ERROR_EXISTS,
                   "cannot listen on %s: another process is listening there", path);
      return FALSE;
    }
  if (g_unlink (path) < 0 && errno != ENOENT)
    {
      g_set_error (error, DHF_ERROR, DHF_ERROR_FAILED, "cannot remove the stale socket %s: %s",
                   path, g_strerror (errno));
      return FALSE;
    }
  return TRUE;
}

gint
dhf_transport_listen (const gchar *path, GError **error)
{
  struct sockaddr_un sa = { .sun_family = AF_UNIX };
  gint fd;

  if (strlen (path) >= sizeof (sa.sun_path))
    {
      g_set_error (error, DHF_ERROR, DHF_ERROR_INVALID_ARGS, "socket path too long: %s", path);
      return -1;
    }
  if (!remove_stale_socket (path, error))
    return -1;
  fd = socket (AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
  if (fd < 0)
    {
      g_set_error (error, DHF_ERROR, DHF_ERROR_FAILED, "socket: %s", g_strerror (errno));
      return -1;
    }
  g_strlcpy (sa.sun_path, path, sizeof (sa.sun_path));
  /* dhfd connects once at a time; a backlog of a few lets a reconnecting
   * dhfd queue behind a connection that is going away. */
  if (bind (fd, (struct sockaddr *) &sa, sizeof (sa)) < 0 || listen (fd, 4) < 0)
    {
      int errsv = errno;

      close (fd);
      g_set_error (error, DHF_ERROR, DHF_ERROR_FAILED, "cannot listen on %s: %s", path,
                   g_strerror (errsv));
      return -1;
    }
  return fd;
}

gint
dhf_transport_accept (gint listen_fd, GError **error)
{
  gint fd;

  do
    fd = accept4 (listen_fd, NULL, NULL, SOCK_CLOEXEC | SOCK_NONBLOCK);
  while (fd < 0 && errno == EINTR);
  if (fd < 0)
    {
      int errsv = errno;

      if (errsv == EAGAIN || errsv == EWOULDBLOCK || errsv == ECONNABORTED)
        g_set_error_literal (error, G_IO_ERROR, G_IO_ERROR_WOULD_BLOCK, "no connection waiting");
      else
        g_set_error (error, DHF_ERROR, DHF_ERROR_FAILED, "accept: %s", g_strerror (errsv));
      return -1;
    }
  return fd;
}
