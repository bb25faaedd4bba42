/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

#include <gio/gio.h>

#include "dhf-appliance.h"
#include "dhf-authority.h"
#include "dhf-config.h"
#include "dhf-hypervisor.h"
#include "dhf-policy-service.h"
#include "dhf-xdm-router.h"
#include "dhf-xdm-service.h"

G_BEGIN_DECLS

/* dhfd's devices and display: the glue between the daemon and the device
 * engine (dhf-device-engine.h). It builds the engine from dhfd.conf with
 * libvirt's device operations, lets it decide through the admin policy
 * and ask through the XDM prompt agents, feeds it the domains, the
 * host's devices (a sysfs scan, again at every hot-plug) and the hotkeys,
 * exports org.dhf.Framework1.Devices and .Display, and answers the XDM
 * framework service org.dhf.framework.Switch. The daemon tells it what
 * changes. Main context only. */

/* Told when the focus cannot be kept across restarts (text: why) and when
 * it can again (NULL): the Manager's status. */
typedef void (*DhfDaemonDevicesStatusFunc) (const gchar *text, gpointer user_data);

typedef struct
{
  const DhfConfig *config; /* read at start only */
  GDBusConnection *connection;
  DhfAuthority *authority;
  DhfHypervisor *hypervisor; /* the engine's DhfDeviceOps data */
  DhfPolicyService *policy;
  /* Describes domains for the policy (the daemon's lookup). */
  DhfPolicyDomainLookup lookup;
  gpointer lookup_data;
  DhfXdmRouter *xdm;          /* answers org.dhf.framework.Switch; may be NULL */
  DhfXdmService *xdm_service; /* its prompt agents answer "ask" switch rules; may be NULL */
  DhfDaemonDevicesStatusFunc status;
  gpointer status_data;
} DhfDaemonDevicesSetup;

#define DHF_TYPE_DAEMON_DEVICES (dhf_daemon_devices_get_type ())
G_DECLARE_FINAL_TYPE (DhfDaemonDevices, dhf_daemon_devices, DHF, DAEMON_DEVICES, GObject)

/* Builds and starts it all and exports both interfaces at DHF_OBJECT_PATH.
 * Nothing moves until the first dhf_daemon_devices_synced(). */
DhfDaemonDevices *dhf_daemon_devices_new (const DhfDaemonDevicesSetup *setup, GError **error);

/* After every snapshot of a domain (appliance: its object). */
void dhf_daemon_devices_domain_changed (DhfDaemonDevices *self, const DhfDomainInfo *info,
                                        DhfAppliance *appliance);
void dhf_daemon_devices_domain_removed (DhfDaemonDevices *self, const gchar *name);
/* After every full list of the domains (each hypervisor sync). */
void dhf_daemon_devices_synced (DhfDaemonDevices *self);
/* After every publish of the policy service (a new policy may be in
 * force): verdicts and hotkeys follow it. */
void dhf_daemon_devices_policy_changed (DhfDaemonDevices *self);

/* "dom0" or the focused domain's name. */
const gchar *dhf_daemon_devices_get_focused (DhfDaemonDevices *self);
/* The focus policy questions are about: while the engine plans a switch,
 * the domain being switched to (so that device rules on @focused follow
 * the switch); else the focused one. */
const gchar *dhf_daemon_devices_get_planning_focus (DhfDaemonDevices *self);

/* Stops it before the daemon lets go of what it uses (the hypervisor the
 * engine's operations run on, the policy, the XDM service): no more
 * hotkeys, hot-plug or switch calls; the engine stops (queued requests
 * fail, the running hypervisor call is waited for, nothing more moves,
 * its state file is flushed). Idempotent; disposing does it too. */
void dhf_daemon_devices_shutdown (DhfDaemonDevices *self);

G_END_DECLS
