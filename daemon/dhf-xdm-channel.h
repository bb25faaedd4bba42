/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

#include <gio/gio.h>

#include "dhf-xdm-router.h"

G_BEGIN_DECLS

/* The channel transport of XDM: for every running domain whose live XML
 * has the channel org.dhf.xdm.0 (dhf_domain_xml_get_xdm_channel()), dhfd
 * connects to the channel's host-side unix socket; whoever answers there
 * is that domain's guest. Connecting never blocks, and a connection that
 * ends is made again for as long as the domain runs with that path:
 *
 *  - after a session that reached WELCOME (and ended without a
 *    violation): soon (min_ms), the backoff starting afresh;
 *  - after a failed attempt, or a connection that ended before its
 *    session started: after a delay doubling from min_ms to max_ms;
 *  - after the router closed it for a protocol violation, a limit, or an
 *    ERROR from the guest: violation_ms (a guest program that died in the
 *    middle of a frame leaves bytes the next one cannot avoid), and
 *    penalty_ms while violations go on without a session that ended
 *    cleanly in between.
 * A channel waits for its guest's HELLO without a deadline (the router
 * sets none on channels), so a guest without an XDM agent causes no
 * reconnections at all. */

/* Where the connections go; the daemon wires it to the router. */
typedef struct
{
  /* Takes ownership of fd, a connected non-blocking stream socket.
   * Returns the connection's id, or 0 with error (fd closed). closed is
   * called once when the connection ends, except after close_connection. */
  guint64 (*add_connection) (gint fd, const DhfXdmPeer *peer, DhfXdmClosedFunc closed,
                             gpointer closed_data, gpointer user_data, GError **error);
  void (*close_connection) (guint64 connection_id, gpointer user_data);
} DhfXdmChannelSink;

typedef struct
{
  guint min_ms;
  guint max_ms;
  guint violation_ms;
  guint penalty_ms;
} DhfXdmChannelBackoff;

#define DHF_XDM_CHANNEL_RETRY_MIN_MS       100
#define DHF_XDM_CHANNEL_RETRY_MAX_MS       5000
#define DHF_XDM_CHANNEL_RETRY_VIOLATION_MS 1000
#define DHF_XDM_CHANNEL_RETRY_PENALTY_MS   30000

#define DHF_TYPE_XDM_CHANNEL (dhf_xdm_channel_get_type ())
G_DECLARE_FINAL_TYPE (DhfXdmChannel, dhf_xdm_channel, DHF, XDM_CHANNEL, GObject)

/* sink is copied; user_data is passed to its functions. */
DhfXdmChannel *dhf_xdm_channel_new (const DhfXdmChannelSink *sink, gpointer user_data);

/* What dhfd knows of domain name now: path is its channel's socket while
 * it runs (NULL when it does not run or has no usable channel). A new
 * path (a restarted domain) is connected at once, dropping the connection
 * to the old one; NULL closes the domain's connection and stops trying. */
void dhf_xdm_channel_update (DhfXdmChannel *self, const gchar *name, const gchar *uuid,
                             const gchar *path);
/* The domain is gone: as update with NULL. */
void dhf_xdm_channel_remove (DhfXdmChannel *self, const gchar *name);

/* Diagnostics and tests: the domain's live connection (0 for none), the
 * delay of the retry it waits for (0 when it waits for none), and the
 * connection attempts made since its path was set. */
guint64 dhf_xdm_channel_get_connection (DhfXdmChannel *self, const gchar *name);
guint dhf_xdm_channel_get_retry_delay (DhfXdmChannel *self, const gchar *name);
guint dhf_xdm_channel_get_attempts (DhfXdmChannel *self, const gchar *name);
/* Tests: other delays than the DHF_XDM_CHANNEL_RETRY_* ones (min_ms at
 * least 1 and at most max_ms). */
void dhf_xdm_channel_set_backoff (DhfXdmChannel *self, const DhfXdmChannelBackoff *backoff);

G_END_DECLS
