/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include "config.h"

#include <json-c/json.h>
#include <string.h>

#include "dhf-manifest.h"

/* Limits of the manifest format; docs/manifest.md lists them for ISVs. */
#define MANIFEST_VERSION       1
#define JSON_MAX_DEPTH         16
#define MAX_PROBLEMS_SHOWN     50
#define NAME_MAX_CHARS         48
#define VENDOR_MAX_CHARS       64
#define VERSION_MAX_PARTS      4
#define VERSION_PART_MAX       999999
#define VERSION_MAX_LEN        64
#define DESCRIPTION_MAX_CHARS  1024
#define MEMORY_MIN             (G_GUINT64_CONSTANT (64) << 20)
#define MEMORY_MAX             (G_GUINT64_CONSTANT (1) << 40)
#define VCPUS_MAX              64
#define IMAGE_PATH_MAX_BYTES   4096
#define FORWARDS_MAX           64
#define TAGS_MAX               32
#define TAG_MAX_CHARS          32
#define SERVICES_MAX           64
#define SERVICE_NAME_MAX_CHARS 255
#define DEVICES_MAX            32
#define SERIAL_MAX_CHARS       128
#define QUOTE_MAX_CHARS        40
/* x86 Linux keeps 2048 bytes with the terminating NUL; QEMU boots a longer
 * command line into a guest that never prints a line. */
#define CMDLINE_MAX_BYTES 2047

G_DEFINE_AUTOPTR_CLEANUP_FUNC (json_object, json_object_put)
G_DEFINE_AUTOPTR_CLEANUP_FUNC (json_tokener, json_tokener_free)

struct _DhfManifest
{
  gchar *name;
  gchar *vendor;
  gchar *version;
  gchar *description;
  DhfApplianceRole role;
  guint64 memory;
  guint vcpus;
  gboolean autostart;
  gchar *disk_image; /* absolute, canonical; NULL without a disk */
  DhfDiskFormat disk_format;
  gchar *boot_kernel;  /* absolute, canonical; NULL without direct kernel boot */
  gchar *boot_initrd;  /* absolute, canonical, or NULL */
  gchar *boot_cmdline; /* or NULL */
  DhfNetworkMode network_mode;
  GPtrArray *forwards; /* DhfManifestForward */
  DhfDisplayType display;
  GStrv tags;          /* never NULL */
  GPtrArray *services; /* DhfManifestService */
  GPtrArray *devices;  /* DhfManifestDevice */
};

static const gchar *const network_mode_names[] = {
  [DHF_NETWORK_MODE_NONE] = "none",
  [DHF_NETWORK_MODE_NAT] = "nat",
};

static const gchar *const display_names[] = {
  [DHF_DISPLAY_NONE] = "none",
  [DHF_DISPLAY_VNC] = "vnc",
  [DHF_DISPLAY_SPICE] = "spice",
};

static const gchar *const disk_format_names[] = {
  [DHF_DISK_FORMAT_QCOW2] = "qcow2",
  [DHF_DISK_FORMAT_RAW] = "raw",
};

static const gchar *const device_kind_names[] = {
  [DHF_DEVICE_KIND_USB] = "usb",
  [DHF_DEVICE_KIND_PCI] = "pci",
  [DHF_DEVICE_KIND_INPUT] = "input",
};

static const gchar *const device_mode_names[] = {
  [DHF_DEVICE_MODE_PINNED] = "pinned",
  [DHF_DEVICE_MODE_FOLLOW_FOCUS] = "follow-focus",
};

static const gchar *const role_names[] = {
  [DHF_APPLIANCE_ROLE_ENVIRONMENT] = "environment",
  [DHF_APPLIANCE_ROLE_SERVICE] = "service",
};
static const gchar *const protocol_names[] = { "tcp", "udp" };
static const gchar *const input_names[] = { "keyboard", "mouse", "tablet" };

/* Item structs */

static void
forward_free (gpointer data)
{
  DhfManifestForward *forward = data;

  g_free (forward->protocol);
  g_free (forward);
}

static void
service_free (gpointer data)
{
  DhfManifestService *service = data;

  g_free (service->name);
  g_free (service->description);
  g_free (service);
}

static void
device_free (gpointer data)
{
  DhfManifestDevice *device = data;

  g_free (device->input_type);
  g_free (device->usb_serial);
  g_free (device->pci_address);
  g_free (device);
}

G_DEFINE_AUTOPTR_CLEANUP_FUNC (DhfManifestForward, forward_free)
G_DEFINE_AUTOPTR_CLEANUP_FUNC (DhfManifestService, service_free)
G_DEFINE_AUTOPTR_CLEANUP_FUNC (DhfManifestDevice, device_free)

/* Refcounting */

static DhfManifest *
manifest_new (void)
{
  DhfManifest *self = g_atomic_rc_box_new0 (DhfManifest);

  self->forwards = g_ptr_array_new_with_free_func (forward_free);
  self->services = g_ptr_array_new_with_free_func (service_free);
  self->devices = g_ptr_array_new_with_free_func (device_free);
  self->tags = g_new0 (gchar *, 1);
  return self;
}

static void
manifest_clear (gpointer data)
{
  DhfManifest *self = data;

  g_free (self->name);
  g_free (self->vendor);
  g_free (self->version);
  g_free (self->description);
  g_free (self->disk_image);
  g_free (self->boot_kernel);
  g_free (self->boot_initrd);
  g_free (self->boot_cmdline);
  g_ptr_array_unref (self->forwards);
  g_strfreev (self->tags);
  g_ptr_array_unref (self->services);
  g_ptr_array_unref (self->devices);
}

/**
 * dhf_manifest_ref:
 * @self: a #DhfManifest
 *
 * Returns: (transfer full): @self, with one more reference
 */
DhfManifest *
dhf_manifest_ref (DhfManifest *self)
{
  g_return_val_if_fail (self != NULL, NULL);
  return g_atomic_rc_box_acquire (self);
}

/**
 * dhf_manifest_unref:
 * @self: (transfer full): a #DhfManifest
 *
 * Drops one reference; the last one frees the manifest.
 */
void
dhf_manifest_unref (DhfManifest *self)
{
  g_return_if_fail (self != NULL);
  g_atomic_rc_box_release_full (self, manifest_clear);
}

/* Problem collection */

typedef struct
{
  GPtrArray *lines; /* "$.path: message", the first MAX_PROBLEMS_SHOWN */
  guint count;
  const gchar *base_dir;
  /* Facts the object walkers learn for checks that span several keys. */
  gboolean display_given;
  gboolean disk_format_given;
  gboolean network_mode_valid;
} Validator;

static void report (Validator *v, const gchar *path, const gchar *format, ...) G_GNUC_PRINTF (3, 4);

static void
report (Validator *v, const gchar *path, const gchar *format, ...)
{
  g_autofree gchar *message = NULL;
  va_list args;

  v->count++;
  /* Hostile input can produce a problem per few bytes; keep what we show. */
  if (v->lines->len >= MAX_PROBLEMS_SHOWN)
    return;
  va_start (args, format);
  message = g_strdup_vprintf (format, args);
  va_end (args);
  g_ptr_array_add (v->lines, g_strdup_printf ("%s: %s", path, message));
}

static void
set_problems_error (const Validator *v, GError **error)
{
  g_autoptr (GString) message = g_string_new (NULL);

  g_string_append_printf (message, "invalid manifest (%u %s):", v->count,
                          v->count == 1 ? "problem" : "problems");
  for (guint i = 0; i < v->lines->len; i++)
    g_string_append_printf (message, "\n%s", (const gchar *) g_ptr_array_index (v->lines, i));
  if (v->count > v->lines->len)
    g_string_append_printf (message, "\n... and %u more", v->count - v->lines->len);
  g_set_error_literal (error, DHF_ERROR, DHF_ERROR_INVALID_MANIFEST, message->str);
}

/* A JSON string literal of @text, shortened: problem lines stay one line
 * and bounded whatever the input holds. */
static gchar *
quote (const gchar *text)
{
  g_autoptr (json_object) string = NULL;
  g_autofree gchar *shortened = NULL;

  if (g_utf8_strlen (text, -1) > QUOTE_MAX_CHARS)
    {
      g_autofree gchar *head = g_utf8_substring (text, 0, QUOTE_MAX_CHARS);
      shortened = g_strconcat (head, "...", NULL);
      text = shortened;
    }
  string = json_object_new_string (text);
  return g_strdup (json_object_to_json_string_ext (string, JSON_C_TO_STRING_PLAIN
                                                               | JSON_C_TO_STRING_NOSLASHESCAPE));
}

static gboolean
is_path_identifier (const gchar *key)
{
  if (!g_ascii_isalpha (key[0]) && key[0] != '_')
    return FALSE;
  for (const gchar *p = key + 1; *p != '\0'; p++)
    {
      if (!g_ascii_isalnum (*p) && *p != '_' && *p != '-')
        return FALSE;
    }
  return TRUE;
}

static gchar *
path_key (const gchar *parent, const gchar *key)
{
  g_autofree gchar *quoted = NULL;

  if (is_path_identifier (key))
    return g_strdup_printf ("%s.%s", parent, key);
  quoted = quote (key);
  return g_strdup_printf ("%s[%s]", parent, quoted);
}

static gchar *
path_index (const gchar *parent, gsize index)
{
  return g_strdup_printf ("%s[%" G_GSIZE_FORMAT "]", parent, index);
}

static void
position_of (const gchar *text, gsize offset, guint *line, guint *column)
{
  const gchar *line_start = text;

  *line = 1;
  for (const gchar *p = text; p < text + offset; p++)
    {
      if (*p == '\n')
        {
          (*line)++;
          line_start = p + 1;
        }
    }
  *column = (guint) g_utf8_strlen (line_start, text + offset - line_start) + 1;
}

/* A "$: " problem about the text itself: "PROBLEM at line L, column C[:
 * DETAIL]", 1-based, the column counted in characters. */
static void
report_at (Validator *v, const gchar *text, gsize offset, const gchar *problem, const gchar *detail)
{
  guint line, column;

  position_of (text, offset, &line, &column);
  report (v, "$", "%s at line %u, column %u%s%s", problem, line, column, detail ? ": " : "",
          detail ? detail : "");
}

/* Text checks */

/* Whether every character may appear in libvirt's XML (XML 1.0 Char) and
 * is not a control character: manifest strings end up in domain XML. */
static gboolean
text_is_clean (const gchar *text, gboolean allow_newlines)
{
  for (const gchar *p = text; *p != '\0'; p = g_utf8_next_char (p))
    {
      gunichar c = g_utf8_get_char (p);

      if (allow_newlines && (c == '\n' || c == '\t'))
        continue;
      if (g_unichar_iscntrl (c) || c == 0xFFFE || c == 0xFFFF)
        return FALSE;
    }
  return TRUE;
}

static gboolean
name_is_valid (const gchar *name)
{
  gsize length = strlen (name);

  if (length == 0 || length > NAME_MAX_CHARS || !g_ascii_islower (name[0])
      || name[length - 1] == '-')
    return FALSE;
  for (gsize i = 0; i < length; i++)
    {
      gchar c = name[i];

      if (c == '-' && name[i - 1] == '-')
        return FALSE;
      if (!g_ascii_islower (c) && !g_ascii_isdigit (c) && c != '-')
        return FALSE;
    }
  return TRUE;
}

static gboolean
tag_is_valid (const gchar *tag)
{
  gsize length = strlen (tag);

  if (length == 0 || length > TAG_MAX_CHARS)
    return FALSE;
  if (!g_ascii_islower (tag[0]) && !g_ascii_isdigit (tag[0]))
    return FALSE;
  for (const gchar *p = tag; *p != '\0'; p++)
    {
      if (!g_ascii_islower (*p) && !g_ascii_isdigit (*p) && *p != '_' && *p != '-')
        return FALSE;
    }
  return TRUE;
}

static gboolean
service_name_is_valid (const gchar *name)
{
  g_auto (GStrv) elements = NULL;

  if (strlen (name) > SERVICE_NAME_MAX_CHARS)
    return FALSE;
  elements = g_strsplit (name, ".", -1);
  if (g_strv_length (elements) < 2)
    return FALSE;
  for (guint i = 0; elements[i] != NULL; i++)
    {
      const gchar *element = elements[i];

      if (!g_ascii_isalpha (element[0]) && element[0] != '_')
        return FALSE;
      for (const gchar *p = element; *p != '\0'; p++)
        {
          if (!g_ascii_isalnum (*p) && *p != '_' && *p != '-')
            return FALSE;
        }
    }
  return TRUE;
}

static gboolean
parse_hex (const gchar *text, gsize digits, guint *value)
{
  guint result = 0;

  for (gsize i = 0; i < digits; i++)
    {
      if (!g_ascii_isxdigit (text[i]))
        return FALSE;
      result = result * 16 + (guint) g_ascii_xdigit_value (text[i]);
    }
  *value = result;
  return TRUE;
}

/* "DDDD:BB:SS.F" with a real slot (0..1f) and function (0..7). */
static gchar *
pci_address_normalize (const gchar *text)
{
  guint domain, bus, slot, function;

  if (strlen (text) != 12 || text[4] != ':' || text[7] != ':' || text[10] != '.')
    return NULL;
  if (!parse_hex (text, 4, &domain) || !parse_hex (text + 5, 2, &bus)
      || !parse_hex (text + 8, 2, &slot) || !parse_hex (text + 11, 1, &function))
    return NULL;
  if (slot > 0x1f || function > 7)
    return NULL;
  return g_strdup_printf ("%04x:%02x:%02x.%x", domain, bus, slot, function);
}

/* Versions */

typedef struct
{
  guint64 parts[VERSION_MAX_PARTS]; /* missing parts are 0 */
  const gchar *suffix;              /* after '-', or NULL */
} Version;

static gboolean
version_parse (const gchar *text, Version *version)
{
  const gchar *p = text;
  guint n_parts = 0;

  memset (version, 0, sizeof *version);
  if (strlen (text) > VERSION_MAX_LEN)
    return FALSE;
  for (;;)
    {
      const gchar *start = p;
      guint64 part = 0;

      if (n_parts == VERSION_MAX_PARTS)
        return FALSE;
      while (g_ascii_isdigit (*p))
        {
          part = part * 10 + (guint64) (*p - '0');
          p++;
          if (p - start > 6)
            return FALSE;
        }
      if (p == start || (*start == '0' && p - start > 1) || part > VERSION_PART_MAX)
        return FALSE;
      version->parts[n_parts++] = part;
      if (*p != '.')
        break;
      p++;
    }
  if (*p == '\0')
    return TRUE;
  if (*p != '-' || p[1] == '\0')
    return FALSE;
  version->suffix = p + 1;
  for (p = version->suffix; *p != '\0'; p++)
    {
      if (!g_ascii_isalnum (*p) && *p != '.')
        return FALSE;
    }
  return TRUE;
}

static gint
sign_of (gint value)
{
  return (value > 0) - (value < 0);
}

/* One dot-separated identifier of a pre-release suffix, semver style:
 * numeric ones compare as numbers and sort before alphanumeric ones. */
static gint
identifier_compare (const gchar *a, gsize a_len, const gchar *b, gsize b_len)
{
  gboolean a_numeric = a_len > 0, b_numeric = b_len > 0;
  gint result;

  for (gsize i = 0; i < a_len; i++)
    a_numeric = a_numeric && g_ascii_isdigit (a[i]);
  for (gsize i = 0; i < b_len; i++)
    b_numeric = b_numeric && g_ascii_isdigit (b[i]);
  if (a_numeric != b_numeric)
    return a_numeric ? -1 : 1;
  if (a_numeric)
    {
      /* No overflow on long digit strings: compare without leading zeros. */
      while (a_len > 1 && *a == '0')
        a++, a_len--;
      while (b_len > 1 && *b == '0')
        b++, b_len--;
      if (a_len != b_len)
        return a_len < b_len ? -1 : 1;
    }
  result = strncmp (a, b, MIN (a_len, b_len));
  if (result != 0)
    return sign_of (result);
  return a_len == b_len ? 0 : (a_len < b_len ? -1 : 1);
}

static gint
suffix_compare (const gchar *a, const gchar *b)
{
  for (;;)
    {
      gsize a_len = strcspn (a, "."), b_len = strcspn (b, ".");
      gint result = identifier_compare (a, a_len, b, b_len);

      if (result != 0)
        return result;
      a += a_len;
      b += b_len;
      if (*a == '\0' || *b == '\0')
        return (*a != '\0') - (*b != '\0');
      a++;
      b++;
    }
}

/**
 * dhf_version_compare:
 * @a: a manifest version such as "1.2.3" or "2.0-rc1"
 * @b: another one
 *
 * Orders versions part by part numerically (missing parts count as 0, so
 * "1.0" equals "1"); a pre-release ("1.0-rc1") sorts before its release.
 * Strings that are not valid versions sort before all valid ones and
 * among themselves by strcmp(), which keeps the order total.
 *
 * Returns: -1, 0 or 1 as @a is older than, equal to or newer than @b
 */
gint
dhf_version_compare (const gchar *a, const gchar *b)
{
  Version va, vb;
  gboolean a_valid = a != NULL && version_parse (a, &va);
  gboolean b_valid = b != NULL && version_parse (b, &vb);

  if (!a_valid || !b_valid)
    {
      if (a_valid != b_valid)
        return a_valid ? 1 : -1;
      return sign_of (g_strcmp0 (a, b));
    }
  for (guint i = 0; i < VERSION_MAX_PARTS; i++)
    {
      if (va.parts[i] != vb.parts[i])
        return va.parts[i] < vb.parts[i] ? -1 : 1;
    }
  if (va.suffix == NULL || vb.suffix == NULL)
    return (va.suffix == NULL) - (vb.suffix == NULL);
  return suffix_compare (va.suffix, vb.suffix);
}

/* Sizes */

static const struct
{
  const gchar *unit;
  guint shift;
} size_units[] = {
  { "B", 0 },  { "KiB", 10 }, { "MiB", 20 }, { "GiB", 30 }, { "TiB", 40 },
  { "K", 10 }, { "M", 20 },   { "G", 30 },   { "T", 40 },
};

/**
 * dhf_size_parse:
 * @text: a size such as "512MiB", "2G" or "1048576KiB"
 * @bytes: (out): the size in bytes
 *
 * Parses an integer followed by one of the units B, KiB, MiB, GiB, TiB or
 * their binary shorthands K, M, G, T. The unit is required. No range check
 * beyond refusing values that do not fit 64 bits.
 *
 * Returns: %TRUE if @text is a size
 */
gboolean
dhf_size_parse (const gchar *text, guint64 *bytes)
{
  guint64 value = 0;
  const gchar *p;

  g_return_val_if_fail (bytes != NULL, FALSE);

  if (text == NULL || !g_ascii_isdigit (*text))
    return FALSE;
  for (p = text; g_ascii_isdigit (*p); p++)
    {
      guint digit = (guint) (*p - '0');

      if (value > (G_MAXUINT64 - digit) / 10)
        return FALSE;
      value = value * 10 + digit;
    }
  for (gsize i = 0; i < G_N_ELEMENTS (size_units); i++)
    {
      if (!g_str_equal (p, size_units[i].unit))
        continue;
      if (value > (G_MAXUINT64 >> size_units[i].shift))
        return FALSE;
      *bytes = value << size_units[i].shift;
      return TRUE;
    }
  return FALSE;
}

/* The largest unit that states @bytes exactly: "1GiB", "1536MiB". */
static gchar *
size_to_string (guint64 bytes)
{
  for (gsize i = 4; i > 0; i--)
    {
      guint shift = size_units[i].shift;

      if (bytes != 0 && bytes % (G_GUINT64_CONSTANT (1) << shift) == 0)
        return g_strdup_printf ("%" G_GUINT64_FORMAT "%s", bytes >> shift, size_units[i].unit);
    }
  return g_strdup_printf ("%" G_GUINT64_FORMAT "B", bytes);
}

/* Typed access to JSON values, each reporting what it expected */

static const gchar *
expect_string (Validator *v, const gchar *path, json_object *value, const gchar *expected)
{
  const gchar *string;

  if (!json_object_is_type (value, json_type_string))
    {
      report (v, path, "expected %s", expected);
      return NULL;
    }
  string = json_object_get_string (value);
  /* "\u0000" survives JSON decoding; C code would silently cut there. */
  if (strlen (string) != (gsize) json_object_get_string_len (value))
    {
      report (v, path, "must not contain NUL characters");
      return NULL;
    }
  return string;
}

static gboolean
expect_int (Validator *v, const gchar *path, json_object *value, gint64 min, gint64 max,
            gint64 *result)
{
  gint64 number;

  if (!json_object_is_type (value, json_type_int))
    {
      report (v, path, "expected an integer from %" G_GINT64_FORMAT " to %" G_GINT64_FORMAT, min,
              max);
      return FALSE;
    }
  number = json_object_get_int64 (value);
  if (number < min || number > max)
    {
      report (v, path, "expected an integer from %" G_GINT64_FORMAT " to %" G_GINT64_FORMAT, min,
              max);
      return FALSE;
    }
  *result = number;
  return TRUE;
}

/* Validates the array and returns its length, or -1 (problem reported). */
static gssize
expect_array (Validator *v, const gchar *path, json_object *value, gsize max, const gchar *what)
{
  gsize length;

  if (!json_object_is_type (value, json_type_array))
    {
      report (v, path, "expected an array");
      return -1;
    }
  length = json_object_array_length (value);
  if (length > max)
    {
      report (v, path, "at most %" G_GSIZE_FORMAT " %s allowed, found %" G_GSIZE_FORMAT, max, what,
              length);
      return -1;
    }
  return (gssize) length;
}

/* Looks @value up in @names; on failure reports `unknown WHAT "x" (expected ...)`. */
static gboolean
expect_choice (Validator *v, const gchar *path, json_object *value, const gchar *what,
               const gchar *const *names, gsize n_names, guint *choice)
{
  g_autoptr (GString) expected = g_string_new (NULL);
  g_autofree gchar *quoted = NULL;
  const gchar *string;

  for (gsize i = 0; i < n_names; i++)
    {
      if (i > 0)
        g_string_append (expected, i + 1 == n_names ? " or " : ", ");
      g_string_append_printf (expected, "\"%s\"", names[i]);
    }
  string = expect_string (v, path, value, expected->str);
  if (string == NULL)
    return FALSE;
  for (gsize i = 0; i < n_names; i++)
    {
      if (g_str_equal (string, names[i]))
        {
          *choice = (guint) i;
          return TRUE;
        }
    }
  quoted = quote (string);
  report (v, path, "unknown %s %s (expected %s)", what, quoted, expected->str);
  return FALSE;
}

/* Objects: a table of keys, each with the function that reads its value */

typedef void (*KeyParser) (Validator *v, const gchar *path, json_object *value, gpointer target);

typedef struct
{
  const gchar *name;
  gboolean required;
  KeyParser parse; /* NULL: read elsewhere */
} KeySpec;

static gboolean
key_is_known (const gchar *key, const KeySpec *specs, gsize n_specs)
{
  for (gsize i = 0; i < n_specs; i++)
    {
      if (g_str_equal (key, specs[i].name))
        return TRUE;
    }
  return FALSE;
}

/* Reports unknown and missing keys, then reads the known ones in table
 * order (so that problems come out in a stable order). */
static void
parse_object (Validator *v, const gchar *path, json_object *object, const KeySpec *specs,
              gsize n_specs, gpointer target)
{
  struct json_object_iterator it = json_object_iter_begin (object);
  struct json_object_iterator end = json_object_iter_end (object);

  for (; !json_object_iter_equal (&it, &end); json_object_iter_next (&it))
    {
      const gchar *key = json_object_iter_peek_name (&it);

      if (!key_is_known (key, specs, n_specs))
        {
          g_autofree gchar *key_path = path_key (path, key);
          report (v, key_path, "unknown key");
        }
    }
  for (gsize i = 0; i < n_specs; i++)
    {
      json_object *value;

      if (!json_object_object_get_ex (object, specs[i].name, &value))
        {
          if (specs[i].required)
            report (v, path, "missing required key \"%s\"", specs[i].name);
          continue;
        }
      if (specs[i].parse != NULL)
        {
          g_autofree gchar *key_path = path_key (path, specs[i].name);
          specs[i].parse (v, key_path, value, target);
        }
    }
}

static json_object *
expect_object (Validator *v, const gchar *path, json_object *value)
{
  if (!json_object_is_type (value, json_type_object))
    {
      report (v, path, "expected an object");
      return NULL;
    }
  return value;
}

/* Top-level keys */

static void
parse_manifest_version (Validator *v, const gchar *path, json_object *value, gpointer target)
{
  /* Other integers were refused before anything else was read. */
  if (!json_object_is_type (value, json_type_int))
    report (v, path, "expected the integer %d", MANIFEST_VERSION);
}

static void
parse_name (Validator *v, const gchar *path, json_object *value, gpointer target)
{
  DhfManifest *self = target;
  const gchar *name = expect_string (v, path, value, "a string");

  if (name == NULL)
    return;
  if (strlen (name) > NAME_MAX_CHARS)
    {
      report (v, path, "must be at most %d characters", NAME_MAX_CHARS);
      return;
    }
  if (!name_is_valid (name))
    {
      g_autofree gchar *quoted = quote (name);
      report (v, path,
              "invalid name %s (expected lower-case letters, digits and single '-', "
              "starting with a letter and not ending with '-')",
              quoted);
      return;
    }
  self->name = g_strdup (name);
}

static void
parse_vendor (Validator *v, const gchar *path, json_object *value, gpointer target)
{
  DhfManifest *self = target;
  const gchar *vendor = expect_string (v, path, value, "a string");
  glong length;

  if (vendor == NULL)
    return;
  length = g_utf8_strlen (vendor, -1);
  if (length == 0 || length > VENDOR_MAX_CHARS)
    {
      report (v, path, "must be 1 to %d characters", VENDOR_MAX_CHARS);
      return;
    }
  for (const gchar *p = vendor; *p != '\0'; p = g_utf8_next_char (p))
    {
      if (!g_unichar_isprint (g_utf8_get_char (p)))
        {
          report (v, path, "must contain only printable characters");
          return;
        }
    }
  if (g_unichar_isspace (g_utf8_get_char (vendor))
      || g_unichar_isspace (g_utf8_get_char (g_utf8_prev_char (vendor + strlen (vendor)))))
    {
      report (v, path, "must not start or end with white space");
      return;
    }
  self->vendor = g_strdup (vendor);
}

static void
parse_version (Validator *v, const gchar *path, json_object *value, gpointer target)
{
  DhfManifest *self = target;
  const gchar *version = expect_string (v, path, value, "a version like \"1.2.3\"");
  Version parsed;

  if (version == NULL)
    return;
  if (!version_parse (version, &parsed))
    {
      g_autofree gchar *quoted = quote (version);
      report (v, path,
              "invalid version %s (expected 1 to 4 dot-separated numbers without leading zeros, "
              "optionally followed by \"-suffix\")",
              quoted);
      return;
    }
  self->version = g_strdup (version);
}

/* Free text that may span lines: descriptions. */
static gchar *
expect_text (Validator *v, const gchar *path, json_object *value)
{
  const gchar *text = expect_string (v, path, value, "a string");

  if (text == NULL)
    return NULL;
  if (g_utf8_strlen (text, -1) > DESCRIPTION_MAX_CHARS)
    {
      report (v, path, "must be at most %d characters", DESCRIPTION_MAX_CHARS);
      return NULL;
    }
  if (!text_is_clean (text, TRUE))
    {
      report (v, path, "must not contain control characters other than newline and tab");
      return NULL;
    }
  return g_strdup (text);
}

static void
parse_description (Validator *v, const gchar *path, json_object *value, gpointer target)
{
  DhfManifest *self = target;

  self->description = expect_text (v, path, value);
}

static void
parse_role (Validator *v, const gchar *path, json_object *value, gpointer target)
{
  DhfManifest *self = target;
  guint choice;

  if (expect_choice (v, path, value, "role", role_names, G_N_ELEMENTS (role_names), &choice))
    self->role = (DhfApplianceRole) choice;
}

static void
parse_memory (Validator *v, const gchar *path, json_object *value, gpointer target)
{
  DhfManifest *self = target;
  const gchar *text = expect_string (v, path, value, "a size like \"512MiB\"");
  guint64 bytes;

  if (text == NULL)
    return;
  if (!dhf_size_parse (text, &bytes))
    {
      report (v, path, "expected a size like \"512MiB\"");
      return;
    }
  if (bytes < MEMORY_MIN || bytes > MEMORY_MAX)
    {
      report (v, path, "must be between 64MiB and 1TiB");
      return;
    }
  /* libvirt counts memory in KiB. */
  if (bytes % 1024 != 0)
    {
      report (v, path, "must be a whole number of KiB");
      return;
    }
  self->memory = bytes;
}

static void
parse_vcpus (Validator *v, const gchar *path, json_object *value, gpointer target)
{
  DhfManifest *self = target;
  gint64 vcpus;

  if (expect_int (v, path, value, 1, VCPUS_MAX, &vcpus))
    self->vcpus = (guint) vcpus;
}

static void
parse_autostart (Validator *v, const gchar *path, json_object *value, gpointer target)
{
  DhfManifest *self = target;

  if (!json_object_is_type (value, json_type_boolean))
    {
      report (v, path, "expected true or false");
      return;
    }
  self->autostart = json_object_get_boolean (value);
}

static DhfDiskFormat
disk_format_from_extension (const gchar *path)
{
  g_autofree gchar *lower = g_ascii_strdown (path, -1);

  if (g_str_has_suffix (lower, ".raw") || g_str_has_suffix (lower, ".img"))
    return DHF_DISK_FORMAT_RAW;
  return DHF_DISK_FORMAT_QCOW2;
}

/* A file the manifest names (disk image, kernel, initrd): resolved against
 * the installer's directory and made canonical. NULL: problem reported. */
static gchar *
expect_path (Validator *v, const gchar *path, json_object *value)
{
  const gchar *file = expect_string (v, path, value, "a file name");
  g_autofree gchar *resolved = NULL;

  if (file == NULL)
    return NULL;
  if (*file == '\0')
    {
      report (v, path, "must not be empty");
      return NULL;
    }
  if (!text_is_clean (file, FALSE))
    {
      report (v, path, "must not contain newlines or control characters");
      return NULL;
    }
  if (!g_path_is_absolute (file) && v->base_dir == NULL)
    {
      report (v, path, "relative path needs a base directory");
      return NULL;
    }
  resolved = g_canonicalize_filename (file, v->base_dir);
  if (strlen (resolved) > IMAGE_PATH_MAX_BYTES)
    {
      report (v, path, "resolved path is longer than %d bytes", IMAGE_PATH_MAX_BYTES);
      return NULL;
    }
  /* The base directory comes from the caller; check what we will store. */
  if (!text_is_clean (resolved, FALSE) || !g_utf8_validate (resolved, -1, NULL))
    {
      report (v, path, "resolved path contains control characters or is not UTF-8");
      return NULL;
    }
  return g_steal_pointer (&resolved);
}

static void
parse_disk_image (Validator *v, const gchar *path, json_object *value, gpointer target)
{
  DhfManifest *self = target;

  self->disk_image = expect_path (v, path, value);
}

static void
parse_disk_format (Validator *v, const gchar *path, json_object *value, gpointer target)
{
  DhfManifest *self = target;
  guint choice;

  if (expect_choice (v, path, value, "format", disk_format_names, G_N_ELEMENTS (disk_format_names),
                     &choice))
    {
      self->disk_format = (DhfDiskFormat) choice;
      v->disk_format_given = TRUE;
    }
}

static const KeySpec disk_keys[] = {
  { "image", TRUE, parse_disk_image },
  { "format", FALSE, parse_disk_format },
};

static void
parse_disk (Validator *v, const gchar *path, json_object *value, gpointer target)
{
  DhfManifest *self = target;

  if (json_object_is_type (value, json_type_string))
    parse_disk_image (v, path, value, target);
  else if (json_object_is_type (value, json_type_object))
    parse_object (v, path, value, disk_keys, G_N_ELEMENTS (disk_keys), target);
  else
    report (v, path, "expected a file name or an object");

  if (self->disk_image != NULL && !v->disk_format_given)
    self->disk_format = disk_format_from_extension (self->disk_image);
}

static void
parse_boot_kernel (Validator *v, const gchar *path, json_object *value, gpointer target)
{
  DhfManifest *self = target;

  self->boot_kernel = expect_path (v, path, value);
}

static void
parse_boot_initrd (Validator *v, const gchar *path, json_object *value, gpointer target)
{
  DhfManifest *self = target;

  self->boot_initrd = expect_path (v, path, value);
}

static void
parse_boot_cmdline (Validator *v, const gchar *path, json_object *value, gpointer target)
{
  DhfManifest *self = target;
  const gchar *cmdline = expect_string (v, path, value, "a string");

  if (cmdline == NULL)
    return;
  if (strlen (cmdline) > CMDLINE_MAX_BYTES)
    {
      report (v, path, "must be at most %d bytes", CMDLINE_MAX_BYTES);
      return;
    }
  if (!text_is_clean (cmdline, FALSE))
    {
      report (v, path, "must not contain newlines or control characters");
      return;
    }
  self->boot_cmdline = g_strdup (cmdline);
}

static const KeySpec boot_keys[] = {
  { "kernel", TRUE, parse_boot_kernel },
  { "initrd", FALSE, parse_boot_initrd },
  { "cmdline", FALSE, parse_boot_cmdline },
};

static void
parse_boot (Validator *v, const gchar *path, json_object *value, gpointer target)
{
  if (expect_object (v, path, value) == NULL)
    return;
  parse_object (v, path, value, boot_keys, G_N_ELEMENTS (boot_keys), target);
}

static void
parse_forward_protocol (Validator *v, const gchar *path, json_object *value, gpointer target)
{
  DhfManifestForward *forward = target;
  guint choice;

  if (expect_choice (v, path, value, "protocol", protocol_names, G_N_ELEMENTS (protocol_names),
                     &choice))
    forward->protocol = g_strdup (protocol_names[choice]);
}

static void
parse_forward_host (Validator *v, const gchar *path, json_object *value, gpointer target)
{
  DhfManifestForward *forward = target;
  gint64 port;

  if (expect_int (v, path, value, 1, G_MAXUINT16, &port))
    forward->host_port = (guint16) port;
}

static void
parse_forward_guest (Validator *v, const gchar *path, json_object *value, gpointer target)
{
  DhfManifestForward *forward = target;
  gint64 port;

  if (expect_int (v, path, value, 1, G_MAXUINT16, &port))
    forward->guest_port = (guint16) port;
}

static const KeySpec forward_keys[] = {
  { "protocol", TRUE, parse_forward_protocol },
  { "host", TRUE, parse_forward_host },
  { "guest", TRUE, parse_forward_guest },
};

static void
parse_forwards (Validator *v, const gchar *path, json_object *value, gpointer target)
{
  DhfManifest *self = target;
  g_autoptr (GHashTable) seen = g_hash_table_new_full (g_str_hash, g_str_equal, g_free, NULL);
  gssize length = expect_array (v, path, value, FORWARDS_MAX, "forwards");

  for (gssize i = 0; i < length; i++)
    {
      g_autofree gchar *item_path = path_index (path, (gsize) i);
      json_object *item = expect_object (v, item_path, json_object_array_get_idx (value, i));
      g_autoptr (DhfManifestForward) forward = NULL;
      g_autofree gchar *key = NULL;
      guint problems = v->count;

      if (item == NULL)
        continue;
      forward = g_new0 (DhfManifestForward, 1);
      parse_object (v, item_path, item, forward_keys, G_N_ELEMENTS (forward_keys), forward);
      if (v->count != problems)
        continue;
      key = g_strdup_printf ("%s/%u", forward->protocol, forward->host_port);
      if (g_hash_table_contains (seen, key))
        {
          report (v, item_path, "duplicate forward of %s host port %u", forward->protocol,
                  forward->host_port);
          continue;
        }
      g_hash_table_add (seen, g_steal_pointer (&key));
      g_ptr_array_add (self->forwards, g_steal_pointer (&forward));
    }
}

static void
parse_network_mode (Validator *v, const gchar *path, json_object *value, gpointer target)
{
  DhfManifest *self = target;
  guint choice;

  if (expect_choice (v, path, value, "mode", network_mode_names, G_N_ELEMENTS (network_mode_names),
                     &choice))
    {
      self->network_mode = (DhfNetworkMode) choice;
      v->network_mode_valid = TRUE;
    }
}

static const KeySpec network_keys[] = {
  { "mode", TRUE, parse_network_mode },
  { "forwards", FALSE, parse_forwards },
};

static void
parse_network (Validator *v, const gchar *path, json_object *value, gpointer target)
{
  DhfManifest *self = target;

  if (expect_object (v, path, value) == NULL)
    return;
  parse_object (v, path, value, network_keys, G_N_ELEMENTS (network_keys), target);
  if (v->network_mode_valid && self->network_mode != DHF_NETWORK_MODE_NAT
      && self->forwards->len > 0)
    {
      g_autofree gchar *forwards_path = path_key (path, "forwards");
      report (v, forwards_path, "port forwards need mode \"nat\"");
    }
}

static void
parse_display (Validator *v, const gchar *path, json_object *value, gpointer target)
{
  DhfManifest *self = target;
  guint choice;

  if (expect_choice (v, path, value, "display", display_names, G_N_ELEMENTS (display_names),
                     &choice))
    {
      self->display = (DhfDisplayType) choice;
      v->display_given = TRUE;
    }
}

static void
parse_tags (Validator *v, const gchar *path, json_object *value, gpointer target)
{
  DhfManifest *self = target;
  g_autoptr (GHashTable) seen = g_hash_table_new (g_str_hash, g_str_equal);
  g_autoptr (GStrvBuilder) tags = g_strv_builder_new ();
  gssize length = expect_array (v, path, value, TAGS_MAX, "tags");

  for (gssize i = 0; i < length; i++)
    {
      g_autofree gchar *item_path = path_index (path, (gsize) i);
      const gchar *tag
          = expect_string (v, item_path, json_object_array_get_idx (value, i), "a string");
      g_autofree gchar *quoted = NULL;

      if (tag == NULL)
        continue;
      quoted = quote (tag);
      if (!tag_is_valid (tag))
        report (v, item_path,
                "invalid tag %s (expected 1 to 32 of a-z, 0-9, '_' and '-', "
                "starting with a letter or digit)",
                quoted);
      else if (g_hash_table_contains (seen, tag))
        report (v, item_path, "duplicate tag %s", quoted);
      else
        {
          g_hash_table_add (seen, (gpointer) tag);
          g_strv_builder_add (tags, tag);
        }
    }
  g_strfreev (self->tags);
  self->tags = g_strv_builder_end (tags);
}

static void
parse_service_name (Validator *v, const gchar *path, json_object *value, gpointer target)
{
  DhfManifestService *service = target;
  const gchar *name = expect_string (v, path, value, "a string");

  if (name == NULL)
    return;
  if (!service_name_is_valid (name))
    {
      g_autofree gchar *quoted = quote (name);
      report (v, path,
              "invalid service name %s (expected a reverse-DNS name like \"org.example.Sync1\")",
              quoted);
      return;
    }
  service->name = g_strdup (name);
}

static void
parse_service_description (Validator *v, const gchar *path, json_object *value, gpointer target)
{
  DhfManifestService *service = target;

  service->description = expect_text (v, path, value);
}

static const KeySpec service_keys[] = {
  { "name", TRUE, parse_service_name },
  { "description", FALSE, parse_service_description },
};

static void
parse_services (Validator *v, const gchar *path, json_object *value, gpointer target)
{
  DhfManifest *self = target;
  g_autoptr (GHashTable) seen = g_hash_table_new (g_str_hash, g_str_equal);
  gssize length = expect_array (v, path, value, SERVICES_MAX, "services");

  for (gssize i = 0; i < length; i++)
    {
      g_autofree gchar *item_path = path_index (path, (gsize) i);
      json_object *item = expect_object (v, item_path, json_object_array_get_idx (value, i));
      g_autoptr (DhfManifestService) service = NULL;

      if (item == NULL)
        continue;
      service = g_new0 (DhfManifestService, 1);
      parse_object (v, item_path, item, service_keys, G_N_ELEMENTS (service_keys), service);
      if (service->name == NULL)
        continue;
      if (g_hash_table_contains (seen, service->name))
        {
          g_autofree gchar *name_path = path_key (item_path, "name");
          g_autofree gchar *quoted = quote (service->name);
          report (v, name_path, "duplicate service %s", quoted);
          continue;
        }
      g_hash_table_add (seen, service->name);
      g_ptr_array_add (self->services, g_steal_pointer (&service));
    }
}

static void
parse_device_mode (Validator *v, const gchar *path, json_object *value, gpointer target)
{
  DhfManifestDevice *device = target;
  guint choice;

  if (expect_choice (v, path, value, "mode", device_mode_names, G_N_ELEMENTS (device_mode_names),
                     &choice))
    device->mode = (DhfDeviceMode) choice;
}

static gboolean
expect_usb_id (Validator *v, const gchar *path, json_object *value, guint16 *id)
{
  const gchar *text = expect_string (v, path, value, "4 hex digits");
  guint parsed;

  if (text == NULL)
    return FALSE;
  if (strlen (text) != 4 || !parse_hex (text, 4, &parsed))
    {
      report (v, path, "expected 4 hex digits");
      return FALSE;
    }
  *id = (guint16) parsed;
  return TRUE;
}

static void
parse_usb_vendor (Validator *v, const gchar *path, json_object *value, gpointer target)
{
  DhfManifestDevice *device = target;

  expect_usb_id (v, path, value, &device->usb_vendor);
}

static void
parse_usb_product (Validator *v, const gchar *path, json_object *value, gpointer target)
{
  DhfManifestDevice *device = target;

  expect_usb_id (v, path, value, &device->usb_product);
}

static void
parse_usb_serial (Validator *v, const gchar *path, json_object *value, gpointer target)
{
  DhfManifestDevice *device = target;
  const gchar *serial = expect_string (v, path, value, "a string");
  glong length;

  if (serial == NULL)
    return;
  length = g_utf8_strlen (serial, -1);
  if (length == 0 || length > SERIAL_MAX_CHARS)
    {
      report (v, path, "must be 1 to %d characters", SERIAL_MAX_CHARS);
      return;
    }
  if (!text_is_clean (serial, FALSE))
    {
      report (v, path, "must not contain control characters");
      return;
    }
  device->usb_serial = g_strdup (serial);
}

static void
parse_pci_address (Validator *v, const gchar *path, json_object *value, gpointer target)
{
  DhfManifestDevice *device = target;
  const gchar *text = expect_string (v, path, value, "a PCI address like \"0000:01:00.0\"");

  if (text == NULL)
    return;
  device->pci_address = pci_address_normalize (text);
  if (device->pci_address == NULL)
    report (v, path, "expected a PCI address like \"0000:01:00.0\"");
}

static void
parse_input_type (Validator *v, const gchar *path, json_object *value, gpointer target)
{
  DhfManifestDevice *device = target;
  guint choice;

  if (expect_choice (v, path, value, "input type", input_names, G_N_ELEMENTS (input_names),
                     &choice))
    device->input_type = g_strdup (input_names[choice]);
}

static const KeySpec usb_device_keys[] = {
  { "type", TRUE, NULL },
  { "mode", FALSE, parse_device_mode },
  { "vendor", TRUE, parse_usb_vendor },
  { "product", TRUE, parse_usb_product },
  { "serial", FALSE, parse_usb_serial },
};

static const KeySpec pci_device_keys[] = {
  { "type", TRUE, NULL },
  { "mode", FALSE, parse_device_mode },
  { "address", TRUE, parse_pci_address },
};

static const KeySpec input_device_keys[] = {
  { "type", TRUE, NULL },
  { "mode", FALSE, parse_device_mode },
  { "input", TRUE, parse_input_type },
};

static DhfManifestDevice *
parse_device (Validator *v, const gchar *path, json_object *value)
{
  g_autoptr (DhfManifestDevice) device = NULL;
  g_autofree gchar *type_path = path_key (path, "type");
  json_object *type;
  guint kind;
  guint problems = v->count;

  if (expect_object (v, path, value) == NULL)
    return NULL;
  /* The type decides which keys are allowed; without it, say only that. */
  if (!json_object_object_get_ex (value, "type", &type))
    {
      report (v, path, "missing required key \"type\"");
      return NULL;
    }
  if (!expect_choice (v, type_path, type, "device type", device_kind_names,
                      G_N_ELEMENTS (device_kind_names), &kind))
    return NULL;

  device = g_new0 (DhfManifestDevice, 1);
  device->kind = (DhfDeviceKind) kind;
  switch (device->kind)
    {
      case DHF_DEVICE_KIND_USB:
        parse_object (v, path, value, usb_device_keys, G_N_ELEMENTS (usb_device_keys), device);
        break;
      case DHF_DEVICE_KIND_PCI:
        parse_object (v, path, value, pci_device_keys, G_N_ELEMENTS (pci_device_keys), device);
        break;
      case DHF_DEVICE_KIND_INPUT:
        parse_object (v, path, value, input_device_keys, G_N_ELEMENTS (input_device_keys), device);
        break;
    }
  /* Moving a PCI device needs a hot-unplug the guest may refuse. */
  if (device->kind == DHF_DEVICE_KIND_PCI && device->mode == DHF_DEVICE_MODE_FOLLOW_FOCUS)
    {
      g_autofree gchar *mode_path = path_key (path, "mode");
      report (v, mode_path, "follow-focus is not supported for pci devices");
    }
  if (v->count != problems)
    return NULL;
  return g_steal_pointer (&device);
}

static void
parse_devices (Validator *v, const gchar *path, json_object *value, gpointer target)
{
  DhfManifest *self = target;
  g_autoptr (GHashTable) pci_seen = g_hash_table_new (g_str_hash, g_str_equal);
  gssize length = expect_array (v, path, value, DEVICES_MAX, "devices");

  for (gssize i = 0; i < length; i++)
    {
      g_autofree gchar *item_path = path_index (path, (gsize) i);
      g_autoptr (DhfManifestDevice) device
          = parse_device (v, item_path, json_object_array_get_idx (value, i));

      if (device == NULL)
        continue;
      if (device->pci_address != NULL && g_hash_table_contains (pci_seen, device->pci_address))
        {
          g_autofree gchar *address_path = path_key (item_path, "address");
          report (v, address_path, "duplicate pci device %s", device->pci_address);
          continue;
        }
      if (device->pci_address != NULL)
        g_hash_table_add (pci_seen, device->pci_address);
      g_ptr_array_add (self->devices, g_steal_pointer (&device));
    }
}

static const KeySpec manifest_keys[] = {
  { "manifest-version", TRUE, parse_manifest_version },
  { "name", TRUE, parse_name },
  { "vendor", TRUE, parse_vendor },
  { "version", TRUE, parse_version },
  { "description", FALSE, parse_description },
  { "role", TRUE, parse_role },
  { "memory", TRUE, parse_memory },
  { "vcpus", TRUE, parse_vcpus },
  { "autostart", FALSE, parse_autostart },
  { "disk", FALSE, parse_disk },
  { "boot", FALSE, parse_boot },
  { "network", FALSE, parse_network },
  { "display", FALSE, parse_display },
  { "tags", FALSE, parse_tags },
  { "services", FALSE, parse_services },
  { "devices", FALSE, parse_devices },
};

static DhfManifest *
validate_manifest (Validator *v, json_object *root)
{
  g_autoptr (DhfManifest) self = manifest_new ();
  json_object *version;

  /* A newer format may have keys we do not know: one clear problem beats
   * a list of "unknown key" lines. */
  if (json_object_object_get_ex (root, "manifest-version", &version)
      && json_object_is_type (version, json_type_int)
      && json_object_get_int64 (version) != MANIFEST_VERSION)
    {
      report (v, "$.manifest-version", "unsupported manifest version %s (this dhfd reads %d)",
              json_object_to_json_string (version), MANIFEST_VERSION);
      return NULL;
    }

  parse_object (v, "$", root, manifest_keys, G_N_ELEMENTS (manifest_keys), self);
  if (!v->display_given)
    self->display
        = self->role == DHF_APPLIANCE_ROLE_ENVIRONMENT ? DHF_DISPLAY_VNC : DHF_DISPLAY_NONE;
  return g_steal_pointer (&self);
}

/* JSON text */

typedef struct
{
  gboolean is_object;
  GHashTable *keys; /* objects: the keys seen so far */
  gchar *key;       /* objects: the current key, NULL while expecting one */
  gsize index;      /* arrays: the current element */
} Frame;

static void
frame_clear (gpointer data)
{
  Frame *frame = data;

  g_clear_pointer (&frame->keys, g_hash_table_unref);
  g_clear_pointer (&frame->key, g_free);
}

static gchar *
frames_path (GArray *frames, guint depth)
{
  g_autofree gchar *path = g_strdup ("$");

  for (guint i = 0; i < depth; i++)
    {
      Frame *frame = &g_array_index (frames, Frame, i);
      gchar *child = frame->is_object ? path_key (path, frame->key ? frame->key : "")
                                      : path_index (path, frame->index);

      g_free (path);
      path = child;
    }
  return g_steal_pointer (&path);
}

/* The key of a string token at @start (its opening quote) to @end (its
 * closing quote), unescaped; NULL if it holds "\u0000". */
static gchar *
decode_key (const gchar *start, const gchar *end)
{
  g_autofree gchar *literal = NULL;
  g_autoptr (json_object) string = NULL;

  if (memchr (start, '\\', (gsize) (end - start)) == NULL)
    return g_strndup (start + 1, (gsize) (end - start - 1));
  literal = g_strndup (start, (gsize) (end - start + 1));
  string = json_tokener_parse (literal);
  if (!json_object_is_type (string, json_type_string)
      || strlen (json_object_get_string (string)) != (gsize) json_object_get_string_len (string))
    return NULL;
  return g_strdup (json_object_get_string (string));
}

/* json-c keeps the last of duplicate keys without a word, cuts keys at
 * "\u0000" and takes 'single-quoted' strings. Walk the text it accepted,
 * which is therefore well-formed, to report all three. */
static void
check_json_text (Validator *v, const gchar *text, gsize length)
{
  g_autoptr (GArray) frames = g_array_new (FALSE, TRUE, sizeof (Frame));

  g_array_set_clear_func (frames, frame_clear);
  for (gsize i = 0; i < length; i++)
    {
      Frame *top = frames->len > 0 ? &g_array_index (frames, Frame, frames->len - 1) : NULL;
      gsize start = i;
      Frame frame = { 0 };

      switch (text[i])
        {
          case '{':
            frame.is_object = TRUE;
            frame.keys = g_hash_table_new_full (g_str_hash, g_str_equal, g_free, NULL);
            g_array_append_val (frames, frame);
            break;
          case '[':
            g_array_append_val (frames, frame);
            break;
          case '}':
          case ']':
            if (frames->len > 0)
              g_array_set_size (frames, frames->len - 1);
            break;
          case ',':
            if (top != NULL && top->is_object)
              g_clear_pointer (&top->key, g_free);
            else if (top != NULL)
              top->index++;
            break;
          case '\'':
            report_at (v, text, i, "invalid JSON", "single-quoted strings are not JSON");
            return;
          case '"':
            /* Bounded anyway: this must never read past the text. */
            for (i++; i < length && text[i] != '"'; i++)
              {
                if (text[i] == '\\')
                  i++;
              }
            if (i >= length)
              return;
            if (top != NULL && top->is_object && top->key == NULL)
              {
                g_autofree gchar *key = decode_key (text + start, text + i);
                g_autofree gchar *parent = frames_path (frames, frames->len - 1);
                g_autofree gchar *key_path = NULL;

                if (key == NULL)
                  {
                    report (v, parent, "keys must not contain NUL characters");
                    return;
                  }
                key_path = path_key (parent, key);
                if (g_hash_table_contains (top->keys, key))
                  report (v, key_path, "duplicate key");
                else
                  g_hash_table_add (top->keys, g_strdup (key));
                top->key = g_steal_pointer (&key);
              }
            break;
          default:
            break;
        }
    }
}

/* Reads @text into a JSON object, or reports why not. */
static json_object *
read_json (Validator *v, const gchar *text, gsize length)
{
  g_autoptr (json_tokener) tokener = NULL;
  g_autoptr (json_object) root = NULL;
  g_autofree gchar *copy = NULL;
  const gchar *utf8_end;
  const gchar *nul;
  gsize skip = 0;
  enum json_tokener_error status;

  if (length > DHF_MANIFEST_MAX_SIZE)
    {
      report (v, "$", "manifest is larger than %d bytes", DHF_MANIFEST_MAX_SIZE);
      return NULL;
    }
  nul = memchr (text, '\0', length);
  if (nul != NULL)
    {
      report_at (v, text, (gsize) (nul - text), "manifest contains a NUL byte", NULL);
      return NULL;
    }
  if (!g_utf8_validate_len (text, length, &utf8_end))
    {
      report_at (v, text, (gsize) (utf8_end - text), "manifest is not valid UTF-8", NULL);
      return NULL;
    }
  while (skip < length && g_ascii_isspace (text[skip]))
    skip++;
  if (skip == length)
    {
      report (v, "$", "manifest is empty");
      return NULL;
    }
  /* Editors on some systems start UTF-8 files with a byte order mark. */
  if (length >= 3 && memcmp (text, "\xEF\xBB\xBF", 3) == 0)
    skip = 3;
  else
    skip = 0;

  /* json-c needs the terminating NUL to finish a value at the very end. */
  copy = g_strndup (text + skip, length - skip);
  tokener = json_tokener_new_ex (JSON_MAX_DEPTH);
  json_tokener_set_flags (tokener, JSON_TOKENER_STRICT);
  root = json_tokener_parse_ex (tokener, copy, (int) (length - skip + 1));
  status = json_tokener_get_error (tokener);
  if (status != json_tokener_success)
    {
      gsize offset = MIN (json_tokener_get_parse_end (tokener), length - skip);

      report_at (v, text, skip + offset, "invalid JSON", json_tokener_error_desc (status));
      return NULL;
    }
  if (!json_object_is_type (root, json_type_object))
    {
      report (v, "$", "expected a JSON object, found %s",
              json_type_to_name (json_object_get_type (root)));
      return NULL;
    }
  check_json_text (v, copy, length - skip);
  return g_steal_pointer (&root);
}

/**
 * dhf_manifest_parse:
 * @text: the manifest, JSON (docs/manifest.md)
 * @length: the length of @text in bytes, or -1 if it is NUL-terminated
 * @base_dir: (nullable): the directory relative file paths (disk, kernel,
 *   initrd) are resolved against; with %NULL, relative paths are a problem
 * @error: return location for a #GError
 *
 * Parses and validates a manifest whole. On failure the error is
 * %DHF_ERROR_INVALID_MANIFEST with the message "invalid manifest (N
 * problems):" followed by one line per problem, "$.json.path: message";
 * at most 50 lines, then "... and N more". The disk image, kernel and
 * initrd need not exist.
 *
 * Returns: (transfer full) (nullable): the manifest, or %NULL
 */
DhfManifest *
dhf_manifest_parse (const gchar *text, gssize length, const gchar *base_dir, GError **error)
{
  g_autoptr (GPtrArray) lines = g_ptr_array_new_with_free_func (g_free);
  Validator v = { .lines = lines, .base_dir = base_dir };
  g_autoptr (json_object) root = NULL;
  g_autoptr (DhfManifest) self = NULL;

  g_return_val_if_fail (text != NULL || length == 0, NULL);
  g_return_val_if_fail (error == NULL || *error == NULL, NULL);

  if (length < 0)
    length = (gssize) strlen (text);
  root = read_json (&v, text != NULL ? text : "", (gsize) length);
  if (root != NULL)
    self = validate_manifest (&v, root);
  if (self != NULL && v.count == 0)
    {
      /* Re-reading what dhfd stored must never fail on the size limit. */
      g_autofree gchar *canonical = dhf_manifest_to_json (self);
      if (strlen (canonical) > DHF_MANIFEST_MAX_SIZE)
        report (&v, "$", "manifest is larger than %d bytes in canonical form",
                DHF_MANIFEST_MAX_SIZE);
    }
  if (v.count > 0)
    {
      set_problems_error (&v, error);
      return NULL;
    }
  return g_steal_pointer (&self);
}

/* Accessors */

const gchar *
dhf_manifest_get_name (const DhfManifest *self)
{
  g_return_val_if_fail (self != NULL, NULL);
  return self->name;
}

const gchar *
dhf_manifest_get_vendor (const DhfManifest *self)
{
  g_return_val_if_fail (self != NULL, NULL);
  return self->vendor;
}

const gchar *
dhf_manifest_get_version (const DhfManifest *self)
{
  g_return_val_if_fail (self != NULL, NULL);
  return self->version;
}

/* Returns: (nullable): the description, %NULL when the manifest has none */
const gchar *
dhf_manifest_get_description (const DhfManifest *self)
{
  g_return_val_if_fail (self != NULL, NULL);
  return self->description;
}

DhfApplianceRole
dhf_manifest_get_role (const DhfManifest *self)
{
  g_return_val_if_fail (self != NULL, DHF_APPLIANCE_ROLE_ENVIRONMENT);
  return self->role;
}

/* Returns: the memory size in bytes (a whole number of KiB) */
guint64
dhf_manifest_get_memory (const DhfManifest *self)
{
  g_return_val_if_fail (self != NULL, 0);
  return self->memory;
}

guint
dhf_manifest_get_vcpus (const DhfManifest *self)
{
  g_return_val_if_fail (self != NULL, 0);
  return self->vcpus;
}

gboolean
dhf_manifest_get_autostart (const DhfManifest *self)
{
  g_return_val_if_fail (self != NULL, FALSE);
  return self->autostart;
}

/* Returns: (nullable): the image as an absolute, canonical path; %NULL
 *   when the manifest has no disk */
const gchar *
dhf_manifest_get_disk_image (const DhfManifest *self)
{
  g_return_val_if_fail (self != NULL, NULL);
  return self->disk_image;
}

DhfDiskFormat
dhf_manifest_get_disk_format (const DhfManifest *self)
{
  g_return_val_if_fail (self != NULL, DHF_DISK_FORMAT_QCOW2);
  return self->disk_format;
}

/* Returns: (nullable): the kernel to boot directly, as an absolute,
 *   canonical path; %NULL when the manifest has no "boot" (the guest boots
 *   from its disk) */
const gchar *
dhf_manifest_get_boot_kernel (const DhfManifest *self)
{
  g_return_val_if_fail (self != NULL, NULL);
  return self->boot_kernel;
}

/* Returns: (nullable): the initrd that goes with the kernel, or %NULL */
const gchar *
dhf_manifest_get_boot_initrd (const DhfManifest *self)
{
  g_return_val_if_fail (self != NULL, NULL);
  return self->boot_initrd;
}

/* Returns: (nullable): the kernel command line, or %NULL */
const gchar *
dhf_manifest_get_boot_cmdline (const DhfManifest *self)
{
  g_return_val_if_fail (self != NULL, NULL);
  return self->boot_cmdline;
}

DhfNetworkMode
dhf_manifest_get_network_mode (const DhfManifest *self)
{
  g_return_val_if_fail (self != NULL, DHF_NETWORK_MODE_NONE);
  return self->network_mode;
}

/* Returns: (transfer none) (element-type DhfManifestForward): never %NULL */
GPtrArray *
dhf_manifest_get_forwards (const DhfManifest *self)
{
  g_return_val_if_fail (self != NULL, NULL);
  return self->forwards;
}

DhfDisplayType
dhf_manifest_get_display (const DhfManifest *self)
{
  g_return_val_if_fail (self != NULL, DHF_DISPLAY_NONE);
  return self->display;
}

/* Returns: (transfer none): a %NULL-terminated array, never %NULL */
const gchar *const *
dhf_manifest_get_tags (const DhfManifest *self)
{
  g_return_val_if_fail (self != NULL, NULL);
  return (const gchar *const *) self->tags;
}

/* Returns: (transfer none) (element-type DhfManifestService): never %NULL */
GPtrArray *
dhf_manifest_get_services (const DhfManifest *self)
{
  g_return_val_if_fail (self != NULL, NULL);
  return self->services;
}

/* Returns: (transfer none) (element-type DhfManifestDevice): never %NULL */
GPtrArray *
dhf_manifest_get_devices (const DhfManifest *self)
{
  g_return_val_if_fail (self != NULL, NULL);
  return self->devices;
}

const gchar *
dhf_disk_format_to_string (DhfDiskFormat format)
{
  if ((guint) format >= G_N_ELEMENTS (disk_format_names))
    return disk_format_names[DHF_DISK_FORMAT_QCOW2];
  return disk_format_names[format];
}

/* Canonical JSON */

static void
add_string (json_object *object, const gchar *key, const gchar *value)
{
  json_object_object_add (object, key, json_object_new_string (value));
}

static json_object *
device_to_json (const DhfManifestDevice *device)
{
  json_object *object = json_object_new_object ();

  add_string (object, "type", device_kind_names[device->kind]);
  add_string (object, "mode", device_mode_names[device->mode]);
  switch (device->kind)
    {
      case DHF_DEVICE_KIND_USB:
        {
          g_autofree gchar *vendor = g_strdup_printf ("%04x", device->usb_vendor);
          g_autofree gchar *product = g_strdup_printf ("%04x", device->usb_product);

          add_string (object, "vendor", vendor);
          add_string (object, "product", product);
          if (device->usb_serial != NULL)
            add_string (object, "serial", device->usb_serial);
          break;
        }
      case DHF_DEVICE_KIND_PCI:
        add_string (object, "address", device->pci_address);
        break;
      case DHF_DEVICE_KIND_INPUT:
        add_string (object, "input", device->input_type);
        break;
    }
  return object;
}

/**
 * dhf_manifest_to_json:
 * @self: a #DhfManifest
 *
 * The canonical form dhfd stores in the domain's metadata: compact, keys in
 * a fixed order, defaults filled in, the disk image, kernel and initrd as
 * absolute paths.
 * dhf_manifest_parse() with no base directory reads it back unchanged.
 *
 * Returns: (transfer full): the JSON text
 */
gchar *
dhf_manifest_to_json (const DhfManifest *self)
{
  g_autoptr (json_object) root = json_object_new_object ();
  g_autofree gchar *memory = NULL;
  json_object *network, *array;

  g_return_val_if_fail (self != NULL, NULL);

  memory = size_to_string (self->memory);
  json_object_object_add (root, "manifest-version", json_object_new_int (MANIFEST_VERSION));
  add_string (root, "name", self->name);
  add_string (root, "vendor", self->vendor);
  add_string (root, "version", self->version);
  if (self->description != NULL)
    add_string (root, "description", self->description);
  add_string (root, "role", dhf_appliance_role_to_string (self->role));
  add_string (root, "memory", memory);
  json_object_object_add (root, "vcpus", json_object_new_int ((gint) self->vcpus));
  json_object_object_add (root, "autostart", json_object_new_boolean (self->autostart));
  if (self->disk_image != NULL)
    {
      json_object *disk = json_object_new_object ();

      add_string (disk, "image", self->disk_image);
      add_string (disk, "format", dhf_disk_format_to_string (self->disk_format));
      json_object_object_add (root, "disk", disk);
    }
  if (self->boot_kernel != NULL)
    {
      json_object *boot = json_object_new_object ();

      add_string (boot, "kernel", self->boot_kernel);
      if (self->boot_initrd != NULL)
        add_string (boot, "initrd", self->boot_initrd);
      if (self->boot_cmdline != NULL)
        add_string (boot, "cmdline", self->boot_cmdline);
      json_object_object_add (root, "boot", boot);
    }

  network = json_object_new_object ();
  add_string (network, "mode", network_mode_names[self->network_mode]);
  if (self->network_mode == DHF_NETWORK_MODE_NAT)
    {
      array = json_object_new_array ();
      for (guint i = 0; i < self->forwards->len; i++)
        {
          const DhfManifestForward *forward = g_ptr_array_index (self->forwards, i);
          json_object *item = json_object_new_object ();

          add_string (item, "protocol", forward->protocol);
          json_object_object_add (item, "host", json_object_new_int (forward->host_port));
          json_object_object_add (item, "guest", json_object_new_int (forward->guest_port));
          json_object_array_add (array, item);
        }
      json_object_object_add (network, "forwards", array);
    }
  json_object_object_add (root, "network", network);
  add_string (root, "display", display_names[self->display]);

  array = json_object_new_array ();
  for (guint i = 0; self->tags[i] != NULL; i++)
    json_object_array_add (array, json_object_new_string (self->tags[i]));
  json_object_object_add (root, "tags", array);

  array = json_object_new_array ();
  for (guint i = 0; i < self->services->len; i++)
    {
      const DhfManifestService *service = g_ptr_array_index (self->services, i);
      json_object *item = json_object_new_object ();

      add_string (item, "name", service->name);
      if (service->description != NULL)
        add_string (item, "description", service->description);
      json_object_array_add (array, item);
    }
  json_object_object_add (root, "services", array);

  array = json_object_new_array ();
  for (guint i = 0; i < self->devices->len; i++)
    json_object_array_add (array, device_to_json (g_ptr_array_index (self->devices, i)));
  json_object_object_add (root, "devices", array);

  return g_strdup (json_object_to_json_string_ext (root, JSON_C_TO_STRING_PLAIN
                                                             | JSON_C_TO_STRING_NOSLASHESCAPE));
}
