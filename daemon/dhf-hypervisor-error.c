/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include "config.h"

#include <libvirt/libvirt.h>
#include <libvirt/virterror.h>

#include "dhf-hypervisor-error.h"

DhfError
dhf_hypervisor_error_code (int vir_domain, int vir_code)
{
  switch (vir_code)
    {
      case VIR_ERR_NO_DOMAIN:
      case VIR_ERR_NO_DOMAIN_METADATA:
        return DHF_ERROR_NOT_FOUND;
      case VIR_ERR_OPERATION_INVALID:
        return DHF_ERROR_INVALID_STATE;
      case VIR_ERR_NO_SUPPORT:
      case VIR_ERR_ARGUMENT_UNSUPPORTED:
      case VIR_ERR_OPERATION_UNSUPPORTED:
        return DHF_ERROR_NOT_SUPPORTED;
      case VIR_ERR_NO_CONNECT:
      case VIR_ERR_INVALID_CONN:
        return DHF_ERROR_HYPERVISOR_UNAVAILABLE;
      case VIR_ERR_OPERATION_TIMEOUT:
      case VIR_ERR_AGENT_UNRESPONSIVE:
        return DHF_ERROR_TIMEOUT;
      case VIR_ERR_AUTH_FAILED:
      case VIR_ERR_AUTH_CANCELLED:
      case VIR_ERR_AUTH_UNAVAILABLE:
      case VIR_ERR_ACCESS_DENIED:
        return DHF_ERROR_NOT_AUTHORIZED;
      case VIR_ERR_INVALID_ARG:
        return DHF_ERROR_INVALID_ARGS;
      case VIR_ERR_DOM_EXIST:
        return DHF_ERROR_EXISTS;
      case VIR_ERR_OPERATION_ABORTED:
        return DHF_ERROR_CANCELLED;
      case VIR_ERR_SYSTEM_ERROR:
      case VIR_ERR_INTERNAL_ERROR:
      case VIR_ERR_RPC:
        /* A dropped connection to libvirtd surfaces as an RPC-domain failure. */
        if (vir_domain == VIR_FROM_RPC || vir_domain == VIR_FROM_REMOTE)
          return DHF_ERROR_HYPERVISOR_UNAVAILABLE;
        return DHF_ERROR_HYPERVISOR;
      default:
        return DHF_ERROR_HYPERVISOR;
    }
}

/* Reads libvirt's thread-local last error, so it must run on the thread
 * that made the failing call. */
void
dhf_hypervisor_set_error (GError **error, const gchar *what)
{
  virErrorPtr err = virGetLastError ();

  if (err == NULL || err->code == VIR_ERR_OK)
    {
      g_set_error (error, DHF_ERROR, DHF_ERROR_HYPERVISOR, "%s: unknown libvirt error", what);
      return;
    }
  g_set_error (error, DHF_ERROR, dhf_hypervisor_error_code (err->domain, err->code), "%s: %s", what,
               err->message != NULL ? err->message : "unknown libvirt error");
  virResetLastError ();
}

static void
ignore_error (void *opaque, virErrorPtr err)
{
  /* Errors reach callers as GErrors; libvirt's default handler would also
   * print every one of them to stderr. */
}

void
dhf_hypervisor_silence_default_handler (void)
{
  virSetErrorFunc (NULL, ignore_error);
}
