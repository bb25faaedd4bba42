/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include "config.h"

#include "dhf-xdm-service.h"

#define PROMPT_AGENT_INTERFACE "org.dhf.Framework1.PromptAgent"
/* The router's own timer decides; the call's timeout only backs it up. */
#define ASK_CALL_MARGIN_MS 1000

/* A registered prompt agent: an object of a bus client. */
typedef struct
{
  DhfXdmService *self; /* weak: agents go before the service */
  gchar *sender;
  gchar *path;
  guint watch_id;
} Agent;

/* A question on its way to an agent. */
typedef struct
{
  DhfXdmService *self;  /* weak: NULL once the service is gone */
  GCancellable *call;   /* cancelled with the router's, or when the service goes */
  GCancellable *router; /* the router's */
  gulong router_handler;
  DhfXdmAskDone done;
  gpointer done_data;
} Ask;

struct _DhfXdmService
{
  DhfDBusXdmSkeleton parent_instance;

  DhfAuthority *authority;
  DhfXdmRouter *router;
  guint ask_timeout_ms;
  GPtrArray *agents; /* Agent, the most recent last */
  GPtrArray *asks;   /* Ask in flight, not owned */
};

G_DEFINE_TYPE (DhfXdmService, dhf_xdm_service, DHF_DBUS_TYPE_XDM_SKELETON)

/* --- prompt agents ----------------------------------------------------- */

static void
agent_free (gpointer data)
{
  Agent *agent = data;

  if (agent->watch_id != 0)
    g_bus_unwatch_name (agent->watch_id);
  g_free (agent->sender);
  g_free (agent->path);
  g_free (agent);
}

static Agent *
find_agent (DhfXdmService *self, const gchar *sender, const gchar *path, guint *index)
{
  for (guint i = 0; i < self->agents->len; i++)
    {
      Agent *agent = g_ptr_array_index (self->agents, i);

      if (g_str_equal (agent->sender, sender) && g_str_equal (agent->path, path))
        {
          if (index != NULL)
            *index = i;
          return agent;
        }
    }
  return NULL;
}

static void
on_agent_vanished (GDBusConnection *connection, const gchar *name, gpointer user_data)
{
  Agent *agent = user_data;
  DhfXdmService *self = agent->self;
  guint index;

  if (!g_ptr_array_find (self->agents, agent, &index))
    return;
  g_message ("XDM: prompt agent %s %s left the bus", agent->sender, agent->path);
  g_ptr_array_remove_index (self->agents, index);
}

static void
add_agent (DhfXdmService *self, GDBusConnection *connection, const gchar *sender, const gchar *path)
{
  Agent *agent = g_new0 (Agent, 1);

  agent->self = self;
  agent->sender = g_strdup (sender);
  agent->path = g_strdup (path);
  g_ptr_array_add (self->agents, agent);
  /* Reports a name that is already gone too. */
  agent->watch_id = g_bus_watch_name_on_connection (
      connection, sender, G_BUS_NAME_WATCHER_FLAGS_NONE, NULL, on_agent_vanished, agent, NULL);
}

/* --- D-Bus methods ----------------------------------------------------- */

typedef enum
{
  METHOD_LIST_CONNECTIONS,
  METHOD_LIST_SERVICES,
  METHOD_LIST_SUBSCRIPTIONS,
  METHOD_REGISTER,
  METHOD_UNREGISTER,
} Method;

typedef struct
{
  DhfXdmService *self; /* strong */
  GDBusMethodInvocation *invocation;
  Method method;
  gchar *path;
} Call;

static void
call_free (Call *call)
{
  g_clear_object (&call->self);
  g_free (call->path);
  g_free (call);
}

G_DEFINE_AUTOPTR_CLEANUP_FUNC (Call, call_free)

static void
complete_list (Call *call)
{
  DhfDBusXdm *iface = DHF_DBUS_XDM (call->self);
  GDBusMethodInvocation *invocation = g_steal_pointer (&call->invocation);
  g_autoptr (GVariant) list = NULL;

  switch (call->method)
    {
      case METHOD_LIST_CONNECTIONS:
        list = g_variant_take_ref (dhf_xdm_router_list_connections (call->self->router));
        dhf_dbus_xdm_complete_list_connections (iface, invocation, list);
        break;
      case METHOD_LIST_SERVICES:
        list = g_variant_take_ref (dhf_xdm_router_list_services (call->self->router));
        dhf_dbus_xdm_complete_list_services (iface, invocation, list);
        break;
      case METHOD_LIST_SUBSCRIPTIONS:
        list = g_variant_take_ref (dhf_xdm_router_list_subscriptions (call->self->router));
        dhf_dbus_xdm_complete_list_subscriptions (iface, invocation, list);
        break;
      case METHOD_REGISTER:
      case METHOD_UNREGISTER:
      default:
        g_assert_not_reached ();
    }
}

static void
complete_register (Call *call)
{
  DhfXdmService *self = call->self;
  GDBusMethodInvocation *invocation = g_steal_pointer (&call->invocation);
  const gchar *sender = g_dbus_method_invocation_get_sender (invocation);
  guint index;

  /* Again: it becomes the most recent. */
  if (find_agent (self, sender, call->path, &index) != NULL)
    g_ptr_array_add (self->agents, g_ptr_array_steal_index (self->agents, index));
  else if (self->agents->len >= DHF_XDM_MAX_PROMPT_AGENTS)
    {
      g_dbus_method_invocation_return_error (invocation, DHF_ERROR, DHF_ERROR_LIMIT_EXCEEDED,
                                             "%u prompt agents are registered already; "
                                             "unregister one first",
                                             DHF_XDM_MAX_PROMPT_AGENTS);
      return;
    }
  else
    add_agent (self, g_dbus_method_invocation_get_connection (invocation), sender, call->path);
  g_message ("XDM: %s %s is the prompt agent", sender, call->path);
  dhf_dbus_xdm_complete_register_prompt_agent (DHF_DBUS_XDM (self), invocation);
}

static void
complete_unregister (Call *call)
{
  DhfXdmService *self = call->self;
  GDBusMethodInvocation *invocation = g_steal_pointer (&call->invocation);
  const gchar *sender = g_dbus_method_invocation_get_sender (invocation);
  guint index;

  if (find_agent (self, sender, call->path, &index) == NULL)
    {
      g_dbus_method_invocation_return_error (invocation, DHF_ERROR, DHF_ERROR_NOT_FOUND,
                                             "%s has not registered a prompt agent at %s", sender,
                                             call->path);
      return;
    }
  g_ptr_array_remove_index (self->agents, index);
  g_message ("XDM: prompt agent %s %s unregistered", sender, call->path);
  dhf_dbus_xdm_complete_unregister_prompt_agent (DHF_DBUS_XDM (self), invocation);
}

static void
on_authorized (GObject *source, GAsyncResult *result, gpointer user_data)
{
  g_autoptr (Call) call = user_data;
  g_autoptr (GError) error = NULL;

  if (!dhf_authority_check_finish (DHF_AUTHORITY (source), result, &error))
    {
      g_dbus_method_invocation_return_gerror (g_steal_pointer (&call->invocation), error);
      return;
    }
  switch (call->method)
    {
      case METHOD_REGISTER:
        complete_register (call);
        break;
      case METHOD_UNREGISTER:
        complete_unregister (call);
        break;
      case METHOD_LIST_CONNECTIONS:
      case METHOD_LIST_SERVICES:
      case METHOD_LIST_SUBSCRIPTIONS:
      default:
        complete_list (call);
        break;
    }
}

static gboolean
authorize (DhfXdmService *self, GDBusMethodInvocation *invocation, Method method, const gchar *path)
{
  Call *call = g_new0 (Call, 1);
  gboolean agent = method == METHOD_REGISTER || method == METHOD_UNREGISTER;

  call->self = g_object_ref (self);
  call->invocation = invocation; /* the handler owns it until it completes it */
  call->method = method;
  call->path = g_strdup (path);
  dhf_authority_check_async (self->authority, invocation,
                             agent ? DHF_ACTION_XDM_PROMPT_AGENT : DHF_ACTION_XDM_INSPECT, NULL,
                             on_authorized, call);
  return G_DBUS_METHOD_INVOCATION_HANDLED;
}

static gboolean
handle_list_connections (DhfDBusXdm *iface, GDBusMethodInvocation *invocation, DhfXdmService *self)
{
  return authorize (self, invocation, METHOD_LIST_CONNECTIONS, NULL);
}

static gboolean
handle_list_services (DhfDBusXdm *iface, GDBusMethodInvocation *invocation, DhfXdmService *self)
{
  return authorize (self, invocation, METHOD_LIST_SERVICES, NULL);
}

static gboolean
handle_list_subscriptions (DhfDBusXdm *iface, GDBusMethodInvocation *invocation,
                           DhfXdmService *self)
{
  return authorize (self, invocation, METHOD_LIST_SUBSCRIPTIONS, NULL);
}

static gboolean
handle_register (DhfDBusXdm *iface, GDBusMethodInvocation *invocation, const gchar *path,
                 DhfXdmService *self)
{
  return authorize (self, invocation, METHOD_REGISTER, path);
}

static gboolean
handle_unregister (DhfDBusXdm *iface, GDBusMethodInvocation *invocation, const gchar *path,
                   DhfXdmService *self)
{
  return authorize (self, invocation, METHOD_UNREGISTER, path);
}

/* --- asking ------------------------------------------------------------ */

static void
on_router_cancelled (GCancellable *router, gpointer user_data)
{
  Ask *ask = user_data;

  g_cancellable_cancel (ask->call);
}

static void
ask_free (Ask *ask)
{
  if (ask->self != NULL)
    g_ptr_array_remove_fast (ask->self->asks, ask);
  if (ask->router != NULL)
    {
      g_cancellable_disconnect (ask->router, ask->router_handler);
      g_object_unref (ask->router);
    }
  g_object_unref (ask->call);
  g_free (ask);
}

/* The answer goes to the router unless it (or the service) gave up. */
static void
ask_finish (Ask *ask, gboolean allow)
{
  gboolean cancelled = g_cancellable_is_cancelled (ask->call);
  DhfXdmAskDone done = ask->done;
  gpointer done_data = ask->done_data;

  ask_free (ask);
  if (!cancelled)
    done (allow, done_data);
}

static void
on_agent_answered (GObject *source, GAsyncResult *result, gpointer user_data)
{
  Ask *ask = user_data;
  g_autoptr (GError) error = NULL;
  g_autoptr (GVariant) reply = NULL;
  gboolean allow = FALSE;

  reply = g_dbus_connection_call_finish (G_DBUS_CONNECTION (source), result, &error);
  if (reply != NULL)
    g_variant_get (reply, "(b)", &allow);
  else if (!g_error_matches (error, G_IO_ERROR, G_IO_ERROR_CANCELLED))
    g_message ("XDM: the prompt agent failed to answer (%s); that is a deny", error->message);
  ask_finish (ask, allow);
}

static gboolean
on_no_agent (gpointer user_data)
{
  ask_finish (user_data, FALSE);
  return G_SOURCE_REMOVE;
}

static GVariant *
question_to_variant (const DhfXdmQuestion *question)
{
  GVariantBuilder builder;

  g_variant_builder_init (&builder, G_VARIANT_TYPE ("a{sv}"));
  g_variant_builder_add (&builder, "{sv}", "service", g_variant_new_string (question->service));
  if (question->argument != NULL)
    g_variant_builder_add (&builder, "{sv}", "argument", g_variant_new_string (question->argument));
  g_variant_builder_add (&builder, "{sv}", "source", g_variant_new_string (question->source));
  g_variant_builder_add (&builder, "{sv}", "target", g_variant_new_string (question->target));
  g_variant_builder_add (&builder, "{sv}", "rule",
                         g_variant_new_string (question->rule != NULL ? question->rule : ""));
  g_variant_builder_add (&builder, "{sv}", "kind",
                         g_variant_new_string (question->stream ? "stream" : "call"));
  return g_variant_builder_end (&builder);
}

void
dhf_xdm_service_ask (const DhfXdmQuestion *question, GCancellable *cancellable, DhfXdmAskDone done,
                     gpointer done_data, gpointer user_data)
{
  DhfXdmService *self = user_data;
  GDBusConnection *connection
      = g_dbus_interface_skeleton_get_connection (G_DBUS_INTERFACE_SKELETON (self));
  Agent *agent
      = self->agents->len > 0 ? g_ptr_array_index (self->agents, self->agents->len - 1) : NULL;
  Ask *ask = g_new0 (Ask, 1);

  ask->self = self;
  ask->call = g_cancellable_new ();
  ask->done = done;
  ask->done_data = done_data;
  g_ptr_array_add (self->asks, ask);
  if (cancellable != NULL)
    {
      ask->router = g_object_ref (cancellable);
      ask->router_handler
          = g_cancellable_connect (cancellable, G_CALLBACK (on_router_cancelled), ask, NULL);
    }
  /* Answered from the main loop, never from within the router's call. */
  if (agent == NULL || connection == NULL)
    {
      g_debug ("XDM: no prompt agent to ask about %s from %s to %s; that is a deny",
               question->service, question->source, question->target);
      g_idle_add (on_no_agent, ask);
      return;
    }
  g_debug ("XDM: asking prompt agent %s %s about %s from %s to %s", agent->sender, agent->path,
           question->service, question->source, question->target);
  g_dbus_connection_call (connection, agent->sender, agent->path, PROMPT_AGENT_INTERFACE, "Ask",
                          g_variant_new ("(@a{sv})", question_to_variant (question)),
                          G_VARIANT_TYPE ("(b)"), G_DBUS_CALL_FLAGS_NO_AUTO_START,
                          (gint) (self->ask_timeout_ms + ASK_CALL_MARGIN_MS), ask->call,
                          on_agent_answered, ask);
}

/* --- GObject ----------------------------------------------------------- */

void
dhf_xdm_service_update_connections (DhfXdmService *self)
{
  guint n = dhf_xdm_router_get_n_connections (self->router);

  if (dhf_dbus_xdm_get_connections (DHF_DBUS_XDM (self)) != n)
    dhf_dbus_xdm_set_connections (DHF_DBUS_XDM (self), n);
}

DhfXdmService *
dhf_xdm_service_new (DhfAuthority *authority, DhfXdmRouter *router, const gchar *socket_path,
                     guint ask_timeout_ms)
{
  DhfXdmService *self = g_object_new (DHF_TYPE_XDM_SERVICE, NULL);

  self->authority = g_object_ref (authority);
  self->router = g_object_ref (router);
  self->ask_timeout_ms = ask_timeout_ms;
  dhf_dbus_xdm_set_socket (DHF_DBUS_XDM (self), socket_path != NULL ? socket_path : "");
  dhf_dbus_xdm_set_connections (DHF_DBUS_XDM (self), dhf_xdm_router_get_n_connections (router));
  g_signal_connect (self, "handle-list-connections", G_CALLBACK (handle_list_connections), self);
  g_signal_connect (self, "handle-list-services", G_CALLBACK (handle_list_services), self);
  g_signal_connect (self, "handle-list-subscriptions", G_CALLBACK (handle_list_subscriptions),
                    self);
  g_signal_connect (self, "handle-register-prompt-agent", G_CALLBACK (handle_register), self);
  g_signal_connect (self, "handle-unregister-prompt-agent", G_CALLBACK (handle_unregister), self);
  return self;
}

static void
dhf_xdm_service_init (DhfXdmService *self)
{
  self->agents = g_ptr_array_new_with_free_func (agent_free);
  self->asks = g_ptr_array_new ();
}

static void
dhf_xdm_service_dispose (GObject *object)
{
  DhfXdmService *self = DHF_XDM_SERVICE (object);

  /* Questions still out are never answered now: their callbacks find the
   * call cancelled and leave the router alone. */
  for (guint i = 0; i < self->asks->len; i++)
    {
      Ask *ask = g_ptr_array_index (self->asks, i);

      ask->self = NULL;
      g_cancellable_cancel (ask->call);
    }
  g_ptr_array_set_size (self->asks, 0);
  g_ptr_array_set_size (self->agents, 0);
  g_clear_object (&self->authority);
  g_clear_object (&self->router);
  G_OBJECT_CLASS (dhf_xdm_service_parent_class)->dispose (object);
}

static void
dhf_xdm_service_finalize (GObject *object)
{
  DhfXdmService *self = DHF_XDM_SERVICE (object);

  g_ptr_array_unref (self->asks);
  g_ptr_array_unref (self->agents);
  G_OBJECT_CLASS (dhf_xdm_service_parent_class)->finalize (object);
}

static void
dhf_xdm_service_class_init (DhfXdmServiceClass *klass)
{
  GObjectClass *object_class = G_OBJECT_CLASS (klass);

  object_class->dispose = dhf_xdm_service_dispose;
  object_class->finalize = dhf_xdm_service_finalize;
}
