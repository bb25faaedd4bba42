/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* dhfd as a subprocess on a private dbus-daemon over libvirt's test driver,
 * driven through the generated libdhf-1 proxies like any client would. */
#include "config.h"

#include <signal.h>

#include <dhf/dhf.h>
#include <glib/gstdio.h>

#include "dhf-domain-xml.h"
#include "dhf-manifest.h"

#include "dhf-test-util.h"

#define WAIT_TIMEOUT_S 20

typedef struct
{
  GTestDBus *bus;
  gchar *tmpdir;
  gchar *node_path;
  gchar *config_path;
  gchar *storage_dir;
  GSubprocess *dhfd;
  GDBusConnection *conn;
  DhfDBusManager *manager;
  GDBusObjectManager *objects;
  GPtrArray *state_changes; /* "name:state:reason" */
} Fixture;

static gchar *
manifest_json (const gchar *name, const gchar *version, const gchar *role, const gchar *extra)
{
  return g_strdup_printf ("{\"manifest-version\": 1, \"name\": \"%s\", \"vendor\": \"dhf tests\","
                          " \"version\": \"%s\", \"role\": \"%s\", \"memory\": \"512MiB\","
                          " \"vcpus\": 1%s}",
                          name, version, role, extra != NULL ? extra : "");
}

/* A test-driver node file: two dhf appliances (shut off) and one foreign
 * domain (running), built with the daemon's own XML code. */
static gchar *
build_node_xml (void)
{
  g_autoptr (GString) node = g_string_new ("<node>\n");
  static const gchar *const apps[][2] = { { "alpha", "environment" }, { "beta", "service" } };

  for (guint i = 0; i < G_N_ELEMENTS (apps); i++)
    {
      g_autofree gchar *json = manifest_json (apps[i][0], "1.0", apps[i][1], NULL);
      g_autoptr (GError) error = NULL;
      g_autoptr (DhfManifest) manifest = dhf_manifest_parse (json, -1, NULL, &error);
      DhfDomainXmlOptions options = { .domain_type = "test" };
      g_autofree gchar *xml = NULL;
      g_autofree gchar *with_state = NULL;

      g_assert_no_error (error);
      xml = dhf_domain_xml_build (manifest, &options);
      /* Node-file domains start running unless told otherwise. */
      with_state = g_strdup (xml);
      {
        g_autoptr (GString) s = g_string_new (with_state);

        g_string_replace (s, "<domain type='test'>",
                          "<domain type='test' "
                          "xmlns:test='http://libvirt.org/schemas/domain/test/1.0'>"
                          "<test:runstate>5</test:runstate>",
                          1);
        g_string_replace (s, "<domain type=\"test\">",
                          "<domain type='test' "
                          "xmlns:test='http://libvirt.org/schemas/domain/test/1.0'>"
                          "<test:runstate>5</test:runstate>",
                          1);
        g_string_append (node, s->str);
      }
      g_string_append_c (node, '\n');
    }
  g_string_append (node, "<domain type='test'><name>foreign</name>"
                         "<memory unit='KiB'>262144</memory><vcpu>1</vcpu>"
                         "<os><type arch='x86_64'>hvm</type></os></domain>\n");
  g_string_append (node, "</node>\n");
  return g_string_free (g_steal_pointer (&node), FALSE);
}

static void
on_state_changed (DhfDBusManager *manager, const gchar *path, const gchar *name, const gchar *state,
                  const gchar *reason, Fixture *fx)
{
  g_ptr_array_add (fx->state_changes, g_strdup_printf ("%s:%s:%s", name, state, reason));
}

/* Runs the main context until check() holds; fails the test after
 * WAIT_TIMEOUT_S (a hang, not a performance assertion). */
static void
wait_until (gboolean (*check) (gpointer), gpointer data)
{
  gint64 deadline = g_get_monotonic_time () + WAIT_TIMEOUT_S * G_USEC_PER_SEC;

  while (!check (data))
    {
      g_assert_cmpint (g_get_monotonic_time (), <, deadline);
      if (!g_main_context_iteration (NULL, FALSE))
        g_usleep (2000);
    }
}

static gboolean
name_has_owner (gpointer data)
{
  Fixture *fx = data;

  return dhf_test_dhfd_owns_name (fx->conn);
}

static GSubprocess *
spawn_dhfd (Fixture *fx, gboolean replace)
{
  g_autoptr (GError) error = NULL;
  g_autoptr (GSubprocessLauncher) launcher = g_subprocess_launcher_new (G_SUBPROCESS_FLAGS_NONE);
  g_autofree gchar *uri = g_strconcat ("test://", fx->node_path, NULL);
  GSubprocess *proc;

  proc = g_subprocess_launcher_spawn (launcher, &error, dhf_test_dhfd_path (), "--address",
                                      g_test_dbus_get_bus_address (fx->bus), "--hypervisor", uri,
                                      "--config", fx->config_path, "--verbose",
                                      replace ? "--replace" : NULL, NULL);
  g_assert_no_error (error);
  return proc;
}

static void
fixture_set_up (Fixture *fx, gconstpointer data)
{
  g_autoptr (GError) error = NULL;
  g_autofree gchar *node = build_node_xml ();
  g_autofree gchar *config = NULL;

  fx->state_changes = g_ptr_array_new_with_free_func (g_free);
  fx->tmpdir = g_dir_make_tmp ("dhf-integration-XXXXXX", &error);
  g_assert_no_error (error);
  fx->node_path = g_build_filename (fx->tmpdir, "node.xml", NULL);
  fx->config_path = g_build_filename (fx->tmpdir, "dhfd.conf", NULL);
  fx->storage_dir = g_build_filename (fx->tmpdir, "images", NULL);
  /* The policy files and the saved policy stay inside the test's directory. */
  config = g_strdup_printf ("[Appliances]\nStorageDirectory=%s\nShutdownTimeout=2\n"
                            "[Policy]\nDirectories=%s/policy.d\nLastGood=%s/policy.last-good\n"
                            "[Devices]\nStateFile=%s/devices.json\n",
                            fx->storage_dir, fx->tmpdir, fx->tmpdir, fx->tmpdir);
  g_assert_true (g_file_set_contents (fx->node_path, node, -1, &error));
  g_assert_true (g_file_set_contents (fx->config_path, config, -1, &error));

  fx->conn = dhf_test_bus_up (&fx->bus);

  fx->dhfd = spawn_dhfd (fx, FALSE);
  wait_until (name_has_owner, fx);

  fx->manager = dhf_dbus_manager_proxy_new_sync (fx->conn, G_DBUS_PROXY_FLAGS_NONE, DHF_BUS_NAME,
                                                 DHF_OBJECT_PATH, NULL, &error);
  g_assert_no_error (error);
  g_signal_connect (fx->manager, "state-changed", G_CALLBACK (on_state_changed), fx);
  fx->objects
      = dhf_dbus_object_manager_client_new_sync (fx->conn, G_DBUS_OBJECT_MANAGER_CLIENT_FLAGS_NONE,
                                                 DHF_BUS_NAME, DHF_OBJECT_PATH, NULL, &error);
  g_assert_no_error (error);
}

static void
fixture_tear_down (Fixture *fx, gconstpointer data)
{
  g_clear_object (&fx->objects);
  g_clear_object (&fx->manager);
  if (fx->dhfd != NULL)
    {
      g_autoptr (GError) error = NULL;

      g_subprocess_send_signal (fx->dhfd, SIGTERM);
      g_subprocess_wait (fx->dhfd, NULL, &error);
      g_assert_no_error (error);
      /* A clean shutdown on SIGTERM is part of the contract. */
      g_assert_true (g_subprocess_get_if_exited (fx->dhfd));
      g_assert_cmpint (g_subprocess_get_exit_status (fx->dhfd), ==, 0);
      g_clear_object (&fx->dhfd);
    }
  g_dbus_connection_close_sync (fx->conn, NULL, NULL);
  g_clear_object (&fx->conn);
  g_test_dbus_down (fx->bus);
  g_clear_object (&fx->bus);
  dhf_test_remove_tree (fx->tmpdir);
  g_free (fx->tmpdir);
  g_free (fx->node_path);
  g_free (fx->config_path);
  g_free (fx->storage_dir);
  g_ptr_array_unref (fx->state_changes);
}

static DhfDBusAppliance *
get_appliance (Fixture *fx, const gchar *name)
{
  g_autofree gchar *escaped = g_dbus_escape_object_path (name);
  g_autofree gchar *path = g_strconcat (DHF_APPLIANCE_PATH_PREFIX "/", escaped, NULL);
  g_autoptr (GDBusInterface) iface = NULL;

  iface = g_dbus_object_manager_get_interface (fx->objects, path, "org.dhf.Framework1.Appliance");
  return iface != NULL ? DHF_DBUS_APPLIANCE (g_steal_pointer (&iface)) : NULL;
}

typedef struct
{
  Fixture *fx;
  const gchar *name;
  gboolean present;
} PresenceWait;

static gboolean
presence_matches (gpointer data)
{
  PresenceWait *w = data;
  g_autoptr (DhfDBusAppliance) app = get_appliance (w->fx, w->name);

  return (app != NULL) == w->present;
}

static void
wait_presence (Fixture *fx, const gchar *name, gboolean present)
{
  PresenceWait w = { fx, name, present };

  wait_until (presence_matches, &w);
}

typedef struct
{
  Fixture *fx;
  const gchar *change;
} ChangeWait;

static gboolean
saw_change (gpointer data)
{
  ChangeWait *w = data;

  for (guint i = 0; i < w->fx->state_changes->len; i++)
    {
      if (g_str_equal (g_ptr_array_index (w->fx->state_changes, i), w->change))
        return TRUE;
    }
  return FALSE;
}

static void
wait_state_changed (Fixture *fx, const gchar *change)
{
  ChangeWait w = { fx, change };

  wait_until (saw_change, &w);
}

typedef struct
{
  DhfDBusAppliance *app;
  const gchar *state;
} StateWait;

static gboolean
state_is (gpointer data)
{
  StateWait *w = data;

  return g_strcmp0 (dhf_dbus_appliance_get_state (w->app), w->state) == 0;
}

/* dhfd sends PropertiesChanged before its reply; the proxy applies it
 * when the main context runs. */
static void
wait_state (DhfDBusAppliance *app, const gchar *state)
{
  StateWait w = { app, state };

  wait_until (state_is, &w);
}

/* --- tests ------------------------------------------------------------ */

static void
test_objects_appear (Fixture *fx, gconstpointer data)
{
  g_autolist (GDBusObject) objects = g_dbus_object_manager_get_objects (fx->objects);
  g_autoptr (DhfDBusAppliance) alpha = get_appliance (fx, "alpha");
  g_autoptr (DhfDBusAppliance) beta = get_appliance (fx, "beta");
  g_autoptr (DhfDBusAppliance) foreign = get_appliance (fx, "foreign");

  g_assert_cmpuint (g_list_length (objects), ==, 3);
  g_assert_nonnull (alpha);
  g_assert_cmpstr (dhf_dbus_appliance_get_name (alpha), ==, "alpha");
  g_assert_cmpstr (dhf_dbus_appliance_get_state (alpha), ==, "shutoff");
  g_assert_cmpstr (dhf_dbus_appliance_get_role (alpha), ==, "environment");
  g_assert_cmpstr (dhf_dbus_appliance_get_vendor (alpha), ==, "dhf tests");
  g_assert_cmpstr (dhf_dbus_appliance_get_version (alpha), ==, "1.0");
  g_assert_true (dhf_dbus_appliance_get_managed (alpha));
  g_assert_cmpuint (dhf_dbus_appliance_get_memory (alpha), ==, 512 * 1024 * 1024);
  g_assert_cmpuint (dhf_dbus_appliance_get_vcpus (alpha), ==, 1);
  g_assert_cmpuint (strlen (dhf_dbus_appliance_get_uuid (alpha)), ==, 36);
  g_assert_cmpstr (dhf_dbus_appliance_get_role (beta), ==, "service");
  g_assert_cmpstr (dhf_dbus_appliance_get_state (foreign), ==, "running");
  g_assert_false (dhf_dbus_appliance_get_managed (foreign));
  g_assert_cmpstr (dhf_dbus_appliance_get_vendor (foreign), ==, "");

  g_assert_cmpstr (dhf_dbus_manager_get_version (fx->manager), ==, DHF_VERSION);
  g_assert_true (g_str_has_prefix (dhf_dbus_manager_get_hypervisor (fx->manager), "test://"));
  g_assert_true (dhf_dbus_manager_get_hypervisor_connected (fx->manager));
  g_assert_cmpstr (dhf_dbus_manager_get_status (fx->manager), ==, "running");
}

static void
test_lifecycle (Fixture *fx, gconstpointer data)
{
  g_autoptr (DhfDBusAppliance) alpha = get_appliance (fx, "alpha");
  g_autoptr (GError) error = NULL;
  gboolean forced = TRUE;

  g_assert_true (dhf_dbus_appliance_call_start_sync (alpha, NULL, &error));
  g_assert_no_error (error);
  /* The reply comes after the state is published. */
  wait_state (alpha, "running");
  g_assert_cmpstr (dhf_dbus_appliance_get_state_reason (alpha), ==, "booted");
  wait_state_changed (fx, "alpha:running:booted");

  g_assert_true (dhf_dbus_appliance_call_pause_sync (alpha, NULL, &error));
  wait_state (alpha, "paused");
  wait_state_changed (fx, "alpha:paused:user");

  g_assert_true (dhf_dbus_appliance_call_resume_sync (alpha, NULL, &error));
  wait_state (alpha, "running");
  wait_state_changed (fx, "alpha:running:unpaused");

  g_assert_true (dhf_dbus_appliance_call_shutdown_sync (alpha, 0, &forced, NULL, &error));
  g_assert_no_error (error);
  g_assert_false (forced);
  wait_state (alpha, "shutoff");
  wait_state_changed (fx, "alpha:shutoff:shutdown");
}

static void
test_invalid_state (Fixture *fx, gconstpointer data)
{
  g_autoptr (DhfDBusAppliance) alpha = get_appliance (fx, "alpha");
  g_autoptr (DhfDBusAppliance) foreign = get_appliance (fx, "foreign");
  g_autoptr (GError) error = NULL;
  gboolean forced;

  g_assert_false (dhf_dbus_appliance_call_start_sync (foreign, NULL, &error));
  g_assert_error (error, DHF_ERROR, DHF_ERROR_INVALID_STATE);
  g_clear_error (&error);
  g_assert_false (dhf_dbus_appliance_call_shutdown_sync (alpha, 0, &forced, NULL, &error));
  g_assert_error (error, DHF_ERROR, DHF_ERROR_INVALID_STATE);
  g_assert_nonnull (strstr (error->message, "'alpha' is not running"));
  g_clear_error (&error);
  g_assert_false (dhf_dbus_appliance_call_resume_sync (alpha, NULL, &error));
  g_assert_error (error, DHF_ERROR, DHF_ERROR_INVALID_STATE);
  g_clear_error (&error);
  g_assert_false (dhf_dbus_appliance_call_pause_sync (alpha, NULL, &error));
  g_assert_error (error, DHF_ERROR, DHF_ERROR_INVALID_STATE);
}

static GVariant *
raw_call (Fixture *fx, const gchar *path, const gchar *iface, const gchar *method, GVariant *params,
          GError **error)
{
  return g_dbus_connection_call_sync (fx->conn, DHF_BUS_NAME, path, iface, method, params, NULL,
                                      G_DBUS_CALL_FLAGS_NONE, -1, NULL, error);
}

static void
test_bad_arguments (Fixture *fx, gconstpointer data)
{
  g_autoptr (GError) error = NULL;
  g_autoptr (GVariant) reply = NULL;
  g_autofree gchar *remote = NULL;
  g_autofree gchar *alpha_path = g_strconcat (DHF_APPLIANCE_PATH_PREFIX, "/alpha", NULL);

  /* Wrong signature: rejected by GDBus before dhfd code runs. */
  reply = raw_call (fx, alpha_path, "org.dhf.Framework1.Appliance", "Shutdown",
                    g_variant_new ("(s)", "now"), &error);
  g_assert_null (reply);
  g_assert_error (error, G_DBUS_ERROR, G_DBUS_ERROR_INVALID_ARGS);
  g_clear_error (&error);

  reply = raw_call (fx, DHF_OBJECT_PATH, "org.dhf.Framework1.Manager", "Install",
                    g_variant_new ("(i)", 5), &error);
  g_assert_error (error, G_DBUS_ERROR, G_DBUS_ERROR_INVALID_ARGS);
  g_clear_error (&error);

  /* Unknown and mistyped options. */
  reply = raw_call (fx, DHF_OBJECT_PATH, "org.dhf.Framework1.Manager", "Remove",
                    g_variant_new_parsed ("('alpha', {'forse': <true>})"), &error);
  g_assert_error (error, DHF_ERROR, DHF_ERROR_INVALID_ARGS);
  g_assert_nonnull (strstr (error->message, "unknown option 'forse'"));
  g_clear_error (&error);
  reply = raw_call (fx, DHF_OBJECT_PATH, "org.dhf.Framework1.Manager", "Remove",
                    g_variant_new_parsed ("('alpha', {'force': <'yes'>})"), &error);
  g_assert_error (error, DHF_ERROR, DHF_ERROR_INVALID_ARGS);
  g_assert_nonnull (strstr (error->message, "option 'force' must be of type 'b', not 's'"));
  g_clear_error (&error);
  reply = raw_call (fx, DHF_OBJECT_PATH, "org.dhf.Framework1.Manager", "Install",
                    g_variant_new_parsed ("('{}', {'base-directory': <'relative/dir'>})"), &error);
  g_assert_error (error, DHF_ERROR, DHF_ERROR_INVALID_ARGS);
  g_clear_error (&error);

  /* Unknown names. */
  g_assert_false (dhf_dbus_manager_call_remove_sync (fx->manager, "nope",
                                                     g_variant_new ("a{sv}", NULL), NULL, &error));
  g_assert_error (error, DHF_ERROR, DHF_ERROR_NOT_FOUND);
  remote = g_dbus_error_get_remote_error (error);
  g_assert_cmpstr (remote, ==, "org.dhf.Framework1.Error.NotFound");
  g_clear_error (&error);
  reply = raw_call (fx, DHF_APPLIANCE_PATH_PREFIX "/nope", "org.dhf.Framework1.Appliance", "Start",
                    NULL, &error);
  g_assert_null (reply);
  g_assert_nonnull (error);
  g_clear_error (&error);

  /* Foreign domains are not dhf's to remove. */
  g_assert_false (dhf_dbus_manager_call_remove_sync (
      fx->manager, "foreign", g_variant_new_parsed ("{'force': <true>}"), NULL, &error));
  g_assert_error (error, DHF_ERROR, DHF_ERROR_NOT_SUPPORTED);
  g_clear_error (&error);

  /* And dhfd still serves. */
  g_assert_true (name_has_owner (fx));
}

static void
test_invalid_manifest (Fixture *fx, gconstpointer data)
{
  g_autoptr (GError) error = NULL;
  g_autofree gchar *path = NULL;
  gboolean upgraded;
  const gchar *bad = "{\"manifest-version\": 1, \"name\": \"Bad Name\", \"vendor\": \"x\","
                     " \"version\": \"1\", \"role\": \"desktop\", \"memory\": \"lots\","
                     " \"vcpus\": 0}";

  g_assert_false (dhf_dbus_manager_call_install_sync (
      fx->manager, bad, g_variant_new ("a{sv}", NULL), &path, &upgraded, NULL, &error));
  g_assert_error (error, DHF_ERROR, DHF_ERROR_INVALID_MANIFEST);
  g_assert_nonnull (strstr (error->message, "$.name: "));
  g_assert_nonnull (strstr (error->message, "$.role: "));
  g_assert_nonnull (strstr (error->message, "$.memory: "));
  g_assert_nonnull (strstr (error->message, "$.vcpus: "));
  g_clear_error (&error);

  g_assert_false (dhf_dbus_manager_call_install_sync (
      fx->manager, "{not json", g_variant_new ("a{sv}", NULL), &path, &upgraded, NULL, &error));
  g_assert_error (error, DHF_ERROR, DHF_ERROR_INVALID_MANIFEST);
  g_clear_error (&error);

  /* Nothing was defined. */
  dhf_test_sync_with_dhfd (fx->conn);
  {
    g_autolist (GDBusObject) objects = g_dbus_object_manager_get_objects (fx->objects);

    g_assert_cmpuint (g_list_length (objects), ==, 3);
  }
}

static gchar *
install (Fixture *fx, const gchar *json, GVariant *options, gboolean *upgraded, GError **error)
{
  gchar *path = NULL;

  if (options == NULL)
    options = g_variant_new ("a{sv}", NULL);
  if (!dhf_dbus_manager_call_install_sync (fx->manager, json, options, &path, upgraded, NULL,
                                           error))
    return NULL;
  return path;
}

static void
test_install_upgrade_remove (Fixture *fx, gconstpointer data)
{
  g_autoptr (GError) error = NULL;
  g_autofree gchar *v1 = manifest_json ("gamma", "1.2.0", "service", NULL);
  g_autofree gchar *v2 = manifest_json ("gamma", "1.10.0", "service", ", \"vcpus\": 2");
  g_autofree gchar *path = NULL;
  g_autofree gchar *path2 = NULL;
  g_autofree gchar *uuid = NULL;
  g_autoptr (DhfDBusAppliance) gamma = NULL;
  gboolean upgraded = TRUE;

  /* v2 repeats "vcpus"; use a clean one instead. */
  g_free (v2);
  v2 = g_strdup_printf ("{\"manifest-version\": 1, \"name\": \"gamma\", \"vendor\": \"dhf tests\","
                        " \"version\": \"1.10.0\", \"role\": \"service\", \"memory\": \"1GiB\","
                        " \"vcpus\": 2}");

  path = install (fx, v1, NULL, &upgraded, &error);
  g_assert_no_error (error);
  g_assert_false (upgraded);
  dhf_test_sync_with_dhfd (fx->conn);
  g_assert_cmpstr (path, ==, DHF_APPLIANCE_PATH_PREFIX "/gamma");
  gamma = get_appliance (fx, "gamma");
  g_assert_nonnull (gamma);
  g_assert_cmpstr (dhf_dbus_appliance_get_version (gamma), ==, "1.2.0");
  g_assert_cmpstr (dhf_dbus_appliance_get_state (gamma), ==, "shutoff");
  uuid = g_strdup (dhf_dbus_appliance_get_uuid (gamma));
  g_clear_object (&gamma);

  /* Same version again, and an older one: refused. */
  g_assert_null (install (fx, v1, NULL, &upgraded, &error));
  g_assert_error (error, DHF_ERROR, DHF_ERROR_EXISTS);
  g_clear_error (&error);

  /* A newer version upgrades in place and keeps the UUID. */
  path2 = install (fx, v2, NULL, &upgraded, &error);
  g_assert_no_error (error);
  g_assert_true (upgraded);
  g_assert_cmpstr (path2, ==, path);
  dhf_test_sync_with_dhfd (fx->conn);
  gamma = get_appliance (fx, "gamma");
  g_assert_cmpstr (dhf_dbus_appliance_get_version (gamma), ==, "1.10.0");
  g_assert_cmpstr (dhf_dbus_appliance_get_uuid (gamma), ==, uuid);
  g_assert_cmpuint (dhf_dbus_appliance_get_vcpus (gamma), ==, 2);
  g_clear_object (&gamma);

  g_assert_null (install (fx, v1, NULL, &upgraded, &error));
  g_assert_error (error, DHF_ERROR, DHF_ERROR_EXISTS);
  g_assert_nonnull (strstr (error->message, "downgrade"));
  g_clear_error (&error);
  g_free (path2);
  path2 = install (fx, v1, g_variant_new_parsed ("{'allow-downgrade': <true>}"), &upgraded, &error);
  g_assert_no_error (error);
  g_assert_true (upgraded);

  /* A foreign domain's name cannot be taken. */
  {
    g_autofree gchar *clash = manifest_json ("foreign", "1.0", "service", NULL);

    g_assert_null (install (fx, clash, NULL, &upgraded, &error));
    g_assert_error (error, DHF_ERROR, DHF_ERROR_EXISTS);
    g_clear_error (&error);
  }

  g_assert_true (dhf_dbus_manager_call_remove_sync (fx->manager, "gamma",
                                                    g_variant_new ("a{sv}", NULL), NULL, &error));
  g_assert_no_error (error);
  dhf_test_sync_with_dhfd (fx->conn);
  gamma = get_appliance (fx, "gamma");
  g_assert_null (gamma);
}

static void
test_install_disk (Fixture *fx, gconstpointer data)
{
  g_autoptr (GError) error = NULL;
  g_autofree gchar *image = g_build_filename (fx->tmpdir, "vendor.qcow2", NULL);
  g_autofree gchar *disk = g_build_filename (fx->storage_dir, "delta.qcow2", NULL);
  g_autofree gchar *v1
      = manifest_json ("delta", "1.0", "environment", ", \"disk\": \"vendor.qcow2\"");
  g_autofree gchar *v2
      = manifest_json ("delta", "2.0", "environment", ", \"disk\": \"vendor.qcow2\"");
  g_autofree gchar *missing
      = manifest_json ("epsilon", "1.0", "environment", ", \"disk\": \"missing.qcow2\"");
  g_autofree gchar *path = NULL;
  g_autofree gchar *contents = NULL;
  GVariant *opts;
  gboolean upgraded;

  g_assert_true (g_file_set_contents (image, "vendor image", -1, &error));
  opts = g_variant_new_parsed ("{'base-directory': <%s>}", fx->tmpdir);
  path = install (fx, v1, opts, &upgraded, &error);
  g_assert_no_error (error);
  g_assert_true (g_file_get_contents (disk, &contents, NULL, &error));
  g_assert_cmpstr (contents, ==, "vendor image");

  /* The user's data on the private disk survives an upgrade. */
  g_assert_true (g_file_set_contents (disk, "user data", -1, &error));
  g_free (path);
  opts = g_variant_new_parsed ("{'base-directory': <%s>}", fx->tmpdir);
  path = install (fx, v2, opts, &upgraded, &error);
  g_assert_no_error (error);
  g_assert_true (upgraded);
  g_free (contents);
  g_assert_true (g_file_get_contents (disk, &contents, NULL, &error));
  g_assert_cmpstr (contents, ==, "user data");

  /* A missing image defines nothing. */
  opts = g_variant_new_parsed ("{'base-directory': <%s>}", fx->tmpdir);
  g_assert_null (install (fx, missing, opts, &upgraded, &error));
  g_assert_error (error, DHF_ERROR, DHF_ERROR_INVALID_MANIFEST);
  g_assert_nonnull (strstr (error->message, "$.disk.image"));
  g_clear_error (&error);
  dhf_test_sync_with_dhfd (fx->conn);
  g_assert_null (get_appliance (fx, "epsilon"));

  /* keep-storage leaves the disk; a plain remove deletes it. */
  g_assert_true (dhf_dbus_manager_call_remove_sync (
      fx->manager, "delta", g_variant_new_parsed ("{'keep-storage': <true>}"), NULL, &error));
  g_assert_true (g_file_test (disk, G_FILE_TEST_EXISTS));
  /* ... and a reinstall picks the kept disk up instead of overwriting it. */
  g_free (path);
  opts = g_variant_new_parsed ("{'base-directory': <%s>}", fx->tmpdir);
  path = install (fx, v1, opts, &upgraded, &error);
  g_assert_no_error (error);
  g_free (contents);
  g_assert_true (g_file_get_contents (disk, &contents, NULL, &error));
  g_assert_cmpstr (contents, ==, "user data");

  /* An upgrade may not reinterpret the kept disk as another format. */
  {
    g_autofree gchar *raw
        = manifest_json ("delta", "3.0", "environment",
                         ", \"disk\": {\"image\": \"vendor.qcow2\", \"format\": \"raw\"}");

    opts = g_variant_new_parsed ("{'base-directory': <%s>}", fx->tmpdir);
    g_assert_null (install (fx, raw, opts, &upgraded, &error));
    g_assert_error (error, DHF_ERROR, DHF_ERROR_INVALID_MANIFEST);
    g_assert_nonnull (strstr (error->message, "$.disk.format"));
    g_clear_error (&error);
  }
  g_assert_true (dhf_dbus_manager_call_remove_sync (fx->manager, "delta",
                                                    g_variant_new ("a{sv}", NULL), NULL, &error));
  g_assert_no_error (error);
  g_assert_false (g_file_test (disk, G_FILE_TEST_EXISTS));
}

static void
test_remove_running (Fixture *fx, gconstpointer data)
{
  g_autoptr (GError) error = NULL;
  g_autoptr (DhfDBusAppliance) beta = get_appliance (fx, "beta");

  g_assert_true (dhf_dbus_appliance_call_start_sync (beta, NULL, &error));
  g_assert_false (dhf_dbus_manager_call_remove_sync (fx->manager, "beta",
                                                     g_variant_new ("a{sv}", NULL), NULL, &error));
  g_assert_error (error, DHF_ERROR, DHF_ERROR_INVALID_STATE);
  g_clear_error (&error);
  g_assert_true (dhf_dbus_manager_call_remove_sync (
      fx->manager, "beta", g_variant_new_parsed ("{'force': <true>}"), NULL, &error));
  g_assert_no_error (error);
  wait_presence (fx, "beta", FALSE);
}

typedef struct
{
  guint done, ok, invalid, other;
} Tally;

static void
on_start_done (GObject *source, GAsyncResult *result, gpointer user_data)
{
  Tally *tally = user_data;
  g_autoptr (GError) error = NULL;

  if (dhf_dbus_appliance_call_start_finish (DHF_DBUS_APPLIANCE (source), result, &error))
    tally->ok++;
  else if (g_error_matches (error, DHF_ERROR, DHF_ERROR_INVALID_STATE))
    tally->invalid++;
  else
    tally->other++;
  tally->done++;
}

static gboolean
all_done (gpointer data)
{
  return ((Tally *) data)->done == 20;
}

static void
test_concurrent_calls (Fixture *fx, gconstpointer data)
{
  g_autoptr (DhfDBusAppliance) alpha = get_appliance (fx, "alpha");
  Tally tally = { 0 };

  /* Twenty Starts in flight at once: exactly one wins, the others are told
   * the appliance is no longer shut off. */
  for (guint i = 0; i < 20; i++)
    dhf_dbus_appliance_call_start (alpha, NULL, on_start_done, &tally);
  wait_until (all_done, &tally);
  g_assert_cmpuint (tally.ok, ==, 1);
  g_assert_cmpuint (tally.invalid, ==, 19);
  g_assert_cmpuint (tally.other, ==, 0);
}

static void
on_call_done (GObject *source, GAsyncResult *result, gpointer user_data)
{
  GAsyncResult **out = user_data;

  *out = g_object_ref (result);
}

static gboolean
both_set (gpointer data)
{
  GAsyncResult **results = data;

  return results[0] != NULL && results[1] != NULL;
}

/* Remove waits for the Start queued before it, sees the appliance
 * running, and refuses: the disk of a running guest is never deleted. */
static void
test_remove_races_start (Fixture *fx, gconstpointer data)
{
  g_autoptr (GError) error = NULL;
  g_autofree gchar *image = g_build_filename (fx->tmpdir, "vendor.qcow2", NULL);
  g_autofree gchar *disk = g_build_filename (fx->storage_dir, "zeta.qcow2", NULL);
  g_autofree gchar *json = manifest_json ("zeta", "1.0", "service", ", \"disk\": \"vendor.qcow2\"");
  g_autofree gchar *path = NULL;
  g_autoptr (DhfDBusAppliance) zeta = NULL;
  GAsyncResult *results[2] = { NULL, NULL };
  gboolean upgraded;

  g_assert_true (g_file_set_contents (image, "vendor image", -1, &error));
  path = install (fx, json, g_variant_new_parsed ("{'base-directory': <%s>}", fx->tmpdir),
                  &upgraded, &error);
  g_assert_no_error (error);
  dhf_test_sync_with_dhfd (fx->conn);
  zeta = get_appliance (fx, "zeta");
  dhf_dbus_appliance_call_start (zeta, NULL, on_call_done, &results[0]);
  dhf_dbus_manager_call_remove (fx->manager, "zeta", g_variant_new ("a{sv}", NULL), NULL,
                                on_call_done, &results[1]);
  wait_until (both_set, results);
  g_assert_true (dhf_dbus_appliance_call_start_finish (zeta, results[0], &error));
  g_assert_no_error (error);
  g_assert_false (dhf_dbus_manager_call_remove_finish (fx->manager, results[1], &error));
  g_assert_error (error, DHF_ERROR, DHF_ERROR_INVALID_STATE);
  g_assert_true (g_file_test (disk, G_FILE_TEST_EXISTS));
  g_object_unref (results[0]);
  g_object_unref (results[1]);
}

static void
test_shutdown_paused (Fixture *fx, gconstpointer data)
{
  g_autoptr (DhfDBusAppliance) alpha = get_appliance (fx, "alpha");
  g_autoptr (GError) error = NULL;
  gboolean forced = FALSE;

  g_assert_true (dhf_dbus_appliance_call_start_sync (alpha, NULL, &error));
  g_assert_true (dhf_dbus_appliance_call_pause_sync (alpha, NULL, &error));
  /* A paused guest cannot act on ACPI: forced off at once, no timeout. */
  g_assert_true (dhf_dbus_appliance_call_shutdown_sync (alpha, 600000, &forced, NULL, &error));
  g_assert_no_error (error);
  g_assert_true (forced);
  wait_state (alpha, "shutoff");

  g_assert_false (
      dhf_dbus_appliance_call_shutdown_sync (alpha, G_MAXUINT32, &forced, NULL, &error));
  g_assert_error (error, DHF_ERROR, DHF_ERROR_INVALID_ARGS);
}

static void
test_polkit_needs_system_bus (Fixture *fx, gconstpointer data)
{
  g_autoptr (GError) error = NULL;
  g_autofree gchar *config = g_build_filename (fx->tmpdir, "polkit.conf", NULL);
  g_autoptr (GSubprocessLauncher) launcher
      = g_subprocess_launcher_new (G_SUBPROCESS_FLAGS_STDERR_PIPE);
  g_autoptr (GSubprocess) proc = NULL;
  g_autofree gchar *err = NULL;

  g_assert_true (g_file_set_contents (config, "[Authorization]\nMode=polkit\n", -1, &error));
  /* polkit could not tell who a caller on this bus is. */
  g_subprocess_launcher_unsetenv (launcher, "DBUS_SYSTEM_BUS_ADDRESS");
  proc = g_subprocess_launcher_spawn (launcher, &error, dhf_test_dhfd_path (), "--address",
                                      g_test_dbus_get_bus_address (fx->bus), "--hypervisor",
                                      "test:///default", "--config", config, NULL);
  g_assert_no_error (error);
  g_assert_true (g_subprocess_communicate_utf8 (proc, NULL, NULL, NULL, &err, &error));
  g_assert_cmpint (g_subprocess_get_exit_status (proc), ==, 1);
  g_assert_nonnull (strstr (err, "Mode=polkit needs dhfd on the system bus"));
}

static void
test_replace (Fixture *fx, gconstpointer data)
{
  g_autoptr (GError) error = NULL;
  g_autoptr (GSubprocess) second = spawn_dhfd (fx, TRUE);

  /* The first dhfd hands the name over and exits cleanly. */
  g_subprocess_wait (fx->dhfd, NULL, &error);
  g_assert_no_error (error);
  g_assert_true (g_subprocess_get_if_exited (fx->dhfd));
  g_assert_cmpint (g_subprocess_get_exit_status (fx->dhfd), ==, 0);
  g_clear_object (&fx->dhfd);
  fx->dhfd = g_steal_pointer (&second);
  wait_until (name_has_owner, fx);
  wait_presence (fx, "alpha", TRUE);
}

static void
test_name_taken (Fixture *fx, gconstpointer data)
{
  g_autoptr (GError) error = NULL;
  g_autoptr (GSubprocess) second = spawn_dhfd (fx, FALSE);

  g_subprocess_wait (second, NULL, &error);
  g_assert_no_error (error);
  g_assert_cmpint (g_subprocess_get_exit_status (second), ==, 1);
}

int
main (int argc, char **argv)
{
  g_test_init (&argc, &argv, NULL);
#define ADD(path, fn) g_test_add (path, Fixture, NULL, fixture_set_up, fn, fixture_tear_down)
  ADD ("/integration/objects-appear", test_objects_appear);
  ADD ("/integration/lifecycle", test_lifecycle);
  ADD ("/integration/invalid-state", test_invalid_state);
  ADD ("/integration/bad-arguments", test_bad_arguments);
  ADD ("/integration/invalid-manifest", test_invalid_manifest);
  ADD ("/integration/install-upgrade-remove", test_install_upgrade_remove);
  ADD ("/integration/install-disk", test_install_disk);
  ADD ("/integration/remove-running", test_remove_running);
  ADD ("/integration/concurrent-calls", test_concurrent_calls);
  ADD ("/integration/remove-races-start", test_remove_races_start);
  ADD ("/integration/shutdown-paused", test_shutdown_paused);
  ADD ("/integration/polkit-needs-system-bus", test_polkit_needs_system_bus);
  ADD ("/integration/replace", test_replace);
  ADD ("/integration/name-taken", test_name_taken);
#undef ADD
  return g_test_run ();
}
