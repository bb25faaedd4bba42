/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include "config.h"

#include <string.h>
#include <sys/un.h>

#include "dhf-domain-xml.h"

typedef enum
{
  FAMILY_QEMU, /* "qemu" and "kvm" */
  FAMILY_XEN,
  FAMILY_TEST,
} DomainFamily;

static gboolean
domain_family_from_type (const gchar *domain_type, DomainFamily *family)
{
  if (g_strcmp0 (domain_type, "kvm") == 0 || g_strcmp0 (domain_type, "qemu") == 0)
    *family = FAMILY_QEMU;
  else if (g_strcmp0 (domain_type, "xen") == 0)
    *family = FAMILY_XEN;
  else if (g_strcmp0 (domain_type, "test") == 0)
    *family = FAMILY_TEST;
  else
    return FALSE;
  return TRUE;
}

static void append_escaped (GString *xml, const gchar *format, ...) G_GNUC_PRINTF (2, 3);

static void
append_escaped (GString *xml, const gchar *format, ...)
{
  g_autofree gchar *text = NULL;
  va_list args;

  va_start (args, format);
  text = g_markup_vprintf_escaped (format, args);
  va_end (args);
  g_string_append (xml, text);
}

/* Building */

/**
 * dhf_domain_metadata_build:
 * @manifest: the appliance's manifest
 * @disk_path: (nullable): the disk dhfd made for it
 * @installed: (nullable): when it was installed, ISO 8601
 *
 * Returns: (transfer full): the dhf:appliance element for the domain's
 *   <metadata>, carrying the canonical manifest
 */
gchar *
dhf_domain_metadata_build (const DhfManifest *manifest, const gchar *disk_path,
                           const gchar *installed)
{
  g_autoptr (GString) xml = g_string_new (NULL);
  g_autofree gchar *json = NULL;

  g_return_val_if_fail (manifest != NULL, NULL);

  json = dhf_manifest_to_json (manifest);
  append_escaped (
      xml, "<" DHF_METADATA_PREFIX ":appliance xmlns:" DHF_METADATA_PREFIX "='%s' schema='%d'>",
      DHF_METADATA_NS_URI, DHF_METADATA_SCHEMA);
  append_escaped (xml, "<" DHF_METADATA_PREFIX ":manifest>%s</" DHF_METADATA_PREFIX ":manifest>",
                  json);
  if (disk_path != NULL)
    append_escaped (xml, "<" DHF_METADATA_PREFIX ":storage>%s</" DHF_METADATA_PREFIX ":storage>",
                    disk_path);
  if (installed != NULL)
    append_escaped (xml,
                    "<" DHF_METADATA_PREFIX ":installed>%s</" DHF_METADATA_PREFIX ":installed>",
                    installed);
  g_string_append (xml, "</" DHF_METADATA_PREFIX ":appliance>");
  return g_string_free (g_steal_pointer (&xml), FALSE);
}

static void
append_disk (GString *xml, DomainFamily family, const gchar *path, DhfDiskFormat format)
{
  gboolean xen = family == FAMILY_XEN;

  g_string_append (xml, "    <disk type='file' device='disk'>\n");
  append_escaped (xml, "      <driver name='qemu' type='%s'/>\n",
                  dhf_disk_format_to_string (format));
  append_escaped (xml, "      <source file='%s'/>\n", path);
  append_escaped (xml, "      <target dev='%s' bus='%s'/>\n", xen ? "xvda" : "vda",
                  xen ? "xen" : "virtio");
  g_string_append (xml, "    </disk>\n");
}

static void
append_channel (GString *xml, DomainFamily family, const gchar *name, const gchar *xen_socket_dir)
{
  if (family == FAMILY_XEN)
    {
      /* A unix socket, like QEMU's, so that dhfd reaches every guest the
       * same way; libxl wants the path spelled out. */
      g_autofree gchar *path = g_strdup_printf (
          "%s/%s.sock", xen_socket_dir != NULL ? xen_socket_dir : DHF_XDM_XEN_SOCKET_DIR, name);

      g_string_append (xml, "    <channel type='unix'>\n");
      append_escaped (xml, "      <source mode='bind' path='%s'/>\n", path);
      g_string_append (xml, "      <target type='xen' name='" DHF_XDM_CHANNEL_NAME "'/>\n"
                            "    </channel>\n");
      return;
    }
  /* libvirt picks the socket path for a bind-mode unix channel. */
  g_string_append (xml, "    <controller type='virtio-serial'/>\n"
                        "    <channel type='unix'>\n"
                        "      <source mode='bind'/>\n"
                        "      <target type='virtio' name='" DHF_XDM_CHANNEL_NAME "'/>\n"
                        "    </channel>\n");
}

/* The guest's first serial port, readable with `virsh console` and, with
 * a log directory, kept for support even when nobody is attached. */
static void
append_serial (GString *xml, const gchar *name, const gchar *log_dir)
{
  g_string_append (xml, "    <serial type='pty'>\n");
  if (log_dir != NULL)
    {
      g_autofree gchar *file_name = g_strconcat (name, ".log", NULL);
      g_autofree gchar *path = g_build_filename (log_dir, file_name, NULL);

      append_escaped (xml, "      <log file='%s' append='on'/>\n", path);
    }
  g_string_append (xml, "    </serial>\n"
                        "    <console type='pty'/>\n");
}

/* Direct kernel boot replaces booting from the disk. */
static void
append_os (GString *xml, const DhfManifest *manifest)
{
  const gchar *kernel = dhf_manifest_get_boot_kernel (manifest);
  const gchar *initrd = dhf_manifest_get_boot_initrd (manifest);
  const gchar *cmdline = dhf_manifest_get_boot_cmdline (manifest);

  g_string_append (xml, "  <os>\n"
                        "    <type arch='x86_64'>hvm</type>\n");
  if (kernel == NULL)
    g_string_append (xml, "    <boot dev='hd'/>\n");
  else
    {
      append_escaped (xml, "    <kernel>%s</kernel>\n", kernel);
      if (initrd != NULL)
        append_escaped (xml, "    <initrd>%s</initrd>\n", initrd);
      if (cmdline != NULL)
        append_escaped (xml, "    <cmdline>%s</cmdline>\n", cmdline);
    }
  g_string_append (xml, "  </os>\n");
}

static void
append_graphics (GString *xml, DomainFamily family, DhfDisplayType display)
{
  const gchar *type;

  switch (display)
    {
      case DHF_DISPLAY_VNC:
        type = "vnc";
        break;
      case DHF_DISPLAY_SPICE:
        type = "spice";
        break;
      case DHF_DISPLAY_NONE:
      default:
        return;
    }
  /* Only the local viewer (dhf's compositor) may connect. */
  append_escaped (xml,
                  "    <graphics type='%s' autoport='yes'>\n"
                  "      <listen type='address' address='127.0.0.1'/>\n"
                  "    </graphics>\n",
                  type);
  append_escaped (xml, "    <video>\n      <model type='%s'/>\n    </video>\n",
                  family == FAMILY_XEN ? "vga" : "virtio");
}

/**
 * dhf_domain_xml_build:
 * @manifest: the appliance's manifest
 * @options: the domain type and what the installer decided
 *
 * A complete persistent domain definition for virDomainDefineXML(). The
 * manifest's network and device wishes live only in the metadata for now.
 *
 * Returns: (transfer full): the domain XML
 */
gchar *
dhf_domain_xml_build (const DhfManifest *manifest, const DhfDomainXmlOptions *options)
{
  g_autoptr (GString) xml = g_string_new (NULL);
  g_autofree gchar *metadata = NULL;
  DomainFamily family;

  g_return_val_if_fail (manifest != NULL, NULL);
  g_return_val_if_fail (options != NULL, NULL);
  if (!domain_family_from_type (options->domain_type, &family))
    g_return_val_if_reached (NULL);

  metadata = dhf_domain_metadata_build (manifest, options->disk_path, options->installed);

  append_escaped (xml, "<domain type='%s'>\n", options->domain_type);
  append_escaped (xml, "  <name>%s</name>\n", dhf_manifest_get_name (manifest));
  if (options->uuid != NULL)
    append_escaped (xml, "  <uuid>%s</uuid>\n", options->uuid);
  append_escaped (xml, "  <title>%s %s</title>\n", dhf_manifest_get_vendor (manifest),
                  dhf_manifest_get_name (manifest));
  if (dhf_manifest_get_description (manifest) != NULL)
    append_escaped (xml, "  <description>%s</description>\n",
                    dhf_manifest_get_description (manifest));
  g_string_append_printf (xml, "  <metadata>%s</metadata>\n", metadata);
  g_string_append_printf (xml, "  <memory unit='KiB'>%" G_GUINT64_FORMAT "</memory>\n",
                          (dhf_manifest_get_memory (manifest) + 1023) / 1024);
  g_string_append_printf (xml, "  <vcpu>%u</vcpu>\n", dhf_manifest_get_vcpus (manifest));
  append_os (xml, manifest);
  g_string_append (xml, "  <features>\n"
                        "    <acpi/>\n"
                        "    <apic/>\n"
                        "  </features>\n"
                        "  <on_poweroff>destroy</on_poweroff>\n"
                        "  <on_reboot>restart</on_reboot>\n"
                        "  <on_crash>destroy</on_crash>\n"
                        "  <devices>\n");
  if (options->disk_path != NULL)
    append_disk (xml, family, options->disk_path, dhf_manifest_get_disk_format (manifest));
  if (family == FAMILY_QEMU)
    {
      g_string_append (xml, "    <controller type='usb' model='qemu-xhci'/>\n");
      /* Entropy from the host: without it a small guest's first
       * getrandom() waits for its pool to fill, about a second under
       * TCG, before any program using GLib can start. */
      g_string_append (xml, "    <rng model='virtio'>\n"
                            "      <backend model='random'>/dev/urandom</backend>\n"
                            "    </rng>\n");
    }
  append_channel (xml, family, dhf_manifest_get_name (manifest), options->xen_socket_dir);
  if (family != FAMILY_TEST)
    append_serial (xml, dhf_manifest_get_name (manifest), options->console_log_dir);
  append_graphics (xml, family, dhf_manifest_get_display (manifest));
  g_string_append (xml, "  </devices>\n"
                        "</domain>\n");
  return g_string_free (g_steal_pointer (&xml), FALSE);
}

/* Parsing */

typedef enum
{
  FIELD_NONE,
  FIELD_MANIFEST,
  FIELD_STORAGE,
  FIELD_INSTALLED,
} MetadataField;

static const gchar *const field_names[] = {
  [FIELD_MANIFEST] = "manifest",
  [FIELD_STORAGE] = "storage",
  [FIELD_INSTALLED] = "installed",
};

typedef struct
{
  guint depth;           /* of the element being read; the root is 1 */
  MetadataField reading; /* the field whose text is being collected */
  GString *fields[G_N_ELEMENTS (field_names)];
} MetadataParser;

/* libvirt hands the element back without its prefix; the domain XML has it. */
static const gchar *
local_name (const gchar *name)
{
  const gchar *colon = strrchr (name, ':');

  return colon != NULL ? colon + 1 : name;
}

static gboolean
check_root (const gchar *element_name, const gchar **attribute_names,
            const gchar **attribute_values, GError **error)
{
  const gchar *schema = NULL;
  g_autofree gchar *expected_schema = g_strdup_printf ("%d", DHF_METADATA_SCHEMA);

  if (!g_str_equal (local_name (element_name), "appliance"))
    {
      g_set_error (error, DHF_ERROR, DHF_ERROR_FAILED,
                   "expected an <appliance> element, found <%s>", element_name);
      return FALSE;
    }
  for (guint i = 0; attribute_names[i] != NULL; i++)
    {
      const gchar *name = attribute_names[i];

      if (g_str_equal (name, "schema"))
        schema = attribute_values[i];
      else if ((g_str_equal (name, "xmlns") || g_str_has_prefix (name, "xmlns:"))
               && !g_str_equal (attribute_values[i], DHF_METADATA_NS_URI))
        {
          g_set_error (error, DHF_ERROR, DHF_ERROR_FAILED, "unexpected namespace \"%s\"",
                       attribute_values[i]);
          return FALSE;
        }
    }
  if (schema == NULL)
    {
      g_set_error_literal (error, DHF_ERROR, DHF_ERROR_FAILED, "no schema attribute");
      return FALSE;
    }
  if (!g_str_equal (schema, expected_schema))
    {
      g_set_error (error, DHF_ERROR, DHF_ERROR_FAILED,
                   "unsupported schema \"%s\" (this dhfd reads schema %d)", schema,
                   DHF_METADATA_SCHEMA);
      return FALSE;
    }
  return TRUE;
}

static void
metadata_start_element (GMarkupParseContext *context, const gchar *element_name,
                        const gchar **attribute_names, const gchar **attribute_values,
                        gpointer user_data, GError **error)
{
  MetadataParser *parser = user_data;

  parser->depth++;
  if (parser->depth == 1)
    {
      check_root (element_name, attribute_names, attribute_values, error);
      return;
    }
  if (parser->reading != FIELD_NONE)
    {
      g_set_error (error, DHF_ERROR, DHF_ERROR_FAILED, "unexpected element <%s> in <%s>",
                   element_name, field_names[parser->reading]);
      return;
    }
  if (parser->depth != 2)
    return;
  /* Unknown elements are skipped: later dhfd versions may add some. */
  for (guint i = FIELD_MANIFEST; i < G_N_ELEMENTS (field_names); i++)
    {
      if (!g_str_equal (local_name (element_name), field_names[i]))
        continue;
      if (parser->fields[i] != NULL)
        {
          g_set_error (error, DHF_ERROR, DHF_ERROR_FAILED, "more than one <%s> element",
                       field_names[i]);
          return;
        }
      parser->fields[i] = g_string_new (NULL);
      parser->reading = (MetadataField) i;
    }
}

static void
metadata_end_element (GMarkupParseContext *context, const gchar *element_name, gpointer user_data,
                      GError **error)
{
  MetadataParser *parser = user_data;

  if (parser->depth == 2)
    parser->reading = FIELD_NONE;
  parser->depth--;
}

static void
metadata_text (GMarkupParseContext *context, const gchar *text, gsize text_len, gpointer user_data,
               GError **error)
{
  MetadataParser *parser = user_data;

  if (parser->reading != FIELD_NONE)
    g_string_append_len (parser->fields[parser->reading], text, (gssize) text_len);
}

static const GMarkupParser metadata_parser = {
  .start_element = metadata_start_element,
  .end_element = metadata_end_element,
  .text = metadata_text,
};

static void
metadata_parser_clear (MetadataParser *parser)
{
  for (guint i = 0; i < G_N_ELEMENTS (parser->fields); i++)
    {
      if (parser->fields[i] != NULL)
        g_string_free (parser->fields[i], TRUE);
    }
}

G_DEFINE_AUTO_CLEANUP_CLEAR_FUNC (MetadataParser, metadata_parser_clear)

static gchar *
take_field (MetadataParser *parser, MetadataField field)
{
  GString *text = g_steal_pointer (&parser->fields[field]);

  if (text == NULL)
    return NULL;
  if (text->len == 0)
    {
      g_string_free (text, TRUE);
      return NULL;
    }
  return g_string_free (text, FALSE);
}

static gboolean
storage_path_is_valid (const gchar *path)
{
  g_autofree gchar *canonical = NULL;

  if (!g_path_is_absolute (path))
    return FALSE;
  canonical = g_canonicalize_filename (path, NULL);
  return g_str_equal (canonical, path);
}

static gboolean
parse_markup (MetadataParser *parser, const gchar *xml, GError **error)
{
  g_autoptr (GMarkupParseContext) context
      = g_markup_parse_context_new (&metadata_parser, G_MARKUP_TREAT_CDATA_AS_TEXT, parser, NULL);
  g_autoptr (GError) local_error = NULL;

  if (g_markup_parse_context_parse (context, xml, -1, &local_error)
      && g_markup_parse_context_end_parse (context, &local_error))
    return TRUE;
  /* Our own errors are DHF_ERROR already; GMarkup's become FAILED too. */
  g_set_error_literal (error, DHF_ERROR, DHF_ERROR_FAILED, local_error->message);
  return FALSE;
}

/**
 * dhf_domain_metadata_parse:
 * @xml: the dhf element as virDomainGetMetadata() returns it (without the
 *   prefix) or as it sits in the domain XML (with it)
 * @error: return location for a #GError
 *
 * Reads back what dhf_domain_metadata_build() wrote. Unknown elements are
 * ignored; an unknown schema is an error.
 *
 * Returns: (transfer full) (nullable): the metadata, or %NULL with
 *   %DHF_ERROR_FAILED (bad XML) or %DHF_ERROR_INVALID_MANIFEST
 */
DhfDomainMetadata *
dhf_domain_metadata_parse (const gchar *xml, GError **error)
{
  g_auto (MetadataParser) parser = { 0 };
  g_autoptr (DhfDomainMetadata) metadata = NULL;
  g_autofree gchar *manifest_text = NULL;

  g_return_val_if_fail (xml != NULL, NULL);
  g_return_val_if_fail (error == NULL || *error == NULL, NULL);

  if (!parse_markup (&parser, xml, error))
    {
      g_prefix_error (error, "dhf metadata: ");
      return NULL;
    }
  if (parser.fields[FIELD_MANIFEST] == NULL)
    {
      g_set_error_literal (error, DHF_ERROR, DHF_ERROR_FAILED,
                           "dhf metadata: no <manifest> element");
      return NULL;
    }

  metadata = g_new0 (DhfDomainMetadata, 1);
  manifest_text = g_string_free (g_steal_pointer (&parser.fields[FIELD_MANIFEST]), FALSE);
  metadata->manifest = dhf_manifest_parse (manifest_text, -1, NULL, error);
  if (metadata->manifest == NULL)
    {
      g_prefix_error (error, "dhf metadata: ");
      return NULL;
    }
  metadata->disk_path = take_field (&parser, FIELD_STORAGE);
  metadata->installed = take_field (&parser, FIELD_INSTALLED);
  /* dhfd deletes this file on Remove: never anything but a plain path. */
  if (metadata->disk_path != NULL && !storage_path_is_valid (metadata->disk_path))
    {
      g_set_error_literal (error, DHF_ERROR, DHF_ERROR_FAILED,
                           "dhf metadata: <storage> is not an absolute, canonical path");
      return NULL;
    }
  return g_steal_pointer (&metadata);
}

void
dhf_domain_metadata_free (DhfDomainMetadata *metadata)
{
  if (metadata == NULL)
    return;
  g_clear_pointer (&metadata->manifest, dhf_manifest_unref);
  g_free (metadata->disk_path);
  g_free (metadata->installed);
  g_free (metadata);
}

/* Live domain XML: the XDM endpoints */

typedef struct
{
  gchar *type;        /* <channel type=...> */
  gchar *source_mode; /* of its first <source> */
  gchar *source_path;
  gboolean has_source;
  gchar *target_type;
  gchar *target_name;
} ChannelElement;

typedef struct
{
  guint depth;
  gboolean in_devices; /* inside <domain><devices> */
  gboolean in_channel; /* inside <devices><channel> */
  gboolean in_vsock;   /* inside <devices><vsock> */
  ChannelElement channel;

  /* results */
  guint n_channels; /* channels named DHF_XDM_CHANNEL_NAME */
  gchar *channel_path;
  gchar *channel_problem;
  guint n_vsocks;
  gchar *vsock_model;
  gboolean has_cid;
  gchar *cid_address;
} EndpointParser;

static void
channel_element_clear (ChannelElement *channel)
{
  g_clear_pointer (&channel->type, g_free);
  g_clear_pointer (&channel->source_mode, g_free);
  g_clear_pointer (&channel->source_path, g_free);
  g_clear_pointer (&channel->target_type, g_free);
  g_clear_pointer (&channel->target_name, g_free);
  channel->has_source = FALSE;
}

static void
endpoint_parser_clear (EndpointParser *parser)
{
  channel_element_clear (&parser->channel);
  g_free (parser->channel_path);
  g_free (parser->channel_problem);
  g_free (parser->vsock_model);
  g_free (parser->cid_address);
}

G_DEFINE_AUTO_CLEANUP_CLEAR_FUNC (EndpointParser, endpoint_parser_clear)

static const gchar *
attribute (const gchar **names, const gchar **values, const gchar *name)
{
  for (guint i = 0; names[i] != NULL; i++)
    {
      if (g_str_equal (names[i], name))
        return values[i];
    }
  return NULL;
}

static void
endpoint_start_element (GMarkupParseContext *context, const gchar *element_name,
                        const gchar **attribute_names, const gchar **attribute_values,
                        gpointer user_data, GError **error)
{
  EndpointParser *parser = user_data;

  parser->depth++;
  if (parser->depth == 1)
    {
      if (!g_str_equal (element_name, "domain"))
        g_set_error (error, DHF_ERROR, DHF_ERROR_FAILED, "expected <domain>, found <%s>",
                     element_name);
      return;
    }
  /* Only the domain's own devices count: <metadata> may hold anything. */
  if (parser->depth == 2)
    {
      parser->in_devices = g_str_equal (element_name, "devices");
      return;
    }
  if (parser->depth == 3 && parser->in_devices)
    {
      if (g_str_equal (element_name, "channel"))
        {
          parser->in_channel = TRUE;
          parser->channel.type = g_strdup (attribute (attribute_names, attribute_values, "type"));
        }
      else if (g_str_equal (element_name, "vsock"))
        {
          parser->in_vsock = TRUE;
          parser->n_vsocks++;
          g_free (parser->vsock_model);
          parser->vsock_model = g_strdup (attribute (attribute_names, attribute_values, "model"));
          parser->has_cid = FALSE;
          g_clear_pointer (&parser->cid_address, g_free);
        }
      return;
    }
  if (parser->depth != 4)
    return;
  if (parser->in_channel && g_str_equal (element_name, "source") && !parser->channel.has_source)
    {
      parser->channel.has_source = TRUE;
      parser->channel.source_mode
          = g_strdup (attribute (attribute_names, attribute_values, "mode"));
      parser->channel.source_path
          = g_strdup (attribute (attribute_names, attribute_values, "path"));
    }
  else if (parser->in_channel && g_str_equal (element_name, "target"))
    {
      g_free (parser->channel.target_type);
      g_free (parser->channel.target_name);
      parser->channel.target_type
          = g_strdup (attribute (attribute_names, attribute_values, "type"));
      parser->channel.target_name
          = g_strdup (attribute (attribute_names, attribute_values, "name"));
    }
  else if (parser->in_vsock && g_str_equal (element_name, "cid"))
    {
      parser->has_cid = TRUE;
      g_free (parser->cid_address);
      parser->cid_address = g_strdup (attribute (attribute_names, attribute_values, "address"));
    }
}

/* Why the channel cannot be used, or NULL when it can. */
static gchar *
check_channel (const ChannelElement *channel)
{
  if (g_strcmp0 (channel->target_type, "virtio") != 0 && g_strcmp0 (channel->target_type, "xen"))
    return g_strdup_printf ("its target type is '%s', expected virtio or xen",
                            channel->target_type != NULL ? channel->target_type : "(none)");
  if (g_strcmp0 (channel->type, "unix") != 0)
    return g_strdup_printf ("it is of type '%s', dhfd can only reach type 'unix'",
                            channel->type != NULL ? channel->type : "(none)");
  /* In connect mode the hypervisor is the client: whoever listens on that
   * path is not the guest. */
  if (g_strcmp0 (channel->source_mode, "bind") != 0)
    return g_strdup_printf ("its source mode is '%s', expected 'bind'",
                            channel->source_mode != NULL ? channel->source_mode : "(none)");
  if (channel->source_path == NULL || channel->source_path[0] == '\0')
    return g_strdup ("it has no source path (is the domain running?)");
  if (!storage_path_is_valid (channel->source_path))
    return g_strdup_printf ("its source path '%s' is not absolute and canonical",
                            channel->source_path);
  if (strlen (channel->source_path) >= sizeof (((struct sockaddr_un *) NULL)->sun_path))
    return g_strdup_printf ("its source path '%s' is too long for a unix socket address",
                            channel->source_path);
  return NULL;
}

static void
endpoint_end_element (GMarkupParseContext *context, const gchar *element_name, gpointer user_data,
                      GError **error)
{
  EndpointParser *parser = user_data;

  if (parser->depth == 3 && parser->in_channel)
    {
      if (g_strcmp0 (parser->channel.target_name, DHF_XDM_CHANNEL_NAME) == 0)
        {
          parser->n_channels++;
          g_clear_pointer (&parser->channel_path, g_free);
          g_clear_pointer (&parser->channel_problem, g_free);
          parser->channel_problem = check_channel (&parser->channel);
          if (parser->channel_problem == NULL)
            parser->channel_path = g_strdup (parser->channel.source_path);
        }
      channel_element_clear (&parser->channel);
      parser->in_channel = FALSE;
    }
  else if (parser->depth == 3)
    {
      parser->in_vsock = FALSE;
    }
  else if (parser->depth == 2)
    {
      parser->in_devices = FALSE;
    }
  parser->depth--;
}

static const GMarkupParser endpoint_parser = {
  .start_element = endpoint_start_element,
  .end_element = endpoint_end_element,
};

static gboolean
parse_endpoints (EndpointParser *parser, const gchar *xml, GError **error)
{
  g_autoptr (GMarkupParseContext) context
      = g_markup_parse_context_new (&endpoint_parser, 0, parser, NULL);
  g_autoptr (GError) local_error = NULL;

  if (g_markup_parse_context_parse (context, xml, -1, &local_error)
      && g_markup_parse_context_end_parse (context, &local_error))
    return TRUE;
  g_set_error (error, DHF_ERROR, DHF_ERROR_FAILED, "domain XML: %s", local_error->message);
  return FALSE;
}

/**
 * dhf_domain_xml_get_xdm_channel:
 * @xml: a domain's live XML
 * @path: (out) (transfer full) (nullable): the channel's socket, or %NULL
 *   when the domain has no channel named org.dhf.xdm.0
 * @error: return location for a #GError
 *
 * Returns: %FALSE when the XML is malformed or the channel is unusable
 */
gboolean
dhf_domain_xml_get_xdm_channel (const gchar *xml, gchar **path, GError **error)
{
  g_auto (EndpointParser) parser = { 0 };

  g_return_val_if_fail (xml != NULL, FALSE);
  g_return_val_if_fail (path != NULL, FALSE);

  *path = NULL;
  if (!parse_endpoints (&parser, xml, error))
    return FALSE;
  /* Which of two would be the guest's? Neither is trusted. */
  if (parser.n_channels > 1)
    {
      g_set_error (error, DHF_ERROR, DHF_ERROR_FAILED,
                   "domain XML: %u channels are named " DHF_XDM_CHANNEL_NAME ", expected one",
                   parser.n_channels);
      return FALSE;
    }
  if (parser.channel_problem != NULL)
    {
      g_set_error (error, DHF_ERROR, DHF_ERROR_FAILED,
                   "domain XML: channel " DHF_XDM_CHANNEL_NAME ": %s", parser.channel_problem);
      return FALSE;
    }
  *path = g_steal_pointer (&parser.channel_path);
  return TRUE;
}

/**
 * dhf_domain_xml_get_vsock_cid:
 * @xml: a domain's live XML
 * @cid: (out): the guest's CID, or 0 when the domain has no vsock device
 *   (or the XML is that of an inactive domain with an automatic CID)
 * @error: return location for a #GError
 *
 * Returns: %FALSE when the XML is malformed or the device is unusable
 */
gboolean
dhf_domain_xml_get_vsock_cid (const gchar *xml, guint32 *cid, GError **error)
{
  g_auto (EndpointParser) parser = { 0 };
  guint64 value = 0;

  g_return_val_if_fail (xml != NULL, FALSE);
  g_return_val_if_fail (cid != NULL, FALSE);

  *cid = 0;
  if (!parse_endpoints (&parser, xml, error))
    return FALSE;
  if (parser.n_vsocks == 0)
    return TRUE;
  if (parser.n_vsocks > 1)
    {
      g_set_error (error, DHF_ERROR, DHF_ERROR_FAILED, "domain XML: %u vsock devices, expected one",
                   parser.n_vsocks);
      return FALSE;
    }
  if (parser.vsock_model != NULL && !g_str_equal (parser.vsock_model, "virtio"))
    {
      g_set_error (error, DHF_ERROR, DHF_ERROR_FAILED,
                   "domain XML: vsock model '%s', expected virtio", parser.vsock_model);
      return FALSE;
    }
  if (!parser.has_cid || parser.cid_address == NULL)
    return TRUE;
  /* 0-2 are the hypervisor, loopback and the host; -1 is "any". */
  if (!g_ascii_string_to_unsigned (parser.cid_address, 10, 3, G_MAXUINT32 - 1, &value, NULL))
    {
      g_set_error (error, DHF_ERROR, DHF_ERROR_FAILED,
                   "domain XML: vsock CID '%s' is not a guest CID (3 to %u)", parser.cid_address,
                   G_MAXUINT32 - 1);
      return FALSE;
    }
  *cid = (guint32) value;
  return TRUE;
}
