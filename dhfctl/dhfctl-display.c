/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* dhfctl: the commands on org.dhf.Framework1.Display: switch, focus (and
 * focus --watch) and screenshot. */
#include "config.h"

#include <dhf/dhf.h>

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "dhfctl.h"

/* What Display's properties say, read in one GetAll. */
typedef struct
{
  gchar *focused;
  gchar **history;
  gchar **cycle;
} DisplayState;

static void
display_state_clear (DisplayState *state)
{
  g_clear_pointer (&state->focused, g_free);
  g_clear_pointer (&state->history, g_strfreev);
  g_clear_pointer (&state->cycle, g_strfreev);
}

G_DEFINE_AUTO_CLEANUP_CLEAR_FUNC (DisplayState, display_state_clear)

static gboolean
read_display_state (DhfctlContext *ctx, DhfDBusDisplay *display, DisplayState *state,
                    GError **error)
{
  g_autoptr (GError) local_error = NULL;
  g_autoptr (GVariant) reply = NULL;
  g_autoptr (GVariant) properties = NULL;
  guint seconds = ctx->timeout_s != 0 ? ctx->timeout_s : DHFCTL_DEFAULT_TIMEOUT_S;

  /* Through the proxy's connection and name, after the proxy subscribed to
   * FocusChanged: a change after this answer is a signal the watch sees. */
  reply = g_dbus_connection_call_sync (
      ctx->connection, DHF_BUS_NAME, DHF_OBJECT_PATH, "org.freedesktop.DBus.Properties", "GetAll",
      g_variant_new ("(s)", DHFCTL_DISPLAY_INTERFACE), G_VARIANT_TYPE ("(a{sv})"),
      G_DBUS_CALL_FLAGS_NONE, (gint) MIN (seconds, G_MAXINT / 1000) * 1000, NULL, &local_error);
  /* GetAll's only argument is the interface's name: a dhfd without it
   * answers InvalidArgs ("No such interface"). */
  if (g_error_matches (local_error, G_DBUS_ERROR, G_DBUS_ERROR_INVALID_ARGS))
    {
      g_set_error (error, DHF_ERROR, DHF_ERROR_NOT_SUPPORTED,
                   "cannot read the focus: this dhfd has no %s interface",
                   DHFCTL_DISPLAY_INTERFACE);
      return FALSE;
    }
  if (reply == NULL)
    {
      dhfctl_propagate_call_error (error, g_steal_pointer (&local_error), DHFCTL_DISPLAY_INTERFACE,
                                   "cannot read the focus: ");
      return FALSE;
    }

  properties = g_variant_get_child_value (reply, 0);
  if (!g_variant_lookup (properties, "Focused", "s", &state->focused))
    {
      g_set_error (error, DHF_ERROR, DHF_ERROR_PROTOCOL,
                   "cannot read the focus: dhfd sent no Focused property");
      return FALSE;
    }
  if (!g_variant_lookup (properties, "History", "^as", &state->history))
    state->history = g_new0 (gchar *, 1);
  if (!g_variant_lookup (properties, "Cycle", "^as", &state->cycle))
    state->cycle = g_new0 (gchar *, 1);
  return TRUE;
}

static json_object *
strv_to_json (const gchar *const *strv)
{
  json_object *array = json_object_new_array ();

  for (guint i = 0; strv != NULL && strv[i] != NULL; i++)
    json_object_array_add (array, dhfctl_json_string (strv[i]));
  return array;
}

static void
print_name (const gchar *name)
{
  g_autofree gchar *safe = dhfctl_sanitize (name);

  g_print ("%s\n", safe);
}

/* --- switch ---------------------------------------------------------------- */

gboolean
dhfctl_cmd_switch (DhfctlContext *ctx, const DhfctlCommand *cmd, int argc, char **argv,
                   GError **error)
{
  g_autoptr (GError) local_error = NULL;
  g_autoptr (DhfDBusDisplay) display = NULL;
  g_autofree gchar *focused = NULL;
  const gchar *target = NULL;
  gboolean ok;

  if (!dhfctl_parse_command_line (ctx, cmd, NULL, 1, 1, &argc, &argv, error))
    return FALSE;
  target = argv[1];
  if (!dhfctl_check_name (target, error))
    return FALSE;

  display = dhfctl_get_display (ctx, error);
  if (display == NULL)
    return FALSE;
  dhfctl_set_call_timeout (ctx, display, DHFCTL_DEFAULT_TIMEOUT_S);

  /* next and prev are words, not names: Next and Previous follow Cycle. */
  if (g_str_equal (target, "next"))
    ok = dhf_dbus_display_call_next_sync (display, &focused, NULL, &local_error);
  else if (g_str_equal (target, "prev"))
    ok = dhf_dbus_display_call_previous_sync (display, &focused, NULL, &local_error);
  else
    ok = dhf_dbus_display_call_switch_sync (display, target, &focused, NULL, &local_error);
  if (!ok)
    {
      if (g_str_equal (target, "next") || g_str_equal (target, "prev"))
        dhfctl_propagate_call_error (error, g_steal_pointer (&local_error),
                                     DHFCTL_DISPLAY_INTERFACE,
                                     "cannot switch to the %s environment: ",
                                     g_str_equal (target, "next") ? "next" : "previous");
      else
        dhfctl_propagate_call_error (error, g_steal_pointer (&local_error),
                                     DHFCTL_DISPLAY_INTERFACE, "cannot switch to '%s': ", target);
      return FALSE;
    }

  if (ctx->json)
    {
      g_autoptr (json_object) root = json_object_new_object ();

      json_object_object_add (root, "focused", dhfctl_json_string (focused));
      dhfctl_print_json (root);
      return TRUE;
    }
  print_name (focused);
  return TRUE;
}

/* --- focus ----------------------------------------------------------------- */

/* One line per change: "NAME (was PREVIOUS)", or a JSON object. */
static void
print_focus_line (DhfctlContext *ctx, const gchar *focused, const gchar *previous)
{
  g_autofree gchar *safe_focused = NULL;
  g_autofree gchar *safe_previous = NULL;

  if (ctx->json)
    {
      g_autoptr (json_object) line = json_object_new_object ();

      json_object_object_add (line, "focused", dhfctl_json_string (focused));
      json_object_object_add (line, "previous",
                              previous != NULL && *previous != '\0' ? dhfctl_json_string (previous)
                                                                    : NULL);
      dhfctl_print_json_line (line);
      return;
    }
  safe_focused = dhfctl_sanitize (focused);
  if (previous == NULL || *previous == '\0')
    g_print ("%s\n", safe_focused);
  else
    {
      safe_previous = dhfctl_sanitize (previous);
      g_print ("%s (was %s)\n", safe_focused, safe_previous);
    }
  /* The reader may be a pipe that acts on each line. */
  fflush (stdout);
}

static void
on_focus_changed (DhfDBusDisplay *display, const gchar *focused, const gchar *previous,
                  gpointer user_data)
{
  print_focus_line (user_data, focused, previous);
}

/* The focus as it is, then one line per FocusChanged: a reader never has to
 * ask separately, and misses nothing between asking and watching. */
static gboolean
watch_focus (DhfctlContext *ctx, GError **error)
{
  g_autoptr (DhfDBusDisplay) display = NULL;
  g_auto (DisplayState) state = { 0 };
  gulong handler_id;
  gboolean ok;

  ctx->json_lines = TRUE;
  display = dhfctl_get_display (ctx, error);
  if (display == NULL)
    return FALSE;
  handler_id = g_signal_connect (display, "focus-changed", G_CALLBACK (on_focus_changed), ctx);
  if (!read_display_state (ctx, display, &state, error))
    {
      g_signal_handler_disconnect (display, handler_id);
      return FALSE;
    }
  print_focus_line (ctx, state.focused, state.history[0]);
  ok = dhfctl_watch_run (ctx, G_DBUS_PROXY (display), "the focus", error);
  g_signal_handler_disconnect (display, handler_id);
  return ok;
}

gboolean
dhfctl_cmd_focus (DhfctlContext *ctx, const DhfctlCommand *cmd, int argc, char **argv,
                  GError **error)
{
  gboolean watch = FALSE;
  const GOptionEntry entries[] = {
    { "watch", 0, 0, G_OPTION_ARG_NONE, &watch,
      "Print the focus, then a line at each change, until interrupted", NULL },
    G_OPTION_ENTRY_NULL,
  };
  g_autoptr (DhfDBusDisplay) display = NULL;
  g_auto (DisplayState) state = { 0 };

  if (!dhfctl_parse_command_line (ctx, cmd, entries, 0, 0, &argc, &argv, error))
    return FALSE;
  if (watch)
    return watch_focus (ctx, error);

  display = dhfctl_get_display (ctx, error);
  if (display == NULL || !read_display_state (ctx, display, &state, error))
    return FALSE;

  if (ctx->json)
    {
      g_autoptr (json_object) root = json_object_new_object ();

      json_object_object_add (root, "focused", dhfctl_json_string (state.focused));
      json_object_object_add (root, "history", strv_to_json ((const gchar *const *) state.history));
      json_object_object_add (root, "cycle", strv_to_json ((const gchar *const *) state.cycle));
      dhfctl_print_json (root);
      return TRUE;
    }
  print_name (state.focused);
  return TRUE;
}

/* --- screenshot ------------------------------------------------------------ */

static gboolean
parse_dimension (const gchar *option, const gchar *text, guint32 *value, GError **error)
{
  guint64 number = 0;

  if (text == NULL)
    return TRUE;
  if (!g_ascii_string_to_unsigned (text, 10, 1, G_MAXINT32, &number, NULL))
    {
      g_set_error (error, G_OPTION_ERROR, G_OPTION_ERROR_BAD_VALUE,
                   "screenshot %s needs a number of pixels from 1 to %d, not '%s'", option,
                   G_MAXINT32, text);
      return FALSE;
    }
  *value = (guint32) number;
  return TRUE;
}

/* The size a PNG's header (its IHDR chunk, always first) gives; FALSE for
 * anything that is not a PNG, which dhfctl will not write as one. */
static gboolean
png_size (const guint8 *data, gsize length, guint32 *width, guint32 *height)
{
  static const guint8 signature[] = { 0x89, 'P', 'N', 'G', '\r', '\n', 0x1a, '\n' };

  if (length < 24 || memcmp (data, signature, sizeof signature) != 0
      || memcmp (data + 12, "IHDR", 4) != 0)
    return FALSE;
  *width = (guint32) data[16] << 24 | (guint32) data[17] << 16 | (guint32) data[18] << 8 | data[19];
  *height
      = (guint32) data[20] << 24 | (guint32) data[21] << 16 | (guint32) data[22] << 8 | data[23];
  return TRUE;
}

static gboolean
write_stdout (const guint8 *data, gsize length, GError **error)
{
  if (fwrite (data, 1, length, stdout) != length || fflush (stdout) != 0)
    {
      int saved_errno = errno;

      g_set_error (error, G_IO_ERROR, g_io_error_from_errno (saved_errno),
                   "cannot write the image to standard output: %s", g_strerror (saved_errno));
      return FALSE;
    }
  return TRUE;
}

gboolean
dhfctl_cmd_screenshot (DhfctlContext *ctx, const DhfctlCommand *cmd, int argc, char **argv,
                       GError **error)
{
  g_autoptr (GError) local_error = NULL;
  g_autofree gchar *max_width_text = NULL;
  g_autofree gchar *max_height_text = NULL;
  const GOptionEntry entries[] = {
    { "max-width", 0, 0, G_OPTION_ARG_STRING, &max_width_text,
      "Scale the picture down, keeping its proportions, to at most N pixels wide", "N" },
    { "max-height", 0, 0, G_OPTION_ARG_STRING, &max_height_text,
      "Scale the picture down, keeping its proportions, to at most N pixels high", "N" },
    G_OPTION_ENTRY_NULL,
  };
  g_autoptr (DhfDBusDisplay) display = NULL;
  g_autoptr (GVariant) png = NULL;
  GVariantBuilder options;
  guint32 max_width = 0, max_height = 0, width = 0, height = 0;
  const guint8 *data = NULL;
  gsize length = 0;
  const gchar *name = NULL;
  const gchar *file = NULL;
  gboolean to_stdout;

  if (!dhfctl_parse_command_line (ctx, cmd, entries, 2, 2, &argc, &argv, error))
    return FALSE;
  name = argv[1];
  file = argv[2];
  to_stdout = g_str_equal (file, "-");
  if (!dhfctl_check_name (name, error)
      || !parse_dimension ("--max-width", max_width_text, &max_width, error)
      || !parse_dimension ("--max-height", max_height_text, &max_height, error))
    return FALSE;
  if (*file == '\0')
    {
      g_set_error_literal (error, G_OPTION_ERROR, G_OPTION_ERROR_BAD_VALUE,
                           "screenshot: the file name must not be empty");
      return FALSE;
    }
  /* Standard output is the image: it cannot also be the JSON document. */
  if (to_stdout && ctx->json)
    {
      g_set_error_literal (error, G_OPTION_ERROR, G_OPTION_ERROR_BAD_VALUE,
                           "screenshot: --json needs a FILE; with '-' standard output is the "
                           "image");
      return FALSE;
    }
  if (to_stdout && isatty (STDOUT_FILENO))
    {
      g_set_error_literal (error, G_OPTION_ERROR, G_OPTION_ERROR_BAD_VALUE,
                           "screenshot: not writing a PNG image to a terminal; give a FILE or "
                           "redirect standard output");
      return FALSE;
    }

  display = dhfctl_get_display (ctx, error);
  if (display == NULL)
    return FALSE;

  g_variant_builder_init (&options, G_VARIANT_TYPE_VARDICT);
  if (max_width != 0)
    g_variant_builder_add (&options, "{sv}", "max-width", g_variant_new_uint32 (max_width));
  if (max_height != 0)
    g_variant_builder_add (&options, "{sv}", "max-height", g_variant_new_uint32 (max_height));

  dhfctl_set_call_timeout (ctx, display, DHFCTL_DEFAULT_TIMEOUT_S);
  if (!dhf_dbus_display_call_screenshot_sync (display, name, g_variant_builder_end (&options), &png,
                                              NULL, &local_error))
    {
      dhfctl_propagate_call_error (error, g_steal_pointer (&local_error), DHFCTL_DISPLAY_INTERFACE,
                                   "cannot take a screenshot of '%s': ", name);
      return FALSE;
    }

  data = g_variant_get_fixed_array (png, &length, sizeof (guint8));
  if (!png_size (data, length, &width, &height))
    {
      g_set_error (error, DHF_ERROR, DHF_ERROR_PROTOCOL,
                   "cannot take a screenshot of '%s': dhfd sent %" G_GSIZE_FORMAT
                   " bytes that are not a PNG image",
                   name, length);
      return FALSE;
    }

  if (to_stdout)
    return write_stdout (data, length, error);

  /* A temporary file renamed into place: a reader never sees half an
   * image, and a failure leaves an existing FILE as it was. Mode 0600,
   * also in place of an existing FILE: a screen may show anything (a
   * password, a mail), and the umask is no promise of privacy. */
  if (!g_file_set_contents_full (file, (const gchar *) data, (gssize) length,
                                 G_FILE_SET_CONTENTS_CONSISTENT | G_FILE_SET_CONTENTS_ONLY_EXISTING,
                                 0600, &local_error))
    {
      g_propagate_prefixed_error (error, g_steal_pointer (&local_error), "cannot write %s: ", file);
      return FALSE;
    }

  if (ctx->json)
    {
      g_autoptr (json_object) root = json_object_new_object ();

      json_object_object_add (root, "appliance", dhfctl_json_string (name));
      json_object_object_add (root, "file", dhfctl_json_string (file));
      json_object_object_add (root, "width", json_object_new_int64 (width));
      json_object_object_add (root, "height", json_object_new_int64 (height));
      json_object_object_add (root, "bytes", json_object_new_uint64 (length));
      dhfctl_print_json (root);
      return TRUE;
    }
  {
    g_autofree gchar *safe_file = dhfctl_sanitize (file);

    g_print ("Wrote %s (%ux%u PNG, %" G_GSIZE_FORMAT " bytes)\n", safe_file, width, height, length);
  }
  return TRUE;
}
