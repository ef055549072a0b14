/*
 * proto — the control socket's messages (docs/PROTOCOL.md).
 *
 * The socket is SOCK_SEQPACKET, so the kernel keeps message boundaries:
 * one recv is one message of at most PROTO_MAX bytes.
 *
 *   header   magic "IV" | version (1) | type (1) | payload length (LE32)
 *   payload  fields, each: tag (1) | length (LE16) | bytes
 *
 * proto_parse checks everything a peer could get wrong — magic, version,
 * known type, length, every field's bounds, the field count — and refuses
 * the message as a whole (-EPROTO); a refused message ends the connection.
 */
#ifndef IMGVAULT_PROTO_H
#define IMGVAULT_PROTO_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define PROTO_VERSION 1
#define PROTO_HEADER 8
#define PROTO_MAX 65536
#define PROTO_MAX_FIELDS 16
#define PROTO_DATA_MAX (PROTO_MAX - PROTO_HEADER - 3)

enum proto_type {
	P_ERROR = 1,       /* errno, message */
	P_OK = 2,          /* fields by request */
	P_STATUS = 3,
	P_LS = 4,          /* [album] */
	P_ENTRY = 5,       /* one listed album or image */
	P_END = 6,         /* end of a listing or of data */
	P_CAT = 7,         /* album, name, [variant] */
	P_DATA = 8,        /* data */
	P_IMPORT = 9,      /* album, name; then DATA…, END */
	P_RM = 10,         /* album, name */
	P_LOCK = 11,       /* [uid] */
	P_UNLOCK = 12,     /* [uid], [passphrase] */
	P_SHARE = 13,      /* album, name, [variant, disposition, ttl, not-before,
			    * uses, partner] -> OK: token, token id, times, url */
	P_SHARES = 14,     /* [album, name | partner] -> ENTRY… END */
	P_REVOKE = 15,     /* token id | album, name | partner -> OK: count */
	P_KEYS = 16,       /* op: list | rotate | retire (kid) | export */
	P_PARTNER = 17,    /* op: list | add | disable; partner, cidrs, ttl, max-ttl */
	P_FETCH_OPEN = 18, /* token, client -> OK: what the link serves */
	P_FETCH_BODY = 19, /* offset, length: the body about to be sent */
	P_FETCH_READ = 20, /* offset, length -> DATA */
	P_FETCH_DONE = 21, /* status, bytes, complete -> OK */
	P_TYPE_MAX = 21,
};

enum proto_tag {
	T_ALBUM = 1, T_NAME = 2, T_VARIANT = 3, T_ERRNO = 4, T_MESSAGE = 5, T_SIZE = 6,
	T_MIME = 7, T_MTIME = 8, T_STORE = 9, T_MOUNT = 10, T_USERS = 11, T_PENDING = 12,
	T_DATA = 13, T_ID = 14, T_SHA256 = 15, T_DAMAGED = 16, T_KIND = 17, T_MODE = 18,
	T_WIDTH = 19, T_HEIGHT = 20, T_PASSPHRASE = 21, T_UID = 22,
	T_TOKEN = 23, T_DISPOSITION = 24, T_TTL = 25, T_NOT_BEFORE = 26, T_USES = 27,
	T_PARTNER = 28, T_TOKEN_ID = 29, T_EXPIRES = 30, T_URL = 31, T_COUNT = 32, T_KID = 33,
	T_CREATED = 34, T_RETIRED = 35, T_CIDRS = 36, T_MAX_TTL = 37, T_DISABLED = 38,
	T_CLIENT = 39, T_ETAG = 40, T_OFFSET = 41, T_LENGTH = 42, T_STATUS = 43, T_BYTES = 44,
	T_COMPLETE = 45, T_OP = 46, T_USES_MAX = 47, T_CURRENT = 48, T_OWNER = 49,
};

/* The longest passphrase an UNLOCK carries. */
#define PROTO_PASSPHRASE_MAX 1024

struct proto_field {
	uint8_t tag;
	uint16_t len;
	const uint8_t *val;      /* points into the parsed buffer */
};

struct proto_msg {
	uint8_t type;
	size_t nfields;
	struct proto_field fields[PROTO_MAX_FIELDS];
};

/* Parses one message; 0 or -EPROTO.  @out points into @buf. */
int proto_parse(const uint8_t *buf, size_t len, struct proto_msg *out);
/* The first field with @tag, or NULL. */
const struct proto_field *proto_get(const struct proto_msg *m, uint8_t tag);
/* A field as a NUL-terminated string in @buf (-EPROTO if missing, too long
 * or holding a NUL). */
int proto_get_str(const struct proto_msg *m, uint8_t tag, char *buf, size_t cap);
/* A field as an unsigned LE64 (-EPROTO if missing or not 8 bytes). */
int proto_get_u64(const struct proto_msg *m, uint8_t tag, uint64_t *out);

/* Builds one message in place. */
struct proto_out {
	uint8_t buf[PROTO_MAX];
	size_t len;
	bool overflow;
};

void proto_begin(struct proto_out *o, enum proto_type type);
void proto_put(struct proto_out *o, enum proto_tag tag, const void *val, size_t len);
void proto_put_str(struct proto_out *o, enum proto_tag tag, const char *s);
void proto_put_u64(struct proto_out *o, enum proto_tag tag, uint64_t v);
/* Sets the length; -EMSGSIZE if a field did not fit. */
int proto_finish(struct proto_out *o);

#endif
