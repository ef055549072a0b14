/* Share links in the catalog (schema 4): signing keys, partners, links. */
#include "catalog.h"
#include "catalog_i.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Columns after a row's own in the queries of catalog.c: its rowid, then
 * the authenticated select list. */
#define SIGNKEY_ROWID 6
#define PARTNER_ROWID 7
#define SHARE_ROWID 14

/* The rowid of the one row @sql (?1 = a blob key) selects: -ENOENT when
 * there is none. */
static int rowid_by_key(struct catalog *c, const char *sql, const void *key, int len,
			int64_t *rowid, struct iverr *e)
{
	sqlite3_stmt *st = auth_cached_stmt(c, sql, e);
	int rc, ret = 0;

	if (!st)
		return -EIO;
	sqlite3_bind_blob(st, 1, key, len, SQLITE_STATIC);
	rc = sqlite3_step(st);
	if (rc == SQLITE_ROW)
		*rowid = sqlite3_column_int64(st, 0);
	else
		ret = rc == SQLITE_DONE ? -ENOENT : db_fail(c, rc, "looking up a row", e);
	sqlite3_reset(st);
	return ret;
}

/* Runs @sql (?1 = rowid, ?2 = @val) as a change of share row @rowid. */
static int share_change(struct catalog *c, enum auth_op op, int64_t rowid, const char *sql,
			int64_t val, const char *what, struct iverr *e)
{
	sqlite3_stmt *st = auth_cached_stmt(c, sql, e);

	if (!st)
		return -EIO;
	sqlite3_bind_int64(st, 1, rowid);
	if (sqlite3_bind_parameter_count(st) >= 2)
		sqlite3_bind_int64(st, 2, val);
	return auth_run(c, op, A_SHARES, &rowid, st, what, NULL, 0, 0, e);
}

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
	int64_t rowid;
	return auth_run(c, AUTH_OP_INSERT, A_SIGNKEYS, &rowid, st, "adding a signing key", NULL,
			0, 0, e);
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
	ret = auth_check_cols(c, A_SIGNKEYS, st, SIGNKEY_ROWID + 1,
			      sqlite3_column_int64(st, SIGNKEY_ROWID), e);
	sqlite3_reset(st);
	return ret;
}

int catalog_signkey_list(struct catalog *c, catalog_signkey_fn fn, void *arg, struct iverr *e)
{
	sqlite3_stmt *st = stmt_get(c, S_SIGNKEY_LIST);
	int rc, ret = 0;

	while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
		struct catalog_signkey k;
		signkey_from_row(st, &k);
		if (auth_list_ok(c, A_SIGNKEYS, st, SIGNKEY_ROWID + 1,
				 sqlite3_column_int64(st, SIGNKEY_ROWID)) &&
		    (ret = fn(&k, arg)) != 0)
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
	sqlite3_stmt *st;
	int64_t rowid;
	int ret = rowid_by_key(c, "SELECT rowid FROM signing_keys WHERE kid = ?1 AND retired = 0",
			       kid, 8, &rowid, e);

	if (ret < 0)
		return ret;
	st = stmt_get(c, S_SIGNKEY_RETIRE);
	sqlite3_bind_blob(st, 1, kid, 8, SQLITE_STATIC);
	sqlite3_bind_int64(st, 2, when);
	return auth_run(c, AUTH_OP_UPDATE, A_SIGNKEYS, &rowid, st, "retiring a signing key",
			NULL, 0, 0, e);
}

int catalog_signkey_reseal(struct catalog *c, const uint8_t kid[8],
			   const uint8_t enc[CATALOG_SIGNKEY_ENC_LEN], struct iverr *e)
{
	sqlite3_stmt *st;
	int64_t rowid;
	int ret = rowid_by_key(c, "SELECT rowid FROM signing_keys WHERE kid = ?1", kid, 8, &rowid,
			       e);

	if (ret < 0)
		return ret;
	st = stmt_get(c, S_SIGNKEY_RESEAL);
	sqlite3_bind_blob(st, 1, kid, 8, SQLITE_STATIC);
	sqlite3_bind_blob(st, 2, enc, CATALOG_SIGNKEY_ENC_LEN, SQLITE_STATIC);
	return auth_run(c, AUTH_OP_UPDATE, A_SIGNKEYS, &rowid, st, "resealing a signing key",
			NULL, 0, 0, e);
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
	if ((ret = auth_run(c, AUTH_OP_INSERT, A_PARTNERS, &p->id, st, "adding a partner", NULL,
			    0, 0, e)) < 0)
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
	ret = auth_check_cols(c, A_PARTNERS, st, PARTNER_ROWID + 1, p->id, e);
	sqlite3_reset(st);
	return ret;
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
		if (auth_list_ok(c, A_PARTNERS, st, PARTNER_ROWID + 1, p.id) &&
		    (ret = fn(&p, arg)) != 0)
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
	int64_t rowid = p->id;
	return auth_run(c, AUTH_OP_UPDATE, A_PARTNERS, &rowid, st, "updating a partner", NULL, 0,
			0, e);
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
	int64_t rowid;
	return auth_run(c, AUTH_OP_INSERT, A_SHARES, &rowid, st, "recording a link", NULL, 0, 0,
			e);
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
	ret = auth_check_cols(c, A_SHARES, st, SHARE_ROWID + 1,
			      sqlite3_column_int64(st, SHARE_ROWID), e);
	sqlite3_reset(st);
	return ret;
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
		if (auth_list_ok(c, A_SHARES, st, SHARE_ROWID + 1,
				 sqlite3_column_int64(st, SHARE_ROWID)) &&
		    (ret = fn(&s, arg)) != 0)
			break;
	}
	sqlite3_reset(st);
	if (ret == 0 && rc != SQLITE_DONE && rc != SQLITE_ROW)
		ret = db_fail(c, rc, "listing links", e);
	return ret;
}

/* Revokes each live link @sel selects (bound by @bind), one change each. */
static int revoke_rows(struct catalog *c, sqlite3_stmt *sel, int64_t when, size_t *n,
		       struct iverr *e)
{
	int64_t *ids = NULL;
	size_t cnt = 0, cap = 0;
	int rc, ret = 0;

	*n = 0;
	while ((rc = sqlite3_step(sel)) == SQLITE_ROW) {
		if (cnt == cap) {
			int64_t *m = realloc(ids, (cap = cap ? 2 * cap : 16) * sizeof(*m));
			if (!m) {
				ret = iverr_set(e, ENOMEM, "out of memory");
				goto out;
			}
			ids = m;
		}
		ids[cnt++] = sqlite3_column_int64(sel, 0);
	}
	if (rc != SQLITE_DONE) {
		ret = db_fail(c, rc, "revoking links", e);
		goto out;
	}
	if ((ret = catalog_begin(c, e)) < 0)
		goto out;
	for (size_t i = 0; i < cnt && ret >= 0; i++)
		ret = share_change(c, AUTH_OP_UPDATE, ids[i],
				   "UPDATE shares SET revoked = ?2 WHERE rowid = ?1", when,
				   "revoking links", e);
	if (ret < 0)
		catalog_rollback(c);
	else if ((ret = catalog_commit(c, e)) == 0)
		*n = cnt;
out:
	sqlite3_finalize(sel);
	free(ids);
	return ret;
}

static sqlite3_stmt *revoke_select(struct catalog *c, const char *where, struct iverr *e)
{
	char sql[256];
	sqlite3_stmt *st;
	int rc;

	snprintf(sql, sizeof(sql), "SELECT rowid FROM shares WHERE revoked = 0 AND %s", where);
	rc = sqlite3_prepare_v2(c->db, sql, -1, &st, NULL);
	if (rc != SQLITE_OK) {
		db_fail(c, rc, "revoking links", e);
		return NULL;
	}
	return st;
}

int catalog_share_revoke_id(struct catalog *c, const uint8_t tid[16], int64_t when,
			    size_t *n, struct iverr *e)
{
	sqlite3_stmt *st = revoke_select(c, "tid = ?1", e);

	*n = 0;
	if (!st)
		return -EIO;
	sqlite3_bind_blob(st, 1, tid, 16, SQLITE_TRANSIENT);
	return revoke_rows(c, st, when, n, e);
}

int catalog_share_revoke_image(struct catalog *c, int64_t image_id, int64_t when, size_t *n,
			       struct iverr *e)
{
	sqlite3_stmt *st = revoke_select(c, "image_id = ?1", e);

	*n = 0;
	if (!st)
		return -EIO;
	sqlite3_bind_int64(st, 1, image_id);
	return revoke_rows(c, st, when, n, e);
}

int catalog_share_revoke_partner(struct catalog *c, int64_t partner_id, int64_t uid,
				 int64_t when, size_t *n, struct iverr *e)
{
	sqlite3_stmt *st = revoke_select(c, "partner_id = ?1 AND (?2 < 0 OR uid = ?2)", e);

	*n = 0;
	if (!st)
		return -EIO;
	sqlite3_bind_int64(st, 1, partner_id);
	sqlite3_bind_int64(st, 2, uid);
	return revoke_rows(c, st, when, n, e);
}

int catalog_share_use(struct catalog *c, const uint8_t tid[16], uint32_t uses, uint64_t bytes,
		      struct iverr *e)
{
	sqlite3_stmt *st;
	int64_t rowid;
	int ret = rowid_by_key(c, "SELECT rowid FROM shares WHERE tid = ?1", tid, 16, &rowid, e);

	if (ret < 0)
		return ret;
	st = stmt_get(c, S_SHARE_USE);
	sqlite3_bind_blob(st, 1, tid, 16, SQLITE_STATIC);
	sqlite3_bind_int64(st, 2, uses);
	sqlite3_bind_int64(st, 3, (int64_t)bytes);
	return auth_run(c, AUTH_OP_UPDATE, A_SHARES, &rowid, st, "counting a use of a link", NULL,
			0, 0, e);
}

struct purge_ctx {
	struct iverr *e;
	int unused;
};

/* Forgets one expired link; a link of a vault whose key is not here waits
 * for a purge that has it. */
static int purge_one(struct catalog *c, int64_t rowid, void *arg)
{
	struct purge_ctx *p = arg;
	struct iverr err = { 0 };
	int ret = share_change(c, AUTH_OP_DELETE, rowid, "DELETE FROM shares WHERE rowid = ?1", 0,
			       "forgetting expired links", &err);

	if (ret == -EACCES)
		return 0;
	if (ret < 0)
		return iverr_set(p->e, -ret, "%s", err.msg);
	return 0;
}

int catalog_share_purge(struct catalog *c, int64_t before, struct iverr *e)
{
	struct purge_ctx p = { e, 0 };
	int ret;

	if ((ret = catalog_begin(c, e)) < 0)
		return ret;
	ret = auth_each_rowid(c, "SELECT rowid FROM shares WHERE expires < ?1", before,
			      purge_one, &p, e);
	if (ret < 0) {
		catalog_rollback(c);
		return ret;
	}
	return catalog_commit(c, e);
}
