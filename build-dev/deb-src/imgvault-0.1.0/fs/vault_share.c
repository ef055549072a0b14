/* Share links: signing keys, partners, links, the fetch decision (share.h). */
#include "share.h"

#include <ctype.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <sodium.h>

#include "audit.h"
#include "image.h"
#include "strip.h"
#include "bytes.h"
#include "vault_i.h"

#define VAULT_SCOPE (-1)              /* owner of a system store's keys */
#define SIGN_CONTEXT "imgvsign"        /* crypto_kdf context, 8 bytes */

/* ---- durations ---- */

int share_parse_duration(const char *s, int64_t *out)
{
	char *end;
	unsigned long long n;
	int64_t unit = 1;

	if (!isdigit((unsigned char)s[0]))
		return -EINVAL;
	errno = 0;
	n = strtoull(s, &end, 10);
	if (errno)
		return -EINVAL;
	switch (*end) {
	case '\0': case 's': unit = 1; break;
	case 'm': unit = 60; break;
	case 'h': unit = 3600; break;
	case 'd': unit = 86400; break;
	case 'w': unit = 7 * 86400; break;
	default: return -EINVAL;
	}
	if (*end && end[1])
		return -EINVAL;
	if (n > (unsigned long long)(INT64_MAX / 2) / (unsigned long long)unit)
		return -EINVAL;
	*out = (int64_t)n * unit;
	return 0;
}

void share_format_duration(int64_t secs, char *out, size_t cap)
{
	if (secs % 86400 == 0 && secs)
		snprintf(out, cap, "%" PRId64 "d", secs / 86400);
	else if (secs % 3600 == 0 && secs)
		snprintf(out, cap, "%" PRId64 "h", secs / 3600);
	else if (secs % 60 == 0 && secs)
		snprintf(out, cap, "%" PRId64 "m", secs / 60);
	else
		snprintf(out, cap, "%" PRId64 "s", secs);
}

int64_t share_default_ttl(const struct vault *v)
{
	return v->share.ttl;
}

int64_t share_max_ttl(const struct vault *v)
{
	return v->share.max_ttl;
}

const char *share_base_url(const struct vault *v)
{
	return v->share.base_url;
}

/* ---- signing keys ---- */

struct share_keys {
	struct vault *v;
	int64_t owner;                       /* VAULT_SCOPE or a uid */
	uint8_t wrap[KEYS_KEY_LEN];          /* seals secret halves */
	bool have_current;
	bool forgotten;                      /* its owner's vault is locked */
	uint8_t kid[TOKEN_KID_LEN];
	uint8_t sk[TOKEN_SK_LEN];            /* the current secret half */
};

#define LOCKED_KEYS "the vault is locked, and its link signing key with it; run imgvault unlock"

/* The sealed secret is bound to its key id, its owner and the store. */
static void signkey_ad(const struct vault *v, const uint8_t kid[TOKEN_KID_LEN], int64_t owner,
		       uint8_t *ad, size_t *len)
{
	memcpy(ad, "signkey", 7);
	memcpy(ad + 7, kid, TOKEN_KID_LEN);
	put_le64(ad + 7 + TOKEN_KID_LEN, (uint64_t)owner);
	memcpy(ad + 15 + TOKEN_KID_LEN, v->store_id, KEYS_STORE_ID_LEN);
	*len = 15 + TOKEN_KID_LEN + KEYS_STORE_ID_LEN;
}

static void signkey_seal(const struct vault *v, const uint8_t wrap[KEYS_KEY_LEN],
			 const uint8_t sk[TOKEN_SK_LEN], struct catalog_signkey *k)
{
	uint8_t ad[64];
	size_t adlen;

	signkey_ad(v, k->kid, k->owner, ad, &adlen);
	keys_seal(wrap, ad, adlen, sk, TOKEN_SK_LEN, k->secret_enc);
}

static int signkey_open(const struct vault *v, const uint8_t wrap[KEYS_KEY_LEN],
			const struct catalog_signkey *k, uint8_t sk[TOKEN_SK_LEN])
{
	uint8_t ad[64];
	size_t adlen;

	uint8_t pk[crypto_sign_PUBLICKEYBYTES];

	signkey_ad(v, k->kid, k->owner, ad, &adlen);
	if (keys_open(wrap, ad, adlen, k->secret_enc, sizeof(k->secret_enc), sk) < 0)
		return -1;
	/* The public half published to the gateway must be this secret's. */
	crypto_sign_ed25519_sk_to_pk(pk, sk);
	if (sodium_memcmp(pk, k->pk, sizeof(pk)) != 0) {
		sodium_memzero(sk, TOKEN_SK_LEN);
		return -1;
	}
	return 0;
}

/* A new key in @k's scope, made current. */
static int signkey_create(struct share_keys *k, struct iverr *e)
{
	struct catalog_signkey row = { .owner = k->owner, .created = vault_now() };
	char hex[2 * TOKEN_KID_LEN + 1];
	int ret;

	randombytes_buf(row.kid, sizeof(row.kid));
	crypto_sign_keypair(row.pk, k->sk);
	signkey_seal(k->v, k->wrap, k->sk, &row);
	if ((ret = catalog_signkey_add(k->v->cat, &row, e)) < 0)
		return ret;
	memcpy(k->kid, row.kid, sizeof(k->kid));
	k->have_current = true;
	token_hex(row.kid, sizeof(row.kid), hex);
	audit_append(k->v->cat, k->v->actor, k->owner, "keys.create", hex, "ok", NULL, "%s", "");
	return 0;
}

struct newest { int64_t owner; struct catalog_signkey k; bool found; };

static int newest_fn(const struct catalog_signkey *k, void *arg)
{
	struct newest *n = arg;

	if (k->owner == n->owner && !k->retired) {   /* listed oldest first */
		n->k = *k;
		n->found = true;
	}
	return 0;
}

/* Loads the newest live key of the scope, or makes one. */
static int keys_load_current(struct share_keys *k, struct iverr *e)
{
	struct newest n = { .owner = k->owner };
	int ret = catalog_signkey_list(k->v->cat, newest_fn, &n, e);

	if (ret < 0)
		return ret;
	if (!n.found)
		return signkey_create(k, e);
	if (signkey_open(k->v, k->wrap, &n.k, k->sk) < 0)
		return iverr_set(e, IV_EDAMAGE, "the link signing key does not open: the "
				 "catalog is damaged or the wrong server key was given");
	memcpy(k->kid, n.k.kid, sizeof(k->kid));
	k->have_current = true;
	return 0;
}

int share_keys_open(struct vault *v, const struct server_key *sk, struct vault_session *s,
		    struct share_keys **out, struct iverr *e)
{
	struct share_keys *k;
	int ret;

	*out = NULL;
	if (v->system ? !sk : !s)
		return iverr_set(e, EINVAL, v->system ? "share links of a system store need its "
				 "server key" : "share links of a desktop store need its "
				 "owner's unlocked vault");
	k = sodium_malloc(sizeof(*k));
	if (!k)
		return iverr_set(e, ENOMEM, "out of memory");
	memset(k, 0, sizeof(*k));
	k->v = v;
	k->owner = v->system ? VAULT_SCOPE : (int64_t)s->uid;
	crypto_kdf_derive_from_key(k->wrap, sizeof(k->wrap), 1, SIGN_CONTEXT,
				   v->system ? sk->k : s->keys->meta);
	if ((ret = keys_load_current(k, e)) < 0) {
		share_keys_free(k);
		return ret;
	}
	*out = k;
	return 0;
}

void share_keys_free(struct share_keys *k)
{
	if (k)
		sodium_free(k);   /* wipes */
}

void share_keys_forget(struct share_keys *k, uint32_t uid)
{
	if (!k || k->owner == VAULT_SCOPE || k->owner != (int64_t)uid)
		return;
	sodium_memzero(k->wrap, sizeof(k->wrap));
	sodium_memzero(k->sk, sizeof(k->sk));
	k->have_current = false;
	k->forgotten = true;
}

int share_keys_restore(struct share_keys *k, struct vault_session *s, struct iverr *e)
{
	if (!k || !k->forgotten || k->owner != (int64_t)s->uid)
		return 0;
	crypto_kdf_derive_from_key(k->wrap, sizeof(k->wrap), 1, SIGN_CONTEXT, s->keys->meta);
	k->forgotten = false;
	return keys_load_current(k, e);
}

void share_keys_current(const struct share_keys *k, uint8_t kid[TOKEN_KID_LEN])
{
	memcpy(kid, k->kid, TOKEN_KID_LEN);
}

int64_t share_keys_owner(const struct share_keys *k)
{
	return k->owner;
}

int share_keys_rotate(struct share_keys *k, char kid[2 * TOKEN_KID_LEN + 1], struct iverr *e)
{
	uint8_t old_kid[TOKEN_KID_LEN], old_sk[TOKEN_SK_LEN];
	int ret;

	if (k->forgotten)
		return iverr_set(e, ENOKEY, LOCKED_KEYS);
	memcpy(old_kid, k->kid, sizeof(old_kid));
	memcpy(old_sk, k->sk, sizeof(old_sk));
	if ((ret = signkey_create(k, e)) < 0) {
		memcpy(k->kid, old_kid, sizeof(old_kid));   /* keep signing with the old one */
		memcpy(k->sk, old_sk, sizeof(old_sk));
	}
	sodium_memzero(old_sk, sizeof(old_sk));
	if (ret == 0 && kid)
		token_hex(k->kid, TOKEN_KID_LEN, kid);
	return ret;
}

int share_keys_retire(struct share_keys *k, const uint8_t kid[TOKEN_KID_LEN], struct iverr *e)
{
	struct catalog_signkey row;
	char hex[2 * TOKEN_KID_LEN + 1];
	int ret;

	if (k->forgotten)
		return iverr_set(e, ENOKEY, LOCKED_KEYS);
	token_hex(kid, TOKEN_KID_LEN, hex);
	ret = catalog_signkey_get(k->v->cat, kid, &row, e);
	if (ret == -ENOENT || (ret == 0 && (row.owner != k->owner || row.retired)))
		return iverr_set(e, ENOENT, "no live signing key %s: imgvault keys lists them",
				 hex);
	if (ret < 0)
		return ret;
	if ((ret = catalog_begin(k->v->cat, e)) < 0)
		return ret;
	if (memcmp(kid, k->kid, TOKEN_KID_LEN) == 0 && (ret = share_keys_rotate(k, NULL, e)) < 0)
		goto fail;
	if ((ret = catalog_signkey_retire(k->v->cat, kid, vault_now(), e)) < 0 ||
	    (ret = audit_append(k->v->cat, k->v->actor, k->owner, "keys.retire", hex, "ok",
				e, "%s", "")) < 0)
		goto fail;
	return catalog_commit(k->v->cat, e);
fail:
	catalog_rollback(k->v->cat);
	return ret;
}

struct collect { struct token_key *keys; size_t n; int err; };

static int collect_fn(const struct catalog_signkey *k, void *arg)
{
	struct collect *c = arg;
	struct token_key *p = realloc(c->keys, (c->n + 1) * sizeof(*p));

	if (!p)
		return c->err = -ENOMEM;
	c->keys = p;
	memcpy(p[c->n].kid, k->kid, TOKEN_KID_LEN);
	memcpy(p[c->n].pk, k->pk, TOKEN_PK_LEN);
	p[c->n].retired = k->retired != 0;
	c->n++;
	return 0;
}

int share_keys_export(struct vault *v, char **out, struct iverr *e)
{
	struct collect c = { 0 };
	int ret = catalog_signkey_list(v->cat, collect_fn, &c, e);

	*out = NULL;
	if (ret == 0 && c.err)
		ret = iverr_set(e, ENOMEM, "out of memory");
	if (ret == 0 && !(*out = token_keyring_format(c.keys, c.n)))
		ret = iverr_set(e, ENOMEM, "out of memory");
	free(c.keys);
	return ret;
}

int share_keys_publish(struct vault *v, const char *path, struct iverr *e)
{
	char tmp[4096];
	char *text = NULL;
	int fd = -1, ret;
	size_t len;

	if ((ret = share_keys_export(v, &text, e)) < 0)
		return ret;
	len = strlen(text);
	if ((size_t)snprintf(tmp, sizeof(tmp), "%s.tmp", path) >= sizeof(tmp)) {
		ret = iverr_set(e, ENAMETOOLONG, "keyring path %s is too long", path);
		goto out;
	}
	fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, 0644);
	if (fd < 0 || fchmod(fd, 0644) < 0 || write(fd, text, len) != (ssize_t)len ||
	    fsync(fd) < 0) {
		ret = iverr_set(e, errno, "cannot write the public keyring %s: %s", tmp,
				strerror(errno));
		goto out;
	}
	if (rename(tmp, path) < 0) {
		ret = iverr_set(e, errno, "cannot write the public keyring %s: %s", path,
				strerror(errno));
		goto out;
	}
	fd = (close(fd), -1);
out:
	if (fd >= 0) {
		close(fd);
		unlink(tmp);
	}
	free(text);
	return ret;
}

struct reseal { struct vault_session *s; const struct user_keys *old, *nk; struct iverr *e; int ret; };

static int reseal_fn(const struct catalog_signkey *k, void *arg)
{
	struct reseal *r = arg;
	uint8_t old_wrap[KEYS_KEY_LEN], new_wrap[KEYS_KEY_LEN], sk[TOKEN_SK_LEN];
	struct catalog_signkey row = *k;

	if (k->owner != (int64_t)r->s->uid)
		return 0;
	crypto_kdf_derive_from_key(old_wrap, sizeof(old_wrap), 1, SIGN_CONTEXT, r->old->meta);
	crypto_kdf_derive_from_key(new_wrap, sizeof(new_wrap), 1, SIGN_CONTEXT, r->nk->meta);
	if (signkey_open(r->s->v, old_wrap, k, sk) < 0) {
		r->ret = iverr_set(r->e, IV_EDAMAGE, "a link signing key of uid %u does not "
				   "open: the catalog is damaged", r->s->uid);
	} else {
		signkey_seal(r->s->v, new_wrap, sk, &row);
		r->ret = catalog_signkey_reseal(r->s->v->cat, k->kid, row.secret_enc, r->e);
	}
	sodium_memzero(sk, sizeof(sk));
	sodium_memzero(old_wrap, sizeof(old_wrap));
	sodium_memzero(new_wrap, sizeof(new_wrap));
	return r->ret;
}

int vault_share_reseal(struct vault_session *s, const struct user_keys *old,
		       const struct user_keys *nk, struct iverr *e)
{
	struct reseal r = { s, old, nk, e, 0 };
	int ret = catalog_signkey_list(s->v->cat, reseal_fn, &r, e);

	return ret < 0 ? ret : r.ret;
}

/* ---- partners ---- */

static int check_partner_name(const char *name, struct iverr *e)
{
	size_t len = strlen(name);

	if (len == 0 || len > CATALOG_PARTNER_NAME_MAX)
		return iverr_set(e, EINVAL, "a partner's name is 1 to %d characters",
				 CATALOG_PARTNER_NAME_MAX);
	for (size_t i = 0; i < len; i++)
		if (!isalnum((unsigned char)name[i]) && !strchr("-_.", name[i]))
			return iverr_set(e, EINVAL, "a partner's name holds letters, digits, "
					 "'-', '_' and '.' only, not '%c'", name[i]);
	return 0;
}

/* Checks and normalises a CIDR list into @out ("a/n,b/m"). */
static int normalise_cidrs(const char *list, char out[CATALOG_CIDRS_MAX], struct iverr *e)
{
	struct cidr nets[SHARE_MAX_CIDRS];
	size_t n, bad, used = 0;
	int ret = cidr_parse_list(list ? list : "", nets, SHARE_MAX_CIDRS, &n, &bad);

	if (ret == -E2BIG)
		return iverr_set(e, EINVAL, "a partner has at most %d networks",
				 SHARE_MAX_CIDRS);
	if (ret < 0)
		return iverr_set(e, EINVAL, "network %zu of '%s' is not an address or a "
				 "CIDR network such as 192.0.2.0/24 or 2001:db8::/32 (host "
				 "bits must be zero)", bad + 1, list);
	out[0] = '\0';
	for (size_t i = 0; i < n; i++) {
		char s[CIDR_STR_MAX];
		cidr_format(&nets[i], true, s);
		used += (size_t)snprintf(out + used, CATALOG_CIDRS_MAX - used, "%s%s",
					 i ? "," : "", s);
	}
	return 0;
}

int share_partner_add(struct vault *v, const char *name, const char *cidrs, int64_t ttl,
		      int64_t max_ttl, struct iverr *e)
{
	struct catalog_partner p = { .created = vault_now() };
	char ttl_s[32], max_s[32];
	int ret;

	if ((ret = check_partner_name(name, e)) < 0 ||
	    (ret = normalise_cidrs(cidrs, p.cidrs, e)) < 0)
		return ret;
	snprintf(p.name, sizeof(p.name), "%s", name);
	p.max_ttl = max_ttl ? max_ttl : v->share.max_ttl;
	p.ttl = ttl ? ttl : (SHARE_PARTNER_TTL < p.max_ttl ? SHARE_PARTNER_TTL : p.max_ttl);
	share_format_duration(p.ttl, ttl_s, sizeof(ttl_s));
	share_format_duration(p.max_ttl, max_s, sizeof(max_s));
	if (p.ttl > p.max_ttl)
		return iverr_set(e, EINVAL, "the partner's default lifetime (%s) is longer than "
				 "its maximum (%s)", ttl_s, max_s);
	if (p.max_ttl > v->share.max_ttl) {
		char vmax[32];
		share_format_duration(v->share.max_ttl, vmax, sizeof(vmax));
		return iverr_set(e, EINVAL, "the partner's maximum lifetime (%s) is over the "
				 "vault's maximum (%s, imgvault config share.max-ttl)", max_s, vmax);
	}
	if ((ret = catalog_begin(v->cat, e)) < 0)
		return ret;
	ret = catalog_partner_add(v->cat, &p, e);
	if (ret == -EEXIST)
		ret = iverr_set(e, EEXIST, "there is already a partner named %s", name);
	if (ret == 0)
		ret = audit_append(v->cat, v->actor, -1, "partner.add", "", "ok", e,
				   "partner=%" PRId64, p.id);
	if (ret < 0) {
		catalog_rollback(v->cat);
		return ret;
	}
	return catalog_commit(v->cat, e);
}

int share_partner_find(struct vault *v, const char *name, struct catalog_partner *p,
		       struct iverr *e)
{
	int ret = catalog_partner_find(v->cat, name, p, e);

	if (ret == -ENOENT)
		return iverr_set(e, ENOENT, "no partner named '%s': imgvault partner list shows "
				 "them", name);
	return ret;
}

int share_partner_disable(struct vault *v, const char *name, struct iverr *e)
{
	struct catalog_partner p;
	int ret = share_partner_find(v, name, &p, e);

	if (ret < 0)
		return ret;
	p.disabled = true;
	if ((ret = catalog_partner_update(v->cat, &p, e)) < 0)
		return ret;
	audit_append(v->cat, v->actor, -1, "partner.disable", "", "ok", NULL,
		     "partner=%" PRId64, p.id);
	return 0;
}

/* ---- links ---- */

static int lifetime(struct vault *v, const struct share_request *r,
		    const struct catalog_partner *p, int64_t *ttl, struct iverr *e)
{
	int64_t max = v->share.max_ttl;
	char want[32], most[32];

	if (p && p->max_ttl < max)
		max = p->max_ttl;
	*ttl = r->ttl ? r->ttl : p ? p->ttl : v->share.ttl;
	if (*ttl > max) {
		share_format_duration(*ttl, want, sizeof(want));
		share_format_duration(max, most, sizeof(most));
		return iverr_set(e, EINVAL, "a link for %s is over the maximum of %s (%s); ask "
				 "for --ttl %s or less", want, most, p ? "the partner's and the "
				 "vault's" : "imgvault config share.max-ttl", most);
	}
	if (*ttl <= 0)
		return iverr_set(e, EINVAL, "a link's lifetime must be positive");
	return 0;
}

int share_mint(struct vault_session *s, struct share_keys *k, const struct share_request *r,
	       struct share_minted *out, struct iverr *e)
{
	struct vault *v = s->v;
	struct catalog_partner partner, *p = NULL;
	struct catalog_share row = { .uid = s->uid, .created = vault_now() };
	struct vault_image im;
	struct token t = { 0 };
	char tid[2 * TOKEN_ID_LEN + 1];
	int64_t ttl;
	int ret;

	if (k->owner != VAULT_SCOPE && k->owner != (int64_t)s->uid)
		return iverr_set(e, EPERM, "links of a desktop store are signed by the user "
				 "who mounted it");
	if (k->forgotten)
		return iverr_set(e, ENOKEY, LOCKED_KEYS);
	if ((ret = vault_image_get(s, r->image_id, &im, e)) < 0)
		return ret;
	if (!im.current_version)
		return iverr_set(e, EINVAL, "%s has no content yet (an empty file being "
				 "written?): share it once it is saved", im.name);
	if (r->partner) {
		if ((ret = share_partner_find(v, r->partner, &partner, e)) < 0)
			return ret;
		if (partner.disabled)
			return iverr_set(e, EPERM, "partner %s is disabled: its links would not "
					 "work", r->partner);
		p = &partner;
	}
	if ((ret = lifetime(v, r, p, &ttl, e)) < 0)
		return ret;
	if (!k->have_current && (ret = signkey_create(k, e)) < 0)
		return ret;
	memcpy(t.kid, k->kid, sizeof(t.kid));
	randombytes_buf(t.id, sizeof(t.id));
	memcpy(t.image, im.pid, sizeof(t.image));
	t.variant = (uint8_t)r->variant;
	t.disposition = r->attachment ? TOKEN_ATTACHMENT : TOKEN_INLINE;
	t.not_before = r->not_before ? r->not_before : row.created;
	t.expires = t.not_before + ttl;
	t.partner = p ? (uint64_t)p->id : 0;
	t.uses = r->uses;
	memcpy(row.tid, t.id, sizeof(row.tid));
	memcpy(row.kid, t.kid, sizeof(row.kid));
	row.image_id = im.id;
	row.variant = t.variant;
	row.disposition = t.disposition;
	row.not_before = t.not_before;
	row.expires = t.expires;
	row.partner_id = p ? p->id : 0;
	row.uses_max = t.uses;
	token_hex(t.id, sizeof(t.id), tid);
	if ((ret = catalog_begin(v->cat, e)) < 0)
		return ret;
	if ((ret = catalog_share_add(v->cat, &row, e)) < 0 ||
	    (ret = audit_append(v->cat, v->actor, s->uid, "share.mint", tid, "ok", e,
				"image=%" PRId64 " variant=%d partner=%" PRId64 " ttl=%" PRId64
				" uses=%u", im.id, t.variant, row.partner_id, ttl, t.uses)) < 0) {
		catalog_rollback(v->cat);
		return ret;
	}
	if ((ret = catalog_commit(v->cat, e)) < 0)
		return ret;
	token_encode(&t, k->sk, out->token);
	memcpy(out->tid, t.id, sizeof(out->tid));
	out->not_before = t.not_before;
	out->expires = t.expires;
	return 0;
}

static int revoked_audit(struct vault *v, int64_t uid, const char *what, const char *object,
			 size_t n)
{
	return audit_append(v->cat, v->actor, uid, "share.revoke", object, "ok", NULL,
			    "by=%s links=%zu", what, n);
}

int share_revoke_id(struct vault *v, int64_t uid, const uint8_t tid[TOKEN_ID_LEN],
		    struct iverr *e)
{
	struct catalog_share row;
	char hex[2 * TOKEN_ID_LEN + 1];
	size_t n = 0;
	int ret;

	token_hex(tid, TOKEN_ID_LEN, hex);
	ret = catalog_share_get(v->cat, tid, &row, e);
	if (ret == -ENOENT || (ret == 0 && ((uid >= 0 && row.uid != (uint32_t)uid) || row.revoked)))
		return iverr_set(e, ENOENT, "no live link %s of yours: imgvault shares lists them",
				 hex);
	if (ret < 0 || (ret = catalog_share_revoke_id(v->cat, tid, vault_now(), &n, e)) < 0)
		return ret;
	revoked_audit(v, row.uid, "id", hex, n);
	return 0;
}

int share_revoke_image(struct vault_session *s, int64_t image_id, size_t *n, struct iverr *e)
{
	struct vault_image im;
	char obj[32];
	int ret;

	if ((ret = vault_image_get(s, image_id, &im, e)) < 0 ||
	    (ret = catalog_share_revoke_image(s->v->cat, image_id, vault_now(), n, e)) < 0)
		return ret;
	snprintf(obj, sizeof(obj), "image %" PRId64, image_id);
	revoked_audit(s->v, s->uid, "image", obj, *n);
	return 0;
}

int share_revoke_partner(struct vault *v, int64_t uid, const char *partner, size_t *n,
			 struct iverr *e)
{
	struct catalog_partner p;
	char obj[48];
	int ret;

	if ((ret = share_partner_find(v, partner, &p, e)) < 0 ||
	    (ret = catalog_share_revoke_partner(v->cat, p.id, uid, vault_now(), n, e)) < 0)
		return ret;
	snprintf(obj, sizeof(obj), "partner %" PRId64, p.id);
	revoked_audit(v, uid, "partner", obj, *n);
	return 0;
}

/* ---- fetching ---- */

static bool client_allowed(const char *cidrs, const struct cidr *client)
{
	struct cidr nets[SHARE_MAX_CIDRS];
	size_t n, bad;

	if (!cidrs[0])
		return true;
	if (!client || cidr_parse_list(cidrs, nets, SHARE_MAX_CIDRS, &n, &bad) < 0)
		return false;
	for (size_t i = 0; i < n; i++)
		if (cidr_contains(&nets[i], client))
			return true;
	return false;
}

/* What names the bytes and the name a link serves now (share_grant). */
static int content_tag_of(struct vault *v, const struct catalog_image *im, uint8_t variant,
			  uint8_t tag[16])
{
	struct catalog_thumb t;
	crypto_generichash_state st;
	int64_t version = variant == TOKEN_PRISTINE ? im->pristine_version : im->current_version;

	memset(tag, 0, 16);
	if (!version)
		return -ENOENT;
	crypto_generichash_init(&st, NULL, 0, 16);
	crypto_generichash_update(&st, &variant, 1);
	crypto_generichash_update(&st, (const uint8_t *)&version, sizeof(version));
	crypto_generichash_update(&st, im->name_enc, im->name_enc_len);
	if (variant == TOKEN_THUMB) {
		/* A thumbnail is remade (new blob) when its size setting changes. */
		if (catalog_thumb_get(v->cat, version, &t, NULL) < 0)
			return -ENOENT;
		crypto_generichash_update(&st, t.blob.b, sizeof(t.blob.b));
	}
	crypto_generichash_final(&st, tag, 16);
	return 0;
}

int share_public_key(struct vault *v, const uint8_t kid[TOKEN_KID_LEN],
		     uint8_t pk[TOKEN_PK_LEN], struct iverr *e)
{
	struct catalog_signkey key;
	int ret = catalog_signkey_get(v->cat, kid, &key, e);

	if (ret == 0)
		memcpy(pk, key.pk, TOKEN_PK_LEN);
	return ret;
}

int share_authorize(struct vault *v, const char *token, size_t len, const struct cidr *client,
		    int64_t now, bool signature_checked, struct share_grant *g, struct iverr *e)
{
	struct token_wire w;
	struct catalog_signkey key;
	struct catalog_image im;
	struct catalog_partner p;
	int ret;

	memset(g, 0, sizeof(*g));
	g->link.uid = UINT32_MAX;
	if (token_decode(token, len, &w) < 0)
		return iverr_set(e, ENOENT, "not a link token");
	ret = catalog_signkey_get(v->cat, w.t.kid, &key, e);
	if (ret == -ENOENT || (ret == 0 && !signature_checked && !token_verify(&w, key.pk)))
		return iverr_set(e, ENOENT, "the link is not signed by this vault");
	if (ret < 0)
		return ret;
	g->t = w.t;
	/* From here the token is authentic: refusals say why. */
	ret = catalog_share_get(v->cat, w.t.id, &g->link, e);
	if (ret == -ENOENT)
		return iverr_set(e, EKEYREVOKED, "the link was revoked (its image is gone)");
	if (ret < 0)
		return ret;
	/* The signed token and its (authenticated) record must say the same:
	 * neither can widen what the other grants. */
	if (memcmp(g->link.kid, w.t.kid, sizeof(w.t.kid)) != 0 ||
	    g->link.variant != w.t.variant || g->link.disposition != w.t.disposition ||
	    g->link.not_before != w.t.not_before || g->link.expires != w.t.expires ||
	    (uint64_t)g->link.partner_id != w.t.partner || g->link.uses_max != w.t.uses)
		return iverr_set(e, EKEYREVOKED, "the link does not match its record");
	if (g->link.partner_id) {
		if ((ret = catalog_partner_get(v->cat, g->link.partner_id, &p, e)) < 0)
			return ret == -ENOENT ? iverr_set(e, EKEYREVOKED, "the partner is gone") : ret;
		snprintf(g->partner, sizeof(g->partner), "%s", p.name);
	}
	if (key.retired)
		return iverr_set(e, EKEYREVOKED, "the link's signing key was retired");
	if (g->link.revoked)
		return iverr_set(e, EKEYREVOKED, "the link was revoked");
	if (now >= w.t.expires)
		return iverr_set(e, EKEYEXPIRED, "the link expired");
	if (now < w.t.not_before)
		return iverr_set(e, EPERM, "the link is not valid yet");
	if (g->link.partner_id && p.disabled)
		return iverr_set(e, EKEYREVOKED, "the partner's links were disabled");
	if (g->link.partner_id && !client_allowed(p.cidrs, client))
		return iverr_set(e, EACCES, "the link works only from the partner's networks");
	if (g->link.uses_max && g->link.uses >= g->link.uses_max)
		return iverr_set(e, EKEYREVOKED, "the link was used up");
	/* The record and the token must agree on the image. */
	if ((ret = catalog_image_get(v->cat, g->link.image_id, &im, e)) < 0)
		return ret == -ENOENT ? iverr_set(e, EKEYREVOKED, "the image is gone") : ret;
	if (sodium_memcmp(im.pid, w.t.image, sizeof(im.pid)) != 0 || im.uid != g->link.uid)
		return iverr_set(e, EKEYREVOKED, "the link does not match its record");
	content_tag_of(v, &im, w.t.variant, g->content_tag);
	return 0;
}

int share_content_tag(struct vault *v, const struct share_grant *g, uint8_t variant,
		      uint8_t tag[16])
{
	struct catalog_image im;

	memset(tag, 0, 16);
	if (catalog_image_get(v->cat, g->link.image_id, &im, NULL) < 0)
		return -ENOENT;
	return content_tag_of(v, &im, variant, tag);
}

int share_count_use(struct vault *v, const uint8_t tid[TOKEN_ID_LEN], bool completed,
		    uint64_t bytes, struct iverr *e)
{
	return catalog_share_use(v->cat, tid, completed ? 1 : 0, bytes, e);
}

uint64_t share_byte_budget(const struct catalog_share *l, uint64_t size)
{
	if (!l->uses_max)
		return UINT64_MAX;
	return 2 * (uint64_t)l->uses_max * (size ? size : 1);
}

int share_audit_fetches(struct vault *v, const struct share_fetch_note *notes, size_t n,
			struct iverr *e)
{
	int ret;

	if (!n)
		return 0;
	if ((ret = catalog_begin(v->cat, e)) < 0)
		return ret;
	for (size_t i = 0; i < n; i++) {
		const struct share_fetch_note *f = &notes[i];
		char tid[2 * TOKEN_ID_LEN + 1] = "-";
		char result[16];

		if (f->has_tid)
			token_hex(f->tid, TOKEN_ID_LEN, tid);
		snprintf(result, sizeof(result), "%d", f->status);
		ret = audit_append(v->cat, v->actor, f->uid, "share.fetch", tid, result, e,
				   "partner=%" PRId64 " client=%s variant=%u bytes=%" PRIu64,
				   f->partner_id, f->client[0] ? f->client : "-", f->variant,
				   f->bytes);
		if (ret < 0) {
			catalog_rollback(v->cat);
			return ret;
		}
	}
	return catalog_commit(v->cat, e);
}

int share_read_stripped(struct vault_file *f, uint8_t **out, size_t *len,
			char mime[VAULT_MIME_MAX], struct iverr *e)
{
	const struct vault_image *im = vault_file_image(f);
	uint64_t size = vault_file_size(f);
	uint8_t *buf = malloc(size ? size : 1);
	ssize_t n;
	int ret;

	*out = NULL;
	*len = 0;
	if (!buf)
		return iverr_set(e, ENOMEM, "out of memory");
	n = vault_file_pread(f, buf, size, 0, e);
	if (n < 0 || (uint64_t)n != size) {
		ret = n < 0 ? (int)n : iverr_set(e, EIO, "short read of image %" PRId64, im->id);
		goto out;
	}
	snprintf(mime, VAULT_MIME_MAX, "%s", im->mime);
	ret = strip_metadata(buf, size, im->mime, out, len, e);
	if (ret == -ENOTSUP) {
		/* No lossless stripper for this format: re-encoded, metadata dropped. */
		enum image_type type;
		void *re = NULL;

		iverr_clear(e);
		ret = image_reencode(buf, size, image_type_of(im->mime), &re, len, &type, e);
		if (ret == 0 && !(*out = malloc(*len ? *len : 1)))
			ret = iverr_set(e, ENOMEM, "out of memory");
		if (ret == 0) {
			memcpy(*out, re, *len);
			snprintf(mime, VAULT_MIME_MAX, "%s", image_mime(type));
		}
		image_buffer_free(re);
	}
out:
	if (ret < 0) {
		free(*out);
		*out = NULL;
		*len = 0;
	}
	free(buf);
	return ret;
}
