/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include <string.h>

#include "guest-params.h"

/* protos/xdm.md, "Names" and "Limits". */
#define MAX_NAME   255
#define MAX_ARG    64
#define MAX_DOMAIN 64
/* One message carries at most 1 MiB (protos/xdm.md, "Limits"); the SDK
 * refuses a larger result with limit-exceeded. The SDK has no public
 * constant for it: this bounds only how far a list is built. */
#define MAX_LIST_BYTES (1024 * 1024)

json_object *
guest_params_parse (const gchar *params_json, const gchar **op, GError **error)
{
  g_autoptr (json_object) params = json_tokener_parse (params_json);
  json_object *value = NULL;

  if (params == NULL || !json_object_is_type (params, json_type_object))
    {
      g_set_error_literal (error, DHF_ERROR, DHF_ERROR_INVALID_ARGS,
                           "params must be a JSON object with \"op\"");
      return NULL;
    }
  if (!json_object_object_get_ex (params, "op", &value)
      || !json_object_is_type (value, json_type_string))
    {
      g_set_error_literal (error, DHF_ERROR, DHF_ERROR_INVALID_ARGS,
                           "params need \"op\", a string (info, echo, put, items, call, bench, "
                           "writer, writer-status, subscribe, events, input)");
      return NULL;
    }
  *op = json_object_get_string (value);
  return g_steal_pointer (&params);
}

/* Looks key up: FALSE (with an error) only when it is required and
 * absent. *value is NULL both when it is absent and when it is JSON null,
 * which counts as present (and then as the wrong type). */
static gboolean
lookup (json_object *params, const gchar *key, gboolean required, gboolean *present,
        json_object **value, GError **error)
{
  *value = NULL;
  *present = json_object_object_get_ex (params, key, value);
  if (!*present && required)
    {
      g_set_error (error, DHF_ERROR, DHF_ERROR_INVALID_ARGS, "\"%s\" is missing", key);
      return FALSE;
    }
  return TRUE;
}

gboolean
guest_params_get_string (json_object *params, const gchar *key, gboolean required, gsize max_bytes,
                         const gchar **value, GError **error)
{
  json_object *member;
  gboolean present;
  gsize length;

  *value = NULL;
  if (!lookup (params, key, required, &present, &member, error))
    return FALSE;
  if (!present)
    return TRUE;
  if (!json_object_is_type (member, json_type_string))
    {
      g_set_error (error, DHF_ERROR, DHF_ERROR_INVALID_ARGS, "\"%s\" must be a string", key);
      return FALSE;
    }
  length = json_object_get_string_len (member);
  /* json-c keeps a \u0000 escape as a NUL inside the string. */
  if (length == 0 || length > max_bytes || strlen (json_object_get_string (member)) != length)
    {
      g_set_error (error, DHF_ERROR, DHF_ERROR_INVALID_ARGS,
                   "\"%s\" must be a string of 1 to %zu bytes without NUL", key, max_bytes);
      return FALSE;
    }
  *value = json_object_get_string (member);
  return TRUE;
}

gboolean
guest_params_get_int (json_object *params, const gchar *key, gboolean required, gint64 min,
                      gint64 max, gint64 *value, GError **error)
{
  json_object *member;
  gboolean present;
  gint64 number;

  if (!lookup (params, key, required, &present, &member, error))
    return FALSE;
  if (!present)
    return TRUE;
  /* json-c saturates integers beyond 64 bits; the range below rejects
   * the saturated values as long as max < G_MAXINT64. */
  if (!json_object_is_type (member, json_type_int)
      || (number = json_object_get_int64 (member)) < min || number > max)
    {
      g_set_error (error, DHF_ERROR, DHF_ERROR_INVALID_ARGS,
                   "\"%s\" must be an integer from %" G_GINT64_FORMAT " to %" G_GINT64_FORMAT, key,
                   min, max);
      return FALSE;
    }
  *value = number;
  return TRUE;
}

gboolean
guest_params_get_slice (json_object *params, guint length, guint *start, guint *end, GError **error)
{
  gint64 offset = 0;
  gint64 limit = G_MAXINT32;

  if (!guest_params_get_int (params, "offset", FALSE, 0, G_MAXINT32, &offset, error)
      || !guest_params_get_int (params, "limit", FALSE, 1, G_MAXINT32, &limit, error))
    return FALSE;
  *start = (guint) MIN (offset, (gint64) length);
  *end = (guint) MIN ((gint64) *start + limit, (gint64) length);
  return TRUE;
}

static gboolean
is_name_element_start (gchar c)
{
  return g_ascii_isalpha (c) || c == '_';
}

static gboolean
is_name_element_char (gchar c)
{
  return g_ascii_isalnum (c) || c == '_' || c == '-';
}

static gboolean
is_domain_char (gchar c)
{
  return g_ascii_isalnum (c) || c == '.' || c == '_' || c == '-';
}

gboolean
guest_name_is_valid (const gchar *name)
{
  guint elements = 0;
  const gchar *p = name;

  if (name == NULL || strlen (name) > MAX_NAME)
    return FALSE;
  /* Two or more "."-separated elements of [A-Za-z_][A-Za-z0-9_-]*. */
  for (;;)
    {
      if (!is_name_element_start (*p))
        return FALSE;
      for (p++; is_name_element_char (*p); p++)
        continue;
      elements++;
      if (*p == '\0')
        return elements >= 2;
      if (*p != '.')
        return FALSE;
      p++;
    }
}

gboolean
guest_service_is_valid (const gchar *service)
{
  const gchar *plus;
  g_autofree gchar *name = NULL;

  if (service == NULL)
    return FALSE;
  plus = strchr (service, '+');
  if (plus == NULL)
    return guest_name_is_valid (service);
  if (strlen (plus + 1) > MAX_ARG)
    return FALSE;
  for (const gchar *p = plus + 1; *p != '\0'; p++)
    if (!is_domain_char (*p))
      return FALSE;
  name = g_strndup (service, plus - service);
  return guest_name_is_valid (name);
}

gboolean
guest_domain_is_valid (const gchar *domain)
{
  if (domain == NULL || *domain == '\0' || strlen (domain) > MAX_DOMAIN)
    return FALSE;
  for (const gchar *p = domain; *p != '\0'; p++)
    if (!is_domain_char (*p))
      return FALSE;
  return TRUE;
}

typedef gboolean (*NameCheck) (const gchar *name);

static gboolean
get_name (json_object *params, const gchar *key, gboolean required, NameCheck check,
          const gchar *what, const gchar **value, GError **error)
{
  if (!guest_params_get_string (params, key, required, MAX_NAME + 1 + MAX_ARG, value, error))
    return FALSE;
  if (*value != NULL && !check (*value))
    {
      g_set_error (error, DHF_ERROR, DHF_ERROR_INVALID_ARGS, "\"%s\" is not %s: '%s'", key, what,
                   *value);
      *value = NULL;
      return FALSE;
    }
  return TRUE;
}

gboolean
guest_params_get_service (json_object *params, const gchar *key, gboolean required,
                          const gchar **value, GError **error)
{
  return get_name (params, key, required, guest_service_is_valid,
                   "a service name (org.example.Service1 or org.example.Service1+ARG)", value,
                   error);
}

gboolean
guest_params_get_topic (json_object *params, const gchar *key, gboolean required,
                        const gchar **value, GError **error)
{
  return get_name (params, key, required, guest_name_is_valid, "a topic name (org.example.Topic)",
                   value, error);
}

gboolean
guest_params_get_domain (json_object *params, const gchar *key, gboolean required,
                         const gchar **value, GError **error)
{
  return get_name (params, key, required, guest_domain_is_valid,
                   "a domain name (letters, digits, '.', '_', '-')", value, error);
}

#define TEXT_FLAGS (JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE)

gchar *
guest_json_to_text (json_object *value)
{
  if (value == NULL)
    return g_strdup ("null");
  return g_strdup (json_object_to_json_string_ext (value, TEXT_FLAGS));
}

const gchar *
guest_error_nick (const GError *error)
{
  g_autoptr (GEnumClass) codes = NULL;
  GEnumValue *value;

  if (error->domain != DHF_ERROR)
    return "failed";
  codes = g_type_class_ref (DHF_TYPE_ERROR);
  value = g_enum_get_value (codes, error->code);
  /* Nicks are static strings of the registered type. */
  return value != NULL ? value->value_nick : "failed";
}

void
guest_return_result (DhfInvocation *invocation, json_object *result)
{
  g_autoptr (json_object) owned = result;
  g_autofree gchar *text = guest_json_to_text (owned);

  /* A result over one message is answered with limit-exceeded by the
   * SDK. */
  dhf_invocation_return_json (invocation, text);
}

static void
free_text (json_object *object, void *text)
{
  g_free (text);
}

json_object *
guest_json_from_text (gchar *text)
{
  json_object *value = json_object_new_object ();

  json_object_set_serializer (value, json_object_userdata_to_json_string, text, free_text);
  return value;
}

struct _GuestResultList
{
  GString *text; /* "[" and the entries so far, comma-separated */
  guint length;
};

GuestResultList *
guest_result_list_new (void)
{
  GuestResultList *list = g_new0 (GuestResultList, 1);

  list->text = g_string_new ("[");
  return list;
}

void
guest_result_list_free (GuestResultList *list)
{
  g_string_free (list->text, TRUE);
  g_free (list);
}

gboolean
guest_result_list_add (GuestResultList *list, json_object *entry)
{
  g_autoptr (json_object) owned = entry;
  const gchar *text = json_object_to_json_string_ext (owned, TEXT_FLAGS);
  gsize length = strlen (text);

  /* The list alone, with its comma and closing bracket, must fit. */
  if (list->text->len + (list->length > 0) + length + 1 > MAX_LIST_BYTES)
    return FALSE;
  if (list->length > 0)
    g_string_append_c (list->text, ',');
  g_string_append_len (list->text, text, length);
  list->length++;
  return TRUE;
}

json_object *
guest_result_list_steal (GuestResultList *list)
{
  gchar *text;

  g_string_append_c (list->text, ']');
  text = g_string_free (list->text, FALSE);
  list->text = g_string_new ("[");
  list->length = 0;
  return guest_json_from_text (text);
}

void
guest_return_list_too_long (DhfInvocation *invocation, GuestResultList *list, guint total,
                            const gchar *what_to_page)
{
  g_autofree gchar *message
      = g_strdup_printf ("the result does not fit in one message of 1 MiB (only the first %u of "
                         "its %u entries would): ask for %s",
                         list->length, total, what_to_page);

  dhf_invocation_return_error (invocation, DHF_ERROR_LIMIT_EXCEEDED, message);
}
