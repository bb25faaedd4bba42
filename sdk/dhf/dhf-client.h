/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

#if !defined(DHF_INSIDE) && !defined(DHF_COMPILATION)
#error "Only <dhf/dhf.h> can be included directly."
#endif

#include <gio/gio.h>

#include <dhf/dhf-invocation.h>
#include <dhf/dhf-stream.h>

G_BEGIN_DECLS

/**
 * DhfClient:
 *
 * A connection to dhfd's cross-domain messaging (XDM): offer services,
 * call services of other domains, publish and receive events, open byte
 * streams. Every message goes through dhfd, which checks it against the
 * admin policy; the domain a message comes from is what dhfd knows of the
 * transport, never what the client claims.
 *
 * Addresses:
 *
 * - `channel:` the appliance's virtio-serial port named `org.dhf.xdm.0`,
 *   found through `/sys/class/virtio-ports/` (inside a guest);
 *   `channel:/dev/vport1p1` names the device itself.
 * - `vsock:` (host CID 2, port 5477) or `vsock:CID:PORT`.
 * - `unix:PATH`: a dom0 client on dhfd's local socket
 *   (default `/run/dhf/xdm.sock`).
 * - `listen:PATH`: listens on PATH and waits for dhfd to connect, exactly
 *   as a host-side virtio-serial socket does (simulated domains in tests
 *   and demos).
 *
 * The default address (%NULL) is `$DHF_XDM_ADDRESS` if set, else the
 * channel when a port of that name exists, else `unix:/run/dhf/xdm.sock`.
 *
 * I/O runs on a thread of its own. Service and event handlers run in the
 * thread-default main context of the thread that registered them
 * (dhf_client_register_service(), dhf_client_subscribe()); async
 * completions in that of the thread that called the async function;
 * notifications of #DhfClient:connected in that of the thread that
 * created the client. Synchronous calls may be made from any thread (not
 * from a handler whose context must run for the answer to come).
 *
 * Deadlines are enforced by the client as well as by dhfd: a call fails
 * with %DHF_ERROR_TIMEOUT after exactly its timeout even when dhfd is
 * gone, and dhfd is told to CANCEL it.
 *
 * When the connection is lost (dhfd restarts, the guest's port is
 * reconnected), a client with #DhfClient:auto-reconnect set (the default)
 * connects again with a backoff of 100 ms to 2 s, says HELLO again and
 * registers its services and subscriptions again; requests that were in
 * flight fail with %DHF_ERROR_DISCONNECTED.
 *
 * Since: 0.2
 */
/**
 * DHF_CLIENT_MAX_HANDLER_QUEUE:
 *
 * How many bytes of incoming calls and events a #DhfClient holds for its
 * handlers (whose main contexts run them) before it stops reading from
 * dhfd until they have drained to half of it. Nothing is dropped in the
 * client: dhfd queues what it cannot send, and over its own limit it
 * drops events for this client and refuses calls to it with
 * %DHF_ERROR_LIMIT_EXCEEDED. While the client does not read, answers to
 * its own requests wait too.
 *
 * Since: 0.2
 */
#define DHF_CLIENT_MAX_HANDLER_QUEUE (4u * 1024u * 1024u)

/**
 * DHF_CLIENT_MAX_OUTGOING_QUEUE:
 *
 * How many bytes a #DhfClient queues for dhfd when the connection does
 * not take them at once. Requests (calls, publishing, registering,
 * subscribing, opening streams) that would go beyond it fail with
 * %DHF_ERROR_LIMIT_EXCEEDED; stream writes wait. Answers the client must
 * send (replies, PONG) that would go beyond twice this mean dhfd does not
 * read: the connection is dropped (and re-established as usual).
 *
 * Since: 0.2
 */
#define DHF_CLIENT_MAX_OUTGOING_QUEUE (8u * 1024u * 1024u)

#define DHF_TYPE_CLIENT (dhf_client_get_type ())
G_DECLARE_FINAL_TYPE (DhfClient, dhf_client, DHF, CLIENT, GObject)

/**
 * DhfServiceHandler:
 * @client: the client
 * @invocation: (transfer none): the call or stream request; reply to it with
 *   dhf_invocation_return_json(), dhf_invocation_return_error() or (for a
 *   stream) dhf_invocation_accept_stream(), now or later
 * @user_data: data given at registration
 *
 * Handles one request for a registered service.
 *
 * Since: 0.2
 */
typedef void (*DhfServiceHandler) (DhfClient *client, DhfInvocation *invocation,
                                   gpointer user_data);

/**
 * DhfEventHandler:
 * @client: the client
 * @topic: the event's topic
 * @source: the domain that published it ("dom0" for the host)
 * @data_json: (nullable): the event's data as JSON text
 * @user_data: data given to dhf_client_subscribe()
 *
 * Receives one event of a subscribed topic.
 *
 * Since: 0.2
 */
typedef void (*DhfEventHandler) (DhfClient *client, const gchar *topic, const gchar *source,
                                 const gchar *data_json, gpointer user_data);

DhfClient *dhf_client_new (const gchar *address);

const gchar *dhf_client_get_address (DhfClient *self);
/* The domain dhfd identifies this client as (from WELCOME), NULL before. */
const gchar *dhf_client_get_domain (DhfClient *self);
gboolean dhf_client_get_connected (DhfClient *self);
gboolean dhf_client_get_auto_reconnect (DhfClient *self);
void dhf_client_set_auto_reconnect (DhfClient *self, gboolean auto_reconnect);

/* Connects and says HELLO; TRUE once dhfd's WELCOME arrived. For channel
 * and listen: addresses this waits for dhfd to connect. */
gboolean dhf_client_connect_sync (DhfClient *self, GCancellable *cancellable, GError **error);
void dhf_client_connect (DhfClient *self, GCancellable *cancellable, GAsyncReadyCallback callback,
                         gpointer user_data);
gboolean dhf_client_connect_finish (DhfClient *self, GAsyncResult *result, GError **error);
/* Closes the connection; pending requests fail with DHF_ERROR_CANCELLED.
 * No reconnection follows. */
void dhf_client_close (DhfClient *self);

/* Offers service ("org.example.Echo1") to other domains; handler runs in
 * the thread-default main context of the caller. Returns a registration id
 * (> 0) for dhf_client_unregister_service(), or 0 with an error (dhfd
 * refused it: already provided, limit exceeded, not connected). */
guint dhf_client_register_service (DhfClient *self, const gchar *service, DhfServiceHandler handler,
                                   gpointer user_data, GDestroyNotify notify, GError **error);
gboolean dhf_client_unregister_service (DhfClient *self, guint registration_id, GError **error);

/* Calls service ("SERVICE" or "SERVICE+ARG") of domain target (NULL: the
 * one dhfd's policy picks) with params_json (JSON text, NULL for none);
 * timeout_ms <= 0 means the default (25 s). Returns the result as JSON
 * text ("null" when the provider returned nothing). */
gchar *dhf_client_call_sync (DhfClient *self, const gchar *service, const gchar *target,
                             const gchar *params_json, gint timeout_ms, GCancellable *cancellable,
                             GError **error);
void dhf_client_call (DhfClient *self, const gchar *service, const gchar *target,
                      const gchar *params_json, gint timeout_ms, GCancellable *cancellable,
                      GAsyncReadyCallback callback, gpointer user_data);
gchar *dhf_client_call_finish (DhfClient *self, GAsyncResult *result, GError **error);

/* Receives events of topic; returns a subscription id (> 0) or 0 with an
 * error. */
guint dhf_client_subscribe (DhfClient *self, const gchar *topic, DhfEventHandler handler,
                            gpointer user_data, GDestroyNotify notify, GError **error);
gboolean dhf_client_unsubscribe (DhfClient *self, guint subscription_id, GError **error);
/* Publishes an event; dhfd delivers it to the subscribers policy lets
 * receive it. Does not wait. */
gboolean dhf_client_publish (DhfClient *self, const gchar *topic, const gchar *data_json,
                             GError **error);

/* Opens a byte stream to service ("SERVICE" or "SERVICE+ARG") of target
 * (NULL: policy picks); the provider accepts it in its handler. */
DhfStream *dhf_client_open_stream_sync (DhfClient *self, const gchar *service, const gchar *target,
                                        GCancellable *cancellable, GError **error);
void dhf_client_open_stream (DhfClient *self, const gchar *service, const gchar *target,
                             GCancellable *cancellable, GAsyncReadyCallback callback,
                             gpointer user_data);
DhfStream *dhf_client_open_stream_finish (DhfClient *self, GAsyncResult *result, GError **error);

G_END_DECLS
