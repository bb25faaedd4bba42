/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

#include <glib.h>

G_BEGIN_DECLS

#define DHF_CONFIG_DEFAULT_PATH DHF_SYSCONFDIR "/dhfd.conf"

typedef enum
{
  DHF_AUTH_MODE_AUTO,     /* polkit on the system bus, peer-uid elsewhere */
  DHF_AUTH_MODE_POLKIT,   /* named polkit action per mutating method */
  DHF_AUTH_MODE_PEER_UID, /* callers running as dhfd's uid, or root */
} DhfAuthMode;

/* dhfd.conf, after validation. Every field has a default, so a missing
 * default file leaves a working daemon. */
typedef struct
{
  gchar *hypervisor_uri;
  gchar *domain_type; /* "auto", "kvm", "qemu", "xen" or "test" */
  gchar *storage_dir;
  guint shutdown_timeout_s;
  DhfAuthMode auth_mode;
  gchar **policy_dirs;     /* admin directory first, vendor directory last */
  gchar *policy_last_good; /* where the last good policy is saved */
} DhfConfig;

DhfConfig *dhf_config_new (void);
gboolean dhf_config_load (DhfConfig *self, const gchar *path, gboolean must_exist, GError **error);
gboolean dhf_config_load_data (DhfConfig *self, const gchar *data, const gchar *origin,
                               GError **error);
void dhf_config_free (DhfConfig *self);
G_DEFINE_AUTOPTR_CLEANUP_FUNC (DhfConfig, dhf_config_free)

G_END_DECLS
