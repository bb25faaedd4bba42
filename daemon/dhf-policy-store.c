/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <glib/gstdio.h>

#include "dhf-policy-store.h"

/* The policy in force. Readers on any thread take a reference under a
 * mutex held for two pointer operations; a reload builds its policy
 * outside the lock and swaps it in, so an evaluation never waits for a
 * parse and never sees a policy freed under it. */

#define DEBOUNCE_MS 200
/* How long a file may stay "being written" (CHANGED without the
 * CHANGES_DONE_HINT of its close) before dhfd reads it anyway. */
#define WRITE_TIMEOUT_MS 2000
/* ... and never postponed longer than this by files kept open and written
 * (a swap or log file in a policy directory). */
#define WRITE_MAX_WAIT_US (10 * G_USEC_PER_SEC)
/* The saved last good policy is read back at most this big. */
#define MAX_LAST_GOOD (64 * 1024 * 1024)

struct _DhfPolicyStore
{
  GObject parent_instance;

  gchar **dirs;
  gchar *last_good_path;

  GMutex lock; /* guards policy */
  DhfPolicy *policy;
  gboolean loaded; /* a reload has put something in force */

  gboolean degraded;
  DhfPolicySource source;
  GPtrArray *diagnostics;
  guint64 generation;

  GMainContext *context; /* where watch() was called */
  GHashTable *monitors;  /* path -> GFileMonitor */
  GSource *debounce;
  GHashTable *writing;    /* paths changed and not yet closed */
  GSource *write_timeout; /* reads them anyway when no close comes */
  gint64 writing_since;   /* when writing last became non-empty */
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
  if (self->write_timeout != NULL)
    {
      g_source_destroy (self->write_timeout);
      g_source_unref (self->write_timeout);
    }
  g_clear_pointer (&self->writing, g_hash_table_unref);
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
  self->writing = g_hash_table_new_full (g_str_hash, g_str_equal, g_free, NULL);
  self->source = DHF_POLICY_SOURCE_EMPTY;
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
  /* The admin policy is not for everyone to read (D-Bus Show is
   * restricted too): the directory, when dhfd creates it, and the file
   * are the daemon's own. */
  if (g_mkdir_with_parents (dir, 0700) < 0)
    {
      g_warning ("cannot create %s for the last good policy: %s", dir, g_strerror (errno));
      return;
    }
  /* Written to a temporary file (mode 0600) and renamed over. */
  if (!g_file_set_contents_full (self->last_good_path, source, -1, G_FILE_SET_CONTENTS_CONSISTENT,
                                 0600, &error))
    g_warning ("cannot save the last good policy: %s", error->message);
}

/* Reads the saved last good policy, refusing a file that someone other
 * than dhfd (or root) could have written: it is put in force unchecked
 * by any admin. */
static gchar *
read_last_good (const gchar *path, gsize *length)
{
  g_autoptr (GString) text = NULL;
  struct stat st;
  int fd;

  fd = open (path, O_RDONLY | O_NOFOLLOW | O_CLOEXEC | O_NOCTTY | O_NONBLOCK);
  if (fd < 0)
    {
      if (errno != ENOENT)
        g_warning ("policy: cannot read the last good policy %s: %s", path, g_strerror (errno));
      return NULL;
    }
  if (fstat (fd, &st) < 0)
    {
      g_warning ("policy: cannot read the last good policy %s: %s", path, g_strerror (errno));
      close (fd);
      return NULL;
    }
  if (!S_ISREG (st.st_mode))
    {
      g_warning ("policy: ignoring the last good policy %s: not a regular file", path);
      close (fd);
      return NULL;
    }
  if (st.st_uid != getuid () && st.st_uid != 0)
    {
      g_warning ("policy: ignoring the last good policy %s: owned by uid %u, not by dhfd (uid %u) "
                 "or root",
                 path, (guint) st.st_uid, (guint) getuid ());
      close (fd);
      return NULL;
    }
  if ((st.st_mode & (S_IWGRP | S_IWOTH)) != 0)
    {
      g_warning ("policy: ignoring the last good policy %s: writable by group or others (mode "
                 "%04o)",
                 path, (guint) (st.st_mode & 07777));
      close (fd);
      return NULL;
    }
  text = g_string_new (NULL);
  for (;;)
    {
      gchar buf[65536];
      gssize n = read (fd, buf, sizeof buf);

      if (n < 0 && errno == EINTR)
        continue;
      if (n < 0)
        {
          g_warning ("policy: cannot read the last good policy %s: %s", path, g_strerror (errno));
          close (fd);
          return NULL;
        }
      if (n == 0)
        break;
      if (text->len + (gsize) n > MAX_LAST_GOOD)
        {
          g_warning ("policy: ignoring the last good policy %s: larger than %u bytes", path,
                     MAX_LAST_GOOD);
          close (fd);
          return NULL;
        }
      g_string_append_len (text, buf, n);
    }
  close (fd);
  *length = text->len;
  return g_string_free (g_steal_pointer (&text), FALSE);
}

static gboolean
is_rule_file_name (const gchar *name)
{
  if (!g_str_has_suffix (name, ".policy") || !(g_ascii_isalnum (name[0]) || name[0] == '_'))
    return FALSE;
  for (const gchar *p = name; *p != '\0'; p++)
    if (!g_ascii_isalnum (*p) && *p != '_' && *p != '.' && *p != '-')
      return FALSE;
  return TRUE;
}

static gint
compare_names (gconstpointer a, gconstpointer b)
{
  return strcmp (*(const gchar *const *) a, *(const gchar *const *) b);
}

/* The vendor directory (the last of dirs) without the files an admin
 * directory has a file of the same name for: such a file disables the
 * vendor one (an empty one is how an admin turns a vendor file off), and
 * does so even when the admin file itself is broken. */
static DhfPolicy *
load_vendor_alone (DhfPolicyStore *self)
{
  guint n_dirs = g_strv_length (self->dirs);
  const gchar *vendor = self->dirs[n_dirs - 1];
  g_autoptr (GPtrArray) names = g_ptr_array_new_with_free_func (g_free);
  g_autoptr (GPtrArray) files = g_ptr_array_new_with_free_func (g_free);
  g_autoptr (GError) error = NULL;
  g_autoptr (GDir) dir = g_dir_open (vendor, 0, &error);
  const gchar *name;

  if (dir == NULL)
    {
      if (g_error_matches (error, G_FILE_ERROR, G_FILE_ERROR_NOENT))
        return dhf_policy_load_files ((const gchar *const[]){ NULL }, NULL);
      return NULL;
    }
  while ((name = g_dir_read_name (dir)) != NULL)
    {
      gboolean overridden = FALSE;

      if (!g_str_has_suffix (name, ".policy"))
        continue;
      if (!is_rule_file_name (name))
        return NULL; /* as dhf_policy_load_dirs() would: an error */
      for (guint i = 0; i + 1 < n_dirs && !overridden; i++)
        {
          g_autofree gchar *admin = g_build_filename (self->dirs[i], name, NULL);

          overridden = g_file_test (admin, G_FILE_TEST_EXISTS)
                       || g_file_test (admin, G_FILE_TEST_IS_SYMLINK);
        }
      if (overridden)
        g_message ("policy: not using the vendor file %s/%s: an admin file of that name disables "
                   "it",
                   vendor, name);
      else
        g_ptr_array_add (names, g_strdup (name));
    }
  g_ptr_array_sort (names, compare_names);
  for (guint i = 0; i < names->len; i++)
    g_ptr_array_add (files, g_build_filename (vendor, g_ptr_array_index (names, i), NULL));
  g_ptr_array_add (files, NULL);
  return dhf_policy_load_files ((const gchar *const *) files->pdata, NULL);
}

/* The startup fallbacks, in order: the saved last good policy, the
 * vendor directory alone, nothing (deny everything). */
static DhfPolicy *
load_fallback (DhfPolicyStore *self)
{
  guint n_dirs = g_strv_length (self->dirs);
  g_autofree gchar *text = NULL;
  gsize len = 0;

  if (self->last_good_path != NULL && (text = read_last_good (self->last_good_path, &len)) != NULL)
    {
      DhfPolicy *policy = dhf_policy_parse_data (self->last_good_path, text, len, NULL);

      if (policy != NULL)
        {
          g_warning ("policy: using the last good policy saved in %s", self->last_good_path);
          self->source = DHF_POLICY_SOURCE_LAST_GOOD_SAVED;
          return policy;
        }
      g_warning ("policy: the last good policy saved in %s is not valid", self->last_good_path);
    }
  if (n_dirs > 1)
    {
      DhfPolicy *policy = load_vendor_alone (self);

      if (policy != NULL)
        {
          g_warning ("policy: using the vendor policy in %s alone", self->dirs[n_dirs - 1]);
          self->source = DHF_POLICY_SOURCE_VENDOR_ONLY;
          return policy;
        }
    }
  g_warning ("policy: no valid policy; denying everything");
  self->source = DHF_POLICY_SOURCE_EMPTY;
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
      self->source = DHF_POLICY_SOURCE_FILES;
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
      /* What was in force stays: the files' set becomes "the last good
       * one in memory"; a startup fallback stays what it was. */
      if (self->source == DHF_POLICY_SOURCE_FILES)
        self->source = DHF_POLICY_SOURCE_LAST_GOOD_MEMORY;
      g_warning ("policy: keeping the policy in force (generation %" G_GUINT64_FORMAT "): %s",
                 self->generation, dhf_policy_source_describe (self->source));
      /* The set was refused, but the files it includes must be watched
       * all the same: fixing one has to bring a reload. */
      update_watches (self);
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

DhfPolicySource
dhf_policy_store_get_source (DhfPolicyStore *self)
{
  g_return_val_if_fail (DHF_IS_POLICY_STORE (self), DHF_POLICY_SOURCE_EMPTY);
  return self->source;
}

const gchar *
dhf_policy_source_describe (DhfPolicySource source)
{
  switch (source)
    {
      case DHF_POLICY_SOURCE_FILES:
        return "the policy files on disk are in force";
      case DHF_POLICY_SOURCE_LAST_GOOD_MEMORY:
        return "the last good policy stays in force";
      case DHF_POLICY_SOURCE_LAST_GOOD_SAVED:
        return "the last good policy saved at the previous start is in force";
      case DHF_POLICY_SOURCE_VENDOR_ONLY:
        return "the vendor defaults alone are in force";
      case DHF_POLICY_SOURCE_EMPTY:
      default:
        return "no policy is in force: everything is denied";
    }
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
  /* A file is still being written: its close (or the write timeout)
   * schedules the reload. */
  if (g_hash_table_size (self->writing) > 0)
    return G_SOURCE_REMOVE;
  dhf_policy_store_reload (self);
  return G_SOURCE_REMOVE;
}

static void
schedule_reload (DhfPolicyStore *self)
{
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
cancel_write_timeout (DhfPolicyStore *self)
{
  if (self->write_timeout == NULL)
    return;
  g_source_destroy (self->write_timeout);
  g_clear_pointer (&self->write_timeout, g_source_unref);
}

/* A writer that never closes its file (or a backend without
 * CHANGES_DONE_HINT): read what is there after all. */
static gboolean
on_write_timeout (gpointer data)
{
  DhfPolicyStore *self = data;

  g_clear_pointer (&self->write_timeout, g_source_unref);
  g_debug ("policy: %u files still being written after %u ms; reading them anyway",
           g_hash_table_size (self->writing), WRITE_TIMEOUT_MS);
  g_hash_table_remove_all (self->writing);
  schedule_reload (self);
  return G_SOURCE_REMOVE;
}

static void
start_write_timeout (DhfPolicyStore *self)
{
  gint64 now = g_get_monotonic_time ();
  gint64 left_ms;

  if (self->write_timeout == NULL)
    self->writing_since = now;
  cancel_write_timeout (self);
  left_ms = (self->writing_since + WRITE_MAX_WAIT_US - now) / 1000;
  self->write_timeout = g_timeout_source_new ((guint) CLAMP (left_ms, 0, WRITE_TIMEOUT_MS));
  g_source_set_callback (self->write_timeout, on_write_timeout, self, NULL);
  g_source_set_static_name (self->write_timeout, "dhf-policy-write-timeout");
  g_source_attach (self->write_timeout, self->context);
}

static void
write_finished (DhfPolicyStore *self, GFile *file)
{
  g_autofree gchar *path = file != NULL ? g_file_get_path (file) : NULL;

  if (path != NULL)
    g_hash_table_remove (self->writing, path);
  if (g_hash_table_size (self->writing) == 0)
    cancel_write_timeout (self);
}

/* A file being written in place (CREATED, CHANGED, ...) is read only once
 * it is closed (CHANGES_DONE_HINT): a writer pausing mid-file must not
 * get a valid prefix of it put in force and saved as the last good
 * policy. Renames, deletions and attribute changes are complete events.
 * Editors (and g_file_set_contents()) write a temporary file and rename
 * it, which is what docs/policy.md asks admins to do. */
static void
on_changed (GFileMonitor *monitor, GFile *file, GFile *other, GFileMonitorEvent event,
            gpointer data)
{
  DhfPolicyStore *self = data;
  gchar *path;

  switch (event)
    {
      case G_FILE_MONITOR_EVENT_PRE_UNMOUNT:
      case G_FILE_MONITOR_EVENT_UNMOUNTED:
        return;
      case G_FILE_MONITOR_EVENT_CHANGED:
      case G_FILE_MONITOR_EVENT_CREATED:
        path = file != NULL ? g_file_get_path (file) : NULL;
        if (path == NULL || g_file_test (path, G_FILE_TEST_IS_DIR))
          {
            g_free (path);
            schedule_reload (self);
            return;
          }
        g_hash_table_add (self->writing, path);
        /* Measured from the latest write (a writer still writing is waited
         * for), up to WRITE_MAX_WAIT_US in all. */
        start_write_timeout (self);
        return;
      case G_FILE_MONITOR_EVENT_CHANGES_DONE_HINT:
      case G_FILE_MONITOR_EVENT_DELETED:
      case G_FILE_MONITOR_EVENT_MOVED_OUT:
        write_finished (self, file);
        break;
      case G_FILE_MONITOR_EVENT_RENAMED:
      case G_FILE_MONITOR_EVENT_MOVED:
        write_finished (self, file);
        write_finished (self, other);
        break;
      case G_FILE_MONITOR_EVENT_ATTRIBUTE_CHANGED:
      case G_FILE_MONITOR_EVENT_MOVED_IN:
      default:
        break;
    }
  schedule_reload (self);
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

/* The argument of a "!include PATH" line (PATH possibly quoted), else NULL. */
static gchar *
include_argument (const gchar *line)
{
  g_autoptr (GString) path = g_string_new (NULL);
  const gchar *p = line;
  gboolean quoted = FALSE;

  while (*p == ' ' || *p == '\t')
    p++;
  if (!g_str_has_prefix (p, "!include") || (p[8] != ' ' && p[8] != '\t'))
    return NULL;
  p += 8;
  while (*p == ' ' || *p == '\t')
    p++;
  for (; *p != '\0' && *p != '\r'; p++)
    {
      if (*p == '"')
        quoted = !quoted;
      else if (quoted && *p == '\\' && (p[1] == '"' || p[1] == '\\'))
        g_string_append_c (path, *++p);
      else if (!quoted && (*p == ' ' || *p == '\t' || *p == '#'))
        break;
      else
        g_string_append_c (path, *p);
    }
  if (path->len == 0)
    return NULL;
  return g_string_free (g_steal_pointer (&path), FALSE);
}

/* Adds to out the files that file includes, directly or not, as its
 * "!include" lines name them: a cheap scan, so that the included files of
 * a refused set are watched too (fixing one must bring a reload). */
static void
scan_includes (const gchar *file, guint depth, GHashTable *seen, GPtrArray *out)
{
  g_autofree gchar *canonical = g_canonicalize_filename (file, NULL);
  g_autofree gchar *text = NULL;
  g_autofree gchar *dir = NULL;
  g_auto (GStrv) lines = NULL;
  gsize len = 0;

  if (depth > 16 || g_hash_table_contains (seen, canonical))
    return;
  g_hash_table_add (seen, g_strdup (canonical));
  if (!g_file_get_contents (file, &text, &len, NULL) || len > 8 * 1024 * 1024
      || memchr (text, '\0', len) != NULL)
    return;
  dir = g_path_get_dirname (file);
  lines = g_strsplit (text, "\n", -1);
  for (guint i = 0; lines[i] != NULL; i++)
    {
      g_autofree gchar *argument = include_argument (lines[i]);
      gchar *path;

      if (argument == NULL)
        continue;
      path = g_path_is_absolute (argument) ? g_steal_pointer (&argument)
                                           : g_build_filename (dir, argument, NULL);
      g_ptr_array_add (out, path);
      scan_includes (path, depth + 1, seen, out);
    }
}

/* The rule files of the directories (every *.policy file: a superset of
 * those the set is built from is fine for watching). */
static void
scan_dirs_includes (DhfPolicyStore *self, GPtrArray *out)
{
  g_autoptr (GHashTable) seen = g_hash_table_new_full (g_str_hash, g_str_equal, g_free, NULL);

  for (guint i = 0; self->dirs[i] != NULL; i++)
    {
      g_autoptr (GDir) dir = g_dir_open (self->dirs[i], 0, NULL);
      const gchar *name;

      while (dir != NULL && (name = g_dir_read_name (dir)) != NULL)
        {
          g_autofree gchar *path = NULL;

          if (!g_str_has_suffix (name, ".policy"))
            continue;
          path = g_build_filename (self->dirs[i], name, NULL);
          scan_includes (path, 0, seen, out);
        }
    }
}

static void
want_file (DhfPolicyStore *self, GHashTable *wanted, const gchar *path)
{
  if (in_watched_dir (self, path)
      || g_str_equal (path, self->last_good_path ? self->last_good_path : ""))
    return;
  add_monitor (self, path, FALSE);
  g_hash_table_add (wanted, g_strdup (path));
}

/* Directories always; included files from elsewhere as the policy in
 * force names them, and as the files on disk name them (a refused set's
 * includes included). Watches of files no longer included are dropped. */
static void
update_watches (DhfPolicyStore *self)
{
  g_autoptr (DhfPolicy) policy = NULL;
  g_autoptr (GHashTable) wanted = NULL;
  g_autoptr (GPtrArray) includes = NULL;
  const gchar *const *files;
  GHashTableIter iter;
  gpointer key;

  if (self->context == NULL)
    return;
  wanted = g_hash_table_new_full (g_str_hash, g_str_equal, g_free, NULL);
  for (guint i = 0; self->dirs[i] != NULL; i++)
    {
      add_monitor (self, self->dirs[i], TRUE);
      g_hash_table_add (wanted, g_strdup (self->dirs[i]));
    }
  policy = dhf_policy_store_get (self);
  files = dhf_policy_get_files (policy);
  for (guint i = 0; files != NULL && files[i] != NULL; i++)
    want_file (self, wanted, files[i]);
  includes = g_ptr_array_new_with_free_func (g_free);
  scan_dirs_includes (self, includes);
  for (guint i = 0; i < includes->len; i++)
    want_file (self, wanted, g_ptr_array_index (includes, i));
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
