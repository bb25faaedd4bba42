/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/* libdhf-1: the client library of the Desktop Hypervisor Framework. */

#define DHF_INSIDE
#include <dhf/dhf-version.h>
#include <dhf/dhf-error.h>
#include <dhf/dhf-enums.h>
#include <dhf/dhf-enum-types.h>
#include <dhf/dhf-dbus-generated.h>
#include <dhf/dhf-stream.h>
#include <dhf/dhf-invocation.h>
#include <dhf/dhf-client.h>
#undef DHF_INSIDE

/**
 * DHF_BUS_NAME:
 *
 * The well-known D-Bus name dhfd owns.
 */
#define DHF_BUS_NAME "org.dhf.Framework1"

/**
 * DHF_OBJECT_PATH:
 *
 * The path of the Manager object and of the ObjectManager.
 */
#define DHF_OBJECT_PATH "/org/dhf/Framework1"

/**
 * DHF_APPLIANCE_PATH_PREFIX:
 *
 * Appliance objects live below this path, one per domain, named after the
 * domain (escaped with g_dbus_escape_object_path()).
 */
#define DHF_APPLIANCE_PATH_PREFIX "/org/dhf/Framework1/appliance"
