/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* Hostile XDM peers, speaking the wire format by hand: garbage, truncated
 * frames, a 4 GiB length, a subscriber that never reads while flooded with
 * events, a flood of calls, spoofed sources, silence instead of HELLO.
 * Each time dhfd must answer with an error or drop that one connection,
 * keep serving everyone else (a call between two other appliances proves
 * it afterwards), and keep its memory bounded: its VmRSS may not grow by
 * more than RSS_GROWTH_BOUND_KIB over the whole test. A bound on memory,
 * never on time. */
#include "config.h"

#include <signal.h>
#include <sys/socket.h>
#include <unistd.h>

#include <dhf/dhf.h>

#include "xdm-harness.h"
#include "xdm-raw.h"

#define RSS_GROWTH_BOUND_KIB (64 * 1024)
#define MAX_CALLS_IN_FLIGHT  32

static const XdmDomainSpec domains[] = {
  { "alpha", "environment", NULL, FALSE },
  { "beta", "service", NULL, FALSE },
  { "evil", "environment", NULL, FALSE }, /* its channel socket is the test's */
};

static const gchar policy[] = "org.dhf.framework.Whoami  @any   @dom0  allow\n"
                              "org.dhf.framework.Whoami  @dom0  @dom0  allow\n"
                              "org.dhf.test.Echo1        @any   beta   allow\n"
                              "org.dhf.test.Echo1        @dom0  beta   allow\n"
                              "org.dhf.test.Hang1        @any   beta   allow\n"
                              "org.dhf.test.Hang1        @dom0  beta   allow\n"
                              "org.dhf.test.Flood        @dom0  @dom0  allow\n"
                              "org.dhf.test.Flood        @dom0  @any   allow\n";

typedef struct
{
  XdmHarness *h;
  XdmSim *alpha;
  XdmSim *beta;
  gint evil_listener;
  glong rss_start;
} Fixture;

static void
check_still_serving (Fixture *fx)
{
  g_autofree gchar *reply = xdm_sim_run (fx->alpha, "call", "%s", "org.dhf.test.Echo1 beta 0");
  glong rss = xdm_harness_dhfd_rss_kib (fx->h);

  xdm_assert_ok (reply);
  g_assert_nonnull (strstr (reply, "\"source\":\"alpha\""));
  g_test_message ("dhfd VmRSS: %ld KiB (%+ld KiB since the start)", rss, rss - fx->rss_start);
  g_assert_cmpint (rss - fx->rss_start, <, RSS_GROWTH_BOUND_KIB);
}

static void
fixture_set_up (Fixture *fx, gconstpointer data)
{
  g_autofree gchar *evil = NULL;
  g_autofree gchar *config
      = g_strdup_printf ("AskTimeout=1\nMaxCallsInFlight=%u\n", MAX_CALLS_IN_FLIGHT);
  g_autofree gchar *reply = NULL;

  fx->h = xdm_harness_new (domains, G_N_ELEMENTS (domains), policy, config);
  evil = xdm_harness_channel_path (fx->h, "evil");
  fx->evil_listener = xdm_raw_listen (evil);
  fx->alpha = xdm_sim_spawn (fx->h, "alpha");
  fx->beta = xdm_sim_spawn (fx->h, "beta");
  xdm_harness_start_dhfd (fx->h);
  xdm_sim_wait_ready (fx->alpha);
  xdm_sim_wait_ready (fx->beta);
  reply = xdm_sim_run (fx->beta, "register", "%s", "org.dhf.test.Echo1 echo-quiet");
  xdm_assert_ok (reply);
  g_clear_pointer (&reply, g_free);
  reply = xdm_sim_run (fx->beta, "register", "%s", "org.dhf.test.Hang1 hang");
  xdm_assert_ok (reply);
  g_clear_pointer (&reply, g_free);
  /* The baseline once everything is up and has served a call. */
  reply = xdm_sim_run (fx->alpha, "call", "%s", "org.dhf.test.Echo1 beta 0");
  xdm_assert_ok (reply);
  fx->rss_start = xdm_harness_dhfd_rss_kib (fx->h);
}

static void
fixture_tear_down (Fixture *fx, gconstpointer data)
{
  xdm_sim_free (fx->alpha);
  xdm_sim_free (fx->beta);
  close (fx->evil_listener);
  xdm_harness_free (fx->h);
}

/* The evil domain's session: dhfd connects to its channel socket. */
static XdmRaw *
evil_session (Fixture *fx)
{
  XdmRaw *raw = xdm_raw_accept (fx->evil_listener);

  xdm_raw_hello (raw, "evil");
  return raw;
}

static void
test_garbage (Fixture *fx, gconstpointer data)
{
  static const gchar garbage[] = "GET / HTTP/1.1\r\nHost: dhfd\r\n\r\n";
  g_autoptr (XdmRaw) dom0 = xdm_raw_connect (fx->h->xdm_socket);
  g_autoptr (XdmRaw) evil = NULL;
  guint8 noise[4096];

  /* Before HELLO, on the dom0 socket. */
  xdm_raw_write (dom0, garbage, strlen (garbage));
  xdm_raw_expect_error (dom0, 0, "protocol", TRUE);

  /* After HELLO, on a channel: random bytes. */
  evil = evil_session (fx);
  for (gsize i = 0; i < sizeof noise; i++)
    noise[i] = (guint8) g_random_int ();
  noise[0] = 'X'; /* never a valid magic */
  xdm_raw_write (evil, noise, sizeof noise);
  xdm_raw_expect_error (evil, 0, "protocol", TRUE);
  check_still_serving (fx);

  /* Something else than HELLO first. */
  g_clear_pointer (&dom0, xdm_raw_free);
  dom0 = xdm_raw_connect (fx->h->xdm_socket);
  xdm_raw_send (dom0, DHF_XDM_CALL, 5,
                "{\"service\": \"org.dhf.test.Echo1\", \"target\": \"beta\"}");
  xdm_raw_expect_error (dom0, 0, "protocol", TRUE);
  /* A second HELLO. */
  g_clear_pointer (&dom0, xdm_raw_free);
  dom0 = xdm_raw_connect (fx->h->xdm_socket);
  xdm_raw_hello (dom0, "dom0");
  xdm_raw_send (dom0, DHF_XDM_HELLO, 2, "{\"versions\": [1]}");
  xdm_raw_expect_error (dom0, 0, "protocol", TRUE);
  /* No common version. */
  g_clear_pointer (&dom0, xdm_raw_free);
  dom0 = xdm_raw_connect (fx->h->xdm_socket);
  xdm_raw_send (dom0, DHF_XDM_HELLO, 1, "{\"versions\": [7, 9]}");
  xdm_raw_expect_error (dom0, 0, "protocol", TRUE);

  /* Bad bodies are answered, and the session goes on. */
  g_clear_pointer (&dom0, xdm_raw_free);
  dom0 = xdm_raw_connect (fx->h->xdm_socket);
  xdm_raw_hello (dom0, "dom0");
  xdm_raw_send (dom0, DHF_XDM_CALL, 7, "{\"service\": ");
  xdm_raw_expect_error (dom0, 7, "invalid-args", FALSE);
  xdm_raw_send (dom0, DHF_XDM_CALL, 8, "{\"service\": \"not a name\"}");
  xdm_raw_expect_error (dom0, 8, "invalid-args", FALSE);
  xdm_raw_send (dom0, DHF_XDM_PING, 9, NULL);
  {
    DhfXdmMessage msg = { 0 };

    g_assert_true (xdm_raw_read (dom0, &msg));
    g_assert_cmpint (msg.type, ==, DHF_XDM_PONG);
    g_assert_cmpuint (msg.id, ==, 9);
    dhf_xdm_message_clear (&msg);
  }
  check_still_serving (fx);
}

static void
test_truncated_frame (Fixture *fx, gconstpointer data)
{
  g_autoptr (XdmRaw) evil = evil_session (fx);
  g_autoptr (GByteArray) frame = g_byte_array_new ();
  DhfXdmMessage msg = { 0 };

  dhf_xdm_append_text (frame, DHF_XDM_CALL, 3, "{\"service\": \"org.dhf.test.Echo1\"}",
                       strlen ("{\"service\": \"org.dhf.test.Echo1\"}"));
  /* Half a frame, then nothing: dhfd waits for the rest without holding
   * anyone else up. */
  g_assert_true (xdm_raw_write (evil, frame->data, frame->len / 2));
  check_still_serving (fx);
  /* Then the end of the stream in the middle of the frame. */
  g_assert_cmpint (shutdown (evil->fd, SHUT_WR), ==, 0);
  while (xdm_raw_read (evil, &msg))
    {
      /* At most an ERROR about the cut frame. */
      g_assert_cmpint (msg.type, ==, DHF_XDM_ERROR);
      dhf_xdm_message_clear (&msg);
    }
  check_still_serving (fx);

  /* A header alone, cut short. */
  {
    g_autoptr (XdmRaw) dom0 = xdm_raw_connect (fx->h->xdm_socket);

    xdm_raw_hello (dom0, "dom0");
    g_assert_true (xdm_raw_write (dom0, frame->data, DHF_XDM_HEADER_SIZE - 3));
    g_assert_cmpint (shutdown (dom0->fd, SHUT_WR), ==, 0);
    while (xdm_raw_read (dom0, &msg))
      {
        g_assert_cmpint (msg.type, ==, DHF_XDM_ERROR);
        dhf_xdm_message_clear (&msg);
      }
  }
  check_still_serving (fx);
}

static void
test_huge_length (Fixture *fx, gconstpointer data)
{
  g_autoptr (XdmRaw) evil = evil_session (fx);
  g_autoptr (GByteArray) frame = g_byte_array_new ();
  glong before = xdm_harness_dhfd_rss_kib (fx->h);

  dhf_xdm_append_text (frame, DHF_XDM_CALL, 4, "{}", 2);
  /* Length 0xffffffff: refused from the header alone. */
  frame->data[12] = frame->data[13] = frame->data[14] = frame->data[15] = 0xff;
  g_assert_true (xdm_raw_write (evil, frame->data, DHF_XDM_HEADER_SIZE));
  /* And some of the "body", which must not be waited for (dhfd may have
   * closed the connection already: the write may fail). */
  xdm_raw_write (evil, "{\"service\": \"x", 14);
  xdm_raw_expect_error (evil, 0, "protocol", TRUE);
  /* Nothing was allocated for it. */
  g_assert_cmpint (xdm_harness_dhfd_rss_kib (fx->h) - before, <, 16 * 1024);

  /* Just over the cap, on the dom0 socket. */
  {
    g_autoptr (XdmRaw) dom0 = xdm_raw_connect (fx->h->xdm_socket);
    guint32 over = DHF_XDM_MAX_BODY + 1;

    xdm_raw_hello (dom0, "dom0");
    frame->data[12] = (guint8) over;
    frame->data[13] = (guint8) (over >> 8);
    frame->data[14] = (guint8) (over >> 16);
    frame->data[15] = (guint8) (over >> 24);
    g_assert_true (xdm_raw_write (dom0, frame->data, DHF_XDM_HEADER_SIZE));
    xdm_raw_expect_error (dom0, 0, "protocol", TRUE);
  }
  check_still_serving (fx);
}

static void
test_spoofed_source (Fixture *fx, gconstpointer data)
{
  g_autoptr (XdmRaw) evil = evil_session (fx);
  g_autofree gchar *invoked = NULL;
  DhfXdmMessage msg = { 0 };

  xdm_raw_send (
      evil, DHF_XDM_CALL, 10,
      "{\"service\": \"org.dhf.test.Hang1\", \"target\": \"beta\", \"source\": \"alpha\"}");
  xdm_raw_expect_error (evil, 10, "not-authorized", FALSE);
  xdm_raw_send (evil, DHF_XDM_PUBLISH, 11,
                "{\"topic\": \"org.dhf.test.Flood\", \"source\": \"dom0\", \"data\": 1}");
  xdm_raw_expect_error (evil, 11, "not-authorized", FALSE);
  xdm_raw_send (evil, DHF_XDM_STREAM_OPEN, 12,
                "{\"service\": \"org.dhf.test.Hang1\", \"target\": \"beta\", \"source\": \"alpha\","
                " \"window\": 65536}");
  xdm_raw_expect_error (evil, 12, "not-authorized", FALSE);

  /* The session goes on, as evil: its own name is fine. */
  xdm_raw_send (evil, DHF_XDM_CALL, 13,
                "{\"service\": \"org.dhf.test.Hang1\", \"target\": \"beta\", \"source\": \"evil\","
                " \"timeout_ms\": 60000}");
  /* The first Hang1 call beta sees is this one, from evil: the spoofed one
   * was never forwarded. */
  invoked = xdm_sim_expect (fx->beta, "invoked org.dhf.test.Hang1 ");
  g_assert_cmpstr (invoked, ==, "invoked org.dhf.test.Hang1 - evil null");
  xdm_raw_send (evil, DHF_XDM_CANCEL, 13, NULL);
  xdm_raw_expect_error (evil, 13, "cancelled", FALSE);
  g_free (xdm_sim_expect (fx->beta, "cancelled org.dhf.test.Hang1 evil"));

  xdm_raw_send (evil, DHF_XDM_CALL, 14,
                "{\"service\": \"org.dhf.framework.Whoami\", \"target\": \"dom0\"}");
  g_assert_true (xdm_raw_read (evil, &msg));
  g_assert_cmpint (msg.type, ==, DHF_XDM_REPLY);
  g_assert_cmpuint (msg.id, ==, 14);
  g_assert_nonnull (strstr (json_object_to_json_string (msg.value), "\"evil\""));
  dhf_xdm_message_clear (&msg);
  check_still_serving (fx);
}

static void
test_no_hello (Fixture *fx, gconstpointer data)
{
  g_autoptr (XdmRaw) dom0 = xdm_raw_connect (fx->h->xdm_socket);

  check_still_serving (fx);
  /* Silence: dhfd gives up on the connection after its HELLO timeout
   * (10 s): ERROR timeout with id 0 (protos/xdm.md 3), then the end. */
  xdm_raw_expect_error (dom0, 0, "timeout", TRUE);
  check_still_serving (fx);
}

/* Events the slow subscriber missed, as dhfd counts them. */
static guint64
dropped_events (Fixture *fx, gboolean *present)
{
  g_autoptr (GVariant) subs = xdm_harness_list (fx->h, "ListSubscriptions");
  guint64 dropped = 0;

  *present = FALSE;
  for (gsize i = 0; i < g_variant_n_children (subs); i++)
    {
      g_autoptr (GVariant) entry = g_variant_get_child_value (subs, i);
      const gchar *topic;
      guint64 n;

      if (g_variant_lookup (entry, "topic", "&s", &topic)
          && g_str_equal (topic, "org.dhf.test.Flood")
          && g_variant_lookup (entry, "dropped", "t", &n))
        {
          *present = TRUE;
          dropped += n;
        }
    }
  return dropped;
}

static void
test_slow_reader (Fixture *fx, gconstpointer data)
{
  g_autoptr (XdmRaw) slow = xdm_raw_connect (fx->h->xdm_socket);
  g_autoptr (XdmRaw) publisher = xdm_raw_connect (fx->h->xdm_socket);
  g_autoptr (GString) big = g_string_new ("{\"topic\": \"org.dhf.test.Flood\", \"data\": \"");
  DhfXdmMessage msg = { 0 };
  const guint n_events = 4000; /* of 64 KiB: 250 MiB in all */
  gboolean present;
  guint64 dropped;
  glong rss;

  xdm_raw_hello (slow, "dom0");
  xdm_raw_send (slow, DHF_XDM_SUBSCRIBE, 1, "{\"topic\": \"org.dhf.test.Flood\"}");
  g_assert_true (xdm_raw_read (slow, &msg));
  g_assert_cmpint (msg.type, ==, DHF_XDM_REPLY);
  dhf_xdm_message_clear (&msg);
  /* From now on the subscriber reads nothing. */

  xdm_raw_hello (publisher, "dom0");
  for (guint i = 0; i < 64 * 1024; i++)
    g_string_append_c (big, 'a' + (gchar) (i % 26));
  g_string_append (big, "\"}");
  for (guint i = 0; i < n_events; i++)
    g_assert_true (xdm_raw_send (publisher, DHF_XDM_PUBLISH, 0, big->str));
  /* The last one asks for a REPLY: all before it have been handled then. */
  g_assert_true (xdm_raw_send (publisher, DHF_XDM_PUBLISH, 99, big->str));
  g_assert_true (xdm_raw_read (publisher, &msg));
  g_assert_cmpint (msg.type, ==, DHF_XDM_REPLY);
  g_assert_cmpuint (msg.id, ==, 99);
  dhf_xdm_message_clear (&msg);

  rss = xdm_harness_dhfd_rss_kib (fx->h);
  g_test_message ("after %u events of 64 KiB to a subscriber that never reads: VmRSS %ld KiB",
                  n_events + 1, rss);
  dropped = dropped_events (fx, &present);
  g_test_message ("dhfd dropped %" G_GUINT64_FORMAT " events for it%s", dropped,
                  present ? "" : " (it was disconnected)");
  /* Either it is still subscribed and missed most events, or dhfd gave
   * up on it. */
  g_assert_true (!present || dropped > 0);
  if (present)
    g_assert_cmpuint (dropped, >, n_events / 2);
  check_still_serving (fx);

  /* It may read now: what dhfd kept for it comes, then, once its queue
   * is below the limit again, new events are delivered as usual. */
  if (present)
    {
      guint got = 0;
      gboolean seen = FALSE;

      for (guint i = 0; !seen; i++)
        {
          g_autofree gchar *marker
              = g_strdup_printf ("{\"topic\": \"org.dhf.test.Flood\", \"data\": \"m%u\"}", i);
          g_autofree gchar *expected = g_strdup_printf ("m%u", i);
          guint32 delivered;

          g_assert_cmpuint (i, <, n_events);
          g_assert_true (xdm_raw_send (publisher, DHF_XDM_PUBLISH, 1000 + i, marker));
          g_assert_true (xdm_raw_read (publisher, &msg));
          g_assert_cmpint (msg.type, ==, DHF_XDM_REPLY);
          delivered = msg.delivered;
          dhf_xdm_message_clear (&msg);
          /* Dropped (still too much queued): read one, try again. Queued:
           * read up to it. */
          do
            {
              g_assert_true (xdm_raw_read (slow, &msg));
              g_assert_cmpint (msg.type, ==, DHF_XDM_EVENT);
              got++;
              seen = msg.value != NULL && json_object_is_type (msg.value, json_type_string)
                     && g_str_equal (json_object_get_string (msg.value), expected);
              dhf_xdm_message_clear (&msg);
            }
          while (delivered == 1 && !seen);
        }
      g_test_message ("the slow subscriber then read %u events", got);
      g_assert_cmpuint (got, <, n_events);
    }
}

static void
test_call_flood (Fixture *fx, gconstpointer data)
{
  g_autoptr (XdmRaw) evil = evil_session (fx);
  static const gchar hang[]
      = "{\"service\": \"org.dhf.test.Hang1\", \"target\": \"beta\", \"timeout_ms\": 600000}";
  static const gchar echo[] = "{\"service\": \"org.dhf.test.Echo1\", \"target\": \"beta\","
                              " \"params\": \"0123456789012345678901234567890123456789\"}";
  const guint n_hang = 200, n_echo = 50000;
  guint sent = 0, replies = 0, limited = 0, other = 0;
  gboolean eof = FALSE;
  g_autoptr (GByteArray) batch = g_byte_array_new ();
  DhfXdmMessage msg = { 0 };

  /* Calls that hang: MAX_CALLS_IN_FLIGHT of them go through, the rest are
   * refused at once. */
  for (guint i = 1; i <= n_hang; i++)
    g_assert_true (xdm_raw_send (evil, DHF_XDM_CALL, i, hang));
  for (guint i = 0; i < n_hang - MAX_CALLS_IN_FLIGHT; i++)
    xdm_raw_expect_error (evil, MAX_CALLS_IN_FLIGHT + 1 + i, "limit-exceeded", FALSE);
  {
    g_autoptr (GVariant) conns = xdm_harness_list (fx->h, "ListConnections");

    g_assert_cmpuint (xdm_harness_lookup_u64 (conns, "domain", "evil", "calls-in-flight"), ==,
                      MAX_CALLS_IN_FLIGHT);
  }
  /* Another domain is not held up by evil's quota. */
  check_still_serving (fx);

  /* Cancel them, then flood with calls that are answered, reading the
   * answers as they come (dhfd may also stop reading us while our answers
   * pile up: that is its right). */
  for (guint i = 1; i <= MAX_CALLS_IN_FLIGHT; i++)
    g_assert_true (xdm_raw_send (evil, DHF_XDM_CANCEL, i, NULL));
  for (guint i = 1; i <= MAX_CALLS_IN_FLIGHT; i++)
    xdm_raw_expect_error (evil, i, "cancelled", FALSE);

  while (!eof && replies + limited + other < n_echo)
    {
      gboolean progress = FALSE;
      gssize n;

      /* As much as the socket takes, 64 frames at a time ... */
      if (batch->len == 0 && sent < n_echo)
        {
          for (guint i = 0; i < 64 && sent < n_echo; i++, sent++)
            dhf_xdm_append_text (batch, DHF_XDM_CALL, 1000 + sent, echo, strlen (echo));
        }
      if (batch->len > 0)
        {
          n = xdm_raw_send_some (evil, batch->data, batch->len);
          if (n < 0)
            break;
          g_byte_array_remove_range (batch, 0, (guint) n);
          progress = n > 0;
        }
      /* ... and every answer there is. */
      while (xdm_raw_try_read (evil, &msg, &eof))
        {
          if (msg.type == DHF_XDM_REPLY)
            replies++;
          else if (msg.type == DHF_XDM_ERROR && g_strcmp0 (msg.code, "limit-exceeded") == 0)
            limited++;
          else
            other++;
          dhf_xdm_message_clear (&msg);
          progress = TRUE;
        }
      if (!progress && !eof)
        xdm_raw_poll (evil, batch->len > 0);
    }
  g_test_message ("flood of %u calls: %u answered, %u limit-exceeded, %u other%s", sent, replies,
                  limited, other, eof ? ", then dhfd closed the connection" : "");
  g_assert_cmpuint (other, ==, 0);
  g_assert_true (eof || replies + limited == n_echo);
  check_still_serving (fx);
}

int
main (int argc, char **argv)
{
  g_test_init (&argc, &argv, NULL);
  /* A peer that goes away mid-write must not kill the test. */
  signal (SIGPIPE, SIG_IGN);
#define ADD(path, fn) g_test_add (path, Fixture, NULL, fixture_set_up, fn, fixture_tear_down)
  ADD ("/xdm/hostile/garbage", test_garbage);
  ADD ("/xdm/hostile/truncated-frame", test_truncated_frame);
  ADD ("/xdm/hostile/huge-length", test_huge_length);
  ADD ("/xdm/hostile/spoofed-source", test_spoofed_source);
  ADD ("/xdm/hostile/no-hello", test_no_hello);
  ADD ("/xdm/hostile/slow-reader", test_slow_reader);
  ADD ("/xdm/hostile/call-flood", test_call_flood);
#undef ADD
  return g_test_run ();
}
