/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include "config.h"

#include <string.h>
#include <unistd.h>

#include "dhf-xdm-router-private.h"

/* Ids dhfd gives the requests it sends (forwarded CALLs and STREAM_OPENs)
 * are taken from the upper half, which keeps them apart from the ids
 * peers choose for their own requests (libdhf-1 counts up from 1): a
 * stream is known on each connection by the id of its OPEN there, and the
 * two kinds must never meet. The router also checks, so a peer that uses
 * high ids only gets "id in use" for a stream. */
#define FIRST_DHFD_ID 0x80000000u

#define ADD_KEY(obj, key, value)                                                                   \
  json_object_object_add_ex ((obj), (key), (value),                                                \
                             JSON_C_OBJECT_ADD_KEY_IS_NEW | JSON_C_OBJECT_KEY_IS_CONSTANT)

typedef struct _DhfXdmCall DhfXdmCall;
typedef struct _DhfXdmAsk DhfXdmAsk;
typedef struct _DhfXdmStream DhfXdmStream;

/* A call or a stream being opened, from admission until its answer. It
 * keeps copies of the few names it needs, never the request's parsed
 * body (a JSON tree costs many times its text). */
struct _DhfXdmCall
{
  DhfXdmTimed deadline; /* first: the heap hands out DhfXdmTimed */
  DhfXdmLink *caller;
  guint32 caller_id;
  DhfXdmLink *provider; /* NULL until forwarded */
  guint32 provider_id;
  gboolean stream;
  gboolean opened;                 /* the stream was accepted: its counts are the stream's */
  guint32 window;                  /* STREAM_OPEN: the opener's receive window */
  DhfPolicy *policy;               /* keeps quota_rule alive */
  const DhfPolicyRule *quota_rule; /* counted in the caller's domain */
  DhfXdmAsk *ask;
  DhfXdmPending *pending; /* a framework service answering later */
  gchar *service;
  gchar *arg;
  gchar *target;
  /* While the user is asked: the params as text, to forward once allowed
   * (NULL for none). */
  gchar *params;
  gsize params_len;
};

struct _DhfXdmAsk
{
  DhfXdmTimed timeout; /* first */
  DhfXdmRouter *router;
  DhfXdmCall *call;
  GCancellable *cancellable;
};

/* The router's side of a framework call answered later. call is NULL
 * once the call ended (router is then not used: it may be gone). */
struct _DhfXdmPending
{
  DhfXdmRouter *router;
  DhfXdmCall *call;
  GCancellable *cancellable;
};

/* An open stream between two connections (possibly the same one). Each
 * side knows it by its own id. It counts against the opener's domain
 * only (n_streams, and streams_to for the provider's domain). */
struct _DhfXdmStream
{
  DhfXdmLink *a; /* the opener */
  guint32 a_id;
  DhfXdmLink *b; /* the provider */
  guint32 b_id;
  gchar *provider;   /* b's domain, the key of a's streams_to */
  guint64 credit_ab; /* bytes a may still send to b, as granted by b */
  guint64 credit_ba;
  /* Credit granted and not yet relayed: the grants of a burst of
   * STREAM_CREDIT go on as one, and only while neither end's queue is
   * over max_queued_bytes (in the router's grants list meanwhile). */
  guint64 grant_a; /* from b, for a */
  guint64 grant_b;
  gboolean granting;
  gboolean a_done, b_done; /* half-closed */
};

G_DEFINE_TYPE (DhfXdmRouter, dhf_xdm_router, G_TYPE_OBJECT)

static void settle (DhfXdmRouter *self);
static void teardown (DhfXdmRouter *self, DhfXdmLink *link);
static void call_forward (DhfXdmRouter *self, DhfXdmCall *call, json_object *params);

/* --- small things -------------------------------------------------------- */

const gchar *
dhf_xdm_transport_to_string (DhfXdmTransport transport)
{
  switch (transport)
    {
      case DHF_XDM_TRANSPORT_CHANNEL:
        return "channel";
      case DHF_XDM_TRANSPORT_VSOCK:
        return "vsock";
      case DHF_XDM_TRANSPORT_UNIX:
        return "unix";
      default:
        return "unknown";
    }
}

void
dhf_xdm_limits_init (DhfXdmLimits *limits)
{
  limits->max_calls_in_flight = 256;
  limits->max_queued_bytes = 4 * 1024 * 1024;
  limits->max_connection_bytes = 4 * limits->max_queued_bytes;
  limits->max_registrations = 64;
  limits->max_subscriptions = 256;
  limits->max_streams = 64;
  limits->max_dom0_clients = 4096;
  limits->max_domain_connections = 8;
  limits->max_pending_asks = 8;
  limits->ask_timeout_ms = 30 * 1000;
  limits->hello_timeout_ms = 10 * 1000;
}

void
dhf_xdm_domain_entry_free (DhfXdmDomainEntry *entry)
{
  if (entry == NULL)
    return;
  g_free (entry->name);
  g_free (entry->role);
  g_free (entry->state);
  g_free (entry);
}

static gboolean
is_framework_name (const gchar *name)
{
  return g_str_has_prefix (name, DHF_XDM_FRAMEWORK_PREFIX);
}

static gboolean
is_dom0_name (const gchar *name)
{
  return g_str_equal (name, "dom0");
}

void
dhf_xdm_router_describe (DhfXdmRouter *self, const gchar *name, DhfPolicyDomain *domain)
{
  memset (domain, 0, sizeof *domain);
  if (is_dom0_name (name))
    {
      /* Of dom0 the lookup may only say whether it is focused (for
       * @focused rules): it has no role, tags nor vendor. */
      DhfPolicyDomain known = { 0 };
      gboolean focused
          = self->lookup != NULL && self->lookup (name, &known, self->lookup_data) && known.focused;

      domain->name = "dom0";
      domain->is_dom0 = TRUE;
      domain->focused = focused;
      return;
    }
  if (self->lookup != NULL && self->lookup (name, domain, self->lookup_data))
    {
      domain->name = name;
      domain->is_dom0 = FALSE;
      return;
    }
  memset (domain, 0, sizeof *domain);
  domain->name = name;
}

/* Decides (and audits a deny) whether source may reach service[+arg] on
 * target. Returns the policy the decision borrows from. */
static DhfPolicy *
decide (DhfXdmRouter *self, const gchar *service, const gchar *arg, const gchar *source,
        const gchar *target, DhfPolicyDecision *decision)
{
  DhfPolicyDomain src, dst;
  DhfPolicyQuery query = { 0 };

  dhf_xdm_router_describe (self, source, &src);
  dhf_xdm_router_describe (self, target, &dst);
  query.kind = DHF_POLICY_KIND_XDM;
  query.subject = service;
  query.argument = arg;
  query.source = &src;
  query.target = &dst;
  return dhf_policy_service_decide (self->policy, &query, decision);
}

DhfPolicyAction
dhf_xdm_router_evaluate (DhfXdmRouter *self, DhfPolicy *policy, const gchar *service,
                         const gchar *arg, const gchar *source, const gchar *target,
                         DhfPolicyDecision *decision)
{
  DhfPolicyDomain src, dst;
  DhfPolicyQuery query = { 0 };

  dhf_xdm_router_describe (self, source, &src);
  dhf_xdm_router_describe (self, target, &dst);
  query.kind = DHF_POLICY_KIND_XDM;
  query.subject = service;
  query.argument = arg;
  query.source = &src;
  query.target = &dst;
  return dhf_policy_evaluate (policy, &query, decision);
}

static gchar *
describe_rule (const DhfPolicyRule *rule)
{
  if (rule == NULL)
    return g_strdup ("default");
  return g_strdup_printf ("%s:%u", dhf_policy_rule_get_file (rule),
                          dhf_policy_rule_get_line (rule));
}

/* Where the deciding rule is, for a refusal to link's peer: dom0's tools
 * may learn the file and line, guests only that the policy decided (the
 * audit log keeps the rule). */
static gchar *
rule_for_peer (DhfXdmLink *link, const DhfPolicyRule *rule)
{
  if (!link->domain->is_dom0)
    return g_strdup ("denied by the policy");
  if (rule == NULL)
    return g_strdup ("no rule allows it");
  return describe_rule (rule);
}

/* Text a peer chose, fit for the log: control characters (C0, DEL, C1),
 * format characters (bidirectional overrides, ...), line and paragraph
 * separators and backslashes escaped, so that it can forge neither lines
 * nor terminal sequences, and cut to about MAX_LOGGED bytes. */
#define MAX_LOGGED 200

static gchar *
loggable (const gchar *text)
{
  GString *out = g_string_new (NULL);
  const gchar *p = text != NULL ? text : "";

  while (*p != '\0')
    {
      gunichar c = g_utf8_get_char_validated (p, -1);

      if (out->len >= MAX_LOGGED)
        {
          g_string_append (out, "...");
          break;
        }
      if (c == (gunichar) -1 || c == (gunichar) -2)
        {
          g_string_append_printf (out, "\\x%02x", (guint8) *p);
          p++;
          continue;
        }
      if (c == '\\')
        g_string_append (out, "\\\\");
      else if (g_unichar_iscntrl (c) || g_unichar_type (c) == G_UNICODE_FORMAT || c == 0x2028
               || c == 0x2029)
        g_string_append_printf (out, "\\u%04x", c);
      else
        g_string_append_len (out, p, g_utf8_next_char (p) - p);
      p = g_utf8_next_char (p);
    }
  return g_string_free (out, FALSE);
}

/* --- the timer heap -------------------------------------------------------- */

static inline DhfXdmTimed *
heap_at (DhfXdmRouter *self, guint i)
{
  return g_ptr_array_index (self->heap, i);
}

static void
heap_set (DhfXdmRouter *self, guint i, DhfXdmTimed *t)
{
  self->heap->pdata[i] = t;
  t->index = i + 1;
}

static void
heap_up (DhfXdmRouter *self, guint i)
{
  DhfXdmTimed *t = heap_at (self, i);

  while (i > 0)
    {
      guint parent = (i - 1) / 2;
      DhfXdmTimed *p = heap_at (self, parent);

      if (p->deadline <= t->deadline)
        break;
      heap_set (self, i, p);
      i = parent;
    }
  heap_set (self, i, t);
}

static void
heap_down (DhfXdmRouter *self, guint i)
{
  guint n = self->heap->len;
  DhfXdmTimed *t = heap_at (self, i);

  for (;;)
    {
      guint child = 2 * i + 1;

      if (child >= n)
        break;
      if (child + 1 < n && heap_at (self, child + 1)->deadline < heap_at (self, child)->deadline)
        child++;
      if (heap_at (self, child)->deadline >= t->deadline)
        break;
      heap_set (self, i, heap_at (self, child));
      i = child;
    }
  heap_set (self, i, t);
}

static void
timed_cancel (DhfXdmRouter *self, DhfXdmTimed *t)
{
  guint i, last;

  if (t->index == 0)
    return;
  i = t->index - 1;
  last = self->heap->len - 1;
  t->index = 0;
  if (i != last)
    {
      DhfXdmTimed *moved = heap_at (self, last);

      g_ptr_array_set_size (self->heap, last);
      heap_set (self, i, moved);
      heap_down (self, i);
      heap_up (self, moved->index - 1);
    }
  else
    g_ptr_array_set_size (self->heap, last);
}

static void
timed_schedule (DhfXdmRouter *self, DhfXdmTimed *t, DhfXdmTimedKind kind, gint64 deadline)
{
  timed_cancel (self, t);
  t->kind = kind;
  t->deadline = deadline;
  g_ptr_array_add (self->heap, t);
  heap_up (self, self->heap->len - 1);
  dhf_xdm_poller_set_timer (self->poller, deadline);
}

/* --- output ---------------------------------------------------------------- */

static gboolean
link_can_send (DhfXdmLink *link)
{
  return link != NULL && !link->doomed && !link->resetting && link->conn.fd >= 0;
}

static void
doom (DhfXdmRouter *self, DhfXdmLink *link, GError *error, gboolean flush_first)
{
  if (link->doomed)
    return;
  link->doomed = TRUE;
  link->flush_first = flush_first;
  link->error = error != NULL ? g_error_copy (error) : NULL;
  dhf_xdm_conn_stop_reading (&link->conn);
  g_ptr_array_add (self->doomed, link);
}

/* After appending to link's queue: flush it at the end of the dispatch,
 * unless the peer let it reach the hard cap. */
static void
out_done (DhfXdmRouter *self, DhfXdmLink *link)
{
  gsize queued = dhf_xdm_conn_get_queued (&link->conn);

  if (queued == 0)
    return;
  if (queued > self->limits.max_connection_bytes)
    {
      g_autoptr (GError) error = g_error_new (
          DHF_ERROR, DHF_ERROR_LIMIT_EXCEEDED,
          "%" G_GSIZE_FORMAT " bytes queued for it, over the limit of %" G_GSIZE_FORMAT
          " (it does not read)",
          queued, self->limits.max_connection_bytes);

      g_message ("xdm: closing connection %" G_GUINT64_FORMAT " of %s: %s", link->id,
                 link->domain->name, error->message);
      doom (self, link, error, FALSE);
      return;
    }
  if (!link->dirty)
    {
      link->dirty = TRUE;
      g_ptr_array_add (self->dirty, link);
    }
}

static void
send_json (DhfXdmRouter *self, DhfXdmLink *link, DhfXdmType type, guint32 id, json_object *body)
{
  if (!link_can_send (link))
    return;
  dhf_xdm_append_json (dhf_xdm_conn_get_out (&link->conn), type, id, body);
  out_done (self, link);
}

static void send_error (DhfXdmRouter *self, DhfXdmLink *link, guint32 id, DhfError code,
                        const gchar *format, ...) G_GNUC_PRINTF (5, 6);

static void
send_error (DhfXdmRouter *self, DhfXdmLink *link, guint32 id, DhfError code, const gchar *format,
            ...)
{
  g_autofree gchar *message = NULL;
  va_list args;

  if (!link_can_send (link))
    return;
  va_start (args, format);
  message = g_strdup_vprintf (format, args);
  va_end (args);
  dhf_xdm_append_error (dhf_xdm_conn_get_out (&link->conn), id, code, message);
  out_done (self, link);
}

static void
send_gerror (DhfXdmRouter *self, DhfXdmLink *link, guint32 id, const GError *error)
{
  DhfError code = error->domain == DHF_ERROR ? (DhfError) error->code : DHF_ERROR_FAILED;

  send_error (self, link, id, code, "%s", error->message);
}

static void
send_empty (DhfXdmRouter *self, DhfXdmLink *link, DhfXdmType type, guint32 id)
{
  send_json (self, link, type, id, NULL);
}

static inline void
write_le32 (guint8 *p, guint32 v)
{
  p[0] = v & 0xff;
  p[1] = (v >> 8) & 0xff;
  p[2] = (v >> 16) & 0xff;
  p[3] = v >> 24;
}

/* Passes a frame on as it came, under the id it has on link: the header
 * was validated when it was read and only its id changes, so the body is
 * neither parsed again nor re-encoded. */
static void
relay (DhfXdmRouter *self, DhfXdmLink *link, guint32 id, guint8 *frame, gsize length)
{
  if (!link_can_send (link))
    return;
  write_le32 (frame + 8, id);
  dhf_xdm_conn_queue_frame (&link->conn, frame, length);
  out_done (self, link);
}

/* A header-level violation or a broken session: ERROR with id 0, then
 * the connection goes. */
static void protocol_error (DhfXdmRouter *self, DhfXdmLink *link, const gchar *format, ...)
    G_GNUC_PRINTF (3, 4);

static void
protocol_error (DhfXdmRouter *self, DhfXdmLink *link, const gchar *format, ...)
{
  g_autoptr (GError) error = NULL;
  va_list args;

  if (link->doomed)
    return;
  va_start (args, format);
  error = g_error_new_valist (DHF_ERROR, DHF_ERROR_PROTOCOL, format, args);
  va_end (args);
  g_message ("xdm: closing connection %" G_GUINT64_FORMAT " of %s: %s", link->id,
             link->domain->name, error->message);
  send_gerror (self, link, 0, error);
  doom (self, link, error, TRUE);
}

/* A bad message that does not end the session: answered, logged once per
 * connection (a flood must not flood the journal). A frame with id 0
 * asked for no answer, and an ERROR with id 0 would say dhfd is closing:
 * it is not answered. */
static void
body_error (DhfXdmRouter *self, DhfXdmLink *link, guint32 id, const GError *error)
{
  if (!link->warned)
    {
      link->warned = TRUE;
      g_message ("xdm: %s (connection %" G_GUINT64_FORMAT "): %s (further such errors of this "
                 "connection are logged at debug level)",
                 link->domain->name, link->id, error->message);
    }
  else
    g_debug ("xdm: %s (connection %" G_GUINT64_FORMAT "): %s", link->domain->name, link->id,
             error->message);
  if (id != 0)
    send_gerror (self, link, id, error);
}

/* --- domains ------------------------------------------------------------- */

static DhfXdmDomain *
domain_get (DhfXdmRouter *self, const gchar *name)
{
  DhfXdmDomain *domain = g_hash_table_lookup (self->domains, name);

  if (domain == NULL)
    {
      domain = g_new0 (DhfXdmDomain, 1);
      domain->name = g_strdup (name);
      domain->is_dom0 = is_dom0_name (name);
      g_hash_table_insert (self->domains, domain->name, domain);
    }
  return domain;
}

static void
domain_free (DhfXdmDomain *domain)
{
  g_clear_pointer (&domain->quota, g_hash_table_unref);
  g_clear_pointer (&domain->streams_to, g_hash_table_unref);
  g_free (domain->name);
  g_free (domain);
}

static void
domain_release (DhfXdmRouter *self, DhfXdmDomain *domain)
{
  if (domain->n_links == 0 && domain->calls_in_flight == 0 && domain->n_streams == 0
      && domain->n_asks == 0 && domain->n_registrations == 0 && domain->n_subscriptions == 0)
    g_hash_table_remove (self->domains, domain->name);
}

static guint
quota_count (DhfXdmDomain *domain, const DhfPolicyRule *rule)
{
  if (domain->quota == NULL)
    return 0;
  return GPOINTER_TO_UINT (g_hash_table_lookup (domain->quota, rule));
}

static void
quota_add (DhfXdmDomain *domain, const DhfPolicyRule *rule, gint delta)
{
  guint count;

  if (domain->quota == NULL)
    domain->quota = g_hash_table_new (g_direct_hash, g_direct_equal);
  count = quota_count (domain, rule) + delta;
  if (count == 0)
    g_hash_table_remove (domain->quota, rule);
  else
    g_hash_table_insert (domain->quota, (gpointer) rule, GUINT_TO_POINTER (count));
}

/* Streams of domain (the opener) to provider. */
static guint
streams_to_count (DhfXdmDomain *domain, const gchar *provider)
{
  if (domain->streams_to == NULL)
    return 0;
  return GPOINTER_TO_UINT (g_hash_table_lookup (domain->streams_to, provider));
}

static void
streams_to_add (DhfXdmDomain *domain, const gchar *provider, gint delta)
{
  guint count;

  if (domain->streams_to == NULL)
    domain->streams_to = g_hash_table_new_full (g_str_hash, g_str_equal, g_free, NULL);
  count = streams_to_count (domain, provider) + delta;
  if (count == 0)
    g_hash_table_remove (domain->streams_to, provider);
  else
    g_hash_table_insert (domain->streams_to, g_strdup (provider), GUINT_TO_POINTER (count));
}

/* --- per-connection tables ---------------------------------------------- */

static GHashTable *
table (GHashTable **slot)
{
  if (*slot == NULL)
    *slot = g_hash_table_new (g_direct_hash, g_direct_equal);
  return *slot;
}

static gpointer
table_lookup (GHashTable *t, guint32 id)
{
  return t != NULL ? g_hash_table_lookup (t, GUINT_TO_POINTER (id)) : NULL;
}

static void
table_remove (GHashTable *t, guint32 id)
{
  if (t != NULL)
    g_hash_table_remove (t, GUINT_TO_POINTER (id));
}

static gboolean
link_id_in_use (DhfXdmLink *link, guint32 id)
{
  return table_lookup (link->calls_out, id) != NULL || table_lookup (link->streams, id) != NULL
         || table_lookup (link->calls_in, id) != NULL;
}

/* An id for a request dhfd sends on link. */
static guint32
link_alloc_id (DhfXdmLink *link)
{
  for (;;)
    {
      guint32 id = link->next_id++;

      if (link->next_id == 0)
        link->next_id = FIRST_DHFD_ID;
      if (!link_id_in_use (link, id))
        return id;
    }
}

static DhfXdmRegistration *
find_registration (DhfXdmRouter *self, const gchar *service, const gchar *domain)
{
  DhfXdmService *svc = g_hash_table_lookup (self->services, service);

  for (guint i = 0; svc != NULL && i < svc->regs->len; i++)
    {
      DhfXdmRegistration *reg = g_ptr_array_index (svc->regs, i);

      if (g_str_equal (reg->link->domain->name, domain))
        return reg;
    }
  return NULL;
}

/* --- calls --------------------------------------------------------------- */

static void
ask_free (DhfXdmRouter *self, DhfXdmAsk *ask, gboolean cancel)
{
  timed_cancel (self, &ask->timeout);
  ask->call->ask = NULL;
  ask->call->caller->domain->n_asks--;
  /* The asker must not call done after this. */
  if (cancel)
    g_cancellable_cancel (ask->cancellable);
  g_object_unref (ask->cancellable);
  g_free (ask);
}

/* Forgets a call: every table and count it is in. */
static void
call_free (DhfXdmRouter *self, DhfXdmCall *call)
{
  DhfXdmDomain *domain = call->caller->domain;

  if (call->ask != NULL)
    ask_free (self, call->ask, TRUE);
  /* The framework still answers; the answer finds no call. */
  if (call->pending != NULL)
    {
      call->pending->call = NULL;
      g_cancellable_cancel (call->pending->cancellable);
      call->pending = NULL;
    }
  timed_cancel (self, &call->deadline);
  table_remove (call->caller->calls_in, call->caller_id);
  if (call->provider != NULL)
    table_remove (call->provider->calls_out, call->provider_id);
  call->caller->calls_in_flight--;
  domain->calls_in_flight--;
  if (call->stream && !call->opened)
    {
      domain->n_streams--;
      streams_to_add (domain, call->target, -1);
    }
  if (call->quota_rule != NULL)
    quota_add (domain, call->quota_rule, -1);
  g_clear_pointer (&call->policy, dhf_policy_unref);
  g_free (call->service);
  g_free (call->arg);
  g_free (call->target);
  g_free (call->params);
  g_free (call);
}

static void
call_fail (DhfXdmRouter *self, DhfXdmCall *call, DhfError code, const gchar *message)
{
  if (code == DHF_ERROR_NOT_AUTHORIZED)
    call->caller->n_denied++;
  send_error (self, call->caller, call->caller_id, code, "%s", message);
  call_free (self, call);
}

/* The caller gave up (or went away, or the deadline passed): the provider
 * is told. */
static void
call_abandon (DhfXdmRouter *self, DhfXdmCall *call)
{
  if (call->provider != NULL)
    send_empty (self, call->provider, DHF_XDM_CANCEL, call->provider_id);
}

static void
on_call_expired (DhfXdmRouter *self, DhfXdmCall *call)
{
  g_autofree gchar *message = NULL;

  if (call->provider != NULL)
    message = g_strdup_printf ("%s on %s did not answer in time", call->service,
                               call->provider->domain->name);
  else
    message = g_strdup_printf ("%s was not answered in time%s", call->service,
                               call->ask != NULL ? " (the user was still being asked)" : "");
  call_abandon (self, call);
  call_fail (self, call, DHF_ERROR_TIMEOUT, message);
}

/* "unavailable" when the domain exists but has no connection, "not-found"
 * when nothing is known of it or it is connected without the service. */
static DhfError
missing_code (DhfXdmRouter *self, const gchar *domain)
{
  DhfXdmDomain *known = g_hash_table_lookup (self->domains, domain);
  DhfPolicyDomain described;
  g_autoptr (GPtrArray) entries = NULL;

  if (known != NULL && known->n_links > 0)
    return DHF_ERROR_NOT_FOUND;
  if (self->lookup != NULL && !is_dom0_name (domain)
      && self->lookup (domain, &described, self->lookup_data))
    return DHF_ERROR_UNAVAILABLE;
  if (self->directory != NULL)
    {
      entries = self->directory (self->directory_data);
      for (guint i = 0; entries != NULL && i < entries->len; i++)
        {
          DhfXdmDomainEntry *entry = g_ptr_array_index (entries, i);

          if (g_strcmp0 (entry->name, domain) == 0)
            return DHF_ERROR_UNAVAILABLE;
        }
    }
  return DHF_ERROR_NOT_FOUND;
}

/* Answers a framework call with result (taken) and forgets it. */
static void
call_reply_result (DhfXdmRouter *self, DhfXdmCall *call, json_object *result)
{
  g_autoptr (GError) error = NULL;
  json_object *body = json_object_new_object ();

  ADD_KEY (body, "result", result);
  if (link_can_send (call->caller)
      && !dhf_xdm_append_json_checked (dhf_xdm_conn_get_out (&call->caller->conn), DHF_XDM_REPLY,
                                       call->caller_id, body, &error))
    send_gerror (self, call->caller, call->caller_id, error);
  out_done (self, call->caller);
  json_object_put (body);
  call_free (self, call);
}

static void
call_fail_gerror (DhfXdmRouter *self, DhfXdmCall *call, const GError *error)
{
  if (g_error_matches (error, DHF_ERROR, DHF_ERROR_NOT_AUTHORIZED))
    call->caller->n_denied++;
  send_gerror (self, call->caller, call->caller_id, error);
  call_free (self, call);
}

static void
pending_free (DhfXdmPending *pending)
{
  g_object_unref (pending->cancellable);
  g_free (pending);
}

GCancellable *
dhf_xdm_pending_get_cancellable (DhfXdmPending *pending)
{
  return pending->cancellable;
}

void
dhf_xdm_pending_return (DhfXdmPending *pending, json_object *result)
{
  DhfXdmCall *call = pending->call;
  DhfXdmRouter *self = pending->router;

  pending_free (pending);
  if (call == NULL)
    {
      json_object_put (result);
      return;
    }
  call->pending = NULL;
  self->busy++;
  call_reply_result (self, call, result);
  self->busy--;
  settle (self);
}

void
dhf_xdm_pending_return_error (DhfXdmPending *pending, const GError *error)
{
  DhfXdmCall *call = pending->call;
  DhfXdmRouter *self = pending->router;

  pending_free (pending);
  if (call == NULL)
    return;
  call->pending = NULL;
  self->busy++;
  call_fail_gerror (self, call, error);
  self->busy--;
  settle (self);
}

/* A framework service answered later: the call stays pending (its
 * deadline runs, CANCEL and the caller's end still apply) until the
 * framework answers. Nothing may touch call after this: the answer may
 * come at once. */
static void
call_answer_framework_later (DhfXdmRouter *self, DhfXdmCall *call, json_object *params)
{
  g_autoptr (GError) error = NULL;
  DhfXdmPending *pending = g_new0 (DhfXdmPending, 1);

  pending->router = self;
  pending->call = call;
  pending->cancellable = g_cancellable_new ();
  call->pending = pending;
  if (!dhf_xdm_framework_call_async (self, call->caller, call->service, params, pending, &error))
    {
      call->pending = NULL;
      pending_free (pending);
      call_fail_gerror (self, call, error);
    }
}

static void
call_answer_framework (DhfXdmRouter *self, DhfXdmCall *call, json_object *params)
{
  g_autoptr (GError) error = NULL;
  json_object *result;

  if (call->stream)
    {
      call_fail (self, call, DHF_ERROR_NOT_FOUND, "dhfd offers no streams");
      return;
    }
  if (dhf_xdm_framework_is_async (call->service))
    {
      /* Asked after the user agreed, the params wait as text. */
      json_object *parsed = NULL;

      if (params == NULL && call->params != NULL)
        parsed = json_tokener_parse (call->params);
      call_answer_framework_later (self, call, params != NULL ? params : parsed);
      if (parsed != NULL)
        json_object_put (parsed);
      return;
    }
  result = dhf_xdm_framework_call (self, call->caller, call->service, params, &error);
  if (result == NULL)
    {
      send_gerror (self, call->caller, call->caller_id, error);
      call_free (self, call);
      return;
    }
  call_reply_result (self, call, result);
}

/* params as JSON text; the text is json-c's, valid until params changes. */
static const gchar *
params_text (json_object *params, gsize *length)
{
  size_t n = 0;
  const gchar *text = json_object_to_json_string_length (
      params, JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE, &n);

  *length = n;
  return text;
}

/* The request as the provider gets it: CALL {"service", "arg"?, "source",
 * "timeout_ms": what is left, "params"?} or STREAM_OPEN {"service",
 * "arg"?, "source", "window"}. Written as text rather than built as a
 * json-c object: this is the one message of every call that dhfd makes
 * up, and the names in it were validated by the parser (service, argument
 * and domain grammars have nothing to escape); params are serialised by
 * json-c as parsed (params, or the text kept while the user was asked). */
static gboolean
append_forward (DhfXdmRouter *self, DhfXdmCall *call, json_object *params, GError **error)
{
  GString *text = self->text;

  g_string_truncate (text, 0);
  g_string_append (text, "{\"service\":\"");
  g_string_append (text, call->service);
  if (call->arg != NULL)
    {
      g_string_append (text, "\",\"arg\":\"");
      g_string_append (text, call->arg);
    }
  g_string_append (text, "\",\"source\":\"");
  g_string_append (text, call->caller->domain->name);
  if (call->stream)
    g_string_append_printf (text, "\",\"window\":%u}", call->window);
  else
    {
      gint64 remaining = (call->deadline.deadline - g_get_monotonic_time () + 999) / 1000;

      g_string_append_printf (text, "\",\"timeout_ms\":%" G_GINT64_FORMAT,
                              CLAMP (remaining, 1, (gint64) DHF_XDM_MAX_TIMEOUT_MS));
      if (params != NULL || call->params != NULL)
        {
          gsize length = call->params_len;
          const gchar *value = params != NULL ? params_text (params, &length) : call->params;

          g_string_append (text, ",\"params\":");
          g_string_append_len (text, value, (gssize) length);
        }
      g_string_append_c (text, '}');
    }
  if (text->len > DHF_XDM_MAX_BODY)
    {
      g_set_error (error, DHF_ERROR, DHF_ERROR_LIMIT_EXCEEDED,
                   "the forwarded request would be over the size limit of %u bytes",
                   DHF_XDM_MAX_BODY);
      return FALSE;
    }
  dhf_xdm_append_text (dhf_xdm_conn_get_out (&call->provider->conn),
                       call->stream ? DHF_XDM_STREAM_OPEN : DHF_XDM_CALL, call->provider_id,
                       text->str, text->len);
  /* A large request must not keep its buffer. */
  if (text->allocated_len > 64 * 1024)
    {
      g_string_free (text, TRUE);
      self->text = g_string_sized_new (256);
    }
  return TRUE;
}

/* The decision allows the call (or the user did): hands it to the
 * provider, or answers it (framework services, errors). params: the
 * request's, when it is forwarded at once (else call->params). */
static void
call_forward (DhfXdmRouter *self, DhfXdmCall *call, json_object *params)
{
  g_autoptr (GError) error = NULL;
  DhfXdmRegistration *reg;
  DhfXdmLink *provider;

  if (is_dom0_name (call->target) && is_framework_name (call->service))
    {
      call_answer_framework (self, call, params);
      return;
    }
  reg = find_registration (self, call->service, call->target);
  if (reg == NULL || reg->link->doomed)
    {
      g_autofree gchar *message
          = g_strdup_printf ("%s does not provide %s", call->target, call->service);
      DhfError code = missing_code (self, call->target);

      if (code == DHF_ERROR_UNAVAILABLE)
        {
          g_free (message);
          message = g_strdup_printf ("%s is not connected", call->target);
        }
      call_fail (self, call, code, message);
      return;
    }
  provider = reg->link;
  if (dhf_xdm_conn_get_queued (&provider->conn) > self->limits.max_queued_bytes)
    {
      g_autofree gchar *message = g_strdup_printf (
          "%s is not reading its messages (%" G_GSIZE_FORMAT " bytes queued for it)", call->target,
          dhf_xdm_conn_get_queued (&provider->conn));

      call_fail (self, call, DHF_ERROR_LIMIT_EXCEEDED, message);
      return;
    }

  call->provider = provider;
  call->provider_id = link_alloc_id (provider);
  if (!append_forward (self, call, params, &error))
    {
      call->provider = NULL;
      call_fail (self, call, DHF_ERROR_LIMIT_EXCEEDED, error->message);
      return;
    }
  g_hash_table_insert (table (&provider->calls_out), GUINT_TO_POINTER (call->provider_id), call);
  reg->calls++;
  call->caller->n_calls++;
  /* Only the answer is awaited now. */
  g_clear_pointer (&call->params, g_free);
  call->params_len = 0;
  out_done (self, provider);
}

/* --- asking ---------------------------------------------------------------- */

static void
on_ask_done (gboolean allow, gpointer done_data)
{
  DhfXdmAsk *ask = done_data;
  DhfXdmRouter *self = ask->router;
  DhfXdmCall *call = ask->call;

  self->busy++;
  ask_free (self, ask, FALSE);
  if (allow)
    call_forward (self, call, NULL);
  else
    call_fail (self, call, DHF_ERROR_NOT_AUTHORIZED, "the user did not allow it");
  self->busy--;
  settle (self);
}

static void
on_ask_expired (DhfXdmRouter *self, DhfXdmAsk *ask)
{
  DhfXdmCall *call = ask->call;
  g_autofree gchar *message
      = g_strdup_printf ("the user did not answer within %u s", self->limits.ask_timeout_ms / 1000);

  ask_free (self, ask, TRUE);
  call_fail (self, call, DHF_ERROR_NOT_AUTHORIZED, message);
}

/* Asks the user about call (decided "ask" by rule). The asker may answer
 * at once: nothing may touch call after this. */
static void
call_ask (DhfXdmRouter *self, DhfXdmCall *call, const DhfPolicyRule *rule)
{
  DhfXdmDomain *domain = call->caller->domain;
  g_autofree gchar *rule_text = NULL;
  DhfXdmQuestion question = { 0 };
  DhfXdmAsk *ask;

  if (self->asker == NULL)
    {
      call_fail (self, call, DHF_ERROR_NOT_AUTHORIZED,
                 "the policy asks the user, and no prompt agent is registered");
      return;
    }
  if (domain->n_asks >= self->limits.max_pending_asks)
    {
      g_autofree gchar *message = g_strdup_printf (
          "%s has %u questions for the user pending, the limit", domain->name, domain->n_asks);

      call_fail (self, call, DHF_ERROR_NOT_AUTHORIZED, message);
      return;
    }

  ask = g_new0 (DhfXdmAsk, 1);
  ask->router = self;
  ask->call = call;
  ask->cancellable = g_cancellable_new ();
  call->ask = ask;
  domain->n_asks++;
  timed_schedule (self, &ask->timeout, DHF_XDM_TIMED_ASK,
                  g_get_monotonic_time () + (gint64) self->limits.ask_timeout_ms * 1000);

  rule_text = describe_rule (rule);
  question.service = call->service;
  question.argument = call->arg;
  question.source = domain->name;
  question.target = call->target;
  question.rule = rule_text;
  question.stream = call->stream;
  self->asker (&question, ask->cancellable, on_ask_done, ask, self->asker_data);
}

/* --- admission --------------------------------------------------------------- */

/* Where a request goes, and the decision that lets it. */
typedef struct
{
  const gchar *target; /* borrowed from the message, the rule or the registry */
  DhfPolicy *policy;
  DhfPolicyDecision decision;
} Route;

static void
route_clear (Route *route)
{
  g_clear_pointer (&route->policy, dhf_policy_unref);
}

/* The target named by the deciding rule's target= option, if any. */
static const gchar *
redirect_of (const Route *route, const gchar *target)
{
  const gchar *option;

  if (route->decision.rule == NULL)
    return target;
  option = dhf_policy_rule_get_option (route->decision.rule, "target");
  if (option == NULL)
    return target;
  return g_str_equal (option, "@dom0") ? "dom0" : option;
}

/* Resolves the target and decides. FALSE with the error for the caller. */
static gboolean
route_request (DhfXdmRouter *self, DhfXdmLink *link, const DhfXdmMessage *msg, Route *route,
               GError **error)
{
  const gchar *source = link->domain->name;
  const gchar *target = msg->target;
  DhfXdmService *svc;
  g_autoptr (GPtrArray) allowed = NULL;

  if (target == NULL && is_framework_name (msg->service))
    target = "dom0";

  if (target == NULL)
    {
      svc = g_hash_table_lookup (self->services, msg->service);
      if (svc == NULL || svc->regs->len == 0)
        {
          g_set_error (error, DHF_ERROR, DHF_ERROR_NOT_FOUND, "no domain provides %s",
                       msg->service);
          return FALSE;
        }
      if (svc->regs->len == 1)
        target = ((DhfXdmRegistration *) g_ptr_array_index (svc->regs, 0))->link->domain->name;
      else
        {
          /* Asked, not acted on: the one decision acted on is audited
           * below. */
          g_autoptr (DhfPolicy) policy
              = dhf_policy_store_get (dhf_policy_service_get_store (self->policy));

          allowed = g_ptr_array_new ();
          for (guint i = 0; i < svc->regs->len; i++)
            {
              DhfXdmRegistration *reg = g_ptr_array_index (svc->regs, i);
              DhfPolicyDecision decision;

              if (dhf_xdm_router_evaluate (self, policy, msg->service, msg->arg, source,
                                           reg->link->domain->name, &decision)
                  != DHF_POLICY_ACTION_DENY)
                g_ptr_array_add (allowed, reg->link->domain->name);
            }
          if (allowed->len == 0)
            {
              /* Acted on: audit every refusal. */
              for (guint i = 0; i < svc->regs->len; i++)
                {
                  DhfXdmRegistration *reg = g_ptr_array_index (svc->regs, i);
                  DhfPolicyDecision decision;

                  dhf_policy_unref (decide (self, msg->service, msg->arg, source,
                                            reg->link->domain->name, &decision));
                }
              g_set_error (error, DHF_ERROR, DHF_ERROR_NOT_AUTHORIZED,
                           "%s may not call %s on any domain that provides it", source,
                           msg->service);
              return FALSE;
            }
          if (allowed->len > 1)
            {
              g_autoptr (GString) names = g_string_new (NULL);

              for (guint i = 0; i < allowed->len; i++)
                g_string_append_printf (names, "%s%s", i > 0 ? ", " : "",
                                        (const gchar *) g_ptr_array_index (allowed, i));
              g_set_error (error, DHF_ERROR, DHF_ERROR_INVALID_ARGS,
                           "%s is provided by %s: name a target", msg->service, names->str);
              return FALSE;
            }
          target = g_ptr_array_index (allowed, 0);
        }
    }

  route->policy = decide (self, msg->service, msg->arg, source, target, &route->decision);
  if (route->decision.action == DHF_POLICY_ACTION_DENY)
    {
      g_autofree gchar *rule = rule_for_peer (link, route->decision.rule);

      g_set_error (error, DHF_ERROR, DHF_ERROR_NOT_AUTHORIZED, "%s may not call %s%s%s on %s (%s)",
                   source, msg->service, msg->arg != NULL ? "+" : "",
                   msg->arg != NULL ? msg->arg : "", target, rule);
      return FALSE;
    }
  route->target = redirect_of (route, target);
  return TRUE;
}

/* CALL and STREAM_OPEN. */
static void
handle_request (DhfXdmRouter *self, DhfXdmLink *link, DhfXdmMessage *msg)
{
  DhfXdmDomain *domain = link->domain;
  gboolean stream = msg->type == DHF_XDM_STREAM_OPEN;
  g_autoptr (GError) error = NULL;
  Route route = { 0 };
  const gchar *quota;
  DhfXdmCall *call;

  if (table_lookup (link->calls_in, msg->id) != NULL
      || (stream
          && (table_lookup (link->streams, msg->id) != NULL
              || table_lookup (link->calls_out, msg->id) != NULL)))
    {
      send_error (self, link, msg->id, DHF_ERROR_INVALID_ARGS, "request id %u is already in use",
                  msg->id);
      return;
    }
  if (domain->calls_in_flight >= self->limits.max_calls_in_flight)
    {
      send_error (self, link, msg->id, DHF_ERROR_LIMIT_EXCEEDED,
                  "%s has %u calls in flight, the limit", domain->name, domain->calls_in_flight);
      return;
    }
  if (stream && domain->n_streams >= self->limits.max_streams)
    {
      send_error (self, link, msg->id, DHF_ERROR_LIMIT_EXCEEDED,
                  "%s has %u streams open, the limit", domain->name, domain->n_streams);
      return;
    }
  if (!route_request (self, link, msg, &route, &error))
    {
      if (g_error_matches (error, DHF_ERROR, DHF_ERROR_NOT_AUTHORIZED))
        link->n_denied++;
      send_gerror (self, link, msg->id, error);
      route_clear (&route);
      return;
    }
  /* One opener must not take all of a provider's attention. */
  if (stream && streams_to_count (domain, route.target) >= MAX (1, self->limits.max_streams / 2))
    {
      send_error (self, link, msg->id, DHF_ERROR_LIMIT_EXCEEDED,
                  "%s has %u streams to %s, the limit for one provider", domain->name,
                  streams_to_count (domain, route.target), route.target);
      route_clear (&route);
      return;
    }

  quota = route.decision.rule != NULL ? dhf_policy_rule_get_option (route.decision.rule, "quota")
                                      : NULL;
  if (quota != NULL)
    {
      guint64 max = g_ascii_strtoull (quota, NULL, 10);

      if (quota_count (domain, route.decision.rule) >= max)
        {
          g_autofree gchar *rule = domain->is_dom0 ? describe_rule (route.decision.rule)
                                                   : g_strdup ("its policy rule");

          send_error (self, link, msg->id, DHF_ERROR_LIMIT_EXCEEDED,
                      "%s has %" G_GUINT64_FORMAT " calls of %s in flight, the quota of %s",
                      domain->name, max, msg->service, rule);
          route_clear (&route);
          return;
        }
    }

  call = g_new0 (DhfXdmCall, 1);
  call->caller = link;
  call->caller_id = msg->id;
  call->stream = stream;
  call->window = msg->window;
  call->service = g_strdup (msg->service);
  call->arg = g_strdup (msg->arg);
  call->target = g_strdup (route.target);
  g_hash_table_insert (table (&link->calls_in), GUINT_TO_POINTER (msg->id), call);
  link->calls_in_flight++;
  domain->calls_in_flight++;
  if (stream)
    {
      domain->n_streams++;
      streams_to_add (domain, call->target, 1);
    }
  if (quota != NULL)
    {
      call->policy = g_steal_pointer (&route.policy);
      call->quota_rule = route.decision.rule;
      quota_add (domain, call->quota_rule, 1);
    }
  timed_schedule (self, &call->deadline, DHF_XDM_TIMED_CALL,
                  g_get_monotonic_time ()
                      + (gint64) (stream ? DHF_XDM_DEFAULT_TIMEOUT_MS : msg->timeout_ms) * 1000);

  if (route.decision.action == DHF_POLICY_ACTION_ASK)
    {
      /* The parsed body goes when this returns: the params wait as text,
       * bounded by the body's size. */
      if (msg->value != NULL)
        {
          const gchar *text = params_text (msg->value, &call->params_len);

          call->params = g_strndup (text, call->params_len);
        }
      /* The rule borrows from the policy the route holds. */
      call_ask (self, call, route.decision.rule);
      route_clear (&route);
      return;
    }
  route_clear (&route);
  call_forward (self, call, msg->value);
}

/* --- answers ------------------------------------------------------------------ */

/* REPLY or ERROR from a provider (id is dhfd's). */
static void
handle_answer (DhfXdmRouter *self, DhfXdmLink *link, const DhfXdmMessage *msg, guint8 *frame,
               gsize length)
{
  DhfXdmCall *call = table_lookup (link->calls_out, msg->id);

  if (call == NULL)
    {
      /* Late (timed out, cancelled, caller gone) or made up: dropped. */
      g_debug ("xdm: %s: dropping a %s for request %u, which is not pending", link->domain->name,
               dhf_xdm_type_to_string (msg->type), msg->id);
      return;
    }
  if (call->stream && msg->type == DHF_XDM_REPLY)
    {
      DhfXdmStream *stream = g_new0 (DhfXdmStream, 1);

      stream->a = call->caller;
      stream->a_id = call->caller_id;
      stream->b = link;
      stream->b_id = msg->id;
      stream->credit_ab = msg->window;
      stream->credit_ba = call->window;
      /* The call's table entries go first: the ids become the stream's,
       * and so do its counts. */
      table_remove (link->calls_out, msg->id);
      table_remove (call->caller->calls_in, call->caller_id);
      call->provider = NULL;
      call->opened = TRUE;
      stream->provider = g_steal_pointer (&call->target);
      g_hash_table_insert (table (&stream->a->streams), GUINT_TO_POINTER (stream->a_id), stream);
      g_hash_table_insert (table (&stream->b->streams), GUINT_TO_POINTER (stream->b_id), stream);
    }
  relay (self, call->caller, call->caller_id, frame, length);
  call_free (self, call);
}

/* A REPLY or ERROR that did not parse: the caller learns the provider
 * failed it, the provider what was wrong. */
static void
handle_bad_answer (DhfXdmRouter *self, DhfXdmLink *link, const DhfXdmHeader *header,
                   const GError *error)
{
  DhfXdmCall *call = table_lookup (link->calls_out, header->id);

  body_error (self, link, header->id, error);
  if (call != NULL)
    {
      g_autofree gchar *message
          = g_strdup_printf ("%s sent an invalid answer: %s", link->domain->name, error->message);

      call_fail (self, call, DHF_ERROR_PROTOCOL, message);
    }
}

static void
handle_cancel (DhfXdmRouter *self, DhfXdmLink *link, guint32 id)
{
  DhfXdmCall *call = table_lookup (link->calls_in, id);

  if (call == NULL)
    return;
  call_abandon (self, call);
  call_fail (self, call, DHF_ERROR_CANCELLED, "cancelled");
}

/* --- streams ------------------------------------------------------------------ */

static void
stream_free (DhfXdmRouter *self, DhfXdmStream *stream)
{
  DhfXdmDomain *opener = stream->a->domain;

  table_remove (stream->a->streams, stream->a_id);
  table_remove (stream->b->streams, stream->b_id);
  if (stream->granting)
    g_ptr_array_remove_fast (self->grants, stream);
  opener->n_streams--;
  streams_to_add (opener, stream->provider, -1);
  g_free (stream->provider);
  g_free (stream);
}

/* Resets the stream: both ends get STREAM_CLOSE with code. */
static void
stream_reset (DhfXdmRouter *self, DhfXdmStream *stream, DhfError code, const gchar *message)
{
  json_object *body = json_object_new_object ();

  ADD_KEY (body, "code", json_object_new_string (dhf_xdm_error_code_to_string (code)));
  ADD_KEY (body, "message", json_object_new_string (message));
  send_json (self, stream->a, DHF_XDM_STREAM_CLOSE, stream->a_id, body);
  send_json (self, stream->b, DHF_XDM_STREAM_CLOSE, stream->b_id, body);
  json_object_put (body);
  stream_free (self, stream);
}

/* Which side of stream link's frame with id comes from. */
static gboolean
stream_from_a (DhfXdmStream *stream, DhfXdmLink *link, guint32 id)
{
  return stream->a == link && stream->a_id == id;
}

static void
handle_stream_data (DhfXdmRouter *self, DhfXdmLink *link, const DhfXdmHeader *header, guint8 *frame)
{
  DhfXdmStream *stream = table_lookup (link->streams, header->id);
  DhfXdmLink *to;
  gsize queued;
  gboolean from_a;
  guint64 *credit;

  if (stream == NULL)
    {
      DhfXdmCall *call = table_lookup (link->calls_in, header->id);

      /* Data before the stream was accepted has no credit. */
      if (call != NULL && call->stream)
        {
          call_abandon (self, call);
          call_fail (self, call, DHF_ERROR_PROTOCOL, "STREAM_DATA before the stream was accepted");
          return;
        }
      /* A stream reset a moment ago: its data is dropped. */
      return;
    }
  from_a = stream_from_a (stream, link, header->id);
  /* It would need no credit, so nothing would bound how many are relayed. */
  if (header->length == 0)
    {
      stream_reset (self, stream, DHF_ERROR_PROTOCOL, "an empty STREAM_DATA");
      return;
    }
  if (from_a ? stream->a_done : stream->b_done)
    {
      stream_reset (self, stream, DHF_ERROR_PROTOCOL, "STREAM_DATA after STREAM_CLOSE");
      return;
    }
  credit = from_a ? &stream->credit_ab : &stream->credit_ba;
  if (header->length > *credit)
    {
      g_autofree gchar *message
          = g_strdup_printf ("%s sent %u bytes with credit for %" G_GUINT64_FORMAT,
                             link->domain->name, header->length, *credit);

      g_debug ("xdm: resetting a stream: %s", message);
      stream_reset (self, stream, DHF_ERROR_PROTOCOL, message);
      return;
    }
  to = from_a ? stream->b : stream->a;
  /* Credit the receiver granted is not a licence to cut it off: a stream
   * whose data its connection cannot take is reset instead. (Into an
   * empty queue any frame fits below the hard cap.) */
  queued = dhf_xdm_conn_get_queued (&to->conn);
  if (queued > 0 && queued + DHF_XDM_HEADER_SIZE + header->length > self->data_cap)
    {
      g_autofree gchar *message = g_strdup_printf (
          "%s is not reading (%" G_GSIZE_FORMAT " bytes queued for it)", to->domain->name, queued);

      g_debug ("xdm: resetting a stream: %s", message);
      stream_reset (self, stream, DHF_ERROR_LIMIT_EXCEEDED, message);
      return;
    }
  *credit -= header->length;
  relay (self, to, from_a ? stream->b_id : stream->a_id, frame,
         DHF_XDM_HEADER_SIZE + header->length);
}

static void
handle_stream_credit (DhfXdmRouter *self, DhfXdmLink *link, const DhfXdmMessage *msg)
{
  DhfXdmStream *stream = table_lookup (link->streams, msg->id);
  gboolean from_a;
  guint64 *credit;

  if (stream == NULL)
    return;
  from_a = stream_from_a (stream, link, msg->id);
  /* Credit from a is what b may send. */
  credit = from_a ? &stream->credit_ba : &stream->credit_ab;
  if (*credit + msg->bytes > DHF_XDM_MAX_WINDOW)
    {
      g_autofree gchar *message
          = g_strdup_printf ("%s granted credit beyond the maximum window of %u bytes",
                             link->domain->name, DHF_XDM_MAX_WINDOW);

      stream_reset (self, stream, DHF_ERROR_PROTOCOL, message);
      return;
    }
  *credit += msg->bytes;
  /* Relayed in settle(), summed with the rest of the burst. */
  if (from_a)
    stream->grant_b += msg->bytes;
  else
    stream->grant_a += msg->bytes;
  if (!stream->granting)
    {
      stream->granting = TRUE;
      g_ptr_array_add (self->grants, stream);
    }
}

/* Relays the credit granted to the end to (id there) by grantor, unless
 * either's queue is over the soft limit: the credit waits rather than
 * pile up frames for a peer that does not read, and the grantor, which
 * does not read either, gets no more data meanwhile. */
static gboolean
relay_grant (DhfXdmRouter *self, DhfXdmLink *to, guint32 id, guint64 *grant, DhfXdmLink *grantor)
{
  gchar body[64];

  if (*grant == 0)
    return FALSE;
  if (!link_can_send (to))
    {
      *grant = 0;
      return FALSE;
    }
  if (dhf_xdm_conn_get_queued (&to->conn) > self->limits.max_queued_bytes
      || dhf_xdm_conn_get_queued (&grantor->conn) > self->limits.max_queued_bytes)
    return FALSE;
  g_snprintf (body, sizeof body, "{\"bytes\":%" G_GUINT64_FORMAT "}", *grant);
  dhf_xdm_append_text (dhf_xdm_conn_get_out (&to->conn), DHF_XDM_STREAM_CREDIT, id, body,
                       strlen (body));
  *grant = 0;
  out_done (self, to);
  return TRUE;
}

/* The credit that can go on now; TRUE when some went. */
static gboolean
relay_grants (DhfXdmRouter *self)
{
  gboolean sent = FALSE;

  for (guint i = self->grants->len; i > 0; i--)
    {
      DhfXdmStream *stream = g_ptr_array_index (self->grants, i - 1);

      sent |= relay_grant (self, stream->a, stream->a_id, &stream->grant_a, stream->b);
      sent |= relay_grant (self, stream->b, stream->b_id, &stream->grant_b, stream->a);
      if (stream->grant_a == 0 && stream->grant_b == 0)
        {
          stream->granting = FALSE;
          g_ptr_array_remove_index_fast (self->grants, i - 1);
        }
    }
  return sent;
}

static void
handle_stream_close (DhfXdmRouter *self, DhfXdmLink *link, const DhfXdmMessage *msg, guint8 *frame,
                     gsize length)
{
  DhfXdmStream *stream = table_lookup (link->streams, msg->id);
  gboolean from_a;

  if (stream == NULL)
    {
      DhfXdmCall *call = table_lookup (link->calls_in, msg->id);

      /* The opener gave up before the stream was accepted. */
      if (call != NULL && call->stream)
        {
          call_abandon (self, call);
          call_free (self, call);
          return;
        }
      /* The provider closed instead of answering: a refusal. */
      call = table_lookup (link->calls_out, msg->id);
      if (call != NULL && call->stream)
        call_fail (self, call,
                   msg->code != NULL ? dhf_xdm_error_code_from_string (msg->code)
                                     : DHF_ERROR_FAILED,
                   msg->message != NULL ? msg->message : "the provider closed the stream");
      return;
    }
  from_a = stream_from_a (stream, link, msg->id);
  /* Said once is enough: a repeated half-close would be relayed for ever. */
  if (msg->code == NULL && (from_a ? stream->a_done : stream->b_done))
    return;
  if (from_a)
    relay (self, stream->b, stream->b_id, frame, length);
  else
    relay (self, stream->a, stream->a_id, frame, length);
  if (msg->code != NULL)
    {
      stream_free (self, stream);
      return;
    }
  if (from_a)
    stream->a_done = TRUE;
  else
    stream->b_done = TRUE;
  if (stream->a_done && stream->b_done)
    stream_free (self, stream);
}

/* --- topics -------------------------------------------------------------- */

static void
subscription_free (DhfXdmRouter *self, DhfXdmSubscription *sub)
{
  DhfXdmTopic *topic = sub->topic;

  g_ptr_array_remove_fast (topic->subs, sub);
  g_ptr_array_remove_fast (sub->link->subscriptions, sub);
  sub->link->domain->n_subscriptions--;
  if (topic->subs->len == 0)
    g_hash_table_remove (self->topics, topic->name);
  g_free (sub);
}

static void
topic_free (DhfXdmTopic *topic)
{
  g_ptr_array_unref (topic->subs);
  g_free (topic->name);
  g_free (topic);
}

static DhfXdmSubscription *
find_subscription (DhfXdmLink *link, const gchar *topic)
{
  for (guint i = 0; link->subscriptions != NULL && i < link->subscriptions->len; i++)
    {
      DhfXdmSubscription *sub = g_ptr_array_index (link->subscriptions, i);

      if (g_str_equal (sub->topic->name, topic))
        return sub;
    }
  return NULL;
}

static void
handle_subscribe (DhfXdmRouter *self, DhfXdmLink *link, const DhfXdmMessage *msg)
{
  DhfXdmDomain *domain = link->domain;
  DhfXdmSubscription *sub;
  DhfXdmTopic *topic;

  if (find_subscription (link, msg->topic) != NULL)
    {
      send_error (self, link, msg->id, DHF_ERROR_EXISTS, "already subscribed to %s", msg->topic);
      return;
    }
  if (domain->n_subscriptions >= self->limits.max_subscriptions)
    {
      send_error (self, link, msg->id, DHF_ERROR_LIMIT_EXCEEDED,
                  "%s has %u subscriptions, the limit", domain->name, domain->n_subscriptions);
      return;
    }
  topic = g_hash_table_lookup (self->topics, msg->topic);
  if (topic == NULL)
    {
      topic = g_new0 (DhfXdmTopic, 1);
      topic->name = g_strdup (msg->topic);
      topic->subs = g_ptr_array_new ();
      g_hash_table_insert (self->topics, topic->name, topic);
    }
  sub = g_new0 (DhfXdmSubscription, 1);
  sub->topic = topic;
  sub->link = link;
  g_ptr_array_add (topic->subs, sub);
  if (link->subscriptions == NULL)
    link->subscriptions = g_ptr_array_new ();
  g_ptr_array_add (link->subscriptions, sub);
  domain->n_subscriptions++;
  send_empty (self, link, DHF_XDM_REPLY, msg->id);
}

static void
handle_unsubscribe (DhfXdmRouter *self, DhfXdmLink *link, const DhfXdmMessage *msg)
{
  DhfXdmSubscription *sub = find_subscription (link, msg->topic);

  if (sub == NULL)
    {
      send_error (self, link, msg->id, DHF_ERROR_NOT_FOUND, "not subscribed to %s", msg->topic);
      return;
    }
  subscription_free (self, sub);
  send_empty (self, link, DHF_XDM_REPLY, msg->id);
}

/* Delivers an event of source to every subscriber of topic but the
 * publishing connection that the policy lets receive it. Returns how
 * many got it, or -1 when the event would be over the size limit. */
static gint
publish (DhfXdmRouter *self, DhfXdmLink *from, const gchar *source, const gchar *topic_name,
         json_object *data)
{
  DhfXdmTopic *topic = g_hash_table_lookup (self->topics, topic_name);
  json_object *body = NULL;
  const gchar *text = NULL;
  size_t text_len = 0;
  gint delivered = 0;

  for (guint i = 0; topic != NULL && i < topic->subs->len; i++)
    {
      DhfXdmSubscription *sub = g_ptr_array_index (topic->subs, i);
      DhfXdmLink *link = sub->link;
      DhfPolicyDecision decision;
      g_autoptr (DhfPolicy) policy = NULL;

      if (link == from || !link_can_send (link))
        continue;
      /* ask counts as deny: nobody is asked about events. */
      policy = decide (self, topic_name, NULL, source, link->domain->name, &decision);
      if (decision.action != DHF_POLICY_ACTION_ALLOW)
        continue;
      if (dhf_xdm_conn_get_queued (&link->conn) > self->limits.max_queued_bytes)
        {
          sub->dropped++;
          link->n_dropped++;
          continue;
        }
      if (body == NULL)
        {
          body = json_object_new_object ();
          ADD_KEY (body, "topic", json_object_new_string (topic_name));
          ADD_KEY (body, "source", json_object_new_string (source));
          if (data != NULL)
            ADD_KEY (body, "data", json_object_get (data));
          text = json_object_to_json_string_length (
              body, JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE, &text_len);
          if (text_len > DHF_XDM_MAX_BODY)
            {
              delivered = -1;
              break;
            }
        }
      dhf_xdm_append_text (dhf_xdm_conn_get_out (&link->conn), DHF_XDM_EVENT, 0, text, text_len);
      out_done (self, link);
      sub->delivered++;
      delivered++;
    }
  if (body != NULL)
    json_object_put (body);
  return delivered;
}

static void
handle_publish (DhfXdmRouter *self, DhfXdmLink *link, const DhfXdmMessage *msg)
{
  gint delivered;
  json_object *reply;

  /* Without an id the publisher wants no answer, not even a refusal (an
   * ERROR with id 0 would say dhfd is closing). */
  if (is_framework_name (msg->topic))
    {
      if (msg->id != 0)
        send_error (self, link, msg->id, DHF_ERROR_NOT_AUTHORIZED,
                    "topics %s* are published by dhfd only", DHF_XDM_FRAMEWORK_PREFIX);
      return;
    }
  delivered = publish (self, link, link->domain->name, msg->topic, msg->value);
  if (delivered < 0)
    {
      if (msg->id != 0)
        send_error (self, link, msg->id, DHF_ERROR_LIMIT_EXCEEDED,
                    "the event would be over the size limit of %u bytes", DHF_XDM_MAX_BODY);
      return;
    }
  if (msg->id == 0)
    return;
  reply = json_object_new_object ();
  ADD_KEY (reply, "delivered", json_object_new_int64 (delivered));
  send_json (self, link, DHF_XDM_REPLY, msg->id, reply);
  json_object_put (reply);
}

/* --- services -------------------------------------------------------------- */

static void
registration_free (DhfXdmRouter *self, DhfXdmRegistration *reg)
{
  DhfXdmService *svc = reg->service;

  g_ptr_array_remove (svc->regs, reg);
  g_ptr_array_remove_fast (reg->link->registrations, reg);
  reg->link->domain->n_registrations--;
  if (svc->regs->len == 0)
    g_hash_table_remove (self->services, svc->name);
  g_clear_pointer (&reg->listable, g_hash_table_unref);
  g_free (reg);
}

static void
service_free (DhfXdmService *svc)
{
  g_ptr_array_unref (svc->regs);
  g_free (svc->name);
  g_free (svc);
}

static void
handle_register (DhfXdmRouter *self, DhfXdmLink *link, const DhfXdmMessage *msg)
{
  DhfXdmDomain *domain = link->domain;
  DhfXdmRegistration *reg;
  DhfXdmService *svc;

  if (is_framework_name (msg->service))
    {
      send_error (self, link, msg->id, DHF_ERROR_NOT_AUTHORIZED,
                  "the names %s* are reserved for dhfd", DHF_XDM_FRAMEWORK_PREFIX);
      return;
    }
  if (find_registration (self, msg->service, domain->name) != NULL)
    {
      send_error (self, link, msg->id, DHF_ERROR_EXISTS, "%s already provides %s", domain->name,
                  msg->service);
      return;
    }
  if (domain->n_registrations >= self->limits.max_registrations)
    {
      send_error (self, link, msg->id, DHF_ERROR_LIMIT_EXCEEDED,
                  "%s provides %u services, the limit", domain->name, domain->n_registrations);
      return;
    }
  svc = g_hash_table_lookup (self->services, msg->service);
  if (svc == NULL)
    {
      svc = g_new0 (DhfXdmService, 1);
      svc->name = g_strdup (msg->service);
      svc->regs = g_ptr_array_new ();
      g_hash_table_insert (self->services, svc->name, svc);
    }
  reg = g_new0 (DhfXdmRegistration, 1);
  reg->service = svc;
  reg->link = link;
  g_ptr_array_add (svc->regs, reg);
  if (link->registrations == NULL)
    link->registrations = g_ptr_array_new ();
  g_ptr_array_add (link->registrations, reg);
  domain->n_registrations++;
  g_debug ("xdm: %s provides %s", domain->name, msg->service);
  send_empty (self, link, DHF_XDM_REPLY, msg->id);
}

static void
handle_unregister (DhfXdmRouter *self, DhfXdmLink *link, const DhfXdmMessage *msg)
{
  for (guint i = 0; link->registrations != NULL && i < link->registrations->len; i++)
    {
      DhfXdmRegistration *reg = g_ptr_array_index (link->registrations, i);

      if (g_str_equal (reg->service->name, msg->service))
        {
          registration_free (self, reg);
          send_empty (self, link, DHF_XDM_REPLY, msg->id);
          return;
        }
    }
  send_error (self, link, msg->id, DHF_ERROR_NOT_FOUND, "this connection does not provide %s",
              msg->service);
}

/* --- sessions ---------------------------------------------------------------- */

/* Forgets what link's session had, as if the connection had gone: its
 * callers are told the provider went away, its providers that the caller
 * did, the other ends of its streams that they are gone; its
 * registrations and subscriptions end. Nothing is sent to link itself. */
static void
drop_session (DhfXdmRouter *self, DhfXdmLink *link, const gchar *why)
{
  GHashTableIter iter;
  gpointer value;

  link->resetting = TRUE;
  /* Its calls, as caller. */
  while (link->calls_in != NULL && g_hash_table_size (link->calls_in) > 0)
    {
      g_hash_table_iter_init (&iter, link->calls_in);
      g_hash_table_iter_next (&iter, NULL, &value);
      call_abandon (self, value);
      call_free (self, value);
    }
  /* As provider. */
  while (link->calls_out != NULL && g_hash_table_size (link->calls_out) > 0)
    {
      g_autofree gchar *message = g_strdup_printf ("provider %s %s", link->domain->name, why);

      g_hash_table_iter_init (&iter, link->calls_out);
      g_hash_table_iter_next (&iter, NULL, &value);
      call_fail (self, value, DHF_ERROR_UNAVAILABLE, message);
    }
  while (link->streams != NULL && g_hash_table_size (link->streams) > 0)
    {
      g_autofree gchar *message = g_strdup_printf ("%s %s", link->domain->name, why);

      g_hash_table_iter_init (&iter, link->streams);
      g_hash_table_iter_next (&iter, NULL, &value);
      stream_reset (self, value, DHF_ERROR_UNAVAILABLE, message);
    }
  while (link->registrations != NULL && link->registrations->len > 0)
    registration_free (self, g_ptr_array_index (link->registrations, 0));
  while (link->subscriptions != NULL && link->subscriptions->len > 0)
    subscription_free (self, g_ptr_array_index (link->subscriptions, 0));
  link->resetting = FALSE;
}

static void
handle_hello (DhfXdmRouter *self, DhfXdmLink *link, const DhfXdmMessage *msg)
{
  g_autofree gchar *client = loggable (msg->client != NULL ? msg->client : "(no client name)");
  json_object *body, *limits;

  if (link->welcomed)
    {
      /* A guest's program restarted behind a channel that stayed open:
       * the new one starts afresh, and whatever was still queued for the
       * old one is not for it. */
      if (link->transport != DHF_XDM_TRANSPORT_CHANNEL)
        {
          protocol_error (self, link, "a second HELLO on a running session");
          return;
        }
      g_debug ("xdm: %s (connection %" G_GUINT64_FORMAT ") starts a new session",
               link->domain->name, link->id);
      drop_session (self, link, "went away (a new session started)");
      dhf_xdm_conn_discard_queued (&link->conn);
    }
  link->welcomed = TRUE;
  link->session_started_at = g_get_real_time ();
  g_free (link->client);
  link->client = msg->client != NULL ? loggable (msg->client) : NULL;
  link->conn.only_type = 0;
  link->conn.max_length = 0;
  timed_cancel (self, &link->hello);
  g_debug ("xdm: %s (connection %" G_GUINT64_FORMAT ", %s) says HELLO: %s", link->domain->name,
           link->id, dhf_xdm_transport_to_string (link->transport), client);

  body = json_object_new_object ();
  ADD_KEY (body, "version", json_object_new_int64 (msg->version));
  ADD_KEY (body, "domain", json_object_new_string (link->domain->name));
  if (link->uuid != NULL)
    ADD_KEY (body, "uuid", json_object_new_string (link->uuid));
  limits = json_object_new_object ();
  ADD_KEY (limits, "max_body", json_object_new_int64 (DHF_XDM_MAX_BODY));
  ADD_KEY (limits, "max_calls_in_flight", json_object_new_int64 (self->limits.max_calls_in_flight));
  ADD_KEY (body, "limits", limits);
  send_json (self, link, DHF_XDM_WELCOME, 0, body);
  json_object_put (body);
}

/* A domain without an XDM agent does this on its channel after every
 * reconnection: the transport decides what is worth a log line. */
static void
on_hello_expired (DhfXdmRouter *self, DhfXdmLink *link)
{
  g_autoptr (GError) error = g_error_new (DHF_ERROR, DHF_ERROR_TIMEOUT, "no HELLO within %u ms",
                                          self->limits.hello_timeout_ms);

  g_debug ("xdm: closing connection %" G_GUINT64_FORMAT " of %s: %s", link->id, link->domain->name,
           error->message);
  send_gerror (self, link, 0, error);
  doom (self, link, error, TRUE);
}

/* ERROR with id 0: the peer is about to close the connection (section 3
 * of protos/xdm.md); dhfd does so first. Its text is logged once, since
 * the connection goes. code and message are the peer's. */
static void
peer_closes (DhfXdmRouter *self, DhfXdmLink *link, const gchar *peer_code,
             const gchar *peer_message)
{
  g_autofree gchar *code = loggable (peer_code);
  g_autofree gchar *text = loggable (peer_message);
  g_autoptr (GError) error
      = g_error_new (DHF_ERROR, DHF_ERROR_DISCONNECTED, "it ended the session: %s: %s", code, text);

  g_message ("xdm: closing connection %" G_GUINT64_FORMAT " of %s: %s", link->id,
             link->domain->name, error->message);
  doom (self, link, error, TRUE);
}

/* --- frames -------------------------------------------------------------------- */

static void
handle_message (DhfXdmRouter *self, DhfXdmLink *link, const DhfXdmHeader *header, guint8 *frame)
{
  g_autoptr (GError) error = NULL;
  gsize length = DHF_XDM_HEADER_SIZE + header->length;
  DhfXdmMessage msg;

  /* Nothing but HELLO reaches here before the session: the connection
   * refuses other frames from their header (link->conn.only_type). */
  g_assert (link->welcomed || header->type == DHF_XDM_HELLO);
  if (!dhf_xdm_message_parse (header, frame + DHF_XDM_HEADER_SIZE, &msg, &error))
    {
      if (header->type == DHF_XDM_HELLO || g_error_matches (error, DHF_ERROR, DHF_ERROR_PROTOCOL))
        protocol_error (self, link, "%s", error->message);
      else if (header->type == DHF_XDM_ERROR && header->id == 0)
        peer_closes (self, link, "(invalid)", error->message);
      else if (header->type == DHF_XDM_REPLY || header->type == DHF_XDM_ERROR)
        handle_bad_answer (self, link, header, error);
      else if (header->type == DHF_XDM_STREAM_CREDIT || header->type == DHF_XDM_STREAM_CLOSE)
        {
          DhfXdmStream *stream = table_lookup (link->streams, header->id);

          body_error (self, link, header->id, error);
          if (stream != NULL)
            stream_reset (self, stream, DHF_ERROR_PROTOCOL, error->message);
        }
      else
        body_error (self, link, header->id, error);
      return;
    }

  if (msg.source != NULL && !g_str_equal (msg.source, link->domain->name))
    {
      g_autoptr (GError) spoof = g_error_new (DHF_ERROR, DHF_ERROR_NOT_AUTHORIZED,
                                              "source %s is not this connection's domain %s",
                                              msg.source, link->domain->name);

      link->n_denied++;
      body_error (self, link, msg.id, spoof);
      dhf_xdm_message_clear (&msg);
      return;
    }

  switch (msg.type)
    {
      case DHF_XDM_HELLO:
        handle_hello (self, link, &msg);
        break;
      case DHF_XDM_REGISTER:
        handle_register (self, link, &msg);
        break;
      case DHF_XDM_UNREGISTER:
        handle_unregister (self, link, &msg);
        break;
      case DHF_XDM_CALL:
      case DHF_XDM_STREAM_OPEN:
        handle_request (self, link, &msg);
        break;
      case DHF_XDM_REPLY:
        handle_answer (self, link, &msg, frame, length);
        break;
      case DHF_XDM_ERROR:
        if (msg.id == 0)
          peer_closes (self, link, msg.code, msg.message);
        else
          handle_answer (self, link, &msg, frame, length);
        break;
      case DHF_XDM_CANCEL:
        handle_cancel (self, link, msg.id);
        break;
      case DHF_XDM_SUBSCRIBE:
        handle_subscribe (self, link, &msg);
        break;
      case DHF_XDM_UNSUBSCRIBE:
        handle_unsubscribe (self, link, &msg);
        break;
      case DHF_XDM_PUBLISH:
        handle_publish (self, link, &msg);
        break;
      case DHF_XDM_STREAM_CREDIT:
        handle_stream_credit (self, link, &msg);
        break;
      case DHF_XDM_STREAM_CLOSE:
        handle_stream_close (self, link, &msg, frame, length);
        break;
      case DHF_XDM_PING:
        send_empty (self, link, DHF_XDM_PONG, msg.id);
        break;
      case DHF_XDM_PONG:
        break;
      case DHF_XDM_WELCOME:
      case DHF_XDM_EVENT:
        {
          g_autoptr (GError) wrong
              = g_error_new (DHF_ERROR, DHF_ERROR_PROTOCOL, "%s is sent by dhfd only",
                             dhf_xdm_type_to_string (msg.type));

          body_error (self, link, msg.id, wrong);
        }
        break;
      case DHF_XDM_STREAM_DATA:
      case DHF_XDM_N_TYPES:
      default:
        g_assert_not_reached ();
    }
  dhf_xdm_message_clear (&msg);
}

static gboolean
on_frame (DhfXdmConn *conn, const DhfXdmHeader *header, guint8 *frame, gpointer user_data)
{
  DhfXdmRouter *self = user_data;
  DhfXdmLink *link = (DhfXdmLink *) conn;

  if (link->doomed)
    return FALSE;
  self->busy++;
  if (header->type == DHF_XDM_STREAM_DATA && link->welcomed)
    handle_stream_data (self, link, header, frame);
  else
    handle_message (self, link, header, frame);
  self->busy--;
  return !link->doomed;
}

static void
on_failed (DhfXdmConn *conn, GError *error, gpointer user_data)
{
  DhfXdmRouter *self = user_data;
  DhfXdmLink *link = (DhfXdmLink *) conn;

  if (error == NULL)
    g_debug ("xdm: connection %" G_GUINT64_FORMAT " of %s ended", link->id, link->domain->name);
  else if (g_error_matches (error, DHF_ERROR, DHF_ERROR_PROTOCOL))
    {
      g_message ("xdm: closing connection %" G_GUINT64_FORMAT " of %s: %s", link->id,
                 link->domain->name, error->message);
      send_gerror (self, link, 0, error);
      doom (self, link, error, TRUE);
      return;
    }
  else
    g_message ("xdm: connection %" G_GUINT64_FORMAT " of %s failed: %s", link->id,
               link->domain->name, error->message);
  doom (self, link, error, FALSE);
}

static void
on_timer (gpointer user_data)
{
  DhfXdmRouter *self = user_data;
  gint64 now = g_get_monotonic_time ();

  self->busy++;
  while (self->heap->len > 0 && heap_at (self, 0)->deadline <= now)
    {
      DhfXdmTimed *t = heap_at (self, 0);

      timed_cancel (self, t);
      switch (t->kind)
        {
          case DHF_XDM_TIMED_HELLO:
            on_hello_expired (self,
                              (DhfXdmLink *) ((guint8 *) t - G_STRUCT_OFFSET (DhfXdmLink, hello)));
            break;
          case DHF_XDM_TIMED_CALL:
            on_call_expired (self, (DhfXdmCall *) t);
            break;
          case DHF_XDM_TIMED_ASK:
            on_ask_expired (self, (DhfXdmAsk *) t);
            break;
          default:
            g_assert_not_reached ();
        }
    }
  self->busy--;
  dhf_xdm_poller_rearm (self->poller, self->heap->len > 0 ? heap_at (self, 0)->deadline : -1);
}

static void
on_settle (gpointer user_data)
{
  settle (user_data);
}

/* --- closing ------------------------------------------------------------------- */

/* Writes what was queued, closes the connections condemned meanwhile
 * (which may queue more for others), and relays the stream credit that
 * can go now: repeated until nothing is left. */
static void
settle (DhfXdmRouter *self)
{
  g_autoptr (DhfXdmRouter) hold = NULL;

  if (self->settling || self->busy > 0)
    return;
  /* A closed func may drop the last reference to the router. */
  if (self->doomed->len > 0)
    hold = g_object_ref (self);
  self->settling = TRUE;
  for (;;)
    {
      if (self->dirty->len > 0)
        {
          DhfXdmLink *link = g_ptr_array_steal_index_fast (self->dirty, self->dirty->len - 1);
          g_autoptr (GError) error = NULL;

          link->dirty = FALSE;
          if (link->doomed)
            continue;
          if (!dhf_xdm_conn_flush (&link->conn, &error))
            {
              g_message ("xdm: connection %" G_GUINT64_FORMAT " of %s failed: %s", link->id,
                         link->domain->name, error->message);
              doom (self, link, error, FALSE);
            }
        }
      else if (self->doomed->len > 0)
        {
          DhfXdmLink *link = g_ptr_array_index (self->doomed, 0);

          if (link->flush_first)
            dhf_xdm_conn_flush (&link->conn, NULL);
          teardown (self, link);
        }
      else if (!relay_grants (self))
        break;
    }
  self->settling = FALSE;
}

/* Closes link now and forgets everything it had (drop_session()). */
static void
teardown (DhfXdmRouter *self, DhfXdmLink *link)
{
  g_autoptr (GError) error = g_steal_pointer (&link->error);
  DhfXdmClosedFunc closed = link->notify ? link->closed : NULL;
  gpointer closed_data = link->closed_data;
  gboolean established = link->welcomed;
  guint64 id = link->id;

  g_hash_table_steal (self->links, &link->id);
  if (link->doomed)
    g_ptr_array_remove (self->doomed, link);
  if (link->dirty)
    g_ptr_array_remove_fast (self->dirty, link);
  link->doomed = TRUE;
  link->dirty = FALSE;
  timed_cancel (self, &link->hello);
  dhf_xdm_conn_clear (&link->conn);
  self->busy++;
  drop_session (self, link, "went away");
  self->busy--;

  g_clear_pointer (&link->calls_in, g_hash_table_unref);
  g_clear_pointer (&link->calls_out, g_hash_table_unref);
  g_clear_pointer (&link->streams, g_hash_table_unref);
  g_clear_pointer (&link->registrations, g_ptr_array_unref);
  g_clear_pointer (&link->subscriptions, g_ptr_array_unref);
  if (link->transport == DHF_XDM_TRANSPORT_UNIX)
    self->n_unix--;
  link->domain->n_links--;
  domain_release (self, link->domain);
  g_debug ("xdm: connection %" G_GUINT64_FORMAT " closed", id);
  g_free (link->uuid);
  g_free (link->client);
  g_free (link);

  if (closed != NULL)
    closed (id, error, established, closed_data);
}

/* --- public API ------------------------------------------------------------------ */

DhfXdmRouter *
dhf_xdm_router_new (DhfPolicyService *policy, const DhfXdmLimits *limits,
                    DhfPolicyDomainLookup lookup, gpointer lookup_data)
{
  DhfXdmRouter *self;
  gsize floor;

  g_return_val_if_fail (DHF_IS_POLICY_SERVICE (policy), NULL);

  self = g_object_new (DHF_TYPE_XDM_ROUTER, NULL);
  self->policy = g_object_ref (policy);
  if (limits != NULL)
    self->limits = *limits;
  else
    dhf_xdm_limits_init (&self->limits);
  /* The hard cap must leave room for one frame over the soft one, or an
   * ordinary large reply would cut off a peer that reads. */
  if (self->limits.max_connection_bytes == 0)
    self->limits.max_connection_bytes = 4 * self->limits.max_queued_bytes;
  floor = self->limits.max_queued_bytes + DHF_XDM_HEADER_SIZE + DHF_XDM_MAX_BODY;
  self->limits.max_connection_bytes = MAX (self->limits.max_connection_bytes, floor);
  /* Stream data stops one frame short of the hard cap: room is left for
   * the answers to the receiver's own requests. */
  self->data_cap = MAX (self->limits.max_queued_bytes,
                        self->limits.max_connection_bytes - DHF_XDM_HEADER_SIZE - DHF_XDM_MAX_BODY);
  self->lookup = lookup;
  self->lookup_data = lookup_data;
  return self;
}

void
dhf_xdm_router_set_directory (DhfXdmRouter *self, DhfXdmDirectory directory, gpointer user_data)
{
  g_return_if_fail (DHF_IS_XDM_ROUTER (self));
  self->directory = directory;
  self->directory_data = user_data;
}

void
dhf_xdm_router_set_asker (DhfXdmRouter *self, DhfXdmAsker asker, gpointer user_data)
{
  g_return_if_fail (DHF_IS_XDM_ROUTER (self));
  self->asker = asker;
  self->asker_data = user_data;
}

void
dhf_xdm_router_set_switch_handler (DhfXdmRouter *self, DhfXdmSwitchHandler handler,
                                   gpointer user_data)
{
  g_return_if_fail (DHF_IS_XDM_ROUTER (self));
  self->switch_handler = handler;
  self->switch_data = user_data;
}

guint64
dhf_xdm_router_add_connection (DhfXdmRouter *self, gint fd, const DhfXdmPeer *peer,
                               DhfXdmClosedFunc closed, gpointer closed_data, GError **error)
{
  DhfXdmLink *link;

  g_return_val_if_fail (DHF_IS_XDM_ROUTER (self), 0);
  g_return_val_if_fail (fd >= 0, 0);
  g_return_val_if_fail (peer != NULL && peer->domain != NULL, 0);

  if (!dhf_xdm_domain_is_valid (peer->domain))
    {
      close (fd);
      g_set_error (error, DHF_ERROR, DHF_ERROR_INVALID_ARGS, "invalid domain name \"%s\"",
                   peer->domain);
      return 0;
    }
  if (peer->transport == DHF_XDM_TRANSPORT_UNIX && self->n_unix >= self->limits.max_dom0_clients)
    {
      close (fd);
      g_set_error (error, DHF_ERROR, DHF_ERROR_LIMIT_EXCEEDED,
                   "%u dom0 clients are connected, the limit", self->n_unix);
      return 0;
    }
  /* A guest may open vsock connections at will; the channel is dhfd's
   * own, one per domain, and always taken. */
  if (peer->transport == DHF_XDM_TRANSPORT_VSOCK && !is_dom0_name (peer->domain))
    {
      DhfXdmDomain *known = g_hash_table_lookup (self->domains, peer->domain);

      if (known != NULL && known->n_links >= self->limits.max_domain_connections)
        {
          close (fd);
          g_set_error (error, DHF_ERROR, DHF_ERROR_LIMIT_EXCEEDED,
                       "%s has %u connections, the limit", peer->domain, known->n_links);
          return 0;
        }
    }

  link = g_new0 (DhfXdmLink, 1);
  if (!dhf_xdm_conn_init (&link->conn, self->poller, fd, error))
    {
      close (fd);
      g_free (link);
      return 0;
    }
  link->router = self;
  link->id = ++self->next_link_id;
  link->domain = domain_get (self, peer->domain);
  link->domain->n_links++;
  link->transport = peer->transport;
  link->uuid = g_strdup (peer->uuid);
  link->uid = peer->transport == DHF_XDM_TRANSPORT_UNIX ? peer->uid : (uid_t) -1;
  link->pid = peer->transport == DHF_XDM_TRANSPORT_UNIX ? peer->pid : 0;
  link->connected_at = g_get_real_time ();
  link->closed = closed;
  link->closed_data = closed_data;
  link->notify = TRUE;
  link->next_id = FIRST_DHFD_ID;
  /* Until the session starts, a peer gets no more than a small HELLO
   * buffered: the rest is refused from its header. */
  link->conn.only_type = DHF_XDM_HELLO;
  link->conn.max_length = DHF_XDM_ROUTER_HELLO_MAX_BODY;
  if (link->transport == DHF_XDM_TRANSPORT_UNIX)
    self->n_unix++;
  g_hash_table_insert (self->links, &link->id, link);
  /* A channel is the one connection of its domain, made by dhfd, and may
   * be made long before the guest's agent runs (the guest boots, or has
   * no agent at all): its HELLO is awaited without a deadline. */
  if (link->transport != DHF_XDM_TRANSPORT_CHANNEL)
    timed_schedule (self, &link->hello, DHF_XDM_TIMED_HELLO,
                    g_get_monotonic_time () + (gint64) self->limits.hello_timeout_ms * 1000);
  g_debug ("xdm: connection %" G_GUINT64_FORMAT " of %s over %s", link->id, peer->domain,
           dhf_xdm_transport_to_string (peer->transport));
  return link->id;
}

static void
close_link (DhfXdmRouter *self, DhfXdmLink *link)
{
  link->notify = FALSE;
  /* Inside a handler the connection may still be in use: it goes at the
   * end of the dispatch. */
  if (self->busy > 0 || self->settling)
    {
      doom (self, link, NULL, FALSE);
      return;
    }
  teardown (self, link);
}

void
dhf_xdm_router_close_connection (DhfXdmRouter *self, guint64 connection_id)
{
  DhfXdmLink *link;

  g_return_if_fail (DHF_IS_XDM_ROUTER (self));
  link = g_hash_table_lookup (self->links, &connection_id);
  if (link == NULL)
    return;
  close_link (self, link);
  settle (self);
}

void
dhf_xdm_router_close_domain (DhfXdmRouter *self, const gchar *domain)
{
  g_autoptr (GPtrArray) links = g_ptr_array_new ();
  GHashTableIter iter;
  gpointer value;

  g_return_if_fail (DHF_IS_XDM_ROUTER (self));
  g_return_if_fail (domain != NULL);

  g_hash_table_iter_init (&iter, self->links);
  while (g_hash_table_iter_next (&iter, NULL, &value))
    {
      DhfXdmLink *link = value;

      if (g_str_equal (link->domain->name, domain))
        g_ptr_array_add (links, link);
    }
  for (guint i = 0; i < links->len; i++)
    {
      DhfXdmLink *link = g_ptr_array_index (links, i);

      /* The transport is told (it keeps no reconnection for a domain that
       * stopped): closed() runs with error NULL. */
      link->notify = TRUE;
      if (self->busy > 0 || self->settling)
        doom (self, link, NULL, FALSE);
      else
        teardown (self, link);
    }
  settle (self);
}

void
dhf_xdm_router_domains_changed (DhfXdmRouter *self)
{
  g_return_if_fail (DHF_IS_XDM_ROUTER (self));
  self->list_gen++;
}

void
dhf_xdm_router_publish (DhfXdmRouter *self, const gchar *topic, json_object *data)
{
  g_return_if_fail (DHF_IS_XDM_ROUTER (self));
  g_return_if_fail (dhf_xdm_name_is_valid (topic));

  self->busy++;
  publish (self, NULL, "dom0", topic, data);
  self->busy--;
  settle (self);
}

guint
dhf_xdm_router_get_n_connections (DhfXdmRouter *self)
{
  g_return_val_if_fail (DHF_IS_XDM_ROUTER (self), 0);
  return g_hash_table_size (self->links);
}

static gint
compare_links (gconstpointer a, gconstpointer b)
{
  const DhfXdmLink *la = *(DhfXdmLink *const *) a;
  const DhfXdmLink *lb = *(DhfXdmLink *const *) b;

  return la->id < lb->id ? -1 : la->id > lb->id;
}

/* Every connection, by id. */
static GPtrArray *
sorted_links (DhfXdmRouter *self)
{
  GPtrArray *links = g_ptr_array_new ();
  GHashTableIter iter;
  gpointer value;

  g_hash_table_iter_init (&iter, self->links);
  while (g_hash_table_iter_next (&iter, NULL, &value))
    g_ptr_array_add (links, value);
  g_ptr_array_sort (links, compare_links);
  return links;
}

GVariant *
dhf_xdm_router_list_connections (DhfXdmRouter *self)
{
  g_autoptr (GPtrArray) links = NULL;
  GVariantBuilder builder;

  g_return_val_if_fail (DHF_IS_XDM_ROUTER (self), NULL);

  links = sorted_links (self);
  g_variant_builder_init (&builder, G_VARIANT_TYPE ("aa{sv}"));
  for (guint i = 0; i < links->len; i++)
    {
      DhfXdmLink *link = g_ptr_array_index (links, i);
      GVariantBuilder entry, services, topics;

      g_variant_builder_init (&services, G_VARIANT_TYPE_STRING_ARRAY);
      for (guint j = 0; link->registrations != NULL && j < link->registrations->len; j++)
        g_variant_builder_add (
            &services, "s",
            ((DhfXdmRegistration *) g_ptr_array_index (link->registrations, j))->service->name);
      g_variant_builder_init (&topics, G_VARIANT_TYPE_STRING_ARRAY);
      for (guint j = 0; link->subscriptions != NULL && j < link->subscriptions->len; j++)
        g_variant_builder_add (
            &topics, "s",
            ((DhfXdmSubscription *) g_ptr_array_index (link->subscriptions, j))->topic->name);

      g_variant_builder_init (&entry, G_VARIANT_TYPE_VARDICT);
      g_variant_builder_add (&entry, "{sv}", "id", g_variant_new_uint64 (link->id));
      g_variant_builder_add (&entry, "{sv}", "domain", g_variant_new_string (link->domain->name));
      g_variant_builder_add (&entry, "{sv}", "transport",
                             g_variant_new_string (dhf_xdm_transport_to_string (link->transport)));
      if (link->transport == DHF_XDM_TRANSPORT_UNIX)
        {
          g_variant_builder_add (&entry, "{sv}", "uid", g_variant_new_uint32 (link->uid));
          g_variant_builder_add (&entry, "{sv}", "pid", g_variant_new_uint32 ((guint32) link->pid));
        }
      g_variant_builder_add (&entry, "{sv}", "connected-at",
                             g_variant_new_int64 (link->connected_at));
      if (link->welcomed)
        g_variant_builder_add (&entry, "{sv}", "session-started-at",
                               g_variant_new_int64 (link->session_started_at));
      if (link->welcomed && link->client != NULL)
        g_variant_builder_add (&entry, "{sv}", "client", g_variant_new_string (link->client));
      g_variant_builder_add (&entry, "{sv}", "calls-in-flight",
                             g_variant_new_uint32 (link->calls_in_flight));
      g_variant_builder_add (&entry, "{sv}", "queued-bytes",
                             g_variant_new_uint64 (dhf_xdm_conn_get_queued (&link->conn)));
      g_variant_builder_add (&entry, "{sv}", "calls", g_variant_new_uint64 (link->n_calls));
      g_variant_builder_add (&entry, "{sv}", "denied", g_variant_new_uint64 (link->n_denied));
      g_variant_builder_add (&entry, "{sv}", "dropped-events",
                             g_variant_new_uint64 (link->n_dropped));
      g_variant_builder_add (&entry, "{sv}", "services", g_variant_builder_end (&services));
      g_variant_builder_add (&entry, "{sv}", "topics", g_variant_builder_end (&topics));
      g_variant_builder_add_value (&builder, g_variant_builder_end (&entry));
    }
  return g_variant_builder_end (&builder);
}

GVariant *
dhf_xdm_router_list_services (DhfXdmRouter *self)
{
  g_autoptr (GPtrArray) links = NULL;
  GVariantBuilder builder;

  g_return_val_if_fail (DHF_IS_XDM_ROUTER (self), NULL);

  links = sorted_links (self);
  g_variant_builder_init (&builder, G_VARIANT_TYPE ("aa{sv}"));
  for (guint i = 0; i < links->len; i++)
    {
      DhfXdmLink *link = g_ptr_array_index (links, i);

      for (guint j = 0; link->registrations != NULL && j < link->registrations->len; j++)
        {
          DhfXdmRegistration *reg = g_ptr_array_index (link->registrations, j);
          GVariantBuilder entry;

          g_variant_builder_init (&entry, G_VARIANT_TYPE_VARDICT);
          g_variant_builder_add (&entry, "{sv}", "service",
                                 g_variant_new_string (reg->service->name));
          g_variant_builder_add (&entry, "{sv}", "domain",
                                 g_variant_new_string (link->domain->name));
          g_variant_builder_add (&entry, "{sv}", "connection", g_variant_new_uint64 (link->id));
          g_variant_builder_add (&entry, "{sv}", "calls", g_variant_new_uint64 (reg->calls));
          g_variant_builder_add_value (&builder, g_variant_builder_end (&entry));
        }
    }
  return g_variant_builder_end (&builder);
}

GVariant *
dhf_xdm_router_list_subscriptions (DhfXdmRouter *self)
{
  g_autoptr (GPtrArray) links = NULL;
  GVariantBuilder builder;

  g_return_val_if_fail (DHF_IS_XDM_ROUTER (self), NULL);

  links = sorted_links (self);
  g_variant_builder_init (&builder, G_VARIANT_TYPE ("aa{sv}"));
  for (guint i = 0; i < links->len; i++)
    {
      DhfXdmLink *link = g_ptr_array_index (links, i);

      for (guint j = 0; link->subscriptions != NULL && j < link->subscriptions->len; j++)
        {
          DhfXdmSubscription *sub = g_ptr_array_index (link->subscriptions, j);
          GVariantBuilder entry;

          g_variant_builder_init (&entry, G_VARIANT_TYPE_VARDICT);
          g_variant_builder_add (&entry, "{sv}", "topic", g_variant_new_string (sub->topic->name));
          g_variant_builder_add (&entry, "{sv}", "domain",
                                 g_variant_new_string (link->domain->name));
          g_variant_builder_add (&entry, "{sv}", "connection", g_variant_new_uint64 (link->id));
          g_variant_builder_add (&entry, "{sv}", "delivered",
                                 g_variant_new_uint64 (sub->delivered));
          g_variant_builder_add (&entry, "{sv}", "dropped", g_variant_new_uint64 (sub->dropped));
          g_variant_builder_add_value (&builder, g_variant_builder_end (&entry));
        }
    }
  return g_variant_builder_end (&builder);
}

/* --- GObject ------------------------------------------------------------------- */

static void
dhf_xdm_router_init (DhfXdmRouter *self)
{
  static const DhfXdmPollerFuncs funcs = {
    .frame = on_frame,
    .failed = on_failed,
    .timer = on_timer,
    .settle = on_settle,
  };

  dhf_xdm_limits_init (&self->limits);
  self->context = g_main_context_ref_thread_default ();
  self->poller = dhf_xdm_poller_new (self->context, &funcs, self);
  self->links = g_hash_table_new (g_int64_hash, g_int64_equal);
  self->domains
      = g_hash_table_new_full (g_str_hash, g_str_equal, NULL, (GDestroyNotify) domain_free);
  self->services
      = g_hash_table_new_full (g_str_hash, g_str_equal, NULL, (GDestroyNotify) service_free);
  self->topics = g_hash_table_new_full (g_str_hash, g_str_equal, NULL, (GDestroyNotify) topic_free);
  self->switching = g_hash_table_new_full (g_str_hash, g_str_equal, g_free, NULL);
  self->heap = g_ptr_array_new ();
  self->text = g_string_sized_new (256);
  self->dirty = g_ptr_array_new ();
  self->doomed = g_ptr_array_new ();
  self->grants = g_ptr_array_new ();
  self->list_gen = 1;
}

static void
dhf_xdm_router_dispose (GObject *object)
{
  DhfXdmRouter *self = DHF_XDM_ROUTER (object);

  /* Nobody is told at finalization. */
  while (self->links != NULL && g_hash_table_size (self->links) > 0)
    {
      GHashTableIter iter;
      gpointer value;

      g_hash_table_iter_init (&iter, self->links);
      g_hash_table_iter_next (&iter, NULL, &value);
      ((DhfXdmLink *) value)->notify = FALSE;
      self->busy++;
      teardown (self, value);
      self->busy--;
    }
  g_clear_object (&self->policy);
  G_OBJECT_CLASS (dhf_xdm_router_parent_class)->dispose (object);
}

static void
dhf_xdm_router_finalize (GObject *object)
{
  DhfXdmRouter *self = DHF_XDM_ROUTER (object);

  g_clear_pointer (&self->poller, dhf_xdm_poller_free);
  g_clear_pointer (&self->links, g_hash_table_unref);
  g_clear_pointer (&self->domains, g_hash_table_unref);
  g_clear_pointer (&self->services, g_hash_table_unref);
  g_clear_pointer (&self->topics, g_hash_table_unref);
  g_clear_pointer (&self->switching, g_hash_table_unref);
  g_clear_pointer (&self->heap, g_ptr_array_unref);
  if (self->text != NULL)
    g_string_free (g_steal_pointer (&self->text), TRUE);
  g_clear_pointer (&self->dirty, g_ptr_array_unref);
  g_clear_pointer (&self->doomed, g_ptr_array_unref);
  g_clear_pointer (&self->grants, g_ptr_array_unref);
  g_main_context_unref (self->context);
  G_OBJECT_CLASS (dhf_xdm_router_parent_class)->finalize (object);
}

static void
dhf_xdm_router_class_init (DhfXdmRouterClass *klass)
{
  GObjectClass *object_class = G_OBJECT_CLASS (klass);

  object_class->dispose = dhf_xdm_router_dispose;
  object_class->finalize = dhf_xdm_router_finalize;
}
