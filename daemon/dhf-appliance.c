/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include "config.h"

#include "dhf-appliance.h"
#include "dhf-log.h"

struct _DhfAppliance
{
  DhfDBusApplianceSkeleton parent_instance;

  DhfHypervisor *hypervisor;
  DhfAuthority *authority;
  guint default_shutdown_timeout_s;

  gchar *uuid;
  gchar *object_path;
  DhfApplianceState state;
  gchar *raw_metadata;
  DhfDomainMetadata *metadata; /* NULL for foreign domains */
  /* The Shutdown call holding the operation slot: answered when the
   * domain is seen shut off (or gone), or when forcing it off fails. */
  struct ShutdownWaiter *shutdown;

  /* Lifecycle calls run one at a time per appliance, so that concurrent
   * callers each get a clear answer (one Start wins, the others learn the
   * appliance is running) instead of racing inside libvirt. */
  GQueue pending; /* PendingOp */
  guint64 shutdown_serial;
  gboolean op_running;
};

G_DEFINE_TYPE (DhfAppliance, dhf_appliance, DHF_DBUS_TYPE_APPLIANCE_SKELETON)

typedef struct
{
  void (*run) (gpointer call);
  gpointer call;
} PendingOp;

static void
run_next_op (DhfAppliance *self)
{
  g_autofree PendingOp *op = NULL;

  if (self->op_running || g_queue_is_empty (&self->pending))
    return;
  op = g_queue_pop_head (&self->pending);
  self->op_running = TRUE;
  op->run (op->call);
}

static void
enqueue_op (DhfAppliance *self, void (*run) (gpointer call), gpointer call)
{
  PendingOp *op = g_new0 (PendingOp, 1);

  op->run = run;
  op->call = call;
  g_queue_push_tail (&self->pending, op);
  run_next_op (self);
}

static void
op_finished (DhfAppliance *self)
{
  self->op_running = FALSE;
  run_next_op (self);
}

enum
{
  SIGNAL_STATE_CHANGED,
  N_SIGNALS
};

static guint signals[N_SIGNALS];

/* A Shutdown call in progress: graceful request first, forced off when the
 * timeout passes. */
typedef struct ShutdownWaiter
{
  DhfAppliance *self; /* not owned: self->shutdown points here */
  GDBusMethodInvocation *invocation;
  guint timeout_id;
  guint timeout_ms;
  gboolean forced;
  guint64 serial; /* tells a late callback whether it is still this call's */
} ShutdownWaiter;

static void
shutdown_waiter_free (ShutdownWaiter *waiter)
{
  g_clear_handle_id (&waiter->timeout_id, g_source_remove);
  g_clear_object (&waiter->invocation);
  g_free (waiter);
}

gchar *
dhf_appliance_path_for_name (const gchar *name)
{
  g_autofree gchar *escaped = g_dbus_escape_object_path (name);

  return g_strconcat (DHF_APPLIANCE_PATH_PREFIX "/", escaped, NULL);
}

const gchar *
dhf_appliance_get_uuid (DhfAppliance *self)
{
  return self->uuid;
}

const gchar *
dhf_appliance_get_object_path (DhfAppliance *self)
{
  return self->object_path;
}

DhfApplianceState
dhf_appliance_get_state_enum (DhfAppliance *self)
{
  return self->state;
}

const DhfDomainMetadata *
dhf_appliance_get_metadata (DhfAppliance *self)
{
  return self->metadata;
}

static void
update_metadata (DhfAppliance *self, const DhfDomainInfo *info)
{
  DhfDBusAppliance *iface = DHF_DBUS_APPLIANCE (self);
  g_autoptr (GError) error = NULL;
  const DhfManifest *manifest;

  if (g_strcmp0 (self->raw_metadata, info->metadata) == 0 && self->raw_metadata != NULL)
    return;
  g_free (self->raw_metadata);
  self->raw_metadata = g_strdup (info->metadata);
  g_clear_pointer (&self->metadata, dhf_domain_metadata_free);
  if (info->metadata != NULL)
    {
      self->metadata = dhf_domain_metadata_parse (info->metadata, &error);
      if (self->metadata == NULL)
        g_warning ("%s: ignoring unreadable dhf metadata: %s", info->name, error->message);
    }
  if (self->metadata == NULL)
    {
      dhf_dbus_appliance_set_managed (iface, FALSE);
      dhf_dbus_appliance_set_role (iface, "environment");
      dhf_dbus_appliance_set_vendor (iface, "");
      dhf_dbus_appliance_set_version (iface, "");
      return;
    }
  manifest = self->metadata->manifest;
  dhf_dbus_appliance_set_managed (iface, TRUE);
  dhf_dbus_appliance_set_role (iface,
                               dhf_appliance_role_to_string (dhf_manifest_get_role (manifest)));
  dhf_dbus_appliance_set_vendor (iface, dhf_manifest_get_vendor (manifest));
  dhf_dbus_appliance_set_version (iface, dhf_manifest_get_version (manifest));
}

/* Answers the pending Shutdown (error == NULL: it is off) and frees the
 * operation slot. */
static void
finish_shutdown (DhfAppliance *self, const GError *error)
{
  ShutdownWaiter *waiter = g_steal_pointer (&self->shutdown);

  if (waiter == NULL)
    return;
  if (error != NULL)
    g_dbus_method_invocation_return_gerror (g_steal_pointer (&waiter->invocation), error);
  else
    dhf_dbus_appliance_complete_shutdown (DHF_DBUS_APPLIANCE (self),
                                          g_steal_pointer (&waiter->invocation), waiter->forced);
  shutdown_waiter_free (waiter);
  op_finished (self);
}

void
dhf_appliance_update (DhfAppliance *self, const DhfDomainInfo *info)
{
  DhfDBusAppliance *iface = DHF_DBUS_APPLIANCE (self);
  gboolean changed = self->state != info->state
                     || g_strcmp0 (dhf_dbus_appliance_get_state_reason (iface), info->reason) != 0;

  dhf_dbus_appliance_set_name (iface, info->name);
  dhf_dbus_appliance_set_uuid (iface, info->uuid);
  dhf_dbus_appliance_set_autostart (iface, info->autostart);
  dhf_dbus_appliance_set_memory (iface, info->memory);
  dhf_dbus_appliance_set_vcpus (iface, info->vcpus);
  update_metadata (self, info);
  self->state = info->state;
  dhf_dbus_appliance_set_state (iface, dhf_appliance_state_to_string (info->state));
  dhf_dbus_appliance_set_state_reason (iface, info->reason);
  /* PropertiesChanged goes out now, ahead of any method reply that
   * follows, instead of from a later idle. */
  g_dbus_interface_skeleton_flush (G_DBUS_INTERFACE_SKELETON (self));
  if (changed)
    {
      dhf_log_appliance (G_LOG_LEVEL_INFO, info->name, "%s: %s (%s)", info->name,
                         dhf_appliance_state_to_string (info->state), info->reason);
      g_signal_emit (self, signals[SIGNAL_STATE_CHANGED], 0);
    }
  if (self->state == DHF_APPLIANCE_STATE_SHUTOFF)
    finish_shutdown (self, NULL);
}

/* The domain is gone (undefined, or a transient domain stopped): a pending
 * Shutdown has reached its goal. */
void
dhf_appliance_vanished (DhfAppliance *self)
{
  finish_shutdown (self, NULL);
}

/* --- method plumbing -------------------------------------------------- */

/* One call in flight: authorize, act, refresh, answer. */
typedef struct
{
  DhfAppliance *self;
  GDBusMethodInvocation *invocation;
  DhfDomainOp op;
} Call;

static void
call_free (Call *call)
{
  g_clear_object (&call->self);
  g_clear_object (&call->invocation);
  g_free (call);
}

G_DEFINE_AUTOPTR_CLEANUP_FUNC (Call, call_free)

static Call *
call_new (DhfAppliance *self, GDBusMethodInvocation *invocation, DhfDomainOp op)
{
  Call *call = g_new0 (Call, 1);

  call->self = g_object_ref (self);
  call->invocation = invocation; /* the handler owns the invocation until it completes it */
  call->op = op;
  return call;
}

static void
call_fail (Call *call, GError *error)
{
  g_dbus_method_invocation_return_gerror (g_steal_pointer (&call->invocation), error);
}

/* Ends a call that held the appliance's operation slot. */
static void
call_fail_op (Call *call, GError *error)
{
  call_fail (call, error);
  op_finished (call->self);
}

static void
complete_call (Call *call)
{
  DhfDBusAppliance *iface = DHF_DBUS_APPLIANCE (call->self);
  GDBusMethodInvocation *invocation = g_steal_pointer (&call->invocation);

  switch (call->op)
    {
      case DHF_DOMAIN_OP_START:
        dhf_dbus_appliance_complete_start (iface, invocation);
        break;
      case DHF_DOMAIN_OP_SUSPEND:
        dhf_dbus_appliance_complete_pause (iface, invocation);
        break;
      case DHF_DOMAIN_OP_RESUME:
        dhf_dbus_appliance_complete_resume (iface, invocation);
        break;
      default:
        g_assert_not_reached ();
    }
  op_finished (call->self);
}

static void
on_refreshed (GObject *source, GAsyncResult *result, gpointer user_data)
{
  g_autoptr (Call) call = user_data;
  g_autoptr (GError) error = NULL;

  /* The operation itself succeeded; a failed refresh only means the
   * properties catch up with the next event. */
  if (!dhf_hypervisor_refresh_finish (DHF_HYPERVISOR (source), result, &error))
    g_debug ("refresh after %u failed: %s", call->op, error->message);
  complete_call (call);
}

static void
on_op_done (GObject *source, GAsyncResult *result, gpointer user_data)
{
  g_autoptr (Call) call = user_data;
  g_autoptr (GError) error = NULL;
  Call *owned;

  if (!dhf_hypervisor_domain_op_finish (DHF_HYPERVISOR (source), result, &error))
    {
      call_fail_op (call, error);
      return;
    }
  /* Answer only once D-Bus shows the new state, so that a caller reading
   * State after the reply sees the result of its own call. */
  owned = g_steal_pointer (&call);
  dhf_hypervisor_refresh_async (owned->self->hypervisor, owned->self->uuid, on_refreshed, owned);
}

static gboolean
check_state_for_op (DhfAppliance *self, DhfDomainOp op, GError **error)
{
  const gchar *name = dhf_dbus_appliance_get_name (DHF_DBUS_APPLIANCE (self));
  DhfApplianceState state = self->state;
  gboolean ok = TRUE;
  const gchar *why = NULL;

  switch (op)
    {
      case DHF_DOMAIN_OP_START:
        ok = state == DHF_APPLIANCE_STATE_SHUTOFF || state == DHF_APPLIANCE_STATE_CRASHED;
        why = "is not shut off";
        break;
      case DHF_DOMAIN_OP_SHUTDOWN:
        ok = state != DHF_APPLIANCE_STATE_SHUTOFF;
        why = "is not running";
        break;
      case DHF_DOMAIN_OP_SUSPEND:
        ok = state == DHF_APPLIANCE_STATE_RUNNING || state == DHF_APPLIANCE_STATE_BLOCKED;
        why = "is not running";
        break;
      case DHF_DOMAIN_OP_RESUME:
        ok = state == DHF_APPLIANCE_STATE_PAUSED;
        why = "is not paused";
        break;
      default:
        break;
    }
  if (!ok)
    g_set_error (error, DHF_ERROR, DHF_ERROR_INVALID_STATE, "appliance '%s' %s (it is %s)", name,
                 why, dhf_appliance_state_to_string (state));
  return ok;
}

static void
run_simple_op (gpointer user_data)
{
  g_autoptr (Call) call = user_data;
  g_autoptr (GError) error = NULL;
  DhfAppliance *self = call->self;
  DhfDomainOp op;

  if (!check_state_for_op (self, call->op, &error))
    {
      call_fail_op (call, error);
      return;
    }
  op = call->op;
  dhf_hypervisor_domain_op_async (self->hypervisor, self->uuid, op, NULL, on_op_done,
                                  g_steal_pointer (&call));
}

static void
on_authorized (GObject *source, GAsyncResult *result, gpointer user_data)
{
  g_autoptr (Call) call = user_data;
  g_autoptr (GError) error = NULL;
  Call *owned;

  if (!dhf_authority_check_finish (DHF_AUTHORITY (source), result, &error))
    {
      call_fail (call, error);
      return;
    }
  owned = g_steal_pointer (&call);
  enqueue_op (owned->self, run_simple_op, owned);
}

static gboolean
handle_simple_op (DhfAppliance *self, GDBusMethodInvocation *invocation, DhfDomainOp op,
                  const gchar *action_id)
{
  dhf_authority_check_async (self->authority, invocation, action_id, NULL, on_authorized,
                             call_new (self, invocation, op));
  return G_DBUS_METHOD_INVOCATION_HANDLED;
}

static gboolean
handle_start (DhfDBusAppliance *iface, GDBusMethodInvocation *invocation)
{
  return handle_simple_op (DHF_APPLIANCE (iface), invocation, DHF_DOMAIN_OP_START,
                           DHF_ACTION_START);
}

static gboolean
handle_pause (DhfDBusAppliance *iface, GDBusMethodInvocation *invocation)
{
  return handle_simple_op (DHF_APPLIANCE (iface), invocation, DHF_DOMAIN_OP_SUSPEND,
                           DHF_ACTION_PAUSE);
}

static gboolean
handle_resume (DhfDBusAppliance *iface, GDBusMethodInvocation *invocation)
{
  return handle_simple_op (DHF_APPLIANCE (iface), invocation, DHF_DOMAIN_OP_RESUME,
                           DHF_ACTION_PAUSE);
}

/* --- Shutdown: graceful, then forced ---------------------------------- */

/* Longest graceful period a caller may ask for: one day, as in dhfd.conf. */
#define MAX_SHUTDOWN_TIMEOUT_MS (24u * 3600u * 1000u)

/* What a late callback needs to find out whether its Shutdown is still
 * the pending one. */
typedef struct
{
  DhfAppliance *self;
  guint64 serial;
} ShutdownRef;

static ShutdownRef *
shutdown_ref_new (DhfAppliance *self)
{
  ShutdownRef *ref = g_new0 (ShutdownRef, 1);

  ref->self = g_object_ref (self);
  ref->serial = self->shutdown != NULL ? self->shutdown->serial : 0;
  return ref;
}

static void
shutdown_ref_free (ShutdownRef *ref)
{
  g_object_unref (ref->self);
  g_free (ref);
}

G_DEFINE_AUTOPTR_CLEANUP_FUNC (ShutdownRef, shutdown_ref_free)

static gboolean
shutdown_ref_current (ShutdownRef *ref)
{
  return ref->self->shutdown != NULL && ref->self->shutdown->serial == ref->serial;
}

static void
on_forced_refreshed (GObject *source, GAsyncResult *result, gpointer user_data)
{
  g_autoptr (ShutdownRef) ref = user_data;
  g_autoptr (GError) error = NULL;

  /* The refresh answered the call if it saw the domain off or gone. */
  if (!shutdown_ref_current (ref))
    return;
  if (!dhf_hypervisor_refresh_finish (DHF_HYPERVISOR (source), result, &error))
    {
      finish_shutdown (ref->self, error);
      return;
    }
  g_set_error (&error, DHF_ERROR, DHF_ERROR_FAILED, "appliance '%s' was forced off but is %s again",
               dhf_dbus_appliance_get_name (DHF_DBUS_APPLIANCE (ref->self)),
               dhf_appliance_state_to_string (ref->self->state));
  finish_shutdown (ref->self, error);
}

static void
on_destroy_done (GObject *source, GAsyncResult *result, gpointer user_data)
{
  g_autoptr (ShutdownRef) ref = user_data;
  g_autoptr (GError) error = NULL;
  DhfAppliance *self = ref->self;

  if (!shutdown_ref_current (ref))
    return;
  /* "Not running" or "gone" means the guest got there first. */
  if (!dhf_hypervisor_domain_op_finish (DHF_HYPERVISOR (source), result, &error)
      && !g_error_matches (error, DHF_ERROR, DHF_ERROR_INVALID_STATE)
      && !g_error_matches (error, DHF_ERROR, DHF_ERROR_NOT_FOUND))
    {
      finish_shutdown (self, error);
      return;
    }
  dhf_hypervisor_refresh_async (self->hypervisor, self->uuid, on_forced_refreshed,
                                g_steal_pointer (&ref));
}

static void
force_off (DhfAppliance *self)
{
  self->shutdown->forced = TRUE;
  dhf_hypervisor_domain_op_async (self->hypervisor, self->uuid, DHF_DOMAIN_OP_DESTROY, NULL,
                                  on_destroy_done, shutdown_ref_new (self));
}

static gboolean
on_shutdown_timeout (gpointer user_data)
{
  DhfAppliance *self = user_data;
  const gchar *name = dhf_dbus_appliance_get_name (DHF_DBUS_APPLIANCE (self));

  self->shutdown->timeout_id = 0;
  dhf_log_appliance (G_LOG_LEVEL_MESSAGE, name, "%s did not shut down in time; forcing it off",
                     name);
  force_off (self);
  return G_SOURCE_REMOVE;
}

static void
on_shutdown_requested (GObject *source, GAsyncResult *result, gpointer user_data)
{
  g_autoptr (ShutdownRef) ref = user_data;
  g_autoptr (GError) error = NULL;
  DhfAppliance *self = ref->self;

  if (!shutdown_ref_current (ref))
    return; /* already off */
  if (!dhf_hypervisor_domain_op_finish (DHF_HYPERVISOR (source), result, &error))
    {
      finish_shutdown (self, error);
      return;
    }
  self->shutdown->timeout_id
      = g_timeout_add (self->shutdown->timeout_ms, on_shutdown_timeout, self);
  /* Drivers that stop at once may not send an event. */
  dhf_hypervisor_refresh_async (self->hypervisor, self->uuid, NULL, NULL);
}

static void
run_shutdown (gpointer user_data)
{
  ShutdownWaiter *waiter = user_data;
  g_autoptr (DhfAppliance) self = waiter->self; /* the reference handle_shutdown took */
  g_autoptr (GError) error = NULL;

  if (!check_state_for_op (self, DHF_DOMAIN_OP_SHUTDOWN, &error))
    {
      g_dbus_method_invocation_return_gerror (g_steal_pointer (&waiter->invocation), error);
      shutdown_waiter_free (waiter);
      op_finished (self);
      return;
    }
  waiter->serial = ++self->shutdown_serial;
  self->shutdown = waiter;
  switch (self->state)
    {
      case DHF_APPLIANCE_STATE_RUNNING:
      case DHF_APPLIANCE_STATE_BLOCKED:
      case DHF_APPLIANCE_STATE_SHUTTING_DOWN:
        dhf_hypervisor_domain_op_async (self->hypervisor, self->uuid, DHF_DOMAIN_OP_SHUTDOWN, NULL,
                                        on_shutdown_requested, shutdown_ref_new (self));
        break;
      default:
        /* A paused, suspended or crashed guest cannot act on an ACPI
         * request: it is forced off at once. */
        force_off (self);
        break;
    }
}

static void
on_shutdown_authorized (GObject *source, GAsyncResult *result, gpointer user_data)
{
  ShutdownWaiter *waiter = user_data;
  g_autoptr (GError) error = NULL;

  if (!dhf_authority_check_finish (DHF_AUTHORITY (source), result, &error))
    {
      g_dbus_method_invocation_return_gerror (g_steal_pointer (&waiter->invocation), error);
      g_object_unref (waiter->self);
      shutdown_waiter_free (waiter);
      return;
    }
  enqueue_op (waiter->self, run_shutdown, waiter);
}

static gboolean
handle_shutdown (DhfDBusAppliance *iface, GDBusMethodInvocation *invocation, guint timeout_ms)
{
  DhfAppliance *self = DHF_APPLIANCE (iface);
  ShutdownWaiter *waiter;

  if (timeout_ms > MAX_SHUTDOWN_TIMEOUT_MS)
    {
      g_dbus_method_invocation_return_error (invocation, DHF_ERROR, DHF_ERROR_INVALID_ARGS,
                                             "timeout_ms must be at most %u (one day)",
                                             MAX_SHUTDOWN_TIMEOUT_MS);
      return G_DBUS_METHOD_INVOCATION_HANDLED;
    }
  waiter = g_new0 (ShutdownWaiter, 1);
  waiter->self = g_object_ref (self); /* released by run_shutdown */
  waiter->invocation = invocation;
  waiter->timeout_ms = timeout_ms != 0 ? timeout_ms : self->default_shutdown_timeout_s * 1000;
  dhf_authority_check_async (self->authority, invocation, DHF_ACTION_STOP, NULL,
                             on_shutdown_authorized, waiter);
  return G_DBUS_METHOD_INVOCATION_HANDLED;
}

/* --- exclusive use, for callers outside this file ---------------------- */

typedef struct
{
  DhfAppliance *self;
  DhfApplianceExclusiveFunc func;
  gpointer user_data;
} Exclusive;

static void
run_exclusive (gpointer data)
{
  g_autofree Exclusive *exclusive = data;
  g_autoptr (DhfAppliance) self = exclusive->self;

  exclusive->func (self, exclusive->user_data);
}

/* Runs func once every lifecycle call queued before it has finished; the
 * appliance takes no other call until dhf_appliance_release(). Removal
 * uses this so that it never races a Start. */
void
dhf_appliance_run_exclusive (DhfAppliance *self, DhfApplianceExclusiveFunc func, gpointer user_data)
{
  Exclusive *exclusive = g_new0 (Exclusive, 1);

  exclusive->self = g_object_ref (self);
  exclusive->func = func;
  exclusive->user_data = user_data;
  enqueue_op (self, run_exclusive, exclusive);
}

void
dhf_appliance_release (DhfAppliance *self)
{
  op_finished (self);
}

/* --- GObject ---------------------------------------------------------- */

DhfAppliance *
dhf_appliance_new (DhfHypervisor *hypervisor, DhfAuthority *authority,
                   guint default_shutdown_timeout_s, const DhfDomainInfo *info)
{
  DhfAppliance *self = g_object_new (DHF_TYPE_APPLIANCE, NULL);

  self->hypervisor = g_object_ref (hypervisor);
  self->authority = g_object_ref (authority);
  self->default_shutdown_timeout_s = default_shutdown_timeout_s;
  self->uuid = g_strdup (info->uuid);
  self->object_path = dhf_appliance_path_for_name (info->name);
  self->state = info->state;
  dhf_appliance_update (self, info);
  return self;
}

static void
dhf_appliance_init (DhfAppliance *self)
{
  g_signal_connect (self, "handle-start", G_CALLBACK (handle_start), NULL);
  g_signal_connect (self, "handle-shutdown", G_CALLBACK (handle_shutdown), NULL);
  g_signal_connect (self, "handle-pause", G_CALLBACK (handle_pause), NULL);
  g_signal_connect (self, "handle-resume", G_CALLBACK (handle_resume), NULL);
}

static void
dhf_appliance_dispose (GObject *object)
{
  DhfAppliance *self = DHF_APPLIANCE (object);

  /* A pending Shutdown holds no reference (its timer and callbacks do), so
   * it can still be here when dhfd goes away. */
  if (self->shutdown != NULL)
    {
      g_autoptr (GError) error
          = g_error_new (DHF_ERROR, DHF_ERROR_CANCELLED, "dhfd is shutting down");

      finish_shutdown (self, error);
    }
  /* Queued calls hold a reference to the appliance, so the queue is empty
   * by the time it is disposed. */
  g_warn_if_fail (g_queue_is_empty (&self->pending));
  g_clear_object (&self->hypervisor);
  g_clear_object (&self->authority);
  G_OBJECT_CLASS (dhf_appliance_parent_class)->dispose (object);
}

static void
dhf_appliance_finalize (GObject *object)
{
  DhfAppliance *self = DHF_APPLIANCE (object);

  g_free (self->uuid);
  g_free (self->object_path);
  g_free (self->raw_metadata);
  g_clear_pointer (&self->metadata, dhf_domain_metadata_free);
  G_OBJECT_CLASS (dhf_appliance_parent_class)->finalize (object);
}

static void
dhf_appliance_class_init (DhfApplianceClass *klass)
{
  GObjectClass *object_class = G_OBJECT_CLASS (klass);

  object_class->dispose = dhf_appliance_dispose;
  object_class->finalize = dhf_appliance_finalize;

  /* state-changed: State or StateReason changed */
  signals[SIGNAL_STATE_CHANGED]
      = g_signal_new ("state-changed", G_TYPE_FROM_CLASS (klass), G_SIGNAL_RUN_LAST, 0, NULL, NULL,
                      NULL, G_TYPE_NONE, 0);
}
