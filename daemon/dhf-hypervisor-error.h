/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

#include <dhf/dhf.h>

G_BEGIN_DECLS

/* The one place where libvirt errors become dhf errors. */

DhfError dhf_hypervisor_error_code (int vir_domain, int vir_code);
void dhf_hypervisor_set_error (GError **error, const gchar *what);
void dhf_hypervisor_silence_default_handler (void);

G_END_DECLS
