/*
 * The authenticated catalog (catalog.h, "Authentication"; docs/FORMAT.md §6.5).
 *
 * Every row that decides which bytes a name shows, who may read, or what a
 * link serves carries a MAC over its authenticated columns, under the key
 * of its scope: a user's vault (uid >= 0) or the store (CATALOG_SCOPE_STORE).
 * The columns include what the row must not be moved away from (an image's
 * album pid, the blob ids of its versions …), read through joins, so a row
 * cannot be repointed without its MAC failing.  Each scope keeps a
 * commitment in auth_state: the sum, modulo 2^256, of a keyed hash of every
 * MAC in it, plus the row count, sealed with a tag; a row added, removed or
 * rolled back changes the sum.  Changes to it are gathered during a
 * transaction and written at its outermost commit.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <sodium.h>

#include "bytes.h"
#include "catalog_i.h"

#define MAC_LEN 32

static const char row_domain[] = "imgvault-row-v1";
static const char elem_domain[] = "imgvault-elem-v1";
static const char state_domain[] = "imgvault-state-v1";

struct auth_table {
	const char *tag;     /* the MAC's domain: the table's name */
	const char *table;
	const char *alias;
	const char *from;
	const char *scope;   /* expression giving the row's scope */
	const char *sel;     /* scope, authenticated columns in MAC order, MAC */
};

static const struct auth_table tables[A_COUNT] = {
	[A_USERS] = { "users", "users", "u", AUTH_FROM_USERS, "-1", AUTH_SEL_USERS },
	[A_SLOTS] = { "key_slots", "key_slots", "k", AUTH_FROM_SLOTS, "k.uid", AUTH_SEL_SLOTS },
	[A_ALBUMS] = { "albums", "albums", "a", AUTH_FROM_ALBUMS, "a.uid", AUTH_SEL_ALBUMS },
	[A_IMAGES] = { "images", "images", "i", AUTH_FROM_IMAGES, "i.uid", AUTH_SEL_IMAGES },
	[A_VERSIONS] = { "versions", "versions", "v", AUTH_FROM_VERSIONS, "i.uid",
			 AUTH_SEL_VERSIONS },
	[A_THUMBS] = { "thumbs", "thumbs", "t", AUTH_FROM_THUMBS, "i.uid", AUTH_SEL_THUMBS },
	[A_SIGNKEYS] = { "signing_keys", "signing_keys", "s", AUTH_FROM_SIGNKEYS,
			 AUTH_SCOPE_SIGNKEYS, AUTH_SEL_SIGNKEYS },
	[A_PARTNERS] = { "partners", "partners", "p", AUTH_FROM_PARTNERS, "-1",
			 AUTH_SEL_PARTNERS },
	[A_SHARES] = { "shares", "shares", "s", AUTH_FROM_SHARES, "s.uid", AUTH_SEL_SHARES },
};

/* Columns of a select list: top-level commas + 1. */
static int col_count(const char *cols)
{
	int n = 1;
	int depth = 0;

	for (const char *p = cols; *p; p++) {
		if (*p == '(')
			depth++;
		else if (*p == ')')
			depth--;
		else if (*p == ',' && depth == 0)
			n++;
	}
	return n;
}

int auth_ncols(const struct catalog *c, enum auth_tab t)
{
	return c->auth_ncols[t];
}

void auth_init(struct catalog *c)
{
	for (int t = 0; t < A_COUNT; t++)
		c->auth_ncols[t] = col_count(tables[t].sel);
}

static int state_read(struct catalog *c, int64_t scope, uint8_t sum[32], int64_t *rows,
		      uint8_t tag[32], struct iverr *e);
struct auth_key;
static void state_tag(const struct auth_key *k, int64_t scope, const uint8_t sum[32],
		      int64_t rows, uint8_t out[32]);

/* ---- keys ---- */

static struct auth_key *key_find(struct catalog *c, int64_t scope)
{
	for (size_t i = 0; i < c->nkeys; i++)
		if (c->keys[i].scope == scope)
			return &c->keys[i];
	return NULL;
}

int catalog_auth_key_set(struct catalog *c, int64_t scope, const uint8_t key[32],
			 struct iverr *e)
{
	struct auth_key *k = key_find(c, scope);

	if (!k) {
		struct auth_key *n = realloc(c->keys, (c->nkeys + 1) * sizeof(*n));
		if (!n)
			return iverr_set(e, ENOMEM, "out of memory");
		c->keys = n;
		k = &c->keys[c->nkeys];
		memset(k, 0, sizeof(*k));
		if (!(k->key = sodium_malloc(MAC_LEN)))
			return iverr_set(e, ENOMEM, "out of memory");
		k->scope = scope;
		c->nkeys++;
	}
	memcpy(k->key, key, MAC_LEN);
	k->refs++;
	return catalog_auth_sealed(c, scope, &k->sealed, e);
}

int catalog_auth_key_fits(struct catalog *c, int64_t scope, const uint8_t key[32], bool *fits,
			  struct iverr *e)
{
	struct auth_key k = { .scope = scope, .key = (uint8_t *)key };
	uint8_t sum[MAC_LEN], tag[MAC_LEN], want[MAC_LEN];
	int64_t rows;
	int ret = state_read(c, scope, sum, &rows, tag, e);

	*fits = false;
	if (ret < 0)
		return ret;
	state_tag(&k, scope, sum, rows, want);
	*fits = sodium_memcmp(want, tag, MAC_LEN) == 0;
	return 0;
}

void catalog_auth_key_drop(struct catalog *c, int64_t scope)
{
	for (size_t i = 0; i < c->nkeys; i++) {
		if (c->keys[i].scope != scope || --c->keys[i].refs > 0)
			continue;
		sodium_free(c->keys[i].key);
		c->keys[i] = c->keys[--c->nkeys];
		return;
	}
}

bool catalog_auth_has_key(struct catalog *c, int64_t scope)
{
	return key_find(c, scope) != NULL;
}

void auth_keys_free(struct catalog *c)
{
	for (size_t i = 0; i < AUTH_STMT_CACHE; i++)
		sqlite3_finalize(c->auth_cache[i].st);
	memset(c->auth_cache, 0, sizeof(c->auth_cache));
	for (size_t i = 0; i < c->nkeys; i++)
		sodium_free(c->keys[i].key);
	free(c->keys);
	c->keys = NULL;
	c->nkeys = 0;
	free(c->pending);
	c->pending = NULL;
	c->npending = 0;
}

/* ---- the MAC of a row ---- */

static void hash_u64(crypto_generichash_state *h, uint64_t v)
{
	uint8_t b[8];

	put_le64(b, v);
	crypto_generichash_update(h, b, 8);
}

/* The canonical encoding of one column: its type, then an integer as LE64,
 * or text and blobs as LE32 length || bytes; NULL is the type alone. */
static void hash_column(crypto_generichash_state *h, sqlite3_stmt *st, int col)
{
	uint8_t type = 0, len[4];
	int kind = sqlite3_column_type(st, col);

	switch (kind) {
	case SQLITE_INTEGER:
		type = 1;
		crypto_generichash_update(h, &type, 1);
		hash_u64(h, (uint64_t)sqlite3_column_int64(st, col));
		return;
	case SQLITE_BLOB:
	case SQLITE_TEXT: {
		const void *p = kind == SQLITE_BLOB ? sqlite3_column_blob(st, col)
						    : (const void *)sqlite3_column_text(st, col);
		uint32_t n = (uint32_t)sqlite3_column_bytes(st, col);
		type = kind == SQLITE_BLOB ? 2 : 3;
		crypto_generichash_update(h, &type, 1);
		put_le32(len, n);
		crypto_generichash_update(h, len, 4);
		if (n)
			crypto_generichash_update(h, p, n);
		return;
	}
	case SQLITE_FLOAT:   /* never written by imgvault: hashed as its own type */
		type = 4;
		crypto_generichash_update(h, &type, 1);
		hash_u64(h, (uint64_t)sqlite3_column_int64(st, col));
		return;
	default:
		crypto_generichash_update(h, &type, 1);
	}
}

/* MAC of the row at @st whose scope column is @col: H(key; domain || table
 * || LE64 scope || columns). */
static void row_mac(const struct catalog *c, const struct auth_key *k, enum auth_tab t,
		    sqlite3_stmt *st, int col, uint8_t out[MAC_LEN])
{
	crypto_generichash_state h;
	const char *tag = tables[t].tag;
	int n = auth_ncols(c, t) - 2;

	crypto_generichash_init(&h, k->key, MAC_LEN, MAC_LEN);
	crypto_generichash_update(&h, (const uint8_t *)row_domain, sizeof(row_domain));
	crypto_generichash_update(&h, (const uint8_t *)tag, strlen(tag) + 1);
	hash_u64(&h, (uint64_t)sqlite3_column_int64(st, col));
	for (int i = 0; i < n; i++)
		hash_column(&h, st, col + 1 + i);
	crypto_generichash_final(&h, out, MAC_LEN);
	sodium_memzero(&h, sizeof(h));
}

/* The element a MAC adds to its scope's sum: hidden behind the key, so the
 * sum cannot be adjusted by someone who sees the MACs. */
static void elem_of(const struct auth_key *k, const uint8_t mac[MAC_LEN], uint8_t out[MAC_LEN])
{
	crypto_generichash_state h;

	crypto_generichash_init(&h, k->key, MAC_LEN, MAC_LEN);
	crypto_generichash_update(&h, (const uint8_t *)elem_domain, sizeof(elem_domain));
	crypto_generichash_update(&h, mac, MAC_LEN);
	crypto_generichash_final(&h, out, MAC_LEN);
	sodium_memzero(&h, sizeof(h));
}

static void state_tag(const struct auth_key *k, int64_t scope, const uint8_t sum[MAC_LEN],
		      int64_t rows, uint8_t out[MAC_LEN])
{
	crypto_generichash_state h;

	crypto_generichash_init(&h, k->key, MAC_LEN, MAC_LEN);
	crypto_generichash_update(&h, (const uint8_t *)state_domain, sizeof(state_domain));
	hash_u64(&h, (uint64_t)scope);
	crypto_generichash_update(&h, sum, MAC_LEN);
	hash_u64(&h, (uint64_t)rows);
	crypto_generichash_final(&h, out, MAC_LEN);
	sodium_memzero(&h, sizeof(h));
}

/* acc += x (sub: acc -= x), little-endian 256-bit arithmetic. */
static void sum_add(uint8_t acc[MAC_LEN], const uint8_t x[MAC_LEN], bool sub)
{
	if (sub) {
		/* acc - x = acc + (~x + 1) */
		uint8_t neg[MAC_LEN];
		unsigned carry = 1;
		for (int i = 0; i < MAC_LEN; i++) {
			unsigned v = (uint8_t)~x[i] + carry;
			neg[i] = (uint8_t)v;
			carry = v >> 8;
		}
		sum_add(acc, neg, false);
		return;
	}
	unsigned carry = 0;
	for (int i = 0; i < MAC_LEN; i++) {
		unsigned v = acc[i] + x[i] + carry;
		acc[i] = (uint8_t)v;
		carry = v >> 8;
	}
}

/* ---- the commitment of each scope ---- */

static struct auth_pending *pending_of(struct catalog *c, int64_t scope, struct iverr *e)
{
	for (size_t i = 0; i < c->npending; i++)
		if (c->pending[i].scope == scope)
			return &c->pending[i];
	struct auth_pending *n = realloc(c->pending, (c->npending + 1) * sizeof(*n));
	if (!n) {
		iverr_set(e, ENOMEM, "out of memory");
		return NULL;
	}
	c->pending = n;
	n = &c->pending[c->npending++];
	memset(n, 0, sizeof(*n));
	n->scope = scope;
	return n;
}

static int pending_note(struct catalog *c, const struct auth_key *k, const uint8_t mac[MAC_LEN],
			bool remove, struct iverr *e)
{
	struct auth_pending *p = pending_of(c, k->scope, e);
	uint8_t el[MAC_LEN];

	if (!p)
		return -ENOMEM;
	elem_of(k, mac, el);
	sum_add(p->sum, el, remove);
	p->rows += remove ? -1 : 1;
	return 0;
}

void auth_pending_reset(struct catalog *c)
{
	c->npending = 0;
}

/* Reads a scope's state: -ENOENT when it has none (not sealed yet). */
static int state_read(struct catalog *c, int64_t scope, uint8_t sum[MAC_LEN], int64_t *rows,
		      uint8_t tag[MAC_LEN], struct iverr *e)
{
	sqlite3_stmt *st = stmt_get(c, S_STATE_GET);
	size_t n1 = 0, n2 = 0;
	int ret;

	sqlite3_bind_int64(st, 1, scope);
	if ((ret = stmt_row(c, st, "reading the catalog's seal", e)) < 0)
		return ret;
	copy_blob(st, 0, sum, MAC_LEN, &n1);
	*rows = sqlite3_column_int64(st, 1);
	copy_blob(st, 2, tag, MAC_LEN, &n2);
	sqlite3_reset(st);
	if (n1 != MAC_LEN || n2 != MAC_LEN)
		return iverr_set(e, IV_EDAMAGE, "catalog %s: the seal of %s is damaged; run "
				 "imgvault fsck", c->path, scope < 0 ? "the store" : "a vault");
	return 0;
}

static int state_write(struct catalog *c, const struct auth_key *k, const uint8_t sum[MAC_LEN],
		       int64_t rows, struct iverr *e)
{
	sqlite3_stmt *st = stmt_get(c, S_STATE_PUT);
	uint8_t tag[MAC_LEN];

	state_tag(k, k->scope, sum, rows, tag);
	sqlite3_bind_int64(st, 1, k->scope);
	sqlite3_bind_blob(st, 2, sum, MAC_LEN, SQLITE_TRANSIENT);
	sqlite3_bind_int64(st, 3, rows);
	sqlite3_bind_blob(st, 4, tag, MAC_LEN, SQLITE_TRANSIENT);
	return stmt_exec(c, st, "writing the catalog's seal", e);
}

static void scope_words(int64_t scope, char *buf, size_t cap)
{
	if (scope < 0)
		snprintf(buf, cap, "the store");
	else
		snprintf(buf, cap, "uid %lld's vault", (long long)scope);
}

static int broken_fail(struct catalog *c, int64_t scope, struct iverr *e)
{
	char who[48];

	scope_words(scope, who, sizeof(who));
	return iverr_set(e, IV_EDAMAGE, "catalog %s was changed behind this process's back: "
			 "%s no longer matches its seal (rows removed, added or rolled back); "
			 "nothing of it is served: stop imgvaultd, run imgvault fsck, and restore "
			 "catalog.db from a backup", c->path, who);
}

int auth_pending_flush(struct catalog *c, struct iverr *e)
{
	for (size_t i = 0; i < c->npending; i++) {
		struct auth_pending *p = &c->pending[i];
		struct auth_key *k = key_find(c, p->scope);
		uint8_t sum[MAC_LEN], tag[MAC_LEN], want[MAC_LEN];
		int64_t rows;
		char who[48];
		int ret;

		if (!k)
			continue;   /* cannot happen: a key is needed to note a change */
		scope_words(p->scope, who, sizeof(who));
		ret = state_read(c, p->scope, sum, &rows, tag, e);
		if (ret == -ENOENT)
			return iverr_set(e, IV_EDAMAGE, "catalog %s: the seal of %s is missing "
					 "(removed from catalog.db?); run imgvault fsck", c->path, who);
		if (ret < 0)
			return ret;
		state_tag(k, p->scope, sum, rows, want);
		if (sodium_memcmp(want, tag, MAC_LEN) != 0)
			return iverr_set(e, IV_EDAMAGE, "catalog %s: the seal of %s fails "
					 "authentication (catalog.db was edited); run imgvault "
					 "fsck", c->path, who);
		sum_add(sum, p->sum, false);
		if ((ret = state_write(c, k, sum, rows + p->rows, e)) < 0)
			return ret;
	}
	c->npending = 0;
	return 0;
}

int catalog_auth_sealed(struct catalog *c, int64_t scope, bool *sealed, struct iverr *e)
{
	uint8_t sum[MAC_LEN], tag[MAC_LEN];
	int64_t rows;
	int ret = state_read(c, scope, sum, &rows, tag, e);

	*sealed = ret == 0;
	return ret == -ENOENT ? 0 : ret;
}

/* ---- rows ---- */

/* Whether changes to @scope must be authenticated: 1 with *k set, 0 for a
 * scope not sealed yet (a store from before schema 5, until its owner
 * unlocks), or -EACCES when it is sealed and its key is not here. */
static int scope_key(struct catalog *c, int64_t scope, struct auth_key **k, struct iverr *e)
{
	bool sealed;
	char who[48];
	int ret;

	if ((*k = key_find(c, scope))) {
		if ((*k)->sealed && (auth_watch(c, NULL) < 0 || (*k)->broken))
			return broken_fail(c, scope, e);
		if ((*k)->sealed)
			return 1;
		*k = NULL;
		return 0;
	}
	if ((ret = catalog_auth_sealed(c, scope, &sealed, e)) < 0)
		return ret;
	if (!sealed)
		return 0;
	scope_words(scope, who, sizeof(who));
	return iverr_set(e, EACCES, "cannot change %s's catalog rows without its key: %s",
			 who, scope < 0 ? "give the server key (system store) or unlock the "
			 "owner's vault (desktop store)" : "unlock the vault first");
}

static const char *row_names[A_COUNT] = {
	[A_USERS] = "user", [A_SLOTS] = "key slot", [A_ALBUMS] = "album", [A_IMAGES] = "image",
	[A_VERSIONS] = "version", [A_THUMBS] = "thumbnail", [A_SIGNKEYS] = "signing key",
	[A_PARTNERS] = "partner", [A_SHARES] = "share link",
};

static int row_fail(struct catalog *c, enum auth_tab t, int64_t rowid, int64_t scope,
		    struct iverr *e)
{
	char who[48];

	scope_words(scope, who, sizeof(who));
	return iverr_set(e, IV_EDAMAGE, "catalog %s: %s row %lld of %s fails authentication "
			 "(catalog.db was edited, or rows were swapped or rolled back); it is "
			 "refused; run imgvault fsck", c->path, row_names[t], (long long)rowid, who);
}

int auth_check_cols(struct catalog *c, enum auth_tab t, sqlite3_stmt *st, int col,
		    int64_t rowid, struct iverr *e)
{
	int64_t scope;
	struct auth_key *k;
	uint8_t mac[MAC_LEN];
	int mcol = col + auth_ncols(c, t) - 1;

	if (sqlite3_column_type(st, col) == SQLITE_NULL)
		return 0;   /* dangling: no owner to check it for (fsck reports it) */
	scope = sqlite3_column_int64(st, col);
	if (!(k = key_find(c, scope)) || !k->sealed || c->lenient)
		return 0;   /* a keyless read, a scope not sealed yet, or fsck */
	if (auth_watch(c, NULL) < 0 || k->broken)
		return broken_fail(c, scope, e);
	row_mac(c, k, t, st, col, mac);
	if (sqlite3_column_bytes(st, mcol) != MAC_LEN ||
	    sodium_memcmp(mac, sqlite3_column_blob(st, mcol), MAC_LEN) != 0)
		return row_fail(c, t, rowid, scope, e);
	return 0;
}

int auth_watch(struct catalog *c, struct iverr *e)
{
	sqlite3_stmt *st;
	struct timespec ts;
	int64_t v, now_ms;
	int ret;

	/* Looked at most every few milliseconds: a listing reads thousands of
	 * rows, and a write behind our back is found within that time. */
	clock_gettime(CLOCK_MONOTONIC_COARSE, &ts);
	now_ms = (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
	if (c->data_version && now_ms - c->watched_ms < AUTH_WATCH_MS)
		return 0;
	c->watched_ms = now_ms;
	st = stmt_get(c, S_DATA_VERSION);

	if ((ret = stmt_row(c, st, "watching the catalog", e)) < 0)
		return ret == -ENOENT ? 0 : ret;
	v = sqlite3_column_int64(st, 0);
	sqlite3_reset(st);
	if (v == c->data_version)
		return 0;
	if (c->data_version == 0) {
		c->data_version = v;   /* the first look, at open */
		return 0;
	}
	c->data_version = v;
	for (size_t i = 0; i < c->nkeys; i++) {
		struct auth_key *k = &c->keys[i];
		struct catalog_auth_report r;
		struct iverr err = { 0 };

		if (!k->sealed || k->broken || c->lenient)
			continue;
		if (catalog_auth_verify(c, k->scope, &r, &err) < 0)
			continue;   /* a read failure: the row checks still stand */
		k->broken = r.state == CATALOG_AUTH_CHANGED || r.state == CATALOG_AUTH_FORGED ||
			    r.state == CATALOG_AUTH_MISSING;
		if (k->broken) {
			char who[48];
			scope_words(k->scope, who, sizeof(who));
			iverr_set(e, IV_EDAMAGE, "catalog %s was changed by another process while this "
				  "one held the store: %s no longer matches its seal (rows removed, "
				  "added or rolled back); nothing of it is served: stop imgvaultd, run "
				  "imgvault fsck, restore catalog.db from a backup", c->path, who);
		}
	}
	return 0;
}

bool auth_list_ok(struct catalog *c, enum auth_tab t, sqlite3_stmt *st, int col,
		  int64_t rowid)
{
	struct iverr ignored = { 0 };

	if (c->lenient || auth_check_cols(c, t, st, col, rowid, &ignored) == 0)
		return true;
	c->hidden++;
	return false;
}

uint64_t catalog_auth_hidden(struct catalog *c)
{
	uint64_t n = c->hidden;

	c->hidden = 0;
	return n;
}

void catalog_auth_set_lenient(struct catalog *c, bool lenient)
{
	c->lenient = lenient;
}

/* The prepared "SELECT scope, cols, mac FROM … WHERE rowid = ?1" of @t. */
static sqlite3_stmt *row_stmt(struct catalog *c, enum auth_tab t, struct iverr *e)
{
	if (!c->auth_row[t]) {
		char sql[1024];
		int rc;

		snprintf(sql, sizeof(sql), "SELECT %s FROM %s WHERE %s.rowid = ?1",
			 tables[t].sel, tables[t].from, tables[t].alias);
		rc = sqlite3_prepare_v3(c->db, sql, -1, SQLITE_PREPARE_PERSISTENT,
					&c->auth_row[t], NULL);
		if (rc != SQLITE_OK) {
			db_fail(c, rc, "preparing the catalog's authentication", e);
			return NULL;
		}
	}
	sqlite3_reset(c->auth_row[t]);
	return c->auth_row[t];
}

/* Steps the authenticated select of row @rowid of @t: 1 with *out on the
 * row, 0 when there is no such row, or a failure. */
static int row_fetch(struct catalog *c, enum auth_tab t, int64_t rowid, sqlite3_stmt **out,
		     struct iverr *e)
{
	sqlite3_stmt *st = row_stmt(c, t, e);
	int ret;

	if (!st)
		return -EIO;
	sqlite3_bind_int64(st, 1, rowid);
	ret = stmt_row(c, st, "authenticating a row", e);
	if (ret < 0)
		return ret == -ENOENT ? 0 : ret;
	*out = st;
	return 1;
}

/* Reads row @rowid of @t: 0 with *k NULL when nothing is to be done (no row,
 * a scope not sealed), 1 with the statement on the row and *k its key. */
static int row_load(struct catalog *c, enum auth_tab t, int64_t rowid, sqlite3_stmt **out,
		    struct auth_key **k, struct iverr *e)
{
	sqlite3_stmt *st;
	int ret = row_fetch(c, t, rowid, &st, e);

	*k = NULL;
	if (ret <= 0)
		return ret;
	if (sqlite3_column_type(st, 0) == SQLITE_NULL) {
		sqlite3_reset(st);
		return 0;
	}
	ret = scope_key(c, sqlite3_column_int64(st, 0), k, e);
	if (ret <= 0) {
		sqlite3_reset(st);
		return ret;
	}
	*out = st;
	return 1;
}

int auth_before(struct catalog *c, enum auth_tab t, int64_t rowid, struct iverr *e)
{
	sqlite3_stmt *st;
	struct auth_key *k;
	uint8_t mac[MAC_LEN];
	int mcol = auth_ncols(c, t) - 1;
	int ret = row_load(c, t, rowid, &st, &k, e);

	if (ret <= 0)
		return ret;
	row_mac(c, k, t, st, 0, mac);
	if (sqlite3_column_bytes(st, mcol) != MAC_LEN ||
	    sodium_memcmp(mac, sqlite3_column_blob(st, mcol), MAC_LEN) != 0) {
		int64_t scope = sqlite3_column_int64(st, 0);
		sqlite3_reset(st);
		return row_fail(c, t, rowid, scope, e);
	}
	sqlite3_reset(st);
	return pending_note(c, k, mac, true, e);
}

int auth_forget(struct catalog *c, enum auth_tab t, int64_t rowid, struct iverr *e)
{
	sqlite3_stmt *st;
	struct auth_key *k;
	uint8_t mac[MAC_LEN];
	int mcol = auth_ncols(c, t) - 1;
	int ret = row_load(c, t, rowid, &st, &k, e);

	if (ret <= 0)
		return ret;
	/* A row going away takes out what it added, as recorded: a damaged row
	 * can be deleted (its damage stays in the sum, for fsck to report). */
	if (sqlite3_column_bytes(st, mcol) == MAC_LEN) {
		memcpy(mac, sqlite3_column_blob(st, mcol), MAC_LEN);
		sqlite3_reset(st);
		return pending_note(c, k, mac, true, e);
	}
	sqlite3_reset(st);
	return 0;
}

int auth_verify(struct catalog *c, enum auth_tab t, int64_t rowid, struct iverr *e)
{
	sqlite3_stmt *st;
	int ret = row_fetch(c, t, rowid, &st, e);

	if (ret <= 0)
		return ret;
	ret = auth_check_cols(c, t, st, 0, rowid, e);
	sqlite3_reset(st);
	return ret;
}

static int mac_store(struct catalog *c, enum auth_tab t, int64_t rowid,
		     const uint8_t mac[MAC_LEN], struct iverr *e)
{
	if (!c->auth_set[t]) {
		char sql[128];
		int rc;

		snprintf(sql, sizeof(sql), "UPDATE %s SET mac = ?2 WHERE rowid = ?1",
			 tables[t].table);
		rc = sqlite3_prepare_v3(c->db, sql, -1, SQLITE_PREPARE_PERSISTENT,
					&c->auth_set[t], NULL);
		if (rc != SQLITE_OK)
			return db_fail(c, rc, "preparing the catalog's authentication", e);
	}
	sqlite3_reset(c->auth_set[t]);
	sqlite3_bind_int64(c->auth_set[t], 1, rowid);
	sqlite3_bind_blob(c->auth_set[t], 2, mac, MAC_LEN, SQLITE_TRANSIENT);
	return stmt_exec(c, c->auth_set[t], "sealing a row", e);
}

int auth_after(struct catalog *c, enum auth_tab t, int64_t rowid, struct iverr *e)
{
	sqlite3_stmt *st;
	struct auth_key *k;
	uint8_t mac[MAC_LEN];
	int ret = row_load(c, t, rowid, &st, &k, e);

	if (ret <= 0)
		return ret;
	row_mac(c, k, t, st, 0, mac);
	sqlite3_reset(st);
	if ((ret = mac_store(c, t, rowid, mac, e)) < 0)
		return ret;
	return pending_note(c, k, mac, false, e);
}

/* The statement of @sql, prepared once per catalog: @sql is one of the
 * constant strings of catalog.c (kept by address). */
sqlite3_stmt *auth_cached_stmt(struct catalog *c, const char *sql, struct iverr *e)
{
	size_t i;
	int rc;

	for (i = 0; i < AUTH_STMT_CACHE && c->auth_cache[i].sql; i++)
		if (c->auth_cache[i].sql == sql) {
			sqlite3_reset(c->auth_cache[i].st);
			sqlite3_clear_bindings(c->auth_cache[i].st);
			return c->auth_cache[i].st;
		}
	if (i == AUTH_STMT_CACHE) {
		/* Full (more distinct queries than catalog.c has): start over. */
		for (i = 0; i < AUTH_STMT_CACHE; i++)
			sqlite3_finalize(c->auth_cache[i].st);
		memset(c->auth_cache, 0, sizeof(c->auth_cache));
		i = 0;
	}
	rc = sqlite3_prepare_v3(c->db, sql, -1, SQLITE_PREPARE_PERSISTENT, &c->auth_cache[i].st,
				NULL);
	if (rc != SQLITE_OK) {
		db_fail(c, rc, "authenticating rows", e);
		return NULL;
	}
	c->auth_cache[i].sql = sql;
	return c->auth_cache[i].st;
}

int auth_each_rowid(struct catalog *c, const char *sql, int64_t arg,
		    int (*fn)(struct catalog *c, int64_t rowid, void *ctx), void *ctx,
		    struct iverr *e)
{
	sqlite3_stmt *st;
	int64_t *ids = NULL;
	size_t n = 0, cap = 0;
	int rc, ret = 0;

	if (!(st = auth_cached_stmt(c, sql, e)))
		return -EIO;
	sqlite3_bind_int64(st, 1, arg);
	while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
		if (n == cap) {
			int64_t *m = realloc(ids, (cap = cap ? 2 * cap : 16) * sizeof(*m));
			if (!m) {
				ret = iverr_set(e, ENOMEM, "out of memory");
				goto out;
			}
			ids = m;
		}
		ids[n++] = sqlite3_column_int64(st, 0);
	}
	if (rc != SQLITE_DONE) {
		ret = db_fail(c, rc, "authenticating rows", e);
		goto out;
	}
	/* Collected first: @fn runs other statements on the same tables. */
	for (size_t i = 0; i < n && !ret; i++)
		ret = fn(c, ids[i], ctx);
out:
	sqlite3_reset(st);
	free(ids);
	return ret;
}

/* ---- whole scopes: sealing and verifying ---- */

static int scope_walk(struct catalog *c, enum auth_tab t, const struct auth_key *k,
		      bool store, struct catalog_auth_report *r, uint8_t sum_ok[MAC_LEN],
		      uint8_t sum_bad[MAC_LEN], struct iverr *e)
{
	char sql[1024];
	sqlite3_stmt *st, *set = NULL;
	int mcol = 1 + auth_ncols(c, t) - 1;
	int rc, ret = 0;

	snprintf(sql, sizeof(sql), "SELECT %s.rowid, %s FROM %s WHERE (%s) = ?1 ORDER BY 1",
		 tables[t].alias, tables[t].sel, tables[t].from, tables[t].scope);
	rc = sqlite3_prepare_v2(c->db, sql, -1, &st, NULL);
	if (rc != SQLITE_OK)
		return db_fail(c, rc, "checking the catalog's seal", e);
	sqlite3_bind_int64(st, 1, k->scope);
	while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
		uint8_t mac[MAC_LEN], el[MAC_LEN];
		int64_t rowid = sqlite3_column_int64(st, 0);
		bool good;

		row_mac(c, k, t, st, 1, mac);
		good = sqlite3_column_bytes(st, mcol) == MAC_LEN &&
		       sodium_memcmp(mac, sqlite3_column_blob(st, mcol), MAC_LEN) == 0;
		r->rows++;
		if (store) {
			/* Sealing: each row's MAC as it is now. */
			if (!set) {
				snprintf(sql, sizeof(sql), "UPDATE %s SET mac = ?2 WHERE rowid = ?1",
					 tables[t].table);
				if ((rc = sqlite3_prepare_v2(c->db, sql, -1, &set, NULL)) != SQLITE_OK) {
					ret = db_fail(c, rc, "sealing the catalog", e);
					break;
				}
			}
			sqlite3_reset(set);
			sqlite3_bind_int64(set, 1, rowid);
			sqlite3_bind_blob(set, 2, mac, MAC_LEN, SQLITE_TRANSIENT);
			if ((rc = sqlite3_step(set)) != SQLITE_DONE) {
				ret = db_fail(c, rc, "sealing the catalog", e);
				break;
			}
			elem_of(k, mac, el);
			sum_add(sum_ok, el, false);
			continue;
		}
		if (good) {
			elem_of(k, mac, el);
			sum_add(sum_ok, el, false);
			continue;
		}
		if (sqlite3_column_bytes(st, mcol) == MAC_LEN) {
			elem_of(k, sqlite3_column_blob(st, mcol), el);
			sum_add(sum_bad, el, false);
		}
		if (r->nbad < CATALOG_AUTH_REPORT_MAX) {
			r->bad[r->nbad].table = row_names[t];
			r->bad[r->nbad].rowid = rowid;
			r->bad[r->nbad].kind = t;
		}
		r->nbad++;
	}
	if (!ret && rc != SQLITE_DONE && rc != SQLITE_ROW)
		ret = db_fail(c, rc, "checking the catalog's seal", e);
	sqlite3_finalize(st);
	sqlite3_finalize(set);
	return ret;
}

static bool table_in_scope(enum auth_tab t, int64_t scope)
{
	if (t == A_USERS || t == A_PARTNERS)
		return scope < 0;
	if (t == A_SIGNKEYS)
		return true;
	return scope >= 0;
}

/*
 * Walks every row of @scope.  Verifying: each failing row is listed in @r,
 * and the sum is compared with the seal.  The sum of good rows is tried
 * twice, once with the failing rows' recorded MACs (content edited in
 * place) and once without them (rows added): either matching means the
 * failing rows explain the whole difference.  Sealing: writes every MAC.
 */
static int scope_run(struct catalog *c, int64_t scope, bool seal,
		     struct catalog_auth_report *r, struct iverr *e)
{
	struct auth_key *k = key_find(c, scope);
	uint8_t good[MAC_LEN] = { 0 }, bad[MAC_LEN] = { 0 };
	uint8_t sum[MAC_LEN], tag[MAC_LEN], want[MAC_LEN];
	int64_t rows;
	char who[48];
	int ret;

	memset(r, 0, sizeof(*r));
	scope_words(scope, who, sizeof(who));
	if (!k)
		return iverr_set(e, EACCES, "cannot check %s's catalog rows without its key",
				 who);
	for (int t = 0; t < A_COUNT; t++) {
		if (!table_in_scope(t, scope))
			continue;
		if ((ret = scope_walk(c, t, k, seal, r, good, bad, e)) < 0)
			return ret;
	}
	if (seal) {
		/* Computed from scratch: what the transaction noted for it is in. */
		for (size_t i = 0; i < c->npending; i++)
			if (c->pending[i].scope == scope)
				c->pending[i] = c->pending[--c->npending];
		if ((ret = state_write(c, k, good, (int64_t)r->rows, e)) < 0)
			return ret;
		k->sealed = true;
		return 0;
	}
	ret = state_read(c, scope, sum, &rows, tag, e);
	if (ret == -ENOENT) {
		r->state = CATALOG_AUTH_MISSING;
		return 0;
	}
	if (ret < 0)
		return ret;
	state_tag(k, scope, sum, rows, want);
	if (sodium_memcmp(want, tag, MAC_LEN) != 0) {
		r->state = CATALOG_AUTH_FORGED;
		return 0;
	}
	r->sealed_rows = rows;
	if (r->nbad == 0) {
		r->state = sodium_memcmp(good, sum, MAC_LEN) == 0 && rows == (int64_t)r->rows
			   ? CATALOG_AUTH_OK : CATALOG_AUTH_CHANGED;
		return 0;
	}
	/* The failing rows explain the difference if the sum matches with their
	 * recorded MACs (content edited in place) or without them (rows added). */
	sum_add(bad, good, false);
	r->state = ((rows == (int64_t)r->rows && sodium_memcmp(bad, sum, MAC_LEN) == 0) ||
		    (rows == (int64_t)(r->rows - r->nbad) &&
		     sodium_memcmp(good, sum, MAC_LEN) == 0)) ? CATALOG_AUTH_ROWS
							       : CATALOG_AUTH_CHANGED;
	return 0;
}

int catalog_auth_verify(struct catalog *c, int64_t scope, struct catalog_auth_report *r,
			struct iverr *e)
{
	return scope_run(c, scope, false, r, e);
}

int catalog_auth_seal(struct catalog *c, int64_t scope, struct iverr *e)
{
	struct catalog_auth_report r;
	int ret;

	if ((ret = catalog_begin(c, e)) < 0)
		return ret;
	if ((ret = scope_run(c, scope, true, &r, e)) < 0) {
		catalog_rollback(c);
		return ret;
	}
	return catalog_commit(c, e);
}

int catalog_auth_forget_scope(struct catalog *c, int64_t scope, struct iverr *e)
{
	sqlite3_stmt *st = stmt_get(c, S_STATE_DELETE);
	struct auth_key *k = key_find(c, scope);

	for (size_t i = 0; i < c->npending; i++)
		if (c->pending[i].scope == scope)
			c->pending[i] = c->pending[--c->npending];
	if (k)
		k->sealed = false;
	sqlite3_bind_int64(st, 1, scope);
	return stmt_exec(c, st, "removing the catalog's seal", e);
}


/* ---- changes, bracketed ---- */

struct dep_rows {
	const struct auth_dep *dep;
	int64_t *ids;
	size_t n, cap;
};

static int dep_collect(struct catalog *c, int64_t rowid, void *ctx)
{
	struct dep_rows *d = ctx;

	(void)c;
	if (d->n == d->cap) {
		int64_t *m = realloc(d->ids, (d->cap = d->cap ? 2 * d->cap : 8) * sizeof(*m));
		if (!m)
			return -ENOMEM;
		d->ids = m;
	}
	d->ids[d->n++] = rowid;
	return 0;
}

/* Ends a change begun with catalog_begin.  A change that failed before it
 * touched anything leaves an enclosing transaction usable. */
static int txn_end(struct catalog *c, int ret, bool changed, struct iverr *e)
{
	if (ret >= 0)
		return catalog_commit(c, e);
	if (changed || c->depth == 1)
		catalog_rollback(c);
	else
		c->depth--;
	return ret;
}

int auth_run(struct catalog *c, enum auth_op op, enum auth_tab t, int64_t *rowid,
	     sqlite3_stmt *st, const char *what, const struct auth_dep *deps, size_t ndeps,
	     int64_t dep_arg, struct iverr *e)
{
	struct dep_rows d[4] = { { 0 } };
	struct auth_pending *saved = NULL;
	size_t i, j, nsaved = c->npending;
	bool changed = false;
	int ret;

	if (ndeps > 4)
		ndeps = 4;
	if ((ret = catalog_begin(c, e)) < 0) {
		sqlite3_reset(st);
		return ret;
	}
	/* What the transaction noted so far, to go back to if nothing runs. */
	if (nsaved && !(saved = malloc(nsaved * sizeof(*saved)))) {
		ret = iverr_set(e, ENOMEM, "out of memory");
		sqlite3_reset(st);
		goto out;
	}
	if (nsaved)
		memcpy(saved, c->pending, nsaved * sizeof(*saved));
	for (i = 0; i < ndeps && ret >= 0; i++) {
		d[i].dep = &deps[i];
		ret = auth_each_rowid(c, deps[i].sql, dep_arg, dep_collect, &d[i], e);
		if (ret == -ENOMEM)
			ret = iverr_set(e, ENOMEM, "out of memory");
	}
	/* Take the old elements out: the main row, then what depends on it. */
	if (ret >= 0 && op == AUTH_OP_UPDATE)
		ret = auth_before(c, t, *rowid, e);
	else if (ret >= 0 && op == AUTH_OP_DELETE)
		ret = auth_forget(c, t, *rowid, e);
	for (i = 0; i < ndeps && ret >= 0; i++)
		for (j = 0; j < d[i].n && ret >= 0; j++)
			ret = deps[i].gone ? auth_forget(c, deps[i].t, d[i].ids[j], e)
					   : auth_before(c, deps[i].t, d[i].ids[j], e);
	if (ret >= 0)
		ret = stmt_exec(c, st, what, e);
	else
		sqlite3_reset(st);
	if (ret < 0) {
		/* Nothing changed: forget what was noted for it. */
		if (nsaved)
			memcpy(c->pending, saved, nsaved * sizeof(*saved));
		c->npending = nsaved;
		goto out;
	}
	changed = true;
	if (op == AUTH_OP_INSERT)
		*rowid = sqlite3_last_insert_rowid(c->db);
	if (op != AUTH_OP_DELETE)
		ret = auth_after(c, t, *rowid, e);
	for (i = 0; i < ndeps && ret >= 0; i++)
		for (j = 0; j < d[i].n && ret >= 0; j++)
			if (!deps[i].gone)
				ret = auth_after(c, deps[i].t, d[i].ids[j], e);
out:
	for (i = 0; i < ndeps; i++)
		free(d[i].ids);
	free(saved);
	return txn_end(c, ret, changed, e);
}

/* ---- the audit trail's head ---- */

int catalog_audit_seal(struct catalog *c, int64_t seq, const uint8_t hash[32], struct iverr *e)
{
	struct auth_key *k = key_find(c, CATALOG_SCOPE_STORE);
	struct auth_key head;

	if (!k || !k->sealed)
		return 0;   /* sealed again by the next entry made with the key */
	head = *k;
	head.scope = CATALOG_SCOPE_AUDIT;
	return state_write(c, &head, hash, seq, e);
}

int catalog_audit_sealed_head(struct catalog *c, int64_t *seq, uint8_t hash[32], bool *checked,
			      struct iverr *e)
{
	struct auth_key *k = key_find(c, CATALOG_SCOPE_STORE);
	uint8_t tag[MAC_LEN], want[MAC_LEN];
	int ret;

	*checked = false;
	if ((ret = state_read(c, CATALOG_SCOPE_AUDIT, hash, seq, tag, e)) < 0)
		return ret;
	if (!k || !k->sealed)
		return 0;
	struct auth_key head = *k;
	head.scope = CATALOG_SCOPE_AUDIT;
	state_tag(&head, CATALOG_SCOPE_AUDIT, hash, *seq, want);
	if (sodium_memcmp(want, tag, MAC_LEN) != 0)
		return iverr_set(e, IV_EDAMAGE, "catalog %s: the audit trail's sealed head fails "
				 "authentication (catalog.db was edited)", c->path);
	*checked = true;
	return 0;
}
