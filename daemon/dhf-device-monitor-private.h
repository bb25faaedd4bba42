/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

#include "dhf-device-inventory.h"

G_BEGIN_DECLS

/* Largest uevent datagram read; the kernel's own limit is 2 KiB
 * (UEVENT_BUFFER_SIZE), so anything longer is not the kernel's. */
#define DHF_UEVENT_MAX 8192

/* One kernel uevent ("ACTION@DEVPATH\0KEY=VALUE\0..."). The strings point
 * into the parsed buffer. */
typedef struct
{
  const gchar *action;
  const gchar *devpath;
  const gchar *subsystem;
  const gchar *devtype; /* NULL when the message has none */
} DhfUevent;

/* Parses one datagram of length bytes (at most DHF_UEVENT_MAX). FALSE
 * when it is not a well-formed kernel uevent: no "ACTION@DEVPATH" header,
 * a field that is not KEY=VALUE, a repeated or missing ACTION or
 * SUBSYSTEM, an ACTION that differs from the header's, or a last field
 * without its NUL; *event is then all NULL. */
gboolean dhf_uevent_parse (const gchar *buffer, gsize length, DhfUevent *event);

/* Whether the event can change the inventory: "add", "remove", "bind" or
 * "unbind" of a USB device (not an interface) or of a PCI function. */
gboolean dhf_uevent_is_relevant (const DhfUevent *event);

/* A monitor reading datagrams from fd (which it takes), for tests: unlike
 * dhf_device_monitor_new() it does not insist that each datagram come
 * from the kernel's netlink port. */
DhfDeviceMonitor *dhf_device_monitor_new_for_fd (gint fd);
/* Whether it still reads events (FALSE once its socket failed). */
gboolean dhf_device_monitor_is_watching (DhfDeviceMonitor *self);
/* Whether a change waits for its quiet period before "changed". */
gboolean dhf_device_monitor_is_pending (DhfDeviceMonitor *self);

G_END_DECLS
