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
/* A round trip to dhfd over conn: every signal it sent before its reply
 * has then been received, and running the main context until it is idle
 * delivers them (to proxies and subscriptions). */
void dhf_test_sync_with_dhfd (GDBusConnection *conn);

/* dhfd's code logs with GLib's structured logging, which
 * g_test_expect_message() does not see: a test records the warnings and
 * messages with this writer (each also a g_test_message()) and looks at
 * them; other levels go to GLib's default writer. */

/* Installs the writer; call before g_test_init(). */
void dhf_test_log_init (void);
/* How many messages of level (G_LOG_LEVEL_WARNING or _MESSAGE) recorded
 * since the last dhf_test_log_clear() match pattern
 * (g_pattern_match_simple). */
guint dhf_test_log_count (GLogLevelFlags level, const gchar *pattern);
/* Asserts that the warnings since the last clear are exactly patterns
 * (NULL-terminated; NULL for none), in order; then clears. */
void dhf_test_log_assert_warnings (const gchar *const *patterns);
void dhf_test_log_clear (void);

G_END_DECLS
