/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include "config.h"

#include <errno.h>
#include <linux/netlink.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <glib-unix.h>

#include "dhf-device-monitor-private.h"

/* A plug-in produces a burst (the device, its interfaces, driver binds):
 * one rescan after the burst has been quiet for QUIET_MS ... */
#define QUIET_MS 200
/* ... but a device that never stops chattering still gets one now and then. */
#define MAX_DELAY_MS 2000
/* Datagrams read per wakeup, so that a flood cannot hold the main loop. */
#define READ_BATCH 64
/* Room for a burst while the main loop is busy; the kernel default is small. */
#define RECEIVE_BUFFER (256 * 1024)
/* The kernel's own multicast group; group 2 is udevd's re-broadcast. */
#define KERNEL_GROUP 1

struct _DhfDeviceMonitor
{
  GObject parent_instance;

  gint fd;
  gboolean kernel_only; /* accept datagrams from the kernel's port only */
  guint watch_id;
  guint quiet_id;
  gint64 burst_start; /* monotonic time of the burst's first event, 0: none */
  gchar *buffer;      /* DHF_UEVENT_MAX bytes */
};

enum
{
  SIGNAL_CHANGED,
  N_SIGNALS
};
static guint signals[N_SIGNALS];

G_DEFINE_TYPE (DhfDeviceMonitor, dhf_device_monitor, G_TYPE_OBJECT)

static gboolean
is_key (const gchar *field, gsize key_length, const gchar *key)
{
  return key_length == strlen (key) && memcmp (field, key, key_length) == 0;
}

/* Stores a field's value once; a second ACTION or SUBSYSTEM makes the
 * message ambiguous. */
static gboolean
take_value (const gchar **slot, const gchar *value)
{
  if (*slot != NULL)
    return FALSE;
  *slot = value;
  return TRUE;
}

gboolean
dhf_uevent_parse (const gchar *buffer, gsize length, DhfUevent *event)
{
  const gchar *end;
  const gchar *at;
  const gchar *p;
  const gchar *devpath = NULL;
  DhfUevent parsed = { NULL };
  gsize header_length;

  g_return_val_if_fail (event != NULL, FALSE);
  /* Filled in only once the whole message is known to be good. */
  memset (event, 0, sizeof *event);

  /* Every field, the last one too, ends with a NUL: after this check
   * strlen() never runs past the buffer. */
  if (buffer == NULL || length == 0 || length > DHF_UEVENT_MAX || buffer[length - 1] != '\0')
    return FALSE;
  end = buffer + length;

  header_length = strlen (buffer);
  at = memchr (buffer, '@', header_length);
  if (at == NULL || at == buffer || at[1] != '/')
    return FALSE;

  for (p = buffer + header_length + 1; p < end; p += strlen (p) + 1)
    {
      gsize field_length = strlen (p);
      const gchar *equals = memchr (p, '=', field_length);
      gsize key_length;
      const gchar *value;

      if (equals == NULL || equals == p)
        return FALSE;
      key_length = equals - p;
      for (gsize i = 0; i < key_length; i++)
        if (!g_ascii_isupper (p[i]) && !g_ascii_isdigit (p[i]) && p[i] != '_')
          return FALSE;
      value = equals + 1;
      if (is_key (p, key_length, "ACTION") && !take_value (&parsed.action, value))
        return FALSE;
      if (is_key (p, key_length, "SUBSYSTEM") && !take_value (&parsed.subsystem, value))
        return FALSE;
      if (is_key (p, key_length, "DEVTYPE") && !take_value (&parsed.devtype, value))
        return FALSE;
      if (is_key (p, key_length, "DEVPATH") && !take_value (&devpath, value))
        return FALSE;
    }

  if (parsed.action == NULL || *parsed.action == '\0' || parsed.subsystem == NULL
      || *parsed.subsystem == '\0')
    return FALSE;
  /* The header repeats ACTION and DEVPATH; a message where they disagree
   * is not the kernel's. */
  if (strlen (parsed.action) != (gsize) (at - buffer)
      || memcmp (parsed.action, buffer, at - buffer) != 0)
    return FALSE;
  if (devpath != NULL && strcmp (devpath, at + 1) != 0)
    return FALSE;
  parsed.devpath = at + 1;
  *event = parsed;
  return TRUE;
}

gboolean
dhf_uevent_is_relevant (const DhfUevent *event)
{
  static const gchar *const actions[] = { "add", "remove", "bind", "unbind" };
  gboolean counted = FALSE;

  g_return_val_if_fail (event != NULL, FALSE);

  for (guint i = 0; i < G_N_ELEMENTS (actions); i++)
    counted = counted || g_strcmp0 (event->action, actions[i]) == 0;
  if (!counted)
    return FALSE;
  if (g_strcmp0 (event->subsystem, "pci") == 0)
    return TRUE;
  /* A USB device's interfaces come and go with it: count the device. */
  return g_strcmp0 (event->subsystem, "usb") == 0 && g_strcmp0 (event->devtype, "usb_device") == 0;
}

static gboolean
on_quiet (gpointer user_data)
{
  DhfDeviceMonitor *self = user_data;

  self->quiet_id = 0;
  self->burst_start = 0;
  g_signal_emit (self, signals[SIGNAL_CHANGED], 0);
  return G_SOURCE_REMOVE;
}

static void
note_change (DhfDeviceMonitor *self)
{
  gint64 now = g_get_monotonic_time ();
  gint64 waited_ms;

  if (self->burst_start == 0)
    self->burst_start = now;
  waited_ms = (now - self->burst_start) / 1000;
  g_clear_handle_id (&self->quiet_id, g_source_remove);
  self->quiet_id
      = g_timeout_add ((guint) CLAMP (MAX_DELAY_MS - waited_ms, 0, QUIET_MS), on_quiet, self);
}

static void
close_socket (DhfDeviceMonitor *self)
{
  if (self->fd >= 0)
    close (self->fd);
  self->fd = -1;
}

/* Reads one datagram. TRUE when there may be more to read. */
static gboolean
read_one (DhfDeviceMonitor *self, gboolean *fatal)
{
  struct sockaddr_nl sender = { 0 };
  struct iovec iov = { .iov_base = self->buffer, .iov_len = DHF_UEVENT_MAX };
  struct msghdr msg = {
    .msg_name = &sender,
    .msg_namelen = sizeof sender,
    .msg_iov = &iov,
    .msg_iovlen = 1,
  };
  DhfUevent event;
  gssize n;

  n = recvmsg (self->fd, &msg, MSG_DONTWAIT);
  if (n < 0)
    {
      int saved_errno = errno;

      if (saved_errno == EINTR)
        return TRUE;
      if (saved_errno == EAGAIN || saved_errno == EWOULDBLOCK)
        return FALSE;
      if (saved_errno == ENOBUFS)
        {
          /* The kernel dropped events: what they said is unknown, so
           * assume the worst and rescan. */
          g_debug ("device events were lost (receive buffer overrun); rescanning");
          note_change (self);
          return TRUE;
        }
      g_warning ("Cannot read device events: %s; hot-plug is no longer noticed",
                 g_strerror (saved_errno));
      *fatal = TRUE;
      return FALSE;
    }
  /* Netlink never sends an empty datagram; a test's socketpair does at
   * its end. */
  if (n == 0)
    return FALSE;
  if (self->kernel_only
      && (msg.msg_namelen < sizeof sender || sender.nl_family != AF_NETLINK || sender.nl_pid != 0))
    {
      g_debug ("ignoring a device event that is not from the kernel");
      return TRUE;
    }
  if ((msg.msg_flags & MSG_TRUNC) != 0)
    {
      g_debug ("ignoring an oversized device event");
      return TRUE;
    }
  if (!dhf_uevent_parse (self->buffer, n, &event))
    {
      g_debug ("ignoring a malformed device event of %zd bytes", n);
      return TRUE;
    }
  if (dhf_uevent_is_relevant (&event))
    {
      g_debug ("device event: %s %s (%s)", event.action, event.devpath, event.subsystem);
      note_change (self);
    }
  return TRUE;
}

static gboolean
on_readable (gint fd, GIOCondition condition, gpointer user_data)
{
  DhfDeviceMonitor *self = user_data;
  gboolean fatal = FALSE;
  guint count = 0;

  while (count++ < READ_BATCH && read_one (self, &fatal))
    continue;
  if (fatal || (condition & (G_IO_HUP | G_IO_NVAL)) != 0)
    {
      if (!fatal)
        g_warning ("The device event socket was closed; hot-plug is no longer noticed");
      self->watch_id = 0;
      close_socket (self);
      return G_SOURCE_REMOVE;
    }
  return G_SOURCE_CONTINUE;
}

static void
start_watching (DhfDeviceMonitor *self, gint fd, gboolean kernel_only)
{
  self->fd = fd;
  self->kernel_only = kernel_only;
  self->watch_id = g_unix_fd_add (fd, G_IO_IN | G_IO_ERR | G_IO_HUP, on_readable, self);
}

/* The kernel's uevent socket, or -1 with errno set. */
static gint
open_uevent_socket (const gchar **failed_step)
{
  struct sockaddr_nl address = { .nl_family = AF_NETLINK, .nl_groups = KERNEL_GROUP };
  int size = RECEIVE_BUFFER;
  gint fd;

  fd = socket (AF_NETLINK, SOCK_RAW | SOCK_CLOEXEC | SOCK_NONBLOCK, NETLINK_KOBJECT_UEVENT);
  if (fd < 0)
    {
      *failed_step = "creating";
      return -1;
    }
  /* Forcing the size needs CAP_NET_ADMIN; the plain request is capped by
   * rmem_max. Either is only a better margin against overruns. */
  if (setsockopt (fd, SOL_SOCKET, SO_RCVBUFFORCE, &size, sizeof size) < 0)
    (void) setsockopt (fd, SOL_SOCKET, SO_RCVBUF, &size, sizeof size);
  if (bind (fd, (struct sockaddr *) &address, sizeof address) < 0)
    {
      int saved_errno = errno;

      close (fd);
      errno = saved_errno;
      *failed_step = "binding";
      return -1;
    }
  return fd;
}

DhfDeviceMonitor *
dhf_device_monitor_new (void)
{
  static gsize logged = 0;
  DhfDeviceMonitor *self = g_object_new (DHF_TYPE_DEVICE_MONITOR, NULL);
  const gchar *failed_step = NULL;
  gint fd = open_uevent_socket (&failed_step);

  if (fd < 0)
    {
      int saved_errno = errno;

      if (g_once_init_enter (&logged))
        {
          g_message ("Device hot-plug is not noticed: %s the kernel's uevent socket failed: %s",
                     failed_step, g_strerror (saved_errno));
          g_once_init_leave (&logged, 1);
        }
      return self;
    }
  start_watching (self, fd, TRUE);
  return self;
}

DhfDeviceMonitor *
dhf_device_monitor_new_for_fd (gint fd)
{
  DhfDeviceMonitor *self = g_object_new (DHF_TYPE_DEVICE_MONITOR, NULL);

  g_return_val_if_fail (fd >= 0, self);
  start_watching (self, fd, FALSE);
  return self;
}

gboolean
dhf_device_monitor_is_watching (DhfDeviceMonitor *self)
{
  g_return_val_if_fail (DHF_IS_DEVICE_MONITOR (self), FALSE);
  return self->watch_id != 0;
}

gboolean
dhf_device_monitor_is_pending (DhfDeviceMonitor *self)
{
  g_return_val_if_fail (DHF_IS_DEVICE_MONITOR (self), FALSE);
  return self->quiet_id != 0;
}

static void
dhf_device_monitor_dispose (GObject *object)
{
  DhfDeviceMonitor *self = DHF_DEVICE_MONITOR (object);

  g_clear_handle_id (&self->watch_id, g_source_remove);
  g_clear_handle_id (&self->quiet_id, g_source_remove);
  close_socket (self);
  G_OBJECT_CLASS (dhf_device_monitor_parent_class)->dispose (object);
}

static void
dhf_device_monitor_finalize (GObject *object)
{
  DhfDeviceMonitor *self = DHF_DEVICE_MONITOR (object);

  g_free (self->buffer);
  G_OBJECT_CLASS (dhf_device_monitor_parent_class)->finalize (object);
}

static void
dhf_device_monitor_class_init (DhfDeviceMonitorClass *klass)
{
  GObjectClass *object_class = G_OBJECT_CLASS (klass);

  object_class->dispose = dhf_device_monitor_dispose;
  object_class->finalize = dhf_device_monitor_finalize;

  /* The set of devices may have changed: rescan the inventory. */
  signals[SIGNAL_CHANGED] = g_signal_new ("changed", G_TYPE_FROM_CLASS (klass), G_SIGNAL_RUN_LAST,
                                          0, NULL, NULL, NULL, G_TYPE_NONE, 0);
}

static void
dhf_device_monitor_init (DhfDeviceMonitor *self)
{
  self->fd = -1;
  self->buffer = g_malloc (DHF_UEVENT_MAX);
}
