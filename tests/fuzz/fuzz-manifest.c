/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include "config.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "dhf-domain-xml.h"

/* libFuzzer target: dhf_manifest_parse() on arbitrary bytes. Whatever it
 * accepts must survive the canonical-JSON round trip and the metadata
 * round trip unchanged; whatever it refuses must say why. */

int LLVMFuzzerTestOneInput (const uint8_t *data, size_t size);

static void
check_round_trips (const DhfManifest *manifest)
{
  static const gchar *const domain_types[] = { "kvm", "xen", "test" };
  g_autofree gchar *json = dhf_manifest_to_json (manifest);
  g_autoptr (GError) error = NULL;
  g_autoptr (DhfManifest) again = dhf_manifest_parse (json, -1, NULL, &error);
  g_autofree gchar *json_again = NULL;
  g_autofree gchar *metadata_xml = NULL;
  g_autoptr (DhfDomainMetadata) metadata = NULL;

  if (again == NULL)
    g_error ("canonical JSON does not parse: %s\n%s", error->message, json);
  json_again = dhf_manifest_to_json (again);
  if (!g_str_equal (json, json_again))
    g_error ("canonical JSON changed:\n%s\n%s", json, json_again);

  metadata_xml = dhf_domain_metadata_build (manifest, dhf_manifest_get_disk_image (manifest),
                                            "2024-01-01T00:00:00Z");
  metadata = dhf_domain_metadata_parse (metadata_xml, &error);
  if (metadata == NULL)
    g_error ("metadata does not parse: %s\n%s", error->message, metadata_xml);
  g_clear_pointer (&json_again, g_free);
  json_again = dhf_manifest_to_json (metadata->manifest);
  if (!g_str_equal (json, json_again))
    g_error ("metadata changed the manifest:\n%s\n%s", json, json_again);

  for (gsize i = 0; i < G_N_ELEMENTS (domain_types); i++)
    {
      DhfDomainXmlOptions options = {
        .domain_type = domain_types[i],
        .disk_path = dhf_manifest_get_disk_image (manifest),
        .console_log_dir = "/var/log/dhf/console",
      };
      g_autofree gchar *xml = dhf_domain_xml_build (manifest, &options);

      g_assert (xml != NULL);
    }
}

/* The helpers take C strings: feed them the input up to its first NUL,
 * split at the first newline for the comparison. */
static void
check_helpers (const uint8_t *data, size_t size)
{
  g_autofree gchar *text = g_strndup ((const gchar *) data, size);
  gchar *newline = strchr (text, '\n');
  const gchar *other = "1.0";
  guint64 bytes;
  gint forward, backward;

  dhf_size_parse (text, &bytes);
  if (newline != NULL)
    {
      *newline = '\0';
      other = newline + 1;
    }
  forward = dhf_version_compare (text, other);
  backward = dhf_version_compare (other, text);
  if (forward != -backward || forward < -1 || forward > 1)
    g_error ("dhf_version_compare is not antisymmetric on \"%s\", \"%s\"", text, other);
  if (dhf_version_compare (text, text) != 0)
    g_error ("dhf_version_compare is not reflexive on \"%s\"", text);
}

int
LLVMFuzzerTestOneInput (const uint8_t *data, size_t size)
{
  g_autoptr (GError) error = NULL;
  g_autoptr (DhfManifest) manifest
      = dhf_manifest_parse ((const gchar *) data, (gssize) size, "/fuzz/base", &error);

  if (manifest != NULL)
    check_round_trips (manifest);
  else if (error == NULL || !g_error_matches (error, DHF_ERROR, DHF_ERROR_INVALID_MANIFEST)
           || !g_str_has_prefix (error->message, "invalid manifest ("))
    abort ();

  if (size <= 256)
    check_helpers (data, size);
  return 0;
}
