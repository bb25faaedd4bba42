/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include <stdio.h>

#include "guest-log.h"

static gboolean verbose;

/* A vprintf: the format is checked at the callers. */
static void log_line (const gchar *format, va_list args) G_GNUC_PRINTF (1, 0);

static void
log_line (const gchar *format, va_list args)
{
  g_autofree gchar *text = g_strdup_vprintf (format, args);

  /* One write per line, so that lines of the I/O threads never mix. */
  g_printerr ("dhf-example-guest: %s\n", text);
}

void
guest_log (const gchar *format, ...)
{
  va_list args;

  va_start (args, format);
  log_line (format, args);
  va_end (args);
}

void
guest_debug (const gchar *format, ...)
{
  va_list args;

  if (!g_atomic_int_get (&verbose))
    return;
  va_start (args, format);
  log_line (format, args);
  va_end (args);
}

void
guest_log_set_verbose (gboolean value)
{
  g_atomic_int_set (&verbose, value);
}
