/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include "config.h"

#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "xdm-router-harness.h"

/* The XDM router: sessions, the registry, calls and their policy
 * decisions (allow, deny, ask, redirects, quotas, target resolution),
 * what happens to calls in flight when something goes away, the framework
 * services, topics, streams, the limits and the introspection lists. The
 * hostile peers are in test-xdm-router-hostile.c. */

static void
register_service (Peer *p, const gchar *service)
{
  guint32 id = peer_next_id (p);
  g_autoptr (Frame) reply = NULL;

  peer_sendf (p, DHF_XDM_REGISTER, id, "{\"service\":\"%s\"}", service);
  reply = peer_expect (p, DHF_XDM_REPLY, id);
}

static void
subscribe (Peer *p, const gchar *topic)
{
  guint32 id = peer_next_id (p);
  g_autoptr (Frame) reply = NULL;

  peer_sendf (p, DHF_XDM_SUBSCRIBE, id, "{\"topic\":\"%s\"}", topic);
  reply = peer_expect (p, DHF_XDM_REPLY, id);
}

/* The provider side of one call: receives it, checks it, answers. */
static Frame *
expect_call (Peer *provider, const gchar *service, const gchar *source)
{
  Frame *call = peer_expect (provider, DHF_XDM_CALL, -1);

  g_assert_cmpstr (call->msg.service, ==, service);
  g_assert_cmpstr (call->msg.source, ==, source);
  g_assert_null (call->msg.target);
  g_assert_cmpuint (call->header.id, >=, 0x80000000u);
  return call;
}

static void
answer (Peer *provider, guint32 id, const gchar *result_json)
{
  peer_sendf (provider, DHF_XDM_REPLY, id, "{\"result\":%s}", result_json);
}

/* --- sessions ---------------------------------------------------------------- */

static void
test_hello_welcome (Fixture *f, gconstpointer data)
{
  Peer *p = peer_connect (f, "alpha", DHF_XDM_TRANSPORT_CHANNEL);
  g_autoptr (Frame) welcome = NULL;
  g_autoptr (GVariant) list = NULL;
  g_autoptr (GVariant) entry = NULL;
  json_object *limits = NULL;
  const gchar *transport;

  peer_send (p, DHF_XDM_HELLO, 0, "{\"versions\":[3,1,2],\"client\":\"test\"}");
  welcome = peer_expect (p, DHF_XDM_WELCOME, 0);
  g_assert_cmpuint (welcome->msg.version, ==, 1);
  g_assert_cmpstr (welcome->msg.domain, ==, "alpha");
  g_assert_nonnull (welcome->msg.uuid);
  g_assert_true (json_object_object_get_ex (welcome->msg.body, "limits", &limits));
  g_assert_cmpint (json_int_member (limits, "max_body"), ==, DHF_XDM_MAX_BODY);
  g_assert_cmpint (json_int_member (limits, "max_calls_in_flight"), ==,
                   f->limits.max_calls_in_flight);

  peer_sync (p);
  g_assert_cmpuint (dhf_xdm_router_get_n_connections (f->router), ==, 1);
  list = dhf_xdm_router_list_connections (f->router);
  entry = variant_find (list, "domain", "alpha");
  g_assert_nonnull (entry);
  g_assert_true (g_variant_lookup (entry, "transport", "&s", &transport));
  g_assert_cmpstr (transport, ==, "channel");
  /* uid and pid are for the unix transport only. */
  g_assert_false (g_variant_lookup (entry, "uid", "u", NULL));
}

static void
test_hello_version_refused (Fixture *f, gconstpointer data)
{
  Peer *p = peer_connect (f, "alpha", DHF_XDM_TRANSPORT_CHANNEL);
  g_autoptr (GPtrArray) frames = NULL;
  const ClosedRecord *closed;
  Frame *error;

  peer_send (p, DHF_XDM_HELLO, 0, "{\"versions\":[7,9]}");
  frames = peer_expect_eof (p);
  g_assert_cmpuint (frames->len, ==, 1);
  error = g_ptr_array_index (frames, 0);
  g_assert_cmpint (error->header.type, ==, DHF_XDM_ERROR);
  g_assert_cmpuint (error->header.id, ==, 0);
  g_assert_cmpstr (error->msg.code, ==, "protocol");
  g_assert_nonnull (strstr (error->msg.message, "no common protocol version"));
  closed = fixture_closed (f, p->id);
  g_assert_nonnull (closed);
  g_assert_true (closed->has_error);
  g_assert_cmpint (closed->error_code, ==, DHF_ERROR_PROTOCOL);
  g_assert_cmpuint (dhf_xdm_router_get_n_connections (f->router), ==, 0);
}

static void
test_frame_before_hello (Fixture *f, gconstpointer data)
{
  Peer *p = peer_connect (f, "alpha", DHF_XDM_TRANSPORT_CHANNEL);
  Peer *beta = peer_join (f, "beta");
  g_autoptr (GPtrArray) frames = NULL;
  Frame *error;

  register_service (beta, "org.example.Echo1");
  peer_call (p, "org.example.Echo1", "beta", NULL);
  frames = peer_expect_eof (p);
  g_assert_cmpuint (frames->len, ==, 1);
  error = g_ptr_array_index (frames, 0);
  g_assert_cmpstr (error->msg.code, ==, "protocol");
  g_assert_nonnull (strstr (error->msg.message, "before HELLO"));
  g_assert_cmpint (fixture_closed (f, p->id)->error_code, ==, DHF_ERROR_PROTOCOL);
  /* Nothing reached the provider. */
  peer_sync (beta);
  g_assert_false (peer_has_frame (beta));
}

/* Where a connection is the client's own (unix, vsock), a second HELLO
 * breaks the protocol. */
static void
test_second_hello (Fixture *f, gconstpointer data)
{
  static const struct
  {
    const gchar *domain;
    DhfXdmTransport transport;
  } cases[] = { { "dom0", DHF_XDM_TRANSPORT_UNIX }, { "alpha", DHF_XDM_TRANSPORT_VSOCK } };

  for (guint i = 0; i < G_N_ELEMENTS (cases); i++)
    {
      Peer *p = peer_connect (f, cases[i].domain, cases[i].transport);
      g_autoptr (GPtrArray) frames = NULL;
      g_autoptr (Frame) welcome = NULL;
      Frame *error;

      peer_send (p, DHF_XDM_HELLO, 0, "{\"versions\":[1]}");
      welcome = peer_expect (p, DHF_XDM_WELCOME, 0);
      peer_send (p, DHF_XDM_HELLO, 0, "{\"versions\":[1]}");
      frames = peer_expect_eof (p);
      g_assert_cmpuint (frames->len, ==, 1);
      error = g_ptr_array_index (frames, 0);
      g_assert_cmpstr (error->msg.code, ==, "protocol");
      g_assert_nonnull (strstr (error->msg.message, "second HELLO"));
      g_assert_cmpint (fixture_closed (f, p->id)->error_code, ==, DHF_ERROR_PROTOCOL);
      g_assert_true (fixture_closed (f, p->id)->established);
    }
}

/* A channel outlives the guest's program: the next one's HELLO arrives on
 * the same connection and starts a new session there, as if the
 * connection had closed and opened again. */
static void
test_hello_resets_channel (Fixture *f, gconstpointer data)
{
  Peer *alpha = peer_join (f, "alpha");
  Peer *beta = peer_join (f, "beta");
  Peer *dom0 = peer_join (f, "dom0");
  g_autoptr (Frame) call = NULL;
  g_autoptr (Frame) welcome = NULL;
  g_autoptr (Frame) frame = NULL;
  g_autofree gchar *message = NULL;
  g_autoptr (GVariant) conns = NULL;
  g_autoptr (GVariant) entry = NULL;
  guint32 call_id, open_id, stream_b, beta_open;
  const gchar *const *services = NULL;
  guint64 queued = G_MAXUINT64;

  /* beta provides, subscribes, has a call and a stream of alpha's ... */
  register_service (alpha, "org.example.Stream1");
  register_service (beta, "org.example.Echo1");
  register_service (beta, "org.example.Stream1");
  subscribe (beta, "org.example.Topic1");
  call_id = peer_call (alpha, "org.example.Echo1", "beta", NULL);
  call = expect_call (beta, "org.example.Echo1", "alpha");
  open_id = peer_next_id (alpha);
  peer_send (alpha, DHF_XDM_STREAM_OPEN, open_id,
             "{\"service\":\"org.example.Stream1\",\"target\":\"beta\",\"window\":10}");
  frame = peer_expect (beta, DHF_XDM_STREAM_OPEN, -1);
  stream_b = frame->header.id;
  g_clear_pointer (&frame, frame_free);
  peer_send (beta, DHF_XDM_REPLY, stream_b, "{\"window\":10}");
  frame_free (peer_expect (alpha, DHF_XDM_REPLY, open_id));
  /* ... and a request of its own that alpha has not answered yet. */
  peer_send (beta, DHF_XDM_STREAM_OPEN, peer_next_id (beta),
             "{\"service\":\"org.example.Stream1\",\"target\":\"alpha\",\"window\":10}");
  frame = peer_expect (alpha, DHF_XDM_STREAM_OPEN, -1);
  beta_open = frame->header.id;
  g_clear_pointer (&frame, frame_free);

  /* beta's program restarts: a new HELLO on the same connection. */
  peer_send (beta, DHF_XDM_HELLO, 0, "{\"versions\":[1],\"client\":\"second\"}");
  welcome = peer_expect (beta, DHF_XDM_WELCOME, 0);
  g_assert_cmpstr (welcome->msg.domain, ==, "beta");
  /* Nothing of the old session is sent to the new one. */
  peer_sync (beta);
  g_assert_false (peer_has_frame (beta));
  g_assert_null (fixture_closed (f, beta->id));
  g_assert_cmpuint (dhf_xdm_router_get_n_connections (f->router), ==, 3);

  /* alpha learns that beta's request is cancelled, that its call and
   * its stream are gone. */
  frame = peer_expect (alpha, DHF_XDM_CANCEL, beta_open);
  g_clear_pointer (&frame, frame_free);
  message = peer_expect_error (alpha, call_id, DHF_ERROR_UNAVAILABLE);
  g_assert_nonnull (strstr (message, "provider beta went away"));
  frame = peer_expect (alpha, DHF_XDM_STREAM_CLOSE, open_id);
  g_assert_cmpstr (frame->msg.code, ==, "unavailable");
  g_clear_pointer (&frame, frame_free);
  g_clear_pointer (&message, g_free);

  /* Its registrations and subscriptions went. */
  call_id = peer_call (alpha, "org.example.Echo1", "beta", NULL);
  message = peer_expect_error (alpha, call_id, DHF_ERROR_NOT_FOUND);
  g_clear_pointer (&message, g_free);
  peer_send (dom0, DHF_XDM_PUBLISH, 5, "{\"topic\":\"org.example.Topic1\"}");
  frame = peer_expect (dom0, DHF_XDM_REPLY, 5);
  g_assert_cmpint (json_int_member (frame->msg.body, "delivered"), ==, 0);
  g_clear_pointer (&frame, frame_free);
  conns = dhf_xdm_router_list_connections (f->router);
  entry = variant_find (conns, "domain", "beta");
  g_assert_true (g_variant_lookup (entry, "services", "^a&s", &services));
  g_assert_cmpuint (g_strv_length ((gchar **) services), ==, 0);
  g_free ((gpointer) services);
  g_assert_true (g_variant_lookup (entry, "queued-bytes", "t", &queued));
  g_assert_cmpuint (queued, ==, 0);

  /* The new session works, and a late answer of the old one is dropped. */
  answer (beta, call->header.id, "\"late\"");
  register_service (beta, "org.example.Echo1");
  call_id = peer_call (alpha, "org.example.Echo1", "beta", NULL);
  g_clear_pointer (&call, frame_free);
  call = expect_call (beta, "org.example.Echo1", "alpha");
  answer (beta, call->header.id, "\"fresh\"");
  frame = peer_expect (alpha, DHF_XDM_REPLY, call_id);
  g_assert_cmpstr (json_object_get_string (frame->msg.value), ==, "fresh");
  peer_sync (alpha);
  g_assert_false (peer_has_frame (alpha));
}

/* What was still queued for the old session is not sent to the new one
 * (but a frame begun is finished). */
static void
test_hello_reset_drops_queue (Fixture *f, gconstpointer data)
{
  Peer *beta = peer_join (f, "beta");
  Peer *dom0 = peer_join (f, "dom0");
  g_autoptr (GString) event = g_string_new ("{\"topic\":\"org.example.Topic1\",\"data\":\"");
  g_autoptr (GVariant) conns = NULL;
  g_autoptr (GVariant) entry = NULL;
  guint64 queued = 0;
  guint n_events = 0;
  gboolean welcomed = FALSE;

  subscribe (beta, "org.example.Topic1");
  for (guint i = 0; i < 20000; i++)
    g_string_append_c (event, 'e');
  g_string_append (event, "\"}");
  beta->slow = TRUE;
  for (guint i = 0; i < 100; i++)
    peer_send (dom0, DHF_XDM_PUBLISH, 0, event->str);
  peer_sync (dom0);
  conns = dhf_xdm_router_list_connections (f->router);
  entry = variant_find (conns, "domain", "beta");
  g_assert_true (g_variant_lookup (entry, "queued-bytes", "t", &queued));
  /* More than the socket took is waiting in dhfd. */
  g_assert_cmpuint (queued, >, 20000);
  g_clear_pointer (&entry, g_variant_unref);
  g_clear_pointer (&conns, g_variant_unref);

  peer_send (beta, DHF_XDM_HELLO, 0, "{\"versions\":[1]}");
  fixture_flush (f);
  conns = dhf_xdm_router_list_connections (f->router);
  entry = variant_find (conns, "domain", "beta");
  g_assert_true (g_variant_lookup (entry, "queued-bytes", "t", &queued));
  /* At most the rest of an event begun, and the WELCOME. */
  g_assert_cmpuint (queued, <, 20000 + 1024);

  beta->slow = FALSE;
  while (!welcomed)
    {
      g_autoptr (Frame) frame = peer_recv (beta);

      if (frame->header.type == DHF_XDM_WELCOME)
        welcomed = TRUE;
      else
        {
          g_assert_cmpint (frame->header.type, ==, DHF_XDM_EVENT);
          n_events++;
        }
    }
  g_assert_cmpuint (n_events, <, 100);
  peer_sync (beta);
  g_assert_false (peer_has_frame (beta));
}

static void
short_hello (DhfXdmLimits *limits)
{
  limits->hello_timeout_ms = 50;
}

/* A vsock (or unix) peer must say HELLO in time; a channel, which dhfd
 * opened itself, possibly before the guest's agent runs, waits. The
 * channel's deadline would have come first, so the vsock peer's expiry
 * proves it did not. */
static void
test_hello_timeout (Fixture *f, gconstpointer data)
{
  Peer *channel = peer_connect (f, "beta", DHF_XDM_TRANSPORT_CHANNEL);
  Peer *quiet = peer_connect (f, "alpha", DHF_XDM_TRANSPORT_VSOCK);
  g_autoptr (GPtrArray) frames = NULL;
  g_autoptr (Frame) welcome = NULL;
  const ClosedRecord *closed;

  frames = peer_expect_eof (quiet);
  g_assert_cmpuint (frames->len, ==, 1);
  g_assert_cmpstr (((Frame *) g_ptr_array_index (frames, 0))->msg.code, ==, "timeout");
  closed = fixture_closed (f, quiet->id);
  g_assert_nonnull (closed);
  g_assert_cmpint (closed->error_code, ==, DHF_ERROR_TIMEOUT);

  g_assert_null (fixture_closed (f, channel->id));
  peer_send (channel, DHF_XDM_HELLO, 1, "{\"versions\":[1]}");
  welcome = peer_expect (channel, DHF_XDM_WELCOME, 0);
  g_assert_cmpstr (welcome->msg.domain, ==, "beta");
}

static void
test_ping (Fixture *f, gconstpointer data)
{
  Peer *p = peer_join (f, "alpha");
  g_autoptr (Frame) pong = NULL;

  peer_send (p, DHF_XDM_PING, 77, NULL);
  pong = peer_expect (p, DHF_XDM_PONG, 77);
  /* A PONG from a peer is taken silently. */
  peer_send (p, DHF_XDM_PONG, 5, NULL);
  peer_sync (p);
  g_assert_false (peer_has_frame (p));
}

/* --- calls ----------------------------------------------------------------- */

static void
test_call_allow (Fixture *f, gconstpointer data)
{
  Peer *alpha = peer_join (f, "alpha");
  Peer *beta = peer_join (f, "beta");
  g_autoptr (Frame) call = NULL;
  g_autoptr (Frame) reply = NULL;
  g_autoptr (GVariant) services = NULL;
  g_autoptr (GVariant) entry = NULL;
  json_object *result = NULL;
  guint64 calls = 0;
  guint32 id;

  register_service (beta, "org.example.Echo1");
  id = peer_next_id (alpha);
  peer_send (alpha, DHF_XDM_CALL, id,
             "{\"service\":\"org.example.Echo1\",\"target\":\"beta\",\"source\":\"alpha\","
             "\"timeout_ms\":5000,\"params\":{\"text\":\"hi\",\"n\":[1,2]}}");
  call = expect_call (beta, "org.example.Echo1", "alpha");
  g_assert_cmpuint (call->msg.timeout_ms, <=, 5000);
  g_assert_cmpuint (call->msg.timeout_ms, >, 0);
  g_assert_cmpstr (json_string_member (call->msg.value, "text"), ==, "hi");
  answer (beta, call->header.id, "{\"echo\":\"hi\"}");
  reply = peer_expect (alpha, DHF_XDM_REPLY, id);
  g_assert_true (json_object_object_get_ex (reply->msg.body, "result", &result));
  g_assert_cmpstr (json_string_member (result, "echo"), ==, "hi");

  services = dhf_xdm_router_list_services (f->router);
  entry = variant_find (services, "service", "org.example.Echo1");
  g_assert_nonnull (entry);
  g_assert_true (g_variant_lookup (entry, "calls", "t", &calls));
  g_assert_cmpuint (calls, ==, 1);
}

static void
test_call_arg (Fixture *f, gconstpointer data)
{
  Peer *alpha = peer_join (f, "alpha");
  Peer *beta = peer_join (f, "beta");
  g_autoptr (Frame) call = NULL;
  g_autoptr (Frame) reply = NULL;
  guint32 id = peer_next_id (alpha);

  register_service (beta, "org.example.Echo1");
  peer_send (alpha, DHF_XDM_CALL, id,
             "{\"service\":\"org.example.Echo1\",\"arg\":\"docs\",\"target\":\"beta\"}");
  call = expect_call (beta, "org.example.Echo1", "alpha");
  g_assert_cmpstr (call->msg.arg, ==, "docs");
  /* No result is a null result. */
  peer_send (beta, DHF_XDM_REPLY, call->header.id, NULL);
  reply = peer_expect (alpha, DHF_XDM_REPLY, id);
  g_assert_null (reply->msg.value);
}

static void
test_call_deny (Fixture *f, gconstpointer data)
{
  Peer *alpha = peer_join (f, "alpha");
  Peer *beta = peer_join (f, "beta");
  Peer *dom0 = peer_join (f, "dom0");
  g_autofree gchar *message = NULL;
  g_autoptr (GVariant) list = NULL;
  g_autoptr (GVariant) entry = NULL;
  guint64 denied = 0;
  guint32 id;

  register_service (beta, "org.example.Deny1");
  /* A guest learns that the policy said no, not where it says so: the
   * rule that decided, the catch-all, and no rule at all (@any is not
   * dom0) read alike. */
  id = peer_call (alpha, "org.example.Deny1", "beta", NULL);
  message = peer_expect_error (alpha, id, DHF_ERROR_NOT_AUTHORIZED);
  g_assert_cmpstr (message, ==,
                   "alpha may not call org.example.Deny1 on beta (denied by the policy)");
  g_clear_pointer (&message, g_free);
  id = peer_call (alpha, "org.example.Deny1", "gamma", NULL);
  message = peer_expect_error (alpha, id, DHF_ERROR_NOT_AUTHORIZED);
  g_assert_cmpstr (message, ==,
                   "alpha may not call org.example.Deny1 on gamma (denied by the policy)");
  g_clear_pointer (&message, g_free);
  id = peer_call (alpha, "org.example.Deny1", "dom0", NULL);
  message = peer_expect_error (alpha, id, DHF_ERROR_NOT_AUTHORIZED);
  g_assert_cmpstr (message, ==,
                   "alpha may not call org.example.Deny1 on dom0 (denied by the policy)");
  g_clear_pointer (&message, g_free);
  peer_sync (beta);
  g_assert_false (peer_has_frame (beta));

  /* dom0's tools may see the rule, or that none allows it. */
  id = peer_call (dom0, "org.example.Deny1", "beta", NULL);
  message = peer_expect_error (dom0, id, DHF_ERROR_NOT_AUTHORIZED);
  g_assert_true (g_str_has_prefix (message, "dom0 may not call org.example.Deny1 on beta ("));
  g_assert_nonnull (strstr (message, "50-test.policy:27)"));
  g_clear_pointer (&message, g_free);
  id = peer_call (dom0, "org.example.Deny1", "gamma", NULL);
  message = peer_expect_error (dom0, id, DHF_ERROR_NOT_AUTHORIZED);
  g_assert_cmpstr (message, ==, "dom0 may not call org.example.Deny1 on gamma (no rule allows it)");

  list = dhf_xdm_router_list_connections (f->router);
  entry = variant_find (list, "domain", "alpha");
  g_assert_true (g_variant_lookup (entry, "denied", "t", &denied));
  g_assert_cmpuint (denied, ==, 3);
}

static void
test_call_ask (Fixture *f, gconstpointer data)
{
  Peer *alpha = peer_join (f, "alpha");
  Peer *beta = peer_join (f, "beta");
  g_autoptr (Frame) call = NULL;
  g_autoptr (Frame) reply = NULL;
  g_autofree gchar *message = NULL;
  Question *q;
  guint32 id;

  register_service (beta, "org.example.Ask1");

  /* No prompt agent: denied at once. */
  id = peer_call (alpha, "org.example.Ask1", "beta", NULL);
  message = peer_expect_error (alpha, id, DHF_ERROR_NOT_AUTHORIZED);
  g_assert_nonnull (strstr (message, "no prompt agent"));
  g_clear_pointer (&message, g_free);

  /* Yes. */
  fixture_set_ask_mode (f, ASK_YES);
  id = peer_call (alpha, "org.example.Ask1", "beta", "{}");
  call = expect_call (beta, "org.example.Ask1", "alpha");
  g_assert_cmpuint (f->questions->len, ==, 1);
  q = g_ptr_array_index (f->questions, 0);
  g_assert_cmpstr (q->service, ==, "org.example.Ask1");
  g_assert_cmpstr (q->source, ==, "alpha");
  g_assert_cmpstr (q->target, ==, "beta");
  g_assert_nonnull (strstr (q->rule, "50-test.policy:13"));
  g_assert_false (q->stream);
  answer (beta, call->header.id, "1");
  reply = peer_expect (alpha, DHF_XDM_REPLY, id);

  /* No. */
  fixture_set_ask_mode (f, ASK_NO);
  id = peer_call (alpha, "org.example.Ask1", "beta", NULL);
  message = peer_expect_error (alpha, id, DHF_ERROR_NOT_AUTHORIZED);
  g_assert_nonnull (strstr (message, "did not allow"));
  g_clear_pointer (&message, g_free);

  /* Never: the ask times out (AskTimeout), the question is withdrawn. */
  fixture_set_ask_mode (f, ASK_NEVER);
  id = peer_call (alpha, "org.example.Ask1", "beta", NULL);
  message = peer_expect_error (alpha, id, DHF_ERROR_NOT_AUTHORIZED);
  g_assert_nonnull (strstr (message, "did not answer"));
  q = g_ptr_array_index (f->questions, f->questions->len - 1);
  g_assert_true (g_cancellable_is_cancelled (q->cancellable));

  /* The provider saw only the allowed call. */
  peer_sync (beta);
  g_assert_false (peer_has_frame (beta));
}

static gboolean
second_question_withdrawn (gpointer data)
{
  Fixture *f = data;

  return g_cancellable_is_cancelled (
      ((Question *) g_ptr_array_index (f->questions, 1))->cancellable);
}

static void
test_ask_limits (Fixture *f, gconstpointer data)
{
  Peer *alpha = peer_join (f, "alpha");
  Peer *beta = peer_join (f, "beta");
  g_autofree gchar *message = NULL;
  guint32 a, b, c;

  register_service (beta, "org.example.Ask1");
  fixture_set_ask_mode (f, ASK_NEVER);
  a = peer_call (alpha, "org.example.Ask1", "beta", NULL);
  b = peer_call (alpha, "org.example.Ask1", "beta", NULL);
  /* MaxPendingQuestions is 2 here. */
  c = peer_call (alpha, "org.example.Ask1", "beta", NULL);
  message = peer_expect_error (alpha, c, DHF_ERROR_NOT_AUTHORIZED);
  g_assert_nonnull (strstr (message, "questions for the user pending"));
  g_assert_cmpuint (f->questions->len, ==, 2);

  /* The caller cancels one: its question is withdrawn. */
  peer_send (alpha, DHF_XDM_CANCEL, a, NULL);
  g_free (peer_expect_error (alpha, a, DHF_ERROR_CANCELLED));
  g_assert_true (
      g_cancellable_is_cancelled (((Question *) g_ptr_array_index (f->questions, 0))->cancellable));
  /* The caller goes away: the other one is withdrawn too. */
  (void) b;
  peer_close (alpha);
  fixture_wait (f, second_question_withdrawn, f);
  peer_sync (beta);
  g_assert_false (peer_has_frame (beta));
}

static void
test_ask_redirect (Fixture *f, gconstpointer data)
{
  Peer *alpha = peer_join (f, "alpha");
  Peer *beta = peer_join (f, "beta");
  Peer *gamma = peer_join (f, "gamma");
  g_autoptr (Frame) call = NULL;
  g_autoptr (Frame) reply = NULL;
  Question *q;
  guint32 id;

  register_service (beta, "org.example.AskR1");
  register_service (gamma, "org.example.AskR1");
  fixture_set_ask_mode (f, ASK_YES);
  id = peer_call (alpha, "org.example.AskR1", "beta", NULL);
  call = expect_call (gamma, "org.example.AskR1", "alpha");
  q = g_ptr_array_index (f->questions, 0);
  /* The user is asked about where the call will go. */
  g_assert_cmpstr (q->target, ==, "gamma");
  answer (gamma, call->header.id, "\"from gamma\"");
  reply = peer_expect (alpha, DHF_XDM_REPLY, id);
  g_assert_cmpstr (json_object_get_string (reply->msg.value), ==, "from gamma");
  peer_sync (beta);
  g_assert_false (peer_has_frame (beta));
}

static void
test_redirect (Fixture *f, gconstpointer data)
{
  Peer *alpha = peer_join (f, "alpha");
  Peer *beta = peer_join (f, "beta");
  Peer *gamma = peer_join (f, "gamma");
  g_autoptr (Frame) call = NULL;
  g_autoptr (Frame) reply = NULL;
  g_autofree gchar *message = NULL;
  guint32 id;

  register_service (beta, "org.example.Redir1");
  register_service (gamma, "org.example.Redir1");
  id = peer_call (alpha, "org.example.Redir1", "beta", NULL);
  /* target=gamma: no second evaluation (alpha -> gamma has no rule). */
  call = expect_call (gamma, "org.example.Redir1", "alpha");
  answer (gamma, call->header.id, "2");
  reply = peer_expect (alpha, DHF_XDM_REPLY, id);
  g_assert_cmpint (json_object_get_int (reply->msg.value), ==, 2);
  peer_sync (beta);
  g_assert_false (peer_has_frame (beta));

  /* The redirect target does not provide it: not-found. */
  {
    guint32 unreg = peer_next_id (gamma);
    g_autoptr (Frame) done = NULL;

    peer_send (gamma, DHF_XDM_UNREGISTER, unreg, "{\"service\":\"org.example.Redir1\"}");
    done = peer_expect (gamma, DHF_XDM_REPLY, unreg);
  }
  id = peer_call (alpha, "org.example.Redir1", "beta", NULL);
  message = peer_expect_error (alpha, id, DHF_ERROR_NOT_FOUND);
  g_assert_nonnull (strstr (message, "gamma does not provide org.example.Redir1"));
}

static void
test_quota (Fixture *f, gconstpointer data)
{
  Peer *alpha = peer_join (f, "alpha");
  Peer *beta = peer_join (f, "beta");
  g_autoptr (Frame) first = NULL;
  g_autoptr (Frame) second = NULL;
  g_autoptr (Frame) fourth = NULL;
  g_autoptr (Frame) reply = NULL;
  g_autofree gchar *message = NULL;
  guint32 a, b, c, d, e;

  register_service (beta, "org.example.Quota1");
  register_service (beta, "org.example.Echo1");
  a = peer_call (alpha, "org.example.Quota1", "beta", NULL);
  b = peer_call (alpha, "org.example.Quota1", "beta", NULL);
  c = peer_call (alpha, "org.example.Quota1", "beta", NULL);
  message = peer_expect_error (alpha, c, DHF_ERROR_LIMIT_EXCEEDED);
  g_assert_nonnull (strstr (message, "quota"));
  /* Other rules are not counted against it. */
  e = peer_call (alpha, "org.example.Echo1", "beta", NULL);
  first = expect_call (beta, "org.example.Quota1", "alpha");
  second = expect_call (beta, "org.example.Quota1", "alpha");
  g_clear_pointer (&first, frame_free);
  first = expect_call (beta, "org.example.Echo1", "alpha");
  answer (beta, first->header.id, "null");
  reply = peer_expect (alpha, DHF_XDM_REPLY, e);
  g_clear_pointer (&reply, frame_free);

  /* One answered: room for another. */
  answer (beta, second->header.id, "null");
  reply = peer_expect (alpha, DHF_XDM_REPLY, b);
  d = peer_call (alpha, "org.example.Quota1", "beta", NULL);
  fourth = expect_call (beta, "org.example.Quota1", "alpha");
  (void) a;
  (void) d;
}

static void
test_resolution (Fixture *f, gconstpointer data)
{
  Peer *alpha = peer_join (f, "alpha");
  Peer *beta = peer_join (f, "beta");
  Peer *gamma = peer_join (f, "gamma");
  g_autofree gchar *message = NULL;
  g_autoptr (Frame) call = NULL;
  g_autoptr (Frame) reply = NULL;
  guint32 id;

  /* Nobody provides it. */
  id = peer_call (alpha, "org.example.Multi1", NULL, NULL);
  message = peer_expect_error (alpha, id, DHF_ERROR_NOT_FOUND);
  g_clear_pointer (&message, g_free);

  /* One provider. */
  register_service (beta, "org.example.Multi1");
  id = peer_call (alpha, "org.example.Multi1", NULL, NULL);
  call = expect_call (beta, "org.example.Multi1", "alpha");
  answer (beta, call->header.id, "\"b\"");
  reply = peer_expect (alpha, DHF_XDM_REPLY, id);
  g_clear_pointer (&call, frame_free);
  g_clear_pointer (&reply, frame_free);

  /* Two that alpha may call: it must choose. */
  register_service (gamma, "org.example.Multi1");
  id = peer_call (alpha, "org.example.Multi1", NULL, NULL);
  message = peer_expect_error (alpha, id, DHF_ERROR_INVALID_ARGS);
  g_assert_cmpstr (message, ==, "org.example.Multi1 is provided by beta, gamma: name a target");
  g_clear_pointer (&message, g_free);

  /* Two providers, one denied: the other. */
  register_service (beta, "org.example.One1");
  register_service (gamma, "org.example.One1");
  id = peer_call (alpha, "org.example.One1", NULL, NULL);
  call = expect_call (beta, "org.example.One1", "alpha");
  answer (beta, call->header.id, "null");
  reply = peer_expect (alpha, DHF_XDM_REPLY, id);

  /* Providers, all denied. */
  register_service (beta, "org.example.Deny1");
  id = peer_call (alpha, "org.example.Deny1", NULL, NULL);
  message = peer_expect_error (alpha, id, DHF_ERROR_NOT_AUTHORIZED);
  g_clear_pointer (&message, g_free);
  register_service (gamma, "org.example.Deny1");
  id = peer_call (alpha, "org.example.Deny1", NULL, NULL);
  message = peer_expect_error (alpha, id, DHF_ERROR_NOT_AUTHORIZED);
  g_assert_nonnull (strstr (message, "any domain that provides it"));

  peer_sync (gamma);
  g_assert_false (peer_has_frame (gamma));
}

static void
test_missing_target (Fixture *f, gconstpointer data)
{
  Peer *alpha = peer_join (f, "alpha");
  g_autofree gchar *message = NULL;
  guint32 id;

  /* Known to dhfd, not connected. */
  id = peer_call (alpha, "org.example.Echo1", "sleepy", NULL);
  message = peer_expect_error (alpha, id, DHF_ERROR_UNAVAILABLE);
  g_clear_pointer (&message, g_free);
  /* Unknown. */
  id = peer_call (alpha, "org.example.Echo1", "nobody", NULL);
  message = peer_expect_error (alpha, id, DHF_ERROR_NOT_FOUND);
  g_clear_pointer (&message, g_free);
  /* Connected without the service. */
  peer_join (f, "beta");
  id = peer_call (alpha, "org.example.Echo1", "beta", NULL);
  message = peer_expect_error (alpha, id, DHF_ERROR_NOT_FOUND);
}

static void
test_spoofed_source (Fixture *f, gconstpointer data)
{
  Peer *alpha = peer_join (f, "alpha");
  Peer *beta = peer_join (f, "beta");
  g_autofree gchar *message = NULL;
  guint32 id = peer_next_id (alpha);

  register_service (beta, "org.example.Echo1");
  subscribe (beta, "org.example.Topic1");
  peer_send (alpha, DHF_XDM_CALL, id,
             "{\"service\":\"org.example.Echo1\",\"target\":\"beta\",\"source\":\"gamma\"}");
  message = peer_expect_error (alpha, id, DHF_ERROR_NOT_AUTHORIZED);
  g_assert_cmpstr (message, ==, "source gamma is not this connection's domain alpha");
  g_clear_pointer (&message, g_free);
  id = peer_next_id (alpha);
  peer_send (alpha, DHF_XDM_PUBLISH, id, "{\"topic\":\"org.example.Topic1\",\"source\":\"dom0\"}");
  message = peer_expect_error (alpha, id, DHF_ERROR_NOT_AUTHORIZED);
  g_clear_pointer (&message, g_free);
  id = peer_next_id (alpha);
  peer_send (alpha, DHF_XDM_STREAM_OPEN, id,
             "{\"service\":\"org.example.Echo1\",\"target\":\"beta\",\"source\":\"beta\","
             "\"window\":10}");
  message = peer_expect_error (alpha, id, DHF_ERROR_NOT_AUTHORIZED);
  /* The connection goes on; nothing was forwarded. */
  peer_sync (alpha);
  peer_sync (beta);
  g_assert_false (peer_has_frame (beta));
}

static void
test_registration (Fixture *f, gconstpointer data)
{
  Peer *beta = peer_join (f, "beta");
  Peer *beta2 = peer_join (f, "beta");
  Peer *gamma = peer_join (f, "gamma");
  g_autofree gchar *message = NULL;
  g_autoptr (GVariant) list = NULL;
  guint32 id;

  id = peer_next_id (beta);
  peer_send (beta, DHF_XDM_REGISTER, id, "{\"service\":\"org.dhf.framework.Whoami\"}");
  message = peer_expect_error (beta, id, DHF_ERROR_NOT_AUTHORIZED);
  g_assert_nonnull (strstr (message, "reserved"));
  g_clear_pointer (&message, g_free);

  register_service (beta, "org.example.Echo1");
  /* Once per domain, whichever connection asks. */
  id = peer_next_id (beta2);
  peer_send (beta2, DHF_XDM_REGISTER, id, "{\"service\":\"org.example.Echo1\"}");
  message = peer_expect_error (beta2, id, DHF_ERROR_EXISTS);
  g_clear_pointer (&message, g_free);
  id = peer_next_id (beta);
  peer_send (beta, DHF_XDM_REGISTER, id, "{\"service\":\"org.example.Echo1\"}");
  message = peer_expect_error (beta, id, DHF_ERROR_EXISTS);
  g_clear_pointer (&message, g_free);
  /* Another domain may offer the same name. */
  register_service (gamma, "org.example.Echo1");

  /* A malformed name is a body error: the connection goes on. */
  id = peer_next_id (beta);
  peer_send (beta, DHF_XDM_REGISTER, id, "{\"service\":\"not a name\"}");
  message = peer_expect_error (beta, id, DHF_ERROR_INVALID_ARGS);
  g_clear_pointer (&message, g_free);

  /* MaxRegistrations (4 here) per domain, across its connections. */
  register_service (beta, "org.example.Two1");
  register_service (beta2, "org.example.Three1");
  register_service (beta2, "org.example.Four1");
  id = peer_next_id (beta2);
  peer_send (beta2, DHF_XDM_REGISTER, id, "{\"service\":\"org.example.Five1\"}");
  message = peer_expect_error (beta2, id, DHF_ERROR_LIMIT_EXCEEDED);
  g_clear_pointer (&message, g_free);

  list = dhf_xdm_router_list_services (f->router);
  g_assert_cmpuint (g_variant_n_children (list), ==, 5);
  g_clear_pointer (&list, g_variant_unref);

  /* Unregistering makes room; an unknown one is not-found. */
  id = peer_next_id (beta2);
  peer_send (beta2, DHF_XDM_UNREGISTER, id, "{\"service\":\"org.example.Echo1\"}");
  message = peer_expect_error (beta2, id, DHF_ERROR_NOT_FOUND);
  g_clear_pointer (&message, g_free);
  id = peer_next_id (beta2);
  peer_send (beta2, DHF_XDM_UNREGISTER, id, "{\"service\":\"org.example.Four1\"}");
  frame_free (peer_expect (beta2, DHF_XDM_REPLY, id));
  register_service (beta2, "org.example.Five1");

  /* A connection's registrations go with it. */
  peer_close (beta2);
  peer_sync (beta);
  peer_sync (gamma);
  list = dhf_xdm_router_list_services (f->router);
  g_assert_cmpuint (g_variant_n_children (list), ==, 3);
}

static void
test_provider_gone (Fixture *f, gconstpointer data)
{
  Peer *alpha = peer_join (f, "alpha");
  Peer *beta = peer_join (f, "beta");
  g_autoptr (Frame) call = NULL;
  g_autofree gchar *message = NULL;
  guint32 id;

  register_service (beta, "org.example.Echo1");
  id = peer_call (alpha, "org.example.Echo1", "beta", NULL);
  call = expect_call (beta, "org.example.Echo1", "alpha");
  peer_close (beta);
  message = peer_expect_error (alpha, id, DHF_ERROR_UNAVAILABLE);
  g_assert_cmpstr (message, ==, "provider beta went away");
  g_assert_nonnull (fixture_closed (f, beta->id));
  g_assert_false (fixture_closed (f, beta->id)->has_error);
}

static void
test_caller_gone (Fixture *f, gconstpointer data)
{
  Peer *alpha = peer_join (f, "alpha");
  Peer *beta = peer_join (f, "beta");
  g_autoptr (Frame) call = NULL;
  g_autoptr (Frame) cancel = NULL;

  register_service (beta, "org.example.Echo1");
  peer_call (alpha, "org.example.Echo1", "beta", NULL);
  call = expect_call (beta, "org.example.Echo1", "alpha");
  peer_close (alpha);
  cancel = peer_expect (beta, DHF_XDM_CANCEL, call->header.id);
  /* The answer to nobody is dropped. */
  answer (beta, call->header.id, "1");
  peer_sync (beta);
  g_assert_false (peer_has_frame (beta));
}

static void
test_deadline (Fixture *f, gconstpointer data)
{
  Peer *alpha = peer_join (f, "alpha");
  Peer *beta = peer_join (f, "beta");
  g_autoptr (Frame) call = NULL;
  g_autoptr (Frame) cancel = NULL;
  g_autoptr (Frame) reply = NULL;
  g_autofree gchar *message = NULL;
  guint32 id = peer_next_id (alpha);
  guint32 id2;

  register_service (beta, "org.example.Echo1");
  peer_send (alpha, DHF_XDM_CALL, id,
             "{\"service\":\"org.example.Echo1\",\"target\":\"beta\",\"timeout_ms\":30}");
  call = expect_call (beta, "org.example.Echo1", "alpha");
  g_assert_cmpuint (call->msg.timeout_ms, <=, 30);
  message = peer_expect_error (alpha, id, DHF_ERROR_TIMEOUT);
  cancel = peer_expect (beta, DHF_XDM_CANCEL, call->header.id);
  /* The late reply is dropped: alpha's next call is answered first. */
  answer (beta, call->header.id, "\"late\"");
  id2 = peer_call (alpha, "org.example.Echo1", "beta", NULL);
  g_clear_pointer (&call, frame_free);
  call = expect_call (beta, "org.example.Echo1", "alpha");
  answer (beta, call->header.id, "\"fresh\"");
  reply = peer_expect (alpha, DHF_XDM_REPLY, id2);
  g_assert_cmpstr (json_object_get_string (reply->msg.value), ==, "fresh");
}

static void
test_cancel (Fixture *f, gconstpointer data)
{
  Peer *alpha = peer_join (f, "alpha");
  Peer *beta = peer_join (f, "beta");
  g_autoptr (Frame) call = NULL;
  g_autoptr (Frame) cancel = NULL;
  g_autofree gchar *message = NULL;
  guint32 id;

  register_service (beta, "org.example.Echo1");
  id = peer_call (alpha, "org.example.Echo1", "beta", NULL);
  call = expect_call (beta, "org.example.Echo1", "alpha");
  peer_send (alpha, DHF_XDM_CANCEL, id, NULL);
  message = peer_expect_error (alpha, id, DHF_ERROR_CANCELLED);
  cancel = peer_expect (beta, DHF_XDM_CANCEL, call->header.id);
  /* The provider's error after the cancel is dropped. */
  peer_send (beta, DHF_XDM_ERROR, call->header.id,
             "{\"code\":\"cancelled\",\"message\":\"cancelled\"}");
  peer_sync (alpha);
  g_assert_false (peer_has_frame (alpha));
  /* A CANCEL for nothing is ignored. */
  peer_send (alpha, DHF_XDM_CANCEL, 999, NULL);
  peer_sync (alpha);
  g_assert_false (peer_has_frame (alpha));
}

static void
test_provider_error (Fixture *f, gconstpointer data)
{
  Peer *alpha = peer_join (f, "alpha");
  Peer *beta = peer_join (f, "beta");
  g_autoptr (Frame) call = NULL;
  g_autofree gchar *message = NULL;
  guint32 id;

  register_service (beta, "org.example.Echo1");
  id = peer_call (alpha, "org.example.Echo1", "beta", NULL);
  call = expect_call (beta, "org.example.Echo1", "alpha");
  peer_send (beta, DHF_XDM_ERROR, call->header.id,
             "{\"code\":\"invalid-args\",\"message\":\"no such file\"}");
  message = peer_expect_error (alpha, id, DHF_ERROR_INVALID_ARGS);
  g_assert_cmpstr (message, ==, "no such file");
  g_clear_pointer (&message, g_free);
  g_clear_pointer (&call, frame_free);

  /* An answer that does not parse fails the call for the caller and is
   * explained to the provider. */
  id = peer_call (alpha, "org.example.Echo1", "beta", NULL);
  call = expect_call (beta, "org.example.Echo1", "alpha");
  peer_send (beta, DHF_XDM_REPLY, call->header.id, "{\"result\": nope}");
  message = peer_expect_error (beta, call->header.id, DHF_ERROR_INVALID_ARGS);
  g_clear_pointer (&message, g_free);
  message = peer_expect_error (alpha, id, DHF_ERROR_PROTOCOL);
  g_assert_nonnull (strstr (message, "beta sent an invalid answer"));
}

static void
test_duplicate_id (Fixture *f, gconstpointer data)
{
  Peer *alpha = peer_join (f, "alpha");
  Peer *beta = peer_join (f, "beta");
  g_autoptr (Frame) call = NULL;
  g_autoptr (Frame) reply = NULL;
  g_autofree gchar *message = NULL;

  register_service (beta, "org.example.Echo1");
  peer_send (alpha, DHF_XDM_CALL, 5, "{\"service\":\"org.example.Echo1\",\"target\":\"beta\"}");
  peer_send (alpha, DHF_XDM_CALL, 5, "{\"service\":\"org.example.Echo1\",\"target\":\"beta\"}");
  message = peer_expect_error (alpha, 5, DHF_ERROR_INVALID_ARGS);
  g_assert_nonnull (strstr (message, "already in use"));
  call = expect_call (beta, "org.example.Echo1", "alpha");
  answer (beta, call->header.id, "5");
  reply = peer_expect (alpha, DHF_XDM_REPLY, 5);
  peer_sync (beta);
  g_assert_false (peer_has_frame (beta));
}

static void
test_dom0_client (Fixture *f, gconstpointer data)
{
  Peer *dom0 = peer_join (f, "dom0");
  Peer *beta = peer_join (f, "beta");
  g_autoptr (Frame) call = NULL;
  g_autoptr (Frame) reply = NULL;
  g_autoptr (GVariant) list = NULL;
  g_autoptr (GVariant) entry = NULL;
  guint32 uid = 0, pid = 0;
  guint32 id;

  register_service (beta, "org.example.Echo1");
  id = peer_call (dom0, "org.example.Echo1", "beta", "[1]");
  call = expect_call (beta, "org.example.Echo1", "dom0");
  answer (beta, call->header.id, "[2]");
  reply = peer_expect (dom0, DHF_XDM_REPLY, id);

  list = dhf_xdm_router_list_connections (f->router);
  entry = variant_find (list, "domain", "dom0");
  g_assert_true (g_variant_lookup (entry, "uid", "u", &uid));
  g_assert_true (g_variant_lookup (entry, "pid", "u", &pid));
  g_assert_cmpuint (uid, ==, 1000);
  g_assert_cmpuint (pid, ==, 4242);
}

static void
few_clients (DhfXdmLimits *limits)
{
  limits->max_dom0_clients = 2;
}

static void
test_max_dom0_clients (Fixture *f, gconstpointer data)
{
  g_autoptr (GError) error = NULL;
  DhfXdmPeer identity = { DHF_XDM_TRANSPORT_UNIX, "dom0", NULL, 0, 1 };
  gint fds[2];

  peer_join (f, "dom0");
  peer_join (f, "dom0");
  /* Domains are not counted. */
  peer_join (f, "alpha");
  g_assert_no_errno (socketpair (AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, fds));
  g_assert_cmpuint (
      dhf_xdm_router_add_connection (f->router, fds[1], &identity, NULL, NULL, &error), ==, 0);
  g_assert_error (error, DHF_ERROR, DHF_ERROR_LIMIT_EXCEEDED);
  /* fds[1] was closed by the router. */
  {
    gchar byte;

    g_assert_cmpint (read (fds[0], &byte, 1), ==, 0);
  }
  close (fds[0]);
}

/* --- framework services ------------------------------------------------------------ */

static void
test_whoami (Fixture *f, gconstpointer data)
{
  Peer *alpha = peer_join (f, "alpha");
  Peer *dom0 = peer_join (f, "dom0");
  Peer *gamma = peer_join (f, "gamma");
  g_autoptr (Frame) reply = NULL;
  json_object *tags = NULL;
  guint32 id;

  id = peer_call (alpha, "org.dhf.framework.Whoami", "dom0", NULL);
  reply = peer_expect (alpha, DHF_XDM_REPLY, id);
  g_assert_cmpstr (json_string_member (reply->msg.value, "domain"), ==, "alpha");
  g_assert_nonnull (json_string_member (reply->msg.value, "uuid"));
  g_assert_cmpstr (json_string_member (reply->msg.value, "transport"), ==, "channel");
  g_assert_cmpstr (json_string_member (reply->msg.value, "role"), ==, "environment");
  g_assert_cmpstr (json_string_member (reply->msg.value, "vendor"), ==, "acme");
  g_assert_cmpint (json_int_member (reply->msg.value, "uid"), ==, -1);
  g_assert_true (json_object_object_get_ex (reply->msg.value, "tags", &tags));
  g_assert_cmpuint (json_object_array_length (tags), ==, 2);
  g_clear_pointer (&reply, frame_free);

  /* Without a target it is dom0's too. */
  id = peer_call (dom0, "org.dhf.framework.Whoami", NULL, NULL);
  reply = peer_expect (dom0, DHF_XDM_REPLY, id);
  g_assert_cmpstr (json_string_member (reply->msg.value, "domain"), ==, "dom0");
  g_assert_null (json_string_member (reply->msg.value, "uuid"));
  g_assert_cmpstr (json_string_member (reply->msg.value, "transport"), ==, "unix");
  g_assert_cmpint (json_int_member (reply->msg.value, "uid"), ==, 1000);
  g_assert_null (json_string_member (reply->msg.value, "role"));
  g_clear_pointer (&reply, frame_free);

  /* Unknown to the lookup: a plain name. */
  id = peer_call (gamma, "org.dhf.framework.Whoami", "dom0", NULL);
  reply = peer_expect (gamma, DHF_XDM_REPLY, id);
  g_assert_cmpstr (json_string_member (reply->msg.value, "domain"), ==, "gamma");
  g_assert_false (json_object_object_get_ex (reply->msg.value, "tags", NULL));
  g_clear_pointer (&reply, frame_free);

  /* A framework name dhfd does not offer. */
  id = peer_call (alpha, "org.dhf.framework.Nothing", "dom0", NULL);
  g_free (peer_expect_error (alpha, id, DHF_ERROR_NOT_AUTHORIZED));
}

static json_object *
find_appliance (json_object *list, const gchar *name)
{
  for (gsize i = 0; i < json_object_array_length (list); i++)
    {
      json_object *entry = json_object_array_get_idx (list, i);

      if (g_strcmp0 (json_string_member (entry, "name"), name) == 0)
        return entry;
    }
  return NULL;
}

static void
test_list_appliances (Fixture *f, gconstpointer data)
{
  Peer *alpha = peer_join (f, "alpha");
  Peer *beta = peer_join (f, "beta");
  Peer *gamma = peer_join (f, "gamma");
  Peer *delta = peer_join (f, "delta");
  g_autoptr (Frame) reply = NULL;
  json_object *list = NULL, *entry, *services = NULL;
  guint32 id;

  register_service (beta, "org.example.Echo1");
  register_service (beta, "org.example.Deny1");
  register_service (beta, "org.example.Ask1");
  register_service (gamma, "org.example.Deny1");
  register_service (delta, "org.example.Hidden1");
  register_service (alpha, "org.example.Stream1");

  id = peer_call (alpha, "org.dhf.framework.ListAppliances", "dom0", NULL);
  reply = peer_expect (alpha, DHF_XDM_REPLY, id);
  g_assert_true (json_object_object_get_ex (reply->msg.value, "appliances", &list));
  /* alpha itself first, then beta; not gamma (denied), not delta (no rule). */
  g_assert_cmpuint (json_object_array_length (list), ==, 2);
  entry = json_object_array_get_idx (list, 0);
  g_assert_cmpstr (json_string_member (entry, "name"), ==, "alpha");
  g_assert_cmpstr (json_string_member (entry, "role"), ==, "environment");
  g_assert_cmpstr (json_string_member (entry, "state"), ==, "running");
  g_assert_true (json_object_object_get_ex (entry, "services", &services));
  g_assert_cmpuint (json_object_array_length (services), ==, 1);
  entry = find_appliance (list, "beta");
  g_assert_nonnull (entry);
  g_assert_cmpstr (json_string_member (entry, "role"), ==, "service");
  g_assert_true (json_object_object_get_ex (entry, "services", &services));
  /* allow and ask count; deny does not. Sorted. */
  g_assert_cmpuint (json_object_array_length (services), ==, 2);
  g_assert_cmpstr (json_object_get_string (json_object_array_get_idx (services, 0)), ==,
                   "org.example.Ask1");
  g_assert_cmpstr (json_object_get_string (json_object_array_get_idx (services, 1)), ==,
                   "org.example.Echo1");
  g_assert_null (find_appliance (list, "gamma"));
  g_assert_null (find_appliance (list, "delta"));
  g_clear_pointer (&reply, frame_free);

  /* gamma: itself (without a directory entry), then by name beta (Echo1)
   * and delta (Hidden1). */
  id = peer_call (gamma, "org.dhf.framework.ListAppliances", NULL, NULL);
  reply = peer_expect (gamma, DHF_XDM_REPLY, id);
  g_assert_true (json_object_object_get_ex (reply->msg.value, "appliances", &list));
  g_assert_cmpuint (json_object_array_length (list), ==, 3);
  entry = json_object_array_get_idx (list, 0);
  g_assert_cmpstr (json_string_member (entry, "name"), ==, "gamma");
  g_assert_null (json_string_member (entry, "role"));
  g_assert_cmpstr (json_string_member (entry, "state"), ==, "running");
  g_assert_true (json_object_object_get_ex (entry, "services", &services));
  g_assert_cmpuint (json_object_array_length (services), ==, 0);
  entry = json_object_array_get_idx (list, 1);
  g_assert_cmpstr (json_string_member (entry, "name"), ==, "beta");
  g_assert_true (json_object_object_get_ex (entry, "services", &services));
  g_assert_cmpuint (json_object_array_length (services), ==, 1);
  entry = json_object_array_get_idx (list, 2);
  g_assert_cmpstr (json_string_member (entry, "name"), ==, "delta");
  g_assert_null (json_string_member (entry, "role"));
}

/* --- topics ------------------------------------------------------------------------- */

static void
test_topics (Fixture *f, gconstpointer data)
{
  Peer *alpha = peer_join (f, "alpha");
  Peer *beta = peer_join (f, "beta");
  Peer *gamma = peer_join (f, "gamma");
  Peer *delta = peer_join (f, "delta");
  g_autoptr (Frame) reply = NULL;
  g_autoptr (Frame) event = NULL;
  g_autoptr (GVariant) subs = NULL;
  g_autoptr (GVariant) entry = NULL;
  g_autofree gchar *message = NULL;
  json_object *data_obj;
  guint64 delivered = 0;
  guint32 id;

  /* Even with an agent that says yes, events never ask. */
  fixture_set_ask_mode (f, ASK_YES);
  subscribe (beta, "org.example.Topic1");
  subscribe (gamma, "org.example.Topic1");
  subscribe (delta, "org.example.Topic1");
  /* The publisher's own subscription is not served. */
  subscribe (alpha, "org.example.Topic1");

  id = peer_next_id (alpha);
  peer_send (alpha, DHF_XDM_PUBLISH, id,
             "{\"topic\":\"org.example.Topic1\",\"data\":{\"level\":\"high\"}}");
  reply = peer_expect (alpha, DHF_XDM_REPLY, id);
  /* beta (allow) only: gamma is denied, delta is "ask", which is no. */
  g_assert_cmpuint (reply->msg.delivered, ==, 1);
  event = peer_expect (beta, DHF_XDM_EVENT, 0);
  g_assert_cmpstr (event->msg.topic, ==, "org.example.Topic1");
  g_assert_cmpstr (event->msg.source, ==, "alpha");
  data_obj = event->msg.value;
  g_assert_cmpstr (json_string_member (data_obj, "level"), ==, "high");
  g_assert_cmpuint (f->questions->len, ==, 0);
  g_clear_pointer (&event, frame_free);

  /* Without an id: no REPLY. */
  peer_send (alpha, DHF_XDM_PUBLISH, 0, "{\"topic\":\"org.example.Topic1\"}");
  event = peer_expect (beta, DHF_XDM_EVENT, 0);
  g_assert_null (event->msg.value);
  g_clear_pointer (&event, frame_free);
  peer_sync (alpha);
  g_assert_false (peer_has_frame (alpha));
  peer_sync (gamma);
  g_assert_false (peer_has_frame (gamma));
  peer_sync (delta);
  g_assert_false (peer_has_frame (delta));

  /* dhfd's own events come from dom0; nobody else may publish them. */
  id = peer_next_id (alpha);
  peer_send (alpha, DHF_XDM_PUBLISH, id, "{\"topic\":\"org.dhf.framework.ApplianceState\"}");
  message = peer_expect_error (alpha, id, DHF_ERROR_NOT_AUTHORIZED);
  subscribe (gamma, "org.dhf.framework.ApplianceState");
  {
    json_object *state = json_object_new_object ();

    json_object_object_add (state, "appliance", json_object_new_string ("beta"));
    json_object_object_add (state, "state", json_object_new_string ("running"));
    dhf_xdm_router_publish (f->router, "org.dhf.framework.ApplianceState", state);
    json_object_put (state);
  }
  event = peer_expect (gamma, DHF_XDM_EVENT, 0);
  g_assert_cmpstr (event->msg.source, ==, "dom0");
  g_assert_cmpstr (json_string_member (event->msg.value, "appliance"), ==, "beta");

  subs = dhf_xdm_router_list_subscriptions (f->router);
  g_assert_cmpuint (g_variant_n_children (subs), ==, 5);
  entry = variant_find (subs, "domain", "beta");
  g_assert_true (g_variant_lookup (entry, "delivered", "t", &delivered));
  g_assert_cmpuint (delivered, ==, 2);

  /* Subscriptions: once per connection, a limit per domain,
   * unsubscribing. */
  id = peer_next_id (beta);
  peer_send (beta, DHF_XDM_SUBSCRIBE, id, "{\"topic\":\"org.example.Topic1\"}");
  g_free (peer_expect_error (beta, id, DHF_ERROR_EXISTS));
  subscribe (beta, "org.example.T2");
  subscribe (beta, "org.example.T3");
  subscribe (beta, "org.example.T4");
  id = peer_next_id (beta);
  peer_send (beta, DHF_XDM_SUBSCRIBE, id, "{\"topic\":\"org.example.T5\"}");
  g_free (peer_expect_error (beta, id, DHF_ERROR_LIMIT_EXCEEDED));
  id = peer_next_id (beta);
  peer_send (beta, DHF_XDM_UNSUBSCRIBE, id, "{\"topic\":\"org.example.Topic1\"}");
  g_clear_pointer (&reply, frame_free);
  reply = peer_expect (beta, DHF_XDM_REPLY, id);
  id = peer_next_id (beta);
  peer_send (beta, DHF_XDM_UNSUBSCRIBE, id, "{\"topic\":\"org.example.Topic1\"}");
  g_free (peer_expect_error (beta, id, DHF_ERROR_NOT_FOUND));
  id = peer_next_id (alpha);
  peer_send (alpha, DHF_XDM_PUBLISH, id, "{\"topic\":\"org.example.Topic1\"}");
  g_clear_pointer (&reply, frame_free);
  reply = peer_expect (alpha, DHF_XDM_REPLY, id);
  g_assert_cmpuint (reply->msg.delivered, ==, 0);
}

static void
small_queues (DhfXdmLimits *limits)
{
  limits->max_queued_bytes = 64 * 1024;
  limits->max_connection_bytes = 4 * limits->max_queued_bytes;
}

static void
test_event_drop (Fixture *f, gconstpointer data)
{
  Peer *alpha = peer_join (f, "alpha");
  Peer *beta = peer_join (f, "beta");
  g_autoptr (GVariant) subs = NULL;
  g_autoptr (GVariant) entry = NULL;
  g_autoptr (GVariant) conns = NULL;
  g_autoptr (GVariant) conn = NULL;
  g_autoptr (GString) big = g_string_new ("{\"topic\":\"org.example.Topic1\",\"data\":\"");
  guint64 delivered = 0, dropped = 0, queued = 0, dropped_events = 0;
  guint total = 0;

  subscribe (beta, "org.example.Topic1");
  beta->slow = TRUE;
  for (guint i = 0; i < 30000; i++)
    g_string_append_c (big, 'x');
  g_string_append (big, "\"}");
  /* 100 events of 30 kB to a subscriber that does not read: once its
   * queue is over MaxQueuedBytes (64 KiB here) it misses them, and it is
   * not cut off (events cannot make a queue grow beyond the cap). */
  for (guint i = 0; i < 100; i++)
    {
      guint32 id = peer_next_id (alpha);
      g_autoptr (Frame) reply = NULL;

      peer_send (alpha, DHF_XDM_PUBLISH, id, big->str);
      reply = peer_expect (alpha, DHF_XDM_REPLY, id);
      total += reply->msg.delivered;
    }
  subs = dhf_xdm_router_list_subscriptions (f->router);
  entry = variant_find (subs, "domain", "beta");
  g_assert_true (g_variant_lookup (entry, "delivered", "t", &delivered));
  g_assert_true (g_variant_lookup (entry, "dropped", "t", &dropped));
  g_assert_cmpuint (delivered, ==, total);
  g_assert_cmpuint (delivered + dropped, ==, 100);
  g_assert_cmpuint (dropped, >, 0);
  conns = dhf_xdm_router_list_connections (f->router);
  conn = variant_find (conns, "domain", "beta");
  g_assert_nonnull (conn);
  g_assert_true (g_variant_lookup (conn, "queued-bytes", "t", &queued));
  g_assert_true (g_variant_lookup (conn, "dropped-events", "t", &dropped_events));
  g_assert_cmpuint (dropped_events, ==, dropped);
  g_assert_cmpuint (queued, <=, 64 * 1024 + 30100);
  g_assert_null (fixture_closed (f, beta->id));

  /* It reads at last: everything delivered arrives. */
  beta->slow = FALSE;
  for (guint64 i = 0; i < delivered; i++)
    frame_free (peer_expect (beta, DHF_XDM_EVENT, 0));
}

/* --- streams ------------------------------------------------------------------------ */

typedef struct
{
  guint32 a_id; /* the opener's id */
  guint32 b_id; /* the provider's */
} StreamIds;

static StreamIds
open_stream (Peer *opener, Peer *provider, const gchar *target, guint32 window_a, guint32 window_b)
{
  StreamIds ids;
  g_autoptr (Frame) open = NULL;
  g_autoptr (Frame) accepted = NULL;

  ids.a_id = peer_next_id (opener);
  peer_sendf (opener, DHF_XDM_STREAM_OPEN, ids.a_id,
              "{\"service\":\"org.example.Stream1\",\"target\":\"%s\",\"window\":%u}", target,
              window_a);
  open = peer_expect (provider, DHF_XDM_STREAM_OPEN, -1);
  g_assert_cmpstr (open->msg.service, ==, "org.example.Stream1");
  g_assert_cmpstr (open->msg.source, ==, opener->domain);
  g_assert_cmpuint (open->msg.window, ==, window_a);
  ids.b_id = open->header.id;
  peer_sendf (provider, DHF_XDM_REPLY, ids.b_id, "{\"window\":%u}", window_b);
  accepted = peer_expect (opener, DHF_XDM_REPLY, ids.a_id);
  g_assert_cmpuint (accepted->msg.window, ==, window_b);
  return ids;
}

static Frame *
expect_data (Peer *p, guint32 id, const guint8 *data, gsize length)
{
  Frame *frame = peer_expect (p, DHF_XDM_STREAM_DATA, id);

  g_assert_cmpmem (frame->msg.raw, frame->msg.raw_length, data, length);
  return frame;
}

static void
test_stream (Fixture *f, gconstpointer data)
{
  Peer *alpha = peer_join (f, "alpha");
  Peer *beta = peer_join (f, "beta");
  StreamIds ids;
  Frame *frame;
  guint8 buf[1000];

  for (guint i = 0; i < sizeof buf; i++)
    buf[i] = (guint8) (i * 7);
  register_service (beta, "org.example.Stream1");
  ids = open_stream (alpha, beta, "beta", 1000, 600);

  /* Both ways, within credit. */
  peer_send_data (alpha, ids.a_id, buf, 600);
  frame_free (expect_data (beta, ids.b_id, buf, 600));
  peer_send_data (beta, ids.b_id, buf, 1000);
  frame_free (expect_data (alpha, ids.a_id, buf, 1000));
  /* More credit, relayed. */
  peer_send (beta, DHF_XDM_STREAM_CREDIT, ids.b_id, "{\"bytes\":300}");
  frame = peer_expect (alpha, DHF_XDM_STREAM_CREDIT, ids.a_id);
  g_assert_cmpuint (frame->msg.bytes, ==, 300);
  frame_free (frame);
  peer_send_data (alpha, ids.a_id, buf, 300);
  frame_free (expect_data (beta, ids.b_id, buf, 300));

  /* Half-close each way: the other side can still send. */
  peer_send (alpha, DHF_XDM_STREAM_CLOSE, ids.a_id, NULL);
  frame = peer_expect (beta, DHF_XDM_STREAM_CLOSE, ids.b_id);
  g_assert_null (frame->msg.code);
  frame_free (frame);
  peer_send (alpha, DHF_XDM_STREAM_CREDIT, ids.a_id, "{\"bytes\":10}");
  frame_free (peer_expect (beta, DHF_XDM_STREAM_CREDIT, ids.b_id));
  peer_send_data (beta, ids.b_id, buf, 10);
  frame_free (expect_data (alpha, ids.a_id, buf, 10));
  peer_send (beta, DHF_XDM_STREAM_CLOSE, ids.b_id, NULL);
  frame_free (peer_expect (alpha, DHF_XDM_STREAM_CLOSE, ids.a_id));
  /* Gone: data for it is dropped. */
  peer_send_data (beta, ids.b_id, buf, 10);
  peer_sync (beta);
  peer_sync (alpha);
  g_assert_false (peer_has_frame (alpha));

  /* Over credit: reset both ways. */
  ids = open_stream (alpha, beta, "beta", 100, 100);
  peer_send_data (alpha, ids.a_id, buf, 60);
  frame_free (expect_data (beta, ids.b_id, buf, 60));
  peer_send_data (alpha, ids.a_id, buf, 41);
  frame = peer_expect (alpha, DHF_XDM_STREAM_CLOSE, ids.a_id);
  g_assert_cmpstr (frame->msg.code, ==, "protocol");
  frame_free (frame);
  frame = peer_expect (beta, DHF_XDM_STREAM_CLOSE, ids.b_id);
  g_assert_cmpstr (frame->msg.code, ==, "protocol");
  frame_free (frame);

  /* A reset from one side reaches the other. */
  ids = open_stream (alpha, beta, "beta", 100, 100);
  peer_send (beta, DHF_XDM_STREAM_CLOSE, ids.b_id, "{\"code\":\"failed\",\"message\":\"disk\"}");
  frame = peer_expect (alpha, DHF_XDM_STREAM_CLOSE, ids.a_id);
  g_assert_cmpstr (frame->msg.code, ==, "failed");
  frame_free (frame);
}

static void
test_stream_peer_loss (Fixture *f, gconstpointer data)
{
  Peer *alpha = peer_join (f, "alpha");
  Peer *beta = peer_join (f, "beta");
  g_autoptr (Frame) frame = NULL;
  StreamIds ids;

  register_service (beta, "org.example.Stream1");
  ids = open_stream (alpha, beta, "beta", 100, 100);
  peer_close (beta);
  frame = peer_expect (alpha, DHF_XDM_STREAM_CLOSE, ids.a_id);
  g_assert_cmpstr (frame->msg.code, ==, "unavailable");
  g_clear_pointer (&frame, frame_free);

  /* And the other way round. */
  beta = peer_join (f, "beta");
  register_service (beta, "org.example.Stream1");
  ids = open_stream (alpha, beta, "beta", 100, 100);
  peer_close (alpha);
  frame = peer_expect (beta, DHF_XDM_STREAM_CLOSE, ids.b_id);
  g_assert_cmpstr (frame->msg.code, ==, "unavailable");
}

static void
test_stream_refused (Fixture *f, gconstpointer data)
{
  Peer *alpha = peer_join (f, "alpha");
  Peer *beta = peer_join (f, "beta");
  g_autoptr (Frame) open = NULL;
  g_autoptr (Frame) cancel = NULL;
  g_autofree gchar *message = NULL;
  guint8 byte = 0;
  guint32 id;

  register_service (beta, "org.example.Stream1");
  register_service (beta, "org.example.Deny1");
  /* The policy, as for calls. */
  id = peer_next_id (alpha);
  peer_send (alpha, DHF_XDM_STREAM_OPEN, id,
             "{\"service\":\"org.example.Deny1\",\"target\":\"beta\",\"window\":10}");
  message = peer_expect_error (alpha, id, DHF_ERROR_NOT_AUTHORIZED);
  g_clear_pointer (&message, g_free);

  /* The provider refuses. */
  id = peer_next_id (alpha);
  peer_send (alpha, DHF_XDM_STREAM_OPEN, id,
             "{\"service\":\"org.example.Stream1\",\"target\":\"beta\",\"window\":10}");
  open = peer_expect (beta, DHF_XDM_STREAM_OPEN, -1);
  peer_send (beta, DHF_XDM_ERROR, open->header.id, "{\"code\":\"failed\",\"message\":\"busy\"}");
  message = peer_expect_error (alpha, id, DHF_ERROR_FAILED);
  g_assert_cmpstr (message, ==, "busy");
  g_clear_pointer (&message, g_free);
  /* ... and its stream does not exist: data for it goes nowhere. */
  peer_send_data (beta, open->header.id, &byte, 1);
  g_clear_pointer (&open, frame_free);
  peer_sync (beta);
  peer_sync (alpha);
  g_assert_false (peer_has_frame (alpha));

  /* A provider that closes instead of answering refuses. */
  id = peer_next_id (alpha);
  peer_send (alpha, DHF_XDM_STREAM_OPEN, id,
             "{\"service\":\"org.example.Stream1\",\"target\":\"beta\",\"window\":10}");
  open = peer_expect (beta, DHF_XDM_STREAM_OPEN, -1);
  peer_send (beta, DHF_XDM_STREAM_CLOSE, open->header.id,
             "{\"code\":\"not-supported\",\"message\":\"no streams today\"}");
  message = peer_expect_error (alpha, id, DHF_ERROR_NOT_SUPPORTED);
  g_assert_cmpstr (message, ==, "no streams today");
  g_clear_pointer (&message, g_free);
  g_clear_pointer (&open, frame_free);

  /* Data before the stream was accepted: the open fails, the provider
   * is told. */
  id = peer_next_id (alpha);
  peer_send (alpha, DHF_XDM_STREAM_OPEN, id,
             "{\"service\":\"org.example.Stream1\",\"target\":\"beta\",\"window\":10}");
  open = peer_expect (beta, DHF_XDM_STREAM_OPEN, -1);
  peer_send_data (alpha, id, &byte, 1);
  message = peer_expect_error (alpha, id, DHF_ERROR_PROTOCOL);
  cancel = peer_expect (beta, DHF_XDM_CANCEL, open->header.id);
  g_clear_pointer (&message, g_free);
  g_clear_pointer (&open, frame_free);
  g_clear_pointer (&cancel, frame_free);

  /* The opener gives up before it is accepted. */
  id = peer_next_id (alpha);
  peer_send (alpha, DHF_XDM_STREAM_OPEN, id,
             "{\"service\":\"org.example.Stream1\",\"target\":\"beta\",\"window\":10}");
  open = peer_expect (beta, DHF_XDM_STREAM_OPEN, -1);
  peer_send (alpha, DHF_XDM_CANCEL, id, NULL);
  message = peer_expect_error (alpha, id, DHF_ERROR_CANCELLED);
  cancel = peer_expect (beta, DHF_XDM_CANCEL, open->header.id);
  /* A late acceptance is dropped. */
  peer_send (beta, DHF_XDM_REPLY, open->header.id, "{\"window\":5}");
  peer_sync (beta);
  peer_sync (alpha);
  g_assert_false (peer_has_frame (alpha));
}

static guint32
open_request (Peer *opener, const gchar *target)
{
  guint32 id = peer_next_id (opener);

  peer_sendf (opener, DHF_XDM_STREAM_OPEN, id,
              "{\"service\":\"org.example.Stream1\",\"target\":\"%s\",\"window\":10}", target);
  return id;
}

static void
four_streams (DhfXdmLimits *limits)
{
  limits->max_streams = 4;
}

/* MaxStreams counts the streams a domain opens (open or being opened), at
 * most half of them to one provider; being opened counts against nobody:
 * a domain others stream to can still open its own. */
static void
test_stream_limits (Fixture *f, gconstpointer data)
{
  Peer *alpha = peer_join (f, "alpha");
  Peer *beta = peer_join (f, "beta");
  g_autofree gchar *message = NULL;
  g_autoptr (Frame) open = NULL;
  StreamIds ids[2];
  guint32 id;

  register_service (alpha, "org.example.Stream1");
  register_service (beta, "org.example.Stream1");
  /* MaxStreams is 4 here: 2 to any one provider. One open, one pending. */
  ids[0] = open_stream (alpha, beta, "beta", 10, 10);
  open_request (alpha, "beta");
  open = peer_expect (beta, DHF_XDM_STREAM_OPEN, -1);
  g_clear_pointer (&open, frame_free);
  id = open_request (alpha, "beta");
  message = peer_expect_error (alpha, id, DHF_ERROR_LIMIT_EXCEEDED);
  g_assert_cmpstr (message, ==, "alpha has 2 streams to beta, the limit for one provider");
  g_clear_pointer (&message, g_free);

  /* beta, which alpha's streams occupy, opens its own: all 2 it may to
   * alpha. */
  for (guint i = 0; i < 2; i++)
    ids[1] = open_stream (beta, alpha, "alpha", 10, 10);
  id = open_request (beta, "alpha");
  message = peer_expect_error (beta, id, DHF_ERROR_LIMIT_EXCEEDED);
  g_assert_nonnull (strstr (message, "the limit for one provider"));
  g_clear_pointer (&message, g_free);

  /* alpha's other 2, to itself; then the domain's limit. */
  open_stream (alpha, alpha, "alpha", 10, 10);
  open_stream (alpha, alpha, "alpha", 10, 10);
  id = open_request (alpha, "alpha");
  message = peer_expect_error (alpha, id, DHF_ERROR_LIMIT_EXCEEDED);
  g_assert_cmpstr (message, ==, "alpha has 4 streams open, the limit");
  g_clear_pointer (&message, g_free);

  /* An id in use cannot open another. */
  peer_send (alpha, DHF_XDM_STREAM_OPEN, ids[0].a_id,
             "{\"service\":\"org.example.Stream1\",\"target\":\"beta\",\"window\":10}");
  message = peer_expect_error (alpha, ids[0].a_id, DHF_ERROR_INVALID_ARGS);
  g_assert_nonnull (strstr (message, "already in use"));
  g_clear_pointer (&message, g_free);

  /* Closed both ways, a stream makes room, for its opener. */
  peer_send (alpha, DHF_XDM_STREAM_CLOSE, ids[0].a_id, NULL);
  frame_free (peer_expect (beta, DHF_XDM_STREAM_CLOSE, ids[0].b_id));
  peer_send (beta, DHF_XDM_STREAM_CLOSE, ids[0].b_id, NULL);
  frame_free (peer_expect (alpha, DHF_XDM_STREAM_CLOSE, ids[0].a_id));
  open_stream (alpha, beta, "beta", 10, 10);
  /* A reset does too. */
  peer_send (beta, DHF_XDM_STREAM_CLOSE, ids[1].a_id, "{\"code\":\"cancelled\"}");
  frame_free (peer_expect (alpha, DHF_XDM_STREAM_CLOSE, ids[1].b_id));
  open_stream (beta, alpha, "alpha", 10, 10);
}

/* An empty STREAM_DATA would need no credit, so nothing would bound how
 * many a sender has relayed: it resets the stream. */
static void
test_stream_empty_data (Fixture *f, gconstpointer data)
{
  Peer *alpha = peer_join (f, "alpha");
  Peer *beta = peer_join (f, "beta");
  g_autoptr (Frame) frame = NULL;
  StreamIds ids;

  register_service (beta, "org.example.Stream1");
  ids = open_stream (alpha, beta, "beta", 10, 10);
  peer_send_data (alpha, ids.a_id, NULL, 0);
  frame = peer_expect (alpha, DHF_XDM_STREAM_CLOSE, ids.a_id);
  g_assert_cmpstr (frame->msg.code, ==, "protocol");
  g_assert_cmpstr (frame->msg.message, ==, "an empty STREAM_DATA");
  g_clear_pointer (&frame, frame_free);
  frame = peer_expect (beta, DHF_XDM_STREAM_CLOSE, ids.b_id);
  g_assert_cmpstr (frame->msg.code, ==, "protocol");
  /* No STREAM_DATA went to beta. */
  peer_sync (beta);
  g_assert_false (peer_has_frame (beta));
}

/* Credit granted in a burst goes on summed in few frames, and the total
 * is exact. */
static void
test_stream_credit_coalesced (Fixture *f, gconstpointer data)
{
  Peer *alpha = peer_join (f, "alpha");
  Peer *beta = peer_join (f, "beta");
  g_autoptr (GByteArray) burst = g_byte_array_new ();
  guint64 total = 0;
  guint frames = 0;
  StreamIds ids;
  const guint n = 4096;

  register_service (beta, "org.example.Stream1");
  ids = open_stream (alpha, beta, "beta", 10, 10);
  for (guint i = 0; i < n; i++)
    dhf_xdm_append_text (burst, DHF_XDM_STREAM_CREDIT, ids.b_id, "{\"bytes\":1}", (gsize) -1);
  dhf_xdm_append_text (burst, DHF_XDM_PING, 1, NULL, 0);
  peer_send_bytes (beta, burst->data, burst->len);
  frame_free (peer_expect (beta, DHF_XDM_PONG, 1));
  /* Everything relayed came before the answer to a PING sent now. */
  peer_send (alpha, DHF_XDM_PING, 99, NULL);
  for (;;)
    {
      g_autoptr (Frame) frame = peer_recv (alpha);

      if (frame->header.type == DHF_XDM_PONG)
        break;
      g_assert_cmpint (frame->header.type, ==, DHF_XDM_STREAM_CREDIT);
      g_assert_cmpuint (frame->header.id, ==, ids.a_id);
      total += frame->msg.bytes;
      frames++;
    }
  g_assert_cmpuint (total, ==, n);
  /* One per dispatch that read some of the burst, not one per grant. */
  g_assert_cmpuint (frames, <=, n / 64);
  /* alpha may use all of it. */
  {
    g_autofree guint8 *bytes = g_malloc0 (10 + n);

    peer_send_data (alpha, ids.a_id, bytes, 10 + n);
    frame_free (peer_expect (beta, DHF_XDM_STREAM_DATA, ids.b_id));
  }
}

/* A half-close is relayed once: repeating it would have dhfd relay a
 * flood nobody bounded. */
static void
test_stream_half_close_once (Fixture *f, gconstpointer data)
{
  Peer *alpha = peer_join (f, "alpha");
  Peer *beta = peer_join (f, "beta");
  StreamIds ids;

  register_service (beta, "org.example.Stream1");
  ids = open_stream (alpha, beta, "beta", 10, 10);
  for (guint i = 0; i < 100; i++)
    peer_send (alpha, DHF_XDM_STREAM_CLOSE, ids.a_id, NULL);
  frame_free (peer_expect (beta, DHF_XDM_STREAM_CLOSE, ids.b_id));
  peer_sync (alpha);
  peer_sync (beta);
  g_assert_false (peer_has_frame (beta));
  /* The stream is still half open: beta can send. */
  peer_send_data (beta, ids.b_id, (const guint8 *) "x", 1);
  frame_free (expect_data (alpha, ids.a_id, (const guint8 *) "x", 1));
}

/* A stream from a connection to itself: each end has its own id. */
static void
test_stream_self (Fixture *f, gconstpointer data)
{
  Peer *alpha = peer_join (f, "alpha");
  g_autoptr (Frame) open = NULL;
  g_autoptr (Frame) accepted = NULL;
  g_autoptr (Frame) frame = NULL;
  guint8 buf[4] = { 1, 2, 3, 4 };
  guint32 id;

  register_service (alpha, "org.example.Stream1");
  id = peer_next_id (alpha);
  peer_send (alpha, DHF_XDM_STREAM_OPEN, id,
             "{\"service\":\"org.example.Stream1\",\"target\":\"alpha\",\"window\":8}");
  open = peer_expect (alpha, DHF_XDM_STREAM_OPEN, -1);
  g_assert_cmpuint (open->header.id, !=, id);
  peer_send (alpha, DHF_XDM_REPLY, open->header.id, "{\"window\":4}");
  accepted = peer_expect (alpha, DHF_XDM_REPLY, id);
  peer_send_data (alpha, id, buf, 4);
  frame = expect_data (alpha, open->header.id, buf, 4);
  g_clear_pointer (&frame, frame_free);
  peer_send_data (alpha, open->header.id, buf, 4);
  frame = expect_data (alpha, id, buf, 4);
  g_clear_pointer (&frame, frame_free);
  /* The opener's credit is spent: one more byte resets both ends. */
  peer_send_data (alpha, id, buf, 1);
  frame = peer_expect (alpha, DHF_XDM_STREAM_CLOSE, id);
  g_assert_cmpstr (frame->msg.code, ==, "protocol");
  g_clear_pointer (&frame, frame_free);
  frame = peer_expect (alpha, DHF_XDM_STREAM_CLOSE, open->header.id);
  g_assert_cmpstr (frame->msg.code, ==, "protocol");
}

/* Many frames of every size, some larger than the router's read buffer,
 * written in one go: each arrives whole and in order. */
static void
test_stream_bulk (Fixture *f, gconstpointer data)
{
  Peer *alpha = peer_join (f, "alpha");
  Peer *beta = peer_join (f, "beta");
  g_autoptr (GByteArray) out = g_byte_array_new ();
  g_autoptr (GByteArray) sent = g_byte_array_new ();
  g_autoptr (GByteArray) got = g_byte_array_new ();
  static const gsize sizes[]
      = { 1, 15, 16, 17, 4096, 65535, 65536, 100000, 262144, 300000, 1048576, 3, 777 };
  StreamIds ids;

  register_service (beta, "org.example.Stream1");
  ids = open_stream (alpha, beta, "beta", 10, DHF_XDM_MAX_WINDOW);
  for (guint round = 0; round < 3; round++)
    for (guint i = 0; i < G_N_ELEMENTS (sizes); i++)
      {
        gsize start = sent->len;

        g_byte_array_set_size (sent, start + sizes[i]);
        for (gsize j = 0; j < sizes[i]; j++)
          sent->data[start + j] = (guint8) g_random_int ();
        dhf_xdm_append_raw (out, DHF_XDM_STREAM_DATA, ids.a_id, sent->data + start, sizes[i]);
      }
  g_assert_cmpuint (sent->len, <=, DHF_XDM_MAX_WINDOW);
  peer_send_bytes (alpha, out->data, out->len);
  while (got->len < sent->len)
    {
      g_autoptr (Frame) frame = peer_expect (beta, DHF_XDM_STREAM_DATA, ids.b_id);

      g_byte_array_append (got, frame->msg.raw, (guint) frame->msg.raw_length);
    }
  g_assert_cmpmem (got->data, got->len, sent->data, sent->len);
}

static void
setup_with (Fixture *f, gconstpointer data)
{
  fixture_setup (f, (void (*) (DhfXdmLimits *)) data);
}

static void
teardown_with (Fixture *f, gconstpointer data)
{
  fixture_teardown (f);
}

int
main (int argc, char **argv)
{
  g_test_init (&argc, &argv, NULL);

#define ADD(path, fn, tweak)                                                                       \
  g_test_add ("/xdm-router/" path, Fixture, (gconstpointer) (tweak), setup_with, fn, teardown_with)

  ADD ("session/hello", test_hello_welcome, NULL);
  ADD ("session/version-refused", test_hello_version_refused, NULL);
  ADD ("session/frame-before-hello", test_frame_before_hello, NULL);
  ADD ("session/second-hello", test_second_hello, NULL);
  ADD ("session/hello-resets-channel", test_hello_resets_channel, NULL);
  ADD ("session/hello-reset-drops-queue", test_hello_reset_drops_queue, NULL);
  ADD ("session/hello-timeout", test_hello_timeout, short_hello);
  ADD ("session/ping", test_ping, NULL);
  ADD ("session/max-dom0-clients", test_max_dom0_clients, few_clients);
  ADD ("call/allow", test_call_allow, NULL);
  ADD ("call/argument", test_call_arg, NULL);
  ADD ("call/deny", test_call_deny, NULL);
  ADD ("call/ask", test_call_ask, NULL);
  ADD ("call/ask-limits", test_ask_limits, NULL);
  ADD ("call/ask-redirect", test_ask_redirect, NULL);
  ADD ("call/redirect", test_redirect, NULL);
  ADD ("call/quota", test_quota, NULL);
  ADD ("call/resolution", test_resolution, NULL);
  ADD ("call/missing-target", test_missing_target, NULL);
  ADD ("call/spoofed-source", test_spoofed_source, NULL);
  ADD ("call/provider-gone", test_provider_gone, NULL);
  ADD ("call/caller-gone", test_caller_gone, NULL);
  ADD ("call/deadline", test_deadline, NULL);
  ADD ("call/cancel", test_cancel, NULL);
  ADD ("call/provider-error", test_provider_error, NULL);
  ADD ("call/duplicate-id", test_duplicate_id, NULL);
  ADD ("call/dom0-client", test_dom0_client, NULL);
  ADD ("registry/registration", test_registration, NULL);
  ADD ("framework/whoami", test_whoami, NULL);
  ADD ("framework/list-appliances", test_list_appliances, NULL);
  ADD ("topics/deliver", test_topics, NULL);
  ADD ("topics/drop", test_event_drop, small_queues);
  ADD ("stream/relay", test_stream, NULL);
  ADD ("stream/peer-loss", test_stream_peer_loss, NULL);
  ADD ("stream/refused", test_stream_refused, NULL);
  ADD ("stream/limits", test_stream_limits, four_streams);
  ADD ("stream/empty-data", test_stream_empty_data, NULL);
  ADD ("stream/credit-coalesced", test_stream_credit_coalesced, NULL);
  ADD ("stream/half-close-once", test_stream_half_close_once, NULL);
  ADD ("stream/self", test_stream_self, NULL);
  ADD ("stream/bulk", test_stream_bulk, NULL);

  return g_test_run ();
}
