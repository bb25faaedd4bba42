/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include "config.h"

#include <errno.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <linux/vm_sockets.h>

#include <dhf/dhf.h>
#include <glib-unix.h>

#include "dhf-xdm-vsock.h"

/* As for the unix socket: a bounded batch per wakeup, and a pause instead
 * of a spin when accept() fails for want of resources. */
#define ACCEPT_BATCH    32
#define ACCEPT_PAUSE_MS 100

typedef struct
{
  gchar *uuid;
  guint32 cid;
} Domain;

struct _DhfXdmVsock
{
  GObject parent_instance;

  const DhfXdmVsockOps *ops;
  guint32 port;
  gint fd;
  guint watch_id;
  guint pause_id;
  GHashTable *domains; /* name -> Domain, running domains with a CID */
  DhfXdmVsockAcceptFunc accept;
  gpointer accept_data;
};

G_DEFINE_TYPE (DhfXdmVsock, dhf_xdm_vsock, G_TYPE_OBJECT)

/* --- AF_VSOCK ------------------------------------------------------------ */

static gboolean
vsock_unsupported (int saved_errno)
{
  return saved_errno == EAFNOSUPPORT || saved_errno == EPROTONOSUPPORT
         || saved_errno == ESOCKTNOSUPPORT || saved_errno == ENODEV || saved_errno == EADDRNOTAVAIL;
}

static gint
real_listen (guint32 port, GError **error)
{
  struct sockaddr_vm address = {
    .svm_family = AF_VSOCK,
    .svm_cid = VMADDR_CID_ANY,
    .svm_port = port,
  };
  const gchar *what = "creating an AF_VSOCK socket";
  gint fd = socket (AF_VSOCK, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
  int saved_errno;

  if (fd >= 0)
    {
      what = "binding";
      if (bind (fd, (const struct sockaddr *) &address, sizeof address) == 0)
        {
          what = "listening";
          if (listen (fd, SOMAXCONN) == 0)
            return fd;
        }
    }
  saved_errno = errno;
  if (fd >= 0)
    close (fd);
  g_set_error (error, DHF_ERROR,
               vsock_unsupported (saved_errno) ? DHF_ERROR_NOT_SUPPORTED : DHF_ERROR_FAILED,
               "%s (port %u): %s", what, port, g_strerror (saved_errno));
  return -1;
}

static gint
real_accept (gint listen_fd, guint32 *peer_cid)
{
  struct sockaddr_vm address = { 0 };
  socklen_t length = sizeof address;
  gint fd
      = accept4 (listen_fd, (struct sockaddr *) &address, &length, SOCK_CLOEXEC | SOCK_NONBLOCK);

  if (fd < 0)
    return -1;
  if (length < sizeof address || address.svm_family != AF_VSOCK)
    {
      close (fd);
      errno = EPROTO;
      return -1;
    }
  *peer_cid = address.svm_cid;
  return fd;
}

static const DhfXdmVsockOps default_ops = {
  .listen = real_listen,
  .accept = real_accept,
};

const DhfXdmVsockOps *
dhf_xdm_vsock_ops_default (void)
{
  return &default_ops;
}

/* --- domains ------------------------------------------------------------- */

static void
domain_free (gpointer data)
{
  Domain *domain = data;

  g_free (domain->uuid);
  g_free (domain);
}

void
dhf_xdm_vsock_update (DhfXdmVsock *self, const gchar *name, const gchar *uuid, guint32 cid)
{
  Domain *domain;

  g_return_if_fail (DHF_IS_XDM_VSOCK (self));
  g_return_if_fail (name != NULL);

  if (cid == 0)
    {
      g_hash_table_remove (self->domains, name);
      return;
    }
  domain = g_new0 (Domain, 1);
  domain->uuid = g_strdup (uuid);
  domain->cid = cid;
  g_hash_table_replace (self->domains, g_strdup (name), domain);
}

void
dhf_xdm_vsock_remove (DhfXdmVsock *self, const gchar *name)
{
  dhf_xdm_vsock_update (self, name, NULL, 0);
}

void
dhf_xdm_vsock_clear (DhfXdmVsock *self)
{
  g_return_if_fail (DHF_IS_XDM_VSOCK (self));

  if (g_hash_table_size (self->domains) > 0)
    g_debug ("XDM: forgetting %u vsock CIDs until the hypervisor is back",
             g_hash_table_size (self->domains));
  g_hash_table_remove_all (self->domains);
}

const gchar *
dhf_xdm_vsock_lookup (DhfXdmVsock *self, guint32 cid, const gchar **uuid)
{
  GHashTableIter iter;
  gpointer key, value;
  const gchar *found = NULL;

  g_return_val_if_fail (DHF_IS_XDM_VSOCK (self), NULL);

  g_hash_table_iter_init (&iter, self->domains);
  while (g_hash_table_iter_next (&iter, &key, &value))
    {
      Domain *domain = value;

      if (domain->cid != cid)
        continue;
      /* Two running domains with one CID: neither can be told apart. */
      if (found != NULL)
        {
          g_warning ("XDM: vsock CID %u is claimed by both %s and %s; refusing it", cid, found,
                     (const gchar *) key);
          return NULL;
        }
      found = key;
      if (uuid != NULL)
        *uuid = domain->uuid;
    }
  return found;
}

/* --- accepting ----------------------------------------------------------- */

static gboolean on_incoming (gint fd, GIOCondition condition, gpointer user_data);

static gboolean
on_pause_over (gpointer user_data)
{
  DhfXdmVsock *self = user_data;

  self->pause_id = 0;
  self->watch_id = g_unix_fd_add (self->fd, G_IO_IN, on_incoming, self);
  return G_SOURCE_REMOVE;
}

static void
hand_over (DhfXdmVsock *self, gint fd, guint32 cid)
{
  const gchar *uuid = NULL;
  const gchar *name = dhf_xdm_vsock_lookup (self, cid, &uuid);
  DhfXdmPeer peer = {
    .transport = DHF_XDM_TRANSPORT_VSOCK,
    .uid = (uid_t) -1,
    .pid = 0,
  };

  if (name == NULL)
    {
      g_debug ("XDM: vsock connection from CID %u, which no running domain has; closing", cid);
      close (fd);
      return;
    }
  peer.domain = name;
  peer.uuid = uuid;
  g_debug ("XDM: vsock connection from %s (CID %u)", name, cid);
  self->accept (fd, &peer, self->accept_data);
}

static gboolean
on_incoming (gint listen_fd, GIOCondition condition, gpointer user_data)
{
  DhfXdmVsock *self = user_data;

  for (guint i = 0; i < ACCEPT_BATCH; i++)
    {
      guint32 cid = 0;
      gint fd = self->ops->accept (listen_fd, &cid);

      if (fd >= 0)
        {
          hand_over (self, fd, cid);
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
            g_warning ("XDM: accepting on vsock port %u: %s; pausing for %u ms", self->port,
                       g_strerror (errno), ACCEPT_PAUSE_MS);
            self->watch_id = 0;
            self->pause_id = g_timeout_add (ACCEPT_PAUSE_MS, on_pause_over, self);
            return G_SOURCE_REMOVE;
        }
    }
  return G_SOURCE_CONTINUE;
}

DhfXdmVsock *
dhf_xdm_vsock_new (const DhfXdmVsockOps *ops, guint32 port, DhfXdmVsockAcceptFunc accept,
                   gpointer user_data, GError **error)
{
  g_autoptr (DhfXdmVsock) self = NULL;

  g_return_val_if_fail (accept != NULL, NULL);

  self = g_object_new (DHF_TYPE_XDM_VSOCK, NULL);
  self->ops = ops != NULL ? ops : &default_ops;
  self->port = port;
  self->accept = accept;
  self->accept_data = user_data;
  self->fd = self->ops->listen (port, error);
  if (self->fd < 0)
    {
      g_prefix_error (error, "XDM vsock: ");
      return NULL;
    }
  self->watch_id = g_unix_fd_add (self->fd, G_IO_IN, on_incoming, self);
  g_message ("XDM: appliances connect on vsock port %u", port);
  return g_steal_pointer (&self);
}

guint32
dhf_xdm_vsock_get_port (DhfXdmVsock *self)
{
  return self->port;
}

static void
dhf_xdm_vsock_init (DhfXdmVsock *self)
{
  self->fd = -1;
  self->domains = g_hash_table_new_full (g_str_hash, g_str_equal, g_free, domain_free);
}

static void
dhf_xdm_vsock_dispose (GObject *object)
{
  DhfXdmVsock *self = DHF_XDM_VSOCK (object);

  g_clear_handle_id (&self->watch_id, g_source_remove);
  g_clear_handle_id (&self->pause_id, g_source_remove);
  if (self->fd >= 0)
    {
      close (self->fd);
      self->fd = -1;
    }
  G_OBJECT_CLASS (dhf_xdm_vsock_parent_class)->dispose (object);
}

static void
dhf_xdm_vsock_finalize (GObject *object)
{
  DhfXdmVsock *self = DHF_XDM_VSOCK (object);

  g_hash_table_unref (self->domains);
  G_OBJECT_CLASS (dhf_xdm_vsock_parent_class)->finalize (object);
}

static void
dhf_xdm_vsock_class_init (DhfXdmVsockClass *klass)
{
  GObjectClass *object_class = G_OBJECT_CLASS (klass);

  object_class->dispose = dhf_xdm_vsock_dispose;
  object_class->finalize = dhf_xdm_vsock_finalize;
}
