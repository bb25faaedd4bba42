/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

#if !defined(DHF_INSIDE) && !defined(DHF_COMPILATION)
#error "Only <dhf/dhf.h> can be included directly."
#endif

#include <glib.h>

G_BEGIN_DECLS

/**
 * DHF_ERROR:
 *
 * The one error domain of dhf. Every code maps to the D-Bus error
 * `org.dhf.Framework1.Error.<Name>`, so an error raised in dhfd reaches a
 * libdhf-1 caller with the same domain and code.
 *
 * Since: 0.1
 */
#define DHF_ERROR (dhf_error_quark ())

/**
 * DhfError:
 * @DHF_ERROR_FAILED: Something went wrong that fits no other code.
 * @DHF_ERROR_INVALID_ARGS: A call's arguments are malformed.
 * @DHF_ERROR_INVALID_MANIFEST: An appliance manifest failed validation.
 * @DHF_ERROR_NOT_FOUND: No such appliance (or other named object).
 * @DHF_ERROR_EXISTS: The object already exists and may not be replaced.
 * @DHF_ERROR_INVALID_STATE: The object is in the wrong state for the call
 *   (e.g. starting a running appliance).
 * @DHF_ERROR_NOT_AUTHORIZED: The caller is not allowed to do this.
 * @DHF_ERROR_HYPERVISOR_UNAVAILABLE: The hypervisor cannot be reached now;
 *   dhfd keeps trying to reconnect.
 * @DHF_ERROR_HYPERVISOR: The hypervisor refused or failed the operation.
 * @DHF_ERROR_NOT_SUPPORTED: The hypervisor or build does not support this.
 * @DHF_ERROR_TIMEOUT: The operation did not finish in time.
 * @DHF_ERROR_CANCELLED: The operation was cancelled.
 * @DHF_ERROR_PROTOCOL: A peer broke the XDM wire protocol (malformed frame,
 *   unknown message type, no common protocol version). Since: 0.2
 * @DHF_ERROR_DISCONNECTED: The XDM connection to dhfd was lost before the
 *   operation completed. Since: 0.2
 * @DHF_ERROR_LIMIT_EXCEEDED: A quota or queue limit refused the request
 *   (calls in flight, queued bytes, registrations, subscriptions). Since: 0.2
 * @DHF_ERROR_UNAVAILABLE: The service's provider went away, or no provider
 *   is connected. Since: 0.2
 *
 * Error codes in the %DHF_ERROR domain.
 *
 * Since: 0.1
 */
typedef enum
{
  DHF_ERROR_FAILED,
  DHF_ERROR_INVALID_ARGS,
  DHF_ERROR_INVALID_MANIFEST,
  DHF_ERROR_NOT_FOUND,
  DHF_ERROR_EXISTS,
  DHF_ERROR_INVALID_STATE,
  DHF_ERROR_NOT_AUTHORIZED,
  DHF_ERROR_HYPERVISOR_UNAVAILABLE,
  DHF_ERROR_HYPERVISOR,
  DHF_ERROR_NOT_SUPPORTED,
  DHF_ERROR_TIMEOUT,
  DHF_ERROR_CANCELLED,
  DHF_ERROR_PROTOCOL,
  DHF_ERROR_DISCONNECTED,
  DHF_ERROR_LIMIT_EXCEEDED,
  DHF_ERROR_UNAVAILABLE,
  /*< private >*/
  DHF_ERROR_LAST
} DhfError;

GQuark dhf_error_quark (void);
const gchar *dhf_error_to_dbus_name (DhfError code);

G_END_DECLS
