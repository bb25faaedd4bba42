/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include "config.h"

#include <errno.h>

#include <glib/gstdio.h>

#include "dhf-policy-store.h"

/* The policy in force. Readers on any thread take a reference under a
 * mutex held for two pointer operations; a reload builds its policy
 * outside the lock and swaps it in, so an evaluation never waits for a
 * parse and never sees a policy freed under it. */

#define DEBOUNCE_MS 200

struct _DhfPolicyStore
{
  GObject parent_instance;

  gchar **dirs;
  gchar *last_good_path;

  GMutex lock; /* guards policy */
  DhfPolicy *policy;
  gboolean loaded; /* a reload has put something in force */

  gboolean degraded;
  GPtrArray *diagnostics;
  guint64 generation;

  GMainContext *context; /* where watch() was called */
  GHashTable *monitors;  /* path -> GFileMonitor */
  GSource *debounce;
};

enum
{
  SIGNAL_CHANGED,
  SIGNAL_RELOADED,
  N_SIGNALS
};

static guint signals[N_SIGNALS];

G_DEFINE_FINAL_TYPE (DhfPolicyStore, dhf_policy_store, G_TYPE_OBJECT)

static void
dhf_policy_store_finalize (GObject *object)
{
  DhfPolicyStore *self = DHF_POLICY_STORE (object);

  if (self->debounce != NULL)
    {
      g_source_destroy (self->debounce);
      g_source_unref (self->debounce);
    }
  g_clear_pointer (&self->monitors, g_hash_table_unref);
  g_clear_pointer (&self->context, g_main_context_unref);
  g_clear_pointer (&self->policy, dhf_policy_unref);
  g_clear_pointer (&self->diagnostics, g_ptr_array_unref);
  g_strfreev (self->dirs);
  g_free (self->last_good_path);
  g_mutex_clear (&self->lock);
  G_OBJECT_CLASS (dhf_policy_store_parent_class)->finalize (object);
}

static void
dhf_policy_store_class_init (DhfPolicyStoreClass *klass)
{
  GObjectClass *object_class = G_OBJECT_CLASS (klass);

  object_class->finalize = dhf_policy_store_finalize;

  /* Emitted on the main thread after the policy in force was replaced. */
  signals[SIGNAL_CHANGED] = g_signal_new ("changed", G_TYPE_FROM_CLASS (klass), G_SIGNAL_RUN_LAST,
                                          0, NULL, NULL, NULL, G_TYPE_NONE, 0);
  /* reloaded: (applied) after every reload attempt, once the diagnostics,
   * degraded state and generation are up to date */
  signals[SIGNAL_RELOADED] = g_signal_new ("reloaded", G_TYPE_FROM_CLASS (klass), G_SIGNAL_RUN_LAST,
                                           0, NULL, NULL, NULL, G_TYPE_NONE, 1, G_TYPE_BOOLEAN);
}

static void
monitor_free (gpointer data)
{
  GFileMonitor *monitor = data;

  g_signal_handlers_disconnect_matched (monitor, G_SIGNAL_MATCH_DATA, 0, 0, NULL, NULL,
                                        g_object_get_data (G_OBJECT (monitor), "dhf-store"));
  g_file_monitor_cancel (monitor);
  g_object_unref (monitor);
}

static void
dhf_policy_store_init (DhfPolicyStore *self)
{
  g_mutex_init (&self->lock);
  self->policy = dhf_policy_new_empty ();
  self->diagnostics = g_ptr_array_new_with_free_func ((GDestroyNotify) dhf_policy_diagnostic_free);
  self->monitors = g_hash_table_new_full (g_str_hash, g_str_equal, g_free, monitor_free);
}

DhfPolicyStore *
dhf_policy_store_new (const gchar *const *dirs, const gchar *last_good_path)
{
  DhfPolicyStore *self = g_object_new (DHF_TYPE_POLICY_STORE, NULL);

  self->dirs = g_strdupv ((gchar **) dirs);
  if (self->dirs == NULL)
    self->dirs = g_new0 (gchar *, 1);
  self->last_good_path = g_strdup (last_good_path);
  return self;
}

DhfPolicy *
dhf_policy_store_get (DhfPolicyStore *self)
{
  DhfPolicy *policy;

  g_return_val_if_fail (DHF_IS_POLICY_STORE (self), NULL);
  g_mutex_lock (&self->lock);
  policy = dhf_policy_ref (self->policy);
  g_mutex_unlock (&self->lock);
  return policy;
}

static void
swap_in (DhfPolicyStore *self, DhfPolicy *policy)
{
  DhfPolicy *old;

  g_mutex_lock (&self->lock);
  old = self->policy;
  self->policy = policy;
  g_mutex_unlock (&self->lock);
  /* Readers that took a reference keep the old one alive. */
  dhf_policy_unref (old);
  self->loaded = TRUE;
  self->generation++;
}

static void
save_last_good (DhfPolicyStore *self, DhfPolicy *policy)
{
  g_autofree gchar *source = NULL;
  g_autofree gchar *dir = NULL;
  g_autoptr (GError) error = NULL;

  if (self->last_good_path == NULL)
    return;
  source = dhf_policy_get_source (policy);
  dir = g_path_get_dirname (self->last_good_path);
  if (g_mkdir_with_parents (dir, 0755) < 0)
    {
      g_warning ("cannot create %s for the last good policy: %s", dir, g_strerror (errno));
      return;
    }
  /* g_file_set_contents writes a temporary file and renames it over. */
  if (!g_file_set_contents (self->last_good_path, source, -1, &error))
    g_warning ("cannot save the last good policy: %s", error->message);
}

/* The startup fallbacks, in order: the saved last good policy, the
 * vendor directory alone, nothing (deny everything). */
static DhfPolicy *
load_fallback (DhfPolicyStore *self)
{
  guint n_dirs = g_strv_length (self->dirs);
  g_autofree gchar *text = NULL;
  gsize len = 0;

  if (self->last_good_path != NULL && g_file_get_contents (self->last_good_path, &text, &len, NULL))
    {
      DhfPolicy *policy = dhf_policy_parse_data (self->last_good_path, text, len, NULL);

      if (policy != NULL)
        {
          g_warning ("policy: using the last good policy saved in %s", self->last_good_path);
          return policy;
        }
      g_warning ("policy: the last good policy saved in %s is not valid", self->last_good_path);
    }
  if (n_dirs > 1)
    {
      const gchar *vendor[] = { self->dirs[n_dirs - 1], NULL };
      DhfPolicy *policy = dhf_policy_load_dirs (vendor, NULL);

      if (policy != NULL)
        {
          g_warning ("policy: using the vendor policy in %s alone", vendor[0]);
          return policy;
        }
    }
  g_warning ("policy: no valid policy; denying everything");
  return dhf_policy_new_empty ();
}

static void update_watches (DhfPolicyStore *self);

gboolean
dhf_policy_store_reload (DhfPolicyStore *self)
{
  g_autoptr (GPtrArray) diagnostics = NULL;
  DhfPolicy *policy;

  g_return_val_if_fail (DHF_IS_POLICY_STORE (self), FALSE);

  diagnostics = g_ptr_array_new_with_free_func ((GDestroyNotify) dhf_policy_diagnostic_free);
  policy = dhf_policy_load_dirs ((const gchar *const *) self->dirs, diagnostics);
  g_clear_pointer (&self->diagnostics, g_ptr_array_unref);
  self->diagnostics = g_ptr_array_ref (diagnostics);

  if (policy != NULL)
    {
      g_message ("policy reloaded: %u rules from %u files", dhf_policy_get_n_rules (policy),
                 g_strv_length ((gchar **) dhf_policy_get_files (policy)));
      save_last_good (self, policy);
      swap_in (self, policy);
      self->degraded = FALSE;
      update_watches (self);
      g_signal_emit (self, signals[SIGNAL_CHANGED], 0);
      g_signal_emit (self, signals[SIGNAL_RELOADED], 0, TRUE);
      return TRUE;
    }

  for (guint i = 0; i < diagnostics->len; i++)
    {
      const DhfPolicyDiagnostic *diagnostic = g_ptr_array_index (diagnostics, i);
      g_autofree gchar *text = NULL;

      if (diagnostic->severity != DHF_POLICY_SEVERITY_ERROR)
        continue;
      text = dhf_policy_diagnostic_format (diagnostic);
      g_warning ("policy: %s", text);
    }
  self->degraded = TRUE;
  if (self->loaded)
    {
      g_warning ("policy: keeping the policy in force (generation %" G_GUINT64_FORMAT ")",
                 self->generation);
      g_signal_emit (self, signals[SIGNAL_RELOADED], 0, FALSE);
      return FALSE;
    }
  swap_in (self, load_fallback (self));
  update_watches (self);
  g_signal_emit (self, signals[SIGNAL_CHANGED], 0);
  g_signal_emit (self, signals[SIGNAL_RELOADED], 0, FALSE);
  return FALSE;
}

gboolean
dhf_policy_store_is_degraded (DhfPolicyStore *self)
{
  g_return_val_if_fail (DHF_IS_POLICY_STORE (self), TRUE);
  return self->degraded;
}

GPtrArray *
dhf_policy_store_get_diagnostics (DhfPolicyStore *self)
{
  g_return_val_if_fail (DHF_IS_POLICY_STORE (self), NULL);
  return self->diagnostics;
}

guint64
dhf_policy_store_get_generation (DhfPolicyStore *self)
{
  g_return_val_if_fail (DHF_IS_POLICY_STORE (self), 0);
  return self->generation;
}

static gboolean
on_debounce (gpointer data)
{
  DhfPolicyStore *self = data;

  g_clear_pointer (&self->debounce, g_source_unref);
  dhf_policy_store_reload (self);
  return G_SOURCE_REMOVE;
}

static void
on_changed (GFileMonitor *monitor, GFile *file, GFile *other, GFileMonitorEvent event,
            gpointer data)
{
  DhfPolicyStore *self = data;

  if (event == G_FILE_MONITOR_EVENT_ATTRIBUTE_CHANGED || event == G_FILE_MONITOR_EVENT_PRE_UNMOUNT
      || event == G_FILE_MONITOR_EVENT_UNMOUNTED)
    return;
  /* Editors write in bursts: reload once, after the burst. */
  if (self->debounce != NULL)
    {
      g_source_destroy (self->debounce);
      g_source_unref (self->debounce);
    }
  self->debounce = g_timeout_source_new (DEBOUNCE_MS);
  g_source_set_callback (self->debounce, on_debounce, self, NULL);
  g_source_set_static_name (self->debounce, "dhf-policy-reload");
  g_source_attach (self->debounce, self->context);
}

static void
add_monitor (DhfPolicyStore *self, const gchar *path, gboolean is_dir)
{
  g_autoptr (GFile) file = g_file_new_for_path (path);
  g_autoptr (GError) error = NULL;
  GFileMonitor *monitor;

  if (g_hash_table_contains (self->monitors, path))
    return;
  /* A directory that does not exist yet is watched too (GLib polls for
   * it), so that creating it later takes effect. */
  monitor = is_dir ? g_file_monitor_directory (file, G_FILE_MONITOR_WATCH_MOVES, NULL, &error)
                   : g_file_monitor_file (file, G_FILE_MONITOR_WATCH_MOVES, NULL, &error);
  if (monitor == NULL)
    {
      g_warning ("policy: cannot watch %s: %s", path, error->message);
      return;
    }
  g_object_set_data (G_OBJECT (monitor), "dhf-store", self);
  g_signal_connect (monitor, "changed", G_CALLBACK (on_changed), self);
  g_hash_table_insert (self->monitors, g_strdup (path), monitor);
}

static gboolean
in_watched_dir (DhfPolicyStore *self, const gchar *path)
{
  g_autofree gchar *dir = g_path_get_dirname (path);

  for (guint i = 0; self->dirs[i] != NULL; i++)
    {
      g_autofree gchar *watched = g_canonicalize_filename (self->dirs[i], NULL);
      g_autofree gchar *canonical = g_canonicalize_filename (dir, NULL);

      if (g_str_equal (watched, canonical))
        return TRUE;
    }
  return FALSE;
}

/* Directories always; included files from elsewhere as the policy in
 * force names them. Watches of files no longer included are dropped. */
static void
update_watches (DhfPolicyStore *self)
{
  g_autoptr (DhfPolicy) policy = NULL;
  g_autoptr (GHashTable) wanted = NULL;
  const gchar *const *files;
  GHashTableIter iter;
  gpointer key;

  if (self->context == NULL)
    return;
  wanted = g_hash_table_new (g_str_hash, g_str_equal);
  for (guint i = 0; self->dirs[i] != NULL; i++)
    {
      add_monitor (self, self->dirs[i], TRUE);
      g_hash_table_add (wanted, self->dirs[i]);
    }
  policy = dhf_policy_store_get (self);
  files = dhf_policy_get_files (policy);
  for (guint i = 0; files[i] != NULL; i++)
    {
      if (in_watched_dir (self, files[i])
          || g_str_equal (files[i], self->last_good_path ? self->last_good_path : ""))
        continue;
      add_monitor (self, files[i], FALSE);
      g_hash_table_add (wanted, (gpointer) files[i]);
    }
  g_hash_table_iter_init (&iter, self->monitors);
  while (g_hash_table_iter_next (&iter, &key, NULL))
    if (!g_hash_table_contains (wanted, key))
      g_hash_table_iter_remove (&iter);
}

void
dhf_policy_store_watch (DhfPolicyStore *self)
{
  g_return_if_fail (DHF_IS_POLICY_STORE (self));

  if (self->context == NULL)
    self->context = g_main_context_ref_thread_default ();
  update_watches (self);
}
