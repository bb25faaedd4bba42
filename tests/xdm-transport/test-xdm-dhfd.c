/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* dhfd's XDM transports end to end: dhfd (the built binary) on a private
 * bus over libvirt's test driver, whose node file gives two running
 * appliances a channel org.dhf.xdm.0 on a socket this test listens on, as
 * QEMU does on the host side of a virtio-serial port. dhfd must find those
 * paths in the live XML, connect, and greet each simulated domain with its
 * own name; a dom0 client on the socket given with --xdm-socket is dom0.
 * The test speaks raw codec frames on both sides. */
#include "config.h"

#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <dhf/dhf.h>
#include <glib/gstdio.h>

#include "dhf-domain-xml.h"
#include "dhf-manifest.h"
#include "dhf-xdm-codec.h"

#include "dhf-test-util.h"

#define WAIT_TIMEOUT_S 20
#define UUID_ALPHA     "11111111-1b2c-4d5e-8f90-0123456789ab"
#define UUID_BETA      "22222222-1b2c-4d5e-8f90-0123456789ab"
#define UUID_GAMMA     "33333333-1b2c-4d5e-8f90-0123456789ab"
#define AGENT_PATH     "/org/dhf/test/Agent"
#define STATE_TOPIC    "org.dhf.framework.ApplianceState"
#define ECHO           "org.example.Echo1"

/* The admin policy of the test: dom0 hears about appliance states, and
 * may call Echo1 on beta; on alpha the user is asked. */
static const gchar test_policy[] = "org.dhf.framework.ApplianceState @dom0 @dom0 allow\n" ECHO
                                   " @dom0 alpha ask\n" ECHO " @dom0 beta allow\n";

typedef struct
{
  GTestDBus *bus;
  GDBusConnection *conn;
  gchar *tmpdir;
  gchar *node_path;
  gchar *config_path;
  gchar *socket_path;
  gint listen_alpha; /* the host side of each domain's channel */
  gint listen_beta;
  gint listen_gamma; /* shut off: never connected */
  gint listen_dom0;  /* a foreign domain named "dom0": never connected */
  GSubprocess *dhfd;
  DhfDBusXdm *xdm;
  DhfDBusPromptAgent *agent;
  GPtrArray *questions; /* a{sv} the agent was asked */
  gboolean answer;
  gchar *xmldesc_fail; /* dhfd cannot read live XML while this file exists (NULL: no shim) */
} Fixture;

/* --- the node file ------------------------------------------------------- */

static gchar *
appliance_xml (const gchar *name, const gchar *uuid, const gchar *channel, gboolean running)
{
  g_autofree gchar *json
      = g_strdup_printf ("{\"manifest-version\": 1, \"name\": \"%s\", \"vendor\": \"dhf tests\","
                         " \"version\": \"1.0\", \"role\": \"service\", \"memory\": \"256MiB\","
                         " \"vcpus\": 1}",
                         name);
  g_autoptr (GError) error = NULL;
  g_autoptr (DhfManifest) manifest = dhf_manifest_parse (json, -1, NULL, &error);
  DhfDomainXmlOptions options = { .domain_type = "test", .uuid = uuid };
  g_autofree gchar *xml = NULL;
  g_autofree gchar *source = NULL;
  g_autoptr (GString) out = NULL;

  g_assert_no_error (error);
  xml = dhf_domain_xml_build (manifest, &options);
  out = g_string_new (xml);
  /* What libvirt does when it starts the domain: the channel gets a path. */
  source = g_markup_printf_escaped ("<source mode='bind' path='%s'/>", channel);
  g_assert_cmpuint (g_string_replace (out, "<source mode='bind'/>", source, 0), ==, 1);
  /* Node-file domains run unless told otherwise. */
  if (!running)
    g_assert_cmpuint (g_string_replace (out, "<domain type='test'>",
                                        "<domain type='test' "
                                        "xmlns:test='http://libvirt.org/schemas/domain/test/1.0'>"
                                        "<test:runstate>5</test:runstate>",
                                        1),
                      ==, 1);
  return g_string_free (g_steal_pointer (&out), FALSE);
}

static gchar *
channel_path (Fixture *fx, const gchar *name)
{
  return g_strdup_printf ("%s/%s.sock", fx->tmpdir, name);
}

static gchar *
build_node_xml (Fixture *fx)
{
  g_autofree gchar *alpha_path = channel_path (fx, "alpha");
  g_autofree gchar *beta_path = channel_path (fx, "beta");
  g_autofree gchar *gamma_path = channel_path (fx, "gamma");
  g_autofree gchar *dom0_path = channel_path (fx, "dom0");
  g_autofree gchar *alpha = appliance_xml ("alpha", UUID_ALPHA, alpha_path, TRUE);
  g_autofree gchar *beta = appliance_xml ("beta", UUID_BETA, beta_path, TRUE);
  g_autofree gchar *gamma = appliance_xml ("gamma", UUID_GAMMA, gamma_path, FALSE);
  g_autofree gchar *dom0 = g_markup_printf_escaped (
      "<domain type='test'><name>dom0</name><memory unit='KiB'>262144</memory><vcpu>1</vcpu>"
      "<os><type arch='x86_64'>hvm</type></os><devices><channel type='unix'>"
      "<source mode='bind' path='%s'/><target type='virtio' name='org.dhf.xdm.0'/></channel>"
      "</devices></domain>",
      dom0_path);

  return g_strconcat ("<node>\n", alpha, beta, gamma, dom0, "\n</node>\n", NULL);
}

/* The host side of a channel, listening before dhfd starts. */
static gint
listen_channel (Fixture *fx, const gchar *name)
{
  g_autofree gchar *path = channel_path (fx, name);
  struct sockaddr_un address = { .sun_family = AF_UNIX };
  gint fd = socket (AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);

  g_assert_cmpuint (strlen (path), <, sizeof address.sun_path);
  strcpy (address.sun_path, path);
  g_assert_cmpint (bind (fd, (struct sockaddr *) &address, sizeof address), ==, 0);
  g_assert_cmpint (listen (fd, 8), ==, 0);
  return fd;
}

/* --- frames ---------------------------------------------------------------- */

static void
poll_in (gint fd)
{
  struct pollfd pfd = { .fd = fd, .events = POLLIN };

  g_assert_cmpint (poll (&pfd, 1, WAIT_TIMEOUT_S * 1000), ==, 1);
}

/* Reads exactly length bytes; FALSE at end of stream before any. */
static gboolean
read_exactly (gint fd, guint8 *buf, gsize length)
{
  gsize done = 0;

  while (done < length)
    {
      gssize n;

      poll_in (fd);
      n = read (fd, buf + done, length - done);
      if (n == 0 && done == 0)
        return FALSE;
      g_assert_cmpint (n, >, 0);
      done += (gsize) n;
    }
  return TRUE;
}

static void
send_frame (gint fd, DhfXdmType type, guint32 id, const gchar *json)
{
  g_autoptr (GByteArray) out = g_byte_array_new ();
  json_object *body = json != NULL ? json_tokener_parse (json) : NULL;
  gsize done = 0;

  g_assert_true (json == NULL || body != NULL);
  dhf_xdm_append_json (out, type, id, body);
  json_object_put (body);
  while (done < out->len)
    {
      gssize n = write (fd, out->data + done, out->len - done);

      g_assert_cmpint (n, >, 0);
      done += (gsize) n;
    }
}

/* The next frame, decoded; FALSE at end of stream. */
static gboolean
recv_frame (gint fd, DhfXdmMessage *msg)
{
  guint8 header_bytes[DHF_XDM_HEADER_SIZE];
  g_autofree guint8 *body = NULL;
  g_autoptr (GError) error = NULL;
  DhfXdmHeader header;

  if (!read_exactly (fd, header_bytes, sizeof header_bytes))
    return FALSE;
  g_assert_true (dhf_xdm_header_parse (header_bytes, &header, &error));
  g_assert_no_error (error);
  body = g_malloc (header.length + 1);
  if (header.length > 0)
    g_assert_true (read_exactly (fd, body, header.length));
  g_assert_true (dhf_xdm_message_parse (&header, body, msg, &error));
  g_assert_no_error (error);
  return TRUE;
}

static void
expect_frame (gint fd, DhfXdmType type, guint32 id, DhfXdmMessage *msg)
{
  g_assert_true (recv_frame (fd, msg));
  if (msg->type != type || msg->id != id)
    g_error ("expected %s id %u, got %s id %u: %s", dhf_xdm_type_to_string (type), id,
             dhf_xdm_type_to_string (msg->type), msg->id,
             msg->body != NULL ? json_object_to_json_string (msg->body) : "");
}

/* Frames until dhfd closes the connection. */
static void
expect_eof (gint fd)
{
  DhfXdmMessage msg = { 0 };

  while (recv_frame (fd, &msg))
    dhf_xdm_message_clear (&msg);
  close (fd);
}

/* HELLO, and dhfd's WELCOME must name domain (and uuid). */
static void
greet (gint fd, const gchar *domain, const gchar *uuid)
{
  DhfXdmMessage welcome = { 0 };

  send_frame (fd, DHF_XDM_HELLO, 0, "{\"versions\": [1], \"client\": \"test-xdm-dhfd\"}");
  expect_frame (fd, DHF_XDM_WELCOME, 0, &welcome);
  g_assert_cmpstr (welcome.domain, ==, domain);
  g_assert_cmpstr (welcome.uuid, ==, uuid);
  g_assert_cmpuint (welcome.version, ==, 1);
  dhf_xdm_message_clear (&welcome);
}

/* The connection dhfd made to a domain's channel. */
static gint
accept_dhfd (gint listen_fd)
{
  gint fd;

  poll_in (listen_fd);
  fd = accept4 (listen_fd, NULL, NULL, SOCK_CLOEXEC);
  g_assert_cmpint (fd, >=, 0);
  return fd;
}

static gboolean
nobody_connected (gint listen_fd)
{
  struct pollfd pfd = { .fd = listen_fd, .events = POLLIN };

  return poll (&pfd, 1, 0) == 0;
}

static gint
connect_dom0 (Fixture *fx)
{
  struct sockaddr_un address = { .sun_family = AF_UNIX };
  gint fd = socket (AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);

  strcpy (address.sun_path, fx->socket_path);
  g_assert_cmpint (connect (fd, (struct sockaddr *) &address, sizeof address), ==, 0);
  return fd;
}

/* --- dhfd ------------------------------------------------------------------ */

static void
wait_until (gboolean (*check) (Fixture *), Fixture *fx)
{
  gint64 deadline = g_get_monotonic_time () + WAIT_TIMEOUT_S * G_USEC_PER_SEC;

  while (!check (fx))
    {
      g_assert_cmpint (g_get_monotonic_time (), <, deadline);
      if (!g_main_context_iteration (NULL, FALSE))
        g_usleep (2000);
    }
}

static gboolean
name_has_owner (Fixture *fx)
{
  return dhf_test_dhfd_owns_name (fx->conn);
}

static gboolean
name_has_no_owner (Fixture *fx)
{
  return !dhf_test_dhfd_owns_name (fx->conn);
}

/* A failed assertion aborts the test without tearing down: dhfd must not
 * outlive it. */
static void
die_with_parent (gpointer user_data)
{
  prctl (PR_SET_PDEATHSIG, SIGTERM);
}

static GSubprocess *
spawn_dhfd (Fixture *fx, GSubprocessFlags flags)
{
  g_autoptr (GError) error = NULL;
  g_autoptr (GSubprocessLauncher) launcher = g_subprocess_launcher_new (flags);
  g_autofree gchar *uri = g_strconcat ("test://", fx->node_path, NULL);
  GSubprocess *proc;

  g_subprocess_launcher_set_child_setup (launcher, die_with_parent, NULL, NULL);
  if (fx->xmldesc_fail != NULL)
    {
      g_autofree gchar *shim
          = g_test_build_filename (G_TEST_BUILT, "xdm-transport", "xmldesc-shim.so", NULL);

      g_subprocess_launcher_setenv (launcher, "LD_PRELOAD", shim, TRUE);
      g_subprocess_launcher_setenv (launcher, "DHF_TEST_XMLDESC_FAIL", fx->xmldesc_fail, TRUE);
    }
  proc = g_subprocess_launcher_spawn (launcher, &error, dhf_test_dhfd_path (), "--address",
                                      g_test_dbus_get_bus_address (fx->bus), "--hypervisor", uri,
                                      "--config", fx->config_path, "--xdm-socket", fx->socket_path,
                                      "--verbose", NULL);
  g_assert_no_error (error);
  return proc;
}

static void
start_dhfd (Fixture *fx)
{
  g_autoptr (GError) error = NULL;

  fx->dhfd = spawn_dhfd (fx, G_SUBPROCESS_FLAGS_NONE);
  wait_until (name_has_owner, fx);
  fx->xdm = dhf_dbus_xdm_proxy_new_sync (fx->conn, G_DBUS_PROXY_FLAGS_NONE, DHF_BUS_NAME,
                                         DHF_OBJECT_PATH, NULL, &error);
  g_assert_no_error (error);
}

static void
stop_dhfd (Fixture *fx)
{
  g_autoptr (GError) error = NULL;

  g_clear_object (&fx->xdm);
  if (fx->dhfd == NULL)
    return;
  g_subprocess_send_signal (fx->dhfd, SIGTERM);
  g_subprocess_wait (fx->dhfd, NULL, &error);
  g_assert_no_error (error);
  /* A clean shutdown on SIGTERM is part of the contract. */
  g_assert_true (g_subprocess_get_if_exited (fx->dhfd));
  g_assert_cmpint (g_subprocess_get_exit_status (fx->dhfd), ==, 0);
  g_clear_object (&fx->dhfd);
  wait_until (name_has_no_owner, fx);
}

static gboolean
on_ask (DhfDBusPromptAgent *agent, GDBusMethodInvocation *invocation, GVariant *question,
        Fixture *fx)
{
  g_ptr_array_add (fx->questions, g_variant_ref (question));
  dhf_dbus_prompt_agent_complete_ask (agent, invocation, fx->answer);
  return G_DBUS_METHOD_INVOCATION_HANDLED;
}

static void
fixture_set_up (Fixture *fx, gconstpointer data)
{
  g_autoptr (GError) error = NULL;
  g_autofree gchar *node = NULL;
  g_autofree gchar *config = NULL;
  g_autofree gchar *policy_dir = NULL;

  fx->tmpdir = g_dir_make_tmp ("dhf-xdm-dhfd-XXXXXX", &error);
  g_assert_no_error (error);
  fx->node_path = g_build_filename (fx->tmpdir, "node.xml", NULL);
  fx->config_path = g_build_filename (fx->tmpdir, "dhfd.conf", NULL);
  fx->socket_path = g_build_filename (fx->tmpdir, "run", "xdm.sock", NULL);
  policy_dir = g_build_filename (fx->tmpdir, "policy.d", NULL);
  node = build_node_xml (fx);
  /* No vsock: it is host-wide. */
  config = g_strdup_printf ("[Appliances]\nStorageDirectory=%s/images\nShutdownTimeout=2\n"
                            "[Policy]\nDirectories=%s\nLastGood=%s/policy.last-good\n"
                            "[Devices]\nStateFile=%s/devices.json\n"
                            "[XDM]\nVsockPort=0\nAskTimeout=20\n",
                            fx->tmpdir, policy_dir, fx->tmpdir, fx->tmpdir);
  g_assert_true (g_file_set_contents (fx->node_path, node, -1, &error));
  g_assert_true (g_file_set_contents (fx->config_path, config, -1, &error));
  dhf_test_write_file (policy_dir, "50-test.policy", test_policy);
  fx->listen_alpha = listen_channel (fx, "alpha");
  fx->listen_beta = listen_channel (fx, "beta");
  fx->listen_gamma = listen_channel (fx, "gamma");
  fx->listen_dom0 = listen_channel (fx, "dom0");
  fx->questions = g_ptr_array_new_with_free_func ((GDestroyNotify) g_variant_unref);
  if (g_strcmp0 (data, "xmldesc-shim") == 0)
    fx->xmldesc_fail = g_build_filename (fx->tmpdir, "xmldesc-fails", NULL);

  fx->conn = dhf_test_bus_up (&fx->bus);
  fx->agent = dhf_dbus_prompt_agent_skeleton_new ();
  g_signal_connect (fx->agent, "handle-ask", G_CALLBACK (on_ask), fx);
  g_assert_true (g_dbus_interface_skeleton_export (G_DBUS_INTERFACE_SKELETON (fx->agent), fx->conn,
                                                   AGENT_PATH, &error));
  start_dhfd (fx);
}

static void
fixture_tear_down (Fixture *fx, gconstpointer data)
{
  stop_dhfd (fx);
  /* dhfd removes its socket when it exits. */
  g_assert_false (g_file_test (fx->socket_path, G_FILE_TEST_EXISTS));
  g_dbus_interface_skeleton_unexport (G_DBUS_INTERFACE_SKELETON (fx->agent));
  g_clear_object (&fx->agent);
  g_dbus_connection_close_sync (fx->conn, NULL, NULL);
  g_clear_object (&fx->conn);
  g_test_dbus_down (fx->bus);
  g_clear_object (&fx->bus);
  close (fx->listen_alpha);
  close (fx->listen_beta);
  close (fx->listen_gamma);
  close (fx->listen_dom0);
  g_ptr_array_unref (fx->questions);
  dhf_test_remove_tree (fx->tmpdir);
  g_free (fx->tmpdir);
  g_free (fx->node_path);
  g_free (fx->config_path);
  g_free (fx->socket_path);
  g_free (fx->xmldesc_fail);
}

static gboolean
three_connections (Fixture *fx)
{
  return dhf_dbus_xdm_get_connections (fx->xdm) == 3;
}

static GVariant *
find_entry (GVariant *list, const gchar *key, const gchar *value)
{
  GVariantIter iter;
  GVariant *entry;

  g_variant_iter_init (&iter, list);
  while ((entry = g_variant_iter_next_value (&iter)) != NULL)
    {
      const gchar *text = NULL;

      if (g_variant_lookup (entry, key, "&s", &text) && g_str_equal (text, value))
        return entry;
      g_variant_unref (entry);
    }
  return NULL;
}

/* --- tests ------------------------------------------------------------------ */

/* dhfd found both running appliances' channels in the live XML and greets
 * each with its own name; the shut-off one and the domain named "dom0"
 * are left alone; the local socket is dom0. */
static void
test_channels_and_dom0 (Fixture *fx, gconstpointer data)
{
  g_autoptr (GError) error = NULL;
  g_autoptr (GVariant) connections = NULL;
  g_autoptr (GVariant) services = NULL;
  g_autoptr (GVariant) subscriptions = NULL;
  g_autoptr (GVariant) entry = NULL;
  DhfXdmMessage msg = { 0 };
  gint alpha = accept_dhfd (fx->listen_alpha);
  gint beta = accept_dhfd (fx->listen_beta);
  gint dom0 = connect_dom0 (fx);
  const gchar *text = NULL;
  guint32 number = 0;
  const gchar **strv = NULL;

  greet (alpha, "alpha", UUID_ALPHA);
  greet (beta, "beta", UUID_BETA);
  greet (dom0, "dom0", NULL);
  g_assert_cmpstr (dhf_dbus_xdm_get_socket (fx->xdm), ==, fx->socket_path);
  wait_until (three_connections, fx);
  /* Both came from the same snapshot as the two that were connected. */
  g_assert_true (nobody_connected (fx->listen_gamma));
  g_assert_true (nobody_connected (fx->listen_dom0));

  /* What the router tells D-Bus. */
  send_frame (alpha, DHF_XDM_REGISTER, 2, "{\"service\": \"" ECHO "\"}");
  expect_frame (alpha, DHF_XDM_REPLY, 2, &msg);
  dhf_xdm_message_clear (&msg);
  send_frame (dom0, DHF_XDM_SUBSCRIBE, 2, "{\"topic\": \"" STATE_TOPIC "\"}");
  expect_frame (dom0, DHF_XDM_REPLY, 2, &msg);
  dhf_xdm_message_clear (&msg);

  g_assert_true (dhf_dbus_xdm_call_list_connections_sync (fx->xdm, &connections, NULL, &error));
  g_assert_no_error (error);
  g_assert_cmpuint (g_variant_n_children (connections), ==, 3);
  entry = find_entry (connections, "domain", "alpha");
  g_assert_nonnull (entry);
  g_assert_true (g_variant_lookup (entry, "transport", "&s", &text));
  g_assert_cmpstr (text, ==, "channel");
  g_assert_false (g_variant_lookup (entry, "uid", "u", &number));
  g_assert_true (g_variant_lookup (entry, "services", "^a&s", &strv));
  g_assert_true (g_strv_equal (strv, (const gchar *const[]){ ECHO, NULL }));
  g_clear_pointer (&strv, g_free);
  g_clear_pointer (&entry, g_variant_unref);
  entry = find_entry (connections, "domain", "beta");
  g_assert_nonnull (entry);
  g_clear_pointer (&entry, g_variant_unref);
  entry = find_entry (connections, "domain", "dom0");
  g_assert_nonnull (entry);
  g_assert_true (g_variant_lookup (entry, "transport", "&s", &text));
  g_assert_cmpstr (text, ==, "unix");
  g_assert_true (g_variant_lookup (entry, "uid", "u", &number));
  g_assert_cmpuint (number, ==, getuid ());
  g_assert_true (g_variant_lookup (entry, "pid", "u", &number));
  g_assert_cmpuint (number, ==, (guint32) getpid ());
  g_clear_pointer (&entry, g_variant_unref);

  g_assert_true (dhf_dbus_xdm_call_list_services_sync (fx->xdm, &services, NULL, &error));
  g_assert_no_error (error);
  g_assert_cmpuint (g_variant_n_children (services), ==, 1);
  entry = find_entry (services, "service", ECHO);
  g_assert_nonnull (entry);
  g_assert_true (g_variant_lookup (entry, "domain", "&s", &text));
  g_assert_cmpstr (text, ==, "alpha");
  g_clear_pointer (&entry, g_variant_unref);

  g_assert_true (dhf_dbus_xdm_call_list_subscriptions_sync (fx->xdm, &subscriptions, NULL, &error));
  g_assert_no_error (error);
  g_assert_cmpuint (g_variant_n_children (subscriptions), ==, 1);
  entry = find_entry (subscriptions, "topic", STATE_TOPIC);
  g_assert_nonnull (entry);
  g_assert_true (g_variant_lookup (entry, "domain", "&s", &text));
  g_assert_cmpstr (text, ==, "dom0");

  close (alpha);
  close (beta);
  close (dom0);
}

static DhfDBusAppliance *
appliance_proxy (Fixture *fx, const gchar *name)
{
  g_autoptr (GError) error = NULL;
  g_autofree gchar *escaped = g_dbus_escape_object_path (name);
  g_autofree gchar *path = g_strconcat (DHF_APPLIANCE_PATH_PREFIX "/", escaped, NULL);
  DhfDBusAppliance *proxy = dhf_dbus_appliance_proxy_new_sync (fx->conn, G_DBUS_PROXY_FLAGS_NONE,
                                                               DHF_BUS_NAME, path, NULL, &error);

  g_assert_no_error (error);
  return proxy;
}

/* Reads dom0's events until alpha is in state. */
static void
expect_state_event (gint dom0, const gchar *appliance, const gchar *state)
{
  for (;;)
    {
      DhfXdmMessage msg = { 0 };
      json_object *value;

      expect_frame (dom0, DHF_XDM_EVENT, 0, &msg);
      g_assert_cmpstr (msg.topic, ==, STATE_TOPIC);
      g_assert_cmpstr (msg.source, ==, "dom0");
      g_assert_nonnull (msg.value);
      g_assert_true (json_object_object_get_ex (msg.value, "appliance", &value));
      if (g_str_equal (json_object_get_string (value), appliance))
        {
          g_assert_true (json_object_object_get_ex (msg.value, "reason", &value));
          g_assert_true (json_object_object_get_ex (msg.value, "state", &value));
          if (g_str_equal (json_object_get_string (value), state))
            {
              dhf_xdm_message_clear (&msg);
              return;
            }
        }
      dhf_xdm_message_clear (&msg);
    }
}

/* alpha stops: dhfd closes its channel, tells dom0, and connects again
 * when alpha runs again. */
static void
test_domain_stop_and_start (Fixture *fx, gconstpointer data)
{
  g_autoptr (GError) error = NULL;
  g_autoptr (DhfDBusAppliance) app = appliance_proxy (fx, "alpha");
  DhfXdmMessage msg = { 0 };
  gint alpha = accept_dhfd (fx->listen_alpha);
  gint beta = accept_dhfd (fx->listen_beta);
  gint dom0 = connect_dom0 (fx);
  gboolean forced = TRUE;

  greet (alpha, "alpha", UUID_ALPHA);
  greet (beta, "beta", UUID_BETA);
  greet (dom0, "dom0", NULL);
  send_frame (dom0, DHF_XDM_SUBSCRIBE, 2, "{\"topic\": \"" STATE_TOPIC "\"}");
  expect_frame (dom0, DHF_XDM_REPLY, 2, &msg);
  dhf_xdm_message_clear (&msg);

  g_assert_true (dhf_dbus_appliance_call_shutdown_sync (app, 5000, &forced, NULL, &error));
  g_assert_no_error (error);
  expect_eof (alpha);
  expect_state_event (dom0, "alpha", "shutoff");
  g_assert_true (nobody_connected (fx->listen_alpha));

  g_assert_true (dhf_dbus_appliance_call_start_sync (app, NULL, &error));
  g_assert_no_error (error);
  alpha = accept_dhfd (fx->listen_alpha);
  greet (alpha, "alpha", UUID_ALPHA);
  expect_state_event (dom0, "alpha", "running");

  /* beta was never touched. */
  send_frame (beta, DHF_XDM_PING, 9, NULL);
  expect_frame (beta, DHF_XDM_PONG, 9, &msg);
  dhf_xdm_message_clear (&msg);
  close (alpha);
  close (beta);
  close (dom0);
}

/* dhfd restarts: the new one connects every running appliance again. */
static void
test_restart (Fixture *fx, gconstpointer data)
{
  gint alpha = accept_dhfd (fx->listen_alpha);
  gint beta = accept_dhfd (fx->listen_beta);
  gint dom0;

  greet (alpha, "alpha", UUID_ALPHA);
  greet (beta, "beta", UUID_BETA);
  stop_dhfd (fx);
  expect_eof (alpha);
  expect_eof (beta);
  g_assert_false (g_file_test (fx->socket_path, G_FILE_TEST_EXISTS));

  start_dhfd (fx);
  alpha = accept_dhfd (fx->listen_alpha);
  beta = accept_dhfd (fx->listen_beta);
  greet (alpha, "alpha", UUID_ALPHA);
  greet (beta, "beta", UUID_BETA);
  dom0 = connect_dom0 (fx);
  greet (dom0, "dom0", NULL);
  close (alpha);
  close (beta);
  close (dom0);
}

/* A second dhfd with the same socket refuses to start; the first one
 * goes on serving. */
static void
test_socket_taken (Fixture *fx, gconstpointer data)
{
  g_autoptr (GError) error = NULL;
  g_autoptr (GSubprocess) second = spawn_dhfd (fx, G_SUBPROCESS_FLAGS_STDERR_PIPE);
  g_autofree gchar *err = NULL;
  gint dom0;

  g_assert_true (g_subprocess_communicate_utf8 (second, NULL, NULL, NULL, &err, &error));
  g_assert_no_error (error);
  g_assert_true (g_subprocess_get_if_exited (second));
  g_assert_cmpint (g_subprocess_get_exit_status (second), ==, 1);
  if (strstr (err, "is listening on") == NULL || strstr (err, fx->socket_path) == NULL)
    g_error ("unexpected stderr of the second dhfd:\n%s", err);

  dom0 = connect_dom0 (fx);
  greet (dom0, "dom0", NULL);
  close (dom0);
  g_assert_true (dhf_test_dhfd_owns_name (fx->conn));
}

static gboolean
asked_once (Fixture *fx)
{
  return fx->questions->len == 1;
}

static gboolean
asked_twice (Fixture *fx)
{
  return fx->questions->len == 2;
}

static gboolean
asked_three_times (Fixture *fx)
{
  return fx->questions->len == 3;
}

/* dom0 calls Echo1 on alpha (an "ask" rule): dhfd asks the registered
 * prompt agent; a yes lets the call through to alpha, a no refuses it,
 * and without an agent the answer is no. */
static void
test_prompt_agent (Fixture *fx, gconstpointer data)
{
  g_autoptr (GError) error = NULL;
  DhfXdmMessage msg = { 0 };
  gint alpha = accept_dhfd (fx->listen_alpha);
  gint dom0 = connect_dom0 (fx);
  GVariant *question;
  const gchar *text = NULL;
  guint32 forwarded_id;

  greet (alpha, "alpha", UUID_ALPHA);
  greet (dom0, "dom0", NULL);
  send_frame (alpha, DHF_XDM_REGISTER, 2, "{\"service\": \"" ECHO "\"}");
  expect_frame (alpha, DHF_XDM_REPLY, 2, &msg);
  dhf_xdm_message_clear (&msg);

  g_assert_true (dhf_dbus_xdm_call_register_prompt_agent_sync (fx->xdm, AGENT_PATH, NULL, &error));
  g_assert_no_error (error);

  /* Yes. */
  fx->answer = TRUE;
  send_frame (dom0, DHF_XDM_CALL, 3,
              "{\"service\": \"" ECHO "\", \"target\": \"alpha\", \"params\": {\"n\": 1}}");
  wait_until (asked_once, fx);
  question = g_ptr_array_index (fx->questions, 0);
  g_assert_true (g_variant_lookup (question, "service", "&s", &text));
  g_assert_cmpstr (text, ==, ECHO);
  g_assert_true (g_variant_lookup (question, "source", "&s", &text));
  g_assert_cmpstr (text, ==, "dom0");
  g_assert_true (g_variant_lookup (question, "target", "&s", &text));
  g_assert_cmpstr (text, ==, "alpha");
  g_assert_true (g_variant_lookup (question, "kind", "&s", &text));
  g_assert_cmpstr (text, ==, "call");
  g_assert_true (g_variant_lookup (question, "rule", "&s", &text));
  g_assert_true (g_str_has_suffix (text, "50-test.policy:2"));
  g_assert_false (g_variant_lookup (question, "argument", "&s", &text));

  g_assert_true (recv_frame (alpha, &msg));
  g_assert_cmpint (msg.type, ==, DHF_XDM_CALL);
  g_assert_cmpstr (msg.service, ==, ECHO);
  g_assert_cmpstr (msg.source, ==, "dom0");
  forwarded_id = msg.id;
  dhf_xdm_message_clear (&msg);
  {
    g_autofree gchar *reply = g_strdup ("{\"result\": {\"echo\": 1}}");

    send_frame (alpha, DHF_XDM_REPLY, forwarded_id, reply);
  }
  expect_frame (dom0, DHF_XDM_REPLY, 3, &msg);
  g_assert_nonnull (msg.value);
  g_assert_cmpstr (json_object_to_json_string_ext (msg.value, JSON_C_TO_STRING_PLAIN), ==,
                   "{\"echo\":1}");
  dhf_xdm_message_clear (&msg);

  /* No. */
  fx->answer = FALSE;
  send_frame (dom0, DHF_XDM_CALL, 4, "{\"service\": \"" ECHO "\", \"target\": \"alpha\"}");
  wait_until (asked_twice, fx);
  expect_frame (dom0, DHF_XDM_ERROR, 4, &msg);
  g_assert_cmpstr (msg.code, ==, "not-authorized");
  dhf_xdm_message_clear (&msg);

  /* No agent: no. */
  g_assert_true (
      dhf_dbus_xdm_call_unregister_prompt_agent_sync (fx->xdm, AGENT_PATH, NULL, &error));
  g_assert_no_error (error);
  fx->answer = TRUE;
  send_frame (dom0, DHF_XDM_CALL, 5, "{\"service\": \"" ECHO "\", \"target\": \"alpha\"}");
  expect_frame (dom0, DHF_XDM_ERROR, 5, &msg);
  g_assert_cmpstr (msg.code, ==, "not-authorized");
  dhf_xdm_message_clear (&msg);
  g_assert_cmpuint (fx->questions->len, ==, 2);

  g_assert_false (
      dhf_dbus_xdm_call_unregister_prompt_agent_sync (fx->xdm, AGENT_PATH, NULL, &error));
  g_assert_error (error, DHF_ERROR, DHF_ERROR_NOT_FOUND);
  g_clear_error (&error);

  /* An agent whose name leaves the bus is dropped: the one before it is
   * asked again. */
  g_assert_true (dhf_dbus_xdm_call_register_prompt_agent_sync (fx->xdm, AGENT_PATH, NULL, &error));
  g_assert_no_error (error);
  {
    g_autoptr (GDBusConnection) other = g_dbus_connection_new_for_address_sync (
        g_test_dbus_get_bus_address (fx->bus),
        G_DBUS_CONNECTION_FLAGS_AUTHENTICATION_CLIENT
            | G_DBUS_CONNECTION_FLAGS_MESSAGE_BUS_CONNECTION,
        NULL, NULL, &error);
    g_autoptr (GVariant) reply = NULL;
    g_autoptr (GVariant) owned = NULL;
    g_autofree gchar *name = NULL;
    gboolean has_owner = TRUE;

    g_assert_no_error (error);
    name = g_strdup (g_dbus_connection_get_unique_name (other));
    reply = g_dbus_connection_call_sync (other, DHF_BUS_NAME, DHF_OBJECT_PATH,
                                         "org.dhf.Framework1.Xdm", "RegisterPromptAgent",
                                         g_variant_new ("(o)", "/org/dhf/test/Gone"), NULL,
                                         G_DBUS_CALL_FLAGS_NONE, -1, NULL, &error);
    g_assert_no_error (error);
    g_dbus_connection_close_sync (other, NULL, &error);
    g_assert_no_error (error);
    /* The bus has seen it go (and told dhfd, before this answer's
     * successor below reaches it). */
    while (has_owner)
      {
        owned = g_dbus_connection_call_sync (
            fx->conn, "org.freedesktop.DBus", "/org/freedesktop/DBus", "org.freedesktop.DBus",
            "NameHasOwner", g_variant_new ("(s)", name), G_VARIANT_TYPE ("(b)"),
            G_DBUS_CALL_FLAGS_NONE, -1, NULL, &error);
        g_assert_no_error (error);
        g_variant_get (owned, "(b)", &has_owner);
        g_clear_pointer (&owned, g_variant_unref);
      }
    g_clear_pointer (&reply, g_variant_unref);
    reply = g_dbus_connection_call_sync (fx->conn, DHF_BUS_NAME, DHF_OBJECT_PATH,
                                         "org.freedesktop.DBus.Peer", "Ping", NULL, NULL,
                                         G_DBUS_CALL_FLAGS_NONE, -1, NULL, &error);
    g_assert_no_error (error);
  }
  send_frame (dom0, DHF_XDM_CALL, 6, "{\"service\": \"" ECHO "\", \"target\": \"alpha\"}");
  wait_until (asked_three_times, fx);
  g_assert_true (recv_frame (alpha, &msg));
  g_assert_cmpint (msg.type, ==, DHF_XDM_CALL);
  forwarded_id = msg.id;
  dhf_xdm_message_clear (&msg);
  send_frame (alpha, DHF_XDM_REPLY, forwarded_id, "{\"result\": null}");
  expect_frame (dom0, DHF_XDM_REPLY, 6, &msg);
  dhf_xdm_message_clear (&msg);

  close (alpha);
  close (dom0);
}

#if defined(__SANITIZE_ADDRESS__)
/* The shim is preloaded into dhfd, which ASan requires to load its own
 * runtime first: the plain build runs this test. */
static void
skip_endpoints_unknown (void)
{
  g_test_skip ("needs LD_PRELOAD of a shim, which an ASan-built dhfd refuses");
}
#else
/* A refresh that cannot read the live XML (libvirt failing for a moment)
 * knows nothing of the channel: the working connection stays. */
static void
test_endpoints_unknown (Fixture *fx, gconstpointer data)
{
  g_autoptr (GError) error = NULL;
  g_autoptr (DhfDBusAppliance) app = appliance_proxy (fx, "alpha");
  DhfXdmMessage msg = { 0 };
  gint alpha = accept_dhfd (fx->listen_alpha);
  gint dom0 = connect_dom0 (fx);

  greet (alpha, "alpha", UUID_ALPHA);
  greet (dom0, "dom0", NULL);
  send_frame (dom0, DHF_XDM_SUBSCRIBE, 2, "{\"topic\": \"" STATE_TOPIC "\"}");
  expect_frame (dom0, DHF_XDM_REPLY, 2, &msg);
  dhf_xdm_message_clear (&msg);

  /* Paused, it still runs: a refresh, which cannot read the XML. */
  g_assert_true (g_file_set_contents (fx->xmldesc_fail, "", 0, &error));
  g_assert_true (dhf_dbus_appliance_call_pause_sync (app, NULL, &error));
  g_assert_no_error (error);
  expect_state_event (dom0, "alpha", "paused");
  /* dhfd has done all it does about that refresh once it answers dom0. */
  send_frame (dom0, DHF_XDM_PING, 3, NULL);
  expect_frame (dom0, DHF_XDM_PONG, 3, &msg);
  dhf_xdm_message_clear (&msg);
  send_frame (alpha, DHF_XDM_PING, 4, NULL);
  expect_frame (alpha, DHF_XDM_PONG, 4, &msg);
  dhf_xdm_message_clear (&msg);

  /* And once it can again, the same path changes nothing. */
  g_assert_cmpint (g_unlink (fx->xmldesc_fail), ==, 0);
  g_assert_true (dhf_dbus_appliance_call_resume_sync (app, NULL, &error));
  g_assert_no_error (error);
  expect_state_event (dom0, "alpha", "running");
  send_frame (dom0, DHF_XDM_PING, 5, NULL);
  expect_frame (dom0, DHF_XDM_PONG, 5, &msg);
  dhf_xdm_message_clear (&msg);
  send_frame (alpha, DHF_XDM_PING, 6, NULL);
  expect_frame (alpha, DHF_XDM_PONG, 6, &msg);
  dhf_xdm_message_clear (&msg);
  g_assert_true (nobody_connected (fx->listen_alpha));
  close (alpha);
  close (dom0);
}
#endif

int
main (int argc, char **argv)
{
  g_test_init (&argc, &argv, NULL);

#define ADD(path, func) g_test_add (path, Fixture, NULL, fixture_set_up, func, fixture_tear_down)
  ADD ("/xdm-dhfd/channels-and-dom0", test_channels_and_dom0);
  ADD ("/xdm-dhfd/domain-stop-and-start", test_domain_stop_and_start);
  ADD ("/xdm-dhfd/restart", test_restart);
  ADD ("/xdm-dhfd/socket-taken", test_socket_taken);
  ADD ("/xdm-dhfd/prompt-agent", test_prompt_agent);
#undef ADD
  /* The sanitizers' runtime must come first in a process: no preloading
   * into a dhfd built with them. */
#if defined(__SANITIZE_ADDRESS__)
  g_test_add_func ("/xdm-dhfd/endpoints-unknown", skip_endpoints_unknown);
#else
  g_test_add ("/xdm-dhfd/endpoints-unknown", Fixture, "xmldesc-shim", fixture_set_up,
              test_endpoints_unknown, fixture_tear_down);
#endif
  return g_test_run ();
}
