/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

#include <glib.h>

G_BEGIN_DECLS

/* One assignable device of the host, as the device engine sees it
 * (docs/devices.md): a USB device or PCI function found in sysfs, or an
 * input device libvirt emulates ([Devices] EmulatedInput). dom0 owns every
 * device that no domain holds. */

typedef enum
{
  DHF_DEVICE_KIND_USB,
  DHF_DEVICE_KIND_PCI,
  DHF_DEVICE_KIND_INPUT,
} DhfDeviceKind;

typedef enum
{
  DHF_DEVICE_MODE_PINNED,       /* stays with one domain */
  DHF_DEVICE_MODE_FOLLOW_FOCUS, /* moves to the focused environment */
  DHF_DEVICE_MODE_DOM0,         /* nobody claims it: stays in dom0 */
} DhfDeviceMode;

typedef struct
{
  /* Stable and unique, safe in a libvirt alias and on a command line:
   * "usb-1-2.3" (the sysfs port name), "pci-0000:00:1f.3",
   * "input-keyboard". [A-Za-z0-9:._-], at most 64 bytes. */
  gchar *id;
  DhfDeviceKind kind;
  /* The policy subject (dhf.policy(5), without "device:"):
   * "usb:046d:c52b" or "usb:046d:c52b:SERIAL", "pci:0000:00:1f.3",
   * "input:keyboard". Lower-case hex. */
  gchar *selector;
  gchar *description; /* "Logitech USB Receiver", "keyboard (emulated)"; never NULL */

  /* USB */
  guint16 usb_vendor, usb_product;
  gchar *usb_serial; /* NULL when the device has none or it is not usable in a selector */
  guint usb_bus, usb_devnum;
  gchar *usb_port; /* "1-2.3" */
  /* PCI */
  gchar *pci_address; /* "0000:00:1f.3" */
  guint16 pci_vendor, pci_device;
  guint32 pci_class;   /* 0xCCSSPP */
  gint iommu_group;    /* -1: none (no IOMMU: the device cannot be assigned) */
  gboolean pci_bridge; /* bridges stay with dom0 and do not split a group */
  gchar *pci_driver;   /* the bound host driver ("e1000e", "vfio-pci"), NULL for none */
  /* INPUT */
  gchar *input_type; /* "keyboard", "mouse", "tablet" */
} DhfDevice;

DhfDevice *dhf_device_copy (const DhfDevice *device);
void dhf_device_free (DhfDevice *device);
G_DEFINE_AUTOPTR_CLEANUP_FUNC (DhfDevice, dhf_device_free)

const gchar *dhf_device_kind_to_string (DhfDeviceKind kind); /* "usb", "pci", "input" */
const gchar *dhf_device_mode_to_string (DhfDeviceMode mode); /* "pinned", "follow-focus", "dom0" */
gboolean dhf_device_mode_from_string (const gchar *text, DhfDeviceMode *mode);

/* The libvirt alias dhfd gives the device in a domain: "ua-dhf-" and the id
 * with every character outside [A-Za-z0-9_-] made '_'. dhfd recognises its
 * own devices in a domain's XML by this prefix. */
#define DHF_DEVICE_ALIAS_PREFIX "ua-dhf-"
gchar *dhf_device_alias (const DhfDevice *device);

/* The <hostdev>/<input> element that attaches or detaches the device:
 * USB as a managed subsystem hostdev by vendor, product, bus and device
 * number with startupPolicy='optional' (so a domain still starts when the
 * device is unplugged), PCI as a managed hostdev by address, input as
 * <input type=TYPE bus='usb'>; each with its alias. */
gchar *dhf_device_to_xml (const DhfDevice *device);

/* TRUE when a manifest's device wish names this device: same kind, and
 * vendor and product (and the serial, when the wish gives one); the PCI
 * address; the input type. */
typedef struct _DhfManifestDevice DhfManifestDevice;
gboolean dhf_device_matches_wish (const DhfDevice *device, const DhfManifestDevice *wish);

G_END_DECLS
