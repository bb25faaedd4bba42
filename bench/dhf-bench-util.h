/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

#include <gio/gio.h>
#include <libvirt/libvirt.h>

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
/* The same with its stdout and stderr appended to log_path (every start
 * writes to the same log), and with --verbose when G_MESSAGES_DEBUG is
 * set. */
GSubprocess *dhf_bench_spawn_dhfd_logged (const gchar *dhfd, const gchar *bus_address,
                                          const gchar *uri, const gchar *config,
                                          const gchar *log_path, const gchar *const *extra,
                                          GError **error);
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

/* For the benchmarks on a real libvirtd (root only). */

/* The lock that tests/qemu/qemu-lib.sh takes too: every dhfd connects to
 * the XDM channel of every running domain of its libvirtd and QEMU serves
 * one client per channel, so two runs on one libvirtd would take each
 * other's guests' sessions. Waits up to DHF_BENCH_LOCK_WAIT_S for it and
 * holds it until the process exits. */
#define DHF_BENCH_HYPERVISOR_LOCK "/run/lock/dhf-real-hypervisor.lock"
#define DHF_BENCH_LOCK_WAIT_S     900
gboolean dhf_bench_lock_hypervisor (GError **error);
/* Runs the source tree's scripts/libvirtd-up: virtlogd and libvirtd run
 * and qemu:///system answers. */
gboolean dhf_bench_libvirtd_up (GError **error);
/* Removes the domains that a killed run of a benchmark or a real-hypervisor
 * suite left behind: dhfbench-PID-* and dhftest-PID-* whose PID is gone.
 * Call it with the hypervisor lock held, so that no such run is under way. */
gboolean dhf_bench_reclaim_stale_domains (virConnectPtr conn, GError **error);
/* Waits up to timeout_s seconds until dhfd serves on bus and is connected
 * to its hypervisor; fails at once when dhfd exits. */
gboolean dhf_bench_wait_for_dhfd (GDBusConnection *bus, GSubprocess *dhfd, guint timeout_s,
                                  GError **error);
/* Sends dhfd SIGTERM and waits for it to exit (killing it after 15 s);
 * TRUE when it exited with status 0. */
gboolean dhf_bench_stop_dhfd (GSubprocess *dhfd);

G_END_DECLS
