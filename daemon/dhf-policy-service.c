/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include "config.h"

#include "dhf-policy-service.h"

struct _DhfPolicyService
{
  DhfDBusPolicySkeleton parent_instance;

  DhfPolicyStore *store;
  DhfAuthority *authority;
  DhfPolicyAudit *audit;
  DhfPolicyDomainLookup lookup;
  gpointer lookup_data;
  gboolean reloading; /* our own reload: publish once, after it */
};

G_DEFINE_TYPE (DhfPolicyService, dhf_policy_service, DHF_DBUS_TYPE_POLICY_SKELETON)

enum
{
  SIGNAL_PUBLISHED,
  N_SIGNALS
};

static guint signals[N_SIGNALS];

/* Every option a rule may set; Test reports the ones the matching rule has. */
static const gchar *const option_keys[] = { "notify", "target", "quota", "mode", "host" };

static const DhfPolicyDomain dom0 = { .name = "dom0", .is_dom0 = TRUE };

/* The line Diagnostics (and Reload's reply) ends with while degraded:
 * what is in force instead of the files on disk. dhfctl shows it. */
static gchar *
dup_in_force_note (DhfPolicyService *self)
{
  if (!dhf_policy_store_is_degraded (self->store))
    return NULL;
  return g_strdup_printf ("note: the policy files were refused; %s",
                          dhf_policy_source_describe (dhf_policy_store_get_source (self->store)));
}

static GStrv
format_diagnostics (DhfPolicyService *self, GPtrArray *diagnostics)
{
  GPtrArray *lines = g_ptr_array_new ();
  gchar *note = dup_in_force_note (self);

  for (guint i = 0; diagnostics != NULL && i < diagnostics->len; i++)
    g_ptr_array_add (lines, dhf_policy_diagnostic_format (g_ptr_array_index (diagnostics, i)));
  if (note != NULL)
    g_ptr_array_add (lines, note);
  g_ptr_array_add (lines, NULL);
  return (GStrv) g_ptr_array_free (lines, FALSE);
}

gchar *
dhf_policy_service_dup_status_reason (DhfPolicyService *self)
{
  guint n_errors, n_warnings;

  if (!dhf_policy_store_is_degraded (self->store))
    return NULL;
  /* The true count, not the length of a list capped with "... N more". */
  dhf_policy_count_diagnostics (dhf_policy_store_get_diagnostics (self->store), &n_errors,
                                &n_warnings);
  return g_strdup_printf ("policy: %u error%s in the policy files; %s (see dhfctl policy check)",
                          n_errors, n_errors == 1 ? "" : "s",
                          dhf_policy_source_describe (dhf_policy_store_get_source (self->store)));
}

/* Publishes the outcome of a reload attempt. The store logs the errors
 * and what came into force; warnings (shadowed rules) are logged here, so
 * that the journal has everything an administrator edited wrong. */
static void
publish (DhfPolicyService *self)
{
  DhfDBusPolicy *iface = DHF_DBUS_POLICY (self);
  g_autoptr (DhfPolicy) policy = dhf_policy_store_get (self->store);
  GPtrArray *diagnostics = dhf_policy_store_get_diagnostics (self->store);
  gboolean degraded = dhf_policy_store_is_degraded (self->store);
  guint64 generation = dhf_policy_store_get_generation (self->store);
  g_auto (GStrv) lines = format_diagnostics (self, diagnostics);
  const gchar *const *files = dhf_policy_get_files (policy);

  for (guint i = 0; diagnostics != NULL && i < diagnostics->len; i++)
    {
      const DhfPolicyDiagnostic *diagnostic = g_ptr_array_index (diagnostics, i);

      if (diagnostic->severity == DHF_POLICY_SEVERITY_WARNING)
        g_message ("policy: %s", lines[i]);
    }
  g_debug ("policy: publishing generation %" G_GUINT64_FORMAT " (%u rules, %s)", generation,
           dhf_policy_get_n_rules (policy),
           dhf_policy_source_describe (dhf_policy_store_get_source (self->store)));

  dhf_dbus_policy_set_files (iface, files != NULL ? files : (const gchar *const[]){ NULL });
  dhf_dbus_policy_set_rules (iface, dhf_policy_get_n_rules (policy));
  dhf_dbus_policy_set_degraded (iface, degraded);
  dhf_dbus_policy_set_diagnostics (iface, (const gchar *const *) lines);
  dhf_dbus_policy_set_generation (iface, generation);
  /* PropertiesChanged goes out now, ahead of a Reload reply. */
  g_dbus_interface_skeleton_flush (G_DBUS_INTERFACE_SKELETON (self));
  g_signal_emit (self, signals[SIGNAL_PUBLISHED], 0);
}

/* Reloads started by the store's own watch. */
static void
on_store_reloaded (DhfPolicyStore *store, gboolean applied, DhfPolicyService *self)
{
  if (!self->reloading)
    publish (self);
}

gboolean
dhf_policy_service_reload (DhfPolicyService *self)
{
  gboolean applied;

  self->reloading = TRUE;
  applied = dhf_policy_store_reload (self->store);
  self->reloading = FALSE;
  publish (self);
  return applied;
}

void
dhf_policy_service_start (DhfPolicyService *self)
{
  dhf_policy_service_reload (self);
  dhf_policy_store_watch (self->store);
}

DhfPolicy *
dhf_policy_service_decide (DhfPolicyService *self, const DhfPolicyQuery *query,
                           DhfPolicyDecision *decision)
{
  DhfPolicy *policy = dhf_policy_store_get (self->store);

  dhf_policy_evaluate (policy, query, decision);
  dhf_policy_audit_deny (self->audit, query, decision);
  return policy;
}

DhfPolicyStore *
dhf_policy_service_get_store (DhfPolicyService *self)
{
  return self->store;
}

/* --- D-Bus ------------------------------------------------------------ */

typedef struct
{
  DhfPolicyService *self;
  GDBusMethodInvocation *invocation;
} ReloadCall;

static void
reload_call_free (ReloadCall *call)
{
  g_clear_object (&call->self);
  g_free (call);
}

G_DEFINE_AUTOPTR_CLEANUP_FUNC (ReloadCall, reload_call_free)

static void
on_reload_authorized (GObject *source, GAsyncResult *result, gpointer user_data)
{
  g_autoptr (ReloadCall) call = user_data;
  g_autoptr (GError) error = NULL;
  g_auto (GStrv) lines = NULL;
  gboolean applied;

  if (!dhf_authority_check_finish (DHF_AUTHORITY (source), result, &error))
    {
      g_dbus_method_invocation_return_gerror (g_steal_pointer (&call->invocation), error);
      return;
    }
  g_message ("policy: reloading on request of %s",
             g_dbus_method_invocation_get_sender (call->invocation));
  applied = dhf_policy_service_reload (call->self);
  lines = format_diagnostics (call->self, dhf_policy_store_get_diagnostics (call->self->store));
  dhf_dbus_policy_complete_reload (DHF_DBUS_POLICY (call->self),
                                   g_steal_pointer (&call->invocation), applied,
                                   (const gchar *const *) lines);
}

static gboolean
handle_reload (DhfDBusPolicy *iface, GDBusMethodInvocation *invocation, DhfPolicyService *self)
{
  ReloadCall *call = g_new0 (ReloadCall, 1);

  call->self = g_object_ref (self);
  call->invocation = invocation; /* the handler owns it until it completes it */
  dhf_authority_check_async (self->authority, invocation, DHF_ACTION_POLICY_RELOAD, NULL,
                             on_reload_authorized, call);
  return G_DBUS_METHOD_INVOCATION_HANDLED;
}

/* "dom0" (or "@dom0", as rules write it) is the host; anything else names an
 * appliance dhfd knows. */
static gboolean
resolve_domain (DhfPolicyService *self, const gchar *what, const gchar *name,
                DhfPolicyDomain *domain, GError **error)
{
  if (g_str_equal (name, "dom0") || g_str_equal (name, "@dom0"))
    {
      /* Of dom0 the lookup may only say whether it is focused (@focused). */
      DhfPolicyDomain known = { 0 };

      *domain = dom0;
      domain->focused = self->lookup != NULL && self->lookup ("dom0", &known, self->lookup_data)
                        && known.focused;
      return TRUE;
    }
  if (*name == '\0' || *name == '@')
    {
      g_set_error (error, DHF_ERROR, DHF_ERROR_INVALID_ARGS, "%s '%s': expected %s", what, name,
                   g_str_equal (what, "target")
                       ? "an appliance's name, dom0, @next, @previous or @outside"
                       : "an appliance's name or dom0");
      return FALSE;
    }
  if (self->lookup == NULL || !self->lookup (name, domain, self->lookup_data))
    {
      g_set_error (error, DHF_ERROR, DHF_ERROR_NOT_FOUND, "no appliance named '%s'", name);
      return FALSE;
    }
  return TRUE;
}

/* The symbolic targets, and the one kind of rule each belongs to. */
static gboolean
symbolic_target (const gchar *target, DhfPolicyKind kind, GError **error)
{
  static const struct
  {
    const gchar *token;
    DhfPolicyKind kind;
  } tokens[] = {
    { "@next", DHF_POLICY_KIND_HOTKEY },
    { "@previous", DHF_POLICY_KIND_HOTKEY },
    { "@outside", DHF_POLICY_KIND_NETWORK },
  };

  for (guint i = 0; i < G_N_ELEMENTS (tokens); i++)
    {
      if (!g_str_equal (tokens[i].token, target))
        continue;
      if (tokens[i].kind == kind)
        return TRUE;
      g_set_error (error, DHF_ERROR, DHF_ERROR_INVALID_ARGS, "target %s only applies to %s: rules",
                   target, dhf_policy_kind_to_string (tokens[i].kind));
      return FALSE;
    }
  return FALSE;
}

static GVariant *
rule_options (const DhfPolicyRule *rule)
{
  GVariantBuilder builder;

  g_variant_builder_init (&builder, G_VARIANT_TYPE ("a{ss}"));
  for (guint i = 0; rule != NULL && i < G_N_ELEMENTS (option_keys); i++)
    {
      const gchar *value = dhf_policy_rule_get_option (rule, option_keys[i]);

      if (value != NULL)
        g_variant_builder_add (&builder, "{ss}", option_keys[i], value);
    }
  return g_variant_builder_end (&builder);
}

/* A question, not a decision: evaluated like one, but never audited. */
static gboolean
handle_test (DhfDBusPolicy *iface, GDBusMethodInvocation *invocation, const gchar *subject_text,
             const gchar *source_name, const gchar *target_name, DhfPolicyService *self)
{
  g_autoptr (GError) error = NULL;
  g_autoptr (DhfPolicy) policy = NULL;
  g_autofree gchar *subject = NULL;
  g_autofree gchar *argument = NULL;
  g_autofree gchar *rule_text = NULL;
  DhfPolicyDomain source = { 0 }, target = { 0 };
  DhfPolicyQuery query = { 0 };
  DhfPolicyDecision decision = { 0 };
  DhfPolicyKind kind;

  if (!dhf_policy_parse_subject (subject_text, &kind, &subject, &argument, &error))
    {
      g_dbus_method_invocation_return_error (invocation, DHF_ERROR, DHF_ERROR_INVALID_ARGS,
                                             "subject '%s': %s", subject_text,
                                             error != NULL ? error->message : "invalid");
      return G_DBUS_METHOD_INVOCATION_HANDLED;
    }
  query.kind = kind;
  query.subject = subject;
  query.argument = argument;
  if (!resolve_domain (self, "source", source_name, &source, &error))
    {
      g_dbus_method_invocation_return_gerror (invocation, error);
      return G_DBUS_METHOD_INVOCATION_HANDLED;
    }
  query.source = &source;
  if (symbolic_target (target_name, kind, &error))
    {
      query.target_token = target_name;
    }
  else if (error == NULL && resolve_domain (self, "target", target_name, &target, &error))
    {
      query.target = &target;
    }
  if (error != NULL)
    {
      g_dbus_method_invocation_return_gerror (invocation, error);
      return G_DBUS_METHOD_INVOCATION_HANDLED;
    }

  policy = dhf_policy_store_get (self->store);
  dhf_policy_evaluate (policy, &query, &decision);
  if (decision.rule != NULL)
    rule_text = dhf_policy_rule_to_string (decision.rule);
  dhf_dbus_policy_complete_test (
      iface, invocation, dhf_policy_action_to_string (decision.action),
      rule_text != NULL ? rule_text : "",
      decision.rule != NULL ? dhf_policy_rule_get_file (decision.rule) : "",
      decision.rule != NULL ? dhf_policy_rule_get_line (decision.rule) : 0,
      rule_options (decision.rule));
  return G_DBUS_METHOD_INVOCATION_HANDLED;
}

static gboolean
handle_show (DhfDBusPolicy *iface, GDBusMethodInvocation *invocation, DhfPolicyService *self)
{
  g_autoptr (DhfPolicy) policy = dhf_policy_store_get (self->store);
  g_autofree gchar *text = dhf_policy_to_string (policy);

  dhf_dbus_policy_complete_show (iface, invocation, text != NULL ? text : "");
  return G_DBUS_METHOD_INVOCATION_HANDLED;
}

/* --- GObject ---------------------------------------------------------- */

DhfPolicyService *
dhf_policy_service_new (DhfPolicyStore *store, DhfAuthority *authority,
                        DhfPolicyDomainLookup lookup, gpointer user_data)
{
  DhfPolicyService *self = g_object_new (DHF_TYPE_POLICY_SERVICE, NULL);

  self->store = g_object_ref (store);
  self->authority = g_object_ref (authority);
  self->lookup = lookup;
  self->lookup_data = user_data;
  /* Every attempt, refused ones from the file watch included, is
   * published: a broken edit must show up as Degraded by itself. */
  g_signal_connect (store, "reloaded", G_CALLBACK (on_store_reloaded), self);
  g_signal_connect (self, "handle-reload", G_CALLBACK (handle_reload), self);
  g_signal_connect (self, "handle-test", G_CALLBACK (handle_test), self);
  g_signal_connect (self, "handle-show", G_CALLBACK (handle_show), self);
  return self;
}

static void
dhf_policy_service_init (DhfPolicyService *self)
{
  self->audit = dhf_policy_audit_new ();
}

static void
dhf_policy_service_dispose (GObject *object)
{
  DhfPolicyService *self = DHF_POLICY_SERVICE (object);

  if (self->store != NULL)
    g_signal_handlers_disconnect_by_data (self->store, self);
  g_clear_object (&self->store);
  g_clear_object (&self->authority);
  G_OBJECT_CLASS (dhf_policy_service_parent_class)->dispose (object);
}

static void
dhf_policy_service_finalize (GObject *object)
{
  DhfPolicyService *self = DHF_POLICY_SERVICE (object);

  g_clear_pointer (&self->audit, dhf_policy_audit_free);
  G_OBJECT_CLASS (dhf_policy_service_parent_class)->finalize (object);
}

static void
dhf_policy_service_class_init (DhfPolicyServiceClass *klass)
{
  GObjectClass *object_class = G_OBJECT_CLASS (klass);

  object_class->dispose = dhf_policy_service_dispose;
  object_class->finalize = dhf_policy_service_finalize;

  /* published: a reload attempt's outcome is on the bus */
  signals[SIGNAL_PUBLISHED] = g_signal_new ("published", G_TYPE_FROM_CLASS (klass),
                                            G_SIGNAL_RUN_LAST, 0, NULL, NULL, NULL, G_TYPE_NONE, 0);
}
