/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

#if !defined(DHF_INSIDE) && !defined(DHF_COMPILATION)
#error "Only <dhf/dhf.h> can be included directly."
#endif

#include <gio/gio.h>

G_BEGIN_DECLS

/**
 * DhfStream:
 *
 * A bidirectional byte stream between two domains through dhfd, as a
 * #GIOStream: write to g_io_stream_get_output_stream(), read from
 * g_io_stream_get_input_stream(). Flow control is by credit: a writer
 * blocks (or its async write waits) while the reader's window is full, so
 * a slow reader never makes dhfd or the writer buffer more than one
 * window. Closing the output stream sends end-of-stream; closing the
 * #GIOStream closes both directions.
 *
 * Since: 0.2
 */
#define DHF_TYPE_STREAM (dhf_stream_get_type ())
G_DECLARE_FINAL_TYPE (DhfStream, dhf_stream, DHF, STREAM, GIOStream)

const gchar *dhf_stream_get_service (DhfStream *self);
/* The domain at the other end. */
const gchar *dhf_stream_get_peer (DhfStream *self);

G_END_DECLS
