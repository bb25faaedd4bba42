/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include "config.h"

#include <errno.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <glib-unix.h>

#include "dhf-test-util.h"
#include "xdm-router-harness.h"

/* How long any one wait may take before the test fails (a hang is a
 * failure, not a timing assertion: nothing here waits for time to pass). */
#define WAIT_LIMIT_S 60

const gchar *const harness_policy = "org.dhf.framework.Whoami          @any   @dom0   allow\n"
                                    "org.dhf.framework.Whoami          @dom0  @dom0   allow\n"
                                    "org.dhf.framework.ListAppliances  @any   @dom0   allow\n"
                                    "org.dhf.framework.ListAppliances  @dom0  @dom0   allow\n"
                                    "org.dhf.framework.ApplianceState  @dom0  @any    allow\n"
                                    "org.example.Echo1     alpha  beta    allow\n"
                                    "org.example.Echo1     alpha  gamma   allow\n"
                                    "org.example.Echo1     alpha  sleepy  allow\n"
                                    "org.example.Echo1     alpha  nobody  allow\n"
                                    "org.example.Echo1     gamma  beta    allow\n"
                                    "org.example.Echo1     @dom0  beta    allow\n"
                                    "org.example.Deny1     alpha  beta    deny\n"
                                    "org.example.Ask1      alpha  beta    ask\n"
                                    "org.example.AskR1     alpha  beta    ask target=gamma\n"
                                    "org.example.Redir1    alpha  beta    allow target=gamma\n"
                                    "org.example.Quota1    alpha  beta    allow quota=2\n"
                                    "org.example.Multi1    alpha  @any    allow\n"
                                    "org.example.One1      alpha  beta    allow\n"
                                    "org.example.Stream1   alpha  beta    allow\n"
                                    "org.example.Stream1   alpha  alpha   allow\n"
                                    "org.example.Topic1    alpha  beta    allow\n"
                                    "org.example.Topic1    alpha  delta   ask\n"
                                    "org.example.Topic1    @dom0  @any    allow\n"
                                    "org.example.Hidden1   gamma  delta   allow\n"
                                    "org.example.Spare1    gamma  delta   allow\n"
                                    "org.example.Stream1   beta   alpha   allow\n"
                                    "org.example.Deny1     @dom0  beta    deny\n"
                                    "*                     @any   @any    deny\n";

/* --- domains as the daemon would describe them --------------------------- */

guint harness_lookups;

static gboolean
lookup_domain (const gchar *name, DhfPolicyDomain *domain, gpointer user_data)
{
  static const gchar *const corp[] = { "corp", "laptop", NULL };

  harness_lookups++;
  memset (domain, 0, sizeof *domain);
  domain->name = name;
  if (g_str_equal (name, "alpha"))
    {
      domain->role = "environment";
      domain->tags = corp;
      domain->vendor = "acme";
      return TRUE;
    }
  if (g_str_equal (name, "beta") || g_str_equal (name, "sleepy"))
    {
      domain->role = "service";
      return TRUE;
    }
  return FALSE;
}

static DhfXdmDomainEntry *
entry_new (const gchar *name, const gchar *role, const gchar *state)
{
  DhfXdmDomainEntry *entry = g_new0 (DhfXdmDomainEntry, 1);

  entry->name = g_strdup (name);
  entry->role = g_strdup (role);
  entry->state = g_strdup (state);
  return entry;
}

static GPtrArray *
directory (gpointer user_data)
{
  GPtrArray *entries = g_ptr_array_new_with_free_func ((GDestroyNotify) dhf_xdm_domain_entry_free);

  g_ptr_array_add (entries, entry_new ("alpha", "environment", "running"));
  g_ptr_array_add (entries, entry_new ("beta", "service", "running"));
  g_ptr_array_add (entries, entry_new ("sleepy", "service", "shut-off"));
  return entries;
}

/* --- the asker ------------------------------------------------------------- */

static void
question_free (Question *q)
{
  g_free (q->service);
  g_free (q->argument);
  g_free (q->source);
  g_free (q->target);
  g_free (q->rule);
  g_clear_object (&q->cancellable);
  g_free (q);
}

typedef struct
{
  DhfXdmAskDone done;
  gpointer done_data;
  GCancellable *cancellable;
} Later;

static gboolean
answer_no_later (gpointer data)
{
  Later *later = data;

  if (!g_cancellable_is_cancelled (later->cancellable))
    later->done (FALSE, later->done_data);
  g_object_unref (later->cancellable);
  g_free (later);
  return G_SOURCE_REMOVE;
}

static void
asker (const DhfXdmQuestion *question, GCancellable *cancellable, DhfXdmAskDone done,
       gpointer done_data, gpointer user_data)
{
  Fixture *f = user_data;
  Question *q = g_new0 (Question, 1);
  Later *later;

  q->service = g_strdup (question->service);
  q->argument = g_strdup (question->argument);
  q->source = g_strdup (question->source);
  q->target = g_strdup (question->target);
  q->rule = g_strdup (question->rule);
  q->stream = question->stream;
  q->cancellable = g_object_ref (cancellable);
  g_ptr_array_add (f->questions, q);

  switch (f->ask_mode)
    {
      case ASK_YES:
        done (TRUE, done_data);
        break;
      case ASK_NO:
        later = g_new0 (Later, 1);
        later->done = done;
        later->done_data = done_data;
        later->cancellable = g_object_ref (cancellable);
        g_idle_add (answer_no_later, later);
        break;
      case ASK_NEVER:
      case ASK_NONE:
      default:
        break;
    }
}

void
fixture_set_ask_mode (Fixture *f, AskMode mode)
{
  f->ask_mode = mode;
  dhf_xdm_router_set_asker (f->router, mode == ASK_NONE ? NULL : asker, f);
}

/* --- the fixture ----------------------------------------------------------- */

static void
on_closed (guint64 id, const GError *error, gboolean established, gpointer user_data)
{
  Fixture *f = user_data;
  ClosedRecord record = { id, error != NULL, error != NULL ? error->domain : 0,
                          error != NULL ? error->code : 0, established };

  g_assert_null (fixture_closed (f, id));
  g_array_append_val (f->closed, record);
}

const ClosedRecord *
fixture_closed (Fixture *f, guint64 id)
{
  for (guint i = 0; i < f->closed->len; i++)
    {
      const ClosedRecord *record = &g_array_index (f->closed, ClosedRecord, i);

      if (record->id == id)
        return record;
    }
  return NULL;
}

static void
peer_free (Peer *p)
{
  if (p->fd >= 0)
    close (p->fd);
  g_byte_array_unref (p->in);
  g_free (p->domain);
  g_free (p);
}

void
fixture_setup (Fixture *f, void (*tweak) (DhfXdmLimits *limits))
{
  g_autofree gchar *admin = NULL;
  g_autofree gchar *vendor = NULL;
  const gchar *dirs[3];

  memset (f, 0, sizeof *f);
  f->root = g_dir_make_tmp ("dhf-xdm-router-XXXXXX", NULL);
  g_assert_nonnull (f->root);
  admin = g_build_filename (f->root, "admin", NULL);
  vendor = g_build_filename (f->root, "vendor", NULL);
  dhf_test_write_file (admin, "50-test.policy", harness_policy);
  dirs[0] = admin;
  dirs[1] = vendor;
  dirs[2] = NULL;
  f->store = dhf_policy_store_new (dirs, NULL);
  g_assert_true (dhf_policy_store_reload (f->store));
  /* Only Policy.Reload on D-Bus asks the authority; nothing here does. */
  f->authority = g_object_new (DHF_TYPE_AUTHORITY, NULL);
  f->policy = dhf_policy_service_new (f->store, f->authority, lookup_domain, NULL);

  dhf_xdm_limits_init (&f->limits);
  f->limits.max_registrations = 4;
  f->limits.max_subscriptions = 4;
  f->limits.max_streams = 3;
  f->limits.max_pending_asks = 2;
  f->limits.ask_timeout_ms = 200;
  if (tweak != NULL)
    tweak (&f->limits);
  f->router = dhf_xdm_router_new (f->policy, &f->limits, lookup_domain, NULL);
  dhf_xdm_router_set_directory (f->router, directory, NULL);
  f->peers = g_ptr_array_new_with_free_func ((GDestroyNotify) peer_free);
  f->closed = g_array_new (FALSE, FALSE, sizeof (ClosedRecord));
  f->questions = g_ptr_array_new_with_free_func ((GDestroyNotify) question_free);
}

void
fixture_teardown (Fixture *f)
{
  g_clear_object (&f->router);
  /* Let the sources the router and the policy removed go. */
  while (g_main_context_iteration (NULL, FALSE))
    ;
  g_ptr_array_unref (f->peers);
  g_array_unref (f->closed);
  g_ptr_array_unref (f->questions);
  g_clear_object (&f->policy);
  g_clear_object (&f->authority);
  g_clear_object (&f->store);
  dhf_test_remove_tree (f->root);
  g_free (f->root);
}

/* Reads what arrived for every peer that reads. */
static void
pump (Fixture *f)
{
  for (guint i = 0; i < f->peers->len; i++)
    {
      Peer *p = g_ptr_array_index (f->peers, i);

      while (!p->slow && !p->eof && p->fd >= 0)
        {
          guint8 buf[65536];
          gssize n = read (p->fd, buf, sizeof buf);

          if (n > 0)
            {
              g_byte_array_append (p->in, buf, (guint) n);
              continue;
            }
          if (n == 0 || (errno != EAGAIN && errno != EINTR))
            p->eof = TRUE;
          if (n < 0 && errno == EINTR)
            continue;
          break;
        }
    }
}

static gboolean
on_watchdog (gpointer data)
{
  gboolean *fired = data;

  *fired = TRUE;
  return G_SOURCE_REMOVE;
}

void
fixture_wait (Fixture *f, gboolean (*cond) (gpointer data), gpointer data)
{
  gboolean fired = FALSE;
  guint watchdog = g_timeout_add_seconds (WAIT_LIMIT_S, on_watchdog, &fired);

  for (;;)
    {
      pump (f);
      if (cond (data))
        break;
      if (fired)
        g_error ("timed out waiting (%d s)", WAIT_LIMIT_S);
      g_main_context_iteration (NULL, TRUE);
    }
  if (!fired)
    g_source_remove (watchdog);
}

void
fixture_flush (Fixture *f)
{
  while (g_main_context_iteration (NULL, FALSE))
    ;
  pump (f);
}

/* --- peers ------------------------------------------------------------------- */

Peer *
peer_connect (Fixture *f, const gchar *domain, DhfXdmTransport transport)
{
  g_autoptr (GError) error = NULL;
  g_autofree gchar *uuid = NULL;
  DhfXdmPeer identity = { 0 };
  Peer *p = g_new0 (Peer, 1);
  gint fds[2];

  g_assert_no_errno (socketpair (AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, fds));
  g_assert_true (g_unix_set_fd_nonblocking (fds[0], TRUE, NULL));
  p->f = f;
  p->fd = fds[0];
  p->domain = g_strdup (domain);
  p->in = g_byte_array_new ();
  p->next_id = 1;

  identity.transport = transport;
  identity.domain = domain;
  if (!g_str_equal (domain, "dom0"))
    {
      /* A fixed UUID per name, as libvirt would have it. */
      guint h = g_str_hash (domain);

      uuid = g_strdup_printf ("%08x-0000-4000-8000-000000000001", h);
      identity.uuid = uuid;
    }
  identity.uid = transport == DHF_XDM_TRANSPORT_UNIX ? 1000 : (uid_t) -1;
  identity.pid = transport == DHF_XDM_TRANSPORT_UNIX ? 4242 : 0;
  p->id = dhf_xdm_router_add_connection (f->router, fds[1], &identity, on_closed, f, &error);
  g_assert_no_error (error);
  g_assert_cmpuint (p->id, !=, 0);
  g_ptr_array_add (f->peers, p);
  return p;
}

Peer *
peer_join (Fixture *f, const gchar *domain)
{
  Peer *p = peer_connect (
      f, domain, g_str_equal (domain, "dom0") ? DHF_XDM_TRANSPORT_UNIX : DHF_XDM_TRANSPORT_CHANNEL);
  g_autoptr (Frame) welcome = NULL;

  peer_send (p, DHF_XDM_HELLO, 0, "{\"versions\":[1],\"client\":\"test\"}");
  welcome = peer_expect (p, DHF_XDM_WELCOME, 0);
  g_assert_cmpstr (welcome->msg.domain, ==, domain);
  return p;
}

guint32
peer_next_id (Peer *p)
{
  return p->next_id++;
}

void
peer_send_bytes (Peer *p, const void *data, gsize length)
{
  const guint8 *bytes = data;

  while (length > 0)
    {
      gssize n = write (p->fd, bytes, length);

      if (n > 0)
        {
          bytes += n;
          length -= (gsize) n;
          continue;
        }
      g_assert_true (n < 0 && (errno == EAGAIN || errno == EINTR));
      /* The router reads when the main context runs. */
      pump (p->f);
      g_main_context_iteration (NULL, TRUE);
    }
}

void
peer_send (Peer *p, DhfXdmType type, guint32 id, const gchar *json)
{
  g_autoptr (GByteArray) out = g_byte_array_new ();

  dhf_xdm_append_text (out, type, id, json != NULL ? json : "", json != NULL ? strlen (json) : 0);
  peer_send_bytes (p, out->data, out->len);
}

void
peer_sendf (Peer *p, DhfXdmType type, guint32 id, const gchar *format, ...)
{
  g_autofree gchar *json = NULL;
  va_list args;

  va_start (args, format);
  json = g_strdup_vprintf (format, args);
  va_end (args);
  peer_send (p, type, id, json);
}

void
peer_send_data (Peer *p, guint32 id, const guint8 *data, gsize length)
{
  g_autoptr (GByteArray) out = g_byte_array_new ();

  dhf_xdm_append_raw (out, DHF_XDM_STREAM_DATA, id, data, length);
  peer_send_bytes (p, out->data, out->len);
}

guint32
peer_call (Peer *p, const gchar *service, const gchar *target, const gchar *params)
{
  guint32 id = peer_next_id (p);
  g_autoptr (GString) body = g_string_new (NULL);

  g_string_append_printf (body, "{\"service\":\"%s\"", service);
  if (target != NULL)
    g_string_append_printf (body, ",\"target\":\"%s\"", target);
  if (params != NULL)
    g_string_append_printf (body, ",\"params\":%s", params);
  g_string_append_c (body, '}');
  peer_send (p, DHF_XDM_CALL, id, body->str);
  return id;
}

void
frame_free (Frame *frame)
{
  if (frame == NULL)
    return;
  dhf_xdm_message_clear (&frame->msg);
  g_free (frame->frame);
  g_free (frame);
}

/* The next complete frame in p's buffer, or NULL. */
static Frame *
take_frame (Peer *p)
{
  g_autoptr (GError) error = NULL;
  DhfXdmHeader header;
  gssize size = dhf_xdm_frame_scan (p->in->data, p->in->len, &header, &error);
  Frame *frame;

  g_assert_no_error (error);
  g_assert_cmpint (size, >=, 0);
  if (size == 0)
    return NULL;
  frame = g_new0 (Frame, 1);
  frame->header = header;
  frame->length = (gsize) size;
  frame->frame = g_memdup2 (p->in->data, (gsize) size);
  g_byte_array_remove_range (p->in, 0, (guint) size);
  /* dhfd must only ever send what parses. */
  if (!dhf_xdm_message_parse (&frame->header, frame->frame + DHF_XDM_HEADER_SIZE, &frame->msg,
                              &error))
    g_error ("dhfd sent a %s frame that does not parse: %s", dhf_xdm_type_to_string (header.type),
             error->message);
  return frame;
}

gboolean
peer_has_frame (Peer *p)
{
  return dhf_xdm_frame_scan (p->in->data, p->in->len, NULL, NULL) > 0;
}

static gboolean
frame_or_eof (gpointer data)
{
  Peer *p = data;

  return peer_has_frame (p) || p->eof;
}

Frame *
peer_recv (Peer *p)
{
  Frame *frame;

  g_assert_false (p->slow);
  fixture_wait (p->f, frame_or_eof, p);
  frame = take_frame (p);
  if (frame == NULL)
    g_error ("%s: the connection ended while a frame was expected", p->domain);
  return frame;
}

Frame *
peer_expect (Peer *p, DhfXdmType type, gint64 id)
{
  Frame *frame = peer_recv (p);

  if (frame->header.type != type || (id >= 0 && frame->header.id != (guint32) id))
    g_error ("%s: expected %s id %" G_GINT64_FORMAT ", got %s id %u%s%s%s%s", p->domain,
             dhf_xdm_type_to_string (type), id, dhf_xdm_type_to_string (frame->header.type),
             frame->header.id, frame->msg.code != NULL ? " " : "",
             frame->msg.code != NULL ? frame->msg.code : "", frame->msg.message != NULL ? ": " : "",
             frame->msg.message != NULL ? frame->msg.message : "");
  return frame;
}

gchar *
peer_expect_error (Peer *p, guint32 id, DhfError code)
{
  g_autoptr (Frame) frame = peer_expect (p, DHF_XDM_ERROR, id);

  if (dhf_xdm_error_code_from_string (frame->msg.code) != code)
    g_error ("%s: expected error %s for %u, got %s: %s", p->domain,
             dhf_xdm_error_code_to_string (code), id, frame->msg.code, frame->msg.message);
  return g_strdup (frame->msg.message);
}

static gboolean
is_eof (gpointer data)
{
  Peer *p = data;

  return p->eof;
}

GPtrArray *
peer_expect_eof (Peer *p)
{
  GPtrArray *frames = g_ptr_array_new_with_free_func ((GDestroyNotify) frame_free);
  Frame *frame;

  fixture_wait (p->f, is_eof, p);
  while ((frame = take_frame (p)) != NULL)
    g_ptr_array_add (frames, frame);
  g_assert_cmpuint (p->in->len, ==, 0);
  return frames;
}

void
peer_sync (Peer *p)
{
  guint32 id = peer_next_id (p);
  g_autoptr (Frame) pong = NULL;

  peer_send (p, DHF_XDM_PING, id, NULL);
  pong = peer_expect (p, DHF_XDM_PONG, id);
}

void
peer_close (Peer *p)
{
  close (p->fd);
  p->fd = -1;
  p->eof = TRUE;
}

/* --- JSON and GVariant ------------------------------------------------------ */

const gchar *
json_string_member (json_object *obj, const gchar *key)
{
  json_object *value = NULL;

  if (obj == NULL || !json_object_object_get_ex (obj, key, &value)
      || !json_object_is_type (value, json_type_string))
    return NULL;
  return json_object_get_string (value);
}

gint64
json_int_member (json_object *obj, const gchar *key)
{
  json_object *value = NULL;

  if (obj == NULL || !json_object_object_get_ex (obj, key, &value)
      || !json_object_is_type (value, json_type_int))
    return -1;
  return json_object_get_int64 (value);
}

GVariant *
variant_find (GVariant *list, const gchar *key, const gchar *value)
{
  for (gsize i = 0; i < g_variant_n_children (list); i++)
    {
      g_autoptr (GVariant) entry = g_variant_get_child_value (list, i);
      const gchar *v = NULL;

      if (g_variant_lookup (entry, key, "&s", &v) && g_str_equal (v, value))
        return g_steal_pointer (&entry);
    }
  return NULL;
}
