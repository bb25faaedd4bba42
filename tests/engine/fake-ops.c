/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include "config.h"

#include <string.h>

#include <dhf/dhf.h>

#include "dhf-device.h"
#include "fake-ops.h"

typedef struct
{
  gboolean active;
  gboolean transient; /* no persistent definition: CONFIG is dropped */
  GHashTable *live;   /* aliases */
  GHashTable *config; /* aliases */
  guint weight;
} Domain;

typedef struct
{
  gchar *pattern; /* NULL: the call numbered nth */
  guint nth;
  gint code;
  gchar *message;
} Failure;

struct _FakeOps
{
  GMutex lock;
  GHashTable *domains; /* name -> Domain */
  GPtrArray *calls;    /* since the last take */
  guint n_calls;       /* ever */
  GPtrArray *failures; /* Failure */
  GCond cond;          /* blocked, n_waiting */
  gboolean blocked;    /* calls wait before they are recorded */
  guint n_waiting;
};

static void
domain_free (Domain *domain)
{
  g_hash_table_unref (domain->live);
  g_hash_table_unref (domain->config);
  g_free (domain);
}

static void
failure_free (Failure *failure)
{
  g_free (failure->pattern);
  g_free (failure->message);
  g_free (failure);
}

static gint
compare_strings (gconstpointer a, gconstpointer b)
{
  return strcmp (*(const gchar *const *) a, *(const gchar *const *) b);
}

static gchar *
alias_of (const gchar *id)
{
  DhfDevice device = { .id = (gchar *) id };

  return dhf_device_alias (&device);
}

FakeOps *
fake_ops_new (void)
{
  FakeOps *fake = g_new0 (FakeOps, 1);

  g_mutex_init (&fake->lock);
  g_cond_init (&fake->cond);
  fake->domains
      = g_hash_table_new_full (g_str_hash, g_str_equal, g_free, (GDestroyNotify) domain_free);
  fake->calls = g_ptr_array_new_with_free_func (g_free);
  fake->failures = g_ptr_array_new_with_free_func ((GDestroyNotify) failure_free);
  return fake;
}

void
fake_ops_free (FakeOps *fake)
{
  g_hash_table_unref (fake->domains);
  g_ptr_array_unref (fake->calls);
  g_ptr_array_unref (fake->failures);
  g_cond_clear (&fake->cond);
  g_mutex_clear (&fake->lock);
  g_free (fake);
}

void
fake_ops_add_domain (FakeOps *fake, const gchar *name, gboolean active)
{
  Domain *domain = g_new0 (Domain, 1);

  domain->active = active;
  domain->live = g_hash_table_new_full (g_str_hash, g_str_equal, g_free, NULL);
  domain->config = g_hash_table_new_full (g_str_hash, g_str_equal, g_free, NULL);
  g_mutex_lock (&fake->lock);
  g_hash_table_replace (fake->domains, g_strdup (name), domain);
  g_mutex_unlock (&fake->lock);
}

void
fake_ops_remove_domain (FakeOps *fake, const gchar *name)
{
  g_mutex_lock (&fake->lock);
  g_hash_table_remove (fake->domains, name);
  g_mutex_unlock (&fake->lock);
}

void
fake_ops_set_active (FakeOps *fake, const gchar *name, gboolean active)
{
  Domain *domain;
  GHashTableIter iter;
  gpointer key;

  g_mutex_lock (&fake->lock);
  domain = g_hash_table_lookup (fake->domains, name);
  g_assert_nonnull (domain);
  domain->active = active;
  g_hash_table_remove_all (domain->live);
  if (active)
    {
      g_hash_table_iter_init (&iter, domain->config);
      while (g_hash_table_iter_next (&iter, &key, NULL))
        g_hash_table_add (domain->live, g_strdup (key));
    }
  g_mutex_unlock (&fake->lock);
}

void
fake_ops_set_transient (FakeOps *fake, const gchar *name, gboolean transient)
{
  Domain *domain;

  g_mutex_lock (&fake->lock);
  domain = g_hash_table_lookup (fake->domains, name);
  g_assert_nonnull (domain);
  domain->transient = transient;
  if (transient)
    g_hash_table_remove_all (domain->config);
  g_mutex_unlock (&fake->lock);
}

void
fake_ops_block (FakeOps *fake)
{
  g_mutex_lock (&fake->lock);
  fake->blocked = TRUE;
  g_mutex_unlock (&fake->lock);
}

void
fake_ops_wait_blocked (FakeOps *fake)
{
  g_mutex_lock (&fake->lock);
  while (fake->n_waiting == 0)
    g_cond_wait (&fake->cond, &fake->lock);
  g_mutex_unlock (&fake->lock);
}

void
fake_ops_unblock (FakeOps *fake)
{
  g_mutex_lock (&fake->lock);
  fake->blocked = FALSE;
  g_cond_broadcast (&fake->cond);
  g_mutex_unlock (&fake->lock);
}

void
fake_ops_hold (FakeOps *fake, const gchar *name, const gchar *id, DhfDeviceScope scope)
{
  Domain *domain;

  g_mutex_lock (&fake->lock);
  domain = g_hash_table_lookup (fake->domains, name);
  g_assert_nonnull (domain);
  if (scope & DHF_DEVICE_SCOPE_LIVE)
    g_hash_table_add (domain->live, alias_of (id));
  if (scope & DHF_DEVICE_SCOPE_CONFIG)
    g_hash_table_add (domain->config, alias_of (id));
  g_mutex_unlock (&fake->lock);
}

void
fake_ops_drop (FakeOps *fake, const gchar *name, const gchar *id, DhfDeviceScope scope)
{
  g_autofree gchar *alias = alias_of (id);
  Domain *domain;

  g_mutex_lock (&fake->lock);
  domain = g_hash_table_lookup (fake->domains, name);
  g_assert_nonnull (domain);
  if (scope & DHF_DEVICE_SCOPE_LIVE)
    g_hash_table_remove (domain->live, alias);
  if (scope & DHF_DEVICE_SCOPE_CONFIG)
    g_hash_table_remove (domain->config, alias);
  g_mutex_unlock (&fake->lock);
}

gboolean
fake_ops_holds (FakeOps *fake, const gchar *name, const gchar *id, DhfDeviceScope scope)
{
  g_autofree gchar *alias = alias_of (id);
  gboolean holds = FALSE;
  Domain *domain;

  g_mutex_lock (&fake->lock);
  domain = g_hash_table_lookup (fake->domains, name);
  if (domain != NULL)
    holds
        = (!(scope & DHF_DEVICE_SCOPE_LIVE) || g_hash_table_contains (domain->live, alias))
          && (!(scope & DHF_DEVICE_SCOPE_CONFIG) || g_hash_table_contains (domain->config, alias));
  g_mutex_unlock (&fake->lock);
  return holds;
}

gchar *
fake_ops_where (FakeOps *fake, const gchar *id)
{
  g_autofree gchar *alias = alias_of (id);
  g_autoptr (GPtrArray) names = g_ptr_array_new ();
  GHashTableIter iter;
  gpointer key, value;

  g_mutex_lock (&fake->lock);
  g_hash_table_iter_init (&iter, fake->domains);
  while (g_hash_table_iter_next (&iter, &key, &value))
    {
      Domain *domain = value;

      if (g_hash_table_contains (domain->live, alias)
          || g_hash_table_contains (domain->config, alias))
        g_ptr_array_add (names, key);
    }
  g_mutex_unlock (&fake->lock);
  if (names->len == 0)
    return g_strdup ("dom0");
  g_ptr_array_sort (names, compare_strings);
  g_ptr_array_add (names, NULL);
  return g_strjoinv (",", (gchar **) names->pdata);
}

guint
fake_ops_weight (FakeOps *fake, const gchar *name)
{
  Domain *domain;
  guint weight = 0;

  g_mutex_lock (&fake->lock);
  domain = g_hash_table_lookup (fake->domains, name);
  if (domain != NULL)
    weight = domain->weight;
  g_mutex_unlock (&fake->lock);
  return weight;
}

void
fake_ops_fail_nth (FakeOps *fake, guint n, gint code, const gchar *message)
{
  Failure *failure = g_new0 (Failure, 1);

  g_mutex_lock (&fake->lock);
  failure->nth = fake->n_calls + n;
  failure->code = code;
  failure->message = g_strdup (message);
  g_ptr_array_add (fake->failures, failure);
  g_mutex_unlock (&fake->lock);
}

void
fake_ops_fail_matching (FakeOps *fake, const gchar *pattern, gint code, const gchar *message)
{
  Failure *failure = g_new0 (Failure, 1);

  failure->pattern = g_strdup (pattern);
  failure->code = code;
  failure->message = g_strdup (message);
  g_mutex_lock (&fake->lock);
  g_ptr_array_add (fake->failures, failure);
  g_mutex_unlock (&fake->lock);
}

void
fake_ops_clear_failures (FakeOps *fake)
{
  g_mutex_lock (&fake->lock);
  g_ptr_array_set_size (fake->failures, 0);
  g_mutex_unlock (&fake->lock);
}

gchar *
fake_ops_take_calls (FakeOps *fake)
{
  gchar *joined;

  g_mutex_lock (&fake->lock);
  g_ptr_array_add (fake->calls, NULL);
  joined = g_strjoinv ("; ", (gchar **) fake->calls->pdata);
  g_ptr_array_set_size (fake->calls, 0);
  g_mutex_unlock (&fake->lock);
  return joined;
}

guint
fake_ops_count_calls (FakeOps *fake)
{
  guint n;

  g_mutex_lock (&fake->lock);
  n = fake->n_calls;
  g_mutex_unlock (&fake->lock);
  return n;
}

/* Records the call (locked); FALSE with the injected error when it is to
 * fail. */
static gboolean
record (FakeOps *fake, const gchar *text, GError **error)
{
  if (fake->blocked)
    {
      fake->n_waiting++;
      g_cond_broadcast (&fake->cond);
      while (fake->blocked)
        g_cond_wait (&fake->cond, &fake->lock);
      fake->n_waiting--;
    }
  fake->n_calls++;
  for (guint i = 0; i < fake->failures->len; i++)
    {
      Failure *failure = g_ptr_array_index (fake->failures, i);

      if ((failure->pattern != NULL && g_pattern_match_simple (failure->pattern, text))
          || (failure->pattern == NULL && failure->nth == fake->n_calls))
        {
          g_ptr_array_add (fake->calls, g_strdup_printf ("%s -> failed", text));
          g_set_error_literal (error, DHF_ERROR, failure->code, failure->message);
          return FALSE;
        }
    }
  g_ptr_array_add (fake->calls, g_strdup (text));
  return TRUE;
}

static const gchar *
scope_text (DhfDeviceScope scope)
{
  switch ((guint) scope)
    {
      case DHF_DEVICE_SCOPE_LIVE:
        return "live";
      case DHF_DEVICE_SCOPE_CONFIG:
        return "config";
      case DHF_DEVICE_SCOPE_LIVE | DHF_DEVICE_SCOPE_CONFIG:
        return "live|config";
      default:
        return "none";
    }
}

/* The alias in the XML dhf_device_to_xml() made. */
static gchar *
xml_alias (const gchar *xml)
{
  const gchar *start = strstr (xml, "<alias name='");
  const gchar *end;

  g_assert_nonnull (start);
  start += strlen ("<alias name='");
  end = strchr (start, '\'');
  g_assert_nonnull (end);
  return g_strndup (start, end - start);
}

static Domain *
find_domain (FakeOps *fake, const gchar *name, GError **error)
{
  Domain *domain = g_hash_table_lookup (fake->domains, name);

  if (domain == NULL)
    g_set_error (error, DHF_ERROR, DHF_ERROR_NOT_FOUND, "no domain %s", name);
  return domain;
}

/* As dhfd's libvirt ops: a stopped domain has no live definition, a
 * transient one no persistent definition; those scopes are dropped. */
static DhfDeviceScope
effective_scope (const Domain *domain, DhfDeviceScope scope)
{
  if (!domain->active)
    scope &= ~DHF_DEVICE_SCOPE_LIVE;
  if (domain->transient)
    scope &= ~DHF_DEVICE_SCOPE_CONFIG;
  return scope;
}

static gboolean
fake_attach (gpointer data, const gchar *name, const gchar *xml, DhfDeviceScope scope,
             GError **error)
{
  FakeOps *fake = data;
  g_autofree gchar *alias = xml_alias (xml);
  g_autofree gchar *text = g_strdup_printf (
      "attach %s %s %s", name, alias + strlen (DHF_DEVICE_ALIAS_PREFIX), scope_text (scope));
  G_GNUC_UNUSED g_autoptr (GMutexLocker) locker = g_mutex_locker_new (&fake->lock);
  Domain *domain;
  GHashTableIter iter;
  gpointer key, value;

  if (!record (fake, text, error))
    return FALSE;
  domain = find_domain (fake, name, error);
  if (domain == NULL)
    return FALSE;
  scope = effective_scope (domain, scope);
  if (scope == 0)
    {
      g_set_error (error, DHF_ERROR, DHF_ERROR_INVALID_STATE,
                   domain->active ? "%s is transient" : "%s is not running", name);
      return FALSE;
    }
  if (scope & DHF_DEVICE_SCOPE_LIVE)
    {
      g_hash_table_iter_init (&iter, fake->domains);
      while (g_hash_table_iter_next (&iter, &key, &value))
        {
          Domain *other = value;

          if (other != domain && g_hash_table_contains (other->live, alias))
            {
              g_set_error (error, DHF_ERROR, DHF_ERROR_HYPERVISOR, "%s is in use by %s", alias,
                           (const gchar *) key);
              return FALSE;
            }
        }
      g_hash_table_add (domain->live, g_strdup (alias));
    }
  if (scope & DHF_DEVICE_SCOPE_CONFIG)
    g_hash_table_add (domain->config, g_strdup (alias));
  return TRUE;
}

static gboolean
fake_detach (gpointer data, const gchar *name, const gchar *xml, DhfDeviceScope scope,
             GError **error)
{
  FakeOps *fake = data;
  g_autofree gchar *alias = xml_alias (xml);
  g_autofree gchar *text = g_strdup_printf (
      "detach %s %s %s", name, alias + strlen (DHF_DEVICE_ALIAS_PREFIX), scope_text (scope));
  G_GNUC_UNUSED g_autoptr (GMutexLocker) locker = g_mutex_locker_new (&fake->lock);
  Domain *domain;

  if (!record (fake, text, error))
    return FALSE;
  domain = find_domain (fake, name, error);
  if (domain == NULL)
    return FALSE;
  /* Nothing in a scope the domain lacks: nothing to remove. */
  scope = effective_scope (domain, scope);
  if (scope & DHF_DEVICE_SCOPE_LIVE)
    g_hash_table_remove (domain->live, alias);
  if (scope & DHF_DEVICE_SCOPE_CONFIG)
    g_hash_table_remove (domain->config, alias);
  return TRUE;
}

static GStrv
fake_list_attached (gpointer data, const gchar *name, gboolean *active, GError **error)
{
  FakeOps *fake = data;
  g_autofree gchar *text = g_strdup_printf ("list %s", name);
  G_GNUC_UNUSED g_autoptr (GMutexLocker) locker = g_mutex_locker_new (&fake->lock);
  g_autoptr (GStrvBuilder) builder = g_strv_builder_new ();
  g_autoptr (GPtrArray) aliases = g_ptr_array_new ();
  GHashTableIter iter;
  gpointer key;
  Domain *domain;

  if (!record (fake, text, error))
    return NULL;
  domain = find_domain (fake, name, error);
  if (domain == NULL)
    return NULL;
  *active = domain->active;
  g_hash_table_iter_init (&iter, domain->active ? domain->live : domain->config);
  while (g_hash_table_iter_next (&iter, &key, NULL))
    g_ptr_array_add (aliases, key);
  g_ptr_array_sort (aliases, compare_strings);
  for (guint i = 0; i < aliases->len; i++)
    g_strv_builder_add (builder, g_ptr_array_index (aliases, i));
  return g_strv_builder_end (builder);
}

static GStrv
fake_list_attached_config (gpointer data, const gchar *name, GError **error)
{
  FakeOps *fake = data;
  g_autofree gchar *text = g_strdup_printf ("list-config %s", name);
  G_GNUC_UNUSED g_autoptr (GMutexLocker) locker = g_mutex_locker_new (&fake->lock);
  g_autoptr (GStrvBuilder) builder = g_strv_builder_new ();
  g_autoptr (GPtrArray) aliases = g_ptr_array_new ();
  GHashTableIter iter;
  gpointer key;
  Domain *domain;

  if (!record (fake, text, error))
    return NULL;
  domain = find_domain (fake, name, error);
  if (domain == NULL)
    return NULL;
  /* A transient domain's definition is its live one. */
  g_hash_table_iter_init (&iter, domain->transient ? domain->live : domain->config);
  while (g_hash_table_iter_next (&iter, &key, NULL))
    g_ptr_array_add (aliases, key);
  g_ptr_array_sort (aliases, compare_strings);
  for (guint i = 0; i < aliases->len; i++)
    g_strv_builder_add (builder, g_ptr_array_index (aliases, i));
  return g_strv_builder_end (builder);
}

static gboolean
fake_set_weight (gpointer data, const gchar *name, guint weight, GError **error)
{
  FakeOps *fake = data;
  g_autofree gchar *text = g_strdup_printf ("weight %s %u", name, weight);
  G_GNUC_UNUSED g_autoptr (GMutexLocker) locker = g_mutex_locker_new (&fake->lock);
  Domain *domain;

  if (!record (fake, text, error))
    return FALSE;
  domain = find_domain (fake, name, error);
  if (domain == NULL)
    return FALSE;
  if (!domain->active)
    {
      g_set_error (error, DHF_ERROR, DHF_ERROR_INVALID_STATE, "%s is not running", name);
      return FALSE;
    }
  domain->weight = weight;
  return TRUE;
}

static gboolean
fake_release_keys (gpointer data, const gchar *name, const guint *keycodes, guint n_keycodes,
                   GError **error)
{
  FakeOps *fake = data;
  g_autoptr (GString) text = g_string_new (NULL);
  g_autoptr (GMutexLocker) locker = NULL;

  g_string_printf (text, "keys %s ", name);
  for (guint i = 0; i < n_keycodes; i++)
    g_string_append_printf (text, "%s%u", i > 0 ? "," : "", keycodes[i]);
  locker = g_mutex_locker_new (&fake->lock);
  if (!record (fake, text->str, error))
    return FALSE;
  return find_domain (fake, name, error) != NULL;
}

static const DhfDeviceOps vtable = {
  .attach = fake_attach,
  .detach = fake_detach,
  .list_attached = fake_list_attached,
  .set_weight = fake_set_weight,
  .release_keys = fake_release_keys,
  .list_attached_config = fake_list_attached_config,
};

const DhfDeviceOps *
fake_ops_vtable (void)
{
  return &vtable;
}
