/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include "config.h"

#include <string.h>
#include <unistd.h>

#include <glib/gstdio.h>

#include "dhf-policy-store.h"

#include "dhf-test-util.h"

/* The policy store: reload keeps the last good policy, startup falls back
 * in order, watch() reloads on edits, readers on other threads never see
 * a failed or freed policy. */

static guint n_warnings;

/* The store warns about every broken edit, which GTest would make fatal:
 * count those warnings instead. */
static GLogWriterOutput
count_warnings (GLogLevelFlags level, const GLogField *fields, gsize n_fields, gpointer data)
{
  if (level & (G_LOG_LEVEL_WARNING | G_LOG_LEVEL_MESSAGE))
    {
      if (level & G_LOG_LEVEL_WARNING)
        g_atomic_int_inc (&n_warnings);
      return G_LOG_WRITER_HANDLED;
    }
  return g_log_writer_default (level, fields, n_fields, data);
}

static const gchar *const no_tags[] = { NULL };
static const DhfPolicyDomain dom0 = { "dom0", TRUE, FALSE, NULL, NULL, no_tags };
static const DhfPolicyDomain work = { "work", FALSE, TRUE, "environment", "acme", no_tags };

static DhfPolicyAction
switch_action (DhfPolicyStore *store)
{
  g_autoptr (DhfPolicy) policy = dhf_policy_store_get (store);
  DhfPolicyQuery query = { DHF_POLICY_KIND_SWITCH, NULL, NULL, &dom0, &work, NULL };

  return dhf_policy_evaluate (policy, &query, NULL);
}

typedef struct
{
  gchar *root;
  gchar *admin;
  gchar *vendor;
  gchar *last_good;
  guint changed;
} Fixture;

static void
fixture_setup (Fixture *f, gconstpointer data)
{
  f->root = g_dir_make_tmp ("dhf-policy-store-XXXXXX", NULL);
  f->admin = g_build_filename (f->root, "admin", NULL);
  f->vendor = g_build_filename (f->root, "vendor", NULL);
  f->last_good = g_build_filename (f->root, "state", "policy.last-good", NULL);
  f->changed = 0;
  dhf_test_write_file (f->vendor, "50-main.policy", "switch @dom0 @any ask\n");
  dhf_test_write_file (f->admin, "50-main.policy", "switch @dom0 @any allow\n");
}

static void
fixture_teardown (Fixture *f, gconstpointer data)
{
  dhf_test_remove_tree (f->root);
  g_free (f->root);
  g_free (f->admin);
  g_free (f->vendor);
  g_free (f->last_good);
}

static DhfPolicyStore *
new_store (Fixture *f, gboolean with_last_good)
{
  const gchar *dirs[] = { f->admin, f->vendor, NULL };
  DhfPolicyStore *store = dhf_policy_store_new (dirs, with_last_good ? f->last_good : NULL);

  return store;
}

static void
on_changed (DhfPolicyStore *store, gpointer data)
{
  Fixture *f = data;

  f->changed++;
}

static void
test_reload_keeps_old (Fixture *f, gconstpointer data)
{
  g_autoptr (DhfPolicyStore) store = new_store (f, TRUE);
  const DhfPolicyDiagnostic *diagnostic;
  g_autofree gchar *text = NULL;
  g_autofree gchar *saved = NULL;
  guint warnings;

  g_signal_connect (store, "changed", G_CALLBACK (on_changed), f);
  /* Before the first load: the empty policy. */
  g_assert_cmpint (switch_action (store), ==, DHF_POLICY_ACTION_DENY);
  g_assert_cmpuint (dhf_policy_store_get_generation (store), ==, 0);

  g_assert_true (dhf_policy_store_reload (store));
  g_assert_false (dhf_policy_store_is_degraded (store));
  g_assert_cmpuint (dhf_policy_store_get_generation (store), ==, 1);
  g_assert_cmpuint (f->changed, ==, 1);
  g_assert_cmpint (switch_action (store), ==, DHF_POLICY_ACTION_ALLOW);
  g_assert_cmpint (dhf_policy_store_get_source (store), ==, DHF_POLICY_SOURCE_FILES);
  g_assert_true (g_file_get_contents (f->last_good, &saved, NULL, NULL));
  g_assert_true (strstr (saved, "switch @dom0 @any allow\n") != NULL);
  /* The saved admin policy is dhfd's alone to read, in a directory of its own. */
  {
    GStatBuf st;
    g_autofree gchar *dir = g_path_get_dirname (f->last_good);

    g_assert_cmpint (g_stat (f->last_good, &st), ==, 0);
    g_assert_cmpint (st.st_mode & 0777, ==, 0600);
    g_assert_cmpint (g_stat (dir, &st), ==, 0);
    g_assert_cmpint (st.st_mode & 0777, ==, 0700);
  }

  /* A broken edit: the old policy stays in force. */
  warnings = n_warnings;
  dhf_test_write_file (f->admin, "50-main.policy",
                       "switch @dom0 @any allow\nswitch @dom0 @any alow\n");
  g_assert_false (dhf_policy_store_reload (store));
  g_assert_true (dhf_policy_store_is_degraded (store));
  g_assert_cmpuint (dhf_policy_store_get_generation (store), ==, 1);
  g_assert_cmpuint (f->changed, ==, 1);
  g_assert_cmpint (switch_action (store), ==, DHF_POLICY_ACTION_ALLOW);
  g_assert_cmpint (dhf_policy_store_get_source (store), ==, DHF_POLICY_SOURCE_LAST_GOOD_MEMORY);
  g_assert_cmpuint (dhf_policy_store_get_diagnostics (store)->len, ==, 1);
  diagnostic = g_ptr_array_index (dhf_policy_store_get_diagnostics (store), 0);
  text = dhf_policy_diagnostic_format (diagnostic);
  g_assert_true (g_str_has_suffix (
      text,
      "/admin/50-main.policy:2:19: error: unknown action 'alow' (expected allow, deny or ask)"));
  g_assert_cmpuint (n_warnings, >, warnings);

  /* The fix restores. */
  dhf_test_write_file (f->admin, "50-main.policy", "switch @dom0 @any deny\n");
  g_assert_true (dhf_policy_store_reload (store));
  g_assert_false (dhf_policy_store_is_degraded (store));
  g_assert_cmpuint (dhf_policy_store_get_generation (store), ==, 2);
  g_assert_cmpuint (f->changed, ==, 2);
  g_assert_cmpuint (dhf_policy_store_get_diagnostics (store)->len, ==, 0);
  g_assert_cmpint (dhf_policy_store_get_source (store), ==, DHF_POLICY_SOURCE_FILES);
  g_assert_cmpint (switch_action (store), ==, DHF_POLICY_ACTION_DENY);
}

/* A saved last good policy others could have written is not used. */
static void
test_last_good_checked (Fixture *f, gconstpointer data)
{
  g_autofree gchar *elsewhere = g_build_filename (f->root, "elsewhere.last-good", NULL);

  {
    g_autoptr (DhfPolicyStore) store = new_store (f, TRUE);

    g_assert_true (dhf_policy_store_reload (store));
  }
  dhf_test_write_file (f->admin, "50-main.policy", "switch @dom0 @any alow\n");
  dhf_test_write_file (f->vendor, "60-vendor.policy", "switch @dom0 @any ask\n");

  /* Group-writable: refused, the vendor defaults instead. */
  g_assert_cmpint (g_chmod (f->last_good, 0620), ==, 0);
  {
    g_autoptr (DhfPolicyStore) store = new_store (f, TRUE);

    g_assert_false (dhf_policy_store_reload (store));
    g_assert_cmpint (dhf_policy_store_get_source (store), ==, DHF_POLICY_SOURCE_VENDOR_ONLY);
    g_assert_cmpint (switch_action (store), ==, DHF_POLICY_ACTION_ASK);
  }
  /* A symlink (to a file dhfd would accept): refused. */
  g_assert_cmpint (g_chmod (f->last_good, 0600), ==, 0);
  g_assert_cmpint (g_rename (f->last_good, elsewhere), ==, 0);
  g_assert_cmpint (symlink (elsewhere, f->last_good), ==, 0);
  {
    g_autoptr (DhfPolicyStore) store = new_store (f, TRUE);

    g_assert_false (dhf_policy_store_reload (store));
    g_assert_cmpint (dhf_policy_store_get_source (store), ==, DHF_POLICY_SOURCE_VENDOR_ONLY);
  }
  /* The file itself, 0600: used. */
  g_assert_cmpint (g_unlink (f->last_good), ==, 0);
  g_assert_cmpint (g_rename (elsewhere, f->last_good), ==, 0);
  {
    g_autoptr (DhfPolicyStore) store = new_store (f, TRUE);

    g_assert_false (dhf_policy_store_reload (store));
    g_assert_cmpint (dhf_policy_store_get_source (store), ==, DHF_POLICY_SOURCE_LAST_GOOD_SAVED);
    g_assert_cmpint (switch_action (store), ==, DHF_POLICY_ACTION_ALLOW);
  }
}

static void
test_startup_fallbacks (Fixture *f, gconstpointer data)
{
  {
    /* A good start saves the last good policy. */
    g_autoptr (DhfPolicyStore) store = new_store (f, TRUE);

    g_assert_true (dhf_policy_store_reload (store));
    g_assert_true (g_file_test (f->last_good, G_FILE_TEST_IS_REGULAR));
  }

  dhf_test_write_file (f->admin, "50-main.policy", "switch @dom0 @any alow\n");
  {
    /* Broken on disk: the last good policy. */
    g_autoptr (DhfPolicyStore) store = new_store (f, TRUE);

    g_signal_connect (store, "changed", G_CALLBACK (on_changed), f);
    g_assert_false (dhf_policy_store_reload (store));
    g_assert_true (dhf_policy_store_is_degraded (store));
    g_assert_cmpuint (dhf_policy_store_get_generation (store), ==, 1);
    g_assert_cmpuint (f->changed, ==, 1);
    g_assert_cmpint (dhf_policy_store_get_source (store), ==, DHF_POLICY_SOURCE_LAST_GOOD_SAVED);
    g_assert_cmpint (switch_action (store), ==, DHF_POLICY_ACTION_ALLOW);
    g_assert_cmpuint (dhf_policy_store_get_diagnostics (store)->len, ==, 1);
  }
  {
    /* No last good policy: the vendor directory alone, without the vendor
     * files the admin has a same-named file for (broken or not). */
    g_autoptr (DhfPolicyStore) store = new_store (f, FALSE);

    g_assert_false (dhf_policy_store_reload (store));
    g_assert_true (dhf_policy_store_is_degraded (store));
    g_assert_cmpint (dhf_policy_store_get_source (store), ==, DHF_POLICY_SOURCE_VENDOR_ONLY);
    g_assert_cmpint (switch_action (store), ==, DHF_POLICY_ACTION_DENY);
  }
  /* An empty admin file disables the vendor one: the fallback keeps it
   * disabled, while other vendor files are used. */
  dhf_test_write_file (f->vendor, "40-vendor.policy", "switch @dom0 @any ask\n");
  dhf_test_write_file (f->vendor, "30-disabled.policy", "switch @dom0 @any allow\n");
  dhf_test_write_file (f->admin, "30-disabled.policy", "");
  {
    g_autoptr (DhfPolicyStore) store = new_store (f, FALSE);
    g_autoptr (DhfPolicy) policy = NULL;

    g_assert_false (dhf_policy_store_reload (store));
    g_assert_cmpint (dhf_policy_store_get_source (store), ==, DHF_POLICY_SOURCE_VENDOR_ONLY);
    policy = dhf_policy_store_get (store);
    g_assert_cmpuint (dhf_policy_get_n_rules (policy), ==, 1);
    g_assert_cmpint (switch_action (store), ==, DHF_POLICY_ACTION_ASK);
  }
  dhf_test_write_file (f->root, "state/policy.last-good", "!include /etc/passwd\n");
  {
    /* A last good file that does not parse: the vendor directory too. */
    g_autoptr (DhfPolicyStore) store = new_store (f, TRUE);

    g_assert_false (dhf_policy_store_reload (store));
    g_assert_cmpint (dhf_policy_store_get_source (store), ==, DHF_POLICY_SOURCE_VENDOR_ONLY);
    g_assert_cmpint (switch_action (store), ==, DHF_POLICY_ACTION_ASK);
  }
  dhf_test_write_file (f->vendor, "40-vendor.policy", "switch @dom0 @any maybe\n");
  {
    /* Nothing valid: deny everything. */
    g_autoptr (DhfPolicyStore) store = new_store (f, TRUE);
    g_autoptr (DhfPolicy) policy = NULL;

    g_assert_false (dhf_policy_store_reload (store));
    g_assert_true (dhf_policy_store_is_degraded (store));
    policy = dhf_policy_store_get (store);
    g_assert_cmpuint (dhf_policy_get_n_rules (policy), ==, 0);
    g_assert_cmpint (dhf_policy_store_get_source (store), ==, DHF_POLICY_SOURCE_EMPTY);
    g_assert_cmpint (switch_action (store), ==, DHF_POLICY_ACTION_DENY);
    /* The admin file's error and the vendor file's. */
    g_assert_cmpuint (dhf_policy_store_get_diagnostics (store)->len, ==, 2);
  }
}

static gboolean
wake (gpointer data)
{
  return G_SOURCE_CONTINUE;
}

/* Spins the main loop until the store's generation passes before, or 5 s. */
static gboolean
wait_for_generation (DhfPolicyStore *store, guint64 before)
{
  gint64 deadline = g_get_monotonic_time () + 5 * G_USEC_PER_SEC;
  guint tick = g_timeout_add (20, wake, NULL);

  while (dhf_policy_store_get_generation (store) == before && g_get_monotonic_time () < deadline)
    g_main_context_iteration (NULL, TRUE);
  g_source_remove (tick);
  return dhf_policy_store_get_generation (store) > before;
}

static void
test_watch (Fixture *f, gconstpointer data)
{
  g_autoptr (DhfPolicyStore) store = new_store (f, FALSE);
  guint64 generation;

  dhf_test_write_file (f->admin, "40-include.policy", "!include ../elsewhere/inc.rules\n");
  dhf_test_write_file (f->root, "elsewhere/inc.rules", "org.x.Y @any @any allow\n");
  g_assert_true (dhf_policy_store_reload (store));
  dhf_policy_store_watch (store);
  g_assert_cmpint (switch_action (store), ==, DHF_POLICY_ACTION_ALLOW);

  /* A changed file. */
  generation = dhf_policy_store_get_generation (store);
  dhf_test_write_file (f->admin, "50-main.policy", "switch @dom0 @any ask\n");
  g_assert_true (wait_for_generation (store, generation));
  g_assert_cmpint (switch_action (store), ==, DHF_POLICY_ACTION_ASK);

  /* A new file. */
  generation = dhf_policy_store_get_generation (store);
  dhf_test_write_file (f->admin, "00-first.policy", "switch @dom0 @any deny\n");
  g_assert_true (wait_for_generation (store, generation));
  g_assert_cmpint (switch_action (store), ==, DHF_POLICY_ACTION_DENY);

  /* A removed file. */
  generation = dhf_policy_store_get_generation (store);
  {
    g_autofree gchar *first = g_build_filename (f->admin, "00-first.policy", NULL);

    g_assert_cmpint (g_unlink (first), ==, 0);
  }
  g_assert_true (wait_for_generation (store, generation));
  g_assert_cmpint (switch_action (store), ==, DHF_POLICY_ACTION_ASK);

  /* An included file outside the directories. */
  generation = dhf_policy_store_get_generation (store);
  dhf_test_write_file (f->root, "elsewhere/inc.rules", "switch @dom0 @any allow\n");
  g_assert_true (wait_for_generation (store, generation));
  g_assert_cmpint (switch_action (store), ==, DHF_POLICY_ACTION_ALLOW);
}

/* Spins the main loop for ms milliseconds. */
static void
spin (guint ms)
{
  gint64 deadline = g_get_monotonic_time () + ms * 1000;
  guint tick = g_timeout_add (10, wake, NULL);

  while (g_get_monotonic_time () < deadline)
    g_main_context_iteration (NULL, TRUE);
  g_source_remove (tick);
}

/* A file written in place, with a pause mid-file longer than the
 * debounce: nothing is read until the writer closes it. */
static void
test_watch_waits_for_close (Fixture *f, gconstpointer data)
{
  g_autoptr (DhfPolicyStore) store = new_store (f, TRUE);
  g_autofree gchar *path = g_build_filename (f->admin, "50-main.policy", NULL);
  g_autofree gchar *saved = NULL;
  g_autoptr (DhfPolicy) policy = NULL;
  guint64 generation;
  FILE *file;

  g_assert_true (dhf_policy_store_reload (store));
  dhf_policy_store_watch (store);
  generation = dhf_policy_store_get_generation (store);

  file = fopen (path, "w");
  g_assert_nonnull (file);
  fputs ("switch @dom0 @any ask\n", file);
  fflush (file);
  /* The valid prefix, on disk for 3 debounces: not put in force. */
  spin (600);
  g_assert_cmpuint (dhf_policy_store_get_generation (store), ==, generation);
  fputs ("switch @dom0 @any deny\n", file);
  fclose (file);
  g_assert_true (wait_for_generation (store, generation));
  policy = dhf_policy_store_get (store);
  g_assert_cmpuint (dhf_policy_get_n_rules (policy), ==, 2);
  g_assert_cmpint (switch_action (store), ==, DHF_POLICY_ACTION_ASK);
  g_assert_true (g_file_get_contents (f->last_good, &saved, NULL, NULL));
  g_assert_nonnull (strstr (saved, "switch @dom0 @any deny\n"));
}

/* A set refused because of a newly included file: fixing that file,
 * outside the watched directories, brings the reload. */
static void
test_watch_refused_include (Fixture *f, gconstpointer data)
{
  g_autoptr (DhfPolicyStore) store = new_store (f, FALSE);
  guint64 generation;

  g_assert_true (dhf_policy_store_reload (store));
  dhf_policy_store_watch (store);
  generation = dhf_policy_store_get_generation (store);

  dhf_test_write_file (f->root, "elsewhere/new.rules", "switch @dom0 @any alow\n");
  dhf_test_write_file (f->admin, "40-include.policy", "!include \"../elsewhere/new.rules\"\n");
  /* Refused: wait for the attempt. */
  {
    gint64 deadline = g_get_monotonic_time () + 5 * G_USEC_PER_SEC;
    guint tick = g_timeout_add (20, wake, NULL);

    while (!dhf_policy_store_is_degraded (store) && g_get_monotonic_time () < deadline)
      g_main_context_iteration (NULL, TRUE);
    g_source_remove (tick);
  }
  g_assert_true (dhf_policy_store_is_degraded (store));
  g_assert_cmpuint (dhf_policy_store_get_generation (store), ==, generation);

  dhf_test_write_file (f->root, "elsewhere/new.rules", "switch @dom0 @any deny\n");
  g_assert_true (wait_for_generation (store, generation));
  g_assert_false (dhf_policy_store_is_degraded (store));
  g_assert_cmpint (switch_action (store), ==, DHF_POLICY_ACTION_DENY);
}

typedef struct
{
  DhfPolicyStore *store;
  gint stop;
  guint64 evaluations;
  guint64 failures;
} Hammer;

static gpointer
hammer (gpointer data)
{
  Hammer *h = data;
  const gchar *const tags[] = { NULL };
  const DhfPolicyDomain source = { "work", FALSE, TRUE, "environment", "acme", tags };
  const DhfPolicyDomain target = { "sync", FALSE, FALSE, "service", "acme", tags };
  DhfPolicyQuery query = { DHF_POLICY_KIND_XDM, "org.x.Sync1", NULL, &source, &target, NULL };
  guint64 evaluations = 0, failures = 0;

  while (!g_atomic_int_get (&h->stop))
    {
      DhfPolicy *policy = dhf_policy_store_get (h->store);
      DhfPolicyDecision decision;
      DhfPolicyAction action = dhf_policy_evaluate (policy, &query, &decision);

      if ((action != DHF_POLICY_ACTION_ALLOW && action != DHF_POLICY_ACTION_ASK)
          || decision.rule == NULL || dhf_policy_rule_get_line (decision.rule) != 2)
        failures++;
      evaluations++;
      dhf_policy_unref (policy);
    }
  h->evaluations = evaluations;
  h->failures = failures;
  return NULL;
}

static void
test_concurrent (Fixture *f, gconstpointer data)
{
  g_autoptr (DhfPolicyStore) store = new_store (f, TRUE);
  Hammer h[2] = { { store, 0, 0, 0 }, { store, 0, 0, 0 } };
  GThread *threads[2];

  dhf_test_write_file (f->admin, "20-xdm.policy",
                       "org.x.Files1 @any @any deny\norg.x.Sync1 work sync allow\n");
  g_assert_true (dhf_policy_store_reload (store));
  for (guint i = 0; i < 2; i++)
    threads[i] = g_thread_new ("hammer", hammer, &h[i]);
  for (guint i = 0; i < 200; i++)
    {
      dhf_test_write_file (f->admin, "20-xdm.policy",
                           i % 2 ? "org.x.Files1 @any @any deny\norg.x.Sync1 work sync allow\n"
                                 : "org.x.Files1 @any @any deny\norg.x.Sync1 work sync ask\n");
      g_assert_true (dhf_policy_store_reload (store));
    }
  for (guint i = 0; i < 2; i++)
    {
      g_atomic_int_set (&h[i].stop, 1);
      g_thread_join (threads[i]);
    }
  g_assert_cmpuint (dhf_policy_store_get_generation (store), ==, 201);
  for (guint i = 0; i < 2; i++)
    {
      g_test_message ("thread %u: %" G_GUINT64_FORMAT " evaluations", i, h[i].evaluations);
      g_assert_cmpuint (h[i].evaluations, >, 0);
      g_assert_cmpuint (h[i].failures, ==, 0);
    }
}

int
main (int argc, char **argv)
{
  g_log_set_writer_func (count_warnings, NULL, NULL);
  g_test_init (&argc, &argv, NULL);

  g_test_add ("/policy-store/reload-keeps-old", Fixture, NULL, fixture_setup, test_reload_keeps_old,
              fixture_teardown);
  g_test_add ("/policy-store/startup-fallbacks", Fixture, NULL, fixture_setup,
              test_startup_fallbacks, fixture_teardown);
  g_test_add ("/policy-store/last-good-checked", Fixture, NULL, fixture_setup,
              test_last_good_checked, fixture_teardown);
  g_test_add ("/policy-store/watch", Fixture, NULL, fixture_setup, test_watch, fixture_teardown);
  g_test_add ("/policy-store/watch-waits-for-close", Fixture, NULL, fixture_setup,
              test_watch_waits_for_close, fixture_teardown);
  g_test_add ("/policy-store/watch-refused-include", Fixture, NULL, fixture_setup,
              test_watch_refused_include, fixture_teardown);
  g_test_add ("/policy-store/concurrent", Fixture, NULL, fixture_setup, test_concurrent,
              fixture_teardown);
  return g_test_run ();
}
