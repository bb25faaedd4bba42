/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include "config.h"

#include <poll.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "dhf-device-monitor-private.h"

/* A uevent datagram: each string followed by its NUL, as the kernel
 * sends them ("ACTION@DEVPATH" first, then KEY=VALUE fields). */
static GByteArray *
message_new (const gchar *first, ...)
{
  GByteArray *message = g_byte_array_new ();
  va_list args;

  va_start (args, first);
  for (const gchar *field = first; field != NULL; field = va_arg (args, const gchar *))
    g_byte_array_append (message, (const guint8 *) field, strlen (field) + 1);
  va_end (args);
  return message;
}

/* Parses a copy of exactly length bytes on the heap, so that a read past
 * the end is caught under AddressSanitizer. The event points into the
 * copy, which lives until the next call. */
static gchar *last_copy;

static gboolean
parse_exact (const guint8 *data, gsize length, DhfUevent *event)
{
  g_free (last_copy);
  last_copy = g_memdup2 (data, length);
  return dhf_uevent_parse (last_copy, length, event);
}

#define USB_DEVPATH "/devices/pci0000:00/0000:00:14.0/usb1/1-2"

static GByteArray *
usb_add_message (void)
{
  return message_new ("add@" USB_DEVPATH, "ACTION=add", "DEVPATH=" USB_DEVPATH, "SUBSYSTEM=usb",
                      "MAJOR=189", "MINOR=1", "DEVNAME=bus/usb/001/002", "DEVTYPE=usb_device",
                      "PRODUCT=46d/c52b/1201", "TYPE=0/0/0", "BUSNUM=001", "DEVNUM=002",
                      "SEQNUM=4242", NULL);
}

static void
test_parse_valid (void)
{
  g_autoptr (GByteArray) usb = usb_add_message ();
  g_autoptr (GByteArray) pci = message_new (
      "bind@/devices/pci0000:00/0000:00:1f.3", "ACTION=bind",
      "DEVPATH=/devices/pci0000:00/0000:00:1f.3", "SUBSYSTEM=pci", "DRIVER=vfio-pci",
      "PCI_CLASS=40300", "PCI_ID=8086:A170", "PCI_SLOT_NAME=0000:00:1f.3", "SEQNUM=7", NULL);
  /* Without DEVPATH and DEVTYPE fields: the header gives the path. */
  g_autoptr (GByteArray) short_one
      = message_new ("remove@/devices/x", "ACTION=remove", "SUBSYSTEM=pci", NULL);
  /* A value may hold '=' and anything printable. */
  g_autoptr (GByteArray) odd_values = message_new ("add@/devices/y", "ACTION=add", "SUBSYSTEM=usb",
                                                   "MODALIAS=a=b=c", "X_1=", NULL);
  DhfUevent event;

  g_assert_true (parse_exact (usb->data, usb->len, &event));
  g_assert_cmpstr (event.action, ==, "add");
  g_assert_cmpstr (event.devpath, ==, USB_DEVPATH);
  g_assert_cmpstr (event.subsystem, ==, "usb");
  g_assert_cmpstr (event.devtype, ==, "usb_device");
  g_assert_true (dhf_uevent_is_relevant (&event));

  g_assert_true (parse_exact (pci->data, pci->len, &event));
  g_assert_cmpstr (event.action, ==, "bind");
  g_assert_cmpstr (event.subsystem, ==, "pci");
  g_assert_null (event.devtype);
  g_assert_true (dhf_uevent_is_relevant (&event));

  g_assert_true (parse_exact (short_one->data, short_one->len, &event));
  g_assert_cmpstr (event.devpath, ==, "/devices/x");
  g_assert_cmpstr (event.action, ==, "remove");

  g_assert_true (parse_exact (odd_values->data, odd_values->len, &event));
  g_assert_cmpstr (event.subsystem, ==, "usb");
  g_assert_null (event.devtype);
}

static void
test_relevance (void)
{
  static const struct
  {
    const gchar *action, *subsystem, *devtype; /* devtype NULL: no field */
    gboolean relevant;
  } cases[] = {
    { "add", "usb", "usb_device", TRUE },
    { "remove", "usb", "usb_device", TRUE },
    { "bind", "usb", "usb_device", TRUE },
    { "unbind", "usb", "usb_device", TRUE },
    { "add", "pci", NULL, TRUE },
    { "remove", "pci", NULL, TRUE },
    { "bind", "pci", NULL, TRUE },
    { "unbind", "pci", NULL, TRUE },
    /* Interfaces come and go with their device. */
    { "add", "usb", "usb_interface", FALSE },
    { "add", "usb", NULL, FALSE },
    { "change", "usb", "usb_device", FALSE },
    { "change", "pci", NULL, FALSE },
    { "move", "pci", NULL, FALSE },
    { "online", "pci", NULL, FALSE },
    { "offline", "usb", "usb_device", FALSE },
    { "add", "input", NULL, FALSE },
    { "add", "block", "disk", FALSE },
    { "add", "usbmisc", NULL, FALSE },
    { "add", "pci_bus", NULL, FALSE },
    { "addx", "pci", NULL, FALSE },
    { "ADD", "pci", NULL, FALSE },
    { "add", "PCI", NULL, FALSE },
    { "add", "usb", "USB_DEVICE", FALSE },
  };

  for (guint i = 0; i < G_N_ELEMENTS (cases); i++)
    {
      g_autofree gchar *header = g_strdup_printf ("%s@/devices/z", cases[i].action);
      g_autofree gchar *action = g_strdup_printf ("ACTION=%s", cases[i].action);
      g_autofree gchar *subsystem = g_strdup_printf ("SUBSYSTEM=%s", cases[i].subsystem);
      g_autofree gchar *devtype
          = cases[i].devtype != NULL ? g_strdup_printf ("DEVTYPE=%s", cases[i].devtype) : NULL;
      g_autoptr (GByteArray) message
          = message_new (header, action, subsystem, "SEQNUM=1", devtype, NULL);
      DhfUevent event;

      g_assert_true (parse_exact (message->data, message->len, &event));
      if (dhf_uevent_is_relevant (&event) != cases[i].relevant)
        g_error ("%s %s %s: expected %s", cases[i].action, cases[i].subsystem,
                 cases[i].devtype != NULL ? cases[i].devtype : "-",
                 cases[i].relevant ? "relevant" : "irrelevant");
    }
}

static void
test_parse_malformed (void)
{
  static const struct
  {
    const gchar *what;
    const gchar *bytes;
    gsize length;
  } cases[] = {
#define M(what, literal) { what, literal, sizeof literal - 1 }
    M ("empty", ""),
    M ("no NUL at the end", "add@/devices/a\0ACTION=add\0SUBSYSTEM=pci"),
    M ("header without @", "add/devices/a\0ACTION=add\0SUBSYSTEM=pci\0"),
    M ("empty action in header", "@/devices/a\0ACTION=add\0SUBSYSTEM=pci\0"),
    M ("no devpath in header", "add@\0ACTION=add\0SUBSYSTEM=pci\0"),
    M ("relative devpath", "add@devices/a\0ACTION=add\0SUBSYSTEM=pci\0"),
    M ("udevd's re-broadcast", "libudev\0\xfe\xed\xca\xfe\0ACTION=add\0SUBSYSTEM=pci\0"),
    M ("header only", "add@/devices/a\0"),
    M ("field without =", "add@/devices/a\0ACTION=add\0SUBSYSTEM=pci\0JUNK\0"),
    M ("empty key", "add@/devices/a\0ACTION=add\0SUBSYSTEM=pci\0=x\0"),
    M ("lower-case key", "add@/devices/a\0action=add\0SUBSYSTEM=pci\0"),
    M ("key with a space", "add@/devices/a\0ACTION=add\0SUB SYSTEM=pci\0"),
    M ("empty field", "add@/devices/a\0ACTION=add\0\0SUBSYSTEM=pci\0"),
    M ("two ACTIONs", "add@/devices/a\0ACTION=add\0ACTION=remove\0SUBSYSTEM=pci\0"),
    M ("two SUBSYSTEMs", "add@/devices/a\0ACTION=add\0SUBSYSTEM=pci\0SUBSYSTEM=usb\0"),
    M ("two DEVTYPEs",
       "add@/devices/a\0ACTION=add\0SUBSYSTEM=usb\0DEVTYPE=usb_device\0DEVTYPE=usb_interface\0"),
    M ("two DEVPATHs",
       "add@/devices/a\0ACTION=add\0DEVPATH=/devices/a\0DEVPATH=/devices/a\0SUBSYSTEM=pci\0"),
    M ("ACTION differs from header", "add@/devices/a\0ACTION=remove\0SUBSYSTEM=pci\0"),
    M ("ACTION extends header", "add@/devices/a\0ACTION=addx\0SUBSYSTEM=pci\0"),
    M ("ACTION shorter than header", "add@/devices/a\0ACTION=ad\0SUBSYSTEM=pci\0"),
    M ("DEVPATH differs from header",
       "add@/devices/a\0ACTION=add\0DEVPATH=/devices/b\0SUBSYSTEM=pci\0"),
    M ("no ACTION", "add@/devices/a\0SUBSYSTEM=pci\0"),
    M ("no SUBSYSTEM", "add@/devices/a\0ACTION=add\0"),
    M ("empty ACTION", "@/devices/a\0ACTION=\0SUBSYSTEM=pci\0"),
    M ("empty SUBSYSTEM", "add@/devices/a\0ACTION=add\0SUBSYSTEM=\0"),
    M ("a lone NUL", "\0"),
#undef M
  };
  g_autoptr (GByteArray) valid = usb_add_message ();
  g_autofree gchar *oversized = g_malloc0 (DHF_UEVENT_MAX + 1);
  DhfUevent event;

  for (guint i = 0; i < G_N_ELEMENTS (cases); i++)
    {
      if (parse_exact ((const guint8 *) cases[i].bytes, cases[i].length, &event))
        g_error ("accepted a malformed uevent: %s", cases[i].what);
      g_assert_null (event.action);
      g_assert_null (event.subsystem);
    }

  /* Longer than any kernel message, though well formed in its first part. */
  memcpy (oversized, valid->data, valid->len);
  g_assert_false (dhf_uevent_parse (oversized, DHF_UEVENT_MAX + 1, &event));
  /* Within the bound, the zero padding is empty fields. */
  g_assert_false (dhf_uevent_parse (oversized, DHF_UEVENT_MAX, &event));
  g_assert_false (dhf_uevent_parse (NULL, 0, &event));
}

/* Every prefix of a valid message: a datagram cut short either parses to
 * whole fields or is refused, and never reads past its end. */
static void
test_parse_truncated (void)
{
  g_autoptr (GByteArray) valid = usb_add_message ();
  guint accepted = 0;

  for (gsize length = 0; length <= valid->len; length++)
    {
      DhfUevent event;

      if (parse_exact (valid->data, length, &event))
        {
          g_assert_cmpuint (valid->data[length - 1], ==, '\0');
          g_assert_cmpstr (event.action, ==, "add");
          g_assert_cmpstr (event.subsystem, ==, "usb");
          accepted++;
        }
    }
  /* Cut after SUBSYSTEM, after each later field, or whole. */
  g_assert_cmpuint (accepted, ==, 10);
}

/* Random bytes and random mutations of a valid message never crash the
 * parser (the fixed seed in --seed reproduces a failure). */
static void
test_parse_random (void)
{
  g_autoptr (GByteArray) valid = usb_add_message ();
  g_autofree guint8 *buffer = g_malloc (valid->len);

  for (guint round = 0; round < 20000; round++)
    {
      gsize length = g_test_rand_int_range (1, valid->len + 1);
      DhfUevent event;

      memcpy (buffer, valid->data, valid->len);
      if (round % 2 == 0)
        {
          for (gsize i = 0; i < length; i++)
            buffer[i] = g_test_rand_int_range (0, 4) == 0 ? 0 : g_test_rand_int_range (0, 256);
        }
      else
        {
          for (guint flips = g_test_rand_int_range (1, 4); flips > 0; flips--)
            buffer[g_test_rand_int_range (0, length)] = g_test_rand_int_range (0, 256);
        }
      if (parse_exact (buffer, length, &event))
        {
          g_assert_nonnull (event.action);
          g_assert_nonnull (event.subsystem);
          g_assert_nonnull (event.devpath);
          g_assert_cmpuint (strlen (event.action), >, 0);
        }
    }
}

/* The monitor over a socketpair standing in for the netlink socket. */
typedef struct
{
  gint peer;
  gint monitor_fd; /* a duplicate of the monitor's end, to poll it */
  DhfDeviceMonitor *monitor;
  guint changed;
} MonitorFixture;

static void
on_changed (DhfDeviceMonitor *monitor, gpointer user_data)
{
  MonitorFixture *fixture = user_data;

  fixture->changed++;
}

static void
monitor_set_up (MonitorFixture *fixture, gconstpointer data)
{
  gint fds[2];

  g_assert_cmpint (socketpair (AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC | SOCK_NONBLOCK, 0, fds), ==,
                   0);
  fixture->peer = fds[1];
  fixture->monitor_fd = dup (fds[0]);
  g_assert_cmpint (fixture->monitor_fd, >=, 0);
  fixture->monitor = dhf_device_monitor_new_for_fd (fds[0]);
  fixture->changed = 0;
  g_signal_connect (fixture->monitor, "changed", G_CALLBACK (on_changed), fixture);
  g_assert_true (dhf_device_monitor_is_watching (fixture->monitor));
}

static void
monitor_tear_down (MonitorFixture *fixture, gconstpointer data)
{
  g_clear_object (&fixture->monitor);
  if (fixture->peer >= 0)
    close (fixture->peer);
  close (fixture->monitor_fd);
  while (g_main_context_iteration (NULL, FALSE))
    continue;
}

static void
send_message (MonitorFixture *fixture, const guint8 *data, gsize length)
{
  g_assert_cmpint (send (fixture->peer, data, length, 0), ==, (gssize) length);
}

static void
send_event (MonitorFixture *fixture, const gchar *action, const gchar *subsystem,
            const gchar *devtype)
{
  g_autofree gchar *header = g_strdup_printf ("%s@/devices/t", action);
  g_autofree gchar *action_field = g_strdup_printf ("ACTION=%s", action);
  g_autofree gchar *subsystem_field = g_strdup_printf ("SUBSYSTEM=%s", subsystem);
  g_autofree gchar *devtype_field
      = devtype != NULL ? g_strdup_printf ("DEVTYPE=%s", devtype) : NULL;
  g_autoptr (GByteArray) message
      = message_new (header, action_field, subsystem_field, devtype_field, NULL);

  send_message (fixture, message->data, message->len);
}

static gboolean
on_give_up (gpointer user_data)
{
  g_error ("no \"changed\" signal arrived");
  return G_SOURCE_REMOVE;
}

static void
wait_for_changed (MonitorFixture *fixture)
{
  guint before = fixture->changed;
  /* Only a guard against hanging: the test never measures the delay. */
  guint guard = g_timeout_add_seconds (30, on_give_up, NULL);

  while (fixture->changed == before)
    g_main_context_iteration (NULL, TRUE);
  g_source_remove (guard);
}

/* Runs the main context until everything queued on the socket is read. */
static void
drain (MonitorFixture *fixture)
{
  while (g_main_context_iteration (NULL, FALSE))
    continue;
}

static void
test_monitor_burst (MonitorFixture *fixture, gconstpointer data)
{
  g_autoptr (GByteArray) oversized = g_byte_array_new ();
  g_autoptr (GByteArray) usb = usb_add_message ();

  /* A plug-in burst with noise in between, all queued before the monitor
   * reads any of it. */
  send_message (fixture, usb->data, usb->len);
  send_event (fixture, "add", "usb", "usb_interface");
  send_event (fixture, "bind", "usb", "usb_device");
  send_message (fixture, (const guint8 *) "garbage", 7);
  send_event (fixture, "change", "pci", NULL);
  send_event (fixture, "add", "pci", NULL);
  g_byte_array_set_size (oversized, DHF_UEVENT_MAX * 2);
  memset (oversized->data, 'A', oversized->len);
  send_message (fixture, oversized->data, oversized->len);

  wait_for_changed (fixture);
  g_assert_cmpuint (fixture->changed, ==, 1);
  g_assert_false (dhf_device_monitor_is_pending (fixture->monitor));

  /* The next burst is a change of its own. */
  send_event (fixture, "remove", "usb", "usb_device");
  send_event (fixture, "unbind", "pci", NULL);
  wait_for_changed (fixture);
  g_assert_cmpuint (fixture->changed, ==, 2);
  g_assert_true (dhf_device_monitor_is_watching (fixture->monitor));
}

static void
test_monitor_ignores (MonitorFixture *fixture, gconstpointer data)
{
  static const guint8 truncated[] = "add@/devices/a\0ACTION=add\0SUBSYSTEM=pci";
  g_autoptr (GByteArray) oversized = g_byte_array_new ();

  /* Nothing here concerns the inventory: no change is pending after all
   * of it has been read. */
  send_event (fixture, "add", "usb", "usb_interface");
  send_event (fixture, "change", "usb", "usb_device");
  send_event (fixture, "add", "block", "disk");
  send_message (fixture, truncated, sizeof truncated - 1);
  send_message (fixture, (const guint8 *) "\0", 1);
  g_byte_array_set_size (oversized, DHF_UEVENT_MAX + 1);
  memset (oversized->data, 0, oversized->len);
  memcpy (oversized->data, "add@/d\0ACTION=add\0SUBSYSTEM=pci\0", 32);
  send_message (fixture, oversized->data, oversized->len);
  drain (fixture);

  g_assert_false (dhf_device_monitor_is_pending (fixture->monitor));
  g_assert_cmpuint (fixture->changed, ==, 0);
  g_assert_true (dhf_device_monitor_is_watching (fixture->monitor));

  /* The same socket still reports what does count. */
  send_event (fixture, "add", "pci", NULL);
  drain (fixture);
  g_assert_true (dhf_device_monitor_is_pending (fixture->monitor));
  wait_for_changed (fixture);
  g_assert_cmpuint (fixture->changed, ==, 1);
}

static void
test_monitor_flood (MonitorFixture *fixture, gconstpointer data)
{
  struct pollfd pfd = { .fd = fixture->monitor_fd, .events = POLLIN };

  /* More than one wakeup's worth: the monitor reads a batch and lets the
   * main loop run before it reads the rest. */
  for (guint sent = 0; sent < 100; sent++)
    send_event (fixture, sent % 2 ? "add" : "remove", "pci", NULL);
  g_assert_true (g_main_context_iteration (NULL, FALSE));
  g_assert_cmpint (poll (&pfd, 1, 0), ==, 1);
  g_assert_true (dhf_device_monitor_is_pending (fixture->monitor));

  wait_for_changed (fixture);
  drain (fixture);
  g_assert_cmpint (poll (&pfd, 1, 0), ==, 0);
  g_assert_cmpuint (fixture->changed, >=, 1);
  g_assert_true (dhf_device_monitor_is_watching (fixture->monitor));
}

/* Disposing with a change pending cancels it: no signal to a dead object. */
static void
test_monitor_dispose_pending (MonitorFixture *fixture, gconstpointer data)
{
  send_event (fixture, "add", "pci", NULL);
  drain (fixture);
  g_assert_true (dhf_device_monitor_is_pending (fixture->monitor));
  g_clear_object (&fixture->monitor);
  drain (fixture);
  g_assert_cmpuint (fixture->changed, ==, 0);
}

static void
test_monitor_closed (void)
{
  if (g_test_subprocess ())
    {
      MonitorFixture fixture;

      monitor_set_up (&fixture, NULL);
      close (fixture.peer);
      fixture.peer = -1;
      /* The warning is the point; here it must not abort. */
      g_log_set_always_fatal (G_LOG_FATAL_MASK);
      while (dhf_device_monitor_is_watching (fixture.monitor))
        g_main_context_iteration (NULL, TRUE);
      g_assert_cmpuint (fixture.changed, ==, 0);
      monitor_tear_down (&fixture, NULL);
      return;
    }
  g_test_trap_subprocess (NULL, 30 * G_USEC_PER_SEC, G_TEST_SUBPROCESS_DEFAULT);
  g_test_trap_assert_passed ();
  g_test_trap_assert_stderr ("*device event socket was closed*");
}

/* The real netlink socket: made where the kernel allows it, and a monitor
 * that could not make one is quiet rather than broken. */
static void
test_monitor_kernel (void)
{
  g_autoptr (DhfDeviceMonitor) monitor = dhf_device_monitor_new ();
  g_autoptr (DhfDeviceMonitor) second = dhf_device_monitor_new ();

  g_test_message ("kernel uevent socket: %s",
                  dhf_device_monitor_is_watching (monitor) ? "open" : "not available");
  g_assert_cmpint (dhf_device_monitor_is_watching (monitor), ==,
                   dhf_device_monitor_is_watching (second));
  g_assert_false (dhf_device_monitor_is_pending (monitor));
}

int
main (int argc, char **argv)
{
  int status;

  g_test_init (&argc, &argv, NULL);

  g_test_add_func ("/device-monitor/parse/valid", test_parse_valid);
  g_test_add_func ("/device-monitor/parse/relevance", test_relevance);
  g_test_add_func ("/device-monitor/parse/malformed", test_parse_malformed);
  g_test_add_func ("/device-monitor/parse/truncated", test_parse_truncated);
  g_test_add_func ("/device-monitor/parse/random", test_parse_random);
#define ADD(path, func)                                                                            \
  g_test_add (path, MonitorFixture, NULL, monitor_set_up, func, monitor_tear_down)
  ADD ("/device-monitor/socket/burst", test_monitor_burst);
  ADD ("/device-monitor/socket/ignores", test_monitor_ignores);
  ADD ("/device-monitor/socket/flood", test_monitor_flood);
  ADD ("/device-monitor/socket/dispose-pending", test_monitor_dispose_pending);
#undef ADD
  g_test_add_func ("/device-monitor/socket/closed", test_monitor_closed);
  g_test_add_func ("/device-monitor/kernel", test_monitor_kernel);
  status = g_test_run ();
  g_clear_pointer (&last_copy, g_free);
  return status;
}
