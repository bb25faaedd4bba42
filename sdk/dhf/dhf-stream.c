/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include "config.h"

#include <string.h>

#include "dhf-client-private.h"

/* A stream's state is shared by the DhfStream, its input and output
 * streams (which may outlive it) and the client's table of streams (while
 * frames may still arrive for it). All of it is guarded by core->lock.
 *
 * Flow control: we grant the peer DHF_STREAM_WINDOW bytes at the open and
 * give credit back once half of it has been read, so a slow reader never
 * has more than a window buffered here or in dhfd. Our own writes block
 * while the peer's credit is used up. Received data is kept as the chunks
 * it arrived in (one copy out of the read buffer); written data goes from
 * the caller's buffer to the socket when the socket takes it. */

struct _DhfStreamState
{
  gatomicrefcount ref_count;
  DhfClientCore *core;
  guint gen;
  guint32 id;
  gchar *service;
  gchar *peer;

  GCond recv_cond;
  GCond send_cond;
  GQueue chunks; /* GBytes received, not read yet */
  gsize chunk_off;
  guint64 recv_allowed; /* credit granted to the peer and not used yet */
  gsize consumed;       /* read since the last credit we gave */
  guint64 send_credit;
  gboolean remote_done; /* the peer's end of stream, or a reset */
  gboolean sent_close;  /* our end of stream */
  gboolean sent_reset;
  gboolean in_table;
  GError *recv_error; /* a reset or a lost connection, after the buffered data */
  GError *send_error;
};

void
dhf_core_stream_unref (DhfStreamState *st)
{
  if (!g_atomic_ref_count_dec (&st->ref_count))
    return;
  g_queue_clear_full (&st->chunks, (GDestroyNotify) g_bytes_unref);
  g_cond_clear (&st->recv_cond);
  g_cond_clear (&st->send_cond);
  g_clear_error (&st->recv_error);
  g_clear_error (&st->send_error);
  g_free (st->service);
  g_free (st->peer);
  dhf_core_unref (st->core);
  g_free (st);
}

static DhfStreamState *
stream_state_ref (DhfStreamState *st)
{
  g_atomic_ref_count_inc (&st->ref_count);
  return st;
}

/* Frames for the stream are of no use any more once both ends are done. */
static void
maybe_leave_table_locked (DhfStreamState *st)
{
  DhfClientCore *core = st->core;

  if (!st->in_table || !st->remote_done || !(st->sent_close || st->sent_reset))
    return;
  st->in_table = FALSE;
  if (g_hash_table_lookup (core->streams, GUINT_TO_POINTER (st->id)) == st)
    g_hash_table_remove (core->streams, GUINT_TO_POINTER (st->id));
}

static void
send_close_locked (DhfStreamState *st, DhfError code, const gchar *message)
{
  GByteArray *frame = dhf_core_scratch_frame ();

  if (message == NULL)
    dhf_xdm_append_json (frame, DHF_XDM_STREAM_CLOSE, st->id, NULL);
  else
    {
      g_autoptr (json_object) body = json_object_new_object ();

      json_object_object_add (body, "code",
                              json_object_new_string (dhf_xdm_error_code_to_string (code)));
      json_object_object_add (body, "message", json_object_new_string (message));
      dhf_xdm_append_json (frame, DHF_XDM_STREAM_CLOSE, st->id, body);
    }
  (void) dhf_core_send_locked (st->core, st->gen, frame->data, frame->len, NULL, 0);
}

/* Resets the stream from our side: both directions fail with error. */
static void
reset_locked (DhfStreamState *st, const GError *error)
{
  if (!st->sent_reset && !(st->remote_done && st->sent_close))
    send_close_locked (st, (DhfError) error->code, error->message);
  st->sent_reset = TRUE;
  if (!st->remote_done && st->recv_error == NULL)
    st->recv_error = g_error_copy (error);
  st->remote_done = TRUE;
  if (st->send_error == NULL)
    st->send_error = g_error_copy (error);
  g_cond_broadcast (&st->recv_cond);
  g_cond_broadcast (&st->send_cond);
  maybe_leave_table_locked (st);
}

void
dhf_core_stream_data_locked (DhfStreamState *st, const guint8 *data, gsize length)
{
  if (st->remote_done)
    return;
  if (length > st->recv_allowed)
    {
      g_autoptr (GError) error = g_error_new (DHF_ERROR, DHF_ERROR_PROTOCOL,
                                              "the peer sent %" G_GSIZE_FORMAT
                                              " bytes with %" G_GUINT64_FORMAT " of credit",
                                              length, st->recv_allowed);

      reset_locked (st, error);
      return;
    }
  st->recv_allowed -= length;
  if (length == 0)
    return;
  g_queue_push_tail (&st->chunks, g_bytes_new (data, length));
  g_cond_signal (&st->recv_cond);
}

void
dhf_core_stream_wake_writers_locked (DhfStreamState *st)
{
  g_cond_broadcast (&st->send_cond);
}

void
dhf_core_stream_credit_locked (DhfStreamState *st, guint32 bytes)
{
  st->send_credit += bytes;
  g_cond_signal (&st->send_cond);
}

void
dhf_core_stream_remote_closed_locked (DhfStreamState *st, const GError *error)
{
  if (error == NULL)
    {
      st->remote_done = TRUE;
      g_cond_broadcast (&st->recv_cond);
      maybe_leave_table_locked (st);
      return;
    }
  /* A reset (or the connection went): nothing more is sent either. */
  if (!st->remote_done && st->recv_error == NULL)
    st->recv_error = g_error_copy (error);
  st->remote_done = TRUE;
  st->sent_reset = TRUE;
  if (st->send_error == NULL)
    st->send_error = g_error_copy (error);
  g_cond_broadcast (&st->recv_cond);
  g_cond_broadcast (&st->send_cond);
  maybe_leave_table_locked (st);
}

static void
wake_cb (GCancellable *cancellable, gpointer data)
{
  DhfStreamState *st = data;

  g_mutex_lock (&st->core->lock);
  g_cond_broadcast (&st->recv_cond);
  g_cond_broadcast (&st->send_cond);
  g_mutex_unlock (&st->core->lock);
}

/* ---- the input stream ------------------------------------------------------ */

#define DHF_TYPE_CORE_STREAM_INPUT (dhf_core_stream_input_get_type ())
G_DECLARE_FINAL_TYPE (DhfCoreStreamInput, dhf_core_stream_input, DHF, CORE_STREAM_INPUT,
                      GInputStream)

struct _DhfCoreStreamInput
{
  GInputStream parent_instance;
  DhfStreamState *state;
};

G_DEFINE_FINAL_TYPE (DhfCoreStreamInput, dhf_core_stream_input, G_TYPE_INPUT_STREAM)

static gssize
dhf_core_stream_input_read (GInputStream *stream, void *buffer, gsize count,
                            GCancellable *cancellable, GError **error)
{
  DhfStreamState *st = DHF_CORE_STREAM_INPUT (stream)->state;
  DhfClientCore *core = st->core;
  gulong cancel_id = 0;
  gsize done = 0;
  gssize result;

  if (count == 0)
    return 0;
  if (cancellable != NULL)
    cancel_id = g_cancellable_connect (cancellable, G_CALLBACK (wake_cb), st, NULL);
  g_mutex_lock (&core->lock);
  while (st->chunks.length == 0 && !st->remote_done && !g_cancellable_is_cancelled (cancellable))
    g_cond_wait (&st->recv_cond, &core->lock);
  while (done < count && st->chunks.length > 0)
    {
      GBytes *chunk = g_queue_peek_head (&st->chunks);
      gsize size = 0;
      const guint8 *data = g_bytes_get_data (chunk, &size);
      gsize n = MIN (count - done, size - st->chunk_off);

      memcpy ((guint8 *) buffer + done, data + st->chunk_off, n);
      done += n;
      st->chunk_off += n;
      if (st->chunk_off == size)
        {
          g_bytes_unref (g_queue_pop_head (&st->chunks));
          st->chunk_off = 0;
        }
    }
  if (done > 0)
    {
      st->consumed += done;
      if (st->consumed >= DHF_STREAM_WINDOW / 2 && !st->remote_done)
        {
          GByteArray *frame = dhf_core_scratch_frame ();
          gchar body[48];

          g_snprintf (body, sizeof (body), "{\"bytes\":%" G_GSIZE_FORMAT "}", st->consumed);
          dhf_xdm_append_text (frame, DHF_XDM_STREAM_CREDIT, st->id, body, strlen (body));
          (void) dhf_core_send_locked (core, st->gen, frame->data, frame->len, NULL, 0);
          st->recv_allowed += st->consumed;
          st->consumed = 0;
        }
      result = (gssize) done;
    }
  else if (g_cancellable_set_error_if_cancelled (cancellable, error))
    result = -1;
  else if (st->recv_error != NULL)
    {
      g_propagate_error (error, g_error_copy (st->recv_error));
      result = -1;
    }
  else
    result = 0; /* end of stream */
  g_mutex_unlock (&core->lock);
  if (cancel_id != 0)
    g_cancellable_disconnect (cancellable, cancel_id);
  return result;
}

/* Closing the reading side before the end of stream resets the stream:
 * the peer's writes would otherwise block forever on credit. */
static gboolean
dhf_core_stream_input_close (GInputStream *stream, GCancellable *cancellable, GError **error)
{
  DhfStreamState *st = DHF_CORE_STREAM_INPUT (stream)->state;

  g_mutex_lock (&st->core->lock);
  if (!st->remote_done)
    {
      g_autoptr (GError) reset
          = g_error_new_literal (DHF_ERROR, DHF_ERROR_CANCELLED, "the reader closed the stream");

      reset_locked (st, reset);
    }
  g_queue_clear_full (&st->chunks, (GDestroyNotify) g_bytes_unref);
  st->chunk_off = 0;
  g_mutex_unlock (&st->core->lock);
  return TRUE;
}

static void
dhf_core_stream_input_finalize (GObject *object)
{
  dhf_core_stream_unref (DHF_CORE_STREAM_INPUT (object)->state);
  G_OBJECT_CLASS (dhf_core_stream_input_parent_class)->finalize (object);
}

static void
dhf_core_stream_input_class_init (DhfCoreStreamInputClass *klass)
{
  GInputStreamClass *input_class = G_INPUT_STREAM_CLASS (klass);

  G_OBJECT_CLASS (klass)->finalize = dhf_core_stream_input_finalize;
  input_class->read_fn = dhf_core_stream_input_read;
  input_class->close_fn = dhf_core_stream_input_close;
}

static void
dhf_core_stream_input_init (DhfCoreStreamInput *self)
{
}

/* ---- the output stream ----------------------------------------------------- */

#define DHF_TYPE_CORE_STREAM_OUTPUT (dhf_core_stream_output_get_type ())
G_DECLARE_FINAL_TYPE (DhfCoreStreamOutput, dhf_core_stream_output, DHF, CORE_STREAM_OUTPUT,
                      GOutputStream)

struct _DhfCoreStreamOutput
{
  GOutputStream parent_instance;
  DhfStreamState *state;
};

G_DEFINE_FINAL_TYPE (DhfCoreStreamOutput, dhf_core_stream_output, G_TYPE_OUTPUT_STREAM)

/* The STREAM_DATA header, written in front of the caller's buffer so that
 * the data itself is not copied (dhf-xdm-codec.h gives the layout; the
 * codec's parser checks it in the tests). */
static void
encode_data_header (guint8 header[DHF_XDM_HEADER_SIZE], guint32 id, guint32 length)
{
  header[0] = 'D';
  header[1] = 'X';
  header[2] = DHF_XDM_FRAME_VERSION;
  header[3] = DHF_XDM_STREAM_DATA;
  header[4] = DHF_XDM_FLAG_RAW;
  header[5] = 0;
  header[6] = 0;
  header[7] = 0;
  for (guint i = 0; i < 4; i++)
    {
      header[8 + i] = (guint8) (id >> (8 * i));
      header[12 + i] = (guint8) (length >> (8 * i));
    }
}

static gssize
dhf_core_stream_output_write (GOutputStream *stream, const void *buffer, gsize count,
                              GCancellable *cancellable, GError **error)
{
  DhfStreamState *st = DHF_CORE_STREAM_OUTPUT (stream)->state;
  DhfClientCore *core = st->core;
  guint8 header[DHF_XDM_HEADER_SIZE];
  gulong cancel_id = 0;
  gssize result = -1;

  if (count == 0)
    return 0;
  if (cancellable != NULL)
    cancel_id = g_cancellable_connect (cancellable, G_CALLBACK (wake_cb), st, NULL);
  g_mutex_lock (&core->lock);
  /* Credit, and room in the outgoing queue (dhfd may be slow to read). */
  while ((st->send_credit == 0 || dhf_core_outq_full_locked (core)) && st->send_error == NULL
         && !st->sent_close && !g_cancellable_is_cancelled (cancellable))
    g_cond_wait (&st->send_cond, &core->lock);
  if (st->send_error != NULL)
    g_propagate_error (error, g_error_copy (st->send_error));
  else if (st->sent_close)
    g_set_error_literal (error, G_IO_ERROR, G_IO_ERROR_CLOSED, "the stream is closed");
  else if (!g_cancellable_set_error_if_cancelled (cancellable, error))
    {
      gsize n = MIN (MIN (count, DHF_STREAM_MAX_FRAME), st->send_credit);

      encode_data_header (header, st->id, (guint32) n);
      if (dhf_core_send_locked (core, st->gen, header, sizeof (header), buffer, n))
        {
          st->send_credit -= n;
          result = (gssize) n;
        }
      else
        g_set_error_literal (error, DHF_ERROR, DHF_ERROR_DISCONNECTED,
                             "the connection to dhfd was lost");
    }
  g_mutex_unlock (&core->lock);
  if (cancel_id != 0)
    g_cancellable_disconnect (cancellable, cancel_id);
  return result;
}

/* End of stream for the peer (a half-close: we may go on reading). */
static gboolean
dhf_core_stream_output_close (GOutputStream *stream, GCancellable *cancellable, GError **error)
{
  DhfStreamState *st = DHF_CORE_STREAM_OUTPUT (stream)->state;

  g_mutex_lock (&st->core->lock);
  if (!st->sent_close && !st->sent_reset)
    send_close_locked (st, DHF_ERROR_FAILED, NULL);
  st->sent_close = TRUE;
  g_cond_broadcast (&st->send_cond);
  maybe_leave_table_locked (st);
  g_mutex_unlock (&st->core->lock);
  return TRUE;
}

static void
dhf_core_stream_output_finalize (GObject *object)
{
  dhf_core_stream_unref (DHF_CORE_STREAM_OUTPUT (object)->state);
  G_OBJECT_CLASS (dhf_core_stream_output_parent_class)->finalize (object);
}

static void
dhf_core_stream_output_class_init (DhfCoreStreamOutputClass *klass)
{
  GOutputStreamClass *output_class = G_OUTPUT_STREAM_CLASS (klass);

  G_OBJECT_CLASS (klass)->finalize = dhf_core_stream_output_finalize;
  output_class->write_fn = dhf_core_stream_output_write;
  output_class->close_fn = dhf_core_stream_output_close;
}

static void
dhf_core_stream_output_init (DhfCoreStreamOutput *self)
{
}

/* ---- DhfStream ----------------------------------------------------------------- */

struct _DhfStream
{
  GIOStream parent_instance;
  DhfStreamState *state;
  GInputStream *input;
  GOutputStream *output;
};

G_DEFINE_FINAL_TYPE (DhfStream, dhf_stream, G_TYPE_IO_STREAM)

static GInputStream *
dhf_stream_get_input_stream (GIOStream *stream)
{
  return DHF_STREAM (stream)->input;
}

static GOutputStream *
dhf_stream_get_output_stream (GIOStream *stream)
{
  return DHF_STREAM (stream)->output;
}

static void
dhf_stream_finalize (GObject *object)
{
  DhfStream *self = DHF_STREAM (object);

  g_clear_object (&self->input);
  g_clear_object (&self->output);
  dhf_core_stream_unref (self->state);
  G_OBJECT_CLASS (dhf_stream_parent_class)->finalize (object);
}

static void
dhf_stream_class_init (DhfStreamClass *klass)
{
  GIOStreamClass *io_class = G_IO_STREAM_CLASS (klass);

  G_OBJECT_CLASS (klass)->finalize = dhf_stream_finalize;
  io_class->get_input_stream = dhf_stream_get_input_stream;
  io_class->get_output_stream = dhf_stream_get_output_stream;
}

static void
dhf_stream_init (DhfStream *self)
{
}

DhfStream *
dhf_core_stream_new_locked (DhfClientCore *core, guint gen, guint32 id, const gchar *service,
                            const gchar *peer, guint32 peer_window)
{
  DhfStream *self = g_object_new (DHF_TYPE_STREAM, NULL);
  DhfStreamState *st = g_new0 (DhfStreamState, 1);
  DhfCoreStreamInput *input = g_object_new (DHF_TYPE_CORE_STREAM_INPUT, NULL);
  DhfCoreStreamOutput *output = g_object_new (DHF_TYPE_CORE_STREAM_OUTPUT, NULL);

  g_atomic_ref_count_init (&st->ref_count);
  st->core = dhf_core_ref (core);
  st->gen = gen;
  st->id = id;
  st->service = g_strdup (service);
  st->peer = g_strdup (peer);
  g_cond_init (&st->recv_cond);
  g_cond_init (&st->send_cond);
  g_queue_init (&st->chunks);
  st->recv_allowed = DHF_STREAM_WINDOW;
  st->send_credit = peer_window;
  st->in_table = TRUE;
  g_hash_table_insert (core->streams, GUINT_TO_POINTER (id), stream_state_ref (st));

  input->state = stream_state_ref (st);
  output->state = stream_state_ref (st);
  self->state = st;
  self->input = G_INPUT_STREAM (input);
  self->output = G_OUTPUT_STREAM (output);
  return self;
}

/**
 * dhf_stream_get_service:
 * @self: a #DhfStream
 *
 * Returns: (transfer none): the service the stream was opened to, as the
 *   opener named it ("SERVICE" or "SERVICE+ARG" on the opener's side, the
 *   service name on the provider's)
 *
 * Since: 0.2
 */
const gchar *
dhf_stream_get_service (DhfStream *self)
{
  g_return_val_if_fail (DHF_IS_STREAM (self), NULL);
  return self->state->service;
}

/**
 * dhf_stream_get_peer:
 * @self: a #DhfStream
 *
 * Returns: (nullable) (transfer none): the domain at the other end: the
 *   opener, on the provider's side; on the opener's side the target it
 *   named, or %NULL when it let dhfd's policy pick one
 *
 * Since: 0.2
 */
const gchar *
dhf_stream_get_peer (DhfStream *self)
{
  g_return_val_if_fail (DHF_IS_STREAM (self), NULL);
  return self->state->peer;
}
