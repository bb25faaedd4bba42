/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* libvirt's side of device assignment and the display against a real
 * libvirtd + QEMU (qemu:///system, TCG): hot-plug with its scopes and
 * idempotence, CPU weights, send-key, screenshots and graphics fds, each
 * checked against what libvirt itself says.
 *
 * Needs root. It starts libvirtd with scripts/libvirtd-up and fails, never
 * skips, when it cannot. Its domains are named dhftest-PID-dev-*; a
 * guardian process in its own session removes them when this process
 * ends, however it ends. */
#include "config.h"

#include <linux/input-event-codes.h>
#include <poll.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include <gdk-pixbuf/gdk-pixbuf.h>
#include <libvirt/libvirt.h>
#include <libvirt/virterror.h>

#include "dhf-device.h"
#include "dhf-hypervisor-devices.h"

#define URI            "qemu:///system"
#define WAIT_TIMEOUT_S 60

static struct
{
  gchar *name_a; /* persistent, running, with a USB tablet of its own */
  gchar *name_b; /* transient, running */
  gchar *name_c; /* persistent, running, without a USB controller */
  gchar *name_d; /* persistent, never started */
  gchar *name_missing;
  virConnectPtr conn; /* the test's own view of libvirt, as virsh has it */
  DhfHypervisor *hypervisor;
  const DhfDeviceOps *ops;
  GPid guardian;
  gint guardian_fd;
} fx = { .guardian_fd = -1 };

G_GNUC_NORETURN G_GNUC_PRINTF (1, 2) static void bail (const gchar *format, ...)
{
  g_autofree gchar *message = NULL;
  va_list args;

  va_start (args, format);
  message = g_strdup_vprintf (format, args);
  va_end (args);
  g_print ("Bail out! %s\n", message);
  g_printerr ("test-hypervisor-devices: error: %s\n", message);
  exit (1);
}

static void
ignore_libvirt_error (void *opaque, virErrorPtr err)
{
  /* Failures are reported by the checks, with libvirt's message. */
}

static gdouble
now_ms (void)
{
  return g_get_monotonic_time () / 1000.0;
}

/* --- setup ------------------------------------------------------------ */

static void
libvirtd_up (void)
{
  const gchar *root = g_getenv ("DHF_SOURCE_ROOT");
  g_autofree gchar *script = NULL;
  g_autofree gchar *out = NULL;
  g_autofree gchar *err = NULL;
  g_autoptr (GError) error = NULL;
  gint status = 0;

  if (root == NULL)
    bail ("DHF_SOURCE_ROOT is not set (run me with meson test)");
  script = g_build_filename (root, "scripts", "libvirtd-up", NULL);
  if (!g_spawn_sync (NULL, (gchar *[]){ script, NULL }, NULL, G_SPAWN_DEFAULT, NULL, NULL, &out,
                     &err, &status, &error))
    bail ("cannot run %s: %s", script, error->message);
  if (!g_spawn_check_wait_status (status, &error))
    bail ("libvirtd cannot be started (%s: %s):\n%s%s", script, error->message, out, err);
}

static void
guardian_setup (gpointer data)
{
  /* Outlives a harness that kills this test's process group. */
  setsid ();
}

/* Removes the test's domains once this process is gone: it waits for EOF
 * on a pipe only this process holds. */
static void
guardian_start (void)
{
  static const gchar script[] = "cat >/dev/null\n"
                                "for d in \"$@\"; do\n"
                                "  virsh -q -c " URI " destroy \"$d\"\n"
                                "  virsh -q -c " URI " undefine \"$d\"\n"
                                "done >/dev/null 2>&1\n"
                                "exit 0\n";
  const gchar *argv[]
      = { "/bin/sh", "-c", script, "sh", fx.name_a, fx.name_b, fx.name_c, fx.name_d, NULL };
  g_autoptr (GError) error = NULL;

  if (!g_spawn_async_with_pipes (
          NULL, (gchar **) argv, NULL,
          G_SPAWN_DO_NOT_REAP_CHILD | G_SPAWN_STDOUT_TO_DEV_NULL | G_SPAWN_STDERR_TO_DEV_NULL,
          guardian_setup, NULL, &fx.guardian, &fx.guardian_fd, NULL, NULL, &error))
    bail ("cannot start the cleanup guardian: %s", error->message);
}

static void
guardian_finish (void)
{
  gint status;

  if (fx.guardian_fd < 0)
    return;
  close (fx.guardian_fd);
  fx.guardian_fd = -1;
  waitpid (fx.guardian, &status, 0);
}

static gchar *
domain_xml (const gchar *name, const gchar *usb_model, gboolean own_tablet)
{
  return g_strdup_printf ("<domain type='qemu'>"
                          "<name>%s</name>"
                          "<memory unit='MiB'>128</memory><vcpu>1</vcpu>"
                          "<os><type arch='x86_64'>hvm</type></os>"
                          "<devices>"
                          "<controller type='usb' model='%s'/>"
                          "%s"
                          "<graphics type='vnc' autoport='yes' listen='127.0.0.1'/>"
                          "<video><model type='vga'/></video>"
                          "</devices></domain>",
                          name, usb_model, own_tablet ? "<input type='tablet' bus='usb'/>" : "");
}

static void
domain_up (const gchar *name, const gchar *usb_model, gboolean own_tablet, gboolean persistent,
           gboolean start)
{
  g_autofree gchar *xml = domain_xml (name, usb_model, own_tablet);
  virDomainPtr dom;

  if (persistent)
    {
      dom = virDomainDefineXML (fx.conn, xml);
      if (dom != NULL && start && virDomainCreate (dom) < 0)
        bail ("cannot start %s: %s", name, virGetLastErrorMessage ());
    }
  else
    {
      dom = virDomainCreateXML (fx.conn, xml, 0);
    }
  if (dom == NULL)
    bail ("cannot make %s: %s", name, virGetLastErrorMessage ());
  virDomainFree (dom);
}

static gboolean
on_wait_timeout (gpointer data)
{
  *(gboolean *) data = TRUE;
  return G_SOURCE_REMOVE;
}

static void
hypervisor_connect (DhfHypervisor *hypervisor)
{
  gboolean timed_out = FALSE;
  guint id = g_timeout_add_seconds (WAIT_TIMEOUT_S, on_wait_timeout, &timed_out);

  dhf_hypervisor_start (hypervisor);
  while (!dhf_hypervisor_is_connected (hypervisor) && !timed_out)
    g_main_context_iteration (NULL, TRUE);
  if (timed_out)
    bail ("DhfHypervisor did not connect to %s within %d s", dhf_hypervisor_get_uri (hypervisor),
          WAIT_TIMEOUT_S);
  g_source_remove (id);
}

/* --- helpers ---------------------------------------------------------- */

static gchar *
device_xml (const gchar *input_type)
{
  g_autofree gchar *id = g_strdup_printf ("input-%s", input_type);
  g_autofree gchar *selector = g_strdup_printf ("input:%s", input_type);
  DhfDevice device = {
    .id = id,
    .kind = DHF_DEVICE_KIND_INPUT,
    .selector = selector,
    .description = (gchar *) "emulated",
    .input_type = (gchar *) input_type,
    .iommu_group = -1,
  };

  return dhf_device_to_xml (&device);
}

static gchar *
device_alias (const gchar *input_type)
{
  g_autofree gchar *id = g_strdup_printf ("input-%s", input_type);
  DhfDevice device = { .id = id, .kind = DHF_DEVICE_KIND_INPUT };

  return dhf_device_alias (&device);
}

/* The domain's XML as virsh dumpxml [--inactive] shows it. */
static gchar *
read_xml (const gchar *name, gboolean inactive)
{
  virDomainPtr dom = virDomainLookupByName (fx.conn, name);
  char *raw;
  gchar *xml;

  g_assert_nonnull (dom);
  raw = virDomainGetXMLDesc (dom, inactive ? VIR_DOMAIN_XML_INACTIVE : 0);
  virDomainFree (dom);
  if (raw == NULL)
    g_error ("cannot read the XML of %s: %s", name, virGetLastErrorMessage ());
  xml = g_strdup (raw);
  free (raw);
  return xml;
}

static guint
count (const gchar *haystack, const gchar *needle)
{
  guint n = 0;

  for (const gchar *p = strstr (haystack, needle); p != NULL; p = strstr (p + 1, needle))
    n++;
  return n;
}

/* How often the alias is in the live (or inactive) XML of name. */
static guint
alias_count (const gchar *name, gboolean inactive, const gchar *alias)
{
  g_autofree gchar *xml = read_xml (name, inactive);
  g_autofree gchar *needle = g_strdup_printf ("<alias name='%s'/>", alias);

  return count (xml, needle);
}

static void
assert_alias (const gchar *name, const gchar *alias, guint live, guint config)
{
  guint in_live = alias_count (name, FALSE, alias);
  guint in_config = alias_count (name, TRUE, alias);

  if (in_live != live || in_config != config)
    g_error ("%s: %s is %u times in the live XML (want %u) and %u times in the inactive one "
             "(want %u)",
             name, alias, in_live, live, in_config, config);
}

static gboolean
timed_change (gboolean attach, const gchar *name, const gchar *xml, DhfDeviceScope scope,
              const gchar *what, GError **error)
{
  gdouble t0 = now_ms ();
  gboolean ok = attach ? fx.ops->attach (fx.hypervisor, name, xml, scope, error)
                       : fx.ops->detach (fx.hypervisor, name, xml, scope, error);

  g_test_message ("%s %s %s%s%s: %.1f ms%s", attach ? "attach" : "detach", what, name,
                  scope & DHF_DEVICE_SCOPE_LIVE ? " live" : "",
                  scope & DHF_DEVICE_SCOPE_CONFIG ? " config" : "", now_ms () - t0,
                  ok ? "" : " (failed)");
  return ok;
}

static void
change_ok (gboolean attach, const gchar *name, const gchar *xml, DhfDeviceScope scope,
           const gchar *what)
{
  g_autoptr (GError) error = NULL;

  timed_change (attach, name, xml, scope, what, &error);
  g_assert_no_error (error);
}

static GStrv
list_attached (const gchar *name, gboolean *active)
{
  g_autoptr (GError) error = NULL;
  GStrv aliases = fx.ops->list_attached (fx.hypervisor, name, active, &error);

  g_assert_no_error (error);
  g_assert_nonnull (aliases);
  return aliases;
}

/* Counts the USB tablets of a domain, attached by dhf or its own. */
static guint
tablet_count (const gchar *name, gboolean inactive)
{
  g_autofree gchar *xml = read_xml (name, inactive);

  return count (xml, "<input type='tablet' bus='usb'");
}

static void
on_async_done (GObject *source, GAsyncResult *result, gpointer data)
{
  *(GAsyncResult **) data = g_object_ref (result);
}

static GAsyncResult *
wait_result (GAsyncResult **slot)
{
  gboolean timed_out = FALSE;
  guint id = g_timeout_add_seconds (WAIT_TIMEOUT_S, on_wait_timeout, &timed_out);

  while (*slot == NULL && !timed_out)
    g_main_context_iteration (NULL, TRUE);
  if (timed_out)
    g_error ("no answer within %d s", WAIT_TIMEOUT_S);
  g_source_remove (id);
  return *slot;
}

/* --- attach and detach ------------------------------------------------ */

static void
test_attach_detach (void)
{
  g_autofree gchar *keyboard = device_xml ("keyboard");
  g_autofree gchar *tablet = device_xml ("tablet");
  g_autofree gchar *keyboard_alias = device_alias ("keyboard");
  g_autofree gchar *tablet_alias = device_alias ("tablet");
  const DhfDeviceScope both = DHF_DEVICE_SCOPE_LIVE | DHF_DEVICE_SCOPE_CONFIG;
  g_auto (GStrv) aliases = NULL;
  gboolean active = FALSE;

  g_assert_nonnull (keyboard);
  g_assert_nonnull (strstr (keyboard, keyboard_alias));
  /* a has a USB tablet of its own, in both definitions. */
  g_assert_cmpuint (tablet_count (fx.name_a, FALSE), ==, 1);
  g_assert_cmpuint (tablet_count (fx.name_a, TRUE), ==, 1);

  change_ok (TRUE, fx.name_a, keyboard, both, "keyboard");
  change_ok (TRUE, fx.name_a, tablet, both, "tablet");
  assert_alias (fx.name_a, keyboard_alias, 1, 1);
  assert_alias (fx.name_a, tablet_alias, 1, 1);
  g_assert_cmpuint (tablet_count (fx.name_a, FALSE), ==, 2);

  aliases = list_attached (fx.name_a, &active);
  g_assert_true (active);
  g_assert_cmpuint (g_strv_length (aliases), ==, 2);
  g_assert_true (g_strv_contains ((const gchar *const *) aliases, keyboard_alias));
  g_assert_true (g_strv_contains ((const gchar *const *) aliases, tablet_alias));
  g_clear_pointer (&aliases, g_strfreev);

  /* Again: nothing changes, nothing fails. */
  change_ok (TRUE, fx.name_a, keyboard, both, "keyboard (again)");
  change_ok (TRUE, fx.name_a, tablet, both, "tablet (again)");
  assert_alias (fx.name_a, keyboard_alias, 1, 1);
  assert_alias (fx.name_a, tablet_alias, 1, 1);

  change_ok (FALSE, fx.name_a, keyboard, both, "keyboard");
  change_ok (FALSE, fx.name_a, tablet, both, "tablet");
  assert_alias (fx.name_a, keyboard_alias, 0, 0);
  assert_alias (fx.name_a, tablet_alias, 0, 0);
  /* The domain's own tablet, a twin of ours, is still there. */
  g_assert_cmpuint (tablet_count (fx.name_a, FALSE), ==, 1);
  g_assert_cmpuint (tablet_count (fx.name_a, TRUE), ==, 1);

  change_ok (FALSE, fx.name_a, keyboard, both, "keyboard (again)");
  change_ok (FALSE, fx.name_a, tablet, both, "tablet (again)");

  aliases = list_attached (fx.name_a, &active);
  g_assert_true (active);
  g_assert_cmpuint (g_strv_length (aliases), ==, 0);
}

/* What a live move costs with dhf's checks and without them (the bare
 * libvirt calls): printed, never asserted. */
static void
test_switch_cost (void)
{
  g_autofree gchar *keyboard = device_xml ("keyboard");
  g_autofree gchar *alias = device_alias ("keyboard");
  virDomainPtr dom = virDomainLookupByName (fx.conn, fx.name_a);
  gdouble t0, t1, t2;

  g_assert_nonnull (dom);
  for (guint round = 0; round < 3; round++)
    {
      t0 = now_ms ();
      if (virDomainAttachDeviceFlags (dom, keyboard, VIR_DOMAIN_AFFECT_LIVE) < 0)
        g_error ("bare attach: %s", virGetLastErrorMessage ());
      t1 = now_ms ();
      /* No twin keyboard in a, so the bare detach takes ours. */
      if (virDomainDetachDeviceFlags (dom, keyboard, VIR_DOMAIN_AFFECT_LIVE) < 0)
        g_error ("bare detach: %s", virGetLastErrorMessage ());
      t2 = now_ms ();
      g_test_message ("bare libvirt: attach %.1f ms, detach %.1f ms", t1 - t0, t2 - t1);
      change_ok (TRUE, fx.name_a, keyboard, DHF_DEVICE_SCOPE_LIVE, "keyboard (checked)");
      change_ok (FALSE, fx.name_a, keyboard, DHF_DEVICE_SCOPE_LIVE, "keyboard (checked)");
    }
  virDomainFree (dom);
  assert_alias (fx.name_a, alias, 0, 0);
}

/* Each scope on its own, and a device present in one scope only. */
static void
test_scopes (void)
{
  g_autofree gchar *tablet = device_xml ("tablet");
  g_autofree gchar *alias = device_alias ("tablet");
  const DhfDeviceScope both = DHF_DEVICE_SCOPE_LIVE | DHF_DEVICE_SCOPE_CONFIG;

  change_ok (TRUE, fx.name_a, tablet, DHF_DEVICE_SCOPE_LIVE, "tablet");
  assert_alias (fx.name_a, alias, 1, 0);
  change_ok (TRUE, fx.name_a, tablet, both, "tablet (live already)");
  assert_alias (fx.name_a, alias, 1, 1);
  change_ok (FALSE, fx.name_a, tablet, DHF_DEVICE_SCOPE_CONFIG, "tablet");
  assert_alias (fx.name_a, alias, 1, 0);
  change_ok (FALSE, fx.name_a, tablet, DHF_DEVICE_SCOPE_LIVE, "tablet");
  assert_alias (fx.name_a, alias, 0, 0);
  change_ok (TRUE, fx.name_a, tablet, DHF_DEVICE_SCOPE_CONFIG, "tablet");
  assert_alias (fx.name_a, alias, 0, 1);
  change_ok (FALSE, fx.name_a, tablet, both, "tablet (config only)");
  assert_alias (fx.name_a, alias, 0, 0);
  g_assert_cmpuint (tablet_count (fx.name_a, FALSE), ==, 1);
  g_assert_cmpuint (tablet_count (fx.name_a, TRUE), ==, 1);
}

/* A transient domain has no persistent definition: CONFIG is dropped. */
static void
test_transient (void)
{
  g_autofree gchar *keyboard = device_xml ("keyboard");
  g_autofree gchar *alias = device_alias ("keyboard");
  const DhfDeviceScope both = DHF_DEVICE_SCOPE_LIVE | DHF_DEVICE_SCOPE_CONFIG;
  g_autoptr (GError) error = NULL;
  g_auto (GStrv) aliases = NULL;
  gboolean active = FALSE;

  change_ok (TRUE, fx.name_b, keyboard, both, "keyboard");
  g_assert_cmpuint (alias_count (fx.name_b, FALSE, alias), ==, 1);
  aliases = list_attached (fx.name_b, &active);
  g_assert_true (active);
  g_assert_cmpstrv (aliases, ((const gchar *const[]){ alias, NULL }));

  g_assert_false (timed_change (TRUE, fx.name_b, keyboard, DHF_DEVICE_SCOPE_CONFIG,
                                "keyboard (config of a transient domain)", &error));
  g_assert_error (error, DHF_ERROR, DHF_ERROR_INVALID_STATE);
  g_test_message ("%s", error->message);
  g_clear_error (&error);
  change_ok (FALSE, fx.name_b, keyboard, DHF_DEVICE_SCOPE_CONFIG, "keyboard (config only)");
  g_assert_cmpuint (alias_count (fx.name_b, FALSE, alias), ==, 1);

  /* The move of a switch: out of b, into a, and back. */
  change_ok (FALSE, fx.name_b, keyboard, DHF_DEVICE_SCOPE_LIVE, "keyboard (switch)");
  change_ok (TRUE, fx.name_a, keyboard, DHF_DEVICE_SCOPE_LIVE, "keyboard (switch)");
  change_ok (FALSE, fx.name_a, keyboard, DHF_DEVICE_SCOPE_LIVE, "keyboard (switch)");
  change_ok (TRUE, fx.name_b, keyboard, DHF_DEVICE_SCOPE_LIVE, "keyboard (switch)");
  g_assert_cmpuint (alias_count (fx.name_a, FALSE, alias), ==, 0);
  g_assert_cmpuint (alias_count (fx.name_b, FALSE, alias), ==, 1);
  change_ok (FALSE, fx.name_b, keyboard, both, "keyboard");
  g_assert_cmpuint (alias_count (fx.name_b, FALSE, alias), ==, 0);
}

/* A domain that is not running: LIVE is dropped. */
static void
test_inactive (void)
{
  g_autofree gchar *keyboard = device_xml ("keyboard");
  g_autofree gchar *alias = device_alias ("keyboard");
  const DhfDeviceScope both = DHF_DEVICE_SCOPE_LIVE | DHF_DEVICE_SCOPE_CONFIG;
  g_autoptr (GError) error = NULL;
  g_auto (GStrv) aliases = NULL;
  gboolean active = TRUE;

  change_ok (TRUE, fx.name_d, keyboard, both, "keyboard");
  g_assert_cmpuint (alias_count (fx.name_d, TRUE, alias), ==, 1);
  aliases = list_attached (fx.name_d, &active);
  g_assert_false (active);
  g_assert_cmpstrv (aliases, ((const gchar *const[]){ alias, NULL }));

  g_assert_false (timed_change (TRUE, fx.name_d, keyboard, DHF_DEVICE_SCOPE_LIVE,
                                "keyboard (live, not running)", &error));
  g_assert_error (error, DHF_ERROR, DHF_ERROR_INVALID_STATE);
  g_test_message ("%s", error->message);
  g_clear_error (&error);
  change_ok (FALSE, fx.name_d, keyboard, DHF_DEVICE_SCOPE_LIVE, "keyboard (live only)");
  g_assert_cmpuint (alias_count (fx.name_d, TRUE, alias), ==, 1);
  change_ok (FALSE, fx.name_d, keyboard, both, "keyboard");
  g_assert_cmpuint (alias_count (fx.name_d, TRUE, alias), ==, 0);
}

/* c has no USB controller: the attach fails in QEMU and leaves nothing. */
static void
test_attach_fails (void)
{
  g_autofree gchar *keyboard = device_xml ("keyboard");
  g_autofree gchar *alias = device_alias ("keyboard");
  g_autoptr (GError) error = NULL;
  g_auto (GStrv) aliases = NULL;
  gboolean active = FALSE;

  g_assert_false (timed_change (TRUE, fx.name_c, keyboard,
                                DHF_DEVICE_SCOPE_LIVE | DHF_DEVICE_SCOPE_CONFIG, "keyboard",
                                &error));
  g_assert_nonnull (error);
  g_assert_true (error->domain == DHF_ERROR);
  g_test_message ("attach to %s: %s", fx.name_c, error->message);
  assert_alias (fx.name_c, alias, 0, 0);
  aliases = list_attached (fx.name_c, &active);
  g_assert_true (active);
  g_assert_cmpuint (g_strv_length (aliases), ==, 0);
}

static void
test_bad_input (void)
{
  static const gchar *const bad[] = {
    "<input type='keyboard' bus='usb'/>",
    "<input type='keyboard' bus='usb'><alias name='input0'/></input>",
    "<input type='keyboard' bus='usb'><alias name='ua-dhf-a&apos;b'/></input>",
    "<disk type='file'><alias name='ua-dhf-disk'/></disk>",
    "<input type='keyboard' bus='usb'><alias name='ua-dhf-x'/>",
    "",
  };
  g_autofree gchar *keyboard = device_xml ("keyboard");
  guint keys[VIR_DOMAIN_SEND_KEY_MAX_KEYS + 1] = { 0 };

  for (guint i = 0; i < G_N_ELEMENTS (bad); i++)
    {
      g_autoptr (GError) error = NULL;

      g_assert_false (
          fx.ops->attach (fx.hypervisor, fx.name_a, bad[i], DHF_DEVICE_SCOPE_LIVE, &error));
      g_assert_error (error, DHF_ERROR, DHF_ERROR_INVALID_ARGS);
      g_test_message ("%s: %s", bad[i], error->message);
    }
  for (guint scope = 0; scope < 8; scope += 4)
    {
      g_autoptr (GError) error = NULL;

      g_assert_false (fx.ops->detach (fx.hypervisor, fx.name_a, keyboard, scope, &error));
      g_assert_error (error, DHF_ERROR, DHF_ERROR_INVALID_ARGS);
    }
  {
    g_autoptr (GError) error = NULL;

    for (guint i = 0; i < G_N_ELEMENTS (keys); i++)
      keys[i] = KEY_A + i;
    g_assert_false (
        fx.ops->release_keys (fx.hypervisor, fx.name_a, keys, G_N_ELEMENTS (keys), &error));
    g_assert_error (error, DHF_ERROR, DHF_ERROR_INVALID_ARGS);
  }
}

/* --- weights and keys ------------------------------------------------- */

static guint64
cpu_shares (const gchar *name)
{
  virDomainPtr dom = virDomainLookupByName (fx.conn, name);
  virTypedParameter params[16];
  int n = G_N_ELEMENTS (params);
  unsigned long long shares = 0;

  g_assert_nonnull (dom);
  if (virDomainGetSchedulerParameters (dom, params, &n) < 0)
    g_error ("cannot read the scheduler parameters of %s: %s", name, virGetLastErrorMessage ());
  virDomainFree (dom);
  if (virTypedParamsGetULLong (params, n, VIR_DOMAIN_SCHEDULER_CPU_SHARES, &shares) != 1)
    g_error ("%s has no %s", name, VIR_DOMAIN_SCHEDULER_CPU_SHARES);
  return shares;
}

static void
test_weight (void)
{
  static const guint weights[] = { 512, 2048, 1024 };

  for (guint i = 0; i < G_N_ELEMENTS (weights); i++)
    {
      g_autoptr (GError) error = NULL;

      g_assert_true (fx.ops->set_weight (fx.hypervisor, fx.name_a, weights[i], &error));
      g_assert_no_error (error);
      g_assert_cmpuint (cpu_shares (fx.name_a), ==, weights[i]);
    }
  /* Only a running domain has a live weight. */
  {
    g_autoptr (GError) error = NULL;

    g_assert_false (fx.ops->set_weight (fx.hypervisor, fx.name_d, 512, &error));
    g_assert_error (error, DHF_ERROR, DHF_ERROR_INVALID_STATE);
  }
}

static void
test_release_keys (void)
{
  static const guint modifiers[] = { KEY_LEFTCTRL, KEY_LEFTALT, KEY_LEFTSHIFT, KEY_LEFTMETA };
  g_autoptr (GError) error = NULL;

  g_assert_true (
      fx.ops->release_keys (fx.hypervisor, fx.name_a, modifiers, G_N_ELEMENTS (modifiers), &error));
  g_assert_no_error (error);
  g_assert_true (fx.ops->release_keys (fx.hypervisor, fx.name_a, NULL, 0, &error));
  g_assert_no_error (error);
  g_assert_false (fx.ops->release_keys (fx.hypervisor, fx.name_d, modifiers, 1, &error));
  g_assert_error (error, DHF_ERROR, DHF_ERROR_INVALID_STATE);
}

/* The test driver: a "fair" scheduler with "weight", no hot-plug. */
static void
test_test_driver (void)
{
  g_autoptr (DhfHypervisor) hypervisor = dhf_hypervisor_new ("test:///default");
  g_autofree gchar *keyboard = device_xml ("keyboard");
  static const guint ctrl = KEY_LEFTCTRL;
  g_autoptr (GError) error = NULL;
  g_auto (GStrv) aliases = NULL;
  gboolean active = FALSE;

  hypervisor_connect (hypervisor);
  g_assert_true (fx.ops->set_weight (hypervisor, "test", 256, &error));
  g_assert_no_error (error);
  g_assert_true (fx.ops->release_keys (hypervisor, "test", &ctrl, 1, &error));
  g_assert_no_error (error);
  aliases = fx.ops->list_attached (hypervisor, "test", &active, &error);
  g_assert_no_error (error);
  g_assert_true (active);
  g_assert_cmpuint (g_strv_length (aliases), ==, 0);
  g_assert_false (fx.ops->attach (hypervisor, "test", keyboard, DHF_DEVICE_SCOPE_LIVE, &error));
  g_assert_error (error, DHF_ERROR, DHF_ERROR_NOT_SUPPORTED);
}

/* --- the display ------------------------------------------------------ */

static GBytes *
screenshot (const gchar *name, guint max_width, guint max_height, GError **error)
{
  g_autoptr (GAsyncResult) result = NULL;
  gdouble t0 = now_ms ();
  GBytes *png;

  dhf_hypervisor_screenshot_async (fx.hypervisor, name, max_width, max_height, NULL, on_async_done,
                                   &result);
  png = dhf_hypervisor_screenshot_finish (fx.hypervisor, wait_result (&result), error);
  g_test_message ("screenshot of %s (max %ux%u): %.1f ms", name, max_width, max_height,
                  now_ms () - t0);
  return png;
}

/* Checks png is a PNG that gdk-pixbuf reads; gives its size. */
static void
assert_png (GBytes *png, int *width, int *height)
{
  static const guint8 signature[8] = { 0x89, 'P', 'N', 'G', '\r', '\n', 0x1a, '\n' };
  g_autoptr (GdkPixbufLoader) loader = gdk_pixbuf_loader_new ();
  g_autoptr (GError) error = NULL;
  g_autofree gchar *format = NULL;
  gsize len;
  const guint8 *data = g_bytes_get_data (png, &len);
  GdkPixbuf *pixbuf;

  g_assert_cmpuint (len, >, sizeof signature);
  g_assert_cmpmem (data, sizeof signature, signature, sizeof signature);
  g_assert_true (gdk_pixbuf_loader_write (loader, data, len, &error));
  g_assert_no_error (error);
  g_assert_true (gdk_pixbuf_loader_close (loader, &error));
  g_assert_no_error (error);
  format = gdk_pixbuf_format_get_name (gdk_pixbuf_loader_get_format (loader));
  g_assert_cmpstr (format, ==, "png");
  pixbuf = gdk_pixbuf_loader_get_pixbuf (loader);
  g_assert_nonnull (pixbuf);
  *width = gdk_pixbuf_get_width (pixbuf);
  *height = gdk_pixbuf_get_height (pixbuf);
}

static void
test_screenshot (void)
{
  g_autoptr (GError) error = NULL;
  g_autoptr (GBytes) full = NULL;
  g_autoptr (GBytes) narrow = NULL;
  g_autoptr (GBytes) low = NULL;
  g_autoptr (GBytes) roomy = NULL;
  int width, height, w, h;

  full = screenshot (fx.name_a, 0, 0, &error);
  g_assert_no_error (error);
  assert_png (full, &width, &height);
  g_test_message ("%s shows %dx%d", fx.name_a, width, height);
  g_assert_cmpint (width, >, 64);
  g_assert_cmpint (height, >, 32);

  narrow = screenshot (fx.name_a, 64, 0, &error);
  g_assert_no_error (error);
  assert_png (narrow, &w, &h);
  g_assert_cmpint (w, ==, 64);
  /* Proportions kept, to the pixel. */
  g_assert_cmpint (ABS (h - height * 64 / width), <=, 1);

  low = screenshot (fx.name_a, 1000, 32, &error);
  g_assert_no_error (error);
  assert_png (low, &w, &h);
  g_assert_cmpint (h, ==, 32);
  g_assert_cmpint (ABS (w - width * 32 / height), <=, 1);

  /* Never larger than the screen. */
  roomy = screenshot (fx.name_a, 100000, 100000, &error);
  g_assert_no_error (error);
  assert_png (roomy, &w, &h);
  g_assert_cmpint (w, ==, width);
  g_assert_cmpint (h, ==, height);
}

static gint
open_graphics (const gchar *name, GCancellable *cancellable, GError **error)
{
  g_autoptr (GAsyncResult) result = NULL;

  dhf_hypervisor_open_graphics_async (fx.hypervisor, name, cancellable, on_async_done, &result);
  return dhf_hypervisor_open_graphics_finish (fx.hypervisor, wait_result (&result), error);
}

static guint
open_fd_count (void)
{
  g_autoptr (GDir) dir = g_dir_open ("/proc/self/fd", 0, NULL);
  guint n = 0;

  g_assert_nonnull (dir);
  while (g_dir_read_name (dir) != NULL)
    n++;
  return n;
}

static void
test_graphics (void)
{
  g_autoptr (GError) error = NULL;
  g_autoptr (GCancellable) cancellable = g_cancellable_new ();
  g_autoptr (GAsyncResult) result = NULL;
  gchar banner[12] = { 0 };
  gsize got = 0;
  struct pollfd pfd;
  guint fds_before;
  gint fd;

  fd = open_graphics (fx.name_a, NULL, &error);
  g_assert_no_error (error);
  g_assert_cmpint (fd, >=, 0);
  /* A VNC server speaks first: "RFB 003.008\n". */
  pfd.fd = fd;
  pfd.events = POLLIN;
  while (got < 4)
    {
      gssize n;

      g_assert_cmpint (poll (&pfd, 1, 10 * 1000), ==, 1);
      n = read (fd, banner + got, sizeof banner - 1 - got);
      g_assert_cmpint (n, >, 0);
      got += n;
    }
  g_assert_true (g_str_has_prefix (banner, "RFB "));
  g_test_message ("%s's display says %s", fx.name_a, g_strchomp (banner));
  close (fd);

  /* Cancelled after libvirt handed out the fd: the fd is closed with the
   * task, not leaked. The callback only runs when the main context is
   * iterated, so the worker has finished by then. */
  fds_before = open_fd_count ();
  dhf_hypervisor_open_graphics_async (fx.hypervisor, fx.name_a, cancellable, on_async_done,
                                      &result);
  g_usleep (2 * G_USEC_PER_SEC);
  g_cancellable_cancel (cancellable);
  fd = dhf_hypervisor_open_graphics_finish (fx.hypervisor, wait_result (&result), &error);
  g_assert_cmpint (fd, ==, -1);
  g_assert_error (error, DHF_ERROR, DHF_ERROR_CANCELLED);
  g_clear_object (&result);
  while (g_main_context_iteration (NULL, FALSE))
    ;
  g_assert_cmpuint (open_fd_count (), ==, fds_before);
}

/* --- unknown domains -------------------------------------------------- */

static void
test_not_found (void)
{
  g_autofree gchar *keyboard = device_xml ("keyboard");
  const DhfDeviceScope both = DHF_DEVICE_SCOPE_LIVE | DHF_DEVICE_SCOPE_CONFIG;
  const gchar *name = fx.name_missing;
  static const guint ctrl = KEY_LEFTCTRL;
  g_autoptr (GError) error = NULL;
  g_autoptr (GBytes) png = NULL;
  gboolean active;

  g_assert_false (fx.ops->attach (fx.hypervisor, name, keyboard, both, &error));
  g_assert_error (error, DHF_ERROR, DHF_ERROR_NOT_FOUND);
  g_test_message ("%s", error->message);
  g_clear_error (&error);
  g_assert_false (fx.ops->detach (fx.hypervisor, name, keyboard, both, &error));
  g_assert_error (error, DHF_ERROR, DHF_ERROR_NOT_FOUND);
  g_clear_error (&error);
  g_assert_null (fx.ops->list_attached (fx.hypervisor, name, &active, &error));
  g_assert_error (error, DHF_ERROR, DHF_ERROR_NOT_FOUND);
  g_clear_error (&error);
  g_assert_false (fx.ops->set_weight (fx.hypervisor, name, 100, &error));
  g_assert_error (error, DHF_ERROR, DHF_ERROR_NOT_FOUND);
  g_clear_error (&error);
  g_assert_false (fx.ops->release_keys (fx.hypervisor, name, &ctrl, 1, &error));
  g_assert_error (error, DHF_ERROR, DHF_ERROR_NOT_FOUND);
  g_clear_error (&error);
  png = screenshot (name, 0, 0, &error);
  g_assert_null (png);
  g_assert_error (error, DHF_ERROR, DHF_ERROR_NOT_FOUND);
  g_clear_error (&error);
  g_assert_cmpint (open_graphics (name, NULL, &error), ==, -1);
  g_assert_error (error, DHF_ERROR, DHF_ERROR_NOT_FOUND);
}

int
main (int argc, char **argv)
{
  g_autofree gchar *prefix = NULL;
  int status;

  g_test_init (&argc, &argv, NULL);
  if (geteuid () != 0)
    bail ("must run as root (qemu:///system)");
  prefix = g_strdup_printf ("dhftest-%d-dev-", (int) getpid ());
  fx.name_a = g_strconcat (prefix, "a", NULL);
  fx.name_b = g_strconcat (prefix, "b", NULL);
  fx.name_c = g_strconcat (prefix, "c", NULL);
  fx.name_d = g_strconcat (prefix, "d", NULL);
  fx.name_missing = g_strconcat (prefix, "missing", NULL);

  libvirtd_up ();
  guardian_start ();
  /* First: it puts libvirt's event loop in place before any connection. */
  fx.hypervisor = dhf_hypervisor_new (URI);
  fx.ops = dhf_hypervisor_device_ops ();
  virSetErrorFunc (NULL, ignore_libvirt_error);
  fx.conn = virConnectOpen (URI);
  if (fx.conn == NULL)
    bail ("cannot connect to %s: %s", URI, virGetLastErrorMessage ());
  domain_up (fx.name_a, "qemu-xhci", TRUE, TRUE, TRUE);
  domain_up (fx.name_b, "qemu-xhci", FALSE, FALSE, TRUE);
  domain_up (fx.name_c, "none", FALSE, TRUE, TRUE);
  domain_up (fx.name_d, "qemu-xhci", FALSE, TRUE, FALSE);
  hypervisor_connect (fx.hypervisor);

  g_test_add_func ("/hypervisor-devices/attach-detach", test_attach_detach);
  g_test_add_func ("/hypervisor-devices/switch-cost", test_switch_cost);
  g_test_add_func ("/hypervisor-devices/scopes", test_scopes);
  g_test_add_func ("/hypervisor-devices/transient", test_transient);
  g_test_add_func ("/hypervisor-devices/inactive", test_inactive);
  g_test_add_func ("/hypervisor-devices/attach-fails", test_attach_fails);
  g_test_add_func ("/hypervisor-devices/bad-input", test_bad_input);
  g_test_add_func ("/hypervisor-devices/weight", test_weight);
  g_test_add_func ("/hypervisor-devices/release-keys", test_release_keys);
  g_test_add_func ("/hypervisor-devices/test-driver", test_test_driver);
  g_test_add_func ("/hypervisor-devices/screenshot", test_screenshot);
  g_test_add_func ("/hypervisor-devices/graphics", test_graphics);
  g_test_add_func ("/hypervisor-devices/not-found", test_not_found);
  status = g_test_run ();

  g_clear_object (&fx.hypervisor);
  while (g_main_context_iteration (NULL, FALSE))
    ;
  virConnectClose (fx.conn);
  guardian_finish ();
  g_free (fx.name_a);
  g_free (fx.name_b);
  g_free (fx.name_c);
  g_free (fx.name_d);
  g_free (fx.name_missing);
  return status;
}
