/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include "config.h"

#include "dhf-policy-private.h"

/* Diagnostics: formatting, and the sink that orders and caps them. */

typedef struct
{
  DhfPolicyDiagnostic *diagnostic;
  guint file_seq;
  guint seq;
  gboolean keep;
} SinkEntry;

void
dhf_policy_diagnostic_free (DhfPolicyDiagnostic *diagnostic)
{
  if (diagnostic == NULL)
    return;
  g_free (diagnostic->file);
  g_free (diagnostic->message);
  g_free (diagnostic);
}

gchar *
dhf_policy_diagnostic_format (const DhfPolicyDiagnostic *diagnostic)
{
  GString *out = g_string_new (diagnostic->file);

  if (diagnostic->line > 0)
    g_string_append_printf (out, ":%u", diagnostic->line);
  if (diagnostic->line > 0 && diagnostic->column > 0)
    g_string_append_printf (out, ":%u", diagnostic->column);
  g_string_append_printf (out, ": %s: %s",
                          diagnostic->severity == DHF_POLICY_SEVERITY_ERROR ? "error" : "warning",
                          diagnostic->message);
  return g_string_free (out, FALSE);
}

static void
sink_entry_free (gpointer data)
{
  SinkEntry *entry = data;

  dhf_policy_diagnostic_free (entry->diagnostic);
  g_free (entry);
}

void
dhf_policy_diag_sink_init (DhfPolicyDiagSink *sink)
{
  sink->all = g_ptr_array_new_with_free_func (sink_entry_free);
  sink->n_errors = 0;
  sink->file_order = g_hash_table_new_full (g_str_hash, g_str_equal, g_free, NULL);
}

static guint
file_seq (DhfPolicyDiagSink *sink, const gchar *file)
{
  guint seq = GPOINTER_TO_UINT (g_hash_table_lookup (sink->file_order, file));

  if (seq != 0)
    return seq;
  seq = g_hash_table_size (sink->file_order) + 1;
  g_hash_table_insert (sink->file_order, g_strdup (file), GUINT_TO_POINTER (seq));
  return seq;
}

void
dhf_policy_diag_note_file (DhfPolicyDiagSink *sink, const gchar *file)
{
  file_seq (sink, file);
}

void
dhf_policy_diag_add (DhfPolicyDiagSink *sink, DhfPolicySeverity severity, const gchar *file,
                     guint line, guint column, const gchar *format, ...)
{
  SinkEntry *entry = g_new0 (SinkEntry, 1);
  va_list args;

  entry->diagnostic = g_new0 (DhfPolicyDiagnostic, 1);
  entry->diagnostic->severity = severity;
  entry->diagnostic->file = g_strdup (file);
  entry->diagnostic->line = line;
  entry->diagnostic->column = line > 0 ? column : 0;
  va_start (args, format);
  entry->diagnostic->message = g_strdup_vprintf (format, args);
  va_end (args);
  entry->file_seq = file_seq (sink, file);
  entry->seq = sink->all->len;
  if (severity == DHF_POLICY_SEVERITY_ERROR)
    sink->n_errors++;
  g_ptr_array_add (sink->all, entry);
}

static gint
compare_entries (gconstpointer a, gconstpointer b)
{
  const SinkEntry *x = *(const SinkEntry *const *) a;
  const SinkEntry *y = *(const SinkEntry *const *) b;

  if (x->file_seq != y->file_seq)
    return x->file_seq < y->file_seq ? -1 : 1;
  if (x->diagnostic->line != y->diagnostic->line)
    return x->diagnostic->line < y->diagnostic->line ? -1 : 1;
  if (x->diagnostic->column != y->diagnostic->column)
    return x->diagnostic->column < y->diagnostic->column ? -1 : 1;
  return x->seq < y->seq ? -1 : x->seq > y->seq;
}

void
dhf_policy_diag_sink_finish (DhfPolicyDiagSink *sink, GPtrArray *out)
{
  guint budget = DHF_POLICY_MAX_DIAGNOSTICS;
  guint dropped = 0;
  gboolean dropped_error = FALSE;
  const gchar *dropped_file = NULL;

  g_ptr_array_sort (sink->all, compare_entries);
  /* Errors make the policy invalid, so they win the budget over warnings. */
  for (guint pass = 0; pass < 2; pass++)
    for (guint i = 0; i < sink->all->len; i++)
      {
        SinkEntry *entry = g_ptr_array_index (sink->all, i);
        gboolean is_error = entry->diagnostic->severity == DHF_POLICY_SEVERITY_ERROR;

        if (is_error != (pass == 0) || budget == 0)
          continue;
        entry->keep = TRUE;
        budget--;
      }

  for (guint i = 0; i < sink->all->len; i++)
    {
      SinkEntry *entry = g_ptr_array_index (sink->all, i);

      if (entry->keep && out != NULL)
        {
          g_ptr_array_add (out, g_steal_pointer (&entry->diagnostic));
          continue;
        }
      if (entry->keep)
        continue;
      dropped++;
      dropped_error |= entry->diagnostic->severity == DHF_POLICY_SEVERITY_ERROR;
      if (dropped_file == NULL)
        dropped_file = entry->diagnostic->file;
    }

  if (dropped > 0 && out != NULL)
    {
      DhfPolicyDiagnostic *more = g_new0 (DhfPolicyDiagnostic, 1);

      more->severity = dropped_error ? DHF_POLICY_SEVERITY_ERROR : DHF_POLICY_SEVERITY_WARNING;
      more->file = g_strdup (dropped_file);
      more->message = g_strdup_printf ("... %u more", dropped);
      g_ptr_array_add (out, more);
    }

  g_clear_pointer (&sink->all, g_ptr_array_unref);
  g_clear_pointer (&sink->file_order, g_hash_table_unref);
}
