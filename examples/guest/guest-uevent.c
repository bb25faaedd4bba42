/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include <string.h>

#include "guest-text.h"
#include "guest-uevent.h"

void
guest_uevent_free (GuestUevent *event)
{
  g_free (event->action);
  g_free (event->devpath);
  g_free (event->subsystem);
  g_free (event->devname);
  g_free (event->name);
  g_free (event);
}

static GuestUevent *
fail (GError **error, const gchar *what)
{
  g_set_error (error, G_IO_ERROR, G_IO_ERROR_INVALID_DATA, "not a kernel uevent: %s", what);
  return NULL;
}

/* The fields that place the event: UTF-8 without control characters, or
 * the message is not the kernel's. */
static gboolean
is_clean_text (const gchar *text)
{
  if (!g_utf8_validate (text, -1, NULL))
    return FALSE;
  /* C1 (U+0080..U+009F) as well as C0 and DEL. */
  for (const gchar *p = text; *p != '\0'; p = g_utf8_next_char (p))
    if (g_unichar_iscntrl (g_utf8_get_char (p)))
      return FALSE;
  return TRUE;
}

/* Stores a field's value once; a second ACTION or SUBSYSTEM makes the
 * message ambiguous. */
static gboolean
take_value (gchar **slot, const gchar *value)
{
  if (*slot != NULL)
    return FALSE;
  *slot = g_strdup (value);
  return TRUE;
}

/* Whether the last component of path is prefix followed by digits. */
static gboolean
basename_is (const gchar *path, const gchar *prefix)
{
  const gchar *slash = strrchr (path, '/');
  const gchar *p = slash != NULL ? slash + 1 : path;

  if (!g_str_has_prefix (p, prefix))
    return FALSE;
  p += strlen (prefix);
  if (*p == '\0' || strlen (p) > 10)
    return FALSE;
  for (; *p != '\0'; p++)
    if (!g_ascii_isdigit (*p))
      return FALSE;
  return TRUE;
}

gboolean
guest_is_event_node (const gchar *path)
{
  return basename_is (path, "event");
}

GuestUevent *
guest_uevent_parse (const gchar *buffer, gsize length, GError **error)
{
  g_autoptr (GuestUevent) event = g_new0 (GuestUevent, 1);
  g_autofree gchar *devpath_field = NULL;
  g_autofree gchar *name = NULL;
  const gchar *end;
  const gchar *at;
  gsize header_length;

  /* Every field, the last one too, ends with a NUL: after this check
   * strlen() never runs past the buffer. */
  if (buffer == NULL || length == 0 || length > GUEST_UEVENT_MAX || buffer[length - 1] != '\0')
    return fail (error, "empty, too long, or its last field has no NUL");
  end = buffer + length;

  header_length = strlen (buffer);
  at = memchr (buffer, '@', header_length);
  if (at == NULL || at == buffer || at[1] != '/')
    return fail (error, "no ACTION@/DEVPATH header");

  for (const gchar *p = buffer + header_length + 1; p < end; p += strlen (p) + 1)
    {
      const gchar *equals = strchr (p, '=');
      gsize key_length;
      gboolean fresh = TRUE;

      if (equals == NULL || equals == p)
        return fail (error, "a field that is not KEY=VALUE");
      key_length = equals - p;
      for (gsize i = 0; i < key_length; i++)
        if (!g_ascii_isupper (p[i]) && !g_ascii_isdigit (p[i]) && p[i] != '_')
          return fail (error, "a key that is not [A-Z0-9_]");
#define IS_KEY(k) (key_length == strlen (k) && memcmp (p, k, key_length) == 0)
      if (IS_KEY ("ACTION"))
        fresh = take_value (&event->action, equals + 1);
      else if (IS_KEY ("DEVPATH"))
        fresh = take_value (&devpath_field, equals + 1);
      else if (IS_KEY ("SUBSYSTEM"))
        fresh = take_value (&event->subsystem, equals + 1);
      else if (IS_KEY ("DEVNAME"))
        fresh = take_value (&event->devname, equals + 1);
      else if (IS_KEY ("NAME"))
        fresh = take_value (&name, equals + 1);
#undef IS_KEY
      if (!fresh)
        return fail (error, "a repeated field");
    }

  if (event->action == NULL || *event->action == '\0' || event->subsystem == NULL
      || *event->subsystem == '\0')
    return fail (error, "no ACTION or no SUBSYSTEM");
  /* The header repeats ACTION and DEVPATH; a message where they disagree
   * is not the kernel's. */
  if (strlen (event->action) != (gsize) (at - buffer)
      || memcmp (event->action, buffer, at - buffer) != 0)
    return fail (error, "ACTION differs from the header's");
  event->devpath = g_strdup (at + 1);
  if (devpath_field != NULL && strcmp (devpath_field, event->devpath) != 0)
    return fail (error, "DEVPATH differs from the header's");
  if (!is_clean_text (event->devpath) || !is_clean_text (event->action)
      || !is_clean_text (event->subsystem)
      || (event->devname != NULL && !is_clean_text (event->devname)))
    return fail (error, "text that is not UTF-8 or has control characters");

  /* Input devices say NAME="Power Button", with the quotes. The device
   * chose it: an odd one is made printable, the event still counts. */
  if (name != NULL)
    {
      gsize name_length = strlen (name);

      if (name_length >= 2 && name[0] == '"' && name[name_length - 1] == '"')
        {
          name[name_length - 1] = '\0';
          event->name = guest_text_make_printable (name + 1);
        }
      else
        event->name = guest_text_make_printable (name);
    }
  return g_steal_pointer (&event);
}

gboolean
guest_uevent_is_input_device (const GuestUevent *event)
{
  return g_strcmp0 (event->subsystem, "input") == 0 && basename_is (event->devpath, "input");
}

gchar *
guest_uevent_get_event_node (const GuestUevent *event)
{
  if (g_strcmp0 (event->subsystem, "input") != 0 || !guest_is_event_node (event->devpath))
    return NULL;
  /* DEVNAME, when the kernel sends it, must name the same node. */
  if (event->devname != NULL
      && (!g_str_has_prefix (event->devname, "input/")
          || strcmp (event->devname + strlen ("input/"), strrchr (event->devpath, '/') + 1) != 0))
    return NULL;
  return g_strdup (strrchr (event->devpath, '/') + 1);
}
