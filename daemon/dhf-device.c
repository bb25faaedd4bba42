/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include "config.h"

#include <string.h>

#include "dhf-device.h"
#include "dhf-manifest.h"

DhfDevice *
dhf_device_copy (const DhfDevice *device)
{
  DhfDevice *copy;

  g_return_val_if_fail (device != NULL, NULL);

  copy = g_new0 (DhfDevice, 1);
  *copy = *device;
  copy->id = g_strdup (device->id);
  copy->selector = g_strdup (device->selector);
  copy->description = g_strdup (device->description);
  copy->usb_serial = g_strdup (device->usb_serial);
  copy->usb_port = g_strdup (device->usb_port);
  copy->pci_address = g_strdup (device->pci_address);
  copy->pci_driver = g_strdup (device->pci_driver);
  copy->input_type = g_strdup (device->input_type);
  return copy;
}

void
dhf_device_free (DhfDevice *device)
{
  if (device == NULL)
    return;
  g_free (device->id);
  g_free (device->selector);
  g_free (device->description);
  g_free (device->usb_serial);
  g_free (device->usb_port);
  g_free (device->pci_address);
  g_free (device->pci_driver);
  g_free (device->input_type);
  g_free (device);
}

const gchar *
dhf_device_kind_to_string (DhfDeviceKind kind)
{
  switch (kind)
    {
      case DHF_DEVICE_KIND_USB:
        return "usb";
      case DHF_DEVICE_KIND_PCI:
        return "pci";
      case DHF_DEVICE_KIND_INPUT:
        return "input";
      default:
        g_return_val_if_reached ("unknown");
    }
}

static const gchar *const mode_names[] = {
  [DHF_DEVICE_MODE_PINNED] = "pinned",
  [DHF_DEVICE_MODE_FOLLOW_FOCUS] = "follow-focus",
  [DHF_DEVICE_MODE_DOM0] = "dom0",
};

const gchar *
dhf_device_mode_to_string (DhfDeviceMode mode)
{
  g_return_val_if_fail ((guint) mode < G_N_ELEMENTS (mode_names), "unknown");
  return mode_names[mode];
}

gboolean
dhf_device_mode_from_string (const gchar *text, DhfDeviceMode *mode)
{
  if (text == NULL)
    return FALSE;
  for (guint i = 0; i < G_N_ELEMENTS (mode_names); i++)
    {
      if (g_strcmp0 (text, mode_names[i]) == 0)
        {
          if (mode != NULL)
            *mode = (DhfDeviceMode) i;
          return TRUE;
        }
    }
  return FALSE;
}

gchar *
dhf_device_alias (const DhfDevice *device)
{
  GString *alias;

  g_return_val_if_fail (device != NULL && device->id != NULL, NULL);

  alias = g_string_new (DHF_DEVICE_ALIAS_PREFIX);
  for (const gchar *p = device->id; *p != '\0'; p++)
    g_string_append_c (alias, (g_ascii_isalnum (*p) || *p == '_' || *p == '-') ? *p : '_');
  return g_string_free (alias, FALSE);
}

/* Splits "DDDD:BB:SS.F" into its numbers; the inventory only makes
 * devices whose address has this form. */
static gboolean
parse_pci_address (const gchar *address, guint *domain, guint *bus, guint *slot, guint *function)
{
  const gchar *p = address;
  guint64 values[4];
  const gchar separators[] = { ':', ':', '.', '\0' };
  const guint widths[] = { 4, 2, 2, 1 };

  if (address == NULL)
    return FALSE;
  for (guint i = 0; i < 4; i++)
    {
      g_autofree gchar *digits = g_strndup (p, widths[i]);

      if (strlen (digits) != widths[i] || p[widths[i]] != separators[i])
        return FALSE;
      for (const gchar *d = digits; *d != '\0'; d++)
        if (!g_ascii_isxdigit (*d))
          return FALSE;
      values[i] = g_ascii_strtoull (digits, NULL, 16);
      p += widths[i] + 1;
    }
  if (values[2] > 0x1f || values[3] > 7)
    return FALSE;
  *domain = values[0];
  *bus = values[1];
  *slot = values[2];
  *function = values[3];
  return TRUE;
}

gchar *
dhf_device_to_xml (const DhfDevice *device)
{
  g_autofree gchar *alias = NULL;

  g_return_val_if_fail (device != NULL, NULL);

  alias = dhf_device_alias (device);
  switch (device->kind)
    {
      case DHF_DEVICE_KIND_USB:
        return g_markup_printf_escaped ("<hostdev mode='subsystem' type='usb' managed='yes'>"
                                        "<source startupPolicy='optional'>"
                                        "<vendor id='0x%04x'/><product id='0x%04x'/>"
                                        "<address bus='%u' device='%u'/>"
                                        "</source><alias name='%s'/></hostdev>",
                                        device->usb_vendor, device->usb_product, device->usb_bus,
                                        device->usb_devnum, alias);
      case DHF_DEVICE_KIND_PCI:
        {
          guint domain, bus, slot, function;

          if (!parse_pci_address (device->pci_address, &domain, &bus, &slot, &function))
            {
              g_critical ("device %s has no usable PCI address '%s'", device->id,
                          device->pci_address != NULL ? device->pci_address : "(null)");
              return NULL;
            }
          return g_markup_printf_escaped (
              "<hostdev mode='subsystem' type='pci' managed='yes'>"
              "<source><address domain='0x%04x' bus='0x%02x' slot='0x%02x' function='0x%x'/>"
              "</source><alias name='%s'/></hostdev>",
              domain, bus, slot, function, alias);
        }
      case DHF_DEVICE_KIND_INPUT:
        g_return_val_if_fail (device->input_type != NULL, NULL);
        return g_markup_printf_escaped ("<input type='%s' bus='usb'><alias name='%s'/></input>",
                                        device->input_type, alias);
      default:
        g_return_val_if_reached (NULL);
    }
}

gboolean
dhf_device_matches_wish (const DhfDevice *device, const DhfManifestDevice *wish)
{
  g_return_val_if_fail (device != NULL, FALSE);
  g_return_val_if_fail (wish != NULL, FALSE);

  if (device->kind != wish->kind)
    return FALSE;
  switch (device->kind)
    {
      case DHF_DEVICE_KIND_USB:
        if (device->usb_vendor != wish->usb_vendor || device->usb_product != wish->usb_product)
          return FALSE;
        /* A serial in the wish names one device; a device whose serial is
         * unknown or unusable cannot be proven to be that one. */
        return wish->usb_serial == NULL || g_strcmp0 (wish->usb_serial, device->usb_serial) == 0;
      case DHF_DEVICE_KIND_PCI:
        return device->pci_address != NULL && wish->pci_address != NULL
               && g_ascii_strcasecmp (device->pci_address, wish->pci_address) == 0;
      case DHF_DEVICE_KIND_INPUT:
        return device->input_type != NULL && g_strcmp0 (device->input_type, wish->input_type) == 0;
      default:
        return FALSE;
    }
}
