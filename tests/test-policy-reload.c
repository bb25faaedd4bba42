/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* The admin policy end to end: dhfd as a subprocess on a private bus over
 * libvirt's test driver, with its policy directories in a temporary
 * directory. Valid sets come into force, broken edits are refused (the last
 * good policy stays, dhfd reports itself degraded) and fixed ones recover;
 * SIGHUP and Policy.Reload reload; a restart with a broken set falls back
 * to the saved last good policy. Waits are bounded; nothing is timed. */
#include "config.h"

#include <signal.h>
#include <sys/prctl.h>

#include <dhf/dhf.h>
#include <glib/gstdio.h>

#include "dhf-domain-xml.h"
#include "dhf-manifest.h"

#include "dhf-test-util.h"

#define WAIT_TIMEOUT_S 20

typedef struct
{
  GTestDBus *bus;
  gchar *tmpdir;
  gchar *node_path;
  gchar *config_path;
  gchar *admin_dir;
  gchar *vendor_dir;
  gchar *last_good;
  GSubprocess *dhfd;
  GDBusConnection *conn;
  DhfDBusManager *manager;
  DhfDBusPolicy *policy;
} Fixture;

/* The admin file: line 2 lets corporate environments (tag corp) call
 * Sync1 on the VPN gateway, at most 4 calls at a time. */
static const gchar admin_policy[] = "# admin rules\n"
                                    "org.example.Sync1 @tag:corp vpn-gateway allow quota=4\n"
                                    "hotkey:Ctrl+Alt+Tab @dom0 @next allow\n";
static const gchar vendor_policy[] = "switch @dom0 @role:environment allow\n"
                                     "network:tcp/443 @any @outside allow\n"
                                     "org.example.Sync1 @vendor:Example @any deny\n";
/* quota must be 1..10000: an error at line 2. */
static const gchar broken_policy[] = "# admin rules\n"
                                     "org.example.Sync1 @tag:corp vpn-gateway allow quota=0\n";
/* The fix: line 3 now denies what line 2 allowed before. */
static const gchar fixed_policy[] = "# admin rules, fixed\n"
                                    "hotkey:Ctrl+Alt+Tab @dom0 @next allow\n"
                                    "org.example.Sync1 @tag:corp vpn-gateway deny\n";

/* corporate (environment, tag corp), personal (environment) and
 * vpn-gateway (service, tag vpn), all from vendor Example. */
static gchar *
build_node_xml (void)
{
  static const gchar *const apps[][3] = {
    { "corporate", "environment", "[\"corp\"]" },
    { "personal", "environment", "[\"home\"]" },
    { "vpn-gateway", "service", "[\"vpn\"]" },
  };
  g_autoptr (GString) node = g_string_new ("<node>\n");

  for (guint i = 0; i < G_N_ELEMENTS (apps); i++)
    {
      g_autofree gchar *json = g_strdup_printf (
          "{\"manifest-version\": 1, \"name\": \"%s\", \"vendor\": \"Example\","
          " \"version\": \"1.0\", \"role\": \"%s\", \"memory\": \"256MiB\", \"vcpus\": 1,"
          " \"tags\": %s}",
          apps[i][0], apps[i][1], apps[i][2]);
      g_autoptr (GError) error = NULL;
      g_autoptr (DhfManifest) manifest = dhf_manifest_parse (json, -1, NULL, &error);
      DhfDomainXmlOptions options = { .domain_type = "test" };
      g_autofree gchar *xml = NULL;

      g_assert_no_error (error);
      xml = dhf_domain_xml_build (manifest, &options);
      g_string_append (node, xml);
      g_string_append_c (node, '\n');
    }
  g_string_append (node, "</node>\n");
  return g_string_free (g_steal_pointer (&node), FALSE);
}

/* Runs the main context until check() holds. After WAIT_TIMEOUT_S (a hang,
 * not a performance assertion) it fails the test and returns FALSE, so that
 * the caller returns and the fixture still stops dhfd and the bus. */
G_GNUC_WARN_UNUSED_RESULT static gboolean
wait_for (const gchar *what, gboolean (*check) (gpointer), gpointer data)
{
  gint64 deadline = g_get_monotonic_time () + WAIT_TIMEOUT_S * G_USEC_PER_SEC;

  while (!check (data))
    {
      if (g_get_monotonic_time () > deadline)
        {
          g_test_fail_printf ("%s: not after %d s", what, WAIT_TIMEOUT_S);
          return FALSE;
        }
      if (!g_main_context_iteration (NULL, FALSE))
        g_usleep (2000);
    }
  return TRUE;
}

/* Names the condition in the failure message. */
#define WAIT_UNTIL(check, data) wait_for (#check, check, data)

static gboolean
name_has_owner (gpointer data)
{
  Fixture *fx = data;

  return dhf_test_dhfd_owns_name (fx->conn);
}

static gboolean
name_has_no_owner (gpointer data)
{
  Fixture *fx = data;

  return !dhf_test_dhfd_owns_name (fx->conn);
}

/* A failed assertion aborts the test without tearing down: dhfd must not
 * outlive it (it would hold meson's output pipe open until the timeout). */
static void
die_with_parent (gpointer user_data)
{
  prctl (PR_SET_PDEATHSIG, SIGTERM);
}

static void
start_dhfd (Fixture *fx)
{
  g_autoptr (GError) error = NULL;
  g_autoptr (GSubprocessLauncher) launcher = g_subprocess_launcher_new (G_SUBPROCESS_FLAGS_NONE);
  g_autofree gchar *uri = g_strconcat ("test://", fx->node_path, NULL);

  g_subprocess_launcher_set_child_setup (launcher, die_with_parent, NULL, NULL);
  fx->dhfd = g_subprocess_launcher_spawn (launcher, &error, dhf_test_dhfd_path (), "--address",
                                          g_test_dbus_get_bus_address (fx->bus), "--hypervisor",
                                          uri, "--config", fx->config_path, "--verbose", NULL);
  g_assert_no_error (error);
  g_assert_true (WAIT_UNTIL (name_has_owner, fx));

  fx->manager = dhf_dbus_manager_proxy_new_sync (fx->conn, G_DBUS_PROXY_FLAGS_NONE, DHF_BUS_NAME,
                                                 DHF_OBJECT_PATH, NULL, &error);
  g_assert_no_error (error);
  fx->policy = dhf_dbus_policy_proxy_new_sync (fx->conn, G_DBUS_PROXY_FLAGS_NONE, DHF_BUS_NAME,
                                               DHF_OBJECT_PATH, NULL, &error);
  g_assert_no_error (error);
}

static void
stop_dhfd (Fixture *fx)
{
  g_autoptr (GError) error = NULL;

  g_clear_object (&fx->policy);
  g_clear_object (&fx->manager);
  if (fx->dhfd == NULL)
    return;
  g_subprocess_send_signal (fx->dhfd, SIGTERM);
  g_subprocess_wait (fx->dhfd, NULL, &error);
  g_assert_no_error (error);
  /* A clean shutdown on SIGTERM is part of the contract. */
  g_assert_true (g_subprocess_get_if_exited (fx->dhfd));
  g_assert_cmpint (g_subprocess_get_exit_status (fx->dhfd), ==, 0);
  g_clear_object (&fx->dhfd);
  g_assert_true (WAIT_UNTIL (name_has_no_owner, fx));
}

static void
fixture_set_up (Fixture *fx, gconstpointer data)
{
  g_autoptr (GError) error = NULL;
  g_autofree gchar *node = build_node_xml ();
  g_autofree gchar *config = NULL;
  g_autofree gchar *storage = NULL;

  fx->tmpdir = g_dir_make_tmp ("dhf-policy-reload-XXXXXX", &error);
  g_assert_no_error (error);
  fx->node_path = g_build_filename (fx->tmpdir, "node.xml", NULL);
  fx->config_path = g_build_filename (fx->tmpdir, "dhfd.conf", NULL);
  fx->admin_dir = g_build_filename (fx->tmpdir, "etc-policy.d", NULL);
  fx->vendor_dir = g_build_filename (fx->tmpdir, "share-policy.d", NULL);
  fx->last_good = g_build_filename (fx->tmpdir, "state", "policy.last-good", NULL);
  storage = g_build_filename (fx->tmpdir, "images", NULL);
  g_assert_cmpint (g_mkdir (fx->admin_dir, 0755), ==, 0);
  g_assert_cmpint (g_mkdir (fx->vendor_dir, 0755), ==, 0);
  dhf_test_write_file (fx->admin_dir, "20-admin.policy", admin_policy);
  dhf_test_write_file (fx->vendor_dir, "50-vendor.policy", vendor_policy);
  config = g_strdup_printf ("[Appliances]\nStorageDirectory=%s\n"
                            "[Policy]\nDirectories=%s;%s\nLastGood=%s\n"
                            "[Devices]\nStateFile=%s/devices.json\n",
                            storage, fx->admin_dir, fx->vendor_dir, fx->last_good, fx->tmpdir);
  g_assert_true (g_file_set_contents (fx->node_path, node, -1, &error));
  g_assert_true (g_file_set_contents (fx->config_path, config, -1, &error));

  fx->conn = dhf_test_bus_up (&fx->bus);
  start_dhfd (fx);
}

static void
fixture_tear_down (Fixture *fx, gconstpointer data)
{
  stop_dhfd (fx);
  g_dbus_connection_close_sync (fx->conn, NULL, NULL);
  g_clear_object (&fx->conn);
  g_test_dbus_down (fx->bus);
  g_clear_object (&fx->bus);
  dhf_test_remove_tree (fx->tmpdir);
  g_free (fx->tmpdir);
  g_free (fx->node_path);
  g_free (fx->config_path);
  g_free (fx->admin_dir);
  g_free (fx->vendor_dir);
  g_free (fx->last_good);
}

/* --- helpers ------------------------------------------------------------ */

typedef struct
{
  gchar *action;
  gchar *rule;
  gchar *file;
  guint line;
  GVariant *options;
} Answer;

static void
answer_clear (Answer *answer)
{
  g_clear_pointer (&answer->action, g_free);
  g_clear_pointer (&answer->rule, g_free);
  g_clear_pointer (&answer->file, g_free);
  g_clear_pointer (&answer->options, g_variant_unref);
}

G_DEFINE_AUTO_CLEANUP_CLEAR_FUNC (Answer, answer_clear)

static gboolean
ask (Fixture *fx, const gchar *subject, const gchar *source, const gchar *target, Answer *answer,
     GError **error)
{
  return dhf_dbus_policy_call_test_sync (fx->policy, subject, source, target, &answer->action,
                                         &answer->rule, &answer->file, &answer->line,
                                         &answer->options, NULL, error);
}

/* Asks and checks the action and where it came from: file_name is the
 * rule file's base name (NULL: the default deny). */
static void
assert_decision (Fixture *fx, const gchar *subject, const gchar *source, const gchar *target,
                 const gchar *action, const gchar *file_name, guint line)
{
  g_auto (Answer) answer = { 0 };
  g_autoptr (GError) error = NULL;

  g_test_message ("Test(%s, %s, %s)", subject, source, target);
  g_assert_true (ask (fx, subject, source, target, &answer, &error));
  g_assert_no_error (error);
  g_assert_cmpstr (answer.action, ==, action);
  if (file_name == NULL)
    {
      g_assert_cmpstr (answer.rule, ==, "");
      g_assert_cmpstr (answer.file, ==, "");
      g_assert_cmpuint (answer.line, ==, 0);
      g_assert_cmpuint (g_variant_n_children (answer.options), ==, 0);
      return;
    }
  g_assert_true (g_path_is_absolute (answer.file));
  g_assert_true (g_str_has_suffix (answer.file, file_name));
  g_assert_cmpuint (answer.line, ==, line);
  g_assert_true (g_str_has_prefix (answer.rule, subject));
}

static void
assert_test_fails (Fixture *fx, const gchar *subject, const gchar *source, const gchar *target,
                   gint code)
{
  g_auto (Answer) answer = { 0 };
  g_autoptr (GError) error = NULL;

  g_assert_false (ask (fx, subject, source, target, &answer, &error));
  g_assert_error (error, DHF_ERROR, code);
}

static gboolean
is_degraded (gpointer data)
{
  Fixture *fx = data;

  return dhf_dbus_policy_get_degraded (fx->policy);
}

static gboolean
is_not_degraded (gpointer data)
{
  return !is_degraded (data);
}

typedef struct
{
  Fixture *fx;
  guint64 generation;
} GenerationWait;

static gboolean
generation_past (gpointer data)
{
  GenerationWait *w = data;

  return dhf_dbus_policy_get_generation (w->fx->policy) > w->generation;
}

G_GNUC_WARN_UNUSED_RESULT static gboolean
wait_generation_past (Fixture *fx, guint64 generation)
{
  GenerationWait w = { fx, generation };

  return WAIT_UNTIL (generation_past, &w);
}

static gboolean
strv_has_match (const gchar *const *strv, const gchar *pattern)
{
  for (guint i = 0; strv != NULL && strv[i] != NULL; i++)
    {
      if (g_regex_match_simple (pattern, strv[i], 0, 0))
        return TRUE;
    }
  return FALSE;
}

static gboolean
policy_reason_shown (gpointer data)
{
  Fixture *fx = data;
  const gchar *const *reasons = dhf_dbus_manager_get_status_reasons (fx->manager);

  return g_strcmp0 (dhf_dbus_manager_get_status (fx->manager), "degraded") == 0
         && strv_has_match (reasons, "^policy: [0-9]+ errors? in the policy files; the last good "
                                     "policy stays in force");
}

/* At startup the saved policy is in force, and the reason says so. */
static gboolean
policy_reason_saved_shown (gpointer data)
{
  Fixture *fx = data;
  const gchar *const *reasons = dhf_dbus_manager_get_status_reasons (fx->manager);

  return g_strcmp0 (dhf_dbus_manager_get_status (fx->manager), "degraded") == 0
         && strv_has_match (reasons, "^policy: 1 error in the policy files; the last good policy "
                                     "saved at the previous start is in force");
}

static gboolean
status_running (gpointer data)
{
  Fixture *fx = data;

  return g_strcmp0 (dhf_dbus_manager_get_status (fx->manager), "running") == 0;
}

/* The decisions of admin_policy + vendor_policy. */
static void
assert_initial_decisions (Fixture *fx)
{
  assert_decision (fx, "org.example.Sync1", "corporate", "vpn-gateway", "allow", "/20-admin.policy",
                   2);
  /* personal has no corp tag: the vendor's deny for vendor Example. */
  assert_decision (fx, "org.example.Sync1", "personal", "vpn-gateway", "deny", "/50-vendor.policy",
                   3);
  assert_decision (fx, "switch", "dom0", "personal", "allow", "/50-vendor.policy", 1);
  assert_decision (fx, "hotkey:Ctrl+Alt+Tab", "dom0", "@next", "allow", "/20-admin.policy", 3);
}

/* --- tests -------------------------------------------------------------- */

static void
test_decisions (Fixture *fx, gconstpointer data)
{
  g_auto (Answer) answer = { 0 };
  g_autoptr (GError) error = NULL;
  g_autofree gchar *text = NULL;
  const gchar *const *files = dhf_dbus_policy_get_files (fx->policy);
  const gchar *quota = NULL;

  g_assert_false (dhf_dbus_policy_get_degraded (fx->policy));
  g_assert_cmpuint (dhf_dbus_policy_get_rules (fx->policy), ==, 5);
  g_assert_cmpuint (dhf_dbus_policy_get_generation (fx->policy), >=, 1);
  g_assert_cmpuint (g_strv_length ((gchar **) dhf_dbus_policy_get_diagnostics (fx->policy)), ==, 0);
  /* Files in evaluation order: name order across both directories. */
  g_assert_nonnull (files);
  g_assert_cmpuint (g_strv_length ((gchar **) files), ==, 2);
  g_assert_true (g_str_has_suffix (files[0], "/20-admin.policy"));
  g_assert_true (g_str_has_suffix (files[1], "/50-vendor.policy"));
  g_assert_cmpstr (dhf_dbus_manager_get_status (fx->manager), ==, "running");

  assert_initial_decisions (fx);
  assert_decision (fx, "switch", "dom0", "vpn-gateway", "deny", NULL, 0);
  assert_decision (fx, "network:tcp/443", "personal", "@outside", "allow", "/50-vendor.policy", 2);
  assert_decision (fx, "network:tcp/80", "personal", "@outside", "deny", NULL, 0);
  assert_decision (fx, "org.example.Print1", "corporate", "personal", "deny", NULL, 0);
  /* "@dom0", as rules write it, names the host too. */
  assert_decision (fx, "switch", "@dom0", "corporate", "allow", "/50-vendor.policy", 1);

  g_assert_true (ask (fx, "org.example.Sync1", "corporate", "vpn-gateway", &answer, &error));
  g_assert_true (g_variant_lookup (answer.options, "quota", "&s", &quota));
  g_assert_cmpstr (quota, ==, "4");
  g_assert_cmpuint (g_variant_n_children (answer.options), ==, 1);

  assert_test_fails (fx, "switch", "dom0", "no-such-appliance", DHF_ERROR_NOT_FOUND);
  assert_test_fails (fx, "switch", "nobody", "personal", DHF_ERROR_NOT_FOUND);
  assert_test_fails (fx, "frobnicate:x", "dom0", "personal", DHF_ERROR_INVALID_ARGS);
  assert_test_fails (fx, "switch", "@next", "personal", DHF_ERROR_INVALID_ARGS);
  assert_test_fails (fx, "switch", "dom0", "@outside", DHF_ERROR_INVALID_ARGS);
  assert_test_fails (fx, "switch", "dom0", "@bogus", DHF_ERROR_INVALID_ARGS);

  g_assert_true (dhf_dbus_policy_call_show_sync (fx->policy, &text, NULL, &error));
  g_assert_no_error (error);
  g_assert_true (g_regex_match_simple ("^/.*/20-admin.policy:2: org.example.Sync1 @tag:corp "
                                       "vpn-gateway allow",
                                       text, G_REGEX_MULTILINE, 0));
  g_assert_true (
      g_regex_match_simple ("^/.*/50-vendor.policy:1: switch ", text, G_REGEX_MULTILINE, 0));
}

static void
test_broken_edit (Fixture *fx, gconstpointer data)
{
  guint64 generation = dhf_dbus_policy_get_generation (fx->policy);
  const gchar *const *diagnostics;

  /* dhfd notices the edit by itself (after its debounce), and refuses it. */
  dhf_test_write_file (fx->admin_dir, "20-admin.policy", broken_policy);
  if (!WAIT_UNTIL (is_degraded, fx))
    return;
  diagnostics = dhf_dbus_policy_get_diagnostics (fx->policy);
  g_assert_true (strv_has_match (diagnostics, "/20-admin.policy:2:[0-9]+: error: "));
  g_assert_cmpuint (dhf_dbus_policy_get_generation (fx->policy), ==, generation);
  if (!WAIT_UNTIL (policy_reason_shown, fx))
    return;
  /* The last good policy stays in force. */
  assert_initial_decisions (fx);
  g_assert_cmpuint (dhf_dbus_policy_get_rules (fx->policy), ==, 5);

  dhf_test_write_file (fx->admin_dir, "20-admin.policy", fixed_policy);
  if (!WAIT_UNTIL (is_not_degraded, fx))
    return;
  if (!WAIT_UNTIL (status_running, fx))
    return;
  g_assert_cmpuint (dhf_dbus_policy_get_generation (fx->policy), >, generation);
  g_assert_cmpuint (g_strv_length ((gchar **) dhf_dbus_policy_get_diagnostics (fx->policy)), ==, 0);
  assert_decision (fx, "org.example.Sync1", "corporate", "vpn-gateway", "deny", "/20-admin.policy",
                   3);
  assert_decision (fx, "hotkey:Ctrl+Alt+Tab", "dom0", "@next", "allow", "/20-admin.policy", 2);
}

static gboolean
reason_500_shown (gpointer data)
{
  Fixture *fx = data;

  return strv_has_match (dhf_dbus_manager_get_status_reasons (fx->manager),
                         "^policy: 500 errors in the policy files; the last good policy stays in "
                         "force");
}

/* More errors than Diagnostics lists: the status reason counts them all. */
static void
test_many_errors (Fixture *fx, gconstpointer data)
{
  g_autoptr (GString) text = g_string_new (NULL);
  const gchar *const *diagnostics;

  for (guint i = 0; i < 500; i++)
    g_string_append (text, "switch @dom0 @any alow\n");
  dhf_test_write_file (fx->admin_dir, "20-admin.policy", text->str);
  if (!WAIT_UNTIL (is_degraded, fx))
    return;
  if (!WAIT_UNTIL (reason_500_shown, fx))
    return;
  diagnostics = dhf_dbus_policy_get_diagnostics (fx->policy);
  g_assert_true (strv_has_match (diagnostics, "\\.\\.\\. [0-9]+ more"));
  g_assert_true (strv_has_match (diagnostics, "^note: the policy files were refused; the last "
                                              "good policy stays in force$"));
  assert_initial_decisions (fx);
}

static void
test_sighup (Fixture *fx, gconstpointer data)
{
  guint64 generation = dhf_dbus_policy_get_generation (fx->policy);

  /* Nothing changed on disk: only the signal makes dhfd load the set again. */
  g_subprocess_send_signal (fx->dhfd, SIGHUP);
  if (!wait_generation_past (fx, generation))
    return;
  g_assert_false (dhf_dbus_policy_get_degraded (fx->policy));
  assert_initial_decisions (fx);
}

static void
test_dbus_reload (Fixture *fx, gconstpointer data)
{
  g_autoptr (GError) error = NULL;
  g_auto (GStrv) diagnostics = NULL;
  guint64 generation = dhf_dbus_policy_get_generation (fx->policy);
  gboolean applied = FALSE;

  g_assert_true (
      dhf_dbus_policy_call_reload_sync (fx->policy, &applied, &diagnostics, NULL, &error));
  g_assert_no_error (error);
  g_assert_true (applied);
  g_assert_cmpuint (g_strv_length (diagnostics), ==, 0);
  /* PropertiesChanged precedes the reply. */
  if (!wait_generation_past (fx, generation))
    return;
  generation = dhf_dbus_policy_get_generation (fx->policy);
  g_clear_pointer (&diagnostics, g_strfreev);

  dhf_test_write_file (fx->admin_dir, "20-admin.policy", broken_policy);
  g_assert_true (
      dhf_dbus_policy_call_reload_sync (fx->policy, &applied, &diagnostics, NULL, &error));
  g_assert_no_error (error);
  g_assert_false (applied);
  g_assert_true (
      strv_has_match ((const gchar *const *) diagnostics, "/20-admin.policy:2:[0-9]+: error: "));
  if (!WAIT_UNTIL (is_degraded, fx))
    return;
  if (!WAIT_UNTIL (policy_reason_shown, fx))
    return;
  g_assert_cmpuint (dhf_dbus_policy_get_generation (fx->policy), ==, generation);
  assert_initial_decisions (fx);
}

static void
test_restart_uses_last_good (Fixture *fx, gconstpointer data)
{
  g_autoptr (GError) error = NULL;
  g_autofree gchar *text = NULL;

  /* The valid set was saved when it came into force. */
  g_assert_true (g_file_test (fx->last_good, G_FILE_TEST_IS_REGULAR));
  stop_dhfd (fx);
  dhf_test_write_file (fx->admin_dir, "20-admin.policy", broken_policy);
  start_dhfd (fx);

  g_assert_true (dhf_dbus_policy_get_degraded (fx->policy));
  g_assert_true (strv_has_match (dhf_dbus_policy_get_diagnostics (fx->policy),
                                 "/20-admin.policy:2:[0-9]+: error: "));
  /* Diagnostics end with what is in force instead of the files. */
  g_assert_true (strv_has_match (dhf_dbus_policy_get_diagnostics (fx->policy),
                                 "^note: the policy files were refused; the last good policy saved "
                                 "at the previous start is in force$"));
  if (!WAIT_UNTIL (policy_reason_saved_shown, fx))
    return;
  /* The decisions are the saved policy's, whatever file names it uses. */
  {
    const gchar *const cases[][4] = {
      { "org.example.Sync1", "corporate", "vpn-gateway", "allow" },
      { "org.example.Sync1", "personal", "vpn-gateway", "deny" },
      { "switch", "dom0", "personal", "allow" },
      { "switch", "dom0", "vpn-gateway", "deny" },
    };

    for (guint i = 0; i < G_N_ELEMENTS (cases); i++)
      {
        g_auto (Answer) answer = { 0 };

        g_assert_true (ask (fx, cases[i][0], cases[i][1], cases[i][2], &answer, &error));
        g_assert_no_error (error);
        g_assert_cmpstr (answer.action, ==, cases[i][3]);
      }
  }
  g_assert_true (dhf_dbus_policy_call_show_sync (fx->policy, &text, NULL, &error));
  g_assert_nonnull (strstr (text, "org.example.Sync1 @tag:corp vpn-gateway allow"));

  /* Fixing the files brings dhfd back to running. */
  dhf_test_write_file (fx->admin_dir, "20-admin.policy", admin_policy);
  if (!WAIT_UNTIL (is_not_degraded, fx))
    return;
  if (!WAIT_UNTIL (status_running, fx))
    return;
  assert_initial_decisions (fx);
}

int
main (int argc, char **argv)
{
  g_test_init (&argc, &argv, NULL);
#define ADD(path, fn) g_test_add (path, Fixture, NULL, fixture_set_up, fn, fixture_tear_down)
  ADD ("/policy-reload/decisions", test_decisions);
  ADD ("/policy-reload/broken-edit", test_broken_edit);
  ADD ("/policy-reload/many-errors", test_many_errors);
  ADD ("/policy-reload/sighup", test_sighup);
  ADD ("/policy-reload/dbus-reload", test_dbus_reload);
  ADD ("/policy-reload/restart-uses-last-good", test_restart_uses_last_good);
#undef ADD
  return g_test_run ();
}
