/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include "config.h"

#include <string.h>

#include "dhf-xdm-router-private.h"

/* The services dhfd itself offers on dom0 (org.dhf.framework.*). The
 * router has already checked the call against the policy (target @dom0)
 * before it gets here. Whoami and ListAppliances are computed from the
 * router's state at once; Switch is handed to the display (the router's
 * switch handler) and answered when the switch is done. */

#define SWITCH_SERVICE DHF_XDM_FRAMEWORK_PREFIX "Switch"

#define ADD_KEY(obj, key, value)                                                                   \
  json_object_object_add_ex ((obj), (key), (value),                                                \
                             JSON_C_OBJECT_ADD_KEY_IS_NEW | JSON_C_OBJECT_KEY_IS_CONSTANT)

/* org.dhf.framework.Whoami: who dhfd takes the caller for. */
static json_object *
whoami (DhfXdmRouter *self, DhfXdmLink *caller)
{
  json_object *result = json_object_new_object ();
  DhfPolicyDomain described;

  dhf_xdm_router_describe (self, caller->domain->name, &described);
  ADD_KEY (result, "domain", json_object_new_string (caller->domain->name));
  if (caller->uuid != NULL)
    ADD_KEY (result, "uuid", json_object_new_string (caller->uuid));
  ADD_KEY (result, "transport",
           json_object_new_string (dhf_xdm_transport_to_string (caller->transport)));
  if (caller->transport == DHF_XDM_TRANSPORT_UNIX)
    ADD_KEY (result, "uid", json_object_new_int64 (caller->uid));
  if (described.role != NULL)
    ADD_KEY (result, "role", json_object_new_string (described.role));
  if (described.tags != NULL)
    {
      json_object *tags = json_object_new_array ();

      for (guint i = 0; described.tags[i] != NULL; i++)
        json_object_array_add (tags, json_object_new_string (described.tags[i]));
      ADD_KEY (result, "tags", tags);
    }
  if (described.vendor != NULL)
    ADD_KEY (result, "vendor", json_object_new_string (described.vendor));
  return result;
}

static gint
compare_strings (gconstpointer a, gconstpointer b)
{
  return strcmp (*(const gchar *const *) a, *(const gchar *const *) b);
}

/* One appliance of ListAppliances: role and state from the directory when
 * it knows the domain, else what the policy lookup says (a connected
 * domain is running). */
static json_object *
appliance_entry (DhfXdmRouter *self, const gchar *name, GHashTable *directory, GPtrArray *services)
{
  json_object *entry = json_object_new_object ();
  json_object *list = json_object_new_array ();
  DhfXdmDomainEntry *known = directory != NULL ? g_hash_table_lookup (directory, name) : NULL;
  const gchar *role = NULL;
  const gchar *state = "running";
  DhfPolicyDomain described;

  if (known != NULL)
    {
      role = known->role;
      state = known->state;
    }
  else
    {
      dhf_xdm_router_describe (self, name, &described);
      role = described.role;
    }
  ADD_KEY (entry, "name", json_object_new_string (name));
  if (role != NULL)
    ADD_KEY (entry, "role", json_object_new_string (role));
  if (state != NULL)
    ADD_KEY (entry, "state", json_object_new_string (state));
  if (services != NULL)
    {
      g_ptr_array_sort (services, compare_strings);
      for (guint i = 0; i < services->len; i++)
        json_object_array_add (list, json_object_new_string (g_ptr_array_index (services, i)));
    }
  ADD_KEY (entry, "services", list);
  return entry;
}

/* Whether source may call (allow or ask) the service of reg. Each
 * registration remembers the answer per source until the policy or what
 * the lookup says of domains changes, so that a caller asking again and
 * again costs one evaluation per registration once, not every time. */
static gboolean
listable (DhfXdmRouter *self, DhfPolicy *policy, DhfXdmRegistration *reg, const gchar *source)
{
  gpointer known;
  gboolean allowed;

  if (reg->listable == NULL || reg->listable_gen != self->list_gen)
    {
      g_clear_pointer (&reg->listable, g_hash_table_unref);
      reg->listable = g_hash_table_new_full (g_str_hash, g_str_equal, g_free, NULL);
      reg->listable_gen = self->list_gen;
    }
  if (g_hash_table_lookup_extended (reg->listable, source, NULL, &known))
    return GPOINTER_TO_INT (known);
  allowed = dhf_xdm_router_evaluate (self, policy, reg->service->name, NULL, source,
                                     reg->link->domain->name, NULL)
            != DHF_POLICY_ACTION_DENY;
  g_hash_table_insert (reg->listable, g_strdup (source), GINT_TO_POINTER (allowed));
  return allowed;
}

/* org.dhf.framework.ListAppliances: the caller, and every domain on which
 * it may call (allow or ask) at least one service now registered, with
 * those services. Calls with an argument are not considered: a service
 * listed is one the caller may call as such. */
static json_object *
list_appliances (DhfXdmRouter *self, DhfXdmLink *caller)
{
  const gchar *source = caller->domain->name;
  DhfPolicyStore *store = dhf_policy_service_get_store (self->policy);
  g_autoptr (DhfPolicy) policy = dhf_policy_store_get (store);
  guint64 generation = dhf_policy_store_get_generation (store);
  g_autoptr (GHashTable) offered
      = g_hash_table_new_full (g_str_hash, g_str_equal, NULL, (GDestroyNotify) g_ptr_array_unref);
  g_autoptr (GHashTable) directory = NULL;
  g_autoptr (GPtrArray) entries = NULL;
  g_autoptr (GPtrArray) names = g_ptr_array_new ();
  json_object *result, *appliances;
  GHashTableIter iter;
  gpointer key, value;

  /* A new policy: what the registrations remember is void. */
  if (generation != self->list_policy_gen)
    {
      self->list_policy_gen = generation;
      self->list_gen++;
    }
  g_hash_table_iter_init (&iter, self->services);
  while (g_hash_table_iter_next (&iter, NULL, &value))
    {
      DhfXdmService *svc = value;

      for (guint i = 0; i < svc->regs->len; i++)
        {
          DhfXdmRegistration *reg = g_ptr_array_index (svc->regs, i);
          const gchar *target = reg->link->domain->name;
          GPtrArray *list;

          if (!listable (self, policy, reg, source))
            continue;
          list = g_hash_table_lookup (offered, target);
          if (list == NULL)
            {
              list = g_ptr_array_new ();
              g_hash_table_insert (offered, (gpointer) target, list);
            }
          g_ptr_array_add (list, svc->name);
        }
    }

  if (self->directory != NULL)
    {
      entries = self->directory (self->directory_data);
      directory = g_hash_table_new (g_str_hash, g_str_equal);
      for (guint i = 0; entries != NULL && i < entries->len; i++)
        {
          DhfXdmDomainEntry *entry = g_ptr_array_index (entries, i);

          if (entry->name != NULL)
            g_hash_table_insert (directory, entry->name, entry);
        }
    }

  appliances = json_object_new_array ();
  json_object_array_add (
      appliances, appliance_entry (self, source, directory, g_hash_table_lookup (offered, source)));
  g_hash_table_iter_init (&iter, offered);
  while (g_hash_table_iter_next (&iter, &key, NULL))
    {
      if (!g_str_equal (key, source))
        g_ptr_array_add (names, key);
    }
  g_ptr_array_sort (names, compare_strings);
  for (guint i = 0; i < names->len; i++)
    {
      const gchar *name = g_ptr_array_index (names, i);

      json_object_array_add (
          appliances, appliance_entry (self, name, directory, g_hash_table_lookup (offered, name)));
    }
  result = json_object_new_object ();
  ADD_KEY (result, "appliances", appliances);
  return result;
}

json_object *
dhf_xdm_framework_call (DhfXdmRouter *self, DhfXdmLink *caller, const gchar *service,
                        json_object *params, GError **error)
{
  if (g_str_equal (service, DHF_XDM_FRAMEWORK_PREFIX "Whoami"))
    return whoami (self, caller);
  if (g_str_equal (service, DHF_XDM_FRAMEWORK_PREFIX "ListAppliances"))
    return list_appliances (self, caller);
  g_set_error (error, DHF_ERROR, DHF_ERROR_NOT_FOUND, "dom0 does not provide %s", service);
  return NULL;
}

/* --- org.dhf.framework.Switch ------------------------------------------ */

typedef struct
{
  GWeakRef router; /* to count the switch off when the engine is done; it may go first */
  DhfXdmPending *pending;
  gchar *source;
  gchar *target;
  gboolean to_dom0; /* the caller is dom0: it may learn dom0's own reasons */
} SwitchCall;

static void
switch_call_free (SwitchCall *call)
{
  g_weak_ref_clear (&call->router);
  g_free (call->source);
  g_free (call->target);
  g_free (call);
}

G_DEFINE_AUTOPTR_CLEANUP_FUNC (SwitchCall, switch_call_free)

#define NOT_ALLOWED   "not allowed by the policy"
#define FAILED_UNDONE "the switch failed in dom0 and was undone"

/* What an appliance learns of a failed switch: that it was not allowed,
 * or that dom0 failed, in fixed words. Whether a domain exists, runs or
 * is an environment is no more its business than which rule refused it,
 * and whether the policy would have let it target that domain is not
 * known here: all of these read as the policy's refusal. The real reason
 * goes to the log: at debug level for what any guest can provoke at will,
 * as a message for a failure in dom0. */
static GError *
error_for_caller (SwitchCall *call, const GError *error)
{
  if (call->to_dom0)
    {
      if (error->domain == DHF_ERROR)
        return g_error_copy (error);
      return g_error_new (DHF_ERROR, DHF_ERROR_FAILED, "%s", error->message);
    }
  if (error->domain != DHF_ERROR)
    {
      g_message ("xdm: the switch to %s asked for by %s failed: %s", call->target, call->source,
                 error->message);
      return g_error_new_literal (DHF_ERROR, DHF_ERROR_FAILED, "the switch failed");
    }
  switch (error->code)
    {
      case DHF_ERROR_NOT_AUTHORIZED: /* the policy audits its denies */
      case DHF_ERROR_NOT_FOUND:
      case DHF_ERROR_INVALID_STATE:
      case DHF_ERROR_INVALID_ARGS:
        g_debug ("xdm: %s may not switch to %s: %s", call->source, call->target, error->message);
        return g_error_new_literal (DHF_ERROR, DHF_ERROR_NOT_AUTHORIZED, NOT_ALLOWED);
      case DHF_ERROR_HYPERVISOR:
      case DHF_ERROR_HYPERVISOR_UNAVAILABLE:
      case DHF_ERROR_NOT_SUPPORTED:
        g_message ("xdm: the switch to %s asked for by %s failed: %s", call->target, call->source,
                   error->message);
        return g_error_new_literal (DHF_ERROR, error->code, FAILED_UNDONE);
      default:
        g_message ("xdm: the switch to %s asked for by %s failed: %s", call->target, call->source,
                   error->message);
        return g_error_new_literal (DHF_ERROR, DHF_ERROR_FAILED, "the switch failed");
    }
}

static void
on_switched (const gchar *focused, const GError *error, gpointer done_data)
{
  g_autoptr (SwitchCall) call = done_data;
  g_autoptr (DhfXdmRouter) router = g_weak_ref_get (&call->router);
  json_object *result;

  /* The engine is done with it: the source may ask again. */
  if (router != NULL)
    g_hash_table_remove (router->switching, call->source);
  if (error != NULL)
    {
      g_autoptr (GError) told = NULL;

      /* A caller that gave up or went away is told nothing (the router
       * only forgets the call): nothing to word, nothing to log. */
      if (g_cancellable_is_cancelled (dhf_xdm_pending_get_cancellable (call->pending)))
        {
          dhf_xdm_pending_return_error (call->pending, error);
          return;
        }
      told = error_for_caller (call, error);
      dhf_xdm_pending_return_error (call->pending, told);
      return;
    }
  result = json_object_new_object ();
  ADD_KEY (result, "focused", json_object_new_string (focused));
  dhf_xdm_pending_return (call->pending, result);
}

/* Switch {"target": NAME | "dom0" | "@next" | "@previous"} ->
 * {"focused": NAME}: decided (after the XDM rule that let the caller
 * reach it) by the switch rules, with the caller as SOURCE. */
static gboolean
switch_begin (DhfXdmRouter *self, DhfXdmLink *caller, json_object *params, DhfXdmPending *pending,
              GError **error)
{
  json_object *value = NULL;
  const gchar *target;
  SwitchCall *call;

  if (params == NULL || !json_object_is_type (params, json_type_object)
      || !json_object_object_get_ex (params, "target", &value)
      || !json_object_is_type (value, json_type_string))
    {
      g_set_error (error, DHF_ERROR, DHF_ERROR_INVALID_ARGS,
                   "%s: params must be {\"target\": NAME, \"dom0\", \"@next\" or \"@previous\"}",
                   SWITCH_SERVICE);
      return FALSE;
    }
  target = json_object_get_string (value);
  if (!g_str_equal (target, "@next") && !g_str_equal (target, "@previous")
      && !dhf_xdm_domain_is_valid (target))
    {
      g_set_error (error, DHF_ERROR, DHF_ERROR_INVALID_ARGS,
                   "%s: \"target\" is not a domain's name, nor \"dom0\", \"@next\" or "
                   "\"@previous\"",
                   SWITCH_SERVICE);
      return FALSE;
    }
  if (self->switch_handler == NULL)
    {
      g_set_error (error, DHF_ERROR, DHF_ERROR_NOT_SUPPORTED, "dhfd switches no display here");
      return FALSE;
    }
  /* One at a time per domain, counted until the engine answers, not until
   * the call ends: a request the engine has queued stays queued when its
   * caller cancels, so CALL+CANCEL must not be a way to pile them up. */
  if (g_hash_table_contains (self->switching, caller->domain->name))
    {
      g_set_error (error, DHF_ERROR, DHF_ERROR_LIMIT_EXCEEDED,
                   "a switch requested by %s is still in progress",
                   caller->domain->is_dom0 ? "dom0" : "this appliance");
      return FALSE;
    }
  call = g_new0 (SwitchCall, 1);
  g_weak_ref_init (&call->router, self);
  call->pending = pending;
  call->source = g_strdup (caller->domain->name);
  call->target = g_strdup (target);
  call->to_dom0 = caller->domain->is_dom0;
  g_hash_table_add (self->switching, g_strdup (call->source));
  g_debug ("xdm: %s asks to switch to %s", caller->domain->name, target);
  self->switch_handler (caller->domain->name, target, dhf_xdm_pending_get_cancellable (pending),
                        on_switched, call, self->switch_data);
  return TRUE;
}

gboolean
dhf_xdm_framework_is_async (const gchar *service)
{
  return g_str_equal (service, SWITCH_SERVICE);
}

gboolean
dhf_xdm_framework_call_async (DhfXdmRouter *self, DhfXdmLink *caller, const gchar *service,
                              json_object *params, DhfXdmPending *pending, GError **error)
{
  if (g_str_equal (service, SWITCH_SERVICE))
    return switch_begin (self, caller, params, pending, error);
  g_set_error (error, DHF_ERROR, DHF_ERROR_NOT_FOUND, "dom0 does not provide %s", service);
  return FALSE;
}
