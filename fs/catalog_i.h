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
	S_AUDIT_INSERT, S_AUDIT_LAST, S_AUDIT_LIST,
	S_THUMB_PUT, S_THUMB_GET, S_THUMB_DELETE, S_THUMB_LIST_USER,
	S_QUEUE_PUSH, S_QUEUE_DELETE, S_QUEUE_LIST, S_QUEUE_COUNT,
	S_TAGS_GET, S_TAGS_SET, S_COMMENT_GET, S_COMMENT_SET, S_EXPIRES_GET, S_EXPIRES_SET,
	S_EXPIRED,
	S_SIGNKEY_ADD, S_SIGNKEY_GET, S_SIGNKEY_LIST, S_SIGNKEY_RETIRE, S_SIGNKEY_RESEAL,
	S_PARTNER_ADD, S_PARTNER_GET, S_PARTNER_FIND, S_PARTNER_LIST, S_PARTNER_UPDATE,
	S_SHARE_ADD, S_SHARE_GET, S_SHARE_LIST, S_SHARE_REVOKE_ID, S_SHARE_REVOKE_IMAGE,
	S_SHARE_REVOKE_PARTNER, S_SHARE_USE, S_SHARE_PURGE,
	S_BEGIN, S_COMMIT, S_ROLLBACK,
	S_COUNT
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

#endif
