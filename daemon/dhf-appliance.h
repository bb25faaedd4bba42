/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

#include <dhf/dhf.h>

#include "dhf-authority.h"
#include "dhf-domain-xml.h"
#include "dhf-hypervisor.h"

G_BEGIN_DECLS

/* One appliance on D-Bus (org.dhf.Framework1.Appliance), mirroring one
 * libvirt domain. Its properties only ever change from hypervisor
 * snapshots, so what D-Bus shows is what libvirt last said. */

#define DHF_TYPE_APPLIANCE (dhf_appliance_get_type ())
G_DECLARE_FINAL_TYPE (DhfAppliance, dhf_appliance, DHF, APPLIANCE, DhfDBusApplianceSkeleton)

DhfAppliance *dhf_appliance_new (DhfHypervisor *hypervisor, DhfAuthority *authority,
                                 guint default_shutdown_timeout_s, const DhfDomainInfo *info);
void dhf_appliance_update (DhfAppliance *self, const DhfDomainInfo *info);
void dhf_appliance_vanished (DhfAppliance *self);
gchar *dhf_appliance_path_for_name (const gchar *name);

typedef void (*DhfApplianceExclusiveFunc) (DhfAppliance *self, gpointer user_data);
void dhf_appliance_run_exclusive (DhfAppliance *self, DhfApplianceExclusiveFunc func,
                                  gpointer user_data);
void dhf_appliance_release (DhfAppliance *self);

const gchar *dhf_appliance_get_uuid (DhfAppliance *self);
const gchar *dhf_appliance_get_object_path (DhfAppliance *self);
DhfApplianceState dhf_appliance_get_state_enum (DhfAppliance *self);
const DhfDomainMetadata *dhf_appliance_get_metadata (DhfAppliance *self);

G_END_DECLS
