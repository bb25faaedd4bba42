/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* The hotkey reader (DhfHotkeys) on FIFOs: recorded streams written in
 * pieces that split records, writers that go away and come back, a path
 * that appears late, two devices at once, a recording read from a file.
 * There is no /dev/input here: the evdev path runs against FIFOs that
 * answer libevdev's ioctls as a keyboard would (fake-evdev.c). */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <glib/gstdio.h>

#include "dhf-hotkey.h"

#include "dhf-test-util.h"
#include "fake-evdev.h"
#include "hotkey-log.h"
#include "hotkey-recording.h"

#define WAIT_TIMEOUT_S 20
/* Bound on every stream the tests write: what follows it in the stream
 * has been read once it fired. */
#define SENTINEL_COMBO  "Ctrl+Alt+Shift+Super+F24"
#define SENTINEL_TARGET "@slot:9"

typedef struct
{
  gchar *target;
  GArray *held;
} Activation;

typedef struct
{
  gchar *tmpdir;
  DhfHotkeys *hotkeys;
  GPtrArray *activations; /* Activation */
} Fixture;

static void
activation_free (gpointer data)
{
  Activation *activation = data;

  g_free (activation->target);
  g_array_unref (activation->held);
  g_free (activation);
}

static void
on_activated (DhfHotkeys *hotkeys, const gchar *target, GArray *held, gpointer user_data)
{
  Fixture *fx = user_data;
  Activation *activation = g_new0 (Activation, 1);

  activation->target = g_strdup (target);
  activation->held = g_array_copy (held);
  g_ptr_array_add (fx->activations, activation);
}

static void
fixture_set_up (Fixture *fx, gconstpointer data)
{
  g_autoptr (GError) error = NULL;

  fx->tmpdir = g_dir_make_tmp ("dhf-hotkeys-XXXXXX", &error);
  g_assert_no_error (error);
  fx->activations = g_ptr_array_new_with_free_func (activation_free);
  hotkey_log_clear ();
}

static void
fixture_tear_down (Fixture *fx, gconstpointer data)
{
  g_clear_object (&fx->hotkeys);
  /* nothing of the reader may be left on the main context */
  while (g_main_context_iteration (NULL, FALSE))
    ;
  g_ptr_array_unref (fx->activations);
  /* nothing here is worth a warning */
  hotkey_log_assert_warnings (NULL);
  fake_evdev_clear ();
  dhf_test_remove_tree (fx->tmpdir);
  g_free (fx->tmpdir);
}

static gboolean
on_tick (gpointer user_data)
{
  return G_SOURCE_CONTINUE;
}

/* Runs the main loop until done(fx) or the timeout, which fails. */
static void
wait_for (Fixture *fx, gboolean (*done) (Fixture *fx, gpointer data), gpointer data,
          const gchar *what)
{
  gint64 deadline = g_get_monotonic_time () + WAIT_TIMEOUT_S * G_USEC_PER_SEC;
  /* wakes the loop up to look at the deadline */
  guint tick = g_timeout_add (50, on_tick, NULL);

  while (!done (fx, data))
    {
      if (g_get_monotonic_time () > deadline)
        g_error ("timed out waiting for %s", what);
      g_main_context_iteration (NULL, TRUE);
    }
  g_source_remove (tick);
}

static gboolean
has_activations (Fixture *fx, gpointer data)
{
  return fx->activations->len >= GPOINTER_TO_UINT (data);
}

static void
wait_activations (Fixture *fx, guint n)
{
  wait_for (fx, has_activations, GUINT_TO_POINTER (n), "activations");
}

static gboolean
has_n_open (Fixture *fx, gpointer data)
{
  return dhf_hotkeys_get_n_open (fx->hotkeys) == GPOINTER_TO_UINT (data);
}

static void
wait_n_open (Fixture *fx, guint n)
{
  wait_for (fx, has_n_open, GUINT_TO_POINTER (n), "devices to open or close");
}

/* Lets the main loop run for a while: for "nothing else happens" checks,
 * which only ever pass more often on a slow machine, never fail. */
static void
run_for (Fixture *fx, guint ms)
{
  gint64 end = g_get_monotonic_time () + ms * 1000;
  guint tick = g_timeout_add (50, on_tick, NULL);

  while (g_get_monotonic_time () < end)
    g_main_context_iteration (NULL, TRUE);
  g_source_remove (tick);
}

/* Whatever the reader can do now, it does. */
static void
drain (void)
{
  while (g_main_context_pending (NULL))
    g_main_context_iteration (NULL, FALSE);
}

static gchar *
make_fifo (Fixture *fx, const gchar *name)
{
  gchar *path = g_build_filename (fx->tmpdir, name, NULL);

  g_assert_cmpint (mkfifo (path, 0600), ==, 0);
  return path;
}

static gboolean
writer_opened (Fixture *fx, gpointer data)
{
  gpointer *args = data;
  gint fd = open (args[0], O_WRONLY | O_NONBLOCK | O_CLOEXEC);

  if (fd < 0)
    {
      /* ENXIO: nobody has it open for reading (yet) */
      g_assert_cmpint (errno, ==, ENXIO);
      return FALSE;
    }
  *(gint *) args[1] = fd;
  return TRUE;
}

/* Opens the FIFO for writing once the reader has it open. */
static gint
open_writer (Fixture *fx, const gchar *path)
{
  gint fd = -1;
  gpointer args[] = { (gpointer) path, &fd };
  gint flags;

  wait_for (fx, writer_opened, args, "the reader to open the FIFO");
  flags = fcntl (fd, F_GETFL);
  g_assert_cmpint (fcntl (fd, F_SETFL, flags & ~O_NONBLOCK), ==, 0);
  return fd;
}

static void
write_all (gint fd, const void *data, gsize length)
{
  const guint8 *p = data;

  while (length > 0)
    {
      gssize n = write (fd, p, length);

      if (n < 0 && errno == EINTR)
        continue;
      g_assert_cmpint (n, >, 0);
      p += n;
      length -= (gsize) n;
    }
}

/* Writes the events in pieces of awkward sizes, letting the reader read
 * each piece before the next: most records arrive split. */
static void
write_in_pieces (gint fd, GArray *events)
{
  static const gsize pieces[] = { 1, 5, 23, 24, 25, 7, 48, 3, 71, 2, 40 };
  const guint8 *bytes = (const guint8 *) events->data;
  gsize length = events->len * sizeof (struct input_event);
  gsize offset = 0;

  for (guint i = 0; offset < length; i++)
    {
      gsize n = MIN (pieces[i % G_N_ELEMENTS (pieces)], length - offset);

      write_all (fd, bytes + offset, n);
      offset += n;
      drain ();
    }
}

static void
append_key (GArray *events, guint code, gint value)
{
  struct input_event key = { .type = EV_KEY, .code = (guint16) code, .value = value };
  struct input_event report = { .type = EV_SYN, .code = SYN_REPORT, .value = 0 };

  g_array_append_val (events, key);
  g_array_append_val (events, report);
}

/* Presses the keys in order and releases them in reverse. */
static void
append_combo (GArray *events, const guint *codes, guint n)
{
  for (guint i = 0; i < n; i++)
    append_key (events, codes[i], 1);
  for (guint i = n; i > 0; i--)
    append_key (events, codes[i - 1], 0);
}

static const guint ctrl_alt_tab[] = { KEY_LEFTCTRL, KEY_LEFTALT, KEY_TAB };
static const guint sentinel[] = { KEY_LEFTCTRL, KEY_LEFTALT, KEY_LEFTSHIFT, KEY_LEFTMETA, KEY_F24 };

static GArray *
new_events (void)
{
  return g_array_new (FALSE, FALSE, sizeof (struct input_event));
}

static void
write_sentinel (gint fd)
{
  g_autoptr (GArray) events = new_events ();

  append_combo (events, sentinel, G_N_ELEMENTS (sentinel));
  write_in_pieces (fd, events);
}

/* The same in one write, as an evdev device hands out whole records. */
static void
evdev_write_sentinel (gint fd)
{
  g_autoptr (GArray) events = new_events ();

  append_combo (events, sentinel, G_N_ELEMENTS (sentinel));
  write_all (fd, events->data, events->len * sizeof (struct input_event));
  drain ();
}

static void
assert_activation (Fixture *fx, guint index, const gchar *target, const gchar *held)
{
  Activation *activation;
  g_autofree gchar *got = NULL;

  g_assert_cmpuint (index, <, fx->activations->len);
  activation = g_ptr_array_index (fx->activations, index);
  got = hotkey_codes_to_string (activation->held);
  g_assert_cmpstr (activation->target, ==, target);
  g_assert_cmpstr (got, ==, held);
}

static void
start_reader (Fixture *fx, const gchar *const *paths, DhfHotkeyMatcher *bindings)
{
  fx->hotkeys = dhf_hotkeys_new (paths);
  g_signal_connect (fx->hotkeys, "activated", G_CALLBACK (on_activated), fx);
  dhf_hotkeys_set_bindings (fx->hotkeys, bindings);
  dhf_hotkeys_start (fx->hotkeys);
}

static DhfHotkeyMatcher *
standard_bindings (void)
{
  DhfHotkeyMatcher *matcher = dhf_hotkey_matcher_new ();

  g_assert_true (dhf_hotkey_matcher_bind (matcher, "Ctrl+Alt+Tab", "@next", NULL));
  g_assert_true (dhf_hotkey_matcher_bind (matcher, SENTINEL_COMBO, SENTINEL_TARGET, NULL));
  return matcher;
}

/* Every recording through a FIFO, split across writes: the reader fires
 * what the matcher does, with the same held keys, and nothing else. */
static void
test_recordings (Fixture *fx, gconstpointer data)
{
  g_autofree gchar *dir_path = hotkey_recording_dir ();
  g_autoptr (GDir) dir = g_dir_open (dir_path, 0, NULL);
  g_autoptr (GPtrArray) names = g_ptr_array_new_with_free_func (g_free);
  g_autofree gchar *path = make_fifo (fx, "kbd");
  const gchar *paths[] = { path, NULL };
  g_autoptr (DhfHotkeyMatcher) bindings = dhf_hotkey_matcher_new ();
  const gchar *name;
  guint total_fires = 0;
  gint fd;

  g_assert_nonnull (dir);
  while ((name = g_dir_read_name (dir)) != NULL)
    if (g_str_has_suffix (name, ".events"))
      g_ptr_array_add (names, g_strdup (name));
  g_assert_cmpuint (names->len, >=, 10);

  start_reader (fx, paths, bindings);
  g_assert_cmpuint (dhf_hotkeys_get_n_open (fx->hotkeys), ==, 1);
  fd = open_writer (fx, path);

  for (guint r = 0; r < names->len; r++)
    {
      g_autoptr (HotkeyRecording) recording = hotkey_recording_load (names->pdata[r]);
      guint first = fx->activations->len;
      guint fire = 0;

      g_test_message ("%s", (const gchar *) names->pdata[r]);
      dhf_hotkey_matcher_clear (bindings);
      for (guint i = 0; i < recording->binds->len; i += 2)
        g_assert_true (dhf_hotkey_matcher_bind (bindings, recording->binds->pdata[i],
                                                recording->binds->pdata[i + 1], NULL));
      g_assert_true (dhf_hotkey_matcher_bind (bindings, SENTINEL_COMBO, SENTINEL_TARGET, NULL));
      dhf_hotkeys_set_bindings (fx->hotkeys, bindings);

      write_in_pieces (fd, recording->events);
      write_sentinel (fd);
      total_fires += hotkey_recording_count_fires (recording);
      wait_activations (fx, first + hotkey_recording_count_fires (recording) + 1);

      for (guint c = 0; c < recording->checks->len; c++)
        {
          HotkeyCheck *check = g_ptr_array_index (recording->checks, c);
          g_autofree gchar *held = NULL;

          if (check->target == NULL)
            continue;
          held = hotkey_codes_to_string (check->held);
          assert_activation (fx, first + fire, check->target, held);
          fire++;
        }
      assert_activation (fx, first + fire, SENTINEL_TARGET,
                         "KEY_LEFTCTRL KEY_LEFTSHIFT KEY_LEFTALT KEY_LEFTMETA KEY_F24");
      g_assert_cmpuint (fx->activations->len, ==, first + fire + 1);
    }
  g_assert_cmpuint (total_fires, >=, 10);
  g_assert_cmpuint (dhf_hotkeys_get_n_open (fx->hotkeys), ==, 1);
  close (fd);
}

/* The writer goes away (EOF): the device is closed and its keys forgotten,
 * then opened again, and a new writer's combos are seen. */
static void
test_reopen (Fixture *fx, gconstpointer data)
{
  g_autofree gchar *path = make_fifo (fx, "kbd");
  const gchar *paths[] = { path, NULL };
  g_autoptr (DhfHotkeyMatcher) bindings = standard_bindings ();
  g_autoptr (GArray) events = new_events ();
  struct input_event tab_press = { .type = EV_KEY, .code = KEY_TAB, .value = 1 };
  gint fd;

  start_reader (fx, paths, bindings);
  fd = open_writer (fx, path);
  append_combo (events, ctrl_alt_tab, G_N_ELEMENTS (ctrl_alt_tab));
  write_in_pieces (fd, events);
  wait_activations (fx, 1);
  assert_activation (fx, 0, "@next", "KEY_TAB KEY_LEFTCTRL KEY_LEFTALT");

  /* Ctrl and Alt down, half of Tab's press, and the writer is gone */
  g_array_set_size (events, 0);
  append_key (events, KEY_LEFTCTRL, 1);
  append_key (events, KEY_LEFTALT, 1);
  write_in_pieces (fd, events);
  write_all (fd, &tab_press, sizeof tab_press / 2);
  close (fd);
  wait_n_open (fx, 0);
  g_assert_cmpuint (hotkey_log_count (G_LOG_LEVEL_MESSAGE,
                                      "*/kbd: end of stream inside a record (12 of 24 bytes); "
                                      "opening it again every 2 s"),
                    ==, 1);

  /* A new writer: the half record is gone, and so are Ctrl and Alt, so Tab
   * alone does not fire. */
  fd = open_writer (fx, path);
  g_assert_cmpuint (dhf_hotkeys_get_n_open (fx->hotkeys), ==, 1);
  g_array_set_size (events, 0);
  append_key (events, KEY_TAB, 1);
  append_key (events, KEY_TAB, 0);
  append_combo (events, ctrl_alt_tab, G_N_ELEMENTS (ctrl_alt_tab));
  write_in_pieces (fd, events);
  write_sentinel (fd);
  wait_activations (fx, 3);
  assert_activation (fx, 1, "@next", "KEY_TAB KEY_LEFTCTRL KEY_LEFTALT");
  assert_activation (fx, 2, SENTINEL_TARGET,
                     "KEY_LEFTCTRL KEY_LEFTSHIFT KEY_LEFTALT KEY_LEFTMETA KEY_F24");
  g_assert_cmpuint (fx->activations->len, ==, 3);

  /* and once more, a writer that closes cleanly */
  close (fd);
  wait_n_open (fx, 0);
  g_assert_cmpuint (
      hotkey_log_count (G_LOG_LEVEL_MESSAGE, "*/kbd: end of stream; opening it again*"), ==, 1);
  fd = open_writer (fx, path);
  write_sentinel (fd);
  wait_activations (fx, 4);
  assert_activation (fx, 3, SENTINEL_TARGET,
                     "KEY_LEFTCTRL KEY_LEFTSHIFT KEY_LEFTALT KEY_LEFTMETA KEY_F24");
  close (fd);
}

static guint
count_missing (void)
{
  return hotkey_log_count (G_LOG_LEVEL_MESSAGE,
                           "hotkeys: */later does not exist (yet); looking for it every 2 s");
}

static gboolean
has_two_missing_messages (Fixture *fx, gpointer data)
{
  return count_missing () >= 2;
}

/* A path that does not exist at start is logged once, looked for again,
 * and read when it appears. */
static void
test_missing_path (Fixture *fx, gconstpointer data)
{
  g_autofree gchar *path = g_build_filename (fx->tmpdir, "later", NULL);
  const gchar *paths[] = { path, NULL };
  g_autoptr (DhfHotkeyMatcher) bindings = standard_bindings ();
  g_autoptr (GArray) events = new_events ();
  gint fd;

  start_reader (fx, paths, bindings);
  g_assert_cmpuint (dhf_hotkeys_get_n_open (fx->hotkeys), ==, 0);
  g_assert_cmpuint (count_missing (), ==, 1);
  /* a few more attempts fail, silently */
  run_for (fx, 4500);
  g_assert_cmpuint (dhf_hotkeys_get_n_open (fx->hotkeys), ==, 0);
  g_assert_cmpuint (count_missing (), ==, 1);

  g_free (make_fifo (fx, "later"));
  fd = open_writer (fx, path);
  g_assert_cmpuint (dhf_hotkeys_get_n_open (fx->hotkeys), ==, 1);
  append_combo (events, ctrl_alt_tab, G_N_ELEMENTS (ctrl_alt_tab));
  write_in_pieces (fd, events);
  wait_activations (fx, 1);
  assert_activation (fx, 0, "@next", "KEY_TAB KEY_LEFTCTRL KEY_LEFTALT");

  /* gone again after the writer closes: logged again, once */
  close (fd);
  wait_n_open (fx, 0);
  g_assert_cmpint (g_unlink (path), ==, 0);
  wait_for (fx, has_two_missing_messages, NULL, "the path to be missed again");
  g_assert_cmpuint (count_missing (), ==, 2);
}

/* Two keyboards: each its own held keys. Ctrl+Alt on one and Tab on the
 * other is not a combo; each fires with its own keys. */
static void
test_two_devices (Fixture *fx, gconstpointer data)
{
  g_autofree gchar *path_a = make_fifo (fx, "kbd-a");
  g_autofree gchar *path_b = make_fifo (fx, "kbd-b");
  const gchar *paths[] = { path_a, path_b, NULL };
  g_autoptr (DhfHotkeyMatcher) bindings = standard_bindings ();
  g_autoptr (GArray) a = new_events ();
  g_autoptr (GArray) b = new_events ();
  gint fd_a;
  gint fd_b;

  g_assert_true (dhf_hotkey_matcher_bind (bindings, "Super+2", "work", NULL));
  start_reader (fx, paths, bindings);
  g_assert_cmpuint (dhf_hotkeys_get_n_open (fx->hotkeys), ==, 2);
  fd_a = open_writer (fx, path_a);
  fd_b = open_writer (fx, path_b);

  /* A holds Ctrl+Alt, B presses Tab: nothing */
  append_key (a, KEY_LEFTCTRL, 1);
  append_key (a, KEY_RIGHTALT, 1);
  write_in_pieces (fd_a, a);
  append_key (b, KEY_TAB, 1);
  append_key (b, KEY_TAB, 0);
  write_in_pieces (fd_b, b);

  /* B's own Super+2 while A still holds Ctrl+Alt: fires with B's keys
   * only (and B's Tab above fired nothing, or it would come first) */
  g_array_set_size (b, 0);
  append_key (b, KEY_RIGHTMETA, 1);
  append_key (b, KEY_2, 1);
  append_key (b, KEY_2, 0);
  append_key (b, KEY_RIGHTMETA, 0);
  write_in_pieces (fd_b, b);
  wait_activations (fx, 1);
  assert_activation (fx, 0, "work", "KEY_2 KEY_RIGHTMETA");

  /* A finishes its combo */
  g_array_set_size (a, 0);
  append_key (a, KEY_TAB, 1);
  write_in_pieces (fd_a, a);
  wait_activations (fx, 2);
  assert_activation (fx, 1, "@next", "KEY_TAB KEY_LEFTCTRL KEY_RIGHTALT");

  /* one device going away leaves the other alone */
  close (fd_b);
  wait_n_open (fx, 1);
  g_array_set_size (a, 0);
  append_key (a, KEY_TAB, 0);
  append_key (a, KEY_TAB, 1);
  write_in_pieces (fd_a, a);
  wait_activations (fx, 3);
  assert_activation (fx, 2, "@next", "KEY_TAB KEY_LEFTCTRL KEY_RIGHTALT");
  g_assert_cmpuint (fx->activations->len, ==, 3);
  close (fd_a);
}

/* One keyboard under two names (/dev/input/by-id/... and eventN): the
 * second is not opened while the first is read, or every combo would fire
 * twice (on a FIFO the two readers would split the stream instead). It
 * is logged once, and looked at again; when the first goes, whichever
 * comes back first reads it, never both. */
static void
test_same_device (Fixture *fx, gconstpointer data)
{
  g_autofree gchar *path = make_fifo (fx, "kbd");
  g_autofree gchar *link = g_build_filename (fx->tmpdir, "by-id-kbd", NULL);
  const gchar *paths[] = { path, link, NULL };
  g_autoptr (DhfHotkeyMatcher) bindings = standard_bindings ();
  g_autoptr (GArray) events = new_events ();
  const gchar *skipped = "hotkeys: */by-id-kbd is the same device as */kbd, which is read "
                         "already; not reading it twice (looking again every 2 s)";
  gint fd;

  g_assert_cmpint (symlink ("kbd", link), ==, 0);
  start_reader (fx, paths, bindings);
  g_assert_cmpuint (dhf_hotkeys_get_n_open (fx->hotkeys), ==, 1);
  g_assert_cmpuint (hotkey_log_count (G_LOG_LEVEL_MESSAGE, skipped), ==, 1);
  g_assert_cmpuint (hotkey_log_count (G_LOG_LEVEL_MESSAGE, "hotkeys: reading *"), ==, 1);
  fd = open_writer (fx, path);
  append_combo (events, ctrl_alt_tab, G_N_ELEMENTS (ctrl_alt_tab));
  write_in_pieces (fd, events);
  write_sentinel (fd);
  wait_activations (fx, 2);
  assert_activation (fx, 0, "@next", "KEY_TAB KEY_LEFTCTRL KEY_LEFTALT");
  assert_activation (fx, 1, SENTINEL_TARGET,
                     "KEY_LEFTCTRL KEY_LEFTSHIFT KEY_LEFTALT KEY_LEFTMETA KEY_F24");

  /* past the reopen interval: looked at again, skipped again, silently */
  run_for (fx, 2500);
  g_assert_cmpuint (dhf_hotkeys_get_n_open (fx->hotkeys), ==, 1);
  g_assert_cmpuint (hotkey_log_count (G_LOG_LEVEL_MESSAGE, skipped), ==, 1);
  g_assert_cmpuint (fx->activations->len, ==, 2);

  /* the writer goes: the first path closes, and one of the two is read
   * again (never both) */
  close (fd);
  wait_n_open (fx, 0);
  wait_n_open (fx, 1);
  run_for (fx, 2500);
  g_assert_cmpuint (dhf_hotkeys_get_n_open (fx->hotkeys), ==, 1);
}

/* The same recording under two names: read once, so each combo in it
 * fires once. */
static void
test_same_file (Fixture *fx, gconstpointer data)
{
  g_autoptr (HotkeyRecording) recording = hotkey_recording_load ("ctrl-alt-tab-twice.events");
  g_autofree gchar *path = g_build_filename (fx->tmpdir, "recorded", NULL);
  g_autofree gchar *link = g_build_filename (fx->tmpdir, "again", NULL);
  const gchar *paths[] = { path, link, NULL };
  g_autoptr (DhfHotkeyMatcher) bindings = standard_bindings ();
  g_autoptr (GError) error = NULL;

  g_file_set_contents (path, recording->events->data,
                       recording->events->len * sizeof (struct input_event), &error);
  g_assert_no_error (error);
  g_assert_cmpint (symlink (path, link), ==, 0);
  start_reader (fx, paths, bindings);
  wait_activations (fx, 2);
  wait_n_open (fx, 0);
  drain ();
  g_assert_cmpuint (fx->activations->len, ==, 2);
  g_assert_cmpuint (hotkey_log_count (G_LOG_LEVEL_MESSAGE,
                                      "hotkeys: */again is the same file as */recorded, which is "
                                      "read already; not reading it twice"),
                    ==, 1);
}

/* New bindings reach an open device; the keys it holds stay held. */
static void
test_rebind_live (Fixture *fx, gconstpointer data)
{
  g_autofree gchar *path = make_fifo (fx, "kbd");
  const gchar *paths[] = { path, NULL };
  g_autoptr (DhfHotkeyMatcher) bindings = standard_bindings ();
  g_autoptr (DhfHotkeyMatcher) rebound = dhf_hotkey_matcher_new ();
  g_autoptr (GArray) events = new_events ();
  gint fd;

  start_reader (fx, paths, bindings);
  fd = open_writer (fx, path);
  append_key (events, KEY_LEFTCTRL, 1);
  append_key (events, KEY_LEFTALT, 1);
  write_in_pieces (fd, events);

  g_assert_true (dhf_hotkey_matcher_bind (rebound, "Ctrl+Alt+Tab", "personal", NULL));
  dhf_hotkeys_set_bindings (fx->hotkeys, rebound);
  g_array_set_size (events, 0);
  append_key (events, KEY_TAB, 1);
  write_in_pieces (fd, events);
  wait_activations (fx, 1);
  assert_activation (fx, 0, "personal", "KEY_TAB KEY_LEFTCTRL KEY_LEFTALT");
  close (fd);
}

/* A file of recorded events is read once, to its end, and not again. */
static void
test_recorded_file (Fixture *fx, gconstpointer data)
{
  g_autoptr (HotkeyRecording) recording = hotkey_recording_load ("ctrl-alt-tab-twice.events");
  g_autofree gchar *path = g_build_filename (fx->tmpdir, "recorded", NULL);
  const gchar *paths[] = { path, NULL };
  g_autoptr (DhfHotkeyMatcher) bindings = standard_bindings ();
  g_autoptr (GError) error = NULL;

  g_file_set_contents (path, recording->events->data,
                       recording->events->len * sizeof (struct input_event), &error);
  g_assert_no_error (error);
  start_reader (fx, paths, bindings);
  wait_activations (fx, 2);
  wait_n_open (fx, 0);
  g_assert_cmpuint (hotkey_log_count (G_LOG_LEVEL_MESSAGE, "*reading */recorded (not an evdev*"),
                    ==, 1);
  g_assert_cmpuint (
      hotkey_log_count (G_LOG_LEVEL_MESSAGE, "*/recorded: end of stream; a recording is read once"),
      ==, 1);
  assert_activation (fx, 0, "@next", "KEY_TAB KEY_LEFTCTRL KEY_LEFTALT");
  assert_activation (fx, 1, "@next", "KEY_TAB KEY_LEFTCTRL KEY_LEFTALT");
  /* past the reopen interval: not replayed */
  run_for (fx, 2500);
  g_assert_cmpuint (fx->activations->len, ==, 2);
  g_assert_cmpuint (dhf_hotkeys_get_n_open (fx->hotkeys), ==, 0);
}

/* A reader let go while its devices are open or waiting to be opened
 * leaves nothing behind (the sanitizers check the rest). */
static void
test_dispose (Fixture *fx, gconstpointer data)
{
  g_autofree gchar *fifo = make_fifo (fx, "kbd");
  g_autofree gchar *missing = g_build_filename (fx->tmpdir, "missing", NULL);
  const gchar *paths[] = { fifo, missing, NULL };
  const gchar *none[] = { NULL };
  g_autoptr (DhfHotkeyMatcher) bindings = standard_bindings ();
  gint fd;

  start_reader (fx, paths, bindings);
  fd = open_writer (fx, fifo);
  g_assert_cmpuint (dhf_hotkeys_get_n_open (fx->hotkeys), ==, 1);
  g_clear_object (&fx->hotkeys);
  drain ();
  close (fd);

  /* no paths at all, and never started */
  fx->hotkeys = dhf_hotkeys_new (none);
  dhf_hotkeys_start (fx->hotkeys);
  g_assert_cmpuint (dhf_hotkeys_get_n_open (fx->hotkeys), ==, 0);
  g_clear_object (&fx->hotkeys);
  fx->hotkeys = dhf_hotkeys_new (NULL);
  g_assert_cmpuint (dhf_hotkeys_get_n_open (fx->hotkeys), ==, 0);
}

/* evdev: whole frames (libevdev refuses a partial record, as the kernel
 * never hands one out), and the fake's key state kept as the kernel's. */

static void
evdev_write_key (gint fd, guint fake, guint code, gint value)
{
  g_autoptr (GArray) events = new_events ();
  struct input_event scan = { .type = EV_MSC, .code = MSC_SCAN, .value = 0x70000 + (gint) code };

  g_array_append_val (events, scan);
  append_key (events, code, value);
  if (value != 2)
    fake_evdev_set_key (fake, code, value != 0);
  write_all (fd, events->data, events->len * sizeof (struct input_event));
  drain ();
}

/* The kernel's buffer overflowed: what the fake reports now is the
 * state, and the events in between are lost. */
static void
evdev_write_dropped (gint fd)
{
  struct input_event dropped = { .type = EV_SYN, .code = SYN_DROPPED };

  write_all (fd, &dropped, sizeof dropped);
  drain ();
}

/* Starts a reader on a fake keyboard at path, with key held (0: none). */
static gint
evdev_open (Fixture *fx, const gchar *path, guint key, guint *fake, DhfHotkeyMatcher *bindings)
{
  const gchar *paths[] = { path, NULL };

  *fake = fake_evdev_add (path);
  if (key != 0)
    fake_evdev_set_key (*fake, key, TRUE);
  start_reader (fx, paths, bindings);
  g_assert_cmpuint (
      hotkey_log_count (G_LOG_LEVEL_MESSAGE, "hotkeys: reading */kbd (dhf test keyboard)"), ==, 1);
  return open_writer (fx, path);
}

/* Through libevdev: a combo fires; keys already down at open count; the
 * device is never grabbed. */
static void
test_evdev_combo (Fixture *fx, gconstpointer data)
{
  g_autofree gchar *path = make_fifo (fx, "kbd");
  g_autoptr (DhfHotkeyMatcher) bindings = standard_bindings ();
  guint fake;
  gint fd;

  /* right Ctrl is down before dhfd opens the keyboard */
  fd = evdev_open (fx, path, KEY_RIGHTCTRL, &fake, bindings);

  evdev_write_key (fd, fake, KEY_LEFTALT, 1);
  evdev_write_key (fd, fake, KEY_LEFTALT, 2);
  evdev_write_key (fd, fake, KEY_TAB, 1);
  wait_activations (fx, 1);
  assert_activation (fx, 0, "@next", "KEY_TAB KEY_LEFTALT KEY_RIGHTCTRL");
  evdev_write_key (fd, fake, KEY_TAB, 2);
  evdev_write_key (fd, fake, KEY_TAB, 0);
  evdev_write_key (fd, fake, KEY_TAB, 1);
  wait_activations (fx, 2);
  assert_activation (fx, 1, "@next", "KEY_TAB KEY_LEFTALT KEY_RIGHTCTRL");
  evdev_write_key (fd, fake, KEY_TAB, 0);
  evdev_write_key (fd, fake, KEY_LEFTALT, 0);
  evdev_write_key (fd, fake, KEY_RIGHTCTRL, 0);
  evdev_write_sentinel (fd);
  wait_activations (fx, 3);
  assert_activation (fx, 2, SENTINEL_TARGET,
                     "KEY_LEFTCTRL KEY_LEFTSHIFT KEY_LEFTALT KEY_LEFTMETA KEY_F24");
  g_assert_cmpuint (fx->activations->len, ==, 3);
  g_assert_cmpuint (
      hotkey_log_count (G_LOG_LEVEL_MESSAGE, "hotkeys: reading */kbd (dhf test keyboard)"), ==, 1);
  g_assert_cmpuint (fake_evdev_get_n_grabs (), ==, 0);
  close (fd);
}

/* SYN_DROPPED through libevdev: the held keys are the device's state
 * after the resync, and a key found down then fires nothing. */
static void
test_evdev_syn_dropped (Fixture *fx, gconstpointer data)
{
  g_autofree gchar *path = make_fifo (fx, "kbd");
  g_autoptr (DhfHotkeyMatcher) bindings = standard_bindings ();
  guint fake;
  gint fd = evdev_open (fx, path, 0, &fake, bindings);

  /* A down; during the overflow A went up and Ctrl, Alt went down */
  evdev_write_key (fd, fake, KEY_A, 1);
  fake_evdev_set_key (fake, KEY_A, FALSE);
  fake_evdev_set_key (fake, KEY_LEFTCTRL, TRUE);
  fake_evdev_set_key (fake, KEY_LEFTALT, TRUE);
  evdev_write_dropped (fd);
  evdev_write_key (fd, fake, KEY_TAB, 1);
  wait_activations (fx, 1);
  assert_activation (fx, 0, "@next", "KEY_TAB KEY_LEFTCTRL KEY_LEFTALT");
  evdev_write_key (fd, fake, KEY_TAB, 0);

  /* Tab went down during an overflow: that press is not seen, so it does
   * not fire; its next press does */
  fake_evdev_set_key (fake, KEY_TAB, TRUE);
  evdev_write_dropped (fd);
  evdev_write_key (fd, fake, KEY_TAB, 2);
  g_assert_cmpuint (fx->activations->len, ==, 1);
  evdev_write_key (fd, fake, KEY_TAB, 0);
  evdev_write_key (fd, fake, KEY_TAB, 1);
  wait_activations (fx, 2);
  assert_activation (fx, 1, "@next", "KEY_TAB KEY_LEFTCTRL KEY_LEFTALT");
  evdev_write_key (fd, fake, KEY_TAB, 0);
  evdev_write_key (fd, fake, KEY_LEFTALT, 0);
  evdev_write_key (fd, fake, KEY_LEFTCTRL, 0);
  evdev_write_sentinel (fd);
  wait_activations (fx, 3);
  assert_activation (fx, 2, SENTINEL_TARGET,
                     "KEY_LEFTCTRL KEY_LEFTSHIFT KEY_LEFTALT KEY_LEFTMETA KEY_F24");
  g_assert_cmpuint (fx->activations->len, ==, 3);
  close (fd);
}

/* A hang-up (the FIFO's writer left; evdev when the device is gone) closes
 * the device, without spinning on it, and it is opened again. */
static void
test_evdev_hangup (Fixture *fx, gconstpointer data)
{
  g_autofree gchar *path = make_fifo (fx, "kbd");
  g_autoptr (DhfHotkeyMatcher) bindings = standard_bindings ();
  guint fake;
  gint fd = evdev_open (fx, path, 0, &fake, bindings);

  evdev_write_key (fd, fake, KEY_LEFTCTRL, 1);
  evdev_write_key (fd, fake, KEY_LEFTALT, 1);
  close (fd);
  wait_n_open (fx, 0);
  g_assert_cmpuint (
      hotkey_log_count (G_LOG_LEVEL_MESSAGE,
                        "hotkeys: */kbd: the device hung up; opening it again every 2 s"),
      ==, 1);

  /* back, with nothing held now */
  fake_evdev_set_key (fake, KEY_LEFTCTRL, FALSE);
  fake_evdev_set_key (fake, KEY_LEFTALT, FALSE);
  fd = open_writer (fx, path);
  evdev_write_key (fd, fake, KEY_TAB, 1);
  evdev_write_key (fd, fake, KEY_TAB, 0);
  evdev_write_sentinel (fd);
  wait_activations (fx, 1);
  assert_activation (fx, 0, SENTINEL_TARGET,
                     "KEY_LEFTCTRL KEY_LEFTSHIFT KEY_LEFTALT KEY_LEFTMETA KEY_F24");
  g_assert_cmpuint (
      hotkey_log_count (G_LOG_LEVEL_MESSAGE, "hotkeys: reading */kbd (dhf test keyboard)"), ==, 2);
  close (fd);
}

/* The reader's batch (dhf-hotkeys.c's RAW_BATCH): events handled per
 * wakeup of one device. */
#define HOTKEYS_BATCH 64

/* A device that floods: at most a batch of events per wakeup, so the main
 * loop gets its turn in between; and what libevdev has already read from
 * the fd (where poll() no longer sees it) is handled all the same. */
static void
test_evdev_batch (Fixture *fx, gconstpointer data)
{
  g_autofree gchar *path = make_fifo (fx, "kbd");
  g_autoptr (DhfHotkeyMatcher) bindings = standard_bindings ();
  g_autoptr (GArray) events = new_events ();
  /* 12 events per combo, 1200 in all: within a FIFO's buffer */
  const guint n_combos = 100;
  gint64 deadline = g_get_monotonic_time () + WAIT_TIMEOUT_S * G_USEC_PER_SEC;
  guint tick = g_timeout_add (50, on_tick, NULL);
  guint most = 0;
  guint fake;
  gint fd = evdev_open (fx, path, 0, &fake, bindings);

  for (guint i = 0; i < n_combos; i++)
    append_combo (events, ctrl_alt_tab, G_N_ELEMENTS (ctrl_alt_tab));
  g_assert_cmpuint (events->len, ==, 12 * n_combos);
  write_all (fd, events->data, events->len * sizeof (struct input_event));
  /* one source dispatch at most per iteration */
  while (fx->activations->len < n_combos)
    {
      guint before = fx->activations->len;

      if (g_get_monotonic_time () > deadline)
        g_error ("timed out with %u of %u combos seen", fx->activations->len, n_combos);
      g_main_context_iteration (NULL, TRUE);
      most = MAX (most, fx->activations->len - before);
    }
  g_source_remove (tick);
  /* a combo fires once in 12 events: a batch holds at most this many */
  g_assert_cmpuint (most, >, 0);
  g_assert_cmpuint (most, <=, (HOTKEYS_BATCH + 11) / 12);
  drain ();
  g_assert_cmpuint (fx->activations->len, ==, n_combos);
  assert_activation (fx, n_combos - 1, "@next", "KEY_TAB KEY_LEFTCTRL KEY_LEFTALT");
  close (fd);
}

int
main (int argc, char **argv)
{
  hotkey_log_init ();
  g_test_init (&argc, &argv, NULL);
  /* a reader that closes under a writer must not kill the test */
  signal (SIGPIPE, SIG_IGN);

  g_test_add ("/hotkeys/fifo/recordings", Fixture, NULL, fixture_set_up, test_recordings,
              fixture_tear_down);
  g_test_add ("/hotkeys/fifo/reopen", Fixture, NULL, fixture_set_up, test_reopen,
              fixture_tear_down);
  g_test_add ("/hotkeys/fifo/missing-path", Fixture, NULL, fixture_set_up, test_missing_path,
              fixture_tear_down);
  g_test_add ("/hotkeys/fifo/two-devices", Fixture, NULL, fixture_set_up, test_two_devices,
              fixture_tear_down);
  g_test_add ("/hotkeys/fifo/same-device", Fixture, NULL, fixture_set_up, test_same_device,
              fixture_tear_down);
  g_test_add ("/hotkeys/file/same-file", Fixture, NULL, fixture_set_up, test_same_file,
              fixture_tear_down);
  g_test_add ("/hotkeys/fifo/rebind-live", Fixture, NULL, fixture_set_up, test_rebind_live,
              fixture_tear_down);
  g_test_add ("/hotkeys/file/read-once", Fixture, NULL, fixture_set_up, test_recorded_file,
              fixture_tear_down);
  g_test_add ("/hotkeys/evdev/combo", Fixture, NULL, fixture_set_up, test_evdev_combo,
              fixture_tear_down);
  g_test_add ("/hotkeys/evdev/syn-dropped", Fixture, NULL, fixture_set_up, test_evdev_syn_dropped,
              fixture_tear_down);
  g_test_add ("/hotkeys/evdev/batch", Fixture, NULL, fixture_set_up, test_evdev_batch,
              fixture_tear_down);
  g_test_add ("/hotkeys/evdev/hangup", Fixture, NULL, fixture_set_up, test_evdev_hangup,
              fixture_tear_down);
  g_test_add ("/hotkeys/dispose", Fixture, NULL, fixture_set_up, test_dispose, fixture_tear_down);

  return g_test_run ();
}
