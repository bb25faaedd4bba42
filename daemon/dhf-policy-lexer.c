/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include "config.h"

#include "dhf-policy-private.h"

/* Splits one line into tokens: runs of bytes other than space and tab, in
 * which "..." quotes spaces (with \" and \\ as the only escapes) and an
 * unquoted '#' at the start of a token begins a comment. */

gboolean
dhf_policy_lex_line (const gchar *line, gsize len, GString *scratch, GArray *tokens,
                     guint *error_column, const gchar **error_message)
{
  gsize i = 0;

  g_string_set_size (scratch, 0);
  g_array_set_size (tokens, 0);
  while (i < len)
    {
      DhfPolicyLexToken token = { NULL, 0, FALSE };
      gsize offset;

      while (i < len && (line[i] == ' ' || line[i] == '\t'))
        i++;
      if (i >= len || line[i] == '#')
        break;

      token.column = (guint) i + 1;
      offset = scratch->len;
      while (i < len && line[i] != ' ' && line[i] != '\t')
        {
          gsize open = i;

          if (line[i] != '"')
            {
              g_string_append_c (scratch, line[i++]);
              continue;
            }
          token.quoted = TRUE;
          for (i++;; i++)
            {
              if (i >= len)
                {
                  *error_column = (guint) open + 1;
                  *error_message = "unterminated quoted string";
                  return FALSE;
                }
              if (line[i] == '"')
                {
                  i++;
                  break;
                }
              if (line[i] == '\\')
                {
                  if (i + 1 >= len || (line[i + 1] != '"' && line[i + 1] != '\\'))
                    {
                      *error_column = (guint) i + 1;
                      *error_message = "invalid escape in quoted string (only \\\" and \\\\ are "
                                       "allowed)";
                      return FALSE;
                    }
                  i++;
                }
              g_string_append_c (scratch, line[i]);
            }
        }
      g_string_append_c (scratch, '\0');
      /* The scratch buffer may still move: keep offsets until the end. */
      token.text = GSIZE_TO_POINTER (offset);
      g_array_append_val (tokens, token);
    }

  for (guint t = 0; t < tokens->len; t++)
    {
      DhfPolicyLexToken *token = &g_array_index (tokens, DhfPolicyLexToken, t);

      token->text = scratch->str + GPOINTER_TO_SIZE (token->text);
    }
  return TRUE;
}
