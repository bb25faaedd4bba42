/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include "config.h"

#include "dhf-policy-private.h"

/* Diagnostics: formatting, and the sink that orders and caps them. */

/* Diagnostics: formatting, and the sink that orders and caps them.
 *
 * The sink keeps at most DHF_POLICY_MAX_DIAGNOSTICS errors and as many
 * warnings, each list sorted and trimmed as diagnostics arrive, and counts
 * the rest: a file of millions of bad lines costs counters, not memory.
 * A diagnostic that would be trimmed at once is not even formatted. */

typedef DhfPolicyDiagKey SortKey;

typedef struct
{
  DhfPolicyDiagnostic *diagnostic;
  SortKey key;
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

void
dhf_policy_count_diagnostics (GPtrArray *diagnostics, guint *errors, guint *warnings)
{
  guint e = 0, w = 0;

  for (guint i = 0; diagnostics != NULL && i < diagnostics->len; i++)
    {
      const DhfPolicyDiagnostic *d = g_ptr_array_index (diagnostics, i);

      if (d->more_errors > 0 || d->more_warnings > 0)
        {
          /* The "... N more" line stands for the diagnostics left out. */
          e += d->more_errors;
          w += d->more_warnings;
        }
      else if (d->severity == DHF_POLICY_SEVERITY_ERROR)
        e++;
      else
        w++;
    }
  if (errors != NULL)
    *errors = e;
  if (warnings != NULL)
    *warnings = w;
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
  for (guint i = 0; i < 2; i++)
    sink->kept[i] = g_ptr_array_new_with_free_func (sink_entry_free);
  sink->n_errors = 0;
  sink->n_warnings = 0;
  sink->seq = 0;
  sink->file_order = g_hash_table_new_full (g_str_hash, g_str_equal, g_free, NULL);
  sink->have_dropped = FALSE;
  sink->dropped_file = NULL;
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

static gint
compare_keys (const SortKey *x, const SortKey *y)
{
  if (x->file_seq != y->file_seq)
    return x->file_seq < y->file_seq ? -1 : 1;
  if (x->line != y->line)
    return x->line < y->line ? -1 : 1;
  if (x->column != y->column)
    return x->column < y->column ? -1 : 1;
  return x->seq < y->seq ? -1 : x->seq > y->seq;
}

/* Remembers the file of the first diagnostic (in sort order) left out,
 * which the "... N more" line names. */
static void
note_dropped (DhfPolicyDiagSink *sink, const SortKey *key, const gchar *file)
{
  if (sink->have_dropped && compare_keys (key, &sink->dropped_key) >= 0)
    return;
  sink->have_dropped = TRUE;
  sink->dropped_key = *key;
  g_free (sink->dropped_file);
  sink->dropped_file = g_strdup (file);
}

void
dhf_policy_diag_add (DhfPolicyDiagSink *sink, DhfPolicySeverity severity, const gchar *file,
                     guint line, guint column, const gchar *format, ...)
{
  gboolean is_error = severity == DHF_POLICY_SEVERITY_ERROR;
  GPtrArray *kept = sink->kept[is_error ? 0 : 1];
  SortKey key = { file_seq (sink, file), line, line > 0 ? column : 0, sink->seq++ };
  SinkEntry *entry;
  va_list args;
  guint lo = 0, hi = kept->len;

  if (is_error)
    sink->n_errors++;
  else
    sink->n_warnings++;
  if (kept->len >= DHF_POLICY_MAX_DIAGNOSTICS
      && compare_keys (&key, &((SinkEntry *) g_ptr_array_index (kept, kept->len - 1))->key) > 0)
    {
      note_dropped (sink, &key, file);
      return;
    }

  entry = g_new0 (SinkEntry, 1);
  entry->key = key;
  entry->diagnostic = g_new0 (DhfPolicyDiagnostic, 1);
  entry->diagnostic->severity = severity;
  entry->diagnostic->file = g_strdup (file);
  entry->diagnostic->line = line;
  entry->diagnostic->column = key.column;
  va_start (args, format);
  entry->diagnostic->message = g_strdup_vprintf (format, args);
  va_end (args);

  /* Binary search for the place that keeps the list sorted. */
  while (lo < hi)
    {
      guint mid = lo + (hi - lo) / 2;

      if (compare_keys (&((SinkEntry *) g_ptr_array_index (kept, mid))->key, &key) < 0)
        lo = mid + 1;
      else
        hi = mid;
    }
  g_ptr_array_insert (kept, (gint) lo, entry);
  if (kept->len > DHF_POLICY_MAX_DIAGNOSTICS)
    {
      SinkEntry *last = g_ptr_array_index (kept, kept->len - 1);

      note_dropped (sink, &last->key, last->diagnostic->file);
      g_ptr_array_remove_index (kept, kept->len - 1);
    }
}

void
dhf_policy_diag_sink_finish (DhfPolicyDiagSink *sink, GPtrArray *out)
{
  GPtrArray *errors = sink->kept[0];
  GPtrArray *warnings = sink->kept[1];
  /* Errors make the policy invalid, so they win the budget over warnings. */
  guint n_warnings = MIN (warnings->len, DHF_POLICY_MAX_DIAGNOSTICS - errors->len);
  guint more_errors = sink->n_errors - errors->len;
  guint more_warnings = sink->n_warnings - n_warnings;
  guint e = 0, w = 0;

  for (guint i = n_warnings; i < warnings->len; i++)
    {
      SinkEntry *entry = g_ptr_array_index (warnings, i);

      note_dropped (sink, &entry->key, entry->diagnostic->file);
    }

  /* Merge the two sorted lists. */
  while (out != NULL && (e < errors->len || w < n_warnings))
    {
      SinkEntry *entry;

      if (w >= n_warnings
          || (e < errors->len
              && compare_keys (&((SinkEntry *) g_ptr_array_index (errors, e))->key,
                               &((SinkEntry *) g_ptr_array_index (warnings, w))->key)
                     < 0))
        entry = g_ptr_array_index (errors, e++);
      else
        entry = g_ptr_array_index (warnings, w++);
      g_ptr_array_add (out, g_steal_pointer (&entry->diagnostic));
    }

  if ((more_errors > 0 || more_warnings > 0) && out != NULL)
    {
      DhfPolicyDiagnostic *more = g_new0 (DhfPolicyDiagnostic, 1);

      more->severity = more_errors > 0 ? DHF_POLICY_SEVERITY_ERROR : DHF_POLICY_SEVERITY_WARNING;
      more->file = g_strdup (sink->dropped_file);
      more->message = g_strdup_printf ("... %u more", more_errors + more_warnings);
      more->more_errors = more_errors;
      more->more_warnings = more_warnings;
      g_ptr_array_add (out, more);
    }

  for (guint i = 0; i < 2; i++)
    g_clear_pointer (&sink->kept[i], g_ptr_array_unref);
  g_clear_pointer (&sink->file_order, g_hash_table_unref);
  g_clear_pointer (&sink->dropped_file, g_free);
}
