/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

#include <glib.h>
#include <linux/input.h>

G_BEGIN_DECLS

/* Recorded keyboard streams (tests/hotkey/recordings/NAME.events): one
 * event per line as evemu-record writes it, "E: SEC.USEC TYPE CODE VALUE"
 * (type and code in hex, value in decimal), '#' comments, evemu's header
 * lines (N:, I:, P:, B:, A:, L:, S:, R:) ignored. Lines starting "#>"
 * are for the tests:
 *
 *   #> bind COMBO TARGET          the binding the recording is made for
 *   #> fire TARGET held KEY...    the event above fires TARGET, KEY... held
 *   #> held [KEY...]              after the event above, exactly KEY... held
 *
 * KEY is a libevdev name (KEY_LEFTCTRL), in ascending code order. */

typedef struct
{
  guint after;   /* the check follows this many events */
  gchar *target; /* fire: the target; NULL for a held check */
  GArray *held;  /* guint key codes */
} HotkeyCheck;

typedef struct
{
  gchar *name;
  GArray *events;    /* struct input_event */
  GPtrArray *binds;  /* gchar *: COMBO, TARGET, COMBO, TARGET ... */
  GPtrArray *checks; /* HotkeyCheck, in file order */
} HotkeyRecording;

/* Loads recordings/name from the source tree (G_TEST_DIST); any line it
 * cannot read fails the test with the file and line. */
HotkeyRecording *hotkey_recording_load (const gchar *name);
void hotkey_recording_free (HotkeyRecording *recording);
G_DEFINE_AUTOPTR_CLEANUP_FUNC (HotkeyRecording, hotkey_recording_free)

/* The directory holding the recordings. */
gchar *hotkey_recording_dir (void);
/* How many fire checks the recording has. */
guint hotkey_recording_count_fires (HotkeyRecording *recording);
/* "KEY_TAB KEY_LEFTCTRL": held codes by name, for messages and asserts. */
gchar *hotkey_codes_to_string (GArray *codes);

G_END_DECLS
