/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

#include <glib.h>

G_BEGIN_DECLS

#define DHF_CONFIG_DEFAULT_PATH DHF_SYSCONFDIR "/dhfd.conf"

typedef enum
{
  DHF_AUTH_MODE_AUTO,     /* polkit on the system bus, peer-uid elsewhere */
  DHF_AUTH_MODE_POLKIT,   /* named polkit action per mutating method */
  DHF_AUTH_MODE_PEER_UID, /* callers running as dhfd's uid, or root */
} DhfAuthMode;

/* dhfd.conf, after validation. Every field has a default, so a missing
 * default file leaves a working daemon. */
typedef struct
{
  gchar *hypervisor_uri;
  gchar *domain_type; /* "auto", "kvm", "qemu", "xen" or "test" */
  gchar *storage_dir;
  gchar *console_log_dir; /* ConsoleLogDirectory: appliances' serial console
                           * output, DIR/NAME.log; NULL (default): not kept */
  guint shutdown_timeout_s;
  DhfAuthMode auth_mode;
  gchar **policy_dirs;     /* admin directory first, vendor directory last */
  gchar *policy_last_good; /* where the last good policy is saved */

  /* [XDM]: the transports ... */
  gchar *xdm_socket;           /* dom0 socket; NULL: DHF_XDM_DEFAULT_SOCKET on the system bus,
                                * none on another bus */
  guint xdm_socket_mode;       /* permission bits of the socket */
  gchar *xdm_socket_group;     /* NULL: "dhf" if that group exists, else left as created */
  guint32 xdm_vsock_port;      /* 0: no vsock listener */
  gboolean xdm_vsock_port_set; /* FALSE: xdm_vsock_port on the system bus, none elsewhere */
  /* ... and the router's limits, the fields of DhfXdmLimits (dhf-xdm-router.h;
   * dhfd copies them there), with its defaults */
  guint xdm_max_calls_in_flight;
  guint64 xdm_max_queued_bytes;
  guint xdm_max_registrations;
  guint xdm_max_subscriptions;
  guint xdm_max_streams;
  guint xdm_max_clients;
  guint xdm_max_connections_per_domain;
  guint xdm_max_pending_questions;
  guint xdm_ask_timeout_s;

  /* [Devices]: the device-assignment engine (docs/devices.md) */
  gchar **emulated_inputs;  /* EmulatedInput=keyboard;tablet: libvirt input devices that
                             * dhfd assigns like host devices; empty by default */
  gchar *device_state_file; /* StateFile: focus, history and admin pins
                             * (DHF_LOCALSTATEDIR/devices.json) */
  /* [Display]: focus and switching (docs/display.md) */
  gchar *focus_fallback; /* Fallback=dom0 | @previous | NAME */
  guint focused_weight;  /* FocusedWeight=1024 (0: CPU weights are left alone) */
  guint normal_weight;   /* NormalWeight=256 */
  gchar **switch_order;  /* Order=NAME;...: environments first in Next/Previous */
  gboolean cycle_dom0;   /* CycleDom0=false */
  /* [Hotkeys] */
  gchar **hotkey_keyboards;     /* Keyboards=/dev/input/by-path/...;...: evdev devices read */
  gchar *hotkey_slot_modifiers; /* SlotModifiers=Ctrl+Alt: MODS+1..9 switch to the Nth
                                 * environment of the cycle; NULL: none */
} DhfConfig;

DhfConfig *dhf_config_new (void);
gboolean dhf_config_load (DhfConfig *self, const gchar *path, gboolean must_exist, GError **error);
gboolean dhf_config_load_data (DhfConfig *self, const gchar *data, const gchar *origin,
                               GError **error);
gboolean dhf_config_set_xdm_socket (DhfConfig *self, const gchar *path, GError **error);
void dhf_config_free (DhfConfig *self);
G_DEFINE_AUTOPTR_CLEANUP_FUNC (DhfConfig, dhf_config_free)

G_END_DECLS
