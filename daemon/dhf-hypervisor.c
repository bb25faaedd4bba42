/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include "config.h"

#include <string.h>

#include <libvirt/libvirt.h>
#include <libvirt/virterror.h>
#include <libvirt-glib/libvirt-glib.h>

#include "dhf-domain-xml.h"
#include "dhf-hypervisor-private.h"
#include "dhf-hypervisor-error.h"

G_DEFINE_AUTOPTR_CLEANUP_FUNC (virDomain, virDomainFree)

#define RECONNECT_MIN_MS     250
#define RECONNECT_MAX_MS     5000
#define KEEPALIVE_INTERVAL_S 5
#define KEEPALIVE_COUNT      3

/* A connection with the callbacks dhfd registered on it; they are removed
 * before the connection is let go, since each holds a reference on it. */
typedef struct
{
  virConnectPtr conn;
  int event_ids[2];
  gboolean close_callback;
} Link;

static void on_connection_closed (virConnectPtr conn, int reason, void *opaque);

static void
link_close (Link *link)
{
  if (link == NULL)
    return;
  if (link->close_callback)
    virConnectUnregisterCloseCallback (link->conn, on_connection_closed);
  for (guint i = 0; i < G_N_ELEMENTS (link->event_ids); i++)
    {
      if (link->event_ids[i] >= 0)
        virConnectDomainEventDeregisterAny (link->conn, link->event_ids[i]);
    }
  virResetLastError ();
  virConnectClose (link->conn);
  g_free (link);
}

struct _DhfHypervisor
{
  GObject parent_instance;

  gchar *uri;
  GMainContext *context;

  /* conn is written by the serial worker (on connect) and by the main
   * thread (on close); readers take their own reference under the lock. */
  GMutex lock;
  Link *link; /* the live connection, NULL while disconnected */

  gboolean connected; /* the main thread's view, what D-Bus shows */
  gchar *default_domain_type;
  guint reconnect_id;
  guint reconnect_delay_ms;
  gboolean connect_queued;

  /* Connecting, listing and refreshing run one at a time, in order, so
   * that a stale snapshot never overwrites a newer one. */
  GThreadPool *serial;
};

G_DEFINE_TYPE (DhfHypervisor, dhf_hypervisor, G_TYPE_OBJECT)

enum
{
  PROP_0,
  PROP_CONNECTED,
  PROP_URI,
  N_PROPS
};

enum
{
  SIGNAL_SYNCED,
  SIGNAL_DOMAIN_CHANGED,
  SIGNAL_DOMAIN_REMOVED,
  SIGNAL_CONNECT_FAILED,
  N_SIGNALS
};

static GParamSpec *props[N_PROPS];
static guint signals[N_SIGNALS];

typedef enum
{
  JOB_CONNECT,
  JOB_REFRESH,
} JobKind;

typedef struct
{
  JobKind kind;
  DhfHypervisor *self; /* strong; handed to the main-thread completion */
  gchar *uuid;
  GTask *task; /* NULL for event-driven refreshes */

  /* results */
  GError *error;
  GPtrArray *infos;    /* JOB_CONNECT: every domain */
  DhfDomainInfo *info; /* JOB_REFRESH: NULL when the domain is gone */
  virConnectPtr conn;  /* JOB_CONNECT: the connection made (not owned) */
  gchar *domain_type;
} Job;

static void
job_free (Job *job)
{
  g_clear_object (&job->self);
  g_free (job->uuid);
  g_clear_object (&job->task);
  g_clear_error (&job->error);
  g_clear_pointer (&job->infos, g_ptr_array_unref);
  g_clear_pointer (&job->info, dhf_domain_info_free);
  g_free (job->domain_type);
  g_free (job);
}

G_DEFINE_AUTOPTR_CLEANUP_FUNC (Job, job_free)

static void schedule_reconnect (DhfHypervisor *self);
static void queue_job (DhfHypervisor *self, JobKind kind, const gchar *uuid, GTask *task);

/* --- domain snapshots ------------------------------------------------- */

DhfDomainInfo *
dhf_domain_info_copy (const DhfDomainInfo *info)
{
  DhfDomainInfo *copy = g_memdup2 (info, sizeof *info);

  copy->uuid = g_strdup (info->uuid);
  copy->name = g_strdup (info->name);
  copy->reason = g_strdup (info->reason);
  copy->metadata = g_strdup (info->metadata);
  copy->xdm_channel_path = g_strdup (info->xdm_channel_path);
  return copy;
}

void
dhf_domain_info_free (DhfDomainInfo *info)
{
  if (info == NULL)
    return;
  g_free (info->uuid);
  g_free (info->name);
  g_free (info->reason);
  g_free (info->metadata);
  g_free (info->xdm_channel_path);
  g_free (info);
}

static const gchar *
reason_to_string (int state, int reason)
{
  switch (state)
    {
      case VIR_DOMAIN_RUNNING:
        switch (reason)
          {
            case VIR_DOMAIN_RUNNING_BOOTED:
              return "booted";
            case VIR_DOMAIN_RUNNING_MIGRATED:
              return "migrated";
            case VIR_DOMAIN_RUNNING_RESTORED:
              return "restored";
            case VIR_DOMAIN_RUNNING_FROM_SNAPSHOT:
              return "from-snapshot";
            case VIR_DOMAIN_RUNNING_UNPAUSED:
              return "unpaused";
            case VIR_DOMAIN_RUNNING_WAKEUP:
              return "wakeup";
            case VIR_DOMAIN_RUNNING_CRASHED:
              return "crashed";
            default:
              return "unknown";
          }
      case VIR_DOMAIN_PAUSED:
        switch (reason)
          {
            case VIR_DOMAIN_PAUSED_USER:
              return "user";
            case VIR_DOMAIN_PAUSED_IOERROR:
              return "io-error";
            case VIR_DOMAIN_PAUSED_WATCHDOG:
              return "watchdog";
            case VIR_DOMAIN_PAUSED_SHUTTING_DOWN:
              return "shutting-down";
            case VIR_DOMAIN_PAUSED_CRASHED:
              return "crashed";
            case VIR_DOMAIN_PAUSED_STARTING_UP:
              return "starting-up";
            case VIR_DOMAIN_PAUSED_MIGRATION:
              return "migration";
            case VIR_DOMAIN_PAUSED_SAVE:
              return "save";
            case VIR_DOMAIN_PAUSED_SNAPSHOT:
              return "snapshot";
            default:
              return "unknown";
          }
      case VIR_DOMAIN_SHUTDOWN:
        return reason == VIR_DOMAIN_SHUTDOWN_USER ? "user" : "unknown";
      case VIR_DOMAIN_SHUTOFF:
        switch (reason)
          {
            case VIR_DOMAIN_SHUTOFF_SHUTDOWN:
              return "shutdown";
            case VIR_DOMAIN_SHUTOFF_DESTROYED:
              return "destroyed";
            case VIR_DOMAIN_SHUTOFF_CRASHED:
              return "crashed";
            case VIR_DOMAIN_SHUTOFF_MIGRATED:
              return "migrated";
            case VIR_DOMAIN_SHUTOFF_SAVED:
              return "saved";
            case VIR_DOMAIN_SHUTOFF_FAILED:
              return "failed";
            case VIR_DOMAIN_SHUTOFF_FROM_SNAPSHOT:
              return "from-snapshot";
            case VIR_DOMAIN_SHUTOFF_DAEMON:
              return "daemon";
            default:
              return "unknown";
          }
      case VIR_DOMAIN_CRASHED:
        return "crashed";
      case VIR_DOMAIN_PMSUSPENDED:
        return "guest";
      default:
        return "unknown";
    }
}

static DhfApplianceState
state_from_libvirt (int state)
{
  switch (state)
    {
      case VIR_DOMAIN_RUNNING:
        return DHF_APPLIANCE_STATE_RUNNING;
      case VIR_DOMAIN_BLOCKED:
        return DHF_APPLIANCE_STATE_BLOCKED;
      case VIR_DOMAIN_PAUSED:
        return DHF_APPLIANCE_STATE_PAUSED;
      case VIR_DOMAIN_SHUTDOWN:
        return DHF_APPLIANCE_STATE_SHUTTING_DOWN;
      case VIR_DOMAIN_SHUTOFF:
        return DHF_APPLIANCE_STATE_SHUTOFF;
      case VIR_DOMAIN_CRASHED:
        return DHF_APPLIANCE_STATE_CRASHED;
      case VIR_DOMAIN_PMSUSPENDED:
        return DHF_APPLIANCE_STATE_SUSPENDED;
      default:
        return DHF_APPLIANCE_STATE_UNKNOWN;
    }
}

/* The installed (persistent) definition carries what dhf installed; a
 * transient domain only has its live one. */
static gchar *
read_metadata (virDomainPtr dom, gboolean persistent)
{
  unsigned int flags = persistent ? VIR_DOMAIN_AFFECT_CONFIG : VIR_DOMAIN_AFFECT_CURRENT;
  char *xml = virDomainGetMetadata (dom, VIR_DOMAIN_METADATA_ELEMENT, DHF_METADATA_NS_URI, flags);
  gchar *copy;

  if (xml == NULL && persistent)
    xml = virDomainGetMetadata (dom, VIR_DOMAIN_METADATA_ELEMENT, DHF_METADATA_NS_URI,
                                VIR_DOMAIN_AFFECT_CURRENT);
  if (xml == NULL)
    {
      virResetLastError ();
      return NULL;
    }
  copy = g_strdup (xml);
  free (xml);
  return copy;
}

/* Worker thread. Where dhfd reaches the running domain over XDM: only the
 * live XML has the channel's socket path and an automatic vsock CID. A
 * device dhfd cannot use safely is left out (and said why, once per
 * refresh, in the debug log); the domain itself is fine. When the XML
 * cannot be read, the endpoints stay unknown: the next refresh tells. */
static void
read_xdm_endpoints (virDomainPtr dom, DhfDomainInfo *info)
{
  g_autoptr (GError) error = NULL;
  g_autofree gchar *xml = NULL;
  char *raw = virDomainGetXMLDesc (dom, 0);

  if (raw == NULL)
    {
      g_debug ("%s: cannot read the live XML: %s", info->name, virGetLastErrorMessage ());
      virResetLastError ();
      return;
    }
  info->endpoints_known = TRUE;
  xml = g_strdup (raw);
  free (raw);
  if (!dhf_domain_xml_get_xdm_channel (xml, &info->xdm_channel_path, &error))
    {
      g_debug ("%s: no XDM channel: %s", info->name, error->message);
      g_clear_error (&error);
    }
  if (!dhf_domain_xml_get_vsock_cid (xml, &info->vsock_cid, &error))
    g_debug ("%s: no XDM vsock: %s", info->name, error->message);
}

/* Worker thread. */
static DhfDomainInfo *
domain_info_read (virDomainPtr dom, GError **error)
{
  g_autoptr (DhfDomainInfo) info = g_new0 (DhfDomainInfo, 1);
  char uuid[VIR_UUID_STRING_BUFLEN];
  const char *name;
  int state = VIR_DOMAIN_NOSTATE, reason = 0, autostart = 0, persistent, active;
  virDomainInfo vinfo;

  if (virDomainGetUUIDString (dom, uuid) < 0 || (name = virDomainGetName (dom)) == NULL)
    {
      dhf_hypervisor_set_error (error, "reading domain identity");
      return NULL;
    }
  info->uuid = g_strdup (uuid);
  info->name = g_strdup (name);
  if (virDomainGetState (dom, &state, &reason, 0) < 0 || virDomainGetInfo (dom, &vinfo) < 0)
    {
      dhf_hypervisor_set_error (error, name);
      return NULL;
    }
  persistent = virDomainIsPersistent (dom);
  active = virDomainIsActive (dom);
  if (persistent < 0 || active < 0)
    {
      dhf_hypervisor_set_error (error, name);
      return NULL;
    }
  if (persistent && virDomainGetAutostart (dom, &autostart) < 0)
    {
      virResetLastError ();
      autostart = 0;
    }
  info->state = state_from_libvirt (state);
  info->reason = g_strdup (reason_to_string (state, reason));
  info->active = active == 1;
  info->persistent = persistent == 1;
  info->autostart = autostart != 0;
  info->memory = (guint64) vinfo.maxMem * 1024;
  info->vcpus = vinfo.nrVirtCpu;
  info->metadata = read_metadata (dom, info->persistent);
  if (info->active)
    read_xdm_endpoints (dom, info);
  return g_steal_pointer (&info);
}

/* --- connection ------------------------------------------------------- */

static virConnectPtr
take_conn (DhfHypervisor *self)
{
  virConnectPtr conn;

  g_mutex_lock (&self->lock);
  conn = self->link != NULL ? self->link->conn : NULL;
  if (conn != NULL)
    virConnectRef (conn);
  g_mutex_unlock (&self->lock);
  return conn;
}

static gboolean
unavailable_error (GError **error, DhfHypervisor *self)
{
  g_set_error (error, DHF_ERROR, DHF_ERROR_HYPERVISOR_UNAVAILABLE,
               "not connected to the hypervisor at %s; dhfd is reconnecting", self->uri);
  return FALSE;
}

virConnectPtr
dhf_hypervisor_dup_connection (DhfHypervisor *self, GError **error)
{
  virConnectPtr conn = take_conn (self);

  if (conn == NULL)
    unavailable_error (error, self);
  return conn;
}

static int
on_lifecycle_event (virConnectPtr conn, virDomainPtr dom, int event, int detail, void *opaque)
{
  DhfHypervisor *self = opaque;
  char uuid[VIR_UUID_STRING_BUFLEN];

  if (virDomainGetUUIDString (dom, uuid) == 0)
    {
      g_debug ("libvirt event %d/%d for %s", event, detail, virDomainGetName (dom));
      queue_job (self, JOB_REFRESH, uuid, NULL);
    }
  return 0;
}

static void
on_metadata_event (virConnectPtr conn, virDomainPtr dom, int type, const char *nsuri, void *opaque)
{
  DhfHypervisor *self = opaque;
  char uuid[VIR_UUID_STRING_BUFLEN];

  if (virDomainGetUUIDString (dom, uuid) == 0)
    queue_job (self, JOB_REFRESH, uuid, NULL);
}

static gboolean
close_link_idle (gpointer data)
{
  link_close (data);
  return G_SOURCE_REMOVE;
}

static void
set_connected (DhfHypervisor *self, gboolean connected)
{
  if (self->connected == connected)
    return;
  self->connected = connected;
  g_object_notify_by_pspec (G_OBJECT (self), props[PROP_CONNECTED]);
}

/* Runs on the main context (libvirt's event loop is the GLib one). */
static void
on_connection_closed (virConnectPtr conn, int reason, void *opaque)
{
  DhfHypervisor *self = opaque;
  Link *old = NULL;

  g_mutex_lock (&self->lock);
  if (self->link != NULL && self->link->conn == conn)
    old = g_steal_pointer (&self->link);
  g_mutex_unlock (&self->lock);
  /* A connection that has been replaced already is no news. */
  if (old == NULL)
    return;
  g_warning ("lost the connection to %s (reason %d); reconnecting", self->uri, reason);
  /* libvirt still holds the connection while this callback runs. */
  g_idle_add (close_link_idle, old);
  set_connected (self, FALSE);
  schedule_reconnect (self);
}

static gchar *
detect_domain_type (virConnectPtr conn)
{
  const char *type = virConnectGetType (conn);
  g_autofree gchar *caps = NULL;
  char *raw;

  if (type == NULL)
    return g_strdup ("qemu");
  if (g_ascii_strcasecmp (type, "Test") == 0)
    return g_strdup ("test");
  if (g_ascii_strcasecmp (type, "Xen") == 0 || g_ascii_strcasecmp (type, "libxl") == 0)
    return g_strdup ("xen");
  /* KVM is usable only when QEMU itself reports it for this host. */
  raw = virConnectGetDomainCapabilities (conn, NULL, "x86_64", NULL, "kvm", 0);
  if (raw == NULL)
    {
      virResetLastError ();
      return g_strdup ("qemu");
    }
  caps = g_strdup (raw);
  free (raw);
  return g_strdup (strstr (caps, "<domain>kvm</domain>") != NULL ? "kvm" : "qemu");
}

/* Worker thread: open, subscribe, then list, so that no event between the
 * listing and the subscription can be missed. */
static void
job_connect (Job *job)
{
  DhfHypervisor *self = job->self;
  g_autofree Link *link = g_new0 (Link, 1);
  virDomainPtr *domains = NULL;
  Link *old;
  int n;

  link->event_ids[0] = link->event_ids[1] = -1;
  link->conn = virConnectOpen (self->uri);
  if (link->conn == NULL)
    {
      dhf_hypervisor_set_error (&job->error, self->uri);
      return;
    }
  /* Remote connections notice a vanished libvirtd within ~15 s even if no
   * socket error arrives; local drivers return 1 (unsupported), harmless. */
  if (virConnectSetKeepAlive (link->conn, KEEPALIVE_INTERVAL_S, KEEPALIVE_COUNT) < 0)
    virResetLastError ();
  link->close_callback
      = virConnectRegisterCloseCallback (link->conn, on_connection_closed, self, NULL) == 0;
  link->event_ids[0] = virConnectDomainEventRegisterAny (
      link->conn, NULL, VIR_DOMAIN_EVENT_ID_LIFECYCLE,
      VIR_DOMAIN_EVENT_CALLBACK (on_lifecycle_event), self, NULL);
  if (link->event_ids[0] < 0)
    {
      dhf_hypervisor_set_error (&job->error, "subscribing to domain events");
      link_close (g_steal_pointer (&link));
      return;
    }
  /* Optional: not every driver sends metadata events. */
  link->event_ids[1] = virConnectDomainEventRegisterAny (
      link->conn, NULL, VIR_DOMAIN_EVENT_ID_METADATA_CHANGE,
      VIR_DOMAIN_EVENT_CALLBACK (on_metadata_event), self, NULL);
  virResetLastError ();

  job->domain_type = detect_domain_type (link->conn);
  n = virConnectListAllDomains (link->conn, &domains, 0);
  if (n < 0)
    {
      dhf_hypervisor_set_error (&job->error, "listing domains");
      link_close (g_steal_pointer (&link));
      return;
    }
  job->infos = g_ptr_array_new_with_free_func ((GDestroyNotify) dhf_domain_info_free);
  for (int i = 0; i < n; i++)
    {
      g_autoptr (GError) local_error = NULL;
      DhfDomainInfo *info = domain_info_read (domains[i], &local_error);

      /* A domain undefined while we list is simply not there. */
      if (info != NULL)
        g_ptr_array_add (job->infos, info);
      else
        g_debug ("skipping a domain: %s", local_error->message);
      virDomainFree (domains[i]);
    }
  free (domains);

  job->conn = link->conn;
  g_mutex_lock (&self->lock);
  old = self->link;
  self->link = g_steal_pointer (&link);
  g_mutex_unlock (&self->lock);
  link_close (old);
}

static void
job_refresh (Job *job)
{
  virConnectPtr conn = take_conn (job->self);
  g_autoptr (virDomain) dom = NULL;

  if (conn == NULL)
    {
      unavailable_error (&job->error, job->self);
      return;
    }
  dom = virDomainLookupByUUIDString (conn, job->uuid);
  if (dom == NULL)
    {
      virErrorPtr err = virGetLastError ();

      /* Gone is an answer, not a failure. */
      if (err == NULL || err->code != VIR_ERR_NO_DOMAIN)
        dhf_hypervisor_set_error (&job->error, job->uuid);
      virResetLastError ();
    }
  else
    {
      job->info = domain_info_read (dom, &job->error);
    }
  virConnectClose (conn);
}

static gboolean
link_is_current (DhfHypervisor *self, virConnectPtr conn)
{
  gboolean current;

  g_mutex_lock (&self->lock);
  current = self->link != NULL && self->link->conn == conn;
  g_mutex_unlock (&self->lock);
  return current && virConnectIsAlive (conn) == 1;
}

static gboolean
reconnect_cb (gpointer data)
{
  DhfHypervisor *self = data;

  self->reconnect_id = 0;
  queue_job (self, JOB_CONNECT, NULL, NULL);
  return G_SOURCE_REMOVE;
}

static void
schedule_reconnect (DhfHypervisor *self)
{
  if (self->reconnect_id != 0 || self->connect_queued)
    return;
  self->reconnect_id = g_timeout_add (self->reconnect_delay_ms, reconnect_cb, self);
  self->reconnect_delay_ms = MIN (self->reconnect_delay_ms * 2, RECONNECT_MAX_MS);
}

/* Main thread: publish what a job found, in the order jobs ran. */
static gboolean
job_complete (gpointer data)
{
  g_autoptr (Job) job = data;
  DhfHypervisor *self = job->self;

  switch (job->kind)
    {
      case JOB_CONNECT:
        self->connect_queued = FALSE;
        if (job->error != NULL)
          {
            g_warning ("cannot connect to %s: %s", self->uri, job->error->message);
            g_signal_emit (self, signals[SIGNAL_CONNECT_FAILED], 0, job->error->message);
            schedule_reconnect (self);
            break;
          }
        /* The connection may have dropped between the worker and here; its
         * close callback then found a connect still queued and left the
         * retry to us. */
        if (!link_is_current (self, job->conn))
          {
            g_warning ("the new connection to %s closed at once; reconnecting", self->uri);
            schedule_reconnect (self);
            break;
          }
        g_message ("connected to %s (%u domains, new appliances are type %s)", self->uri,
                   job->infos->len, job->domain_type);
        self->reconnect_delay_ms = RECONNECT_MIN_MS;
        g_free (self->default_domain_type);
        self->default_domain_type = g_steal_pointer (&job->domain_type);
        g_signal_emit (self, signals[SIGNAL_SYNCED], 0, job->infos);
        set_connected (self, TRUE);
        break;
      case JOB_REFRESH:
        if (job->error != NULL)
          {
            g_debug ("refresh of %s failed: %s", job->uuid, job->error->message);
            break;
          }
        if (job->info != NULL)
          g_signal_emit (self, signals[SIGNAL_DOMAIN_CHANGED], 0, job->info);
        else
          g_signal_emit (self, signals[SIGNAL_DOMAIN_REMOVED], 0, job->uuid);
        break;
    }

  if (job->task != NULL)
    {
      if (job->error != NULL)
        g_task_return_error (job->task, g_steal_pointer (&job->error));
      else
        g_task_return_boolean (job->task, TRUE);
    }
  return G_SOURCE_REMOVE;
}

static void
serial_worker (gpointer data, gpointer user_data)
{
  Job *job = data;
  g_autoptr (GSource) source = g_idle_source_new ();

  if (job->kind == JOB_CONNECT)
    job_connect (job);
  else
    job_refresh (job);

  /* Always through the main context, never inline in this thread: idle
   * sources of one priority run in the order they were attached, which
   * keeps the jobs' results in order. */
  g_source_set_callback (source, job_complete, job, NULL);
  g_source_attach (source, job->self->context);
}

static void
queue_job (DhfHypervisor *self, JobKind kind, const gchar *uuid, GTask *task)
{
  Job *job = g_new0 (Job, 1);

  if (kind == JOB_CONNECT)
    self->connect_queued = TRUE;
  job->kind = kind;
  job->self = g_object_ref (self);
  job->uuid = g_strdup (uuid);
  job->task = task != NULL ? g_object_ref (task) : NULL;
  g_thread_pool_push (self->serial, job, NULL);
}

/* --- public API ------------------------------------------------------- */

DhfHypervisor *
dhf_hypervisor_new (const gchar *uri)
{
  static gsize event_loop_registered = 0;

  /* libvirt's events must run on the GLib main loop, and the event
   * implementation has to be in place before the first virConnectOpen. */
  if (g_once_init_enter (&event_loop_registered))
    {
      gvir_event_register ();
      dhf_hypervisor_silence_default_handler ();
      g_once_init_leave (&event_loop_registered, 1);
    }
  return g_object_new (DHF_TYPE_HYPERVISOR, "uri", uri, NULL);
}

void
dhf_hypervisor_start (DhfHypervisor *self)
{
  g_return_if_fail (DHF_IS_HYPERVISOR (self));

  queue_job (self, JOB_CONNECT, NULL, NULL);
}

const gchar *
dhf_hypervisor_get_uri (DhfHypervisor *self)
{
  return self->uri;
}

gboolean
dhf_hypervisor_is_connected (DhfHypervisor *self)
{
  return self->connected;
}

const gchar *
dhf_hypervisor_get_default_domain_type (DhfHypervisor *self)
{
  return self->default_domain_type;
}

void
dhf_hypervisor_refresh_async (DhfHypervisor *self, const gchar *uuid, GAsyncReadyCallback callback,
                              gpointer user_data)
{
  g_autoptr (GTask) task = g_task_new (self, NULL, callback, user_data);

  g_task_set_source_tag (task, dhf_hypervisor_refresh_async);
  queue_job (self, JOB_REFRESH, uuid, task);
}

gboolean
dhf_hypervisor_refresh_finish (DhfHypervisor *self, GAsyncResult *result, GError **error)
{
  return g_task_propagate_boolean (G_TASK (result), error);
}

typedef struct
{
  virConnectPtr conn;
  gchar *uuid;
  DhfDomainOp op;
  gchar *xml;
  gboolean autostart;
} OpData;

static void
op_data_free (OpData *data)
{
  if (data->conn != NULL)
    virConnectClose (data->conn);
  g_free (data->uuid);
  g_free (data->xml);
  g_free (data);
}

static const gchar *
op_to_string (DhfDomainOp op)
{
  static const gchar *const names[]
      = { "start", "shutdown", "destroy", "pause", "resume", "undefine" };

  return names[op];
}

static int
run_undefine (virDomainPtr dom)
{
  unsigned int flags = VIR_DOMAIN_UNDEFINE_MANAGED_SAVE | VIR_DOMAIN_UNDEFINE_SNAPSHOTS_METADATA
                       | VIR_DOMAIN_UNDEFINE_CHECKPOINTS_METADATA | VIR_DOMAIN_UNDEFINE_NVRAM;

  if (virDomainUndefineFlags (dom, flags) == 0)
    return 0;
  /* Drivers without snapshots or NVRAM reject those flags. */
  virResetLastError ();
  return virDomainUndefine (dom);
}

static void
domain_op_thread (GTask *task, gpointer source, gpointer task_data, GCancellable *cancellable)
{
  OpData *data = task_data;
  g_autoptr (virDomain) dom = virDomainLookupByUUIDString (data->conn, data->uuid);
  g_autoptr (GError) error = NULL;
  int rc = -1;

  if (dom == NULL)
    {
      dhf_hypervisor_set_error (&error, data->uuid);
      g_task_return_error (task, g_steal_pointer (&error));
      return;
    }
  switch (data->op)
    {
      case DHF_DOMAIN_OP_START:
        rc = virDomainCreate (dom);
        break;
      case DHF_DOMAIN_OP_SHUTDOWN:
        rc = virDomainShutdown (dom);
        break;
      case DHF_DOMAIN_OP_DESTROY:
        rc = virDomainDestroy (dom);
        break;
      case DHF_DOMAIN_OP_SUSPEND:
        rc = virDomainSuspend (dom);
        break;
      case DHF_DOMAIN_OP_RESUME:
        rc = virDomainResume (dom);
        break;
      case DHF_DOMAIN_OP_UNDEFINE:
        /* Undefining a running domain would leave it running, transient,
         * with its disk about to be deleted: refuse instead. */
        if (virDomainIsActive (dom) == 1)
          {
            g_task_return_new_error (task, DHF_ERROR, DHF_ERROR_INVALID_STATE,
                                     "domain '%s' is running; it must be stopped first",
                                     virDomainGetName (dom));
            return;
          }
        rc = run_undefine (dom);
        break;
    }
  if (rc < 0)
    {
      g_autofree gchar *what
          = g_strdup_printf ("%s %s", op_to_string (data->op), virDomainGetName (dom));

      dhf_hypervisor_set_error (&error, what);
      if (virConnectIsAlive (data->conn) != 1)
        error->code = DHF_ERROR_HYPERVISOR_UNAVAILABLE;
      g_task_return_error (task, g_steal_pointer (&error));
      return;
    }
  g_task_return_boolean (task, TRUE);
}

void
dhf_hypervisor_domain_op_async (DhfHypervisor *self, const gchar *uuid, DhfDomainOp op,
                                GCancellable *cancellable, GAsyncReadyCallback callback,
                                gpointer user_data)
{
  g_autoptr (GTask) task = g_task_new (self, cancellable, callback, user_data);
  g_autoptr (GError) error = NULL;
  OpData *data;

  g_task_set_source_tag (task, dhf_hypervisor_domain_op_async);
  data = g_new0 (OpData, 1);
  data->conn = take_conn (self);
  data->uuid = g_strdup (uuid);
  data->op = op;
  g_task_set_task_data (task, data, (GDestroyNotify) op_data_free);
  if (data->conn == NULL)
    {
      unavailable_error (&error, self);
      g_task_return_error (task, g_steal_pointer (&error));
      return;
    }
  g_task_run_in_thread (task, domain_op_thread);
}

gboolean
dhf_hypervisor_domain_op_finish (DhfHypervisor *self, GAsyncResult *result, GError **error)
{
  return g_task_propagate_boolean (G_TASK (result), error);
}

static void
define_thread (GTask *task, gpointer source, gpointer task_data, GCancellable *cancellable)
{
  OpData *data = task_data;
  g_autoptr (virDomain) dom = NULL;
  g_autoptr (GError) error = NULL;
  char uuid[VIR_UUID_STRING_BUFLEN];

  dom = virDomainDefineXMLFlags (data->conn, data->xml, VIR_DOMAIN_DEFINE_VALIDATE);
  if (dom == NULL)
    {
      virErrorPtr err = virGetLastError ();

      /* Not every driver validates against the schema. */
      if (err != NULL && (err->code == VIR_ERR_NO_SUPPORT || err->code == VIR_ERR_INVALID_ARG))
        {
          virResetLastError ();
          dom = virDomainDefineXML (data->conn, data->xml);
        }
    }
  if (dom == NULL)
    {
      dhf_hypervisor_set_error (&error, "defining the domain");
      g_task_return_error (task, g_steal_pointer (&error));
      return;
    }
  if (virDomainSetAutostart (dom, data->autostart ? 1 : 0) < 0)
    {
      /* The definition stands; only report what failed. */
      dhf_hypervisor_set_error (&error, "setting autostart");
      g_warning ("%s", error->message);
      g_clear_error (&error);
    }
  if (virDomainGetUUIDString (dom, uuid) < 0)
    {
      dhf_hypervisor_set_error (&error, "reading the new domain's UUID");
      g_task_return_error (task, g_steal_pointer (&error));
      return;
    }
  g_task_return_pointer (task, g_strdup (uuid), g_free);
}

void
dhf_hypervisor_define_async (DhfHypervisor *self, const gchar *xml, gboolean autostart,
                             GCancellable *cancellable, GAsyncReadyCallback callback,
                             gpointer user_data)
{
  g_autoptr (GTask) task = g_task_new (self, cancellable, callback, user_data);
  g_autoptr (GError) error = NULL;
  OpData *data;

  g_task_set_source_tag (task, dhf_hypervisor_define_async);
  data = g_new0 (OpData, 1);
  data->conn = take_conn (self);
  data->xml = g_strdup (xml);
  data->autostart = autostart;
  g_task_set_task_data (task, data, (GDestroyNotify) op_data_free);
  if (data->conn == NULL)
    {
      unavailable_error (&error, self);
      g_task_return_error (task, g_steal_pointer (&error));
      return;
    }
  g_task_run_in_thread (task, define_thread);
}

gchar *
dhf_hypervisor_define_finish (DhfHypervisor *self, GAsyncResult *result, GError **error)
{
  return g_task_propagate_pointer (G_TASK (result), error);
}

/* --- GObject ---------------------------------------------------------- */

static void
dhf_hypervisor_init (DhfHypervisor *self)
{
  g_mutex_init (&self->lock);
  self->context = g_main_context_ref_thread_default ();
  self->reconnect_delay_ms = RECONNECT_MIN_MS;
  self->serial = g_thread_pool_new (serial_worker, self, 1, FALSE, NULL);
}

static void
dhf_hypervisor_dispose (GObject *object)
{
  DhfHypervisor *self = DHF_HYPERVISOR (object);

  g_clear_handle_id (&self->reconnect_id, g_source_remove);
  if (self->serial != NULL)
    {
      g_thread_pool_free (self->serial, FALSE, TRUE);
      self->serial = NULL;
    }
  g_mutex_lock (&self->lock);
  g_clear_pointer (&self->link, link_close);
  g_mutex_unlock (&self->lock);
  G_OBJECT_CLASS (dhf_hypervisor_parent_class)->dispose (object);
}

static void
dhf_hypervisor_finalize (GObject *object)
{
  DhfHypervisor *self = DHF_HYPERVISOR (object);

  g_free (self->uri);
  g_free (self->default_domain_type);
  g_main_context_unref (self->context);
  g_mutex_clear (&self->lock);
  G_OBJECT_CLASS (dhf_hypervisor_parent_class)->finalize (object);
}

static void
dhf_hypervisor_get_property (GObject *object, guint prop_id, GValue *value, GParamSpec *pspec)
{
  DhfHypervisor *self = DHF_HYPERVISOR (object);

  switch (prop_id)
    {
      case PROP_CONNECTED:
        g_value_set_boolean (value, self->connected);
        break;
      default:
        G_OBJECT_WARN_INVALID_PROPERTY_ID (object, prop_id, pspec);
    }
}

static void
dhf_hypervisor_set_property (GObject *object, guint prop_id, const GValue *value, GParamSpec *pspec)
{
  DhfHypervisor *self = DHF_HYPERVISOR (object);

  switch (prop_id)
    {
      case PROP_URI:
        self->uri = g_value_dup_string (value);
        break;
      default:
        G_OBJECT_WARN_INVALID_PROPERTY_ID (object, prop_id, pspec);
    }
}

static void
dhf_hypervisor_class_init (DhfHypervisorClass *klass)
{
  GObjectClass *object_class = G_OBJECT_CLASS (klass);

  object_class->dispose = dhf_hypervisor_dispose;
  object_class->finalize = dhf_hypervisor_finalize;
  object_class->get_property = dhf_hypervisor_get_property;
  object_class->set_property = dhf_hypervisor_set_property;

  props[PROP_CONNECTED] = g_param_spec_boolean ("connected", NULL, NULL, FALSE,
                                                G_PARAM_READABLE | G_PARAM_STATIC_STRINGS);
  props[PROP_URI] = g_param_spec_string (
      "uri", NULL, NULL, NULL, G_PARAM_WRITABLE | G_PARAM_CONSTRUCT_ONLY | G_PARAM_STATIC_STRINGS);
  g_object_class_install_properties (object_class, N_PROPS, props);

  /* synced: (GPtrArray of DhfDomainInfo) every domain, after each (re)connect */
  signals[SIGNAL_SYNCED] = g_signal_new ("synced", G_TYPE_FROM_CLASS (klass), G_SIGNAL_RUN_LAST, 0,
                                         NULL, NULL, NULL, G_TYPE_NONE, 1, G_TYPE_PTR_ARRAY);
  /* domain-changed: (DhfDomainInfo) a fresh snapshot of one domain */
  signals[SIGNAL_DOMAIN_CHANGED]
      = g_signal_new ("domain-changed", G_TYPE_FROM_CLASS (klass), G_SIGNAL_RUN_LAST, 0, NULL, NULL,
                      NULL, G_TYPE_NONE, 1, G_TYPE_POINTER);
  /* domain-removed: (UUID) the domain no longer exists */
  signals[SIGNAL_DOMAIN_REMOVED]
      = g_signal_new ("domain-removed", G_TYPE_FROM_CLASS (klass), G_SIGNAL_RUN_LAST, 0, NULL, NULL,
                      NULL, G_TYPE_NONE, 1, G_TYPE_STRING);
  /* connect-failed: (message) a connection attempt failed; dhfd retries */
  signals[SIGNAL_CONNECT_FAILED]
      = g_signal_new ("connect-failed", G_TYPE_FROM_CLASS (klass), G_SIGNAL_RUN_LAST, 0, NULL, NULL,
                      NULL, G_TYPE_NONE, 1, G_TYPE_STRING);
}
