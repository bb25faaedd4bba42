/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "dhf-policy-private.h"

/* The policy file grammar. This comment is the reference the manual pages
 * are written from; keep them in step.
 *
 * FILES
 *   A policy is a sequence of files. dhf_policy_load_dirs() takes the
 *   rule files of each directory, names matching
 *   [A-Za-z0-9_][A-Za-z0-9_.-]*\.policy; a file in an earlier directory
 *   (admin) replaces the same-named file of a later one (vendor), and the
 *   files are read in C-locale (strcmp) order of their names. A *.policy
 *   name outside that charset is an error; hidden names (".x") and other
 *   names are ignored; a missing directory is empty. A file read from disk
 *   is at most 8 MiB; in-memory data (dhf_policy_parse_data) at most
 *   64 MiB. Files and lines are UTF-8 with no NUL bytes.
 *
 * LINES
 *   line      := blank | comment | directive | rule      (at most 4096 bytes;
 *                                                          a final \r is dropped)
 *   Tokens are separated by spaces and tabs. Inside a token, "..." quotes
 *   (spaces, tabs and '#' included) with \" and \\ as the only escapes;
 *   quotes may start mid-token: @vendor:"dhf examples". An unquoted '#' at
 *   the start of a token starts a comment that runs to the end of line.
 *
 *   directive := "!include" PATH
 *     PATH is relative to the including file's directory, or absolute. The
 *     included file's rules take the place of the directive. Errors: a
 *     missing or unreadable file or one that is not a regular file, an
 *     include loop (the same file, by device and inode, already being read;
 *     the chain is named), nesting deeper than 16, and any !include in
 *     in-memory data. One load reads at most 1024 files and 64 MiB in all,
 *     includes counted.
 *
 *   rule      := SUBJECT SOURCE TARGET ACTION option*
 *     At most 200000 rules in all. Fewer than 4 columns is an error.
 *
 * SUBJECT (its form gives the rule's kind)
 *   xdm      "*" | SERVICE | SERVICE "+" ARG
 *            SERVICE: 2+ '.'-separated elements [A-Za-z_][A-Za-z0-9_-]*,
 *            at most 255 bytes. ARG: [A-Za-z0-9._-]{0,64}; SERVICE+ (empty
 *            ARG) matches calls without argument only; no '+' matches any
 *            argument. "*+ARG" is an error.
 *   device   "device:" ( "*" | "usb:*" | "usb:" VVVV ":" PPPP [":" SERIAL]
 *            | "pci:*" | "pci:" DDDD ":" BB ":" SS "." F
 *            | "input:" ( "keyboard" | "mouse" | "tablet" | "*" ) )
 *            VVVV, PPPP, DDDD: 4 hex digits; BB, SS: 2 hex digits, SS at most
 *            1f; F: 0-7; hex is case-insensitive and printed lowercase.
 *            SERIAL: [A-Za-z0-9._-]{1,128}. usb:V:P matches every serial.
 *   switch   "switch"
 *   acpi     "acpi:" ( "*" | CLASS | CLASS "/" "*" | CLASS "/" NAME )
 *            CLASS, NAME: [a-z0-9_]{1,64}; CLASS alone means CLASS "/" "*"
 *            (every event of the class) and is printed that way.
 *   hotkey   "hotkey:" MOD ("+" MOD)* "+" KEY
 *            MOD: Ctrl, Alt, Shift, Super (each once, any order, printed in
 *            that order); KEY: A-Z, 0-9, F1-F24, Tab, Space, Escape, Left,
 *            Right, Up, Down, Home, End, PageUp, PageDown, Return,
 *            BackSpace, Delete, Insert, Print. Case-insensitive.
 *   network  "network:" ( "*" | PROTO | PROTO "/" PORT | PROTO "/" PORT "-" PORT )
 *            PROTO: tcp, udp, icmp; ports (1-65535, N <= M) for tcp and udp
 *            only; N-N is printed N.
 *
 * SOURCE, TARGET
 *   NAME             the domain so named: [a-z][a-z0-9-]{0,47}, no "--", no
 *                    trailing '-'; "dom0" is an error (write @dom0). The
 *                    names any, focused, next, previous and outside get a
 *                    warning (the @ form was probably meant).
 *   @any             every domain but dom0
 *   @dom0            dom0
 *   @focused         the focused domain, dom0 included
 *   @role:ROLE       ROLE: environment | service (never dom0)
 *   @tag:TAG         TAG: [a-z0-9][a-z0-9_-]{0,31} (never dom0)
 *   @vendor:VENDOR   1-64 UTF-8 characters, no control characters (never
 *                    dom0)
 *   @next, @previous hotkey TARGET only
 *   @outside         network TARGET only (the uplink)
 *   acpi and hotkey rules must have SOURCE @dom0. For acpi, TARGET is where
 *   an allowed event is forwarded; @dom0 forwards nowhere.
 *
 * ACTION
 *   allow | deny | ask   (ask: xdm, device and switch only)
 *
 * OPTIONS   KEY=VALUE, each key at most once per rule
 *   notify=yes|no                      every kind
 *   target=NAME|@dom0                  xdm, allow and ask only
 *   quota=N                            xdm, 1-10000 (printed without zeros)
 *   mode=pinned|follow-focus           device, allow and ask only
 *   host=none|suspend|hibernate|shutdown|lock   acpi
 *
 * EVALUATION
 *   Rules are taken in file order, top to bottom, includes inline; the
 *   first rule of the query's kind whose subject, SOURCE and TARGET match
 *   decides; no match denies. A rule that an earlier rule of the same kind
 *   covers entirely gets a warning ("can never match").
 *
 * DIAGNOSTICS
 *   "FILE:LINE:COLUMN: error|warning: MESSAGE", COLUMN the 1-based byte of
 *   the offending token; every error of every file is reported, sorted by
 *   file and line, capped at 200 plus one "... N more".
 */

typedef struct
{
  DhfPolicyDiagSink sink;
  GStringChunk *strings;
  GArray *rules;
  GPtrArray *files;
  GString *source;
  GPtrArray *stack;  /* paths of the files being read, outermost first */
  GArray *stack_ids; /* their FileId, in step with stack */
  guint n_files_read;
  guint64 n_bytes_read;
  gboolean files_cap_reported;
  gboolean bytes_cap_reported;
  GString *scratch;
  GArray *tokens;
  gboolean allow_include;
  gboolean too_many_reported;
} Builder;

/* A file on the include stack, by identity: paths cannot tell that "d/x"
 * is "x" when d is a symlink to ".". */
typedef struct
{
  dev_t dev;
  ino_t ino;
} FileId;

/* Which options each kind takes, and how to say so. */
static const struct
{
  guint mask;
  const gchar *list;
} kind_options[DHF_POLICY_N_KINDS] = {
  [DHF_POLICY_KIND_XDM] = { 1u << DHF_POLICY_OPTION_NOTIFY | 1u << DHF_POLICY_OPTION_TARGET
                                | 1u << DHF_POLICY_OPTION_QUOTA,
                            "notify, target or quota" },
  [DHF_POLICY_KIND_DEVICE]
  = { 1u << DHF_POLICY_OPTION_NOTIFY | 1u << DHF_POLICY_OPTION_MODE, "notify or mode" },
  [DHF_POLICY_KIND_SWITCH] = { 1u << DHF_POLICY_OPTION_NOTIFY, "notify" },
  [DHF_POLICY_KIND_ACPI]
  = { 1u << DHF_POLICY_OPTION_NOTIFY | 1u << DHF_POLICY_OPTION_HOST, "notify or host" },
  [DHF_POLICY_KIND_HOTKEY] = { 1u << DHF_POLICY_OPTION_NOTIFY, "notify" },
  [DHF_POLICY_KIND_NETWORK] = { 1u << DHF_POLICY_OPTION_NOTIFY, "notify" },
};

static guint
edit_distance (const gchar *a, gsize la, const gchar *b, gsize lb)
{
  guint row[64];

  if (la >= G_N_ELEMENTS (row) || lb >= G_N_ELEMENTS (row))
    return G_MAXUINT;
  for (gsize j = 0; j <= lb; j++)
    row[j] = (guint) j;
  for (gsize i = 1; i <= la; i++)
    {
      guint diagonal = row[0];

      row[0] = (guint) i;
      for (gsize j = 1; j <= lb; j++)
        {
          guint above = row[j];
          guint cost = g_ascii_tolower (a[i - 1]) == g_ascii_tolower (b[j - 1]) ? 0 : 1;

          row[j] = MIN (MIN (row[j] + 1, row[j - 1] + 1), diagonal + cost);
          diagonal = above;
        }
    }
  return row[lb];
}

const gchar *
dhf_policy_suggest (const gchar *word, gsize len, const gchar *const *candidates,
                    gsize n_candidates)
{
  const gchar *best = NULL;
  guint best_distance = 3;

  for (gsize i = 0; i < n_candidates; i++)
    {
      guint d = edit_distance (word, len, candidates[i], strlen (candidates[i]));

      /* Close enough to be a typo, and not most of the word. */
      if (d < best_distance && d < MAX (len, 2) / 2 + 1)
        {
          best = candidates[i];
          best_distance = d;
        }
    }
  return best;
}

static void error_at (Builder *b, const gchar *file, guint line, guint column, const gchar *format,
                      ...) G_GNUC_PRINTF (5, 6);

static void
error_at (Builder *b, const gchar *file, guint line, guint column, const gchar *format, ...)
{
  g_autofree gchar *message = NULL;
  va_list args;

  va_start (args, format);
  message = g_strdup_vprintf (format, args);
  va_end (args);
  dhf_policy_diag_add (&b->sink, DHF_POLICY_SEVERITY_ERROR, file, line, column, "%s", message);
}

gboolean
dhf_policy_name_is_valid (const gchar *s)
{
  gsize len = strlen (s);

  if (len == 0 || len > 48 || !g_ascii_islower (s[0]) || s[len - 1] == '-'
      || strstr (s, "--") != NULL)
    return FALSE;
  for (gsize i = 0; i < len; i++)
    if (!g_ascii_islower (s[i]) && !g_ascii_isdigit (s[i]) && s[i] != '-')
      return FALSE;
  return TRUE;
}

static gboolean
is_tag (const gchar *s)
{
  gsize len = strlen (s);

  if (len == 0 || len > 32 || !(g_ascii_islower (s[0]) || g_ascii_isdigit (s[0])))
    return FALSE;
  for (gsize i = 0; i < len; i++)
    if (!g_ascii_islower (s[i]) && !g_ascii_isdigit (s[i]) && s[i] != '_' && s[i] != '-')
      return FALSE;
  return TRUE;
}

static gboolean
is_vendor (const gchar *s)
{
  glong chars = g_utf8_strlen (s, -1);

  if (chars < 1 || chars > 64)
    return FALSE;
  for (const gchar *p = s; *p != '\0'; p = g_utf8_next_char (p))
    if (g_unichar_iscntrl (g_utf8_get_char (p)))
      return FALSE;
  return TRUE;
}

static const struct
{
  const gchar *word;
  DhfPolicyTokenType type;
  gboolean takes_value;
} token_words[] = {
  { "@any", DHF_POLICY_TOKEN_ANY, FALSE },
  { "@dom0", DHF_POLICY_TOKEN_DOM0, FALSE },
  { "@focused", DHF_POLICY_TOKEN_FOCUSED, FALSE },
  { "@role", DHF_POLICY_TOKEN_ROLE, TRUE },
  { "@tag", DHF_POLICY_TOKEN_TAG, TRUE },
  { "@vendor", DHF_POLICY_TOKEN_VENDOR, TRUE },
  { "@next", DHF_POLICY_TOKEN_NEXT, FALSE },
  { "@previous", DHF_POLICY_TOKEN_PREVIOUS, FALSE },
  { "@outside", DHF_POLICY_TOKEN_OUTSIDE, FALSE },
};

static gchar *
unknown_token_message (const gchar *text)
{
  const gchar *colon = strchr (text, ':');
  gsize head_len = colon != NULL ? (gsize) (colon - text) : strlen (text);
  const gchar *words[G_N_ELEMENTS (token_words)];
  const gchar *best;

  for (gsize i = 0; i < G_N_ELEMENTS (token_words); i++)
    words[i] = token_words[i].word;
  best = dhf_policy_suggest (text, head_len, words, G_N_ELEMENTS (words));
  for (gsize i = 0; best != NULL && i < G_N_ELEMENTS (token_words); i++)
    {
      if (token_words[i].word != best)
        continue;
      if (!token_words[i].takes_value)
        return g_strdup_printf ("unknown domain token '%s' (did you mean '%s'?)", text, best);
      return g_strdup_printf ("unknown domain token '%s' (did you mean '%s%s'?)", text, best,
                              colon != NULL ? colon : ":...");
    }
  return g_strdup_printf ("unknown domain token '%s' (expected @any, @dom0, @focused, "
                          "@role:ROLE, @tag:TAG, @vendor:VENDOR or a domain name)",
                          text);
}

/* Parses SOURCE or TARGET syntax; kind-specific checks come after. */
static gboolean
parse_token_syntax (const gchar *text, DhfPolicyToken *token, gchar **message)
{
  const gchar *colon;
  gsize head_len;

  token->value = NULL;
  if (text[0] != '@')
    {
      if (g_str_equal (text, "dom0"))
        {
          *message = g_strdup ("'dom0' is not a domain name (did you mean '@dom0'?)");
          return FALSE;
        }
      if (!dhf_policy_name_is_valid (text))
        {
          *message = g_strdup_printf (
              "invalid domain name '%s' (expected at most 48 lowercase letters, digits and '-', "
              "starting with a letter, without '--' or a trailing '-')",
              text);
          return FALSE;
        }
      token->type = DHF_POLICY_TOKEN_NAME;
      token->value = text;
      return TRUE;
    }

  colon = strchr (text, ':');
  head_len = colon != NULL ? (gsize) (colon - text) : strlen (text);
  for (gsize i = 0; i < G_N_ELEMENTS (token_words); i++)
    {
      const gchar *word = token_words[i].word;

      if (strlen (word) != head_len || strncmp (text, word, head_len) != 0
          || token_words[i].takes_value != (colon != NULL))
        continue;
      token->type = token_words[i].type;
      if (colon == NULL)
        return TRUE;
      token->value = colon + 1;
      if (token->type == DHF_POLICY_TOKEN_ROLE && !g_str_equal (token->value, "environment")
          && !g_str_equal (token->value, "service"))
        *message
            = g_strdup_printf ("unknown role '%s' (expected environment or service)", token->value);
      else if (token->type == DHF_POLICY_TOKEN_TAG && !is_tag (token->value))
        *message = g_strdup_printf ("invalid tag '%s' (expected 1 to 32 lowercase letters, "
                                    "digits, '_' or '-', starting with a letter or digit)",
                                    token->value);
      else if (token->type == DHF_POLICY_TOKEN_VENDOR && !is_vendor (token->value))
        *message = g_strdup_printf ("invalid vendor '%s' (expected 1 to 64 characters, no "
                                    "control characters; quote it if it has spaces)",
                                    token->value);
      return *message == NULL;
    }
  *message = unknown_token_message (text);
  return FALSE;
}

/* The kind-specific restrictions on SOURCE and TARGET. */
static gchar *
check_token_for_kind (const DhfPolicyToken *token, DhfPolicyKind kind, gboolean is_target,
                      const gchar *text)
{
  const gchar *kind_name = dhf_policy_kind_to_string (kind);

  if ((token->type == DHF_POLICY_TOKEN_NEXT || token->type == DHF_POLICY_TOKEN_PREVIOUS)
      && !(is_target && kind == DHF_POLICY_KIND_HOTKEY))
    return g_strdup_printf ("'%s' is only valid as the TARGET of hotkey rules", text);
  if (token->type == DHF_POLICY_TOKEN_OUTSIDE && !(is_target && kind == DHF_POLICY_KIND_NETWORK))
    return g_strdup_printf ("'%s' is only valid as the TARGET of network rules", text);
  if (!is_target && token->type != DHF_POLICY_TOKEN_DOM0
      && (kind == DHF_POLICY_KIND_ACPI || kind == DHF_POLICY_KIND_HOTKEY))
    return g_strdup_printf ("%s rules must have @dom0 as SOURCE (%s arise in dom0), not '%s'",
                            kind_name, kind == DHF_POLICY_KIND_ACPI ? "ACPI events" : "hotkeys",
                            text);
  return NULL;
}

static gboolean
parse_domain_column (Builder *b, const gchar *file, guint line, const DhfPolicyLexToken *lex,
                     gint kind, gboolean is_target, DhfPolicyToken *token)
{
  static const gchar *const symbolic_names[] = { "any", "focused", "next", "previous", "outside" };
  g_autofree gchar *message = NULL;

  if (!parse_token_syntax (lex->text, token, &message))
    {
      error_at (b, file, line, lex->column, "%s", message);
      return FALSE;
    }
  if (kind >= 0)
    message = check_token_for_kind (token, (DhfPolicyKind) kind, is_target, lex->text);
  if (message != NULL)
    {
      error_at (b, file, line, lex->column, "%s", message);
      return FALSE;
    }
  for (gsize i = 0; token->type == DHF_POLICY_TOKEN_NAME && i < G_N_ELEMENTS (symbolic_names); i++)
    if (g_str_equal (lex->text, symbolic_names[i]))
      dhf_policy_diag_add (&b->sink, DHF_POLICY_SEVERITY_WARNING, file, line, lex->column,
                           "'%s' is the domain named %s (did you mean '@%s'?)", lex->text,
                           lex->text, lex->text);
  token->value
      = token->value != NULL ? g_string_chunk_insert_const (b->strings, token->value) : NULL;
  return TRUE;
}

static gboolean
parse_action (Builder *b, const gchar *file, guint line, const DhfPolicyLexToken *lex, gint kind,
              DhfPolicyAction *action)
{
  gboolean can_ask = kind < 0 || kind == DHF_POLICY_KIND_XDM || kind == DHF_POLICY_KIND_DEVICE
                     || kind == DHF_POLICY_KIND_SWITCH;

  if (g_str_equal (lex->text, "allow"))
    *action = DHF_POLICY_ACTION_ALLOW;
  else if (g_str_equal (lex->text, "deny"))
    *action = DHF_POLICY_ACTION_DENY;
  else if (g_str_equal (lex->text, "ask") && can_ask)
    *action = DHF_POLICY_ACTION_ASK;
  else if (g_str_equal (lex->text, "ask"))
    {
      error_at (b, file, line, lex->column,
                "'ask' is not valid for %s rules (expected allow or deny)",
                dhf_policy_kind_to_string ((DhfPolicyKind) kind));
      return FALSE;
    }
  else
    {
      error_at (b, file, line, lex->column, "unknown action '%s' (expected %s)", lex->text,
                can_ask ? "allow, deny or ask" : "allow or deny");
      return FALSE;
    }
  return TRUE;
}

/* Returns the normalised value, or NULL with a message. */
static gchar *
parse_option_value (DhfPolicyOption option, const gchar *value, gchar **message)
{
  static const gchar *const hosts[] = { "none", "suspend", "hibernate", "shutdown", "lock" };
  guint64 quota = 0;

  switch (option)
    {
      case DHF_POLICY_OPTION_NOTIFY:
        if (g_str_equal (value, "yes") || g_str_equal (value, "no"))
          return g_strdup (value);
        *message = g_strdup_printf ("invalid value '%s' for notify (expected yes or no)", value);
        return NULL;
      case DHF_POLICY_OPTION_TARGET:
        if (g_str_equal (value, "@dom0")
            || (dhf_policy_name_is_valid (value) && !g_str_equal (value, "dom0")))
          return g_strdup (value);
        *message = g_strdup_printf (
            "invalid value '%s' for target (expected a domain name or @dom0)", value);
        return NULL;
      case DHF_POLICY_OPTION_QUOTA:
        if (value[0] != '\0' && strlen (value) <= 8
            && strspn (value, "0123456789") == strlen (value))
          quota = g_ascii_strtoull (value, NULL, 10);
        if (quota >= 1 && quota <= 10000)
          return g_strdup_printf ("%" G_GUINT64_FORMAT, quota);
        *message = g_strdup_printf ("invalid value '%s' for quota (expected 1 to 10000)", value);
        return NULL;
      case DHF_POLICY_OPTION_MODE:
        if (g_str_equal (value, "pinned") || g_str_equal (value, "follow-focus"))
          return g_strdup (value);
        *message = g_strdup_printf ("invalid value '%s' for mode (expected pinned or follow-focus)",
                                    value);
        return NULL;
      case DHF_POLICY_OPTION_HOST:
        for (gsize i = 0; i < G_N_ELEMENTS (hosts); i++)
          if (g_str_equal (value, hosts[i]))
            return g_strdup (value);
        *message = g_strdup_printf ("invalid value '%s' for host (expected none, suspend, "
                                    "hibernate, shutdown or lock)",
                                    value);
        return NULL;
      case DHF_POLICY_N_OPTIONS:
      default:
        g_assert_not_reached ();
    }
}

static gboolean
parse_option (Builder *b, const gchar *file, guint line, const DhfPolicyLexToken *lex, gint kind,
              DhfPolicyAction action, gboolean action_known, DhfPolicyRule *rule)
{
  const gchar *eq = strchr (lex->text, '=');
  g_autofree gchar *key = NULL;
  g_autofree gchar *value = NULL;
  g_autofree gchar *message = NULL;
  gint option = -1;

  if (eq == NULL || eq == lex->text)
    {
      error_at (b, file, line, lex->column, "expected an option KEY=VALUE, found '%s'", lex->text);
      return FALSE;
    }
  key = g_strndup (lex->text, (gsize) (eq - lex->text));
  for (gint i = 0; i < DHF_POLICY_N_OPTIONS; i++)
    if (g_str_equal (key, dhf_policy_option_to_string ((DhfPolicyOption) i)))
      option = i;
  if (option < 0)
    {
      error_at (b, file, line, lex->column, "unknown option '%s' (expected %s)", key,
                kind >= 0 ? kind_options[kind].list : "notify, target, quota, mode or host");
      return FALSE;
    }
  if (kind >= 0 && !(kind_options[kind].mask & (1u << option)))
    {
      error_at (b, file, line, lex->column, "option '%s' is not valid for %s rules (expected %s)",
                key, dhf_policy_kind_to_string ((DhfPolicyKind) kind), kind_options[kind].list);
      return FALSE;
    }
  if (rule->options[option] != NULL)
    {
      error_at (b, file, line, lex->column, "duplicate option '%s'", key);
      return FALSE;
    }
  if (action_known && action == DHF_POLICY_ACTION_DENY
      && (option == DHF_POLICY_OPTION_TARGET || option == DHF_POLICY_OPTION_MODE))
    {
      error_at (b, file, line, lex->column, "option '%s' is only valid for allow and ask rules",
                key);
      return FALSE;
    }
  value = parse_option_value ((DhfPolicyOption) option, eq + 1, &message);
  if (value == NULL)
    {
      error_at (b, file, line, lex->column, "%s", message);
      return FALSE;
    }
  rule->options[option] = g_string_chunk_insert_const (b->strings, value);
  return TRUE;
}

static void
parse_rule (Builder *b, const gchar *file, guint line, const DhfPolicyLexToken *t, guint n)
{
  g_auto (DhfPolicySubject) subject = { 0 };
  g_autofree gchar *message = NULL;
  DhfPolicyRule rule = { 0 };
  gboolean ok = TRUE;
  gboolean action_ok;
  gint kind = -1;

  if (n < 4)
    {
      error_at (b, file, line, t[0].column,
                "expected 4 columns (SUBJECT SOURCE TARGET ACTION), found %u", n);
      return;
    }
  if (dhf_policy_subject_parse (t[0].text, &subject, &message))
    kind = (gint) subject.kind;
  else
    {
      error_at (b, file, line, t[0].column, "%s", message);
      ok = FALSE;
    }

  ok &= parse_domain_column (b, file, line, &t[1], kind, FALSE, &rule.source);
  ok &= parse_domain_column (b, file, line, &t[2], kind, TRUE, &rule.target);
  action_ok = parse_action (b, file, line, &t[3], kind, &rule.action);
  ok &= action_ok;
  for (guint i = 4; i < n; i++)
    ok &= parse_option (b, file, line, &t[i], kind, rule.action, action_ok, &rule);
  if (!ok)
    return;

  if (b->rules->len >= DHF_POLICY_MAX_RULES)
    {
      if (!b->too_many_reported)
        error_at (b, file, line, t[0].column, "too many rules (at most %u)", DHF_POLICY_MAX_RULES);
      b->too_many_reported = TRUE;
      return;
    }
  rule.index = b->rules->len;
  rule.kind = subject.kind;
  rule.select = subject.select;
  rule.file = g_string_chunk_insert_const (b->strings, file);
  rule.line = line;
  rule.column = t[0].column;
  rule.subject = g_string_chunk_insert_const (b->strings, subject.text);
  rule.key = subject.key != NULL ? g_string_chunk_insert_const (b->strings, subject.key) : NULL;
  rule.argument = subject.argument != NULL
                      ? g_string_chunk_insert_const (b->strings, subject.argument)
                      : NULL;
  rule.port_lo = subject.port_lo;
  rule.port_hi = subject.port_hi;
  g_array_append_val (b->rules, rule);
}

static void load_file (Builder *b, const gchar *path, guint depth, const gchar *from_file,
                       guint from_line, guint from_column);

static void
parse_include (Builder *b, const gchar *file, const gchar *dir, guint line, guint depth,
               const DhfPolicyLexToken *t, guint n)
{
  g_autofree gchar *path = NULL;

  if (!b->allow_include)
    {
      error_at (b, file, line, t[0].column, "!include is not allowed in in-memory policy data");
      return;
    }
  if (n != 2 || t[1].text[0] == '\0')
    {
      error_at (b, file, line, t[0].column, "!include takes one PATH, found %u", n - 1);
      return;
    }
  if (depth + 1 > DHF_POLICY_MAX_INCLUDE_DEPTH)
    {
      error_at (b, file, line, t[1].column, "includes nested too deeply (at most %u levels)",
                DHF_POLICY_MAX_INCLUDE_DEPTH);
      return;
    }
  path = g_path_is_absolute (t[1].text) ? g_strdup (t[1].text)
                                        : g_build_filename (dir, t[1].text, NULL);
  g_string_append_printf (b->source, "# !include %s\n", path);
  load_file (b, path, depth + 1, file, line, t[1].column);
  g_string_append_printf (b->source, "# end of %s\n", path);
}

static void
parse_line (Builder *b, const gchar *file, const gchar *dir, guint line, const gchar *text,
            gsize len, guint depth)
{
  const gchar *invalid = NULL;
  const gchar *lex_message = NULL;
  guint lex_column = 0;
  const DhfPolicyLexToken *t;
  guint n;

  if (len > 0 && text[len - 1] == '\r')
    len--;
  if (len > DHF_POLICY_MAX_LINE)
    {
      error_at (b, file, line, 1, "line too long (%" G_GSIZE_FORMAT " bytes, at most %u)", len,
                DHF_POLICY_MAX_LINE);
      return;
    }
  if (!g_utf8_validate_len (text, len, &invalid))
    {
      error_at (b, file, line, (guint) (invalid - text) + 1,
                *invalid == '\0' ? "NUL byte" : "invalid UTF-8");
      return;
    }
  if (!dhf_policy_lex_line (text, len, b->scratch, b->tokens, &lex_column, &lex_message))
    {
      error_at (b, file, line, lex_column, "%s", lex_message);
      return;
    }
  t = (const DhfPolicyLexToken *) (gpointer) b->tokens->data;
  n = b->tokens->len;
  if (n == 0)
    return;
  if (t[0].text[0] == '!' && !t[0].quoted)
    {
      if (g_str_equal (t[0].text, "!include"))
        parse_include (b, file, dir, line, depth, t, n);
      else
        error_at (b, file, line, t[0].column, "unknown directive '%s' (expected !include)",
                  t[0].text);
      return;
    }
  parse_rule (b, file, line, t, n);
}

static void
parse_text (Builder *b, const gchar *file, const gchar *dir, const gchar *text, gsize len,
            guint depth)
{
  gsize pos = 0;
  guint line = 0;

  dhf_policy_diag_note_file (&b->sink, file);
  g_string_append_printf (b->source, "# file: %s\n", file);
  while (pos < len)
    {
      const gchar *start = text + pos;
      const gchar *newline = memchr (start, '\n', len - pos);
      gsize line_len = newline != NULL ? (gsize) (newline - start) : len - pos;
      gsize before = b->source->len;

      line++;
      /* Keep the line in the source unless it was an include, which
       * inlined the included text instead. */
      parse_line (b, file, dir, line, start, line_len, depth);
      if (b->source->len == before)
        {
          g_string_append_len (b->source, start, (gssize) line_len);
          g_string_append_c (b->source, '\n');
        }
      pos += line_len + 1;
    }
}

static gchar *
loop_chain (Builder *b, guint from, const gchar *again)
{
  g_autoptr (GString) chain = g_string_new (NULL);
  g_autofree gchar *last = g_path_get_basename (again);

  for (guint i = from; i < b->stack->len; i++)
    {
      g_autofree gchar *name = g_path_get_basename (g_ptr_array_index (b->stack, i));

      g_string_append_printf (chain, "%s -> ", name);
    }
  g_string_append (chain, last);
  return g_string_free (g_steal_pointer (&chain), FALSE);
}

/* Reads the regular file open on fd, of the given size, with a bound:
 * NULL (and errno) on failure, or when it grew past DHF_POLICY_MAX_FILE
 * (len is then more than that). */
static gchar *
read_bounded (int fd, gsize size, gsize *len)
{
  gsize cap = MIN (size, (gsize) DHF_POLICY_MAX_FILE) + 1;
  g_autofree gchar *text = g_malloc (cap + 1);
  gsize got = 0;

  for (;;)
    {
      gssize n;

      if (got == cap)
        break;
      n = read (fd, text + got, cap - got);
      if (n < 0 && errno == EINTR)
        continue;
      if (n < 0)
        return NULL;
      if (n == 0)
        break;
      got += (gsize) n;
      /* The file grew since fstat: take up to the limit and one more byte. */
      if (got == cap && cap <= DHF_POLICY_MAX_FILE)
        {
          cap = MIN (cap * 2, (gsize) DHF_POLICY_MAX_FILE + 1);
          text = g_realloc (text, cap + 1);
        }
    }
  text[got] = '\0';
  *len = got;
  return g_steal_pointer (&text);
}

static void
load_error (Builder *b, const gchar *path, const gchar *from_file, guint from_line,
            guint from_column, const gchar *what)
{
  if (from_file != NULL)
    error_at (b, from_file, from_line, from_column, "cannot include '%s': %s", path, what);
  else
    error_at (b, path, 0, 0, "cannot read: %s", what);
}

static void
load_file (Builder *b, const gchar *path, guint depth, const gchar *from_file, guint from_line,
           guint from_column)
{
  g_autofree gchar *text = NULL;
  g_autofree gchar *dir = NULL;
  const gchar *at_file = from_file != NULL ? from_file : path;
  struct stat st;
  FileId id;
  gsize len = 0;
  int fd;

  /* Bound the work of one load whatever the includes do. */
  if (b->n_files_read >= DHF_POLICY_MAX_FILES)
    {
      if (!b->files_cap_reported)
        error_at (b, at_file, from_line, from_column,
                  "too many policy files (at most %u per load, includes counted)",
                  DHF_POLICY_MAX_FILES);
      b->files_cap_reported = TRUE;
      return;
    }
  b->n_files_read++;

  /* O_NONBLOCK: opening a FIFO must not wait for a writer. */
  fd = open (path, O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK);
  if (fd < 0)
    {
      int saved = errno;
      g_autofree gchar *display = g_filename_display_name (path);
      /* The words of g_file_get_contents(), which this used to be. */
      g_autofree gchar *what
          = g_strdup_printf ("Failed to open file “%s”: %s", display, g_strerror (saved));

      load_error (b, path, from_file, from_line, from_column, what);
      return;
    }
  if (fstat (fd, &st) != 0)
    {
      int saved = errno;

      close (fd);
      load_error (b, path, from_file, from_line, from_column, g_strerror (saved));
      return;
    }
  if (!S_ISREG (st.st_mode))
    {
      close (fd);
      load_error (b, path, from_file, from_line, from_column,
                  S_ISDIR (st.st_mode) ? "is a directory" : "not a regular file");
      return;
    }

  id = (FileId){ st.st_dev, st.st_ino };
  for (guint i = 0; i < b->stack_ids->len; i++)
    {
      const FileId *on_stack = &g_array_index (b->stack_ids, FileId, i);

      if (on_stack->dev == id.dev && on_stack->ino == id.ino)
        {
          g_autofree gchar *chain = loop_chain (b, i, path);

          close (fd);
          error_at (b, at_file, from_line, from_column, "include loop: %s", chain);
          return;
        }
    }

  if (st.st_size > DHF_POLICY_MAX_FILE)
    {
      close (fd);
      error_at (b, at_file, from_line, from_column,
                "'%s' is too large (%" G_GUINT64_FORMAT " bytes, at most 8 MiB)", path,
                (guint64) st.st_size);
      return;
    }
  if (b->n_bytes_read + (guint64) st.st_size > DHF_POLICY_MAX_TOTAL)
    {
      close (fd);
      if (!b->bytes_cap_reported)
        error_at (b, at_file, from_line, from_column,
                  "too much policy text: '%s' would take the total over %u MiB per load "
                  "(includes counted)",
                  path, DHF_POLICY_MAX_TOTAL / (1024 * 1024));
      b->bytes_cap_reported = TRUE;
      return;
    }

  text = read_bounded (fd, (gsize) st.st_size, &len);
  if (text == NULL)
    {
      int saved = errno;

      close (fd);
      load_error (b, path, from_file, from_line, from_column, g_strerror (saved));
      return;
    }
  close (fd);
  if (len > DHF_POLICY_MAX_FILE)
    {
      error_at (b, at_file, from_line, from_column, "'%s' is too large (more than 8 MiB)", path);
      return;
    }
  b->n_bytes_read += len;

  dir = g_path_get_dirname (path);
  g_ptr_array_add (b->files, g_strdup (path));
  g_ptr_array_add (b->stack, g_strdup (path));
  g_array_append_val (b->stack_ids, id);
  parse_text (b, path, dir, text, len, depth);
  g_ptr_array_set_size (b->stack, b->stack->len - 1);
  g_array_set_size (b->stack_ids, b->stack_ids->len - 1);
}

static void
builder_init (Builder *b, gboolean allow_include)
{
  dhf_policy_diag_sink_init (&b->sink);
  b->strings = g_string_chunk_new (64 * 1024);
  b->rules = g_array_new (FALSE, TRUE, sizeof (DhfPolicyRule));
  b->files = g_ptr_array_new_with_free_func (g_free);
  b->source = g_string_new (NULL);
  b->stack = g_ptr_array_new_with_free_func (g_free);
  b->stack_ids = g_array_new (FALSE, FALSE, sizeof (FileId));
  b->n_files_read = 0;
  b->n_bytes_read = 0;
  b->files_cap_reported = FALSE;
  b->bytes_cap_reported = FALSE;
  b->scratch = g_string_sized_new (DHF_POLICY_MAX_LINE + 64);
  b->tokens = g_array_new (FALSE, FALSE, sizeof (DhfPolicyLexToken));
  b->allow_include = allow_include;
  b->too_many_reported = FALSE;
}

/* Consumes the builder: a policy when there was no error, else NULL. */
static DhfPolicy *
builder_finish (Builder *b, GPtrArray *diagnostics)
{
  DhfPolicy *policy = NULL;
  gboolean valid;
  gsize n = 0;

  dhf_policy_check_shadowed ((const DhfPolicyRule *) (gpointer) b->rules->data, b->rules->len,
                             &b->sink);
  valid = b->sink.n_errors == 0;
  dhf_policy_diag_sink_finish (&b->sink, diagnostics);

  if (valid)
    {
      policy = dhf_policy_new_internal ();
      policy->strings = g_steal_pointer (&b->strings);
      policy->rules = g_array_steal (b->rules, &n);
      policy->n_rules = (guint) n;
      g_ptr_array_add (b->files, NULL);
      policy->files = (gchar **) g_ptr_array_steal (b->files, NULL);
      policy->source = g_string_free (g_steal_pointer (&b->source), FALSE);
      dhf_policy_index_build (policy);
    }

  if (b->strings != NULL)
    g_string_chunk_free (b->strings);
  g_array_unref (b->rules);
  g_ptr_array_unref (b->files);
  if (b->source != NULL)
    g_string_free (b->source, TRUE);
  g_ptr_array_unref (b->stack);
  g_array_unref (b->stack_ids);
  g_string_free (b->scratch, TRUE);
  g_array_unref (b->tokens);
  return policy;
}

DhfPolicy *
dhf_policy_load_files (const gchar *const *files, GPtrArray *diagnostics)
{
  Builder b;

  builder_init (&b, TRUE);
  for (gsize i = 0; files != NULL && files[i] != NULL; i++)
    load_file (&b, files[i], 0, NULL, 0, 0);
  return builder_finish (&b, diagnostics);
}

static gboolean
is_rule_file_name (const gchar *name)
{
  gsize len = strlen (name);

  if (len <= strlen (".policy") || !(g_ascii_isalnum (name[0]) || name[0] == '_'))
    return FALSE;
  for (gsize i = 1; i < len; i++)
    if (!g_ascii_isalnum (name[i]) && strchr ("_.-", name[i]) == NULL)
      return FALSE;
  return TRUE;
}

static gint
compare_names (gconstpointer a, gconstpointer b)
{
  return strcmp (*(const gchar *const *) a, *(const gchar *const *) b);
}

DhfPolicy *
dhf_policy_load_dirs (const gchar *const *dirs, GPtrArray *diagnostics)
{
  g_autoptr (GHashTable) chosen = g_hash_table_new_full (g_str_hash, g_str_equal, g_free, g_free);
  g_autofree const gchar **names = NULL;
  guint n_names = 0;
  gsize n_dirs = dirs != NULL ? g_strv_length ((gchar **) dirs) : 0;
  Builder b;

  builder_init (&b, TRUE);
  /* Vendor first, so that the admin's same-named file replaces it. */
  for (gsize d = n_dirs; d-- > 0;)
    {
      g_autoptr (GError) error = NULL;
      g_autoptr (GDir) dir = g_dir_open (dirs[d], 0, &error);
      const gchar *name;

      if (dir == NULL)
        {
          if (!g_error_matches (error, G_FILE_ERROR, G_FILE_ERROR_NOENT)
              && !g_error_matches (error, G_FILE_ERROR, G_FILE_ERROR_NOTDIR))
            error_at (&b, dirs[d], 0, 0, "cannot read the directory: %s", error->message);
          continue;
        }
      while ((name = g_dir_read_name (dir)) != NULL)
        {
          if (name[0] == '.' || !g_str_has_suffix (name, ".policy"))
            continue;
          if (!is_rule_file_name (name))
            {
              g_autofree gchar *path = g_build_filename (dirs[d], name, NULL);

              error_at (&b, path, 0, 0,
                        "'%s' is not a valid policy file name (expected "
                        "[A-Za-z0-9_][A-Za-z0-9_.-]*.policy)",
                        name);
              continue;
            }
          g_hash_table_insert (chosen, g_strdup (name), g_build_filename (dirs[d], name, NULL));
        }
    }

  names = (const gchar **) g_hash_table_get_keys_as_array (chosen, &n_names);
  qsort (names, n_names, sizeof *names, compare_names);
  for (guint i = 0; i < n_names; i++)
    load_file (&b, g_hash_table_lookup (chosen, names[i]), 0, NULL, 0, 0);
  return builder_finish (&b, diagnostics);
}

DhfPolicy *
dhf_policy_parse_data (const gchar *name, const gchar *data, gsize length, GPtrArray *diagnostics)
{
  Builder b;

  /* (gsize) -1: data is NUL-terminated. */
  if (length == G_MAXSIZE)
    length = data != NULL ? strlen (data) : 0;
  builder_init (&b, FALSE);
  if (length > DHF_POLICY_MAX_DATA)
    error_at (&b, name, 0, 0, "too large (%" G_GSIZE_FORMAT " bytes, at most 64 MiB)", length);
  else
    {
      g_ptr_array_add (b.files, g_strdup (name));
      parse_text (&b, name, NULL, data, length, 0);
    }
  return builder_finish (&b, diagnostics);
}
