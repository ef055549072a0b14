/*
 * blob — the encrypted blob format of DESIGN §3 (specified in docs/FORMAT.md).
 *
 *   header (128 bytes) | chunk 0 | chunk 1 | … | chunk n-1
 *   chunk k = nonce (24) | ciphertext (≤ 64 KiB) | tag (16)
 *             at offset 128 + k * (64 KiB + 40),
 *             XChaCha20-Poly1305 under the blob's file key,
 *             associated data = blob id || k (LE64)
 *
 * The header carries the plaintext size and chunk count and wraps the random
 * file key under the owner's file-wrap key with the rest of the header as
 * associated data.  It is written last, so a blob that was truncated,
 * extended, swapped with another or edited fails to open or to read:
 * callers get -IV_EDAMAGE and a message, never wrong bytes.
 */
#ifndef IMGVAULT_BLOB_H
#define IMGVAULT_BLOB_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#include "blobstore.h"
#include "iverr.h"

#define BLOB_MAGIC        "IMGVAULT"
#define BLOB_VERSION      1
#define BLOB_HEADER_LEN   128
#define BLOB_CHUNK_LEN    65536u
#define BLOB_CHUNK_OVERHEAD 40u   /* nonce + tag */

#define BLOB_WUR __attribute__((warn_unused_result))

/* What a header says, once parsed (not yet authenticated). */
struct blob_header {
	uint16_t version;
	uint32_t chunk_len;
	struct blob_id id;
	uint32_t owner;
	uint64_t size;       /* plaintext bytes */
	uint64_t chunks;
};

/* The size of the stored blob for @size bytes of plaintext. */
uint64_t blob_stored_size(uint64_t size);

/* ---- writing ---------------------------------------------------------- */

struct blob_writer;

/*
 * Starts a new blob with a fresh random id and file key, owned by @owner,
 * whose file key is wrapped under @wrap_key.  The caller owns *out and ends
 * it with blob_writer_commit or blob_writer_abort.
 */
int blob_writer_open(struct blobstore *bs, const uint8_t wrap_key[32], uint32_t owner,
		     struct blob_writer **out, struct iverr *e);
const struct blob_id *blob_writer_id(const struct blob_writer *w);
/* Bytes written so far. */
uint64_t blob_writer_size(const struct blob_writer *w);
/* Appends plaintext.  On failure the writer is still to be aborted. */
int blob_writer_write(struct blob_writer *w, const void *buf, size_t len, struct iverr *e);
/* Seals the last chunk, writes the header, makes the blob durable and
 * visible; *id_out gets its id.  Frees @w whatever the result. */
int blob_writer_commit(struct blob_writer *w, struct blob_id *id_out, struct iverr *e);
/* Discards the blob and frees @w; NULL is a no-op. */
void blob_writer_abort(struct blob_writer *w);

/* ---- reading ---------------------------------------------------------- */

struct blob_reader;

/*
 * Opens blob @id and authenticates its header: magic, version, id, owner,
 * that the stored size matches the header exactly, and the file-key wrap.
 * @expect_size is the catalog's plaintext size (UINT64_MAX: don't check).
 * The caller owns *out (blob_reader_close).  A reader is not thread-safe.
 */
int blob_reader_open(struct blobstore *bs, const struct blob_id *id,
		     const uint8_t wrap_key[32], uint32_t owner, uint64_t expect_size,
		     struct blob_reader **out, struct iverr *e) BLOB_WUR;
uint64_t blob_reader_size(const struct blob_reader *r);
/*
 * Reads up to @len plaintext bytes at @off, decrypting only the chunks it
 * touches.  Returns the number of bytes (0 at or past the end) or -errno;
 * a chunk that fails authentication gives -IV_EDAMAGE naming the chunk.
 */
ssize_t blob_reader_pread(struct blob_reader *r, void *buf, size_t len, uint64_t off,
			  struct iverr *e) BLOB_WUR;
void blob_reader_close(struct blob_reader *r);

/* ---- maintenance ------------------------------------------------------ */

/*
 * Reads and parses the header of blob @id without any key and checks what
 * can be checked without one: magic, version, id, and that the stored
 * size matches.  For fsck of a store whose keys are not at hand.
 */
int blob_check_structure(struct blobstore *bs, const struct blob_id *id,
			 struct blob_header *out, struct iverr *e);

/* Rewraps blob @id's file key from @old_key to @new_key in place. */
int blob_rewrap(struct blobstore *bs, const struct blob_id *id, uint32_t owner,
		const uint8_t old_key[32], const uint8_t new_key[32], struct iverr *e) BLOB_WUR;

#endif
