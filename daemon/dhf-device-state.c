/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <glib/gstdio.h>
#include <json-c/json.h>

#include "dhf-device-engine-private.h"

/* The device engine's state file: the focus, its history and the admin
 * pins, as {"version":1,"focused":"...","history":[...],
 * "pins":[{"device":"id","selector":"usb:...","domain":"name"}]} (files
 * written before selectors were kept have pins without one). It is read
 * defensively (a damaged file must not keep dhfd from starting) and
 * written atomically and durably (a crash leaves the old file or the new
 * one). */

G_DEFINE_AUTOPTR_CLEANUP_FUNC (json_object, json_object_put)
G_DEFINE_AUTOPTR_CLEANUP_FUNC (json_tokener, json_tokener_free)

/* Enough for the document's shape; deeper nesting is garbage. */
#define MAX_DEPTH 8
/* History entries kept from a file; the engine trims to its own length. */
#define MAX_HISTORY 256

gboolean
dhf_device_id_is_valid (const gchar *id)
{
  gsize length;

  if (id == NULL)
    return FALSE;
  length = strlen (id);
  if (length == 0 || length > 64)
    return FALSE;
  for (const gchar *p = id; *p != '\0'; p++)
    {
      if (!g_ascii_isalnum (*p) && strchr (":._-", *p) == NULL)
        return FALSE;
    }
  return TRUE;
}

gboolean
dhf_domain_name_is_valid (const gchar *name)
{
  gsize length;

  if (name == NULL)
    return FALSE;
  length = strlen (name);
  if (length == 0 || length > 256 || !g_utf8_validate (name, length, NULL))
    return FALSE;
  for (const gchar *p = name; *p != '\0'; p = g_utf8_next_char (p))
    {
      if (g_unichar_iscntrl (g_utf8_get_char (p)))
        return FALSE;
    }
  return TRUE;
}

gboolean
dhf_device_selector_is_valid (const gchar *selector)
{
  gsize length;

  if (selector == NULL)
    return FALSE;
  length = strlen (selector);
  if (length == 0 || length > 256)
    return FALSE;
  for (const gchar *p = selector; *p != '\0'; p++)
    {
      if (!g_ascii_isgraph (*p))
        return FALSE;
    }
  return TRUE;
}

DhfAdminPin *
dhf_admin_pin_new (const gchar *domain, const gchar *selector)
{
  DhfAdminPin *pin = g_new0 (DhfAdminPin, 1);

  pin->domain = g_strdup (domain);
  pin->selector = g_strdup (selector);
  return pin;
}

DhfAdminPin *
dhf_admin_pin_copy (const DhfAdminPin *pin)
{
  return dhf_admin_pin_new (pin->domain, pin->selector);
}

void
dhf_admin_pin_free (DhfAdminPin *pin)
{
  if (pin == NULL)
    return;
  g_free (pin->domain);
  g_free (pin->selector);
  g_free (pin);
}

gboolean
dhf_admin_pin_matches (const DhfAdminPin *pin, const DhfDevice *device)
{
  return pin->selector == NULL || g_strcmp0 (pin->selector, device->selector) == 0;
}

DhfDeviceState *
dhf_device_state_new (void)
{
  DhfDeviceState *state = g_new0 (DhfDeviceState, 1);

  state->history = g_ptr_array_new_with_free_func (g_free);
  state->pins = g_hash_table_new_full (g_str_hash, g_str_equal, g_free,
                                       (GDestroyNotify) dhf_admin_pin_free);
  return state;
}

void
dhf_device_state_free (DhfDeviceState *state)
{
  if (state == NULL)
    return;
  g_free (state->focused);
  g_ptr_array_unref (state->history);
  g_hash_table_unref (state->pins);
  g_free (state);
}

/* A JSON string without embedded NULs, or NULL. */
static const gchar *
get_string (json_object *value)
{
  const gchar *text;

  if (value == NULL || !json_object_is_type (value, json_type_string))
    return NULL;
  text = json_object_get_string (value);
  if (strlen (text) != (gsize) json_object_get_string_len (value))
    return NULL;
  return text;
}

static void
parse_history (DhfDeviceState *state, json_object *history)
{
  gsize n;

  if (!json_object_is_type (history, json_type_array))
    {
      g_warning ("device state: ignoring \"history\": not an array");
      return;
    }
  n = json_object_array_length (history);
  for (gsize i = 0; i < n; i++)
    {
      const gchar *name = get_string (json_object_array_get_idx (history, i));
      gboolean seen = FALSE;

      if (!dhf_domain_name_is_valid (name))
        {
          g_warning ("device state: skipping history entry %zu: not a domain name", i);
          continue;
        }
      for (guint k = 0; k < state->history->len && !seen; k++)
        seen = g_strcmp0 (g_ptr_array_index (state->history, k), name) == 0;
      if (!seen && state->history->len < MAX_HISTORY)
        g_ptr_array_add (state->history, g_strdup (name));
    }
}

static void
parse_pins (DhfDeviceState *state, json_object *pins)
{
  gsize n;

  if (!json_object_is_type (pins, json_type_array))
    {
      g_warning ("device state: ignoring \"pins\": not an array");
      return;
    }
  n = json_object_array_length (pins);
  for (gsize i = 0; i < n; i++)
    {
      json_object *pin = json_object_array_get_idx (pins, i);
      json_object *value = NULL;
      const gchar *device = NULL;
      const gchar *domain = NULL;
      const gchar *selector = NULL;
      gboolean has_selector = FALSE;

      if (json_object_is_type (pin, json_type_object))
        {
          if (json_object_object_get_ex (pin, "device", &value))
            device = get_string (value);
          if (json_object_object_get_ex (pin, "domain", &value))
            domain = get_string (value);
          has_selector = json_object_object_get_ex (pin, "selector", &value);
          if (has_selector)
            selector = get_string (value);
        }
      if (!dhf_device_id_is_valid (device) || !dhf_domain_name_is_valid (domain)
          || g_strcmp0 (domain, DHF_DOM0) == 0)
        {
          g_warning ("device state: skipping pin %zu: not a device id and a domain name", i);
          continue;
        }
      /* Without its selector the pin would hold for any device in that
       * port: a damaged one is no pin. A missing one is an older file's
       * (the engine takes the selector of the device there). */
      if (has_selector && !dhf_device_selector_is_valid (selector))
        {
          g_warning ("device state: skipping pin %zu: its selector is not a device selector", i);
          continue;
        }
      if (g_hash_table_contains (state->pins, device))
        {
          g_warning ("device state: skipping pin %zu: %s is pinned twice", i, device);
          continue;
        }
      g_hash_table_insert (state->pins, g_strdup (device), dhf_admin_pin_new (domain, selector));
    }
}

DhfDeviceState *
dhf_device_state_parse (const gchar *text, gsize length, GError **error)
{
  g_autoptr (json_tokener) tokener = NULL;
  g_autoptr (json_object) root = NULL;
  g_autoptr (DhfDeviceState) state = NULL;
  json_object *value = NULL;
  gsize end;

  if (length > DHF_DEVICE_STATE_MAX_SIZE)
    {
      g_set_error (error, DHF_ERROR, DHF_ERROR_INVALID_ARGS, "larger than %d bytes",
                   DHF_DEVICE_STATE_MAX_SIZE);
      return NULL;
    }
  if (memchr (text, '\0', length) != NULL)
    {
      g_set_error_literal (error, DHF_ERROR, DHF_ERROR_INVALID_ARGS, "contains a NUL byte");
      return NULL;
    }
  tokener = json_tokener_new_ex (MAX_DEPTH);
  root = json_tokener_parse_ex (tokener, text, (int) length);
  if (root == NULL || json_tokener_get_error (tokener) != json_tokener_success)
    {
      g_set_error (error, DHF_ERROR, DHF_ERROR_INVALID_ARGS, "not JSON: %s",
                   json_tokener_error_desc (json_tokener_get_error (tokener)));
      return NULL;
    }
  for (end = json_tokener_get_parse_end (tokener); end < length; end++)
    {
      if (!g_ascii_isspace (text[end]))
        {
          g_set_error_literal (error, DHF_ERROR, DHF_ERROR_INVALID_ARGS,
                               "text after the JSON object");
          return NULL;
        }
    }
  if (!json_object_is_type (root, json_type_object))
    {
      g_set_error_literal (error, DHF_ERROR, DHF_ERROR_INVALID_ARGS, "not a JSON object");
      return NULL;
    }
  if (!json_object_object_get_ex (root, "version", &value)
      || !json_object_is_type (value, json_type_int)
      || json_object_get_int64 (value) != DHF_DEVICE_STATE_VERSION)
    {
      g_set_error (error, DHF_ERROR, DHF_ERROR_INVALID_ARGS, "not a version %d state file",
                   DHF_DEVICE_STATE_VERSION);
      return NULL;
    }

  state = dhf_device_state_new ();
  if (json_object_object_get_ex (root, "focused", &value))
    {
      const gchar *focused = get_string (value);

      if (dhf_domain_name_is_valid (focused))
        state->focused = g_strdup (focused);
      else
        g_warning ("device state: ignoring \"focused\": not a domain name");
    }
  if (json_object_object_get_ex (root, "history", &value))
    parse_history (state, value);
  if (json_object_object_get_ex (root, "pins", &value))
    parse_pins (state, value);
  return g_steal_pointer (&state);
}

static int
compare_strings (const void *a, const void *b)
{
  return strcmp (*(const gchar *const *) a, *(const gchar *const *) b);
}

gchar *
dhf_device_state_to_json (const DhfDeviceState *state)
{
  g_autoptr (json_object) root = json_object_new_object ();
  json_object *history = json_object_new_array ();
  json_object *pins = json_object_new_array ();
  g_autofree const gchar **ids = NULL;
  guint n_ids = 0;

  json_object_object_add (root, "version", json_object_new_int (DHF_DEVICE_STATE_VERSION));
  if (state->focused != NULL)
    json_object_object_add (root, "focused", json_object_new_string (state->focused));
  for (guint i = 0; i < state->history->len; i++)
    json_object_array_add (history, json_object_new_string (g_ptr_array_index (state->history, i)));
  json_object_object_add (root, "history", history);
  /* Sorted, so that the same state is always the same text. */
  ids = (const gchar **) g_hash_table_get_keys_as_array (state->pins, &n_ids);
  qsort (ids, n_ids, sizeof (gchar *), compare_strings);
  for (guint i = 0; i < n_ids; i++)
    {
      const DhfAdminPin *admin = g_hash_table_lookup (state->pins, ids[i]);
      json_object *pin = json_object_new_object ();

      json_object_object_add (pin, "device", json_object_new_string (ids[i]));
      if (admin->selector != NULL)
        json_object_object_add (pin, "selector", json_object_new_string (admin->selector));
      json_object_object_add (pin, "domain", json_object_new_string (admin->domain));
      json_object_array_add (pins, pin);
    }
  json_object_object_add (root, "pins", pins);
  return g_strdup_printf ("%s\n",
                          json_object_to_json_string_ext (
                              root, JSON_C_TO_STRING_PRETTY | JSON_C_TO_STRING_NOSLASHESCAPE));
}

/* Reads at most DHF_DEVICE_STATE_MAX_SIZE + 1 bytes: a bigger file is
 * refused without being read whole. *bad says the file is not a state
 * file at all (moved aside); FALSE with error when it cannot be read. */
static gchar *
read_bounded (const gchar *path, gsize *length, gchar **bad, GError **error)
{
  g_autofree gchar *buffer = NULL;
  struct stat st;
  gsize used = 0;
  int fd;

  *bad = NULL;
  fd = g_open (path, O_RDONLY | O_CLOEXEC | O_NONBLOCK, 0);
  if (fd < 0)
    {
      int saved = errno;

      g_set_error (error, G_FILE_ERROR, g_file_error_from_errno (saved), "cannot open %s: %s", path,
                   g_strerror (saved));
      return NULL;
    }
  if (fstat (fd, &st) < 0 || !S_ISREG (st.st_mode))
    {
      *bad = g_strdup ("not a regular file");
      close (fd);
      return NULL;
    }
  if (st.st_size > DHF_DEVICE_STATE_MAX_SIZE)
    {
      *bad = g_strdup_printf ("larger than %d bytes", DHF_DEVICE_STATE_MAX_SIZE);
      close (fd);
      return NULL;
    }
  buffer = g_malloc (DHF_DEVICE_STATE_MAX_SIZE + 2);
  while (used <= DHF_DEVICE_STATE_MAX_SIZE)
    {
      gssize n = read (fd, buffer + used, DHF_DEVICE_STATE_MAX_SIZE + 1 - used);

      if (n < 0 && errno == EINTR)
        continue;
      if (n < 0)
        {
          int saved = errno;

          g_set_error (error, G_FILE_ERROR, g_file_error_from_errno (saved), "cannot read %s: %s",
                       path, g_strerror (saved));
          close (fd);
          return NULL;
        }
      if (n == 0)
        break;
      used += n;
    }
  close (fd);
  if (used > DHF_DEVICE_STATE_MAX_SIZE)
    {
      *bad = g_strdup_printf ("larger than %d bytes", DHF_DEVICE_STATE_MAX_SIZE);
      return NULL;
    }
  buffer[used] = '\0';
  *length = used;
  return g_steal_pointer (&buffer);
}

DhfDeviceState *
dhf_device_state_load (const gchar *path, GError **error)
{
  g_autoptr (GError) local_error = NULL;
  g_autofree gchar *bad = NULL;
  g_autofree gchar *text = NULL;
  g_autofree gchar *aside = NULL;
  DhfDeviceState *state;
  gsize length = 0;

  text = read_bounded (path, &length, &bad, &local_error);
  if (text == NULL && bad == NULL)
    {
      if (g_error_matches (local_error, G_FILE_ERROR, G_FILE_ERROR_NOENT))
        return dhf_device_state_new ();
      g_propagate_prefixed_error (error, g_steal_pointer (&local_error), "device state: ");
      return NULL;
    }
  if (text != NULL)
    {
      state = dhf_device_state_parse (text, length, &local_error);
      if (state != NULL)
        return state;
      bad = g_strdup (local_error->message);
    }

  /* Kept for whoever wants to know what happened, out of dhfd's way. */
  aside = g_strdup_printf ("%s.corrupt", path);
  if (g_rename (path, aside) == 0)
    g_warning ("device state %s is unusable (%s); moved to %s, starting afresh", path, bad, aside);
  else
    g_warning ("device state %s is unusable (%s) and cannot be moved to %s (%s); starting "
               "afresh",
               path, bad, aside, g_strerror (errno));
  return dhf_device_state_new ();
}

gboolean
dhf_device_state_write (const gchar *path, const gchar *json, GError **error)
{
  g_autofree gchar *dir = g_path_get_dirname (path);

  if (g_mkdir_with_parents (dir, 0700) < 0)
    {
      int saved = errno;

      g_set_error (error, G_FILE_ERROR, g_file_error_from_errno (saved), "cannot create %s: %s",
                   dir, g_strerror (saved));
      return FALSE;
    }
  return g_file_set_contents_full (
      path, json, -1, G_FILE_SET_CONTENTS_CONSISTENT | G_FILE_SET_CONTENTS_DURABLE, 0600, error);
}

/* --- the writer -------------------------------------------------------- */

struct _DhfStateWriter
{
  gchar *path;
  GMutex lock; /* guards pending */
  gchar *pending;
  GThreadPool *pool;
};

static void
writer_thread (gpointer data, gpointer user_data)
{
  DhfStateWriter *writer = user_data;
  g_autoptr (GError) error = NULL;
  g_autofree gchar *json = NULL;

  g_mutex_lock (&writer->lock);
  json = g_steal_pointer (&writer->pending);
  g_mutex_unlock (&writer->lock);
  if (json != NULL && !dhf_device_state_write (writer->path, json, &error))
    g_warning ("cannot save the device state to %s: %s", writer->path, error->message);
}

DhfStateWriter *
dhf_state_writer_new (const gchar *path)
{
  DhfStateWriter *writer = g_new0 (DhfStateWriter, 1);

  writer->path = g_strdup (path);
  g_mutex_init (&writer->lock);
  writer->pool = g_thread_pool_new (writer_thread, writer, 1, FALSE, NULL);
  return writer;
}

void
dhf_state_writer_save (DhfStateWriter *writer, gchar *json)
{
  gboolean queued;

  g_mutex_lock (&writer->lock);
  /* A text waiting to be written is replaced: only the newest matters. */
  queued = writer->pending != NULL;
  g_free (writer->pending);
  writer->pending = json;
  g_mutex_unlock (&writer->lock);
  if (!queued)
    g_thread_pool_push (writer->pool, writer, NULL);
}

void
dhf_state_writer_free (DhfStateWriter *writer)
{
  if (writer == NULL)
    return;
  g_thread_pool_free (writer->pool, FALSE, TRUE);
  g_free (writer->pending);
  g_mutex_clear (&writer->lock);
  g_free (writer->path);
  g_free (writer);
}
