/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

#include <gio/gio.h>
#include <linux/input.h>

#include "dhf-policy.h"

G_BEGIN_DECLS

/* Hotkeys (docs/display.md): dhfd reads the configured keyboards itself
 * and turns combos into switches. The matcher is a pure state machine
 * over input_event records, so recorded streams drive it in tests; the
 * reader feeds it from evdev devices through libevdev. */

/* Modifier bits of a combo; left and right keys count the same. */
typedef enum
{
  DHF_HOTKEY_CTRL = 1 << 0,
  DHF_HOTKEY_ALT = 1 << 1,
  DHF_HOTKEY_SHIFT = 1 << 2,
  DHF_HOTKEY_SUPER = 1 << 3,
} DhfHotkeyModifiers;

/* Parses a combo as dhf.policy(5) spells it ("Ctrl+Alt+Tab", any case)
 * into modifiers and a Linux key code (KEY_TAB). */
gboolean dhf_hotkey_parse (const gchar *combo, guint *modifiers, guint *keycode, GError **error);

typedef struct _DhfHotkeyMatcher DhfHotkeyMatcher;

DhfHotkeyMatcher *dhf_hotkey_matcher_new (void);
void dhf_hotkey_matcher_free (DhfHotkeyMatcher *self);
G_DEFINE_AUTOPTR_CLEANUP_FUNC (DhfHotkeyMatcher, dhf_hotkey_matcher_free)

/* Binds combo to target ("dom0", a domain name, "@next", "@previous" or
 * "@slot:N" with N 1-9). Binding a combo again replaces its target. */
gboolean dhf_hotkey_matcher_bind (DhfHotkeyMatcher *self, const gchar *combo, const gchar *target,
                                  GError **error);
void dhf_hotkey_matcher_clear (DhfHotkeyMatcher *self);
guint dhf_hotkey_matcher_get_n_bindings (DhfHotkeyMatcher *self);

/* Feeds one event (EV_KEY press 1 / repeat 2 / release 0; EV_SYN
 * SYN_DROPPED resets the held keys; everything else is ignored). Returns
 * the bound target when this event completes a combo: the press of its
 * key while exactly its modifiers are held (either side), no other key
 * held. Repeats never fire; the key must be released before the combo
 * fires again. NULL otherwise. The string is the matcher's. */
const gchar *dhf_hotkey_matcher_feed (DhfHotkeyMatcher *self, const struct input_event *event);

/* The keys held down now (Linux codes, ascending), for the switch to
 * release them in the domain losing the focus. */
GArray *dhf_hotkey_matcher_dup_held (DhfHotkeyMatcher *self);
/* Forgets every held key (a device went away). */
void dhf_hotkey_matcher_reset (DhfHotkeyMatcher *self);

/* Binds every allowed hotkey rule of policy, in evaluation order, the
 * first rule of a combo deciding it (deny unbinds it): TARGET NAME,
 * @dom0, @next or @previous; other targets are skipped with a warning.
 * Then, if slot_modifiers is set ("Ctrl+Alt"), binds MODS+1..9 to
 * "@slot:1".."@slot:9" unless a rule already decided that combo. */
gboolean dhf_hotkey_matcher_bind_policy (DhfHotkeyMatcher *self, DhfPolicy *policy,
                                         const gchar *slot_modifiers, GError **error);

/* The reader: opens each path (non-blocking, read-only, never grabbed:
 * the keys still reach their owner), through libevdev when it is an evdev
 * device, and as a plain stream of struct input_event records otherwise
 * (FIFOs and recorded files in tests). A device that goes away is opened
 * again every 2 s. Emits "activated" (const gchar *target, GArray *held:
 * guint key codes held when it fired) on the main context. */
#define DHF_TYPE_HOTKEYS (dhf_hotkeys_get_type ())
G_DECLARE_FINAL_TYPE (DhfHotkeys, dhf_hotkeys, DHF, HOTKEYS, GObject)

DhfHotkeys *dhf_hotkeys_new (const gchar *const *paths);
/* Takes the bindings of matcher (copied) for every device. */
void dhf_hotkeys_set_bindings (DhfHotkeys *self, DhfHotkeyMatcher *matcher);
void dhf_hotkeys_start (DhfHotkeys *self);
/* How many of the paths are open now. */
guint dhf_hotkeys_get_n_open (DhfHotkeys *self);

G_END_DECLS
