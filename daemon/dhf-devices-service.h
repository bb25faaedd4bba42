/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

#include <dhf/dhf.h>

#include "dhf-authority.h"
#include "dhf-device-engine.h"

G_BEGIN_DECLS

/* org.dhf.Framework1.Devices on D-Bus: the device engine's devices (List),
 * admin pins (Assign, Release; polkit org.dhf.framework1.devices.assign)
 * and the Changed signal, one per "device-changed" of the engine. */

#define DHF_TYPE_DEVICES_SERVICE (dhf_devices_service_get_type ())
G_DECLARE_FINAL_TYPE (DhfDevicesService, dhf_devices_service, DHF, DEVICES_SERVICE,
                      DhfDBusDevicesSkeleton)

DhfDevicesService *dhf_devices_service_new (DhfDeviceEngine *engine, DhfAuthority *authority);

/* A device as List and Changed describe it (a floating a{sv}). */
GVariant *dhf_devices_service_describe (const DhfDeviceStatus *status);

G_END_DECLS
