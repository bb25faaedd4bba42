/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include "config.h"

#include <string.h>

#include <dhf/dhf.h>
#include <libevdev/libevdev.h>

#include "dhf-hotkey-private.h"

/* The combo matcher: a pure state machine over input_event records. It
 * keeps the set of keys held down (every key code, so a key it does not
 * bind still blocks a combo) and the bindings, keyed by modifiers and key
 * code. */

#define N_WORDS (KEY_CNT / 64)
G_STATIC_ASSERT (KEY_CNT % 64 == 0);

struct _DhfHotkeyMatcher
{
  GHashTable *bindings; /* binding_key () -> gchar *target */
  guint64 held[N_WORDS];
  /* Keys whose press fired a combo (or that were held when the state was
   * rebuilt): they must be released before they fire again. */
  guint64 fired[N_WORDS];
};

static const gchar *const modifier_names[] = { "Ctrl", "Alt", "Shift", "Super" };

/* KEY names of the grammar that are not a letter, a digit or F1-F24, and
 * the codes a keyboard sends for them. */
static const struct
{
  const gchar *name;
  guint code;
} named_keys[] = {
  { "Tab", KEY_TAB },
  { "Space", KEY_SPACE },
  { "Escape", KEY_ESC },
  { "Left", KEY_LEFT },
  { "Right", KEY_RIGHT },
  { "Up", KEY_UP },
  { "Down", KEY_DOWN },
  { "Home", KEY_HOME },
  { "End", KEY_END },
  { "PageUp", KEY_PAGEUP },
  { "PageDown", KEY_PAGEDOWN },
  { "Return", KEY_ENTER },
  { "BackSpace", KEY_BACKSPACE },
  { "Delete", KEY_DELETE },
  { "Insert", KEY_INSERT },
  /* PC and USB keyboards report Print Screen as KEY_SYSRQ; KEY_PRINT is a
   * consumer key almost nothing sends. */
  { "Print", KEY_SYSRQ },
};

static inline gboolean
bit_test (const guint64 *set, guint code)
{
  return (set[code / 64] >> (code % 64)) & 1;
}

static inline void
bit_set (guint64 *set, guint code, gboolean on)
{
  if (on)
    set[code / 64] |= G_GUINT64_CONSTANT (1) << (code % 64);
  else
    set[code / 64] &= ~(G_GUINT64_CONSTANT (1) << (code % 64));
}

/* The modifier bit a key counts as (left and right alike), or 0. */
static guint
modifier_of_key (guint code)
{
  switch (code)
    {
      case KEY_LEFTCTRL:
      case KEY_RIGHTCTRL:
        return DHF_HOTKEY_CTRL;
      case KEY_LEFTALT:
      case KEY_RIGHTALT:
        return DHF_HOTKEY_ALT;
      case KEY_LEFTSHIFT:
      case KEY_RIGHTSHIFT:
        return DHF_HOTKEY_SHIFT;
      case KEY_LEFTMETA:
      case KEY_RIGHTMETA:
        return DHF_HOTKEY_SUPER;
      default:
        return 0;
    }
}

static gpointer
binding_key (guint modifiers, guint keycode)
{
  /* keycode < KEY_CNT < 1 << 16, and modifiers are never 0 */
  return GUINT_TO_POINTER (modifiers << 16 | keycode);
}

/* Parses the modifiers of a combo: every part but the last, each one of
 * Ctrl, Alt, Shift, Super at most once. */
static gboolean
parse_modifiers (gchar **parts, guint n_parts, const gchar *combo, guint *modifiers, GError **error)
{
  guint mods = 0;

  for (guint i = 0; i < n_parts; i++)
    {
      guint bit = 0;

      for (guint m = 0; m < G_N_ELEMENTS (modifier_names); m++)
        if (g_ascii_strcasecmp (parts[i], modifier_names[m]) == 0)
          bit = 1u << m;
      if (bit == 0)
        {
          g_set_error (error, DHF_ERROR, DHF_ERROR_INVALID_ARGS,
                       "unknown modifier '%s' in hotkey '%s' (expected Ctrl, Alt, Shift or Super)",
                       parts[i], combo);
          return FALSE;
        }
      if (mods & bit)
        {
          g_set_error (error, DHF_ERROR, DHF_ERROR_INVALID_ARGS,
                       "duplicate modifier '%s' in hotkey '%s'", parts[i], combo);
          return FALSE;
        }
      mods |= bit;
    }
  *modifiers = mods;
  return TRUE;
}

/* The Linux key code of a KEY of the grammar, or 0. */
static guint
parse_key (const gchar *key)
{
  gsize len = strlen (key);
  g_autofree gchar *evdev_name = NULL;
  gint code;

  if (len == 1 && g_ascii_isalnum (key[0]))
    evdev_name = g_strdup_printf ("KEY_%c", g_ascii_toupper (key[0]));
  else if ((len == 2 || len == 3) && g_ascii_tolower (key[0]) == 'f' && key[1] >= '1'
           && key[1] <= '9' && g_ascii_isdigit (key[len - 1]))
    {
      guint n = (guint) g_ascii_strtoull (key + 1, NULL, 10);

      if (n > 24)
        return 0;
      evdev_name = g_strdup_printf ("KEY_F%u", n);
    }
  else
    {
      for (guint i = 0; i < G_N_ELEMENTS (named_keys); i++)
        if (g_ascii_strcasecmp (key, named_keys[i].name) == 0)
          return named_keys[i].code;
      return 0;
    }

  code = libevdev_event_code_from_name (EV_KEY, evdev_name);
  return code > 0 && code < KEY_CNT ? (guint) code : 0;
}

gboolean
dhf_hotkey_parse (const gchar *combo, guint *modifiers, guint *keycode, GError **error)
{
  g_auto (GStrv) parts = NULL;
  guint n_parts;
  guint mods = 0;
  guint code;

  g_return_val_if_fail (combo != NULL, FALSE);
  g_return_val_if_fail (error == NULL || *error == NULL, FALSE);

  parts = g_strsplit (combo, "+", -1);
  n_parts = g_strv_length (parts);
  if (n_parts < 2)
    {
      g_set_error (error, DHF_ERROR, DHF_ERROR_INVALID_ARGS,
                   "hotkey '%s' needs at least one modifier (Ctrl, Alt, Shift or Super) and a key, "
                   "joined by '+'",
                   combo);
      return FALSE;
    }
  if (!parse_modifiers (parts, n_parts - 1, combo, &mods, error))
    return FALSE;
  code = parse_key (parts[n_parts - 1]);
  if (code == 0)
    {
      g_set_error (error, DHF_ERROR, DHF_ERROR_INVALID_ARGS,
                   "unknown key '%s' in hotkey '%s' (expected A-Z, 0-9, F1-F24, Tab, Space, "
                   "Escape, Left, Right, Up, Down, Home, End, PageUp, PageDown, Return, "
                   "BackSpace, Delete, Insert or Print)",
                   parts[n_parts - 1], combo);
      return FALSE;
    }

  if (modifiers != NULL)
    *modifiers = mods;
  if (keycode != NULL)
    *keycode = code;
  return TRUE;
}

static gboolean
is_target (const gchar *target)
{
  if (g_str_equal (target, "@next") || g_str_equal (target, "@previous"))
    return TRUE;
  if (g_str_has_prefix (target, "@slot:"))
    {
      const gchar *n = target + strlen ("@slot:");

      return n[0] >= '1' && n[0] <= '9' && n[1] == '\0';
    }
  /* "dom0" passes as a name */
  return dhf_policy_name_is_valid (target);
}

DhfHotkeyMatcher *
dhf_hotkey_matcher_new (void)
{
  DhfHotkeyMatcher *self = g_new0 (DhfHotkeyMatcher, 1);

  self->bindings = g_hash_table_new_full (g_direct_hash, g_direct_equal, NULL, g_free);
  return self;
}

void
dhf_hotkey_matcher_free (DhfHotkeyMatcher *self)
{
  if (self == NULL)
    return;
  g_hash_table_unref (self->bindings);
  g_free (self);
}

gboolean
dhf_hotkey_matcher_bind (DhfHotkeyMatcher *self, const gchar *combo, const gchar *target,
                         GError **error)
{
  guint modifiers;
  guint keycode;

  g_return_val_if_fail (self != NULL, FALSE);
  g_return_val_if_fail (combo != NULL && target != NULL, FALSE);

  if (!dhf_hotkey_parse (combo, &modifiers, &keycode, error))
    return FALSE;
  if (!is_target (target))
    {
      g_set_error (error, DHF_ERROR, DHF_ERROR_INVALID_ARGS,
                   "'%s' cannot be the target of hotkey '%s' (expected dom0, a domain name, "
                   "@next, @previous or @slot:1 to @slot:9)",
                   target, combo);
      return FALSE;
    }
  g_hash_table_replace (self->bindings, binding_key (modifiers, keycode), g_strdup (target));
  return TRUE;
}

void
dhf_hotkey_matcher_clear (DhfHotkeyMatcher *self)
{
  g_return_if_fail (self != NULL);
  g_hash_table_remove_all (self->bindings);
}

guint
dhf_hotkey_matcher_get_n_bindings (DhfHotkeyMatcher *self)
{
  g_return_val_if_fail (self != NULL, 0);
  return g_hash_table_size (self->bindings);
}

/* The modifiers held now, or G_MAXUINT when a key other than a modifier
 * and except is held too. */
static guint
held_modifiers_except (DhfHotkeyMatcher *self, guint except)
{
  guint mods = 0;

  for (guint w = 0; w < N_WORDS; w++)
    {
      guint64 word = self->held[w];

      while (word != 0)
        {
          guint code = w * 64 + (guint) __builtin_ctzll (word);
          guint bit = modifier_of_key (code);

          word &= word - 1;
          if (code == except)
            continue;
          if (bit == 0)
            return G_MAXUINT;
          mods |= bit;
        }
    }
  return mods;
}

const gchar *
dhf_hotkey_matcher_feed (DhfHotkeyMatcher *self, const struct input_event *event)
{
  guint code;
  guint mods;
  const gchar *target;

  g_return_val_if_fail (self != NULL, NULL);
  g_return_val_if_fail (event != NULL, NULL);

  /* The kernel dropped events, releases among them: what we believe is
   * held may be wrong, and a key we think is still down would block every
   * combo until it is pressed again. */
  if (event->type == EV_SYN && event->code == SYN_DROPPED)
    {
      dhf_hotkey_matcher_reset (self);
      return NULL;
    }
  if (event->type != EV_KEY || event->code >= KEY_CNT)
    return NULL;
  code = event->code;

  switch (event->value)
    {
      case 0:
        bit_set (self->held, code, FALSE);
        bit_set (self->fired, code, FALSE);
        return NULL;
      case 2:
        /* A repeat means the key is down, even if its press was lost. */
        bit_set (self->held, code, TRUE);
        return NULL;
      case 1:
        break;
      default:
        return NULL;
    }

  bit_set (self->held, code, TRUE);
  if (bit_test (self->fired, code) || modifier_of_key (code) != 0)
    return NULL;
  mods = held_modifiers_except (self, code);
  if (mods == 0 || mods == G_MAXUINT)
    return NULL;
  target = g_hash_table_lookup (self->bindings, binding_key (mods, code));
  if (target == NULL)
    return NULL;
  bit_set (self->fired, code, TRUE);
  return target;
}

GArray *
dhf_hotkey_matcher_dup_held (DhfHotkeyMatcher *self)
{
  GArray *held = g_array_new (FALSE, FALSE, sizeof (guint));

  g_return_val_if_fail (self != NULL, held);
  for (guint w = 0; w < N_WORDS; w++)
    {
      guint64 word = self->held[w];

      while (word != 0)
        {
          guint code = w * 64 + (guint) __builtin_ctzll (word);

          word &= word - 1;
          g_array_append_val (held, code);
        }
    }
  return held;
}

void
dhf_hotkey_matcher_reset (DhfHotkeyMatcher *self)
{
  g_return_if_fail (self != NULL);
  memset (self->held, 0, sizeof self->held);
  memset (self->fired, 0, sizeof self->fired);
}

void
dhf_hotkey_matcher_set_held (DhfHotkeyMatcher *self, guint code, gboolean held)
{
  g_return_if_fail (self != NULL);
  if (code >= KEY_CNT)
    return;
  bit_set (self->held, code, held);
  bit_set (self->fired, code, held);
}

static GHashTable *
bindings_copy (GHashTable *from)
{
  GHashTable *copy = g_hash_table_new_full (g_direct_hash, g_direct_equal, NULL, g_free);
  GHashTableIter iter;
  gpointer key;
  gpointer target;

  g_hash_table_iter_init (&iter, from);
  while (g_hash_table_iter_next (&iter, &key, &target))
    g_hash_table_insert (copy, key, g_strdup (target));
  return copy;
}

void
dhf_hotkey_matcher_copy_bindings (DhfHotkeyMatcher *self, DhfHotkeyMatcher *from)
{
  g_return_if_fail (self != NULL && from != NULL);
  if (self == from)
    return;
  g_hash_table_unref (self->bindings);
  self->bindings = bindings_copy (from->bindings);
}

/* The binding a hotkey rule asks for: its TARGET as the matcher spells it,
 * or NULL (with a warning) for a target a hotkey cannot switch to. */
static gchar *
rule_binding_target (const DhfPolicyRule *rule)
{
  g_autofree gchar *target = dhf_policy_rule_dup_target (rule);

  if (dhf_policy_rule_target_is_name (rule) || g_str_equal (target, "@next")
      || g_str_equal (target, "@previous"))
    return g_steal_pointer (&target);
  if (g_str_equal (target, "@dom0"))
    return g_strdup ("dom0");
  g_warning ("%s:%u: hotkey %s: a hotkey switches to one domain, @dom0, @next or @previous, "
             "not %s; rule skipped",
             dhf_policy_rule_get_file (rule), dhf_policy_rule_get_line (rule),
             dhf_policy_rule_get_subject (rule), target);
  return NULL;
}

gboolean
dhf_hotkey_matcher_bind_policy (DhfHotkeyMatcher *self, DhfPolicy *policy,
                                const gchar *slot_modifiers, GError **error)
{
  g_autoptr (GHashTable) bindings = NULL;
  g_autoptr (GHashTable) decided = g_hash_table_new (g_direct_hash, g_direct_equal);
  guint slot_mods = 0;
  guint n_rules;

  g_return_val_if_fail (self != NULL, FALSE);
  g_return_val_if_fail (policy != NULL, FALSE);
  g_return_val_if_fail (error == NULL || *error == NULL, FALSE);

  if (slot_modifiers != NULL && slot_modifiers[0] != '\0')
    {
      g_auto (GStrv) parts = g_strsplit (slot_modifiers, "+", -1);

      if (!parse_modifiers (parts, g_strv_length (parts), slot_modifiers, &slot_mods, error))
        {
          g_prefix_error (error, "[Hotkeys] SlotModifiers: ");
          return FALSE;
        }
    }

  /* Built aside and swapped in at the end, so a failure changes nothing. */
  bindings = bindings_copy (self->bindings);

  n_rules = dhf_policy_get_n_rules (policy);
  for (guint i = 0; i < n_rules; i++)
    {
      const DhfPolicyRule *rule = dhf_policy_get_rule (policy, i);
      guint modifiers;
      guint keycode;
      gpointer key;
      gchar *target;

      if (dhf_policy_rule_get_kind (rule) != DHF_POLICY_KIND_HOTKEY)
        continue;
      if (!dhf_hotkey_parse (dhf_policy_rule_get_subject (rule), &modifiers, &keycode, error))
        {
          g_prefix_error (error, "%s:%u: ", dhf_policy_rule_get_file (rule),
                          dhf_policy_rule_get_line (rule));
          return FALSE;
        }
      key = binding_key (modifiers, keycode);
      if (g_hash_table_contains (decided, key))
        continue;

      /* A deny decides its combo whatever its target: the evaluator would
       * deny that combo's switch to every domain the target matches, and
       * binding a later rule's target could contradict it. */
      if (dhf_policy_rule_get_action (rule) != DHF_POLICY_ACTION_ALLOW)
        {
          g_hash_table_add (decided, key);
          g_hash_table_remove (bindings, key);
          continue;
        }
      target = rule_binding_target (rule);
      if (target == NULL)
        continue;
      g_hash_table_add (decided, key);
      g_hash_table_replace (bindings, key, target);
    }

  if (slot_mods != 0)
    for (guint n = 1; n <= 9; n++)
      {
        gchar digit[2] = { (gchar) ('0' + n), '\0' };
        gpointer key = binding_key (slot_mods, parse_key (digit));

        if (!g_hash_table_contains (decided, key))
          g_hash_table_replace (bindings, key, g_strdup_printf ("@slot:%u", n));
      }

  g_hash_table_unref (self->bindings);
  self->bindings = g_steal_pointer (&bindings);
  return TRUE;
}
