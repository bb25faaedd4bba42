/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

#if !defined(DHF_INSIDE) && !defined(DHF_COMPILATION)
#error "Only <dhf/dhf.h> can be included directly."
#endif

#include <gio/gio.h>

#include <dhf/dhf-error.h>
#include <dhf/dhf-stream.h>

G_BEGIN_DECLS

/**
 * DhfInvocation:
 *
 * One request to a service this client provides: a call, or a request to
 * open a stream. The caller's domain (dhf_invocation_get_source()) is what
 * dhfd established from the transport. Answer exactly once; an invocation
 * finalized without an answer answers %DHF_ERROR_FAILED ("no reply"). If
 * the caller gives up (timeout, cancellation, disconnection), the
 * #GCancellable of dhf_invocation_get_cancellable() is cancelled and any
 * answer is dropped.
 *
 * Since: 0.2
 */
#define DHF_TYPE_INVOCATION (dhf_invocation_get_type ())
G_DECLARE_FINAL_TYPE (DhfInvocation, dhf_invocation, DHF, INVOCATION, GObject)

/**
 * DhfInvocationKind:
 * @DHF_INVOCATION_CALL: a call: answer with dhf_invocation_return_json()
 *   or dhf_invocation_return_error()
 * @DHF_INVOCATION_STREAM: a request to open a stream: accept with
 *   dhf_invocation_accept_stream() or refuse with
 *   dhf_invocation_return_error()
 *
 * What a #DhfInvocation asks for.
 *
 * Since: 0.2
 */
typedef enum
{
  DHF_INVOCATION_CALL,
  DHF_INVOCATION_STREAM,
} DhfInvocationKind;

DhfInvocationKind dhf_invocation_get_kind (DhfInvocation *self);
const gchar *dhf_invocation_get_service (DhfInvocation *self);
/* NULL when the call had no argument. */
const gchar *dhf_invocation_get_argument (DhfInvocation *self);
const gchar *dhf_invocation_get_source (DhfInvocation *self);
/* The call's parameters as JSON text ("null" when there were none). */
const gchar *dhf_invocation_get_params_json (DhfInvocation *self);
GCancellable *dhf_invocation_get_cancellable (DhfInvocation *self);

/* result_json: JSON text, NULL for null. Invalid JSON (DHF_ERROR_FAILED)
 * or a result too large for one message (DHF_ERROR_LIMIT_EXCEEDED)
 * answers the caller with an error instead, and returns FALSE. */
gboolean dhf_invocation_return_json (DhfInvocation *self, const gchar *result_json);
void dhf_invocation_return_error (DhfInvocation *self, DhfError code, const gchar *message);
void dhf_invocation_return_gerror (DhfInvocation *self, const GError *error);
/* Accepts a stream request; the returned stream is connected to the
 * caller's. */
DhfStream *dhf_invocation_accept_stream (DhfInvocation *self, GError **error);

G_END_DECLS
