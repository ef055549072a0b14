/*
 * bench/catalog_auth: the cost of the authenticated catalog (docs/FORMAT.md
 * §6.5) on a vault of N images (default 100,000; each with one version and a
 * thumbnail, as after an import), against reading the same rows unchecked:
 *
 *   catalog_auth BENCH_DIR [N]
 *
 * Prints, medians of 3 with ranges: the check an unlock runs (every row's MAC
 * and the seal), a plain scan of the same rows (the anchor: what any unlock
 * reads anyway), and the first seal of a vault from schema 4.  The issue's
 * goal: the check under 1 s for 100,000 images.
 */
#define _GNU_SOURCE
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <sodium.h>
#include <sqlite3.h>

#include "catalog.h"
#include "keys.h"

static double now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void die(const char *what, const struct iverr *e)
{
	fprintf(stderr, "catalog_auth: %s: %s\n", what, e ? e->msg : "");
	exit(1);
}

/* N images with a version and a thumbnail each, in one album, sealed. */
static void fill(struct catalog *c, long n)
{
	struct catalog_user u = { .uid = 1000, .created = 1 };
	struct catalog_album a = { .uid = 1000 };
	struct iverr e = { 0 };

	if (catalog_user_add(c, &u, &e) < 0)
		die("user", &e);
	randombytes_buf(a.pid, sizeof(a.pid));
	a.name_enc_len = 72;
	if (catalog_album_add(c, &a, &e) < 0)
		die("album", &e);
	if (catalog_begin(c, &e) < 0)
		die("begin", &e);
	for (long i = 0; i < n; i++) {
		struct catalog_image im = { .uid = 1000, .album_id = a.id, .created = i, .mtime = i };
		struct catalog_version v = { .created = i, .size = 3000000 };
		struct catalog_thumb t = { .created = i, .size = 20000 };

		randombytes_buf(im.pid, sizeof(im.pid));
		randombytes_buf(im.name_idx, sizeof(im.name_idx));
		randombytes_buf(im.name_enc, 72);
		im.name_enc_len = 72;
		if (catalog_image_add(c, &im, &e) < 0)
			die("image", &e);
		v.image_id = im.id;
		randombytes_buf(v.blob.b, sizeof(v.blob.b));
		randombytes_buf(v.attrs_enc, 153);
		v.attrs_enc_len = 153;
		if (catalog_version_add(c, &v, &e) < 0)
			die("version", &e);
		im.current_version = im.pristine_version = v.id;
		if (catalog_image_update(c, &im, &e) < 0)
			die("image update", &e);
		t.version_id = v.id;
		randombytes_buf(t.blob.b, sizeof(t.blob.b));
		memcpy(t.attrs_enc, v.attrs_enc, 153);
		t.attrs_enc_len = 153;
		if (catalog_thumb_put(c, &t, &e) < 0)
			die("thumb", &e);
	}
	if (catalog_commit(c, &e) < 0)
		die("commit", &e);
}

static double plain_scan(const char *path)
{
	sqlite3 *db;
	sqlite3_stmt *st;
	double t0 = now();
	long rows = 0;
	static const char *const q[] = {
		"SELECT * FROM images i JOIN albums a ON a.id = i.album_id WHERE i.uid = 1000",
		"SELECT * FROM versions v JOIN images i ON i.id = v.image_id WHERE i.uid = 1000",
		"SELECT * FROM thumbs t JOIN versions v ON v.id = t.version_id",
	};

	sqlite3_open_v2(path, &db, SQLITE_OPEN_READONLY, NULL);
	for (size_t k = 0; k < sizeof(q) / sizeof(q[0]); k++) {
		sqlite3_prepare_v2(db, q[k], -1, &st, NULL);
		while (sqlite3_step(st) == SQLITE_ROW)
			rows += sqlite3_column_bytes(st, 1) > 0;
		sqlite3_finalize(st);
	}
	sqlite3_close(db);
	return rows >= 0 ? now() - t0 : 0;
}

static int cmp(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;
	return x < y ? -1 : x > y;
}

static void report(const char *what, double t[3])
{
	qsort(t, 3, sizeof(t[0]), cmp);
	printf("  %-44s %8.3f s  (%.3f–%.3f)\n", what, t[1], t[0], t[2]);
}

int main(int argc, char **argv)
{
	const char *dir = argc > 1 ? argv[1] : "/tmp";
	long n = argc > 2 ? atol(argv[2]) : 100000;
	char path[4096];
	uint8_t key[32];
	struct catalog *c;
	struct iverr e = { 0 };
	double check[3], scan[3], seal[3];

	if (keys_init() < 0)
		die("keys_init", NULL);
	snprintf(path, sizeof(path), "%s/catalog-auth-bench.db", dir);
	remove(path);
	randombytes_buf(key, sizeof(key));
	if (catalog_open(path, true, &c, &e) < 0)
		die("open", &e);
	if (catalog_auth_key_set(c, CATALOG_SCOPE_STORE, key, &e) < 0 ||
	    catalog_auth_key_set(c, 1000, key, &e) < 0 ||
	    catalog_auth_seal(c, CATALOG_SCOPE_STORE, &e) < 0 || catalog_auth_seal(c, 1000, &e) < 0)
		die("seal", &e);
	fill(c, n);
	for (int r = 0; r < 3; r++) {
		struct catalog_auth_report rep;
		double t0 = now();

		if (catalog_auth_verify(c, 1000, &rep, &e) < 0 || rep.state != CATALOG_AUTH_OK)
			die("verify", &e);
		check[r] = now() - t0;
		scan[r] = plain_scan(path);
		t0 = now();
		if (catalog_auth_seal(c, 1000, &e) < 0)
			die("seal", &e);
		seal[r] = now() - t0;
	}
	printf("== the authenticated catalog, %ld images (version + thumbnail each) ==\n", n);
	report("unlock check (every row's MAC + the seal)", check);
	report("anchor: the same rows read, unchecked", scan);
	report("first seal of a schema-4 vault (all MACs)", seal);
	printf("  goal: the unlock check under 1 s for 100,000 images\n");
	catalog_close(c);
	remove(path);
	return 0;
}
