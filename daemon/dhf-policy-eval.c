/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include "config.h"

#include <string.h>

#include "dhf-policy-private.h"

/* Evaluation. Each kind has a hash from exact key (XDM service, concrete
 * device, ACPI event, hotkey, single port) to the ascending indices of its
 * rules, and the ascending list of its pattern rules (wildcards, classes,
 * ranges). A query merges the lists it can hit by global rule index and
 * stops at the first full match, so the cost depends on the rules that
 * could match, not on the size of the policy; nothing is allocated. */

typedef struct
{
  const gchar *key;  /* the exact key the query hits */
  const gchar *key2; /* a second one: a USB device without its serial */
  const gchar *cls;  /* the class pattern rules compare against */
  guint port;
  const gchar *argument;
  gchar buf[DHF_POLICY_MAX_QUERY];
  gchar buf2[DHF_POLICY_MAX_QUERY];
} ParsedQuery;

typedef struct
{
  const guint *v;
  guint n;
} Span;

static GArray *
new_list (void)
{
  return g_array_sized_new (FALSE, FALSE, sizeof (guint), 1);
}

static void
append_to (GHashTable *table, const gchar *key, guint index)
{
  GArray *list = g_hash_table_lookup (table, key);

  if (list == NULL)
    {
      list = new_list ();
      g_hash_table_insert (table, (gpointer) key, list);
    }
  g_array_append_val (list, index);
}

static GHashTable *
new_table (void)
{
  return g_hash_table_new_full (g_str_hash, g_str_equal, NULL, (GDestroyNotify) g_array_unref);
}

/* Files a pattern rule under its SOURCE token. */
static void
index_pattern (DhfPolicyIndex *index, const DhfPolicyRule *rule)
{
  const DhfPolicyToken *source = &rule->source;

  g_array_append_val (index->patterns, rule->index);
  switch (source->type)
    {
      case DHF_POLICY_TOKEN_ANY:
        g_array_append_val (index->by_fixed[DHF_POLICY_BY_ANY], rule->index);
        break;
      case DHF_POLICY_TOKEN_DOM0:
        g_array_append_val (index->by_fixed[DHF_POLICY_BY_DOM0], rule->index);
        break;
      case DHF_POLICY_TOKEN_FOCUSED:
        g_array_append_val (index->by_fixed[DHF_POLICY_BY_FOCUSED], rule->index);
        break;
      case DHF_POLICY_TOKEN_NAME:
        append_to (index->by_value[DHF_POLICY_BY_NAME], source->value, rule->index);
        break;
      case DHF_POLICY_TOKEN_ROLE:
        append_to (index->by_value[DHF_POLICY_BY_ROLE], source->value, rule->index);
        break;
      case DHF_POLICY_TOKEN_TAG:
        append_to (index->by_value[DHF_POLICY_BY_TAG], source->value, rule->index);
        break;
      case DHF_POLICY_TOKEN_VENDOR:
        append_to (index->by_value[DHF_POLICY_BY_VENDOR], source->value, rule->index);
        break;
      case DHF_POLICY_TOKEN_NEXT:
      case DHF_POLICY_TOKEN_PREVIOUS:
      case DHF_POLICY_TOKEN_OUTSIDE:
      default:
        /* Never a SOURCE: such a rule cannot match. */
        break;
    }
}

void
dhf_policy_index_build (DhfPolicy *policy)
{
  for (guint k = 0; k < DHF_POLICY_N_KINDS; k++)
    {
      DhfPolicyIndex *index = &policy->index[k];

      index->exact = new_table ();
      index->patterns = new_list ();
      for (guint b = 0; b < DHF_POLICY_N_BY_FIXED; b++)
        index->by_fixed[b] = new_list ();
      for (guint b = 0; b < DHF_POLICY_N_BY_VALUE; b++)
        index->by_value[b] = new_table ();
    }
  for (guint i = 0; i < policy->n_rules; i++)
    {
      const DhfPolicyRule *rule = &policy->rules[i];
      DhfPolicyIndex *index = &policy->index[rule->kind];

      if (rule->select == DHF_POLICY_SELECT_EXACT)
        append_to (index->exact, rule->key, i);
      else
        index_pattern (index, rule);
    }
}

void
dhf_policy_index_clear (DhfPolicy *policy)
{
  for (guint k = 0; k < DHF_POLICY_N_KINDS; k++)
    {
      DhfPolicyIndex *index = &policy->index[k];

      g_clear_pointer (&index->exact, g_hash_table_unref);
      g_clear_pointer (&index->patterns, g_array_unref);
      for (guint b = 0; b < DHF_POLICY_N_BY_FIXED; b++)
        g_clear_pointer (&index->by_fixed[b], g_array_unref);
      for (guint b = 0; b < DHF_POLICY_N_BY_VALUE; b++)
        g_clear_pointer (&index->by_value[b], g_hash_table_unref);
    }
}

static gboolean
has_tag (const gchar *const *tags, const gchar *tag)
{
  for (gsize i = 0; tags != NULL && tags[i] != NULL; i++)
    if (strcmp (tags[i], tag) == 0)
      return TRUE;
  return FALSE;
}

gboolean
dhf_policy_token_matches (const DhfPolicyToken *token, const DhfPolicyDomain *domain,
                          const gchar *symbolic)
{
  switch (token->type)
    {
      case DHF_POLICY_TOKEN_NEXT:
        return domain == NULL && g_strcmp0 (symbolic, "@next") == 0;
      case DHF_POLICY_TOKEN_PREVIOUS:
        return domain == NULL && g_strcmp0 (symbolic, "@previous") == 0;
      case DHF_POLICY_TOKEN_OUTSIDE:
        return domain == NULL && g_strcmp0 (symbolic, "@outside") == 0;
      default:
        break;
    }
  if (domain == NULL)
    return FALSE;
  switch (token->type)
    {
      case DHF_POLICY_TOKEN_NAME:
        return !domain->is_dom0 && domain->name != NULL && strcmp (domain->name, token->value) == 0;
      case DHF_POLICY_TOKEN_ANY:
        return !domain->is_dom0;
      case DHF_POLICY_TOKEN_DOM0:
        return domain->is_dom0;
      case DHF_POLICY_TOKEN_FOCUSED:
        return domain->focused;
      case DHF_POLICY_TOKEN_ROLE:
        return !domain->is_dom0 && domain->role != NULL && strcmp (domain->role, token->value) == 0;
      case DHF_POLICY_TOKEN_TAG:
        return !domain->is_dom0 && has_tag (domain->tags, token->value);
      case DHF_POLICY_TOKEN_VENDOR:
        return !domain->is_dom0 && domain->vendor != NULL
               && strcmp (domain->vendor, token->value) == 0;
      default:
        return FALSE;
    }
}

/* FALSE when the query does not name one concrete, well-formed subject:
 * such a query is denied outright rather than compared with the rules, or
 * a malformed name ("Button/Power", "tcp", "usb:46d:c52b") would miss the
 * exact rules yet match the wildcard and class rules after them. */
static gboolean
parse_query (const DhfPolicyQuery *query, ParsedQuery *q)
{
  gsize class_len;

  q->key = q->key2 = q->cls = NULL;
  q->port = 0;
  q->argument = NULL;
  if (!dhf_policy_query_normalise (query->kind, query->subject, query->argument, q->buf,
                                   sizeof q->buf, &q->port))
    return FALSE;
  switch (query->kind)
    {
      case DHF_POLICY_KIND_SWITCH:
        return TRUE;
      case DHF_POLICY_KIND_XDM:
        q->key = q->buf;
        q->argument = query->argument != NULL ? query->argument : "";
        return TRUE;
      case DHF_POLICY_KIND_DEVICE:
        q->key = q->buf;
        if (g_str_has_prefix (q->buf, "usb:"))
          {
            q->cls = "usb";
            /* usb:VVVV:PPPP:SERIAL also hits the rules for usb:VVVV:PPPP. */
            if (q->buf[13] == ':')
              {
                memcpy (q->buf2, q->buf, 13);
                q->buf2[13] = '\0';
                q->key2 = q->buf2;
              }
          }
        else if (g_str_has_prefix (q->buf, "pci:"))
          q->cls = "pci";
        else
          q->cls = "input";
        return TRUE;
      case DHF_POLICY_KIND_ACPI:
        q->key = q->buf;
        class_len = strcspn (q->buf, "/");
        memcpy (q->buf2, q->buf, class_len);
        q->buf2[class_len] = '\0';
        q->cls = q->buf2;
        return TRUE;
      case DHF_POLICY_KIND_HOTKEY:
        q->key = q->buf;
        return TRUE;
      case DHF_POLICY_KIND_NETWORK:
        /* icmp has no port and so no exact rules, only class ones. */
        q->key = q->port != 0 ? q->buf : NULL;
        q->cls = q->buf[0] == 't' ? "tcp" : q->buf[0] == 'u' ? "udp" : "icmp";
        return TRUE;
      case DHF_POLICY_N_KINDS:
      default:
        return FALSE;
    }
}

static gboolean
subject_matches (const DhfPolicyRule *rule, const ParsedQuery *q)
{
  switch (rule->select)
    {
      case DHF_POLICY_SELECT_ALL:
        break;
      case DHF_POLICY_SELECT_CLASS:
        if (q->cls == NULL || strcmp (rule->key, q->cls) != 0)
          return FALSE;
        break;
      case DHF_POLICY_SELECT_RANGE:
        if (q->cls == NULL || strcmp (rule->key, q->cls) != 0 || q->port < rule->port_lo
            || q->port > rule->port_hi)
          return FALSE;
        break;
      case DHF_POLICY_SELECT_EXACT:
      default:
        if (!(q->key != NULL && strcmp (rule->key, q->key) == 0)
            && !(q->key2 != NULL && strcmp (rule->key, q->key2) == 0))
          return FALSE;
        break;
    }
  return rule->argument == NULL || strcmp (rule->argument, q->argument) == 0;
}

static Span
span_of (GArray *list)
{
  if (list == NULL)
    return (Span){ NULL, 0 };
  return (Span){ (const guint *) (gconstpointer) list->data, list->len };
}

static Span
lookup (GHashTable *table, const gchar *key)
{
  return span_of (key != NULL ? g_hash_table_lookup (table, key) : NULL);
}

/* The pattern lists the source can match; FALSE when it has more tags
 * than spans has room for (the caller then walks every pattern). */
static gboolean
source_spans (const DhfPolicyIndex *index, const DhfPolicyDomain *source, Span *spans, guint *n,
              guint max)
{
  if (source->is_dom0)
    spans[(*n)++] = span_of (index->by_fixed[DHF_POLICY_BY_DOM0]);
  else
    {
      spans[(*n)++] = span_of (index->by_fixed[DHF_POLICY_BY_ANY]);
      spans[(*n)++] = lookup (index->by_value[DHF_POLICY_BY_NAME], source->name);
      spans[(*n)++] = lookup (index->by_value[DHF_POLICY_BY_ROLE], source->role);
      spans[(*n)++] = lookup (index->by_value[DHF_POLICY_BY_VENDOR], source->vendor);
      for (gsize t = 0; source->tags != NULL && source->tags[t] != NULL; t++)
        {
          if (*n + 1 >= max)
            return FALSE;
          spans[(*n)++] = lookup (index->by_value[DHF_POLICY_BY_TAG], source->tags[t]);
        }
    }
  if (source->focused)
    spans[(*n)++] = span_of (index->by_fixed[DHF_POLICY_BY_FOCUSED]);
  return TRUE;
}

#define MAX_SPANS 32

DhfPolicyAction
dhf_policy_evaluate (DhfPolicy *self, const DhfPolicyQuery *query, DhfPolicyDecision *decision)
{
  ParsedQuery q;
  const DhfPolicyIndex *index;
  Span spans[MAX_SPANS];
  guint pos[MAX_SPANS] = { 0 };
  guint n = 0;

  g_return_val_if_fail (self != NULL, DHF_POLICY_ACTION_DENY);
  g_return_val_if_fail (query != NULL, DHF_POLICY_ACTION_DENY);

  if (decision != NULL)
    *decision = (DhfPolicyDecision){ DHF_POLICY_ACTION_DENY, NULL };
  /* Every rule names a source domain. */
  if ((guint) query->kind >= DHF_POLICY_N_KINDS || query->source == NULL
      || !parse_query (query, &q))
    return DHF_POLICY_ACTION_DENY;

  index = &self->index[query->kind];
  spans[n++] = lookup (index->exact, q.key);
  spans[n++] = lookup (index->exact, q.key2);
  if (!source_spans (index, query->source, spans, &n, MAX_SPANS))
    {
      n = 2;
      spans[n++] = span_of (index->patterns);
    }

  for (;;)
    {
      guint best = G_MAXUINT;
      guint which = MAX_SPANS;
      const DhfPolicyRule *rule;

      for (guint s = 0; s < n; s++)
        if (pos[s] < spans[s].n && spans[s].v[pos[s]] < best)
          {
            best = spans[s].v[pos[s]];
            which = s;
          }
      if (which == MAX_SPANS)
        return DHF_POLICY_ACTION_DENY;
      pos[which]++;
      rule = &self->rules[best];
      if (!subject_matches (rule, &q)
          || !dhf_policy_token_matches (&rule->source, query->source, NULL)
          || !dhf_policy_token_matches (&rule->target, query->target, query->target_token))
        continue;
      if (decision != NULL)
        *decision = (DhfPolicyDecision){ rule->action, rule };
      return rule->action;
    }
}
