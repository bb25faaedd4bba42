/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

#include <gio/gio.h>
#include <json.h>
#include <sys/types.h>

#include "dhf-policy-service.h"

G_BEGIN_DECLS

/* The XDM router: every connection of every transport ends up here as a
 * connected stream socket plus the identity the transport established
 * (DhfXdmPeer). The router frames and validates what arrives
 * (dhf-xdm-codec.h), keeps the service registry, the topic subscriptions,
 * the calls and streams in flight, checks every call, stream and delivery
 * against the admin policy, and enforces the limits of DhfXdmLimits so
 * that no connection can stall or starve another. It runs on the main
 * context; it never blocks (sockets are non-blocking, policy evaluation
 * does not block, "ask" waits asynchronously).
 *
 * Identity: a message's source domain is the peer's, always. A message
 * that names another source is answered with DHF_ERROR_NOT_AUTHORIZED.
 *
 * Request ids: the requests dhfd sends on a connection (the CALLs and
 * STREAM_OPENs it forwards to a provider) have ids from 0x80000000 up,
 * and never one in use on that connection by a request or stream of the
 * peer's; peers should number their own requests from 1 up (below
 * 0x80000000). A stream is known on each connection by the id of its OPEN
 * there, so the two ranges keep STREAM_DATA/CREDIT/CLOSE unambiguous; a
 * STREAM_OPEN whose id is already in use there is refused with
 * DHF_ERROR_INVALID_ARGS.
 *
 * Sessions: a channel's host side stays open when the program in the
 * guest exits, so on DHF_XDM_TRANSPORT_CHANNEL a HELLO on a running
 * session starts a new one on the same connection (what the old one had
 * goes as if the connection had closed); elsewhere it is a protocol
 * error. */

typedef enum
{
  DHF_XDM_TRANSPORT_CHANNEL, /* virtio-serial / Xen channel socket of a domain */
  DHF_XDM_TRANSPORT_VSOCK,   /* AF_VSOCK, peer CID mapped to its domain */
  DHF_XDM_TRANSPORT_UNIX,    /* dhfd's local socket: dom0 */
} DhfXdmTransport;

const gchar *dhf_xdm_transport_to_string (DhfXdmTransport transport);

/* Who is at the other end, as the transport established it. The router
 * copies what it keeps. */
typedef struct
{
  DhfXdmTransport transport;
  const gchar *domain; /* the domain's name; "dom0" for the unix socket */
  const gchar *uuid;   /* NULL for dom0 */
  uid_t uid;           /* unix: SO_PEERCRED; otherwise (uid_t) -1 */
  pid_t pid;           /* unix: SO_PEERCRED; otherwise 0 */
} DhfXdmPeer;

/* dhfd.conf [XDM]; every value has a default (dhf_xdm_limits_init()). */
typedef struct
{
  guint max_calls_in_flight;  /* per source domain, as caller (MaxCallsInFlight=256) */
  gsize max_queued_bytes;     /* per connection, outgoing (MaxQueuedBytes=4 MiB): above it
                               * new calls to the peer get DHF_ERROR_LIMIT_EXCEEDED and
                               * events to it are dropped (and counted) */
  gsize max_connection_bytes; /* per connection, outgoing hard cap (4 x max_queued_bytes):
                               * a peer that lets its queue reach it is disconnected.
                               * 0 means 4 x max_queued_bytes; the router raises it to
                               * max_queued_bytes + one frame at least */
  guint max_registrations;    /* services per domain (MaxRegistrations=64) */
  guint max_subscriptions;    /* topics per domain (MaxSubscriptions=256) */
  guint max_streams;          /* streams per domain as opener, open or being opened
                               * (MaxStreams=64); at most half of them (at least 1)
                               * to any one provider domain */
  guint max_dom0_clients;     /* connections on the unix socket (MaxClients=4096) */
  guint max_pending_asks;     /* per source domain (MaxPendingQuestions=8) */
  guint ask_timeout_ms;       /* AskTimeout=30 (seconds in the file) */
  guint hello_timeout_ms;     /* a vsock or unix connection must say HELLO within this (10 s) */
  /* Connections of one domain other than dom0 (MaxConnectionsPerDomain=8):
   * the channel is always taken, vsock ones beyond it are refused. */
  guint max_domain_connections;
} DhfXdmLimits;

void dhf_xdm_limits_init (DhfXdmLimits *limits);

/* The largest HELLO body taken before a session starts. */
#define DHF_XDM_ROUTER_HELLO_MAX_BODY 4096

/* A question for the user ("ask" rules). */
typedef struct
{
  const gchar *service;  /* "org.example.Sync1" */
  const gchar *argument; /* NULL for none */
  const gchar *source;
  const gchar *target;
  const gchar *rule; /* "FILE:LINE" of the deciding rule */
  gboolean stream;   /* a stream open rather than a call */
} DhfXdmQuestion;

/* Asks the user; must call done(allow, done_data) exactly once on the main
 * context, unless cancellable is cancelled first (the router cancels it on
 * its timeout or when the caller goes away; done must then not be called).
 * The router answers "deny" on timeout. */
typedef void (*DhfXdmAskDone) (gboolean allow, gpointer done_data);
typedef void (*DhfXdmAsker) (const DhfXdmQuestion *question, GCancellable *cancellable,
                             DhfXdmAskDone done, gpointer done_data, gpointer user_data);

/* The framework service org.dhf.framework.Switch: source (the caller's
 * domain, "dom0" for dom0's clients) asks for target ("dom0", a domain's
 * name, "@next" or "@previous") to be put on screen. The handler answers
 * later, through done, on the main context: the focused domain's name, or
 * an error (DHF_ERROR: its code is what the caller gets). done must be
 * called exactly once, also after cancellable was cancelled (the caller
 * gave up, timed out or went away): the router then sends nothing and
 * only forgets the call. A domain has at most one switch with the handler:
 * until done is called for it, the domain's next Switch is refused
 * (DHF_ERROR_LIMIT_EXCEEDED), also when its call has ended. */
typedef void (*DhfXdmSwitchDone) (const gchar *focused, const GError *error, gpointer done_data);
typedef void (*DhfXdmSwitchHandler) (const gchar *source, const gchar *target,
                                     GCancellable *cancellable, DhfXdmSwitchDone done,
                                     gpointer done_data, gpointer user_data);

/* What the framework service org.dhf.framework.ListAppliances tells about
 * one domain. */
typedef struct
{
  gchar *name;
  gchar *role;  /* "environment", "service", NULL for a foreign domain */
  gchar *state; /* "running", "shut-off", ... */
} DhfXdmDomainEntry;

void dhf_xdm_domain_entry_free (DhfXdmDomainEntry *entry);
/* Returns every domain dhfd manages (DhfXdmDomainEntry, with free func). */
typedef GPtrArray *(*DhfXdmDirectory) (gpointer user_data);

/* Told when the router has closed a connection (the fd is closed).
 * error: NULL after an orderly end (EOF at a frame boundary,
 * dhf_xdm_router_close_domain), else why (DHF_ERROR_PROTOCOL for a peer
 * that broke the protocol, including end of file in the middle of a frame;
 * DHF_ERROR_TIMEOUT for no HELLO within hello_timeout_ms;
 * DHF_ERROR_LIMIT_EXCEEDED for one whose queue hit the hard cap;
 * DHF_ERROR_DISCONNECTED for one that ended the session with ERROR id 0;
 * the socket error, in G_IO_ERROR, otherwise). established: a session
 * reached WELCOME on the connection. Transports use both to reconnect
 * channels with a backoff that grows when the peer misbehaves. It runs
 * from the main loop after the router has forgotten the connection (its
 * id is no longer listed), so it may add or close connections. */
typedef void (*DhfXdmClosedFunc) (guint64 connection_id, const GError *error, gboolean established,
                                  gpointer user_data);

#define DHF_TYPE_XDM_ROUTER (dhf_xdm_router_get_type ())
G_DECLARE_FINAL_TYPE (DhfXdmRouter, dhf_xdm_router, DHF, XDM_ROUTER, GObject)

/* policy decides (and audits) every call, stream and delivery. lookup
 * describes domains for the policy (role, tags, vendor); may be NULL in
 * tests (domains are then plain names). */
DhfXdmRouter *dhf_xdm_router_new (DhfPolicyService *policy, const DhfXdmLimits *limits,
                                  DhfPolicyDomainLookup lookup, gpointer lookup_data);
void dhf_xdm_router_set_directory (DhfXdmRouter *self, DhfXdmDirectory directory,
                                   gpointer user_data);
/* NULL asker: "ask" rules deny at once ("no prompt agent"). */
void dhf_xdm_router_set_asker (DhfXdmRouter *self, DhfXdmAsker asker, gpointer user_data);

/* NULL handler (the default): org.dhf.framework.Switch is answered
 * DHF_ERROR_NOT_SUPPORTED. Calls already handed to a handler keep it. */
void dhf_xdm_router_set_switch_handler (DhfXdmRouter *self, DhfXdmSwitchHandler handler,
                                        gpointer user_data);

/* Takes ownership of fd, a connected stream socket (made non-blocking
 * here). Returns the connection's id (never 0). The router then waits for
 * HELLO: until it comes, any other frame, or one with a body over
 * DHF_XDM_ROUTER_HELLO_MAX_BODY, ends the connection as soon as its header
 * is in. closed (may be NULL) is called once when it closes the
 * connection, but not from within this function nor from
 * dhf_xdm_router_close_connection(), nor at finalization. On the unix
 * transport beyond max_dom0_clients, and on vsock beyond
 * max_domain_connections of the domain, the connection is refused: fd is
 * closed and 0 returned with DHF_ERROR_LIMIT_EXCEEDED. */
guint64 dhf_xdm_router_add_connection (DhfXdmRouter *self, gint fd, const DhfXdmPeer *peer,
                                       DhfXdmClosedFunc closed, gpointer closed_data,
                                       GError **error);
/* Closes one connection (its calls fail with DHF_ERROR_UNAVAILABLE for
 * their callers, its registrations and subscriptions go). */
void dhf_xdm_router_close_connection (DhfXdmRouter *self, guint64 connection_id);
/* Closes every connection of domain (it stopped, or was removed), as
 * dhf_xdm_router_close_connection() does, except that each connection's
 * closed func is called (error NULL), from within this function: the
 * transports learn that their connection is gone. */
void dhf_xdm_router_close_domain (DhfXdmRouter *self, const gchar *domain);

/* What the lookup says of domains (role, tags, vendor) may have changed:
 * decisions the router remembers (for org.dhf.framework.ListAppliances)
 * are made again. */
void dhf_xdm_router_domains_changed (DhfXdmRouter *self);

/* Publishes an event from dom0 (dhfd itself), e.g. appliance state
 * changes on org.dhf.framework.ApplianceState. data may be NULL. */
void dhf_xdm_router_publish (DhfXdmRouter *self, const gchar *topic, json_object *data);

/* For D-Bus (org.dhf.Framework1.Xdm) and dhfctl xdm, each "aa{sv}":
 *   connections:   id t, domain s, transport s, uid u (unix only),
 *                  pid u (unix only), connected-at x (µs, real time),
 *                  session-started-at x (µs, real time, of the current
 *                  WELCOME; absent before HELLO), client s (the HELLO's,
 *                  when it named one), calls-in-flight u, queued-bytes t, calls t (routed
 *                  from it), denied t, dropped-events t, services as,
 *                  topics as
 *   services:      service s, domain s, connection t, calls t
 *   subscriptions: topic s, domain s, connection t, delivered t, dropped t */
GVariant *dhf_xdm_router_list_connections (DhfXdmRouter *self);
GVariant *dhf_xdm_router_list_services (DhfXdmRouter *self);
GVariant *dhf_xdm_router_list_subscriptions (DhfXdmRouter *self);
guint dhf_xdm_router_get_n_connections (DhfXdmRouter *self);

G_END_DECLS
