/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* DhfClient, DhfInvocation and DhfStream against a scripted fake dhfd
 * (fake-dhfd.c) over unix sockets, a listening socket and a pty standing
 * in for a virtio-serial port. Each test runs the fake's script in a
 * thread; the client is used from the main thread, whose main context
 * runs handlers, events and async completions. */
#include "config.h"

#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <termios.h>
#include <unistd.h>

#include <glib/gstdio.h>

#include "dhf-client-private.h"
#include "dhf-transport.h"
#include "fake-dhfd.h"

#define MIB (1024 * 1024)

static gchar *tmpdir;

/* ---- helpers ---------------------------------------------------------------- */

static gboolean
too_long_cb (gpointer data)
{
  g_error ("test: waited too long for %s", (const gchar *) data);
  return G_SOURCE_REMOVE;
}

/* Runs the main context until *flag is set (by a handler or callback). */
static void
iterate_until (const gboolean *flag, const gchar *what)
{
  GSource *guard = g_timeout_source_new_seconds (30);

  g_source_set_callback (guard, too_long_cb, (gpointer) what, NULL);
  g_source_attach (guard, NULL);
  while (!*flag)
    g_main_context_iteration (NULL, TRUE);
  g_source_destroy (guard);
  g_source_unref (guard);
}

static void
iterate_until_count (const guint *count, guint target, const gchar *what)
{
  GSource *guard = g_timeout_source_new_seconds (30);

  g_source_set_callback (guard, too_long_cb, (gpointer) what, NULL);
  g_source_attach (guard, NULL);
  while (*count < target)
    g_main_context_iteration (NULL, TRUE);
  g_source_destroy (guard);
  g_source_unref (guard);
}

static gchar *
socket_path (const gchar *name)
{
  return g_build_filename (tmpdir, name, NULL);
}

typedef void (*FakeScript) (FakeConn *conn, gpointer data);

typedef struct
{
  gint listen_fd;
  FakeScript script;
  gpointer data;
} FakeJob;

static gpointer
fake_accept_thread (gpointer user_data)
{
  FakeJob *job = user_data;
  g_autoptr (FakeConn) conn = fake_conn_new (fake_accept (job->listen_fd));

  job->script (conn, job->data);
  close (job->listen_fd);
  g_free (job);
  return NULL;
}

/* A fake dhfd listening on path (before this returns), serving one
 * connection with script. */
static GThread *
fake_serve (const gchar *path, FakeScript script, gpointer data)
{
  FakeJob *job = g_new0 (FakeJob, 1);

  job->listen_fd = fake_listen_unix (path);
  job->script = script;
  job->data = data;
  return g_thread_new ("fake-dhfd", fake_accept_thread, job);
}

static DhfClient *
connect_client (const gchar *path)
{
  g_autofree gchar *address = g_strdup_printf ("unix:%s", path);
  DhfClient *client = dhf_client_new (address);
  g_autoptr (GError) error = NULL;

  (void) dhf_client_connect_sync (client, NULL, &error);
  g_assert_no_error (error);
  return client;
}

static void
script_handshake_then_eof (FakeConn *conn, gpointer data)
{
  fake_conn_handshake (conn, data != NULL ? data : "dom-a");
  g_assert_true (fake_conn_wait_eof (conn));
}

static void
count_notify_cb (GObject *object, GParamSpec *pspec, gpointer data)
{
  (*(guint *) data)++;
}

static void
assert_json_equal (const gchar *text, const gchar *expected)
{
  g_autoptr (json_object) a = json_tokener_parse (text);
  g_autoptr (json_object) b = json_tokener_parse (expected);

  if (!json_object_equal (a, b))
    g_error ("JSON %s is not %s", text, expected);
}

/* ---- session ------------------------------------------------------------------ */

static void
test_connect (void)
{
  g_autofree gchar *path = socket_path ("connect.sock");
  GThread *fake = fake_serve (path, script_handshake_then_eof, "dom-a");
  g_autofree gchar *address = g_strdup_printf ("unix:%s", path);
  g_autoptr (DhfClient) client = dhf_client_new (address);
  g_autoptr (GError) error = NULL;
  g_autofree gchar *prop = NULL;
  guint notified = 0;

  g_signal_connect (client, "notify::connected", G_CALLBACK (count_notify_cb), &notified);
  g_assert_cmpstr (dhf_client_get_address (client), ==, address);
  g_assert_null (dhf_client_get_domain (client));
  g_assert_false (dhf_client_get_connected (client));
  g_assert_true (dhf_client_get_auto_reconnect (client));

  g_assert_true (dhf_client_connect_sync (client, NULL, &error));
  g_assert_no_error (error);
  g_assert_true (dhf_client_get_connected (client));
  g_assert_cmpstr (dhf_client_get_domain (client), ==, "dom-a");
  g_object_get (client, "domain", &prop, NULL);
  g_assert_cmpstr (prop, ==, "dom-a");
  /* Connecting again is a no-op. */
  g_assert_true (dhf_client_connect_sync (client, NULL, &error));
  iterate_until_count (&notified, 1, "notify::connected");

  dhf_client_close (client);
  g_assert_false (dhf_client_get_connected (client));
  iterate_until_count (&notified, 2, "notify::connected (closed)");
  g_signal_handlers_disconnect_by_data (client, &notified);
  g_thread_join (fake);
  /* Still the domain it was. */
  g_assert_cmpstr (dhf_client_get_domain (client), ==, "dom-a");
}

static void
script_refuse_version (FakeConn *conn, gpointer data)
{
  const DhfXdmMessage *hello = fake_conn_expect (conn, DHF_XDM_HELLO);

  fake_conn_send_error (
      conn, hello->id, "protocol",
      "HELLO: no common protocol version (the peer speaks 1; this side speaks 2)");
  /* dhfd drops the connection after the refusal. */
}

static void
script_welcome_version_2 (FakeConn *conn, gpointer data)
{
  const DhfXdmMessage *hello = fake_conn_expect (conn, DHF_XDM_HELLO);

  fake_conn_send_text (conn, DHF_XDM_WELCOME, hello->id,
                       "{\"version\":2,\"domain\":\"dom-a\",\"limits\":{\"max_body\":1048576,"
                       "\"max_calls_in_flight\":256}}");
  g_assert_true (fake_conn_wait_eof (conn));
}

static void
test_version_refused (void)
{
  FakeScript scripts[] = { script_refuse_version, script_welcome_version_2 };

  for (guint i = 0; i < G_N_ELEMENTS (scripts); i++)
    {
      g_autofree gchar *path = socket_path ("refused.sock");
      GThread *fake = fake_serve (path, scripts[i], NULL);
      g_autofree gchar *address = g_strdup_printf ("unix:%s", path);
      g_autoptr (DhfClient) client = dhf_client_new (address);
      g_autoptr (GError) error = NULL;

      g_assert_false (dhf_client_connect_sync (client, NULL, &error));
      g_assert_error (error, DHF_ERROR, DHF_ERROR_PROTOCOL);
      g_test_message ("refusal %u: %s", i, error->message);
      g_assert_false (dhf_client_get_connected (client));
      g_assert_null (dhf_client_get_domain (client));
      g_thread_join (fake);
    }
}

static void
test_unreachable (void)
{
  g_autofree gchar *path = socket_path ("nobody-here.sock");
  g_autofree gchar *address = g_strdup_printf ("unix:%s", path);
  g_autoptr (DhfClient) client = dhf_client_new (address);
  g_autoptr (DhfClient) bad = dhf_client_new ("carrier-pigeon:home");
  g_autoptr (GError) error = NULL;
  g_autofree gchar *result = NULL;

  g_assert_false (dhf_client_connect_sync (client, NULL, &error));
  g_assert_error (error, DHF_ERROR, DHF_ERROR_DISCONNECTED);
  g_assert_nonnull (strstr (error->message, path));
  g_clear_error (&error);

  /* Nothing works before connecting. */
  result = dhf_client_call_sync (client, "org.example.Echo1", NULL, NULL, 0, NULL, &error);
  g_assert_null (result);
  g_assert_error (error, DHF_ERROR, DHF_ERROR_DISCONNECTED);
  g_clear_error (&error);
  g_assert_false (dhf_client_publish (client, "org.example.News", NULL, &error));
  g_assert_error (error, DHF_ERROR, DHF_ERROR_DISCONNECTED);
  g_clear_error (&error);

  g_assert_false (dhf_client_connect_sync (bad, NULL, &error));
  g_assert_error (error, DHF_ERROR, DHF_ERROR_INVALID_ARGS);
  g_assert_nonnull (strstr (error->message, "carrier-pigeon"));
}

/* ---- services ------------------------------------------------------------------ */

typedef struct
{
  guint calls;
  gchar *source;
  gchar *argument;
  gchar *params;
  gboolean in_main_thread;
  gboolean notified;
  DhfInvocation *kept;
  const gchar *mode; /* how to answer: "echo", "null", "invalid", "huge", "drop", "keep" */
} ServiceData;

static void
service_data_clear (ServiceData *sd)
{
  g_free (sd->source);
  g_free (sd->argument);
  g_free (sd->params);
  g_clear_object (&sd->kept);
}

static void
echo_handler (DhfClient *client, DhfInvocation *invocation, gpointer user_data)
{
  ServiceData *sd = user_data;

  g_assert_true (DHF_IS_CLIENT (client));
  sd->calls++;
  sd->in_main_thread = g_main_context_is_owner (g_main_context_default ());
  g_free (sd->source);
  g_free (sd->argument);
  g_free (sd->params);
  sd->source = g_strdup (dhf_invocation_get_source (invocation));
  sd->argument = g_strdup (dhf_invocation_get_argument (invocation));
  sd->params = g_strdup (dhf_invocation_get_params_json (invocation));
  g_assert_cmpint (dhf_invocation_get_kind (invocation), ==, DHF_INVOCATION_CALL);
  if (g_strcmp0 (sd->mode, "null") == 0)
    g_assert_true (dhf_invocation_return_json (invocation, NULL));
  else if (g_strcmp0 (sd->mode, "invalid") == 0)
    g_assert_false (dhf_invocation_return_json (invocation, "{\"not\": json"));
  else if (g_strcmp0 (sd->mode, "huge") == 0)
    {
      /* A string that fits a message alone, but not framed as a result. */
      g_autofree gchar *result = g_strnfill (DHF_XDM_MAX_BODY - 8, 'x');

      result[0] = result[DHF_XDM_MAX_BODY - 9] = '"';
      g_assert_false (dhf_invocation_return_json (invocation, result));
    }
  else if (g_strcmp0 (sd->mode, "drop") == 0)
    ; /* the invocation goes unanswered when the dispatcher drops it */
  else if (g_strcmp0 (sd->mode, "keep") == 0)
    {
      g_set_object (&sd->kept, invocation);
      (void) dhf_invocation_get_cancellable (invocation);
    }
  else
    {
      g_autofree gchar *result = g_strdup_printf ("{\"echo\":%s,\"service\":\"%s\"}", sd->params,
                                                  dhf_invocation_get_service (invocation));

      g_assert_true (dhf_invocation_return_json (invocation, result));
    }
}

static void
set_flag_notify (gpointer data)
{
  *(gboolean *) data = TRUE;
}

static void
service_data_notify (gpointer data)
{
  ((ServiceData *) data)->notified = TRUE;
}

static void
script_register_and_call (FakeConn *conn, gpointer data)
{
  const DhfXdmMessage *msg;
  g_autofree gchar *result = NULL;

  fake_conn_handshake (conn, "dom-p");
  msg = fake_conn_expect (conn, DHF_XDM_REGISTER);
  g_assert_cmpstr (msg->service, ==, "org.example.Echo1");
  fake_conn_send_text (conn, DHF_XDM_REPLY, msg->id, "{}");
  /* A reserved name: dhfd refuses it. */
  msg = fake_conn_expect (conn, DHF_XDM_REGISTER);
  g_assert_cmpstr (msg->service, ==, "org.dhf.framework.Mine");
  fake_conn_send_error (conn, msg->id, "not-authorized", "org.dhf.framework.* is reserved");

  fake_conn_send_text (conn, DHF_XDM_CALL, 41,
                       "{\"service\":\"org.example.Echo1\",\"arg\":\"docs\",\"source\":\"dom-b\","
                       "\"timeout_ms\":5000,\"params\":{\"n\":[1,2,\"x\"]}}");
  msg = fake_conn_expect (conn, DHF_XDM_REPLY);
  g_assert_cmpuint (msg->id, ==, 41);
  result = g_strdup (json_object_to_json_string (msg->value));
  assert_json_equal (result, "{\"echo\":{\"n\":[1,2,\"x\"]},\"service\":\"org.example.Echo1\"}");

  /* No argument, no params. */
  fake_conn_send_text (
      conn, DHF_XDM_CALL, 42,
      "{\"service\":\"org.example.Echo1\",\"source\":\"dom0\",\"timeout_ms\":5000}");
  msg = fake_conn_expect (conn, DHF_XDM_REPLY);
  g_assert_cmpuint (msg->id, ==, 42);
  assert_json_equal (json_object_to_json_string (msg->value),
                     "{\"echo\":null,\"service\":\"org.example.Echo1\"}");

  /* Not provided here. */
  fake_conn_send_text (conn, DHF_XDM_CALL, 43,
                       "{\"service\":\"org.example.Nope1\",\"source\":\"dom-b\"}");
  msg = fake_conn_expect (conn, DHF_XDM_ERROR);
  g_assert_cmpuint (msg->id, ==, 43);
  g_assert_cmpstr (msg->code, ==, "not-found");

  /* PING is answered. */
  fake_conn_send_text (conn, DHF_XDM_PING, 44, "{}");
  msg = fake_conn_expect (conn, DHF_XDM_PONG);
  g_assert_cmpuint (msg->id, ==, 44);
  g_async_queue_push (data, GINT_TO_POINTER (1));

  msg = fake_conn_expect (conn, DHF_XDM_UNREGISTER);
  g_assert_cmpstr (msg->service, ==, "org.example.Echo1");
  fake_conn_send_text (conn, DHF_XDM_REPLY, msg->id, "{}");
  g_assert_true (fake_conn_wait_eof (conn));
}

static void
test_register (void)
{
  g_autofree gchar *path = socket_path ("register.sock");
  g_autoptr (GAsyncQueue) pinged = g_async_queue_new ();
  GThread *fake = fake_serve (path, script_register_and_call, pinged);
  g_autoptr (DhfClient) client = connect_client (path);
  g_autoptr (GError) error = NULL;
  ServiceData sd = { 0 };
  gboolean refused_notified = FALSE;
  gboolean dup_notified = FALSE;
  guint id;

  id = dhf_client_register_service (client, "org.example.Echo1", echo_handler, &sd,
                                    service_data_notify, &error);
  g_assert_no_error (error);
  g_assert_cmpuint (id, >, 0);

  /* Twice from this client: refused here. */
  g_assert_cmpuint (dhf_client_register_service (client, "org.example.Echo1", echo_handler,
                                                 &dup_notified, set_flag_notify, &error),
                    ==, 0);
  g_assert_error (error, DHF_ERROR, DHF_ERROR_EXISTS);
  g_assert_true (dup_notified);
  g_clear_error (&error);
  /* Invalid names never reach dhfd. */
  g_assert_cmpuint (dhf_client_register_service (client, "Echo", echo_handler, NULL, NULL, &error),
                    ==, 0);
  g_assert_error (error, DHF_ERROR, DHF_ERROR_INVALID_ARGS);
  g_clear_error (&error);
  /* dhfd's refusal, with its code. */
  g_assert_cmpuint (dhf_client_register_service (client, "org.dhf.framework.Mine", echo_handler,
                                                 &refused_notified, set_flag_notify, &error),
                    ==, 0);
  g_assert_error (error, DHF_ERROR, DHF_ERROR_NOT_AUTHORIZED);
  g_assert_true (refused_notified);
  g_clear_error (&error);

  iterate_until_count (&sd.calls, 2, "two calls of the handler");
  g_assert_true (sd.in_main_thread);
  g_assert_cmpstr (sd.source, ==, "dom0");
  g_assert_null (sd.argument);
  g_assert_cmpstr (sd.params, ==, "null");

  /* The fake pings after the calls: unregister once it has its PONG. */
  g_async_queue_pop (pinged);
  g_assert_true (dhf_client_unregister_service (client, id, &error));
  g_assert_no_error (error);
  g_assert_true (sd.notified);
  g_assert_false (dhf_client_unregister_service (client, id, &error));
  g_assert_error (error, DHF_ERROR, DHF_ERROR_NOT_FOUND);

  dhf_client_close (client);
  g_thread_join (fake);
  g_assert_cmpuint (sd.calls, ==, 2);
  service_data_clear (&sd);
}

static void
first_call_handler (DhfClient *client, DhfInvocation *invocation, gpointer user_data)
{
  ServiceData *sd = user_data;

  echo_handler (client, invocation, user_data);
  if (sd->calls == 1)
    {
      g_assert_cmpstr (sd->source, ==, "dom-b");
      g_assert_cmpstr (sd->argument, ==, "docs");
      assert_json_equal (sd->params, "{\"n\":[1,2,\"x\"]}");
    }
}

static void
test_handler_arguments (void)
{
  g_autofree gchar *path = socket_path ("args.sock");
  g_autoptr (GAsyncQueue) pinged = g_async_queue_new ();
  GThread *fake = fake_serve (path, script_register_and_call, pinged);
  g_autoptr (DhfClient) client = connect_client (path);
  g_autoptr (GError) error = NULL;
  ServiceData sd = { 0 };
  guint id;

  id = dhf_client_register_service (client, "org.example.Echo1", first_call_handler, &sd, NULL,
                                    &error);
  g_assert_cmpuint (id, >, 0);
  g_assert_cmpuint (dhf_client_register_service (client, "org.dhf.framework.Mine", echo_handler,
                                                 NULL, NULL, &error),
                    ==, 0);
  g_clear_error (&error);
  iterate_until_count (&sd.calls, 2, "two calls");
  g_async_queue_pop (pinged);
  g_assert_true (dhf_client_unregister_service (client, id, &error));
  dhf_client_close (client);
  g_thread_join (fake);
  service_data_clear (&sd);
}

/* ---- answers: invalid JSON, too large, dropped, late, abandoned ---------------------------- */

static void
script_answers (FakeConn *conn, gpointer data)
{
  ServiceData *sd = data;
  const DhfXdmMessage *msg;

  fake_conn_handshake (conn, "dom-p");
  msg = fake_conn_expect (conn, DHF_XDM_REGISTER);
  fake_conn_send_text (conn, DHF_XDM_REPLY, msg->id, "{}");

  sd->mode = "invalid";
  fake_conn_send_text (conn, DHF_XDM_CALL, 1,
                       "{\"service\":\"org.example.Echo1\",\"source\":\"b\"}");
  msg = fake_conn_expect (conn, DHF_XDM_ERROR);
  g_assert_cmpuint (msg->id, ==, 1);
  g_assert_cmpstr (msg->code, ==, "failed");
  g_assert_nonnull (strstr (msg->message, "invalid result"));
  g_assert_nonnull (strstr (msg->message, "org.example.Echo1"));

  sd->mode = "huge";
  fake_conn_send_text (conn, DHF_XDM_CALL, 100,
                       "{\"service\":\"org.example.Echo1\",\"source\":\"b\"}");
  msg = fake_conn_expect (conn, DHF_XDM_ERROR);
  g_assert_cmpuint (msg->id, ==, 100);
  g_assert_cmpstr (msg->code, ==, "limit-exceeded");
  g_assert_nonnull (strstr (msg->message, "does not fit in one message"));
  g_assert_nonnull (strstr (msg->message, "org.example.Echo1"));

  sd->mode = "null";
  fake_conn_send_text (conn, DHF_XDM_CALL, 2,
                       "{\"service\":\"org.example.Echo1\",\"source\":\"b\"}");
  msg = fake_conn_expect (conn, DHF_XDM_REPLY);
  g_assert_cmpuint (msg->id, ==, 2);
  g_assert_null (msg->value);

  sd->mode = "drop";
  fake_conn_send_text (conn, DHF_XDM_CALL, 3,
                       "{\"service\":\"org.example.Echo1\",\"source\":\"b\"}");
  msg = fake_conn_expect (conn, DHF_XDM_ERROR);
  g_assert_cmpuint (msg->id, ==, 3);
  g_assert_cmpstr (msg->code, ==, "failed");
  g_assert_nonnull (strstr (msg->message, "no reply"));

  /* Kept, then abandoned by the caller: the late answer is dropped. */
  sd->mode = "keep";
  fake_conn_send_text (conn, DHF_XDM_CALL, 4,
                       "{\"service\":\"org.example.Echo1\",\"source\":\"b\"}");
  fake_conn_send_text (conn, DHF_XDM_CANCEL, 4, "{}");
  /* ... which the test answers once the cancellable fired; then a PING
   * must be the next thing answered. */
  msg = fake_conn_expect (conn, DHF_XDM_PUBLISH);
  g_assert_cmpstr (msg->topic, ==, "org.example.Answered");
  fake_conn_send_text (conn, DHF_XDM_PING, 9, "{}");
  msg = fake_conn_expect (conn, DHF_XDM_PONG);
  g_assert_cmpuint (msg->id, ==, 9);

  /* Kept and answered later. */
  sd->mode = "keep";
  fake_conn_send_text (conn, DHF_XDM_CALL, 5,
                       "{\"service\":\"org.example.Echo1\",\"source\":\"b\"}");
  msg = fake_conn_expect (conn, DHF_XDM_REPLY);
  g_assert_cmpuint (msg->id, ==, 5);
  assert_json_equal (json_object_to_json_string (msg->value), "[\"late\"]");
  g_assert_true (fake_conn_wait_eof (conn));
}

static void
cancelled_cb (GCancellable *cancellable, gpointer data)
{
  *(gboolean *) data = TRUE;
}

static void
test_answers (void)
{
  g_autofree gchar *path = socket_path ("answers.sock");
  ServiceData sd = { 0 };
  GThread *fake = fake_serve (path, script_answers, &sd);
  g_autoptr (DhfClient) client = connect_client (path);
  g_autoptr (GError) error = NULL;
  gboolean cancelled = FALSE;

  g_assert_cmpuint (
      dhf_client_register_service (client, "org.example.Echo1", echo_handler, &sd, NULL, &error), >,
      0);
  iterate_until_count (&sd.calls, 5, "five calls");
  g_assert_nonnull (sd.kept);
  /* Cancelled already if the CANCEL came before the handler asked. */
  g_cancellable_connect (dhf_invocation_get_cancellable (sd.kept), G_CALLBACK (cancelled_cb),
                         &cancelled, NULL);
  iterate_until (&cancelled, "the invocation's cancellable");
  g_assert_true (dhf_invocation_return_json (sd.kept, "[\"dropped\"]"));
  g_clear_object (&sd.kept);
  g_assert_true (dhf_client_publish (client, "org.example.Answered", NULL, &error));

  iterate_until_count (&sd.calls, 6, "the sixth call");
  g_assert_nonnull (sd.kept);
  g_assert_false (g_cancellable_is_cancelled (dhf_invocation_get_cancellable (sd.kept)));
  g_assert_true (dhf_invocation_return_json (sd.kept, "[\"late\"]"));
  g_clear_object (&sd.kept);

  dhf_client_close (client);
  g_thread_join (fake);
  service_data_clear (&sd);
}

/* ---- calls ------------------------------------------------------------------------ */

static const struct
{
  const gchar *nick;
  DhfError code;
} error_cases[] = {
  { "not-authorized", DHF_ERROR_NOT_AUTHORIZED },
  { "limit-exceeded", DHF_ERROR_LIMIT_EXCEEDED },
  { "unavailable", DHF_ERROR_UNAVAILABLE },
  { "timeout", DHF_ERROR_TIMEOUT },
  { "protocol", DHF_ERROR_PROTOCOL },
  { "invalid-args", DHF_ERROR_INVALID_ARGS },
  { "not-found", DHF_ERROR_NOT_FOUND },
  { "exists", DHF_ERROR_EXISTS },
  { "cancelled", DHF_ERROR_CANCELLED },
  { "failed", DHF_ERROR_FAILED },
  { "disconnected", DHF_ERROR_DISCONNECTED },
  { "some-future-code", DHF_ERROR_FAILED },
};

static void
script_calls (FakeConn *conn, gpointer data)
{
  const DhfXdmMessage *msg;

  fake_conn_handshake (conn, "dom-c");
  msg = fake_conn_expect (conn, DHF_XDM_CALL);
  g_assert_cmpstr (msg->service, ==, "org.example.Sum1");
  g_assert_cmpstr (msg->arg, ==, "x");
  g_assert_cmpstr (msg->target, ==, "dom-b");
  g_assert_null (msg->source);
  g_assert_cmpuint (msg->timeout_ms, ==, 5000);
  assert_json_equal (json_object_to_json_string (msg->value), "{\"a\":1,\"b\":2}");
  fake_conn_send_text (conn, DHF_XDM_REPLY, msg->id, "{\"result\":3}");

  /* Default timeout, no params, no target; a REPLY without result. */
  msg = fake_conn_expect (conn, DHF_XDM_CALL);
  g_assert_cmpuint (msg->timeout_ms, ==, DHF_XDM_DEFAULT_TIMEOUT_MS);
  g_assert_null (msg->value);
  g_assert_null (msg->target);
  g_assert_null (msg->arg);
  fake_conn_send_text (conn, DHF_XDM_REPLY, msg->id, "{}");

  for (guint round = 0; round < 2; round++)
    for (guint i = 0; i < G_N_ELEMENTS (error_cases); i++)
      {
        g_autofree gchar *text = g_strdup_printf ("refused with %s", error_cases[i].nick);

        msg = fake_conn_expect (conn, DHF_XDM_CALL);
        fake_conn_send_error (conn, msg->id, error_cases[i].nick, text);
      }

  /* Async, answered out of order. */
  {
    guint32 first;

    msg = fake_conn_expect (conn, DHF_XDM_CALL);
    first = msg->id;
    msg = fake_conn_expect (conn, DHF_XDM_CALL);
    fake_conn_send_text (conn, DHF_XDM_REPLY, msg->id, "{\"result\":\"second\"}");
    fake_conn_send_text (conn, DHF_XDM_REPLY, first, "{\"result\":{\"first\":true}}");
  }
  g_assert_true (fake_conn_wait_eof (conn));
}

typedef struct
{
  gboolean done;
  gchar *result;
  GError *error;
  GThread *thread;
} AsyncResult;

static void
call_done_cb (GObject *source, GAsyncResult *result, gpointer data)
{
  AsyncResult *ar = data;

  ar->result = dhf_client_call_finish (DHF_CLIENT (source), result, &ar->error);
  ar->thread = g_thread_self ();
  ar->done = TRUE;
}

static void
async_result_clear (AsyncResult *ar)
{
  g_clear_pointer (&ar->result, g_free);
  g_clear_error (&ar->error);
  ar->done = FALSE;
}

static void
test_calls (void)
{
  g_autofree gchar *path = socket_path ("calls.sock");
  GThread *fake = fake_serve (path, script_calls, NULL);
  g_autoptr (DhfClient) client = connect_client (path);
  g_autoptr (GError) error = NULL;
  g_autofree gchar *result = NULL;
  AsyncResult a1 = { 0 }, a2 = { 0 };

  /* Refused before anything is sent. */
  g_assert_null (
      dhf_client_call_sync (client, "org.example.Sum1", NULL, "{\"a\":", 0, NULL, &error));
  g_assert_error (error, DHF_ERROR, DHF_ERROR_INVALID_ARGS);
  g_clear_error (&error);
  g_assert_null (dhf_client_call_sync (client, "org.example.Sum1", NULL, "1 2", 0, NULL, &error));
  g_assert_error (error, DHF_ERROR, DHF_ERROR_INVALID_ARGS);
  g_clear_error (&error);
  g_assert_null (dhf_client_call_sync (client, "Sum", NULL, NULL, 0, NULL, &error));
  g_assert_error (error, DHF_ERROR, DHF_ERROR_INVALID_ARGS);
  g_clear_error (&error);
  g_assert_null (
      dhf_client_call_sync (client, "org.example.Sum1", "no/such", NULL, 0, NULL, &error));
  g_assert_error (error, DHF_ERROR, DHF_ERROR_INVALID_ARGS);
  g_clear_error (&error);
  g_assert_null (
      dhf_client_call_sync (client, "org.example.Sum1", NULL, NULL, 600001, NULL, &error));
  g_assert_error (error, DHF_ERROR, DHF_ERROR_INVALID_ARGS);
  g_clear_error (&error);

  result = dhf_client_call_sync (client, "org.example.Sum1+x", "dom-b", " {\"a\":1,\"b\":2} ", 5000,
                                 NULL, &error);
  g_assert_no_error (error);
  g_assert_cmpstr (result, ==, "3");
  g_free (result);
  result = dhf_client_call_sync (client, "org.example.Sum1", NULL, NULL, 0, NULL, &error);
  g_assert_no_error (error);
  g_assert_cmpstr (result, ==, "null");
  g_clear_pointer (&result, g_free);

  for (guint i = 0; i < G_N_ELEMENTS (error_cases); i++)
    {
      g_assert_null (
          dhf_client_call_sync (client, "org.example.Sum1", NULL, NULL, 0, NULL, &error));
      g_assert_error (error, DHF_ERROR, (gint) error_cases[i].code);
      g_assert_nonnull (strstr (error->message, error_cases[i].nick));
      g_clear_error (&error);
    }
  for (guint i = 0; i < G_N_ELEMENTS (error_cases); i++)
    {
      dhf_client_call (client, "org.example.Sum1", NULL, "[]", 0, NULL, call_done_cb, &a1);
      iterate_until (&a1.done, "an async error");
      g_assert_null (a1.result);
      g_assert_error (a1.error, DHF_ERROR, (gint) error_cases[i].code);
      async_result_clear (&a1);
    }

  dhf_client_call (client, "org.example.Sum1", NULL, NULL, 0, NULL, call_done_cb, &a1);
  dhf_client_call (client, "org.example.Sum1", NULL, NULL, 0, NULL, call_done_cb, &a2);
  iterate_until (&a1.done, "first async call");
  iterate_until (&a2.done, "second async call");
  g_assert_no_error (a1.error);
  g_assert_no_error (a2.error);
  assert_json_equal (a1.result, "{\"first\":true}");
  g_assert_cmpstr (a2.result, ==, "\"second\"");
  g_assert_true (a1.thread == g_thread_self ());
  async_result_clear (&a1);
  async_result_clear (&a2);

  /* Invalid arguments of an async call complete with the error. */
  dhf_client_call (client, "org.example.Sum1", NULL, "nope", 0, NULL, call_done_cb, &a1);
  iterate_until (&a1.done, "an async refusal");
  g_assert_error (a1.error, DHF_ERROR, DHF_ERROR_INVALID_ARGS);
  async_result_clear (&a1);

  dhf_client_close (client);
  g_thread_join (fake);
}

/* ---- deadlines and cancellation --------------------------------------------------- */

static void
script_deadlines (FakeConn *conn, gpointer data)
{
  const DhfXdmMessage *msg;
  guint32 id;

  fake_conn_handshake (conn, "dom-c");
  for (guint i = 0; i < 2; i++)
    {
      msg = fake_conn_expect (conn, DHF_XDM_CALL);
      g_assert_cmpuint (msg->timeout_ms, ==, 200);
      id = msg->id;
      /* Never answered: the client gives up and says so. */
      msg = fake_conn_expect (conn, DHF_XDM_CANCEL);
      g_assert_cmpuint (msg->id, ==, id);
      /* An answer that comes too late is ignored. */
      fake_conn_send_text (conn, DHF_XDM_REPLY, id, "{\"result\":\"late\"}");
    }
  msg = fake_conn_expect (conn, DHF_XDM_CALL);
  fake_conn_send_text (conn, DHF_XDM_REPLY, msg->id, "{\"result\":\"in time\"}");
  g_assert_true (fake_conn_wait_eof (conn));
}

static void
test_deadline (void)
{
  g_autofree gchar *path = socket_path ("deadline.sock");
  GThread *fake = fake_serve (path, script_deadlines, NULL);
  g_autoptr (DhfClient) client = connect_client (path);
  g_autoptr (GError) error = NULL;
  g_autofree gchar *result = NULL;
  AsyncResult ar = { 0 };

  g_assert_null (dhf_client_call_sync (client, "org.example.Slow1", NULL, NULL, 200, NULL, &error));
  g_assert_error (error, DHF_ERROR, DHF_ERROR_TIMEOUT);
  g_clear_error (&error);

  dhf_client_call (client, "org.example.Slow1", NULL, NULL, 200, NULL, call_done_cb, &ar);
  iterate_until (&ar.done, "the async deadline");
  g_assert_error (ar.error, DHF_ERROR, DHF_ERROR_TIMEOUT);
  async_result_clear (&ar);

  result = dhf_client_call_sync (client, "org.example.Slow1", NULL, NULL, 0, NULL, &error);
  g_assert_no_error (error);
  g_assert_cmpstr (result, ==, "\"in time\"");
  dhf_client_close (client);
  g_thread_join (fake);
}

static void
script_cancel (FakeConn *conn, gpointer data)
{
  GCancellable **cancellables = data;
  const DhfXdmMessage *msg;

  fake_conn_handshake (conn, "dom-c");
  for (guint i = 0; i < 2; i++)
    {
      guint32 id;

      msg = fake_conn_expect (conn, DHF_XDM_CALL);
      id = msg->id;
      g_cancellable_cancel (cancellables[i]);
      msg = fake_conn_expect (conn, DHF_XDM_CANCEL);
      g_assert_cmpuint (msg->id, ==, id);
    }
  /* The call with a cancellable cancelled beforehand never came. */
  msg = fake_conn_expect (conn, DHF_XDM_CALL);
  g_assert_cmpstr (msg->service, ==, "org.example.After1");
  fake_conn_send_text (conn, DHF_XDM_REPLY, msg->id, "{\"result\":1}");
  g_assert_true (fake_conn_wait_eof (conn));
}

static void
test_cancel (void)
{
  g_autofree gchar *path = socket_path ("cancel.sock");
  GCancellable *cancellables[2] = { g_cancellable_new (), g_cancellable_new () };
  GThread *fake = fake_serve (path, script_cancel, cancellables);
  g_autoptr (DhfClient) client = connect_client (path);
  g_autoptr (GCancellable) already = g_cancellable_new ();
  g_autoptr (GError) error = NULL;
  g_autofree gchar *result = NULL;
  AsyncResult ar = { 0 };

  g_assert_null (
      dhf_client_call_sync (client, "org.example.Slow1", NULL, NULL, 0, cancellables[0], &error));
  g_assert_error (error, DHF_ERROR, DHF_ERROR_CANCELLED);
  g_clear_error (&error);

  dhf_client_call (client, "org.example.Slow1", NULL, NULL, 0, cancellables[1], call_done_cb, &ar);
  iterate_until (&ar.done, "the async cancellation");
  g_assert_error (ar.error, DHF_ERROR, DHF_ERROR_CANCELLED);
  async_result_clear (&ar);

  g_cancellable_cancel (already);
  g_assert_null (
      dhf_client_call_sync (client, "org.example.Slow1", NULL, NULL, 0, already, &error));
  g_assert_true (error != NULL);
  g_clear_error (&error);
  dhf_client_call (client, "org.example.Slow1", NULL, NULL, 0, already, call_done_cb, &ar);
  iterate_until (&ar.done, "an async call cancelled beforehand");
  g_assert_error (ar.error, DHF_ERROR, DHF_ERROR_CANCELLED);
  async_result_clear (&ar);

  result = dhf_client_call_sync (client, "org.example.After1", NULL, NULL, 0, NULL, &error);
  g_assert_no_error (error);
  g_assert_cmpstr (result, ==, "1");
  dhf_client_close (client);
  g_thread_join (fake);
  g_object_unref (cancellables[0]);
  g_object_unref (cancellables[1]);
}

/* Closing the client fails what is in flight with CANCELLED. */
static void
script_close_pending (FakeConn *conn, gpointer data)
{
  fake_conn_handshake (conn, "dom-c");
  fake_conn_expect (conn, DHF_XDM_CALL);
  g_async_queue_push (data, GINT_TO_POINTER (1));
  g_assert_true (fake_conn_wait_eof (conn));
}

typedef struct
{
  DhfClient *client;
  GAsyncQueue *sent;
} Closer;

static gpointer
close_when_sent_thread (gpointer data)
{
  Closer *closer = data;

  g_async_queue_pop (closer->sent);
  dhf_client_close (closer->client);
  return NULL;
}

static void
test_close_pending (void)
{
  g_autofree gchar *path = socket_path ("close.sock");
  g_autoptr (GAsyncQueue) sent = g_async_queue_new ();
  GThread *fake = fake_serve (path, script_close_pending, sent);
  g_autoptr (DhfClient) client = connect_client (path);
  g_autoptr (GError) error = NULL;
  Closer closer = { client, sent };
  GThread *thread = g_thread_new ("closer", close_when_sent_thread, &closer);

  g_assert_null (dhf_client_call_sync (client, "org.example.Slow1", NULL, NULL, 0, NULL, &error));
  g_assert_error (error, DHF_ERROR, DHF_ERROR_CANCELLED);
  g_thread_join (thread);
  g_thread_join (fake);
}

/* ---- reconnection -------------------------------------------------------------------- */

/* Answers the REGISTER and SUBSCRIBE that (re)establish a client's state,
 * in whatever order they come. */
static void
expect_restore (FakeConn *conn, const gchar *service, const gchar *topic)
{
  gboolean got_service = FALSE, got_topic = FALSE;

  while (!got_service || !got_topic)
    {
      const DhfXdmMessage *msg = fake_conn_read (conn);

      g_assert_nonnull (msg);
      if (msg->type == DHF_XDM_REGISTER && !got_service)
        {
          g_assert_cmpstr (msg->service, ==, service);
          got_service = TRUE;
        }
      else if (msg->type == DHF_XDM_SUBSCRIBE && !got_topic)
        {
          g_assert_cmpstr (msg->topic, ==, topic);
          got_topic = TRUE;
        }
      else
        g_error ("unexpected %s while restoring", dhf_xdm_type_to_string (msg->type));
      fake_conn_send_text (conn, DHF_XDM_REPLY, msg->id, "{}");
    }
}

static void
script_reconnect (FakeConn *conn, gint listen_fd, const gchar *listen_path)
{
  const DhfXdmMessage *msg;
  g_autoptr (FakeConn) again = NULL;

  fake_conn_handshake (conn, "dom-r");
  expect_restore (conn, "org.example.Echo1", "org.example.Alerts");
  msg = fake_conn_expect (conn, DHF_XDM_CALL);
  g_assert_cmpstr (msg->service, ==, "org.example.Lost1");
  /* dhfd goes away mid-call. */
  close (conn->fd);
  conn->fd = -1;

  again
      = fake_conn_new (listen_fd >= 0 ? fake_accept (listen_fd) : fake_connect_unix (listen_path));
  fake_conn_handshake (again, "dom-r");
  expect_restore (again, "org.example.Echo1", "org.example.Alerts");
  /* Restored: a call reaches the handler, an event the subscriber. */
  fake_conn_send_text (again, DHF_XDM_CALL, 7,
                       "{\"service\":\"org.example.Echo1\",\"source\":\"dom-b\",\"params\":1}");
  msg = fake_conn_expect (again, DHF_XDM_REPLY);
  g_assert_cmpuint (msg->id, ==, 7);
  fake_conn_send_text (again, DHF_XDM_EVENT, 0,
                       "{\"topic\":\"org.example.Alerts\",\"source\":\"dom-b\",\"data\":\"back\"}");
  msg = fake_conn_expect (again, DHF_XDM_CALL);
  fake_conn_send_text (again, DHF_XDM_REPLY, msg->id, "{\"result\":\"ok\"}");
  g_assert_true (fake_conn_wait_eof (again));
}

typedef struct
{
  gint listen_fd;
  gchar *path;
} ReconnectJob;

static gpointer
reconnect_unix_thread (gpointer data)
{
  ReconnectJob *job = data;
  g_autoptr (FakeConn) conn = fake_conn_new (fake_accept (job->listen_fd));

  script_reconnect (conn, job->listen_fd, NULL);
  close (job->listen_fd);
  return NULL;
}

static gpointer
reconnect_listen_thread (gpointer data)
{
  ReconnectJob *job = data;
  g_autoptr (FakeConn) conn = fake_conn_new (fake_connect_unix (job->path));

  script_reconnect (conn, -1, job->path);
  return NULL;
}

typedef struct
{
  guint count;
  gchar *last_data;
  gchar *last_source;
  gchar *last_topic;
  gboolean in_main_thread;
  gboolean notified;
} EventData;

static void
event_data_notify (gpointer data)
{
  ((EventData *) data)->notified = TRUE;
}

static void
event_handler (DhfClient *client, const gchar *topic, const gchar *source, const gchar *data_json,
               gpointer user_data)
{
  EventData *ed = user_data;

  ed->count++;
  ed->in_main_thread = g_main_context_is_owner (g_main_context_default ());
  g_free (ed->last_data);
  g_free (ed->last_source);
  g_free (ed->last_topic);
  ed->last_data = g_strdup (data_json);
  ed->last_source = g_strdup (source);
  ed->last_topic = g_strdup (topic);
}

static void
event_data_clear (EventData *ed)
{
  g_free (ed->last_data);
  g_free (ed->last_source);
  g_free (ed->last_topic);
}

static void
connect_done_cb (GObject *source, GAsyncResult *result, gpointer data)
{
  g_autoptr (GError) error = NULL;

  g_assert_true (dhf_client_connect_finish (DHF_CLIENT (source), result, &error));
  g_assert_no_error (error);
  *(gboolean *) data = TRUE;
}

static void
connected_tracker_cb (GObject *object, GParamSpec *pspec, gpointer data)
{
  GString *trace = data;

  g_string_append_c (trace, dhf_client_get_connected (DHF_CLIENT (object)) ? '1' : '0');
}

static void
run_reconnect (gboolean listen)
{
  g_autofree gchar *path = socket_path (listen ? "reconnect-listen.sock" : "reconnect.sock");
  g_autofree gchar *address = g_strdup_printf ("%s:%s", listen ? "listen" : "unix", path);
  g_autoptr (DhfClient) client = dhf_client_new (address);
  g_autoptr (GString) trace = g_string_new (NULL);
  g_autoptr (GError) error = NULL;
  g_autofree gchar *result = NULL;
  ReconnectJob job = { -1, path };
  ServiceData sd = { 0 };
  EventData ed = { 0 };
  AsyncResult ar = { 0 };
  gboolean connected = FALSE;
  GThread *fake;

  g_signal_connect (client, "notify::connected", G_CALLBACK (connected_tracker_cb), trace);
  if (listen)
    {
      /* The socket listens once dhf_client_connect() returns. */
      dhf_client_connect (client, NULL, connect_done_cb, &connected);
      g_assert_true (g_file_test (path, G_FILE_TEST_EXISTS));
      fake = g_thread_new ("fake-dhfd", reconnect_listen_thread, &job);
      iterate_until (&connected, "dhfd to connect");
    }
  else
    {
      job.listen_fd = fake_listen_unix (path);
      fake = g_thread_new ("fake-dhfd", reconnect_unix_thread, &job);
      g_assert_true (dhf_client_connect_sync (client, NULL, &error));
    }
  g_assert_cmpstr (dhf_client_get_domain (client), ==, "dom-r");
  g_assert_cmpuint (
      dhf_client_register_service (client, "org.example.Echo1", echo_handler, &sd, NULL, &error), >,
      0);
  g_assert_cmpuint (
      dhf_client_subscribe (client, "org.example.Alerts", event_handler, &ed, NULL, &error), >, 0);
  g_assert_no_error (error);

  dhf_client_call (client, "org.example.Lost1", NULL, NULL, 0, NULL, call_done_cb, &ar);
  iterate_until (&ar.done, "the call lost with the connection");
  g_assert_error (ar.error, DHF_ERROR, DHF_ERROR_DISCONNECTED);
  async_result_clear (&ar);

  /* Restored by the client: the fake calls and publishes. */
  iterate_until_count (&sd.calls, 1, "a call after the reconnection");
  iterate_until_count (&ed.count, 1, "an event after the reconnection");
  g_assert_cmpstr (ed.last_data, ==, "\"back\"");
  result = dhf_client_call_sync (client, "org.example.Sum1", NULL, NULL, 0, NULL, &error);
  g_assert_no_error (error);
  g_assert_cmpstr (result, ==, "\"ok\"");
  g_assert_true (dhf_client_get_connected (client));
  /* One notification per transition: connected, lost, restored (each
   * reads the state of the moment it runs). */
  while (trace->len < 3)
    g_main_context_iteration (NULL, TRUE);
  g_assert_cmpuint (trace->len, ==, 3);
  g_assert_cmpint (trace->str[2], ==, '1');

  dhf_client_close (client);
  g_signal_handlers_disconnect_by_data (client, trace);
  g_thread_join (fake);
  if (listen)
    g_assert_false (g_file_test (path, G_FILE_TEST_EXISTS));
  service_data_clear (&sd);
  event_data_clear (&ed);
}

static void
test_reconnect_unix (void)
{
  run_reconnect (FALSE);
}

static void
test_reconnect_listen (void)
{
  run_reconnect (TRUE);
}

static void
script_no_reconnect (FakeConn *conn, gpointer data)
{
  fake_conn_handshake (conn, "dom-r");
  /* Goes away; the client must not come back (the fake's listener is
   * closed by then: a reconnection would fail, but must not be tried). */
}

static void
test_no_reconnect (void)
{
  g_autofree gchar *path = socket_path ("no-reconnect.sock");
  GThread *fake = fake_serve (path, script_no_reconnect, NULL);
  g_autoptr (DhfClient) client = connect_client (path);
  g_autoptr (GString) trace = g_string_new (NULL);

  dhf_client_set_auto_reconnect (client, FALSE);
  g_assert_false (dhf_client_get_auto_reconnect (client));
  g_signal_connect (client, "notify::connected", G_CALLBACK (connected_tracker_cb), trace);
  g_thread_join (fake);
  while (trace->len < 2)
    g_main_context_iteration (NULL, TRUE);
  g_assert_cmpint (trace->str[1], ==, '0');
  g_assert_false (dhf_client_get_connected (client));
  /* Nothing more: no reconnection was tried (it would notify again). */
  while (g_main_context_iteration (NULL, FALSE))
    ;
  g_assert_cmpuint (trace->len, ==, 2);
  g_signal_handlers_disconnect_by_data (client, trace);
}

/* ---- events ------------------------------------------------------------------------------ */

static void
script_events (FakeConn *conn, gpointer data)
{
  const DhfXdmMessage *msg;

  fake_conn_handshake (conn, "dom-e");
  msg = fake_conn_expect (conn, DHF_XDM_SUBSCRIBE);
  g_assert_cmpstr (msg->topic, ==, "org.example.Alerts");
  fake_conn_send_text (conn, DHF_XDM_REPLY, msg->id, "{}");
  /* The second subscription of the topic does not ask dhfd again; a
   * refused one reports dhfd's error. */
  msg = fake_conn_expect (conn, DHF_XDM_SUBSCRIBE);
  g_assert_cmpstr (msg->topic, ==, "org.example.Secret");
  fake_conn_send_error (conn, msg->id, "limit-exceeded", "too many subscriptions");

  fake_conn_send_text (
      conn, DHF_XDM_EVENT, 0,
      "{\"topic\":\"org.example.Alerts\",\"source\":\"dom-b\",\"data\":{\"level\":3}}");
  fake_conn_send_text (conn, DHF_XDM_EVENT, 0,
                       "{\"topic\":\"org.example.Alerts\",\"source\":\"dom0\"}");
  /* Not subscribed: dropped. */
  fake_conn_send_text (conn, DHF_XDM_EVENT, 0,
                       "{\"topic\":\"org.example.Other\",\"source\":\"dom0\"}");

  msg = fake_conn_expect (conn, DHF_XDM_PUBLISH);
  g_assert_cmpuint (msg->id, ==, 0);
  g_assert_cmpstr (msg->topic, ==, "org.example.News");
  g_assert_null (msg->source);
  assert_json_equal (json_object_to_json_string (msg->value), "[1,2]");
  msg = fake_conn_expect (conn, DHF_XDM_PUBLISH);
  g_assert_null (msg->value);

  msg = fake_conn_expect (conn, DHF_XDM_UNSUBSCRIBE);
  g_assert_cmpstr (msg->topic, ==, "org.example.Alerts");
  fake_conn_send_text (conn, DHF_XDM_REPLY, msg->id, "{}");
  g_assert_true (fake_conn_wait_eof (conn));
}

static void
test_events (void)
{
  g_autofree gchar *path = socket_path ("events.sock");
  GThread *fake = fake_serve (path, script_events, NULL);
  g_autoptr (DhfClient) client = connect_client (path);
  g_autoptr (GError) error = NULL;
  EventData e1 = { 0 }, e2 = { 0 };
  gboolean n3 = FALSE;
  guint s1, s2;

  s1 = dhf_client_subscribe (client, "org.example.Alerts", event_handler, &e1, event_data_notify,
                             &error);
  g_assert_no_error (error);
  s2 = dhf_client_subscribe (client, "org.example.Alerts", event_handler, &e2, event_data_notify,
                             &error);
  g_assert_no_error (error);
  g_assert_cmpuint (s1, >, 0);
  g_assert_cmpuint (s2, >, 0);
  g_assert_cmpuint (s1, !=, s2);
  g_assert_cmpuint (dhf_client_subscribe (client, "org.example.Secret", event_handler, &n3,
                                          set_flag_notify, &error),
                    ==, 0);
  g_assert_error (error, DHF_ERROR, DHF_ERROR_LIMIT_EXCEEDED);
  g_assert_true (n3);
  g_clear_error (&error);
  g_assert_cmpuint (dhf_client_subscribe (client, "alerts", event_handler, NULL, NULL, &error), ==,
                    0);
  g_assert_error (error, DHF_ERROR, DHF_ERROR_INVALID_ARGS);
  g_clear_error (&error);

  iterate_until_count (&e1.count, 2, "two events (first subscriber)");
  iterate_until_count (&e2.count, 2, "two events (second subscriber)");
  g_assert_true (e1.in_main_thread);
  g_assert_cmpstr (e1.last_topic, ==, "org.example.Alerts");
  g_assert_cmpstr (e1.last_source, ==, "dom0");
  g_assert_null (e1.last_data);

  g_assert_true (dhf_client_publish (client, "org.example.News", "[1, 2]", &error));
  g_assert_true (dhf_client_publish (client, "org.example.News", NULL, &error));
  g_assert_false (dhf_client_publish (client, "org.example.News", "[1,", &error));
  g_assert_error (error, DHF_ERROR, DHF_ERROR_INVALID_ARGS);
  g_clear_error (&error);

  g_assert_true (dhf_client_unsubscribe (client, s1, &error));
  g_assert_true (e1.notified);
  g_assert_false (e2.notified);
  g_assert_true (dhf_client_unsubscribe (client, s2, &error));
  g_assert_no_error (error);
  g_assert_true (e2.notified);
  g_assert_false (dhf_client_unsubscribe (client, s2, &error));
  g_assert_error (error, DHF_ERROR, DHF_ERROR_NOT_FOUND);
  dhf_client_close (client);
  g_thread_join (fake);
  g_assert_cmpuint (e1.count, ==, 2);
  event_data_clear (&e1);
  event_data_clear (&e2);
}

static void
record_first_event (DhfClient *client, const gchar *topic, const gchar *source,
                    const gchar *data_json, gpointer user_data)
{
  EventData *ed = user_data;

  if (ed->count == 0)
    {
      g_assert_cmpstr (source, ==, "dom-b");
      assert_json_equal (data_json, "{\"level\":3}");
    }
  event_handler (client, topic, source, data_json, user_data);
}

static void
test_event_arguments (void)
{
  g_autofree gchar *path = socket_path ("event-args.sock");
  GThread *fake = fake_serve (path, script_events, NULL);
  g_autoptr (DhfClient) client = connect_client (path);
  g_autoptr (GError) error = NULL;
  EventData ed = { 0 };
  guint id;

  id = dhf_client_subscribe (client, "org.example.Alerts", record_first_event, &ed, NULL, &error);
  g_assert_cmpuint (
      dhf_client_subscribe (client, "org.example.Secret", event_handler, NULL, NULL, &error), ==,
      0);
  g_clear_error (&error);
  iterate_until_count (&ed.count, 2, "two events");
  g_assert_true (dhf_client_publish (client, "org.example.News", "[1,2]", &error));
  g_assert_true (dhf_client_publish (client, "org.example.News", NULL, &error));
  g_assert_true (dhf_client_unsubscribe (client, id, &error));
  dhf_client_close (client);
  g_thread_join (fake);
  event_data_clear (&ed);
}

/* ---- streams ---------------------------------------------------------------------------- */

static guint8
pattern_byte (guint64 offset, guint seed)
{
  return (guint8) ((offset * 7 + seed + (offset >> 13)) & 0xff);
}

/* Receives data of stream id until its CLOSE, enforcing the credit the
 * fake granted (window, then half-windows as it consumes). Returns the
 * byte count; checks the pattern. */
static guint64
fake_receive (FakeConn *conn, guint32 id, guint32 window, guint seed)
{
  guint64 total = 0;
  guint64 credit = window;
  guint64 consumed = 0;

  for (;;)
    {
      const DhfXdmMessage *msg = fake_conn_read (conn);

      g_assert_nonnull (msg);
      if (msg->type == DHF_XDM_STREAM_CLOSE)
        {
          g_assert_cmpuint (msg->id, ==, id);
          g_assert_null (msg->code);
          return total;
        }
      /* Credit for what the fake sent before, as the client reads it. */
      if (msg->type == DHF_XDM_STREAM_CREDIT)
        continue;
      g_assert_cmpint (msg->type, ==, DHF_XDM_STREAM_DATA);
      g_assert_cmpuint (msg->id, ==, id);
      g_assert_cmpuint (msg->raw_length, >, 0);
      g_assert_cmpuint (msg->raw_length, <=, DHF_STREAM_MAX_FRAME);
      if (msg->raw_length > credit)
        g_error ("the client sent %" G_GSIZE_FORMAT " bytes with %" G_GUINT64_FORMAT " of credit",
                 msg->raw_length, credit);
      credit -= msg->raw_length;
      for (gsize i = 0; i < msg->raw_length; i++)
        if (msg->raw[i] != pattern_byte (total + i, seed))
          g_error ("byte %" G_GUINT64_FORMAT " differs", total + i);
      total += msg->raw_length;
      consumed += msg->raw_length;
      if (consumed >= window / 2)
        {
          g_autofree gchar *body = g_strdup_printf ("{\"bytes\":%" G_GUINT64_FORMAT "}", consumed);

          fake_conn_send_text (conn, DHF_XDM_STREAM_CREDIT, id, body);
          credit += consumed;
          consumed = 0;
        }
    }
}

/* Sends size bytes on stream id within the client's credit (window, then
 * what its STREAM_CREDITs give), then half-closes. */
static void
fake_send (FakeConn *conn, guint32 id, guint32 window, guint64 size, guint seed)
{
  guint64 credit = window;
  guint64 sent = 0;
  guint8 *buf = g_malloc (100 * 1024);

  while (sent < size)
    {
      gsize n = (gsize) MIN (MIN (size - sent, 100 * 1024), credit);

      if (n == 0)
        {
          const DhfXdmMessage *msg = fake_conn_expect (conn, DHF_XDM_STREAM_CREDIT);

          g_assert_cmpuint (msg->id, ==, id);
          /* Credit comes once half the window was read. */
          g_assert_cmpuint (msg->bytes, >=, DHF_STREAM_WINDOW / 2);
          credit += msg->bytes;
          continue;
        }
      for (gsize i = 0; i < n; i++)
        buf[i] = pattern_byte (sent + i, seed);
      fake_conn_send_raw (conn, id, buf, n);
      sent += n;
      credit -= n;
    }
  fake_conn_send_text (conn, DHF_XDM_STREAM_CLOSE, id, "{}");
  g_free (buf);
}

static void
write_pattern (GOutputStream *out, guint64 size, guint seed)
{
  gsize chunk = 300 * 1024;
  g_autofree guint8 *buf = g_malloc (chunk);
  guint64 done = 0;

  while (done < size)
    {
      gsize n = (gsize) MIN (chunk, size - done);
      gsize written = 0;
      g_autoptr (GError) error = NULL;

      for (gsize i = 0; i < n; i++)
        buf[i] = pattern_byte (done + i, seed);
      g_assert_true (g_output_stream_write_all (out, buf, n, &written, NULL, &error));
      g_assert_no_error (error);
      done += n;
    }
}

static guint64
read_pattern (GInputStream *in, guint seed)
{
  g_autofree guint8 *buf = g_malloc (64 * 1024);
  guint64 total = 0;

  for (;;)
    {
      g_autoptr (GError) error = NULL;
      gssize n = g_input_stream_read (in, buf, 64 * 1024, NULL, &error);

      g_assert_no_error (error);
      if (n == 0)
        return total;
      for (gssize i = 0; i < n; i++)
        if (buf[i] != pattern_byte (total + (guint64) i, seed))
          g_error ("byte %" G_GUINT64_FORMAT " differs", total + (guint64) i);
      total += (guint64) n;
    }
}

#define STREAM_SIZE (8 * MIB)

static void
script_stream_open (FakeConn *conn, gpointer data)
{
  const DhfXdmMessage *msg;
  guint32 id, client_window;

  fake_conn_handshake (conn, "dom-s");
  msg = fake_conn_expect (conn, DHF_XDM_STREAM_OPEN);
  g_assert_cmpstr (msg->service, ==, "org.example.Pipe1");
  g_assert_cmpstr (msg->arg, ==, "big");
  g_assert_cmpstr (msg->target, ==, "dom-p");
  id = msg->id;
  client_window = msg->window;
  g_assert_cmpuint (client_window, ==, DHF_STREAM_WINDOW);
  /* A small window of our own: the client must wait for credit. */
  fake_conn_send_text (conn, DHF_XDM_REPLY, id, "{\"window\":196608}");
  g_assert_cmpuint (fake_receive (conn, id, 196608, 1), ==, STREAM_SIZE);
  fake_send (conn, id, client_window, STREAM_SIZE, 2);

  /* A refused one. */
  msg = fake_conn_expect (conn, DHF_XDM_STREAM_OPEN);
  fake_conn_send_error (conn, msg->id, "not-authorized", "no streams for you");
  g_assert_true (fake_conn_wait_eof (conn));
}

static void
test_stream_open (void)
{
  g_autofree gchar *path = socket_path ("stream-open.sock");
  GThread *fake = fake_serve (path, script_stream_open, NULL);
  g_autoptr (DhfClient) client = connect_client (path);
  g_autoptr (GError) error = NULL;
  g_autoptr (DhfStream) stream = NULL;
  g_autoptr (DhfStream) refused = NULL;

  stream = dhf_client_open_stream_sync (client, "org.example.Pipe1+big", "dom-p", NULL, &error);
  g_assert_no_error (error);
  g_assert_true (G_IS_IO_STREAM (stream));
  g_assert_cmpstr (dhf_stream_get_service (stream), ==, "org.example.Pipe1+big");
  g_assert_cmpstr (dhf_stream_get_peer (stream), ==, "dom-p");

  write_pattern (g_io_stream_get_output_stream (G_IO_STREAM (stream)), STREAM_SIZE, 1);
  g_assert_true (
      g_output_stream_close (g_io_stream_get_output_stream (G_IO_STREAM (stream)), NULL, &error));
  g_assert_cmpuint (read_pattern (g_io_stream_get_input_stream (G_IO_STREAM (stream)), 2), ==,
                    STREAM_SIZE);
  g_assert_true (g_io_stream_close (G_IO_STREAM (stream), NULL, &error));
  g_assert_no_error (error);

  refused = dhf_client_open_stream_sync (client, "org.example.Pipe1", NULL, NULL, &error);
  g_assert_null (refused);
  g_assert_error (error, DHF_ERROR, DHF_ERROR_NOT_AUTHORIZED);
  dhf_client_close (client);
  g_thread_join (fake);
}

typedef struct
{
  DhfStream *stream;
  gchar *peer;
  gboolean accepted;
} AcceptData;

static void
accept_handler (DhfClient *client, DhfInvocation *invocation, gpointer user_data)
{
  AcceptData *ad = user_data;
  g_autoptr (GError) error = NULL;

  g_assert_cmpint (dhf_invocation_get_kind (invocation), ==, DHF_INVOCATION_STREAM);
  g_assert_cmpstr (dhf_invocation_get_argument (invocation), ==, "in");
  ad->stream = dhf_invocation_accept_stream (invocation, &error);
  g_assert_no_error (error);
  g_assert_nonnull (ad->stream);
  /* Only once. */
  g_assert_null (dhf_invocation_accept_stream (invocation, &error));
  g_assert_error (error, DHF_ERROR, DHF_ERROR_INVALID_STATE);
  ad->peer = g_strdup (dhf_stream_get_peer (ad->stream));
  ad->accepted = TRUE;
}

static void
script_stream_accept (FakeConn *conn, gpointer data)
{
  const DhfXdmMessage *msg;

  fake_conn_handshake (conn, "dom-p");
  msg = fake_conn_expect (conn, DHF_XDM_REGISTER);
  fake_conn_send_text (conn, DHF_XDM_REPLY, msg->id, "{}");
  fake_conn_send_text (conn, DHF_XDM_STREAM_OPEN, 77,
                       "{\"service\":\"org.example.Sink1\",\"arg\":\"in\",\"source\":\"dom-b\","
                       "\"window\":262144}");
  msg = fake_conn_expect (conn, DHF_XDM_REPLY);
  g_assert_cmpuint (msg->id, ==, 77);
  g_assert_cmpuint (msg->window, ==, DHF_STREAM_WINDOW);
  fake_send (conn, 77, DHF_STREAM_WINDOW, STREAM_SIZE, 3);
  g_assert_cmpuint (fake_receive (conn, 77, 262144, 4), ==, STREAM_SIZE);
  g_assert_true (fake_conn_wait_eof (conn));
}

static void
test_stream_accept (void)
{
  g_autofree gchar *path = socket_path ("stream-accept.sock");
  GThread *fake = fake_serve (path, script_stream_accept, NULL);
  g_autoptr (DhfClient) client = connect_client (path);
  g_autoptr (GError) error = NULL;
  AcceptData ad = { 0 };

  g_assert_cmpuint (
      dhf_client_register_service (client, "org.example.Sink1", accept_handler, &ad, NULL, &error),
      >, 0);
  iterate_until (&ad.accepted, "the stream request");
  g_assert_cmpstr (ad.peer, ==, "dom-b");
  g_assert_cmpstr (dhf_stream_get_service (ad.stream), ==, "org.example.Sink1");
  g_assert_cmpuint (read_pattern (g_io_stream_get_input_stream (G_IO_STREAM (ad.stream)), 3), ==,
                    STREAM_SIZE);
  write_pattern (g_io_stream_get_output_stream (G_IO_STREAM (ad.stream)), STREAM_SIZE, 4);
  g_assert_true (g_io_stream_close (G_IO_STREAM (ad.stream), NULL, &error));
  g_assert_no_error (error);
  dhf_client_close (client);
  g_thread_join (fake);
  g_clear_object (&ad.stream);
  g_free (ad.peer);
}

static void
script_stream_reset (FakeConn *conn, gpointer data)
{
  const DhfXdmMessage *msg;
  guint32 id;
  g_autofree guint8 *junk = g_malloc0 (DHF_STREAM_MAX_FRAME);

  fake_conn_handshake (conn, "dom-s");
  /* 1: reset by the peer. */
  msg = fake_conn_expect (conn, DHF_XDM_STREAM_OPEN);
  id = msg->id;
  fake_conn_send_text (conn, DHF_XDM_REPLY, id, "{\"window\":65536}");
  fake_conn_send_raw (conn, id, junk, 10);
  fake_conn_send_text (conn, DHF_XDM_STREAM_CLOSE, id,
                       "{\"code\":\"protocol\",\"message\":\"the sender exceeded its credit\"}");

  /* 2: the client closes its reading side early: a reset. */
  msg = fake_conn_expect (conn, DHF_XDM_STREAM_OPEN);
  id = msg->id;
  fake_conn_send_text (conn, DHF_XDM_REPLY, id, "{\"window\":65536}");
  msg = fake_conn_expect (conn, DHF_XDM_STREAM_CLOSE);
  g_assert_cmpuint (msg->id, ==, id);
  g_assert_null (msg->code);
  msg = fake_conn_expect (conn, DHF_XDM_STREAM_CLOSE);
  g_assert_cmpuint (msg->id, ==, id);
  g_assert_cmpstr (msg->code, ==, "cancelled");

  /* 3: more data than the client granted (it reads nothing meanwhile):
   * it resets the stream. */
  msg = fake_conn_expect (conn, DHF_XDM_STREAM_OPEN);
  id = msg->id;
  fake_conn_send_text (conn, DHF_XDM_REPLY, id, "{\"window\":65536}");
  for (guint i = 0; i < DHF_STREAM_WINDOW / DHF_STREAM_MAX_FRAME; i++)
    fake_conn_send_raw (conn, id, junk, DHF_STREAM_MAX_FRAME);
  fake_conn_send_raw (conn, id, junk, 1);
  msg = fake_conn_expect (conn, DHF_XDM_STREAM_CLOSE);
  g_assert_cmpuint (msg->id, ==, id);
  g_assert_cmpstr (msg->code, ==, "protocol");
  g_async_queue_push (data, GINT_TO_POINTER (1));
  g_assert_true (fake_conn_wait_eof (conn));
}

static void
test_stream_reset (void)
{
  g_autofree gchar *path = socket_path ("stream-reset.sock");
  g_autoptr (GAsyncQueue) reset = g_async_queue_new ();
  GThread *fake = fake_serve (path, script_stream_reset, reset);
  g_autoptr (DhfClient) client = connect_client (path);
  g_autoptr (GError) error = NULL;
  guint8 buf[64 * 1024];
  DhfStream *stream;
  GInputStream *in;
  gssize n;

  /* 1 */
  stream = dhf_client_open_stream_sync (client, "org.example.Pipe1", NULL, NULL, &error);
  g_assert_no_error (error);
  g_assert_null (dhf_stream_get_peer (stream));
  in = g_io_stream_get_input_stream (G_IO_STREAM (stream));
  /* Data before the reset is still read, then the reset's error. */
  g_assert_cmpint (g_input_stream_read (in, buf, sizeof (buf), NULL, &error), ==, 10);
  g_assert_cmpint (g_input_stream_read (in, buf, sizeof (buf), NULL, &error), ==, -1);
  g_assert_error (error, DHF_ERROR, DHF_ERROR_PROTOCOL);
  g_assert_nonnull (strstr (error->message, "credit"));
  g_clear_error (&error);
  g_assert_cmpint (g_output_stream_write (g_io_stream_get_output_stream (G_IO_STREAM (stream)), buf,
                                          10, NULL, &error),
                   ==, -1);
  g_assert_error (error, DHF_ERROR, DHF_ERROR_PROTOCOL);
  g_clear_error (&error);
  g_object_unref (stream);

  /* 2 */
  stream = dhf_client_open_stream_sync (client, "org.example.Pipe1", NULL, NULL, &error);
  g_assert_no_error (error);
  g_assert_true (g_io_stream_close (G_IO_STREAM (stream), NULL, &error));
  g_object_unref (stream);

  /* 3: read only once the client has reset it. */
  stream = dhf_client_open_stream_sync (client, "org.example.Pipe1", NULL, NULL, &error);
  g_assert_no_error (error);
  g_async_queue_pop (reset);
  in = g_io_stream_get_input_stream (G_IO_STREAM (stream));
  do
    n = g_input_stream_read (in, buf, sizeof (buf), NULL, &error);
  while (n > 0);
  g_assert_cmpint (n, ==, -1);
  g_assert_error (error, DHF_ERROR, DHF_ERROR_PROTOCOL);
  g_clear_error (&error);
  g_object_unref (stream);

  dhf_client_close (client);
  g_thread_join (fake);
}

static void
open_done_cb (GObject *source, GAsyncResult *result, gpointer data)
{
  AcceptData *ad = data;
  g_autoptr (GError) error = NULL;

  ad->stream = dhf_client_open_stream_finish (DHF_CLIENT (source), result, &error);
  g_assert_no_error (error);
  ad->accepted = TRUE;
}

static void
script_stream_async (FakeConn *conn, gpointer data)
{
  const DhfXdmMessage *msg;
  guint32 id;

  fake_conn_handshake (conn, "dom-s");
  msg = fake_conn_expect (conn, DHF_XDM_STREAM_OPEN);
  id = msg->id;
  fake_conn_send_text (conn, DHF_XDM_REPLY, id, "{\"window\":65536}");
  fake_send (conn, id, DHF_STREAM_WINDOW, 1000, 5);
  /* The client went away: its stream frames stop, EOF. */
  g_assert_true (fake_conn_wait_eof (conn));
}

static void
test_stream_disconnect (void)
{
  g_autofree gchar *path = socket_path ("stream-async.sock");
  GThread *fake = fake_serve (path, script_stream_async, NULL);
  g_autoptr (DhfClient) client = connect_client (path);
  g_autoptr (GError) error = NULL;
  GInputStream *in;
  AcceptData ad = { 0 };
  guint8 buf[2000];
  gsize got = 0;

  dhf_client_open_stream (client, "org.example.Pipe1", NULL, NULL, open_done_cb, &ad);
  iterate_until (&ad.accepted, "the async open");
  in = g_io_stream_get_input_stream (G_IO_STREAM (ad.stream));
  g_assert_true (g_input_stream_read_all (in, buf, sizeof (buf), &got, NULL, &error));
  g_assert_cmpuint (got, ==, 1000);
  dhf_client_set_auto_reconnect (client, FALSE);
  dhf_client_close (client);
  /* The stream lost its connection. */
  g_assert_cmpint (g_output_stream_write (g_io_stream_get_output_stream (G_IO_STREAM (ad.stream)),
                                          buf, 10, NULL, &error),
                   ==, -1);
  g_assert_error (error, DHF_ERROR, DHF_ERROR_CANCELLED);
  g_thread_join (fake);
  g_clear_object (&ad.stream);
}

/* ---- channel: a virtio port found through sysfs; a pty stands in ------------------------ */

static void
script_channel (FakeConn *conn, gpointer data)
{
  const DhfXdmMessage *msg;

  fake_conn_handshake (conn, "dom-guest");
  msg = fake_conn_expect (conn, DHF_XDM_CALL);
  g_assert_cmpstr (msg->service, ==, "org.example.Echo1");
  fake_conn_send_text (conn, DHF_XDM_REPLY, msg->id, "{\"result\":\"over the port\"}");
  /* A pty drops what is unread when the master closes: wait for the
   * client to close first. */
  g_assert_true (fake_conn_wait_eof (conn));
}

static gpointer
channel_thread (gpointer data)
{
  g_autoptr (FakeConn) conn = fake_conn_new (GPOINTER_TO_INT (data));

  script_channel (conn, NULL);
  return NULL;
}

static void
write_file (const gchar *dir, const gchar *name, const gchar *contents)
{
  g_autofree gchar *path = g_build_filename (dir, name, NULL);

  g_assert_cmpint (g_mkdir_with_parents (dir, 0755), ==, 0);
  g_assert_true (g_file_set_contents (path, contents, -1, NULL));
}

static void
test_channel (void)
{
  g_autofree gchar *root = g_build_filename (tmpdir, "root", NULL);
  g_autofree gchar *ports = g_build_filename (root, "sys", "class", "virtio-ports", NULL);
  g_autofree gchar *p1 = g_build_filename (ports, "vport0p1", NULL);
  g_autofree gchar *p2 = g_build_filename (ports, "vport0p2", NULL);
  g_autofree gchar *dev = g_build_filename (root, "dev", NULL);
  g_autofree gchar *link = g_build_filename (dev, "vport0p2", NULL);
  g_autofree gchar *found = NULL;
  g_autofree gchar *address = NULL;
  g_autofree gchar *result = NULL;
  g_autoptr (GError) error = NULL;
  g_autoptr (DhfClient) client = NULL;
  struct termios tio;
  GThread *fake;
  gint master;

  write_file (p1, "name", "org.qemu.guest_agent.0\n");
  write_file (p2, "name", "org.dhf.xdm.0\n");
  g_assert_cmpint (g_mkdir_with_parents (dev, 0755), ==, 0);
  g_setenv ("DHF_SYSFS_ROOT", root, TRUE);
  g_unsetenv ("DHF_XDM_ADDRESS");

  /* No port yet: the default is dhfd's local socket. */
  found = dhf_transport_find_channel (DHF_XDM_CHANNEL_NAME, &error);
  g_assert_cmpstr (found, ==, link);
  g_clear_pointer (&found, g_free);
  address = dhf_transport_default_address ();
  g_assert_cmpstr (address, ==, "channel:");
  g_clear_pointer (&address, g_free);
  g_setenv ("DHF_XDM_ADDRESS", "unix:/elsewhere", TRUE);
  address = dhf_transport_default_address ();
  g_assert_cmpstr (address, ==, "unix:/elsewhere");
  g_clear_pointer (&address, g_free);
  g_unsetenv ("DHF_XDM_ADDRESS");

  master = posix_openpt (O_RDWR | O_NOCTTY | O_CLOEXEC);
  g_assert_cmpint (master, >=, 0);
  g_assert_cmpint (grantpt (master), ==, 0);
  g_assert_cmpint (unlockpt (master), ==, 0);
  /* The master's side must pass bytes untouched too. */
  g_assert_cmpint (tcgetattr (master, &tio), ==, 0);
  cfmakeraw (&tio);
  g_assert_cmpint (tcsetattr (master, TCSANOW, &tio), ==, 0);
  g_assert_cmpint (symlink (ptsname (master), link), ==, 0);

  client = dhf_client_new (NULL);
  g_assert_cmpstr (dhf_client_get_address (client), ==, "channel:");
  fake = g_thread_new ("fake-dhfd", channel_thread, GINT_TO_POINTER (master));
  g_assert_true (dhf_client_connect_sync (client, NULL, &error));
  g_assert_no_error (error);
  g_assert_cmpstr (dhf_client_get_domain (client), ==, "dom-guest");
  result = dhf_client_call_sync (client, "org.example.Echo1", NULL, NULL, 0, NULL, &error);
  g_assert_no_error (error);
  g_assert_cmpstr (result, ==, "\"over the port\"");
  dhf_client_close (client);
  g_thread_join (fake);

  /* Without the port. */
  g_assert_cmpint (g_unlink (link), ==, 0);
  g_clear_pointer (&found, g_free);
  found = g_build_filename (p2, "name", NULL);
  g_assert_cmpint (g_unlink (found), ==, 0);
  g_clear_pointer (&found, g_free);
  g_assert_null (dhf_transport_find_channel (DHF_XDM_CHANNEL_NAME, &error));
  g_assert_error (error, DHF_ERROR, DHF_ERROR_NOT_FOUND);
  g_clear_error (&error);
  address = dhf_transport_default_address ();
  g_assert_cmpstr (address, ==, "unix:" DHF_XDM_DEFAULT_SOCKET);
  g_clear_object (&client);
  client = dhf_client_new ("channel:");
  g_assert_false (dhf_client_connect_sync (client, NULL, &error));
  g_assert_error (error, DHF_ERROR, DHF_ERROR_NOT_FOUND);
  g_unsetenv ("DHF_SYSFS_ROOT");
}

/* ---- addresses and request ids ---------------------------------------------------------- */

static void
test_addresses (void)
{
  static const struct
  {
    const gchar *text;
    gboolean ok;
    DhfTransportKind kind;
    const gchar *path;
    guint32 cid, port;
  } cases[] = {
    { "channel:", TRUE, DHF_TRANSPORT_CHANNEL, NULL, 0, 0 },
    { "channel:/dev/vport1p1", TRUE, DHF_TRANSPORT_CHANNEL, "/dev/vport1p1", 0, 0 },
    { "channel:vport2p1", TRUE, DHF_TRANSPORT_CHANNEL, "/dev/vport2p1", 0, 0 },
    { "vsock:", TRUE, DHF_TRANSPORT_VSOCK, NULL, 2, DHF_XDM_VSOCK_PORT },
    { "vsock:3:1234", TRUE, DHF_TRANSPORT_VSOCK, NULL, 3, 1234 },
    { "vsock:7", TRUE, DHF_TRANSPORT_VSOCK, NULL, 7, DHF_XDM_VSOCK_PORT },
    { "vsock:x:1", FALSE },
    { "vsock:1:2:3", FALSE },
    { "vsock:1:99999999999", FALSE },
    { "vsock::5", FALSE },
    { "unix:", TRUE, DHF_TRANSPORT_UNIX, DHF_XDM_DEFAULT_SOCKET, 0, 0 },
    { "unix:/tmp/x.sock", TRUE, DHF_TRANSPORT_UNIX, "/tmp/x.sock", 0, 0 },
    { "listen:/tmp/y.sock", TRUE, DHF_TRANSPORT_LISTEN, "/tmp/y.sock", 0, 0 },
    { "listen:", FALSE },
    { "tcp:localhost", FALSE },
    { "", FALSE },
    { "unix:/"
      "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
      "a"
      "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa",
      FALSE },
  };

  for (guint i = 0; i < G_N_ELEMENTS (cases); i++)
    {
      DhfTransportAddress address;
      g_autoptr (GError) error = NULL;
      gboolean ok = dhf_transport_address_parse (cases[i].text, &address, &error);

      g_test_message ("%s", cases[i].text);
      g_assert_cmpint (ok, ==, cases[i].ok);
      if (!ok)
        {
          g_assert_error (error, DHF_ERROR, DHF_ERROR_INVALID_ARGS);
          continue;
        }
      g_assert_cmpint (address.kind, ==, cases[i].kind);
      g_assert_cmpstr (address.path, ==, cases[i].path);
      if (address.kind == DHF_TRANSPORT_VSOCK)
        {
          g_assert_cmpuint (address.cid, ==, cases[i].cid);
          g_assert_cmpuint (address.port, ==, cases[i].port);
        }
      dhf_transport_address_clear (&address);
    }
}

static void
test_json_validate (void)
{
  static const struct
  {
    const gchar *text;
    gboolean ok;
  } cases[] = {
    { "null", TRUE },
    { " true ", TRUE },
    { "false", TRUE },
    { "0", TRUE },
    { "-0.5e+10", TRUE },
    { "12E3", TRUE },
    { "\"\"", TRUE },
    { "\"a\\n\\u00e9\\\"\\/\"", TRUE },
    { "\"caf\xc3\xa9 \xf0\x9f\x98\x80\"", TRUE },
    { "[]", TRUE },
    { "{}", TRUE },
    { "{\"a\": [1, {\"b\": null}], \"c\" : \"d\"}", TRUE },
    { "\n[ 1 ,\t2 ]\r\n", TRUE },
    { "", FALSE },
    { "   ", FALSE },
    { "nul", FALSE },
    { "True", FALSE },
    { "01", FALSE },
    { "1.", FALSE },
    { ".5", FALSE },
    { "1e", FALSE },
    { "+1", FALSE },
    { "-", FALSE },
    { "NaN", FALSE },
    { "\"abc", FALSE },
    { "\"a\tb\"", FALSE },
    { "\"\\x\"", FALSE },
    { "\"\\u12\"", FALSE },
    { "\"\xc3\"", FALSE },
    { "\"\xed\xa0\x80\"", FALSE },
    { "'a'", FALSE },
    { "[1,]", FALSE },
    { "[1 2]", FALSE },
    { "{\"a\"}", FALSE },
    { "{\"a\":1,}", FALSE },
    { "{a:1}", FALSE },
    { "[1]]", FALSE },
    { "[", FALSE },
    { "{\"a\":", FALSE },
    { "1 2", FALSE },
    { "/* c */ 1", FALSE },
  };
  g_autoptr (GString) deep = g_string_new (NULL);
  g_autoptr (GError) error = NULL;

  for (guint i = 0; i < G_N_ELEMENTS (cases); i++)
    {
      gboolean ok = dhf_core_json_validate (cases[i].text, 31, "params", &error);

      if (ok != cases[i].ok)
        g_error ("%s: expected %s", cases[i].text, cases[i].ok ? "valid" : "invalid");
      if (!ok)
        {
          g_assert_error (error, DHF_ERROR, DHF_ERROR_INVALID_ARGS);
          g_assert_true (g_str_has_prefix (error->message, "params is not valid JSON: "));
          g_clear_error (&error);
        }
    }
  /* 31 levels pass (the body they go into makes 32), 32 do not. */
  for (guint i = 0; i < 31; i++)
    g_string_prepend_c (deep, '[');
  for (guint i = 0; i < 31; i++)
    g_string_append_c (deep, ']');
  g_assert_true (dhf_core_json_validate (deep->str, 31, "params", &error));
  g_string_prepend_c (deep, '[');
  g_string_append_c (deep, ']');
  g_assert_false (dhf_core_json_validate (deep->str, 31, "params", &error));
  g_assert_nonnull (strstr (error->message, "nested too deeply"));
}

static void
test_vsock_unreachable (void)
{
  /* A CID nobody has: refused at once (or no vsock at all here). */
  g_autoptr (DhfClient) client = dhf_client_new ("vsock:4000000000:5477");
  g_autoptr (GError) error = NULL;

  g_assert_false (dhf_client_connect_sync (client, NULL, &error));
  g_assert_error (error, DHF_ERROR, DHF_ERROR_DISCONNECTED);
  g_assert_nonnull (strstr (error->message, "vsock:4000000000:5477"));
}

static void
test_listen_in_use (void)
{
  g_autofree gchar *path = socket_path ("listen-busy.sock");
  g_autofree gchar *address = g_strdup_printf ("listen:%s", path);
  g_autofree gchar *file = socket_path ("not-a-socket");
  g_autofree gchar *file_address = g_strdup_printf ("listen:%s", file);
  g_autoptr (DhfClient) first = dhf_client_new (address);
  g_autoptr (DhfClient) second = dhf_client_new (address);
  g_autoptr (DhfClient) third = dhf_client_new (file_address);
  g_autoptr (GError) error = NULL;
  gint stale;

  /* A stale socket file (nobody listening) is replaced. */
  stale = fake_listen_unix (path);
  close (stale);
  dhf_client_connect (first, NULL, NULL, NULL);
  g_assert_true (g_file_test (path, G_FILE_TEST_EXISTS));
  g_assert_false (dhf_client_connect_sync (second, NULL, &error));
  g_assert_error (error, DHF_ERROR, DHF_ERROR_EXISTS);
  g_clear_error (&error);
  g_assert_true (g_file_set_contents (file, "x", -1, NULL));
  g_assert_false (dhf_client_connect_sync (third, NULL, &error));
  g_assert_error (error, DHF_ERROR, DHF_ERROR_EXISTS);
  dhf_client_close (first);
  g_assert_false (g_file_test (path, G_FILE_TEST_EXISTS));
}

static void
script_ids (FakeConn *conn, gpointer data)
{
  const DhfXdmMessage *msg;
  guint32 held;

  fake_conn_handshake (conn, "dom-i");
  msg = fake_conn_expect (conn, DHF_XDM_CALL);
  held = msg->id; /* stays in flight */
  g_assert_cmpuint (held, ==, 1);
  /* The next id would be the one in flight: skipped. */
  msg = fake_conn_expect (conn, DHF_XDM_CALL);
  g_assert_cmpuint (msg->id, ==, 2);
  fake_conn_send_text (conn, DHF_XDM_REPLY, msg->id, "{}");
  /* The last id, then 0 is skipped, and 1 (in flight) too. */
  msg = fake_conn_expect (conn, DHF_XDM_CALL);
  g_assert_cmpuint (msg->id, ==, 0x7fffffff);
  fake_conn_send_text (conn, DHF_XDM_REPLY, msg->id, "{}");
  msg = fake_conn_expect (conn, DHF_XDM_CALL);
  g_assert_cmpuint (msg->id, ==, 2);
  fake_conn_send_text (conn, DHF_XDM_REPLY, msg->id, "{}");
  fake_conn_send_text (conn, DHF_XDM_REPLY, held, "{\"result\":\"held\"}");
  g_assert_true (fake_conn_wait_eof (conn));
}

static void
test_request_ids (void)
{
  g_autofree gchar *path = socket_path ("ids.sock");
  GThread *fake = fake_serve (path, script_ids, NULL);
  g_autoptr (DhfClient) client = connect_client (path);
  g_autoptr (GError) error = NULL;
  AsyncResult held = { 0 };

  dhf_client_call (client, "org.example.Hold1", NULL, NULL, 0, NULL, call_done_cb, &held);
  dhf_core_set_next_request_id (client, 1);
  g_free (dhf_client_call_sync (client, "org.example.Id1", NULL, NULL, 0, NULL, &error));
  g_assert_no_error (error);
  dhf_core_set_next_request_id (client, 0x7fffffff);
  g_free (dhf_client_call_sync (client, "org.example.Id1", NULL, NULL, 0, NULL, &error));
  g_assert_no_error (error);
  g_free (dhf_client_call_sync (client, "org.example.Id1", NULL, NULL, 0, NULL, &error));
  g_assert_no_error (error);
  iterate_until (&held.done, "the held call");
  g_assert_cmpstr (held.result, ==, "\"held\"");
  async_result_clear (&held);
  dhf_client_close (client);
  g_thread_join (fake);
}

/* Handlers registered in another thread run in that thread's context. */
typedef struct
{
  DhfClient *client;
  GMainContext *context;
  ServiceData sd;
  gboolean registered;
  gboolean in_thread;
} ThreadedService;

static void
threaded_handler (DhfClient *client, DhfInvocation *invocation, gpointer user_data)
{
  ThreadedService *ts = user_data;

  ts->in_thread = g_main_context_is_owner (ts->context);
  echo_handler (client, invocation, &ts->sd);
}

static gpointer
service_thread (gpointer data)
{
  ThreadedService *ts = data;
  g_autoptr (GError) error = NULL;

  g_main_context_push_thread_default (ts->context);
  g_assert_cmpuint (dhf_client_register_service (ts->client, "org.example.Echo1", threaded_handler,
                                                 ts, NULL, &error),
                    >, 0);
  while (ts->sd.calls < 2)
    g_main_context_iteration (ts->context, TRUE);
  g_main_context_pop_thread_default (ts->context);
  return NULL;
}

static void
script_threaded (FakeConn *conn, gpointer data)
{
  const DhfXdmMessage *msg;

  fake_conn_handshake (conn, "dom-p");
  msg = fake_conn_expect (conn, DHF_XDM_REGISTER);
  fake_conn_send_text (conn, DHF_XDM_REPLY, msg->id, "{}");
  for (guint32 i = 1; i <= 2; i++)
    {
      fake_conn_send_text (conn, DHF_XDM_CALL, i,
                           "{\"service\":\"org.example.Echo1\",\"source\":\"b\"}");
      msg = fake_conn_expect (conn, DHF_XDM_REPLY);
      g_assert_cmpuint (msg->id, ==, i);
    }
  g_assert_true (fake_conn_wait_eof (conn));
}

static void
test_handler_context (void)
{
  g_autofree gchar *path = socket_path ("threaded.sock");
  GThread *fake = fake_serve (path, script_threaded, NULL);
  g_autoptr (DhfClient) client = connect_client (path);
  ThreadedService ts = { client, g_main_context_new () };
  GThread *thread = g_thread_new ("service", service_thread, &ts);

  g_thread_join (thread);
  g_assert_true (ts.in_thread);
  g_assert_false (ts.sd.in_main_thread);
  dhf_client_close (client);
  g_thread_join (fake);
  service_data_clear (&ts.sd);
  g_main_context_unref (ts.context);
}

static void
remove_tree (const gchar *path)
{
  g_autoptr (GDir) dir = g_dir_open (path, 0, NULL);
  const gchar *name;

  while (dir != NULL && (name = g_dir_read_name (dir)) != NULL)
    {
      g_autofree gchar *child = g_build_filename (path, name, NULL);

      if (g_file_test (child, G_FILE_TEST_IS_DIR) && !g_file_test (child, G_FILE_TEST_IS_SYMLINK))
        remove_tree (child);
      else
        (void) g_unlink (child);
    }
  (void) g_rmdir (path);
}

/* ---- review regressions ------------------------------------------------------------ */

/* Finalization of objects that may go on another thread (the I/O thread
 * drops the last reference of a client its completed task held). */
typedef struct
{
  GMutex lock;
  GCond cond;
  guint finalized;
} Finalized;

static void
finalized_cb (gpointer data, GObject *where_the_object_was)
{
  Finalized *f = data;

  g_mutex_lock (&f->lock);
  f->finalized++;
  g_cond_broadcast (&f->cond);
  g_mutex_unlock (&f->lock);
}

/* Waits (running the default context) until count objects are gone. */
static void
wait_finalized (Finalized *f, guint count, const gchar *what)
{
  gint64 end = g_get_monotonic_time () + 20 * G_USEC_PER_SEC;
  gboolean all;

  for (;;)
    {
      while (g_main_context_iteration (NULL, FALSE))
        ;
      g_mutex_lock (&f->lock);
      if (f->finalized < count)
        g_cond_wait_until (&f->cond, &f->lock, MIN (end, g_get_monotonic_time () + 10000));
      all = f->finalized >= count;
      g_mutex_unlock (&f->lock);
      if (all)
        return;
      if (g_get_monotonic_time () > end)
        g_error ("test: %s were not finalized (%u of %u)", what, f->finalized, count);
    }
}

static void
open_refused_cb (GObject *source, GAsyncResult *result, gpointer data)
{
  AsyncResult *ar = data;
  g_autoptr (DhfStream) stream
      = dhf_client_open_stream_finish (DHF_CLIENT (source), result, &ar->error);

  g_assert_null (stream);
  ar->done = TRUE;
}

/* A cancelled async call and stream open release the client and their
 * cancellables; a late REPLY accepting the abandoned open is reset. */
static void
script_cancel_release (FakeConn *conn, gpointer data)
{
  const DhfXdmMessage *msg;
  guint32 id;

  fake_conn_handshake (conn, "dom-c");
  msg = fake_conn_expect (conn, DHF_XDM_CALL);
  id = msg->id;
  g_async_queue_push (data, GINT_TO_POINTER (1));
  msg = fake_conn_expect (conn, DHF_XDM_CANCEL);
  g_assert_cmpuint (msg->id, ==, id);
  msg = fake_conn_expect (conn, DHF_XDM_STREAM_OPEN);
  id = msg->id;
  g_async_queue_push (data, GINT_TO_POINTER (1));
  msg = fake_conn_expect (conn, DHF_XDM_CANCEL);
  g_assert_cmpuint (msg->id, ==, id);
  /* The provider's accept crossed the CANCEL. */
  fake_conn_send_text (conn, DHF_XDM_REPLY, id, "{\"window\":65536}");
  msg = fake_conn_expect (conn, DHF_XDM_STREAM_CLOSE);
  g_assert_cmpuint (msg->id, ==, id);
  g_assert_cmpstr (msg->code, ==, "cancelled");
  g_async_queue_push (data, GINT_TO_POINTER (1));
  g_assert_true (fake_conn_wait_eof (conn));
}

static void
test_cancel_release (void)
{
  g_autofree gchar *path = socket_path ("cancel-release.sock");
  g_autoptr (GAsyncQueue) steps = g_async_queue_new ();
  GThread *fake = fake_serve (path, script_cancel_release, steps);
  DhfClient *client = connect_client (path);
  GCancellable *c1 = g_cancellable_new ();
  GCancellable *c2 = g_cancellable_new ();
  Finalized f = { 0 };
  AsyncResult ar = { 0 };

  g_mutex_init (&f.lock);
  g_cond_init (&f.cond);
  g_object_weak_ref (G_OBJECT (client), finalized_cb, &f);
  g_object_weak_ref (G_OBJECT (c1), finalized_cb, &f);
  g_object_weak_ref (G_OBJECT (c2), finalized_cb, &f);

  dhf_client_call (client, "org.example.Slow1", NULL, NULL, 0, c1, call_done_cb, &ar);
  g_async_queue_pop (steps);
  g_cancellable_cancel (c1);
  iterate_until (&ar.done, "the cancelled call");
  g_assert_error (ar.error, DHF_ERROR, DHF_ERROR_CANCELLED);
  async_result_clear (&ar);

  dhf_client_open_stream (client, "org.example.Pipe1", NULL, c2, open_refused_cb, &ar);
  g_async_queue_pop (steps);
  g_cancellable_cancel (c2);
  iterate_until (&ar.done, "the cancelled open");
  g_assert_error (ar.error, DHF_ERROR, DHF_ERROR_CANCELLED);
  async_result_clear (&ar);
  g_async_queue_pop (steps); /* the reset of the late accept arrived */

  g_object_unref (c1);
  g_object_unref (c2);
  dhf_client_close (client);
  g_object_unref (client);
  wait_finalized (&f, 3, "the client and the cancellables");
  g_thread_join (fake);
  g_mutex_clear (&f.lock);
  g_cond_clear (&f.cond);
}

/* A flood of events at a context that does not run: the client stops
 * reading at its limit, and delivers everything once the context runs. */
#define FLOOD_EVENTS 3000
#define FLOOD_DATA   4000

static void
script_event_flood (FakeConn *conn, gpointer data)
{
  const DhfXdmMessage *msg;
  g_autoptr (GString) body
      = g_string_new ("{\"topic\":\"org.example.T\",\"source\":\"x\",\"data\":\"");

  fake_conn_handshake (conn, "dom-e");
  msg = fake_conn_expect (conn, DHF_XDM_SUBSCRIBE);
  fake_conn_send_text (conn, DHF_XDM_REPLY, msg->id, "{}");
  for (guint i = 0; i < FLOOD_DATA; i++)
    g_string_append_c (body, 'a');
  g_string_append (body, "\"}");
  for (guint i = 0; i < FLOOD_EVENTS; i++)
    fake_conn_send_text (conn, DHF_XDM_EVENT, 0, body->str);
  /* Reading resumed: answered. */
  fake_conn_send_text (conn, DHF_XDM_PING, 5, "{}");
  msg = fake_conn_expect (conn, DHF_XDM_PONG);
  g_assert_cmpuint (msg->id, ==, 5);
  g_assert_true (fake_conn_wait_eof (conn));
}

static void
count_event_cb (DhfClient *client, const gchar *topic, const gchar *source, const gchar *data,
                gpointer user_data)
{
  (*(guint *) user_data)++;
}

static void
test_event_flood (void)
{
  g_autofree gchar *path = socket_path ("event-flood.sock");
  GThread *fake = fake_serve (path, script_event_flood, NULL);
  g_autoptr (DhfClient) client = connect_client (path);
  g_autoptr (GError) error = NULL;
  gint64 end = g_get_monotonic_time () + 20 * G_USEC_PER_SEC;
  gboolean paused = FALSE;
  gsize queued = 0;
  guint n = 0;

  g_assert_cmpuint (
      dhf_client_subscribe (client, "org.example.T", count_event_cb, &n, NULL, &error), >, 0);
  g_assert_no_error (error);
  /* The events (12 MB) come while this context does not run. */
  while (!paused && g_get_monotonic_time () < end)
    {
      queued = dhf_core_get_handler_bytes (client, &paused);
      if (!paused)
        g_usleep (1000);
    }
  g_assert_true (paused);
  /* It stays paused, holding at most the limit and one event more. */
  g_usleep (100000);
  queued = dhf_core_get_handler_bytes (client, &paused);
  g_assert_true (paused);
  g_assert_cmpuint (queued, <=, DHF_CLIENT_MAX_HANDLER_QUEUE + 2 * FLOOD_DATA);
  g_assert_cmpuint (n, ==, 0);
  iterate_until_count (&n, FLOOD_EVENTS, "all the events");
  g_assert_cmpuint (n, ==, FLOOD_EVENTS);
  queued = dhf_core_get_handler_bytes (client, &paused);
  g_assert_false (paused);
  g_assert_cmpuint (queued, ==, 0);
  dhf_client_close (client);
  g_thread_join (fake);
}

/* Requests to a dhfd that does not read fail at the outgoing limit. */
static void
script_no_read (FakeConn *conn, gpointer data)
{
  fake_conn_handshake (conn, "dom-o");
  g_async_queue_pop (data);
}

static void
test_outgoing_limit (void)
{
  g_autofree gchar *path = socket_path ("outgoing.sock");
  g_autoptr (GAsyncQueue) done = g_async_queue_new ();
  GThread *fake = fake_serve (path, script_no_read, done);
  g_autoptr (DhfClient) client = connect_client (path);
  g_autoptr (GString) data = g_string_new ("\"");
  g_autoptr (GError) error = NULL;
  guint ok = 0;

  for (guint i = 0; i < 60000; i++)
    g_string_append_c (data, 'b');
  g_string_append_c (data, '"');
  while (ok < 4000 && dhf_client_publish (client, "org.example.T", data->str, &error))
    ok++;
  g_assert_error (error, DHF_ERROR, DHF_ERROR_LIMIT_EXCEEDED);
  g_clear_error (&error);
  /* The limit, plus what the socket buffers took. */
  g_assert_cmpuint (ok, <, 4000);
  g_assert_cmpuint ((gsize) ok * data->len, >=, DHF_CLIENT_MAX_OUTGOING_QUEUE);
  /* Calls too (as large: the queue is within one of them of the limit);
   * the connection is kept. */
  g_assert_null (
      dhf_client_call_sync (client, "org.example.Slow1", NULL, data->str, 0, NULL, &error));
  g_assert_error (error, DHF_ERROR, DHF_ERROR_LIMIT_EXCEEDED);
  g_assert_true (dhf_client_get_connected (client));
  g_async_queue_push (done, GINT_TO_POINTER (1));
  g_thread_join (fake);
  dhf_client_close (client);
}

/* Withdrawn while being restored after a reconnection: UNREGISTER goes
 * out (after the restoring REGISTER); a restore dhfd refuses drops the
 * registration (its notify runs). */
typedef struct
{
  gint listen_fd;
  GAsyncQueue *go;        /* test -> fake */
  GAsyncQueue *restoring; /* fake -> test */
} RestoreJob;

static gpointer
fake_restore_thread (gpointer data)
{
  RestoreJob *job = data;
  const DhfXdmMessage *msg;
  guint32 id_a = 0, id_b = 0;

  {
    g_autoptr (FakeConn) conn = fake_conn_new (fake_accept (job->listen_fd));

    fake_conn_handshake (conn, "dom-r");
    for (guint i = 0; i < 2; i++)
      {
        msg = fake_conn_expect (conn, DHF_XDM_REGISTER);
        fake_conn_send_text (conn, DHF_XDM_REPLY, msg->id, "{}");
      }
    g_async_queue_pop (job->go); /* the first connection ends */
  }
  {
    g_autoptr (FakeConn) conn = fake_conn_new (fake_accept (job->listen_fd));

    fake_conn_handshake (conn, "dom-r");
    for (guint i = 0; i < 2; i++)
      {
        msg = fake_conn_expect (conn, DHF_XDM_REGISTER);
        if (g_strcmp0 (msg->service, "org.example.A1") == 0)
          id_a = msg->id;
        else
          id_b = msg->id;
      }
    g_assert_cmpuint (id_a, !=, 0);
    g_assert_cmpuint (id_b, !=, 0);
    g_async_queue_push (job->restoring, GINT_TO_POINTER (1));
    msg = fake_conn_expect (conn, DHF_XDM_UNREGISTER);
    g_assert_cmpstr (msg->service, ==, "org.example.A1");
    fake_conn_send_text (conn, DHF_XDM_REPLY, id_a, "{}");
    fake_conn_send_error (conn, id_b, "exists", "org.example.B1 is provided already");
    fake_conn_send_text (conn, DHF_XDM_REPLY, msg->id, "{}");
    g_assert_true (fake_conn_wait_eof (conn));
  }
  return NULL;
}

static void
answer_one_handler (DhfClient *client, DhfInvocation *invocation, gpointer user_data)
{
  dhf_invocation_return_json (invocation, "1");
}

static void
test_restore_changes (void)
{
  g_autofree gchar *path = socket_path ("restore-changes.sock");
  g_autoptr (GAsyncQueue) go = g_async_queue_new ();
  g_autoptr (GAsyncQueue) restoring = g_async_queue_new ();
  RestoreJob job = { fake_listen_unix (path), go, restoring };
  GThread *fake = g_thread_new ("fake-dhfd", fake_restore_thread, &job);
  g_autoptr (DhfClient) client = connect_client (path);
  g_autoptr (GError) error = NULL;
  gboolean a_gone = FALSE, b_gone = FALSE;
  GLogLevelFlags old_fatal;
  guint reg_a, reg_b;

  reg_a = dhf_client_register_service (client, "org.example.A1", answer_one_handler, &a_gone,
                                       set_flag_notify, &error);
  g_assert_no_error (error);
  reg_b = dhf_client_register_service (client, "org.example.B1", answer_one_handler, &b_gone,
                                       set_flag_notify, &error);
  g_assert_no_error (error);
  g_assert_cmpuint (reg_a, >, 0);
  g_assert_cmpuint (reg_b, >, 0);
  /* The refusal is logged with g_warning (structured logging bypasses
   * the test's fatal handler): not fatal here. */
  old_fatal = g_log_set_always_fatal (G_LOG_FATAL_MASK | G_LOG_LEVEL_CRITICAL);
  g_async_queue_push (go, GINT_TO_POINTER (1));
  g_async_queue_pop (restoring); /* restoring: dhfd has not answered the REGISTERs */
  dhf_client_unregister_service (client, reg_a, &error);
  g_assert_no_error (error);
  iterate_until (&a_gone, "the withdrawn registration's notify");
  iterate_until (&b_gone, "the refused registration's notify");
  g_log_set_always_fatal (old_fatal);
  /* It is gone from the client too. */
  g_assert_false (dhf_client_unregister_service (client, reg_b, &error));
  g_assert_error (error, DHF_ERROR, DHF_ERROR_NOT_FOUND);
  dhf_client_close (client);
  g_thread_join (fake);
  close (job.listen_fd);
}

/* A stream accepted with window 0 is open; writes wait for credit. */
static void
script_window_zero (FakeConn *conn, gpointer data)
{
  const DhfXdmMessage *msg;
  guint32 id;

  fake_conn_handshake (conn, "dom-w");
  msg = fake_conn_expect (conn, DHF_XDM_STREAM_OPEN);
  id = msg->id;
  fake_conn_send_text (conn, DHF_XDM_REPLY, id, "{\"window\":0}");
  fake_conn_send_text (conn, DHF_XDM_STREAM_CREDIT, id, "{\"bytes\":5}");
  msg = fake_conn_expect (conn, DHF_XDM_STREAM_DATA);
  g_assert_cmpuint (msg->id, ==, id);
  g_assert_cmpuint (msg->raw_length, ==, 5);
  g_assert_cmpmem (msg->raw, 5, "hello", 5);
  msg = fake_conn_expect (conn, DHF_XDM_STREAM_CLOSE);
  g_assert_null (msg->code);
  g_assert_true (fake_conn_wait_eof (conn));
}

static void
test_window_zero (void)
{
  g_autofree gchar *path = socket_path ("window-zero.sock");
  GThread *fake = fake_serve (path, script_window_zero, NULL);
  g_autoptr (DhfClient) client = connect_client (path);
  g_autoptr (GError) error = NULL;
  g_autoptr (DhfStream) stream = NULL;
  GOutputStream *out;
  gsize written = 0;

  stream = dhf_client_open_stream_sync (client, "org.example.Pipe1", NULL, NULL, &error);
  g_assert_no_error (error);
  g_assert_nonnull (stream);
  out = g_io_stream_get_output_stream (G_IO_STREAM (stream));
  g_assert_true (g_output_stream_write_all (out, "hello", 5, &written, NULL, &error));
  g_assert_no_error (error);
  g_assert_cmpuint (written, ==, 5);
  g_assert_true (g_output_stream_close (out, NULL, &error));
  dhf_client_close (client);
  g_thread_join (fake);
}

/* Runs what tests left queued for the default context (notifications,
 * completions holding the last reference of a client), so that each test
 * starts from nothing. */
static void
teardown (gpointer fixture, gconstpointer data)
{
  while (g_main_context_iteration (NULL, FALSE))
    ;
}

static void
add_test (const gchar *path, void (*func) (void))
{
  g_test_add_vtable (path, 0, NULL, NULL, (GTestFixtureFunc) (void (*) (void)) func, teardown);
}

int
main (int argc, char **argv)
{
  int ret;

  g_test_init (&argc, &argv, NULL);
  tmpdir = g_dir_make_tmp ("dhf-test-client-XXXXXX", NULL);
  g_assert_nonnull (tmpdir);

  add_test ("/client/connect", test_connect);
  add_test ("/client/version-refused", test_version_refused);
  add_test ("/client/unreachable", test_unreachable);
  add_test ("/client/addresses", test_addresses);
  add_test ("/client/json-validate", test_json_validate);
  add_test ("/client/vsock-unreachable", test_vsock_unreachable);
  add_test ("/client/listen-in-use", test_listen_in_use);
  add_test ("/client/register", test_register);
  add_test ("/client/handler-arguments", test_handler_arguments);
  add_test ("/client/handler-context", test_handler_context);
  add_test ("/client/answers", test_answers);
  add_test ("/client/calls", test_calls);
  add_test ("/client/deadline", test_deadline);
  add_test ("/client/cancel", test_cancel);
  add_test ("/client/close-pending", test_close_pending);
  add_test ("/client/request-ids", test_request_ids);
  add_test ("/client/reconnect-unix", test_reconnect_unix);
  add_test ("/client/reconnect-listen", test_reconnect_listen);
  add_test ("/client/no-reconnect", test_no_reconnect);
  add_test ("/client/events", test_events);
  add_test ("/client/event-arguments", test_event_arguments);
  add_test ("/client/stream-open", test_stream_open);
  add_test ("/client/stream-accept", test_stream_accept);
  add_test ("/client/stream-reset", test_stream_reset);
  add_test ("/client/stream-disconnect", test_stream_disconnect);
  add_test ("/client/channel", test_channel);
  add_test ("/client/cancel-release", test_cancel_release);
  add_test ("/client/event-flood", test_event_flood);
  add_test ("/client/outgoing-limit", test_outgoing_limit);
  add_test ("/client/restore-changes", test_restore_changes);
  add_test ("/client/window-zero", test_window_zero);

  ret = g_test_run ();
  remove_tree (tmpdir);
  g_free (tmpdir);
  return ret;
}
