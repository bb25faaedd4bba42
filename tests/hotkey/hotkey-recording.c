/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include "config.h"

#include <string.h>

#include <libevdev/libevdev.h>

#include "hotkey-recording.h"

static void
check_free (gpointer data)
{
  HotkeyCheck *check = data;

  g_free (check->target);
  g_array_unref (check->held);
  g_free (check);
}

void
hotkey_recording_free (HotkeyRecording *recording)
{
  if (recording == NULL)
    return;
  g_free (recording->name);
  g_array_unref (recording->events);
  g_ptr_array_unref (recording->binds);
  g_ptr_array_unref (recording->checks);
  g_free (recording);
}

gchar *
hotkey_recording_dir (void)
{
  return g_test_build_filename (G_TEST_DIST, "hotkey", "recordings", NULL);
}

gchar *
hotkey_codes_to_string (GArray *codes)
{
  GString *out = g_string_new (NULL);

  for (guint i = 0; i < codes->len; i++)
    {
      guint code = g_array_index (codes, guint, i);
      const gchar *name = libevdev_event_code_get_name (EV_KEY, code);

      if (i > 0)
        g_string_append_c (out, ' ');
      if (name != NULL)
        g_string_append (out, name);
      else
        g_string_append_printf (out, "%u", code);
    }
  return g_string_free (out, FALSE);
}

guint
hotkey_recording_count_fires (HotkeyRecording *recording)
{
  guint n = 0;

  for (guint i = 0; i < recording->checks->len; i++)
    if (((HotkeyCheck *) g_ptr_array_index (recording->checks, i))->target != NULL)
      n++;
  return n;
}

/* An unsigned number in base, all of text, at most max. */
static gboolean
parse_number (const gchar *text, guint base, guint64 max, guint64 *out)
{
  gchar *end = NULL;

  if (text[0] == '\0' || !g_ascii_isxdigit (text[0]))
    return FALSE;
  *out = g_ascii_strtoull (text, &end, base);
  return *end == '\0' && *out <= max;
}

static gboolean
parse_event (const gchar *text, struct input_event *event)
{
  g_auto (GStrv) fields = g_strsplit_set (text, " \t", -1);
  g_autoptr (GPtrArray) words = g_ptr_array_new ();
  guint64 sec;
  guint64 usec;
  guint64 type;
  guint64 code;
  gint64 value;
  const gchar *dot;
  g_autofree gchar *sec_text = NULL;
  gchar *end = NULL;

  for (guint i = 0; fields[i] != NULL; i++)
    if (fields[i][0] != '\0')
      g_ptr_array_add (words, fields[i]);
  if (words->len != 5 || strcmp (words->pdata[0], "E:") != 0)
    return FALSE;
  dot = strchr (words->pdata[1], '.');
  if (dot == NULL || strlen (dot + 1) != 6)
    return FALSE;
  sec_text = g_strndup (words->pdata[1], (gsize) (dot - (const gchar *) words->pdata[1]));
  if (!parse_number (sec_text, 10, G_MAXINT32, &sec) || !parse_number (dot + 1, 10, 999999, &usec)
      || !parse_number (words->pdata[2], 16, G_MAXUINT16, &type)
      || !parse_number (words->pdata[3], 16, G_MAXUINT16, &code))
    return FALSE;
  value = g_ascii_strtoll (words->pdata[4], &end, 10);
  if (*end != '\0' || end == words->pdata[4] || value < G_MININT32 || value > G_MAXINT32)
    return FALSE;

  memset (event, 0, sizeof *event);
  event->input_event_sec = (time_t) sec;
  event->input_event_usec = (suseconds_t) usec;
  event->type = (guint16) type;
  event->code = (guint16) code;
  event->value = (gint32) value;
  return TRUE;
}

static GArray *
parse_keys (gchar **names, const gchar *where)
{
  GArray *codes = g_array_new (FALSE, FALSE, sizeof (guint));

  for (guint i = 0; names[i] != NULL; i++)
    {
      gint code;

      if (names[i][0] == '\0')
        continue;
      code = libevdev_event_code_from_name (EV_KEY, names[i]);
      if (code < 0)
        g_error ("%s: unknown key name '%s'", where, names[i]);
      g_array_append_val (codes, code);
    }
  return codes;
}

static void
parse_directive (HotkeyRecording *recording, const gchar *text, const gchar *where)
{
  g_auto (GStrv) words = g_strsplit (text, " ", -1);
  guint n = g_strv_length (words);

  if (n == 3 && g_str_equal (words[0], "bind"))
    {
      g_ptr_array_add (recording->binds, g_strdup (words[1]));
      g_ptr_array_add (recording->binds, g_strdup (words[2]));
    }
  else if (n >= 3 && g_str_equal (words[0], "fire") && g_str_equal (words[2], "held"))
    {
      HotkeyCheck *check = g_new0 (HotkeyCheck, 1);

      check->after = recording->events->len;
      check->target = g_strdup (words[1]);
      check->held = parse_keys (words + 3, where);
      g_ptr_array_add (recording->checks, check);
    }
  else if (n >= 1 && g_str_equal (words[0], "held"))
    {
      HotkeyCheck *check = g_new0 (HotkeyCheck, 1);

      check->after = recording->events->len;
      check->held = parse_keys (words + 1, where);
      g_ptr_array_add (recording->checks, check);
    }
  else
    g_error ("%s: cannot read the directive '%s'", where, text);
}

HotkeyRecording *
hotkey_recording_load (const gchar *name)
{
  g_autofree gchar *dir = hotkey_recording_dir ();
  g_autofree gchar *path = g_build_filename (dir, name, NULL);
  g_autoptr (GError) error = NULL;
  g_autofree gchar *text = NULL;
  g_auto (GStrv) lines = NULL;
  HotkeyRecording *recording;

  g_file_get_contents (path, &text, NULL, &error);
  g_assert_no_error (error);

  recording = g_new0 (HotkeyRecording, 1);
  recording->name = g_strdup (name);
  recording->events = g_array_new (FALSE, FALSE, sizeof (struct input_event));
  recording->binds = g_ptr_array_new_with_free_func (g_free);
  recording->checks = g_ptr_array_new_with_free_func (check_free);

  lines = g_strsplit (text, "\n", -1);
  for (guint i = 0; lines[i] != NULL; i++)
    {
      g_autofree gchar *where = g_strdup_printf ("%s:%u", path, i + 1);
      gchar *line = g_strstrip (lines[i]);
      gchar *hash;
      struct input_event event;

      if (g_str_has_prefix (line, "#>"))
        {
          parse_directive (recording, g_strstrip (line + 2), where);
          continue;
        }
      hash = strchr (line, '#');
      if (hash != NULL)
        *hash = '\0';
      g_strstrip (line);
      if (line[0] == '\0')
        continue;
      /* evemu-record's description of the device */
      if (strlen (line) >= 2 && line[1] == ':' && strchr ("NIPBALSR", line[0]) != NULL)
        continue;
      if (!parse_event (line, &event))
        g_error ("%s: not an event line \"E: SEC.USEC TYPE CODE VALUE\": '%s'", where, line);
      g_array_append_val (recording->events, event);
    }
  return recording;
}
