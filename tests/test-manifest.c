/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include "config.h"

#include <json-c/json.h>
#include <string.h>

#include "dhf-manifest.h"

G_DEFINE_AUTOPTR_CLEANUP_FUNC (json_object, json_object_put)

/* Every bad case changes one key of this valid manifest. */
static const gchar minimal_json[]
    = "{\"manifest-version\":1,\"name\":\"demo\",\"vendor\":\"ACME\",\"version\":\"1.0\","
      "\"role\":\"service\",\"memory\":\"512MiB\",\"vcpus\":1}";

static gchar *read_test_file (const gchar *first, ...) G_GNUC_NULL_TERMINATED;

static gchar *
read_test_file (const gchar *first, ...)
{
  g_autoptr (GPtrArray) parts = g_ptr_array_new ();
  g_autofree gchar *path = NULL;
  g_autoptr (GError) error = NULL;
  gchar *contents = NULL;
  va_list args;

  g_ptr_array_add (parts, (gpointer) g_test_get_dir (G_TEST_DIST));
  va_start (args, first);
  for (const gchar *part = first; part != NULL; part = va_arg (args, const gchar *))
    g_ptr_array_add (parts, (gpointer) part);
  va_end (args);
  g_ptr_array_add (parts, NULL);
  path = g_build_filenamev ((gchar **) parts->pdata);
  g_file_get_contents (path, &contents, NULL, &error);
  g_assert_no_error (error);
  return contents;
}

static gchar *
test_dir (const gchar *name)
{
  return g_build_filename (g_test_get_dir (G_TEST_DIST), name, NULL);
}

/* Fails the test unless @line is one of the problem lines of @error. */
static void
assert_problem (const GError *error, const gchar *line)
{
  g_auto (GStrv) lines = NULL;

  g_assert_nonnull (error);
  g_assert_error (error, DHF_ERROR, DHF_ERROR_INVALID_MANIFEST);
  lines = g_strsplit (error->message, "\n", -1);
  g_assert_true (g_str_has_prefix (lines[0], "invalid manifest ("));
  if (!g_strv_contains ((const gchar *const *) lines + 1, line))
    g_test_fail_printf ("expected the problem\n  %s\nin\n%s", line, error->message);
}

static gchar *
manifest_with (const gchar *key, const gchar *value_json)
{
  g_autoptr (json_object) root = json_tokener_parse (minimal_json);

  if (value_json == NULL)
    json_object_object_del (root, key);
  else
    {
      json_object *value = json_tokener_parse (value_json);

      g_assert_true (value != NULL || g_str_equal (value_json, "null"));
      json_object_object_add (root, key, value);
    }
  return g_strdup (json_object_to_json_string_ext (root, JSON_C_TO_STRING_PLAIN));
}

/* Good manifests */

static void
test_minimal (void)
{
  g_autoptr (GError) error = NULL;
  g_autofree gchar *text = read_test_file ("manifests", "minimal.json", NULL);
  g_autoptr (DhfManifest) manifest = dhf_manifest_parse (text, -1, NULL, &error);

  g_assert_no_error (error);
  g_assert_nonnull (manifest);
  g_assert_cmpstr (dhf_manifest_get_name (manifest), ==, "minimal");
  g_assert_cmpstr (dhf_manifest_get_vendor (manifest), ==, "ACME");
  g_assert_cmpstr (dhf_manifest_get_version (manifest), ==, "1");
  g_assert_null (dhf_manifest_get_description (manifest));
  g_assert_cmpint (dhf_manifest_get_role (manifest), ==, DHF_APPLIANCE_ROLE_SERVICE);
  g_assert_cmpuint (dhf_manifest_get_memory (manifest), ==, 64 * 1024 * 1024);
  g_assert_cmpuint (dhf_manifest_get_vcpus (manifest), ==, 1);
  g_assert_false (dhf_manifest_get_autostart (manifest));
  g_assert_null (dhf_manifest_get_disk_image (manifest));
  g_assert_null (dhf_manifest_get_boot_kernel (manifest));
  g_assert_null (dhf_manifest_get_boot_initrd (manifest));
  g_assert_null (dhf_manifest_get_boot_cmdline (manifest));
  g_assert_cmpint (dhf_manifest_get_network_mode (manifest), ==, DHF_NETWORK_MODE_NONE);
  g_assert_cmpuint (dhf_manifest_get_forwards (manifest)->len, ==, 0);
  g_assert_cmpint (dhf_manifest_get_display (manifest), ==, DHF_DISPLAY_NONE);
  g_assert_nonnull (dhf_manifest_get_tags (manifest));
  g_assert_null (dhf_manifest_get_tags (manifest)[0]);
  g_assert_cmpuint (dhf_manifest_get_services (manifest)->len, ==, 0);
  g_assert_cmpuint (dhf_manifest_get_devices (manifest)->len, ==, 0);
}

static void
test_environment_defaults_to_vnc (void)
{
  g_autoptr (GError) error = NULL;
  g_autofree gchar *text = manifest_with ("role", "\"environment\"");
  g_autoptr (DhfManifest) manifest = dhf_manifest_parse (text, -1, NULL, &error);

  g_assert_no_error (error);
  g_assert_cmpint (dhf_manifest_get_display (manifest), ==, DHF_DISPLAY_VNC);
}

static void
test_full (void)
{
  g_autoptr (GError) error = NULL;
  g_autofree gchar *text = read_test_file ("manifests", "full.json", NULL);
  g_autoptr (DhfManifest) manifest = dhf_manifest_parse (text, -1, "/srv/dhf/manifests", &error);
  const DhfManifestForward *forward;
  const DhfManifestService *service;
  const DhfManifestDevice *device;
  GPtrArray *array;

  g_assert_no_error (error);
  g_assert_cmpstr (dhf_manifest_get_name (manifest), ==, "full-example");
  g_assert_cmpstr (dhf_manifest_get_vendor (manifest), ==, "ACME Appliances Ltd. été ☃");
  g_assert_cmpstr (dhf_manifest_get_version (manifest), ==, "10.2.0.7-rc.1");
  g_assert_cmpstr (dhf_manifest_get_description (manifest), ==,
                   "Every key of the format.\nSecond line\twith a tab, <markup> & \"quotes\".");
  g_assert_cmpint (dhf_manifest_get_role (manifest), ==, DHF_APPLIANCE_ROLE_ENVIRONMENT);
  g_assert_cmpuint (dhf_manifest_get_memory (manifest), ==, G_GUINT64_CONSTANT (1536) << 20);
  g_assert_cmpuint (dhf_manifest_get_vcpus (manifest), ==, 4);
  g_assert_true (dhf_manifest_get_autostart (manifest));
  g_assert_cmpstr (dhf_manifest_get_disk_image (manifest), ==, "/srv/dhf/images/full.img");
  /* The explicit format wins over the .img extension. */
  g_assert_cmpint (dhf_manifest_get_disk_format (manifest), ==, DHF_DISK_FORMAT_QCOW2);
  g_assert_cmpint (dhf_manifest_get_network_mode (manifest), ==, DHF_NETWORK_MODE_NAT);
  g_assert_cmpint (dhf_manifest_get_display (manifest), ==, DHF_DISPLAY_SPICE);

  array = dhf_manifest_get_forwards (manifest);
  g_assert_cmpuint (array->len, ==, 2);
  forward = g_ptr_array_index (array, 1);
  g_assert_cmpstr (forward->protocol, ==, "udp");
  g_assert_cmpuint (forward->host_port, ==, 8080);
  g_assert_cmpuint (forward->guest_port, ==, 53);

  g_assert_cmpstrv (dhf_manifest_get_tags (manifest),
                    ((const gchar *const[]){ "corp", "team_a", "9lives", NULL }));

  array = dhf_manifest_get_services (manifest);
  g_assert_cmpuint (array->len, ==, 2);
  service = g_ptr_array_index (array, 0);
  g_assert_cmpstr (service->name, ==, "com.example.Sync1");
  g_assert_cmpstr (service->description, ==, "Synchronises files.");
  service = g_ptr_array_index (array, 1);
  g_assert_null (service->description);

  array = dhf_manifest_get_devices (manifest);
  g_assert_cmpuint (array->len, ==, 5);
  device = g_ptr_array_index (array, 0);
  g_assert_cmpint (device->kind, ==, DHF_DEVICE_KIND_USB);
  g_assert_cmpint (device->mode, ==, DHF_DEVICE_MODE_FOLLOW_FOCUS);
  g_assert_cmphex (device->usb_vendor, ==, 0x046d);
  g_assert_cmphex (device->usb_product, ==, 0xc52b);
  g_assert_cmpstr (device->usb_serial, ==, "ABC-123");
  device = g_ptr_array_index (array, 1);
  g_assert_cmpint (device->mode, ==, DHF_DEVICE_MODE_PINNED);
  g_assert_null (device->usb_serial);
  device = g_ptr_array_index (array, 2);
  g_assert_cmpint (device->kind, ==, DHF_DEVICE_KIND_PCI);
  g_assert_cmpstr (device->pci_address, ==, "0000:0a:1f.7");
  device = g_ptr_array_index (array, 3);
  g_assert_cmpint (device->kind, ==, DHF_DEVICE_KIND_INPUT);
  g_assert_cmpstr (device->input_type, ==, "keyboard");
  g_assert_cmpint (device->mode, ==, DHF_DEVICE_MODE_FOLLOW_FOCUS);
}

static void
test_examples (void)
{
  static const gchar *const names[] = { "personal", "corporate", "vpn-gateway", "file-sync" };
  g_autofree gchar *relative = test_dir ("../examples/appliances");
  g_autofree gchar *examples = g_canonicalize_filename (relative, NULL);

  for (gsize i = 0; i < G_N_ELEMENTS (names); i++)
    {
      g_autofree gchar *file = g_strconcat (names[i], ".json", NULL);
      g_autofree gchar *text = read_test_file ("..", "examples", "appliances", file, NULL);
      g_autoptr (GError) error = NULL;
      g_autoptr (DhfManifest) manifest = dhf_manifest_parse (text, -1, examples, &error);

      g_assert_no_error (error);
      g_assert_cmpstr (dhf_manifest_get_name (manifest), ==, names[i]);
      g_assert_true (g_str_has_prefix (dhf_manifest_get_disk_image (manifest), examples));
    }
}

static void
test_ref_unref (void)
{
  DhfManifest *manifest = dhf_manifest_parse (minimal_json, -1, NULL, NULL);
  DhfManifest *second = dhf_manifest_ref (manifest);

  g_assert_true (second == manifest);
  dhf_manifest_unref (manifest);
  g_assert_cmpstr (dhf_manifest_get_name (second), ==, "demo");
  dhf_manifest_unref (second);
}

static void
test_explicit_length (void)
{
  g_autoptr (GError) error = NULL;
  g_autofree gchar *padded = g_strconcat (minimal_json, "garbage", NULL);
  g_autoptr (DhfManifest) manifest
      = dhf_manifest_parse (padded, (gssize) strlen (minimal_json), NULL, &error);

  g_assert_no_error (error);
  g_assert_nonnull (manifest);
}

static void
test_byte_order_mark (void)
{
  g_autoptr (GError) error = NULL;
  g_autofree gchar *text = g_strconcat ("\xEF\xBB\xBF", minimal_json, NULL);
  g_autoptr (DhfManifest) manifest = dhf_manifest_parse (text, -1, NULL, &error);

  g_assert_no_error (error);
  g_assert_nonnull (manifest);
}

/* Disk paths */

static void
test_disk_paths (void)
{
  static const struct
  {
    const gchar *disk;
    const gchar *base_dir;
    const gchar *image;
    DhfDiskFormat format;
  } cases[] = {
    { "\"/abs/a.qcow2\"", NULL, "/abs/a.qcow2", DHF_DISK_FORMAT_QCOW2 },
    { "\"/abs/a.raw\"", NULL, "/abs/a.raw", DHF_DISK_FORMAT_RAW },
    { "\"/abs/a.IMG\"", NULL, "/abs/a.IMG", DHF_DISK_FORMAT_RAW },
    { "\"/abs/noext\"", NULL, "/abs/noext", DHF_DISK_FORMAT_QCOW2 },
    { "\"images/a.qcow2\"", "/srv/m", "/srv/m/images/a.qcow2", DHF_DISK_FORMAT_QCOW2 },
    { "\"../x/./y/../a.raw\"", "/srv/m", "/srv/x/a.raw", DHF_DISK_FORMAT_RAW },
    { "\"/abs//double/slash.qcow2\"", "/ignored", "/abs/double/slash.qcow2",
      DHF_DISK_FORMAT_QCOW2 },
    { "{\"image\":\"/abs/a.raw\",\"format\":\"qcow2\"}", NULL, "/abs/a.raw",
      DHF_DISK_FORMAT_QCOW2 },
    { "{\"image\":\"b.qcow2\",\"format\":\"raw\"}", "/m", "/m/b.qcow2", DHF_DISK_FORMAT_RAW },
  };

  for (gsize i = 0; i < G_N_ELEMENTS (cases); i++)
    {
      g_autofree gchar *text = manifest_with ("disk", cases[i].disk);
      g_autoptr (GError) error = NULL;
      g_autoptr (DhfManifest) manifest = dhf_manifest_parse (text, -1, cases[i].base_dir, &error);

      g_assert_no_error (error);
      g_assert_cmpstr (dhf_manifest_get_disk_image (manifest), ==, cases[i].image);
      g_assert_cmpint (dhf_manifest_get_disk_format (manifest), ==, cases[i].format);
    }
}

static void
test_relative_disk_needs_base (void)
{
  g_autoptr (GError) error = NULL;
  g_autofree gchar *text = manifest_with ("disk", "{\"image\":\"images/a.qcow2\"}");
  g_autoptr (DhfManifest) manifest = dhf_manifest_parse (text, -1, NULL, &error);

  g_assert_null (manifest);
  assert_problem (error, "$.disk.image: relative path needs a base directory");
}

/* Direct kernel boot */

static void
test_boot_file (void)
{
  g_autoptr (GError) error = NULL;
  g_autofree gchar *text = read_test_file ("manifests", "direct-boot.json", NULL);
  g_autoptr (DhfManifest) manifest = dhf_manifest_parse (text, -1, "/srv/dhf/manifests", &error);

  g_assert_no_error (error);
  g_assert_cmpstr (dhf_manifest_get_boot_kernel (manifest), ==, "/srv/dhf/boot/vmlinuz");
  g_assert_cmpstr (dhf_manifest_get_boot_initrd (manifest), ==, "/boot/initrd.img-6.1");
  g_assert_cmpstr (dhf_manifest_get_boot_cmdline (manifest), ==,
                   "console=ttyS0 quiet dhf.args=a,b <&> \"q\" é");
  g_assert_cmpstr (dhf_manifest_get_disk_image (manifest), ==, "/srv/dhf/manifests/data.raw");
  g_assert_cmpint (dhf_manifest_get_disk_format (manifest), ==, DHF_DISK_FORMAT_RAW);
}

static void
test_boot_paths (void)
{
  static const struct
  {
    const gchar *boot;
    const gchar *base_dir;
    const gchar *kernel;
    const gchar *initrd;
    const gchar *cmdline;
  } cases[] = {
    { "{\"kernel\":\"/abs/vmlinuz\"}", NULL, "/abs/vmlinuz", NULL, NULL },
    { "{\"kernel\":\"cloud/vmlinuz\",\"initrd\":\"cloud/initrd.img\"}", "/srv/m",
      "/srv/m/cloud/vmlinuz", "/srv/m/cloud/initrd.img", NULL },
    { "{\"cmdline\":\"console=ttyS0 quiet panic=-1\",\"kernel\":\"../k/./v/../vmlinuz\"}", "/srv/m",
      "/srv/k/vmlinuz", NULL, "console=ttyS0 quiet panic=-1" },
    { "{\"kernel\":\"/abs//k\",\"initrd\":\"/abs/i/\",\"cmdline\":\"\"}", "/ignored", "/abs/k",
      "/abs/i", "" },
    /* Printable Unicode is fine; the limit counts bytes. */
    { "{\"kernel\":\"/k\",\"cmdline\":\"root=/dev/vda1 note=\\u00e9t\\u00e9\"}", NULL, "/k", NULL,
      "root=/dev/vda1 note=été" },
  };

  for (gsize i = 0; i < G_N_ELEMENTS (cases); i++)
    {
      g_autofree gchar *text = manifest_with ("boot", cases[i].boot);
      g_autoptr (GError) error = NULL;
      g_autoptr (DhfManifest) manifest = dhf_manifest_parse (text, -1, cases[i].base_dir, &error);

      g_assert_no_error (error);
      g_assert_cmpstr (dhf_manifest_get_boot_kernel (manifest), ==, cases[i].kernel);
      g_assert_cmpstr (dhf_manifest_get_boot_initrd (manifest), ==, cases[i].initrd);
      g_assert_cmpstr (dhf_manifest_get_boot_cmdline (manifest), ==, cases[i].cmdline);
      /* A direct boot does not imply or replace a disk. */
      g_assert_null (dhf_manifest_get_disk_image (manifest));
    }
}

static void
test_boot_relative_needs_base (void)
{
  g_autoptr (GError) error = NULL;
  g_autofree gchar *text
      = manifest_with ("boot", "{\"kernel\":\"cloud/vmlinuz\",\"initrd\":\"cloud/initrd.img\"}");
  g_autoptr (DhfManifest) manifest = dhf_manifest_parse (text, -1, NULL, &error);

  g_assert_null (manifest);
  g_assert_cmpstr (error->message, ==,
                   "invalid manifest (2 problems):\n"
                   "$.boot.kernel: relative path needs a base directory\n"
                   "$.boot.initrd: relative path needs a base directory");
}

/* The longest command line allowed: 2047 bytes (a 2048-byte one was seen
 * to hang the guest at boot), multi-byte characters counting for their
 * bytes. */
static void
test_boot_cmdline_limit (void)
{
  static const struct
  {
    const gchar *unit;
    guint count;
    gboolean ok;
  } cases[] = {
    { "x", 2047, TRUE },
    { "x", 2048, FALSE },
    { "\u00e9", 1023, TRUE },
    { "\u00e9", 1024, FALSE },
  };

  for (gsize i = 0; i < G_N_ELEMENTS (cases); i++)
    {
      g_autoptr (GString) boot = g_string_new ("{\"kernel\":\"/k\",\"cmdline\":\"");
      g_autofree gchar *text = NULL;
      g_autoptr (GError) error = NULL;
      g_autoptr (DhfManifest) manifest = NULL;

      for (guint j = 0; j < cases[i].count; j++)
        g_string_append (boot, cases[i].unit);
      g_string_append (boot, "\"}");
      text = manifest_with ("boot", boot->str);
      manifest = dhf_manifest_parse (text, -1, NULL, &error);
      if (cases[i].ok)
        {
          g_assert_no_error (error);
          g_assert_cmpuint (strlen (dhf_manifest_get_boot_cmdline (manifest)), ==,
                            strlen (cases[i].unit) * cases[i].count);
        }
      else
        {
          g_assert_null (manifest);
          assert_problem (error, "$.boot.cmdline: must be at most 2047 bytes");
        }
    }
}

/* Problems in "boot" come out with the others, in key-table order. */
static void
test_boot_problems_collected (void)
{
  static const gchar *const expected[] = {
    "invalid manifest (5 problems):",
    "$.vcpus: expected an integer from 1 to 64",
    "$.boot.color: unknown key",
    "$.boot.kernel: must not be empty",
    "$.boot.initrd: expected a file name",
    "$.boot.cmdline: must not contain newlines or control characters",
    NULL,
  };
  g_autoptr (json_object) root = json_tokener_parse (minimal_json);
  g_autoptr (GError) error = NULL;
  g_autoptr (DhfManifest) manifest = NULL;
  g_auto (GStrv) lines = NULL;

  json_object_object_add (root, "vcpus", json_object_new_int (0));
  json_object_object_add (root, "boot",
                          json_tokener_parse ("{\"kernel\":\"\",\"initrd\":[],"
                                              "\"cmdline\":\"quiet\\tx\",\"color\":1}"));
  manifest = dhf_manifest_parse (json_object_to_json_string (root), -1, "/base", &error);
  g_assert_null (manifest);
  lines = g_strsplit (error->message, "\n", -1);
  g_assert_cmpstrv (lines, expected);
}

/* Bad manifests: one key changed, one exact problem line expected */

typedef struct
{
  const gchar *label;
  const gchar *key;
  const gchar *value; /* JSON; NULL removes the key */
  const gchar *problem;
  gchar *(*make_value) (void); /* instead of value, for big ones */
} BadKeyCase;

static gchar *
make_long_name (void)
{
  g_autofree gchar *name = g_strnfill (49, 'a');
  return g_strdup_printf ("\"%s\"", name);
}

static gchar *
make_long_vendor (void)
{
  g_autofree gchar *vendor = g_strnfill (65, 'v');
  return g_strdup_printf ("\"%s\"", vendor);
}

static gchar *
make_long_description (void)
{
  g_autofree gchar *text = g_strnfill (1025, 'd');
  return g_strdup_printf ("\"%s\"", text);
}

/* A JSON array of @count items "PREFIX<n>SUFFIX", n counting from 1. */
static gchar *
make_repeated (const gchar *prefix, const gchar *suffix, guint count)
{
  g_autoptr (GString) json = g_string_new ("[");

  for (guint i = 0; i < count; i++)
    g_string_append_printf (json, "%s%s%u%s", i > 0 ? "," : "", prefix, i + 1, suffix);
  g_string_append_c (json, ']');
  return g_string_free (g_steal_pointer (&json), FALSE);
}

static gchar *
make_65_forwards (void)
{
  g_autofree gchar *forwards
      = make_repeated ("{\"protocol\":\"tcp\",\"host\":", ",\"guest\":22}", 65);
  return g_strdup_printf ("{\"mode\":\"nat\",\"forwards\":%s}", forwards);
}

static gchar *
make_33_tags (void)
{
  return make_repeated ("\"t", "\"", 33);
}

static gchar *
make_65_services (void)
{
  return make_repeated ("{\"name\":\"org.example.S", "\"}", 65);
}

static gchar *
make_33_devices (void)
{
  return make_repeated ("{\"type\":\"input\",\"input\":\"mouse\",\"x", "\":0}", 33);
}

static gchar *
make_long_service (void)
{
  g_autofree gchar *tail = g_strnfill (254, 'x');
  return g_strdup_printf ("[{\"name\":\"a.%s\"}]", tail);
}

static gchar *
make_long_kernel (void)
{
  g_autofree gchar *name = g_strnfill (4096, 'k');
  return g_strdup_printf ("{\"kernel\":\"/%s\"}", name);
}

static gchar *
make_long_initrd (void)
{
  g_autofree gchar *name = g_strnfill (4091, 'i');
  /* Short as written, too long once resolved against "/base". */
  return g_strdup_printf ("{\"kernel\":\"/k\",\"initrd\":\"%s\"}", name);
}

static gchar *
make_long_cmdline (void)
{
  g_autofree gchar *cmdline = g_strnfill (4000, 'c');
  return g_strdup_printf ("{\"kernel\":\"/k\",\"cmdline\":\"%s\"}", cmdline);
}

static gchar *
make_long_serial (void)
{
  g_autofree gchar *serial = g_strnfill (129, 's');
  return g_strdup_printf (
      "[{\"type\":\"usb\",\"vendor\":\"046d\",\"product\":\"c52b\",\"serial\":\"%s\"}]", serial);
}

#define NAME_RULE                                                                                  \
  "(expected lower-case letters, digits and single '-', starting with a letter and not ending "    \
  "with '-')"
#define VERSION_RULE                                                                               \
  "(expected 1 to 4 dot-separated numbers without leading zeros, optionally followed by "          \
  "\"-suffix\")"
#define TAG_RULE             "(expected 1 to 32 of a-z, 0-9, '_' and '-', starting with a letter or digit)"
#define SIZE_PROBLEM         "expected a size like \"512MiB\""
#define USB(vendor, product) "[{\"type\":\"usb\",\"vendor\":" vendor ",\"product\":" product "}]"
#define FWD(protocol, host, guest)                                                                 \
  "{\"protocol\":" protocol ",\"host\":" host ",\"guest\":" guest "}"
#define NAT(...) "{\"mode\":\"nat\",\"forwards\":[" __VA_ARGS__ "]}"

static const BadKeyCase bad_key_cases[] = {
  /* manifest-version */
  { "version-missing", "manifest-version", NULL, "$: missing required key \"manifest-version\"" },
  { "version-2", "manifest-version", "2",
    "$.manifest-version: unsupported manifest version 2 (this dhfd reads 1)" },
  { "version-0", "manifest-version", "0",
    "$.manifest-version: unsupported manifest version 0 (this dhfd reads 1)" },
  { "version-string", "manifest-version", "\"1\"", "$.manifest-version: expected the integer 1" },
  { "version-float", "manifest-version", "1.0", "$.manifest-version: expected the integer 1" },
  /* name */
  { "name-missing", "name", NULL, "$: missing required key \"name\"" },
  { "name-number", "name", "5", "$.name: expected a string" },
  { "name-null", "name", "null", "$.name: expected a string" },
  { "name-empty", "name", "\"\"", "$.name: invalid name \"\" " NAME_RULE },
  { "name-upper", "name", "\"Demo\"", "$.name: invalid name \"Demo\" " NAME_RULE },
  { "name-digit-first", "name", "\"1demo\"", "$.name: invalid name \"1demo\" " NAME_RULE },
  { "name-dash-last", "name", "\"demo-\"", "$.name: invalid name \"demo-\" " NAME_RULE },
  { "name-double-dash", "name", "\"de--mo\"", "$.name: invalid name \"de--mo\" " NAME_RULE },
  { "name-underscore", "name", "\"de_mo\"", "$.name: invalid name \"de_mo\" " NAME_RULE },
  { "name-space", "name", "\"de mo\"", "$.name: invalid name \"de mo\" " NAME_RULE },
  { "name-slash", "name", "\"../etc\"", "$.name: invalid name \"../etc\" " NAME_RULE },
  { "name-too-long", "name", NULL, "$.name: must be at most 48 characters", make_long_name },
  { "name-nul", "name", "\"de\\u0000mo\"", "$.name: must not contain NUL characters" },
  /* vendor */
  { "vendor-missing", "vendor", NULL, "$: missing required key \"vendor\"" },
  { "vendor-empty", "vendor", "\"\"", "$.vendor: must be 1 to 64 characters" },
  { "vendor-too-long", "vendor", NULL, "$.vendor: must be 1 to 64 characters", make_long_vendor },
  { "vendor-newline", "vendor", "\"AC\\nME\"", "$.vendor: must contain only printable characters" },
  { "vendor-escape", "vendor", "\"AC\\u001bME\"",
    "$.vendor: must contain only printable characters" },
  { "vendor-leading-space", "vendor", "\" ACME\"",
    "$.vendor: must not start or end with white space" },
  { "vendor-array", "vendor", "[\"ACME\"]", "$.vendor: expected a string" },
  /* version */
  { "ver-missing", "version", NULL, "$: missing required key \"version\"" },
  { "ver-number", "version", "1", "$.version: expected a version like \"1.2.3\"" },
  { "ver-five-parts", "version", "\"1.0.0.0.0\"",
    "$.version: invalid version \"1.0.0.0.0\" " VERSION_RULE },
  { "ver-leading-zero", "version", "\"01.0\"",
    "$.version: invalid version \"01.0\" " VERSION_RULE },
  { "ver-empty-part", "version", "\"1..0\"", "$.version: invalid version \"1..0\" " VERSION_RULE },
  { "ver-empty-suffix", "version", "\"1.0-\"",
    "$.version: invalid version \"1.0-\" " VERSION_RULE },
  { "ver-bad-suffix", "version", "\"1.0-rc_1\"",
    "$.version: invalid version \"1.0-rc_1\" " VERSION_RULE },
  { "ver-part-too-big", "version", "\"1234567\"",
    "$.version: invalid version \"1234567\" " VERSION_RULE },
  { "ver-prefix-v", "version", "\"v1\"", "$.version: invalid version \"v1\" " VERSION_RULE },
  { "ver-empty", "version", "\"\"", "$.version: invalid version \"\" " VERSION_RULE },
  /* description */
  { "description-number", "description", "5", "$.description: expected a string" },
  { "description-control", "description", "\"a\\u0001b\"",
    "$.description: must not contain control characters other than newline and tab" },
  { "description-cr", "description", "\"a\\r\\nb\"",
    "$.description: must not contain control characters other than newline and tab" },
  { "description-too-long", "description", NULL, "$.description: must be at most 1024 characters",
    make_long_description },
  /* role */
  { "role-missing", "role", NULL, "$: missing required key \"role\"" },
  { "role-unknown", "role", "\"admin\"",
    "$.role: unknown role \"admin\" (expected \"environment\" or \"service\")" },
  { "role-number", "role", "1", "$.role: expected \"environment\" or \"service\"" },
  /* memory */
  { "memory-missing", "memory", NULL, "$: missing required key \"memory\"" },
  { "memory-number", "memory", "512", "$.memory: " SIZE_PROBLEM },
  { "memory-no-unit", "memory", "\"536870912\"", "$.memory: " SIZE_PROBLEM },
  { "memory-space", "memory", "\"512 MiB\"", "$.memory: " SIZE_PROBLEM },
  { "memory-fraction", "memory", "\"1.5GiB\"", "$.memory: " SIZE_PROBLEM },
  { "memory-lower-unit", "memory", "\"512mib\"", "$.memory: " SIZE_PROBLEM },
  { "memory-decimal-unit", "memory", "\"512MB\"", "$.memory: " SIZE_PROBLEM },
  { "memory-negative", "memory", "\"-1GiB\"", "$.memory: " SIZE_PROBLEM },
  { "memory-overflow", "memory", "\"99999999999999999999GiB\"", "$.memory: " SIZE_PROBLEM },
  { "memory-shift-overflow", "memory", "\"16777216T\"", "$.memory: " SIZE_PROBLEM },
  { "memory-too-small", "memory", "\"32MiB\"", "$.memory: must be between 64MiB and 1TiB" },
  { "memory-too-big", "memory", "\"1025GiB\"", "$.memory: must be between 64MiB and 1TiB" },
  { "memory-odd-bytes", "memory", "\"67108865B\"", "$.memory: must be a whole number of KiB" },
  /* vcpus */
  { "vcpus-missing", "vcpus", NULL, "$: missing required key \"vcpus\"" },
  { "vcpus-zero", "vcpus", "0", "$.vcpus: expected an integer from 1 to 64" },
  { "vcpus-65", "vcpus", "65", "$.vcpus: expected an integer from 1 to 64" },
  { "vcpus-negative", "vcpus", "-2", "$.vcpus: expected an integer from 1 to 64" },
  { "vcpus-string", "vcpus", "\"2\"", "$.vcpus: expected an integer from 1 to 64" },
  { "vcpus-float", "vcpus", "2.5", "$.vcpus: expected an integer from 1 to 64" },
  { "vcpus-huge", "vcpus", "18446744073709551616", "$.vcpus: expected an integer from 1 to 64" },
  /* autostart */
  { "autostart-string", "autostart", "\"yes\"", "$.autostart: expected true or false" },
  { "autostart-number", "autostart", "1", "$.autostart: expected true or false" },
  /* disk */
  { "disk-number", "disk", "5", "$.disk: expected a file name or an object" },
  { "disk-empty", "disk", "\"\"", "$.disk: must not be empty" },
  { "disk-newline", "disk", "\"/a\\nb.qcow2\"",
    "$.disk: must not contain newlines or control characters" },
  { "disk-nul", "disk", "\"/a\\u0000b\"", "$.disk: must not contain NUL characters" },
  { "disk-no-image", "disk", "{\"format\":\"raw\"}", "$.disk: missing required key \"image\"" },
  { "disk-image-number", "disk", "{\"image\":1}", "$.disk.image: expected a file name" },
  { "disk-format", "disk", "{\"image\":\"/x\",\"format\":\"vmdk\"}",
    "$.disk.format: unknown format \"vmdk\" (expected \"qcow2\" or \"raw\")" },
  { "disk-unknown-key", "disk", "{\"image\":\"/x\",\"size\":\"1GiB\"}",
    "$.disk.size: unknown key" },
  /* boot */
  { "boot-string", "boot", "\"/vmlinuz\"", "$.boot: expected an object" },
  { "boot-null", "boot", "null", "$.boot: expected an object" },
  { "boot-array", "boot", "[\"/vmlinuz\"]", "$.boot: expected an object" },
  { "boot-no-kernel", "boot", "{\"initrd\":\"/i\"}", "$.boot: missing required key \"kernel\"" },
  { "boot-empty", "boot", "{}", "$.boot: missing required key \"kernel\"" },
  { "boot-unknown-key", "boot", "{\"kernel\":\"/k\",\"append\":\"quiet\"}",
    "$.boot.append: unknown key" },
  { "boot-kernel-number", "boot", "{\"kernel\":1}", "$.boot.kernel: expected a file name" },
  { "boot-kernel-null", "boot", "{\"kernel\":null}", "$.boot.kernel: expected a file name" },
  { "boot-kernel-empty", "boot", "{\"kernel\":\"\"}", "$.boot.kernel: must not be empty" },
  { "boot-kernel-newline", "boot", "{\"kernel\":\"/a\\nb\"}",
    "$.boot.kernel: must not contain newlines or control characters" },
  { "boot-kernel-nul", "boot", "{\"kernel\":\"/a\\u0000b\"}",
    "$.boot.kernel: must not contain NUL characters" },
  { "boot-kernel-too-long", "boot", NULL, "$.boot.kernel: resolved path is longer than 4096 bytes",
    make_long_kernel },
  { "boot-initrd-object", "boot", "{\"kernel\":\"/k\",\"initrd\":{}}",
    "$.boot.initrd: expected a file name" },
  { "boot-initrd-empty", "boot", "{\"kernel\":\"/k\",\"initrd\":\"\"}",
    "$.boot.initrd: must not be empty" },
  { "boot-initrd-escape", "boot", "{\"kernel\":\"/k\",\"initrd\":\"/i\\u001b\"}",
    "$.boot.initrd: must not contain newlines or control characters" },
  { "boot-initrd-too-long", "boot", NULL, "$.boot.initrd: resolved path is longer than 4096 bytes",
    make_long_initrd },
  { "boot-cmdline-number", "boot", "{\"kernel\":\"/k\",\"cmdline\":5}",
    "$.boot.cmdline: expected a string" },
  { "boot-cmdline-array", "boot", "{\"kernel\":\"/k\",\"cmdline\":[\"quiet\"]}",
    "$.boot.cmdline: expected a string" },
  { "boot-cmdline-newline", "boot", "{\"kernel\":\"/k\",\"cmdline\":\"quiet\\ninit=/x\"}",
    "$.boot.cmdline: must not contain newlines or control characters" },
  { "boot-cmdline-tab", "boot", "{\"kernel\":\"/k\",\"cmdline\":\"a\\tb\"}",
    "$.boot.cmdline: must not contain newlines or control characters" },
  { "boot-cmdline-del", "boot", "{\"kernel\":\"/k\",\"cmdline\":\"a\\u007fb\"}",
    "$.boot.cmdline: must not contain newlines or control characters" },
  { "boot-cmdline-noncharacter", "boot", "{\"kernel\":\"/k\",\"cmdline\":\"a\\uffffb\"}",
    "$.boot.cmdline: must not contain newlines or control characters" },
  { "boot-cmdline-nul", "boot", "{\"kernel\":\"/k\",\"cmdline\":\"a\\u0000b\"}",
    "$.boot.cmdline: must not contain NUL characters" },
  { "boot-cmdline-too-long", "boot", NULL, "$.boot.cmdline: must be at most 2047 bytes",
    make_long_cmdline },
  /* network */
  { "network-string", "network", "\"nat\"", "$.network: expected an object" },
  { "network-no-mode", "network", "{}", "$.network: missing required key \"mode\"" },
  { "network-mode", "network", "{\"mode\":\"bridge\"}",
    "$.network.mode: unknown mode \"bridge\" (expected \"none\" or \"nat\")" },
  { "network-unknown-key", "network", "{\"mode\":\"nat\",\"dns\":true}",
    "$.network.dns: unknown key" },
  { "forwards-without-nat", "network",
    "{\"mode\":\"none\",\"forwards\":[" FWD ("\"tcp\"", "80", "80") "]}",
    "$.network.forwards: port forwards need mode \"nat\"" },
  { "forwards-object", "network", "{\"mode\":\"nat\",\"forwards\":{}}",
    "$.network.forwards: expected an array" },
  { "forward-not-object", "network", NAT ("1"), "$.network.forwards[0]: expected an object" },
  { "forward-protocol", "network", NAT (FWD ("\"sctp\"", "80", "80")),
    "$.network.forwards[0].protocol: unknown protocol \"sctp\" (expected \"tcp\" or \"udp\")" },
  { "forward-host-zero", "network", NAT (FWD ("\"tcp\"", "0", "80")),
    "$.network.forwards[0].host: expected an integer from 1 to 65535" },
  { "forward-guest-big", "network", NAT (FWD ("\"tcp\"", "80", "65536")),
    "$.network.forwards[0].guest: expected an integer from 1 to 65535" },
  { "forward-missing-guest", "network", NAT ("{\"protocol\":\"tcp\",\"host\":80}"),
    "$.network.forwards[0]: missing required key \"guest\"" },
  { "forward-duplicate", "network",
    NAT (FWD ("\"tcp\"", "8080", "80") "," FWD ("\"udp\"", "8080", "80") "," FWD ("\"tcp\"", "8080",
                                                                                  "81")),
    "$.network.forwards[2]: duplicate forward of tcp host port 8080" },
  { "forwards-too-many", "network", NULL,
    "$.network.forwards: at most 64 forwards allowed, found 65", make_65_forwards },
  /* display */
  { "display-unknown", "display", "\"rdp\"",
    "$.display: unknown display \"rdp\" (expected \"none\", \"vnc\" or \"spice\")" },
  { "display-bool", "display", "true", "$.display: expected \"none\", \"vnc\" or \"spice\"" },
  /* tags */
  { "tags-string", "tags", "\"corp\"", "$.tags: expected an array" },
  { "tags-upper", "tags", "[\"Corp\"]", "$.tags[0]: invalid tag \"Corp\" " TAG_RULE },
  { "tags-dash-first", "tags", "[\"ok\",\"-x\"]", "$.tags[1]: invalid tag \"-x\" " TAG_RULE },
  { "tags-too-long", "tags", "[\"abcdefghijklmnopqrstuvwxyz0123456\"]",
    "$.tags[0]: invalid tag \"abcdefghijklmnopqrstuvwxyz0123456\" " TAG_RULE },
  { "tags-number", "tags", "[1]", "$.tags[0]: expected a string" },
  { "tags-duplicate", "tags", "[\"a\",\"b\",\"a\"]", "$.tags[2]: duplicate tag \"a\"" },
  { "tags-too-many", "tags", NULL, "$.tags: at most 32 tags allowed, found 33", make_33_tags },
  /* services */
  { "services-object", "services", "{}", "$.services: expected an array" },
  { "service-no-dot", "services", "[{\"name\":\"sync\"}]",
    "$.services[0].name: invalid service name \"sync\" (expected a reverse-DNS name like "
    "\"org.example.Sync1\")" },
  { "service-digit-element", "services", "[{\"name\":\"org.1example.X\"}]",
    "$.services[0].name: invalid service name \"org.1example.X\" (expected a reverse-DNS name "
    "like \"org.example.Sync1\")" },
  { "service-empty-element", "services", "[{\"name\":\"org..X\"}]",
    "$.services[0].name: invalid service name \"org..X\" (expected a reverse-DNS name like "
    "\"org.example.Sync1\")" },
  { "service-no-name", "services", "[{\"description\":\"x\"}]",
    "$.services[0]: missing required key \"name\"" },
  { "service-unknown-key", "services", "[{\"name\":\"org.a.B\",\"desc\":\"x\"}]",
    "$.services[0].desc: unknown key" },
  { "service-duplicate", "services", "[{\"name\":\"org.a.B\"},{\"name\":\"org.a.B\"}]",
    "$.services[1].name: duplicate service \"org.a.B\"" },
  { "service-description", "services", "[{\"name\":\"org.a.B\",\"description\":7}]",
    "$.services[0].description: expected a string" },
  { "services-too-many", "services", NULL, "$.services: at most 64 services allowed, found 65",
    make_65_services },
  /* devices */
  { "devices-object", "devices", "{}", "$.devices: expected an array" },
  { "device-no-type", "devices", "[{}]", "$.devices[0]: missing required key \"type\"" },
  { "device-type", "devices", "[{\"type\":\"firewire\"}]",
    "$.devices[0].type: unknown device type \"firewire\" (expected \"usb\", \"pci\" or "
    "\"input\")" },
  { "device-not-object", "devices", "[\"usb\"]", "$.devices[0]: expected an object" },
  { "usb-short-vendor", "devices", USB ("\"46d\"", "\"c52b\""),
    "$.devices[0].vendor: expected 4 hex digits" },
  { "usb-bad-product", "devices", USB ("\"046d\"", "\"zzzz\""),
    "$.devices[0].product: expected 4 hex digits" },
  { "usb-numeric-vendor", "devices", USB ("1133", "\"c52b\""),
    "$.devices[0].vendor: expected 4 hex digits" },
  { "usb-0x-vendor", "devices", USB ("\"0x46d\"", "\"c52b\""),
    "$.devices[0].vendor: expected 4 hex digits" },
  { "usb-missing-product", "devices", "[{\"type\":\"usb\",\"vendor\":\"046d\"}]",
    "$.devices[0]: missing required key \"product\"" },
  { "usb-third", "devices",
    "[{\"type\":\"input\",\"input\":\"mouse\"},"
    "{\"type\":\"usb\",\"vendor\":\"046d\",\"product\":\"c52b\"},"
    "{\"type\":\"usb\",\"vendor\":\"04 d\",\"product\":\"c52b\"}]",
    "$.devices[2].vendor: expected 4 hex digits" },
  { "usb-serial-empty", "devices",
    "[{\"type\":\"usb\",\"vendor\":\"046d\",\"product\":\"c52b\",\"serial\":\"\"}]",
    "$.devices[0].serial: must be 1 to 128 characters" },
  { "usb-serial-long", "devices", NULL, "$.devices[0].serial: must be 1 to 128 characters",
    make_long_serial },
  { "usb-address-key", "devices",
    "[{\"type\":\"usb\",\"vendor\":\"046d\",\"product\":\"c52b\",\"address\":\"x\"}]",
    "$.devices[0].address: unknown key" },
  { "pci-address", "devices", "[{\"type\":\"pci\",\"address\":\"0000:01:00\"}]",
    "$.devices[0].address: expected a PCI address like \"0000:01:00.0\"" },
  { "pci-slot", "devices", "[{\"type\":\"pci\",\"address\":\"0000:00:20.0\"}]",
    "$.devices[0].address: expected a PCI address like \"0000:01:00.0\"" },
  { "pci-function", "devices", "[{\"type\":\"pci\",\"address\":\"0000:00:01.8\"}]",
    "$.devices[0].address: expected a PCI address like \"0000:01:00.0\"" },
  { "pci-follow-focus", "devices",
    "[{\"type\":\"pci\",\"address\":\"0000:01:00.0\",\"mode\":\"follow-focus\"}]",
    "$.devices[0].mode: follow-focus is not supported for pci devices" },
  { "pci-duplicate", "devices",
    "[{\"type\":\"pci\",\"address\":\"0000:01:00.0\"},{\"type\":\"pci\",\"address\":\"0000:01:"
    "00.0\"}]",
    "$.devices[1].address: duplicate pci device 0000:01:00.0" },
  { "pci-duplicate-case", "devices",
    "[{\"type\":\"pci\",\"address\":\"0000:0a:00.0\"},{\"type\":\"pci\",\"address\":\"0000:0A:"
    "00.0\"}]",
    "$.devices[1].address: duplicate pci device 0000:0a:00.0" },
  { "input-type", "devices", "[{\"type\":\"input\",\"input\":\"joystick\"}]",
    "$.devices[0].input: unknown input type \"joystick\" (expected \"keyboard\", \"mouse\" or "
    "\"tablet\")" },
  { "input-missing", "devices", "[{\"type\":\"input\"}]",
    "$.devices[0]: missing required key \"input\"" },
  { "device-mode", "devices", "[{\"type\":\"input\",\"input\":\"mouse\",\"mode\":\"sticky\"}]",
    "$.devices[0].mode: unknown mode \"sticky\" (expected \"pinned\" or \"follow-focus\")" },
  { "input-vendor-key", "devices", "[{\"type\":\"input\",\"input\":\"mouse\",\"vendor\":\"046d\"}]",
    "$.devices[0].vendor: unknown key" },
  { "devices-too-many", "devices", NULL, "$.devices: at most 32 devices allowed, found 33",
    make_33_devices },
  { "service-name-too-long", "services", NULL,
    "$.services[0].name: invalid service name \"a.xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx...\" "
    "(expected a reverse-DNS name like \"org.example.Sync1\")",
    make_long_service },
  /* keys that do not exist */
  { "unknown-key", "colour", "\"red\"", "$.colour: unknown key" },
  { "unknown-key-quoted", "my key", "1", "$[\"my key\"]: unknown key" },
  { "unknown-key-control", "a\nb", "1", "$[\"a\\nb\"]: unknown key" },
  { "unknown-key-case", "Name", "\"demo\"", "$.Name: unknown key" },
};

static void
test_bad_key (gconstpointer data)
{
  const BadKeyCase *c = data;
  g_autofree gchar *made = NULL;
  g_autofree gchar *text = NULL;
  g_autoptr (GError) error = NULL;
  g_autoptr (DhfManifest) manifest = NULL;

  if (c->make_value != NULL)
    made = c->make_value ();
  text = manifest_with (c->key, made != NULL ? made : c->value);
  manifest = dhf_manifest_parse (text, -1, "/base", &error);
  g_assert_null (manifest);
  assert_problem (error, c->problem);
}

/* Bad text: the document itself */

typedef struct
{
  const gchar *label;
  const gchar *text;
  gssize length; /* -1: NUL-terminated */
  const gchar *problem;
} BadTextCase;

static const BadTextCase bad_text_cases[] = {
  { "empty", "", -1, "$: manifest is empty" },
  { "white-space", " \n\t ", -1, "$: manifest is empty" },
  { "array", "[]", -1, "$: expected a JSON object, found array" },
  { "number", "42", -1, "$: expected a JSON object, found int" },
  { "string", "\"x\"", -1, "$: expected a JSON object, found string" },
  { "null", "null", -1, "$: expected a JSON object, found null" },
  { "unterminated", "{", -1, "$: invalid JSON at line 1, column 2: unexpected end of data" },
  { "bad-value", "{\n  \"name\": x\n}", -1,
    "$: invalid JSON at line 2, column 11: unexpected character" },
  { "column-in-characters", "{\"vendor\": \"été\", x}", -1,
    "$: invalid JSON at line 1, column 19: quoted object property name expected" },
  { "trailing-data", "{} x", -1, "$: invalid JSON at line 1, column 4: unexpected character" },
  { "two-objects", "{}{}", -1, "$: invalid JSON at line 1, column 3: unexpected character" },
  { "trailing-comma", "{\"a\":1,}", -1,
    "$: invalid JSON at line 1, column 8: unexpected character" },
  { "comment", "{\"a\": /* c */ 1}", -1,
    "$: invalid JSON at line 1, column 7: unexpected character" },
  { "missing-colon", "{\"a\" 1}", -1,
    "$: invalid JSON at line 1, column 6: object property name separator ':' expected" },
  { "single-quotes", "{'name': 1}", -1,
    "$: invalid JSON at line 1, column 2: single-quoted strings are not JSON" },
  { "duplicate-key",
    "{\"manifest-version\":1,\"name\":\"a\",\"vendor\":\"v\",\"version\":\"1\",\"role\":"
    "\"service\","
    "\"memory\":\"64MiB\",\"vcpus\":1,\"name\":\"b\"}",
    -1, "$.name: duplicate key" },
  { "duplicate-nested-key", "{\"network\":{\"mode\":\"nat\",\"mode\":\"none\"}}", -1,
    "$.network.mode: duplicate key" },
  { "duplicate-key-in-array", "{\"devices\":[{},{\"type\":\"usb\",\"ty\\u0070e\":\"pci\"}]}", -1,
    "$.devices[1].type: duplicate key" },
  { "nul-in-key", "{\"name\\u0000x\":\"a\"}", -1, "$: keys must not contain NUL characters" },
  { "nul-byte", "{\"a\":1}\0", 8, "$: manifest contains a NUL byte at line 1, column 8" },
  { "nul-byte-line-2", "{\n\"a\":\0}", 8, "$: manifest contains a NUL byte at line 2, column 5" },
  { "latin1", "{\"vendor\":\"caf\xe9\"}", -1,
    "$: manifest is not valid UTF-8 at line 1, column 15" },
  { "overlong-utf8", "{\n\"vendor\":\"\xc0\xaf\"}", -1,
    "$: manifest is not valid UTF-8 at line 2, column 11" },
  { "surrogate-utf8", "{\"a\":\"\xed\xa0\x80\"}", -1,
    "$: manifest is not valid UTF-8 at line 1, column 7" },
};

static void
test_bad_text (gconstpointer data)
{
  const BadTextCase *c = data;
  g_autoptr (GError) error = NULL;
  g_autoptr (DhfManifest) manifest = dhf_manifest_parse (c->text, c->length, "/base", &error);

  g_assert_null (manifest);
  assert_problem (error, c->problem);
}

static void
test_many_problems (void)
{
  static const gchar *const expected[] = {
    "invalid manifest (9 problems):",
    "$.colour: unknown key",
    "$.name: invalid name \"Bad Name\" " NAME_RULE,
    "$.vendor: must be 1 to 64 characters",
    "$.version: invalid version \"1.02\" " VERSION_RULE,
    "$.role: unknown role \"desktop\" (expected \"environment\" or \"service\")",
    "$.memory: expected a size like \"512MiB\"",
    "$.vcpus: expected an integer from 1 to 64",
    "$.network.forwards: port forwards need mode \"nat\"",
    "$.devices[2].vendor: expected 4 hex digits",
    NULL,
  };
  g_autoptr (GError) error = NULL;
  g_autofree gchar *text = read_test_file ("manifests", "many-problems.json", NULL);
  g_autoptr (DhfManifest) manifest = dhf_manifest_parse (text, -1, "/base", &error);
  g_auto (GStrv) lines = NULL;

  g_assert_null (manifest);
  g_assert_error (error, DHF_ERROR, DHF_ERROR_INVALID_MANIFEST);
  lines = g_strsplit (error->message, "\n", -1);
  g_assert_cmpstrv (lines, expected);
}

static void
test_one_problem_format (void)
{
  g_autoptr (GError) error = NULL;
  g_autofree gchar *text = manifest_with ("vcpus", "0");
  g_autoptr (DhfManifest) manifest = dhf_manifest_parse (text, -1, NULL, &error);

  g_assert_null (manifest);
  g_assert_cmpstr (error->message, ==,
                   "invalid manifest (1 problem):\n$.vcpus: expected an integer from 1 to 64");
}

static void
test_problem_cap (void)
{
  g_autoptr (GString) text = g_string_new ("{\"manifest-version\":1");
  g_autoptr (GError) error = NULL;
  g_autoptr (DhfManifest) manifest = NULL;
  g_auto (GStrv) lines = NULL;

  for (guint i = 0; i < 60; i++)
    g_string_append_printf (text, ",\"extra%u\":%u", i, i);
  g_string_append_c (text, '}');
  manifest = dhf_manifest_parse (text->str, -1, NULL, &error);
  g_assert_null (manifest);
  lines = g_strsplit (error->message, "\n", -1);
  /* 60 unknown keys and 6 missing required ones */
  g_assert_cmpstr (lines[0], ==, "invalid manifest (66 problems):");
  g_assert_cmpuint (g_strv_length (lines), ==, 1 + 50 + 1);
  g_assert_cmpstr (lines[1], ==, "$.extra0: unknown key");
  g_assert_cmpstr (lines[50], ==, "$.extra49: unknown key");
  g_assert_cmpstr (lines[51], ==, "... and 16 more");
}

static void
test_unknown_keys_with_newer_version (void)
{
  g_autoptr (GError) error = NULL;
  g_autoptr (DhfManifest) manifest
      = dhf_manifest_parse ("{\"manifest-version\":2,\"hologram\":true}", -1, NULL, &error);

  g_assert_null (manifest);
  g_assert_cmpstr (
      error->message, ==,
      "invalid manifest (1 problem):\n$.manifest-version: unsupported manifest version 2 (this "
      "dhfd reads 1)");
}

static void
test_huge_input (void)
{
  gsize size = DHF_MANIFEST_MAX_SIZE + 1;
  g_autofree gchar *text = g_malloc (size + 1);
  g_autoptr (GError) error = NULL;
  g_autoptr (DhfManifest) manifest = NULL;

  memset (text, ' ', size);
  text[0] = '{';
  text[size - 1] = '}';
  text[size] = '\0';
  manifest = dhf_manifest_parse (text, -1, NULL, &error);
  g_assert_null (manifest);
  assert_problem (error, "$: manifest is larger than 262144 bytes");

  /* Exactly at the limit is read (and fails for other reasons). */
  g_clear_error (&error);
  manifest = dhf_manifest_parse (text + 1, (gssize) size - 1, NULL, &error);
  g_assert_null (manifest);
  assert_problem (error, "$: invalid JSON at line 1, column 262144: unexpected character");
}

static void
test_deep_nesting (void)
{
  static const guint depths[] = { 17, 100, 100000 };
  g_autoptr (GError) error = NULL;
  g_autoptr (DhfManifest) manifest = NULL;

  /* json-c stops at its depth limit (16 here) instead of recursing on. */
  for (gsize i = 0; i < G_N_ELEMENTS (depths); i++)
    {
      g_autoptr (GString) text = g_string_new ("{\"tags\":");

      for (guint j = 0; j < depths[i]; j++)
        g_string_append_c (text, '[');
      for (guint j = 0; j < depths[i]; j++)
        g_string_append_c (text, ']');
      g_string_append_c (text, '}');
      g_clear_error (&error);
      manifest = dhf_manifest_parse (text->str, -1, NULL, &error);
      g_assert_null (manifest);
      assert_problem (error, "$: invalid JSON at line 1, column 24: nesting too deep");
    }

  /* Nesting within the limit is only wrong in type. */
  g_clear_error (&error);
  manifest = dhf_manifest_parse ("{\"tags\":[[[[\"a\"]]]]}", -1, NULL, &error);
  g_assert_null (manifest);
  assert_problem (error, "$.tags[0]: expected a string");
}

static void
test_non_utf8_from_escapes (void)
{
  g_autoptr (GError) error = NULL;
  /* A lone surrogate escape decodes to U+FFFD, which is fine in a vendor. */
  g_autofree gchar *text = manifest_with ("vendor", "\"AC\\ud800ME\"");
  g_autoptr (DhfManifest) manifest = dhf_manifest_parse (text, -1, NULL, &error);

  g_assert_no_error (error);
  g_assert_true (g_utf8_validate (dhf_manifest_get_vendor (manifest), -1, NULL));
}

static void
test_xml_hostile_characters (void)
{
  static const gchar *const values[] = { "\"a\\uffffb\"", "\"a\\ufffeb\"", "\"a\\u007fb\"" };

  for (gsize i = 0; i < G_N_ELEMENTS (values); i++)
    {
      g_autofree gchar *text = manifest_with ("description", values[i]);
      g_autoptr (GError) error = NULL;
      g_autoptr (DhfManifest) manifest = dhf_manifest_parse (text, -1, NULL, &error);

      g_assert_null (manifest);
      assert_problem (
          error, "$.description: must not contain control characters other than newline and tab");
    }
}

/* Sizes */

static void
test_size_parse (void)
{
  static const struct
  {
    const gchar *text;
    gboolean ok;
    guint64 bytes;
  } cases[] = {
    { "0B", TRUE, 0 },
    { "1B", TRUE, 1 },
    { "512MiB", TRUE, G_GUINT64_CONSTANT (512) << 20 },
    { "512M", TRUE, G_GUINT64_CONSTANT (512) << 20 },
    { "2GiB", TRUE, G_GUINT64_CONSTANT (2) << 30 },
    { "2G", TRUE, G_GUINT64_CONSTANT (2) << 30 },
    { "1048576KiB", TRUE, G_GUINT64_CONSTANT (1) << 30 },
    { "1K", TRUE, 1024 },
    { "1TiB", TRUE, G_GUINT64_CONSTANT (1) << 40 },
    { "3T", TRUE, G_GUINT64_CONSTANT (3) << 40 },
    { "007MiB", TRUE, G_GUINT64_CONSTANT (7) << 20 },
    { "18446744073709551615B", TRUE, G_MAXUINT64 },
    { "16777215TiB", TRUE, G_GUINT64_CONSTANT (16777215) << 40 },
    { "18446744073709551616B", FALSE, 0 },
    { "16777216TiB", FALSE, 0 },
    { "99999999999999999999999GiB", FALSE, 0 },
    { "", FALSE, 0 },
    { "MiB", FALSE, 0 },
    { "512", FALSE, 0 },
    { "512 MiB", FALSE, 0 },
    { " 512MiB", FALSE, 0 },
    { "512MiB ", FALSE, 0 },
    { "512mib", FALSE, 0 },
    { "512MB", FALSE, 0 },
    { "512KB", FALSE, 0 },
    { "1.5GiB", FALSE, 0 },
    { "-1GiB", FALSE, 0 },
    { "+1GiB", FALSE, 0 },
    { "0x10MiB", FALSE, 0 },
    { "1PiB", FALSE, 0 },
  };
  guint64 bytes;

  for (gsize i = 0; i < G_N_ELEMENTS (cases); i++)
    {
      gboolean ok = dhf_size_parse (cases[i].text, &bytes);

      if (ok != cases[i].ok)
        g_test_fail_printf ("dhf_size_parse (\"%s\") returned %d", cases[i].text, ok);
      else if (ok && bytes != cases[i].bytes)
        g_test_fail_printf ("dhf_size_parse (\"%s\") gave %" G_GUINT64_FORMAT, cases[i].text,
                            bytes);
    }
  g_assert_false (dhf_size_parse (NULL, &bytes));
}

/* Versions */

static void
test_version_compare (void)
{
  static const struct
  {
    const gchar *a;
    const gchar *b;
    gint result;
  } cases[] = {
    { "1", "1", 0 },
    { "1", "1.0", 0 },
    { "1.0.0.0", "1", 0 },
    { "1", "2", -1 },
    { "1.2", "1.10", -1 },
    { "1.9.9", "2", -1 },
    { "2.0.1", "2.0", 1 },
    { "0.9", "0.10", -1 },
    { "999999", "1000", 1 },
    { "1.0-rc1", "1.0", -1 },
    { "1.0", "1.0-rc1", 1 },
    { "1.0-alpha", "1.0-beta", -1 },
    { "1.0-rc.2", "1.0-rc.10", -1 },
    { "1.0-rc.1", "1.0-rc", 1 },
    { "1.0-1", "1.0-alpha", -1 },
    { "1.0-10", "1.0-9", 1 },
    { "1.0-007", "1.0-7", 0 },
    { "1.0-99999999999999999999999", "1.0-99999999999999999999998", 1 },
    { "1.0-rc1", "1.0.1-alpha", -1 },
    { "1.0-A", "1.0-a", -1 },
    { "1.0-rc1", "1.0-rc1", 0 },
    /* Invalid versions sort first and among themselves by strcmp(). */
    { "bogus", "0", -1 },
    { "1", "bogus", 1 },
    { "a", "b", -1 },
    { NULL, "1", -1 },
    { NULL, NULL, 0 },
    { NULL, "junk", -1 },
  };

  for (gsize i = 0; i < G_N_ELEMENTS (cases); i++)
    {
      gint forward = dhf_version_compare (cases[i].a, cases[i].b);
      gint backward = dhf_version_compare (cases[i].b, cases[i].a);

      if (forward != cases[i].result || backward != -cases[i].result)
        g_test_fail_printf ("dhf_version_compare (%s, %s) = %d, reverse %d; expected %d",
                            cases[i].a, cases[i].b, forward, backward, cases[i].result);
    }
}

static void
test_version_valid (void)
{
  static const gchar *const good[]
      = { "0", "1.2.3", "999999.0.0.999999", "1.0-rc1", "1-a.b.c", "2.0-20240101" };

  for (gsize i = 0; i < G_N_ELEMENTS (good); i++)
    {
      g_autofree gchar *value = g_strdup_printf ("\"%s\"", good[i]);
      g_autofree gchar *text = manifest_with ("version", value);
      g_autoptr (GError) error = NULL;
      g_autoptr (DhfManifest) manifest = dhf_manifest_parse (text, -1, NULL, &error);

      g_assert_no_error (error);
      g_assert_cmpstr (dhf_manifest_get_version (manifest), ==, good[i]);
    }
}

/* Canonical JSON */

static void
assert_round_trip (const DhfManifest *manifest)
{
  g_autofree gchar *json = dhf_manifest_to_json (manifest);
  g_autoptr (GError) error = NULL;
  g_autoptr (DhfManifest) again = dhf_manifest_parse (json, -1, NULL, &error);
  g_autofree gchar *json_again = NULL;

  g_assert_no_error (error);
  json_again = dhf_manifest_to_json (again);
  g_assert_cmpstr (json, ==, json_again);
  g_assert_cmpstr (dhf_manifest_get_name (again), ==, dhf_manifest_get_name (manifest));
  g_assert_cmpstr (dhf_manifest_get_vendor (again), ==, dhf_manifest_get_vendor (manifest));
  g_assert_cmpstr (dhf_manifest_get_description (again), ==,
                   dhf_manifest_get_description (manifest));
  g_assert_cmpuint (dhf_manifest_get_memory (again), ==, dhf_manifest_get_memory (manifest));
  g_assert_cmpint (dhf_manifest_get_display (again), ==, dhf_manifest_get_display (manifest));
  g_assert_cmpstr (dhf_manifest_get_disk_image (again), ==, dhf_manifest_get_disk_image (manifest));
  g_assert_cmpint (dhf_manifest_get_disk_format (again), ==,
                   dhf_manifest_get_disk_format (manifest));
  g_assert_cmpstr (dhf_manifest_get_boot_kernel (again), ==,
                   dhf_manifest_get_boot_kernel (manifest));
  g_assert_cmpstr (dhf_manifest_get_boot_initrd (again), ==,
                   dhf_manifest_get_boot_initrd (manifest));
  g_assert_cmpstr (dhf_manifest_get_boot_cmdline (again), ==,
                   dhf_manifest_get_boot_cmdline (manifest));
  g_assert_cmpuint (dhf_manifest_get_devices (again)->len, ==,
                    dhf_manifest_get_devices (manifest)->len);
}

static void
test_round_trip (void)
{
  static const gchar *const files[] = { "minimal.json", "full.json", "direct-boot.json" };

  for (gsize i = 0; i < G_N_ELEMENTS (files); i++)
    {
      g_autofree gchar *text = read_test_file ("manifests", files[i], NULL);
      g_autoptr (DhfManifest) manifest = dhf_manifest_parse (text, -1, "/srv/m", NULL);

      g_assert_nonnull (manifest);
      assert_round_trip (manifest);
    }
}

static void
test_canonical_form (void)
{
  g_autofree gchar *text = manifest_with ("disk", "\"img/a.raw\"");
  g_autoptr (DhfManifest) manifest = dhf_manifest_parse (text, -1, "/m", NULL);
  g_autofree gchar *json = dhf_manifest_to_json (manifest);

  g_assert_cmpstr (json, ==,
                   "{\"manifest-version\":1,\"name\":\"demo\",\"vendor\":\"ACME\",\"version\":"
                   "\"1.0\",\"role\":\"service\",\"memory\":\"512MiB\",\"vcpus\":1,"
                   "\"autostart\":false,\"disk\":{\"image\":\"/m/img/a.raw\",\"format\":\"raw\"},"
                   "\"network\":{\"mode\":\"none\"},\"display\":\"none\",\"tags\":[],"
                   "\"services\":[],\"devices\":[]}");
}

/* "boot" follows "disk", its keys in a fixed order whatever the input's. */
static void
test_canonical_boot (void)
{
  static const struct
  {
    const gchar *in;
    const gchar *out;
  } cases[] = {
    { "{\"cmdline\":\"console=ttyS0 \\\"q\\\" "
      "/\",\"initrd\":\"i.img\",\"kernel\":\"./k/../vmlinuz\"}",
      "\"boot\":{\"kernel\":\"/m/vmlinuz\",\"initrd\":\"/m/i.img\","
      "\"cmdline\":\"console=ttyS0 \\\"q\\\" /\"},\"network\":" },
    { "{\"kernel\":\"/v\"}", "\"boot\":{\"kernel\":\"/v\"},\"network\":" },
    { "{\"cmdline\":\"\",\"kernel\":\"/v\"}", "\"boot\":{\"kernel\":\"/v\",\"cmdline\":\"\"}," },
  };

  for (gsize i = 0; i < G_N_ELEMENTS (cases); i++)
    {
      g_autoptr (json_object) root = json_tokener_parse (minimal_json);
      g_autoptr (GError) error = NULL;
      g_autoptr (DhfManifest) manifest = NULL;
      g_autofree gchar *json = NULL;

      /* Written before "disk", as an ISV might. */
      json_object_object_add (root, "boot", json_tokener_parse (cases[i].in));
      json_object_object_add (root, "disk", json_object_new_string ("/d.qcow2"));
      manifest = dhf_manifest_parse (json_object_to_json_string (root), -1, "/m", &error);
      g_assert_no_error (error);
      json = dhf_manifest_to_json (manifest);
      g_assert_nonnull (strstr (json, "\"disk\":{\"image\":\"/d.qcow2\",\"format\":\"qcow2\"},"));
      if (strstr (json, cases[i].out) == NULL)
        g_test_fail_printf ("expected\n  %s\nin\n%s", cases[i].out, json);
      g_assert_true (strstr (json, "\"disk\"") < strstr (json, "\"boot\""));
      assert_round_trip (manifest);
    }
}

static void
test_canonical_memory (void)
{
  static const struct
  {
    const gchar *in;
    const gchar *out;
  } cases[] = {
    { "\"1024MiB\"", "\"memory\":\"1GiB\"" },  { "\"1536M\"", "\"memory\":\"1536MiB\"" },
    { "\"1T\"", "\"memory\":\"1TiB\"" },       { "\"67109888B\"", "\"memory\":\"65537KiB\"" },
    { "\"1048576K\"", "\"memory\":\"1GiB\"" },
  };

  for (gsize i = 0; i < G_N_ELEMENTS (cases); i++)
    {
      g_autofree gchar *text = manifest_with ("memory", cases[i].in);
      g_autoptr (DhfManifest) manifest = dhf_manifest_parse (text, -1, NULL, NULL);
      g_autofree gchar *json = NULL;

      g_assert_nonnull (manifest);
      json = dhf_manifest_to_json (manifest);
      g_assert_nonnull (strstr (json, cases[i].out));
      assert_round_trip (manifest);
    }
}

static void
test_canonical_escapes (void)
{
  g_autofree gchar *text
      = manifest_with ("description", "\"slash / quote \\\" backslash \\\\ tab\\t nl\\n é\"");
  g_autoptr (DhfManifest) manifest = dhf_manifest_parse (text, -1, NULL, NULL);
  g_autofree gchar *json = NULL;

  g_assert_nonnull (manifest);
  json = dhf_manifest_to_json (manifest);
  g_assert_nonnull (strstr (json, "\"slash / quote \\\" backslash \\\\ tab\\t nl\\n é\""));
  assert_round_trip (manifest);
}

int
main (int argc, char **argv)
{
  g_test_init (&argc, &argv, NULL);

  g_test_add_func ("/manifest/good/minimal", test_minimal);
  g_test_add_func ("/manifest/good/environment-defaults-to-vnc", test_environment_defaults_to_vnc);
  g_test_add_func ("/manifest/good/full", test_full);
  g_test_add_func ("/manifest/good/examples", test_examples);
  g_test_add_func ("/manifest/good/ref-unref", test_ref_unref);
  g_test_add_func ("/manifest/good/explicit-length", test_explicit_length);
  g_test_add_func ("/manifest/good/byte-order-mark", test_byte_order_mark);
  g_test_add_func ("/manifest/good/lone-surrogate-escape", test_non_utf8_from_escapes);
  g_test_add_func ("/manifest/good/versions", test_version_valid);
  g_test_add_func ("/manifest/disk/paths", test_disk_paths);
  g_test_add_func ("/manifest/disk/relative-needs-base", test_relative_disk_needs_base);
  g_test_add_func ("/manifest/boot/file", test_boot_file);
  g_test_add_func ("/manifest/boot/paths", test_boot_paths);
  g_test_add_func ("/manifest/boot/relative-needs-base", test_boot_relative_needs_base);
  g_test_add_func ("/manifest/boot/cmdline-limit", test_boot_cmdline_limit);
  g_test_add_func ("/manifest/boot/problems-collected", test_boot_problems_collected);

  for (gsize i = 0; i < G_N_ELEMENTS (bad_key_cases); i++)
    {
      g_autofree gchar *path = g_strdup_printf ("/manifest/bad/%s", bad_key_cases[i].label);
      g_test_add_data_func (path, &bad_key_cases[i], test_bad_key);
    }
  for (gsize i = 0; i < G_N_ELEMENTS (bad_text_cases); i++)
    {
      g_autofree gchar *path = g_strdup_printf ("/manifest/bad-text/%s", bad_text_cases[i].label);
      g_test_add_data_func (path, &bad_text_cases[i], test_bad_text);
    }
  g_test_add_func ("/manifest/problems/many", test_many_problems);
  g_test_add_func ("/manifest/problems/one", test_one_problem_format);
  g_test_add_func ("/manifest/problems/cap", test_problem_cap);
  g_test_add_func ("/manifest/problems/newer-version", test_unknown_keys_with_newer_version);
  g_test_add_func ("/manifest/limits/huge-input", test_huge_input);
  g_test_add_func ("/manifest/limits/deep-nesting", test_deep_nesting);
  g_test_add_func ("/manifest/limits/xml-hostile-characters", test_xml_hostile_characters);
  g_test_add_func ("/manifest/size/parse", test_size_parse);
  g_test_add_func ("/manifest/version/compare", test_version_compare);
  g_test_add_func ("/manifest/json/round-trip", test_round_trip);
  g_test_add_func ("/manifest/json/canonical-form", test_canonical_form);
  g_test_add_func ("/manifest/json/canonical-memory", test_canonical_memory);
  g_test_add_func ("/manifest/json/canonical-boot", test_canonical_boot);
  g_test_add_func ("/manifest/json/canonical-escapes", test_canonical_escapes);

  return g_test_run ();
}
