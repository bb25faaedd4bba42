/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

#include "dhf-xdm-conn.h"
#include "dhf-xdm-router.h"

G_BEGIN_DECLS

/* The router's state, shared by dhf-xdm-router.c and the framework
 * services (dhf-xdm-framework.c). Nothing here leaves dhfd's main
 * thread. */

#define DHF_XDM_FRAMEWORK_PREFIX "org.dhf.framework."

typedef struct _DhfXdmLink DhfXdmLink;
typedef struct _DhfXdmDomain DhfXdmDomain;
typedef struct _DhfXdmService DhfXdmService;
typedef struct _DhfXdmRegistration DhfXdmRegistration;
typedef struct _DhfXdmTopic DhfXdmTopic;
typedef struct _DhfXdmSubscription DhfXdmSubscription;

/* Something with a deadline, in the router's one timer heap. */
typedef enum
{
  DHF_XDM_TIMED_HELLO,
  DHF_XDM_TIMED_CALL,
  DHF_XDM_TIMED_ASK,
} DhfXdmTimedKind;

typedef struct
{
  gint64 deadline; /* monotonic µs */
  guint index;     /* 1 + position in the heap; 0 when not scheduled */
  DhfXdmTimedKind kind;
} DhfXdmTimed;

/* Everything a domain's connections share: the limits count per domain. */
struct _DhfXdmDomain
{
  gchar *name;
  gboolean is_dom0;
  guint n_links;
  guint calls_in_flight;
  guint n_registrations;
  guint n_subscriptions;
  guint n_streams; /* as opener, open or being opened */
  guint n_asks;
  GHashTable *quota; /* const DhfPolicyRule * -> calls in flight admitted by it */
  /* provider domain name (owned) -> how many of n_streams go to it */
  GHashTable *streams_to;
};

/* One connection. */
struct _DhfXdmLink
{
  DhfXdmConn conn; /* first: the poller hands the router &link->conn */
  DhfXdmRouter *router;
  guint64 id;
  DhfXdmDomain *domain;
  DhfXdmTransport transport;
  gchar *uuid;
  uid_t uid;
  pid_t pid;
  gint64 connected_at;       /* real time, µs */
  gint64 session_started_at; /* real time, µs, of the current WELCOME; 0 before */
  gchar *client;             /* the current session's HELLO "client", made loggable */
  DhfXdmClosedFunc closed;
  gpointer closed_data;

  gboolean welcomed;
  gboolean doomed;      /* closed in the next settle */
  gboolean flush_first; /* ... after one attempt to write what is queued */
  gboolean notify;      /* call closed() when it goes */
  gboolean dirty;       /* in the router's list of links to flush */
  gboolean warned;      /* a body violation was logged once */
  gboolean resetting;   /* its session is being dropped: nothing is sent to it */
  GError *error;        /* why it is doomed; NULL for an orderly end */
  DhfXdmTimed hello;

  GHashTable *calls_in;     /* the peer's request id -> DhfXdmCall it made; NULL when none yet */
  GHashTable *calls_out;    /* id dhfd chose -> DhfXdmCall it provides */
  GHashTable *streams;      /* stream id on this connection -> DhfXdmStream */
  GPtrArray *registrations; /* DhfXdmRegistration */
  GPtrArray *subscriptions; /* DhfXdmSubscription */
  guint32 next_id;          /* for requests dhfd sends: 0x80000000 and up */

  guint calls_in_flight;
  guint64 n_calls;   /* calls and streams routed from it */
  guint64 n_denied;  /* refused by the policy */
  guint64 n_dropped; /* events it missed */
};

struct _DhfXdmService
{
  gchar *name;
  GPtrArray *regs; /* DhfXdmRegistration, at most one per domain */
};

struct _DhfXdmRegistration
{
  DhfXdmService *service;
  DhfXdmLink *link;
  guint64 calls;
  /* ListAppliances: source domain name (owned) -> whether it may call the
   * service here, as decided in list generation listable_gen. */
  GHashTable *listable;
  guint64 listable_gen;
};

struct _DhfXdmTopic
{
  gchar *name;
  GPtrArray *subs; /* DhfXdmSubscription */
};

struct _DhfXdmSubscription
{
  DhfXdmTopic *topic;
  DhfXdmLink *link;
  guint64 delivered;
  guint64 dropped;
};

struct _DhfXdmRouter
{
  GObject parent_instance;

  DhfPolicyService *policy;
  DhfXdmLimits limits;
  DhfPolicyDomainLookup lookup;
  gpointer lookup_data;
  DhfXdmDirectory directory;
  gpointer directory_data;
  DhfXdmAsker asker;
  gpointer asker_data;
  DhfXdmSwitchHandler switch_handler;
  gpointer switch_data;

  GMainContext *context;
  DhfXdmPoller *poller;
  guint64 next_link_id;
  guint n_unix;
  GHashTable *links;    /* &link->id -> DhfXdmLink (owned) */
  GHashTable *domains;  /* name -> DhfXdmDomain (owned) */
  GHashTable *services; /* name -> DhfXdmService (owned) */
  GHashTable *topics;   /* name -> DhfXdmTopic (owned) */
  GPtrArray *heap;      /* DhfXdmTimed, a binary min-heap by deadline */
  GString *text;        /* where forwarded requests are written */
  GPtrArray *dirty;     /* DhfXdmLink with output to flush */
  GPtrArray *doomed;    /* DhfXdmLink to close */
  GPtrArray *grants;    /* streams with credit to relay (DhfXdmStream, private) */
  gsize data_cap;       /* STREAM_DATA that would take a non-empty queue over this resets
                         * its stream */
  guint busy;           /* inside a handler: closing waits for settle */
  gboolean settling;
  /* ListAppliances: the generation of the decisions registrations
   * remember, and the policy's it is for. */
  guint64 list_gen;
  guint64 list_policy_gen;
  /* org.dhf.framework.Switch: the domains (names, owned) with a switch
   * handed to the switch handler and not yet answered by it. */
  GHashTable *switching;
};

/* Fills domain for the policy: the lookup's description, or a plain name
 * (dom0 for "dom0"). The pointers are valid until the main loop runs. */
void dhf_xdm_router_describe (DhfXdmRouter *self, const gchar *name, DhfPolicyDomain *domain);

/* Evaluates the XDM query service[+arg] source target with policy
 * without auditing it: a question, not a decision acted on. */
DhfPolicyAction dhf_xdm_router_evaluate (DhfXdmRouter *self, DhfPolicy *policy,
                                         const gchar *service, const gchar *arg,
                                         const gchar *source, const gchar *target,
                                         DhfPolicyDecision *decision);

/* The framework services dhfd offers on dom0. Returns the call's result
 * (a new reference), or NULL with an error (DHF_ERROR_NOT_FOUND for a name
 * it does not offer). */
json_object *dhf_xdm_framework_call (DhfXdmRouter *self, DhfXdmLink *caller, const gchar *service,
                                     json_object *params, GError **error);

/* A framework call answered later (org.dhf.framework.Switch). The router
 * keeps the call pending meanwhile, so that its deadline, the caller's
 * CANCEL and the caller going away still end it (and cancel the
 * cancellable); the framework answers exactly once, with
 * dhf_xdm_pending_return() or dhf_xdm_pending_return_error(), which also
 * free it. An answer to a call that ended meanwhile is dropped. */
typedef struct _DhfXdmPending DhfXdmPending;

GCancellable *dhf_xdm_pending_get_cancellable (DhfXdmPending *pending);
/* result: taken. */
void dhf_xdm_pending_return (DhfXdmPending *pending, json_object *result);
void dhf_xdm_pending_return_error (DhfXdmPending *pending, const GError *error);

/* TRUE when service is one of the framework services answered later. */
gboolean dhf_xdm_framework_is_async (const gchar *service);
/* Starts one: TRUE when it will answer through pending; FALSE with an
 * error for the caller when it cannot start (pending is then not used). */
gboolean dhf_xdm_framework_call_async (DhfXdmRouter *self, DhfXdmLink *caller, const gchar *service,
                                       json_object *params, DhfXdmPending *pending, GError **error);

G_END_DECLS
