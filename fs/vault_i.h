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
};

struct vault_session {
	struct vault *v;
	uint32_t uid;
	struct user_keys *keys;
	struct user_keys *prev;          /* during a rotation: the previous key */
	int64_t key_epoch;
};

struct vault_file {
	struct vault_session *s;
	struct blob_reader *r;           /* NULL for an empty placeholder */
	struct catalog_version ver;
	struct version_attrs attrs;
	struct vault_image im;
};

int64_t vault_now(void);

/* Associated data "tag || id" for a sealed catalog value. */
void vault_seal_ad(const char *tag, const uint8_t *id, size_t idlen, uint8_t *ad,
		   size_t *adlen);
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

int vault_open_version_blob(struct vault_session *s, const struct catalog_version *ver,
			    struct blob_reader **out, struct iverr *e);

#endif
