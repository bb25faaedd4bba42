/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include "config.h"

#include "hotkey-log.h"

static GPtrArray *warnings; /* gchar * */
static GPtrArray *messages; /* gchar * */

static GLogWriterOutput
record (GLogLevelFlags level, const GLogField *fields, gsize n_fields, gpointer data)
{
  GPtrArray *into;

  if (level & G_LOG_LEVEL_WARNING)
    into = warnings;
  else if (level & G_LOG_LEVEL_MESSAGE)
    into = messages;
  else
    return g_log_writer_default (level, fields, n_fields, data);
  for (gsize i = 0; i < n_fields; i++)
    if (g_str_equal (fields[i].key, "MESSAGE"))
      {
        g_test_message ("%s: %s", into == warnings ? "warning" : "message",
                        (const gchar *) fields[i].value);
        g_ptr_array_add (into, g_strdup (fields[i].value));
      }
  return G_LOG_WRITER_HANDLED;
}

void
hotkey_log_init (void)
{
  warnings = g_ptr_array_new_with_free_func (g_free);
  messages = g_ptr_array_new_with_free_func (g_free);
  g_log_set_writer_func (record, NULL, NULL);
}

guint
hotkey_log_count (GLogLevelFlags level, const gchar *pattern)
{
  GPtrArray *from = level & G_LOG_LEVEL_WARNING ? warnings : messages;
  guint n = 0;

  for (guint i = 0; i < from->len; i++)
    if (g_pattern_match_simple (pattern, from->pdata[i]))
      n++;
  return n;
}

void
hotkey_log_assert_warnings (const gchar *const *patterns)
{
  guint n = patterns != NULL ? g_strv_length ((gchar **) patterns) : 0;

  for (guint i = 0; i < MAX (n, warnings->len); i++)
    {
      const gchar *got = i < warnings->len ? warnings->pdata[i] : "(none)";
      const gchar *want = i < n ? patterns[i] : "(none)";

      if (i >= n || i >= warnings->len || !g_pattern_match_simple (want, got))
        g_error ("warning %u: expected '%s', got '%s'", i + 1, want, got);
    }
  hotkey_log_clear ();
}

void
hotkey_log_clear (void)
{
  g_ptr_array_set_size (warnings, 0);
  g_ptr_array_set_size (messages, 0);
}
