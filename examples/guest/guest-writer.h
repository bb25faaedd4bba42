/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

#include <dhf/dhf.h>
#include <json.h>

G_BEGIN_DECLS

/* The writer (guest-writer.c): puts PREFIX-1 .. PREFIX-COUNT into another
 * guest, one call at a time, retrying each until it goes through. */
typedef struct _GuestWriter GuestWriter;

GuestWriter *guest_writer_new (DhfClient *client);
/* Cancels a run (its call fails at once) and frees the writer. */
void guest_writer_free (GuestWriter *writer);
/* The ops "writer" and "writer-status" on it. */
void guest_writer_op_start (GuestWriter *writer, DhfInvocation *invocation, json_object *params);
void guest_writer_op_status (GuestWriter *writer, DhfInvocation *invocation, json_object *params);

G_END_DECLS
