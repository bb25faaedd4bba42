/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include "config.h"

#include <string.h>

#include <libvirt/libvirt.h>
#include <libvirt/virterror.h>

#include "dhf-device.h"
#include "dhf-hypervisor-devices.h"
#include "dhf-hypervisor-error.h"
#include "dhf-hypervisor-private.h"

/* The hold time of virDomainSendKey: long enough for a guest to see a
 * press, short enough not to autorepeat. */
#define SEND_KEY_HOLD_MS 10
/* "ua-dhf-" and an id of at most 64 bytes. */
#define ALIAS_MAX_LEN (sizeof DHF_DEVICE_ALIAS_PREFIX - 1 + 64)

/* One domain, looked up by name on the live connection. */
typedef struct
{
  virConnectPtr conn;
  virDomainPtr dom;
  const gchar *name;
} Target;

static void
target_clear (Target *target)
{
  if (target->dom != NULL)
    virDomainFree (target->dom);
  if (target->conn != NULL)
    virConnectClose (target->conn);
  target->dom = NULL;
  target->conn = NULL;
}

G_DEFINE_AUTO_CLEANUP_CLEAR_FUNC (Target, target_clear)

/* libvirt's error for the call that just failed on this thread; a
 * connection that died under the call makes it HYPERVISOR_UNAVAILABLE,
 * whatever libvirt called it. */
G_GNUC_PRINTF (3, 4)
static gboolean
target_fail (Target *target, GError **error, const gchar *format, ...)
{
  g_autoptr (GError) local_error = NULL;
  g_autofree gchar *what = NULL;
  va_list args;

  va_start (args, format);
  what = g_strdup_vprintf (format, args);
  va_end (args);
  dhf_hypervisor_set_error (&local_error, what);
  if (virConnectIsAlive (target->conn) != 1)
    {
      local_error->code = DHF_ERROR_HYPERVISOR_UNAVAILABLE;
      virResetLastError ();
    }
  g_propagate_error (error, g_steal_pointer (&local_error));
  return FALSE;
}

static gboolean
target_open (DhfHypervisor *hypervisor, const gchar *name, Target *target, GError **error)
{
  if (name == NULL || *name == '\0')
    {
      g_set_error_literal (error, DHF_ERROR, DHF_ERROR_INVALID_ARGS, "no domain name given");
      return FALSE;
    }
  target->name = name;
  target->conn = dhf_hypervisor_dup_connection (hypervisor, error);
  if (target->conn == NULL)
    return FALSE;
  target->dom = virDomainLookupByName (target->conn, name);
  if (target->dom == NULL)
    return target_fail (target, error, "domain '%s'", name);
  return TRUE;
}

/* flags: 0 for the live definition of a running domain (an inactive
 * domain's persistent one), VIR_DOMAIN_XML_INACTIVE for the persistent. */
static gchar *
target_read_xml (Target *target, unsigned int flags, GError **error)
{
  char *raw = virDomainGetXMLDesc (target->dom, flags);
  gchar *xml;

  if (raw == NULL)
    {
      target_fail (target, error, "reading the %s definition of '%s'",
                   flags & VIR_DOMAIN_XML_INACTIVE ? "persistent" : "live", target->name);
      return NULL;
    }
  xml = g_strdup (raw);
  free (raw);
  return xml;
}

/* --- reading domain XML cheaply --------------------------------------
 * A switch reads the domain's XML before every attach and detach, so
 * these look at libvirt's own formatting with plain string searches
 * instead of parsing whole documents. libvirt writes the root tag, the
 * <devices> element and every alias in one fixed form. */

/* Whether xml (from virDomainGetXMLDesc without INACTIVE) describes a
 * running instance: libvirt gives the root element an id only then. */
static gboolean
xml_is_live (const gchar *xml)
{
  const gchar *root = strstr (xml, "<domain ");
  const gchar *end = root != NULL ? strchr (root, '>') : NULL;

  return end != NULL && g_strstr_len (root, end - root, " id='") != NULL;
}

/* The <devices> element of a domain's XML: only there does an alias name
 * a device (the metadata may quote any text). Empty when there is none. */
static const gchar *
xml_devices (const gchar *xml, gsize *len)
{
  const gchar *start = strstr (xml, "<devices>");
  const gchar *end = start != NULL ? strstr (start, "</devices>") : NULL;

  if (end == NULL)
    {
      *len = 0;
      return "";
    }
  *len = end + strlen ("</devices>") - start;
  return start;
}

/* Where the device of this alias is in devices, or NULL. */
static const gchar *
find_alias (const gchar *devices, gsize len, const gchar *alias)
{
  g_autofree gchar *needle = g_strdup_printf ("<alias name='%s'/>", alias);

  return g_strstr_len (devices, len, needle);
}

static gboolean
xml_has_alias (const gchar *xml, const gchar *alias)
{
  gsize len;
  const gchar *devices = xml_devices (xml, &len);

  return find_alias (devices, len, alias) != NULL;
}

/* The whole <input> or <hostdev> element that carries alias in xml, as
 * libvirt wrote it (with its address), or NULL. Neither element nests in
 * itself, so the nearest opening tag before the alias is the right one. */
static gchar *
xml_device_element (const gchar *xml, const gchar *alias)
{
  static const gchar *const names[] = { "input", "hostdev" };
  gsize len;
  const gchar *devices = xml_devices (xml, &len);
  const gchar *at = find_alias (devices, len, alias);
  const gchar *open = NULL, *close = NULL;
  const gchar *name = NULL;

  if (at == NULL)
    return NULL;
  for (guint i = 0; i < G_N_ELEMENTS (names); i++)
    {
      g_autofree gchar *tag = g_strdup_printf ("<%s ", names[i]);
      const gchar *found = g_strrstr_len (devices, at - devices, tag);

      if (found != NULL && (open == NULL || found > open))
        {
          open = found;
          name = names[i];
        }
    }
  if (open != NULL)
    {
      g_autofree gchar *end_tag = g_strdup_printf ("</%s>", name);

      close = strstr (at, end_tag);
      if (close != NULL)
        close += strlen (end_tag);
    }
  if (close == NULL)
    return NULL;
  return g_strndup (open, close - open);
}

/* --- the device XML we are given ------------------------------------- */

typedef struct
{
  guint depth;
  gchar *root;
  gchar *alias;
} DeviceParse;

static void
device_parse_start (GMarkupParseContext *context, const gchar *element,
                    const gchar **attribute_names, const gchar **attribute_values,
                    gpointer user_data, GError **error)
{
  DeviceParse *parse = user_data;
  const gchar *name = NULL;

  parse->depth++;
  if (parse->depth == 1)
    {
      parse->root = g_strdup (element);
      return;
    }
  if (parse->depth != 2 || strcmp (element, "alias") != 0)
    return;
  if (!g_markup_collect_attributes (element, attribute_names, attribute_values, error,
                                    G_MARKUP_COLLECT_STRING, "name", &name,
                                    G_MARKUP_COLLECT_INVALID))
    return;
  if (parse->alias != NULL)
    {
      g_set_error_literal (error, G_MARKUP_ERROR, G_MARKUP_ERROR_INVALID_CONTENT,
                           "more than one <alias>");
      return;
    }
  parse->alias = g_strdup (name);
}

static void
device_parse_end (GMarkupParseContext *context, const gchar *element, gpointer user_data,
                  GError **error)
{
  DeviceParse *parse = user_data;

  parse->depth--;
}

static gboolean
alias_is_valid (const gchar *alias)
{
  if (!g_str_has_prefix (alias, DHF_DEVICE_ALIAS_PREFIX)
      || strlen (alias) == strlen (DHF_DEVICE_ALIAS_PREFIX) || strlen (alias) > ALIAS_MAX_LEN)
    return FALSE;
  for (const gchar *c = alias; *c != '\0'; c++)
    {
      if (!g_ascii_isalnum (*c) && *c != '_' && *c != '-')
        return FALSE;
    }
  return TRUE;
}

/* The alias of the <input> or <hostdev> element xml (dhf_device_to_xml),
 * which is how dhfd finds the device in a domain. The characters allowed
 * are those libvirt writes back unescaped. */
static gchar *
device_xml_alias (const gchar *xml, GError **error)
{
  static const GMarkupParser parser = { device_parse_start, device_parse_end, NULL, NULL, NULL };
  g_autoptr (GMarkupParseContext) context = NULL;
  g_autoptr (GError) local_error = NULL;
  g_autofree gchar *root = NULL;
  g_autofree gchar *alias = NULL;
  DeviceParse parse = { 0 };
  gboolean parsed;

  if (xml == NULL)
    {
      g_set_error_literal (error, DHF_ERROR, DHF_ERROR_INVALID_ARGS, "no device XML given");
      return NULL;
    }
  context = g_markup_parse_context_new (&parser, 0, &parse, NULL);
  parsed = g_markup_parse_context_parse (context, xml, -1, &local_error)
           && g_markup_parse_context_end_parse (context, &local_error);
  root = g_steal_pointer (&parse.root);
  alias = g_steal_pointer (&parse.alias);
  if (!parsed)
    {
      g_set_error (error, DHF_ERROR, DHF_ERROR_INVALID_ARGS, "invalid device XML: %s",
                   local_error->message);
      return NULL;
    }
  if (root == NULL || (strcmp (root, "input") != 0 && strcmp (root, "hostdev") != 0))
    {
      g_set_error (error, DHF_ERROR, DHF_ERROR_INVALID_ARGS,
                   "device XML must be an <input> or <hostdev> element, not <%s>",
                   root != NULL ? root : "");
      return NULL;
    }
  if (alias == NULL || !alias_is_valid (alias))
    {
      g_set_error (error, DHF_ERROR, DHF_ERROR_INVALID_ARGS,
                   "device XML needs an <alias name='%s...'/> of [A-Za-z0-9_-], got %s%s%s",
                   DHF_DEVICE_ALIAS_PREFIX, alias != NULL ? "'" : "",
                   alias != NULL ? alias : "none", alias != NULL ? "'" : "");
      return NULL;
    }
  return g_steal_pointer (&alias);
}

/* --- attach and detach ----------------------------------------------- */

/* The live detach: with the element as the domain has it, address and
 * all, because libvirt matches an <input> by type and bus (and address),
 * never by alias, and would otherwise unplug the domain's own twin of our
 * device. libvirt waits for QEMU to remove the device; one that is still
 * there afterwards waits for the guest's consent (PCI): say so. */
static gboolean
detach_live (Target *target, const gchar *live_xml, const gchar *alias, GError **error)
{
  g_autofree gchar *element = xml_device_element (live_xml, alias);
  g_autofree gchar *after = NULL;

  if (element == NULL)
    {
      g_set_error (error, DHF_ERROR, DHF_ERROR_HYPERVISOR,
                   "device '%s' of '%s' is not an <input> or <hostdev> element", alias,
                   target->name);
      return FALSE;
    }
  if (virDomainDetachDeviceFlags (target->dom, element, VIR_DOMAIN_AFFECT_LIVE) < 0)
    return target_fail (target, error, "detaching '%s' from '%s' (live)", alias, target->name);
  after = target_read_xml (target, 0, error);
  if (after == NULL)
    return FALSE;
  if (xml_is_live (after) && xml_has_alias (after, alias))
    {
      g_set_error (error, DHF_ERROR, DHF_ERROR_TIMEOUT,
                   "'%s' has not released device '%s' yet; libvirt removes it when the guest "
                   "does",
                   target->name, alias);
      return FALSE;
    }
  return TRUE;
}

/* The persistent detach goes by alias, which libvirt matches exactly; the
 * persistent definition may have no addresses to tell twins apart. Drivers
 * without alias detach (libxl) get the element. */
static gboolean
detach_config (Target *target, const gchar *config_xml, const gchar *alias, GError **error)
{
  g_autofree gchar *element = NULL;
  virErrorPtr err;

  if (virDomainDetachDeviceAlias (target->dom, alias, VIR_DOMAIN_AFFECT_CONFIG) == 0)
    return TRUE;
  err = virGetLastError ();
  if (err == NULL || err->code != VIR_ERR_NO_SUPPORT)
    return target_fail (target, error, "detaching '%s' from '%s' (persistent)", alias,
                        target->name);
  virResetLastError ();
  element = xml_device_element (config_xml, alias);
  if (element == NULL)
    {
      g_set_error (error, DHF_ERROR, DHF_ERROR_HYPERVISOR,
                   "device '%s' of '%s' is not an <input> or <hostdev> element", alias,
                   target->name);
      return FALSE;
    }
  if (virDomainDetachDeviceFlags (target->dom, element, VIR_DOMAIN_AFFECT_CONFIG) < 0)
    return target_fail (target, error, "detaching '%s' from '%s' (persistent)", alias,
                        target->name);
  return TRUE;
}

static gboolean
change_device (DhfHypervisor *hypervisor, const gchar *domain, const gchar *xml,
               DhfDeviceScope scope, gboolean attach, GError **error)
{
  g_auto (Target) target = { 0 };
  g_autofree gchar *alias = NULL;
  g_autofree gchar *live_xml = NULL;
  g_autofree gchar *config_xml = NULL;
  const DhfDeviceScope asked = scope;
  gboolean live_present = FALSE, config_present = FALSE;
  unsigned int flags = 0;

  if (scope == 0 || (scope & ~(DHF_DEVICE_SCOPE_LIVE | DHF_DEVICE_SCOPE_CONFIG)) != 0)
    {
      g_set_error (error, DHF_ERROR, DHF_ERROR_INVALID_ARGS, "invalid device scope 0x%x",
                   (guint) scope);
      return FALSE;
    }
  alias = device_xml_alias (xml, error);
  if (alias == NULL || !target_open (hypervisor, domain, &target, error))
    return FALSE;

  /* Only what the scope needs is read. A follow-focus move is LIVE|CONFIG
   * (the persistent definition is kept in step): on a persistent domain
   * that is the live and the persistent XML before the attach or detach
   * (and a live detach one more read after it). */
  if (scope & DHF_DEVICE_SCOPE_CONFIG)
    {
      int persistent = virDomainIsPersistent (target.dom);

      if (persistent < 0)
        return target_fail (&target, error, "domain '%s'", domain);
      if (persistent == 0)
        scope &= ~DHF_DEVICE_SCOPE_CONFIG;
    }
  if (scope & DHF_DEVICE_SCOPE_LIVE)
    {
      live_xml = target_read_xml (&target, 0, error);
      if (live_xml == NULL)
        return FALSE;
      if (!xml_is_live (live_xml))
        {
          scope &= ~DHF_DEVICE_SCOPE_LIVE;
          /* An inactive domain's XML is its persistent definition. */
          config_xml = g_steal_pointer (&live_xml);
        }
    }
  if (scope == 0)
    {
      /* Nothing of the domain is in that scope: nothing to remove, and
       * nowhere to put a device. */
      if (!attach)
        return TRUE;
      g_set_error (error, DHF_ERROR, DHF_ERROR_INVALID_STATE,
                   (asked & DHF_DEVICE_SCOPE_LIVE)
                       ? "cannot attach '%s' live: domain '%s' is not running"
                       : "cannot attach '%s' to the persistent definition of '%s': it is transient",
                   alias, domain);
      return FALSE;
    }
  if ((scope & DHF_DEVICE_SCOPE_CONFIG) && config_xml == NULL)
    {
      config_xml = target_read_xml (&target, VIR_DOMAIN_XML_INACTIVE, error);
      if (config_xml == NULL)
        return FALSE;
    }
  if (scope & DHF_DEVICE_SCOPE_LIVE)
    live_present = xml_has_alias (live_xml, alias);
  if (scope & DHF_DEVICE_SCOPE_CONFIG)
    config_present = xml_has_alias (config_xml, alias);

  if (!attach)
    {
      if ((scope & DHF_DEVICE_SCOPE_LIVE) && live_present
          && !detach_live (&target, live_xml, alias, error))
        return FALSE;
      if ((scope & DHF_DEVICE_SCOPE_CONFIG) && config_present
          && !detach_config (&target, config_xml, alias, error))
        return FALSE;
      return TRUE;
    }

  if ((scope & DHF_DEVICE_SCOPE_LIVE) && !live_present)
    flags |= VIR_DOMAIN_AFFECT_LIVE;
  if ((scope & DHF_DEVICE_SCOPE_CONFIG) && !config_present)
    flags |= VIR_DOMAIN_AFFECT_CONFIG;
  if (flags == 0)
    return TRUE;
  /* Both at once: libvirt keeps the persistent change only when the live
   * one worked. */
  if (virDomainAttachDeviceFlags (target.dom, xml, flags) < 0)
    return target_fail (&target, error, "attaching '%s' to '%s'", alias, domain);
  return TRUE;
}

static gboolean
ops_attach (gpointer data, const gchar *domain, const gchar *xml, DhfDeviceScope scope,
            GError **error)
{
  return change_device (data, domain, xml, scope, TRUE, error);
}

static gboolean
ops_detach (gpointer data, const gchar *domain, const gchar *xml, DhfDeviceScope scope,
            GError **error)
{
  return change_device (data, domain, xml, scope, FALSE, error);
}

/* --- list_attached ---------------------------------------------------- */

typedef struct
{
  guint depth;
  gboolean in_device; /* inside a <hostdev> or <input> */
  GPtrArray *aliases;
} ListParse;

static void
list_parse_start (GMarkupParseContext *context, const gchar *element, const gchar **attribute_names,
                  const gchar **attribute_values, gpointer user_data, GError **error)
{
  ListParse *parse = user_data;

  /* depth 1 is <devices>, 2 the devices, 3 their children. */
  parse->depth++;
  if (parse->depth == 2)
    parse->in_device = strcmp (element, "hostdev") == 0 || strcmp (element, "input") == 0;
  if (parse->depth != 3 || !parse->in_device || strcmp (element, "alias") != 0)
    return;
  for (guint i = 0; attribute_names[i] != NULL; i++)
    {
      const gchar *value = attribute_values[i];

      if (strcmp (attribute_names[i], "name") == 0
          && g_str_has_prefix (value, DHF_DEVICE_ALIAS_PREFIX)
          && !g_ptr_array_find_with_equal_func (parse->aliases, value, g_str_equal, NULL))
        g_ptr_array_add (parse->aliases, g_strdup (value));
    }
}

static void
list_parse_end (GMarkupParseContext *context, const gchar *element, gpointer user_data,
                GError **error)
{
  ListParse *parse = user_data;

  parse->depth--;
}

/* The dhf aliases of the devices in xml (a domain's XML). */
static GStrv
xml_list_aliases (const gchar *xml, const gchar *domain, GError **error)
{
  static const GMarkupParser parser = { list_parse_start, list_parse_end, NULL, NULL, NULL };
  g_autoptr (GMarkupParseContext) context = NULL;
  g_autoptr (GPtrArray) aliases = g_ptr_array_new_with_free_func (g_free);
  g_autoptr (GError) local_error = NULL;
  ListParse parse = { 0 };
  const gchar *devices;
  gsize len;

  devices = xml_devices (xml, &len);
  parse.aliases = aliases;
  context = g_markup_parse_context_new (&parser, 0, &parse, NULL);
  if (len > 0
      && (!g_markup_parse_context_parse (context, devices, len, &local_error)
          || !g_markup_parse_context_end_parse (context, &local_error)))
    {
      g_set_error (error, DHF_ERROR, DHF_ERROR_HYPERVISOR, "cannot read the devices of '%s': %s",
                   domain, local_error->message);
      return NULL;
    }
  g_ptr_array_add (aliases, NULL);
  return (GStrv) g_ptr_array_steal (aliases, NULL);
}

static GStrv
ops_list_attached (gpointer data, const gchar *domain, gboolean *active, GError **error)
{
  g_auto (Target) target = { 0 };
  g_autofree gchar *xml = NULL;
  GStrv aliases;

  if (!target_open (data, domain, &target, error))
    return NULL;
  /* One read: the live definition of a running domain, else the
   * persistent one; the XML itself tells which it is. */
  xml = target_read_xml (&target, 0, error);
  if (xml == NULL)
    return NULL;
  aliases = xml_list_aliases (xml, domain, error);
  if (aliases != NULL && active != NULL)
    *active = xml_is_live (xml);
  return aliases;
}

/* The persistent definition; libvirt gives a transient domain's live one. */
static GStrv
ops_list_attached_config (gpointer data, const gchar *domain, GError **error)
{
  g_auto (Target) target = { 0 };
  g_autofree gchar *xml = NULL;

  if (!target_open (data, domain, &target, error))
    return NULL;
  xml = target_read_xml (&target, VIR_DOMAIN_XML_INACTIVE, error);
  if (xml == NULL)
    return NULL;
  return xml_list_aliases (xml, domain, error);
}

/* --- weights and keys ------------------------------------------------- */

static gboolean
ops_set_weight (gpointer data, const gchar *domain, guint weight, GError **error)
{
  g_auto (Target) target = { 0 };
  virTypedParameterPtr params = NULL;
  int n_params = 0, max_params = 0, rc;
  unsigned int flags;
  gboolean posix;
  char *scheduler;

  if (!target_open (data, domain, &target, error))
    return FALSE;
  scheduler = virDomainGetSchedulerType (target.dom, &n_params);
  if (scheduler == NULL)
    return target_fail (&target, error, "reading the CPU scheduler of '%s'", domain);
  posix = strcmp (scheduler, "posix") == 0;
  free (scheduler);
  n_params = 0;
  if (posix)
    {
      /* QEMU: cgroup CPU shares. */
      rc = virTypedParamsAddULLong (&params, &n_params, &max_params,
                                    VIR_DOMAIN_SCHEDULER_CPU_SHARES, weight);
      flags = VIR_DOMAIN_AFFECT_LIVE;
    }
  else
    {
      int active = virDomainIsActive (target.dom);

      /* Xen credit and the test driver's "fair" take no flags; on a
       * running domain "current" is the live one. */
      if (active < 0)
        return target_fail (&target, error, "domain '%s'", domain);
      if (active == 0)
        {
          g_set_error (error, DHF_ERROR, DHF_ERROR_INVALID_STATE,
                       "cannot set the CPU weight of '%s': it is not running", domain);
          return FALSE;
        }
      rc = virTypedParamsAddUInt (&params, &n_params, &max_params, VIR_DOMAIN_SCHEDULER_WEIGHT,
                                  weight);
      flags = VIR_DOMAIN_AFFECT_CURRENT;
    }
  if (rc == 0)
    rc = virDomainSetSchedulerParametersFlags (target.dom, params, n_params, flags);
  virTypedParamsFree (params, n_params);
  if (rc < 0)
    return target_fail (&target, error, "setting the CPU weight of '%s' to %u", domain, weight);
  return TRUE;
}

static gboolean
ops_release_keys (gpointer data, const gchar *domain, const guint *keycodes, guint n_keycodes,
                  GError **error)
{
  g_auto (Target) target = { 0 };
  g_autofree guint *codes = NULL;

  if (n_keycodes > VIR_DOMAIN_SEND_KEY_MAX_KEYS)
    {
      g_set_error (error, DHF_ERROR, DHF_ERROR_INVALID_ARGS,
                   "cannot send %u keys at once; at most %d", n_keycodes,
                   VIR_DOMAIN_SEND_KEY_MAX_KEYS);
      return FALSE;
    }
  if (n_keycodes > 0 && keycodes == NULL)
    {
      g_set_error_literal (error, DHF_ERROR, DHF_ERROR_INVALID_ARGS, "no key codes given");
      return FALSE;
    }
  if (!target_open (data, domain, &target, error))
    return FALSE;
  /* No key is held: nothing to release. */
  if (n_keycodes == 0)
    return TRUE;
  codes = g_memdup2 (keycodes, n_keycodes * sizeof *codes);
  if (virDomainSendKey (target.dom, VIR_KEYCODE_SET_LINUX, SEND_KEY_HOLD_MS, codes, n_keycodes, 0)
      < 0)
    return target_fail (&target, error, "sending keys to '%s'", domain);
  return TRUE;
}

static const DhfDeviceOps device_ops = {
  .attach = ops_attach,
  .detach = ops_detach,
  .list_attached = ops_list_attached,
  .set_weight = ops_set_weight,
  .release_keys = ops_release_keys,
  .list_attached_config = ops_list_attached_config,
};

const DhfDeviceOps *
dhf_hypervisor_device_ops (void)
{
  return &device_ops;
}
