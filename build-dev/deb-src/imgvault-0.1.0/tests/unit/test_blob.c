/*
 * Unit tests of fs/blob and the local blob store: round trips, random
 * access, the stored size, and that every kind of tampering gives
 * -IV_EDAMAGE (EBADMSG) and never wrong bytes.
 */
#define _GNU_SOURCE
#include <dirent.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <sodium.h>

#include "blob.h"
#include "blobstore.h"
#include "keys.h"
#include "tap.h"
#include "testutil.h"

#define CHUNK      ((uint64_t)BLOB_CHUNK_LEN)
#define SEALED     (CHUNK + BLOB_CHUNK_OVERHEAD)
#define OWNER      1000u

static char store_dir[256];
static struct blobstore *bs;
static uint8_t wrap_key[32], other_key[32];

/* Offset of sealed chunk @k in a blob file. */
static uint64_t chunk_off(uint64_t k)
{
	return BLOB_HEADER_LEN + k * SEALED;
}

static void blob_path(const char *dir, const struct blob_id *id, char *out, size_t cap)
{
	char hex[2 * BLOB_ID_LEN + 1];

	blob_id_hex(id, hex);
	snprintf(out, cap, "%s/blobs/%.2s/%.2s/%s", dir, hex, hex + 2, hex);
}

static uint8_t *random_bytes(size_t n)
{
	uint8_t *p = malloc(n ? n : 1);

	if (!p)
		BAIL_OUT("out of memory");
	randombytes_buf(p, n);
	return p;
}

/*
 * Writes @len bytes as a new blob, in pieces of the sizes in @pieces
 * (cycled; NULL: one write).  Returns 0 and the id, or -errno.
 */
static int write_blob_in(struct blobstore *s, const uint8_t *key, uint32_t owner,
			 const uint8_t *data, size_t len, const size_t *pieces,
			 struct blob_id *id)
{
	struct blob_writer *w = NULL;
	struct iverr e = { 0 };
	struct blob_id wid;
	size_t done = 0, pi = 0;
	int ret;

	if ((ret = blob_writer_open(s, key, owner, &w, &e)) < 0) {
		diag("blob_writer_open: %s", e.msg);
		return ret;
	}
	wid = *blob_writer_id(w);
	while (done < len) {
		size_t n = pieces ? pieces[pi] : len;
		if (pieces && !pieces[++pi])
			pi = 0;
		if (n > len - done)
			n = len - done;
		if ((ret = blob_writer_write(w, data + done, n, &e)) < 0) {
			diag("blob_writer_write: %s", e.msg);
			blob_writer_abort(w);
			return ret;
		}
		done += n;
	}
	if (blob_writer_size(w) != len) {
		diag("blob_writer_size says %llu, wrote %zu",
		     (unsigned long long)blob_writer_size(w), len);
		blob_writer_abort(w);
		return -EPROTO;
	}
	if ((ret = blob_writer_commit(w, id, &e)) < 0) {
		diag("blob_writer_commit: %s", e.msg);
		return ret;
	}
	if (memcmp(id->b, wid.b, BLOB_ID_LEN) != 0) {
		diag("committed id differs from blob_writer_id");
		return -EPROTO;
	}
	return 0;
}

static int write_blob(const uint8_t *data, size_t len, struct blob_id *id)
{
	return write_blob_in(bs, wrap_key, OWNER, data, len, NULL, id);
}

/* Opens and reads a whole blob; 0 if it matches @want exactly, else -errno or 1. */
static int read_compare(struct blobstore *s, const struct blob_id *id, const uint8_t *key,
			uint32_t owner, const uint8_t *want, size_t len)
{
	struct blob_reader *r = NULL;
	struct iverr e = { 0 };
	uint8_t *buf = malloc(len + 16);
	ssize_t n;
	int ret;

	if (!buf)
		BAIL_OUT("out of memory");
	ret = blob_reader_open(s, id, key, owner, len, &r, &e);
	if (ret < 0)
		goto out;
	if (blob_reader_size(r) != len) {
		ret = 1;
		goto out_close;
	}
	n = blob_reader_pread(r, buf, len + 16, 0, &e);
	if (n < 0)
		ret = (int)n;
	else
		ret = ((size_t)n == len && (len == 0 || memcmp(buf, want, len) == 0)) ? 0 : 1;
out_close:
	blob_reader_close(r);
out:
	free(buf);
	return ret;
}

/* ---- round trips ------------------------------------------------------- */

static void test_stored_size_formula(void)
{
	is_int(blob_stored_size(0), 128, "stored size of 0 bytes is the header alone");
	is_int(blob_stored_size(1), 128 + 1 + 40, "stored size of 1 byte");
	is_int(blob_stored_size(65535), 128 + 65535 + 40, "stored size of 65535 bytes");
	is_int(blob_stored_size(65536), 128 + 65536 + 40, "stored size of 65536 bytes");
	is_int(blob_stored_size(65537), 128 + 65537 + 80, "stored size of 65537 bytes");
	is_int(blob_stored_size(3 * 65536 + 17), 128 + 3 * 65536 + 17 + 4 * 40,
	       "stored size of 3*65536+17 bytes");
}

static void test_round_trips(void)
{
	static const size_t sizes[] = { 0, 1, 65535, 65536, 65537, 3 * 65536 + 17 };
	static const size_t odd_pieces[] = { 1, 7, 65535, 3, 65536, 65537, 100, 0 };

	for (size_t i = 0; i < sizeof(sizes) / sizeof(sizes[0]); i++) {
		size_t len = sizes[i];
		uint8_t *data = random_bytes(len);
		struct blob_id id, id2;
		char path[512];
		struct stat st;
		int ret;

		ret = write_blob(data, len, &id);
		is_int(ret, 0, "size %zu: written in one piece", len);
		is_int(read_compare(bs, &id, wrap_key, OWNER, data, len), 0,
		       "size %zu: reads back identical", len);
		blob_path(store_dir, &id, path, sizeof(path));
		ok(stat(path, &st) == 0, "size %zu: the file is at blobs/xx/yy/<hex>", len);
		is_int(st.st_size, blob_stored_size(len),
		       "size %zu: file size on disk equals blob_stored_size", len);
		is_int(st.st_mode & 077, 0, "size %zu: the blob file is private to its owner", len);

		ret = write_blob_in(bs, wrap_key, OWNER, data, len, odd_pieces, &id2);
		is_int(ret, 0, "size %zu: written in odd pieces", len);
		is_int(read_compare(bs, &id2, wrap_key, OWNER, data, len), 0,
		       "size %zu: odd-piece blob reads back identical", len);
		ok(memcmp(id.b, id2.b, BLOB_ID_LEN) != 0, "size %zu: the two blobs have distinct ids",
		   len);
		is_int(tu_file_size(path), blob_stored_size(len),
		       "size %zu: odd pieces give the same stored size", len);
		free(data);
	}
}

static void test_no_plaintext_on_disk(void)
{
	static const char marker[] = "PLAINTEXT-MARKER-0123456789";
	size_t len = 2 * CHUNK + 999;
	uint8_t *data = malloc(len), *f1 = NULL, *f2 = NULL;
	struct blob_id a, b;
	char pa[512], pb[512];
	size_t la = 0, lb = 0;

	if (!data)
		BAIL_OUT("out of memory");
	for (size_t i = 0; i < len; i++)
		data[i] = (uint8_t)marker[i % (sizeof(marker) - 1)];
	ok(write_blob(data, len, &a) == 0 && write_blob(data, len, &b) == 0,
	   "wrote the same repetitive plaintext twice");
	blob_path(store_dir, &a, pa, sizeof(pa));
	blob_path(store_dir, &b, pb, sizeof(pb));
	f1 = tu_read_file(pa, &la);
	f2 = tu_read_file(pb, &lb);
	ok(f1 && f2 && la == lb, "read both stored files");
	if (f1 && f2 && la == lb) {
		ok(!memmem(f1, la, "MARKER", 6), "the stored file holds no plaintext");
		ok(memcmp(f1, BLOB_MAGIC, 8) == 0, "the stored file starts with the magic");
		/* Same plaintext, same key: everything past the fixed header fields differs. */
		size_t same = 0;
		for (size_t i = chunk_off(0); i < la; i++)
			same += f1[i] == f2[i];
		ok(same < la / 64, "two blobs of the same plaintext share no ciphertext "
		   "(%zu equal bytes of %zu)", same, la);
		ok(memcmp(f1 + 80, f2 + 80, 48) != 0, "and have different wrapped file keys");
	}
	free(f1);
	free(f2);
	free(data);
}

/* ---- random access ----------------------------------------------------- */

/* Checks one pread; returns true if it behaved. */
static bool check_pread(struct blob_reader *r, const uint8_t *data, uint64_t size,
			uint64_t off, size_t len, uint8_t *buf)
{
	struct iverr e = { 0 };
	uint64_t want = off >= size ? 0 : (size - off < len ? size - off : len);
	ssize_t n;

	memset(buf, 0xa5, len + 64);
	n = blob_reader_pread(r, buf, len, off, &e);
	if (n < 0 || (uint64_t)n != want) {
		diag("pread(off %llu, len %zu) returned %zd, expected %llu: %s",
		     (unsigned long long)off, len, n, (unsigned long long)want, e.msg);
		return false;
	}
	if (want && memcmp(buf, data + off, (size_t)want) != 0) {
		diag("pread(off %llu, len %zu) returned wrong bytes", (unsigned long long)off, len);
		return false;
	}
	for (size_t i = (size_t)want; i < len + 64; i++) {
		if (buf[i] != 0xa5) {
			diag("pread(off %llu, len %zu) wrote past the %llu bytes it returned "
			     "(at %zu)", (unsigned long long)off, len,
			     (unsigned long long)want, i);
			return false;
		}
	}
	return true;
}

static void test_random_access(void)
{
	const uint64_t size = 3 * CHUNK + 17;
	const uint64_t offs[] = {
		0, 1, 17, CHUNK - 1, CHUNK, CHUNK + 1, 2 * CHUNK - 1, 2 * CHUNK, 2 * CHUNK + 1,
		3 * CHUNK - 1, 3 * CHUNK, 3 * CHUNK + 1, size - 1, size, size + 1,
		size + 10 * CHUNK, UINT64_MAX / 2, UINT64_MAX - 1, UINT64_MAX,
	};
	const size_t lens[] = {
		0, 1, 2, 16, 17, 18, 4096, CHUNK - 1, CHUNK, CHUNK + 1, 2 * CHUNK,
		2 * CHUNK + 3, size - 1, size, size + 1, size + CHUNK,
	};
	uint8_t *data = random_bytes(size), *buf = malloc(size + 2 * CHUNK + 64);
	struct blob_reader *r = NULL, *r2 = NULL;
	struct iverr e = { 0 };
	struct blob_id id;
	bool good = true;
	int ret, count = 0;

	if (!buf)
		BAIL_OUT("out of memory");
	is_int(write_blob(data, size, &id), 0, "wrote a %llu-byte blob for random access",
	       (unsigned long long)size);
	ret = blob_reader_open(bs, &id, wrap_key, OWNER, UINT64_MAX, &r, &e);
	is_int(ret, 0, "opened it with expect_size UINT64_MAX (no check)");
	if (ret < 0)
		BAIL_OUT("cannot open: %s", e.msg);
	is_int(blob_reader_size(r), size, "blob_reader_size");

	for (size_t i = 0; i < sizeof(offs) / sizeof(offs[0]); i++)
		for (size_t j = 0; j < sizeof(lens) / sizeof(lens[0]); j++, count++)
			good = check_pread(r, data, size, offs[i], lens[j], buf) && good;
	ok(good, "%d preads at chunk boundaries, the end and past it are exact", count);

	/* Backwards, chunk by chunk, in one reader (exercises its chunk cache). */
	good = true;
	for (int k = 3; k >= 0; k--) {
		good = check_pread(r, data, size, (uint64_t)k * CHUNK + 5, 10, buf) && good;
		good = check_pread(r, data, size, (uint64_t)k * CHUNK, CHUNK, buf) && good;
		good = check_pread(r, data, size, (uint64_t)k * CHUNK + 7, 3, buf) && good;
	}
	ok(good, "backward reads mixing whole and partial chunks are exact");

	/* Random offsets and lengths, in a second reader interleaved with the first. */
	ret = blob_reader_open(bs, &id, wrap_key, OWNER, size, &r2, &e);
	is_int(ret, 0, "a second reader opens with the exact expect_size");
	good = true;
	for (int i = 0; i < 600 && ret == 0; i++) {
		uint64_t off = randombytes_uniform((uint32_t)size + 100);
		size_t len = randombytes_uniform(i % 3 ? 300 : (uint32_t)(2 * CHUNK + 10));
		good = check_pread(i % 2 ? r : r2, data, size, off, len, buf) && good;
	}
	ok(good, "600 random preads are exact");
	blob_reader_close(r);
	blob_reader_close(r2);
	blob_reader_close(NULL);

	/* The empty blob. */
	is_int(write_blob(data, 0, &id), 0, "wrote an empty blob");
	ret = blob_reader_open(bs, &id, wrap_key, OWNER, 0, &r, &e);
	is_int(ret, 0, "the empty blob opens");
	if (ret == 0) {
		ok(check_pread(r, data, 0, 0, 10, buf) && check_pread(r, data, 0, 5, 0, buf),
		   "reading the empty blob gives 0 bytes");
		blob_reader_close(r);
	}
	free(data);
	free(buf);
}

/* ---- tampering --------------------------------------------------------- */

static const uint8_t *tdata;   /* plaintext of the blob under attack */
static uint64_t tsize;

/*
 * Opens the tampered blob and reads it in every way: each attempt must
 * fail with -EBADMSG or return exactly the right bytes, and at least one
 * must fail.  @want_open_fail: the header itself must be refused.
 * Returns what the first failure returned (0 if nothing failed).
 */
static int attack_result(const struct blob_id *id, const uint8_t *key, uint32_t owner,
			 uint64_t expect, bool *wrong_bytes, bool *opened)
{
	struct blob_reader *r = NULL;
	struct iverr e = { 0 };
	uint8_t *buf = malloc(tsize + CHUNK + 64);
	int first = 0, ret;

	if (!buf)
		BAIL_OUT("out of memory");
	*wrong_bytes = false;
	*opened = false;
	ret = blob_reader_open(bs, id, key, owner, expect, &r, &e);
	if (ret < 0) {
		if (r)
			*wrong_bytes = true;   /* a reader handed out on failure */
		first = ret;
		if (ret != -IV_EDAMAGE)
			diag("open gave %d: %s", ret, e.msg);
		else if (!e.msg[0])
			diag("open failed without a message");
		goto out;
	}
	*opened = true;
	/* Chunk by chunk, then all at once, then unaligned across boundaries. */
	for (uint64_t off = 0; off < tsize; off += CHUNK) {
		ssize_t n = blob_reader_pread(r, buf, CHUNK, off, &e);
		uint64_t want = tsize - off < CHUNK ? tsize - off : CHUNK;
		if (n < 0) {
			if (!first)
				first = (int)n;
		} else if ((uint64_t)n != want || memcmp(buf, tdata + off, (size_t)want)) {
			*wrong_bytes = true;
		}
	}
	for (uint64_t off = 0; off < tsize + 10; off += CHUNK / 2 + 3) {
		ssize_t n = blob_reader_pread(r, buf, CHUNK, off, &e);
		if (n < 0) {
			if (!first)
				first = (int)n;
		} else if (n > 0 && memcmp(buf, tdata + off, (size_t)n)) {
			*wrong_bytes = true;
		}
	}
	{
		ssize_t n = blob_reader_pread(r, buf, tsize, 0, &e);
		if (n < 0) {
			if (!first)
				first = (int)n;
		} else if ((uint64_t)n != tsize || memcmp(buf, tdata, tsize)) {
			*wrong_bytes = true;
		}
	}
	blob_reader_close(r);
out:
	free(buf);
	return first;
}

/*
 * One attack: @what is its name.  The blob must be refused with -EBADMSG
 * (at open when @at_open), and never give wrong bytes.
 */
static void expect_damage(const char *what, const struct blob_id *id, const uint8_t *key,
			  uint32_t owner, uint64_t expect, bool at_open)
{
	bool wrong, opened;
	int ret = attack_result(id, key, owner, expect, &wrong, &opened);

	is_int(ret, -IV_EDAMAGE, "%s: detected as damage (-EBADMSG)", what);
	ok(!wrong, "%s: never returns wrong bytes", what);
	if (at_open)
		ok(!opened, "%s: refused when the blob is opened", what);
}

/* Restores @path to @orig, then XORs byte @off. */
static void flip_at(const char *path, const uint8_t *orig, size_t len, uint64_t off)
{
	if (tu_write_file(path, orig, len, 0600) < 0 || tu_flip_byte(path, off, 0x01) < 0)
		BAIL_OUT("cannot tamper with %s", path);
}

static void restore(const char *path, const uint8_t *orig, size_t len)
{
	if (tu_write_file(path, orig, len, 0600) < 0)
		BAIL_OUT("cannot restore %s", path);
}

static void test_tampering(void)
{
	const uint64_t size = 3 * CHUNK + 17;    /* chunks 0..2 full, chunk 3 of 17 bytes */
	const uint64_t asize = 3 * CHUNK;        /* chunk-aligned: 3 full chunks */
	uint8_t *data = random_bytes(size), *adata = random_bytes(asize);
	uint8_t *orig, *aorig, *borig;
	struct blob_id id, aid, bid;
	char path[512], apath[512], bpath[512];
	size_t olen = 0, alen = 0, blen = 0;
	bool wrong, opened;
	int ret;

	ok(write_blob(data, size, &id) == 0, "wrote the blob to attack (%llu bytes)",
	   (unsigned long long)size);
	ok(write_blob(adata, asize, &aid) == 0, "wrote a chunk-aligned blob (%llu bytes)",
	   (unsigned long long)asize);
	ok(write_blob(adata, asize, &bid) == 0, "wrote a second chunk-aligned blob, same plaintext");
	blob_path(store_dir, &id, path, sizeof(path));
	blob_path(store_dir, &aid, apath, sizeof(apath));
	blob_path(store_dir, &bid, bpath, sizeof(bpath));
	orig = tu_read_file(path, &olen);
	aorig = tu_read_file(apath, &alen);
	borig = tu_read_file(bpath, &blen);
	if (!orig || !aorig || !borig)
		BAIL_OUT("cannot read the blobs back");

	tdata = data;
	tsize = size;
	ret = attack_result(&id, wrap_key, OWNER, size, &wrong, &opened);
	ok(ret == 0 && !wrong && opened, "the untouched blob reads cleanly in every way");

	/* Chunk bodies: the header is fine, the chunk is not. */
	struct { const char *name; uint64_t off; } chunk_attacks[] = {
		{ "ciphertext of chunk 0, first byte", chunk_off(0) + 24 },
		{ "ciphertext of chunk 1", chunk_off(1) + 24 + 1000 },
		{ "ciphertext of chunk 2, last byte", chunk_off(2) + 24 + CHUNK - 1 },
		{ "ciphertext of the short last chunk", chunk_off(3) + 24 + 16 },
		{ "nonce of chunk 0", chunk_off(0) },
		{ "nonce of chunk 2", chunk_off(2) + 23 },
		{ "nonce of the last chunk", chunk_off(3) + 10 },
		{ "tag of chunk 0", chunk_off(0) + 24 + CHUNK },
		{ "tag of chunk 1", chunk_off(1) + 24 + CHUNK + 15 },
		{ "tag of the last chunk", chunk_off(3) + 24 + 17 + 15 },
	};
	for (size_t i = 0; i < sizeof(chunk_attacks) / sizeof(chunk_attacks[0]); i++) {
		flip_at(path, orig, olen, chunk_attacks[i].off);
		expect_damage(chunk_attacks[i].name, &id, wrap_key, OWNER, size, false);
	}

	/* A damaged chunk spoils only itself: the others still read. */
	{
		struct blob_reader *r = NULL;
		uint8_t *buf = malloc(CHUNK);
		ssize_t n0, n1, n2;

		flip_at(path, orig, olen, chunk_off(1) + 24 + 5);
		ret = blob_reader_open(bs, &id, wrap_key, OWNER, size, &r, NULL);
		is_int(ret, 0, "a blob with one damaged chunk still opens (header intact)");
		if (ret == 0 && buf) {
			n0 = blob_reader_pread(r, buf, CHUNK, 0, NULL);
			ok(n0 == (ssize_t)CHUNK && !memcmp(buf, data, CHUNK),
			   "chunk 0 before the damaged one reads correctly");
			struct iverr e = { 0 };
			n1 = blob_reader_pread(r, buf, 10, CHUNK + 100, &e);
			is_int(n1, -IV_EDAMAGE, "a read inside the damaged chunk 1 fails");
			ok(strstr(e.msg, "chunk 1") != NULL, "naming the chunk: %s", e.msg);
			n1 = blob_reader_pread(r, buf, 200, CHUNK - 100, NULL);
			is_int(n1, -IV_EDAMAGE, "a read spanning chunks 0 and 1 fails as a whole");
			n2 = blob_reader_pread(r, buf, CHUNK, 2 * CHUNK, NULL);
			ok(n2 == (ssize_t)CHUNK && !memcmp(buf, data + 2 * CHUNK, CHUNK),
			   "chunk 2 after the damaged one reads correctly");
			blob_reader_close(r);
		}
		free(buf);
	}

	/* Header fields: refused at open. */
	struct { const char *name; uint64_t off; } header_attacks[] = {
		{ "magic", 0 },
		{ "header length field", 10 },
		{ "chunk size field", 13 },
		{ "blob id in the header", 16 + 7 },
		{ "owner field", 32 },
		{ "reserved bytes", 37 },
		{ "header size field, low byte", 40 },
		{ "header size field, byte 2", 42 },
		{ "header size field, high byte", 47 },
		{ "chunk count field", 48 },
		{ "wrap nonce", 56 },
		{ "wrapped file key", 80 + 3 },
		{ "wrapped file key, last byte", 80 + 31 },
		{ "wrap tag", 127 },
	};
	for (size_t i = 0; i < sizeof(header_attacks) / sizeof(header_attacks[0]); i++) {
		flip_at(path, orig, olen, header_attacks[i].off);
		expect_damage(header_attacks[i].name, &id, wrap_key, OWNER, size, true);
	}

	/* Header size and chunk count edited consistently: the wrap still catches it. */
	{
		uint8_t *t = malloc(olen);
		memcpy(t, orig, olen);
		t[40] = (uint8_t)(t[40] - 17);   /* size 3*65536 */
		t[48] = 3;                        /* chunks 3 */
		restore(path, t, olen - 17 - 40);
		free(t);
		expect_damage("size and chunk count edited to match a truncation", &id, wrap_key,
			      OWNER, UINT64_MAX, true);
	}

	/* Truncation and extension. */
	restore(path, orig, olen - 1);
	expect_damage("truncated by one byte", &id, wrap_key, OWNER, size, true);
	restore(path, orig, olen - SEALED);
	expect_damage("truncated by 65576 bytes", &id, wrap_key, OWNER, size, true);
	restore(path, orig, BLOB_HEADER_LEN);
	expect_damage("truncated to the header", &id, wrap_key, OWNER, size, true);
	restore(path, orig, BLOB_HEADER_LEN - 1);
	expect_damage("truncated inside the header", &id, wrap_key, OWNER, size, true);
	restore(path, orig, 0);
	expect_damage("truncated to nothing", &id, wrap_key, OWNER, size, true);
	{
		uint8_t *t = malloc(olen + SEALED);
		memcpy(t, orig, olen);
		t[olen] = 0;
		restore(path, t, olen + 1);
		expect_damage("extended by one byte", &id, wrap_key, OWNER, size, true);
		free(t);
	}

	tdata = adata;
	tsize = asize;
	ret = attack_result(&aid, wrap_key, OWNER, asize, &wrong, &opened);
	ok(ret == 0 && !wrong && opened, "the chunk-aligned blob reads cleanly");
	restore(apath, aorig, alen - SEALED);
	expect_damage("chunk-aligned blob truncated by exactly one sealed chunk (65536+40)",
		      &aid, wrap_key, OWNER, asize, true);
	restore(apath, aorig, alen - 2 * SEALED);
	expect_damage("chunk-aligned blob truncated by two sealed chunks", &aid, wrap_key, OWNER,
		      asize, true);
	{
		/* Append a copy of the last sealed chunk. */
		uint8_t *t = malloc(alen + SEALED);
		memcpy(t, aorig, alen);
		memcpy(t + alen, aorig + alen - SEALED, SEALED);
		restore(apath, t, alen + SEALED);
		expect_damage("chunk-aligned blob extended by a repeated sealed chunk", &aid,
			      wrap_key, OWNER, asize, true);
		/* Swap chunks 0 and 1 inside the blob. */
		memcpy(t, aorig, alen);
		memcpy(t + chunk_off(0), aorig + chunk_off(1), SEALED);
		memcpy(t + chunk_off(1), aorig + chunk_off(0), SEALED);
		restore(apath, t, alen);
		expect_damage("chunks 0 and 1 swapped inside a blob", &aid, wrap_key, OWNER, asize,
			      false);
		/* Chunk 1 of blob B moved into blob A (same key, same plaintext). */
		memcpy(t, aorig, alen);
		memcpy(t + chunk_off(1), borig + chunk_off(1), SEALED);
		restore(apath, t, alen);
		expect_damage("chunk 1 transplanted from another blob", &aid, wrap_key, OWNER,
			      asize, false);
		/* Blob B's header on blob A's chunks. */
		memcpy(t, aorig, alen);
		memcpy(t, borig, BLOB_HEADER_LEN);
		restore(apath, t, alen);
		expect_damage("another blob's header on this blob's chunks", &aid, wrap_key, OWNER,
			      asize, true);
		free(t);
	}
	restore(apath, aorig, alen);

	/* Blob A's file copied over blob B's path. */
	restore(bpath, aorig, alen);
	tdata = adata;
	expect_damage("blob A's file copied over blob B (swap)", &bid, wrap_key, OWNER, asize,
		      true);
	restore(bpath, borig, blen);
	ret = attack_result(&bid, wrap_key, OWNER, asize, &wrong, &opened);
	ok(ret == 0 && !wrong, "blob B reads again once restored");

	/* Wrong reader parameters on an intact blob. */
	restore(path, orig, olen);
	tdata = data;
	tsize = size;
	expect_damage("wrong owner uid", &id, wrap_key, OWNER + 1, size, true);
	expect_damage("owner uid 0", &id, wrap_key, 0, size, true);
	expect_damage("wrong wrap key", &id, other_key, OWNER, size, true);
	expect_damage("expect_size one byte more", &id, wrap_key, OWNER, size + 1, true);
	expect_damage("expect_size one byte less", &id, wrap_key, OWNER, size - 1, true);
	expect_damage("expect_size 0", &id, wrap_key, OWNER, 0, true);
	{
		struct blob_id missing;
		struct iverr e = { 0 };
		struct blob_reader *r = NULL;
		blob_id_random(&missing);
		ret = blob_reader_open(bs, &missing, wrap_key, OWNER, UINT64_MAX, &r, &e);
		is_int(ret, -IV_EDAMAGE, "a blob missing from the store gives -IV_EDAMAGE");
		ok(r == NULL && strstr(e.msg, "missing"), "saying it is missing: %s", e.msg);
	}
	ret = attack_result(&id, wrap_key, OWNER, size, &wrong, &opened);
	ok(ret == 0 && !wrong && opened, "the restored blob reads cleanly after all attacks");

	free(orig);
	free(aorig);
	free(borig);
	free(data);
	free(adata);
}

/* ---- maintenance -------------------------------------------------------- */

static void test_rewrap_and_structure(void)
{
	const uint64_t size = 2 * CHUNK + 333;
	uint8_t *data = random_bytes(size), new_key[32], *before, *after;
	struct blob_header h;
	struct blob_id id;
	struct iverr e = { 0 };
	char path[512];
	size_t lb = 0, la = 0;
	int ret;

	randombytes_buf(new_key, sizeof(new_key));
	ok(write_blob(data, size, &id) == 0, "wrote a blob to rewrap");
	blob_path(store_dir, &id, path, sizeof(path));
	before = tu_read_file(path, &lb);

	ret = blob_check_structure(bs, &id, &h, &e);
	is_int(ret, 0, "blob_check_structure accepts an intact blob without a key");
	is_int(h.version, BLOB_VERSION, "header version");
	is_int(h.chunk_len, BLOB_CHUNK_LEN, "header chunk length");
	is_mem(h.id.b, id.b, BLOB_ID_LEN, "header id");
	is_int(h.owner, OWNER, "header owner");
	is_int(h.size, size, "header plaintext size");
	is_int(h.chunks, 3, "header chunk count");

	ret = blob_rewrap(bs, &id, OWNER, other_key, new_key, &e);
	is_int(ret, -IV_EDAMAGE, "rewrap with the wrong old key fails");
	is_int(read_compare(bs, &id, wrap_key, OWNER, data, size), 0,
	       "and the blob still reads with its key");
	ret = blob_rewrap(bs, &id, OWNER + 1, wrap_key, new_key, NULL);
	is_int(ret, -IV_EDAMAGE, "rewrap for the wrong owner fails");

	iverr_clear(&e);
	ret = blob_rewrap(bs, &id, OWNER, wrap_key, new_key, &e);
	is_int(ret, 0, "blob_rewrap from the old key to the new one");
	after = tu_read_file(path, &la);
	ok(before && after && la == lb, "the stored size is unchanged by a rewrap");
	if (before && after && la == lb) {
		ok(memcmp(before, after, 56) == 0, "header fields before the wrap are unchanged");
		ok(memcmp(before + 56, after + 56, 72) != 0, "the wrap (nonce, key, tag) changed");
		ok(memcmp(before + BLOB_HEADER_LEN, after + BLOB_HEADER_LEN,
			  lb - BLOB_HEADER_LEN) == 0, "the chunks are untouched");
	}
	tdata = data;
	tsize = size;
	expect_damage("after rewrap, the old key", &id, wrap_key, OWNER, size, true);
	is_int(read_compare(bs, &id, new_key, OWNER, data, size), 0,
	       "after rewrap, the new key reads the same bytes");

	/* Replaying the pre-rotation file does not open under the new key. */
	if (before) {
		restore(path, before, lb);
		expect_damage("pre-rewrap file replayed, new key", &id, new_key, OWNER, size, true);
		restore(path, after, la);
	}

	/* Structure checks without a key. */
	restore(path, after, la - 1);
	iverr_clear(&e);
	ret = blob_check_structure(bs, &id, &h, &e);
	is_int(ret, -IV_EDAMAGE, "blob_check_structure detects truncation by one byte");
	ok(strstr(e.msg, "truncated") != NULL, "and says truncated: %s", e.msg);
	restore(path, after, la - SEALED);
	ret = blob_check_structure(bs, &id, &h, NULL);
	is_int(ret, -IV_EDAMAGE, "blob_check_structure detects truncation by a sealed chunk");
	restore(path, after, 50);
	ret = blob_check_structure(bs, &id, &h, NULL);
	is_int(ret, -IV_EDAMAGE, "blob_check_structure detects truncation into the header");
	{
		uint8_t *t = malloc(la + 1);
		memcpy(t, after, la);
		t[la] = 'x';
		restore(path, t, la + 1);
		free(t);
	}
	iverr_clear(&e);
	ret = blob_check_structure(bs, &id, &h, &e);
	is_int(ret, -IV_EDAMAGE, "blob_check_structure detects extension");
	ok(strstr(e.msg, "extended") != NULL, "and says extended: %s", e.msg);
	restore(path, after, la - 1);
	ret = blob_rewrap(bs, &id, OWNER, new_key, wrap_key, NULL);
	is_int(ret, -IV_EDAMAGE, "blob_rewrap refuses a truncated blob");
	restore(path, after, la);
	is_int(blob_check_structure(bs, &id, &h, NULL), 0, "restored blob passes the check");

	{
		struct blob_id missing;
		blob_id_random(&missing);
		ok(blob_check_structure(bs, &missing, &h, NULL) < 0,
		   "blob_check_structure of a missing blob fails");
	}
	free(before);
	free(after);
	free(data);
}

/* Counts regular files below @path (recursively). */
static int count_files(const char *path)
{
	DIR *d = opendir(path);
	struct dirent *de;
	int n = 0;

	if (!d)
		return -1;
	while ((de = readdir(d))) {
		char sub[1024];
		struct stat st;

		if (!strcmp(de->d_name, ".") || !strcmp(de->d_name, ".."))
			continue;
		snprintf(sub, sizeof(sub), "%s/%s", path, de->d_name);
		if (lstat(sub, &st) < 0)
			continue;
		if (S_ISDIR(st.st_mode))
			n += count_files(sub);
		else
			n++;
	}
	closedir(d);
	return n;
}

struct list_state {
	int count;
	int found;
	struct blob_id want;
	uint64_t want_size;
	bool size_ok;
};

static int list_cb(const struct blob_id *id, uint64_t size, void *arg)
{
	struct list_state *ls = arg;

	ls->count++;
	if (!memcmp(id->b, ls->want.b, BLOB_ID_LEN)) {
		ls->found++;
		ls->size_ok = size == ls->want_size;
	}
	return 0;
}

static void test_store_maintenance(void)
{
	char dir[256], sub[512], p[600];
	struct blobstore *s = NULL;
	struct blob_writer *w = NULL;
	struct iverr e = { 0 };
	struct blob_id id;
	struct list_state ls = { 0 };
	uint8_t *data = random_bytes(3 * CHUNK);
	int ret;

	tu_mkdtemp(dir, sizeof(dir), "blobstore");
	ret = blobstore_local_open(dir, &s, &e);
	is_int(ret, 0, "blobstore_local_open on a fresh directory");
	if (ret < 0)
		BAIL_OUT("%s", e.msg);
	snprintf(sub, sizeof(sub), "%s/blobs", dir);
	is_int(count_files(sub), 0, "blobs/ exists and is empty");
	snprintf(sub, sizeof(sub), "%s/tmp", dir);
	is_int(count_files(sub), 0, "tmp/ exists and is empty");

	/* Abort after writing two and a half chunks. */
	ret = blob_writer_open(s, wrap_key, OWNER, &w, &e);
	is_int(ret, 0, "a writer opens");
	if (ret == 0) {
		ret = blob_writer_write(w, data, 2 * CHUNK + CHUNK / 2, &e);
		is_int(ret, 0, "two and a half chunks written");
		is_int(count_files(sub), 1, "one file in tmp/ while writing");
		blob_writer_abort(w);
	}
	snprintf(p, sizeof(p), "%s/blobs", dir);
	is_int(count_files(p), 0, "after blob_writer_abort nothing is in blobs/");
	is_int(count_files(sub), 0, "and nothing is in tmp/");
	ret = blob_writer_open(s, wrap_key, OWNER, &w, &e);
	if (ret == 0)
		blob_writer_abort(w);
	is_int(count_files(sub), 0, "aborting a writer that wrote nothing leaves nothing");
	blob_writer_abort(NULL);
	ok(1, "blob_writer_abort(NULL) is a no-op");

	/* Leftovers in tmp/ are swept; committed blobs are not. */
	ok(write_blob_in(s, wrap_key, OWNER, data, 1000, NULL, &id) == 0, "committed a blob");
	snprintf(p, sizeof(p), "%s/tmp/0123456789abcdef0123456789abcdef.99999.deadbeef", dir);
	ok(tu_write_file(p, "junk", 4, 0600) == 0, "left a stale file in tmp/");
	snprintf(p, sizeof(p), "%s/tmp/another-leftover", dir);
	ok(tu_write_file(p, "", 0, 0600) == 0, "left an empty stale file in tmp/");
	iverr_clear(&e);
	ret = s->ops->sweep(s, &e);
	is_int(ret, 2, "sweep removes the 2 leftovers");
	is_int(count_files(sub), 0, "tmp/ is empty after the sweep");
	is_int(s->ops->sweep(s, &e), 0, "a second sweep finds nothing");
	is_int(read_compare(s, &id, wrap_key, OWNER, data, 1000), 0,
	       "the committed blob survives the sweep");

	/* Listing and removal. */
	ls.want = id;
	ls.want_size = blob_stored_size(1000);
	ret = s->ops->list(s, list_cb, &ls, &e);
	is_int(ret, 0, "list walks the store");
	is_int(ls.count, 1, "it finds one blob");
	ok(ls.found == 1 && ls.size_ok, "the committed one, with its stored size");
	ret = s->ops->remove(s, &id, &e);
	is_int(ret, 0, "remove deletes the blob");
	blob_path(dir, &id, p, sizeof(p));
	ok(access(p, F_OK) < 0 && errno == ENOENT, "its file is gone");
	is_int(s->ops->remove(s, &id, &e), 0, "removing it again is not an error");
	ls.count = 0;
	ok(s->ops->list(s, list_cb, &ls, &e) == 0 && ls.count == 0, "list finds nothing now");

	/* An id round-trips through hex. */
	char hex[2 * BLOB_ID_LEN + 1];
	struct blob_id back;
	blob_id_hex(&id, hex);
	is_int(strlen(hex), 32, "blob_id_hex gives 32 digits");
	ok(blob_id_parse(hex, &back) == 0 && !memcmp(back.b, id.b, BLOB_ID_LEN),
	   "blob_id_parse reads them back");
	ok(blob_id_parse("0123", &back) < 0, "blob_id_parse refuses a short id");
	ok(blob_id_parse("0123456789abcdef0123456789abcdeg", &back) < 0,
	   "blob_id_parse refuses a non-hex digit");

	blobstore_free(s);
	s = NULL;
	ret = blobstore_local_open("/nonexistent/imgvault/store", &s, &e);
	ok(ret < 0 && s == NULL, "blobstore_local_open of a missing directory fails (%d)", ret);
	ok(tu_rm_rf(dir) == 0, "removed the second store");
	free(data);
}

int main(void)
{
	struct iverr e = { 0 };

	if (keys_init() < 0)
		BAIL_OUT("keys_init failed");
	randombytes_buf(wrap_key, sizeof(wrap_key));
	randombytes_buf(other_key, sizeof(other_key));
	tu_mkdtemp(store_dir, sizeof(store_dir), "blob");
	is_int(blobstore_local_open(store_dir, &bs, &e), 0, "blobstore_local_open");
	if (!bs)
		BAIL_OUT("%s", e.msg);

	test_stored_size_formula();
	test_round_trips();
	test_no_plaintext_on_disk();
	test_random_access();
	test_tampering();
	test_rewrap_and_structure();
	test_store_maintenance();

	blobstore_free(bs);
	ok(tu_rm_rf(store_dir) == 0, "removed the test store");
	return done_testing();
}
