/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

#include <dhf/dhf.h>
#include <json.h>

#include "guest-writer.h"

G_BEGIN_DECLS

#define GUEST_SERVICE      "org.dhf.example.Guest1"
#define GUEST_TOPIC_INPUT  "org.dhf.example.guest.Input"
#define GUEST_TOPIC_POWER  "org.dhf.example.guest.Power"
#define GUEST_PROC_UPTIME  "/proc/uptime"
#define GUEST_PROC_DEVICES "/proc/bus/input/devices"
#define GUEST_DEV_INPUT    "/dev/input"

/* Everything the service's operations share. All of it lives on the main
 * thread; the bench's worker thread touches only the client. The bounds
 * on what callers can make it keep are in guest-service.c. */
typedef struct
{
  DhfClient *client;
  GMainLoop *loop;
  gint exit_status;
  /* Cancelled when the program ends: stops the writer and the benches. */
  GCancellable *shutdown;
  guint registration; /* of GUEST_SERVICE; 0 until dhfd accepted it */

  /* info */
  guint sessions;                 /* WELCOMEs seen */
  gint64 first_session_uptime_ms; /* -1 before the first */

  /* put, items: a set in insertion order */
  GPtrArray *items;     /* gchar* */
  GHashTable *item_set; /* the same strings */
  gsize item_bytes;     /* what they cost, as counted against the budget */

  /* subscribe, events */
  GHashTable *subscriptions; /* topic -> subscription id */
  GQueue *events;            /* GuestEvent, oldest first */
  gsize event_bytes;         /* what they cost, as counted against the budget */
  guint64 events_dropped;    /* the oldest, to stay within the bounds */

  GuestWriter *writer;
  gboolean bench_running; /* one at a time */
} GuestApp;

/* An operation of GUEST_SERVICE: answers invocation, now or later. */
typedef void (*GuestOpFunc) (GuestApp *app, DhfInvocation *invocation, json_object *params);

/* The service's handler (guest-service.c). */
void guest_service_handle (DhfClient *client, DhfInvocation *invocation, gpointer user_data);
void guest_app_init (GuestApp *app, DhfClient *client);
/* After the main loop: stops what runs in the background, then frees. */
void guest_app_clear (GuestApp *app);

G_END_DECLS
