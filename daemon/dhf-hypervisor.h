/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

#include <gio/gio.h>
#include <dhf/dhf.h>

G_BEGIN_DECLS

/* The seam between dhfd and the hypervisor. Everything dhfd knows about a
 * domain arrives as a DhfDomainInfo snapshot taken off the main loop; every
 * blocking libvirt call runs in a worker thread; results and events are
 * delivered on the main context. Later backends (libxenctrl) and the
 * features the test driver lacks plug in here. */

typedef struct
{
  gchar *uuid;
  gchar *name;
  DhfApplianceState state;
  gchar *reason; /* "booted", "shutdown", "destroyed", "crashed", "user", ... */
  gboolean active;
  gboolean persistent;
  gboolean autostart;
  guint64 memory; /* bytes */
  guint vcpus;
  gchar *metadata; /* dhf <metadata> element, NULL when the domain has none */
  /* XDM endpoints from the live XML, only while the domain is active: */
  gboolean endpoints_known; /* FALSE: the live XML could not be read this time, and the
                             * two below say nothing (not "none") */
  gchar *xdm_channel_path;  /* host-side socket of channel org.dhf.xdm.0, or NULL */
  guint32 vsock_cid;        /* the guest's vsock CID, 0 for none */
} DhfDomainInfo;

DhfDomainInfo *dhf_domain_info_copy (const DhfDomainInfo *info);
void dhf_domain_info_free (DhfDomainInfo *info);
G_DEFINE_AUTOPTR_CLEANUP_FUNC (DhfDomainInfo, dhf_domain_info_free)

typedef enum
{
  DHF_DOMAIN_OP_START,
  DHF_DOMAIN_OP_SHUTDOWN, /* graceful request; returns at once */
  DHF_DOMAIN_OP_DESTROY,
  DHF_DOMAIN_OP_SUSPEND,
  DHF_DOMAIN_OP_RESUME,
  DHF_DOMAIN_OP_UNDEFINE,
} DhfDomainOp;

#define DHF_TYPE_HYPERVISOR (dhf_hypervisor_get_type ())
G_DECLARE_FINAL_TYPE (DhfHypervisor, dhf_hypervisor, DHF, HYPERVISOR, GObject)

DhfHypervisor *dhf_hypervisor_new (const gchar *uri);
void dhf_hypervisor_start (DhfHypervisor *self);
const gchar *dhf_hypervisor_get_uri (DhfHypervisor *self);
gboolean dhf_hypervisor_is_connected (DhfHypervisor *self);
const gchar *dhf_hypervisor_get_default_domain_type (DhfHypervisor *self);

void dhf_hypervisor_refresh_async (DhfHypervisor *self, const gchar *uuid,
                                   GAsyncReadyCallback callback, gpointer user_data);
gboolean dhf_hypervisor_refresh_finish (DhfHypervisor *self, GAsyncResult *result, GError **error);

void dhf_hypervisor_domain_op_async (DhfHypervisor *self, const gchar *uuid, DhfDomainOp op,
                                     GCancellable *cancellable, GAsyncReadyCallback callback,
                                     gpointer user_data);
gboolean dhf_hypervisor_domain_op_finish (DhfHypervisor *self, GAsyncResult *result,
                                          GError **error);

void dhf_hypervisor_define_async (DhfHypervisor *self, const gchar *xml, gboolean autostart,
                                  GCancellable *cancellable, GAsyncReadyCallback callback,
                                  gpointer user_data);
gchar *dhf_hypervisor_define_finish (DhfHypervisor *self, GAsyncResult *result, GError **error);

G_END_DECLS
