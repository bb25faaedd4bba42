/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include "config.h"

#include <string.h>

#include <dhf/dhf-enum-types.h>

#include "dhf-xdm-codec.h"

/* The XDM wire codec (protos/xdm.md). dhfd runs every frame of every
 * connection through here, so the parser does one validating pass over the
 * body text, one json-c parse with a per-thread tokener, and then only
 * borrows from the parsed object: no allocation of its own. */

#define SERIALIZE_FLAGS (JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE)
/* HELLO may list this many versions. */
#define MAX_VERSIONS 16
/* Error codes are GEnum nicks: [a-z][a-z0-9-]*, this long at most. */
#define MAX_CODE 64
/* Bytes of a bad value quoted in an error message. */
#define MAX_QUOTE 64

static const gchar *const type_names[DHF_XDM_N_TYPES] = {
  [DHF_XDM_HELLO] = "HELLO",
  [DHF_XDM_WELCOME] = "WELCOME",
  [DHF_XDM_REGISTER] = "REGISTER",
  [DHF_XDM_UNREGISTER] = "UNREGISTER",
  [DHF_XDM_CALL] = "CALL",
  [DHF_XDM_REPLY] = "REPLY",
  [DHF_XDM_ERROR] = "ERROR",
  [DHF_XDM_CANCEL] = "CANCEL",
  [DHF_XDM_SUBSCRIBE] = "SUBSCRIBE",
  [DHF_XDM_UNSUBSCRIBE] = "UNSUBSCRIBE",
  [DHF_XDM_PUBLISH] = "PUBLISH",
  [DHF_XDM_EVENT] = "EVENT",
  [DHF_XDM_STREAM_OPEN] = "STREAM_OPEN",
  [DHF_XDM_STREAM_DATA] = "STREAM_DATA",
  [DHF_XDM_STREAM_CREDIT] = "STREAM_CREDIT",
  [DHF_XDM_STREAM_CLOSE] = "STREAM_CLOSE",
  [DHF_XDM_PING] = "PING",
  [DHF_XDM_PONG] = "PONG",
};

const gchar *
dhf_xdm_type_to_string (guint type)
{
  if (type >= DHF_XDM_N_TYPES)
    return NULL;
  return type_names[type];
}

/* Requests are answered by id, and a stream is known by the id of its
 * OPEN, so these types are meaningless without one. ERROR with id 0 is the
 * connection-level error; PUBLISH with id 0 asks for no REPLY. */
static gboolean
type_needs_id (guint type)
{
  switch (type)
    {
      case DHF_XDM_REGISTER:
      case DHF_XDM_UNREGISTER:
      case DHF_XDM_CALL:
      case DHF_XDM_REPLY:
      case DHF_XDM_CANCEL:
      case DHF_XDM_SUBSCRIBE:
      case DHF_XDM_UNSUBSCRIBE:
      case DHF_XDM_STREAM_OPEN:
      case DHF_XDM_STREAM_DATA:
      case DHF_XDM_STREAM_CREDIT:
      case DHF_XDM_STREAM_CLOSE:
        return TRUE;
      default:
        return FALSE;
    }
}

static inline guint16
read_le16 (const guint8 *p)
{
  return (guint16) (p[0] | (p[1] << 8));
}

static inline guint32
read_le32 (const guint8 *p)
{
  return (guint32) p[0] | ((guint32) p[1] << 8) | ((guint32) p[2] << 16) | ((guint32) p[3] << 24);
}

static inline void
write_le16 (guint8 *p, guint16 v)
{
  p[0] = v & 0xff;
  p[1] = v >> 8;
}

static inline void
write_le32 (guint8 *p, guint32 v)
{
  p[0] = v & 0xff;
  p[1] = (v >> 8) & 0xff;
  p[2] = (v >> 16) & 0xff;
  p[3] = v >> 24;
}

gboolean
dhf_xdm_header_parse (const guint8 *data, DhfXdmHeader *header, GError **error)
{
  guint type = data[3];
  guint16 flags = read_le16 (data + 4);
  guint16 reserved = read_le16 (data + 6);
  guint32 id = read_le32 (data + 8);
  guint32 length = read_le32 (data + 12);
  const gchar *name;

  if (data[0] != 'D' || data[1] != 'X')
    {
      g_set_error (error, DHF_ERROR, DHF_ERROR_PROTOCOL,
                   "bad frame magic 0x%02x 0x%02x (expected \"DX\")", data[0], data[1]);
      return FALSE;
    }
  if (data[2] != DHF_XDM_FRAME_VERSION)
    {
      g_set_error (error, DHF_ERROR, DHF_ERROR_PROTOCOL,
                   "unsupported frame version %u (this side speaks %u)", data[2],
                   DHF_XDM_FRAME_VERSION);
      return FALSE;
    }
  name = dhf_xdm_type_to_string (type);
  if (name == NULL)
    {
      g_set_error (error, DHF_ERROR, DHF_ERROR_PROTOCOL, "unknown message type %u", type);
      return FALSE;
    }
  if ((flags & ~DHF_XDM_FLAG_RAW) != 0)
    {
      g_set_error (error, DHF_ERROR, DHF_ERROR_PROTOCOL, "unknown flag bits 0x%04x in a %s frame",
                   flags & ~DHF_XDM_FLAG_RAW, name);
      return FALSE;
    }
  if ((type == DHF_XDM_STREAM_DATA) != ((flags & DHF_XDM_FLAG_RAW) != 0))
    {
      g_set_error (error, DHF_ERROR, DHF_ERROR_PROTOCOL,
                   type == DHF_XDM_STREAM_DATA
                       ? "a %s frame must have flag RAW set"
                       : "a %s frame has a JSON body: flag RAW must be clear",
                   name);
      return FALSE;
    }
  if (reserved != 0)
    {
      g_set_error (error, DHF_ERROR, DHF_ERROR_PROTOCOL,
                   "reserved header bytes of a %s frame are 0x%04x, not 0", name, reserved);
      return FALSE;
    }
  if (length > DHF_XDM_MAX_BODY)
    {
      g_set_error (error, DHF_ERROR, DHF_ERROR_PROTOCOL,
                   "%s body of %" G_GUINT32_FORMAT " bytes is over the limit of %u bytes", name,
                   length, DHF_XDM_MAX_BODY);
      return FALSE;
    }
  if (id == 0 && type_needs_id (type))
    {
      g_set_error (error, DHF_ERROR, DHF_ERROR_PROTOCOL, "a %s frame needs a request id (not 0)",
                   name);
      return FALSE;
    }

  header->version = data[2];
  header->type = (guint8) type;
  header->flags = flags;
  header->id = id;
  header->length = length;
  return TRUE;
}

gssize
dhf_xdm_frame_scan (const guint8 *buf, gsize len, DhfXdmHeader *header, GError **error)
{
  DhfXdmHeader local;

  if (header == NULL)
    header = &local;
  if (len < DHF_XDM_HEADER_SIZE)
    return 0;
  if (!dhf_xdm_header_parse (buf, header, error))
    return -1;
  if (len - DHF_XDM_HEADER_SIZE < header->length)
    return 0;
  return (gssize) (DHF_XDM_HEADER_SIZE + header->length);
}

/* ---- Checks of names ---- */

static gboolean
name_is_valid_len (const gchar *s, gsize len)
{
  guint elements = 0;
  gsize start = 0;

  if (len == 0 || len > DHF_XDM_MAX_NAME)
    return FALSE;
  for (gsize i = 0; i <= len; i++)
    {
      if (i < len && s[i] != '.')
        {
          gboolean first = i == start;

          if (!(g_ascii_isalpha (s[i]) || s[i] == '_'
                || (!first && (g_ascii_isdigit (s[i]) || s[i] == '-'))))
            return FALSE;
          continue;
        }
      if (i == start)
        return FALSE;
      elements++;
      start = i + 1;
    }
  return elements >= 2;
}

static gboolean
chars_are (const gchar *s, gsize len, const gchar *extra)
{
  for (gsize i = 0; i < len; i++)
    if (!g_ascii_isalnum (s[i]) && (s[i] == '\0' || strchr (extra, s[i]) == NULL))
      return FALSE;
  return TRUE;
}

gboolean
dhf_xdm_name_is_valid (const gchar *name)
{
  return name != NULL && name_is_valid_len (name, strlen (name));
}

gboolean
dhf_xdm_arg_is_valid (const gchar *arg)
{
  gsize len;

  if (arg == NULL)
    return FALSE;
  len = strlen (arg);
  return len <= DHF_XDM_MAX_ARG && chars_are (arg, len, "._-");
}

gboolean
dhf_xdm_domain_is_valid (const gchar *domain)
{
  gsize len;

  if (domain == NULL)
    return FALSE;
  len = strlen (domain);
  return len >= 1 && len <= DHF_XDM_MAX_DOMAIN && chars_are (domain, len, "._-");
}

static gboolean
code_is_valid (const gchar *code, gsize len)
{
  if (len == 0 || len > MAX_CODE || !g_ascii_islower (code[0]))
    return FALSE;
  for (gsize i = 1; i < len; i++)
    if (!g_ascii_islower (code[i]) && !g_ascii_isdigit (code[i]) && code[i] != '-')
      return FALSE;
  return TRUE;
}

#define NAME_GRAMMAR                                                                               \
  "a reverse-DNS name of two or more elements [A-Za-z_][A-Za-z0-9_-]* such as "                    \
  "org.example.Sync1, at most 255 bytes"
#define ARG_GRAMMAR    "at most 64 letters, digits, '.', '_' or '-'"
#define DOMAIN_GRAMMAR "1 to 64 letters, digits, '.', '_' or '-'"

gboolean
dhf_xdm_split_service (const gchar *text, gchar **service, gchar **arg, GError **error)
{
  const gchar *plus;
  gsize service_len;

  g_return_val_if_fail (text != NULL, FALSE);

  plus = strchr (text, '+');
  service_len = plus != NULL ? (gsize) (plus - text) : strlen (text);
  if (!name_is_valid_len (text, service_len))
    {
      g_set_error (error, DHF_ERROR, DHF_ERROR_INVALID_ARGS,
                   "invalid service name \"%.*s\" (expected " NAME_GRAMMAR ")", (int) service_len,
                   text);
      return FALSE;
    }
  if (plus != NULL && !dhf_xdm_arg_is_valid (plus + 1))
    {
      g_set_error (error, DHF_ERROR, DHF_ERROR_INVALID_ARGS,
                   "invalid argument \"%s\" of %.*s (expected " ARG_GRAMMAR ")", plus + 1,
                   (int) service_len, text);
      return FALSE;
    }
  if (service != NULL)
    *service = g_strndup (text, service_len);
  if (arg != NULL)
    *arg = plus != NULL ? g_strdup (plus + 1) : NULL;
  return TRUE;
}

/* ---- The body text ---- */

/* Bytes that may appear outside strings in JSON: whitespace, structure,
 * numbers and the letters of true, false and null. Everything else there
 * (NaN, Infinity, single quotes, comments, NUL) is refused before json-c,
 * which accepts some of it even in strict mode, ever sees it. */
static const guint8 json_outside[256] = {
  [' '] = 1, ['\t'] = 1, ['\n'] = 1, ['\r'] = 1, ['{'] = 1, ['}'] = 1, ['['] = 1,
  [']'] = 1, [','] = 1,  [':'] = 1,  ['"'] = 1,  ['0'] = 1, ['1'] = 1, ['2'] = 1,
  ['3'] = 1, ['4'] = 1,  ['5'] = 1,  ['6'] = 1,  ['7'] = 1, ['8'] = 1, ['9'] = 1,
  ['-'] = 1, ['+'] = 1,  ['.'] = 1,  ['e'] = 1,  ['E'] = 1, ['t'] = 1, ['r'] = 1,
  ['u'] = 1, ['f'] = 1,  ['a'] = 1,  ['l'] = 1,  ['s'] = 1, ['n'] = 1,
};

/* The length of the well-formed UTF-8 sequence of two to four bytes at p
 * (no overlong forms, surrogates or code points over U+10FFFF), or 0. */
static gsize
utf8_sequence (const guint8 *p, gsize avail)
{
  guint8 c = p[0];
  guint8 lo = 0x80, hi = 0xbf;
  gsize len;

  if (c >= 0xc2 && c <= 0xdf)
    len = 2;
  else if (c >= 0xe0 && c <= 0xef)
    {
      len = 3;
      if (c == 0xe0)
        lo = 0xa0;
      else if (c == 0xed)
        hi = 0x9f;
    }
  else if (c >= 0xf0 && c <= 0xf4)
    {
      len = 4;
      if (c == 0xf0)
        lo = 0x90;
      else if (c == 0xf4)
        hi = 0x8f;
    }
  else
    return 0;
  if (avail < len || p[1] < lo || p[1] > hi)
    return 0;
  for (gsize i = 2; i < len; i++)
    if ((p[i] & 0xc0) != 0x80)
      return 0;
  return len;
}

/* One pass over the body: UTF-8, no raw control characters in strings,
 * nothing but JSON outside them, an object at the top, at most
 * DHF_XDM_MAX_DEPTH objects and arrays deep (the top-level object is level
 * 1; json-c's own depth counts the scalars too, and is only a backstop). */
static gboolean
check_json_text (const guint8 *p, gsize n, const gchar *type_name, GError **error)
{
  gboolean in_string = FALSE;
  guint depth = 0;
  gsize i = 0;

  while (i < n && (p[i] == ' ' || p[i] == '\t' || p[i] == '\n' || p[i] == '\r'))
    i++;
  if (i == n || p[i] != '{')
    {
      g_set_error (error, DHF_ERROR, DHF_ERROR_INVALID_ARGS, "%s body is not a JSON object",
                   type_name);
      return FALSE;
    }
  while (i < n)
    {
      guint8 c;

      /* Most of a body is plain ASCII in strings: skip it in a tight loop. */
      if (in_string)
        while (i < n && p[i] >= 0x20 && p[i] < 0x80 && p[i] != '"' && p[i] != '\\')
          i++;
      if (i == n)
        break;
      c = p[i];
      if (c >= 0x80)
        {
          gsize len = in_string ? utf8_sequence (p + i, n - i) : 0;

          if (len == 0)
            {
              if (in_string)
                g_set_error (error, DHF_ERROR, DHF_ERROR_INVALID_ARGS,
                             "%s body: invalid UTF-8 at byte %" G_GSIZE_FORMAT, type_name, i);
              else
                g_set_error (error, DHF_ERROR, DHF_ERROR_INVALID_ARGS,
                             "%s body: unexpected byte 0x%02x at byte %" G_GSIZE_FORMAT, type_name,
                             c, i);
              return FALSE;
            }
          i += len;
          continue;
        }
      if (in_string)
        {
          if (c < 0x20)
            {
              g_set_error (error, DHF_ERROR, DHF_ERROR_INVALID_ARGS,
                           "%s body: control character 0x%02x in a string at byte %" G_GSIZE_FORMAT
                           " (it must be escaped)",
                           type_name, c, i);
              return FALSE;
            }
          if (c == '"')
            in_string = FALSE;
          else if (c == '\\')
            {
              /* json-c checks the escape itself; skip it so that \" does
               * not end the string here. */
              if (i + 1 < n && p[i + 1] >= 0x20 && p[i + 1] < 0x80)
                i++;
            }
          i++;
          continue;
        }
      if (!json_outside[c])
        {
          if (g_ascii_isprint (c))
            g_set_error (error, DHF_ERROR, DHF_ERROR_INVALID_ARGS,
                         "%s body: unexpected character '%c' at byte %" G_GSIZE_FORMAT, type_name,
                         c, i);
          else
            g_set_error (error, DHF_ERROR, DHF_ERROR_INVALID_ARGS,
                         "%s body: unexpected byte 0x%02x at byte %" G_GSIZE_FORMAT, type_name, c,
                         i);
          return FALSE;
        }
      if (c == '"')
        in_string = TRUE;
      else if (c == '{' || c == '[')
        {
          if (++depth > DHF_XDM_MAX_DEPTH)
            {
              g_set_error (error, DHF_ERROR, DHF_ERROR_INVALID_ARGS,
                           "%s body: JSON nested deeper than %d levels", type_name,
                           DHF_XDM_MAX_DEPTH);
              return FALSE;
            }
        }
      else if ((c == '}' || c == ']') && depth > 0)
        depth--;
      i++;
    }
  return TRUE;
}

static void
tokener_free (gpointer data)
{
  json_tokener_free (data);
}

/* One tokener per thread, reused: it keeps its parse stack and buffer. */
static GPrivate tokener_key = G_PRIVATE_INIT (tokener_free);

static json_tokener *
get_tokener (void)
{
  json_tokener *tok = g_private_get (&tokener_key);

  if (tok == NULL)
    {
      tok = json_tokener_new_ex (DHF_XDM_MAX_DEPTH + 1);
      if (tok == NULL)
        g_error ("out of memory for a JSON tokener");
      json_tokener_set_flags (tok, JSON_TOKENER_STRICT);
      g_private_set (&tokener_key, tok);
    }
  return tok;
}

static json_object *
parse_json_body (const guint8 *body, gsize length, const gchar *type_name, GError **error)
{
  json_tokener *tok;
  json_object *obj;
  enum json_tokener_error jerr;
  gsize end;

  if (length == 0)
    return json_object_new_object ();
  if (!check_json_text (body, length, type_name, error))
    return NULL;

  tok = get_tokener ();
  obj = json_tokener_parse_ex (tok, (const char *) body, (int) length);
  jerr = json_tokener_get_error (tok);
  end = json_tokener_get_parse_end (tok);
  json_tokener_reset (tok);
  if (obj == NULL)
    {
      /* json-c 0.16's reset keeps a pending high surrogate of a body cut
       * in the middle of "\ud800\u...", which would then turn up as
       * U+FFFD in the next body parsed on this thread: failures get a
       * fresh tokener. */
      g_private_replace (&tokener_key, NULL);
      if (jerr == json_tokener_continue)
        g_set_error (error, DHF_ERROR, DHF_ERROR_INVALID_ARGS,
                     "%s body: the JSON object is not complete", type_name);
      else if (jerr == json_tokener_error_depth)
        g_set_error (error, DHF_ERROR, DHF_ERROR_INVALID_ARGS,
                     "%s body: JSON nested deeper than %d levels", type_name, DHF_XDM_MAX_DEPTH);
      else
        g_set_error (error, DHF_ERROR, DHF_ERROR_INVALID_ARGS,
                     "%s body: invalid JSON at byte %" G_GSIZE_FORMAT ": %s", type_name, end,
                     json_tokener_error_desc (jerr));
      return NULL;
    }
  if (end != length)
    {
      g_set_error (error, DHF_ERROR, DHF_ERROR_INVALID_ARGS,
                   "%s body: unexpected data after the JSON object at byte %" G_GSIZE_FORMAT,
                   type_name, end);
      json_object_put (obj);
      return NULL;
    }
  if (!json_object_is_type (obj, json_type_object))
    {
      g_set_error (error, DHF_ERROR, DHF_ERROR_INVALID_ARGS, "%s body is not a JSON object",
                   type_name);
      json_object_put (obj);
      return NULL;
    }
  return obj;
}

/* ---- Fields ---- */

typedef struct
{
  const gchar *type_name;
  json_object *body;
  DhfError code; /* what a bad field is: INVALID_ARGS, PROTOCOL for the session */
  GError **error;
} Fields;

static void field_error (Fields *f, const gchar *key, const gchar *format, ...)
    G_GNUC_PRINTF (3, 4);

static void
field_error (Fields *f, const gchar *key, const gchar *format, ...)
{
  g_autofree gchar *what = NULL;
  va_list args;

  va_start (args, format);
  what = g_strdup_vprintf (format, args);
  va_end (args);
  g_set_error (f->error, DHF_ERROR, f->code, "%s: \"%s\" %s", f->type_name, key, what);
}

/* A bad value for an error message: at most MAX_QUOTE bytes, cut at a
 * character boundary, control characters shown as '?'. */
static gchar *
quote_value (const gchar *s, gsize len)
{
  GString *out = g_string_sized_new (MAX_QUOTE + 8);
  gsize cut = len;

  if (cut > MAX_QUOTE)
    {
      cut = MAX_QUOTE;
      while (cut > 0 && ((guint8) s[cut] & 0xc0) == 0x80)
        cut--;
    }
  g_string_append_c (out, '"');
  for (gsize i = 0; i < cut; i++)
    g_string_append_c (out, (guint8) s[i] < 0x20 || s[i] == 0x7f ? '?' : s[i]);
  g_string_append (out, cut < len ? "\"..." : "\"");
  return g_string_free (out, FALSE);
}

static const gchar *
json_type_article_name (json_object *value)
{
  switch (json_object_get_type (value))
    {
      case json_type_null:
        return "null";
      case json_type_boolean:
        return "a boolean";
      case json_type_double:
        return "a fractional number";
      case json_type_int:
        return "an integer";
      case json_type_object:
        return "an object";
      case json_type_array:
        return "an array";
      case json_type_string:
        return "a string";
      default:
        return "something else";
    }
}

/* The member key of the type wanted. TRUE with *out NULL when it is absent
 * and optional; JSON null counts as the wrong type. */
static gboolean
get_member (Fields *f, const gchar *key, gboolean required, json_type type, const gchar *type_desc,
            json_object **out)
{
  json_object *value = NULL;

  *out = NULL;
  if (!json_object_object_get_ex (f->body, key, &value))
    {
      if (required)
        field_error (f, key, "is missing");
      return !required;
    }
  if (value == NULL || !json_object_is_type (value, type))
    {
      field_error (f, key, "must be %s, not %s", type_desc, json_type_article_name (value));
      return FALSE;
    }
  *out = value;
  return TRUE;
}

/* A string of at most max bytes without NUL (json-c allows \u0000). */
static gboolean
get_string (Fields *f, const gchar *key, gboolean required, gsize max, const gchar **out,
            gsize *out_len)
{
  json_object *value;
  const gchar *s;
  gsize len;

  *out = NULL;
  if (!get_member (f, key, required, json_type_string, "a string", &value))
    return FALSE;
  if (value == NULL)
    return TRUE;
  s = json_object_get_string (value);
  len = (gsize) json_object_get_string_len (value);
  if (len > max)
    {
      field_error (f, key, "is %" G_GSIZE_FORMAT " bytes long, over the limit of %" G_GSIZE_FORMAT,
                   len, max);
      return FALSE;
    }
  if (memchr (s, '\0', len) != NULL)
    {
      field_error (f, key, "contains a NUL character");
      return FALSE;
    }
  *out = s;
  if (out_len != NULL)
    *out_len = len;
  return TRUE;
}

static gboolean
get_name (Fields *f, const gchar *key, gboolean required, const gchar **out)
{
  gsize len = 0;

  if (!get_string (f, key, required, G_MAXSIZE, out, &len))
    return FALSE;
  if (*out != NULL && !name_is_valid_len (*out, len))
    {
      g_autofree gchar *quoted = quote_value (*out, len);

      field_error (f, key, "is not a valid name: %s (expected " NAME_GRAMMAR ")", quoted);
      *out = NULL;
      return FALSE;
    }
  return TRUE;
}

static gboolean
get_arg (Fields *f, const gchar *key, const gchar **out)
{
  gsize len = 0;

  if (!get_string (f, key, FALSE, G_MAXSIZE, out, &len))
    return FALSE;
  if (*out != NULL && (len > DHF_XDM_MAX_ARG || !chars_are (*out, len, "._-")))
    {
      g_autofree gchar *quoted = quote_value (*out, len);

      field_error (f, key, "is not a valid argument: %s (expected " ARG_GRAMMAR ")", quoted);
      *out = NULL;
      return FALSE;
    }
  return TRUE;
}

static gboolean
get_domain (Fields *f, const gchar *key, gboolean required, const gchar **out)
{
  gsize len = 0;

  if (!get_string (f, key, required, G_MAXSIZE, out, &len))
    return FALSE;
  if (*out != NULL && (len == 0 || len > DHF_XDM_MAX_DOMAIN || !chars_are (*out, len, "._-")))
    {
      g_autofree gchar *quoted = quote_value (*out, len);

      field_error (f, key, "is not a valid domain name: %s (expected " DOMAIN_GRAMMAR ")", quoted);
      *out = NULL;
      return FALSE;
    }
  return TRUE;
}

static gboolean
get_code (Fields *f, const gchar *key, gboolean required, const gchar **out)
{
  gsize len = 0;

  if (!get_string (f, key, required, G_MAXSIZE, out, &len))
    return FALSE;
  if (*out != NULL && !code_is_valid (*out, len))
    {
      g_autofree gchar *quoted = quote_value (*out, len);

      field_error (f, key,
                   "is not a valid error code: %s (expected a lowercase nick such as "
                   "\"not-authorized\", [a-z][a-z0-9-]*, at most %d bytes)",
                   quoted, MAX_CODE);
      *out = NULL;
      return FALSE;
    }
  return TRUE;
}

/* Text meant for logs: no control characters. */
static gboolean
get_text (Fields *f, const gchar *key, gboolean required, gsize max, const gchar **out)
{
  gsize len = 0;

  if (!get_string (f, key, required, max, out, &len))
    return FALSE;
  for (gsize i = 0; *out != NULL && i < len; i++)
    if ((guint8) (*out)[i] < 0x20 || (*out)[i] == 0x7f)
      {
        field_error (f, key, "contains a control character");
        *out = NULL;
        return FALSE;
      }
  return TRUE;
}

static gboolean
check_range (Fields *f, const gchar *key, json_object *value, gint64 min, gint64 max, gint64 *out)
{
  gint64 v = json_object_get_int64 (value);

  /* json-c keeps integers over G_MAXINT64 as unsigned; get_int64 then
   * clamps them to G_MAXINT64, which is out of every range here. */
  if (v < min || v > max)
    {
      field_error (f, key, "is %s, out of range %" G_GINT64_FORMAT "..%" G_GINT64_FORMAT,
                   json_object_to_json_string_ext (value, JSON_C_TO_STRING_PLAIN), min, max);
      return FALSE;
    }
  *out = v;
  return TRUE;
}

static gboolean
get_uint (Fields *f, const gchar *key, gboolean required, guint32 min, guint32 max, guint32 absent,
          guint32 *out)
{
  json_object *value;
  gint64 v;

  *out = absent;
  if (!get_member (f, key, required, json_type_int, "an integer", &value))
    return FALSE;
  if (value == NULL)
    return TRUE;
  if (!check_range (f, key, value, min, max, &v))
    return FALSE;
  *out = (guint32) v;
  return TRUE;
}

/* Any JSON value, null included; *out NULL for null or absent. */
static void
get_value (Fields *f, const gchar *key, json_object **out)
{
  json_object *value = NULL;

  (void) json_object_object_get_ex (f->body, key, &value);
  *out = value;
}

static gboolean
version_is_spoken (gint64 version)
{
  return version >= 1 && version <= DHF_XDM_PROTOCOL_VERSION;
}

static gboolean
parse_hello (Fields *f, DhfXdmMessage *msg)
{
  json_object *versions;
  gsize n;
  gint64 best = 0;
  g_autoptr (GString) listed = NULL;

  if (!get_member (f, "versions", TRUE, json_type_array, "an array of integers", &versions))
    return FALSE;
  n = json_object_array_length (versions);
  if (n == 0 || n > MAX_VERSIONS)
    {
      field_error (f, "versions", "must list 1 to %d versions, not %" G_GSIZE_FORMAT, MAX_VERSIONS,
                   n);
      return FALSE;
    }
  listed = g_string_new (NULL);
  for (gsize i = 0; i < n; i++)
    {
      json_object *item = json_object_array_get_idx (versions, i);
      gchar key[32];
      gint64 v;

      g_snprintf (key, sizeof key, "versions[%" G_GSIZE_FORMAT "]", i);
      if (item == NULL || !json_object_is_type (item, json_type_int))
        {
          field_error (f, key, "must be an integer, not %s", json_type_article_name (item));
          return FALSE;
        }
      if (!check_range (f, key, item, 1, G_MAXINT32, &v))
        return FALSE;
      g_string_append_printf (listed, "%s%" G_GINT64_FORMAT, i > 0 ? ", " : "", v);
      if (version_is_spoken (v) && v > best)
        best = v;
    }
  if (best == 0)
    {
      g_set_error (f->error, DHF_ERROR, DHF_ERROR_PROTOCOL,
                   "HELLO: no common protocol version (the peer speaks %s; this side speaks 1 to "
                   "%d)",
                   listed->str, DHF_XDM_PROTOCOL_VERSION);
      return FALSE;
    }
  msg->version = (guint32) best;
  return get_text (f, "client", FALSE, DHF_XDM_MAX_CLIENT, &msg->client);
}

static gboolean
parse_welcome (Fields *f, DhfXdmMessage *msg)
{
  json_object *limits;
  Fields lf = *f;
  guint32 ignored;

  if (!get_uint (f, "version", TRUE, 1, G_MAXINT32, 0, &msg->version))
    return FALSE;
  if (!version_is_spoken (msg->version))
    {
      field_error (f, "version", "is %u, a protocol version this side does not speak (1 to %d)",
                   msg->version, DHF_XDM_PROTOCOL_VERSION);
      return FALSE;
    }
  if (!get_domain (f, "domain", TRUE, &msg->domain)
      || !get_string (f, "uuid", FALSE, 36, &msg->uuid, NULL))
    return FALSE;
  if (msg->uuid != NULL && !g_uuid_string_is_valid (msg->uuid))
    {
      g_autofree gchar *quoted = quote_value (msg->uuid, strlen (msg->uuid));

      field_error (f, "uuid", "is not a UUID: %s", quoted);
      return FALSE;
    }
  if (!get_member (f, "limits", TRUE, json_type_object, "an object", &limits))
    return FALSE;
  lf.body = limits;
  lf.type_name = "WELCOME limits";
  return get_uint (&lf, "max_body", TRUE, 1, DHF_XDM_MAX_BODY, 0, &ignored)
         && get_uint (&lf, "max_calls_in_flight", TRUE, 0, G_MAXUINT32, 0, &ignored);
}

/* service, arg, target and source: what CALL and STREAM_OPEN share. */
static gboolean
parse_request (Fields *f, DhfXdmMessage *msg)
{
  return get_name (f, "service", TRUE, &msg->service) && get_arg (f, "arg", &msg->arg)
         && get_domain (f, "target", FALSE, &msg->target)
         && get_domain (f, "source", FALSE, &msg->source);
}

static gboolean
parse_fields (Fields *f, DhfXdmMessage *msg)
{
  switch (msg->type)
    {
      case DHF_XDM_HELLO:
        return parse_hello (f, msg);
      case DHF_XDM_WELCOME:
        return parse_welcome (f, msg);
      case DHF_XDM_REGISTER:
      case DHF_XDM_UNREGISTER:
        return get_name (f, "service", TRUE, &msg->service);
      case DHF_XDM_CALL:
        if (!parse_request (f, msg)
            || !get_uint (f, "timeout_ms", FALSE, 1, DHF_XDM_MAX_TIMEOUT_MS,
                          DHF_XDM_DEFAULT_TIMEOUT_MS, &msg->timeout_ms))
          return FALSE;
        get_value (f, "params", &msg->value);
        return TRUE;
      case DHF_XDM_REPLY:
        get_value (f, "result", &msg->value);
        return get_uint (f, "window", FALSE, 0, DHF_XDM_MAX_WINDOW, 0, &msg->window)
               && get_uint (f, "delivered", FALSE, 0, G_MAXUINT32, 0, &msg->delivered);
      case DHF_XDM_ERROR:
        return get_code (f, "code", TRUE, &msg->code)
               && get_string (f, "message", TRUE, DHF_XDM_MAX_MESSAGE, &msg->message, NULL);
      case DHF_XDM_SUBSCRIBE:
      case DHF_XDM_UNSUBSCRIBE:
        return get_name (f, "topic", TRUE, &msg->topic);
      case DHF_XDM_PUBLISH:
      case DHF_XDM_EVENT:
        if (!get_name (f, "topic", TRUE, &msg->topic)
            || !get_domain (f, "source", msg->type == DHF_XDM_EVENT, &msg->source))
          return FALSE;
        get_value (f, "data", &msg->value);
        return TRUE;
      case DHF_XDM_STREAM_OPEN:
        return parse_request (f, msg)
               && get_uint (f, "window", TRUE, 0, DHF_XDM_MAX_WINDOW, 0, &msg->window);
      case DHF_XDM_STREAM_CREDIT:
        return get_uint (f, "bytes", TRUE, 1, DHF_XDM_MAX_WINDOW, 0, &msg->bytes);
      case DHF_XDM_STREAM_CLOSE:
        return get_code (f, "code", FALSE, &msg->code)
               && get_string (f, "message", FALSE, DHF_XDM_MAX_MESSAGE, &msg->message, NULL);
      case DHF_XDM_CANCEL:
      case DHF_XDM_PING:
      case DHF_XDM_PONG:
        return TRUE;
      case DHF_XDM_STREAM_DATA:
      case DHF_XDM_N_TYPES:
      default:
        g_assert_not_reached ();
    }
}

gboolean
dhf_xdm_message_parse (const DhfXdmHeader *header, const guint8 *body, DhfXdmMessage *msg,
                       GError **error)
{
  const gchar *name = dhf_xdm_type_to_string (header->type);
  gboolean session = header->type == DHF_XDM_HELLO || header->type == DHF_XDM_WELCOME;
  g_autoptr (GError) local = NULL;
  Fields f;

  memset (msg, 0, sizeof *msg);
  g_return_val_if_fail (name != NULL, FALSE);
  g_return_val_if_fail (header->length <= DHF_XDM_MAX_BODY, FALSE);
  g_return_val_if_fail (body != NULL || header->length == 0, FALSE);

  msg->type = (DhfXdmType) header->type;
  msg->id = header->id;
  if (header->type == DHF_XDM_STREAM_DATA)
    {
      msg->raw = body;
      msg->raw_length = header->length;
      return TRUE;
    }

  msg->body = parse_json_body (body, header->length, name, &local);
  if (msg->body != NULL)
    {
      f.type_name = name;
      f.body = msg->body;
      f.code = session ? DHF_ERROR_PROTOCOL : DHF_ERROR_INVALID_ARGS;
      f.error = &local;
      if (parse_fields (&f, msg))
        return TRUE;
    }
  /* The session cannot start on a malformed HELLO or WELCOME. */
  if (session)
    local->code = DHF_ERROR_PROTOCOL;
  g_propagate_error (error, g_steal_pointer (&local));
  dhf_xdm_message_clear (msg);
  return FALSE;
}

void
dhf_xdm_message_clear (DhfXdmMessage *msg)
{
  g_clear_pointer (&msg->body, json_object_put);
  memset (msg, 0, sizeof *msg);
}

/* ---- Encoders ---- */

static void
append_header (GByteArray *out, DhfXdmType type, guint32 id, gsize length)
{
  guint8 h[DHF_XDM_HEADER_SIZE] = { 'D', 'X', DHF_XDM_FRAME_VERSION, (guint8) type };

  write_le16 (h + 4, type == DHF_XDM_STREAM_DATA ? DHF_XDM_FLAG_RAW : 0);
  write_le16 (h + 6, 0);
  write_le32 (h + 8, id);
  write_le32 (h + 12, (guint32) length);
  g_byte_array_append (out, h, sizeof h);
}

static const gchar *
serialize (json_object *json, gsize *length)
{
  size_t len = 0;
  const gchar *text;

  if (json == NULL)
    {
      *length = 0;
      return "";
    }
  text = json_object_to_json_string_length (json, SERIALIZE_FLAGS, &len);
  *length = len;
  return text;
}

gboolean
dhf_xdm_json_fits (json_object *json)
{
  gsize length;

  (void) serialize (json, &length);
  return length <= DHF_XDM_MAX_BODY;
}

gboolean
dhf_xdm_append_json_checked (GByteArray *out, DhfXdmType type, guint32 id, json_object *json,
                             GError **error)
{
  const gchar *text;
  gsize length;

  g_return_val_if_fail (type > 0 && type < DHF_XDM_N_TYPES && type != DHF_XDM_STREAM_DATA, FALSE);
  g_return_val_if_fail (json == NULL || json_object_is_type (json, json_type_object), FALSE);

  text = serialize (json, &length);
  if (length > DHF_XDM_MAX_BODY)
    {
      g_set_error (error, DHF_ERROR, DHF_ERROR_LIMIT_EXCEEDED,
                   "%s body of %" G_GSIZE_FORMAT " bytes is over the limit of %u bytes",
                   type_names[type], length, DHF_XDM_MAX_BODY);
      return FALSE;
    }
  append_header (out, type, id, length);
  g_byte_array_append (out, (const guint8 *) text, (guint) length);
  return TRUE;
}

void
dhf_xdm_append_json (GByteArray *out, DhfXdmType type, guint32 id, json_object *json)
{
  g_autoptr (GError) error = NULL;

  g_return_if_fail (type > 0 && type < DHF_XDM_N_TYPES && type != DHF_XDM_STREAM_DATA);
  g_return_if_fail (json == NULL || json_object_is_type (json, json_type_object));

  if (!dhf_xdm_append_json_checked (out, type, id, json, &error))
    g_error ("dhf_xdm_append_json: %s", error->message);
}

void
dhf_xdm_append_raw (GByteArray *out, DhfXdmType type, guint32 id, const guint8 *data, gsize length)
{
  g_return_if_fail (type == DHF_XDM_STREAM_DATA);
  g_return_if_fail (data != NULL || length == 0);

  if (length > DHF_XDM_MAX_BODY)
    g_error ("dhf_xdm_append_raw: %s body of %" G_GSIZE_FORMAT " bytes is over the limit of %u",
             type_names[type], length, DHF_XDM_MAX_BODY);
  append_header (out, type, id, length);
  if (length > 0)
    g_byte_array_append (out, data, (guint) length);
}

void
dhf_xdm_append_text (GByteArray *out, DhfXdmType type, guint32 id, const gchar *text, gsize length)
{
  g_return_if_fail (type > 0 && type < DHF_XDM_N_TYPES && type != DHF_XDM_STREAM_DATA);
  g_return_if_fail (text != NULL || length == 0);

  if (length == (gsize) -1)
    length = strlen (text);
  if (length > DHF_XDM_MAX_BODY)
    g_error ("dhf_xdm_append_text: %s body of %" G_GSIZE_FORMAT " bytes is over the limit of %u",
             type_names[type], length, DHF_XDM_MAX_BODY);
  append_header (out, type, id, length);
  if (length > 0)
    g_byte_array_append (out, (const guint8 *) text, (guint) length);
}

/* ---- Error codes ---- */

/* The nicks of DhfError, indexed by code, from its GEnum. */
static const gchar *const *
error_nicks (void)
{
  static const gchar **nicks = NULL;

  if (g_once_init_enter (&nicks))
    {
      GEnumClass *klass = g_type_class_ref (dhf_error_get_type ());
      const gchar **table = g_new0 (const gchar *, DHF_ERROR_LAST);

      for (gint code = 0; code < DHF_ERROR_LAST; code++)
        {
          GEnumValue *value = g_enum_get_value (klass, code);

          /* The class stays referenced: the nicks are its strings. */
          table[code] = value != NULL ? value->value_nick : "failed";
        }
      g_once_init_leave (&nicks, table);
    }
  return nicks;
}

const gchar *
dhf_xdm_error_code_to_string (DhfError code)
{
  if ((guint) code >= DHF_ERROR_LAST)
    code = DHF_ERROR_FAILED;
  return error_nicks ()[code];
}

DhfError
dhf_xdm_error_code_from_string (const gchar *code)
{
  const gchar *const *nicks = error_nicks ();

  for (gint i = 0; code != NULL && i < DHF_ERROR_LAST; i++)
    if (strcmp (code, nicks[i]) == 0)
      return (DhfError) i;
  return DHF_ERROR_FAILED;
}

void
dhf_xdm_append_error (GByteArray *out, guint32 id, DhfError code, const gchar *message)
{
  g_autofree gchar *valid = NULL;
  json_object *body = json_object_new_object ();
  gsize len;

  if (message == NULL)
    message = "";
  len = strlen (message);
  /* GError messages may carry file names in any encoding. */
  if (!g_utf8_validate_len (message, len, NULL))
    {
      valid = g_utf8_make_valid (message, (gssize) len);
      message = valid;
      len = strlen (valid);
    }
  if (len > DHF_XDM_MAX_MESSAGE)
    {
      len = DHF_XDM_MAX_MESSAGE;
      while (len > 0 && ((guint8) message[len] & 0xc0) == 0x80)
        len--;
    }
  json_object_object_add_ex (body, "code",
                             json_object_new_string (dhf_xdm_error_code_to_string (code)),
                             JSON_C_OBJECT_ADD_KEY_IS_NEW | JSON_C_OBJECT_KEY_IS_CONSTANT);
  json_object_object_add_ex (body, "message", json_object_new_string_len (message, (int) len),
                             JSON_C_OBJECT_ADD_KEY_IS_NEW | JSON_C_OBJECT_KEY_IS_CONSTANT);
  dhf_xdm_append_json (out, DHF_XDM_ERROR, id, body);
  json_object_put (body);
}

GError *
dhf_xdm_message_to_error (const DhfXdmMessage *msg)
{
  DhfError code;
  const gchar *text;

  g_return_val_if_fail (msg != NULL, NULL);

  if (msg->code == NULL)
    {
      /* A STREAM_CLOSE without a code is an orderly end, not an error. */
      if (msg->type != DHF_XDM_ERROR)
        return NULL;
      return g_error_new (DHF_ERROR, DHF_ERROR_FAILED, "%s",
                          msg->message != NULL && msg->message[0] != '\0' ? msg->message
                                                                          : "failed");
    }
  code = dhf_xdm_error_code_from_string (msg->code);
  text = msg->message != NULL && msg->message[0] != '\0' ? msg->message : msg->code;
  if (code == DHF_ERROR_FAILED && strcmp (msg->code, "failed") != 0)
    return g_error_new (DHF_ERROR, code, "%s (error code \"%s\")", text, msg->code);
  return g_error_new_literal (DHF_ERROR, code, text);
}
