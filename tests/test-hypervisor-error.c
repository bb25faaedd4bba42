/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include "config.h"

#include <string.h>

#include <libvirt/libvirt.h>
#include <libvirt/virterror.h>

#include "dhf-hypervisor-error.h"

static void
test_mapping (void)
{
  static const struct
  {
    int domain, code;
    DhfError expected;
  } cases[] = {
    { VIR_FROM_DOMAIN, VIR_ERR_NO_DOMAIN, DHF_ERROR_NOT_FOUND },
    { VIR_FROM_QEMU, VIR_ERR_OPERATION_INVALID, DHF_ERROR_INVALID_STATE },
    { VIR_FROM_TEST, VIR_ERR_NO_SUPPORT, DHF_ERROR_NOT_SUPPORTED },
    { VIR_FROM_RPC, VIR_ERR_SYSTEM_ERROR, DHF_ERROR_HYPERVISOR_UNAVAILABLE },
    { VIR_FROM_REMOTE, VIR_ERR_INTERNAL_ERROR, DHF_ERROR_HYPERVISOR_UNAVAILABLE },
    { VIR_FROM_QEMU, VIR_ERR_INTERNAL_ERROR, DHF_ERROR_HYPERVISOR },
    { VIR_FROM_NONE, VIR_ERR_NO_CONNECT, DHF_ERROR_HYPERVISOR_UNAVAILABLE },
    { VIR_FROM_QEMU, VIR_ERR_OPERATION_TIMEOUT, DHF_ERROR_TIMEOUT },
    { VIR_FROM_ACCESS, VIR_ERR_ACCESS_DENIED, DHF_ERROR_NOT_AUTHORIZED },
    { VIR_FROM_DOMAIN, VIR_ERR_DOM_EXIST, DHF_ERROR_EXISTS },
    { VIR_FROM_DOMAIN, VIR_ERR_INVALID_ARG, DHF_ERROR_INVALID_ARGS },
    { VIR_FROM_DOMAIN, VIR_ERR_XML_ERROR, DHF_ERROR_HYPERVISOR },
  };

  for (guint i = 0; i < G_N_ELEMENTS (cases); i++)
    g_assert_cmpint (dhf_hypervisor_error_code (cases[i].domain, cases[i].code), ==,
                     cases[i].expected);
}

/* A real libvirt failure, raised by the test driver, converted in place. */
static void
test_real_error (void)
{
  virConnectPtr conn;
  virDomainPtr dom;
  g_autoptr (GError) error = NULL;

  dhf_hypervisor_silence_default_handler ();
  conn = virConnectOpen ("test:///default");
  g_assert_nonnull (conn);
  dom = virDomainLookupByName (conn, "no-such-domain");
  g_assert_null (dom);
  dhf_hypervisor_set_error (&error, "looking up no-such-domain");
  g_assert_error (error, DHF_ERROR, DHF_ERROR_NOT_FOUND);
  g_assert_true (g_str_has_prefix (error->message, "looking up no-such-domain: "));
  g_assert_null (virGetLastError ());

  dom = virDomainLookupByName (conn, "test");
  g_assert_nonnull (dom);
  g_assert_cmpint (virDomainDestroy (dom), ==, 0);
  g_assert_cmpint (virDomainSuspend (dom), <, 0); /* not running */
  g_clear_error (&error);
  dhf_hypervisor_set_error (&error, "pause");
  /* The test driver reports this as an internal error (QEMU: operation
   * invalid); either way the libvirt message reaches the caller. */
  g_assert_error (error, DHF_ERROR, DHF_ERROR_HYPERVISOR);
  g_assert_nonnull (strstr (error->message, "not running"));
  virDomainFree (dom);
  virConnectClose (conn);
}

int
main (int argc, char **argv)
{
  g_test_init (&argc, &argv, NULL);
  g_test_add_func ("/hypervisor-error/mapping", test_mapping);
  g_test_add_func ("/hypervisor-error/real", test_real_error);
  return g_test_run ();
}
