/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include "config.h"

/* The JSON helpers of DhfClient: a strict validator of the JSON text
 * callers hand us (params, results, event data), and the building of
 * request bodies around it. Pure functions of their arguments, kept apart
 * from the connection; used by the public API, the core and invocations. */

#include <string.h>

#include "dhf-client-private.h"

/* ---- JSON helpers --------------------------------------------------------- */

gchar *
dhf_core_json_to_text (json_object *value)
{
  if (value == NULL)
    return g_strdup ("null");
  return g_strdup (json_object_to_json_string_ext (value, JSON_C_TO_STRING_PLAIN
                                                              | JSON_C_TO_STRING_NOSLASHESCAPE));
}

/* A JSON syntax check that allocates nothing (json-c's parser builds a
 * tree and makes a locale per call): RFC 8259, UTF-8 checked, containers
 * nested at most max_depth deep. */
typedef struct
{
  const gchar *p;
  const gchar *end;
  const gchar *start;
  gint depth;
  gint max_depth;
  const gchar *problem;
} JsonScan;

static void
scan_space (JsonScan *s)
{
  while (s->p < s->end && (*s->p == ' ' || *s->p == '\t' || *s->p == '\n' || *s->p == '\r'))
    s->p++;
}

static gboolean
scan_fail (JsonScan *s, const gchar *problem)
{
  s->problem = problem;
  return FALSE;
}

static gboolean
scan_string (JsonScan *s)
{
  s->p++; /* the opening quote */
  while (s->p < s->end)
    {
      guchar c = (guchar) *s->p;

      if (c == '"')
        {
          s->p++;
          return TRUE;
        }
      if (c < 0x20)
        return scan_fail (s, "control character in a string");
      if (c == '\\')
        {
          if (++s->p >= s->end)
            break;
          if (strchr ("\"\\/bfnrt", *s->p) != NULL && *s->p != '\0')
            s->p++;
          else if (*s->p == 'u')
            {
              for (gint i = 1; i <= 4; i++)
                if (s->p + i >= s->end || !g_ascii_isxdigit (s->p[i]))
                  return scan_fail (s, "invalid \\u escape");
              s->p += 5;
            }
          else
            return scan_fail (s, "invalid escape in a string");
          continue;
        }
      if (c < 0x80)
        {
          s->p++;
          continue;
        }
      if (g_utf8_get_char_validated (s->p, s->end - s->p) >= 0x110000)
        return scan_fail (s, "invalid UTF-8 in a string");
      s->p = g_utf8_next_char (s->p);
    }
  return scan_fail (s, "unterminated string");
}

static gboolean
scan_digits (JsonScan *s)
{
  const gchar *first = s->p;

  while (s->p < s->end && g_ascii_isdigit (*s->p))
    s->p++;
  return s->p > first;
}

static gboolean
scan_number (JsonScan *s)
{
  if (*s->p == '-')
    s->p++;
  if (s->p < s->end && *s->p == '0')
    s->p++;
  else if (!scan_digits (s))
    return scan_fail (s, "invalid number");
  if (s->p < s->end && *s->p == '.')
    {
      s->p++;
      if (!scan_digits (s))
        return scan_fail (s, "invalid number");
    }
  if (s->p < s->end && (*s->p == 'e' || *s->p == 'E'))
    {
      s->p++;
      if (s->p < s->end && (*s->p == '+' || *s->p == '-'))
        s->p++;
      if (!scan_digits (s))
        return scan_fail (s, "invalid number");
    }
  return TRUE;
}

static gboolean
scan_literal (JsonScan *s, const gchar *word)
{
  gsize n = strlen (word);

  if ((gsize) (s->end - s->p) < n || memcmp (s->p, word, n) != 0)
    return scan_fail (s, "unexpected character");
  s->p += n;
  return TRUE;
}

static gboolean scan_value (JsonScan *s);

/* An object or array: members (or elements) separated by commas. */
static gboolean
scan_container (JsonScan *s, gchar close)
{
  if (++s->depth > s->max_depth)
    return scan_fail (s, "nested too deeply");
  s->p++;
  scan_space (s);
  if (s->p < s->end && *s->p == close)
    {
      s->p++;
      s->depth--;
      return TRUE;
    }
  for (;;)
    {
      if (close == '}')
        {
          if (s->p >= s->end || *s->p != '"')
            return scan_fail (s, "expected a member name");
          if (!scan_string (s))
            return FALSE;
          scan_space (s);
          if (s->p >= s->end || *s->p != ':')
            return scan_fail (s, "expected ':'");
          s->p++;
        }
      if (!scan_value (s))
        return FALSE;
      scan_space (s);
      if (s->p < s->end && *s->p == ',')
        {
          s->p++;
          scan_space (s);
          continue;
        }
      if (s->p < s->end && *s->p == close)
        {
          s->p++;
          s->depth--;
          return TRUE;
        }
      return scan_fail (s, s->p >= s->end ? "unexpected end" : "expected ',' or a closing bracket");
    }
}

static gboolean
scan_value (JsonScan *s)
{
  scan_space (s);
  if (s->p >= s->end)
    return scan_fail (s, "unexpected end");
  switch (*s->p)
    {
      case '{':
        return scan_container (s, '}');
      case '[':
        return scan_container (s, ']');
      case '"':
        return scan_string (s);
      case 't':
        return scan_literal (s, "true");
      case 'f':
        return scan_literal (s, "false");
      case 'n':
        return scan_literal (s, "null");
      default:
        if (*s->p == '-' || g_ascii_isdigit (*s->p))
          return scan_number (s);
        return scan_fail (s, "unexpected character");
    }
}

gboolean
dhf_core_json_validate (const gchar *text, gint max_depth, const gchar *what, GError **error)
{
  JsonScan s = { text, text + strlen (text), text, 0, max_depth, NULL };

  if (scan_value (&s))
    {
      scan_space (&s);
      if (s.p == s.end)
        return TRUE;
      s.problem = "trailing characters";
    }
  g_set_error (error, DHF_ERROR, DHF_ERROR_INVALID_ARGS,
               "%s is not valid JSON: %s at offset %" G_GSIZE_FORMAT, what, s.problem,
               (gsize) (s.p - s.start));
  return FALSE;
}

/* Appends ,"key":"value" — value already checked against the name,
 * argument or domain grammar, none of which needs escaping. */
static void
append_member (GString *body, const gchar *key, const gchar *value)
{
  if (value == NULL)
    return;
  g_string_append_printf (body, ",\"%s\":\"%s\"", key, value);
}

/* Checks "SERVICE[+ARG]" and the target, and starts a body with them. */
GString *
dhf_core_start_service_body (const gchar *service, const gchar *target, GError **error)
{
  g_autofree gchar *name = NULL;
  g_autofree gchar *arg = NULL;
  GString *body;

  if (service == NULL || !dhf_xdm_split_service (service, &name, &arg, error))
    {
      if (service == NULL)
        g_set_error_literal (error, DHF_ERROR, DHF_ERROR_INVALID_ARGS, "no service name");
      return NULL;
    }
  if (target != NULL && !dhf_xdm_domain_is_valid (target))
    {
      g_set_error (error, DHF_ERROR, DHF_ERROR_INVALID_ARGS, "invalid target domain '%s'", target);
      return NULL;
    }
  body = g_string_sized_new (128);
  g_string_append_printf (body, "{\"service\":\"%s\"", name);
  append_member (body, "arg", arg);
  append_member (body, "target", target);
  return body;
}

gboolean
dhf_core_check_body_size (GString *body, GError **error)
{
  if (body->len > DHF_XDM_MAX_BODY)
    {
      g_set_error (error, DHF_ERROR, DHF_ERROR_INVALID_ARGS,
                   "message too large (%" G_GSIZE_FORMAT " bytes, at most %u)", body->len,
                   DHF_XDM_MAX_BODY);
      return FALSE;
    }
  return TRUE;
}
