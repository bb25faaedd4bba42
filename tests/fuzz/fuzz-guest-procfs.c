/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include "config.h"

#include <stdint.h>
#include <string.h>

#include "guest-procfs.h"

/* libFuzzer target: the example guest's parsers of /proc (examples/guest/)
 * on arbitrary text: guest_procfs_parse_input_devices() and
 * guest_procfs_parse_uptime(). A list they accept goes on to other
 * domains: names UTF-8 without control characters, handlers
 * [A-Za-z0-9_-]. */

int LLVMFuzzerTestOneInput (const uint8_t *data, size_t size);

static void
check_device (const GuestInputDevice *device)
{
  g_assert_nonnull (device->name);
  g_assert_true (g_utf8_validate (device->name, -1, NULL));
  for (const gchar *p = device->name; *p != '\0'; p = g_utf8_next_char (p))
    g_assert_false (g_unichar_iscntrl (g_utf8_get_char (p)));
  g_assert_nonnull (device->handlers);
  for (guint i = 0; device->handlers[i] != NULL; i++)
    {
      g_assert_cmpstr (device->handlers[i], !=, "");
      for (const gchar *p = device->handlers[i]; *p != '\0'; p++)
        g_assert_true (g_ascii_isalnum (*p) || *p == '_' || *p == '-');
    }
}

int
LLVMFuzzerTestOneInput (const uint8_t *data, size_t size)
{
  g_autoptr (GPtrArray) devices = NULL;
  g_autoptr (GError) error = NULL;
  g_autoptr (GError) uptime_error = NULL;
  g_autofree gchar *text = NULL;
  gint64 uptime_ms = -1;

  /* An exact-size copy, so that ASan sees any read past the text. */
  text = g_malloc (size > 0 ? size : 1);
  if (size > 0)
    memcpy (text, data, size);

  devices = guest_procfs_parse_input_devices (text, size, &error);
  if (devices == NULL)
    g_assert_error (error, G_IO_ERROR, G_IO_ERROR_INVALID_DATA);
  else
    {
      g_assert_no_error (error);
      for (guint i = 0; i < devices->len; i++)
        check_device (devices->pdata[i]);
    }

  if (guest_procfs_parse_uptime (text, size, &uptime_ms, &uptime_error))
    g_assert_cmpint (uptime_ms, >=, 0);
  else
    g_assert_error (uptime_error, G_IO_ERROR, G_IO_ERROR_INVALID_DATA);
  return 0;
}
