/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <glib-unix.h>
#include <libevdev/libevdev.h>

#include "dhf-hotkey-private.h"

/* The hotkey reader: one Device per configured path, each with its own
 * matcher (a key held on one keyboard does not block a combo typed on
 * another). Devices are never grabbed, so every key still reaches the
 * domain that has the keyboard; dhfd only watches. */

#define REOPEN_INTERVAL_MS 2000
/* Records taken per wakeup, from a plain stream or through libevdev, so
 * that a writer (or a device) that never pauses cannot keep the main loop
 * to itself. */
#define RAW_BATCH 64

typedef struct
{
  DhfHotkeys *owner; /* not a reference: the owner frees its devices */
  gchar *path;
  gint fd;                /* -1 while closed */
  struct libevdev *evdev; /* NULL for a plain stream */
  gboolean regular_file;  /* a recording: read once, not reopened */
  GSource *watch;         /* while open */
  GSource *reopen;        /* while waiting to open again */
  DhfHotkeyMatcher *matcher;
  /* While open: what it is, so that a second path to it is not read too. */
  gboolean have_stat;
  struct stat st;
  /* A record split across reads of a plain stream. */
  guint8 partial[sizeof (struct input_event)];
  gsize n_partial;
  /* The last problem logged, so that a path that stays missing (or keeps
   * failing the same way) is logged once, not every 2 s. */
  gchar *last_problem;
} Device;

struct _DhfHotkeys
{
  GObject parent_instance;

  GPtrArray *devices; /* Device */
  GMainContext *context;
  gboolean started;
};

enum
{
  SIGNAL_ACTIVATED,
  N_SIGNALS
};
static guint signals[N_SIGNALS];

G_DEFINE_TYPE (DhfHotkeys, dhf_hotkeys, G_TYPE_OBJECT)

static void device_open (Device *device);

/* Logs a problem unless it is the one logged last for this device. */
static void
device_log_problem (Device *device, GLogLevelFlags level, const gchar *problem)
{
  if (g_strcmp0 (device->last_problem, problem) == 0)
    return;
  g_free (device->last_problem);
  device->last_problem = g_strdup (problem);
  g_log_structured (G_LOG_DOMAIN, level, "MESSAGE", "hotkeys: %s", problem);
}

static gboolean
on_reopen (gpointer user_data)
{
  Device *device = user_data;

  g_clear_pointer (&device->reopen, g_source_unref);
  device_open (device);
  return G_SOURCE_REMOVE;
}

static void
device_schedule_reopen (Device *device)
{
  g_return_if_fail (device->reopen == NULL);
  device->reopen = g_timeout_source_new (REOPEN_INTERVAL_MS);
  g_source_set_static_name (device->reopen, "[dhf] hotkeys reopen");
  g_source_set_callback (device->reopen, on_reopen, device, NULL);
  g_source_attach (device->reopen, device->owner->context);
}

/* Closes the device and forgets its keys: whatever happens while it is
 * closed is not seen, so nothing it held can be trusted. */
static void
device_close (Device *device)
{
  if (device->watch != NULL)
    {
      g_source_destroy (device->watch);
      g_clear_pointer (&device->watch, g_source_unref);
    }
  g_clear_pointer (&device->evdev, libevdev_free);
  if (device->fd >= 0)
    {
      close (device->fd);
      device->fd = -1;
    }
  device->have_stat = FALSE;
  device->n_partial = 0;
  dhf_hotkey_matcher_reset (device->matcher);
}

static void
device_lost (Device *device, GLogLevelFlags level, const gchar *problem)
{
  gboolean again = !device->regular_file;

  device_close (device);
  if (again)
    {
      g_autofree gchar *message = g_strdup_printf (
          "%s: %s; opening it again every %u s", device->path, problem, REOPEN_INTERVAL_MS / 1000);

      device_log_problem (device, level, message);
      device_schedule_reopen (device);
    }
  else
    {
      g_autofree gchar *message
          = g_strdup_printf ("%s: %s; a recording is read once", device->path, problem);

      device_log_problem (device, level, message);
    }
}

static void
device_handle_event (Device *device, const struct input_event *event)
{
  DhfHotkeys *self = device->owner;
  const gchar *fired = dhf_hotkey_matcher_feed (device->matcher, event);
  g_autofree gchar *target = NULL;
  g_autoptr (GArray) held = NULL;

  if (fired == NULL)
    return;
  /* Copied: a handler may rebind, and the string is the matcher's. */
  target = g_strdup (fired);
  held = dhf_hotkey_matcher_dup_held (device->matcher);
  g_debug ("hotkeys: %s: combo for %s", device->path, target);
  g_signal_emit (self, signals[SIGNAL_ACTIVATED], 0, target, held);
}

/* After a resync (or at open), the keys libevdev knows to be down are the
 * held set; they fire nothing. */
static void
device_take_evdev_state (Device *device)
{
  dhf_hotkey_matcher_reset (device->matcher);
  for (guint code = 0; code < KEY_CNT; code++)
    if (libevdev_has_event_code (device->evdev, EV_KEY, code)
        && libevdev_get_event_value (device->evdev, EV_KEY, code) != 0)
      dhf_hotkey_matcher_set_held (device->matcher, code, TRUE);
}

/* Reads what libevdev has, at most RAW_BATCH events. Returns FALSE when
 * the device was lost. */
static gboolean
device_read_evdev (Device *device, GIOCondition condition)
{
  guint handled = 0;

  g_source_set_ready_time (device->watch, -1);
  for (;;)
    {
      struct input_event event;
      gint rc;

      if (handled == RAW_BATCH)
        {
          /* The rest may already be in libevdev's queue, of which the fd
           * says nothing: back on the next iteration of the loop, after
           * the other sources had their turn. */
          if (libevdev_has_event_pending (device->evdev) > 0)
            g_source_set_ready_time (device->watch, 0);
          return TRUE;
        }
      rc = libevdev_next_event (device->evdev, LIBEVDEV_READ_FLAG_NORMAL, &event);
      if (rc == LIBEVDEV_READ_STATUS_SUCCESS)
        {
          handled++;
          device_handle_event (device, &event);
          continue;
        }
      if (rc == LIBEVDEV_READ_STATUS_SYNC)
        {
          /* The kernel dropped events: libevdev has read the device's
           * state again; drain the differences it made up and take the
           * state as it is, firing nothing. */
          do
            rc = libevdev_next_event (device->evdev, LIBEVDEV_READ_FLAG_SYNC, &event);
          while (rc == LIBEVDEV_READ_STATUS_SYNC);
          if (rc != -EAGAIN)
            {
              g_autofree gchar *problem = g_strdup_printf (
                  "reading the state after dropped events failed: %s", g_strerror (-rc));

              device_lost (device, G_LOG_LEVEL_WARNING, problem);
              return FALSE;
            }
          device_take_evdev_state (device);
          continue;
        }
      /* libevdev reads an end of file as "nothing yet": a hang-up with
       * nothing left to read is the end (evdev hangs up only when the
       * device is gone), or the loop would spin on it. */
      if (rc == -EAGAIN && (condition & (G_IO_HUP | G_IO_ERR | G_IO_NVAL)) != 0)
        {
          device_lost (device, G_LOG_LEVEL_MESSAGE, "the device hung up");
          return FALSE;
        }
      if (rc == -EAGAIN)
        return TRUE;
      if (rc == -EINTR)
        continue;
      {
        /* ENODEV: unplugged, the usual way a keyboard goes. */
        g_autofree gchar *problem = g_strdup_printf ("reading failed: %s", g_strerror (-rc));

        device_lost (device, rc == -ENODEV ? G_LOG_LEVEL_MESSAGE : G_LOG_LEVEL_WARNING, problem);
        return FALSE;
      }
    }
}

/* Reads one batch of input_event records from a plain stream, keeping a
 * record split across reads for the next one. Returns FALSE when the
 * stream ended or failed. */
static gboolean
device_read_raw (Device *device)
{
  struct input_event events[RAW_BATCH];
  gsize record = sizeof (struct input_event);
  gssize n;
  gsize total;
  gsize count;

  memcpy (events, device->partial, device->n_partial);
  do
    n = read (device->fd, (guint8 *) events + device->n_partial, sizeof events - device->n_partial);
  while (n < 0 && errno == EINTR);
  if (n < 0 && errno == EAGAIN)
    return TRUE;
  if (n < 0)
    {
      g_autofree gchar *problem = g_strdup_printf ("reading failed: %s", g_strerror (errno));

      device_lost (device, G_LOG_LEVEL_WARNING, problem);
      return FALSE;
    }
  if (n == 0)
    {
      g_autofree gchar *problem
          = device->n_partial != 0
                ? g_strdup_printf ("end of stream inside a record (%" G_GSIZE_FORMAT
                                   " of %" G_GSIZE_FORMAT " bytes)",
                                   device->n_partial, record)
                : g_strdup ("end of stream");

      device_lost (device, G_LOG_LEVEL_MESSAGE, problem);
      return FALSE;
    }

  g_clear_pointer (&device->last_problem, g_free);
  total = device->n_partial + (gsize) n;
  count = total / record;
  device->n_partial = total % record;
  memcpy (device->partial, (guint8 *) events + count * record, device->n_partial);
  for (gsize i = 0; i < count; i++)
    device_handle_event (device, &events[i]);
  return TRUE;
}

static gboolean
on_readable (gint fd, GIOCondition condition, gpointer user_data)
{
  Device *device = user_data;
  /* A handler of "activated" may drop the last reference: the devices
   * must outlive this dispatch. */
  DhfHotkeys *self = g_object_ref (device->owner);
  gboolean alive;

  if (device->evdev != NULL)
    alive = device_read_evdev (device, condition);
  else
    alive = device_read_raw (device);
  if (alive && device->evdev != NULL)
    g_clear_pointer (&device->last_problem, g_free);
  g_object_unref (self);
  /* device_lost() destroyed the watch already; say so to GLib as well. */
  return alive ? G_SOURCE_CONTINUE : G_SOURCE_REMOVE;
}

/* Two paths to one keyboard (/dev/input/by-id/... and /dev/input/eventN)
 * would fire every combo twice: a device node is its device number, a
 * FIFO or a file its inode. */
static Device *
device_find_open (Device *device, const struct stat *st)
{
  GPtrArray *devices = device->owner->devices;

  for (guint i = 0; i < devices->len; i++)
    {
      Device *other = g_ptr_array_index (devices, i);

      if (other == device || other->fd < 0 || !other->have_stat)
        continue;
      if (S_ISCHR (st->st_mode) || S_ISCHR (other->st.st_mode))
        {
          if (S_ISCHR (st->st_mode) && S_ISCHR (other->st.st_mode)
              && st->st_rdev == other->st.st_rdev)
            return other;
        }
      else if (st->st_dev == other->st.st_dev && st->st_ino == other->st.st_ino)
        return other;
    }
  return NULL;
}

static void
device_open (Device *device)
{
  Device *other;
  gboolean have_stat;
  g_autofree gchar *problem = NULL;
  struct libevdev *evdev = NULL;
  struct stat st;
  gint fd;
  gint rc;

  fd = open (device->path, O_RDONLY | O_NONBLOCK | O_CLOEXEC);
  if (fd < 0)
    {
      gint saved_errno = errno;

      if (saved_errno == ENOENT)
        problem = g_strdup_printf ("%s does not exist (yet); looking for it every %u s",
                                   device->path, REOPEN_INTERVAL_MS / 1000);
      else
        problem = g_strdup_printf ("cannot open %s: %s; trying again every %u s", device->path,
                                   g_strerror (saved_errno), REOPEN_INTERVAL_MS / 1000);
      device_log_problem (device, saved_errno == ENOENT ? G_LOG_LEVEL_MESSAGE : G_LOG_LEVEL_WARNING,
                          problem);
      device_schedule_reopen (device);
      return;
    }

  have_stat = fstat (fd, &st) == 0;
  if (!have_stat)
    memset (&st, 0, sizeof st);
  if (S_ISDIR (st.st_mode))
    {
      problem = g_strdup_printf ("%s is a directory, not a keyboard; trying again every %u s",
                                 device->path, REOPEN_INTERVAL_MS / 1000);
      close (fd);
      device_log_problem (device, G_LOG_LEVEL_WARNING, problem);
      device_schedule_reopen (device);
      return;
    }

  other = have_stat ? device_find_open (device, &st) : NULL;
  if (other != NULL)
    {
      /* Looked at again: when the other path goes (the keyboard was
       * unplugged), this one may lead to it when it comes back. */
      if (S_ISREG (st.st_mode))
        problem = g_strdup_printf ("%s is the same file as %s, which is read already; not reading "
                                   "it twice",
                                   device->path, other->path);
      else
        problem = g_strdup_printf ("%s is the same device as %s, which is read already; not "
                                   "reading it twice (looking again every %u s)",
                                   device->path, other->path, REOPEN_INTERVAL_MS / 1000);
      close (fd);
      device_log_problem (device, G_LOG_LEVEL_MESSAGE, problem);
      if (!S_ISREG (st.st_mode))
        device_schedule_reopen (device);
      return;
    }

  /* Never EVIOCGRAB: the keys must still reach their owner. */
  rc = libevdev_new_from_fd (fd, &evdev);
  if (rc < 0 && rc != -ENOTTY && rc != -EINVAL)
    {
      problem = g_strdup_printf ("cannot read %s as an input device: %s; trying again every %u s",
                                 device->path, g_strerror (-rc), REOPEN_INTERVAL_MS / 1000);
      close (fd);
      device_log_problem (device, G_LOG_LEVEL_WARNING, problem);
      device_schedule_reopen (device);
      return;
    }

  device->fd = fd;
  device->evdev = rc == 0 ? evdev : NULL;
  device->regular_file = S_ISREG (st.st_mode);
  device->have_stat = have_stat;
  device->st = st;
  device->n_partial = 0;
  dhf_hotkey_matcher_reset (device->matcher);
  if (device->evdev != NULL)
    {
      /* Keys already down when we start (the user holds Ctrl) count. */
      device_take_evdev_state (device);
      g_message ("hotkeys: reading %s (%s)", device->path,
                 libevdev_get_name (device->evdev) != NULL ? libevdev_get_name (device->evdev)
                                                           : "unnamed device");
    }
  else
    g_message ("hotkeys: reading %s (not an evdev device: a stream of input_event records)",
               device->path);

  device->watch = g_unix_fd_source_new (fd, G_IO_IN | G_IO_HUP | G_IO_ERR);
  g_source_set_static_name (device->watch, "[dhf] hotkeys device");
  g_source_set_callback (device->watch, G_SOURCE_FUNC (on_readable), device, NULL);
  g_source_attach (device->watch, device->owner->context);
}

static void
device_free (gpointer data)
{
  Device *device = data;

  device_close (device);
  if (device->reopen != NULL)
    {
      g_source_destroy (device->reopen);
      g_clear_pointer (&device->reopen, g_source_unref);
    }
  dhf_hotkey_matcher_free (device->matcher);
  g_free (device->last_problem);
  g_free (device->path);
  g_free (device);
}

static void
dhf_hotkeys_dispose (GObject *object)
{
  DhfHotkeys *self = DHF_HOTKEYS (object);

  /* The sources point at the devices: they go first. */
  g_ptr_array_set_size (self->devices, 0);
  G_OBJECT_CLASS (dhf_hotkeys_parent_class)->dispose (object);
}

static void
dhf_hotkeys_finalize (GObject *object)
{
  DhfHotkeys *self = DHF_HOTKEYS (object);

  g_ptr_array_unref (self->devices);
  g_clear_pointer (&self->context, g_main_context_unref);
  G_OBJECT_CLASS (dhf_hotkeys_parent_class)->finalize (object);
}

static void
dhf_hotkeys_class_init (DhfHotkeysClass *klass)
{
  GObjectClass *object_class = G_OBJECT_CLASS (klass);

  object_class->dispose = dhf_hotkeys_dispose;
  object_class->finalize = dhf_hotkeys_finalize;

  /* activated: (target, GArray of guint key codes held when it fired) */
  signals[SIGNAL_ACTIVATED] = g_signal_new (
      "activated", G_TYPE_FROM_CLASS (klass), G_SIGNAL_RUN_LAST, 0, NULL, NULL, NULL, G_TYPE_NONE,
      2, G_TYPE_STRING | G_SIGNAL_TYPE_STATIC_SCOPE, G_TYPE_ARRAY | G_SIGNAL_TYPE_STATIC_SCOPE);
}

static void
dhf_hotkeys_init (DhfHotkeys *self)
{
  self->devices = g_ptr_array_new_with_free_func (device_free);
}

DhfHotkeys *
dhf_hotkeys_new (const gchar *const *paths)
{
  DhfHotkeys *self = g_object_new (DHF_TYPE_HOTKEYS, NULL);

  for (guint i = 0; paths != NULL && paths[i] != NULL; i++)
    {
      Device *device = g_new0 (Device, 1);

      device->owner = self;
      device->path = g_strdup (paths[i]);
      device->fd = -1;
      device->matcher = dhf_hotkey_matcher_new ();
      g_ptr_array_add (self->devices, device);
    }
  return self;
}

void
dhf_hotkeys_set_bindings (DhfHotkeys *self, DhfHotkeyMatcher *matcher)
{
  g_return_if_fail (DHF_IS_HOTKEYS (self));
  g_return_if_fail (matcher != NULL);

  for (guint i = 0; i < self->devices->len; i++)
    {
      Device *device = g_ptr_array_index (self->devices, i);

      dhf_hotkey_matcher_copy_bindings (device->matcher, matcher);
    }
}

void
dhf_hotkeys_start (DhfHotkeys *self)
{
  g_return_if_fail (DHF_IS_HOTKEYS (self));
  g_return_if_fail (!self->started);

  self->started = TRUE;
  self->context = g_main_context_ref_thread_default ();
  for (guint i = 0; i < self->devices->len; i++)
    device_open (g_ptr_array_index (self->devices, i));
}

guint
dhf_hotkeys_get_n_open (DhfHotkeys *self)
{
  guint n = 0;

  g_return_val_if_fail (DHF_IS_HOTKEYS (self), 0);
  for (guint i = 0; i < self->devices->len; i++)
    if (((Device *) g_ptr_array_index (self->devices, i))->fd >= 0)
      n++;
  return n;
}
