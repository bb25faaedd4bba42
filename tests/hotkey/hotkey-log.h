/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

#include "dhf-test-util.h"

G_BEGIN_DECLS

/* The hotkey tests' names for the log capture of dhf-test-util.h: they
 * record dhfd's warnings and messages and look at them. */

/* Installs the writer; call before g_test_init(). */
static inline void
hotkey_log_init (void)
{
  dhf_test_log_init ();
}

static inline guint
hotkey_log_count (GLogLevelFlags level, const gchar *pattern)
{
  return dhf_test_log_count (level, pattern);
}

static inline void
hotkey_log_assert_warnings (const gchar *const *patterns)
{
  dhf_test_log_assert_warnings (patterns);
}

static inline void
hotkey_log_clear (void)
{
  dhf_test_log_clear ();
}

G_END_DECLS
