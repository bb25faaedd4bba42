/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

#include <libvirt/libvirt.h>

#include "dhf-hypervisor.h"

G_BEGIN_DECLS

/* For the hypervisor's other files (dhf-hypervisor-devices.c): the live
 * connection with a reference of the caller's own (virConnectClose it),
 * or NULL with HYPERVISOR_UNAVAILABLE while dhfd is reconnecting. Any
 * thread. */
virConnectPtr dhf_hypervisor_dup_connection (DhfHypervisor *self, GError **error);

G_END_DECLS
