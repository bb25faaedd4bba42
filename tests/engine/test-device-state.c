/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include "config.h"

#include <string.h>
#include <sys/stat.h>

#include <glib/gstdio.h>

#include "dhf-device-engine-private.h"

#include "dhf-test-util.h"

/* The device engine's state file: read defensively (damaged files are
 * moved aside, bad entries skipped), written atomically with mode 0600. */

static guint n_warnings;

static GLogWriterOutput
count_warnings (GLogLevelFlags level, const GLogField *fields, gsize n_fields, gpointer data)
{
  if (level & G_LOG_LEVEL_WARNING)
    {
      n_warnings++;
      return G_LOG_WRITER_HANDLED;
    }
  if ((level & G_LOG_LEVEL_MESSAGE) && g_getenv ("G_MESSAGES_DEBUG") == NULL)
    return G_LOG_WRITER_HANDLED;
  return g_log_writer_default (level, fields, n_fields, data);
}

static gchar *
history_text (const DhfDeviceState *state)
{
  g_autoptr (GPtrArray) copy = g_ptr_array_copy (state->history, NULL, NULL);

  /* A copy frees what the original frees: not here. */
  g_ptr_array_set_free_func (copy, NULL);

  g_ptr_array_add (copy, NULL);
  return g_strjoinv (" ", (gchar **) copy->pdata);
}

/* "domain selector" of the pin of id, "domain -" without a selector, or
 * NULL when there is none. */
static gchar *
pin_text (const DhfDeviceState *state, const gchar *id)
{
  const DhfAdminPin *pin = g_hash_table_lookup (state->pins, id);

  if (pin == NULL)
    return NULL;
  return g_strdup_printf ("%s %s", pin->domain, pin->selector != NULL ? pin->selector : "-");
}

static void
assert_pin (const DhfDeviceState *state, const gchar *id, const gchar *expected)
{
  g_autofree gchar *text = pin_text (state, id);

  g_assert_cmpstr (text, ==, expected);
}

static void
test_roundtrip (void)
{
  g_autoptr (DhfDeviceState) state = dhf_device_state_new ();
  g_autoptr (DhfDeviceState) back = NULL;
  g_autoptr (GError) error = NULL;
  g_autofree gchar *json = NULL;
  g_autofree gchar *history = NULL;

  state->focused = g_strdup ("personal");
  g_ptr_array_add (state->history, g_strdup ("work"));
  g_ptr_array_add (state->history, g_strdup ("dom0"));
  g_hash_table_insert (state->pins, g_strdup ("usb-1-2"),
                       dhf_admin_pin_new ("corporate", "usb:1050:0407:0001234"));
  g_hash_table_insert (state->pins, g_strdup ("pci-0000:01:00.0"),
                       dhf_admin_pin_new ("média", "pci:0000:01:00.0"));
  /* Not known yet (from an older file): written without one. */
  g_hash_table_insert (state->pins, g_strdup ("usb-1-3"), dhf_admin_pin_new ("lab", NULL));
  json = dhf_device_state_to_json (state);
  back = dhf_device_state_parse (json, strlen (json), &error);
  g_assert_no_error (error);
  g_assert_cmpstr (back->focused, ==, "personal");
  history = history_text (back);
  g_assert_cmpstr (history, ==, "work dom0");
  g_assert_cmpuint (g_hash_table_size (back->pins), ==, 3);
  assert_pin (back, "usb-1-2", "corporate usb:1050:0407:0001234");
  assert_pin (back, "pci-0000:01:00.0", "média pci:0000:01:00.0");
  assert_pin (back, "usb-1-3", "lab -");
  g_assert_nonnull (strstr (json, "\"selector\":\"usb:1050:0407:0001234\""));
  g_assert_nonnull (strstr (json, "\"device\":\"usb-1-3\",\n      \"domain\":\"lab\""));
  /* The same state, the same text: pins are sorted. */
  g_assert_true (strstr (json, "pci-0000:01:00.0") < strstr (json, "usb-1-2"));
  g_assert_cmpuint (n_warnings, ==, 0);
}

static void
test_bad_entries (void)
{
  const gchar *text = "{\"version\": 1, \"focused\": 7,"
                      " \"history\": [\"a\", 5, \"\", \"a\", \"b\\u0000c\", \"b\"],"
                      " \"pins\": [{\"device\": \"bad id!\", \"domain\": \"x\"},"
                      "  {\"device\": \"usb-1-2\"}, \"usb-1-3\","
                      "  {\"device\": \"usb-1-4\", \"domain\": \"dom0\"},"
                      "  {\"device\": \"usb-1-2\", \"domain\": \"corp\"},"
                      "  {\"device\": \"usb-1-2\", \"domain\": \"lab\"}],"
                      " \"later\": true}";
  g_autoptr (DhfDeviceState) state = NULL;
  g_autoptr (GError) error = NULL;
  g_autofree gchar *history = NULL;

  n_warnings = 0;
  state = dhf_device_state_parse (text, strlen (text), &error);
  g_assert_no_error (error);
  g_assert_null (state->focused);
  history = history_text (state);
  g_assert_cmpstr (history, ==, "a b");
  g_assert_cmpuint (g_hash_table_size (state->pins), ==, 1);
  assert_pin (state, "usb-1-2", "corp -");
  /* focused; history 5, "", "b\0c"; pins 0, 1, 2, 3, 5. */
  g_assert_cmpuint (n_warnings, ==, 9);
  n_warnings = 0;
}

/* Pins with and without a selector (files written before selectors were
 * kept have none); a damaged selector drops its pin. */
static void
test_pin_selectors (void)
{
  const gchar *text = "{\"version\": 1, \"pins\": ["
                      " {\"device\": \"usb-1-2\", \"selector\": \"usb:1050:0407:0001234\","
                      "  \"domain\": \"corp\"},"
                      " {\"device\": \"usb-1-3\", \"domain\": \"corp\"},"
                      " {\"device\": \"usb-1-4\", \"selector\": 7, \"domain\": \"corp\"},"
                      " {\"device\": \"usb-1-5\", \"selector\": \"\", \"domain\": \"corp\"},"
                      " {\"device\": \"usb-1-6\", \"selector\": \"usb:1 2\", \"domain\": \"corp\"},"
                      " {\"device\": \"usb-1-7\", \"selector\": null, \"domain\": \"corp\"}]}";
  g_autoptr (DhfDeviceState) state = NULL;
  g_autoptr (DhfDeviceState) back = NULL;
  g_autoptr (GError) error = NULL;
  g_autofree gchar *json = NULL;

  n_warnings = 0;
  state = dhf_device_state_parse (text, strlen (text), &error);
  g_assert_no_error (error);
  g_assert_cmpuint (g_hash_table_size (state->pins), ==, 2);
  assert_pin (state, "usb-1-2", "corp usb:1050:0407:0001234");
  assert_pin (state, "usb-1-3", "corp -");
  g_assert_cmpuint (n_warnings, ==, 4);
  n_warnings = 0;

  json = dhf_device_state_to_json (state);
  back = dhf_device_state_parse (json, strlen (json), &error);
  g_assert_no_error (error);
  assert_pin (back, "usb-1-2", "corp usb:1050:0407:0001234");
  assert_pin (back, "usb-1-3", "corp -");
  g_assert_cmpuint (n_warnings, ==, 0);

  g_assert_true (dhf_device_selector_is_valid ("usb:1050:0407:0001234"));
  g_assert_true (dhf_device_selector_is_valid ("input:keyboard"));
  g_assert_false (dhf_device_selector_is_valid (""));
  g_assert_false (dhf_device_selector_is_valid ("usb:1 2"));
  g_assert_false (dhf_device_selector_is_valid ("usb:\xc3\xa9"));
  g_assert_false (dhf_device_selector_is_valid (NULL));
}

static void
test_not_a_state (void)
{
  const gchar *const bad[] = {
    "",
    "garbage",
    "[1, 2]",
    "{\"version\": 2, \"focused\": \"a\"}",
    "{\"version\": \"1\"}",
    "{\"focused\": \"a\"}",
    "{\"version\": 1} trailing",
    "{\"version\": 1, \"history\": [[[[[[[[[[[[\"deep\"]]]]]]]]]]]]}",
  };

  for (guint i = 0; i < G_N_ELEMENTS (bad); i++)
    {
      g_autoptr (GError) error = NULL;
      g_autoptr (DhfDeviceState) state = dhf_device_state_parse (bad[i], strlen (bad[i]), &error);

      g_assert_null (state);
      g_assert_nonnull (error);
    }
  g_assert_cmpuint (n_warnings, ==, 0);
}

static void
test_load (void)
{
  g_autofree gchar *dir = g_dir_make_tmp ("dhf-state-XXXXXX", NULL);
  g_autofree gchar *path = g_build_filename (dir, "sub", "devices.json", NULL);
  g_autofree gchar *aside = g_strdup_printf ("%s.corrupt", path);
  g_autofree gchar *big = NULL;
  g_autoptr (GError) error = NULL;
  DhfDeviceState *state;
  struct stat st;

  /* Missing: a fresh start. */
  state = dhf_device_state_load (path, &error);
  g_assert_no_error (error);
  g_assert_null (state->focused);
  dhf_device_state_free (state);

  /* Written with its directory, private. */
  g_assert_true (dhf_device_state_write (path, "{\"version\":1,\"focused\":\"a\"}", &error));
  g_assert_no_error (error);
  g_assert_cmpint (g_stat (path, &st), ==, 0);
  g_assert_cmpint (st.st_mode & 0777, ==, 0600);
  state = dhf_device_state_load (path, &error);
  g_assert_no_error (error);
  g_assert_cmpstr (state->focused, ==, "a");
  dhf_device_state_free (state);

  /* Too big: moved aside without being parsed. */
  big = g_malloc (DHF_DEVICE_STATE_MAX_SIZE + 2);
  memset (big, ' ', DHF_DEVICE_STATE_MAX_SIZE + 1);
  memcpy (big, "{\"version\":1}", 13);
  big[DHF_DEVICE_STATE_MAX_SIZE + 1] = '\0';
  g_assert_true (g_file_set_contents (path, big, -1, NULL));
  n_warnings = 0;
  state = dhf_device_state_load (path, &error);
  g_assert_no_error (error);
  g_assert_null (state->focused);
  dhf_device_state_free (state);
  g_assert_cmpuint (n_warnings, ==, 1);
  g_assert_false (g_file_test (path, G_FILE_TEST_EXISTS));
  g_assert_true (g_file_test (aside, G_FILE_TEST_IS_REGULAR));

  /* Another version: the same. */
  g_assert_true (g_file_set_contents (path, "{\"version\":9}", -1, NULL));
  state = dhf_device_state_load (path, &error);
  g_assert_no_error (error);
  dhf_device_state_free (state);
  g_assert_cmpuint (n_warnings, ==, 2);
  g_assert_false (g_file_test (path, G_FILE_TEST_EXISTS));
  n_warnings = 0;

  dhf_test_remove_tree (dir);
}

static void
test_names (void)
{
  g_assert_true (dhf_device_id_is_valid ("pci-0000:00:1f.3"));
  g_assert_true (dhf_device_id_is_valid ("usb-1-2.3"));
  g_assert_false (dhf_device_id_is_valid (""));
  g_assert_false (dhf_device_id_is_valid ("usb 1"));
  g_assert_false (dhf_device_id_is_valid ("usb/1"));
  g_assert_true (dhf_domain_name_is_valid ("personal"));
  g_assert_true (dhf_domain_name_is_valid ("Windows 11 (work)"));
  g_assert_false (dhf_domain_name_is_valid (""));
  g_assert_false (dhf_domain_name_is_valid ("a\nb"));
  g_assert_false (dhf_domain_name_is_valid ("\xff"));
}

int
main (int argc, char *argv[])
{
  g_log_set_writer_func (count_warnings, NULL, NULL);
  g_test_init (&argc, &argv, NULL);
  g_test_add_func ("/device-state/roundtrip", test_roundtrip);
  g_test_add_func ("/device-state/bad-entries", test_bad_entries);
  g_test_add_func ("/device-state/pin-selectors", test_pin_selectors);
  g_test_add_func ("/device-state/not-a-state", test_not_a_state);
  g_test_add_func ("/device-state/load", test_load);
  g_test_add_func ("/device-state/names", test_names);
  return g_test_run ();
}
