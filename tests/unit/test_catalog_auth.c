/* Unit tests of fs/catalog_auth: row MACs, each scope's seal, and what an
 * edit of catalog.db through another connection does to them. */
#define _GNU_SOURCE
#include <string.h>
#include <unistd.h>

#include <sodium.h>
#include <sqlite3.h>

#include "catalog.h"
#include "keys.h"
#include "tap.h"
#include "testutil.h"

static char dir[256], db_path[512];
static const uint8_t key_a[32] = { 1, 2, 3 }, key_store[32] = { 9, 9, 9 };

static int raw_exec(const char *sql)
{
	sqlite3 *db = NULL;
	int rc = sqlite3_open_v2(db_path, &db, SQLITE_OPEN_READWRITE, NULL);

	if (rc == SQLITE_OK)
		rc = sqlite3_exec(db, sql, NULL, NULL, NULL);
	if (rc != SQLITE_OK)
		diag("sqlite: %s", db ? sqlite3_errmsg(db) : "cannot open");
	sqlite3_close(db);
	return rc;
}

static struct catalog *open_keyed(void)
{
	struct catalog *c = NULL;
	struct iverr e = { 0 };

	if (catalog_open(db_path, false, &c, &e) < 0)
		BAIL_OUT("cannot open catalog: %s", e.msg);
	if (catalog_auth_key_set(c, 1000, key_a, &e) < 0 ||
	    catalog_auth_key_set(c, CATALOG_SCOPE_STORE, key_store, &e) < 0)
		BAIL_OUT("cannot set keys: %s", e.msg);
	return c;
}

static int64_t add_image(struct catalog *c, int64_t album, const char *name, uint8_t seed)
{
	struct catalog_image im = { 0 };
	struct catalog_version v = { 0 };
	struct iverr e = { 0 };

	im.uid = 1000;
	im.album_id = album;
	memset(im.pid, seed, sizeof(im.pid));
	crypto_generichash(im.name_idx, sizeof(im.name_idx), (const uint8_t *)name, strlen(name),
			   NULL, 0);
	memcpy(im.name_enc, name, strlen(name));
	im.name_enc_len = strlen(name);
	if (catalog_image_add(c, &im, &e) < 0)
		BAIL_OUT("image add: %s", e.msg);
	v.image_id = im.id;
	memset(v.blob.b, seed, sizeof(v.blob.b));
	v.size = 100 + seed;
	v.attrs_enc_len = 60;
	if (catalog_version_add(c, &v, &e) < 0)
		BAIL_OUT("version add: %s", e.msg);
	im.current_version = im.pristine_version = v.id;
	if (catalog_image_update(c, &im, &e) < 0)
		BAIL_OUT("image update: %s", e.msg);
	return im.id;
}

static enum catalog_auth_state verify(struct catalog *c, int64_t scope, uint64_t *nbad)
{
	struct catalog_auth_report r;
	struct iverr e = { 0 };

	if (catalog_auth_verify(c, scope, &r, &e) < 0)
		BAIL_OUT("verify: %s", e.msg);
	if (nbad)
		*nbad = r.nbad;
	return r.state;
}

static void test_fresh_store(int64_t *album, int64_t *x, int64_t *y)
{
	struct catalog *c = open_keyed();
	struct catalog_user u = { .uid = 1000, .created = 1 };
	struct catalog_album a = { .uid = 1000 };
	struct iverr e = { 0 };

	is_int(catalog_auth_seal(c, CATALOG_SCOPE_STORE, &e), 0, "the store scope is sealed empty");
	is_int(catalog_auth_seal(c, 1000, &e), 0, "a new vault is sealed empty");
	is_int(catalog_user_add(c, &u, &e), 0, "a user row");
	memset(a.pid, 0xaa, sizeof(a.pid));
	a.name_enc_len = 3;
	is_int(catalog_album_add(c, &a, &e), 0, "an album");
	*album = a.id;
	*x = add_image(c, a.id, "x.jpg", 1);
	*y = add_image(c, a.id, "y.jpg", 2);
	is_int(verify(c, 1000, NULL), CATALOG_AUTH_OK, "the vault verifies");
	is_int(verify(c, CATALOG_SCOPE_STORE, NULL), CATALOG_AUTH_OK, "the store verifies");
	catalog_close(c);
}

static void test_edits_detected(int64_t album, int64_t x, int64_t y)
{
	struct catalog *c;
	struct catalog_image im;
	struct iverr e = { 0 };
	uint64_t nbad;
	char sql[512];

	/* Swap the names of x and y. */
	snprintf(sql, sizeof(sql),
		 "CREATE TEMP TABLE t AS SELECT id, name_idx, name_enc FROM images;"
		 "UPDATE images SET name_idx = zeroblob(32) WHERE id = %lld;"
		 "UPDATE images SET name_idx = (SELECT name_idx FROM t WHERE id = %lld),"
		 " name_enc = (SELECT name_enc FROM t WHERE id = %lld) WHERE id = %lld;"
		 "UPDATE images SET name_idx = (SELECT name_idx FROM t WHERE id = %lld),"
		 " name_enc = (SELECT name_enc FROM t WHERE id = %lld) WHERE id = %lld;",
		 (long long)x, (long long)x, (long long)x, (long long)y, (long long)y, (long long)y,
		 (long long)x);
	is_int(raw_exec(sql), SQLITE_OK, "names swapped through another connection");
	c = open_keyed();
	is_int(catalog_image_get(c, x, &im, &e), -IV_EDAMAGE, "the image row fails when read");
	ok(strstr(e.msg, "fails authentication") != NULL, "and says so: %s", e.msg);
	is_int(verify(c, 1000, &nbad), CATALOG_AUTH_ROWS, "the seal explains it by the failing rows");
	is_int((int)nbad, 2, "both rows named");
	iverr_clear(&e);
	im.id = x;
	im.mtime = 5;
	is_int(catalog_image_update(c, &im, &e), -IV_EDAMAGE, "a failing row is not changed (not blessed)");
	is_int(catalog_auth_seal(c, 1000, &e), 0, "fsck --repair accepts it");
	is_int(verify(c, 1000, NULL), CATALOG_AUTH_OK, "and it verifies then");
	catalog_close(c);

	/* A version pointer moved to the other image's version. */
	snprintf(sql, sizeof(sql), "UPDATE images SET current_version = (SELECT current_version"
		 " FROM images WHERE id = %lld) WHERE id = %lld", (long long)y, (long long)x);
	is_int(raw_exec(sql), SQLITE_OK, "x's current version pointed at y's");
	c = open_keyed();
	iverr_clear(&e);
	is_int(catalog_image_get(c, x, &im, &e), -IV_EDAMAGE, "x fails");
	catalog_auth_seal(c, 1000, &e);
	catalog_close(c);

	/* A row deleted. */
	snprintf(sql, sizeof(sql), "DELETE FROM images WHERE id = %lld", (long long)y);
	is_int(raw_exec(sql), SQLITE_OK, "y deleted");
	c = open_keyed();
	is_int(verify(c, 1000, NULL), CATALOG_AUTH_CHANGED, "a deleted row changes the seal");
	catalog_auth_seal(c, 1000, &e);
	catalog_close(c);

	/* A row rolled back: its old content with its old MAC. */
	raw_exec("CREATE TABLE keep AS SELECT * FROM images");
	c = open_keyed();
	iverr_clear(&e);
	is_int(catalog_image_get(c, x, &im, &e), 0, "x reads");
	im.mtime = 12345;
	is_int(catalog_image_update(c, &im, &e), 0, "x changed legitimately");
	catalog_close(c);
	snprintf(sql, sizeof(sql), "UPDATE images SET mtime = (SELECT mtime FROM keep),"
		 " mac = (SELECT mac FROM keep) WHERE id = %lld; DROP TABLE keep", (long long)x);
	is_int(raw_exec(sql), SQLITE_OK, "x rolled back with its old MAC");
	c = open_keyed();
	iverr_clear(&e);
	is_int(catalog_image_get(c, x, &im, &e), 0, "the old row verifies by itself");
	is_int(verify(c, 1000, NULL), CATALOG_AUTH_CHANGED, "but the seal finds the rollback");
	catalog_auth_seal(c, 1000, &e);
	catalog_close(c);

	/* The seal itself. */
	is_int(raw_exec("UPDATE auth_state SET rows = rows + 1 WHERE scope = 1000"), SQLITE_OK,
	       "the seal's row count edited");
	c = open_keyed();
	is_int(verify(c, 1000, NULL), CATALOG_AUTH_FORGED, "a forged seal is found");
	iverr_clear(&e);
	is_int(catalog_image_get(c, x, &im, &e), 0, "rows still read");
	im.mtime = 7;
	is_int(catalog_image_update(c, &im, &e), -IV_EDAMAGE, "no change commits over a forged seal");
	catalog_auth_seal(c, 1000, &e);
	catalog_close(c);

	/* The store's rows. */
	is_int(raw_exec("UPDATE users SET web_read = 1"), SQLITE_OK, "web_read flipped");
	c = open_keyed();
	{
		struct catalog_user u;
		iverr_clear(&e);
		is_int(catalog_user_get(c, 1000, &u, &e), -IV_EDAMAGE, "the user row fails");
	}
	catalog_auth_seal(c, CATALOG_SCOPE_STORE, &e);
	catalog_close(c);
	(void)album;
}

static void test_locked_scope(int64_t x)
{
	struct catalog *c = NULL;
	struct catalog_image im;
	struct iverr e = { 0 };

	if (catalog_open(db_path, false, &c, &e) < 0)
		BAIL_OUT("open: %s", e.msg);
	is_int(catalog_image_get(c, x, &im, &e), 0, "without the key a row is read unverified");
	im.mtime = 99;
	is_int(catalog_image_update(c, &im, &e), -EACCES, "but a sealed vault is not changed without it");
	catalog_close(c);
}

/* A row rolled back by another connection while this one holds the store:
 * the next read finds the seal no longer matches (PRAGMA data_version). */
static void test_behind_our_back(int64_t x)
{
	struct catalog *c = open_keyed();
	struct catalog_image im;
	struct iverr e = { 0 };

	raw_exec("CREATE TABLE keep AS SELECT * FROM images");
	is_int(catalog_image_get(c, x, &im, &e), 0, "x reads");
	im.mtime = 424242;
	is_int(catalog_image_update(c, &im, &e), 0, "x changed by this process");
	is_int(catalog_image_get(c, x, &im, &e), 0, "and reads");
	raw_exec("UPDATE images SET mtime = (SELECT mtime FROM keep WHERE keep.id = images.id),"
		 " mac = (SELECT mac FROM keep WHERE keep.id = images.id); DROP TABLE keep");
	usleep(50 * 1000);   /* the catalog looks every few milliseconds at most */
	iverr_clear(&e);
	is_int(catalog_image_get(c, x, &im, &e), -IV_EDAMAGE,
	       "rolled back by another process while open: refused at the next read");
	ok(strstr(e.msg, "behind this process's back") != NULL, "and said so: %s", e.msg);
	iverr_clear(&e);
	im.mtime = 1;
	is_int(catalog_image_update(c, &im, &e), -IV_EDAMAGE, "and no change goes in");
	catalog_close(c);
	c = open_keyed();
	catalog_auth_seal(c, 1000, &e);
	catalog_close(c);
}

static void test_audit_head(void)
{
	struct catalog *c = open_keyed();
	struct catalog_audit a = { .seq = 1, .time = 1, .actor = 0, .subject = -1 };
	uint8_t hash[32];
	int64_t seq;
	bool checked;
	struct iverr e = { 0 };

	memset(a.hash, 7, 32);
	snprintf(a.action, sizeof(a.action), "init");
	is_int(catalog_audit_insert(c, &a, &e), 0, "an audit row");
	is_int(catalog_audit_seal(c, 1, a.hash, &e), 0, "its head sealed");
	is_int(catalog_audit_sealed_head(c, &seq, hash, &checked, &e), 0, "the head reads");
	ok(checked && seq == 1 && !memcmp(hash, a.hash, 32), "with the key it is checked");
	catalog_close(c);
	raw_exec("UPDATE auth_state SET rows = 0 WHERE scope = -2");
	c = open_keyed();
	is_int(catalog_audit_sealed_head(c, &seq, hash, &checked, &e), -IV_EDAMAGE,
	       "an edited head fails");
	catalog_close(c);
}

int main(void)
{
	int64_t album, x, y;
	struct catalog *c = NULL;
	struct iverr e = { 0 };

	if (keys_init() < 0)
		BAIL_OUT("keys_init failed");
	tu_mkdtemp(dir, sizeof(dir), "catauth");
	snprintf(db_path, sizeof(db_path), "%s/catalog.db", dir);
	if (catalog_open(db_path, true, &c, &e) < 0)
		BAIL_OUT("create: %s", e.msg);
	catalog_close(c);
	test_fresh_store(&album, &x, &y);
	test_edits_detected(album, x, y);
	test_locked_scope(x);
	test_behind_our_back(x);
	test_audit_head();
	tu_rm_rf(dir);
	return done_testing();
}
