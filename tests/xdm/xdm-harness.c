/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include "config.h"

#include <signal.h>
#include <stdio.h>
#include <sys/prctl.h>
#include <sys/wait.h>

#include <dhf/dhf.h>
#include <glib/gstdio.h>

#include "dhf-domain-xml.h"
#include "dhf-manifest.h"

#include "dhf-test-util.h"
#include "xdm-harness.h"

#define POLICY_FILE "50-test.policy"

/* A test that aborts must not leave dhfd, the appliances or the bus behind
 * (they would also hold meson's output pipe open). GTestDBus's own watcher
 * was seen to miss that, hence a dbus-daemon of our own. */
static void
die_with_parent (gpointer data)
{
  prctl (PR_SET_PDEATHSIG, SIGKILL);
}

static void
bus_up (XdmHarness *h)
{
  g_autoptr (GError) error = NULL;
  g_autoptr (GSubprocessLauncher) launcher
      = g_subprocess_launcher_new (G_SUBPROCESS_FLAGS_STDOUT_PIPE);
  g_autoptr (GDataInputStream) out = NULL;

  g_subprocess_launcher_set_child_setup (launcher, die_with_parent, NULL, NULL);
  h->bus = g_subprocess_launcher_spawn (launcher, &error, "dbus-daemon", "--session", "--nofork",
                                        "--print-address=1", NULL);
  g_assert_no_error (error);
  out = g_data_input_stream_new (g_subprocess_get_stdout_pipe (h->bus));
  h->bus_address = g_data_input_stream_read_line_utf8 (out, NULL, NULL, &error);
  g_assert_no_error (error);
  g_assert_nonnull (h->bus_address);
  h->conn = g_dbus_connection_new_for_address_sync (
      h->bus_address,
      G_DBUS_CONNECTION_FLAGS_AUTHENTICATION_CLIENT
          | G_DBUS_CONNECTION_FLAGS_MESSAGE_BUS_CONNECTION,
      NULL, NULL, &error);
  g_assert_no_error (error);
}

static void
bus_down (XdmHarness *h)
{
  g_dbus_connection_close_sync (h->conn, NULL, NULL);
  g_clear_object (&h->conn);
  g_subprocess_send_signal (h->bus, SIGTERM);
  g_subprocess_wait (h->bus, NULL, NULL);
  g_clear_object (&h->bus);
  g_clear_pointer (&h->bus_address, g_free);
}

void
xdm_wait_until (gboolean (*check) (gpointer data), gpointer data)
{
  gint64 deadline = g_get_monotonic_time () + XDM_WAIT_TIMEOUT_S * G_USEC_PER_SEC;

  while (!check (data))
    {
      if (g_get_monotonic_time () > deadline)
        g_error ("gave up waiting after %d s", XDM_WAIT_TIMEOUT_S);
      if (!g_main_context_iteration (NULL, FALSE))
        g_usleep (1000);
    }
}

/* --- the node file ---------------------------------------------------- */

static gchar *
domain_xml (const XdmDomainSpec *spec, const gchar *channel_dir)
{
  g_autofree gchar *json = g_strdup_printf (
      "{\"manifest-version\": 1, \"name\": \"%s\", \"vendor\": \"dhf tests\", \"version\": "
      "\"1.0\", \"role\": \"%s\", \"memory\": \"256MiB\", \"vcpus\": 1%s%s}",
      spec->name, spec->role, spec->tags != NULL ? ", \"tags\": " : "",
      spec->tags != NULL ? spec->tags : "");
  g_autoptr (GError) error = NULL;
  g_autoptr (DhfManifest) manifest = dhf_manifest_parse (json, -1, NULL, &error);
  DhfDomainXmlOptions options = { .domain_type = "test" };
  g_autofree gchar *xml = NULL;
  g_autofree gchar *source = NULL;
  g_autoptr (GString) s = NULL;

  g_assert_no_error (error);
  xml = dhf_domain_xml_build (manifest, &options);
  s = g_string_new (xml);
  /* The channel socket the simulated appliance listens on, as libvirt
   * would have put it in the live XML of a real domain. */
  source = g_strdup_printf ("<source mode='bind' path='%s/%s.sock'/>", channel_dir, spec->name);
  g_assert_cmpuint (g_string_replace (s, "<source mode='bind'/>", source, 1), ==, 1);
  if (spec->shut_off)
    g_assert_cmpuint (g_string_replace (s, "<domain type='test'>",
                                        "<domain type='test' "
                                        "xmlns:test='http://libvirt.org/schemas/domain/test/1.0'>"
                                        "<test:runstate>5</test:runstate>",
                                        1),
                      ==, 1);
  return g_string_free (g_steal_pointer (&s), FALSE);
}

XdmHarness *
xdm_harness_new (const XdmDomainSpec *domains, guint n_domains, const gchar *policy,
                 const gchar *xdm_config)
{
  XdmHarness *h = g_new0 (XdmHarness, 1);
  g_autoptr (GError) error = NULL;
  g_autoptr (GString) node = g_string_new ("<node>\n");
  g_autofree gchar *config = NULL;

  h->tmpdir = g_dir_make_tmp ("dhf-xdm-it-XXXXXX", &error);
  g_assert_no_error (error);
  h->node_path = g_build_filename (h->tmpdir, "node.xml", NULL);
  h->config_path = g_build_filename (h->tmpdir, "dhfd.conf", NULL);
  h->policy_dir = g_build_filename (h->tmpdir, "policy.d", NULL);
  h->channel_dir = g_build_filename (h->tmpdir, "ch", NULL);
  h->xdm_socket = g_build_filename (h->tmpdir, "xdm.sock", NULL);
  g_assert_cmpint (g_mkdir (h->channel_dir, 0700), ==, 0);

  for (guint i = 0; i < n_domains; i++)
    {
      g_autofree gchar *xml = domain_xml (&domains[i], h->channel_dir);

      g_string_append (node, xml);
    }
  g_string_append (node, "</node>\n");
  g_assert_true (g_file_set_contents (h->node_path, node->str, -1, &error));

  config = g_strdup_printf ("[Appliances]\nStorageDirectory=%s/images\nShutdownTimeout=1\n"
                            "[Policy]\nDirectories=%s\nLastGood=%s/policy.last-good\n"
                            "[Devices]\nStateFile=%s/devices.json\n"
                            "[XDM]\n%s\n",
                            h->tmpdir, h->policy_dir, h->tmpdir, h->tmpdir,
                            xdm_config != NULL ? xdm_config : "");
  g_assert_true (g_file_set_contents (h->config_path, config, -1, &error));
  dhf_test_write_file (h->policy_dir, POLICY_FILE, policy);

  bus_up (h);
  return h;
}

void
xdm_harness_free (XdmHarness *h)
{
  if (h->dhfd != NULL)
    {
      gint status = xdm_harness_kill_dhfd (h, SIGTERM);

      /* A clean exit on SIGTERM is part of the contract. */
      g_assert_true (WIFEXITED (status));
      g_assert_cmpint (WEXITSTATUS (status), ==, 0);
    }
  bus_down (h);
  dhf_test_remove_tree (h->tmpdir);
  g_free (h->tmpdir);
  g_free (h->node_path);
  g_free (h->config_path);
  g_free (h->policy_dir);
  g_free (h->channel_dir);
  g_free (h->xdm_socket);
  g_free (h->log_path);
  g_free (h);
}

/* --- dhfd ------------------------------------------------------------- */

static gboolean
dhfd_ready (gpointer data)
{
  XdmHarness *h = data;

  if (g_subprocess_get_identifier (h->dhfd) == NULL)
    {
      g_autofree gchar *log = xdm_harness_dhfd_log (h);

      g_error ("dhfd exited at startup:\n%s", log);
    }
  return dhf_test_dhfd_owns_name (h->conn) && g_file_test (h->xdm_socket, G_FILE_TEST_EXISTS);
}

void
xdm_harness_start_dhfd (XdmHarness *h)
{
  g_autoptr (GError) error = NULL;
  g_autoptr (GSubprocessLauncher) launcher = g_subprocess_launcher_new (G_SUBPROCESS_FLAGS_NONE);
  g_autofree gchar *uri = g_strconcat ("test://", h->node_path, NULL);
  g_autofree gchar *name = NULL;

  g_assert_null (h->dhfd);
  h->dhfd_runs++;
  name = h->dhfd_runs == 1 ? g_strdup ("dhfd.log") : g_strdup_printf ("dhfd-%u.log", h->dhfd_runs);
  g_free (h->log_path);
  h->log_path = g_build_filename (h->tmpdir, name, NULL);
  g_subprocess_launcher_set_stderr_file_path (launcher, h->log_path);
  g_subprocess_launcher_set_child_setup (launcher, die_with_parent, NULL, NULL);
#ifdef __SANITIZE_ADDRESS__
  /* ASan keeps up to 256 MiB of freed memory in quarantine, which would
   * count against the hostile tests' bound on dhfd's memory. */
  {
    const gchar *options = g_getenv ("ASAN_OPTIONS");
    g_autofree gchar *with_quarantine = g_strconcat (
        options != NULL ? options : "", options != NULL ? ":" : "", "quarantine_size_mb=16", NULL);

    g_subprocess_launcher_setenv (launcher, "ASAN_OPTIONS", with_quarantine, TRUE);
  }
#endif
  h->dhfd = g_subprocess_launcher_spawn (launcher, &error, dhf_test_dhfd_path (), "--address",
                                         h->bus_address, "--hypervisor", uri, "--config",
                                         h->config_path, "--xdm-socket", h->xdm_socket, NULL);
  g_assert_no_error (error);
  xdm_wait_until (dhfd_ready, h);
}

gint
xdm_harness_kill_dhfd (XdmHarness *h, gint sig)
{
  g_autoptr (GError) error = NULL;
  g_autofree gchar *log = NULL;
  gint status;

  g_assert_nonnull (h->dhfd);
  g_subprocess_send_signal (h->dhfd, sig);
  g_subprocess_wait (h->dhfd, NULL, &error);
  g_assert_no_error (error);
  status = g_subprocess_get_status (h->dhfd);
  g_clear_object (&h->dhfd);
  log = xdm_harness_dhfd_log (h);
  if (g_test_failed () || (sig != SIGKILL && (!WIFEXITED (status) || WEXITSTATUS (status) != 0)))
    g_test_message ("dhfd's log:\n%s", log);
  /* Whatever the test did, dhfd complains in its log at most with
   * messages: no criticals, and nothing from the sanitizers. */
  g_assert_null (strstr (log, "CRITICAL"));
  g_assert_null (strstr (log, "runtime error:"));
  g_assert_null (strstr (log, "Sanitizer"));
  return status;
}

GPid
xdm_harness_dhfd_pid (XdmHarness *h)
{
  const gchar *id = g_subprocess_get_identifier (h->dhfd);

  g_assert_nonnull (id);
  return (GPid) atoi (id);
}

glong
xdm_harness_dhfd_rss_kib (XdmHarness *h)
{
  g_autofree gchar *path = g_strdup_printf ("/proc/%d/status", xdm_harness_dhfd_pid (h));
  g_autofree gchar *status = NULL;
  const gchar *line;

  g_assert_true (g_file_get_contents (path, &status, NULL, NULL));
  line = strstr (status, "VmRSS:");
  g_assert_nonnull (line);
  return strtol (line + strlen ("VmRSS:"), NULL, 10);
}

gchar *
xdm_harness_dhfd_log (XdmHarness *h)
{
  gchar *text = NULL;

  if (h->log_path == NULL || !g_file_get_contents (h->log_path, &text, NULL, NULL))
    return g_strdup ("");
  return text;
}

gchar *
xdm_harness_channel_path (XdmHarness *h, const gchar *domain)
{
  g_autofree gchar *file = g_strconcat (domain, ".sock", NULL);

  return g_build_filename (h->channel_dir, file, NULL);
}

static guint64
policy_generation (XdmHarness *h)
{
  g_autoptr (GError) error = NULL;
  g_autoptr (GVariant) reply = NULL;
  g_autoptr (GVariant) value = NULL;

  reply = g_dbus_connection_call_sync (
      h->conn, DHF_BUS_NAME, DHF_OBJECT_PATH, "org.freedesktop.DBus.Properties", "Get",
      g_variant_new ("(ss)", "org.dhf.Framework1.Policy", "Generation"), G_VARIANT_TYPE ("(v)"),
      G_DBUS_CALL_FLAGS_NONE, -1, NULL, &error);
  g_assert_no_error (error);
  g_variant_get (reply, "(v)", &value);
  return g_variant_get_uint64 (value);
}

typedef struct
{
  XdmHarness *h;
  guint64 before;
} GenerationWait;

static gboolean
generation_moved (gpointer data)
{
  GenerationWait *w = data;

  return policy_generation (w->h) != w->before;
}

void
xdm_harness_set_policy (XdmHarness *h, const gchar *policy)
{
  GenerationWait w = { h, policy_generation (h) };
  g_autofree gchar *tmp = g_build_filename (h->policy_dir, ".50-test.policy.new", NULL);
  g_autofree gchar *path = g_build_filename (h->policy_dir, POLICY_FILE, NULL);
  g_autoptr (GError) error = NULL;

  g_assert_true (g_file_set_contents (tmp, policy, -1, &error));
  g_assert_cmpint (g_rename (tmp, path), ==, 0);
  /* dhfd notices the change on its own: no Reload call. */
  xdm_wait_until (generation_moved, &w);
}

/* --- D-Bus lists ------------------------------------------------------ */

GVariant *
xdm_harness_list (XdmHarness *h, const gchar *method)
{
  g_autoptr (GError) error = NULL;
  g_autoptr (GVariant) reply = NULL;

  reply = g_dbus_connection_call_sync (
      h->conn, DHF_BUS_NAME, DHF_OBJECT_PATH, "org.dhf.Framework1.Xdm", method, NULL,
      G_VARIANT_TYPE ("(aa{sv})"), G_DBUS_CALL_FLAGS_NONE, -1, NULL, &error);
  g_assert_no_error (error);
  return g_variant_get_child_value (reply, 0);
}

static gboolean
entry_matches (GVariant *entry, const gchar *key, const gchar *value)
{
  const gchar *actual = NULL;

  return g_variant_lookup (entry, key, "&s", &actual) && g_str_equal (actual, value);
}

guint
xdm_harness_count (GVariant *list, const gchar *key, const gchar *value)
{
  guint n = 0;

  for (gsize i = 0; i < g_variant_n_children (list); i++)
    {
      g_autoptr (GVariant) entry = g_variant_get_child_value (list, i);

      n += entry_matches (entry, key, value);
    }
  return n;
}

guint64
xdm_harness_lookup_u64 (GVariant *list, const gchar *key, const gchar *value, const gchar *member)
{
  for (gsize i = 0; i < g_variant_n_children (list); i++)
    {
      g_autoptr (GVariant) entry = g_variant_get_child_value (list, i);
      g_autoptr (GVariant) v = NULL;

      if (!entry_matches (entry, key, value))
        continue;
      v = g_variant_lookup_value (entry, member, NULL);
      g_assert_nonnull (v);
      if (g_variant_is_of_type (v, G_VARIANT_TYPE_UINT32))
        return g_variant_get_uint32 (v);
      return g_variant_get_uint64 (v);
    }
  return 0;
}

typedef struct
{
  XdmHarness *h;
  const gchar *service;
  const gchar *domain;
  gboolean present;
} ListWait;

static gboolean
service_state_is (gpointer data)
{
  ListWait *w = data;
  g_autoptr (GVariant) list = xdm_harness_list (w->h, "ListServices");

  for (gsize i = 0; i < g_variant_n_children (list); i++)
    {
      g_autoptr (GVariant) entry = g_variant_get_child_value (list, i);

      if (entry_matches (entry, "service", w->service)
          && entry_matches (entry, "domain", w->domain))
        return w->present;
    }
  return !w->present;
}

void
xdm_harness_wait_service (XdmHarness *h, const gchar *service, const gchar *domain,
                          gboolean present)
{
  ListWait w = { h, service, domain, present };

  xdm_wait_until (service_state_is, &w);
}

typedef struct
{
  XdmHarness *h;
  const gchar *method;
  const gchar *key;
  const gchar *value;
  guint n;
} CountWait;

static gboolean
count_is (gpointer data)
{
  CountWait *w = data;
  g_autoptr (GVariant) list = xdm_harness_list (w->h, w->method);

  return xdm_harness_count (list, w->key, w->value) == w->n;
}

void
xdm_harness_wait_count (XdmHarness *h, const gchar *method, const gchar *key, const gchar *value,
                        guint n)
{
  CountWait w = { h, method, key, value, n };

  xdm_wait_until (count_is, &w);
}

void
xdm_harness_wait_connections (XdmHarness *h, const gchar *domain, guint n)
{
  xdm_harness_wait_count (h, "ListConnections", "domain", domain, n);
}

/* --- the prompt agent ------------------------------------------------- */

#define PROMPT_AGENT_PATH "/org/dhf/test/PromptAgent"

static const gchar prompt_agent_xml[] = "<node>"
                                        "  <interface name='org.dhf.Framework1.PromptAgent'>"
                                        "    <method name='Ask'>"
                                        "      <arg name='question' type='a{sv}' direction='in'/>"
                                        "      <arg name='allow' type='b' direction='out'/>"
                                        "    </method>"
                                        "  </interface>"
                                        "</node>";

static void
on_prompt_agent_call (GDBusConnection *conn, const gchar *sender, const gchar *path,
                      const gchar *iface, const gchar *method, GVariant *params,
                      GDBusMethodInvocation *invocation, gpointer data)
{
  XdmPromptAgent *agent = data;

  agent->asked++;
  g_free (agent->question);
  agent->question = g_variant_print (params, FALSE);
  if (agent->answer == XDM_PROMPT_HOLD)
    g_ptr_array_add (agent->held, invocation);
  else
    g_dbus_method_invocation_return_value (invocation,
                                           g_variant_new ("(b)", agent->answer == XDM_PROMPT_YES));
}

XdmPromptAgent *
xdm_prompt_agent_new (XdmHarness *h, XdmPromptAnswer answer)
{
  static const GDBusInterfaceVTable vtable = { on_prompt_agent_call, NULL, NULL };
  XdmPromptAgent *agent = g_new0 (XdmPromptAgent, 1);
  g_autoptr (GError) error = NULL;
  g_autoptr (GDBusNodeInfo) info = g_dbus_node_info_new_for_xml (prompt_agent_xml, &error);
  g_autoptr (GVariant) reply = NULL;

  g_assert_no_error (error);
  agent->answer = answer;
  agent->held = g_ptr_array_new ();
  agent->conn = g_object_ref (h->conn);
  agent->id = g_dbus_connection_register_object (agent->conn, PROMPT_AGENT_PATH,
                                                 info->interfaces[0], &vtable, agent, NULL, &error);
  g_assert_no_error (error);
  g_assert_cmpuint (agent->id, >, 0);
  reply = g_dbus_connection_call_sync (
      agent->conn, DHF_BUS_NAME, DHF_OBJECT_PATH, "org.dhf.Framework1.Xdm", "RegisterPromptAgent",
      g_variant_new ("(o)", PROMPT_AGENT_PATH), NULL, G_DBUS_CALL_FLAGS_NONE, -1, NULL, &error);
  g_assert_no_error (error);
  return agent;
}

void
xdm_prompt_agent_answer_held (XdmPromptAgent *agent, gboolean allow)
{
  for (guint i = 0; i < agent->held->len; i++)
    g_dbus_method_invocation_return_value (g_ptr_array_index (agent->held, i),
                                           g_variant_new ("(b)", allow));
  g_ptr_array_set_size (agent->held, 0);
}

typedef struct
{
  XdmPromptAgent *agent;
  guint n;
} AskedWait;

static gboolean
asked_n (gpointer data)
{
  AskedWait *w = data;

  return w->agent->asked >= w->n;
}

void
xdm_prompt_agent_wait_asked (XdmPromptAgent *agent, guint n)
{
  AskedWait w = { agent, n };

  xdm_wait_until (asked_n, &w);
}

void
xdm_prompt_agent_free (XdmPromptAgent *agent)
{
  if (agent == NULL)
    return;
  g_dbus_connection_unregister_object (agent->conn, agent->id);
  xdm_prompt_agent_answer_held (agent, FALSE);
  g_ptr_array_unref (agent->held);
  g_object_unref (agent->conn);
  g_free (agent->question);
  g_free (agent);
}

/* --- simulated appliances --------------------------------------------- */

static void read_next (XdmSim *sim);

static void
on_line (GObject *source, GAsyncResult *result, gpointer data)
{
  XdmSim *sim = data;
  g_autoptr (GError) error = NULL;
  gchar *line = g_data_input_stream_read_line_finish_utf8 (G_DATA_INPUT_STREAM (source), result,
                                                           NULL, &error);

  if (line == NULL)
    {
      sim->eof = TRUE;
      return;
    }
  g_test_message ("%s> %.300s", sim->name, line);
  g_ptr_array_add (sim->lines, line);
  read_next (sim);
}

static void
read_next (XdmSim *sim)
{
  g_data_input_stream_read_line_async (sim->out, G_PRIORITY_DEFAULT, NULL, on_line, sim);
}

XdmSim *
xdm_sim_spawn (XdmHarness *h, const gchar *name)
{
  XdmSim *sim = g_new0 (XdmSim, 1);
  g_autoptr (GError) error = NULL;
  g_autoptr (GSubprocessLauncher) launcher = NULL;
  g_autofree gchar *address = NULL;

  if (g_str_equal (name, "dom0"))
    address = g_strconcat ("unix:", h->xdm_socket, NULL);
  else
    {
      g_autofree gchar *path = xdm_harness_channel_path (h, name);

      address = g_strconcat ("listen:", path, NULL);
    }
  sim->name = g_strdup (name);
  sim->lines = g_ptr_array_new_with_free_func (g_free);
  launcher
      = g_subprocess_launcher_new (G_SUBPROCESS_FLAGS_STDIN_PIPE | G_SUBPROCESS_FLAGS_STDOUT_PIPE);
  g_subprocess_launcher_set_child_setup (launcher, die_with_parent, NULL, NULL);
  sim->proc = g_subprocess_launcher_spawn (launcher, &error, XDM_SIM_PATH, address, NULL);
  g_assert_no_error (error);
  sim->in = g_subprocess_get_stdin_pipe (sim->proc);
  sim->out = g_data_input_stream_new (g_subprocess_get_stdout_pipe (sim->proc));
  read_next (sim);
  return sim;
}

void
xdm_sim_wait_ready (XdmSim *sim)
{
  g_autofree gchar *ready = xdm_sim_expect (sim, "ready ");

  g_assert_cmpstr (ready + strlen ("ready "), ==, sim->name);
}

XdmSim *
xdm_sim_start (XdmHarness *h, const gchar *name)
{
  XdmSim *sim = xdm_sim_spawn (h, name);

  xdm_sim_wait_ready (sim);
  return sim;
}

static gboolean
sim_eof (gpointer data)
{
  return ((XdmSim *) data)->eof;
}

void
xdm_sim_kill (XdmSim *sim)
{
  g_autoptr (GError) error = NULL;

  g_subprocess_force_exit (sim->proc);
  g_subprocess_wait (sim->proc, NULL, &error);
  g_assert_no_error (error);
  xdm_wait_until (sim_eof, sim);
}

void
xdm_sim_free (XdmSim *sim)
{
  if (sim == NULL)
    return;
  if (g_subprocess_get_identifier (sim->proc) != NULL)
    {
      g_autoptr (GError) error = NULL;

      /* EOF on its stdin ends it. */
      g_output_stream_close (sim->in, NULL, NULL);
      g_subprocess_wait (sim->proc, NULL, &error);
      g_assert_no_error (error);
    }
  xdm_wait_until (sim_eof, sim);
  g_object_unref (sim->out);
  g_object_unref (sim->proc);
  g_ptr_array_unref (sim->lines);
  g_free (sim->name);
  g_free (sim);
}

void
xdm_sim_send (XdmSim *sim, const gchar *format, ...)
{
  g_autoptr (GError) error = NULL;
  g_autofree gchar *line = NULL;
  va_list args;

  va_start (args, format);
  line = g_strdup_vprintf (format, args);
  va_end (args);
  g_test_message ("%s< %s", sim->name, line);
  g_assert_true (g_output_stream_write_all (sim->in, line, strlen (line), NULL, NULL, &error));
  g_assert_true (g_output_stream_write_all (sim->in, "\n", 1, NULL, NULL, &error));
  g_assert_no_error (error);
}

const gchar *
xdm_sim_peek (XdmSim *sim, const gchar *prefix)
{
  for (guint i = 0; i < sim->lines->len; i++)
    {
      const gchar *line = g_ptr_array_index (sim->lines, i);

      if (g_str_has_prefix (line, prefix))
        return line;
    }
  return NULL;
}

void
xdm_sim_forget (XdmSim *sim, const gchar *prefix)
{
  for (guint i = sim->lines->len; i > 0; i--)
    {
      if (g_str_has_prefix (g_ptr_array_index (sim->lines, i - 1), prefix))
        g_ptr_array_remove_index (sim->lines, i - 1);
    }
}

typedef struct
{
  XdmSim *sim;
  const gchar *prefix;
} LineWait;

static gboolean
has_line (gpointer data)
{
  LineWait *w = data;

  if (xdm_sim_peek (w->sim, w->prefix) != NULL)
    return TRUE;
  if (w->sim->eof)
    g_error ("%s ended while the test waited for \"%s\"", w->sim->name, w->prefix);
  return FALSE;
}

gchar *
xdm_sim_expect (XdmSim *sim, const gchar *prefix)
{
  LineWait w = { sim, prefix };

  xdm_wait_until (has_line, &w);
  for (guint i = 0; i < sim->lines->len; i++)
    {
      if (g_str_has_prefix (g_ptr_array_index (sim->lines, i), prefix))
        return g_ptr_array_steal_index (sim->lines, i);
    }
  g_assert_not_reached ();
}

static gchar *begin_va (XdmSim *sim, const gchar *cmd, const gchar *format, va_list args)
    G_GNUC_PRINTF (3, 0);

static gchar *
begin_va (XdmSim *sim, const gchar *cmd, const gchar *format, va_list args)
{
  g_autofree gchar *rest = g_strdup_vprintf (format, args);
  /* Fixed width: no tag is a prefix of another. */
  gchar *tag = g_strdup_printf ("t%06u", ++sim->next_tag);

  xdm_sim_send (sim, "%s %s %s", cmd, tag, rest);
  return tag;
}

gchar *
xdm_sim_begin (XdmSim *sim, const gchar *cmd, const gchar *format, ...)
{
  va_list args;
  gchar *tag;

  va_start (args, format);
  tag = begin_va (sim, cmd, format, args);
  va_end (args);
  return tag;
}

typedef struct
{
  XdmSim *sim;
  gchar *ok;
  gchar *error;
} AnswerWait;

static gboolean
has_answer (gpointer data)
{
  AnswerWait *w = data;

  if (xdm_sim_peek (w->sim, w->ok) != NULL || xdm_sim_peek (w->sim, w->error) != NULL)
    return TRUE;
  if (w->sim->eof)
    g_error ("%s ended while the test waited for \"%s\"", w->sim->name, w->ok);
  return FALSE;
}

/* "ok TAG rest" -> "ok rest"; "error TAG rest" -> "error rest". */
gchar *
xdm_sim_wait (XdmSim *sim, const gchar *tag)
{
  AnswerWait w = { sim, g_strdup_printf ("ok %s", tag), g_strdup_printf ("error %s ", tag) };
  g_autofree gchar *line = NULL;
  gboolean ok;
  const gchar *rest;

  xdm_wait_until (has_answer, &w);
  ok = xdm_sim_peek (sim, w.ok) != NULL;
  line = xdm_sim_expect (sim, ok ? w.ok : w.error);
  rest = line + strlen (ok ? w.ok : w.error);
  g_free (w.ok);
  g_free (w.error);
  return ok ? g_strconcat ("ok", rest, NULL) : g_strconcat ("error ", rest, NULL);
}

gchar *
xdm_sim_run (XdmSim *sim, const gchar *cmd, const gchar *format, ...)
{
  va_list args;
  g_autofree gchar *tag = NULL;

  va_start (args, format);
  tag = begin_va (sim, cmd, format, args);
  va_end (args);
  return xdm_sim_wait (sim, tag);
}

json_object *
xdm_reply_json (const gchar *reply)
{
  json_object *json;

  xdm_assert_ok (reply);
  g_assert_true (g_str_has_prefix (reply, "ok "));
  json = json_tokener_parse (reply + 3);
  g_assert_nonnull (json);
  return json;
}
