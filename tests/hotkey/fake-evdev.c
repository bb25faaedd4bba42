/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include "config.h"

#include <errno.h>
#include <stdarg.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <linux/input.h>

#include "fake-evdev.h"

#define MAX_FAKES 8
#define NAME      "dhf test keyboard"

typedef struct
{
  dev_t dev;
  ino_t ino;
  unsigned long keys[KEY_CNT / (8 * sizeof (unsigned long))];
} FakeDevice;

static FakeDevice fakes[MAX_FAKES];
static guint n_fakes;
static guint n_grabs;

guint
fake_evdev_add (const gchar *path)
{
  struct stat st;

  g_assert_cmpuint (n_fakes, <, MAX_FAKES);
  g_assert_cmpint (stat (path, &st), ==, 0);
  memset (&fakes[n_fakes], 0, sizeof fakes[n_fakes]);
  fakes[n_fakes].dev = st.st_dev;
  fakes[n_fakes].ino = st.st_ino;
  return n_fakes++;
}

void
fake_evdev_set_key (guint index, guint code, gboolean down)
{
  unsigned long bit = 1UL << (code % (8 * sizeof (unsigned long)));

  g_assert_cmpuint (index, <, n_fakes);
  g_assert_cmpuint (code, <, KEY_CNT);
  if (down)
    fakes[index].keys[code / (8 * sizeof (unsigned long))] |= bit;
  else
    fakes[index].keys[code / (8 * sizeof (unsigned long))] &= ~bit;
}

guint
fake_evdev_get_n_grabs (void)
{
  return n_grabs;
}

void
fake_evdev_clear (void)
{
  n_fakes = 0;
  n_grabs = 0;
}

static FakeDevice *
find_fake (int fd)
{
  struct stat st;

  if (n_fakes == 0 || fstat (fd, &st) < 0 || !S_ISFIFO (st.st_mode))
    return NULL;
  for (guint i = 0; i < n_fakes; i++)
    if (fakes[i].dev == st.st_dev && fakes[i].ino == st.st_ino)
      return &fakes[i];
  return NULL;
}

static void
set_bit (void *bits, gsize size, guint bit)
{
  if (bit / 8 < size)
    ((guint8 *) bits)[bit / 8] |= (guint8) (1u << (bit % 8));
}

/* Copies size bytes of a bit array, as the kernel does: returns how many. */
static int
give (void *arg, gsize size, const void *from, gsize from_size)
{
  gsize n = MIN (size, from_size);

  memset (arg, 0, size);
  memcpy (arg, from, n);
  return (int) n;
}

/* The requests libevdev makes of a keyboard, answered as the kernel's
 * evdev would for a USB keyboard. */
static int
fake_ioctl (FakeDevice *fake, unsigned long request, void *arg)
{
  guint nr = _IOC_NR (request);
  gsize size = _IOC_SIZE (request);

  if (_IOC_TYPE (request) != 'E')
    {
      errno = ENOTTY;
      return -1;
    }
  if (request == EVIOCGRAB)
    {
      n_grabs++;
      return 0;
    }
  if (request == EVIOCGVERSION)
    {
      *(int *) arg = EV_VERSION;
      return 0;
    }
  if (request == EVIOCGID)
    {
      struct input_id id
          = { .bustype = BUS_USB, .vendor = 0x1d6b, .product = 0x0104, .version = 1 };

      memcpy (arg, &id, sizeof id);
      return 0;
    }
  if (request == EVIOCGREP)
    {
      unsigned int rep[2] = { 250, 33 };

      memcpy (arg, rep, sizeof rep);
      return 0;
    }
  switch (nr)
    {
      case _IOC_NR (EVIOCGNAME (0)):
        return give (arg, size, NAME, sizeof NAME);
      case _IOC_NR (EVIOCGPHYS (0)):
      case _IOC_NR (EVIOCGUNIQ (0)):
        errno = ENOENT;
        return -1;
      case _IOC_NR (EVIOCGKEY (0)):
        return give (arg, size, fake->keys, sizeof fake->keys);
      case _IOC_NR (EVIOCGPROP (0)):
      case _IOC_NR (EVIOCGLED (0)):
      case _IOC_NR (EVIOCGSND (0)):
      case _IOC_NR (EVIOCGSW (0)):
        memset (arg, 0, size);
        return (int) size;
      default:
        break;
    }
  if (nr >= _IOC_NR (EVIOCGBIT (0, 0)) && nr < _IOC_NR (EVIOCGBIT (EV_MAX + 1, 0)))
    {
      guint type = nr - _IOC_NR (EVIOCGBIT (0, 0));

      memset (arg, 0, size);
      if (type == 0)
        {
          set_bit (arg, size, EV_SYN);
          set_bit (arg, size, EV_KEY);
          set_bit (arg, size, EV_MSC);
          set_bit (arg, size, EV_REP);
        }
      else if (type == EV_KEY)
        for (guint code = KEY_ESC; code < KEY_CNT; code++)
          set_bit (arg, size, code);
      else if (type == EV_MSC)
        set_bit (arg, size, MSC_SCAN);
      return (int) size;
    }
  errno = EINVAL;
  return -1;
}

int
ioctl (int fd, unsigned long request, ...)
{
  FakeDevice *fake = find_fake (fd);
  va_list args;
  void *arg;

  va_start (args, request);
  arg = va_arg (args, void *);
  va_end (args);
  if (fake == NULL)
    return (int) syscall (SYS_ioctl, fd, request, arg);
  return fake_ioctl (fake, request, arg);
}
