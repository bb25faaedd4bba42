/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* Preloaded into dhfd by test-xdm-dhfd: virDomainGetXMLDesc() fails while
 * the file named by DHF_TEST_XMLDESC_FAIL exists, as libvirt's can for a
 * moment (a busy or restarting libvirtd), so that the test can see what
 * dhfd does with a refresh that could not read a domain's live XML. */
#include "config.h"

#include <dlfcn.h>
#include <stdlib.h>
#include <unistd.h>

#include <libvirt/libvirt.h>

char *virDomainGetXMLDesc (virDomainPtr domain, unsigned int flags);

char *
virDomainGetXMLDesc (virDomainPtr domain, unsigned int flags)
{
  char *(*real) (virDomainPtr, unsigned int);
  const char *flag = getenv ("DHF_TEST_XMLDESC_FAIL");

  if (flag != NULL && access (flag, F_OK) == 0)
    return NULL;
  *(void **) &real = dlsym (RTLD_NEXT, "virDomainGetXMLDesc");
  return real (domain, flags);
}
