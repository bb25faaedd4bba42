/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include "config.h"

#include <string.h>

#include <dhf/dhf.h>

#include "dhf-config-private.h"
#include "dhf-policy.h"

/* [Devices], [Display] and [Hotkeys] of dhfd.conf: the device-assignment
 * engine, the focus and the hotkeys. Every value is checked here, so that
 * dhfd refuses to start with a clear message rather than find out later
 * (in a switch) that a weight or a name cannot work. */

/* CPU weights: 0 leaves them alone; otherwise 1..10000, the range every
 * scheduler dhfd drives accepts as it is written: cgroup v2's cpu.weight
 * is 1..10000 (libvirt writes cpu_shares there unchanged on a v2 host),
 * cgroup v1's cpu.shares is 2..262144 (the kernel raises 1 to 2), and
 * Xen's credit scheduler takes weights 1..65535. */
#define MAX_WEIGHT 10000

/* Checks one element of a list; FALSE with the error when it is wrong. */
typedef gboolean (*ItemCheck) (const gchar *group, const gchar *key, const gchar *item,
                               gchar **normalised, GError **error);

/* Reads a list separated by ';' (a trailing ';', as GLib writes lists, is
 * allowed) into *out, each element checked and normalised by check and
 * listed once. A missing key leaves *out alone. */
static gboolean
read_list (GKeyFile *kf, const gchar *group, const gchar *key, ItemCheck check, gchar ***out,
           GError **error)
{
  g_autofree gchar *value = NULL;
  g_auto (GStrv) parts = NULL;
  g_autoptr (GPtrArray) items = g_ptr_array_new_with_free_func (g_free);

  if (!dhf_config_read_string (kf, group, key, &value, error))
    return FALSE;
  if (value == NULL)
    return TRUE;
  parts = g_strsplit (value, ";", -1);
  for (guint i = 0; parts[i] != NULL; i++)
    {
      const gchar *item = g_strstrip (parts[i]);
      g_autofree gchar *normalised = NULL;

      if (*item == '\0' && parts[i + 1] == NULL && i > 0)
        break;
      if (!check (group, key, item, &normalised, error))
        return FALSE;
      for (guint j = 0; j < items->len; j++)
        {
          if (g_str_equal (g_ptr_array_index (items, j), normalised))
            {
              g_set_error (error, DHF_ERROR, DHF_ERROR_INVALID_ARGS,
                           "[%s] %s: '%s' is listed twice", group, key, normalised);
              return FALSE;
            }
        }
      g_ptr_array_add (items, g_steal_pointer (&normalised));
    }
  g_ptr_array_add (items, NULL);
  g_strfreev (*out);
  *out = (gchar **) g_ptr_array_free (g_steal_pointer (&items), FALSE);
  return TRUE;
}

static gboolean
check_input_type (const gchar *group, const gchar *key, const gchar *item, gchar **normalised,
                  GError **error)
{
  if (!g_strv_contains ((const gchar *const[]){ "keyboard", "mouse", "tablet", NULL }, item))
    {
      g_set_error (error, DHF_ERROR, DHF_ERROR_INVALID_ARGS,
                   "[%s] %s: expected keyboard, mouse or tablet separated by ';', not '%s'", group,
                   key, item);
      return FALSE;
    }
  *normalised = g_strdup (item);
  return TRUE;
}

static gboolean
check_order_name (const gchar *group, const gchar *key, const gchar *item, gchar **normalised,
                  GError **error)
{
  if (g_str_equal (item, "dom0"))
    {
      g_set_error (error, DHF_ERROR, DHF_ERROR_INVALID_ARGS,
                   "[%s] %s: dom0 cannot be ordered here (CycleDom0=true puts it in the cycle)",
                   group, key);
      return FALSE;
    }
  if (!dhf_policy_name_is_valid (item))
    {
      g_set_error (error, DHF_ERROR, DHF_ERROR_INVALID_ARGS,
                   "[%s] %s: expected appliance names separated by ';', not '%s'", group, key,
                   item);
      return FALSE;
    }
  *normalised = g_strdup (item);
  return TRUE;
}

static gboolean
check_absolute_path (const gchar *group, const gchar *key, const gchar *item, gchar **normalised,
                     GError **error)
{
  if (!g_path_is_absolute (item))
    {
      g_set_error (error, DHF_ERROR, DHF_ERROR_INVALID_ARGS,
                   "[%s] %s: expected absolute paths separated by ';', not '%s'", group, key, item);
      return FALSE;
    }
  /* One spelling per device, so that a keyboard listed twice (which would
   * make every hotkey fire twice) is found. */
  *normalised = g_canonicalize_filename (item, NULL);
  return TRUE;
}

static gboolean
read_state_file (GKeyFile *kf, DhfConfig *self, GError **error)
{
  gchar *canonical;

  if (!dhf_config_read_string (kf, "Devices", "StateFile", &self->device_state_file, error))
    return FALSE;
  if (!g_path_is_absolute (self->device_state_file))
    {
      g_set_error (error, DHF_ERROR, DHF_ERROR_INVALID_ARGS,
                   "[Devices] StateFile: expected an absolute path, not '%s'",
                   self->device_state_file);
      return FALSE;
    }
  canonical = g_canonicalize_filename (self->device_state_file, NULL);
  g_free (self->device_state_file);
  self->device_state_file = canonical;
  /* Both files are rewritten whole by dhfd: one would destroy the other. */
  if (self->policy_last_good != NULL
      && g_str_equal (self->device_state_file, self->policy_last_good))
    {
      g_set_error (error, DHF_ERROR, DHF_ERROR_INVALID_ARGS,
                   "[Devices] StateFile: '%s' is also [Policy] LastGood; each needs a file of its "
                   "own",
                   self->device_state_file);
      return FALSE;
    }
  return TRUE;
}

static gboolean
read_weight (GKeyFile *kf, const gchar *key, guint *out, GError **error)
{
  g_autofree gchar *text = NULL;
  guint64 value = 0;

  if (!dhf_config_read_string (kf, "Display", key, &text, error))
    return FALSE;
  if (text == NULL)
    return TRUE;
  if (!g_ascii_string_to_unsigned (text, 10, 0, MAX_WEIGHT, &value, NULL))
    {
      g_set_error (error, DHF_ERROR, DHF_ERROR_INVALID_ARGS,
                   "[Display] %s: expected a CPU weight from 1 to %u, or 0 to leave CPU weights "
                   "alone, not '%s'",
                   key, MAX_WEIGHT, text);
      return FALSE;
    }
  *out = (guint) value;
  return TRUE;
}

static gboolean
read_display (GKeyFile *kf, DhfConfig *self, GError **error)
{
  g_autofree gchar *cycle_dom0 = NULL;
  const gchar *fallback;

  if (!dhf_config_read_string (kf, "Display", "Fallback", &self->focus_fallback, error))
    return FALSE;
  fallback = self->focus_fallback;
  if (!g_str_equal (fallback, "dom0") && !g_str_equal (fallback, "@previous")
      && !dhf_policy_name_is_valid (fallback))
    {
      g_set_error (error, DHF_ERROR, DHF_ERROR_INVALID_ARGS,
                   "[Display] Fallback: expected dom0, @previous or an appliance name, not '%s'",
                   fallback);
      return FALSE;
    }
  if (!read_weight (kf, "FocusedWeight", &self->focused_weight, error)
      || !read_weight (kf, "NormalWeight", &self->normal_weight, error))
    return FALSE;
  /* A weight of 0 for some domains only would be written to libvirt,
   * which refuses it: 0 means "leave them alone", for all or none. */
  if ((self->focused_weight == 0) != (self->normal_weight == 0))
    {
      g_set_error (error, DHF_ERROR, DHF_ERROR_INVALID_ARGS,
                   "[Display] %s: 0 leaves CPU weights alone, so %s must be 0 too (it is %u)",
                   self->focused_weight == 0 ? "FocusedWeight" : "NormalWeight",
                   self->focused_weight == 0 ? "NormalWeight" : "FocusedWeight",
                   self->focused_weight == 0 ? self->normal_weight : self->focused_weight);
      return FALSE;
    }
  if (!read_list (kf, "Display", "Order", check_order_name, &self->switch_order, error))
    return FALSE;
  if (!dhf_config_read_string (kf, "Display", "CycleDom0", &cycle_dom0, error))
    return FALSE;
  if (cycle_dom0 != NULL)
    {
      if (g_str_equal (cycle_dom0, "true"))
        self->cycle_dom0 = TRUE;
      else if (g_str_equal (cycle_dom0, "false"))
        self->cycle_dom0 = FALSE;
      else
        {
          g_set_error (error, DHF_ERROR, DHF_ERROR_INVALID_ARGS,
                       "[Display] CycleDom0: expected true or false, not '%s'", cycle_dom0);
          return FALSE;
        }
    }
  return TRUE;
}

/* SlotModifiers: modifiers only, each once, any order and case
 * ("ctrl+ALT"), written back in the order dhf.policy(5) prints combos. */
static gboolean
read_slot_modifiers (GKeyFile *kf, DhfConfig *self, GError **error)
{
  static const gchar *const names[] = { "Ctrl", "Alt", "Shift", "Super" };
  g_autofree gchar *text = NULL;
  g_auto (GStrv) parts = NULL;
  g_autoptr (GString) normalised = g_string_new (NULL);
  gboolean seen[G_N_ELEMENTS (names)] = { FALSE };

  if (!dhf_config_read_string (kf, "Hotkeys", "SlotModifiers", &text, error))
    return FALSE;
  if (text == NULL)
    return TRUE;
  parts = g_strsplit (text, "+", -1);
  for (guint i = 0; parts[i] != NULL; i++)
    {
      const gchar *part = g_strstrip (parts[i]);
      guint m;

      for (m = 0; m < G_N_ELEMENTS (names) && g_ascii_strcasecmp (part, names[m]) != 0; m++)
        ;
      if (m == G_N_ELEMENTS (names) || seen[m])
        {
          g_set_error (error, DHF_ERROR, DHF_ERROR_INVALID_ARGS,
                       "[Hotkeys] SlotModifiers: expected modifiers only (Ctrl, Alt, Shift, "
                       "Super), each at most once, joined by '+' (such as Ctrl+Alt), not '%s'",
                       text);
          return FALSE;
        }
      seen[m] = TRUE;
    }
  for (guint m = 0; m < G_N_ELEMENTS (names); m++)
    {
      if (seen[m])
        g_string_append_printf (normalised, "%s%s", normalised->len > 0 ? "+" : "", names[m]);
    }
  g_free (self->hotkey_slot_modifiers);
  self->hotkey_slot_modifiers = g_string_free (g_steal_pointer (&normalised), FALSE);
  return TRUE;
}

gboolean
dhf_config_read_devices (GKeyFile *kf, DhfConfig *self, GError **error)
{
  if (!read_list (kf, "Devices", "EmulatedInput", check_input_type, &self->emulated_inputs, error))
    return FALSE;
  if (!read_state_file (kf, self, error))
    return FALSE;
  if (!read_display (kf, self, error))
    return FALSE;
  if (!read_list (kf, "Hotkeys", "Keyboards", check_absolute_path, &self->hotkey_keyboards, error))
    return FALSE;
  return read_slot_modifiers (kf, self, error);
}
