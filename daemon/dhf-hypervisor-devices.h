/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

#include "dhf-device-ops.h"
#include "dhf-hypervisor.h"

G_BEGIN_DECLS

/* The hypervisor's side of device assignment and of the display: libvirt
 * hot-plug, scheduler weights, send-key, screenshots and graphics fds.
 * Domains are named. */

/* The DhfDeviceOps of libvirt; ops_data is the DhfHypervisor. Attach uses
 * virDomainAttachDeviceFlags with the scope's AFFECT_LIVE / AFFECT_CONFIG
 * flags (CONFIG alone on an inactive domain, LIVE alone on a transient
 * one). Detach finds the device by its alias: libvirt matches an <input>
 * by type, bus and address, never by alias, so detaching with the bare
 * XML can take the domain's own tablet instead. Live, it detaches the
 * element copied from the live XML (address included) and reads the XML
 * again to see it gone; in the definition, virDomainDetachDeviceAlias.
 * A device already absent from a detach's scope counts as detached, one
 * already present in an attach's scope as attached, so that a retried or
 * undone step is harmless. set_weight writes cpu_shares when the
 * scheduler is "posix" (QEMU), weight otherwise (Xen credit, the test
 * driver), live. release_keys is virDomainSendKey with the Linux code set. */
const DhfDeviceOps *dhf_hypervisor_device_ops (void);

/* The domain's screen as PNG, scaled down to fit max_width x max_height
 * (0: no limit) keeping its proportions. virDomainScreenshot off the main
 * loop; the image (PPM from QEMU, PNG passed through) is decoded and
 * encoded with gdk-pixbuf. NOT_SUPPORTED from drivers without it. */
void dhf_hypervisor_screenshot_async (DhfHypervisor *self, const gchar *name, guint max_width,
                                      guint max_height, GCancellable *cancellable,
                                      GAsyncReadyCallback callback, gpointer user_data);
GBytes *dhf_hypervisor_screenshot_finish (DhfHypervisor *self, GAsyncResult *result,
                                          GError **error);

/* A connected socket to the domain's first graphics device
 * (virDomainOpenGraphicsFD); the caller owns the fd. */
void dhf_hypervisor_open_graphics_async (DhfHypervisor *self, const gchar *name,
                                         GCancellable *cancellable, GAsyncReadyCallback callback,
                                         gpointer user_data);
gint dhf_hypervisor_open_graphics_finish (DhfHypervisor *self, GAsyncResult *result,
                                          GError **error);

G_END_DECLS
