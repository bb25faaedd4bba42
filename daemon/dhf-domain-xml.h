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
} DhfDomainXmlOptions;

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

G_END_DECLS
