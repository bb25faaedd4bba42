/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* dhf-bench-xdm: what a cross-domain call through dhfd costs, next to the
 * floor of any brokered call (a bare AF_UNIX relay that forwards bytes
 * without looking at them) and to the same call through a dbus-daemon;
 * plus pipelined call throughput, stream throughput, and dhfd's memory
 * with 1000 connected clients.
 *
 * Takes no arguments: it starts its own private dbus-daemon, dhfd over
 * libvirt's test driver with simulated appliances (this program again, in
 * the roles below, as libdhf-1 clients listening on the domains' channel
 * sockets that dhfd connects to) and dhfd's dom0 socket in a temporary
 * directory. See bench/README.md.
 *
 * Roles (argv[1]; internal): xdm-provider SOCKET, xdm-caller SOCKET,
 * raw-provider SOCKET, raw-caller SOCKET, floor-service SOCKET, floor-relay IN OUT, floor-client
 * SOCKET, dbus-service ADDRESS, dbus-client ADDRESS. Each reports on stdout. */
#include "config.h"

#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include <dhf/dhf.h>
#include <glib/gstdio.h>

#include "dhf-bench-util.h"
#include "dhf-xdm-codec.h"

#define PAYLOAD         64 /* bytes of each call's argument, and of its result */
#define WARMUP_CALLS    2000
#define MEASURED_CALLS  20000
#define PIPELINE_CALLS  200000
#define PIPELINE_DEPTH  64
#define PIPELINE_PROCS  4 /* the variant with several callers */
#define STREAM_BYTES    (1024u * 1024u * 1024u)
#define STREAM_CHUNK    (256u * 1024u)
#define N_HELLO_CLIENTS 1000
#define ECHO_SERVICE    "org.dhf.bench.Echo1"
#define SINK_SERVICE    "org.dhf.bench.Sink1"
#define DBUS_NAME       "org.dhf.BenchEcho"
#define DBUS_PATH       "/org/dhf/Bench"
#define DBUS_IFACE      "org.dhf.Bench1"

static gdouble
now_us (void)
{
  struct timespec ts;

  clock_gettime (CLOCK_MONOTONIC, &ts);
  return (gdouble) ts.tv_sec * 1e6 + (gdouble) ts.tv_nsec / 1e3;
}

static void G_GNUC_NORETURN G_GNUC_PRINTF (1, 2) die (const gchar *format, ...)
{
  va_list args;

  va_start (args, format);
  fputs ("dhf-bench-xdm: ", stderr);
  vfprintf (stderr, format, args);
  fputc ('\n', stderr);
  va_end (args);
  exit (1);
}

static void G_GNUC_PRINTF (1, 2) report (const gchar *format, ...)
{
  va_list args;

  va_start (args, format);
  vprintf (format, args);
  va_end (args);
  putchar ('\n');
  fflush (stdout);
}

/* The JSON text of a PAYLOAD-byte string: 62 characters between quotes. */
static gchar *
payload_json (void)
{
  GString *s = g_string_new ("\"");

  for (guint i = 0; i < PAYLOAD - 2; i++)
    g_string_append_c (s, (gchar) ('a' + i % 26));
  g_string_append_c (s, '"');
  return g_string_free (s, FALSE);
}

static struct sockaddr_un
unix_address (const gchar *path)
{
  struct sockaddr_un addr = { .sun_family = AF_UNIX };

  if (strlen (path) >= sizeof addr.sun_path)
    die ("socket path too long: %s", path);
  memcpy (addr.sun_path, path, strlen (path));
  return addr;
}

static gint
unix_listen (const gchar *path)
{
  struct sockaddr_un addr = unix_address (path);
  gint fd = socket (AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);

  if (fd < 0 || bind (fd, (struct sockaddr *) &addr, sizeof addr) != 0 || listen (fd, 4) != 0)
    die ("listening on %s: %s", path, g_strerror (errno));
  return fd;
}

static gint
unix_connect (const gchar *path)
{
  struct sockaddr_un addr = unix_address (path);
  gint fd = socket (AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);

  if (fd < 0 || connect (fd, (struct sockaddr *) &addr, sizeof addr) != 0)
    die ("connecting to %s: %s", path, g_strerror (errno));
  return fd;
}

static void
write_all (gint fd, const void *data, gsize length)
{
  const guint8 *p = data;

  while (length > 0)
    {
      gssize n = write (fd, p, length);

      if (n < 0 && errno == EINTR)
        continue;
      if (n <= 0)
        die ("write: %s", g_strerror (errno));
      p += n;
      length -= (gsize) n;
    }
}

/* FALSE at EOF before the first byte. */
static gboolean
read_all (gint fd, void *data, gsize length)
{
  guint8 *p = data;
  gsize got = 0;

  while (got < length)
    {
      gssize n = read (fd, p + got, length - got);

      if (n < 0 && errno == EINTR)
        continue;
      if (n == 0 && got == 0)
        return FALSE;
      if (n <= 0)
        die ("read: %s", n == 0 ? "unexpected end" : g_strerror (errno));
      got += (gsize) n;
    }
  return TRUE;
}

/* Reads one command line from the orchestrator; NULL at EOF. */
static gchar *
read_command (void)
{
  gchar line[256];

  if (fgets (line, sizeof line, stdin) == NULL)
    return NULL;
  return g_strstrip (g_strdup (line));
}

/* --- role: the XDM provider ----------------------------------------- */

typedef struct
{
  DhfStream *stream;
  guint64 bytes;
  guint8 *buf;
} Sink;

static void
on_sink_read (GObject *source, GAsyncResult *result, gpointer data)
{
  Sink *sink = data;
  g_autoptr (GError) error = NULL;
  gssize n = g_input_stream_read_finish (G_INPUT_STREAM (source), result, &error);

  if (n < 0)
    die ("provider: reading the stream: %s", error->message);
  if (n > 0)
    {
      sink->bytes += (guint64) n;
      g_input_stream_read_async (G_INPUT_STREAM (source), sink->buf, STREAM_CHUNK,
                                 G_PRIORITY_DEFAULT, NULL, on_sink_read, sink);
      return;
    }
  /* All of it: closing tells the writer (its input sees the end). */
  report ("sunk %" G_GUINT64_FORMAT, sink->bytes);
  g_io_stream_close (G_IO_STREAM (sink->stream), NULL, NULL);
  g_object_unref (sink->stream);
  g_free (sink->buf);
  g_free (sink);
}

static void
handle_provider (DhfClient *client, DhfInvocation *invocation, gpointer data)
{
  g_autoptr (GError) error = NULL;
  Sink *sink;

  if (dhf_invocation_get_kind (invocation) == DHF_INVOCATION_CALL)
    {
      dhf_invocation_return_json (invocation, dhf_invocation_get_params_json (invocation));
      return;
    }
  sink = g_new0 (Sink, 1);
  sink->stream = dhf_invocation_accept_stream (invocation, &error);
  if (sink->stream == NULL)
    die ("provider: accepting the stream: %s", error->message);
  sink->buf = g_malloc (STREAM_CHUNK);
  g_input_stream_read_async (g_io_stream_get_input_stream (G_IO_STREAM (sink->stream)), sink->buf,
                             STREAM_CHUNK, G_PRIORITY_DEFAULT, NULL, on_sink_read, sink);
}

static DhfClient *
connect_client (const gchar *socket_path)
{
  g_autofree gchar *address = g_strconcat ("listen:", socket_path, NULL);
  g_autoptr (GError) error = NULL;
  DhfClient *client = dhf_client_new (address);

  if (!dhf_client_connect_sync (client, NULL, &error))
    die ("%s: %s", address, error->message);
  return client;
}

static gint
role_xdm_provider (const gchar *socket_path)
{
  g_autoptr (GMainLoop) loop = g_main_loop_new (NULL, FALSE);
  g_autoptr (DhfClient) client = connect_client (socket_path);
  g_autoptr (GError) error = NULL;

  if (dhf_client_register_service (client, ECHO_SERVICE, handle_provider, NULL, NULL, &error) == 0
      || dhf_client_register_service (client, SINK_SERVICE, handle_provider, NULL, NULL, &error)
             == 0)
    die ("provider: registering: %s", error->message);
  report ("ready");
  /* Ends when the orchestrator kills it. */
  g_main_loop_run (loop);
  return 0;
}

/* --- role: the XDM caller ------------------------------------------- */

static void
caller_sequential (DhfClient *client, const gchar *target)
{
  g_autofree gchar *payload = payload_json ();
  g_autofree gdouble *lat = g_new (gdouble, MEASURED_CALLS);
  gdouble t_start = 0, elapsed;

  for (guint i = 0; i < WARMUP_CALLS + MEASURED_CALLS; i++)
    {
      g_autoptr (GError) error = NULL;
      gdouble t0;
      g_autofree gchar *result = NULL;

      if (i == WARMUP_CALLS)
        t_start = now_us ();
      t0 = now_us ();
      result = dhf_client_call_sync (client, ECHO_SERVICE, target, payload, 0, NULL, &error);
      if (result == NULL)
        die ("caller: call %u: %s", i, error->message);
      if (i >= WARMUP_CALLS)
        lat[i - WARMUP_CALLS] = now_us () - t0;
      if (i == 0 && strcmp (result, payload) != 0)
        die ("caller: the echo came back as %s", result);
    }
  elapsed = now_us () - t_start;
  report ("seq %.1f %.1f %.0f", dhf_bench_percentile (lat, MEASURED_CALLS, 0.5),
          dhf_bench_percentile (lat, MEASURED_CALLS, 0.99), MEASURED_CALLS / (elapsed / 1e6));
}

typedef struct
{
  DhfClient *client;
  const gchar *target;
  gchar *payload;
  guint n;
  guint issued;
  guint done;
  guint depth;
  GMainLoop *loop;
} Pipeline;

static void issue_calls (Pipeline *p);

static void
on_pipelined_done (GObject *source, GAsyncResult *result, gpointer data)
{
  Pipeline *p = data;
  g_autoptr (GError) error = NULL;
  g_autofree gchar *json = dhf_client_call_finish (DHF_CLIENT (source), result, &error);

  if (json == NULL)
    die ("caller: pipelined call: %s", error->message);
  p->done++;
  if (p->done == p->n)
    g_main_loop_quit (p->loop);
  else
    issue_calls (p);
}

static void
issue_calls (Pipeline *p)
{
  while (p->issued < p->n && p->issued - p->done < p->depth)
    {
      p->issued++;
      dhf_client_call (p->client, ECHO_SERVICE, p->target, p->payload, 0, NULL, on_pipelined_done,
                       p);
    }
}

static void
caller_pipelined (DhfClient *client, const gchar *target, guint n, guint depth)
{
  Pipeline p = { client, target, payload_json (), n, 0, 0, depth, g_main_loop_new (NULL, FALSE) };
  gdouble t0 = now_us ();

  issue_calls (&p);
  g_main_loop_run (p.loop);
  report ("pipe %.6f %u", (now_us () - t0) / 1e6, n);
  g_main_loop_unref (p.loop);
  g_free (p.payload);
}

typedef struct
{
  DhfStream *stream;
  guint8 *chunk;
  guint64 written;
  guint64 total;
  gboolean eof;
  GMainLoop *loop;
} Upload;

static void upload_next (Upload *u);

static void
on_upload_closed (GObject *source, GAsyncResult *result, gpointer data)
{
  g_autoptr (GError) error = NULL;

  if (!g_output_stream_close_finish (G_OUTPUT_STREAM (source), result, &error))
    die ("caller: closing the stream: %s", error->message);
}

static void
on_upload_written (GObject *source, GAsyncResult *result, gpointer data)
{
  Upload *u = data;
  g_autoptr (GError) error = NULL;
  gsize n = 0;

  if (!g_output_stream_write_all_finish (G_OUTPUT_STREAM (source), result, &n, &error))
    die ("caller: writing the stream: %s", error->message);
  u->written += n;
  upload_next (u);
}

static void
upload_next (Upload *u)
{
  GOutputStream *out = g_io_stream_get_output_stream (G_IO_STREAM (u->stream));

  if (u->written == u->total)
    g_output_stream_close_async (out, G_PRIORITY_DEFAULT, NULL, on_upload_closed, u);
  else
    g_output_stream_write_all_async (out, u->chunk,
                                     (gsize) MIN (STREAM_CHUNK, u->total - u->written),
                                     G_PRIORITY_DEFAULT, NULL, on_upload_written, u);
}

static guint8 eof_probe[64];

static void
on_upload_eof (GObject *source, GAsyncResult *result, gpointer data)
{
  Upload *u = data;
  g_autoptr (GError) error = NULL;
  gssize n = g_input_stream_read_finish (G_INPUT_STREAM (source), result, &error);

  if (n != 0)
    die ("caller: expected the end of the stream, got %s", n < 0 ? error->message : "data");
  u->eof = TRUE;
  g_main_loop_quit (u->loop);
}

static void
caller_stream (DhfClient *client, const gchar *target, guint64 total)
{
  g_autoptr (GError) error = NULL;
  Upload u = { NULL, g_malloc (STREAM_CHUNK), 0, total, FALSE, g_main_loop_new (NULL, FALSE) };
  gdouble t0 = now_us ();

  for (guint i = 0; i < STREAM_CHUNK; i++)
    u.chunk[i] = (guint8) i;
  u.stream = dhf_client_open_stream_sync (client, SINK_SERVICE, target, NULL, &error);
  if (u.stream == NULL)
    die ("caller: opening the stream: %s", error->message);
  upload_next (&u);
  /* The provider closes its side once it has read everything. */
  g_input_stream_read_async (g_io_stream_get_input_stream (G_IO_STREAM (u.stream)), eof_probe,
                             sizeof eof_probe, G_PRIORITY_DEFAULT, NULL, on_upload_eof, &u);
  g_main_loop_run (u.loop);
  report ("stream %.6f %" G_GUINT64_FORMAT, (now_us () - t0) / 1e6, u.written);
  g_io_stream_close (G_IO_STREAM (u.stream), NULL, NULL);
  g_object_unref (u.stream);
  g_main_loop_unref (u.loop);
  g_free (u.chunk);
}

static gint
role_xdm_caller (const gchar *socket_path)
{
  g_autoptr (DhfClient) client = connect_client (socket_path);
  gchar *cmd;

  report ("ready");
  while ((cmd = read_command ()) != NULL)
    {
      guint n, depth;
      guint64 bytes;

      if (g_str_equal (cmd, "seq"))
        caller_sequential (client, "provider");
      else if (sscanf (cmd, "pipe %u %u", &n, &depth) == 2)
        caller_pipelined (client, "provider", n, depth);
      else if (sscanf (cmd, "stream %" G_GUINT64_FORMAT, &bytes) == 1)
        caller_stream (client, "provider", bytes);
      else
        die ("caller: unknown command %s", cmd);
      g_free (cmd);
    }
  dhf_client_close (client);
  return 0;
}

/* --- roles: raw codec clients -------------------------------------- */

/* The same calls through dhfd between two clients that speak the wire
 * format themselves, blocking, on one thread: what dhfd costs without
 * libdhf-1's threads. */

#define RAW_SERVICE "org.dhf.bench.RawEcho1"

/* Accepts dhfd's connection on the channel socket and says HELLO. */
static gint
raw_session (const gchar *path)
{
  gint listener = unix_listen (path);
  gint fd = accept4 (listener, NULL, NULL, SOCK_CLOEXEC);
  g_autoptr (GByteArray) hello = g_byte_array_new ();
  static const gchar body[] = "{\"versions\": [1], \"client\": \"bench raw\"}";
  guint8 header[DHF_XDM_HEADER_SIZE];
  DhfXdmHeader h;
  g_autofree guint8 *welcome = NULL;

  if (fd < 0)
    die ("raw: accept: %s", g_strerror (errno));
  close (listener);
  dhf_xdm_append_text (hello, DHF_XDM_HELLO, 1, body, strlen (body));
  write_all (fd, hello->data, hello->len);
  if (!read_all (fd, header, sizeof header) || !dhf_xdm_header_parse (header, &h, NULL)
      || h.type != DHF_XDM_WELCOME)
    die ("raw: no WELCOME");
  welcome = g_malloc (h.length + 1);
  if (h.length > 0)
    read_all (fd, welcome, h.length);
  return fd;
}

/* Reads one frame into msg (its body kept in *body). */
static void
raw_read (gint fd, DhfXdmMessage *msg, guint8 **body)
{
  guint8 header[DHF_XDM_HEADER_SIZE];
  g_autoptr (GError) error = NULL;
  DhfXdmHeader h;

  if (!read_all (fd, header, sizeof header))
    die ("raw: dhfd closed the connection");
  if (!dhf_xdm_header_parse (header, &h, &error))
    die ("raw: %s", error->message);
  g_free (*body);
  *body = g_malloc (h.length + 1);
  if (h.length > 0)
    read_all (fd, *body, h.length);
  if (!dhf_xdm_message_parse (&h, *body, msg, &error))
    die ("raw: %s", error->message);
}

static gint
role_raw_provider (const gchar *path)
{
  gint fd = raw_session (path);
  g_autoptr (GByteArray) out = g_byte_array_new ();
  g_autofree guint8 *body = NULL;
  static const gchar reg[] = "{\"service\": \"" RAW_SERVICE "\"}";
  DhfXdmMessage msg = { 0 };

  dhf_xdm_append_text (out, DHF_XDM_REGISTER, 1, reg, strlen (reg));
  write_all (fd, out->data, out->len);
  raw_read (fd, &msg, &body);
  if (msg.type != DHF_XDM_REPLY)
    die ("raw provider: REGISTER refused");
  dhf_xdm_message_clear (&msg);
  report ("ready");
  for (;;)
    {
      raw_read (fd, &msg, &body);
      if (msg.type == DHF_XDM_CALL)
        {
          const gchar *params
              = msg.value != NULL
                    ? json_object_to_json_string_ext (msg.value, JSON_C_TO_STRING_PLAIN)
                    : "null";
          g_autofree gchar *reply = g_strdup_printf ("{\"result\":%s}", params);

          g_byte_array_set_size (out, 0);
          dhf_xdm_append_text (out, DHF_XDM_REPLY, msg.id, reply, strlen (reply));
          write_all (fd, out->data, out->len);
        }
      dhf_xdm_message_clear (&msg);
    }
}

static void
raw_send_call (gint fd, GByteArray *out, guint32 id, const gchar *call)
{
  g_byte_array_set_size (out, 0);
  dhf_xdm_append_text (out, DHF_XDM_CALL, id, call, strlen (call));
  write_all (fd, out->data, out->len);
}

static gint
role_raw_caller (const gchar *path)
{
  gint fd = raw_session (path);
  g_autofree gchar *payload = payload_json ();
  g_autofree gchar *call = g_strdup_printf (
      "{\"service\":\"" RAW_SERVICE "\",\"target\":\"raw-provider\",\"params\":%s}", payload);
  g_autoptr (GByteArray) out = g_byte_array_new ();
  g_autofree guint8 *body = NULL;
  g_autofree gdouble *lat = g_new (gdouble, MEASURED_CALLS);
  gchar *cmd;
  guint32 id = 0;

  report ("ready");
  while ((cmd = read_command ()) != NULL)
    {
      DhfXdmMessage msg = { 0 };
      guint n, depth;

      if (g_str_equal (cmd, "seq"))
        {
          gdouble t_start = 0, elapsed;

          for (guint i = 0; i < WARMUP_CALLS + MEASURED_CALLS; i++)
            {
              gdouble t0;

              if (i == WARMUP_CALLS)
                t_start = now_us ();
              t0 = now_us ();
              raw_send_call (fd, out, ++id, call);
              raw_read (fd, &msg, &body);
              if (msg.type != DHF_XDM_REPLY || msg.id != id)
                die ("raw caller: got %s for call %u", dhf_xdm_type_to_string (msg.type), id);
              dhf_xdm_message_clear (&msg);
              if (i >= WARMUP_CALLS)
                lat[i - WARMUP_CALLS] = now_us () - t0;
            }
          elapsed = now_us () - t_start;
          report ("seq %.1f %.1f %.0f", dhf_bench_percentile (lat, MEASURED_CALLS, 0.5),
                  dhf_bench_percentile (lat, MEASURED_CALLS, 0.99),
                  MEASURED_CALLS / (elapsed / 1e6));
        }
      else if (sscanf (cmd, "pipe %u %u", &n, &depth) == 2)
        {
          gdouble t0 = now_us ();
          guint sent = 0;

          for (; sent < depth && sent < n; sent++)
            raw_send_call (fd, out, ++id, call);
          for (guint done = 0; done < n; done++)
            {
              raw_read (fd, &msg, &body);
              if (msg.type != DHF_XDM_REPLY)
                die ("raw caller: got %s in the pipeline", dhf_xdm_type_to_string (msg.type));
              dhf_xdm_message_clear (&msg);
              if (sent < n)
                {
                  raw_send_call (fd, out, ++id, call);
                  sent++;
                }
            }
          report ("pipe %.6f %u", (now_us () - t0) / 1e6, n);
        }
      else
        die ("raw caller: unknown command %s", cmd);
      g_free (cmd);
    }
  return 0;
}

/* --- roles: the floor ------------------------------------------------ */

static gint
role_floor_service (const gchar *path)
{
  gint listener = unix_listen (path);
  gint fd;
  guint8 buf[PAYLOAD];

  report ("ready");
  fd = accept4 (listener, NULL, NULL, SOCK_CLOEXEC);
  if (fd < 0)
    die ("floor service: accept: %s", g_strerror (errno));
  while (read_all (fd, buf, sizeof buf))
    write_all (fd, buf, sizeof buf);
  return 0;
}

/* One thread, one poll loop, bytes forwarded as they come: no framing, no
 * parsing. */
static gint
role_floor_relay (const gchar *in_path, const gchar *out_path)
{
  gint listener = unix_listen (in_path);
  gint fds[2];
  guint8 buf[65536];

  report ("ready");
  fds[0] = accept4 (listener, NULL, NULL, SOCK_CLOEXEC);
  if (fds[0] < 0)
    die ("floor relay: accept: %s", g_strerror (errno));
  fds[1] = unix_connect (out_path);
  for (;;)
    {
      struct pollfd pfd[2] = { { fds[0], POLLIN, 0 }, { fds[1], POLLIN, 0 } };

      if (poll (pfd, 2, -1) < 0)
        {
          if (errno == EINTR)
            continue;
          die ("floor relay: poll: %s", g_strerror (errno));
        }
      for (guint i = 0; i < 2; i++)
        {
          gssize n;

          if (pfd[i].revents == 0)
            continue;
          n = read (fds[i], buf, sizeof buf);
          if (n <= 0)
            return 0;
          write_all (fds[1 - i], buf, (gsize) n);
        }
    }
}

static gint
role_floor_client (const gchar *path)
{
  gint fd = unix_connect (path);
  guint8 out[PAYLOAD], in[PAYLOAD];
  g_autofree gdouble *lat = g_new (gdouble, MEASURED_CALLS);
  gdouble t_start = 0, elapsed;

  memset (out, 'x', sizeof out);
  for (guint i = 0; i < WARMUP_CALLS + MEASURED_CALLS; i++)
    {
      gdouble t0;

      if (i == WARMUP_CALLS)
        t_start = now_us ();
      t0 = now_us ();
      write_all (fd, out, sizeof out);
      if (!read_all (fd, in, sizeof in))
        die ("floor client: the relay closed");
      if (i >= WARMUP_CALLS)
        lat[i - WARMUP_CALLS] = now_us () - t0;
    }
  elapsed = now_us () - t_start;
  report ("floor %.1f %.1f %.0f", dhf_bench_percentile (lat, MEASURED_CALLS, 0.5),
          dhf_bench_percentile (lat, MEASURED_CALLS, 0.99), MEASURED_CALLS / (elapsed / 1e6));
  return 0;
}

/* --- roles: D-Bus ---------------------------------------------------- */

static const gchar dbus_xml[] = "<node><interface name='" DBUS_IFACE "'>"
                                "<method name='Echo'>"
                                "<arg name='in' type='s' direction='in'/>"
                                "<arg name='out' type='s' direction='out'/>"
                                "</method></interface></node>";

static void
on_dbus_echo (GDBusConnection *conn, const gchar *sender, const gchar *path, const gchar *iface,
              const gchar *method, GVariant *params, GDBusMethodInvocation *invocation,
              gpointer data)
{
  g_dbus_method_invocation_return_value (invocation, g_variant_ref (params));
}

static GDBusConnection *
bus_connect (const gchar *address)
{
  g_autoptr (GError) error = NULL;
  GDBusConnection *conn = dhf_bench_bus_connect (address, &error);

  if (conn == NULL)
    die ("connecting to %s: %s", address, error->message);
  return conn;
}

static gint
role_dbus_service (const gchar *address)
{
  g_autoptr (GError) error = NULL;
  g_autoptr (GDBusConnection) conn = bus_connect (address);
  g_autoptr (GDBusNodeInfo) info = g_dbus_node_info_new_for_xml (dbus_xml, &error);
  const GDBusInterfaceVTable vtable = { on_dbus_echo, NULL, NULL };
  g_autoptr (GVariant) reply = NULL;
  g_autoptr (GMainLoop) loop = g_main_loop_new (NULL, FALSE);

  if (info == NULL
      || g_dbus_connection_register_object (conn, DBUS_PATH, info->interfaces[0], &vtable, NULL,
                                            NULL, &error)
             == 0)
    die ("dbus service: %s", error->message);
  reply = g_dbus_connection_call_sync (
      conn, "org.freedesktop.DBus", "/org/freedesktop/DBus", "org.freedesktop.DBus", "RequestName",
      g_variant_new ("(su)", DBUS_NAME, 4 /* DO_NOT_QUEUE */), G_VARIANT_TYPE ("(u)"),
      G_DBUS_CALL_FLAGS_NONE, -1, NULL, &error);
  if (reply == NULL)
    die ("dbus service: RequestName: %s", error->message);
  report ("ready");
  g_main_loop_run (loop);
  return 0;
}

static gint
role_dbus_client (const gchar *address)
{
  g_autoptr (GDBusConnection) conn = bus_connect (address);
  g_autofree gchar *payload = g_strnfill (PAYLOAD, 'x');
  g_autofree gdouble *lat = g_new (gdouble, MEASURED_CALLS);
  gdouble t_start = 0, elapsed;

  for (guint i = 0; i < WARMUP_CALLS + MEASURED_CALLS; i++)
    {
      g_autoptr (GError) error = NULL;
      g_autoptr (GVariant) reply = NULL;
      gdouble t0;

      if (i == WARMUP_CALLS)
        t_start = now_us ();
      t0 = now_us ();
      reply = g_dbus_connection_call_sync (conn, DBUS_NAME, DBUS_PATH, DBUS_IFACE, "Echo",
                                           g_variant_new ("(s)", payload), G_VARIANT_TYPE ("(s)"),
                                           G_DBUS_CALL_FLAGS_NONE, -1, NULL, &error);
      if (reply == NULL)
        die ("dbus client: %s", error->message);
      if (i >= WARMUP_CALLS)
        lat[i - WARMUP_CALLS] = now_us () - t0;
    }
  elapsed = now_us () - t_start;
  report ("dbus %.1f %.1f %.0f", dhf_bench_percentile (lat, MEASURED_CALLS, 0.5),
          dhf_bench_percentile (lat, MEASURED_CALLS, 0.99), MEASURED_CALLS / (elapsed / 1e6));
  return 0;
}

/* --- the orchestrator ------------------------------------------------- */

typedef struct
{
  GSubprocess *proc;
  GDataInputStream *out;
  GOutputStream *in;
} Child;

static gchar *self_path;

static Child *
child_spawn (const gchar *role, const gchar *arg1, const gchar *arg2)
{
  g_autoptr (GError) error = NULL;
  Child *child = g_new0 (Child, 1);

  child->proc = g_subprocess_new (G_SUBPROCESS_FLAGS_STDIN_PIPE | G_SUBPROCESS_FLAGS_STDOUT_PIPE,
                                  &error, self_path, role, arg1, arg2, NULL);
  if (child->proc == NULL)
    die ("spawning %s: %s", role, error->message);
  child->out = g_data_input_stream_new (g_subprocess_get_stdout_pipe (child->proc));
  child->in = g_subprocess_get_stdin_pipe (child->proc);
  return child;
}

/* Blocks for the child's next report line. */
static gchar *
child_read (Child *child)
{
  g_autoptr (GError) error = NULL;
  gchar *line = g_data_input_stream_read_line_utf8 (child->out, NULL, NULL, &error);

  if (line == NULL)
    die ("a child process ended early%s%s", error != NULL ? ": " : "",
         error != NULL ? error->message : "");
  return line;
}

static void
child_expect (Child *child, const gchar *word)
{
  g_autofree gchar *line = child_read (child);

  if (!g_str_has_prefix (line, word))
    die ("expected \"%s\" from a child, got \"%s\"", word, line);
}

static void
child_send (Child *child, const gchar *line)
{
  g_autoptr (GError) error = NULL;

  if (!g_output_stream_write_all (child->in, line, strlen (line), NULL, NULL, &error)
      || !g_output_stream_write_all (child->in, "\n", 1, NULL, NULL, &error))
    die ("writing to a child: %s", error->message);
}

static void
child_free (Child *child)
{
  g_subprocess_force_exit (child->proc);
  g_subprocess_wait (child->proc, NULL, NULL);
  g_object_unref (child->out);
  g_object_unref (child->proc);
  g_free (child);
}

static gchar *
build_node (const gchar *channel_dir, const gchar *const *names)
{
  g_autoptr (GString) node = g_string_new ("<node>\n");

  for (guint i = 0; names[i] != NULL; i++)
    {
      g_autofree gchar *json = g_strdup_printf (
          "{\"manifest-version\": 1, \"name\": \"%s\", \"vendor\": \"dhf bench\","
          " \"version\": \"1.0\", \"role\": \"service\", \"memory\": \"256MiB\", \"vcpus\": 1}",
          names[i]);
      g_autoptr (GError) error = NULL;
      g_autofree gchar *xml = dhf_bench_domain_xml (json, "test", &error);
      g_autofree gchar *source = NULL;
      g_autoptr (GString) domain = NULL;

      if (xml == NULL)
        die ("bench manifest: %s", error->message);
      domain = g_string_new (xml);
      source = g_strdup_printf ("<source mode='bind' path='%s/%s.sock'/>", channel_dir, names[i]);
      if (g_string_replace (domain, "<source mode='bind'/>", source, 1) != 1)
        die ("no channel in the domain XML");
      g_string_append (node, domain->str);
    }
  g_string_append (node, "</node>\n");
  return g_string_free (g_steal_pointer (&node), FALSE);
}

static void
wait_for_file (const gchar *path)
{
  for (guint i = 0; !g_file_test (path, G_FILE_TEST_EXISTS); i++)
    {
      if (i > 3000)
        die ("%s did not appear", path);
      g_usleep (10000);
    }
}

/* N_HELLO_CLIENTS raw connections on dhfd's socket, each past WELCOME.
 * Returns their fds. */
static GArray *
connect_hello_clients (const gchar *socket_path)
{
  GArray *fds = g_array_new (FALSE, FALSE, sizeof (gint));
  g_autoptr (GByteArray) hello = g_byte_array_new ();

  dhf_xdm_append_text (hello, DHF_XDM_HELLO, 1, "{\"versions\": [1], \"client\": \"bench\"}",
                       strlen ("{\"versions\": [1], \"client\": \"bench\"}"));
  for (guint i = 0; i < N_HELLO_CLIENTS; i++)
    {
      gint fd = unix_connect (socket_path);

      write_all (fd, hello->data, hello->len);
      g_array_append_val (fds, fd);
    }
  for (guint i = 0; i < fds->len; i++)
    {
      guint8 header_bytes[DHF_XDM_HEADER_SIZE];
      g_autofree guint8 *body = NULL;
      g_autoptr (GError) error = NULL;
      DhfXdmHeader header;

      if (!read_all (g_array_index (fds, gint, i), header_bytes, sizeof header_bytes))
        die ("client %u: dhfd closed the connection before WELCOME", i);
      if (!dhf_xdm_header_parse (header_bytes, &header, &error))
        die ("client %u: %s", i, error->message);
      body = g_malloc (header.length + 1);
      if (header.length > 0 && !read_all (g_array_index (fds, gint, i), body, header.length))
        die ("client %u: cut short", i);
      if (header.type != DHF_XDM_WELCOME)
        die ("client %u: got %s instead of WELCOME", i, dhf_xdm_type_to_string (header.type));
    }
  return fds;
}

static gdouble
parse_field (const gchar *line, guint index)
{
  g_auto (GStrv) words = g_strsplit (line, " ", -1);

  if (g_strv_length (words) <= index)
    die ("malformed report \"%s\"", line);
  return g_ascii_strtod (words[index], NULL);
}

static gint
orchestrate (void)
{
  static const gchar *const domains[] = { "provider", "caller-1",     "caller-2",   "caller-3",
                                          "caller-4", "raw-provider", "raw-caller", NULL };
  g_autoptr (GError) error = NULL;
  g_autofree gchar *tmpdir = g_dir_make_tmp ("dhf-bench-xdm-XXXXXX", &error);
  g_autofree gchar *channel_dir = NULL;
  g_autofree gchar *node_path = NULL;
  g_autofree gchar *config_path = NULL;
  g_autofree gchar *xdm_socket = NULL;
  g_autofree gchar *uri = NULL;
  g_autofree gchar *node = NULL;
  g_autofree gchar *config = NULL;
  g_autofree gchar *policy_dir = NULL;
  g_autofree gchar *dhfd_path = NULL;
  g_autoptr (GTestDBus) bus = NULL;
  g_autoptr (GSubprocess) dhfd = NULL;
  g_autoptr (GArray) hello_fds = NULL;
  Child *provider, *callers[PIPELINE_PROCS], *raw_provider, *raw_caller;
  gdouble seq_p50, seq_p99, seq_rate, floor_p50, floor_p99, floor_rate, dbus_p50, dbus_p99,
      dbus_rate, pipe_one, pipe_many, stream_mbps;
  glong rss_before, rss_clients, anon_clients;
  GPid dhfd_pid;
  struct rlimit rl;

  if (tmpdir == NULL)
    die ("temporary directory: %s", error->message);
  dhfd_path = dhf_bench_dhfd_path (&error);
  if (dhfd_path == NULL)
    die ("%s", error->message);
  /* dhfd (which inherits it) holds N_HELLO_CLIENTS sockets, and so do we. */
  if (getrlimit (RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max)
    {
      rl.rlim_cur = rl.rlim_max;
      setrlimit (RLIMIT_NOFILE, &rl);
    }
  if (rl.rlim_cur < 2 * N_HELLO_CLIENTS + 100)
    die ("the open file limit (%lu) is too low for %u clients", (gulong) rl.rlim_cur,
         N_HELLO_CLIENTS);

  printf ("dhf-bench-xdm: %u-byte calls; %u warm-up then %u measured sequential calls; %u "
          "CPUs online\n",
          PAYLOAD, WARMUP_CALLS, MEASURED_CALLS, (guint) sysconf (_SC_NPROCESSORS_ONLN));
  fflush (stdout);

  channel_dir = g_build_filename (tmpdir, "ch", NULL);
  policy_dir = g_build_filename (tmpdir, "policy.d", NULL);
  g_mkdir (channel_dir, 0700);
  g_mkdir (policy_dir, 0700);
  node_path = g_build_filename (tmpdir, "node.xml", NULL);
  config_path = g_build_filename (tmpdir, "dhfd.conf", NULL);
  xdm_socket = g_build_filename (tmpdir, "xdm.sock", NULL);
  node = build_node (channel_dir, domains);
  config = g_strdup_printf ("[Appliances]\nStorageDirectory=%s/images\n[Policy]\nDirectories=%s\n"
                            "LastGood=%s/policy.last-good\n[Devices]\nStateFile=%s/devices.json\n",
                            tmpdir, policy_dir, tmpdir, tmpdir);
  {
    g_autofree gchar *policy_path = g_build_filename (policy_dir, "50-bench.policy", NULL);

    if (!g_file_set_contents (node_path, node, -1, &error)
        || !g_file_set_contents (config_path, config, -1, &error)
        || !g_file_set_contents (policy_path,
                                 ECHO_SERVICE " @any provider allow\n" SINK_SERVICE
                                              " @any provider allow\n" RAW_SERVICE
                                              " raw-caller raw-provider allow\n",
                                 -1, &error))
      die ("writing the test node: %s", error->message);
  }
  uri = g_strconcat ("test://", node_path, NULL);

  bus = g_test_dbus_new (G_TEST_DBUS_NONE);
  g_test_dbus_up (bus);

  /* The appliances listen first, as booted guests' channels would. */
  {
    g_autofree gchar *path = g_build_filename (channel_dir, "provider.sock", NULL);

    provider = child_spawn ("xdm-provider", path, NULL);
    wait_for_file (path);
  }
  for (guint i = 0; i < PIPELINE_PROCS; i++)
    {
      g_autofree gchar *name = g_strdup_printf ("caller-%u.sock", i + 1);
      g_autofree gchar *path = g_build_filename (channel_dir, name, NULL);

      callers[i] = child_spawn ("xdm-caller", path, NULL);
      wait_for_file (path);
    }

  {
    g_autofree gchar *path = g_build_filename (channel_dir, "raw-provider.sock", NULL);
    g_autofree gchar *path2 = g_build_filename (channel_dir, "raw-caller.sock", NULL);

    raw_provider = child_spawn ("raw-provider", path, NULL);
    wait_for_file (path);
    raw_caller = child_spawn ("raw-caller", path2, NULL);
    wait_for_file (path2);
  }

  {
    const gchar *const extra[] = { "--xdm-socket", xdm_socket, NULL };

    dhfd = dhf_bench_spawn_dhfd (NULL, dhfd_path, g_test_dbus_get_bus_address (bus), uri,
                                 config_path, extra, &error);
  }
  if (dhfd == NULL)
    die ("spawning dhfd: %s", error->message);
  dhfd_pid = atoi (g_subprocess_get_identifier (dhfd));
  child_expect (provider, "ready");
  for (guint i = 0; i < PIPELINE_PROCS; i++)
    child_expect (callers[i], "ready");
  child_expect (raw_provider, "ready");
  child_expect (raw_caller, "ready");

  /* 0. Memory with N_HELLO_CLIENTS clients past HELLO, before any traffic
   * (so that the difference is theirs, not buffers left by the calls);
   * they stay connected, idle, through the rest. */
  rss_before = dhf_bench_status_kib (dhfd_pid, "VmRSS:");
  hello_fds = connect_hello_clients (xdm_socket);
  rss_clients = dhf_bench_status_kib (dhfd_pid, "VmRSS:");
  anon_clients = dhf_bench_status_kib (dhfd_pid, "RssAnon:");
  printf ("dhfd VmRSS: %ld KiB with its appliances, %ld KiB with %u more clients past HELLO "
          "(+%.1f KiB each; anonymous %ld KiB)\n",
          rss_before, rss_clients, N_HELLO_CLIENTS,
          (gdouble) (rss_clients - rss_before) / N_HELLO_CLIENTS, anon_clients);
  fflush (stdout);

  /* 1. Sequential calls through dhfd. */
  {
    g_autofree gchar *line = NULL;

    child_send (callers[0], "seq");
    line = child_read (callers[0]);
    seq_p50 = parse_field (line, 1);
    seq_p99 = parse_field (line, 2);
    seq_rate = parse_field (line, 3);
    printf ("xdm call (caller -> dhfd -> provider -> back): p50 %.1f us, p99 %.1f us, %.0f "
            "calls/s sequential\n",
            seq_p50, seq_p99, seq_rate);
    fflush (stdout);
  }

  /* 1b. The same through dhfd between raw codec clients: dhfd's share. */
  {
    g_autofree gchar *line = NULL;
    g_autofree gchar *cmd = g_strdup_printf ("pipe %u %u", PIPELINE_CALLS, PIPELINE_DEPTH);

    child_send (raw_caller, "seq");
    line = child_read (raw_caller);
    printf ("xdm call between raw codec clients (no libdhf-1 threads): p50 %.1f us, p99 %.1f us, "
            "%.0f calls/s sequential\n",
            parse_field (line, 1), parse_field (line, 2), parse_field (line, 3));
    g_free (line);
    child_send (raw_caller, cmd);
    line = child_read (raw_caller);
    printf ("pipelined between raw codec clients, %u in flight: %.0f calls/s\n", PIPELINE_DEPTH,
            PIPELINE_CALLS / parse_field (line, 1));
    fflush (stdout);
  }

  /* 2. The floor: the same pattern through a relay that only forwards. */
  {
    g_autofree gchar *svc_path = g_build_filename (tmpdir, "floor-service.sock", NULL);
    g_autofree gchar *relay_path = g_build_filename (tmpdir, "floor-relay.sock", NULL);
    Child *service = child_spawn ("floor-service", svc_path, NULL);
    Child *relay, *client;
    g_autofree gchar *line = NULL;

    child_expect (service, "ready");
    relay = child_spawn ("floor-relay", relay_path, svc_path);
    child_expect (relay, "ready");
    client = child_spawn ("floor-client", relay_path, NULL);
    line = child_read (client);
    floor_p50 = parse_field (line, 1);
    floor_p99 = parse_field (line, 2);
    floor_rate = parse_field (line, 3);
    printf ("floor (client -> AF_UNIX relay, one poll thread -> service -> back): p50 %.1f us, "
            "p99 %.1f us, %.0f calls/s\n",
            floor_p50, floor_p99, floor_rate);
    fflush (stdout);
    child_free (client);
    child_free (relay);
    child_free (service);
  }

  /* 3. D-Bus: two GDBus processes through the private dbus-daemon. */
  {
    Child *service = child_spawn ("dbus-service", g_test_dbus_get_bus_address (bus), NULL);
    Child *client;
    g_autofree gchar *line = NULL;

    child_expect (service, "ready");
    client = child_spawn ("dbus-client", g_test_dbus_get_bus_address (bus), NULL);
    line = child_read (client);
    dbus_p50 = parse_field (line, 1);
    dbus_p99 = parse_field (line, 2);
    dbus_rate = parse_field (line, 3);
    printf ("dbus (GDBus client -> dbus-daemon -> GDBus service -> back): p50 %.1f us, p99 %.1f "
            "us, %.0f calls/s\n",
            dbus_p50, dbus_p99, dbus_rate);
    fflush (stdout);
    child_free (client);
    child_free (service);
  }

  /* 4. Pipelined: PIPELINE_DEPTH calls in flight, from one caller, then
   * spread over PIPELINE_PROCS callers. */
  {
    g_autofree gchar *cmd = g_strdup_printf ("pipe %u %u", PIPELINE_CALLS, PIPELINE_DEPTH);
    g_autofree gchar *line = NULL;
    g_autofree gchar *cmd_many = g_strdup_printf ("pipe %u %u", PIPELINE_CALLS / PIPELINE_PROCS,
                                                  PIPELINE_DEPTH / PIPELINE_PROCS);
    gdouble slowest = 0;

    child_send (callers[0], cmd);
    line = child_read (callers[0]);
    pipe_one = PIPELINE_CALLS / parse_field (line, 1);
    printf ("pipelined, one caller, %u in flight: %.0f calls/s\n", PIPELINE_DEPTH, pipe_one);
    fflush (stdout);

    for (guint i = 0; i < PIPELINE_PROCS; i++)
      child_send (callers[i], cmd_many);
    for (guint i = 0; i < PIPELINE_PROCS; i++)
      {
        g_autofree gchar *l = child_read (callers[i]);

        slowest = MAX (slowest, parse_field (l, 1));
      }
    pipe_many = (PIPELINE_CALLS / PIPELINE_PROCS) * PIPELINE_PROCS / slowest;
    printf ("pipelined, %u callers x %u in flight: %.0f calls/s (calls / slowest caller's time)\n",
            PIPELINE_PROCS, PIPELINE_DEPTH / PIPELINE_PROCS, pipe_many);
    fflush (stdout);
  }

  /* 5. A 1 GiB stream. */
  {
    g_autofree gchar *cmd = g_strdup_printf ("stream %u", STREAM_BYTES);
    g_autofree gchar *line = NULL;
    g_autofree gchar *sunk = NULL;
    gdouble seconds;

    child_send (callers[0], cmd);
    line = child_read (callers[0]);
    seconds = parse_field (line, 1);
    sunk = child_read (provider);
    if (parse_field (sunk, 1) != STREAM_BYTES)
      die ("the provider read %s bytes of %u", sunk + strlen ("sunk "), STREAM_BYTES);
    stream_mbps = STREAM_BYTES / seconds / 1e6;
    printf ("stream of %u bytes through dhfd: %.3f s, %.0f MB/s (MB = 10^6 bytes)\n", STREAM_BYTES,
            seconds, stream_mbps);
    fflush (stdout);
  }

  printf ("ratios: p50 %.2fx the floor; %.2fx dbus's sequential calls/s\n", seq_p50 / floor_p50,
          seq_rate / dbus_rate);
  printf ("RESULT p50_us=%.1f p99_us=%.1f floor_p50_us=%.1f dbus_p50_us=%.1f ratio_to_floor=%.2f "
          "calls_per_s=%.0f dbus_calls_per_s=%.0f pipelined_calls_per_s=%.0f "
          "stream_mb_per_s=%.0f rss_kib_1000_clients=%ld\n",
          seq_p50, seq_p99, floor_p50, dbus_p50, seq_p50 / floor_p50, seq_rate, dbus_rate,
          MAX (pipe_one, pipe_many), stream_mbps, rss_clients);
  fflush (stdout);

  for (guint i = 0; i < hello_fds->len; i++)
    close (g_array_index (hello_fds, gint, i));
  for (guint i = 0; i < PIPELINE_PROCS; i++)
    child_free (callers[i]);
  child_free (provider);
  child_free (raw_caller);
  child_free (raw_provider);
  g_subprocess_send_signal (dhfd, SIGTERM);
  g_subprocess_wait (dhfd, NULL, NULL);
  g_test_dbus_down (bus);
  dhf_bench_remove_tree (tmpdir);
  return 0;
}

int
main (int argc, char **argv)
{
  self_path = g_canonicalize_filename (argv[0], NULL);
  signal (SIGPIPE, SIG_IGN);
  if (argc == 1)
    return orchestrate ();
  if (argc == 3 && g_str_equal (argv[1], "xdm-provider"))
    return role_xdm_provider (argv[2]);
  if (argc == 3 && g_str_equal (argv[1], "xdm-caller"))
    return role_xdm_caller (argv[2]);
  if (argc == 3 && g_str_equal (argv[1], "raw-provider"))
    return role_raw_provider (argv[2]);
  if (argc == 3 && g_str_equal (argv[1], "raw-caller"))
    return role_raw_caller (argv[2]);
  if (argc == 3 && g_str_equal (argv[1], "floor-service"))
    return role_floor_service (argv[2]);
  if (argc == 4 && g_str_equal (argv[1], "floor-relay"))
    return role_floor_relay (argv[2], argv[3]);
  if (argc == 3 && g_str_equal (argv[1], "floor-client"))
    return role_floor_client (argv[2]);
  if (argc == 3 && g_str_equal (argv[1], "dbus-service"))
    return role_dbus_service (argv[2]);
  if (argc == 3 && g_str_equal (argv[1], "dbus-client"))
    return role_dbus_client (argv[2]);
  g_printerr ("usage: dhf-bench-xdm (no arguments)\n");
  return 2;
}
