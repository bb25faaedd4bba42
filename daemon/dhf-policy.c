/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include "config.h"

#include <string.h>

#include <dhf/dhf.h>

#include "dhf-policy-private.h"

/* The policy object: lifetime, accessors and the normalised text form.
 * Parsing is in dhf-policy-parse.c, evaluation in dhf-policy-eval.c. */

static const gchar *const kind_names[DHF_POLICY_N_KINDS] = {
  [DHF_POLICY_KIND_XDM] = "xdm",       [DHF_POLICY_KIND_DEVICE] = "device",
  [DHF_POLICY_KIND_SWITCH] = "switch", [DHF_POLICY_KIND_ACPI] = "acpi",
  [DHF_POLICY_KIND_HOTKEY] = "hotkey", [DHF_POLICY_KIND_NETWORK] = "network",
};

static const gchar *const option_keys[DHF_POLICY_N_OPTIONS] = {
  [DHF_POLICY_OPTION_NOTIFY] = "notify", [DHF_POLICY_OPTION_TARGET] = "target",
  [DHF_POLICY_OPTION_QUOTA] = "quota",   [DHF_POLICY_OPTION_MODE] = "mode",
  [DHF_POLICY_OPTION_HOST] = "host",
};

DhfPolicy *
dhf_policy_new_internal (void)
{
  DhfPolicy *self = g_new0 (DhfPolicy, 1);

  g_atomic_ref_count_init (&self->ref);
  return self;
}

DhfPolicy *
dhf_policy_new_empty (void)
{
  DhfPolicy *self = dhf_policy_new_internal ();

  self->strings = g_string_chunk_new (64);
  self->files = g_new0 (gchar *, 1);
  self->source = g_strdup ("");
  dhf_policy_index_build (self);
  return self;
}

DhfPolicy *
dhf_policy_ref (DhfPolicy *self)
{
  g_return_val_if_fail (self != NULL, NULL);
  g_atomic_ref_count_inc (&self->ref);
  return self;
}

void
dhf_policy_unref (DhfPolicy *self)
{
  if (self == NULL || !g_atomic_ref_count_dec (&self->ref))
    return;
  dhf_policy_index_clear (self);
  g_free (self->rules);
  g_strfreev (self->files);
  g_free (self->source);
  if (self->strings != NULL)
    g_string_chunk_free (self->strings);
  g_free (self);
}

guint
dhf_policy_get_n_rules (DhfPolicy *self)
{
  g_return_val_if_fail (self != NULL, 0);
  return self->n_rules;
}

const gchar *const *
dhf_policy_get_files (DhfPolicy *self)
{
  g_return_val_if_fail (self != NULL, NULL);
  return (const gchar *const *) self->files;
}

gchar *
dhf_policy_get_source (DhfPolicy *self)
{
  g_return_val_if_fail (self != NULL, NULL);
  return g_strdup (self->source);
}

gchar *
dhf_policy_to_string (DhfPolicy *self)
{
  GString *out = g_string_new (NULL);

  g_return_val_if_fail (self != NULL, NULL);
  for (guint i = 0; i < self->n_rules; i++)
    {
      g_autofree gchar *text = dhf_policy_rule_to_string (&self->rules[i]);

      g_string_append_printf (out, "%s:%u: %s\n", self->rules[i].file, self->rules[i].line, text);
    }
  return g_string_free (out, FALSE);
}

const gchar *
dhf_policy_token_type_to_string (DhfPolicyTokenType type)
{
  switch (type)
    {
      case DHF_POLICY_TOKEN_ANY:
        return "@any";
      case DHF_POLICY_TOKEN_DOM0:
        return "@dom0";
      case DHF_POLICY_TOKEN_FOCUSED:
        return "@focused";
      case DHF_POLICY_TOKEN_ROLE:
        return "@role:";
      case DHF_POLICY_TOKEN_TAG:
        return "@tag:";
      case DHF_POLICY_TOKEN_VENDOR:
        return "@vendor:";
      case DHF_POLICY_TOKEN_NEXT:
        return "@next";
      case DHF_POLICY_TOKEN_PREVIOUS:
        return "@previous";
      case DHF_POLICY_TOKEN_OUTSIDE:
        return "@outside";
      case DHF_POLICY_TOKEN_NAME:
      default:
        return "";
    }
}

/* Quotes a value the lexer would otherwise split or take as a comment. */
static void
append_value (GString *out, const gchar *value)
{
  if (value[0] != '\0' && strpbrk (value, " \t\"\\#") == NULL)
    {
      g_string_append (out, value);
      return;
    }
  g_string_append_c (out, '"');
  for (const gchar *p = value; *p != '\0'; p++)
    {
      if (*p == '"' || *p == '\\')
        g_string_append_c (out, '\\');
      g_string_append_c (out, *p);
    }
  g_string_append_c (out, '"');
}

void
dhf_policy_token_append (GString *out, const DhfPolicyToken *token)
{
  g_string_append (out, dhf_policy_token_type_to_string (token->type));
  if (token->value != NULL)
    append_value (out, token->value);
}

const gchar *
dhf_policy_option_to_string (DhfPolicyOption option)
{
  return option_keys[option];
}

gchar *
dhf_policy_rule_to_string (const DhfPolicyRule *rule)
{
  GString *out;

  g_return_val_if_fail (rule != NULL, NULL);
  out = g_string_new (rule->subject);
  g_string_append_c (out, ' ');
  dhf_policy_token_append (out, &rule->source);
  g_string_append_c (out, ' ');
  dhf_policy_token_append (out, &rule->target);
  g_string_append_printf (out, " %s", dhf_policy_action_to_string (rule->action));
  for (guint i = 0; i < DHF_POLICY_N_OPTIONS; i++)
    if (rule->options[i] != NULL)
      {
        g_string_append_printf (out, " %s=", option_keys[i]);
        append_value (out, rule->options[i]);
      }
  return g_string_free (out, FALSE);
}

const DhfPolicyRule *
dhf_policy_get_rule (DhfPolicy *self, guint index)
{
  g_return_val_if_fail (self != NULL, NULL);
  g_return_val_if_fail (index < self->n_rules, NULL);
  return &self->rules[index];
}

DhfPolicyAction
dhf_policy_rule_get_action (const DhfPolicyRule *rule)
{
  g_return_val_if_fail (rule != NULL, DHF_POLICY_ACTION_DENY);
  return rule->action;
}

const gchar *
dhf_policy_rule_get_subject (const DhfPolicyRule *rule)
{
  const gchar *colon;

  g_return_val_if_fail (rule != NULL, NULL);
  /* XDM subjects and "switch" have no prefix; the others end it at the
   * first ':' ("device:usb:..." keeps "usb:..."). */
  if (rule->kind == DHF_POLICY_KIND_XDM || rule->kind == DHF_POLICY_KIND_SWITCH)
    return rule->subject;
  colon = strchr (rule->subject, ':');
  return colon != NULL ? colon + 1 : rule->subject;
}

gchar *
dhf_policy_rule_dup_target (const DhfPolicyRule *rule)
{
  GString *out = g_string_new (NULL);

  g_return_val_if_fail (rule != NULL, NULL);
  dhf_policy_token_append (out, &rule->target);
  return g_string_free (out, FALSE);
}

gboolean
dhf_policy_rule_target_is_name (const DhfPolicyRule *rule)
{
  g_return_val_if_fail (rule != NULL, FALSE);
  return rule->target.type == DHF_POLICY_TOKEN_NAME;
}

DhfPolicyKind
dhf_policy_rule_get_kind (const DhfPolicyRule *rule)
{
  g_return_val_if_fail (rule != NULL, DHF_POLICY_KIND_XDM);
  return rule->kind;
}

const gchar *
dhf_policy_rule_get_file (const DhfPolicyRule *rule)
{
  g_return_val_if_fail (rule != NULL, NULL);
  return rule->file;
}

guint
dhf_policy_rule_get_line (const DhfPolicyRule *rule)
{
  g_return_val_if_fail (rule != NULL, 0);
  return rule->line;
}

const gchar *
dhf_policy_rule_get_option (const DhfPolicyRule *rule, const gchar *key)
{
  g_return_val_if_fail (rule != NULL, NULL);
  g_return_val_if_fail (key != NULL, NULL);
  for (guint i = 0; i < DHF_POLICY_N_OPTIONS; i++)
    if (strcmp (option_keys[i], key) == 0)
      return rule->options[i];
  return NULL;
}

const gchar *
dhf_policy_action_to_string (DhfPolicyAction action)
{
  switch (action)
    {
      case DHF_POLICY_ACTION_ALLOW:
        return "allow";
      case DHF_POLICY_ACTION_ASK:
        return "ask";
      case DHF_POLICY_ACTION_DENY:
      default:
        return "deny";
    }
}

const gchar *
dhf_policy_kind_to_string (DhfPolicyKind kind)
{
  if ((guint) kind >= DHF_POLICY_N_KINDS)
    return "unknown";
  return kind_names[kind];
}

gboolean
dhf_policy_parse_subject (const gchar *text, DhfPolicyKind *kind, gchar **subject, gchar **argument,
                          GError **error)
{
  g_auto (DhfPolicySubject) parsed = { 0 };
  g_autofree gchar *message = NULL;

  g_return_val_if_fail (text != NULL, FALSE);
  if (!dhf_policy_subject_parse (text, &parsed, &message))
    {
      g_set_error (error, DHF_ERROR, DHF_ERROR_INVALID_ARGS, "%s", message);
      return FALSE;
    }
  /* A query names one thing: no wildcards, classes or ranges; network:icmp
   * is one concrete destination (icmp has no ports). */
  if (parsed.kind != DHF_POLICY_KIND_SWITCH && parsed.select != DHF_POLICY_SELECT_EXACT
      && !(parsed.kind == DHF_POLICY_KIND_NETWORK && g_strcmp0 (parsed.key, "icmp") == 0))
    {
      g_set_error (error, DHF_ERROR, DHF_ERROR_INVALID_ARGS,
                   "'%s' is a pattern; a query needs one concrete subject", text);
      return FALSE;
    }
  if (kind != NULL)
    *kind = parsed.kind;
  if (subject != NULL)
    *subject = g_steal_pointer (&parsed.key);
  if (argument != NULL)
    *argument = g_steal_pointer (&parsed.argument);
  return TRUE;
}
