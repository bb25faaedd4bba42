/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include "config.h"

#include <string.h>

#include "dhf-device.h"
#include "dhf-manifest.h"

static DhfDevice *
make_usb (const gchar *port, guint16 vendor, guint16 product, const gchar *serial)
{
  DhfDevice *device = g_new0 (DhfDevice, 1);

  device->kind = DHF_DEVICE_KIND_USB;
  device->id = g_strconcat ("usb-", port, NULL);
  device->usb_port = g_strdup (port);
  device->usb_vendor = vendor;
  device->usb_product = product;
  device->usb_serial = g_strdup (serial);
  device->usb_bus = 1;
  device->usb_devnum = 5;
  device->selector = serial != NULL ? g_strdup_printf ("usb:%04x:%04x:%s", vendor, product, serial)
                                    : g_strdup_printf ("usb:%04x:%04x", vendor, product);
  device->description = g_strdup ("Logitech USB Receiver");
  device->iommu_group = -1;
  return device;
}

static DhfDevice *
make_pci (const gchar *address)
{
  DhfDevice *device = g_new0 (DhfDevice, 1);

  device->kind = DHF_DEVICE_KIND_PCI;
  device->id = g_strconcat ("pci-", address, NULL);
  device->pci_address = g_strdup (address);
  device->selector = g_strconcat ("pci:", address, NULL);
  device->description = g_strdup ("Audio device [8086:a170]");
  device->pci_vendor = 0x8086;
  device->pci_device = 0xa170;
  device->pci_class = 0x040300;
  device->iommu_group = 12;
  device->pci_driver = g_strdup ("snd_hda_intel");
  return device;
}

static DhfDevice *
make_input (const gchar *type)
{
  DhfDevice *device = g_new0 (DhfDevice, 1);

  device->kind = DHF_DEVICE_KIND_INPUT;
  device->id = g_strconcat ("input-", type, NULL);
  device->input_type = g_strdup (type);
  device->selector = g_strconcat ("input:", type, NULL);
  device->description = g_strconcat (type, " (emulated)", NULL);
  device->iommu_group = -1;
  return device;
}

static void
test_device_strings (void)
{
  DhfDeviceMode mode = DHF_DEVICE_MODE_DOM0;
  static const gchar *const bad[] = { "", "Pinned", "follow_focus", "pinned ", "dom", NULL };

  g_assert_cmpstr (dhf_device_kind_to_string (DHF_DEVICE_KIND_USB), ==, "usb");
  g_assert_cmpstr (dhf_device_kind_to_string (DHF_DEVICE_KIND_PCI), ==, "pci");
  g_assert_cmpstr (dhf_device_kind_to_string (DHF_DEVICE_KIND_INPUT), ==, "input");

  g_assert_cmpstr (dhf_device_mode_to_string (DHF_DEVICE_MODE_PINNED), ==, "pinned");
  g_assert_cmpstr (dhf_device_mode_to_string (DHF_DEVICE_MODE_FOLLOW_FOCUS), ==, "follow-focus");
  g_assert_cmpstr (dhf_device_mode_to_string (DHF_DEVICE_MODE_DOM0), ==, "dom0");

  /* Every mode goes there and back. */
  for (guint m = DHF_DEVICE_MODE_PINNED; m <= DHF_DEVICE_MODE_DOM0; m++)
    {
      DhfDeviceMode parsed = (m + 1) % 3;

      g_assert_true (dhf_device_mode_from_string (dhf_device_mode_to_string (m), &parsed));
      g_assert_cmpint (parsed, ==, m);
    }
  for (guint i = 0; bad[i] != NULL; i++)
    {
      g_assert_false (dhf_device_mode_from_string (bad[i], &mode));
      g_assert_cmpint (mode, ==, DHF_DEVICE_MODE_DOM0); /* untouched */
    }
  g_assert_false (dhf_device_mode_from_string (NULL, &mode));
}

static void
test_device_copy (void)
{
  g_autoptr (DhfDevice) usb = make_usb ("1-2.3", 0x046d, 0xc52b, "ABC123");
  g_autoptr (DhfDevice) copy = dhf_device_copy (usb);

  g_assert_true (copy != usb);
  g_assert_cmpstr (copy->id, ==, "usb-1-2.3");
  g_assert_true (copy->id != usb->id);
  g_assert_cmpstr (copy->selector, ==, "usb:046d:c52b:ABC123");
  g_assert_cmpstr (copy->usb_serial, ==, "ABC123");
  g_assert_true (copy->usb_serial != usb->usb_serial);
  g_assert_cmpstr (copy->usb_port, ==, "1-2.3");
  g_assert_cmpuint (copy->usb_vendor, ==, 0x046d);
  g_assert_cmpuint (copy->usb_devnum, ==, 5);
  g_assert_null (copy->pci_address);

  /* Freeing the original leaves the copy whole. */
  g_clear_pointer (&usb, dhf_device_free);
  g_assert_cmpstr (copy->description, ==, "Logitech USB Receiver");

  {
    g_autoptr (DhfDevice) pci = make_pci ("0000:00:1f.3");
    g_autoptr (DhfDevice) pci_copy = dhf_device_copy (pci);

    g_assert_cmpstr (pci_copy->pci_driver, ==, "snd_hda_intel");
    g_assert_true (pci_copy->pci_driver != pci->pci_driver);
    g_assert_cmpint (pci_copy->iommu_group, ==, 12);
    g_assert_cmpuint (pci_copy->pci_class, ==, 0x040300);
  }
  dhf_device_free (NULL);
}

static void
test_device_alias (void)
{
  static const struct
  {
    const gchar *id;
    const gchar *alias;
  } cases[] = {
    { "usb-1-2.3", "ua-dhf-usb-1-2_3" },
    { "pci-0000:00:1f.3", "ua-dhf-pci-0000_00_1f_3" },
    { "input-keyboard", "ua-dhf-input-keyboard" },
    { "a_b-C9", "ua-dhf-a_b-C9" },
    { "x y/'\"<>&", "ua-dhf-x_y______" },
    /* Non-ASCII is made '_' byte by byte: the alias stays ASCII. */
    { "caf\xc3\xa9", "ua-dhf-caf__" },
    { "", "ua-dhf-" },
  };

  for (guint i = 0; i < G_N_ELEMENTS (cases); i++)
    {
      DhfDevice device = { .id = (gchar *) cases[i].id, .kind = DHF_DEVICE_KIND_USB };
      g_autofree gchar *alias = dhf_device_alias (&device);

      g_assert_cmpstr (alias, ==, cases[i].alias);
      g_assert_true (g_str_has_prefix (alias, DHF_DEVICE_ALIAS_PREFIX));
    }
}

static void
test_device_xml_usb (void)
{
  g_autoptr (DhfDevice) usb = make_usb ("1-2.3", 0x046d, 0xc52b, NULL);
  g_autofree gchar *xml = dhf_device_to_xml (usb);

  g_assert_cmpstr (xml, ==,
                   "<hostdev mode='subsystem' type='usb' managed='yes'>"
                   "<source startupPolicy='optional'><vendor id='0x046d'/><product id='0xc52b'/>"
                   "<address bus='1' device='5'/></source>"
                   "<alias name='ua-dhf-usb-1-2_3'/></hostdev>");

  /* Small ids keep their four digits; large numbers are decimal. */
  usb->usb_vendor = 0x1;
  usb->usb_product = 0xffff;
  usb->usb_bus = 12;
  usb->usb_devnum = 127;
  g_clear_pointer (&xml, g_free);
  xml = dhf_device_to_xml (usb);
  g_assert_nonnull (strstr (xml, "<vendor id='0x0001'/><product id='0xffff'/>"));
  g_assert_nonnull (strstr (xml, "<address bus='12' device='127'/>"));
}

static void
test_device_xml_pci (void)
{
  g_autoptr (DhfDevice) pci = make_pci ("0000:00:1f.3");
  g_autoptr (DhfDevice) other = make_pci ("abcd:ef:01.7");
  g_autofree gchar *xml = dhf_device_to_xml (pci);
  g_autofree gchar *other_xml = dhf_device_to_xml (other);

  g_assert_cmpstr (xml, ==,
                   "<hostdev mode='subsystem' type='pci' managed='yes'><source>"
                   "<address domain='0x0000' bus='0x00' slot='0x1f' function='0x3'/></source>"
                   "<alias name='ua-dhf-pci-0000_00_1f_3'/></hostdev>");
  g_assert_nonnull (
      strstr (other_xml, "<address domain='0xabcd' bus='0xef' slot='0x01' function='0x7'/>"));
  g_assert_nonnull (strstr (other_xml, "<alias name='ua-dhf-pci-abcd_ef_01_7'/>"));
}

static const gchar *const invalid_pci_addresses[] = {
  "0000:00:20.0", /* slot above 0x1f */
  "0000:00:1f.8", /* function above 7 */
  "0000:00:1f",   "000:00:1f.3", "0000:00:1f.3x", "0000-00:1f.3", "zzzz:00:1f.3", "",
};

/* A device the inventory could not have made: no XML, and a critical. */
static void
test_device_xml_pci_invalid (void)
{
  for (guint i = 0; i < G_N_ELEMENTS (invalid_pci_addresses); i++)
    {
      g_autofree gchar *path = g_strdup_printf ("/device/xml/pci-invalid/subprocess/%u", i);
      g_autofree gchar *pattern
          = g_strdup_printf ("*no usable PCI address '%s'*", invalid_pci_addresses[i]);

      g_test_trap_subprocess (path, 0, G_TEST_SUBPROCESS_DEFAULT);
      g_test_trap_assert_passed ();
      g_test_trap_assert_stderr (pattern);
    }
}

static void
test_device_xml_pci_invalid_subprocess (gconstpointer data)
{
  g_autoptr (DhfDevice) pci = make_pci (invalid_pci_addresses[GPOINTER_TO_UINT (data)]);
  g_autofree gchar *xml = NULL;

  /* The critical is what the parent checks; here it must not abort. */
  g_log_set_always_fatal (G_LOG_FATAL_MASK);
  xml = dhf_device_to_xml (pci);
  g_assert_null (xml);
}

static void
test_device_xml_input (void)
{
  static const gchar *const types[] = { "keyboard", "mouse", "tablet" };

  for (guint i = 0; i < G_N_ELEMENTS (types); i++)
    {
      g_autoptr (DhfDevice) input = make_input (types[i]);
      g_autofree gchar *xml = dhf_device_to_xml (input);
      g_autofree gchar *expected = g_strdup_printf (
          "<input type='%s' bus='usb'><alias name='ua-dhf-input-%s'/></input>", types[i], types[i]);

      g_assert_cmpstr (xml, ==, expected);
    }
}

static void
test_device_xml_escaped (void)
{
  /* DhfDevice values never hold these from the inventory; the XML must
   * still be well formed if one ever does. */
  g_autoptr (DhfDevice) input = make_input ("key'board\"<&>");
  g_autofree gchar *xml = dhf_device_to_xml (input);

  g_assert_cmpstr (xml, ==,
                   "<input type='key&apos;board&quot;&lt;&amp;&gt;' bus='usb'>"
                   "<alias name='ua-dhf-input-key_board____'/></input>");
}

static void
test_device_matches_wish (void)
{
  g_autoptr (DhfDevice) usb = make_usb ("1-2", 0x046d, 0xc52b, "ABC123");
  g_autoptr (DhfDevice) usb_no_serial = make_usb ("1-3", 0x046d, 0xc52b, NULL);
  g_autoptr (DhfDevice) pci = make_pci ("0000:00:1f.3");
  g_autoptr (DhfDevice) keyboard = make_input ("keyboard");
  DhfManifestDevice wish = { .kind = DHF_DEVICE_KIND_USB,
                             .mode = DHF_DEVICE_MODE_PINNED,
                             .usb_vendor = 0x046d,
                             .usb_product = 0xc52b };

  /* USB: vendor and product, any serial. */
  g_assert_true (dhf_device_matches_wish (usb, &wish));
  g_assert_true (dhf_device_matches_wish (usb_no_serial, &wish));
  wish.usb_product = 0xc52c;
  g_assert_false (dhf_device_matches_wish (usb, &wish));
  wish.usb_product = 0xc52b;
  wish.usb_vendor = 0x046e;
  g_assert_false (dhf_device_matches_wish (usb, &wish));
  wish.usb_vendor = 0x046d;

  /* A serial names one device; a device without one is not it. */
  wish.usb_serial = (gchar *) "ABC123";
  g_assert_true (dhf_device_matches_wish (usb, &wish));
  g_assert_false (dhf_device_matches_wish (usb_no_serial, &wish));
  wish.usb_serial = (gchar *) "abc123";
  g_assert_false (dhf_device_matches_wish (usb, &wish));
  wish.usb_serial = NULL;

  /* Another kind never matches, whatever its fields say. */
  g_assert_false (dhf_device_matches_wish (pci, &wish));
  g_assert_false (dhf_device_matches_wish (keyboard, &wish));

  /* PCI: the address, hex in either case. */
  wish
      = (DhfManifestDevice){ .kind = DHF_DEVICE_KIND_PCI, .pci_address = (gchar *) "0000:00:1f.3" };
  g_assert_true (dhf_device_matches_wish (pci, &wish));
  wish.pci_address = (gchar *) "0000:00:1F.3";
  g_assert_true (dhf_device_matches_wish (pci, &wish));
  wish.pci_address = (gchar *) "0000:00:1f.2";
  g_assert_false (dhf_device_matches_wish (pci, &wish));
  wish.pci_address = NULL;
  g_assert_false (dhf_device_matches_wish (pci, &wish));
  g_assert_false (dhf_device_matches_wish (usb, &wish));

  /* Input: the type. */
  wish = (DhfManifestDevice){ .kind = DHF_DEVICE_KIND_INPUT, .input_type = (gchar *) "keyboard" };
  g_assert_true (dhf_device_matches_wish (keyboard, &wish));
  wish.input_type = (gchar *) "mouse";
  g_assert_false (dhf_device_matches_wish (keyboard, &wish));
  wish.input_type = NULL;
  g_assert_false (dhf_device_matches_wish (keyboard, &wish));
}

int
main (int argc, char **argv)
{
  g_test_init (&argc, &argv, NULL);

  g_test_add_func ("/device/strings", test_device_strings);
  g_test_add_func ("/device/copy", test_device_copy);
  g_test_add_func ("/device/alias", test_device_alias);
  g_test_add_func ("/device/xml/usb", test_device_xml_usb);
  g_test_add_func ("/device/xml/pci", test_device_xml_pci);
  g_test_add_func ("/device/xml/pci-invalid", test_device_xml_pci_invalid);
  for (guint i = 0; i < G_N_ELEMENTS (invalid_pci_addresses); i++)
    {
      g_autofree gchar *path = g_strdup_printf ("/device/xml/pci-invalid/subprocess/%u", i);

      g_test_add_data_func (path, GUINT_TO_POINTER (i), test_device_xml_pci_invalid_subprocess);
    }
  g_test_add_func ("/device/xml/input", test_device_xml_input);
  g_test_add_func ("/device/xml/escaped", test_device_xml_escaped);
  g_test_add_func ("/device/matches-wish", test_device_matches_wish);
  return g_test_run ();
}
