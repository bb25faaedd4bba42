/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* dhfctl: reaching dhfd on the bus, finding appliances, and turning errors
 * into exit statuses. */
#include "config.h"

#include <dhf/dhf.h>

#include <stdarg.h>

#include "dhfctl.h"

gboolean
dhfctl_connect (DhfctlContext *ctx, GError **error)
{
  g_autoptr (GError) local_error = NULL;
  const gchar *address = ctx->address;
  gboolean from_env = FALSE;

  if (ctx->connection != NULL)
    return TRUE;

  if (address == NULL && !ctx->system_bus && !ctx->session_bus)
    {
      address = g_getenv ("DHF_BUS_ADDRESS");
      /* An empty variable counts as unset, as with DBUS_SESSION_BUS_ADDRESS. */
      if (address != NULL && *address == '\0')
        address = NULL;
      from_env = address != NULL;
    }

  if (address != NULL)
    {
      if (!g_dbus_is_supported_address (address, &local_error))
        {
          g_set_error (error, G_OPTION_ERROR, G_OPTION_ERROR_BAD_VALUE, "bad bus address%s: %s",
                       from_env ? " in $DHF_BUS_ADDRESS" : "", local_error->message);
          return FALSE;
        }
      ctx->bus_description
          = g_strdup_printf ("the bus at %s%s", address, from_env ? " ($DHF_BUS_ADDRESS)" : "");
      ctx->connection = g_dbus_connection_new_for_address_sync (
          address,
          G_DBUS_CONNECTION_FLAGS_AUTHENTICATION_CLIENT
              | G_DBUS_CONNECTION_FLAGS_MESSAGE_BUS_CONNECTION,
          NULL, NULL, &local_error);
    }
  else
    {
      GBusType bus_type = ctx->session_bus ? G_BUS_TYPE_SESSION : G_BUS_TYPE_SYSTEM;

      ctx->bus_description = g_strdup (ctx->session_bus ? "the session bus" : "the system bus");
      ctx->connection = g_bus_get_sync (bus_type, NULL, &local_error);
    }

  if (ctx->connection == NULL)
    {
      /* Whatever GIO says (no socket, refused, bad auth), dhfd is unreachable. */
      g_set_error (error, G_DBUS_ERROR, G_DBUS_ERROR_NO_SERVER, "cannot connect to %s: %s",
                   ctx->bus_description, local_error->message);
      return FALSE;
    }
  return TRUE;
}

static gboolean
check_name_owner (DhfctlContext *ctx, const gchar *owner, GError **error)
{
  if (owner != NULL)
    return TRUE;
  g_set_error (error, G_DBUS_ERROR, G_DBUS_ERROR_SERVICE_UNKNOWN,
               "dhfd is not running (nobody owns %s on %s)", DHF_BUS_NAME, ctx->bus_description);
  return FALSE;
}

GDBusObjectManager *
dhfctl_get_object_manager (DhfctlContext *ctx, GError **error)
{
  g_autoptr (GError) local_error = NULL;
  g_autoptr (GDBusObjectManager) manager = NULL;
  g_autofree gchar *owner = NULL;

  if (!dhfctl_connect (ctx, error))
    return NULL;

  /* No DO_NOT_AUTO_START: the bus may activate dhfd. */
  manager = dhf_dbus_object_manager_client_new_sync (
      ctx->connection, G_DBUS_OBJECT_MANAGER_CLIENT_FLAGS_NONE, DHF_BUS_NAME, DHF_OBJECT_PATH, NULL,
      &local_error);
  if (manager == NULL)
    {
      dhfctl_strip_remote_error (local_error);
      g_propagate_prefixed_error (error, g_steal_pointer (&local_error),
                                  "cannot list the appliances: ");
      return NULL;
    }

  /* Construction succeeds without an owner; the object list is then empty. */
  owner = g_dbus_object_manager_client_get_name_owner (G_DBUS_OBJECT_MANAGER_CLIENT (manager));
  if (!check_name_owner (ctx, owner, error))
    return NULL;
  return g_steal_pointer (&manager);
}

DhfDBusManager *
dhfctl_get_manager (DhfctlContext *ctx, GError **error)
{
  g_autoptr (GError) local_error = NULL;
  g_autoptr (DhfDBusManager) manager = NULL;
  g_autofree gchar *owner = NULL;

  if (!dhfctl_connect (ctx, error))
    return NULL;

  /* A proxy of its own rather than the ObjectManager's: the Manager object
   * sits at the ObjectManager's own path, which GetManagedObjects need not
   * report. */
  manager = dhf_dbus_manager_proxy_new_sync (ctx->connection, G_DBUS_PROXY_FLAGS_NONE, DHF_BUS_NAME,
                                             DHF_OBJECT_PATH, NULL, &local_error);
  if (manager == NULL)
    {
      dhfctl_strip_remote_error (local_error);
      g_propagate_prefixed_error (error, g_steal_pointer (&local_error), "cannot reach dhfd: ");
      return NULL;
    }

  owner = g_dbus_proxy_get_name_owner (G_DBUS_PROXY (manager));
  if (!check_name_owner (ctx, owner, error))
    return NULL;
  return g_steal_pointer (&manager);
}

DhfDBusPolicy *
dhfctl_get_policy (DhfctlContext *ctx, GError **error)
{
  g_autoptr (GError) local_error = NULL;
  g_autoptr (DhfDBusPolicy) policy = NULL;
  g_autofree gchar *owner = NULL;

  if (!dhfctl_connect (ctx, error))
    return NULL;

  policy = dhf_dbus_policy_proxy_new_sync (ctx->connection, G_DBUS_PROXY_FLAGS_NONE, DHF_BUS_NAME,
                                           DHF_OBJECT_PATH, NULL, &local_error);
  if (policy == NULL)
    {
      dhfctl_strip_remote_error (local_error);
      g_propagate_prefixed_error (error, g_steal_pointer (&local_error), "cannot reach dhfd: ");
      return NULL;
    }

  owner = g_dbus_proxy_get_name_owner (G_DBUS_PROXY (policy));
  if (!check_name_owner (ctx, owner, error))
    return NULL;
  return g_steal_pointer (&policy);
}

DhfDBusDevices *
dhfctl_get_devices (DhfctlContext *ctx, GError **error)
{
  g_autoptr (GError) local_error = NULL;
  g_autoptr (DhfDBusDevices) devices = NULL;
  g_autofree gchar *owner = NULL;

  if (!dhfctl_connect (ctx, error))
    return NULL;

  /* The interface has no properties to load; its signal is subscribed to,
   * for devices watch. */
  devices
      = dhf_dbus_devices_proxy_new_sync (ctx->connection, G_DBUS_PROXY_FLAGS_DO_NOT_LOAD_PROPERTIES,
                                         DHF_BUS_NAME, DHF_OBJECT_PATH, NULL, &local_error);
  if (devices == NULL)
    {
      dhfctl_strip_remote_error (local_error);
      g_propagate_prefixed_error (error, g_steal_pointer (&local_error), "cannot reach dhfd: ");
      return NULL;
    }

  owner = g_dbus_proxy_get_name_owner (G_DBUS_PROXY (devices));
  if (!check_name_owner (ctx, owner, error))
    return NULL;
  return g_steal_pointer (&devices);
}

/* Without the properties: dhfctl reads them with an explicit GetAll, whose
 * error says why (the proxy would drop it). */
DhfDBusDisplay *
dhfctl_get_display (DhfctlContext *ctx, GError **error)
{
  g_autoptr (GError) local_error = NULL;
  g_autoptr (DhfDBusDisplay) display = NULL;
  g_autofree gchar *owner = NULL;

  if (!dhfctl_connect (ctx, error))
    return NULL;

  display
      = dhf_dbus_display_proxy_new_sync (ctx->connection, G_DBUS_PROXY_FLAGS_DO_NOT_LOAD_PROPERTIES,
                                         DHF_BUS_NAME, DHF_OBJECT_PATH, NULL, &local_error);
  if (display == NULL)
    {
      dhfctl_strip_remote_error (local_error);
      g_propagate_prefixed_error (error, g_steal_pointer (&local_error), "cannot reach dhfd: ");
      return NULL;
    }

  owner = g_dbus_proxy_get_name_owner (G_DBUS_PROXY (display));
  if (!check_name_owner (ctx, owner, error))
    return NULL;
  return g_steal_pointer (&display);
}

gboolean
dhfctl_check_name (const gchar *name, GError **error)
{
  if (*name == '\0')
    {
      g_set_error_literal (error, G_OPTION_ERROR, G_OPTION_ERROR_BAD_VALUE,
                           "the appliance name must not be empty");
      return FALSE;
    }
  /* D-Bus strings must be UTF-8; GVariant would complain loudly otherwise. */
  if (!g_utf8_validate (name, -1, NULL))
    {
      g_set_error_literal (error, G_OPTION_ERROR, G_OPTION_ERROR_BAD_VALUE,
                           "the appliance name is not valid UTF-8");
      return FALSE;
    }
  return TRUE;
}

DhfDBusAppliance *
dhfctl_lookup_appliance (GDBusObjectManager *manager, const gchar *name, GError **error)
{
  g_autofree gchar *escaped = NULL;
  g_autofree gchar *path = NULL;
  GDBusInterface *iface = NULL;

  if (!dhfctl_check_name (name, error))
    return NULL;

  escaped = g_dbus_escape_object_path (name);
  path = g_strconcat (DHF_APPLIANCE_PATH_PREFIX "/", escaped, NULL);
  iface = g_dbus_object_manager_get_interface (manager, path, DHFCTL_APPLIANCE_INTERFACE);
  if (iface == NULL)
    {
      g_set_error (error, DHF_ERROR, DHF_ERROR_NOT_FOUND, "no appliance named '%s'", name);
      return NULL;
    }
  return DHF_DBUS_APPLIANCE (iface);
}

static gint
compare_by_name (gconstpointer a, gconstpointer b)
{
  return g_strcmp0 (dhf_dbus_appliance_get_name ((DhfDBusAppliance *) a),
                    dhf_dbus_appliance_get_name ((DhfDBusAppliance *) b));
}

GList *
dhfctl_list_appliances (GDBusObjectManager *manager)
{
  GList *objects = g_dbus_object_manager_get_objects (manager);
  GList *appliances = NULL;

  for (GList *l = objects; l != NULL; l = l->next)
    {
      DhfDBusAppliance *appliance = dhf_dbus_object_get_appliance (DHF_DBUS_OBJECT (l->data));

      /* The Manager's own object, if listed, has no Appliance interface. */
      if (appliance != NULL)
        appliances = g_list_prepend (appliances, appliance);
    }
  g_list_free_full (objects, g_object_unref);
  return g_list_sort (appliances, compare_by_name);
}

void
dhfctl_set_call_timeout (DhfctlContext *ctx, gpointer proxy, guint default_s)
{
  guint seconds = ctx->timeout_s != 0 ? ctx->timeout_s : default_s;

  g_dbus_proxy_set_default_timeout (G_DBUS_PROXY (proxy),
                                    (gint) MIN (seconds, G_MAXINT / 1000) * 1000);
}

/* Remote errors arrive as "GDBus.Error:NAME: text". Only the text is for
 * people; NAME survives in the error's domain and code when a domain maps
 * it, and in the text when none does. */
void
dhfctl_strip_remote_error (GError *error)
{
  g_autofree gchar *name = NULL;
  gchar *message = NULL;

  if (error == NULL || !g_dbus_error_is_remote_error (error))
    return;

  if (!g_error_matches (error, G_IO_ERROR, G_IO_ERROR_DBUS_ERROR))
    {
      g_dbus_error_strip_remote_error (error);
      return;
    }

  name = g_dbus_error_get_remote_error (error);
  g_dbus_error_strip_remote_error (error);
  message = g_strdup_printf ("%s (%s)", error->message, name);
  g_free (error->message);
  error->message = message;
}

/* Takes @src, the error of a call on @interface, and sets @dest to what
 * dhfctl reports: prefixed with @format, without the remote error name, and
 * NotSupported from a dhfd that predates @interface (GDBus answers
 * UnknownMethod for a method of an interface that is not exported, and
 * UnknownInterface or UnknownObject elsewhere). */
void
dhfctl_propagate_call_error (GError **dest, GError *src, const gchar *interface,
                             const gchar *format, ...)
{
  g_autoptr (GError) owned = src;
  g_autofree gchar *prefix = NULL;
  va_list args;

  va_start (args, format);
  prefix = g_strdup_vprintf (format, args);
  va_end (args);

  if (g_error_matches (owned, G_DBUS_ERROR, G_DBUS_ERROR_UNKNOWN_METHOD)
      || g_error_matches (owned, G_DBUS_ERROR, G_DBUS_ERROR_UNKNOWN_INTERFACE)
      || g_error_matches (owned, G_DBUS_ERROR, G_DBUS_ERROR_UNKNOWN_OBJECT))
    {
      g_set_error (dest, DHF_ERROR, DHF_ERROR_NOT_SUPPORTED, "%sthis dhfd has no %s interface",
                   prefix, interface);
      return;
    }
  dhfctl_strip_remote_error (owned);
  g_propagate_prefixed_error (dest, g_steal_pointer (&owned), "%s", prefix);
}

DhfctlExit
dhfctl_exit_status_for_error (const GError *error)
{
  if (error->domain == G_OPTION_ERROR)
    return DHFCTL_EXIT_USAGE;

  if (g_error_matches (error, DHF_ERROR, DHF_ERROR_NOT_FOUND))
    return DHFCTL_EXIT_NOT_FOUND;

  if (g_error_matches (error, DHF_ERROR, DHF_ERROR_NOT_AUTHORIZED)
      || g_error_matches (error, G_DBUS_ERROR, G_DBUS_ERROR_ACCESS_DENIED))
    return DHFCTL_EXIT_NOT_AUTHORIZED;

  /* dhfd's XDM socket refused or lost the session. */
  if (g_error_matches (error, G_IO_ERROR, G_IO_ERROR_CLOSED)
      || g_error_matches (error, DHF_ERROR, DHF_ERROR_DISCONNECTED))
    return DHFCTL_EXIT_UNREACHABLE;

  if (error->domain != G_DBUS_ERROR)
    return DHFCTL_EXIT_FAILED;

  switch (error->code)
    {
      /* No bus, or nobody owns the name and the bus could not activate dhfd. */
      case G_DBUS_ERROR_NO_SERVER:
      case G_DBUS_ERROR_DISCONNECTED:
      case G_DBUS_ERROR_SERVICE_UNKNOWN:
      case G_DBUS_ERROR_NAME_HAS_NO_OWNER:
      case G_DBUS_ERROR_SPAWN_EXEC_FAILED:
      case G_DBUS_ERROR_SPAWN_FORK_FAILED:
      case G_DBUS_ERROR_SPAWN_CHILD_EXITED:
      case G_DBUS_ERROR_SPAWN_CHILD_SIGNALED:
      case G_DBUS_ERROR_SPAWN_FAILED:
      case G_DBUS_ERROR_SPAWN_SETUP_FAILED:
      case G_DBUS_ERROR_SPAWN_CONFIG_INVALID:
      case G_DBUS_ERROR_SPAWN_SERVICE_INVALID:
      case G_DBUS_ERROR_SPAWN_SERVICE_NOT_FOUND:
      case G_DBUS_ERROR_SPAWN_PERMISSIONS_INVALID:
      case G_DBUS_ERROR_SPAWN_FILE_INVALID:
      case G_DBUS_ERROR_SPAWN_NO_MEMORY:
        return DHFCTL_EXIT_UNREACHABLE;
      default:
        return DHFCTL_EXIT_FAILED;
    }
}

gchar *
dhfctl_error_name (const GError *error)
{
  /* Registered domains (DHF_ERROR, G_DBUS_ERROR) map to their names even
   * for errors raised here. */
  gchar *name = g_dbus_error_get_remote_error (error);

  if (name != NULL)
    return name;
  if (error->domain == G_OPTION_ERROR)
    return g_strdup (dhf_error_to_dbus_name (DHF_ERROR_INVALID_ARGS));
  if (g_error_matches (error, G_IO_ERROR, G_IO_ERROR_TIMED_OUT))
    return g_strdup ("org.freedesktop.DBus.Error.Timeout");
  return g_strdup (dhf_error_to_dbus_name (DHF_ERROR_FAILED));
}
