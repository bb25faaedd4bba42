/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include "config.h"

#include <malloc.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "dhf-test-util.h"
#include "xdm-router-harness.h"

/* Peers that break the protocol, flood, or do not read: each gets a
 * precise answer or is cut off, and nobody else notices; what dhfd holds
 * for them stays bounded. Also closing connections and domains from
 * dhfd's side. */

/* The lines dhfd would put in the journal (level message and above) since
 * the test began. */
static GPtrArray *logged;

static GLogWriterOutput
record_log (GLogLevelFlags level, const GLogField *fields, gsize n_fields, gpointer data)
{
  if (level
      & (G_LOG_LEVEL_ERROR | G_LOG_LEVEL_CRITICAL | G_LOG_LEVEL_WARNING | G_LOG_LEVEL_MESSAGE))
    for (gsize i = 0; i < n_fields; i++)
      {
        if (g_str_equal (fields[i].key, "MESSAGE"))
          g_ptr_array_add (logged, g_strdup (fields[i].value));
      }
  return g_log_writer_default (level, fields, n_fields, data);
}

static guint
count_logged (const gchar *pattern)
{
  guint n = 0;

  for (guint i = 0; i < logged->len; i++)
    n += g_pattern_match_simple (pattern, g_ptr_array_index (logged, i));
  return n;
}

/* Heap in use, to bound what dhfd keeps: under AddressSanitizer malloc is
 * not glibc's, and there is nothing to measure. */
#if defined(__SANITIZE_ADDRESS__)
#define HEAP_MEASURABLE 0
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define HEAP_MEASURABLE 0
#endif
#endif
#ifndef HEAP_MEASURABLE
#define HEAP_MEASURABLE 1
#endif

static gsize
heap_used (void)
{
  struct mallinfo2 info = mallinfo2 ();

  return info.uordblks + info.hblkhd;
}

static guint64
queued_for (Fixture *f, Peer *p)
{
  g_autoptr (GVariant) conns = dhf_xdm_router_list_connections (f->router);
  g_autoptr (GVariant) entry = NULL;
  guint64 queued = 0;

  for (gsize i = 0; i < g_variant_n_children (conns) && entry == NULL; i++)
    {
      g_autoptr (GVariant) child = g_variant_get_child_value (conns, i);
      guint64 child_id = 0;

      if (g_variant_lookup (child, "id", "t", &child_id) && child_id == p->id)
        entry = g_steal_pointer (&child);
    }
  g_assert_nonnull (entry);
  g_assert_true (g_variant_lookup (entry, "queued-bytes", "t", &queued));
  return queued;
}

static void
register_service (Peer *p, const gchar *service)
{
  guint32 id = peer_next_id (p);
  g_autoptr (Frame) reply = NULL;

  peer_sendf (p, DHF_XDM_REGISTER, id, "{\"service\":\"%s\"}", service);
  reply = peer_expect (p, DHF_XDM_REPLY, id);
}

/* A complete call from gamma to delta (both new): the router still serves
 * others. */
static void
others_still_served (Fixture *f)
{
  Peer *delta = peer_join (f, "delta");
  Peer *gamma = peer_join (f, "gamma");
  g_autoptr (Frame) call = NULL;
  g_autoptr (Frame) reply = NULL;
  guint32 id;

  register_service (delta, "org.example.Spare1");
  id = peer_call (gamma, "org.example.Spare1", "delta", "\"ping\"");
  call = peer_expect (delta, DHF_XDM_CALL, -1);
  peer_sendf (delta, DHF_XDM_REPLY, call->header.id, "{\"result\":%s}", "\"pong\"");
  reply = peer_expect (gamma, DHF_XDM_REPLY, id);
  g_assert_cmpstr (json_object_get_string (reply->msg.value), ==, "pong");
}

/* The connection ends with one ERROR (id 0) whose message contains
 * what, and closed() reports code. */
static void
expect_cut_off (Peer *p, const gchar *code, const gchar *what, DhfError closed_code)
{
  g_autoptr (GPtrArray) frames = peer_expect_eof (p);
  const ClosedRecord *closed;
  Frame *error;

  g_assert_cmpuint (frames->len, ==, 1);
  error = g_ptr_array_index (frames, 0);
  g_assert_cmpint (error->header.type, ==, DHF_XDM_ERROR);
  g_assert_cmpuint (error->header.id, ==, 0);
  g_assert_cmpstr (error->msg.code, ==, code);
  if (strstr (error->msg.message, what) == NULL)
    g_error ("\"%s\" does not say \"%s\"", error->msg.message, what);
  closed = fixture_closed (p->f, p->id);
  g_assert_nonnull (closed);
  g_assert_true (closed->has_error);
  g_assert_true (closed->error_domain == DHF_ERROR);
  g_assert_cmpint (closed->error_code, ==, closed_code);
}

static void
test_garbage (Fixture *f, gconstpointer data)
{
  Peer *p = peer_join (f, "alpha");
  static const gchar garbage[] = "GET / HTTP/1.1\r\nHost: dhfd\r\n\r\n";

  peer_send_bytes (p, garbage, sizeof garbage - 1);
  expect_cut_off (p, "protocol", "bad frame magic", DHF_ERROR_PROTOCOL);
  others_still_served (f);
}

static void
test_garbage_before_hello (Fixture *f, gconstpointer data)
{
  Peer *p = peer_connect (f, "alpha", DHF_XDM_TRANSPORT_VSOCK);
  guint8 noise[64];

  for (guint i = 0; i < sizeof noise; i++)
    noise[i] = (guint8) g_random_int ();
  noise[0] = 0;
  peer_send_bytes (p, noise, sizeof noise);
  expect_cut_off (p, "protocol", "magic", DHF_ERROR_PROTOCOL);
}

static void
test_truncated_frame (Fixture *f, gconstpointer data)
{
  Peer *p = peer_join (f, "alpha");
  Peer *q = peer_join (f, "alpha");
  g_autoptr (GByteArray) out = g_byte_array_new ();

  /* A PING with a body of 10 bytes, of which 3 come, then the end. */
  dhf_xdm_append_text (out, DHF_XDM_PING, 1, "{        }", 10);
  peer_send_bytes (p, out->data, DHF_XDM_HEADER_SIZE + 3);
  g_assert_no_errno (shutdown (p->fd, SHUT_WR));
  expect_cut_off (p, "protocol", "in the middle of a frame", DHF_ERROR_PROTOCOL);

  /* Half a header is no better. */
  peer_send_bytes (q, out->data, 5);
  g_assert_no_errno (shutdown (q->fd, SHUT_WR));
  expect_cut_off (q, "protocol", "in the middle of a frame", DHF_ERROR_PROTOCOL);
  others_still_served (f);
}

static void
test_huge_length (Fixture *f, gconstpointer data)
{
  Peer *p = peer_join (f, "alpha");
  /* CALL, id 1, a body of 4 GiB - 1 that never comes. */
  static const guint8 header[DHF_XDM_HEADER_SIZE]
      = { 'D', 'X', 1, DHF_XDM_CALL, 0, 0, 0, 0, 1, 0, 0, 0, 0xff, 0xff, 0xff, 0xff };

  peer_send_bytes (p, header, sizeof header);
  /* Refused from the header alone: nothing else needs to arrive. */
  expect_cut_off (p, "protocol", "over the limit", DHF_ERROR_PROTOCOL);
  others_still_served (f);
}

static void
test_header_errors (Fixture *f, gconstpointer data)
{
  static const struct
  {
    guint8 bytes[DHF_XDM_HEADER_SIZE];
    const gchar *what;
  } cases[] = {
    { { 'D', 'X', 2, DHF_XDM_PING, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0 }, "frame version" },
    { { 'D', 'X', 1, 99, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0 }, "unknown message type" },
    { { 'D', 'X', 1, DHF_XDM_PING, 4, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0 }, "flag" },
    { { 'D', 'X', 1, DHF_XDM_PING, 1, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0 }, "RAW" },
    { { 'D', 'X', 1, DHF_XDM_STREAM_DATA, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0 }, "RAW" },
    { { 'D', 'X', 1, DHF_XDM_PING, 0, 0, 1, 0, 1, 0, 0, 0, 0, 0, 0, 0 }, "reserved" },
    { { 'D', 'X', 1, DHF_XDM_CALL, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0 }, "request id" },
  };

  for (guint i = 0; i < G_N_ELEMENTS (cases); i++)
    {
      Peer *p = peer_join (f, "alpha");

      peer_send_bytes (p, cases[i].bytes, DHF_XDM_HEADER_SIZE);
      expect_cut_off (p, "protocol", cases[i].what, DHF_ERROR_PROTOCOL);
    }
}

static void
test_body_errors (Fixture *f, gconstpointer data)
{
  Peer *p = peer_join (f, "alpha");
  static const struct
  {
    DhfXdmType type;
    const gchar *body;
  } cases[] = {
    { DHF_XDM_CALL, "{\"service\":" },
    { DHF_XDM_CALL, "[1,2]" },
    { DHF_XDM_CALL, "{\"target\":\"beta\"}" },
    { DHF_XDM_CALL, "{\"service\":\"org.example.Echo1\",\"timeout_ms\":0}" },
    { DHF_XDM_CALL, "{\"service\":\"org.example.Echo1\",\"target\":\"no way\"}" },
    { DHF_XDM_SUBSCRIBE, "{\"topic\":7}" },
    { DHF_XDM_PUBLISH, "{\"data\":1}" },
    { DHF_XDM_STREAM_OPEN, "{\"service\":\"org.example.Stream1\"}" },
    { DHF_XDM_STREAM_CREDIT, "{\"bytes\":0}" },
  };
  g_autofree gchar *message = NULL;

  for (guint i = 0; i < G_N_ELEMENTS (cases); i++)
    {
      guint32 id = peer_next_id (p);

      peer_send (p, cases[i].type, id, cases[i].body);
      g_free (peer_expect_error (p, id, DHF_ERROR_INVALID_ARGS));
    }
  /* Types only dhfd sends. */
  peer_send (p, DHF_XDM_EVENT, 3, "{\"topic\":\"org.example.Topic1\",\"source\":\"alpha\"}");
  message = peer_expect_error (p, 3, DHF_ERROR_PROTOCOL);
  g_assert_nonnull (strstr (message, "sent by dhfd only"));
  /* The session goes on. */
  peer_sync (p);
  g_assert_null (fixture_closed (f, p->id));
}

/* ERROR with id 0 says the peer is about to close: dhfd closes, and logs
 * it once, its text made harmless (no forged lines, no terminal
 * sequences, not too long). A burst of them is one line. */
static void
test_peer_error (Fixture *f, gconstpointer data)
{
  Peer *alpha = peer_join (f, "alpha");
  Peer *beta = peer_join (f, "beta");
  g_autoptr (GByteArray) burst = g_byte_array_new ();
  g_autoptr (GString) body = g_string_new ("{\"code\":\"failed\",\"message\":\"x\\n"
                                           "FAKE: dhfd: policy reloaded\\u001b[31m\\u202e");
  g_autoptr (GPtrArray) frames = NULL;
  const ClosedRecord *closed;
  const gchar *line = NULL;

  for (guint i = 0; i < 900; i++)
    g_string_append_c (body, 'z');
  g_string_append (body, "\"}");
  g_ptr_array_set_size (logged, 0);
  peer_send (alpha, DHF_XDM_ERROR, 0, body->str);
  frames = peer_expect_eof (alpha);
  g_assert_cmpuint (frames->len, ==, 0);
  closed = fixture_closed (f, alpha->id);
  g_assert_nonnull (closed);
  g_assert_true (closed->established);
  g_assert_true (closed->error_domain == DHF_ERROR);
  g_assert_cmpint (closed->error_code, ==, DHF_ERROR_DISCONNECTED);
  g_assert_cmpuint (count_logged ("*ended the session*"), ==, 1);
  for (guint i = 0; i < logged->len; i++)
    if (strstr (g_ptr_array_index (logged, i), "ended the session") != NULL)
      line = g_ptr_array_index (logged, i);
  g_assert_nonnull (strstr (line, "x\\u000aFAKE: dhfd: policy reloaded\\u001b[31m\\u202ezzz"));
  g_assert_null (strchr (line, '\n'));
  g_assert_null (strchr (line, '\033'));
  g_assert_cmpuint (strlen (line), <, 400);

  /* A thousand of them in one write (which the socket takes whole: dhfd
   * closes after the first): one line. */
  for (guint i = 0; i < 1000; i++)
    dhf_xdm_append_text (burst, DHF_XDM_ERROR, 0, "{\"code\":\"failed\",\"message\":\"again\"}",
                         (gsize) -1);
  g_assert_cmpint (write (beta->fd, burst->data, burst->len), ==, (gssize) burst->len);
  g_clear_pointer (&frames, g_ptr_array_unref);
  frames = peer_expect_eof (beta);
  g_assert_cmpuint (count_logged ("*ended the session: failed: again"), ==, 1);
  others_still_served (f);
}

/* Until HELLO, a connection gets nothing else through and no more than a
 * small HELLO buffered: the rest is refused from the header, before any
 * body is waited for. */
static void
test_pre_hello_limits (Fixture *f, gconstpointer data)
{
  Peer *p = peer_connect (f, "alpha", DHF_XDM_TRANSPORT_VSOCK);
  Peer *q = peer_connect (f, "alpha", DHF_XDM_TRANSPORT_VSOCK);
  Peer *r = peer_connect (f, "alpha", DHF_XDM_TRANSPORT_VSOCK);
  /* A PING and a HELLO announcing 1 MiB bodies that never come. */
  static const guint8 ping[DHF_XDM_HEADER_SIZE]
      = { 'D', 'X', 1, DHF_XDM_PING, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0x10, 0 };
  static const guint8 hello[DHF_XDM_HEADER_SIZE]
      = { 'D', 'X', 1, DHF_XDM_HELLO, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0x10, 0 };
  g_autoptr (GString) padded = g_string_new ("{\"versions\":[1]");
  g_autoptr (Frame) welcome = NULL;

  peer_send_bytes (p, ping, sizeof ping);
  expect_cut_off (p, "protocol", "PING before HELLO", DHF_ERROR_PROTOCOL);
  g_assert_false (fixture_closed (f, p->id)->established);
  peer_send_bytes (q, hello, sizeof hello);
  expect_cut_off (q, "protocol", "over the limit of 4096 bytes", DHF_ERROR_PROTOCOL);

  /* A HELLO of the largest size taken is fine. */
  while (padded->len < DHF_XDM_ROUTER_HELLO_MAX_BODY - 1)
    g_string_append_c (padded, ' ');
  g_string_append_c (padded, '}');
  peer_send (r, DHF_XDM_HELLO, 1, padded->str);
  welcome = peer_expect (r, DHF_XDM_WELCOME, 0);
  /* After it, large frames are fine too. */
  peer_send_bytes (r, ping, sizeof ping);
  {
    g_autofree gchar *body = g_malloc (0x100000);

    memset (body, ' ', 0x100000);
    body[0] = '{';
    body[0x100000 - 1] = '}';
    peer_send_bytes (r, body, 0x100000);
  }
  frame_free (peer_expect (r, DHF_XDM_PONG, 1));
}

static guint64
add_vsock (Fixture *f, const gchar *domain, gint *fd, GError **error)
{
  DhfXdmPeer identity = { DHF_XDM_TRANSPORT_VSOCK, domain, NULL, (uid_t) -1, 0 };
  gint fds[2];
  guint64 id;

  g_assert_no_errno (socketpair (AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, fds));
  id = dhf_xdm_router_add_connection (f->router, fds[1], &identity, NULL, NULL, error);
  *fd = fds[0];
  return id;
}

static gboolean is_closed (gpointer data);

/* A guest's connections are bounded (MaxConnectionsPerDomain, channel
 * included); its channel is always taken; other domains are not
 * concerned. */
static void
test_domain_connections (Fixture *f, gconstpointer data)
{
  Peer *channel = peer_join (f, "alpha");
  g_autoptr (GError) error = NULL;
  Peer *first = NULL;
  gint fd = -1;

  g_assert_cmpuint (f->limits.max_domain_connections, ==, 8);
  for (guint i = 1; i < f->limits.max_domain_connections; i++)
    {
      Peer *p = peer_connect (f, "alpha", DHF_XDM_TRANSPORT_VSOCK);

      if (first == NULL)
        first = p;
    }
  g_assert_cmpuint (add_vsock (f, "alpha", &fd, &error), ==, 0);
  g_assert_error (error, DHF_ERROR, DHF_ERROR_LIMIT_EXCEEDED);
  g_clear_error (&error);
  /* Refused: closed at once. */
  {
    char byte;

    g_assert_cmpint (read (fd, &byte, 1), ==, 0);
    close (fd);
  }
  /* The channel, dhfd's own, is taken; so are other domains' and dom0's. */
  peer_connect (f, "alpha", DHF_XDM_TRANSPORT_CHANNEL);
  peer_connect (f, "beta", DHF_XDM_TRANSPORT_VSOCK);
  peer_join (f, "dom0");
  g_assert_cmpuint (dhf_xdm_router_get_n_connections (f->router), ==,
                    f->limits.max_domain_connections + 3);

  /* alpha has 9 now; two go: room for one. */
  peer_close (first);
  fixture_wait (f, is_closed, first);
  peer_close (channel);
  fixture_wait (f, is_closed, channel);
  peer_connect (f, "alpha", DHF_XDM_TRANSPORT_VSOCK);
  g_assert_cmpuint (add_vsock (f, "alpha", &fd, &error), ==, 0);
  g_assert_error (error, DHF_ERROR, DHF_ERROR_LIMIT_EXCEEDED);
  close (fd);
}

/* One byte at a time, with the router running in between. */
static void
test_trickle (Fixture *f, gconstpointer data)
{
  Peer *alpha = peer_join (f, "alpha");
  Peer *beta = peer_join (f, "beta");
  g_autoptr (GByteArray) out = g_byte_array_new ();
  g_autoptr (Frame) call = NULL;

  register_service (beta, "org.example.Echo1");
  dhf_xdm_append_text (out, DHF_XDM_CALL, 9,
                       "{\"service\":\"org.example.Echo1\",\"target\":\"beta\"}", (gsize) -1);
  dhf_xdm_append_text (out, DHF_XDM_PING, 10, NULL, 0);
  for (guint i = 0; i < out->len; i++)
    {
      peer_send_bytes (alpha, out->data + i, 1);
      fixture_flush (f);
    }
  call = peer_expect (beta, DHF_XDM_CALL, -1);
  g_assert_cmpstr (call->msg.source, ==, "alpha");
  frame_free (peer_expect (alpha, DHF_XDM_PONG, 10));
}

/* 10 000 calls in one burst: MaxCallsInFlight pass, the rest are refused
 * at once, and another domain's call goes through meanwhile. */
static void
test_pipelined_flood (Fixture *f, gconstpointer data)
{
  Peer *alpha = peer_join (f, "alpha");
  Peer *beta = peer_join (f, "beta");
  Peer *gamma = peer_join (f, "gamma");
  g_autoptr (GByteArray) burst = g_byte_array_new ();
  g_autoptr (GHashTable) answered = g_hash_table_new (g_direct_hash, g_direct_equal);
  guint32 gamma_id = 0;
  guint replies = 0, refused = 0, forwarded = 0;
  gboolean gamma_done = FALSE;
  const guint n = 10000;

  register_service (beta, "org.example.Echo1");
  for (guint i = 1; i <= n; i++)
    {
      dhf_xdm_append_text (burst, DHF_XDM_CALL, i,
                           "{\"service\":\"org.example.Echo1\",\"target\":\"beta\"}", (gsize) -1);
      if (i == n / 2)
        {
          peer_send_bytes (alpha, burst->data, burst->len);
          g_byte_array_set_size (burst, 0);
          gamma_id = peer_call (gamma, "org.example.Echo1", "beta", NULL);
        }
    }
  /* A PING after the burst: its PONG says the router has read it all. */
  dhf_xdm_append_text (burst, DHF_XDM_PING, n + 1, NULL, 0);
  peer_send_bytes (alpha, burst->data, burst->len);
  for (;;)
    {
      g_autoptr (Frame) frame = peer_recv (alpha);

      if (frame->header.type == DHF_XDM_PONG)
        {
          g_assert_cmpuint (frame->header.id, ==, n + 1);
          break;
        }
      g_assert_cmpint (frame->header.type, ==, DHF_XDM_ERROR);
      g_assert_cmpstr (frame->msg.code, ==, "limit-exceeded");
      g_assert_false (g_hash_table_contains (answered, GUINT_TO_POINTER (frame->header.id)));
      g_hash_table_add (answered, GUINT_TO_POINTER (frame->header.id));
      refused++;
    }
  /* beta had answered nothing, so exactly the limit went through. */
  g_assert_cmpuint (refused, ==, n - f->limits.max_calls_in_flight);

  /* beta answers what reached it: alpha's admitted calls and gamma's,
   * which was not held up by alpha's burst. */
  while (!gamma_done || forwarded < f->limits.max_calls_in_flight)
    {
      g_autoptr (Frame) call = peer_expect (beta, DHF_XDM_CALL, -1);

      if (g_str_equal (call->msg.source, "alpha"))
        forwarded++;
      else
        gamma_done = TRUE;
      peer_sendf (beta, DHF_XDM_REPLY, call->header.id, "{\"result\":%u}", call->header.id);
    }
  frame_free (peer_expect (gamma, DHF_XDM_REPLY, gamma_id));
  while (replies < forwarded)
    {
      g_autoptr (Frame) frame = peer_expect (alpha, DHF_XDM_REPLY, -1);

      g_assert_cmpuint (frame->header.id, >=, 1);
      g_assert_cmpuint (frame->header.id, <=, n);
      g_assert_false (g_hash_table_contains (answered, GUINT_TO_POINTER (frame->header.id)));
      g_hash_table_add (answered, GUINT_TO_POINTER (frame->header.id));
      replies++;
    }
  g_assert_cmpuint (g_hash_table_size (answered), ==, n);
  peer_sync (beta);
  g_assert_false (peer_has_frame (beta));
  peer_sync (alpha);
}

/* Many PINGs in one burst from one domain while another works. */
static void
test_ping_flood (Fixture *f, gconstpointer data)
{
  Peer *alpha = peer_join (f, "alpha");
  g_autoptr (GByteArray) burst = g_byte_array_new ();
  const guint n = 50000;

  for (guint i = 1; i <= n; i++)
    dhf_xdm_append_text (burst, DHF_XDM_PING, i, NULL, 0);
  peer_send_bytes (alpha, burst->data, burst->len);
  others_still_served (f);
  for (guint i = 1; i <= n; i++)
    frame_free (peer_expect (alpha, DHF_XDM_PONG, i));
}

static void
small_queues (DhfXdmLimits *limits)
{
  limits->max_queued_bytes = 64 * 1024;
  limits->max_connection_bytes = 4 * limits->max_queued_bytes;
}

static gboolean
is_closed (gpointer data)
{
  Peer *p = data;

  return fixture_closed (p->f, p->id) != NULL;
}

/* Opens an alpha -> beta stream with the windows given; returns alpha's
 * id, *b_id beta's. */
static guint32
open_stream (Peer *alpha, Peer *beta, guint32 window_a, guint32 window_b, guint32 *b_id)
{
  guint32 id = peer_next_id (alpha);
  g_autoptr (Frame) open = NULL;
  g_autoptr (Frame) reply = NULL;

  peer_sendf (alpha, DHF_XDM_STREAM_OPEN, id,
              "{\"service\":\"org.example.Stream1\",\"target\":\"beta\",\"window\":%u}", window_a);
  open = peer_expect (beta, DHF_XDM_STREAM_OPEN, -1);
  peer_sendf (beta, DHF_XDM_REPLY, open->header.id, "{\"window\":%u}", window_b);
  reply = peer_expect (alpha, DHF_XDM_REPLY, id);
  *b_id = open->header.id;
  return id;
}

/* Empty STREAM_DATA needs no credit: a flood of them must not reach the
 * other end, which granted nothing. The first resets the stream. */
static void
test_empty_data_flood (Fixture *f, gconstpointer data)
{
  Peer *alpha = peer_join (f, "alpha");
  Peer *beta = peer_join (f, "beta");
  g_autoptr (GByteArray) burst = g_byte_array_new ();
  g_autoptr (Frame) reset = NULL;
  guint32 a_id, b_id;

  register_service (beta, "org.example.Stream1");
  a_id = open_stream (alpha, beta, 0, 0, &b_id);
  beta->slow = TRUE;
  for (guint i = 0; i < 4096; i++)
    dhf_xdm_append_raw (burst, DHF_XDM_STREAM_DATA, a_id, NULL, 0);
  for (guint i = 0; i < 64; i++)
    {
      peer_send_bytes (alpha, burst->data, burst->len);
      fixture_flush (f);
      g_assert_null (fixture_closed (f, beta->id));
      g_assert_cmpuint (queued_for (f, beta), <, 256);
    }
  reset = peer_expect (alpha, DHF_XDM_STREAM_CLOSE, a_id);
  g_assert_cmpstr (reset->msg.code, ==, "protocol");
  peer_sync (alpha);
  g_assert_false (peer_has_frame (alpha));
  beta->slow = FALSE;
  g_clear_pointer (&reset, frame_free);
  reset = peer_expect (beta, DHF_XDM_STREAM_CLOSE, b_id);
  peer_sync (beta);
  g_assert_false (peer_has_frame (beta));
}

/* STREAM_CREDIT {"bytes":1} by the hundred thousand to a peer that does
 * not read: summed, and held once its queue is over the soft limit; it
 * is never cut off, and gets all the credit once it reads. */
static void
test_credit_flood (Fixture *f, gconstpointer data)
{
  Peer *alpha = peer_join (f, "alpha");
  Peer *beta = peer_join (f, "beta");
  g_autoptr (GByteArray) burst = g_byte_array_new ();
  guint32 a_id, b_id;
  guint64 total = 0;
  const guint rounds = 64, n = 4096;

  register_service (beta, "org.example.Stream1");
  a_id = open_stream (alpha, beta, 0, 0, &b_id);
  beta->slow = TRUE;
  for (guint i = 0; i < n; i++)
    dhf_xdm_append_text (burst, DHF_XDM_STREAM_CREDIT, a_id, "{\"bytes\":1}", (gsize) -1);
  for (guint i = 0; i < rounds; i++)
    {
      peer_send_bytes (alpha, burst->data, burst->len);
      fixture_flush (f);
      g_assert_null (fixture_closed (f, beta->id));
      g_assert_cmpuint (queued_for (f, beta), <=, f->limits.max_queued_bytes + 64);
    }
  peer_sync (alpha);
  beta->slow = FALSE;
  peer_send (beta, DHF_XDM_PING, 1, NULL);
  for (;;)
    {
      g_autoptr (Frame) frame = peer_recv (beta);

      if (frame->header.type == DHF_XDM_PONG)
        break;
      g_assert_cmpint (frame->header.type, ==, DHF_XDM_STREAM_CREDIT);
      g_assert_cmpuint (frame->header.id, ==, b_id);
      total += frame->msg.bytes;
    }
  g_assert_cmpuint (total, ==, (guint64) rounds * n);
}

/* Credit waits while either end does not read: for the receiver of the
 * credit (no frames pile up for it) and for the one that grants it (no
 * more data is sent to it meanwhile). */
static void
test_credit_held (Fixture *f, gconstpointer data)
{
  Peer *alpha = peer_join (f, "alpha");
  Peer *beta = peer_join (f, "beta");
  g_autoptr (GByteArray) burst = g_byte_array_new ();
  g_autofree guint8 *bytes = g_malloc0 (DHF_XDM_MAX_BODY);
  g_autoptr (Frame) frame = NULL;
  guint64 queued;
  guint32 a_id, b_id;

  register_service (beta, "org.example.Stream1");
  a_id = open_stream (alpha, beta, 0, 8 * DHF_XDM_MAX_BODY, &b_id);
  beta->slow = TRUE;
  /* More than the socket takes: beta's queue is over the soft limit. */
  peer_send_data (alpha, a_id, bytes, DHF_XDM_MAX_BODY);
  peer_sync (alpha);
  queued = queued_for (f, beta);
  g_assert_cmpuint (queued, >, f->limits.max_queued_bytes);

  for (guint i = 0; i < 4096; i++)
    dhf_xdm_append_text (burst, DHF_XDM_STREAM_CREDIT, a_id, "{\"bytes\":1}", (gsize) -1);
  peer_send_bytes (alpha, burst->data, burst->len);
  peer_send (beta, DHF_XDM_STREAM_CREDIT, b_id, "{\"bytes\":5}");
  fixture_flush (f);
  peer_sync (alpha);
  /* Nothing was added for beta, and alpha got no credit from it. */
  g_assert_cmpuint (queued_for (f, beta), ==, queued);
  g_assert_false (peer_has_frame (alpha));

  /* beta reads: its data, then all the credit at once; alpha gets its. */
  beta->slow = FALSE;
  frame = peer_expect (beta, DHF_XDM_STREAM_DATA, b_id);
  g_assert_cmpuint (frame->msg.raw_length, ==, DHF_XDM_MAX_BODY);
  g_clear_pointer (&frame, frame_free);
  frame = peer_expect (beta, DHF_XDM_STREAM_CREDIT, b_id);
  g_assert_cmpuint (frame->msg.bytes, ==, 4096);
  g_clear_pointer (&frame, frame_free);
  frame = peer_expect (alpha, DHF_XDM_STREAM_CREDIT, a_id);
  g_assert_cmpuint (frame->msg.bytes, ==, 5);
}

/* Data within the credit a peer granted, to a peer that does not read:
 * rather than cut the receiver off at its hard cap, dhfd resets the
 * stream. */
static void
test_data_over_cap (Fixture *f, gconstpointer data)
{
  Peer *alpha = peer_join (f, "alpha");
  Peer *beta = peer_join (f, "beta");
  g_autofree guint8 *bytes = g_malloc0 (256 * 1024);
  g_autoptr (Frame) reset = NULL;
  guint32 a_id, b_id;

  register_service (beta, "org.example.Stream1");
  a_id = open_stream (alpha, beta, 0, 16 * DHF_XDM_MAX_BODY, &b_id);
  beta->slow = TRUE;
  /* Twice the hard cap (small_queues: about 1 MiB). */
  for (guint i = 0; i < 8; i++)
    {
      peer_send_data (alpha, a_id, bytes, 256 * 1024);
      fixture_flush (f);
      g_assert_null (fixture_closed (f, beta->id));
      g_assert_cmpuint (queued_for (f, beta), <=,
                        f->limits.max_queued_bytes + 256 * 1024 + DHF_XDM_HEADER_SIZE + 256);
    }
  reset = peer_expect (alpha, DHF_XDM_STREAM_CLOSE, a_id);
  g_assert_cmpstr (reset->msg.code, ==, "limit-exceeded");
  g_assert_nonnull (strstr (reset->msg.message, "beta is not reading"));
  beta->slow = FALSE;
  for (;;)
    {
      g_autoptr (Frame) frame = peer_recv (beta);

      if (frame->header.type == DHF_XDM_STREAM_CLOSE)
        {
          g_assert_cmpstr (frame->msg.code, ==, "limit-exceeded");
          break;
        }
      g_assert_cmpint (frame->header.type, ==, DHF_XDM_STREAM_DATA);
    }
  others_still_served (f);
}

static void
long_asks (DhfXdmLimits *limits)
{
  limits->ask_timeout_ms = 60 * 1000;
}

/* ~1 MiB of params: a JSON array of small numbers, the worst case for
 * the size of a parsed tree. */
static gchar *
big_call (const gchar *service)
{
  GString *body = g_string_new (NULL);

  g_string_append_printf (body,
                          "{\"service\":\"%s\",\"target\":\"beta\",\"timeout_ms\":600000,"
                          "\"params\":[0",
                          service);
  while (body->len < DHF_XDM_MAX_BODY - 16)
    g_string_append (body, ",0");
  g_string_append (body, "]}");
  return g_string_free (body, FALSE);
}

/* A pending call keeps a few names, not its request: the parsed params
 * (some 37 times their text as a json-c tree) go once forwarded. */
static void
test_pending_call_memory (Fixture *f, gconstpointer data)
{
  Peer *alpha = peer_join (f, "alpha");
  Peer *beta = peer_join (f, "beta");
  g_autofree gchar *body = big_call ("org.example.Echo1");
  gsize before = 0, after;
  const guint n = 8;

  if (!HEAP_MEASURABLE)
    {
      g_test_skip ("the heap is not glibc's under AddressSanitizer");
      return;
    }
  register_service (beta, "org.example.Echo1");
  /* One first: buffers that stay (the peers' own) are counted before. */
  for (guint i = 0; i <= n; i++)
    {
      g_autoptr (Frame) call = NULL;

      if (i == 1)
        {
          fixture_flush (f);
          before = heap_used ();
        }
      peer_send (alpha, DHF_XDM_CALL, peer_next_id (alpha), body);
      call = peer_expect (beta, DHF_XDM_CALL, -1); /* beta never answers */
    }
  fixture_flush (f);
  after = heap_used ();
  g_test_message ("%u pending calls of ~1 MiB params: the heap grew by %" G_GSIZE_FORMAT " bytes",
                  n, after > before ? after - before : 0);
  g_assert_cmpuint (after, <, before + n * 64 * 1024);
}

/* A call waiting for the user keeps its params as text, no bigger than
 * the request was. */
static void
test_pending_ask_memory (Fixture *f, gconstpointer data)
{
  Peer *alpha = peer_join (f, "alpha");
  Peer *beta = peer_join (f, "beta");
  g_autofree gchar *body = big_call ("org.example.Ask1");
  gsize before, after;
  guint32 ids[2];

  if (!HEAP_MEASURABLE)
    {
      g_test_skip ("the heap is not glibc's under AddressSanitizer");
      return;
    }
  register_service (beta, "org.example.Ask1");
  fixture_set_ask_mode (f, ASK_NEVER);
  peer_sync (alpha);
  fixture_flush (f);
  before = heap_used ();
  /* MaxPendingQuestions is 2 here. */
  for (guint i = 0; i < G_N_ELEMENTS (ids); i++)
    {
      ids[i] = peer_next_id (alpha);
      peer_send (alpha, DHF_XDM_CALL, ids[i], body);
    }
  peer_sync (alpha);
  fixture_flush (f);
  after = heap_used ();
  g_assert_cmpuint (f->questions->len, ==, 2);
  g_test_message ("2 calls of ~1 MiB params waiting for the user: the heap grew by %" G_GSIZE_FORMAT
                  " bytes",
                  after > before ? after - before : 0);
  g_assert_cmpuint (after, <, before + 2 * (DHF_XDM_MAX_BODY + 256 * 1024));
}

/* What a call waiting for the user keeps is what the provider gets once
 * the user allows it. */
static void
test_asked_params_forwarded (Fixture *f, gconstpointer data)
{
  Peer *alpha = peer_join (f, "alpha");
  Peer *beta = peer_join (f, "beta");
  g_autoptr (Frame) call = NULL;
  json_object *list = NULL;

  register_service (beta, "org.example.Ask1");
  fixture_set_ask_mode (f, ASK_YES);
  peer_call (alpha, "org.example.Ask1", "beta",
             "{\"text\":\"h\\u00e9 \\\"q\\\" /\",\"list\":[1,-2.5,true,null,{}]}");
  call = peer_expect (beta, DHF_XDM_CALL, -1);
  g_assert_cmpstr (json_string_member (call->msg.value, "text"), ==, "h\xc3\xa9 \"q\" /");
  g_assert_true (json_object_object_get_ex (call->msg.value, "list", &list));
  g_assert_cmpstr (json_object_to_json_string_ext (list, JSON_C_TO_STRING_PLAIN), ==,
                   "[1,-2.5,true,null,{}]");
}

/* A caller that never reads what comes back: its queue reaches the hard
 * cap and it is cut off; dhfd's memory for it stays bounded. */
static void
test_slow_reader (Fixture *f, gconstpointer data)
{
  Peer *alpha = peer_join (f, "alpha");
  Peer *beta = peer_join (f, "beta");
  g_autoptr (GString) result = g_string_new ("{\"result\":\"");
  g_autoptr (GHashTable) answered = g_hash_table_new (g_direct_hash, g_direct_equal);
  g_autoptr (GHashTable) cancelled = g_hash_table_new (g_direct_hash, g_direct_equal);
  const ClosedRecord *closed;
  guint forwarded = 0;

  register_service (beta, "org.example.Echo1");
  for (guint i = 0; i < 200000; i++)
    g_string_append_c (result, 'y');
  g_string_append (result, "\"}");
  alpha->slow = TRUE;
  for (guint i = 0; i < 20; i++)
    peer_call (alpha, "org.example.Echo1", "beta", NULL);
  /* beta answers every call (200 kB each) until alpha is gone. */
  while (!is_closed (alpha))
    {
      g_autoptr (Frame) frame = peer_recv (beta);
      g_autoptr (GVariant) conns = NULL;
      g_autoptr (GVariant) entry = NULL;
      guint64 queued = 0;

      if (frame->header.type == DHF_XDM_CANCEL)
        {
          g_hash_table_add (cancelled, GUINT_TO_POINTER (frame->header.id));
          continue;
        }
      g_assert_cmpint (frame->header.type, ==, DHF_XDM_CALL);
      g_hash_table_add (answered, GUINT_TO_POINTER (frame->header.id));
      peer_send (beta, DHF_XDM_REPLY, frame->header.id, result->str);
      fixture_flush (f);
      conns = dhf_xdm_router_list_connections (f->router);
      entry = variant_find (conns, "domain", "alpha");
      if (entry != NULL)
        {
          g_assert_true (g_variant_lookup (entry, "queued-bytes", "t", &queued));
          /* The hard cap: 4 x 64 KiB, raised to leave room for one frame
           * over the soft cap; one frame may cross it. */
          g_assert_cmpuint (queued, <=, 64 * 1024 + 2 * (DHF_XDM_MAX_BODY + 16));
        }
      g_assert_cmpuint (g_hash_table_size (answered), <, 20);
    }
  closed = fixture_closed (f, alpha->id);
  g_assert_true (closed->has_error);
  g_assert_cmpint (closed->error_code, ==, DHF_ERROR_LIMIT_EXCEEDED);

  /* beta is told about each call it got and did not answer; the rest of
   * alpha's calls never reach it. */
  peer_send (beta, DHF_XDM_PING, 1, NULL);
  for (;;)
    {
      g_autoptr (Frame) frame = peer_recv (beta);

      if (frame->header.type == DHF_XDM_PONG)
        break;
      if (frame->header.type == DHF_XDM_CALL)
        forwarded++;
      else
        {
          g_assert_cmpint (frame->header.type, ==, DHF_XDM_CANCEL);
          g_assert_false (g_hash_table_contains (answered, GUINT_TO_POINTER (frame->header.id)));
          g_hash_table_add (cancelled, GUINT_TO_POINTER (frame->header.id));
        }
    }
  g_assert_cmpuint (g_hash_table_size (cancelled), ==, forwarded);
  others_still_served (f);
}

/* A provider that does not read: calls to it are refused once its queue
 * is over MaxQueuedBytes. */
static void
test_slow_provider (Fixture *f, gconstpointer data)
{
  Peer *alpha = peer_join (f, "alpha");
  Peer *beta = peer_join (f, "beta");
  g_autoptr (GString) params = g_string_new ("\"");
  gboolean refused = FALSE;

  register_service (beta, "org.example.Echo1");
  for (guint i = 0; i < 50000; i++)
    g_string_append_c (params, 'z');
  g_string_append_c (params, '"');
  beta->slow = TRUE;
  for (guint i = 0; i < 100 && !refused; i++)
    {
      guint32 id = peer_call (alpha, "org.example.Echo1", "beta", params->str);

      fixture_flush (f);
      if (peer_has_frame (alpha))
        {
          g_autoptr (Frame) frame = peer_expect (alpha, DHF_XDM_ERROR, id);

          g_assert_cmpstr (frame->msg.code, ==, "limit-exceeded");
          refused = TRUE;
        }
    }
  g_assert_true (refused);
  g_assert_null (fixture_closed (f, beta->id));
}

static void
test_close_domain (Fixture *f, gconstpointer data)
{
  Peer *alpha = peer_join (f, "alpha");
  Peer *beta = peer_join (f, "beta");
  Peer *beta2 = peer_join (f, "beta");
  g_autoptr (Frame) call = NULL;
  g_autoptr (GPtrArray) frames = NULL;
  g_autofree gchar *message = NULL;
  guint32 id;

  register_service (beta, "org.example.Echo1");
  id = peer_call (alpha, "org.example.Echo1", "beta", NULL);
  call = peer_expect (beta, DHF_XDM_CALL, -1);
  dhf_xdm_router_close_domain (f->router, "beta");
  message = peer_expect_error (alpha, id, DHF_ERROR_UNAVAILABLE);
  frames = peer_expect_eof (beta);
  g_assert_cmpuint (frames->len, ==, 0);
  g_clear_pointer (&frames, g_ptr_array_unref);
  frames = peer_expect_eof (beta2);
  g_assert_cmpuint (frames->len, ==, 0);
  g_assert_nonnull (fixture_closed (f, beta->id));
  g_assert_false (fixture_closed (f, beta->id)->has_error);
  g_assert_nonnull (fixture_closed (f, beta2->id));
  g_assert_null (fixture_closed (f, alpha->id));
  g_assert_cmpuint (dhf_xdm_router_get_n_connections (f->router), ==, 1);
  g_clear_pointer (&message, g_free);

  /* Its service is gone with it. */
  id = peer_call (alpha, "org.example.Echo1", "beta", NULL);
  message = peer_expect_error (alpha, id, DHF_ERROR_UNAVAILABLE);
}

static void
test_close_connection (Fixture *f, gconstpointer data)
{
  Peer *alpha = peer_join (f, "alpha");
  Peer *beta = peer_join (f, "beta");
  g_autoptr (Frame) call = NULL;
  g_autoptr (GPtrArray) frames = NULL;
  g_autofree gchar *message = NULL;
  guint32 id;

  register_service (beta, "org.example.Echo1");
  id = peer_call (alpha, "org.example.Echo1", "beta", NULL);
  call = peer_expect (beta, DHF_XDM_CALL, -1);
  dhf_xdm_router_close_connection (f->router, beta->id);
  message = peer_expect_error (alpha, id, DHF_ERROR_UNAVAILABLE);
  frames = peer_expect_eof (beta);
  /* Not told: the caller of close_connection knows. */
  g_assert_null (fixture_closed (f, beta->id));
  /* Unknown ids are ignored. */
  dhf_xdm_router_close_connection (f->router, beta->id);
  dhf_xdm_router_close_connection (f->router, 123456);
  g_assert_cmpuint (dhf_xdm_router_get_n_connections (f->router), ==, 1);
}

/* The closed callback may add a connection (a transport reconnecting). */
typedef struct
{
  Fixture *f;
  guint64 replaced;
  gint fd;
  guint64 new_id;
} Reconnect;

static void
on_closed_reconnect (guint64 id, const GError *error, gboolean established, gpointer user_data)
{
  Reconnect *r = user_data;
  DhfXdmPeer identity = { DHF_XDM_TRANSPORT_CHANNEL, "beta", NULL, (uid_t) -1, 0 };
  gint fds[2];

  g_assert_cmpuint (id, ==, r->replaced);
  g_assert_no_errno (socketpair (AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, fds));
  r->fd = fds[0];
  r->new_id = dhf_xdm_router_add_connection (r->f->router, fds[1], &identity, NULL, NULL, NULL);
  g_assert_cmpuint (r->new_id, !=, 0);
}

static gboolean
reconnected (gpointer data)
{
  Reconnect *r = data;

  return r->new_id != 0;
}

static void
test_reconnect_in_callback (Fixture *f, gconstpointer data)
{
  Reconnect r = { f, 0, -1, 0 };
  DhfXdmPeer identity = { DHF_XDM_TRANSPORT_CHANNEL, "beta", NULL, (uid_t) -1, 0 };
  gint fds[2];

  g_assert_no_errno (socketpair (AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, fds));
  r.replaced
      = dhf_xdm_router_add_connection (f->router, fds[1], &identity, on_closed_reconnect, &r, NULL);
  close (fds[0]);
  fixture_wait (f, reconnected, &r);
  g_assert_cmpuint (dhf_xdm_router_get_n_connections (f->router), ==, 1);
  close (r.fd);
}

/* The closed func may drop the last reference to the router. */
static void
on_closed_unref (guint64 id, const GError *error, gboolean established, gpointer user_data)
{
  Fixture *f = user_data;

  g_clear_object (&f->router);
}

static gboolean
router_gone (gpointer data)
{
  Fixture *f = data;

  return f->router == NULL;
}

static void
test_unref_in_callback (Fixture *f, gconstpointer data)
{
  DhfXdmPeer identity = { DHF_XDM_TRANSPORT_CHANNEL, "beta", NULL, (uid_t) -1, 0 };
  Peer *alpha = peer_join (f, "alpha");
  gint fds[2];

  g_assert_no_errno (socketpair (AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, fds));
  g_assert_cmpuint (
      dhf_xdm_router_add_connection (f->router, fds[1], &identity, on_closed_unref, f, NULL), !=,
      0);
  close (fds[0]);
  fixture_wait (f, router_gone, f);
  /* Everything went with it. */
  g_ptr_array_unref (peer_expect_eof (alpha));
}

static void
many_registrations (DhfXdmLimits *limits)
{
  limits->max_registrations = 64;
}

/* ListAppliances, n_providers x 64 registrations: the lookups (two per
 * policy evaluation) it costs. */
static guint
list_appliances_cost (Peer *alpha, json_object **result)
{
  guint before = harness_lookups;
  guint32 id = peer_call (alpha, "org.dhf.framework.ListAppliances", NULL, NULL);
  g_autoptr (Frame) reply = peer_expect (alpha, DHF_XDM_REPLY, id);

  if (result != NULL)
    *result = json_object_get (reply->msg.value);
  return harness_lookups - before;
}

/* The appliance entry of name in a ListAppliances result, or NULL. */
static json_object *
find_appliance (json_object *result, const gchar *name)
{
  json_object *list = NULL;

  g_assert_true (json_object_object_get_ex (result, "appliances", &list));
  for (gsize i = 0; i < json_object_array_length (list); i++)
    {
      json_object *entry = json_object_array_get_idx (list, i);

      if (g_strcmp0 (json_string_member (entry, "name"), name) == 0)
        return entry;
    }
  return NULL;
}

/* Asking again and again costs one evaluation per registration once, not
 * every time; a new registration costs its own; a new policy, or news of
 * the domains, all of them again (and the answer follows the policy). */
static void
test_list_appliances_cost (Fixture *f, gconstpointer data)
{
  Peer *alpha = peer_join (f, "alpha");
  Peer *prov0 = NULL;
  g_autoptr (GByteArray) burst = g_byte_array_new ();
  g_autofree gchar *admin = g_build_filename (f->root, "admin", NULL);
  json_object *result = NULL;
  const guint n_providers = 16, n_services = 64;
  const guint n_regs = n_providers * n_services;
  guint before;

  for (guint d = 0; d < n_providers; d++)
    {
      g_autofree gchar *name = g_strdup_printf ("prov%u", d);
      Peer *p = peer_join (f, name);

      if (d == 0)
        prov0 = p;
      for (guint i = 0; i < n_services; i++)
        {
          g_autofree gchar *svc = g_strdup_printf ("org.example.S%u", i);

          register_service (p, svc);
        }
    }
  /* The first time: every registration is looked at. */
  g_assert_cmpuint (list_appliances_cost (alpha, NULL), >=, 2 * n_regs);
  /* Then: next to nothing, however often (the entries listed only). */
  g_assert_cmpuint (list_appliances_cost (alpha, NULL), <, 16);
  before = harness_lookups;
  for (guint i = 0; i < 1000; i++)
    dhf_xdm_append_text (burst, DHF_XDM_CALL, 1000 + i,
                         "{\"service\":\"org.dhf.framework.ListAppliances\"}", (gsize) -1);
  peer_send_bytes (alpha, burst->data, burst->len);
  for (guint i = 0; i < 1000; i++)
    frame_free (peer_expect (alpha, DHF_XDM_REPLY, 1000 + i));
  g_assert_cmpuint (harness_lookups - before, <, 1000 * 16);
  /* A service registered again is one new question. */
  peer_send (prov0, DHF_XDM_UNREGISTER, 9000, "{\"service\":\"org.example.S3\"}");
  frame_free (peer_expect (prov0, DHF_XDM_REPLY, 9000));
  register_service (prov0, "org.example.S3");
  g_assert_cmpuint (list_appliances_cost (alpha, NULL), <, 16);

  /* A new policy lets alpha call S3 on prov0: asked again, and listed. */
  g_assert_cmpuint (list_appliances_cost (alpha, &result), <, 16);
  g_assert_null (find_appliance (result, "prov0"));
  g_clear_pointer (&result, json_object_put);
  dhf_test_write_file (admin, "40-more.policy", "org.example.S3 alpha prov0 allow\n");
  g_assert_true (dhf_policy_store_reload (f->store));
  g_assert_cmpuint (list_appliances_cost (alpha, &result), >=, 2 * n_regs);
  g_assert_nonnull (find_appliance (result, "prov0"));
  g_clear_pointer (&result, json_object_put);
  g_assert_cmpuint (list_appliances_cost (alpha, NULL), <, 16);
  /* What the daemon knows of domains changed: asked again. */
  dhf_xdm_router_domains_changed (f->router);
  g_assert_cmpuint (list_appliances_cost (alpha, NULL), >=, 2 * n_regs);
}

static void
setup_with (Fixture *f, gconstpointer data)
{
  g_ptr_array_set_size (logged, 0);
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
  logged = g_ptr_array_new_with_free_func (g_free);
  g_log_set_writer_func (record_log, NULL, NULL);

#define ADD(path, fn, tweak)                                                                       \
  g_test_add ("/xdm-router/hostile/" path, Fixture, (gconstpointer) (tweak), setup_with, fn,       \
              teardown_with)

  ADD ("garbage", test_garbage, NULL);
  ADD ("garbage-before-hello", test_garbage_before_hello, NULL);
  ADD ("truncated-frame", test_truncated_frame, NULL);
  ADD ("huge-length", test_huge_length, NULL);
  ADD ("header-errors", test_header_errors, NULL);
  ADD ("body-errors", test_body_errors, NULL);
  ADD ("peer-error", test_peer_error, NULL);
  ADD ("pre-hello-limits", test_pre_hello_limits, NULL);
  ADD ("domain-connections", test_domain_connections, NULL);
  ADD ("trickle", test_trickle, NULL);
  ADD ("pipelined-flood", test_pipelined_flood, NULL);
  ADD ("ping-flood", test_ping_flood, NULL);
  ADD ("slow-reader", test_slow_reader, small_queues);
  ADD ("slow-provider", test_slow_provider, small_queues);
  ADD ("empty-data-flood", test_empty_data_flood, NULL);
  ADD ("credit-flood", test_credit_flood, NULL);
  ADD ("credit-held", test_credit_held, small_queues);
  ADD ("data-over-cap", test_data_over_cap, small_queues);
  ADD ("pending-call-memory", test_pending_call_memory, NULL);
  ADD ("pending-ask-memory", test_pending_ask_memory, long_asks);
  ADD ("asked-params-forwarded", test_asked_params_forwarded, NULL);
  ADD ("list-appliances-cost", test_list_appliances_cost, many_registrations);
  ADD ("close-domain", test_close_domain, NULL);
  ADD ("close-connection", test_close_connection, NULL);
  ADD ("reconnect-in-callback", test_reconnect_in_callback, NULL);
  ADD ("unref-in-callback", test_unref_in_callback, NULL);

  return g_test_run ();
}
