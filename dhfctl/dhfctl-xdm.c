/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* dhfctl xdm: cross-domain messaging. list, services and subscriptions
 * read dhfd's state on org.dhf.Framework1.Xdm (D-Bus); call, publish and
 * watch act as a dom0 XDM client through libdhf-1 (DhfClient), on dhfd's
 * local socket. */
#include "config.h"

#include <glib-unix.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>

#include <dhf/dhf.h>

#include "dhf-xdm-codec.h"
#include "dhfctl.h"

#define XDM_INTERFACE "org.dhf.Framework1.Xdm"

G_DEFINE_AUTOPTR_CLEANUP_FUNC (json_tokener, json_tokener_free)

static gboolean cmd_list (DhfctlContext *ctx, const DhfctlCommand *cmd, int argc, char **argv,
                          GError **error);
static gboolean cmd_services (DhfctlContext *ctx, const DhfctlCommand *cmd, int argc, char **argv,
                              GError **error);
static gboolean cmd_subscriptions (DhfctlContext *ctx, const DhfctlCommand *cmd, int argc,
                                   char **argv, GError **error);
static gboolean cmd_call (DhfctlContext *ctx, const DhfctlCommand *cmd, int argc, char **argv,
                          GError **error);
static gboolean cmd_publish (DhfctlContext *ctx, const DhfctlCommand *cmd, int argc, char **argv,
                             GError **error);
static gboolean cmd_watch (DhfctlContext *ctx, const DhfctlCommand *cmd, int argc, char **argv,
                           GError **error);

/* Named "xdm X" so that GOption's usage lines read "dhfctl xdm X". */
static const DhfctlCommand subcommands[] = {
  { "xdm list", NULL, "List the connected domains with their services and topics", cmd_list },
  { "xdm services", NULL, "List the registered services", cmd_services },
  { "xdm subscriptions", NULL, "List the topic subscriptions", cmd_subscriptions },
  { "xdm call", "SERVICE[+ARG] [PARAMS_JSON]", "Call a service as dom0 and print its result",
    cmd_call },
  { "xdm publish", "TOPIC [DATA_JSON]", "Publish an event as dom0", cmd_publish },
  { "xdm watch", "TOPIC", "Print the events of a topic as they arrive", cmd_watch },
};

/* --- D-Bus: what dhfd's router holds ---------------------------------------- */

/* Calls a List* method of org.dhf.Framework1.Xdm; returns its aa{sv}. */
static GVariant *
list_xdm (DhfctlContext *ctx, const gchar *method, const gchar *what, GError **error)
{
  g_autoptr (GError) local_error = NULL;
  g_autoptr (GVariant) reply = NULL;
  guint seconds = ctx->timeout_s != 0 ? ctx->timeout_s : DHFCTL_DEFAULT_TIMEOUT_S;

  if (!dhfctl_connect (ctx, error))
    return NULL;

  reply = g_dbus_connection_call_sync (
      ctx->connection, DHF_BUS_NAME, DHF_OBJECT_PATH, XDM_INTERFACE, method, NULL,
      G_VARIANT_TYPE ("(aa{sv})"), G_DBUS_CALL_FLAGS_NONE,
      (gint) MIN (seconds, G_MAXINT / 1000) * 1000, NULL, &local_error);
  if (reply != NULL)
    return g_variant_get_child_value (reply, 0);

  if (g_error_matches (local_error, G_DBUS_ERROR, G_DBUS_ERROR_SERVICE_UNKNOWN)
      || g_error_matches (local_error, G_DBUS_ERROR, G_DBUS_ERROR_NAME_HAS_NO_OWNER))
    {
      g_set_error (error, G_DBUS_ERROR, G_DBUS_ERROR_SERVICE_UNKNOWN,
                   "dhfd is not running (nobody owns %s on %s)", DHF_BUS_NAME,
                   ctx->bus_description);
      return NULL;
    }
  /* A dhfd from before XDM. */
  if (g_error_matches (local_error, G_DBUS_ERROR, G_DBUS_ERROR_UNKNOWN_METHOD)
      || g_error_matches (local_error, G_DBUS_ERROR, G_DBUS_ERROR_UNKNOWN_INTERFACE)
      || g_error_matches (local_error, G_DBUS_ERROR, G_DBUS_ERROR_UNKNOWN_OBJECT))
    {
      g_set_error (error, DHF_ERROR, DHF_ERROR_NOT_SUPPORTED,
                   "cannot list the %s: this dhfd has no %s interface", what, XDM_INTERFACE);
      return NULL;
    }
  dhfctl_strip_remote_error (local_error);
  g_propagate_prefixed_error (error, g_steal_pointer (&local_error), "cannot list the %s: ", what);
  return NULL;
}

static const gchar *
lookup_string (GVariant *entry, const gchar *key)
{
  const gchar *value = NULL;

  if (!g_variant_lookup (entry, key, "&s", &value))
    return NULL;
  return value;
}

/* Numbers as text, whatever integer type dhfd used; NULL when absent. */
static gchar *
lookup_number (GVariant *entry, const gchar *key)
{
  g_autoptr (GVariant) value = g_variant_lookup_value (entry, key, NULL);

  if (value == NULL)
    return NULL;
  switch (g_variant_classify (value))
    {
      case G_VARIANT_CLASS_BYTE:
        return g_strdup_printf ("%u", g_variant_get_byte (value));
      case G_VARIANT_CLASS_UINT16:
        return g_strdup_printf ("%u", g_variant_get_uint16 (value));
      case G_VARIANT_CLASS_UINT32:
        return g_strdup_printf ("%u", g_variant_get_uint32 (value));
      case G_VARIANT_CLASS_UINT64:
        return g_strdup_printf ("%" G_GUINT64_FORMAT, g_variant_get_uint64 (value));
      case G_VARIANT_CLASS_INT16:
        return g_strdup_printf ("%d", g_variant_get_int16 (value));
      case G_VARIANT_CLASS_INT32:
        return g_strdup_printf ("%d", g_variant_get_int32 (value));
      case G_VARIANT_CLASS_INT64:
        return g_strdup_printf ("%" G_GINT64_FORMAT, g_variant_get_int64 (value));
      default:
        return g_variant_print (value, FALSE);
    }
}

static guint64
lookup_id (GVariant *entry, const gchar *key)
{
  guint64 id = 0;

  if (!g_variant_lookup (entry, key, "t", &id))
    return 0;
  return id;
}

/* "a, b" for an "as"; NULL when absent or empty. */
static gchar *
lookup_list (GVariant *entry, const gchar *key)
{
  g_autofree const gchar **strv = NULL;

  if (!g_variant_lookup (entry, key, "^a&s", &strv) || strv == NULL || strv[0] == NULL)
    return NULL;
  return g_strjoinv (",", (gchar **) strv);
}

/* Replaces the µs since the epoch under KEY in entry by an ISO 8601 time
 * under JSON_KEY in object, in place: the keys keep dhfd's order. */
static void
time_to_json (json_object *object, GVariant *entry, const gchar *key, const gchar *json_key)
{
  gint64 usec;

  if (g_variant_lookup (entry, key, "x", &usec) && usec >= 0)
    {
      g_autoptr (GDateTime) seconds = g_date_time_new_from_unix_utc (usec / G_USEC_PER_SEC);
      g_autoptr (GDateTime) time
          = seconds != NULL ? g_date_time_add (seconds, usec % G_USEC_PER_SEC) : NULL;
      g_autofree gchar *text = time != NULL ? g_date_time_format_iso8601 (time) : NULL;

      json_object_object_add (object, json_key, text != NULL ? dhfctl_json_string (text) : NULL);
    }
}

/* One a{sv} entry as a JSON object: keys in snake_case, the times as
 * ISO 8601. */
static json_object *
entry_to_json (GVariant *entry)
{
  json_object *object = dhfctl_vardict_to_json (entry);

  time_to_json (object, entry, "connected-at", "connected_at");
  time_to_json (object, entry, "session-started-at", "session_started_at");
  return object;
}

typedef struct
{
  const gchar *first; /* sort keys */
  const gchar *second;
  guint64 id;
} SortKeys;

/* The entries of an aa{sv}, sorted by two string keys then an id. */
static GPtrArray *
sorted_entries (GVariant *list, const gchar *first, const gchar *second, const gchar *id)
{
  GPtrArray *entries = g_ptr_array_new_with_free_func ((GDestroyNotify) g_variant_unref);

  for (gsize i = 0; i < g_variant_n_children (list); i++)
    g_ptr_array_add (entries, g_variant_get_child_value (list, i));

  /* Insertion sort: these lists are short, and a stable order is what
   * matters. */
  for (guint i = 1; i < entries->len; i++)
    {
      for (guint j = i; j > 0; j--)
        {
          GVariant *a = g_ptr_array_index (entries, j - 1);
          GVariant *b = g_ptr_array_index (entries, j);
          SortKeys ka = { lookup_string (a, first), lookup_string (a, second), lookup_id (a, id) };
          SortKeys kb = { lookup_string (b, first), lookup_string (b, second), lookup_id (b, id) };
          gint order = g_strcmp0 (ka.first, kb.first);

          if (order == 0)
            order = g_strcmp0 (ka.second, kb.second);
          if (order == 0)
            order = ka.id < kb.id ? -1 : ka.id > kb.id;
          if (order <= 0)
            break;
          entries->pdata[j - 1] = b;
          entries->pdata[j] = a;
        }
    }
  return entries;
}

static void
print_entries_json (GPtrArray *entries)
{
  g_autoptr (json_object) array = json_object_new_array ();

  for (guint i = 0; i < entries->len; i++)
    json_object_array_add (array, entry_to_json (g_ptr_array_index (entries, i)));
  dhfctl_print_json (array);
}

static gboolean
cmd_list (DhfctlContext *ctx, const DhfctlCommand *cmd, int argc, char **argv, GError **error)
{
  g_autoptr (GVariant) list = NULL;
  g_autoptr (GPtrArray) entries = NULL;
  g_autoptr (DhfctlTable) table = NULL;

  if (!dhfctl_parse_command_line (ctx, cmd, NULL, 0, 0, &argc, &argv, error))
    return FALSE;
  list = list_xdm (ctx, "ListConnections", "XDM connections", error);
  if (list == NULL)
    return FALSE;
  entries = sorted_entries (list, "domain", "", "id");

  if (ctx->json)
    {
      print_entries_json (entries);
      return TRUE;
    }

  table = dhfctl_table_new (8);
  dhfctl_table_add_row (table, "ID", "DOMAIN", "TRANSPORT", "UID", "IN-FLIGHT", "QUEUED",
                        "SERVICES", "TOPICS", NULL);
  for (guint i = 0; i < entries->len; i++)
    {
      GVariant *entry = g_ptr_array_index (entries, i);
      g_autofree gchar *id = lookup_number (entry, "id");
      g_autofree gchar *uid = lookup_number (entry, "uid");
      g_autofree gchar *in_flight = lookup_number (entry, "calls-in-flight");
      g_autofree gchar *queued = lookup_number (entry, "queued-bytes");
      g_autofree gchar *services = lookup_list (entry, "services");
      g_autofree gchar *topics = lookup_list (entry, "topics");

      dhfctl_table_add_row (
          table, dhfctl_or_dash (id), dhfctl_or_dash (lookup_string (entry, "domain")),
          dhfctl_or_dash (lookup_string (entry, "transport")), dhfctl_or_dash (uid),
          dhfctl_or_dash (in_flight), dhfctl_or_dash (queued), dhfctl_or_dash (services),
          dhfctl_or_dash (topics), NULL);
    }
  dhfctl_table_print (table);
  return TRUE;
}

static gboolean
cmd_services (DhfctlContext *ctx, const DhfctlCommand *cmd, int argc, char **argv, GError **error)
{
  g_autoptr (GVariant) list = NULL;
  g_autoptr (GPtrArray) entries = NULL;
  g_autoptr (DhfctlTable) table = NULL;

  if (!dhfctl_parse_command_line (ctx, cmd, NULL, 0, 0, &argc, &argv, error))
    return FALSE;
  list = list_xdm (ctx, "ListServices", "XDM services", error);
  if (list == NULL)
    return FALSE;
  entries = sorted_entries (list, "service", "domain", "connection");

  if (ctx->json)
    {
      print_entries_json (entries);
      return TRUE;
    }

  table = dhfctl_table_new (4);
  dhfctl_table_add_row (table, "SERVICE", "DOMAIN", "CONNECTION", "CALLS", NULL);
  for (guint i = 0; i < entries->len; i++)
    {
      GVariant *entry = g_ptr_array_index (entries, i);
      g_autofree gchar *connection = lookup_number (entry, "connection");
      g_autofree gchar *calls = lookup_number (entry, "calls");

      dhfctl_table_add_row (table, dhfctl_or_dash (lookup_string (entry, "service")),
                            dhfctl_or_dash (lookup_string (entry, "domain")),
                            dhfctl_or_dash (connection), dhfctl_or_dash (calls), NULL);
    }
  dhfctl_table_print (table);
  return TRUE;
}

static gboolean
cmd_subscriptions (DhfctlContext *ctx, const DhfctlCommand *cmd, int argc, char **argv,
                   GError **error)
{
  g_autoptr (GVariant) list = NULL;
  g_autoptr (GPtrArray) entries = NULL;
  g_autoptr (DhfctlTable) table = NULL;

  if (!dhfctl_parse_command_line (ctx, cmd, NULL, 0, 0, &argc, &argv, error))
    return FALSE;
  list = list_xdm (ctx, "ListSubscriptions", "XDM subscriptions", error);
  if (list == NULL)
    return FALSE;
  entries = sorted_entries (list, "topic", "domain", "connection");

  if (ctx->json)
    {
      print_entries_json (entries);
      return TRUE;
    }

  table = dhfctl_table_new (5);
  dhfctl_table_add_row (table, "TOPIC", "DOMAIN", "CONNECTION", "DELIVERED", "DROPPED", NULL);
  for (guint i = 0; i < entries->len; i++)
    {
      GVariant *entry = g_ptr_array_index (entries, i);
      g_autofree gchar *connection = lookup_number (entry, "connection");
      g_autofree gchar *delivered = lookup_number (entry, "delivered");
      g_autofree gchar *dropped = lookup_number (entry, "dropped");

      dhfctl_table_add_row (table, dhfctl_or_dash (lookup_string (entry, "topic")),
                            dhfctl_or_dash (lookup_string (entry, "domain")),
                            dhfctl_or_dash (connection), dhfctl_or_dash (delivered),
                            dhfctl_or_dash (dropped), NULL);
    }
  dhfctl_table_print (table);
  return TRUE;
}

/* --- libdhf-1: dhfctl as a dom0 client ---------------------------------------- */

static const gchar *const address_schemes[] = { "unix:", "listen:", "channel:", "vsock:" };

static gboolean
check_address (const gchar *address, GError **error)
{
  for (gsize i = 0; i < G_N_ELEMENTS (address_schemes); i++)
    {
      if (g_str_has_prefix (address, address_schemes[i]))
        {
          /* The SDK checks the rest; only listen: has no default path. */
          if (g_str_equal (address_schemes[i], "listen:") && address[strlen ("listen:")] == '\0')
            break;
          return TRUE;
        }
    }
  g_set_error (error, G_OPTION_ERROR, G_OPTION_ERROR_BAD_VALUE,
               "bad XDM address '%s': expected unix:[PATH], listen:PATH, channel:[DEVICE] or "
               "vsock:[CID[:PORT]]",
               address);
  return FALSE;
}

/* "unix:" and dhfd's own socket, as its Xdm.Socket property says; "" when
 * dhfd has none or cannot be asked (no bus, not running, too old): the
 * SDK's default then applies. NULL with an error for a bad bus address. */
static gchar *
socket_from_dhfd (DhfctlContext *ctx, GError **error)
{
  g_autoptr (GError) local_error = NULL;
  g_autoptr (GVariant) reply = NULL;
  g_autoptr (GVariant) value = NULL;
  guint seconds = ctx->timeout_s != 0 ? ctx->timeout_s : DHFCTL_DEFAULT_TIMEOUT_S;

  if (!dhfctl_connect (ctx, &local_error))
    {
      /* A bad bus address is the user's mistake; no bus at all is not:
       * dhfd may still listen on its socket. */
      if (local_error->domain == G_OPTION_ERROR)
        {
          g_propagate_error (error, g_steal_pointer (&local_error));
          return NULL;
        }
      g_debug ("not asking dhfd for its XDM socket: %s", local_error->message);
      return g_strdup ("");
    }
  reply = g_dbus_connection_call_sync (
      ctx->connection, DHF_BUS_NAME, DHF_OBJECT_PATH, "org.freedesktop.DBus.Properties", "Get",
      g_variant_new ("(ss)", XDM_INTERFACE, "Socket"), G_VARIANT_TYPE ("(v)"),
      G_DBUS_CALL_FLAGS_NONE, (gint) MIN (seconds, G_MAXINT / 1000) * 1000, NULL, &local_error);
  if (reply == NULL)
    {
      g_debug ("cannot read dhfd's XDM socket: %s", local_error->message);
      return g_strdup ("");
    }
  g_variant_get (reply, "(v)", &value);
  if (!g_variant_is_of_type (value, G_VARIANT_TYPE_STRING)
      || *g_variant_get_string (value, NULL) == '\0')
    return g_strdup ("");
  return g_strconcat ("unix:", g_variant_get_string (value, NULL), NULL);
}

/* --address after the command, else $DHF_XDM_ADDRESS, else the socket dhfd
 * says it listens on, else NULL (libdhf-1's default). */
static gboolean
resolve_address (DhfctlContext *ctx, const gchar *option, gchar **address, GError **error)
{
  const gchar *env = g_getenv ("DHF_XDM_ADDRESS");
  g_autofree gchar *from_dhfd = NULL;

  *address = NULL;
  if (option != NULL)
    {
      if (!check_address (option, error))
        return FALSE;
      *address = g_strdup (option);
      return TRUE;
    }
  if (env != NULL && *env != '\0')
    {
      if (!check_address (env, error))
        {
          g_prefix_error (error, "$DHF_XDM_ADDRESS: ");
          return FALSE;
        }
      *address = g_strdup (env);
      return TRUE;
    }
  from_dhfd = socket_from_dhfd (ctx, error);
  if (from_dhfd == NULL)
    return FALSE;
  if (*from_dhfd != '\0')
    *address = g_steal_pointer (&from_dhfd);
  return TRUE;
}

typedef struct
{
  gboolean done;
  gboolean interrupted;
  GAsyncResult *result;
} Waiter;

static void
waiter_done (GObject *source, GAsyncResult *result, gpointer user_data)
{
  Waiter *waiter = user_data;

  waiter->result = g_object_ref (result);
  waiter->done = TRUE;
}

static gboolean
cancel_on_timeout (gpointer user_data)
{
  g_cancellable_cancel (user_data);
  return G_SOURCE_REMOVE;
}

typedef struct
{
  GCancellable *cancellable;
  gboolean *interrupted;
} Interrupt;

static gboolean
cancel_on_signal (gpointer user_data)
{
  Interrupt *interrupt = user_data;

  *interrupt->interrupted = TRUE;
  g_cancellable_cancel (interrupt->cancellable);
  return G_SOURCE_CONTINUE;
}

/* Connects as a dom0 client. Any failure to get a session is "dhfd not
 * reachable" (exit 3), except what dhfd itself refused. A listen: address
 * waits for dhfd to connect: without --timeout, until interrupted. */
static DhfClient *
xdm_connect (DhfctlContext *ctx, const gchar *option, GError **error)
{
  g_autoptr (GError) local_error = NULL;
  g_autofree gchar *address = NULL;
  g_autoptr (DhfClient) client = NULL;
  g_autoptr (GCancellable) cancellable = g_cancellable_new ();
  g_autoptr (GSource) timeout = NULL;
  g_autoptr (GSource) sigint = NULL;
  g_autoptr (GSource) sigterm = NULL;
  Waiter waiter = { 0 };
  Interrupt interrupt = { cancellable, &waiter.interrupted };
  guint seconds = ctx->timeout_s;
  gboolean connected;

  if (!resolve_address (ctx, option, &address, error))
    return NULL;

  /* The default main context: the client's signals and handlers run there
   * (dhfctl creates it on the main thread), and so do the waits below. */
  client = dhf_client_new (address);
  /* A command is one session: losing it is an error, not a reason to wait. */
  dhf_client_set_auto_reconnect (client, FALSE);

  if (seconds == 0 && (address == NULL || !g_str_has_prefix (address, "listen:")))
    seconds = DHFCTL_DEFAULT_TIMEOUT_S;
  if (seconds != 0)
    {
      timeout = g_timeout_source_new_seconds (seconds);
      g_source_set_callback (timeout, cancel_on_timeout, cancellable, NULL);
      g_source_attach (timeout, NULL);
    }
  sigint = g_unix_signal_source_new (SIGINT);
  g_source_set_callback (sigint, cancel_on_signal, &interrupt, NULL);
  g_source_attach (sigint, NULL);
  sigterm = g_unix_signal_source_new (SIGTERM);
  g_source_set_callback (sigterm, cancel_on_signal, &interrupt, NULL);
  g_source_attach (sigterm, NULL);

  dhf_client_connect (client, cancellable, waiter_done, &waiter);
  while (!waiter.done)
    g_main_context_iteration (NULL, TRUE);
  connected = dhf_client_connect_finish (client, waiter.result, &local_error);
  g_clear_object (&waiter.result);

  g_source_destroy (sigint);
  g_source_destroy (sigterm);
  if (timeout != NULL)
    g_source_destroy (timeout);

  if (connected)
    return g_steal_pointer (&client);

  if (waiter.interrupted)
    g_set_error (error, DHF_ERROR, DHF_ERROR_CANCELLED, "interrupted while connecting to %s",
                 dhf_client_get_address (client));
  else if (g_error_matches (local_error, G_IO_ERROR, G_IO_ERROR_CANCELLED))
    g_set_error (error, DHF_ERROR, DHF_ERROR_DISCONNECTED,
                 "cannot reach dhfd over XDM: no session at %s within %u s",
                 dhf_client_get_address (client), seconds);
  else if (g_error_matches (local_error, DHF_ERROR, DHF_ERROR_INVALID_ARGS))
    {
      const gchar *why = local_error->message;

      /* The SDK's "cannot connect: invalid vsock address ..." */
      if (g_str_has_prefix (why, "cannot connect: "))
        why += strlen ("cannot connect: ");
      g_set_error (error, G_OPTION_ERROR, G_OPTION_ERROR_BAD_VALUE, "bad XDM address: %s", why);
    }
  else if (g_error_matches (local_error, DHF_ERROR, DHF_ERROR_NOT_AUTHORIZED)
           || g_error_matches (local_error, DHF_ERROR, DHF_ERROR_LIMIT_EXCEEDED))
    g_propagate_prefixed_error (error, g_steal_pointer (&local_error),
                                "%s: ", dhf_client_get_address (client));
  else
    g_set_error (error, DHF_ERROR, DHF_ERROR_DISCONNECTED, "cannot reach dhfd over XDM: %s",
                 local_error->message);
  return NULL;
}

/* JSON text given on the command line ("-": standard input), checked here so
 * that a typo is a usage error rather than a round trip. */
static gboolean
read_json_argument (const gchar *what, const gchar *text, gchar **json, GError **error)
{
  g_autoptr (json_tokener) tokener = json_tokener_new_ex (DHF_XDM_MAX_DEPTH);
  g_autoptr (json_object) value = NULL;
  g_autofree gchar *input = NULL;
  enum json_tokener_error status;
  gsize length;
  gsize end;

  if (g_str_equal (text, "-"))
    {
      g_autoptr (GByteArray) bytes = g_byte_array_new ();
      guint8 buffer[8192];
      gsize n;

      while ((n = fread (buffer, 1, sizeof buffer, stdin)) > 0)
        {
          if (bytes->len + n > DHF_XDM_MAX_BODY)
            {
              g_set_error (error, G_OPTION_ERROR, G_OPTION_ERROR_BAD_VALUE,
                           "%s on standard input is larger than %u bytes", what, DHF_XDM_MAX_BODY);
              return FALSE;
            }
          g_byte_array_append (bytes, buffer, (guint) n);
        }
      if (ferror (stdin))
        {
          g_set_error (error, DHF_ERROR, DHF_ERROR_FAILED, "cannot read %s from standard input",
                       what);
          return FALSE;
        }
      g_byte_array_append (bytes, (const guint8 *) "", 1);
      input = (gchar *) g_byte_array_free (g_steal_pointer (&bytes), FALSE);
    }
  else
    input = g_strdup (text);

  length = strlen (input);
  if (!g_utf8_validate (input, (gssize) length, NULL))
    {
      g_set_error (error, G_OPTION_ERROR, G_OPTION_ERROR_BAD_VALUE, "%s is not valid UTF-8", what);
      return FALSE;
    }
  json_tokener_set_flags (tokener, JSON_TOKENER_STRICT);
  value = json_tokener_parse_ex (tokener, input, (int) MIN (length, (gsize) G_MAXINT));
  status = json_tokener_get_error (tokener);
  end = json_tokener_get_parse_end (tokener);
  while (status == json_tokener_success && end < length && g_ascii_isspace (input[end]))
    end++;
  if (status != json_tokener_success || end != length)
    {
      g_set_error (error, G_OPTION_ERROR, G_OPTION_ERROR_BAD_VALUE,
                   "%s is not valid JSON: %s at byte %zu", what,
                   status == json_tokener_continue  ? "unexpected end"
                   : status != json_tokener_success ? json_tokener_error_desc (status)
                                                    : "text after the value",
                   MIN (end, length));
      return FALSE;
    }
  *json = g_strdup (json_object_to_json_string_ext (value, JSON_C_TO_STRING_PLAIN
                                                               | JSON_C_TO_STRING_NOSLASHESCAPE));
  return TRUE;
}

static gboolean
cmd_call (DhfctlContext *ctx, const DhfctlCommand *cmd, int argc, char **argv, GError **error)
{
  g_autofree gchar *address = NULL;
  g_autofree gchar *target = NULL;
  const GOptionEntry entries[] = {
    { "target", 0, 0, G_OPTION_ARG_STRING, &target,
      "Call the service of DOMAIN (dom0 for dhfd's own services; default: the one provider the "
      "policy lets dom0 reach)",
      "DOMAIN" },
    { "address", 0, 0, G_OPTION_ARG_STRING, &address,
      "Connect to dhfd's XDM socket at ADDR (default: $DHF_XDM_ADDRESS, else the socket dhfd "
      "reports on the bus, else unix:" DHF_XDM_DEFAULT_SOCKET ")",
      "ADDR" },
    G_OPTION_ENTRY_NULL,
  };
  g_autoptr (GError) local_error = NULL;
  g_autoptr (DhfClient) client = NULL;
  g_autoptr (json_object) parsed = NULL;
  g_autofree gchar *service = NULL;
  g_autofree gchar *arg = NULL;
  g_autofree gchar *params = NULL;
  g_autofree gchar *result = NULL;
  gint timeout_ms = 0;

  if (!dhfctl_parse_command_line (ctx, cmd, entries, 1, 2, &argc, &argv, error))
    return FALSE;
  if (!g_utf8_validate (argv[1], -1, NULL)
      || !dhf_xdm_split_service (argv[1], &service, &arg, &local_error))
    {
      g_set_error (error, G_OPTION_ERROR, G_OPTION_ERROR_BAD_VALUE,
                   "'%s' is not a service name (org.example.Service1 or "
                   "org.example.Service1+ARG)%s%s",
                   argv[1], local_error != NULL ? ": " : "",
                   local_error != NULL ? local_error->message : "");
      return FALSE;
    }
  if (target != NULL && !dhf_xdm_domain_is_valid (target))
    {
      g_set_error (error, G_OPTION_ERROR, G_OPTION_ERROR_BAD_VALUE,
                   "--target '%s' is not a domain name", target);
      return FALSE;
    }
  if (ctx->timeout_s > DHF_XDM_MAX_TIMEOUT_MS / 1000)
    {
      g_set_error (error, G_OPTION_ERROR, G_OPTION_ERROR_BAD_VALUE,
                   "xdm call --timeout must be at most %u seconds", DHF_XDM_MAX_TIMEOUT_MS / 1000);
      return FALSE;
    }
  timeout_ms = (gint) ctx->timeout_s * 1000;
  if (argc > 2 && !read_json_argument ("PARAMS_JSON", argv[2], &params, error))
    return FALSE;

  client = xdm_connect (ctx, address, error);
  if (client == NULL)
    return FALSE;
  result = dhf_client_call_sync (client, argv[1], target, params, timeout_ms, NULL, &local_error);
  dhf_client_close (client);
  if (result == NULL)
    {
      if (g_error_matches (local_error, DHF_ERROR, DHF_ERROR_DISCONNECTED))
        g_prefix_error (&local_error, "lost the connection to dhfd: ");
      g_propagate_prefixed_error (error, g_steal_pointer (&local_error),
                                  "cannot call %s%s%s: ", argv[1], target != NULL ? " on " : "",
                                  target != NULL ? target : "");
      return FALSE;
    }

  /* The result is JSON already: printed indented in both modes. */
  parsed = json_tokener_parse (result);
  if (parsed == NULL && !g_str_equal (g_strstrip (result), "null"))
    {
      g_set_error (error, DHF_ERROR, DHF_ERROR_PROTOCOL, "the result of %s is not valid JSON",
                   argv[1]);
      return FALSE;
    }
  if (parsed == NULL)
    {
      fputs ("null\n", stdout);
      fflush (stdout);
      return TRUE;
    }
  dhfctl_print_json (parsed);
  return TRUE;
}

static void
ignore_event (DhfClient *client, const gchar *topic, const gchar *source, const gchar *data_json,
              gpointer user_data)
{
}

/* Publishing does not wait, and closing drops what the socket has not
 * taken yet. dhfd handles a connection's frames in order, so once it has
 * answered a request sent after the event, it has the whole event and has
 * queued it for the subscribers: any answer will do, even a refusal. */
static gboolean
publish_barrier (DhfClient *client, const gchar *topic, GError **error)
{
  g_autoptr (GError) local_error = NULL;
  guint id = dhf_client_subscribe (client, topic, ignore_event, NULL, NULL, &local_error);

  if (id != 0)
    {
      /* The connection closes next anyway. */
      (void) dhf_client_unsubscribe (client, id, NULL);
      return TRUE;
    }
  if (g_error_matches (local_error, DHF_ERROR, DHF_ERROR_DISCONNECTED))
    {
      g_propagate_prefixed_error (error, g_steal_pointer (&local_error),
                                  "the event may not have reached dhfd: ");
      return FALSE;
    }
  return TRUE;
}

static gboolean
cmd_publish (DhfctlContext *ctx, const DhfctlCommand *cmd, int argc, char **argv, GError **error)
{
  g_autofree gchar *address = NULL;
  const GOptionEntry entries[] = {
    { "address", 0, 0, G_OPTION_ARG_STRING, &address,
      "Connect to dhfd's XDM socket at ADDR (default: $DHF_XDM_ADDRESS, else the socket dhfd "
      "reports on the bus, else unix:" DHF_XDM_DEFAULT_SOCKET ")",
      "ADDR" },
    G_OPTION_ENTRY_NULL,
  };
  g_autoptr (GError) local_error = NULL;
  g_autoptr (DhfClient) client = NULL;
  g_autofree gchar *data = NULL;

  if (!dhfctl_parse_command_line (ctx, cmd, entries, 1, 2, &argc, &argv, error))
    return FALSE;
  if (!dhf_xdm_name_is_valid (argv[1]))
    {
      g_set_error (error, G_OPTION_ERROR, G_OPTION_ERROR_BAD_VALUE,
                   "'%s' is not a topic name (org.example.Topic)", argv[1]);
      return FALSE;
    }
  if (argc > 2 && !read_json_argument ("DATA_JSON", argv[2], &data, error))
    return FALSE;

  client = xdm_connect (ctx, address, error);
  if (client == NULL)
    return FALSE;
  if (!dhf_client_publish (client, argv[1], data, &local_error)
      || !publish_barrier (client, argv[1], &local_error))
    {
      dhf_client_close (client);
      g_propagate_prefixed_error (error, g_steal_pointer (&local_error),
                                  "cannot publish %s: ", argv[1]);
      return FALSE;
    }
  dhf_client_close (client);

  if (ctx->json)
    {
      g_autoptr (json_object) root = json_object_new_object ();

      json_object_object_add (root, "topic", dhfctl_json_string (argv[1]));
      json_object_object_add (root, "published", json_object_new_boolean (TRUE));
      dhfctl_print_json (root);
    }
  return TRUE;
}

static void
print_event (DhfClient *client, const gchar *topic, const gchar *source, const gchar *data_json,
             gpointer user_data)
{
  g_autoptr (json_object) line = json_object_new_object ();
  json_object *data = data_json != NULL ? json_tokener_parse (data_json) : NULL;

  json_object_object_add (line, "topic", dhfctl_json_string (topic));
  json_object_object_add (line, "source", dhfctl_json_string (source));
  json_object_object_add (line, "data", data);
  dhfctl_print_json_line (line);
}

static void
on_connected_changed (GObject *object, GParamSpec *pspec, gpointer user_data)
{
  if (!dhf_client_get_connected (DHF_CLIENT (object)))
    dhfctl_watch_set_lost (user_data);
}

static gboolean
cmd_watch (DhfctlContext *ctx, const DhfctlCommand *cmd, int argc, char **argv, GError **error)
{
  g_autofree gchar *address = NULL;
  const GOptionEntry entries[] = {
    { "address", 0, 0, G_OPTION_ARG_STRING, &address,
      "Connect to dhfd's XDM socket at ADDR (default: $DHF_XDM_ADDRESS, else the socket dhfd "
      "reports on the bus, else unix:" DHF_XDM_DEFAULT_SOCKET ")",
      "ADDR" },
    G_OPTION_ENTRY_NULL,
  };
  g_autoptr (GError) local_error = NULL;
  g_autoptr (DhfClient) client = NULL;
  DhfctlWatch watch = { 0 };
  gulong handler_id;
  gboolean ok;

  if (!dhfctl_parse_command_line (ctx, cmd, entries, 1, 1, &argc, &argv, error))
    return FALSE;
  ctx->json_lines = TRUE;
  if (!dhf_xdm_name_is_valid (argv[1]))
    {
      g_set_error (error, G_OPTION_ERROR, G_OPTION_ERROR_BAD_VALUE,
                   "'%s' is not a topic name (org.example.Topic)", argv[1]);
      return FALSE;
    }

  client = xdm_connect (ctx, address, &local_error);
  if (client == NULL)
    {
      /* Interrupted before anything happened: a clean end all the same. */
      if (g_error_matches (local_error, DHF_ERROR, DHF_ERROR_CANCELLED))
        return TRUE;
      g_propagate_error (error, g_steal_pointer (&local_error));
      return FALSE;
    }

  handler_id
      = g_signal_connect (client, "notify::connected", G_CALLBACK (on_connected_changed), &watch);
  if (dhf_client_subscribe (client, argv[1], print_event, NULL, NULL, &local_error) == 0)
    {
      g_signal_handler_disconnect (client, handler_id);
      dhf_client_close (client);
      /* The SDK's message names the topic already. */
      g_propagate_error (error, g_steal_pointer (&local_error));
      return FALSE;
    }

  if (!dhf_client_get_connected (client))
    dhfctl_watch_set_lost (&watch);
  ok = dhfctl_watch_wait (&watch);
  g_signal_handler_disconnect (client, handler_id);
  dhf_client_close (client);

  if (!ok)
    {
      g_set_error (error, DHF_ERROR, DHF_ERROR_DISCONNECTED,
                   "lost the connection to dhfd while watching %s", argv[1]);
      return FALSE;
    }
  return TRUE;
}

static void
print_xdm_help (void)
{
  g_print ("Usage:\n  dhfctl xdm SUBCOMMAND [OPTION…] [ARGUMENTS…]\n\nSubcommands:\n");
  for (gsize i = 0; i < G_N_ELEMENTS (subcommands); i++)
    {
      g_autofree gchar *usage
          = g_strjoin (" ", subcommands[i].name + strlen ("xdm "), subcommands[i].args, NULL);

      /* Pad by display width: "…" is one column but three bytes. */
      g_print ("  %s%*s  %s\n", usage, (int) (36 - MIN (dhfctl_display_width (usage), 36)), "",
               subcommands[i].summary);
    }
  g_print ("\nRun 'dhfctl xdm SUBCOMMAND --help' for the options of one subcommand.\n");
}

gboolean
dhfctl_cmd_xdm (DhfctlContext *ctx, const DhfctlCommand *cmd, int argc, char **argv, GError **error)
{
  g_autofree gchar *name = NULL;

  if (argc < 2)
    {
      g_set_error_literal (error, G_OPTION_ERROR, G_OPTION_ERROR_FAILED,
                           "xdm: missing subcommand (list, services, subscriptions, call, "
                           "publish or watch)");
      return FALSE;
    }
  if (g_str_equal (argv[1], "--help") || g_str_equal (argv[1], "-h")
      || g_str_equal (argv[1], "help"))
    {
      print_xdm_help ();
      return TRUE;
    }
  name = g_strconcat ("xdm ", argv[1], NULL);
  for (gsize i = 0; i < G_N_ELEMENTS (subcommands); i++)
    {
      if (g_str_equal (subcommands[i].name, name))
        return subcommands[i].func (ctx, &subcommands[i], argc - 1, argv + 1, error);
    }
  g_set_error (error, G_OPTION_ERROR, G_OPTION_ERROR_FAILED,
               "xdm: unknown subcommand '%s' (list, services, subscriptions, call, publish or "
               "watch)",
               argv[1]);
  return FALSE;
}
