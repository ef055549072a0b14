/*
 * keys — the key hierarchy of DESIGN §2.
 *
 *   user key UK (32 random bytes, never stored in the clear)
 *     ├─ wrapped in key slots: passphrase (Argon2id), server key, recovery code
 *     └─ subkeys (crypto_kdf_derive_from_key, one context each):
 *          file_wrap   wraps every blob's own file key
 *          meta        seals catalog metadata: names, tags, album names, attrs
 *          name_index  keys the BLAKE2b lookup index of (parent, name)
 *          rekey       seals the previous UK while a rotation is in progress
 *          catalog     authenticates the vault's catalog rows (catalog.h)
 *          store       authenticates a desktop store's store-wide rows
 *
 * Every secret lives in sodium_malloc memory (guard pages, mlock) and is
 * wiped when freed.  Functions return 0 or -errno; decryptions are
 * warn_unused_result.
 */
#ifndef IMGVAULT_KEYS_H
#define IMGVAULT_KEYS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "iverr.h"

#define KEYS_KEY_LEN        32
#define KEYS_NONCE_LEN      24   /* XChaCha20-Poly1305 */
#define KEYS_TAG_LEN        16
#define KEYS_SALT_LEN       16
#define KEYS_WRAPPED_LEN    (KEYS_KEY_LEN + KEYS_TAG_LEN)
#define KEYS_STORE_ID_LEN   16
/* Sealed metadata: nonce || ciphertext || tag. */
#define KEYS_SEAL_OVERHEAD  (KEYS_NONCE_LEN + KEYS_TAG_LEN)
/* A recovery code: 25 Crockford base32 digits (125 bits) in five groups. */
#define KEYS_RECOVERY_CODE_LEN 29

#define KEYS_WUR __attribute__((warn_unused_result))

enum key_slot_kind {
	KEY_SLOT_PASSPHRASE = 1,
	KEY_SLOT_SERVER     = 2,
	KEY_SLOT_RECOVERY   = 3,
};

/* What a slot is bound to: its associated data, so slots cannot be moved. */
struct key_slot_binding {
	uint8_t store_id[KEYS_STORE_ID_LEN];
	uint32_t uid;
};

/* A key slot as stored in the catalog.  Nothing in it is secret. */
struct key_slot {
	enum key_slot_kind kind;
	uint8_t salt[KEYS_SALT_LEN];
	uint64_t opslimit;               /* Argon2id cost; 0 for other kinds */
	uint64_t memlimit;
	uint8_t nonce[KEYS_NONCE_LEN];
	uint8_t wrapped[KEYS_WRAPPED_LEN];
};

/* Argon2id cost of a new passphrase slot. */
struct keys_kdf_cost {
	uint64_t opslimit;
	uint64_t memlimit;
};

/* libsodium's presets by name: "interactive", "moderate", "sensitive". */
int keys_kdf_cost_by_name(const char *name, struct keys_kdf_cost *out);
/* The default for new slots: "moderate" (Argon2id, 3 passes, 256 MiB). */
struct keys_kdf_cost keys_kdf_cost_default(void);

/* The unlocked keys of one user.  Allocated with sodium_malloc. */
struct user_keys {
	uint8_t uk[KEYS_KEY_LEN];
	uint8_t file_wrap[KEYS_KEY_LEN];
	uint8_t meta[KEYS_KEY_LEN];
	uint8_t name_index[KEYS_KEY_LEN];
	uint8_t rekey[KEYS_KEY_LEN];
	uint8_t catalog[KEYS_KEY_LEN];   /* authenticates the vault's catalog rows */
	uint8_t store[KEYS_KEY_LEN];     /* a desktop store's own rows (its owner's) */
};

/* The vault's server key (system mode).  Allocated with sodium_malloc. */
struct server_key {
	uint8_t k[KEYS_KEY_LEN];
};

/* Must be called once before anything else; returns 0 or -1. */
int keys_init(void);

/* A new random user key with its subkeys; NULL when out of memory.
 * The caller owns the result and releases it with keys_user_free. */
struct user_keys *keys_user_new(void);
/* The keys of a known user key (a rotation's saved previous key); the
 * caller owns the result. */
struct user_keys *keys_user_from_uk(const uint8_t uk[KEYS_KEY_LEN]);
/* Wipes and frees; NULL is a no-op. */
void keys_user_free(struct user_keys *k);

/*
 * Loads the server key from @path.  Refuses a file that group or others
 * can read or write, or that is not exactly 32 bytes, with a message that
 * says how to fix it.  The caller owns *out (keys_server_free).
 */
int keys_server_load(const char *path, struct server_key **out, struct iverr *e);
/* Creates a new random server key file at @path, mode 0400, never
 * overwriting an existing file.  The caller owns *out. */
int keys_server_create(const char *path, struct server_key **out, struct iverr *e);
void keys_server_free(struct server_key *sk);
/* A value that tells whether a server key is the store's, without
 * revealing anything about it: keyed BLAKE2b of the store id. */
void keys_server_check(const struct server_key *sk,
		       const uint8_t store_id[KEYS_STORE_ID_LEN], uint8_t out[32]);
/* The key that authenticates a system store's store-wide catalog rows. */
void keys_server_store_key(const struct server_key *sk, uint8_t out[KEYS_KEY_LEN]);

/*
 * Seals @uk into a new slot of @kind.  The secret is, by kind: the
 * passphrase bytes, the 32-byte server key, or a recovery code (any case,
 * dashes and spaces ignored).  @cost is used by passphrase slots only and
 * may be NULL for the default.
 */
int keys_slot_seal(struct key_slot *slot, enum key_slot_kind kind,
		   const struct user_keys *uk, const void *secret, size_t secret_len,
		   const struct keys_kdf_cost *cost,
		   const struct key_slot_binding *b, struct iverr *e);

/*
 * Opens a slot with its secret.  On success *out holds the user's keys
 * (owned by the caller).  A wrong secret returns -IV_EAUTH.
 */
int keys_slot_open(const struct key_slot *slot, const void *secret, size_t secret_len,
		   const struct key_slot_binding *b, struct user_keys **out,
		   struct iverr *e) KEYS_WUR;

/* A new random recovery code, NUL-terminated ("7GQ2M-…", 29 chars). */
void keys_recovery_code_new(char out[KEYS_RECOVERY_CODE_LEN + 1]);

/*
 * Seals @len bytes of metadata with @key (normally k->meta); @ad binds the
 * sealed value to its row.  Writes KEYS_SEAL_OVERHEAD + len bytes to @out.
 */
void keys_seal(const uint8_t key[KEYS_KEY_LEN], const void *ad, size_t adlen,
	       const void *pt, size_t len, uint8_t *out);
/* Opens a sealed value of @clen bytes into @out (clen - overhead bytes). */
int keys_open(const uint8_t key[KEYS_KEY_LEN], const void *ad, size_t adlen,
	      const uint8_t *c, size_t clen, uint8_t *out) KEYS_WUR;

/* The lookup index of a name under its parent: keyed BLAKE2b-256. */
void keys_name_index(const struct user_keys *k, int64_t parent,
		     const void *name, size_t len, uint8_t out[32]);

/* Constant-time comparison of two 32-byte values. */
bool keys_equal32(const uint8_t a[32], const uint8_t b[32]);

#endif
