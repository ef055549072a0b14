/*
 * catalog — the store's sqlite database (DESIGN §4).
 *
 * One file, STORE/catalog.db, in WAL mode; the schema is versioned with
 * PRAGMA user_version and migrated forward on open.  Every query is a
 * prepared statement owned by the struct catalog.  This module stores and
 * fetches rows; it never sees a key or a plaintext name: names, tags and
 * attributes arrive sealed (keys.h) with their keyed lookup index.
 *
 * Functions return 0, -ENOENT for "no such row", -EEXIST for a unique
 * conflict, or another -errno with a message in @e.  A struct catalog is
 * not thread-safe: its owner serialises calls.
 */
#ifndef IMGVAULT_CATALOG_H
#define IMGVAULT_CATALOG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "blobstore.h"
#include "iverr.h"
#include "keys.h"

/* The newest schema this code reads and writes. */
#define CATALOG_SCHEMA_VERSION 5

#define CATALOG_PID_LEN    16
#define CATALOG_INDEX_LEN  32
#define CATALOG_NAME_MAX   255
#define CATALOG_NAME_ENC_MAX (256 + KEYS_SEAL_OVERHEAD)   /* padded, §4.1 */
#define CATALOG_ATTRS_ENC_MAX 256

struct catalog;

/*
 * Opens (@create: creates) the catalog at @path and migrates it to
 * CATALOG_SCHEMA_VERSION.  A catalog from a newer schema is refused with
 * -IV_EVERSION; a damaged file with -IV_EDAMAGE.  The caller owns *out.
 */
int catalog_open(const char *path, bool create, struct catalog **out, struct iverr *e);
void catalog_close(struct catalog *c);

/* Transactions nest: only the outermost begin/commit reach sqlite, and a
 * rollback at any depth makes the outermost commit fail and roll back. */
int catalog_begin(struct catalog *c, struct iverr *e);
int catalog_commit(struct catalog *c, struct iverr *e);
void catalog_rollback(struct catalog *c);
/* A read-only stretch of several queries: one snapshot and one lock for
 * them all.  Only reads in between; a no-op inside a transaction. */
void catalog_read_begin(struct catalog *c);
void catalog_read_end(struct catalog *c);
/* Commits without waiting for the disk, for data that can be made again
 * (a thumbnail): after a crash the transaction may be gone, never torn, and
 * every later synchronous commit carries it to disk first. */
int catalog_commit_relaxed(struct catalog *c, struct iverr *e);

/* PRAGMA integrity_check; a damaged database gives -IV_EDAMAGE with the
 * first problem in @e. */
int catalog_check_integrity(struct catalog *c, struct iverr *e);

/* Store-wide settings: the store id, the server-key check value, … */
int catalog_meta_get(struct catalog *c, const char *key, void *buf, size_t cap,
		     size_t *len, struct iverr *e);
int catalog_meta_set(struct catalog *c, const char *key, const void *val, size_t len,
		     struct iverr *e);

/* ---- users and their key slots ---------------------------------------- */

enum catalog_rekey {
	CATALOG_REKEY_NONE = 0,
	CATALOG_REKEY_REWRAP = 1,   /* headers being rewrapped */
	CATALOG_REKEY_FULL = 2,     /* blobs being re-encrypted */
};

struct catalog_user {
	uint32_t uid;
	int64_t created;
	bool web_read;
	uint64_t quota;              /* bytes; 0 = none */
	int64_t key_epoch;           /* bumped by every rotation */
	enum catalog_rekey rekey;
	/* While a rotation runs: the previous user key, sealed under the new
	 * rekey subkey.  Empty otherwise. */
	uint8_t prev_uk[KEYS_KEY_LEN + KEYS_SEAL_OVERHEAD];
	size_t prev_uk_len;
};

int catalog_user_add(struct catalog *c, const struct catalog_user *u, struct iverr *e);
int catalog_user_get(struct catalog *c, uint32_t uid, struct catalog_user *u,
		     struct iverr *e);
int catalog_user_update(struct catalog *c, const struct catalog_user *u, struct iverr *e);
/* Deletes the user with their slots, albums, images and versions (not
 * their blobs: the caller removes those). */
int catalog_user_delete(struct catalog *c, uint32_t uid, struct iverr *e);
typedef int (*catalog_user_fn)(const struct catalog_user *u, void *arg);
int catalog_user_list(struct catalog *c, catalog_user_fn fn, void *arg, struct iverr *e);
/* Images and plaintext bytes (current versions plus pristine ones). */
int catalog_user_usage(struct catalog *c, uint32_t uid, uint64_t *images,
		       uint64_t *bytes, struct iverr *e);

/* Inserts or replaces the user's slot of slot->kind. */
int catalog_slot_put(struct catalog *c, uint32_t uid, const struct key_slot *s,
		     struct iverr *e);
int catalog_slot_get(struct catalog *c, uint32_t uid, enum key_slot_kind kind,
		     struct key_slot *s, struct iverr *e);
/* Overwrites the wrapped key with zeros, then deletes the row (the
 * database runs with secure_delete, so freed pages are zeroed too). */
int catalog_slot_delete(struct catalog *c, uint32_t uid, enum key_slot_kind kind,
			struct iverr *e);
/* Bit (1 << kind) set for each slot the user has. */
int catalog_slot_kinds(struct catalog *c, uint32_t uid, unsigned *mask, struct iverr *e);

/* ---- albums, images, versions ----------------------------------------- */

struct catalog_album {
	int64_t id;
	uint32_t uid;
	uint8_t pid[CATALOG_PID_LEN];        /* random, binds the sealed name */
	uint8_t name_idx[CATALOG_INDEX_LEN];
	uint8_t name_enc[CATALOG_NAME_ENC_MAX];
	size_t name_enc_len;
	int64_t created;
};

int catalog_album_add(struct catalog *c, struct catalog_album *a, struct iverr *e);
int catalog_album_get(struct catalog *c, int64_t id, struct catalog_album *a,
		      struct iverr *e);
int catalog_album_find(struct catalog *c, uint32_t uid,
		       const uint8_t idx[CATALOG_INDEX_LEN], struct catalog_album *a,
		       struct iverr *e);
/* Rewrites name_idx and name_enc (rename, or re-encryption on rotation). */
int catalog_album_update(struct catalog *c, const struct catalog_album *a, struct iverr *e);
/* -ENOTEMPTY while the album holds images. */
int catalog_album_delete(struct catalog *c, int64_t id, struct iverr *e);
typedef int (*catalog_album_fn)(const struct catalog_album *a, void *arg);
int catalog_album_list(struct catalog *c, uint32_t uid, catalog_album_fn fn, void *arg,
		       struct iverr *e);

struct catalog_image {
	int64_t id;
	uint32_t uid;
	int64_t album_id;
	uint8_t pid[CATALOG_PID_LEN];        /* the public image id of tokens */
	uint8_t name_idx[CATALOG_INDEX_LEN];
	uint8_t name_enc[CATALOG_NAME_ENC_MAX];
	size_t name_enc_len;
	int64_t current_version;             /* 0: an empty placeholder */
	int64_t pristine_version;
	bool damaged;
	int64_t created;
	int64_t mtime;
};

int catalog_image_add(struct catalog *c, struct catalog_image *im, struct iverr *e);
int catalog_image_get(struct catalog *c, int64_t id, struct catalog_image *im,
		      struct iverr *e);
int catalog_image_find(struct catalog *c, int64_t album_id,
		       const uint8_t idx[CATALOG_INDEX_LEN], struct catalog_image *im,
		       struct iverr *e);
/* Rewrites album, name, versions, damaged flag and mtime. */
int catalog_image_update(struct catalog *c, const struct catalog_image *im, struct iverr *e);
/* Deletes the image and its version rows. */
int catalog_image_delete(struct catalog *c, int64_t id, struct iverr *e);
typedef int (*catalog_image_fn)(const struct catalog_image *im, void *arg);
int catalog_image_list(struct catalog *c, int64_t album_id, catalog_image_fn fn, void *arg,
		       struct iverr *e);
int catalog_image_list_user(struct catalog *c, uint32_t uid, catalog_image_fn fn,
			    void *arg, struct iverr *e);

struct catalog_version {
	int64_t id;
	int64_t image_id;
	struct blob_id blob;
	uint64_t size;
	/* mime, width, height and SHA-256, sealed under the meta key with the
	 * blob id as associated data */
	uint8_t attrs_enc[CATALOG_ATTRS_ENC_MAX];
	size_t attrs_enc_len;
	int64_t key_epoch;
	int64_t created;
};

int catalog_version_add(struct catalog *c, struct catalog_version *v, struct iverr *e);
int catalog_version_get(struct catalog *c, int64_t id, struct catalog_version *v,
			struct iverr *e);
/* Rewrites blob, size, attrs, key epoch and image. */
int catalog_version_update(struct catalog *c, const struct catalog_version *v,
			   struct iverr *e);
int catalog_version_delete(struct catalog *c, int64_t id, struct iverr *e);
typedef int (*catalog_version_fn)(const struct catalog_version *v, void *arg);
/* Every version of the user's images, in id order, from id @after on. */
int catalog_version_list_user(struct catalog *c, uint32_t uid, int64_t after,
			      catalog_version_fn fn, void *arg, struct iverr *e);
/* Whether any version or thumbnail references blob @id. */
int catalog_blob_referenced(struct catalog *c, const struct blob_id *id, bool *out,
			    struct iverr *e);

/* ---- thumbnails and their queue (schema 2) ---------------------------- */

/* The thumbnail of one version; attrs sealed like a version's. */
struct catalog_thumb {
	int64_t version_id;
	struct blob_id blob;
	uint64_t size;
	uint8_t attrs_enc[CATALOG_ATTRS_ENC_MAX];
	size_t attrs_enc_len;
	int64_t key_epoch;
	int64_t created;
};

/* Inserts or replaces the thumbnail of t->version_id. */
int catalog_thumb_put(struct catalog *c, const struct catalog_thumb *t, struct iverr *e);
int catalog_thumb_get(struct catalog *c, int64_t version_id, struct catalog_thumb *t,
		      struct iverr *e);
int catalog_thumb_delete(struct catalog *c, int64_t version_id, struct iverr *e);
typedef int (*catalog_thumb_fn)(const struct catalog_thumb *t, void *arg);
int catalog_thumb_list_user(struct catalog *c, uint32_t uid, catalog_thumb_fn fn, void *arg,
			    struct iverr *e);

/* The queue of thumbnails to make lives in the catalog, so it survives a
 * restart.  Pushing a queued version again raises its priority only. */
int catalog_queue_push(struct catalog *c, int64_t version_id, uint32_t uid, int priority,
		       int64_t queued, struct iverr *e);
int catalog_queue_delete(struct catalog *c, int64_t version_id, struct iverr *e);
/* Up to @cap queued version ids of @uid, most urgent first. */
int catalog_queue_list(struct catalog *c, uint32_t uid, int64_t *ids, size_t cap, size_t *n,
		       struct iverr *e);
int catalog_queue_count(struct catalog *c, uint32_t uid, uint64_t *n, struct iverr *e);

/* ---- extended attributes and expiry (schema 3) ------------------------- */

enum catalog_text { CATALOG_TAGS, CATALOG_COMMENT };

/* A sealed tags or comment value of an image: -ENODATA when unset. */
int catalog_image_text_get(struct catalog *c, int64_t id, enum catalog_text which,
			   uint8_t *buf, size_t cap, size_t *len, struct iverr *e);
/* Sets it; @val NULL unsets. */
int catalog_image_text_set(struct catalog *c, int64_t id, enum catalog_text which,
			   const uint8_t *val, size_t len, struct iverr *e);
/* The image's expiry (Unix time; 0: none). */
int catalog_image_expires_get(struct catalog *c, int64_t id, int64_t *when, struct iverr *e);
int catalog_image_expires_set(struct catalog *c, int64_t id, int64_t when, struct iverr *e);
/* Up to @cap images of @uid whose expiry is at or before @now. */
int catalog_expired(struct catalog *c, uint32_t uid, int64_t now, int64_t *ids, size_t cap,
		    size_t *n, struct iverr *e);

/* ---- authentication (schema 5, catalog_auth.c) --------------------------
 *
 * Rows are authenticated under the key of their scope: a user's vault
 * (scope = uid) or the store (CATALOG_SCOPE_STORE: users, partners, the
 * vault's signing keys).  The catalog keeps a copy of each key it is given
 * (wiped on drop and close).  With a scope's key present, every row of it
 * that is read is verified (-IV_EDAMAGE naming the row when it fails) and
 * every change is sealed; without it, reads are not verified and changes
 * to a sealed scope are refused (-EACCES).  docs/FORMAT.md §6.5.
 */
#define CATALOG_SCOPE_STORE (-1)
#define CATALOG_SCOPE_AUDIT (-2)   /* the audit trail's head, under the store's key */
#define CATALOG_AUTH_REPORT_MAX 16

/* Keys are counted: each set needs a drop. */
int catalog_auth_key_set(struct catalog *c, int64_t scope, const uint8_t key[32],
			 struct iverr *e);
void catalog_auth_key_drop(struct catalog *c, int64_t scope);
bool catalog_auth_has_key(struct catalog *c, int64_t scope);
/* Whether @key is the one @scope's seal was made with (false when the
 * scope has no seal). */
int catalog_auth_key_fits(struct catalog *c, int64_t scope, const uint8_t key[32], bool *fits,
			  struct iverr *e);
/* Rows listings left out since the last call (they fail); resets it. */
uint64_t catalog_auth_hidden(struct catalog *c);
/* fsck: reads hand out rows that fail instead of refusing them (fsck
 * checks them with catalog_auth_verify). */
void catalog_auth_set_lenient(struct catalog *c, bool lenient);
/* Whether @scope has a seal (its rows are authenticated). */
int catalog_auth_sealed(struct catalog *c, int64_t scope, bool *sealed, struct iverr *e);
/* Computes every row's MAC of @scope as the rows are now and writes the
 * seal (a scope from before schema 5, or an accepted repair). */
int catalog_auth_seal(struct catalog *c, int64_t scope, struct iverr *e);
/* Removes a scope's seal (its user is deleted). */
int catalog_auth_forget_scope(struct catalog *c, int64_t scope, struct iverr *e);

enum catalog_auth_state {
	CATALOG_AUTH_OK,        /* every row verifies and the sum matches */
	CATALOG_AUTH_ROWS,      /* the rows listed fail; they explain the sum */
	CATALOG_AUTH_CHANGED,   /* rows were removed, added or rolled back */
	CATALOG_AUTH_MISSING,   /* the scope has no seal */
	CATALOG_AUTH_FORGED,    /* the seal itself fails */
};

struct catalog_auth_report {
	enum catalog_auth_state state;
	uint64_t rows;          /* rows found */
	int64_t sealed_rows;    /* rows the seal counts */
	uint64_t nbad;          /* rows that fail (the first few listed) */
	struct {
		const char *table;      /* "image", "album", … */
		int kind;
		int64_t rowid;
	} bad[CATALOG_AUTH_REPORT_MAX];
};

/* Checks every row of @scope and its seal (needs its key). */
int catalog_auth_verify(struct catalog *c, int64_t scope, struct catalog_auth_report *r,
			struct iverr *e);

/* ---- the audit trail (rows only; audit.h chains them) ------------------ */

struct catalog_audit {
	int64_t seq;
	int64_t time;
	int64_t actor;          /* uid of the caller */
	int64_t subject;        /* uid whose vault it concerns, -1 for none */
	char action[32];
	char object[80];        /* ids, never names */
	char result[16];
	char detail[256];
	uint8_t hash[32];
};

/* Seals the audit trail's head (@seq, @hash) under the store scope's key,
 * when the catalog holds it; otherwise leaves the last seal as it is. */
int catalog_audit_seal(struct catalog *c, int64_t seq, const uint8_t hash[32],
		       struct iverr *e);
/* The sealed head: -ENOENT when there is none; -IV_EDAMAGE when the seal
 * fails under the store key; *checked says whether the key was at hand. */
int catalog_audit_sealed_head(struct catalog *c, int64_t *seq, uint8_t hash[32], bool *checked,
			      struct iverr *e);
/* Inserts @a as is: the caller sets seq (last + 1) and the chained hash. */
int catalog_audit_insert(struct catalog *c, struct catalog_audit *a, struct iverr *e);
/* The newest entry, or -ENOENT when the trail is empty. */
int catalog_audit_last(struct catalog *c, struct catalog_audit *a, struct iverr *e);
/* The entry @seq, or -ENOENT. */
int catalog_audit_get(struct catalog *c, int64_t seq, struct catalog_audit *a, struct iverr *e);
typedef int (*catalog_audit_fn)(const struct catalog_audit *a, void *arg);
int catalog_audit_list(struct catalog *c, catalog_audit_fn fn, void *arg, struct iverr *e);

/* ---- share links (schema 4, catalog_share.c) ------------------------------ */

#define CATALOG_SIGNKEY_ENC_LEN (64 + KEYS_SEAL_OVERHEAD)
#define CATALOG_PARTNER_NAME_MAX 64
#define CATALOG_CIDRS_MAX 1024

/* A link signing key: the public half in the clear, the secret sealed under
 * the server key (owner -1: the vault's) or a user's key (owner = uid: a
 * desktop store's). */
struct catalog_signkey {
	uint8_t kid[8];
	int64_t owner;
	uint8_t pk[32];
	uint8_t secret_enc[CATALOG_SIGNKEY_ENC_LEN];
	int64_t created;
	int64_t retired;             /* 0, or when it was retired */
};

struct catalog_partner {
	int64_t id;
	char name[CATALOG_PARTNER_NAME_MAX + 1];
	char cidrs[CATALOG_CIDRS_MAX];     /* comma-separated; empty: anywhere */
	int64_t ttl, max_ttl;              /* seconds */
	bool disabled;
	int64_t created;
};

/* A minted link (never the token itself: its id and what it grants). */
struct catalog_share {
	uint8_t tid[16];
	uint8_t kid[8];
	uint32_t uid;
	int64_t image_id;
	int variant, disposition;
	int64_t not_before, expires;
	int64_t partner_id;          /* 0: none */
	uint32_t uses_max, uses;     /* uses_max 0: unlimited */
	int64_t created;
	int64_t revoked;             /* 0, or when */
	uint64_t served;             /* bytes sent through a limited link */
};

int catalog_signkey_add(struct catalog *c, const struct catalog_signkey *k, struct iverr *e);
int catalog_signkey_get(struct catalog *c, const uint8_t kid[8], struct catalog_signkey *k,
			struct iverr *e);
typedef int (*catalog_signkey_fn)(const struct catalog_signkey *k, void *arg);
int catalog_signkey_list(struct catalog *c, catalog_signkey_fn fn, void *arg, struct iverr *e);
/* -ENOENT when there is no such live key. */
int catalog_signkey_retire(struct catalog *c, const uint8_t kid[8], int64_t when,
			   struct iverr *e);
int catalog_signkey_reseal(struct catalog *c, const uint8_t kid[8],
			   const uint8_t enc[CATALOG_SIGNKEY_ENC_LEN], struct iverr *e);

/* Sets p->id; -EEXIST if the name is taken. */
int catalog_partner_add(struct catalog *c, struct catalog_partner *p, struct iverr *e);
int catalog_partner_get(struct catalog *c, int64_t id, struct catalog_partner *p,
			struct iverr *e);
int catalog_partner_find(struct catalog *c, const char *name, struct catalog_partner *p,
			 struct iverr *e);
typedef int (*catalog_partner_fn)(const struct catalog_partner *p, void *arg);
int catalog_partner_list(struct catalog *c, catalog_partner_fn fn, void *arg, struct iverr *e);
int catalog_partner_update(struct catalog *c, const struct catalog_partner *p, struct iverr *e);

int catalog_share_add(struct catalog *c, const struct catalog_share *s, struct iverr *e);
int catalog_share_get(struct catalog *c, const uint8_t tid[16], struct catalog_share *s,
		      struct iverr *e);
/* Live links (unrevoked, unexpired at @now), filtered by @uid (-1: all),
 * @image_id and @partner_id (0: any). */
typedef int (*catalog_share_fn)(const struct catalog_share *s, void *arg);
int catalog_share_list(struct catalog *c, int64_t uid, int64_t image_id, int64_t partner_id,
		       int64_t now, catalog_share_fn fn, void *arg, struct iverr *e);
/* Revocations; *n is how many links they revoked. */
int catalog_share_revoke_id(struct catalog *c, const uint8_t tid[16], int64_t when,
			    size_t *n, struct iverr *e);
int catalog_share_revoke_image(struct catalog *c, int64_t image_id, int64_t when, size_t *n,
			       struct iverr *e);
/* @uid -1: every user's links with the partner. */
int catalog_share_revoke_partner(struct catalog *c, int64_t partner_id, int64_t uid,
				 int64_t when, size_t *n, struct iverr *e);
/* Adds @uses completed uses and @bytes sent to a link's counts. */
int catalog_share_use(struct catalog *c, const uint8_t tid[16], uint32_t uses, uint64_t bytes,
		      struct iverr *e);
/* Forgets links that expired before @before. */
int catalog_share_purge(struct catalog *c, int64_t before, struct iverr *e);

#endif
