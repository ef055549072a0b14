/*
 * token — share-link tokens and the public signing keyring (DESIGN §8).
 *
 * A token is "payload.signature", both base64url without padding:
 *
 *     payload (71 bytes)  version (1) = 1 | kid (8) | token id (16) |
 *                         image id (16) | variant (1) | disposition (1) |
 *                         not-before (LE64) | expires (LE64) |
 *                         partner id (LE64, 0 none) | use limit (LE32, 0 none)
 *     signature (64)      Ed25519 over TOKEN_DOMAIN (with its NUL) || payload
 *
 * Decoding checks structure only (lengths, canonical base64url, version,
 * field ranges); token_verify checks the signature.  Nothing here touches
 * a catalog, so the gateway, which holds public keys only, uses this module
 * as it is.  docs/GATEWAY.md specifies the format to the byte.
 */
#ifndef IMGVAULT_TOKEN_H
#define IMGVAULT_TOKEN_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "iverr.h"

#define TOKEN_VERSION      1
#define TOKEN_DOMAIN       "imgvault share token v1"
#define TOKEN_KID_LEN      8
#define TOKEN_ID_LEN       16
#define TOKEN_IMAGE_LEN    16
#define TOKEN_PAYLOAD_LEN  71
#define TOKEN_SIG_LEN      64
#define TOKEN_PK_LEN       32
#define TOKEN_SK_LEN       64
/* 95 characters of payload, the dot, 86 of signature. */
#define TOKEN_STR_LEN      182

enum token_variant { TOKEN_ORIGINAL = 0, TOKEN_PRISTINE = 1, TOKEN_THUMB = 2 };
enum token_disposition { TOKEN_INLINE = 0, TOKEN_ATTACHMENT = 1 };

struct token {
	uint8_t kid[TOKEN_KID_LEN];
	uint8_t id[TOKEN_ID_LEN];
	uint8_t image[TOKEN_IMAGE_LEN];
	uint8_t variant;          /* enum token_variant */
	uint8_t disposition;      /* enum token_disposition */
	int64_t not_before;       /* Unix seconds */
	int64_t expires;          /* Unix seconds, > not_before */
	uint64_t partner;         /* 0: not a partner link */
	uint32_t uses;            /* 0: unlimited */
};

/* A decoded token with the bytes its signature covers. */
struct token_wire {
	struct token t;
	uint8_t payload[TOKEN_PAYLOAD_LEN];
	uint8_t sig[TOKEN_SIG_LEN];
};

/* Decodes @len bytes of @s; 0 or -EINVAL for anything malformed. */
int token_decode(const char *s, size_t len, struct token_wire *out);
/* Whether the signature is @pk's. */
bool token_verify(const struct token_wire *w, const uint8_t pk[TOKEN_PK_LEN]);
/* Signs @t with @sk into @out (TOKEN_STR_LEN characters and a NUL). */
void token_encode(const struct token *t, const uint8_t sk[TOKEN_SK_LEN],
		  char out[TOKEN_STR_LEN + 1]);

/* Lowercase hex of a token id or key id: 2 * len characters and a NUL. */
void token_hex(const uint8_t *id, size_t len, char *out);
/* Parses lowercase or uppercase hex of exactly @len bytes; 0 or -EINVAL. */
int token_unhex(const char *s, uint8_t *out, size_t len);

/* ---- the public keyring: what the gateway is given --------------------- */

struct token_key {
	uint8_t kid[TOKEN_KID_LEN];
	uint8_t pk[TOKEN_PK_LEN];
	bool retired;             /* links signed with it are revoked */
};

struct token_keyring {
	struct token_key *keys;
	size_t n;
};

/*
 * Parses a keyring file:
 *
 *     imgvault-keyring 1
 *     KID-HEX PUBLIC-KEY-BASE64URL live|retired
 *
 * '#' starts a comment line.  An error names the line.  The caller owns
 * out->keys (token_keyring_free).
 */
int token_keyring_parse(const char *text, size_t len, struct token_keyring *out,
			struct iverr *e);
int token_keyring_load(const char *path, struct token_keyring *out, struct iverr *e);
const struct token_key *token_keyring_find(const struct token_keyring *r,
					   const uint8_t kid[TOKEN_KID_LEN]);
void token_keyring_free(struct token_keyring *r);
/* The file's text for @n keys; the caller frees the result (NULL: out of
 * memory). */
char *token_keyring_format(const struct token_key *keys, size_t n);

#endif
