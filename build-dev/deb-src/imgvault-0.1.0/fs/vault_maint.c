/* Store maintenance: fsck and key rotation (vault.h). */
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <sodium.h>

#include "audit.h"
#include "bytes.h"
#include "vault_i.h"

/* A growable array of plain structs. */
#define VEC(T) struct { T *v; size_t n, cap; }
#define VEC_PUSH(vec, item)                                                      \
	((vec).n == (vec).cap                                                    \
	 ? vec_grow((void **)&(vec).v, &(vec).cap, sizeof(*(vec).v)) : 0) < 0    \
	? -ENOMEM : ((vec).v[(vec).n++] = (item), 0)

static int vec_grow(void **v, size_t *cap, size_t size)
{
	size_t ncap = *cap ? 2 * *cap : 32;
	void *p = realloc(*v, ncap * size);

	if (!p)
		return -ENOMEM;
	*v = p;
	*cap = ncap;
	return 0;
}

typedef VEC(struct catalog_version) version_vec;
typedef VEC(struct catalog_album) album_vec;
typedef VEC(struct catalog_image) image_vec;
typedef VEC(struct blob_id) blob_vec;
typedef VEC(struct catalog_thumb) thumb_vec;

static int push_version(const struct catalog_version *v, void *arg)
{
	version_vec *vec = arg;
	return VEC_PUSH(*vec, *v);
}

static int push_album(const struct catalog_album *a, void *arg)
{
	album_vec *vec = arg;
	return VEC_PUSH(*vec, *a);
}

static int push_image(const struct catalog_image *im, void *arg)
{
	image_vec *vec = arg;
	return VEC_PUSH(*vec, *im);
}

/* ---- fsck ---- */

struct fsck {
	struct vault *v;
	bool repair;
	vault_problem_fn problem;
	void *arg;
	struct vault_fsck_report *r;
	uint64_t bytes_total;
	blob_vec orphans;
};

static void fsck_problem(struct fsck *f, int64_t subject, const char *object,
			 const char *fmt, ...) __attribute__((format(printf, 4, 5)));

static void fsck_problem(struct fsck *f, int64_t subject, const char *object,
			 const char *fmt, ...)
{
	char msg[768];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	f->r->problems++;
	if (f->problem)
		f->problem(f->arg, msg);
	/* The trail gets ids only: @msg may hold names. */
	vault_audit(f->v, subject, "fsck", object, "damaged", "");
}

static int fsck_blob_seen(const struct blob_id *id, uint64_t size, void *arg)
{
	struct fsck *f = arg;
	bool referenced;
	int ret;

	(void)size;
	ret = catalog_blob_referenced(f->v->cat, id, &referenced, NULL);
	if (ret < 0)
		return ret;
	return referenced ? 0 : VEC_PUSH(f->orphans, *id);
}

/* Where a blob is, in words: "uid 1000: album/name" or by ids. */
static void fsck_locate(struct vault_session *s, struct vault *v, int64_t image_id,
			const char *variant, uint32_t uid, char *out, size_t cap, char pid[33],
			struct catalog_image *ci)
{
	char album[CATALOG_NAME_MAX + 1] = "?", name[CATALOG_NAME_MAX + 1] = "?";
	struct catalog_album a;
	size_t len;

	strcpy(pid, "?");
	if (catalog_image_get(v->cat, image_id, ci, NULL) < 0) {
		snprintf(out, cap, "uid %u: a version of missing image %" PRId64, uid, image_id);
		return;
	}
	hex_encode(ci->pid, 16, pid);
	if (s && catalog_album_get(v->cat, ci->album_id, &a, NULL) == 0 &&
	    vault_open_name(s->keys, "album", a.pid, a.name_enc, a.name_enc_len, album, &len) == 0 &&
	    vault_open_name(s->keys, "name", ci->pid, ci->name_enc, ci->name_enc_len, name, &len) == 0)
		snprintf(out, cap, "uid %u: %s/%s%s", uid, album, name, variant);
	else
		snprintf(out, cap, "uid %u: image %s%s", uid, pid, variant);
}

/* One blob to check: a version's or a thumbnail's, with its sealed record. */
struct fsck_item {
	struct catalog_version ver;   /* blob, size, key epoch (and image id) */
	int64_t image_id;
	const char *tag;              /* "attrs" or "thumb" */
	uint8_t pid[CATALOG_PID_LEN]; /* "attrs": the image's public id */
	int64_t owner;                /* "thumb": the version's row id */
	const uint8_t *attrs_enc;
	size_t attrs_len;
	const char *variant;          /* "", " (pristine)", " (thumbnail)" */
};

static int open_item_record(const struct user_keys *k, const struct fsck_item *it,
			    struct version_attrs *at)
{
	if (!strcmp(it->tag, "thumb"))
		return vault_open_record(k, "thumb", &it->ver.blob, it->owner, it->attrs_enc,
					 it->attrs_len, at);
	return vault_open_attrs(k, &it->ver, it->pid, at);
}

/* Decrypts every chunk and compares the SHA-256 with the sealed record. */
static int fsck_verify_content(struct fsck *f, struct vault_session *s,
			       const struct fsck_item *it, struct iverr *err)
{
	struct blob_reader *r = NULL;
	struct version_attrs at;
	crypto_hash_sha256_state st;
	uint8_t digest[32], *buf, nonzero = 0;
	uint64_t off = 0, content;
	ssize_t n = 0;
	int ret;

	if (open_item_record(s->keys, it, &at) < 0 &&
	    (!s->prev || open_item_record(s->prev, it, &at) < 0))
		return iverr_set(err, IV_EDAMAGE, "its recorded attributes fail authentication");
	if (vault_content_size(it->ver.size, &at, &content) < 0)
		return iverr_set(err, IV_EDAMAGE, "its record claims more bytes than its blob holds");
	if ((ret = vault_open_version_blob(s, &it->ver, &r, err)) < 0)
		return ret;
	buf = malloc(1 << 20);
	if (!buf) {
		blob_reader_close(r);
		return iverr_set(err, ENOMEM, "out of memory");
	}
	/* The content is hashed; the padding after it must be zeros. */
	crypto_hash_sha256_init(&st);
	while ((n = blob_reader_pread(r, buf, 1 << 20, off, err)) > 0) {
		size_t in = off >= content ? 0 : (size_t)(content - off < (uint64_t)n ?
							   content - off : (uint64_t)n);
		crypto_hash_sha256_update(&st, buf, in);
		for (size_t i = in; i < (size_t)n; i++)
			nonzero |= buf[i];
		off += (uint64_t)n;
		f->r->bytes_verified += (uint64_t)n;
	}
	crypto_hash_sha256_final(&st, digest);
	free(buf);
	blob_reader_close(r);
	if (n < 0)
		return (int)n;
	if (sodium_memcmp(digest, at.sha256, 32) != 0)
		return iverr_set(err, IV_EDAMAGE, "content does not match its recorded SHA-256");
	if (nonzero)
		return iverr_set(err, IV_EDAMAGE, "its padding is not zeros");
	return 0;
}

/* Without keys: what the header and the catalog say must agree. */
static int fsck_verify_structure(struct fsck *f, uint32_t uid, const struct fsck_item *it,
				 struct iverr *err)
{
	struct blob_header h;
	char hex[33];
	int ret = blob_check_structure(f->v->bs, &it->ver.blob, &h, err);

	blob_id_hex(&it->ver.blob, hex);
	if (ret == 0 && h.owner != uid)
		ret = iverr_set(err, IV_EDAMAGE, "blob %s belongs to uid %u", hex, h.owner);
	else if (ret == 0 && h.size != it->ver.size)
		ret = iverr_set(err, IV_EDAMAGE, "blob %s holds %" PRIu64 " bytes, the catalog "
				"says %" PRIu64, hex, h.size, it->ver.size);
	return ret;
}

static int fsck_item(struct fsck *f, struct vault_session *s, uint32_t uid,
		     const struct fsck_item *it, struct iverr *e)
{
	struct iverr err = { 0 };
	struct catalog_image ci = { 0 };
	char where[600], pid[33];
	int ret = s ? fsck_verify_content(f, s, it, &err) : fsck_verify_structure(f, uid, it, &err);

	if (ret == 0)
		return 0;
	if (ret != -IV_EDAMAGE && ret != -IV_EVERSION)
		return iverr_set(e, err.code, "%s", err.msg);
	fsck_locate(s, f->v, it->image_id, it->variant, uid, where, sizeof(where), pid, &ci);
	fsck_problem(f, uid, pid, "%s: %s", where, err.msg);
	if (f->repair && !ci.damaged && ci.id) {
		ci.damaged = true;
		catalog_image_update(f->v->cat, &ci, NULL);
	}
	return 0;
}

static int fsck_version(struct fsck *f, struct vault_session *s, uint32_t uid,
			const struct catalog_version *ver, struct iverr *e)
{
	struct catalog_image ci;
	struct fsck_item it = { .ver = *ver, .image_id = ver->image_id, .tag = "attrs",
				.owner = ver->image_id, .attrs_enc = ver->attrs_enc,
				.attrs_len = ver->attrs_enc_len, .variant = "" };

	if (catalog_image_get(f->v->cat, ver->image_id, &ci, NULL) == 0) {
		memcpy(it.pid, ci.pid, sizeof(it.pid));
		if (ci.current_version != ver->id)
			it.variant = " (pristine)";
	}
	return fsck_item(f, s, uid, &it, e);
}

static int push_thumb(const struct catalog_thumb *t, void *arg)
{
	thumb_vec *vec = arg;
	return VEC_PUSH(*vec, *t);
}

static int fsck_thumbs(struct fsck *f, struct vault_session *s, uint32_t uid, struct iverr *e)
{
	thumb_vec thumbs = { 0 };
	int ret = catalog_thumb_list_user(f->v->cat, uid, push_thumb, &thumbs, e);

	for (size_t i = 0; ret == 0 && i < thumbs.n; i++) {
		const struct catalog_thumb *t = &thumbs.v[i];
		struct catalog_version ver;
		struct fsck_item it = { .tag = "thumb", .owner = t->version_id,
					.attrs_enc = t->attrs_enc, .attrs_len = t->attrs_enc_len,
					.variant = " (thumbnail)" };

		if (catalog_version_get(f->v->cat, t->version_id, &ver, NULL) < 0)
			continue;   /* cascade: cannot happen with foreign keys on */
		it.image_id = ver.image_id;
		it.ver.id = t->version_id;
		it.ver.image_id = ver.image_id;
		it.ver.blob = t->blob;
		it.ver.size = t->size;
		it.ver.key_epoch = t->key_epoch;
		ret = fsck_item(f, s, uid, &it, e);
	}
	free(thumbs.v);
	return ret;
}

static int fsck_names(struct fsck *f, struct vault_session *s)
{
	image_vec images = { 0 };
	album_vec albums = { 0 };
	uint8_t idx[CATALOG_INDEX_LEN];
	char name[CATALOG_NAME_MAX + 1], pid[33];
	size_t len;
	int ret;

	if ((ret = catalog_album_list(f->v->cat, s->uid, push_album, &albums, NULL)) < 0 ||
	    (ret = catalog_image_list_user(f->v->cat, s->uid, push_image, &images, NULL)) < 0)
		goto out;
	for (size_t i = 0; i < albums.n; i++) {
		struct catalog_album *a = &albums.v[i];
		hex_encode(a->pid, 16, pid);
		if (vault_open_name(s->keys, "album", a->pid, a->name_enc, a->name_enc_len, name, &len) < 0) {
			fsck_problem(f, s->uid, pid, "uid %u: album %s: its name fails "
				     "authentication", s->uid, pid);
			continue;
		}
		keys_name_index(s->keys, ALBUM_PARENT, name, len, idx);
		if (sodium_memcmp(idx, a->name_idx, sizeof(idx)) != 0)
			fsck_problem(f, s->uid, pid, "uid %u: album %s: its lookup index does "
				     "not match its name", s->uid, name);
	}
	for (size_t i = 0; i < images.n; i++) {
		struct catalog_image *im = &images.v[i];
		hex_encode(im->pid, 16, pid);
		if (vault_open_name(s->keys, "name", im->pid, im->name_enc, im->name_enc_len, name, &len) < 0) {
			fsck_problem(f, s->uid, pid, "uid %u: image %s: its name fails "
				     "authentication", s->uid, pid);
			continue;
		}
		keys_name_index(s->keys, im->album_id, name, len, idx);
		if (sodium_memcmp(idx, im->name_idx, sizeof(idx)) != 0)
			fsck_problem(f, s->uid, pid, "uid %u: image %s: its lookup index does "
				     "not match its name", s->uid, name);
		for (int k = 0; k < 2; k++) {
			static const char *const xattr[2] = { "user.xdg.tags", "user.xdg.comment" };
			size_t vlen;
			if (vault_xattr_get(s, im->id, xattr[k], NULL, 0, &vlen, NULL) == -IV_EDAMAGE)
				fsck_problem(f, s->uid, pid, "uid %u: image %s: its %s attribute "
					     "fails authentication", s->uid, name, xattr[k]);
		}
	}
out:
	free(albums.v);
	free(images.v);
	return ret;
}

/* Checks one scope's rows and seal: each failing row and a sum that does
 * not match is a problem; --repair accepts the catalog as it now is. */
static int fsck_auth_scope(struct fsck *f, int64_t scope, bool *untrusted, struct iverr *e)
{
	struct catalog_auth_report r;
	char who[48];
	int ret = catalog_auth_verify(f->v->cat, scope, &r, e);

	if (ret < 0)
		return ret;
	if (scope < 0)
		snprintf(who, sizeof(who), "the store's own rows");
	else
		snprintf(who, sizeof(who), "uid %" PRId64, scope);
	for (uint64_t i = 0; i < r.nbad && i < CATALOG_AUTH_REPORT_MAX; i++)
		fsck_problem(f, scope, "", "%s: %s row %" PRId64 " fails authentication "
			     "(catalog.db was edited: it is refused when read)", who,
			     r.bad[i].table, r.bad[i].rowid);
	if (r.nbad > CATALOG_AUTH_REPORT_MAX)
		fsck_problem(f, scope, "", "%s: %" PRIu64 " more rows fail authentication", who,
			     r.nbad - CATALOG_AUTH_REPORT_MAX);
	switch (r.state) {
	case CATALOG_AUTH_OK:
	case CATALOG_AUTH_ROWS:
		break;
	case CATALOG_AUTH_CHANGED:
		fsck_problem(f, scope, "", "%s: the catalog does not match its seal: rows were "
			     "removed, added or rolled back (%" PRId64 " sealed, %" PRIu64
			     " found)", who, r.sealed_rows, r.rows);
		*untrusted = true;
		break;
	case CATALOG_AUTH_MISSING:
		fsck_problem(f, scope, "", "%s: the catalog's seal is missing (catalog.db was "
			     "edited)", who);
		*untrusted = true;
		break;
	case CATALOG_AUTH_FORGED:
		fsck_problem(f, scope, "", "%s: the catalog's seal fails authentication "
			     "(catalog.db was edited)", who);
		*untrusted = true;
		break;
	}
	if (f->repair && r.state != CATALOG_AUTH_OK) {
		if ((ret = catalog_auth_seal(f->v->cat, scope, e)) < 0)
			return ret;
		vault_audit(f->v, scope, "fsck", "", "repaired", "catalog accepted as it is");
		if (f->problem) {
			char msg[160];
			snprintf(msg, sizeof(msg), "%s: the catalog was accepted as it is and sealed "
				 "again (--repair)", who);
			f->problem(f->arg, msg);
		}
	}
	return 0;
}

/* Images whose version rows are gone, or that failed their full decode. */
static int fsck_dangling(struct fsck *f, struct vault_session *s, uint32_t uid)
{
	image_vec images = { 0 };
	struct catalog_version ver;
	char pid[33], where[600];
	int ret = catalog_image_list_user(f->v->cat, uid, push_image, &images, NULL);

	for (size_t i = 0; ret == 0 && i < images.n; i++) {
		struct catalog_image *im = &images.v[i], ci;
		hex_encode(im->pid, 16, pid);
		int64_t vids[2] = { im->current_version, im->pristine_version };
		for (int k = 0; k < 2; k++) {
			if (!vids[k])
				continue;
			if (catalog_version_get(f->v->cat, vids[k], &ver, NULL) < 0)
				fsck_problem(f, uid, pid, "uid %u: image %s: a version it points at "
					     "is missing from the catalog", uid, pid);
			else if (ver.image_id != im->id)
				fsck_problem(f, uid, pid, "uid %u: image %s: it points at another "
					     "image's version (the catalog was edited)", uid, pid);
		}
		if (im->damaged) {
			fsck_locate(s, f->v, im->id, "", uid, where, sizeof(where), pid, &ci);
			fsck_problem(f, uid, pid, "%s: marked damaged (it failed a decode or an "
				     "earlier check)", where);
		}
	}
	free(images.v);
	return ret;
}

int vault_fsck(struct vault *v, struct vault_session *const *sessions, size_t n_sessions,
	       bool repair, vault_problem_fn problem, vault_progress_fn progress, void *arg,
	       struct vault_fsck_report *r, struct iverr *e)
{
	struct fsck f = { .v = v, .repair = repair, .problem = problem, .arg = arg, .r = r };
	struct audit_report ar;
	struct iverr err = { 0 };
	version_vec all = { 0 };
	struct { uint32_t *v; size_t n; } uids = { NULL, 0 };
	size_t *owner_of = NULL;
	int ret;

	memset(r, 0, sizeof(*r));
	if (catalog_check_integrity(v->cat, &err) < 0) {
		r->catalog_damaged = true;
		r->problems++;
		if (problem)
			problem(arg, err.msg);
		return 0;   /* nothing further can be trusted */
	}
	if ((ret = audit_verify(v->cat, &ar, e)) < 0)
		return ret;
	if (ar.first_bad) {
		char msg[160];
		r->audit_broken = true;
		snprintf(msg, sizeof(msg), "audit trail: entry %" PRId64 " was edited, deleted "
			 "or reordered (the hash chain breaks there)", ar.first_bad);
		r->problems++;
		if (problem)
			problem(arg, msg);
	}

	/* The catalog's rows against their seals, for every key at hand.  When
	 * rows were removed or rolled back, blobs they referenced may look
	 * unreferenced: none is removed then. */
	bool untrusted = false;
	if (catalog_auth_has_key(v->cat, CATALOG_SCOPE_STORE) &&
	    (ret = fsck_auth_scope(&f, CATALOG_SCOPE_STORE, &untrusted, e)) < 0)
		return ret;
	for (size_t k = 0; k < n_sessions; k++)
		if (sessions[k] && (ret = fsck_auth_scope(&f, sessions[k]->uid, &untrusted, e)) < 0)
			return ret;

	/* Leftovers of interrupted writes: never referenced, safe under the lock. */
	ret = v->bs->ops->sweep(v->bs, e);
	if (ret < 0)
		return ret;
	r->orphans_removed += (uint64_t)ret;
	if ((ret = v->bs->ops->list(v->bs, fsck_blob_seen, &f, e)) < 0)
		goto out;
	if (untrusted && !repair && f.orphans.n) {
		char msg[160];
		snprintf(msg, sizeof(msg), "%zu unreferenced blobs kept: the catalog does not match "
			 "its seal, they may be what was removed from it", f.orphans.n);
		if (problem)
			problem(arg, msg);
		f.orphans.n = 0;
	}
	for (size_t i = 0; i < f.orphans.n; i++)
		if (v->bs->ops->remove(v->bs, &f.orphans.v[i], NULL) == 0)
			r->orphans_removed++;
	if (r->orphans_removed)
		vault_audit(v, -1, "fsck", "", "repaired", "orphans removed");

	if ((ret = vault_user_uids(v, &uids.v, &uids.n, e)) < 0)
		goto out;
	for (size_t u = 0; u < uids.n; u++) {
		size_t before = all.n;
		if ((ret = catalog_version_list_user(v->cat, uids.v[u], 0, push_version, &all, e)) < 0)
			goto out;
		size_t *p = realloc(owner_of, (all.n ? all.n : 1) * sizeof(*p));
		if (!p) {
			ret = iverr_set(e, ENOMEM, "out of memory");
			goto out;
		}
		owner_of = p;
		for (size_t i = before; i < all.n; i++)
			owner_of[i] = u;
	}
	for (size_t i = 0; i < all.n; i++)
		f.bytes_total += all.v[i].size;

	for (size_t u = 0; u < uids.n; u++) {
		struct vault_session *s = NULL;
		for (size_t k = 0; k < n_sessions; k++)
			if (sessions[k] && sessions[k]->uid == uids.v[u])
				s = sessions[k];
		if (!s)
			r->users_unverified++;
		else if ((ret = fsck_names(&f, s)) < 0)
			goto out;
		if ((ret = fsck_dangling(&f, s, uids.v[u])) < 0 ||
		    (ret = fsck_thumbs(&f, s, uids.v[u], e)) < 0)
			goto out;
	}
	uint64_t bytes_done = 0;
	for (size_t i = 0; i < all.n; i++) {
		uint32_t uid = uids.v[owner_of[i]];
		struct vault_session *s = NULL;
		for (size_t k = 0; k < n_sessions; k++)
			if (sessions[k] && sessions[k]->uid == uid)
				s = sessions[k];
		if ((ret = fsck_version(&f, s, uid, &all.v[i], e)) < 0)
			goto out;
		r->versions_checked++;
		bytes_done += all.v[i].size;
		if (progress)
			progress(arg, i + 1, all.n, bytes_done, f.bytes_total);
	}
	ret = 0;
out:
	free(f.orphans.v);
	free(all.v);
	free(uids.v);
	free(owner_of);
	return ret;
}

/* ---- key rotation ---- */

/* Reseals an image's tags or comment under @nk, if it has one. */
static int reseal_text(struct vault_session *s, const struct user_keys *nk,
		       const struct catalog_image *im, enum catalog_text which, const char *tag,
		       struct iverr *e)
{
	uint8_t sealed[VAULT_TEXT_ENC_MAX], plain[VAULT_TEXT_MAX];
	size_t len, n;
	int ret = catalog_image_text_get(s->v->cat, im->id, which, sealed, sizeof(sealed), &len, e);

	if (ret == -ENODATA)
		return 0;
	if (ret < 0)
		return ret;
	if (vault_open_text(s->keys, tag, im->pid, sealed, len, plain, sizeof(plain), &n) < 0)
		return iverr_set(e, IV_EDAMAGE, "image %" PRId64 "'s %s fail authentication; run "
				 "imgvault fsck first", im->id, tag);
	vault_seal_text(nk, tag, im->pid, plain, n, sealed, &len);
	sodium_memzero(plain, sizeof(plain));
	return catalog_image_text_set(s->v->cat, im->id, which, sealed, len, e);
}

/* Reseals every name and attribute record of the user under @nk. */
int vault_reseal_metadata(struct vault_session *s, const struct user_keys *nk,
			  struct iverr *e)
{
	struct vault *v = s->v;
	album_vec albums = { 0 };
	image_vec images = { 0 };
	version_vec versions = { 0 };
	char name[CATALOG_NAME_MAX + 1];
	struct version_attrs at;
	size_t len;
	int ret;

	if ((ret = catalog_album_list(v->cat, s->uid, push_album, &albums, e)) < 0 ||
	    (ret = catalog_image_list_user(v->cat, s->uid, push_image, &images, e)) < 0 ||
	    (ret = catalog_version_list_user(v->cat, s->uid, 0, push_version, &versions, e)) < 0)
		goto out;
	for (size_t i = 0; i < albums.n; i++) {
		struct catalog_album *a = &albums.v[i];
		if (vault_open_name(s->keys, "album", a->pid, a->name_enc, a->name_enc_len, name, &len) < 0) {
			ret = iverr_set(e, IV_EDAMAGE, "album %" PRId64 "'s name fails "
					"authentication; run imgvault fsck first", a->id);
			goto out;
		}
		keys_name_index(nk, ALBUM_PARENT, name, len, a->name_idx);
		vault_seal_name(nk, "album", a->pid, name, len, a->name_enc, &a->name_enc_len);
		if ((ret = catalog_album_update(v->cat, a, e)) < 0)
			goto out;
	}
	for (size_t i = 0; i < images.n; i++) {
		struct catalog_image *im = &images.v[i];
		if (vault_open_name(s->keys, "name", im->pid, im->name_enc, im->name_enc_len, name, &len) < 0) {
			ret = iverr_set(e, IV_EDAMAGE, "image %" PRId64 "'s name fails "
					"authentication; run imgvault fsck first", im->id);
			goto out;
		}
		keys_name_index(nk, im->album_id, name, len, im->name_idx);
		vault_seal_name(nk, "name", im->pid, name, len, im->name_enc, &im->name_enc_len);
		if ((ret = catalog_image_update(v->cat, im, e)) < 0 ||
		    (ret = reseal_text(s, nk, im, CATALOG_TAGS, "tags", e)) < 0 ||
		    (ret = reseal_text(s, nk, im, CATALOG_COMMENT, "comment", e)) < 0)
			goto out;
	}
	for (size_t i = 0; i < versions.n; i++) {
		struct catalog_version *ver = &versions.v[i];
		const struct catalog_image *im = NULL;
		for (size_t k = 0; !im && k < images.n; k++)
			if (images.v[k].id == ver->image_id)
				im = &images.v[k];
		if (!im || vault_open_attrs(s->keys, ver, im->pid, &at) < 0) {
			ret = iverr_set(e, IV_EDAMAGE, "version %" PRId64 "'s attributes fail "
					"authentication; run imgvault fsck first", ver->id);
			goto out;
		}
		vault_seal_attrs(nk, &ver->blob, im->pid, &at, ver);
		if ((ret = catalog_version_update(v->cat, ver, e)) < 0)
			goto out;
	}
	ret = vault_share_reseal(s, s->keys, nk, e);
out:
	sodium_memzero(name, sizeof(name));
	free(albums.v);
	free(images.v);
	free(versions.v);
	return ret;
}

/* Step one, in one transaction: a new user key takes over slots and metadata;
 * the old one is kept sealed under the new until every blob is done. */
static int rotate_start(struct vault_session *s, struct catalog_user *u, bool full,
			const struct server_key *sk, const char *pass, size_t pass_len,
			const struct keys_kdf_cost *cost, const char *recovery,
			bool *dropped, struct iverr *e)
{
	struct vault *v = s->v;
	thumb_vec thumbs = { 0 };
	struct user_keys *nk;
	uint8_t ad[32], uid_le[4];
	unsigned slots;
	size_t adlen;
	int ret;

	if ((ret = catalog_slot_kinds(v->cat, s->uid, &slots, e)) < 0)
		return ret;
	if ((slots & (1u << KEY_SLOT_SERVER)) && !sk)
		return iverr_set(e, EINVAL, "uid %u's vault has a server slot: rotating its key "
				 "needs the server key (--server-key)", s->uid);
	nk = keys_user_new();
	if (!nk)
		return iverr_set(e, ENOMEM, "out of memory");
	if ((ret = catalog_thumb_list_user(v->cat, s->uid, push_thumb, &thumbs, e)) < 0)
		goto out_free;
	if ((ret = catalog_begin(v->cat, e)) < 0)
		goto out_free;
	if ((ret = vault_reseal_metadata(s, nk, e)) < 0)
		goto out_rollback;
	/* Thumbnails are derived data: remade under the new key, not rewrapped. */
	for (size_t i = 0; i < thumbs.n; i++)
		if ((ret = catalog_thumb_delete(v->cat, thumbs.v[i].version_id, e)) < 0 ||
		    (ret = catalog_queue_push(v->cat, thumbs.v[i].version_id, s->uid, 0,
					      vault_now(), e)) < 0)
			goto out_rollback;
	if (sk && (ret = vault_seal_slot(v, s->uid, nk, KEY_SLOT_SERVER, sk->k, KEYS_KEY_LEN,
					 NULL, e)) < 0)
		goto out_rollback;
	if (pass) {
		if ((ret = vault_seal_slot(v, s->uid, nk, KEY_SLOT_PASSPHRASE, pass, pass_len,
					   cost, e)) < 0)
			goto out_rollback;
	} else if (slots & (1u << KEY_SLOT_PASSPHRASE)) {
		if ((ret = catalog_slot_delete(v->cat, s->uid, KEY_SLOT_PASSPHRASE, e)) < 0)
			goto out_rollback;
		*dropped = true;
	}
	if ((ret = vault_seal_slot(v, s->uid, nk, KEY_SLOT_RECOVERY, recovery, strlen(recovery),
				   NULL, e)) < 0)
		goto out_rollback;
	put_le32(uid_le, s->uid);
	vault_seal_ad("prevuk", uid_le, 4, ad, &adlen);
	keys_seal(nk->rekey, ad, adlen, s->keys->uk, KEYS_KEY_LEN, u->prev_uk);
	u->prev_uk_len = KEYS_KEY_LEN + KEYS_SEAL_OVERHEAD;
	u->rekey = full ? CATALOG_REKEY_FULL : CATALOG_REKEY_REWRAP;
	u->key_epoch++;
	if ((ret = catalog_user_update(v->cat, u, e)) < 0 ||
	    (ret = audit_append(v->cat, v->actor, s->uid, "rekey", "", "started", e, "%s",
				full ? "full re-encryption" : "rewrap")) < 0)
		goto out_rollback;
	/* Last: every row of the vault sealed under the new key. */
	if ((ret = vault_auth_rekey(s, nk, e)) < 0)
		goto out_rollback_auth;
	if ((ret = catalog_commit(v->cat, e)) < 0) {
		vault_auth_rekey_undo(s);
		goto out_free;
	}
	keys_user_free(s->prev);
	s->prev = s->keys;
	s->keys = nk;
	s->key_epoch = u->key_epoch;
	for (size_t i = 0; i < thumbs.n; i++)
		v->bs->ops->remove(v->bs, &thumbs.v[i].blob, NULL);
	free(thumbs.v);
	return 0;
out_rollback_auth:
	catalog_rollback(v->cat);
	vault_auth_rekey_undo(s);
	goto out_free;
out_rollback:
	catalog_rollback(v->cat);
out_free:
	free(thumbs.v);
	keys_user_free(nk);
	return ret;
}

/* Re-encrypts one version into a new blob under the new key. */
static int rotate_reencrypt(struct vault_session *s, struct catalog_version *ver,
			    struct iverr *e)
{
	struct vault *v = s->v;
	struct blob_reader *r = NULL;
	struct blob_writer *w = NULL;
	struct version_attrs at;
	struct catalog_image ci;
	struct blob_id old = ver->blob, fresh;
	uint8_t *buf = NULL;
	uint64_t off = 0;
	ssize_t n;
	int ret;

	if (catalog_image_get(v->cat, ver->image_id, &ci, e) < 0 ||
	    vault_open_attrs(s->keys, ver, ci.pid, &at) < 0)
		return iverr_set(e, IV_EDAMAGE, "version %" PRId64 "'s attributes fail "
				 "authentication", ver->id);
	if ((ret = vault_open_version_blob(s, ver, &r, e)) < 0)
		return ret;
	if (!(buf = malloc(1 << 20))) {
		ret = iverr_set(e, ENOMEM, "out of memory");
		goto out;
	}
	if ((ret = blob_writer_open(v->bs, s->keys->file_wrap, s->uid, &w, e)) < 0)
		goto out;
	while ((n = blob_reader_pread(r, buf, 1 << 20, off, e)) > 0) {
		if ((ret = blob_writer_write(w, buf, (size_t)n, e)) < 0)
			goto out;
		off += (uint64_t)n;
	}
	if (n < 0) {
		ret = (int)n;
		goto out;
	}
	ret = blob_writer_commit(w, &fresh, e);
	w = NULL;
	if (ret < 0)
		goto out;
	ver->blob = fresh;
	ver->key_epoch = s->key_epoch;
	vault_seal_attrs(s->keys, &fresh, ci.pid, &at, ver);
	if ((ret = catalog_version_update(v->cat, ver, e)) < 0) {
		v->bs->ops->remove(v->bs, &fresh, NULL);
		goto out;
	}
	v->bs->ops->remove(v->bs, &old, NULL);   /* fsck removes it otherwise */
out:
	blob_writer_abort(w);
	blob_reader_close(r);
	free(buf);
	return ret;
}

int vault_rekey_begin(struct vault_session *s, bool full, const struct server_key *sk,
		      const char *pass, size_t pass_len, const struct keys_kdf_cost *cost,
		      const char *recovery, bool *dropped_passphrase, bool *resuming,
		      struct iverr *e)
{
	struct catalog_user u;
	int ret;

	*dropped_passphrase = false;
	if ((ret = catalog_user_get(s->v->cat, s->uid, &u, e)) < 0)
		return ret;
	*resuming = u.rekey != CATALOG_REKEY_NONE;
	if (*resuming)
		return 0;
	if (!recovery)
		return iverr_set(e, EINVAL, "a new rotation needs its new recovery code");
	return rotate_start(s, &u, full, sk, pass, pass_len, cost, recovery,
			    dropped_passphrase, e);
}

int vault_rekey_run(struct vault_session *s, vault_progress_fn progress, void *arg,
		    struct iverr *e)
{
	struct vault *v = s->v;
	version_vec versions = { 0 };
	struct catalog_user u;
	uint64_t bytes_total = 0, bytes = 0, damaged = 0;
	bool full;
	int ret;

	if ((ret = catalog_user_get(v->cat, s->uid, &u, e)) < 0)
		return ret;
	if (u.rekey == CATALOG_REKEY_NONE || !s->prev)
		return 0;
	full = u.rekey == CATALOG_REKEY_FULL;
	if ((ret = catalog_version_list_user(v->cat, s->uid, 0, push_version, &versions, e)) < 0)
		goto out;
	for (size_t i = 0; i < versions.n; i++)
		bytes_total += versions.v[i].size;
	for (size_t i = 0; i < versions.n; i++) {
		struct catalog_version *ver = &versions.v[i];
		struct iverr err = { 0 };

		bytes += ver->size;
		if (ver->key_epoch == u.key_epoch)
			goto next;
		if (full) {
			ret = rotate_reencrypt(s, ver, &err);
		} else {
			ret = blob_rewrap(v->bs, &ver->blob, s->uid, s->prev->file_wrap,
					  s->keys->file_wrap, &err);
			if (ret == -IV_EDAMAGE) {
				/* Rewrapped just before an interruption? */
				struct blob_reader *r;
				if (blob_reader_open(v->bs, &ver->blob, s->keys->file_wrap, s->uid,
						     ver->size, &r, NULL) == 0) {
					blob_reader_close(r);
					ret = 0;
				}
			}
			if (ret == 0) {
				ver->key_epoch = u.key_epoch;
				ret = catalog_version_update(v->cat, ver, &err);
			}
		}
		if (ret == -IV_EDAMAGE) {
			/* Unreadable already: it stays as it is, fsck names it. */
			damaged++;
			ret = 0;
		} else if (ret < 0) {
			iverr_set(e, err.code, "%s; run imgvault rekey again to resume", err.msg);
			goto out;
		}
next:
		if (progress)
			progress(arg, i + 1, versions.n, bytes, bytes_total);
	}
	u.rekey = CATALOG_REKEY_NONE;
	u.prev_uk_len = 0;
	sodium_memzero(u.prev_uk, sizeof(u.prev_uk));
	if ((ret = catalog_user_update(v->cat, &u, e)) < 0)
		goto out;
	audit_append(v->cat, v->actor, s->uid, "rekey", "", "done", NULL,
		     "%zu versions, %" PRIu64 " damaged left as they were", versions.n, damaged);
	keys_user_free(s->prev);
	s->prev = NULL;
	if (damaged)
		ret = iverr_set(e, IV_EDAMAGE, "key rotated, but %" PRIu64 " damaged blobs could "
				"not be rewritten; imgvault fsck names them", damaged);
out:
	free(versions.v);
	return ret;
}
