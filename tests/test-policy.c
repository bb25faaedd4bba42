/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include "config.h"

#include <string.h>

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <glib/gstdio.h>

#include "dhf-policy.h"

#include "dhf-test-util.h"

/* The policy language: grammar of every kind, evaluation, precedence
 * across files, diagnostics, shadowed rules, includes and round trips. */

typedef struct
{
  DhfPolicy *policy;
  GPtrArray *diagnostics;
} Parsed;

static GPtrArray *
new_diagnostics (void)
{
  return g_ptr_array_new_with_free_func ((GDestroyNotify) dhf_policy_diagnostic_free);
}

static gchar *
format_all (GPtrArray *diagnostics)
{
  GString *out = g_string_new (NULL);

  for (guint i = 0; i < diagnostics->len; i++)
    {
      g_autofree gchar *line = dhf_policy_diagnostic_format (g_ptr_array_index (diagnostics, i));

      g_string_append_printf (out, "%s\n", line);
    }
  return g_string_free (out, FALSE);
}

/* Parses text that must be valid and free of warnings. */
static DhfPolicy *
parse_clean (const gchar *text)
{
  g_autoptr (GPtrArray) diagnostics = new_diagnostics ();
  DhfPolicy *policy = dhf_policy_parse_data ("t.policy", text, strlen (text), diagnostics);
  g_autofree gchar *all = format_all (diagnostics);

  g_assert_cmpstr (all, ==, "");
  g_assert_nonnull (policy);
  return policy;
}

static const gchar *const no_tags[] = { NULL };
static const gchar *const corp_tags[] = { "corp", "vpn", NULL };

static const DhfPolicyDomain dom0 = { "dom0", TRUE, FALSE, NULL, NULL, no_tags };
static const DhfPolicyDomain dom0_focused = { "dom0", TRUE, TRUE, NULL, NULL, no_tags };
static const DhfPolicyDomain personal
    = { "personal", FALSE, TRUE, "environment", "dhf examples", no_tags };
static const DhfPolicyDomain work = { "work", FALSE, FALSE, "environment", "acme", corp_tags };
static const DhfPolicyDomain syncd = { "sync", FALSE, FALSE, "service", "acme", NULL };

static DhfPolicyAction
decide (DhfPolicy *policy, DhfPolicyKind kind, const gchar *subject, const gchar *argument,
        const DhfPolicyDomain *source, const DhfPolicyDomain *target, const gchar *token,
        guint *line)
{
  DhfPolicyQuery query = { kind, subject, argument, source, target, token };
  DhfPolicyDecision decision = { 0 };
  DhfPolicyAction action = dhf_policy_evaluate (policy, &query, &decision);

  g_assert_cmpint (action, ==, decision.action);
  if (line != NULL)
    *line = decision.rule != NULL ? dhf_policy_rule_get_line (decision.rule) : 0;
  return action;
}

/* ---- grammar and normalisation ---------------------------------------- */

static void
test_normalise (void)
{
  static const struct
  {
    const gchar *in;
    const gchar *out;
  } cases[] = {
    { "* @any @dom0 deny", "* @any @dom0 deny" },
    { "org.example.Sync1 @any @dom0 allow", "org.example.Sync1 @any @dom0 allow" },
    { "org.example.Sync1+ @any @dom0 allow", "org.example.Sync1+ @any @dom0 allow" },
    { "org.example.Sync1+a.b_c-9 personal work ask",
      "org.example.Sync1+a.b_c-9 personal work ask" },
    { "_x.y-z @role:service @role:environment allow notify=no",
      "_x.y-z @role:service @role:environment allow notify=no" },
    { "org.x.Y @tag:corp @vendor:acme allow quota=007 target=work notify=yes",
      "org.x.Y @tag:corp @vendor:acme allow notify=yes target=work quota=7" },
    { "org.x.Y @any @any ask target=@dom0", "org.x.Y @any @any ask target=@dom0" },
    { "org.x.Y @focused \"@vendor:dhf examples\" allow",
      "org.x.Y @focused @vendor:\"dhf examples\" allow" },
    { "org.x.Y @any @vendor:\"a \\\"b\\\" \\\\c\" deny",
      "org.x.Y @any @vendor:\"a \\\"b\\\" \\\\c\" deny" },
    { "org.x.Y @any @vendor:Soci\xc3\xa9t\xc3\xa9 deny",
      "org.x.Y @any @vendor:Soci\xc3\xa9t\xc3\xa9 deny" },
    { "\"org.x.Y\" \"@any\" work \"deny\"", "org.x.Y @any work deny" },
    { "device:* @any @focused ask", "device:* @any @focused ask" },
    { "device:usb:* @any @focused allow mode=follow-focus",
      "device:usb:* @any @focused allow mode=follow-focus" },
    { "device:usb:046D:C52B work @focused allow mode=pinned",
      "device:usb:046d:c52b work @focused allow mode=pinned" },
    { "device:usb:046d:c52b:AbC-1.2_3 work work allow",
      "device:usb:046d:c52b:AbC-1.2_3 work work allow" },
    { "device:pci:* @any @dom0 deny", "device:pci:* @any @dom0 deny" },
    { "device:pci:0000:00:1F.3 @dom0 work allow", "device:pci:0000:00:1f.3 @dom0 work allow" },
    { "device:input:* @any @focused allow", "device:input:* @any @focused allow" },
    { "device:input:keyboard @dom0 @focused allow notify=no",
      "device:input:keyboard @dom0 @focused allow notify=no" },
    { "device:input:mouse @dom0 @focused allow", "device:input:mouse @dom0 @focused allow" },
    { "device:input:tablet @dom0 @focused ask", "device:input:tablet @dom0 @focused ask" },
    { "switch @focused @any ask", "switch @focused @any ask" },
    { "acpi:* @dom0 @dom0 allow", "acpi:* @dom0 @dom0 allow" },
    { "acpi:button @dom0 @focused allow host=none",
      "acpi:button/* @dom0 @focused allow host=none" },
    { "acpi:button/* @dom0 @focused allow", "acpi:button/* @dom0 @focused allow" },
    { "acpi:button/lid @dom0 @dom0 allow host=suspend",
      "acpi:button/lid @dom0 @dom0 allow host=suspend" },
    { "acpi:ac_adapter @dom0 work deny host=hibernate",
      "acpi:ac_adapter/* @dom0 work deny host=hibernate" },
    { "acpi:battery @dom0 work allow host=shutdown",
      "acpi:battery/* @dom0 work allow host=shutdown" },
    { "acpi:video/brightnessup @dom0 @focused allow host=lock",
      "acpi:video/brightnessup @dom0 @focused allow host=lock" },
    { "hotkey:super+shift+alt+ctrl+tab @dom0 @next allow",
      "hotkey:Ctrl+Alt+Shift+Super+Tab @dom0 @next allow" },
    { "hotkey:Ctrl+f24 @dom0 @previous allow", "hotkey:Ctrl+F24 @dom0 @previous allow" },
    { "hotkey:ALT+x @dom0 work allow notify=yes", "hotkey:Alt+X @dom0 work allow notify=yes" },
    { "hotkey:Super+pageup @dom0 @focused deny", "hotkey:Super+PageUp @dom0 @focused deny" },
    { "hotkey:Ctrl+Alt+1 @dom0 personal allow", "hotkey:Ctrl+Alt+1 @dom0 personal allow" },
    { "hotkey:Shift+backspace @dom0 personal allow",
      "hotkey:Shift+BackSpace @dom0 personal allow" },
    { "network:* @any @outside deny", "network:* @any @outside deny" },
    { "network:tcp @any @outside allow", "network:tcp @any @outside allow" },
    { "network:udp/53 @any @outside allow", "network:udp/53 @any @outside allow" },
    { "network:tcp/00443 @any @outside allow", "network:tcp/443 @any @outside allow" },
    { "network:tcp/1-1024 work @outside allow", "network:tcp/1-1024 work @outside allow" },
    { "network:tcp/80-80 work @outside allow", "network:tcp/80 work @outside allow" },
    { "network:icmp @any @outside allow notify=yes",
      "network:icmp @any @outside allow notify=yes" },
    { "network:udp/65535 @any sync allow", "network:udp/65535 @any sync allow" },
    { "  \torg.x.Y\t@any   @dom0  allow  # trailing comment", "org.x.Y @any @dom0 allow" },
    { "org.x.Y @any @dom0 allow notify=\"yes\"", "org.x.Y @any @dom0 allow notify=yes" },
    { "org.x.Y a-b9 z allow", "org.x.Y a-b9 z allow" },
    { "org.x.Y foo#bar z allow", NULL }, /* '#' mid-token is no comment */
  };

  for (gsize i = 0; i < G_N_ELEMENTS (cases); i++)
    {
      g_autoptr (GPtrArray) diagnostics = new_diagnostics ();
      g_autoptr (DhfPolicy) policy = NULL;
      g_autofree gchar *text = g_strdup_printf ("%s\n", cases[i].in);
      g_autofree gchar *all = NULL;
      g_autofree gchar *again = NULL;
      g_autofree gchar *expected = NULL;

      policy = dhf_policy_parse_data ("t.policy", text, strlen (text), diagnostics);
      all = format_all (diagnostics);
      if (cases[i].out == NULL)
        {
          g_assert_null (policy);
          continue;
        }
      if (policy == NULL || diagnostics->len != 0)
        g_error ("case %" G_GSIZE_FORMAT " \"%s\": %s", i, cases[i].in, all);
      g_assert_cmpuint (dhf_policy_get_n_rules (policy), ==, 1);
      again = dhf_policy_to_string (policy);
      g_assert_true (g_str_has_prefix (again, "t.policy:1: "));
      expected = g_strconcat (cases[i].out, "\n", NULL);
      g_assert_cmpstr (again + strlen ("t.policy:1: "), ==, expected);
    }
}

static void
test_parse_subject (void)
{
  static const struct
  {
    const gchar *in;
    DhfPolicyKind kind;
    const gchar *subject;
    const gchar *argument;
  } ok[] = {
    { "org.example.Sync1", DHF_POLICY_KIND_XDM, "org.example.Sync1", NULL },
    { "org.example.Sync1+arg", DHF_POLICY_KIND_XDM, "org.example.Sync1", "arg" },
    { "device:usb:046D:c52b", DHF_POLICY_KIND_DEVICE, "usb:046d:c52b", NULL },
    { "device:usb:046d:c52b:SER", DHF_POLICY_KIND_DEVICE, "usb:046d:c52b:SER", NULL },
    { "device:pci:0000:00:1f.3", DHF_POLICY_KIND_DEVICE, "pci:0000:00:1f.3", NULL },
    { "switch", DHF_POLICY_KIND_SWITCH, NULL, NULL },
    { "acpi:button/lid", DHF_POLICY_KIND_ACPI, "button/lid", NULL },
    { "hotkey:alt+ctrl+1", DHF_POLICY_KIND_HOTKEY, "Ctrl+Alt+1", NULL },
    { "network:tcp/443", DHF_POLICY_KIND_NETWORK, "tcp/443", NULL },
    /* icmp has no ports: the protocol alone is one concrete subject. */
    { "network:icmp", DHF_POLICY_KIND_NETWORK, "icmp", NULL },
  };
  static const gchar *const bad[]
      = { "*",           "device:usb:*", "acpi:button", "network:tcp/1-2",
          "network:tcp", "network:*",    "nonsense",    "" };

  for (gsize i = 0; i < G_N_ELEMENTS (ok); i++)
    {
      g_autoptr (GError) error = NULL;
      g_autofree gchar *subject = NULL;
      g_autofree gchar *argument = NULL;
      DhfPolicyKind kind;

      g_assert_true (dhf_policy_parse_subject (ok[i].in, &kind, &subject, &argument, &error));
      g_assert_no_error (error);
      g_assert_cmpint (kind, ==, ok[i].kind);
      g_assert_cmpstr (subject, ==, ok[i].subject);
      g_assert_cmpstr (argument, ==, ok[i].argument);
    }
  for (gsize i = 0; i < G_N_ELEMENTS (bad); i++)
    {
      g_autoptr (GError) error = NULL;
      DhfPolicyKind kind;

      g_assert_false (dhf_policy_parse_subject (bad[i], &kind, NULL, NULL, &error));
      g_assert_nonnull (error);
    }
  g_assert_cmpstr (dhf_policy_kind_to_string (DHF_POLICY_KIND_NETWORK), ==, "network");
  g_assert_cmpstr (dhf_policy_action_to_string (DHF_POLICY_ACTION_ASK), ==, "ask");
}

/* A query subject that is not one concrete, well-formed subject of its
 * kind is denied with no rule, never compared with the rules: otherwise it
 * misses the exact deny and falls through to a wildcard allow. */
static void
test_query_subject_validation (void)
{
  static const gchar rules[] = "acpi:button/power @dom0 @dom0 deny\n"     /* 1 */
                               "acpi:* @dom0 @dom0 allow\n"               /* 2 */
                               "network:tcp/22 @any @outside deny\n"      /* 3 */
                               "network:tcp @any @outside allow\n"        /* 4 */
                               "network:icmp @any @outside allow\n"       /* 5 */
                               "org.a.Secret @any @dom0 deny\n"           /* 6 */
                               "* @any @dom0 allow\n"                     /* 7 */
                               "device:usb:046d:c52b @any @any deny\n"    /* 8 */
                               "device:usb:* @any @any allow\n"           /* 9 */
                               "device:pci:0000:00:1f.3 @any @any deny\n" /* 10 */
                               "device:* @any @any allow\n"               /* 11 */
                               "hotkey:Ctrl+Alt+F1 @dom0 @next deny\n"    /* 12 */
                               "hotkey:Ctrl+Alt+F2 @dom0 @next allow\n"   /* 13 */
                               "switch @any @any allow\n";                /* 14 */
  static const struct
  {
    DhfPolicyKind kind;
    const gchar *subject;
    const gchar *argument;
    DhfPolicyAction action;
    guint line; /* 0: denied without a rule */
  } cases[] = {
    /* ACPI: lowercase only, no stray characters, no patterns. */
    { DHF_POLICY_KIND_ACPI, "button/power", NULL, DHF_POLICY_ACTION_DENY, 1 },
    { DHF_POLICY_KIND_ACPI, "button/lid", NULL, DHF_POLICY_ACTION_ALLOW, 2 },
    { DHF_POLICY_KIND_ACPI, "ac_adapter", NULL, DHF_POLICY_ACTION_ALLOW, 2 },
    { DHF_POLICY_KIND_ACPI, "Button/Power", NULL, DHF_POLICY_ACTION_DENY, 0 },
    { DHF_POLICY_KIND_ACPI, "button/power ", NULL, DHF_POLICY_ACTION_DENY, 0 },
    { DHF_POLICY_KIND_ACPI, " button/power", NULL, DHF_POLICY_ACTION_DENY, 0 },
    { DHF_POLICY_KIND_ACPI, "button/*", NULL, DHF_POLICY_ACTION_DENY, 0 },
    { DHF_POLICY_KIND_ACPI, "*", NULL, DHF_POLICY_ACTION_DENY, 0 },
    { DHF_POLICY_KIND_ACPI, "button/", NULL, DHF_POLICY_ACTION_DENY, 0 },
    { DHF_POLICY_KIND_ACPI, "button/power/x", NULL, DHF_POLICY_ACTION_DENY, 0 },
    { DHF_POLICY_KIND_ACPI, "", NULL, DHF_POLICY_ACTION_DENY, 0 },
    { DHF_POLICY_KIND_ACPI, NULL, NULL, DHF_POLICY_ACTION_DENY, 0 },
    /* Network: tcp and udp need one port, icmp has none. */
    { DHF_POLICY_KIND_NETWORK, "tcp/22", NULL, DHF_POLICY_ACTION_DENY, 3 },
    { DHF_POLICY_KIND_NETWORK, "tcp/022", NULL, DHF_POLICY_ACTION_DENY, 3 },
    { DHF_POLICY_KIND_NETWORK, "tcp/443", NULL, DHF_POLICY_ACTION_ALLOW, 4 },
    { DHF_POLICY_KIND_NETWORK, "icmp", NULL, DHF_POLICY_ACTION_ALLOW, 5 },
    { DHF_POLICY_KIND_NETWORK, "tcp", NULL, DHF_POLICY_ACTION_DENY, 0 },
    { DHF_POLICY_KIND_NETWORK, "tcp/", NULL, DHF_POLICY_ACTION_DENY, 0 },
    { DHF_POLICY_KIND_NETWORK, "TCP/22", NULL, DHF_POLICY_ACTION_DENY, 0 },
    { DHF_POLICY_KIND_NETWORK, "tcp/22-23", NULL, DHF_POLICY_ACTION_DENY, 0 },
    { DHF_POLICY_KIND_NETWORK, "tcp/0", NULL, DHF_POLICY_ACTION_DENY, 0 },
    { DHF_POLICY_KIND_NETWORK, "tcp/65536", NULL, DHF_POLICY_ACTION_DENY, 0 },
    { DHF_POLICY_KIND_NETWORK, "tcp/22 ", NULL, DHF_POLICY_ACTION_DENY, 0 },
    { DHF_POLICY_KIND_NETWORK, "tcp/*", NULL, DHF_POLICY_ACTION_DENY, 0 },
    { DHF_POLICY_KIND_NETWORK, "icmp/1", NULL, DHF_POLICY_ACTION_DENY, 0 },
    { DHF_POLICY_KIND_NETWORK, "*", NULL, DHF_POLICY_ACTION_DENY, 0 },
    /* XDM: a service name, and a valid argument. */
    { DHF_POLICY_KIND_XDM, "org.a.Secret", NULL, DHF_POLICY_ACTION_DENY, 6 },
    { DHF_POLICY_KIND_XDM, "org.a.Secret", "x", DHF_POLICY_ACTION_DENY, 6 },
    { DHF_POLICY_KIND_XDM, "org.a.Other", NULL, DHF_POLICY_ACTION_ALLOW, 7 },
    { DHF_POLICY_KIND_XDM, "org.a.Secret+x", NULL, DHF_POLICY_ACTION_DENY, 0 },
    { DHF_POLICY_KIND_XDM, "org.a.Secret ", NULL, DHF_POLICY_ACTION_DENY, 0 },
    { DHF_POLICY_KIND_XDM, "*", NULL, DHF_POLICY_ACTION_DENY, 0 },
    { DHF_POLICY_KIND_XDM, "Secret", NULL, DHF_POLICY_ACTION_DENY, 0 },
    { DHF_POLICY_KIND_XDM, "org.a.Secret", "bad arg", DHF_POLICY_ACTION_DENY, 0 },
    /* Devices: 4 hex digits, a valid serial; hex in any case. */
    { DHF_POLICY_KIND_DEVICE, "usb:046d:c52b", NULL, DHF_POLICY_ACTION_DENY, 8 },
    { DHF_POLICY_KIND_DEVICE, "usb:046D:C52B", NULL, DHF_POLICY_ACTION_DENY, 8 },
    { DHF_POLICY_KIND_DEVICE, "usb:046d:c52b:S", NULL, DHF_POLICY_ACTION_DENY, 8 },
    { DHF_POLICY_KIND_DEVICE, "usb:046d:c52c", NULL, DHF_POLICY_ACTION_ALLOW, 9 },
    { DHF_POLICY_KIND_DEVICE, "usb:046d:c52b/S", NULL, DHF_POLICY_ACTION_DENY, 0 },
    { DHF_POLICY_KIND_DEVICE, "usb:46d:c52b", NULL, DHF_POLICY_ACTION_DENY, 0 },
    { DHF_POLICY_KIND_DEVICE, "usb:046d:c52b:", NULL, DHF_POLICY_ACTION_DENY, 0 },
    { DHF_POLICY_KIND_DEVICE, "usb:046d:c52b:a b", NULL, DHF_POLICY_ACTION_DENY, 0 },
    { DHF_POLICY_KIND_DEVICE, "usb:*", NULL, DHF_POLICY_ACTION_DENY, 0 },
    { DHF_POLICY_KIND_DEVICE, "USB:046d:c52b", NULL, DHF_POLICY_ACTION_DENY, 0 },
    { DHF_POLICY_KIND_DEVICE, "pci:0000:00:1F.3", NULL, DHF_POLICY_ACTION_DENY, 10 },
    { DHF_POLICY_KIND_DEVICE, "pci:0000:00:1f.4", NULL, DHF_POLICY_ACTION_ALLOW, 11 },
    { DHF_POLICY_KIND_DEVICE, "pci:0000:00:1f.3 ", NULL, DHF_POLICY_ACTION_DENY, 0 },
    { DHF_POLICY_KIND_DEVICE, "pci:0000:00:2f.3", NULL, DHF_POLICY_ACTION_DENY, 0 },
    { DHF_POLICY_KIND_DEVICE, "input:keyboard", NULL, DHF_POLICY_ACTION_ALLOW, 11 },
    { DHF_POLICY_KIND_DEVICE, "input:joystick", NULL, DHF_POLICY_ACTION_DENY, 0 },
    { DHF_POLICY_KIND_DEVICE, "*", NULL, DHF_POLICY_ACTION_DENY, 0 },
    { DHF_POLICY_KIND_DEVICE, "usb:046d:c52b", "x", DHF_POLICY_ACTION_DENY, 0 },
    /* Hotkeys are case-insensitive and normalised. */
    { DHF_POLICY_KIND_HOTKEY, "alt+ctrl+f1", NULL, DHF_POLICY_ACTION_DENY, 12 },
    { DHF_POLICY_KIND_HOTKEY, "Ctrl+Alt+F2", NULL, DHF_POLICY_ACTION_ALLOW, 13 },
    { DHF_POLICY_KIND_HOTKEY, "Ctrl+Alt+F1 ", NULL, DHF_POLICY_ACTION_DENY, 0 },
    /* switch has no subject. */
    { DHF_POLICY_KIND_SWITCH, NULL, NULL, DHF_POLICY_ACTION_ALLOW, 14 },
    { DHF_POLICY_KIND_SWITCH, "x", NULL, DHF_POLICY_ACTION_DENY, 0 },
  };
  g_autoptr (DhfPolicy) policy = dhf_policy_parse_data ("q.policy", rules, (gsize) -1, NULL);

  g_assert_nonnull (policy);
  for (gsize i = 0; i < G_N_ELEMENTS (cases); i++)
    {
      const DhfPolicyDomain *source = &work;
      const DhfPolicyDomain *target = &personal;
      const gchar *token = NULL;
      DhfPolicyQuery query;
      DhfPolicyDecision decision = { DHF_POLICY_ACTION_ALLOW, NULL };
      DhfPolicyAction action;
      guint line;

      switch (cases[i].kind)
        {
          case DHF_POLICY_KIND_ACPI:
            source = target = &dom0;
            break;
          case DHF_POLICY_KIND_HOTKEY:
            source = &dom0;
            target = NULL;
            token = "@next";
            break;
          case DHF_POLICY_KIND_NETWORK:
            target = NULL;
            token = "@outside";
            break;
          case DHF_POLICY_KIND_XDM:
            target = &dom0;
            break;
          default:
            break;
        }
      query = (DhfPolicyQuery){ cases[i].kind, cases[i].subject, cases[i].argument,
                                source,        target,           token };
      action = dhf_policy_evaluate (policy, &query, &decision);
      line = decision.rule != NULL ? dhf_policy_rule_get_line (decision.rule) : 0;
      if (action != cases[i].action || decision.action != action || line != cases[i].line)
        g_error ("case %" G_GSIZE_FORMAT " %s '%s': got %s (line %u), want %s (line %u)", i,
                 dhf_policy_kind_to_string (cases[i].kind), cases[i].subject,
                 dhf_policy_action_to_string (action), line,
                 dhf_policy_action_to_string (cases[i].action), cases[i].line);
    }
}

/* Whatever dhf_policy_parse_subject accepts, the evaluator accepts too. */
static void
test_parse_subject_evaluates (void)
{
  static const gchar *const subjects[] = {
    "org.example.Sync1",
    "org.example.Sync1+arg",
    "org.example.Sync1+",
    "device:usb:046D:C52B",
    "device:usb:046d:c52b:SER",
    "device:pci:0000:00:1F.3",
    "device:input:mouse",
    "switch",
    "acpi:button/lid",
    "hotkey:alt+ctrl+1",
    "network:tcp/443",
    "network:udp/053",
    "network:icmp",
  };
  g_autoptr (DhfPolicy) policy = dhf_policy_parse_data ("all.policy",
                                                        "* @any @any allow\n"
                                                        "device:* @any @any allow\n"
                                                        "switch @any @any allow\n"
                                                        "acpi:* @dom0 @any allow\n"
                                                        "hotkey:Ctrl+Alt+1 @dom0 @next allow\n"
                                                        "network:* @any @outside allow\n",
                                                        (gsize) -1, NULL);

  g_assert_nonnull (policy);
  for (gsize i = 0; i < G_N_ELEMENTS (subjects); i++)
    {
      g_autoptr (GError) error = NULL;
      g_autofree gchar *subject = NULL;
      g_autofree gchar *argument = NULL;
      DhfPolicyQuery query = { 0 };
      DhfPolicyDecision decision = { 0 };
      DhfPolicyKind kind;

      g_assert_true (dhf_policy_parse_subject (subjects[i], &kind, &subject, &argument, &error));
      g_assert_no_error (error);
      query.kind = kind;
      query.subject = subject;
      query.argument = argument;
      query.source = kind == DHF_POLICY_KIND_ACPI || kind == DHF_POLICY_KIND_HOTKEY ? &dom0 : &work;
      query.target
          = kind == DHF_POLICY_KIND_HOTKEY || kind == DHF_POLICY_KIND_NETWORK ? NULL : &personal;
      query.target_token = kind == DHF_POLICY_KIND_HOTKEY    ? "@next"
                           : kind == DHF_POLICY_KIND_NETWORK ? "@outside"
                                                             : NULL;
      if (dhf_policy_evaluate (policy, &query, &decision) != DHF_POLICY_ACTION_ALLOW)
        g_error ("'%s' parsed as '%s' but was not evaluated", subjects[i], subject);
      g_assert_nonnull (decision.rule);
    }
}

/* ---- evaluation ---------------------------------------------------------- */

static void
test_evaluate_xdm (void)
{
  g_autoptr (DhfPolicy) policy
      = parse_clean ("org.x.Sync1+secret @any @any deny\n"                    /* 1 */
                     "org.x.Sync1+ work sync allow\n"                         /* 2 */
                     "org.x.Sync1 work @role:service ask\n"                   /* 3 */
                     "org.x.Sync1 @tag:corp @any allow target=sync quota=4\n" /* 4 */
                     "* @dom0 @any allow\n"                                   /* 5 */
                     "org.x.Files1 @vendor:acme @focused allow\n"             /* 6 */
                     "org.x.Files1 @any @dom0 ask\n");                        /* 7 */
  guint line;

  g_assert_cmpint (
      decide (policy, DHF_POLICY_KIND_XDM, "org.x.Sync1", "secret", &work, &syncd, NULL, &line), ==,
      DHF_POLICY_ACTION_DENY);
  g_assert_cmpuint (line, ==, 1);
  g_assert_cmpint (
      decide (policy, DHF_POLICY_KIND_XDM, "org.x.Sync1", NULL, &work, &syncd, NULL, &line), ==,
      DHF_POLICY_ACTION_ALLOW);
  g_assert_cmpuint (line, ==, 2);
  g_assert_cmpint (
      decide (policy, DHF_POLICY_KIND_XDM, "org.x.Sync1", "", &work, &syncd, NULL, &line), ==,
      DHF_POLICY_ACTION_ALLOW);
  g_assert_cmpuint (line, ==, 2);
  g_assert_cmpint (
      decide (policy, DHF_POLICY_KIND_XDM, "org.x.Sync1", "other", &work, &syncd, NULL, &line), ==,
      DHF_POLICY_ACTION_ASK);
  g_assert_cmpuint (line, ==, 3);
  g_assert_cmpint (
      decide (policy, DHF_POLICY_KIND_XDM, "org.x.Sync1", "other", &work, &personal, NULL, &line),
      ==, DHF_POLICY_ACTION_ALLOW);
  g_assert_cmpuint (line, ==, 4);
  /* @any never matches dom0, as target or source. */
  g_assert_cmpint (
      decide (policy, DHF_POLICY_KIND_XDM, "org.x.Sync1", "other", &work, &dom0, NULL, &line), ==,
      DHF_POLICY_ACTION_DENY);
  g_assert_cmpuint (line, ==, 0);
  g_assert_cmpint (
      decide (policy, DHF_POLICY_KIND_XDM, "org.x.Sync1", "secret", &dom0, &syncd, NULL, &line), ==,
      DHF_POLICY_ACTION_ALLOW);
  g_assert_cmpuint (line, ==, 5);
  g_assert_cmpint (
      decide (policy, DHF_POLICY_KIND_XDM, "org.other.Thing", NULL, &dom0, &work, NULL, &line), ==,
      DHF_POLICY_ACTION_ALLOW);
  g_assert_cmpuint (line, ==, 5);
  g_assert_cmpint (
      decide (policy, DHF_POLICY_KIND_XDM, "org.other.Thing", NULL, &work, &work, NULL, &line), ==,
      DHF_POLICY_ACTION_DENY);
  g_assert_cmpuint (line, ==, 0);
  g_assert_cmpint (
      decide (policy, DHF_POLICY_KIND_XDM, "org.x.Files1", NULL, &syncd, &personal, NULL, &line),
      ==, DHF_POLICY_ACTION_ALLOW);
  g_assert_cmpuint (line, ==, 6);
  g_assert_cmpint (
      decide (policy, DHF_POLICY_KIND_XDM, "org.x.Files1", NULL, &personal, &dom0, NULL, &line), ==,
      DHF_POLICY_ACTION_ASK);
  g_assert_cmpuint (line, ==, 7);
  /* Other kinds never see XDM rules; a NULL source matches nothing. */
  g_assert_cmpint (decide (policy, DHF_POLICY_KIND_SWITCH, NULL, NULL, &dom0, &work, NULL, &line),
                   ==, DHF_POLICY_ACTION_DENY);
  g_assert_cmpint (
      decide (policy, DHF_POLICY_KIND_XDM, "org.x.Sync1", NULL, NULL, &syncd, NULL, &line), ==,
      DHF_POLICY_ACTION_DENY);
  g_assert_cmpint (decide (policy, DHF_POLICY_KIND_XDM, NULL, NULL, &work, &syncd, NULL, &line), ==,
                   DHF_POLICY_ACTION_DENY);
}

static void
test_redirect (void)
{
  g_autoptr (DhfPolicy) policy
      = parse_clean ("org.x.Print1 @role:environment @any ask target=printer quota=3\n"
                     "org.x.Open1 @any @dom0 allow target=@dom0 notify=yes\n");
  DhfPolicyQuery query = { DHF_POLICY_KIND_XDM, "org.x.Print1", NULL, &work, &personal, NULL };
  DhfPolicyDecision decision;

  g_assert_cmpint (dhf_policy_evaluate (policy, &query, &decision), ==, DHF_POLICY_ACTION_ASK);
  g_assert_nonnull (decision.rule);
  g_assert_cmpstr (dhf_policy_rule_get_option (decision.rule, "target"), ==, "printer");
  g_assert_cmpstr (dhf_policy_rule_get_option (decision.rule, "quota"), ==, "3");
  g_assert_null (dhf_policy_rule_get_option (decision.rule, "notify"));
  g_assert_null (dhf_policy_rule_get_option (decision.rule, "nonsense"));
  g_assert_cmpint (dhf_policy_rule_get_kind (decision.rule), ==, DHF_POLICY_KIND_XDM);
  g_assert_cmpstr (dhf_policy_rule_get_file (decision.rule), ==, "t.policy");

  query.subject = "org.x.Open1";
  query.target = &dom0;
  g_assert_cmpint (dhf_policy_evaluate (policy, &query, &decision), ==, DHF_POLICY_ACTION_ALLOW);
  g_assert_cmpstr (dhf_policy_rule_get_option (decision.rule, "target"), ==, "@dom0");
  g_assert_cmpstr (dhf_policy_rule_get_option (decision.rule, "notify"), ==, "yes");
  /* A NULL decision is allowed. */
  g_assert_cmpint (dhf_policy_evaluate (policy, &query, NULL), ==, DHF_POLICY_ACTION_ALLOW);
}

static void
test_evaluate_device (void)
{
  g_autoptr (DhfPolicy) policy
      = parse_clean ("device:usb:046d:c52b:SECRET @any @any deny\n"           /* 1 */
                     "device:usb:046d:c52b work @focused allow mode=pinned\n" /* 2 */
                     "device:usb:* @dom0 @focused ask\n"                      /* 3 */
                     "device:pci:0000:00:1f.3 @dom0 work allow\n"             /* 4 */
                     "device:pci:* @dom0 @any deny\n"                         /* 5 */
                     "device:input:keyboard @dom0 @focused allow\n"           /* 6 */
                     "device:input:* @dom0 personal allow\n"                  /* 7 */
                     "device:* @dom0 @any ask\n");                            /* 8 */
  guint line;

  g_assert_cmpint (decide (policy, DHF_POLICY_KIND_DEVICE, "usb:046d:c52b:SECRET", NULL, &work,
                           &personal, NULL, &line),
                   ==, DHF_POLICY_ACTION_DENY);
  g_assert_cmpuint (line, ==, 1);
  /* A rule without serial matches every serial; hex is case-insensitive,
   * serials are not. */
  g_assert_cmpint (decide (policy, DHF_POLICY_KIND_DEVICE, "usb:046D:C52B:secret", NULL, &work,
                           &personal, NULL, &line),
                   ==, DHF_POLICY_ACTION_ALLOW);
  g_assert_cmpuint (line, ==, 2);
  g_assert_cmpint (
      decide (policy, DHF_POLICY_KIND_DEVICE, "usb:046d:c52b", NULL, &work, &personal, NULL, &line),
      ==, DHF_POLICY_ACTION_ALLOW);
  g_assert_cmpuint (line, ==, 2);
  g_assert_cmpint (
      decide (policy, DHF_POLICY_KIND_DEVICE, "usb:046d:c52b", NULL, &work, &work, NULL, &line), ==,
      DHF_POLICY_ACTION_DENY);
  g_assert_cmpuint (line, ==, 0);
  g_assert_cmpint (
      decide (policy, DHF_POLICY_KIND_DEVICE, "usb:1234:5678", NULL, &dom0, &personal, NULL, &line),
      ==, DHF_POLICY_ACTION_ASK);
  g_assert_cmpuint (line, ==, 3);
  g_assert_cmpint (
      decide (policy, DHF_POLICY_KIND_DEVICE, "pci:0000:00:1F.3", NULL, &dom0, &work, NULL, &line),
      ==, DHF_POLICY_ACTION_ALLOW);
  g_assert_cmpuint (line, ==, 4);
  g_assert_cmpint (
      decide (policy, DHF_POLICY_KIND_DEVICE, "pci:0000:00:1f.4", NULL, &dom0, &work, NULL, &line),
      ==, DHF_POLICY_ACTION_DENY);
  g_assert_cmpuint (line, ==, 5);
  g_assert_cmpint (decide (policy, DHF_POLICY_KIND_DEVICE, "input:keyboard", NULL, &dom0, &personal,
                           NULL, &line),
                   ==, DHF_POLICY_ACTION_ALLOW);
  g_assert_cmpuint (line, ==, 6);
  g_assert_cmpint (
      decide (policy, DHF_POLICY_KIND_DEVICE, "input:mouse", NULL, &dom0, &personal, NULL, &line),
      ==, DHF_POLICY_ACTION_ALLOW);
  g_assert_cmpuint (line, ==, 7);
  g_assert_cmpint (
      decide (policy, DHF_POLICY_KIND_DEVICE, "input:mouse", NULL, &dom0, &work, NULL, &line), ==,
      DHF_POLICY_ACTION_ASK);
  g_assert_cmpuint (line, ==, 8);
  g_assert_cmpint (
      decide (policy, DHF_POLICY_KIND_DEVICE, "floppy:0", NULL, &dom0, &work, NULL, &line), ==,
      DHF_POLICY_ACTION_DENY);
  g_assert_cmpuint (line, ==, 0);
}

static void
test_evaluate_switch_acpi (void)
{
  g_autoptr (DhfPolicy) policy
      = parse_clean ("switch @dom0 @any allow\n"                        /* 1 */
                     "switch @focused work ask\n"                       /* 2 */
                     "acpi:button/lid @dom0 @dom0 allow host=suspend\n" /* 3 */
                     "acpi:button @dom0 @focused allow\n"               /* 4 */
                     "acpi:ac_adapter @dom0 @any allow\n"               /* 5 */
                     "acpi:* @dom0 @dom0 deny host=none\n");            /* 6 */
  guint line;

  g_assert_cmpint (decide (policy, DHF_POLICY_KIND_SWITCH, NULL, NULL, &dom0, &work, NULL, &line),
                   ==, DHF_POLICY_ACTION_ALLOW);
  g_assert_cmpuint (line, ==, 1);
  g_assert_cmpint (
      decide (policy, DHF_POLICY_KIND_SWITCH, NULL, NULL, &personal, &work, NULL, &line), ==,
      DHF_POLICY_ACTION_ASK);
  g_assert_cmpuint (line, ==, 2);
  /* @focused matches dom0 when dom0 is focused. */
  g_assert_cmpint (
      decide (policy, DHF_POLICY_KIND_SWITCH, NULL, NULL, &dom0_focused, &work, NULL, &line), ==,
      DHF_POLICY_ACTION_ALLOW);
  g_assert_cmpint (
      decide (policy, DHF_POLICY_KIND_SWITCH, NULL, NULL, &work, &personal, NULL, &line), ==,
      DHF_POLICY_ACTION_DENY);
  g_assert_cmpint (
      decide (policy, DHF_POLICY_KIND_ACPI, "button/lid", NULL, &dom0, &dom0, NULL, &line), ==,
      DHF_POLICY_ACTION_ALLOW);
  g_assert_cmpuint (line, ==, 3);
  g_assert_cmpint (
      decide (policy, DHF_POLICY_KIND_ACPI, "button/power", NULL, &dom0, &personal, NULL, &line),
      ==, DHF_POLICY_ACTION_ALLOW);
  g_assert_cmpuint (line, ==, 4);
  g_assert_cmpint (decide (policy, DHF_POLICY_KIND_ACPI, "button/power", NULL, &dom0, &dom0_focused,
                           NULL, &line),
                   ==, DHF_POLICY_ACTION_ALLOW);
  g_assert_cmpuint (line, ==, 4);
  g_assert_cmpint (
      decide (policy, DHF_POLICY_KIND_ACPI, "ac_adapter", NULL, &dom0, &work, NULL, &line), ==,
      DHF_POLICY_ACTION_ALLOW);
  g_assert_cmpuint (line, ==, 5);
  g_assert_cmpint (
      decide (policy, DHF_POLICY_KIND_ACPI, "battery/low", NULL, &dom0, &dom0, NULL, &line), ==,
      DHF_POLICY_ACTION_DENY);
  g_assert_cmpuint (line, ==, 6);
  g_assert_cmpint (
      decide (policy, DHF_POLICY_KIND_ACPI, "battery/low", NULL, &dom0, &work, NULL, &line), ==,
      DHF_POLICY_ACTION_DENY);
  g_assert_cmpuint (line, ==, 0);
}

static void
test_evaluate_hotkey_network (void)
{
  g_autoptr (DhfPolicy) policy
      = parse_clean ("hotkey:Ctrl+Alt+Right @dom0 @next allow\n"      /* 1 */
                     "hotkey:Ctrl+Alt+Left @dom0 @previous allow\n"   /* 2 */
                     "hotkey:Ctrl+Alt+1 @dom0 personal allow\n"       /* 3 */
                     "hotkey:Super+L @dom0 @focused deny\n"           /* 4 */
                     "network:tcp/443 work @outside allow\n"          /* 5 */
                     "network:tcp/1-1023 @any @outside deny\n"        /* 6 */
                     "network:udp @role:environment @outside allow\n" /* 7 */
                     "network:icmp @any @outside allow\n"             /* 8 */
                     "network:tcp/8080 @any sync allow\n"             /* 9 */
                     "network:* @tag:corp @outside allow\n");         /* 10 */
  guint line;

  g_assert_cmpint (
      decide (policy, DHF_POLICY_KIND_HOTKEY, "alt+ctrl+right", NULL, &dom0, NULL, "@next", &line),
      ==, DHF_POLICY_ACTION_ALLOW);
  g_assert_cmpuint (line, ==, 1);
  g_assert_cmpint (decide (policy, DHF_POLICY_KIND_HOTKEY, "Ctrl+Alt+Right", NULL, &dom0, NULL,
                           "@previous", &line),
                   ==, DHF_POLICY_ACTION_DENY);
  g_assert_cmpint (decide (policy, DHF_POLICY_KIND_HOTKEY, "Ctrl+Alt+Left", NULL, &dom0, NULL,
                           "@previous", &line),
                   ==, DHF_POLICY_ACTION_ALLOW);
  g_assert_cmpuint (line, ==, 2);
  g_assert_cmpint (
      decide (policy, DHF_POLICY_KIND_HOTKEY, "Ctrl+Alt+1", NULL, &dom0, &personal, NULL, &line),
      ==, DHF_POLICY_ACTION_ALLOW);
  g_assert_cmpuint (line, ==, 3);
  g_assert_cmpint (
      decide (policy, DHF_POLICY_KIND_HOTKEY, "Ctrl+Alt+1", NULL, &dom0, NULL, "@next", &line), ==,
      DHF_POLICY_ACTION_DENY);
  g_assert_cmpint (
      decide (policy, DHF_POLICY_KIND_HOTKEY, "super+l", NULL, &dom0, &dom0_focused, NULL, &line),
      ==, DHF_POLICY_ACTION_DENY);
  g_assert_cmpuint (line, ==, 4);
  g_assert_cmpint (
      decide (policy, DHF_POLICY_KIND_HOTKEY, "l", NULL, &dom0, &dom0_focused, NULL, &line), ==,
      DHF_POLICY_ACTION_DENY);
  g_assert_cmpuint (line, ==, 0);

  g_assert_cmpint (
      decide (policy, DHF_POLICY_KIND_NETWORK, "tcp/443", NULL, &work, NULL, "@outside", &line), ==,
      DHF_POLICY_ACTION_ALLOW);
  g_assert_cmpuint (line, ==, 5);
  g_assert_cmpint (
      decide (policy, DHF_POLICY_KIND_NETWORK, "tcp/443", NULL, &personal, NULL, "@outside", &line),
      ==, DHF_POLICY_ACTION_DENY);
  g_assert_cmpuint (line, ==, 6);
  g_assert_cmpint (decide (policy, DHF_POLICY_KIND_NETWORK, "tcp/1024", NULL, &personal, NULL,
                           "@outside", &line),
                   ==, DHF_POLICY_ACTION_DENY);
  g_assert_cmpuint (line, ==, 0);
  g_assert_cmpint (
      decide (policy, DHF_POLICY_KIND_NETWORK, "tcp/1024", NULL, &work, NULL, "@outside", &line),
      ==, DHF_POLICY_ACTION_ALLOW);
  g_assert_cmpuint (line, ==, 10);
  g_assert_cmpint (
      decide (policy, DHF_POLICY_KIND_NETWORK, "udp/53", NULL, &personal, NULL, "@outside", &line),
      ==, DHF_POLICY_ACTION_ALLOW);
  g_assert_cmpuint (line, ==, 7);
  g_assert_cmpint (
      decide (policy, DHF_POLICY_KIND_NETWORK, "icmp", NULL, &syncd, NULL, "@outside", &line), ==,
      DHF_POLICY_ACTION_ALLOW);
  g_assert_cmpuint (line, ==, 8);
  g_assert_cmpint (
      decide (policy, DHF_POLICY_KIND_NETWORK, "tcp/8080", NULL, &personal, &syncd, NULL, &line),
      ==, DHF_POLICY_ACTION_ALLOW);
  g_assert_cmpuint (line, ==, 9);
  g_assert_cmpint (decide (policy, DHF_POLICY_KIND_NETWORK, "tcp/8080", NULL, &personal, NULL,
                           "@outside", &line),
                   ==, DHF_POLICY_ACTION_DENY);
  g_assert_cmpint (
      decide (policy, DHF_POLICY_KIND_NETWORK, "tcp/99999", NULL, &work, NULL, "@outside", &line),
      ==, DHF_POLICY_ACTION_DENY);
  g_assert_cmpint (
      decide (policy, DHF_POLICY_KIND_NETWORK, "sctp/1", NULL, &work, NULL, "@outside", &line), ==,
      DHF_POLICY_ACTION_DENY);
}

static void
test_tokens (void)
{
  static const struct
  {
    const gchar *token;
    const DhfPolicyDomain *domain;
    gboolean matches;
  } cases[] = {
    { "work", &work, TRUE },
    { "work", &personal, FALSE },
    { "@any", &work, TRUE },
    { "@any", &dom0, FALSE },
    { "@dom0", &dom0, TRUE },
    { "@dom0", &work, FALSE },
    { "@focused", &personal, TRUE },
    { "@focused", &work, FALSE },
    { "@focused", &dom0_focused, TRUE },
    { "@focused", &dom0, FALSE },
    { "@role:environment", &work, TRUE },
    { "@role:service", &work, FALSE },
    { "@role:service", &syncd, TRUE },
    { "@role:service", &dom0, FALSE },
    { "@tag:corp", &work, TRUE },
    { "@tag:vpn", &work, TRUE },
    { "@tag:corp", &personal, FALSE },
    { "@tag:corp", &syncd, FALSE },
    { "@vendor:acme", &syncd, TRUE },
    { "@vendor:\"dhf examples\"", &personal, TRUE },
    { "@vendor:acme", &personal, FALSE },
  };

  for (gsize i = 0; i < G_N_ELEMENTS (cases); i++)
    {
      g_autofree gchar *text = g_strdup_printf ("org.x.Y @dom0 %s allow\n", cases[i].token);
      g_autoptr (DhfPolicy) policy = parse_clean (text);
      DhfPolicyAction expected
          = cases[i].matches ? DHF_POLICY_ACTION_ALLOW : DHF_POLICY_ACTION_DENY;

      g_test_message ("%s", cases[i].token);
      g_assert_cmpint (
          decide (policy, DHF_POLICY_KIND_XDM, "org.x.Y", NULL, &dom0, cases[i].domain, NULL, NULL),
          ==, expected);
    }
}

/* ---- files and precedence -------------------------------------------------- */

/* Diagnostics with the temporary directory left out. */
static gchar *
format_relative (GPtrArray *diagnostics, const gchar *root)
{
  g_autofree gchar *all = format_all (diagnostics);
  g_autofree gchar *prefix = g_strconcat (root, "/", NULL);
  g_auto (GStrv) parts = g_strsplit (all, prefix, -1);

  return g_strjoinv ("", parts);
}

static void
test_dirs_precedence (void)
{
  g_autofree gchar *root = g_dir_make_tmp ("dhf-policy-XXXXXX", NULL);
  g_autofree gchar *admin = g_build_filename (root, "admin", NULL);
  g_autofree gchar *vendor = g_build_filename (root, "vendor", NULL);
  g_autofree gchar *missing = g_build_filename (root, "missing", NULL);
  const gchar *dirs[] = { admin, missing, vendor, NULL };
  g_autoptr (GPtrArray) diagnostics = new_diagnostics ();
  g_autoptr (DhfPolicy) policy = NULL;
  g_autofree gchar *text = NULL;
  const gchar *const *files;
  guint line;

  dhf_test_write_file (vendor, "50-shared.policy", "org.x.A @any @any deny\n");
  dhf_test_write_file (vendor, "10-vendor.policy", "org.x.B @any @any ask\n");
  dhf_test_write_file (vendor, "Z9.policy", "org.x.C @any @any deny\n");
  dhf_test_write_file (admin, "50-shared.policy", "org.x.A @any @any allow\n");
  dhf_test_write_file (admin, "a0.policy", "org.x.C @any @any allow\norg.x.B @any @any allow\n");
  dhf_test_write_file (admin, "README", "not a policy");
  dhf_test_write_file (admin, "20-x.policy~", "garbage");
  dhf_test_write_file (admin, ".hidden.policy", "garbage");
  dhf_test_write_file (vendor, "notes.txt", "garbage");

  policy = dhf_policy_load_dirs (dirs, diagnostics);
  g_assert_nonnull (policy);
  /* a0.policy comes last, so both its rules are shadowed. */
  text = format_relative (diagnostics, root);
  g_assert_cmpstr (text, ==,
                   "admin/a0.policy:1:1: warning: this rule can never match: vendor/Z9.policy:1 "
                   "(org.x.C @any @any deny) matches everything it would\n"
                   "admin/a0.policy:2:1: warning: this rule can never match: "
                   "vendor/10-vendor.policy:1 (org.x.B @any @any ask) matches everything it "
                   "would\n");
  g_clear_pointer (&text, g_free);
  files = dhf_policy_get_files (policy);
  /* C-locale order: digits < uppercase < lowercase; admin replaced the
   * vendor's 50-shared.policy. */
  g_assert_cmpuint (g_strv_length ((gchar **) files), ==, 4);
  g_assert_true (g_str_has_suffix (files[0], "vendor/10-vendor.policy"));
  g_assert_true (g_str_has_suffix (files[1], "admin/50-shared.policy"));
  g_assert_true (g_str_has_suffix (files[2], "vendor/Z9.policy"));
  g_assert_true (g_str_has_suffix (files[3], "admin/a0.policy"));
  g_assert_cmpuint (dhf_policy_get_n_rules (policy), ==, 5);

  g_assert_cmpint (
      decide (policy, DHF_POLICY_KIND_XDM, "org.x.A", NULL, &work, &syncd, NULL, &line), ==,
      DHF_POLICY_ACTION_ALLOW);
  g_assert_cmpint (
      decide (policy, DHF_POLICY_KIND_XDM, "org.x.B", NULL, &work, &syncd, NULL, &line), ==,
      DHF_POLICY_ACTION_ASK);
  g_assert_cmpint (
      decide (policy, DHF_POLICY_KIND_XDM, "org.x.C", NULL, &work, &syncd, NULL, &line), ==,
      DHF_POLICY_ACTION_DENY);
  g_assert_cmpint (
      decide (policy, DHF_POLICY_KIND_XDM, "org.x.D", NULL, &work, &syncd, NULL, &line), ==,
      DHF_POLICY_ACTION_DENY);
  g_assert_cmpuint (line, ==, 0);

  text = dhf_policy_to_string (policy);
  g_assert_true (strstr (text, "vendor/10-vendor.policy:1: org.x.B @any @any ask\n") != NULL);

  /* Bad names are errors; so is an unreadable rule file. */
  g_clear_pointer (&policy, dhf_policy_unref);
  g_ptr_array_set_size (diagnostics, 0);
  dhf_test_write_file (admin, "my rules.policy", "");
  {
    g_autofree gchar *dir_policy = g_build_filename (admin, "dir.policy", NULL);

    g_assert_cmpint (g_mkdir_with_parents (dir_policy, 0755), ==, 0);
  }
  policy = dhf_policy_load_dirs (dirs, diagnostics);
  g_assert_null (policy);
  g_free (text);
  text = format_relative (diagnostics, root);
  g_assert_true (g_str_has_prefix (text, "admin/my rules.policy: error: 'my rules.policy' is not a "
                                         "valid policy file name (expected "
                                         "[A-Za-z0-9_][A-Za-z0-9_.-]*.policy)\n"));
  g_assert_true (strstr (text, "\nadmin/dir.policy: error: cannot read: ") != NULL);
  g_assert_cmpuint (diagnostics->len, ==, 4);

  /* No directory at all: the empty policy. */
  {
    const gchar *none[] = { missing, NULL };
    g_autoptr (DhfPolicy) empty = dhf_policy_load_dirs (none, NULL);

    g_assert_nonnull (empty);
    g_assert_cmpuint (dhf_policy_get_n_rules (empty), ==, 0);
  }
  {
    g_autoptr (DhfPolicy) empty = dhf_policy_new_empty ();

    g_assert_cmpint (decide (empty, DHF_POLICY_KIND_SWITCH, NULL, NULL, &dom0, &work, NULL, &line),
                     ==, DHF_POLICY_ACTION_DENY);
    g_assert_cmpuint (line, ==, 0);
    g_assert_cmpstr (dhf_policy_get_files (empty)[0], ==, NULL);
  }
  dhf_test_remove_tree (root);
}

static void
test_load_files_order (void)
{
  g_autofree gchar *root = g_dir_make_tmp ("dhf-policy-XXXXXX", NULL);
  g_autofree gchar *a = g_build_filename (root, "b.policy", NULL);
  g_autofree gchar *b = g_build_filename (root, "a.policy", NULL);
  const gchar *files[] = { a, b, NULL };
  g_autoptr (DhfPolicy) policy = NULL;
  guint line;

  dhf_test_write_file (root, "b.policy", "\n\norg.x.Y @any @any ask\n");
  dhf_test_write_file (root, "a.policy", "org.x.Y @any @any allow\n");
  policy = dhf_policy_load_files (files, NULL);
  g_assert_nonnull (policy);
  /* The given order, not the names' order. */
  g_assert_cmpint (
      decide (policy, DHF_POLICY_KIND_XDM, "org.x.Y", NULL, &work, &syncd, NULL, &line), ==,
      DHF_POLICY_ACTION_ASK);
  g_assert_cmpuint (line, ==, 3);
  dhf_test_remove_tree (root);
}

/* ---- diagnostics ----------------------------------------------------------- */

static const struct
{
  const gchar *text;
  const gchar *expected; /* every diagnostic, "t.policy:" left out, joined by '\n' */
} error_cases[] = {
  /* columns and actions */
  { "org.x.Y @any @dom0",
    "1:1: error: expected 4 columns (SUBJECT SOURCE TARGET ACTION), found 3" },
  { "   org.x.Y", "1:4: error: expected 4 columns (SUBJECT SOURCE TARGET ACTION), found 1" },
  { "org.x.Y @any @dom0 alow", "1:20: error: unknown action 'alow' (expected allow, deny or ask)" },
  { "acpi:* @dom0 @dom0 ask",
    "1:20: error: 'ask' is not valid for acpi rules (expected allow or deny)" },
  { "hotkey:Ctrl+A @dom0 @next ask",
    "1:27: error: 'ask' is not valid for hotkey rules (expected allow or deny)" },
  { "network:* @any @outside ask",
    "1:25: error: 'ask' is not valid for network rules (expected allow or deny)" },
  { "network:* @any @outside permit",
    "1:25: error: unknown action 'permit' (expected allow or deny)" },
  /* options */
  { "org.x.Y @any @dom0 allow taget=x",
    "1:26: error: unknown option 'taget' (expected notify, target or quota)" },
  { "device:* @any @dom0 allow taget=x",
    "1:27: error: unknown option 'taget' (expected notify or mode)" },
  { "switch @any @dom0 allow quota=1",
    "1:25: error: option 'quota' is not valid for switch rules (expected notify)" },
  { "acpi:* @dom0 @dom0 allow mode=pinned",
    "1:26: error: option 'mode' is not valid for acpi rules (expected notify or host)" },
  { "org.x.Y @any @dom0 allow host=lock",
    "1:26: error: option 'host' is not valid for xdm rules (expected notify, target or quota)" },
  { "org.x.Y @any @dom0 allow notify=yes notify=no", "1:37: error: duplicate option 'notify'" },
  { "org.x.Y @any @dom0 allow notify=maybe",
    "1:26: error: invalid value 'maybe' for notify (expected yes or no)" },
  { "org.x.Y @any @dom0 allow notify=",
    "1:26: error: invalid value '' for notify (expected yes or no)" },
  { "org.x.Y @any @dom0 allow quota=0",
    "1:26: error: invalid value '0' for quota (expected 1 to 10000)" },
  { "org.x.Y @any @dom0 allow quota=10001",
    "1:26: error: invalid value '10001' for quota (expected 1 to 10000)" },
  { "org.x.Y @any @dom0 allow quota=-1",
    "1:26: error: invalid value '-1' for quota (expected 1 to 10000)" },
  { "org.x.Y @any @dom0 allow target=dom0",
    "1:26: error: invalid value 'dom0' for target (expected a domain name or @dom0)" },
  { "org.x.Y @any @dom0 allow target=@any",
    "1:26: error: invalid value '@any' for target (expected a domain name or @dom0)" },
  { "org.x.Y @any @dom0 deny target=work",
    "1:25: error: option 'target' is only valid for allow and ask rules" },
  { "device:* @any @dom0 deny mode=pinned",
    "1:26: error: option 'mode' is only valid for allow and ask rules" },
  { "device:* @any @dom0 allow mode=sticky",
    "1:27: error: invalid value 'sticky' for mode (expected pinned or follow-focus)" },
  { "acpi:* @dom0 @dom0 allow host=reboot",
    "1:26: error: invalid value 'reboot' for host (expected none, suspend, hibernate, shutdown or "
    "lock)" },
  { "org.x.Y @any @dom0 allow notify",
    "1:26: error: expected an option KEY=VALUE, found 'notify'" },
  { "org.x.Y @any @dom0 allow =yes", "1:26: error: expected an option KEY=VALUE, found '=yes'" },
  /* domain tokens */
  { "org.x.Y @anyvm @dom0 allow",
    "1:9: error: unknown domain token '@anyvm' (did you mean '@any'?)" },
  { "org.x.Y @any @dom allow", "1:14: error: unknown domain token '@dom' (did you mean '@dom0'?)" },
  { "org.x.Y @rol:service @dom0 allow",
    "1:9: error: unknown domain token '@rol:service' (did you mean '@role:service'?)" },
  { "org.x.Y @vendr @dom0 allow",
    "1:9: error: unknown domain token '@vendr' (did you mean '@vendor:...'?)" },
  { "org.x.Y @xyzzy @dom0 allow",
    "1:9: error: unknown domain token '@xyzzy' (expected @any, @dom0, @focused, @role:ROLE, "
    "@tag:TAG, @vendor:VENDOR or a domain name)" },
  { "org.x.Y @any:x @dom0 allow",
    "1:9: error: unknown domain token '@any:x' (did you mean '@any'?)" },
  { "org.x.Y dom0 work allow", "1:9: error: 'dom0' is not a domain name (did you mean '@dom0'?)" },
  { "org.x.Y Work @dom0 allow",
    "1:9: error: invalid domain name 'Work' (expected at most 48 lowercase letters, digits and "
    "'-', starting with a letter, without '--' or a trailing '-')" },
  { "org.x.Y a--b @dom0 allow",
    "1:9: error: invalid domain name 'a--b' (expected at most 48 lowercase letters, digits and "
    "'-', starting with a letter, without '--' or a trailing '-')" },
  { "org.x.Y ab- @dom0 allow",
    "1:9: error: invalid domain name 'ab-' (expected at most 48 lowercase letters, digits and '-', "
    "starting with a letter, without '--' or a trailing '-')" },
  { "org.x.Y 9ab @dom0 allow",
    "1:9: error: invalid domain name '9ab' (expected at most 48 lowercase letters, digits and '-', "
    "starting with a letter, without '--' or a trailing '-')" },
  { "org.x.Y \"\" @dom0 allow",
    "1:9: error: invalid domain name '' (expected at most 48 lowercase letters, digits and '-', "
    "starting with a letter, without '--' or a trailing '-')" },
  { "org.x.Y aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa @dom0 allow",
    "1:9: error: invalid domain name 'aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa' (expected "
    "at most 48 lowercase letters, digits and '-', starting with a letter, without '--' or a "
    "trailing '-')" },
  { "org.x.Y @role:admin @dom0 allow",
    "1:9: error: unknown role 'admin' (expected environment or service)" },
  { "org.x.Y @tag:Corp @dom0 allow",
    "1:9: error: invalid tag 'Corp' (expected 1 to 32 lowercase letters, digits, '_' or '-', "
    "starting with a letter or digit)" },
  { "org.x.Y @tag: @dom0 allow", "1:9: error: invalid tag '' (expected 1 to 32 lowercase letters, "
                                 "digits, '_' or '-', starting with a letter or digit)" },
  { "org.x.Y @tag:_x @dom0 allow",
    "1:9: error: invalid tag '_x' (expected 1 to 32 lowercase letters, digits, '_' or '-', "
    "starting with a letter or digit)" },
  { "org.x.Y @vendor: @dom0 allow", "1:9: error: invalid vendor '' (expected 1 to 64 characters, "
                                    "no control characters; quote it if it has spaces)" },
  { "org.x.Y @vendor:\"a\tb\" @dom0 allow",
    "1:9: error: invalid vendor 'a\tb' (expected 1 to 64 characters, no control characters; quote "
    "it if it has spaces)" },
  { "org.x.Y @next @dom0 allow",
    "1:9: error: '@next' is only valid as the TARGET of hotkey rules" },
  { "org.x.Y @any @previous allow",
    "1:14: error: '@previous' is only valid as the TARGET of hotkey rules" },
  { "org.x.Y @any @outside allow",
    "1:14: error: '@outside' is only valid as the TARGET of network rules" },
  { "network:* @outside @outside allow",
    "1:11: error: '@outside' is only valid as the TARGET of network rules" },
  { "acpi:* work @dom0 allow",
    "1:8: error: acpi rules must have @dom0 as SOURCE (ACPI events arise in dom0), not 'work'" },
  { "acpi:* @any @dom0 allow",
    "1:8: error: acpi rules must have @dom0 as SOURCE (ACPI events arise in dom0), not '@any'" },
  { "hotkey:Ctrl+A @focused @next allow",
    "1:15: error: hotkey rules must have @dom0 as SOURCE (hotkeys arise in dom0), not '@focused'" },
  /* XDM subjects */
  { "org @any @dom0 allow", "1:1: error: invalid service name 'org' (expected a reverse-DNS name "
                            "such as org.example.Sync1, or *)" },
  { "org..x @any @dom0 allow", "1:1: error: invalid service name 'org..x' (expected a reverse-DNS "
                               "name such as org.example.Sync1, or *)" },
  { "org.9x @any @dom0 allow", "1:1: error: invalid service name 'org.9x' (expected a reverse-DNS "
                               "name such as org.example.Sync1, or *)" },
  { "org.x. @any @dom0 allow", "1:1: error: invalid service name 'org.x.' (expected a reverse-DNS "
                               "name such as org.example.Sync1, or *)" },
  { "*+x @any @dom0 allow", "1:1: error: the wildcard service '*' takes no +ARGUMENT" },
  { "org.x.Y+a/b @any @dom0 allow",
    "1:1: error: invalid argument 'a/b' (expected at most 64 letters, digits, '.', '_' or '-')" },
  { "org.x.Y+aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa @any @dom0 allow",
    "1:1: error: invalid argument "
    "'aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa' (expected at most 64 "
    "letters, digits, '.', '_' or '-')" },
  { "device @any @dom0 allow", "1:1: error: 'device' needs a selector: device:..." },
  { "devic:* @any @dom0 allow", "1:1: error: unknown rule kind 'devic' (did you mean 'device'?)" },
  { "usb:* @any @dom0 allow", "1:1: error: unknown rule kind 'usb' (expected device, switch, acpi, "
                              "hotkey or network, or a service name)" },
  { "switch:x @any @dom0 allow", "1:1: error: 'switch' takes no selector" },
  /* device selectors */
  { "device:usb:46d:c52b @any @dom0 allow",
    "1:1: error: invalid USB device 'usb:46d:c52b' (expected usb:*, usb:VVVV:PPPP or "
    "usb:VVVV:PPPP:SERIAL with 4 hex digits each)" },
  { "device:usb:046g:c52b @any @dom0 allow",
    "1:1: error: invalid USB device 'usb:046g:c52b' (expected usb:*, usb:VVVV:PPPP or "
    "usb:VVVV:PPPP:SERIAL with 4 hex digits each)" },
  { "device:usb:046d:c52b: @any @dom0 allow",
    "1:1: error: invalid USB serial '' (expected 1 to 128 letters, digits, '.', '_' or '-')" },
  { "device:usb:046d:c52b:a/b @any @dom0 allow",
    "1:1: error: invalid USB serial 'a/b' (expected 1 to 128 letters, digits, '.', '_' or '-')" },
  { "device:pci:0000:00:20.0 @any @dom0 allow",
    "1:1: error: invalid PCI address 'pci:0000:00:20.0' (expected pci:* or pci:DDDD:BB:SS.F in "
    "hex, slot at most 1f, function at most 7)" },
  { "device:pci:0000:00:1f.8 @any @dom0 allow",
    "1:1: error: invalid PCI address 'pci:0000:00:1f.8' (expected pci:* or pci:DDDD:BB:SS.F in "
    "hex, slot at most 1f, function at most 7)" },
  { "device:pci:00:1f.3 @any @dom0 allow",
    "1:1: error: invalid PCI address 'pci:00:1f.3' (expected pci:* or pci:DDDD:BB:SS.F in hex, "
    "slot at most 1f, function at most 7)" },
  { "device:input:joystick @any @dom0 allow",
    "1:1: error: unknown input device 'joystick' (expected keyboard, mouse, tablet or *)" },
  { "device:sound @any @dom0 allow",
    "1:1: error: invalid device selector 'sound' (expected *, usb:..., pci:... or input:...)" },
  /* acpi, hotkey, network subjects */
  { "acpi:Button/lid @dom0 @dom0 allow",
    "1:1: error: invalid ACPI event 'Button/lid' (expected *, CLASS, CLASS/* or CLASS/NAME of at "
    "most 64 lowercase letters, digits or '_' each)" },
  { "acpi:button/ @dom0 @dom0 allow",
    "1:1: error: invalid ACPI event 'button/' (expected *, CLASS, CLASS/* or CLASS/NAME of at most "
    "64 lowercase letters, digits or '_' each)" },
  { "acpi:*/lid @dom0 @dom0 allow",
    "1:1: error: invalid ACPI event '*/lid' (expected *, CLASS, CLASS/* or CLASS/NAME of at most "
    "64 lowercase letters, digits or '_' each)" },
  { "hotkey:A @dom0 @next allow",
    "1:1: error: hotkey 'A' needs at least one modifier (Ctrl, Alt, Shift or Super)" },
  { "hotkey:Ctrl+Ctrl+A @dom0 @next allow",
    "1:1: error: duplicate modifier 'Ctrl' in hotkey 'Ctrl+Ctrl+A'" },
  { "hotkey:Meta+A @dom0 @next allow",
    "1:1: error: unknown modifier 'Meta' in hotkey 'Meta+A' (expected Ctrl, Alt, Shift or Super)" },
  { "hotkey:Ctrl+F25 @dom0 @next allow",
    "1:1: error: unknown key 'F25' in hotkey 'Ctrl+F25' (expected A-Z, 0-9, F1-F24, Tab, Space, "
    "Escape, Left, Right, Up, Down, Home, End, PageUp, PageDown, Return, BackSpace, Delete, Insert "
    "or Print)" },
  { "hotkey:Ctrl+Alt @dom0 @next allow",
    "1:1: error: unknown key 'Alt' in hotkey 'Ctrl+Alt' (expected A-Z, 0-9, F1-F24, Tab, Space, "
    "Escape, Left, Right, Up, Down, Home, End, PageUp, PageDown, Return, BackSpace, Delete, Insert "
    "or Print)" },
  { "network:sctp @any @outside allow",
    "1:1: error: unknown protocol 'sctp' (expected tcp, udp, icmp or *)" },
  { "network:icmp/1 @any @outside allow",
    "1:1: error: 'icmp' takes no ports (only tcp and udp do)" },
  { "network:*/80 @any @outside allow", "1:1: error: '*' takes no ports (only tcp and udp do)" },
  { "network:tcp/0 @any @outside allow",
    "1:1: error: invalid port '0' (expected 1 to 65535, or N-M)" },
  { "network:tcp/65536 @any @outside allow",
    "1:1: error: invalid port '65536' (expected 1 to 65535, or N-M)" },
  { "network:tcp/http @any @outside allow",
    "1:1: error: invalid port 'http' (expected 1 to 65535, or N-M)" },
  { "network:tcp/90-80 @any @outside allow",
    "1:1: error: invalid port range '90-80' (expected N-M with 1 <= N <= M <= 65535)" },
  /* lexing, directives, several errors on a line and across lines */
  { "org.x.Y \"@any @dom0 allow", "1:9: error: unterminated quoted string" },
  { "org.x.Y \"a\\tb\" @dom0 allow",
    "1:11: error: invalid escape in quoted string (only \\\" and \\\\ are allowed)" },
  { "org.x.Y @any @dom0 allow\xff", "1:25: error: invalid UTF-8" },
  { "!inclde x.policy", "1:1: error: unknown directive '!inclde' (expected !include)" },
  { "!include x.policy", "1:1: error: !include is not allowed in in-memory policy data" },
  { "org.x.Y @anyvm dom0 alow taget=x notify=yes notify=no",
    "1:9: error: unknown domain token '@anyvm' (did you mean '@any'?)\n"
    "1:16: error: 'dom0' is not a domain name (did you mean '@dom0'?)\n"
    "1:21: error: unknown action 'alow' (expected allow, deny or ask)\n"
    "1:26: error: unknown option 'taget' (expected notify, target or quota)\n"
    "1:45: error: duplicate option 'notify'" },
  { "# fine\n\norg.x.Y @any @dom0 allow\nbad\n  \t\norg.x.Y @any any deny",
    "4:1: error: expected 4 columns (SUBJECT SOURCE TARGET ACTION), found 1\n"
    "6:14: warning: 'any' is the domain named any (did you mean '@any'?)" },
  { "org.x.Y @any @dom0 allow\r\norg.x.Y @any @dom0 alow\r\n",
    "2:20: error: unknown action 'alow' (expected allow, deny or ask)" },
};

static void
test_errors (void)
{
  g_assert_cmpuint (G_N_ELEMENTS (error_cases), >=, 60);
  for (gsize i = 0; i < G_N_ELEMENTS (error_cases); i++)
    {
      g_autoptr (GPtrArray) diagnostics = new_diagnostics ();
      g_autoptr (DhfPolicy) policy = dhf_policy_parse_data (
          "t.policy", error_cases[i].text, strlen (error_cases[i].text), diagnostics);
      g_autofree gchar *all = format_all (diagnostics);
      g_auto (GStrv) parts = g_strsplit (all, "t.policy:", -1);
      g_autofree gchar *joined = g_strjoinv ("", parts);

      g_strchomp (joined);
      if (!g_str_equal (joined, error_cases[i].expected))
        g_error ("case %" G_GSIZE_FORMAT " \"%s\":\n got: %s\nwant: %s", i, error_cases[i].text,
                 joined, error_cases[i].expected);
      if (strstr (error_cases[i].expected, "error:") != NULL)
        g_assert_null (policy);
    }
}

static void
test_error_limits (void)
{
  g_autoptr (GString) text = g_string_new (NULL);
  g_autoptr (GPtrArray) diagnostics = new_diagnostics ();
  g_autoptr (DhfPolicy) policy = NULL;
  g_autofree gchar *line = NULL;
  const DhfPolicyDiagnostic *last;
  const DhfPolicyDiagnostic *first;

  /* 150 shadowed duplicates (warnings) then 250 errors: the errors win the
   * budget of 200, the rest is counted. */
  g_string_append (text, "org.x.Y @any @dom0 allow\n");
  for (guint i = 0; i < 150; i++)
    g_string_append (text, "org.x.Y @any @dom0 allow\n");
  for (guint i = 0; i < 250; i++)
    g_string_append (text, "org.x.Y @any @dom0 alow\n");
  policy = dhf_policy_parse_data ("big.policy", text->str, text->len, diagnostics);
  g_assert_null (policy);
  g_assert_cmpuint (diagnostics->len, ==, 201);
  first = g_ptr_array_index (diagnostics, 0);
  g_assert_cmpuint (first->line, ==, 152);
  last = g_ptr_array_index (diagnostics, 200);
  line = dhf_policy_diagnostic_format (last);
  g_assert_cmpstr (line, ==, "big.policy: error: ... 200 more");
  g_assert_cmpuint (last->more_errors, ==, 50);
  g_assert_cmpuint (last->more_warnings, ==, 150);
  {
    guint errors = 0, warnings = 0;

    dhf_policy_count_diagnostics (diagnostics, &errors, &warnings);
    g_assert_cmpuint (errors, ==, 250);
    g_assert_cmpuint (warnings, ==, 150);
  }

  /* Line length. */
  g_string_truncate (text, 0);
  g_string_append (text, "org.x.Y @any @dom0 allow #");
  while (text->len < 4097)
    g_string_append_c (text, 'x');
  g_ptr_array_set_size (diagnostics, 0);
  g_clear_pointer (&policy, dhf_policy_unref);
  policy = dhf_policy_parse_data ("long.policy", text->str, text->len, diagnostics);
  g_assert_null (policy);
  g_free (line);
  line = dhf_policy_diagnostic_format (g_ptr_array_index (diagnostics, 0));
  g_assert_cmpstr (line, ==, "long.policy:1:1: error: line too long (4097 bytes, at most 4096)");
  g_string_truncate (text, 4096);
  g_clear_pointer (&policy, dhf_policy_unref);
  policy = dhf_policy_parse_data ("long.policy", text->str, text->len, NULL);
  g_assert_nonnull (policy);

  /* NUL bytes. */
  g_ptr_array_set_size (diagnostics, 0);
  g_clear_pointer (&policy, dhf_policy_unref);
  policy = dhf_policy_parse_data ("nul.policy", "org.x.Y @any\0 @dom0 allow\n", 26, diagnostics);
  g_assert_null (policy);
  g_free (line);
  line = dhf_policy_diagnostic_format (g_ptr_array_index (diagnostics, 0));
  g_assert_cmpstr (line, ==, "nul.policy:1:13: error: NUL byte");
}

static void
test_too_many_rules (void)
{
  g_autoptr (GString) text = g_string_sized_new (200001 * 32);
  g_autoptr (GPtrArray) diagnostics = new_diagnostics ();
  g_autoptr (DhfPolicy) policy = NULL;
  g_autofree gchar *line = NULL;

  for (guint i = 0; i <= 200000; i++)
    g_string_append_printf (text, "org.x.S%u @any @dom0 allow\n", i);
  policy = dhf_policy_parse_data ("many.policy", text->str, text->len, diagnostics);
  g_assert_null (policy);
  g_assert_cmpuint (diagnostics->len, ==, 1);
  line = dhf_policy_diagnostic_format (g_ptr_array_index (diagnostics, 0));
  g_assert_cmpstr (line, ==, "many.policy:200001:1: error: too many rules (at most 200000)");
}

/* ---- shadowed rules -------------------------------------------------------- */

static const struct
{
  const gchar *earlier;
  const gchar *later;
  gboolean shadowed;
} shadow_cases[] = {
  /* subjects */
  { "* @any @dom0 allow", "org.x.Y @any @dom0 deny", TRUE },
  { "* @any @dom0 allow", "org.x.Y+a @any @dom0 deny", TRUE },
  { "org.x.Y @any @dom0 allow", "org.x.Y+a @any @dom0 deny", TRUE },
  { "org.x.Y @any @dom0 allow", "org.x.Y+ @any @dom0 deny", TRUE },
  { "org.x.Y+a @any @dom0 allow", "org.x.Y+a @any @dom0 allow", TRUE },
  { "org.x.Y @any @dom0 allow notify=yes", "org.x.Y @any @dom0 allow", TRUE },
  { "device:* @any @focused allow", "device:usb:* @any @focused deny", TRUE },
  { "device:* @any @focused allow", "device:input:mouse @any @focused deny", TRUE },
  { "device:usb:* @any @focused allow", "device:usb:046d:c52b @any @focused deny", TRUE },
  { "device:usb:* @any @focused allow", "device:usb:046d:c52b:SER @any @focused deny", TRUE },
  { "device:usb:046d:c52b @any @focused allow", "device:usb:046D:C52B:SER @any @focused deny",
    TRUE },
  { "device:pci:* @any @focused allow", "device:pci:0000:00:1f.3 @any @focused deny", TRUE },
  { "device:input:* @any @focused allow", "device:input:tablet @any @focused deny", TRUE },
  { "switch @any @any ask", "switch work personal allow", TRUE },
  { "acpi:* @dom0 @dom0 allow", "acpi:button/lid @dom0 @dom0 deny", TRUE },
  { "acpi:button @dom0 @dom0 allow", "acpi:button/lid @dom0 @dom0 deny", TRUE },
  { "acpi:button @dom0 @dom0 allow", "acpi:button/* @dom0 @dom0 deny", TRUE },
  { "hotkey:Ctrl+A @dom0 @next allow", "hotkey:ctrl+a @dom0 @next deny", TRUE },
  { "network:* @any @outside deny", "network:tcp/443 @any @outside allow", TRUE },
  { "network:tcp @any @outside deny", "network:tcp/443 @any @outside allow", TRUE },
  { "network:tcp @any @outside deny", "network:tcp/1-2 @any @outside allow", TRUE },
  { "network:tcp/1-1000 @any @outside deny", "network:tcp/443 @any @outside allow", TRUE },
  { "network:tcp/1-1000 @any @outside deny", "network:tcp/10-20 @any @outside allow", TRUE },
  { "network:tcp/1-1000 @any @outside deny", "network:tcp/1-1000 @any @outside allow", TRUE },
  { "network:udp @any @outside deny", "network:udp/53 work @outside allow", TRUE },
  /* tokens */
  { "org.x.Y @any @any allow", "org.x.Y work @role:service deny", TRUE },
  { "org.x.Y @any @any allow", "org.x.Y @tag:corp @vendor:\"a b\" deny", TRUE },
  { "org.x.Y @focused @dom0 allow", "org.x.Y @focused @dom0 deny", TRUE },
  { "org.x.Y @role:service @tag:t allow", "org.x.Y @role:service @tag:t deny", TRUE },
  /* not shadowed */
  { "org.x.Y @any @any allow", "org.x.Y @dom0 @any deny", FALSE },
  { "org.x.Y @any @any allow", "org.x.Y @any @dom0 deny", FALSE },
  { "org.x.Y @any @any allow", "org.x.Y @focused @any deny", FALSE },
  { "org.x.Y @any @any allow", "org.x.Y @any @focused deny", FALSE },
  { "org.x.Y+a @any @dom0 allow", "org.x.Y+b @any @dom0 deny", FALSE },
  { "org.x.Y+a @any @dom0 allow", "org.x.Y @any @dom0 deny", FALSE },
  { "org.x.Y+ @any @dom0 allow", "org.x.Y+a @any @dom0 deny", FALSE },
  { "org.x.Y @any @dom0 allow", "* @any @dom0 deny", FALSE },
  { "org.x.Y @any @dom0 allow", "org.x.Z @any @dom0 deny", FALSE },
  { "org.x.Y work @dom0 allow", "org.x.Y @any @dom0 deny", FALSE },
  { "org.x.Y work @dom0 allow", "org.x.Y personal @dom0 deny", FALSE },
  { "org.x.Y @role:service @dom0 allow", "org.x.Y sync @dom0 deny", FALSE },
  { "device:usb:046d:c52b:SER @any @focused allow", "device:usb:046d:c52b @any @focused deny",
    FALSE },
  { "device:usb:046d:c52b:SER @any @focused allow", "device:usb:046d:c52b:ser @any @focused deny",
    FALSE },
  { "device:usb:* @any @focused allow", "device:pci:* @any @focused deny", FALSE },
  { "device:usb:* @any @focused allow", "device:* @any @focused deny", FALSE },
  { "acpi:button/lid @dom0 @dom0 allow", "acpi:button @dom0 @dom0 deny", FALSE },
  { "acpi:button @dom0 @dom0 allow", "acpi:battery @dom0 @dom0 deny", FALSE },
  { "hotkey:Ctrl+A @dom0 @next allow", "hotkey:Ctrl+A @dom0 @previous deny", FALSE },
  { "network:tcp/443 @any @outside allow", "network:tcp @any @outside deny", FALSE },
  { "network:tcp/10-20 @any @outside allow", "network:tcp/15-25 @any @outside deny", FALSE },
  { "network:udp @any @outside allow", "network:tcp/53 @any @outside deny", FALSE },
  { "network:tcp/1-1000 @any @outside allow", "network:udp/53 @any @outside deny", FALSE },
  { "network:tcp/1-1000 work @outside allow", "network:tcp/53 @any @outside deny", FALSE },
  { "network:tcp/1-1000 @any sync allow", "network:tcp/53 @any @outside deny", FALSE },
  { "switch @any @any ask", "switch @dom0 @any allow", FALSE },
};

static void
test_shadow (void)
{
  for (gsize i = 0; i < G_N_ELEMENTS (shadow_cases); i++)
    {
      g_autofree gchar *text = g_strdup_printf ("%s\n# between\n  %s\n", shadow_cases[i].earlier,
                                                shadow_cases[i].later);
      g_autoptr (GPtrArray) diagnostics = new_diagnostics ();
      g_autoptr (DhfPolicy) policy
          = dhf_policy_parse_data ("s.policy", text, strlen (text), diagnostics);
      g_autofree gchar *all = format_all (diagnostics);

      g_assert_nonnull (policy);
      if (!shadow_cases[i].shadowed)
        {
          if (diagnostics->len != 0)
            g_error ("case %" G_GSIZE_FORMAT ": unexpected %s", i, all);
          continue;
        }
      if (diagnostics->len != 1)
        g_error ("case %" G_GSIZE_FORMAT ": expected one warning, got \"%s\"", i, all);
      {
        g_autoptr (GPtrArray) again = new_diagnostics ();
        g_autoptr (DhfPolicy) first = dhf_policy_parse_data (
            "s.policy", shadow_cases[i].earlier, strlen (shadow_cases[i].earlier), again);
        g_autofree gchar *rule = NULL;
        g_autofree gchar *expected = NULL;

        g_assert_nonnull (first);
        rule = dhf_policy_to_string (first);
        g_strchomp (rule);
        expected = g_strdup_printf ("s.policy:3:3: warning: this rule can never match: %s (%s) "
                                    "matches everything it would\n",
                                    "s.policy:1", rule + strlen ("s.policy:1: "));
        g_assert_cmpstr (all, ==, expected);
      }
    }
}

static void
test_shadow_across_files (void)
{
  g_autofree gchar *root = g_dir_make_tmp ("dhf-policy-XXXXXX", NULL);
  const gchar *dirs[] = { root, NULL };
  g_autoptr (GPtrArray) diagnostics = new_diagnostics ();
  g_autoptr (DhfPolicy) policy = NULL;
  g_autofree gchar *text = NULL;

  dhf_test_write_file (root, "10-base.policy",
                       "org.x.Y @any @any allow\nacpi:* @dom0 @dom0 allow\n");
  dhf_test_write_file (root, "50-corp.policy",
                       "# corp\norg.x.Y work sync deny\norg.x.Y @dom0 sync deny\n"
                       "acpi:button/lid @dom0 @dom0 deny\n");
  policy = dhf_policy_load_dirs (dirs, diagnostics);
  g_assert_nonnull (policy);
  text = format_relative (diagnostics, root);
  g_assert_cmpstr (text, ==,
                   "50-corp.policy:2:1: warning: this rule can never match: 10-base.policy:1 "
                   "(org.x.Y @any @any allow) matches everything it would\n"
                   "50-corp.policy:4:1: warning: this rule can never match: 10-base.policy:2 "
                   "(acpi:* @dom0 @dom0 allow) matches everything it would\n");
  dhf_test_remove_tree (root);
}

/* ---- includes ---------------------------------------------------------------- */

static void
test_include (void)
{
  g_autofree gchar *root = g_dir_make_tmp ("dhf-policy-XXXXXX", NULL);
  g_autofree gchar *top = g_build_filename (root, "top.policy", NULL);
  g_autofree gchar *abs = g_build_filename (root, "abs.inc", NULL);
  g_autofree gchar *abs_line = g_strdup_printf ("!include \"%s\"\n", abs);
  g_autofree gchar *top_text = NULL;
  const gchar *files[] = { top, NULL };
  g_autoptr (GPtrArray) diagnostics = new_diagnostics ();
  g_autoptr (DhfPolicy) policy = NULL;
  const gchar *const *loaded;
  guint line;

  dhf_test_write_file (root, "sub/inner.inc", "org.x.B @any @any ask\n!include ../leaf.inc\n");
  dhf_test_write_file (root, "leaf.inc", "org.x.C @any @any deny\n");
  dhf_test_write_file (root, "abs.inc", "org.x.D @any @any allow\n");
  top_text = g_strconcat ("org.x.A @any @any allow\n!include sub/inner.inc\n", abs_line,
                          "org.x.B @any @any allow\n", NULL);
  dhf_test_write_file (root, "top.policy", top_text);

  policy = dhf_policy_load_files (files, diagnostics);
  g_assert_cmpuint (diagnostics->len, ==, 1); /* the last rule is shadowed */
  g_assert_nonnull (policy);
  g_assert_cmpuint (dhf_policy_get_n_rules (policy), ==, 5);
  loaded = dhf_policy_get_files (policy);
  g_assert_cmpuint (g_strv_length ((gchar **) loaded), ==, 4);
  g_assert_true (g_str_has_suffix (loaded[1], "sub/inner.inc"));
  g_assert_true (g_str_has_suffix (loaded[2], "leaf.inc"));
  g_assert_cmpstr (loaded[3], ==, abs);
  g_assert_cmpint (
      decide (policy, DHF_POLICY_KIND_XDM, "org.x.B", NULL, &work, &syncd, NULL, &line), ==,
      DHF_POLICY_ACTION_ASK);
  g_assert_cmpint (
      decide (policy, DHF_POLICY_KIND_XDM, "org.x.C", NULL, &work, &syncd, NULL, &line), ==,
      DHF_POLICY_ACTION_DENY);
  g_assert_cmpuint (line, ==, 1);
  g_assert_cmpint (
      decide (policy, DHF_POLICY_KIND_XDM, "org.x.D", NULL, &work, &syncd, NULL, &line), ==,
      DHF_POLICY_ACTION_ALLOW);

  /* The source inlines includes and parses to the same rules. */
  {
    g_autofree gchar *source = dhf_policy_get_source (policy);
    g_autoptr (DhfPolicy) again
        = dhf_policy_parse_data ("last-good", source, strlen (source), NULL);

    g_assert_nonnull (again);
    g_assert_null (strstr (source, "\n!include"));
    g_assert_cmpuint (dhf_policy_get_n_rules (again), ==, 5);
    for (guint i = 0; i < 5; i++)
      {
        DhfPolicyQuery query = { DHF_POLICY_KIND_XDM, NULL, NULL, &work, &syncd, NULL };
        const gchar *services[] = { "org.x.A", "org.x.B", "org.x.C", "org.x.D", "org.x.E" };

        query.subject = services[i];
        g_assert_cmpint (dhf_policy_evaluate (again, &query, NULL), ==,
                         dhf_policy_evaluate (policy, &query, NULL));
      }
  }
  dhf_test_remove_tree (root);
}

static void
test_include_errors (void)
{
  g_autofree gchar *root = g_dir_make_tmp ("dhf-policy-XXXXXX", NULL);
  g_autofree gchar *a = g_build_filename (root, "a.policy", NULL);
  g_autofree gchar *self = g_build_filename (root, "self.policy", NULL);
  g_autofree gchar *missing = g_build_filename (root, "missing.policy", NULL);
  g_autofree gchar *deep = g_build_filename (root, "d0.inc", NULL);
  g_autoptr (GPtrArray) diagnostics = new_diagnostics ();
  g_autofree gchar *text = NULL;

  dhf_test_write_file (root, "a.policy", "org.x.A @any @any allow\n  !include b.policy\n");
  dhf_test_write_file (root, "b.policy",
                       "!include a.policy\norg.x.B @any @any allow\n!include gone.inc\n"
                       "!include\n");
  dhf_test_write_file (root, "self.policy", "!include   ./self.policy\n");
  /* d0 includes d1 ... d16 includes d17: 17 levels. */
  for (guint i = 0; i <= 17; i++)
    {
      g_autofree gchar *name = g_strdup_printf ("d%u.inc", i);
      g_autofree gchar *body = g_strdup_printf ("!include d%u.inc\n", i + 1);

      dhf_test_write_file (root, name, i < 17 ? body : "org.x.Z @any @any allow\n");
    }

  {
    const gchar *files[] = { a, NULL };
    g_autoptr (DhfPolicy) policy = dhf_policy_load_files (files, diagnostics);

    g_assert_null (policy);
    text = format_relative (diagnostics, root);
    g_assert_cmpstr (text, ==,
                     "b.policy:1:10: error: include loop: a.policy -> b.policy -> a.policy\n"
                     "b.policy:3:10: error: cannot include 'gone.inc': Failed to open file "
                     "“gone.inc”: No such file or directory\n"
                     "b.policy:4:1: error: !include takes one PATH, found 0\n");
  }
  {
    const gchar *files[] = { self, missing, NULL };
    g_autoptr (DhfPolicy) policy = NULL;

    g_ptr_array_set_size (diagnostics, 0);
    policy = dhf_policy_load_files (files, diagnostics);
    g_assert_null (policy);
    g_free (text);
    text = format_relative (diagnostics, root);
    g_assert_cmpstr (text, ==,
                     "self.policy:1:12: error: include loop: self.policy -> self.policy\n"
                     "missing.policy: error: cannot read: Failed to open file “missing.policy”: "
                     "No such file or directory\n");
  }
  {
    const gchar *files[] = { deep, NULL };
    g_autoptr (DhfPolicy) policy = NULL;

    g_ptr_array_set_size (diagnostics, 0);
    policy = dhf_policy_load_files (files, diagnostics);
    g_assert_null (policy);
    g_free (text);
    text = format_relative (diagnostics, root);
    g_assert_cmpstr (text, ==,
                     "d16.inc:1:10: error: includes nested too deeply (at most 16 levels)\n");
  }
  {
    /* 16 levels are fine. */
    g_autofree gchar *d1 = g_build_filename (root, "d1.inc", NULL);
    const gchar *files[] = { d1, NULL };
    g_autoptr (DhfPolicy) policy = dhf_policy_load_files (files, NULL);

    g_assert_nonnull (policy);
    g_assert_cmpuint (dhf_policy_get_n_rules (policy), ==, 1);
  }
  dhf_test_remove_tree (root);
}

/* ---- round trips --------------------------------------------------------------- */

static void
test_round_trip (void)
{
  const gchar *path = g_test_get_filename (G_TEST_DIST, "policy", "example.policy", NULL);
  g_autofree gchar *contents = NULL;
  g_autoptr (GError) error = NULL;
  gsize len;
  g_autoptr (GPtrArray) diagnostics = new_diagnostics ();
  g_autoptr (DhfPolicy) policy = NULL;
  g_autoptr (DhfPolicy) again = NULL;
  g_autoptr (DhfPolicy) normalised = NULL;
  g_autoptr (GString) rules = g_string_new (NULL);
  g_autofree gchar *source = NULL;
  g_autofree gchar *first = NULL;
  g_autofree gchar *second = NULL;
  const gchar *files[] = { path, NULL };

  g_file_get_contents (path, &contents, &len, &error);
  g_assert_no_error (error);
  policy = dhf_policy_load_files (files, diagnostics);
  g_assert_nonnull (policy);
  g_assert_cmpuint (diagnostics->len, ==, 0);
  g_assert_cmpuint (dhf_policy_get_n_rules (policy), >=, 20);

  /* get_source: the file's text after a "# file:" line. */
  source = dhf_policy_get_source (policy);
  g_assert_true (g_str_has_prefix (source, "# file: "));
  g_assert_true (strstr (source, contents) != NULL);
  again = dhf_policy_parse_data (path, source, strlen (source), NULL);
  g_assert_nonnull (again);

  /* to_string of the normalised text is a fixed point. */
  first = dhf_policy_to_string (policy);
  {
    g_auto (GStrv) lines = g_strsplit (first, "\n", -1);

    for (guint i = 0; lines[i] != NULL && lines[i][0] != '\0'; i++)
      {
        const gchar *rule = strchr (strchr (lines[i], ':') + 1, ':') + 2;

        g_string_append_printf (rules, "%s\n", rule);
      }
  }
  normalised = dhf_policy_parse_data ("n.policy", rules->str, rules->len, NULL);
  g_assert_nonnull (normalised);
  second = dhf_policy_to_string (normalised);
  {
    g_auto (GStrv) a = g_strsplit (first, "\n", -1);
    g_auto (GStrv) b = g_strsplit (second, "\n", -1);

    g_assert_cmpuint (g_strv_length (a), ==, g_strv_length (b));
    for (guint i = 0; a[i] != NULL && a[i][0] != '\0'; i++)
      g_assert_cmpstr (strstr (a[i], ": ") + 2, ==, strstr (b[i], ": ") + 2);
  }
}

static gboolean
has_diagnostic (GPtrArray *diagnostics, const gchar *needle)
{
  for (guint i = 0; i < diagnostics->len; i++)
    {
      g_autofree gchar *line = dhf_policy_diagnostic_format (g_ptr_array_index (diagnostics, i));

      if (strstr (line, needle) != NULL)
        return TRUE;
    }
  return FALSE;
}

/* Loops are found by file identity, not by path: with d -> ., d/x.policy
 * is x.policy. Including it three times used to mean 3^16 loads. */
static void
test_include_symlink_loop (void)
{
  g_autofree gchar *root = g_dir_make_tmp ("dhf-policy-XXXXXX", NULL);
  g_autofree gchar *link = g_build_filename (root, "d", NULL);
  g_autoptr (GPtrArray) diagnostics = new_diagnostics ();
  g_autoptr (DhfPolicy) policy = NULL;
  const gchar *dirs[] = { root, NULL };
  gint64 start;
  guint errors = 0;

  g_assert_no_errno (symlink (".", link));
  dhf_test_write_file (root, "x.policy",
                       "!include d/x.policy\n!include d/x.policy\n!include d/x.policy\n");
  start = g_get_monotonic_time ();
  policy = dhf_policy_load_dirs (dirs, diagnostics);
  g_assert_null (policy);
  g_assert_cmpint (g_get_monotonic_time () - start, <, 5 * G_USEC_PER_SEC);
  g_assert_true (has_diagnostic (diagnostics, "x.policy:1:10: error: include loop: x.policy -> "
                                              "x.policy"));
  dhf_policy_count_diagnostics (diagnostics, &errors, NULL);
  g_assert_cmpuint (errors, ==, 3);
  dhf_test_remove_tree (root);
}

/* One load reads at most 1024 files and 64 MiB, however includes fan out. */
static void
test_include_totals (void)
{
  g_autofree gchar *root = g_dir_make_tmp ("dhf-policy-XXXXXX", NULL);
  g_autofree gchar *a = g_build_filename (root, "a.policy", NULL);
  g_autofree gchar *big = g_build_filename (root, "big.inc", NULL);
  g_autoptr (GString) text = g_string_new (NULL);
  g_autoptr (GPtrArray) diagnostics = new_diagnostics ();
  const gchar *files[] = { a, NULL };
  guint errors = 0;

  dhf_test_write_file (root, "empty.inc", "");
  for (guint i = 0; i < 1100; i++)
    g_string_append (text, "!include empty.inc\n");
  dhf_test_write_file (root, "a.policy", text->str);
  {
    g_autoptr (DhfPolicy) policy = dhf_policy_load_files (files, diagnostics);

    g_assert_null (policy);
    g_assert_true (has_diagnostic (diagnostics, "a.policy:1024:10: error: too many policy files "
                                                "(at most 1024 per load, includes counted)"));
    dhf_policy_count_diagnostics (diagnostics, &errors, NULL);
    g_assert_cmpuint (errors, ==, 1);
  }

  /* 8 MiB (sparse: one long line of NULs) included 9 times: the 8th
   * would take the total, a.policy counted, past 64 MiB. */
  {
    g_autoptr (DhfPolicy) policy = NULL;
    int fd = open (big, O_WRONLY | O_CREAT | O_TRUNC, 0644);

    g_assert_cmpint (fd, >=, 0);
    g_assert_no_errno (ftruncate (fd, 8 * 1024 * 1024));
    close (fd);
    g_string_truncate (text, 0);
    for (guint i = 0; i < 9; i++)
      g_string_append (text, "!include big.inc\n");
    dhf_test_write_file (root, "a.policy", text->str);
    g_ptr_array_set_size (diagnostics, 0);
    policy = dhf_policy_load_files (files, diagnostics);
    g_assert_null (policy);
    g_assert_true (has_diagnostic (diagnostics, "a.policy:8:10: error: too much policy text"));
  }
  dhf_test_remove_tree (root);
}

/* Only regular files are read, and their size is checked before reading:
 * /dev/zero and a FIFO are refused at once. */
static void
test_include_special_files (void)
{
  g_autofree gchar *root = g_dir_make_tmp ("dhf-policy-XXXXXX", NULL);
  g_autofree gchar *fifo = g_build_filename (root, "fifo.policy", NULL);
  g_autoptr (GPtrArray) diagnostics = new_diagnostics ();
  const gchar *dirs[] = { root, NULL };
  gint64 start = g_get_monotonic_time ();

  dhf_test_write_file (root, "a.policy", "!include /dev/zero\n!include fifo.policy\n");
  g_assert_no_errno (mkfifo (fifo, 0600));
  {
    g_autoptr (DhfPolicy) policy = dhf_policy_load_dirs (dirs, diagnostics);

    g_assert_null (policy);
  }
  g_assert_cmpint (g_get_monotonic_time () - start, <, 5 * G_USEC_PER_SEC);
  g_assert_true (has_diagnostic (diagnostics, "a.policy:1:10: error: cannot include '/dev/zero': "
                                              "not a regular file"));
  g_assert_true (has_diagnostic (diagnostics, "a.policy:2:10: error: cannot include '"));
  g_assert_true (
      has_diagnostic (diagnostics, "fifo.policy: error: cannot read: not a regular file"));
  dhf_test_remove_tree (root);
}

/* 100000 bad lines: 200 diagnostics and "... 99800 more", whose counts
 * give the true totals; only the kept ones are stored. */
static void
test_huge_diagnostics (void)
{
  g_autoptr (GString) text = g_string_new (NULL);
  g_autoptr (GPtrArray) diagnostics = new_diagnostics ();
  g_autoptr (DhfPolicy) policy = NULL;
  const DhfPolicyDiagnostic *last;
  guint errors = 0, warnings = 0;

  for (guint i = 0; i < 100000; i++)
    g_string_append (text, "x\n");
  policy = dhf_policy_parse_data ("huge.policy", text->str, text->len, diagnostics);
  g_assert_null (policy);
  g_assert_cmpuint (diagnostics->len, ==, 201);
  g_assert_cmpuint (((DhfPolicyDiagnostic *) g_ptr_array_index (diagnostics, 0))->line, ==, 1);
  g_assert_cmpuint (((DhfPolicyDiagnostic *) g_ptr_array_index (diagnostics, 199))->line, ==, 200);
  last = g_ptr_array_index (diagnostics, 200);
  g_assert_cmpstr (last->message, ==, "... 99800 more");
  g_assert_cmpuint (last->more_errors, ==, 99800);
  g_assert_cmpuint (last->more_warnings, ==, 0);
  dhf_policy_count_diagnostics (diagnostics, &errors, &warnings);
  g_assert_cmpuint (errors, ==, 100000);
  g_assert_cmpuint (warnings, ==, 0);
}

/* Port ranges: covered ranges and ports get a warning, nothing else does;
 * and many disjoint ranges are checked in near-linear time (130000 of them
 * used to take 20 s). */
static void
test_shadow_port_ranges (void)
{
  static const gchar rules[] = "network:tcp/1-100 @any @outside allow\n"   /* 1 */
                               "network:tcp/50-60 @any @outside deny\n"    /* 2: by 1 */
                               "network:tcp/90-110 @any @outside deny\n"   /* 3 */
                               "network:tcp/95 @any @outside deny\n"       /* 4: by 1, 3 */
                               "network:udp/50-60 @any @outside deny\n"    /* 5 */
                               "network:tcp/50-60 work @outside deny\n"    /* 6: by 1 */
                               "network:tcp/50-60 @dom0 @outside deny\n"   /* 7 */
                               "network:tcp/200-300 work @outside allow\n" /* 8 */
                               "network:tcp/150-400 @any @outside allow\n" /* 9 */
                               "network:tcp/250-260 work @outside deny\n"  /* 10: by 8 */
                               "network:tcp/101-149 work @outside deny\n"  /* 11 */
                               "network:tcp/100-101 @any @outside deny\n"  /* 12: by 3 */
                               "network:tcp/110 @any @outside deny\n";     /* 13: by 3 */
  /* Which earlier coverer is named is not promised when there are several:
   * the one reaching the highest port. */
  static const guint shadowed[][2]
      = { { 2, 1 }, { 4, 3 }, { 6, 1 }, { 10, 8 }, { 12, 3 }, { 13, 3 } };
  g_autoptr (GPtrArray) diagnostics = new_diagnostics ();
  g_autoptr (DhfPolicy) policy = dhf_policy_parse_data ("r.policy", rules, (gsize) -1, diagnostics);
  g_autoptr (GString) many = g_string_new (NULL);
  guint errors = 0, warnings = 0;
  gint64 start;

  g_assert_nonnull (policy);
  g_assert_cmpuint (diagnostics->len, ==, G_N_ELEMENTS (shadowed));
  for (gsize i = 0; i < G_N_ELEMENTS (shadowed); i++)
    {
      const DhfPolicyDiagnostic *d = g_ptr_array_index (diagnostics, i);
      g_autofree gchar *by = g_strdup_printf ("r.policy:%u (", shadowed[i][1]);

      g_assert_cmpuint (d->severity, ==, DHF_POLICY_SEVERITY_WARNING);
      g_assert_cmpuint (d->line, ==, shadowed[i][0]);
      g_assert_nonnull (strstr (d->message, by));
    }

  for (guint proto = 0; proto < 2; proto++)
    for (guint port = 1; port < 65535; port++)
      g_string_append_printf (many, "network:%s/%u-%u @any @outside allow\n",
                              proto == 0 ? "tcp" : "udp", port, port + 1);
  g_ptr_array_set_size (diagnostics, 0);
  g_clear_pointer (&policy, dhf_policy_unref);
  start = g_get_monotonic_time ();
  policy = dhf_policy_parse_data ("many.policy", many->str, many->len, diagnostics);
  g_assert_nonnull (policy);
  g_assert_cmpint (g_get_monotonic_time () - start, <, 10 * G_USEC_PER_SEC);
  dhf_policy_count_diagnostics (diagnostics, &errors, &warnings);
  g_assert_cmpuint (errors, ==, 0);
  g_assert_cmpuint (warnings, ==, 0);
}

int
main (int argc, char **argv)
{
  g_test_init (&argc, &argv, NULL);

  g_test_add_func ("/policy/grammar/normalise", test_normalise);
  g_test_add_func ("/policy/grammar/parse-subject", test_parse_subject);
  g_test_add_func ("/policy/grammar/parse-subject-evaluates", test_parse_subject_evaluates);
  g_test_add_func ("/policy/evaluate/query-subject-validation", test_query_subject_validation);
  g_test_add_func ("/policy/evaluate/xdm", test_evaluate_xdm);
  g_test_add_func ("/policy/evaluate/redirect", test_redirect);
  g_test_add_func ("/policy/evaluate/device", test_evaluate_device);
  g_test_add_func ("/policy/evaluate/switch-acpi", test_evaluate_switch_acpi);
  g_test_add_func ("/policy/evaluate/hotkey-network", test_evaluate_hotkey_network);
  g_test_add_func ("/policy/evaluate/tokens", test_tokens);
  g_test_add_func ("/policy/files/dirs-precedence", test_dirs_precedence);
  g_test_add_func ("/policy/files/load-files-order", test_load_files_order);
  g_test_add_func ("/policy/diagnostics/errors", test_errors);
  g_test_add_func ("/policy/diagnostics/limits", test_error_limits);
  g_test_add_func ("/policy/diagnostics/too-many-rules", test_too_many_rules);
  g_test_add_func ("/policy/shadow/pairs", test_shadow);
  g_test_add_func ("/policy/shadow/across-files", test_shadow_across_files);
  g_test_add_func ("/policy/shadow/port-ranges", test_shadow_port_ranges);
  g_test_add_func ("/policy/include/ok", test_include);
  g_test_add_func ("/policy/include/errors", test_include_errors);
  g_test_add_func ("/policy/include/symlink-loop", test_include_symlink_loop);
  g_test_add_func ("/policy/include/totals", test_include_totals);
  g_test_add_func ("/policy/include/special-files", test_include_special_files);
  g_test_add_func ("/policy/diagnostics/huge", test_huge_diagnostics);
  g_test_add_func ("/policy/round-trip", test_round_trip);
  return g_test_run ();
}
