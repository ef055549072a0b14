/*
 * vault_i.h — internals shared by vault.c (stores, users, content),
 * vault_seal.c (sealing of catalog metadata) and vault_maint.c (fsck,
 * rotation).  Not an API.
 */
#ifndef IMGVAULT_VAULT_I_H
#define IMGVAULT_VAULT_I_H

#include "blob.h"
#include "image.h"
#include "vault.h"

#define ALBUM_PARENT 0   /* the name-index parent of albums */

/* The store's share-link settings (imgvault config share.*). */
struct share_settings {
	int64_t ttl, max_ttl;
	char base_url[256];
};

struct vault {
	char *path;
	int lock_fd;
	struct catalog *cat;
	struct blobstore *bs;
	struct image_sniffer *sniffer;   /* loaded on first import */
	struct image_limits limits;      /* the store's settings */
	struct share_settings share;
	uint8_t store_id[KEYS_STORE_ID_LEN];
	bool system;
	int64_t actor;                   /* the calling process's uid */
	bool store_key_set;              /* the catalog holds the store scope's key */
	bool lenient;                    /* fsck: a catalog that fails is reported, not refused */
};

struct vault_session {
	struct vault *v;
	uint32_t uid;
	struct user_keys *keys;
	struct user_keys *prev;          /* during a rotation: the previous key */
	int64_t key_epoch;
	bool auth_key_set;               /* the catalog holds this vault's key */
	bool owns_store_key;             /* … and a desktop store's, through it */
};

struct vault_file {
	struct vault_session *s;
	struct blob_reader *r;           /* NULL for an empty placeholder */
	uint64_t size;                   /* content bytes (the blob may hold padding) */
	struct catalog_version ver;
	struct version_attrs attrs;
	struct vault_image im;
};

int64_t vault_now(void);

/* Associated data "tag || id" for a sealed catalog value. */
void vault_seal_ad(const char *tag, const uint8_t *id, size_t idlen, uint8_t *ad,
		   size_t *adlen);
/* The largest padded plaintext of a sealed name, tag or comment. */
#define VAULT_TEXT_MAX 4096
#define VAULT_TEXT_PAD_MAX 8192
#define VAULT_TEXT_ENC_MAX (VAULT_TEXT_PAD_MAX + KEYS_SEAL_OVERHEAD)

/* A name, tag or comment (@tag "album", "name", "tags", "comment") bound
 * to its row's pid, padded to a length bucket (docs/FORMAT.md §4.1). */
void vault_seal_text(const struct user_keys *k, const char *tag, const uint8_t pid[16],
		     const void *val, size_t len, uint8_t *out, size_t *outlen);
/* Opens either form into @out (at most @cap bytes); -IV_EDAMAGE when it
 * fails.  *form is 1 (unpadded, schema <= 4) or 2. */
int vault_open_text_form(const struct user_keys *k, const char *tag, const uint8_t pid[16],
			 const uint8_t *enc, size_t enclen, void *out, size_t cap, size_t *len,
			 int *form);
int vault_open_text(const struct user_keys *k, const char *tag, const uint8_t pid[16],
		    const uint8_t *enc, size_t enclen, void *out, size_t cap, size_t *len);
/* Names of albums ("album") and images ("name"), bound to the row's pid. */
void vault_seal_name(const struct user_keys *k, const char *tag, const uint8_t pid[16],
		     const char *name, size_t len, uint8_t *out, size_t *outlen);
int vault_open_name(const struct user_keys *k, const char *tag, const uint8_t pid[16],
		    const uint8_t *enc, size_t enclen, char out[CATALOG_NAME_MAX + 1],
		    size_t *len);
/* A sealed attributes record (type, size, SHA-256) of a thumbnail, bound to
 * its blob and its version's row id; -IV_EDAMAGE when it does not open. */
void vault_seal_record(const struct user_keys *k, const char *tag, const struct blob_id *blob,
		       int64_t owner, const struct version_attrs *a, uint8_t *out, size_t *outlen);
int vault_open_record(const struct user_keys *k, const char *tag, const struct blob_id *blob,
		      int64_t owner, const uint8_t *enc, size_t enclen, struct version_attrs *a);
/* A version's attributes, bound to its blob and to its image's public id
 * @pid (v->blob must be set). */
void vault_seal_attrs(const struct user_keys *k, const struct blob_id *blob,
		      const uint8_t pid[CATALOG_PID_LEN], const struct version_attrs *a,
		      struct catalog_version *v);
int vault_open_attrs(const struct user_keys *k, const struct catalog_version *v,
		     const uint8_t pid[CATALOG_PID_LEN], struct version_attrs *a);

struct key_slot_binding vault_binding(const struct vault *v, uint32_t uid);
int vault_seal_slot(struct vault *v, uint32_t uid, const struct user_keys *k,
		    enum key_slot_kind kind, const void *secret, size_t len,
		    const struct keys_kdf_cost *cost, struct iverr *e);

int vault_image_describe(struct vault_session *s, const struct catalog_image *ci,
			 struct vault_image *out, struct iverr *e);
/* Reseals @s's signing keys (desktop store) under a rotated user key. */
int vault_share_reseal(struct vault_session *s, const struct user_keys *old,
		       const struct user_keys *nk, struct iverr *e);

/* ---- padding of blobs (vault_seal.c) ---- */

/* The stored size of @n bytes of content: Padmé (Nikitin et al., PETS 2019),
 * at most 12 % more, so that a blob's size no longer tells its exact size. */
uint64_t vault_padded_size(uint64_t n);
/* Writes @data then zeros up to vault_padded_size(@len); *stored is that. */
int vault_write_padded(struct blob_writer *w, const void *data, size_t len, uint64_t *stored,
		       struct iverr *e);
/* A version's or thumbnail's content size: its record's (form 2), else the
 * blob's (written unpadded); -IV_EDAMAGE when the record claims more than
 * the blob holds. */
int vault_content_size(uint64_t stored, const struct version_attrs *a, uint64_t *size);

/* ---- the authenticated catalog (vault_auth.c) ---- */

/* Gives the catalog the store scope's key from the server key (a system
 * store), sealing the store's own rows the first time. */
int vault_auth_server_key(struct vault *v, const struct server_key *sk, struct iverr *e);
/* At unlock: gives the catalog the vault's key (and a desktop store's own),
 * seals a vault from before schema 5, and checks every row of it against
 * its seal: -IV_EDAMAGE when rows were removed, added or rolled back
 * (unless v->lenient); single rows that fail are audited and refused when
 * read. */
int vault_auth_session_open(struct vault_session *s, struct iverr *e);
void vault_auth_session_close(struct vault_session *s);
/* Checks @scope's rows and seal, audits what fails; -IV_EDAMAGE as above. */
int vault_auth_check(struct vault *v, int64_t scope, struct catalog_auth_report *r,
		     bool lenient, struct iverr *e);
/* A new user: its vault starts sealed under @k (and a desktop store's
 * first user seals the store's rows); _done drops the keys again. */
int vault_auth_user_new(struct vault *v, uint32_t uid, const struct user_keys *k,
			bool *store_key_taken, struct iverr *e);
void vault_auth_user_new_done(struct vault *v, uint32_t uid, bool store_key_taken);
/* A rotation, inside its transaction: the vault's rows (and a desktop
 * store's) sealed anew under @nk; _undo goes back to the session's key. */
int vault_auth_rekey(struct vault_session *s, const struct user_keys *nk, struct iverr *e);
void vault_auth_rekey_undo(struct vault_session *s);
/* Reseals every name, tag, comment and record of @s's vault under @nk (the
 * same keys: in the current, padded forms) — vault_maint.c. */
int vault_reseal_metadata(struct vault_session *s, const struct user_keys *nk,
			  struct iverr *e);

int vault_open_version_blob(struct vault_session *s, const struct catalog_version *ver,
			    struct blob_reader **out, struct iverr *e);

#endif
