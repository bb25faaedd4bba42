/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include "config.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "dhf-policy.h"

/* libFuzzer target: dhf_policy_parse_data() on arbitrary bytes. Whatever
 * it accepts must evaluate fixed queries without trouble and survive the
 * source round trip with the same rules; whatever it refuses must say
 * why with at least one error. */

int LLVMFuzzerTestOneInput (const uint8_t *data, size_t size);

static const gchar *const tags[] = { "corp", NULL };
static const DhfPolicyDomain dom0 = { "dom0", TRUE, TRUE, NULL, NULL, NULL };
static const DhfPolicyDomain work = { "work", FALSE, FALSE, "environment", "acme", tags };
static const DhfPolicyDomain syncd = { "sync", FALSE, TRUE, "service", "dhf examples", NULL };

static const DhfPolicyQuery queries[] = {
  { DHF_POLICY_KIND_XDM, "org.example.Sync1", NULL, &work, &syncd, NULL },
  { DHF_POLICY_KIND_XDM, "org.example.Sync1", "arg", &dom0, &work, NULL },
  { DHF_POLICY_KIND_DEVICE, "usb:046d:c52b:SER1", NULL, &dom0, &work, NULL },
  { DHF_POLICY_KIND_DEVICE, "pci:0000:00:1f.3", NULL, &dom0, &syncd, NULL },
  { DHF_POLICY_KIND_DEVICE, "input:keyboard", NULL, &dom0, &syncd, NULL },
  { DHF_POLICY_KIND_SWITCH, NULL, NULL, &work, &syncd, NULL },
  { DHF_POLICY_KIND_ACPI, "button/lid", NULL, &dom0, &dom0, NULL },
  { DHF_POLICY_KIND_HOTKEY, "Ctrl+Alt+Right", NULL, &dom0, NULL, "@next" },
  { DHF_POLICY_KIND_NETWORK, "tcp/443", NULL, &work, NULL, "@outside" },
  { DHF_POLICY_KIND_NETWORK, "icmp", NULL, &syncd, &work, NULL },
};

/* The rules without their "file:line: " prefix. */
static gchar *
rules_of (DhfPolicy *policy)
{
  g_autofree gchar *text = dhf_policy_to_string (policy);
  g_auto (GStrv) lines = g_strsplit (text, "\n", -1);
  GString *out = g_string_new (NULL);

  for (guint i = 0; lines[i] != NULL && lines[i][0] != '\0'; i++)
    {
      const gchar *rule = strstr (lines[i], ": ");

      if (rule == NULL)
        abort ();
      g_string_append_printf (out, "%s\n", rule + 2);
    }
  return g_string_free (out, FALSE);
}

static void
check_policy (DhfPolicy *policy)
{
  g_autofree gchar *source = dhf_policy_get_source (policy);
  g_autoptr (GPtrArray) diagnostics
      = g_ptr_array_new_with_free_func ((GDestroyNotify) dhf_policy_diagnostic_free);
  g_autoptr (DhfPolicy) again
      = dhf_policy_parse_data ("fuzz.policy", source, strlen (source), diagnostics);
  g_autofree gchar *first = NULL;
  g_autofree gchar *second = NULL;

  for (gsize i = 0; i < G_N_ELEMENTS (queries); i++)
    {
      DhfPolicyDecision decision;
      DhfPolicyAction action = dhf_policy_evaluate (policy, &queries[i], &decision);

      if (action != decision.action || (decision.rule == NULL && action != DHF_POLICY_ACTION_DENY))
        abort ();
      if (decision.rule != NULL)
        {
          g_autofree gchar *rule = dhf_policy_rule_to_string (decision.rule);

          if (rule == NULL || dhf_policy_rule_get_kind (decision.rule) != queries[i].kind)
            abort ();
          (void) dhf_policy_rule_get_option (decision.rule, "target");
        }
      if (again != NULL && dhf_policy_evaluate (again, &queries[i], NULL) != action)
        g_error ("the source decides query %" G_GSIZE_FORMAT " differently", i);
    }

  if (again == NULL)
    g_error ("get_source does not parse:\n%s", source);
  first = rules_of (policy);
  second = rules_of (again);
  if (!g_str_equal (first, second))
    g_error ("source round trip changed the rules:\n%s\n---\n%s", first, second);
}

int
LLVMFuzzerTestOneInput (const uint8_t *data, size_t size)
{
  g_autoptr (GPtrArray) diagnostics
      = g_ptr_array_new_with_free_func ((GDestroyNotify) dhf_policy_diagnostic_free);
  g_autoptr (DhfPolicy) policy
      = dhf_policy_parse_data ("fuzz.policy", (const gchar *) data, size, diagnostics);
  gboolean has_error = FALSE;

  for (guint i = 0; i < diagnostics->len; i++)
    {
      const DhfPolicyDiagnostic *diagnostic = g_ptr_array_index (diagnostics, i);
      g_autofree gchar *line = dhf_policy_diagnostic_format (diagnostic);

      if (!g_utf8_validate (line, -1, NULL))
        g_error ("diagnostic is not UTF-8");
      has_error |= diagnostic->severity == DHF_POLICY_SEVERITY_ERROR;
    }
  if ((policy == NULL) != has_error || diagnostics->len > 201)
    abort ();
  if (policy != NULL)
    check_policy (policy);
  return 0;
}
