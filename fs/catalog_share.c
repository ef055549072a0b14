/* Share links in the catalog (schema 4): signing keys, partners, links. */
#include "catalog.h"
#include "catalog_i.h"

#include <string.h>

/* ---- signing keys ---- */

static void signkey_from_row(sqlite3_stmt *st, struct catalog_signkey *k)
{
	memset(k, 0, sizeof(*k));
	copy_blob(st, 0, k->kid, sizeof(k->kid), NULL);
	k->owner = sqlite3_column_int64(st, 1);
	copy_blob(st, 2, k->pk, sizeof(k->pk), NULL);
	copy_blob(st, 3, k->secret_enc, sizeof(k->secret_enc), NULL);
	k->created = sqlite3_column_int64(st, 4);
	k->retired = sqlite3_column_int64(st, 5);
}

int catalog_signkey_add(struct catalog *c, const struct catalog_signkey *k, struct iverr *e)
{
	sqlite3_stmt *st = stmt_get(c, S_SIGNKEY_ADD);

	sqlite3_bind_blob(st, 1, k->kid, sizeof(k->kid), SQLITE_STATIC);
	sqlite3_bind_int64(st, 2, k->owner);
	sqlite3_bind_blob(st, 3, k->pk, sizeof(k->pk), SQLITE_STATIC);
	sqlite3_bind_blob(st, 4, k->secret_enc, sizeof(k->secret_enc), SQLITE_STATIC);
	sqlite3_bind_int64(st, 5, k->created);
	sqlite3_bind_int64(st, 6, k->retired);
	return stmt_exec(c, st, "adding a signing key", e);
}

int catalog_signkey_get(struct catalog *c, const uint8_t kid[8], struct catalog_signkey *k,
			struct iverr *e)
{
	sqlite3_stmt *st = stmt_get(c, S_SIGNKEY_GET);
	int ret;

	sqlite3_bind_blob(st, 1, kid, 8, SQLITE_STATIC);
	if ((ret = stmt_row(c, st, "reading a signing key", e)) < 0)
		return ret;
	signkey_from_row(st, k);
	sqlite3_reset(st);
	return 0;
}

int catalog_signkey_list(struct catalog *c, catalog_signkey_fn fn, void *arg, struct iverr *e)
{
	sqlite3_stmt *st = stmt_get(c, S_SIGNKEY_LIST);
	int rc, ret = 0;

	while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
		struct catalog_signkey k;
		signkey_from_row(st, &k);
		if ((ret = fn(&k, arg)) != 0)
			break;
	}
	sqlite3_reset(st);
	if (ret == 0 && rc != SQLITE_DONE && rc != SQLITE_ROW)
		ret = db_fail(c, rc, "listing signing keys", e);
	return ret;
}

int catalog_signkey_retire(struct catalog *c, const uint8_t kid[8], int64_t when,
			   struct iverr *e)
{
	sqlite3_stmt *st = stmt_get(c, S_SIGNKEY_RETIRE);
	int ret;

	sqlite3_bind_blob(st, 1, kid, 8, SQLITE_STATIC);
	sqlite3_bind_int64(st, 2, when);
	if ((ret = stmt_exec(c, st, "retiring a signing key", e)) < 0)
		return ret;
	return catalog_changes(c) ? 0 : -ENOENT;
}

int catalog_signkey_reseal(struct catalog *c, const uint8_t kid[8],
			   const uint8_t enc[CATALOG_SIGNKEY_ENC_LEN], struct iverr *e)
{
	sqlite3_stmt *st = stmt_get(c, S_SIGNKEY_RESEAL);

	sqlite3_bind_blob(st, 1, kid, 8, SQLITE_STATIC);
	sqlite3_bind_blob(st, 2, enc, CATALOG_SIGNKEY_ENC_LEN, SQLITE_STATIC);
	return stmt_exec(c, st, "resealing a signing key", e);
}

/* ---- partners ---- */

static void partner_from_row(sqlite3_stmt *st, struct catalog_partner *p)
{
	memset(p, 0, sizeof(*p));
	p->id = sqlite3_column_int64(st, 0);
	copy_text(st, 1, p->name, sizeof(p->name));
	copy_text(st, 2, p->cidrs, sizeof(p->cidrs));
	p->ttl = sqlite3_column_int64(st, 3);
	p->max_ttl = sqlite3_column_int64(st, 4);
	p->disabled = sqlite3_column_int64(st, 5) != 0;
	p->created = sqlite3_column_int64(st, 6);
}

int catalog_partner_add(struct catalog *c, struct catalog_partner *p, struct iverr *e)
{
	sqlite3_stmt *st = stmt_get(c, S_PARTNER_ADD);
	int ret;

	sqlite3_bind_text(st, 1, p->name, -1, SQLITE_STATIC);
	sqlite3_bind_text(st, 2, p->cidrs, -1, SQLITE_STATIC);
	sqlite3_bind_int64(st, 3, p->ttl);
	sqlite3_bind_int64(st, 4, p->max_ttl);
	sqlite3_bind_int64(st, 5, p->disabled);
	sqlite3_bind_int64(st, 6, p->created);
	if ((ret = stmt_exec(c, st, "adding a partner", e)) < 0)
		return ret;
	return catalog_partner_find(c, p->name, p, e);
}

static int partner_query(struct catalog *c, sqlite3_stmt *st, struct catalog_partner *p,
			 struct iverr *e)
{
	int ret = stmt_row(c, st, "reading a partner", e);

	if (ret < 0)
		return ret;
	partner_from_row(st, p);
	sqlite3_reset(st);
	return 0;
}

int catalog_partner_get(struct catalog *c, int64_t id, struct catalog_partner *p,
			struct iverr *e)
{
	sqlite3_stmt *st = stmt_get(c, S_PARTNER_GET);

	sqlite3_bind_int64(st, 1, id);
	return partner_query(c, st, p, e);
}

int catalog_partner_find(struct catalog *c, const char *name, struct catalog_partner *p,
			 struct iverr *e)
{
	sqlite3_stmt *st = stmt_get(c, S_PARTNER_FIND);

	sqlite3_bind_text(st, 1, name, -1, SQLITE_STATIC);
	return partner_query(c, st, p, e);
}

int catalog_partner_list(struct catalog *c, catalog_partner_fn fn, void *arg, struct iverr *e)
{
	sqlite3_stmt *st = stmt_get(c, S_PARTNER_LIST);
	int rc, ret = 0;

	while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
		struct catalog_partner p;
		partner_from_row(st, &p);
		if ((ret = fn(&p, arg)) != 0)
			break;
	}
	sqlite3_reset(st);
	if (ret == 0 && rc != SQLITE_DONE && rc != SQLITE_ROW)
		ret = db_fail(c, rc, "listing partners", e);
	return ret;
}

int catalog_partner_update(struct catalog *c, const struct catalog_partner *p, struct iverr *e)
{
	sqlite3_stmt *st = stmt_get(c, S_PARTNER_UPDATE);

	sqlite3_bind_int64(st, 1, p->id);
	sqlite3_bind_text(st, 2, p->cidrs, -1, SQLITE_STATIC);
	sqlite3_bind_int64(st, 3, p->ttl);
	sqlite3_bind_int64(st, 4, p->max_ttl);
	sqlite3_bind_int64(st, 5, p->disabled);
	return stmt_exec(c, st, "updating a partner", e);
}

/* ---- links ---- */

static void share_from_row(sqlite3_stmt *st, struct catalog_share *s)
{
	memset(s, 0, sizeof(*s));
	copy_blob(st, 0, s->tid, sizeof(s->tid), NULL);
	copy_blob(st, 1, s->kid, sizeof(s->kid), NULL);
	s->uid = (uint32_t)sqlite3_column_int64(st, 2);
	s->image_id = sqlite3_column_int64(st, 3);
	s->variant = sqlite3_column_int(st, 4);
	s->disposition = sqlite3_column_int(st, 5);
	s->not_before = sqlite3_column_int64(st, 6);
	s->expires = sqlite3_column_int64(st, 7);
	s->partner_id = sqlite3_column_int64(st, 8);
	s->uses_max = (uint32_t)sqlite3_column_int64(st, 9);
	s->uses = (uint32_t)sqlite3_column_int64(st, 10);
	s->created = sqlite3_column_int64(st, 11);
	s->revoked = sqlite3_column_int64(st, 12);
	s->served = (uint64_t)sqlite3_column_int64(st, 13);
}

int catalog_share_add(struct catalog *c, const struct catalog_share *s, struct iverr *e)
{
	sqlite3_stmt *st = stmt_get(c, S_SHARE_ADD);

	sqlite3_bind_blob(st, 1, s->tid, sizeof(s->tid), SQLITE_STATIC);
	sqlite3_bind_blob(st, 2, s->kid, sizeof(s->kid), SQLITE_STATIC);
	sqlite3_bind_int64(st, 3, s->uid);
	sqlite3_bind_int64(st, 4, s->image_id);
	sqlite3_bind_int(st, 5, s->variant);
	sqlite3_bind_int(st, 6, s->disposition);
	sqlite3_bind_int64(st, 7, s->not_before);
	sqlite3_bind_int64(st, 8, s->expires);
	sqlite3_bind_int64(st, 9, s->partner_id);
	sqlite3_bind_int64(st, 10, s->uses_max);
	sqlite3_bind_int64(st, 11, s->uses);
	sqlite3_bind_int64(st, 12, s->created);
	sqlite3_bind_int64(st, 13, s->revoked);
	sqlite3_bind_int64(st, 14, (int64_t)s->served);
	return stmt_exec(c, st, "recording a link", e);
}

int catalog_share_get(struct catalog *c, const uint8_t tid[16], struct catalog_share *s,
		      struct iverr *e)
{
	sqlite3_stmt *st = stmt_get(c, S_SHARE_GET);
	int ret;

	sqlite3_bind_blob(st, 1, tid, 16, SQLITE_STATIC);
	if ((ret = stmt_row(c, st, "reading a link", e)) < 0)
		return ret;
	share_from_row(st, s);
	sqlite3_reset(st);
	return 0;
}

int catalog_share_list(struct catalog *c, int64_t uid, int64_t image_id, int64_t partner_id,
		       int64_t now, catalog_share_fn fn, void *arg, struct iverr *e)
{
	sqlite3_stmt *st = stmt_get(c, S_SHARE_LIST);
	int rc, ret = 0;

	sqlite3_bind_int64(st, 1, uid);
	sqlite3_bind_int64(st, 2, image_id);
	sqlite3_bind_int64(st, 3, partner_id);
	sqlite3_bind_int64(st, 4, now);
	while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
		struct catalog_share s;
		share_from_row(st, &s);
		if ((ret = fn(&s, arg)) != 0)
			break;
	}
	sqlite3_reset(st);
	if (ret == 0 && rc != SQLITE_DONE && rc != SQLITE_ROW)
		ret = db_fail(c, rc, "listing links", e);
	return ret;
}

static int revoke_run(struct catalog *c, sqlite3_stmt *st, size_t *n, struct iverr *e)
{
	int ret = stmt_exec(c, st, "revoking links", e);

	*n = ret < 0 ? 0 : (size_t)catalog_changes(c);
	return ret;
}

int catalog_share_revoke_id(struct catalog *c, const uint8_t tid[16], int64_t when,
			    size_t *n, struct iverr *e)
{
	sqlite3_stmt *st = stmt_get(c, S_SHARE_REVOKE_ID);

	sqlite3_bind_blob(st, 1, tid, 16, SQLITE_STATIC);
	sqlite3_bind_int64(st, 2, when);
	return revoke_run(c, st, n, e);
}

int catalog_share_revoke_image(struct catalog *c, int64_t image_id, int64_t when, size_t *n,
			       struct iverr *e)
{
	sqlite3_stmt *st = stmt_get(c, S_SHARE_REVOKE_IMAGE);

	sqlite3_bind_int64(st, 1, image_id);
	sqlite3_bind_int64(st, 2, when);
	return revoke_run(c, st, n, e);
}

int catalog_share_revoke_partner(struct catalog *c, int64_t partner_id, int64_t uid,
				 int64_t when, size_t *n, struct iverr *e)
{
	sqlite3_stmt *st = stmt_get(c, S_SHARE_REVOKE_PARTNER);

	sqlite3_bind_int64(st, 1, partner_id);
	sqlite3_bind_int64(st, 2, when);
	sqlite3_bind_int64(st, 3, uid);
	return revoke_run(c, st, n, e);
}

int catalog_share_use(struct catalog *c, const uint8_t tid[16], uint32_t uses, uint64_t bytes,
		      struct iverr *e)
{
	sqlite3_stmt *st = stmt_get(c, S_SHARE_USE);

	sqlite3_bind_blob(st, 1, tid, 16, SQLITE_STATIC);
	sqlite3_bind_int64(st, 2, uses);
	sqlite3_bind_int64(st, 3, (int64_t)bytes);
	return stmt_exec(c, st, "counting a use of a link", e);
}

int catalog_share_purge(struct catalog *c, int64_t before, struct iverr *e)
{
	sqlite3_stmt *st = stmt_get(c, S_SHARE_PURGE);

	sqlite3_bind_int64(st, 1, before);
	return stmt_exec(c, st, "forgetting expired links", e);
}
