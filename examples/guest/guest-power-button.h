/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

#include <gio/gio.h>

G_BEGIN_DECLS

/* The ACPI power button, read from evdev with plain read()s of struct
 * input_event (the guest has no libevdev): every /dev/input/eventN whose
 * name (EVIOCGNAME) is "Power Button". A guest often has two (the ACPI
 * fixed button and the PNP0C0C device); all are watched. */

#define GUEST_POWER_BUTTON_NAME "Power Button"

/* A press (KEY_POWER down) on device (its path). */
typedef void (*GuestPowerPressed) (const gchar *device, gpointer user_data);

typedef struct _GuestPowerButton GuestPowerButton;

/* Watches nothing yet; dir is where the nodes are (/dev/input). */
GuestPowerButton *guest_power_button_new (const gchar *dir, GuestPowerPressed pressed,
                                          gpointer user_data);
/* Opens every eventN in dir now. */
void guest_power_button_scan (GuestPowerButton *self);
/* A node ("event3") the kernel just added. With devtmpfs it appears by
 * itself, possibly a moment after the uevent: missing, it is tried again
 * for a while. */
void guest_power_button_add_node (GuestPowerButton *self, const gchar *node);
/* Watches fd (taken) as a power button, without asking its name: for
 * tests, which feed recorded events through a pipe. */
void guest_power_button_watch_fd (GuestPowerButton *self, gint fd, const gchar *path);
/* How many devices are watched. */
guint guest_power_button_get_n_watched (GuestPowerButton *self);
void guest_power_button_free (GuestPowerButton *self);
G_DEFINE_AUTOPTR_CLEANUP_FUNC (GuestPowerButton, guest_power_button_free)

/* Whether EVIOCGNAME's answer (result: its return value, buffer: what it
 * wrote) names a power button. */
gboolean guest_evdev_name_is_power_button (const gchar *buffer, gsize buffer_size, gint result);
/* How many KEY_POWER presses length bytes of struct input_event hold; -1
 * when length is not a whole number of events (evdev never returns a
 * part of one: the data is not an event stream). */
gint guest_evdev_count_power_presses (const guint8 *data, gsize length);

G_END_DECLS
