#include "catalog.h"
#include "catalog_i.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <sqlite3.h>

/* Each migration takes the schema from version i to i + 1. */
static const char *const migrations[] = {
	/* 0 -> 1 */
	"CREATE TABLE meta(key TEXT PRIMARY KEY, value BLOB NOT NULL);"
	"CREATE TABLE users("
	"  uid INTEGER PRIMARY KEY, created INTEGER NOT NULL,"
	"  web_read INTEGER NOT NULL DEFAULT 0, quota INTEGER NOT NULL DEFAULT 0,"
	"  key_epoch INTEGER NOT NULL DEFAULT 0, rekey INTEGER NOT NULL DEFAULT 0,"
	"  prev_uk BLOB);"
	"CREATE TABLE key_slots("
	"  uid INTEGER NOT NULL REFERENCES users(uid) ON DELETE CASCADE,"
	"  kind INTEGER NOT NULL, salt BLOB NOT NULL, opslimit INTEGER NOT NULL,"
	"  memlimit INTEGER NOT NULL, nonce BLOB NOT NULL, wrapped BLOB NOT NULL,"
	"  PRIMARY KEY(uid, kind));"
	"CREATE TABLE albums("
	"  id INTEGER PRIMARY KEY,"
	"  uid INTEGER NOT NULL REFERENCES users(uid) ON DELETE CASCADE,"
	"  pid BLOB NOT NULL UNIQUE, name_idx BLOB NOT NULL, name_enc BLOB NOT NULL,"
	"  created INTEGER NOT NULL, UNIQUE(uid, name_idx));"
	"CREATE TABLE images("
	"  id INTEGER PRIMARY KEY, uid INTEGER NOT NULL,"
	"  album_id INTEGER NOT NULL REFERENCES albums(id) ON DELETE CASCADE,"
	"  pid BLOB NOT NULL UNIQUE, name_idx BLOB NOT NULL, name_enc BLOB NOT NULL,"
	"  current_version INTEGER NOT NULL DEFAULT 0,"
	"  pristine_version INTEGER NOT NULL DEFAULT 0,"
	"  damaged INTEGER NOT NULL DEFAULT 0,"
	"  created INTEGER NOT NULL, mtime INTEGER NOT NULL,"
	"  UNIQUE(album_id, name_idx));"
	"CREATE INDEX images_uid ON images(uid);"
	"CREATE TABLE versions("
	"  id INTEGER PRIMARY KEY,"
	"  image_id INTEGER NOT NULL REFERENCES images(id) ON DELETE CASCADE,"
	"  blob_id BLOB NOT NULL UNIQUE, size INTEGER NOT NULL,"
	"  attrs_enc BLOB NOT NULL, key_epoch INTEGER NOT NULL,"
	"  created INTEGER NOT NULL);"
	"CREATE INDEX versions_image ON versions(image_id);"
	"CREATE TABLE audit("
	"  seq INTEGER PRIMARY KEY, time INTEGER NOT NULL, actor INTEGER NOT NULL,"
	"  subject INTEGER NOT NULL, action TEXT NOT NULL, object TEXT NOT NULL,"
	"  result TEXT NOT NULL, detail TEXT NOT NULL, hash BLOB NOT NULL);"
	"CREATE TRIGGER audit_no_update BEFORE UPDATE ON audit"
	"  BEGIN SELECT RAISE(ABORT, 'the audit trail is append-only'); END;"
	"CREATE TRIGGER audit_no_delete BEFORE DELETE ON audit"
	"  BEGIN SELECT RAISE(ABORT, 'the audit trail is append-only'); END;",
	/* 1 -> 2: thumbnails and their queue */
	"CREATE TABLE thumbs("
	"  version_id INTEGER PRIMARY KEY REFERENCES versions(id) ON DELETE CASCADE,"
	"  blob_id BLOB NOT NULL UNIQUE, size INTEGER NOT NULL,"
	"  attrs_enc BLOB NOT NULL, key_epoch INTEGER NOT NULL,"
	"  created INTEGER NOT NULL);"
	"CREATE TABLE thumb_queue("
	"  version_id INTEGER PRIMARY KEY REFERENCES versions(id) ON DELETE CASCADE,"
	"  uid INTEGER NOT NULL, priority INTEGER NOT NULL DEFAULT 0,"
	"  queued INTEGER NOT NULL);"
	"CREATE INDEX thumb_queue_order ON thumb_queue(uid, priority DESC, queued, version_id);",
	/* 2 -> 3: extended attributes and expiry */
	"ALTER TABLE images ADD COLUMN tags_enc BLOB;"
	"ALTER TABLE images ADD COLUMN comment_enc BLOB;"
	"ALTER TABLE images ADD COLUMN expires INTEGER NOT NULL DEFAULT 0;"
	"CREATE INDEX images_expires ON images(expires) WHERE expires > 0;",
	/* 3 -> 4: share links: signing keys, partners, minted links */
	"CREATE TABLE signing_keys("
	"  kid BLOB PRIMARY KEY, owner INTEGER NOT NULL, public BLOB NOT NULL,"
	"  secret_enc BLOB NOT NULL, created INTEGER NOT NULL,"
	"  retired INTEGER NOT NULL DEFAULT 0);"
	"CREATE TABLE partners("
	"  id INTEGER PRIMARY KEY, name TEXT NOT NULL UNIQUE, cidrs TEXT NOT NULL,"
	"  ttl INTEGER NOT NULL, max_ttl INTEGER NOT NULL,"
	"  disabled INTEGER NOT NULL DEFAULT 0, created INTEGER NOT NULL);"
	"CREATE TABLE shares("
	"  tid BLOB PRIMARY KEY, kid BLOB NOT NULL, uid INTEGER NOT NULL,"
	"  image_id INTEGER NOT NULL REFERENCES images(id) ON DELETE CASCADE,"
	"  variant INTEGER NOT NULL, disposition INTEGER NOT NULL,"
	"  not_before INTEGER NOT NULL, expires INTEGER NOT NULL,"
	"  partner_id INTEGER NOT NULL, uses_max INTEGER NOT NULL,"
	"  uses INTEGER NOT NULL DEFAULT 0, created INTEGER NOT NULL,"
	"  revoked INTEGER NOT NULL DEFAULT 0, served INTEGER NOT NULL DEFAULT 0);"
	"CREATE INDEX shares_image ON shares(image_id);"
	"CREATE INDEX shares_uid ON shares(uid, expires);",
	/* 4 -> 5: authenticated rows and each scope's sealed commitment
	 * (docs/FORMAT.md §6.5); the MACs are written when a key is at hand */
	"ALTER TABLE users ADD COLUMN mac BLOB;"
	"ALTER TABLE key_slots ADD COLUMN mac BLOB;"
	"ALTER TABLE albums ADD COLUMN mac BLOB;"
	"ALTER TABLE images ADD COLUMN mac BLOB;"
	"ALTER TABLE versions ADD COLUMN mac BLOB;"
	"ALTER TABLE thumbs ADD COLUMN mac BLOB;"
	"ALTER TABLE signing_keys ADD COLUMN mac BLOB;"
	"ALTER TABLE partners ADD COLUMN mac BLOB;"
	"ALTER TABLE shares ADD COLUMN mac BLOB;"
	"CREATE TABLE auth_state(scope INTEGER PRIMARY KEY, sum BLOB NOT NULL,"
	"  rows INTEGER NOT NULL, tag BLOB NOT NULL);",
};


#define USER_COLS "uid, created, web_read, quota, key_epoch, rekey, prev_uk"
#define ALBUM_COLS "id, uid, pid, name_idx, name_enc, created"
#define IMAGE_COLS "i.id, i.uid, i.album_id, i.pid, i.name_idx, i.name_enc," \
		   " i.current_version, i.pristine_version, i.damaged, i.created, i.mtime"
#define NCOLS_IMAGE 11
#define VERSION_COLS "v.id, v.image_id, v.blob_id, v.size, v.attrs_enc, v.key_epoch," \
		     " v.created"
#define NCOLS_VERSION 7
#define THUMB_COLS "t.version_id, t.blob_id, t.size, t.attrs_enc, t.key_epoch, t.created"
#define NCOLS_THUMB 6
#define NCOLS_USER 7
#define NCOLS_ALBUM 6
#define AUDIT_COLS "seq, time, actor, subject, action, object, result, detail, hash"

#define SIGNKEY_COLS "kid, owner, public, secret_enc, created, retired"
#define PARTNER_COLS "id, name, cidrs, ttl, max_ttl, disabled, created"
#define SHARE_COLS_S "s.tid, s.kid, s.uid, s.image_id, s.variant, s.disposition," \
		     " s.not_before, s.expires, s.partner_id, s.uses_max, s.uses, s.created," \
		     " s.revoked, s.served"
#define SHARE_COLS "tid, kid, uid, image_id, variant, disposition, not_before, expires," \
		   " partner_id, uses_max, uses, created, revoked, served"

static const char *const stmt_sql[S_COUNT] = {
	[S_META_GET] = "SELECT value FROM meta WHERE key = ?1",
	[S_META_SET] = "INSERT OR REPLACE INTO meta(key, value) VALUES (?1, ?2)",
	[S_USER_ADD] = "INSERT INTO users(" USER_COLS ") VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
	[S_USER_GET] = "SELECT " USER_COLS ", " AUTH_SEL_USERS " FROM " AUTH_FROM_USERS
		       " WHERE uid = ?1",
	[S_USER_UPDATE] = "UPDATE users SET web_read = ?2, quota = ?3, key_epoch = ?4,"
			  " rekey = ?5, prev_uk = ?6 WHERE uid = ?1",
	[S_USER_DELETE] = "DELETE FROM users WHERE uid = ?1",
	[S_USER_LIST] = "SELECT " USER_COLS ", " AUTH_SEL_USERS " FROM " AUTH_FROM_USERS
			" ORDER BY uid",
	[S_USER_USAGE] = "SELECT (SELECT count(*) FROM images WHERE uid = ?1),"
			 " (SELECT coalesce(sum(v.size), 0) FROM versions v"
			 "  JOIN images i ON i.id = v.image_id WHERE i.uid = ?1)",
	[S_SLOT_PUT] = "INSERT OR REPLACE INTO key_slots(uid, kind, salt, opslimit, memlimit,"
		       " nonce, wrapped) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
	[S_SLOT_GET] = "SELECT kind, salt, opslimit, memlimit, nonce, wrapped FROM key_slots"
		       " WHERE uid = ?1 AND kind = ?2",
	[S_SLOT_WIPE] = "UPDATE key_slots SET wrapped = zeroblob(length(wrapped)),"
			" salt = zeroblob(length(salt)) WHERE uid = ?1 AND kind = ?2",
	[S_SLOT_DELETE] = "DELETE FROM key_slots WHERE uid = ?1 AND kind = ?2",
	[S_SLOT_KINDS] = "SELECT kind FROM key_slots WHERE uid = ?1",
	[S_ALBUM_ADD] = "INSERT INTO albums(uid, pid, name_idx, name_enc, created)"
			" VALUES (?1, ?2, ?3, ?4, ?5)",
	[S_ALBUM_GET] = "SELECT " ALBUM_COLS ", " AUTH_SEL_ALBUMS " FROM " AUTH_FROM_ALBUMS
			" WHERE id = ?1",
	[S_ALBUM_FIND] = "SELECT " ALBUM_COLS ", " AUTH_SEL_ALBUMS " FROM " AUTH_FROM_ALBUMS
			 " WHERE uid = ?1 AND name_idx = ?2",
	[S_ALBUM_UPDATE] = "UPDATE albums SET name_idx = ?2, name_enc = ?3 WHERE id = ?1",
	[S_ALBUM_COUNT] = "SELECT count(*) FROM images WHERE album_id = ?1",
	[S_ALBUM_DELETE] = "DELETE FROM albums WHERE id = ?1",
	[S_ALBUM_LIST] = "SELECT " ALBUM_COLS ", " AUTH_SEL_ALBUMS " FROM " AUTH_FROM_ALBUMS
			 " WHERE uid = ?1 ORDER BY id",
	[S_IMAGE_ADD] = "INSERT INTO images(uid, album_id, pid, name_idx, name_enc,"
			" current_version, pristine_version, damaged, created, mtime)"
			" VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)",
	[S_IMAGE_GET] = "SELECT " IMAGE_COLS ", " AUTH_SEL_IMAGES " FROM " AUTH_FROM_IMAGES
			" WHERE i.id = ?1",
	[S_IMAGE_FIND] = "SELECT " IMAGE_COLS ", " AUTH_SEL_IMAGES " FROM " AUTH_FROM_IMAGES
			 " WHERE i.album_id = ?1 AND i.name_idx = ?2",
	[S_IMAGE_UPDATE] = "UPDATE images SET album_id = ?2, name_idx = ?3, name_enc = ?4,"
			   " current_version = ?5, pristine_version = ?6, damaged = ?7,"
			   " mtime = ?8 WHERE id = ?1",
	[S_IMAGE_DELETE] = "DELETE FROM images WHERE id = ?1",
	[S_IMAGE_LIST] = "SELECT " IMAGE_COLS ", " AUTH_SEL_IMAGES " FROM " AUTH_FROM_IMAGES
			 " WHERE i.album_id = ?1 ORDER BY i.id",
	[S_IMAGE_LIST_USER] = "SELECT " IMAGE_COLS ", " AUTH_SEL_IMAGES " FROM " AUTH_FROM_IMAGES
			      " WHERE i.uid = ?1 ORDER BY i.id",
	[S_VERSION_ADD] = "INSERT INTO versions(image_id, blob_id, size, attrs_enc, key_epoch,"
			  " created) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
	[S_VERSION_GET] = "SELECT " VERSION_COLS ", " AUTH_SEL_VERSIONS " FROM " AUTH_FROM_VERSIONS
			  " WHERE v.id = ?1",
	[S_VERSION_UPDATE] = "UPDATE versions SET blob_id = ?2, size = ?3, attrs_enc = ?4,"
			     " key_epoch = ?5, image_id = ?6 WHERE id = ?1",
	[S_VERSION_DELETE] = "DELETE FROM versions WHERE id = ?1",
	[S_VERSION_LIST_USER] = "SELECT " VERSION_COLS ", " AUTH_SEL_VERSIONS " FROM "
				AUTH_FROM_VERSIONS " WHERE i.uid = ?1 AND v.id > ?2 ORDER BY v.id",
	[S_BLOB_REF] = "SELECT 1 FROM versions WHERE blob_id = ?1"
		       " UNION ALL SELECT 1 FROM thumbs WHERE blob_id = ?1",
	[S_THUMB_PUT] = "INSERT OR REPLACE INTO thumbs(version_id, blob_id, size, attrs_enc,"
			" key_epoch, created) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
	[S_THUMB_GET] = "SELECT " THUMB_COLS ", " AUTH_SEL_THUMBS " FROM " AUTH_FROM_THUMBS
			" WHERE t.version_id = ?1",
	[S_THUMB_DELETE] = "DELETE FROM thumbs WHERE version_id = ?1",
	[S_THUMB_LIST_USER] = "SELECT " THUMB_COLS ", " AUTH_SEL_THUMBS " FROM " AUTH_FROM_THUMBS
			      " WHERE i.uid = ?1 ORDER BY t.version_id",
	[S_QUEUE_PUSH] = "INSERT INTO thumb_queue(version_id, uid, priority, queued)"
			 " VALUES (?1, ?2, ?3, ?4) ON CONFLICT(version_id) DO UPDATE"
			 " SET priority = max(priority, excluded.priority)",
	[S_QUEUE_DELETE] = "DELETE FROM thumb_queue WHERE version_id = ?1",
	[S_QUEUE_LIST] = "SELECT version_id FROM thumb_queue WHERE uid = ?1"
			 " ORDER BY priority DESC, queued, version_id",
	[S_QUEUE_COUNT] = "SELECT count(*) FROM thumb_queue WHERE uid = ?1",
	[S_TAGS_GET] = "SELECT tags_enc FROM images WHERE id = ?1",
	[S_TAGS_SET] = "UPDATE images SET tags_enc = ?2 WHERE id = ?1",
	[S_COMMENT_GET] = "SELECT comment_enc FROM images WHERE id = ?1",
	[S_COMMENT_SET] = "UPDATE images SET comment_enc = ?2 WHERE id = ?1",
	[S_EXPIRES_GET] = "SELECT expires FROM images WHERE id = ?1",
	[S_EXPIRES_SET] = "UPDATE images SET expires = ?2 WHERE id = ?1",
	[S_EXPIRED] = "SELECT id FROM images WHERE uid = ?1 AND expires > 0 AND expires <= ?2"
		      " ORDER BY expires LIMIT ?3",
	[S_AUDIT_INSERT] = "INSERT INTO audit(" AUDIT_COLS ")"
			   " VALUES (?9, ?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
	[S_AUDIT_LAST] = "SELECT " AUDIT_COLS " FROM audit ORDER BY seq DESC LIMIT 1",
	[S_AUDIT_LIST] = "SELECT " AUDIT_COLS " FROM audit ORDER BY seq",
	[S_AUDIT_GET] = "SELECT " AUDIT_COLS " FROM audit WHERE seq = ?1",
	[S_SIGNKEY_ADD] = "INSERT INTO signing_keys(" SIGNKEY_COLS ") VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
	[S_SIGNKEY_GET] = "SELECT " SIGNKEY_COLS ", s.rowid, " AUTH_SEL_SIGNKEYS
			  " FROM " AUTH_FROM_SIGNKEYS " WHERE kid = ?1",
	[S_SIGNKEY_LIST] = "SELECT " SIGNKEY_COLS ", s.rowid, " AUTH_SEL_SIGNKEYS
			   " FROM " AUTH_FROM_SIGNKEYS " ORDER BY created, kid",
	[S_SIGNKEY_RETIRE] = "UPDATE signing_keys SET retired = ?2 WHERE kid = ?1 AND retired = 0",
	[S_SIGNKEY_RESEAL] = "UPDATE signing_keys SET secret_enc = ?2 WHERE kid = ?1",
	[S_PARTNER_ADD] = "INSERT INTO partners(name, cidrs, ttl, max_ttl, disabled, created)"
			  " VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
	[S_PARTNER_GET] = "SELECT " PARTNER_COLS ", id, " AUTH_SEL_PARTNERS " FROM "
			  AUTH_FROM_PARTNERS " WHERE id = ?1",
	[S_PARTNER_FIND] = "SELECT " PARTNER_COLS ", id, " AUTH_SEL_PARTNERS " FROM "
			   AUTH_FROM_PARTNERS " WHERE name = ?1",
	[S_PARTNER_LIST] = "SELECT " PARTNER_COLS ", id, " AUTH_SEL_PARTNERS " FROM "
			   AUTH_FROM_PARTNERS " ORDER BY name",
	[S_PARTNER_UPDATE] = "UPDATE partners SET cidrs = ?2, ttl = ?3, max_ttl = ?4,"
			     " disabled = ?5 WHERE id = ?1",
	[S_SHARE_ADD] = "INSERT INTO shares(" SHARE_COLS ")"
			" VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14)",
	[S_SHARE_GET] = "SELECT " SHARE_COLS_S ", s.rowid, " AUTH_SEL_SHARES " FROM "
			AUTH_FROM_SHARES " WHERE s.tid = ?1",
	[S_SHARE_LIST] = "SELECT " SHARE_COLS_S ", s.rowid, " AUTH_SEL_SHARES " FROM "
			 AUTH_FROM_SHARES " WHERE (?1 < 0 OR s.uid = ?1)"
			 " AND (?2 = 0 OR s.image_id = ?2) AND (?3 = 0 OR s.partner_id = ?3)"
			 " AND s.revoked = 0 AND s.expires > ?4 ORDER BY s.created, s.tid",
	[S_SHARE_REVOKE_ID] = "UPDATE shares SET revoked = ?2 WHERE tid = ?1 AND revoked = 0",
	[S_SHARE_REVOKE_IMAGE] = "UPDATE shares SET revoked = ?2 WHERE image_id = ?1"
				 " AND revoked = 0",
	[S_SHARE_REVOKE_PARTNER] = "UPDATE shares SET revoked = ?2 WHERE partner_id = ?1"
				   " AND (?3 < 0 OR uid = ?3) AND revoked = 0",
	[S_SHARE_USE] = "UPDATE shares SET uses = uses + ?2, served = served + ?3 WHERE tid = ?1",
	[S_STATE_GET] = "SELECT sum, rows, tag FROM auth_state WHERE scope = ?1",
	[S_STATE_PUT] = "INSERT OR REPLACE INTO auth_state(scope, sum, rows, tag)"
			" VALUES (?1, ?2, ?3, ?4)",
	[S_STATE_DELETE] = "DELETE FROM auth_state WHERE scope = ?1",
	[S_DATA_VERSION] = "PRAGMA data_version",
	[S_BEGIN] = "BEGIN IMMEDIATE",
	[S_COMMIT] = "COMMIT",
	[S_ROLLBACK] = "ROLLBACK",
};

/* Maps a sqlite failure onto an errno and a message. */
int db_fail(struct catalog *c, int rc, const char *what, struct iverr *e)
{
	int code;
	const char *hint = "";

	switch (rc & 0xff) {
	case SQLITE_CONSTRAINT: {
		int ext = sqlite3_extended_errcode(c->db);
		if (ext == SQLITE_CONSTRAINT_UNIQUE || ext == SQLITE_CONSTRAINT_PRIMARYKEY)
			return -EEXIST;  /* callers word unique conflicts themselves */
		code = ext == SQLITE_CONSTRAINT_FOREIGNKEY ? ENOENT : EINVAL;
		hint = ext == SQLITE_CONSTRAINT_FOREIGNKEY ? " (it refers to a row that "
		       "does not exist)" : "";
		break;
	}
	case SQLITE_CORRUPT:
	case SQLITE_NOTADB:
		code = IV_EDAMAGE;
		hint = "; the catalog is damaged: restore catalog.db from a backup";
		break;
	case SQLITE_FULL:
		code = ENOSPC;
		hint = "; free some space and try again";
		break;
	case SQLITE_BUSY:
	case SQLITE_LOCKED:
		code = IV_EBUSY;
		hint = "; another process is using the store";
		break;
	case SQLITE_NOMEM:
		code = ENOMEM;
		break;
	case SQLITE_READONLY:
	case SQLITE_PERM:
	case SQLITE_CANTOPEN:
		code = EACCES;
		hint = "; check the owner and mode of the store";
		break;
	default:
		code = EIO;
	}
	return iverr_set(e, code, "catalog %s: %s: %s%s", c->path, what,
			 sqlite3_errmsg(c->db), hint);
}

sqlite3_stmt *stmt_get(struct catalog *c, enum stmt s)
{
	sqlite3_stmt *st = c->stmt[s];
	sqlite3_reset(st);
	sqlite3_clear_bindings(st);
	return st;
}

/* Runs a statement that returns no rows. */
int stmt_exec(struct catalog *c, sqlite3_stmt *st, const char *what, struct iverr *e)
{
	int rc = sqlite3_step(st);
	sqlite3_reset(st);
	if (rc != SQLITE_DONE && rc != SQLITE_ROW)
		return db_fail(c, rc, what, e);
	return 0;
}

/* Steps to the one expected row: 0, -ENOENT, or a failure. */
int stmt_row(struct catalog *c, sqlite3_stmt *st, const char *what, struct iverr *e)
{
	int rc = sqlite3_step(st);
	if (rc == SQLITE_ROW)
		return 0;
	sqlite3_reset(st);
	if (rc == SQLITE_DONE)
		return -ENOENT;
	return db_fail(c, rc, what, e);
}

void copy_blob(sqlite3_stmt *st, int col, uint8_t *dst, size_t cap, size_t *len)
{
	size_t n = (size_t)sqlite3_column_bytes(st, col);
	const void *p = sqlite3_column_blob(st, col);

	if (n > cap || !p)
		n = p ? cap : 0;
	if (n)
		memcpy(dst, p, n);
	if (len)
		*len = n;
}

void copy_text(sqlite3_stmt *st, int col, char *dst, size_t cap)
{
	const unsigned char *p = sqlite3_column_text(st, col);
	snprintf(dst, cap, "%s", p ? (const char *)p : "");
}

int catalog_changes(struct catalog *c)
{
	return sqlite3_changes(c->db);
}

static int exec_sql(struct catalog *c, const char *sql, const char *what, struct iverr *e)
{
	int rc = sqlite3_exec(c->db, sql, NULL, NULL, NULL);
	return rc == SQLITE_OK ? 0 : db_fail(c, rc, what, e);
}

static int catalog_migrate(struct catalog *c, struct iverr *e)
{
	sqlite3_stmt *st;
	int version;
	int rc = sqlite3_prepare_v2(c->db, "PRAGMA user_version", -1, &st, NULL);

	if (rc != SQLITE_OK)
		return db_fail(c, rc, "reading the schema version", e);
	rc = sqlite3_step(st);
	version = rc == SQLITE_ROW ? sqlite3_column_int(st, 0) : -1;
	sqlite3_finalize(st);
	if (version < 0)
		return db_fail(c, rc, "reading the schema version", e);
	if (version > CATALOG_SCHEMA_VERSION)
		return iverr_set(e, IV_EVERSION, "catalog %s has schema version %d, this "
				 "imgvault reads up to %d: upgrade imgvault", c->path,
				 version, CATALOG_SCHEMA_VERSION);
	while (version < CATALOG_SCHEMA_VERSION) {
		char bump[64];
		int ret;

		if ((ret = exec_sql(c, "BEGIN IMMEDIATE", "migrating", e)) < 0)
			return ret;
		snprintf(bump, sizeof(bump), "PRAGMA user_version = %d", version + 1);
		if ((ret = exec_sql(c, migrations[version], "migrating", e)) < 0 ||
		    (ret = exec_sql(c, bump, "migrating", e)) < 0) {
			exec_sql(c, "ROLLBACK", "migrating", NULL);
			return ret;
		}
		if ((ret = exec_sql(c, "COMMIT", "migrating", e)) < 0)
			return ret;
		version++;
	}
	return 0;
}

int catalog_open(const char *path, bool create, struct catalog **out, struct iverr *e)
{
	struct catalog *c;
	int flags = SQLITE_OPEN_READWRITE | SQLITE_OPEN_NOMUTEX | (create ? SQLITE_OPEN_CREATE : 0);
	int rc, ret;

	*out = NULL;
	c = calloc(1, sizeof(*c));
	if (!c || !(c->path = strdup(path))) {
		free(c);
		return iverr_set(e, ENOMEM, "out of memory");
	}
	auth_init(c);
	if (!create) {
		struct stat st;
		bool missing = stat(path, &st) < 0;
		if (missing || st.st_size == 0) {
			ret = iverr_set(e, IV_EDAMAGE, "catalog %s is %s: the store is damaged; "
					"restore catalog.db from a backup", path,
					missing ? "missing" : "empty");
			goto out_free;
		}
	}
	rc = sqlite3_open_v2(path, &c->db, flags, NULL);
	if (rc != SQLITE_OK) {
		ret = db_fail(c, rc, "cannot open", e);
		goto out_close;
	}
	sqlite3_extended_result_codes(c->db, 0);
	sqlite3_busy_timeout(c->db, 5000);
	/* synchronous = FULL: a commit is durable before a replaced blob is
	 * unlinked.  Reading the schema is the first real access: it finds a
	 * damaged file. */
	if ((ret = exec_sql(c, "PRAGMA journal_mode = WAL", "cannot open", e)) < 0 ||
	    (ret = exec_sql(c, "PRAGMA synchronous = FULL; PRAGMA foreign_keys = ON; PRAGMA cache_size = -32768;"
			    "PRAGMA secure_delete = ON; PRAGMA trusted_schema = OFF",
			    "cannot configure", e)) < 0 ||
	    (ret = catalog_migrate(c, e)) < 0)
		goto out_close;
	for (int i = 0; i < S_COUNT; i++) {
		rc = sqlite3_prepare_v3(c->db, stmt_sql[i], -1, SQLITE_PREPARE_PERSISTENT,
					&c->stmt[i], NULL);
		if (rc != SQLITE_OK) {
			ret = db_fail(c, rc, "preparing statements", e);
			goto out_close;
		}
	}
	/* From here on, a commit by any other connection is a write behind this
	 * process's back (it holds the store's lock): see auth_watch. */
	if ((ret = auth_watch(c, e)) < 0)
		goto out_close;
	*out = c;
	return 0;
out_close:
	catalog_close(c);
	return ret;
out_free:
	free(c->path);
	free(c);
	return ret;
}

void catalog_close(struct catalog *c)
{
	if (!c)
		return;
	for (int i = 0; i < S_COUNT; i++)
		sqlite3_finalize(c->stmt[i]);
	for (int i = 0; i < A_COUNT; i++) {
		sqlite3_finalize(c->auth_row[i]);
		sqlite3_finalize(c->auth_set[i]);
	}
	auth_keys_free(c);
	sqlite3_close(c->db);
	free(c->path);
	free(c);
}

int catalog_begin(struct catalog *c, struct iverr *e)
{
	int ret;

	if (c->depth++ > 0)
		return 0;
	catalog_read_end(c);   /* a write is never inside a read stretch */
	c->doomed = false;
	auth_pending_reset(c);
	ret = stmt_exec(c, stmt_get(c, S_BEGIN), "cannot begin a transaction", e);
	if (ret < 0)
		c->depth = 0;
	return ret;
}

int catalog_commit(struct catalog *c, struct iverr *e)
{
	int ret;

	if (--c->depth > 0)
		return 0;
	if (c->doomed) {
		stmt_exec(c, stmt_get(c, S_ROLLBACK), "rollback", NULL);
		auth_pending_reset(c);
		return iverr_set(e, EIO, "catalog %s: transaction rolled back", c->path);
	}
	/* The seals of the scopes it changed go in with it. */
	if ((ret = auth_pending_flush(c, e)) < 0) {
		stmt_exec(c, stmt_get(c, S_ROLLBACK), "rollback", NULL);
		auth_pending_reset(c);
		return ret;
	}
	ret = stmt_exec(c, stmt_get(c, S_COMMIT), "cannot commit", e);
	if (ret < 0)
		stmt_exec(c, stmt_get(c, S_ROLLBACK), "rollback", NULL);
	return ret;
}

void catalog_read_begin(struct catalog *c)
{
	if (c->depth == 0 && !c->reading)
		c->reading = exec_sql(c, "BEGIN", "reading", NULL) == 0;
}

void catalog_read_end(struct catalog *c)
{
	if (c->reading) {
		exec_sql(c, "COMMIT", "reading", NULL);
		c->reading = false;
	}
}

int catalog_commit_relaxed(struct catalog *c, struct iverr *e)
{
	int ret;

	if (c->depth > 1 || c->doomed)
		return catalog_commit(c, e);
	/* Not synced now: the next synchronous commit (or checkpoint) carries
	 * it to disk; a crash before then loses only this transaction. */
	if (exec_sql(c, "PRAGMA synchronous = NORMAL", "relaxing a commit", NULL) < 0)
		return catalog_commit(c, e);
	ret = catalog_commit(c, e);
	exec_sql(c, "PRAGMA synchronous = FULL", "restoring synchronous commits", NULL);
	return ret;
}

void catalog_rollback(struct catalog *c)
{
	if (--c->depth > 0) {
		c->doomed = true;
		return;
	}
	stmt_exec(c, stmt_get(c, S_ROLLBACK), "rollback", NULL);
	auth_pending_reset(c);
}

int catalog_check_integrity(struct catalog *c, struct iverr *e)
{
	sqlite3_stmt *st;
	int rc = sqlite3_prepare_v2(c->db, "PRAGMA integrity_check", -1, &st, NULL);
	int ret = 0;

	if (rc != SQLITE_OK)
		return db_fail(c, rc, "integrity check", e);
	rc = sqlite3_step(st);
	if (rc == SQLITE_ROW) {
		const char *r = (const char *)sqlite3_column_text(st, 0);
		if (!r || strcmp(r, "ok") != 0)
			ret = iverr_set(e, IV_EDAMAGE, "catalog %s is damaged: %s; restore "
					"catalog.db from a backup", c->path, r ? r : "?");
	} else {
		ret = db_fail(c, rc, "integrity check", e);
	}
	sqlite3_finalize(st);
	return ret;
}

int catalog_meta_get(struct catalog *c, const char *key, void *buf, size_t cap,
		     size_t *len, struct iverr *e)
{
	sqlite3_stmt *st = stmt_get(c, S_META_GET);
	int ret;

	sqlite3_bind_text(st, 1, key, -1, SQLITE_STATIC);
	if ((ret = stmt_row(c, st, "reading settings", e)) < 0)
		return ret;
	copy_blob(st, 0, buf, cap, len);
	sqlite3_reset(st);
	return 0;
}

int catalog_meta_set(struct catalog *c, const char *key, const void *val, size_t len,
		     struct iverr *e)
{
	sqlite3_stmt *st = stmt_get(c, S_META_SET);

	sqlite3_bind_text(st, 1, key, -1, SQLITE_STATIC);
	sqlite3_bind_blob(st, 2, val, (int)len, SQLITE_STATIC);
	return stmt_exec(c, st, "writing settings", e);
}

/* ---- users ---- */

static void bind_opt_blob(sqlite3_stmt *st, int i, const void *p, size_t n)
{
	if (n)
		sqlite3_bind_blob(st, i, p, (int)n, SQLITE_STATIC);
	else
		sqlite3_bind_null(st, i);
}

static void user_from_row(sqlite3_stmt *st, struct catalog_user *u)
{
	memset(u, 0, sizeof(*u));
	u->uid = (uint32_t)sqlite3_column_int64(st, 0);
	u->created = sqlite3_column_int64(st, 1);
	u->web_read = sqlite3_column_int(st, 2) != 0;
	u->quota = (uint64_t)sqlite3_column_int64(st, 3);
	u->key_epoch = sqlite3_column_int64(st, 4);
	u->rekey = (enum catalog_rekey)sqlite3_column_int(st, 5);
	copy_blob(st, 6, u->prev_uk, sizeof(u->prev_uk), &u->prev_uk_len);
}

int catalog_user_add(struct catalog *c, const struct catalog_user *u, struct iverr *e)
{
	sqlite3_stmt *st = stmt_get(c, S_USER_ADD);

	sqlite3_bind_int64(st, 1, u->uid);
	sqlite3_bind_int64(st, 2, u->created);
	sqlite3_bind_int(st, 3, u->web_read);
	sqlite3_bind_int64(st, 4, (int64_t)u->quota);
	sqlite3_bind_int64(st, 5, u->key_epoch);
	sqlite3_bind_int(st, 6, (int)u->rekey);
	bind_opt_blob(st, 7, u->prev_uk, u->prev_uk_len);
	int64_t rowid = u->uid;
	return auth_run(c, AUTH_OP_INSERT, A_USERS, &rowid, st, "adding a user", NULL, 0, 0, e);
}

int catalog_user_get(struct catalog *c, uint32_t uid, struct catalog_user *u,
		     struct iverr *e)
{
	sqlite3_stmt *st = stmt_get(c, S_USER_GET);
	int ret;

	sqlite3_bind_int64(st, 1, uid);
	if ((ret = stmt_row(c, st, "reading a user", e)) < 0)
		return ret;
	user_from_row(st, u);
	ret = auth_check_cols(c, A_USERS, st, NCOLS_USER, uid, e);
	sqlite3_reset(st);
	return ret;
}

int catalog_user_update(struct catalog *c, const struct catalog_user *u, struct iverr *e)
{
	sqlite3_stmt *st = stmt_get(c, S_USER_UPDATE);

	sqlite3_bind_int64(st, 1, u->uid);
	sqlite3_bind_int(st, 2, u->web_read);
	sqlite3_bind_int64(st, 3, (int64_t)u->quota);
	sqlite3_bind_int64(st, 4, u->key_epoch);
	sqlite3_bind_int(st, 5, (int)u->rekey);
	bind_opt_blob(st, 6, u->prev_uk, u->prev_uk_len);
	int64_t rowid = u->uid;
	return auth_run(c, AUTH_OP_UPDATE, A_USERS, &rowid, st, "updating a user", NULL, 0, 0, e);
}

int catalog_user_delete(struct catalog *c, uint32_t uid, struct iverr *e)
{
	sqlite3_stmt *st;
	int64_t rowid = uid;
	int ret;

	/* The vault's own rows go with its seal; the user's row leaves the
	 * store's. */
	if ((ret = catalog_begin(c, e)) < 0)
		return ret;
	if ((ret = catalog_auth_forget_scope(c, uid, e)) < 0) {
		catalog_rollback(c);
		return ret;
	}
	st = stmt_get(c, S_USER_DELETE);
	sqlite3_bind_int64(st, 1, uid);
	if ((ret = auth_run(c, AUTH_OP_DELETE, A_USERS, &rowid, st, "deleting a user", NULL, 0,
			    0, e)) < 0) {
		catalog_rollback(c);
		return ret;
	}
	return catalog_commit(c, e);
}

int catalog_user_list(struct catalog *c, catalog_user_fn fn, void *arg, struct iverr *e)
{
	sqlite3_stmt *st = stmt_get(c, S_USER_LIST);
	struct catalog_user u;
	int rc, ret = 0;

	while (!ret && (rc = sqlite3_step(st)) == SQLITE_ROW) {
		user_from_row(st, &u);
		if (auth_list_ok(c, A_USERS, st, NCOLS_USER, u.uid))
			ret = fn(&u, arg);
	}
	if (!ret && rc != SQLITE_DONE)
		ret = db_fail(c, rc, "listing users", e);
	sqlite3_reset(st);
	return ret;
}

int catalog_user_usage(struct catalog *c, uint32_t uid, uint64_t *images,
		       uint64_t *bytes, struct iverr *e)
{
	sqlite3_stmt *st = stmt_get(c, S_USER_USAGE);
	int ret;

	sqlite3_bind_int64(st, 1, uid);
	if ((ret = stmt_row(c, st, "counting usage", e)) < 0)
		return ret;
	*images = (uint64_t)sqlite3_column_int64(st, 0);
	*bytes = (uint64_t)sqlite3_column_int64(st, 1);
	sqlite3_reset(st);
	return 0;
}

/* ---- key slots ---- */

int catalog_slot_put(struct catalog *c, uint32_t uid, const struct key_slot *s,
		     struct iverr *e)
{
	sqlite3_stmt *st = stmt_get(c, S_SLOT_PUT);

	sqlite3_bind_int64(st, 1, uid);
	sqlite3_bind_int(st, 2, (int)s->kind);
	sqlite3_bind_blob(st, 3, s->salt, sizeof(s->salt), SQLITE_STATIC);
	sqlite3_bind_int64(st, 4, (int64_t)s->opslimit);
	sqlite3_bind_int64(st, 5, (int64_t)s->memlimit);
	sqlite3_bind_blob(st, 6, s->nonce, sizeof(s->nonce), SQLITE_STATIC);
	sqlite3_bind_blob(st, 7, s->wrapped, sizeof(s->wrapped), SQLITE_STATIC);
	/* INSERT OR REPLACE: the slot it replaces leaves the sum. */
	int64_t rowid = 0;
	const struct auth_dep old = { A_SLOTS, true,
		"SELECT rowid FROM key_slots WHERE uid = ?1 >> 8 AND kind = ?1 & 255" };
	return auth_run(c, AUTH_OP_INSERT, A_SLOTS, &rowid, st, "writing a key slot", &old, 1,
			((int64_t)uid << 8) | (s->kind & 255), e);
}

int catalog_slot_get(struct catalog *c, uint32_t uid, enum key_slot_kind kind,
		     struct key_slot *s, struct iverr *e)
{
	sqlite3_stmt *st = stmt_get(c, S_SLOT_GET);
	size_t n1, n2, n3;
	int ret;

	sqlite3_bind_int64(st, 1, uid);
	sqlite3_bind_int(st, 2, (int)kind);
	if ((ret = stmt_row(c, st, "reading a key slot", e)) < 0)
		return ret;
	memset(s, 0, sizeof(*s));
	s->kind = (enum key_slot_kind)sqlite3_column_int(st, 0);
	copy_blob(st, 1, s->salt, sizeof(s->salt), &n1);
	s->opslimit = (uint64_t)sqlite3_column_int64(st, 2);
	s->memlimit = (uint64_t)sqlite3_column_int64(st, 3);
	copy_blob(st, 4, s->nonce, sizeof(s->nonce), &n2);
	copy_blob(st, 5, s->wrapped, sizeof(s->wrapped), &n3);
	sqlite3_reset(st);
	if (n1 != sizeof(s->salt) || n2 != sizeof(s->nonce) || n3 != sizeof(s->wrapped))
		return iverr_set(e, IV_EDAMAGE, "catalog %s: key slot of uid %u is damaged",
				 c->path, uid);
	return 0;
}

int catalog_slot_delete(struct catalog *c, uint32_t uid, enum key_slot_kind kind,
			struct iverr *e)
{
	sqlite3_stmt *st;
	const struct auth_dep old = { A_SLOTS, true,
		"SELECT rowid FROM key_slots WHERE uid = ?1 >> 8 AND kind = ?1 & 255" };
	int64_t rowid = 0;
	int ret;

	if ((ret = catalog_begin(c, e)) < 0)
		return ret;
	/* The slot leaves the sum before its wrapped key is overwritten. */
	st = stmt_get(c, S_SLOT_WIPE);
	sqlite3_bind_int64(st, 1, uid);
	sqlite3_bind_int(st, 2, (int)kind);
	if ((ret = auth_run(c, AUTH_OP_DELETE, A_SLOTS, &rowid, st, "wiping a key slot", &old, 1,
			    ((int64_t)uid << 8) | (kind & 255), e)) < 0)
		goto out_rollback;
	st = stmt_get(c, S_SLOT_DELETE);
	sqlite3_bind_int64(st, 1, uid);
	sqlite3_bind_int(st, 2, (int)kind);
	if ((ret = stmt_exec(c, st, "deleting a key slot", e)) < 0)
		goto out_rollback;
	return catalog_commit(c, e);
out_rollback:
	catalog_rollback(c);
	return ret;
}

int catalog_slot_kinds(struct catalog *c, uint32_t uid, unsigned *mask, struct iverr *e)
{
	sqlite3_stmt *st = stmt_get(c, S_SLOT_KINDS);
	int rc;

	*mask = 0;
	sqlite3_bind_int64(st, 1, uid);
	while ((rc = sqlite3_step(st)) == SQLITE_ROW)
		*mask |= 1u << (sqlite3_column_int(st, 0) & 31);
	sqlite3_reset(st);
	return rc == SQLITE_DONE ? 0 : db_fail(c, rc, "listing key slots", e);
}

/* ---- albums ---- */

static void album_from_row(sqlite3_stmt *st, struct catalog_album *a)
{
	memset(a, 0, sizeof(*a));
	a->id = sqlite3_column_int64(st, 0);
	a->uid = (uint32_t)sqlite3_column_int64(st, 1);
	copy_blob(st, 2, a->pid, sizeof(a->pid), NULL);
	copy_blob(st, 3, a->name_idx, sizeof(a->name_idx), NULL);
	copy_blob(st, 4, a->name_enc, sizeof(a->name_enc), &a->name_enc_len);
	a->created = sqlite3_column_int64(st, 5);
}

int catalog_album_add(struct catalog *c, struct catalog_album *a, struct iverr *e)
{
	sqlite3_stmt *st = stmt_get(c, S_ALBUM_ADD);

	sqlite3_bind_int64(st, 1, a->uid);
	sqlite3_bind_blob(st, 2, a->pid, sizeof(a->pid), SQLITE_STATIC);
	sqlite3_bind_blob(st, 3, a->name_idx, sizeof(a->name_idx), SQLITE_STATIC);
	sqlite3_bind_blob(st, 4, a->name_enc, (int)a->name_enc_len, SQLITE_STATIC);
	sqlite3_bind_int64(st, 5, a->created);
	return auth_run(c, AUTH_OP_INSERT, A_ALBUMS, &a->id, st, "adding an album", NULL, 0, 0, e);
}

static int album_query(struct catalog *c, sqlite3_stmt *st, struct catalog_album *a,
		       struct iverr *e)
{
	int ret = stmt_row(c, st, "reading an album", e);
	if (ret < 0)
		return ret;
	album_from_row(st, a);
	ret = auth_check_cols(c, A_ALBUMS, st, NCOLS_ALBUM, a->id, e);
	sqlite3_reset(st);
	return ret;
}

int catalog_album_get(struct catalog *c, int64_t id, struct catalog_album *a,
		      struct iverr *e)
{
	sqlite3_stmt *st = stmt_get(c, S_ALBUM_GET);

	sqlite3_bind_int64(st, 1, id);
	return album_query(c, st, a, e);
}

int catalog_album_find(struct catalog *c, uint32_t uid,
		       const uint8_t idx[CATALOG_INDEX_LEN], struct catalog_album *a,
		       struct iverr *e)
{
	sqlite3_stmt *st = stmt_get(c, S_ALBUM_FIND);

	sqlite3_bind_int64(st, 1, uid);
	sqlite3_bind_blob(st, 2, idx, CATALOG_INDEX_LEN, SQLITE_STATIC);
	return album_query(c, st, a, e);
}

int catalog_album_update(struct catalog *c, const struct catalog_album *a, struct iverr *e)
{
	sqlite3_stmt *st = stmt_get(c, S_ALBUM_UPDATE);

	sqlite3_bind_int64(st, 1, a->id);
	sqlite3_bind_blob(st, 2, a->name_idx, sizeof(a->name_idx), SQLITE_STATIC);
	sqlite3_bind_blob(st, 3, a->name_enc, (int)a->name_enc_len, SQLITE_STATIC);
	int64_t rowid = a->id;
	return auth_run(c, AUTH_OP_UPDATE, A_ALBUMS, &rowid, st, "updating an album", NULL, 0, 0, e);
}

int catalog_album_delete(struct catalog *c, int64_t id, struct iverr *e)
{
	sqlite3_stmt *st = stmt_get(c, S_ALBUM_COUNT);
	int64_t n;
	int ret;

	sqlite3_bind_int64(st, 1, id);
	if ((ret = stmt_row(c, st, "counting images", e)) < 0)
		return ret;
	n = sqlite3_column_int64(st, 0);
	sqlite3_reset(st);
	if (n > 0)
		return -ENOTEMPTY;
	st = stmt_get(c, S_ALBUM_DELETE);
	sqlite3_bind_int64(st, 1, id);
	return auth_run(c, AUTH_OP_DELETE, A_ALBUMS, &id, st, "deleting an album", NULL, 0, 0, e);
}

int catalog_album_list(struct catalog *c, uint32_t uid, catalog_album_fn fn, void *arg,
		       struct iverr *e)
{
	sqlite3_stmt *st = stmt_get(c, S_ALBUM_LIST);
	struct catalog_album a;
	int rc = SQLITE_DONE, ret = 0;

	sqlite3_bind_int64(st, 1, uid);
	while (!ret && (rc = sqlite3_step(st)) == SQLITE_ROW) {
		album_from_row(st, &a);
		if (auth_list_ok(c, A_ALBUMS, st, NCOLS_ALBUM, a.id))
			ret = fn(&a, arg);
	}
	if (!ret && rc != SQLITE_DONE)
		ret = db_fail(c, rc, "listing albums", e);
	sqlite3_reset(st);
	return ret;
}

/* ---- images ---- */

static void image_from_row(sqlite3_stmt *st, struct catalog_image *im)
{
	memset(im, 0, sizeof(*im));
	im->id = sqlite3_column_int64(st, 0);
	im->uid = (uint32_t)sqlite3_column_int64(st, 1);
	im->album_id = sqlite3_column_int64(st, 2);
	copy_blob(st, 3, im->pid, sizeof(im->pid), NULL);
	copy_blob(st, 4, im->name_idx, sizeof(im->name_idx), NULL);
	copy_blob(st, 5, im->name_enc, sizeof(im->name_enc), &im->name_enc_len);
	im->current_version = sqlite3_column_int64(st, 6);
	im->pristine_version = sqlite3_column_int64(st, 7);
	im->damaged = sqlite3_column_int(st, 8) != 0;
	im->created = sqlite3_column_int64(st, 9);
	im->mtime = sqlite3_column_int64(st, 10);
}

int catalog_image_add(struct catalog *c, struct catalog_image *im, struct iverr *e)
{
	sqlite3_stmt *st = stmt_get(c, S_IMAGE_ADD);

	sqlite3_bind_int64(st, 1, im->uid);
	sqlite3_bind_int64(st, 2, im->album_id);
	sqlite3_bind_blob(st, 3, im->pid, sizeof(im->pid), SQLITE_STATIC);
	sqlite3_bind_blob(st, 4, im->name_idx, sizeof(im->name_idx), SQLITE_STATIC);
	sqlite3_bind_blob(st, 5, im->name_enc, (int)im->name_enc_len, SQLITE_STATIC);
	sqlite3_bind_int64(st, 6, im->current_version);
	sqlite3_bind_int64(st, 7, im->pristine_version);
	sqlite3_bind_int(st, 8, im->damaged);
	sqlite3_bind_int64(st, 9, im->created);
	sqlite3_bind_int64(st, 10, im->mtime);
	return auth_run(c, AUTH_OP_INSERT, A_IMAGES, &im->id, st, "adding an image", NULL, 0, 0, e);
}

static int image_query(struct catalog *c, sqlite3_stmt *st, struct catalog_image *im,
		       struct iverr *e)
{
	int ret = stmt_row(c, st, "reading an image", e);
	if (ret < 0)
		return ret;
	image_from_row(st, im);
	ret = auth_check_cols(c, A_IMAGES, st, NCOLS_IMAGE, im->id, e);
	sqlite3_reset(st);
	return ret;
}

int catalog_image_get(struct catalog *c, int64_t id, struct catalog_image *im,
		      struct iverr *e)
{
	sqlite3_stmt *st = stmt_get(c, S_IMAGE_GET);

	sqlite3_bind_int64(st, 1, id);
	return image_query(c, st, im, e);
}

int catalog_image_find(struct catalog *c, int64_t album_id,
		       const uint8_t idx[CATALOG_INDEX_LEN], struct catalog_image *im,
		       struct iverr *e)
{
	sqlite3_stmt *st = stmt_get(c, S_IMAGE_FIND);

	sqlite3_bind_int64(st, 1, album_id);
	sqlite3_bind_blob(st, 2, idx, CATALOG_INDEX_LEN, SQLITE_STATIC);
	return image_query(c, st, im, e);
}

int catalog_image_update(struct catalog *c, const struct catalog_image *im, struct iverr *e)
{
	sqlite3_stmt *st = stmt_get(c, S_IMAGE_UPDATE);

	sqlite3_bind_int64(st, 1, im->id);
	sqlite3_bind_int64(st, 2, im->album_id);
	sqlite3_bind_blob(st, 3, im->name_idx, sizeof(im->name_idx), SQLITE_STATIC);
	sqlite3_bind_blob(st, 4, im->name_enc, (int)im->name_enc_len, SQLITE_STATIC);
	sqlite3_bind_int64(st, 5, im->current_version);
	sqlite3_bind_int64(st, 6, im->pristine_version);
	sqlite3_bind_int(st, 7, im->damaged);
	sqlite3_bind_int64(st, 8, im->mtime);
	int64_t rowid = im->id;
	return auth_run(c, AUTH_OP_UPDATE, A_IMAGES, &rowid, st, "updating an image", NULL, 0, 0, e);
}

int catalog_image_delete(struct catalog *c, int64_t id, struct iverr *e)
{
	sqlite3_stmt *st = stmt_get(c, S_IMAGE_DELETE);
	/* Its versions, their thumbnails and its links go with it. */
	static const struct auth_dep gone[] = {
		{ A_THUMBS, true, "SELECT t.version_id FROM thumbs t JOIN versions v"
				  " ON v.id = t.version_id WHERE v.image_id = ?1" },
		{ A_VERSIONS, true, "SELECT id FROM versions WHERE image_id = ?1" },
		{ A_SHARES, true, "SELECT rowid FROM shares WHERE image_id = ?1" },
	};

	sqlite3_bind_int64(st, 1, id);
	return auth_run(c, AUTH_OP_DELETE, A_IMAGES, &id, st, "deleting an image", gone, 3, id, e);
}

static int image_iterate(struct catalog *c, sqlite3_stmt *st, catalog_image_fn fn,
			 void *arg, struct iverr *e)
{
	struct catalog_image im;
	int rc = SQLITE_DONE, ret = 0;

	while (!ret && (rc = sqlite3_step(st)) == SQLITE_ROW) {
		image_from_row(st, &im);
		if (auth_list_ok(c, A_IMAGES, st, NCOLS_IMAGE, im.id))
			ret = fn(&im, arg);
	}
	if (!ret && rc != SQLITE_DONE)
		ret = db_fail(c, rc, "listing images", e);
	sqlite3_reset(st);
	return ret;
}

int catalog_image_list(struct catalog *c, int64_t album_id, catalog_image_fn fn, void *arg,
		       struct iverr *e)
{
	sqlite3_stmt *st = stmt_get(c, S_IMAGE_LIST);

	sqlite3_bind_int64(st, 1, album_id);
	return image_iterate(c, st, fn, arg, e);
}

int catalog_image_list_user(struct catalog *c, uint32_t uid, catalog_image_fn fn,
			    void *arg, struct iverr *e)
{
	sqlite3_stmt *st = stmt_get(c, S_IMAGE_LIST_USER);

	sqlite3_bind_int64(st, 1, uid);
	return image_iterate(c, st, fn, arg, e);
}

/* ---- versions ---- */

static void version_from_row(sqlite3_stmt *st, struct catalog_version *v)
{
	memset(v, 0, sizeof(*v));
	v->id = sqlite3_column_int64(st, 0);
	v->image_id = sqlite3_column_int64(st, 1);
	copy_blob(st, 2, v->blob.b, sizeof(v->blob.b), NULL);
	v->size = (uint64_t)sqlite3_column_int64(st, 3);
	copy_blob(st, 4, v->attrs_enc, sizeof(v->attrs_enc), &v->attrs_enc_len);
	v->key_epoch = sqlite3_column_int64(st, 5);
	v->created = sqlite3_column_int64(st, 6);
}

int catalog_version_add(struct catalog *c, struct catalog_version *v, struct iverr *e)
{
	sqlite3_stmt *st = stmt_get(c, S_VERSION_ADD);

	sqlite3_bind_int64(st, 1, v->image_id);
	sqlite3_bind_blob(st, 2, v->blob.b, sizeof(v->blob.b), SQLITE_STATIC);
	sqlite3_bind_int64(st, 3, (int64_t)v->size);
	sqlite3_bind_blob(st, 4, v->attrs_enc, (int)v->attrs_enc_len, SQLITE_STATIC);
	sqlite3_bind_int64(st, 5, v->key_epoch);
	sqlite3_bind_int64(st, 6, v->created);
	return auth_run(c, AUTH_OP_INSERT, A_VERSIONS, &v->id, st, "adding a version", NULL, 0,
			0, e);
}

int catalog_version_get(struct catalog *c, int64_t id, struct catalog_version *v,
			struct iverr *e)
{
	sqlite3_stmt *st = stmt_get(c, S_VERSION_GET);
	int ret;

	sqlite3_bind_int64(st, 1, id);
	if ((ret = stmt_row(c, st, "reading a version", e)) < 0)
		return ret;
	version_from_row(st, v);
	ret = auth_check_cols(c, A_VERSIONS, st, NCOLS_VERSION, v->id, e);
	sqlite3_reset(st);
	return ret;
}

/* What a version's blob id is part of: the images pointing at it and its
 * thumbnail. */
static const struct auth_dep version_deps[] = {
	{ A_IMAGES, false, "SELECT id FROM images WHERE current_version = ?1"
			   " OR pristine_version = ?1" },
	{ A_THUMBS, false, "SELECT version_id FROM thumbs WHERE version_id = ?1" },
};

int catalog_version_update(struct catalog *c, const struct catalog_version *v,
			   struct iverr *e)
{
	sqlite3_stmt *st = stmt_get(c, S_VERSION_UPDATE);

	sqlite3_bind_int64(st, 1, v->id);
	sqlite3_bind_blob(st, 2, v->blob.b, sizeof(v->blob.b), SQLITE_STATIC);
	sqlite3_bind_int64(st, 3, (int64_t)v->size);
	sqlite3_bind_blob(st, 4, v->attrs_enc, (int)v->attrs_enc_len, SQLITE_STATIC);
	sqlite3_bind_int64(st, 5, v->key_epoch);
	sqlite3_bind_int64(st, 6, v->image_id);
	int64_t rowid = v->id;
	return auth_run(c, AUTH_OP_UPDATE, A_VERSIONS, &rowid, st, "updating a version",
			version_deps, 2, v->id, e);
}

int catalog_version_delete(struct catalog *c, int64_t id, struct iverr *e)
{
	sqlite3_stmt *st = stmt_get(c, S_VERSION_DELETE);
	/* Its thumbnail goes with it; images pointing at it are resealed. */
	static const struct auth_dep deps[] = {
		{ A_IMAGES, false, "SELECT id FROM images WHERE current_version = ?1"
				   " OR pristine_version = ?1" },
		{ A_THUMBS, true, "SELECT version_id FROM thumbs WHERE version_id = ?1" },
	};

	sqlite3_bind_int64(st, 1, id);
	return auth_run(c, AUTH_OP_DELETE, A_VERSIONS, &id, st, "deleting a version", deps, 2,
			id, e);
}

int catalog_version_list_user(struct catalog *c, uint32_t uid, int64_t after,
			      catalog_version_fn fn, void *arg, struct iverr *e)
{
	sqlite3_stmt *st = stmt_get(c, S_VERSION_LIST_USER);
	struct catalog_version v;
	int rc = SQLITE_DONE, ret = 0;

	sqlite3_bind_int64(st, 1, uid);
	sqlite3_bind_int64(st, 2, after);
	while (!ret && (rc = sqlite3_step(st)) == SQLITE_ROW) {
		version_from_row(st, &v);
		if (auth_list_ok(c, A_VERSIONS, st, NCOLS_VERSION, v.id))
			ret = fn(&v, arg);
	}
	if (!ret && rc != SQLITE_DONE)
		ret = db_fail(c, rc, "listing versions", e);
	sqlite3_reset(st);
	return ret;
}

int catalog_blob_referenced(struct catalog *c, const struct blob_id *id, bool *out,
			    struct iverr *e)
{
	sqlite3_stmt *st = stmt_get(c, S_BLOB_REF);
	int ret;

	sqlite3_bind_blob(st, 1, id->b, sizeof(id->b), SQLITE_STATIC);
	ret = stmt_row(c, st, "looking up a blob", e);
	sqlite3_reset(st);
	if (ret < 0 && ret != -ENOENT)
		return ret;
	*out = ret == 0;
	return 0;
}

/* ---- audit ---- */

static void audit_from_row(sqlite3_stmt *st, struct catalog_audit *a)
{
	memset(a, 0, sizeof(*a));
	a->seq = sqlite3_column_int64(st, 0);
	a->time = sqlite3_column_int64(st, 1);
	a->actor = sqlite3_column_int64(st, 2);
	a->subject = sqlite3_column_int64(st, 3);
	copy_text(st, 4, a->action, sizeof(a->action));
	copy_text(st, 5, a->object, sizeof(a->object));
	copy_text(st, 6, a->result, sizeof(a->result));
	copy_text(st, 7, a->detail, sizeof(a->detail));
	copy_blob(st, 8, a->hash, sizeof(a->hash), NULL);
}

int catalog_audit_insert(struct catalog *c, struct catalog_audit *a, struct iverr *e)
{
	sqlite3_stmt *st = stmt_get(c, S_AUDIT_INSERT);

	sqlite3_bind_int64(st, 1, a->time);
	sqlite3_bind_int64(st, 2, a->actor);
	sqlite3_bind_int64(st, 3, a->subject);
	sqlite3_bind_text(st, 4, a->action, -1, SQLITE_STATIC);
	sqlite3_bind_text(st, 5, a->object, -1, SQLITE_STATIC);
	sqlite3_bind_text(st, 6, a->result, -1, SQLITE_STATIC);
	sqlite3_bind_text(st, 7, a->detail, -1, SQLITE_STATIC);
	sqlite3_bind_blob(st, 8, a->hash, sizeof(a->hash), SQLITE_STATIC);
	sqlite3_bind_int64(st, 9, a->seq);
	return stmt_exec(c, st, "appending to the audit trail", e);
}

int catalog_audit_last(struct catalog *c, struct catalog_audit *a, struct iverr *e)
{
	sqlite3_stmt *st = stmt_get(c, S_AUDIT_LAST);
	int ret = stmt_row(c, st, "reading the audit trail", e);

	if (ret < 0)
		return ret;
	audit_from_row(st, a);
	sqlite3_reset(st);
	return 0;
}

int catalog_audit_get(struct catalog *c, int64_t seq, struct catalog_audit *a, struct iverr *e)
{
	sqlite3_stmt *st = stmt_get(c, S_AUDIT_GET);
	int ret;

	sqlite3_bind_int64(st, 1, seq);
	if ((ret = stmt_row(c, st, "reading the audit trail", e)) < 0)
		return ret;
	audit_from_row(st, a);
	sqlite3_reset(st);
	return 0;
}

int catalog_audit_list(struct catalog *c, catalog_audit_fn fn, void *arg, struct iverr *e)
{
	sqlite3_stmt *st = stmt_get(c, S_AUDIT_LIST);
	struct catalog_audit a;
	int rc = SQLITE_DONE, ret = 0;

	while (!ret && (rc = sqlite3_step(st)) == SQLITE_ROW) {
		audit_from_row(st, &a);
		ret = fn(&a, arg);
	}
	if (!ret && rc != SQLITE_DONE)
		ret = db_fail(c, rc, "reading the audit trail", e);
	sqlite3_reset(st);
	return ret;
}

/* ---- thumbnails ---- */

static void thumb_from_row(sqlite3_stmt *st, struct catalog_thumb *t)
{
	memset(t, 0, sizeof(*t));
	t->version_id = sqlite3_column_int64(st, 0);
	copy_blob(st, 1, t->blob.b, sizeof(t->blob.b), NULL);
	t->size = (uint64_t)sqlite3_column_int64(st, 2);
	copy_blob(st, 3, t->attrs_enc, sizeof(t->attrs_enc), &t->attrs_enc_len);
	t->key_epoch = sqlite3_column_int64(st, 4);
	t->created = sqlite3_column_int64(st, 5);
}

int catalog_thumb_put(struct catalog *c, const struct catalog_thumb *t, struct iverr *e)
{
	sqlite3_stmt *st = stmt_get(c, S_THUMB_PUT);

	sqlite3_bind_int64(st, 1, t->version_id);
	sqlite3_bind_blob(st, 2, t->blob.b, sizeof(t->blob.b), SQLITE_STATIC);
	sqlite3_bind_int64(st, 3, (int64_t)t->size);
	sqlite3_bind_blob(st, 4, t->attrs_enc, (int)t->attrs_enc_len, SQLITE_STATIC);
	sqlite3_bind_int64(st, 5, t->key_epoch);
	sqlite3_bind_int64(st, 6, t->created);
	/* INSERT OR REPLACE: the thumbnail it replaces leaves the sum. */
	static const struct auth_dep old = { A_THUMBS, true,
		"SELECT version_id FROM thumbs WHERE version_id = ?1" };
	int64_t rowid = t->version_id;
	return auth_run(c, AUTH_OP_INSERT, A_THUMBS, &rowid, st, "writing a thumbnail", &old, 1,
			t->version_id, e);
}

int catalog_thumb_get(struct catalog *c, int64_t version_id, struct catalog_thumb *t,
		      struct iverr *e)
{
	sqlite3_stmt *st = stmt_get(c, S_THUMB_GET);
	int ret;

	sqlite3_bind_int64(st, 1, version_id);
	if ((ret = stmt_row(c, st, "reading a thumbnail", e)) < 0)
		return ret;
	thumb_from_row(st, t);
	ret = auth_check_cols(c, A_THUMBS, st, NCOLS_THUMB, version_id, e);
	sqlite3_reset(st);
	return ret;
}

int catalog_thumb_delete(struct catalog *c, int64_t version_id, struct iverr *e)
{
	sqlite3_stmt *st = stmt_get(c, S_THUMB_DELETE);

	sqlite3_bind_int64(st, 1, version_id);
	return auth_run(c, AUTH_OP_DELETE, A_THUMBS, &version_id, st, "deleting a thumbnail",
			NULL, 0, 0, e);
}

int catalog_thumb_list_user(struct catalog *c, uint32_t uid, catalog_thumb_fn fn, void *arg,
			    struct iverr *e)
{
	sqlite3_stmt *st = stmt_get(c, S_THUMB_LIST_USER);
	struct catalog_thumb t;
	int rc = SQLITE_DONE, ret = 0;

	sqlite3_bind_int64(st, 1, uid);
	while (!ret && (rc = sqlite3_step(st)) == SQLITE_ROW) {
		thumb_from_row(st, &t);
		if (auth_list_ok(c, A_THUMBS, st, NCOLS_THUMB, t.version_id))
			ret = fn(&t, arg);
	}
	if (!ret && rc != SQLITE_DONE)
		ret = db_fail(c, rc, "listing thumbnails", e);
	sqlite3_reset(st);
	return ret;
}

int catalog_queue_push(struct catalog *c, int64_t version_id, uint32_t uid, int priority,
		       int64_t queued, struct iverr *e)
{
	sqlite3_stmt *st = stmt_get(c, S_QUEUE_PUSH);

	sqlite3_bind_int64(st, 1, version_id);
	sqlite3_bind_int64(st, 2, uid);
	sqlite3_bind_int(st, 3, priority);
	sqlite3_bind_int64(st, 4, queued);
	return stmt_exec(c, st, "queueing a thumbnail", e);
}

int catalog_queue_delete(struct catalog *c, int64_t version_id, struct iverr *e)
{
	sqlite3_stmt *st = stmt_get(c, S_QUEUE_DELETE);

	sqlite3_bind_int64(st, 1, version_id);
	return stmt_exec(c, st, "unqueueing a thumbnail", e);
}

int catalog_queue_list(struct catalog *c, uint32_t uid, int64_t *ids, size_t cap, size_t *n,
		       struct iverr *e)
{
	sqlite3_stmt *st = stmt_get(c, S_QUEUE_LIST);
	int rc = SQLITE_DONE;

	*n = 0;
	sqlite3_bind_int64(st, 1, uid);
	while (*n < cap && (rc = sqlite3_step(st)) == SQLITE_ROW)
		ids[(*n)++] = sqlite3_column_int64(st, 0);
	if (*n < cap && rc != SQLITE_DONE) {
		sqlite3_reset(st);
		return db_fail(c, rc, "reading the thumbnail queue", e);
	}
	sqlite3_reset(st);
	return 0;
}

int catalog_queue_count(struct catalog *c, uint32_t uid, uint64_t *n, struct iverr *e)
{
	sqlite3_stmt *st = stmt_get(c, S_QUEUE_COUNT);
	int ret;

	sqlite3_bind_int64(st, 1, uid);
	if ((ret = stmt_row(c, st, "counting the thumbnail queue", e)) < 0)
		return ret;
	*n = (uint64_t)sqlite3_column_int64(st, 0);
	sqlite3_reset(st);
	return 0;
}

/* ---- extended attributes and expiry (schema 3) ---- */

int catalog_image_text_get(struct catalog *c, int64_t id, enum catalog_text which,
			   uint8_t *buf, size_t cap, size_t *len, struct iverr *e)
{
	sqlite3_stmt *st = stmt_get(c, which == CATALOG_TAGS ? S_TAGS_GET : S_COMMENT_GET);
	int ret;

	if ((ret = auth_verify(c, A_IMAGES, id, e)) < 0)
		return ret;
	st = stmt_get(c, which == CATALOG_TAGS ? S_TAGS_GET : S_COMMENT_GET);
	sqlite3_bind_int64(st, 1, id);
	if ((ret = stmt_row(c, st, "reading an attribute", e)) < 0)
		return ret;
	if (sqlite3_column_type(st, 0) == SQLITE_NULL) {
		sqlite3_reset(st);
		return -ENODATA;
	}
	copy_blob(st, 0, buf, cap, len);
	sqlite3_reset(st);
	return 0;
}

int catalog_image_text_set(struct catalog *c, int64_t id, enum catalog_text which,
			   const uint8_t *val, size_t len, struct iverr *e)
{
	sqlite3_stmt *st = stmt_get(c, which == CATALOG_TAGS ? S_TAGS_SET : S_COMMENT_SET);

	sqlite3_bind_int64(st, 1, id);
	bind_opt_blob(st, 2, val, val ? len : 0);
	return auth_run(c, AUTH_OP_UPDATE, A_IMAGES, &id, st, "writing an attribute", NULL, 0, 0, e);
}

int catalog_image_expires_get(struct catalog *c, int64_t id, int64_t *when, struct iverr *e)
{
	sqlite3_stmt *st;
	int ret;

	if ((ret = auth_verify(c, A_IMAGES, id, e)) < 0)
		return ret;
	st = stmt_get(c, S_EXPIRES_GET);
	sqlite3_bind_int64(st, 1, id);
	if ((ret = stmt_row(c, st, "reading an expiry", e)) < 0)
		return ret;
	*when = sqlite3_column_int64(st, 0);
	sqlite3_reset(st);
	return 0;
}

int catalog_image_expires_set(struct catalog *c, int64_t id, int64_t when, struct iverr *e)
{
	sqlite3_stmt *st = stmt_get(c, S_EXPIRES_SET);

	sqlite3_bind_int64(st, 1, id);
	sqlite3_bind_int64(st, 2, when);
	return auth_run(c, AUTH_OP_UPDATE, A_IMAGES, &id, st, "writing an expiry", NULL, 0, 0, e);
}

int catalog_expired(struct catalog *c, uint32_t uid, int64_t now, int64_t *ids, size_t cap,
		    size_t *n, struct iverr *e)
{
	sqlite3_stmt *st = stmt_get(c, S_EXPIRED);
	int rc = SQLITE_DONE;

	*n = 0;
	sqlite3_bind_int64(st, 1, uid);
	sqlite3_bind_int64(st, 2, now);
	sqlite3_bind_int64(st, 3, (int64_t)cap);
	while (*n < cap && (rc = sqlite3_step(st)) == SQLITE_ROW)
		ids[(*n)++] = sqlite3_column_int64(st, 0);
	sqlite3_reset(st);
	if (rc != SQLITE_DONE && rc != SQLITE_ROW)
		return db_fail(c, rc, "listing expired images", e);
	/* An expiry set by an edit of catalog.db deletes nothing: only images
	 * whose row verifies are handed out. */
	size_t kept = 0;
	for (size_t i = 0; i < *n; i++) {
		struct iverr ignored = { 0 };
		if (auth_verify(c, A_IMAGES, ids[i], &ignored) == 0)
			ids[kept++] = ids[i];
	}
	*n = kept;
	return 0;
}
