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

/* Why an admin pin to domain claims nothing, or NULL when it claims. An
 * admin pin is checked against the policy like any claim: a rule that
 * denies the device there now (or asks: a device cannot wait) wins. */
static gchar *
admin_pin_refused (const gchar *admin, GPtrArray *domains, const DhfEngineVerdict *verdicts)
{
  for (guint j = 0; j < domains->len; j++)
    {
      const DhfEngDomain *domain = g_ptr_array_index (domains, j);

      if (g_strcmp0 (domain->name, admin) != 0)
        continue;
      switch (verdicts[j].action)
        {
          case DHF_POLICY_ACTION_ALLOW:
            return NULL;
          case DHF_POLICY_ACTION_ASK:
            return g_strdup_printf ("pinned to %s (admin), but %s asks and a device cannot wait "
                                    "for an answer",
                                    admin, verdicts[j].rule != NULL ? verdicts[j].rule : "a rule");
          case DHF_POLICY_ACTION_DENY:
          default:
            if (verdicts[j].rule != NULL)
              return g_strdup_printf ("pinned to %s (admin), denied by %s", admin,
                                      verdicts[j].rule);
            return g_strdup_printf ("pinned to %s (admin), denied: no rule allows it", admin);
        }
    }
  return g_strdup_printf ("pinned to %s (admin), which is not defined", admin);
}

/* The device's claims, verdicts[j] being the policy's answer for domain j;
 * *admin_problem says why an admin pin claims nothing. */
static GArray *
collect_claims (const DhfPlanInput *input, const DhfEngDevice *record, GPtrArray *domains,
                const DhfEngineVerdict *verdicts, gchar **admin_problem)
{
  GArray *claims = g_array_new (FALSE, TRUE, sizeof (Claim));
  const DhfAdminPin *admin = g_hash_table_lookup (input->admin_pins, record->device->id);

  g_array_set_clear_func (claims, (GDestroyNotify) claim_clear);
  *admin_problem = NULL;
  /* The id of a USB device is its port: a pin made for one device does
   * not hold for another plugged in there. It is kept for its own. */
  if (admin != NULL && !dhf_admin_pin_matches (admin, record->device))
    *admin_problem = g_strdup_printf (
        "%s is pinned to %s (admin) for %s; this is another device (%s): the pin waits for "
        "its own",
        record->device->id, admin->domain, admin->selector,
        record->device->selector != NULL && record->device->selector[0] != '\0'
            ? record->device->selector
            : "unknown");
  else if (admin != NULL)
    {
      *admin_problem = admin_pin_refused (admin->domain, domains, verdicts);
      if (*admin_problem == NULL)
        {
          Claim claim = { 1, admin->domain, g_strdup ("admin") };
          g_array_append_val (claims, claim);
        }
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
  g_autofree gchar *admin_problem = NULL;
  DhfPlanEntry *entry = g_new0 (DhfPlanEntry, 1);
  const Claim *best = NULL;

  for (guint j = 0; j < domains->len; j++)
    {
      const DhfEngDomain *domain = g_ptr_array_index (domains, j);

      verdicts[j].action = DHF_POLICY_ACTION_DENY;
      if (device->selector != NULL && device->selector[0] != '\0')
        input->decide (DHF_POLICY_KIND_DEVICE, device->selector, DHF_DOM0, domain->name,
                       &verdicts[j], input->decide_data);
    }

  claims = collect_claims (input, record, domains, verdicts, &admin_problem);
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

  if (admin_problem != NULL && entry->problem == NULL)
    entry->problem = g_steal_pointer (&admin_problem);

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

/* A member of an IOMMU group that VFIO hands over as a whole: a present,
 * non-bridge PCI function of a group. */
static gboolean
is_group_member (const DhfEngDevice *record)
{
  const DhfDevice *device = record->device;

  return device->kind == DHF_DEVICE_KIND_PCI && record->present && !device->pci_bridge
         && device->iommu_group >= 0;
}

/* Whether other, placed at where_other, keeps a sibling from being at
 * where: a group is in at most one guest, and while it is, no function of
 * it may be in dom0 with a host driver (vfio-pci counts: a function that
 * leaves a guest gets its host driver back). */
static gboolean
blocks (const gchar *where, const gchar *where_other, const DhfEngDevice *self_record,
        const DhfEngDevice *other)
{
  gboolean here = g_strcmp0 (where, DHF_DOM0) == 0;
  gboolean there = g_strcmp0 (where_other, DHF_DOM0) == 0;

  if (g_strcmp0 (where, where_other) == 0)
    return FALSE;
  if (!here && !there)
    return TRUE; /* two guests */
  if (!here)
    return other->device->pci_driver != NULL;
  /* This one in dom0, the other in a guest. */
  return self_record->device->pci_driver != NULL;
}

/* The siblings that keep record from being at where, each placed as
 * entries say; NULL when none does. */
static GString *
group_blockers (GPtrArray *records, GHashTable *entries, const DhfEngDevice *record,
                const gchar *where)
{
  GString *blockers = NULL;

  for (guint k = 0; k < records->len; k++)
    {
      const DhfEngDevice *other = g_ptr_array_index (records, k);
      const DhfPlanEntry *other_entry;

      if (other == record || !is_group_member (other)
          || other->device->iommu_group != record->device->iommu_group)
        continue;
      other_entry = g_hash_table_lookup (entries, other->device->id);
      if (!blocks (where, other_entry->want, record, other))
        continue;
      if (blockers == NULL)
        blockers = g_string_new (NULL);
      else
        g_string_append (blockers, ", ");
      if (g_strcmp0 (other_entry->want, DHF_DOM0) == 0)
        g_string_append_printf (blockers, "%s (driver %s) in dom0", other->device->id,
                                other->device->pci_driver);
      else
        g_string_append_printf (blockers, "%s in %s", other->device->id, other_entry->want);
    }
  return blockers;
}

/* VFIO hands an IOMMU group to one guest as a whole, and the host may not
 * drive a function of a group a guest has. So a function goes where it
 * should only when that keeps its group whole, both ways: into a guest
 * only if every sibling with a host driver goes there too, and out of one
 * only if no sibling stays. One that may not stays where it is; that can
 * hold back others in turn, hence the loop (it ends: each round moves a
 * function back to its owner for good). */
static void
check_iommu_groups (GPtrArray *records, GHashTable *entries)
{
  g_autoptr (GHashTable) wanted = g_hash_table_new_full (g_str_hash, g_str_equal, NULL, g_free);
  gboolean changed = TRUE;

  for (guint i = 0; i < records->len; i++)
    {
      const DhfEngDevice *record = g_ptr_array_index (records, i);
      const DhfPlanEntry *entry = g_hash_table_lookup (entries, record->device->id);

      if (is_group_member (record))
        g_hash_table_insert (wanted, record->device->id, g_strdup (entry->want));
    }

  while (changed)
    {
      changed = FALSE;
      for (guint i = 0; i < records->len; i++)
        {
          const DhfEngDevice *record = g_ptr_array_index (records, i);
          DhfPlanEntry *entry = g_hash_table_lookup (entries, record->device->id);
          g_autoptr (GString) blockers = NULL;

          if (!is_group_member (record) || g_strcmp0 (entry->want, record->owner) == 0)
            continue;
          blockers = group_blockers (records, entries, record, entry->want);
          if (blockers == NULL)
            continue;
          g_free (entry->want);
          entry->want = g_strdup (record->owner);
          changed = TRUE;
        }
    }

  /* Why each one is not where it should be, or why its group is split. */
  for (guint i = 0; i < records->len; i++)
    {
      const DhfEngDevice *record = g_ptr_array_index (records, i);
      DhfPlanEntry *entry = g_hash_table_lookup (entries, record->device->id);
      const gchar *want = g_hash_table_lookup (wanted, record->device->id);
      g_autoptr (GString) blockers = NULL;

      if (want == NULL)
        continue;
      blockers = group_blockers (records, entries, record, want);
      if (blockers == NULL)
        continue;
      g_free (entry->problem);
      if (g_strcmp0 (want, DHF_DOM0) == 0)
        entry->problem = g_strdup_printf (
            "cannot go to dom0: IOMMU group %d also holds %s; a group leaves its guest whole",
            record->device->iommu_group, blockers->str);
      else
        entry->problem = g_strdup_printf (
            "cannot go to %s: IOMMU group %d also holds %s; a group goes to one guest whole: "
            "give those to %s too, or unbind the host drivers of those in dom0",
            want, record->device->iommu_group, blockers->str, want);
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

/* --- held keys --------------------------------------------------------- */

/* The modifiers (linux/input-event-codes.h): the keys a switch combo holds
 * that the domain losing the focus must not keep down. */
static const guint modifier_keys[] = {
  29,  /* KEY_LEFTCTRL */
  97,  /* KEY_RIGHTCTRL */
  56,  /* KEY_LEFTALT */
  100, /* KEY_RIGHTALT */
  42,  /* KEY_LEFTSHIFT */
  54,  /* KEY_RIGHTSHIFT */
  125, /* KEY_LEFTMETA */
  126, /* KEY_RIGHTMETA */
};

static gboolean
is_modifier (guint key)
{
  for (guint i = 0; i < G_N_ELEMENTS (modifier_keys); i++)
    {
      if (modifier_keys[i] == key)
        return TRUE;
    }
  return FALSE;
}

/* A device that may carry the keys the user holds: an emulated keyboard,
 * or any USB device (a USB keyboard is one, and a USB device does not say
 * which it is here). */
static gboolean
may_be_keyboard (const DhfDevice *device)
{
  return device->kind == DHF_DEVICE_KIND_USB
         || (device->kind == DHF_DEVICE_KIND_INPUT
             && g_strcmp0 (device->input_type, "keyboard") == 0);
}

GArray *
dhf_plan_released_keys (const gchar *domain, const guint *keys, guint n_keys,
                        const GPtrArray *steps, GHashTable *devices)
{
  g_autoptr (GArray) released = NULL;

  /* Unplugging a keyboard releases its keys in the guest (the guest's
   * input core does, for a device that goes); virDomainSendKey presses
   * every key it is given before it lets go, so sending the combo again
   * would replay it there (Ctrl+Alt+Delete: the secure-attention key). */
  for (guint i = 0; steps != NULL && i < steps->len; i++)
    {
      const DhfStep *step = g_ptr_array_index ((GPtrArray *) steps, i);
      const DhfEngDevice *record;

      if (step->kind != DHF_STEP_DETACH || g_strcmp0 (step->domain, domain) != 0)
        continue;
      record = g_hash_table_lookup (devices, step->device_id);
      if (record != NULL && may_be_keyboard (record->device))
        return NULL;
    }
  /* Only modifiers: a modifier the guest already holds is not pressed
   * again by another press, so the net effect is its release; any other
   * key would be typed once more. */
  released = g_array_new (FALSE, FALSE, sizeof (guint));
  for (guint i = 0; i < n_keys && released->len < DHF_PLAN_MAX_RELEASED_KEYS; i++)
    {
      gboolean seen = FALSE;

      if (!is_modifier (keys[i]))
        continue;
      for (guint k = 0; k < released->len && !seen; k++)
        seen = g_array_index (released, guint, k) == keys[i];
      if (!seen)
        g_array_append_val (released, keys[i]);
    }
  if (released->len == 0)
    return NULL;
  return g_steal_pointer (&released);
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

gboolean
dhf_plan_needs_move (const DhfEngDevice *record, const gchar *to)
{
  return g_strcmp0 (record->owner, to) != 0
         || (record->partial && g_strcmp0 (record->owner, DHF_DOM0) != 0);
}

void
dhf_plan_move_steps (const DhfEngDevice *record, const gchar *to, GHashTable *domains,
                     GPtrArray *detaches, GPtrArray *attaches)
{
  if (g_strcmp0 (record->owner, to) == 0)
    {
      const DhfEngDomain *domain = g_hash_table_lookup (domains, to);

      /* Half there: attaching again adds the missing scope. */
      if (record->partial && domain != NULL)
        g_ptr_array_add (attaches, dhf_step_new_device (DHF_STEP_ATTACH, record->device,
                                                        domain->name, dhf_plan_scope (domain)));
      return;
    }
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
