/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* dhf-example-guest: the program of a tiny Linux appliance (busybox
 * initramfs, no udev), talking to dhfd over the appliance's XDM channel.
 *
 * It offers org.dhf.example.Guest1 (the ops are in README.md and
 * guest-service.c), publishes org.dhf.example.guest.Input when the kernel
 * adds or removes an input device and, with --power-button,
 * org.dhf.example.guest.Power when the ACPI power button is pressed; then
 * it exits 0, which the guest's init takes as "power off".
 *
 * On the host it can stand in for an appliance: --address listen:PATH
 * listens on the socket a test-driver domain names as its channel, and
 * dhfd connects to it as to a real virtio-serial port (README.md).
 *
 * Exit status: 0 after a power button press, 1 on SIGTERM or SIGINT (so
 * that an init does not mistake a stop for a power-off), 2 on bad usage
 * (an unknown option, an address that is not one).
 *
 * The example's sources include no config.h: they are built as an ISV
 * builds them, with pkg-config dhf-1 json-c alone (README.md). */
#include <dhf/dhf.h>
#include <glib-unix.h>
#include <locale.h>
#include <signal.h>

#include "guest-app.h"
#include "guest-input-watcher.h"
#include "guest-log.h"
#include "guest-params.h"
#include "guest-power-button.h"
#include "guest-procfs.h"

/* Retrying a connection that failed outright (unix: or vsock: with no
 * dhfd there); a guest's channel waits for dhfd by itself. */
#define RETRY_MIN_S 1
#define RETRY_MAX_S 30
/* How long the power-off barrier may take before the guest goes anyway. */
#define BARRIER_TIMEOUT_MS 5000

typedef struct
{
  GuestApp app;
  GuestPowerButton *power_button; /* NULL without --power-button */
  GuestInputWatcher *input;       /* NULL when the kernel's uevents cannot be had */
  guint retry_s;
  guint retry_id;
  gboolean connected; /* as last notified */
  gboolean powering_off;
} Guest;

static void start_connecting (Guest *guest);

/* ---- the session ------------------------------------------------------------- */

static void
register_service (Guest *guest)
{
  g_autoptr (GError) error = NULL;

  /* Once: after a reconnection the SDK registers it again by itself. */
  guest->app.registration = dhf_client_register_service (
      guest->app.client, GUEST_SERVICE, guest_service_handle, &guest->app, NULL, &error);
  if (guest->app.registration == 0)
    guest_log ("cannot offer %s: %s; trying again at the next session", GUEST_SERVICE,
               error->message);
  else
    guest_log ("offering %s as %s", GUEST_SERVICE, dhf_client_get_domain (guest->app.client));
}

/* Every WELCOME (the first, and each after dhfd restarted or the channel
 * was reconnected) turns "connected" on. The SDK notifies once per
 * transition, in order, so the notifications alternate; the client's
 * state now may already be a later one (lost and back), so it is not
 * what a notification is about. */
static void
on_connected_changed (GObject *object, GParamSpec *pspec, gpointer user_data)
{
  Guest *guest = user_data;
  DhfClient *client = DHF_CLIENT (object);

  guest->connected = !guest->connected;
  if (!guest->connected)
    {
      guest_log ("lost the connection to dhfd; waiting for it to come back");
      return;
    }
  guest->app.sessions++;
  if (guest->app.first_session_uptime_ms < 0)
    {
      g_autoptr (GError) error = NULL;
      gint64 uptime_ms = 0;

      if (guest_procfs_read_uptime (GUEST_PROC_UPTIME, &uptime_ms, &error))
        guest->app.first_session_uptime_ms = uptime_ms;
      else
        guest_log ("%s", error->message);
    }
  guest_log ("connected to dhfd as %s (session %u)", dhf_client_get_domain (client),
             guest->app.sessions);
  if (guest->app.registration == 0)
    register_service (guest);
}

static gboolean
retry_connect (gpointer user_data)
{
  Guest *guest = user_data;

  guest->retry_id = 0;
  start_connecting (guest);
  return G_SOURCE_REMOVE;
}

static void
connect_done (GObject *source, GAsyncResult *res, gpointer user_data)
{
  Guest *guest = user_data;
  g_autoptr (GError) error = NULL;

  if (dhf_client_connect_finish (DHF_CLIENT (source), res, &error))
    return; /* on_connected_changed() takes it from here */
  if (g_cancellable_is_cancelled (guest->app.shutdown))
    return;
  /* An address that is not one (--address bogus:x) never gets better:
   * bad usage, not an outage. */
  if (g_error_matches (error, DHF_ERROR, DHF_ERROR_INVALID_ARGS))
    {
      guest_log ("bad address %s: %s", dhf_client_get_address (guest->app.client), error->message);
      guest->app.exit_status = 2;
      g_main_loop_quit (guest->app.loop);
      return;
    }
  guest_log ("cannot reach dhfd at %s: %s; trying again in %u s",
             dhf_client_get_address (guest->app.client), error->message, guest->retry_s);
  guest->retry_id = g_timeout_add_seconds (guest->retry_s, retry_connect, guest);
  guest->retry_s = MIN (guest->retry_s * 2, RETRY_MAX_S);
}

static void
start_connecting (Guest *guest)
{
  /* In a guest this waits for dhfd to open the channel; the main loop
   * runs meanwhile, so the power button works without dhfd. */
  dhf_client_connect (guest->app.client, guest->app.shutdown, connect_done, guest);
}

/* ---- input devices ------------------------------------------------------------- */

static void
on_input_device (const GuestUevent *event, gpointer user_data)
{
  Guest *guest = user_data;
  g_autoptr (json_object) data = json_object_new_object ();
  g_autoptr (GError) error = NULL;
  g_autofree gchar *text = NULL;

  json_object_object_add (data, "action", json_object_new_string (event->action));
  if (event->name != NULL)
    json_object_object_add (data, "name", json_object_new_string (event->name));
  json_object_object_add (data, "devpath", json_object_new_string (event->devpath));
  text = guest_json_to_text (data);
  /* An event is about now: one that cannot go now is not kept for later. */
  if (!dhf_client_get_connected (guest->app.client))
    guest_log ("input: %s %s (%s); not connected to dhfd, not published", event->action,
               event->name != NULL ? event->name : "(no name)", event->devpath);
  else if (!dhf_client_publish (guest->app.client, GUEST_TOPIC_INPUT, text, &error))
    guest_log ("input: %s %s (%s); cannot publish it: %s", event->action,
               event->name != NULL ? event->name : "(no name)", event->devpath, error->message);
  else
    guest_log ("input: %s %s (%s); published", event->action,
               event->name != NULL ? event->name : "(no name)", event->devpath);
}

static void
on_event_node (const gchar *node, gpointer user_data)
{
  Guest *guest = user_data;

  if (guest->power_button != NULL)
    guest_power_button_add_node (guest->power_button, node);
}

/* ---- the power button -------------------------------------------------------- */

static void
barrier_done (GObject *source, GAsyncResult *res, gpointer user_data)
{
  Guest *guest = user_data;
  g_autoptr (GError) error = NULL;
  g_autofree gchar *result = dhf_client_call_finish (DHF_CLIENT (source), res, &error);

  if (result == NULL)
    guest_log ("power: dhfd did not confirm (%s); powering off all the same", error->message);
  guest->app.exit_status = 0;
  g_main_loop_quit (guest->app.loop);
}

static void
on_power_pressed (const gchar *device, gpointer user_data)
{
  Guest *guest = user_data;
  g_autoptr (GError) error = NULL;

  if (guest->powering_off)
    return;
  guest->powering_off = TRUE;
  guest_log ("power button pressed (%s): powering off", device);
  if (!dhf_client_publish (guest->app.client, GUEST_TOPIC_POWER, "{\"button\":\"power\"}", &error))
    guest_log ("power: cannot publish %s: %s", GUEST_TOPIC_POWER, error->message);
  /* Publishing does not wait. dhfd handles a connection's frames in
   * order, so once it answered a call sent after the event, the event is
   * routed: then the client may close. */
  dhf_client_call (guest->app.client, "org.dhf.framework.Whoami", "dom0", NULL, BARRIER_TIMEOUT_MS,
                   NULL, barrier_done, guest);
}

/* ---- main ---------------------------------------------------------------------- */

static gboolean
on_signal (gpointer user_data)
{
  Guest *guest = user_data;

  guest_log ("stopping on a signal");
  guest->app.exit_status = 1;
  g_main_loop_quit (guest->app.loop);
  return G_SOURCE_CONTINUE;
}

static void
watch_input (Guest *guest)
{
  static const GuestInputWatcherFuncs funcs = {
    .device_changed = on_input_device,
    .event_node_added = on_event_node,
  };
  g_autoptr (GError) error = NULL;

  guest->input = guest_input_watcher_new (&funcs, guest, &error);
  if (guest->input == NULL)
    guest_log ("input: %s; input devices added or removed are not noticed", error->message);
}

int
main (int argc, char **argv)
{
  g_autofree gchar *address = NULL;
  gboolean power_button = FALSE;
  gboolean verbose = FALSE;
  const GOptionEntry entries[] = {
    { "address", 'a', 0, G_OPTION_ARG_STRING, &address,
      "Reach dhfd at ADDR (default: $DHF_XDM_ADDRESS, else the appliance's XDM channel)", "ADDR" },
    { "power-button", 0, 0, G_OPTION_ARG_NONE, &power_button,
      "Publish " GUEST_TOPIC_POWER " and exit 0 when the power button is pressed", NULL },
    { "verbose", 'v', 0, G_OPTION_ARG_NONE, &verbose, "Log every call and event", NULL },
    G_OPTION_ENTRY_NULL,
  };
  g_autoptr (GOptionContext) context = g_option_context_new ("— an example XDM appliance");
  g_autoptr (GError) error = NULL;
  g_autoptr (DhfClient) client = NULL;
  Guest guest = { 0 };
  gint status;

  setlocale (LC_ALL, "");
  g_option_context_add_main_entries (context, entries, NULL);
  if (!g_option_context_parse (context, &argc, &argv, &error))
    {
      g_printerr ("dhf-example-guest: %s\n", error->message);
      return 2;
    }
  if (argc > 1)
    {
      g_printerr ("dhf-example-guest: unexpected argument '%s'\n", argv[1]);
      return 2;
    }
  guest_log_set_verbose (verbose);

  client = dhf_client_new (address);
  guest_app_init (&guest.app, client);
  guest.retry_s = RETRY_MIN_S;
  g_signal_connect (client, "notify::connected", G_CALLBACK (on_connected_changed), &guest);
  guest_log ("starting; dhfd at %s", dhf_client_get_address (client));

  watch_input (&guest);
  if (power_button)
    {
      guest.power_button = guest_power_button_new (GUEST_DEV_INPUT, on_power_pressed, &guest);
      guest_power_button_scan (guest.power_button);
    }
  start_connecting (&guest);

  g_unix_signal_add (SIGINT, on_signal, &guest);
  g_unix_signal_add (SIGTERM, on_signal, &guest);
  g_main_loop_run (guest.app.loop);

  /* Stop the background work first, then the connection: what is still
   * in flight fails with "cancelled" and is answered no more. */
  g_cancellable_cancel (guest.app.shutdown);
  g_clear_handle_id (&guest.retry_id, g_source_remove);
  g_clear_pointer (&guest.power_button, guest_power_button_free);
  g_clear_pointer (&guest.input, guest_input_watcher_free);
  dhf_client_close (client);
  g_signal_handlers_disconnect_by_data (client, &guest);
  status = guest.app.exit_status;
  guest_app_clear (&guest.app);
  guest_log ("exiting with status %d", status);
  return status;
}
