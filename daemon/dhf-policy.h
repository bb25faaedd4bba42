/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

#include <glib.h>

G_BEGIN_DECLS

/* The admin policy language (docs/policy.md, dhf.policy(5)): one grammar,
 * one parser and one evaluator for every subsystem that asks "may this
 * domain do that?". A DhfPolicy is immutable once built and refcounted, so
 * evaluations on any thread keep using the policy they started with while
 * a reload builds its successor.
 *
 * Every line is   SUBJECT SOURCE TARGET ACTION [KEY=VALUE ...]
 * where the SUBJECT's form says which kind of rule it is:
 *
 *   org.example.Sync1[+ARG]   cross-domain service call (XDM); "*" = any
 *   device:SELECTOR           device assignment
 *   switch                    display switch requests
 *   acpi:EVENT                ACPI event routing
 *   hotkey:COMBO              hotkeys
 *   network:PROTO[/PORT]      network access
 */

typedef enum
{
  DHF_POLICY_KIND_XDM,
  DHF_POLICY_KIND_DEVICE,
  DHF_POLICY_KIND_SWITCH,
  DHF_POLICY_KIND_ACPI,
  DHF_POLICY_KIND_HOTKEY,
  DHF_POLICY_KIND_NETWORK,
  DHF_POLICY_N_KINDS
} DhfPolicyKind;

typedef enum
{
  DHF_POLICY_ACTION_DENY,
  DHF_POLICY_ACTION_ALLOW,
  DHF_POLICY_ACTION_ASK,
} DhfPolicyAction;

/* What is known about one domain when a decision is made. dom0 (the host)
 * has is_dom0 set and the name "dom0". */
typedef struct
{
  const gchar *name;
  gboolean is_dom0;
  gboolean focused;
  const gchar *role;        /* "environment", "service", or NULL */
  const gchar *vendor;      /* NULL when unknown */
  const gchar *const *tags; /* NULL-terminated; NULL for none */
} DhfPolicyDomain;

/* One question. subject is the service name (XDM), the device selector
 * ("usb:046d:c52b:SERIAL", "pci:0000:00:1f.3", "input:keyboard"), the ACPI
 * event ("button/lid"), the hotkey combo ("Ctrl+Alt+1"), the network
 * destination ("tcp/443"); NULL for switch. target may be NULL where the
 * kind has a symbolic target (hotkeys: target_token "@next"; network:
 * "@outside"). */
typedef struct
{
  DhfPolicyKind kind;
  const gchar *subject;
  const gchar *argument; /* XDM argument, NULL for none */
  const DhfPolicyDomain *source;
  const DhfPolicyDomain *target;
  const gchar *target_token; /* "@next", "@previous", "@outside" when target is NULL */
} DhfPolicyQuery;

typedef struct _DhfPolicy DhfPolicy;
typedef struct _DhfPolicyRule DhfPolicyRule;

/* The outcome: the action of the first matching rule, or deny with
 * rule == NULL when none matched. Pointers borrow from the policy and stay
 * valid while the caller holds a reference to it. */
typedef struct
{
  DhfPolicyAction action;
  const DhfPolicyRule *rule;
} DhfPolicyDecision;

typedef enum
{
  DHF_POLICY_SEVERITY_WARNING,
  DHF_POLICY_SEVERITY_ERROR,
} DhfPolicySeverity;

typedef struct
{
  DhfPolicySeverity severity;
  gchar *file;  /* as given (a path, or a name for in-memory data) */
  guint line;   /* 1-based; 0 when the problem is about the whole file */
  guint column; /* 1-based; 0 when not applicable */
  gchar *message;
  /* Set on the last diagnostic only when some were left out (the cap is
   * 200): that entry's message is "... N more" and these are how many
   * errors and warnings it stands for (N = their sum). 0 on every other
   * diagnostic. */
  guint more_errors;
  guint more_warnings;
} DhfPolicyDiagnostic;

void dhf_policy_diagnostic_free (DhfPolicyDiagnostic *diagnostic);
/* "file:line:col: error: message" (line/col left out when 0). */
gchar *dhf_policy_diagnostic_format (const DhfPolicyDiagnostic *diagnostic);
/* The true numbers of errors and warnings in diagnostics (as filled by the
 * load and parse functions), counting those a "... N more" entry stands
 * for and not that entry itself. Either pointer may be NULL. */
void dhf_policy_count_diagnostics (GPtrArray *diagnostics, guint *errors, guint *warnings);

/* Loads the rule files of dirs, the first directory taking precedence: a
 * file in dirs[0] replaces the same-named file in dirs[1] (admin over vendor).
 * Files are read in C-locale order of their names; only names matching
 * [A-Za-z0-9_][A-Za-z0-9_.-]*\.policy are rule files (other *.policy names
 * are errors; other files are ignored). A missing directory is not an
 * error. Every diagnostic (errors and warnings, including shadowed rules)
 * is appended to diagnostics (DhfPolicyDiagnostic, with a free func).
 * Returns NULL if there was any error: a policy is valid as a whole or not
 * at all. */
DhfPolicy *dhf_policy_load_dirs (const gchar *const *dirs, GPtrArray *diagnostics);
/* The same for an explicit list of files, in the given order. */
DhfPolicy *dhf_policy_load_files (const gchar *const *files, GPtrArray *diagnostics);
/* Parses in-memory text as one file called name (for tests and fuzzing;
 * !include is refused here). length (gsize) -1 means NUL-terminated. */
DhfPolicy *dhf_policy_parse_data (const gchar *name, const gchar *data, gsize length,
                                  GPtrArray *diagnostics);
/* The policy that denies everything (no rules). */
DhfPolicy *dhf_policy_new_empty (void);

DhfPolicy *dhf_policy_ref (DhfPolicy *self);
void dhf_policy_unref (DhfPolicy *self);
G_DEFINE_AUTOPTR_CLEANUP_FUNC (DhfPolicy, dhf_policy_unref)

/* Thread-safe: the policy is immutable. Returns the decision's action.
 * The query's subject must be one concrete subject of its kind as the
 * grammar writes it (what dhf_policy_parse_subject() returns: no wildcard,
 * class or range; tcp/udp with one port, icmp without; an ACPI event as
 * CLASS or CLASS/NAME in lowercase; hex and hotkeys in any case), and an
 * XDM argument [A-Za-z0-9._-]{0,64}; anything else is denied with
 * decision->rule == NULL, without looking at the rules. */
DhfPolicyAction dhf_policy_evaluate (DhfPolicy *self, const DhfPolicyQuery *query,
                                     DhfPolicyDecision *decision);

guint dhf_policy_get_n_rules (DhfPolicy *self);
/* The files the policy was built from, in evaluation order (includes
 * listed where they were included), NULL-terminated. */
const gchar *const *dhf_policy_get_files (DhfPolicy *self);
/* Every rule in evaluation order, one per line as
 * "file:line: SUBJECT SOURCE TARGET ACTION [options]" (normalised). */
gchar *dhf_policy_to_string (DhfPolicy *self);
/* The source text the policy was built from, concatenated with a comment
 * naming each file: what dhfd stores as its last good policy. */
gchar *dhf_policy_get_source (DhfPolicy *self);

/* The rule at index (evaluation order, 0 .. dhf_policy_get_n_rules() - 1),
 * borrowed from the policy. Subsystems that act without being asked (the
 * hotkeys) read their rules this way. */
const DhfPolicyRule *dhf_policy_get_rule (DhfPolicy *self, guint index);

DhfPolicyKind dhf_policy_rule_get_kind (const DhfPolicyRule *rule);
DhfPolicyAction dhf_policy_rule_get_action (const DhfPolicyRule *rule);
/* The normalised SUBJECT without its kind prefix: "Ctrl+Alt+Tab" for
 * hotkey:Ctrl+Alt+Tab, "usb:046d:c52b" for device:usb:046d:c52b. */
const gchar *dhf_policy_rule_get_subject (const DhfPolicyRule *rule);
/* The TARGET column as written: "personal", "@dom0", "@next", "@role:environment". */
gchar *dhf_policy_rule_dup_target (const DhfPolicyRule *rule);
/* TRUE when the TARGET column is a domain NAME (not @dom0 nor a pattern). */
gboolean dhf_policy_rule_target_is_name (const DhfPolicyRule *rule);
const gchar *dhf_policy_rule_get_file (const DhfPolicyRule *rule);
guint dhf_policy_rule_get_line (const DhfPolicyRule *rule);
/* The option's value (e.g. "target", "notify", "quota", "mode", "host"),
 * or NULL when the rule does not set it. */
const gchar *dhf_policy_rule_get_option (const DhfPolicyRule *rule, const gchar *key);
/* The rule as written (normalised): "SUBJECT SOURCE TARGET ACTION [opts]". */
gchar *dhf_policy_rule_to_string (const DhfPolicyRule *rule);

const gchar *dhf_policy_action_to_string (DhfPolicyAction action);
const gchar *dhf_policy_kind_to_string (DhfPolicyKind kind);
/* A domain NAME as rules write it (and manifests name appliances):
 * [a-z][a-z0-9-]{0,47}, no "--", no trailing '-'. */
gboolean dhf_policy_name_is_valid (const gchar *name);

/* Splits "device:usb:046d:c52b" into kind and subject ("usb:046d:c52b"),
 * "org.example.Sync1+arg" into XDM, "org.example.Sync1" and "arg". */
gboolean dhf_policy_parse_subject (const gchar *text, DhfPolicyKind *kind, gchar **subject,
                                   gchar **argument, GError **error);

G_END_DECLS
