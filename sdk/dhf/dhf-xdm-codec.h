/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/* The XDM wire format (protos/xdm.md, protos/xdm-messages.json), shared by
 * dhfd and libdhf-1 so that both ends frame, validate and build messages
 * with the same code. Not public API: it is linked into both, and its
 * symbols are not exported from libdhf-1.
 *
 * A frame is a 16-byte header followed by `length` bytes of body:
 *
 *   offset size
 *        0    2  magic "DX" (0x44 0x58)
 *        2    1  frame format version (1)
 *        3    1  message type (DhfXdmType)
 *        4    2  flags, little endian (DHF_XDM_FLAG_*; unknown bits refused)
 *        6    2  reserved, must be 0
 *        8    4  request id, little endian (0 = none)
 *       12    4  body length, little endian (at most DHF_XDM_MAX_BODY)
 *
 * The body of STREAM_DATA is raw bytes (flag RAW set); every other body is
 * one JSON object (flag RAW clear), UTF-8, at most DHF_XDM_MAX_DEPTH
 * objects and arrays deep (the top-level object is level 1), possibly
 * empty (length 0 means {}).
 *
 * Header errors (bad magic, version, type, flags, reserved bits, a length
 * over the cap, id 0 on a type that needs an id) cannot be recovered from:
 * the stream has lost its framing (or the peer is broken) and the receiver
 * drops the connection after an ERROR with id 0. Body errors (bad JSON, a
 * missing or invalid field) are answered with an ERROR carrying the
 * frame's id, and the connection goes on. */

#include <glib.h>
#include <json.h>

/* DhfError; outside the SDK's own build through the public header, since
 * dhf-error.h refuses to be included on its own. */
#ifdef DHF_COMPILATION
#include "dhf-error.h"
#else
#include <dhf/dhf.h>
#endif

G_BEGIN_DECLS

#define DHF_XDM_HEADER_SIZE   16
#define DHF_XDM_FRAME_VERSION 1
/* The message protocol versions this build speaks (negotiated in HELLO). */
#define DHF_XDM_PROTOCOL_VERSION 1
#define DHF_XDM_MAX_BODY         (1024u * 1024u)
#define DHF_XDM_MAX_DEPTH        32
/* Limits of individual fields (bytes). */
#define DHF_XDM_MAX_NAME           255  /* service and topic names */
#define DHF_XDM_MAX_ARG            64   /* service argument */
#define DHF_XDM_MAX_DOMAIN         64   /* domain names (target, source) */
#define DHF_XDM_MAX_MESSAGE        1024 /* ERROR message text */
#define DHF_XDM_MAX_CLIENT         128  /* HELLO client description */
#define DHF_XDM_DEFAULT_TIMEOUT_MS 25000
#define DHF_XDM_MAX_TIMEOUT_MS     600000
#define DHF_XDM_MAX_WINDOW         (64u * 1024u * 1024u) /* stream window / credit */

/* The channel name appliances get (virtio-serial / Xen channel), and the
 * vsock port dhfd listens on. */
#define DHF_XDM_CHANNEL_NAME "org.dhf.xdm.0"
#define DHF_XDM_VSOCK_PORT   5477
/* Where dom0 clients connect (dhfd.conf [XDM] Socket=). */
#define DHF_XDM_DEFAULT_SOCKET "/run/dhf/xdm.sock"

typedef enum
{
  DHF_XDM_HELLO = 1,   /* client -> dhfd: {"versions":[1], "client"?} */
  DHF_XDM_WELCOME,     /* dhfd -> client: {"version", "domain", "uuid"?, "limits"} */
  DHF_XDM_REGISTER,    /* {"service"} -> REPLY {} | ERROR */
  DHF_XDM_UNREGISTER,  /* {"service"} -> REPLY {} | ERROR */
  DHF_XDM_CALL,        /* {"service", "arg"?, "target"?, "source"?, "timeout_ms"?, "params"?} */
  DHF_XDM_REPLY,       /* {"result"?} (any JSON value; absent = null), {"window"}, {"delivered"} */
  DHF_XDM_ERROR,       /* {"code", "message"} */
  DHF_XDM_CANCEL,      /* {} : the request with this id is abandoned */
  DHF_XDM_SUBSCRIBE,   /* {"topic"} -> REPLY {} | ERROR */
  DHF_XDM_UNSUBSCRIBE, /* {"topic"} -> REPLY {} | ERROR */
  DHF_XDM_PUBLISH,     /* {"topic", "data"?, "source"?}; id != 0 asks for REPLY {"delivered": n} */
  DHF_XDM_EVENT,       /* dhfd -> subscriber: {"topic", "source", "data"?} */
  DHF_XDM_STREAM_OPEN, /* {"service", "arg"?, "target"?, "source"?, "window"} -> REPLY {"window"} */
  DHF_XDM_STREAM_DATA, /* raw bytes; id = the stream's id */
  DHF_XDM_STREAM_CREDIT, /* {"bytes"}: the receiver may take that many more bytes */
  DHF_XDM_STREAM_CLOSE,  /* {"code"?, "message"?}: no more data from the sender (or reset) */
  DHF_XDM_PING,          /* {} -> PONG with the same id */
  DHF_XDM_PONG,          /* {} */
  /*< private >*/
  DHF_XDM_N_TYPES
} DhfXdmType;

enum
{
  DHF_XDM_FLAG_RAW = 1 << 0, /* body is raw bytes: set on STREAM_DATA, and only there */
};

typedef struct
{
  guint8 version;
  guint8 type;
  guint16 flags;
  guint32 id;
  guint32 length;
} DhfXdmHeader;

/* "CALL", "STREAM_DATA", ...; NULL for an unknown type. */
const gchar *dhf_xdm_type_to_string (guint type);

/* Validates and decodes the DHF_XDM_HEADER_SIZE bytes at data. On failure
 * sets DHF_ERROR_PROTOCOL with a message naming the bad field; the caller
 * must then drop the connection. These types need a request id other than
 * 0: REGISTER, UNREGISTER, CALL, REPLY, CANCEL, SUBSCRIBE, UNSUBSCRIBE and
 * STREAM_* (id 0 is "none"; ids that wrap around must skip it). */
gboolean dhf_xdm_header_parse (const guint8 *data, DhfXdmHeader *header, GError **error);

/* Looks at the bytes buffered so far: returns the size of the complete
 * frame at the start of buf (header + body), 0 if more bytes are needed,
 * or -1 with DHF_ERROR_PROTOCOL when the header is invalid (which is known
 * as soon as DHF_XDM_HEADER_SIZE bytes are there, before any body is read,
 * so a 4 GiB length is refused without waiting or allocating). */
gssize dhf_xdm_frame_scan (const guint8 *buf, gsize len, DhfXdmHeader *header, GError **error);

/* A decoded message. JSON fields borrow from body; raw borrows from the
 * buffer given to dhf_xdm_message_parse(). Fields a type does not have, or
 * that are absent, are NULL / 0. */
typedef struct
{
  DhfXdmType type;
  guint32 id;
  json_object *body; /* owned; NULL for STREAM_DATA */

  const gchar *service; /* REGISTER, UNREGISTER, CALL, STREAM_OPEN */
  const gchar *arg;     /* CALL, STREAM_OPEN; NULL = no argument ("" is an empty one) */
  const gchar *target;  /* CALL, STREAM_OPEN; NULL = let dhfd choose */
  const gchar *source;  /* CALL, PUBLISH, STREAM_OPEN (client: optional claim), EVENT */
  const gchar *topic;   /* SUBSCRIBE, UNSUBSCRIBE, PUBLISH, EVENT */
  const gchar *code;    /* ERROR, STREAM_CLOSE: a DhfError nick ("not-authorized") */
  const gchar *message; /* ERROR, STREAM_CLOSE */
  const gchar *client;  /* HELLO */
  const gchar *domain;  /* WELCOME */
  const gchar *uuid;    /* WELCOME */
  /* CALL "params", REPLY "result", PUBLISH/EVENT "data": borrowed from body,
   * NULL when absent or JSON null. */
  json_object *value;
  guint32 timeout_ms; /* CALL: 1..DHF_XDM_MAX_TIMEOUT_MS, DHF_XDM_DEFAULT_TIMEOUT_MS if absent */
  guint32 window;     /* STREAM_OPEN, REPLY to STREAM_OPEN (0 if absent there) */
  guint32 bytes;      /* STREAM_CREDIT: 1..DHF_XDM_MAX_WINDOW */
  guint32 version;    /* HELLO: the highest version both speak; WELCOME: the chosen one */
  guint32 delivered;  /* REPLY to PUBLISH */

  const guint8 *raw; /* STREAM_DATA */
  gsize raw_length;
} DhfXdmMessage;

/* Decodes and validates the body of a frame whose header was accepted by
 * dhf_xdm_header_parse(). Validation is complete: required fields present
 * with the right JSON type, names and arguments well formed (the grammar of
 * the policy language: services and topics are reverse-DNS names of two or
 * more elements [A-Za-z_][A-Za-z0-9_-]*, at most 255 bytes; arguments
 * [A-Za-z0-9._-]{0,64}; domains [A-Za-z0-9_.-]{1,64}), numbers in range,
 * unknown members ignored (forward compatibility), HELLO with at least one
 * version this build speaks (else DHF_ERROR_PROTOCOL). The body text must
 * be strict RFC 8259 JSON in well-formed UTF-8 (no NaN, no raw control
 * characters in strings, nothing after the object). On failure: FALSE,
 * DHF_ERROR_INVALID_ARGS (or DHF_ERROR_PROTOCOL for HELLO and WELCOME,
 * where the session cannot start) with a message naming the type and the
 * field, and msg cleared. */
gboolean dhf_xdm_message_parse (const DhfXdmHeader *header, const guint8 *body, DhfXdmMessage *msg,
                                GError **error);
void dhf_xdm_message_clear (DhfXdmMessage *msg);

/* Checks used by the parser, exported for callers that build messages. */
gboolean dhf_xdm_name_is_valid (const gchar *name); /* service or topic */
gboolean dhf_xdm_arg_is_valid (const gchar *arg);
gboolean dhf_xdm_domain_is_valid (const gchar *domain);
/* Splits "org.example.Sync1+docs" into service and argument (NULL when
 * there is no '+'); FALSE with DHF_ERROR_INVALID_ARGS when either part is
 * malformed. */
gboolean dhf_xdm_split_service (const gchar *text, gchar **service, gchar **arg, GError **error);

/* Appends one frame to out. The body is serialised from json (a JSON
 * object, or NULL = empty body); raw frames (STREAM_DATA only) take bytes
 * as they are. Both abort on a body over DHF_XDM_MAX_BODY: callers whose
 * body size depends on a peer use dhf_xdm_append_json_checked() instead. */
void dhf_xdm_append_json (GByteArray *out, DhfXdmType type, guint32 id, json_object *json);
/* The same, but a body over DHF_XDM_MAX_BODY is refused with
 * DHF_ERROR_LIMIT_EXCEEDED and out is left as it was. Serialises once. */
gboolean dhf_xdm_append_json_checked (GByteArray *out, DhfXdmType type, guint32 id,
                                      json_object *json, GError **error);
/* Whether json serialises to at most DHF_XDM_MAX_BODY bytes (this
 * serialises it: prefer dhf_xdm_append_json_checked() when appending). */
gboolean dhf_xdm_json_fits (json_object *json);
void dhf_xdm_append_raw (GByteArray *out, DhfXdmType type, guint32 id, const guint8 *data,
                         gsize length);
/* Appends a frame whose body is already-serialised JSON text (validated by
 * the caller: dhfd forwards a REPLY body it has parsed without
 * re-serialising it). length (gsize) -1 means NUL-terminated. */
void dhf_xdm_append_text (GByteArray *out, DhfXdmType type, guint32 id, const gchar *text,
                          gsize length);
/* ERROR {"code": nick of code, "message": message (invalid UTF-8 repaired,
 * then cut to DHF_XDM_MAX_MESSAGE bytes at a character boundary; NULL
 * means "")}. */
void dhf_xdm_append_error (GByteArray *out, guint32 id, DhfError code, const gchar *message);

/* The nick of a DhfError ("not-authorized"), and back; an unknown nick maps
 * to DHF_ERROR_FAILED. */
const gchar *dhf_xdm_error_code_to_string (DhfError code);
DhfError dhf_xdm_error_code_from_string (const gchar *code);
/* Turns a received ERROR (or STREAM_CLOSE with a code) into a GError in
 * DHF_ERROR; an unknown code becomes DHF_ERROR_FAILED with the code in the
 * message. NULL for a STREAM_CLOSE without a code (an orderly end). */
GError *dhf_xdm_message_to_error (const DhfXdmMessage *msg);

G_END_DECLS
