/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include "config.h"

#include <fcntl.h>
#include <string.h>
#include <unistd.h>

#include <gdk-pixbuf/gdk-pixbuf.h>
#include <libvirt/libvirt.h>
#include <libvirt/virterror.h>

#include "dhf-hypervisor-devices.h"
#include "dhf-hypervisor-error.h"
#include "dhf-hypervisor-private.h"

G_DEFINE_AUTOPTR_CLEANUP_FUNC (virDomain, virDomainFree)
G_DEFINE_AUTOPTR_CLEANUP_FUNC (virStream, virStreamFree)

/* A 4K screen as PPM is 25 MB; anything past this is not a screenshot.
 * The PNG made of it is bounded again where it leaves dhfd, by the bus's
 * message size (DHF_DISPLAY_SCREENSHOT_MAX_BYTES). */
#define SCREENSHOT_MAX_BYTES (64 * 1024 * 1024)
#define SCREENSHOT_CHUNK     (256 * 1024)

static const guint8 png_signature[8] = { 0x89, 'P', 'N', 'G', '\r', '\n', 0x1a, '\n' };

typedef struct
{
  virConnectPtr conn;
  gchar *name;
  guint max_width, max_height;
} DisplayJob;

static void
display_job_free (DisplayJob *job)
{
  if (job->conn != NULL)
    virConnectClose (job->conn);
  g_free (job->name);
  g_free (job);
}

/* Starts a GTask for name on the live connection; NULL (with the task
 * already answered) while dhfd is reconnecting. */
static GTask *
display_task_new (DhfHypervisor *self, const gchar *name, GCancellable *cancellable,
                  GAsyncReadyCallback callback, gpointer user_data, gpointer source_tag,
                  DisplayJob **job_out)
{
  g_autoptr (GTask) task = g_task_new (self, cancellable, callback, user_data);
  g_autoptr (GError) error = NULL;
  DisplayJob *job = g_new0 (DisplayJob, 1);

  g_task_set_source_tag (task, source_tag);
  job->name = g_strdup (name);
  g_task_set_task_data (task, job, (GDestroyNotify) display_job_free);
  if (name == NULL || *name == '\0')
    {
      g_task_return_new_error (task, DHF_ERROR, DHF_ERROR_INVALID_ARGS, "no domain name given");
      return NULL;
    }
  job->conn = dhf_hypervisor_dup_connection (self, &error);
  if (job->conn == NULL)
    {
      g_task_return_error (task, g_steal_pointer (&error));
      return NULL;
    }
  *job_out = job;
  return g_steal_pointer (&task);
}

/* libvirt's error for the call that just failed on this thread. */
static GError *
job_error (DisplayJob *job, const gchar *what)
{
  GError *error = NULL;

  dhf_hypervisor_set_error (&error, what);
  if (virConnectIsAlive (job->conn) != 1)
    {
      error->code = DHF_ERROR_HYPERVISOR_UNAVAILABLE;
      virResetLastError ();
    }
  return error;
}

static virDomainPtr
job_lookup (DisplayJob *job, GError **error)
{
  virDomainPtr dom = virDomainLookupByName (job->conn, job->name);

  if (dom == NULL)
    {
      g_autofree gchar *what = g_strdup_printf ("domain '%s'", job->name);

      g_propagate_error (error, job_error (job, what));
    }
  return dom;
}

/* GTask reports a cancelled task in GIO's domain; dhf uses its own. */
static void
propagate_task_error (GError *error, GError **dest)
{
  if (g_error_matches (error, G_IO_ERROR, G_IO_ERROR_CANCELLED))
    {
      g_set_error_literal (dest, DHF_ERROR, DHF_ERROR_CANCELLED, error->message);
      g_error_free (error);
      return;
    }
  g_propagate_error (dest, error);
}

/* --- screenshots ------------------------------------------------------ */

/* The whole stream, bounded. A failed read aborts the stream, which tells
 * libvirtd to stop sending. */
static GByteArray *
read_stream (DisplayJob *job, virStreamPtr stream, GCancellable *cancellable, GError **error)
{
  g_autoptr (GByteArray) data = g_byte_array_new ();

  for (;;)
    {
      guint len = data->len;
      int n;

      if (g_cancellable_set_error_if_cancelled (cancellable, error))
        {
          virStreamAbort (stream);
          virResetLastError ();
          return NULL;
        }
      g_byte_array_set_size (data, len + SCREENSHOT_CHUNK);
      n = virStreamRecv (stream, (char *) data->data + len, SCREENSHOT_CHUNK);
      if (n < 0)
        {
          g_autofree gchar *what = g_strdup_printf ("reading the screen of '%s'", job->name);

          g_propagate_error (error, job_error (job, what));
          virStreamAbort (stream);
          virResetLastError ();
          return NULL;
        }
      g_byte_array_set_size (data, len + n);
      if (n == 0)
        break;
      if (data->len > SCREENSHOT_MAX_BYTES)
        {
          virStreamAbort (stream);
          virResetLastError ();
          g_set_error (error, DHF_ERROR, DHF_ERROR_LIMIT_EXCEEDED,
                       "the screen of '%s' is larger than %d MiB", job->name,
                       SCREENSHOT_MAX_BYTES / (1024 * 1024));
          return NULL;
        }
    }
  if (virStreamFinish (stream) < 0)
    {
      g_autofree gchar *what = g_strdup_printf ("reading the screen of '%s'", job->name);

      g_propagate_error (error, job_error (job, what));
      return NULL;
    }
  return g_steal_pointer (&data);
}

/* QEMU writes PPM (P6), newer ones PNG. Only those two loaders run: the
 * bytes come from the hypervisor, and gdk-pixbuf has many parsers. */
static GdkPixbuf *
decode_image (GByteArray *data, const gchar *mime, const gchar *name, GError **error)
{
  g_autoptr (GdkPixbufLoader) loader = NULL;
  g_autoptr (GError) local_error = NULL;
  const gchar *type;
  gboolean written;
  GdkPixbuf *pixbuf;

  if (data->len >= sizeof png_signature && memcmp (data->data, png_signature, 8) == 0)
    type = "png";
  else if (data->len >= 2 && data->data[0] == 'P' && data->data[1] == '6')
    type = "pnm";
  else
    {
      g_set_error (error, DHF_ERROR, DHF_ERROR_NOT_SUPPORTED,
                   "the screen of '%s' came as %s, neither PPM nor PNG", name,
                   mime != NULL ? mime : "an unknown type");
      return NULL;
    }
  loader = gdk_pixbuf_loader_new_with_type (type, &local_error);
  if (loader == NULL)
    {
      g_set_error (error, DHF_ERROR, DHF_ERROR_NOT_SUPPORTED, "cannot decode %s: %s", type,
                   local_error->message);
      return NULL;
    }
  written = gdk_pixbuf_loader_write (loader, data->data, data->len, &local_error);
  /* A loader is always closed, also after a failed write. */
  if (!gdk_pixbuf_loader_close (loader, written ? &local_error : NULL) || !written)
    {
      g_set_error (error, DHF_ERROR, DHF_ERROR_HYPERVISOR,
                   "the screen of '%s' is not a valid %s: %s", name, type,
                   local_error != NULL ? local_error->message : "the loader gave no image");
      return NULL;
    }
  pixbuf = gdk_pixbuf_loader_get_pixbuf (loader);
  if (pixbuf == NULL)
    {
      g_set_error (error, DHF_ERROR, DHF_ERROR_HYPERVISOR, "the screen of '%s' holds no image",
                   name);
      return NULL;
    }
  return g_object_ref (pixbuf);
}

/* The largest size within max_width x max_height (0: any) with the
 * image's proportions; never larger than the image. */
static void
fit_size (int width, int height, guint max_width, guint max_height, int *fit_width, int *fit_height)
{
  double scale = 1.0;

  if (max_width > 0 && (guint) width > max_width)
    scale = MIN (scale, (double) max_width / width);
  if (max_height > 0 && (guint) height > max_height)
    scale = MIN (scale, (double) max_height / height);
  *fit_width = CLAMP ((int) (width * scale + 0.5), 1, width);
  *fit_height = CLAMP ((int) (height * scale + 0.5), 1, height);
  if (max_width > 0)
    *fit_width = MIN (*fit_width, (int) max_width);
  if (max_height > 0)
    *fit_height = MIN (*fit_height, (int) max_height);
}

static GBytes *
take_screenshot (DisplayJob *job, GCancellable *cancellable, GError **error)
{
  g_autoptr (virDomain) dom = NULL;
  g_autoptr (virStream) stream = NULL;
  g_autoptr (GByteArray) data = NULL;
  g_autoptr (GdkPixbuf) pixbuf = NULL;
  g_autoptr (GdkPixbuf) scaled = NULL;
  g_autoptr (GError) local_error = NULL;
  g_autofree gchar *mime = NULL;
  gchar *png = NULL;
  gsize png_len = 0;
  char *raw_mime;
  int width, height;

  dom = job_lookup (job, error);
  if (dom == NULL)
    return NULL;
  stream = virStreamNew (job->conn, 0);
  if (stream == NULL)
    {
      g_propagate_error (error, job_error (job, "opening a stream"));
      return NULL;
    }
  raw_mime = virDomainScreenshot (dom, stream, 0, 0);
  if (raw_mime == NULL)
    {
      g_autofree gchar *what = g_strdup_printf ("taking a screenshot of '%s'", job->name);

      g_propagate_error (error, job_error (job, what));
      return NULL;
    }
  mime = g_strdup (raw_mime);
  free (raw_mime);
  data = read_stream (job, stream, cancellable, error);
  if (data == NULL)
    return NULL;
  pixbuf = decode_image (data, mime, job->name, error);
  if (pixbuf == NULL)
    return NULL;

  fit_size (gdk_pixbuf_get_width (pixbuf), gdk_pixbuf_get_height (pixbuf), job->max_width,
            job->max_height, &width, &height);
  if (width != gdk_pixbuf_get_width (pixbuf) || height != gdk_pixbuf_get_height (pixbuf))
    {
      scaled = gdk_pixbuf_scale_simple (pixbuf, width, height, GDK_INTERP_BILINEAR);
      if (scaled == NULL)
        {
          g_set_error (error, DHF_ERROR, DHF_ERROR_FAILED,
                       "cannot scale the screen of '%s' to %dx%d", job->name, width, height);
          return NULL;
        }
    }
  if (!gdk_pixbuf_save_to_buffer (scaled != NULL ? scaled : pixbuf, &png, &png_len, "png",
                                  &local_error, NULL))
    {
      g_set_error (error, DHF_ERROR, DHF_ERROR_FAILED, "cannot encode the screen of '%s': %s",
                   job->name, local_error->message);
      return NULL;
    }
  return g_bytes_new_take (png, png_len);
}

static void
screenshot_thread (GTask *task, gpointer source, gpointer task_data, GCancellable *cancellable)
{
  GError *error = NULL;
  GBytes *png = take_screenshot (task_data, cancellable, &error);

  if (png == NULL)
    g_task_return_error (task, error);
  else
    g_task_return_pointer (task, png, (GDestroyNotify) g_bytes_unref);
}

void
dhf_hypervisor_screenshot_async (DhfHypervisor *self, const gchar *name, guint max_width,
                                 guint max_height, GCancellable *cancellable,
                                 GAsyncReadyCallback callback, gpointer user_data)
{
  g_autoptr (GTask) task = NULL;
  DisplayJob *job = NULL;

  g_return_if_fail (DHF_IS_HYPERVISOR (self));

  task = display_task_new (self, name, cancellable, callback, user_data,
                           dhf_hypervisor_screenshot_async, &job);
  if (task == NULL)
    return;
  job->max_width = max_width;
  job->max_height = max_height;
  g_task_run_in_thread (task, screenshot_thread);
}

GBytes *
dhf_hypervisor_screenshot_finish (DhfHypervisor *self, GAsyncResult *result, GError **error)
{
  GError *local_error = NULL;
  GBytes *png;

  g_return_val_if_fail (g_task_is_valid (result, self), NULL);

  png = g_task_propagate_pointer (G_TASK (result), &local_error);
  if (png == NULL)
    propagate_task_error (local_error, error);
  return png;
}

/* --- graphics fds ----------------------------------------------------- */

/* The task's result: an fd that is closed unless a caller takes it, so a
 * cancelled or abandoned call leaks nothing. */
static void
fd_free (gint *fd)
{
  if (*fd >= 0)
    close (*fd);
  g_free (fd);
}

static void
open_graphics_thread (GTask *task, gpointer source, gpointer task_data, GCancellable *cancellable)
{
  DisplayJob *job = task_data;
  g_autoptr (virDomain) dom = NULL;
  GError *error = NULL;
  gint *fd;

  dom = job_lookup (job, &error);
  if (dom == NULL)
    {
      g_task_return_error (task, error);
      return;
    }
  if (g_cancellable_set_error_if_cancelled (cancellable, &error))
    {
      g_task_return_error (task, error);
      return;
    }
  fd = g_new (gint, 1);
  /* SKIPAUTH: dhfd is the client, and the password is libvirt's to keep. */
  *fd = virDomainOpenGraphicsFD (dom, 0, VIR_DOMAIN_OPEN_GRAPHICS_SKIPAUTH);
  if (*fd < 0)
    {
      g_autofree gchar *what = g_strdup_printf ("opening the display of '%s'", job->name);

      g_free (fd);
      g_task_return_error (task, job_error (job, what));
      return;
    }
  /* Processes dhfd starts must not inherit a guest's display. */
  fcntl (*fd, F_SETFD, FD_CLOEXEC);
  g_task_return_pointer (task, fd, (GDestroyNotify) fd_free);
}

void
dhf_hypervisor_open_graphics_async (DhfHypervisor *self, const gchar *name,
                                    GCancellable *cancellable, GAsyncReadyCallback callback,
                                    gpointer user_data)
{
  g_autoptr (GTask) task = NULL;
  DisplayJob *job = NULL;

  g_return_if_fail (DHF_IS_HYPERVISOR (self));

  task = display_task_new (self, name, cancellable, callback, user_data,
                           dhf_hypervisor_open_graphics_async, &job);
  if (task != NULL)
    g_task_run_in_thread (task, open_graphics_thread);
}

gint
dhf_hypervisor_open_graphics_finish (DhfHypervisor *self, GAsyncResult *result, GError **error)
{
  GError *local_error = NULL;
  gint *box, fd;

  g_return_val_if_fail (g_task_is_valid (result, self), -1);

  /* A cancelled task keeps its result, and closes the fd when it goes. */
  box = g_task_propagate_pointer (G_TASK (result), &local_error);
  if (box == NULL)
    {
      propagate_task_error (local_error, error);
      return -1;
    }
  fd = *box;
  g_free (box);
  return fd;
}
