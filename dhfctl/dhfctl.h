/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

#include <dhf/dhf.h>
#include <json-c/json.h>

G_BEGIN_DECLS

/* Exit statuses; man/dhfctl.1 documents them, scripts rely on them. */
typedef enum
{
  DHFCTL_EXIT_OK = 0,
  DHFCTL_EXIT_FAILED = 1,         /* dhfd (or a local step) failed the operation */
  DHFCTL_EXIT_USAGE = 2,          /* bad command line */
  DHFCTL_EXIT_UNREACHABLE = 3,    /* no bus, or nobody owns org.dhf.Framework1, or no
                                   * XDM session (DHF_ERROR_DISCONNECTED) */
  DHFCTL_EXIT_NOT_FOUND = 4,      /* no such appliance (or XDM service, device, admin pin) */
  DHFCTL_EXIT_NOT_AUTHORIZED = 5, /* NotAuthorized or AccessDenied */
} DhfctlExit;

/* Call timeouts when --timeout is not given: installing copies disks and
 * stopping waits for the guest; everything else answers quickly. */
#define DHFCTL_DEFAULT_TIMEOUT_S 25
#define DHFCTL_LONG_TIMEOUT_S    120

/* Largest manifest dhfctl sends; matches the daemon's own limit. */
#define DHFCTL_MANIFEST_MAX_SIZE (256 * 1024)

#define DHFCTL_APPLIANCE_INTERFACE "org.dhf.Framework1.Appliance"
#define DHFCTL_DEVICES_INTERFACE   "org.dhf.Framework1.Devices"
#define DHFCTL_DISPLAY_INTERFACE   "org.dhf.Framework1.Display"

typedef struct
{
  /* Global options, as parsed */
  gboolean system_bus;
  gboolean session_bus;
  gchar *address;
  gboolean json;
  gboolean json_lines; /* set by watch commands: one JSON object per line,
                        * an error included */
  gchar *timeout;      /* seconds, validated into timeout_s */

  guint timeout_s;  /* 0: the command's default */
  gint exit_status; /* a command that did its job but reports a failure
                     * (policy check found errors) sets it and returns TRUE */
  GDBusConnection *connection;
  gchar *bus_description; /* "the system bus", for messages */
} DhfctlContext;

typedef struct _DhfctlCommand DhfctlCommand;

/* Commands parse their own arguments (dhfctl_parse_command_line()); argv[0]
 * is the command name. */
typedef gboolean (*DhfctlCommandFunc) (DhfctlContext *ctx, const DhfctlCommand *cmd, int argc,
                                       char **argv, GError **error);

struct _DhfctlCommand
{
  const gchar *name;
  const gchar *args;    /* positional arguments, for usage lines */
  const gchar *summary; /* one line for the command list */
  DhfctlCommandFunc func;
};

/* dhfctl.c */
gboolean dhfctl_parse_command_line (DhfctlContext *ctx, const DhfctlCommand *cmd,
                                    const GOptionEntry *entries, int min_args, int max_args,
                                    int *argc, char ***argv, GError **error);

/* dhfctl-bus.c */
gboolean dhfctl_connect (DhfctlContext *ctx, GError **error);
GDBusObjectManager *dhfctl_get_object_manager (DhfctlContext *ctx, GError **error);
DhfDBusManager *dhfctl_get_manager (DhfctlContext *ctx, GError **error);
DhfDBusPolicy *dhfctl_get_policy (DhfctlContext *ctx, GError **error);
DhfDBusDevices *dhfctl_get_devices (DhfctlContext *ctx, GError **error);
DhfDBusDisplay *dhfctl_get_display (DhfctlContext *ctx, GError **error);
DhfDBusAppliance *dhfctl_lookup_appliance (GDBusObjectManager *manager, const gchar *name,
                                           GError **error);
GList *dhfctl_list_appliances (GDBusObjectManager *manager);
gboolean dhfctl_check_name (const gchar *name, GError **error);
void dhfctl_set_call_timeout (DhfctlContext *ctx, gpointer proxy, guint default_s);
void dhfctl_strip_remote_error (GError *error);
void dhfctl_propagate_call_error (GError **dest, GError *src, const gchar *interface,
                                  const gchar *format, ...) G_GNUC_PRINTF (4, 5);
DhfctlExit dhfctl_exit_status_for_error (const GError *error);
gchar *dhfctl_error_name (const GError *error);

/* dhfctl-output.c */
typedef struct _DhfctlTable DhfctlTable;

DhfctlTable *dhfctl_table_new (guint n_columns);
void dhfctl_table_add_row (DhfctlTable *table, ...) G_GNUC_NULL_TERMINATED;
void dhfctl_table_print (const DhfctlTable *table);
void dhfctl_table_free (DhfctlTable *table);
G_DEFINE_AUTOPTR_CLEANUP_FUNC (DhfctlTable, dhfctl_table_free)

gsize dhfctl_display_width (const gchar *text);
gchar *dhfctl_sanitize (const gchar *text);
const gchar *dhfctl_or_dash (const gchar *text);
const gchar *dhfctl_yes_no (gboolean value);
void dhfctl_print_json (json_object *object);
void dhfctl_print_json_line (json_object *object);
json_object *dhfctl_json_string (const gchar *text);
json_object *dhfctl_variant_to_json (GVariant *value);
json_object *dhfctl_vardict_to_json (GVariant *dict);
void dhfctl_print_error (DhfctlContext *ctx, const GError *error);

G_DEFINE_AUTOPTR_CLEANUP_FUNC (json_object, json_object_put)

/* dhfctl-appliance.c */
gboolean dhfctl_cmd_list (DhfctlContext *ctx, const DhfctlCommand *cmd, int argc, char **argv,
                          GError **error);
gboolean dhfctl_cmd_show (DhfctlContext *ctx, const DhfctlCommand *cmd, int argc, char **argv,
                          GError **error);
gboolean dhfctl_cmd_lifecycle (DhfctlContext *ctx, const DhfctlCommand *cmd, int argc, char **argv,
                               GError **error);
gboolean dhfctl_cmd_stop (DhfctlContext *ctx, const DhfctlCommand *cmd, int argc, char **argv,
                          GError **error);

/* dhfctl-manager.c */
gboolean dhfctl_cmd_install (DhfctlContext *ctx, const DhfctlCommand *cmd, int argc, char **argv,
                             GError **error);
gboolean dhfctl_cmd_remove (DhfctlContext *ctx, const DhfctlCommand *cmd, int argc, char **argv,
                            GError **error);
gboolean dhfctl_cmd_status (DhfctlContext *ctx, const DhfctlCommand *cmd, int argc, char **argv,
                            GError **error);

/* dhfctl-policy.c */
gboolean dhfctl_cmd_policy (DhfctlContext *ctx, const DhfctlCommand *cmd, int argc, char **argv,
                            GError **error);

/* dhfctl-devices.c */
gboolean dhfctl_cmd_devices (DhfctlContext *ctx, const DhfctlCommand *cmd, int argc, char **argv,
                             GError **error);

/* dhfctl-display.c */
gboolean dhfctl_cmd_switch (DhfctlContext *ctx, const DhfctlCommand *cmd, int argc, char **argv,
                            GError **error);
gboolean dhfctl_cmd_focus (DhfctlContext *ctx, const DhfctlCommand *cmd, int argc, char **argv,
                           GError **error);
gboolean dhfctl_cmd_screenshot (DhfctlContext *ctx, const DhfctlCommand *cmd, int argc, char **argv,
                                GError **error);

/* dhfctl-watch.c */
typedef struct
{
  GMainLoop *loop;      /* while dhfctl_watch_wait() runs */
  gboolean lost;        /* what is watched went away */
  gboolean interrupted; /* SIGINT, SIGTERM or SIGHUP */
} DhfctlWatch;

/* What the watch watches went away: ends dhfctl_watch_wait(), or keeps
 * it from waiting at all. */
void dhfctl_watch_set_lost (DhfctlWatch *watch);
/* Runs the main loop until SIGINT, SIGTERM or SIGHUP, or until
 * dhfctl_watch_set_lost(); FALSE when the watch was lost rather than
 * interrupted. watch starts zeroed. */
gboolean dhfctl_watch_wait (DhfctlWatch *watch);
/* Waits while proxy's dhfd stays on the bus; "lost dhfd while watching
 * WHAT" when it leaves. */
gboolean dhfctl_watch_run (DhfctlContext *ctx, GDBusProxy *proxy, const gchar *what,
                           GError **error);

/* dhfctl-xdm.c */
gboolean dhfctl_cmd_xdm (DhfctlContext *ctx, const DhfctlCommand *cmd, int argc, char **argv,
                         GError **error);

G_END_DECLS
