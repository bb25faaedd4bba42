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
  gchar *dir;
  gchar *state_file;
  gboolean with_asker;
  gint answer; /* the asker: 1 yes, 0 no, -1 keep the question open */
  gchar *asked;
  GCancellable *ask_cancellable;
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
    return;
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
  assert_calls (f, "list A; list B; weight A 256; weight B 256");
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

  /* Keys held down when the focus leaves are released where they were. */
  focused = try_switch (f, "B", "dom0", keys, G_N_ELEMENTS (keys), &error);
  g_assert_no_error (error);
  g_assert_cmpstr (focused, ==, "B");
  assert_calls (f, "keys A 29,56; detach A input-keyboard live|config; "
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
  assert_calls (f, "list A; list B; weight A 256; weight B 256");
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
  assert_calls (f, "list A; list B; weight A 256; weight B 256");
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

/* The switch A -> B has 7 steps; each one fails in turn. */
static void
test_rollback_every_step (Fixture *f, gconstpointer data)
{
  static const struct
  {
    const gchar *call;
    const gchar *undo; /* NULL: none */
    const gchar *what;
    const gchar *reread; /* the domain read back after it failed, or NULL */
  } steps[] = {
    { "keys A 42", NULL, "releasing the held keys in A", NULL },
    { "detach A input-keyboard live|config", "attach A input-keyboard live|config",
      "detaching input-keyboard from A", "A" },
    { "detach A input-mouse live|config", "attach A input-mouse live|config",
      "detaching input-mouse from A", "A" },
    { "attach B input-keyboard live|config", "detach B input-keyboard live|config",
      "attaching input-keyboard to B", "B" },
    { "attach B input-mouse live|config", "detach B input-mouse live|config",
      "attaching input-mouse to B", "B" },
    { "weight B 1024", "weight B 256", "setting the CPU weight of B to 1024", NULL },
    { "weight A 256", "weight A 1024", "setting the CPU weight of A to 256", NULL },
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
        g_ptr_array_add (expected, g_strdup_printf ("list %s", steps[k].reread));
      g_ptr_array_add (expected, NULL);
      want = g_strjoinv ("; ", (gchar **) expected->pdata);
      calls = fake_ops_take_calls (f->fake);
      g_assert_cmpstr (calls, ==, want);

      assert_back_at_a (f);
      g_assert_cmpuint (f->focus_log->len, ==, 1);
    }

  /* And then it works. */
  fake_ops_clear_failures (f->fake);
  switch_ok (f, "B", "B");
  assert_where (f, "input-keyboard", "B");
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
                   "attach A input-keyboard live|config -> failed; list B; list A");
  g_assert_cmpstr (dhf_device_engine_get_focused (f->engine), ==, "A");
  /* The keyboard is nowhere now, and the engine knows it. */
  assert_where (f, "input-keyboard", "dom0");
  assert_status (f, "input-keyboard", "dom0", DHF_DEVICE_MODE_FOLLOW_FOCUS, NULL, "focus");
  assert_status (f, "input-mouse", "A", DHF_DEVICE_MODE_FOLLOW_FOCUS, NULL, "focus");
  g_assert_cmpuint (fake_ops_weight (f->fake, "A"), ==, 1024);

  fake_ops_clear_failures (f->fake);
  dhf_device_engine_policy_changed (f->engine);
  wait_idle (f);
  /* The weights of a failed switch are set again rather than trusted. */
  assert_calls (f, "attach A input-keyboard live|config; weight A 1024; weight B 256");
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
  /* A requester no rule speaks for. */
  switch_fails (f, "A", "A", DHF_ERROR_NOT_AUTHORIZED,
                "switching from A to A is denied: no rule allows it");
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

  /* It starts with it; nothing to attach, only its weight. */
  set_state (f, "corp", TRUE, TRUE);
  wait_idle (f);
  assert_calls (f, "weight corp 256");
  g_assert_true (
      fake_ops_holds (f->fake, "corp", "usb-1-2", DHF_DEVICE_SCOPE_LIVE | DHF_DEVICE_SCOPE_CONFIG));

  /* A running domain gets its pin live and in its definition. A second
   * manifest pin of the same device: the holder keeps it. */
  define (f, "lab", TRUE, FALSE,
          wishes (usb_wish (0x1234, 0x5678, DHF_DEVICE_MODE_PINNED),
                  usb_wish (0x046d, 0xc52b, DHF_DEVICE_MODE_PINNED), NULL));
  wait_idle (f);
  assert_calls (f, "attach lab usb-1-3 live|config; weight lab 256");
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
  assert_calls (f, "list A; list B; list corp; attach corp usb-1-2 live|config; weight A 256; "
                   "weight B 256; weight corp 256");
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
                   "attach B input-keyboard live|config; list corp");
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
  assert_calls (f, "list media; weight media 256");
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
  assert_calls (f, "list corp; attach corp usb-1-2 live|config -> failed; list corp; "
                   "attach corp usb-1-3 live|config; weight corp 256");
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

  /* It starts again without them and gets its normal weight. */
  set_state (f, "A", TRUE, TRUE);
  wait_idle (f);
  assert_calls (f, "weight A 256");
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
  g_assert_cmpstr (calls, ==,
                   "list A; list B; list corp; weight A 256; weight B 1024; weight corp 256");
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
  assert_calls (f, "list A; list B; detach A input-keyboard config; "
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
#undef ADD

  return g_test_run ();
}
