/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include "config.h"

#include <string.h>

#include "dhf-device-engine-private.h"

/* Where every device should be (the claims of dhf-device-engine.h, in
 * their order) and the steps that move a device there. Pure: the state it
 * reads is its input, the policy arrives through the decider. */

void
dhf_plan_entry_free (DhfPlanEntry *entry)
{
  if (entry == NULL)
    return;
  g_free (entry->want);
  g_free (entry->holder);
  g_free (entry->origin);
  g_free (entry->problem);
  g_free (entry);
}

/* One pin on a device: rank 1 admin, 2 policy, 3 manifest. */
typedef struct
{
  guint rank;
  const gchar *domain;
  gchar *origin;
} Claim;

static void
claim_clear (Claim *claim)
{
  g_free (claim->origin);
}

static gint
compare_records (gconstpointer a, gconstpointer b)
{
  const DhfEngDevice *ra = *(DhfEngDevice *const *) a;
  const DhfEngDevice *rb = *(DhfEngDevice *const *) b;

  return strcmp (ra->device->id, rb->device->id);
}

static gint
compare_domains (gconstpointer a, gconstpointer b)
{
  const DhfEngDomain *da = *(DhfEngDomain *const *) a;
  const DhfEngDomain *db = *(DhfEngDomain *const *) b;

  return strcmp (da->name, db->name);
}

static GPtrArray *
sorted_values (GHashTable *table, GCompareFunc compare)
{
  GPtrArray *array = g_ptr_array_new ();
  GHashTableIter iter;
  gpointer value;

  g_hash_table_iter_init (&iter, table);
  while (g_hash_table_iter_next (&iter, NULL, &value))
    g_ptr_array_add (array, value);
  g_ptr_array_sort (array, compare);
  return array;
}

/* The rule's mode= option, if it is one the engine knows. */
static gboolean
verdict_mode (const DhfEngineVerdict *verdict, DhfDeviceMode *mode)
{
  if (verdict->mode == NULL)
    return FALSE;
  if (!dhf_device_mode_from_string (verdict->mode, mode) || *mode == DHF_DEVICE_MODE_DOM0)
    {
      g_debug ("device rule %s: ignoring mode=%s", verdict->rule != NULL ? verdict->rule : "?",
               verdict->mode);
      return FALSE;
    }
  return TRUE;
}

static const DhfManifestDevice *
find_wish (const DhfEngDomain *domain, const DhfDevice *device)
{
  for (guint i = 0; i < domain->wishes->len; i++)
    {
      const DhfManifestDevice *wish = g_ptr_array_index (domain->wishes, i);

      if (dhf_device_matches_wish (device, wish))
        return wish;
    }
  return NULL;
}

/* The device's claims, verdicts[j] being the policy's answer for domain j. */
static GArray *
collect_claims (const DhfPlanInput *input, const DhfEngDevice *record, GPtrArray *domains,
                const DhfEngineVerdict *verdicts, const gchar **admin_missing)
{
  GArray *claims = g_array_new (FALSE, TRUE, sizeof (Claim));
  const gchar *admin = g_hash_table_lookup (input->admin_pins, record->device->id);

  g_array_set_clear_func (claims, (GDestroyNotify) claim_clear);
  *admin_missing = NULL;
  if (admin != NULL)
    {
      const DhfEngDomain *domain = g_hash_table_lookup (input->domains, admin);

      if (domain != NULL)
        {
          Claim claim = { 1, domain->name, g_strdup ("admin") };
          g_array_append_val (claims, claim);
        }
      else
        *admin_missing = admin;
    }
  for (guint j = 0; j < domains->len; j++)
    {
      const DhfEngDomain *domain = g_ptr_array_index (domains, j);
      DhfDeviceMode mode;

      if (verdicts[j].action == DHF_POLICY_ACTION_ALLOW && verdicts[j].target_named
          && verdict_mode (&verdicts[j], &mode) && mode == DHF_DEVICE_MODE_PINNED)
        {
          Claim claim = { 2, domain->name,
                          verdicts[j].rule != NULL ? g_strdup_printf ("policy %s", verdicts[j].rule)
                                                   : g_strdup ("policy") };
          g_array_append_val (claims, claim);
        }
    }
  for (guint j = 0; j < domains->len; j++)
    {
      const DhfEngDomain *domain = g_ptr_array_index (domains, j);
      const DhfManifestDevice *wish = find_wish (domain, record->device);
      DhfDeviceMode mode;

      if (wish == NULL || verdicts[j].action != DHF_POLICY_ACTION_ALLOW)
        continue;
      if (!verdict_mode (&verdicts[j], &mode))
        mode = wish->mode;
      if (mode == DHF_DEVICE_MODE_PINNED)
        {
          Claim claim = { 3, domain->name, g_strdup ("manifest") };
          g_array_append_val (claims, claim);
        }
    }
  return claims;
}

/* Follow-focus towards domain j: the rule says so, or it says nothing and
 * the domain's manifest wishes it. */
static gboolean
follows_focus (const DhfEngDomain *domain, const DhfEngDevice *record,
               const DhfEngineVerdict *verdict)
{
  const DhfManifestDevice *wish;
  DhfDeviceMode mode;

  if (!domain->environment || verdict->action != DHF_POLICY_ACTION_ALLOW)
    return FALSE;
  if (verdict_mode (verdict, &mode))
    return mode == DHF_DEVICE_MODE_FOLLOW_FOCUS;
  wish = find_wish (domain, record->device);
  return wish != NULL && wish->mode == DHF_DEVICE_MODE_FOLLOW_FOCUS;
}

static DhfPlanEntry *
plan_device (const DhfPlanInput *input, const DhfEngDevice *record, GPtrArray *domains)
{
  const DhfDevice *device = record->device;
  g_autofree DhfEngineVerdict *verdicts = g_new0 (DhfEngineVerdict, MAX (domains->len, 1));
  g_autoptr (GArray) claims = NULL;
  const gchar *admin_missing = NULL;
  DhfPlanEntry *entry = g_new0 (DhfPlanEntry, 1);
  const Claim *best = NULL;

  for (guint j = 0; j < domains->len; j++)
    {
      const DhfEngDomain *domain = g_ptr_array_index (domains, j);

      verdicts[j].action = DHF_POLICY_ACTION_DENY;
      if (input->decide != NULL && device->selector != NULL && device->selector[0] != '\0')
        input->decide (DHF_POLICY_KIND_DEVICE, device->selector, DHF_DOM0, domain->name,
                       &verdicts[j], input->decide_data);
    }

  claims = collect_claims (input, record, domains, verdicts, &admin_missing);
  for (guint i = 0; i < claims->len; i++)
    {
      const Claim *claim = &g_array_index (claims, Claim, i);

      /* Equal ranks: the domain that has the device keeps it. */
      if (best == NULL || claim->rank < best->rank
          || (claim->rank == best->rank && g_strcmp0 (claim->domain, record->owner) == 0
              && g_strcmp0 (best->domain, record->owner) != 0))
        best = claim;
    }

  if (best != NULL)
    {
      g_autoptr (GString) others = g_string_new (NULL);

      entry->want = g_strdup (best->domain);
      entry->mode = DHF_DEVICE_MODE_PINNED;
      entry->holder = g_strdup (best->domain);
      entry->origin = g_strdup (best->origin);
      for (guint i = 0; i < claims->len; i++)
        {
          const Claim *claim = &g_array_index (claims, Claim, i);

          if (claim == best || claim->rank != best->rank)
            continue;
          g_string_append_printf (others, "%s%s (%s)", others->len > 0 ? ", " : "", claim->domain,
                                  claim->origin);
        }
      if (others->len > 0)
        entry->problem
            = g_strdup_printf ("also pinned to %s; %s keeps it", others->str, best->domain);
    }
  else
    {
      const gchar *focus_gets = NULL;
      gboolean follows = FALSE;

      for (guint j = 0; j < domains->len; j++)
        {
          const DhfEngDomain *domain = g_ptr_array_index (domains, j);

          if (!follows_focus (domain, record, &verdicts[j]))
            continue;
          follows = TRUE;
          if (g_strcmp0 (domain->name, input->focus) == 0 && domain->running)
            focus_gets = domain->name;
        }
      entry->want = g_strdup (focus_gets != NULL ? focus_gets : DHF_DOM0);
      entry->mode = follows ? DHF_DEVICE_MODE_FOLLOW_FOCUS : DHF_DEVICE_MODE_DOM0;
      entry->origin = g_strdup (follows ? "focus" : "none");
    }

  if (admin_missing != NULL && entry->problem == NULL)
    entry->problem = g_strdup_printf ("pinned to %s (admin), which is not defined", admin_missing);

  if (g_strcmp0 (entry->want, DHF_DOM0) != 0 && device->kind == DHF_DEVICE_KIND_PCI)
    {
      if (device->pci_bridge)
        {
          g_free (entry->problem);
          entry->problem = g_strdup ("a PCI bridge stays with dom0");
          g_free (entry->want);
          entry->want = g_strdup (DHF_DOM0);
        }
      else if (device->iommu_group < 0)
        {
          g_free (entry->problem);
          entry->problem = g_strdup_printf ("cannot be assigned to %s: it is in no IOMMU group "
                                            "(the host has no IOMMU enabled)",
                                            entry->want);
          g_free (entry->want);
          entry->want = g_strdup (record->owner);
        }
    }

  for (guint j = 0; j < domains->len; j++)
    dhf_engine_verdict_clear (&verdicts[j]);
  return entry;
}

/* A PCI function may only go where every other function of its IOMMU
 * group goes, unless that one has no host driver: VFIO hands a group to
 * one guest as a whole. One that may not stays where it is; that can keep
 * others of the group back in turn, hence the loop. */
static void
check_iommu_groups (GPtrArray *records, GHashTable *entries)
{
  gboolean changed = TRUE;
  g_autoptr (GHashTable) blocked = g_hash_table_new (g_str_hash, g_str_equal);

  while (changed)
    {
      changed = FALSE;
      for (guint i = 0; i < records->len; i++)
        {
          const DhfEngDevice *record = g_ptr_array_index (records, i);
          const DhfDevice *device = record->device;
          DhfPlanEntry *entry = g_hash_table_lookup (entries, device->id);
          g_autoptr (GString) blockers = NULL;

          if (device->kind != DHF_DEVICE_KIND_PCI || !record->present || device->pci_bridge
              || device->iommu_group < 0 || g_strcmp0 (entry->want, DHF_DOM0) == 0
              || g_hash_table_contains (blocked, device->id))
            continue;
          for (guint k = 0; k < records->len; k++)
            {
              const DhfEngDevice *other = g_ptr_array_index (records, k);
              const DhfPlanEntry *other_entry;

              if (other == record || !other->present || other->device->kind != DHF_DEVICE_KIND_PCI
                  || other->device->pci_bridge || other->device->iommu_group != device->iommu_group
                  || other->device->pci_driver == NULL)
                continue;
              other_entry = g_hash_table_lookup (entries, other->device->id);
              if (g_strcmp0 (other_entry->want, entry->want) == 0)
                continue;
              if (blockers == NULL)
                blockers = g_string_new (NULL);
              g_string_append_printf (blockers, "%s%s (driver %s)", blockers->len > 0 ? ", " : "",
                                      other->device->id, other->device->pci_driver);
            }
          if (blockers == NULL)
            continue;
          g_hash_table_add (blocked, device->id);
          g_free (entry->problem);
          entry->problem = g_strdup_printf (
              "cannot go to %s: IOMMU group %d also holds %s, which stays behind with a host "
              "driver; give it to %s too or unbind its driver",
              entry->want, device->iommu_group, blockers->str, entry->want);
          if (g_strcmp0 (entry->want, record->owner) != 0)
            {
              g_free (entry->want);
              entry->want = g_strdup (record->owner);
              changed = TRUE;
            }
        }
    }
}

GHashTable *
dhf_plan_compute (const DhfPlanInput *input)
{
  GHashTable *entries = g_hash_table_new_full (g_str_hash, g_str_equal, g_free,
                                               (GDestroyNotify) dhf_plan_entry_free);
  g_autoptr (GPtrArray) records = sorted_values (input->devices, compare_records);
  g_autoptr (GPtrArray) domains = sorted_values (input->domains, compare_domains);

  for (guint i = 0; i < records->len; i++)
    {
      const DhfEngDevice *record = g_ptr_array_index (records, i);

      g_hash_table_insert (entries, g_strdup (record->device->id),
                           plan_device (input, record, domains));
    }
  check_iommu_groups (records, entries);
  return entries;
}

/* --- steps ------------------------------------------------------------- */

DhfStep *
dhf_step_new_device (DhfStepKind kind, const DhfDevice *device, const gchar *domain,
                     DhfDeviceScope scope)
{
  DhfStep *step = g_new0 (DhfStep, 1);

  g_return_val_if_fail (kind == DHF_STEP_ATTACH || kind == DHF_STEP_DETACH, NULL);
  step->kind = kind;
  step->domain = g_strdup (domain);
  step->device_id = g_strdup (device->id);
  step->xml = dhf_device_to_xml (device);
  step->scope = scope;
  return step;
}

DhfStep *
dhf_step_new_weight (const gchar *domain, guint weight, guint undo_weight)
{
  DhfStep *step = g_new0 (DhfStep, 1);

  step->kind = DHF_STEP_SET_WEIGHT;
  step->domain = g_strdup (domain);
  step->weight = weight;
  step->undo_weight = undo_weight;
  return step;
}

DhfStep *
dhf_step_new_release_keys (const gchar *domain, const guint *keys, guint n_keys)
{
  DhfStep *step = g_new0 (DhfStep, 1);

  step->kind = DHF_STEP_RELEASE_KEYS;
  step->domain = g_strdup (domain);
  step->keys = g_memdup2 (keys, sizeof (guint) * n_keys);
  step->n_keys = n_keys;
  return step;
}

void
dhf_step_free (DhfStep *step)
{
  if (step == NULL)
    return;
  g_free (step->domain);
  g_free (step->device_id);
  g_free (step->xml);
  g_free (step->keys);
  g_free (step);
}

gchar *
dhf_step_describe (const DhfStep *step)
{
  switch (step->kind)
    {
      case DHF_STEP_ATTACH:
        return g_strdup_printf ("attaching %s to %s", step->device_id, step->domain);
      case DHF_STEP_DETACH:
        return g_strdup_printf ("detaching %s from %s", step->device_id, step->domain);
      case DHF_STEP_SET_WEIGHT:
        return g_strdup_printf ("setting the CPU weight of %s to %u", step->domain, step->weight);
      case DHF_STEP_RELEASE_KEYS:
        return g_strdup_printf ("releasing the held keys in %s", step->domain);
      default:
        g_return_val_if_reached (g_strdup ("?"));
    }
}

DhfDeviceScope
dhf_plan_scope (const DhfEngDomain *domain)
{
  /* A domain that is not running has no live devices: only its
   * definition can change. */
  if (domain->active)
    return DHF_DEVICE_SCOPE_LIVE | DHF_DEVICE_SCOPE_CONFIG;
  return DHF_DEVICE_SCOPE_CONFIG;
}

void
dhf_plan_move_steps (const DhfEngDevice *record, const gchar *to, GHashTable *domains,
                     GPtrArray *detaches, GPtrArray *attaches)
{
  if (g_strcmp0 (record->owner, DHF_DOM0) != 0)
    {
      const DhfEngDomain *from = g_hash_table_lookup (domains, record->owner);

      if (from != NULL)
        g_ptr_array_add (detaches, dhf_step_new_device (DHF_STEP_DETACH, record->device, from->name,
                                                        dhf_plan_scope (from)));
    }
  if (g_strcmp0 (to, DHF_DOM0) != 0)
    {
      const DhfEngDomain *domain = g_hash_table_lookup (domains, to);

      g_return_if_fail (domain != NULL);
      g_ptr_array_add (attaches, dhf_step_new_device (DHF_STEP_ATTACH, record->device, domain->name,
                                                      dhf_plan_scope (domain)));
    }
}
