/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* org.dhf.framework.Switch in the XDM router, in-process (tests/xdm-router's
 * harness: simulated domains on socketpairs), with a switch handler of the
 * test's own that answers when the test says so. What a guest is told of
 * each failure (fixed words: nothing of other domains, nothing of dom0's
 * internals) and what dom0's own clients are told; what is logged; and
 * one switch per domain at a time, counted until the handler answers,
 * not until the call ends (CALL+CANCEL cannot pile switches up). */
#include "config.h"

#include <string.h>

#include "dhf-test-util.h"
#include "xdm-router-harness.h"

#define SWITCH "org.dhf.framework.Switch"
#define BUSY   "a switch requested by this appliance is still in progress"

/* --- what dhfd logs ------------------------------------------------------- */

static GPtrArray *logged; /* messages and warnings from the xdm code */

static GLogWriterOutput
log_writer (GLogLevelFlags level, const GLogField *fields, gsize n_fields, gpointer user_data)
{
  if ((level & (G_LOG_LEVEL_MESSAGE | G_LOG_LEVEL_WARNING)) != 0)
    for (gsize i = 0; i < n_fields; i++)
      if (g_str_equal (fields[i].key, "MESSAGE") && fields[i].length < 0
          && g_str_has_prefix (fields[i].value, "xdm:"))
        g_ptr_array_add (logged, g_strdup (fields[i].value));
  return g_log_writer_default (level, fields, n_fields, user_data);
}

static guint
count_logged (const gchar *text)
{
  guint n = 0;

  for (guint i = 0; i < logged->len; i++)
    if (strstr (g_ptr_array_index (logged, i), text) != NULL)
      n++;
  return n;
}

/* --- the switch handler ----------------------------------------------------- */

typedef struct
{
  gchar *source;
  gchar *target;
  GCancellable *cancellable;
  DhfXdmSwitchDone done;
  gpointer done_data;
  gboolean answered;
} Request;

typedef struct
{
  Fixture f;
  GPtrArray *requests; /* Request (owned) */
} Test;

static void
request_free (Request *request)
{
  g_free (request->source);
  g_free (request->target);
  g_object_unref (request->cancellable);
  g_free (request);
}

static void
handler (const gchar *source, const gchar *target, GCancellable *cancellable, DhfXdmSwitchDone done,
         gpointer done_data, gpointer user_data)
{
  Test *t = user_data;
  Request *request = g_new0 (Request, 1);

  request->source = g_strdup (source);
  request->target = g_strdup (target);
  request->cancellable = g_object_ref (cancellable);
  request->done = done;
  request->done_data = done_data;
  g_ptr_array_add (t->requests, request);
}

/* The handler's answer to request n: focused, or error (taken). */
static void
answer (Test *t, guint n, const gchar *focused, GError *error)
{
  Request *request = g_ptr_array_index (t->requests, n);

  g_assert_false (request->answered);
  request->answered = TRUE;
  request->done (focused, error, request->done_data);
  g_clear_error (&error);
}

typedef struct
{
  Test *t;
  guint n;
} RequestsWait;

static gboolean
has_requests (gpointer data)
{
  RequestsWait *w = data;

  return w->t->requests->len >= w->n;
}

/* Waits until the handler got its nth request (1-based), from source. */
static void
expect_request (Test *t, guint n, const gchar *source, const gchar *target)
{
  RequestsWait w = { t, n };
  Request *request;

  fixture_wait (&t->f, has_requests, &w);
  g_assert_cmpuint (t->requests->len, ==, n);
  request = g_ptr_array_index (t->requests, n - 1);
  g_assert_cmpstr (request->source, ==, source);
  g_assert_cmpstr (request->target, ==, target);
}

static gboolean
is_cancelled (gpointer data)
{
  return g_cancellable_is_cancelled (data);
}

static guint32
call_switch (Peer *p, const gchar *target)
{
  g_autofree gchar *params = g_strdup_printf ("{\"target\":\"%s\"}", target);

  return peer_call (p, SWITCH, "dom0", params);
}

static void
expect_focused (Peer *p, guint32 id, const gchar *focused)
{
  g_autoptr (Frame) reply = peer_expect (p, DHF_XDM_REPLY, id);

  g_assert_cmpstr (json_string_member (reply->msg.value, "focused"), ==, focused);
}

static void
expect_error (Peer *p, guint32 id, DhfError code, const gchar *message)
{
  g_autofree gchar *got = peer_expect_error (p, id, code);

  g_assert_cmpstr (got, ==, message);
}

/* --- the fixture ---------------------------------------------------------- */

static void
test_set_up (Test *t, gconstpointer data)
{
  g_autofree gchar *admin = NULL;
  g_autofree gchar *policy = NULL;

  fixture_setup (&t->f, NULL);
  /* Every domain may call Switch; dom0's clients too. */
  admin = g_build_filename (t->f.root, "admin", NULL);
  policy = g_strconcat (SWITCH " @any @dom0 allow\n" SWITCH " @dom0 @dom0 allow\n", harness_policy,
                        NULL);
  dhf_test_write_file (admin, "50-test.policy", policy);
  g_assert_true (dhf_policy_store_reload (t->f.store));
  t->requests = g_ptr_array_new_with_free_func ((GDestroyNotify) request_free);
  dhf_xdm_router_set_switch_handler (t->f.router, handler, t);
  g_ptr_array_set_size (logged, 0);
}

static void
test_tear_down (Test *t, gconstpointer data)
{
  /* Every request is answered, exactly once, as the handler promises. */
  for (guint i = 0; i < t->requests->len; i++)
    g_assert_true (((Request *) g_ptr_array_index (t->requests, i))->answered);
  fixture_teardown (&t->f);
  g_ptr_array_unref (t->requests);
}

/* --- one at a time ----------------------------------------------------------- */

static void
test_one_at_a_time (Test *t, gconstpointer data)
{
  Peer *alpha = peer_join (&t->f, "alpha");
  Peer *gamma = peer_join (&t->f, "gamma");
  Peer *dom0 = peer_join (&t->f, "dom0");
  guint32 first, id, from_gamma, from_dom0;

  first = call_switch (alpha, "gamma");
  expect_request (t, 1, "alpha", "gamma");
  /* A second one while the first is with the handler: refused at once,
   * whatever it asks for, and the handler hears nothing of it. */
  id = call_switch (alpha, "delta");
  expect_error (alpha, id, DHF_ERROR_LIMIT_EXCEEDED, BUSY);
  g_assert_cmpuint (t->requests->len, ==, 1);

  /* Other domains are not held back by alpha's. */
  from_gamma = call_switch (gamma, "alpha");
  expect_request (t, 2, "gamma", "alpha");
  from_dom0 = call_switch (dom0, "alpha");
  expect_request (t, 3, "dom0", "alpha");
  id = call_switch (dom0, "gamma");
  expect_error (dom0, id, DHF_ERROR_LIMIT_EXCEEDED,
                "a switch requested by dom0 is still in progress");

  /* alpha gives up: its call ends at once, and the handler's cancellable
   * says so... */
  peer_send (alpha, DHF_XDM_CANCEL, first, NULL);
  g_free (peer_expect_error (alpha, first, DHF_ERROR_CANCELLED));
  g_assert_true (
      g_cancellable_is_cancelled (((Request *) g_ptr_array_index (t->requests, 0))->cancellable));
  /* ... but its switch is still with the handler, and still counts. */
  id = call_switch (alpha, "gamma");
  expect_error (alpha, id, DHF_ERROR_LIMIT_EXCEEDED, BUSY);
  g_assert_cmpuint (t->requests->len, ==, 3);

  /* The handler answers at last, a failure in the hypervisor's words:
   * nobody is told, nothing is logged. */
  answer (t, 0, NULL,
          g_error_new_literal (DHF_ERROR, DHF_ERROR_HYPERVISOR,
                               "attaching input-keyboard to gamma: internal error"));
  peer_sync (alpha);
  g_assert_false (peer_has_frame (alpha));
  g_assert_cmpuint (count_logged ("asked for by alpha"), ==, 0);

  /* Now alpha may ask again. */
  id = call_switch (alpha, "gamma");
  expect_request (t, 4, "alpha", "gamma");
  answer (t, 3, "gamma", NULL);
  expect_focused (alpha, id, "gamma");
  /* Answered before the reply: the next one is taken at once. */
  id = call_switch (alpha, "@next");
  expect_request (t, 5, "alpha", "@next");
  answer (t, 4, "delta", NULL);
  expect_focused (alpha, id, "delta");

  answer (t, 1, "alpha", NULL);
  expect_focused (gamma, from_gamma, "alpha");
  answer (t, 2, "alpha", NULL);
  expect_focused (dom0, from_dom0, "alpha");

  /* A caller that goes away: its switch counts for its domain until the
   * handler answers, whichever connection asks next. */
  id = call_switch (alpha, "gamma");
  expect_request (t, 6, "alpha", "gamma");
  peer_close (alpha);
  fixture_wait (&t->f, is_cancelled, ((Request *) g_ptr_array_index (t->requests, 5))->cancellable);
  alpha = peer_join (&t->f, "alpha");
  id = call_switch (alpha, "gamma");
  expect_error (alpha, id, DHF_ERROR_LIMIT_EXCEEDED, BUSY);
  answer (t, 5, "gamma", NULL);
  id = call_switch (alpha, "gamma");
  expect_request (t, 7, "alpha", "gamma");
  answer (t, 6, NULL, g_error_new_literal (DHF_ERROR, DHF_ERROR_NOT_FOUND, "no domain gamma"));
  expect_error (alpha, id, DHF_ERROR_NOT_AUTHORIZED, "not allowed by the policy");
}

/* --- what a guest is told --------------------------------------------------- */

typedef struct
{
  GQuark domain;
  gint code;
  const gchar *message; /* the handler's (the engine's) words */
  DhfError guest_code;
  const gchar *guest_message;
  gboolean logged; /* as a message: a failure in dom0 */
} ErrorCase;

static void
test_errors (Test *t, gconstpointer data)
{
  const ErrorCase cases[] = {
    /* What the guest did not learn from the policy reads as a refusal. */
    { DHF_ERROR, DHF_ERROR_NOT_FOUND, "no domain named secret-project", DHF_ERROR_NOT_AUTHORIZED,
      "not allowed by the policy", FALSE },
    { DHF_ERROR, DHF_ERROR_INVALID_STATE, "secret-project is not running", DHF_ERROR_NOT_AUTHORIZED,
      "not allowed by the policy", FALSE },
    { DHF_ERROR, DHF_ERROR_INVALID_ARGS, "secret-vpn is not an environment",
      DHF_ERROR_NOT_AUTHORIZED, "not allowed by the policy", FALSE },
    { DHF_ERROR, DHF_ERROR_NOT_AUTHORIZED,
      "switching from alpha to gamma is denied by /etc/dhf/policy.d/50-site.policy:12",
      DHF_ERROR_NOT_AUTHORIZED, "not allowed by the policy", FALSE },
    /* The transaction failed: the code, never the steps or libvirt. */
    { DHF_ERROR, DHF_ERROR_HYPERVISOR, "attaching usb-1-2 to gamma: internal error: qemu said no",
      DHF_ERROR_HYPERVISOR, "the switch failed in dom0 and was undone", TRUE },
    { DHF_ERROR, DHF_ERROR_HYPERVISOR_UNAVAILABLE, "cannot reach qemu:///system: socket closed",
      DHF_ERROR_HYPERVISOR_UNAVAILABLE, "the switch failed in dom0 and was undone", TRUE },
    { DHF_ERROR, DHF_ERROR_NOT_SUPPORTED, "virDomainAttachDeviceFlags: not supported by secret",
      DHF_ERROR_NOT_SUPPORTED, "the switch failed in dom0 and was undone", TRUE },
    /* Anything else. */
    { DHF_ERROR, DHF_ERROR_TIMEOUT, "the secret agent took too long", DHF_ERROR_FAILED,
      "the switch failed", TRUE },
    { 0, G_IO_ERROR_FAILED, "writing /var/lib/dhf/secret: disk full", DHF_ERROR_FAILED,
      "the switch failed", TRUE },
  };
  Peer *alpha = peer_join (&t->f, "alpha");
  Peer *dom0 = peer_join (&t->f, "dom0");

  for (guint i = 0; i < G_N_ELEMENTS (cases); i++)
    {
      const ErrorCase *c = &cases[i];
      GQuark domain = c->domain != 0 ? c->domain : G_IO_ERROR;
      guint32 id;

      g_test_message ("case %u: %s", i, c->message);
      g_ptr_array_set_size (logged, 0);
      id = call_switch (alpha, "gamma");
      expect_request (t, 2 * i + 1, "alpha", "gamma");
      answer (t, 2 * i, NULL, g_error_new_literal (domain, c->code, c->message));
      expect_error (alpha, id, c->guest_code, c->guest_message);
      g_assert_cmpuint (count_logged (c->message), ==, c->logged ? 1 : 0);
      if (c->logged)
        g_assert_cmpuint (count_logged ("xdm: the switch to gamma asked for by alpha failed: "), ==,
                          1);

      /* dom0's own clients are told what happened. */
      id = call_switch (dom0, "gamma");
      expect_request (t, 2 * i + 2, "dom0", "gamma");
      answer (t, 2 * i + 1, NULL, g_error_new_literal (domain, c->code, c->message));
      expect_error (dom0, id, domain == DHF_ERROR ? (DhfError) c->code : DHF_ERROR_FAILED,
                    c->message);
    }
}

int
main (int argc, char **argv)
{
  logged = g_ptr_array_new_with_free_func (g_free);
  g_log_set_writer_func (log_writer, NULL, NULL);
  g_test_init (&argc, &argv, NULL);
  g_test_add ("/xdm-switch/one-at-a-time", Test, NULL, test_set_up, test_one_at_a_time,
              test_tear_down);
  g_test_add ("/xdm-switch/errors", Test, NULL, test_set_up, test_errors, test_tear_down);
  return g_test_run ();
}
