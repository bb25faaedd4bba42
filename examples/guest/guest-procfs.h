/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

#include <gio/gio.h>

G_BEGIN_DECLS

/* What the guest reads from /proc, parsed strictly: text that is not what
 * the kernel writes is refused whole (G_IO_ERROR_INVALID_DATA, naming the
 * line), never half used. The parsers take text so that tests can drive
 * them. */

/* KEY_A in <linux/input-event-codes.h>: a device that has it is a
 * keyboard, not just a few buttons (power, volume). */
#define GUEST_KEY_A 30

typedef struct
{
  gchar *name;       /* N: Name="..." (may be empty), made printable */
  GStrv handlers;    /* H: Handlers=kbd event2 ... */
  gboolean keyboard; /* B: KEY= has KEY_A */
} GuestInputDevice;

void guest_input_device_free (GuestInputDevice *device);
G_DEFINE_AUTOPTR_CLEANUP_FUNC (GuestInputDevice, guest_input_device_free)

/* The devices of /proc/bus/input/devices text (length bytes), in order:
 * a GPtrArray of GuestInputDevice. */
GPtrArray *guest_procfs_parse_input_devices (const gchar *text, gsize length, GError **error);
/* Reads and parses path (/proc/bus/input/devices); a kernel without input
 * support has no such file: no devices. */
GPtrArray *guest_procfs_read_input_devices (const gchar *path, GError **error);

/* The first field of /proc/uptime ("350735.47 234388.90\n") in ms. */
gboolean guest_procfs_parse_uptime (const gchar *text, gsize length, gint64 *uptime_ms,
                                    GError **error);
gboolean guest_procfs_read_uptime (const gchar *path, gint64 *uptime_ms, GError **error);

G_END_DECLS
