/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

#include <glib.h>

/* Logs about one appliance carry its name as the structured field
 * DHF_APPLIANCE, so `journalctl DHF_APPLIANCE=personal` finds them all. */
#define dhf_log_appliance(level, name, ...)                                                        \
  g_log_structured (G_LOG_DOMAIN, level, "DHF_APPLIANCE", name, "CODE_FILE", __FILE__,             \
                    "CODE_LINE", G_STRINGIFY (__LINE__), "CODE_FUNC", G_STRFUNC, "MESSAGE",        \
                    __VA_ARGS__)
