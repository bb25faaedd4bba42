/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include "config.h"

#include "dhf-device-engine-private.h"

/* Transactions: steps run through DhfDeviceOps on one worker thread; when
 * a step fails, the steps of its unit that were done are undone in
 * reverse, and the domains whose devices may now differ from what the
 * engine believes are read back (list_attached). Nothing here touches the
 * engine: the results go back to the main context whole. */

DhfTxnUnit *
dhf_txn_unit_new (const gchar *label, const gchar *device_id)
{
  DhfTxnUnit *unit = g_new0 (DhfTxnUnit, 1);

  unit->label = g_strdup (label);
  unit->device_id = g_strdup (device_id);
  unit->steps = g_ptr_array_new_with_free_func ((GDestroyNotify) dhf_step_free);
  unit->attached
      = g_hash_table_new_full (g_str_hash, g_str_equal, g_free, (GDestroyNotify) g_strfreev);
  return unit;
}

void
dhf_txn_unit_free (DhfTxnUnit *unit)
{
  if (unit == NULL)
    return;
  g_free (unit->label);
  g_free (unit->device_id);
  g_ptr_array_unref (unit->steps);
  g_clear_error (&unit->error);
  g_hash_table_unref (unit->attached);
  g_free (unit);
}

DhfTxn *
dhf_txn_new (void)
{
  DhfTxn *txn = g_new0 (DhfTxn, 1);

  txn->reads = g_ptr_array_new_with_free_func (g_free);
  txn->units = g_ptr_array_new_with_free_func ((GDestroyNotify) dhf_txn_unit_free);
  txn->attached
      = g_hash_table_new_full (g_str_hash, g_str_equal, g_free, (GDestroyNotify) g_strfreev);
  return txn;
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

static void
read_domain (GHashTable *attached, const gchar *name, const DhfDeviceOps *ops, gpointer data)
{
  g_autoptr (GError) error = NULL;
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
  g_hash_table_replace (attached, g_strdup (name), aliases);
}

static void
run_unit (DhfTxnUnit *unit, const DhfDeviceOps *ops, gpointer data)
{
  g_autoptr (GPtrArray) touched = g_ptr_array_new ();
  g_autoptr (GString) undo_failures = NULL;
  g_autoptr (GError) error = NULL;
  const DhfStep *failed = NULL;
  guint n_done;

  for (n_done = 0; n_done < unit->steps->len; n_done++)
    {
      failed = g_ptr_array_index (unit->steps, n_done);
      if (!run_step (failed, FALSE, ops, data, &error))
        break;
    }
  if (n_done == unit->steps->len)
    {
      unit->ok = TRUE;
      return;
    }

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
dhf_txn_execute (DhfTxn *txn, const DhfDeviceOps *ops, gpointer ops_data)
{
  for (guint i = 0; i < txn->reads->len; i++)
    read_domain (txn->attached, g_ptr_array_index (txn->reads, i), ops, ops_data);
  for (guint i = 0; i < txn->units->len; i++)
    run_unit (g_ptr_array_index (txn->units, i), ops, ops_data);
}

/* --- the worker -------------------------------------------------------- */

struct _DhfTxnRunner
{
  const DhfDeviceOps *ops;
  gpointer ops_data;
  GMainContext *context;
  GThreadPool *pool;
};

typedef struct
{
  DhfTxn *txn;
  DhfTxnDoneFunc done;
  gpointer user_data;
} Job;

static gboolean
job_done (gpointer data)
{
  Job *job = data;

  job->done (job->txn, job->user_data);
  return G_SOURCE_REMOVE;
}

static void
worker (gpointer data, gpointer user_data)
{
  DhfTxnRunner *runner = user_data;
  Job *job = data;
  g_autoptr (GSource) source = g_idle_source_new ();

  dhf_txn_execute (job->txn, runner->ops, runner->ops_data);
  /* Back through the main context, never inline here; at the default
   * priority, so a switch's reply does not wait behind idle work. */
  g_source_set_priority (source, G_PRIORITY_DEFAULT);
  g_source_set_callback (source, job_done, job, g_free);
  g_source_set_static_name (source, "[dhf] device transaction done");
  g_source_attach (source, runner->context);
}

DhfTxnRunner *
dhf_txn_runner_new (const DhfDeviceOps *ops, gpointer ops_data, GMainContext *context)
{
  DhfTxnRunner *runner = g_new0 (DhfTxnRunner, 1);

  runner->ops = ops;
  runner->ops_data = ops_data;
  runner->context = g_main_context_ref (context);
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
  g_thread_pool_free (runner->pool, FALSE, TRUE);
  g_main_context_unref (runner->context);
  g_free (runner);
}

void
dhf_txn_runner_run (DhfTxnRunner *runner, DhfTxn *txn, DhfTxnDoneFunc done, gpointer user_data)
{
  Job *job = g_new0 (Job, 1);

  job->txn = txn;
  job->done = done;
  job->user_data = user_data;
  g_thread_pool_push (runner->pool, job, NULL);
}
