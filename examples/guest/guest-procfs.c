/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include <string.h>

#include "guest-procfs.h"
#include "guest-text.h"

/* Far more than a machine has; a bound on what a bad file can cost. */
#define MAX_TEXT     (1024 * 1024)
#define MAX_DEVICES  1024
#define MAX_HANDLERS 32
/* KEY_MAX is 0x2ff: 12 words of 64 bits, 24 of 32. */
#define MAX_KEY_WORDS 32
/* 31688 years: beyond that an uptime is not the kernel's. */
#define MAX_UPTIME_S G_GINT64_CONSTANT (1000000000000)

void
guest_input_device_free (GuestInputDevice *device)
{
  g_free (device->name);
  g_strfreev (device->handlers);
  g_free (device);
}

static gboolean
fail (GError **error, guint line, const gchar *what)
{
  g_set_error (error, G_IO_ERROR, G_IO_ERROR_INVALID_DATA, "line %u: %s", line, what);
  return FALSE;
}

/* N: Name="..." The kernel prints the name between quotes as it is, so
 * everything between the first and the last quote is the name; what the
 * device chose to call itself is made printable, not refused. */
static gboolean
parse_name (const gchar *value, guint line, gchar **name, GError **error)
{
  gsize length = strlen (value);
  g_autofree gchar *raw = NULL;

  if (!g_str_has_prefix (value, "Name=\"") || length < strlen ("Name=\"\"")
      || value[length - 1] != '"')
    return fail (error, line, "N: is not Name=\"...\"");
  raw = g_strndup (value + strlen ("Name=\""), length - strlen ("Name=\"\""));
  *name = guest_text_make_printable (raw);
  return TRUE;
}

/* H: Handlers=kbd event2 (each handler is followed by a space). */
static gboolean
parse_handlers (const gchar *value, guint line, GStrv *handlers, GError **error)
{
  g_autoptr (GStrvBuilder) builder = g_strv_builder_new ();
  g_auto (GStrv) words = NULL;
  guint count = 0;

  if (!g_str_has_prefix (value, "Handlers="))
    return fail (error, line, "H: is not Handlers=...");
  words = g_strsplit (value + strlen ("Handlers="), " ", -1);
  for (guint i = 0; words[i] != NULL; i++)
    {
      if (*words[i] == '\0')
        continue;
      for (const gchar *p = words[i]; *p != '\0'; p++)
        if (!g_ascii_isalnum (*p) && *p != '_' && *p != '-')
          return fail (error, line, "a handler name has a character other than [A-Za-z0-9_-]");
      if (++count > MAX_HANDLERS)
        return fail (error, line, "too many handlers");
      g_strv_builder_add (builder, words[i]);
    }
  *handlers = g_strv_builder_end (builder);
  return TRUE;
}

/* B: KEY=... is a bitmap printed as hex words, most significant first.
 * KEY_A (30) is in the last word whether the kernel's words have 32 or 64
 * bits, so this needs no guess of the word size. */
static gboolean
parse_key_bitmap (const gchar *value, guint line, gboolean *has_key_a, GError **error)
{
  g_auto (GStrv) words = g_strsplit (value, " ", -1);
  guint count = g_strv_length (words);
  guint64 last = 0;

  if (count == 0 || count > MAX_KEY_WORDS)
    return fail (error, line, "B: KEY= has no words or too many");
  for (guint i = 0; i < count; i++)
    {
      gsize length = strlen (words[i]);

      if (length == 0 || length > 16)
        return fail (error, line, "B: KEY= has a word that is not 1 to 16 hex digits");
      for (gsize j = 0; j < length; j++)
        if (!g_ascii_isxdigit (words[i][j]))
          return fail (error, line, "B: KEY= has a word that is not 1 to 16 hex digits");
    }
  last = g_ascii_strtoull (words[count - 1], NULL, 16);
  *has_key_a = (last & (G_GUINT64_CONSTANT (1) << GUEST_KEY_A)) != 0;
  return TRUE;
}

typedef struct
{
  guint first_line;
  gchar *name;
  GStrv handlers;
  gboolean has_key_bitmap;
  gboolean keyboard;
} Block;

static void
block_clear (Block *block)
{
  g_clear_pointer (&block->name, g_free);
  g_clear_pointer (&block->handlers, g_strfreev);
  memset (block, 0, sizeof *block);
}

/* A block is done at its blank line (or the end of the text). */
static gboolean
finish_block (Block *block, GPtrArray *devices, GError **error)
{
  GuestInputDevice *device;

  if (block->name == NULL)
    return fail (error, block->first_line, "a device without N: Name=");
  if (block->handlers == NULL)
    return fail (error, block->first_line, "a device without H: Handlers=");
  if (devices->len >= MAX_DEVICES)
    return fail (error, block->first_line, "too many devices");
  device = g_new0 (GuestInputDevice, 1);
  device->name = g_steal_pointer (&block->name);
  device->handlers = g_steal_pointer (&block->handlers);
  device->keyboard = block->keyboard;
  g_ptr_array_add (devices, device);
  block_clear (block);
  return TRUE;
}

static gboolean
parse_line (Block *block, const gchar *text, guint line, GError **error)
{
  const gchar *value = text + 3;

  /* "X: value": X an upper-case letter. Unknown letters are skipped, as
   * later kernels may add some. */
  if (!g_ascii_isupper (text[0]) || text[1] != ':' || text[2] != ' ')
    return fail (error, line, "not a \"X: value\" line");
  if (block->first_line == 0)
    block->first_line = line;
  switch (text[0])
    {
      case 'N':
        if (block->name != NULL)
          return fail (error, line, "a second N: line in one device");
        return parse_name (value, line, &block->name, error);
      case 'H':
        if (block->handlers != NULL)
          return fail (error, line, "a second H: line in one device");
        return parse_handlers (value, line, &block->handlers, error);
      case 'B':
        if (!g_str_has_prefix (value, "KEY="))
          return TRUE;
        if (block->has_key_bitmap)
          return fail (error, line, "a second B: KEY= line in one device");
        block->has_key_bitmap = TRUE;
        return parse_key_bitmap (value + strlen ("KEY="), line, &block->keyboard, error);
      default:
        return TRUE;
    }
}

GPtrArray *
guest_procfs_parse_input_devices (const gchar *text, gsize length, GError **error)
{
  g_autoptr (GPtrArray) devices
      = g_ptr_array_new_with_free_func ((GDestroyNotify) guest_input_device_free);
  g_auto (GStrv) lines = NULL;
  Block block = { 0 };
  guint count;

  if (length > MAX_TEXT)
    {
      g_set_error (error, G_IO_ERROR, G_IO_ERROR_INVALID_DATA, "over %d bytes", MAX_TEXT);
      return NULL;
    }
  if (memchr (text, '\0', length) != NULL)
    {
      g_set_error_literal (error, G_IO_ERROR, G_IO_ERROR_INVALID_DATA, "a NUL byte");
      return NULL;
    }
  if (length == 0)
    return g_steal_pointer (&devices);
  if (text[length - 1] != '\n')
    {
      g_set_error_literal (error, G_IO_ERROR, G_IO_ERROR_INVALID_DATA,
                           "the last line has no newline (cut short?)");
      return NULL;
    }

  {
    g_autofree gchar *copy = g_strndup (text, length - 1);

    lines = g_strsplit (copy, "\n", -1);
  }
  count = g_strv_length (lines);
  for (guint i = 0; i < count; i++)
    {
      gboolean ok;

      if (*lines[i] == '\0')
        ok = block.first_line == 0 || finish_block (&block, devices, error);
      else
        ok = parse_line (&block, lines[i], i + 1, error);
      if (!ok)
        {
          block_clear (&block);
          return NULL;
        }
    }
  if (block.first_line != 0 && !finish_block (&block, devices, error))
    {
      block_clear (&block);
      return NULL;
    }
  return g_steal_pointer (&devices);
}

GPtrArray *
guest_procfs_read_input_devices (const gchar *path, GError **error)
{
  g_autoptr (GError) local_error = NULL;
  g_autofree gchar *text = NULL;
  GPtrArray *devices;
  gsize length = 0;

  if (!g_file_get_contents (path, &text, &length, &local_error))
    {
      if (g_error_matches (local_error, G_FILE_ERROR, G_FILE_ERROR_NOENT))
        return g_ptr_array_new_with_free_func ((GDestroyNotify) guest_input_device_free);
      g_propagate_error (error, g_steal_pointer (&local_error));
      return NULL;
    }
  devices = guest_procfs_parse_input_devices (text, length, error);
  if (devices == NULL)
    g_prefix_error (error, "%s: ", path);
  return devices;
}

/* "DIGITS" or "DIGITS.DIGITS" (the kernel prints 2 decimals), in ms. */
static gboolean
parse_seconds (const gchar *text, gint64 *ms)
{
  const gchar *p = text;
  gint64 seconds = 0;
  gint64 fraction_ms = 0;
  guint decimals = 0;

  if (!g_ascii_isdigit (*p))
    return FALSE;
  for (; g_ascii_isdigit (*p); p++)
    {
      seconds = seconds * 10 + (*p - '0');
      if (seconds > MAX_UPTIME_S)
        return FALSE;
    }
  if (*p == '.')
    {
      for (p++; g_ascii_isdigit (*p); p++, decimals++)
        if (decimals < 3)
          fraction_ms = fraction_ms * 10 + (*p - '0');
      if (decimals == 0 || decimals > 9)
        return FALSE;
      for (guint i = decimals; i < 3; i++)
        fraction_ms *= 10;
    }
  if (*p != '\0')
    return FALSE;
  *ms = seconds * 1000 + fraction_ms;
  return TRUE;
}

gboolean
guest_procfs_parse_uptime (const gchar *text, gsize length, gint64 *uptime_ms, GError **error)
{
  g_autofree gchar *copy = NULL;
  g_auto (GStrv) fields = NULL;
  gint64 idle_ms;

  /* "UPTIME IDLE\n" and nothing else. */
  if (length == 0 || length > 64 || memchr (text, '\0', length) != NULL || text[length - 1] != '\n')
    {
      g_set_error_literal (error, G_IO_ERROR, G_IO_ERROR_INVALID_DATA,
                           "not one line of \"UPTIME IDLE\"");
      return FALSE;
    }
  copy = g_strndup (text, length - 1);
  fields = g_strsplit (copy, " ", -1);
  if (g_strv_length (fields) != 2 || !parse_seconds (fields[0], uptime_ms)
      || !parse_seconds (fields[1], &idle_ms))
    {
      g_set_error_literal (error, G_IO_ERROR, G_IO_ERROR_INVALID_DATA,
                           "not \"SECONDS.FRACTION SECONDS.FRACTION\"");
      return FALSE;
    }
  return TRUE;
}

gboolean
guest_procfs_read_uptime (const gchar *path, gint64 *uptime_ms, GError **error)
{
  g_autofree gchar *text = NULL;
  gsize length = 0;

  if (!g_file_get_contents (path, &text, &length, error))
    return FALSE;
  if (!guest_procfs_parse_uptime (text, length, uptime_ms, error))
    {
      g_prefix_error (error, "%s: ", path);
      return FALSE;
    }
  return TRUE;
}
