/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

#include <gio/gio.h>

#include "dhf-device.h"

G_BEGIN_DECLS

/* The host's assignable devices, read from sysfs. The strings come from
 * the devices themselves (a USB device chooses its own serial and product
 * name): anything unprintable or oversized is dropped or escaped, never
 * trusted. The sysfs root is DHF_SYSFS_ROOT when set (tests), else /sys. */

/* Scans once: every USB device under ROOT/bus/usb/devices that is not a
 * hub nor a root hub nor an interface (names like "1-2.3", not "usb1" nor
 * "1-2.3:1.0"), every PCI function under ROOT/bus/pci/devices with its
 * IOMMU group (-1 without iommu_group), and one emulated input device per
 * entry of emulated_inputs ("keyboard", "mouse", "tablet"; NULL for none).
 * Sorted by id. A device whose attributes cannot be read is left out with
 * a debug message; a missing bus directory is no error. */
GPtrArray *dhf_device_inventory_scan (const gchar *sysfs_root, const gchar *const *emulated_inputs,
                                      GError **error);

/* The sysfs root in use: DHF_SYSFS_ROOT or "/sys". */
const gchar *dhf_device_inventory_default_root (void);

/* Watches for USB and PCI hot-plug (a NETLINK_KOBJECT_UEVENT socket of
 * the kernel's own group, which needs no udevd) and emits "changed" once
 * a burst of events has been quiet for 200 ms. Where netlink is not
 * available it logs that once and never emits. */
#define DHF_TYPE_DEVICE_MONITOR (dhf_device_monitor_get_type ())
G_DECLARE_FINAL_TYPE (DhfDeviceMonitor, dhf_device_monitor, DHF, DEVICE_MONITOR, GObject)

DhfDeviceMonitor *dhf_device_monitor_new (void);

G_END_DECLS
