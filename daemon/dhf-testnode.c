/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include "config.h"

#include <json-c/json.h>
#include <locale.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dhf-domain-xml.h"

/* dhf-testnode: writes a node file for libvirt's test driver
 * (test:///path/to/node.xml) with one domain per manifest, so that the
 * demo, the integration tests and the benchmarks run without a real
 * hypervisor. Disk images need not exist: the test driver never opens them. */

#define TEST_NS_URI      "http://libvirt.org/schemas/domain/test/1.0"
#define RUNSTATE_SHUTOFF 5 /* VIR_DOMAIN_SHUTOFF */
#define MAX_COPIES       10000

G_DEFINE_AUTOPTR_CLEANUP_FUNC (json_object, json_object_put)

static DhfManifest *
load_manifest (const gchar *file, GError **error)
{
  g_autofree gchar *absolute = g_canonicalize_filename (file, NULL);
  g_autofree gchar *base_dir = g_path_get_dirname (absolute);
  g_autofree gchar *text = NULL;
  DhfManifest *manifest;
  gsize length;

  if (!g_file_get_contents (file, &text, &length, error))
    return NULL;
  manifest = dhf_manifest_parse (text, (gssize) length, base_dir, error);
  if (manifest == NULL)
    g_prefix_error (error, "%s: ", file);
  return manifest;
}

/* Goes through the canonical JSON so that the copy's metadata names it
 * too, and so that the new name is validated like any other. */
static DhfManifest *
manifest_with_name (const DhfManifest *manifest, const gchar *name, GError **error)
{
  g_autofree gchar *json = dhf_manifest_to_json (manifest);
  g_autoptr (json_object) root = json_tokener_parse (json);
  DhfManifest *copy;

  g_assert (json_object_is_type (root, json_type_object));
  json_object_object_add (root, "name", json_object_new_string (name));
  copy = dhf_manifest_parse (json_object_to_json_string_ext (
                                 root, JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE),
                             -1, NULL, error);
  if (copy == NULL)
    g_prefix_error (error, "copy %s: ", name);
  return copy;
}

/* A UUID derived from the name keeps the node file reproducible. */
static gchar *
uuid_for_name (const gchar *name)
{
  g_autofree gchar *digest = g_compute_checksum_for_string (G_CHECKSUM_SHA256, name, -1);

  return g_strdup_printf ("%.8s-%.4s-%.4s-%.4s-%.12s", digest, digest + 8, digest + 12, digest + 16,
                          digest + 20);
}

/* With a channel directory, each domain's XDM channel gets the socket
 * DIR/NAME.sock: a simulated appliance listens there (libdhf-1's listen:
 * address) and dhfd connects to it as to the host side of a real
 * virtio-serial channel, having read the path from the live domain XML. */
static gchar *
with_channel_path (const gchar *xml, const gchar *channel_dir, const gchar *name)
{
  static const gchar bind_source[] = "<source mode='bind'/>";
  g_autofree gchar *path = g_strdup_printf ("%s/%s.sock", channel_dir, name);
  g_autofree gchar *escaped = g_markup_escape_text (path, -1);
  g_autofree gchar *source = g_strdup_printf ("<source mode='bind' path='%s'/>", escaped);
  const gchar *at = strstr (xml, bind_source);
  GString *out;

  g_assert (at != NULL);
  out = g_string_new_len (xml, at - xml);
  g_string_append (out, source);
  g_string_append (out, at + strlen (bind_source));
  return g_string_free (out, FALSE);
}

static const gchar *channel_dir;

static gchar *
test_domain_xml (const DhfManifest *manifest, gboolean running)
{
  static const gchar open_tag[] = "<domain type='test'>";
  static const gchar close_tag[] = "</domain>\n";
  g_autofree gchar *uuid = uuid_for_name (dhf_manifest_get_name (manifest));
  DhfDomainXmlOptions options = {
    .domain_type = "test",
    .uuid = uuid,
    .disk_path = dhf_manifest_get_disk_image (manifest),
  };
  g_autofree gchar *xml = dhf_domain_xml_build (manifest, &options);
  GString *out;

  if (channel_dir != NULL)
    {
      gchar *moved = with_channel_path (xml, channel_dir, dhf_manifest_get_name (manifest));

      g_free (xml);
      xml = moved;
    }

  if (running)
    return g_steal_pointer (&xml);

  /* The test driver starts node-file domains unless told otherwise. */
  g_assert (g_str_has_prefix (xml, open_tag) && g_str_has_suffix (xml, close_tag));
  out = g_string_new ("<domain type='test' xmlns:test='" TEST_NS_URI "'>");
  g_string_append_len (out, xml + strlen (open_tag),
                       (gssize) (strlen (xml) - strlen (open_tag) - strlen (close_tag)));
  g_string_append_printf (out, "  <test:runstate>%d</test:runstate>\n%s", RUNSTATE_SHUTOFF,
                          close_tag);
  return g_string_free (out, FALSE);
}

static gboolean
append_domain (GString *node, GHashTable *names, const DhfManifest *manifest, gboolean running,
               GError **error)
{
  g_autofree gchar *xml = NULL;
  const gchar *name = dhf_manifest_get_name (manifest);

  if (g_hash_table_contains (names, name))
    {
      g_set_error (error, DHF_ERROR, DHF_ERROR_EXISTS, "more than one domain named \"%s\"", name);
      return FALSE;
    }
  g_hash_table_add (names, g_strdup (name));
  xml = test_domain_xml (manifest, running);
  g_string_append (node, xml);
  return TRUE;
}

static gchar *
build_node (gchar **files, gint copies, gboolean running, GError **error)
{
  g_autoptr (GString) node = g_string_new ("<node>\n");
  g_autoptr (GHashTable) names = g_hash_table_new_full (g_str_hash, g_str_equal, g_free, NULL);

  for (guint i = 0; files[i] != NULL; i++)
    {
      g_autoptr (DhfManifest) manifest = load_manifest (files[i], error);

      if (manifest == NULL)
        return NULL;
      if (copies == 0 && !append_domain (node, names, manifest, running, error))
        return NULL;
      for (gint copy = 1; copy <= copies; copy++)
        {
          g_autofree gchar *name
              = g_strdup_printf ("%s-%d", dhf_manifest_get_name (manifest), copy);
          g_autoptr (DhfManifest) renamed = manifest_with_name (manifest, name, error);

          if (renamed == NULL || !append_domain (node, names, renamed, running, error))
            return NULL;
        }
    }
  g_string_append (node, "</node>\n");
  return g_string_free (g_steal_pointer (&node), FALSE);
}

int
main (int argc, char **argv)
{
  g_autoptr (GOptionContext) context = NULL;
  g_autoptr (GError) error = NULL;
  g_auto (GStrv) files = NULL;
  g_autofree gchar *output = NULL;
  g_autofree gchar *node = NULL;
  gint copies = 0;
  gboolean running = FALSE;
  g_autofree gchar *channels = NULL;
  const GOptionEntry entries[] = {
    { "channel-dir", 'c', 0, G_OPTION_ARG_FILENAME, &channels,
      "Give each domain's XDM channel the socket DIR/NAME.sock", "DIR" },
    { "copies", 'n', 0, G_OPTION_ARG_INT, &copies,
      "Make N copies of each appliance, named NAME-1 to NAME-N", "N" },
    { "running", 'r', 0, G_OPTION_ARG_NONE, &running, "Leave the domains running", NULL },
    { "output", 'o', 0, G_OPTION_ARG_FILENAME, &output, "Write to FILE instead of stdout", "FILE" },
    { G_OPTION_REMAINING, 0, 0, G_OPTION_ARG_FILENAME_ARRAY, &files, NULL, "MANIFEST…" },
    { NULL },
  };

  setlocale (LC_ALL, "");
  context = g_option_context_new ("MANIFEST… — write a libvirt test-driver node file");
  g_option_context_add_main_entries (context, entries, NULL);
  if (!g_option_context_parse (context, &argc, &argv, &error))
    {
      g_printerr ("dhf-testnode: %s\n", error->message);
      return EXIT_FAILURE;
    }
  if (files == NULL || files[0] == NULL)
    {
      g_printerr ("dhf-testnode: no manifest given\n");
      return EXIT_FAILURE;
    }
  if (copies < 0 || copies > MAX_COPIES)
    {
      g_printerr ("dhf-testnode: --copies must be from 1 to %d\n", MAX_COPIES);
      return EXIT_FAILURE;
    }

  if (channels != NULL && !g_path_is_absolute (channels))
    {
      g_printerr ("dhf-testnode: --channel-dir must be an absolute path\n");
      return EXIT_FAILURE;
    }
  channel_dir = channels;
  node = build_node (files, copies, running, &error);
  if (node == NULL)
    {
      g_printerr ("dhf-testnode: %s\n", error->message);
      return EXIT_FAILURE;
    }
  if (output == NULL)
    {
      fputs (node, stdout);
      return fflush (stdout) == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
    }
  if (!g_file_set_contents (output, node, -1, &error))
    {
      g_printerr ("dhf-testnode: %s\n", error->message);
      return EXIT_FAILURE;
    }
  return EXIT_SUCCESS;
}
