/* Unit tests of fs/catalog: the sqlite catalog's rows, transactions and versions. */
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

/* Runs SQL on the catalog file through a separate sqlite connection. */
static int raw_exec(const char *path, const char *sql)
{
	sqlite3 *db = NULL;
	int rc = sqlite3_open_v2(path, &db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE, NULL);

	if (rc == SQLITE_OK)
		rc = sqlite3_exec(db, sql, NULL, NULL, NULL);
	if (rc != SQLITE_OK)
		diag("sqlite: %s", db ? sqlite3_errmsg(db) : "cannot open");
	sqlite3_close(db);
	return rc;
}

/* One integer from a query through a separate connection; INT64_MIN on failure. */
static int64_t raw_int(const char *path, const char *sql)
{
	sqlite3 *db = NULL;
	sqlite3_stmt *st = NULL;
	int64_t v = INT64_MIN;

	if (sqlite3_open_v2(path, &db, SQLITE_OPEN_READONLY, NULL) == SQLITE_OK &&
	    sqlite3_prepare_v2(db, sql, -1, &st, NULL) == SQLITE_OK &&
	    sqlite3_step(st) == SQLITE_ROW)
		v = sqlite3_column_int64(st, 0);
	sqlite3_finalize(st);
	sqlite3_close(db);
	return v;
}

static struct catalog *open_catalog(const char *path, bool create)
{
	struct catalog *c = NULL;
	struct iverr e = { 0 };

	if (catalog_open(path, create, &c, &e) < 0)
		BAIL_OUT("cannot open catalog %s: %s", path, e.msg);
	return c;
}

static void fill(void *p, size_t n, uint8_t seed)
{
	uint8_t *b = p;

	for (size_t i = 0; i < n; i++)
		b[i] = (uint8_t)(seed + i * 7);
}

static struct catalog_user make_user(uint32_t uid)
{
	struct catalog_user u;

	memset(&u, 0, sizeof(u));
	u.uid = uid;
	u.created = 1700000000 + uid;
	u.quota = 0;
	return u;
}

/* ---- open, versions, damage -------------------------------------------- */

static void test_open(void)
{
	struct catalog *c = NULL;
	struct iverr e = { 0 };
	char path[600];
	int ret;

	snprintf(path, sizeof(path), "%s/missing.db", dir);
	ret = catalog_open(path, false, &c, &e);
	ok(ret < 0 && c == NULL, "opening a missing catalog without create fails (%d)", ret);
	ok(e.msg[0] != '\0', "with a message: %s", e.msg);
	ok(access(path, F_OK) < 0, "and does not create the file");

	iverr_clear(&e);
	ret = catalog_open(db_path, true, &c, &e);
	is_int(ret, 0, "catalog_open creates a catalog");
	if (ret < 0)
		BAIL_OUT("%s", e.msg);
	is_int(catalog_check_integrity(c, &e), 0, "a new catalog passes the integrity check");
	catalog_close(c);
	catalog_close(NULL);

	is_int(raw_int(db_path, "PRAGMA user_version"), CATALOG_SCHEMA_VERSION,
	       "the schema version is PRAGMA user_version = CATALOG_SCHEMA_VERSION");
	is_int(raw_int(db_path, "SELECT count(*) FROM sqlite_master WHERE type = 'table' AND "
		       "name IN ('meta','users','key_slots','albums','images','versions','audit')"),
	       7, "all tables exist");
	{
		sqlite3 *db = NULL;
		sqlite3_stmt *st = NULL;
		const char *mode = NULL;
		char buf[16] = "";
		if (sqlite3_open_v2(db_path, &db, SQLITE_OPEN_READONLY, NULL) == SQLITE_OK &&
		    sqlite3_prepare_v2(db, "PRAGMA journal_mode", -1, &st, NULL) == SQLITE_OK &&
		    sqlite3_step(st) == SQLITE_ROW && (mode = (const char *)sqlite3_column_text(st, 0)))
			snprintf(buf, sizeof(buf), "%s", mode);
		sqlite3_finalize(st);
		sqlite3_close(db);
		is_str(buf, "wal", "the catalog is in WAL mode");
	}

	ret = catalog_open(db_path, false, &c, &e);
	is_int(ret, 0, "an existing catalog reopens without create");
	catalog_close(c);
	is_int(raw_int(db_path, "PRAGMA user_version"), CATALOG_SCHEMA_VERSION,
	       "reopening does not change the schema version");
}

static void test_newer_and_damaged(void)
{
	struct catalog *c = NULL;
	struct iverr e = { 0 };
	char path[600], sql[64];
	uint8_t junk[8192];
	int ret;

	/* A catalog written by a newer imgvault. */
	snprintf(path, sizeof(path), "%s/newer.db", dir);
	snprintf(sql, sizeof(sql), "PRAGMA user_version = %d", CATALOG_SCHEMA_VERSION + 1);
	is_int(raw_exec(path, "CREATE TABLE future(x); ") == SQLITE_OK &&
	       raw_exec(path, sql) == SQLITE_OK, 1, "made a database of schema version %d",
	       CATALOG_SCHEMA_VERSION + 1);
	ret = catalog_open(path, false, &c, &e);
	is_int(ret, -IV_EVERSION, "a newer schema is refused with -IV_EVERSION");
	ok(c == NULL, "and no catalog");
	ok(strstr(e.msg, "upgrade") != NULL, "the message says to upgrade: %s", e.msg);
	ret = catalog_open(path, true, &c, NULL);
	is_int(ret, -IV_EVERSION, "also with create");
	is_int(raw_int(path, "PRAGMA user_version"), CATALOG_SCHEMA_VERSION + 1,
	       "the newer catalog was left alone");
	is_int(raw_int(path, "SELECT count(*) FROM sqlite_master WHERE name = 'users'"), 0,
	       "no tables were added to it");

	/* Our own catalog, bumped past what we read. */
	snprintf(sql, sizeof(sql), "PRAGMA user_version = %d", CATALOG_SCHEMA_VERSION + 5);
	snprintf(path, sizeof(path), "%s/bumped.db", dir);
	c = open_catalog(path, true);
	catalog_close(c);
	c = NULL;
	is_int(raw_exec(path, sql), SQLITE_OK, "bumped a real catalog's user_version");
	iverr_clear(&e);
	is_int(catalog_open(path, false, &c, &e), -IV_EVERSION,
	       "our own catalog with a larger user_version is refused");

	/* Garbage. */
	snprintf(path, sizeof(path), "%s/garbage.db", dir);
	randombytes_buf(junk, sizeof(junk));
	ok(tu_write_file(path, junk, sizeof(junk), 0600) == 0, "wrote 8 KiB of random bytes");
	iverr_clear(&e);
	ret = catalog_open(path, false, &c, &e);
	is_int(ret, -IV_EDAMAGE, "a file of garbage bytes gives -IV_EDAMAGE");
	ok(c == NULL, "and no catalog");
	ok(strstr(e.msg, path) != NULL, "the message names the file: %s", e.msg);
	ret = catalog_open(path, true, &c, NULL);
	is_int(ret, -IV_EDAMAGE, "also with create");
	{
		size_t n = 0;
		uint8_t *back = tu_read_file(path, &n);
		ok(back && n == sizeof(junk) && !memcmp(back, junk, n),
		   "the garbage file was not overwritten");
		free(back);
	}

	memset(junk, 'x', sizeof(junk));
	memcpy(junk, "this is not a database\n", 23);
	ok(tu_write_file(path, junk, 600, 0600) == 0, "wrote 600 bytes of text");
	ret = catalog_open(path, false, &c, NULL);
	is_int(ret, -IV_EDAMAGE, "a text file gives -IV_EDAMAGE");
}

/* ---- users and slots ---------------------------------------------------- */

struct user_list { int n; uint32_t uids[8]; int stop_after; };

static int user_cb(const struct catalog_user *u, void *arg)
{
	struct user_list *l = arg;

	if (l->n < 8)
		l->uids[l->n] = u->uid;
	l->n++;
	return l->stop_after && l->n >= l->stop_after ? 42 : 0;
}

static void test_users(struct catalog *c)
{
	struct catalog_user u, g;
	struct user_list l = { 0 };
	struct iverr e = { 0 };
	int ret;

	u = make_user(1000);
	u.web_read = true;
	u.quota = 5ull << 40;
	u.key_epoch = 3;
	u.rekey = CATALOG_REKEY_REWRAP;
	u.prev_uk_len = sizeof(u.prev_uk);
	fill(u.prev_uk, sizeof(u.prev_uk), 9);
	is_int(catalog_user_add(c, &u, &e), 0, "user_add 1000");
	memset(&g, 0xff, sizeof(g));
	is_int(catalog_user_get(c, 1000, &g, &e), 0, "user_get 1000");
	is_int(g.uid, 1000, "uid");
	is_int(g.created, 1700001000, "created");
	ok(g.web_read, "web_read");
	is_int(g.quota, 5ull << 40, "quota");
	is_int(g.key_epoch, 3, "key_epoch");
	is_int(g.rekey, CATALOG_REKEY_REWRAP, "rekey");
	is_int(g.prev_uk_len, sizeof(u.prev_uk), "prev_uk length");
	is_mem(g.prev_uk, u.prev_uk, sizeof(u.prev_uk), "prev_uk bytes");

	ret = catalog_user_add(c, &u, &e);
	is_int(ret, -EEXIST, "adding uid 1000 again gives -EEXIST");

	u = make_user(4294967294u);
	is_int(catalog_user_add(c, &u, &e), 0, "user_add with a uid near 2^32");
	is_int(catalog_user_get(c, 4294967294u, &g, &e), 0, "user_get it");
	is_int(g.uid, 4294967294u, "the large uid survives");
	ok(!g.web_read && g.quota == 0 && g.prev_uk_len == 0 && g.rekey == CATALOG_REKEY_NONE,
	   "defaults: no web read, no quota, no rekey, no prev_uk");
	u = make_user(1001);
	is_int(catalog_user_add(c, &u, &e), 0, "user_add 1001");

	is_int(catalog_user_get(c, 999, &g, &e), -ENOENT, "user_get of a missing uid gives -ENOENT");

	/* Update. */
	is_int(catalog_user_get(c, 1000, &u, &e), 0, "user_get 1000 again");
	u.web_read = false;
	u.quota = 123;
	u.key_epoch = 4;
	u.rekey = CATALOG_REKEY_NONE;
	u.prev_uk_len = 0;
	u.created = 1;    /* not updatable */
	is_int(catalog_user_update(c, &u, &e), 0, "user_update 1000");
	is_int(catalog_user_get(c, 1000, &g, &e), 0, "user_get after update");
	ok(!g.web_read && g.quota == 123 && g.key_epoch == 4 && g.rekey == CATALOG_REKEY_NONE,
	   "web_read, quota, key_epoch and rekey are updated");
	is_int(g.prev_uk_len, 0, "prev_uk is cleared");
	is_int(g.created, 1700001000, "created is not changed by an update");
	u.uid = 999;
	ret = catalog_user_update(c, &u, &e);
	ok(ret == 0 || ret == -ENOENT, "updating a missing user changes nothing (%d)", ret);
	is_int(catalog_user_get(c, 999, &g, &e), -ENOENT, "and does not create it");

	/* List. */
	is_int(catalog_user_list(c, user_cb, &l, &e), 0, "user_list");
	is_int(l.n, 3, "lists 3 users");
	ok(l.uids[0] == 1000 && l.uids[1] == 1001 && l.uids[2] == 4294967294u,
	   "in uid order (%u, %u, %u)", l.uids[0], l.uids[1], l.uids[2]);
	memset(&l, 0, sizeof(l));
	l.stop_after = 2;
	is_int(catalog_user_list(c, user_cb, &l, &e), 42,
	       "a callback's non-zero return stops the list and is returned");
	is_int(l.n, 2, "after two users");

	/* Delete. */
	is_int(catalog_user_delete(c, 4294967294u, &e), 0, "user_delete");
	is_int(catalog_user_get(c, 4294967294u, &g, &e), -ENOENT, "the deleted user is gone");
	memset(&l, 0, sizeof(l));
	catalog_user_list(c, user_cb, &l, &e);
	is_int(l.n, 2, "two users left");

	/* Settings. */
	uint8_t sid[16], back[32];
	size_t len = 0;
	fill(sid, sizeof(sid), 77);
	is_int(catalog_meta_set(c, "store_id", sid, sizeof(sid), &e), 0, "meta_set");
	is_int(catalog_meta_get(c, "store_id", back, sizeof(back), &len, &e), 0, "meta_get");
	ok(len == sizeof(sid) && !memcmp(back, sid, sizeof(sid)), "meta value round-trips");
	is_int(catalog_meta_get(c, "nope", back, sizeof(back), &len, &e), -ENOENT,
	       "meta_get of a missing key gives -ENOENT");
	sid[0] ^= 1;
	is_int(catalog_meta_set(c, "store_id", sid, sizeof(sid), &e), 0, "meta_set replaces");
	ok(catalog_meta_get(c, "store_id", back, sizeof(back), &len, &e) == 0 &&
	   back[0] == sid[0], "the new value is read back");
}

static struct key_slot make_slot(enum key_slot_kind kind, uint8_t seed)
{
	struct key_slot s;

	memset(&s, 0, sizeof(s));
	s.kind = kind;
	fill(s.salt, sizeof(s.salt), seed);
	fill(s.nonce, sizeof(s.nonce), (uint8_t)(seed + 1));
	fill(s.wrapped, sizeof(s.wrapped), (uint8_t)(seed + 2));
	if (kind == KEY_SLOT_PASSPHRASE) {
		s.opslimit = 3;
		s.memlimit = 1ull << 28;
	}
	return s;
}

static void test_slots(struct catalog *c)
{
	struct key_slot p = make_slot(KEY_SLOT_PASSPHRASE, 1), s = make_slot(KEY_SLOT_SERVER, 50),
			r = make_slot(KEY_SLOT_RECOVERY, 100), g;
	struct iverr e = { 0 };
	unsigned mask = 99;

	is_int(catalog_slot_kinds(c, 1000, &mask, &e), 0, "slot_kinds of a user without slots");
	is_int(mask, 0, "no slots");
	is_int(catalog_slot_put(c, 1000, &p, &e), 0, "slot_put passphrase");
	memset(&g, 0xcc, sizeof(g));
	is_int(catalog_slot_get(c, 1000, KEY_SLOT_PASSPHRASE, &g, &e), 0, "slot_get passphrase");
	ok(g.kind == p.kind && g.opslimit == p.opslimit && g.memlimit == p.memlimit &&
	   !memcmp(g.salt, p.salt, sizeof(p.salt)) && !memcmp(g.nonce, p.nonce, sizeof(p.nonce)) &&
	   !memcmp(g.wrapped, p.wrapped, sizeof(p.wrapped)), "the passphrase slot round-trips");
	is_int(catalog_slot_get(c, 1000, KEY_SLOT_SERVER, &g, &e), -ENOENT,
	       "slot_get of a missing kind gives -ENOENT");
	is_int(catalog_slot_get(c, 1001, KEY_SLOT_PASSPHRASE, &g, &e), -ENOENT,
	       "another user's slot is not returned");
	is_int(catalog_slot_put(c, 1000, &s, &e), 0, "slot_put server");
	is_int(catalog_slot_put(c, 1000, &r, &e), 0, "slot_put recovery");
	is_int(catalog_slot_kinds(c, 1000, &mask, &e), 0, "slot_kinds");
	is_int(mask, (1u << KEY_SLOT_PASSPHRASE) | (1u << KEY_SLOT_SERVER) |
	       (1u << KEY_SLOT_RECOVERY), "mask has all three kinds");
	is_int(catalog_slot_get(c, 1000, KEY_SLOT_RECOVERY, &g, &e), 0, "slot_get recovery");
	ok(g.kind == KEY_SLOT_RECOVERY && !memcmp(g.wrapped, r.wrapped, sizeof(r.wrapped)) &&
	   g.opslimit == 0, "the recovery slot round-trips");

	/* put replaces the slot of the same kind. */
	struct key_slot p2 = make_slot(KEY_SLOT_PASSPHRASE, 200);
	is_int(catalog_slot_put(c, 1000, &p2, &e), 0, "slot_put passphrase again");
	is_int(catalog_slot_get(c, 1000, KEY_SLOT_PASSPHRASE, &g, &e), 0, "slot_get it");
	ok(!memcmp(g.wrapped, p2.wrapped, sizeof(p2.wrapped)) &&
	   !memcmp(g.salt, p2.salt, sizeof(p2.salt)), "the new slot replaced the old one");
	is_int(raw_int(db_path, "SELECT count(*) FROM key_slots WHERE uid = 1000"), 3,
	       "still three slot rows");

	is_int(catalog_slot_delete(c, 1000, KEY_SLOT_SERVER, &e), 0, "slot_delete server");
	is_int(catalog_slot_get(c, 1000, KEY_SLOT_SERVER, &g, &e), -ENOENT, "the server slot is gone");
	is_int(catalog_slot_kinds(c, 1000, &mask, &e), 0, "slot_kinds after delete");
	is_int(mask, (1u << KEY_SLOT_PASSPHRASE) | (1u << KEY_SLOT_RECOVERY),
	       "mask has passphrase and recovery");
	is_int(catalog_slot_delete(c, 1000, KEY_SLOT_SERVER, &e), 0,
	       "deleting a missing slot is not an error");

	int ret = catalog_slot_put(c, 31337, &p, &e);
	ok(ret < 0, "a slot for a user that does not exist is refused (%d)", ret);
	is_int(raw_int(db_path, "SELECT count(*) FROM key_slots WHERE uid = 31337"), 0,
	       "and not stored");
}

/* The slot's wrapped key is gone from the file once deleted (secure delete). */
static void test_slot_wipe(void)
{
	char path[600], wal[640];
	struct catalog *c;
	struct catalog_user u = make_user(7);
	struct key_slot s;
	uint8_t *file;
	size_t len = 0;
	static const uint8_t marker[] = "WRAPPED-KEY-MARKER-0123456789ab";

	snprintf(path, sizeof(path), "%s/wipe.db", dir);
	snprintf(wal, sizeof(wal), "%s-wal", path);
	c = open_catalog(path, true);
	/* Neighbours on the same page, so that the page is not simply emptied. */
	s = make_slot(KEY_SLOT_PASSPHRASE, 4);
	ok(catalog_user_add(c, &u, NULL) == 0 && catalog_slot_put(c, 7, &s, NULL) == 0,
	   "stored a passphrase slot");
	s = make_slot(KEY_SLOT_RECOVERY, 3);
	memcpy(s.wrapped, marker, 32);
	ok(catalog_slot_put(c, 7, &s, NULL) == 0, "stored a slot with a recognisable wrapped key");
	s = make_slot(KEY_SLOT_SERVER, 5);
	ok(catalog_slot_put(c, 7, &s, NULL) == 0, "stored a server slot");
	catalog_close(c);
	file = tu_read_file(path, &len);
	ok(file && memmem(file, len, marker, 18), "the wrapped key is in the file after close");
	free(file);

	c = open_catalog(path, false);
	is_int(catalog_slot_delete(c, 7, KEY_SLOT_RECOVERY, NULL), 0, "deleted the slot");
	{
		unsigned mask = 0;
		ok(catalog_slot_kinds(c, 7, &mask, NULL) == 0 &&
		   mask == ((1u << KEY_SLOT_PASSPHRASE) | (1u << KEY_SLOT_SERVER)),
		   "the other two slots remain");
	}
	catalog_close(c);
	file = tu_read_file(path, &len);
	ok(file && !memmem(file, len, marker, 18),
	   "after delete and close the wrapped key is nowhere in the database file");
	free(file);
	file = tu_read_file(wal, &len);
	ok(!file || !memmem(file, len, marker, 18), "nor in a leftover WAL");
	free(file);
}

/* ---- albums, images, versions ------------------------------------------ */

static struct catalog_album make_album(uint32_t uid, uint8_t seed)
{
	struct catalog_album a;

	memset(&a, 0, sizeof(a));
	a.uid = uid;
	fill(a.pid, sizeof(a.pid), seed);
	fill(a.name_idx, sizeof(a.name_idx), (uint8_t)(seed + 1));
	a.name_enc_len = 20 + seed % 10;
	fill(a.name_enc, a.name_enc_len, (uint8_t)(seed + 2));
	a.created = 1700000000;
	return a;
}

static struct catalog_image make_image(uint32_t uid, int64_t album, uint8_t seed)
{
	struct catalog_image im;

	memset(&im, 0, sizeof(im));
	im.uid = uid;
	im.album_id = album;
	fill(im.pid, sizeof(im.pid), seed);
	fill(im.name_idx, sizeof(im.name_idx), (uint8_t)(seed + 3));
	im.name_enc_len = CATALOG_NAME_ENC_MAX;
	fill(im.name_enc, im.name_enc_len, (uint8_t)(seed + 4));
	im.created = 1700000100;
	im.mtime = 1700000200;
	return im;
}

static struct catalog_version make_version(int64_t image, uint8_t seed, uint64_t size)
{
	struct catalog_version v;

	memset(&v, 0, sizeof(v));
	v.image_id = image;
	fill(v.blob.b, sizeof(v.blob.b), seed);
	v.size = size;
	v.attrs_enc_len = 100;
	fill(v.attrs_enc, v.attrs_enc_len, (uint8_t)(seed + 5));
	v.key_epoch = 2;
	v.created = 1700000300;
	return v;
}

struct id_list { int n; int64_t ids[16]; };

static int album_cb(const struct catalog_album *a, void *arg)
{
	struct id_list *l = arg;
	if (l->n < 16)
		l->ids[l->n] = a->id;
	l->n++;
	return 0;
}

static int image_cb(const struct catalog_image *im, void *arg)
{
	struct id_list *l = arg;
	if (l->n < 16)
		l->ids[l->n] = im->id;
	l->n++;
	return 0;
}

static int version_cb(const struct catalog_version *v, void *arg)
{
	struct id_list *l = arg;
	if (l->n < 16)
		l->ids[l->n] = v->id;
	l->n++;
	return 0;
}

static bool album_eq(const struct catalog_album *a, const struct catalog_album *b)
{
	return a->id == b->id && a->uid == b->uid && !memcmp(a->pid, b->pid, sizeof(a->pid)) &&
	       !memcmp(a->name_idx, b->name_idx, sizeof(a->name_idx)) &&
	       a->name_enc_len == b->name_enc_len &&
	       !memcmp(a->name_enc, b->name_enc, a->name_enc_len) && a->created == b->created;
}

static bool image_eq(const struct catalog_image *a, const struct catalog_image *b)
{
	return a->id == b->id && a->uid == b->uid && a->album_id == b->album_id &&
	       !memcmp(a->pid, b->pid, sizeof(a->pid)) &&
	       !memcmp(a->name_idx, b->name_idx, sizeof(a->name_idx)) &&
	       a->name_enc_len == b->name_enc_len &&
	       !memcmp(a->name_enc, b->name_enc, a->name_enc_len) &&
	       a->current_version == b->current_version &&
	       a->pristine_version == b->pristine_version && a->damaged == b->damaged &&
	       a->created == b->created && a->mtime == b->mtime;
}

static bool version_eq(const struct catalog_version *a, const struct catalog_version *b)
{
	return a->id == b->id && a->image_id == b->image_id &&
	       !memcmp(a->blob.b, b->blob.b, sizeof(a->blob.b)) && a->size == b->size &&
	       a->attrs_enc_len == b->attrs_enc_len &&
	       !memcmp(a->attrs_enc, b->attrs_enc, a->attrs_enc_len) &&
	       a->key_epoch == b->key_epoch && a->created == b->created;
}

static void test_albums_images_versions(struct catalog *c)
{
	struct catalog_album a1 = make_album(1000, 10), a2 = make_album(1000, 20),
			     b1 = make_album(1001, 30), g;
	struct catalog_image i1, i2, gi;
	struct catalog_version v1, v2, v3, gv;
	struct id_list l;
	struct iverr e = { 0 };
	bool ref;
	int ret;

	/* Albums. */
	is_int(catalog_album_add(c, &a1, &e), 0, "album_add");
	ok(a1.id > 0, "album_add sets the id (%lld)", (long long)a1.id);
	is_int(catalog_album_add(c, &a2, &e), 0, "album_add a second album");
	ok(a2.id > a1.id, "ids increase");
	memcpy(b1.name_idx, a1.name_idx, sizeof(a1.name_idx));
	is_int(catalog_album_add(c, &b1, &e), 0, "another user may use the same name index");

	memset(&g, 0, sizeof(g));
	is_int(catalog_album_get(c, a1.id, &g, &e), 0, "album_get");
	ok(album_eq(&g, &a1), "album_get returns every field");
	is_int(catalog_album_find(c, 1000, a2.name_idx, &g, &e), 0, "album_find by index");
	ok(album_eq(&g, &a2), "finds the right album");
	is_int(catalog_album_find(c, 1001, a2.name_idx, &g, &e), -ENOENT,
	       "album_find under another uid gives -ENOENT");
	is_int(catalog_album_find(c, 1001, a1.name_idx, &g, &e), 0,
	       "the other user's album of the same index");
	is_int(g.id, b1.id, "is theirs");
	is_int(catalog_album_get(c, 999999, &g, &e), -ENOENT, "album_get of a missing id");

	struct catalog_album dup = make_album(1000, 40);
	memcpy(dup.name_idx, a1.name_idx, sizeof(dup.name_idx));
	is_int(catalog_album_add(c, &dup, &e), -EEXIST, "a duplicate (uid, name) gives -EEXIST");
	dup = make_album(1000, 40);
	memcpy(dup.pid, a1.pid, sizeof(dup.pid));
	is_int(catalog_album_add(c, &dup, &e), -EEXIST, "a duplicate public id gives -EEXIST");
	dup = make_album(31337, 41);
	iverr_clear(&e);
	ret = catalog_album_add(c, &dup, &e);
	ok(ret < 0, "an album of a user that does not exist is refused (%d)", ret);
	is_int(raw_int(db_path, "SELECT count(*) FROM albums WHERE uid = 31337"), 0,
	       "and not stored");
	/* catalog.h: -EEXIST means a unique conflict; other failures carry a message. */
	ok(ret != -EEXIST, "a foreign-key failure is not reported as a unique conflict "
	   "(-EEXIST) (%d)", ret);
	ok(e.msg[0] != '\0', "a foreign-key failure comes with a message: '%s'", e.msg);

	/* Rename. */
	struct catalog_album ren = a2;
	fill(ren.name_idx, sizeof(ren.name_idx), 99);
	ren.name_enc_len = 7;
	fill(ren.name_enc, 7, 98);
	is_int(catalog_album_update(c, &ren, &e), 0, "album_update (rename)");
	is_int(catalog_album_find(c, 1000, a2.name_idx, &g, &e), -ENOENT, "the old name is gone");
	is_int(catalog_album_find(c, 1000, ren.name_idx, &g, &e), 0, "the new name is found");
	ok(album_eq(&g, &ren), "with the new sealed name");
	ren.name_idx[0] = a1.name_idx[0];
	memcpy(ren.name_idx, a1.name_idx, sizeof(ren.name_idx));
	is_int(catalog_album_update(c, &ren, &e), -EEXIST,
	       "renaming onto an existing name gives -EEXIST");
	a2 = g;

	memset(&l, 0, sizeof(l));
	is_int(catalog_album_list(c, 1000, album_cb, &l, &e), 0, "album_list");
	ok(l.n == 2 && l.ids[0] == a1.id && l.ids[1] == a2.id,
	   "lists the user's two albums in id order, not the other user's");

	/* Images. */
	i1 = make_image(1000, a1.id, 50);
	i2 = make_image(1000, a1.id, 60);
	is_int(catalog_image_add(c, &i1, &e), 0, "image_add");
	ok(i1.id > 0, "image_add sets the id");
	is_int(catalog_image_add(c, &i2, &e), 0, "image_add a second image");
	memset(&gi, 0, sizeof(gi));
	is_int(catalog_image_get(c, i1.id, &gi, &e), 0, "image_get");
	ok(image_eq(&gi, &i1), "image_get returns every field (name of %d bytes)",
	   CATALOG_NAME_ENC_MAX);
	is_int(catalog_image_find(c, a1.id, i2.name_idx, &gi, &e), 0, "image_find");
	ok(image_eq(&gi, &i2), "finds the right image");
	is_int(catalog_image_find(c, a2.id, i2.name_idx, &gi, &e), -ENOENT,
	       "image_find in another album gives -ENOENT");
	struct catalog_image idup = make_image(1000, a1.id, 70);
	memcpy(idup.name_idx, i1.name_idx, sizeof(idup.name_idx));
	is_int(catalog_image_add(c, &idup, &e), -EEXIST, "a duplicate name in an album: -EEXIST");
	idup = make_image(1000, 987654, 71);
	ret = catalog_image_add(c, &idup, &e);
	ok(ret < 0, "an image in an album that does not exist is refused (%d)", ret);

	is_int(catalog_album_delete(c, a1.id, &e), -ENOTEMPTY,
	       "album_delete of an album with images gives -ENOTEMPTY");
	is_int(catalog_album_get(c, a1.id, &g, &e), 0, "and the album is still there");

	/* Versions. */
	v1 = make_version(i1.id, 80, 12345);
	v2 = make_version(i1.id, 90, 67890);
	v3 = make_version(i2.id, 100, 5);
	is_int(catalog_version_add(c, &v1, &e), 0, "version_add");
	ok(v1.id > 0, "version_add sets the id");
	is_int(catalog_version_add(c, &v2, &e), 0, "version_add a second version");
	is_int(catalog_version_add(c, &v3, &e), 0, "version_add for the second image");
	memset(&gv, 0, sizeof(gv));
	is_int(catalog_version_get(c, v1.id, &gv, &e), 0, "version_get");
	ok(version_eq(&gv, &v1), "version_get returns every field");
	struct catalog_version vdup = make_version(i2.id, 80, 1);
	is_int(catalog_version_add(c, &vdup, &e), -EEXIST,
	       "two versions cannot share a blob: -EEXIST");

	ok(catalog_blob_referenced(c, &v2.blob, &ref, &e) == 0 && ref,
	   "blob_referenced: a version's blob is referenced");
	struct blob_id nobody;
	fill(nobody.b, sizeof(nobody.b), 222);
	ref = true;
	ok(catalog_blob_referenced(c, &nobody, &ref, &e) == 0 && !ref,
	   "blob_referenced: an unknown blob is not");

	/* Point the image at its versions. */
	i1.current_version = v2.id;
	i1.pristine_version = v1.id;
	i1.damaged = true;
	i1.mtime = 1800000000;
	i1.album_id = a2.id;
	i1.created = 5;   /* not updatable */
	is_int(catalog_image_update(c, &i1, &e), 0, "image_update");
	is_int(catalog_image_get(c, i1.id, &gi, &e), 0, "image_get after update");
	ok(gi.current_version == v2.id && gi.pristine_version == v1.id && gi.damaged &&
	   gi.mtime == 1800000000 && gi.album_id == a2.id,
	   "versions, damaged flag, mtime and album are updated");
	is_int(gi.created, 1700000100, "created is not changed by an update");
	i1.created = gi.created;

	memset(&l, 0, sizeof(l));
	is_int(catalog_image_list(c, a1.id, image_cb, &l, &e), 0, "image_list");
	ok(l.n == 1 && l.ids[0] == i2.id, "album 1 now holds only image 2");
	memset(&l, 0, sizeof(l));
	is_int(catalog_image_list_user(c, 1000, image_cb, &l, &e), 0, "image_list_user");
	ok(l.n == 2 && l.ids[0] == i1.id && l.ids[1] == i2.id, "the user has both images");
	memset(&l, 0, sizeof(l));
	is_int(catalog_image_list_user(c, 1001, image_cb, &l, &e), 0, "image_list_user 1001");
	is_int(l.n, 0, "the other user has none");

	uint64_t nimg = 0, bytes = 0;
	is_int(catalog_user_usage(c, 1000, &nimg, &bytes, &e), 0, "user_usage");
	is_int(nimg, 2, "two images");
	ok(bytes >= 67890 + 5, "bytes count at least the current versions (%llu)",
	   (unsigned long long)bytes);

	/* Version update and listing. */
	struct catalog_version vu = v2;
	fill(vu.blob.b, sizeof(vu.blob.b), 150);
	vu.size = 4242;
	vu.attrs_enc_len = 60;
	fill(vu.attrs_enc, 60, 151);
	vu.key_epoch = 3;
	vu.created = 1;   /* not updatable */
	is_int(catalog_version_update(c, &vu, &e), 0, "version_update");
	is_int(catalog_version_get(c, v2.id, &gv, &e), 0, "version_get after update");
	vu.created = v2.created;
	ok(version_eq(&gv, &vu), "blob, size, attrs and key epoch are updated, created is not");
	ok(catalog_blob_referenced(c, &v2.blob, &ref, &e) == 0 && !ref,
	   "the old blob is no longer referenced");
	ok(catalog_blob_referenced(c, &vu.blob, &ref, &e) == 0 && ref,
	   "the new blob is");
	v2 = vu;

	memset(&l, 0, sizeof(l));
	is_int(catalog_version_list_user(c, 1000, 0, version_cb, &l, &e), 0, "version_list_user");
	ok(l.n == 3 && l.ids[0] == v1.id && l.ids[1] == v2.id && l.ids[2] == v3.id,
	   "lists the user's three versions in id order");
	memset(&l, 0, sizeof(l));
	is_int(catalog_version_list_user(c, 1000, v1.id, version_cb, &l, &e), 0,
	       "version_list_user after the first id");
	ok(l.n == 2 && l.ids[0] == v2.id && l.ids[1] == v3.id, "resumes after it");
	memset(&l, 0, sizeof(l));
	catalog_version_list_user(c, 1001, 0, version_cb, &l, &e);
	is_int(l.n, 0, "the other user has no versions");

	is_int(catalog_version_delete(c, v3.id, &e), 0, "version_delete");
	is_int(catalog_version_get(c, v3.id, &gv, &e), -ENOENT, "the version is gone");
	ok(catalog_blob_referenced(c, &v3.blob, &ref, &e) == 0 && !ref,
	   "its blob is no longer referenced");

	/* Image delete takes its versions with it. */
	is_int(catalog_image_delete(c, i1.id, &e), 0, "image_delete");
	is_int(catalog_image_get(c, i1.id, &gi, &e), -ENOENT, "the image is gone");
	is_int(catalog_version_get(c, v1.id, &gv, &e), -ENOENT, "its first version is gone");
	is_int(catalog_version_get(c, v2.id, &gv, &e), -ENOENT, "its second version is gone");
	ok(catalog_blob_referenced(c, &v1.blob, &ref, &e) == 0 && !ref,
	   "its blobs are no longer referenced");

	is_int(catalog_album_delete(c, a1.id, &e), -ENOTEMPTY, "album 1 still holds image 2");
	is_int(catalog_image_delete(c, i2.id, &e), 0, "image_delete image 2");
	is_int(catalog_album_delete(c, a1.id, &e), 0, "album_delete of the now empty album");
	is_int(catalog_album_get(c, a1.id, &g, &e), -ENOENT, "the album is gone");
	memset(&l, 0, sizeof(l));
	catalog_album_list(c, 1000, album_cb, &l, &e);
	ok(l.n == 1 && l.ids[0] == a2.id, "one album left");
}

static void test_user_delete_cascades(struct catalog *c)
{
	struct catalog_user u = make_user(2000);
	struct catalog_album a = make_album(2000, 111), ga;
	struct catalog_image im;
	struct catalog_version v, gv;
	struct key_slot s = make_slot(KEY_SLOT_PASSPHRASE, 5), gs;
	struct catalog_image gi;
	struct iverr e = { 0 };

	ok(catalog_user_add(c, &u, &e) == 0 && catalog_slot_put(c, 2000, &s, &e) == 0 &&
	   catalog_album_add(c, &a, &e) == 0, "user 2000 with a slot and an album");
	im = make_image(2000, a.id, 112);
	ok(catalog_image_add(c, &im, &e) == 0, "and an image");
	v = make_version(im.id, 113, 10);
	ok(catalog_version_add(c, &v, &e) == 0, "and a version");
	is_int(catalog_user_delete(c, 2000, &e), 0, "user_delete");
	is_int(catalog_slot_get(c, 2000, KEY_SLOT_PASSPHRASE, &gs, &e), -ENOENT,
	       "the user's slot is gone");
	is_int(catalog_album_get(c, a.id, &ga, &e), -ENOENT, "the user's album is gone");
	is_int(catalog_image_get(c, im.id, &gi, &e), -ENOENT, "the user's image is gone");
	is_int(catalog_version_get(c, v.id, &gv, &e), -ENOENT, "the user's version is gone");
}

/* ---- transactions ------------------------------------------------------- */

static void test_transactions(struct catalog *c)
{
	struct catalog_user u, g;
	struct iverr e = { 0 };
	int ret;

	/* Plain commit and rollback. */
	is_int(catalog_begin(c, &e), 0, "begin");
	u = make_user(3000);
	is_int(catalog_user_add(c, &u, &e), 0, "add user 3000 inside a transaction");
	is_int(catalog_commit(c, &e), 0, "commit");
	is_int(raw_int(db_path, "SELECT count(*) FROM users WHERE uid = 3000"), 1,
	       "user 3000 is visible to another connection after commit");

	is_int(catalog_begin(c, &e), 0, "begin");
	u = make_user(3001);
	is_int(catalog_user_add(c, &u, &e), 0, "add user 3001");
	is_int(catalog_user_get(c, 3001, &g, &e), 0, "visible inside the transaction");
	catalog_rollback(c);
	is_int(catalog_user_get(c, 3001, &g, &e), -ENOENT, "gone after rollback");

	/* Nested: both commit. */
	is_int(catalog_begin(c, &e), 0, "outer begin");
	is_int(catalog_begin(c, &e), 0, "inner begin");
	u = make_user(3002);
	is_int(catalog_user_add(c, &u, &e), 0, "add user 3002 in the inner transaction");
	is_int(catalog_commit(c, &e), 0, "inner commit");
	is_int(raw_int(db_path, "SELECT count(*) FROM users WHERE uid = 3002"), 0,
	       "an inner commit does not reach the database");
	is_int(catalog_commit(c, &e), 0, "outer commit");
	is_int(raw_int(db_path, "SELECT count(*) FROM users WHERE uid = 3002"), 1,
	       "the outer commit does");

	/* Nested: inner rollback dooms the outer commit. */
	is_int(catalog_begin(c, &e), 0, "outer begin");
	u = make_user(3003);
	is_int(catalog_user_add(c, &u, &e), 0, "add user 3003 in the outer transaction");
	is_int(catalog_begin(c, &e), 0, "inner begin");
	u = make_user(3004);
	is_int(catalog_user_add(c, &u, &e), 0, "add user 3004 in the inner transaction");
	catalog_rollback(c);
	u = make_user(3005);
	catalog_user_add(c, &u, NULL);
	iverr_clear(&e);
	ret = catalog_commit(c, &e);
	ok(ret < 0, "after an inner rollback the outer commit fails (%d)", ret);
	ok(e.msg[0] != '\0', "with a message: %s", e.msg);
	ok(catalog_user_get(c, 3003, &g, NULL) == -ENOENT &&
	   catalog_user_get(c, 3004, &g, NULL) == -ENOENT &&
	   catalog_user_get(c, 3005, &g, NULL) == -ENOENT,
	   "nothing of the doomed transaction persists (outer, inner or after)");
	is_int(raw_int(db_path, "SELECT count(*) FROM users WHERE uid BETWEEN 3003 AND 3005"), 0,
	       "not for another connection either");

	/* The next transaction is not doomed. */
	is_int(catalog_begin(c, &e), 0, "a new transaction after a doomed one");
	u = make_user(3006);
	is_int(catalog_user_add(c, &u, &e), 0, "add user 3006");
	is_int(catalog_commit(c, &e), 0, "commits");
	is_int(catalog_user_get(c, 3006, &g, &e), 0, "and persists");

	/* Three levels, rollback in the middle. */
	ok(catalog_begin(c, &e) == 0 && catalog_begin(c, &e) == 0 && catalog_begin(c, &e) == 0,
	   "three nested begins");
	u = make_user(3007);
	catalog_user_add(c, &u, &e);
	is_int(catalog_commit(c, &e), 0, "innermost commit");
	catalog_rollback(c);
	ok(catalog_commit(c, &e) < 0, "outermost commit fails after a middle rollback");
	is_int(catalog_user_get(c, 3007, &g, NULL), -ENOENT, "user 3007 does not persist");

	/* A unique conflict inside a transaction does not end it. */
	is_int(catalog_begin(c, &e), 0, "begin");
	u = make_user(3008);
	is_int(catalog_user_add(c, &u, &e), 0, "add user 3008");
	is_int(catalog_user_add(c, &u, &e), -EEXIST, "adding it twice gives -EEXIST");
	is_int(catalog_commit(c, &e), 0, "the transaction still commits");
	is_int(catalog_user_get(c, 3008, &g, &e), 0, "user 3008 persists");
}

int main(void)
{
	struct catalog *c;

	if (keys_init() < 0)
		BAIL_OUT("keys_init failed");
	tu_mkdtemp(dir, sizeof(dir), "catalog");
	snprintf(db_path, sizeof(db_path), "%s/catalog.db", dir);

	test_open();
	test_newer_and_damaged();
	c = open_catalog(db_path, false);
	test_users(c);
	test_slots(c);
	test_albums_images_versions(c);
	test_user_delete_cascades(c);
	test_transactions(c);
	is_int(catalog_check_integrity(c, NULL), 0, "the catalog is intact after all that");
	catalog_close(c);
	c = open_catalog(db_path, false);
	{
		struct catalog_user g;
		ok(catalog_user_get(c, 3006, &g, NULL) == 0 && catalog_user_get(c, 1000, &g, NULL) == 0,
		   "committed rows are there after closing and reopening");
	}
	catalog_close(c);
	test_slot_wipe();

	ok(tu_rm_rf(dir) == 0, "removed the test directory");
	return done_testing();
}
