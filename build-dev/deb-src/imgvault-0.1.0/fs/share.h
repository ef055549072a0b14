/*
 * share — share links (DESIGN §8): signing keys, partners, minted links,
 * revocation, and the decision on a fetch.
 *
 * Links are signed with an Ed25519 key with a key id (token.h).  The
 * secret half is sealed in the catalog: under a key derived from the
 * server key in a system store (one vault-wide signer), or under the
 * owner's user key in a desktop store (each user signs their own links).
 * Only the daemon unseals it (struct share_keys); the gateway is given the
 * public halves (share_keys_publish).
 *
 * Every minted link is recorded by its token id (never the token), so it
 * can be listed, revoked and its uses counted; a fetch is decided by
 * share_authorize from the signature, the times, the record, the key, the
 * partner's networks and the use count.
 *
 * Functions return 0 or -errno with a message in @e; the vault's thread
 * rules apply (vault.h).
 */
#ifndef IMGVAULT_SHARE_H
#define IMGVAULT_SHARE_H

#include <stdbool.h>
#include <stdint.h>

#include "catalog.h"
#include "cidr.h"
#include "keys.h"
#include "token.h"
#include "vault.h"

#define SHARE_DEFAULT_TTL      3600            /* a user's link: 1 hour */
#define SHARE_DEFAULT_MAX_TTL  (7 * 86400)     /* the vault-wide maximum */
#define SHARE_PARTNER_TTL      (48 * 3600)     /* a partner's default */
#define SHARE_DEFAULT_BASE_URL "http://127.0.0.1:8080"
#define SHARE_MAX_CIDRS        16
#define SHARE_URL_MAX          256

/* "90s", "30m", "1h", "48h", "7d", "2w" or plain seconds; -EINVAL. */
int share_parse_duration(const char *s, int64_t *out);
/* "1h", "2d 3h", … for people. */
void share_format_duration(int64_t secs, char *out, size_t cap);

/* ---- signing keys ------------------------------------------------------- */

struct share_keys;

/*
 * Unseals the signing key new links are signed with: the vault's (system
 * store: @sk, @s NULL) or @s's user's (desktop store: @s, @sk NULL).  One
 * is made when there is none yet.  The caller owns *out (share_keys_free).
 */
int share_keys_open(struct vault *v, const struct server_key *sk, struct vault_session *s,
		    struct share_keys **out, struct iverr *e);
/* Wipes and frees; NULL is a no-op. */
void share_keys_free(struct share_keys *k);
/* A desktop store's keys follow their owner's vault: forgotten (wiped) when
 * @uid's vault is locked, taken back with its session at unlock.  No-ops
 * for the vault-wide keys of a system store, or another uid. */
void share_keys_forget(struct share_keys *k, uint32_t uid);
int share_keys_restore(struct share_keys *k, struct vault_session *s, struct iverr *e);
/* Makes a new key the one new links are signed with; links signed with the
 * old one keep working until it is retired.  @kid gets its id in hex. */
int share_keys_rotate(struct share_keys *k, char kid[2 * TOKEN_KID_LEN + 1], struct iverr *e);
/* Retires a key: links signed with it are revoked.  Retiring the key in
 * use rotates first.  -ENOENT: no such live key in @k's scope. */
int share_keys_retire(struct share_keys *k, const uint8_t kid[TOKEN_KID_LEN], struct iverr *e);
/* The id of the key new links are signed with. */
void share_keys_current(const struct share_keys *k, uint8_t kid[TOKEN_KID_LEN]);
/* Whether @owner (-1: the vault) is @k's scope. */
int64_t share_keys_owner(const struct share_keys *k);
/* Writes the public keyring (every key of the store) to @path, atomically,
 * mode 0644. */
int share_keys_publish(struct vault *v, const char *path, struct iverr *e);
/* The keyring's text; the caller frees it. */
int share_keys_export(struct vault *v, char **out, struct iverr *e);

/* ---- partners ------------------------------------------------------------ */

/* Adds a partner: @cidrs a comma-separated allow-list (NULL or "" for
 * anywhere), @ttl and @max_ttl in seconds (0: the defaults). */
int share_partner_add(struct vault *v, const char *name, const char *cidrs, int64_t ttl,
		      int64_t max_ttl, struct iverr *e);
/* Disables a partner: every link made for it stops working. */
int share_partner_disable(struct vault *v, const char *name, struct iverr *e);
int share_partner_find(struct vault *v, const char *name, struct catalog_partner *p,
		       struct iverr *e);

/* ---- links --------------------------------------------------------------- */

struct share_request {
	int64_t image_id;
	enum vault_variant variant;
	bool attachment;           /* Content-Disposition: attachment */
	int64_t ttl;               /* seconds; 0: the default */
	int64_t not_before;        /* Unix seconds; 0: now */
	uint32_t uses;             /* 0: unlimited */
	const char *partner;       /* NULL: a user's link */
};

struct share_minted {
	char token[TOKEN_STR_LEN + 1];
	uint8_t tid[TOKEN_ID_LEN];
	int64_t not_before, expires;
};

/* Mints a link to one of @s's images, signed with @k, and records it. */
int share_mint(struct vault_session *s, struct share_keys *k, const struct share_request *r,
	       struct share_minted *out, struct iverr *e);

/* Revokes by token id: @uid -1 for any owner (root), else only @uid's.
 * -ENOENT when there is no such live link. */
int share_revoke_id(struct vault *v, int64_t uid, const uint8_t tid[TOKEN_ID_LEN],
		    struct iverr *e);
/* Revokes every link (every variant) to one of @s's images. */
int share_revoke_image(struct vault_session *s, int64_t image_id, size_t *n, struct iverr *e);
/* Revokes @uid's links for a partner (@uid -1: everyone's). */
int share_revoke_partner(struct vault *v, int64_t uid, const char *partner, size_t *n,
			 struct iverr *e);

/* ---- fetching -------------------------------------------------------------- */

/* What a valid link grants. */
struct share_grant {
	struct token t;
	struct catalog_share link;
	char partner[CATALOG_PARTNER_NAME_MAX + 1];   /* "" if none */
	/* Names exactly the bytes and the file name the link serves now (the
	 * version, the thumbnail's blob, the sealed name): equal tags, equal
	 * responses.  All zero when that cannot be said (a thumbnail not made
	 * yet). */
	uint8_t content_tag[16];
};

/*
 * Decides a fetch of @token from @client at @now:
 *   -ENOENT       malformed, not signed by a key of this store (HTTP 404)
 *   -EKEYEXPIRED  past its expiry (410)
 *   -EKEYREVOKED  revoked, its key retired, its image gone, its partner
 *                 disabled, or its uses used up (410)
 *   -EPERM        not valid yet (403)
 *   -EACCES       a partner link from outside the partner's networks (403)
 * with the reason in @e; *g is filled whenever the signature was good (so
 * a refusal can be audited with the token id).  With @signature_checked
 * the caller has verified the token against its key's public half
 * (share_public_key): the key must still exist, nothing else is redone.
 */
int share_authorize(struct vault *v, const char *token, size_t len, const struct cidr *client,
		    int64_t now, bool signature_checked, struct share_grant *g, struct iverr *e);
/* The content tag of @g for @variant (the preview page's thumbnail is not
 * the link's own variant); 0, or -ENOENT when there is none yet. */
int share_content_tag(struct vault *v, const struct share_grant *g, uint8_t variant,
		      uint8_t tag[16]);
/* The public key of @kid, for a caller that checks signatures outside the
 * vault's lock (then share_authorize with @signature_checked); -ENOENT. */
int share_public_key(struct vault *v, const uint8_t kid[TOKEN_KID_LEN],
		     uint8_t pk[TOKEN_PK_LEN], struct iverr *e);
/* Records a transfer through a limited link: @bytes sent, and one use when
 * @completed (a transfer that reached the last byte and finished). */
int share_count_use(struct vault *v, const uint8_t tid[TOKEN_ID_LEN], bool completed,
		    uint64_t bytes, struct iverr *e);
/* How many bytes a limited link may send in all, for a variant of @size
 * bytes: twice its uses, so that a broken download can be retried but the
 * file cannot be fetched piecemeal without end. */
uint64_t share_byte_budget(const struct catalog_share *l, uint64_t size);

/*
 * The whole of @f with location and device metadata removed, as links serve
 * an original: lossless for JPEG, PNG and WebP (strip.h), re-encoded for
 * the others (HEIC and AVIF become JPEG).  *out is malloc'd (the caller
 * frees it); @mime gets the result's type.
 */
int share_read_stripped(struct vault_file *f, uint8_t **out, size_t *len,
			char mime[VAULT_MIME_MAX], struct iverr *e);

/* One fetch for the audit trail. */
struct share_fetch_note {
	uint8_t tid[TOKEN_ID_LEN];
	bool has_tid;
	int64_t uid;               /* the link's owner, -1 if unknown */
	int64_t partner_id;
	char client[CIDR_STR_MAX];
	int status;                /* the HTTP status served */
	uint64_t bytes;
	uint8_t variant;
};
/* Appends @n fetches to the audit trail in one transaction. */
int share_audit_fetches(struct vault *v, const struct share_fetch_note *notes, size_t n,
			struct iverr *e);

/* The store's share settings (imgvault config share.ttl, share.max-ttl,
 * share.base-url). */
int64_t share_default_ttl(const struct vault *v);
int64_t share_max_ttl(const struct vault *v);
const char *share_base_url(const struct vault *v);

#endif
