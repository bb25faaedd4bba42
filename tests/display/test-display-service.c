/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* DhfDisplayService in-process on a private bus, over libvirt's test
 * driver (its domain "test" runs and has a fixed screen): the question
 * OpenDisplay and Screenshot put to the policy ("switch @dom0 NAME", as a
 * switch to it would), what they do with each answer, and Screenshot's
 * bound on the size of its reply. dhfd's bound (16 MiB) is far above the
 * test driver's picture, so the test lowers it around that picture's own
 * size: the same code refuses one byte over the limit and lets through
 * one exactly at it. */
#include "config.h"

#include <string.h>

#include <dhf/dhf.h>
#include <gio/gunixfdlist.h>

#include "dhf-authority.h"
#include "dhf-device-engine.h"
#include "dhf-display-service.h"
#include "dhf-hypervisor-devices.h"
#include "dhf-hypervisor.h"
#include "dhf-policy.h"

#include "dhf-test-util.h"

#define WAIT_TIMEOUT_S 30
#define DISPLAY_IFACE  "org.dhf.Framework1.Display"

typedef struct
{
  GTestDBus *bus;
  GDBusConnection *server; /* where the service is exported */
  GDBusConnection *client; /* another connection: calls go through the bus */
  DhfHypervisor *hypervisor;
  DhfDeviceEngine *engine;
  DhfAuthority *authority;
  DhfDisplayService *service;
  guint registration;
  DhfPolicy *policy; /* what the decider evaluates */
  GPtrArray *asked;  /* "SOURCE>TARGET" of every question the service asked */
} Fixture;

/* --- what the daemon plugs in --------------------------------------------- */

/* "test" runs (the test driver's own), "off" is defined but shut off. */
static gboolean
lookup (const gchar *name, gboolean *active, gpointer user_data)
{
  if (g_str_equal (name, "test"))
    {
      *active = TRUE;
      return TRUE;
    }
  if (g_str_equal (name, "off"))
    {
      *active = FALSE;
      return TRUE;
    }
  return FALSE;
}

/* The daemon's decider, over a policy of the test's own: evaluates the
 * query as dhfd does (plain names; dom0 is the host). */
static void
decide (DhfPolicyKind kind, const gchar *subject, const gchar *source, const gchar *target,
        DhfEngineVerdict *verdict, gpointer user_data)
{
  Fixture *fx = user_data;
  DhfPolicyDomain src = { .name = source, .is_dom0 = g_str_equal (source, "dom0") };
  DhfPolicyDomain dst = { .name = target, .is_dom0 = g_str_equal (target, "dom0") };
  DhfPolicyQuery query = { .kind = kind, .subject = subject, .source = &src, .target = &dst };
  DhfPolicyDecision decision = { 0 };

  g_assert_cmpint (kind, ==, DHF_POLICY_KIND_SWITCH);
  g_assert_null (subject);
  g_ptr_array_add (fx->asked, g_strdup_printf ("%s>%s", source, target));
  dhf_policy_evaluate (fx->policy, &query, &decision);
  verdict->action = decision.action;
  verdict->rule = decision.rule != NULL
                      ? g_strdup_printf ("%s:%u", dhf_policy_rule_get_file (decision.rule),
                                         dhf_policy_rule_get_line (decision.rule))
                      : NULL;
}

static void
set_policy (Fixture *fx, const gchar *text)
{
  g_autoptr (GPtrArray) diagnostics
      = g_ptr_array_new_with_free_func ((GDestroyNotify) dhf_policy_diagnostic_free);

  g_clear_pointer (&fx->policy, dhf_policy_unref);
  fx->policy = dhf_policy_parse_data ("test.policy", text, (gsize) -1, diagnostics);
  g_assert_nonnull (fx->policy);
  g_ptr_array_set_size (fx->asked, 0);
}

/* --- the fixture ------------------------------------------------------------ */

static gboolean
on_wait_timeout (gpointer data)
{
  *(gboolean *) data = TRUE;
  return G_SOURCE_REMOVE;
}

static void
fixture_set_up (Fixture *fx, gconstpointer data)
{
  const DhfDeviceEngineConfig config = { .fallback = "dom0" };
  g_autoptr (GError) error = NULL;
  gboolean timed_out = FALSE;
  guint timeout;

  fx->server = dhf_test_bus_up (&fx->bus);
  fx->client = g_dbus_connection_new_for_address_sync (
      g_test_dbus_get_bus_address (fx->bus),
      G_DBUS_CONNECTION_FLAGS_AUTHENTICATION_CLIENT
          | G_DBUS_CONNECTION_FLAGS_MESSAGE_BUS_CONNECTION,
      NULL, NULL, &error);
  g_assert_no_error (error);

  fx->hypervisor = dhf_hypervisor_new ("test:///default");
  timeout = g_timeout_add_seconds (WAIT_TIMEOUT_S, on_wait_timeout, &timed_out);
  dhf_hypervisor_start (fx->hypervisor);
  while (!dhf_hypervisor_is_connected (fx->hypervisor) && !timed_out)
    g_main_context_iteration (NULL, TRUE);
  g_assert_false (timed_out);
  g_source_remove (timeout);

  fx->engine = dhf_device_engine_new (dhf_hypervisor_device_ops (), fx->hypervisor, &config);
  /* Callers on this bus run as this test's user. */
  fx->authority = dhf_authority_new (DHF_AUTH_MODE_PEER_UID, fx->server);
  fx->service = dhf_display_service_new (fx->engine, fx->authority, fx->hypervisor, lookup, NULL);
  fx->registration = g_dbus_interface_skeleton_export (G_DBUS_INTERFACE_SKELETON (fx->service),
                                                       fx->server, DHF_OBJECT_PATH, &error);
  g_assert_no_error (error);
  fx->asked = g_ptr_array_new_with_free_func (g_free);
}

static void
fixture_tear_down (Fixture *fx, gconstpointer data)
{
  g_dbus_interface_skeleton_unexport (G_DBUS_INTERFACE_SKELETON (fx->service));
  g_clear_object (&fx->service);
  g_clear_object (&fx->authority);
  g_clear_object (&fx->engine);
  g_clear_object (&fx->hypervisor);
  g_clear_pointer (&fx->policy, dhf_policy_unref);
  g_ptr_array_unref (fx->asked);
  g_dbus_connection_close_sync (fx->client, NULL, NULL);
  g_clear_object (&fx->client);
  g_dbus_connection_close_sync (fx->server, NULL, NULL);
  g_clear_object (&fx->server);
  g_test_dbus_down (fx->bus);
  g_clear_object (&fx->bus);
}

/* --- calls ----------------------------------------------------------------- */

static void
on_called (GObject *source, GAsyncResult *result, gpointer data)
{
  *(GAsyncResult **) data = g_object_ref (result);
}

/* Calls method on the service from the client connection, running the
 * main loop (the service answers on it) until the reply. */
static GVariant *
call (Fixture *fx, const gchar *method, GVariant *params, GUnixFDList **fds, GError **error)
{
  g_autoptr (GAsyncResult) result = NULL;
  gboolean timed_out = FALSE;
  guint timeout = g_timeout_add_seconds (WAIT_TIMEOUT_S, on_wait_timeout, &timed_out);

  g_dbus_connection_call_with_unix_fd_list (
      fx->client, g_dbus_connection_get_unique_name (fx->server), DHF_OBJECT_PATH, DISPLAY_IFACE,
      method, params, NULL, G_DBUS_CALL_FLAGS_NONE, WAIT_TIMEOUT_S * 1000, NULL, NULL, on_called,
      &result);
  while (result == NULL && !timed_out)
    g_main_context_iteration (NULL, TRUE);
  g_assert_false (timed_out);
  g_source_remove (timeout);
  return g_dbus_connection_call_with_unix_fd_list_finish (fx->client, fds, result, error);
}

static GVariant *
no_options (void)
{
  return g_variant_new_array (G_VARIANT_TYPE ("{sv}"), NULL, 0);
}

/* Screenshot of name: the PNG's size in bytes, or 0 with error. */
static gsize
screenshot (Fixture *fx, const gchar *name, GVariant *options, GError **error)
{
  g_autoptr (GVariant) reply
      = call (fx, "Screenshot", g_variant_new ("(s@a{sv})", name, options), NULL, error);
  g_autoptr (GVariant) png = NULL;
  gsize length = 0;
  const guint8 *bytes;

  if (reply == NULL)
    return 0;
  png = g_variant_get_child_value (reply, 0);
  bytes = g_variant_get_fixed_array (png, &length, 1);
  g_assert_cmpuint (length, >, 8);
  g_assert_cmpmem (bytes, 8, "\x89PNG\r\n\x1a\n", 8);
  return length;
}

static GVariant *
open_display (Fixture *fx, const gchar *name, GError **error)
{
  g_autoptr (GUnixFDList) fds = NULL;

  return call (fx, "OpenDisplay", g_variant_new ("(s)", name), &fds, error);
}

static void
assert_asked (Fixture *fx, const gchar *expected)
{
  g_autofree gchar *joined = NULL;

  g_ptr_array_add (fx->asked, NULL);
  joined = g_strjoinv (",", (gchar **) fx->asked->pdata);
  g_ptr_array_remove_index (fx->asked, fx->asked->len - 1);
  g_assert_cmpstr (joined, ==, expected);
  g_ptr_array_set_size (fx->asked, 0);
}

/* --- the size of a screenshot ------------------------------------------------ */

static void
test_screenshot_limit (Fixture *fx, gconstpointer data)
{
  g_autoptr (GError) error = NULL;
  g_autofree gchar *limit_text = NULL;
  gsize full, thumb;

  /* Within dhfd's own limit: the whole picture. */
  full = screenshot (fx, "test", no_options (), &error);
  g_assert_no_error (error);
  g_assert_cmpuint (full, <, DHF_DISPLAY_SCREENSHOT_MAX_BYTES);

  /* One byte under its size: refused, with the size, the limit and the
   * way out in the message. */
  dhf_display_service_set_screenshot_limit (fx->service, full - 1);
  g_assert_cmpuint (screenshot (fx, "test", no_options (), &error), ==, 0);
  g_assert_error (error, DHF_ERROR, DHF_ERROR_LIMIT_EXCEEDED);
  limit_text = g_format_size_full (full - 1, G_FORMAT_SIZE_IEC_UNITS);
  g_assert_nonnull (strstr (error->message, "the screenshot of 'test' is "));
  g_assert_nonnull (strstr (error->message, limit_text));
  g_assert_nonnull (strstr (error->message, "ask for a smaller one with max-width/max-height"));
  g_clear_error (&error);

  /* A thumbnail of the same screen fits. */
  thumb = screenshot (fx, "test", g_variant_new_parsed ("{'max-width': <uint32 32>}"), &error);
  g_assert_no_error (error);
  g_assert_cmpuint (thumb, <, full - 1);

  /* Exactly at the limit: given. */
  dhf_display_service_set_screenshot_limit (fx->service, full);
  g_assert_cmpuint (screenshot (fx, "test", no_options (), &error), ==, full);
  g_assert_no_error (error);
}

/* --- the policy -------------------------------------------------------------- */

/* No decider (what dhfd had before it was given one): no rule asked. */
static void
test_no_decider (Fixture *fx, gconstpointer data)
{
  g_autoptr (GError) error = NULL;

  g_assert_cmpuint (screenshot (fx, "test", no_options (), &error), >, 0);
  g_assert_no_error (error);
  g_assert_cmpuint (fx->asked->len, ==, 0);
}

static void
test_policy (Fixture *fx, gconstpointer data)
{
  g_autoptr (GError) error = NULL;
  g_autoptr (GVariant) reply = NULL;

  dhf_display_service_set_decider (fx->service, decide, fx);

  /* Allowed: the picture; the question was dom0's switch to it. */
  set_policy (fx, "switch @dom0 test allow\n");
  g_assert_cmpuint (screenshot (fx, "test", no_options (), &error), >, 0);
  g_assert_no_error (error);
  assert_asked (fx, "dom0>test");
  /* OpenDisplay, allowed, gets as far as the hypervisor (which has no
   * graphics fds on the test driver). */
  reply = open_display (fx, "test", &error);
  g_assert_null (reply);
  g_assert_error (error, DHF_ERROR, DHF_ERROR_NOT_SUPPORTED);
  g_clear_error (&error);
  assert_asked (fx, "dom0>test");

  /* Denied by a rule: named; the hypervisor is not asked. */
  set_policy (fx, "# dom0 may not look at it\nswitch @dom0 test deny\n");
  g_assert_cmpuint (screenshot (fx, "test", no_options (), &error), ==, 0);
  g_assert_error (error, DHF_ERROR, DHF_ERROR_NOT_AUTHORIZED);
  g_assert_nonnull (strstr (error->message, "'test'"));
  g_assert_nonnull (strstr (error->message, "denied by test.policy:2"));
  g_clear_error (&error);
  reply = open_display (fx, "test", &error);
  g_assert_null (reply);
  g_assert_error (error, DHF_ERROR, DHF_ERROR_NOT_AUTHORIZED);
  g_assert_nonnull (strstr (error->message, "denied by test.policy:2"));
  g_clear_error (&error);
  assert_asked (fx, "dom0>test,dom0>test");

  /* No rule at all: denied, and said so. */
  set_policy (fx, "switch @dom0 @dom0 allow\n");
  g_assert_cmpuint (screenshot (fx, "test", no_options (), &error), ==, 0);
  g_assert_error (error, DHF_ERROR, DHF_ERROR_NOT_AUTHORIZED);
  g_assert_nonnull (strstr (error->message, "no rule allows switch @dom0 test"));
  g_clear_error (&error);

  /* ask: nobody is asked about a thumbnail; denied, naming the rule. */
  set_policy (fx, "switch @dom0 test ask\n");
  reply = open_display (fx, "test", &error);
  g_assert_null (reply);
  g_assert_error (error, DHF_ERROR, DHF_ERROR_NOT_AUTHORIZED);
  g_assert_nonnull (strstr (error->message, "asks the user (test.policy:1)"));
  g_clear_error (&error);

  /* What is checked before the policy: dom0, an unknown name, one that is
   * off. No question is asked (and no deny audited) about them. */
  set_policy (fx, "switch @dom0 @any allow\n");
  g_assert_cmpuint (screenshot (fx, "dom0", no_options (), &error), ==, 0);
  g_assert_error (error, DHF_ERROR, DHF_ERROR_INVALID_ARGS);
  g_clear_error (&error);
  g_assert_cmpuint (screenshot (fx, "nobody", no_options (), &error), ==, 0);
  g_assert_error (error, DHF_ERROR, DHF_ERROR_NOT_FOUND);
  g_clear_error (&error);
  reply = open_display (fx, "off", &error);
  g_assert_null (reply);
  g_assert_error (error, DHF_ERROR, DHF_ERROR_INVALID_STATE);
  g_clear_error (&error);
  g_assert_cmpuint (fx->asked->len, ==, 0);

  /* The decider's owner goes first (dhfd stopping): nothing is shown
   * without the policy's word any more. */
  dhf_display_service_set_decider (fx->service, NULL, NULL);
  g_assert_cmpuint (screenshot (fx, "test", no_options (), &error), ==, 0);
  g_assert_error (error, DHF_ERROR, DHF_ERROR_NOT_AUTHORIZED);
  g_clear_error (&error);
  g_assert_cmpuint (fx->asked->len, ==, 0);
}

int
main (int argc, char **argv)
{
  g_test_init (&argc, &argv, NULL);
  /* The error domain is registered with GDBus before any reply arrives. */
  (void) DHF_ERROR;
  g_test_add ("/display-service/screenshot-limit", Fixture, NULL, fixture_set_up,
              test_screenshot_limit, fixture_tear_down);
  g_test_add ("/display-service/no-decider", Fixture, NULL, fixture_set_up, test_no_decider,
              fixture_tear_down);
  g_test_add ("/display-service/policy", Fixture, NULL, fixture_set_up, test_policy,
              fixture_tear_down);
  return g_test_run ();
}
