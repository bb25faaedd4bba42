/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include "config.h"

#include <errno.h>
#include <grp.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <dhf/dhf.h>
#include <glib-unix.h>
#include <glib/gstdio.h>

#include "dhf-xdm-unix.h"

/* Connections taken per wakeup, so that a flood of connects cannot keep
 * the main loop to itself. */
#define ACCEPT_BATCH 32
/* Out of descriptors: stop accepting for a while instead of spinning on a
 * socket that stays readable. */
#define ACCEPT_PAUSE_MS 100
#define DEFAULT_GROUP   "dhf"

struct _DhfXdmUnix
{
  GObject parent_instance;

  gchar *path;
  gint fd;
  dev_t dev; /* the socket file we made, to remove only that one */
  ino_t ino;
  guint watch_id;
  guint pause_id;
  DhfXdmUnixAcceptFunc accept;
  gpointer accept_data;
};

G_DEFINE_TYPE (DhfXdmUnix, dhf_xdm_unix, G_TYPE_OBJECT)

static gboolean on_incoming (gint fd, GIOCondition condition, gpointer user_data);

static gboolean
set_errno_error (GError **error, int saved_errno, const gchar *what, const gchar *path)
{
  g_set_error (error, DHF_ERROR, DHF_ERROR_FAILED, "%s %s: %s", what, path,
               g_strerror (saved_errno));
  return FALSE;
}

static gboolean
fill_address (struct sockaddr_un *address, const gchar *path, GError **error)
{
  memset (address, 0, sizeof *address);
  address->sun_family = AF_UNIX;
  if (!g_path_is_absolute (path) || strlen (path) >= sizeof address->sun_path)
    {
      g_set_error (error, DHF_ERROR, DHF_ERROR_INVALID_ARGS,
                   "'%s' cannot be a unix socket's path (absolute, at most %zu bytes)", path,
                   sizeof address->sun_path - 1);
      return FALSE;
    }
  strcpy (address->sun_path, path);
  return TRUE;
}

/* Whether some process accepts connections on the socket at path. */
static gboolean
someone_answers (const struct sockaddr_un *address, gboolean *answers, GError **error)
{
  gint fd = socket (AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
  int saved_errno;

  if (fd < 0)
    return set_errno_error (error, errno, "creating a socket to probe", address->sun_path);
  if (connect (fd, (const struct sockaddr *) address, sizeof *address) == 0)
    {
      close (fd);
      *answers = TRUE;
      return TRUE;
    }
  saved_errno = errno;
  close (fd);
  switch (saved_errno)
    {
      case ECONNREFUSED: /* a socket file nobody listens on: stale */
      case ENOENT:
        *answers = FALSE;
        return TRUE;
      case EAGAIN: /* a listener with a full backlog */
      case EINPROGRESS:
        *answers = TRUE;
        return TRUE;
      default:
        return set_errno_error (error, saved_errno, "probing", address->sun_path);
    }
}

/* Leaves path free to bind: removes a stale socket, refuses anything else. */
static gboolean
clear_path (const struct sockaddr_un *address, gboolean replace, GError **error)
{
  const gchar *path = address->sun_path;
  struct stat st;
  gboolean answers = FALSE;

  if (lstat (path, &st) < 0)
    {
      if (errno == ENOENT)
        return TRUE;
      return set_errno_error (error, errno, "examining", path);
    }
  if (!S_ISSOCK (st.st_mode))
    {
      g_set_error (error, DHF_ERROR, DHF_ERROR_EXISTS,
                   "%s exists and is not a socket; dhfd leaves it alone (remove it, or set "
                   "[XDM] Socket to another path)",
                   path);
      return FALSE;
    }
  if (!someone_answers (address, &answers, error))
    return FALSE;
  if (answers && !replace)
    {
      g_set_error (error, DHF_ERROR, DHF_ERROR_EXISTS,
                   "another process (another dhfd?) is listening on %s", path);
      return FALSE;
    }
  if (answers)
    g_message ("XDM: taking %s over from the process listening there", path);
  else
    g_debug ("XDM: removing the stale socket %s", path);
  if (unlink (path) < 0 && errno != ENOENT)
    return set_errno_error (error, errno, "removing", path);
  return TRUE;
}

/* The group the socket gets: the one named, or "dhf" if it exists; -1 to
 * leave it as created. */
static gboolean
resolve_group (const gchar *name, gid_t *gid, GError **error)
{
  struct group *entry = getgrnam (name != NULL ? name : DEFAULT_GROUP);

  if (entry != NULL)
    {
      *gid = entry->gr_gid;
      return TRUE;
    }
  if (name != NULL)
    {
      g_set_error (error, DHF_ERROR, DHF_ERROR_NOT_FOUND,
                   "[XDM] SocketGroup: there is no group '%s'", name);
      return FALSE;
    }
  *gid = (gid_t) -1;
  return TRUE;
}

/* Binding creates the file with the umask's restrictive bits (no write for
 * others, so nobody else can connect in between); mode and group follow. */
static gboolean
set_access (DhfXdmUnix *self, const DhfXdmUnixOptions *options, GError **error)
{
  gid_t gid;

  if (!resolve_group (options->group, &gid, error))
    return FALSE;
  if (gid != (gid_t) -1 && chown (self->path, (uid_t) -1, gid) < 0)
    {
      /* Not being allowed the default group (dhfd not root) is no reason
       * to stop; a group the administrator asked for is. */
      if (options->group != NULL)
        return set_errno_error (error, errno, "setting the group of", self->path);
      g_debug ("XDM: cannot give %s the group " DEFAULT_GROUP ": %s", self->path,
               g_strerror (errno));
    }
  if (chmod (self->path, options->mode & 0777) < 0)
    return set_errno_error (error, errno, "setting the mode of", self->path);
  return TRUE;
}

static gboolean
start_listening (DhfXdmUnix *self, const DhfXdmUnixOptions *options, GError **error)
{
  g_autofree gchar *dir = g_path_get_dirname (self->path);
  struct sockaddr_un address;
  struct stat st;

  if (!fill_address (&address, self->path, error))
    return FALSE;
  if (g_mkdir_with_parents (dir, 0755) < 0)
    return set_errno_error (error, errno, "creating the directory", dir);
  if (!clear_path (&address, options->replace, error))
    return FALSE;
  self->fd = socket (AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
  if (self->fd < 0)
    return set_errno_error (error, errno, "creating the socket for", self->path);
  if (bind (self->fd, (const struct sockaddr *) &address, sizeof address) < 0)
    return set_errno_error (error, errno, "binding", self->path);
  /* From here on the file is ours to remove, on failure too. */
  if (lstat (self->path, &st) == 0)
    {
      self->dev = st.st_dev;
      self->ino = st.st_ino;
    }
  if (!set_access (self, options, error))
    return FALSE;
  if (listen (self->fd, SOMAXCONN) < 0)
    return set_errno_error (error, errno, "listening on", self->path);
  self->watch_id = g_unix_fd_add (self->fd, G_IO_IN, on_incoming, self);
  return TRUE;
}

static gboolean
on_pause_over (gpointer user_data)
{
  DhfXdmUnix *self = user_data;

  self->pause_id = 0;
  self->watch_id = g_unix_fd_add (self->fd, G_IO_IN, on_incoming, self);
  return G_SOURCE_REMOVE;
}

static void
hand_over (DhfXdmUnix *self, gint fd)
{
  struct ucred credentials;
  socklen_t length = sizeof credentials;
  DhfXdmPeer peer = {
    .transport = DHF_XDM_TRANSPORT_UNIX,
    .domain = "dom0",
  };

  if (getsockopt (fd, SOL_SOCKET, SO_PEERCRED, &credentials, &length) < 0
      || length != sizeof credentials)
    {
      g_warning ("XDM: %s: cannot tell who connected (%s); closing", self->path,
                 g_strerror (errno));
      close (fd);
      return;
    }
  peer.uid = credentials.uid;
  peer.pid = credentials.pid;
  g_debug ("XDM: dom0 connection on %s from uid %u pid %d", self->path, (guint) peer.uid,
           (gint) peer.pid);
  self->accept (fd, &peer, self->accept_data);
}

static gboolean
on_incoming (gint listen_fd, GIOCondition condition, gpointer user_data)
{
  DhfXdmUnix *self = user_data;

  for (guint i = 0; i < ACCEPT_BATCH; i++)
    {
      gint fd = accept4 (listen_fd, NULL, NULL, SOCK_CLOEXEC | SOCK_NONBLOCK);

      if (fd >= 0)
        {
          hand_over (self, fd);
          continue;
        }
      switch (errno)
        {
          case EINTR:
          case ECONNABORTED:
          case EPROTO:
            continue;
          case EAGAIN:
            return G_SOURCE_CONTINUE;
          default:
            g_warning ("XDM: accepting on %s: %s; pausing for %u ms", self->path,
                       g_strerror (errno), ACCEPT_PAUSE_MS);
            self->watch_id = 0;
            self->pause_id = g_timeout_add (ACCEPT_PAUSE_MS, on_pause_over, self);
            return G_SOURCE_REMOVE;
        }
    }
  return G_SOURCE_CONTINUE;
}

DhfXdmUnix *
dhf_xdm_unix_new (const DhfXdmUnixOptions *options, DhfXdmUnixAcceptFunc accept, gpointer user_data,
                  GError **error)
{
  g_autoptr (DhfXdmUnix) self = NULL;

  g_return_val_if_fail (options != NULL && options->path != NULL, NULL);
  g_return_val_if_fail (accept != NULL, NULL);

  self = g_object_new (DHF_TYPE_XDM_UNIX, NULL);
  self->path = g_strdup (options->path);
  self->accept = accept;
  self->accept_data = user_data;
  if (!start_listening (self, options, error))
    {
      g_prefix_error (error, "XDM socket: ");
      return NULL;
    }
  g_message ("XDM: dom0 clients connect on %s", self->path);
  return g_steal_pointer (&self);
}

const gchar *
dhf_xdm_unix_get_path (DhfXdmUnix *self)
{
  g_return_val_if_fail (DHF_IS_XDM_UNIX (self), NULL);

  return self->path;
}

static void
dhf_xdm_unix_init (DhfXdmUnix *self)
{
  self->fd = -1;
}

static void
dhf_xdm_unix_dispose (GObject *object)
{
  DhfXdmUnix *self = DHF_XDM_UNIX (object);
  struct stat st;

  g_clear_handle_id (&self->watch_id, g_source_remove);
  g_clear_handle_id (&self->pause_id, g_source_remove);
  if (self->fd >= 0)
    {
      /* A dhfd that replaced us owns the path now. */
      if (self->ino != 0 && lstat (self->path, &st) == 0 && st.st_dev == self->dev
          && st.st_ino == self->ino)
        g_unlink (self->path);
      close (self->fd);
      self->fd = -1;
    }
  G_OBJECT_CLASS (dhf_xdm_unix_parent_class)->dispose (object);
}

static void
dhf_xdm_unix_finalize (GObject *object)
{
  DhfXdmUnix *self = DHF_XDM_UNIX (object);

  g_free (self->path);
  G_OBJECT_CLASS (dhf_xdm_unix_parent_class)->finalize (object);
}

static void
dhf_xdm_unix_class_init (DhfXdmUnixClass *klass)
{
  GObjectClass *object_class = G_OBJECT_CLASS (klass);

  object_class->dispose = dhf_xdm_unix_dispose;
  object_class->finalize = dhf_xdm_unix_finalize;
}
