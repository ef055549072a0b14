#include "blob.h"

#include <stdlib.h>
#include <string.h>

#include <sodium.h>

#include "bytes.h"

#define WRAP_AD_LEN 80         /* header bytes 0..79 bind the file-key wrap */
#define SEALED_CHUNK_MAX (BLOB_CHUNK_LEN + BLOB_CHUNK_OVERHEAD)
#define NONCE_LEN crypto_aead_xchacha20poly1305_ietf_NPUBBYTES
#define TAG_LEN   crypto_aead_xchacha20poly1305_ietf_ABYTES

struct blob_writer {
	struct blobstore *bs;
	struct blobstore_wfile *wf;
	struct blob_id id;
	uint32_t owner;
	uint64_t size;
	uint64_t chunks;
	size_t fill;                 /* plaintext bytes waiting in @plain */
	/* File key, then wrap key.  Per-blob keys live as long as the writer
	 * and are wiped with it; sodium_malloc's guard pages would cost an
	 * mprotect and a TLB shootdown on every other core per blob. */
	uint8_t keys[64];
	uint8_t *plain;              /* one chunk */
	uint8_t *sealed;             /* one sealed chunk */
};

struct blob_reader {
	struct blobstore *bs;
	struct blobstore_rfile *rf;
	struct blob_header h;
	uint8_t file_key[32];        /* wiped on close (see struct blob_writer) */
	uint8_t *sealed;
	uint8_t *plain;              /* the last decrypted chunk */
	uint64_t cached;             /* its index, UINT64_MAX if none */
};

uint64_t blob_stored_size(uint64_t size)
{
	uint64_t chunks = (size + BLOB_CHUNK_LEN - 1) / BLOB_CHUNK_LEN;
	return BLOB_HEADER_LEN + size + chunks * BLOB_CHUNK_OVERHEAD;
}

static uint64_t chunk_offset(uint64_t k)
{
	return BLOB_HEADER_LEN + k * (uint64_t)SEALED_CHUNK_MAX;
}

static void chunk_ad(const struct blob_id *id, uint64_t k, uint8_t ad[24])
{
	memcpy(ad, id->b, BLOB_ID_LEN);
	put_le64(ad + BLOB_ID_LEN, k);
}

/* Encodes everything the wrap authenticates: bytes 0..79. */
static void header_encode(const struct blob_header *h, uint8_t out[BLOB_HEADER_LEN])
{
	memset(out, 0, BLOB_HEADER_LEN);
	memcpy(out, BLOB_MAGIC, 8);
	put_le16(out + 8, h->version);
	put_le16(out + 10, BLOB_HEADER_LEN);
	put_le32(out + 12, h->chunk_len);
	memcpy(out + 16, h->id.b, BLOB_ID_LEN);
	put_le32(out + 32, h->owner);
	/* 36..39 reserved, zero */
	put_le64(out + 40, h->size);
	put_le64(out + 48, h->chunks);
}

static int header_decode(const uint8_t in[BLOB_HEADER_LEN], const struct blob_id *want,
			 uint64_t stored, struct blob_header *h, struct iverr *e)
{
	char hex[2 * BLOB_ID_LEN + 1];

	blob_id_hex(want, hex);
	if (memcmp(in, BLOB_MAGIC, 8) != 0)
		return iverr_set(e, IV_EDAMAGE, "blob %s has no imgvault header", hex);
	h->version = get_le16(in + 8);
	if (h->version != BLOB_VERSION || get_le16(in + 10) != BLOB_HEADER_LEN)
		return iverr_set(e, h->version > BLOB_VERSION ? IV_EVERSION : IV_EDAMAGE,
				 "blob %s has format version %u, this imgvault reads %u",
				 hex, h->version, BLOB_VERSION);
	h->chunk_len = get_le32(in + 12);
	memcpy(h->id.b, in + 16, BLOB_ID_LEN);
	h->owner = get_le32(in + 32);
	h->size = get_le64(in + 40);
	h->chunks = get_le64(in + 48);
	if (h->chunk_len != BLOB_CHUNK_LEN || get_le32(in + 36) != 0)
		return iverr_set(e, IV_EDAMAGE, "blob %s has a damaged header", hex);
	if (memcmp(h->id.b, want->b, BLOB_ID_LEN) != 0)
		return iverr_set(e, IV_EDAMAGE, "blob %s holds another blob's content "
				 "(swapped or replaced)", hex);
	if (h->size > (UINT64_MAX >> 2) ||
	    h->chunks != (h->size + BLOB_CHUNK_LEN - 1) / BLOB_CHUNK_LEN)
		return iverr_set(e, IV_EDAMAGE, "blob %s has a damaged header", hex);
	if (stored != blob_stored_size(h->size))
		return iverr_set(e, IV_EDAMAGE, "blob %s is %s: %llu bytes stored, "
				 "%llu expected", hex,
				 stored < blob_stored_size(h->size) ? "truncated" : "extended",
				 (unsigned long long)stored,
				 (unsigned long long)blob_stored_size(h->size));
	return 0;
}

int blob_writer_open(struct blobstore *bs, const uint8_t wrap_key[32], uint32_t owner,
		     struct blob_writer **out, struct iverr *e)
{
	struct blob_writer *w;
	int ret;

	*out = NULL;
	w = calloc(1, sizeof(*w));
	if (!w)
		return iverr_set(e, ENOMEM, "out of memory");
	w->plain = malloc(BLOB_CHUNK_LEN);
	w->sealed = malloc(SEALED_CHUNK_MAX);
	if (!w->plain || !w->sealed) {
		ret = iverr_set(e, ENOMEM, "out of memory");
		goto out_free;
	}
	crypto_aead_xchacha20poly1305_ietf_keygen(w->keys);
	memcpy(w->keys + 32, wrap_key, 32);
	w->bs = bs;
	w->owner = owner;
	blob_id_random(&w->id);
	ret = bs->ops->create(bs, &w->id, &w->wf, e);
	if (ret < 0)
		goto out_free;
	*out = w;
	return 0;
out_free:
	sodium_memzero(w->keys, sizeof(w->keys));
	free(w->plain);
	free(w->sealed);
	free(w);
	return ret;
}

const struct blob_id *blob_writer_id(const struct blob_writer *w)
{
	return &w->id;
}

uint64_t blob_writer_size(const struct blob_writer *w)
{
	return w->size;
}

/* Seals @len plaintext bytes as the next chunk and writes it. */
static int writer_seal_chunk(struct blob_writer *w, const uint8_t *pt, size_t len,
			     struct iverr *e)
{
	uint8_t ad[24];
	unsigned long long clen;

	chunk_ad(&w->id, w->chunks, ad);
	randombytes_buf(w->sealed, NONCE_LEN);
	crypto_aead_xchacha20poly1305_ietf_encrypt_detached(
		w->sealed + NONCE_LEN, w->sealed + NONCE_LEN + len, &clen, pt, len,
		ad, sizeof(ad), NULL, w->sealed, w->keys);
	(void)clen;
	int ret = w->bs->ops->pwrite(w->wf, w->sealed, len + BLOB_CHUNK_OVERHEAD,
				     chunk_offset(w->chunks), e);
	if (ret == 0)
		w->chunks++;
	return ret;
}

int blob_writer_write(struct blob_writer *w, const void *buf, size_t len, struct iverr *e)
{
	const uint8_t *p = buf;
	int ret;

	while (len) {
		if (w->fill == 0 && len >= BLOB_CHUNK_LEN) {
			/* Whole chunks straight from the caller's buffer. */
			if ((ret = writer_seal_chunk(w, p, BLOB_CHUNK_LEN, e)) < 0)
				return ret;
			p += BLOB_CHUNK_LEN;
			len -= BLOB_CHUNK_LEN;
			w->size += BLOB_CHUNK_LEN;
			continue;
		}
		size_t n = BLOB_CHUNK_LEN - w->fill;
		if (n > len)
			n = len;
		memcpy(w->plain + w->fill, p, n);
		w->fill += n;
		w->size += n;
		p += n;
		len -= n;
		if (w->fill == BLOB_CHUNK_LEN) {
			if ((ret = writer_seal_chunk(w, w->plain, BLOB_CHUNK_LEN, e)) < 0)
				return ret;
			w->fill = 0;
		}
	}
	return 0;
}

static void writer_free(struct blob_writer *w)
{
	sodium_memzero(w->keys, sizeof(w->keys));
	sodium_memzero(w->plain, BLOB_CHUNK_LEN);
	free(w->plain);
	free(w->sealed);
	free(w);
}

int blob_writer_commit(struct blob_writer *w, struct blob_id *id_out, struct iverr *e)
{
	struct blob_header h = { 0 };
	uint8_t hdr[BLOB_HEADER_LEN];
	int ret;

	if (w->fill && (ret = writer_seal_chunk(w, w->plain, w->fill, e)) < 0)
		goto out_abort;
	h.version = BLOB_VERSION;
	h.chunk_len = BLOB_CHUNK_LEN;
	h.id = w->id;
	h.owner = w->owner;
	h.size = w->size;
	h.chunks = w->chunks;
	header_encode(&h, hdr);
	randombytes_buf(hdr + 56, NONCE_LEN);  /* the wrap nonce, bytes 56..79 */
	crypto_aead_xchacha20poly1305_ietf_encrypt(hdr + WRAP_AD_LEN, NULL, w->keys, 32,
						   hdr, WRAP_AD_LEN, NULL, hdr + 56,
						   w->keys + 32);
	if ((ret = w->bs->ops->pwrite(w->wf, hdr, sizeof(hdr), 0, e)) < 0)
		goto out_abort;
	ret = w->bs->ops->commit(w->wf, e);
	w->wf = NULL;
	if (ret == 0 && id_out)
		*id_out = w->id;
	writer_free(w);
	return ret;
out_abort:
	blob_writer_abort(w);
	return ret;
}

void blob_writer_abort(struct blob_writer *w)
{
	if (!w)
		return;
	if (w->wf)
		w->bs->ops->abort(w->wf);
	writer_free(w);
}

/* Reads the header of an open blob and checks it against @id. */
static int read_header(struct blobstore *bs, struct blobstore_rfile *rf, uint64_t stored,
		       const struct blob_id *id, uint8_t raw[BLOB_HEADER_LEN],
		       struct blob_header *h, struct iverr *e)
{
	char hex[2 * BLOB_ID_LEN + 1];

	(void)bs;
	if (stored < BLOB_HEADER_LEN) {
		blob_id_hex(id, hex);
		return iverr_set(e, IV_EDAMAGE, "blob %s is truncated: %llu bytes stored",
				 hex, (unsigned long long)stored);
	}
	int ret = bs->ops->pread(rf, raw, BLOB_HEADER_LEN, 0, e);
	if (ret < 0)
		return ret;
	return header_decode(raw, id, stored, h, e);
}

int blob_reader_open(struct blobstore *bs, const struct blob_id *id,
		     const uint8_t wrap_key[32], uint32_t owner, uint64_t expect_size,
		     struct blob_reader **out, struct iverr *e)
{
	uint8_t raw[BLOB_HEADER_LEN];
	char hex[2 * BLOB_ID_LEN + 1];
	struct blob_reader *r;
	uint64_t stored;
	int ret;

	*out = NULL;
	blob_id_hex(id, hex);
	r = calloc(1, sizeof(*r));
	if (!r)
		return iverr_set(e, ENOMEM, "out of memory");
	r->cached = UINT64_MAX;
	r->bs = bs;
	ret = bs->ops->open(bs, id, &r->rf, &stored, e);
	if (ret < 0)
		goto out_free;
	if ((ret = read_header(bs, r->rf, stored, id, raw, &r->h, e)) < 0)
		goto out_free;
	if (r->h.owner != owner) {
		ret = iverr_set(e, IV_EDAMAGE, "blob %s belongs to uid %u, not %u",
				hex, r->h.owner, owner);
		goto out_free;
	}
	if (expect_size != UINT64_MAX && r->h.size != expect_size) {
		ret = iverr_set(e, IV_EDAMAGE, "blob %s holds %llu bytes, the catalog "
				"says %llu (replayed or replaced)", hex,
				(unsigned long long)r->h.size, (unsigned long long)expect_size);
		goto out_free;
	}
	r->sealed = malloc(SEALED_CHUNK_MAX);
	r->plain = malloc(BLOB_CHUNK_LEN);
	if (!r->sealed || !r->plain) {
		ret = iverr_set(e, ENOMEM, "out of memory");
		goto out_free;
	}
	if (crypto_aead_xchacha20poly1305_ietf_decrypt(r->file_key, NULL, NULL,
						       raw + WRAP_AD_LEN, 48, raw,
						       WRAP_AD_LEN, raw + 56, wrap_key) != 0) {
		ret = iverr_set(e, IV_EDAMAGE, "blob %s: header fails authentication "
				"(edited, or wrapped under another key)", hex);
		goto out_free;
	}
	*out = r;
	return 0;
out_free:
	blob_reader_close(r);
	return ret;
}

uint64_t blob_reader_size(const struct blob_reader *r)
{
	return r->h.size;
}

/* Decrypts chunk @k into @dst (room for a whole chunk). */
static int reader_open_chunk(struct blob_reader *r, uint64_t k, uint8_t *dst, struct iverr *e)
{
	uint64_t start = k * BLOB_CHUNK_LEN;
	size_t len = r->h.size - start < BLOB_CHUNK_LEN ? (size_t)(r->h.size - start)
							: BLOB_CHUNK_LEN;
	uint8_t ad[24];
	char hex[2 * BLOB_ID_LEN + 1];
	int ret;

	ret = r->bs->ops->pread(r->rf, r->sealed, len + BLOB_CHUNK_OVERHEAD,
				chunk_offset(k), e);
	if (ret < 0)
		return ret;
	chunk_ad(&r->h.id, k, ad);
	if (crypto_aead_xchacha20poly1305_ietf_decrypt_detached(
		    dst, NULL, r->sealed + NONCE_LEN, len, r->sealed + NONCE_LEN + len,
		    ad, sizeof(ad), r->sealed, r->file_key) != 0) {
		blob_id_hex(&r->h.id, hex);
		return iverr_set(e, IV_EDAMAGE, "blob %s: chunk %llu fails authentication "
				 "(damaged or tampered with)", hex, (unsigned long long)k);
	}
	return 0;
}

ssize_t blob_reader_pread(struct blob_reader *r, void *buf, size_t len, uint64_t off,
			  struct iverr *e)
{
	uint8_t *out = buf;
	size_t done = 0;
	int ret;

	if (off >= r->h.size)
		return 0;
	if (len > r->h.size - off)
		len = (size_t)(r->h.size - off);
	while (done < len) {
		uint64_t pos = off + done;
		uint64_t k = pos / BLOB_CHUNK_LEN;
		size_t in = (size_t)(pos % BLOB_CHUNK_LEN);
		size_t chunk_len = r->h.size - k * BLOB_CHUNK_LEN < BLOB_CHUNK_LEN
			? (size_t)(r->h.size - k * BLOB_CHUNK_LEN) : BLOB_CHUNK_LEN;
		size_t n = chunk_len - in;

		if (n > len - done)
			n = len - done;
		if (in == 0 && n == chunk_len && k != r->cached) {
			/* A whole chunk: decrypt straight into the caller's buffer. */
			if ((ret = reader_open_chunk(r, k, out + done, e)) < 0)
				return ret;
		} else {
			if (k != r->cached) {
				r->cached = UINT64_MAX;
				if ((ret = reader_open_chunk(r, k, r->plain, e)) < 0)
					return ret;
				r->cached = k;
			}
			memcpy(out + done, r->plain + in, n);
		}
		done += n;
	}
	return (ssize_t)done;
}

void blob_reader_close(struct blob_reader *r)
{
	if (!r)
		return;
	if (r->rf)
		r->bs->ops->close(r->rf);
	sodium_memzero(r->file_key, sizeof(r->file_key));
	if (r->plain)
		sodium_memzero(r->plain, BLOB_CHUNK_LEN);
	free(r->plain);
	free(r->sealed);
	free(r);
}

int blob_check_structure(struct blobstore *bs, const struct blob_id *id,
			 struct blob_header *out, struct iverr *e)
{
	uint8_t raw[BLOB_HEADER_LEN];
	struct blobstore_rfile *rf;
	uint64_t stored;
	int ret;

	ret = bs->ops->open(bs, id, &rf, &stored, e);
	if (ret < 0)
		return ret;
	ret = read_header(bs, rf, stored, id, raw, out, e);
	bs->ops->close(rf);
	return ret;
}

int blob_rewrap(struct blobstore *bs, const struct blob_id *id, uint32_t owner,
		const uint8_t old_key[32], const uint8_t new_key[32], struct iverr *e)
{
	uint8_t raw[BLOB_HEADER_LEN], *file_key;
	char hex[2 * BLOB_ID_LEN + 1];
	struct blobstore_rfile *rf;
	struct blob_header h;
	uint64_t stored;
	int ret;

	blob_id_hex(id, hex);
	file_key = sodium_malloc(32);
	if (!file_key)
		return iverr_set(e, ENOMEM, "out of memory");
	ret = bs->ops->open(bs, id, &rf, &stored, e);
	if (ret < 0)
		goto out_free;
	ret = read_header(bs, rf, stored, id, raw, &h, e);
	bs->ops->close(rf);
	if (ret < 0)
		goto out_free;
	if (h.owner != owner) {
		ret = iverr_set(e, IV_EDAMAGE, "blob %s belongs to uid %u, not %u",
				hex, h.owner, owner);
		goto out_free;
	}
	if (crypto_aead_xchacha20poly1305_ietf_decrypt(file_key, NULL, NULL, raw + WRAP_AD_LEN,
						       48, raw, WRAP_AD_LEN, raw + 56,
						       old_key) != 0) {
		ret = iverr_set(e, IV_EDAMAGE, "blob %s: header fails authentication", hex);
		goto out_free;
	}
	randombytes_buf(raw + 56, NONCE_LEN);
	crypto_aead_xchacha20poly1305_ietf_encrypt(raw + WRAP_AD_LEN, NULL, file_key, 32,
						   raw, WRAP_AD_LEN, NULL, raw + 56, new_key);
	ret = bs->ops->rewrite_head(bs, id, raw, sizeof(raw), e);
out_free:
	sodium_free(file_key);
	return ret;
}
