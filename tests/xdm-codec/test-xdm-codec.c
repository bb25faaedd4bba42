/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include "config.h"

#include <string.h>

#include <dhf/dhf.h>

#include "dhf-xdm-codec.h"

/* The XDM wire codec: headers, framing, body validation, encoders, error
 * codes, and its agreement with protos/xdm-messages.json. */

/* ---- Helpers ---- */

static void
put_header (guint8 *h, guint8 type, guint16 flags, guint32 id, guint32 length)
{
  h[0] = 'D';
  h[1] = 'X';
  h[2] = DHF_XDM_FRAME_VERSION;
  h[3] = type;
  h[4] = flags & 0xff;
  h[5] = flags >> 8;
  h[6] = 0;
  h[7] = 0;
  for (guint i = 0; i < 4; i++)
    {
      h[8 + i] = (id >> (8 * i)) & 0xff;
      h[12 + i] = (length >> (8 * i)) & 0xff;
    }
}

static guint16
default_flags (guint type)
{
  return type == DHF_XDM_STREAM_DATA ? DHF_XDM_FLAG_RAW : 0;
}

/* Parses length bytes of body (-1: strlen) as a frame of type with id, from
 * a copy of exactly that size so that the sanitizers see any over-read.
 * STREAM_DATA's raw pointer is not usable afterwards. */
static gboolean
parse_len (guint type, guint32 id, const gchar *body, gssize length, DhfXdmMessage *msg,
           GError **error)
{
  gsize n = length < 0 ? strlen (body) : (gsize) length;
  g_autofree guint8 *copy = n > 0 ? g_memdup2 (body, n) : NULL;
  DhfXdmHeader header
      = { DHF_XDM_FRAME_VERSION, (guint8) type, default_flags (type), id, (guint32) n };

  return dhf_xdm_message_parse (&header, copy, msg, error);
}

static gboolean
parse (guint type, const gchar *body, DhfXdmMessage *msg, GError **error)
{
  return parse_len (type, 7, body, -1, msg, error);
}

static void
assert_contains (const gchar *text, const gchar *needle)
{
  if (strstr (text, needle) == NULL)
    g_error ("\"%s\" does not contain \"%s\"", text, needle);
}

static void
assert_refused_len (guint type, const gchar *body, gssize length, DhfError code,
                    const gchar *needle)
{
  DhfXdmMessage msg;
  g_autoptr (GError) error = NULL;

  if (parse_len (type, 7, body, length, &msg, &error))
    g_error ("%s %s was accepted", dhf_xdm_type_to_string (type), body);
  g_assert_error (error, DHF_ERROR, (gint) code);
  assert_contains (error->message, needle);
  /* Cleared on failure. */
  g_assert_null (msg.body);
  g_assert_null (msg.service);
  g_assert_cmpint (msg.id, ==, 0);
}

static void
assert_refused (guint type, const gchar *body, DhfError code, const gchar *needle)
{
  assert_refused_len (type, body, -1, code, needle);
}

static void
assert_accepted (guint type, const gchar *body)
{
  DhfXdmMessage msg;
  g_autoptr (GError) error = NULL;

  if (!parse (type, body, &msg, &error))
    g_error ("%s %s refused: %s", dhf_xdm_type_to_string (type), body, error->message);
  dhf_xdm_message_clear (&msg);
}

static json_object *
json_parse_or_die (const gchar *text)
{
  json_object *json = json_tokener_parse (text);

  if (json == NULL)
    g_error ("test JSON does not parse: %s", text);
  return json;
}

/* ---- Headers and framing ---- */

static void
test_header_round_trip (void)
{
  static const guint32 ids[] = { 1, 0x01020304, G_MAXUINT32 };

  for (guint type = 1; type < DHF_XDM_N_TYPES; type++)
    for (gsize i = 0; i < G_N_ELEMENTS (ids); i++)
      {
        g_autoptr (GByteArray) out = g_byte_array_new ();
        g_autoptr (GError) error = NULL;
        DhfXdmHeader header;

        if (type == DHF_XDM_STREAM_DATA)
          dhf_xdm_append_raw (out, type, ids[i], (const guint8 *) "abc", 3);
        else
          dhf_xdm_append_text (out, type, ids[i], "{\"x\":1}", 7);
        g_assert_true (dhf_xdm_header_parse (out->data, &header, &error));
        g_assert_no_error (error);
        g_assert_cmpuint (header.version, ==, DHF_XDM_FRAME_VERSION);
        g_assert_cmpuint (header.type, ==, type);
        g_assert_cmpuint (header.flags, ==, default_flags (type));
        g_assert_cmpuint (header.id, ==, ids[i]);
        g_assert_cmpuint (header.length, ==, type == DHF_XDM_STREAM_DATA ? 3 : 7);
        g_assert_cmpuint (out->len, ==, DHF_XDM_HEADER_SIZE + header.length);
      }
}

/* The layout of protos/xdm.md, byte by byte. */
static void
test_header_bytes (void)
{
  static const guint8 expected[]
      = { 'D', 'X', 1, DHF_XDM_PING, 0, 0, 0, 0, 4, 3, 2, 1, 0, 0, 0, 0 };
  static const guint8 raw[]
      = { 'D', 'X', 1, DHF_XDM_STREAM_DATA, 1, 0, 0, 0, 9, 0, 0, 0, 2, 0, 0, 0, 0xff, 0x00 };
  g_autoptr (GByteArray) out = g_byte_array_new ();

  dhf_xdm_append_json (out, DHF_XDM_PING, 0x01020304, NULL);
  g_assert_cmpmem (out->data, out->len, expected, sizeof expected);
  g_byte_array_set_size (out, 0);
  dhf_xdm_append_raw (out, DHF_XDM_STREAM_DATA, 9, (const guint8 *) "\xff\x00", 2);
  g_assert_cmpmem (out->data, out->len, raw, sizeof raw);
}

typedef struct
{
  guint offset;
  guint8 value;
  const gchar *needle;
} HeaderCase;

static void
test_header_errors (void)
{
  static const HeaderCase cases[] = {
    { 0, 'X', "magic" },
    { 1, 'x', "magic" },
    { 2, 0, "frame version 0" },
    { 2, 2, "frame version 2" },
    { 3, 0, "unknown message type 0" },
    { 3, DHF_XDM_N_TYPES, "unknown message type" },
    { 3, 0xff, "unknown message type 255" },
    { 4, 0x02, "unknown flag bits 0x0002" },
    { 4, 0x03, "unknown flag bits 0x0002" },
    { 5, 0x80, "unknown flag bits 0x8000" },
    { 4, DHF_XDM_FLAG_RAW, "flag RAW must be clear" },
    { 6, 1, "reserved" },
    { 7, 0x80, "reserved" },
  };

  for (gsize i = 0; i < G_N_ELEMENTS (cases); i++)
    {
      guint8 h[DHF_XDM_HEADER_SIZE];
      DhfXdmHeader header;
      g_autoptr (GError) error = NULL;

      put_header (h, DHF_XDM_CALL, 0, 5, 10);
      h[cases[i].offset] = cases[i].value;
      g_assert_false (dhf_xdm_header_parse (h, &header, &error));
      g_assert_error (error, DHF_ERROR, DHF_ERROR_PROTOCOL);
      assert_contains (error->message, cases[i].needle);
    }
}

static void
assert_header_refused (guint8 type, guint16 flags, guint32 id, guint32 length, const gchar *needle)
{
  guint8 h[DHF_XDM_HEADER_SIZE];
  DhfXdmHeader header;
  g_autoptr (GError) error = NULL;

  put_header (h, type, flags, id, length);
  g_assert_false (dhf_xdm_header_parse (h, &header, &error));
  g_assert_error (error, DHF_ERROR, DHF_ERROR_PROTOCOL);
  assert_contains (error->message, needle);
}

static void
test_header_rules (void)
{
  guint8 h[DHF_XDM_HEADER_SIZE];
  DhfXdmHeader header;
  g_autoptr (GError) error = NULL;

  /* RAW is STREAM_DATA's, and only its. */
  assert_header_refused (DHF_XDM_STREAM_DATA, 0, 1, 0, "STREAM_DATA frame must have flag RAW");
  assert_header_refused (DHF_XDM_REPLY, DHF_XDM_FLAG_RAW, 1, 0, "REPLY frame has a JSON body");
  /* The length is refused from the header alone. */
  assert_header_refused (DHF_XDM_CALL, 0, 1, DHF_XDM_MAX_BODY + 1, "1048577 bytes is over");
  assert_header_refused (DHF_XDM_STREAM_DATA, DHF_XDM_FLAG_RAW, 1, 0xffffffff, "over the limit");
  put_header (h, DHF_XDM_CALL, 0, 1, DHF_XDM_MAX_BODY);
  g_assert_true (dhf_xdm_header_parse (h, &header, &error));
  g_assert_cmpuint (header.length, ==, DHF_XDM_MAX_BODY);

  /* Requests and streams need an id; the others may go without. */
  for (guint type = 1; type < DHF_XDM_N_TYPES; type++)
    {
      gboolean needs = type != DHF_XDM_HELLO && type != DHF_XDM_WELCOME && type != DHF_XDM_ERROR
                       && type != DHF_XDM_PUBLISH && type != DHF_XDM_EVENT && type != DHF_XDM_PING
                       && type != DHF_XDM_PONG;
      g_autoptr (GError) local = NULL;

      put_header (h, type, default_flags (type), 0, 0);
      g_assert_cmpint (dhf_xdm_header_parse (h, &header, &local), ==, !needs);
      if (needs)
        {
          g_assert_error (local, DHF_ERROR, DHF_ERROR_PROTOCOL);
          assert_contains (local->message, "needs a request id");
        }
    }
}

static void
test_frame_scan_partial (void)
{
  g_autoptr (GByteArray) stream = g_byte_array_new ();
  g_autoptr (GByteArray) buf = g_byte_array_new ();
  static const guint expected_types[]
      = { DHF_XDM_HELLO, DHF_XDM_PING, DHF_XDM_STREAM_DATA, DHF_XDM_CALL, DHF_XDM_STREAM_DATA };
  guint n_frames = 0;

  dhf_xdm_append_text (stream, DHF_XDM_HELLO, 0, "{\"versions\":[1]}", (gsize) -1);
  dhf_xdm_append_json (stream, DHF_XDM_PING, 2, NULL);
  dhf_xdm_append_raw (stream, DHF_XDM_STREAM_DATA, 3, (const guint8 *) "data", 4);
  dhf_xdm_append_text (stream, DHF_XDM_CALL, 4, "{\"service\":\"org.x.Y\"}", (gsize) -1);
  dhf_xdm_append_raw (stream, DHF_XDM_STREAM_DATA, 3, NULL, 0);

  /* Byte by byte, as a slow connection delivers them. */
  for (guint i = 0; i < stream->len; i++)
    {
      g_autoptr (GError) error = NULL;
      DhfXdmHeader header;
      gssize size;

      g_byte_array_append (buf, stream->data + i, 1);
      size = dhf_xdm_frame_scan (buf->data, buf->len, &header, &error);
      g_assert_no_error (error);
      g_assert_cmpint (size, >=, 0);
      if (size == 0)
        continue;
      g_assert_cmpint (size, ==, buf->len);
      g_assert_cmpuint (header.type, ==, expected_types[n_frames]);
      g_assert_cmpuint (header.length + DHF_XDM_HEADER_SIZE, ==, size);
      n_frames++;
      g_byte_array_remove_range (buf, 0, (guint) size);
    }
  g_assert_cmpuint (n_frames, ==, G_N_ELEMENTS (expected_types));
  g_assert_cmpuint (buf->len, ==, 0);

  /* All at once: one frame at a time from the front. */
  {
    gsize offset = 0;

    n_frames = 0;
    while (offset < stream->len)
      {
        gssize size = dhf_xdm_frame_scan (stream->data + offset, stream->len - offset, NULL, NULL);

        g_assert_cmpint (size, >, 0);
        offset += (gsize) size;
        n_frames++;
      }
    g_assert_cmpuint (offset, ==, stream->len);
    g_assert_cmpuint (n_frames, ==, G_N_ELEMENTS (expected_types));
  }
}

static void
test_frame_scan_errors (void)
{
  guint8 h[DHF_XDM_HEADER_SIZE + 4];
  g_autoptr (GError) error = NULL;
  DhfXdmHeader header;

  /* A 4 GiB length is refused as soon as the header is in, with no body. */
  put_header (h, DHF_XDM_CALL, 0, 1, 0xffffffff);
  for (gsize len = 0; len < DHF_XDM_HEADER_SIZE; len++)
    g_assert_cmpint (dhf_xdm_frame_scan (h, len, &header, NULL), ==, 0);
  g_assert_cmpint (dhf_xdm_frame_scan (h, DHF_XDM_HEADER_SIZE, &header, &error), ==, -1);
  g_assert_error (error, DHF_ERROR, DHF_ERROR_PROTOCOL);
  g_clear_error (&error);

  /* Not XDM at all: "GET / HTTP/1.1\r\n". */
  g_assert_cmpint (dhf_xdm_frame_scan ((const guint8 *) "GET / HTTP/1.1\r\n", 16, &header, &error),
                   ==, -1);
  g_assert_error (error, DHF_ERROR, DHF_ERROR_PROTOCOL);
  assert_contains (error->message, "magic");
  g_clear_error (&error);

  /* A complete frame followed by part of the next one. */
  put_header (h, DHF_XDM_PONG, 0, 0, 2);
  memcpy (h + DHF_XDM_HEADER_SIZE, "{}DX", 4);
  g_assert_cmpint (dhf_xdm_frame_scan (h, sizeof h, &header, &error), ==, DHF_XDM_HEADER_SIZE + 2);
  g_assert_no_error (error);
}

/* ---- Message bodies ---- */

static void
test_message_hello_welcome (void)
{
  DhfXdmMessage msg;
  g_autoptr (GError) error = NULL;

  g_assert_true (
      parse (DHF_XDM_HELLO, "{\"versions\":[3,1,2],\"client\":\"dhfctl 0.2 é\"}", &msg, &error));
  g_assert_no_error (error);
  g_assert_cmpint (msg.type, ==, DHF_XDM_HELLO);
  g_assert_cmpuint (msg.id, ==, 7);
  g_assert_cmpuint (msg.version, ==, 1);
  g_assert_cmpstr (msg.client, ==, "dhfctl 0.2 é");
  dhf_xdm_message_clear (&msg);
  g_assert_null (msg.body);

  g_assert_true (parse (DHF_XDM_HELLO, "{\"versions\":[1],\"unknown\":{\"x\":[]}}", &msg, &error));
  g_assert_null (msg.client);
  dhf_xdm_message_clear (&msg);

  g_assert_true (parse (DHF_XDM_WELCOME,
                        "{\"version\":1,\"domain\":\"personal\","
                        "\"uuid\":\"4dea22b3-1d52-d8f3-2516-782e98ab3fa0\","
                        "\"limits\":{\"max_body\":1048576,\"max_calls_in_flight\":256}}",
                        &msg, &error));
  g_assert_no_error (error);
  g_assert_cmpuint (msg.version, ==, 1);
  g_assert_cmpstr (msg.domain, ==, "personal");
  g_assert_cmpstr (msg.uuid, ==, "4dea22b3-1d52-d8f3-2516-782e98ab3fa0");
  dhf_xdm_message_clear (&msg);

  g_assert_true (parse (DHF_XDM_WELCOME,
                        "{\"version\":1,\"domain\":\"dom0\","
                        "\"limits\":{\"max_body\":4096,\"max_calls_in_flight\":0}}",
                        &msg, &error));
  g_assert_null (msg.uuid);
  dhf_xdm_message_clear (&msg);
}

static void
test_message_requests (void)
{
  DhfXdmMessage msg;
  g_autoptr (GError) error = NULL;
  json_object *params;

  g_assert_true (parse (DHF_XDM_REGISTER, "{\"service\":\"org.example.Sync1\"}", &msg, &error));
  g_assert_cmpstr (msg.service, ==, "org.example.Sync1");
  dhf_xdm_message_clear (&msg);
  g_assert_true (parse (DHF_XDM_UNREGISTER, "{\"service\":\"_a.b-c.D9\"}", &msg, &error));
  g_assert_cmpstr (msg.service, ==, "_a.b-c.D9");
  dhf_xdm_message_clear (&msg);

  /* A CALL with nothing but a service. */
  g_assert_true (parse (DHF_XDM_CALL, "{\"service\":\"org.example.Sync1\"}", &msg, &error));
  g_assert_cmpint (msg.type, ==, DHF_XDM_CALL);
  g_assert_cmpstr (msg.service, ==, "org.example.Sync1");
  g_assert_null (msg.arg);
  g_assert_null (msg.target);
  g_assert_null (msg.source);
  g_assert_null (msg.value);
  g_assert_cmpuint (msg.timeout_ms, ==, DHF_XDM_DEFAULT_TIMEOUT_MS);
  dhf_xdm_message_clear (&msg);

  /* ... and with everything. */
  g_assert_true (parse (DHF_XDM_CALL,
                        "{\"service\":\"org.example.Sync1\",\"arg\":\"docs.v2_x-y\","
                        "\"target\":\"file-sync\",\"source\":\"personal\",\"timeout_ms\":600000,"
                        "\"params\":{\"path\":\"/a\\/b\",\"n\":[1,2.5,null,true]}}",
                        &msg, &error));
  g_assert_no_error (error);
  g_assert_cmpstr (msg.arg, ==, "docs.v2_x-y");
  g_assert_cmpstr (msg.target, ==, "file-sync");
  g_assert_cmpstr (msg.source, ==, "personal");
  g_assert_cmpuint (msg.timeout_ms, ==, DHF_XDM_MAX_TIMEOUT_MS);
  params = msg.value;
  g_assert_true (json_object_is_type (params, json_type_object));
  g_assert_cmpstr (json_object_get_string (json_object_object_get (params, "path")), ==, "/a/b");
  dhf_xdm_message_clear (&msg);

  /* "" is an empty argument, not none; params may be any value. */
  g_assert_true (parse (DHF_XDM_CALL,
                        "{\"service\":\"a.b\",\"arg\":\"\",\"params\":\"text\",\"timeout_ms\":1}",
                        &msg, &error));
  g_assert_cmpstr (msg.arg, ==, "");
  g_assert_cmpstr (json_object_get_string (msg.value), ==, "text");
  g_assert_cmpuint (msg.timeout_ms, ==, 1);
  dhf_xdm_message_clear (&msg);
  g_assert_true (parse (DHF_XDM_CALL, "{\"service\":\"a.b\",\"params\":null}", &msg, &error));
  g_assert_null (msg.value);
  dhf_xdm_message_clear (&msg);

  g_assert_true (parse (DHF_XDM_STREAM_OPEN,
                        "{\"service\":\"org.example.Backup1\",\"arg\":\"home\",\"target\":\"nas\","
                        "\"window\":67108864}",
                        &msg, &error));
  g_assert_cmpstr (msg.service, ==, "org.example.Backup1");
  g_assert_cmpstr (msg.arg, ==, "home");
  g_assert_cmpstr (msg.target, ==, "nas");
  g_assert_cmpuint (msg.window, ==, DHF_XDM_MAX_WINDOW);
  dhf_xdm_message_clear (&msg);
  g_assert_true (parse (DHF_XDM_STREAM_OPEN, "{\"service\":\"a.b\",\"window\":0}", &msg, &error));
  g_assert_cmpuint (msg.window, ==, 0);
  dhf_xdm_message_clear (&msg);
  g_assert_no_error (error);
}

static void
test_message_answers (void)
{
  DhfXdmMessage msg;
  g_autoptr (GError) error = NULL;

  g_assert_true (parse (DHF_XDM_REPLY, "{\"result\":[1,\"two\"]}", &msg, &error));
  g_assert_true (json_object_is_type (msg.value, json_type_array));
  g_assert_cmpuint (msg.window, ==, 0);
  g_assert_cmpuint (msg.delivered, ==, 0);
  dhf_xdm_message_clear (&msg);
  g_assert_true (parse (DHF_XDM_REPLY, "{}", &msg, &error));
  g_assert_null (msg.value);
  g_assert_nonnull (msg.body);
  dhf_xdm_message_clear (&msg);
  g_assert_true (parse (DHF_XDM_REPLY, "{\"window\":65536}", &msg, &error));
  g_assert_cmpuint (msg.window, ==, 65536);
  dhf_xdm_message_clear (&msg);
  g_assert_true (parse (DHF_XDM_REPLY, "{\"delivered\":4294967295}", &msg, &error));
  g_assert_cmpuint (msg.delivered, ==, G_MAXUINT32);
  dhf_xdm_message_clear (&msg);

  g_assert_true (
      parse (DHF_XDM_ERROR, "{\"code\":\"not-authorized\",\"message\":\"no\"}", &msg, &error));
  g_assert_cmpstr (msg.code, ==, "not-authorized");
  g_assert_cmpstr (msg.message, ==, "no");
  dhf_xdm_message_clear (&msg);
  /* Codes this build does not know are still well formed. */
  g_assert_true (
      parse (DHF_XDM_ERROR, "{\"code\":\"future-code2\",\"message\":\"\"}", &msg, &error));
  g_assert_cmpstr (msg.code, ==, "future-code2");
  dhf_xdm_message_clear (&msg);

  for (guint type = DHF_XDM_CANCEL; type <= DHF_XDM_PONG; type++)
    if (type == DHF_XDM_CANCEL || type == DHF_XDM_PING || type == DHF_XDM_PONG)
      {
        g_assert_true (parse (type, "{\"anything\":1}", &msg, &error));
        g_assert_cmpint (msg.type, ==, type);
        dhf_xdm_message_clear (&msg);
      }
  g_assert_no_error (error);
}

static void
test_message_topics_streams (void)
{
  DhfXdmMessage msg;
  g_autoptr (GError) error = NULL;
  guint8 bytes[] = { 0, 1, 0xff, '{' };
  DhfXdmHeader header = { 1, DHF_XDM_STREAM_DATA, DHF_XDM_FLAG_RAW, 3, sizeof bytes };

  g_assert_true (
      parse (DHF_XDM_SUBSCRIBE, "{\"topic\":\"org.dhf.framework.ApplianceState\"}", &msg, &error));
  g_assert_cmpstr (msg.topic, ==, "org.dhf.framework.ApplianceState");
  dhf_xdm_message_clear (&msg);
  g_assert_true (parse (DHF_XDM_UNSUBSCRIBE, "{\"topic\":\"a.b\"}", &msg, &error));
  g_assert_cmpstr (msg.topic, ==, "a.b");
  dhf_xdm_message_clear (&msg);

  g_assert_true (
      parse (DHF_XDM_PUBLISH, "{\"topic\":\"org.x.Changed\",\"data\":{\"n\":1}}", &msg, &error));
  g_assert_cmpstr (msg.topic, ==, "org.x.Changed");
  g_assert_null (msg.source);
  g_assert_true (json_object_is_type (msg.value, json_type_object));
  dhf_xdm_message_clear (&msg);
  g_assert_true (
      parse (DHF_XDM_EVENT, "{\"topic\":\"org.x.Changed\",\"source\":\"dom0\"}", &msg, &error));
  g_assert_cmpstr (msg.source, ==, "dom0");
  g_assert_null (msg.value);
  dhf_xdm_message_clear (&msg);

  g_assert_true (parse (DHF_XDM_STREAM_CREDIT, "{\"bytes\":1}", &msg, &error));
  g_assert_cmpuint (msg.bytes, ==, 1);
  dhf_xdm_message_clear (&msg);
  g_assert_true (parse (DHF_XDM_STREAM_CLOSE, "{}", &msg, &error));
  g_assert_null (msg.code);
  g_assert_null (dhf_xdm_message_to_error (&msg));
  dhf_xdm_message_clear (&msg);
  g_assert_true (
      parse (DHF_XDM_STREAM_CLOSE, "{\"code\":\"protocol\",\"message\":\"credit\"}", &msg, &error));
  g_assert_cmpstr (msg.code, ==, "protocol");
  g_assert_cmpstr (msg.message, ==, "credit");
  dhf_xdm_message_clear (&msg);

  /* Raw bytes are not JSON and are not looked at. */
  g_assert_true (dhf_xdm_message_parse (&header, bytes, &msg, &error));
  g_assert_no_error (error);
  g_assert_null (msg.body);
  g_assert_true (msg.raw == bytes);
  g_assert_cmpuint (msg.raw_length, ==, sizeof bytes);
  g_assert_cmpuint (msg.id, ==, 3);
  dhf_xdm_message_clear (&msg);
  header.length = 0;
  g_assert_true (dhf_xdm_message_parse (&header, NULL, &msg, &error));
  g_assert_cmpuint (msg.raw_length, ==, 0);
  dhf_xdm_message_clear (&msg);
}

typedef struct
{
  guint type;
  const gchar *body;
  const gchar *needle;
} BadField;

#define LONG_64 "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"

static void
test_message_bad_fields (void)
{
  static const BadField cases[] = {
    /* Required fields, with the field named. */
    { DHF_XDM_REGISTER, "{}", "REGISTER: \"service\" is missing" },
    { DHF_XDM_UNREGISTER, "{\"topic\":\"a.b\"}", "UNREGISTER: \"service\" is missing" },
    { DHF_XDM_CALL, "{\"arg\":\"x\"}", "CALL: \"service\" is missing" },
    { DHF_XDM_ERROR, "{\"message\":\"x\"}", "ERROR: \"code\" is missing" },
    { DHF_XDM_ERROR, "{\"code\":\"failed\"}", "ERROR: \"message\" is missing" },
    { DHF_XDM_SUBSCRIBE, "{}", "SUBSCRIBE: \"topic\" is missing" },
    { DHF_XDM_UNSUBSCRIBE, "{\"service\":\"a.b\"}", "UNSUBSCRIBE: \"topic\" is missing" },
    { DHF_XDM_PUBLISH, "{\"data\":1}", "PUBLISH: \"topic\" is missing" },
    { DHF_XDM_EVENT, "{\"source\":\"a\"}", "EVENT: \"topic\" is missing" },
    { DHF_XDM_EVENT, "{\"topic\":\"a.b\"}", "EVENT: \"source\" is missing" },
    { DHF_XDM_STREAM_OPEN, "{\"window\":1}", "STREAM_OPEN: \"service\" is missing" },
    { DHF_XDM_STREAM_OPEN, "{\"service\":\"a.b\"}", "STREAM_OPEN: \"window\" is missing" },
    { DHF_XDM_STREAM_CREDIT, "{}", "STREAM_CREDIT: \"bytes\" is missing" },
    /* Wrong JSON types. */
    { DHF_XDM_REGISTER, "{\"service\":1}", "\"service\" must be a string, not an integer" },
    { DHF_XDM_REGISTER, "{\"service\":null}", "\"service\" must be a string, not null" },
    { DHF_XDM_REGISTER, "{\"service\":[\"a.b\"]}", "\"service\" must be a string, not an array" },
    { DHF_XDM_CALL, "{\"service\":\"a.b\",\"arg\":5}", "\"arg\" must be a string" },
    { DHF_XDM_CALL, "{\"service\":\"a.b\",\"target\":{}}", "\"target\" must be a string" },
    { DHF_XDM_CALL, "{\"service\":\"a.b\",\"source\":true}", "\"source\" must be a string" },
    { DHF_XDM_CALL, "{\"service\":\"a.b\",\"timeout_ms\":\"5\"}",
      "\"timeout_ms\" must be an integer, not a string" },
    { DHF_XDM_CALL, "{\"service\":\"a.b\",\"timeout_ms\":5.0}",
      "\"timeout_ms\" must be an integer, not a fractional number" },
    { DHF_XDM_CALL, "{\"service\":\"a.b\",\"timeout_ms\":1e3}",
      "\"timeout_ms\" must be an integer" },
    { DHF_XDM_REPLY, "{\"window\":\"1\"}", "\"window\" must be an integer" },
    { DHF_XDM_REPLY, "{\"delivered\":false}", "\"delivered\" must be an integer, not a boolean" },
    { DHF_XDM_ERROR, "{\"code\":1,\"message\":\"\"}", "\"code\" must be a string" },
    { DHF_XDM_ERROR, "{\"code\":\"failed\",\"message\":{}}", "\"message\" must be a string" },
    { DHF_XDM_PUBLISH, "{\"topic\":\"a.b\",\"source\":1}", "\"source\" must be a string" },
    { DHF_XDM_STREAM_CREDIT, "{\"bytes\":null}", "\"bytes\" must be an integer, not null" },
    { DHF_XDM_STREAM_CLOSE, "{\"code\":[]}", "\"code\" must be a string" },
    { DHF_XDM_STREAM_CLOSE, "{\"message\":1}", "\"message\" must be a string" },
    /* Bad names. */
    { DHF_XDM_REGISTER, "{\"service\":\"org\"}", "\"service\" is not a valid name: \"org\"" },
    { DHF_XDM_REGISTER, "{\"service\":\"\"}", "\"service\" is not a valid name" },
    { DHF_XDM_REGISTER, "{\"service\":\"org..x\"}", "\"service\" is not a valid name" },
    { DHF_XDM_REGISTER, "{\"service\":\".org.x\"}", "\"service\" is not a valid name" },
    { DHF_XDM_REGISTER, "{\"service\":\"org.x.\"}", "\"service\" is not a valid name" },
    { DHF_XDM_REGISTER, "{\"service\":\"org.1x\"}", "\"service\" is not a valid name" },
    { DHF_XDM_REGISTER, "{\"service\":\"org.-x\"}", "\"service\" is not a valid name" },
    { DHF_XDM_REGISTER, "{\"service\":\"org.x*\"}", "\"service\" is not a valid name" },
    { DHF_XDM_REGISTER, "{\"service\":\"org.x+arg\"}", "\"service\" is not a valid name" },
    { DHF_XDM_REGISTER, "{\"service\":\"org.é\"}", "\"service\" is not a valid name" },
    { DHF_XDM_REGISTER, "{\"service\":\"org.x\\u0000y\"}", "\"service\" contains a NUL" },
    { DHF_XDM_SUBSCRIBE, "{\"topic\":\"org x.y\"}", "\"topic\" is not a valid name" },
    { DHF_XDM_CALL, "{\"service\":\"a.b\",\"arg\":\"a b\"}", "\"arg\" is not a valid argument" },
    { DHF_XDM_CALL, "{\"service\":\"a.b\",\"arg\":\"a+b\"}", "\"arg\" is not a valid argument" },
    { DHF_XDM_CALL, "{\"service\":\"a.b\",\"arg\":\"" LONG_64 "a\"}",
      "\"arg\" is not a valid argument" },
    { DHF_XDM_CALL, "{\"service\":\"a.b\",\"target\":\"\"}", "\"target\" is not a valid domain" },
    { DHF_XDM_CALL, "{\"service\":\"a.b\",\"target\":\"a/b\"}",
      "\"target\" is not a valid domain" },
    { DHF_XDM_CALL, "{\"service\":\"a.b\",\"target\":\"" LONG_64 "a\"}",
      "\"target\" is not a valid domain" },
    { DHF_XDM_STREAM_OPEN, "{\"service\":\"a.b\",\"source\":\"@dom0\",\"window\":1}",
      "\"source\" is not a valid domain" },
    { DHF_XDM_EVENT, "{\"topic\":\"a.b\",\"source\":\"\"}", "\"source\" is not a valid domain" },
    { DHF_XDM_ERROR, "{\"code\":\"Not-Found\",\"message\":\"\"}",
      "\"code\" is not a valid error code" },
    { DHF_XDM_ERROR, "{\"code\":\"\",\"message\":\"\"}", "\"code\" is not a valid error code" },
    { DHF_XDM_ERROR, "{\"code\":\"-x\",\"message\":\"\"}", "\"code\" is not a valid error code" },
    { DHF_XDM_STREAM_CLOSE, "{\"code\":\"not found\"}", "\"code\" is not a valid error code" },
    { DHF_XDM_ERROR, "{\"code\":\"a\",\"message\":\"x\\u0000\"}", "\"message\" contains a NUL" },
    /* Numbers out of range. */
    { DHF_XDM_CALL, "{\"service\":\"a.b\",\"timeout_ms\":0}",
      "\"timeout_ms\" is 0, out of range 1..600000" },
    { DHF_XDM_CALL, "{\"service\":\"a.b\",\"timeout_ms\":600001}",
      "\"timeout_ms\" is 600001, out of range" },
    { DHF_XDM_CALL, "{\"service\":\"a.b\",\"timeout_ms\":-1}",
      "\"timeout_ms\" is -1, out of range" },
    { DHF_XDM_CALL, "{\"service\":\"a.b\",\"timeout_ms\":-9223372036854775808}",
      "\"timeout_ms\" is -9223372036854775808" },
    { DHF_XDM_CALL, "{\"service\":\"a.b\",\"timeout_ms\":9223372036854775807}",
      "\"timeout_ms\" is 9223372036854775807" },
    { DHF_XDM_CALL, "{\"service\":\"a.b\",\"timeout_ms\":18446744073709551615}",
      "\"timeout_ms\" is 18446744073709551615" },
    { DHF_XDM_CALL, "{\"service\":\"a.b\",\"timeout_ms\":99999999999999999999}",
      "\"timeout_ms\" is" },
    { DHF_XDM_STREAM_OPEN, "{\"service\":\"a.b\",\"window\":67108865}", "\"window\" is 67108865" },
    { DHF_XDM_STREAM_OPEN, "{\"service\":\"a.b\",\"window\":-1}", "\"window\" is -1" },
    { DHF_XDM_REPLY, "{\"window\":67108865}", "\"window\" is 67108865" },
    { DHF_XDM_REPLY, "{\"delivered\":4294967296}", "\"delivered\" is 4294967296" },
    { DHF_XDM_REPLY, "{\"delivered\":-1}", "\"delivered\" is -1" },
    { DHF_XDM_STREAM_CREDIT, "{\"bytes\":0}", "\"bytes\" is 0, out of range 1..67108864" },
    { DHF_XDM_STREAM_CREDIT, "{\"bytes\":67108865}", "\"bytes\" is 67108865" },
  };

  for (gsize i = 0; i < G_N_ELEMENTS (cases); i++)
    assert_refused (cases[i].type, cases[i].body, DHF_ERROR_INVALID_ARGS, cases[i].needle);
}

static void
test_message_session_errors (void)
{
  static const BadField cases[] = {
    { DHF_XDM_HELLO, "{}", "HELLO: \"versions\" is missing" },
    { DHF_XDM_HELLO, "", "HELLO: \"versions\" is missing" },
    { DHF_XDM_HELLO, "{\"versions\":1}",
      "\"versions\" must be an array of integers, not an integer" },
    { DHF_XDM_HELLO, "{\"versions\":[]}", "\"versions\" must list 1 to 16 versions" },
    { DHF_XDM_HELLO, "{\"versions\":[1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1]}",
      "\"versions\" must list 1 to 16 versions, not 17" },
    { DHF_XDM_HELLO, "{\"versions\":[\"1\"]}", "\"versions[0]\" must be an integer, not a string" },
    { DHF_XDM_HELLO, "{\"versions\":[1,1.5]}", "\"versions[1]\" must be an integer" },
    { DHF_XDM_HELLO, "{\"versions\":[1,null]}", "\"versions[1]\" must be an integer, not null" },
    { DHF_XDM_HELLO, "{\"versions\":[0]}", "\"versions[0]\" is 0, out of range" },
    { DHF_XDM_HELLO, "{\"versions\":[2,3]}", "no common protocol version (the peer speaks 2, 3" },
    { DHF_XDM_HELLO, "{\"versions\":[1],\"client\":5}", "\"client\" must be a string" },
    { DHF_XDM_HELLO, "{\"versions\":[1],\"client\":\"a\\nb\"}", "\"client\" contains a control" },
    { DHF_XDM_HELLO, "{\"versions\":[1],\"client\":\"" LONG_64 LONG_64 "a\"}",
      "\"client\" is 129 bytes long, over the limit of 128" },
    { DHF_XDM_HELLO, "[1]", "HELLO body is not a JSON object" },
    { DHF_XDM_WELCOME, "{}", "WELCOME: \"version\" is missing" },
    { DHF_XDM_WELCOME, "{\"version\":2}",
      "WELCOME: \"version\" is 2, a protocol version this side does not speak" },
    { DHF_XDM_WELCOME, "{\"version\":1}", "WELCOME: \"domain\" is missing" },
    { DHF_XDM_WELCOME, "{\"version\":1,\"domain\":\"a b\"}", "\"domain\" is not a valid domain" },
    { DHF_XDM_WELCOME, "{\"version\":1,\"domain\":\"a\",\"uuid\":\"nope\"}",
      "\"uuid\" is not a UUID" },
    { DHF_XDM_WELCOME, "{\"version\":1,\"domain\":\"a\"}", "WELCOME: \"limits\" is missing" },
    { DHF_XDM_WELCOME, "{\"version\":1,\"domain\":\"a\",\"limits\":[]}",
      "\"limits\" must be an object" },
    { DHF_XDM_WELCOME, "{\"version\":1,\"domain\":\"a\",\"limits\":{\"max_calls_in_flight\":1}}",
      "WELCOME limits: \"max_body\" is missing" },
    { DHF_XDM_WELCOME, "{\"version\":1,\"domain\":\"a\",\"limits\":{\"max_body\":1}}",
      "WELCOME limits: \"max_calls_in_flight\" is missing" },
    { DHF_XDM_WELCOME,
      "{\"version\":1,\"domain\":\"a\",\"limits\":{\"max_body\":1048577,\"max_calls_in_flight\":1}"
      "}",
      "\"max_body\" is 1048577, out of range 1..1048576" },
  };

  for (gsize i = 0; i < G_N_ELEMENTS (cases); i++)
    assert_refused (cases[i].type, cases[i].body, DHF_ERROR_PROTOCOL, cases[i].needle);
}

/* ---- JSON text ---- */

static gchar *
nested (guint levels, gchar open, gchar close)
{
  GString *s = g_string_new ("{\"x\":");

  for (guint i = 1; i < levels; i++)
    g_string_append_c (s, open);
  g_string_append_c (s, '1');
  for (guint i = 1; i < levels; i++)
    g_string_append_c (s, close);
  g_string_append_c (s, '}');
  return g_string_free (s, FALSE);
}

static gchar *
nested_objects (guint levels)
{
  GString *s = g_string_new (NULL);

  for (guint i = 0; i < levels; i++)
    g_string_append (s, "{\"a\":");
  g_string_append (s, "1");
  for (guint i = 0; i < levels; i++)
    g_string_append_c (s, '}');
  return g_string_free (s, FALSE);
}

static void
test_json_depth (void)
{
  /* The top-level object is level 1. */
  g_autofree gchar *objects_ok = nested_objects (DHF_XDM_MAX_DEPTH);
  g_autofree gchar *objects_deep = nested_objects (DHF_XDM_MAX_DEPTH + 1);
  g_autofree gchar *arrays_ok = nested (DHF_XDM_MAX_DEPTH, '[', ']');
  g_autofree gchar *arrays_deep = nested (DHF_XDM_MAX_DEPTH + 1, '[', ']');
  g_autofree gchar *very_deep = nested (100000, '[', ']');

  assert_accepted (DHF_XDM_PING, objects_ok);
  assert_accepted (DHF_XDM_REPLY, arrays_ok);
  assert_refused (DHF_XDM_PING, objects_deep, DHF_ERROR_INVALID_ARGS, "nested deeper than 32");
  assert_refused (DHF_XDM_REPLY, arrays_deep, DHF_ERROR_INVALID_ARGS, "nested deeper than 32");
  assert_refused (DHF_XDM_REPLY, very_deep, DHF_ERROR_INVALID_ARGS, "nested deeper than 32");
}

static void
test_json_utf8 (void)
{
  static const gchar *const bad[] = {
    "\xc3",             /* truncated */
    "\xc3(",            /* bad continuation */
    "\x80",             /* lone continuation */
    "\xc0\xaf",         /* overlong '/' */
    "\xe0\x80\xaf",     /* overlong */
    "\xf0\x80\x80\xaf", /* overlong */
    "\xed\xa0\x80",     /* surrogate D800 */
    "\xed\xbf\xbf",     /* surrogate DFFF */
    "\xf4\x90\x80\x80", /* over U+10FFFF */
    "\xf5\x80\x80\x80",
    "\xfe",
    "\xff",
    "\xe2\x82",
  };
  static const gchar *const good[] = {
    "é",
    "\xed\x9f\xbf",
    "\xee\x80\x80",
    "\xef\xbf\xbf",
    "\xf0\x9f\x98\x80",
    "\xf4\x8f\xbf\xbf",
    "\\ud83d\\ude00",
    "\\u00e9",
    "\\\"\\\\\\/\\b\\f\\n\\r\\t",
  };

  for (gsize i = 0; i < G_N_ELEMENTS (bad); i++)
    {
      g_autofree gchar *in_string = g_strdup_printf ("{\"x\":\"a%sb\"}", bad[i]);
      g_autofree gchar *in_key = g_strdup_printf ("{\"%s\":1}", bad[i]);
      g_autofree gchar *in_service = g_strdup_printf ("{\"service\":\"a.b%s\"}", bad[i]);

      assert_refused (DHF_XDM_PING, in_string, DHF_ERROR_INVALID_ARGS, "PING body: invalid UTF-8");
      assert_refused (DHF_XDM_PONG, in_key, DHF_ERROR_INVALID_ARGS, "invalid UTF-8");
      assert_refused (DHF_XDM_REGISTER, in_service, DHF_ERROR_INVALID_ARGS, "invalid UTF-8");
    }
  /* Truncated at the very end of the body. */
  assert_refused_len (DHF_XDM_PING, "{\"x\":\"\xe2\x82", 8, DHF_ERROR_INVALID_ARGS,
                      "invalid UTF-8 at byte 6");
  for (gsize i = 0; i < G_N_ELEMENTS (good); i++)
    {
      g_autofree gchar *body = g_strdup_printf ("{\"x\":\"a%sb\",\"%s\":0}", good[i], good[i]);

      assert_accepted (DHF_XDM_PING, body);
    }
  /* Outside strings, nothing but ASCII. */
  assert_refused (DHF_XDM_PING, "{\"x\":1}\xc3\xa9", DHF_ERROR_INVALID_ARGS,
                  "unexpected byte 0xc3");
  assert_refused (DHF_XDM_PING, "{\xc2\xa0\"x\":1}", DHF_ERROR_INVALID_ARGS,
                  "unexpected byte 0xc2");
}

static void
test_json_syntax (void)
{
  DhfXdmMessage msg;
  g_autoptr (GError) error = NULL;

  /* Not an object at the top. */
  assert_refused (DHF_XDM_PING, "[1]", DHF_ERROR_INVALID_ARGS, "PING body is not a JSON object");
  assert_refused (DHF_XDM_PING, "1", DHF_ERROR_INVALID_ARGS, "is not a JSON object");
  assert_refused (DHF_XDM_PING, "\"{}\"", DHF_ERROR_INVALID_ARGS, "is not a JSON object");
  assert_refused (DHF_XDM_PING, "null", DHF_ERROR_INVALID_ARGS, "is not a JSON object");
  assert_refused (DHF_XDM_PING, "true", DHF_ERROR_INVALID_ARGS, "is not a JSON object");
  assert_refused (DHF_XDM_PING, " \n\t", DHF_ERROR_INVALID_ARGS, "is not a JSON object");

  /* Trailing data. */
  assert_refused (DHF_XDM_PING, "{}x", DHF_ERROR_INVALID_ARGS, "PING body");
  assert_refused (DHF_XDM_PING, "{}{}", DHF_ERROR_INVALID_ARGS, "PING body");
  assert_refused (DHF_XDM_PING, "{} 1", DHF_ERROR_INVALID_ARGS, "PING body");
  assert_refused (DHF_XDM_CALL, "{\"service\":\"a.b\"}]", DHF_ERROR_INVALID_ARGS, "CALL body");
  assert_refused_len (DHF_XDM_PING, "{}\0", 3, DHF_ERROR_INVALID_ARGS, "unexpected byte 0x00");
  assert_refused_len (DHF_XDM_PING, "{\"a\":\"\0\"}", 9, DHF_ERROR_INVALID_ARGS,
                      "control character 0x00");
  assert_accepted (DHF_XDM_PING, " \r\n\t{ \"a\" : [ 1 , 2 ] }\n");

  /* Incomplete. */
  assert_refused (DHF_XDM_PING, "{", DHF_ERROR_INVALID_ARGS, "not complete");
  assert_refused (DHF_XDM_PING, "{\"a\":", DHF_ERROR_INVALID_ARGS, "not complete");
  assert_refused (DHF_XDM_PING, "{\"a\":\"x", DHF_ERROR_INVALID_ARGS, "not complete");
  assert_refused (DHF_XDM_PING, "{\"a\":\"x\\\"}", DHF_ERROR_INVALID_ARGS, "not complete");

  /* Not RFC 8259, though json-c takes some of it. */
  assert_refused (DHF_XDM_PING, "{\"a\":NaN}", DHF_ERROR_INVALID_ARGS, "unexpected character 'N'");
  assert_refused (DHF_XDM_PING, "{\"a\":nan}", DHF_ERROR_INVALID_ARGS, "PING body");
  assert_refused (DHF_XDM_PING, "{\"a\":Infinity}", DHF_ERROR_INVALID_ARGS, "'I'");
  assert_refused (DHF_XDM_PING, "{\"a\":-Infinity}", DHF_ERROR_INVALID_ARGS, "'I'");
  assert_refused (DHF_XDM_PING, "{\"a\":infinity}", DHF_ERROR_INVALID_ARGS, "PING body");
  assert_refused (DHF_XDM_PING, "{'a':1}", DHF_ERROR_INVALID_ARGS, "unexpected character '''");
  assert_refused (DHF_XDM_PING, "{\"a\":'x'}", DHF_ERROR_INVALID_ARGS, "'''");
  assert_refused (DHF_XDM_PING, "{/*c*/}", DHF_ERROR_INVALID_ARGS, "'/'");
  assert_refused (DHF_XDM_PING, "{\"a\":1,}", DHF_ERROR_INVALID_ARGS, "invalid JSON");
  assert_refused (DHF_XDM_PING, "{\"a\":01}", DHF_ERROR_INVALID_ARGS, "invalid JSON");
  assert_refused (DHF_XDM_PING, "{\"a\":TRUE}", DHF_ERROR_INVALID_ARGS, "'T'");
  assert_refused (DHF_XDM_PING, "{\"a\":\"x\x01y\"}", DHF_ERROR_INVALID_ARGS,
                  "control character 0x01 in a string at byte 7");
  assert_refused (DHF_XDM_PING, "{\"a\":\"x\ty\"}", DHF_ERROR_INVALID_ARGS,
                  "control character 0x09");
  assert_refused (DHF_XDM_PING, "{\"a\":\"x\ny\"}", DHF_ERROR_INVALID_ARGS,
                  "control character 0x0a");
  assert_refused (DHF_XDM_PING, "{\"a\":\"\\x\"}", DHF_ERROR_INVALID_ARGS, "invalid JSON");
  assert_refused (DHF_XDM_PING, "{\"a\":\"\\u12\"}", DHF_ERROR_INVALID_ARGS, "invalid JSON");
  assert_refused (DHF_XDM_PING, "{\"a\":\"\\\x01\"}", DHF_ERROR_INVALID_ARGS, "control character");
  /* An escaped quote and brace stay inside the string. */
  assert_accepted (DHF_XDM_PING, "{\"a\":\"\\\"}\",\"b\":\"\\\\\"}");
  /* DEL, escaped NUL and escaped controls are fine in data. */
  assert_accepted (DHF_XDM_PING, "{\"a\":\"\x7f\\u0000\\u001f\"}");
  assert_accepted (DHF_XDM_REPLY, "{\"result\":[1e400,-0,0.5E-3,true,false,null,{}]}");

  /* Empty body: {}. */
  g_assert_true (parse_len (DHF_XDM_PING, 9, "", 0, &msg, &error));
  g_assert_no_error (error);
  g_assert_true (json_object_is_type (msg.body, json_type_object));
  g_assert_cmpint (json_object_object_length (msg.body), ==, 0);
  g_assert_cmpuint (msg.id, ==, 9);
  dhf_xdm_message_clear (&msg);
  assert_refused_len (DHF_XDM_REGISTER, "", 0, DHF_ERROR_INVALID_ARGS,
                      "REGISTER: \"service\" is missing");

  /* A duplicated member: the last one counts (as json-c keeps it). */
  g_assert_true (
      parse (DHF_XDM_REGISTER, "{\"service\":\"a.b\",\"service\":\"c.d\"}", &msg, &error));
  g_assert_cmpstr (msg.service, ==, "c.d");
  dhf_xdm_message_clear (&msg);
}

/* A body cut in a surrogate pair leaves nothing behind for the next one
 * (json-c's tokener, reused, would remember the high surrogate). */
static void
test_json_tokener_reuse (void)
{
  static const gchar *const cut[] = {
    "{\"a\":\"\\ud800",
    "{\"a\":\"\\ud800\\",
    "{\"a\":\"\\ud800\\u",
    "{\"a\":\"\\ud800\\udc",
  };

  for (gsize i = 0; i < G_N_ELEMENTS (cut); i++)
    {
      DhfXdmMessage msg;
      g_autoptr (GError) error = NULL;

      assert_refused (DHF_XDM_PING, cut[i], DHF_ERROR_INVALID_ARGS, "not complete");
      g_assert_true (parse (DHF_XDM_REPLY, "{\"result\":\"x\\u0001\\u00e9\"}", &msg, &error));
      g_assert_cmpstr (json_object_get_string (msg.value), ==, "x\001é");
      dhf_xdm_message_clear (&msg);
    }
}

/* A bad value is quoted in the message, but not all of a huge one. */
static void
test_json_quoting (void)
{
  g_autoptr (GString) body = g_string_new ("{\"service\":\"");
  DhfXdmMessage msg;
  g_autoptr (GError) error = NULL;

  for (guint i = 0; i < 10000; i++)
    g_string_append (body, "é");
  g_string_append (body, "\"}");
  g_assert_false (parse (DHF_XDM_REGISTER, body->str, &msg, &error));
  g_assert_error (error, DHF_ERROR, DHF_ERROR_INVALID_ARGS);
  g_assert_cmpuint (strlen (error->message), <, 400);
  g_assert_true (g_utf8_validate (error->message, -1, NULL));
  assert_contains (error->message, "...");
  g_clear_error (&error);

  g_assert_false (parse (DHF_XDM_REGISTER, "{\"service\":\"a\\u0001b\"}", &msg, &error));
  assert_contains (error->message, "\"a?b\"");
}

/* ---- Encoders ---- */

static const struct
{
  guint type;
  const gchar *body;
} samples[] = {
  { DHF_XDM_HELLO, "{\"versions\":[1],\"client\":\"test\"}" },
  { DHF_XDM_WELCOME, "{\"version\":1,\"domain\":\"work\",\"uuid\":"
                     "\"4dea22b3-1d52-d8f3-2516-782e98ab3fa0\",\"limits\":{\"max_body\":1048576,"
                     "\"max_calls_in_flight\":256}}" },
  { DHF_XDM_REGISTER, "{\"service\":\"org.example.Sync1\"}" },
  { DHF_XDM_UNREGISTER, "{\"service\":\"org.example.Sync1\"}" },
  { DHF_XDM_CALL, "{\"service\":\"org.example.Sync1\",\"arg\":\"docs\",\"target\":\"sync\","
                  "\"source\":\"work\",\"timeout_ms\":1000,\"params\":{\"a\":[1,\"x/y\",null]}}" },
  { DHF_XDM_REPLY, "{\"result\":{\"unicode\":\"é😀\",\"ctl\":\"\\u0001\\n\"}}" },
  { DHF_XDM_ERROR, "{\"code\":\"not-found\",\"message\":\"nobody\"}" },
  { DHF_XDM_CANCEL, "{}" },
  { DHF_XDM_SUBSCRIBE, "{\"topic\":\"org.example.Changed\"}" },
  { DHF_XDM_UNSUBSCRIBE, "{\"topic\":\"org.example.Changed\"}" },
  { DHF_XDM_PUBLISH, "{\"topic\":\"org.example.Changed\",\"data\":2.5}" },
  { DHF_XDM_EVENT, "{\"topic\":\"org.example.Changed\",\"source\":\"work\",\"data\":[]}" },
  { DHF_XDM_STREAM_OPEN, "{\"service\":\"org.example.Backup1\",\"window\":65536}" },
  { DHF_XDM_STREAM_CREDIT, "{\"bytes\":4096}" },
  { DHF_XDM_STREAM_CLOSE, "{\"code\":\"protocol\",\"message\":\"too much\"}" },
  { DHF_XDM_PING, "{}" },
  { DHF_XDM_PONG, "{}" },
};

static void
test_encode_parse (void)
{
  g_autoptr (GByteArray) out = g_byte_array_new ();
  gsize offset = 0;
  guint n = 0;

  for (gsize i = 0; i < G_N_ELEMENTS (samples); i++)
    {
      json_object *json = json_parse_or_die (samples[i].body);

      dhf_xdm_append_json (out, samples[i].type, (guint32) i + 1, json);
      json_object_put (json);
    }
  dhf_xdm_append_raw (out, DHF_XDM_STREAM_DATA, 99, (const guint8 *) "\0\1\2", 3);
  dhf_xdm_append_text (out, DHF_XDM_REPLY, 100, "{\"result\":1}", (gsize) -1);
  dhf_xdm_append_json (out, DHF_XDM_PING, 101, NULL);

  while (offset < out->len)
    {
      DhfXdmHeader header;
      DhfXdmMessage msg;
      g_autoptr (GError) error = NULL;
      gssize size = dhf_xdm_frame_scan (out->data + offset, out->len - offset, &header, &error);

      g_assert_no_error (error);
      g_assert_cmpint (size, >, 0);
      if (!dhf_xdm_message_parse (&header, out->data + offset + DHF_XDM_HEADER_SIZE, &msg, &error))
        g_error ("frame %u does not parse back: %s", n, error->message);
      if (n < G_N_ELEMENTS (samples))
        {
          json_object *json = json_parse_or_die (samples[n].body);

          g_assert_cmpint (msg.type, ==, samples[n].type);
          g_assert_cmpuint (msg.id, ==, n + 1);
          g_assert_true (json_object_equal (json, msg.body));
          json_object_put (json);
        }
      else if (n == G_N_ELEMENTS (samples))
        {
          g_assert_cmpint (msg.type, ==, DHF_XDM_STREAM_DATA);
          g_assert_cmpmem (msg.raw, msg.raw_length, "\0\1\2", 3);
        }
      else if (n == G_N_ELEMENTS (samples) + 1)
        g_assert_cmpint (json_object_get_int (msg.value), ==, 1);
      else
        g_assert_cmpint (json_object_object_length (msg.body), ==, 0);
      dhf_xdm_message_clear (&msg);
      offset += (gsize) size;
      n++;
    }
  g_assert_cmpuint (n, ==, G_N_ELEMENTS (samples) + 3);
}

/* A body of exactly the limit passes; one byte more is refused, and the
 * output is left alone. */
static void
test_encode_limits (void)
{
  g_autoptr (GByteArray) out = g_byte_array_new ();
  g_autoptr (GError) error = NULL;
  /* {"data":"xxx"} is 11 bytes plus the string. */
  g_autofree gchar *fill = g_strnfill (DHF_XDM_MAX_BODY - 11, 'x');
  json_object *body = json_object_new_object ();
  DhfXdmHeader header;

  json_object_object_add (body, "data", json_object_new_string (fill));
  g_assert_true (dhf_xdm_json_fits (body));
  g_assert_true (dhf_xdm_append_json_checked (out, DHF_XDM_PUBLISH, 0, body, &error));
  g_assert_no_error (error);
  g_assert_cmpuint (out->len, ==, DHF_XDM_HEADER_SIZE + DHF_XDM_MAX_BODY);
  g_assert_cmpint (dhf_xdm_frame_scan (out->data, out->len, &header, &error), ==, out->len);
  json_object_object_add (body, "topic", json_object_new_string ("a.b"));
  g_byte_array_set_size (out, 0);
  g_assert_false (dhf_xdm_json_fits (body));
  g_assert_false (dhf_xdm_append_json_checked (out, DHF_XDM_PUBLISH, 0, body, &error));
  g_assert_error (error, DHF_ERROR, DHF_ERROR_LIMIT_EXCEEDED);
  assert_contains (error->message, "PUBLISH body of 1048590 bytes is over the limit");
  g_assert_cmpuint (out->len, ==, 0);
  json_object_put (body);
}

static void
test_encode_oversize_aborts (void)
{
  if (g_test_subprocess ())
    {
      g_autoptr (GByteArray) out = g_byte_array_new ();
      g_autofree gchar *fill = g_strnfill (DHF_XDM_MAX_BODY, 'x');
      json_object *body = json_object_new_object ();

      json_object_object_add (body, "data", json_object_new_string (fill));
      dhf_xdm_append_json (out, DHF_XDM_REPLY, 1, body);
      return;
    }
  g_test_trap_subprocess (NULL, 0, G_TEST_SUBPROCESS_DEFAULT);
  g_test_trap_assert_failed ();
  g_test_trap_assert_stderr ("*over the limit*");
}

static gchar *
decode_error_frame (GByteArray *out, DhfError *code)
{
  DhfXdmHeader header;
  DhfXdmMessage msg;
  g_autoptr (GError) error = NULL;
  g_autoptr (GError) as_error = NULL;
  gchar *message;

  g_assert_cmpint (dhf_xdm_frame_scan (out->data, out->len, &header, &error), ==, out->len);
  g_assert_cmpuint (header.type, ==, DHF_XDM_ERROR);
  if (!dhf_xdm_message_parse (&header, out->data + DHF_XDM_HEADER_SIZE, &msg, &error))
    g_error ("ERROR frame does not parse: %s", error->message);
  as_error = dhf_xdm_message_to_error (&msg);
  g_assert_nonnull (as_error);
  g_assert_true (as_error->domain == DHF_ERROR);
  *code = (DhfError) as_error->code;
  message = g_strdup (msg.message);
  dhf_xdm_message_clear (&msg);
  return message;
}

static void
test_encode_error (void)
{
  g_autoptr (GByteArray) out = g_byte_array_new ();
  g_autoptr (GString) text = g_string_new (NULL);
  const gchar *expected = "{\"code\":\"protocol\",\"message\":\"bad frame\"}";
  DhfError code;
  gchar *message;

  dhf_xdm_append_error (out, 0, DHF_ERROR_PROTOCOL, "bad frame");
  message = decode_error_frame (out, &code);
  g_assert_cmpint (code, ==, DHF_ERROR_PROTOCOL);
  g_assert_cmpstr (message, ==, "bad frame");
  g_free (message);
  g_assert_cmpmem (out->data + DHF_XDM_HEADER_SIZE, out->len - DHF_XDM_HEADER_SIZE, expected,
                   strlen (expected));

  /* Cut at 1024 bytes, on a character boundary: 1023 ASCII + "é" gives 1023. */
  for (guint i = 0; i < 1023; i++)
    g_string_append_c (text, 'a');
  g_string_append (text, "ééé");
  g_byte_array_set_size (out, 0);
  dhf_xdm_append_error (out, 5, DHF_ERROR_NOT_FOUND, text->str);
  message = decode_error_frame (out, &code);
  g_assert_cmpint (code, ==, DHF_ERROR_NOT_FOUND);
  g_assert_cmpuint (strlen (message), ==, 1023);
  g_free (message);
  /* Exactly 1024 stays whole. */
  g_string_truncate (text, 1022);
  g_string_append (text, "é");
  g_byte_array_set_size (out, 0);
  dhf_xdm_append_error (out, 5, DHF_ERROR_TIMEOUT, text->str);
  message = decode_error_frame (out, &code);
  g_assert_cmpstr (message, ==, text->str);
  g_free (message);

  /* Invalid UTF-8 (a file name, say) is repaired, not sent. */
  g_byte_array_set_size (out, 0);
  dhf_xdm_append_error (out, 5, DHF_ERROR_FAILED, "file \xff\xfe.txt");
  message = decode_error_frame (out, &code);
  g_assert_cmpint (code, ==, DHF_ERROR_FAILED);
  g_assert_true (g_utf8_validate (message, -1, NULL));
  assert_contains (message, ".txt");
  g_free (message);

  g_byte_array_set_size (out, 0);
  dhf_xdm_append_error (out, 5, DHF_ERROR_LIMIT_EXCEEDED, NULL);
  message = decode_error_frame (out, &code);
  g_assert_cmpint (code, ==, DHF_ERROR_LIMIT_EXCEEDED);
  g_assert_cmpstr (message, ==, "");
  g_free (message);
}

/* ---- Error codes ---- */

static void
test_error_codes (void)
{
  g_autoptr (GEnumClass) klass = g_type_class_ref (DHF_TYPE_ERROR);
  g_autoptr (GHashTable) seen = g_hash_table_new (g_str_hash, g_str_equal);

  for (gint code = 0; code < DHF_ERROR_LAST; code++)
    {
      const gchar *nick = dhf_xdm_error_code_to_string (code);
      GEnumValue *value = g_enum_get_value (klass, code);

      g_assert_nonnull (value);
      g_assert_cmpstr (nick, ==, value->value_nick);
      g_assert_cmpint (dhf_xdm_error_code_from_string (nick), ==, code);
      g_assert_true (g_hash_table_add (seen, (gpointer) nick));
    }
  g_assert_cmpstr (dhf_xdm_error_code_to_string (DHF_ERROR_NOT_AUTHORIZED), ==, "not-authorized");
  g_assert_cmpstr (dhf_xdm_error_code_to_string (DHF_ERROR_LIMIT_EXCEEDED), ==, "limit-exceeded");
  g_assert_cmpstr (dhf_xdm_error_code_to_string (DHF_ERROR_UNAVAILABLE), ==, "unavailable");
  g_assert_cmpstr (dhf_xdm_error_code_to_string (DHF_ERROR_LAST), ==, "failed");
  g_assert_cmpstr (dhf_xdm_error_code_to_string ((DhfError) -1), ==, "failed");
  g_assert_cmpint (dhf_xdm_error_code_from_string ("no-such-code"), ==, DHF_ERROR_FAILED);
  g_assert_cmpint (dhf_xdm_error_code_from_string (""), ==, DHF_ERROR_FAILED);
  g_assert_cmpint (dhf_xdm_error_code_from_string (NULL), ==, DHF_ERROR_FAILED);
  g_assert_cmpint (dhf_xdm_error_code_from_string ("NOT-FOUND"), ==, DHF_ERROR_FAILED);
}

static void
test_message_to_error (void)
{
  DhfXdmMessage msg;
  g_autoptr (GError) error = NULL;
  GError *converted;

  g_assert_true (
      parse (DHF_XDM_ERROR, "{\"code\":\"timeout\",\"message\":\"too slow\"}", &msg, &error));
  converted = dhf_xdm_message_to_error (&msg);
  g_assert_error (converted, DHF_ERROR, DHF_ERROR_TIMEOUT);
  g_assert_cmpstr (converted->message, ==, "too slow");
  g_error_free (converted);
  dhf_xdm_message_clear (&msg);

  g_assert_true (
      parse (DHF_XDM_ERROR, "{\"code\":\"brand-new\",\"message\":\"later\"}", &msg, &error));
  converted = dhf_xdm_message_to_error (&msg);
  g_assert_error (converted, DHF_ERROR, DHF_ERROR_FAILED);
  assert_contains (converted->message, "later");
  assert_contains (converted->message, "brand-new");
  g_error_free (converted);
  dhf_xdm_message_clear (&msg);

  g_assert_true (parse (DHF_XDM_ERROR, "{\"code\":\"exists\",\"message\":\"\"}", &msg, &error));
  converted = dhf_xdm_message_to_error (&msg);
  g_assert_error (converted, DHF_ERROR, DHF_ERROR_EXISTS);
  g_assert_cmpstr (converted->message, ==, "exists");
  g_error_free (converted);
  dhf_xdm_message_clear (&msg);

  g_assert_true (parse (DHF_XDM_STREAM_CLOSE, "{\"code\":\"unavailable\"}", &msg, &error));
  converted = dhf_xdm_message_to_error (&msg);
  g_assert_error (converted, DHF_ERROR, DHF_ERROR_UNAVAILABLE);
  g_error_free (converted);
  dhf_xdm_message_clear (&msg);
  g_assert_no_error (error);
}

/* ---- Names ---- */

static void
test_split_service (void)
{
  static const struct
  {
    const gchar *text;
    const gchar *service;
    const gchar *arg;
  } good[] = {
    { "org.example.Sync1+docs", "org.example.Sync1", "docs" },
    { "org.example.Sync1", "org.example.Sync1", NULL },
    { "org.example.Sync1+", "org.example.Sync1", "" },
    { "a.b+x.y_z-1", "a.b", "x.y_z-1" },
    { "a.b+" LONG_64, "a.b", LONG_64 },
  };
  static const struct
  {
    const gchar *text;
    const gchar *needle;
  } bad[] = {
    { "", "invalid service name \"\"" },
    { "org", "invalid service name \"org\"" },
    { "org+docs", "invalid service name \"org\"" },
    { "+docs", "invalid service name" },
    { "org..x+docs", "invalid service name" },
    { "*", "invalid service name" },
    { "org.x.Y+a b", "invalid argument \"a b\" of org.x.Y" },
    { "org.x.Y+a+b", "invalid argument \"a+b\"" },
    { "org.x.Y+" LONG_64 "a", "invalid argument" },
    { "org.x.Y+é", "invalid argument" },
  };

  for (gsize i = 0; i < G_N_ELEMENTS (good); i++)
    {
      g_autofree gchar *service = NULL;
      g_autofree gchar *arg = NULL;
      g_autoptr (GError) error = NULL;

      g_assert_true (dhf_xdm_split_service (good[i].text, &service, &arg, &error));
      g_assert_no_error (error);
      g_assert_cmpstr (service, ==, good[i].service);
      g_assert_cmpstr (arg, ==, good[i].arg);
      g_assert_true (dhf_xdm_split_service (good[i].text, NULL, NULL, NULL));
    }
  for (gsize i = 0; i < G_N_ELEMENTS (bad); i++)
    {
      gchar *service = NULL;
      gchar *arg = NULL;
      g_autoptr (GError) error = NULL;

      g_assert_false (dhf_xdm_split_service (bad[i].text, &service, &arg, &error));
      g_assert_error (error, DHF_ERROR, DHF_ERROR_INVALID_ARGS);
      assert_contains (error->message, bad[i].needle);
      g_assert_null (service);
      g_assert_null (arg);
    }
}

static void
test_validators (void)
{
  g_autofree gchar *name255 = g_strnfill (255, 'b');
  g_autofree gchar *name256 = g_strnfill (256, 'b');

  name255[1] = '.';
  name256[1] = '.';

  g_assert_true (dhf_xdm_name_is_valid ("org.example.Sync1"));
  g_assert_true (dhf_xdm_name_is_valid ("_x.y-1._"));
  g_assert_true (dhf_xdm_name_is_valid (name255));
  g_assert_false (dhf_xdm_name_is_valid (name256));
  g_assert_false (dhf_xdm_name_is_valid ("org"));
  g_assert_false (dhf_xdm_name_is_valid ("org."));
  g_assert_false (dhf_xdm_name_is_valid ("9a.b"));
  g_assert_false (dhf_xdm_name_is_valid ("a.b+c"));
  g_assert_false (dhf_xdm_name_is_valid (NULL));

  g_assert_true (dhf_xdm_arg_is_valid (""));
  g_assert_true (dhf_xdm_arg_is_valid ("a.b_c-9"));
  g_assert_true (dhf_xdm_arg_is_valid (LONG_64));
  g_assert_false (dhf_xdm_arg_is_valid (LONG_64 "a"));
  g_assert_false (dhf_xdm_arg_is_valid ("a/b"));
  g_assert_false (dhf_xdm_arg_is_valid (NULL));

  g_assert_true (dhf_xdm_domain_is_valid ("dom0"));
  g_assert_true (dhf_xdm_domain_is_valid ("Work_VM.2-x"));
  g_assert_true (dhf_xdm_domain_is_valid (LONG_64));
  g_assert_false (dhf_xdm_domain_is_valid (LONG_64 "a"));
  g_assert_false (dhf_xdm_domain_is_valid (""));
  g_assert_false (dhf_xdm_domain_is_valid ("@dom0"));
  g_assert_false (dhf_xdm_domain_is_valid ("a b"));
  g_assert_false (dhf_xdm_domain_is_valid (NULL));

  for (guint type = 0; type <= DHF_XDM_N_TYPES + 1; type++)
    g_assert_true ((dhf_xdm_type_to_string (type) != NULL)
                   == (type >= 1 && type < DHF_XDM_N_TYPES));
  g_assert_cmpstr (dhf_xdm_type_to_string (DHF_XDM_STREAM_DATA), ==, "STREAM_DATA");
  g_assert_cmpstr (dhf_xdm_type_to_string (0xff), ==, NULL);
}

/* ---- protos/xdm-messages.json ---- */

static json_object *
load_definitions (void)
{
  const gchar *root = g_getenv ("DHF_SOURCE_ROOT");
  g_autofree gchar *path = NULL;
  json_object *defs;

  if (root == NULL)
    g_error ("DHF_SOURCE_ROOT is not set (run the test through meson test)");
  path = g_build_filename (root, "protos", "xdm-messages.json", NULL);
  defs = json_object_from_file (path);
  if (defs == NULL)
    g_error ("%s: %s", path, json_util_get_last_err ());
  return defs;
}

static json_object *
member (json_object *obj, const gchar *key)
{
  json_object *value = NULL;

  if (!json_object_object_get_ex (obj, key, &value) || value == NULL)
    g_error ("xdm-messages.json: \"%s\" is missing in %s", key,
             json_object_to_json_string_ext (obj, JSON_C_TO_STRING_PLAIN));
  return value;
}

static gboolean
has_member (json_object *obj, const gchar *key)
{
  return json_object_object_get_ex (obj, key, NULL);
}

static gint64
int_member (json_object *obj, const gchar *key)
{
  json_object *value = member (obj, key);

  g_assert_true (json_object_is_type (value, json_type_int));
  return json_object_get_int64 (value);
}

static const gchar *
string_member (json_object *obj, const gchar *key)
{
  json_object *value = member (obj, key);

  g_assert_true (json_object_is_type (value, json_type_string));
  return json_object_get_string (value);
}

static void
test_definitions_types (void)
{
  json_object *defs = load_definitions ();
  json_object *messages = member (defs, "messages");
  gboolean seen[DHF_XDM_N_TYPES] = { FALSE };

  g_assert_cmpuint (json_object_array_length (messages), ==, DHF_XDM_N_TYPES - 1);
  for (gsize i = 0; i < json_object_array_length (messages); i++)
    {
      json_object *m = json_object_array_get_idx (messages, i);
      gint64 number = int_member (m, "number");
      const gchar *name = string_member (m, "name");
      const gchar *body = string_member (m, "body");
      const gchar *request_id = string_member (m, "request_id");
      json_object *direction = member (m, "direction");
      guint8 h[DHF_XDM_HEADER_SIZE];
      DhfXdmHeader header;

      g_assert_cmpint (number, >=, 1);
      g_assert_cmpint (number, <, DHF_XDM_N_TYPES);
      g_assert_false (seen[number]);
      seen[number] = TRUE;
      g_assert_cmpstr (name, ==, dhf_xdm_type_to_string ((guint) number));
      g_assert_cmpstr (body, ==, number == DHF_XDM_STREAM_DATA ? "raw" : "json");
      g_assert_true (json_object_is_type (member (m, "fields"), json_type_object));
      g_assert_cmpuint (json_object_array_length (direction), >=, 1);
      for (gsize d = 0; d < json_object_array_length (direction); d++)
        {
          const gchar *dir = json_object_get_string (json_object_array_get_idx (direction, d));

          g_assert_true (g_str_equal (dir, "to-dhfd") || g_str_equal (dir, "from-dhfd"));
        }

      /* The id rule is the header parser's. */
      g_assert_true (g_str_equal (request_id, "nonzero") || g_str_equal (request_id, "any"));
      put_header (h, (guint8) number, default_flags ((guint) number), 0, 0);
      g_assert_cmpint (dhf_xdm_header_parse (h, &header, NULL), ==,
                       g_str_equal (request_id, "any"));
      put_header (h, (guint8) number, default_flags ((guint) number), 1, 0);
      g_assert_true (dhf_xdm_header_parse (h, &header, NULL));
    }
  json_object_put (defs);
}

static void
test_definitions_limits (void)
{
  json_object *defs = load_definitions ();
  json_object *limits = member (defs, "limits");
  json_object *frame = member (defs, "frame");
  json_object *header = member (frame, "header");
  json_object *versions = member (defs, "protocol_versions");
  json_object *transport = member (defs, "transport");

  g_assert_cmpint (int_member (limits, "max_body"), ==, DHF_XDM_MAX_BODY);
  g_assert_cmpint (int_member (limits, "max_depth"), ==, DHF_XDM_MAX_DEPTH);
  g_assert_cmpint (int_member (limits, "max_name"), ==, DHF_XDM_MAX_NAME);
  g_assert_cmpint (int_member (limits, "max_arg"), ==, DHF_XDM_MAX_ARG);
  g_assert_cmpint (int_member (limits, "max_domain"), ==, DHF_XDM_MAX_DOMAIN);
  g_assert_cmpint (int_member (limits, "max_message"), ==, DHF_XDM_MAX_MESSAGE);
  g_assert_cmpint (int_member (limits, "max_client"), ==, DHF_XDM_MAX_CLIENT);
  g_assert_cmpint (int_member (limits, "default_timeout_ms"), ==, DHF_XDM_DEFAULT_TIMEOUT_MS);
  g_assert_cmpint (int_member (limits, "max_timeout_ms"), ==, DHF_XDM_MAX_TIMEOUT_MS);
  g_assert_cmpint (int_member (limits, "max_window"), ==, DHF_XDM_MAX_WINDOW);
  g_assert_cmpint (int_member (frame, "header_size"), ==, DHF_XDM_HEADER_SIZE);
  g_assert_cmpint (int_member (member (frame, "flags"), "RAW"), ==, DHF_XDM_FLAG_RAW);
  g_assert_cmpstr (string_member (frame, "byte_order"), ==, "little-endian");
  g_assert_cmpuint (json_object_array_length (versions), ==, 1);
  g_assert_cmpint (json_object_get_int64 (json_object_array_get_idx (versions, 0)), ==,
                   DHF_XDM_PROTOCOL_VERSION);
  g_assert_cmpstr (string_member (transport, "channel_name"), ==, DHF_XDM_CHANNEL_NAME);
  g_assert_cmpint (int_member (transport, "vsock_port"), ==, DHF_XDM_VSOCK_PORT);
  g_assert_cmpstr (string_member (transport, "unix_socket"), ==, DHF_XDM_DEFAULT_SOCKET);

  /* The header layout: fields back to back over 16 bytes, as the
   * encoder writes them. */
  {
    g_autoptr (GByteArray) out = g_byte_array_new ();
    gint64 next = 0;

    dhf_xdm_append_raw (out, DHF_XDM_STREAM_DATA, 0x0a0b0c0d, (const guint8 *) "xyz", 3);
    for (gsize i = 0; i < json_object_array_length (header); i++)
      {
        json_object *field = json_object_array_get_idx (header, i);
        const gchar *name = string_member (field, "name");
        gint64 offset = int_member (field, "offset");
        gint64 size = int_member (field, "size");
        guint64 value = 0;

        g_assert_cmpint (offset, ==, next);
        next = offset + size;
        for (gint64 b = size - 1; b >= 0; b--)
          value = (value << 8) | out->data[offset + b];
        if (g_str_equal (name, "magic"))
          g_assert_cmpmem (out->data + offset, size, string_member (field, "value"), 2);
        else if (g_str_equal (name, "version"))
          g_assert_cmpuint (value, ==, (guint64) int_member (field, "value"));
        else if (g_str_equal (name, "type"))
          {
            g_assert_cmpuint (value, ==, DHF_XDM_STREAM_DATA);
            g_assert_cmpint (int_member (field, "max"), ==, DHF_XDM_N_TYPES - 1);
          }
        else if (g_str_equal (name, "flags"))
          g_assert_cmpuint (value, ==, DHF_XDM_FLAG_RAW);
        else if (g_str_equal (name, "reserved"))
          g_assert_cmpuint (value, ==, (guint64) int_member (field, "value"));
        else if (g_str_equal (name, "id"))
          g_assert_cmpuint (value, ==, 0x0a0b0c0d);
        else if (g_str_equal (name, "length"))
          {
            g_assert_cmpuint (value, ==, 3);
            g_assert_cmpint (int_member (field, "max"), ==, DHF_XDM_MAX_BODY);
          }
        else
          g_error ("unknown header field %s", name);
      }
    g_assert_cmpint (next, ==, DHF_XDM_HEADER_SIZE);
  }
  json_object_put (defs);
}

static void
test_definitions_errors (void)
{
  json_object *defs = load_definitions ();
  json_object *errors = member (defs, "errors");
  g_autoptr (GHashTable) listed = g_hash_table_new (g_str_hash, g_str_equal);

  for (gsize i = 0; i < json_object_array_length (errors); i++)
    {
      json_object *e = json_object_array_get_idx (errors, i);
      const gchar *code = string_member (e, "code");

      g_assert_true (g_hash_table_add (listed, (gpointer) code));
      g_assert_cmpstr (dhf_xdm_error_code_to_string (dhf_xdm_error_code_from_string (code)), ==,
                       code);
      g_assert_cmpuint (strlen (string_member (e, "meaning")), >, 0);
    }
  for (gint code = 0; code < DHF_ERROR_LAST; code++)
    if (!g_hash_table_contains (listed, dhf_xdm_error_code_to_string (code)))
      g_error ("xdm-messages.json does not list error code %s",
               dhf_xdm_error_code_to_string (code));
  g_assert_cmpuint (g_hash_table_size (listed), ==, DHF_ERROR_LAST);
  json_object_put (defs);
}

/* A body with every field of a definition at its example value. */
static json_object *
build_body (json_object *fields)
{
  json_object *body = json_object_new_object ();

  json_object_object_foreach (fields, key, def)
    {
      json_object *value;

      if (g_str_equal (string_member (def, "type"), "object"))
        value = build_body (member (def, "fields"));
      else
        {
          value = NULL;
          g_assert_cmpint (json_object_deep_copy (member (def, "example"), &value, NULL), ==, 0);
        }
      json_object_object_add (body, key, value);
    }
  return body;
}

static gboolean
parse_json (guint type, json_object *body, GError **error)
{
  g_autoptr (GByteArray) out = g_byte_array_new ();
  DhfXdmHeader header;
  DhfXdmMessage msg;
  gboolean ok;

  dhf_xdm_append_json (out, type, 1, body);
  g_assert_true (dhf_xdm_header_parse (out->data, &header, NULL));
  ok = dhf_xdm_message_parse (&header, out->data + DHF_XDM_HEADER_SIZE, &msg, error);
  dhf_xdm_message_clear (&msg);
  return ok;
}

typedef struct
{
  guint type;
  const gchar *name;
  DhfError code; /* of a refused body */
  json_object *root_fields;
} MessageDef;

/* The object of body that path (names, the last one excluded) leads to. */
static json_object *
container_of (json_object *body, GPtrArray *path)
{
  for (guint i = 0; i + 1 < path->len; i++)
    body = member (body, g_ptr_array_index (path, i));
  return body;
}

static gchar *
path_to_string (GPtrArray *path)
{
  GString *s = g_string_new (NULL);

  for (guint i = 0; i < path->len; i++)
    g_string_append_printf (s, "%s%s", i > 0 ? "." : "",
                            (const gchar *) g_ptr_array_index (path, i));
  return g_string_free (s, FALSE);
}

/* A value for try_value(): remove the field (NULL is JSON null). */
static gchar removed_marker;
#define REMOVED ((json_object *) &removed_marker)

/* Parses the message's full example body with the field at path set to
 * value; returns whether the codec took it. */
static gboolean
try_value (const MessageDef *m, GPtrArray *path, json_object *value, GError **error)
{
  json_object *body = build_body (m->root_fields);
  json_object *container = container_of (body, path);
  const gchar *key = g_ptr_array_index (path, path->len - 1);
  gboolean ok;

  if (value == REMOVED)
    json_object_object_del (container, key);
  else
    json_object_object_add (container, key, value);
  ok = parse_json (m->type, body, error);
  json_object_put (body);
  return ok;
}

static guint n_expectations;

static void
expect (const MessageDef *m, GPtrArray *path, json_object *value, gboolean accepted,
        const gchar *why)
{
  g_autoptr (GError) error = NULL;
  g_autofree gchar *where = path_to_string (path);
  g_autofree gchar *shown
      = value == REMOVED
            ? g_strdup ("(removed)")
            : g_strndup (json_object_to_json_string_ext (value, JSON_C_TO_STRING_PLAIN), 80);
  gboolean ok = try_value (m, path, value, &error);

  n_expectations++;
  if (ok != accepted)
    g_error ("%s.%s = %s (%s): the codec %s it%s%s", m->name, where, shown, why,
             ok ? "accepts" : "refuses", error != NULL ? ": " : "",
             error != NULL ? error->message : "");
  if (!ok)
    {
      const gchar *key = g_ptr_array_index (path, path->len - 1);
      g_autofree gchar *quoted = g_strdup_printf ("\"%s", key);

      g_assert_error (error, DHF_ERROR, (gint) m->code);
      /* The error names the field ("versions[0]" for an item). */
      assert_contains (error->message, quoted);
      assert_contains (error->message, m->name);
    }
}

/* ECMA-262 \uXXXX as PCRE's \x{XXXX}. */
static GRegex *
compile_pattern (const gchar *pattern)
{
  g_autoptr (GString) pcre = g_string_new (NULL);
  g_autoptr (GError) error = NULL;
  GRegex *regex;

  for (const gchar *p = pattern; *p != '\0'; p++)
    {
      if (p[0] == '\\' && p[1] == 'u')
        {
          g_string_append_printf (pcre, "\\x{%.4s}", p + 2);
          p += 5;
        }
      else if (p[0] == '\\' && p[1] != '\0')
        {
          g_string_append_len (pcre, p, 2);
          p++;
        }
      else
        g_string_append_c (pcre, *p);
    }
  regex = g_regex_new (pcre->str, G_REGEX_DOLLAR_ENDONLY, 0, &error);
  g_assert_no_error (error);
  return regex;
}

static const gchar *const string_samples[] = {
  "",
  "a",
  "a.b",
  "org.example.Sync1",
  "a..b",
  ".a.b",
  "a.b.",
  "1a.b",
  "a.1b",
  "a-b.c",
  "-a.b",
  "_a._b",
  "a.b-",
  "a.b9",
  "dom0",
  "x y",
  "é",
  "é.b",
  "a+b",
  "A.B",
  "a/b",
  "@dom0",
  "*",
  "not-authorized",
  "Not-found",
  "a-",
  "a1-2",
  "4dea22b3-1d52-d8f3-2516-782e98ab3fa0",
  "4DEA22B3-1D52-D8F3-2516-782E98AB3FA0",
  "4dea22b3-1d52-d8f3-2516-782e98ab3fa",
  "4dea22b31d52d8f32516782e98ab3fa00000",
  "4dea22b3-1d52-d8f3-2516-782e98ab3fag",
  "tab\there",
  "line\nbreak",
  "del\x7f",
  "bell\x07",
  "dhfctl 0.2 (é)",
};

static void
check_string_value (const MessageDef *m, GPtrArray *path, json_object *def, GRegex *regex,
                    gint64 max_length, const gchar *s, gsize len)
{
  gboolean matches = g_regex_match_full (regex, s, (gssize) len, 0, 0, NULL, NULL);
  gboolean fits = max_length < 0 || (gint64) len <= max_length;

  expect (m, path, json_object_new_string_len (s, (int) len), matches && fits,
          matches ? (fits ? "matches the pattern" : "over max_length")
                  : "does not match the pattern");
}

static void
check_string_field (const MessageDef *m, GPtrArray *path, json_object *def)
{
  gint64 max_length = has_member (def, "max_length") ? int_member (def, "max_length") : -1;
  g_autoptr (GRegex) regex = NULL;

  expect (m, path, json_object_new_int (1), FALSE, "an integer for a string");
  expect (m, path, json_object_new_array (), FALSE, "an array for a string");
  if (!has_member (def, "pattern"))
    return;
  regex = compile_pattern (string_member (def, "pattern"));
  for (gsize i = 0; i < G_N_ELEMENTS (string_samples); i++)
    check_string_value (m, path, def, regex, max_length, string_samples[i],
                        strlen (string_samples[i]));
  check_string_value (m, path, def, regex, max_length, "a.b\0c", 5);
  /* Both sides of the length limit, in shapes that fit every pattern. */
  if (max_length > 2)
    for (gint64 len = max_length - 1; len <= max_length + 1; len++)
      {
        g_autofree gchar *plain = g_strnfill ((gsize) len, 'x');
        g_autofree gchar *dotted = g_strnfill ((gsize) len, 'x');

        dotted[1] = '.';
        check_string_value (m, path, def, regex, max_length, plain, (gsize) len);
        check_string_value (m, path, def, regex, max_length, dotted, (gsize) len);
      }
}

static void
check_integer_field (const MessageDef *m, GPtrArray *path, json_object *def)
{
  gint64 min = int_member (def, "min");
  gint64 max = int_member (def, "max");

  expect (m, path, json_object_new_string ("1"), FALSE, "a string for an integer");
  expect (m, path, json_object_new_double (1.5), FALSE, "a fraction for an integer");
  expect (m, path, json_object_new_boolean (TRUE), FALSE, "a boolean for an integer");
  expect (m, path, json_object_new_int64 (min), TRUE, "min");
  expect (m, path, json_object_new_int64 (max), TRUE, "max");
  expect (m, path, json_object_new_int64 (min - 1), FALSE, "min - 1");
  expect (m, path, json_object_new_int64 (max + 1), FALSE, "max + 1");
  expect (m, path, json_object_new_int64 (G_MININT64), FALSE, "G_MININT64");
  expect (m, path, json_object_new_uint64 (G_MAXUINT64), FALSE, "G_MAXUINT64");
}

static void
check_array_field (const MessageDef *m, GPtrArray *path, json_object *def)
{
  gint64 min_items = int_member (def, "min_items");
  gint64 max_items = int_member (def, "max_items");
  json_object *items = member (def, "items");
  json_object *good = json_object_array_get_idx (member (def, "example"), 0);
  json_object *array;

  expect (m, path, json_object_new_object (), FALSE, "an object for an array");
  expect (m, path, json_object_new_string ("1"), FALSE, "a string for an array");
  for (gint64 n = min_items - 1; n <= max_items + 1; n++)
    {
      array = json_object_new_array ();
      for (gint64 i = 0; i < n; i++)
        json_object_array_add (array, json_object_get (good));
      expect (m, path, array, n >= min_items && n <= max_items, "item count");
    }
  g_assert_cmpstr (string_member (items, "type"), ==, "integer");
  array = json_object_new_array ();
  json_object_array_add (array, json_object_get (good));
  json_object_array_add (array, json_object_new_string ("1"));
  expect (m, path, array, FALSE, "a string item");
  array = json_object_new_array ();
  json_object_array_add (array, json_object_get (good));
  json_object_array_add (array, json_object_new_int64 (int_member (items, "min") - 1));
  expect (m, path, array, FALSE, "an item under min");
  array = json_object_new_array ();
  json_object_array_add (array, json_object_get (good));
  json_object_array_add (array, json_object_new_int64 (int_member (items, "max") + 1));
  expect (m, path, array, FALSE, "an item over max");
  array = json_object_new_array ();
  json_object_array_add (array, json_object_get (good));
  json_object_array_add (array, json_object_new_int64 (int_member (items, "max")));
  expect (m, path, array, TRUE, "an item at max");
}

static void
check_fields (const MessageDef *m, GPtrArray *path, json_object *fields)
{
  json_object_object_foreach (fields, key, def)
    {
      const gchar *type = string_member (def, "type");
      gboolean required = json_object_get_boolean (member (def, "required"));

      g_ptr_array_add (path, key);
      /* A required field missing is refused, with the field named; an
       * optional one may go. */
      expect (m, path, REMOVED, !required, required ? "required" : "optional");
      if (!g_str_equal (type, "any"))
        expect (m, path, json_object_new_null (), FALSE, "null");
      if (g_str_equal (type, "string"))
        check_string_field (m, path, def);
      else if (g_str_equal (type, "integer"))
        check_integer_field (m, path, def);
      else if (g_str_equal (type, "array"))
        check_array_field (m, path, def);
      else if (g_str_equal (type, "object"))
        {
          expect (m, path, json_object_new_array (), FALSE, "an array for an object");
          check_fields (m, path, member (def, "fields"));
        }
      else if (g_str_equal (type, "any"))
        {
          expect (m, path, json_object_new_null (), TRUE, "null");
          expect (m, path, json_object_new_string (""), TRUE, "a string");
          expect (m, path, json_object_new_int (-5), TRUE, "an integer");
          expect (m, path, json_object_new_array (), TRUE, "an array");
          expect (m, path, json_object_new_object (), TRUE, "an object");
        }
      else
        g_error ("%s.%s: unknown type %s", m->name, key, type);
      g_ptr_array_remove_index (path, path->len - 1);
    }
}

static gboolean
has_required (json_object *fields)
{
  json_object_object_foreach (fields, key, def)
    {
      (void) key;
      if (json_object_get_boolean (member (def, "required")))
        return TRUE;
    }
  return FALSE;
}

static void
test_definitions_fields (void)
{
  json_object *defs = load_definitions ();
  json_object *messages = member (defs, "messages");
  guint n_checked = 0;

  for (gsize i = 0; i < json_object_array_length (messages); i++)
    {
      json_object *def = json_object_array_get_idx (messages, i);
      const gchar *body_errors = string_member (def, "body_errors");
      MessageDef m
          = { (guint) int_member (def, "number"), string_member (def, "name"),
              g_str_equal (body_errors, "protocol") ? DHF_ERROR_PROTOCOL : DHF_ERROR_INVALID_ARGS,
              member (def, "fields") };
      g_autoptr (GPtrArray) path = g_ptr_array_new ();
      g_autoptr (GError) error = NULL;
      json_object *body;

      if (g_str_equal (string_member (def, "body"), "raw"))
        {
          g_assert_cmpstr (body_errors, ==, "none");
          continue;
        }
      /* Every field at its example value, then the required ones only. */
      body = build_body (m.root_fields);
      if (!parse_json (m.type, body, &error))
        g_error ("%s: the example body %s is refused: %s", m.name,
                 json_object_to_json_string (body), error->message);
      json_object_put (body);
      /* An empty body does for a type without required fields only. */
      body = json_object_new_object ();
      g_assert_cmpint (parse_json (m.type, body, NULL), ==, !has_required (m.root_fields));
      json_object_put (body);

      check_fields (&m, path, m.root_fields);
      n_checked++;
    }
  g_assert_cmpuint (n_checked, ==, DHF_XDM_N_TYPES - 2);
  g_test_message ("%u message types, %u field values checked against the codec", n_checked,
                  n_expectations);
  json_object_put (defs);
}

int
main (int argc, char **argv)
{
  g_test_init (&argc, &argv, NULL);
  g_test_add_func ("/xdm-codec/header/round-trip", test_header_round_trip);
  g_test_add_func ("/xdm-codec/header/bytes", test_header_bytes);
  g_test_add_func ("/xdm-codec/header/errors", test_header_errors);
  g_test_add_func ("/xdm-codec/header/rules", test_header_rules);
  g_test_add_func ("/xdm-codec/frame-scan/partial", test_frame_scan_partial);
  g_test_add_func ("/xdm-codec/frame-scan/errors", test_frame_scan_errors);
  g_test_add_func ("/xdm-codec/message/hello-welcome", test_message_hello_welcome);
  g_test_add_func ("/xdm-codec/message/requests", test_message_requests);
  g_test_add_func ("/xdm-codec/message/answers", test_message_answers);
  g_test_add_func ("/xdm-codec/message/topics-streams", test_message_topics_streams);
  g_test_add_func ("/xdm-codec/message/bad-fields", test_message_bad_fields);
  g_test_add_func ("/xdm-codec/message/session-errors", test_message_session_errors);
  g_test_add_func ("/xdm-codec/json/depth", test_json_depth);
  g_test_add_func ("/xdm-codec/json/utf8", test_json_utf8);
  g_test_add_func ("/xdm-codec/json/syntax", test_json_syntax);
  g_test_add_func ("/xdm-codec/json/quoting", test_json_quoting);
  g_test_add_func ("/xdm-codec/json/tokener-reuse", test_json_tokener_reuse);
  g_test_add_func ("/xdm-codec/encode/parse-back", test_encode_parse);
  g_test_add_func ("/xdm-codec/encode/limits", test_encode_limits);
  g_test_add_func ("/xdm-codec/encode/oversize-aborts", test_encode_oversize_aborts);
  g_test_add_func ("/xdm-codec/encode/error", test_encode_error);
  g_test_add_func ("/xdm-codec/errors/codes", test_error_codes);
  g_test_add_func ("/xdm-codec/errors/to-gerror", test_message_to_error);
  g_test_add_func ("/xdm-codec/names/split-service", test_split_service);
  g_test_add_func ("/xdm-codec/names/validators", test_validators);
  g_test_add_func ("/xdm-codec/definitions/types", test_definitions_types);
  g_test_add_func ("/xdm-codec/definitions/limits", test_definitions_limits);
  g_test_add_func ("/xdm-codec/definitions/errors", test_definitions_errors);
  g_test_add_func ("/xdm-codec/definitions/fields", test_definitions_fields);
  return g_test_run ();
}
