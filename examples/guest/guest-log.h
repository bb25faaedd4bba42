/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

#include <glib.h>

G_BEGIN_DECLS

/* One line per notable thing on stderr, "dhf-example-guest: ...": in a
 * guest that is the serial console, which the host keeps in a log file. */
void guest_log (const gchar *format, ...) G_GNUC_PRINTF (1, 2);
/* The same, only with --verbose (every call, every retry). */
void guest_debug (const gchar *format, ...) G_GNUC_PRINTF (1, 2);
void guest_log_set_verbose (gboolean verbose);

G_END_DECLS
