/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* What dhf-example-guest reads from the kernel, driven with text: the
 * host has no guest kernel, no /dev/input and no input hot-plug. Each
 * parser must take what the kernel writes and refuse anything else whole;
 * only a device's own name is not refused but made printable. */
#include "config.h"

#include <glib/gstdio.h>
#include <linux/input.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "guest-input-watcher.h"
#include "guest-power-button.h"
#include "guest-procfs.h"
#include "guest-uevent.h"

/* ---- /proc/bus/input/devices ------------------------------------------------- */

/* A QEMU guest with the generic kernel and a USB keyboard, as it writes it
 * (every Handlers= ends with a space; every device with a blank line). */
static const gchar qemu_devices[]
    = "I: Bus=0019 Vendor=0000 Product=0001 Version=0000\n"
      "N: Name=\"Power Button\"\n"
      "P: Phys=LNXPWRBN/button/input0\n"
      "S: Sysfs=/devices/LNXSYSTM:00/LNXPWRBN:00/input/input0\n"
      "U: Uniq=\n"
      "H: Handlers=kbd event0 \n"
      "B: PROP=0\n"
      "B: EV=3\n"
      "B: KEY=10000000000000 0\n"
      "\n"
      "I: Bus=0011 Vendor=0001 Product=0001 Version=ab41\n"
      "N: Name=\"AT Translated Set 2 keyboard\"\n"
      "P: Phys=isa0060/serio0/input0\n"
      "S: Sysfs=/devices/platform/i8042/serio0/input/input1\n"
      "U: Uniq=\n"
      "H: Handlers=sysrq kbd leds event1 \n"
      "B: PROP=0\n"
      "B: EV=120013\n"
      "B: KEY=402000000 3803078f800d001 feffffdfffefffff fffffffffffffffe\n"
      "B: MSC=10\n"
      "B: LED=7\n"
      "\n"
      "I: Bus=0011 Vendor=0002 Product=0006 Version=0000\n"
      "N: Name=\"ImExPS/2 Generic Explorer Mouse\"\n"
      "P: Phys=isa0060/serio1/input0\n"
      "S: Sysfs=/devices/platform/i8042/serio1/input/input3\n"
      "U: Uniq=\n"
      "H: Handlers=mouse0 event2 \n"
      "B: PROP=1\n"
      "B: EV=7\n"
      "B: KEY=1f0000 0 0 0 0\n"
      "B: REL=143\n"
      "\n";

static GPtrArray *
parse_devices (const gchar *text, GError **error)
{
  return guest_procfs_parse_input_devices (text, strlen (text), error);
}

static void
test_devices_qemu (void)
{
  g_autoptr (GError) error = NULL;
  g_autoptr (GPtrArray) devices = parse_devices (qemu_devices, &error);
  const GuestInputDevice *device;

  g_assert_no_error (error);
  g_assert_cmpuint (devices->len, ==, 3);

  device = devices->pdata[0];
  g_assert_cmpstr (device->name, ==, "Power Button");
  g_assert_cmpstrv (device->handlers, ((const gchar *const[]){ "kbd", "event0", NULL }));
  g_assert_false (device->keyboard);

  device = devices->pdata[1];
  g_assert_cmpstr (device->name, ==, "AT Translated Set 2 keyboard");
  g_assert_cmpstrv (device->handlers,
                    ((const gchar *const[]){ "sysrq", "kbd", "leds", "event1", NULL }));
  g_assert_true (device->keyboard);

  device = devices->pdata[2];
  g_assert_cmpstr (device->name, ==, "ImExPS/2 Generic Explorer Mouse");
  g_assert_false (device->keyboard);
}

static void
test_devices_edges (void)
{
  g_autoptr (GError) error = NULL;
  g_autoptr (GPtrArray) devices = NULL;
  const GuestInputDevice *device;

  /* No input support, or nothing plugged. */
  devices = guest_procfs_parse_input_devices ("", 0, &error);
  g_assert_no_error (error);
  g_assert_cmpuint (devices->len, ==, 0);
  g_clear_pointer (&devices, g_ptr_array_unref);

  /* The last block without its blank line; a quote inside the name (the
   * kernel prints it raw); an empty name; a line of a later kernel; a
   * 32-bit kernel's words, where KEY_A is still bit 30 of the last. */
  devices = parse_devices ("N: Name=\"say \"hi\"\"\n"
                           "H: Handlers=\n"
                           "Z: Something=new\n"
                           "\n"
                           "N: Name=\"\"\n"
                           "H: Handlers=kbd event7\n"
                           "B: KEY=ffffffff 40000000\n",
                           &error);
  g_assert_no_error (error);
  g_assert_cmpuint (devices->len, ==, 2);
  device = devices->pdata[0];
  g_assert_cmpstr (device->name, ==, "say \"hi\"");
  g_assert_cmpstrv (device->handlers, ((const gchar *const[]){ NULL }));
  g_assert_false (device->keyboard);
  device = devices->pdata[1];
  g_assert_cmpstr (device->name, ==, "");
  g_assert_true (device->keyboard);
}

static void
test_devices_malformed (void)
{
  static const struct
  {
    const gchar *text;
    const gchar *message;
  } cases[] = {
    { "N: Name=\"x\"\nH: Handlers=kbd", "the last line has no newline (cut short?)" },
    { "garbage\n", "line 1: not a \"X: value\" line" },
    { "N:Name=\"x\"\n", "line 1: not a \"X: value\" line" },
    { "n: Name=\"x\"\n", "line 1: not a \"X: value\" line" },
    { "N: Name=x\nH: Handlers=kbd\n", "line 1: N: is not Name=\"...\"" },
    { "N: Name=\"x\nH: Handlers=kbd\n", "line 1: N: is not Name=\"...\"" },
    { "N: Name=\"\n", "line 1: N: is not Name=\"...\"" },
    { "N: Name=\"a\"\nN: Name=\"b\"\nH: Handlers=\n", "line 2: a second N: line in one device" },
    { "N: Name=\"a\"\nH: Handlers=\n\nI: Bus=0011\n", "line 4: a device without N: Name=" },
    { "N: Name=\"a\"\nB: KEY=0\n\n", "line 1: a device without H: Handlers=" },
    { "N: Name=\"a\"\nH: kbd\n", "line 2: H: is not Handlers=..." },
    { "N: Name=\"a\"\nH: Handlers=kbd ev/ent0\n",
      "line 2: a handler name has a character other than [A-Za-z0-9_-]" },
    { "N: Name=\"a\"\nH: Handlers=\nB: KEY=12g\n",
      "line 3: B: KEY= has a word that is not 1 to 16 hex digits" },
    { "N: Name=\"a\"\nH: Handlers=\nB: KEY=11111111111111111\n",
      "line 3: B: KEY= has a word that is not 1 to 16 hex digits" },
    { "N: Name=\"a\"\nH: Handlers=\nB: KEY=1  2\n",
      "line 3: B: KEY= has a word that is not 1 to 16 hex digits" },
    { "N: Name=\"a\"\nH: Handlers=\nB: KEY=\n", "line 3: B: KEY= has no words or too many" },
    { "N: Name=\"a\"\nH: Handlers=\nB: KEY=1\nB: KEY=2\n",
      "line 4: a second B: KEY= line in one device" },
  };

  for (guint i = 0; i < G_N_ELEMENTS (cases); i++)
    {
      g_autoptr (GError) error = NULL;
      g_autoptr (GPtrArray) devices = parse_devices (cases[i].text, &error);

      g_test_message ("case %u: %s", i, cases[i].message);
      g_assert_null (devices);
      g_assert_error (error, G_IO_ERROR, G_IO_ERROR_INVALID_DATA);
      g_assert_cmpstr (error->message, ==, cases[i].message);
    }

  {
    g_autoptr (GError) error = NULL;
    g_autoptr (GPtrArray) devices
        = guest_procfs_parse_input_devices ("N: Name=\"a\0\"\nH: Handlers=\n", 25, &error);

    g_assert_null (devices);
    g_assert_error (error, G_IO_ERROR, G_IO_ERROR_INVALID_DATA);
  }
}

/* A device names itself: a name that is not UTF-8 or has control
 * characters is made printable (U+FFFD for each), and neither that device
 * nor the others are lost. */
static void
test_devices_odd_names (void)
{
  g_autoptr (GError) error = NULL;
  g_autoptr (GPtrArray) devices = parse_devices ("N: Name=\"\xff\xfe\"\n"
                                                 "H: Handlers=event0 \n"
                                                 "\n"
                                                 "N: Name=\"a\tb\x7f\xc2\x85\x1b[31m\"\n"
                                                 "H: Handlers=kbd event1 \n"
                                                 "B: KEY=40000000\n"
                                                 "\n"
                                                 "N: Name=\"Power Button\"\n"
                                                 "H: Handlers=kbd event2 \n"
                                                 "\n",
                                                 &error);
  const GuestInputDevice *device;

  g_assert_no_error (error);
  g_assert_cmpuint (devices->len, ==, 3);
  device = devices->pdata[0];
  g_assert_cmpstr (device->name, ==, "\xef\xbf\xbd\xef\xbf\xbd");
  g_assert_cmpstrv (device->handlers, ((const gchar *const[]){ "event0", NULL }));
  device = devices->pdata[1];
  g_assert_cmpstr (device->name, ==,
                   "a\xef\xbf\xbd"
                   "b\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd[31m");
  g_assert_true (device->keyboard);
  device = devices->pdata[2];
  g_assert_cmpstr (device->name, ==, "Power Button");
}

static void
test_devices_too_many (void)
{
  g_autoptr (GString) text = g_string_new (NULL);
  g_autoptr (GError) error = NULL;
  g_autoptr (GPtrArray) devices = NULL;

  for (guint i = 0; i < 1025; i++)
    g_string_append_printf (text, "N: Name=\"d%u\"\nH: Handlers=event%u \n\n", i, i);
  devices = guest_procfs_parse_input_devices (text->str, text->len, &error);
  g_assert_null (devices);
  g_assert_error (error, G_IO_ERROR, G_IO_ERROR_INVALID_DATA);
  g_assert_true (g_str_has_suffix (error->message, ": too many devices"));
}

static void
test_devices_read (void)
{
  g_autoptr (GError) error = NULL;
  g_autoptr (GPtrArray) devices = NULL;
  g_autofree gchar *dir = g_dir_make_tmp ("guest-parsers-XXXXXX", &error);
  g_autofree gchar *path = NULL;

  g_assert_no_error (error);
  path = g_build_filename (dir, "devices", NULL);

  /* A kernel without input support has no file: no devices. */
  devices = guest_procfs_read_input_devices (path, &error);
  g_assert_no_error (error);
  g_assert_cmpuint (devices->len, ==, 0);
  g_clear_pointer (&devices, g_ptr_array_unref);

  g_assert_true (g_file_set_contents (path, "junk\n", -1, &error));
  devices = guest_procfs_read_input_devices (path, &error);
  g_assert_null (devices);
  g_assert_error (error, G_IO_ERROR, G_IO_ERROR_INVALID_DATA);
  g_assert_true (g_str_has_prefix (error->message, path));
  g_clear_error (&error);

  g_assert_true (g_file_set_contents (path, qemu_devices, -1, &error));
  devices = guest_procfs_read_input_devices (path, &error);
  g_assert_no_error (error);
  g_assert_cmpuint (devices->len, ==, 3);

  g_assert_cmpint (g_unlink (path), ==, 0);
  g_assert_cmpint (g_rmdir (dir), ==, 0);
}

/* ---- /proc/uptime -------------------------------------------------------------- */

static void
test_uptime (void)
{
  static const struct
  {
    const gchar *text;
    gint64 ms;
  } good[] = {
    { "350735.47 234388.90\n", 350735470 },
    { "0.00 0.00\n", 0 },
    { "5 6\n", 5000 },
    { "1.5 0.25\n", 1500 },
    { "2.123456789 1.0\n", 2123 },
  };
  static const gchar *const bad[] = {
    "",
    "\n",
    "350735.47 234388.90",
    "350735.47\n",
    "350735.47 234388.90 1.0\n",
    "350735.47  234388.90\n",
    " 350735.47 234388.90\n",
    "-1.00 2.00\n",
    "1. 2.00\n",
    ".5 2.00\n",
    "1.2.3 2.00\n",
    "1.0000000000 2.00\n",
    "abc 2.00\n",
    "1e3 2.00\n",
    "99999999999999999999 2.00\n",
    "1.00 2.00\n\n",
  };

  for (guint i = 0; i < G_N_ELEMENTS (good); i++)
    {
      g_autoptr (GError) error = NULL;
      gint64 ms = -1;

      g_assert_true (guest_procfs_parse_uptime (good[i].text, strlen (good[i].text), &ms, &error));
      g_assert_no_error (error);
      g_assert_cmpint (ms, ==, good[i].ms);
    }
  for (guint i = 0; i < G_N_ELEMENTS (bad); i++)
    {
      g_autoptr (GError) error = NULL;
      gint64 ms = -1;

      g_test_message ("bad uptime %u", i);
      g_assert_false (guest_procfs_parse_uptime (bad[i], strlen (bad[i]), &ms, &error));
      g_assert_error (error, G_IO_ERROR, G_IO_ERROR_INVALID_DATA);
    }
  {
    g_autoptr (GError) error = NULL;
    gint64 ms = -1;

    g_assert_false (guest_procfs_parse_uptime ("1.00\0 2.00\n", 11, &ms, &error));
    g_assert_error (error, G_IO_ERROR, G_IO_ERROR_INVALID_DATA);
  }
}

/* ---- uevents --------------------------------------------------------------------- */

#define KBD_PATH "/devices/platform/i8042/serio0/input/input1"

/* Datagrams as the kernel sends them: NUL-separated, the last NUL too. */
static const gchar kbd_add[]
    = "add@" KBD_PATH "\0"
      "ACTION=add\0"
      "DEVPATH=" KBD_PATH "\0"
      "SUBSYSTEM=input\0"
      "PRODUCT=11/1/1/ab41\0"
      "NAME=\"AT Translated Set 2 keyboard\"\0"
      "PHYS=\"isa0060/serio0/input0\"\0"
      "PROP=0\0"
      "EV=120013\0"
      "MODALIAS=input:b0011v0001p0001eAB41-e0,1,4,11,14,k71,r,am4,l0,1,2,sfw\0"
      "SEQNUM=1234\0";
static const gchar event_add[] = "add@" KBD_PATH "/event1\0"
                                 "ACTION=add\0"
                                 "DEVPATH=" KBD_PATH "/event1\0"
                                 "SUBSYSTEM=input\0"
                                 "MAJOR=13\0"
                                 "MINOR=65\0"
                                 "DEVNAME=input/event1\0"
                                 "SEQNUM=1235\0";
static const gchar kbd_remove[] = "remove@" KBD_PATH "\0"
                                  "ACTION=remove\0"
                                  "DEVPATH=" KBD_PATH "\0"
                                  "SUBSYSTEM=input\0"
                                  "NAME=\"AT Translated Set 2 keyboard\"\0"
                                  "SEQNUM=1240\0";
static const gchar mouse_add[] = "add@/devices/platform/i8042/serio1/input/input3/mouse0\0"
                                 "ACTION=add\0"
                                 "DEVPATH=/devices/platform/i8042/serio1/input/input3/mouse0\0"
                                 "SUBSYSTEM=input\0"
                                 "DEVNAME=input/mouse0\0"
                                 "SEQNUM=1236\0";
static const gchar usb_add[] = "add@/devices/pci0000:00/0000:00:04.0/usb1/1-1\0"
                               "ACTION=add\0"
                               "DEVPATH=/devices/pci0000:00/0000:00:04.0/usb1/1-1\0"
                               "SUBSYSTEM=usb\0"
                               "DEVTYPE=usb_device\0"
                               "SEQNUM=1200\0";
static const gchar kbd_change[] = "change@" KBD_PATH "\0"
                                  "ACTION=change\0"
                                  "DEVPATH=" KBD_PATH "\0"
                                  "SUBSYSTEM=input\0"
                                  "SEQNUM=1241\0";

/* sizeof counts the string literal's own final NUL: one too many. */
#define DATAGRAM(d) (d), (sizeof (d) - 1)

static void
test_uevent_input (void)
{
  g_autoptr (GError) error = NULL;
  g_autoptr (GuestUevent) event = guest_uevent_parse (DATAGRAM (kbd_add), &error);
  g_autofree gchar *node = NULL;

  g_assert_no_error (error);
  g_assert_cmpstr (event->action, ==, "add");
  g_assert_cmpstr (event->devpath, ==, KBD_PATH);
  g_assert_cmpstr (event->subsystem, ==, "input");
  g_assert_cmpstr (event->name, ==, "AT Translated Set 2 keyboard");
  g_assert_null (event->devname);
  g_assert_true (guest_uevent_is_input_device (event));
  g_assert_null (guest_uevent_get_event_node (event));
  g_clear_pointer (&event, guest_uevent_free);

  event = guest_uevent_parse (DATAGRAM (event_add), &error);
  g_assert_no_error (error);
  g_assert_false (guest_uevent_is_input_device (event));
  node = guest_uevent_get_event_node (event);
  g_assert_cmpstr (node, ==, "event1");
  g_assert_cmpstr (event->devname, ==, "input/event1");
  g_assert_null (event->name);
  g_clear_pointer (&event, guest_uevent_free);

  event = guest_uevent_parse (DATAGRAM (mouse_add), &error);
  g_assert_no_error (error);
  g_assert_false (guest_uevent_is_input_device (event));
  g_assert_null (guest_uevent_get_event_node (event));
  g_clear_pointer (&event, guest_uevent_free);

  event = guest_uevent_parse (DATAGRAM (usb_add), &error);
  g_assert_no_error (error);
  g_assert_false (guest_uevent_is_input_device (event));
  g_assert_null (guest_uevent_get_event_node (event));
  g_clear_pointer (&event, guest_uevent_free);

  /* A header-only datagram (no fields) has no ACTION field. */
  event = guest_uevent_parse (DATAGRAM ("add@/devices/x\0"), &error);
  g_assert_null (event);
  g_assert_error (error, G_IO_ERROR, G_IO_ERROR_INVALID_DATA);
  g_clear_error (&error);

  /* A NAME without the quotes is taken as it is. */
  event = guest_uevent_parse (DATAGRAM ("add@/devices/virtual/input/input9\0"
                                        "ACTION=add\0SUBSYSTEM=input\0NAME=plain\0"),
                              &error);
  g_assert_no_error (error);
  g_assert_cmpstr (event->name, ==, "plain");
  g_assert_true (guest_uevent_is_input_device (event));
  g_clear_pointer (&event, guest_uevent_free);

  /* A NAME the device chose that is not UTF-8 or has control characters
   * is made printable; the event still counts. */
  event = guest_uevent_parse (DATAGRAM ("add@/devices/virtual/input/input9\0"
                                        "ACTION=add\0SUBSYSTEM=input\0NAME=\"\xc3\x28"
                                        "a\nb\"\0"),
                              &error);
  g_assert_no_error (error);
  g_assert_cmpstr (event->name, ==,
                   "\xef\xbf\xbd(a\xef\xbf\xbd"
                   "b");
  g_assert_true (guest_uevent_is_input_device (event));
}

static void
test_uevent_malformed (void)
{
  static const struct
  {
    const gchar *data;
    gsize length;
  } cases[] = {
    /* No NUL after the last field. */
    { DATAGRAM ("add@/devices/x\0ACTION=add\0SUBSYSTEM=input") },
    { DATAGRAM ("add/devices/x\0ACTION=add\0SUBSYSTEM=input\0") },
    { DATAGRAM ("@/devices/x\0ACTION=\0SUBSYSTEM=input\0") },
    { DATAGRAM ("add@devices/x\0ACTION=add\0SUBSYSTEM=input\0") },
    { DATAGRAM ("add@/devices/x\0ACTION=add\0SUBSYSTEM\0") },
    { DATAGRAM ("add@/devices/x\0ACTION=add\0=input\0") },
    { DATAGRAM ("add@/devices/x\0ACTION=add\0subsystem=input\0") },
    { DATAGRAM ("add@/devices/x\0ACTION=add\0ACTION=add\0SUBSYSTEM=input\0") },
    { DATAGRAM ("add@/devices/x\0ACTION=add\0SUBSYSTEM=input\0SUBSYSTEM=usb\0") },
    { DATAGRAM ("add@/devices/x\0ACTION=add\0SUBSYSTEM=input\0NAME=a\0NAME=b\0") },
    { DATAGRAM ("add@/devices/x\0ACTION=remove\0SUBSYSTEM=input\0") },
    { DATAGRAM ("add@/devices/x\0ACTION=add\0DEVPATH=/devices/y\0SUBSYSTEM=input\0") },
    { DATAGRAM ("add@/devices/x\0ACTION=add\0") },
    { DATAGRAM ("add@/devices/x\0ACTION=add\0SUBSYSTEM=\0") },
    { DATAGRAM ("add@/devices/x\0ACTION=add\0SUBSYSTEM=input\0DEVNAME=input/\xc3\x28\0") },
    { DATAGRAM ("add@/devices/x\0ACTION=add\0SUBSYSTEM=in\nput\0") },
    { DATAGRAM ("add@/devices/\x1b\0ACTION=add\0SUBSYSTEM=input\0") },
    { DATAGRAM ("add@/devices/\xc2\x8f\0ACTION=add\0SUBSYSTEM=input\0") },
    /* libudev's re-broadcast, which is not the kernel's format. */
    { DATAGRAM ("libudev\0\xfe\xed\xca\xfe") },
    { "", 0 },
  };

  for (guint i = 0; i < G_N_ELEMENTS (cases); i++)
    {
      g_autoptr (GError) error = NULL;
      g_autoptr (GuestUevent) event = guest_uevent_parse (cases[i].data, cases[i].length, &error);

      g_test_message ("malformed uevent %u", i);
      g_assert_null (event);
      g_assert_error (error, G_IO_ERROR, G_IO_ERROR_INVALID_DATA);
      g_assert_true (g_str_has_prefix (error->message, "not a kernel uevent: "));
    }

  {
    g_autofree gchar *big = g_malloc0 (GUEST_UEVENT_MAX + 1);
    g_autoptr (GError) error = NULL;
    g_autoptr (GuestUevent) event = NULL;

    memcpy (big, kbd_add, sizeof kbd_add - 1);
    event = guest_uevent_parse (big, GUEST_UEVENT_MAX + 1, &error);
    g_assert_null (event);
    g_assert_error (error, G_IO_ERROR, G_IO_ERROR_INVALID_DATA);
  }
  {
    /* DEVNAME naming another node than DEVPATH. */
    g_autoptr (GError) error = NULL;
    g_autoptr (GuestUevent) event
        = guest_uevent_parse (DATAGRAM ("add@/devices/x/input/input1/event1\0ACTION=add\0"
                                        "SUBSYSTEM=input\0DEVNAME=input/event2\0"),
                              &error);

    g_assert_no_error (error);
    g_assert_null (guest_uevent_get_event_node (event));
  }
}

/* ---- the watcher, fed through a socketpair ---------------------------------------- */

typedef struct
{
  GPtrArray *devices; /* "ACTION NAME DEVPATH" */
  GPtrArray *nodes;
} Seen;

static void
seen_device (const GuestUevent *event, gpointer user_data)
{
  Seen *seen = user_data;

  g_ptr_array_add (seen->devices,
                   g_strdup_printf ("%s %s %s", event->action,
                                    event->name != NULL ? event->name : "-", event->devpath));
}

static void
seen_node (const gchar *node, gpointer user_data)
{
  Seen *seen = user_data;

  g_ptr_array_add (seen->nodes, g_strdup (node));
}

static void
test_watcher (void)
{
  static const GuestInputWatcherFuncs funcs = {
    .device_changed = seen_device,
    .event_node_added = seen_node,
  };
  Seen seen = { g_ptr_array_new_with_free_func (g_free), g_ptr_array_new_with_free_func (g_free) };
  g_autoptr (GuestInputWatcher) watcher = NULL;
  gint fds[2];

  g_assert_cmpint (socketpair (AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, fds), ==, 0);
  watcher = guest_input_watcher_new_for_fd (fds[0], &funcs, &seen);

  g_assert_cmpint (send (fds[1], DATAGRAM (usb_add), 0), ==, sizeof usb_add - 1);
  g_assert_cmpint (send (fds[1], DATAGRAM (kbd_add), 0), ==, sizeof kbd_add - 1);
  g_assert_cmpint (send (fds[1], "junk", 4, 0), ==, 4);
  g_assert_cmpint (send (fds[1], DATAGRAM (event_add), 0), ==, sizeof event_add - 1);
  g_assert_cmpint (send (fds[1], DATAGRAM (mouse_add), 0), ==, sizeof mouse_add - 1);
  g_assert_cmpint (send (fds[1], DATAGRAM (kbd_change), 0), ==, sizeof kbd_change - 1);
  g_assert_cmpint (send (fds[1], DATAGRAM (kbd_remove), 0), ==, sizeof kbd_remove - 1);

  while (seen.devices->len < 2)
    g_main_context_iteration (NULL, TRUE);
  /* Anything still queued has been read with the last one. */
  while (g_main_context_iteration (NULL, FALSE))
    continue;

  g_assert_cmpuint (seen.devices->len, ==, 2);
  g_assert_cmpstr (seen.devices->pdata[0], ==, "add AT Translated Set 2 keyboard " KBD_PATH);
  g_assert_cmpstr (seen.devices->pdata[1], ==, "remove AT Translated Set 2 keyboard " KBD_PATH);
  g_assert_cmpuint (seen.nodes->len, ==, 1);
  g_assert_cmpstr (seen.nodes->pdata[0], ==, "event1");

  close (fds[1]);
  g_ptr_array_unref (seen.devices);
  g_ptr_array_unref (seen.nodes);
}

/* ---- evdev: the power button ---------------------------------------------------- */

static void
test_evdev_name (void)
{
  gchar buffer[256] = { 0 };

  strcpy (buffer, GUEST_POWER_BUTTON_NAME);
  g_assert_true (guest_evdev_name_is_power_button (buffer, sizeof buffer, 13));
  /* ioctl failed (not an evdev node). */
  g_assert_false (guest_evdev_name_is_power_button (buffer, sizeof buffer, -1));
  g_assert_false (guest_evdev_name_is_power_button (buffer, sizeof buffer, 0));
  /* Cut before its NUL, or a count beyond the buffer. */
  g_assert_false (guest_evdev_name_is_power_button (buffer, sizeof buffer, 12));
  g_assert_false (guest_evdev_name_is_power_button (buffer, 12, 13));
  strcpy (buffer, "Power Button 2");
  g_assert_false (guest_evdev_name_is_power_button (buffer, sizeof buffer, 15));
  strcpy (buffer, "AT Translated Set 2 keyboard");
  g_assert_false (guest_evdev_name_is_power_button (buffer, sizeof buffer, 29));
}

static struct input_event
input_event (guint16 type, guint16 code, gint32 value)
{
  struct input_event event = { .type = type, .code = code, .value = value };

  return event;
}

static void
test_evdev_presses (void)
{
  const struct input_event stream[] = {
    input_event (EV_MSC, MSC_SCAN, 0x5e), input_event (EV_KEY, KEY_POWER, 1),
    input_event (EV_SYN, SYN_REPORT, 0),  input_event (EV_KEY, KEY_POWER, 2),
    input_event (EV_KEY, KEY_POWER, 0),   input_event (EV_SYN, SYN_REPORT, 0),
    input_event (EV_KEY, KEY_A, 1),       input_event (EV_REL, KEY_POWER, 1),
    input_event (EV_KEY, KEY_POWER, 1),   input_event (EV_SYN, SYN_REPORT, 0),
  };

  g_assert_cmpint (guest_evdev_count_power_presses ((const guint8 *) stream, sizeof stream), ==, 2);
  g_assert_cmpint (guest_evdev_count_power_presses ((const guint8 *) stream, 0), ==, 0);
  /* Releases, repeats, other keys, another type with the same code. */
  g_assert_cmpint (
      guest_evdev_count_power_presses ((const guint8 *) &stream[2], 6 * sizeof stream[0]), ==, 0);
  /* Not a whole number of events. */
  g_assert_cmpint (guest_evdev_count_power_presses ((const guint8 *) stream, sizeof stream - 1), ==,
                   -1);
  g_assert_cmpint (guest_evdev_count_power_presses ((const guint8 *) stream, 7), ==, -1);
}

typedef struct
{
  guint presses;
  gchar *device;
} Pressed;

static void
on_pressed (const gchar *device, gpointer user_data)
{
  Pressed *pressed = user_data;

  pressed->presses++;
  g_free (pressed->device);
  pressed->device = g_strdup (device);
}

/* A recorded press through a pipe, as evdev delivers it; then the device
 * goes (end of file) and is no longer watched. */
static void
test_power_button_pipe (void)
{
  const struct input_event press[] = {
    input_event (EV_KEY, KEY_POWER, 1),
    input_event (EV_SYN, SYN_REPORT, 0),
    input_event (EV_KEY, KEY_POWER, 0),
    input_event (EV_SYN, SYN_REPORT, 0),
  };
  Pressed pressed = { 0 };
  g_autoptr (GuestPowerButton) button
      = guest_power_button_new ("/nonexistent", on_pressed, &pressed);
  gint fds[2];

  g_assert_cmpint (pipe (fds), ==, 0);
  guest_power_button_watch_fd (button, fds[0], "/dev/input/event0");
  g_assert_cmpuint (guest_power_button_get_n_watched (button), ==, 1);

  g_assert_cmpint (write (fds[1], press, sizeof press), ==, sizeof press);
  while (pressed.presses == 0)
    g_main_context_iteration (NULL, TRUE);
  g_assert_cmpuint (pressed.presses, ==, 1);
  g_assert_cmpstr (pressed.device, ==, "/dev/input/event0");

  close (fds[1]);
  while (guest_power_button_get_n_watched (button) > 0)
    g_main_context_iteration (NULL, TRUE);
  g_assert_cmpuint (pressed.presses, ==, 1);
  g_free (pressed.device);
}

/* Nodes that are not evdev devices (EVIOCGNAME fails on a plain file) and
 * names that are not eventN are not watched; no /dev/input is no error. */
static void
test_power_button_scan (void)
{
  g_autoptr (GError) error = NULL;
  g_autofree gchar *dir = g_dir_make_tmp ("guest-input-XXXXXX", &error);
  const gchar *const names[] = { "event0", "mouse0", "event", "eventx" };
  Pressed pressed = { 0 };
  g_autoptr (GuestPowerButton) button = NULL;
  g_autoptr (GuestPowerButton) missing = NULL;

  g_assert_no_error (error);
  for (guint i = 0; i < G_N_ELEMENTS (names); i++)
    {
      g_autofree gchar *path = g_build_filename (dir, names[i], NULL);

      g_assert_true (g_file_set_contents (path, "", 0, &error));
    }
  button = guest_power_button_new (dir, on_pressed, &pressed);
  guest_power_button_scan (button);
  g_assert_cmpuint (guest_power_button_get_n_watched (button), ==, 0);

  missing = guest_power_button_new ("/nonexistent/input", on_pressed, &pressed);
  guest_power_button_scan (missing);
  g_assert_cmpuint (guest_power_button_get_n_watched (missing), ==, 0);

  for (guint i = 0; i < G_N_ELEMENTS (names); i++)
    {
      g_autofree gchar *path = g_build_filename (dir, names[i], NULL);

      g_assert_cmpint (g_unlink (path), ==, 0);
    }
  g_assert_cmpint (g_rmdir (dir), ==, 0);
}

int
main (int argc, char **argv)
{
  g_test_init (&argc, &argv, NULL);
  g_test_add_func ("/guest/devices/qemu", test_devices_qemu);
  g_test_add_func ("/guest/devices/edges", test_devices_edges);
  g_test_add_func ("/guest/devices/malformed", test_devices_malformed);
  g_test_add_func ("/guest/devices/odd-names", test_devices_odd_names);
  g_test_add_func ("/guest/devices/too-many", test_devices_too_many);
  g_test_add_func ("/guest/devices/read", test_devices_read);
  g_test_add_func ("/guest/uptime", test_uptime);
  g_test_add_func ("/guest/uevent/input", test_uevent_input);
  g_test_add_func ("/guest/uevent/malformed", test_uevent_malformed);
  g_test_add_func ("/guest/uevent/watcher", test_watcher);
  g_test_add_func ("/guest/evdev/name", test_evdev_name);
  g_test_add_func ("/guest/evdev/presses", test_evdev_presses);
  g_test_add_func ("/guest/power-button/pipe", test_power_button_pipe);
  g_test_add_func ("/guest/power-button/scan", test_power_button_scan);
  return g_test_run ();
}
