/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include "config.h"

#include <stdint.h>
#include <string.h>

#include "dhf-device-monitor-private.h"

/* libFuzzer target: dhf_uevent_parse() on arbitrary datagrams. Netlink
 * hands dhfd whatever was sent to the uevent group; a parsed event's
 * strings must lie inside the buffer and be NUL-terminated there. */

int LLVMFuzzerTestOneInput (const uint8_t *data, size_t size);

static void
check_inside (const gchar *field, const gchar *buffer, gsize length)
{
  if (field == NULL)
    return;
  g_assert_true (field >= buffer && field < buffer + length);
  g_assert_nonnull (memchr (field, '\0', (gsize) (buffer + length - field)));
}

int
LLVMFuzzerTestOneInput (const uint8_t *data, size_t size)
{
  DhfUevent event;
  g_autofree gchar *buffer = NULL;

  if (size > DHF_UEVENT_MAX)
    return 0;
  /* An exact-size copy, so that ASan sees any read past the datagram. */
  buffer = g_malloc (size > 0 ? size : 1);
  if (size > 0)
    memcpy (buffer, data, size);
  if (dhf_uevent_parse (buffer, size, &event))
    {
      g_assert_nonnull (event.action);
      g_assert_nonnull (event.devpath);
      g_assert_nonnull (event.subsystem);
      check_inside (event.action, buffer, size);
      check_inside (event.devpath, buffer, size);
      check_inside (event.subsystem, buffer, size);
      check_inside (event.devtype, buffer, size);
      (void) dhf_uevent_is_relevant (&event);
    }
  else
    {
      g_assert_null (event.action);
      g_assert_null (event.devpath);
      g_assert_null (event.subsystem);
      g_assert_null (event.devtype);
    }
  return 0;
}
