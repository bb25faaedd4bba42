/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

#include <gio/gio.h>

G_BEGIN_DECLS

/* The kernel's own limit is 2 KiB (UEVENT_BUFFER_SIZE): a longer datagram
 * is not the kernel's. */
#define GUEST_UEVENT_MAX 8192

/* One kernel uevent datagram: "ACTION@DEVPATH\0KEY=VALUE\0...". */
typedef struct
{
  gchar *action;    /* "add", "remove", ... */
  gchar *devpath;   /* "/devices/.../input/input5" */
  gchar *subsystem; /* "input" */
  gchar *devname;   /* DEVNAME ("input/event3"), or NULL */
  gchar *name;      /* NAME without the kernel's quotes, made printable, or NULL */
} GuestUevent;

void guest_uevent_free (GuestUevent *event);
G_DEFINE_AUTOPTR_CLEANUP_FUNC (GuestUevent, guest_uevent_free)

/* Parses one datagram of length bytes; NULL with G_IO_ERROR_INVALID_DATA
 * when it is not a well-formed uevent: no "ACTION@/DEVPATH" header, a
 * field that is not KEY=VALUE, a repeated or missing ACTION or SUBSYSTEM,
 * fields that disagree with the header, an ACTION, DEVPATH, SUBSYSTEM or
 * DEVNAME that is not UTF-8 or has control characters, or a last field
 * without its NUL. NAME, which the device chose, is made printable
 * (guest-text.h) rather than refused. */
GuestUevent *guest_uevent_parse (const gchar *buffer, gsize length, GError **error);

/* Whether event is about an input device itself ("input" subsystem,
 * DEVPATH ending in inputN), not about one of its handlers' nodes
 * (eventN, mouseN, jsN). */
gboolean guest_uevent_is_input_device (const GuestUevent *event);
/* The evdev node an "input" event is about ("event3", for /dev/input/),
 * or NULL when it is about something else. */
gchar *guest_uevent_get_event_node (const GuestUevent *event);

/* Whether the last component of path (or path itself) is an evdev node
 * name: "event" and 1 to 10 digits. */
gboolean guest_is_event_node (const gchar *path);

G_END_DECLS
