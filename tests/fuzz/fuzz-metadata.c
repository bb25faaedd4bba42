/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include "config.h"

#include <stdint.h>
#include <stdlib.h>

#include "dhf-domain-xml.h"

/* libFuzzer target: dhf_domain_metadata_parse() on arbitrary text. What it
 * accepts must rebuild into metadata that reads back the same. */

int LLVMFuzzerTestOneInput (const uint8_t *data, size_t size);

int
LLVMFuzzerTestOneInput (const uint8_t *data, size_t size)
{
  g_autofree gchar *xml = g_strndup ((const gchar *) data, size);
  g_autoptr (GError) error = NULL;
  g_autoptr (DhfDomainMetadata) metadata = dhf_domain_metadata_parse (xml, &error);
  g_autofree gchar *rebuilt = NULL;
  g_autoptr (DhfDomainMetadata) again = NULL;
  g_autofree gchar *json = NULL;
  g_autofree gchar *json_again = NULL;

  if (metadata == NULL)
    {
      if (error == NULL || error->domain != DHF_ERROR
          || !g_str_has_prefix (error->message, "dhf metadata: "))
        abort ();
      return 0;
    }

  rebuilt
      = dhf_domain_metadata_build (metadata->manifest, metadata->disk_path, metadata->installed);
  again = dhf_domain_metadata_parse (rebuilt, &error);
  if (again == NULL)
    g_error ("rebuilt metadata does not parse: %s\n%s", error->message, rebuilt);
  json = dhf_manifest_to_json (metadata->manifest);
  json_again = dhf_manifest_to_json (again->manifest);
  if (!g_str_equal (json, json_again) || g_strcmp0 (metadata->disk_path, again->disk_path) != 0
      || g_strcmp0 (metadata->installed, again->installed) != 0)
    g_error ("metadata changed in the round trip:\n%s", rebuilt);
  return 0;
}
