/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include "config.h"

#include <string.h>

#include "dhf-client-private.h"

struct _DhfInvocation
{
  GObject parent_instance;

  GList link; /* queued for the handler */
  DhfClientCore *core;
  GMainContext *context; /* the handler's */
  guint gen;
  guint32 id;
  DhfInvocationKind kind;
  gchar *service;
  gchar *arg;
  gchar *source;
  gchar *params_json;
  guint32 peer_window; /* STREAM: the opener's receive window */

  /* guarded by core->lock */
  gboolean answered;
  gboolean abandoned; /* the caller gave up, or the connection went */
  GCancellable *cancellable;
};

G_DEFINE_FINAL_TYPE (DhfInvocation, dhf_invocation, G_TYPE_OBJECT)

/* Sends frame as the answer (once): FALSE if answered already. Dropped
 * silently when the caller has given up. */
static gboolean
send_answer (DhfInvocation *self, GByteArray *frame)
{
  DhfClientCore *core = self->core;

  g_mutex_lock (&core->lock);
  if (self->answered)
    {
      g_mutex_unlock (&core->lock);
      return FALSE;
    }
  self->answered = TRUE;
  if (!self->abandoned)
    {
      if (g_hash_table_lookup (core->invocations, GUINT_TO_POINTER (self->id)) == self)
        g_hash_table_remove (core->invocations, GUINT_TO_POINTER (self->id));
      (void) dhf_core_send_locked (core, self->gen, frame->data, frame->len, NULL, 0);
    }
  g_mutex_unlock (&core->lock);
  return TRUE;
}

static void
dhf_invocation_finalize (GObject *object)
{
  DhfInvocation *self = DHF_INVOCATION (object);

  /* Dropped without an answer: the caller must not wait for its timeout. */
  if (!self->answered)
    {
      GByteArray *frame = dhf_core_scratch_frame ();

      dhf_xdm_append_error (frame, self->id, DHF_ERROR_FAILED,
                            "no reply: the provider dropped the request");
      (void) send_answer (self, frame);
    }
  g_clear_object (&self->cancellable);
  g_main_context_unref (self->context);
  dhf_core_unref (self->core);
  g_free (self->service);
  g_free (self->arg);
  g_free (self->source);
  g_free (self->params_json);
  G_OBJECT_CLASS (dhf_invocation_parent_class)->finalize (object);
}

static void
dhf_invocation_class_init (DhfInvocationClass *klass)
{
  G_OBJECT_CLASS (klass)->finalize = dhf_invocation_finalize;
}

static void
dhf_invocation_init (DhfInvocation *self)
{
  self->link.data = self;
}

DhfInvocation *
dhf_core_invocation_new (DhfClientCore *core, guint gen, const DhfXdmMessage *msg,
                         GMainContext *context)
{
  DhfInvocation *self = g_object_new (DHF_TYPE_INVOCATION, NULL);

  self->core = dhf_core_ref (core);
  self->context = g_main_context_ref (context);
  self->gen = gen;
  self->id = msg->id;
  self->kind = msg->type == DHF_XDM_STREAM_OPEN ? DHF_INVOCATION_STREAM : DHF_INVOCATION_CALL;
  self->service = g_strdup (msg->service);
  self->arg = g_strdup (msg->arg);
  self->source = g_strdup (msg->source != NULL ? msg->source : "");
  if (self->kind == DHF_INVOCATION_CALL)
    self->params_json = dhf_core_json_to_text (msg->value);
  else
    self->params_json = g_strdup ("null");
  self->peer_window = msg->window;
  return self;
}

GList *
dhf_core_invocation_link (DhfInvocation *self)
{
  return &self->link;
}

gsize
dhf_core_invocation_get_size (DhfInvocation *self)
{
  return sizeof (*self) + strlen (self->service) + (self->arg != NULL ? strlen (self->arg) : 0)
         + strlen (self->source) + strlen (self->params_json);
}

GCancellable *
dhf_core_invocation_abandon_locked (DhfInvocation *self, GMainContext **context)
{
  self->abandoned = TRUE;
  /* The object may be finalizing in another thread, blocked on the lock
   * we hold: its cancellable is still alive, itself must not be touched
   * after we return. */
  if (self->cancellable == NULL)
    return NULL;
  *context = g_main_context_ref (self->context);
  return g_object_ref (self->cancellable);
}

/**
 * dhf_invocation_get_kind:
 * @self: a #DhfInvocation
 *
 * Returns: %DHF_INVOCATION_CALL for a call, %DHF_INVOCATION_STREAM for a
 *   request to open a stream
 *
 * Since: 0.2
 */
DhfInvocationKind
dhf_invocation_get_kind (DhfInvocation *self)
{
  g_return_val_if_fail (DHF_IS_INVOCATION (self), DHF_INVOCATION_CALL);
  return self->kind;
}

/**
 * dhf_invocation_get_service:
 * @self: a #DhfInvocation
 *
 * Returns: (transfer none): the service called, without its argument
 *
 * Since: 0.2
 */
const gchar *
dhf_invocation_get_service (DhfInvocation *self)
{
  g_return_val_if_fail (DHF_IS_INVOCATION (self), NULL);
  return self->service;
}

/**
 * dhf_invocation_get_argument:
 * @self: a #DhfInvocation
 *
 * Returns: (nullable) (transfer none): the argument of "SERVICE+ARG", or
 *   %NULL when the call had none
 *
 * Since: 0.2
 */
const gchar *
dhf_invocation_get_argument (DhfInvocation *self)
{
  g_return_val_if_fail (DHF_IS_INVOCATION (self), NULL);
  return self->arg;
}

/**
 * dhf_invocation_get_source:
 * @self: a #DhfInvocation
 *
 * Returns: (transfer none): the calling domain, as dhfd established it
 *   from the transport ("dom0" for the host)
 *
 * Since: 0.2
 */
const gchar *
dhf_invocation_get_source (DhfInvocation *self)
{
  g_return_val_if_fail (DHF_IS_INVOCATION (self), NULL);
  return self->source;
}

/**
 * dhf_invocation_get_params_json:
 * @self: a #DhfInvocation
 *
 * Returns: (transfer none): the call's parameters as JSON text ("null"
 *   when there were none, and for stream requests)
 *
 * Since: 0.2
 */
const gchar *
dhf_invocation_get_params_json (DhfInvocation *self)
{
  g_return_val_if_fail (DHF_IS_INVOCATION (self), NULL);
  return self->params_json;
}

/**
 * dhf_invocation_get_cancellable:
 * @self: a #DhfInvocation
 *
 * The cancellable is cancelled, in the handler's main context, when the
 * caller gives up (timeout, cancellation, the caller's connection or ours
 * going away); answers are dropped from then on.
 *
 * Returns: (transfer none): the invocation's #GCancellable
 *
 * Since: 0.2
 */
GCancellable *
dhf_invocation_get_cancellable (DhfInvocation *self)
{
  GCancellable *cancellable;
  gboolean cancel = FALSE;

  g_return_val_if_fail (DHF_IS_INVOCATION (self), NULL);
  /* Made on demand: most handlers answer at once and never ask. */
  g_mutex_lock (&self->core->lock);
  if (self->cancellable == NULL)
    {
      self->cancellable = g_cancellable_new ();
      cancel = self->abandoned;
    }
  cancellable = self->cancellable;
  g_mutex_unlock (&self->core->lock);
  if (cancel)
    g_cancellable_cancel (cancellable);
  return cancellable;
}

/**
 * dhf_invocation_return_json:
 * @self: a #DhfInvocation
 * @result_json: (nullable): the result as JSON text, or %NULL for null
 *
 * Answers a call with its result. Invalid JSON answers the caller with
 * %DHF_ERROR_FAILED instead; a result that does not fit in one message
 * (1 MiB, the result framed as {"result":...}) with
 * %DHF_ERROR_LIMIT_EXCEEDED, so that the caller can ask for less. Only the
 * first answer counts.
 *
 * Returns: %TRUE if @result_json was sent (or dropped because the caller
 *   gave up); %FALSE if it was invalid or too large and an error went
 *   instead
 *
 * Since: 0.2
 */
gboolean
dhf_invocation_return_json (DhfInvocation *self, const gchar *result_json)
{
  g_autoptr (GError) error = NULL;
  g_autoptr (GString) body = NULL;
  GByteArray *frame;

  g_return_val_if_fail (DHF_IS_INVOCATION (self), FALSE);
  if (result_json != NULL
      && !dhf_core_json_validate (result_json, DHF_XDM_MAX_DEPTH - 1, "the result", &error))
    {
      g_prefix_error (&error, "%s returned an invalid result: ", self->service);
      dhf_invocation_return_error (self, DHF_ERROR_FAILED, error->message);
      return FALSE;
    }
  body = g_string_sized_new (result_json != NULL ? strlen (result_json) + 16 : 2);
  if (result_json != NULL)
    {
      g_string_append (body, "{\"result\":");
      g_string_append (body, result_json);
      g_string_append_c (body, '}');
    }
  else
    g_string_append (body, "{}");
  if (body->len > DHF_XDM_MAX_BODY)
    {
      g_autofree gchar *text = g_strdup_printf (
          "%s returned a result of %zu bytes: it does not fit in one message of 1 MiB "
          "(%u bytes, with its framing); ask for less",
          self->service, strlen (result_json), DHF_XDM_MAX_BODY);

      dhf_invocation_return_error (self, DHF_ERROR_LIMIT_EXCEEDED, text);
      return FALSE;
    }
  frame = dhf_core_scratch_frame ();
  dhf_xdm_append_text (frame, DHF_XDM_REPLY, self->id, body->str, body->len);
  if (!send_answer (self, frame))
    g_critical ("%s: the invocation of %s was answered already", G_STRFUNC, self->service);
  return TRUE;
}

/**
 * dhf_invocation_return_error:
 * @self: a #DhfInvocation
 * @code: a #DhfError code
 * @message: what went wrong, for the caller
 *
 * Answers a call (or refuses a stream) with an error; the caller receives
 * it in %DHF_ERROR with @code and @message.
 *
 * Since: 0.2
 */
void
dhf_invocation_return_error (DhfInvocation *self, DhfError code, const gchar *message)
{
  GByteArray *frame;

  g_return_if_fail (DHF_IS_INVOCATION (self));
  frame = dhf_core_scratch_frame ();
  dhf_xdm_append_error (frame, self->id, code, message != NULL ? message : "");
  if (!send_answer (self, frame))
    g_critical ("%s: the invocation of %s was answered already", G_STRFUNC, self->service);
}

/**
 * dhf_invocation_return_gerror:
 * @self: a #DhfInvocation
 * @error: the error
 *
 * Answers with @error: its code if it is in %DHF_ERROR, else
 * %DHF_ERROR_FAILED with its message.
 *
 * Since: 0.2
 */
void
dhf_invocation_return_gerror (DhfInvocation *self, const GError *error)
{
  g_return_if_fail (DHF_IS_INVOCATION (self));
  g_return_if_fail (error != NULL);
  if (error->domain == DHF_ERROR && error->code >= 0 && error->code < DHF_ERROR_LAST)
    dhf_invocation_return_error (self, (DhfError) error->code, error->message);
  else
    dhf_invocation_return_error (self, DHF_ERROR_FAILED, error->message);
}

/**
 * dhf_invocation_accept_stream:
 * @self: a #DhfInvocation of kind %DHF_INVOCATION_STREAM
 * @error: return location for a #GError
 *
 * Accepts a request to open a stream; the returned stream is connected to
 * the opener's.
 *
 * Returns: (transfer full): the stream, or %NULL with @error set
 *   (%DHF_ERROR_INVALID_STATE for a call or an invocation answered
 *   already, %DHF_ERROR_CANCELLED when the opener gave up)
 *
 * Since: 0.2
 */
DhfStream *
dhf_invocation_accept_stream (DhfInvocation *self, GError **error)
{
  DhfClientCore *core;
  DhfStream *stream = NULL;
  GByteArray *frame;
  gchar body[64];

  g_return_val_if_fail (DHF_IS_INVOCATION (self), NULL);
  g_return_val_if_fail (error == NULL || *error == NULL, NULL);
  core = self->core;
  if (self->kind != DHF_INVOCATION_STREAM)
    {
      g_set_error (error, DHF_ERROR, DHF_ERROR_INVALID_STATE, "%s: not a stream request",
                   self->service);
      return NULL;
    }
  g_mutex_lock (&core->lock);
  if (self->answered)
    g_set_error (error, DHF_ERROR, DHF_ERROR_INVALID_STATE,
                 "the stream request was answered already");
  else if (self->abandoned || self->gen != core->gen)
    g_set_error (error, DHF_ERROR, DHF_ERROR_CANCELLED, "the opener of the stream gave up");
  else
    {
      /* In the table before the REPLY goes: the opener may send at once. */
      stream = dhf_core_stream_new_locked (core, self->gen, self->id, self->service, self->source,
                                           self->peer_window);
      self->answered = TRUE;
      if (g_hash_table_lookup (core->invocations, GUINT_TO_POINTER (self->id)) == self)
        g_hash_table_remove (core->invocations, GUINT_TO_POINTER (self->id));
      g_snprintf (body, sizeof (body), "{\"window\":%u}", DHF_STREAM_WINDOW);
      frame = dhf_core_scratch_frame ();
      dhf_xdm_append_text (frame, DHF_XDM_REPLY, self->id, body, strlen (body));
      (void) dhf_core_send_locked (core, self->gen, frame->data, frame->len, NULL, 0);
    }
  g_mutex_unlock (&core->lock);
  return stream;
}
