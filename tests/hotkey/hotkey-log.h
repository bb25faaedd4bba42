/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

#include <glib.h>

G_BEGIN_DECLS

/* dhfd logs with GLib's structured logging, which g_test_expect_message()
 * does not see: the hotkey tests record warnings and messages with a
 * writer of their own and look at them. */

/* Installs the writer; call before g_test_init(). */
void hotkey_log_init (void);
/* How many messages of level (G_LOG_LEVEL_WARNING or _MESSAGE) recorded
 * since the last hotkey_log_clear() match pattern (g_pattern_match_simple). */
guint hotkey_log_count (GLogLevelFlags level, const gchar *pattern);
/* Asserts that the warnings since the last clear are exactly patterns
 * (NULL-terminated; NULL for none), in order; then clears. */
void hotkey_log_assert_warnings (const gchar *const *patterns);
void hotkey_log_clear (void);

G_END_DECLS
