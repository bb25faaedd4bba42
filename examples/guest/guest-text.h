/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

#include <glib.h>

G_BEGIN_DECLS

/* A device's name as the kernel has it (from /proc or a uevent), made fit
 * to go on to other domains in JSON: what is not UTF-8 and every control
 * character become U+FFFD. A device picks its own name: an odd one must
 * not hide the device, let alone the others. */
gchar *guest_text_make_printable (const gchar *text);

G_END_DECLS
