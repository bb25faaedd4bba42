/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include "config.h"

#include <string.h>

#include "dhf-policy-audit.h"

/* One (subject, source, target) whose window is open. */
typedef struct
{
  GList link; /* in DhfPolicyAudit.order; data points back here */
  gchar *key;
  gchar *subject;
  gchar *source;
  gchar *target;
  gchar *rule;         /* of the latest deny: "file:line" or "default" */
  gint64 window_start; /* by the audit's clock */
  guint suppressed;    /* denies since the window opened */
} Entry;

struct _DhfPolicyAudit
{
  GMutex lock;
  DhfPolicyAuditClock clock;
  DhfPolicyAuditWriter writer;
  gpointer user_data;
  guint max_keys;
  gboolean use_timer;
  GMainContext *context; /* where the timer runs */
  GSource *timer;        /* closes the oldest window; NULL when idle */
  GHashTable *entries;   /* key -> Entry (owned) */
  GQueue order;          /* Entry links, oldest window first */

  /* The global budget of records per window, whatever their keys: cycling
   * through many keys must not turn every deny into a record. */
  gint64 budget_start; /* -1 when no budget window is open */
  guint budget_used;   /* records written in it */
  guint64 others;      /* denies not logged for want of budget or room */
};

static gint64
default_clock (gpointer user_data)
{
  return g_get_monotonic_time ();
}

static void
default_writer (GLogLevelFlags level, const GLogField *fields, gsize n_fields, gpointer user_data)
{
  g_log_structured_array (level, fields, n_fields);
}

static void
entry_free (Entry *entry)
{
  g_free (entry->key);
  g_free (entry->subject);
  g_free (entry->source);
  g_free (entry->target);
  g_free (entry->rule);
  g_free (entry);
}

/* Names and subjects can come from guests: keep control characters and
 * invalid UTF-8 out of the log. */
static gchar *
printable (const gchar *text)
{
  gchar *valid
      = g_utf8_make_valid (text, MIN (strlen (text), (gsize) DHF_POLICY_AUDIT_MAX_FIELD * 4));
  gchar *end;

  for (gchar *p = valid; *p != '\0'; p++)
    {
      if (g_ascii_iscntrl (*p))
        *p = '?';
    }
  /* At most DHF_POLICY_AUDIT_MAX_FIELD bytes, cut between characters. */
  if (strlen (valid) > DHF_POLICY_AUDIT_MAX_FIELD)
    {
      end = valid + DHF_POLICY_AUDIT_MAX_FIELD;
      while (end > valid && (*end & 0xc0) == 0x80)
        end--;
      *end = '\0';
    }
  return valid;
}

/* The subject as rules spell it: "org.example.Sync1+arg", "device:usb:...". */
static gchar *
describe_subject (const DhfPolicyQuery *query)
{
  static const gchar *const prefixes[DHF_POLICY_N_KINDS] = {
    [DHF_POLICY_KIND_XDM] = "",           [DHF_POLICY_KIND_DEVICE] = "device:",
    [DHF_POLICY_KIND_SWITCH] = "switch",  [DHF_POLICY_KIND_ACPI] = "acpi:",
    [DHF_POLICY_KIND_HOTKEY] = "hotkey:", [DHF_POLICY_KIND_NETWORK] = "network:",
  };
  const gchar *prefix = query->kind < DHF_POLICY_N_KINDS ? prefixes[query->kind] : "?:";
  g_autofree gchar *text = NULL;

  if (query->kind == DHF_POLICY_KIND_SWITCH)
    return g_strdup (prefix);
  if (query->kind == DHF_POLICY_KIND_XDM && query->argument != NULL)
    text = g_strconcat (query->subject != NULL ? query->subject : "", "+", query->argument, NULL);
  else
    text = g_strconcat (prefix, query->subject != NULL ? query->subject : "", NULL);
  return printable (text);
}

static gchar *
describe_domain (const DhfPolicyDomain *domain, const gchar *token)
{
  if (domain != NULL)
    return printable (domain->is_dom0 ? "dom0" : domain->name != NULL ? domain->name : "");
  return printable (token != NULL ? token : "");
}

static gchar *
describe_rule (const DhfPolicyDecision *decision)
{
  g_autofree gchar *text = NULL;

  if (decision->rule == NULL)
    return g_strdup ("default");
  text = g_strdup_printf ("%s:%u", dhf_policy_rule_get_file (decision->rule),
                          dhf_policy_rule_get_line (decision->rule));
  return printable (text);
}

/* One audit record: the first deny of a window (suppressed == 0) or the
 * summary of a window's further denies. Called with the lock held. */
static void
write_record (DhfPolicyAudit *self, const Entry *entry, guint suppressed)
{
  g_autofree gchar *why = NULL;
  g_autofree gchar *message = NULL;
  g_autofree gchar *count = g_strdup_printf ("%u", suppressed);
  GLogField fields[8] = {
    { "PRIORITY", "5", -1 },
    { "GLIB_DOMAIN", G_LOG_DOMAIN, -1 },
    { "DHF_POLICY_SUBJECT", entry->subject, -1 },
    { "DHF_POLICY_SOURCE", entry->source, -1 },
    { "DHF_POLICY_TARGET", entry->target, -1 },
    { "DHF_POLICY_RULE", entry->rule, -1 },
  };
  gsize n_fields = 6;

  if (g_str_equal (entry->rule, "default"))
    why = g_strdup ("no rule matched: default deny");
  else
    why = g_strdup_printf ("rule %s", entry->rule);
  if (suppressed == 0)
    message = g_strdup_printf ("policy: denied %s from %s to %s (%s)", entry->subject,
                               entry->source, entry->target, why);
  else
    message = g_strdup_printf ("policy: denied %s from %s to %s (%s) ... and %u more in the last "
                               "%u s",
                               entry->subject, entry->source, entry->target, why, suppressed,
                               (guint) (DHF_POLICY_AUDIT_WINDOW_US / G_USEC_PER_SEC));
  fields[n_fields++] = (GLogField){ "MESSAGE", message, -1 };
  if (suppressed > 0)
    fields[n_fields++] = (GLogField){ "DHF_POLICY_SUPPRESSED", count, -1 };
  self->writer (G_LOG_LEVEL_MESSAGE, fields, n_fields, self->user_data);
}

/* Takes one record from the budget of the current window (opening one
 * when none is open); FALSE when the budget is spent. */
static gboolean
take_budget (DhfPolicyAudit *self, gint64 now)
{
  if (self->budget_start < 0)
    {
      self->budget_start = now;
      self->budget_used = 0;
    }
  if (self->budget_used >= DHF_POLICY_AUDIT_MAX_RECORDS)
    return FALSE;
  self->budget_used++;
  return TRUE;
}

/* The one record for everything the budget or the key table left out. */
static void
write_others (DhfPolicyAudit *self)
{
  g_autofree gchar *count = g_strdup_printf ("%" G_GUINT64_FORMAT, self->others);
  g_autofree gchar *message
      = g_strdup_printf ("policy: %" G_GUINT64_FORMAT " other denies suppressed in the last %u s",
                         self->others, (guint) (DHF_POLICY_AUDIT_WINDOW_US / G_USEC_PER_SEC));
  const GLogField fields[] = {
    { "PRIORITY", "5", -1 },
    { "GLIB_DOMAIN", G_LOG_DOMAIN, -1 },
    { "MESSAGE", message, -1 },
    { "DHF_POLICY_SUPPRESSED", count, -1 },
  };

  self->writer (G_LOG_LEVEL_MESSAGE, fields, G_N_ELEMENTS (fields), self->user_data);
  self->others = 0;
}

/* Closes the budget window if it has ended, logging what it left out. */
static void
expire_budget_locked (DhfPolicyAudit *self, gint64 now)
{
  if (self->budget_start < 0 || now - self->budget_start < DHF_POLICY_AUDIT_WINDOW_US)
    return;
  if (self->others > 0)
    write_others (self);
  self->budget_start = -1;
  self->budget_used = 0;
}

static void
drop_entry (DhfPolicyAudit *self, Entry *entry)
{
  g_queue_unlink (&self->order, &entry->link);
  g_hash_table_remove (self->entries, entry->key);
}

/* Closes every window that has ended: a window with suppressed denies logs
 * its summary and opens the next one (the key stays rate-limited while the
 * denies go on); a quiet one is forgotten. */
static void
expire_locked (DhfPolicyAudit *self, gint64 now)
{
  GList *link;

  expire_budget_locked (self, now);
  while ((link = g_queue_peek_head_link (&self->order)) != NULL)
    {
      Entry *entry = link->data;

      if (now - entry->window_start < DHF_POLICY_AUDIT_WINDOW_US)
        return;
      if (entry->suppressed == 0)
        {
          drop_entry (self, entry);
          continue;
        }
      /* A summary is a record too: without budget, its count goes to
       * the "other denies" and the key is forgotten. */
      if (!take_budget (self, now))
        {
          self->others += entry->suppressed;
          drop_entry (self, entry);
          continue;
        }
      write_record (self, entry, entry->suppressed);
      entry->suppressed = 0;
      entry->window_start = now;
      g_queue_unlink (&self->order, &entry->link);
      g_queue_push_tail_link (&self->order, &entry->link);
    }
}

static void schedule_locked (DhfPolicyAudit *self, gint64 now);

static gboolean
on_timer (gpointer user_data)
{
  DhfPolicyAudit *self = user_data;
  gint64 now;

  g_mutex_lock (&self->lock);
  g_clear_pointer (&self->timer, g_source_unref);
  now = self->clock (self->user_data);
  expire_locked (self, now);
  schedule_locked (self, now);
  g_mutex_unlock (&self->lock);
  return G_SOURCE_REMOVE;
}

/* One timer, for the oldest window: windows close in the order they opened. */
static void
schedule_locked (DhfPolicyAudit *self, gint64 now)
{
  GList *head = g_queue_peek_head_link (&self->order);
  gint64 end = G_MAXINT64;
  gint64 delay_us;

  if (!self->use_timer || self->timer != NULL)
    return;
  if (head != NULL)
    end = ((const Entry *) head->data)->window_start + DHF_POLICY_AUDIT_WINDOW_US;
  if (self->budget_start >= 0)
    end = MIN (end, self->budget_start + DHF_POLICY_AUDIT_WINDOW_US);
  if (end == G_MAXINT64)
    return;
  delay_us = MAX (end - now, 0);
  self->timer = g_timeout_source_new ((guint) ((delay_us + 999) / 1000));
  g_source_set_callback (self->timer, on_timer, self, NULL);
  g_source_set_static_name (self->timer, "dhf-policy-audit");
  g_source_attach (self->timer, self->context);
}

void
dhf_policy_audit_deny (DhfPolicyAudit *self, const DhfPolicyQuery *query,
                       const DhfPolicyDecision *decision)
{
  g_autofree gchar *subject = NULL;
  g_autofree gchar *source = NULL;
  g_autofree gchar *target = NULL;
  g_autofree gchar *key = NULL;
  Entry *entry;
  gint64 now;

  g_return_if_fail (self != NULL && query != NULL && decision != NULL);
  if (decision->action != DHF_POLICY_ACTION_DENY)
    return;

  subject = describe_subject (query);
  source = describe_domain (query->source, NULL);
  target = describe_domain (query->target, query->target_token);
  key = g_strjoin ("\x1f", subject, source, target, NULL);

  g_mutex_lock (&self->lock);
  now = self->clock (self->user_data);
  expire_locked (self, now);
  entry = g_hash_table_lookup (self->entries, key);
  if (entry != NULL)
    {
      entry->suppressed++;
      g_free (entry->rule);
      entry->rule = describe_rule (decision);
      g_mutex_unlock (&self->lock);
      return;
    }
  /* Every key tracked has its window open: none is evicted (that would
   * let a flood of distinct keys log each deny). Full, or out of budget:
   * the deny is only counted, for the one "other denies" record. */
  if (g_hash_table_size (self->entries) >= self->max_keys || !take_budget (self, now))
    {
      if (self->budget_start < 0)
        {
          self->budget_start = now; /* the "other denies" record closes with it */
          self->budget_used = 0;
        }
      self->others++;
      schedule_locked (self, now);
      g_mutex_unlock (&self->lock);
      return;
    }
  entry = g_new0 (Entry, 1);
  entry->link.data = entry;
  entry->key = g_steal_pointer (&key);
  entry->subject = g_steal_pointer (&subject);
  entry->source = g_steal_pointer (&source);
  entry->target = g_steal_pointer (&target);
  entry->rule = describe_rule (decision);
  entry->window_start = now;
  g_queue_push_tail_link (&self->order, &entry->link);
  g_hash_table_insert (self->entries, entry->key, entry);
  write_record (self, entry, 0);
  schedule_locked (self, now);
  g_mutex_unlock (&self->lock);
}

void
dhf_policy_audit_expire (DhfPolicyAudit *self)
{
  gint64 now;

  g_return_if_fail (self != NULL);
  g_mutex_lock (&self->lock);
  now = self->clock (self->user_data);
  expire_locked (self, now);
  g_mutex_unlock (&self->lock);
}

guint
dhf_policy_audit_get_n_keys (DhfPolicyAudit *self)
{
  guint n;

  g_mutex_lock (&self->lock);
  n = g_hash_table_size (self->entries);
  g_mutex_unlock (&self->lock);
  return n;
}

DhfPolicyAudit *
dhf_policy_audit_new_full (DhfPolicyAuditClock clock, DhfPolicyAuditWriter writer,
                           gpointer user_data, guint max_keys)
{
  DhfPolicyAudit *self = g_new0 (DhfPolicyAudit, 1);

  g_mutex_init (&self->lock);
  self->use_timer = clock == NULL;
  self->clock = clock != NULL ? clock : default_clock;
  self->writer = writer != NULL ? writer : default_writer;
  self->user_data = user_data;
  self->max_keys = max_keys != 0 ? max_keys : DHF_POLICY_AUDIT_MAX_KEYS;
  self->context = g_main_context_ref_thread_default ();
  self->entries
      = g_hash_table_new_full (g_str_hash, g_str_equal, NULL, (GDestroyNotify) entry_free);
  g_queue_init (&self->order);
  self->budget_start = -1;
  return self;
}

DhfPolicyAudit *
dhf_policy_audit_new (void)
{
  return dhf_policy_audit_new_full (NULL, NULL, NULL, 0);
}

void
dhf_policy_audit_free (DhfPolicyAudit *self)
{
  if (self == NULL)
    return;
  if (self->timer != NULL)
    {
      g_source_destroy (self->timer);
      g_source_unref (self->timer);
    }
  /* Counts still pending are logged, not lost, when dhfd stops. */
  for (GList *l = g_queue_peek_head_link (&self->order); l != NULL; l = l->next)
    {
      Entry *entry = l->data;

      if (entry->suppressed > 0)
        write_record (self, entry, entry->suppressed);
    }
  if (self->others > 0)
    write_others (self);
  g_hash_table_unref (self->entries);
  g_main_context_unref (self->context);
  g_mutex_clear (&self->lock);
  g_free (self);
}
