/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

#include <gio/gio.h>

G_BEGIN_DECLS

/* Small helpers the test programs share. */

/* The dhfd under test: $DHFD, set by meson. */
const gchar *dhf_test_dhfd_path (void);
/* Writes text to dir/name, creating dir (and parents) as needed. */
void dhf_test_write_file (const gchar *dir, const gchar *name, const gchar *text);
/* Removes a temporary tree; symbolic links are unlinked, never followed. */
void dhf_test_remove_tree (const gchar *path);
/* Starts a private dbus-daemon (*bus) and returns a connection to it. */
GDBusConnection *dhf_test_bus_up (GTestDBus **bus);
/* Whether org.dhf.Framework1 has an owner on conn's bus. */
gboolean dhf_test_dhfd_owns_name (GDBusConnection *conn);

G_END_DECLS
