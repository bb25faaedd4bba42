/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

#include <glib.h>

G_BEGIN_DECLS

/* The hypervisor operations the device engine needs, as one seam: dhfd
 * plugs in libvirt (dhf-hypervisor-devices.c), the unit tests a fake that
 * fails on purpose at any step. Every operation is synchronous and is
 * called on the engine's own worker thread, one at a time; data is the
 * implementation's. Domains are named. Each returns FALSE with error set
 * on failure (DHF_ERROR domain: NOT_FOUND, HYPERVISOR, NOT_SUPPORTED,
 * HYPERVISOR_UNAVAILABLE, ...). */

typedef enum
{
  DHF_DEVICE_SCOPE_LIVE = 1 << 0,   /* the running domain */
  DHF_DEVICE_SCOPE_CONFIG = 1 << 1, /* its persistent definition */
} DhfDeviceScope;

typedef struct
{
  /* xml: what dhf_device_to_xml() gives. */
  gboolean (*attach) (gpointer data, const gchar *domain, const gchar *xml, DhfDeviceScope scope,
                      GError **error);
  gboolean (*detach) (gpointer data, const gchar *domain, const gchar *xml, DhfDeviceScope scope,
                      GError **error);
  /* The aliases (DHF_DEVICE_ALIAS_PREFIX...) of the dhf devices in the
   * domain's live definition when active, else in its persistent one;
   * *active says which. An empty array when there are none. */
  GStrv (*list_attached) (gpointer data, const gchar *domain, gboolean *active, GError **error);
  /* The domain's CPU weight, live only: cpu_shares on QEMU, weight on Xen
   * and on the test driver. */
  gboolean (*set_weight) (gpointer data, const gchar *domain, guint weight, GError **error);
  /* Presses and releases the given Linux key codes (KEY_*) in the domain,
   * so that a modifier held down when the focus left is up again there. */
  gboolean (*release_keys) (gpointer data, const gchar *domain, const guint *keycodes,
                            guint n_keycodes, GError **error);
  /* Optional (NULL: the engine reads the live definition only). The
   * aliases of the dhf devices in the domain's persistent definition; of a
   * transient domain, its live one. The engine calls it after
   * list_attached said the domain is active, so that a device held in one
   * scope only (a half-done move, a domain started while a persistent
   * attach ran) is seen. */
  GStrv (*list_attached_config) (gpointer data, const gchar *domain, GError **error);
} DhfDeviceOps;

G_END_DECLS
