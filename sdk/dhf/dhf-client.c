/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include "config.h"

#include "dhf-client-private.h"

struct _DhfClient
{
  GObject parent_instance;

  DhfClientCore *core;
  gchar *address; /* construct property, before the core exists */
};

enum
{
  PROP_0,
  PROP_ADDRESS,
  PROP_DOMAIN,
  PROP_CONNECTED,
  PROP_AUTO_RECONNECT,
  N_PROPS
};

static GParamSpec *props[N_PROPS];

G_DEFINE_FINAL_TYPE (DhfClient, dhf_client, G_TYPE_OBJECT)

/* ---- GObject -------------------------------------------------------------- */

typedef struct
{
  DhfClient *client;
  gboolean value;
} NotifyData;

static void
notify_data_free (gpointer data)
{
  NotifyData *nd = data;

  g_object_unref (nd->client);
  g_free (nd);
}

static gboolean
notify_connected_cb (gpointer data)
{
  NotifyData *nd = data;
  DhfClientCore *core = nd->client->core;
  gboolean changed;

  g_mutex_lock (&core->lock);
  changed = core->notified_connected != nd->value;
  core->notified_connected = nd->value;
  g_mutex_unlock (&core->lock);
  if (changed)
    {
      g_object_notify_by_pspec (G_OBJECT (nd->client), props[PROP_DOMAIN]);
      g_object_notify_by_pspec (G_OBJECT (nd->client), props[PROP_CONNECTED]);
    }
  return G_SOURCE_REMOVE;
}

/* Emits notify::connected (and ::domain) in the client's context, one
 * emission per transition, in order. */
void
dhf_core_emit_connected (DhfClientCore *core, gboolean value)
{
  DhfClient *client = g_weak_ref_get (&core->client);
  NotifyData *nd;

  if (client == NULL)
    return;
  nd = g_new0 (NotifyData, 1);
  nd->client = client;
  nd->value = value;
  dhf_core_run_in_context (core->owner_context, notify_connected_cb, nd, notify_data_free);
}

static void
dhf_client_constructed (GObject *object)
{
  DhfClient *self = DHF_CLIENT (object);
  DhfClientCore *core = dhf_core_new (self->address);

  G_OBJECT_CLASS (dhf_client_parent_class)->constructed (object);
  self->core = core;
  g_weak_ref_set (&core->client, self);
  core->thread = g_thread_new ("dhf-client", dhf_core_io_thread_main, dhf_core_ref (core));
}

static void
dhf_client_dispose (GObject *object)
{
  DhfClient *self = DHF_CLIENT (object);
  DhfClientCore *core = self->core;
  g_autoptr (GPtrArray) handlers = g_ptr_array_new ();
  GHashTableIter iter;
  gpointer value;

  if (core == NULL || core->thread == NULL)
    {
      G_OBJECT_CLASS (dhf_client_parent_class)->dispose (object);
      return;
    }
  dhf_core_close (core, "the client was finalized");

  g_mutex_lock (&core->lock);
  g_hash_table_iter_init (&iter, core->handlers);
  while (g_hash_table_iter_next (&iter, NULL, &value))
    g_ptr_array_add (handlers, value);
  g_hash_table_remove_all (core->handlers);
  g_hash_table_remove_all (core->services);
  g_hash_table_remove_all (core->topics);
  g_atomic_int_set (&core->quit, TRUE);
  g_mutex_unlock (&core->lock);
  for (guint i = 0; i < handlers->len; i++)
    dhf_core_handler_deactivate (core, handlers->pdata[i]);

  g_main_context_wakeup (core->context);
  /* The last reference may be dropped on the I/O thread itself (a GTask it
   * completed): it then exits once this dispatch returns. */
  if (g_thread_self () == core->thread)
    g_thread_unref (core->thread);
  else
    g_thread_join (core->thread);
  core->thread = NULL;
  G_OBJECT_CLASS (dhf_client_parent_class)->dispose (object);
}

static void
dhf_client_finalize (GObject *object)
{
  DhfClient *self = DHF_CLIENT (object);

  g_clear_pointer (&self->core, dhf_core_unref);
  g_free (self->address);
  G_OBJECT_CLASS (dhf_client_parent_class)->finalize (object);
}

static void
dhf_client_get_property (GObject *object, guint prop_id, GValue *value, GParamSpec *pspec)
{
  DhfClient *self = DHF_CLIENT (object);

  switch (prop_id)
    {
      case PROP_ADDRESS:
        g_value_set_string (value, dhf_client_get_address (self));
        break;
      case PROP_DOMAIN:
        g_mutex_lock (&self->core->lock);
        g_value_set_string (value, self->core->domain);
        g_mutex_unlock (&self->core->lock);
        break;
      case PROP_CONNECTED:
        g_value_set_boolean (value, dhf_client_get_connected (self));
        break;
      case PROP_AUTO_RECONNECT:
        g_value_set_boolean (value, dhf_client_get_auto_reconnect (self));
        break;
      default:
        G_OBJECT_WARN_INVALID_PROPERTY_ID (object, prop_id, pspec);
    }
}

static void
dhf_client_set_property (GObject *object, guint prop_id, const GValue *value, GParamSpec *pspec)
{
  DhfClient *self = DHF_CLIENT (object);

  switch (prop_id)
    {
      case PROP_ADDRESS:
        self->address = g_value_dup_string (value);
        break;
      case PROP_AUTO_RECONNECT:
        dhf_client_set_auto_reconnect (self, g_value_get_boolean (value));
        break;
      default:
        G_OBJECT_WARN_INVALID_PROPERTY_ID (object, prop_id, pspec);
    }
}

static void
dhf_client_class_init (DhfClientClass *klass)
{
  GObjectClass *object_class = G_OBJECT_CLASS (klass);

  object_class->constructed = dhf_client_constructed;
  object_class->dispose = dhf_client_dispose;
  object_class->finalize = dhf_client_finalize;
  object_class->get_property = dhf_client_get_property;
  object_class->set_property = dhf_client_set_property;

  /**
   * DhfClient:address:
   *
   * The XDM address (see #DhfClient), or %NULL at construction for the
   * default one; reads back the address in use.
   *
   * Since: 0.2
   */
  props[PROP_ADDRESS]
      = g_param_spec_string ("address", NULL, NULL, NULL,
                             G_PARAM_READWRITE | G_PARAM_CONSTRUCT_ONLY | G_PARAM_STATIC_STRINGS);
  /**
   * DhfClient:domain:
   *
   * The domain dhfd identifies this client as, from its WELCOME; %NULL
   * before the first connection.
   *
   * Since: 0.2
   */
  props[PROP_DOMAIN]
      = g_param_spec_string ("domain", NULL, NULL, NULL, G_PARAM_READABLE | G_PARAM_STATIC_STRINGS);
  /**
   * DhfClient:connected:
   *
   * Whether the client is connected to dhfd (and, after a reconnection,
   * its services and subscriptions are restored). Change notifications are
   * emitted in the thread-default main context of the thread that created
   * the client.
   *
   * Since: 0.2
   */
  props[PROP_CONNECTED] = g_param_spec_boolean ("connected", NULL, NULL, FALSE,
                                                G_PARAM_READABLE | G_PARAM_STATIC_STRINGS);
  /**
   * DhfClient:auto-reconnect:
   *
   * Whether a lost connection is re-established (with a backoff of 100 ms
   * to 2 s). Default %TRUE.
   *
   * Since: 0.2
   */
  props[PROP_AUTO_RECONNECT] = g_param_spec_boolean ("auto-reconnect", NULL, NULL, TRUE,
                                                     G_PARAM_READWRITE | G_PARAM_STATIC_STRINGS);
  g_object_class_install_properties (object_class, N_PROPS, props);
}

static void
dhf_client_init (DhfClient *self)
{
}

/* ---- public API ------------------------------------------------------------- */

/**
 * dhf_client_new:
 * @address: (nullable): an XDM address (`channel:`, `vsock:`, `unix:PATH`,
 *   `listen:PATH`), or %NULL for the default one
 *
 * Creates a client; it does not connect until dhf_client_connect_sync()
 * or dhf_client_connect(). An invalid address makes connecting fail with
 * %DHF_ERROR_INVALID_ARGS.
 *
 * The thread-default main context of the calling thread is where
 * notifications of #DhfClient:connected are emitted.
 *
 * Returns: (transfer full): a new #DhfClient
 *
 * Since: 0.2
 */
DhfClient *
dhf_client_new (const gchar *address)
{
  return g_object_new (DHF_TYPE_CLIENT, "address", address, NULL);
}

/**
 * dhf_client_get_address:
 * @self: a #DhfClient
 *
 * Returns: (transfer none): the address the client connects to
 *
 * Since: 0.2
 */
const gchar *
dhf_client_get_address (DhfClient *self)
{
  g_return_val_if_fail (DHF_IS_CLIENT (self), NULL);
  return self->core->address;
}

/**
 * dhf_client_get_domain:
 * @self: a #DhfClient
 *
 * Returns: (nullable) (transfer none): the domain dhfd identifies this
 *   client as (from its WELCOME), or %NULL before the first connection
 *
 * Since: 0.2
 */
const gchar *
dhf_client_get_domain (DhfClient *self)
{
  const gchar *domain;

  g_return_val_if_fail (DHF_IS_CLIENT (self), NULL);
  /* Set once per connection; the string stays valid until the next
   * WELCOME names another domain (which a given transport never does). */
  g_mutex_lock (&self->core->lock);
  domain = self->core->domain;
  g_mutex_unlock (&self->core->lock);
  return domain;
}

/**
 * dhf_client_get_connected:
 * @self: a #DhfClient
 *
 * Returns: whether the client is connected to dhfd now
 *
 * Since: 0.2
 */
gboolean
dhf_client_get_connected (DhfClient *self)
{
  gboolean connected;

  g_return_val_if_fail (DHF_IS_CLIENT (self), FALSE);
  g_mutex_lock (&self->core->lock);
  connected = self->core->state == DHF_CONN_CONNECTED;
  g_mutex_unlock (&self->core->lock);
  return connected;
}

/**
 * dhf_client_get_auto_reconnect:
 * @self: a #DhfClient
 *
 * Returns: whether a lost connection is re-established
 *
 * Since: 0.2
 */
gboolean
dhf_client_get_auto_reconnect (DhfClient *self)
{
  gboolean value;

  g_return_val_if_fail (DHF_IS_CLIENT (self), FALSE);
  g_mutex_lock (&self->core->lock);
  value = self->core->auto_reconnect;
  g_mutex_unlock (&self->core->lock);
  return value;
}

/**
 * dhf_client_set_auto_reconnect:
 * @self: a #DhfClient
 * @auto_reconnect: whether to re-establish a lost connection
 *
 * Sets #DhfClient:auto-reconnect. Turning it off does not stop a
 * reconnection already under way.
 *
 * Since: 0.2
 */
void
dhf_client_set_auto_reconnect (DhfClient *self, gboolean auto_reconnect)
{
  gboolean changed;

  g_return_if_fail (DHF_IS_CLIENT (self));
  g_mutex_lock (&self->core->lock);
  changed = self->core->auto_reconnect != !!auto_reconnect;
  self->core->auto_reconnect = !!auto_reconnect;
  g_mutex_unlock (&self->core->lock);
  if (changed)
    g_object_notify_by_pspec (G_OBJECT (self), props[PROP_AUTO_RECONNECT]);
}

/**
 * dhf_client_connect_sync:
 * @self: a #DhfClient
 * @cancellable: (nullable): a #GCancellable
 * @error: return location for a #GError
 *
 * Connects and says HELLO; returns once dhfd's WELCOME arrived. For
 * `channel:` and `listen:` addresses this waits for dhfd to connect (the
 * listening socket exists as soon as the call started). `unix:` and
 * `vsock:` fail at once when dhfd cannot be reached
 * (%DHF_ERROR_DISCONNECTED). No common protocol version:
 * %DHF_ERROR_PROTOCOL. Cancelling stops the waiting, not a connection
 * attempt already under way (dhf_client_close() does).
 *
 * Returns: %TRUE once connected
 *
 * Since: 0.2
 */
gboolean
dhf_client_connect_sync (DhfClient *self, GCancellable *cancellable, GError **error)
{
  guint64 serial;

  g_return_val_if_fail (DHF_IS_CLIENT (self), FALSE);
  g_return_val_if_fail (error == NULL || *error == NULL, FALSE);
  serial = dhf_core_get_serials (self->core);
  if (!dhf_core_request_connect (self->core, error))
    return FALSE;
  return dhf_core_wait_connected (self->core, serial, cancellable, error);
}

static void
connect_thread (GTask *task, gpointer source_object, gpointer task_data, GCancellable *cancellable)
{
  GError *error = NULL;

  if (dhf_core_wait_connected (DHF_CLIENT (source_object)->core, *(guint64 *) task_data,
                               cancellable, &error))
    g_task_return_boolean (task, TRUE);
  else
    g_task_return_error (task, error);
}

/**
 * dhf_client_connect:
 * @self: a #DhfClient
 * @cancellable: (nullable): a #GCancellable
 * @callback: (scope async) (nullable): called when connected or failed
 * @user_data: (closure): data for @callback
 *
 * Connects asynchronously; see dhf_client_connect_sync(). For a `listen:`
 * address the socket is listening when this returns. @callback runs in
 * the thread-default main context of the caller.
 *
 * Since: 0.2
 */
void
dhf_client_connect (DhfClient *self, GCancellable *cancellable, GAsyncReadyCallback callback,
                    gpointer user_data)
{
  g_autoptr (GTask) task = NULL;
  GError *error = NULL;
  guint64 *serials;

  g_return_if_fail (DHF_IS_CLIENT (self));
  task = g_task_new (self, cancellable, callback, user_data);
  g_task_set_source_tag (task, dhf_client_connect);
  serials = g_new (guint64, 1);
  *serials = dhf_core_get_serials (self->core);
  g_task_set_task_data (task, serials, g_free);
  if (!dhf_core_request_connect (self->core, &error))
    {
      g_task_return_error (task, error);
      return;
    }
  g_task_run_in_thread (task, connect_thread);
}

/**
 * dhf_client_connect_finish:
 * @self: a #DhfClient
 * @result: the #GAsyncResult
 * @error: return location for a #GError
 *
 * Returns: %TRUE once connected
 *
 * Since: 0.2
 */
gboolean
dhf_client_connect_finish (DhfClient *self, GAsyncResult *result, GError **error)
{
  g_return_val_if_fail (g_task_is_valid (result, self), FALSE);
  return g_task_propagate_boolean (G_TASK (result), error);
}

/**
 * dhf_client_close:
 * @self: a #DhfClient
 *
 * Closes the connection (and the listening socket of a `listen:`
 * address). Requests in flight fail with %DHF_ERROR_CANCELLED, streams
 * are reset, invocations not answered yet are cancelled. No reconnection
 * follows; services and subscriptions stay registered in the client and
 * are registered again by the next dhf_client_connect_sync().
 *
 * Since: 0.2
 */
void
dhf_client_close (DhfClient *self)
{
  g_return_if_fail (DHF_IS_CLIENT (self));
  dhf_core_close (self->core, "the client was closed");
}

/**
 * dhf_client_register_service:
 * @self: a #DhfClient
 * @service: the service name, e.g. "org.example.Echo1"
 * @handler: (scope notified) (closure user_data) (destroy notify): called
 *   for each request
 * @user_data: data for @handler
 * @notify: (nullable): frees @user_data when the registration goes
 * @error: return location for a #GError
 *
 * Offers @service to other domains (dhfd's policy decides who may call
 * it). @handler runs in the thread-default main context of the thread
 * calling this function, once per call or stream request; it answers with
 * dhf_invocation_return_json() and friends, now or later. Blocks until
 * dhfd has accepted the registration. The registration is restored after
 * a reconnection.
 *
 * @notify runs when the registration goes (dhf_client_unregister_service(),
 * or the client's finalization) once no handler runs any more, and also
 * when the registration fails.
 *
 * Returns: a registration id (> 0), or 0 with @error set (dhfd refused it:
 *   %DHF_ERROR_EXISTS, %DHF_ERROR_NOT_AUTHORIZED for reserved names,
 *   %DHF_ERROR_LIMIT_EXCEEDED; %DHF_ERROR_DISCONNECTED when not connected)
 *
 * Since: 0.2
 */
guint
dhf_client_register_service (DhfClient *self, const gchar *service, DhfServiceHandler handler,
                             gpointer user_data, GDestroyNotify notify, GError **error)
{
  DhfClientCore *core;
  DhfHandler *h;
  g_autoptr (GString) body = NULL;
  DhfPending p = { 0 };
  gboolean ok;
  guint id;

  g_return_val_if_fail (DHF_IS_CLIENT (self), 0);
  g_return_val_if_fail (handler != NULL, 0);
  g_return_val_if_fail (error == NULL || *error == NULL, 0);
  core = self->core;
  if (service == NULL || !dhf_xdm_name_is_valid (service))
    {
      g_set_error (error, DHF_ERROR, DHF_ERROR_INVALID_ARGS, "invalid service name '%s'",
                   service != NULL ? service : "(null)");
      if (notify != NULL)
        notify (user_data);
      return 0;
    }

  /* Attached before it is in the tables: the I/O thread queues calls to
   * it (and takes its context) as soon as it is there. */
  h = dhf_core_handler_new (core, TRUE, service);
  h->service_handler = handler;
  h->user_data = user_data;
  h->notify = notify;
  g_source_attach (&h->source, g_main_context_get_thread_default ());

  g_mutex_lock (&core->lock);
  if (!dhf_core_require_connected_locked (core, error)
      || g_hash_table_contains (core->services, service))
    {
      if (error == NULL || *error == NULL)
        g_set_error (error, DHF_ERROR, DHF_ERROR_EXISTS, "%s is already registered by this client",
                     service);
      g_mutex_unlock (&core->lock);
      dhf_core_handler_deactivate (core, h); /* calls notify */
      return 0;
    }
  /* In the table before REGISTER goes out (under the same hold of the
   * lock): dhfd may route a call to it right after its REPLY. */
  h->id = id = core->next_handler_id++;
  g_hash_table_insert (core->handlers, GUINT_TO_POINTER (id), h);
  g_hash_table_insert (core->services, h->name, h);
  body = g_string_new (NULL);
  g_string_printf (body, "{\"service\":\"%s\"}", service);
  dhf_core_pending_sync_init (&p, core, PENDING_SIMPLE);
  ok = dhf_core_request_sync_locked (core, &p, DHF_XDM_REGISTER, body, DHF_XDM_DEFAULT_TIMEOUT_MS,
                                     error);
  if (!ok)
    {
      if (g_hash_table_lookup (core->handlers, GUINT_TO_POINTER (id)) == h)
        g_hash_table_remove (core->handlers, GUINT_TO_POINTER (id));
      if (g_hash_table_lookup (core->services, service) == h)
        g_hash_table_remove (core->services, service);
    }
  g_mutex_unlock (&core->lock);
  g_cond_clear (&p.cond);
  dhf_core_pending_clear_fields (&p);
  if (!ok)
    {
      g_prefix_error (error, "cannot register %s: ", service);
      dhf_core_handler_deactivate (core, h);
      return 0;
    }
  return id;
}

/* Unregisters or unsubscribes a handler: kind is DHF_XDM_UNREGISTER or
 * DHF_XDM_UNSUBSCRIBE. */
static gboolean
remove_handler (DhfClient *self, guint id, gboolean is_service, GError **error)
{
  DhfClientCore *core = self->core;
  DhfHandler *h;
  gboolean tell_dhfd = FALSE;
  gboolean ok = TRUE;

  g_mutex_lock (&core->lock);
  h = g_hash_table_lookup (core->handlers, GUINT_TO_POINTER (id));
  if (h == NULL || h->is_service != is_service)
    {
      g_mutex_unlock (&core->lock);
      g_set_error (error, DHF_ERROR, DHF_ERROR_NOT_FOUND, "no %s with id %u",
                   is_service ? "registration" : "subscription", id);
      return FALSE;
    }
  g_hash_table_remove (core->handlers, GUINT_TO_POINTER (id));
  if (is_service)
    {
      g_hash_table_remove (core->services, h->name);
      tell_dhfd = TRUE;
    }
  else
    {
      GPtrArray *subs = g_hash_table_lookup (core->topics, h->name);

      g_ptr_array_remove (subs, h);
      tell_dhfd = subs->len == 0;
      if (tell_dhfd)
        g_hash_table_remove (core->topics, h->name);
    }
  /* Also while the registrations are being restored (after WELCOME): it
   * goes out after the restoring REGISTER / SUBSCRIBE, and under the same
   * hold of the lock as the tables' change, so that a SUBSCRIBE of another
   * thread cannot overtake it. */
  tell_dhfd = tell_dhfd && core->state >= DHF_CONN_RESTORING;
  if (tell_dhfd)
    {
      g_autoptr (GString) body = g_string_new (NULL);
      DhfPending p = { 0 };

      g_string_printf (body, is_service ? "{\"service\":\"%s\"}" : "{\"topic\":\"%s\"}", h->name);
      dhf_core_pending_sync_init (&p, core, PENDING_SIMPLE);
      ok = dhf_core_request_sync_locked (core, &p,
                                         is_service ? DHF_XDM_UNREGISTER : DHF_XDM_UNSUBSCRIBE,
                                         body, DHF_XDM_DEFAULT_TIMEOUT_MS, error);
      g_cond_clear (&p.cond);
      dhf_core_pending_clear_fields (&p);
    }
  g_mutex_unlock (&core->lock);
  dhf_core_handler_deactivate (core, h);
  return ok;
}

/**
 * dhf_client_unregister_service:
 * @self: a #DhfClient
 * @registration_id: the id dhf_client_register_service() returned
 * @error: return location for a #GError
 *
 * Withdraws a service. Requests already queued for its handler are
 * refused (%DHF_ERROR_NOT_FOUND). The registration is gone from the
 * client even when dhfd could not be told (not connected: nothing to
 * tell; an error from dhfd is returned).
 *
 * Returns: %TRUE on success; %FALSE with %DHF_ERROR_NOT_FOUND for an
 *   unknown id, or dhfd's error
 *
 * Since: 0.2
 */
gboolean
dhf_client_unregister_service (DhfClient *self, guint registration_id, GError **error)
{
  g_return_val_if_fail (DHF_IS_CLIENT (self), FALSE);
  g_return_val_if_fail (error == NULL || *error == NULL, FALSE);
  return remove_handler (self, registration_id, TRUE, error);
}

static GString *
build_call_body (const gchar *service, const gchar *target, const gchar *params_json,
                 gint *timeout_ms, GError **error)
{
  g_autoptr (GString) body = NULL;

  if (*timeout_ms <= 0)
    *timeout_ms = DHF_XDM_DEFAULT_TIMEOUT_MS;
  if (*timeout_ms > DHF_XDM_MAX_TIMEOUT_MS)
    {
      g_set_error (error, DHF_ERROR, DHF_ERROR_INVALID_ARGS, "timeout over %d ms",
                   DHF_XDM_MAX_TIMEOUT_MS);
      return NULL;
    }
  if (params_json != NULL
      && !dhf_core_json_validate (params_json, DHF_XDM_MAX_DEPTH - 1, "params", error))
    return NULL;
  body = dhf_core_start_service_body (service, target, error);
  if (body == NULL)
    return NULL;
  g_string_append_printf (body, ",\"timeout_ms\":%d", *timeout_ms);
  if (params_json != NULL)
    {
      g_string_append (body, ",\"params\":");
      g_string_append (body, params_json);
    }
  g_string_append_c (body, '}');
  if (!dhf_core_check_body_size (body, error))
    return NULL;
  return g_steal_pointer (&body);
}

/**
 * dhf_client_call_sync:
 * @self: a #DhfClient
 * @service: "SERVICE" or "SERVICE+ARG"
 * @target: (nullable): the domain to call, or %NULL to let dhfd's policy
 *   pick the one provider the caller may call
 * @params_json: (nullable): the parameters as JSON text, or %NULL for none
 * @timeout_ms: how long to wait; <= 0 for the default (25 s), at most
 *   600000
 * @cancellable: (nullable): a #GCancellable
 * @error: return location for a #GError
 *
 * Calls a service of another domain and waits for its result, from any
 * thread. The deadline is enforced here as well as by dhfd (which may be
 * gone): after exactly @timeout_ms the call fails with %DHF_ERROR_TIMEOUT
 * and dhfd is told to CANCEL it. Cancelling @cancellable fails it with
 * %DHF_ERROR_CANCELLED (and CANCELs it too). Errors of the provider or of
 * dhfd arrive with their #DhfError code (%DHF_ERROR_NOT_AUTHORIZED,
 * %DHF_ERROR_NOT_FOUND, %DHF_ERROR_UNAVAILABLE, ...); a lost connection is
 * %DHF_ERROR_DISCONNECTED.
 *
 * Returns: (transfer full): the result as JSON text ("null" when the
 *   provider returned nothing), or %NULL with @error set
 *
 * Since: 0.2
 */
gchar *
dhf_client_call_sync (DhfClient *self, const gchar *service, const gchar *target,
                      const gchar *params_json, gint timeout_ms, GCancellable *cancellable,
                      GError **error)
{
  g_autoptr (GString) body = NULL;
  DhfPending p = { 0 };
  gchar *result = NULL;

  g_return_val_if_fail (DHF_IS_CLIENT (self), NULL);
  g_return_val_if_fail (error == NULL || *error == NULL, NULL);
  body = build_call_body (service, target, params_json, &timeout_ms, error);
  if (body == NULL)
    return NULL;
  p.kind = PENDING_CALL;
  if (dhf_core_request_sync (self->core, &p, DHF_XDM_CALL, body, timeout_ms, cancellable, error))
    result = g_steal_pointer (&p.result);
  dhf_core_pending_clear_fields (&p);
  return result;
}

/**
 * dhf_client_call:
 * @self: a #DhfClient
 * @service: "SERVICE" or "SERVICE+ARG"
 * @target: (nullable): the domain to call, or %NULL to let policy pick
 * @params_json: (nullable): the parameters as JSON text, or %NULL
 * @timeout_ms: how long to wait; <= 0 for the default (25 s)
 * @cancellable: (nullable): a #GCancellable
 * @callback: (scope async) (nullable): called with the result
 * @user_data: (closure): data for @callback
 *
 * Calls a service asynchronously; see dhf_client_call_sync(). @callback
 * runs in the thread-default main context of the caller. Any number of
 * calls may be in flight (up to dhfd's limit).
 *
 * Since: 0.2
 */
void
dhf_client_call (DhfClient *self, const gchar *service, const gchar *target,
                 const gchar *params_json, gint timeout_ms, GCancellable *cancellable,
                 GAsyncReadyCallback callback, gpointer user_data)
{
  g_autoptr (GString) body = NULL;
  GError *error = NULL;
  DhfPending *p;
  GTask *task;

  g_return_if_fail (DHF_IS_CLIENT (self));
  task = g_task_new (self, cancellable, callback, user_data);
  g_task_set_source_tag (task, dhf_client_call);
  body = build_call_body (service, target, params_json, &timeout_ms, &error);
  if (body == NULL)
    {
      g_task_return_error (task, error);
      g_object_unref (task);
      return;
    }
  p = dhf_core_pending_new (self->core, PENDING_CALL);
  p->task = task;
  p->cancellable = cancellable != NULL ? g_object_ref (cancellable) : NULL;
  dhf_core_request_async (self->core, p, DHF_XDM_CALL, body, timeout_ms);
}

/**
 * dhf_client_call_finish:
 * @self: a #DhfClient
 * @result: the #GAsyncResult
 * @error: return location for a #GError
 *
 * Returns: (transfer full): the result as JSON text, or %NULL with @error
 *   set
 *
 * Since: 0.2
 */
gchar *
dhf_client_call_finish (DhfClient *self, GAsyncResult *result, GError **error)
{
  g_return_val_if_fail (g_task_is_valid (result, self), NULL);
  return g_task_propagate_pointer (G_TASK (result), error);
}

/**
 * dhf_client_subscribe:
 * @self: a #DhfClient
 * @topic: the topic, e.g. "org.example.Alerts"
 * @handler: (scope notified) (closure user_data) (destroy notify): called
 *   for each event
 * @user_data: data for @handler
 * @notify: (nullable): frees @user_data when the subscription goes
 * @error: return location for a #GError
 *
 * Receives the events of @topic that dhfd's policy lets this domain
 * receive. @handler runs in the thread-default main context of the thread
 * calling this function. Blocks until dhfd has accepted the subscription
 * (only the first subscription of a topic asks dhfd). Restored after a
 * reconnection. @notify runs when the subscription goes, or fails.
 *
 * Returns: a subscription id (> 0), or 0 with @error set
 *
 * Since: 0.2
 */
guint
dhf_client_subscribe (DhfClient *self, const gchar *topic, DhfEventHandler handler,
                      gpointer user_data, GDestroyNotify notify, GError **error)
{
  DhfClientCore *core;
  DhfHandler *h;
  GPtrArray *subs;
  gboolean first;
  guint id;

  g_return_val_if_fail (DHF_IS_CLIENT (self), 0);
  g_return_val_if_fail (handler != NULL, 0);
  g_return_val_if_fail (error == NULL || *error == NULL, 0);
  core = self->core;
  if (topic == NULL || !dhf_xdm_name_is_valid (topic))
    {
      g_set_error (error, DHF_ERROR, DHF_ERROR_INVALID_ARGS, "invalid topic '%s'",
                   topic != NULL ? topic : "(null)");
      if (notify != NULL)
        notify (user_data);
      return 0;
    }
  /* Attached before it is in the tables (events are queued at once). */
  h = dhf_core_handler_new (core, FALSE, topic);
  h->event_handler = handler;
  h->user_data = user_data;
  h->notify = notify;
  g_source_attach (&h->source, g_main_context_get_thread_default ());

  g_mutex_lock (&core->lock);
  for (;;)
    {
      if (!dhf_core_require_connected_locked (core, error))
        {
          g_mutex_unlock (&core->lock);
          dhf_core_handler_deactivate (core, h); /* calls notify */
          return 0;
        }
      /* Another thread's SUBSCRIBE of the topic is in flight: its outcome
       * decides whether this one is the first. */
      if (!g_hash_table_contains (core->subscribing, topic))
        break;
      g_cond_wait (&core->state_cond, &core->lock);
    }
  h->id = id = core->next_handler_id++;
  subs = g_hash_table_lookup (core->topics, topic);
  if (subs == NULL)
    {
      subs = g_ptr_array_new ();
      g_hash_table_insert (core->topics, g_strdup (topic), subs);
    }
  first = subs->len == 0;
  g_ptr_array_add (subs, h);
  g_hash_table_insert (core->handlers, GUINT_TO_POINTER (id), h);
  if (first)
    {
      g_autoptr (GString) body = g_string_new (NULL);
      DhfPending p = { 0 };
      gboolean ok;

      g_string_printf (body, "{\"topic\":\"%s\"}", topic);
      g_hash_table_add (core->subscribing, g_strdup (topic));
      dhf_core_pending_sync_init (&p, core, PENDING_SIMPLE);
      ok = dhf_core_request_sync_locked (core, &p, DHF_XDM_SUBSCRIBE, body,
                                         DHF_XDM_DEFAULT_TIMEOUT_MS, error);
      g_cond_clear (&p.cond);
      dhf_core_pending_clear_fields (&p);
      g_hash_table_remove (core->subscribing, topic);
      g_cond_broadcast (&core->state_cond);
      if (!ok)
        {
          if (g_hash_table_lookup (core->handlers, GUINT_TO_POINTER (id)) == h)
            g_hash_table_remove (core->handlers, GUINT_TO_POINTER (id));
          subs = g_hash_table_lookup (core->topics, topic);
          if (subs != NULL && g_ptr_array_remove (subs, h) && subs->len == 0)
            g_hash_table_remove (core->topics, topic);
          g_mutex_unlock (&core->lock);
          g_prefix_error (error, "cannot subscribe to %s: ", topic);
          dhf_core_handler_deactivate (core, h);
          return 0;
        }
    }
  g_mutex_unlock (&core->lock);
  return id;
}

/**
 * dhf_client_unsubscribe:
 * @self: a #DhfClient
 * @subscription_id: the id dhf_client_subscribe() returned
 * @error: return location for a #GError
 *
 * Stops receiving events through that subscription. Events already
 * queued for its handler are dropped.
 *
 * Returns: %TRUE on success; %FALSE with %DHF_ERROR_NOT_FOUND for an
 *   unknown id, or dhfd's error
 *
 * Since: 0.2
 */
gboolean
dhf_client_unsubscribe (DhfClient *self, guint subscription_id, GError **error)
{
  g_return_val_if_fail (DHF_IS_CLIENT (self), FALSE);
  g_return_val_if_fail (error == NULL || *error == NULL, FALSE);
  return remove_handler (self, subscription_id, FALSE, error);
}

/**
 * dhf_client_publish:
 * @self: a #DhfClient
 * @topic: the topic
 * @data_json: (nullable): the event's data as JSON text, or %NULL for none
 * @error: return location for a #GError
 *
 * Publishes an event; dhfd delivers it to the subscribers its policy lets
 * receive it (never back to this connection). Does not wait.
 *
 * Returns: %TRUE when the event was sent; %FALSE with @error for invalid
 *   arguments or when not connected
 *
 * Since: 0.2
 */
gboolean
dhf_client_publish (DhfClient *self, const gchar *topic, const gchar *data_json, GError **error)
{
  DhfClientCore *core;
  g_autoptr (GString) body = NULL;
  gboolean ok;

  g_return_val_if_fail (DHF_IS_CLIENT (self), FALSE);
  g_return_val_if_fail (error == NULL || *error == NULL, FALSE);
  core = self->core;
  if (topic == NULL || !dhf_xdm_name_is_valid (topic))
    {
      g_set_error (error, DHF_ERROR, DHF_ERROR_INVALID_ARGS, "invalid topic '%s'",
                   topic != NULL ? topic : "(null)");
      return FALSE;
    }
  if (data_json != NULL
      && !dhf_core_json_validate (data_json, DHF_XDM_MAX_DEPTH - 1, "data", error))
    return FALSE;
  body = g_string_new (NULL);
  g_string_printf (body, "{\"topic\":\"%s\"", topic);
  if (data_json != NULL)
    {
      g_string_append (body, ",\"data\":");
      g_string_append (body, data_json);
    }
  g_string_append_c (body, '}');
  if (!dhf_core_check_body_size (body, error))
    return FALSE;
  g_mutex_lock (&core->lock);
  ok = dhf_core_require_connected_locked (core, error);
  if (ok)
    {
      GByteArray *frame = dhf_core_scratch_frame ();

      dhf_xdm_append_text (frame, DHF_XDM_PUBLISH, 0, body->str, body->len);
      ok = dhf_core_send_request_locked (core, core->gen, frame->data, frame->len, error);
    }
  g_mutex_unlock (&core->lock);
  return ok;
}

static GString *
build_open_body (const gchar *service, const gchar *target, GError **error)
{
  g_autoptr (GString) body = dhf_core_start_service_body (service, target, error);

  if (body == NULL)
    return NULL;
  g_string_append_printf (body, ",\"window\":%u}", DHF_STREAM_WINDOW);
  return g_steal_pointer (&body);
}

/**
 * dhf_client_open_stream_sync:
 * @self: a #DhfClient
 * @service: "SERVICE" or "SERVICE+ARG"
 * @target: (nullable): the domain, or %NULL to let policy pick
 * @cancellable: (nullable): a #GCancellable
 * @error: return location for a #GError
 *
 * Opens a byte stream to a service of another domain, whose handler
 * accepts it with dhf_invocation_accept_stream(). Waits (up to the
 * default timeout of 25 s) for the provider to accept or refuse.
 *
 * Returns: (transfer full): the stream, or %NULL with @error set
 *
 * Since: 0.2
 */
DhfStream *
dhf_client_open_stream_sync (DhfClient *self, const gchar *service, const gchar *target,
                             GCancellable *cancellable, GError **error)
{
  g_autoptr (GString) body = NULL;
  DhfPending p = { 0 };
  DhfStream *stream = NULL;

  g_return_val_if_fail (DHF_IS_CLIENT (self), NULL);
  g_return_val_if_fail (error == NULL || *error == NULL, NULL);
  body = build_open_body (service, target, error);
  if (body == NULL)
    return NULL;
  p.kind = PENDING_OPEN;
  p.service = g_strdup (service);
  p.target = g_strdup (target);
  if (dhf_core_request_sync (self->core, &p, DHF_XDM_STREAM_OPEN, body, DHF_XDM_DEFAULT_TIMEOUT_MS,
                             cancellable, error))
    stream = g_steal_pointer (&p.stream);
  dhf_core_pending_clear_fields (&p);
  return stream;
}

/**
 * dhf_client_open_stream:
 * @self: a #DhfClient
 * @service: "SERVICE" or "SERVICE+ARG"
 * @target: (nullable): the domain, or %NULL to let policy pick
 * @cancellable: (nullable): a #GCancellable
 * @callback: (scope async) (nullable): called when the stream is open or refused
 * @user_data: (closure): data for @callback
 *
 * Opens a stream asynchronously; see dhf_client_open_stream_sync().
 *
 * Since: 0.2
 */
void
dhf_client_open_stream (DhfClient *self, const gchar *service, const gchar *target,
                        GCancellable *cancellable, GAsyncReadyCallback callback, gpointer user_data)
{
  g_autoptr (GString) body = NULL;
  GError *error = NULL;
  DhfPending *p;
  GTask *task;

  g_return_if_fail (DHF_IS_CLIENT (self));
  task = g_task_new (self, cancellable, callback, user_data);
  g_task_set_source_tag (task, dhf_client_open_stream);
  body = build_open_body (service, target, &error);
  if (body == NULL)
    {
      g_task_return_error (task, error);
      g_object_unref (task);
      return;
    }
  p = dhf_core_pending_new (self->core, PENDING_OPEN);
  p->task = task;
  p->cancellable = cancellable != NULL ? g_object_ref (cancellable) : NULL;
  p->service = g_strdup (service);
  p->target = g_strdup (target);
  dhf_core_request_async (self->core, p, DHF_XDM_STREAM_OPEN, body, DHF_XDM_DEFAULT_TIMEOUT_MS);
}

/**
 * dhf_client_open_stream_finish:
 * @self: a #DhfClient
 * @result: the #GAsyncResult
 * @error: return location for a #GError
 *
 * Returns: (transfer full): the stream, or %NULL with @error set
 *
 * Since: 0.2
 */
DhfStream *
dhf_client_open_stream_finish (DhfClient *self, GAsyncResult *result, GError **error)
{
  g_return_val_if_fail (g_task_is_valid (result, self), NULL);
  return g_task_propagate_pointer (G_TASK (result), error);
}

void
dhf_core_set_next_request_id (DhfClient *self, guint32 id)
{
  g_mutex_lock (&self->core->lock);
  self->core->next_id = id;
  g_mutex_unlock (&self->core->lock);
}

gsize
dhf_core_get_handler_bytes (DhfClient *self, gboolean *read_paused)
{
  gsize bytes;

  g_mutex_lock (&self->core->lock);
  bytes = self->core->handler_bytes;
  *read_paused = self->core->read_paused;
  g_mutex_unlock (&self->core->lock);
  return bytes;
}
