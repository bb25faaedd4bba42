/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

#include <gio/gio.h>
#include <libvirt/libvirt.h>

G_BEGIN_DECLS

/* How the benchmarks on a real hypervisor run: the measurement on a thread
 * of its own while the main thread waits for SIGINT, SIGTERM and SIGHUP,
 * so that an interrupted or failed run still removes its domains and
 * stops its processes. */
typedef struct
{
  const gchar *program; /* the prefix of its messages */
  /* The measurement; returns when done (a failure calls dhf_bench_fail()). */
  void (*run) (void);
  /* Removes what the run made. Idempotent and safe from any thread (the
   * first caller cleans up, a second waits until that is done). failed:
   * the run failed, so its files are worth keeping. */
  void (*cleanup) (gboolean failed);
} DhfBenchRunner;

/* Checks that there are no arguments, starts the private message bus into
 * *bus (before any thread exists: GTestDBus sets environment variables),
 * runs runner->run and exits: 0 when it returned, 1 after a failure,
 * 128 + N after signal N. */
int dhf_bench_runner_main (const DhfBenchRunner *runner, int argc, GTestDBus **bus);

/* Prints "PROGRAM: MESSAGE", cleans up and exits 1. A failure caused by an
 * interrupt's cleanup under way is no news: it waits for that to exit. */
void dhf_bench_fail (const gchar *format, ...) G_GNUC_NORETURN G_GNUC_PRINTF (1, 2);

/* Destroys and undefines the domains named in names (n entries, NULL ones
 * skipped) on uri, reporting what fails on stderr; for cleanup. */
void dhf_bench_remove_domains (const gchar *uri, const gchar *const *names, guint n);

/* For virSetErrorFunc(): libvirt prints every error on stderr by default;
 * the benchmarks report them with their context instead. */
void dhf_bench_silence_libvirt (void *data, virErrorPtr error);

G_END_DECLS
