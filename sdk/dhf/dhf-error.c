/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include "config.h"

#include <gio/gio.h>

#include "dhf-error.h"

static const GDBusErrorEntry dhf_error_entries[] = {
  { DHF_ERROR_FAILED, "org.dhf.Framework1.Error.Failed" },
  { DHF_ERROR_INVALID_ARGS, "org.dhf.Framework1.Error.InvalidArgs" },
  { DHF_ERROR_INVALID_MANIFEST, "org.dhf.Framework1.Error.InvalidManifest" },
  { DHF_ERROR_NOT_FOUND, "org.dhf.Framework1.Error.NotFound" },
  { DHF_ERROR_EXISTS, "org.dhf.Framework1.Error.Exists" },
  { DHF_ERROR_INVALID_STATE, "org.dhf.Framework1.Error.InvalidState" },
  { DHF_ERROR_NOT_AUTHORIZED, "org.dhf.Framework1.Error.NotAuthorized" },
  { DHF_ERROR_HYPERVISOR_UNAVAILABLE, "org.dhf.Framework1.Error.HypervisorUnavailable" },
  { DHF_ERROR_HYPERVISOR, "org.dhf.Framework1.Error.Hypervisor" },
  { DHF_ERROR_NOT_SUPPORTED, "org.dhf.Framework1.Error.NotSupported" },
  { DHF_ERROR_TIMEOUT, "org.dhf.Framework1.Error.Timeout" },
  { DHF_ERROR_CANCELLED, "org.dhf.Framework1.Error.Cancelled" },
  { DHF_ERROR_PROTOCOL, "org.dhf.Framework1.Error.Protocol" },
  { DHF_ERROR_DISCONNECTED, "org.dhf.Framework1.Error.Disconnected" },
  { DHF_ERROR_LIMIT_EXCEEDED, "org.dhf.Framework1.Error.LimitExceeded" },
  { DHF_ERROR_UNAVAILABLE, "org.dhf.Framework1.Error.Unavailable" },
};

G_STATIC_ASSERT (G_N_ELEMENTS (dhf_error_entries) == DHF_ERROR_LAST);

/**
 * dhf_error_quark:
 *
 * Registers the %DHF_ERROR domain with GDBus on first use, so that errors
 * cross the bus with their code intact.
 *
 * Returns: the error quark
 *
 * Since: 0.1
 */
GQuark
dhf_error_quark (void)
{
  static gsize quark = 0;

  g_dbus_error_register_error_domain ("dhf-error-quark", &quark, dhf_error_entries,
                                      G_N_ELEMENTS (dhf_error_entries));
  return (GQuark) quark;
}

/**
 * dhf_error_to_dbus_name:
 * @code: a #DhfError
 *
 * Returns: (transfer none): the D-Bus error name for @code, e.g.
 *   "org.dhf.Framework1.Error.NotFound"
 *
 * Since: 0.1
 */
const gchar *
dhf_error_to_dbus_name (DhfError code)
{
  if ((guint) code >= G_N_ELEMENTS (dhf_error_entries))
    code = DHF_ERROR_FAILED;
  return dhf_error_entries[code].dbus_error_name;
}

/* Registers the D-Bus error mapping when libdhf-1 is loaded, so that
 * errors returned to the generated proxies arrive in DHF_ERROR even before
 * the program has named DHF_ERROR itself. */
__attribute__ ((constructor)) static void
dhf_error_register (void)
{
  (void) dhf_error_quark ();
}
