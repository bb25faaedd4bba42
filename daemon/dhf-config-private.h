/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

#include <glib.h>

#include "dhf-config.h"

G_BEGIN_DECLS

/* Shared by the files that read dhfd.conf (dhf-config.c and one file per
 * group of related keys). */

/* Reads an optional string key into *out (replacing it), stripped of
 * surrounding white space; a missing key leaves *out alone. FALSE with
 * DHF_ERROR_INVALID_ARGS "[GROUP] KEY: ..." when the value is empty or
 * malformed. */
gboolean dhf_config_read_string (GKeyFile *kf, const gchar *group, const gchar *key, gchar **out,
                                 GError **error);

/* [Devices], [Display] and [Hotkeys] (dhf-config-devices.c). */
gboolean dhf_config_read_devices (GKeyFile *kf, DhfConfig *self, GError **error);

G_END_DECLS
