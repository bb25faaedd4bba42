/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* The focus, switching and devices end to end: dhfd on a private
 * dbus-daemon over libvirt's test driver (tests/xdm's harness), with two
 * environments, a service and a stopped environment. Display (Focused,
 * History, Cycle, FocusChanged, Switch, Next, Previous, Screenshot,
 * OpenDisplay), Devices (List, Assign, Release over emulated inputs and a
 * fake sysfs), the fallback when the focused appliance stops, the focus
 * across a restart of dhfd, org.dhf.framework.Switch from simulated
 * appliances (allowed, denied, asked, abandoned) and hotkeys read from a
 * FIFO of input_event records.
 *
 * What the test driver cannot do is checked as such: it attaches no
 * device and opens no graphics fd, so a switch that moves follow-focus
 * inputs fails there and must leave everything as it was (the rollback a
 * real daemon takes on any failure). CPU weights are set in the test
 * driver's memory inside dhfd, where nothing can read them back: the qemu
 * suite checks them against a real libvirtd. */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>
#include <linux/input.h>

#include <dhf/dhf.h>
#include <gdk-pixbuf/gdk-pixbuf.h>
#include <json.h>

#include "dhf-test-util.h"
#include "xdm-harness.h"

#define DISPLAY_IFACE "org.dhf.Framework1.Display"
#define DEVICES_IFACE "org.dhf.Framework1.Devices"

static const XdmDomainSpec domains[] = {
  { "personal", "environment", NULL, FALSE },
  { "work", "environment", "[\"corp\"]", FALSE },
  { "files", "service", NULL, FALSE },
  { "stopped", "environment", NULL, TRUE },
};

/* dom0 may show every environment and itself; appliances may ask through
 * XDM, personal freely, work only with the user's consent. The lid rule is
 * there for the @focused questions of Policy.Test. */
static const gchar policy[] = "switch @dom0 @role:environment allow\n"
                              "switch @dom0 @dom0 allow\n"
                              "hotkey:Ctrl+Alt+Tab @dom0 @next allow\n"
                              "hotkey:Ctrl+Alt+Shift+Tab @dom0 @previous allow\n"
                              "org.dhf.framework.Switch @role:environment @dom0 allow\n"
                              "switch personal @role:environment allow\n"
                              "switch work @role:environment ask\n"
                              "acpi:button/lid @dom0 @focused allow\n";

typedef struct
{
  const gchar *xdm;    /* dhfd.conf lines of [XDM] */
  const gchar *config; /* groups after it ([Devices] StateFile is added) */
  const gchar *policy; /* NULL: the one above */
  gboolean sysfs;      /* a fake sysfs with one USB device (DHF_SYSFS_ROOT) */
} Setup;

typedef struct
{
  XdmHarness *h;
  gchar *dir; /* state file, FIFO, sysfs */
  gchar *state_file;
  GPtrArray *focus_changes;  /* "FOCUSED<PREVIOUS" */
  GPtrArray *device_changes; /* the ids of Devices.Changed */
  guint focus_signal, devices_signal;
} Fixture;

/* --- the fixture -------------------------------------------------------- */

static void
on_focus_changed (GDBusConnection *conn, const gchar *sender, const gchar *path, const gchar *iface,
                  const gchar *signal, GVariant *params, gpointer data)
{
  Fixture *fx = data;
  const gchar *focused, *previous;

  g_variant_get (params, "(&s&s)", &focused, &previous);
  g_ptr_array_add (fx->focus_changes, g_strdup_printf ("%s<%s", focused, previous));
}

static void
on_device_changed (GDBusConnection *conn, const gchar *sender, const gchar *path,
                   const gchar *iface, const gchar *signal, GVariant *params, gpointer data)
{
  Fixture *fx = data;
  g_autoptr (GVariant) dict = g_variant_get_child_value (params, 0);
  const gchar *id = NULL;

  g_assert_true (g_variant_lookup (dict, "id", "&s", &id));
  g_ptr_array_add (fx->device_changes, g_strdup (id));
}

/* A fake sysfs as the kernel lays it out: one USB device (a Logitech
 * receiver) linked from bus/usb/devices. */
static void
make_sysfs (const gchar *root)
{
  g_autofree gchar *dir = g_build_filename (root, "devices", "pci0000:00", "usb1", "1-2", NULL);
  g_autofree gchar *links = g_build_filename (root, "bus", "usb", "devices", NULL);
  g_autofree gchar *link = g_build_filename (links, "1-2", NULL);

  dhf_test_write_file (dir, "bDeviceClass", "00\n");
  dhf_test_write_file (dir, "idVendor", "046d\n");
  dhf_test_write_file (dir, "idProduct", "c52b\n");
  dhf_test_write_file (dir, "busnum", "1\n");
  dhf_test_write_file (dir, "devnum", "3\n");
  dhf_test_write_file (dir, "manufacturer", "Logitech\n");
  dhf_test_write_file (dir, "product", "USB Receiver\n");
  g_assert_cmpint (g_mkdir_with_parents (links, 0755), ==, 0);
  g_assert_cmpint (symlink ("../../../devices/pci0000:00/usb1/1-2", link), ==, 0);
  /* No PCI bus: nothing of this machine's own devices shows. */
  g_assert_cmpint (g_mkdir_with_parents (links, 0755), ==, 0);
}

static void
fixture_set_up (Fixture *fx, gconstpointer data)
{
  const Setup *setup = data;
  g_autoptr (GError) error = NULL;
  g_autofree gchar *config = NULL;
  g_autofree gchar *sysfs = NULL;

  fx->dir = g_dir_make_tmp ("dhf-display-it-XXXXXX", &error);
  g_assert_no_error (error);
  fx->state_file = g_build_filename (fx->dir, "state", "devices.json", NULL);
  sysfs = g_build_filename (fx->dir, "sysfs", NULL);
  /* An empty tree unless a test wants a device: the host's own devices
   * are no business of this test. */
  g_assert_cmpint (g_mkdir_with_parents (sysfs, 0755), ==, 0);
  if (setup != NULL && setup->sysfs)
    make_sysfs (sysfs);
  g_setenv ("DHF_SYSFS_ROOT", sysfs, TRUE);
  config = g_strdup_printf ("%s\n[Devices]\nStateFile=%s\n%s",
                            setup != NULL && setup->xdm != NULL ? setup->xdm : "", fx->state_file,
                            setup != NULL && setup->config != NULL ? setup->config : "");
  fx->h = xdm_harness_new (domains, G_N_ELEMENTS (domains),
                           setup != NULL && setup->policy != NULL ? setup->policy : policy, config);
  fx->focus_changes = g_ptr_array_new_with_free_func (g_free);
  fx->device_changes = g_ptr_array_new_with_free_func (g_free);
  fx->focus_signal = g_dbus_connection_signal_subscribe (
      fx->h->conn, DHF_BUS_NAME, DISPLAY_IFACE, "FocusChanged", DHF_OBJECT_PATH, NULL,
      G_DBUS_SIGNAL_FLAGS_NONE, on_focus_changed, fx, NULL);
  fx->devices_signal = g_dbus_connection_signal_subscribe (
      fx->h->conn, DHF_BUS_NAME, DEVICES_IFACE, "Changed", DHF_OBJECT_PATH, NULL,
      G_DBUS_SIGNAL_FLAGS_NONE, on_device_changed, fx, NULL);
}

static void
fixture_tear_down (Fixture *fx, gconstpointer data)
{
  g_dbus_connection_signal_unsubscribe (fx->h->conn, fx->focus_signal);
  g_dbus_connection_signal_unsubscribe (fx->h->conn, fx->devices_signal);
  xdm_harness_free (fx->h);
  g_ptr_array_unref (fx->focus_changes);
  g_ptr_array_unref (fx->device_changes);
  dhf_test_remove_tree (fx->dir);
  g_free (fx->dir);
  g_free (fx->state_file);
  g_unsetenv ("DHF_SYSFS_ROOT");
}

/* --- D-Bus -------------------------------------------------------------- */

static GVariant *
call (Fixture *fx, const gchar *iface, const gchar *method, GVariant *params, GError **error)
{
  return g_dbus_connection_call_sync (fx->h->conn, DHF_BUS_NAME, DHF_OBJECT_PATH, iface, method,
                                      params, NULL, G_DBUS_CALL_FLAGS_NONE, -1, NULL, error);
}

/* Switch/Next/Previous: the focused one afterwards, or NULL with error. */
static gchar *
display_switch (Fixture *fx, const gchar *method, const gchar *target, GError **error)
{
  g_autoptr (GVariant) reply = call (fx, DISPLAY_IFACE, method,
                                     target != NULL ? g_variant_new ("(s)", target) : NULL, error);
  gchar *focused = NULL;

  if (reply != NULL)
    g_variant_get (reply, "(s)", &focused);
  return focused;
}

static void
assert_switch (Fixture *fx, const gchar *method, const gchar *target, const gchar *expected)
{
  g_autoptr (GError) error = NULL;
  g_autofree gchar *focused = display_switch (fx, method, target, &error);

  g_assert_no_error (error);
  g_assert_cmpstr (focused, ==, expected);
}

static void
assert_switch_fails (Fixture *fx, const gchar *target, gint code)
{
  g_autoptr (GError) error = NULL;
  g_autofree gchar *focused = display_switch (fx, "Switch", target, &error);

  g_assert_null (focused);
  g_assert_error (error, DHF_ERROR, code);
}

static GVariant *
get_property (Fixture *fx, const gchar *iface, const gchar *name)
{
  g_autoptr (GError) error = NULL;
  g_autoptr (GVariant) reply = call (fx, "org.freedesktop.DBus.Properties", "Get",
                                     g_variant_new ("(ss)", iface, name), &error);
  GVariant *value = NULL;

  g_assert_no_error (error);
  g_variant_get (reply, "(v)", &value);
  return value;
}

static gchar *
focused (Fixture *fx)
{
  g_autoptr (GVariant) value = get_property (fx, DISPLAY_IFACE, "Focused");

  return g_variant_dup_string (value, NULL);
}

/* A string-list property as "a,b,c". */
static gchar *
joined (Fixture *fx, const gchar *name)
{
  g_autoptr (GVariant) value = get_property (fx, DISPLAY_IFACE, name);
  g_autofree const gchar **strv = g_variant_get_strv (value, NULL);

  return g_strjoinv (",", (gchar **) strv);
}

typedef struct
{
  Fixture *fx;
  const gchar *expected;
} FocusWait;

static gboolean
focus_is (gpointer data)
{
  FocusWait *w = data;
  g_autofree gchar *now = focused (w->fx);

  return g_str_equal (now, w->expected);
}

static void
wait_focus (Fixture *fx, const gchar *expected)
{
  FocusWait w = { fx, expected };

  xdm_wait_until (focus_is, &w);
}

static gboolean
cycle_is (gpointer data)
{
  FocusWait *w = data;
  g_autofree gchar *now = joined (w->fx, "Cycle");

  return g_str_equal (now, w->expected);
}

static void
wait_cycle (Fixture *fx, const gchar *expected)
{
  FocusWait w = { fx, expected };

  xdm_wait_until (cycle_is, &w);
}

typedef struct
{
  GPtrArray *list;
  guint n;
} CountWait;

static gboolean
has_n (gpointer data)
{
  CountWait *w = data;

  return w->list->len >= w->n;
}

/* Waits for the nth FocusChanged (1-based) and checks it. */
static void
expect_focus_changed (Fixture *fx, guint n, const gchar *focused_name, const gchar *previous)
{
  CountWait w = { fx->focus_changes, n };
  g_autofree gchar *expected = g_strdup_printf ("%s<%s", focused_name, previous);

  xdm_wait_until (has_n, &w);
  g_assert_cmpstr (g_ptr_array_index (fx->focus_changes, n - 1), ==, expected);
}

static void
appliance_call (Fixture *fx, const gchar *name, const gchar *method, GVariant *params)
{
  g_autoptr (GError) error = NULL;
  g_autofree gchar *path = g_strconcat (DHF_APPLIANCE_PATH_PREFIX, "/", name, NULL);
  g_autoptr (GVariant) reply = NULL;

  reply = g_dbus_connection_call_sync (fx->h->conn, DHF_BUS_NAME, path,
                                       "org.dhf.Framework1.Appliance", method, params, NULL,
                                       G_DBUS_CALL_FLAGS_NONE, -1, NULL, &error);
  g_assert_no_error (error);
  g_assert_nonnull (reply);
}

/* --- focus and switching ------------------------------------------------ */

/* Policy.Test's action for a question. */
static gchar *
policy_test (Fixture *fx, const gchar *subject, const gchar *source, const gchar *target)
{
  g_autoptr (GError) error = NULL;
  g_autoptr (GVariant) reply = call (fx, "org.dhf.Framework1.Policy", "Test",
                                     g_variant_new ("(sss)", subject, source, target), &error);
  gchar *action = NULL;

  g_assert_no_error (error);
  g_variant_get_child (reply, 0, "s", &action);
  return action;
}

/* @focused rules follow the focus, dom0's included, in Policy.Test as in
 * the decisions dhfd acts on. */
static void
assert_lid_goes_to (Fixture *fx, const gchar *focused_name, const gchar *other)
{
  g_autofree gchar *to_focused = policy_test (fx, "acpi:button/lid", "dom0", focused_name);
  g_autofree gchar *to_other = policy_test (fx, "acpi:button/lid", "dom0", other);

  g_assert_cmpstr (to_focused, ==, "allow");
  g_assert_cmpstr (to_other, ==, "deny");
}

static void
test_focus (Fixture *fx, gconstpointer data)
{
  g_autofree gchar *now = NULL;
  g_autofree gchar *history = NULL;

  xdm_harness_start_dhfd (fx->h);
  now = focused (fx);
  g_assert_cmpstr (now, ==, "dom0");
  history = joined (fx, "History");
  g_assert_cmpstr (history, ==, "");
  /* Running environments by name; files is a service, stopped is off. */
  wait_cycle (fx, "personal,work");
  assert_lid_goes_to (fx, "dom0", "personal");

  assert_switch (fx, "Switch", "personal", "personal");
  assert_lid_goes_to (fx, "personal", "dom0");
  expect_focus_changed (fx, 1, "personal", "dom0");
  g_clear_pointer (&now, g_free);
  now = focused (fx);
  g_assert_cmpstr (now, ==, "personal");
  g_clear_pointer (&history, g_free);
  history = joined (fx, "History");
  g_assert_cmpstr (history, ==, "dom0");

  assert_switch (fx, "Switch", "work", "work");
  expect_focus_changed (fx, 2, "work", "personal");
  g_clear_pointer (&history, g_free);
  history = joined (fx, "History");
  g_assert_cmpstr (history, ==, "personal,dom0");

  /* Switching to the focused one succeeds at once, and changes nothing. */
  assert_switch (fx, "Switch", "work", "work");
  dhf_test_sync_with_dhfd (fx->h->conn);
  g_assert_cmpuint (fx->focus_changes->len, ==, 2);

  /* Next and Previous go round the cycle. */
  assert_switch (fx, "Next", NULL, "personal");
  expect_focus_changed (fx, 3, "personal", "work");
  assert_switch (fx, "Next", NULL, "work");
  expect_focus_changed (fx, 4, "work", "personal");
  assert_switch (fx, "Previous", NULL, "personal");
  expect_focus_changed (fx, 5, "personal", "work");
  assert_switch (fx, "Previous", NULL, "work");

  /* dom0 itself, which the policy allows. */
  assert_switch (fx, "Switch", "dom0", "dom0");
  expect_focus_changed (fx, 7, "dom0", "work");
  g_clear_pointer (&history, g_free);
  history = joined (fx, "History");
  g_assert_true (g_str_has_prefix (history, "work,personal"));

  /* A domain started later joins the cycle. */
  appliance_call (fx, "stopped", "Start", NULL);
  wait_cycle (fx, "personal,stopped,work");
}

static void
test_switch_errors (Fixture *fx, gconstpointer data)
{
  g_autoptr (GError) error = NULL;
  g_autoptr (GVariant) reply = NULL;
  g_autofree gchar *now = NULL;

  xdm_harness_start_dhfd (fx->h);
  assert_switch_fails (fx, "nonexistent", DHF_ERROR_NOT_FOUND);
  assert_switch_fails (fx, "stopped", DHF_ERROR_INVALID_STATE);
  assert_switch_fails (fx, "files", DHF_ERROR_INVALID_ARGS);
  /* Symbolic targets have methods of their own. */
  assert_switch_fails (fx, "@next", DHF_ERROR_INVALID_ARGS);
  assert_switch_fails (fx, "", DHF_ERROR_INVALID_ARGS);
  /* A wrong signature is refused before dhfd's code runs. */
  reply = call (fx, DISPLAY_IFACE, "Switch", g_variant_new ("(i)", 1), &error);
  g_assert_null (reply);
  g_assert_error (error, G_DBUS_ERROR, G_DBUS_ERROR_INVALID_ARGS);
  g_clear_error (&error);

  /* Without switch rules, nothing may be shown. */
  xdm_harness_set_policy (fx->h, "hotkey:Ctrl+Alt+Tab @dom0 @next allow\n");
  assert_switch_fails (fx, "personal", DHF_ERROR_NOT_AUTHORIZED);
  {
    g_autofree gchar *focused_name = display_switch (fx, "Next", NULL, &error);

    g_assert_null (focused_name);
    g_assert_error (error, DHF_ERROR, DHF_ERROR_NOT_AUTHORIZED);
    g_clear_error (&error);
  }
  now = focused (fx);
  g_assert_cmpstr (now, ==, "dom0");
  dhf_test_sync_with_dhfd (fx->h->conn);
  g_assert_cmpuint (fx->focus_changes->len, ==, 0);
}

/* Fallback=@previous: the focus goes back to the environment before, and
 * to dom0 once none runs. */
static const Setup fallback_setup = { NULL, "[Display]\nFallback=@previous\n", NULL, FALSE };

static void
test_fallback (Fixture *fx, gconstpointer data)
{
  xdm_harness_start_dhfd (fx->h);
  assert_switch (fx, "Switch", "work", "work");
  assert_switch (fx, "Switch", "personal", "personal");
  expect_focus_changed (fx, 2, "personal", "work");

  /* Destroyed under the focus (Shutdown forces the test driver's domain
   * off at once). */
  appliance_call (fx, "personal", "Shutdown", g_variant_new ("(u)", 1000));
  wait_focus (fx, "work");
  expect_focus_changed (fx, 3, "work", "personal");
  wait_cycle (fx, "work");

  /* Paused counts as gone too: the focus needs a running domain. */
  appliance_call (fx, "work", "Pause", NULL);
  wait_focus (fx, "dom0");
  expect_focus_changed (fx, 4, "dom0", "work");
  wait_cycle (fx, "");
}

/* The focus and history survive a restart of dhfd (same state file). */
static void
test_restart (Fixture *fx, gconstpointer data)
{
  g_autofree gchar *now = NULL;
  g_autofree gchar *history = NULL;
  gint status;

  xdm_harness_start_dhfd (fx->h);
  assert_switch (fx, "Switch", "work", "work");
  assert_switch (fx, "Switch", "personal", "personal");
  status = xdm_harness_kill_dhfd (fx->h, SIGTERM);
  g_assert_true (WIFEXITED (status));
  g_assert_cmpint (WEXITSTATUS (status), ==, 0);
  g_assert_true (g_file_test (fx->state_file, G_FILE_TEST_IS_REGULAR));

  xdm_harness_start_dhfd (fx->h);
  wait_focus (fx, "personal");
  history = joined (fx, "History");
  g_assert_true (g_str_has_prefix (history, "work,dom0"));
  now = focused (fx);
  g_assert_cmpstr (now, ==, "personal");
  /* Nothing says the focus cannot be kept. */
  {
    g_autoptr (GVariant) reasons = get_property (fx, "org.dhf.Framework1.Manager", "StatusReasons");

    g_assert_cmpuint (g_variant_n_children (reasons), ==, 0);
  }
}

/* A state file dhfd cannot write: the Manager says the focus will not
 * survive a restart; switching still works. */
static void
test_state_unwritable (Fixture *fx, gconstpointer data)
{
  g_autoptr (GVariant) status = NULL;
  g_autoptr (GVariant) reasons = NULL;
  g_autofree gchar *text = NULL;

  /* A file where the directory should be: even root cannot create it. */
  dhf_test_write_file (fx->dir, "state", "not a directory\n");
  xdm_harness_start_dhfd (fx->h);
  status = get_property (fx, "org.dhf.Framework1.Manager", "Status");
  g_assert_cmpstr (g_variant_get_string (status, NULL), ==, "degraded");
  reasons = get_property (fx, "org.dhf.Framework1.Manager", "StatusReasons");
  {
    g_autofree const gchar **strv = g_variant_get_strv (reasons, NULL);

    text = g_strjoinv ("\n", (gchar **) strv);
  }
  g_assert_nonnull (strstr (text, "devices: the focus (dom0) cannot be saved to"));
  assert_switch (fx, "Switch", "personal", "personal");
  g_clear_pointer (&reasons, g_variant_unref);
  g_clear_pointer (&text, g_free);
  reasons = get_property (fx, "org.dhf.Framework1.Manager", "StatusReasons");
  {
    g_autofree const gchar **strv = g_variant_get_strv (reasons, NULL);

    text = g_strjoinv ("\n", (gchar **) strv);
  }
  g_assert_nonnull (strstr (text, "devices: the focus (personal) cannot be saved to"));
}

/* --- screenshots and displays ------------------------------------------- */

static GdkPixbuf *
screenshot (Fixture *fx, const gchar *name, GVariant *options, GError **error)
{
  /* options is a full reference (from options()): the message takes its own. */
  g_autoptr (GVariant) owned_options = options;
  g_autoptr (GVariant) reply = call (fx, DISPLAY_IFACE, "Screenshot",
                                     g_variant_new ("(s@a{sv})", name, owned_options), error);
  g_autoptr (GVariant) png = NULL;
  g_autoptr (GdkPixbufLoader) loader = NULL;
  gsize length;
  const guint8 *bytes;

  if (reply == NULL)
    return NULL;
  png = g_variant_get_child_value (reply, 0);
  bytes = g_variant_get_fixed_array (png, &length, 1);
  g_assert_cmpuint (length, >, 8);
  g_assert_cmpmem (bytes, 8, "\x89PNG\r\n\x1a\n", 8);
  loader = gdk_pixbuf_loader_new_with_type ("png", NULL);
  g_assert_true (gdk_pixbuf_loader_write (loader, bytes, length, NULL));
  g_assert_true (gdk_pixbuf_loader_close (loader, NULL));
  return g_object_ref (gdk_pixbuf_loader_get_pixbuf (loader));
}

static GVariant *
options (const gchar *text)
{
  g_autoptr (GError) error = NULL;
  GVariant *value = g_variant_parse (G_VARIANT_TYPE_VARDICT, text, NULL, NULL, &error);

  g_assert_no_error (error);
  return value;
}

static void
test_screenshot (Fixture *fx, gconstpointer data)
{
  g_autoptr (GError) error = NULL;
  g_autoptr (GdkPixbuf) full = NULL;
  g_autoptr (GdkPixbuf) thumb = NULL;
  g_autoptr (GdkPixbuf) tall = NULL;
  g_autoptr (GVariant) reply = NULL;
  g_autofree gchar *now = NULL;

  xdm_harness_start_dhfd (fx->h);
  /* The test driver's screen is a fixed picture (libvirt's
   * test-screenshot.png). */
  full = screenshot (fx, "personal", options ("{}"), &error);
  g_assert_no_error (error);
  g_assert_cmpint (gdk_pixbuf_get_width (full), >, 200);
  /* Scaled down to fit, proportions kept (to the pixel). */
  thumb = screenshot (fx, "personal", options ("{'max-width': <uint32 200>}"), &error);
  g_assert_no_error (error);
  g_assert_cmpint (gdk_pixbuf_get_width (thumb), ==, 200);
  g_assert_cmpint (ABS (gdk_pixbuf_get_height (thumb) * gdk_pixbuf_get_width (full)
                        - 200 * gdk_pixbuf_get_height (full)),
                   <=, gdk_pixbuf_get_width (full));
  tall = screenshot (fx, "personal",
                     options ("{'max-width': <uint32 1000>, 'max-height': <uint32 50>}"), &error);
  g_assert_no_error (error);
  g_assert_cmpint (gdk_pixbuf_get_height (tall), ==, 50);
  g_assert_cmpint (gdk_pixbuf_get_width (tall), <, 1000);

  /* Bad options, names and appliances. */
  g_assert_null (screenshot (fx, "personal", options ("{'max-width': <200>}"), &error));
  g_assert_error (error, DHF_ERROR, DHF_ERROR_INVALID_ARGS);
  g_assert_nonnull (strstr (error->message, "max-width"));
  g_clear_error (&error);
  g_assert_null (screenshot (fx, "personal", options ("{'scale': <uint32 2>}"), &error));
  g_assert_error (error, DHF_ERROR, DHF_ERROR_INVALID_ARGS);
  g_clear_error (&error);
  g_assert_null (screenshot (fx, "nonexistent", options ("{}"), &error));
  g_assert_error (error, DHF_ERROR, DHF_ERROR_NOT_FOUND);
  g_clear_error (&error);
  g_assert_null (screenshot (fx, "dom0", options ("{}"), &error));
  g_assert_error (error, DHF_ERROR, DHF_ERROR_INVALID_ARGS);
  g_clear_error (&error);
  /* Off: no display to take a picture of (the test driver would show its
   * picture anyway). */
  g_assert_null (screenshot (fx, "stopped", options ("{}"), &error));
  g_assert_error (error, DHF_ERROR, DHF_ERROR_INVALID_STATE);
  g_clear_error (&error);
  reply = call (fx, DISPLAY_IFACE, "Screenshot", g_variant_new ("(s)", "personal"), &error);
  g_assert_null (reply);
  g_assert_error (error, G_DBUS_ERROR, G_DBUS_ERROR_INVALID_ARGS);
  g_clear_error (&error);

  /* The test driver has no virDomainOpenGraphicsFD. */
  reply = call (fx, DISPLAY_IFACE, "OpenDisplay", g_variant_new ("(s)", "personal"), &error);
  g_assert_null (reply);
  g_assert_error (error, DHF_ERROR, DHF_ERROR_NOT_SUPPORTED);
  g_clear_error (&error);
  reply = call (fx, DISPLAY_IFACE, "OpenDisplay", g_variant_new ("(s)", "nonexistent"), &error);
  g_assert_error (error, DHF_ERROR, DHF_ERROR_NOT_FOUND);
  g_clear_error (&error);
  reply = call (fx, DISPLAY_IFACE, "OpenDisplay", g_variant_new ("(s)", "stopped"), &error);
  g_assert_error (error, DHF_ERROR, DHF_ERROR_INVALID_STATE);
  g_clear_error (&error);

  /* dhfd keeps serving after all that. */
  now = focused (fx);
  g_assert_cmpstr (now, ==, "dom0");
}

/* --- devices ------------------------------------------------------------ */

static const Setup devices_setup = {
  NULL,
  "EmulatedInput=keyboard;tablet\n",
  "switch @dom0 @role:environment allow\n"
  "switch @dom0 @dom0 allow\n"
  "device:input:* @dom0 @role:environment allow mode=follow-focus\n"
  "device:usb:046d:c52b @dom0 @role:environment allow\n",
  TRUE,
};

/* The entry of List (or NULL) for id. */
static GVariant *
list_lookup (Fixture *fx, const gchar *id)
{
  g_autoptr (GError) error = NULL;
  g_autoptr (GVariant) reply = call (fx, DEVICES_IFACE, "List", NULL, &error);
  g_autoptr (GVariant) list = NULL;

  g_assert_no_error (error);
  list = g_variant_get_child_value (reply, 0);
  for (gsize i = 0; i < g_variant_n_children (list); i++)
    {
      GVariant *entry = g_variant_get_child_value (list, i);
      const gchar *entry_id = NULL;

      g_assert_true (g_variant_lookup (entry, "id", "&s", &entry_id));
      if (g_str_equal (entry_id, id))
        return entry;
      g_variant_unref (entry);
    }
  return NULL;
}

static gchar *
lookup_string (GVariant *entry, const gchar *key)
{
  const gchar *value = NULL;

  if (!g_variant_lookup (entry, key, "&s", &value))
    g_error ("the device has no string \"%s\": %s", key, g_variant_print (entry, TRUE));
  return g_strdup (value);
}

static void
assert_device (Fixture *fx, const gchar *id, const gchar *owner, const gchar *mode)
{
  g_autoptr (GVariant) entry = list_lookup (fx, id);
  g_autofree gchar *actual_owner = NULL;
  g_autofree gchar *actual_mode = NULL;

  g_assert_nonnull (entry);
  actual_owner = lookup_string (entry, "owner");
  actual_mode = lookup_string (entry, "mode");
  g_assert_cmpstr (actual_owner, ==, owner);
  g_assert_cmpstr (actual_mode, ==, mode);
}

typedef struct
{
  Fixture *fx;
  const gchar *id;
} DeviceWait;

static gboolean
device_has_problem (gpointer data)
{
  DeviceWait *w = data;
  g_autoptr (GVariant) entry = list_lookup (w->fx, w->id);
  g_autofree gchar *problem = entry != NULL ? lookup_string (entry, "problem") : NULL;

  return problem != NULL && *problem != '\0';
}

static void
assign (Fixture *fx, const gchar *id, const gchar *domain, GVariant *opts, GError **error)
{
  g_autoptr (GVariant) owned_opts = opts; /* a full reference, as for screenshot() */
  g_autoptr (GVariant) reply = NULL;

  reply = call (fx, DEVICES_IFACE, "Assign", g_variant_new ("(ss@a{sv})", id, domain, owned_opts),
                error);
  /* Either a reply or an error. */
  g_assert_true ((reply != NULL) == (*error == NULL));
}

static void
test_devices (Fixture *fx, gconstpointer data)
{
  g_autoptr (GError) error = NULL;
  g_autoptr (GVariant) entry = NULL;
  g_autoptr (GVariant) reply = NULL;
  g_autofree gchar *now = NULL;
  g_autofree gchar *text = NULL;
  guint16 vendor = 0, product = 0;
  gboolean present = FALSE;

  xdm_harness_start_dhfd (fx->h);

  /* The emulated inputs and the fake USB device, as the XML says. */
  entry = list_lookup (fx, "input-keyboard");
  g_assert_nonnull (entry);
  text = lookup_string (entry, "kind");
  g_assert_cmpstr (text, ==, "input");
  g_clear_pointer (&text, g_free);
  text = lookup_string (entry, "selector");
  g_assert_cmpstr (text, ==, "input:keyboard");
  g_clear_pointer (&text, g_free);
  text = lookup_string (entry, "input-type");
  g_assert_cmpstr (text, ==, "keyboard");
  g_clear_pointer (&text, g_free);
  text = lookup_string (entry, "holder");
  g_assert_cmpstr (text, ==, "");
  g_clear_pointer (&text, g_free);
  text = lookup_string (entry, "problem");
  g_assert_cmpstr (text, ==, "");
  g_clear_pointer (&text, g_free);
  g_assert_true (g_variant_lookup (entry, "present", "b", &present));
  g_assert_true (present);
  g_clear_pointer (&entry, g_variant_unref);
  assert_device (fx, "input-keyboard", "dom0", "follow-focus");
  assert_device (fx, "input-tablet", "dom0", "follow-focus");
  entry = list_lookup (fx, "usb-1-2");
  g_assert_nonnull (entry);
  g_assert_true (g_variant_lookup (entry, "vendor", "q", &vendor));
  g_assert_true (g_variant_lookup (entry, "product", "q", &product));
  g_assert_cmpuint (vendor, ==, 0x046d);
  g_assert_cmpuint (product, ==, 0xc52b);
  text = lookup_string (entry, "selector");
  g_assert_cmpstr (text, ==, "usb:046d:c52b");
  g_clear_pointer (&text, g_free);
  text = lookup_string (entry, "port");
  g_assert_cmpstr (text, ==, "1-2");
  g_clear_pointer (&text, g_free);
  g_clear_pointer (&entry, g_variant_unref);
  assert_device (fx, "usb-1-2", "dom0", "dom0");
  {
    g_autoptr (GVariant) none = list_lookup (fx, "pci-0000:00:00.0");

    g_assert_null (none);
  }

  /* The test driver attaches nothing: a switch that moves the inputs
   * fails and leaves the focus and the devices as they were. */
  assert_switch_fails (fx, "personal", DHF_ERROR_NOT_SUPPORTED);
  now = focused (fx);
  g_assert_cmpstr (now, ==, "dom0");
  assert_device (fx, "input-keyboard", "dom0", "follow-focus");
  assert_device (fx, "input-tablet", "dom0", "follow-focus");
  dhf_test_sync_with_dhfd (fx->h->conn);
  g_assert_cmpuint (fx->focus_changes->len, ==, 0);

  /* Assign and Release: errors first. */
  assign (fx, "usb-9-9", "personal", options ("{}"), &error);
  g_assert_error (error, DHF_ERROR, DHF_ERROR_NOT_FOUND);
  g_clear_error (&error);
  assign (fx, "usb-1-2", "nonexistent", options ("{}"), &error);
  g_assert_error (error, DHF_ERROR, DHF_ERROR_NOT_FOUND);
  g_clear_error (&error);
  /* The policy gives the receiver to environments only. */
  assign (fx, "usb-1-2", "files", options ("{}"), &error);
  g_assert_error (error, DHF_ERROR, DHF_ERROR_NOT_AUTHORIZED);
  g_clear_error (&error);
  assign (fx, "usb-1-2", "personal", options ("{'force': <true>}"), &error);
  g_assert_error (error, DHF_ERROR, DHF_ERROR_INVALID_ARGS);
  g_clear_error (&error);
  assign (fx, "usb-1-2", "dom0", options ("{}"), &error);
  g_assert_error (error, DHF_ERROR, DHF_ERROR_INVALID_ARGS);
  g_clear_error (&error);
  reply = call (fx, DEVICES_IFACE, "Assign", g_variant_new ("(ss)", "usb-1-2", "personal"), &error);
  g_assert_error (error, G_DBUS_ERROR, G_DBUS_ERROR_INVALID_ARGS);
  g_clear_error (&error);
  /* Allowed, but the test driver cannot attach it: nothing changes. */
  assign (fx, "usb-1-2", "personal", options ("{}"), &error);
  g_assert_error (error, DHF_ERROR, DHF_ERROR_NOT_SUPPORTED);
  g_clear_error (&error);
  assert_device (fx, "usb-1-2", "dom0", "dom0");
  /* No pin was made, so there is none to release. */
  reply = call (fx, DEVICES_IFACE, "Release", g_variant_new ("(s)", "usb-1-2"), &error);
  g_assert_null (reply);
  g_assert_error (error, DHF_ERROR, DHF_ERROR_NOT_FOUND);
  g_clear_error (&error);

  /* A policy that pins the receiver to personal: the engine tries, fails
   * on the test driver, and says so in the device's problem (announced
   * with Changed). */
  g_ptr_array_set_size (fx->device_changes, 0);
  xdm_harness_set_policy (fx->h, "switch @dom0 @role:environment allow\n"
                                 "device:usb:046d:c52b @dom0 personal allow mode=pinned\n");
  {
    DeviceWait w = { fx, "usb-1-2" };

    xdm_wait_until (device_has_problem, &w);
  }
  dhf_test_sync_with_dhfd (fx->h->conn);
  g_assert_true (
      g_ptr_array_find_with_equal_func (fx->device_changes, "usb-1-2", g_str_equal, NULL));
  entry = list_lookup (fx, "usb-1-2");
  text = lookup_string (entry, "mode");
  g_assert_cmpstr (text, ==, "pinned");
  g_clear_pointer (&text, g_free);
  text = lookup_string (entry, "holder");
  g_assert_cmpstr (text, ==, "personal");
  g_clear_pointer (&text, g_free);
  text = lookup_string (entry, "origin");
  g_assert_true (g_str_has_prefix (text, "policy "));
  g_clear_pointer (&text, g_free);
  text = lookup_string (entry, "owner");
  g_assert_cmpstr (text, ==, "dom0");
  g_clear_pointer (&text, g_free);
  text = lookup_string (entry, "problem");
  g_assert_cmpstr (text, !=, "");
  g_clear_pointer (&entry, g_variant_unref);

  /* And now without input rules, the switch has nothing to move. */
  assert_switch (fx, "Switch", "personal", "personal");
}

/* --- org.dhf.framework.Switch over XDM ------------------------------------ */

static void
assert_focused_reply (const gchar *reply, const gchar *expected)
{
  json_object *json = xdm_reply_json (reply);
  json_object *value = NULL;

  g_assert_true (json_object_object_get_ex (json, "focused", &value));
  g_assert_cmpstr (json_object_get_string (value), ==, expected);
  json_object_put (json);
}

typedef struct
{
  XdmHarness *h;
  const gchar *domain;
} CallsWait;

static gboolean
no_calls_in_flight (gpointer data)
{
  CallsWait *w = data;
  g_autoptr (GVariant) list = xdm_harness_list (w->h, "ListConnections");

  return xdm_harness_lookup_u64 (list, "domain", w->domain, "calls-in-flight") == 0;
}

static const Setup xdm_setup = { "AskTimeout=1\n", NULL, NULL, FALSE };

/* What a guest is told of every refusal, whatever the reason. */
#define NOT_ALLOWED_REPLY "error not-authorized not allowed by the policy"

static void
test_xdm_switch (Fixture *fx, gconstpointer data)
{
  g_autoptr (XdmPromptAgent) agent = NULL;
  XdmSim *personal, *work, *files, *dom0;
  g_autofree gchar *reply = NULL;
  g_autofree gchar *tag = NULL;

  personal = xdm_sim_spawn (fx->h, "personal");
  work = xdm_sim_spawn (fx->h, "work");
  files = xdm_sim_spawn (fx->h, "files");
  xdm_harness_start_dhfd (fx->h);
  xdm_sim_wait_ready (personal);
  xdm_sim_wait_ready (work);
  xdm_sim_wait_ready (files);

  /* personal may put any environment on screen. */
  reply = xdm_sim_run (personal, "call", "org.dhf.framework.Switch dom0 0 {\"target\":\"work\"}");
  assert_focused_reply (reply, "work");
  g_clear_pointer (&reply, g_free);
  expect_focus_changed (fx, 1, "work", "dom0");
  /* @previous in the cycle of personal and work. */
  reply = xdm_sim_run (personal, "call",
                       "org.dhf.framework.Switch dom0 0 {\"target\":\"@previous\"}");
  assert_focused_reply (reply, "personal");
  g_clear_pointer (&reply, g_free);
  expect_focus_changed (fx, 2, "personal", "work");
  /* A service, a stopped one, none at all: a guest learns nothing of
   * them by asking; each reads exactly as a refusal by the policy. */
  reply = xdm_sim_run (personal, "call", "org.dhf.framework.Switch dom0 0 {\"target\":\"files\"}");
  g_assert_cmpstr (reply, ==, NOT_ALLOWED_REPLY);
  g_clear_pointer (&reply, g_free);
  reply
      = xdm_sim_run (personal, "call", "org.dhf.framework.Switch dom0 0 {\"target\":\"stopped\"}");
  g_assert_cmpstr (reply, ==, NOT_ALLOWED_REPLY);
  g_clear_pointer (&reply, g_free);
  reply = xdm_sim_run (personal, "call", "org.dhf.framework.Switch dom0 0 {\"target\":\"nobody\"}");
  g_assert_cmpstr (reply, ==, NOT_ALLOWED_REPLY);
  g_clear_pointer (&reply, g_free);
  /* Bad params are the caller's own business. */
  reply = xdm_sim_run (personal, "call", "org.dhf.framework.Switch dom0 0 {\"target\":5}");
  xdm_assert_error (reply, "invalid-args");
  g_clear_pointer (&reply, g_free);
  reply = xdm_sim_run (personal, "call", "org.dhf.framework.Switch dom0 0");
  xdm_assert_error (reply, "invalid-args");
  g_clear_pointer (&reply, g_free);
  /* Only environments may call the service at all (the XDM rule). */
  reply = xdm_sim_run (files, "call", "org.dhf.framework.Switch dom0 0 {\"target\":\"work\"}");
  xdm_assert_error (reply, "not-authorized");
  g_clear_pointer (&reply, g_free);
  /* dom0's own XDM clients: no XDM rule lets them. */
  dom0 = xdm_sim_start (fx->h, "dom0");
  reply = xdm_sim_run (dom0, "call", "org.dhf.framework.Switch dom0 0 {\"target\":\"work\"}");
  xdm_assert_error (reply, "not-authorized");
  g_clear_pointer (&reply, g_free);
  xdm_sim_free (dom0);

  /* work needs the user's consent; no prompt agent: denied, and the
   * guest learns only that it was not allowed (not which rule). */
  reply = xdm_sim_run (work, "call", "org.dhf.framework.Switch dom0 0 {\"target\":\"work\"}");
  g_assert_cmpstr (reply, ==, NOT_ALLOWED_REPLY);
  g_clear_pointer (&reply, g_free);

  agent = xdm_prompt_agent_new (fx->h, XDM_PROMPT_YES);

  /* Yes. */
  reply = xdm_sim_run (work, "call", "org.dhf.framework.Switch dom0 0 {\"target\":\"work\"}");
  assert_focused_reply (reply, "work");
  g_clear_pointer (&reply, g_free);
  g_assert_cmpuint (agent->asked, ==, 1);
  g_assert_nonnull (strstr (agent->question, "'service': <'switch'>"));
  g_assert_nonnull (strstr (agent->question, "'source': <'work'>"));
  g_assert_nonnull (strstr (agent->question, "'target': <'work'>"));
  g_assert_nonnull (strstr (agent->question, "/50-test.policy:7"));

  /* No. */
  agent->answer = XDM_PROMPT_NO;
  reply = xdm_sim_run (work, "call", "org.dhf.framework.Switch dom0 0 {\"target\":\"personal\"}");
  g_assert_cmpstr (reply, ==, NOT_ALLOWED_REPLY);
  g_clear_pointer (&reply, g_free);
  g_assert_cmpuint (agent->asked, ==, 2);

  /* The caller gives up while the user is asked: it gets its timeout,
   * nothing more, and the late "yes" moves nothing. */
  agent->answer = XDM_PROMPT_HOLD;
  tag = xdm_sim_begin (work, "call", "org.dhf.framework.Switch dom0 300 {\"target\":\"personal\"}");
  /* work is focused now: this one asks the user. */
  xdm_prompt_agent_wait_asked (agent, agent->asked + 1);
  reply = xdm_sim_wait (work, tag);
  xdm_assert_error (reply, "timeout");
  g_clear_pointer (&reply, g_free);
  /* The client gives up on its own clock: wait until dhfd has too. */
  {
    CallsWait w = { fx->h, "work" };

    xdm_wait_until (no_calls_in_flight, &w);
  }
  dhf_test_sync_with_dhfd (fx->h->conn);
  g_assert_cmpuint (agent->held->len, ==, 1);
  xdm_prompt_agent_answer_held (agent, TRUE);
  dhf_test_sync_with_dhfd (fx->h->conn);
  {
    g_autofree gchar *now = focused (fx);

    g_assert_cmpstr (now, ==, "work");
  }

  /* The caller goes away while the user is asked. */
  g_free (tag);
  tag = xdm_sim_begin (work, "call", "org.dhf.framework.Switch dom0 0 {\"target\":\"personal\"}");
  xdm_prompt_agent_wait_asked (agent, 4);
  xdm_sim_kill (work);
  /* Once dhfd has seen it go, the late "yes" moves nothing. */
  xdm_harness_wait_connections (fx->h, "work", 0);
  dhf_test_sync_with_dhfd (fx->h->conn);
  xdm_prompt_agent_answer_held (agent, TRUE);
  /* dhfd still answers the others. */
  agent->answer = XDM_PROMPT_NO;
  dhf_test_sync_with_dhfd (fx->h->conn);
  {
    g_autofree gchar *now = focused (fx);

    g_assert_cmpstr (now, ==, "work");
  }
  reply
      = xdm_sim_run (personal, "call", "org.dhf.framework.Switch dom0 0 {\"target\":\"personal\"}");
  assert_focused_reply (reply, "personal");
  g_clear_pointer (&reply, g_free);

  xdm_sim_free (work);
  xdm_sim_free (personal);
  xdm_sim_free (files);
}

/* One switch per appliance at a time, through dhfd and its engine: while
 * the user is asked about work's switch, work may not ask for another;
 * personal may. (That a switch counts until the engine is done with it,
 * also after its caller gave up, is test-xdm-switch's, with a handler
 * that answers when the test says.) A switch whose caller gave up is
 * dropped without a word, in the log too. */
static const Setup xdm_queue_setup = { "AskTimeout=60\n", NULL, NULL, FALSE };

#define BUSY_REPLY "error limit-exceeded a switch requested by this appliance is still in progress"

static const gchar switch_to_personal[]
    = "org.dhf.framework.Switch dom0 0 {\"target\":\"personal\"}";
static const gchar switch_to_work[] = "org.dhf.framework.Switch dom0 0 {\"target\":\"work\"}";

/* Tries work's switch to work: FALSE while it is refused as busy. */
static gboolean
work_switched (gpointer data)
{
  XdmSim *work = data;
  g_autofree gchar *reply = xdm_sim_run (work, "call", "%s", switch_to_work);

  if (g_str_equal (reply, BUSY_REPLY))
    return FALSE;
  assert_focused_reply (reply, "work");
  return TRUE;
}

static void
test_xdm_switch_one_at_a_time (Fixture *fx, gconstpointer data)
{
  g_autoptr (XdmPromptAgent) agent = NULL;
  g_autofree gchar *work_tag = NULL;
  g_autofree gchar *personal_tag = NULL;
  g_autofree gchar *tag = NULL;
  g_autofree gchar *reply = NULL;
  g_autofree gchar *log = NULL;
  XdmSim *personal, *work;

  personal = xdm_sim_spawn (fx->h, "personal");
  work = xdm_sim_spawn (fx->h, "work");
  xdm_harness_start_dhfd (fx->h);
  xdm_sim_wait_ready (personal);
  xdm_sim_wait_ready (work);
  agent = xdm_prompt_agent_new (fx->h, XDM_PROMPT_HOLD);

  /* work's switch waits for the user. */
  work_tag = xdm_sim_begin (work, "call", "%s", switch_to_personal);
  xdm_prompt_agent_wait_asked (agent, 1);
  /* A second one from work meanwhile is refused at once, whatever it
   * asks for; nobody is asked about it. */
  reply = xdm_sim_run (work, "call", "%s", switch_to_work);
  g_assert_cmpstr (reply, ==, BUSY_REPLY);
  g_clear_pointer (&reply, g_free);
  /* personal is not held back by work's switch: its own goes to the
   * engine (and is answered whenever the engine gets to it). */
  personal_tag = xdm_sim_begin (personal, "call", "%s", switch_to_work);
  dhf_test_sync_with_dhfd (fx->h->conn);
  g_assert_cmpuint (agent->asked, ==, 1);

  /* The user says yes: both are done. */
  g_assert_cmpuint (agent->held->len, ==, 1);
  xdm_prompt_agent_answer_held (agent, TRUE);
  reply = xdm_sim_wait (work, work_tag);
  xdm_assert_ok (reply);
  g_clear_pointer (&reply, g_free);
  reply = xdm_sim_wait (personal, personal_tag);
  xdm_assert_ok (reply);
  g_clear_pointer (&reply, g_free);
  /* The answer came once the switch was done: work may ask again. */
  agent->answer = XDM_PROMPT_YES;
  g_assert_true (work_switched (work));

  /* work gives up on a switch while the user is asked: it gets its
   * timeout; once dhfd is done with the switch, work may ask again. */
  agent->answer = XDM_PROMPT_HOLD;
  tag = xdm_sim_begin (work, "call", "org.dhf.framework.Switch dom0 300 {\"target\":\"personal\"}");
  /* work is focused now: this one asks the user. */
  xdm_prompt_agent_wait_asked (agent, agent->asked + 1);
  reply = xdm_sim_wait (work, tag);
  xdm_assert_error (reply, "timeout");
  g_clear_pointer (&reply, g_free);
  agent->answer = XDM_PROMPT_YES;
  xdm_wait_until (work_switched, work);
  /* The abandoned switch was dropped quietly: its caller was gone, so
   * there was nothing to word, and nothing to log. */
  log = xdm_harness_dhfd_log (fx->h);
  g_assert_null (strstr (log, "asked for by"));
  /* The question that was called off is still the agent's to answer. */
  xdm_prompt_agent_answer_held (agent, FALSE);
  dhf_test_sync_with_dhfd (fx->h->conn);

  xdm_sim_free (work);
  xdm_sim_free (personal);
}

/* A switch the hypervisor fails (the test driver moves no device, and
 * the inputs follow the focus): a guest gets the code and a fixed text,
 * never the hypervisor's words, which go to dhfd's log; dom0's own XDM
 * clients get the real error. */
static const Setup xdm_failed_setup = {
  NULL,
  "EmulatedInput=keyboard;tablet\n",
  "org.dhf.framework.Switch @role:environment @dom0 allow\n"
  "org.dhf.framework.Switch @dom0 @dom0 allow\n"
  "switch personal @role:environment allow\n"
  "switch @dom0 @role:environment allow\n"
  "device:input:* @dom0 @role:environment allow mode=follow-focus\n",
  FALSE,
};

static void
test_xdm_switch_failed (Fixture *fx, gconstpointer data)
{
  g_autofree gchar *reply = NULL;
  g_autofree gchar *log = NULL;
  g_autofree gchar *now = NULL;
  XdmSim *personal, *dom0;

  personal = xdm_sim_spawn (fx->h, "personal");
  xdm_harness_start_dhfd (fx->h);
  xdm_sim_wait_ready (personal);

  reply = xdm_sim_run (personal, "call", "org.dhf.framework.Switch dom0 0 {\"target\":\"work\"}");
  g_assert_cmpstr (reply, ==, "error not-supported the switch failed in dom0 and was undone");
  g_clear_pointer (&reply, g_free);
  now = focused (fx);
  g_assert_cmpstr (now, ==, "dom0");
  log = xdm_harness_dhfd_log (fx->h);
  g_assert_nonnull (strstr (log, "xdm: the switch to work asked for by personal failed: "));

  dom0 = xdm_sim_start (fx->h, "dom0");
  reply = xdm_sim_run (dom0, "call", "org.dhf.framework.Switch dom0 0 {\"target\":\"work\"}");
  xdm_assert_error (reply, "not-supported");
  g_assert_null (strstr (reply, "the switch failed in dom0"));
  g_clear_pointer (&reply, g_free);
  /* ... and the real reasons of a refusal. */
  reply = xdm_sim_run (dom0, "call", "org.dhf.framework.Switch dom0 0 {\"target\":\"nobody\"}");
  xdm_assert_error (reply, "not-found");
  g_clear_pointer (&reply, g_free);
  xdm_sim_free (dom0);
  xdm_sim_free (personal);
}

/* --- hotkeys ---------------------------------------------------------------- */

static const Setup hotkeys_setup = {
  NULL,
  "[Hotkeys]\nKeyboards=@FIFO@\nSlotModifiers=Ctrl+Alt\n",
  NULL,
  FALSE,
};

static void
put_event (GByteArray *out, guint16 type, guint16 code, gint32 value)
{
  struct input_event event = { 0 };

  event.type = type;
  event.code = code;
  event.value = value;
  g_byte_array_append (out, (const guint8 *) &event, sizeof event);
}

/* The key presses and releases of one combo, each followed by SYN. */
static void
put_combo (GByteArray *out, const guint16 *keys, guint n_keys)
{
  for (guint i = 0; i < n_keys; i++)
    {
      put_event (out, EV_KEY, keys[i], 1);
      put_event (out, EV_SYN, SYN_REPORT, 0);
    }
  for (guint i = n_keys; i > 0; i--)
    {
      put_event (out, EV_KEY, keys[i - 1], 0);
      put_event (out, EV_SYN, SYN_REPORT, 0);
    }
}

static gint
open_fifo_writer (const gchar *path)
{
  gint64 deadline = g_get_monotonic_time () + XDM_WAIT_TIMEOUT_S * G_USEC_PER_SEC;

  /* ENXIO until dhfd has it open for reading. */
  for (;;)
    {
      gint fd = open (path, O_WRONLY | O_NONBLOCK | O_CLOEXEC);

      if (fd >= 0)
        return fd;
      g_assert_cmpint (errno, ==, ENXIO);
      if (g_get_monotonic_time () > deadline)
        g_error ("dhfd never opened %s", path);
      g_usleep (10 * 1000);
    }
}

static void
write_all (gint fd, GByteArray *bytes)
{
  g_assert_cmpint (write (fd, bytes->data, bytes->len), ==, (gssize) bytes->len);
  g_byte_array_set_size (bytes, 0);
}

static void
test_hotkeys (Fixture *fx, gconstpointer data)
{
  g_autofree gchar *fifo = NULL;
  g_autoptr (GByteArray) events = g_byte_array_new ();
  static const guint16 next[] = { KEY_LEFTCTRL, KEY_LEFTALT, KEY_TAB };
  static const guint16 previous[] = { KEY_RIGHTCTRL, KEY_LEFTALT, KEY_LEFTSHIFT, KEY_TAB };
  static const guint16 slot2[] = { KEY_LEFTCTRL, KEY_RIGHTALT, KEY_2 };
  static const guint16 plain[] = { KEY_LEFTALT, KEY_TAB };
  gint fd;

  /* The harness's config was written with a placeholder: the FIFO lives
   * in this test's directory. */
  fifo = g_build_filename (fx->dir, "kbd", NULL);
  {
    g_autofree gchar *config = NULL;
    g_autoptr (GString) text = NULL;
    g_autoptr (GError) error = NULL;

    g_assert_true (g_file_get_contents (fx->h->config_path, &config, NULL, &error));
    text = g_string_new (config);
    g_assert_cmpuint (g_string_replace (text, "@FIFO@", fifo, 1), ==, 1);
    g_assert_true (g_file_set_contents (fx->h->config_path, text->str, -1, &error));
  }
  g_assert_cmpint (mkfifo (fifo, 0600), ==, 0);
  xdm_harness_start_dhfd (fx->h);
  wait_cycle (fx, "personal,work");
  fd = open_fifo_writer (fifo);

  /* Ctrl+Alt+Tab: @next, from dom0 the first of the cycle. */
  put_combo (events, next, G_N_ELEMENTS (next));
  write_all (fd, events);
  expect_focus_changed (fx, 1, "personal", "dom0");
  put_combo (events, next, G_N_ELEMENTS (next));
  write_all (fd, events);
  expect_focus_changed (fx, 2, "work", "personal");
  /* Either side's modifiers: Ctrl+Alt+Shift+Tab goes back. */
  put_combo (events, previous, G_N_ELEMENTS (previous));
  write_all (fd, events);
  expect_focus_changed (fx, 3, "personal", "work");
  /* SlotModifiers+2: the second environment of the cycle. */
  put_combo (events, slot2, G_N_ELEMENTS (slot2));
  write_all (fd, events);
  expect_focus_changed (fx, 4, "work", "personal");
  /* A combo no rule binds does nothing (checked after one that does). */
  put_combo (events, plain, G_N_ELEMENTS (plain));
  put_combo (events, next, G_N_ELEMENTS (next));
  write_all (fd, events);
  expect_focus_changed (fx, 5, "personal", "work");
  dhf_test_sync_with_dhfd (fx->h->conn);
  g_assert_cmpuint (fx->focus_changes->len, ==, 5);

  /* The bindings follow the policy: without the hotkey rule, nothing. */
  xdm_harness_set_policy (fx->h, "switch @dom0 @role:environment allow\n"
                                 "hotkey:Ctrl+Alt+Shift+Tab @dom0 @previous allow\n");
  put_combo (events, next, G_N_ELEMENTS (next));
  put_combo (events, previous, G_N_ELEMENTS (previous));
  write_all (fd, events);
  expect_focus_changed (fx, 6, "work", "personal");
  dhf_test_sync_with_dhfd (fx->h->conn);
  g_assert_cmpuint (fx->focus_changes->len, ==, 6);
  close (fd);
}

int
main (int argc, char **argv)
{
  g_test_init (&argc, &argv, NULL);
  /* The error domain is registered with GDBus before any reply arrives. */
  (void) DHF_ERROR;
#define ADD(path, setup, fn)                                                                       \
  g_test_add (path, Fixture, setup, fixture_set_up, fn, fixture_tear_down)
  ADD ("/display/focus", NULL, test_focus);
  ADD ("/display/switch-errors", NULL, test_switch_errors);
  ADD ("/display/fallback", &fallback_setup, test_fallback);
  ADD ("/display/restart", NULL, test_restart);
  ADD ("/display/state-unwritable", NULL, test_state_unwritable);
  ADD ("/display/screenshot", NULL, test_screenshot);
  ADD ("/display/devices", &devices_setup, test_devices);
  ADD ("/display/xdm-switch", &xdm_setup, test_xdm_switch);
  ADD ("/display/xdm-switch-one-at-a-time", &xdm_queue_setup, test_xdm_switch_one_at_a_time);
  ADD ("/display/xdm-switch-failed", &xdm_failed_setup, test_xdm_switch_failed);
  ADD ("/display/hotkeys", &hotkeys_setup, test_hotkeys);
  return g_test_run ();
}
