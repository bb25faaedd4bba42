/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

#include <gio/gio.h>
#include <json.h>

G_BEGIN_DECLS

/* The XDM integration tests' world: a private dbus-daemon, dhfd over
 * libvirt's test driver with a node file of simulated appliances whose
 * org.dhf.xdm.0 channel sockets live in a temporary directory, dhfd's dom0
 * socket there too, and the policy files in a directory the test edits.
 * Simulated appliances are xdm-sim processes (libdhf-1 DhfClient on
 * listen:SOCKET), driven line by line. */

typedef struct
{
  const gchar *name;
  const gchar *role; /* "environment" or "service" */
  const gchar *tags; /* a JSON array, e.g. "[\"corp\"]", or NULL */
  gboolean shut_off; /* defined but not running */
} XdmDomainSpec;

typedef struct
{
  GSubprocess *bus; /* the private dbus-daemon */
  gchar *bus_address;
  GDBusConnection *conn;
  gchar *tmpdir;
  gchar *node_path;
  gchar *config_path;
  gchar *policy_dir;
  gchar *channel_dir;
  gchar *xdm_socket;
  gchar *log_path;
  GSubprocess *dhfd;
  guint dhfd_runs; /* log files: dhfd.log, dhfd-2.log, ... */
} XdmHarness;

typedef struct
{
  GSubprocess *proc;
  gchar *name;
  GDataInputStream *out;
  GOutputStream *in;
  GPtrArray *lines; /* unclaimed lines, oldest first */
  gboolean eof;
  guint next_tag;
} XdmSim;

/* The deadline of every wait: a hang fails the test, nothing is timed. */
#define XDM_WAIT_TIMEOUT_S 30

/* policy: the text of TMP/policy.d/50-test.policy. xdm_config: lines
 * added to dhfd.conf's [XDM] group (may be NULL). */
XdmHarness *xdm_harness_new (const XdmDomainSpec *domains, guint n_domains, const gchar *policy,
                             const gchar *xdm_config);
/* Stops dhfd (it must exit 0 on SIGTERM) and removes everything. */
void xdm_harness_free (XdmHarness *h);

/* Starts dhfd and waits until it owns its bus name and its dom0 socket
 * exists. */
void xdm_harness_start_dhfd (XdmHarness *h);
/* Sends sig to dhfd and waits for it to end; returns its wait status. */
gint xdm_harness_kill_dhfd (XdmHarness *h, gint sig);
GPid xdm_harness_dhfd_pid (XdmHarness *h);
/* dhfd's VmRSS in KiB. */
glong xdm_harness_dhfd_rss_kib (XdmHarness *h);
/* The text dhfd logged so far (this run). */
gchar *xdm_harness_dhfd_log (XdmHarness *h);

gchar *xdm_harness_channel_path (XdmHarness *h, const gchar *domain);
/* Replaces the test policy by rename, as an editor does, and waits until
 * dhfd put the new set in force (Policy.Generation moved). */
void xdm_harness_set_policy (XdmHarness *h, const gchar *policy);

/* org.dhf.Framework1.Xdm.ListConnections / ListServices /
 * ListSubscriptions: the aa{sv}. */
GVariant *xdm_harness_list (XdmHarness *h, const gchar *method);
/* The entries of a list whose key holds the string value. */
guint xdm_harness_count (GVariant *list, const gchar *key, const gchar *value);
/* Waits until domain provides service (or no longer does). */
void xdm_harness_wait_service (XdmHarness *h, const gchar *service, const gchar *domain,
                               gboolean present);
/* Waits until n entries of the list method returns have key = value. */
void xdm_harness_wait_count (XdmHarness *h, const gchar *method, const gchar *key,
                             const gchar *value, guint n);
/* Waits until dhfd has n connections of domain. */
void xdm_harness_wait_connections (XdmHarness *h, const gchar *domain, guint n);
/* A uint64 member of the entry of list whose key holds value (0 if none). */
guint64 xdm_harness_lookup_u64 (GVariant *list, const gchar *key, const gchar *value,
                                const gchar *member);

/* Runs the main context until check(data) holds. */
void xdm_wait_until (gboolean (*check) (gpointer data), gpointer data);

/* A prompt agent (org.dhf.Framework1.PromptAgent) on the harness's bus
 * connection, registered with dhfd (Xdm.RegisterPromptAgent): the user
 * whom "ask" rules ask. A question gets the answer set when it comes, yes
 * or no, or is held for the test to answer. */
typedef enum
{
  XDM_PROMPT_YES,
  XDM_PROMPT_NO,
  XDM_PROMPT_HOLD,
} XdmPromptAnswer;

typedef struct
{
  XdmPromptAnswer answer; /* the test changes it as it goes */
  guint asked;
  gchar *question; /* the last one's parameters, g_variant_print()ed */
  GPtrArray *held; /* GDBusMethodInvocation, unanswered */
  GDBusConnection *conn;
  guint id;
} XdmPromptAgent;

XdmPromptAgent *xdm_prompt_agent_new (XdmHarness *h, XdmPromptAnswer answer);
/* Answers every held question (allow or not) and forgets them. */
void xdm_prompt_agent_answer_held (XdmPromptAgent *agent, gboolean allow);
/* Waits until the agent has been asked n questions in all. */
void xdm_prompt_agent_wait_asked (XdmPromptAgent *agent, guint n);
/* Unregisters the agent; questions still held are answered no. */
void xdm_prompt_agent_free (XdmPromptAgent *agent);

G_DEFINE_AUTOPTR_CLEANUP_FUNC (XdmPromptAgent, xdm_prompt_agent_free)

/* A simulated appliance: domain's channel socket (listen:), or dom0 on
 * dhfd's socket (name "dom0"). Returns once it said "ready" when wait. */
XdmSim *xdm_sim_start (XdmHarness *h, const gchar *name);
/* Starts the process only: its "ready" comes once dhfd connects. */
XdmSim *xdm_sim_spawn (XdmHarness *h, const gchar *name);
void xdm_sim_wait_ready (XdmSim *sim);
void xdm_sim_free (XdmSim *sim);
/* SIGKILL, and waits for the process to end. */
void xdm_sim_kill (XdmSim *sim);
void xdm_sim_send (XdmSim *sim, const gchar *format, ...) G_GNUC_PRINTF (2, 3);
/* Waits for, removes and returns the first line starting with prefix. */
gchar *xdm_sim_expect (XdmSim *sim, const gchar *prefix);
/* The first unclaimed line starting with prefix, or NULL; does not wait. */
const gchar *xdm_sim_peek (XdmSim *sim, const gchar *prefix);
/* Drops the unclaimed lines starting with prefix. */
void xdm_sim_forget (XdmSim *sim, const gchar *prefix);
/* Sends "CMD TAG ARGS" and waits for its answer: "ok ..." or
 * "error CODE MESSAGE" (the tag removed). */
gchar *xdm_sim_run (XdmSim *sim, const gchar *cmd, const gchar *format, ...) G_GNUC_PRINTF (3, 4);
/* Sends "CMD TAG ARGS" without waiting; returns the tag for
 * xdm_sim_wait(). */
gchar *xdm_sim_begin (XdmSim *sim, const gchar *cmd, const gchar *format, ...) G_GNUC_PRINTF (3, 4);
gchar *xdm_sim_wait (XdmSim *sim, const gchar *tag);

/* The JSON of an "ok JSON" reply (from xdm_sim_run); json_object_put() it. */
json_object *xdm_reply_json (const gchar *reply);

/* Asserts that reply (from xdm_sim_run) is "error CODE ...". */
#define xdm_assert_error(reply, code)                                                              \
  G_STMT_START                                                                                     \
  {                                                                                                \
    if (!g_str_has_prefix ((reply), "error " code " "))                                            \
      g_error ("%s:%d: expected error %s, got: %s", __FILE__, __LINE__, code, (reply));            \
  }                                                                                                \
  G_STMT_END
#define xdm_assert_ok(reply)                                                                       \
  G_STMT_START                                                                                     \
  {                                                                                                \
    if (!g_str_has_prefix ((reply), "ok"))                                                         \
      g_error ("%s:%d: expected ok, got: %s", __FILE__, __LINE__, (reply));                        \
  }                                                                                                \
  G_STMT_END

G_END_DECLS
