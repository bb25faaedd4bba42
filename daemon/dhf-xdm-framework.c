/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include "config.h"

#include <string.h>

#include "dhf-xdm-router-private.h"

/* The services dhfd itself offers on dom0 (org.dhf.framework.*). The
 * router has already checked the call against the policy (target @dom0)
 * before it gets here; what they answer is computed from the router's
 * state at once, so they never block. */

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
