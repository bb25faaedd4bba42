/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

#include "dhf-device-ops.h"

G_BEGIN_DECLS

/* A DhfDeviceOps that keeps its own truth: per domain the dhf device
 * aliases in its live and persistent definitions, the CPU weights, and
 * every call in order as text ("attach B input-keyboard live|config",
 * "detach A input-mouse config", "list A", "weight B 1024", "keys A 29,42";
 * "list-config A" for the persistent definition; a failed call gets
 * " -> failed"). It behaves like dhfd's libvirt ops: a device already
 * absent from a detach's scope is detached, one present in an attach's
 * scope is attached; LIVE on a domain that is not running, and CONFIG on a
 * transient one, are dropped (an attach left with no scope fails); a
 * device live in one running domain cannot be attached live to another.
 * Calls can be made to fail: the Nth from now, or every one whose text
 * matches a glob pattern; and made to wait (block). Thread-safe: the
 * engine calls it from its worker. Devices are named by id
 * ("input-keyboard"); they are stored as their aliases. */

typedef struct _FakeOps FakeOps;

FakeOps *fake_ops_new (void);
void fake_ops_free (FakeOps *fake);
const DhfDeviceOps *fake_ops_vtable (void);

void fake_ops_add_domain (FakeOps *fake, const gchar *domain, gboolean active);
void fake_ops_remove_domain (FakeOps *fake, const gchar *domain);
/* Stopping drops the live devices; starting makes the persistent ones live. */
void fake_ops_set_active (FakeOps *fake, const gchar *domain, gboolean active);
/* A transient domain has no persistent definition (it is emptied). */
void fake_ops_set_transient (FakeOps *fake, const gchar *domain, gboolean transient);
/* From now on every call waits, before it is recorded, until unblock. */
void fake_ops_block (FakeOps *fake);
/* Waits until a call is waiting (from another thread than the caller's). */
void fake_ops_wait_blocked (FakeOps *fake);
void fake_ops_unblock (FakeOps *fake);
/* Puts a device in a domain's definitions without recording a call. */
void fake_ops_hold (FakeOps *fake, const gchar *domain, const gchar *id, DhfDeviceScope scope);
/* Takes it out of the given scopes, without recording a call. */
void fake_ops_drop (FakeOps *fake, const gchar *domain, const gchar *id, DhfDeviceScope scope);
/* Whether domain holds the device in each of the given scopes. */
gboolean fake_ops_holds (FakeOps *fake, const gchar *domain, const gchar *id, DhfDeviceScope scope);
/* Every domain that holds the device in any scope, sorted and joined with
 * ",", or "dom0" for none. */
gchar *fake_ops_where (FakeOps *fake, const gchar *id);
/* The last weight set, 0 when none. */
guint fake_ops_weight (FakeOps *fake, const gchar *domain);

void fake_ops_fail_nth (FakeOps *fake, guint n, gint code, const gchar *message);
void fake_ops_fail_matching (FakeOps *fake, const gchar *pattern, gint code, const gchar *message);
void fake_ops_clear_failures (FakeOps *fake);

/* The calls since the last take, joined with "; ". */
gchar *fake_ops_take_calls (FakeOps *fake);
guint fake_ops_count_calls (FakeOps *fake);

G_END_DECLS
