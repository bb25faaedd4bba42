/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include <string.h>

#include "guest-text.h"

#define REPLACEMENT 0xFFFD

gchar *
guest_text_make_printable (const gchar *text)
{
  g_autofree gchar *valid = g_utf8_make_valid (text, -1);
  GString *printable = g_string_sized_new (strlen (valid));

  for (const gchar *p = valid; *p != '\0'; p = g_utf8_next_char (p))
    {
      /* C0, DEL and C1: nothing a name should carry into a log or a UI. */
      if (g_unichar_iscntrl (g_utf8_get_char (p)))
        g_string_append_unichar (printable, REPLACEMENT);
      else
        g_string_append_len (printable, p, g_utf8_next_char (p) - p);
    }
  return g_string_free (printable, FALSE);
}
