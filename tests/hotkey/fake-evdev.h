/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

#include <glib.h>

G_BEGIN_DECLS

/* A keyboard that libevdev takes for an evdev device, made of a FIFO: the
 * test program defines ioctl(), which answers the evdev requests for the
 * FIFOs registered here (by device and inode, whoever opened them) and
 * passes every other call to the kernel. What the reader reads is what the
 * test writes into the FIFO; the key state the "kernel" reports
 * (EVIOCGKEY, at open and after SYN_DROPPED) is what the test sets. There
 * is no /dev/uinput here to make a real one. */

/* Makes path answer as an evdev keyboard; returns its index. */
guint fake_evdev_add (const gchar *path);
/* The key state EVIOCGKEY reports. */
void fake_evdev_set_key (guint index, guint code, gboolean down);
/* How many EVIOCGRAB requests any fake device saw. */
guint fake_evdev_get_n_grabs (void);
/* Forgets every fake device. */
void fake_evdev_clear (void);

G_END_DECLS
