/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include "config.h"

#include "dhf-device-engine-private.h"

/* Transactions: steps run through DhfDeviceOps on one worker thread; when
 * a step fails, the steps of its unit that were done are undone in
 * reverse, and the domains whose devices may now differ from what the
 * engine believes are read back (list_attached). Nothing here touches the
 * engine: the results go back to the main context whole. */

void
dhf_attached_free (DhfAttached *attached)
{
  if (attached == NULL)
    return;
  g_strfreev (attached->aliases);
  g_strfreev (attached->config);
  g_free (attached);
}

static GHashTable *
attached_table_new (void)
{
  return g_hash_table_new_full (g_str_hash, g_str_equal, g_free,
                                (GDestroyNotify) dhf_attached_free);
}

DhfTxnUnit *
dhf_txn_unit_new (const gchar *label)
{
  DhfTxnUnit *unit = g_new0 (DhfTxnUnit, 1);

  unit->label = g_strdup (label);
  unit->steps = g_ptr_array_new_with_free_func ((GDestroyNotify) dhf_step_free);
  unit->failed_step = -1;
  unit->undo_failed = g_hash_table_new (g_direct_hash, g_direct_equal);
  unit->attached = attached_table_new ();
  return unit;
}

void
dhf_txn_unit_free (DhfTxnUnit *unit)
{
  if (unit == NULL)
    return;
  g_free (unit->label);
  g_ptr_array_unref (unit->steps);
  g_hash_table_unref (unit->undo_failed);
  g_clear_error (&unit->error);
  g_hash_table_unref (unit->attached);
  g_free (unit);
}

const DhfStep *
dhf_txn_unit_failed_step (const DhfTxnUnit *unit)
{
  if (unit->failed_step < 0 || (guint) unit->failed_step >= unit->steps->len)
    return NULL;
  return g_ptr_array_index (unit->steps, unit->failed_step);
}

DhfTxn *
dhf_txn_new (void)
{
  DhfTxn *txn = g_new0 (DhfTxn, 1);

  txn->reads = g_ptr_array_new_with_free_func (g_free);
  txn->units = g_ptr_array_new_with_free_func ((GDestroyNotify) dhf_txn_unit_free);
  txn->attached = attached_table_new ();
  return txn;
}

gboolean
dhf_txn_touches (const DhfTxn *txn, const gchar *domain)
{
  for (guint i = 0; i < txn->reads->len; i++)
    {
      if (g_strcmp0 (g_ptr_array_index (txn->reads, i), domain) == 0)
        return TRUE;
    }
  for (guint i = 0; i < txn->units->len; i++)
    {
      const DhfTxnUnit *unit = g_ptr_array_index (txn->units, i);

      for (guint k = 0; k < unit->steps->len; k++)
        {
          const DhfStep *step = g_ptr_array_index (unit->steps, k);

          if (g_strcmp0 (step->domain, domain) == 0)
            return TRUE;
        }
    }
  return FALSE;
}

void
dhf_txn_free (DhfTxn *txn)
{
  if (txn == NULL)
    return;
  g_ptr_array_unref (txn->reads);
  g_ptr_array_unref (txn->units);
  g_hash_table_unref (txn->attached);
  g_free (txn);
}

static gboolean
not_supported (const gchar *what, GError **error)
{
  g_set_error (error, DHF_ERROR, DHF_ERROR_NOT_SUPPORTED, "the hypervisor cannot %s", what);
  return FALSE;
}

static gboolean
device_op (gboolean attach, const DhfStep *step, const DhfDeviceOps *ops, gpointer data,
           GError **error)
{
  if (step->xml == NULL)
    {
      g_set_error (error, DHF_ERROR, DHF_ERROR_FAILED, "device %s has no libvirt description",
                   step->device_id);
      return FALSE;
    }
  if (attach)
    return ops->attach != NULL ? ops->attach (data, step->domain, step->xml, step->scope, error)
                               : not_supported ("attach devices", error);
  return ops->detach != NULL ? ops->detach (data, step->domain, step->xml, step->scope, error)
                             : not_supported ("detach devices", error);
}

/* The step, or its inverse when undo is set. */
static gboolean
run_step (const DhfStep *step, gboolean undo, const DhfDeviceOps *ops, gpointer data,
          GError **error)
{
  g_autoptr (GError) local_error = NULL;
  gboolean ok;

  switch (step->kind)
    {
      case DHF_STEP_ATTACH:
        ok = device_op (!undo, step, ops, data, &local_error);
        break;
      case DHF_STEP_DETACH:
        ok = device_op (undo, step, ops, data, &local_error);
        break;
      case DHF_STEP_SET_WEIGHT:
        ok = ops->set_weight != NULL ? ops->set_weight (
                 data, step->domain, undo ? step->undo_weight : step->weight, &local_error)
                                     : not_supported ("set CPU weights", &local_error);
        break;
      case DHF_STEP_RELEASE_KEYS:
        /* A key released cannot be pressed again, nor should it be. */
        if (undo)
          return TRUE;
        ok = ops->release_keys != NULL
                 ? ops->release_keys (data, step->domain, step->keys, step->n_keys, &local_error)
                 : not_supported ("send keys", &local_error);
        break;
      default:
        g_return_val_if_reached (FALSE);
    }
  if (ok)
    return TRUE;
  /* An implementation that fails without saying why still fails. */
  if (local_error == NULL)
    g_set_error_literal (&local_error, DHF_ERROR, DHF_ERROR_FAILED, "failed without a reason");
  g_propagate_error (error, g_steal_pointer (&local_error));
  return FALSE;
}

static gchar *
describe_undo (const DhfStep *step)
{
  switch (step->kind)
    {
      case DHF_STEP_ATTACH:
        return g_strdup_printf ("detaching %s from %s", step->device_id, step->domain);
      case DHF_STEP_DETACH:
        return g_strdup_printf ("attaching %s to %s", step->device_id, step->domain);
      case DHF_STEP_SET_WEIGHT:
        return g_strdup_printf ("setting the CPU weight of %s back to %u", step->domain,
                                step->undo_weight);
      default:
        return dhf_step_describe (step);
    }
}

static gboolean
is_device_step (const DhfStep *step)
{
  return step->kind == DHF_STEP_ATTACH || step->kind == DHF_STEP_DETACH;
}

/* Both scopes of an active domain: a device may be in one only (a move
 * half done, a domain that started while its persistent definition
 * changed). A domain whose read fails is left out: the engine keeps what
 * it believed. */
static void
read_domain (GHashTable *attached, const gchar *name, const DhfDeviceOps *ops, gpointer data)
{
  g_autoptr (GError) error = NULL;
  DhfAttached *read;
  gboolean active = FALSE;
  GStrv aliases;

  if (ops->list_attached == NULL)
    {
      g_message ("cannot read the devices of %s: the hypervisor cannot list them", name);
      return;
    }
  aliases = ops->list_attached (data, name, &active, &error);
  if (aliases == NULL)
    {
      g_warning ("cannot read the devices of %s: %s", name,
                 error != NULL ? error->message : "no reason given");
      return;
    }
  read = g_new0 (DhfAttached, 1);
  read->active = active;
  read->aliases = aliases;
  if (active && ops->list_attached_config != NULL)
    {
      read->config = ops->list_attached_config (data, name, &error);
      if (read->config == NULL)
        {
          g_warning ("cannot read the persistent devices of %s: %s", name,
                     error != NULL ? error->message : "no reason given");
          dhf_attached_free (read);
          return;
        }
    }
  g_hash_table_replace (attached, g_strdup (name), read);
}

static gboolean
stopped (const gint *stop)
{
  return stop != NULL && g_atomic_int_get (stop) != 0;
}

static void
run_unit (DhfTxnUnit *unit, const DhfDeviceOps *ops, gpointer data, const gint *stop)
{
  g_autoptr (GPtrArray) touched = g_ptr_array_new ();
  g_autoptr (GString) undo_failures = NULL;
  g_autoptr (GError) error = NULL;
  const DhfStep *failed = NULL;
  guint n_done;

  for (n_done = 0; n_done < unit->steps->len; n_done++)
    {
      /* Shutting down: what is done stays done (the next start reads
       * where the devices are); nothing more is called. */
      if (stopped (stop))
        {
          unit->cancelled = TRUE;
          unit->n_done = n_done;
          unit->error = g_error_new_literal (DHF_ERROR, DHF_ERROR_CANCELLED,
                                             "the device engine is shutting down");
          return;
        }
      failed = g_ptr_array_index (unit->steps, n_done);
      if (!run_step (failed, FALSE, ops, data, &error))
        break;
    }
  unit->n_done = n_done;
  if (n_done == unit->steps->len)
    {
      unit->ok = TRUE;
      return;
    }
  unit->failed_step = n_done;

  {
    g_autofree gchar *what = dhf_step_describe (failed);

    g_prefix_error (&error, "%s: ", what);
    if (unit->label != NULL)
      g_prefix_error (&error, "%s: ", unit->label);
  }
  if (is_device_step (failed))
    g_ptr_array_add (touched, failed->domain);

  while (n_done-- > 0)
    {
      const DhfStep *step = g_ptr_array_index (unit->steps, n_done);
      g_autoptr (GError) undo_error = NULL;

      if (run_step (step, TRUE, ops, data, &undo_error))
        continue;
      g_hash_table_add (unit->undo_failed, GINT_TO_POINTER (n_done + 1));
      if (undo_failures == NULL)
        undo_failures = g_string_new (NULL);
      else
        g_string_append (undo_failures, "; ");
      {
        g_autofree gchar *what = describe_undo (step);

        g_string_append_printf (undo_failures, "%s: %s", what, undo_error->message);
      }
      if (is_device_step (step))
        g_ptr_array_add (touched, step->domain);
    }
  if (undo_failures != NULL)
    {
      gchar *message = g_strdup_printf ("%s (undo failed: %s)", error->message, undo_failures->str);

      g_free (error->message);
      error->message = message;
    }
  unit->error = g_steal_pointer (&error);

  /* Only the domains whose devices may differ from what the engine
   * believes: the failing step's and those of undos that failed. */
  for (guint i = 0; i < touched->len; i++)
    {
      const gchar *name = g_ptr_array_index (touched, i);
      gboolean seen = FALSE;

      for (guint k = 0; k < i && !seen; k++)
        seen = g_strcmp0 (g_ptr_array_index (touched, k), name) == 0;
      if (!seen)
        read_domain (unit->attached, name, ops, data);
    }
}

void
dhf_txn_execute (DhfTxn *txn, const DhfDeviceOps *ops, gpointer ops_data, const gint *stop)
{
  for (guint i = 0; i < txn->reads->len && !stopped (stop); i++)
    read_domain (txn->attached, g_ptr_array_index (txn->reads, i), ops, ops_data);
  for (guint i = 0; i < txn->units->len; i++)
    run_unit (g_ptr_array_index (txn->units, i), ops, ops_data, stop);
}

/* --- the worker -------------------------------------------------------- */

struct _DhfTxnRunner
{
  const DhfDeviceOps *ops;
  gpointer ops_data;
  GMainContext *context;
  GThreadPool *pool;
  gint stop;      /* atomic: set when it is freed */
  GMutex lock;    /* guards pending */
  GList *pending; /* GSource: results attached and not handed back yet */
};

typedef struct
{
  DhfTxnRunner *runner;
  DhfTxn *txn;
  DhfTxnDoneFunc done;
  gpointer user_data;
  GSource *source; /* while it waits on the context */
} Job;

static gboolean
job_done (gpointer data)
{
  Job *job = data;
  DhfTxnRunner *runner = job->runner;
  GSource *source = job->source;

  g_mutex_lock (&runner->lock);
  runner->pending = g_list_remove (runner->pending, source);
  g_mutex_unlock (&runner->lock);
  job->source = NULL;
  job->done (job->txn, job->user_data);
  /* The context keeps it until this returns. */
  g_source_unref (source);
  return G_SOURCE_REMOVE;
}

static void
worker (gpointer data, gpointer user_data)
{
  DhfTxnRunner *runner = user_data;
  Job *job = data;
  GSource *source = g_idle_source_new ();

  dhf_txn_execute (job->txn, runner->ops, runner->ops_data, &runner->stop);
  /* Back through the main context, never inline here; at the default
   * priority, so a switch's reply does not wait behind idle work. */
  g_source_set_priority (source, G_PRIORITY_DEFAULT);
  g_source_set_callback (source, job_done, job, g_free);
  g_source_set_static_name (source, "[dhf] device transaction done");
  job->source = source;
  g_mutex_lock (&runner->lock);
  runner->pending = g_list_prepend (runner->pending, source);
  g_source_attach (source, runner->context);
  g_mutex_unlock (&runner->lock);
}

DhfTxnRunner *
dhf_txn_runner_new (const DhfDeviceOps *ops, gpointer ops_data, GMainContext *context)
{
  DhfTxnRunner *runner = g_new0 (DhfTxnRunner, 1);

  runner->ops = ops;
  runner->ops_data = ops_data;
  runner->context = g_main_context_ref (context);
  g_mutex_init (&runner->lock);
  /* One thread of its own, kept warm: a switch should not wait for a
   * thread to be started. */
  runner->pool = g_thread_pool_new (worker, runner, 1, TRUE, NULL);
  return runner;
}

void
dhf_txn_runner_free (DhfTxnRunner *runner)
{
  if (runner == NULL)
    return;
  g_atomic_int_set (&runner->stop, 1);
  g_thread_pool_free (runner->pool, FALSE, TRUE);
  /* The worker is gone: no one adds to pending any more. */
  for (GList *l = runner->pending; l != NULL; l = l->next)
    {
      g_source_destroy (l->data);
      g_source_unref (l->data);
    }
  g_list_free (runner->pending);
  g_mutex_clear (&runner->lock);
  g_main_context_unref (runner->context);
  g_free (runner);
}

void
dhf_txn_runner_run (DhfTxnRunner *runner, DhfTxn *txn, DhfTxnDoneFunc done, gpointer user_data)
{
  Job *job = g_new0 (Job, 1);

  job->runner = runner;
  job->txn = txn;
  job->done = done;
  job->user_data = user_data;
  g_thread_pool_push (runner->pool, job, NULL);
}
