/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include "config.h"

#include <string.h>
#include <sys/stat.h>

#include <glib/gstdio.h>

#include "dhf-device-engine.h"

#include "dhf-test-util.h"
#include "fake-ops.h"

/* The device engine against a fake hypervisor (fake-ops.c) and a fake
 * policy (a table of rules, first match wins): follow-focus, rollback at
 * every step, switch refusals, pins, IOMMU groups, fallback, restart from
 * the state file, policy changes. The main context is iterated until the
 * engine says it is idle. */

/* --- log --------------------------------------------------------------- */

static GPtrArray *warnings;

/* The engine warns about failures these tests cause on purpose: collect
 * the warnings so that a test can expect them, and fail on others. */
static GLogWriterOutput
record_log (GLogLevelFlags level, const GLogField *fields, gsize n_fields, gpointer data)
{
  if (level & G_LOG_LEVEL_WARNING)
    {
      for (gsize i = 0; i < n_fields; i++)
        {
          if (g_strcmp0 (fields[i].key, "MESSAGE") == 0)
            g_ptr_array_add (warnings, g_strdup (fields[i].value));
        }
      return G_LOG_WRITER_HANDLED;
    }
  if (level & (G_LOG_LEVEL_MESSAGE | G_LOG_LEVEL_INFO | G_LOG_LEVEL_DEBUG))
    {
      if (g_getenv ("G_MESSAGES_DEBUG") == NULL)
        return G_LOG_WRITER_HANDLED;
    }
  return g_log_writer_default (level, fields, n_fields, data);
}

static void
expect_warning (const gchar *part)
{
  for (guint i = 0; i < warnings->len; i++)
    {
      if (strstr (g_ptr_array_index (warnings, i), part) != NULL)
        {
          g_ptr_array_remove_index (warnings, i);
          return;
        }
    }
  g_error ("no warning containing \"%s\"", part);
}

/* --- devices, domains, policy ------------------------------------------ */

static DhfDevice *
input_device (const gchar *type)
{
  DhfDevice *device = g_new0 (DhfDevice, 1);

  device->id = g_strdup_printf ("input-%s", type);
  device->kind = DHF_DEVICE_KIND_INPUT;
  device->selector = g_strdup_printf ("input:%s", type);
  device->description = g_strdup_printf ("%s (emulated)", type);
  device->input_type = g_strdup (type);
  device->iommu_group = -1;
  return device;
}

static DhfDevice *
usb_device (const gchar *port, guint16 vendor, guint16 product)
{
  DhfDevice *device = g_new0 (DhfDevice, 1);

  device->id = g_strdup_printf ("usb-%s", port);
  device->kind = DHF_DEVICE_KIND_USB;
  device->selector = g_strdup_printf ("usb:%04x:%04x", vendor, product);
  device->description = g_strdup ("USB device");
  device->usb_vendor = vendor;
  device->usb_product = product;
  device->usb_bus = 1;
  device->usb_devnum = 5;
  device->usb_port = g_strdup (port);
  device->iommu_group = -1;
  return device;
}

/* One with a serial: its selector names it alone. */
static DhfDevice *
usb_serial_device (const gchar *port, guint16 vendor, guint16 product, const gchar *serial)
{
  DhfDevice *device = usb_device (port, vendor, product);

  g_free (device->selector);
  device->selector = g_strdup_printf ("usb:%04x:%04x:%s", vendor, product, serial);
  device->usb_serial = g_strdup (serial);
  return device;
}

static DhfDevice *
pci_device (const gchar *address, gint group, const gchar *driver, gboolean bridge)
{
  DhfDevice *device = g_new0 (DhfDevice, 1);

  device->id = g_strdup_printf ("pci-%s", address);
  device->kind = DHF_DEVICE_KIND_PCI;
  device->selector = g_strdup_printf ("pci:%s", address);
  device->description = g_strdup ("PCI function");
  device->pci_address = g_strdup (address);
  device->iommu_group = group;
  device->pci_driver = g_strdup (driver);
  device->pci_bridge = bridge;
  return device;
}

static void
wish_free (DhfManifestDevice *wish)
{
  g_free (wish->input_type);
  g_free (wish->usb_serial);
  g_free (wish->pci_address);
  g_free (wish);
}

static DhfManifestDevice *
usb_wish (guint16 vendor, guint16 product, DhfDeviceMode mode)
{
  DhfManifestDevice *wish = g_new0 (DhfManifestDevice, 1);

  wish->kind = DHF_DEVICE_KIND_USB;
  wish->mode = mode;
  wish->usb_vendor = vendor;
  wish->usb_product = product;
  return wish;
}

static DhfManifestDevice *
pci_wish (const gchar *address)
{
  DhfManifestDevice *wish = g_new0 (DhfManifestDevice, 1);

  wish->kind = DHF_DEVICE_KIND_PCI;
  wish->mode = DHF_DEVICE_MODE_PINNED;
  wish->pci_address = g_strdup (address);
  return wish;
}

static DhfManifestDevice *
input_wish (const gchar *type, DhfDeviceMode mode)
{
  DhfManifestDevice *wish = g_new0 (DhfManifestDevice, 1);

  wish->kind = DHF_DEVICE_KIND_INPUT;
  wish->mode = mode;
  wish->input_type = g_strdup (type);
  return wish;
}

typedef struct
{
  DhfPolicyKind kind;
  gchar *subject; /* glob over the selector; NULL: any */
  gchar *source;  /* glob */
  gchar *target;  /* glob */
  DhfPolicyAction action;
  gchar *mode;
  gboolean target_named;
  gchar *rule;
} Rule;

static void
rule_clear (Rule *rule)
{
  g_free (rule->subject);
  g_free (rule->source);
  g_free (rule->target);
  g_free (rule->mode);
  g_free (rule->rule);
}

typedef struct
{
  gboolean active;
  gboolean running;
  gboolean environment;
  GPtrArray *wishes;
} TestDomain;

static void
test_domain_free (TestDomain *domain)
{
  g_clear_pointer (&domain->wishes, g_ptr_array_unref);
  g_free (domain);
}

/* --- the fixture ------------------------------------------------------- */

typedef struct
{
  FakeOps *fake;
  DhfDeviceEngine *engine;
  DhfDeviceEngineConfig config;
  const gchar *order[8];
  GArray *rules;         /* Rule, first match wins */
  GHashTable *domains;   /* name -> TestDomain */
  GPtrArray *devices;    /* DhfDevice: the inventory */
  GPtrArray *focus_log;  /* "new<-old" */
  GPtrArray *device_log; /* ids */
  GPtrArray *switch_log; /* the SWITCH queries the decider got: "source>target" */
  gchar *dir;
  gchar *state_file;
  gboolean with_asker;
  gint answer; /* the asker: 1 yes, 0 no, -1 keep the question open */
  gchar *asked;
  GCancellable *ask_cancellable;
  DhfEngineAskDone ask_done; /* the open question's, when answer is -1 */
  gpointer ask_done_data;
} Fixture;

static void
add_rule (Fixture *f, gboolean first, DhfPolicyKind kind, const gchar *subject, const gchar *source,
          const gchar *target, DhfPolicyAction action, const gchar *mode, gboolean target_named,
          const gchar *where)
{
  Rule rule = {
    kind,   g_strdup (subject), g_strdup (source), g_strdup (target),
    action, g_strdup (mode),    target_named,      g_strdup (where),
  };

  if (first)
    g_array_prepend_val (f->rules, rule);
  else
    g_array_append_val (f->rules, rule);
}

static void
decide (DhfPolicyKind kind, const gchar *subject, const gchar *source, const gchar *target,
        DhfEngineVerdict *verdict, gpointer data)
{
  Fixture *f = data;

  if (kind == DHF_POLICY_KIND_SWITCH)
    g_ptr_array_add (f->switch_log, g_strdup_printf ("%s>%s", source, target));
  for (guint i = 0; i < f->rules->len; i++)
    {
      const Rule *rule = &g_array_index (f->rules, Rule, i);

      if (rule->kind != kind
          || (rule->subject != NULL
              && (subject == NULL || !g_pattern_match_simple (rule->subject, subject)))
          || !g_pattern_match_simple (rule->source, source)
          || !g_pattern_match_simple (rule->target, target))
        continue;
      verdict->action = rule->action;
      verdict->mode = g_strdup (rule->mode);
      verdict->target_named = rule->target_named;
      verdict->rule = g_strdup (rule->rule);
      return;
    }
  verdict->action = DHF_POLICY_ACTION_DENY;
}

static gboolean
answer_later (gpointer data)
{
  gpointer *call = data;
  DhfEngineAskDone done = (DhfEngineAskDone) call[0];

  done (GPOINTER_TO_INT (call[2]), call[1]);
  g_free (call);
  return G_SOURCE_REMOVE;
}

static void
ask (const gchar *source, const gchar *target, const gchar *rule, GCancellable *cancellable,
     DhfEngineAskDone done, gpointer done_data, gpointer user_data)
{
  Fixture *f = user_data;
  gpointer *call;

  g_free (f->asked);
  f->asked = g_strdup_printf ("%s>%s %s", source, target, rule);
  g_set_object (&f->ask_cancellable, cancellable);
  if (f->answer < 0)
    {
      f->ask_done = done;
      f->ask_done_data = done_data;
      return;
    }
  /* Answered from the main loop, as a prompt would be. */
  call = g_new0 (gpointer, 3);
  call[0] = (gpointer) done;
  call[1] = done_data;
  call[2] = GINT_TO_POINTER (f->answer);
  g_idle_add (answer_later, call);
}

static void
on_focus_changed (DhfDeviceEngine *engine, const gchar *focused, const gchar *previous, Fixture *f)
{
  g_assert_cmpstr (focused, ==, dhf_device_engine_get_focused (engine));
  g_ptr_array_add (f->focus_log, g_strdup_printf ("%s<-%s", focused, previous));
}

static void
on_device_changed (DhfDeviceEngine *engine, const gchar *id, Fixture *f)
{
  g_ptr_array_add (f->device_log, g_strdup (id));
}

static void
fixture_setup (Fixture *f, gconstpointer data)
{
  f->fake = fake_ops_new ();
  f->rules = g_array_new (FALSE, TRUE, sizeof (Rule));
  g_array_set_clear_func (f->rules, (GDestroyNotify) rule_clear);
  f->domains
      = g_hash_table_new_full (g_str_hash, g_str_equal, g_free, (GDestroyNotify) test_domain_free);
  f->devices = g_ptr_array_new_with_free_func ((GDestroyNotify) dhf_device_free);
  f->focus_log = g_ptr_array_new_with_free_func (g_free);
  f->device_log = g_ptr_array_new_with_free_func (g_free);
  f->switch_log = g_ptr_array_new_with_free_func (g_free);
  f->dir = g_dir_make_tmp ("dhf-engine-XXXXXX", NULL);
  f->state_file = g_build_filename (f->dir, "state", "devices.json", NULL);
  f->config.state_file = f->state_file;
  f->config.fallback = "dom0";
  f->config.focused_weight = 1024;
  f->config.normal_weight = 256;
  f->config.order = f->order;
  f->answer = 1;
}

static void
wait_idle (Fixture *f)
{
  while (!dhf_device_engine_is_idle (f->engine))
    g_main_context_iteration (NULL, TRUE);
  /* Whatever else is ready (a prompt's answer) runs too. */
  while (g_main_context_iteration (NULL, FALSE))
    ;
}

/* As wait_idle, failing when the engine makes more than max_calls
 * hypervisor calls on the way: an engine that loops never gets idle. */
static void
wait_idle_bounded (Fixture *f, guint max_calls)
{
  guint start = fake_ops_count_calls (f->fake);

  while (!dhf_device_engine_is_idle (f->engine))
    {
      g_main_context_iteration (NULL, TRUE);
      g_assert_cmpuint (fake_ops_count_calls (f->fake) - start, <=, max_calls);
    }
  wait_idle (f);
  g_assert_cmpuint (fake_ops_count_calls (f->fake) - start, <=, max_calls);
}

static void
stop_engine (Fixture *f)
{
  if (f->engine == NULL)
    return;
  wait_idle (f);
  g_signal_handlers_disconnect_by_data (f->engine, f);
  g_clear_object (&f->engine);
}

static void
fixture_teardown (Fixture *f, gconstpointer data)
{
  stop_engine (f);
  fake_ops_free (f->fake);
  g_array_unref (f->rules);
  g_hash_table_unref (f->domains);
  g_ptr_array_unref (f->devices);
  g_ptr_array_unref (f->focus_log);
  g_ptr_array_unref (f->device_log);
  g_ptr_array_unref (f->switch_log);
  dhf_test_remove_tree (f->dir);
  g_free (f->dir);
  g_free (f->state_file);
  g_free (f->asked);
  g_clear_object (&f->ask_cancellable);
  for (guint i = 0; i < warnings->len; i++)
    g_printerr ("unexpected warning: %s\n", (const gchar *) g_ptr_array_index (warnings, i));
  g_assert_cmpuint (warnings->len, ==, 0);
}

static void
report_domain (Fixture *f, const gchar *name)
{
  TestDomain *domain = g_hash_table_lookup (f->domains, name);
  DhfEngineDomain info
      = { name, domain->active, domain->running, domain->environment, domain->wishes };

  if (f->engine != NULL)
    dhf_device_engine_domain_changed (f->engine, &info);
}

/* Defines a domain in the fake and reports it (wishes taken). */
static void
define (Fixture *f, const gchar *name, gboolean active, gboolean environment, GPtrArray *wishes)
{
  TestDomain *domain = g_new0 (TestDomain, 1);

  domain->active = active;
  domain->running = active;
  domain->environment = environment;
  domain->wishes = wishes;
  g_hash_table_replace (f->domains, g_strdup (name), domain);
  fake_ops_add_domain (f->fake, name, active);
  report_domain (f, name);
}

static void
set_state (Fixture *f, const gchar *name, gboolean active, gboolean running)
{
  TestDomain *domain = g_hash_table_lookup (f->domains, name);

  if (domain->active != active)
    fake_ops_set_active (f->fake, name, active);
  domain->active = active;
  domain->running = running;
  report_domain (f, name);
}

static void
undefine (Fixture *f, const gchar *name)
{
  g_hash_table_remove (f->domains, name);
  fake_ops_remove_domain (f->fake, name);
  dhf_device_engine_domain_removed (f->engine, name);
}

static void
add_device (Fixture *f, DhfDevice *device)
{
  g_ptr_array_add (f->devices, device);
}

static void
send_inventory (Fixture *f)
{
  dhf_device_engine_set_inventory (f->engine, f->devices);
}

/* Makes the engine, hands it everything and, when sync is set, lets it
 * read the domains and settle. */
static void
start_engine_full (Fixture *f, gboolean sync)
{
  g_autoptr (GError) error = NULL;
  g_autoptr (GList) names = NULL;

  f->engine = dhf_device_engine_new (fake_ops_vtable (), f->fake, &f->config);
  dhf_device_engine_set_decider (f->engine, decide, f);
  if (f->with_asker)
    dhf_device_engine_set_asker (f->engine, ask, f);
  g_signal_connect (f->engine, "focus-changed", G_CALLBACK (on_focus_changed), f);
  g_signal_connect (f->engine, "device-changed", G_CALLBACK (on_device_changed), f);
  g_assert_true (dhf_device_engine_load (f->engine, &error));
  g_assert_no_error (error);
  send_inventory (f);
  names = g_hash_table_get_keys (f->domains);
  for (GList *l = names; l != NULL; l = l->next)
    report_domain (f, l->data);
  if (!sync)
    return;
  dhf_device_engine_synced (f->engine);
  wait_idle (f);
}

static void
start_engine (Fixture *f)
{
  start_engine_full (f, TRUE);
}

/* Two environments A and B, a keyboard and a mouse that follow the focus
 * (the vendor default), switching allowed from dom0. */
static void
desktop (Fixture *f)
{
  add_rule (f, FALSE, DHF_POLICY_KIND_DEVICE, "input:*", "dom0", "*", DHF_POLICY_ACTION_ALLOW,
            "follow-focus", FALSE, "30-desktop.policy:3");
  add_rule (f, FALSE, DHF_POLICY_KIND_SWITCH, NULL, "dom0", "*", DHF_POLICY_ACTION_ALLOW, NULL,
            FALSE, "30-desktop.policy:7");
  add_device (f, input_device ("keyboard"));
  add_device (f, input_device ("mouse"));
  define (f, "A", TRUE, TRUE, NULL);
  define (f, "B", TRUE, TRUE, NULL);
}

static void
on_result (GObject *source, GAsyncResult *result, gpointer data)
{
  GAsyncResult **out = data;

  *out = g_object_ref (result);
}

static gchar *
try_switch (Fixture *f, const gchar *target, const gchar *requester, const guint *keys,
            guint n_keys, GError **error)
{
  g_autoptr (GAsyncResult) result = NULL;
  gchar *focused;

  dhf_device_engine_switch_async (f->engine, target, requester, keys, n_keys, NULL, on_result,
                                  &result);
  while (result == NULL)
    g_main_context_iteration (NULL, TRUE);
  focused = dhf_device_engine_switch_finish (f->engine, result, error);
  wait_idle (f);
  return focused;
}

static void
switch_ok (Fixture *f, const gchar *target, const gchar *expected)
{
  g_autoptr (GError) error = NULL;
  g_autofree gchar *focused = try_switch (f, target, "dom0", NULL, 0, &error);

  g_assert_no_error (error);
  g_assert_cmpstr (focused, ==, expected);
  g_assert_cmpstr (dhf_device_engine_get_focused (f->engine), ==, expected);
}

static void
switch_fails (Fixture *f, const gchar *target, const gchar *requester, gint code,
              const gchar *message_part)
{
  g_autoptr (GError) error = NULL;
  g_autofree gchar *before = g_strdup (dhf_device_engine_get_focused (f->engine));
  g_autofree gchar *focused = try_switch (f, target, requester, NULL, 0, &error);

  g_assert_error (error, DHF_ERROR, code);
  g_assert_null (focused);
  if (message_part != NULL && strstr (error->message, message_part) == NULL)
    g_error ("\"%s\" does not say \"%s\"", error->message, message_part);
  g_assert_cmpstr (dhf_device_engine_get_focused (f->engine), ==, before);
}

static gboolean
assign (Fixture *f, const gchar *id, const gchar *domain, GError **error)
{
  g_autoptr (GAsyncResult) result = NULL;
  gboolean ok;

  dhf_device_engine_assign_async (f->engine, id, domain, NULL, on_result, &result);
  while (result == NULL)
    g_main_context_iteration (NULL, TRUE);
  ok = dhf_device_engine_assign_finish (f->engine, result, error);
  wait_idle (f);
  return ok;
}

static gboolean
release (Fixture *f, const gchar *id, GError **error)
{
  g_autoptr (GAsyncResult) result = NULL;
  gboolean ok;

  dhf_device_engine_release_async (f->engine, id, NULL, on_result, &result);
  while (result == NULL)
    g_main_context_iteration (NULL, TRUE);
  ok = dhf_device_engine_release_finish (f->engine, result, error);
  wait_idle (f);
  return ok;
}

static void
assert_calls (Fixture *f, const gchar *expected)
{
  g_autofree gchar *calls = fake_ops_take_calls (f->fake);

  g_assert_cmpstr (calls, ==, expected);
}

static void
assert_where (Fixture *f, const gchar *id, const gchar *expected)
{
  g_autofree gchar *where = fake_ops_where (f->fake, id);

  g_assert_cmpstr (where, ==, expected);
}

/* The engine's view of one device. */
static void
assert_status (Fixture *f, const gchar *id, const gchar *owner, DhfDeviceMode mode,
               const gchar *holder, const gchar *origin)
{
  g_autoptr (DhfDeviceStatus) status = dhf_device_engine_lookup (f->engine, id);

  g_assert_nonnull (status);
  g_assert_cmpstr (status->device->id, ==, id);
  g_assert_cmpstr (status->owner, ==, owner);
  g_assert_cmpstr (dhf_device_mode_to_string (status->mode), ==, dhf_device_mode_to_string (mode));
  g_assert_cmpstr (status->holder, ==, holder);
  g_assert_cmpstr (status->origin, ==, origin);
}

static gchar *
problem_of (Fixture *f, const gchar *id)
{
  g_autoptr (DhfDeviceStatus) status = dhf_device_engine_lookup (f->engine, id);

  g_assert_nonnull (status);
  return g_strdup (status->problem);
}

static gchar *
joined (GPtrArray *array)
{
  g_autoptr (GPtrArray) copy = g_ptr_array_copy (array, NULL, NULL);

  /* A copy frees what the original frees: not here. */
  g_ptr_array_set_free_func (copy, NULL);

  g_ptr_array_add (copy, NULL);
  return g_strjoinv (" ", (gchar **) copy->pdata);
}

static void
assert_history (Fixture *f, const gchar *expected)
{
  g_auto (GStrv) history = dhf_device_engine_dup_history (f->engine);
  g_autofree gchar *text = g_strjoinv (" ", history);

  g_assert_cmpstr (text, ==, expected);
}

static void
assert_cycle (Fixture *f, const gchar *expected)
{
  g_auto (GStrv) cycle = dhf_device_engine_dup_cycle (f->engine);
  g_autofree gchar *text = g_strjoinv (" ", cycle);

  g_assert_cmpstr (text, ==, expected);
}

/* --- follow-focus ------------------------------------------------------ */

static void
test_follow_focus (Fixture *f, gconstpointer data)
{
  const guint keys[] = { 29, 56 };
  g_autoptr (GError) error = NULL;
  g_autofree gchar *focused = NULL;
  g_autofree gchar *log = NULL;
  g_autofree gchar *changed = NULL;

  desktop (f);
  start_engine (f);
  /* The sync reads every domain and gives each running one its weight. */
  assert_calls (f, "list A; list-config A; list B; list-config B; weight A 256; weight B 256");
  assert_status (f, "input-keyboard", "dom0", DHF_DEVICE_MODE_FOLLOW_FOCUS, NULL, "focus");
  g_assert_cmpstr (dhf_device_engine_get_focused (f->engine), ==, "dom0");
  g_ptr_array_set_size (f->device_log, 0);

  switch_ok (f, "A", "A");
  assert_calls (f, "attach A input-keyboard live|config; attach A input-mouse live|config; "
                   "weight A 1024");
  assert_status (f, "input-keyboard", "A", DHF_DEVICE_MODE_FOLLOW_FOCUS, NULL, "focus");
  assert_status (f, "input-mouse", "A", DHF_DEVICE_MODE_FOLLOW_FOCUS, NULL, "focus");
  changed = joined (f->device_log);
  g_assert_cmpstr (changed, ==, "input-keyboard input-mouse");

  /* The keyboard leaves A: unplugging it releases the keys held there, so
   * none are sent (test_release_keys has the other cases). */
  focused = try_switch (f, "B", "dom0", keys, G_N_ELEMENTS (keys), &error);
  g_assert_no_error (error);
  g_assert_cmpstr (focused, ==, "B");
  assert_calls (f, "detach A input-keyboard live|config; "
                   "detach A input-mouse live|config; attach B input-keyboard live|config; "
                   "attach B input-mouse live|config; weight B 1024; weight A 256");
  assert_where (f, "input-keyboard", "B");
  assert_where (f, "input-mouse", "B");
  g_assert_true (fake_ops_holds (f->fake, "B", "input-keyboard",
                                 DHF_DEVICE_SCOPE_LIVE | DHF_DEVICE_SCOPE_CONFIG));
  g_assert_cmpuint (fake_ops_weight (f->fake, "A"), ==, 256);
  g_assert_cmpuint (fake_ops_weight (f->fake, "B"), ==, 1024);
  assert_status (f, "input-keyboard", "B", DHF_DEVICE_MODE_FOLLOW_FOCUS, NULL, "focus");

  switch_ok (f, "A", "A");
  assert_calls (f, "detach B input-keyboard live|config; detach B input-mouse live|config; "
                   "attach A input-keyboard live|config; attach A input-mouse live|config; "
                   "weight A 1024; weight B 256");
  assert_where (f, "input-keyboard", "A");
  assert_history (f, "B dom0");
  log = joined (f->focus_log);
  g_assert_cmpstr (log, ==, "A<-dom0 B<-A A<-B");

  /* To dom0: the devices come home, nobody gets the focused weight. */
  switch_ok (f, "dom0", "dom0");
  assert_calls (f, "detach A input-keyboard live|config; detach A input-mouse live|config; "
                   "weight A 256");
  assert_where (f, "input-keyboard", "dom0");
  assert_history (f, "A B");

  /* The focused one again: done at once, nothing moves. */
  switch_ok (f, "dom0", "dom0");
  assert_calls (f, "");
  g_assert_cmpuint (f->focus_log->len, ==, 4);
}

/* Switches queued back to back run one at a time, in order. */
static void
test_queue_order (Fixture *f, gconstpointer data)
{
  g_autoptr (GAsyncResult) first = NULL;
  g_autoptr (GAsyncResult) second = NULL;
  g_autoptr (GError) error = NULL;
  g_autofree gchar *a = NULL;
  g_autofree gchar *b = NULL;

  desktop (f);
  start_engine (f);
  assert_calls (f, "list A; list-config A; list B; list-config B; weight A 256; weight B 256");
  dhf_device_engine_switch_async (f->engine, "B", "dom0", NULL, 0, NULL, on_result, &first);
  dhf_device_engine_switch_async (f->engine, "A", "dom0", NULL, 0, NULL, on_result, &second);
  g_assert_false (dhf_device_engine_is_idle (f->engine));
  while (second == NULL)
    {
      g_main_context_iteration (NULL, TRUE);
      /* The first is answered before the second. */
      g_assert_true (second == NULL || first != NULL);
    }
  b = dhf_device_engine_switch_finish (f->engine, first, &error);
  g_assert_no_error (error);
  a = dhf_device_engine_switch_finish (f->engine, second, &error);
  g_assert_no_error (error);
  g_assert_cmpstr (b, ==, "B");
  g_assert_cmpstr (a, ==, "A");
  wait_idle (f);
  assert_calls (f, "attach B input-keyboard live|config; attach B input-mouse live|config; "
                   "weight B 1024; "
                   "detach B input-keyboard live|config; detach B input-mouse live|config; "
                   "attach A input-keyboard live|config; attach A input-mouse live|config; "
                   "weight A 1024; weight B 256");
}

/* Nothing moves before the first sync, and requests are refused. */
static void
test_before_sync (Fixture *f, gconstpointer data)
{
  desktop (f);
  start_engine_full (f, FALSE);
  g_assert_true (dhf_device_engine_is_idle (f->engine));
  switch_fails (f, "A", "dom0", DHF_ERROR_HYPERVISOR_UNAVAILABLE, NULL);
  dhf_device_engine_policy_changed (f->engine);
  g_assert_true (dhf_device_engine_is_idle (f->engine));
  assert_calls (f, "");
  dhf_device_engine_synced (f->engine);
  wait_idle (f);
  assert_calls (f, "list A; list-config A; list B; list-config B; weight A 256; weight B 256");
}

/* --- rollback ---------------------------------------------------------- */

static void
assert_back_at_a (Fixture *f)
{
  const gchar *const ids[] = { "input-keyboard", "input-mouse" };

  g_assert_cmpstr (dhf_device_engine_get_focused (f->engine), ==, "A");
  for (guint i = 0; i < G_N_ELEMENTS (ids); i++)
    {
      /* In the hypervisor's truth, not only in the engine's view. */
      g_assert_true (
          fake_ops_holds (f->fake, "A", ids[i], DHF_DEVICE_SCOPE_LIVE | DHF_DEVICE_SCOPE_CONFIG));
      assert_where (f, ids[i], "A");
      assert_status (f, ids[i], "A", DHF_DEVICE_MODE_FOLLOW_FOCUS, NULL, "focus");
    }
  g_assert_cmpuint (fake_ops_weight (f->fake, "A"), ==, 1024);
  g_assert_cmpuint (fake_ops_weight (f->fake, "B"), ==, 256);
  assert_history (f, "dom0");
}

/* The switch A -> B is 5 steps (and the old focus' weight after it);
 * each one fails in turn. (No keys are released: the keyboard leaves A;
 * a failed release undoes nothing, see test_release_keys.) */
static void
test_rollback_every_step (Fixture *f, gconstpointer data)
{
  static const struct
  {
    const gchar *call;
    const gchar *undo; /* NULL: none */
    const gchar *what;
    const gchar *reread; /* the domain read back after it failed, or NULL */
    const gchar *after;  /* what the reconciliation after it does, or NULL */
  } steps[] = {
    { "detach A input-keyboard live|config", "attach A input-keyboard live|config",
      "detaching input-keyboard from A", "A", NULL },
    { "detach A input-mouse live|config", "attach A input-mouse live|config",
      "detaching input-mouse from A", "A", NULL },
    { "attach B input-keyboard live|config", "detach B input-keyboard live|config",
      "attaching input-keyboard to B", "B", NULL },
    { "attach B input-mouse live|config", "detach B input-mouse live|config",
      "attaching input-mouse to B", "B", NULL },
    /* A weight that could not be set is set again rather than trusted. */
    { "weight B 1024", "weight B 256", "setting the CPU weight of B to 1024", NULL,
      "weight B 256" },
  };
  const guint keys[] = { 42 };

  desktop (f);
  start_engine (f);
  switch_ok (f, "A", "A");
  g_free (fake_ops_take_calls (f->fake));

  for (guint k = 0; k < G_N_ELEMENTS (steps); k++)
    {
      g_autoptr (GError) error = NULL;
      g_autoptr (GPtrArray) expected = g_ptr_array_new_with_free_func (g_free);
      g_autofree gchar *focused = NULL;
      g_autofree gchar *message = NULL;
      g_autofree gchar *calls = NULL;
      g_autofree gchar *want = NULL;

      g_test_message ("failing step %u: %s", k + 1, steps[k].call);
      fake_ops_fail_nth (f->fake, k + 1, DHF_ERROR_HYPERVISOR, "the hypervisor said no");
      focused = try_switch (f, "B", "dom0", keys, G_N_ELEMENTS (keys), &error);
      g_assert_null (focused);
      g_assert_error (error, DHF_ERROR, DHF_ERROR_HYPERVISOR);
      message = g_strdup_printf ("switching to B: %s: the hypervisor said no", steps[k].what);
      g_assert_cmpstr (error->message, ==, message);

      for (guint i = 0; i < k; i++)
        g_ptr_array_add (expected, g_strdup (steps[i].call));
      g_ptr_array_add (expected, g_strdup_printf ("%s -> failed", steps[k].call));
      for (guint i = k; i-- > 0;)
        {
          if (steps[i].undo != NULL)
            g_ptr_array_add (expected, g_strdup (steps[i].undo));
        }
      if (steps[k].reread != NULL)
        {
          g_ptr_array_add (expected, g_strdup_printf ("list %s", steps[k].reread));
          g_ptr_array_add (expected, g_strdup_printf ("list-config %s", steps[k].reread));
        }
      if (steps[k].after != NULL)
        g_ptr_array_add (expected, g_strdup (steps[k].after));
      g_ptr_array_add (expected, NULL);
      want = g_strjoinv ("; ", (gchar **) expected->pdata);
      calls = fake_ops_take_calls (f->fake);
      g_assert_cmpstr (calls, ==, want);

      assert_back_at_a (f);
      g_assert_cmpuint (f->focus_log->len, ==, 1);
    }

  /* The old focus' weight is best-effort: it does not undo the switch. */
  fake_ops_fail_matching (f->fake, "weight A 256", DHF_ERROR_HYPERVISOR, "no cpu controller");
  switch_ok (f, "B", "B");
  expect_warning ("setting the CPU weight of A to 256: no cpu controller");
  assert_calls (f, "detach A input-keyboard live|config; "
                   "detach A input-mouse live|config; attach B input-keyboard live|config; "
                   "attach B input-mouse live|config; weight B 1024; weight A 256 -> failed");
  assert_where (f, "input-keyboard", "B");
  g_assert_cmpuint (fake_ops_weight (f->fake, "B"), ==, 1024);
  /* Not tried again until A changes. */
  send_inventory (f);
  wait_idle (f);
  assert_calls (f, "");
  fake_ops_clear_failures (f->fake);
  set_state (f, "A", TRUE, FALSE);
  set_state (f, "A", TRUE, TRUE);
  wait_idle (f);
  assert_calls (f, "weight A 256");
}

/* An undo that fails is reported; the engine reads back where the
 * devices ended up, and a later reconciliation repairs it. */
static void
test_rollback_undo_fails (Fixture *f, gconstpointer data)
{
  g_autoptr (GError) error = NULL;
  g_autofree gchar *focused = NULL;

  desktop (f);
  start_engine (f);
  switch_ok (f, "A", "A");
  g_free (fake_ops_take_calls (f->fake));

  fake_ops_fail_matching (f->fake, "attach B input-mouse *", DHF_ERROR_HYPERVISOR,
                          "no free USB port");
  fake_ops_fail_matching (f->fake, "attach A input-keyboard *", DHF_ERROR_HYPERVISOR,
                          "guest is busy");
  focused = try_switch (f, "B", "dom0", NULL, 0, &error);
  g_assert_null (focused);
  g_assert_error (error, DHF_ERROR, DHF_ERROR_HYPERVISOR);
  g_assert_cmpstr (error->message, ==,
                   "switching to B: attaching input-mouse to B: no free USB port "
                   "(undo failed: attaching input-keyboard to A: guest is busy)");
  assert_calls (f, "detach A input-keyboard live|config; detach A input-mouse live|config; "
                   "attach B input-keyboard live|config; "
                   "attach B input-mouse live|config -> failed; "
                   "detach B input-keyboard live|config; attach A input-mouse live|config; "
                   "attach A input-keyboard live|config -> failed; list B; list-config B; "
                   "list A; list-config A; "
                   /* The reconciliation after it tries once, and remembers. */
                   "attach A input-keyboard live|config -> failed; list A; list-config A");
  expect_warning ("attaching input-keyboard to A: guest is busy");
  g_assert_cmpstr (dhf_device_engine_get_focused (f->engine), ==, "A");
  /* The keyboard is nowhere now, and the engine knows it. */
  assert_where (f, "input-keyboard", "dom0");
  assert_status (f, "input-keyboard", "dom0", DHF_DEVICE_MODE_FOLLOW_FOCUS, NULL, "focus");
  assert_status (f, "input-mouse", "A", DHF_DEVICE_MODE_FOLLOW_FOCUS, NULL, "focus");
  g_assert_cmpuint (fake_ops_weight (f->fake, "A"), ==, 1024);

  {
    g_autofree gchar *problem = problem_of (f, "input-keyboard");

    g_assert_cmpstr (problem, ==, "attaching input-keyboard to A: guest is busy");
  }

  /* Nothing is tried again until something changes; a new policy is a
   * change. The weights the failed switch never reached are as they were. */
  dhf_device_engine_policy_changed (f->engine);
  wait_idle (f);
  expect_warning ("attaching input-keyboard to A: guest is busy");
  assert_calls (f, "attach A input-keyboard live|config -> failed; list A; list-config A");
  fake_ops_clear_failures (f->fake);
  dhf_device_engine_policy_changed (f->engine);
  wait_idle (f);
  assert_calls (f, "attach A input-keyboard live|config");
  assert_status (f, "input-keyboard", "A", DHF_DEVICE_MODE_FOLLOW_FOCUS, NULL, "focus");
}

/* --- switch refusals --------------------------------------------------- */

static void
test_switch_errors (Fixture *f, gconstpointer data)
{
  desktop (f);
  define (f, "stopped", FALSE, TRUE, NULL);
  define (f, "vpn", TRUE, FALSE, NULL);
  add_rule (f, TRUE, DHF_POLICY_KIND_SWITCH, NULL, "dom0", "B", DHF_POLICY_ACTION_DENY, NULL, FALSE,
            "20-lock.policy:4");
  start_engine (f);
  g_free (fake_ops_take_calls (f->fake));

  switch_fails (f, "nope", "dom0", DHF_ERROR_NOT_FOUND, "no domain named nope");
  switch_fails (f, "stopped", "dom0", DHF_ERROR_INVALID_STATE, "stopped is not running");
  switch_fails (f, "vpn", "dom0", DHF_ERROR_INVALID_ARGS, "vpn is not an environment");
  switch_fails (f, "@sideways", "dom0", DHF_ERROR_INVALID_ARGS, "unknown switch target");
  switch_fails (f, "B", "dom0", DHF_ERROR_NOT_AUTHORIZED,
                "switching from dom0 to B is denied by 20-lock.policy:4");
  /* A requester no rule speaks for: a guest, told nothing more. */
  switch_fails (f, "A", "A", DHF_ERROR_NOT_AUTHORIZED,
                "A may not switch the display there: the policy does not allow it");
  /* Nothing moved for any of them. */
  assert_calls (f, "");
  g_assert_cmpuint (f->focus_log->len, ==, 0);
  switch_ok (f, "A", "A");
}

static void
test_switch_ask (Fixture *f, gconstpointer data)
{
  g_autoptr (GAsyncResult) result = NULL;
  g_autoptr (GCancellable) cancellable = g_cancellable_new ();
  g_autoptr (GError) error = NULL;
  g_autofree gchar *focused = NULL;

  desktop (f);
  add_rule (f, TRUE, DHF_POLICY_KIND_SWITCH, NULL, "personal", "*", DHF_POLICY_ACTION_ASK, NULL,
            FALSE, "30-desktop.policy:9");
  define (f, "personal", TRUE, TRUE, NULL);

  /* Without anyone to ask, ask is deny. */
  start_engine (f);
  switch_fails (f, "A", "personal", DHF_ERROR_NOT_AUTHORIZED, "no one can be asked");
  stop_engine (f);

  f->with_asker = TRUE;
  start_engine (f);
  f->answer = 0;
  switch_fails (f, "A", "personal", DHF_ERROR_NOT_AUTHORIZED, "refused when asked");
  g_assert_cmpstr (f->asked, ==, "personal>A 30-desktop.policy:9");
  g_assert_cmpstr (dhf_device_engine_get_focused (f->engine), ==, "dom0");

  f->answer = 1;
  g_clear_pointer (&f->asked, g_free);
  focused = try_switch (f, "A", "personal", NULL, 0, &error);
  g_assert_no_error (error);
  g_assert_cmpstr (focused, ==, "A");
  g_assert_cmpstr (f->asked, ==, "personal>A 30-desktop.policy:9");
  assert_where (f, "input-keyboard", "A");

  /* Cancelled while the question is open: the prompt is cancelled too. */
  f->answer = -1;
  g_clear_pointer (&f->asked, g_free);
  g_free (fake_ops_take_calls (f->fake));
  dhf_device_engine_switch_async (f->engine, "B", "personal", NULL, 0, cancellable, on_result,
                                  &result);
  while (f->asked == NULL)
    g_main_context_iteration (NULL, TRUE);
  g_assert_false (g_cancellable_is_cancelled (f->ask_cancellable));
  g_cancellable_cancel (cancellable);
  while (result == NULL)
    g_main_context_iteration (NULL, TRUE);
  g_clear_pointer (&focused, g_free);
  focused = dhf_device_engine_switch_finish (f->engine, result, &error);
  g_assert_error (error, DHF_ERROR, DHF_ERROR_CANCELLED);
  g_assert_null (focused);
  g_assert_true (g_cancellable_is_cancelled (f->ask_cancellable));
  wait_idle (f);
  assert_calls (f, "");
  g_assert_cmpstr (dhf_device_engine_get_focused (f->engine), ==, "A");
}

/* --- next / previous --------------------------------------------------- */

static void
cycle_domains (Fixture *f)
{
  add_rule (f, FALSE, DHF_POLICY_KIND_SWITCH, NULL, "dom0", "*", DHF_POLICY_ACTION_ALLOW, NULL,
            FALSE, "30-desktop.policy:7");
  define (f, "a", TRUE, TRUE, NULL);
  define (f, "b", TRUE, TRUE, NULL);
  define (f, "c", TRUE, TRUE, NULL);
  define (f, "off", FALSE, TRUE, NULL);
  define (f, "svc", TRUE, FALSE, NULL);
  /* Ordered first: c, then a; the rest by name. */
  f->order[0] = "c";
  f->order[1] = "off";
  f->order[2] = "a";
}

static void
test_cycle (Fixture *f, gconstpointer data)
{
  cycle_domains (f);
  start_engine (f);
  assert_cycle (f, "c a b");
  /* dom0 is not in the cycle: @next is the first, @previous the last. */
  switch_ok (f, "@next", "c");
  switch_ok (f, "@next", "a");
  switch_ok (f, "@next", "b");
  switch_ok (f, "@next", "c");
  switch_ok (f, "@previous", "b");
  switch_ok (f, "dom0", "dom0");
  switch_ok (f, "@previous", "b");

  /* A paused one leaves the cycle. */
  set_state (f, "a", TRUE, FALSE);
  wait_idle (f);
  assert_cycle (f, "c b");
  switch_ok (f, "@next", "c");

  /* No running environment: nothing to switch to. */
  set_state (f, "a", FALSE, FALSE);
  set_state (f, "b", FALSE, FALSE);
  set_state (f, "c", FALSE, FALSE);
  wait_idle (f);
  g_assert_cmpstr (dhf_device_engine_get_focused (f->engine), ==, "dom0");
  assert_cycle (f, "");
  switch_fails (f, "@next", "dom0", DHF_ERROR_INVALID_STATE, "no environment is running");
  switch_fails (f, "@previous", "dom0", DHF_ERROR_INVALID_STATE, "no environment is running");
}

static void
test_cycle_dom0 (Fixture *f, gconstpointer data)
{
  cycle_domains (f);
  f->config.cycle_dom0 = TRUE;
  start_engine (f);
  assert_cycle (f, "dom0 c a b");
  switch_ok (f, "@next", "c");
  switch_ok (f, "@previous", "dom0");
  switch_ok (f, "@previous", "b");
  switch_ok (f, "@next", "dom0");
}

/* --- pins -------------------------------------------------------------- */

static GPtrArray *
wishes (DhfManifestDevice *first, ...)
{
  GPtrArray *array = g_ptr_array_new_with_free_func ((GDestroyNotify) wish_free);
  va_list args;

  va_start (args, first);
  for (DhfManifestDevice *wish = first; wish != NULL; wish = va_arg (args, DhfManifestDevice *))
    g_ptr_array_add (array, wish);
  va_end (args);
  return array;
}

static void
test_pin_manifest (Fixture *f, gconstpointer data)
{
  g_autofree gchar *problem = NULL;

  add_rule (f, FALSE, DHF_POLICY_KIND_DEVICE, "usb:046d:c52b", "dom0", "corp",
            DHF_POLICY_ACTION_ALLOW, NULL, FALSE, "40-usb.policy:1");
  add_rule (f, FALSE, DHF_POLICY_KIND_DEVICE, "usb:*", "dom0", "lab", DHF_POLICY_ACTION_ALLOW, NULL,
            FALSE, "40-usb.policy:2");
  add_device (f, usb_device ("1-2", 0x046d, 0xc52b));
  add_device (f, usb_device ("1-3", 0x1234, 0x5678));
  /* Shut off: the pin goes into its definition only. */
  define (f, "corp", FALSE, FALSE,
          wishes (usb_wish (0x046d, 0xc52b, DHF_DEVICE_MODE_PINNED), NULL));
  start_engine (f);
  assert_calls (f, "list corp; attach corp usb-1-2 config");
  assert_status (f, "usb-1-2", "corp", DHF_DEVICE_MODE_PINNED, "corp", "manifest");
  assert_status (f, "usb-1-3", "dom0", DHF_DEVICE_MODE_DOM0, NULL, "none");
  g_assert_true (fake_ops_holds (f->fake, "corp", "usb-1-2", DHF_DEVICE_SCOPE_CONFIG));

  /* It starts with it; nothing to attach, only its weight. It is read
   * first: it might have started before its definition got the device. */
  set_state (f, "corp", TRUE, TRUE);
  wait_idle (f);
  assert_calls (f, "list corp; list-config corp; weight corp 256");
  g_assert_true (
      fake_ops_holds (f->fake, "corp", "usb-1-2", DHF_DEVICE_SCOPE_LIVE | DHF_DEVICE_SCOPE_CONFIG));

  /* A running domain gets its pin live and in its definition. A second
   * manifest pin of the same device: the holder keeps it. */
  define (f, "lab", TRUE, FALSE,
          wishes (usb_wish (0x1234, 0x5678, DHF_DEVICE_MODE_PINNED),
                  usb_wish (0x046d, 0xc52b, DHF_DEVICE_MODE_PINNED), NULL));
  wait_idle (f);
  /* A domain that appears is read first: it may hold dhf's devices. */
  assert_calls (f, "list lab; list-config lab; attach lab usb-1-3 live|config; weight lab 256");
  assert_status (f, "usb-1-3", "lab", DHF_DEVICE_MODE_PINNED, "lab", "manifest");
  assert_status (f, "usb-1-2", "corp", DHF_DEVICE_MODE_PINNED, "corp", "manifest");
  problem = problem_of (f, "usb-1-2");
  g_assert_cmpstr (problem, ==, "also pinned to lab (manifest); corp keeps it");

  /* A pinned device stays while its domain is shut off. */
  set_state (f, "corp", FALSE, FALSE);
  wait_idle (f);
  assert_calls (f, "");
  assert_status (f, "usb-1-2", "corp", DHF_DEVICE_MODE_PINNED, "corp", "manifest");

  /* Once it is gone, the device is free for the other pin. */
  undefine (f, "corp");
  wait_idle (f);
  assert_calls (f, "attach lab usb-1-2 live|config");
  assert_status (f, "usb-1-2", "lab", DHF_DEVICE_MODE_PINNED, "lab", "manifest");
}

static void
test_pin_policy (Fixture *f, gconstpointer data)
{
  desktop (f);
  add_rule (f, TRUE, DHF_POLICY_KIND_DEVICE, "usb:046d:c52b", "dom0", "corp",
            DHF_POLICY_ACTION_ALLOW, "pinned", TRUE, "40-usb.policy:5");
  /* A pattern target with mode=pinned is no policy pin. */
  add_rule (f, TRUE, DHF_POLICY_KIND_DEVICE, "usb:1234:*", "dom0", "*", DHF_POLICY_ACTION_ALLOW,
            "pinned", FALSE, "40-usb.policy:6");
  add_device (f, usb_device ("1-2", 0x046d, 0xc52b));
  add_device (f, usb_device ("1-3", 0x1234, 0x5678));
  define (f, "corp", TRUE, FALSE, NULL);
  start_engine (f);
  assert_calls (f, "list A; list-config A; list B; list-config B; list corp; list-config corp; "
                   "attach corp usb-1-2 live|config; weight A 256; weight B 256; weight corp 256");
  assert_status (f, "usb-1-2", "corp", DHF_DEVICE_MODE_PINNED, "corp", "policy 40-usb.policy:5");
  assert_status (f, "usb-1-3", "dom0", DHF_DEVICE_MODE_DOM0, NULL, "none");

  /* A switch leaves it alone. */
  switch_ok (f, "B", "B");
  assert_calls (f, "attach B input-keyboard live|config; attach B input-mouse live|config; "
                   "weight B 1024");
  assert_where (f, "usb-1-2", "corp");
}

static void
test_pin_admin (Fixture *f, gconstpointer data)
{
  g_autoptr (GError) error = NULL;

  desktop (f);
  define (f, "corp", TRUE, FALSE, NULL);
  add_rule (f, TRUE, DHF_POLICY_KIND_DEVICE, "input:mouse", "dom0", "corp", DHF_POLICY_ACTION_DENY,
            NULL, FALSE, "05-lock.policy:9");
  add_rule (f, TRUE, DHF_POLICY_KIND_DEVICE, "usb:*", "dom0", "corp", DHF_POLICY_ACTION_ASK, NULL,
            FALSE, "05-lock.policy:10");
  add_device (f, usb_device ("1-2", 0x046d, 0xc52b));
  start_engine (f);
  switch_ok (f, "A", "A");
  g_free (fake_ops_take_calls (f->fake));

  g_assert_true (assign (f, "input-keyboard", "corp", &error));
  g_assert_no_error (error);
  assert_calls (f, "detach A input-keyboard live|config; attach corp input-keyboard live|config");
  assert_status (f, "input-keyboard", "corp", DHF_DEVICE_MODE_PINNED, "corp", "admin");

  /* A switch does not move a pinned device. */
  switch_ok (f, "B", "B");
  assert_calls (f, "detach A input-mouse live|config; attach B input-mouse live|config; "
                   "weight B 1024; weight A 256");
  assert_where (f, "input-keyboard", "corp");

  /* Assigning it to where it is pinned again is no change. */
  g_assert_true (assign (f, "input-keyboard", "corp", &error));
  g_assert_no_error (error);
  assert_calls (f, "");

  /* Refusals: the policy, unknown names. */
  g_assert_false (assign (f, "input-mouse", "corp", &error));
  g_assert_error (error, DHF_ERROR, DHF_ERROR_NOT_AUTHORIZED);
  g_assert_nonnull (strstr (error->message, "denied by 05-lock.policy:9"));
  g_clear_error (&error);
  g_assert_false (assign (f, "usb-1-2", "corp", &error));
  g_assert_error (error, DHF_ERROR, DHF_ERROR_NOT_AUTHORIZED);
  g_assert_nonnull (strstr (error->message, "05-lock.policy:10"));
  g_clear_error (&error);
  g_assert_false (assign (f, "usb-9-9", "corp", &error));
  g_assert_error (error, DHF_ERROR, DHF_ERROR_NOT_FOUND);
  g_clear_error (&error);
  g_assert_false (assign (f, "input-mouse", "nowhere", &error));
  g_assert_error (error, DHF_ERROR, DHF_ERROR_NOT_FOUND);
  g_clear_error (&error);
  g_assert_false (assign (f, "input-mouse", "dom0", &error));
  g_assert_error (error, DHF_ERROR, DHF_ERROR_INVALID_ARGS);
  g_clear_error (&error);
  assert_calls (f, "");

  /* Released, it follows the focus again. */
  g_assert_true (release (f, "input-keyboard", &error));
  g_assert_no_error (error);
  assert_calls (f, "detach corp input-keyboard live|config; attach B input-keyboard live|config");
  assert_status (f, "input-keyboard", "B", DHF_DEVICE_MODE_FOLLOW_FOCUS, NULL, "focus");
  g_assert_false (release (f, "input-keyboard", &error));
  g_assert_error (error, DHF_ERROR, DHF_ERROR_NOT_FOUND);
  g_clear_error (&error);

  /* A failed attach leaves the device where it was, without a pin. */
  fake_ops_fail_matching (f->fake, "attach corp *", DHF_ERROR_HYPERVISOR, "no free USB port");
  g_assert_false (assign (f, "input-keyboard", "corp", &error));
  g_assert_error (error, DHF_ERROR, DHF_ERROR_HYPERVISOR);
  g_assert_cmpstr (error->message, ==,
                   "assigning input-keyboard to corp: attaching input-keyboard to corp: no free "
                   "USB port");
  g_clear_error (&error);
  assert_calls (f, "detach B input-keyboard live|config; "
                   "attach corp input-keyboard live|config -> failed; "
                   "attach B input-keyboard live|config; list corp; list-config corp");
  assert_status (f, "input-keyboard", "B", DHF_DEVICE_MODE_FOLLOW_FOCUS, NULL, "focus");
  assert_where (f, "input-keyboard", "B");
}

static void
test_pin_conflict (Fixture *f, gconstpointer data)
{
  g_autoptr (GError) error = NULL;

  desktop (f);
  add_rule (f, FALSE, DHF_POLICY_KIND_DEVICE, "usb:*", "dom0", "*", DHF_POLICY_ACTION_ALLOW, NULL,
            FALSE, "40-usb.policy:1");
  add_device (f, usb_device ("1-2", 0x046d, 0xc52b));
  define (f, "corp", TRUE, FALSE, wishes (usb_wish (0x046d, 0xc52b, DHF_DEVICE_MODE_PINNED), NULL));
  define (f, "lab", TRUE, FALSE, NULL);
  start_engine (f);
  assert_where (f, "usb-1-2", "corp");

  g_assert_true (assign (f, "input-keyboard", "corp", &error));
  g_assert_no_error (error);
  g_free (fake_ops_take_calls (f->fake));

  g_assert_false (assign (f, "input-keyboard", "lab", &error));
  g_assert_error (error, DHF_ERROR, DHF_ERROR_EXISTS);
  g_assert_cmpstr (error->message, ==, "input-keyboard is pinned to corp (admin)");
  g_clear_error (&error);
  g_assert_false (assign (f, "usb-1-2", "lab", &error));
  g_assert_error (error, DHF_ERROR, DHF_ERROR_EXISTS);
  g_assert_cmpstr (error->message, ==, "usb-1-2 is pinned to corp (manifest)");
  g_clear_error (&error);
  assert_calls (f, "");
  assert_where (f, "usb-1-2", "corp");
}

static void
test_pci_group (Fixture *f, gconstpointer data)
{
  g_autoptr (GError) error = NULL;
  g_autofree gchar *problem = NULL;

  add_rule (f, FALSE, DHF_POLICY_KIND_DEVICE, "pci:*", "dom0", "media", DHF_POLICY_ACTION_ALLOW,
            NULL, FALSE, "50-pci.policy:1");
  add_device (f, pci_device ("0000:00:1c.0", 7, "pcieport", TRUE));
  add_device (f, pci_device ("0000:01:00.0", 7, "snd_hda_intel", FALSE));
  add_device (f, pci_device ("0000:01:00.1", 7, "xhci_hcd", FALSE));
  add_device (f, pci_device ("0000:02:00.0", -1, "e1000e", FALSE));
  define (f, "media", TRUE, FALSE, wishes (pci_wish ("0000:01:00.0"), NULL));
  start_engine (f);
  /* The manifest pin is held back by the other function of the group
   * (the bridge does not count). */
  assert_calls (f, "list media; list-config media; weight media 256");
  assert_status (f, "pci-0000:01:00.0", "dom0", DHF_DEVICE_MODE_PINNED, "media", "manifest");
  problem = problem_of (f, "pci-0000:01:00.0");
  g_assert_nonnull (strstr (problem, "IOMMU group 7"));
  g_assert_nonnull (strstr (problem, "pci-0000:01:00.1"));
  g_assert_null (strstr (problem, "pci-0000:00:1c.0"));

  g_assert_false (assign (f, "pci-0000:01:00.0", "media", &error));
  g_assert_error (error, DHF_ERROR, DHF_ERROR_EXISTS);
  g_assert_nonnull (strstr (error->message, "IOMMU group 7"));
  g_assert_nonnull (strstr (error->message, "pci-0000:01:00.1"));
  g_assert_null (strstr (error->message, "pci-0000:00:1c.0"));
  g_clear_error (&error);
  g_assert_false (assign (f, "pci-0000:00:1c.0", "media", &error));
  g_assert_error (error, DHF_ERROR, DHF_ERROR_INVALID_ARGS);
  g_clear_error (&error);
  g_assert_false (assign (f, "pci-0000:02:00.0", "media", &error));
  g_assert_error (error, DHF_ERROR, DHF_ERROR_NOT_SUPPORTED);
  g_clear_error (&error);
  assert_calls (f, "");

  /* Its sibling loses its host driver: the group may go. */
  g_ptr_array_remove_index (f->devices, 2);
  add_device (f, pci_device ("0000:01:00.1", 7, NULL, FALSE));
  send_inventory (f);
  wait_idle (f);
  assert_calls (f, "attach media pci-0000_01_00_0 live|config");
  assert_status (f, "pci-0000:01:00.0", "media", DHF_DEVICE_MODE_PINNED, "media", "manifest");
  g_clear_pointer (&problem, g_free);
  problem = problem_of (f, "pci-0000:01:00.0");
  g_assert_null (problem);
  g_assert_true (assign (f, "pci-0000:01:00.0", "media", &error));
  g_assert_no_error (error);
  assert_status (f, "pci-0000:01:00.0", "media", DHF_DEVICE_MODE_PINNED, "media", "admin");
}

/* A device whose attach fails stays, with a problem; the others go on. */
static void
test_reconcile_failure (Fixture *f, gconstpointer data)
{
  g_autofree gchar *problem = NULL;

  add_rule (f, FALSE, DHF_POLICY_KIND_DEVICE, "usb:*", "dom0", "corp", DHF_POLICY_ACTION_ALLOW,
            NULL, FALSE, "40-usb.policy:1");
  add_device (f, usb_device ("1-2", 0x046d, 0xc52b));
  add_device (f, usb_device ("1-3", 0x1234, 0x5678));
  define (f, "corp", TRUE, FALSE,
          wishes (usb_wish (0x046d, 0xc52b, DHF_DEVICE_MODE_PINNED),
                  usb_wish (0x1234, 0x5678, DHF_DEVICE_MODE_PINNED), NULL));
  fake_ops_fail_matching (f->fake, "attach corp usb-1-2 *", DHF_ERROR_HYPERVISOR,
                          "no free USB port");
  start_engine (f);
  expect_warning ("attaching usb-1-2 to corp: no free USB port");
  assert_calls (f, "list corp; list-config corp; attach corp usb-1-2 live|config -> failed; "
                   "list corp; list-config corp; attach corp usb-1-3 live|config; "
                   "weight corp 256");
  assert_status (f, "usb-1-2", "dom0", DHF_DEVICE_MODE_PINNED, "corp", "manifest");
  assert_status (f, "usb-1-3", "corp", DHF_DEVICE_MODE_PINNED, "corp", "manifest");
  problem = problem_of (f, "usb-1-2");
  g_assert_cmpstr (problem, ==, "attaching usb-1-2 to corp: no free USB port");

  fake_ops_clear_failures (f->fake);
  dhf_device_engine_policy_changed (f->engine);
  wait_idle (f);
  assert_calls (f, "attach corp usb-1-2 live|config");
  g_clear_pointer (&problem, g_free);
  problem = problem_of (f, "usb-1-2");
  g_assert_null (problem);
}

/* --- fallback ---------------------------------------------------------- */

static void
test_fallback_paused (Fixture *f, gconstpointer data)
{
  g_autofree gchar *log = NULL;

  desktop (f);
  start_engine (f);
  switch_ok (f, "A", "A");
  g_free (fake_ops_take_calls (f->fake));

  set_state (f, "A", TRUE, FALSE);
  wait_idle (f);
  /* Paused, it is still active: live detaches, and its weight. */
  assert_calls (f, "detach A input-keyboard live|config; detach A input-mouse live|config; "
                   "weight A 256");
  g_assert_cmpstr (dhf_device_engine_get_focused (f->engine), ==, "dom0");
  assert_where (f, "input-keyboard", "dom0");
  log = joined (f->focus_log);
  g_assert_cmpstr (log, ==, "A<-dom0 dom0<-A");
  assert_history (f, "A");
}

static void
test_fallback_shutoff (Fixture *f, gconstpointer data)
{
  desktop (f);
  start_engine (f);
  switch_ok (f, "A", "A");
  g_free (fake_ops_take_calls (f->fake));

  set_state (f, "A", FALSE, FALSE);
  wait_idle (f);
  /* Its live devices are gone with it: only its definition changes. */
  assert_calls (f, "detach A input-keyboard config; detach A input-mouse config");
  g_assert_cmpstr (dhf_device_engine_get_focused (f->engine), ==, "dom0");
  assert_where (f, "input-keyboard", "dom0");
  assert_where (f, "input-mouse", "dom0");
  assert_status (f, "input-keyboard", "dom0", DHF_DEVICE_MODE_FOLLOW_FOCUS, NULL, "focus");

  /* It starts again without them (read back: it could have started before
   * the detaches ran) and gets its normal weight. */
  set_state (f, "A", TRUE, TRUE);
  wait_idle (f);
  assert_calls (f, "list A; list-config A; weight A 256");
  assert_where (f, "input-keyboard", "dom0");
}

static void
test_fallback_removed (Fixture *f, gconstpointer data)
{
  desktop (f);
  start_engine (f);
  switch_ok (f, "A", "A");
  g_free (fake_ops_take_calls (f->fake));

  undefine (f, "A");
  wait_idle (f);
  assert_calls (f, "");
  g_assert_cmpstr (dhf_device_engine_get_focused (f->engine), ==, "dom0");
  assert_status (f, "input-keyboard", "dom0", DHF_DEVICE_MODE_FOLLOW_FOCUS, NULL, "focus");
  /* Nothing to go back to. */
  assert_history (f, "");
}

static void
test_fallback_previous (Fixture *f, gconstpointer data)
{
  f->config.fallback = "@previous";
  desktop (f);
  define (f, "C", TRUE, TRUE, NULL);
  start_engine (f);
  switch_ok (f, "C", "C");
  switch_ok (f, "B", "B");
  switch_ok (f, "A", "A");
  assert_history (f, "B C dom0");
  /* B went away meanwhile: the most recent that runs is C. */
  set_state (f, "B", TRUE, FALSE);
  wait_idle (f);
  g_free (fake_ops_take_calls (f->fake));

  set_state (f, "A", FALSE, FALSE);
  wait_idle (f);
  assert_calls (f, "detach A input-keyboard config; detach A input-mouse config; "
                   "attach C input-keyboard live|config; attach C input-mouse live|config; "
                   "weight C 1024");
  g_assert_cmpstr (dhf_device_engine_get_focused (f->engine), ==, "C");
  assert_history (f, "A B dom0");
  assert_where (f, "input-keyboard", "C");
}

static void
test_fallback_name (Fixture *f, gconstpointer data)
{
  f->config.fallback = "B";
  desktop (f);
  define (f, "C", TRUE, TRUE, NULL);
  start_engine (f);
  switch_ok (f, "A", "A");
  g_free (fake_ops_take_calls (f->fake));

  set_state (f, "A", TRUE, FALSE);
  wait_idle (f);
  assert_calls (f, "detach A input-keyboard live|config; detach A input-mouse live|config; "
                   "attach B input-keyboard live|config; attach B input-mouse live|config; "
                   "weight B 1024; weight A 256");
  g_assert_cmpstr (dhf_device_engine_get_focused (f->engine), ==, "B");

  /* The named one is not running: dom0. */
  switch_ok (f, "C", "C");
  set_state (f, "B", FALSE, FALSE);
  wait_idle (f);
  g_free (fake_ops_take_calls (f->fake));
  set_state (f, "C", TRUE, FALSE);
  wait_idle (f);
  g_assert_cmpstr (dhf_device_engine_get_focused (f->engine), ==, "dom0");
  assert_calls (f, "detach C input-keyboard live|config; detach C input-mouse live|config; "
                   "weight C 256");
}

/* --- restart ----------------------------------------------------------- */

static void
test_restart (Fixture *f, gconstpointer data)
{
  g_autoptr (GError) error = NULL;
  g_autofree gchar *text = NULL;
  g_autofree gchar *calls = NULL;
  struct stat st;

  desktop (f);
  add_rule (f, FALSE, DHF_POLICY_KIND_DEVICE, "usb:*", "dom0", "corp", DHF_POLICY_ACTION_ALLOW,
            NULL, FALSE, "40-usb.policy:1");
  add_device (f, usb_device ("1-2", 0x046d, 0xc52b));
  define (f, "corp", TRUE, FALSE, NULL);
  start_engine (f);
  switch_ok (f, "A", "A");
  switch_ok (f, "B", "B");
  g_assert_true (assign (f, "usb-1-2", "corp", &error));
  g_assert_no_error (error);
  /* Gone, as when dhfd stops: the state is on disk. */
  stop_engine (f);
  g_assert_true (g_file_get_contents (f->state_file, &text, NULL, NULL));
  g_assert_nonnull (strstr (text, "\"focused\":\"B\""));
  g_assert_nonnull (strstr (text, "\"device\":\"usb-1-2\""));
  g_assert_cmpint (g_stat (f->state_file, &st), ==, 0);
  g_assert_cmpint (st.st_mode & 0777, ==, 0600);
  {
    g_autofree gchar *dir = g_path_get_dirname (f->state_file);

    g_assert_cmpint (g_stat (dir, &st), ==, 0);
    g_assert_cmpint (st.st_mode & 0777, ==, 0700);
  }

  /* dhfd starts again; the domains kept the devices. */
  g_free (fake_ops_take_calls (f->fake));
  g_ptr_array_set_size (f->focus_log, 0);
  start_engine (f);
  calls = fake_ops_take_calls (f->fake);
  g_assert_null (strstr (calls, "attach"));
  g_assert_null (strstr (calls, "detach"));
  /* The focused domain's weight first. */
  g_assert_cmpstr (calls, ==,
                   "list A; list-config A; list B; list-config B; list corp; list-config corp; "
                   "weight B 1024; weight A 256; weight corp 256");
  g_assert_cmpstr (dhf_device_engine_get_focused (f->engine), ==, "B");
  assert_history (f, "A dom0");
  assert_status (f, "usb-1-2", "corp", DHF_DEVICE_MODE_PINNED, "corp", "admin");
  assert_status (f, "input-keyboard", "B", DHF_DEVICE_MODE_FOLLOW_FOCUS, NULL, "focus");
  g_assert_cmpuint (f->focus_log->len, ==, 1);
  g_assert_cmpstr (g_ptr_array_index (f->focus_log, 0), ==, "B<-dom0");

  /* The admin pin holds across the restart: release works. */
  g_assert_true (release (f, "usb-1-2", &error));
  g_assert_no_error (error);
  assert_calls (f, "detach corp usb-1-2 live|config");
  stop_engine (f);
  g_clear_pointer (&text, g_free);
  g_assert_true (g_file_get_contents (f->state_file, &text, NULL, NULL));
  g_assert_null (strstr (text, "usb-1-2"));
}

/* The saved focus no longer runs at the restart: the fallback. */
static void
test_restart_focus_gone (Fixture *f, gconstpointer data)
{
  desktop (f);
  start_engine (f);
  switch_ok (f, "A", "A");
  stop_engine (f);

  set_state (f, "A", FALSE, FALSE);
  g_free (fake_ops_take_calls (f->fake));
  start_engine (f);
  g_assert_cmpstr (dhf_device_engine_get_focused (f->engine), ==, "dom0");
  assert_history (f, "A");
  /* The devices A kept in its definition come back. */
  assert_calls (f, "list A; list B; list-config B; detach A input-keyboard config; "
                   "detach A input-mouse config; weight B 256");
}

static void
test_restart_corrupt (Fixture *f, gconstpointer data)
{
  g_autofree gchar *aside = g_strdup_printf ("%s.corrupt", f->state_file);
  g_autofree gchar *dir = g_path_get_dirname (f->state_file);
  g_autofree gchar *kept = NULL;

  desktop (f);
  dhf_test_write_file (dir, "devices.json", "{\"version\": 1, \"focused\": \"A\", ");
  start_engine (f);
  expect_warning ("moved to");
  g_assert_cmpstr (dhf_device_engine_get_focused (f->engine), ==, "dom0");
  g_assert_false (g_file_test (f->state_file, G_FILE_TEST_EXISTS));
  g_assert_true (g_file_get_contents (aside, &kept, NULL, NULL));
  g_assert_cmpstr (kept, ==, "{\"version\": 1, \"focused\": \"A\", ");
  /* And it works from scratch. */
  switch_ok (f, "A", "A");
}

/* --- policy ------------------------------------------------------------ */

static void
test_policy_changed (Fixture *f, gconstpointer data)
{
  desktop (f);
  start_engine (f);
  switch_ok (f, "A", "A");
  g_free (fake_ops_take_calls (f->fake));
  g_ptr_array_set_size (f->device_log, 0);

  add_rule (f, TRUE, DHF_POLICY_KIND_DEVICE, "input:keyboard", "dom0", "*", DHF_POLICY_ACTION_DENY,
            NULL, FALSE, "01-lock.policy:1");
  dhf_device_engine_policy_changed (f->engine);
  wait_idle (f);
  assert_calls (f, "detach A input-keyboard live|config");
  assert_status (f, "input-keyboard", "dom0", DHF_DEVICE_MODE_DOM0, NULL, "none");
  assert_status (f, "input-mouse", "A", DHF_DEVICE_MODE_FOLLOW_FOCUS, NULL, "focus");
  g_assert_cmpuint (f->device_log->len, >=, 1);
  g_assert_cmpstr (g_ptr_array_index (f->device_log, f->device_log->len - 1), ==, "input-keyboard");

  /* A manifest's wish counts when the rule gives no mode. */
  g_array_remove_index (f->rules, 0);
  g_array_remove_index (f->rules, 0);
  add_rule (f, TRUE, DHF_POLICY_KIND_DEVICE, "input:*", "dom0", "*", DHF_POLICY_ACTION_ALLOW, NULL,
            FALSE, "30-desktop.policy:3");
  dhf_device_engine_policy_changed (f->engine);
  wait_idle (f);
  assert_calls (f, "detach A input-mouse live|config");
  g_hash_table_remove (f->domains, "B");
  {
    TestDomain *b = g_new0 (TestDomain, 1);

    b->active = b->running = b->environment = TRUE;
    b->wishes = wishes (input_wish ("keyboard", DHF_DEVICE_MODE_FOLLOW_FOCUS), NULL);
    g_hash_table_insert (f->domains, g_strdup ("B"), b);
    report_domain (f, "B");
  }
  wait_idle (f);
  switch_ok (f, "B", "B");
  assert_calls (f, "attach B input-keyboard live|config; weight B 1024; weight A 256");
  assert_status (f, "input-mouse", "dom0", DHF_DEVICE_MODE_DOM0, NULL, "none");
}

/* Unplugged devices are shown while something holds them. */
static void
test_unplug (Fixture *f, gconstpointer data)
{
  g_autoptr (DhfDeviceStatus) status = NULL;
  g_autoptr (GPtrArray) list = NULL;

  desktop (f);
  add_rule (f, FALSE, DHF_POLICY_KIND_DEVICE, "usb:*", "dom0", "corp", DHF_POLICY_ACTION_ALLOW,
            NULL, FALSE, "40-usb.policy:1");
  add_device (f, usb_device ("1-2", 0x046d, 0xc52b));
  add_device (f, usb_device ("1-3", 0x1234, 0x5678));
  define (f, "corp", TRUE, FALSE, wishes (usb_wish (0x046d, 0xc52b, DHF_DEVICE_MODE_PINNED), NULL));
  start_engine (f);
  list = dhf_device_engine_list (f->engine);
  g_assert_cmpuint (list->len, ==, 4);
  g_assert_cmpstr (((DhfDeviceStatus *) g_ptr_array_index (list, 0))->device->id, ==,
                   "input-keyboard");
  g_assert_cmpstr (((DhfDeviceStatus *) g_ptr_array_index (list, 3))->device->id, ==, "usb-1-3");
  g_free (fake_ops_take_calls (f->fake));
  g_ptr_array_set_size (f->device_log, 0);

  g_ptr_array_set_size (f->devices, 2);
  send_inventory (f);
  wait_idle (f);
  assert_calls (f, "");
  status = dhf_device_engine_lookup (f->engine, "usb-1-2");
  g_assert_nonnull (status);
  g_assert_false (status->present);
  g_assert_cmpstr (status->owner, ==, "corp");
  g_assert_null (dhf_device_engine_lookup (f->engine, "usb-1-3"));
  g_assert_cmpuint (f->device_log->len, ==, 2);
}

/* --- review regressions: fallbacks end --------------------------------- */

/* The fallback's target cannot take the devices: the engine tries dom0
 * once and stops there (it used to queue the same fallback forever). */
static void
test_fallback_target_fails (Fixture *f, gconstpointer data)
{
  g_autoptr (GError) error = NULL;
  g_autofree gchar *log = NULL;
  g_autofree gchar *focused = NULL;

  f->config.fallback = "B";
  desktop (f);
  start_engine (f);
  switch_ok (f, "A", "A");
  g_free (fake_ops_take_calls (f->fake));

  fake_ops_fail_matching (f->fake, "attach B *", DHF_ERROR_HYPERVISOR, "no free USB port");
  set_state (f, "A", TRUE, FALSE);
  wait_idle_bounded (f, 20);
  /* A no longer runs: its devices come home (the reconciliation), B
   * cannot take them (the fallback, a unit each), so dom0 gets the focus. */
  assert_calls (f, "detach A input-keyboard live|config; detach A input-mouse live|config; "
                   "attach B input-keyboard live|config -> failed; list B; list-config B; "
                   "attach B input-mouse live|config -> failed; list B; list-config B; "
                   "weight A 256");
  expect_warning ("falling back to B: attaching input-keyboard to B: no free USB port");
  expect_warning ("falling back to B: attaching input-mouse to B: no free USB port");
  g_assert_cmpstr (dhf_device_engine_get_focused (f->engine), ==, "dom0");
  log = joined (f->focus_log);
  g_assert_cmpstr (log, ==, "A<-dom0 dom0<-A");
  assert_where (f, "input-keyboard", "dom0");
  assert_status (f, "input-keyboard", "dom0", DHF_DEVICE_MODE_FOLLOW_FOCUS, NULL, "focus");

  /* Settled: inputs that do not concern B try nothing again. */
  send_inventory (f);
  dhf_device_engine_domain_changed (f->engine, &(DhfEngineDomain){ "A", TRUE, FALSE, TRUE, NULL });
  wait_idle_bounded (f, 0);
  /* Asked for explicitly, B is tried again (and undone). */
  focused = try_switch (f, "B", "dom0", NULL, 0, &error);
  g_assert_error (error, DHF_ERROR, DHF_ERROR_HYPERVISOR);
  g_assert_null (focused);
  g_free (fake_ops_take_calls (f->fake));
  fake_ops_clear_failures (f->fake);
  switch_ok (f, "B", "B");
  assert_where (f, "input-keyboard", "B");
}

/* The old focus cannot let go of the devices (a paused guest that does
 * not answer): the focus moves to the target anyway, and the devices
 * that stayed say why; nothing is retried until something changes. */
static void
test_fallback_old_focus_fails (Fixture *f, gconstpointer data)
{
  g_autofree gchar *problem = NULL;

  f->config.fallback = "B";
  desktop (f);
  start_engine (f);
  switch_ok (f, "A", "A");
  g_free (fake_ops_take_calls (f->fake));

  fake_ops_fail_matching (f->fake, "detach A input-keyboard *", DHF_ERROR_HYPERVISOR,
                          "the guest does not answer");
  set_state (f, "A", TRUE, FALSE);
  wait_idle_bounded (f, 20);
  expect_warning ("detaching input-keyboard from A: the guest does not answer");
  expect_warning ("falling back to B: detaching input-keyboard from A: the guest does not answer");
  assert_calls (f, "detach A input-keyboard live|config -> failed; list A; list-config A; "
                   "detach A input-mouse live|config; "
                   "detach A input-keyboard live|config -> failed; list A; list-config A; "
                   "attach B input-mouse live|config; weight B 1024; weight A 256");
  g_assert_cmpstr (dhf_device_engine_get_focused (f->engine), ==, "B");
  assert_where (f, "input-keyboard", "A");
  assert_where (f, "input-mouse", "B");
  problem = problem_of (f, "input-keyboard");
  g_assert_cmpstr (problem, ==,
                   "falling back to B: detaching input-keyboard from A: the guest does not "
                   "answer");

  /* A answers again (it runs): the keyboard is tried once more. */
  fake_ops_clear_failures (f->fake);
  set_state (f, "A", TRUE, TRUE);
  wait_idle_bounded (f, 10);
  assert_calls (f, "detach A input-keyboard live|config; attach B input-keyboard live|config");
  g_assert_cmpstr (dhf_device_engine_get_focused (f->engine), ==, "B");
}

/* Fallback to dom0 where the old focus' weight cannot be set: the focus
 * moves, the weight is tried once (it used to undo the fallback and
 * queue it again, forever). */
static void
test_fallback_weight_fails (Fixture *f, gconstpointer data)
{
  desktop (f);
  start_engine (f);
  switch_ok (f, "A", "A");
  g_free (fake_ops_take_calls (f->fake));

  fake_ops_fail_matching (f->fake, "weight A 256", DHF_ERROR_HYPERVISOR,
                          "cgroup cpu controller not mounted");
  set_state (f, "A", TRUE, FALSE);
  wait_idle_bounded (f, 10);
  expect_warning ("setting the CPU weight of A to 256: cgroup cpu controller not mounted");
  assert_calls (f, "detach A input-keyboard live|config; detach A input-mouse live|config; "
                   "weight A 256 -> failed");
  g_assert_cmpstr (dhf_device_engine_get_focused (f->engine), ==, "dom0");
  dhf_device_engine_policy_changed (f->engine);
  wait_idle_bounded (f, 1);
  expect_warning ("setting the CPU weight of A to 256");
  assert_calls (f, "weight A 256 -> failed");
}

/* --- review regressions: failed moves are not retried on every input --- */

static void
test_no_retry_without_change (Fixture *f, gconstpointer data)
{
  g_autofree gchar *problem = NULL;

  add_rule (f, FALSE, DHF_POLICY_KIND_DEVICE, "pci:*", "dom0", "media", DHF_POLICY_ACTION_ALLOW,
            NULL, FALSE, "50-pci.policy:1");
  add_device (f, pci_device ("0000:01:00.0", 7, "snd_hda_intel", FALSE));
  define (f, "media", TRUE, FALSE, wishes (pci_wish ("0000:01:00.0"), NULL));
  fake_ops_fail_matching (f->fake, "attach media *", DHF_ERROR_HYPERVISOR, "group not viable");
  start_engine (f);
  expect_warning ("attaching pci-0000:01:00.0 to media: group not viable");
  assert_calls (f, "list media; list-config media; attach media pci-0000_01_00_0 live|config -> "
                   "failed; list media; list-config media; weight media 256");
  problem = problem_of (f, "pci-0000:01:00.0");
  g_assert_cmpstr (problem, ==, "attaching pci-0000:01:00.0 to media: group not viable");

  /* The failed managed attach rebinds the host driver: uevents, rescans.
   * The same inventory, or the function's own driver flipping, retry
   * nothing. */
  for (guint i = 0; i < 5; i++)
    {
      send_inventory (f);
      wait_idle (f);
    }
  g_ptr_array_remove_index (f->devices, 0);
  add_device (f, pci_device ("0000:01:00.0", 7, "vfio-pci", FALSE));
  send_inventory (f);
  wait_idle (f);
  g_ptr_array_remove_index (f->devices, 0);
  add_device (f, pci_device ("0000:01:00.0", 7, "snd_hda_intel", FALSE));
  send_inventory (f);
  wait_idle (f);
  assert_calls (f, "");
  g_clear_pointer (&problem, g_free);
  problem = problem_of (f, "pci-0000:01:00.0");
  g_assert_nonnull (problem);

  /* The domain restarts: tried once more. */
  set_state (f, "media", FALSE, FALSE);
  set_state (f, "media", TRUE, TRUE);
  wait_idle (f);
  expect_warning ("group not viable");
  assert_calls (f, "attach media pci-0000_01_00_0 live|config -> failed; list media; "
                   "list-config media; weight media 256");

  /* Plugged out and in again: once more. Assign: once more. */
  g_ptr_array_set_size (f->devices, 0);
  send_inventory (f);
  add_device (f, pci_device ("0000:01:00.0", 7, "snd_hda_intel", FALSE));
  send_inventory (f);
  wait_idle (f);
  expect_warning ("group not viable");
  assert_calls (f, "attach media pci-0000_01_00_0 live|config -> failed; list media; "
                   "list-config media");
  fake_ops_clear_failures (f->fake);
  dhf_device_engine_policy_changed (f->engine);
  wait_idle (f);
  assert_calls (f, "attach media pci-0000_01_00_0 live|config");
  g_clear_pointer (&problem, g_free);
  problem = problem_of (f, "pci-0000:01:00.0");
  g_assert_null (problem);
}

/* --- review regressions: @focused device rules -------------------------- */

/* A decider that allows input devices (follow-focus) and a USB device
 * (no mode: the manifest's pin) to the focused domain only, as rules
 * with TARGET @focused do; the focus it uses is the engine's planning
 * focus, as dhfd's policy lookup does. */
static void
decide_at_focused (DhfPolicyKind kind, const gchar *subject, const gchar *source,
                   const gchar *target, DhfEngineVerdict *verdict, gpointer data)
{
  Fixture *f = data;
  const gchar *focused = dhf_device_engine_get_planning_focus (f->engine);

  verdict->action = DHF_POLICY_ACTION_DENY;
  if (kind == DHF_POLICY_KIND_SWITCH)
    verdict->action = DHF_POLICY_ACTION_ALLOW;
  else if (g_strcmp0 (target, focused) == 0 && g_str_has_prefix (subject, "input:"))
    {
      verdict->action = DHF_POLICY_ACTION_ALLOW;
      verdict->mode = g_strdup ("follow-focus");
      verdict->rule = g_strdup ("30-focused.policy:1");
    }
  else if (g_strcmp0 (target, focused) == 0 && g_str_has_prefix (subject, "usb:"))
    {
      verdict->action = DHF_POLICY_ACTION_ALLOW;
      verdict->rule = g_strdup ("30-focused.policy:2");
    }
}

static void
test_focused_rules (Fixture *f, gconstpointer data)
{
  add_device (f, input_device ("keyboard"));
  add_device (f, usb_device ("1-2", 0x046d, 0xc52b));
  define (f, "A", TRUE, TRUE, wishes (usb_wish (0x046d, 0xc52b, DHF_DEVICE_MODE_PINNED), NULL));
  define (f, "B", TRUE, TRUE, NULL);
  start_engine (f);
  dhf_device_engine_set_decider (f->engine, decide_at_focused, f);
  wait_idle (f);
  g_free (fake_ops_take_calls (f->fake));
  g_assert_cmpstr (dhf_device_engine_get_planning_focus (f->engine), ==, "dom0");

  /* The switch plans with A as the focus the rules see: the keyboard goes
   * with it, in the switch; the pin the rule now allows follows in the
   * reconciliation after it. */
  switch_ok (f, "A", "A");
  assert_calls (f, "attach A input-keyboard live|config; weight A 1024; "
                   "attach A usb-1-2 live|config");
  assert_status (f, "input-keyboard", "A", DHF_DEVICE_MODE_FOLLOW_FOCUS, NULL, "focus");
  assert_status (f, "usb-1-2", "A", DHF_DEVICE_MODE_PINNED, "A", "manifest");

  switch_ok (f, "B", "B");
  assert_calls (f, "detach A input-keyboard live|config; attach B input-keyboard live|config; "
                   "weight B 1024; detach A usb-1-2 live|config; weight A 256");
  assert_where (f, "input-keyboard", "B");
  assert_where (f, "usb-1-2", "dom0");
  g_assert_cmpstr (dhf_device_engine_get_planning_focus (f->engine), ==, "B");
}

/* --- review regressions: shutdown --------------------------------------- */

static gpointer
unblock_later (gpointer data)
{
  FakeOps *fake = data;

  fake_ops_wait_blocked (fake);
  /* Long enough that an engine that did not wait would be seen. */
  g_usleep (50 * 1000);
  fake_ops_unblock (fake);
  return NULL;
}

static void
test_shutdown (Fixture *f, gconstpointer data)
{
  g_autoptr (GAsyncResult) running = NULL;
  g_autoptr (GAsyncResult) queued = NULL;
  g_autoptr (GAsyncResult) asked = NULL;
  g_autoptr (GAsyncResult) after = NULL;
  g_autoptr (GError) error = NULL;
  g_autoptr (GThread) thread = NULL;
  g_autofree gchar *text = NULL;
  g_autofree gchar *focused = NULL;
  GWeakRef weak;

  desktop (f);
  add_rule (f, TRUE, DHF_POLICY_KIND_DEVICE, "usb:046d:c52b", "dom0", "corp",
            DHF_POLICY_ACTION_ALLOW, "pinned", TRUE, "40-usb.policy:5");
  add_rule (f, TRUE, DHF_POLICY_KIND_SWITCH, NULL, "personal", "*", DHF_POLICY_ACTION_ASK, NULL,
            FALSE, "30-desktop.policy:9");
  add_device (f, usb_device ("1-2", 0x046d, 0xc52b));
  define (f, "corp", TRUE, FALSE, NULL);
  define (f, "personal", TRUE, TRUE, NULL);
  f->with_asker = TRUE;
  f->answer = -1;
  start_engine (f);
  switch_ok (f, "B", "B");
  g_free (fake_ops_take_calls (f->fake));

  /* A switch whose first call is under way, a reconciliation and a
   * switch queued behind it, a question open. */
  fake_ops_block (f->fake);
  dhf_device_engine_switch_async (f->engine, "A", "dom0", NULL, 0, NULL, on_result, &running);
  while (g_main_context_iteration (NULL, FALSE))
    ;
  fake_ops_wait_blocked (f->fake);
  thread = g_thread_new ("unblock", unblock_later, f->fake);
  dhf_device_engine_policy_changed (f->engine);
  dhf_device_engine_switch_async (f->engine, "personal", "dom0", NULL, 0, NULL, on_result, &queued);
  dhf_device_engine_switch_async (f->engine, "A", "personal", NULL, 0, NULL, on_result, &asked);
  g_assert_cmpstr (f->asked, ==, "personal>A 30-desktop.policy:9");
  g_weak_ref_init (&weak, f->engine);

  dhf_device_engine_shutdown (f->engine);
  /* The call under way finished before it returned; nothing after it ran. */
  assert_calls (f, "detach B input-keyboard live|config");
  g_assert_true (g_cancellable_is_cancelled (f->ask_cancellable));
  while (running == NULL || queued == NULL || asked == NULL)
    g_main_context_iteration (NULL, TRUE);
  g_thread_join (g_steal_pointer (&thread));
  focused = dhf_device_engine_switch_finish (f->engine, running, &error);
  g_assert_error (error, DHF_ERROR, DHF_ERROR_CANCELLED);
  g_clear_error (&error);
  g_assert_null (dhf_device_engine_switch_finish (f->engine, queued, &error));
  g_assert_error (error, DHF_ERROR, DHF_ERROR_CANCELLED);
  g_clear_error (&error);
  g_assert_null (dhf_device_engine_switch_finish (f->engine, asked, &error));
  g_assert_error (error, DHF_ERROR, DHF_ERROR_CANCELLED);
  g_clear_error (&error);

  /* Afterwards: requests fail, inputs move nothing, no decider is asked. */
  dhf_device_engine_switch_async (f->engine, "B", "dom0", NULL, 0, NULL, on_result, &after);
  while (after == NULL)
    g_main_context_iteration (NULL, TRUE);
  g_assert_null (dhf_device_engine_switch_finish (f->engine, after, &error));
  g_assert_error (error, DHF_ERROR, DHF_ERROR_CANCELLED);
  g_clear_error (&error);
  g_array_set_size (f->rules, 0);
  dhf_device_engine_policy_changed (f->engine);
  set_state (f, "corp", TRUE, FALSE);
  send_inventory (f);
  dhf_device_engine_synced (f->engine);
  while (g_main_context_iteration (NULL, FALSE))
    ;
  g_assert_true (dhf_device_engine_is_idle (f->engine));
  assert_calls (f, "");
  g_assert_true (
      fake_ops_holds (f->fake, "corp", "usb-1-2", DHF_DEVICE_SCOPE_LIVE | DHF_DEVICE_SCOPE_CONFIG));
  g_assert_cmpstr (dhf_device_engine_get_focused (f->engine), ==, "B");

  /* The state it had saved is on disk. */
  g_assert_true (g_file_get_contents (f->state_file, &text, NULL, NULL));
  g_assert_nonnull (strstr (text, "\"focused\":\"B\""));

  /* Nothing keeps it alive any more. */
  g_clear_object (&running);
  g_clear_object (&queued);
  g_clear_object (&asked);
  g_clear_object (&after);
  g_signal_handlers_disconnect_by_data (f->engine, f);
  g_clear_object (&f->engine);
  {
    DhfDeviceEngine *left = g_weak_ref_get (&weak);

    g_assert_null (left);
  }
  g_weak_ref_clear (&weak);
}

/* --- review regressions: scopes ----------------------------------------- */

/* A domain starts after a step was planned for its persistent definition
 * only: it is read back and gets the device live. */
static void
test_stale_scope (Fixture *f, gconstpointer data)
{
  TestDomain *corp;

  add_rule (f, FALSE, DHF_POLICY_KIND_DEVICE, "usb:*", "dom0", "corp", DHF_POLICY_ACTION_ALLOW,
            NULL, FALSE, "40-usb.policy:1");
  add_device (f, usb_device ("1-2", 0x046d, 0xc52b));
  define (f, "corp", FALSE, FALSE, NULL);
  start_engine (f);
  g_free (fake_ops_take_calls (f->fake));
  corp = g_hash_table_lookup (f->domains, "corp");

  /* The manifest pins it: the attach is planned CONFIG-only. corp starts
   * while it is under way, and the engine hears of it meanwhile. */
  fake_ops_block (f->fake);
  corp->wishes = wishes (usb_wish (0x046d, 0xc52b, DHF_DEVICE_MODE_PINNED), NULL);
  report_domain (f, "corp");
  while (g_main_context_iteration (NULL, FALSE))
    ;
  fake_ops_wait_blocked (f->fake);
  set_state (f, "corp", TRUE, TRUE);
  fake_ops_unblock (f->fake);
  wait_idle (f);
  assert_calls (f, "attach corp usb-1-2 config; list corp; list-config corp; "
                   "attach corp usb-1-2 live|config; weight corp 256");
  g_assert_true (
      fake_ops_holds (f->fake, "corp", "usb-1-2", DHF_DEVICE_SCOPE_LIVE | DHF_DEVICE_SCOPE_CONFIG));

  /* It stops; the pin goes; the detach is planned CONFIG-only and corp
   * starts (with the device) before it runs; the engine hears of the
   * start only after the detach is done. */
  set_state (f, "corp", FALSE, FALSE);
  wait_idle (f);
  g_free (fake_ops_take_calls (f->fake));
  fake_ops_block (f->fake);
  g_clear_pointer (&corp->wishes, g_ptr_array_unref);
  report_domain (f, "corp");
  while (g_main_context_iteration (NULL, FALSE))
    ;
  fake_ops_wait_blocked (f->fake);
  fake_ops_set_active (f->fake, "corp", TRUE);
  fake_ops_unblock (f->fake);
  wait_idle (f);
  g_assert_true (fake_ops_holds (f->fake, "corp", "usb-1-2", DHF_DEVICE_SCOPE_LIVE));
  corp->active = corp->running = TRUE;
  report_domain (f, "corp");
  wait_idle (f);
  assert_calls (f, "detach corp usb-1-2 config; list corp; list-config corp; "
                   "detach corp usb-1-2 live|config; weight corp 256");
  assert_where (f, "usb-1-2", "dom0");
  assert_status (f, "usb-1-2", "dom0", DHF_DEVICE_MODE_DOM0, NULL, "none");
}

/* What a read finds in one scope only is seen, both ways. */
static void
test_read_both_scopes (Fixture *f, gconstpointer data)
{
  desktop (f);
  /* Left by a move half done: A has the keyboard in its definition only,
   * B has the mouse live only. */
  fake_ops_hold (f->fake, "A", "input-keyboard", DHF_DEVICE_SCOPE_CONFIG);
  fake_ops_hold (f->fake, "B", "input-mouse", DHF_DEVICE_SCOPE_LIVE);
  start_engine (f);
  /* Neither should be there: both go, from both scopes. */
  assert_calls (f, "list A; list-config A; list B; list-config B; "
                   "detach A input-keyboard live|config; detach B input-mouse live|config; "
                   "weight A 256; weight B 256");
  assert_where (f, "input-keyboard", "dom0");
  assert_where (f, "input-mouse", "dom0");

  /* Where it should be, but in one scope only: attached again, which
   * adds the missing scope. */
  switch_ok (f, "A", "A");
  stop_engine (f);
  fake_ops_drop (f->fake, "A", "input-keyboard", DHF_DEVICE_SCOPE_LIVE);
  g_free (fake_ops_take_calls (f->fake));
  start_engine (f);
  assert_calls (f, "list A; list-config A; list B; list-config B; "
                   "attach A input-keyboard live|config; weight A 1024; weight B 256");
  g_assert_true (fake_ops_holds (f->fake, "A", "input-keyboard",
                                 DHF_DEVICE_SCOPE_LIVE | DHF_DEVICE_SCOPE_CONFIG));
  assert_status (f, "input-keyboard", "A", DHF_DEVICE_MODE_FOLLOW_FOCUS, NULL, "focus");
}

/* --- review regressions: IOMMU groups ----------------------------------- */

static void
set_wishes (Fixture *f, const gchar *name, GPtrArray *list)
{
  TestDomain *domain = g_hash_table_lookup (f->domains, name);

  g_clear_pointer (&domain->wishes, g_ptr_array_unref);
  domain->wishes = list;
  report_domain (f, name);
}

/* Replaces the inventory's PCI functions of group 7 by ones with driver. */
static void
group_drivers (Fixture *f, const gchar *driver0, const gchar *driver1)
{
  g_ptr_array_set_size (f->devices, 0);
  add_device (f, pci_device ("0000:01:00.0", 7, driver0, FALSE));
  add_device (f, pci_device ("0000:01:00.1", 7, driver1, FALSE));
  send_inventory (f);
}

static void
test_pci_group_whole (Fixture *f, gconstpointer data)
{
  g_autofree gchar *problem = NULL;

  add_rule (f, FALSE, DHF_POLICY_KIND_DEVICE, "pci:*", "dom0", "*", DHF_POLICY_ACTION_ALLOW, NULL,
            FALSE, "50-pci.policy:1");
  add_device (f, pci_device ("0000:01:00.0", 7, "snd_hda_intel", FALSE));
  add_device (f, pci_device ("0000:01:00.1", 7, "xhci_hcd", FALSE));
  define (f, "media", TRUE, FALSE, NULL);
  define (f, "lab", TRUE, FALSE, NULL);
  start_engine (f);
  g_free (fake_ops_take_calls (f->fake));

  /* Two guests want one function each: a group goes to one guest, so
   * neither goes, and each says why. */
  set_wishes (f, "media", wishes (pci_wish ("0000:01:00.0"), NULL));
  set_wishes (f, "lab", wishes (pci_wish ("0000:01:00.1"), NULL));
  wait_idle (f);
  assert_calls (f, "");
  problem = problem_of (f, "pci-0000:01:00.0");
  g_assert_cmpstr (problem, ==,
                   "cannot go to media: IOMMU group 7 also holds pci-0000:01:00.1 (driver "
                   "xhci_hcd) in dom0; a group goes to one guest whole: give those to media too, "
                   "or unbind the host drivers of those in dom0");
  set_wishes (f, "lab", NULL);
  wait_idle (f);
  assert_calls (f, "");

  /* The group moves as one unit: when its second attach fails, its first
   * is undone, and both say why. */
  fake_ops_fail_matching (f->fake, "attach media pci-0000_01_00_1 *", DHF_ERROR_HYPERVISOR,
                          "group not viable");
  set_wishes (f, "media", wishes (pci_wish ("0000:01:00.0"), pci_wish ("0000:01:00.1"), NULL));
  wait_idle (f);
  expect_warning ("attaching pci-0000:01:00.1 to media: group not viable");
  assert_calls (f, "attach media pci-0000_01_00_0 live|config; "
                   "attach media pci-0000_01_00_1 live|config -> failed; "
                   "detach media pci-0000_01_00_0 live|config; list media; list-config media");
  assert_where (f, "pci-0000:01:00.0", "dom0");
  g_clear_pointer (&problem, g_free);
  problem = problem_of (f, "pci-0000:01:00.0");
  g_assert_cmpstr (problem, ==, "attaching pci-0000:01:00.1 to media: group not viable");
  g_clear_pointer (&problem, g_free);
  problem = problem_of (f, "pci-0000:01:00.1");
  g_assert_cmpstr (problem, ==, "attaching pci-0000:01:00.1 to media: group not viable");

  fake_ops_clear_failures (f->fake);
  dhf_device_engine_policy_changed (f->engine);
  wait_idle (f);
  assert_calls (f, "attach media pci-0000_01_00_0 live|config; "
                   "attach media pci-0000_01_00_1 live|config");
  group_drivers (f, "vfio-pci", "vfio-pci");
  wait_idle (f);

  /* One function may not leave while the other stays in the guest: it
   * would get its host driver back in a group a guest has. */
  set_wishes (f, "media", wishes (pci_wish ("0000:01:00.0"), NULL));
  wait_idle (f);
  assert_calls (f, "");
  assert_where (f, "pci-0000:01:00.1", "media");
  assert_status (f, "pci-0000:01:00.1", "media", DHF_DEVICE_MODE_DOM0, NULL, "none");
  g_clear_pointer (&problem, g_free);
  problem = problem_of (f, "pci-0000:01:00.1");
  g_assert_cmpstr (problem, ==,
                   "cannot go to dom0: IOMMU group 7 also holds pci-0000:01:00.0 in media; a "
                   "group leaves its guest whole");
  g_clear_pointer (&problem, g_free);
  problem = problem_of (f, "pci-0000:01:00.0");
  g_assert_null (problem);

  /* Both go: together, detaches in one unit. */
  set_wishes (f, "media", NULL);
  wait_idle (f);
  assert_calls (f, "detach media pci-0000_01_00_0 live|config; "
                   "detach media pci-0000_01_00_1 live|config");
  assert_where (f, "pci-0000:01:00.0", "dom0");
  assert_where (f, "pci-0000:01:00.1", "dom0");
}

/* --- review regressions: admin pins are checked against the policy ----- */

static void
test_pin_admin_policy (Fixture *f, gconstpointer data)
{
  g_autoptr (GError) error = NULL;
  g_autofree gchar *problem = NULL;
  g_autofree gchar *text = NULL;

  add_rule (f, FALSE, DHF_POLICY_KIND_DEVICE, "usb:*", "dom0", "corp", DHF_POLICY_ACTION_ALLOW,
            NULL, FALSE, "40-usb.policy:1");
  add_device (f, usb_device ("1-2", 0x046d, 0xc52b));
  define (f, "corp", TRUE, FALSE, NULL);
  start_engine (f);
  g_assert_true (assign (f, "usb-1-2", "corp", &error));
  g_assert_no_error (error);
  g_free (fake_ops_take_calls (f->fake));

  /* The admin forbids it now: the policy wins over the pin. */
  add_rule (f, TRUE, DHF_POLICY_KIND_DEVICE, "usb:*", "dom0", "corp", DHF_POLICY_ACTION_DENY, NULL,
            FALSE, "00-lock.policy:1");
  dhf_device_engine_policy_changed (f->engine);
  wait_idle (f);
  assert_calls (f, "detach corp usb-1-2 live|config");
  assert_status (f, "usb-1-2", "dom0", DHF_DEVICE_MODE_DOM0, NULL, "none");
  problem = problem_of (f, "usb-1-2");
  g_assert_cmpstr (problem, ==, "pinned to corp (admin), denied by 00-lock.policy:1");

  /* No rule at all. */
  g_array_set_size (f->rules, 0);
  dhf_device_engine_policy_changed (f->engine);
  wait_idle (f);
  assert_calls (f, "");
  g_clear_pointer (&problem, g_free);
  problem = problem_of (f, "usb-1-2");
  g_assert_cmpstr (problem, ==, "pinned to corp (admin), denied: no rule allows it");

  /* The pin is kept (it is the admin's to drop), and holds again. */
  stop_engine (f);
  g_assert_true (g_file_get_contents (f->state_file, &text, NULL, NULL));
  g_assert_nonnull (strstr (text, "\"device\":\"usb-1-2\""));
  add_rule (f, FALSE, DHF_POLICY_KIND_DEVICE, "usb:*", "dom0", "corp", DHF_POLICY_ACTION_ALLOW,
            NULL, FALSE, "40-usb.policy:1");
  start_engine (f);
  assert_calls (f, "list corp; list-config corp; attach corp usb-1-2 live|config; "
                   "weight corp 256");
  assert_status (f, "usb-1-2", "corp", DHF_DEVICE_MODE_PINNED, "corp", "admin");
}

/* --- review regressions: asking holds no queue -------------------------- */

static void
test_switch_ask_parked (Fixture *f, gconstpointer data)
{
  g_autoptr (GAsyncResult) result = NULL;
  g_autoptr (GError) error = NULL;
  g_autofree gchar *focused = NULL;

  desktop (f);
  add_rule (f, TRUE, DHF_POLICY_KIND_SWITCH, NULL, "personal", "*", DHF_POLICY_ACTION_ASK, NULL,
            FALSE, "30-desktop.policy:9");
  define (f, "personal", TRUE, TRUE, NULL);
  f->with_asker = TRUE;
  f->answer = -1;
  start_engine (f);
  g_free (fake_ops_take_calls (f->fake));

  /* The question is open; other switches go on meanwhile. */
  dhf_device_engine_switch_async (f->engine, "A", "personal", NULL, 0, NULL, on_result, &result);
  g_assert_cmpstr (f->asked, ==, "personal>A 30-desktop.policy:9");
  g_assert_true (dhf_device_engine_is_idle (f->engine));
  switch_ok (f, "B", "B");
  switch_ok (f, "dom0", "dom0");
  g_assert_null (result);
  g_free (fake_ops_take_calls (f->fake));

  /* Yes: it runs then, checked again. */
  f->ask_done (TRUE, f->ask_done_data);
  while (result == NULL)
    g_main_context_iteration (NULL, TRUE);
  focused = dhf_device_engine_switch_finish (f->engine, result, &error);
  g_assert_no_error (error);
  g_assert_cmpstr (focused, ==, "A");
  wait_idle (f);
  assert_calls (f, "attach A input-keyboard live|config; attach A input-mouse live|config; "
                   "weight A 1024");

  /* Yes, after the target stopped: refused when it runs. */
  g_clear_object (&result);
  g_clear_pointer (&focused, g_free);
  dhf_device_engine_switch_async (f->engine, "B", "personal", NULL, 0, NULL, on_result, &result);
  g_assert_cmpstr (f->asked, ==, "personal>B 30-desktop.policy:9");
  set_state (f, "B", FALSE, FALSE);
  wait_idle (f);
  f->ask_done (TRUE, f->ask_done_data);
  while (result == NULL)
    g_main_context_iteration (NULL, TRUE);
  focused = dhf_device_engine_switch_finish (f->engine, result, &error);
  g_assert_error (error, DHF_ERROR, DHF_ERROR_INVALID_STATE);
  g_assert_null (focused);
  g_assert_cmpstr (dhf_device_engine_get_focused (f->engine), ==, "A");
}

/* --- review regressions: domains the engine has not read ---------------- */

static void
test_new_domain_read (Fixture *f, gconstpointer data)
{
  add_rule (f, FALSE, DHF_POLICY_KIND_DEVICE, "usb:*", "dom0", "lab", DHF_POLICY_ACTION_ALLOW, NULL,
            FALSE, "40-usb.policy:1");
  add_device (f, usb_device ("1-2", 0x046d, 0xc52b));
  define (f, "corp", FALSE, FALSE, NULL);
  start_engine (f);
  assert_calls (f, "list corp");

  /* Renamed behind dhfd's back, with the device in its definition: the
   * new name is read, and the device comes home (nothing allows it). */
  fake_ops_hold (f->fake, "corp", "usb-1-2", DHF_DEVICE_SCOPE_CONFIG);
  undefine (f, "corp");
  define (f, "corp2", FALSE, FALSE, NULL);
  fake_ops_hold (f->fake, "corp2", "usb-1-2", DHF_DEVICE_SCOPE_CONFIG);
  wait_idle (f);
  assert_calls (f, "list corp2; detach corp2 usb-1-2 config");
  assert_where (f, "usb-1-2", "dom0");

  /* A domain defined with it where the policy wants it: read, kept. */
  define (f, "lab", TRUE, FALSE, wishes (usb_wish (0x046d, 0xc52b, DHF_DEVICE_MODE_PINNED), NULL));
  fake_ops_hold (f->fake, "lab", "usb-1-2", DHF_DEVICE_SCOPE_LIVE | DHF_DEVICE_SCOPE_CONFIG);
  wait_idle (f);
  assert_calls (f, "list lab; list-config lab; weight lab 256");
  assert_status (f, "usb-1-2", "lab", DHF_DEVICE_MODE_PINNED, "lab", "manifest");
}

/* --- review regressions: history of removed domains ---------------------- */

static void
test_history_pruned (Fixture *f, gconstpointer data)
{
  g_autofree gchar *dir = g_path_get_dirname (f->state_file);
  g_autofree gchar *text = NULL;

  desktop (f);
  dhf_test_write_file (dir, "devices.json",
                       "{\"version\":1,\"focused\":\"A\",\"history\":[\"gone\",\"B\",\"dom0\"],"
                       "\"pins\":[{\"device\":\"input-mouse\",\"domain\":\"gone\"}]}");
  start_engine (f);
  /* A domain that no longer exists is nothing to go back to; its pin
   * stays (an admin pin outlives an undefine and a reinstall). */
  assert_history (f, "B dom0");
  {
    g_autofree gchar *problem = problem_of (f, "input-mouse");

    g_assert_cmpstr (problem, ==, "pinned to gone (admin), which is not defined");
  }
  stop_engine (f);
  g_assert_true (g_file_get_contents (f->state_file, &text, NULL, NULL));
  g_assert_null (strstr (text, "\"gone\",\n"));
  g_assert_nonnull (strstr (text, "\"history\":[\n    \"B\""));
  g_assert_nonnull (strstr (text, "\"domain\":\"gone\""));
}

/* --- the fake is the real ops: scopes a domain lacks are dropped -------- */

static void
test_transient_domain (Fixture *f, gconstpointer data)
{
  add_rule (f, FALSE, DHF_POLICY_KIND_DEVICE, "usb:*", "dom0", "tmp", DHF_POLICY_ACTION_ALLOW, NULL,
            FALSE, "40-usb.policy:1");
  add_device (f, usb_device ("1-2", 0x046d, 0xc52b));
  define (f, "tmp", TRUE, FALSE, wishes (usb_wish (0x046d, 0xc52b, DHF_DEVICE_MODE_PINNED), NULL));
  fake_ops_set_transient (f->fake, "tmp", TRUE);
  start_engine (f);
  /* Its definition is its live one: the device is wholly there. */
  assert_calls (f, "list tmp; list-config tmp; attach tmp usb-1-2 live|config; weight tmp 256");
  g_assert_true (fake_ops_holds (f->fake, "tmp", "usb-1-2", DHF_DEVICE_SCOPE_LIVE));
  g_assert_false (fake_ops_holds (f->fake, "tmp", "usb-1-2", DHF_DEVICE_SCOPE_CONFIG));
  stop_engine (f);
  start_engine (f);
  assert_calls (f, "list tmp; list-config tmp; weight tmp 256");
  assert_status (f, "usb-1-2", "tmp", DHF_DEVICE_MODE_PINNED, "tmp", "manifest");
}

/* --- review regressions: an admin pin is for its device, not its port --- */

static void
assert_problem (Fixture *f, const gchar *id, const gchar *expected)
{
  g_autofree gchar *problem = problem_of (f, id);

  g_assert_cmpstr (problem, ==, expected);
}

static void
assert_file_has (Fixture *f, const gchar *part)
{
  g_autofree gchar *text = NULL;

  g_assert_true (g_file_get_contents (f->state_file, &text, NULL, NULL));
  if (strstr (text, part) == NULL)
    g_error ("the state file does not say %s:\n%s", part, text);
}

/* The inventory's USB device in port 1-2 becomes device. */
static void
plug_usb (Fixture *f, DhfDevice *device)
{
  for (guint i = 0; i < f->devices->len; i++)
    {
      if (g_strcmp0 (((DhfDevice *) g_ptr_array_index (f->devices, i))->id, "usb-1-2") == 0)
        {
          g_ptr_array_remove_index (f->devices, i);
          break;
        }
    }
  if (device != NULL)
    add_device (f, device);
  send_inventory (f);
  wait_idle (f);
}

#define KEY_SELECTOR      "usb:1050:0407:0001234"
#define STRANGER_SELECTOR "usb:dead:beef:666"
#define STRANGER_PROBLEM                                                                           \
  "usb-1-2 is pinned to corp (admin) for " KEY_SELECTOR "; this is another device "                \
  "(" STRANGER_SELECTOR "): the pin waits for its own"

static void
test_pin_port (Fixture *f, gconstpointer data)
{
  g_autoptr (GError) error = NULL;

  /* The policy lets any USB device go to corp: what keeps the stranger
   * out is the pin's selector. */
  add_rule (f, FALSE, DHF_POLICY_KIND_DEVICE, "usb:*", "dom0", "corp", DHF_POLICY_ACTION_ALLOW,
            NULL, FALSE, "40-usb.policy:1");
  add_device (f, usb_serial_device ("1-2", 0x1050, 0x0407, "0001234"));
  define (f, "corp", TRUE, FALSE, NULL);
  start_engine (f);
  g_assert_true (assign (f, "usb-1-2", "corp", &error));
  g_assert_no_error (error);
  assert_calls (f, "list corp; list-config corp; weight corp 256; "
                   "attach corp usb-1-2 live|config");

  /* Unplugged, it stays corp's; another device in that port is not. */
  plug_usb (f, NULL);
  assert_calls (f, "");
  plug_usb (f, usb_serial_device ("1-2", 0xdead, 0xbeef, "666"));
  assert_calls (f, "detach corp usb-1-2 live|config");
  assert_where (f, "usb-1-2", "dom0");
  assert_status (f, "usb-1-2", "dom0", DHF_DEVICE_MODE_DOM0, NULL, "none");
  assert_problem (f, "usb-1-2", STRANGER_PROBLEM);
  /* Nor can it take the pin's place without the admin dropping it. */
  g_assert_false (assign (f, "usb-1-2", "corp", &error));
  g_assert_error (error, DHF_ERROR, DHF_ERROR_EXISTS);
  g_assert_cmpstr (error->message, ==,
                   "usb-1-2 is pinned to corp (admin) for another device (" KEY_SELECTOR
                   "); release that pin first");
  g_clear_error (&error);
  assert_calls (f, "");

  /* Gone again: what is missing is the pin's own device. */
  plug_usb (f, NULL);
  assert_calls (f, "");
  {
    g_autoptr (DhfDeviceStatus) status = dhf_device_engine_lookup (f->engine, "usb-1-2");

    g_assert_false (status->present);
    g_assert_cmpstr (status->device->selector, ==, KEY_SELECTOR);
    g_assert_cmpstr (status->holder, ==, "corp");
    g_assert_cmpstr (status->origin, ==, "admin");
  }

  /* The pinned device back: corp's again. */
  plug_usb (f, usb_serial_device ("1-2", 0x1050, 0x0407, "0001234"));
  assert_calls (f, "attach corp usb-1-2 live|config");
  assert_status (f, "usb-1-2", "corp", DHF_DEVICE_MODE_PINNED, "corp", "admin");
  assert_problem (f, "usb-1-2", NULL);

  /* The pin is saved with its selector; after a restart with the
   * stranger in the port, the stranger is taken out of corp. */
  stop_engine (f);
  assert_file_has (f, "\"selector\":\"" KEY_SELECTOR "\"");
  g_ptr_array_set_size (f->devices, 0);
  add_device (f, usb_serial_device ("1-2", 0xdead, 0xbeef, "666"));
  start_engine (f);
  assert_calls (f, "list corp; list-config corp; detach corp usb-1-2 live|config; "
                   "weight corp 256");
  assert_problem (f, "usb-1-2", STRANGER_PROBLEM);

  /* Once the admin drops the pin, the stranger may be pinned. */
  g_assert_true (release (f, "usb-1-2", &error));
  g_assert_no_error (error);
  assert_calls (f, "");
  assert_problem (f, "usb-1-2", NULL);
  g_assert_true (assign (f, "usb-1-2", "corp", &error));
  g_assert_no_error (error);
  assert_calls (f, "attach corp usb-1-2 live|config");
  stop_engine (f);
  assert_file_has (f, "\"selector\":\"" STRANGER_SELECTOR "\"");
}

/* A state file from before selectors were kept: each pin is for the
 * device at its id at the first sync (or when one is first plugged in
 * there), and is saved so. */
static void
test_pin_selector_adopted (Fixture *f, gconstpointer data)
{
  g_autofree gchar *dir = g_path_get_dirname (f->state_file);

  add_rule (f, FALSE, DHF_POLICY_KIND_DEVICE, "usb:*", "dom0", "corp", DHF_POLICY_ACTION_ALLOW,
            NULL, FALSE, "40-usb.policy:1");
  add_device (f, usb_serial_device ("1-2", 0x1050, 0x0407, "0001234"));
  define (f, "corp", TRUE, FALSE, NULL);
  dhf_test_write_file (dir, "devices.json",
                       "{\"version\":1,\"pins\":[{\"device\":\"usb-1-2\",\"domain\":\"corp\"},"
                       "{\"device\":\"usb-1-3\",\"domain\":\"corp\"}]}");
  start_engine (f);
  assert_calls (f, "list corp; list-config corp; attach corp usb-1-2 live|config; "
                   "weight corp 256");
  assert_status (f, "usb-1-2", "corp", DHF_DEVICE_MODE_PINNED, "corp", "admin");

  /* usb-1-3 was not there: its pin is for the first device seen there. */
  add_device (f, usb_device ("1-3", 0x046d, 0xc52b));
  send_inventory (f);
  wait_idle (f);
  assert_calls (f, "attach corp usb-1-3 live|config");
  stop_engine (f);
  assert_file_has (f, "\"device\":\"usb-1-2\",\n      \"selector\":\"" KEY_SELECTOR "\"");
  assert_file_has (f, "\"device\":\"usb-1-3\",\n      \"selector\":\"usb:046d:c52b\"");

  /* From then on it holds for that device only (usb-1-3, unplugged,
   * stays where it is). */
  g_ptr_array_set_size (f->devices, 0);
  add_device (f, usb_serial_device ("1-2", 0xdead, 0xbeef, "666"));
  start_engine (f);
  assert_calls (f, "list corp; list-config corp; detach corp usb-1-2 live|config; "
                   "weight corp 256");
  assert_problem (f, "usb-1-2", STRANGER_PROBLEM);
}

/* --- review regressions: a guest's switch is decided first -------------- */

static void
test_switch_guest_first (Fixture *f, gconstpointer data)
{
  const gchar *const targets[]
      = { "nope", "stopped", "vpn", "A", "B", "@next", "@previous", "dom0" };
  g_autofree gchar *asked = NULL;

  desktop (f);
  define (f, "stopped", FALSE, TRUE, NULL);
  define (f, "vpn", TRUE, FALSE, NULL);
  define (f, "personal", TRUE, TRUE, NULL);
  /* A rule of its own for B: a refusal does not name it either. */
  add_rule (f, TRUE, DHF_POLICY_KIND_SWITCH, NULL, "personal", "B", DHF_POLICY_ACTION_DENY, NULL,
            FALSE, "20-lock.policy:4");
  start_engine (f);
  switch_ok (f, "A", "A");
  g_free (fake_ops_take_calls (f->fake));
  g_ptr_array_set_size (f->switch_log, 0);

  /* Whatever it names (a domain that does not exist, one that is
   * stopped, one that is no environment, the focused one, @next), a
   * guest no rule lets switch hears the same. */
  for (guint i = 0; i < G_N_ELEMENTS (targets); i++)
    switch_fails (f, targets[i], "personal", DHF_ERROR_NOT_AUTHORIZED,
                  "personal may not switch the display there: the policy does not allow it");
  /* The policy was asked about each name, @next and @previous where they
   * lead from A among the running environments. */
  asked = joined (f->switch_log);
  g_assert_cmpstr (asked, ==,
                   "personal>nope personal>stopped personal>vpn personal>A personal>B "
                   "personal>B personal>personal personal>dom0");
  assert_calls (f, "");
  g_assert_cmpuint (f->focus_log->len, ==, 1);

  /* Once the policy lets it, it is told what is wrong. */
  add_rule (f, TRUE, DHF_POLICY_KIND_SWITCH, NULL, "personal", "*", DHF_POLICY_ACTION_ALLOW, NULL,
            FALSE, "30-desktop.policy:12");
  switch_fails (f, "nope", "personal", DHF_ERROR_NOT_FOUND, "no domain named nope");
  switch_fails (f, "stopped", "personal", DHF_ERROR_INVALID_STATE, "stopped is not running");
  switch_fails (f, "vpn", "personal", DHF_ERROR_INVALID_ARGS, "vpn is not an environment");
  {
    g_autoptr (GError) error = NULL;
    g_autofree gchar *focused = try_switch (f, "A", "personal", NULL, 0, &error);

    g_assert_no_error (error);
    g_assert_cmpstr (focused, ==, "A");
  }
  assert_calls (f, "");
  {
    g_autoptr (GError) error = NULL;
    g_autofree gchar *focused = try_switch (f, "B", "personal", NULL, 0, &error);

    g_assert_no_error (error);
    g_assert_cmpstr (focused, ==, "B");
  }

  /* dom0 keeps the details, in the order of old. */
  g_array_set_size (f->rules, 0);
  switch_fails (f, "nope", "dom0", DHF_ERROR_NOT_FOUND, "no domain named nope");
  switch_fails (f, "A", "dom0", DHF_ERROR_NOT_AUTHORIZED,
                "switching from dom0 to A is denied: no rule allows it");
  switch_fails (f, "@next", "dom0", DHF_ERROR_NOT_AUTHORIZED,
                "switching from dom0 to personal is denied: no rule allows it");

  /* No environment runs: a guest is not told so before the policy let it. */
  set_state (f, "A", FALSE, FALSE);
  set_state (f, "B", FALSE, FALSE);
  set_state (f, "personal", TRUE, FALSE);
  wait_idle (f);
  switch_fails (f, "@next", "dom0", DHF_ERROR_INVALID_STATE, "no environment is running");
  switch_fails (f, "@next", "personal", DHF_ERROR_NOT_AUTHORIZED,
                "personal may not switch the display there: the policy does not allow it");
  add_rule (f, TRUE, DHF_POLICY_KIND_SWITCH, NULL, "personal", "*", DHF_POLICY_ACTION_ALLOW, NULL,
            FALSE, "30-desktop.policy:12");
  switch_fails (f, "@previous", "personal", DHF_ERROR_INVALID_STATE, "no environment is running");
}

/* --- review regressions: releasing held keys ---------------------------- */

static void
test_release_keys (Fixture *f, gconstpointer data)
{
  /* Ctrl, Alt, Tab, Ctrl again, AltGr, Super. */
  const guint combo[] = { 29, 56, 15, 29, 100, 125 };
  const guint tab[] = { 15 };
  guint many[40];
  g_autoptr (GError) error = NULL;
  g_autofree gchar *focused = NULL;

  for (guint i = 0; i < G_N_ELEMENTS (many); i++)
    {
      static const guint cycle[] = { 29, 97, 30, 56, 100, 42, 54, 125, 126, 15 };

      many[i] = cycle[i % G_N_ELEMENTS (cycle)];
    }
  /* Only the mouse follows the focus; the keyboard stays in dom0. */
  add_rule (f, FALSE, DHF_POLICY_KIND_DEVICE, "input:mouse", "dom0", "*", DHF_POLICY_ACTION_ALLOW,
            "follow-focus", FALSE, "30-desktop.policy:3");
  add_rule (f, FALSE, DHF_POLICY_KIND_SWITCH, NULL, "dom0", "*", DHF_POLICY_ACTION_ALLOW, NULL,
            FALSE, "30-desktop.policy:7");
  add_device (f, input_device ("keyboard"));
  add_device (f, input_device ("mouse"));
  define (f, "A", TRUE, TRUE, NULL);
  define (f, "B", TRUE, TRUE, NULL);
  start_engine (f);
  switch_ok (f, "A", "A");
  g_free (fake_ops_take_calls (f->fake));

  /* No keyboard leaves A: the modifiers held are released there first,
   * once each; Tab is not (it would be typed again). */
  focused = try_switch (f, "B", "dom0", combo, G_N_ELEMENTS (combo), &error);
  g_assert_no_error (error);
  g_assert_cmpstr (focused, ==, "B");
  assert_calls (f, "keys A 29,56,100,125; detach A input-mouse live|config; "
                   "attach B input-mouse live|config; weight B 1024; weight A 256");

  /* No modifier held: nothing to release. */
  g_clear_pointer (&focused, g_free);
  focused = try_switch (f, "A", "dom0", tab, G_N_ELEMENTS (tab), &error);
  g_assert_no_error (error);
  assert_calls (f, "detach B input-mouse live|config; attach A input-mouse live|config; "
                   "weight A 1024; weight B 256");

  /* Many keys: the modifiers among them, each once (KEY_A and Tab are
   * not). */
  g_clear_pointer (&focused, g_free);
  focused = try_switch (f, "B", "dom0", many, G_N_ELEMENTS (many), &error);
  g_assert_no_error (error);
  assert_calls (f, "keys A 29,97,56,100,42,54,125,126; detach A input-mouse live|config; "
                   "attach B input-mouse live|config; weight B 1024; weight A 256");

  /* Best-effort: a release that fails undoes nothing, and is logged. */
  fake_ops_fail_matching (f->fake, "keys B *", DHF_ERROR_HYPERVISOR, "no keyboard");
  g_clear_pointer (&focused, g_free);
  focused = try_switch (f, "A", "dom0", combo, G_N_ELEMENTS (combo), &error);
  g_assert_no_error (error);
  g_assert_cmpstr (focused, ==, "A");
  expect_warning ("switching to A: releasing the held keys in B: no keyboard");
  assert_calls (f, "keys B 29,56,100,125 -> failed; detach B input-mouse live|config; "
                   "attach A input-mouse live|config; weight A 1024; weight B 256");
  assert_where (f, "input-mouse", "A");
  fake_ops_clear_failures (f->fake);

  /* The keyboard follows the focus too: it leaves A in the switch, which
   * releases its keys there; none are sent. */
  add_rule (f, TRUE, DHF_POLICY_KIND_DEVICE, "input:keyboard", "dom0", "*", DHF_POLICY_ACTION_ALLOW,
            "follow-focus", FALSE, "30-desktop.policy:2");
  dhf_device_engine_policy_changed (f->engine);
  wait_idle (f);
  assert_calls (f, "attach A input-keyboard live|config");
  g_clear_pointer (&focused, g_free);
  focused = try_switch (f, "B", "dom0", combo, G_N_ELEMENTS (combo), &error);
  g_assert_no_error (error);
  assert_calls (f, "detach A input-keyboard live|config; detach A input-mouse live|config; "
                   "attach B input-keyboard live|config; attach B input-mouse live|config; "
                   "weight B 1024; weight A 256");

  /* So does any USB device (it may be a keyboard). */
  add_rule (f, TRUE, DHF_POLICY_KIND_DEVICE, "input:keyboard", "dom0", "*", DHF_POLICY_ACTION_DENY,
            NULL, FALSE, "30-desktop.policy:1");
  add_rule (f, TRUE, DHF_POLICY_KIND_DEVICE, "usb:*", "dom0", "*", DHF_POLICY_ACTION_ALLOW,
            "follow-focus", FALSE, "30-desktop.policy:4");
  add_device (f, usb_device ("1-2", 0x046d, 0xc52b));
  send_inventory (f);
  dhf_device_engine_policy_changed (f->engine);
  wait_idle (f);
  assert_calls (f, "detach B input-keyboard live|config; attach B usb-1-2 live|config");
  g_clear_pointer (&focused, g_free);
  focused = try_switch (f, "A", "dom0", combo, G_N_ELEMENTS (combo), &error);
  g_assert_no_error (error);
  assert_calls (f, "detach B input-mouse live|config; detach B usb-1-2 live|config; "
                   "attach A input-mouse live|config; attach A usb-1-2 live|config; "
                   "weight A 1024; weight B 256");
}

/* --- review regressions: a cancelled request leaves the queue ----------- */

/* Runs what is ready, without waiting: the worker is held, so whatever
 * is answered now is answered without it. */
static void
drain (void)
{
  while (g_main_context_iteration (NULL, FALSE))
    ;
}

static void
test_cancel_queued (Fixture *f, gconstpointer data)
{
  g_autoptr (GCancellable) running_cancel = g_cancellable_new ();
  g_autoptr (GAsyncResult) running = NULL;
  g_autoptr (GError) error = NULL;
  g_autofree gchar *focused = NULL;

  desktop (f);
  add_rule (f, FALSE, DHF_POLICY_KIND_DEVICE, "usb:*", "dom0", "corp", DHF_POLICY_ACTION_ALLOW,
            NULL, FALSE, "40-usb.policy:1");
  add_device (f, usb_device ("1-2", 0x046d, 0xc52b));
  define (f, "corp", TRUE, FALSE, NULL);
  start_engine (f);
  g_free (fake_ops_take_calls (f->fake));

  /* A switch runs, its first call held. */
  fake_ops_block (f->fake);
  dhf_device_engine_switch_async (f->engine, "A", "dom0", NULL, 0, running_cancel, on_result,
                                  &running);
  drain ();
  fake_ops_wait_blocked (f->fake);

  /* Requests queued behind it and cancelled, over and over: each one is
   * answered at once, while the switch still runs. */
  for (guint i = 0; i < 20; i++)
    {
      g_autoptr (GCancellable) cancellable = g_cancellable_new ();
      g_autoptr (GAsyncResult) switched = NULL;
      g_autoptr (GAsyncResult) assigned = NULL;
      g_autoptr (GAsyncResult) released = NULL;

      dhf_device_engine_switch_async (f->engine, "B", "dom0", NULL, 0, cancellable, on_result,
                                      &switched);
      dhf_device_engine_assign_async (f->engine, "usb-1-2", "corp", cancellable, on_result,
                                      &assigned);
      dhf_device_engine_release_async (f->engine, "usb-1-2", cancellable, on_result, &released);
      drain ();
      g_assert_null (switched);
      g_assert_null (assigned);
      g_assert_null (released);
      g_cancellable_cancel (cancellable);
      drain ();
      g_assert_nonnull (switched);
      g_assert_null (dhf_device_engine_switch_finish (f->engine, switched, &error));
      g_assert_error (error, DHF_ERROR, DHF_ERROR_CANCELLED);
      g_clear_error (&error);
      g_assert_nonnull (assigned);
      g_assert_false (dhf_device_engine_assign_finish (f->engine, assigned, &error));
      g_assert_error (error, DHF_ERROR, DHF_ERROR_CANCELLED);
      g_clear_error (&error);
      /* Not run: it has no pin, which would be NOT_FOUND. */
      g_assert_nonnull (released);
      g_assert_false (dhf_device_engine_release_finish (f->engine, released, &error));
      g_assert_error (error, DHF_ERROR, DHF_ERROR_CANCELLED);
      g_clear_error (&error);
    }
  /* Cancelled before it was asked for: the same. */
  {
    g_autoptr (GCancellable) cancellable = g_cancellable_new ();
    g_autoptr (GAsyncResult) assigned = NULL;

    g_cancellable_cancel (cancellable);
    dhf_device_engine_assign_async (f->engine, "usb-1-2", "corp", cancellable, on_result,
                                    &assigned);
    drain ();
    g_assert_nonnull (assigned);
    g_assert_false (dhf_device_engine_assign_finish (f->engine, assigned, &error));
    g_assert_error (error, DHF_ERROR, DHF_ERROR_CANCELLED);
    g_clear_error (&error);
  }

  /* The one that runs is not cut in half: cancelled, it finishes. */
  g_cancellable_cancel (running_cancel);
  drain ();
  g_assert_null (running);
  fake_ops_unblock (f->fake);
  while (running == NULL)
    g_main_context_iteration (NULL, TRUE);
  focused = dhf_device_engine_switch_finish (f->engine, running, &error);
  g_assert_no_error (error);
  g_assert_cmpstr (focused, ==, "A");
  wait_idle (f);
  /* Nothing of the cancelled ones ran. */
  assert_calls (f, "attach A input-keyboard live|config; attach A input-mouse live|config; "
                   "weight A 1024");
  assert_where (f, "usb-1-2", "dom0");
  g_assert_true (dhf_device_engine_is_idle (f->engine));
}

int
main (int argc, char *argv[])
{
  warnings = g_ptr_array_new_with_free_func (g_free);
  g_log_set_writer_func (record_log, NULL, NULL);
  g_test_init (&argc, &argv, NULL);

#define ADD(path, func) g_test_add (path, Fixture, NULL, fixture_setup, func, fixture_teardown)
  ADD ("/engine/follow-focus", test_follow_focus);
  ADD ("/engine/queue-order", test_queue_order);
  ADD ("/engine/before-sync", test_before_sync);
  ADD ("/engine/rollback/every-step", test_rollback_every_step);
  ADD ("/engine/rollback/undo-fails", test_rollback_undo_fails);
  ADD ("/engine/switch/errors", test_switch_errors);
  ADD ("/engine/switch/ask", test_switch_ask);
  ADD ("/engine/switch/cycle", test_cycle);
  ADD ("/engine/switch/cycle-dom0", test_cycle_dom0);
  ADD ("/engine/pin/manifest", test_pin_manifest);
  ADD ("/engine/pin/policy", test_pin_policy);
  ADD ("/engine/pin/admin", test_pin_admin);
  ADD ("/engine/pin/conflict", test_pin_conflict);
  ADD ("/engine/pin/pci-group", test_pci_group);
  ADD ("/engine/pin/reconcile-failure", test_reconcile_failure);
  ADD ("/engine/fallback/paused", test_fallback_paused);
  ADD ("/engine/fallback/shutoff", test_fallback_shutoff);
  ADD ("/engine/fallback/removed", test_fallback_removed);
  ADD ("/engine/fallback/previous", test_fallback_previous);
  ADD ("/engine/fallback/name", test_fallback_name);
  ADD ("/engine/restart/restore", test_restart);
  ADD ("/engine/restart/focus-gone", test_restart_focus_gone);
  ADD ("/engine/restart/corrupt", test_restart_corrupt);
  ADD ("/engine/policy-changed", test_policy_changed);
  ADD ("/engine/unplug", test_unplug);
  ADD ("/engine/fallback/target-fails", test_fallback_target_fails);
  ADD ("/engine/fallback/old-focus-fails", test_fallback_old_focus_fails);
  ADD ("/engine/fallback/weight-fails", test_fallback_weight_fails);
  ADD ("/engine/reconcile/no-retry", test_no_retry_without_change);
  ADD ("/engine/switch/focused-rules", test_focused_rules);
  ADD ("/engine/switch/ask-parked", test_switch_ask_parked);
  ADD ("/engine/shutdown", test_shutdown);
  ADD ("/engine/scope/stale", test_stale_scope);
  ADD ("/engine/scope/read-both", test_read_both_scopes);
  ADD ("/engine/scope/transient", test_transient_domain);
  ADD ("/engine/pin/pci-group-whole", test_pci_group_whole);
  ADD ("/engine/pin/admin-policy", test_pin_admin_policy);
  ADD ("/engine/domain/new-read", test_new_domain_read);
  ADD ("/engine/restart/history-pruned", test_history_pruned);
  ADD ("/engine/pin/port", test_pin_port);
  ADD ("/engine/pin/selector-adopted", test_pin_selector_adopted);
  ADD ("/engine/switch/guest-first", test_switch_guest_first);
  ADD ("/engine/switch/release-keys", test_release_keys);
  ADD ("/engine/cancel-queued", test_cancel_queued);
#undef ADD

  return g_test_run ();
}
