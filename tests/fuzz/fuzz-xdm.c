/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include "config.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <dhf/dhf.h>

#include "dhf-xdm-codec.h"

/* libFuzzer target: the XDM wire codec as a connection drives it.
 *
 * An input starting with "DX" is a byte stream from a peer: it arrives in
 * chunks, and frames are cut with dhf_xdm_frame_scan(), their headers and
 * bodies decoded, until the stream ends or a header error drops the
 * connection. Any other input is one body: its first byte is the message
 * type, the rest the body, under a header made to fit (so that the JSON
 * validation is reached without a matching length field).
 *
 * Every accepted message must survive a round trip (encode its body,
 * frame, scan, parse again: the same message, the same bytes), and every
 * refused one must come with an error that itself encodes to a valid
 * ERROR frame. */

int LLVMFuzzerTestOneInput (const uint8_t *data, size_t size);

/* abort(), which libFuzzer catches and saves a reproducer for; g_error()
 * raises SIGTRAP, which it does not. */
static void fail (const gchar *format, ...) G_GNUC_PRINTF (1, 2) G_GNUC_NORETURN;

static void
fail (const gchar *format, ...)
{
  g_autofree gchar *text = NULL;
  va_list args;

  va_start (args, format);
  text = g_strdup_vprintf (format, args);
  va_end (args);
  g_printerr ("fuzz-xdm: %s\n", text);
  abort ();
}

/* What a receiver answers (any text, even invalid UTF-8 or too long) must
 * parse at the other end, with its code. */
static void
check_error_frame (DhfError code, const gchar *message)
{
  g_autoptr (GByteArray) out = g_byte_array_new ();
  DhfXdmHeader header;
  DhfXdmMessage msg;
  g_autoptr (GError) again = NULL;
  g_autoptr (GError) converted = NULL;

  dhf_xdm_append_error (out, 1, code, message);
  if (dhf_xdm_frame_scan (out->data, out->len, &header, &again) != (gssize) out->len)
    fail ("ERROR frame does not scan: %s", again != NULL ? again->message : "incomplete");
  if (!dhf_xdm_message_parse (&header, out->data + DHF_XDM_HEADER_SIZE, &msg, &again))
    fail ("ERROR frame for \"%s\" does not parse: %s", message, again->message);
  converted = dhf_xdm_message_to_error (&msg);
  if (converted == NULL
      || converted->code != ((guint) code < DHF_ERROR_LAST ? (gint) code : DHF_ERROR_FAILED)
      || strlen (msg.message) > DHF_XDM_MAX_MESSAGE)
    abort ();
  /* Valid text arrives whole, or cut at a character boundary. */
  if (g_utf8_validate (message, -1, NULL)
      && (strncmp (msg.message, message, strlen (msg.message)) != 0
          || (strlen (message) <= DHF_XDM_MAX_MESSAGE && strcmp (msg.message, message) != 0)))
    fail ("ERROR frame changed \"%s\" into \"%s\"", message, msg.message);
  dhf_xdm_message_clear (&msg);
}

static void
check_error (const GError *error, guint type)
{
  gboolean session = type == DHF_XDM_HELLO || type == DHF_XDM_WELCOME;

  if (error == NULL || error->domain != DHF_ERROR || error->message[0] == '\0'
      || !g_utf8_validate (error->message, -1, NULL))
    abort ();
  if (error->code != (session ? DHF_ERROR_PROTOCOL : DHF_ERROR_INVALID_ARGS))
    fail ("%s refused with code %d: %s", dhf_xdm_type_to_string (type), error->code,
          error->message);
  if (strstr (error->message, dhf_xdm_type_to_string (type)) == NULL)
    fail ("the error does not name the type: %s", error->message);
  check_error_frame ((DhfError) error->code, error->message);
}

static void
assert_same_string (const gchar *a, const gchar *b, const gchar *what)
{
  if (g_strcmp0 (a, b) != 0)
    fail ("round trip changed %s: %s -> %s", what, a, b);
}

/* Encodes msg again, parses the result, and compares. */
static void
check_round_trip (const DhfXdmMessage *msg)
{
  g_autoptr (GByteArray) out = g_byte_array_new ();
  g_autoptr (GError) error = NULL;
  DhfXdmHeader header;
  DhfXdmMessage again;

  if (msg->type == DHF_XDM_STREAM_DATA)
    dhf_xdm_append_raw (out, msg->type, msg->id, msg->raw, msg->raw_length);
  else if (!dhf_xdm_append_json_checked (out, msg->type, msg->id, msg->body, &error))
    fail ("a parsed body does not encode: %s", error->message);

  if (dhf_xdm_frame_scan (out->data, out->len, &header, &error) != (gssize) out->len)
    fail ("an encoded frame does not scan: %s", error != NULL ? error->message : "short");
  if (!dhf_xdm_message_parse (&header, out->data + DHF_XDM_HEADER_SIZE, &again, &error))
    fail ("a re-encoded %s does not parse: %s", dhf_xdm_type_to_string (msg->type), error->message);

  if (again.type != msg->type || again.id != msg->id)
    abort ();
  if (msg->type == DHF_XDM_STREAM_DATA)
    {
      if (again.raw_length != msg->raw_length
          || (msg->raw_length > 0 && memcmp (again.raw, msg->raw, msg->raw_length) != 0))
        abort ();
    }
  else
    {
      size_t len1, len2;
      const gchar *text1
          = json_object_to_json_string_length (msg->body, JSON_C_TO_STRING_PLAIN, &len1);
      g_autofree gchar *copy = g_strndup (text1, len1);
      const gchar *text2
          = json_object_to_json_string_length (again.body, JSON_C_TO_STRING_PLAIN, &len2);

      if (len1 != len2 || memcmp (copy, text2, len1) != 0)
        fail ("serialisation is not stable:\n%s\n%s", copy, text2);
      if (!json_object_equal (msg->body, again.body))
        fail ("round trip changed the body: %s", copy);
    }
  assert_same_string (msg->service, again.service, "service");
  assert_same_string (msg->arg, again.arg, "arg");
  assert_same_string (msg->target, again.target, "target");
  assert_same_string (msg->source, again.source, "source");
  assert_same_string (msg->topic, again.topic, "topic");
  assert_same_string (msg->code, again.code, "code");
  assert_same_string (msg->message, again.message, "message");
  assert_same_string (msg->client, again.client, "client");
  assert_same_string (msg->domain, again.domain, "domain");
  assert_same_string (msg->uuid, again.uuid, "uuid");
  if (msg->timeout_ms != again.timeout_ms || msg->window != again.window
      || msg->bytes != again.bytes || msg->version != again.version
      || msg->delivered != again.delivered)
    abort ();
  if ((msg->value == NULL) != (again.value == NULL))
    abort ();
  dhf_xdm_message_clear (&again);
}

/* What every accepted message promises its users. */
static void
check_fields (const DhfXdmMessage *msg)
{
  if (msg->service != NULL && !dhf_xdm_name_is_valid (msg->service))
    abort ();
  if (msg->topic != NULL && !dhf_xdm_name_is_valid (msg->topic))
    abort ();
  if (msg->arg != NULL && !dhf_xdm_arg_is_valid (msg->arg))
    abort ();
  if ((msg->target != NULL && !dhf_xdm_domain_is_valid (msg->target))
      || (msg->source != NULL && !dhf_xdm_domain_is_valid (msg->source))
      || (msg->domain != NULL && !dhf_xdm_domain_is_valid (msg->domain)))
    abort ();
  if (msg->message != NULL && strlen (msg->message) > DHF_XDM_MAX_MESSAGE)
    abort ();
  if (msg->type == DHF_XDM_CALL
      && (msg->timeout_ms < 1 || msg->timeout_ms > DHF_XDM_MAX_TIMEOUT_MS))
    abort ();
  if (msg->type == DHF_XDM_STREAM_CREDIT && (msg->bytes < 1 || msg->bytes > DHF_XDM_MAX_WINDOW))
    abort ();
  if ((msg->type == DHF_XDM_HELLO || msg->type == DHF_XDM_WELCOME)
      && msg->version != DHF_XDM_PROTOCOL_VERSION)
    abort ();
  if (msg->type == DHF_XDM_ERROR && msg->code == NULL)
    abort ();
  if (msg->type == DHF_XDM_ERROR || (msg->type == DHF_XDM_STREAM_CLOSE && msg->code != NULL))
    {
      g_autoptr (GError) error = dhf_xdm_message_to_error (msg);

      if (error == NULL || error->domain != DHF_ERROR)
        abort ();
    }
}

static void
handle_frame (const DhfXdmHeader *header, const guint8 *body)
{
  g_autoptr (GError) error = NULL;
  DhfXdmMessage msg;

  if (!dhf_xdm_message_parse (header, body, &msg, &error))
    {
      if (msg.body != NULL || msg.type != 0)
        abort ();
      check_error (error, header->type);
      return;
    }
  if (error != NULL || msg.type != header->type || msg.id != header->id)
    abort ();
  if ((msg.body == NULL) != (msg.type == DHF_XDM_STREAM_DATA))
    abort ();
  check_fields (&msg);
  check_round_trip (&msg);
  dhf_xdm_message_clear (&msg);
}

static void
run_stream (const uint8_t *data, size_t size)
{
  g_autoptr (GByteArray) buf = g_byte_array_new ();
  gsize chunk = 1 + size % 23;

  for (gsize offset = 0; offset < size; offset += chunk)
    {
      g_byte_array_append (buf, data + offset, (guint) MIN (chunk, size - offset));
      for (;;)
        {
          g_autoptr (GError) error = NULL;
          DhfXdmHeader header;
          gssize n = dhf_xdm_frame_scan (buf->data, buf->len, &header, &error);

          if (n < 0)
            {
              /* The connection is dropped after ERROR(0, protocol). */
              if (error == NULL || !g_error_matches (error, DHF_ERROR, DHF_ERROR_PROTOCOL)
                  || dhf_xdm_header_parse (buf->data, &header, NULL))
                abort ();
              return;
            }
          if (error != NULL)
            abort ();
          if (n == 0)
            {
              if (buf->len >= DHF_XDM_HEADER_SIZE
                  && (!dhf_xdm_header_parse (buf->data, &header, NULL)
                      || buf->len >= DHF_XDM_HEADER_SIZE + (gsize) header.length))
                abort ();
              break;
            }
          if ((gsize) n != DHF_XDM_HEADER_SIZE + header.length || (gsize) n > buf->len)
            abort ();
          handle_frame (&header, buf->data + DHF_XDM_HEADER_SIZE);
          g_byte_array_remove_range (buf, 0, (guint) n);
        }
    }
}

static void
run_body (const uint8_t *data, size_t size)
{
  guint type = data[0] % (DHF_XDM_N_TYPES - 1) + 1;
  DhfXdmHeader header
      = { DHF_XDM_FRAME_VERSION, (guint8) type, type == DHF_XDM_STREAM_DATA ? DHF_XDM_FLAG_RAW : 0,
          1, (guint32) (size - 1) };
  g_autofree gchar *text = g_strndup ((const gchar *) data + 1, MIN (size - 1, 4096));
  g_autofree gchar *service = NULL;
  g_autofree gchar *arg = NULL;

  if (size - 1 > DHF_XDM_MAX_BODY)
    return;
  handle_frame (&header, size > 1 ? data + 1 : NULL);

  /* The same bytes as a "SERVICE+ARG" text and as an error message. */
  if (dhf_xdm_split_service (text, &service, &arg, NULL)
      && (!dhf_xdm_name_is_valid (service) || (arg != NULL && !dhf_xdm_arg_is_valid (arg))))
    abort ();
  check_error_frame ((DhfError) (data[0] % (DHF_ERROR_LAST + 1)), text);
}

int
LLVMFuzzerTestOneInput (const uint8_t *data, size_t size)
{
  if (size >= 2 && data[0] == 'D' && data[1] == 'X')
    run_stream (data, size);
  else if (size >= 1)
    run_body (data, size);
  return 0;
}
