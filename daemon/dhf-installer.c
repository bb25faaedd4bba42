/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include "config.h"

#include <errno.h>
#include <sys/stat.h>
#include <unistd.h>

#include <glib/gstdio.h>

#include "dhf-domain-xml.h"
#include "dhf-installer.h"
#include "dhf-log.h"

struct _DhfInstaller
{
  GObject parent_instance;

  DhfHypervisor *hypervisor;
  const DhfConfig *config;
  GHashTable *busy; /* names with an install or removal under way */
};

G_DEFINE_TYPE (DhfInstaller, dhf_installer, G_TYPE_OBJECT)

DhfInstaller *
dhf_installer_new (DhfHypervisor *hypervisor, const DhfConfig *config)
{
  DhfInstaller *self = g_object_new (DHF_TYPE_INSTALLER, NULL);

  self->hypervisor = g_object_ref (hypervisor);
  self->config = config;
  return self;
}

/* Decides between a fresh install, an in-place upgrade and a refusal. */
gboolean
dhf_install_plan (const DhfManifest *manifest, const DhfDomainMetadata *installed,
                  gboolean installed_is_foreign, gboolean allow_downgrade, gboolean *upgrade,
                  GError **error)
{
  const gchar *name = dhf_manifest_get_name (manifest);
  const gchar *version = dhf_manifest_get_version (manifest);
  const DhfManifest *old;
  gint cmp;

  *upgrade = FALSE;
  if (installed_is_foreign)
    {
      g_set_error (error, DHF_ERROR, DHF_ERROR_EXISTS,
                   "a domain named '%s' exists and was not installed by dhf", name);
      return FALSE;
    }
  if (installed == NULL)
    return TRUE;
  old = installed->manifest;
  if (g_strcmp0 (dhf_manifest_get_vendor (old), dhf_manifest_get_vendor (manifest)) != 0)
    {
      g_set_error (error, DHF_ERROR, DHF_ERROR_EXISTS,
                   "appliance '%s' is installed from vendor '%s'; '%s' may not replace it", name,
                   dhf_manifest_get_vendor (old), dhf_manifest_get_vendor (manifest));
      return FALSE;
    }
  cmp = dhf_version_compare (version, dhf_manifest_get_version (old));
  if (cmp == 0)
    {
      g_set_error (error, DHF_ERROR, DHF_ERROR_EXISTS, "appliance '%s' %s is already installed",
                   name, version);
      return FALSE;
    }
  /* The kept disk's bytes are the guest's: reading them as another format
   * would hand guest-written data (a qcow2 header naming a host file as
   * backing store) to QEMU. */
  if (installed->disk_path != NULL && dhf_manifest_get_disk_image (manifest) != NULL
      && dhf_manifest_get_disk_format (old) != dhf_manifest_get_disk_format (manifest))
    {
      g_set_error (error, DHF_ERROR, DHF_ERROR_INVALID_MANIFEST,
                   "invalid manifest:\n$.disk.format: the installed disk of '%s' is %s; an "
                   "upgrade cannot change it to %s",
                   name, dhf_disk_format_to_string (dhf_manifest_get_disk_format (old)),
                   dhf_disk_format_to_string (dhf_manifest_get_disk_format (manifest)));
      return FALSE;
    }
  if (cmp < 0 && !allow_downgrade)
    {
      g_set_error (error, DHF_ERROR, DHF_ERROR_EXISTS,
                   "appliance '%s' %s is installed; refusing to downgrade to %s "
                   "(allow-downgrade overrides)",
                   name, dhf_manifest_get_version (old), version);
      return FALSE;
    }
  *upgrade = TRUE;
  return TRUE;
}

/* --- install ---------------------------------------------------------- */

typedef struct
{
  DhfManifest *manifest;
  gchar *uuid;           /* kept on upgrade */
  gchar *old_disk;       /* the disk of the installed version, kept on upgrade */
  gchar *disk_path;      /* where the appliance's disk is, after preparing */
  gboolean created_disk; /* removed again if defining fails */
  gboolean upgrade;
  gchar *domain_type;
  gchar *new_uuid;
} Install;

static void
install_free (Install *install)
{
  g_clear_pointer (&install->manifest, dhf_manifest_unref);
  g_free (install->uuid);
  g_free (install->old_disk);
  g_free (install->disk_path);
  g_free (install->domain_type);
  g_free (install->new_uuid);
  g_free (install);
}

static void
release_name (DhfInstaller *self, GTask *task)
{
  Install *install = g_task_get_task_data (task);

  g_hash_table_remove (self->busy, dhf_manifest_get_name (install->manifest));
}

/* A kernel or initrd of "boot": the domain names it in place (it is the
 * vendor's, never copied or deleted), so it must be there now. */
static gboolean
check_boot_file (const gchar *json_path, const gchar *file, GError **error)
{
  GStatBuf st;

  if (file == NULL)
    return TRUE;
  if (g_stat (file, &st) < 0)
    {
      int saved_errno = errno;

      if (saved_errno == ENOENT || saved_errno == ENOTDIR)
        g_set_error (error, DHF_ERROR, DHF_ERROR_INVALID_MANIFEST,
                     "invalid manifest:\n%s: no such file '%s'", json_path, file);
      else
        g_set_error (error, DHF_ERROR, DHF_ERROR_INVALID_MANIFEST,
                     "invalid manifest:\n%s: cannot read '%s': %s", json_path, file,
                     g_strerror (saved_errno));
      return FALSE;
    }
  if (!S_ISREG (st.st_mode))
    {
      g_set_error (error, DHF_ERROR, DHF_ERROR_INVALID_MANIFEST,
                   "invalid manifest:\n%s: not a regular file '%s'", json_path, file);
      return FALSE;
    }
  return TRUE;
}

/* Worker thread: check the files the domain refers to, create the
 * directories it needs, and copy the vendor image into the appliance's
 * private disk. An upgrade keeps the disk it has: it holds the user's
 * data. */
static void
prepare_disk_thread (GTask *task, gpointer source, gpointer task_data, GCancellable *cancellable)
{
  DhfInstaller *self = source;
  Install *install = task_data;
  const gchar *image = dhf_manifest_get_disk_image (install->manifest);
  const gchar *log_dir = self->config->console_log_dir;
  g_autofree gchar *file_name = NULL;
  g_autofree gchar *target = NULL;
  g_autofree gchar *partial = NULL;
  g_autoptr (GFile) src = NULL;
  g_autoptr (GFile) dst = NULL;
  g_autoptr (GError) error = NULL;

  if (!check_boot_file ("$.boot.kernel", dhf_manifest_get_boot_kernel (install->manifest), &error)
      || !check_boot_file ("$.boot.initrd", dhf_manifest_get_boot_initrd (install->manifest),
                           &error))
    {
      g_task_return_error (task, g_steal_pointer (&error));
      return;
    }
  /* virtlogd (root) writes the console logs, but does not create their
   * directory; they hold what the guest prints: not for every user. */
  if (log_dir != NULL && !g_str_equal (install->domain_type, "test")
      && g_mkdir_with_parents (log_dir, 0750) < 0)
    {
      int saved_errno = errno;

      g_task_return_new_error (task, DHF_ERROR, DHF_ERROR_FAILED, "cannot create %s: %s", log_dir,
                               g_strerror (saved_errno));
      return;
    }
  /* Xen's device model creates the XDM channel socket there; nobody but
   * root (dhfd, libxl) needs to reach it. */
  if (g_str_equal (install->domain_type, "xen")
      && g_mkdir_with_parents (DHF_XDM_XEN_SOCKET_DIR, 0700) < 0)
    {
      int saved_errno = errno;

      g_task_return_new_error (task, DHF_ERROR, DHF_ERROR_FAILED, "cannot create %s: %s",
                               DHF_XDM_XEN_SOCKET_DIR, g_strerror (saved_errno));
      return;
    }
  if (image == NULL)
    {
      g_task_return_boolean (task, TRUE);
      return;
    }
  if (install->old_disk != NULL && g_file_test (install->old_disk, G_FILE_TEST_EXISTS))
    {
      install->disk_path = g_strdup (install->old_disk);
      g_task_return_boolean (task, TRUE);
      return;
    }
  if (!g_file_test (image, G_FILE_TEST_IS_REGULAR))
    {
      g_task_return_new_error (task, DHF_ERROR, DHF_ERROR_INVALID_MANIFEST,
                               "invalid manifest:\n$.disk.image: no such file '%s'", image);
      return;
    }
  if (g_mkdir_with_parents (self->config->storage_dir, 0711) < 0)
    {
      int saved_errno = errno;

      g_task_return_new_error (task, DHF_ERROR, DHF_ERROR_FAILED, "creating %s: %s",
                               self->config->storage_dir, g_strerror (saved_errno));
      return;
    }
  file_name = g_strdup_printf (
      "%s.%s", dhf_manifest_get_name (install->manifest),
      dhf_disk_format_to_string (dhf_manifest_get_disk_format (install->manifest)));
  target = g_build_filename (self->config->storage_dir, file_name, NULL);
  /* A disk left by `remove --keep-storage` holds the user's data: the
   * reinstall picks it up instead of overwriting it. */
  if (g_file_test (target, G_FILE_TEST_IS_REGULAR))
    {
      g_message ("%s: reusing the disk kept at %s", dhf_manifest_get_name (install->manifest),
                 target);
      install->disk_path = g_steal_pointer (&target);
      g_task_return_boolean (task, TRUE);
      return;
    }
  partial = g_strconcat (target, ".partial", NULL);
  src = g_file_new_for_path (image);
  dst = g_file_new_for_path (partial);
  /* Copy under a temporary name, then link it in place: a crash never
   * leaves half a disk under the real name, and link() never replaces a
   * file that appeared meanwhile. */
  if (!g_file_copy (src, dst, G_FILE_COPY_OVERWRITE, cancellable, NULL, NULL, &error)
      || link (partial, target) < 0)
    {
      if (error == NULL)
        g_set_error (&error, DHF_ERROR, DHF_ERROR_FAILED, "%s", g_strerror (errno));
      (void) g_unlink (partial);
      g_prefix_error (&error, "copying %s to %s: ", image, target);
      g_task_return_error (task, g_steal_pointer (&error));
      return;
    }
  (void) g_unlink (partial);
  install->disk_path = g_steal_pointer (&target);
  install->created_disk = TRUE;
  g_task_return_boolean (task, TRUE);
}

static void
on_install_refreshed (GObject *source, GAsyncResult *result, gpointer user_data)
{
  g_autoptr (GTask) task = user_data;
  DhfInstaller *self = g_task_get_source_object (task);
  Install *install = g_task_get_task_data (task);
  g_autoptr (GError) error = NULL;

  /* The name is free again only now that the appliance is on the bus, so
   * a second install of it sees the first. */
  release_name (self, task);
  if (!dhf_hypervisor_refresh_finish (DHF_HYPERVISOR (source), result, &error))
    g_warning ("%s is installed, but reading it back failed: %s",
               dhf_manifest_get_name (install->manifest), error->message);
  g_task_return_pointer (task, g_steal_pointer (&install->new_uuid), g_free);
}

static void
on_install_defined (GObject *source, GAsyncResult *result, gpointer user_data)
{
  g_autoptr (GTask) task = user_data;
  DhfInstaller *self = g_task_get_source_object (task);
  Install *install = g_task_get_task_data (task);
  g_autoptr (GError) error = NULL;

  install->new_uuid = dhf_hypervisor_define_finish (DHF_HYPERVISOR (source), result, &error);
  if (install->new_uuid == NULL)
    {
      /* An install that failed leaves nothing behind. */
      if (install->created_disk)
        (void) g_unlink (install->disk_path);
      release_name (self, task);
      g_task_return_error (task, g_steal_pointer (&error));
      return;
    }
  dhf_log_appliance (G_LOG_LEVEL_MESSAGE, dhf_manifest_get_name (install->manifest),
                     "%s %s %s (%s)", install->upgrade ? "upgraded" : "installed",
                     dhf_manifest_get_name (install->manifest),
                     dhf_manifest_get_version (install->manifest), install->new_uuid);
  dhf_hypervisor_refresh_async (self->hypervisor, install->new_uuid, on_install_refreshed,
                                g_steal_pointer (&task));
}

static void
on_disk_prepared (GObject *source, GAsyncResult *result, gpointer user_data)
{
  g_autoptr (GTask) task = user_data;
  DhfInstaller *self = DHF_INSTALLER (source);
  Install *install = g_task_get_task_data (task);
  g_autoptr (GError) error = NULL;
  g_autoptr (GDateTime) now = g_date_time_new_now_utc ();
  g_autofree gchar *installed = g_date_time_format_iso8601 (now);
  g_autofree gchar *xml = NULL;
  DhfDomainXmlOptions options = { 0 };

  if (!g_task_propagate_boolean (G_TASK (result), &error))
    {
      release_name (self, task);
      g_task_return_error (task, g_steal_pointer (&error));
      return;
    }
  options.domain_type = install->domain_type;
  options.uuid = install->uuid;
  options.disk_path = install->disk_path;
  options.installed = installed;
  options.console_log_dir = self->config->console_log_dir;
  xml = dhf_domain_xml_build (install->manifest, &options);
  dhf_hypervisor_define_async (self->hypervisor, xml,
                               dhf_manifest_get_autostart (install->manifest), NULL,
                               on_install_defined, g_steal_pointer (&task));
}

void
dhf_installer_install_async (DhfInstaller *self, DhfManifest *manifest, DhfAppliance *installed,
                             gboolean allow_downgrade, GAsyncReadyCallback callback,
                             gpointer user_data)
{
  g_autoptr (GTask) task = g_task_new (self, NULL, callback, user_data);
  g_autoptr (GTask) prepare = NULL;
  g_autoptr (GError) error = NULL;
  const DhfDomainMetadata *metadata
      = installed != NULL ? dhf_appliance_get_metadata (installed) : NULL;
  const gchar *name = dhf_manifest_get_name (manifest);
  Install *install;

  g_task_set_source_tag (task, dhf_installer_install_async);
  install = g_new0 (Install, 1);
  install->manifest = dhf_manifest_ref (manifest);
  g_task_set_task_data (task, install, (GDestroyNotify) install_free);

  if (!dhf_install_plan (manifest, metadata, installed != NULL && metadata == NULL, allow_downgrade,
                         &install->upgrade, &error))
    {
      g_task_return_error (task, g_steal_pointer (&error));
      return;
    }
  if (!dhf_hypervisor_is_connected (self->hypervisor))
    {
      g_task_return_new_error (task, DHF_ERROR, DHF_ERROR_HYPERVISOR_UNAVAILABLE,
                               "not connected to the hypervisor; try again later");
      return;
    }
  if (!g_hash_table_add (self->busy, g_strdup (name)))
    {
      g_task_return_new_error (task, DHF_ERROR, DHF_ERROR_INVALID_STATE,
                               "appliance '%s' is being installed or removed already", name);
      return;
    }
  if (install->upgrade)
    {
      install->uuid = g_strdup (dhf_appliance_get_uuid (installed));
      install->old_disk = g_strdup (metadata->disk_path);
    }
  install->domain_type = g_strdup (g_str_equal (self->config->domain_type, "auto")
                                       ? dhf_hypervisor_get_default_domain_type (self->hypervisor)
                                       : self->config->domain_type);
  prepare = g_task_new (self, NULL, on_disk_prepared, g_steal_pointer (&task));
  g_task_set_task_data (prepare, install, NULL);
  g_task_run_in_thread (prepare, prepare_disk_thread);
}

gchar *
dhf_installer_install_finish (DhfInstaller *self, GAsyncResult *result, gboolean *upgraded,
                              GError **error)
{
  Install *install = g_task_get_task_data (G_TASK (result));

  if (upgraded != NULL)
    *upgraded = install->upgrade;
  return g_task_propagate_pointer (G_TASK (result), error);
}

/* --- remove ----------------------------------------------------------- */

typedef struct
{
  DhfAppliance *appliance;
  gchar *name;
  gchar *disk_path; /* deleted after undefining, unless kept */
  gboolean force;
} Removal;

static void
removal_free (Removal *removal)
{
  g_clear_object (&removal->appliance);
  g_free (removal->name);
  g_free (removal->disk_path);
  g_free (removal);
}

/* Only files dhf made, inside its own storage directory, are deleted. */
static gboolean
is_own_disk (DhfInstaller *self, const gchar *path)
{
  g_autofree gchar *dir = NULL;

  if (path == NULL || !g_path_is_absolute (path))
    return FALSE;
  dir = g_path_get_dirname (path);
  return g_strcmp0 (dir, self->config->storage_dir) == 0;
}

/* Ends a removal either way: frees the name and the appliance's slot. */
static void
removal_done (GTask *task, GError *error)
{
  DhfInstaller *self = g_task_get_source_object (task);
  Removal *removal = g_task_get_task_data (task);

  g_hash_table_remove (self->busy, removal->name);
  dhf_appliance_release (removal->appliance);
  if (error != NULL)
    g_task_return_error (task, error);
  else
    g_task_return_boolean (task, TRUE);
}

static void
on_undefined (GObject *source, GAsyncResult *result, gpointer user_data)
{
  g_autoptr (GTask) task = user_data;
  Removal *removal = g_task_get_task_data (task);
  g_autoptr (GError) error = NULL;

  /* The hypervisor refuses to undefine a domain that is running, so the
   * disk is never deleted under a live guest. */
  if (!dhf_hypervisor_domain_op_finish (DHF_HYPERVISOR (source), result, &error))
    {
      removal_done (task, g_steal_pointer (&error));
      return;
    }
  if (removal->disk_path != NULL && g_unlink (removal->disk_path) < 0 && errno != ENOENT)
    g_warning ("removed %s but could not delete its disk %s: %s", removal->name, removal->disk_path,
               g_strerror (errno));
  dhf_log_appliance (G_LOG_LEVEL_MESSAGE, removal->name, "removed %s", removal->name);
  removal_done (task, NULL);
}

static void
on_destroyed_for_removal (GObject *source, GAsyncResult *result, gpointer user_data)
{
  g_autoptr (GTask) task = user_data;
  DhfInstaller *self = g_task_get_source_object (task);
  Removal *removal = g_task_get_task_data (task);
  g_autoptr (GError) error = NULL;

  if (!dhf_hypervisor_domain_op_finish (DHF_HYPERVISOR (source), result, &error)
      && !g_error_matches (error, DHF_ERROR, DHF_ERROR_INVALID_STATE))
    {
      removal_done (task, g_steal_pointer (&error));
      return;
    }
  dhf_hypervisor_domain_op_async (self->hypervisor, dhf_appliance_get_uuid (removal->appliance),
                                  DHF_DOMAIN_OP_UNDEFINE, NULL, on_undefined,
                                  g_steal_pointer (&task));
}

/* Runs once every lifecycle call queued before the removal is done, so
 * the state it checks is current. */
static void
start_removal (DhfAppliance *appliance, gpointer user_data)
{
  g_autoptr (GTask) task = user_data;
  DhfInstaller *self = g_task_get_source_object (task);
  Removal *removal = g_task_get_task_data (task);
  DhfApplianceState state = dhf_appliance_get_state_enum (appliance);

  if (state != DHF_APPLIANCE_STATE_SHUTOFF && !removal->force)
    {
      removal_done (task, g_error_new (DHF_ERROR, DHF_ERROR_INVALID_STATE,
                                       "appliance '%s' is %s; stop it first or remove with force",
                                       removal->name, dhf_appliance_state_to_string (state)));
      return;
    }
  dhf_hypervisor_domain_op_async (
      self->hypervisor, dhf_appliance_get_uuid (appliance),
      state != DHF_APPLIANCE_STATE_SHUTOFF ? DHF_DOMAIN_OP_DESTROY : DHF_DOMAIN_OP_UNDEFINE, NULL,
      state != DHF_APPLIANCE_STATE_SHUTOFF ? on_destroyed_for_removal : on_undefined,
      g_steal_pointer (&task));
}

void
dhf_installer_remove_async (DhfInstaller *self, DhfAppliance *appliance, gboolean force,
                            gboolean keep_storage, GAsyncReadyCallback callback, gpointer user_data)
{
  g_autoptr (GTask) task = g_task_new (self, NULL, callback, user_data);
  const DhfDomainMetadata *metadata = dhf_appliance_get_metadata (appliance);
  const gchar *name = dhf_dbus_appliance_get_name (DHF_DBUS_APPLIANCE (appliance));
  Removal *removal;

  g_task_set_source_tag (task, dhf_installer_remove_async);
  if (metadata == NULL)
    {
      g_task_return_new_error (task, DHF_ERROR, DHF_ERROR_NOT_SUPPORTED,
                               "'%s' was not installed by dhf; dhf does not remove it", name);
      return;
    }
  if (!g_hash_table_add (self->busy, g_strdup (name)))
    {
      g_task_return_new_error (task, DHF_ERROR, DHF_ERROR_INVALID_STATE,
                               "appliance '%s' is being installed or removed already", name);
      return;
    }
  removal = g_new0 (Removal, 1);
  removal->appliance = g_object_ref (appliance);
  removal->name = g_strdup (name);
  removal->force = force;
  if (!keep_storage && is_own_disk (self, metadata->disk_path))
    removal->disk_path = g_strdup (metadata->disk_path);
  g_task_set_task_data (task, removal, (GDestroyNotify) removal_free);
  dhf_appliance_run_exclusive (appliance, start_removal, g_steal_pointer (&task));
}

gboolean
dhf_installer_remove_finish (DhfInstaller *self, GAsyncResult *result, GError **error)
{
  return g_task_propagate_boolean (G_TASK (result), error);
}

static void
dhf_installer_init (DhfInstaller *self)
{
  self->busy = g_hash_table_new_full (g_str_hash, g_str_equal, g_free, NULL);
}

static void
dhf_installer_dispose (GObject *object)
{
  DhfInstaller *self = DHF_INSTALLER (object);

  g_clear_object (&self->hypervisor);
  g_clear_pointer (&self->busy, g_hash_table_unref);
  G_OBJECT_CLASS (dhf_installer_parent_class)->dispose (object);
}

static void
dhf_installer_class_init (DhfInstallerClass *klass)
{
  G_OBJECT_CLASS (klass)->dispose = dhf_installer_dispose;
}
