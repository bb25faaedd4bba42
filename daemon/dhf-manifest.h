/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

#include <dhf/dhf.h>

#include "dhf-device.h"

G_BEGIN_DECLS

/* An appliance manifest (docs/manifest.md), parsed and validated whole.
 * Manifests come from vendors and users: untrusted input. */

/* Upper bound on manifest text; larger input is refused before parsing. */
#define DHF_MANIFEST_MAX_SIZE (256 * 1024)

typedef enum
{
  DHF_NETWORK_MODE_NONE,
  DHF_NETWORK_MODE_NAT,
} DhfNetworkMode;

typedef enum
{
  DHF_DISPLAY_NONE,
  DHF_DISPLAY_VNC,
  DHF_DISPLAY_SPICE,
} DhfDisplayType;

typedef enum
{
  DHF_DISK_FORMAT_QCOW2,
  DHF_DISK_FORMAT_RAW,
} DhfDiskFormat;

typedef struct
{
  gchar *protocol; /* "tcp" or "udp" */
  guint16 host_port;
  guint16 guest_port;
} DhfManifestForward;

typedef struct
{
  gchar *name;        /* reverse-DNS service name, e.g. "com.example.Sync1" */
  gchar *description; /* may be NULL */
} DhfManifestService;

struct _DhfManifestDevice
{
  DhfDeviceKind kind;
  DhfDeviceMode mode;  /* pinned or follow-focus */
  gchar *input_type;   /* INPUT: "keyboard", "mouse" or "tablet"; else NULL */
  guint16 usb_vendor;  /* USB: vendor id */
  guint16 usb_product; /* USB: product id */
  gchar *usb_serial;   /* USB: optional serial, NULL when absent */
  gchar *pci_address;  /* PCI: "DDDD:BB:SS.F", normalised to lower case */
};

typedef struct _DhfManifest DhfManifest;

DhfManifest *dhf_manifest_parse (const gchar *text, gssize length, const gchar *base_dir,
                                 GError **error);
DhfManifest *dhf_manifest_ref (DhfManifest *self);
void dhf_manifest_unref (DhfManifest *self);
G_DEFINE_AUTOPTR_CLEANUP_FUNC (DhfManifest, dhf_manifest_unref)

const gchar *dhf_manifest_get_name (const DhfManifest *self);
const gchar *dhf_manifest_get_vendor (const DhfManifest *self);
const gchar *dhf_manifest_get_version (const DhfManifest *self);
const gchar *dhf_manifest_get_description (const DhfManifest *self);
DhfApplianceRole dhf_manifest_get_role (const DhfManifest *self);
guint64 dhf_manifest_get_memory (const DhfManifest *self);
guint dhf_manifest_get_vcpus (const DhfManifest *self);
gboolean dhf_manifest_get_autostart (const DhfManifest *self);
const gchar *dhf_manifest_get_disk_image (const DhfManifest *self);
DhfDiskFormat dhf_manifest_get_disk_format (const DhfManifest *self);
const gchar *dhf_manifest_get_boot_kernel (const DhfManifest *self);
const gchar *dhf_manifest_get_boot_initrd (const DhfManifest *self);
const gchar *dhf_manifest_get_boot_cmdline (const DhfManifest *self);
DhfNetworkMode dhf_manifest_get_network_mode (const DhfManifest *self);
GPtrArray *dhf_manifest_get_forwards (const DhfManifest *self);
DhfDisplayType dhf_manifest_get_display (const DhfManifest *self);
const gchar *const *dhf_manifest_get_tags (const DhfManifest *self);
GPtrArray *dhf_manifest_get_services (const DhfManifest *self);
GPtrArray *dhf_manifest_get_devices (const DhfManifest *self);
gchar *dhf_manifest_to_json (const DhfManifest *self);

gint dhf_version_compare (const gchar *a, const gchar *b);
gboolean dhf_size_parse (const gchar *text, guint64 *bytes);

const gchar *dhf_disk_format_to_string (DhfDiskFormat format);

G_END_DECLS
