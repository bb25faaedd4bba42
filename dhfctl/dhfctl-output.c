/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* dhfctl: aligned tables, "Key: value" blocks, JSON and error output. */
#include "config.h"

#include <dhf/dhf.h>

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "dhfctl.h"

struct _DhfctlTable
{
  guint n_columns;
  GPtrArray *rows; /* of GStrv, sanitised */
};

/* Bidirectional embeddings, overrides and isolates reorder what follows
 * them on screen: a name could make a column lie about its neighbours. */
static gboolean
is_bidi_control (gunichar c)
{
  return (c >= 0x202a && c <= 0x202e) || (c >= 0x2066 && c <= 0x2069);
}

/* Names, vendors and error texts come from manifests and domains, which are
 * untrusted: keep terminal control sequences out of the output. */
gchar *
dhfctl_sanitize (const gchar *text)
{
  g_autofree gchar *valid = g_utf8_make_valid (text != NULL ? text : "", -1);
  g_autoptr (GString) out = g_string_sized_new (strlen (valid));

  for (const gchar *p = valid; *p != '\0'; p = g_utf8_next_char (p))
    {
      gunichar c = g_utf8_get_char (p);

      if (g_unichar_iscntrl (c) || is_bidi_control (c))
        g_string_append_c (out, '?');
      else
        g_string_append_len (out, p, g_utf8_next_char (p) - p);
    }
  return g_string_free (g_steal_pointer (&out), FALSE);
}

/* Terminal columns @text takes: wide (CJK) characters take two, combining
 * marks none. @text must be valid UTF-8. */
gsize
dhfctl_display_width (const gchar *text)
{
  gsize width = 0;

  for (const gchar *p = text; *p != '\0'; p = g_utf8_next_char (p))
    {
      gunichar c = g_utf8_get_char (p);

      if (g_unichar_iszerowidth (c))
        continue;
      width += g_unichar_iswide (c) ? 2 : 1;
    }
  return width;
}

const gchar *
dhfctl_or_dash (const gchar *text)
{
  return text != NULL && *text != '\0' ? text : "-";
}

const gchar *
dhfctl_yes_no (gboolean value)
{
  return value ? "yes" : "no";
}

DhfctlTable *
dhfctl_table_new (guint n_columns)
{
  DhfctlTable *table = g_new0 (DhfctlTable, 1);

  table->n_columns = n_columns;
  table->rows = g_ptr_array_new_with_free_func ((GDestroyNotify) g_strfreev);
  return table;
}

void
dhfctl_table_free (DhfctlTable *table)
{
  g_ptr_array_unref (table->rows);
  g_free (table);
}

/* Takes exactly n_columns cells (NULL cells print as empty), then NULL. */
void
dhfctl_table_add_row (DhfctlTable *table, ...)
{
  gchar **row = g_new0 (gchar *, table->n_columns + 1);
  va_list args;

  va_start (args, table);
  for (guint i = 0; i < table->n_columns; i++)
    row[i] = dhfctl_sanitize (va_arg (args, const gchar *));
  va_end (args);
  g_ptr_array_add (table->rows, row);
}

void
dhfctl_table_print (const DhfctlTable *table)
{
  g_autofree gsize *widths = g_new0 (gsize, table->n_columns);

  for (guint r = 0; r < table->rows->len; r++)
    {
      gchar **row = g_ptr_array_index (table->rows, r);

      for (guint c = 0; c < table->n_columns; c++)
        widths[c] = MAX (widths[c], dhfctl_display_width (row[c]));
    }

  for (guint r = 0; r < table->rows->len; r++)
    {
      gchar **row = g_ptr_array_index (table->rows, r);
      g_autoptr (GString) line = g_string_new (NULL);

      for (guint c = 0; c < table->n_columns; c++)
        {
          g_string_append (line, row[c]);
          /* Two spaces between columns; the last one is not padded. */
          if (c + 1 < table->n_columns)
            {
              for (gsize pad = dhfctl_display_width (row[c]); pad < widths[c] + 2; pad++)
                g_string_append_c (line, ' ');
            }
        }
      /* Empty trailing cells would leave trailing blanks. */
      g_strchomp (line->str);
      g_print ("%s\n", line->str);
    }
}

void
dhfctl_print_json (json_object *object)
{
  const gchar *text = json_object_to_json_string_ext (
      object, JSON_C_TO_STRING_PRETTY | JSON_C_TO_STRING_SPACED | JSON_C_TO_STRING_NOSLASHESCAPE);

  /* Straight to stdout: JSON is UTF-8 whatever the locale's charset, and
   * g_print() would convert it. */
  fputs (text, stdout);
  fputc ('\n', stdout);
  fflush (stdout);
}

/* One compact line, flushed: for watch commands, whose reader may be a
 * pipe that acts on each line as it comes. */
void
dhfctl_print_json_line (json_object *object)
{
  fputs (json_object_to_json_string_ext (object, JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_SPACED
                                                     | JSON_C_TO_STRING_NOSLASHESCAPE),
         stdout);
  fputc ('\n', stdout);
  fflush (stdout);
}

json_object *
dhfctl_json_string (const gchar *text)
{
  g_autofree gchar *valid = g_utf8_make_valid (text != NULL ? text : "", -1);

  return json_object_new_string (valid);
}

/* A GVariant from dhfd as JSON: numbers, booleans, strings, arrays and
 * dictionaries (a{sv}, keys in snake_case); anything else (not sent today)
 * as its GVariant text. */
json_object *
dhfctl_variant_to_json (GVariant *value)
{
  switch (g_variant_classify (value))
    {
      case G_VARIANT_CLASS_BOOLEAN:
        return json_object_new_boolean (g_variant_get_boolean (value));
      case G_VARIANT_CLASS_BYTE:
        return json_object_new_int64 (g_variant_get_byte (value));
      case G_VARIANT_CLASS_INT16:
        return json_object_new_int64 (g_variant_get_int16 (value));
      case G_VARIANT_CLASS_UINT16:
        return json_object_new_int64 (g_variant_get_uint16 (value));
      case G_VARIANT_CLASS_INT32:
        return json_object_new_int64 (g_variant_get_int32 (value));
      case G_VARIANT_CLASS_UINT32:
        return json_object_new_int64 (g_variant_get_uint32 (value));
      case G_VARIANT_CLASS_INT64:
        return json_object_new_int64 (g_variant_get_int64 (value));
      case G_VARIANT_CLASS_UINT64:
        return json_object_new_uint64 (g_variant_get_uint64 (value));
      case G_VARIANT_CLASS_DOUBLE:
        return json_object_new_double (g_variant_get_double (value));
      case G_VARIANT_CLASS_STRING:
      case G_VARIANT_CLASS_OBJECT_PATH:
      case G_VARIANT_CLASS_SIGNATURE:
        return dhfctl_json_string (g_variant_get_string (value, NULL));
      case G_VARIANT_CLASS_VARIANT:
        {
          g_autoptr (GVariant) inner = g_variant_get_variant (value);

          return dhfctl_variant_to_json (inner);
        }
      case G_VARIANT_CLASS_ARRAY:
        if (!g_variant_is_of_type (value, G_VARIANT_TYPE ("a{sv}")))
          {
            json_object *array = json_object_new_array ();

            for (gsize i = 0; i < g_variant_n_children (value); i++)
              {
                g_autoptr (GVariant) child = g_variant_get_child_value (value, i);

                json_object_array_add (array, dhfctl_variant_to_json (child));
              }
            return array;
          }
        return dhfctl_vardict_to_json (value);
      default:
        {
          g_autofree gchar *text = g_variant_print (value, FALSE);

          return dhfctl_json_string (text);
        }
    }
}

/* An a{sv} as a JSON object, keys in snake_case ("iommu-group" becomes
 * "iommu_group") as everywhere in dhfctl's JSON. */
json_object *
dhfctl_vardict_to_json (GVariant *dict)
{
  json_object *object = json_object_new_object ();
  GVariantIter iter;
  const gchar *key;
  GVariant *value;

  g_variant_iter_init (&iter, dict);
  while (g_variant_iter_loop (&iter, "{&sv}", &key, &value))
    {
      g_autofree gchar *name = g_strdelimit (g_utf8_make_valid (key, -1), "-", '_');

      json_object_object_add (object, name, dhfctl_variant_to_json (value));
    }
  return object;
}

/* People read stderr; with --json, programs also get the error on stdout,
 * so that stdout is always one JSON document (or, for a watch, still one
 * object per line). */
void
dhfctl_print_error (DhfctlContext *ctx, const GError *error)
{
  g_auto (GStrv) lines = g_strsplit (error->message, "\n", -1);

  if (ctx->json)
    {
      g_autoptr (json_object) root = json_object_new_object ();
      json_object *details = json_object_new_object ();
      g_autofree gchar *name = dhfctl_error_name (error);

      json_object_object_add (details, "name", json_object_new_string (name));
      json_object_object_add (details, "message", dhfctl_json_string (error->message));
      json_object_object_add (root, "error", details);
      if (ctx->json_lines)
        dhfctl_print_json_line (root);
      else
        dhfctl_print_json (root);
    }

  for (guint i = 0; lines[i] != NULL; i++)
    {
      g_autofree gchar *line = dhfctl_sanitize (lines[i]);

      g_printerr ("%s%s\n", i == 0 ? "dhfctl: " : "", line);
    }
}
