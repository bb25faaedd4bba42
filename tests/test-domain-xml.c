/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include "config.h"

#include <libvirt/libvirt.h>
#include <libvirt/virterror.h>
#include <string.h>
#include <unistd.h>

#include <glib/gstdio.h>

#include "dhf-domain-xml.h"

static const gchar base_json[]
    = "{\"manifest-version\":1,\"name\":\"demo\",\"vendor\":\"ACME\",\"version\":\"1.0\","
      "\"role\":\"environment\",\"memory\":\"1GiB\",\"vcpus\":2,\"disk\":\"/img/demo.qcow2\"}";

static const gchar hostile_json[]
    = "{\"manifest-version\":1,\"name\":\"hostile\",\"vendor\":\"<'&\\\">\",\"version\":\"1\","
      "\"description\":\"</description><evil/>&amp; ]]>\",\"role\":\"service\","
      "\"memory\":\"64MiB\",\"vcpus\":1,\"display\":\"vnc\"}";

/* Direct kernel boot, with strings XML must escape. */
static const gchar boot_json[]
    = "{\"manifest-version\":1,\"name\":\"demo\",\"vendor\":\"ACME\",\"version\":\"1.0\","
      "\"role\":\"service\",\"memory\":\"128MiB\",\"vcpus\":1,\"boot\":{\"kernel\":"
      "\"/guests/it's <k>/vmlinuz\",\"initrd\":\"/guests/initrd&.img\",\"cmdline\":"
      "\"console=ttyS0 quiet x=\\\"<&>\\\"\"}}";

static DhfManifest *
manifest_from (const gchar *json)
{
  g_autoptr (GError) error = NULL;
  DhfManifest *manifest = dhf_manifest_parse (json, -1, NULL, &error);

  g_assert_no_error (error);
  return manifest;
}

static gchar *
manifest_json_with (const gchar *extra)
{
  /* Splice extra keys in before the closing brace. */
  return g_strdup_printf ("%.*s,%s}", (int) strlen (base_json) - 1, base_json, extra);
}

static void
assert_contains (const gchar *haystack, const gchar *needle)
{
  if (strstr (haystack, needle) == NULL)
    g_test_fail_printf ("expected\n  %s\nin\n%s", needle, haystack);
}

static void
assert_lacks (const gchar *haystack, const gchar *needle)
{
  if (strstr (haystack, needle) != NULL)
    g_test_fail_printf ("did not expect\n  %s\nin\n%s", needle, haystack);
}

/* Element texts by name, to check that the XML is well-formed and that
 * escaped strings read back as they went in. */
typedef struct
{
  GHashTable *texts; /* element name → text of its last occurrence */
  GString *current;
} TextCollector;

static void
collect_start (GMarkupParseContext *context, const gchar *element_name,
               const gchar **attribute_names, const gchar **attribute_values, gpointer user_data,
               GError **error)
{
  TextCollector *collector = user_data;

  g_string_truncate (collector->current, 0);
}

static void
collect_end (GMarkupParseContext *context, const gchar *element_name, gpointer user_data,
             GError **error)
{
  TextCollector *collector = user_data;

  g_hash_table_insert (collector->texts, g_strdup (element_name),
                       g_strdup (collector->current->str));
  g_string_truncate (collector->current, 0);
}

static void
collect_text (GMarkupParseContext *context, const gchar *text, gsize text_len, gpointer user_data,
              GError **error)
{
  TextCollector *collector = user_data;

  g_string_append_len (collector->current, text, (gssize) text_len);
}

static GHashTable *
parse_well_formed (const gchar *xml)
{
  static const GMarkupParser parser = {
    .start_element = collect_start,
    .end_element = collect_end,
    .text = collect_text,
  };
  g_autoptr (GString) current = g_string_new (NULL);
  TextCollector collector = {
    .texts = g_hash_table_new_full (g_str_hash, g_str_equal, g_free, g_free),
    .current = current,
  };
  g_autoptr (GMarkupParseContext) context
      = g_markup_parse_context_new (&parser, 0, &collector, NULL);
  g_autoptr (GError) error = NULL;

  g_markup_parse_context_parse (context, xml, -1, &error);
  g_assert_no_error (error);
  g_markup_parse_context_end_parse (context, &error);
  g_assert_no_error (error);
  return collector.texts;
}

/* The domain XML of the manifest json with options, checked well formed. */
static gchar *
build_with (const gchar *json, const DhfDomainXmlOptions *options)
{
  g_autoptr (DhfManifest) manifest = manifest_from (json);
  gchar *xml = dhf_domain_xml_build (manifest, options);

  g_hash_table_unref (parse_well_formed (xml));
  return xml;
}

static gchar *
build (const gchar *json, const gchar *domain_type, const gchar *disk_path)
{
  DhfDomainXmlOptions options = {
    .domain_type = domain_type,
    .disk_path = disk_path,
  };

  return build_with (json, &options);
}

/* Building */

static void
test_common_elements (void)
{
  static const gchar *const types[] = { "kvm", "qemu", "xen", "test" };

  for (gsize i = 0; i < G_N_ELEMENTS (types); i++)
    {
      g_autofree gchar *xml = build (base_json, types[i], "/var/lib/dhf/demo.qcow2");
      g_autofree gchar *domain = g_strdup_printf ("<domain type='%s'>", types[i]);

      g_assert_true (g_str_has_prefix (xml, domain));
      assert_contains (xml, "<name>demo</name>");
      assert_contains (xml, "<title>ACME demo</title>");
      assert_contains (xml, "<memory unit='KiB'>1048576</memory>");
      assert_contains (xml, "<vcpu>2</vcpu>");
      assert_contains (xml, "<type arch='x86_64'>hvm</type>");
      assert_contains (xml, "<boot dev='hd'/>");
      assert_contains (xml, "<acpi/>");
      assert_contains (xml, "<apic/>");
      assert_contains (xml, "<on_poweroff>destroy</on_poweroff>");
      assert_contains (xml, "<on_reboot>restart</on_reboot>");
      assert_contains (xml, "<on_crash>destroy</on_crash>");
      assert_contains (xml, "<metadata><dhf:appliance xmlns:dhf='urn:dhf:appliance:1' schema='1'>"
                            "<dhf:manifest>{&quot;manifest-version&quot;:1,");
      assert_contains (xml, "<dhf:storage>/var/lib/dhf/demo.qcow2</dhf:storage>");
      assert_contains (xml, "<disk type='file' device='disk'>");
      assert_contains (xml, "<driver name='qemu' type='qcow2'/>");
      assert_contains (xml, "<source file='/var/lib/dhf/demo.qcow2'/>");
      assert_contains (xml, "<graphics type='vnc' autoport='yes'>");
      assert_contains (xml, "<listen type='address' address='127.0.0.1'/>");
      assert_lacks (xml, "<uuid>");
      assert_lacks (xml, "<description>");
      assert_lacks (xml, "<interface");
      assert_lacks (xml, "<hostdev");
    }
}

static void
test_qemu_devices (void)
{
  static const gchar *const types[] = { "kvm", "qemu" };

  for (gsize i = 0; i < G_N_ELEMENTS (types); i++)
    {
      g_autofree gchar *xml = build (base_json, types[i], "/d.qcow2");

      assert_contains (xml, "<target dev='vda' bus='virtio'/>");
      assert_contains (xml, "<controller type='usb' model='qemu-xhci'/>");
      assert_contains (
          xml, "<rng model='virtio'>\n      <backend model='random'>/dev/urandom</backend>");
      assert_contains (xml, "<controller type='virtio-serial'/>");
      assert_contains (xml, "<channel type='unix'>\n      <source mode='bind'/>\n"
                            "      <target type='virtio' name='org.dhf.xdm.0'/>\n    </channel>");
      assert_contains (xml, "<model type='virtio'/>");
    }
}

static void
test_xen_devices (void)
{
  g_autofree gchar *xml = build (base_json, "xen", "/d.qcow2");

  assert_contains (xml, "<driver name='qemu' type='qcow2'/>");
  assert_contains (xml, "<target dev='xvda' bus='xen'/>");
  assert_contains (xml,
                   "<channel type='unix'>\n      <source mode='bind' path='" DHF_XDM_XEN_SOCKET_DIR
                   "/demo.sock'/>\n      <target type='xen' name='org.dhf.xdm.0'/>");
  assert_contains (xml, "<model type='vga'/>");
  assert_lacks (xml, "virtio");
  assert_lacks (xml, "<controller");
}

static void
test_test_devices (void)
{
  g_autofree gchar *xml = build (base_json, "test", "/d.qcow2");

  assert_contains (xml, "<target dev='vda' bus='virtio'/>");
  assert_contains (xml, "<controller type='virtio-serial'/>");
  assert_contains (xml, "<target type='virtio' name='org.dhf.xdm.0'/>");
  assert_lacks (xml, "qemu-xhci");
  assert_lacks (xml, "<rng");
}

static void
test_raw_disk (void)
{
  g_autoptr (GString) json = g_string_new (base_json);
  g_autofree gchar *xml = NULL;

  g_string_replace (json, "demo.qcow2", "demo.img", 1);
  xml = build (json->str, "kvm", "/d.img");
  assert_contains (xml, "<driver name='qemu' type='raw'/>");
}

static void
test_no_disk (void)
{
  g_autofree gchar *xml = build (base_json, "kvm", NULL);

  assert_lacks (xml, "<disk");
  assert_lacks (xml, "<dhf:storage>");
}

static void
test_displays (void)
{
  g_autofree gchar *spice_json = manifest_json_with ("\"display\":\"spice\"");
  g_autofree gchar *none_json = manifest_json_with ("\"display\":\"none\"");
  g_autofree gchar *spice = build (spice_json, "kvm", NULL);
  g_autofree gchar *none = build (none_json, "kvm", NULL);
  g_autofree gchar *xen_spice = build (spice_json, "xen", NULL);

  assert_contains (spice, "<graphics type='spice' autoport='yes'>");
  assert_contains (spice, "<video>");
  assert_contains (xen_spice, "<model type='vga'/>");
  assert_lacks (none, "<graphics");
  assert_lacks (none, "<video>");
}

static void
test_uuid_and_installed (void)
{
  g_autoptr (DhfManifest) manifest = manifest_from (base_json);
  DhfDomainXmlOptions options = {
    .domain_type = "kvm",
    .uuid = "6a1f4f3e-1b2c-4d5e-8f90-0123456789ab",
    .installed = "2024-05-01T12:00:00Z",
  };
  g_autofree gchar *xml = dhf_domain_xml_build (manifest, &options);

  assert_contains (xml, "<uuid>6a1f4f3e-1b2c-4d5e-8f90-0123456789ab</uuid>");
  assert_contains (xml, "<dhf:installed>2024-05-01T12:00:00Z</dhf:installed>");
}

static void
test_hostile_strings (void)
{
  g_autoptr (DhfManifest) manifest = manifest_from (hostile_json);
  DhfDomainXmlOptions options = {
    .domain_type = "kvm",
    .disk_path = "/var/lib/dhf/it's <&> \"odd\".qcow2",
  };
  g_autofree gchar *xml = dhf_domain_xml_build (manifest, &options);
  g_autoptr (GHashTable) texts = parse_well_formed (xml);
  g_autoptr (DhfDomainMetadata) metadata = NULL;
  g_autoptr (GError) error = NULL;
  g_autofree gchar *element = NULL;
  const gchar *start, *end;

  assert_contains (xml, "<title>&lt;&apos;&amp;&quot;&gt; hostile</title>");
  assert_contains (xml,
                   "<description>&lt;/description&gt;&lt;evil/&gt;&amp;amp; ]]&gt;</description>");
  assert_contains (xml,
                   "<source file='/var/lib/dhf/it&apos;s &lt;&amp;&gt; &quot;odd&quot;.qcow2'/>");
  assert_lacks (xml, "<evil/>");
  g_assert_cmpstr (g_hash_table_lookup (texts, "title"), ==, "<'&\"> hostile");
  g_assert_cmpstr (g_hash_table_lookup (texts, "description"), ==,
                   "</description><evil/>&amp; ]]>");

  /* The manifest inside the metadata survives the escaping too. */
  start = strstr (xml, "<dhf:appliance");
  end = strstr (xml, "</dhf:appliance>");
  g_assert_true (start != NULL && end != NULL);
  element = g_strndup (start, (gsize) (end - start) + strlen ("</dhf:appliance>"));
  metadata = dhf_domain_metadata_parse (element, &error);
  g_assert_no_error (error);
  g_assert_cmpstr (dhf_manifest_get_vendor (metadata->manifest), ==, "<'&\">");
  g_assert_cmpstr (metadata->disk_path, ==, "/var/lib/dhf/it's <&> \"odd\".qcow2");
}

/* Direct kernel boot */

/* boot_json's kernel, initrd and command line, unescaped. */
static void
assert_boot_texts (GHashTable *texts)
{
  g_assert_cmpstr (g_hash_table_lookup (texts, "kernel"), ==, "/guests/it's <k>/vmlinuz");
  g_assert_cmpstr (g_hash_table_lookup (texts, "initrd"), ==, "/guests/initrd&.img");
  g_assert_cmpstr (g_hash_table_lookup (texts, "cmdline"), ==, "console=ttyS0 quiet x=\"<&>\"");
}

static void
test_direct_boot (void)
{
  static const gchar *const types[] = { "kvm", "qemu", "xen", "test" };

  for (gsize i = 0; i < G_N_ELEMENTS (types); i++)
    {
      g_autofree gchar *xml = build (boot_json, types[i], NULL);
      g_autoptr (GHashTable) texts = parse_well_formed (xml);

      assert_contains (xml,
                       "  <os>\n"
                       "    <type arch='x86_64'>hvm</type>\n"
                       "    <kernel>/guests/it&apos;s &lt;k&gt;/vmlinuz</kernel>\n"
                       "    <initrd>/guests/initrd&amp;.img</initrd>\n"
                       "    <cmdline>console=ttyS0 quiet x=&quot;&lt;&amp;&gt;&quot;</cmdline>\n"
                       "  </os>\n");
      assert_lacks (xml, "<boot dev=");
      assert_lacks (xml, "<disk");
      assert_boot_texts (texts);
    }
}

/* Only what the manifest gives: no empty <initrd/> or <cmdline/>. */
static void
test_direct_boot_kernel_only (void)
{
  g_autofree gchar *json = manifest_json_with ("\"boot\":{\"kernel\":\"/k/vmlinuz\"}");
  g_autofree gchar *xml = build (json, "kvm", "/d.qcow2");

  assert_contains (xml, "    <type arch='x86_64'>hvm</type>\n"
                        "    <kernel>/k/vmlinuz</kernel>\n"
                        "  </os>\n");
  assert_lacks (xml, "<initrd>");
  assert_lacks (xml, "<cmdline>");
  assert_lacks (xml, "<boot dev=");
  /* The disk stays: the guest's data, not its boot device. */
  assert_contains (xml, "<source file='/d.qcow2'/>");
}

/* Serial console */

static gchar *
build_with_log_dir (const gchar *json, const gchar *domain_type, const gchar *log_dir)
{
  DhfDomainXmlOptions options = {
    .domain_type = domain_type,
    .console_log_dir = log_dir,
  };

  return build_with (json, &options);
}

static void
test_serial_console (void)
{
  static const gchar *const types[] = { "kvm", "qemu", "xen" };

  for (gsize i = 0; i < G_N_ELEMENTS (types); i++)
    {
      g_autofree gchar *plain = build (base_json, types[i], NULL);
      g_autofree gchar *logged = build_with_log_dir (base_json, types[i], "/var/log/dhf/console");
      g_autofree gchar *booted = build_with_log_dir (boot_json, types[i], "/var/log/dhf/console");

      assert_contains (plain, "    <serial type='pty'>\n"
                              "    </serial>\n"
                              "    <console type='pty'/>\n");
      assert_lacks (plain, "<log ");
      assert_contains (logged, "    <serial type='pty'>\n"
                               "      <log file='/var/log/dhf/console/demo.log' append='on'/>\n"
                               "    </serial>\n"
                               "    <console type='pty'/>\n");
      assert_contains (booted, "<log file='/var/log/dhf/console/demo.log' append='on'/>");
    }
}

/* libvirt's test driver has no console to give: none is asked for. */
static void
test_serial_console_not_on_test (void)
{
  g_autofree gchar *plain = build (base_json, "test", NULL);
  g_autofree gchar *logged = build_with_log_dir (boot_json, "test", "/var/log/dhf/console");

  assert_lacks (plain, "<serial");
  assert_lacks (plain, "<console");
  assert_lacks (logged, "<serial");
  assert_lacks (logged, "<console");
  assert_lacks (logged, "<log ");
}

static void
test_serial_console_hostile_dir (void)
{
  g_autofree gchar *xml = build_with_log_dir (base_json, "kvm", "/var/log/it's <&>");

  assert_contains (xml, "<log file='/var/log/it&apos;s &lt;&amp;&gt;/demo.log' append='on'/>");
}

/* What dhf builds is valid by libvirt's own schema, for every family and
 * with every optional part present. */
static void
test_libvirt_schema (void)
{
  static const gchar *const types[] = { "kvm", "qemu", "xen", "test" };
  g_autofree gchar *validator = g_find_program_in_path ("virt-xml-validate");
  g_autofree gchar *json
      = manifest_json_with ("\"boot\":{\"kernel\":\"/k/vmlinuz\",\"initrd\":\"/k/initrd.img\","
                            "\"cmdline\":\"console=ttyS0 quiet\"},\"display\":\"spice\"");

  if (validator == NULL)
    {
      g_test_skip ("virt-xml-validate is not installed");
      return;
    }
  for (gsize i = 0; i < G_N_ELEMENTS (types); i++)
    {
      g_autoptr (DhfManifest) manifest = manifest_from (json);
      DhfDomainXmlOptions options = {
        .domain_type = types[i],
        .uuid = "6a1f4f3e-1b2c-4d5e-8f90-0123456789ab",
        .disk_path = "/var/lib/dhf/demo.qcow2",
        .installed = "2024-05-01T12:00:00Z",
        .console_log_dir = "/var/log/dhf/console",
      };
      g_autofree gchar *xml = dhf_domain_xml_build (manifest, &options);
      g_autofree gchar *path = NULL;
      g_autofree gchar *output = NULL;
      g_autoptr (GError) error = NULL;
      gint status = 0;
      int fd = g_file_open_tmp ("dhf-domain-XXXXXX.xml", &path, &error);

      g_assert_no_error (error);
      close (fd);
      g_assert_true (g_file_set_contents (path, xml, -1, &error));
      g_assert_true (g_spawn_sync (NULL, (gchar *[]){ validator, path, (gchar *) "domain", NULL },
                                   NULL, G_SPAWN_STDERR_TO_DEV_NULL, NULL, NULL, &output, NULL,
                                   &status, &error));
      g_assert_no_error (error);
      g_unlink (path);
      if (!g_spawn_check_wait_status (status, NULL))
        g_test_fail_printf ("libvirt's schema refuses the %s domain:\n%s\n%s", types[i], output,
                            xml);
    }
}

/* Metadata */

static void
test_metadata_round_trip (void)
{
  g_autoptr (DhfManifest) manifest = manifest_from (hostile_json);
  g_autofree gchar *xml
      = dhf_domain_metadata_build (manifest, "/var/lib/dhf/h.qcow2", "2024-05-01T12:00:00+02:00");
  g_autoptr (GError) error = NULL;
  g_autoptr (DhfDomainMetadata) metadata = dhf_domain_metadata_parse (xml, &error);
  g_autofree gchar *before = dhf_manifest_to_json (manifest);
  g_autofree gchar *after = NULL;

  g_assert_no_error (error);
  after = dhf_manifest_to_json (metadata->manifest);
  g_assert_cmpstr (before, ==, after);
  g_assert_cmpstr (metadata->disk_path, ==, "/var/lib/dhf/h.qcow2");
  g_assert_cmpstr (metadata->installed, ==, "2024-05-01T12:00:00+02:00");
}

static void
test_metadata_optional_fields (void)
{
  g_autoptr (DhfManifest) manifest = manifest_from (base_json);
  g_autofree gchar *xml = dhf_domain_metadata_build (manifest, NULL, NULL);
  g_autoptr (GError) error = NULL;
  g_autoptr (DhfDomainMetadata) metadata = dhf_domain_metadata_parse (xml, &error);

  g_assert_no_error (error);
  g_assert_cmpstr (dhf_manifest_get_name (metadata->manifest), ==, "demo");
  g_assert_null (metadata->disk_path);
  g_assert_null (metadata->installed);
}

static gchar *
libvirt_style (const gchar *extra)
{
  g_autoptr (DhfManifest) manifest = manifest_from (base_json);
  g_autofree gchar *json = dhf_manifest_to_json (manifest);
  g_autofree gchar *escaped = g_markup_escape_text (json, -1);

  return g_strdup_printf ("<appliance schema=\"1\">\n  <manifest>%s</manifest>\n%s</appliance>\n",
                          escaped, extra);
}

static void
test_metadata_unprefixed (void)
{
  g_autofree gchar *xml = libvirt_style ("  <storage>/var/lib/dhf/demo.qcow2</storage>\n"
                                         "  <installed>2024-01-01T00:00:00Z</installed>\n");
  g_autoptr (GError) error = NULL;
  g_autoptr (DhfDomainMetadata) metadata = dhf_domain_metadata_parse (xml, &error);

  g_assert_no_error (error);
  g_assert_cmpstr (dhf_manifest_get_name (metadata->manifest), ==, "demo");
  g_assert_cmpstr (metadata->disk_path, ==, "/var/lib/dhf/demo.qcow2");
  g_assert_cmpstr (metadata->installed, ==, "2024-01-01T00:00:00Z");
}

static void
test_metadata_forward_compatible (void)
{
  g_autofree gchar *xml = libvirt_style (
      "  <future kind=\"x\"><manifest>not json</manifest><storage>/no</storage></future>\n"
      "  <signature/>\n  <!-- a comment -->\n  <?pi data?>\n");
  g_autoptr (GError) error = NULL;
  g_autoptr (DhfDomainMetadata) metadata = dhf_domain_metadata_parse (xml, &error);

  g_assert_no_error (error);
  g_assert_cmpstr (dhf_manifest_get_name (metadata->manifest), ==, "demo");
  g_assert_null (metadata->disk_path);
}

static void
test_metadata_cdata (void)
{
  g_autoptr (DhfManifest) manifest = manifest_from (base_json);
  g_autofree gchar *json = dhf_manifest_to_json (manifest);
  g_autofree gchar *xml = g_strdup_printf (
      "<appliance schema='1'><manifest><![CDATA[%s]]></manifest></appliance>", json);
  g_autoptr (GError) error = NULL;
  g_autoptr (DhfDomainMetadata) metadata = dhf_domain_metadata_parse (xml, &error);

  g_assert_no_error (error);
  g_assert_cmpstr (dhf_manifest_get_name (metadata->manifest), ==, "demo");
}

typedef struct
{
  const gchar *label;
  const gchar *xml;
  gint code;
  const gchar *message; /* the start of it */
} BadMetadataCase;

#define MANIFEST_ELEMENT                                                                           \
  "<manifest>{\"manifest-version\":1,\"name\":\"demo\",\"vendor\":\"ACME\",\"version\":\"1\","     \
  "\"role\":\"service\",\"memory\":\"64MiB\",\"vcpus\":1}</manifest>"

static const BadMetadataCase bad_metadata_cases[] = {
  { "empty", "", DHF_ERROR_FAILED, "dhf metadata: Error on line 1 char 1: Document was empty" },
  { "garbage", "not xml at all", DHF_ERROR_FAILED, "dhf metadata: " },
  { "binary", "\x01\x02\xff", DHF_ERROR_FAILED, "dhf metadata: " },
  { "truncated", "<appliance schema='1'><manifest>{\"manifest-version\"", DHF_ERROR_FAILED,
    "dhf metadata: " },
  { "unclosed-root", "<appliance schema='1'>" MANIFEST_ELEMENT, DHF_ERROR_FAILED,
    "dhf metadata: " },
  { "mismatched", "<appliance schema='1'>" MANIFEST_ELEMENT "</appl>", DHF_ERROR_FAILED,
    "dhf metadata: " },
  { "bad-entity", "<appliance schema='1'><manifest>&bogus;</manifest></appliance>",
    DHF_ERROR_FAILED, "dhf metadata: " },
  { "wrong-root", "<domain schema='1'>" MANIFEST_ELEMENT "</domain>", DHF_ERROR_FAILED,
    "dhf metadata: expected an <appliance> element, found <domain>" },
  { "no-schema", "<appliance>" MANIFEST_ELEMENT "</appliance>", DHF_ERROR_FAILED,
    "dhf metadata: no schema attribute" },
  { "schema-2", "<appliance schema='2'>" MANIFEST_ELEMENT "</appliance>", DHF_ERROR_FAILED,
    "dhf metadata: unsupported schema \"2\" (this dhfd reads schema 1)" },
  { "schema-empty", "<appliance schema=''>" MANIFEST_ELEMENT "</appliance>", DHF_ERROR_FAILED,
    "dhf metadata: unsupported schema \"\" (this dhfd reads schema 1)" },
  { "other-namespace",
    "<x:appliance xmlns:x='urn:other' schema='1'>" MANIFEST_ELEMENT "</x:appliance>",
    DHF_ERROR_FAILED, "dhf metadata: unexpected namespace \"urn:other\"" },
  { "no-manifest", "<appliance schema='1'><storage>/x</storage></appliance>", DHF_ERROR_FAILED,
    "dhf metadata: no <manifest> element" },
  { "nested-manifest-only", "<appliance schema='1'><x>" MANIFEST_ELEMENT "</x></appliance>",
    DHF_ERROR_FAILED, "dhf metadata: no <manifest> element" },
  { "two-manifests", "<appliance schema='1'>" MANIFEST_ELEMENT MANIFEST_ELEMENT "</appliance>",
    DHF_ERROR_FAILED, "dhf metadata: more than one <manifest> element" },
  { "element-in-manifest", "<appliance schema='1'><manifest><b>x</b></manifest></appliance>",
    DHF_ERROR_FAILED, "dhf metadata: unexpected element <b> in <manifest>" },
  { "empty-manifest", "<appliance schema='1'><manifest/></appliance>", DHF_ERROR_INVALID_MANIFEST,
    "dhf metadata: invalid manifest (1 problem):\n$: manifest is empty" },
  { "bad-manifest",
    "<appliance schema='1'><manifest>{\"manifest-version\":1}</manifest></appliance>",
    DHF_ERROR_INVALID_MANIFEST, "dhf metadata: invalid manifest (6 problems):\n$: missing" },
  { "relative-disk",
    "<appliance schema='1'><manifest>{\"manifest-version\":1,\"name\":\"demo\",\"vendor\":\"A\","
    "\"version\":\"1\",\"role\":\"service\",\"memory\":\"64MiB\",\"vcpus\":1,\"disk\":\"a.qcow2\"}"
    "</manifest></appliance>",
    DHF_ERROR_INVALID_MANIFEST,
    "dhf metadata: invalid manifest (1 problem):\n$.disk: relative path needs a base directory" },
  { "relative-storage",
    "<appliance schema='1'>" MANIFEST_ELEMENT "<storage>img/a.qcow2</storage></appliance>",
    DHF_ERROR_FAILED, "dhf metadata: <storage> is not an absolute, canonical path" },
  { "dotdot-storage",
    "<appliance schema='1'>" MANIFEST_ELEMENT "<storage>/var/lib/dhf/../../../etc/passwd</storage>"
    "</appliance>",
    DHF_ERROR_FAILED, "dhf metadata: <storage> is not an absolute, canonical path" },
  { "nul-reference", "<appliance schema='1'><manifest>{}&#0;</manifest></appliance>",
    DHF_ERROR_FAILED, "dhf metadata: " },
};

static void
test_metadata_bad (gconstpointer data)
{
  const BadMetadataCase *c = data;
  g_autoptr (GError) error = NULL;
  g_autoptr (DhfDomainMetadata) metadata = dhf_domain_metadata_parse (c->xml, &error);

  g_assert_null (metadata);
  g_assert_error (error, DHF_ERROR, c->code);
  g_test_message ("%s", error->message);
  if (!g_str_has_prefix (error->message, c->message))
    g_test_fail_printf ("expected a message starting\n  %s\ngot\n  %s", c->message, error->message);
}

static void
test_metadata_truncated_everywhere (void)
{
  g_autoptr (DhfManifest) manifest = manifest_from (hostile_json);
  g_autofree gchar *xml = dhf_domain_metadata_build (manifest, "/d.qcow2", "2024-01-01");
  gsize length = strlen (xml);

  /* Every proper prefix is an error, never a crash or a half manifest. */
  for (gsize cut = 0; cut < length; cut++)
    {
      g_autofree gchar *prefix = g_strndup (xml, cut);
      g_autoptr (GError) error = NULL;
      g_autoptr (DhfDomainMetadata) metadata = dhf_domain_metadata_parse (prefix, &error);

      g_assert_null (metadata);
      g_assert_nonnull (error);
      g_assert_true (g_str_has_prefix (error->message, "dhf metadata: "));
    }
}

/* Live XML: the XDM channel and the vsock CID */

/* A running QEMU domain's live XML, as libvirt formats it; %s is spliced
 * into <devices>. */
static const gchar live_xml_format[]
    = "<domain type='kvm' id='3'>\n"
      "  <name>demo</name>\n"
      "  <uuid>6a1f4f3e-1b2c-4d5e-8f90-0123456789ab</uuid>\n"
      "  <metadata>\n"
      "    <other:thing xmlns:other='urn:x'><devices><channel type='unix'>"
      "<source mode='bind' path='/tmp/evil'/><target type='virtio' name='org.dhf.xdm.0'/>"
      "</channel></devices></other:thing>\n"
      "  </metadata>\n"
      "  <memory unit='KiB'>1048576</memory>\n"
      "  <devices>\n"
      "    <emulator>/usr/bin/qemu-system-x86_64</emulator>\n"
      "    <controller type='virtio-serial' index='0'><alias name='virtio-serial0'/></controller>\n"
      "    <channel type='unix'>\n"
      "      <source mode='bind' path='/var/lib/libvirt/qemu/channel/target/domain-3-demo/"
      "org.qemu.guest_agent.0'/>\n"
      "      <target type='virtio' name='org.qemu.guest_agent.0' state='disconnected'/>\n"
      "    </channel>\n"
      "%s"
      "    <input type='mouse' bus='ps2'/>\n"
      "  </devices>\n"
      "  <seclabel type='dynamic' model='dac' relabel='yes'/>\n"
      "</domain>\n";

#define LIVE_PATH "/var/lib/libvirt/qemu/channel/target/domain-3-demo/org.dhf.xdm.0"
#define LIVE_CHANNEL                                                                               \
  "    <channel type='unix'>\n"                                                                    \
  "      <source mode='bind' path='" LIVE_PATH "'/>\n"                                             \
  "      <target type='virtio' name='org.dhf.xdm.0' state='connected'/>\n"                         \
  "      <alias name='channel1'/>\n"                                                               \
  "      <address type='virtio-serial' controller='0' bus='0' port='2'/>\n"                        \
  "    </channel>\n"
#define LIVE_VSOCK                                                                                 \
  "    <vsock model='virtio'>\n"                                                                   \
  "      <cid auto='yes' address='42'/>\n"                                                         \
  "      <alias name='vsock0'/>\n"                                                                 \
  "    </vsock>\n"

static gchar *
live_xml (const gchar *devices)
{
  return g_strdup_printf (live_xml_format, devices);
}

static void
test_live_endpoints (void)
{
  g_autofree gchar *xml = live_xml (LIVE_CHANNEL LIVE_VSOCK);
  g_autoptr (GError) error = NULL;
  g_autofree gchar *path = NULL;
  guint32 cid = 0;

  g_assert_true (dhf_domain_xml_get_xdm_channel (xml, &path, &error));
  g_assert_no_error (error);
  g_assert_cmpstr (path, ==, LIVE_PATH);
  g_assert_true (dhf_domain_xml_get_vsock_cid (xml, &cid, &error));
  g_assert_no_error (error);
  g_assert_cmpuint (cid, ==, 42);
}

static void
test_live_xen_channel (void)
{
  g_autofree gchar *xml = live_xml ("<channel type='unix'><source mode='bind' path='/run/xen/c'/>"
                                    "<target type='xen' name='org.dhf.xdm.0'/></channel>");
  g_autoptr (GError) error = NULL;
  g_autofree gchar *path = NULL;

  g_assert_true (dhf_domain_xml_get_xdm_channel (xml, &path, &error));
  g_assert_no_error (error);
  g_assert_cmpstr (path, ==, "/run/xen/c");
}

/* No device: no endpoint, and no error. The channel hidden in <metadata>
 * and the guest agent's channel do not count. */
static void
test_live_none (void)
{
  g_autofree gchar *xml = live_xml ("");
  g_autoptr (GError) error = NULL;
  g_autofree gchar *path = NULL;
  guint32 cid = 7;

  g_assert_true (dhf_domain_xml_get_xdm_channel (xml, &path, &error));
  g_assert_no_error (error);
  g_assert_null (path);
  g_assert_true (dhf_domain_xml_get_vsock_cid (xml, &cid, &error));
  g_assert_no_error (error);
  g_assert_cmpuint (cid, ==, 0);
}

/* An inactive domain's XML: the automatic CID is not assigned yet. */
static void
test_live_vsock_auto_unassigned (void)
{
  g_autofree gchar *xml = live_xml ("<vsock model='virtio'><cid auto='yes'/></vsock>");
  g_autoptr (GError) error = NULL;
  guint32 cid = 7;

  g_assert_true (dhf_domain_xml_get_vsock_cid (xml, &cid, &error));
  g_assert_no_error (error);
  g_assert_cmpuint (cid, ==, 0);
}

typedef struct
{
  const gchar *name;
  const gchar *devices;
  const gchar *message; /* expected in the error */
} BadLiveCase;

static const BadLiveCase bad_channel_cases[] = {
  { "two-channels", LIVE_CHANNEL LIVE_CHANNEL, "2 channels are named org.dhf.xdm.0" },
  { "two-channels-one-bad",
    LIVE_CHANNEL "<channel type='pty'><target type='virtio' name='org.dhf.xdm.0'/></channel>",
    "2 channels are named org.dhf.xdm.0" },
  { "relative-path",
    "<channel type='unix'><source mode='bind' path='run/x.sock'/>"
    "<target type='virtio' name='org.dhf.xdm.0'/></channel>",
    "'run/x.sock' is not absolute and canonical" },
  { "dot-dot-path",
    "<channel type='unix'><source mode='bind' path='/run/../etc/x.sock'/>"
    "<target type='virtio' name='org.dhf.xdm.0'/></channel>",
    "'/run/../etc/x.sock' is not absolute and canonical" },
  { "missing-path",
    "<channel type='unix'><source mode='bind'/><target type='virtio' name='org.dhf.xdm.0'/>"
    "</channel>",
    "no source path" },
  { "empty-path",
    "<channel type='unix'><source mode='bind' path=''/><target type='virtio' "
    "name='org.dhf.xdm.0'/></channel>",
    "no source path" },
  { "no-source", "<channel type='unix'><target type='virtio' name='org.dhf.xdm.0'/></channel>",
    "source mode is '(none)'" },
  { "pty", "<channel type='pty'><target type='virtio' name='org.dhf.xdm.0'/></channel>",
    "of type 'pty'" },
  { "xen-pty", "<channel type='pty'><target type='xen' name='org.dhf.xdm.0'/></channel>",
    "of type 'pty'" },
  { "no-type",
    "<channel><source mode='bind' path='/run/x'/><target type='virtio' name='org.dhf.xdm.0'/>"
    "</channel>",
    "of type '(none)'" },
  { "connect-mode",
    "<channel type='unix'><source mode='connect' path='/run/x.sock'/>"
    "<target type='virtio' name='org.dhf.xdm.0'/></channel>",
    "source mode is 'connect'" },
  { "guestfwd-target",
    "<channel type='unix'><source mode='bind' path='/run/x.sock'/>"
    "<target type='guestfwd' name='org.dhf.xdm.0'/></channel>",
    "target type is 'guestfwd'" },
  { "long-path",
    "<channel type='unix'><source mode='bind' path='/run/"
    "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
    "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa.sock'/>"
    "<target type='virtio' name='org.dhf.xdm.0'/></channel>",
    "too long for a unix socket address" },
  { "malformed", "<channel type='unix'><source mode='bind' path='/run/x'>", "domain XML: " },
};

static const BadLiveCase bad_vsock_cases[] = {
  { "two-vsocks", LIVE_VSOCK LIVE_VSOCK, "2 vsock devices" },
  { "host-cid", "<vsock model='virtio'><cid auto='no' address='2'/></vsock>",
    "vsock CID '2' is not a guest CID" },
  { "any-cid", "<vsock model='virtio'><cid auto='no' address='4294967295'/></vsock>",
    "vsock CID '4294967295' is not a guest CID" },
  { "not-a-number", "<vsock model='virtio'><cid auto='no' address='0x10'/></vsock>",
    "vsock CID '0x10' is not a guest CID" },
  { "negative", "<vsock model='virtio'><cid auto='no' address='-5'/></vsock>",
    "vsock CID '-5' is not a guest CID" },
  { "model", "<vsock model='vhost-user'><cid address='9'/></vsock>", "vsock model 'vhost-user'" },
  { "malformed", "<vsock model='virtio'><cid address='9'/>", "domain XML: " },
};

static void
test_live_bad_channel (gconstpointer data)
{
  const BadLiveCase *c = data;
  g_autofree gchar *xml = live_xml (c->devices);
  g_autoptr (GError) error = NULL;
  gchar *path = (gchar *) "untouched";

  g_assert_false (dhf_domain_xml_get_xdm_channel (xml, &path, &error));
  g_assert_error (error, DHF_ERROR, DHF_ERROR_FAILED);
  g_assert_null (path);
  if (strstr (error->message, c->message) == NULL)
    g_test_fail_printf ("expected \"%s\" in \"%s\"", c->message, error->message);
}

static void
test_live_bad_vsock (gconstpointer data)
{
  const BadLiveCase *c = data;
  g_autofree gchar *xml = live_xml (c->devices);
  g_autoptr (GError) error = NULL;
  guint32 cid = 7;

  g_assert_false (dhf_domain_xml_get_vsock_cid (xml, &cid, &error));
  g_assert_error (error, DHF_ERROR, DHF_ERROR_FAILED);
  g_assert_cmpuint (cid, ==, 0);
  if (strstr (error->message, c->message) == NULL)
    g_test_fail_printf ("expected \"%s\" in \"%s\"", c->message, error->message);
}

/* A broken vsock device does not hide a good channel, nor the reverse. */
static void
test_live_independent (void)
{
  g_autofree gchar *xml
      = live_xml (LIVE_CHANNEL "<vsock model='virtio'><cid auto='no' address='1'/></vsock>");
  g_autofree gchar *xml2 = live_xml (LIVE_CHANNEL LIVE_CHANNEL LIVE_VSOCK);
  g_autoptr (GError) error = NULL;
  g_autofree gchar *path = NULL;
  guint32 cid = 0;

  g_assert_true (dhf_domain_xml_get_xdm_channel (xml, &path, &error));
  g_assert_no_error (error);
  g_assert_cmpstr (path, ==, LIVE_PATH);
  g_assert_true (dhf_domain_xml_get_vsock_cid (xml2, &cid, &error));
  g_assert_no_error (error);
  g_assert_cmpuint (cid, ==, 42);
}

/* Every prefix of a good document is refused, never half-read. */
static void
test_live_truncated_everywhere (void)
{
  g_autofree gchar *xml = live_xml (LIVE_CHANNEL LIVE_VSOCK);
  gsize length = strlen (xml);

  /* Up to the last '>': what follows is only whitespace. */
  while (length > 0 && xml[length - 1] != '>')
    length--;
  for (gsize i = 0; i + 1 < length; i++)
    {
      g_autofree gchar *prefix = g_strndup (xml, i);
      g_autoptr (GError) error = NULL;
      g_autofree gchar *path = NULL;
      guint32 cid = 0;

      g_assert_false (dhf_domain_xml_get_xdm_channel (prefix, &path, &error));
      g_assert_error (error, DHF_ERROR, DHF_ERROR_FAILED);
      g_assert_null (path);
      g_clear_error (&error);
      g_assert_false (dhf_domain_xml_get_vsock_cid (prefix, &cid, &error));
      g_assert_error (error, DHF_ERROR, DHF_ERROR_FAILED);
    }
}

/* What dhf defines carries the channel; once the hypervisor has given it
 * a path (libvirt does when it starts the domain), dhfd finds it. */
static void
test_live_built_channel (void)
{
  static const gchar *const types[] = { "kvm", "qemu", "test" };

  for (gsize i = 0; i < G_N_ELEMENTS (types); i++)
    {
      g_autofree gchar *xml = build (base_json, types[i], "/d.qcow2");
      g_autoptr (GString) live = g_string_new (xml);
      g_autoptr (GError) error = NULL;
      g_autofree gchar *path = NULL;

      /* Not started yet: a bind channel without a path. */
      g_assert_false (dhf_domain_xml_get_xdm_channel (xml, &path, &error));
      g_assert_error (error, DHF_ERROR, DHF_ERROR_FAILED);
      g_assert_nonnull (strstr (error->message, "no source path"));
      g_clear_error (&error);

      g_assert_cmpuint (g_string_replace (live, "<source mode='bind'/>",
                                          "<source mode='bind' path='" LIVE_PATH "'/>", 0),
                        ==, 1);
      g_assert_true (dhf_domain_xml_get_xdm_channel (live->str, &path, &error));
      g_assert_no_error (error);
      g_assert_cmpstr (path, ==, LIVE_PATH);
    }
}

/* libvirt's own test driver: what it stores and hands back must parse. */

static void
ignore_libvirt_error (void *user_data, virErrorPtr error)
{
}

/* Defines xml on libvirt's test driver, failing the test when libvirt
 * refuses it; NULL (the test skipped) when the driver is missing. */
static virDomainPtr
define_on_test_driver (const gchar *xml, virConnectPtr *connection)
{
  virDomainPtr domain;

  virSetErrorFunc (NULL, ignore_libvirt_error);
  *connection = virConnectOpen ("test:///default");
  if (*connection == NULL)
    {
      g_test_skip ("libvirt's test driver is not available");
      return NULL;
    }
  domain = virDomainDefineXML (*connection, xml);
  if (domain == NULL)
    g_error ("libvirt refused the domain XML: %s\n%s", virGetLastErrorMessage (), xml);
  return domain;
}

static void
undefine_on_test_driver (virDomainPtr domain, virConnectPtr connection)
{
  g_assert_cmpint (virDomainUndefine (domain), ==, 0);
  virDomainFree (domain);
  virConnectClose (connection);
}

static void
test_libvirt_test_driver (void)
{
  g_autoptr (DhfManifest) manifest = manifest_from (hostile_json);
  DhfDomainXmlOptions options = {
    .domain_type = "test",
    .uuid = "6a1f4f3e-1b2c-4d5e-8f90-0123456789ab",
    .disk_path = "/var/lib/dhf/it's <&>.qcow2",
    .installed = "2024-05-01T12:00:00Z",
  };
  g_autofree gchar *xml = dhf_domain_xml_build (manifest, &options);
  g_autoptr (GError) error = NULL;
  g_autoptr (DhfDomainMetadata) metadata = NULL;
  virConnectPtr connection;
  virDomainPtr domain;
  gchar *element;
  gchar *title;
  char uuid[VIR_UUID_STRING_BUFLEN];

  domain = define_on_test_driver (xml, &connection);
  if (domain == NULL)
    return;

  g_assert_cmpint (virDomainGetUUIDString (domain, uuid), ==, 0);
  g_assert_cmpstr (uuid, ==, options.uuid);
  title = virDomainGetMetadata (domain, VIR_DOMAIN_METADATA_TITLE, NULL, 0);
  g_assert_cmpstr (title, ==, "<'&\"> hostile");
  free (title);

  element = virDomainGetMetadata (domain, VIR_DOMAIN_METADATA_ELEMENT, DHF_METADATA_NS_URI, 0);
  g_assert_nonnull (element);
  metadata = dhf_domain_metadata_parse (element, &error);
  free (element);
  g_assert_no_error (error);
  g_assert_cmpstr (dhf_manifest_get_name (metadata->manifest), ==, "hostile");
  g_assert_cmpstr (dhf_manifest_get_description (metadata->manifest), ==,
                   "</description><evil/>&amp; ]]>");
  g_assert_cmpstr (metadata->disk_path, ==, options.disk_path);
  g_assert_cmpstr (metadata->installed, ==, options.installed);

  undefine_on_test_driver (domain, connection);
}

/* The test driver keeps a direct boot as given. */
static void
test_libvirt_test_driver_boot (void)
{
  g_autoptr (DhfManifest) manifest = manifest_from (boot_json);
  DhfDomainXmlOptions options = { .domain_type = "test" };
  g_autofree gchar *xml = dhf_domain_xml_build (manifest, &options);
  g_autoptr (GHashTable) texts = NULL;
  virConnectPtr connection;
  virDomainPtr domain;
  char *stored;

  domain = define_on_test_driver (xml, &connection);
  if (domain == NULL)
    return;
  stored = virDomainGetXMLDesc (domain, 0);
  g_assert_nonnull (stored);
  texts = parse_well_formed (stored);
  free (stored);
  assert_boot_texts (texts);

  undefine_on_test_driver (domain, connection);
}

int
main (int argc, char **argv)
{
  g_test_init (&argc, &argv, NULL);

  g_test_add_func ("/domain-xml/build/common-elements", test_common_elements);
  g_test_add_func ("/domain-xml/build/qemu-devices", test_qemu_devices);
  g_test_add_func ("/domain-xml/build/xen-devices", test_xen_devices);
  g_test_add_func ("/domain-xml/build/test-devices", test_test_devices);
  g_test_add_func ("/domain-xml/build/raw-disk", test_raw_disk);
  g_test_add_func ("/domain-xml/build/no-disk", test_no_disk);
  g_test_add_func ("/domain-xml/build/displays", test_displays);
  g_test_add_func ("/domain-xml/build/uuid-and-installed", test_uuid_and_installed);
  g_test_add_func ("/domain-xml/build/hostile-strings", test_hostile_strings);
  g_test_add_func ("/domain-xml/build/direct-boot", test_direct_boot);
  g_test_add_func ("/domain-xml/build/direct-boot-kernel-only", test_direct_boot_kernel_only);
  g_test_add_func ("/domain-xml/build/serial-console", test_serial_console);
  g_test_add_func ("/domain-xml/build/serial-console-not-on-test", test_serial_console_not_on_test);
  g_test_add_func ("/domain-xml/build/serial-console-hostile-dir", test_serial_console_hostile_dir);
  g_test_add_func ("/domain-xml/build/libvirt-schema", test_libvirt_schema);
  g_test_add_func ("/domain-xml/metadata/round-trip", test_metadata_round_trip);
  g_test_add_func ("/domain-xml/metadata/optional-fields", test_metadata_optional_fields);
  g_test_add_func ("/domain-xml/metadata/unprefixed", test_metadata_unprefixed);
  g_test_add_func ("/domain-xml/metadata/forward-compatible", test_metadata_forward_compatible);
  g_test_add_func ("/domain-xml/metadata/cdata", test_metadata_cdata);
  g_test_add_func ("/domain-xml/metadata/truncated-everywhere", test_metadata_truncated_everywhere);
  for (gsize i = 0; i < G_N_ELEMENTS (bad_metadata_cases); i++)
    {
      g_autofree gchar *path
          = g_strdup_printf ("/domain-xml/metadata/bad/%s", bad_metadata_cases[i].label);
      g_test_add_data_func (path, &bad_metadata_cases[i], test_metadata_bad);
    }
  g_test_add_func ("/domain-xml/live/endpoints", test_live_endpoints);
  g_test_add_func ("/domain-xml/live/xen-channel", test_live_xen_channel);
  g_test_add_func ("/domain-xml/live/none", test_live_none);
  g_test_add_func ("/domain-xml/live/vsock-auto-unassigned", test_live_vsock_auto_unassigned);
  g_test_add_func ("/domain-xml/live/independent", test_live_independent);
  g_test_add_func ("/domain-xml/live/truncated-everywhere", test_live_truncated_everywhere);
  g_test_add_func ("/domain-xml/live/built-channel", test_live_built_channel);
  for (gsize i = 0; i < G_N_ELEMENTS (bad_channel_cases); i++)
    {
      g_autofree gchar *path
          = g_strconcat ("/domain-xml/live/bad-channel/", bad_channel_cases[i].name, NULL);

      g_test_add_data_func (path, &bad_channel_cases[i], test_live_bad_channel);
    }
  for (gsize i = 0; i < G_N_ELEMENTS (bad_vsock_cases); i++)
    {
      g_autofree gchar *path
          = g_strconcat ("/domain-xml/live/bad-vsock/", bad_vsock_cases[i].name, NULL);

      g_test_add_data_func (path, &bad_vsock_cases[i], test_live_bad_vsock);
    }
  g_test_add_func ("/domain-xml/libvirt/test-driver", test_libvirt_test_driver);
  g_test_add_func ("/domain-xml/libvirt/test-driver-boot", test_libvirt_test_driver_boot);

  return g_test_run ();
}
