/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include "config.h"

#include <unistd.h>

#include <dhf/dhf.h>
#include <polkit/polkit.h>

#include "dhf-authority.h"

/* Decides whether the sender of a D-Bus call may perform an action. On the
 * system bus polkit decides per named action; on a private or session bus
 * only callers running as dhfd's own user (or root) may change anything. */
struct _DhfAuthority
{
  GObject parent_instance;

  DhfAuthMode mode; /* resolved: never AUTO */
  GDBusConnection *connection;
  PolkitAuthority *polkit; /* loaded on first use */
};

G_DEFINE_TYPE (DhfAuthority, dhf_authority, G_TYPE_OBJECT)

DhfAuthority *
dhf_authority_new (DhfAuthMode mode, GDBusConnection *connection)
{
  DhfAuthority *self = g_object_new (DHF_TYPE_AUTHORITY, NULL);

  self->mode = mode;
  self->connection = g_object_ref (connection);
  return self;
}

DhfAuthMode
dhf_authority_get_mode (DhfAuthority *self)
{
  return self->mode;
}

static const gchar *
action_of (GTask *task)
{
  return g_object_get_data (G_OBJECT (task), "action-id");
}

static void
deny (GTask *task, const gchar *action_id, const gchar *why)
{
  g_task_return_new_error (task, DHF_ERROR, DHF_ERROR_NOT_AUTHORIZED, "not authorized for %s: %s",
                           action_id, why);
}

static void
on_polkit_checked (GObject *source, GAsyncResult *result, gpointer user_data)
{
  g_autoptr (GTask) task = user_data;
  const gchar *action_id = action_of (task);
  g_autoptr (GError) error = NULL;
  g_autoptr (PolkitAuthorizationResult) res = NULL;

  res = polkit_authority_check_authorization_finish (POLKIT_AUTHORITY (source), result, &error);
  if (res == NULL)
    {
      deny (task, action_id, error->message);
      return;
    }
  if (polkit_authorization_result_get_is_authorized (res))
    {
      g_task_return_boolean (task, TRUE);
      return;
    }
  deny (task, action_id,
        polkit_authorization_result_get_is_challenge (res)
            ? "authentication is required (call with interactive authorization allowed)"
            : "denied by polkit");
}

static void
check_polkit (DhfAuthority *self, GTask *task)
{
  GDBusMethodInvocation *invocation = g_task_get_task_data (task);
  g_autoptr (PolkitSubject) subject = NULL;
  PolkitCheckAuthorizationFlags flags = POLKIT_CHECK_AUTHORIZATION_FLAGS_NONE;
  GDBusMessage *message = g_dbus_method_invocation_get_message (invocation);

  if (g_dbus_message_get_flags (message) & G_DBUS_MESSAGE_FLAGS_ALLOW_INTERACTIVE_AUTHORIZATION)
    flags |= POLKIT_CHECK_AUTHORIZATION_FLAGS_ALLOW_USER_INTERACTION;
  subject = polkit_system_bus_name_new (g_dbus_method_invocation_get_sender (invocation));
  polkit_authority_check_authorization (self->polkit, subject, action_of (task), NULL, flags,
                                        g_task_get_cancellable (task), on_polkit_checked,
                                        g_object_ref (task));
}

static void
on_polkit_authority (GObject *source, GAsyncResult *result, gpointer user_data)
{
  g_autoptr (GTask) task = user_data;
  DhfAuthority *self = g_task_get_source_object (task);
  g_autoptr (GError) error = NULL;
  PolkitAuthority *authority = polkit_authority_get_finish (result, &error);

  if (authority == NULL)
    {
      deny (task, action_of (task), error->message);
      return;
    }
  if (self->polkit == NULL)
    self->polkit = authority;
  else
    g_object_unref (authority);
  check_polkit (self, task);
}

static void
on_unix_user (GObject *source, GAsyncResult *result, gpointer user_data)
{
  g_autoptr (GTask) task = user_data;
  const gchar *action_id = action_of (task);
  g_autoptr (GError) error = NULL;
  g_autoptr (GVariant) reply = NULL;
  guint32 uid;

  reply = g_dbus_connection_call_finish (G_DBUS_CONNECTION (source), result, &error);
  if (reply == NULL)
    {
      deny (task, action_id, error->message);
      return;
    }
  g_variant_get (reply, "(u)", &uid);
  if (uid == 0 || uid == (guint32) getuid ())
    {
      g_task_return_boolean (task, TRUE);
      return;
    }
  deny (task, action_id, "only dhfd's own user and root may do this on this bus");
}

void
dhf_authority_check_async (DhfAuthority *self, GDBusMethodInvocation *invocation,
                           const gchar *action_id, GCancellable *cancellable,
                           GAsyncReadyCallback callback, gpointer user_data)
{
  g_autoptr (GTask) task = g_task_new (self, cancellable, callback, user_data);
  const gchar *sender = g_dbus_method_invocation_get_sender (invocation);

  g_task_set_source_tag (task, dhf_authority_check_async);
  g_task_set_task_data (task, g_object_ref (invocation), g_object_unref);
  g_object_set_data_full (G_OBJECT (task), "action-id", g_strdup (action_id), g_free);

  /* A peer-to-peer connection has no sender and no bus to vouch for it. */
  if (sender == NULL)
    {
      deny (task, action_id, "the caller has no bus name");
      return;
    }
  if (self->mode == DHF_AUTH_MODE_POLKIT)
    {
      /* The authority is looked up once, without blocking the main loop. */
      if (self->polkit == NULL)
        polkit_authority_get_async (cancellable, on_polkit_authority, g_object_ref (task));
      else
        check_polkit (self, task);
      return;
    }
  g_dbus_connection_call (
      self->connection, "org.freedesktop.DBus", "/org/freedesktop/DBus", "org.freedesktop.DBus",
      "GetConnectionUnixUser", g_variant_new ("(s)", sender), G_VARIANT_TYPE ("(u)"),
      G_DBUS_CALL_FLAGS_NONE, -1, cancellable, on_unix_user, g_object_ref (task));
}

gboolean
dhf_authority_check_finish (DhfAuthority *self, GAsyncResult *result, GError **error)
{
  return g_task_propagate_boolean (G_TASK (result), error);
}

static void
dhf_authority_init (DhfAuthority *self)
{
}

static void
dhf_authority_dispose (GObject *object)
{
  DhfAuthority *self = DHF_AUTHORITY (object);

  g_clear_object (&self->connection);
  g_clear_object (&self->polkit);
  G_OBJECT_CLASS (dhf_authority_parent_class)->dispose (object);
}

static void
dhf_authority_class_init (DhfAuthorityClass *klass)
{
  G_OBJECT_CLASS (klass)->dispose = dhf_authority_dispose;
}
