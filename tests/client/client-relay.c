/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* A minimal stand-in for dhfd's router, for tests of two or more SDK
 * clients without dhfd (the Python binding test, latency measurements):
 * listens on a unix socket, names each connection "dom-N", registers
 * services, routes calls (with CANCEL), events and streams between
 * connections, answers PING. No policy, no limits: dhfd's own tests cover
 * those. Prints "ready" on stdout once listening; exits when stdin closes.
 *
 *   client-relay SOCKET */
#include "config.h"

#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "dhf-client-private.h"

typedef struct
{
  guint index;
  gint fd;
  gchar *domain;
  GByteArray *in;
  guint32 next_id;
  GHashTable *topics; /* set */
} Conn;

typedef struct
{
  Conn *peer;
  guint32 peer_id;
  gboolean stream;
} Route;

static GPtrArray *conns;
static GHashTable *services; /* name -> Conn */
static GHashTable *routes;   /* (conn index << 32 | id) -> Route */
static guint next_index = 1;

static gint64 *
route_key (Conn *conn, guint32 id)
{
  gint64 *key = g_new (gint64, 1);

  *key = ((gint64) conn->index << 32) | id;
  return key;
}

static Route *
route_lookup (Conn *conn, guint32 id)
{
  gint64 key = ((gint64) conn->index << 32) | id;

  return g_hash_table_lookup (routes, &key);
}

static void
route_remove (Conn *conn, guint32 id)
{
  gint64 key = ((gint64) conn->index << 32) | id;

  g_hash_table_remove (routes, &key);
}

static void
route_add (Conn *from, guint32 id, Conn *peer, guint32 peer_id, gboolean stream)
{
  Route *route = g_new0 (Route, 1);

  route->peer = peer;
  route->peer_id = peer_id;
  route->stream = stream;
  g_hash_table_insert (routes, route_key (from, id), route);
}

static void
send_all (Conn *conn, const guint8 *data, gsize length)
{
  while (length > 0)
    {
      gssize r = send (conn->fd, data, length, MSG_NOSIGNAL);

      if (r < 0 && errno == EINTR)
        continue;
      if (r <= 0)
        return; /* gone: noticed when reading */
      data += r;
      length -= (gsize) r;
    }
}

static void
send_text (Conn *conn, DhfXdmType type, guint32 id, const gchar *text)
{
  g_autoptr (GByteArray) frame = g_byte_array_new ();

  dhf_xdm_append_text (frame, type, id, text, strlen (text));
  send_all (conn, frame->data, frame->len);
}

static void
send_json (Conn *conn, DhfXdmType type, guint32 id, json_object *body)
{
  g_autoptr (GByteArray) frame = g_byte_array_new ();

  dhf_xdm_append_json (frame, type, id, body);
  send_all (conn, frame->data, frame->len);
}

static void
send_error (Conn *conn, guint32 id, DhfError code, const gchar *message)
{
  g_autoptr (GByteArray) frame = g_byte_array_new ();

  dhf_xdm_append_error (frame, id, code, message);
  send_all (conn, frame->data, frame->len);
}

/* Forwards the body of msg as it is, with "source" set to the sender. */
static void
forward_request (Conn *from, const DhfXdmMessage *msg, Conn *to, guint32 to_id)
{
  json_object_object_del (msg->body, "target");
  json_object_object_add (msg->body, "source", json_object_new_string (from->domain));
  send_json (to, msg->type, to_id, msg->body);
}

static void
handle (Conn *conn, const DhfXdmHeader *header, const guint8 *body)
{
  g_autoptr (GError) error = NULL;
  DhfXdmMessage msg;
  Route *route;
  Conn *provider;
  guint32 id;

  if (!dhf_xdm_message_parse (header, body, &msg, &error))
    {
      send_error (conn, header->id, (DhfError) error->code, error->message);
      return;
    }
  switch (msg.type)
    {
      case DHF_XDM_HELLO:
        {
          g_autofree gchar *welcome
              = g_strdup_printf ("{\"version\":1,\"domain\":\"%s\",\"limits\":{\"max_body\":%u,"
                                 "\"max_calls_in_flight\":4096}}",
                                 conn->domain, DHF_XDM_MAX_BODY);

          send_text (conn, DHF_XDM_WELCOME, msg.id, welcome);
        }
        break;
      case DHF_XDM_REGISTER:
        if (g_hash_table_contains (services, msg.service))
          send_error (conn, msg.id, DHF_ERROR_EXISTS, "already provided");
        else
          {
            g_hash_table_insert (services, g_strdup (msg.service), conn);
            send_text (conn, DHF_XDM_REPLY, msg.id, "{}");
          }
        break;
      case DHF_XDM_UNREGISTER:
        g_hash_table_remove (services, msg.service);
        send_text (conn, DHF_XDM_REPLY, msg.id, "{}");
        break;
      case DHF_XDM_CALL:
      case DHF_XDM_STREAM_OPEN:
        provider = g_hash_table_lookup (services, msg.service);
        if (provider == NULL)
          {
            send_error (conn, msg.id, DHF_ERROR_NOT_FOUND, "no provider");
            break;
          }
        id = provider->next_id++;
        route_add (provider, id, conn, msg.id, msg.type == DHF_XDM_STREAM_OPEN);
        route_add (conn, msg.id, provider, id, msg.type == DHF_XDM_STREAM_OPEN);
        forward_request (conn, &msg, provider, id);
        break;
      case DHF_XDM_REPLY:
      case DHF_XDM_ERROR:
        route = route_lookup (conn, msg.id);
        if (route == NULL)
          break;
        send_json (route->peer, msg.type, route->peer_id, msg.body);
        if (!route->stream || msg.type == DHF_XDM_ERROR)
          {
            Conn *peer = route->peer;
            guint32 peer_id = route->peer_id;

            route_remove (peer, peer_id);
            route_remove (conn, msg.id);
          }
        break;
      case DHF_XDM_CANCEL:
        route = route_lookup (conn, msg.id);
        if (route == NULL)
          break;
        send_text (route->peer, DHF_XDM_CANCEL, route->peer_id, "{}");
        route_remove (route->peer, route->peer_id);
        route_remove (conn, msg.id);
        break;
      case DHF_XDM_SUBSCRIBE:
        g_hash_table_add (conn->topics, g_strdup (msg.topic));
        send_text (conn, DHF_XDM_REPLY, msg.id, "{}");
        break;
      case DHF_XDM_UNSUBSCRIBE:
        g_hash_table_remove (conn->topics, msg.topic);
        send_text (conn, DHF_XDM_REPLY, msg.id, "{}");
        break;
      case DHF_XDM_PUBLISH:
        {
          guint delivered = 0;

          json_object_object_add (msg.body, "source", json_object_new_string (conn->domain));
          for (guint i = 0; i < conns->len; i++)
            {
              Conn *other = conns->pdata[i];

              if (other != conn && g_hash_table_contains (other->topics, msg.topic))
                {
                  send_json (other, DHF_XDM_EVENT, 0, msg.body);
                  delivered++;
                }
            }
          if (msg.id != 0)
            {
              g_autofree gchar *reply = g_strdup_printf ("{\"delivered\":%u}", delivered);

              send_text (conn, DHF_XDM_REPLY, msg.id, reply);
            }
        }
        break;
      case DHF_XDM_STREAM_DATA:
        route = route_lookup (conn, msg.id);
        if (route != NULL)
          {
            g_autoptr (GByteArray) frame = g_byte_array_new ();

            dhf_xdm_append_raw (frame, DHF_XDM_STREAM_DATA, route->peer_id, msg.raw,
                                msg.raw_length);
            send_all (route->peer, frame->data, frame->len);
          }
        break;
      case DHF_XDM_STREAM_CREDIT:
      case DHF_XDM_STREAM_CLOSE:
        route = route_lookup (conn, msg.id);
        if (route != NULL)
          send_json (route->peer, msg.type, route->peer_id, msg.body);
        break;
      case DHF_XDM_PING:
        send_text (conn, DHF_XDM_PONG, msg.id, "{}");
        break;
      default:
        send_error (conn, msg.id, DHF_ERROR_PROTOCOL, "unexpected message");
        break;
    }
  dhf_xdm_message_clear (&msg);
}

static gboolean
is_route_to (gpointer key, gpointer value, gpointer user_data)
{
  return ((Route *) value)->peer == user_data;
}

static void
conn_drop (Conn *conn)
{
  GHashTableIter iter;
  gpointer key, value;

  g_hash_table_iter_init (&iter, services);
  while (g_hash_table_iter_next (&iter, &key, &value))
    if (value == conn)
      g_hash_table_iter_remove (&iter);
  g_hash_table_foreach_remove (routes, is_route_to, conn);
  g_ptr_array_remove (conns, conn);
  close (conn->fd);
  g_byte_array_unref (conn->in);
  g_hash_table_unref (conn->topics);
  g_free (conn->domain);
  g_free (conn);
}

/* FALSE when the connection is gone. */
static gboolean
conn_read (Conn *conn)
{
  guint8 buf[256 * 1024];
  gssize r = read (conn->fd, buf, sizeof (buf));
  gsize off = 0;

  if (r < 0 && errno == EINTR)
    return TRUE;
  if (r <= 0)
    return FALSE;
  g_byte_array_append (conn->in, buf, (guint) r);
  for (;;)
    {
      DhfXdmHeader header;
      g_autoptr (GError) error = NULL;
      gssize size = dhf_xdm_frame_scan (conn->in->data + off, conn->in->len - off, &header, &error);

      if (size < 0)
        {
          send_error (conn, 0, DHF_ERROR_PROTOCOL, error->message);
          return FALSE;
        }
      if (size == 0)
        break;
      handle (conn, &header, conn->in->data + off + DHF_XDM_HEADER_SIZE);
      off += (gsize) size;
    }
  g_byte_array_remove_range (conn->in, 0, (guint) off);
  return TRUE;
}

int
main (int argc, char **argv)
{
  struct sockaddr_un sa = { .sun_family = AF_UNIX };
  gint listen_fd;

  if (argc != 2 || strlen (argv[1]) >= sizeof (sa.sun_path))
    {
      g_printerr ("usage: %s SOCKET\n", argv[0]);
      return 2;
    }
  conns = g_ptr_array_new ();
  services = g_hash_table_new_full (g_str_hash, g_str_equal, g_free, NULL);
  routes = g_hash_table_new_full (g_int64_hash, g_int64_equal, g_free, g_free);
  listen_fd = socket (AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  g_strlcpy (sa.sun_path, argv[1], sizeof (sa.sun_path));
  (void) unlink (argv[1]);
  if (listen_fd < 0 || bind (listen_fd, (struct sockaddr *) &sa, sizeof (sa)) < 0
      || listen (listen_fd, 16) < 0)
    {
      g_printerr ("client-relay: %s: %s\n", argv[1], g_strerror (errno));
      return 1;
    }
  g_print ("ready\n");
  fflush (stdout);

  for (;;)
    {
      g_autofree struct pollfd *pfds = g_new0 (struct pollfd, conns->len + 2);
      guint n = conns->len;
      g_autoptr (GPtrArray) snapshot = g_ptr_array_new ();

      pfds[0].fd = STDIN_FILENO;
      pfds[0].events = POLLIN;
      pfds[1].fd = listen_fd;
      pfds[1].events = POLLIN;
      for (guint i = 0; i < n; i++)
        {
          pfds[i + 2].fd = ((Conn *) conns->pdata[i])->fd;
          pfds[i + 2].events = POLLIN;
          g_ptr_array_add (snapshot, conns->pdata[i]);
        }
      if (poll (pfds, n + 2, -1) < 0)
        {
          if (errno == EINTR)
            continue;
          return 1;
        }
      if (pfds[0].revents != 0)
        {
          gchar c;

          if (read (STDIN_FILENO, &c, 1) <= 0)
            break;
        }
      if (pfds[1].revents & POLLIN)
        {
          Conn *conn = g_new0 (Conn, 1);

          conn->fd = accept4 (listen_fd, NULL, NULL, SOCK_CLOEXEC);
          if (conn->fd < 0)
            g_free (conn);
          else
            {
              conn->index = next_index++;
              conn->domain = g_strdup_printf ("dom-%u", conn->index);
              conn->in = g_byte_array_new ();
              conn->next_id = 1;
              conn->topics = g_hash_table_new_full (g_str_hash, g_str_equal, g_free, NULL);
              g_ptr_array_add (conns, conn);
            }
        }
      for (guint i = 0; i < n; i++)
        {
          Conn *conn = snapshot->pdata[i];

          if (pfds[i + 2].revents != 0 && !conn_read (conn))
            conn_drop (conn);
        }
    }
  (void) unlink (argv[1]);
  return 0;
}
