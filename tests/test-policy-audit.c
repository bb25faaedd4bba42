/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* The policy audit log's rate limiting, with a clock the test moves. */
#include "config.h"

#include <string.h>

#include "dhf-policy-audit.h"

#define SECOND G_USEC_PER_SEC

typedef struct
{
  gint64 now;
  GPtrArray *records; /* GHashTable: field -> value */
} Fixture;

static gint64
fake_clock (gpointer user_data)
{
  Fixture *fx = user_data;

  return fx->now;
}

static void
capture (GLogLevelFlags level, const GLogField *fields, gsize n_fields, gpointer user_data)
{
  Fixture *fx = user_data;
  GHashTable *record = g_hash_table_new_full (g_str_hash, g_str_equal, g_free, g_free);

  for (gsize i = 0; i < n_fields; i++)
    {
      g_assert_cmpint (fields[i].length, ==, -1);
      g_hash_table_insert (record, g_strdup (fields[i].key), g_strdup (fields[i].value));
    }
  g_ptr_array_add (fx->records, record);
}

static const gchar *
field (Fixture *fx, guint i, const gchar *key)
{
  g_assert_cmpuint (i, <, fx->records->len);
  return g_hash_table_lookup (g_ptr_array_index (fx->records, i), key);
}

static void
fixture_set_up (Fixture *fx, gconstpointer data)
{
  fx->now = 1000 * SECOND;
  fx->records = g_ptr_array_new_with_free_func ((GDestroyNotify) g_hash_table_unref);
}

static void
fixture_tear_down (Fixture *fx, gconstpointer data)
{
  g_ptr_array_unref (fx->records);
}

static DhfPolicyAudit *
new_audit (Fixture *fx, guint max_keys)
{
  return dhf_policy_audit_new_full (fake_clock, capture, fx, max_keys);
}

static const DhfPolicyDomain personal = { .name = "personal", .role = "environment" };
static const DhfPolicyDomain corporate = { .name = "corporate", .role = "environment" };
static const DhfPolicyDomain host = { .name = "dom0", .is_dom0 = TRUE };

static DhfPolicyQuery
xdm_query (const gchar *service, const DhfPolicyDomain *source, const DhfPolicyDomain *target)
{
  return (DhfPolicyQuery){
    .kind = DHF_POLICY_KIND_XDM, .subject = service, .source = source, .target = target
  };
}

static const DhfPolicyDecision default_deny = { .action = DHF_POLICY_ACTION_DENY };

/* Some record is the "other denies suppressed" one. */
static gboolean
strv_contains_other (Fixture *fx)
{
  for (guint i = 0; i < fx->records->len; i++)
    {
      const gchar *message = field (fx, i, "MESSAGE");

      if (g_str_has_suffix (message, " other denies suppressed in the last 10 s"))
        return TRUE;
    }
  return FALSE;
}

static void
deny_n (DhfPolicyAudit *audit, const DhfPolicyQuery *query, guint n)
{
  for (guint i = 0; i < n; i++)
    dhf_policy_audit_deny (audit, query, &default_deny);
}

static void
test_first_logs_at_once (Fixture *fx, gconstpointer data)
{
  g_autoptr (DhfPolicyAudit) audit = new_audit (fx, 0);
  DhfPolicyQuery query = xdm_query ("org.example.Sync1", &personal, &corporate);

  dhf_policy_audit_deny (audit, &query, &default_deny);
  g_assert_cmpuint (fx->records->len, ==, 1);
  g_assert_cmpstr (field (fx, 0, "DHF_POLICY_SUBJECT"), ==, "org.example.Sync1");
  g_assert_cmpstr (field (fx, 0, "DHF_POLICY_SOURCE"), ==, "personal");
  g_assert_cmpstr (field (fx, 0, "DHF_POLICY_TARGET"), ==, "corporate");
  g_assert_cmpstr (field (fx, 0, "DHF_POLICY_RULE"), ==, "default");
  g_assert_cmpstr (field (fx, 0, "PRIORITY"), ==, "5");
  g_assert_null (field (fx, 0, "DHF_POLICY_SUPPRESSED"));
  g_assert_cmpstr (field (fx, 0, "MESSAGE"), ==,
                   "policy: denied org.example.Sync1 from personal to corporate (no rule "
                   "matched: default deny)");
}

static void
test_window_summary (Fixture *fx, gconstpointer data)
{
  g_autoptr (DhfPolicyAudit) audit = new_audit (fx, 0);
  DhfPolicyQuery query = xdm_query ("org.example.Sync1", &personal, &corporate);

  dhf_policy_audit_deny (audit, &query, &default_deny);
  fx->now += 2 * SECOND;
  deny_n (audit, &query, 41);
  fx->now += 7 * SECOND;
  dhf_policy_audit_expire (audit);
  /* Still inside the window (9 s): counted, not logged. */
  g_assert_cmpuint (fx->records->len, ==, 1);

  fx->now += 1 * SECOND;
  dhf_policy_audit_expire (audit);
  g_assert_cmpuint (fx->records->len, ==, 2);
  g_assert_cmpstr (field (fx, 1, "DHF_POLICY_SUPPRESSED"), ==, "41");
  g_assert_cmpstr (field (fx, 1, "DHF_POLICY_SUBJECT"), ==, "org.example.Sync1");
  g_assert_true (g_str_has_suffix (field (fx, 1, "MESSAGE"), "... and 41 more in the last 10 s"));

  /* A quiet window after the summary: the key is forgotten, and the next
   * deny is logged at once again. */
  fx->now += 10 * SECOND;
  dhf_policy_audit_expire (audit);
  g_assert_cmpuint (fx->records->len, ==, 2);
  g_assert_cmpuint (dhf_policy_audit_get_n_keys (audit), ==, 0);
  dhf_policy_audit_deny (audit, &query, &default_deny);
  g_assert_cmpuint (fx->records->len, ==, 3);
  g_assert_null (field (fx, 2, "DHF_POLICY_SUPPRESSED"));
}

static void
test_sustained_flood (Fixture *fx, gconstpointer data)
{
  g_autoptr (DhfPolicyAudit) audit = new_audit (fx, 0);
  DhfPolicyQuery query = xdm_query ("org.example.Sync1", &personal, &corporate);

  /* 100 denies a second for a minute: one line, then one summary per
   * window, whatever the rate. */
  for (guint s = 0; s < 60; s++)
    {
      deny_n (audit, &query, 100);
      fx->now += SECOND;
    }
  dhf_policy_audit_expire (audit);
  g_assert_cmpuint (fx->records->len, ==, 1 + 6);
  for (guint i = 1; i < fx->records->len; i++)
    g_assert_cmpstr (field (fx, i, "DHF_POLICY_SUPPRESSED"), ==, i == 1 ? "999" : "1000");
}

static void
test_keys_are_separate (Fixture *fx, gconstpointer data)
{
  g_autoptr (DhfPolicyAudit) audit = new_audit (fx, 0);
  DhfPolicyQuery a = xdm_query ("org.example.Sync1", &personal, &corporate);
  DhfPolicyQuery b = xdm_query ("org.example.Sync1", &corporate, &personal);
  DhfPolicyQuery c = xdm_query ("org.example.Print1", &personal, &corporate);
  DhfPolicyQuery d = { .kind = DHF_POLICY_KIND_XDM,
                       .subject = "org.example.Sync1",
                       .argument = "docs",
                       .source = &personal,
                       .target = &corporate };

  deny_n (audit, &a, 3);
  deny_n (audit, &b, 3);
  deny_n (audit, &c, 3);
  deny_n (audit, &d, 3);
  g_assert_cmpuint (fx->records->len, ==, 4);
  g_assert_cmpuint (dhf_policy_audit_get_n_keys (audit), ==, 4);
  g_assert_cmpstr (field (fx, 3, "DHF_POLICY_SUBJECT"), ==, "org.example.Sync1+docs");
}

static void
test_subjects_as_written (Fixture *fx, gconstpointer data)
{
  g_autoptr (DhfPolicyAudit) audit = new_audit (fx, 0);
  const DhfPolicyQuery queries[] = {
    { .kind = DHF_POLICY_KIND_DEVICE,
      .subject = "usb:046d:c52b",
      .source = &personal,
      .target = &corporate },
    { .kind = DHF_POLICY_KIND_SWITCH, .source = &personal, .target = &corporate },
    { .kind = DHF_POLICY_KIND_ACPI, .subject = "button/lid", .source = &host, .target = &personal },
    { .kind = DHF_POLICY_KIND_HOTKEY,
      .subject = "Ctrl+Alt+Tab",
      .source = &host,
      .target_token = "@next" },
    { .kind = DHF_POLICY_KIND_NETWORK,
      .subject = "tcp/443",
      .source = &personal,
      .target_token = "@outside" },
  };
  static const gchar *const expected[][2] = {
    { "device:usb:046d:c52b", "corporate" }, { "switch", "corporate" },
    { "acpi:button/lid", "personal" },       { "hotkey:Ctrl+Alt+Tab", "@next" },
    { "network:tcp/443", "@outside" },
  };

  for (guint i = 0; i < G_N_ELEMENTS (queries); i++)
    dhf_policy_audit_deny (audit, &queries[i], &default_deny);
  g_assert_cmpuint (fx->records->len, ==, G_N_ELEMENTS (expected));
  for (guint i = 0; i < G_N_ELEMENTS (expected); i++)
    {
      g_assert_cmpstr (field (fx, i, "DHF_POLICY_SUBJECT"), ==, expected[i][0]);
      g_assert_cmpstr (field (fx, i, "DHF_POLICY_TARGET"), ==, expected[i][1]);
    }
  g_assert_cmpstr (field (fx, 2, "DHF_POLICY_SOURCE"), ==, "dom0");
}

static void
test_only_denies (Fixture *fx, gconstpointer data)
{
  g_autoptr (DhfPolicyAudit) audit = new_audit (fx, 0);
  DhfPolicyQuery query = xdm_query ("org.example.Sync1", &personal, &corporate);
  const DhfPolicyDecision allow = { .action = DHF_POLICY_ACTION_ALLOW };
  const DhfPolicyDecision ask = { .action = DHF_POLICY_ACTION_ASK };

  dhf_policy_audit_deny (audit, &query, &allow);
  dhf_policy_audit_deny (audit, &query, &ask);
  g_assert_cmpuint (fx->records->len, ==, 0);
  g_assert_cmpuint (dhf_policy_audit_get_n_keys (audit), ==, 0);
}

static void
test_rule_field (Fixture *fx, gconstpointer data)
{
  g_autoptr (DhfPolicyAudit) audit = new_audit (fx, 0);
  g_autoptr (GPtrArray) diagnostics
      = g_ptr_array_new_with_free_func ((GDestroyNotify) dhf_policy_diagnostic_free);
  const gchar *text = "# deny one service explicitly\n"
                      "org.example.Sync1 @any @any deny\n";
  g_autoptr (DhfPolicy) policy
      = dhf_policy_parse_data ("50-test.policy", text, strlen (text), diagnostics);
  DhfPolicyQuery query = xdm_query ("org.example.Sync1", &personal, &corporate);
  DhfPolicyDecision decision = { 0 };

  g_assert_nonnull (policy);
  g_assert_cmpint (dhf_policy_evaluate (policy, &query, &decision), ==, DHF_POLICY_ACTION_DENY);
  g_assert_nonnull (decision.rule);
  dhf_policy_audit_deny (audit, &query, &decision);
  g_assert_cmpuint (fx->records->len, ==, 1);
  g_assert_cmpstr (field (fx, 0, "DHF_POLICY_RULE"), ==, "50-test.policy:2");
  g_assert_true (g_str_has_suffix (field (fx, 0, "MESSAGE"), "(rule 50-test.policy:2)"));
}

static void
test_bounded_keys (Fixture *fx, gconstpointer data)
{
  g_autoptr (DhfPolicyAudit) audit = new_audit (fx, 3);
  const DhfPolicyDomain domains[] = {
    { .name = "a" }, { .name = "b" }, { .name = "c" }, { .name = "d" }, { .name = "e" },
  };
  DhfPolicyQuery a = xdm_query ("org.example.Sync1", &domains[0], &personal);

  for (guint i = 0; i < G_N_ELEMENTS (domains); i++)
    {
      DhfPolicyQuery query = xdm_query ("org.example.Sync1", &domains[i], &personal);

      deny_n (audit, &query, i == 0 ? 5 : 1);
      fx->now += SECOND;
    }
  /* a, b, c logged; the table is full and their windows are open: none
   * is evicted, d and e are only counted. */
  g_assert_cmpuint (dhf_policy_audit_get_n_keys (audit), ==, 3);
  g_assert_cmpuint (fx->records->len, ==, 3);
  g_assert_cmpstr (field (fx, 2, "DHF_POLICY_SOURCE"), ==, "c");
  /* a is still rate-limited. */
  deny_n (audit, &a, 1);
  g_assert_cmpuint (fx->records->len, ==, 3);

  /* Many distinct keys: memory stays bounded. */
  for (guint i = 0; i < 1000; i++)
    {
      g_autofree gchar *name = g_strdup_printf ("flood-%u", i);
      const DhfPolicyDomain source = { .name = name };
      DhfPolicyQuery query = xdm_query ("org.example.Sync1", &source, &personal);

      dhf_policy_audit_deny (audit, &query, &default_deny);
      g_assert_cmpuint (dhf_policy_audit_get_n_keys (audit), <=, 3);
    }
  g_assert_cmpuint (fx->records->len, ==, 3);
  /* The window closes: a's summary (5 more), and one record for the
   * 1002 denies of keys that found no room. */
  fx->now += 10 * SECOND;
  dhf_policy_audit_expire (audit);
  g_assert_cmpuint (fx->records->len, ==, 5);
  g_assert_null (field (fx, 3, "DHF_POLICY_SOURCE"));
  g_assert_cmpstr (field (fx, 3, "DHF_POLICY_SUPPRESSED"), ==, "1002");
  g_assert_cmpstr (field (fx, 3, "MESSAGE"), ==,
                   "policy: 1002 other denies suppressed in the last 10 s");
  g_assert_cmpstr (field (fx, 4, "DHF_POLICY_SOURCE"), ==, "a");
  g_assert_cmpstr (field (fx, 4, "DHF_POLICY_SUPPRESSED"), ==, "5");
}

/* Cycling through more keys than are tracked (tcp ports 1-1025), ten
 * times a second: the budget, not the keys, bounds the records. */
static void
test_key_cycling (Fixture *fx, gconstpointer data)
{
  g_autoptr (DhfPolicyAudit) audit = new_audit (fx, 0);
  guint64 denies = 0, suppressed = 0;
  guint n_summaries = 0;

  for (guint round = 0; round < 100; round++)
    {
      for (guint port = 1; port <= 1025; port++)
        {
          g_autofree gchar *subject = g_strdup_printf ("tcp/%u", port);
          DhfPolicyQuery query = { .kind = DHF_POLICY_KIND_NETWORK,
                                   .subject = subject,
                                   .source = &personal,
                                   .target_token = "@outside" };

          dhf_policy_audit_deny (audit, &query, &default_deny);
          denies++;
        }
      fx->now += SECOND / 10;
    }
  /* 10 s: one window. */
  g_assert_cmpuint (fx->records->len, <=, DHF_POLICY_AUDIT_MAX_RECORDS + 1);
  g_assert_cmpuint (dhf_policy_audit_get_n_keys (audit), <=, DHF_POLICY_AUDIT_MAX_KEYS);
  fx->now += 10 * SECOND;
  dhf_policy_audit_expire (audit);
  g_assert_cmpuint (fx->records->len, <=, 2 * DHF_POLICY_AUDIT_MAX_RECORDS + 2);
  /* Nothing is lost: every deny is a record or counted in one. */
  for (guint i = 0; i < fx->records->len; i++)
    {
      const gchar *count = field (fx, i, "DHF_POLICY_SUPPRESSED");

      if (count != NULL)
        {
          suppressed += g_ascii_strtoull (count, NULL, 10);
          n_summaries++;
        }
    }
  g_assert_cmpuint (suppressed + (fx->records->len - n_summaries), ==, denies);
  g_assert_true (strv_contains_other (fx));
}

/* Guest-supplied strings are cut to DHF_POLICY_AUDIT_MAX_FIELD bytes. */
static void
test_long_fields (Fixture *fx, gconstpointer data)
{
  g_autoptr (DhfPolicyAudit) audit = new_audit (fx, 0);
  g_autofree gchar *name = g_strnfill (10000, 'n');
  g_autoptr (GString) subject = g_string_new ("org.example.");
  const DhfPolicyDomain source = { .name = name };
  DhfPolicyQuery query;

  for (guint i = 0; i < 5000; i++)
    g_string_append (subject, "\xc3\xa9"); /* é: two bytes */
  query = xdm_query (subject->str, &source, &corporate);
  dhf_policy_audit_deny (audit, &query, &default_deny);
  g_assert_cmpuint (fx->records->len, ==, 1);
  g_assert_cmpuint (strlen (field (fx, 0, "DHF_POLICY_SOURCE")), ==, DHF_POLICY_AUDIT_MAX_FIELD);
  g_assert_cmpuint (strlen (field (fx, 0, "DHF_POLICY_SUBJECT")), <=, DHF_POLICY_AUDIT_MAX_FIELD);
  g_assert_true (g_utf8_validate (field (fx, 0, "DHF_POLICY_SUBJECT"), -1, NULL));
  g_assert_cmpuint (strlen (field (fx, 0, "MESSAGE")), <, 4 * DHF_POLICY_AUDIT_MAX_FIELD);
}

static void
test_pending_on_free (Fixture *fx, gconstpointer data)
{
  DhfPolicyAudit *audit = new_audit (fx, 0);
  DhfPolicyQuery query = xdm_query ("org.example.Sync1", &personal, &corporate);

  deny_n (audit, &query, 3);
  g_assert_cmpuint (fx->records->len, ==, 1);
  dhf_policy_audit_free (audit);
  g_assert_cmpuint (fx->records->len, ==, 2);
  g_assert_cmpstr (field (fx, 1, "DHF_POLICY_SUPPRESSED"), ==, "2");
}

static void
test_untrusted_names (Fixture *fx, gconstpointer data)
{
  g_autoptr (DhfPolicyAudit) audit = new_audit (fx, 0);
  const DhfPolicyDomain evil = { .name = "ev\033[2Jil\n" };
  DhfPolicyQuery query = xdm_query ("org.example.\xff", &evil, &corporate);

  dhf_policy_audit_deny (audit, &query, &default_deny);
  g_assert_cmpuint (fx->records->len, ==, 1);
  g_assert_cmpstr (field (fx, 0, "DHF_POLICY_SOURCE"), ==, "ev?[2Jil?");
  g_assert_true (g_utf8_validate (field (fx, 0, "MESSAGE"), -1, NULL));
}

/* The real clock and timer: a summary arrives from the main loop. */
static gboolean
saw_records (gpointer user_data)
{
  Fixture *fx = user_data;

  return fx->records->len >= 2;
}

static void
test_timer (Fixture *fx, gconstpointer data)
{
  if (!g_test_slow ())
    {
      g_test_skip ("waits for a 10 s window; run with -m slow");
      return;
    }
  {
    DhfPolicyAudit *audit = dhf_policy_audit_new_full (NULL, capture, fx, 0);
    DhfPolicyQuery query = xdm_query ("org.example.Sync1", &personal, &corporate);
    gint64 deadline = g_get_monotonic_time () + 30 * SECOND;

    deny_n (audit, &query, 2);
    while (!saw_records (fx) && g_get_monotonic_time () < deadline)
      g_main_context_iteration (NULL, TRUE);
    g_assert_cmpuint (fx->records->len, ==, 2);
    dhf_policy_audit_free (audit);
  }
}

int
main (int argc, char **argv)
{
  g_test_init (&argc, &argv, NULL);
#define ADD(path, fn) g_test_add (path, Fixture, NULL, fixture_set_up, fn, fixture_tear_down)
  ADD ("/policy-audit/first-logs-at-once", test_first_logs_at_once);
  ADD ("/policy-audit/window-summary", test_window_summary);
  ADD ("/policy-audit/sustained-flood", test_sustained_flood);
  ADD ("/policy-audit/keys-are-separate", test_keys_are_separate);
  ADD ("/policy-audit/subjects-as-written", test_subjects_as_written);
  ADD ("/policy-audit/only-denies", test_only_denies);
  ADD ("/policy-audit/rule-field", test_rule_field);
  ADD ("/policy-audit/bounded-keys", test_bounded_keys);
  ADD ("/policy-audit/key-cycling", test_key_cycling);
  ADD ("/policy-audit/long-fields", test_long_fields);
  ADD ("/policy-audit/pending-on-free", test_pending_on_free);
  ADD ("/policy-audit/untrusted-names", test_untrusted_names);
  ADD ("/policy-audit/timer", test_timer);
#undef ADD
  return g_test_run ();
}
