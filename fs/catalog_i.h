/*
 * catalog_i.h — internals shared by catalog.c (schema, users, content) and
 * catalog_share.c (share links).  Not an API.
 */
#ifndef IMGVAULT_CATALOG_I_H
#define IMGVAULT_CATALOG_I_H

#include <sqlite3.h>

#include "catalog.h"

enum stmt {
	S_META_GET, S_META_SET,
	S_USER_ADD, S_USER_GET, S_USER_UPDATE, S_USER_DELETE, S_USER_LIST, S_USER_USAGE,
	S_SLOT_PUT, S_SLOT_GET, S_SLOT_WIPE, S_SLOT_DELETE, S_SLOT_KINDS,
	S_ALBUM_ADD, S_ALBUM_GET, S_ALBUM_FIND, S_ALBUM_UPDATE, S_ALBUM_COUNT,
	S_ALBUM_DELETE, S_ALBUM_LIST,
	S_IMAGE_ADD, S_IMAGE_GET, S_IMAGE_FIND, S_IMAGE_UPDATE, S_IMAGE_DELETE,
	S_IMAGE_LIST, S_IMAGE_LIST_USER,
	S_VERSION_ADD, S_VERSION_GET, S_VERSION_UPDATE, S_VERSION_DELETE,
	S_VERSION_LIST_USER, S_BLOB_REF,
	S_AUDIT_INSERT, S_AUDIT_LAST, S_AUDIT_LIST, S_AUDIT_GET,
	S_THUMB_PUT, S_THUMB_GET, S_THUMB_DELETE, S_THUMB_LIST_USER,
	S_QUEUE_PUSH, S_QUEUE_DELETE, S_QUEUE_LIST, S_QUEUE_COUNT,
	S_TAGS_GET, S_TAGS_SET, S_COMMENT_GET, S_COMMENT_SET, S_EXPIRES_GET, S_EXPIRES_SET,
	S_EXPIRED,
	S_SIGNKEY_ADD, S_SIGNKEY_GET, S_SIGNKEY_LIST, S_SIGNKEY_RETIRE, S_SIGNKEY_RESEAL,
	S_PARTNER_ADD, S_PARTNER_GET, S_PARTNER_FIND, S_PARTNER_LIST, S_PARTNER_UPDATE,
	S_SHARE_ADD, S_SHARE_GET, S_SHARE_LIST, S_SHARE_REVOKE_ID, S_SHARE_REVOKE_IMAGE,
	S_SHARE_REVOKE_PARTNER, S_SHARE_USE,
	S_STATE_GET, S_STATE_PUT, S_STATE_DELETE, S_DATA_VERSION,
	S_BEGIN, S_COMMIT, S_ROLLBACK,
	S_COUNT
};

/* The authenticated tables (catalog_auth.c). */
enum auth_tab {
	A_USERS, A_SLOTS, A_ALBUMS, A_IMAGES, A_VERSIONS, A_THUMBS, A_SIGNKEYS,
	A_PARTNERS, A_SHARES, A_COUNT
};

/*
 * What each authenticated table's MAC covers (docs/FORMAT.md §6.5): its FROM
 * clause (joins reach what a row must not be moved away from), and the
 * select list: the row's scope, the authenticated columns in MAC order, the
 * stored MAC.  catalog.c appends the select list to its own queries so that
 * a row is verified as it is read.
 */
#define AUTH_FROM_USERS "users u"
#define AUTH_SEL_USERS "-1, u.uid, u.created, u.web_read, u.quota, u.key_epoch, u.rekey," \
	" u.prev_uk, u.mac"
#define AUTH_FROM_SLOTS "key_slots k"
#define AUTH_SEL_SLOTS "k.uid, k.uid, k.kind, k.salt, k.opslimit, k.memlimit, k.nonce," \
	" k.wrapped, k.mac"
#define AUTH_FROM_ALBUMS "albums a"
#define AUTH_SEL_ALBUMS "a.uid, a.uid, a.pid, a.name_idx, a.name_enc, a.created, a.mac"
#define AUTH_FROM_IMAGES "images i LEFT JOIN albums a ON a.id = i.album_id" \
	" LEFT JOIN versions cv ON cv.id = i.current_version" \
	" LEFT JOIN versions pv ON pv.id = i.pristine_version"
#define AUTH_SEL_IMAGES "i.uid, i.uid, a.pid, i.pid, i.name_idx, i.name_enc," \
	" i.current_version <> 0, cv.blob_id, i.pristine_version <> 0, pv.blob_id," \
	" i.created, i.mtime, i.tags_enc, i.comment_enc, i.expires, i.mac"
#define AUTH_FROM_VERSIONS "versions v LEFT JOIN images i ON i.id = v.image_id"
#define AUTH_SEL_VERSIONS "i.uid, i.pid, v.blob_id, v.size, v.attrs_enc, v.key_epoch," \
	" v.created, v.mac"
#define AUTH_FROM_THUMBS "thumbs t LEFT JOIN versions v ON v.id = t.version_id" \
	" LEFT JOIN images i ON i.id = v.image_id"
#define AUTH_SEL_THUMBS "i.uid, v.blob_id, t.blob_id, t.size, t.attrs_enc, t.key_epoch," \
	" t.created, t.mac"
#define AUTH_FROM_SIGNKEYS "signing_keys s"
#define AUTH_SCOPE_SIGNKEYS "CASE WHEN s.owner < 0 THEN -1 ELSE s.owner END"
#define AUTH_SEL_SIGNKEYS AUTH_SCOPE_SIGNKEYS ", s.kid, s.owner, s.public, s.secret_enc," \
	" s.created, s.retired, s.mac"
#define AUTH_FROM_PARTNERS "partners p"
#define AUTH_SEL_PARTNERS "-1, p.id, p.name, p.cidrs, p.ttl, p.max_ttl, p.disabled," \
	" p.created, p.mac"
#define AUTH_FROM_SHARES "shares s LEFT JOIN images i ON i.id = s.image_id"
#define AUTH_SEL_SHARES "s.uid, s.tid, s.kid, s.uid, i.pid, s.variant, s.disposition," \
	" s.not_before, s.expires, s.partner_id, s.uses_max, s.uses, s.created, s.revoked," \
	" s.served, s.mac"

#define AUTH_WATCH_MS 10     /* how often auth_watch looks at most */
#define AUTH_STMT_CACHE 24   /* the dependent-row queries of catalog*.c */

/* A scope's key, in sodium_malloc memory; set by catalog_auth_key_set. */
struct auth_key {
	int64_t scope;
	uint8_t *key;
	unsigned refs;
	bool sealed;       /* the scope has a seal: its rows are authenticated */
	bool broken;       /* its rows changed behind our back and fail the seal */
};

/* What the open transaction changed in one scope's commitment. */
struct auth_pending {
	int64_t scope;
	uint8_t sum[32];
	int64_t rows;
};

struct catalog {
	sqlite3 *db;
	char *path;
	sqlite3_stmt *stmt[S_COUNT];
	sqlite3_stmt *auth_row[A_COUNT];   /* prepared on first use */
	sqlite3_stmt *auth_set[A_COUNT];
	int auth_ncols[A_COUNT];           /* columns of each AUTH_SEL_* list */
	struct { const char *sql; sqlite3_stmt *st; } auth_cache[AUTH_STMT_CACHE];
	int depth;         /* transaction nesting */
	bool reading;      /* inside catalog_read_begin */
	bool doomed;       /* an inner rollback happened */
	struct auth_key *keys;
	size_t nkeys;
	struct auth_pending *pending;
	size_t npending;
	bool lenient;      /* reads hand out rows that fail (fsck) */
	int64_t data_version;   /* PRAGMA data_version when last looked at */
	int64_t watched_ms;     /* … and when (CLOCK_MONOTONIC_COARSE) */
	uint64_t hidden;        /* rows listings left out (they fail) */
};

/* Maps a sqlite failure onto an errno and a message in @e. */
int db_fail(struct catalog *c, int rc, const char *what, struct iverr *e);
/* The prepared statement @s, reset, with no bindings. */
sqlite3_stmt *stmt_get(struct catalog *c, enum stmt s);
/* Runs a statement that returns no rows. */
int stmt_exec(struct catalog *c, sqlite3_stmt *st, const char *what, struct iverr *e);
/* Steps to the one expected row: 0, -ENOENT, or a failure. */
int stmt_row(struct catalog *c, sqlite3_stmt *st, const char *what, struct iverr *e);
/* Copies a blob column, at most @cap bytes (*len may be NULL). */
void copy_blob(sqlite3_stmt *st, int col, uint8_t *dst, size_t cap, size_t *len);
void copy_text(sqlite3_stmt *st, int col, char *dst, size_t cap);
/* Rows changed by the last statement. */
int catalog_changes(struct catalog *c);

/*
 * Authentication of rows (catalog_auth.c).  A change to a row of an
 * authenticated table is bracketed: auth_before (an update: the row must
 * verify; its element leaves the sum) or auth_forget (a deletion: it leaves
 * the sum as recorded), the statement, then auth_after (the new MAC is
 * written and its element joins the sum).  All inside one transaction; the
 * sums are written by auth_pending_flush at the outermost commit.  A scope
 * without a key is left alone while it is not sealed, and refused (-EACCES)
 * once it is.
 */
int auth_before(struct catalog *c, enum auth_tab t, int64_t rowid, struct iverr *e);
int auth_forget(struct catalog *c, enum auth_tab t, int64_t rowid, struct iverr *e);
int auth_after(struct catalog *c, enum auth_tab t, int64_t rowid, struct iverr *e);
/* Calls @fn with each rowid @sql selects (collected first). */
int auth_each_rowid(struct catalog *c, const char *sql, int64_t arg,
		    int (*fn)(struct catalog *c, int64_t rowid, void *ctx), void *ctx,
		    struct iverr *e);
/* The number of columns of AUTH_SEL_<table>: scope, columns, MAC. */
int auth_ncols(const struct catalog *c, enum auth_tab t);
/* Fills what auth_ncols answers (catalog_open). */
void auth_init(struct catalog *c);
/* Verifies row @rowid of @t by reading it again (-IV_EDAMAGE when it fails
 * under a key the catalog holds). */
int auth_verify(struct catalog *c, enum auth_tab t, int64_t rowid, struct iverr *e);
/* Verifies the row whose appended columns start at @col: -IV_EDAMAGE
 * naming @rowid when its MAC fails under a key the catalog holds. */
int auth_check_cols(struct catalog *c, enum auth_tab t, sqlite3_stmt *st, int col,
		    int64_t rowid, struct iverr *e);
/* For listings: whether a row goes to the caller — it verifies, or the
 * catalog is lenient (fsck).  A row that fails is left out: it is named
 * when it is looked up by itself, at unlock and by fsck. */
bool auth_list_ok(struct catalog *c, enum auth_tab t, sqlite3_stmt *st, int col,
		  int64_t rowid);
/*
 * Runs the bound statement @st as one change of row *@rowid of @t (an
 * insert sets *rowid), in a transaction, with the authentication around
 * it: rows that depend on it (@deps, each selected by its SQL with ?1 =
 * @dep_arg) are taken out before and resealed after, or forgotten when
 * the statement deletes them (gone).  A change that fails before the
 * statement ran leaves an enclosing transaction usable.
 */
enum auth_op { AUTH_OP_INSERT, AUTH_OP_UPDATE, AUTH_OP_DELETE };
struct auth_dep {
	enum auth_tab t;
	bool gone;
	const char *sql;
};
int auth_run(struct catalog *c, enum auth_op op, enum auth_tab t, int64_t *rowid,
	     sqlite3_stmt *st, const char *what, const struct auth_dep *deps, size_t ndeps,
	     int64_t dep_arg, struct iverr *e);
/* The statement of @sql, prepared once per catalog and reset: @sql must be
 * a string constant (it is kept by address). */
sqlite3_stmt *auth_cached_stmt(struct catalog *c, const char *sql, struct iverr *e);
int auth_pending_flush(struct catalog *c, struct iverr *e);
/*
 * Looks whether another connection committed to catalog.db since the last
 * look (PRAGMA data_version).  The process holds the store's lock, so that is
 * someone writing the store behind its back: every sealed scope it holds a
 * key for is checked again, and one whose rows no longer match its seal
 * (rows removed, added or rolled back) is refused from then on.
 */
int auth_watch(struct catalog *c, struct iverr *e);
void auth_pending_reset(struct catalog *c);
void auth_keys_free(struct catalog *c);

#endif
