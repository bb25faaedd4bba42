/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

#include <gio/gio.h>

#include "guest-uevent.h"

G_BEGIN_DECLS

/* Tells of input devices coming and going, from the kernel's uevents
 * (NETLINK_KOBJECT_UEVENT): the guest has no udev to ask. Callbacks run
 * in the thread-default main context of the caller of _new(). */
typedef struct
{
  /* An input device (inputN) was added or removed ("add", "remove"). */
  void (*device_changed) (const GuestUevent *event, gpointer user_data);
  /* An evdev node (/dev/input/eventN) was added: node is "eventN". */
  void (*event_node_added) (const gchar *node, gpointer user_data);
} GuestInputWatcherFuncs;

typedef struct _GuestInputWatcher GuestInputWatcher;

/* NULL with an error when the uevent socket cannot be had. */
GuestInputWatcher *guest_input_watcher_new (const GuestInputWatcherFuncs *funcs, gpointer user_data,
                                            GError **error);
/* Reads datagrams from fd (taken), from any sender: for tests, which
 * feed it through a socketpair. */
GuestInputWatcher *guest_input_watcher_new_for_fd (gint fd, const GuestInputWatcherFuncs *funcs,
                                                   gpointer user_data);
void guest_input_watcher_free (GuestInputWatcher *self);
G_DEFINE_AUTOPTR_CLEANUP_FUNC (GuestInputWatcher, guest_input_watcher_free)

G_END_DECLS
