/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include "config.h"

#include <dhf/dhf.h>
#include <glib-unix.h>

#include "dhf-appliance.h"
#include "dhf-authority.h"
#include "dhf-daemon.h"
#include "dhf-daemon-devices.h"
#include "dhf-hypervisor.h"
#include "dhf-installer.h"
#include "dhf-manifest.h"
#include "dhf-policy-service.h"
#include "dhf-xdm-channel.h"
#include "dhf-xdm-codec.h"
#include "dhf-xdm-router.h"
#include "dhf-xdm-service.h"
#include "dhf-xdm-unix.h"
#include "dhf-xdm-vsock.h"

struct _DhfDaemon
{
  GObject parent_instance;

  DhfConfig *config; /* owned */
  DhfBusKind bus_kind;
  gchar *address;
  gboolean replace;

  GDBusConnection *connection;
  DhfDBusManager *manager;
  GDBusObjectManagerServer *object_manager;
  DhfAuthority *authority;
  DhfHypervisor *hypervisor;
  DhfInstaller *installer;
  DhfPolicyService *policy;

  /* Cross-domain messaging: the router, its transports, its D-Bus face. */
  DhfXdmRouter *xdm;
  DhfXdmUnix *xdm_unix;
  DhfXdmVsock *xdm_vsock;
  DhfXdmChannel *xdm_channel;
  DhfXdmService *xdm_service;
  /* Devices, the focus and hotkeys (Devices and Display on the bus). */
  DhfDaemonDevices *devices;
  GHashTable *xdm_channel_closed; /* connection id -> ClosedRelay */
  /* The vsock CIDs are the hypervisor's word since the last sync: while it
   * is unreachable, a dead domain's CID may already be a new one's. */
  gboolean xdm_cids_valid;

  GHashTable *by_uuid;        /* uuid -> DhfAppliance */
  GHashTable *by_name;        /* name -> DhfAppliance (borrowed) */
  GHashTable *status_reasons; /* key -> human-readable reason */

  guint owner_id;
  guint own_timeout_id;
  guint sighup_id;
  gboolean name_acquired;
  gint exit_status;
};

G_DEFINE_TYPE (DhfDaemon, dhf_daemon, G_TYPE_OBJECT)

/* How long the first connection to the hypervisor may take before dhfd
 * takes its bus name anyway (and reports itself degraded). */
#define OWN_NAME_DEADLINE_S 5

enum
{
  SIGNAL_STOPPED,
  N_SIGNALS
};

static guint signals[N_SIGNALS];

static void
stop (DhfDaemon *self, gint exit_status)
{
  self->exit_status = exit_status;
  g_signal_emit (self, signals[SIGNAL_STOPPED], 0);
}

gint
dhf_daemon_get_exit_status (DhfDaemon *self)
{
  return self->exit_status;
}

/* --- status ----------------------------------------------------------- */

static void
publish_status (DhfDaemon *self)
{
  g_autoptr (GPtrArray) reasons = g_ptr_array_new ();
  GHashTableIter iter;
  gpointer value;

  g_hash_table_iter_init (&iter, self->status_reasons);
  while (g_hash_table_iter_next (&iter, NULL, &value))
    g_ptr_array_add (reasons, value);
  g_ptr_array_sort (reasons, (GCompareFunc) g_strcmp0);
  g_ptr_array_add (reasons, NULL);
  dhf_dbus_manager_set_status (self->manager, reasons->len > 1 ? "degraded" : "running");
  dhf_dbus_manager_set_status_reasons (self->manager, (const gchar *const *) reasons->pdata);
}

/* Marks dhfd degraded for one reason (text) or clears it (NULL). */
static void
set_status_reason (DhfDaemon *self, const gchar *key, const gchar *text)
{
  if (text != NULL)
    g_hash_table_replace (self->status_reasons, g_strdup (key), g_strdup (text));
  else
    g_hash_table_remove (self->status_reasons, key);
  publish_status (self);
}

/* --- appliance objects ------------------------------------------------ */

static gboolean serves_system_bus (DhfDaemon *self);
static void xdm_publish_state (DhfDaemon *self, DhfDBusAppliance *iface);
static void xdm_track_domain (DhfDaemon *self, const DhfDomainInfo *info);
static void xdm_forget_domain (DhfDaemon *self, const gchar *name);

static void
on_appliance_state_changed (DhfAppliance *appliance, DhfDaemon *self)
{
  DhfDBusAppliance *iface = DHF_DBUS_APPLIANCE (appliance);

  dhf_dbus_manager_emit_state_changed (
      self->manager, dhf_appliance_get_object_path (appliance), dhf_dbus_appliance_get_name (iface),
      dhf_dbus_appliance_get_state (iface), dhf_dbus_appliance_get_state_reason (iface));
  xdm_publish_state (self, iface);
}

static void
add_appliance (DhfDaemon *self, const DhfDomainInfo *info)
{
  g_autoptr (DhfAppliance) appliance = NULL;
  g_autoptr (DhfDBusObjectSkeleton) object = NULL;

  appliance = dhf_appliance_new (self->hypervisor, self->authority,
                                 self->config->shutdown_timeout_s, info);
  g_signal_connect (appliance, "state-changed", G_CALLBACK (on_appliance_state_changed), self);
  object = dhf_dbus_object_skeleton_new (dhf_appliance_get_object_path (appliance));
  dhf_dbus_object_skeleton_set_appliance (object, DHF_DBUS_APPLIANCE (appliance));
  g_dbus_object_manager_server_export (self->object_manager, G_DBUS_OBJECT_SKELETON (object));
  g_hash_table_replace (self->by_name, g_strdup (info->name), appliance);
  g_hash_table_replace (self->by_uuid, g_strdup (info->uuid), g_object_ref (appliance));
  g_debug ("appliance %s appeared at %s", info->name, dhf_appliance_get_object_path (appliance));
}

static void
remove_appliance (DhfDaemon *self, DhfAppliance *borrowed)
{
  /* The tables may hold the last reference; keep it alive until done. */
  g_autoptr (DhfAppliance) appliance = g_object_ref (borrowed);
  const gchar *name = dhf_dbus_appliance_get_name (DHF_DBUS_APPLIANCE (appliance));

  g_debug ("appliance %s disappeared", name);
  xdm_forget_domain (self, name);
  if (self->devices != NULL)
    dhf_daemon_devices_domain_removed (self->devices, name);
  dhf_appliance_vanished (appliance);
  g_signal_handlers_disconnect_by_data (appliance, self);
  g_dbus_object_manager_server_unexport (self->object_manager,
                                         dhf_appliance_get_object_path (appliance));
  g_hash_table_remove (self->by_name, name);
  g_hash_table_remove (self->by_uuid, dhf_appliance_get_uuid (appliance));
}

static void
apply_domain_info (DhfDaemon *self, const DhfDomainInfo *info)
{
  DhfAppliance *appliance = g_hash_table_lookup (self->by_uuid, info->uuid);

  /* Object paths follow names, so a renamed domain is a new object. */
  if (appliance != NULL
      && g_strcmp0 (dhf_dbus_appliance_get_name (DHF_DBUS_APPLIANCE (appliance)), info->name) != 0)
    {
      remove_appliance (self, appliance);
      appliance = NULL;
    }
  if (appliance == NULL)
    {
      DhfAppliance *clash = g_hash_table_lookup (self->by_name, info->name);

      /* A name reused by a new domain (undefine + define elsewhere). */
      if (clash != NULL)
        remove_appliance (self, clash);
      add_appliance (self, info);
      appliance = g_hash_table_lookup (self->by_name, info->name);
    }
  else
    dhf_appliance_update (appliance, info);
  xdm_track_domain (self, info);
  if (self->devices != NULL)
    dhf_daemon_devices_domain_changed (self->devices, info, appliance);
}

static void
on_domain_changed (DhfHypervisor *hypervisor, const DhfDomainInfo *info, DhfDaemon *self)
{
  apply_domain_info (self, info);
  if (self->xdm != NULL)
    dhf_xdm_router_domains_changed (self->xdm);
}

static void
on_domain_removed (DhfHypervisor *hypervisor, const gchar *uuid, DhfDaemon *self)
{
  DhfAppliance *appliance = g_hash_table_lookup (self->by_uuid, uuid);

  if (appliance != NULL)
    remove_appliance (self, appliance);
  if (self->xdm != NULL)
    dhf_xdm_router_domains_changed (self->xdm);
}

static void own_name (DhfDaemon *self);

/* After every (re)connect: the full list. Whatever changed while dhfd was
 * disconnected shows up as added or removed objects and StateChanged. */
static void
on_synced (DhfHypervisor *hypervisor, GPtrArray *infos, DhfDaemon *self)
{
  g_autoptr (GHashTable) seen = g_hash_table_new (g_str_hash, g_str_equal);
  g_autoptr (GPtrArray) gone = g_ptr_array_new ();
  GHashTableIter iter;
  gpointer key, value;

  self->xdm_cids_valid = TRUE;
  for (guint i = 0; i < infos->len; i++)
    {
      const DhfDomainInfo *info = g_ptr_array_index (infos, i);

      g_hash_table_add (seen, info->uuid);
      apply_domain_info (self, info);
    }
  g_hash_table_iter_init (&iter, self->by_uuid);
  while (g_hash_table_iter_next (&iter, &key, &value))
    {
      if (!g_hash_table_contains (seen, key))
        g_ptr_array_add (gone, value);
    }
  for (guint i = 0; i < gone->len; i++)
    remove_appliance (self, g_ptr_array_index (gone, i));
  if (self->devices != NULL)
    dhf_daemon_devices_synced (self->devices);
  if (self->xdm != NULL)
    dhf_xdm_router_domains_changed (self->xdm);
  own_name (self);
}

static void
on_hypervisor_connected (DhfHypervisor *hypervisor, GParamSpec *pspec, DhfDaemon *self)
{
  gboolean connected = dhf_hypervisor_is_connected (hypervisor);
  g_autofree gchar *why = NULL;

  dhf_dbus_manager_set_hypervisor_connected (self->manager, connected);
  if (!connected)
    why = g_strdup_printf ("hypervisor %s unreachable; reconnecting",
                           dhf_hypervisor_get_uri (hypervisor));
  set_status_reason (self, "hypervisor", why);
  /* No guest is let in over vsock until the next sync says again which
   * CID is whose. Connections made before stay: they were identified
   * while the CIDs were current. */
  if (!connected)
    {
      self->xdm_cids_valid = FALSE;
      if (self->xdm_vsock != NULL)
        dhf_xdm_vsock_clear (self->xdm_vsock);
    }
}

static void
on_connect_failed (DhfHypervisor *hypervisor, const gchar *message, DhfDaemon *self)
{
  g_autofree gchar *why = g_strdup_printf ("hypervisor %s unreachable (%s); reconnecting",
                                           dhf_hypervisor_get_uri (hypervisor), message);

  set_status_reason (self, "hypervisor", why);
  /* Serve anyway: clients see the degraded status instead of no daemon. */
  own_name (self);
}

/* --- policy ----------------------------------------------------------- */

/* What the policy knows of a domain: of dom0, whether it is focused; of
 * an appliance, its role, the tags and vendor its manifest declares
 * (foreign domains have neither) and whether it is focused (the device
 * engine's focus), so that @focused rules work for every subsystem. While
 * the engine plans a switch, "focused" is the domain it switches to: the
 * device rules on @focused are asked about the focus they will serve. */
static gboolean
lookup_policy_domain (const gchar *name, DhfPolicyDomain *domain, gpointer user_data)
{
  DhfDaemon *self = user_data;
  const gchar *focused
      = self->devices != NULL ? dhf_daemon_devices_get_planning_focus (self->devices) : "dom0";
  DhfAppliance *appliance;
  const DhfDomainMetadata *metadata;

  if (g_str_equal (name, "dom0"))
    {
      *domain = (DhfPolicyDomain){
        .name = "dom0",
        .is_dom0 = TRUE,
        .focused = g_str_equal (focused, "dom0"),
      };
      return TRUE;
    }
  appliance = g_hash_table_lookup (self->by_name, name);
  if (appliance == NULL)
    return FALSE;
  *domain = (DhfPolicyDomain){
    .name = dhf_dbus_appliance_get_name (DHF_DBUS_APPLIANCE (appliance)),
    .role = dhf_dbus_appliance_get_role (DHF_DBUS_APPLIANCE (appliance)),
    .focused = g_str_equal (focused, name),
  };
  metadata = dhf_appliance_get_metadata (appliance);
  if (metadata != NULL)
    {
      domain->vendor = dhf_manifest_get_vendor (metadata->manifest);
      domain->tags = dhf_manifest_get_tags (metadata->manifest);
    }
  return TRUE;
}

static void
on_policy_published (DhfPolicyService *policy, DhfDaemon *self)
{
  g_autofree gchar *why = dhf_policy_service_dup_status_reason (policy);

  set_status_reason (self, "policy", why);
  if (self->devices != NULL)
    dhf_daemon_devices_policy_changed (self->devices);
}

static gboolean
on_sighup (gpointer user_data)
{
  DhfDaemon *self = user_data;

  g_message ("policy: reloading on SIGHUP");
  dhf_policy_service_reload (self->policy);
  return G_SOURCE_CONTINUE;
}

static gboolean
start_policy (DhfDaemon *self, GError **error)
{
  g_autoptr (DhfPolicyStore) store = dhf_policy_store_new (
      (const gchar *const *) self->config->policy_dirs, self->config->policy_last_good);

  self->policy = dhf_policy_service_new (store, self->authority, lookup_policy_domain, self);
  g_signal_connect (self->policy, "published", G_CALLBACK (on_policy_published), self);
  /* Before the name is owned: the first client already sees the policy. */
  dhf_policy_service_start (self->policy);
  self->sighup_id = g_unix_signal_add (SIGHUP, on_sighup, self);
  if (!g_dbus_interface_skeleton_export (G_DBUS_INTERFACE_SKELETON (self->policy), self->connection,
                                         DHF_OBJECT_PATH, error))
    {
      g_prefix_error (error, "exporting the Policy: ");
      return FALSE;
    }
  return TRUE;
}

/* --- cross-domain messaging ------------------------------------------ */

/* The router's closed callback for a channel connection, passed on to the
 * channel transport once the count of connections is published. */
typedef struct
{
  DhfXdmClosedFunc closed;
  gpointer closed_data;
} ClosedRelay;

static void
xdm_update_connections (DhfDaemon *self)
{
  if (self->xdm_service != NULL)
    dhf_xdm_service_update_connections (self->xdm_service);
}

static void
on_xdm_closed (guint64 connection_id, const GError *error, gboolean established, gpointer user_data)
{
  xdm_update_connections (user_data);
}

static void
on_xdm_channel_closed (guint64 connection_id, const GError *error, gboolean established,
                       gpointer user_data)
{
  DhfDaemon *self = user_data;
  ClosedRelay *relay = g_hash_table_lookup (self->xdm_channel_closed, &connection_id);
  DhfXdmClosedFunc closed;
  gpointer closed_data;

  xdm_update_connections (self);
  if (relay == NULL)
    return;
  closed = relay->closed;
  closed_data = relay->closed_data;
  g_hash_table_remove (self->xdm_channel_closed, &connection_id);
  closed (connection_id, error, established, closed_data);
}

static void
xdm_accept (gint fd, const DhfXdmPeer *peer, gpointer user_data)
{
  DhfDaemon *self = user_data;
  g_autoptr (GError) error = NULL;

  const gchar *transport = dhf_xdm_transport_to_string (peer->transport);

  /* Over MaxClients is a flood's symptom: a line each would flood the
   * journal too. */
  if (dhf_xdm_router_add_connection (self->xdm, fd, peer, on_xdm_closed, self, &error) == 0)
    {
      if (g_error_matches (error, DHF_ERROR, DHF_ERROR_LIMIT_EXCEEDED))
        g_debug ("XDM: refused a %s connection from %s: %s", transport, peer->domain,
                 error->message);
      else
        g_message ("XDM: refused a %s connection from %s: %s", transport, peer->domain,
                   error->message);
    }
  xdm_update_connections (self);
}

static guint64
xdm_channel_add (gint fd, const DhfXdmPeer *peer, DhfXdmClosedFunc closed, gpointer closed_data,
                 gpointer user_data, GError **error)
{
  DhfDaemon *self = user_data;
  guint64 id
      = dhf_xdm_router_add_connection (self->xdm, fd, peer, on_xdm_channel_closed, self, error);

  if (id != 0)
    {
      ClosedRelay *relay = g_new0 (ClosedRelay, 1);

      relay->closed = closed;
      relay->closed_data = closed_data;
      g_hash_table_replace (self->xdm_channel_closed, g_memdup2 (&id, sizeof id), relay);
    }
  xdm_update_connections (self);
  return id;
}

static void
xdm_channel_close (guint64 connection_id, gpointer user_data)
{
  DhfDaemon *self = user_data;

  g_hash_table_remove (self->xdm_channel_closed, &connection_id);
  dhf_xdm_router_close_connection (self->xdm, connection_id);
  xdm_update_connections (self);
}

/* A libvirt domain called "dom0" would pass for the host in every policy
 * decision, and a name the wire format cannot carry cannot be a peer:
 * neither is connected. */
static gboolean
xdm_name_usable (const gchar *name)
{
  return dhf_xdm_domain_is_valid (name) && !g_str_equal (name, "dom0");
}

/* After every snapshot of a domain: connect to its channel while it runs,
 * know its vsock CID, and close what it had once it stops. */
static void
xdm_track_domain (DhfDaemon *self, const DhfDomainInfo *info)
{
  const gchar *path = info->active ? info->xdm_channel_path : NULL;
  guint32 cid = info->active && self->xdm_cids_valid ? info->vsock_cid : 0;

  if (self->xdm == NULL)
    return;
  /* The live XML could not be read this time (a transient libvirt
   * failure): the transports keep what they had rather than drop a
   * working connection. */
  if (info->active && !info->endpoints_known)
    return;
  if (!xdm_name_usable (info->name))
    {
      if (path != NULL || cid != 0)
        g_warning ("XDM: domain '%s' has an XDM endpoint, but its name cannot be an XDM "
                   "domain's (letters, digits, '_', '.', '-', not dom0); not connecting it",
                   info->name);
      return;
    }
  dhf_xdm_channel_update (self->xdm_channel, info->name, info->uuid, path);
  if (self->xdm_vsock != NULL)
    dhf_xdm_vsock_update (self->xdm_vsock, info->name, info->uuid, cid);
  if (!info->active)
    {
      dhf_xdm_router_close_domain (self->xdm, info->name);
      xdm_update_connections (self);
    }
}

static void
xdm_forget_domain (DhfDaemon *self, const gchar *name)
{
  if (self->xdm == NULL || !xdm_name_usable (name))
    return;
  dhf_xdm_channel_remove (self->xdm_channel, name);
  if (self->xdm_vsock != NULL)
    dhf_xdm_vsock_remove (self->xdm_vsock, name);
  dhf_xdm_router_close_domain (self->xdm, name);
  xdm_update_connections (self);
}

/* org.dhf.framework.ApplianceState, from dom0, on every state change. */
static void
xdm_publish_state (DhfDaemon *self, DhfDBusAppliance *iface)
{
  json_object *data;

  if (self->xdm == NULL)
    return;
  data = json_object_new_object ();
  json_object_object_add (data, "appliance",
                          json_object_new_string (dhf_dbus_appliance_get_name (iface)));
  json_object_object_add (data, "state",
                          json_object_new_string (dhf_dbus_appliance_get_state (iface)));
  json_object_object_add (data, "reason",
                          json_object_new_string (dhf_dbus_appliance_get_state_reason (iface)));
  dhf_xdm_router_publish (self->xdm, "org.dhf.framework.ApplianceState", data);
  json_object_put (data);
}

/* org.dhf.framework.ListAppliances: every appliance dhfd manages. */
static GPtrArray *
xdm_directory (gpointer user_data)
{
  DhfDaemon *self = user_data;
  GPtrArray *entries = g_ptr_array_new_with_free_func ((GDestroyNotify) dhf_xdm_domain_entry_free);
  GHashTableIter iter;
  gpointer value;

  g_hash_table_iter_init (&iter, self->by_name);
  while (g_hash_table_iter_next (&iter, NULL, &value))
    {
      DhfDBusAppliance *iface = DHF_DBUS_APPLIANCE (value);
      DhfXdmDomainEntry *entry;

      if (!xdm_name_usable (dhf_dbus_appliance_get_name (iface)))
        continue;
      entry = g_new0 (DhfXdmDomainEntry, 1);
      entry->name = g_strdup (dhf_dbus_appliance_get_name (iface));
      entry->role = dhf_dbus_appliance_get_managed (iface)
                        ? g_strdup (dhf_dbus_appliance_get_role (iface))
                        : NULL;
      entry->state = g_strdup (dhf_dbus_appliance_get_state (iface));
      g_ptr_array_add (entries, entry);
    }
  return entries;
}

static void
xdm_limits_from_config (const DhfConfig *config, DhfXdmLimits *limits)
{
  dhf_xdm_limits_init (limits);
  limits->max_calls_in_flight = config->xdm_max_calls_in_flight;
  limits->max_queued_bytes = config->xdm_max_queued_bytes;
  limits->max_connection_bytes = 4 * config->xdm_max_queued_bytes;
  limits->max_registrations = config->xdm_max_registrations;
  limits->max_subscriptions = config->xdm_max_subscriptions;
  limits->max_streams = config->xdm_max_streams;
  limits->max_dom0_clients = config->xdm_max_clients;
  limits->max_domain_connections = config->xdm_max_connections_per_domain;
  limits->max_pending_asks = config->xdm_max_pending_questions;
  limits->ask_timeout_ms = config->xdm_ask_timeout_s * 1000;
}

/* Host-wide endpoints (the default socket path, the vsock port) are only
 * taken by default by the system's dhfd: one on a private bus (tests,
 * demos) must not grab them from it. */
static gboolean
start_xdm (DhfDaemon *self, GError **error)
{
  static const DhfXdmChannelSink channel_sink = {
    .add_connection = xdm_channel_add,
    .close_connection = xdm_channel_close,
  };
  DhfConfig *config = self->config;
  gboolean system = serves_system_bus (self);
  const gchar *socket_path = config->xdm_socket;
  guint32 vsock_port = config->xdm_vsock_port;
  DhfXdmLimits limits;

  if (socket_path == NULL && system)
    socket_path = DHF_XDM_DEFAULT_SOCKET;
  if (!config->xdm_vsock_port_set && !system)
    vsock_port = 0;

  xdm_limits_from_config (config, &limits);
  self->xdm = dhf_xdm_router_new (self->policy, &limits, lookup_policy_domain, self);
  dhf_xdm_router_set_directory (self->xdm, xdm_directory, self);
  self->xdm_channel = dhf_xdm_channel_new (&channel_sink, self);

  if (socket_path != NULL)
    {
      DhfXdmUnixOptions options = {
        .path = socket_path,
        .mode = config->xdm_socket_mode,
        .group = config->xdm_socket_group,
        .replace = self->replace,
      };

      self->xdm_unix = dhf_xdm_unix_new (&options, xdm_accept, self, error);
      if (self->xdm_unix == NULL)
        return FALSE;
    }
  else
    {
      g_message ("XDM: no dom0 socket (not on the system bus; set [XDM] Socket or "
                 "--xdm-socket for one)");
    }
  if (vsock_port != 0)
    {
      g_autoptr (GError) vsock_error = NULL;

      self->xdm_vsock = dhf_xdm_vsock_new (NULL, vsock_port, xdm_accept, self, &vsock_error);
      /* Not fatal: appliances still have their channel. */
      if (self->xdm_vsock == NULL
          && g_error_matches (vsock_error, DHF_ERROR, DHF_ERROR_NOT_SUPPORTED))
        g_message ("%s; this host has no vsock, dhfd goes on without it", vsock_error->message);
      else if (self->xdm_vsock == NULL)
        g_warning ("%s; dhfd goes on without vsock", vsock_error->message);
    }

  self->xdm_service
      = dhf_xdm_service_new (self->authority, self->xdm, socket_path, limits.ask_timeout_ms);
  if (!g_dbus_interface_skeleton_export (G_DBUS_INTERFACE_SKELETON (self->xdm_service),
                                         self->connection, DHF_OBJECT_PATH, error))
    {
      g_prefix_error (error, "exporting Xdm: ");
      return FALSE;
    }
  dhf_xdm_router_set_asker (self->xdm, dhf_xdm_service_ask, self->xdm_service);
  return TRUE;
}

static void
stop_xdm (DhfDaemon *self)
{
  /* Transports first (the channel closes its connections without being
   * told back), then the router, which closes the rest. */
  g_clear_object (&self->xdm_unix);
  g_clear_object (&self->xdm_vsock);
  g_clear_object (&self->xdm_channel);
  if (self->xdm != NULL)
    dhf_xdm_router_set_asker (self->xdm, NULL, NULL);
  if (self->xdm_service != NULL)
    g_dbus_interface_skeleton_unexport (G_DBUS_INTERFACE_SKELETON (self->xdm_service));
  g_clear_object (&self->xdm_service);
  g_clear_object (&self->xdm);
  g_clear_pointer (&self->xdm_channel_closed, g_hash_table_unref);
}

/* --- devices and the display ------------------------------------------- */

static void
on_devices_status (const gchar *text, gpointer user_data)
{
  set_status_reason (user_data, "devices", text);
}

static gboolean
start_devices (DhfDaemon *self, GError **error)
{
  DhfDaemonDevicesSetup setup = {
    .config = self->config,
    .connection = self->connection,
    .authority = self->authority,
    .hypervisor = self->hypervisor,
    .policy = self->policy,
    .lookup = lookup_policy_domain,
    .lookup_data = self,
    .xdm = self->xdm,
    .xdm_service = self->xdm_service,
    .status = on_devices_status,
    .status_data = self,
  };

  self->devices = dhf_daemon_devices_new (&setup, error);
  return self->devices != NULL;
}

/* --- Manager methods -------------------------------------------------- */

typedef struct
{
  DhfDaemon *self;
  GDBusMethodInvocation *invocation;
  DhfManifest *manifest;
  gboolean allow_downgrade;
  gboolean force;
  gboolean keep_storage;
  gchar *name;
  gchar *uuid;
  gboolean upgraded;
} ManagerCall;

static void
manager_call_free (ManagerCall *call)
{
  g_clear_object (&call->self);
  g_clear_object (&call->invocation);
  g_clear_pointer (&call->manifest, dhf_manifest_unref);
  g_free (call->name);
  g_free (call->uuid);
  g_free (call);
}

G_DEFINE_AUTOPTR_CLEANUP_FUNC (ManagerCall, manager_call_free)

static ManagerCall *
manager_call_new (DhfDaemon *self, GDBusMethodInvocation *invocation)
{
  ManagerCall *call = g_new0 (ManagerCall, 1);

  call->self = g_object_ref (self);
  call->invocation = invocation; /* the handler owns the invocation until it completes it */
  return call;
}

static void
manager_call_fail (ManagerCall *call, const GError *error)
{
  g_dbus_method_invocation_return_gerror (g_steal_pointer (&call->invocation), error);
}

/* Checks a{sv} options against a typed allow-list; anything else is an
 * error, so a misspelt option never silently does nothing. */
static GVariantDict *
parse_options (GVariant *options, const gchar *const *names, const gchar *const *types,
               GError **error)
{
  GVariantIter iter;
  const gchar *key;
  GVariant *value;

  g_variant_iter_init (&iter, options);
  while (g_variant_iter_loop (&iter, "{&sv}", &key, &value))
    {
      guint i;

      for (i = 0; names[i] != NULL && !g_str_equal (names[i], key); i++)
        ;
      if (names[i] == NULL)
        {
          g_set_error (error, DHF_ERROR, DHF_ERROR_INVALID_ARGS, "unknown option '%s'", key);
          g_variant_unref (value); /* g_variant_iter_loop frees it only when it runs on */
          return NULL;
        }
      if (!g_variant_is_of_type (value, G_VARIANT_TYPE (types[i])))
        {
          g_set_error (error, DHF_ERROR, DHF_ERROR_INVALID_ARGS,
                       "option '%s' must be of type '%s', not '%s'", key, types[i],
                       g_variant_get_type_string (value));
          g_variant_unref (value);
          return NULL;
        }
    }
  return g_variant_dict_new (options);
}

static void
on_installed (GObject *source, GAsyncResult *result, gpointer user_data)
{
  g_autoptr (ManagerCall) call = user_data;
  g_autoptr (GError) error = NULL;
  DhfAppliance *appliance;

  /* The installer answers once the appliance's object is on the bus, so the
   * returned path resolves. */
  call->uuid
      = dhf_installer_install_finish (DHF_INSTALLER (source), result, &call->upgraded, &error);
  if (call->uuid == NULL)
    {
      manager_call_fail (call, error);
      return;
    }
  appliance = g_hash_table_lookup (call->self->by_uuid, call->uuid);
  if (appliance == NULL)
    {
      g_set_error (&error, DHF_ERROR, DHF_ERROR_FAILED,
                   "the appliance was defined (UUID %s) but could not be read back", call->uuid);
      manager_call_fail (call, error);
      return;
    }
  dhf_dbus_manager_complete_install (call->self->manager, g_steal_pointer (&call->invocation),
                                     dhf_appliance_get_object_path (appliance), call->upgraded);
}

static void
on_install_authorized (GObject *source, GAsyncResult *result, gpointer user_data)
{
  g_autoptr (ManagerCall) call = user_data;
  g_autoptr (GError) error = NULL;
  DhfAppliance *installed;
  ManagerCall *owned;

  if (!dhf_authority_check_finish (DHF_AUTHORITY (source), result, &error))
    {
      manager_call_fail (call, error);
      return;
    }
  installed = g_hash_table_lookup (call->self->by_name, dhf_manifest_get_name (call->manifest));
  owned = g_steal_pointer (&call);
  dhf_installer_install_async (owned->self->installer, owned->manifest, installed,
                               owned->allow_downgrade, on_installed, owned);
}

static gboolean
handle_install (DhfDBusManager *manager, GDBusMethodInvocation *invocation,
                const gchar *manifest_text, GVariant *options, DhfDaemon *self)
{
  static const gchar *const names[] = { "base-directory", "allow-downgrade", NULL };
  static const gchar *const types[] = { "s", "b" };
  g_autoptr (ManagerCall) call = manager_call_new (self, invocation);
  g_autoptr (GError) error = NULL;
  g_autoptr (GVariantDict) dict = parse_options (options, names, types, &error);
  const gchar *base_dir = NULL;

  if (dict == NULL)
    {
      manager_call_fail (call, error);
      return G_DBUS_METHOD_INVOCATION_HANDLED;
    }
  if (g_variant_dict_lookup (dict, "base-directory", "&s", &base_dir))
    {
      if (!g_path_is_absolute (base_dir))
        {
          g_set_error (&error, DHF_ERROR, DHF_ERROR_INVALID_ARGS,
                       "option 'base-directory' must be an absolute path, not '%s'", base_dir);
          manager_call_fail (call, error);
          return G_DBUS_METHOD_INVOCATION_HANDLED;
        }
    }
  g_variant_dict_lookup (dict, "allow-downgrade", "b", &call->allow_downgrade);
  /* Parsing is cheap and bounded (DHF_MANIFEST_MAX_SIZE), so it runs here;
   * an invalid manifest fails before anything is authorized or touched. */
  call->manifest = dhf_manifest_parse (manifest_text, -1, base_dir, &error);
  if (call->manifest == NULL)
    {
      manager_call_fail (call, error);
      return G_DBUS_METHOD_INVOCATION_HANDLED;
    }
  dhf_authority_check_async (self->authority, invocation, DHF_ACTION_INSTALL, NULL,
                             on_install_authorized, g_steal_pointer (&call));
  return G_DBUS_METHOD_INVOCATION_HANDLED;
}

static void
on_removed (GObject *source, GAsyncResult *result, gpointer user_data)
{
  g_autoptr (ManagerCall) call = user_data;
  g_autoptr (GError) error = NULL;
  DhfAppliance *appliance;

  if (!dhf_installer_remove_finish (DHF_INSTALLER (source), result, &error))
    {
      manager_call_fail (call, error);
      return;
    }
  /* Drop the object now rather than waiting for the event, so the name is
   * free for a reinstall as soon as the caller hears back. */
  appliance = g_hash_table_lookup (call->self->by_uuid, call->uuid);
  if (appliance != NULL)
    remove_appliance (call->self, appliance);
  dhf_dbus_manager_complete_remove (call->self->manager, g_steal_pointer (&call->invocation));
}

static void
on_remove_authorized (GObject *source, GAsyncResult *result, gpointer user_data)
{
  g_autoptr (ManagerCall) call = user_data;
  g_autoptr (GError) error = NULL;
  DhfAppliance *appliance;
  ManagerCall *owned;

  if (!dhf_authority_check_finish (DHF_AUTHORITY (source), result, &error))
    {
      manager_call_fail (call, error);
      return;
    }
  appliance = g_hash_table_lookup (call->self->by_name, call->name);
  if (appliance == NULL)
    {
      g_set_error (&error, DHF_ERROR, DHF_ERROR_NOT_FOUND, "no appliance named '%s'", call->name);
      manager_call_fail (call, error);
      return;
    }
  call->uuid = g_strdup (dhf_appliance_get_uuid (appliance));
  owned = g_steal_pointer (&call);
  dhf_installer_remove_async (owned->self->installer, appliance, owned->force, owned->keep_storage,
                              on_removed, owned);
}

static gboolean
handle_remove (DhfDBusManager *manager, GDBusMethodInvocation *invocation, const gchar *name,
               GVariant *options, DhfDaemon *self)
{
  static const gchar *const names[] = { "force", "keep-storage", NULL };
  static const gchar *const types[] = { "b", "b" };
  g_autoptr (ManagerCall) call = manager_call_new (self, invocation);
  g_autoptr (GError) error = NULL;
  g_autoptr (GVariantDict) dict = parse_options (options, names, types, &error);

  if (dict == NULL)
    {
      manager_call_fail (call, error);
      return G_DBUS_METHOD_INVOCATION_HANDLED;
    }
  call->name = g_strdup (name);
  g_variant_dict_lookup (dict, "force", "b", &call->force);
  g_variant_dict_lookup (dict, "keep-storage", "b", &call->keep_storage);
  dhf_authority_check_async (self->authority, invocation, DHF_ACTION_REMOVE, NULL,
                             on_remove_authorized, g_steal_pointer (&call));
  return G_DBUS_METHOD_INVOCATION_HANDLED;
}

/* --- bus name --------------------------------------------------------- */

static void
on_name_acquired (GDBusConnection *connection, const gchar *name, gpointer user_data)
{
  DhfDaemon *self = user_data;

  self->name_acquired = TRUE;
  g_message ("serving %s (%u appliances)", name, g_hash_table_size (self->by_uuid));
}

static void
on_name_lost (GDBusConnection *connection, const gchar *name, gpointer user_data)
{
  DhfDaemon *self = user_data;

  /* Losing the bus itself is handled (and reported) by on_bus_closed. */
  if (connection == NULL || g_dbus_connection_is_closed (connection))
    return;
  if (self->name_acquired)
    {
      g_message ("%s was taken over by another dhfd; exiting", name);
      stop (self, DHF_EXIT_OK);
      return;
    }
  g_printerr ("dhfd: cannot own %s: %s\n", name,
              connection == NULL ? "no bus connection"
                                 : "another dhfd owns it (use --replace) or the bus policy "
                                   "forbids it");
  stop (self, DHF_EXIT_STARTUP_FAILED);
}

static void
own_name (DhfDaemon *self)
{
  GBusNameOwnerFlags flags = G_BUS_NAME_OWNER_FLAGS_ALLOW_REPLACEMENT;

  g_clear_handle_id (&self->own_timeout_id, g_source_remove);
  if (self->owner_id != 0)
    return;
  if (self->replace)
    flags |= G_BUS_NAME_OWNER_FLAGS_REPLACE;
  self->owner_id = g_bus_own_name_on_connection (self->connection, DHF_BUS_NAME, flags,
                                                 on_name_acquired, on_name_lost, self, NULL);
}

static void
on_bus_closed (GDBusConnection *connection, gboolean remote_peer_vanished, GError *error,
               gpointer user_data)
{
  DhfDaemon *self = user_data;

  g_warning ("lost the D-Bus connection: %s", error != NULL ? error->message : "closed");
  stop (self, DHF_EXIT_BUS_LOST);
}

static GDBusConnection *
connect_bus (DhfDaemon *self, GError **error)
{
  switch (self->bus_kind)
    {
      case DHF_BUS_SYSTEM:
        return g_bus_get_sync (G_BUS_TYPE_SYSTEM, NULL, error);
      case DHF_BUS_SESSION:
        return g_bus_get_sync (G_BUS_TYPE_SESSION, NULL, error);
      case DHF_BUS_ADDRESS:
        return g_dbus_connection_new_for_address_sync (
            self->address,
            G_DBUS_CONNECTION_FLAGS_AUTHENTICATION_CLIENT
                | G_DBUS_CONNECTION_FLAGS_MESSAGE_BUS_CONNECTION,
            NULL, NULL, error);
    }
  g_assert_not_reached ();
}

/* polkit looks callers up by unique name on the system bus, so it can only
 * vouch for callers on that bus (--address may name it too). */
static gboolean
serves_system_bus (DhfDaemon *self)
{
  g_autofree gchar *system = NULL;

  if (self->bus_kind == DHF_BUS_SYSTEM)
    return TRUE;
  if (self->bus_kind != DHF_BUS_ADDRESS)
    return FALSE;
  system = g_dbus_address_get_for_bus_sync (G_BUS_TYPE_SYSTEM, NULL, NULL);
  return g_strcmp0 (system, self->address) == 0;
}

static gboolean
on_first_connect_slow (gpointer user_data)
{
  DhfDaemon *self = user_data;

  self->own_timeout_id = 0;
  g_warning ("the hypervisor has not answered in %u s; serving without it meanwhile",
             OWN_NAME_DEADLINE_S);
  set_status_reason (self, "hypervisor", "hypervisor not answering yet; still connecting");
  own_name (self);
  return G_SOURCE_REMOVE;
}

gboolean
dhf_daemon_start (DhfDaemon *self, GError **error)
{
  DhfAuthMode mode = self->config->auth_mode;

  self->connection = connect_bus (self, error);
  if (self->connection == NULL)
    {
      g_prefix_error (error, "connecting to the bus: ");
      return FALSE;
    }
  g_dbus_connection_set_exit_on_close (self->connection, FALSE);
  g_signal_connect (self->connection, "closed", G_CALLBACK (on_bus_closed), self);

  if (mode == DHF_AUTH_MODE_AUTO)
    mode = self->bus_kind == DHF_BUS_SYSTEM ? DHF_AUTH_MODE_POLKIT : DHF_AUTH_MODE_PEER_UID;
  if (mode == DHF_AUTH_MODE_POLKIT && !serves_system_bus (self))
    {
      g_set_error (error, DHF_ERROR, DHF_ERROR_INVALID_ARGS,
                   "[Authorization] Mode=polkit needs dhfd on the system bus: polkit identifies "
                   "callers by their name there");
      return FALSE;
    }
  self->authority = dhf_authority_new (mode, self->connection);
  self->hypervisor = dhf_hypervisor_new (self->config->hypervisor_uri);
  self->installer = dhf_installer_new (self->hypervisor, self->config);

  self->manager = dhf_dbus_manager_skeleton_new ();
  dhf_dbus_manager_set_version (self->manager, DHF_VERSION);
  dhf_dbus_manager_set_hypervisor (self->manager, self->config->hypervisor_uri);
  dhf_dbus_manager_set_hypervisor_connected (self->manager, FALSE);
  publish_status (self);
  g_signal_connect (self->manager, "handle-install", G_CALLBACK (handle_install), self);
  g_signal_connect (self->manager, "handle-remove", G_CALLBACK (handle_remove), self);
  if (!g_dbus_interface_skeleton_export (G_DBUS_INTERFACE_SKELETON (self->manager),
                                         self->connection, DHF_OBJECT_PATH, error))
    {
      g_prefix_error (error, "exporting the Manager: ");
      return FALSE;
    }
  if (!start_policy (self, error))
    return FALSE;
  if (!start_xdm (self, error))
    return FALSE;
  if (!start_devices (self, error))
    return FALSE;
  self->object_manager = g_dbus_object_manager_server_new (DHF_OBJECT_PATH);
  g_dbus_object_manager_server_set_connection (self->object_manager, self->connection);

  g_signal_connect (self->hypervisor, "synced", G_CALLBACK (on_synced), self);
  g_signal_connect (self->hypervisor, "domain-changed", G_CALLBACK (on_domain_changed), self);
  g_signal_connect (self->hypervisor, "domain-removed", G_CALLBACK (on_domain_removed), self);
  g_signal_connect (self->hypervisor, "connect-failed", G_CALLBACK (on_connect_failed), self);
  g_signal_connect (self->hypervisor, "notify::connected", G_CALLBACK (on_hypervisor_connected),
                    self);
  /* The name is owned after the first sync (or the first failure), so the
   * first client already sees every appliance; but a hypervisor that hangs
   * must not keep dhfd off the bus. */
  dhf_hypervisor_start (self->hypervisor);
  self->own_timeout_id = g_timeout_add_seconds (OWN_NAME_DEADLINE_S, on_first_connect_slow, self);
  return TRUE;
}

/* --- GObject ---------------------------------------------------------- */

DhfDaemon *
dhf_daemon_new (DhfConfig *config, DhfBusKind bus_kind, const gchar *address, gboolean replace)
{
  DhfDaemon *self = g_object_new (DHF_TYPE_DAEMON, NULL);

  self->config = config;
  self->bus_kind = bus_kind;
  self->address = g_strdup (address);
  self->replace = replace;
  return self;
}

static void
dhf_daemon_init (DhfDaemon *self)
{
  self->by_uuid = g_hash_table_new_full (g_str_hash, g_str_equal, g_free, g_object_unref);
  self->by_name = g_hash_table_new_full (g_str_hash, g_str_equal, g_free, NULL);
  self->status_reasons = g_hash_table_new_full (g_str_hash, g_str_equal, g_free, g_free);
  self->xdm_channel_closed = g_hash_table_new_full (g_int64_hash, g_int64_equal, g_free, g_free);
}

static void
dhf_daemon_dispose (GObject *object)
{
  DhfDaemon *self = DHF_DAEMON (object);

  g_clear_handle_id (&self->owner_id, g_bus_unown_name);
  g_clear_handle_id (&self->own_timeout_id, g_source_remove);
  g_clear_handle_id (&self->sighup_id, g_source_remove);
  if (self->hypervisor != NULL)
    g_signal_handlers_disconnect_by_data (self->hypervisor, self);
  if (self->connection != NULL)
    g_signal_handlers_disconnect_by_data (self->connection, self);
  /* Before the router and the appliances: it asks the one and describes
   * the others; and its engine stops before the hypervisor goes (it runs
   * operations on it from a thread of its own). */
  if (self->devices != NULL)
    dhf_daemon_devices_shutdown (self->devices);
  g_clear_object (&self->devices);
  /* Before the appliances: the router asks about them until it is gone. */
  stop_xdm (self);
  if (self->by_uuid != NULL)
    {
      GHashTableIter iter;
      gpointer value;

      g_hash_table_iter_init (&iter, self->by_uuid);
      while (g_hash_table_iter_next (&iter, NULL, &value))
        g_signal_handlers_disconnect_by_data (value, self);
    }
  g_clear_pointer (&self->by_name, g_hash_table_unref);
  g_clear_pointer (&self->by_uuid, g_hash_table_unref);
  g_clear_object (&self->object_manager);
  if (self->manager != NULL)
    g_dbus_interface_skeleton_unexport (G_DBUS_INTERFACE_SKELETON (self->manager));
  g_clear_object (&self->manager);
  if (self->policy != NULL)
    {
      g_signal_handlers_disconnect_by_data (self->policy, self);
      g_dbus_interface_skeleton_unexport (G_DBUS_INTERFACE_SKELETON (self->policy));
    }
  g_clear_object (&self->policy);
  g_clear_object (&self->installer);
  g_clear_object (&self->hypervisor);
  g_clear_object (&self->authority);
  if (self->connection != NULL)
    g_dbus_connection_flush_sync (self->connection, NULL, NULL);
  g_clear_object (&self->connection);
  G_OBJECT_CLASS (dhf_daemon_parent_class)->dispose (object);
}

static void
dhf_daemon_finalize (GObject *object)
{
  DhfDaemon *self = DHF_DAEMON (object);

  g_clear_pointer (&self->status_reasons, g_hash_table_unref);
  g_clear_pointer (&self->config, dhf_config_free);
  g_free (self->address);
  G_OBJECT_CLASS (dhf_daemon_parent_class)->finalize (object);
}

static void
dhf_daemon_class_init (DhfDaemonClass *klass)
{
  GObjectClass *object_class = G_OBJECT_CLASS (klass);

  object_class->dispose = dhf_daemon_dispose;
  object_class->finalize = dhf_daemon_finalize;

  /* stopped: dhfd should exit (see dhf_daemon_get_exit_status()) */
  signals[SIGNAL_STOPPED] = g_signal_new ("stopped", G_TYPE_FROM_CLASS (klass), G_SIGNAL_RUN_LAST,
                                          0, NULL, NULL, NULL, G_TYPE_NONE, 0);
}
