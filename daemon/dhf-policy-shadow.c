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
 * cover by arithmetic, so range rules are also kept in a short list per
 * protocol and scanned. */

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

static gboolean
token_covers (const DhfPolicyToken *wide, const DhfPolicyToken *narrow)
{
  DhfPolicyToken cover[2];
  guint n = covering_tokens (narrow, cover);

  for (guint i = 0; i < n; i++)
    if (cover[i].type == wide->type && g_strcmp0 (cover[i].value, wide->value) == 0)
      return TRUE;
  return FALSE;
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

/* The earliest rule in ranges (port rules with lo < hi) whose range
 * includes rule's and whose tokens cover it. */
static const DhfPolicyRule *
range_cover (const GPtrArray *ranges, const DhfPolicyRule *rule)
{
  for (guint i = 0; i < ranges->len; i++)
    {
      const DhfPolicyRule *wide = g_ptr_array_index (ranges, i);

      if (wide->port_lo <= rule->port_lo && rule->port_hi <= wide->port_hi
          && strncmp (wide->key, rule->key, strcspn (rule->key, "/")) == 0
          && token_covers (&wide->source, &rule->source)
          && token_covers (&wide->target, &rule->target))
        return wide;
    }
  return NULL;
}

void
dhf_policy_check_shadowed (const DhfPolicyRule *rules, guint n_rules, DhfPolicyDiagSink *sink)
{
  g_autoptr (GHashTable) first = g_hash_table_new (triple_hash, triple_equal);
  g_autofree Triple *triples = g_new (Triple, n_rules);
  g_autoptr (GPtrArray) ranges = g_ptr_array_new ();
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
          const DhfPolicyRule *hit = range_cover (ranges, rule);

          if (hit != NULL && (cover == NULL || hit->index < cover->index))
            cover = hit;
          if (rule->select == DHF_POLICY_SELECT_RANGE)
            g_ptr_array_add (ranges, (gpointer) rule);
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
