/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include "config.h"

#include <unistd.h>

#include <gio/gunixfdlist.h>

#include "dhf-display-service.h"

#include "dhf-dbus-call.h"
#include "dhf-hypervisor-devices.h"

struct _DhfDisplayService
{
  DhfDBusDisplaySkeleton parent_instance;

  DhfDeviceEngine *engine;
  DhfAuthority *authority;
  DhfHypervisor *hypervisor;
  DhfDisplayLookup lookup;
  gpointer lookup_data;
  DhfEngineDecideFunc decide; /* NULL: OpenDisplay and Screenshot ask no rule */
  gpointer decide_data;
  gboolean decider_gone; /* there was one: refuse rather than ask none */
  gsize screenshot_limit;
};

G_DEFINE_TYPE (DhfDisplayService, dhf_display_service, DHF_DBUS_TYPE_DISPLAY_SKELETON)

/* --- the focus ------------------------------------------------------------ */

void
dhf_display_service_update (DhfDisplayService *self)
{
  DhfDBusDisplay *iface = DHF_DBUS_DISPLAY (self);
  g_auto (GStrv) history = dhf_device_engine_dup_history (self->engine);
  g_auto (GStrv) cycle = dhf_device_engine_dup_cycle (self->engine);

  /* The skeleton announces only what changed. */
  dhf_dbus_display_set_focused (iface, dhf_device_engine_get_focused (self->engine));
  dhf_dbus_display_set_history (iface, (const gchar *const *) history);
  dhf_dbus_display_set_cycle (iface, (const gchar *const *) cycle);
}

static void
on_focus_changed (DhfDeviceEngine *engine, const gchar *focused, const gchar *previous,
                  DhfDisplayService *self)
{
  dhf_display_service_update (self);
  /* The properties first: a client that hears the signal (or the reply
   * of its Switch) and reads Focused sees the new focus. */
  g_dbus_interface_skeleton_flush (G_DBUS_INTERFACE_SKELETON (self));
  dhf_dbus_display_emit_focus_changed (DHF_DBUS_DISPLAY (self), focused, previous);
}

/* --- calls ------------------------------------------------------------------ */

typedef enum
{
  METHOD_SWITCH,
  METHOD_NEXT,
  METHOD_PREVIOUS,
  METHOD_OPEN_DISPLAY,
  METHOD_SCREENSHOT,
} Method;

typedef struct
{
  DhfDisplayService *self;
  GDBusMethodInvocation *invocation;
  Method method;
  gchar *target; /* Switch: the target, "@next" or "@previous"; else the appliance */
  guint max_width, max_height;
} Call;

static void
call_free (Call *call)
{
  g_clear_object (&call->self);
  g_clear_object (&call->invocation);
  g_free (call->target);
  g_free (call);
}

G_DEFINE_AUTOPTR_CLEANUP_FUNC (Call, call_free)

static const gchar *
action_of (Method method)
{
  switch (method)
    {
      case METHOD_SWITCH:
      case METHOD_NEXT:
      case METHOD_PREVIOUS:
        return DHF_ACTION_DISPLAY_SWITCH;
      case METHOD_OPEN_DISPLAY:
        return DHF_ACTION_DISPLAY_OPEN;
      case METHOD_SCREENSHOT:
      default:
        return DHF_ACTION_DISPLAY_SCREENSHOT;
    }
}

static void
on_switched (GObject *source, GAsyncResult *result, gpointer user_data)
{
  g_autoptr (Call) call = user_data;
  g_autoptr (GError) error = NULL;
  g_autofree gchar *focused = NULL;
  DhfDBusDisplay *iface = DHF_DBUS_DISPLAY (call->self);

  focused = dhf_device_engine_switch_finish (DHF_DEVICE_ENGINE (source), result, &error);
  if (focused == NULL)
    {
      dhf_dbus_call_return_error (call->invocation, error);
      return;
    }
  switch (call->method)
    {
      case METHOD_NEXT:
        dhf_dbus_display_complete_next (iface, call->invocation, focused);
        break;
      case METHOD_PREVIOUS:
        dhf_dbus_display_complete_previous (iface, call->invocation, focused);
        break;
      case METHOD_SWITCH:
      default:
        dhf_dbus_display_complete_switch (iface, call->invocation, focused);
        break;
    }
}

static void
on_graphics_opened (GObject *source, GAsyncResult *result, gpointer user_data)
{
  g_autoptr (Call) call = user_data;
  g_autoptr (GError) error = NULL;
  g_autoptr (GUnixFDList) fds = g_unix_fd_list_new ();
  gint fd = dhf_hypervisor_open_graphics_finish (DHF_HYPERVISOR (source), result, &error);
  gint index;

  if (fd < 0)
    {
      dhf_dbus_call_return_error (call->invocation, error);
      return;
    }
  /* The list keeps a duplicate; ours is closed either way. */
  index = g_unix_fd_list_append (fds, fd, &error);
  close (fd);
  if (index < 0)
    {
      dhf_dbus_call_return_error (call->invocation, error);
      return;
    }
  dhf_dbus_display_complete_open_display (DHF_DBUS_DISPLAY (call->self), call->invocation, fds,
                                          g_variant_new_handle (index));
}

static void
on_screenshot (GObject *source, GAsyncResult *result, gpointer user_data)
{
  g_autoptr (Call) call = user_data;
  g_autoptr (GError) error = NULL;
  g_autoptr (GBytes) png
      = dhf_hypervisor_screenshot_finish (DHF_HYPERVISOR (source), result, &error);
  gsize size;

  if (png == NULL)
    {
      dhf_dbus_call_return_error (call->invocation, error);
      return;
    }
  /* A reply over the bus's message limit would cost dhfd its connection
   * (and dhfd exits when it loses the bus): refused, with the way out. */
  size = g_bytes_get_size (png);
  if (size > call->self->screenshot_limit)
    {
      g_autofree gchar *have = g_format_size_full (size, G_FORMAT_SIZE_IEC_UNITS);
      g_autofree gchar *limit
          = g_format_size_full (call->self->screenshot_limit, G_FORMAT_SIZE_IEC_UNITS);

      g_dbus_method_invocation_return_error (
          call->invocation, DHF_ERROR, DHF_ERROR_LIMIT_EXCEEDED,
          "the screenshot of '%s' is %s, over the %s a reply may carry; ask for a smaller one "
          "with max-width/max-height",
          call->target, have, limit);
      return;
    }
  dhf_dbus_display_complete_screenshot (
      DHF_DBUS_DISPLAY (call->self), call->invocation,
      g_variant_new_from_bytes (G_VARIANT_TYPE_BYTESTRING, png, TRUE));
}

/* OpenDisplay and Screenshot need the appliance's display now. */
static gboolean
check_appliance (DhfDisplayService *self, const gchar *name, GError **error)
{
  gboolean active = FALSE;

  if (!self->lookup (name, &active, self->lookup_data))
    {
      g_set_error (error, DHF_ERROR, DHF_ERROR_NOT_FOUND, "no appliance named '%s'", name);
      return FALSE;
    }
  if (!active)
    {
      g_set_error (error, DHF_ERROR, DHF_ERROR_INVALID_STATE,
                   "'%s' is not running: it has no display", name);
      return FALSE;
    }
  return TRUE;
}

/* OpenDisplay and Screenshot show what dom0 could put on screen: the
 * switch rules' answer for "switch @dom0 NAME". A screen or a live
 * display is as much as showing it, without the switch. */
static gboolean
check_policy (DhfDisplayService *self, const gchar *name, GError **error)
{
  DhfEngineVerdict verdict = { DHF_POLICY_ACTION_DENY, NULL, FALSE, NULL };
  gboolean allowed;

  if (self->decide == NULL && self->decider_gone)
    {
      g_set_error (error, DHF_ERROR, DHF_ERROR_NOT_AUTHORIZED,
                   "dom0 may not show '%s': the policy cannot be asked any more (dhfd is "
                   "stopping)",
                   name);
      return FALSE;
    }
  if (self->decide == NULL)
    return TRUE;
  self->decide (DHF_POLICY_KIND_SWITCH, NULL, "dom0", name, &verdict, self->decide_data);
  allowed = verdict.action == DHF_POLICY_ACTION_ALLOW;
  if (!allowed && verdict.action == DHF_POLICY_ACTION_ASK)
    g_set_error (error, DHF_ERROR, DHF_ERROR_NOT_AUTHORIZED,
                 "dom0 may not show '%s': switch @dom0 %s asks the user (%s), and a display or "
                 "a screenshot is not asked about",
                 name, name, verdict.rule != NULL ? verdict.rule : "policy");
  else if (!allowed && verdict.rule != NULL)
    g_set_error (error, DHF_ERROR, DHF_ERROR_NOT_AUTHORIZED,
                 "dom0 may not show '%s': switch @dom0 %s is denied by %s", name, name,
                 verdict.rule);
  else if (!allowed)
    g_set_error (error, DHF_ERROR, DHF_ERROR_NOT_AUTHORIZED,
                 "dom0 may not show '%s': no rule allows switch @dom0 %s", name, name);
  dhf_engine_verdict_clear (&verdict);
  return allowed;
}

static void
run_authorized (gpointer data)
{
  g_autoptr (Call) call = data;
  g_autoptr (GError) error = NULL;
  DhfDisplayService *self = call->self;
  Call *owned;

  if ((call->method == METHOD_OPEN_DISPLAY || call->method == METHOD_SCREENSHOT)
      && (!check_appliance (self, call->target, &error)
          || !check_policy (self, call->target, &error)))
    {
      dhf_dbus_call_return_error (call->invocation, error);
      return;
    }
  owned = g_steal_pointer (&call);
  switch (owned->method)
    {
      case METHOD_SWITCH:
      case METHOD_NEXT:
      case METHOD_PREVIOUS:
        /* The user at the console (through the switcher) asks: the switch
         * rules' SOURCE is dom0. */
        dhf_device_engine_switch_async (self->engine, owned->target, "dom0", NULL, 0, NULL,
                                        on_switched, owned);
        break;
      case METHOD_OPEN_DISPLAY:
        dhf_hypervisor_open_graphics_async (self->hypervisor, owned->target, NULL,
                                            on_graphics_opened, owned);
        break;
      case METHOD_SCREENSHOT:
      default:
        dhf_hypervisor_screenshot_async (self->hypervisor, owned->target, owned->max_width,
                                         owned->max_height, NULL, on_screenshot, owned);
        break;
    }
}

static gboolean
authorize (DhfDisplayService *self, GDBusMethodInvocation *invocation, Method method,
           const gchar *target, guint max_width, guint max_height)
{
  Call *call = g_new0 (Call, 1);

  call->self = g_object_ref (self);
  call->invocation = g_object_ref (invocation);
  call->method = method;
  call->target = g_strdup (target);
  call->max_width = max_width;
  call->max_height = max_height;
  return dhf_dbus_call_authorize (self->authority, invocation, action_of (method), run_authorized,
                                  call, (GDestroyNotify) call_free);
}

/* An appliance's name as a caller gives it: dom0 and the symbolic
 * targets have methods of their own. */
static gboolean
check_appliance_arg (GDBusMethodInvocation *invocation, const gchar *name, gboolean dom0_ok)
{
  if (*name == '\0' || *name == '@')
    {
      g_dbus_method_invocation_return_error (invocation, DHF_ERROR, DHF_ERROR_INVALID_ARGS,
                                             "'%s' is not an appliance's name%s", name,
                                             dom0_ok ? " nor dom0 (Next and Previous cycle)" : "");
      return FALSE;
    }
  if (!dom0_ok && g_str_equal (name, "dom0"))
    {
      g_dbus_method_invocation_return_error (invocation, DHF_ERROR, DHF_ERROR_INVALID_ARGS,
                                             "dom0 is the host, not an appliance with a display");
      return FALSE;
    }
  return TRUE;
}

static gboolean
handle_switch (DhfDBusDisplay *iface, GDBusMethodInvocation *invocation, const gchar *target,
               DhfDisplayService *self)
{
  if (!check_appliance_arg (invocation, target, TRUE))
    return G_DBUS_METHOD_INVOCATION_HANDLED;
  return authorize (self, invocation, METHOD_SWITCH, target, 0, 0);
}

static gboolean
handle_next (DhfDBusDisplay *iface, GDBusMethodInvocation *invocation, DhfDisplayService *self)
{
  return authorize (self, invocation, METHOD_NEXT, "@next", 0, 0);
}

static gboolean
handle_previous (DhfDBusDisplay *iface, GDBusMethodInvocation *invocation, DhfDisplayService *self)
{
  return authorize (self, invocation, METHOD_PREVIOUS, "@previous", 0, 0);
}

static gboolean
handle_open_display (DhfDBusDisplay *iface, GDBusMethodInvocation *invocation, GUnixFDList *fd_list,
                     const gchar *appliance, DhfDisplayService *self)
{
  if (!check_appliance_arg (invocation, appliance, FALSE))
    return G_DBUS_METHOD_INVOCATION_HANDLED;
  return authorize (self, invocation, METHOD_OPEN_DISPLAY, appliance, 0, 0);
}

/* Screenshot's options: a typed allow-list, so that a misspelt or
 * mistyped option is refused instead of silently ignored. */
static gboolean
parse_screenshot_options (GVariant *options, guint *max_width, guint *max_height, GError **error)
{
  GVariantIter iter;
  const gchar *key;
  GVariant *value;

  g_variant_iter_init (&iter, options);
  while (g_variant_iter_loop (&iter, "{&sv}", &key, &value))
    {
      guint *out;

      if (g_str_equal (key, "max-width"))
        out = max_width;
      else if (g_str_equal (key, "max-height"))
        out = max_height;
      else
        {
          g_set_error (error, DHF_ERROR, DHF_ERROR_INVALID_ARGS, "unknown option '%s'", key);
          g_variant_unref (value); /* g_variant_iter_loop frees it only when it runs on */
          return FALSE;
        }
      if (!g_variant_is_of_type (value, G_VARIANT_TYPE_UINT32))
        {
          g_set_error (error, DHF_ERROR, DHF_ERROR_INVALID_ARGS,
                       "option '%s' must be of type 'u', not '%s'", key,
                       g_variant_get_type_string (value));
          g_variant_unref (value);
          return FALSE;
        }
      *out = g_variant_get_uint32 (value);
    }
  return TRUE;
}

static gboolean
handle_screenshot (DhfDBusDisplay *iface, GDBusMethodInvocation *invocation, const gchar *appliance,
                   GVariant *options, DhfDisplayService *self)
{
  g_autoptr (GError) error = NULL;
  guint max_width = 0, max_height = 0;

  if (!parse_screenshot_options (options, &max_width, &max_height, &error))
    {
      g_dbus_method_invocation_return_gerror (invocation, error);
      return G_DBUS_METHOD_INVOCATION_HANDLED;
    }
  if (!check_appliance_arg (invocation, appliance, FALSE))
    return G_DBUS_METHOD_INVOCATION_HANDLED;
  return authorize (self, invocation, METHOD_SCREENSHOT, appliance, max_width, max_height);
}

/* --- GObject ------------------------------------------------------------ */

DhfDisplayService *
dhf_display_service_new (DhfDeviceEngine *engine, DhfAuthority *authority,
                         DhfHypervisor *hypervisor, DhfDisplayLookup lookup, gpointer lookup_data)
{
  DhfDisplayService *self = g_object_new (DHF_TYPE_DISPLAY_SERVICE, NULL);

  self->engine = g_object_ref (engine);
  self->authority = g_object_ref (authority);
  self->hypervisor = g_object_ref (hypervisor);
  self->lookup = lookup;
  self->lookup_data = lookup_data;
  self->screenshot_limit = DHF_DISPLAY_SCREENSHOT_MAX_BYTES;
  dhf_display_service_update (self);
  g_signal_connect (engine, "focus-changed", G_CALLBACK (on_focus_changed), self);
  g_signal_connect (self, "handle-switch", G_CALLBACK (handle_switch), self);
  g_signal_connect (self, "handle-next", G_CALLBACK (handle_next), self);
  g_signal_connect (self, "handle-previous", G_CALLBACK (handle_previous), self);
  g_signal_connect (self, "handle-open-display", G_CALLBACK (handle_open_display), self);
  g_signal_connect (self, "handle-screenshot", G_CALLBACK (handle_screenshot), self);
  return self;
}

void
dhf_display_service_set_decider (DhfDisplayService *self, DhfEngineDecideFunc decide,
                                 gpointer user_data)
{
  g_return_if_fail (DHF_IS_DISPLAY_SERVICE (self));

  self->decider_gone = decide == NULL && (self->decide != NULL || self->decider_gone);
  self->decide = decide;
  self->decide_data = user_data;
}

void
dhf_display_service_set_screenshot_limit (DhfDisplayService *self, gsize max_bytes)
{
  g_return_if_fail (DHF_IS_DISPLAY_SERVICE (self));
  g_return_if_fail (max_bytes > 0);

  self->screenshot_limit = max_bytes;
}

static void
dhf_display_service_init (DhfDisplayService *self)
{
}

static void
dhf_display_service_dispose (GObject *object)
{
  DhfDisplayService *self = DHF_DISPLAY_SERVICE (object);

  if (self->engine != NULL)
    g_signal_handlers_disconnect_by_data (self->engine, self);
  g_clear_object (&self->engine);
  g_clear_object (&self->authority);
  g_clear_object (&self->hypervisor);
  G_OBJECT_CLASS (dhf_display_service_parent_class)->dispose (object);
}

static void
dhf_display_service_class_init (DhfDisplayServiceClass *klass)
{
  G_OBJECT_CLASS (klass)->dispose = dhf_display_service_dispose;
}
