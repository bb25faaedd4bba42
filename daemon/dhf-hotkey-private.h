/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

#include "dhf-hotkey.h"

G_BEGIN_DECLS

/* What the reader (dhf-hotkeys.c) needs of the matcher beyond the
 * contract: every device keeps its own matcher, so it takes a copy of the
 * bindings, and after an evdev resync it rebuilds the held keys from the
 * device's state instead of replaying the synced events (a synced press
 * must not fire: its order relative to the other keys is lost). */

/* Replaces the bindings of self with copies of those of from; the held
 * keys of self are kept. */
void dhf_hotkey_matcher_copy_bindings (DhfHotkeyMatcher *self, DhfHotkeyMatcher *from);

/* Marks code (< KEY_CNT; others are ignored) as held or released without
 * firing anything. A key marked held counts as already fired: it must be
 * released before it completes a combo. */
void dhf_hotkey_matcher_set_held (DhfHotkeyMatcher *self, guint code, gboolean held);

G_END_DECLS
