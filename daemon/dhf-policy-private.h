/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/* What the policy library's files share: the rule and policy layout, the
 * subject and token parsers, the index, the shadow check and the
 * diagnostics sink. Nothing here is API. */

#include "dhf-policy.h"

#define DHF_POLICY_MAX_LINE          4096
#define DHF_POLICY_MAX_FILE          (8 * 1024 * 1024)
#define DHF_POLICY_MAX_DATA          (64 * 1024 * 1024)
#define DHF_POLICY_MAX_RULES         200000
#define DHF_POLICY_MAX_INCLUDE_DEPTH 16
/* What one load may read in all, includes counted. */
#define DHF_POLICY_MAX_FILES       1024
#define DHF_POLICY_MAX_TOTAL       (64 * 1024 * 1024)
#define DHF_POLICY_MAX_DIAGNOSTICS 200
/* Longest query subject the evaluator normalises; every exact key the
 * grammar allows is shorter. */
#define DHF_POLICY_MAX_QUERY 512

typedef enum
{
  DHF_POLICY_TOKEN_NAME,
  DHF_POLICY_TOKEN_ANY,
  DHF_POLICY_TOKEN_DOM0,
  DHF_POLICY_TOKEN_FOCUSED,
  DHF_POLICY_TOKEN_ROLE,
  DHF_POLICY_TOKEN_TAG,
  DHF_POLICY_TOKEN_VENDOR,
  DHF_POLICY_TOKEN_NEXT,
  DHF_POLICY_TOKEN_PREVIOUS,
  DHF_POLICY_TOKEN_OUTSIDE,
} DhfPolicyTokenType;

/* A SOURCE or TARGET column; value is the name, role, tag or vendor. */
typedef struct
{
  DhfPolicyTokenType type;
  const gchar *value;
} DhfPolicyToken;

typedef enum
{
  DHF_POLICY_OPTION_NOTIFY,
  DHF_POLICY_OPTION_TARGET,
  DHF_POLICY_OPTION_QUOTA,
  DHF_POLICY_OPTION_MODE,
  DHF_POLICY_OPTION_HOST,
  DHF_POLICY_N_OPTIONS
} DhfPolicyOption;

/* How a subject selects: everything of its kind ("*", device:*, acpi:*,
 * network:*, switch), a class (device:usb:*, all button events, network:tcp),
 * one exact key (an XDM service, a device, an ACPI event, a hotkey, one
 * port) or a port range. */
typedef enum
{
  DHF_POLICY_SELECT_ALL,
  DHF_POLICY_SELECT_CLASS,
  DHF_POLICY_SELECT_EXACT,
  DHF_POLICY_SELECT_RANGE,
} DhfPolicySelect;

typedef struct
{
  DhfPolicyKind kind;
  DhfPolicySelect select;
  gchar *text;     /* normalised, with the kind prefix: "device:usb:046d:c52b" */
  gchar *key;      /* EXACT: the index key ("usb:046d:c52b"); CLASS: the class ("usb") */
  gchar *argument; /* XDM: the +ARGUMENT, NULL for any */
  guint port_lo, port_hi;
} DhfPolicySubject;

void dhf_policy_subject_clear (DhfPolicySubject *subject);
G_DEFINE_AUTO_CLEANUP_CLEAR_FUNC (DhfPolicySubject, dhf_policy_subject_clear)
/* Parses a SUBJECT column; on failure returns FALSE with a message. */
gboolean dhf_policy_subject_parse (const gchar *text, DhfPolicySubject *subject, gchar **message);
/* Normalises a hotkey combo ("alt+ctrl+f1" -> "Ctrl+Alt+F1") into buf
 * without allocating; FALSE (and a message if asked) when invalid. */
gboolean dhf_policy_hotkey_normalise (const gchar *combo, gchar *buf, gsize size, gchar **message);

/* Checks that a query names one concrete subject of kind (no wildcard,
 * class or range; tcp and udp with a port, icmp without) and writes the
 * exact key it would have in a rule into buf ("usb:046d:c52b:SER",
 * "tcp/22", "icmp", "Ctrl+Alt+F1"), and the port (0 for none). argument is
 * the XDM +ARGUMENT (NULL for none; an error for other kinds); switch takes
 * no subject. Does not allocate. */
gboolean dhf_policy_query_normalise (DhfPolicyKind kind, const gchar *subject,
                                     const gchar *argument, gchar *buf, gsize size, guint *port);

struct _DhfPolicyRule
{
  guint index;
  DhfPolicyKind kind;
  DhfPolicyAction action;
  DhfPolicySelect select;
  const gchar *file;
  guint line;
  guint column;
  const gchar *subject; /* normalised SUBJECT column */
  const gchar *key;
  const gchar *argument;
  guint port_lo, port_hi;
  DhfPolicyToken source;
  DhfPolicyToken target;
  const gchar *options[DHF_POLICY_N_OPTIONS];
};

/* Pattern rules are also split by SOURCE token, so that a query only
 * walks the patterns its source can match. */
typedef enum
{
  DHF_POLICY_BY_ANY,
  DHF_POLICY_BY_DOM0,
  DHF_POLICY_BY_FOCUSED,
  DHF_POLICY_N_BY_FIXED
} DhfPolicyByFixed;

typedef enum
{
  DHF_POLICY_BY_NAME,
  DHF_POLICY_BY_ROLE,
  DHF_POLICY_BY_TAG,
  DHF_POLICY_BY_VENDOR,
  DHF_POLICY_N_BY_VALUE
} DhfPolicyByValue;

typedef struct
{
  GHashTable *exact;                           /* key -> GArray of ascending rule indices */
  GArray *patterns;                            /* ascending indices of ALL, CLASS and RANGE rules */
  GArray *by_fixed[DHF_POLICY_N_BY_FIXED];     /* the patterns by @any, @dom0, @focused source */
  GHashTable *by_value[DHF_POLICY_N_BY_VALUE]; /* value -> the patterns with that source */
} DhfPolicyIndex;

struct _DhfPolicy
{
  gatomicrefcount ref;
  GStringChunk *strings;
  DhfPolicyRule *rules;
  guint n_rules;
  gchar **files;
  gchar *source;
  DhfPolicyIndex index[DHF_POLICY_N_KINDS];
};

/* dhf-policy-lexer.c: one line into tokens (unquoted, NUL-terminated, in
 * scratch); FALSE with a column and message on a quoting error. */
typedef struct
{
  const gchar *text;
  guint column; /* 1-based byte column of the token's first byte */
  gboolean quoted;
} DhfPolicyLexToken;

gboolean dhf_policy_lex_line (const gchar *line, gsize len, GString *scratch, GArray *tokens,
                              guint *error_column, const gchar **error_message);

/* dhf-policy-parse.c: the closest candidate within a small edit distance,
 * or NULL. */
const gchar *dhf_policy_suggest (const gchar *word, gsize len, const gchar *const *candidates,
                                 gsize n_candidates);

/* dhf-policy-eval.c */
void dhf_policy_index_build (DhfPolicy *policy);
void dhf_policy_index_clear (DhfPolicy *policy);
gboolean dhf_policy_token_matches (const DhfPolicyToken *token, const DhfPolicyDomain *domain,
                                   const gchar *symbolic);

/* dhf-policy-shadow.c: appends a warning for every rule an earlier one
 * covers. */
typedef struct _DhfPolicyDiagSink DhfPolicyDiagSink;
void dhf_policy_check_shadowed (const DhfPolicyRule *rules, guint n_rules, DhfPolicyDiagSink *sink);

/* dhf-policy.c */
DhfPolicy *dhf_policy_new_internal (void);
const gchar *dhf_policy_token_type_to_string (DhfPolicyTokenType type);
void dhf_policy_token_append (GString *out, const DhfPolicyToken *token);
const gchar *dhf_policy_option_to_string (DhfPolicyOption option);

/* dhf-policy-diag.c: hands the caller at most DHF_POLICY_MAX_DIAGNOSTICS
 * diagnostics in file and line order, errors first when some must be left
 * out, and one "... N more" for the rest. Only that many errors and that
 * many warnings are ever kept; the others are only counted. */
typedef struct
{
  guint file_seq;
  guint line;
  guint column;
  guint seq;
} DhfPolicyDiagKey;

struct _DhfPolicyDiagSink
{
  GPtrArray *kept[2]; /* SinkEntry: [0] errors, [1] warnings; sorted, capped */
  guint n_errors;     /* every error added, kept or not */
  guint n_warnings;
  guint seq;
  GHashTable *file_order; /* file -> sequence + 1 */
  gboolean have_dropped;
  DhfPolicyDiagKey dropped_key; /* the first diagnostic left out, in sort order */
  gchar *dropped_file;
};

void dhf_policy_diag_sink_init (DhfPolicyDiagSink *sink);
/* Files are listed in the order they are noted here (evaluation order). */
void dhf_policy_diag_note_file (DhfPolicyDiagSink *sink, const gchar *file);
void dhf_policy_diag_add (DhfPolicyDiagSink *sink, DhfPolicySeverity severity, const gchar *file,
                          guint line, guint column, const gchar *format, ...) G_GNUC_PRINTF (6, 7);
/* Moves the diagnostics into out (which may be NULL) and frees the rest. */
void dhf_policy_diag_sink_finish (DhfPolicyDiagSink *sink, GPtrArray *out);
