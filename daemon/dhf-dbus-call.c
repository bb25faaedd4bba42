/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include "config.h"

#include <dhf/dhf.h>

#include "dhf-dbus-call.h"

void
dhf_dbus_call_return_error (GDBusMethodInvocation *invocation, const GError *error)
{
  if (error->domain == DHF_ERROR)
    g_dbus_method_invocation_return_gerror (invocation, error);
  else
    g_dbus_method_invocation_return_error (invocation, DHF_ERROR, DHF_ERROR_FAILED, "%s",
                                           error->message);
}

typedef struct
{
  GDBusMethodInvocation *invocation;
  DhfDBusCallFunc authorized;
  gpointer data; /* NULL once authorized has it */
  GDestroyNotify free_data;
} Authorization;

static void
authorization_free (Authorization *auth)
{
  if (auth->data != NULL)
    auth->free_data (auth->data);
  g_object_unref (auth->invocation);
  g_free (auth);
}

G_DEFINE_AUTOPTR_CLEANUP_FUNC (Authorization, authorization_free)

static void
on_checked (GObject *source, GAsyncResult *result, gpointer user_data)
{
  g_autoptr (Authorization) auth = user_data;
  g_autoptr (GError) error = NULL;

  if (!dhf_authority_check_finish (DHF_AUTHORITY (source), result, &error))
    {
      dhf_dbus_call_return_error (auth->invocation, error);
      return;
    }
  auth->authorized (g_steal_pointer (&auth->data));
}

gboolean
dhf_dbus_call_authorize (DhfAuthority *authority, GDBusMethodInvocation *invocation,
                         const gchar *action_id, DhfDBusCallFunc authorized, gpointer data,
                         GDestroyNotify free_data)
{
  Authorization *auth = g_new0 (Authorization, 1);

  auth->invocation = g_object_ref (invocation);
  auth->authorized = authorized;
  auth->data = data;
  auth->free_data = free_data;
  dhf_authority_check_async (authority, invocation, action_id, NULL, on_checked, auth);
  return G_DBUS_METHOD_INVOCATION_HANDLED;
}
