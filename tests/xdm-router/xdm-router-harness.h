/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

#include <gio/gio.h>
#include <json.h>

#include "dhf-authority.h"
#include "dhf-policy-service.h"
#include "dhf-policy-store.h"
#include "dhf-xdm-codec.h"
#include "dhf-xdm-router.h"

G_BEGIN_DECLS

/* The router in-process: a policy written to a temporary directory, a
 * router over it, and simulated domains ("peers"), each the test's end of
 * a socketpair() whose other end the router holds. Peers speak frames with
 * the codec; waiting iterates the main context (where the router runs)
 * and reads what arrived for every peer that is not "slow". */

typedef struct _Fixture Fixture;
typedef struct _Peer Peer;

typedef enum
{
  ASK_NONE,  /* no asker registered */
  ASK_YES,   /* answers yes at once */
  ASK_NO,    /* answers no from an idle */
  ASK_NEVER, /* never answers */
} AskMode;

typedef struct
{
  guint64 id;
  gboolean has_error;
  GQuark error_domain;
  gint error_code;
  gboolean established;
} ClosedRecord;

typedef struct
{
  gchar *service;
  gchar *argument;
  gchar *source;
  gchar *target;
  gchar *rule;
  gboolean stream;
  GCancellable *cancellable;
} Question;

struct _Fixture
{
  gchar *root;
  DhfPolicyStore *store;
  DhfAuthority *authority;
  DhfPolicyService *policy;
  DhfXdmRouter *router;
  DhfXdmLimits limits;
  GPtrArray *peers;     /* Peer (owned) */
  GArray *closed;       /* ClosedRecord */
  GPtrArray *questions; /* Question (owned) */
  AskMode ask_mode;
};

struct _Peer
{
  Fixture *f;
  gint fd;
  guint64 id;
  gchar *domain;
  GByteArray *in;
  gboolean eof;
  gboolean slow; /* never read (until it is no longer slow) */
  guint32 next_id;
};

typedef struct
{
  DhfXdmHeader header;
  DhfXdmMessage msg; /* parsed; for STREAM_DATA raw points into frame */
  guint8 *frame;
  gsize length;
} Frame;

/* The policy every test runs with (tests/xdm-router/xdm-router-harness.c). */
extern const gchar *const harness_policy;

/* How many times the router (or the policy service) asked the harness to
 * describe a domain: two per policy evaluation of the router. */
extern guint harness_lookups;

/* tweak may adjust the limits (NULL: the harness defaults). */
void fixture_setup (Fixture *f, void (*tweak) (DhfXdmLimits *limits));
void fixture_teardown (Fixture *f);
void fixture_set_ask_mode (Fixture *f, AskMode mode);
/* Iterates the main context until cond (data) holds; fails the test after
 * a generous time. */
void fixture_wait (Fixture *f, gboolean (*cond) (gpointer data), gpointer data);
/* Runs the main context until nothing is pending, then reads what
 * arrived. */
void fixture_flush (Fixture *f);
/* The closed() record for connection id, NULL when none came. */
const ClosedRecord *fixture_closed (Fixture *f, guint64 id);

/* A connection of domain over transport (uid 1000, pid 4242 on unix). */
Peer *peer_connect (Fixture *f, const gchar *domain, DhfXdmTransport transport);
/* peer_connect() + HELLO/WELCOME; channel for domains, unix for "dom0". */
Peer *peer_join (Fixture *f, const gchar *domain);
guint32 peer_next_id (Peer *p);
/* Sends a frame with body json text (NULL: empty). */
void peer_send (Peer *p, DhfXdmType type, guint32 id, const gchar *json);
void peer_sendf (Peer *p, DhfXdmType type, guint32 id, const gchar *format, ...)
    G_GNUC_PRINTF (4, 5);
void peer_send_data (Peer *p, guint32 id, const guint8 *data, gsize length);
void peer_send_bytes (Peer *p, const void *data, gsize length);
/* Waits for the next frame. */
Frame *peer_recv (Peer *p);
/* Waits for the next frame and checks its type and id (any id when id is
 * -1). */
Frame *peer_expect (Peer *p, DhfXdmType type, gint64 id);
/* Waits for ERROR id with code; returns its message. */
gchar *peer_expect_error (Peer *p, guint32 id, DhfError code);
/* Waits for the end of the connection; the frames before it are returned
 * (Frame, owned). */
GPtrArray *peer_expect_eof (Peer *p);
/* PING/PONG round trip: everything the router did for this peer's earlier
 * frames is done, and (since the router writes in order) every frame it
 * sent to any peer before is readable. Asserts nothing else came first. */
void peer_sync (Peer *p);
/* Whether a complete frame is buffered (after a sync). */
gboolean peer_has_frame (Peer *p);
/* Closes the test's end. */
void peer_close (Peer *p);

/* Calls service of target (NULL: none) from p with params; returns the
 * request id. */
guint32 peer_call (Peer *p, const gchar *service, const gchar *target, const gchar *params);

void frame_free (Frame *frame);
G_DEFINE_AUTOPTR_CLEANUP_FUNC (Frame, frame_free)

const gchar *json_string_member (json_object *obj, const gchar *key);
gint64 json_int_member (json_object *obj, const gchar *key);

/* A member of an "aa{sv}" entry list: the entry whose key has value. */
GVariant *variant_find (GVariant *list, const gchar *key, const gchar *value);

G_END_DECLS
