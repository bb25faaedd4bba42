/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <unistd.h>

#include <glib/gstdio.h>

#include <dhf/dhf.h>

#include "dhf-daemon-devices.h"
#include "dhf-device-engine.h"
#include "dhf-device-inventory.h"
#include "dhf-devices-service.h"
#include "dhf-display-service.h"
#include "dhf-hotkey.h"
#include "dhf-hypervisor-devices.h"
#include "dhf-manifest.h"

struct _DhfDaemonDevices
{
  GObject parent_instance;

  DhfPolicyService *policy;
  DhfPolicyDomainLookup lookup;
  gpointer lookup_data;
  DhfXdmRouter *xdm;
  DhfXdmService *xdm_service;
  DhfDaemonDevicesStatusFunc status;
  gpointer status_data;
  gchar *state_file;
  gchar *load_failure; /* the status while the state file could not be read */

  GHashTable *active; /* domain name -> whether it is active (for the display) */

  DhfDeviceEngine *engine;
  DhfDevicesService *devices_service;
  DhfDisplayService *display_service;

  gchar **emulated_inputs;
  DhfDeviceMonitor *monitor;

  DhfHotkeys *hotkeys; /* NULL without [Hotkeys] Keyboards */
  gchar *slot_modifiers;

  guint64 policy_generation; /* of the policy the verdicts and hotkeys follow */
};

G_DEFINE_TYPE (DhfDaemonDevices, dhf_daemon_devices, G_TYPE_OBJECT)

/* A libvirt domain called "dom0" would pass for the host in every policy
 * decision and every switch: the engine never hears of it. */
static gboolean
name_usable (const gchar *name)
{
  return !g_str_equal (name, "dom0");
}

/* --- the policy -------------------------------------------------------------- */

/* What the policy knows of a domain: dom0 is the host; other names as the
 * daemon describes them, a plain name when it knows none. */
static void
describe (DhfDaemonDevices *self, const gchar *name, DhfPolicyDomain *domain)
{
  memset (domain, 0, sizeof *domain);
  if (!self->lookup (name, domain, self->lookup_data))
    memset (domain, 0, sizeof *domain);
  domain->name = name;
  domain->is_dom0 = g_str_equal (name, "dom0");
}

/* The engine's DhfEngineDecideFunc. A switch is a request someone made:
 * decided, and audited when denied. Device queries are the engine's own
 * questions, asked for every device and every domain whenever anything
 * changes: auditing their denies would fill the audit log's budget (and
 * crowd out the denies that matter) with answers nobody asked for, so
 * they are evaluated like Policy.Test. */
static void
decide (DhfPolicyKind kind, const gchar *subject, const gchar *source, const gchar *target,
        DhfEngineVerdict *verdict, gpointer user_data)
{
  DhfDaemonDevices *self = user_data;
  DhfPolicyDomain src, dst;
  DhfPolicyQuery query = { 0 };
  DhfPolicyDecision decision = { 0 };
  g_autoptr (DhfPolicy) policy = NULL;
  const DhfPolicyRule *rule;

  describe (self, source, &src);
  describe (self, target, &dst);
  query.kind = kind;
  query.subject = kind == DHF_POLICY_KIND_SWITCH ? NULL : subject;
  query.source = &src;
  query.target = &dst;
  if (kind == DHF_POLICY_KIND_SWITCH)
    policy = dhf_policy_service_decide (self->policy, &query, &decision);
  else
    {
      policy = dhf_policy_store_get (dhf_policy_service_get_store (self->policy));
      dhf_policy_evaluate (policy, &query, &decision);
    }
  rule = decision.rule;
  verdict->action = decision.action;
  verdict->mode = rule != NULL ? g_strdup (dhf_policy_rule_get_option (rule, "mode")) : NULL;
  verdict->target_named = rule != NULL && dhf_policy_rule_target_is_name (rule);
  verdict->rule = rule != NULL ? g_strdup_printf ("%s:%u", dhf_policy_rule_get_file (rule),
                                                  dhf_policy_rule_get_line (rule))
                               : NULL;
}

/* The engine's DhfEngineAskFunc: a switch an "ask" rule decides is put to
 * the prompt agents like an XDM call, as service "switch". */
static void
ask (const gchar *source, const gchar *target, const gchar *rule, GCancellable *cancellable,
     DhfEngineAskDone done, gpointer done_data, gpointer user_data)
{
  DhfXdmService *xdm_service = user_data;
  DhfXdmQuestion question = {
    .service = "switch",
    .argument = NULL,
    .source = source,
    .target = target,
    .rule = rule,
    .stream = FALSE,
  };

  dhf_xdm_service_ask (&question, cancellable, done, done_data, xdm_service);
}

/* --- the domains ---------------------------------------------------------------- */

void
dhf_daemon_devices_domain_changed (DhfDaemonDevices *self, const DhfDomainInfo *info,
                                   DhfAppliance *appliance)
{
  const DhfDomainMetadata *metadata = dhf_appliance_get_metadata (appliance);
  DhfEngineDomain domain = { 0 };

  g_return_if_fail (DHF_IS_DAEMON_DEVICES (self));
  if (!name_usable (info->name))
    return;
  domain.name = info->name;
  domain.active = info->active;
  domain.running = info->state == DHF_APPLIANCE_STATE_RUNNING;
  /* Foreign domains (no dhf metadata) count as environments, as in the
   * policy's @role:environment. */
  domain.environment
      = metadata == NULL
        || dhf_manifest_get_role (metadata->manifest) == DHF_APPLIANCE_ROLE_ENVIRONMENT;
  domain.wishes = metadata != NULL ? dhf_manifest_get_devices (metadata->manifest) : NULL;
  g_hash_table_replace (self->active, g_strdup (info->name), GINT_TO_POINTER (info->active));
  dhf_device_engine_domain_changed (self->engine, &domain);
  dhf_display_service_update (self->display_service);
}

void
dhf_daemon_devices_domain_removed (DhfDaemonDevices *self, const gchar *name)
{
  g_return_if_fail (DHF_IS_DAEMON_DEVICES (self));
  if (!name_usable (name))
    return;
  g_hash_table_remove (self->active, name);
  dhf_device_engine_domain_removed (self->engine, name);
  dhf_display_service_update (self->display_service);
}

void
dhf_daemon_devices_synced (DhfDaemonDevices *self)
{
  g_return_if_fail (DHF_IS_DAEMON_DEVICES (self));
  dhf_device_engine_synced (self->engine);
  dhf_display_service_update (self->display_service);
}

const gchar *
dhf_daemon_devices_get_focused (DhfDaemonDevices *self)
{
  g_return_val_if_fail (DHF_IS_DAEMON_DEVICES (self), "dom0");
  return dhf_device_engine_get_focused (self->engine);
}

const gchar *
dhf_daemon_devices_get_planning_focus (DhfDaemonDevices *self)
{
  g_return_val_if_fail (DHF_IS_DAEMON_DEVICES (self), "dom0");
  return dhf_device_engine_get_planning_focus (self->engine);
}

/* --- the state file -------------------------------------------------------- */

/* The engine writes its state file on a thread of its own and only logs
 * a failure. Whether the focus survives a restart is the Manager's
 * status, so dhfd tries what each write needs when it starts and after
 * every focus change: a new file in the directory (to be renamed over the
 * old one), or, while the directory does not exist yet (the first write
 * creates it), write access to the nearest directory that does. */
static gboolean
probe_state_dir (const gchar *path, GError **error)
{
  g_autofree gchar *own = g_path_get_dirname (path);
  g_autofree gchar *dir = g_strdup (own);
  g_autofree gchar *probe = NULL;
  gint fd;

  while (!g_file_test (dir, G_FILE_TEST_EXISTS))
    {
      gchar *parent = g_path_get_dirname (dir);

      g_free (dir);
      dir = parent;
    }
  if (!g_file_test (dir, G_FILE_TEST_IS_DIR))
    {
      g_set_error (error, G_FILE_ERROR, G_FILE_ERROR_NOTDIR, "%s is not a directory", dir);
      return FALSE;
    }
  if (!g_str_equal (dir, own))
    {
      if (g_access (dir, W_OK | X_OK) != 0)
        {
          gint saved = errno;

          g_set_error (error, G_FILE_ERROR, g_file_error_from_errno (saved),
                       "%s cannot be created in %s: %s", own, dir, g_strerror (saved));
          return FALSE;
        }
      return TRUE;
    }
  probe = g_build_filename (dir, ".dhfd-probe-XXXXXX", NULL);
  fd = g_mkstemp_full (probe, O_RDWR | O_CLOEXEC, 0600);
  if (fd < 0)
    {
      gint saved = errno;

      g_set_error (error, G_FILE_ERROR, g_file_error_from_errno (saved),
                   "creating a file in %s: %s", dir, g_strerror (saved));
      return FALSE;
    }
  close (fd);
  g_unlink (probe);
  return TRUE;
}

static void
check_state_file (DhfDaemonDevices *self)
{
  g_autoptr (GError) error = NULL;
  g_autofree gchar *why = NULL;

  if (self->status == NULL)
    return;
  if (!probe_state_dir (self->state_file, &error))
    {
      why = g_strdup_printf ("devices: the focus (%s) cannot be saved to %s (%s); it will not "
                             "survive a restart of dhfd",
                             dhf_device_engine_get_focused (self->engine), self->state_file,
                             error->message);
      self->status (why, self->status_data);
      return;
    }
  self->status (self->load_failure, self->status_data);
}

static void
on_focus_changed (DhfDeviceEngine *engine, const gchar *focused, const gchar *previous,
                  DhfDaemonDevices *self)
{
  /* Once the state is written anew, what could not be read is past. */
  g_clear_pointer (&self->load_failure, g_free);
  check_state_file (self);
}

/* The display service's DhfDisplayLookup. */
static gboolean
lookup_display (const gchar *name, gboolean *active, gpointer user_data)
{
  DhfDaemonDevices *self = user_data;
  gpointer value;

  if (!g_hash_table_lookup_extended (self->active, name, NULL, &value))
    return FALSE;
  *active = GPOINTER_TO_INT (value);
  return TRUE;
}

/* --- the host's devices ---------------------------------------------------- */

/* On the main loop: sysfs attributes are kernel memory, read without
 * waiting on any device, and a scan is a few hundred small reads. */
static void
scan_inventory (DhfDaemonDevices *self)
{
  g_autoptr (GError) error = NULL;
  g_autoptr (GPtrArray) devices = dhf_device_inventory_scan (
      dhf_device_inventory_default_root (), (const gchar *const *) self->emulated_inputs, &error);

  if (devices == NULL)
    {
      g_warning ("devices: scanning %s failed: %s; the known devices stay as they were",
                 dhf_device_inventory_default_root (), error->message);
      return;
    }
  g_debug ("devices: %u devices found", devices->len);
  dhf_device_engine_set_inventory (self->engine, devices);
}

static void
on_monitor_changed (DhfDeviceMonitor *monitor, DhfDaemonDevices *self)
{
  scan_inventory (self);
}

/* --- hotkeys ------------------------------------------------------------- */

static void
on_hotkey_switched (GObject *source, GAsyncResult *result, gpointer user_data)
{
  g_autofree gchar *target = user_data;
  g_autoptr (GError) error = NULL;
  g_autofree gchar *focused
      = dhf_device_engine_switch_finish (DHF_DEVICE_ENGINE (source), result, &error);

  if (focused == NULL)
    g_message ("hotkeys: the switch to %s failed: %s", target, error->message);
  else
    g_debug ("hotkeys: %s is focused", focused);
}

/* "@slot:N": the Nth environment of the Next/Previous order, now. */
static gchar *
resolve_target (DhfDaemonDevices *self, const gchar *target)
{
  g_auto (GStrv) cycle = NULL;
  guint64 n = 0;

  if (!g_str_has_prefix (target, "@slot:"))
    return g_strdup (target);
  cycle = dhf_device_engine_dup_cycle (self->engine);
  if (!g_ascii_string_to_unsigned (target + strlen ("@slot:"), 10, 1, 9, &n, NULL))
    {
      g_warning ("hotkeys: unknown target %s", target);
      return NULL;
    }
  if (n > g_strv_length (cycle))
    {
      g_message ("hotkeys: no environment %" G_GUINT64_FORMAT " to switch to (%u in the cycle)", n,
                 g_strv_length (cycle));
      return NULL;
    }
  return g_strdup (cycle[n - 1]);
}

static void
on_hotkey_activated (DhfHotkeys *hotkeys, const gchar *target, GArray *held, DhfDaemonDevices *self)
{
  gchar *resolved = resolve_target (self, target);

  if (resolved == NULL)
    return;
  g_debug ("hotkeys: switching to %s", resolved);
  /* The keys of the combo are down in the domain losing the focus: the
   * switch releases them there. */
  dhf_device_engine_switch_async (self->engine, resolved, "dom0",
                                  held != NULL ? (const guint *) held->data : NULL,
                                  held != NULL ? held->len : 0, NULL, on_hotkey_switched, resolved);
}

static void
bind_hotkeys (DhfDaemonDevices *self)
{
  g_autoptr (DhfPolicy) policy = NULL;
  g_autoptr (DhfHotkeyMatcher) matcher = NULL;
  g_autoptr (GError) error = NULL;

  if (self->hotkeys == NULL)
    return;
  policy = dhf_policy_store_get (dhf_policy_service_get_store (self->policy));
  matcher = dhf_hotkey_matcher_new ();
  if (!dhf_hotkey_matcher_bind_policy (matcher, policy, self->slot_modifiers, &error))
    g_warning ("hotkeys: %s; the hotkeys bound so far are kept", error->message);
  g_debug ("hotkeys: %u combos bound", dhf_hotkey_matcher_get_n_bindings (matcher));
  dhf_hotkeys_set_bindings (self->hotkeys, matcher);
}

void
dhf_daemon_devices_policy_changed (DhfDaemonDevices *self)
{
  guint64 generation;

  g_return_if_fail (DHF_IS_DAEMON_DEVICES (self));
  /* Published after every reload attempt: a refused one changes nothing. */
  generation = dhf_policy_store_get_generation (dhf_policy_service_get_store (self->policy));
  if (generation == self->policy_generation)
    return;
  self->policy_generation = generation;
  dhf_device_engine_policy_changed (self->engine);
  bind_hotkeys (self);
}

/* --- org.dhf.framework.Switch ----------------------------------------------- */

typedef struct
{
  DhfXdmSwitchDone done;
  gpointer done_data;
} XdmSwitch;

static void
on_xdm_switched (GObject *source, GAsyncResult *result, gpointer user_data)
{
  g_autofree XdmSwitch *call = user_data;
  g_autoptr (GError) error = NULL;
  g_autofree gchar *focused
      = dhf_device_engine_switch_finish (DHF_DEVICE_ENGINE (source), result, &error);

  call->done (focused, error, call->done_data);
}

/* An appliance (or a dom0 client of XDM) asks: it is the switch rules'
 * SOURCE. The XDM rule that let it call the service was checked first. */
static void
xdm_switch (const gchar *source, const gchar *target, GCancellable *cancellable,
            DhfXdmSwitchDone done, gpointer done_data, gpointer user_data)
{
  DhfDaemonDevices *self = user_data;
  XdmSwitch *call = g_new0 (XdmSwitch, 1);

  call->done = done;
  call->done_data = done_data;
  dhf_device_engine_switch_async (self->engine, target, source, NULL, 0, cancellable,
                                  on_xdm_switched, call);
}

/* --- building it ------------------------------------------------------------ */

static gboolean
export_interface (GDBusInterfaceSkeleton *skeleton, GDBusConnection *connection, const gchar *what,
                  GError **error)
{
  if (!g_dbus_interface_skeleton_export (skeleton, connection, DHF_OBJECT_PATH, error))
    {
      g_prefix_error (error, "exporting %s: ", what);
      return FALSE;
    }
  return TRUE;
}

DhfDaemonDevices *
dhf_daemon_devices_new (const DhfDaemonDevicesSetup *setup, GError **error)
{
  g_autoptr (DhfDaemonDevices) self = g_object_new (DHF_TYPE_DAEMON_DEVICES, NULL);
  const DhfConfig *config = setup->config;
  DhfDeviceEngineConfig engine_config = {
    .state_file = config->device_state_file,
    .fallback = config->focus_fallback,
    .focused_weight = config->focused_weight,
    .normal_weight = config->normal_weight,
    .order = (const gchar *const *) config->switch_order,
    .cycle_dom0 = config->cycle_dom0,
    .history_length = 0,
  };
  g_autoptr (GError) load_error = NULL;

  self->policy = g_object_ref (setup->policy);
  self->lookup = setup->lookup;
  self->lookup_data = setup->lookup_data;
  self->status = setup->status;
  self->status_data = setup->status_data;
  self->state_file = g_strdup (config->device_state_file);
  self->emulated_inputs = g_strdupv (config->emulated_inputs);
  self->slot_modifiers = g_strdup (config->hotkey_slot_modifiers);

  self->engine
      = dhf_device_engine_new (dhf_hypervisor_device_ops (), setup->hypervisor, &engine_config);
  dhf_device_engine_set_decider (self->engine, decide, self);
  if (setup->xdm_service != NULL)
    {
      self->xdm_service = g_object_ref (setup->xdm_service);
      dhf_device_engine_set_asker (self->engine, ask, self->xdm_service);
    }
  /* A state file that cannot be read is no reason not to serve: dhfd
   * starts from the fallback focus and says so in its status. */
  if (!dhf_device_engine_load (self->engine, &load_error))
    {
      self->load_failure = g_strdup_printf (
          "devices: the state file %s cannot be read (%s); the focus and the admin pins start "
          "afresh",
          config->device_state_file, load_error->message);
      g_warning ("%s", self->load_failure);
    }
  check_state_file (self);
  g_signal_connect (self->engine, "focus-changed", G_CALLBACK (on_focus_changed), self);

  self->devices_service = dhf_devices_service_new (self->engine, setup->authority);
  self->display_service = dhf_display_service_new (self->engine, setup->authority,
                                                   setup->hypervisor, lookup_display, self);
  /* Showing an appliance asks what putting it on screen asks: "switch @dom0 NAME". */
  dhf_display_service_set_decider (self->display_service, decide, self);
  if (!export_interface (G_DBUS_INTERFACE_SKELETON (self->devices_service), setup->connection,
                         "Devices", error)
      || !export_interface (G_DBUS_INTERFACE_SKELETON (self->display_service), setup->connection,
                            "Display", error))
    return NULL;

  scan_inventory (self);
  self->monitor = dhf_device_monitor_new ();
  g_signal_connect (self->monitor, "changed", G_CALLBACK (on_monitor_changed), self);

  if (config->hotkey_keyboards != NULL && config->hotkey_keyboards[0] != NULL)
    {
      self->hotkeys = dhf_hotkeys_new ((const gchar *const *) config->hotkey_keyboards);
      g_signal_connect (self->hotkeys, "activated", G_CALLBACK (on_hotkey_activated), self);
    }
  self->policy_generation
      = dhf_policy_store_get_generation (dhf_policy_service_get_store (self->policy));
  bind_hotkeys (self);
  if (self->hotkeys != NULL)
    dhf_hotkeys_start (self->hotkeys);

  if (setup->xdm != NULL)
    {
      self->xdm = g_object_ref (setup->xdm);
      dhf_xdm_router_set_switch_handler (self->xdm, xdm_switch, self);
    }
  return g_steal_pointer (&self);
}

static void
dhf_daemon_devices_init (DhfDaemonDevices *self)
{
  self->active = g_hash_table_new_full (g_str_hash, g_str_equal, g_free, NULL);
}

void
dhf_daemon_devices_shutdown (DhfDaemonDevices *self)
{
  g_return_if_fail (DHF_IS_DAEMON_DEVICES (self));
  /* No more input: hotkeys, hot-plug, XDM switches. */
  if (self->xdm != NULL)
    dhf_xdm_router_set_switch_handler (self->xdm, NULL, NULL);
  if (self->hotkeys != NULL)
    g_signal_handlers_disconnect_by_data (self->hotkeys, self);
  g_clear_object (&self->hotkeys);
  if (self->monitor != NULL)
    g_signal_handlers_disconnect_by_data (self->monitor, self);
  g_clear_object (&self->monitor);
  /* The services keep references on the engine: it must stop now, not when
   * the last of them goes, since the hypervisor its operations use may go
   * right after this. */
  if (self->engine != NULL)
    {
      g_signal_handlers_disconnect_by_data (self->engine, self);
      dhf_device_engine_shutdown (self->engine);
    }
}

static void
dhf_daemon_devices_dispose (GObject *object)
{
  DhfDaemonDevices *self = DHF_DAEMON_DEVICES (object);

  dhf_daemon_devices_shutdown (self);
  /* The decider reads the policy service, released below. */
  if (self->display_service != NULL)
    dhf_display_service_set_decider (self->display_service, NULL, NULL);
  g_clear_object (&self->xdm);
  if (self->devices_service != NULL
      && g_dbus_interface_skeleton_get_connection (
             G_DBUS_INTERFACE_SKELETON (self->devices_service))
             != NULL)
    g_dbus_interface_skeleton_unexport (G_DBUS_INTERFACE_SKELETON (self->devices_service));
  if (self->display_service != NULL
      && g_dbus_interface_skeleton_get_connection (
             G_DBUS_INTERFACE_SKELETON (self->display_service))
             != NULL)
    g_dbus_interface_skeleton_unexport (G_DBUS_INTERFACE_SKELETON (self->display_service));
  g_clear_object (&self->devices_service);
  g_clear_object (&self->display_service);
  g_clear_object (&self->engine);
  g_clear_object (&self->xdm_service);
  g_clear_object (&self->policy);
  G_OBJECT_CLASS (dhf_daemon_devices_parent_class)->dispose (object);
}

static void
dhf_daemon_devices_finalize (GObject *object)
{
  DhfDaemonDevices *self = DHF_DAEMON_DEVICES (object);

  g_hash_table_unref (self->active);
  g_strfreev (self->emulated_inputs);
  g_free (self->state_file);
  g_free (self->load_failure);
  g_free (self->slot_modifiers);
  G_OBJECT_CLASS (dhf_daemon_devices_parent_class)->finalize (object);
}

static void
dhf_daemon_devices_class_init (DhfDaemonDevicesClass *klass)
{
  GObjectClass *object_class = G_OBJECT_CLASS (klass);

  object_class->dispose = dhf_daemon_devices_dispose;
  object_class->finalize = dhf_daemon_devices_finalize;
}
