/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include "config.h"

#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <dhf/dhf.h>
#include <glib/gstdio.h>

#include "dhf-device-inventory.h"
#include "dhf-test-util.h"

/* A fake sysfs laid out like the kernel's: devices live under devices/,
 * bus/X/devices/ holds symlinks to them, iommu_group and driver are
 * symlinks too. */
typedef struct
{
  gchar *root;
} Fixture;

static void
fixture_set_up (Fixture *fixture, gconstpointer data)
{
  g_autoptr (GError) error = NULL;

  fixture->root = g_dir_make_tmp ("dhf-sysfs-XXXXXX", &error);
  g_assert_no_error (error);
}

static void
fixture_tear_down (Fixture *fixture, gconstpointer data)
{
  dhf_test_remove_tree (fixture->root);
  g_free (fixture->root);
}

static void
make_link (const gchar *target, const gchar *link)
{
  g_autofree gchar *parent = g_path_get_dirname (link);

  g_assert_cmpint (g_mkdir_with_parents (parent, 0755), ==, 0);
  g_assert_cmpint (symlink (target, link), ==, 0);
}

/* Writes an attribute with sysfs's trailing newline; NULL writes none. */
static void
write_attribute (const gchar *dir, const gchar *name, const gchar *value)
{
  g_autofree gchar *text = NULL;

  if (value == NULL)
    return;
  text = g_strconcat (value, "\n", NULL);
  dhf_test_write_file (dir, name, text);
}

static void
write_bytes (const gchar *dir, const gchar *name, const gchar *bytes, gsize length)
{
  g_autofree gchar *path = g_build_filename (dir, name, NULL);
  g_autoptr (GError) error = NULL;

  g_file_set_contents (path, bytes, length, &error);
  g_assert_no_error (error);
}

/* A USB device dir at devices/pci0000:00/usbB/NAME, linked from
 * bus/usb/devices/NAME; returns the device dir for more attributes. */
static gchar *
add_usb (const gchar *root, const gchar *name, const gchar *class, const gchar *vendor,
         const gchar *product, const gchar *busnum, const gchar *devnum)
{
  g_autofree gchar *dir = g_build_filename (root, "devices", "pci0000:00", "usb1", name, NULL);
  g_autofree gchar *link = g_build_filename (root, "bus", "usb", "devices", name, NULL);
  g_autofree gchar *target
      = g_build_filename ("..", "..", "..", "devices", "pci0000:00", "usb1", name, NULL);

  g_assert_cmpint (g_mkdir_with_parents (dir, 0755), ==, 0);
  write_attribute (dir, "bDeviceClass", class);
  write_attribute (dir, "idVendor", vendor);
  write_attribute (dir, "idProduct", product);
  write_attribute (dir, "busnum", busnum);
  write_attribute (dir, "devnum", devnum);
  make_link (target, link);
  return g_steal_pointer (&dir);
}

static gchar *
add_pci (const gchar *root, const gchar *address, const gchar *vendor, const gchar *device,
         const gchar *class, gint iommu_group, const gchar *driver)
{
  g_autofree gchar *dir = g_build_filename (root, "devices", "pci0000:00", address, NULL);
  g_autofree gchar *link = g_build_filename (root, "bus", "pci", "devices", address, NULL);
  g_autofree gchar *target
      = g_build_filename ("..", "..", "..", "devices", "pci0000:00", address, NULL);

  g_assert_cmpint (g_mkdir_with_parents (dir, 0755), ==, 0);
  write_attribute (dir, "vendor", vendor);
  write_attribute (dir, "device", device);
  write_attribute (dir, "class", class);
  make_link (target, link);
  if (iommu_group >= 0)
    {
      g_autofree gchar *group = g_strdup_printf ("%d", iommu_group);
      g_autofree gchar *group_dir = g_build_filename (root, "kernel", "iommu_groups", group, NULL);
      g_autofree gchar *group_link = g_build_filename (dir, "iommu_group", NULL);

      g_assert_cmpint (g_mkdir_with_parents (group_dir, 0755), ==, 0);
      make_link (group_dir, group_link);
    }
  if (driver != NULL)
    {
      g_autofree gchar *driver_dir = g_build_filename (root, "bus", "pci", "drivers", driver, NULL);
      g_autofree gchar *driver_link = g_build_filename (dir, "driver", NULL);

      g_assert_cmpint (g_mkdir_with_parents (driver_dir, 0755), ==, 0);
      make_link (driver_dir, driver_link);
    }
  return g_steal_pointer (&dir);
}

static GPtrArray *
scan_ok (const gchar *root, const gchar *const *inputs)
{
  g_autoptr (GError) error = NULL;
  GPtrArray *devices = dhf_device_inventory_scan (root, inputs, &error);

  g_assert_no_error (error);
  g_assert_nonnull (devices);
  /* Sorted by id, and ids are unique. */
  for (guint i = 1; i < devices->len; i++)
    {
      const DhfDevice *a = g_ptr_array_index (devices, i - 1);
      const DhfDevice *b = g_ptr_array_index (devices, i);

      g_assert_cmpint (strcmp (a->id, b->id), <, 0);
    }
  return devices;
}

static const DhfDevice *
lookup (GPtrArray *devices, const gchar *id)
{
  for (guint i = 0; i < devices->len; i++)
    {
      const DhfDevice *device = g_ptr_array_index (devices, i);

      if (g_str_equal (device->id, id))
        return device;
    }
  return NULL;
}

/* The device with this id, which the test requires. */
static const DhfDevice *
find (GPtrArray *devices, const gchar *id)
{
  const DhfDevice *device = lookup (devices, id);

  if (device == NULL)
    g_error ("no device '%s' in the inventory", id);
  return device;
}

/* The ids, comma-separated, to compare whole inventories. */
static gchar *
ids_of (GPtrArray *devices)
{
  g_autoptr (GString) ids = g_string_new (NULL);

  for (guint i = 0; i < devices->len; i++)
    {
      const DhfDevice *device = g_ptr_array_index (devices, i);

      g_string_append_printf (ids, "%s%s", i > 0 ? "," : "", device->id);
    }
  return g_strdup (ids->str);
}

static void
test_usb_device (Fixture *fixture, gconstpointer data)
{
  g_autofree gchar *dir = add_usb (fixture->root, "1-2.3", "00", "046d", "c52b", "1", "5");
  g_autoptr (GPtrArray) devices = NULL;
  const DhfDevice *usb;

  write_attribute (dir, "manufacturer", "Logitech");
  write_attribute (dir, "product", "USB Receiver");
  write_attribute (dir, "serial", "AB-12.cd_9");
  devices = scan_ok (fixture->root, NULL);

  g_assert_cmpuint (devices->len, ==, 1);
  usb = find (devices, "usb-1-2.3");
  g_assert_nonnull (usb);
  g_assert_cmpint (usb->kind, ==, DHF_DEVICE_KIND_USB);
  g_assert_cmpstr (usb->selector, ==, "usb:046d:c52b:AB-12.cd_9");
  g_assert_cmpstr (usb->usb_serial, ==, "AB-12.cd_9");
  g_assert_cmpstr (usb->description, ==, "Logitech USB Receiver");
  g_assert_cmpstr (usb->usb_port, ==, "1-2.3");
  g_assert_cmpuint (usb->usb_vendor, ==, 0x046d);
  g_assert_cmpuint (usb->usb_product, ==, 0xc52b);
  g_assert_cmpuint (usb->usb_bus, ==, 1);
  g_assert_cmpuint (usb->usb_devnum, ==, 5);
  g_assert_null (usb->pci_address);
  g_assert_null (usb->input_type);
}

static void
test_usb_upper_case_hex (Fixture *fixture, gconstpointer data)
{
  g_autoptr (GPtrArray) devices = NULL;
  const DhfDevice *usb;

  g_free (add_usb (fixture->root, "3-1", "ef", "ABCD", "00Ff", "3", "12"));
  devices = scan_ok (fixture->root, NULL);
  usb = find (devices, "usb-3-1");

  /* Selectors print hex in lower case, whatever the attribute said. */
  g_assert_nonnull (usb);
  g_assert_cmpstr (usb->selector, ==, "usb:abcd:00ff");
  g_assert_null (usb->usb_serial);
  g_assert_cmpstr (usb->description, ==, "USB device abcd:00ff");
}

static void
test_usb_skipped (Fixture *fixture, gconstpointer data)
{
  static const gchar *const not_devices[] = {
    "usb1",    /* a root hub */
    "1-2:1.0", /* an interface */
    "1-",      "-1", "1-2.", "1-2..3", "x-1", "1-a", "1-2 ", "12",
  };
  g_autoptr (GPtrArray) devices = NULL;

  g_free (add_usb (fixture->root, "1-1", "09", "05e3", "0610", "1", "2")); /* a hub */
  g_free (add_usb (fixture->root, "1-1.4", "00", "046d", "c52b", "1", "3"));
  /* Each has every attribute a device has: only its name rules it out. */
  for (guint i = 0; i < G_N_ELEMENTS (not_devices); i++)
    g_free (add_usb (fixture->root, not_devices[i], "00", "1d6b", "0002", "1", "1"));
  devices = scan_ok (fixture->root, NULL);

  g_assert_cmpuint (devices->len, ==, 1);
  g_assert_nonnull (find (devices, "usb-1-1.4"));
}

static void
test_usb_serial (Fixture *fixture, gconstpointer data)
{
  static const struct
  {
    const gchar *serial;
    gsize length; /* 0: strlen */
    gboolean usable;
  } cases[] = {
    { "0123456789abcdefABCDEF._-", 0, TRUE },
    { "AB CD", 0, FALSE },
    { "abc/def", 0, FALSE },
    { "abc:def", 0, FALSE },     /* ':' would split the selector */
    { "abc*", 0, FALSE },        /* a wildcard in a policy */
    { "", 0, FALSE },            /* empty */
    { "ab\0cd", 5, FALSE },      /* a NUL inside */
    { "caf\xc3\xa9", 0, FALSE }, /* not ASCII */
    { "ab\ncd", 0, FALSE },
  };
  g_autoptr (GPtrArray) devices = NULL;
  g_autofree gchar *max = g_strnfill (128, 'S');
  g_autofree gchar *too_long = g_strnfill (129, 'S');
  g_autofree gchar *huge = g_strnfill (100000, 'S');
  guint n = 0;

  for (guint i = 0; i < G_N_ELEMENTS (cases); i++)
    {
      g_autofree gchar *name = g_strdup_printf ("1-%u", ++n);
      g_autofree gchar *dir = add_usb (fixture->root, name, "00", "1234", "5678", "1", "9");

      write_bytes (dir, "serial", cases[i].serial,
                   cases[i].length ? cases[i].length : strlen (cases[i].serial));
    }
  {
    g_autofree gchar *dir = add_usb (fixture->root, "2-1", "00", "1234", "5678", "2", "2");
    g_autofree gchar *dir2 = add_usb (fixture->root, "2-2", "00", "1234", "5678", "2", "3");
    g_autofree gchar *dir3 = add_usb (fixture->root, "2-3", "00", "1234", "5678", "2", "4");

    write_attribute (dir, "serial", max);
    write_attribute (dir2, "serial", too_long);
    write_attribute (dir3, "serial", huge);
  }
  devices = scan_ok (fixture->root, NULL);
  g_assert_cmpuint (devices->len, ==, G_N_ELEMENTS (cases) + 3);

  for (guint i = 0; i < G_N_ELEMENTS (cases); i++)
    {
      g_autofree gchar *id = g_strdup_printf ("usb-1-%u", i + 1);
      const DhfDevice *usb = find (devices, id);

      g_assert_nonnull (usb);
      if (cases[i].usable)
        {
          g_autofree gchar *selector = g_strconcat ("usb:1234:5678:", cases[i].serial, NULL);

          g_assert_cmpstr (usb->usb_serial, ==, cases[i].serial);
          g_assert_cmpstr (usb->selector, ==, selector);
        }
      else
        {
          g_assert_null (usb->usb_serial);
          g_assert_cmpstr (usb->selector, ==, "usb:1234:5678");
        }
    }
  g_assert_cmpstr (find (devices, "usb-2-1")->usb_serial, ==, max);
  g_assert_null (find (devices, "usb-2-2")->usb_serial);
  g_assert_null (find (devices, "usb-2-3")->usb_serial);
  g_assert_cmpstr (find (devices, "usb-2-3")->selector, ==, "usb:1234:5678");
}

static void
assert_clean_text (const gchar *text)
{
  g_assert_true (g_utf8_validate (text, -1, NULL));
  g_assert_cmpuint (g_utf8_strlen (text, -1), <=, 128);
  for (const gchar *p = text; *p != '\0'; p = g_utf8_next_char (p))
    {
      gunichar c = g_utf8_get_char (p);

      g_assert_false (g_unichar_iscntrl (c));
      g_assert_cmpint (g_unichar_type (c), !=, G_UNICODE_FORMAT);
    }
  g_assert_false (g_str_has_prefix (text, " "));
  g_assert_false (g_str_has_suffix (text, " "));
}

static void
test_usb_description (Fixture *fixture, gconstpointer data)
{
  static const struct
  {
    const gchar *manufacturer; /* NULL: no attribute */
    const gchar *product;
    gsize product_length; /* 0: strlen */
    const gchar *description;
  } cases[] = {
    { "Logitech", "USB Receiver", 0, "Logitech USB Receiver" },
    /* The product often repeats the manufacturer. */
    { "Logitech", "Logitech Mouse", 0, "Logitech Mouse" },
    { NULL, "Keyboard", 0, "Keyboard" },
    { "ACME", NULL, 0, "ACME USB device" },
    { NULL, NULL, 0, "USB device 1234:5678" },
    /* Control characters, NULs and invalid UTF-8 go; whitespace collapses. */
    { NULL, "\x1b[31mRed\x1b[0m\tKey\r\nboard\x7f", 0, "[31mRed[0m Key board" },
    { NULL, "A\0B\xff\xfe C\xc3", 8, "AB C" },
    { NULL, "\xc0\xafoverlong \xed\xa0\x80surrogate", 0, "overlong surrogate" },
    /* A right-to-left override would reorder what a user reads. */
    { NULL,
      "safe\xe2\x80\xae"
      "exe.txt",
      0, "safeexe.txt" },
    { NULL, "Caf\xc3\xa9 \xe2\x9c\x93", 0, "Caf\xc3\xa9 \xe2\x9c\x93" },
    /* Nothing printable left: the fallback. */
    { "\x01\x02", "\n\t \x7f", 0, "USB device 1234:5678" },
    { "  ", "   Spaced   Out   ", 0, "Spaced Out" },
  };
  g_autoptr (GPtrArray) devices = NULL;

  for (guint i = 0; i < G_N_ELEMENTS (cases); i++)
    {
      g_autofree gchar *name = g_strdup_printf ("1-%u", i + 1);
      g_autofree gchar *dir = add_usb (fixture->root, name, "00", "1234", "5678", "1", "9");

      if (cases[i].manufacturer != NULL)
        write_attribute (dir, "manufacturer", cases[i].manufacturer);
      if (cases[i].product != NULL)
        write_bytes (dir, "product", cases[i].product,
                     cases[i].product_length ? cases[i].product_length : strlen (cases[i].product));
    }
  devices = scan_ok (fixture->root, NULL);
  g_assert_cmpuint (devices->len, ==, G_N_ELEMENTS (cases));

  for (guint i = 0; i < G_N_ELEMENTS (cases); i++)
    {
      g_autofree gchar *id = g_strdup_printf ("usb-1-%u", i + 1);
      const DhfDevice *usb = find (devices, id);

      g_assert_nonnull (usb);
      g_assert_cmpstr (usb->description, ==, cases[i].description);
      assert_clean_text (usb->description);
    }
}

static void
test_usb_description_oversized (Fixture *fixture, gconstpointer data)
{
  g_autofree gchar *dir = add_usb (fixture->root, "1-1", "00", "1234", "5678", "1", "9");
  g_autofree gchar *dir2 = add_usb (fixture->root, "1-2", "00", "1234", "5678", "1", "8");
  g_autofree gchar *huge = g_strnfill (1024 * 1024, 'x');
  g_autoptr (GString) binary = g_string_new (NULL);
  g_autoptr (GPtrArray) devices = NULL;
  const DhfDevice *usb;

  write_attribute (dir, "product", huge);
  write_attribute (dir, "manufacturer", huge);
  /* Every byte value, many times over. */
  for (guint i = 0; i < 64 * 1024; i++)
    g_string_append_c (binary, (gchar) ((i * 7 + i / 256) & 0xff));
  write_bytes (dir2, "product", binary->str, binary->len);
  devices = scan_ok (fixture->root, NULL);

  usb = find (devices, "usb-1-1");
  g_assert_nonnull (usb);
  assert_clean_text (usb->description);
  g_assert_cmpuint (strlen (usb->description), ==, 128);
  g_assert_true (g_str_has_prefix (usb->description, "xxxx"));

  usb = find (devices, "usb-1-2");
  g_assert_nonnull (usb);
  assert_clean_text (usb->description);
  g_assert_cmpuint (strlen (usb->description), >, 0);
}

static void
test_usb_missing_attributes (Fixture *fixture, gconstpointer data)
{
  static const struct
  {
    const gchar *name, *class, *vendor, *product, *busnum, *devnum;
  } broken[] = {
    { "1-1", "00", "046d", NULL, "1", "2" },
    { "1-2", "00", NULL, "c52b", "1", "2" },
    { "1-3", "00", "046d", "c52b", NULL, "2" },
    { "1-4", "00", "046d", "c52b", "1", NULL },
    { "1-5", NULL, "046d", "c52b", "1", "2" },
    { "1-6", "00", "46d", "c52b", "1", "2" },    /* three digits */
    { "1-7", "00", "046d", "0xc52b", "1", "2" }, /* USB ids have no prefix */
    { "1-8", "00", "046g", "c52b", "1", "2" },
    { "1-9", "00", "046d", "c52b", "one", "2" },
    { "1-10", "00", "046d", "c52b", "1", "-2" },
    { "1-11", "00", "046d", "c52b", "1", "99999999999" },
    { "1-12", "0", "046d", "c52b", "1", "2" },
    { "1-13", "00", "", "c52b", "1", "2" },
  };
  g_autofree gchar *good = add_usb (fixture->root, "2-1", "00", "046d", "c52b", "2", "7");
  g_autofree gchar *fifo_dir = add_usb (fixture->root, "2-2", "00", "046d", NULL, "2", "8");
  g_autofree gchar *link_dir = add_usb (fixture->root, "2-3", "00", "046d", NULL, "2", "9");
  g_autofree gchar *binary_dir = add_usb (fixture->root, "2-4", "00", NULL, "c52b", "2", "10");
  g_autofree gchar *fifo = g_build_filename (fifo_dir, "idProduct", NULL);
  g_autofree gchar *link = g_build_filename (link_dir, "idProduct", NULL);
  g_autofree gchar *link_target = g_build_filename (good, "idProduct", NULL);
  g_autoptr (GPtrArray) devices = NULL;

  for (guint i = 0; i < G_N_ELEMENTS (broken); i++)
    g_free (add_usb (fixture->root, broken[i].name, broken[i].class, broken[i].vendor,
                     broken[i].product, broken[i].busnum, broken[i].devnum));
  /* A FIFO would block a reader that opens it blindly; a symlinked
   * attribute is not how sysfs looks. */
  g_assert_cmpint (mkfifo (fifo, 0644), ==, 0);
  make_link (link_target, link);
  write_bytes (binary_dir, "idVendor",
               "04\0"
               "6d\n",
               6);

  devices = scan_ok (fixture->root, NULL);
  g_assert_cmpuint (devices->len, ==, 1);
  g_assert_nonnull (find (devices, "usb-2-1"));
}

static void
test_pci (Fixture *fixture, gconstpointer data)
{
  g_autoptr (GPtrArray) devices = NULL;
  const DhfDevice *pci;

  g_free (
      add_pci (fixture->root, "0000:00:1f.3", "0x8086", "0xa170", "0x040300", 12, "snd_hda_intel"));
  g_free (add_pci (fixture->root, "0000:00:1c.0", "0x8086", "0xa110", "0x060400", 7, "pcieport"));
  g_free (add_pci (fixture->root, "0000:03:00.0", "0x10DE", "0x1C82", "0x030000", -1, NULL));
  g_free (add_pci (fixture->root, "0000:04:00.1", "0x8086", "0x15bb", "0x020000", 3, "vfio-pci"));
  devices = scan_ok (fixture->root, NULL);
  g_assert_cmpuint (devices->len, ==, 4);

  pci = find (devices, "pci-0000:00:1f.3");
  g_assert_nonnull (pci);
  g_assert_cmpint (pci->kind, ==, DHF_DEVICE_KIND_PCI);
  g_assert_cmpstr (pci->selector, ==, "pci:0000:00:1f.3");
  g_assert_cmpstr (pci->pci_address, ==, "0000:00:1f.3");
  g_assert_cmpuint (pci->pci_vendor, ==, 0x8086);
  g_assert_cmpuint (pci->pci_device, ==, 0xa170);
  g_assert_cmpuint (pci->pci_class, ==, 0x040300);
  g_assert_cmpint (pci->iommu_group, ==, 12);
  g_assert_false (pci->pci_bridge);
  g_assert_cmpstr (pci->pci_driver, ==, "snd_hda_intel");
  g_assert_cmpstr (pci->description, ==, "Audio device [8086:a170]");
  g_assert_null (pci->usb_port);

  pci = find (devices, "pci-0000:00:1c.0");
  g_assert_nonnull (pci);
  g_assert_true (pci->pci_bridge);
  g_assert_cmpint (pci->iommu_group, ==, 7);
  g_assert_cmpstr (pci->pci_driver, ==, "pcieport");
  g_assert_cmpstr (pci->description, ==, "PCI bridge [8086:a110]");

  pci = find (devices, "pci-0000:03:00.0");
  g_assert_nonnull (pci);
  g_assert_cmpint (pci->iommu_group, ==, -1);
  g_assert_null (pci->pci_driver);
  g_assert_false (pci->pci_bridge);
  g_assert_cmpuint (pci->pci_vendor, ==, 0x10de);
  g_assert_cmpstr (pci->description, ==, "VGA controller [10de:1c82]");

  pci = find (devices, "pci-0000:04:00.1");
  g_assert_nonnull (pci);
  g_assert_cmpstr (pci->pci_driver, ==, "vfio-pci");
  g_assert_cmpint (pci->iommu_group, ==, 3);
}

static void
test_pci_odd (Fixture *fixture, gconstpointer data)
{
  g_autoptr (GPtrArray) devices = NULL;
  g_autofree gchar *bad_group = NULL;
  g_autofree gchar *group_link = NULL;
  g_autofree gchar *group_target = NULL;
  const DhfDevice *pci;

  /* Upper-case names are normalised; names a selector cannot hold and
   * devices without their attributes are left out. */
  g_free (add_pci (fixture->root, "0000:0A:1F.1", "0x8086", "0x1234", "0x0c0330", 1, NULL));
  g_free (add_pci (fixture->root, "10000:00:00.0", "0x8086", "0x1234", "0x060000", -1, NULL));
  g_free (add_pci (fixture->root, "0000:00:20.0", "0x8086", "0x1234", "0x060000", -1, NULL));
  g_free (add_pci (fixture->root, "0000:00:01.8", "0x8086", "0x1234", "0x060000", -1, NULL));
  g_free (add_pci (fixture->root, "0000:00:02.0", "0x8086", "0x1234", NULL, -1, NULL));
  g_free (add_pci (fixture->root, "0000:00:03.0", "8086", "0x1234", "0x060000", -1, NULL));
  g_free (add_pci (fixture->root, "0000:00:04.0", "0x8086", "0x1234", "0x0600", -1, NULL));
  /* An iommu_group that is no number: the device has no usable group. */
  bad_group = add_pci (fixture->root, "0000:00:05.0", "0x8086", "0x1234", "0x0c0500", -1, NULL);
  group_link = g_build_filename (bad_group, "iommu_group", NULL);
  group_target = g_build_filename (fixture->root, "kernel", "iommu_groups", "x1", NULL);
  make_link (group_target, group_link);
  /* A driver name that is no token is dropped. */
  g_free (
      add_pci (fixture->root, "0000:00:06.0", "0x8086", "0x1234", "0xff0000", 2, "bad driver\x1b"));

  devices = scan_ok (fixture->root, NULL);
  {
    g_autofree gchar *ids = ids_of (devices);

    g_assert_cmpstr (ids, ==, "pci-0000:00:05.0,pci-0000:00:06.0,pci-0000:0a:1f.1");
  }
  pci = find (devices, "pci-0000:0a:1f.1");
  g_assert_cmpstr (pci->pci_address, ==, "0000:0a:1f.1");
  g_assert_cmpstr (pci->selector, ==, "pci:0000:0a:1f.1");
  g_assert_cmpstr (pci->description, ==, "USB controller [8086:1234]");
  pci = find (devices, "pci-0000:00:05.0");
  g_assert_cmpint (pci->iommu_group, ==, -1);
  g_assert_cmpstr (pci->description, ==, "SMBus controller [8086:1234]");
  pci = find (devices, "pci-0000:00:06.0");
  g_assert_cmpint (pci->iommu_group, ==, 2);
  g_assert_null (pci->pci_driver);
  g_assert_cmpstr (pci->description, ==, "PCI device [8086:1234]");
}

static void
test_emulated_inputs (Fixture *fixture, gconstpointer data)
{
  static const gchar *const inputs[] = { "tablet", "keyboard", "tablet", "mouse", NULL };
  static const gchar *const none[] = { NULL };
  g_autoptr (GPtrArray) devices = scan_ok (fixture->root, inputs);
  g_autoptr (GPtrArray) empty = scan_ok (fixture->root, none);
  g_autoptr (GPtrArray) null = scan_ok (fixture->root, NULL);
  g_autofree gchar *ids = ids_of (devices);
  const DhfDevice *keyboard;

  g_assert_cmpstr (ids, ==, "input-keyboard,input-mouse,input-tablet");
  keyboard = find (devices, "input-keyboard");
  g_assert_cmpint (keyboard->kind, ==, DHF_DEVICE_KIND_INPUT);
  g_assert_cmpstr (keyboard->input_type, ==, "keyboard");
  g_assert_cmpstr (keyboard->selector, ==, "input:keyboard");
  g_assert_cmpstr (keyboard->description, ==, "keyboard (emulated)");
  g_assert_cmpstr (find (devices, "input-tablet")->description, ==, "tablet (emulated)");
  g_assert_cmpuint (empty->len, ==, 0);
  g_assert_cmpuint (null->len, ==, 0);
}

static void
test_emulated_inputs_invalid (Fixture *fixture, gconstpointer data)
{
  static const gchar *const bad[] = { "joystick", "Keyboard", "", "keyboard ", "mouse\n" };

  for (guint i = 0; i < G_N_ELEMENTS (bad); i++)
    {
      const gchar *inputs[] = { "keyboard", bad[i], NULL };
      g_autoptr (GError) error = NULL;
      g_autoptr (GPtrArray) devices = dhf_device_inventory_scan (fixture->root, inputs, &error);
      g_autofree gchar *shown = g_strescape (bad[i], NULL);
      g_autofree gchar *quoted = g_strdup_printf ("'%s'", shown);

      g_assert_null (devices);
      g_assert_error (error, DHF_ERROR, DHF_ERROR_INVALID_ARGS);
      g_assert_nonnull (strstr (error->message, quoted));
    }
}

static void
test_sorted (Fixture *fixture, gconstpointer data)
{
  static const gchar *const inputs[] = { "mouse", "keyboard", NULL };
  g_autoptr (GPtrArray) devices = NULL;
  g_autofree gchar *ids = NULL;

  g_free (add_pci (fixture->root, "0000:00:1f.3", "0x8086", "0xa170", "0x040300", 1, NULL));
  g_free (add_pci (fixture->root, "0000:00:02.0", "0x8086", "0x3e92", "0x030000", 0, NULL));
  g_free (add_usb (fixture->root, "2-1", "00", "046d", "c52b", "2", "2"));
  g_free (add_usb (fixture->root, "1-10", "00", "046d", "c52b", "1", "3"));
  g_free (add_usb (fixture->root, "1-2", "00", "046d", "c52b", "1", "4"));
  devices = scan_ok (fixture->root, inputs);
  ids = ids_of (devices);

  g_assert_cmpstr (ids, ==,
                   "input-keyboard,input-mouse,pci-0000:00:02.0,pci-0000:00:1f.3,"
                   "usb-1-10,usb-1-2,usb-2-1");
}

static void
test_missing_bus (Fixture *fixture, gconstpointer data)
{
  static const gchar *const inputs[] = { "keyboard", NULL };
  g_autofree gchar *absent = g_build_filename (fixture->root, "nothing-here", NULL);
  g_autofree gchar *bus_dir = g_build_filename (fixture->root, "bus", "usb", NULL);
  g_autoptr (GPtrArray) empty = scan_ok (fixture->root, NULL);
  g_autoptr (GPtrArray) nowhere = scan_ok (absent, inputs);
  g_autoptr (GPtrArray) pci_only = NULL;
  g_autoptr (GPtrArray) broken = NULL;
  g_autoptr (GError) error = NULL;

  g_assert_cmpuint (empty->len, ==, 0);
  g_assert_cmpuint (nowhere->len, ==, 1);

  /* Only PCI: USB's absence is no error. */
  g_free (add_pci (fixture->root, "0000:00:02.0", "0x8086", "0x3e92", "0x030000", 0, NULL));
  pci_only = scan_ok (fixture->root, NULL);
  g_assert_cmpuint (pci_only->len, ==, 1);

  /* A bus directory that exists but cannot be listed is an error. */
  g_assert_cmpint (g_mkdir_with_parents (bus_dir, 0755), ==, 0);
  dhf_test_write_file (bus_dir, "devices", "not a directory");
  broken = dhf_device_inventory_scan (fixture->root, NULL, &error);
  g_assert_null (broken);
  g_assert_nonnull (error);
  g_assert_nonnull (strstr (error->message, "usb"));
}

static void
test_root_from_environment (Fixture *fixture, gconstpointer data)
{
  g_autoptr (GPtrArray) devices = NULL;
  g_autoptr (GPtrArray) explicit = NULL;
  g_autofree gchar *saved = g_strdup (g_getenv ("DHF_SYSFS_ROOT"));

  g_free (add_usb (fixture->root, "1-1", "00", "046d", "c52b", "1", "2"));
  g_free (add_pci (fixture->root, "0000:00:02.0", "0x8086", "0x3e92", "0x030000", 0, NULL));

  g_assert_true (g_setenv ("DHF_SYSFS_ROOT", fixture->root, TRUE));
  g_assert_cmpstr (dhf_device_inventory_default_root (), ==, fixture->root);
  devices = scan_ok (NULL, NULL);
  {
    g_autofree gchar *ids = ids_of (devices);

    g_assert_cmpstr (ids, ==, "pci-0000:00:02.0,usb-1-1");
  }

  /* An explicit root wins over the environment. */
  g_assert_true (g_setenv ("DHF_SYSFS_ROOT", "/nonexistent", TRUE));
  explicit = scan_ok (fixture->root, NULL);
  g_assert_cmpuint (explicit->len, ==, 2);

  g_unsetenv ("DHF_SYSFS_ROOT");
  g_assert_cmpstr (dhf_device_inventory_default_root (), ==, "/sys");
  g_assert_true (g_setenv ("DHF_SYSFS_ROOT", "", TRUE));
  g_assert_cmpstr (dhf_device_inventory_default_root (), ==, "/sys");

  if (saved != NULL)
    g_setenv ("DHF_SYSFS_ROOT", saved, TRUE);
  else
    g_unsetenv ("DHF_SYSFS_ROOT");
}

/* This machine's own devices: the scan succeeds and reports only what is
 * there. */
static void
test_real_sysfs (void)
{
  g_autoptr (GPtrArray) devices = scan_ok ("/sys", NULL);
  guint pci = 0, usb = 0;

  for (guint i = 0; i < devices->len; i++)
    {
      const DhfDevice *device = g_ptr_array_index (devices, i);

      g_assert_nonnull (device->description);
      g_assert_true (g_utf8_validate (device->description, -1, NULL));
      g_assert_cmpuint (strlen (device->id), <=, 64);
      if (device->kind == DHF_DEVICE_KIND_PCI)
        {
          g_autofree gchar *path
              = g_build_filename ("/sys/bus/pci/devices", device->pci_address, NULL);

          g_assert_true (g_file_test (path, G_FILE_TEST_IS_DIR));
          pci++;
        }
      else if (device->kind == DHF_DEVICE_KIND_USB)
        {
          g_autofree gchar *path
              = g_build_filename ("/sys/bus/usb/devices", device->usb_port, NULL);

          g_assert_true (g_file_test (path, G_FILE_TEST_IS_DIR));
          usb++;
        }
    }
  g_test_message ("this machine: %u PCI functions, %u USB devices", pci, usb);
  /* And every function with an address a selector can name is reported
   * (real sysfs always has vendor, device and class). */
  if (g_file_test ("/sys/bus/pci/devices", G_FILE_TEST_IS_DIR))
    {
      g_autoptr (GError) error = NULL;
      g_autoptr (GDir) dir = g_dir_open ("/sys/bus/pci/devices", 0, &error);
      const gchar *name;

      g_assert_no_error (error);
      while ((name = g_dir_read_name (dir)) != NULL)
        {
          g_autofree gchar *lower = g_ascii_strdown (name, -1);
          g_autofree gchar *id = g_strconcat ("pci-", lower, NULL);

          if (strlen (name) == strlen ("0000:00:00.0"))
            g_assert_nonnull (lookup (devices, id));
        }
    }
}

int
main (int argc, char **argv)
{
  g_test_init (&argc, &argv, NULL);

#define ADD(path, func) g_test_add (path, Fixture, NULL, fixture_set_up, func, fixture_tear_down)
  ADD ("/device-inventory/usb/device", test_usb_device);
  ADD ("/device-inventory/usb/upper-case-hex", test_usb_upper_case_hex);
  ADD ("/device-inventory/usb/skipped", test_usb_skipped);
  ADD ("/device-inventory/usb/serial", test_usb_serial);
  ADD ("/device-inventory/usb/description", test_usb_description);
  ADD ("/device-inventory/usb/description-oversized", test_usb_description_oversized);
  ADD ("/device-inventory/usb/missing-attributes", test_usb_missing_attributes);
  ADD ("/device-inventory/pci/devices", test_pci);
  ADD ("/device-inventory/pci/odd", test_pci_odd);
  ADD ("/device-inventory/input/emulated", test_emulated_inputs);
  ADD ("/device-inventory/input/invalid", test_emulated_inputs_invalid);
  ADD ("/device-inventory/sorted", test_sorted);
  ADD ("/device-inventory/missing-bus", test_missing_bus);
  ADD ("/device-inventory/root-from-environment", test_root_from_environment);
#undef ADD
  g_test_add_func ("/device-inventory/real-sysfs", test_real_sysfs);
  return g_test_run ();
}
