/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include "config.h"

#include <string.h>
#include <sys/un.h>

#include <dhf/dhf.h>

#include "dhf-config-private.h"
#include "dhf-xdm-codec.h"
#include "dhf-xdm-router.h"

/* Every key dhfd reads. Unknown groups and keys are errors, so that a typo
 * in an admin's edit is reported instead of silently ignored. */
static const struct
{
  const gchar *group;
  const gchar *key;
} known_keys[] = {
  { "Hypervisor", "URI" },
  { "Hypervisor", "DomainType" },
  { "Appliances", "StorageDirectory" },
  { "Appliances", "ConsoleLogDirectory" },
  { "Appliances", "ShutdownTimeout" },
  { "Authorization", "Mode" },
  { "Policy", "Directories" },
  { "Policy", "LastGood" },
  { "XDM", "Socket" },
  { "XDM", "SocketMode" },
  { "XDM", "SocketGroup" },
  { "XDM", "VsockPort" },
  { "XDM", "MaxCallsInFlight" },
  { "XDM", "MaxQueuedBytes" },
  { "XDM", "MaxRegistrations" },
  { "XDM", "MaxSubscriptions" },
  { "XDM", "MaxStreams" },
  { "XDM", "MaxClients" },
  { "XDM", "MaxConnectionsPerDomain" },
  { "XDM", "MaxPendingQuestions" },
  { "XDM", "AskTimeout" },
  { "Devices", "EmulatedInput" },
  { "Devices", "StateFile" },
  { "Display", "Fallback" },
  { "Display", "FocusedWeight" },
  { "Display", "NormalWeight" },
  { "Display", "Order" },
  { "Display", "CycleDom0" },
  { "Hotkeys", "Keyboards" },
  { "Hotkeys", "SlotModifiers" },
};

#define MAX_SHUTDOWN_TIMEOUT_S (24 * 3600)

DhfConfig *
dhf_config_new (void)
{
  DhfConfig *self = g_new0 (DhfConfig, 1);
  DhfXdmLimits limits;

  self->hypervisor_uri = g_strdup ("qemu:///system");
  self->domain_type = g_strdup ("auto");
  self->storage_dir = g_strdup (DHF_LOCALSTATEDIR "/images");
  self->shutdown_timeout_s = 30;
  self->auth_mode = DHF_AUTH_MODE_AUTO;
  self->policy_dirs = g_strdupv ((gchar **) (const gchar *const[]){
      DHF_SYSCONFDIR "/policy.d", DHF_DATADIR "/policy.d", NULL });
  self->policy_last_good = g_strdup (DHF_LOCALSTATEDIR "/policy.last-good");
  dhf_xdm_limits_init (&limits);
  self->xdm_socket_mode = 0660;
  self->xdm_vsock_port = DHF_XDM_VSOCK_PORT;
  self->xdm_max_calls_in_flight = limits.max_calls_in_flight;
  self->xdm_max_queued_bytes = limits.max_queued_bytes;
  self->xdm_max_registrations = limits.max_registrations;
  self->xdm_max_subscriptions = limits.max_subscriptions;
  self->xdm_max_streams = limits.max_streams;
  self->xdm_max_clients = limits.max_dom0_clients;
  self->xdm_max_connections_per_domain = limits.max_domain_connections;
  self->xdm_max_pending_questions = limits.max_pending_asks;
  self->xdm_ask_timeout_s = limits.ask_timeout_ms / 1000;
  self->emulated_inputs = g_new0 (gchar *, 1);
  self->device_state_file = g_strdup (DHF_LOCALSTATEDIR "/devices.json");
  self->focus_fallback = g_strdup ("dom0");
  self->focused_weight = 1024;
  self->normal_weight = 256;
  self->switch_order = g_new0 (gchar *, 1);
  self->cycle_dom0 = FALSE;
  self->hotkey_keyboards = g_new0 (gchar *, 1);
  self->hotkey_slot_modifiers = NULL;
  return self;
}

void
dhf_config_free (DhfConfig *self)
{
  if (self == NULL)
    return;
  g_free (self->hypervisor_uri);
  g_free (self->domain_type);
  g_free (self->storage_dir);
  g_free (self->console_log_dir);
  g_strfreev (self->policy_dirs);
  g_free (self->policy_last_good);
  g_free (self->xdm_socket);
  g_free (self->xdm_socket_group);
  g_strfreev (self->emulated_inputs);
  g_free (self->device_state_file);
  g_free (self->focus_fallback);
  g_strfreev (self->switch_order);
  g_strfreev (self->hotkey_keyboards);
  g_free (self->hotkey_slot_modifiers);
  g_free (self);
}

static gboolean
is_known_key (const gchar *group, const gchar *key)
{
  for (guint i = 0; i < G_N_ELEMENTS (known_keys); i++)
    {
      if (g_str_equal (known_keys[i].group, group) && g_str_equal (known_keys[i].key, key))
        return TRUE;
    }
  return FALSE;
}

static gboolean
check_known_keys (GKeyFile *kf, GError **error)
{
  g_auto (GStrv) groups = g_key_file_get_groups (kf, NULL);

  for (guint i = 0; groups[i] != NULL; i++)
    {
      g_auto (GStrv) keys = g_key_file_get_keys (kf, groups[i], NULL, NULL);

      for (guint j = 0; keys != NULL && keys[j] != NULL; j++)
        {
          if (!is_known_key (groups[i], keys[j]))
            {
              g_set_error (error, DHF_ERROR, DHF_ERROR_INVALID_ARGS, "[%s] %s: unknown key",
                           groups[i], keys[j]);
              return FALSE;
            }
        }
      if (keys == NULL || keys[0] == NULL)
        {
          gboolean group_known = FALSE;

          for (guint k = 0; k < G_N_ELEMENTS (known_keys); k++)
            group_known |= g_str_equal (known_keys[k].group, groups[i]);
          if (!group_known)
            {
              g_set_error (error, DHF_ERROR, DHF_ERROR_INVALID_ARGS, "[%s]: unknown group",
                           groups[i]);
              return FALSE;
            }
        }
    }
  return TRUE;
}

/* Reads an optional string key into *out; FALSE only on a malformed value. */
gboolean
dhf_config_read_string (GKeyFile *kf, const gchar *group, const gchar *key, gchar **out,
                        GError **error)
{
  g_autoptr (GError) local_error = NULL;
  g_autofree gchar *value = g_key_file_get_string (kf, group, key, &local_error);

  if (value == NULL)
    {
      if (g_error_matches (local_error, G_KEY_FILE_ERROR, G_KEY_FILE_ERROR_KEY_NOT_FOUND)
          || g_error_matches (local_error, G_KEY_FILE_ERROR, G_KEY_FILE_ERROR_GROUP_NOT_FOUND))
        return TRUE;
      g_set_error (error, DHF_ERROR, DHF_ERROR_INVALID_ARGS, "[%s] %s: %s", group, key,
                   local_error->message);
      return FALSE;
    }
  g_strstrip (value);
  if (value[0] == '\0')
    {
      g_set_error (error, DHF_ERROR, DHF_ERROR_INVALID_ARGS, "[%s] %s: empty value", group, key);
      return FALSE;
    }
  g_free (*out);
  *out = g_steal_pointer (&value);
  return TRUE;
}

/* Reads an optional path key into *out, made canonical: one spelling of
 * each path, so that "is this file ours?" is a plain comparison (a trailing
 * '/' or a '..' would otherwise defeat it). Paths end up in domain XML as
 * attributes, where a control character would not survive. */
static gboolean
read_path (GKeyFile *kf, const gchar *group, const gchar *key, gchar **out, GError **error)
{
  gchar *canonical;

  if (!dhf_config_read_string (kf, group, key, out, error))
    return FALSE;
  if (*out == NULL)
    return TRUE;
  if (!g_path_is_absolute (*out))
    {
      g_set_error (error, DHF_ERROR, DHF_ERROR_INVALID_ARGS,
                   "[%s] %s: expected an absolute path, not '%s'", group, key, *out);
      return FALSE;
    }
  for (const gchar *p = *out; *p != '\0'; p++)
    {
      if (g_ascii_iscntrl (*p))
        {
          g_set_error (error, DHF_ERROR, DHF_ERROR_INVALID_ARGS,
                       "[%s] %s: the path must not contain control characters", group, key);
          return FALSE;
        }
    }
  canonical = g_canonicalize_filename (*out, NULL);
  g_free (*out);
  *out = canonical;
  return TRUE;
}

/* [Policy] Directories: absolute paths separated by ';' (a trailing ';',
 * as GLib writes lists, is allowed), admin directory first. */
static gboolean
read_policy_dirs (GKeyFile *kf, DhfConfig *self, GError **error)
{
  g_autofree gchar *value = NULL;
  g_auto (GStrv) parts = NULL;
  g_autoptr (GPtrArray) dirs = g_ptr_array_new_with_free_func (g_free);

  if (!dhf_config_read_string (kf, "Policy", "Directories", &value, error))
    return FALSE;
  if (value == NULL)
    return TRUE;
  parts = g_strsplit (value, ";", -1);
  for (guint i = 0; parts[i] != NULL; i++)
    {
      const gchar *dir = g_strstrip (parts[i]);

      if (*dir == '\0' && parts[i + 1] == NULL && i > 0)
        break;
      if (!g_path_is_absolute (dir))
        {
          g_set_error (error, DHF_ERROR, DHF_ERROR_INVALID_ARGS,
                       "[Policy] Directories: expected absolute paths separated by ';', not '%s'",
                       dir);
          return FALSE;
        }
      g_ptr_array_add (dirs, g_canonicalize_filename (dir, NULL));
    }
  g_ptr_array_add (dirs, NULL);
  g_strfreev (self->policy_dirs);
  self->policy_dirs = (gchar **) g_ptr_array_free (g_steal_pointer (&dirs), FALSE);
  return TRUE;
}

static gboolean
read_policy (GKeyFile *kf, DhfConfig *self, GError **error)
{
  if (!read_policy_dirs (kf, self, error))
    return FALSE;
  if (!read_path (kf, "Policy", "LastGood", &self->policy_last_good, error))
    return FALSE;
  /* dhfd writes the last good policy at every successful reload: inside a
   * watched directory that write would itself be an edit (a reload
   * storm), and the saved file could be read as a rule file. */
  for (guint i = 0; self->policy_dirs[i] != NULL; i++)
    {
      g_autofree gchar *dir = g_canonicalize_filename (self->policy_dirs[i], NULL);

      if (g_str_equal (dir, "/") || g_str_equal (self->policy_last_good, dir)
          || (g_str_has_prefix (self->policy_last_good, dir)
              && self->policy_last_good[strlen (dir)] == '/'))
        {
          g_set_error (error, DHF_ERROR, DHF_ERROR_INVALID_ARGS,
                       "[Policy] LastGood: '%s' is inside the policy directory '%s'; it must be "
                       "kept outside every one of [Policy] Directories (dhfd rewrites it at "
                       "every reload)",
                       self->policy_last_good, dir);
          return FALSE;
        }
    }
  return TRUE;
}

/* XDM */

/* Reads an optional unsigned key in [min, max]; base 8 or 10. */
static gboolean
read_unsigned (GKeyFile *kf, const gchar *key, guint base, guint64 min, guint64 max,
               const gchar *what, guint64 *out, GError **error)
{
  g_autofree gchar *text = NULL;

  if (!dhf_config_read_string (kf, "XDM", key, &text, error))
    return FALSE;
  if (text == NULL)
    return TRUE;
  if (!g_ascii_string_to_unsigned (text, base, min, max, out, NULL))
    {
      if (base == 8)
        g_set_error (error, DHF_ERROR, DHF_ERROR_INVALID_ARGS,
                     "[XDM] %s: expected %s from %" G_GINT64_MODIFIER "o to %" G_GINT64_MODIFIER
                     "o (octal), not '%s'",
                     key, what, min, max, text);
      else
        g_set_error (error, DHF_ERROR, DHF_ERROR_INVALID_ARGS,
                     "[XDM] %s: expected %s from %" G_GUINT64_FORMAT " to %" G_GUINT64_FORMAT
                     ", not '%s'",
                     key, what, min, max, text);
      return FALSE;
    }
  return TRUE;
}

static gboolean
read_count (GKeyFile *kf, const gchar *key, guint max, guint *out, GError **error)
{
  guint64 value = *out;

  if (!read_unsigned (kf, key, 10, 1, max, "a number", &value, error))
    return FALSE;
  *out = (guint) value;
  return TRUE;
}

/* MaxQueuedBytes: bytes, or a whole number of KiB, MiB or GiB. */
static gboolean
read_byte_size (GKeyFile *kf, const gchar *key, guint64 min, guint64 max, guint64 *out,
                GError **error)
{
  static const struct
  {
    const gchar *suffix;
    guint shift;
  } units[] = { { "KiB", 10 }, { "MiB", 20 }, { "GiB", 30 } };
  g_autofree gchar *text = NULL;
  g_autofree gchar *number = NULL;
  guint shift = 0;
  guint64 value = 0;

  if (!dhf_config_read_string (kf, "XDM", key, &text, error))
    return FALSE;
  if (text == NULL)
    return TRUE;
  number = g_strdup (text);
  for (guint i = 0; i < G_N_ELEMENTS (units); i++)
    {
      if (g_str_has_suffix (number, units[i].suffix))
        {
          number[strlen (number) - strlen (units[i].suffix)] = '\0';
          g_strchomp (number);
          shift = units[i].shift;
          break;
        }
    }
  if (!g_ascii_string_to_unsigned (number, 10, 0, max >> shift, &value, NULL)
      || (value << shift) < min)
    {
      g_set_error (error, DHF_ERROR, DHF_ERROR_INVALID_ARGS,
                   "[XDM] %s: expected a size from %" G_GUINT64_FORMAT
                   " bytes to %" G_GUINT64_FORMAT " MiB (bytes, or with KiB, MiB or GiB), not '%s'",
                   key, min, max >> 20, text);
      return FALSE;
    }
  *out = value << shift;
  return TRUE;
}

/* Group names as useradd(8) accepts them. */
static gboolean
group_name_is_valid (const gchar *name)
{
  gsize length = strlen (name);

  if (length == 0 || length > 32 || name[0] == '-')
    return FALSE;
  for (gsize i = 0; i < length; i++)
    {
      if (!g_ascii_isalnum (name[i]) && strchr ("_.-", name[i]) == NULL
          && !(name[i] == '$' && i == length - 1))
        return FALSE;
    }
  return TRUE;
}

/**
 * dhf_config_set_xdm_socket:
 * @self: the configuration
 * @path: where dom0 clients connect
 * @error: return location for a #GError
 *
 * [XDM] Socket, or dhfd's --xdm-socket: an absolute path (made canonical)
 * that fits a unix socket address.
 *
 * Returns: %FALSE with %DHF_ERROR_INVALID_ARGS when @path cannot be one
 */
gboolean
dhf_config_set_xdm_socket (DhfConfig *self, const gchar *path, GError **error)
{
  g_autofree gchar *canonical = NULL;
  gsize max = sizeof (((struct sockaddr_un *) NULL)->sun_path) - 1;

  if (!g_path_is_absolute (path))
    {
      g_set_error (error, DHF_ERROR, DHF_ERROR_INVALID_ARGS, "expected an absolute path, not '%s'",
                   path);
      return FALSE;
    }
  canonical = g_canonicalize_filename (path, NULL);
  if (g_str_equal (canonical, "/") || strlen (canonical) > max)
    {
      g_set_error (error, DHF_ERROR, DHF_ERROR_INVALID_ARGS,
                   "'%s' cannot be a unix socket's path (at most %zu bytes)", canonical, max);
      return FALSE;
    }
  g_free (self->xdm_socket);
  self->xdm_socket = g_steal_pointer (&canonical);
  return TRUE;
}

static gboolean
read_xdm (GKeyFile *kf, DhfConfig *self, GError **error)
{
  g_autofree gchar *socket_path = NULL;
  guint64 value;

  if (!dhf_config_read_string (kf, "XDM", "Socket", &socket_path, error))
    return FALSE;
  if (socket_path != NULL && !dhf_config_set_xdm_socket (self, socket_path, error))
    {
      g_prefix_error (error, "[XDM] Socket: ");
      return FALSE;
    }
  value = self->xdm_socket_mode;
  if (!read_unsigned (kf, "SocketMode", 8, 0, 0777, "permission bits", &value, error))
    return FALSE;
  self->xdm_socket_mode = (guint) value;
  if (!dhf_config_read_string (kf, "XDM", "SocketGroup", &self->xdm_socket_group, error))
    return FALSE;
  if (self->xdm_socket_group != NULL && !group_name_is_valid (self->xdm_socket_group))
    {
      g_set_error (error, DHF_ERROR, DHF_ERROR_INVALID_ARGS,
                   "[XDM] SocketGroup: '%s' is not a group name", self->xdm_socket_group);
      return FALSE;
    }
  /* -1 is VMADDR_PORT_ANY. */
  value = self->xdm_vsock_port;
  if (!read_unsigned (kf, "VsockPort", 10, 0, G_MAXUINT32 - 1, "a port (0 disables vsock)", &value,
                      error))
    return FALSE;
  self->xdm_vsock_port = (guint32) value;
  self->xdm_vsock_port_set |= g_key_file_has_key (kf, "XDM", "VsockPort", NULL);

  if (!read_count (kf, "MaxCallsInFlight", 65536, &self->xdm_max_calls_in_flight, error)
      || !read_count (kf, "MaxRegistrations", 4096, &self->xdm_max_registrations, error)
      || !read_count (kf, "MaxSubscriptions", 65536, &self->xdm_max_subscriptions, error)
      || !read_count (kf, "MaxStreams", 4096, &self->xdm_max_streams, error)
      || !read_count (kf, "MaxClients", 65536, &self->xdm_max_clients, error)
      || !read_count (kf, "MaxConnectionsPerDomain", 1024, &self->xdm_max_connections_per_domain,
                      error)
      || !read_count (kf, "MaxPendingQuestions", 1024, &self->xdm_max_pending_questions, error))
    return FALSE;
  /* A queue must hold one frame of the largest size. */
  if (!read_byte_size (kf, "MaxQueuedBytes", DHF_XDM_HEADER_SIZE + DHF_XDM_MAX_BODY,
                       (guint64) 256 << 20, &self->xdm_max_queued_bytes, error))
    return FALSE;
  value = self->xdm_ask_timeout_s;
  if (!read_unsigned (kf, "AskTimeout", 10, 1, 3600, "seconds", &value, error))
    return FALSE;
  self->xdm_ask_timeout_s = (guint) value;
  return TRUE;
}

static gboolean
apply_keyfile (DhfConfig *self, GKeyFile *kf, GError **error)
{
  g_autofree gchar *timeout = NULL;
  g_autofree gchar *mode = NULL;

  if (!check_known_keys (kf, error))
    return FALSE;
  if (!dhf_config_read_string (kf, "Hypervisor", "URI", &self->hypervisor_uri, error))
    return FALSE;
  if (!dhf_config_read_string (kf, "Hypervisor", "DomainType", &self->domain_type, error))
    return FALSE;
  if (!g_strv_contains ((const gchar *const[]){ "auto", "kvm", "qemu", "xen", "test", NULL },
                        self->domain_type))
    {
      g_set_error (error, DHF_ERROR, DHF_ERROR_INVALID_ARGS,
                   "[Hypervisor] DomainType: expected auto, kvm, qemu, xen or test, not '%s'",
                   self->domain_type);
      return FALSE;
    }
  if (!read_path (kf, "Appliances", "StorageDirectory", &self->storage_dir, error)
      || !read_path (kf, "Appliances", "ConsoleLogDirectory", &self->console_log_dir, error))
    return FALSE;
  if (!dhf_config_read_string (kf, "Appliances", "ShutdownTimeout", &timeout, error))
    return FALSE;
  if (timeout != NULL)
    {
      guint64 value = 0;

      if (!g_ascii_string_to_unsigned (timeout, 10, 1, MAX_SHUTDOWN_TIMEOUT_S, &value, NULL))
        {
          g_set_error (error, DHF_ERROR, DHF_ERROR_INVALID_ARGS,
                       "[Appliances] ShutdownTimeout: expected seconds from 1 to %u, not '%s'",
                       MAX_SHUTDOWN_TIMEOUT_S, timeout);
          return FALSE;
        }
      self->shutdown_timeout_s = (guint) value;
    }
  if (!dhf_config_read_string (kf, "Authorization", "Mode", &mode, error))
    return FALSE;
  if (mode != NULL)
    {
      if (g_str_equal (mode, "auto"))
        self->auth_mode = DHF_AUTH_MODE_AUTO;
      else if (g_str_equal (mode, "polkit"))
        self->auth_mode = DHF_AUTH_MODE_POLKIT;
      else if (g_str_equal (mode, "peer-uid"))
        self->auth_mode = DHF_AUTH_MODE_PEER_UID;
      else
        {
          g_set_error (error, DHF_ERROR, DHF_ERROR_INVALID_ARGS,
                       "[Authorization] Mode: expected auto, polkit or peer-uid, not '%s'", mode);
          return FALSE;
        }
    }
  if (!read_policy (kf, self, error))
    return FALSE;
  if (!read_xdm (kf, self, error))
    return FALSE;
  return dhf_config_read_devices (kf, self, error);
}

gboolean
dhf_config_load_data (DhfConfig *self, const gchar *data, const gchar *origin, GError **error)
{
  g_autoptr (GKeyFile) kf = g_key_file_new ();
  g_autoptr (GError) local_error = NULL;

  if (!g_key_file_load_from_data (kf, data, (gsize) -1, G_KEY_FILE_NONE, &local_error))
    {
      g_set_error (error, DHF_ERROR, DHF_ERROR_INVALID_ARGS, "%s: %s", origin,
                   local_error->message);
      return FALSE;
    }
  if (!apply_keyfile (self, kf, error))
    {
      g_prefix_error (error, "%s: ", origin);
      return FALSE;
    }
  return TRUE;
}

gboolean
dhf_config_load (DhfConfig *self, const gchar *path, gboolean must_exist, GError **error)
{
  g_autofree gchar *data = NULL;
  g_autoptr (GError) local_error = NULL;

  if (!g_file_get_contents (path, &data, NULL, &local_error))
    {
      if (!must_exist && g_error_matches (local_error, G_FILE_ERROR, G_FILE_ERROR_NOENT))
        return TRUE;
      g_set_error (error, DHF_ERROR, DHF_ERROR_INVALID_ARGS, "%s", local_error->message);
      return FALSE;
    }
  return dhf_config_load_data (self, data, path, error);
}
