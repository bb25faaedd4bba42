/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

#include "dhf-manifest.h"

G_BEGIN_DECLS

/* The namespaced <metadata> element is the one source of truth for dhf's
 * own data about a domain: the canonical manifest and the disk dhf made. */
#define DHF_METADATA_NS_URI "urn:dhf:appliance:1"
#define DHF_METADATA_PREFIX "dhf"
#define DHF_METADATA_SCHEMA 1

/* The virtio-serial (or Xen) channel appliances use to reach dhfd. */
#define DHF_XDM_CHANNEL_NAME "org.dhf.xdm.0"

typedef struct
{
  const gchar *domain_type; /* "kvm", "qemu", "xen" or "test" */
  const gchar *uuid;        /* keep this UUID (upgrades); NULL lets libvirt choose */
  const gchar *disk_path;   /* the appliance's private disk, or NULL for none */
  const gchar *installed;   /* ISO 8601 install time, recorded in the metadata */
  /* Xen: where the XDM channel's socket goes (DIR/NAME.sock); libxl needs
   * a path where QEMU picks one itself. NULL: DHF_XDM_XEN_SOCKET_DIR. */
  const gchar *xen_socket_dir;
  /* QEMU, Xen: keep the serial console's output in DIR/NAME.log (virtlogd
   * writes it; the directory must exist). NULL: the output is not kept. */
  const gchar *console_log_dir;
} DhfDomainXmlOptions;

#define DHF_XDM_XEN_SOCKET_DIR DHF_LOCALSTATEDIR "/xdm"

typedef struct
{
  DhfManifest *manifest; /* never NULL on success */
  gchar *disk_path;      /* the disk dhf made for it, or NULL */
  gchar *installed;      /* or NULL */
} DhfDomainMetadata;

gchar *dhf_domain_xml_build (const DhfManifest *manifest, const DhfDomainXmlOptions *options);
gchar *dhf_domain_metadata_build (const DhfManifest *manifest, const gchar *disk_path,
                                  const gchar *installed);
DhfDomainMetadata *dhf_domain_metadata_parse (const gchar *xml, GError **error);
void dhf_domain_metadata_free (DhfDomainMetadata *metadata);
G_DEFINE_AUTOPTR_CLEANUP_FUNC (DhfDomainMetadata, dhf_domain_metadata_free)

/* What the live XML of a running domain (virDomainGetXMLDesc) says about
 * reaching it over XDM. Both return TRUE with NULL / 0 when the domain has
 * no such device, and FALSE with DHF_ERROR_FAILED when the XML is not
 * well-formed or the device cannot be used safely (two channels of the
 * name, a relative path, a channel the hypervisor connects out of, ...):
 * dhfd then does not use it, rather than guess. */

/* The host-side unix socket of the channel named DHF_XDM_CHANNEL_NAME
 * (type unix, source mode bind, target type virtio or xen): an absolute,
 * canonical path short enough for a socket address. */
gboolean dhf_domain_xml_get_xdm_channel (const gchar *xml, gchar **path, GError **error);
/* The guest CID of the domain's virtio vsock device (3 and up). */
gboolean dhf_domain_xml_get_vsock_cid (const gchar *xml, guint32 *cid, GError **error);

G_END_DECLS
