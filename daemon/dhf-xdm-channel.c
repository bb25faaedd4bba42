/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include "config.h"

#include <errno.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <dhf/dhf.h>
#include <glib-unix.h>

#include "dhf-xdm-channel.h"

/* One domain's channel. Exactly one of: waiting for a retry (retry_id),
 * connecting (fd, watch_id), connected (connection_id). */
typedef struct
{
  gchar *name;
  gchar *uuid;
  gchar *path;
  guint delay_ms; /* the next retry's delay after a failure */
  guint retry_id;
  guint retry_delay_ms; /* of the retry scheduled, for diagnostics */
  gint fd;
  guint watch_id;
  guint64 connection_id;
  guint attempts;
  guint violations; /* closes for a violation since the last session */
} Link;

struct _DhfXdmChannel
{
  GObject parent_instance;

  DhfXdmChannelSink sink;
  gpointer sink_data;
  GHashTable *links; /* name -> Link */
  DhfXdmChannelBackoff backoff;
};

G_DEFINE_TYPE (DhfXdmChannel, dhf_xdm_channel, G_TYPE_OBJECT)

typedef struct
{
  DhfXdmChannel *self;
  Link *link;
} LinkRef;

static void attempt (DhfXdmChannel *self, Link *link);

/* Leaves the link idle: no retry, no attempt, no connection. */
static void
link_stop (DhfXdmChannel *self, Link *link)
{
  g_clear_handle_id (&link->retry_id, g_source_remove);
  link->retry_delay_ms = 0;
  g_clear_handle_id (&link->watch_id, g_source_remove);
  if (link->fd >= 0)
    {
      close (link->fd);
      link->fd = -1;
    }
  if (link->connection_id != 0)
    {
      guint64 id = link->connection_id;

      /* The router does not call closed for this one. */
      link->connection_id = 0;
      self->sink.close_connection (id, self->sink_data);
    }
}

static void
link_free (Link *link)
{
  g_free (link->name);
  g_free (link->uuid);
  g_free (link->path);
  g_free (link);
}

/* link_stop() first: only the table's destroy notify frees links, and it
 * cannot reach the channel. */
static void
link_destroy (gpointer data)
{
  Link *link = data;

  g_assert (link->retry_id == 0 && link->watch_id == 0 && link->fd < 0 && link->connection_id == 0);
  link_free (link);
}

static gboolean
on_retry (gpointer user_data)
{
  LinkRef *ref = user_data;

  ref->link->retry_id = 0;
  ref->link->retry_delay_ms = 0;
  attempt (ref->self, ref->link);
  return G_SOURCE_REMOVE;
}

static void
schedule_retry (DhfXdmChannel *self, Link *link, guint delay_ms)
{
  LinkRef *ref = g_new0 (LinkRef, 1);

  ref->self = self;
  ref->link = link;
  link->retry_delay_ms = delay_ms;
  link->retry_id = g_timeout_add_full (G_PRIORITY_DEFAULT, delay_ms, on_retry, ref, g_free);
}

/* A failed attempt: retry after the current delay, and wait longer next. */
static void
backoff (DhfXdmChannel *self, Link *link)
{
  schedule_retry (self, link, link->delay_ms);
  link->delay_ms = MIN (link->delay_ms * 2, self->backoff.max_ms);
}

/* What the router closes a connection for when the guest broke the
 * rules (or ended the session with an ERROR of its own). */
static gboolean
is_violation (const GError *error)
{
  return g_error_matches (error, DHF_ERROR, DHF_ERROR_PROTOCOL)
         || g_error_matches (error, DHF_ERROR, DHF_ERROR_LIMIT_EXCEEDED)
         || g_error_matches (error, DHF_ERROR, DHF_ERROR_DISCONNECTED);
}

static void
on_connection_closed (guint64 connection_id, const GError *error, gboolean established,
                      gpointer user_data)
{
  DhfXdmChannel *self = user_data;
  GHashTableIter iter;
  gpointer value;
  Link *link = NULL;

  g_hash_table_iter_init (&iter, self->links);
  while (link == NULL && g_hash_table_iter_next (&iter, NULL, &value))
    {
      if (((Link *) value)->connection_id == connection_id)
        link = value;
    }
  /* Not ours any more (the domain stopped, or moved to a new path). */
  if (link == NULL)
    return;
  link->connection_id = 0;
  /* A violation is forgiven once (a program that died in the middle of a
   * frame), not when the sessions between violations start and break
   * again (an agent that gets something wrong every time). */
  if (is_violation (error))
    {
      guint delay = ++link->violations == 1 ? self->backoff.violation_ms : self->backoff.penalty_ms;

      g_message ("XDM: %s's channel was closed (%s); reconnecting in %g s", link->name,
                 error->message, delay / 1000.0);
      link->delay_ms = self->backoff.min_ms;
      schedule_retry (self, link, delay);
      return;
    }
  /* A session that started and ended without a fault: the guest's agent
   * works, whatever came before is forgotten. */
  if (established)
    {
      link->delay_ms = self->backoff.min_ms;
      link->violations = 0;
    }
  g_debug ("XDM: %s's channel was closed (%s)", link->name,
           error != NULL ? error->message : "end of stream");
  backoff (self, link);
}

static void
hand_over (DhfXdmChannel *self, Link *link)
{
  g_autoptr (GError) error = NULL;
  gint fd = link->fd;
  DhfXdmPeer peer = {
    .transport = DHF_XDM_TRANSPORT_CHANNEL,
    .domain = link->name,
    .uuid = link->uuid,
    .uid = (uid_t) -1,
    .pid = 0,
  };
  guint64 id;

  link->fd = -1;
  id = self->sink.add_connection (fd, &peer, on_connection_closed, self, self->sink_data, &error);
  if (id == 0)
    {
      g_warning ("XDM: %s's channel %s: %s", link->name, link->path, error->message);
      backoff (self, link);
      return;
    }
  g_debug ("XDM: connected to %s's channel %s (connection %" G_GUINT64_FORMAT ")", link->name,
           link->path, id);
  link->connection_id = id;
}

static void
fail_attempt (DhfXdmChannel *self, Link *link, int saved_errno)
{
  g_debug ("XDM: cannot connect to %s's channel %s: %s; retrying in %u ms", link->name, link->path,
           g_strerror (saved_errno), link->delay_ms);
  if (link->fd >= 0)
    {
      close (link->fd);
      link->fd = -1;
    }
  backoff (self, link);
}

static gboolean
on_connect_ready (gint fd, GIOCondition condition, gpointer user_data)
{
  LinkRef *ref = user_data;
  int so_error = 0;
  socklen_t length = sizeof so_error;

  ref->link->watch_id = 0;
  if (getsockopt (fd, SOL_SOCKET, SO_ERROR, &so_error, &length) < 0)
    so_error = errno;
  if (so_error != 0)
    fail_attempt (ref->self, ref->link, so_error);
  else
    hand_over (ref->self, ref->link);
  return G_SOURCE_REMOVE;
}

static void
attempt (DhfXdmChannel *self, Link *link)
{
  struct sockaddr_un address = { .sun_family = AF_UNIX };
  LinkRef *ref;

  link->attempts++;
  /* dhf_domain_xml_get_xdm_channel() checked the length. */
  g_assert (strlen (link->path) < sizeof address.sun_path);
  strcpy (address.sun_path, link->path);
  link->fd = socket (AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
  if (link->fd < 0)
    {
      fail_attempt (self, link, errno);
      return;
    }
  if (connect (link->fd, (const struct sockaddr *) &address, sizeof address) == 0)
    {
      hand_over (self, link);
      return;
    }
  /* Unix sockets connect at once or fail (EAGAIN: the listener's backlog
   * is full, worth a retry like any other failure). */
  if (errno != EINPROGRESS)
    {
      fail_attempt (self, link, errno);
      return;
    }
  ref = g_new0 (LinkRef, 1);
  ref->self = self;
  ref->link = link;
  link->watch_id
      = g_unix_fd_add_full (G_PRIORITY_DEFAULT, link->fd, G_IO_OUT, on_connect_ready, ref, g_free);
}

void
dhf_xdm_channel_update (DhfXdmChannel *self, const gchar *name, const gchar *uuid,
                        const gchar *path)
{
  Link *link;

  g_return_if_fail (DHF_IS_XDM_CHANNEL (self));
  g_return_if_fail (name != NULL);

  link = g_hash_table_lookup (self->links, name);
  if (link != NULL && g_strcmp0 (link->path, path) == 0 && g_strcmp0 (link->uuid, uuid) == 0)
    return;
  if (link != NULL)
    {
      g_debug ("XDM: %s's channel %s is gone", name, link->path);
      link_stop (self, link);
      g_hash_table_remove (self->links, name);
    }
  if (path == NULL)
    return;
  link = g_new0 (Link, 1);
  link->name = g_strdup (name);
  link->uuid = g_strdup (uuid);
  link->path = g_strdup (path);
  link->fd = -1;
  link->delay_ms = self->backoff.min_ms;
  g_hash_table_insert (self->links, link->name, link);
  attempt (self, link);
}

void
dhf_xdm_channel_remove (DhfXdmChannel *self, const gchar *name)
{
  dhf_xdm_channel_update (self, name, NULL, NULL);
}

guint64
dhf_xdm_channel_get_connection (DhfXdmChannel *self, const gchar *name)
{
  Link *link = g_hash_table_lookup (self->links, name);

  return link != NULL ? link->connection_id : 0;
}

guint
dhf_xdm_channel_get_retry_delay (DhfXdmChannel *self, const gchar *name)
{
  Link *link = g_hash_table_lookup (self->links, name);

  return link != NULL ? link->retry_delay_ms : 0;
}

guint
dhf_xdm_channel_get_attempts (DhfXdmChannel *self, const gchar *name)
{
  Link *link = g_hash_table_lookup (self->links, name);

  return link != NULL ? link->attempts : 0;
}

void
dhf_xdm_channel_set_backoff (DhfXdmChannel *self, const DhfXdmChannelBackoff *backoff)
{
  g_return_if_fail (DHF_IS_XDM_CHANNEL (self));
  g_return_if_fail (backoff->min_ms > 0 && backoff->min_ms <= backoff->max_ms);

  self->backoff = *backoff;
}

DhfXdmChannel *
dhf_xdm_channel_new (const DhfXdmChannelSink *sink, gpointer user_data)
{
  DhfXdmChannel *self;

  g_return_val_if_fail (sink != NULL && sink->add_connection != NULL, NULL);
  g_return_val_if_fail (sink->close_connection != NULL, NULL);

  self = g_object_new (DHF_TYPE_XDM_CHANNEL, NULL);
  self->sink = *sink;
  self->sink_data = user_data;
  return self;
}

static void
dhf_xdm_channel_init (DhfXdmChannel *self)
{
  self->links = g_hash_table_new_full (g_str_hash, g_str_equal, NULL, link_destroy);
  self->backoff = (DhfXdmChannelBackoff){
    .min_ms = DHF_XDM_CHANNEL_RETRY_MIN_MS,
    .max_ms = DHF_XDM_CHANNEL_RETRY_MAX_MS,
    .violation_ms = DHF_XDM_CHANNEL_RETRY_VIOLATION_MS,
    .penalty_ms = DHF_XDM_CHANNEL_RETRY_PENALTY_MS,
  };
}

static void
dhf_xdm_channel_dispose (GObject *object)
{
  DhfXdmChannel *self = DHF_XDM_CHANNEL (object);

  if (self->links != NULL)
    {
      GHashTableIter iter;
      gpointer value;

      g_hash_table_iter_init (&iter, self->links);
      while (g_hash_table_iter_next (&iter, NULL, &value))
        link_stop (self, value);
      g_clear_pointer (&self->links, g_hash_table_unref);
    }
  G_OBJECT_CLASS (dhf_xdm_channel_parent_class)->dispose (object);
}

static void
dhf_xdm_channel_class_init (DhfXdmChannelClass *klass)
{
  G_OBJECT_CLASS (klass)->dispose = dhf_xdm_channel_dispose;
}
