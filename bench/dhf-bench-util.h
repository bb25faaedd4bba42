/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

#include <gio/gio.h>

G_BEGIN_DECLS

/* What the benchmarks share: finding and spawning dhfd, the private bus,
 * domain XML from a manifest, the figures, and the temporary directory. */

/* The dhfd to measure: $DHFD, else the one of this build; an error when it
 * is not an executable. */
gchar *dhf_bench_dhfd_path (GError **error);
/* Spawns dhfd on the bus at bus_address over the libvirt URI uri with the
 * configuration file config, plus the arguments in extra (NULL-terminated,
 * or NULL). launcher sets up its stdio; NULL silences its stderr. */
GSubprocess *dhf_bench_spawn_dhfd (GSubprocessLauncher *launcher, const gchar *dhfd,
                                   const gchar *bus_address, const gchar *uri, const gchar *config,
                                   const gchar *const *extra, GError **error);
/* A connection of our own to the message bus at address (GTestDBus's
 * private dbus-daemon). */
GDBusConnection *dhf_bench_bus_connect (const gchar *address, GError **error);
/* The libvirt domain XML dhfd builds from manifest_json for domain_type. */
gchar *dhf_bench_domain_xml (const gchar *manifest_json, const gchar *domain_type, GError **error);
/* Sorts the n values in place and returns the nearest-rank p quantile
 * (0 <= p <= 1). */
gdouble dhf_bench_percentile (gdouble *values, guint n, gdouble p);
/* The number of one "Key:   N kB" line of /proc/PID/status (key with its
 * colon), or -1. */
glong dhf_bench_status_kib (GPid pid, const gchar *key);
/* Removes a temporary tree; symbolic links are unlinked, never followed. */
void dhf_bench_remove_tree (const gchar *path);

G_END_DECLS
