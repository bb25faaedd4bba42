/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include "config.h"

#include <string.h>

#include "dhf-policy-private.h"

/* The SUBJECT column of every kind: validation and normalisation (the
 * grammar is in dhf-policy-parse.c). */

static const gchar *const modifiers[] = { "Ctrl", "Alt", "Shift", "Super" };
static const gchar *const named_keys[] = {
  "Tab", "Space",  "Escape",   "Left",   "Right",     "Up",     "Down",   "Home",
  "End", "PageUp", "PageDown", "Return", "BackSpace", "Delete", "Insert", "Print",
};

void
dhf_policy_subject_clear (DhfPolicySubject *subject)
{
  g_clear_pointer (&subject->text, g_free);
  g_clear_pointer (&subject->key, g_free);
  g_clear_pointer (&subject->argument, g_free);
}

static void set_message (gchar **message, const gchar *format, ...) G_GNUC_PRINTF (2, 3);

static void
set_message (gchar **message, const gchar *format, ...)
{
  va_list args;

  if (message == NULL)
    return;
  va_start (args, format);
  *message = g_strdup_vprintf (format, args);
  va_end (args);
}

static gboolean
all_chars (const gchar *s, gsize len, const gchar *extra)
{
  for (gsize i = 0; i < len; i++)
    if (!g_ascii_isalnum (s[i]) && strchr (extra, s[i]) == NULL)
      return FALSE;
  return TRUE;
}

static gboolean
is_lower_word (const gchar *s, gsize len)
{
  if (len == 0 || len > 64)
    return FALSE;
  for (gsize i = 0; i < len; i++)
    if (!g_ascii_islower (s[i]) && !g_ascii_isdigit (s[i]) && s[i] != '_')
      return FALSE;
  return TRUE;
}

static gboolean
is_hex (const gchar *s, gsize len)
{
  for (gsize i = 0; i < len; i++)
    if (!g_ascii_isxdigit (s[i]))
      return FALSE;
  return TRUE;
}

/* Reverse-DNS: two or more elements [A-Za-z_][A-Za-z0-9_-]*, at most 255. */
static gboolean
is_service_name (const gchar *s, gsize len)
{
  guint elements = 0;
  gsize start = 0;

  if (len == 0 || len > 255)
    return FALSE;
  for (gsize i = 0; i <= len; i++)
    {
      if (i < len && s[i] != '.')
        {
          gboolean first = i == start;

          if (!(g_ascii_isalpha (s[i]) || s[i] == '_'
                || (!first && (g_ascii_isdigit (s[i]) || s[i] == '-'))))
            return FALSE;
          continue;
        }
      if (i == start)
        return FALSE;
      elements++;
      start = i + 1;
    }
  return elements >= 2;
}

static gboolean
parse_xdm (const gchar *text, DhfPolicySubject *subject, gchar **message)
{
  const gchar *plus = strchr (text, '+');
  gsize service_len = plus != NULL ? (gsize) (plus - text) : strlen (text);

  if (g_str_equal (text, "*"))
    {
      subject->select = DHF_POLICY_SELECT_ALL;
      subject->text = g_strdup ("*");
      return TRUE;
    }
  if (service_len == 1 && text[0] == '*')
    {
      set_message (message, "the wildcard service '*' takes no +ARGUMENT");
      return FALSE;
    }
  if (!is_service_name (text, service_len))
    {
      static const gchar *const kinds[] = { "device", "acpi", "hotkey", "network" };

      for (gsize i = 0; i < G_N_ELEMENTS (kinds); i++)
        if (g_str_equal (text, kinds[i]))
          {
            set_message (message, "'%s' needs a selector: %s:...", text, text);
            return FALSE;
          }
      set_message (message,
                   "invalid service name '%.*s' (expected a reverse-DNS name such as "
                   "org.example.Sync1, or *)",
                   (int) service_len, text);
      return FALSE;
    }
  if (plus != NULL)
    {
      gsize arg_len = strlen (plus + 1);

      if (arg_len > 64 || !all_chars (plus + 1, arg_len, "._-"))
        {
          set_message (message,
                       "invalid argument '%s' (expected at most 64 letters, digits, '.', '_' "
                       "or '-')",
                       plus + 1);
          return FALSE;
        }
      subject->argument = g_strdup (plus + 1);
    }
  subject->select = DHF_POLICY_SELECT_EXACT;
  subject->key = g_strndup (text, service_len);
  subject->text = g_strdup (text);
  return TRUE;
}

static gboolean
parse_usb (const gchar *sel, DhfPolicySubject *subject, gchar **message)
{
  gsize len = strlen (sel);

  if (g_str_equal (sel, "*"))
    {
      subject->select = DHF_POLICY_SELECT_CLASS;
      subject->key = g_strdup ("usb");
      return TRUE;
    }
  if (len < 9 || !is_hex (sel, 4) || sel[4] != ':' || !is_hex (sel + 5, 4)
      || (len > 9 && sel[9] != ':'))
    {
      set_message (message,
                   "invalid USB device 'usb:%s' (expected usb:*, usb:VVVV:PPPP or "
                   "usb:VVVV:PPPP:SERIAL with 4 hex digits each)",
                   sel);
      return FALSE;
    }
  if (len > 9 && (len - 10 == 0 || len - 10 > 128 || !all_chars (sel + 10, len - 10, "._-")))
    {
      set_message (message,
                   "invalid USB serial '%s' (expected 1 to 128 letters, digits, '.', '_' or "
                   "'-')",
                   sel + 10);
      return FALSE;
    }
  subject->select = DHF_POLICY_SELECT_EXACT;
  subject->key = g_strconcat ("usb:", sel, NULL);
  for (gsize i = 4; i < 13; i++)
    subject->key[i] = g_ascii_tolower (subject->key[i]);
  return TRUE;
}

static gboolean
parse_pci (const gchar *sel, DhfPolicySubject *subject, gchar **message)
{
  if (g_str_equal (sel, "*"))
    {
      subject->select = DHF_POLICY_SELECT_CLASS;
      subject->key = g_strdup ("pci");
      return TRUE;
    }
  /* DDDD:BB:SS.F */
  if (strlen (sel) != 12 || !is_hex (sel, 4) || sel[4] != ':' || !is_hex (sel + 5, 2)
      || sel[7] != ':' || !is_hex (sel + 8, 2) || sel[10] != '.' || sel[11] < '0' || sel[11] > '7'
      || g_ascii_xdigit_value (sel[8]) > 1)
    {
      set_message (message,
                   "invalid PCI address 'pci:%s' (expected pci:* or pci:DDDD:BB:SS.F in hex, "
                   "slot at most 1f, function at most 7)",
                   sel);
      return FALSE;
    }
  subject->select = DHF_POLICY_SELECT_EXACT;
  subject->key = g_ascii_strdown (sel - 4, -1);
  return TRUE;
}

static gboolean
parse_device (const gchar *sel, DhfPolicySubject *subject, gchar **message)
{
  gboolean ok;

  if (g_str_equal (sel, "*"))
    {
      subject->select = DHF_POLICY_SELECT_ALL;
      subject->text = g_strdup ("device:*");
      return TRUE;
    }
  if (g_str_has_prefix (sel, "usb:"))
    ok = parse_usb (sel + 4, subject, message);
  else if (g_str_has_prefix (sel, "pci:"))
    ok = parse_pci (sel + 4, subject, message);
  else if (g_str_equal (sel, "input:*"))
    {
      subject->select = DHF_POLICY_SELECT_CLASS;
      subject->key = g_strdup ("input");
      ok = TRUE;
    }
  else if (g_str_has_prefix (sel, "input:"))
    {
      ok = g_str_equal (sel, "input:keyboard") || g_str_equal (sel, "input:mouse")
           || g_str_equal (sel, "input:tablet");
      if (ok)
        {
          subject->select = DHF_POLICY_SELECT_EXACT;
          subject->key = g_strdup (sel);
        }
      else
        set_message (message, "unknown input device '%s' (expected keyboard, mouse, tablet or *)",
                     sel + 6);
    }
  else
    {
      set_message (message,
                   "invalid device selector '%s' (expected *, usb:..., pci:... or input:...)", sel);
      ok = FALSE;
    }
  if (!ok)
    return FALSE;
  subject->text = subject->select == DHF_POLICY_SELECT_CLASS
                      ? g_strdup_printf ("device:%s:*", subject->key)
                      : g_strconcat ("device:", subject->key, NULL);
  return TRUE;
}

static gboolean
parse_acpi (const gchar *event, DhfPolicySubject *subject, gchar **message)
{
  const gchar *slash = strchr (event, '/');
  gsize class_len = slash != NULL ? (gsize) (slash - event) : strlen (event);

  if (g_str_equal (event, "*"))
    {
      subject->select = DHF_POLICY_SELECT_ALL;
      subject->text = g_strdup ("acpi:*");
      return TRUE;
    }
  if (!is_lower_word (event, class_len)
      || (slash != NULL && !g_str_equal (slash + 1, "*")
          && !is_lower_word (slash + 1, strlen (slash + 1))))
    {
      set_message (message,
                   "invalid ACPI event '%s' (expected *, CLASS, CLASS/* or CLASS/NAME of at most "
                   "64 lowercase letters, digits or '_' each)",
                   event);
      return FALSE;
    }
  if (slash == NULL || g_str_equal (slash + 1, "*"))
    {
      subject->select = DHF_POLICY_SELECT_CLASS;
      subject->key = g_strndup (event, class_len);
      subject->text = g_strdup_printf ("acpi:%s/*", subject->key);
      return TRUE;
    }
  subject->select = DHF_POLICY_SELECT_EXACT;
  subject->key = g_strdup (event);
  subject->text = g_strconcat ("acpi:", event, NULL);
  return TRUE;
}

/* Strict decimal port 1..65535. */
static gboolean
parse_port (const gchar *s, gsize len, guint *port)
{
  guint value = 0;

  if (len == 0 || len > 5)
    return FALSE;
  for (gsize i = 0; i < len; i++)
    {
      if (!g_ascii_isdigit (s[i]))
        return FALSE;
      value = value * 10 + (guint) (s[i] - '0');
    }
  *port = value;
  return value >= 1 && value <= 65535;
}

static gboolean
parse_network (const gchar *dest, DhfPolicySubject *subject, gchar **message)
{
  const gchar *slash = strchr (dest, '/');
  gsize proto_len = slash != NULL ? (gsize) (slash - dest) : strlen (dest);
  g_autofree gchar *proto = g_strndup (dest, proto_len);
  const gchar *ports = slash != NULL ? slash + 1 : NULL;
  const gchar *dash;
  guint lo, hi;

  if (!g_str_equal (proto, "tcp") && !g_str_equal (proto, "udp") && !g_str_equal (proto, "icmp")
      && !g_str_equal (proto, "*"))
    {
      set_message (message, "unknown protocol '%s' (expected tcp, udp, icmp or *)", proto);
      return FALSE;
    }
  if (ports == NULL)
    {
      gboolean all = g_str_equal (proto, "*");

      subject->select = all ? DHF_POLICY_SELECT_ALL : DHF_POLICY_SELECT_CLASS;
      subject->key = all ? NULL : g_strdup (proto);
      subject->text = g_strconcat ("network:", proto, NULL);
      return TRUE;
    }
  if (g_str_equal (proto, "icmp") || g_str_equal (proto, "*"))
    {
      set_message (message, "'%s' takes no ports (only tcp and udp do)", proto);
      return FALSE;
    }
  dash = strchr (ports, '-');
  if (dash == NULL)
    {
      if (!parse_port (ports, strlen (ports), &lo))
        {
          set_message (message, "invalid port '%s' (expected 1 to 65535, or N-M)", ports);
          return FALSE;
        }
      hi = lo;
    }
  else if (!parse_port (ports, (gsize) (dash - ports), &lo)
           || !parse_port (dash + 1, strlen (dash + 1), &hi) || lo > hi)
    {
      set_message (message, "invalid port range '%s' (expected N-M with 1 <= N <= M <= 65535)",
                   ports);
      return FALSE;
    }
  subject->port_lo = lo;
  subject->port_hi = hi;
  if (lo == hi)
    {
      subject->select = DHF_POLICY_SELECT_EXACT;
      subject->key = g_strdup_printf ("%s/%u", proto, lo);
      subject->text = g_strconcat ("network:", subject->key, NULL);
      return TRUE;
    }
  subject->select = DHF_POLICY_SELECT_RANGE;
  subject->key = g_strdup (proto);
  subject->text = g_strdup_printf ("network:%s/%u-%u", proto, lo, hi);
  return TRUE;
}

gboolean
dhf_policy_hotkey_normalise (const gchar *combo, gchar *buf, gsize size, gchar **message)
{
  guint mods = 0;
  const gchar *key = NULL;
  gsize key_len = 0;
  const gchar *part = combo;
  gchar keybuf[16];
  gsize out = 0;

  for (;;)
    {
      const gchar *plus = strchr (part, '+');
      gsize len = plus != NULL ? (gsize) (plus - part) : strlen (part);
      gint mod = -1;

      for (guint i = 0; i < G_N_ELEMENTS (modifiers); i++)
        if (strlen (modifiers[i]) == len && g_ascii_strncasecmp (part, modifiers[i], len) == 0)
          mod = (gint) i;
      if (plus == NULL)
        {
          key = part;
          key_len = len;
          break;
        }
      if (mod < 0)
        {
          set_message (message,
                       "unknown modifier '%.*s' in hotkey '%s' (expected Ctrl, Alt, Shift or "
                       "Super)",
                       (int) len, part, combo);
          return FALSE;
        }
      if (mods & (1u << mod))
        {
          set_message (message, "duplicate modifier '%s' in hotkey '%s'", modifiers[mod], combo);
          return FALSE;
        }
      mods |= 1u << mod;
      part = plus + 1;
    }

  keybuf[0] = '\0';
  if (key_len == 1 && g_ascii_isalnum (key[0]))
    {
      keybuf[0] = g_ascii_toupper (key[0]);
      keybuf[1] = '\0';
    }
  else if (key_len >= 2 && key_len <= 3 && (key[0] == 'F' || key[0] == 'f')
           && all_chars (key + 1, key_len - 1, "") && key[1] != '0')
    {
      guint n = (guint) g_ascii_strtoull (key + 1, NULL, 10);

      if (n >= 1 && n <= 24 && g_ascii_isdigit (key[1]) && g_ascii_isdigit (key[key_len - 1]))
        g_snprintf (keybuf, sizeof keybuf, "F%u", n);
    }
  else
    for (guint i = 0; i < G_N_ELEMENTS (named_keys); i++)
      if (strlen (named_keys[i]) == key_len
          && g_ascii_strncasecmp (key, named_keys[i], key_len) == 0)
        g_strlcpy (keybuf, named_keys[i], sizeof keybuf);

  if (keybuf[0] == '\0')
    {
      set_message (message,
                   "unknown key '%.*s' in hotkey '%s' (expected A-Z, 0-9, F1-F24, Tab, Space, "
                   "Escape, Left, Right, Up, Down, Home, End, PageUp, PageDown, Return, "
                   "BackSpace, Delete, Insert or Print)",
                   (int) key_len, key, combo);
      return FALSE;
    }
  if (mods == 0)
    {
      set_message (message, "hotkey '%s' needs at least one modifier (Ctrl, Alt, Shift or Super)",
                   combo);
      return FALSE;
    }

  for (guint i = 0; i < G_N_ELEMENTS (modifiers); i++)
    if (mods & (1u << i))
      {
        gsize n = strlen (modifiers[i]);

        if (out + n + 1 >= size)
          return FALSE;
        memcpy (buf + out, modifiers[i], n);
        buf[out + n] = '+';
        out += n + 1;
      }
  if (out + strlen (keybuf) >= size)
    return FALSE;
  memcpy (buf + out, keybuf, strlen (keybuf) + 1);
  return TRUE;
}

static gboolean
parse_hotkey (const gchar *combo, DhfPolicySubject *subject, gchar **message)
{
  gchar buf[64];

  if (!dhf_policy_hotkey_normalise (combo, buf, sizeof buf, message))
    return FALSE;
  subject->select = DHF_POLICY_SELECT_EXACT;
  subject->key = g_strdup (buf);
  subject->text = g_strconcat ("hotkey:", buf, NULL);
  return TRUE;
}

/* ---- query subjects ------------------------------------------------------
 *
 * What a query names must be one concrete subject of the grammar, not a
 * pattern: otherwise a malformed name ("Button/Power", "tcp", "usb:46d:c52b")
 * would miss every exact rule yet still match the wildcard and class rules
 * below them. These checks mirror the parsers above without allocating. */

static gboolean
copy_lower (const gchar *s, gsize len, gchar *buf, gsize size)
{
  if (len >= size)
    return FALSE;
  for (gsize i = 0; i < len; i++)
    buf[i] = g_ascii_tolower (s[i]);
  buf[len] = '\0';
  return TRUE;
}

static gboolean
query_device (const gchar *s, gchar *buf, gsize size)
{
  gsize len = strlen (s);

  if (g_str_has_prefix (s, "usb:"))
    {
      const gchar *sel = s + 4;
      gsize sel_len = len - 4;

      if (sel_len < 9 || !is_hex (sel, 4) || sel[4] != ':' || !is_hex (sel + 5, 4)
          || (sel_len > 9
              && (sel[9] != ':' || sel_len - 10 == 0 || sel_len - 10 > 128
                  || !all_chars (sel + 10, sel_len - 10, "._-"))))
        return FALSE;
      /* Hex is compared lowercase; a USB serial keeps its case. */
      if (!copy_lower (s, 13, buf, size) || len >= size)
        return FALSE;
      memcpy (buf + 13, s + 13, len - 13 + 1);
      return TRUE;
    }
  if (g_str_has_prefix (s, "pci:"))
    {
      const gchar *sel = s + 4;

      if (len - 4 != 12 || !is_hex (sel, 4) || sel[4] != ':' || !is_hex (sel + 5, 2)
          || sel[7] != ':' || !is_hex (sel + 8, 2) || sel[10] != '.' || sel[11] < '0'
          || sel[11] > '7' || g_ascii_xdigit_value (sel[8]) > 1)
        return FALSE;
      return copy_lower (s, len, buf, size);
    }
  if (g_str_equal (s, "input:keyboard") || g_str_equal (s, "input:mouse")
      || g_str_equal (s, "input:tablet"))
    return copy_lower (s, len, buf, size);
  return FALSE;
}

static gboolean
query_network (const gchar *s, gchar *buf, gsize size, guint *port)
{
  guint value;

  *port = 0;
  if (g_str_equal (s, "icmp"))
    return g_strlcpy (buf, s, size) < size;
  if ((strncmp (s, "tcp/", 4) != 0 && strncmp (s, "udp/", 4) != 0)
      || !parse_port (s + 4, strlen (s + 4), &value))
    return FALSE;
  *port = value;
  return (gsize) g_snprintf (buf, size, "%.3s/%u", s, value) < size;
}

gboolean
dhf_policy_query_normalise (DhfPolicyKind kind, const gchar *subject, const gchar *argument,
                            gchar *buf, gsize size, guint *port)
{
  const gchar *slash;

  *port = 0;
  if (kind == DHF_POLICY_KIND_SWITCH)
    return subject == NULL && argument == NULL;
  if (subject == NULL || (argument != NULL && kind != DHF_POLICY_KIND_XDM))
    return FALSE;
  switch (kind)
    {
      case DHF_POLICY_KIND_XDM:
        if (!is_service_name (subject, strlen (subject))
            || (argument != NULL
                && (strlen (argument) > 64 || !all_chars (argument, strlen (argument), "._-"))))
          return FALSE;
        return g_strlcpy (buf, subject, size) < size;
      case DHF_POLICY_KIND_DEVICE:
        return query_device (subject, buf, size);
      case DHF_POLICY_KIND_ACPI:
        /* CLASS/NAME, or a bare CLASS for events that have no name
         * ("ac_adapter"); either is one event, never a pattern. */
        slash = strchr (subject, '/');
        if (!is_lower_word (subject, slash != NULL ? (gsize) (slash - subject) : strlen (subject))
            || (slash != NULL && !is_lower_word (slash + 1, strlen (slash + 1))))
          return FALSE;
        return g_strlcpy (buf, subject, size) < size;
      case DHF_POLICY_KIND_HOTKEY:
        return dhf_policy_hotkey_normalise (subject, buf, size, NULL);
      case DHF_POLICY_KIND_NETWORK:
        return query_network (subject, buf, size, port);
      case DHF_POLICY_KIND_SWITCH:
      case DHF_POLICY_N_KINDS:
      default:
        return FALSE;
    }
}

static const gchar *const kind_prefixes[] = { "device", "switch", "acpi", "hotkey", "network" };

gboolean
dhf_policy_subject_parse (const gchar *text, DhfPolicySubject *subject, gchar **message)
{
  const gchar *colon = strchr (text, ':');
  const gchar *suggestion;

  memset (subject, 0, sizeof *subject);
  if (g_str_equal (text, "switch"))
    {
      subject->kind = DHF_POLICY_KIND_SWITCH;
      subject->select = DHF_POLICY_SELECT_ALL;
      subject->text = g_strdup ("switch");
      return TRUE;
    }
  if (colon == NULL)
    {
      subject->kind = DHF_POLICY_KIND_XDM;
      return parse_xdm (text, subject, message);
    }
  if (g_str_has_prefix (text, "device:"))
    {
      subject->kind = DHF_POLICY_KIND_DEVICE;
      return parse_device (colon + 1, subject, message);
    }
  if (g_str_has_prefix (text, "acpi:"))
    {
      subject->kind = DHF_POLICY_KIND_ACPI;
      return parse_acpi (colon + 1, subject, message);
    }
  if (g_str_has_prefix (text, "hotkey:"))
    {
      subject->kind = DHF_POLICY_KIND_HOTKEY;
      return parse_hotkey (colon + 1, subject, message);
    }
  if (g_str_has_prefix (text, "network:"))
    {
      subject->kind = DHF_POLICY_KIND_NETWORK;
      return parse_network (colon + 1, subject, message);
    }
  if (g_str_has_prefix (text, "switch:"))
    {
      set_message (message, "'switch' takes no selector");
      return FALSE;
    }
  suggestion = dhf_policy_suggest (text, (gsize) (colon - text), kind_prefixes,
                                   G_N_ELEMENTS (kind_prefixes));
  if (suggestion != NULL)
    {
      set_message (message, "unknown rule kind '%.*s' (did you mean '%s'?)", (int) (colon - text),
                   text, suggestion);
      return FALSE;
    }
  set_message (message,
               "unknown rule kind '%.*s' (expected device, switch, acpi, hotkey or network, or a "
               "service name)",
               (int) (colon - text), text);
  return FALSE;
}
