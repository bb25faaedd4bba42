/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

#include "guest-app.h"

G_BEGIN_DECLS

/* Calls made from this guest (guest-calls.c): the ops "call" and "bench".
 * They go out with this guest's own rights under dhfd's policy. */
void guest_op_call (GuestApp *app, DhfInvocation *invocation, json_object *params);
void guest_op_bench (GuestApp *app, DhfInvocation *invocation, json_object *params);

G_END_DECLS
