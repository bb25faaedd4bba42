/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include "config.h"

#include <dhf/dhf.h>
#include <glib/gstdio.h>

#include "dhf-config.h"

static void
test_config_defaults (void)
{
  g_autoptr (DhfConfig) config = dhf_config_new ();

  g_assert_cmpstr (config->hypervisor_uri, ==, "qemu:///system");
  g_assert_cmpstr (config->domain_type, ==, "auto");
  g_assert_cmpuint (config->shutdown_timeout_s, ==, 30);
  g_assert_cmpint (config->auth_mode, ==, DHF_AUTH_MODE_AUTO);
  g_assert_true (g_path_is_absolute (config->storage_dir));
  /* Admin directory first, vendor defaults last. */
  g_assert_cmpuint (g_strv_length (config->policy_dirs), ==, 2);
  g_assert_cmpstr (config->policy_dirs[0], ==, DHF_SYSCONFDIR "/policy.d");
  g_assert_cmpstr (config->policy_dirs[1], ==, DHF_DATADIR "/policy.d");
  g_assert_cmpstr (config->policy_last_good, ==, DHF_LOCALSTATEDIR "/policy.last-good");
}

static void
test_config_full (void)
{
  g_autoptr (DhfConfig) config = dhf_config_new ();
  g_autoptr (GError) error = NULL;
  const gchar *data = "# comment\n"
                      "[Hypervisor]\nURI=test:///default\nDomainType=qemu\n"
                      "[Appliances]\nStorageDirectory=/srv/dhf\nShutdownTimeout=5\n"
                      "[Authorization]\nMode=peer-uid\n";

  g_assert_true (dhf_config_load_data (config, data, "t.conf", &error));
  g_assert_no_error (error);
  g_assert_cmpstr (config->hypervisor_uri, ==, "test:///default");
  g_assert_cmpstr (config->domain_type, ==, "qemu");
  g_assert_cmpstr (config->storage_dir, ==, "/srv/dhf");
  g_assert_cmpuint (config->shutdown_timeout_s, ==, 5);
  g_assert_cmpint (config->auth_mode, ==, DHF_AUTH_MODE_PEER_UID);
}

static void
test_config_policy (void)
{
  static const struct
  {
    const gchar *directories;
    const gchar *const expected[4];
  } cases[] = {
    { "/etc/x/policy.d;/usr/share/x/policy.d", { "/etc/x/policy.d", "/usr/share/x/policy.d" } },
    /* GLib writes lists with a trailing separator. */
    { "/a;/b;", { "/a", "/b" } },
    { " /a ; /b//c/../d/ ", { "/a", "/b/d" } },
    { "/only", { "/only" } },
    { "/a;/b;/c", { "/a", "/b", "/c" } },
  };

  for (guint i = 0; i < G_N_ELEMENTS (cases); i++)
    {
      g_autoptr (DhfConfig) config = dhf_config_new ();
      g_autoptr (GError) error = NULL;
      g_autofree gchar *data = g_strdup_printf (
          "[Policy]\nDirectories=%s\nLastGood=/var/lib/x/last\n", cases[i].directories);

      g_assert_true (dhf_config_load_data (config, data, "t.conf", &error));
      g_assert_no_error (error);
      g_assert_true (g_strv_equal ((const gchar *const *) config->policy_dirs, cases[i].expected));
      g_assert_cmpstr (config->policy_last_good, ==, "/var/lib/x/last");
    }
  /* Next to a policy directory, with its name as a prefix: not inside it. */
  {
    g_autoptr (DhfConfig) config = dhf_config_new ();
    g_autoptr (GError) error = NULL;

    g_assert_true (dhf_config_load_data (
        config, "[Policy]\nDirectories=/etc/x/policy.d\nLastGood=/etc/x/policy.d.last-good\n",
        "t.conf", &error));
    g_assert_no_error (error);
    g_assert_cmpstr (config->policy_last_good, ==, "/etc/x/policy.d.last-good");
  }
}

static void
test_config_storage_canonical (void)
{
  g_autoptr (DhfConfig) config = dhf_config_new ();
  g_autoptr (GError) error = NULL;

  g_assert_true (dhf_config_load_data (
      config, "[Appliances]\nStorageDirectory=/srv//dhf/./x/../images/\n", "t.conf", &error));
  g_assert_cmpstr (config->storage_dir, ==, "/srv/dhf/images");
}

static void
test_config_errors (void)
{
  static const struct
  {
    const gchar *data;
    const gchar *message;
  } cases[] = {
    { "[Hypervisor]\nUri=x\n", "t.conf: [Hypervisor] Uri: unknown key" },
    { "[Hypervisr]\nURI=x\n", "t.conf: [Hypervisr] URI: unknown key" },
    { "[Extra]\n", "t.conf: [Extra]: unknown group" },
    { "[Hypervisor]\nDomainType=lxc\n",
      "t.conf: [Hypervisor] DomainType: expected auto, kvm, qemu, xen or test, not 'lxc'" },
    { "[Hypervisor]\nURI=\n", "t.conf: [Hypervisor] URI: empty value" },
    { "[Appliances]\nStorageDirectory=images\n",
      "t.conf: [Appliances] StorageDirectory: expected an absolute path, not 'images'" },
    { "[Appliances]\nShutdownTimeout=0\n",
      "t.conf: [Appliances] ShutdownTimeout: expected seconds from 1 to 86400, not '0'" },
    { "[Appliances]\nShutdownTimeout=ten\n",
      "t.conf: [Appliances] ShutdownTimeout: expected seconds from 1 to 86400, not 'ten'" },
    { "[Authorization]\nMode=yes\n",
      "t.conf: [Authorization] Mode: expected auto, polkit or peer-uid, not 'yes'" },
    { "[Policy]\nDirectories=policy.d\n",
      "t.conf: [Policy] Directories: expected absolute paths separated by ';', not 'policy.d'" },
    { "[Policy]\nDirectories=/etc/dhf/policy.d;rel\n",
      "t.conf: [Policy] Directories: expected absolute paths separated by ';', not 'rel'" },
    { "[Policy]\nDirectories=/a;;/b\n",
      "t.conf: [Policy] Directories: expected absolute paths separated by ';', not ''" },
    { "[Policy]\nDirectories=\n", "t.conf: [Policy] Directories: empty value" },
    { "[Policy]\nLastGood=last-good\n",
      "t.conf: [Policy] LastGood: expected an absolute path, not 'last-good'" },
    { "[Policy]\nLastgood=/x\n", "t.conf: [Policy] Lastgood: unknown key" },
    /* The last good policy inside a watched policy directory: a reload
     * storm (and a file read as rules). */
    { "[Policy]\nDirectories=/etc/dhf/policy.d;/usr/share/dhf/policy.d\n"
      "LastGood=/etc/dhf/policy.d/last-good\n",
      "t.conf: [Policy] LastGood: '/etc/dhf/policy.d/last-good' is inside the policy directory "
      "'/etc/dhf/policy.d'; it must be kept outside every one of [Policy] Directories (dhfd "
      "rewrites it at every reload)" },
    { "[Policy]\nDirectories=/etc/dhf/policy.d;/usr/share/dhf/policy.d/\n"
      "LastGood=/usr/share/dhf/policy.d/../policy.d/sub/x.policy\n",
      "t.conf: [Policy] LastGood: '/usr/share/dhf/policy.d/sub/x.policy' is inside the policy "
      "directory '/usr/share/dhf/policy.d'; it must be kept outside every one of [Policy] "
      "Directories (dhfd rewrites it at every reload)" },
    { "[Policy]\nDirectories=/a;/b\nLastGood=/b\n",
      "t.conf: [Policy] LastGood: '/b' is inside the policy directory '/b'; it must be kept "
      "outside every one of [Policy] Directories (dhfd rewrites it at every reload)" },
  };

  for (guint i = 0; i < G_N_ELEMENTS (cases); i++)
    {
      g_autoptr (DhfConfig) config = dhf_config_new ();
      g_autoptr (GError) error = NULL;

      g_assert_false (dhf_config_load_data (config, cases[i].data, "t.conf", &error));
      g_assert_error (error, DHF_ERROR, DHF_ERROR_INVALID_ARGS);
      g_assert_cmpstr (error->message, ==, cases[i].message);
    }
}

static void
test_config_syntax_error (void)
{
  g_autoptr (DhfConfig) config = dhf_config_new ();
  g_autoptr (GError) error = NULL;

  g_assert_false (dhf_config_load_data (config, "not a key file", "t.conf", &error));
  g_assert_error (error, DHF_ERROR, DHF_ERROR_INVALID_ARGS);
  g_assert_true (g_str_has_prefix (error->message, "t.conf: "));
}

static void
test_config_missing_file (void)
{
  g_autoptr (DhfConfig) config = dhf_config_new ();
  g_autoptr (GError) error = NULL;

  /* The default file may be absent; an explicitly named one may not. */
  g_assert_true (dhf_config_load (config, "/nonexistent/dhfd.conf", FALSE, &error));
  g_assert_no_error (error);
  g_assert_false (dhf_config_load (config, "/nonexistent/dhfd.conf", TRUE, &error));
  g_assert_error (error, DHF_ERROR, DHF_ERROR_INVALID_ARGS);
}

static void
test_config_file (void)
{
  g_autoptr (DhfConfig) config = dhf_config_new ();
  g_autoptr (GError) error = NULL;
  g_autofree gchar *path = NULL;
  int fd = g_file_open_tmp ("dhf-config-XXXXXX.conf", &path, &error);

  g_assert_cmpint (fd, >=, 0);
  close (fd);
  g_assert_true (g_file_set_contents (path, "[Hypervisor]\nURI=test:///x.xml\n", -1, &error));
  g_assert_true (dhf_config_load (config, path, TRUE, &error));
  g_assert_cmpstr (config->hypervisor_uri, ==, "test:///x.xml");
  g_unlink (path);
}

/* The dhfd.conf that is installed parses, [Policy] included. */
static void
test_config_shipped (void)
{
  g_autoptr (DhfConfig) config = dhf_config_new ();
  g_autoptr (GError) error = NULL;
  g_autofree gchar *path = g_test_build_filename (G_TEST_DIST, "..", "data", "dhfd.conf", NULL);

  g_assert_true (dhf_config_load (config, path, TRUE, &error));
  g_assert_no_error (error);
  g_assert_cmpuint (g_strv_length (config->policy_dirs), ==, 2);
  g_assert_cmpstr (config->policy_dirs[0], ==, "/etc/dhf/policy.d");
  g_assert_cmpstr (config->policy_last_good, ==, "/var/lib/dhf/policy.last-good");
}

int
main (int argc, char **argv)
{
  g_test_init (&argc, &argv, NULL);
  g_test_add_func ("/config/defaults", test_config_defaults);
  g_test_add_func ("/config/full", test_config_full);
  g_test_add_func ("/config/policy", test_config_policy);
  g_test_add_func ("/config/storage-canonical", test_config_storage_canonical);
  g_test_add_func ("/config/errors", test_config_errors);
  g_test_add_func ("/config/syntax-error", test_config_syntax_error);
  g_test_add_func ("/config/missing-file", test_config_missing_file);
  g_test_add_func ("/config/file", test_config_file);
  g_test_add_func ("/config/shipped", test_config_shipped);
  return g_test_run ();
}
