/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include "config.h"

#include <stdint.h>
#include <string.h>

#include "guest-uevent.h"

/* libFuzzer target: guest_uevent_parse() of the example guest
 * (examples/guest/) on arbitrary datagrams. What it accepts goes on to
 * other domains: every string must be UTF-8 without control characters,
 * the device's own NAME included (made printable, not refused). */

int LLVMFuzzerTestOneInput (const uint8_t *data, size_t size);

static void
check_printable (const gchar *text)
{
  if (text == NULL)
    return;
  g_assert_true (g_utf8_validate (text, -1, NULL));
  for (const gchar *p = text; *p != '\0'; p = g_utf8_next_char (p))
    g_assert_false (g_unichar_iscntrl (g_utf8_get_char (p)));
}

int
LLVMFuzzerTestOneInput (const uint8_t *data, size_t size)
{
  g_autoptr (GuestUevent) event = NULL;
  g_autoptr (GError) error = NULL;
  g_autofree gchar *buffer = NULL;
  g_autofree gchar *node = NULL;

  if (size > GUEST_UEVENT_MAX + 1)
    return 0;
  /* An exact-size copy, so that ASan sees any read past the datagram. */
  buffer = g_malloc (size > 0 ? size : 1);
  if (size > 0)
    memcpy (buffer, data, size);
  event = guest_uevent_parse (buffer, size, &error);
  if (event == NULL)
    {
      g_assert_error (error, G_IO_ERROR, G_IO_ERROR_INVALID_DATA);
      return 0;
    }
  g_assert_no_error (error);
  g_assert_nonnull (event->action);
  g_assert_nonnull (event->devpath);
  g_assert_nonnull (event->subsystem);
  g_assert_true (event->devpath[0] == '/');
  check_printable (event->action);
  check_printable (event->devpath);
  check_printable (event->subsystem);
  check_printable (event->devname);
  check_printable (event->name);
  node = guest_uevent_get_event_node (event);
  if (node != NULL)
    {
      /* A name under /dev/input/, never a path. */
      g_assert_true (g_str_has_prefix (node, "event"));
      g_assert_null (strchr (node, '/'));
    }
  if (guest_uevent_is_input_device (event))
    g_assert_cmpstr (event->subsystem, ==, "input");
  return 0;
}
