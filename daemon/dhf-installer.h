/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

#include "dhf-appliance.h"
#include "dhf-config.h"
#include "dhf-hypervisor.h"
#include "dhf-manifest.h"

G_BEGIN_DECLS

/* Installs, upgrades and removes appliances: the only code that defines or
 * undefines domains and that creates or deletes appliance disks. */

#define DHF_TYPE_INSTALLER (dhf_installer_get_type ())
G_DECLARE_FINAL_TYPE (DhfInstaller, dhf_installer, DHF, INSTALLER, GObject)

DhfInstaller *dhf_installer_new (DhfHypervisor *hypervisor, const DhfConfig *config);

gboolean dhf_install_plan (const DhfManifest *manifest, const DhfDomainMetadata *installed,
                           gboolean installed_is_foreign, gboolean allow_downgrade,
                           gboolean *upgrade, GError **error);

void dhf_installer_install_async (DhfInstaller *self, DhfManifest *manifest,
                                  DhfAppliance *installed, gboolean allow_downgrade,
                                  GAsyncReadyCallback callback, gpointer user_data);
gchar *dhf_installer_install_finish (DhfInstaller *self, GAsyncResult *result, gboolean *upgraded,
                                     GError **error);

void dhf_installer_remove_async (DhfInstaller *self, DhfAppliance *appliance, gboolean force,
                                 gboolean keep_storage, GAsyncReadyCallback callback,
                                 gpointer user_data);
gboolean dhf_installer_remove_finish (DhfInstaller *self, GAsyncResult *result, GError **error);

G_END_DECLS
