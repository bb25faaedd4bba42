/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* The hotkey matcher on its own: the combo grammar, recorded keyboard
 * streams fed event by event, bindings, and binding from a policy. */
#include "config.h"

#include <string.h>

#include <dhf/dhf.h>
#include <libevdev/libevdev.h>

#include "dhf-hotkey-private.h"
#include "dhf-policy.h"

#include "hotkey-log.h"
#include "hotkey-recording.h"

/* Every recording in recordings/, with the number of fires it must
 * contain: a guard against "#> fire" lines lost in an edit. */
static const struct
{
  const gchar *name;
  guint fires;
} recordings[] = {
  { "ctrl-alt-tab", 1 },     { "ctrl-alt-tab-held", 1 },
  { "ctrl-alt-2-right", 2 }, { "ctrl-alt-shift-tab", 3 },
  { "typing", 0 },           { "ctrl-alt-tab-twice", 2 },
  { "extra-key-held", 2 },   { "syn-dropped", 2 },
  { "release-order", 4 },    { "no-stuck-modifier", 1 },
};

static struct input_event
key_event (guint code, gint value)
{
  struct input_event event = { .type = EV_KEY, .code = (guint16) code, .value = value };

  return event;
}

static const gchar *
feed_key (DhfHotkeyMatcher *matcher, guint code, gint value)
{
  struct input_event event = key_event (code, value);

  return dhf_hotkey_matcher_feed (matcher, &event);
}

static gchar *
held_string (DhfHotkeyMatcher *matcher)
{
  g_autoptr (GArray) held = dhf_hotkey_matcher_dup_held (matcher);

  return hotkey_codes_to_string (held);
}

static void
bind_ok (DhfHotkeyMatcher *matcher, const gchar *combo, const gchar *target)
{
  g_autoptr (GError) error = NULL;

  g_assert_true (dhf_hotkey_matcher_bind (matcher, combo, target, &error));
  g_assert_no_error (error);
}

/* Presses combo's modifiers (left side) and key, and returns what fired;
 * releases everything again. */
static const gchar *
type_combo (DhfHotkeyMatcher *matcher, const gchar *combo)
{
  static const guint mod_keys[] = { KEY_LEFTCTRL, KEY_LEFTALT, KEY_LEFTSHIFT, KEY_LEFTMETA };
  g_autoptr (GError) error = NULL;
  const gchar *fired;
  guint mods;
  guint code;

  g_assert_true (dhf_hotkey_parse (combo, &mods, &code, &error));
  g_assert_no_error (error);
  for (guint i = 0; i < G_N_ELEMENTS (mod_keys); i++)
    if (mods & (1u << i))
      g_assert_null (feed_key (matcher, mod_keys[i], 1));
  fired = feed_key (matcher, code, 1);
  g_assert_null (feed_key (matcher, code, 0));
  for (guint i = 0; i < G_N_ELEMENTS (mod_keys); i++)
    if (mods & (1u << i))
      g_assert_null (feed_key (matcher, mod_keys[i], 0));
  return fired;
}

/* parse */

static const gchar *const grammar_keys[] = {
  "Tab", "Space",  "Escape",   "Left",   "Right",     "Up",     "Down",   "Home",
  "End", "PageUp", "PageDown", "Return", "BackSpace", "Delete", "Insert", "Print",
};

static void
test_parse_good (void)
{
  static const struct
  {
    const gchar *combo;
    guint mods;
    guint code;
  } cases[] = {
    { "Ctrl+Alt+Tab", DHF_HOTKEY_CTRL | DHF_HOTKEY_ALT, KEY_TAB },
    { "ctrl+alt+tab", DHF_HOTKEY_CTRL | DHF_HOTKEY_ALT, KEY_TAB },
    { "CTRL+ALT+TAB", DHF_HOTKEY_CTRL | DHF_HOTKEY_ALT, KEY_TAB },
    { "Alt+Ctrl+Tab", DHF_HOTKEY_CTRL | DHF_HOTKEY_ALT, KEY_TAB },
    { "Ctrl+Alt+Shift+Tab", DHF_HOTKEY_CTRL | DHF_HOTKEY_ALT | DHF_HOTKEY_SHIFT, KEY_TAB },
    { "Super+1", DHF_HOTKEY_SUPER, KEY_1 },
    { "sUpEr+shift+ALT+ctrl+z",
      DHF_HOTKEY_CTRL | DHF_HOTKEY_ALT | DHF_HOTKEY_SHIFT | DHF_HOTKEY_SUPER, KEY_Z },
    { "Ctrl+a", DHF_HOTKEY_CTRL, KEY_A },
    { "Ctrl+Q", DHF_HOTKEY_CTRL, KEY_Q },
    { "Ctrl+F", DHF_HOTKEY_CTRL, KEY_F }, /* the letter, not a function key */
    { "Ctrl+Alt+0", DHF_HOTKEY_CTRL | DHF_HOTKEY_ALT, KEY_0 },
    { "Ctrl+Alt+9", DHF_HOTKEY_CTRL | DHF_HOTKEY_ALT, KEY_9 },
    { "Ctrl+F1", DHF_HOTKEY_CTRL, KEY_F1 },
    { "Ctrl+f10", DHF_HOTKEY_CTRL, KEY_F10 },
    { "Ctrl+F11", DHF_HOTKEY_CTRL, KEY_F11 },
    { "Ctrl+F12", DHF_HOTKEY_CTRL, KEY_F12 },
    { "Ctrl+F13", DHF_HOTKEY_CTRL, KEY_F13 },
    { "Shift+F24", DHF_HOTKEY_SHIFT, KEY_F24 },
    { "Ctrl+Space", DHF_HOTKEY_CTRL, KEY_SPACE },
    { "Ctrl+escape", DHF_HOTKEY_CTRL, KEY_ESC },
    { "Ctrl+Left", DHF_HOTKEY_CTRL, KEY_LEFT },
    { "Ctrl+RIGHT", DHF_HOTKEY_CTRL, KEY_RIGHT },
    { "Ctrl+Up", DHF_HOTKEY_CTRL, KEY_UP },
    { "Ctrl+Down", DHF_HOTKEY_CTRL, KEY_DOWN },
    { "Ctrl+Home", DHF_HOTKEY_CTRL, KEY_HOME },
    { "Ctrl+End", DHF_HOTKEY_CTRL, KEY_END },
    { "Ctrl+pageup", DHF_HOTKEY_CTRL, KEY_PAGEUP },
    { "Ctrl+PageDown", DHF_HOTKEY_CTRL, KEY_PAGEDOWN },
    { "Ctrl+Return", DHF_HOTKEY_CTRL, KEY_ENTER },
    { "Ctrl+backspace", DHF_HOTKEY_CTRL, KEY_BACKSPACE },
    { "Ctrl+Alt+Delete", DHF_HOTKEY_CTRL | DHF_HOTKEY_ALT, KEY_DELETE },
    { "Ctrl+Insert", DHF_HOTKEY_CTRL, KEY_INSERT },
    { "Alt+Print", DHF_HOTKEY_ALT, KEY_SYSRQ },
  };

  for (guint i = 0; i < G_N_ELEMENTS (cases); i++)
    {
      g_autoptr (GError) error = NULL;
      guint mods = 0;
      guint code = 0;

      g_test_message ("%s", cases[i].combo);
      g_assert_true (dhf_hotkey_parse (cases[i].combo, &mods, &code, &error));
      g_assert_no_error (error);
      g_assert_cmpuint (mods, ==, cases[i].mods);
      g_assert_cmpuint (code, ==, cases[i].code);
    }

  /* the out parameters are optional */
  g_assert_true (dhf_hotkey_parse ("Ctrl+Tab", NULL, NULL, NULL));
}

static void
test_parse_bad (void)
{
  static const struct
  {
    const gchar *combo;
    const gchar *message;
  } cases[] = {
    { "", "needs at least one modifier" },
    { "Tab", "needs at least one modifier" },
    { "Ctrl", "needs at least one modifier" },
    { "Ctrl+", "unknown key ''" },
    { "+Tab", "unknown modifier ''" },
    { "Ctrl++Tab", "unknown modifier ''" },
    { "Ctrl+Ctrl+Tab", "duplicate modifier 'Ctrl'" },
    { "ctrl+Alt+CTRL+Tab", "duplicate modifier 'CTRL'" },
    { "Meta+Tab", "unknown modifier 'Meta'" },
    { "Control+Tab", "unknown modifier 'Control'" },
    { "Ctrl+Tab+Alt", "unknown modifier 'Tab'" },
    { "Ctrl+Alt+Foo", "unknown key 'Foo'" },
    { "Ctrl+F0", "unknown key 'F0'" },
    { "Ctrl+F25", "unknown key 'F25'" },
    { "Ctrl+F01", "unknown key 'F01'" },
    { "Ctrl+F1a", "unknown key 'F1a'" },
    { "Ctrl+Enter", "unknown key 'Enter'" },
    { "Ctrl+Esc", "unknown key 'Esc'" },
    { "Ctrl+PgUp", "unknown key 'PgUp'" },
    { "Ctrl+AA", "unknown key 'AA'" },
    { "Ctrl+KEY_TAB", "unknown key 'KEY_TAB'" },
    { "Ctrl+Minus", "unknown key 'Minus'" },
    { "Ctrl+-", "unknown key '-'" },
    { "Ctrl+ Tab", "unknown key ' Tab'" },
    { "Ctrl+Tab ", "unknown key 'Tab '" },
    { "Ctrl+\xc3\xa9", "unknown key" },
    { "Ctrl+LeftCtrl", "unknown key 'LeftCtrl'" },
  };

  for (guint i = 0; i < G_N_ELEMENTS (cases); i++)
    {
      g_autoptr (GError) error = NULL;
      guint mods = 12345;
      guint code = 12345;

      g_test_message ("'%s'", cases[i].combo);
      g_assert_false (dhf_hotkey_parse (cases[i].combo, &mods, &code, &error));
      g_assert_error (error, DHF_ERROR, DHF_ERROR_INVALID_ARGS);
      g_assert_nonnull (strstr (error->message, cases[i].message));
      g_assert_nonnull (strstr (error->message, cases[i].combo));
      /* nothing is written on failure */
      g_assert_cmpuint (mods, ==, 12345);
      g_assert_cmpuint (code, ==, 12345);
    }
}

/* The matcher and the policy read the same grammar: every key of it, and
 * near misses, are accepted by both or by neither, and the policy's
 * normalised spelling parses to the same combo. */
static void
test_parse_agrees_with_policy (void)
{
  g_autoptr (GPtrArray) keys = g_ptr_array_new_with_free_func (g_free);
  static const gchar *const near_misses[]
      = { "F0",    "F25",        "F01", "F100", "Enter",  "Esc",  "Del",     "Ins",
          "PrtSc", "Backspace2", "a1",  "",     "Space ", "Tabs", "Pageup1", "F1F" };
  static const gchar *const prefixes[]
      = { "Ctrl+", "alt+", "Ctrl+Alt+", "SHIFT+SUPER+", "", "Ctrl+Ctrl+", "Hyper+" };

  for (gchar c = 'A'; c <= 'Z'; c++)
    {
      g_ptr_array_add (keys, g_strdup_printf ("%c", c));
      g_ptr_array_add (keys, g_strdup_printf ("%c", g_ascii_tolower (c)));
    }
  for (gchar c = '0'; c <= '9'; c++)
    g_ptr_array_add (keys, g_strdup_printf ("%c", c));
  for (guint n = 1; n <= 24; n++)
    g_ptr_array_add (keys, g_strdup_printf ("F%u", n));
  for (guint i = 0; i < G_N_ELEMENTS (grammar_keys); i++)
    {
      g_ptr_array_add (keys, g_strdup (grammar_keys[i]));
      g_ptr_array_add (keys, g_ascii_strup (grammar_keys[i], -1));
    }
  for (guint i = 0; i < G_N_ELEMENTS (near_misses); i++)
    g_ptr_array_add (keys, g_strdup (near_misses[i]));

  for (guint p = 0; p < G_N_ELEMENTS (prefixes); p++)
    for (guint k = 0; k < keys->len; k++)
      {
        g_autofree gchar *combo = g_strconcat (prefixes[p], keys->pdata[k], NULL);
        g_autofree gchar *subject_text = g_strconcat ("hotkey:", combo, NULL);
        g_autofree gchar *normalised = NULL;
        g_autofree gchar *argument = NULL;
        DhfPolicyKind kind;
        gboolean ours = dhf_hotkey_parse (combo, NULL, NULL, NULL);
        gboolean policy
            = dhf_policy_parse_subject (subject_text, &kind, &normalised, &argument, NULL);

        g_test_message ("'%s': matcher %d, policy %d", combo, ours, policy);
        g_assert_cmpint (ours, ==, policy);
        if (ours)
          {
            guint mods1;
            guint code1;
            guint mods2;
            guint code2;

            g_assert_cmpint (kind, ==, DHF_POLICY_KIND_HOTKEY);
            g_assert_true (dhf_hotkey_parse (combo, &mods1, &code1, NULL));
            g_assert_true (dhf_hotkey_parse (normalised, &mods2, &code2, NULL));
            g_assert_cmpuint (mods1, ==, mods2);
            g_assert_cmpuint (code1, ==, code2);
          }
      }
}

/* recordings */

static void
test_recording (gconstpointer data)
{
  guint index = GPOINTER_TO_UINT (data);
  g_autofree gchar *file = g_strconcat (recordings[index].name, ".events", NULL);
  g_autoptr (HotkeyRecording) recording = hotkey_recording_load (file);
  g_autoptr (DhfHotkeyMatcher) matcher = dhf_hotkey_matcher_new ();
  guint next_check = 0;
  guint fires = 0;

  g_assert_cmpuint (recording->events->len, >, 0);
  g_assert_cmpuint (hotkey_recording_count_fires (recording), ==, recordings[index].fires);
  g_assert_cmpuint (recording->binds->len, >, 0);
  for (guint i = 0; i < recording->binds->len; i += 2)
    bind_ok (matcher, recording->binds->pdata[i], recording->binds->pdata[i + 1]);

  for (guint i = 0; i < recording->events->len; i++)
    {
      const struct input_event *event = &g_array_index (recording->events, struct input_event, i);
      const gchar *fired = dhf_hotkey_matcher_feed (matcher, event);
      gboolean fire_expected = FALSE;

      /* the checks that follow this event, in order */
      while (next_check < recording->checks->len)
        {
          HotkeyCheck *check = g_ptr_array_index (recording->checks, next_check);
          g_autofree gchar *want = NULL;
          g_autofree gchar *got = NULL;

          if (check->after != i + 1)
            break;
          next_check++;
          want = hotkey_codes_to_string (check->held);
          got = held_string (matcher);
          g_test_message ("%s, event %u: expect %s%s held [%s]", file, i + 1,
                          check->target != NULL ? "fire " : "",
                          check->target != NULL ? check->target : "", want);
          if (check->target != NULL)
            {
              g_assert_cmpstr (fired, ==, check->target);
              fire_expected = TRUE;
              fires++;
            }
          g_assert_cmpstr (got, ==, want);
        }
      if (!fire_expected && fired != NULL)
        g_error ("%s: event %u (type %u code %u value %d) fired %s unexpectedly", file, i + 1,
                 event->type, event->code, event->value, fired);
    }
  g_assert_cmpuint (next_check, ==, recording->checks->len);
  g_assert_cmpuint (fires, ==, recordings[index].fires);
}

/* Every recording in the directory is listed above, so none goes
 * untested. */
static void
test_recordings_listed (void)
{
  g_autofree gchar *dir_path = hotkey_recording_dir ();
  g_autoptr (GError) error = NULL;
  g_autoptr (GDir) dir = g_dir_open (dir_path, 0, &error);
  const gchar *name;
  guint n = 0;

  g_assert_no_error (error);
  while ((name = g_dir_read_name (dir)) != NULL)
    {
      gboolean listed = FALSE;

      if (!g_str_has_suffix (name, ".events"))
        continue;
      n++;
      for (guint i = 0; i < G_N_ELEMENTS (recordings); i++)
        if (strlen (name) == strlen (recordings[i].name) + strlen (".events")
            && g_str_has_prefix (name, recordings[i].name))
          listed = TRUE;
      if (!listed)
        g_error ("recording %s is not in the test's table", name);
    }
  g_assert_cmpuint (n, ==, G_N_ELEMENTS (recordings));
}

/* matcher */

static void
test_matcher_ignored (void)
{
  g_autoptr (DhfHotkeyMatcher) matcher = dhf_hotkey_matcher_new ();
  g_autofree gchar *held = NULL;
  static const struct input_event others[] = {
    { .type = EV_SYN, .code = SYN_REPORT, .value = 0 },
    { .type = EV_SYN, .code = SYN_CONFIG, .value = 0 },
    { .type = EV_MSC, .code = MSC_SCAN, .value = 0x7002b },
    { .type = EV_REL, .code = REL_X, .value = 5 },
    { .type = EV_ABS, .code = KEY_TAB, .value = 1 },
    { .type = EV_LED, .code = LED_CAPSL, .value = 1 },
    { .type = EV_REP, .code = REP_DELAY, .value = 250 },
    { .type = EV_MSC, .code = KEY_TAB, .value = 1 },
    { .type = 0xffff, .code = KEY_TAB, .value = 1 },
  };

  bind_ok (matcher, "Ctrl+Alt+Tab", "@next");
  g_assert_null (feed_key (matcher, KEY_LEFTCTRL, 1));
  g_assert_null (feed_key (matcher, KEY_LEFTALT, 1));

  /* nothing but EV_KEY moves a key, and no code out of range does */
  for (guint i = 0; i < G_N_ELEMENTS (others); i++)
    g_assert_null (dhf_hotkey_matcher_feed (matcher, &others[i]));
  g_assert_null (feed_key (matcher, KEY_CNT, 1));
  g_assert_null (feed_key (matcher, KEY_CNT + 1, 1));
  g_assert_null (feed_key (matcher, 0xffff, 1));
  g_assert_null (feed_key (matcher, 0xffff, 2));
  /* values other than 0, 1 and 2 mean nothing */
  g_assert_null (feed_key (matcher, KEY_A, 3));
  g_assert_null (feed_key (matcher, KEY_A, -1));
  held = held_string (matcher);
  g_assert_cmpstr (held, ==, "KEY_LEFTCTRL KEY_LEFTALT");

  /* the last code in range is an ordinary (blocking) key */
  g_assert_null (feed_key (matcher, KEY_MAX, 1));
  g_clear_pointer (&held, g_free);
  held = held_string (matcher);
  g_assert_cmpstr (held, ==, "KEY_LEFTCTRL KEY_LEFTALT KEY_MAX");
  g_assert_null (feed_key (matcher, KEY_TAB, 1));
  g_assert_null (feed_key (matcher, KEY_TAB, 0));
  g_assert_null (feed_key (matcher, KEY_MAX, 0));
  g_assert_cmpstr (feed_key (matcher, KEY_TAB, 1), ==, "@next");
}

static void
test_matcher_fire_rules (void)
{
  g_autoptr (DhfHotkeyMatcher) matcher = dhf_hotkey_matcher_new ();

  bind_ok (matcher, "Ctrl+Alt+Tab", "@next");

  /* a key repeat with the modifiers down is not a press */
  g_assert_null (feed_key (matcher, KEY_TAB, 1));
  g_assert_null (feed_key (matcher, KEY_LEFTCTRL, 1));
  g_assert_null (feed_key (matcher, KEY_LEFTALT, 1));
  g_assert_null (feed_key (matcher, KEY_TAB, 2));
  g_assert_null (feed_key (matcher, KEY_TAB, 0));

  /* fires once; a second press without a release in between does not */
  g_assert_cmpstr (feed_key (matcher, KEY_TAB, 1), ==, "@next");
  g_assert_null (feed_key (matcher, KEY_TAB, 2));
  g_assert_null (feed_key (matcher, KEY_TAB, 1));
  g_assert_null (feed_key (matcher, KEY_TAB, 0));
  g_assert_cmpstr (feed_key (matcher, KEY_TAB, 1), ==, "@next");
  g_assert_null (feed_key (matcher, KEY_TAB, 0));

  /* both Ctrl keys down are still Ctrl */
  g_assert_null (feed_key (matcher, KEY_RIGHTCTRL, 1));
  g_assert_cmpstr (feed_key (matcher, KEY_TAB, 1), ==, "@next");
  g_assert_null (feed_key (matcher, KEY_TAB, 0));
  g_assert_null (feed_key (matcher, KEY_RIGHTCTRL, 0));

  /* a modifier is never the key of a combo */
  bind_ok (matcher, "Ctrl+Alt+Delete", "dom0");
  g_assert_null (feed_key (matcher, KEY_LEFTALT, 0));
  g_assert_null (feed_key (matcher, KEY_LEFTALT, 1));
  g_assert_cmpstr (feed_key (matcher, KEY_DELETE, 1), ==, "dom0");
  g_assert_null (feed_key (matcher, KEY_DELETE, 0));

  /* fewer modifiers than bound: nothing */
  g_assert_null (feed_key (matcher, KEY_LEFTALT, 0));
  g_assert_null (feed_key (matcher, KEY_TAB, 1));
  g_assert_null (feed_key (matcher, KEY_TAB, 0));
  g_assert_null (feed_key (matcher, KEY_LEFTCTRL, 0));

  /* a SYN_DROPPED forgets everything, including the fired key */
  g_assert_null (feed_key (matcher, KEY_LEFTCTRL, 1));
  g_assert_null (feed_key (matcher, KEY_LEFTALT, 1));
  g_assert_cmpstr (feed_key (matcher, KEY_TAB, 1), ==, "@next");
  {
    struct input_event dropped = { .type = EV_SYN, .code = SYN_DROPPED };
    g_autofree gchar *held = NULL;

    g_assert_null (dhf_hotkey_matcher_feed (matcher, &dropped));
    held = held_string (matcher);
    g_assert_cmpstr (held, ==, "");
  }
  g_assert_null (feed_key (matcher, KEY_LEFTCTRL, 1));
  g_assert_null (feed_key (matcher, KEY_LEFTALT, 1));
  g_assert_cmpstr (feed_key (matcher, KEY_TAB, 1), ==, "@next");

  /* reset does the same */
  dhf_hotkey_matcher_reset (matcher);
  {
    g_autoptr (GArray) held = dhf_hotkey_matcher_dup_held (matcher);

    g_assert_cmpuint (held->len, ==, 0);
  }
  g_assert_null (feed_key (matcher, KEY_TAB, 1));
}

/* The reader's private helpers: held keys set from a device's state fire
 * nothing and count as fired; copied bindings keep the held keys. */
static void
test_matcher_private (void)
{
  g_autoptr (DhfHotkeyMatcher) matcher = dhf_hotkey_matcher_new ();
  g_autoptr (DhfHotkeyMatcher) other = dhf_hotkey_matcher_new ();
  g_autofree gchar *held = NULL;

  bind_ok (matcher, "Ctrl+Alt+Tab", "@next");
  dhf_hotkey_matcher_set_held (matcher, KEY_LEFTCTRL, TRUE);
  dhf_hotkey_matcher_set_held (matcher, KEY_LEFTALT, TRUE);
  dhf_hotkey_matcher_set_held (matcher, KEY_TAB, TRUE);
  dhf_hotkey_matcher_set_held (matcher, KEY_CNT, TRUE); /* ignored */
  held = held_string (matcher);
  g_assert_cmpstr (held, ==, "KEY_TAB KEY_LEFTCTRL KEY_LEFTALT");
  /* Tab was down before we knew: a press without its release is not one */
  g_assert_null (feed_key (matcher, KEY_TAB, 1));
  g_assert_null (feed_key (matcher, KEY_TAB, 0));

  /* new bindings, the same keys down */
  bind_ok (other, "Ctrl+Alt+Tab", "personal");
  bind_ok (other, "Ctrl+Alt+1", "@slot:1");
  dhf_hotkey_matcher_copy_bindings (matcher, other);
  g_assert_cmpuint (dhf_hotkey_matcher_get_n_bindings (matcher), ==, 2);
  g_assert_cmpstr (feed_key (matcher, KEY_TAB, 1), ==, "personal");
  g_assert_null (feed_key (matcher, KEY_TAB, 0));
  /* a copy, not a share */
  dhf_hotkey_matcher_clear (other);
  g_assert_cmpstr (feed_key (matcher, KEY_1, 1), ==, "@slot:1");
  dhf_hotkey_matcher_copy_bindings (matcher, matcher);
  g_assert_cmpuint (dhf_hotkey_matcher_get_n_bindings (matcher), ==, 2);

  dhf_hotkey_matcher_set_held (matcher, KEY_1, FALSE);
  dhf_hotkey_matcher_set_held (matcher, KEY_LEFTALT, FALSE);
  g_clear_pointer (&held, g_free);
  held = held_string (matcher);
  g_assert_cmpstr (held, ==, "KEY_LEFTCTRL");
}

static void
test_matcher_bind (void)
{
  g_autoptr (DhfHotkeyMatcher) matcher = dhf_hotkey_matcher_new ();
  static const gchar *const good_targets[] = {
    "dom0",      "personal",
    "a",         "vpn-gateway",
    "w0rk-2",    "@next",
    "@previous", "@slot:1",
    "@slot:9",   "abcdefghijklmnopqrstuvwxyz0123456789abcdefghijkl", /* 48 */
  };
  static const gchar *const bad_targets[] = {
    "",
    "Personal",
    "-x",
    "x-",
    "a--b",
    "1abc",
    "@dom0",
    "@any",
    "@slot:0",
    "@slot:10",
    "@slot:",
    "@slot:x",
    "@next ",
    "@focused",
    "per sonal",
    "caf\xc3\xa9",
    "abcdefghijklmnopqrstuvwxyz0123456789abcdefghijklm", /* 49 */
  };

  g_assert_cmpuint (dhf_hotkey_matcher_get_n_bindings (matcher), ==, 0);
  g_assert_null (type_combo (matcher, "Ctrl+Alt+Tab"));

  for (guint i = 0; i < G_N_ELEMENTS (good_targets); i++)
    {
      bind_ok (matcher, "Ctrl+Alt+Tab", good_targets[i]);
      g_assert_cmpuint (dhf_hotkey_matcher_get_n_bindings (matcher), ==, 1);
      g_assert_cmpstr (type_combo (matcher, "Ctrl+Alt+Tab"), ==, good_targets[i]);
    }
  for (guint i = 0; i < G_N_ELEMENTS (bad_targets); i++)
    {
      g_autoptr (GError) error = NULL;

      g_test_message ("target '%s'", bad_targets[i]);
      g_assert_false (dhf_hotkey_matcher_bind (matcher, "Ctrl+Alt+Tab", bad_targets[i], &error));
      g_assert_error (error, DHF_ERROR, DHF_ERROR_INVALID_ARGS);
      g_assert_nonnull (strstr (error->message, "cannot be the target"));
    }
  /* refused binds changed nothing */
  g_assert_cmpuint (dhf_hotkey_matcher_get_n_bindings (matcher), ==, 1);
  g_assert_cmpstr (type_combo (matcher, "Ctrl+Alt+Tab"), ==,
                   good_targets[G_N_ELEMENTS (good_targets) - 1]);

  /* the same combo spelt another way replaces it */
  bind_ok (matcher, "alt+CTRL+tab", "@previous");
  g_assert_cmpuint (dhf_hotkey_matcher_get_n_bindings (matcher), ==, 1);
  g_assert_cmpstr (type_combo (matcher, "Ctrl+Alt+Tab"), ==, "@previous");

  {
    g_autoptr (GError) error = NULL;

    g_assert_false (dhf_hotkey_matcher_bind (matcher, "Ctrl+Alt+Tabulator", "@next", &error));
    g_assert_error (error, DHF_ERROR, DHF_ERROR_INVALID_ARGS);
    g_assert_cmpuint (dhf_hotkey_matcher_get_n_bindings (matcher), ==, 1);
  }

  bind_ok (matcher, "Ctrl+Alt+Shift+Tab", "@next");
  bind_ok (matcher, "Super+1", "personal");
  g_assert_cmpuint (dhf_hotkey_matcher_get_n_bindings (matcher), ==, 3);
  g_assert_cmpstr (type_combo (matcher, "Ctrl+Alt+Shift+Tab"), ==, "@next");
  g_assert_cmpstr (type_combo (matcher, "Super+1"), ==, "personal");
  g_assert_cmpstr (type_combo (matcher, "Ctrl+Alt+Tab"), ==, "@previous");
  g_assert_null (type_combo (matcher, "Ctrl+Super+1"));

  dhf_hotkey_matcher_clear (matcher);
  g_assert_cmpuint (dhf_hotkey_matcher_get_n_bindings (matcher), ==, 0);
  g_assert_null (type_combo (matcher, "Ctrl+Alt+Tab"));
  g_assert_null (type_combo (matcher, "Super+1"));
  bind_ok (matcher, "Super+1", "work");
  g_assert_cmpstr (type_combo (matcher, "Super+1"), ==, "work");
}

/* bind_policy */

static DhfPolicy *
parse_policy (const gchar *text)
{
  g_autoptr (GPtrArray) diagnostics
      = g_ptr_array_new_with_free_func ((GDestroyNotify) dhf_policy_diagnostic_free);
  DhfPolicy *policy = dhf_policy_parse_data ("t.policy", text, strlen (text), diagnostics);

  for (guint i = 0; i < diagnostics->len; i++)
    {
      g_autofree gchar *line = dhf_policy_diagnostic_format (g_ptr_array_index (diagnostics, i));

      g_test_message ("%s", line);
    }
  g_assert_nonnull (policy);
  return policy;
}

static void
bind_policy_ok (DhfHotkeyMatcher *matcher, DhfPolicy *policy, const gchar *slot_modifiers)
{
  g_autoptr (GError) error = NULL;

  g_assert_true (dhf_hotkey_matcher_bind_policy (matcher, policy, slot_modifiers, &error));
  g_assert_no_error (error);
}

static void
test_policy_first_rule (void)
{
  g_autoptr (DhfPolicy) policy = parse_policy (
      /* 1 */ "switch                      @any  @any       allow\n"
              /* 2 */ "org.example.Sync1           @any  @any       allow\n"
              /* 3 */ "hotkey:Ctrl+Alt+Tab         @dom0 @next      allow\n"
              /* 4 */ "hotkey:ctrl+alt+tab         @dom0 personal   allow\n"
              /* 5 */ "hotkey:Ctrl+Alt+Shift+Tab   @dom0 @previous  allow\n"
              /* 6 */ "hotkey:Super+1              @dom0 personal   allow\n"
              /* 7 */ "hotkey:Super+2              @dom0 @dom0      allow\n"
              /* 8 */ "hotkey:Super+3              @dom0 work       deny\n"
              /* 9 */ "hotkey:Super+3              @dom0 work       allow\n");
  g_autoptr (DhfHotkeyMatcher) matcher = dhf_hotkey_matcher_new ();

  bind_policy_ok (matcher, policy, NULL);
  g_assert_cmpuint (dhf_hotkey_matcher_get_n_bindings (matcher), ==, 4);
  g_assert_cmpstr (type_combo (matcher, "Ctrl+Alt+Tab"), ==, "@next");
  g_assert_cmpstr (type_combo (matcher, "Ctrl+Alt+Shift+Tab"), ==, "@previous");
  g_assert_cmpstr (type_combo (matcher, "Super+1"), ==, "personal");
  g_assert_cmpstr (type_combo (matcher, "Super+2"), ==, "dom0");
  g_assert_null (type_combo (matcher, "Super+3"));

  /* binding the same policy again changes nothing */
  bind_policy_ok (matcher, policy, "");
  g_assert_cmpuint (dhf_hotkey_matcher_get_n_bindings (matcher), ==, 4);
  hotkey_log_assert_warnings (NULL);
}

static void
test_policy_deny_unbinds (void)
{
  g_autoptr (DhfPolicy) policy
      = parse_policy ("hotkey:Ctrl+Alt+Delete  @dom0 @dom0             deny\n"
                      "hotkey:Super+Tab        @dom0 @role:service     deny\n"
                      "hotkey:Super+Tab        @dom0 @next             allow\n");
  g_autoptr (DhfHotkeyMatcher) matcher = dhf_hotkey_matcher_new ();

  bind_ok (matcher, "Ctrl+Alt+Delete", "dom0");
  bind_ok (matcher, "Super+Tab", "@previous");
  bind_ok (matcher, "Super+Escape", "dom0");
  bind_policy_ok (matcher, policy, NULL);
  /* the denied combos are gone, whatever the deny's target; the others
   * stay */
  g_assert_cmpuint (dhf_hotkey_matcher_get_n_bindings (matcher), ==, 1);
  g_assert_null (type_combo (matcher, "Ctrl+Alt+Delete"));
  g_assert_null (type_combo (matcher, "Super+Tab"));
  g_assert_cmpstr (type_combo (matcher, "Super+Escape"), ==, "dom0");
  hotkey_log_assert_warnings (NULL);
}

static void
test_policy_skipped_targets (void)
{
  g_autoptr (DhfPolicy) policy = parse_policy (
      /* 1 */ "hotkey:Super+1  @dom0 @role:environment  allow\n"
              /* 2 */ "hotkey:Super+1  @dom0 personal           allow\n"
              /* 3 */ "hotkey:Super+2  @dom0 @any               allow\n"
              /* 4 */ "hotkey:Super+3  @dom0 @tag:corp          allow\n"
              /* 5 */ "hotkey:Super+4  @dom0 @focused           allow\n"
              /* 6 */ "hotkey:Super+5  @dom0 \"@vendor:acme\"   allow\n");
  g_autoptr (DhfHotkeyMatcher) matcher = dhf_hotkey_matcher_new ();

  static const gchar *const expected[] = {
    "t.policy:1: hotkey Super+1: *, not @role:environment; rule skipped",
    "t.policy:3: hotkey Super+2: *, not @any; rule skipped",
    "t.policy:4: hotkey Super+3: *, not @tag:corp; rule skipped",
    "t.policy:5: hotkey Super+4: *, not @focused; rule skipped",
    "t.policy:6: hotkey Super+5: *, not *acme*; rule skipped",
    NULL,
  };

  hotkey_log_clear ();
  bind_policy_ok (matcher, policy, NULL);
  hotkey_log_assert_warnings (expected);

  /* a skipped rule decides nothing: the next rule of its combo does */
  g_assert_cmpuint (dhf_hotkey_matcher_get_n_bindings (matcher), ==, 1);
  g_assert_cmpstr (type_combo (matcher, "Super+1"), ==, "personal");
  g_assert_null (type_combo (matcher, "Super+2"));
}

static void
test_policy_slots (void)
{
  g_autoptr (DhfPolicy) policy = parse_policy (
      /* 1 */ "hotkey:Ctrl+Alt+3  @dom0 personal          allow\n"
              /* 2 */ "hotkey:Ctrl+Alt+4  @dom0 @any              deny\n"
              /* 3 */ "hotkey:Ctrl+Alt+5  @dom0 @role:environment allow\n"
              /* 4 */ "hotkey:Ctrl+Alt+Tab @dom0 @next            allow\n"
              /* 5 */ "hotkey:Super+6     @dom0 @dom0             deny\n");
  g_autoptr (DhfHotkeyMatcher) matcher = dhf_hotkey_matcher_new ();
  static const gchar *const line3_warning[] = { "t.policy:3: hotkey Ctrl+Alt+5: *", NULL };

  hotkey_log_clear ();
  bind_policy_ok (matcher, policy, "Alt+ctrl");
  hotkey_log_assert_warnings (line3_warning);

  /* Tab, and 1-9 but 4 */
  g_assert_cmpuint (dhf_hotkey_matcher_get_n_bindings (matcher), ==, 9);
  for (guint n = 1; n <= 9; n++)
    {
      g_autofree gchar *combo = g_strdup_printf ("Ctrl+Alt+%u", n);
      g_autofree gchar *slot = g_strdup_printf ("@slot:%u", n);
      const gchar *fired = type_combo (matcher, combo);

      g_test_message ("%s -> %s", combo, fired);
      if (n == 3)
        g_assert_cmpstr (fired, ==, "personal");
      else if (n == 4)
        g_assert_null (fired);
      else
        g_assert_cmpstr (fired, ==, slot);
    }
  g_assert_null (type_combo (matcher, "Ctrl+Alt+0"));
  g_assert_cmpstr (type_combo (matcher, "Ctrl+Alt+Tab"), ==, "@next");

  /* other modifiers for the slots */
  dhf_hotkey_matcher_clear (matcher);
  bind_policy_ok (matcher, policy, "Super");
  hotkey_log_assert_warnings (line3_warning);
  g_assert_cmpuint (dhf_hotkey_matcher_get_n_bindings (matcher), ==, 2 + 8);
  g_assert_cmpstr (type_combo (matcher, "Super+1"), ==, "@slot:1");
  g_assert_null (type_combo (matcher, "Super+6"));
  g_assert_cmpstr (type_combo (matcher, "Super+9"), ==, "@slot:9");
  g_assert_null (type_combo (matcher, "Ctrl+Alt+1"));

  /* none */
  dhf_hotkey_matcher_clear (matcher);
  bind_policy_ok (matcher, policy, NULL);
  hotkey_log_assert_warnings (line3_warning);
  g_assert_cmpuint (dhf_hotkey_matcher_get_n_bindings (matcher), ==, 2);
}

static void
test_policy_bad_slot_modifiers (void)
{
  g_autoptr (DhfPolicy) policy = parse_policy ("hotkey:Super+Tab @dom0 @next allow\n");
  g_autoptr (DhfHotkeyMatcher) matcher = dhf_hotkey_matcher_new ();
  static const struct
  {
    const gchar *mods;
    const gchar *message;
  } cases[] = {
    { "Ctrl+Tab", "unknown modifier 'Tab'" }, { "Ctrl+Ctrl", "duplicate modifier" },
    { "Hyper", "unknown modifier 'Hyper'" },  { "Ctrl+", "unknown modifier ''" },
    { "Ctrl+Alt+1", "unknown modifier '1'" }, { " Ctrl", "unknown modifier ' Ctrl'" },
  };

  bind_ok (matcher, "Ctrl+Alt+Delete", "dom0");
  for (guint i = 0; i < G_N_ELEMENTS (cases); i++)
    {
      g_autoptr (GError) error = NULL;

      g_assert_false (dhf_hotkey_matcher_bind_policy (matcher, policy, cases[i].mods, &error));
      g_assert_error (error, DHF_ERROR, DHF_ERROR_INVALID_ARGS);
      g_assert_true (g_str_has_prefix (error->message, "[Hotkeys] SlotModifiers: "));
      g_assert_nonnull (strstr (error->message, cases[i].message));
      /* a refusal binds nothing */
      g_assert_cmpuint (dhf_hotkey_matcher_get_n_bindings (matcher), ==, 1);
      g_assert_null (type_combo (matcher, "Super+Tab"));
    }
  hotkey_log_assert_warnings (NULL);
}

static void
test_policy_empty (void)
{
  g_autoptr (DhfPolicy) policy = dhf_policy_new_empty ();
  g_autoptr (DhfHotkeyMatcher) matcher = dhf_hotkey_matcher_new ();

  bind_policy_ok (matcher, policy, NULL);
  g_assert_cmpuint (dhf_hotkey_matcher_get_n_bindings (matcher), ==, 0);
  bind_policy_ok (matcher, policy, "Ctrl+Alt");
  g_assert_cmpuint (dhf_hotkey_matcher_get_n_bindings (matcher), ==, 9);
  g_assert_cmpstr (type_combo (matcher, "Ctrl+Alt+7"), ==, "@slot:7");
  hotkey_log_assert_warnings (NULL);
}

/* The vendor defaults bind without a warning. */
static void
test_policy_vendor_defaults (void)
{
  g_autoptr (GPtrArray) diagnostics
      = g_ptr_array_new_with_free_func ((GDestroyNotify) dhf_policy_diagnostic_free);
  g_autofree gchar *dir = g_test_build_filename (G_TEST_DIST, "..", "policies", "policy.d", NULL);
  const gchar *dirs[] = { dir, NULL };
  g_autoptr (DhfPolicy) policy = dhf_policy_load_dirs (dirs, diagnostics);
  g_autoptr (DhfHotkeyMatcher) matcher = dhf_hotkey_matcher_new ();
  guint n_hotkey_rules = 0;

  g_assert_nonnull (policy);
  for (guint i = 0; i < dhf_policy_get_n_rules (policy); i++)
    if (dhf_policy_rule_get_kind (dhf_policy_get_rule (policy, i)) == DHF_POLICY_KIND_HOTKEY)
      n_hotkey_rules++;
  bind_policy_ok (matcher, policy, "Ctrl+Alt");
  g_test_message ("%u hotkey rules, %u bindings", n_hotkey_rules,
                  dhf_hotkey_matcher_get_n_bindings (matcher));
  g_assert_cmpuint (dhf_hotkey_matcher_get_n_bindings (matcher), >=, 9);
  hotkey_log_assert_warnings (NULL);
}

int
main (int argc, char **argv)
{
  hotkey_log_init ();
  g_test_init (&argc, &argv, NULL);

  g_test_add_func ("/hotkey/parse/good", test_parse_good);
  g_test_add_func ("/hotkey/parse/bad", test_parse_bad);
  g_test_add_func ("/hotkey/parse/agrees-with-policy", test_parse_agrees_with_policy);
  g_test_add_func ("/hotkey/recordings/listed", test_recordings_listed);
  for (guint i = 0; i < G_N_ELEMENTS (recordings); i++)
    {
      g_autofree gchar *path = g_strdup_printf ("/hotkey/recordings/%s", recordings[i].name);

      g_test_add_data_func (path, GUINT_TO_POINTER (i), test_recording);
    }
  g_test_add_func ("/hotkey/matcher/ignored", test_matcher_ignored);
  g_test_add_func ("/hotkey/matcher/fire-rules", test_matcher_fire_rules);
  g_test_add_func ("/hotkey/matcher/private", test_matcher_private);
  g_test_add_func ("/hotkey/matcher/bind", test_matcher_bind);
  g_test_add_func ("/hotkey/policy/first-rule", test_policy_first_rule);
  g_test_add_func ("/hotkey/policy/deny-unbinds", test_policy_deny_unbinds);
  g_test_add_func ("/hotkey/policy/skipped-targets", test_policy_skipped_targets);
  g_test_add_func ("/hotkey/policy/slots", test_policy_slots);
  g_test_add_func ("/hotkey/policy/bad-slot-modifiers", test_policy_bad_slot_modifiers);
  g_test_add_func ("/hotkey/policy/empty", test_policy_empty);
  g_test_add_func ("/hotkey/policy/vendor-defaults", test_policy_vendor_defaults);

  return g_test_run ();
}
