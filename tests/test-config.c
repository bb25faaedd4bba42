/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include "config.h"

#include <string.h>

#include <dhf/dhf.h>
#include <glib/gstdio.h>

#include "dhf-config.h"
#include "dhf-xdm-codec.h"
#include "dhf-xdm-router.h"

static void
test_config_defaults (void)
{
  g_autoptr (DhfConfig) config = dhf_config_new ();

  g_assert_cmpstr (config->hypervisor_uri, ==, "qemu:///system");
  g_assert_cmpstr (config->domain_type, ==, "auto");
  g_assert_cmpuint (config->shutdown_timeout_s, ==, 30);
  g_assert_cmpint (config->auth_mode, ==, DHF_AUTH_MODE_AUTO);
  g_assert_true (g_path_is_absolute (config->storage_dir));
  /* Console output is kept only where the admin asks for it. */
  g_assert_null (config->console_log_dir);
  /* Admin directory first, vendor defaults last. */
  g_assert_cmpuint (g_strv_length (config->policy_dirs), ==, 2);
  g_assert_cmpstr (config->policy_dirs[0], ==, DHF_SYSCONFDIR "/policy.d");
  g_assert_cmpstr (config->policy_dirs[1], ==, DHF_DATADIR "/policy.d");
  g_assert_cmpstr (config->policy_last_good, ==, DHF_LOCALSTATEDIR "/policy.last-good");
}

/* [Devices], [Display], [Hotkeys]: what dhfd.conf(5) and dhfd(8) document. */
static void
test_config_devices_defaults (void)
{
  g_autoptr (DhfConfig) config = dhf_config_new ();

  g_assert_nonnull (config->emulated_inputs);
  g_assert_cmpuint (g_strv_length (config->emulated_inputs), ==, 0);
  g_assert_cmpstr (config->device_state_file, ==, DHF_LOCALSTATEDIR "/devices.json");
  g_assert_cmpstr (config->focus_fallback, ==, "dom0");
  g_assert_cmpuint (config->focused_weight, ==, 1024);
  g_assert_cmpuint (config->normal_weight, ==, 256);
  g_assert_nonnull (config->switch_order);
  g_assert_cmpuint (g_strv_length (config->switch_order), ==, 0);
  g_assert_false (config->cycle_dom0);
  g_assert_nonnull (config->hotkey_keyboards);
  g_assert_cmpuint (g_strv_length (config->hotkey_keyboards), ==, 0);
  g_assert_null (config->hotkey_slot_modifiers);
}

static void
test_config_devices_full (void)
{
  g_autoptr (DhfConfig) config = dhf_config_new ();
  g_autoptr (GError) error = NULL;
  const gchar *data = "[Devices]\nEmulatedInput= tablet ; keyboard;\n"
                      "StateFile=/srv//dhf/./state/../devices.json\n"
                      "[Display]\nFallback=@previous\nFocusedWeight=10000\nNormalWeight=1\n"
                      "Order=work;personal-2\nCycleDom0=true\n"
                      "[Hotkeys]\nKeyboards=/dev/input/by-path/kbd;/dev/input//event3/\n"
                      "SlotModifiers=alt + CTRL\n";
  const gchar *const inputs[] = { "tablet", "keyboard", NULL };
  const gchar *const order[] = { "work", "personal-2", NULL };
  const gchar *const keyboards[] = { "/dev/input/by-path/kbd", "/dev/input/event3", NULL };

  g_assert_true (dhf_config_load_data (config, data, "t.conf", &error));
  g_assert_no_error (error);
  g_assert_true (g_strv_equal ((const gchar *const *) config->emulated_inputs, inputs));
  g_assert_cmpstr (config->device_state_file, ==, "/srv/dhf/devices.json");
  g_assert_cmpstr (config->focus_fallback, ==, "@previous");
  g_assert_cmpuint (config->focused_weight, ==, 10000);
  g_assert_cmpuint (config->normal_weight, ==, 1);
  g_assert_true (g_strv_equal ((const gchar *const *) config->switch_order, order));
  g_assert_true (config->cycle_dom0);
  g_assert_true (g_strv_equal ((const gchar *const *) config->hotkey_keyboards, keyboards));
  /* Written back in the order combos are printed in. */
  g_assert_cmpstr (config->hotkey_slot_modifiers, ==, "Ctrl+Alt");
}

static void
test_config_devices_values (void)
{
  static const struct
  {
    const gchar *data;
    const gchar *fallback;
    guint focused, normal;
    const gchar *slot;
  } cases[] = {
    { "[Display]\nFallback=dom0\n", "dom0", 1024, 256, NULL },
    { "[Display]\nFallback=personal\n", "personal", 1024, 256, NULL },
    { "[Display]\nFallback=a\n", "a", 1024, 256, NULL },
    /* 0 and 0: weights left alone. */
    { "[Display]\nFocusedWeight=0\nNormalWeight=0\n", "dom0", 0, 0, NULL },
    { "[Display]\nNormalWeight=2048\n", "dom0", 1024, 2048, NULL },
    { "[Hotkeys]\nSlotModifiers=Super\n", "dom0", 1024, 256, "Super" },
    { "[Hotkeys]\nSlotModifiers=super+shift+alt+ctrl\n", "dom0", 1024, 256,
      "Ctrl+Alt+Shift+Super" },
  };

  for (guint i = 0; i < G_N_ELEMENTS (cases); i++)
    {
      g_autoptr (DhfConfig) config = dhf_config_new ();
      g_autoptr (GError) error = NULL;

      g_assert_true (dhf_config_load_data (config, cases[i].data, "t.conf", &error));
      g_assert_no_error (error);
      g_assert_cmpstr (config->focus_fallback, ==, cases[i].fallback);
      g_assert_cmpuint (config->focused_weight, ==, cases[i].focused);
      g_assert_cmpuint (config->normal_weight, ==, cases[i].normal);
      g_assert_cmpstr (config->hotkey_slot_modifiers, ==, cases[i].slot);
    }
}

static void
test_config_full (void)
{
  g_autoptr (DhfConfig) config = dhf_config_new ();
  g_autoptr (GError) error = NULL;
  const gchar *data = "# comment\n"
                      "[Hypervisor]\nURI=test:///default\nDomainType=qemu\n"
                      "[Appliances]\nStorageDirectory=/srv/dhf\nShutdownTimeout=5\n"
                      "ConsoleLogDirectory=/var/log/dhf/console\n"
                      "[Authorization]\nMode=peer-uid\n";

  g_assert_true (dhf_config_load_data (config, data, "t.conf", &error));
  g_assert_no_error (error);
  g_assert_cmpstr (config->hypervisor_uri, ==, "test:///default");
  g_assert_cmpstr (config->domain_type, ==, "qemu");
  g_assert_cmpstr (config->storage_dir, ==, "/srv/dhf");
  g_assert_cmpuint (config->shutdown_timeout_s, ==, 5);
  g_assert_cmpstr (config->console_log_dir, ==, "/var/log/dhf/console");
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

/* [XDM]: the defaults are the router's. */
static void
test_config_xdm_defaults (void)
{
  g_autoptr (DhfConfig) config = dhf_config_new ();
  DhfXdmLimits limits;

  dhf_xdm_limits_init (&limits);
  g_assert_null (config->xdm_socket);
  g_assert_cmpuint (config->xdm_socket_mode, ==, 0660);
  g_assert_null (config->xdm_socket_group);
  g_assert_cmpuint (config->xdm_vsock_port, ==, DHF_XDM_VSOCK_PORT);
  g_assert_false (config->xdm_vsock_port_set);
  g_assert_cmpuint (config->xdm_max_calls_in_flight, ==, limits.max_calls_in_flight);
  g_assert_cmpuint (config->xdm_max_queued_bytes, ==, limits.max_queued_bytes);
  g_assert_cmpuint (config->xdm_max_registrations, ==, limits.max_registrations);
  g_assert_cmpuint (config->xdm_max_subscriptions, ==, limits.max_subscriptions);
  g_assert_cmpuint (config->xdm_max_streams, ==, limits.max_streams);
  g_assert_cmpuint (config->xdm_max_clients, ==, limits.max_dom0_clients);
  g_assert_cmpuint (config->xdm_max_connections_per_domain, ==, limits.max_domain_connections);
  g_assert_cmpuint (config->xdm_max_pending_questions, ==, limits.max_pending_asks);
  g_assert_cmpuint (config->xdm_ask_timeout_s * 1000, ==, limits.ask_timeout_ms);
  /* What dhfd.conf(5) and dhfd(8) document. */
  g_assert_cmpuint (config->xdm_max_calls_in_flight, ==, 256);
  g_assert_cmpuint (config->xdm_max_queued_bytes, ==, 4 << 20);
  g_assert_cmpuint (config->xdm_max_registrations, ==, 64);
  g_assert_cmpuint (config->xdm_max_subscriptions, ==, 256);
  g_assert_cmpuint (config->xdm_max_streams, ==, 64);
  g_assert_cmpuint (config->xdm_max_clients, ==, 4096);
  g_assert_cmpuint (config->xdm_max_connections_per_domain, ==, 8);
  g_assert_cmpuint (config->xdm_max_pending_questions, ==, 8);
  g_assert_cmpuint (config->xdm_ask_timeout_s, ==, 30);
}

static void
test_config_xdm_full (void)
{
  g_autoptr (DhfConfig) config = dhf_config_new ();
  g_autoptr (GError) error = NULL;
  const gchar *data = "[XDM]\nSocket=/run/x//dhf/../xdm.sock\nSocketMode=0600\n"
                      "SocketGroup=wheel\nVsockPort=0\nMaxCallsInFlight=10\n"
                      "MaxQueuedBytes=2MiB\nMaxRegistrations=3\nMaxSubscriptions=4\n"
                      "MaxStreams=5\nMaxClients=6\nMaxPendingQuestions=7\nAskTimeout=120\n"
                      "MaxConnectionsPerDomain=9\n";

  g_assert_true (dhf_config_load_data (config, data, "t.conf", &error));
  g_assert_no_error (error);
  g_assert_cmpstr (config->xdm_socket, ==, "/run/x/xdm.sock");
  g_assert_cmpuint (config->xdm_socket_mode, ==, 0600);
  g_assert_cmpstr (config->xdm_socket_group, ==, "wheel");
  g_assert_cmpuint (config->xdm_vsock_port, ==, 0);
  g_assert_true (config->xdm_vsock_port_set);
  g_assert_cmpuint (config->xdm_max_calls_in_flight, ==, 10);
  g_assert_cmpuint (config->xdm_max_queued_bytes, ==, 2 << 20);
  g_assert_cmpuint (config->xdm_max_registrations, ==, 3);
  g_assert_cmpuint (config->xdm_max_subscriptions, ==, 4);
  g_assert_cmpuint (config->xdm_max_streams, ==, 5);
  g_assert_cmpuint (config->xdm_max_clients, ==, 6);
  g_assert_cmpuint (config->xdm_max_connections_per_domain, ==, 9);
  g_assert_cmpuint (config->xdm_max_pending_questions, ==, 7);
  g_assert_cmpuint (config->xdm_ask_timeout_s, ==, 120);
}

static void
test_config_xdm_sizes (void)
{
  static const struct
  {
    const gchar *text;
    guint64 bytes;
  } cases[] = {
    { "1048592", 1048592 }, /* one largest frame */
    { "4MiB", 4 << 20 },
    { "3 MiB", 3 << 20 },
    { "2048 KiB", 2 << 20 },
    { "1 GiB", (guint64) 1 << 30 },
    { "256MiB", (guint64) 256 << 20 },
  };

  for (guint i = 0; i < G_N_ELEMENTS (cases); i++)
    {
      g_autoptr (DhfConfig) config = dhf_config_new ();
      g_autoptr (GError) error = NULL;
      g_autofree gchar *data = g_strdup_printf ("[XDM]\nMaxQueuedBytes=%s\n", cases[i].text);

      if (cases[i].bytes > ((guint64) 256 << 20))
        {
          g_assert_false (dhf_config_load_data (config, data, "t.conf", &error));
          continue;
        }
      g_assert_true (dhf_config_load_data (config, data, "t.conf", &error));
      g_assert_no_error (error);
      g_assert_cmpuint (config->xdm_max_queued_bytes, ==, cases[i].bytes);
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

/* One spelling of the directory, as it goes into every domain's XML. */
static void
test_config_console_log_canonical (void)
{
  g_autoptr (DhfConfig) config = dhf_config_new ();
  g_autoptr (GError) error = NULL;

  g_assert_true (dhf_config_load_data (
      config, "[Appliances]\nConsoleLogDirectory= /var//log/./dhf/x/../console/ \n", "t.conf",
      &error));
  g_assert_no_error (error);
  g_assert_cmpstr (config->console_log_dir, ==, "/var/log/dhf/console");
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
    { "[Appliances]\nConsoleLogDirectory=console\n",
      "t.conf: [Appliances] ConsoleLogDirectory: expected an absolute path, not 'console'" },
    { "[Appliances]\nConsoleLogDirectory=\n",
      "t.conf: [Appliances] ConsoleLogDirectory: empty value" },
    { "[Appliances]\nConsoleLogDirectory=/var/log/a\\nb\n",
      "t.conf: [Appliances] ConsoleLogDirectory: the path must not contain control characters" },
    { "[Appliances]\nConsoleLogDir=/var/log\n", "t.conf: [Appliances] ConsoleLogDir: unknown key" },
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
    { "[XDM]\nsocket=/x\n", "t.conf: [XDM] socket: unknown key" },
    { "[XDM]\nSocket=\n", "t.conf: [XDM] Socket: empty value" },
    { "[XDM]\nSocket=run/xdm.sock\n",
      "t.conf: [XDM] Socket: expected an absolute path, not 'run/xdm.sock'" },
    { "[XDM]\nSocket=/\n",
      "t.conf: [XDM] Socket: '/' cannot be a unix socket's path (at most 107 bytes)" },
    { "[XDM]\nSocket=/run/"
      "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"
      "xxxxxx"
      "xxxxx\n",
      "t.conf: [XDM] Socket: '/run/"
      "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"
      "xxxxxx"
      "xxxxx' cannot be a unix socket's path (at most 107 bytes)" },
    { "[XDM]\nSocketMode=0666x\n",
      "t.conf: [XDM] SocketMode: expected permission bits from 0 to 777 (octal), not '0666x'" },
    { "[XDM]\nSocketMode=1777\n",
      "t.conf: [XDM] SocketMode: expected permission bits from 0 to 777 (octal), not '1777'" },
    { "[XDM]\nSocketMode=0680\n",
      "t.conf: [XDM] SocketMode: expected permission bits from 0 to 777 (octal), not '0680'" },
    { "[XDM]\nSocketGroup=a b\n", "t.conf: [XDM] SocketGroup: 'a b' is not a group name" },
    { "[XDM]\nSocketGroup=-g\n", "t.conf: [XDM] SocketGroup: '-g' is not a group name" },
    { "[XDM]\nSocketGroup=g:x\n", "t.conf: [XDM] SocketGroup: 'g:x' is not a group name" },
    { "[XDM]\nVsockPort=-1\n",
      "t.conf: [XDM] VsockPort: expected a port (0 disables vsock) from 0 to 4294967294, not "
      "'-1'" },
    { "[XDM]\nVsockPort=4294967295\n",
      "t.conf: [XDM] VsockPort: expected a port (0 disables vsock) from 0 to 4294967294, not "
      "'4294967295'" },
    { "[XDM]\nMaxCallsInFlight=0\n",
      "t.conf: [XDM] MaxCallsInFlight: expected a number from 1 to 65536, not '0'" },
    { "[XDM]\nMaxCallsInFlight=many\n",
      "t.conf: [XDM] MaxCallsInFlight: expected a number from 1 to 65536, not 'many'" },
    { "[XDM]\nMaxRegistrations=4097\n",
      "t.conf: [XDM] MaxRegistrations: expected a number from 1 to 4096, not '4097'" },
    { "[XDM]\nMaxSubscriptions=0\n",
      "t.conf: [XDM] MaxSubscriptions: expected a number from 1 to 65536, not '0'" },
    { "[XDM]\nMaxStreams=1e3\n",
      "t.conf: [XDM] MaxStreams: expected a number from 1 to 4096, not '1e3'" },
    { "[XDM]\nMaxClients=65537\n",
      "t.conf: [XDM] MaxClients: expected a number from 1 to 65536, not '65537'" },
    { "[XDM]\nMaxConnectionsPerDomain=0\n",
      "t.conf: [XDM] MaxConnectionsPerDomain: expected a number from 1 to 1024, not '0'" },
    { "[XDM]\nMaxConnectionsPerDomain=1025\n",
      "t.conf: [XDM] MaxConnectionsPerDomain: expected a number from 1 to 1024, not '1025'" },
    { "[XDM]\nMaxPendingQuestions=0\n",
      "t.conf: [XDM] MaxPendingQuestions: expected a number from 1 to 1024, not '0'" },
    { "[XDM]\nAskTimeout=0\n",
      "t.conf: [XDM] AskTimeout: expected seconds from 1 to 3600, not '0'" },
    { "[XDM]\nAskTimeout=30s\n",
      "t.conf: [XDM] AskTimeout: expected seconds from 1 to 3600, not '30s'" },
    { "[XDM]\nMaxQueuedBytes=1MiB\n",
      "t.conf: [XDM] MaxQueuedBytes: expected a size from 1048592 bytes to 256 MiB (bytes, or "
      "with KiB, MiB or GiB), not '1MiB'" },
    { "[XDM]\nMaxQueuedBytes=257MiB\n",
      "t.conf: [XDM] MaxQueuedBytes: expected a size from 1048592 bytes to 256 MiB (bytes, or "
      "with KiB, MiB or GiB), not '257MiB'" },
    { "[XDM]\nMaxQueuedBytes=4MB\n",
      "t.conf: [XDM] MaxQueuedBytes: expected a size from 1048592 bytes to 256 MiB (bytes, or "
      "with KiB, MiB or GiB), not '4MB'" },
    { "[XDM]\nMaxQueuedBytes=MiB\n",
      "t.conf: [XDM] MaxQueuedBytes: expected a size from 1048592 bytes to 256 MiB (bytes, or "
      "with KiB, MiB or GiB), not 'MiB'" },
    { "[XDM]\nMaxQueuedBytes=18446744073709551615GiB\n",
      "t.conf: [XDM] MaxQueuedBytes: expected a size from 1048592 bytes to 256 MiB (bytes, or "
      "with KiB, MiB or GiB), not '18446744073709551615GiB'" },
    { "[Devices]\nEmulatedInput=joystick\n",
      "t.conf: [Devices] EmulatedInput: expected keyboard, mouse or tablet separated by ';', not "
      "'joystick'" },
    { "[Devices]\nEmulatedInput=keyboard;Mouse\n",
      "t.conf: [Devices] EmulatedInput: expected keyboard, mouse or tablet separated by ';', not "
      "'Mouse'" },
    { "[Devices]\nEmulatedInput=keyboard;;mouse\n",
      "t.conf: [Devices] EmulatedInput: expected keyboard, mouse or tablet separated by ';', not "
      "''" },
    { "[Devices]\nEmulatedInput=keyboard;tablet;keyboard\n",
      "t.conf: [Devices] EmulatedInput: 'keyboard' is listed twice" },
    { "[Devices]\nEmulatedInput=\n", "t.conf: [Devices] EmulatedInput: empty value" },
    { "[Devices]\nStateFile=devices.json\n",
      "t.conf: [Devices] StateFile: expected an absolute path, not 'devices.json'" },
    { "[Devices]\nStateFile=/var/lib/x//last\n[Policy]\nLastGood=/var/lib/x/last\n",
      "t.conf: [Devices] StateFile: '/var/lib/x/last' is also [Policy] LastGood; each needs a "
      "file of its own" },
    { "[Devices]\nStatefile=/x\n", "t.conf: [Devices] Statefile: unknown key" },
    { "[Display]\nFallback=Personal\n",
      "t.conf: [Display] Fallback: expected dom0, @previous or an appliance name, not 'Personal'" },
    { "[Display]\nFallback=@next\n",
      "t.conf: [Display] Fallback: expected dom0, @previous or an appliance name, not '@next'" },
    { "[Display]\nFallback=vpn--gateway\n",
      "t.conf: [Display] Fallback: expected dom0, @previous or an appliance name, not "
      "'vpn--gateway'" },
    { "[Display]\nFallback=work-\n",
      "t.conf: [Display] Fallback: expected dom0, @previous or an appliance name, not 'work-'" },
    { "[Display]\nFocusedWeight=10001\n",
      "t.conf: [Display] FocusedWeight: expected a CPU weight from 1 to 10000, or 0 to leave CPU "
      "weights alone, not '10001'" },
    { "[Display]\nNormalWeight=-1\n",
      "t.conf: [Display] NormalWeight: expected a CPU weight from 1 to 10000, or 0 to leave CPU "
      "weights alone, not '-1'" },
    { "[Display]\nNormalWeight=256x\n",
      "t.conf: [Display] NormalWeight: expected a CPU weight from 1 to 10000, or 0 to leave CPU "
      "weights alone, not '256x'" },
    { "[Display]\nFocusedWeight=0\n",
      "t.conf: [Display] FocusedWeight: 0 leaves CPU weights alone, so NormalWeight must be 0 too "
      "(it is 256)" },
    { "[Display]\nNormalWeight=0\nFocusedWeight=2000\n",
      "t.conf: [Display] NormalWeight: 0 leaves CPU weights alone, so FocusedWeight must be 0 too "
      "(it is 2000)" },
    { "[Display]\nOrder=work;Work\n",
      "t.conf: [Display] Order: expected appliance names separated by ';', not 'Work'" },
    { "[Display]\nOrder=work;personal;work\n", "t.conf: [Display] Order: 'work' is listed twice" },
    { "[Display]\nOrder=work;dom0\n",
      "t.conf: [Display] Order: dom0 cannot be ordered here (CycleDom0=true puts it in the "
      "cycle)" },
    { "[Display]\nCycleDom0=yes\n",
      "t.conf: [Display] CycleDom0: expected true or false, not 'yes'" },
    { "[Hotkeys]\nKeyboards=/dev/input/event0;event1\n",
      "t.conf: [Hotkeys] Keyboards: expected absolute paths separated by ';', not 'event1'" },
    { "[Hotkeys]\nKeyboards=/dev/input/event0;/dev/input/./event0\n",
      "t.conf: [Hotkeys] Keyboards: '/dev/input/event0' is listed twice" },
    { "[Hotkeys]\nSlotModifiers=Ctrl+Alt+1\n",
      "t.conf: [Hotkeys] SlotModifiers: expected modifiers only (Ctrl, Alt, Shift, Super), each "
      "at most once, joined by '+' (such as Ctrl+Alt), not 'Ctrl+Alt+1'" },
    { "[Hotkeys]\nSlotModifiers=Ctrl+ctrl\n",
      "t.conf: [Hotkeys] SlotModifiers: expected modifiers only (Ctrl, Alt, Shift, Super), each "
      "at most once, joined by '+' (such as Ctrl+Alt), not 'Ctrl+ctrl'" },
    { "[Hotkeys]\nSlotModifiers=Ctrl+\n",
      "t.conf: [Hotkeys] SlotModifiers: expected modifiers only (Ctrl, Alt, Shift, Super), each "
      "at most once, joined by '+' (such as Ctrl+Alt), not 'Ctrl+'" },
    { "[Hotkeys]\nSlotModifiers=Meta\n",
      "t.conf: [Hotkeys] SlotModifiers: expected modifiers only (Ctrl, Alt, Shift, Super), each "
      "at most once, joined by '+' (such as Ctrl+Alt), not 'Meta'" },
    { "[Hotkey]\nKeyboards=/x\n", "t.conf: [Hotkey] Keyboards: unknown key" },
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
  /* It documents every [XDM] key with its default. */
  {
    g_autoptr (DhfConfig) defaults = dhf_config_new ();
    g_autofree gchar *text = NULL;
    static const gchar *const keys[] = { "Socket",
                                         "SocketMode",
                                         "SocketGroup",
                                         "VsockPort",
                                         "MaxCallsInFlight",
                                         "MaxQueuedBytes",
                                         "MaxRegistrations",
                                         "MaxSubscriptions",
                                         "MaxStreams",
                                         "MaxClients",
                                         "MaxPendingQuestions",
                                         "AskTimeout",
                                         "MaxConnectionsPerDomain" };

    g_assert_true (g_file_get_contents (path, &text, NULL, &error));
    for (guint i = 0; i < G_N_ELEMENTS (keys); i++)
      {
        g_autofree gchar *line = g_strdup_printf ("\n%s=", keys[i]);
        g_autofree gchar *commented = g_strdup_printf ("\n#%s=", keys[i]);

        if (strstr (text, line) == NULL && strstr (text, commented) == NULL)
          g_test_fail_printf ("data/dhfd.conf does not document [XDM] %s", keys[i]);
      }
    g_assert_null (config->xdm_socket);
    g_assert_null (config->xdm_socket_group);
    g_assert_cmpuint (config->xdm_socket_mode, ==, defaults->xdm_socket_mode);
    g_assert_cmpuint (config->xdm_vsock_port, ==, defaults->xdm_vsock_port);
    g_assert_false (config->xdm_vsock_port_set);
    g_assert_cmpuint (config->xdm_max_calls_in_flight, ==, defaults->xdm_max_calls_in_flight);
    g_assert_cmpuint (config->xdm_max_queued_bytes, ==, defaults->xdm_max_queued_bytes);
    g_assert_cmpuint (config->xdm_max_registrations, ==, defaults->xdm_max_registrations);
    g_assert_cmpuint (config->xdm_max_subscriptions, ==, defaults->xdm_max_subscriptions);
    g_assert_cmpuint (config->xdm_max_streams, ==, defaults->xdm_max_streams);
    g_assert_cmpuint (config->xdm_max_clients, ==, defaults->xdm_max_clients);
    g_assert_cmpuint (config->xdm_max_connections_per_domain, ==,
                      defaults->xdm_max_connections_per_domain);
    g_assert_cmpuint (config->xdm_max_pending_questions, ==, defaults->xdm_max_pending_questions);
    g_assert_cmpuint (config->xdm_ask_timeout_s, ==, defaults->xdm_ask_timeout_s);
  }
  /* ... and every [Devices], [Display] and [Hotkeys] key, with the
   * defaults dhfd uses. */
  {
    g_autoptr (DhfConfig) defaults = dhf_config_new ();
    g_autofree gchar *text = NULL;
    static const gchar *const keys[]
        = { "EmulatedInput", "StateFile", "Fallback",  "FocusedWeight", "NormalWeight",
            "Order",         "CycleDom0", "Keyboards", "SlotModifiers" };

    g_assert_true (g_file_get_contents (path, &text, NULL, &error));
    for (guint i = 0; i < G_N_ELEMENTS (keys); i++)
      {
        g_autofree gchar *line = g_strdup_printf ("\n%s=", keys[i]);
        g_autofree gchar *commented = g_strdup_printf ("\n#%s=", keys[i]);

        if (strstr (text, line) == NULL && strstr (text, commented) == NULL)
          g_test_fail_printf ("data/dhfd.conf does not document %s", keys[i]);
      }
    g_assert_cmpuint (g_strv_length (config->emulated_inputs), ==, 0);
    g_assert_cmpstr (config->device_state_file, ==, "/var/lib/dhf/devices.json");
    g_assert_cmpstr (config->focus_fallback, ==, defaults->focus_fallback);
    g_assert_cmpuint (config->focused_weight, ==, defaults->focused_weight);
    g_assert_cmpuint (config->normal_weight, ==, defaults->normal_weight);
    g_assert_cmpuint (g_strv_length (config->switch_order), ==, 0);
    g_assert_cmpint (config->cycle_dom0, ==, defaults->cycle_dom0);
    g_assert_cmpuint (g_strv_length (config->hotkey_keyboards), ==, 0);
    g_assert_null (config->hotkey_slot_modifiers);
  }
  /* ... and [Appliances] ConsoleLogDirectory, unset by default. */
  {
    g_autofree gchar *text = NULL;

    g_assert_true (g_file_get_contents (path, &text, NULL, &error));
    if (strstr (text, "\n#ConsoleLogDirectory=") == NULL)
      g_test_fail_printf ("data/dhfd.conf does not document ConsoleLogDirectory");
    g_assert_null (config->console_log_dir);
  }
}

int
main (int argc, char **argv)
{
  g_test_init (&argc, &argv, NULL);
  g_test_add_func ("/config/defaults", test_config_defaults);
  g_test_add_func ("/config/full", test_config_full);
  g_test_add_func ("/config/policy", test_config_policy);
  g_test_add_func ("/config/devices-defaults", test_config_devices_defaults);
  g_test_add_func ("/config/devices-full", test_config_devices_full);
  g_test_add_func ("/config/devices-values", test_config_devices_values);
  g_test_add_func ("/config/xdm-defaults", test_config_xdm_defaults);
  g_test_add_func ("/config/xdm-full", test_config_xdm_full);
  g_test_add_func ("/config/xdm-sizes", test_config_xdm_sizes);
  g_test_add_func ("/config/storage-canonical", test_config_storage_canonical);
  g_test_add_func ("/config/console-log-canonical", test_config_console_log_canonical);
  g_test_add_func ("/config/errors", test_config_errors);
  g_test_add_func ("/config/syntax-error", test_config_syntax_error);
  g_test_add_func ("/config/missing-file", test_config_missing_file);
  g_test_add_func ("/config/file", test_config_file);
  g_test_add_func ("/config/shipped", test_config_shipped);
  return g_test_run ();
}
