/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <dhf/dhf.h>

#include "dhf-device-inventory.h"

/* sysfs attributes fit in a page; a fake or hostile tree may hold more. */
#define ATTRIBUTE_MAX 4096
/* USB string descriptors hold at most 126 characters. */
#define DESCRIPTION_MAX_CHARS 128
#define SERIAL_MAX            128
#define ID_MAX                64
#define DRIVER_MAX            64

static const gchar *const input_types[] = { "keyboard", "mouse", "tablet" };

const gchar *
dhf_device_inventory_default_root (void)
{
  const gchar *root = g_getenv ("DHF_SYSFS_ROOT");

  return root != NULL && *root != '\0' ? root : "/sys";
}

/* Reads at most ATTRIBUTE_MAX bytes of a regular file, without following
 * a symlink in its last component and without blocking on a FIFO. The
 * result is NUL-terminated (it may hold NULs of its own: see *length); one
 * trailing newline, which sysfs adds, is removed. */
static gchar *
read_attribute (const gchar *dir, const gchar *name, gsize *length, GError **error)
{
  g_autofree gchar *path = g_build_filename (dir, name, NULL);
  g_autofree gchar *buffer = NULL;
  struct stat st;
  gsize total = 0;
  int fd;

  fd = open (path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW | O_NONBLOCK);
  if (fd < 0)
    {
      int saved_errno = errno;

      g_set_error (error, G_IO_ERROR, g_io_error_from_errno (saved_errno), "%s: %s", path,
                   g_strerror (saved_errno));
      return NULL;
    }
  if (fstat (fd, &st) < 0 || !S_ISREG (st.st_mode))
    {
      close (fd);
      g_set_error (error, G_IO_ERROR, G_IO_ERROR_NOT_REGULAR_FILE, "%s: not a regular file", path);
      return NULL;
    }
  buffer = g_malloc (ATTRIBUTE_MAX + 1);
  while (total < ATTRIBUTE_MAX)
    {
      gssize n = read (fd, buffer + total, ATTRIBUTE_MAX - total);

      if (n < 0 && errno == EINTR)
        continue;
      if (n < 0)
        {
          int saved_errno = errno;

          close (fd);
          g_set_error (error, G_IO_ERROR, g_io_error_from_errno (saved_errno), "reading %s: %s",
                       path, g_strerror (saved_errno));
          return NULL;
        }
      if (n == 0)
        break;
      total += n;
    }
  close (fd);
  if (total > 0 && buffer[total - 1] == '\n')
    total--;
  buffer[total] = '\0';
  if (length != NULL)
    *length = total;
  return g_steal_pointer (&buffer);
}

/* A value with no NUL inside and surrounding whitespace removed, for the
 * numeric attributes. */
static gchar *
read_value (const gchar *dir, const gchar *name, GError **error)
{
  gsize length = 0;
  g_autofree gchar *text = read_attribute (dir, name, &length, error);

  if (text == NULL)
    return NULL;
  if (strlen (text) != length)
    {
      g_set_error (error, G_IO_ERROR, G_IO_ERROR_INVALID_DATA, "%s/%s: binary data", dir, name);
      return NULL;
    }
  return g_strstrip (g_steal_pointer (&text));
}

/* Exactly `digits` hex digits after `prefix` ("" or "0x"), as the kernel
 * prints them. */
static gboolean
parse_hex (const gchar *dir, const gchar *name, const gchar *prefix, guint digits, guint32 *value,
           GError **error)
{
  g_autofree gchar *text = read_value (dir, name, error);
  const gchar *p;
  gboolean valid;

  if (text == NULL)
    return FALSE;
  p = text + strlen (prefix);
  valid = g_str_has_prefix (text, prefix) && strlen (p) == digits;
  for (const gchar *d = p; valid && *d != '\0'; d++)
    valid = g_ascii_isxdigit (*d);
  if (!valid)
    {
      g_autofree gchar *shown = g_strescape (text, NULL);

      g_set_error (error, G_IO_ERROR, G_IO_ERROR_INVALID_DATA, "%s/%s: '%s' is not %s%u hex digits",
                   dir, name, shown, *prefix != '\0' ? "0x and " : "", digits);
      return FALSE;
    }
  *value = g_ascii_strtoull (p, NULL, 16);
  return TRUE;
}

static gboolean
parse_decimal (const gchar *dir, const gchar *name, guint max, guint *value, GError **error)
{
  g_autofree gchar *text = read_value (dir, name, error);
  guint64 number;

  if (text == NULL)
    return FALSE;
  if (!g_ascii_string_to_unsigned (text, 10, 0, max, &number, error))
    {
      g_prefix_error (error, "%s/%s: ", dir, name);
      return FALSE;
    }
  *value = number;
  return TRUE;
}

/* Device-supplied text made fit for a UI and a log: invalid UTF-8, NULs
 * and control or format characters (bidi overrides) are dropped, runs of
 * whitespace become one space, and the result is bounded. */
static gchar *
sanitize_text (const gchar *text, gsize length)
{
  GString *out = g_string_new (NULL);
  const gchar *p = text;
  const gchar *end = text + length;
  gboolean pending_space = FALSE;
  guint chars = 0;

  while (p < end && chars < DESCRIPTION_MAX_CHARS)
    {
      gunichar c = g_utf8_get_char_validated (p, end - p);
      const gchar *next;

      if (*p == '\0' || c == (gunichar) -1 || c == (gunichar) -2)
        {
          p++;
          continue;
        }
      next = g_utf8_next_char (p);
      if (g_unichar_isspace (c))
        pending_space = out->len > 0;
      else if (g_unichar_isprint (c))
        {
          if (pending_space && chars + 1 < DESCRIPTION_MAX_CHARS)
            {
              g_string_append_c (out, ' ');
              chars++;
            }
          pending_space = FALSE;
          g_string_append_len (out, p, next - p);
          chars++;
        }
      p = next;
    }
  return g_string_free (out, FALSE);
}

/* An optional string attribute, sanitised; NULL when absent or empty. */
static gchar *
read_text (const gchar *dir, const gchar *name)
{
  g_autoptr (GError) error = NULL;
  g_autofree gchar *raw = NULL;
  g_autofree gchar *text = NULL;
  gsize length = 0;

  raw = read_attribute (dir, name, &length, &error);
  if (raw == NULL)
    {
      if (!g_error_matches (error, G_IO_ERROR, G_IO_ERROR_NOT_FOUND))
        g_debug ("ignoring %s", error->message);
      return NULL;
    }
  text = sanitize_text (raw, length);
  return *text != '\0' ? g_steal_pointer (&text) : NULL;
}

/* The policy grammar's SERIAL: [A-Za-z0-9._-]{1,128}. */
static gboolean
serial_is_usable (const gchar *serial, gsize length)
{
  if (length == 0 || length > SERIAL_MAX)
    return FALSE;
  for (gsize i = 0; i < length; i++)
    {
      gchar c = serial[i];

      if (!g_ascii_isalnum (c) && c != '.' && c != '_' && c != '-')
        return FALSE;
    }
  return TRUE;
}

static gchar *
read_usb_serial (const gchar *dir)
{
  g_autoptr (GError) error = NULL;
  g_autofree gchar *serial = NULL;
  gsize length = 0;

  serial = read_attribute (dir, "serial", &length, &error);
  if (serial == NULL)
    {
      if (!g_error_matches (error, G_IO_ERROR, G_IO_ERROR_NOT_FOUND))
        g_debug ("ignoring the serial: %s", error->message);
      return NULL;
    }
  if (!serial_is_usable (serial, length))
    {
      g_autofree gchar *shown = sanitize_text (serial, MIN (length, 64));

      g_debug ("%s: serial '%s' does not fit a policy selector; using vendor:product only", dir,
               shown);
      return NULL;
    }
  return g_steal_pointer (&serial);
}

/* A USB device's sysfs name is its port: "BUS-PORT[.PORT]...". Root hubs
 * ("usb1") and interfaces ("1-2.3:1.0") do not have this form. */
static gboolean
is_usb_port_name (const gchar *name)
{
  const gchar *p = name;

  if (strlen (name) + strlen ("usb-") > ID_MAX)
    return FALSE;
  if (!g_ascii_isdigit (*p))
    return FALSE;
  while (g_ascii_isdigit (*p))
    p++;
  if (*p++ != '-')
    return FALSE;
  for (;;)
    {
      if (!g_ascii_isdigit (*p))
        return FALSE;
      while (g_ascii_isdigit (*p))
        p++;
      if (*p == '\0')
        return TRUE;
      if (*p++ != '.')
        return FALSE;
    }
}

static gchar *
usb_description (const gchar *dir, guint16 vendor, guint16 product_id)
{
  g_autofree gchar *manufacturer = read_text (dir, "manufacturer");
  g_autofree gchar *product = read_text (dir, "product");
  g_autofree gchar *joined = NULL;

  if (product != NULL && manufacturer != NULL)
    {
      /* "Logitech" + "USB Receiver", but not "Logitech Logitech Mouse". */
      if (g_str_has_prefix (product, manufacturer))
        return g_steal_pointer (&product);
      joined = g_strconcat (manufacturer, " ", product, NULL);
      return sanitize_text (joined, strlen (joined));
    }
  if (product != NULL)
    return g_steal_pointer (&product);
  if (manufacturer != NULL)
    return g_strdup_printf ("%s USB device", manufacturer);
  return g_strdup_printf ("USB device %04x:%04x", vendor, product_id);
}

/* Reads one USB device. FALSE with error: leave it out; TRUE with
 * *device NULL: a hub, which is no assignable device. */
static gboolean
read_usb_device (const gchar *dir, const gchar *name, DhfDevice **device, GError **error)
{
  g_autoptr (DhfDevice) usb = NULL;
  guint32 vendor, product, device_class;
  guint bus, devnum;

  *device = NULL;
  if (!parse_hex (dir, "bDeviceClass", "", 2, &device_class, error))
    return FALSE;
  if (device_class == 0x09)
    return TRUE;
  if (!parse_hex (dir, "idVendor", "", 4, &vendor, error)
      || !parse_hex (dir, "idProduct", "", 4, &product, error)
      || !parse_decimal (dir, "busnum", G_MAXUINT16, &bus, error)
      || !parse_decimal (dir, "devnum", G_MAXUINT16, &devnum, error))
    return FALSE;

  usb = g_new0 (DhfDevice, 1);
  usb->kind = DHF_DEVICE_KIND_USB;
  usb->id = g_strconcat ("usb-", name, NULL);
  usb->usb_port = g_strdup (name);
  usb->usb_vendor = vendor;
  usb->usb_product = product;
  usb->usb_bus = bus;
  usb->usb_devnum = devnum;
  usb->usb_serial = read_usb_serial (dir);
  usb->selector = usb->usb_serial != NULL
                      ? g_strdup_printf ("usb:%04x:%04x:%s", vendor, product, usb->usb_serial)
                      : g_strdup_printf ("usb:%04x:%04x", vendor, product);
  usb->description = usb_description (dir, vendor, product);
  usb->iommu_group = -1;
  *device = g_steal_pointer (&usb);
  return TRUE;
}

/* "DDDD:BB:SS.F", the only form a policy selector can name. */
static gboolean
is_pci_address (const gchar *name)
{
  static const gchar pattern[] = "xxxx:xx:xx.f";

  if (strlen (name) != strlen (pattern))
    return FALSE;
  for (guint i = 0; pattern[i] != '\0'; i++)
    {
      if (pattern[i] == 'x' && !g_ascii_isxdigit (name[i]))
        return FALSE;
      if (pattern[i] == 'f' && (name[i] < '0' || name[i] > '7'))
        return FALSE;
      if (pattern[i] != 'x' && pattern[i] != 'f' && name[i] != pattern[i])
        return FALSE;
    }
  return g_ascii_xdigit_value (name[8]) <= 1;
}

/* The last component of a symlink's target, or NULL without the link. */
static gchar *
read_link_name (const gchar *dir, const gchar *name)
{
  g_autofree gchar *path = g_build_filename (dir, name, NULL);
  g_autoptr (GError) error = NULL;
  g_autofree gchar *target = g_file_read_link (path, &error);

  if (target == NULL)
    {
      if (!g_error_matches (error, G_FILE_ERROR, G_FILE_ERROR_NOENT))
        g_debug ("ignoring %s: %s", path, error->message);
      return NULL;
    }
  return g_path_get_basename (target);
}

static gint
read_iommu_group (const gchar *dir)
{
  g_autofree gchar *group = read_link_name (dir, "iommu_group");
  guint64 number;

  if (group == NULL)
    return -1;
  if (!g_ascii_string_to_unsigned (group, 10, 0, G_MAXINT, &number, NULL))
    {
      g_autofree gchar *shown = g_strescape (group, NULL);

      g_debug ("%s: iommu_group '%s' is not a number; treating the device as having none", dir,
               shown);
      return -1;
    }
  return (gint) number;
}

static gchar *
read_driver (const gchar *dir)
{
  g_autofree gchar *driver = read_link_name (dir, "driver");

  if (driver == NULL)
    return NULL;
  for (const gchar *p = driver; *p != '\0'; p++)
    {
      if (!g_ascii_isalnum (*p) && strchr ("_-.:+", *p) == NULL)
        {
          g_autofree gchar *shown = g_strescape (driver, NULL);

          g_debug ("%s: ignoring driver name '%s'", dir, shown);
          return NULL;
        }
    }
  if (strlen (driver) > DRIVER_MAX)
    return NULL;
  return g_steal_pointer (&driver);
}

/* No pci.ids database: the class names the kind of function. */
static const gchar *
pci_class_name (guint32 class_code)
{
  static const struct
  {
    guint16 code; /* base and subclass */
    const gchar *name;
  } subclasses[] = {
    { 0x0106, "SATA controller" },     { 0x0108, "NVMe controller" },
    { 0x0200, "Ethernet controller" }, { 0x0280, "Network controller" },
    { 0x0300, "VGA controller" },      { 0x0302, "3D controller" },
    { 0x0401, "Audio device" },        { 0x0403, "Audio device" },
    { 0x0600, "Host bridge" },         { 0x0601, "ISA bridge" },
    { 0x0604, "PCI bridge" },          { 0x0c03, "USB controller" },
    { 0x0c05, "SMBus controller" },    { 0x0d11, "Bluetooth controller" },
  };
  static const gchar *const classes[] = {
    "Unclassified device",
    "Mass storage controller",
    "Network controller",
    "Display controller",
    "Multimedia controller",
    "Memory controller",
    "Bridge",
    "Communication controller",
    "System peripheral",
    "Input device",
    "Docking station",
    "Processor",
    "Serial bus controller",
    "Wireless controller",
    "Intelligent controller",
    "Satellite controller",
    "Encryption controller",
    "Signal processing controller",
    "Processing accelerator",
  };
  guint16 code = class_code >> 8;

  for (guint i = 0; i < G_N_ELEMENTS (subclasses); i++)
    if (subclasses[i].code == code)
      return subclasses[i].name;
  if ((code >> 8) < G_N_ELEMENTS (classes))
    return classes[code >> 8];
  return "PCI device";
}

static DhfDevice *
read_pci_device (const gchar *dir, const gchar *name, GError **error)
{
  g_autoptr (DhfDevice) pci = NULL;
  guint32 vendor, device, class_code;

  if (!parse_hex (dir, "vendor", "0x", 4, &vendor, error)
      || !parse_hex (dir, "device", "0x", 4, &device, error)
      || !parse_hex (dir, "class", "0x", 6, &class_code, error))
    return NULL;

  pci = g_new0 (DhfDevice, 1);
  pci->kind = DHF_DEVICE_KIND_PCI;
  pci->pci_address = g_ascii_strdown (name, -1);
  pci->id = g_strconcat ("pci-", pci->pci_address, NULL);
  pci->selector = g_strconcat ("pci:", pci->pci_address, NULL);
  pci->pci_vendor = vendor;
  pci->pci_device = device;
  pci->pci_class = class_code;
  pci->pci_bridge = (class_code >> 8) == 0x0604;
  pci->iommu_group = read_iommu_group (dir);
  pci->pci_driver = read_driver (dir);
  pci->description
      = g_strdup_printf ("%s [%04x:%04x]", pci_class_name (class_code), vendor, device);
  return g_steal_pointer (&pci);
}

typedef enum
{
  BUS_USB,
  BUS_PCI,
} Bus;

/* Lists ROOT/bus/NAME/devices; a bus the kernel lacks is no error. */
static gboolean
scan_bus (const gchar *root, Bus bus, GPtrArray *devices, GError **error)
{
  const gchar *bus_name = bus == BUS_USB ? "usb" : "pci";
  g_autofree gchar *bus_dir = g_build_filename (root, "bus", bus_name, "devices", NULL);
  g_autoptr (GError) local_error = NULL;
  g_autoptr (GDir) dir = g_dir_open (bus_dir, 0, &local_error);
  const gchar *name;

  if (dir == NULL)
    {
      if (g_error_matches (local_error, G_FILE_ERROR, G_FILE_ERROR_NOENT))
        {
          g_debug ("%s does not exist: no %s devices", bus_dir, bus_name);
          return TRUE;
        }
      g_propagate_prefixed_error (error, g_steal_pointer (&local_error),
                                  "Cannot list the %s devices: ", bus_name);
      return FALSE;
    }

  while ((name = g_dir_read_name (dir)) != NULL)
    {
      g_autofree gchar *device_dir = g_build_filename (bus_dir, name, NULL);
      g_autoptr (GError) device_error = NULL;
      DhfDevice *device = NULL;

      if (bus == BUS_USB)
        {
          if (!is_usb_port_name (name))
            continue;
          if (!read_usb_device (device_dir, name, &device, &device_error))
            g_debug ("leaving out USB device %s: %s", name, device_error->message);
        }
      else
        {
          if (!is_pci_address (name))
            {
              g_debug ("leaving out PCI device %s: a selector cannot name its address", name);
              continue;
            }
          device = read_pci_device (device_dir, name, &device_error);
          if (device == NULL)
            g_debug ("leaving out PCI device %s: %s", name, device_error->message);
        }
      if (device != NULL)
        g_ptr_array_add (devices, device);
    }
  return TRUE;
}

static gboolean
add_emulated_inputs (const gchar *const *emulated_inputs, GPtrArray *devices, GError **error)
{
  gboolean seen[G_N_ELEMENTS (input_types)] = { FALSE };

  for (guint i = 0; emulated_inputs != NULL && emulated_inputs[i] != NULL; i++)
    {
      guint type;

      for (type = 0; type < G_N_ELEMENTS (input_types); type++)
        if (g_str_equal (emulated_inputs[i], input_types[type]))
          break;
      if (type == G_N_ELEMENTS (input_types))
        {
          g_autofree gchar *shown = g_strescape (emulated_inputs[i], NULL);

          g_set_error (error, DHF_ERROR, DHF_ERROR_INVALID_ARGS,
                       "Unknown emulated input '%s' (expected keyboard, mouse or tablet)", shown);
          return FALSE;
        }
      if (!seen[type])
        {
          DhfDevice *input = g_new0 (DhfDevice, 1);

          seen[type] = TRUE;
          input->kind = DHF_DEVICE_KIND_INPUT;
          input->input_type = g_strdup (input_types[type]);
          input->id = g_strconcat ("input-", input_types[type], NULL);
          input->selector = g_strconcat ("input:", input_types[type], NULL);
          input->description = g_strconcat (input_types[type], " (emulated)", NULL);
          input->iommu_group = -1;
          g_ptr_array_add (devices, input);
        }
    }
  return TRUE;
}

static gint
compare_ids (gconstpointer a, gconstpointer b)
{
  const DhfDevice *da = *(const DhfDevice *const *) a;
  const DhfDevice *db = *(const DhfDevice *const *) b;

  return strcmp (da->id, db->id);
}

GPtrArray *
dhf_device_inventory_scan (const gchar *sysfs_root, const gchar *const *emulated_inputs,
                           GError **error)
{
  g_autoptr (GPtrArray) devices = g_ptr_array_new_with_free_func ((GDestroyNotify) dhf_device_free);
  const gchar *root = sysfs_root != NULL ? sysfs_root : dhf_device_inventory_default_root ();

  /* A configuration mistake is reported before sysfs is touched. */
  if (!add_emulated_inputs (emulated_inputs, devices, error))
    return NULL;
  if (!scan_bus (root, BUS_USB, devices, error) || !scan_bus (root, BUS_PCI, devices, error))
    return NULL;
  g_ptr_array_sort (devices, compare_ids);
  return g_steal_pointer (&devices);
}
