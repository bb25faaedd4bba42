/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include "config.h"

#include <string.h>

#include "dhf-policy-private.h"

/* Shadowed rules: a rule that an earlier rule of the same kind covers
 * entirely can never match. "Covers" is syntactic and sound (no false
 * positives): the earlier subject includes the later one, and the earlier
 * SOURCE and TARGET each equal the later ones or are @any where the later
 * one is a NAME, @role, @tag or @vendor (all of which exclude dom0).
 *
 * Rather than compare every pair, each rule is filed under its (subject,
 * source, target) triple, first rule wins; a rule then looks up every
 * triple that would cover it: at most four subjects (itself and its
 * wildcard ancestors) times two sources times two targets. Port ranges
 * cover by arithmetic: see RangeGroup below. */

typedef struct
{
  const gchar *subject;
  DhfPolicyTokenType source_type;
  const gchar *source_value;
  DhfPolicyTokenType target_type;
  const gchar *target_value;
} Triple;

static guint
triple_hash (gconstpointer data)
{
  const Triple *t = data;
  guint h = g_str_hash (t->subject);

  h = h * 31 + t->source_type;
  h = h * 31 + (t->source_value != NULL ? g_str_hash (t->source_value) : 0);
  h = h * 31 + t->target_type;
  h = h * 31 + (t->target_value != NULL ? g_str_hash (t->target_value) : 0);
  return h;
}

static gboolean
triple_equal (gconstpointer a, gconstpointer b)
{
  const Triple *x = a;
  const Triple *y = b;

  return x->source_type == y->source_type && x->target_type == y->target_type
         && strcmp (x->subject, y->subject) == 0
         && g_strcmp0 (x->source_value, y->source_value) == 0
         && g_strcmp0 (x->target_value, y->target_value) == 0;
}

/* The tokens that cover token: itself, and @any for domain sets that
 * exclude dom0. */
static guint
covering_tokens (const DhfPolicyToken *token, DhfPolicyToken out[2])
{
  out[0] = *token;
  switch (token->type)
    {
      case DHF_POLICY_TOKEN_NAME:
      case DHF_POLICY_TOKEN_ROLE:
      case DHF_POLICY_TOKEN_TAG:
      case DHF_POLICY_TOKEN_VENDOR:
        out[1] = (DhfPolicyToken){ DHF_POLICY_TOKEN_ANY, NULL };
        return 2;
      default:
        return 1;
    }
}

/* The normalised subjects that include rule's subject, itself included. */
static guint
covering_subjects (const DhfPolicyRule *rule, gchar out[4][DHF_POLICY_MAX_QUERY])
{
  guint n = 0;

  g_strlcpy (out[n++], rule->subject, DHF_POLICY_MAX_QUERY);
  if (rule->select == DHF_POLICY_SELECT_ALL)
    return n;
  switch (rule->kind)
    {
      case DHF_POLICY_KIND_XDM:
        g_strlcpy (out[n++], "*", DHF_POLICY_MAX_QUERY);
        if (rule->argument != NULL)
          g_strlcpy (out[n++], rule->key, DHF_POLICY_MAX_QUERY);
        break;
      case DHF_POLICY_KIND_DEVICE:
        {
          const gchar *colon = strchr (rule->key, ':');
          gsize class_len = colon != NULL ? (gsize) (colon - rule->key) : strlen (rule->key);

          g_strlcpy (out[n++], "device:*", DHF_POLICY_MAX_QUERY);
          if (rule->select == DHF_POLICY_SELECT_EXACT)
            g_snprintf (out[n++], DHF_POLICY_MAX_QUERY, "device:%.*s:*", (int) class_len,
                        rule->key);
          /* usb:VVVV:PPPP:SERIAL is covered by usb:VVVV:PPPP. */
          if (g_str_has_prefix (rule->key, "usb:") && strlen (rule->key) > 13)
            g_snprintf (out[n++], DHF_POLICY_MAX_QUERY, "device:%.13s", rule->key);
          break;
        }
      case DHF_POLICY_KIND_ACPI:
        g_strlcpy (out[n++], "acpi:*", DHF_POLICY_MAX_QUERY);
        if (rule->select == DHF_POLICY_SELECT_EXACT)
          g_snprintf (out[n++], DHF_POLICY_MAX_QUERY, "acpi:%.*s/*", (int) strcspn (rule->key, "/"),
                      rule->key);
        break;
      case DHF_POLICY_KIND_NETWORK:
        g_strlcpy (out[n++], "network:*", DHF_POLICY_MAX_QUERY);
        if (rule->select != DHF_POLICY_SELECT_CLASS)
          g_snprintf (out[n++], DHF_POLICY_MAX_QUERY, "network:%.*s",
                      (int) strcspn (rule->key, "/"), rule->key);
        break;
      case DHF_POLICY_KIND_SWITCH:
      case DHF_POLICY_KIND_HOTKEY:
      case DHF_POLICY_N_KINDS:
      default:
        break;
    }
  return n;
}

static gboolean
is_port_rule (const DhfPolicyRule *rule)
{
  return rule->kind == DHF_POLICY_KIND_NETWORK
         && (rule->select == DHF_POLICY_SELECT_RANGE || rule->select == DHF_POLICY_SELECT_EXACT);
}

/* Port ranges cover by arithmetic: range W covers port rule R when they
 * have the same protocol, W's tokens cover R's, and W.lo <= R.lo and
 * R.hi <= W.hi. Comparing every pair is quadratic (130000 ranges took
 * 20 s), so the ranges are grouped by (protocol, SOURCE, TARGET) and each
 * group keeps a Fenwick tree over its distinct low ports holding the
 * highest high port, and its rule, of the earlier ranges at or below each
 * low port: "is R covered?" is one prefix maximum, O(log n). The rule
 * reported is a real coverer (the one reaching highest), not always the
 * earliest. */
typedef struct
{
  GArray *los;  /* distinct low ports, ascending, once built */
  guint *hi;    /* 1-based Fenwick tree: prefix maximum of high ports */
  guint *which; /* the rule index holding that maximum */
} RangeGroup;

static void
range_group_free (gpointer data)
{
  RangeGroup *group = data;

  g_array_unref (group->los);
  g_free (group->hi);
  g_free (group->which);
  g_free (group);
}

static gint
compare_ports (gconstpointer a, gconstpointer b)
{
  guint x = *(const guint *) a;
  guint y = *(const guint *) b;

  return x < y ? -1 : x > y;
}

/* How many of the group's low ports are <= port. */
static guint
count_at_most (const RangeGroup *group, guint port)
{
  const guint *los = (const guint *) (gconstpointer) group->los->data;
  guint lo = 0, hi = group->los->len;

  while (lo < hi)
    {
      guint mid = lo + (hi - lo) / 2;

      if (los[mid] <= port)
        lo = mid + 1;
      else
        hi = mid;
    }
  return lo;
}

static void
range_group_add (RangeGroup *group, const DhfPolicyRule *rule)
{
  guint n = group->los->len;

  /* Its own low port is present: count_at_most is its 1-based position. */
  for (guint p = count_at_most (group, rule->port_lo); p <= n; p += p & -p)
    if (rule->port_hi > group->hi[p])
      {
        group->hi[p] = rule->port_hi;
        group->which[p] = rule->index;
      }
}

/* An earlier range of the group that covers [lo, hi], or G_MAXUINT. */
static guint
range_group_cover (const RangeGroup *group, guint lo, guint hi)
{
  guint best_hi = 0, best = G_MAXUINT;

  for (guint p = count_at_most (group, lo); p > 0; p -= p & -p)
    if (group->hi[p] > best_hi)
      {
        best_hi = group->hi[p];
        best = group->which[p];
      }
  return best_hi >= hi ? best : G_MAXUINT;
}

static const gchar *
port_protocol (const DhfPolicyRule *rule)
{
  return g_str_has_prefix (rule->key, "udp") ? "udp" : "tcp";
}

/* Files every range rule's low port under its group, then sizes the trees. */
static GHashTable *
build_range_groups (const DhfPolicyRule *rules, guint n_rules, Triple *keys)
{
  GHashTable *groups = g_hash_table_new_full (triple_hash, triple_equal, NULL, range_group_free);
  GHashTableIter iter;
  RangeGroup *group;

  for (guint i = 0; i < n_rules; i++)
    {
      const DhfPolicyRule *rule = &rules[i];

      if (!is_port_rule (rule) || rule->select != DHF_POLICY_SELECT_RANGE)
        continue;
      keys[i] = (Triple){ port_protocol (rule), rule->source.type, rule->source.value,
                          rule->target.type, rule->target.value };
      group = g_hash_table_lookup (groups, &keys[i]);
      if (group == NULL)
        {
          group = g_new0 (RangeGroup, 1);
          group->los = g_array_new (FALSE, FALSE, sizeof (guint));
          g_hash_table_insert (groups, &keys[i], group);
        }
      g_array_append_val (group->los, rule->port_lo);
    }

  g_hash_table_iter_init (&iter, groups);
  while (g_hash_table_iter_next (&iter, NULL, (gpointer *) &group))
    {
      guint *los = (guint *) (gpointer) group->los->data;
      guint n = 0;

      g_array_sort (group->los, compare_ports);
      for (guint i = 0; i < group->los->len; i++)
        if (n == 0 || los[i] != los[n - 1])
          los[n++] = los[i];
      g_array_set_size (group->los, n);
      group->hi = g_new0 (guint, n + 1);
      group->which = g_new0 (guint, n + 1);
    }
  return groups;
}

/* The earliest of the covering ranges found for a port rule, or NULL. */
static const DhfPolicyRule *
range_cover (GHashTable *groups, const DhfPolicyRule *rules, const DhfPolicyRule *rule,
             const DhfPolicyToken *sources, guint n_sources, const DhfPolicyToken *targets,
             guint n_targets)
{
  const DhfPolicyRule *cover = NULL;

  for (guint a = 0; a < n_sources; a++)
    for (guint b = 0; b < n_targets; b++)
      {
        Triple key = { port_protocol (rule), sources[a].type, sources[a].value, targets[b].type,
                       targets[b].value };
        const RangeGroup *group = g_hash_table_lookup (groups, &key);
        guint hit
            = group != NULL ? range_group_cover (group, rule->port_lo, rule->port_hi) : G_MAXUINT;

        if (hit != G_MAXUINT && (cover == NULL || hit < cover->index))
          cover = &rules[hit];
      }
  return cover;
}

void
dhf_policy_check_shadowed (const DhfPolicyRule *rules, guint n_rules, DhfPolicyDiagSink *sink)
{
  g_autoptr (GHashTable) first = g_hash_table_new (triple_hash, triple_equal);
  g_autofree Triple *triples = g_new (Triple, n_rules);
  g_autofree Triple *range_keys = g_new (Triple, n_rules);
  g_autoptr (GHashTable) ranges = build_range_groups (rules, n_rules, range_keys);
  gchar subjects[4][DHF_POLICY_MAX_QUERY];

  for (guint i = 0; i < n_rules; i++)
    {
      const DhfPolicyRule *rule = &rules[i];
      const DhfPolicyRule *cover = NULL;
      DhfPolicyToken sources[2], targets[2];
      guint n_subjects = covering_subjects (rule, subjects);
      guint n_sources = covering_tokens (&rule->source, sources);
      guint n_targets = covering_tokens (&rule->target, targets);

      for (guint s = 0; s < n_subjects; s++)
        for (guint a = 0; a < n_sources; a++)
          for (guint b = 0; b < n_targets; b++)
            {
              Triple key = { subjects[s], sources[a].type, sources[a].value, targets[b].type,
                             targets[b].value };
              const DhfPolicyRule *hit = g_hash_table_lookup (first, &key);

              if (hit != NULL && hit->kind == rule->kind
                  && (cover == NULL || hit->index < cover->index))
                cover = hit;
            }
      if (is_port_rule (rule))
        {
          const DhfPolicyRule *hit
              = range_cover (ranges, rules, rule, sources, n_sources, targets, n_targets);

          if (hit != NULL && (cover == NULL || hit->index < cover->index))
            cover = hit;
          if (rule->select == DHF_POLICY_SELECT_RANGE)
            range_group_add (g_hash_table_lookup (ranges, &range_keys[i]), rule);
        }

      if (cover != NULL)
        {
          g_autofree gchar *text = dhf_policy_rule_to_string (cover);

          dhf_policy_diag_add (sink, DHF_POLICY_SEVERITY_WARNING, rule->file, rule->line,
                               rule->column,
                               "this rule can never match: %s:%u (%s) matches everything it would",
                               cover->file, cover->line, text);
        }

      triples[i] = (Triple){ rule->subject, rule->source.type, rule->source.value,
                             rule->target.type, rule->target.value };
      if (!g_hash_table_contains (first, &triples[i]))
        g_hash_table_insert (first, &triples[i], (gpointer) rule);
    }
}
