/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

#include <dhf/dhf.h>
#include <json.h>

G_BEGIN_DECLS

G_DEFINE_AUTOPTR_CLEANUP_FUNC (json_object, json_object_put)

/* Bounds the ops share. */
#define GUEST_MAX_COUNT      100000 /* calls of a bench, items of a writer */
#define GUEST_MAX_TIMEOUT_MS 600000 /* of one call (protos/xdm.md) */

/* Reading the params of a call, checking names, answering. Everything a
 * caller sends is untrusted: each accessor says exactly what was wrong
 * (DHF_ERROR_INVALID_ARGS), so that the caller can fix it. */

/* The params text as a JSON object with a string "op"; NULL and an error
 * otherwise. *op points into the returned object. */
json_object *guest_params_parse (const gchar *params_json, const gchar **op, GError **error);

/* A string member of 1 to max_bytes bytes of UTF-8 (no NUL). Absent: an
 * error when required, else TRUE with *value NULL. */
gboolean guest_params_get_string (json_object *params, const gchar *key, gboolean required,
                                  gsize max_bytes, const gchar **value, GError **error);
/* An integer member (a JSON integer, not 5.0 or "5") within min..max.
 * Absent: an error when required, else TRUE with *value untouched (the
 * caller's default). */
gboolean guest_params_get_int (json_object *params, const gchar *key, gboolean required, gint64 min,
                               gint64 max, gint64 *value, GError **error);
/* A service ("org.example.Service1" or "org.example.Service1+ARG"), a
 * topic or a domain name, by the grammar of protos/xdm.md. */
gboolean guest_params_get_service (json_object *params, const gchar *key, gboolean required,
                                   const gchar **value, GError **error);
gboolean guest_params_get_topic (json_object *params, const gchar *key, gboolean required,
                                 const gchar **value, GError **error);
gboolean guest_params_get_domain (json_object *params, const gchar *key, gboolean required,
                                  const gchar **value, GError **error);

/* The slice [*start, *end) of a list of length items that the optional
 * "offset" (default 0) and "limit" (default all) ask for: lists that can
 * outgrow one reply are read in slices. */
gboolean guest_params_get_slice (json_object *params, guint length, guint *start, guint *end,
                                 GError **error);

gboolean guest_name_is_valid (const gchar *name);       /* service or topic, no argument */
gboolean guest_service_is_valid (const gchar *service); /* with an optional +ARG */
gboolean guest_domain_is_valid (const gchar *domain);

/* Compact JSON text of value ("null" for NULL); the caller frees it. */
gchar *guest_json_to_text (json_object *value);
/* The nick of a DhfError ("not-authorized"), "failed" for other domains. */
const gchar *guest_error_nick (const GError *error);

/* Answers with result (taken). A result that would not fit in one XDM
 * message (1 MiB) is answered by the SDK with DHF_ERROR_LIMIT_EXCEEDED. */
void guest_return_result (DhfInvocation *invocation, json_object *result);
/* A value that prints as text (taken: valid JSON text, such as the SDK
 * hands over): embedded as is, not parsed and printed again. */
json_object *guest_json_from_text (gchar *text);

/* A list for a result, written out entry by entry as it is built: a list
 * that cannot fit in one reply is refused as soon as it is over the
 * limit, before the rest of it costs memory (a guest may have 128 MiB). */
typedef struct _GuestResultList GuestResultList;

GuestResultList *guest_result_list_new (void);
void guest_result_list_free (GuestResultList *list);
G_DEFINE_AUTOPTR_CLEANUP_FUNC (GuestResultList, guest_result_list_free)
/* Appends entry (taken). FALSE when it does not fit: then nothing more
 * goes in, and the answer is guest_return_list_too_long(). */
gboolean guest_result_list_add (GuestResultList *list, json_object *entry);
/* The list as a JSON array (it prints as the text built), to put in a
 * result; the list is empty afterwards. */
json_object *guest_result_list_steal (GuestResultList *list);
/* Answers DHF_ERROR_LIMIT_EXCEEDED for a list of total entries of which
 * only those in list fitted, naming what_to_page. */
void guest_return_list_too_long (DhfInvocation *invocation, GuestResultList *list, guint total,
                                 const gchar *what_to_page);

G_END_DECLS
