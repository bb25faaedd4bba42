/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include "config.h"

#include <stdint.h>
#include <string.h>

#include "dhf-hotkey.h"

/* libFuzzer target: the hotkey matcher fed arbitrary bytes as the raw
 * struct input_event records a keyboard (or whatever claims to be one)
 * produces. Whatever comes, a fired target is one of the bound ones, the
 * held set holds valid key codes only, and a SYN_DROPPED empties it. */

int LLVMFuzzerTestOneInput (const uint8_t *data, size_t size);

static const gchar *const bindings[][2] = {
  { "Ctrl+Alt+Tab", "@next" }, { "Ctrl+Alt+Shift+Tab", "@previous" }, { "Ctrl+Alt+1", "@slot:1" },
  { "Super+F12", "dom0" },     { "Alt+Return", "personal" },
};

static gboolean
is_bound_target (const gchar *target)
{
  for (guint i = 0; i < G_N_ELEMENTS (bindings); i++)
    if (g_str_equal (bindings[i][1], target))
      return TRUE;
  return FALSE;
}

int
LLVMFuzzerTestOneInput (const uint8_t *data, size_t size)
{
  g_autoptr (DhfHotkeyMatcher) matcher = dhf_hotkey_matcher_new ();

  for (guint i = 0; i < G_N_ELEMENTS (bindings); i++)
    g_assert_true (dhf_hotkey_matcher_bind (matcher, bindings[i][0], bindings[i][1], NULL));
  for (size_t off = 0; off + sizeof (struct input_event) <= size;
       off += sizeof (struct input_event))
    {
      struct input_event event;
      const gchar *target;

      memcpy (&event, data + off, sizeof event);
      target = dhf_hotkey_matcher_feed (matcher, &event);
      if (target != NULL)
        g_assert_true (is_bound_target (target));
      {
        g_autoptr (GArray) held = dhf_hotkey_matcher_dup_held (matcher);

        for (guint k = 0; k < held->len; k++)
          g_assert_cmpuint (g_array_index (held, guint, k), <, KEY_CNT);
        if (event.type == EV_SYN && event.code == SYN_DROPPED)
          g_assert_cmpuint (held->len, ==, 0);
      }
    }
  return 0;
}
