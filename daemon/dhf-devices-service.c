/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include "config.h"

#include "dhf-devices-service.h"

#include "dhf-dbus-call.h"

struct _DhfDevicesService
{
  DhfDBusDevicesSkeleton parent_instance;

  DhfDeviceEngine *engine;
  DhfAuthority *authority;
};

G_DEFINE_TYPE (DhfDevicesService, dhf_devices_service, DHF_DBUS_TYPE_DEVICES_SKELETON)

/* Device strings come from the devices themselves: the inventory escapes
 * them, and a GVariant string must be UTF-8 whatever happened. */
static void
add_string (GVariantBuilder *builder, const gchar *key, const gchar *value)
{
  g_autofree gchar *valid = NULL;

  if (value == NULL)
    value = "";
  else if (!g_utf8_validate (value, -1, NULL))
    value = valid = g_utf8_make_valid (value, -1);
  g_variant_builder_add (builder, "{sv}", key, g_variant_new_string (value));
}

GVariant *
dhf_devices_service_describe (const DhfDeviceStatus *status)
{
  const DhfDevice *device = status->device;
  GVariantBuilder builder;

  g_variant_builder_init (&builder, G_VARIANT_TYPE_VARDICT);
  add_string (&builder, "id", device->id);
  add_string (&builder, "kind", dhf_device_kind_to_string (device->kind));
  add_string (&builder, "selector", device->selector);
  add_string (&builder, "description", device->description);
  g_variant_builder_add (&builder, "{sv}", "present", g_variant_new_boolean (status->present));
  add_string (&builder, "owner", status->owner);
  add_string (&builder, "mode", dhf_device_mode_to_string (status->mode));
  add_string (&builder, "holder", status->holder);
  add_string (&builder, "origin", status->origin);
  add_string (&builder, "problem", status->problem);
  switch (device->kind)
    {
      case DHF_DEVICE_KIND_USB:
        g_variant_builder_add (&builder, "{sv}", "vendor",
                               g_variant_new_uint16 (device->usb_vendor));
        g_variant_builder_add (&builder, "{sv}", "product",
                               g_variant_new_uint16 (device->usb_product));
        add_string (&builder, "serial", device->usb_serial);
        add_string (&builder, "port", device->usb_port);
        break;
      case DHF_DEVICE_KIND_PCI:
        add_string (&builder, "address", device->pci_address);
        g_variant_builder_add (&builder, "{sv}", "iommu-group",
                               g_variant_new_int32 (device->iommu_group));
        add_string (&builder, "driver", device->pci_driver);
        break;
      case DHF_DEVICE_KIND_INPUT:
        add_string (&builder, "input-type", device->input_type);
        break;
      default:
        break;
    }
  return g_variant_builder_end (&builder);
}

static void
on_device_changed (DhfDeviceEngine *engine, const gchar *id, DhfDevicesService *self)
{
  g_autoptr (DhfDeviceStatus) status = dhf_device_engine_lookup (engine, id);
  GVariantBuilder builder;

  if (status != NULL)
    {
      dhf_dbus_devices_emit_changed (DHF_DBUS_DEVICES (self),
                                     dhf_devices_service_describe (status));
      return;
    }
  /* Forgotten entirely (unplugged, and nothing claims it): List no longer
   * has it, and this says so. */
  g_variant_builder_init (&builder, G_VARIANT_TYPE_VARDICT);
  add_string (&builder, "id", id);
  g_variant_builder_add (&builder, "{sv}", "present", g_variant_new_boolean (FALSE));
  dhf_dbus_devices_emit_changed (DHF_DBUS_DEVICES (self), g_variant_builder_end (&builder));
}

/* --- methods ----------------------------------------------------------- */

typedef struct
{
  DhfDevicesService *self;
  GDBusMethodInvocation *invocation;
  gchar *device;
  gchar *domain; /* Assign only */
} Call;

static void
call_free (Call *call)
{
  g_clear_object (&call->self);
  g_clear_object (&call->invocation);
  g_free (call->device);
  g_free (call->domain);
  g_free (call);
}

G_DEFINE_AUTOPTR_CLEANUP_FUNC (Call, call_free)

static Call *
call_new (DhfDevicesService *self, GDBusMethodInvocation *invocation, const gchar *device,
          const gchar *domain)
{
  Call *call = g_new0 (Call, 1);

  call->self = g_object_ref (self);
  call->invocation = g_object_ref (invocation);
  call->device = g_strdup (device);
  call->domain = g_strdup (domain);
  return call;
}

static gboolean
handle_list (DhfDBusDevices *iface, GDBusMethodInvocation *invocation, DhfDevicesService *self)
{
  g_autoptr (GPtrArray) devices = dhf_device_engine_list (self->engine);
  GVariantBuilder builder;

  g_variant_builder_init (&builder, G_VARIANT_TYPE ("aa{sv}"));
  for (guint i = 0; i < devices->len; i++)
    g_variant_builder_add_value (&builder,
                                 dhf_devices_service_describe (g_ptr_array_index (devices, i)));
  dhf_dbus_devices_complete_list (iface, invocation, g_variant_builder_end (&builder));
  return G_DBUS_METHOD_INVOCATION_HANDLED;
}

static void
on_assigned (GObject *source, GAsyncResult *result, gpointer user_data)
{
  g_autoptr (Call) call = user_data;
  g_autoptr (GError) error = NULL;

  if (!dhf_device_engine_assign_finish (DHF_DEVICE_ENGINE (source), result, &error))
    {
      /* The engine's device questions are not audited (they are asked for
       * every device at every change); a pin refused is worth a line. */
      if (g_error_matches (error, DHF_ERROR, DHF_ERROR_NOT_AUTHORIZED))
        g_message ("devices: pinning %s to %s refused: %s", call->device, call->domain,
                   error->message);
      dhf_dbus_call_return_error (call->invocation, error);
      return;
    }
  g_message ("devices: %s pinned to %s", call->device, call->domain);
  dhf_dbus_devices_complete_assign (DHF_DBUS_DEVICES (call->self), call->invocation);
}

static void
run_assign (gpointer data)
{
  Call *call = data;

  dhf_device_engine_assign_async (call->self->engine, call->device, call->domain, NULL, on_assigned,
                                  call);
}

static gboolean
handle_assign (DhfDBusDevices *iface, GDBusMethodInvocation *invocation, const gchar *device,
               const gchar *domain, GVariant *options, DhfDevicesService *self)
{
  GVariantIter iter;
  const gchar *key;

  /* No option is defined yet: any is a mistake, not a no-op. */
  g_variant_iter_init (&iter, options);
  if (g_variant_iter_next (&iter, "{&sv}", &key, NULL))
    {
      g_dbus_method_invocation_return_error (invocation, DHF_ERROR, DHF_ERROR_INVALID_ARGS,
                                             "unknown option '%s'", key);
      return G_DBUS_METHOD_INVOCATION_HANDLED;
    }
  if (*device == '\0' || *domain == '\0')
    {
      g_dbus_method_invocation_return_error (invocation, DHF_ERROR, DHF_ERROR_INVALID_ARGS,
                                             "expected a device id and an appliance name");
      return G_DBUS_METHOD_INVOCATION_HANDLED;
    }
  if (g_str_equal (domain, "dom0"))
    {
      g_dbus_method_invocation_return_error (invocation, DHF_ERROR, DHF_ERROR_INVALID_ARGS,
                                             "devices are pinned to appliances; Release gives "
                                             "a pinned device back to dom0");
      return G_DBUS_METHOD_INVOCATION_HANDLED;
    }
  return dhf_dbus_call_authorize (self->authority, invocation, DHF_ACTION_DEVICES_ASSIGN,
                                  run_assign, call_new (self, invocation, device, domain),
                                  (GDestroyNotify) call_free);
}

static void
on_released (GObject *source, GAsyncResult *result, gpointer user_data)
{
  g_autoptr (Call) call = user_data;
  g_autoptr (GError) error = NULL;

  if (!dhf_device_engine_release_finish (DHF_DEVICE_ENGINE (source), result, &error))
    {
      dhf_dbus_call_return_error (call->invocation, error);
      return;
    }
  g_message ("devices: the pin of %s was released", call->device);
  dhf_dbus_devices_complete_release (DHF_DBUS_DEVICES (call->self), call->invocation);
}

static void
run_release (gpointer data)
{
  Call *call = data;

  dhf_device_engine_release_async (call->self->engine, call->device, NULL, on_released, call);
}

static gboolean
handle_release (DhfDBusDevices *iface, GDBusMethodInvocation *invocation, const gchar *device,
                DhfDevicesService *self)
{
  if (*device == '\0')
    {
      g_dbus_method_invocation_return_error (invocation, DHF_ERROR, DHF_ERROR_INVALID_ARGS,
                                             "expected a device id");
      return G_DBUS_METHOD_INVOCATION_HANDLED;
    }
  return dhf_dbus_call_authorize (self->authority, invocation, DHF_ACTION_DEVICES_ASSIGN,
                                  run_release, call_new (self, invocation, device, NULL),
                                  (GDestroyNotify) call_free);
}

/* --- GObject ----------------------------------------------------------- */

DhfDevicesService *
dhf_devices_service_new (DhfDeviceEngine *engine, DhfAuthority *authority)
{
  DhfDevicesService *self = g_object_new (DHF_TYPE_DEVICES_SERVICE, NULL);

  self->engine = g_object_ref (engine);
  self->authority = g_object_ref (authority);
  g_signal_connect (engine, "device-changed", G_CALLBACK (on_device_changed), self);
  g_signal_connect (self, "handle-list", G_CALLBACK (handle_list), self);
  g_signal_connect (self, "handle-assign", G_CALLBACK (handle_assign), self);
  g_signal_connect (self, "handle-release", G_CALLBACK (handle_release), self);
  return self;
}

static void
dhf_devices_service_init (DhfDevicesService *self)
{
}

static void
dhf_devices_service_dispose (GObject *object)
{
  DhfDevicesService *self = DHF_DEVICES_SERVICE (object);

  if (self->engine != NULL)
    g_signal_handlers_disconnect_by_data (self->engine, self);
  g_clear_object (&self->engine);
  g_clear_object (&self->authority);
  G_OBJECT_CLASS (dhf_devices_service_parent_class)->dispose (object);
}

static void
dhf_devices_service_class_init (DhfDevicesServiceClass *klass)
{
  G_OBJECT_CLASS (klass)->dispose = dhf_devices_service_dispose;
}
