/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* Cross-domain messaging end to end: dhfd over libvirt's test driver, with
 * simulated appliances (xdm-sim: libdhf-1 on their channel sockets) calling
 * each other under the admin policy: allow, deny, ask, redirects, policy
 * edits, providers and callers that die, dhfd restarts, dom0 clients, the
 * framework services, topics and streams. */
#include "config.h"

#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <dhf/dhf.h>
#include <json.h>

#include "xdm-harness.h"

static const XdmDomainSpec domains[] = {
  { "alpha", "environment", "[\"personal\"]", FALSE },
  { "beta", "service", "[\"corp\"]", FALSE },
  { "gamma", "service", "[\"corp\"]", FALSE },
  { "delta", "environment", NULL, TRUE },
};

/* Topics: the subject is the topic, SOURCE the publisher, TARGET the
 * subscriber. */
static const gchar policy[]
    = "org.dhf.framework.Whoami          @any       @dom0  allow\n"
      "org.dhf.framework.Whoami          @dom0      @dom0  allow\n"
      "org.dhf.framework.ListAppliances  @any       @dom0  allow\n"
      "org.dhf.framework.ApplianceState  @dom0      @any   allow\n"
      "org.dhf.test.Echo1                alpha      beta   allow\n"
      "org.dhf.test.Echo1                alpha      gamma  deny\n"
      "org.dhf.test.Echo1                @dom0      beta   allow\n"
      "org.dhf.test.Echo1                @tag:corp  @any   allow\n"
      "org.dhf.test.Both1                alpha      @any   allow\n"
      "org.dhf.test.Ask1                 alpha      beta   ask\n"
      "org.dhf.test.Print1               alpha      beta   allow target=gamma\n"
      "org.dhf.test.Hang1                alpha      beta   allow\n"
      "org.dhf.test.Stream1              alpha      beta   allow\n"
      "org.dhf.test.News                 beta       alpha  allow\n"
      "org.dhf.test.News                 beta       gamma  deny\n"
      "org.dhf.test.Other                beta       @any   allow\n";

typedef struct
{
  XdmHarness *h;
  XdmSim *alpha;
  XdmSim *beta;
  XdmSim *gamma;
} Fixture;

static void
fixture_set_up (Fixture *fx, gconstpointer data)
{
  fx->h = xdm_harness_new (domains, G_N_ELEMENTS (domains), policy, "AskTimeout=1\n");
  /* The appliances listen before dhfd starts, as a booted guest's channel
   * would; dhfd connects to each when it finds it running. */
  fx->alpha = xdm_sim_spawn (fx->h, "alpha");
  fx->beta = xdm_sim_spawn (fx->h, "beta");
  fx->gamma = xdm_sim_spawn (fx->h, "gamma");
  xdm_harness_start_dhfd (fx->h);
  xdm_sim_wait_ready (fx->alpha);
  xdm_sim_wait_ready (fx->beta);
  xdm_sim_wait_ready (fx->gamma);
}

static void
fixture_tear_down (Fixture *fx, gconstpointer data)
{
  xdm_sim_free (fx->alpha);
  xdm_sim_free (fx->beta);
  xdm_sim_free (fx->gamma);
  xdm_harness_free (fx->h);
}

static void
run_ok (XdmSim *sim, const gchar *cmd, const gchar *args)
{
  g_autofree gchar *reply = xdm_sim_run (sim, cmd, "%s", args);

  xdm_assert_ok (reply);
}

static const gchar *
member (json_object *obj, const gchar *key)
{
  json_object *value = NULL;

  if (!json_object_object_get_ex (obj, key, &value) || value == NULL)
    return NULL;
  return json_object_get_string (value);
}

/* The domain that served an echo call. */
static gchar *
served_by (const gchar *reply)
{
  json_object *json = xdm_reply_json (reply);
  gchar *domain = g_strdup (member (json, "domain"));

  json_object_put (json);
  return domain;
}

/* --- allow, deny, candidates ------------------------------------------ */

static void
test_allow (Fixture *fx, gconstpointer data)
{
  g_autofree gchar *reply = NULL;
  json_object *json;
  json_object *params;

  run_ok (fx->beta, "register", "org.dhf.test.Echo1 echo");
  xdm_harness_wait_service (fx->h, "org.dhf.test.Echo1", "beta", TRUE);

  reply = xdm_sim_run (fx->alpha, "call", "org.dhf.test.Echo1 beta 0 {\"x\": [1, \"two\"]}");
  json = xdm_reply_json (reply);
  g_assert_cmpstr (member (json, "domain"), ==, "beta");
  /* The source is what dhfd knows of the transport. */
  g_assert_cmpstr (member (json, "source"), ==, "alpha");
  g_assert_null (member (json, "arg"));
  g_assert_true (json_object_object_get_ex (json, "params", &params));
  g_assert_cmpstr (json_object_to_json_string_ext (params, JSON_C_TO_STRING_PLAIN), ==,
                   "{\"x\":[1,\"two\"]}");
  json_object_put (json);
  g_clear_pointer (&reply, g_free);

  /* With an argument, and without naming the target: beta is the one
   * provider. */
  reply = xdm_sim_run (fx->alpha, "call", "org.dhf.test.Echo1+docs - 0");
  json = xdm_reply_json (reply);
  g_assert_cmpstr (member (json, "domain"), ==, "beta");
  g_assert_cmpstr (member (json, "arg"), ==, "docs");
  json_object_put (json);
  g_clear_pointer (&reply, g_free);

  /* The provider's errors reach the caller as they are. */
  run_ok (fx->beta, "register", "org.dhf.test.Both1 fail");
  reply = xdm_sim_run (fx->alpha, "call", "org.dhf.test.Both1 beta 0");
  xdm_assert_error (reply, "invalid-state");
  g_assert_nonnull (strstr (reply, "refused by the test"));
}

static void
test_deny_and_candidates (Fixture *fx, gconstpointer data)
{
  g_autofree gchar *reply = NULL;
  g_autofree gchar *domain = NULL;
  g_autoptr (GVariant) services = NULL;

  run_ok (fx->beta, "register", "org.dhf.test.Echo1 echo");
  run_ok (fx->gamma, "register", "org.dhf.test.Echo1 echo");

  /* An explicit deny. */
  reply = xdm_sim_run (fx->alpha, "call", "org.dhf.test.Echo1 gamma 0");
  xdm_assert_error (reply, "not-authorized");
  g_clear_pointer (&reply, g_free);
  /* No rule: the default deny. */
  reply = xdm_sim_run (fx->gamma, "call", "org.dhf.test.Hang1 beta 0");
  xdm_assert_error (reply, "not-authorized");
  g_clear_pointer (&reply, g_free);

  /* No target: the providers policy does not deny are the candidates;
   * gamma is denied, so beta it is. */
  reply = xdm_sim_run (fx->alpha, "call", "org.dhf.test.Echo1 - 0");
  domain = served_by (reply);
  g_assert_cmpstr (domain, ==, "beta");
  g_clear_pointer (&reply, g_free);

  /* Two allowed providers: the caller must choose. */
  run_ok (fx->beta, "register", "org.dhf.test.Both1 echo");
  run_ok (fx->gamma, "register", "org.dhf.test.Both1 echo");
  reply = xdm_sim_run (fx->alpha, "call", "org.dhf.test.Both1 - 0");
  xdm_assert_error (reply, "invalid-args");
  g_assert_nonnull (strstr (reply, "beta, gamma"));
  g_clear_pointer (&reply, g_free);
  g_clear_pointer (&domain, g_free);
  reply = xdm_sim_run (fx->alpha, "call", "org.dhf.test.Both1 gamma 0");
  domain = served_by (reply);
  g_assert_cmpstr (domain, ==, "gamma");
  g_clear_pointer (&reply, g_free);

  /* Nobody provides it. */
  reply = xdm_sim_run (fx->alpha, "call", "org.dhf.test.Nobody1 - 0");
  xdm_assert_error (reply, "not-found");
  g_clear_pointer (&reply, g_free);
  /* Allowed, but the target does not provide it. */
  reply = xdm_sim_run (fx->alpha, "call", "org.dhf.test.Hang1 beta 0");
  xdm_assert_error (reply, "not-found");
  g_clear_pointer (&reply, g_free);

  /* The denied calls never reached gamma's Echo1. */
  services = xdm_harness_list (fx->h, "ListServices");
  g_assert_cmpuint (xdm_harness_count (services, "service", "org.dhf.test.Echo1"), ==, 2);
  {
    guint64 gamma_calls = 0, beta_calls = 0;

    for (gsize i = 0; i < g_variant_n_children (services); i++)
      {
        g_autoptr (GVariant) entry = g_variant_get_child_value (services, i);
        const gchar *service, *domain_name;
        guint64 calls;

        g_assert_true (g_variant_lookup (entry, "service", "&s", &service));
        g_assert_true (g_variant_lookup (entry, "domain", "&s", &domain_name));
        g_assert_true (g_variant_lookup (entry, "calls", "t", &calls));
        if (g_str_equal (service, "org.dhf.test.Echo1"))
          {
            if (g_str_equal (domain_name, "gamma"))
              gamma_calls = calls;
            else
              beta_calls = calls;
          }
      }
    g_assert_cmpuint (gamma_calls, ==, 0);
    g_assert_cmpuint (beta_calls, ==, 1);
  }
}

static void
test_registration_rules (Fixture *fx, gconstpointer data)
{
  g_autofree gchar *reply = NULL;

  run_ok (fx->beta, "register", "org.dhf.test.Echo1 echo");
  /* One provider per service and domain ... */
  reply = xdm_sim_run (fx->beta, "register", "org.dhf.test.Echo1 echo");
  xdm_assert_error (reply, "exists");
  g_clear_pointer (&reply, g_free);
  /* ... but several domains may provide it. */
  run_ok (fx->gamma, "register", "org.dhf.test.Echo1 echo");
  /* dhfd's own names are reserved. */
  reply = xdm_sim_run (fx->beta, "register", "org.dhf.framework.Whoami echo");
  xdm_assert_error (reply, "not-authorized");
  g_clear_pointer (&reply, g_free);

  /* Unregistered, it is gone. */
  run_ok (fx->beta, "unregister", "org.dhf.test.Echo1");
  xdm_harness_wait_service (fx->h, "org.dhf.test.Echo1", "beta", FALSE);
  reply = xdm_sim_run (fx->alpha, "call", "org.dhf.test.Echo1 beta 0");
  xdm_assert_error (reply, "not-found");
}

/* --- ask ------------------------------------------------------------- */

static const gchar *
question_string (XdmPromptAgent *agent, const gchar *key)
{
  static gchar value[256];
  g_autoptr (GVariant) question = g_variant_parse (NULL, agent->question, NULL, NULL, NULL);
  g_autoptr (GVariant) dict = NULL;
  const gchar *s = NULL;

  g_assert_nonnull (question);
  dict = g_variant_get_child_value (question, 0);
  if (!g_variant_lookup (dict, key, "&s", &s))
    return NULL;
  g_strlcpy (value, s, sizeof value);
  return value;
}

static void
test_ask (Fixture *fx, gconstpointer data)
{
  g_autoptr (XdmPromptAgent) agent = NULL;
  g_autofree gchar *reply = NULL;
  g_autofree gchar *domain = NULL;

  run_ok (fx->beta, "register", "org.dhf.test.Ask1 echo");

  /* No prompt agent: "ask" is a deny. */
  reply = xdm_sim_run (fx->alpha, "call", "org.dhf.test.Ask1 beta 0");
  xdm_assert_error (reply, "not-authorized");
  g_clear_pointer (&reply, g_free);

  agent = xdm_prompt_agent_new (fx->h, XDM_PROMPT_YES);

  /* Yes. */
  reply = xdm_sim_run (fx->alpha, "call", "org.dhf.test.Ask1 beta 0");
  domain = served_by (reply);
  g_assert_cmpstr (domain, ==, "beta");
  g_assert_cmpuint (agent->asked, ==, 1);
  g_assert_cmpstr (question_string (agent, "service"), ==, "org.dhf.test.Ask1");
  g_assert_cmpstr (question_string (agent, "source"), ==, "alpha");
  g_assert_cmpstr (question_string (agent, "target"), ==, "beta");
  g_assert_cmpstr (question_string (agent, "kind"), ==, "call");
  g_assert_true (g_str_has_suffix (question_string (agent, "rule"), "/50-test.policy:10"));
  g_assert_null (question_string (agent, "argument"));
  g_clear_pointer (&reply, g_free);

  /* No. */
  agent->answer = XDM_PROMPT_NO;
  reply = xdm_sim_run (fx->alpha, "call", "org.dhf.test.Ask1 beta 0");
  xdm_assert_error (reply, "not-authorized");
  g_assert_cmpuint (agent->asked, ==, 2);
  g_clear_pointer (&reply, g_free);

  /* No answer at all: denied when AskTimeout (1 s here) has passed. */
  agent->answer = XDM_PROMPT_HOLD;
  reply = xdm_sim_run (fx->alpha, "call", "org.dhf.test.Ask1 beta 0");
  xdm_assert_error (reply, "not-authorized");
  g_assert_cmpuint (agent->asked, ==, 3);
  g_clear_pointer (&reply, g_free);

  /* Answered yes too late: the call is not made after all. */
  g_assert_cmpuint (agent->held->len, ==, 1);
  xdm_prompt_agent_answer_held (agent, TRUE);
  agent->answer = XDM_PROMPT_YES;
  reply = xdm_sim_run (fx->alpha, "call", "org.dhf.test.Ask1 beta 0");
  g_clear_pointer (&domain, g_free);
  domain = served_by (reply);
  g_assert_cmpstr (domain, ==, "beta");
  {
    /* beta was invoked twice: the "yes" and this last one. */
    g_autofree gchar *first = xdm_sim_expect (fx->beta, "invoked org.dhf.test.Ask1 ");
    g_autofree gchar *second = xdm_sim_expect (fx->beta, "invoked org.dhf.test.Ask1 ");

    g_assert_nonnull (first);
    g_assert_nonnull (second);
    g_assert_null (xdm_sim_peek (fx->beta, "invoked org.dhf.test.Ask1 "));
  }
}

/* --- redirect, policy edits ------------------------------------------- */

static void
test_redirect (Fixture *fx, gconstpointer data)
{
  g_autofree gchar *reply = NULL;
  json_object *json;

  run_ok (fx->beta, "register", "org.dhf.test.Print1 echo");
  run_ok (fx->gamma, "register", "org.dhf.test.Print1 echo");
  /* alpha asks for beta; the rule's target=gamma sends it to gamma. */
  reply = xdm_sim_run (fx->alpha, "call", "org.dhf.test.Print1 beta 0 {\"doc\": 1}");
  json = xdm_reply_json (reply);
  g_assert_cmpstr (member (json, "domain"), ==, "gamma");
  g_assert_cmpstr (member (json, "source"), ==, "alpha");
  json_object_put (json);
  g_assert_null (xdm_sim_peek (fx->beta, "invoked org.dhf.test.Print1"));
}

static void
test_policy_edit (Fixture *fx, gconstpointer data)
{
  g_autofree gchar *reply = NULL;
  g_autofree gchar *domain = NULL;
  g_autoptr (GString) edited = g_string_new (policy);
  GPid pid = xdm_harness_dhfd_pid (fx->h);

  run_ok (fx->beta, "register", "org.dhf.test.Echo1 echo");
  reply = xdm_sim_run (fx->alpha, "call", "org.dhf.test.Echo1 beta 0");
  domain = served_by (reply);
  g_assert_cmpstr (domain, ==, "beta");
  g_clear_pointer (&reply, g_free);

  g_assert_cmpuint (
      g_string_replace (edited, "org.dhf.test.Echo1                alpha      beta   allow",
                        "org.dhf.test.Echo1                alpha      beta   deny", 1),
      ==, 1);
  xdm_harness_set_policy (fx->h, edited->str);
  reply = xdm_sim_run (fx->alpha, "call", "org.dhf.test.Echo1 beta 0");
  xdm_assert_error (reply, "not-authorized");
  /* The same dhfd: nothing was restarted. */
  g_assert_cmpint (xdm_harness_dhfd_pid (fx->h), ==, pid);
}

/* --- failures: providers, callers, timeouts, dhfd ---------------------- */

static void
test_provider_killed (Fixture *fx, gconstpointer data)
{
  g_autofree gchar *tag = NULL;
  g_autofree gchar *invoked = NULL;
  g_autofree gchar *reply = NULL;

  run_ok (fx->beta, "register", "org.dhf.test.Hang1 hang");
  tag = xdm_sim_begin (fx->alpha, "call", "org.dhf.test.Hang1 beta 60000");
  invoked = xdm_sim_expect (fx->beta, "invoked org.dhf.test.Hang1 - alpha");
  xdm_sim_kill (fx->beta);
  reply = xdm_sim_wait (fx->alpha, tag);
  xdm_assert_error (reply, "unavailable");
  xdm_harness_wait_service (fx->h, "org.dhf.test.Hang1", "beta", FALSE);
}

static void
test_caller_gone (Fixture *fx, gconstpointer data)
{
  g_autofree gchar *tag = NULL;
  g_autofree gchar *invoked = NULL;
  g_autofree gchar *cancelled = NULL;

  run_ok (fx->beta, "register", "org.dhf.test.Hang1 hang");
  tag = xdm_sim_begin (fx->alpha, "call", "org.dhf.test.Hang1 beta 60000");
  invoked = xdm_sim_expect (fx->beta, "invoked org.dhf.test.Hang1 - alpha");
  xdm_sim_kill (fx->alpha);
  /* The provider is told the caller gave up. */
  cancelled = xdm_sim_expect (fx->beta, "cancelled org.dhf.test.Hang1 alpha");
}

static void
test_call_timeout (Fixture *fx, gconstpointer data)
{
  g_autofree gchar *reply = NULL;
  g_autofree gchar *cancelled = NULL;
  g_autofree gchar *domain = NULL;

  run_ok (fx->beta, "register", "org.dhf.test.Hang1 hang");
  run_ok (fx->beta, "register", "org.dhf.test.Echo1 echo");
  reply = xdm_sim_run (fx->alpha, "call", "org.dhf.test.Hang1 beta 200");
  xdm_assert_error (reply, "timeout");
  cancelled = xdm_sim_expect (fx->beta, "cancelled org.dhf.test.Hang1 alpha");
  /* The connection goes on. */
  g_clear_pointer (&reply, g_free);
  reply = xdm_sim_run (fx->alpha, "call", "org.dhf.test.Echo1 beta 0");
  domain = served_by (reply);
  g_assert_cmpstr (domain, ==, "beta");
}

static void
test_dhfd_restart (Fixture *fx, gconstpointer data)
{
  g_autofree gchar *reply = NULL;
  g_autofree gchar *domain = NULL;
  g_autofree gchar *line = NULL;
  XdmSim *dom0 = xdm_sim_start (fx->h, "dom0");
  gint status;

  run_ok (fx->beta, "register", "org.dhf.test.Echo1 echo");
  run_ok (fx->alpha, "subscribe", "org.dhf.framework.ApplianceState");
  reply = xdm_sim_run (dom0, "call", "org.dhf.test.Echo1 beta 0");
  domain = served_by (reply);
  g_assert_cmpstr (domain, ==, "beta");
  g_clear_pointer (&reply, g_free);

  /* Killed: no chance to say goodbye. The appliances keep running. */
  status = xdm_harness_kill_dhfd (fx->h, SIGKILL);
  g_assert_true (WIFSIGNALED (status));
  line = xdm_sim_expect (fx->alpha, "disconnected");
  g_clear_pointer (&line, g_free);
  line = xdm_sim_expect (fx->beta, "disconnected");
  g_clear_pointer (&line, g_free);
  line = xdm_sim_expect (dom0, "disconnected");
  g_clear_pointer (&line, g_free);
  /* From now on "connected" means connected to the new dhfd. */
  xdm_sim_forget (fx->alpha, "connected ");
  xdm_sim_forget (fx->beta, "connected ");
  xdm_sim_forget (dom0, "connected ");

  xdm_harness_start_dhfd (fx->h);
  /* Each client takes the new connection, says HELLO and registers its
   * services again on its own. */
  line = xdm_sim_expect (fx->alpha, "connected alpha");
  g_clear_pointer (&line, g_free);
  line = xdm_sim_expect (dom0, "connected dom0");
  g_clear_pointer (&line, g_free);
  line = xdm_sim_expect (fx->beta, "connected beta");
  g_clear_pointer (&line, g_free);
  xdm_harness_wait_service (fx->h, "org.dhf.test.Echo1", "beta", TRUE);
  reply = xdm_sim_run (fx->alpha, "call", "org.dhf.test.Echo1 beta 0");
  g_clear_pointer (&domain, g_free);
  domain = served_by (reply);
  g_assert_cmpstr (domain, ==, "beta");
  g_clear_pointer (&reply, g_free);
  reply = xdm_sim_run (dom0, "call", "org.dhf.test.Echo1 beta 0");
  g_clear_pointer (&domain, g_free);
  domain = served_by (reply);
  g_assert_cmpstr (domain, ==, "beta");

  /* alpha's subscription came back too. */
  xdm_harness_wait_count (fx->h, "ListSubscriptions", "topic", "org.dhf.framework.ApplianceState",
                          1);
  xdm_sim_free (dom0);
}

/* --- dom0 and the framework services ----------------------------------- */

static void
test_dom0_client (Fixture *fx, gconstpointer data)
{
  XdmSim *dom0 = xdm_sim_start (fx->h, "dom0");
  g_autofree gchar *reply = NULL;
  g_autoptr (GVariant) conns = NULL;
  json_object *json;
  json_object *uid;

  reply = xdm_sim_run (dom0, "call", "org.dhf.framework.Whoami dom0 0");
  json = xdm_reply_json (reply);
  g_assert_cmpstr (member (json, "domain"), ==, "dom0");
  g_assert_cmpstr (member (json, "transport"), ==, "unix");
  g_assert_true (json_object_object_get_ex (json, "uid", &uid));
  g_assert_cmpint (json_object_get_int64 (uid), ==, getuid ());
  json_object_put (json);
  g_clear_pointer (&reply, g_free);

  run_ok (fx->beta, "register", "org.dhf.test.Echo1 echo");
  reply = xdm_sim_run (dom0, "call", "org.dhf.test.Echo1 beta 0");
  json = xdm_reply_json (reply);
  g_assert_cmpstr (member (json, "source"), ==, "dom0");
  json_object_put (json);

  /* dhfd knows who is on its socket. */
  conns = xdm_harness_list (fx->h, "ListConnections");
  g_assert_cmpuint (xdm_harness_count (conns, "domain", "dom0"), ==, 1);
  g_assert_cmpuint (xdm_harness_count (conns, "transport", "unix"), ==, 1);
  g_assert_cmpuint (xdm_harness_count (conns, "transport", "channel"), ==, 3);
  g_assert_cmpuint (xdm_harness_lookup_u64 (conns, "domain", "dom0", "pid"), ==,
                    (guint64) atoi (g_subprocess_get_identifier (dom0->proc)));
  g_assert_cmpuint (xdm_harness_lookup_u64 (conns, "domain", "dom0", "uid"), ==, getuid ());
  xdm_sim_free (dom0);
  xdm_harness_wait_connections (fx->h, "dom0", 0);
}

static gchar *
appliance_uuid (Fixture *fx, const gchar *name)
{
  g_autoptr (GError) error = NULL;
  g_autofree gchar *path = g_strconcat (DHF_APPLIANCE_PATH_PREFIX "/", name, NULL);
  g_autoptr (GVariant) reply = NULL;
  g_autoptr (GVariant) value = NULL;

  reply = g_dbus_connection_call_sync (
      fx->h->conn, DHF_BUS_NAME, path, "org.freedesktop.DBus.Properties", "Get",
      g_variant_new ("(ss)", "org.dhf.Framework1.Appliance", "UUID"), G_VARIANT_TYPE ("(v)"),
      G_DBUS_CALL_FLAGS_NONE, -1, NULL, &error);
  g_assert_no_error (error);
  g_variant_get (reply, "(v)", &value);
  return g_variant_dup_string (value, NULL);
}

static void
test_whoami (Fixture *fx, gconstpointer data)
{
  g_autofree gchar *reply = xdm_sim_run (fx->alpha, "call", "org.dhf.framework.Whoami dom0 0");
  g_autofree gchar *uuid = appliance_uuid (fx, "alpha");
  json_object *json = xdm_reply_json (reply);
  json_object *tags = NULL;

  g_assert_cmpstr (member (json, "domain"), ==, "alpha");
  g_assert_cmpstr (member (json, "uuid"), ==, uuid);
  g_assert_cmpstr (member (json, "transport"), ==, "channel");
  g_assert_cmpstr (member (json, "role"), ==, "environment");
  g_assert_cmpstr (member (json, "vendor"), ==, "dhf tests");
  g_assert_null (member (json, "uid"));
  g_assert_true (json_object_object_get_ex (json, "tags", &tags));
  g_assert_cmpstr (json_object_to_json_string_ext (tags, JSON_C_TO_STRING_PLAIN), ==,
                   "[\"personal\"]");
  json_object_put (json);
}

static json_object *
find_appliance (json_object *list, const gchar *name)
{
  json_object *apps = NULL;

  g_assert_true (json_object_object_get_ex (list, "appliances", &apps));
  for (gsize i = 0; i < json_object_array_length (apps); i++)
    {
      json_object *app = json_object_array_get_idx (apps, i);

      if (g_strcmp0 (member (app, "name"), name) == 0)
        return app;
    }
  return NULL;
}

static gint
compare_names (gconstpointer a, gconstpointer b)
{
  return g_strcmp0 (*(const gchar *const *) a, *(const gchar *const *) b);
}

static gchar *
services_of (json_object *app)
{
  json_object *services = NULL;
  g_autoptr (GPtrArray) names = g_ptr_array_new ();

  g_assert_true (json_object_object_get_ex (app, "services", &services));
  for (gsize i = 0; i < json_object_array_length (services); i++)
    g_ptr_array_add (names,
                     (gpointer) json_object_get_string (json_object_array_get_idx (services, i)));
  g_ptr_array_sort (names, compare_names);
  g_ptr_array_add (names, NULL);
  return g_strjoinv (",", (gchar **) names->pdata);
}

static void
test_list_appliances (Fixture *fx, gconstpointer data)
{
  g_autofree gchar *reply = NULL;
  g_autofree gchar *beta_services = NULL;
  json_object *json;
  json_object *self;
  json_object *beta;

  run_ok (fx->beta, "register", "org.dhf.test.Echo1 echo");
  run_ok (fx->beta, "register", "org.dhf.test.Hang1 hang");
  run_ok (fx->beta, "register", "org.dhf.test.Other1 echo");
  run_ok (fx->gamma, "register", "org.dhf.test.Echo1 echo");
  reply = xdm_sim_run (fx->alpha, "call", "org.dhf.framework.ListAppliances dom0 0");
  json = xdm_reply_json (reply);
  /* Itself ... */
  self = find_appliance (json, "alpha");
  g_assert_nonnull (self);
  g_assert_cmpstr (member (self, "role"), ==, "environment");
  g_assert_cmpstr (member (self, "state"), ==, "running");
  /* ... beta, with what alpha may call there ... */
  beta = find_appliance (json, "beta");
  g_assert_nonnull (beta);
  g_assert_cmpstr (member (beta, "role"), ==, "service");
  beta_services = services_of (beta);
  g_assert_cmpstr (beta_services, ==, "org.dhf.test.Echo1,org.dhf.test.Hang1");
  /* ... and not gamma, whose one service alpha may not call, nor delta,
   * which provides nothing. */
  g_assert_null (find_appliance (json, "gamma"));
  g_assert_null (find_appliance (json, "delta"));
  json_object_put (json);
}

/* --- topics ---------------------------------------------------------- */

static void
test_topics (Fixture *fx, gconstpointer data)
{
  g_autofree gchar *event = NULL;
  g_autofree gchar *other = NULL;

  run_ok (fx->alpha, "subscribe", "org.dhf.test.News");
  run_ok (fx->gamma, "subscribe", "org.dhf.test.News");
  run_ok (fx->gamma, "subscribe", "org.dhf.test.Other");
  run_ok (fx->beta, "subscribe", "org.dhf.test.News");
  run_ok (fx->beta, "publish", "org.dhf.test.News {\"n\": 1}");
  run_ok (fx->beta, "publish", "org.dhf.test.Other {\"n\": 2}");

  event = xdm_sim_expect (fx->alpha, "event org.dhf.test.News ");
  g_assert_cmpstr (event, ==, "event org.dhf.test.News beta {\"n\":1}");
  /* gamma got Other, published after News: News (denied) would have come
   * first. */
  other = xdm_sim_expect (fx->gamma, "event org.dhf.test.Other ");
  g_assert_cmpstr (other, ==, "event org.dhf.test.Other beta {\"n\":2}");
  g_assert_null (xdm_sim_peek (fx->gamma, "event org.dhf.test.News"));
  /* Not to the publisher itself. */
  g_assert_null (xdm_sim_peek (fx->beta, "event "));

  {
    g_autoptr (GVariant) subs = xdm_harness_list (fx->h, "ListSubscriptions");

    g_assert_cmpuint (xdm_harness_count (subs, "topic", "org.dhf.test.News"), ==, 3);
  }
}

static gboolean
appliance_call (Fixture *fx, const gchar *name, const gchar *method, GVariant *args)
{
  g_autoptr (GError) error = NULL;
  g_autofree gchar *path = g_strconcat (DHF_APPLIANCE_PATH_PREFIX "/", name, NULL);
  g_autoptr (GVariant) reply = NULL;

  reply = g_dbus_connection_call_sync (fx->h->conn, DHF_BUS_NAME, path,
                                       "org.dhf.Framework1.Appliance", method, args, NULL,
                                       G_DBUS_CALL_FLAGS_NONE, -1, NULL, &error);
  g_assert_no_error (error);
  return reply != NULL;
}

static void
test_appliance_state_events (Fixture *fx, gconstpointer data)
{
  g_autofree gchar *event = NULL;
  g_autofree gchar *reply = NULL;
  XdmSim *delta;
  json_object *json;

  run_ok (fx->alpha, "subscribe", "org.dhf.framework.ApplianceState");
  /* delta is shut off: its appliance listens, dhfd has nothing to connect
   * to until it starts. */
  delta = xdm_sim_spawn (fx->h, "delta");
  g_assert_true (appliance_call (fx, "delta", "Start", NULL));
  event = xdm_sim_expect (fx->alpha, "event org.dhf.framework.ApplianceState dom0 ");
  json = json_tokener_parse (event + strlen ("event org.dhf.framework.ApplianceState dom0 "));
  g_assert_nonnull (json);
  g_assert_cmpstr (member (json, "appliance"), ==, "delta");
  g_assert_cmpstr (member (json, "state"), ==, "running");
  g_assert_nonnull (member (json, "reason"));
  json_object_put (json);
  g_clear_pointer (&event, g_free);

  /* Running, it has a connection: dhfd found its channel in the live XML. */
  xdm_sim_wait_ready (delta);
  reply = xdm_sim_run (delta, "call", "org.dhf.framework.Whoami dom0 0");
  json = xdm_reply_json (reply);
  g_assert_cmpstr (member (json, "domain"), ==, "delta");
  json_object_put (json);

  g_assert_true (appliance_call (fx, "delta", "Shutdown", g_variant_new ("(u)", 1000)));
  event = xdm_sim_expect (fx->alpha, "event org.dhf.framework.ApplianceState dom0 ");
  json = json_tokener_parse (event + strlen ("event org.dhf.framework.ApplianceState dom0 "));
  g_assert_cmpstr (member (json, "appliance"), ==, "delta");
  g_assert_cmpstr (member (json, "state"), ==, "shutoff");
  json_object_put (json);
  /* Its connection went with it. */
  xdm_harness_wait_connections (fx->h, "delta", 0);
  xdm_sim_free (delta);
}

/* --- streams --------------------------------------------------------- */

static void
test_stream (Fixture *fx, gconstpointer data)
{
  g_autofree gchar *reply = NULL;
  g_autofree gchar *denied = NULL;

  run_ok (fx->beta, "register", "org.dhf.test.Stream1 stream-echo");
  run_ok (fx->gamma, "register", "org.dhf.test.Stream1 stream-echo");
  /* 8 MiB out and back: more than any window, so credit has to flow. */
  reply = xdm_sim_run (fx->alpha, "stream", "org.dhf.test.Stream1 beta 8388608");
  g_assert_cmpstr (reply, ==, "ok 8388608");
  /* Streams are checked like calls. */
  denied = xdm_sim_run (fx->alpha, "stream", "org.dhf.test.Stream1 gamma 16");
  xdm_assert_error (denied, "not-authorized");
}

int
main (int argc, char **argv)
{
  g_test_init (&argc, &argv, NULL);
#define ADD(path, fn) g_test_add (path, Fixture, NULL, fixture_set_up, fn, fixture_tear_down)
  ADD ("/xdm/calls/allow", test_allow);
  ADD ("/xdm/calls/deny-and-candidates", test_deny_and_candidates);
  ADD ("/xdm/calls/registration-rules", test_registration_rules);
  ADD ("/xdm/calls/ask", test_ask);
  ADD ("/xdm/calls/redirect", test_redirect);
  ADD ("/xdm/calls/policy-edit", test_policy_edit);
  ADD ("/xdm/calls/provider-killed", test_provider_killed);
  ADD ("/xdm/calls/caller-gone", test_caller_gone);
  ADD ("/xdm/calls/timeout", test_call_timeout);
  ADD ("/xdm/calls/dhfd-restart", test_dhfd_restart);
  ADD ("/xdm/calls/dom0-client", test_dom0_client);
  ADD ("/xdm/calls/whoami", test_whoami);
  ADD ("/xdm/calls/list-appliances", test_list_appliances);
  ADD ("/xdm/calls/topics", test_topics);
  ADD ("/xdm/calls/appliance-state-events", test_appliance_state_events);
  ADD ("/xdm/calls/stream", test_stream);
#undef ADD
  return g_test_run ();
}
