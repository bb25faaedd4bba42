/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include "config.h"

#include <string.h>

#include <dhf/dhf.h>

#include "dhf-config.h"

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
  { "Appliances", "ShutdownTimeout" },
  { "Authorization", "Mode" },
  { "Policy", "Directories" },
  { "Policy", "LastGood" },
};

#define MAX_SHUTDOWN_TIMEOUT_S (24 * 3600)

DhfConfig *
dhf_config_new (void)
{
  DhfConfig *self = g_new0 (DhfConfig, 1);

  self->hypervisor_uri = g_strdup ("qemu:///system");
  self->domain_type = g_strdup ("auto");
  self->storage_dir = g_strdup (DHF_LOCALSTATEDIR "/images");
  self->shutdown_timeout_s = 30;
  self->auth_mode = DHF_AUTH_MODE_AUTO;
  self->policy_dirs = g_strdupv ((gchar **) (const gchar *const[]){
      DHF_SYSCONFDIR "/policy.d", DHF_DATADIR "/policy.d", NULL });
  self->policy_last_good = g_strdup (DHF_LOCALSTATEDIR "/policy.last-good");
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
  g_strfreev (self->policy_dirs);
  g_free (self->policy_last_good);
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
static gboolean
read_string (GKeyFile *kf, const gchar *group, const gchar *key, gchar **out, GError **error)
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

/* [Policy] Directories: absolute paths separated by ';' (a trailing ';',
 * as GLib writes lists, is allowed), admin directory first. */
static gboolean
read_policy_dirs (GKeyFile *kf, DhfConfig *self, GError **error)
{
  g_autofree gchar *value = NULL;
  g_auto (GStrv) parts = NULL;
  g_autoptr (GPtrArray) dirs = g_ptr_array_new_with_free_func (g_free);

  if (!read_string (kf, "Policy", "Directories", &value, error))
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
  if (!read_string (kf, "Policy", "LastGood", &self->policy_last_good, error))
    return FALSE;
  if (!g_path_is_absolute (self->policy_last_good))
    {
      g_set_error (error, DHF_ERROR, DHF_ERROR_INVALID_ARGS,
                   "[Policy] LastGood: expected an absolute path, not '%s'",
                   self->policy_last_good);
      return FALSE;
    }
  {
    gchar *canonical = g_canonicalize_filename (self->policy_last_good, NULL);

    g_free (self->policy_last_good);
    self->policy_last_good = canonical;
  }
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

static gboolean
apply_keyfile (DhfConfig *self, GKeyFile *kf, GError **error)
{
  g_autofree gchar *timeout = NULL;
  g_autofree gchar *mode = NULL;

  if (!check_known_keys (kf, error))
    return FALSE;
  if (!read_string (kf, "Hypervisor", "URI", &self->hypervisor_uri, error))
    return FALSE;
  if (!read_string (kf, "Hypervisor", "DomainType", &self->domain_type, error))
    return FALSE;
  if (!g_strv_contains ((const gchar *const[]){ "auto", "kvm", "qemu", "xen", "test", NULL },
                        self->domain_type))
    {
      g_set_error (error, DHF_ERROR, DHF_ERROR_INVALID_ARGS,
                   "[Hypervisor] DomainType: expected auto, kvm, qemu, xen or test, not '%s'",
                   self->domain_type);
      return FALSE;
    }
  if (!read_string (kf, "Appliances", "StorageDirectory", &self->storage_dir, error))
    return FALSE;
  if (!g_path_is_absolute (self->storage_dir))
    {
      g_set_error (error, DHF_ERROR, DHF_ERROR_INVALID_ARGS,
                   "[Appliances] StorageDirectory: expected an absolute path, not '%s'",
                   self->storage_dir);
      return FALSE;
    }
  /* One spelling of the directory, so that "is this disk ours?" is a plain
   * comparison (a trailing '/' or a '..' would otherwise defeat it). */
  {
    gchar *canonical = g_canonicalize_filename (self->storage_dir, NULL);

    g_free (self->storage_dir);
    self->storage_dir = canonical;
  }
  if (!read_string (kf, "Appliances", "ShutdownTimeout", &timeout, error))
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
  if (!read_string (kf, "Authorization", "Mode", &mode, error))
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
  return read_policy (kf, self, error);
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
