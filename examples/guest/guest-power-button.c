/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* O_CLOEXEC: POSIX's, not ISO C's (the ISV build says -std=c11). */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <errno.h>
#include <fcntl.h>
#include <linux/input.h>
#include <string.h>
#include <sys/ioctl.h>
#include <unistd.h>

#include <glib-unix.h>

#include "guest-log.h"
#include "guest-power-button.h"
#include "guest-uevent.h"

/* devtmpfs makes the node before the uevent goes out; a node that is not
 * there yet is tried every RETRY_MS, at most RETRIES times. */
#define RETRY_MS 100
#define RETRIES  20
/* Events read per wakeup. */
#define READ_EVENTS 64

struct _GuestPowerButton
{
  gchar *dir;
  GuestPowerPressed pressed;
  gpointer user_data;
  GHashTable *devices; /* path -> Device */
  GHashTable *pending; /* path -> Pending: not there yet */
};

typedef struct
{
  GuestPowerButton *owner;
  gchar *path;
  gint fd;
  guint watch_id;
} Device;

typedef struct
{
  GuestPowerButton *owner;
  gchar *path;
  guint attempts;
  guint source_id;
} Pending;

static void
device_free (Device *device)
{
  g_clear_handle_id (&device->watch_id, g_source_remove);
  close (device->fd);
  g_free (device->path);
  g_free (device);
}

static void
pending_free (Pending *pending)
{
  g_clear_handle_id (&pending->source_id, g_source_remove);
  g_free (pending->path);
  g_free (pending);
}

gboolean
guest_evdev_name_is_power_button (const gchar *buffer, gsize buffer_size, gint result)
{
  /* result counts the bytes written, the NUL included, and is cut to the
   * buffer: a name without its NUL in there is not one we know. */
  if (result <= 0 || (gsize) result > buffer_size || memchr (buffer, '\0', result) == NULL)
    return FALSE;
  return strcmp (buffer, GUEST_POWER_BUTTON_NAME) == 0;
}

gint
guest_evdev_count_power_presses (const guint8 *data, gsize length)
{
  gint presses = 0;

  if (length % sizeof (struct input_event) != 0)
    return -1;
  for (gsize offset = 0; offset < length; offset += sizeof (struct input_event))
    {
      struct input_event event;

      /* Copied out: data need not be aligned for struct input_event. */
      memcpy (&event, data + offset, sizeof event);
      /* 1 is the press; 0 the release, 2 autorepeat. */
      if (event.type == EV_KEY && event.code == KEY_POWER && event.value == 1)
        presses++;
    }
  return presses;
}

static gboolean
on_readable (gint fd, GIOCondition condition, gpointer user_data)
{
  Device *device = user_data;
  GuestPowerButton *owner = device->owner;
  struct input_event events[READ_EVENTS];
  gssize n = read (fd, events, sizeof events);
  gint presses;

  if (n < 0 && (errno == EAGAIN || errno == EINTR))
    return G_SOURCE_CONTINUE;
  if (n <= 0)
    {
      /* ENODEV: the device went away. */
      guest_log ("power button %s: %s; no longer watched", device->path,
                 n == 0 ? "end of file" : g_strerror (errno));
      device->watch_id = 0;
      g_hash_table_remove (owner->devices, device->path);
      return G_SOURCE_REMOVE;
    }
  presses = guest_evdev_count_power_presses ((const guint8 *) events, n);
  if (presses < 0)
    {
      guest_log ("power button %s: a read of %zd bytes is not whole input events; ignored",
                 device->path, n);
      return G_SOURCE_CONTINUE;
    }
  if (presses > 0)
    owner->pressed (device->path, owner->user_data);
  return G_SOURCE_CONTINUE;
}

void
guest_power_button_watch_fd (GuestPowerButton *self, gint fd, const gchar *path)
{
  Device *device = g_new0 (Device, 1);

  device->owner = self;
  device->path = g_strdup (path);
  device->fd = fd;
  device->watch_id = g_unix_fd_add (fd, G_IO_IN | G_IO_ERR | G_IO_HUP, on_readable, device);
  g_hash_table_replace (self->devices, device->path, device);
  guest_log ("power button: watching %s", path);
}

/* Opens path and watches it if it is a power button. FALSE (errno set)
 * when it cannot be opened. */
static gboolean
try_open (GuestPowerButton *self, const gchar *path)
{
  gchar name[256] = { 0 };
  gint result;
  gint fd;

  fd = open (path, O_RDONLY | O_NONBLOCK | O_CLOEXEC);
  if (fd < 0)
    return FALSE;
  result = ioctl (fd, EVIOCGNAME (sizeof name), name);
  if (!guest_evdev_name_is_power_button (name, sizeof name, result))
    {
      guest_debug ("%s is not a power button", path);
      close (fd);
      return TRUE;
    }
  guest_power_button_watch_fd (self, fd, path);
  return TRUE;
}

static gboolean
retry_open (gpointer user_data)
{
  Pending *pending = user_data;
  GuestPowerButton *self = pending->owner;

  if (try_open (self, pending->path))
    {
      pending->source_id = 0;
      g_hash_table_remove (self->pending, pending->path);
      return G_SOURCE_REMOVE;
    }
  if (errno != ENOENT || ++pending->attempts >= RETRIES)
    {
      guest_log ("power button: cannot open %s: %s", pending->path, g_strerror (errno));
      pending->source_id = 0;
      g_hash_table_remove (self->pending, pending->path);
      return G_SOURCE_REMOVE;
    }
  return G_SOURCE_CONTINUE;
}

void
guest_power_button_add_node (GuestPowerButton *self, const gchar *node)
{
  g_autofree gchar *path = g_build_filename (self->dir, node, NULL);
  Pending *pending;

  if (g_hash_table_contains (self->devices, path) || g_hash_table_contains (self->pending, path))
    return;
  if (try_open (self, path))
    return;
  if (errno != ENOENT)
    {
      guest_log ("power button: cannot open %s: %s", path, g_strerror (errno));
      return;
    }
  pending = g_new0 (Pending, 1);
  pending->owner = self;
  pending->path = g_steal_pointer (&path);
  pending->source_id = g_timeout_add (RETRY_MS, retry_open, pending);
  g_hash_table_replace (self->pending, pending->path, pending);
}

void
guest_power_button_scan (GuestPowerButton *self)
{
  g_autoptr (GError) error = NULL;
  g_autoptr (GDir) dir = g_dir_open (self->dir, 0, &error);
  const gchar *name;

  if (dir == NULL)
    {
      if (g_error_matches (error, G_FILE_ERROR, G_FILE_ERROR_NOENT))
        guest_log ("power button: no %s yet; watching for devices added later", self->dir);
      else
        guest_log ("power button: %s; watching for devices added later", error->message);
      return;
    }
  while ((name = g_dir_read_name (dir)) != NULL)
    if (guest_is_event_node (name))
      guest_power_button_add_node (self, name);
  if (g_hash_table_size (self->devices) == 0)
    guest_log ("power button: none in %s yet; watching for devices added later", self->dir);
}

GuestPowerButton *
guest_power_button_new (const gchar *dir, GuestPowerPressed pressed, gpointer user_data)
{
  GuestPowerButton *self = g_new0 (GuestPowerButton, 1);

  self->dir = g_strdup (dir);
  self->pressed = pressed;
  self->user_data = user_data;
  self->devices
      = g_hash_table_new_full (g_str_hash, g_str_equal, NULL, (GDestroyNotify) device_free);
  self->pending
      = g_hash_table_new_full (g_str_hash, g_str_equal, NULL, (GDestroyNotify) pending_free);
  return self;
}

guint
guest_power_button_get_n_watched (GuestPowerButton *self)
{
  return g_hash_table_size (self->devices);
}

void
guest_power_button_free (GuestPowerButton *self)
{
  g_hash_table_unref (self->devices);
  g_hash_table_unref (self->pending);
  g_free (self->dir);
  g_free (self);
}
