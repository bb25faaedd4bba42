/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* Calls made FROM this guest, through dhfd, like any appliance's: "call"
 * makes one and hands back what came of it; "bench" makes many in a row
 * and times them. Both go out with this guest's rights under the policy:
 * whoever may call this guest's service borrows them (README.md). */
#include <stdlib.h>

#include "guest-calls.h"
#include "guest-log.h"
#include "guest-params.h"

#define MAX_BENCH_WARMUP 10000
#define DEFAULT_WARMUP   20

/* The parameters of a call to make: "service", "target"?, "params"?,
 * "timeout_ms"?. */
typedef struct
{
  const gchar *service;
  const gchar *target;
  gchar *params_json; /* NULL: none */
  gint64 timeout_ms;  /* 0: the SDK's default */
} CallSpec;

static gboolean
get_call_spec (json_object *params, CallSpec *spec, GError **error)
{
  json_object *call_params = NULL;

  if (!guest_params_get_service (params, "service", TRUE, &spec->service, error)
      || !guest_params_get_domain (params, "target", FALSE, &spec->target, error)
      || !guest_params_get_int (params, "timeout_ms", FALSE, 1, GUEST_MAX_TIMEOUT_MS,
                                &spec->timeout_ms, error))
    return FALSE;
  if (json_object_object_get_ex (params, "params", &call_params))
    spec->params_json = guest_json_to_text (call_params);
  return TRUE;
}

/* ---- call -------------------------------------------------------------------- */

static void
call_done (GObject *source, GAsyncResult *res, gpointer user_data)
{
  g_autoptr (DhfInvocation) invocation = user_data;
  g_autoptr (json_object) result = json_object_new_object ();
  g_autoptr (GError) error = NULL;
  g_autofree gchar *text = dhf_client_call_finish (DHF_CLIENT (source), res, &error);

  /* The call's failure is this op's data: the caller wants to see what a
   * guest is told (not-authorized, not-found, ...). */
  if (text == NULL)
    {
      json_object *failure = json_object_new_object ();

      json_object_object_add (failure, "code", json_object_new_string (guest_error_nick (error)));
      json_object_object_add (failure, "message", json_object_new_string (error->message));
      json_object_object_add (result, "error", failure);
      guest_debug ("call: %s: %s", guest_error_nick (error), error->message);
    }
  else
    /* The SDK hands over valid JSON: embedded as it is. */
    json_object_object_add (result, "result", guest_json_from_text (g_steal_pointer (&text)));
  guest_return_result (invocation, g_steal_pointer (&result));
}

void
guest_op_call (GuestApp *app, DhfInvocation *invocation, json_object *params)
{
  g_autoptr (GError) error = NULL;
  CallSpec spec = { 0 };

  if (!get_call_spec (params, &spec, &error))
    {
      dhf_invocation_return_gerror (invocation, error);
      return;
    }
  /* Should our caller give up, so does this call. */
  dhf_client_call (app->client, spec.service, spec.target, spec.params_json, (gint) spec.timeout_ms,
                   dhf_invocation_get_cancellable (invocation), call_done,
                   g_object_ref (invocation));
  g_free (spec.params_json);
}

/* ---- bench ------------------------------------------------------------------- */

typedef struct
{
  DhfClient *client;
  DhfInvocation *invocation;
  GCancellable *caller_gone; /* the invocation's */
  GCancellable *shutdown;
  gulong caller_gone_id;
  gulong shutdown_id;
  /* Cancelled by either of the two: every call of the bench takes it, so
   * that one in flight ends at once too. */
  GCancellable *cancellable;
  gchar *service;
  gchar *target;
  gchar *params_json;
  gint timeout_ms;
  guint warmup;
  guint count;

  /* The worker's results. */
  gint64 *times_us; /* of the calls that succeeded, count at most */
  guint n_times;
  guint errors;
  gchar *last_error;
  gboolean cancelled;
} BenchJob;

static void
bench_job_free (BenchJob *job)
{
  /* Waits for a handler running in another thread: none runs after this. */
  g_cancellable_disconnect (job->caller_gone, job->caller_gone_id);
  g_cancellable_disconnect (job->shutdown, job->shutdown_id);
  g_object_unref (job->client);
  g_object_unref (job->invocation);
  g_object_unref (job->caller_gone);
  g_object_unref (job->shutdown);
  g_object_unref (job->cancellable);
  g_free (job->service);
  g_free (job->target);
  g_free (job->params_json);
  g_free (job->times_us);
  g_free (job->last_error);
  g_free (job);
}

static void
stop_bench (GCancellable *why, gpointer user_data)
{
  g_cancellable_cancel (user_data);
}

/* The loop: what it measures is the SDK and dhfd, so nothing but the call
 * is between the two clock readings, and nothing is allocated there. */
static void
bench_run (GTask *task, gpointer source, gpointer task_data, GCancellable *unused)
{
  BenchJob *job = task_data;

  for (guint i = 0; i < job->warmup && !g_cancellable_is_cancelled (job->cancellable); i++)
    g_free (dhf_client_call_sync (job->client, job->service, job->target, job->params_json,
                                  job->timeout_ms, job->cancellable, NULL));
  for (guint i = 0; i < job->count; i++)
    {
      GError *error = NULL;
      gchar *result;
      gint64 start;
      gint64 end;

      if (g_cancellable_is_cancelled (job->cancellable))
        {
          job->cancelled = TRUE;
          break;
        }
      start = g_get_monotonic_time ();
      result = dhf_client_call_sync (job->client, job->service, job->target, job->params_json,
                                     job->timeout_ms, job->cancellable, &error);
      end = g_get_monotonic_time ();
      if (result != NULL)
        job->times_us[job->n_times++] = end - start;
      else if (g_cancellable_is_cancelled (job->cancellable))
        {
          /* Our own cancellation is not the service's error. */
          job->cancelled = TRUE;
          g_error_free (error);
          break;
        }
      else
        {
          job->errors++;
          g_free (job->last_error);
          job->last_error = g_strdup_printf ("%s: %s", guest_error_nick (error), error->message);
          g_error_free (error);
        }
      g_free (result);
    }
  g_task_return_boolean (task, TRUE);
}

static gint
compare_times (gconstpointer a, gconstpointer b)
{
  gint64 x = *(const gint64 *) a;
  gint64 y = *(const gint64 *) b;

  return (x > y) - (x < y);
}

/* Nearest rank: the smallest value with at least p percent of the values
 * at or below it, i.e. the ceil(p/100 * n)-th smallest. */
static gint64
nearest_rank (const gint64 *sorted, guint n, guint p)
{
  guint64 rank = ((guint64) p * n + 99) / 100;

  return sorted[MAX (rank, 1) - 1];
}

static void
add_time (json_object *result, const gchar *key, const gint64 *sorted, guint n, guint p)
{
  /* No successful call, no time: null rather than a made-up 0. */
  json_object_object_add (result, key,
                          n > 0 ? json_object_new_int64 (nearest_rank (sorted, n, p)) : NULL);
}

static void
bench_done (GObject *source, GAsyncResult *res, gpointer user_data)
{
  GuestApp *app = user_data;
  BenchJob *job = g_task_get_task_data (G_TASK (res));
  g_autoptr (json_object) result = json_object_new_object ();

  app->bench_running = FALSE;
  if (job->cancelled)
    {
      /* The caller gave up (its answer is dropped) or we are ending. */
      guest_log ("bench of %s stopped after %u calls: %s", job->service, job->n_times + job->errors,
                 g_cancellable_is_cancelled (job->shutdown) ? "the program is ending"
                                                            : "the caller gave up");
      dhf_invocation_return_error (job->invocation, DHF_ERROR_CANCELLED, "the bench was stopped");
      return;
    }
  qsort (job->times_us, job->n_times, sizeof (gint64), compare_times);
  json_object_object_add (result, "count", json_object_new_int64 (job->count));
  json_object_object_add (result, "errors", json_object_new_int64 (job->errors));
  add_time (result, "min_us", job->times_us, job->n_times, 0);
  add_time (result, "p50_us", job->times_us, job->n_times, 50);
  add_time (result, "p99_us", job->times_us, job->n_times, 99);
  add_time (result, "max_us", job->times_us, job->n_times, 100);
  if (job->last_error != NULL)
    json_object_object_add (result, "last_error", json_object_new_string (job->last_error));
  if (job->n_times > 0)
    guest_log ("bench of %s: %u calls, %u errors, p50 %" G_GINT64_FORMAT " us", job->service,
               job->count, job->errors, nearest_rank (job->times_us, job->n_times, 50));
  else
    guest_log ("bench of %s: %u calls, all failed (%s)", job->service, job->count, job->last_error);
  guest_return_result (job->invocation, g_steal_pointer (&result));
}

void
guest_op_bench (GuestApp *app, DhfInvocation *invocation, json_object *params)
{
  g_autoptr (GError) error = NULL;
  g_autoptr (GTask) task = NULL;
  CallSpec spec = { 0 };
  gint64 count = 0;
  gint64 warmup = DEFAULT_WARMUP;
  BenchJob *job;

  if (!get_call_spec (params, &spec, &error)
      || !guest_params_get_int (params, "count", TRUE, 1, GUEST_MAX_COUNT, &count, &error)
      || !guest_params_get_int (params, "warmup", FALSE, 0, MAX_BENCH_WARMUP, &warmup, &error))
    {
      g_free (spec.params_json);
      dhf_invocation_return_gerror (invocation, error);
      return;
    }
  /* One at a time: each holds a worker thread and a call in flight, and
   * a bench may call a service that benches (this guest's own, even). */
  if (app->bench_running)
    {
      g_free (spec.params_json);
      dhf_invocation_return_error (invocation, DHF_ERROR_EXISTS,
                                   "a bench is running in this guest: one at a time");
      return;
    }

  job = g_new0 (BenchJob, 1);
  job->client = g_object_ref (app->client);
  job->invocation = g_object_ref (invocation);
  job->caller_gone = g_object_ref (dhf_invocation_get_cancellable (invocation));
  job->shutdown = g_object_ref (app->shutdown);
  job->cancellable = g_cancellable_new ();
  /* Either cancels the bench (at once if it already happened). */
  job->caller_gone_id
      = g_cancellable_connect (job->caller_gone, G_CALLBACK (stop_bench), job->cancellable, NULL);
  job->shutdown_id
      = g_cancellable_connect (job->shutdown, G_CALLBACK (stop_bench), job->cancellable, NULL);
  job->service = g_strdup (spec.service);
  job->target = g_strdup (spec.target);
  job->params_json = spec.params_json;
  job->timeout_ms = (gint) spec.timeout_ms;
  job->warmup = (guint) warmup;
  job->count = (guint) count;
  job->times_us = g_new (gint64, count);

  /* Synchronous calls on a worker thread: one after the other, and the
   * main loop stays free to answer the calls being measured when this
   * guest benches itself. */
  task = g_task_new (NULL, NULL, bench_done, app);
  g_task_set_task_data (task, job, (GDestroyNotify) bench_job_free);
  app->bench_running = TRUE;
  guest_log ("bench of %s%s%s: %u calls after %u to warm up", job->service,
             job->target != NULL ? " on " : "", job->target != NULL ? job->target : "", job->count,
             job->warmup);
  g_task_run_in_thread (task, bench_run);
}
