/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include "config.h"

#include <glib/gstdio.h>

#include <dhf/dhf.h>

#include "dhf-test-util.h"

const gchar *
dhf_test_dhfd_path (void)
{
  const gchar *path = g_getenv ("DHFD");

  g_assert_nonnull (path);
  return path;
}

void
dhf_test_write_file (const gchar *dir, const gchar *name, const gchar *text)
{
  g_autofree gchar *path = g_build_filename (dir, name, NULL);
  g_autofree gchar *parent = g_path_get_dirname (path);
  g_autoptr (GError) error = NULL;

  g_assert_cmpint (g_mkdir_with_parents (parent, 0755), ==, 0);
  g_file_set_contents (path, text, -1, &error);
  g_assert_no_error (error);
}

void
dhf_test_remove_tree (const gchar *path)
{
  g_autoptr (GDir) dir = g_dir_open (path, 0, NULL);
  const gchar *name;

  while (dir != NULL && (name = g_dir_read_name (dir)) != NULL)
    {
      g_autofree gchar *child = g_build_filename (path, name, NULL);

      if (g_file_test (child, G_FILE_TEST_IS_DIR) && !g_file_test (child, G_FILE_TEST_IS_SYMLINK))
        dhf_test_remove_tree (child);
      else
        g_unlink (child);
    }
  g_rmdir (path);
}

GDBusConnection *
dhf_test_bus_up (GTestDBus **bus)
{
  g_autoptr (GError) error = NULL;
  GDBusConnection *conn;

  *bus = g_test_dbus_new (G_TEST_DBUS_NONE);
  g_test_dbus_up (*bus);
  /* A connection of our own, not the g_bus_get() singleton: GTestDBus
   * waits for that one to be finalized on teardown. */
  conn = g_dbus_connection_new_for_address_sync (
      g_test_dbus_get_bus_address (*bus),
      G_DBUS_CONNECTION_FLAGS_AUTHENTICATION_CLIENT
          | G_DBUS_CONNECTION_FLAGS_MESSAGE_BUS_CONNECTION,
      NULL, NULL, &error);
  g_assert_no_error (error);
  return conn;
}

gboolean
dhf_test_dhfd_owns_name (GDBusConnection *conn)
{
  g_autoptr (GVariant) reply = NULL;
  gboolean owned = FALSE;

  reply = g_dbus_connection_call_sync (conn, "org.freedesktop.DBus", "/org/freedesktop/DBus",
                                       "org.freedesktop.DBus", "NameHasOwner",
                                       g_variant_new ("(s)", DHF_BUS_NAME), G_VARIANT_TYPE ("(b)"),
                                       G_DBUS_CALL_FLAGS_NONE, -1, NULL, NULL);
  if (reply != NULL)
    g_variant_get (reply, "(b)", &owned);
  return owned;
}

void
dhf_test_sync_with_dhfd (GDBusConnection *conn)
{
  g_autoptr (GVariant) reply = NULL;
  g_autoptr (GError) error = NULL;

  reply = g_dbus_connection_call_sync (conn, DHF_BUS_NAME, DHF_OBJECT_PATH,
                                       "org.freedesktop.DBus.Peer", "Ping", NULL, NULL,
                                       G_DBUS_CALL_FLAGS_NONE, -1, NULL, &error);
  g_assert_no_error (error);
  while (g_main_context_iteration (NULL, FALSE))
    ;
}

/* --- the log ------------------------------------------------------------ */

static GPtrArray *log_warnings; /* gchar * */
static GPtrArray *log_messages; /* gchar * */

static GLogWriterOutput
log_record (GLogLevelFlags level, const GLogField *fields, gsize n_fields, gpointer data)
{
  GPtrArray *into;

  if (level & G_LOG_LEVEL_WARNING)
    into = log_warnings;
  else if (level & G_LOG_LEVEL_MESSAGE)
    into = log_messages;
  else
    return g_log_writer_default (level, fields, n_fields, data);
  for (gsize i = 0; i < n_fields; i++)
    if (g_str_equal (fields[i].key, "MESSAGE"))
      {
        g_test_message ("%s: %s", into == log_warnings ? "warning" : "message",
                        (const gchar *) fields[i].value);
        g_ptr_array_add (into, g_strdup (fields[i].value));
      }
  return G_LOG_WRITER_HANDLED;
}

void
dhf_test_log_init (void)
{
  log_warnings = g_ptr_array_new_with_free_func (g_free);
  log_messages = g_ptr_array_new_with_free_func (g_free);
  g_log_set_writer_func (log_record, NULL, NULL);
}

guint
dhf_test_log_count (GLogLevelFlags level, const gchar *pattern)
{
  GPtrArray *from = level & G_LOG_LEVEL_WARNING ? log_warnings : log_messages;
  guint n = 0;

  for (guint i = 0; i < from->len; i++)
    if (g_pattern_match_simple (pattern, from->pdata[i]))
      n++;
  return n;
}

void
dhf_test_log_assert_warnings (const gchar *const *patterns)
{
  guint n = patterns != NULL ? g_strv_length ((gchar **) patterns) : 0;

  for (guint i = 0; i < MAX (n, log_warnings->len); i++)
    {
      const gchar *got = i < log_warnings->len ? log_warnings->pdata[i] : "(none)";
      const gchar *want = i < n ? patterns[i] : "(none)";

      if (i >= n || i >= log_warnings->len || !g_pattern_match_simple (want, got))
        g_error ("warning %u: expected '%s', got '%s'", i + 1, want, got);
    }
  dhf_test_log_clear ();
}

void
dhf_test_log_clear (void)
{
  g_ptr_array_set_size (log_warnings, 0);
  g_ptr_array_set_size (log_messages, 0);
}
