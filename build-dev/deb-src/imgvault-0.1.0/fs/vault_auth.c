/*
 * The authenticated catalog, as the vault uses it (docs/FORMAT.md §6.5):
 * which key authenticates which rows, the first seal of a store from before
 * schema 5, and the check of a vault's rows against its seal at unlock.
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <sodium.h>

#include "audit.h"
#include "vault_i.h"

static void report_words(const struct catalog_auth_report *r, char *buf, size_t cap)
{
	switch (r->state) {
	case CATALOG_AUTH_OK:
		snprintf(buf, cap, "intact");
		break;
	case CATALOG_AUTH_ROWS:
		snprintf(buf, cap, "%" PRIu64 " row%s fail%s authentication", r->nbad,
			 r->nbad == 1 ? "" : "s", r->nbad == 1 ? "s" : "");
		break;
	case CATALOG_AUTH_CHANGED:
		snprintf(buf, cap, "rows were removed, added or rolled back (%" PRId64
			 " sealed, %" PRIu64 " found, %" PRIu64 " failing)", r->sealed_rows,
			 r->rows, r->nbad);
		break;
	case CATALOG_AUTH_MISSING:
		snprintf(buf, cap, "its seal is missing");
		break;
	case CATALOG_AUTH_FORGED:
		snprintf(buf, cap, "its seal fails authentication");
		break;
	}
}

/* Audits each failing row and, unless the whole scope is untrustworthy
 * and @lenient is false, lets the caller go on. */
static int report_scope(struct vault *v, int64_t scope, const struct catalog_auth_report *r,
			bool lenient, struct iverr *e)
{
	char words[160], who[48];

	if (r->state == CATALOG_AUTH_OK)
		return 0;
	if (scope < 0)
		snprintf(who, sizeof(who), "the store's own rows");
	else
		snprintf(who, sizeof(who), "uid %" PRId64 "'s vault", scope);
	report_words(r, words, sizeof(words));
	for (uint64_t i = 0; i < r->nbad && i < CATALOG_AUTH_REPORT_MAX; i++) {
		char obj[48];
		snprintf(obj, sizeof(obj), "%s %" PRId64, r->bad[i].table, r->bad[i].rowid);
		audit_append(v->cat, v->actor, scope, "catalog", obj, "damaged", NULL,
			     "the row fails authentication");
	}
	audit_append(v->cat, v->actor, scope, "catalog", "", "damaged", NULL, "%s", words);
	if (r->state == CATALOG_AUTH_ROWS || lenient)
		return 0;
	return iverr_set(e, IV_EDAMAGE, "catalog of %s does not match its seal: %s; nothing of "
			 "it is trusted: restore catalog.db from a backup, or see what "
			 "imgvault fsck reports and accept the catalog as it is with "
			 "imgvault fsck --repair", who, words);
}

int vault_auth_check(struct vault *v, int64_t scope, struct catalog_auth_report *r,
		     bool lenient, struct iverr *e)
{
	int ret = catalog_auth_verify(v->cat, scope, r, e);

	if (ret < 0)
		return ret;
	return report_scope(v, scope, r, lenient, e);
}

/* Whether any user's vault has a seal: a store whose own seal is missing
 * while one has was edited, not written by an older imgvault. */
static int any_user_sealed(struct vault *v, bool *any, struct iverr *e)
{
	uint32_t *uids = NULL;
	size_t n = 0;
	int ret = vault_user_uids(v, &uids, &n, e);

	*any = false;
	for (size_t i = 0; ret == 0 && i < n && !*any; i++)
		ret = catalog_auth_sealed(v->cat, uids[i], any, e);
	free(uids);
	return ret;
}

/* Seals the store scope the first time its key is at hand (a store from
 * before schema 5, or a new one), then checks it. */
static int store_scope_open(struct vault *v, struct iverr *e)
{
	struct catalog_auth_report r;
	bool sealed, any;
	int ret;

	if ((ret = catalog_auth_sealed(v->cat, CATALOG_SCOPE_STORE, &sealed, e)) < 0)
		return ret;
	if (!sealed) {
		if ((ret = any_user_sealed(v, &any, e)) < 0)
			return ret;
		if (any && !v->lenient)
			return iverr_set(e, IV_EDAMAGE, "catalog of store %s: the seal of its own "
					 "rows (users, partners, signing keys) is missing while its "
					 "vaults have theirs: catalog.db was edited; restore it from a "
					 "backup, or accept it as it is with imgvault fsck --repair",
					 v->path);
		return catalog_auth_seal(v->cat, CATALOG_SCOPE_STORE, e);
	}
	return vault_auth_check(v, CATALOG_SCOPE_STORE, &r, v->lenient, e);
}

int vault_auth_server_key(struct vault *v, const struct server_key *sk, struct iverr *e)
{
	uint8_t key[KEYS_KEY_LEN];
	int ret;

	if (v->store_key_set)
		return 0;
	keys_server_store_key(sk, key);
	ret = catalog_auth_key_set(v->cat, CATALOG_SCOPE_STORE, key, e);
	sodium_memzero(key, sizeof(key));
	if (ret < 0)
		return ret;
	if ((ret = store_scope_open(v, e)) < 0) {
		catalog_auth_key_drop(v->cat, CATALOG_SCOPE_STORE);
		return ret;
	}
	v->store_key_set = true;
	return 0;
}

/* Whether every sealed name of the user is in form 1: a vault written by
 * an older imgvault, never sealed.  One name in form 2 means its seal was
 * removed. */
struct form_scan {
	struct vault_session *s;
	bool newer;
};

static int scan_album(const struct catalog_album *a, void *arg)
{
	struct form_scan *f = arg;
	char name[CATALOG_NAME_MAX + 1];
	size_t len;
	int form = 1;

	if (vault_open_text_form(f->s->keys, "album", a->pid, a->name_enc, a->name_enc_len, name,
				 CATALOG_NAME_MAX, &len, &form) == 0 && form == 2)
		f->newer = true;
	return 0;
}

static int scan_image(const struct catalog_image *im, void *arg)
{
	struct form_scan *f = arg;
	char name[CATALOG_NAME_MAX + 1];
	size_t len;
	int form = 1;

	if (vault_open_text_form(f->s->keys, "name", im->pid, im->name_enc, im->name_enc_len,
				 name, CATALOG_NAME_MAX, &len, &form) == 0 && form == 2)
		f->newer = true;
	return 0;
}

/* The first unlock of a vault from before schema 5: everything is resealed
 * in the padded forms, then every row gets its MAC and the vault its seal,
 * in one transaction. */
static int user_scope_adopt(struct vault_session *s, struct iverr *e)
{
	struct vault *v = s->v;
	struct form_scan f = { s, false };
	int ret;

	if ((ret = catalog_album_list(v->cat, s->uid, scan_album, &f, e)) < 0 ||
	    (ret = catalog_image_list_user(v->cat, s->uid, scan_image, &f, e)) < 0)
		return ret;
	if (f.newer && !v->lenient)
		return iverr_set(e, IV_EDAMAGE, "catalog of uid %u's vault: its seal is missing "
				 "although its rows were written by this imgvault: catalog.db was "
				 "edited; nothing of it is trusted: restore catalog.db from a "
				 "backup, or accept it as it is with imgvault fsck --repair", s->uid);
	if ((ret = catalog_begin(v->cat, e)) < 0)
		return ret;
	if ((ret = vault_reseal_metadata(s, s->keys, e)) < 0 ||
	    (ret = catalog_auth_seal(v->cat, s->uid, e)) < 0) {
		catalog_rollback(v->cat);
		return ret;
	}
	if ((ret = catalog_commit(v->cat, e)) < 0)
		return ret;
	vault_audit(v, s->uid, "catalog", "", "sealed", "schema 5: rows authenticated");
	return 0;
}

/* A desktop store's own rows are its owner's: the key is taken when the
 * seal was made with it, or, for a store not sealed yet, from its first
 * user. */
static int desktop_store_key(struct vault_session *s, struct iverr *e)
{
	struct vault *v = s->v;
	uint32_t *uids = NULL;
	size_t n = 0;
	bool sealed, fits;
	int ret;

	if (v->store_key_set)
		return 0;
	if ((ret = catalog_auth_sealed(v->cat, CATALOG_SCOPE_STORE, &sealed, e)) < 0)
		return ret;
	if (sealed) {
		if ((ret = catalog_auth_key_fits(v->cat, CATALOG_SCOPE_STORE, s->keys->store, &fits,
						 e)) < 0)
			return ret;
		if (!fits)
			return 0;   /* another user's store, or a seal that fails: not ours */
	} else {
		if ((ret = vault_user_uids(v, &uids, &n, e)) < 0)
			return ret;
		bool first = n > 0 && uids[0] == s->uid;
		free(uids);
		if (!first)
			return 0;
	}
	if ((ret = catalog_auth_key_set(v->cat, CATALOG_SCOPE_STORE, s->keys->store, e)) < 0)
		return ret;
	if ((ret = store_scope_open(v, e)) < 0) {
		catalog_auth_key_drop(v->cat, CATALOG_SCOPE_STORE);
		return ret;
	}
	v->store_key_set = true;
	s->owns_store_key = true;
	return 0;
}

int vault_auth_session_open(struct vault_session *s, struct iverr *e)
{
	struct vault *v = s->v;
	struct catalog_auth_report r;
	bool sealed;
	int ret;

	if ((ret = catalog_auth_key_set(v->cat, s->uid, s->keys->catalog, e)) < 0)
		return ret;
	s->auth_key_set = true;
	if (!v->system && (ret = desktop_store_key(s, e)) < 0)
		return ret;
	if ((ret = catalog_auth_sealed(v->cat, s->uid, &sealed, e)) < 0)
		return ret;
	if (!sealed)
		return user_scope_adopt(s, e);
	return vault_auth_check(v, s->uid, &r, v->lenient, e);
}

void vault_auth_session_close(struct vault_session *s)
{
	if (s->auth_key_set)
		catalog_auth_key_drop(s->v->cat, s->uid);
	if (s->owns_store_key) {
		catalog_auth_key_drop(s->v->cat, CATALOG_SCOPE_STORE);
		s->v->store_key_set = false;
	}
	s->auth_key_set = s->owns_store_key = false;
}

int vault_auth_rekey(struct vault_session *s, const struct user_keys *nk, struct iverr *e)
{
	struct vault *v = s->v;
	int ret;

	/* Inside the rotation's transaction: the rows are sealed anew under
	 * the new key (they were checked under the old one at unlock). */
	catalog_auth_key_drop(v->cat, s->uid);
	s->auth_key_set = false;
	if ((ret = catalog_auth_key_set(v->cat, s->uid, nk->catalog, e)) < 0)
		return ret;
	s->auth_key_set = true;
	if ((ret = catalog_auth_seal(v->cat, s->uid, e)) < 0)
		return ret;
	if (s->owns_store_key) {
		catalog_auth_key_drop(v->cat, CATALOG_SCOPE_STORE);
		if ((ret = catalog_auth_key_set(v->cat, CATALOG_SCOPE_STORE, nk->store, e)) < 0) {
			s->owns_store_key = false;
			v->store_key_set = false;
			return ret;
		}
		ret = catalog_auth_seal(v->cat, CATALOG_SCOPE_STORE, e);
	}
	return ret;
}

void vault_auth_rekey_undo(struct vault_session *s)
{
	struct vault *v = s->v;
	struct iverr ignored = { 0 };

	catalog_auth_key_drop(v->cat, s->uid);
	s->auth_key_set = catalog_auth_key_set(v->cat, s->uid, s->keys->catalog, &ignored) == 0;
	if (s->owns_store_key) {
		catalog_auth_key_drop(v->cat, CATALOG_SCOPE_STORE);
		if (catalog_auth_key_set(v->cat, CATALOG_SCOPE_STORE, s->keys->store, &ignored) < 0)
			s->owns_store_key = v->store_key_set = false;
	}
}

int vault_auth_user_new(struct vault *v, uint32_t uid, const struct user_keys *k,
			bool *store_key_taken, struct iverr *e)
{
	uint32_t *uids = NULL;
	size_t n = 0;
	bool sealed;
	int ret;

	*store_key_taken = false;
	/* A desktop store's first user owns its store-wide rows. */
	if (!v->system && !v->store_key_set) {
		if ((ret = catalog_auth_sealed(v->cat, CATALOG_SCOPE_STORE, &sealed, e)) < 0 ||
		    (ret = vault_user_uids(v, &uids, &n, e)) < 0)
			return ret;
		free(uids);
		if (!sealed && n == 0) {
			if ((ret = catalog_auth_key_set(v->cat, CATALOG_SCOPE_STORE, k->store, e)) < 0)
				return ret;
			if ((ret = catalog_auth_seal(v->cat, CATALOG_SCOPE_STORE, e)) < 0) {
				catalog_auth_key_drop(v->cat, CATALOG_SCOPE_STORE);
				return ret;
			}
			*store_key_taken = true;
		}
	}
	if ((ret = catalog_auth_key_set(v->cat, uid, k->catalog, e)) < 0)
		goto out_drop;
	/* A new vault starts sealed, with nothing in it. */
	if ((ret = catalog_auth_seal(v->cat, uid, e)) < 0) {
		catalog_auth_key_drop(v->cat, uid);
		goto out_drop;
	}
	return 0;
out_drop:
	if (*store_key_taken)
		catalog_auth_key_drop(v->cat, CATALOG_SCOPE_STORE);
	*store_key_taken = false;
	return ret;
}

void vault_auth_user_new_done(struct vault *v, uint32_t uid, bool store_key_taken)
{
	catalog_auth_key_drop(v->cat, uid);
	if (store_key_taken)
		catalog_auth_key_drop(v->cat, CATALOG_SCOPE_STORE);
}
