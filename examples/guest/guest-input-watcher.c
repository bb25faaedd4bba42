/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* SO_RCVBUFFORCE, O_CLOEXEC: Linux's, not ISO C's. */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <errno.h>
#include <linux/netlink.h>
#include <sys/socket.h>
#include <unistd.h>

#include <glib-unix.h>

#include "guest-input-watcher.h"
#include "guest-log.h"

/* Datagrams read per wakeup, so that a flood cannot hold the main loop. */
#define READ_BATCH 64
/* Room for a burst (a USB hub with several devices); the default is small. */
#define RECEIVE_BUFFER (256 * 1024)
/* The kernel's own multicast group (udevd's re-broadcast is group 2). */
#define KERNEL_GROUP 1

struct _GuestInputWatcher
{
  GuestInputWatcherFuncs funcs;
  gpointer user_data;
  gint fd;
  gboolean kernel_only; /* accept datagrams from the kernel's port only */
  guint watch_id;
  gchar buffer[GUEST_UEVENT_MAX];
};

static void
dispatch (GuestInputWatcher *self, const GuestUevent *event)
{
  g_autofree gchar *node = NULL;

  if (guest_uevent_is_input_device (event))
    {
      /* bind, change, ... say nothing a subscriber needs. */
      if (g_str_equal (event->action, "add") || g_str_equal (event->action, "remove"))
        self->funcs.device_changed (event, self->user_data);
      return;
    }
  node = guest_uevent_get_event_node (event);
  if (node != NULL && g_str_equal (event->action, "add"))
    self->funcs.event_node_added (node, self->user_data);
}

/* Reads one datagram. TRUE when there may be more to read. */
static gboolean
read_one (GuestInputWatcher *self, gboolean *fatal)
{
  struct sockaddr_nl sender = { 0 };
  struct iovec iov = { .iov_base = self->buffer, .iov_len = sizeof self->buffer };
  struct msghdr msg = {
    .msg_name = &sender,
    .msg_namelen = sizeof sender,
    .msg_iov = &iov,
    .msg_iovlen = 1,
  };
  g_autoptr (GuestUevent) event = NULL;
  g_autoptr (GError) error = NULL;
  gssize n;

  n = recvmsg (self->fd, &msg, MSG_DONTWAIT);
  if (n < 0)
    {
      if (errno == EINTR)
        return TRUE;
      if (errno == EAGAIN || errno == EWOULDBLOCK)
        return FALSE;
      if (errno == ENOBUFS)
        {
          guest_log ("input: the kernel dropped device events (receive buffer overrun)");
          return TRUE;
        }
      guest_log ("input: cannot read device events: %s; devices added from now on are not "
                 "noticed",
                 g_strerror (errno));
      *fatal = TRUE;
      return FALSE;
    }
  /* Netlink never sends an empty datagram; a test's socketpair does at
   * its end. */
  if (n == 0)
    return FALSE;
  /* Anyone may send to a netlink socket: only the kernel's port is 0. */
  if (self->kernel_only
      && (msg.msg_namelen < sizeof sender || sender.nl_family != AF_NETLINK || sender.nl_pid != 0))
    return TRUE;
  if ((msg.msg_flags & MSG_TRUNC) != 0)
    {
      guest_log ("input: ignoring an oversized device event");
      return TRUE;
    }
  event = guest_uevent_parse (self->buffer, n, &error);
  if (event == NULL)
    {
      guest_log ("input: ignoring a device event of %zd bytes: %s", n, error->message);
      return TRUE;
    }
  dispatch (self, event);
  return TRUE;
}

static gboolean
on_readable (gint fd, GIOCondition condition, gpointer user_data)
{
  GuestInputWatcher *self = user_data;
  gboolean fatal = FALSE;
  guint count = 0;

  while (count++ < READ_BATCH && read_one (self, &fatal))
    continue;
  if (fatal || (condition & (G_IO_HUP | G_IO_NVAL)) != 0)
    {
      self->watch_id = 0;
      return G_SOURCE_REMOVE;
    }
  return G_SOURCE_CONTINUE;
}

static GuestInputWatcher *
watch_fd (gint fd, gboolean kernel_only, const GuestInputWatcherFuncs *funcs, gpointer user_data)
{
  GuestInputWatcher *self = g_new0 (GuestInputWatcher, 1);

  self->funcs = *funcs;
  self->user_data = user_data;
  self->fd = fd;
  self->kernel_only = kernel_only;
  self->watch_id = g_unix_fd_add (fd, G_IO_IN | G_IO_ERR | G_IO_HUP, on_readable, self);
  return self;
}

GuestInputWatcher *
guest_input_watcher_new (const GuestInputWatcherFuncs *funcs, gpointer user_data, GError **error)
{
  struct sockaddr_nl address = { .nl_family = AF_NETLINK, .nl_groups = KERNEL_GROUP };
  int size = RECEIVE_BUFFER;
  gint fd;

  fd = socket (AF_NETLINK, SOCK_RAW | SOCK_CLOEXEC | SOCK_NONBLOCK, NETLINK_KOBJECT_UEVENT);
  if (fd < 0)
    {
      int saved_errno = errno;

      g_set_error (error, G_IO_ERROR, g_io_error_from_errno (saved_errno),
                   "cannot create the uevent socket: %s", g_strerror (saved_errno));
      return NULL;
    }
  /* Forcing the size needs CAP_NET_ADMIN (the guest's agent runs as
   * root); the plain request is capped by rmem_max. */
  if (setsockopt (fd, SOL_SOCKET, SO_RCVBUFFORCE, &size, sizeof size) < 0)
    (void) setsockopt (fd, SOL_SOCKET, SO_RCVBUF, &size, sizeof size);
  if (bind (fd, (struct sockaddr *) &address, sizeof address) < 0)
    {
      int saved_errno = errno;

      close (fd);
      g_set_error (error, G_IO_ERROR, g_io_error_from_errno (saved_errno),
                   "cannot bind the uevent socket: %s", g_strerror (saved_errno));
      return NULL;
    }
  return watch_fd (fd, TRUE, funcs, user_data);
}

GuestInputWatcher *
guest_input_watcher_new_for_fd (gint fd, const GuestInputWatcherFuncs *funcs, gpointer user_data)
{
  return watch_fd (fd, FALSE, funcs, user_data);
}

void
guest_input_watcher_free (GuestInputWatcher *self)
{
  g_clear_handle_id (&self->watch_id, g_source_remove);
  close (self->fd);
  g_free (self);
}
