/*
 * blobstore — where encrypted blobs live, behind a small interface.
 *
 * A blob store holds immutable objects named by a random 128-bit id.  It
 * knows nothing of encryption: blob.h writes and reads the bytes.  The local
 * backend keeps them as files, sharded by the first two bytes of the id:
 *
 *     STORE/blobs/3f/a1/3fa1…(32 hex digits)
 *     STORE/tmp/<id>.<pid>.<random>        while being written
 *
 * An object-store backend (S3, R2, Ceph RGW) implements the same table of
 * operations: create/pwrite/commit is an upload whose commit makes the
 * object visible, open/pread a ranged GET.
 *
 * Every operation returns 0 or -errno and words its failure into @e.
 */
#ifndef IMGVAULT_BLOBSTORE_H
#define IMGVAULT_BLOBSTORE_H

#include <stdint.h>
#include <stddef.h>

#include "iverr.h"

#define BLOB_ID_LEN 16

struct blob_id {
	uint8_t b[BLOB_ID_LEN];
};

/* A new random id. */
void blob_id_random(struct blob_id *id);
/* 32 lowercase hex digits and a NUL. */
void blob_id_hex(const struct blob_id *id, char out[2 * BLOB_ID_LEN + 1]);
int blob_id_parse(const char *hex, struct blob_id *id);

struct blobstore;
struct blobstore_wfile;   /* a blob being written */
struct blobstore_rfile;   /* a committed blob open for reading */

/* Called once per blob by blobstore_list; a non-zero return stops the walk. */
typedef int (*blobstore_list_fn)(const struct blob_id *id, uint64_t size, void *arg);

struct blobstore_ops {
	int (*create)(struct blobstore *bs, const struct blob_id *id,
		      struct blobstore_wfile **out, struct iverr *e);
	int (*pwrite)(struct blobstore_wfile *w, const void *buf, size_t len,
		      uint64_t off, struct iverr *e);
	/* Makes the blob durable and visible under its id; frees @w either way. */
	int (*commit)(struct blobstore_wfile *w, struct iverr *e);
	/* Discards an uncommitted blob and frees @w. */
	void (*abort)(struct blobstore_wfile *w);
	int (*open)(struct blobstore *bs, const struct blob_id *id,
		    struct blobstore_rfile **out, uint64_t *size, struct iverr *e);
	/* Reads exactly @len bytes at @off, or fails (-EIO on a short read). */
	int (*pread)(struct blobstore_rfile *r, void *buf, size_t len, uint64_t off,
		     struct iverr *e);
	void (*close)(struct blobstore_rfile *r);
	/* Overwrites the first @len bytes of a committed blob in place, durably
	 * (a key rotation rewraps headers this way). */
	int (*rewrite_head)(struct blobstore *bs, const struct blob_id *id,
			    const void *buf, size_t len, struct iverr *e);
	int (*remove)(struct blobstore *bs, const struct blob_id *id, struct iverr *e);
	int (*list)(struct blobstore *bs, blobstore_list_fn fn, void *arg, struct iverr *e);
	/* Removes leftovers of interrupted writes; returns how many, or -errno. */
	int (*sweep)(struct blobstore *bs, struct iverr *e);
	void (*free)(struct blobstore *bs);
};

struct blobstore {
	const struct blobstore_ops *ops;
};

/*
 * Opens the local directory backend rooted at @dir (the store directory:
 * blobs/ and tmp/ are created below it if missing).  The caller owns *out
 * and releases it with blobstore_free.
 */
int blobstore_local_open(const char *dir, struct blobstore **out, struct iverr *e);

static inline void blobstore_free(struct blobstore *bs)
{
	if (bs)
		bs->ops->free(bs);
}

#endif
