/* Sealing of catalog metadata under a user's meta key (see vault_i.h). */
#include <stdio.h>
#include <string.h>

#include <sodium.h>
#include <time.h>

#include "bytes.h"
#include "vault_i.h"


int64_t vault_now(void)
{
	return (int64_t)time(NULL);
}

void vault_seal_ad(const char *tag, const uint8_t *id, size_t idlen, uint8_t *ad,
		   size_t *adlen)
{
	size_t t = strlen(tag);

	memcpy(ad, tag, t);
	memcpy(ad + t, id, idlen);
	*adlen = t + idlen;
}

/*
 * Names, tags and comments are sealed padded (form 2): the value, 0x80, then
 * zeros up to the next power of two of at least 32 bytes, under the AD
 * "v2" || tag || pid — so a sealed length tells only a length bucket.  Form 1
 * (schema <= 4: the bare value, AD tag || pid) is still read; a vault's
 * first unlock under schema 5 reseals everything in form 2.
 */
static size_t padded_len(size_t len)
{
	size_t p = 32;

	while (p < len + 1)
		p *= 2;
	return p;
}

void vault_seal_text(const struct user_keys *k, const char *tag, const uint8_t pid[16],
		     const void *val, size_t len, uint8_t *out, size_t *outlen)
{
	uint8_t plain[VAULT_TEXT_PAD_MAX], ad[40];
	char tag2[32];
	size_t adlen, n = padded_len(len);

	snprintf(tag2, sizeof(tag2), "v2%s", tag);
	vault_seal_ad(tag2, pid, 16, ad, &adlen);
	memcpy(plain, val, len);
	plain[len] = 0x80;
	memset(plain + len + 1, 0, n - len - 1);
	keys_seal(k->meta, ad, adlen, plain, n, out);
	sodium_memzero(plain, n);
	*outlen = n + KEYS_SEAL_OVERHEAD;
}

int vault_open_text_form(const struct user_keys *k, const char *tag, const uint8_t pid[16],
			 const uint8_t *enc, size_t enclen, void *out, size_t cap, size_t *len,
			 int *form)
{
	uint8_t plain[VAULT_TEXT_PAD_MAX], ad[40];
	char tag2[32];
	size_t adlen, n;

	if (enclen < KEYS_SEAL_OVERHEAD || enclen - KEYS_SEAL_OVERHEAD > VAULT_TEXT_PAD_MAX)
		return -IV_EDAMAGE;
	n = enclen - KEYS_SEAL_OVERHEAD;
	snprintf(tag2, sizeof(tag2), "v2%s", tag);
	vault_seal_ad(tag2, pid, 16, ad, &adlen);
	if (n >= 32 && padded_len(n - 1) == n && keys_open(k->meta, ad, adlen, enc, enclen, plain) == 0) {
		size_t m = n;
		while (m > 0 && plain[m - 1] == 0)
			m--;
		if (m == 0 || plain[m - 1] != 0x80 || m - 1 > cap) {
			sodium_memzero(plain, n);
			return -IV_EDAMAGE;
		}
		memcpy(out, plain, m - 1);
		*len = m - 1;
		*form = 2;
		sodium_memzero(plain, n);
		return 0;
	}
	vault_seal_ad(tag, pid, 16, ad, &adlen);
	if (n > cap || keys_open(k->meta, ad, adlen, enc, enclen, plain) < 0)
		return -IV_EDAMAGE;
	memcpy(out, plain, n);
	*len = n;
	*form = 1;
	sodium_memzero(plain, n);
	return 0;
}

int vault_open_text(const struct user_keys *k, const char *tag, const uint8_t pid[16],
		    const uint8_t *enc, size_t enclen, void *out, size_t cap, size_t *len)
{
	int form;

	return vault_open_text_form(k, tag, pid, enc, enclen, out, cap, len, &form);
}

void vault_seal_name(const struct user_keys *k, const char *tag, const uint8_t pid[16],
		     const char *name, size_t len, uint8_t *out, size_t *outlen)
{
	vault_seal_text(k, tag, pid, name, len, out, outlen);
}

int vault_open_name(const struct user_keys *k, const char *tag, const uint8_t pid[16],
		    const uint8_t *enc, size_t enclen, char out[CATALOG_NAME_MAX + 1],
		    size_t *len)
{
	int ret = vault_open_text(k, tag, pid, enc, enclen, out, CATALOG_NAME_MAX, len);

	if (ret == 0)
		out[*len] = '\0';
	return ret;
}

uint64_t vault_padded_size(uint64_t n)
{
	unsigned e, s, last;
	uint64_t mask;

	if (n < 2)
		return n;
	e = 63 - (unsigned)__builtin_clzll(n);           /* floor(log2 n) */
	s = 32 - (unsigned)__builtin_clz(e);              /* floor(log2 e) + 1 */
	last = e - s;
	mask = (UINT64_C(1) << last) - 1;
	return (n + mask) & ~mask;
}

int vault_write_padded(struct blob_writer *w, const void *data, size_t len, uint64_t *stored,
		       struct iverr *e)
{
	static const uint8_t zeros[65536];
	uint64_t pad = vault_padded_size(len) - len;
	int ret = blob_writer_write(w, data, len, e);

	while (ret == 0 && pad) {
		size_t n = pad < sizeof(zeros) ? (size_t)pad : sizeof(zeros);
		ret = blob_writer_write(w, zeros, n, e);
		pad -= n;
	}
	*stored = vault_padded_size(len);
	return ret;
}

int vault_content_size(uint64_t stored, const struct version_attrs *a, uint64_t *size)
{
	if (a->form < 2 || a->size == 0) {
		*size = stored;
		return 0;
	}
	if (a->size > stored)
		return -IV_EDAMAGE;
	*size = a->size;
	return 0;
}

/* A record belongs to one blob and one owner: TAG || blob id || owner, the
 * owner being the image's public id for a version ("attrs") and the
 * version's row id (LE64) for a thumbnail ("thumb"), so that neither the
 * blob nor the record can be repointed in the catalog unnoticed. */
static void record_ad(const char *tag, const struct blob_id *blob, const uint8_t *owner,
		      size_t owner_len, uint8_t ad[48], size_t *adlen)
{
	vault_seal_ad(tag, blob->b, BLOB_ID_LEN, ad, adlen);
	memcpy(ad + *adlen, owner, owner_len);
	*adlen += owner_len;
}

/*
 * Attributes record, form 2: fixed length (113 bytes), so that a sealed
 * record tells nothing of the MIME type's length:
 *   2 | m | MIME padded with zeros to 63 | LE32 width | LE32 height |
 *   SHA-256 (32) | LE64 size (0: the catalog's)
 * Form 1 (42 + m bytes, no size) is still read.
 */
#define RECORD2_LEN (2 + 63 + 8 + 32 + 8)

static void seal_record(const struct user_keys *k, const char *tag, const struct blob_id *blob,
			const uint8_t *owner, size_t owner_len, const struct version_attrs *a,
			uint8_t *out, size_t *outlen)
{
	uint8_t plain[RECORD2_LEN] = { 0 }, ad[48];
	size_t mlen = strnlen(a->mime, VAULT_MIME_MAX - 1), adlen;

	plain[0] = 2;                        /* record form */
	plain[1] = (uint8_t)mlen;
	memcpy(plain + 2, a->mime, mlen);
	put_le32(plain + 65, a->width);
	put_le32(plain + 69, a->height);
	memcpy(plain + 73, a->sha256, 32);
	put_le64(plain + 105, a->size);
	record_ad(tag, blob, owner, owner_len, ad, &adlen);
	keys_seal(k->meta, ad, adlen, plain, RECORD2_LEN, out);
	*outlen = RECORD2_LEN + KEYS_SEAL_OVERHEAD;
}

static int open_record(const struct user_keys *k, const char *tag, const struct blob_id *blob,
		       const uint8_t *owner, size_t owner_len, const uint8_t *enc, size_t enclen,
		       struct version_attrs *a)
{
	uint8_t plain[CATALOG_ATTRS_ENC_MAX], ad[48];
	size_t n, mlen, adlen;

	memset(a, 0, sizeof(*a));
	if (enclen < KEYS_SEAL_OVERHEAD + 2 || enclen > CATALOG_ATTRS_ENC_MAX)
		return -IV_EDAMAGE;
	n = enclen - KEYS_SEAL_OVERHEAD;
	record_ad(tag, blob, owner, owner_len, ad, &adlen);
	if (keys_open(k->meta, ad, adlen, enc, enclen, plain) < 0)
		return -IV_EDAMAGE;
	mlen = plain[1];
	if (mlen >= VAULT_MIME_MAX)
		return -IV_EDAMAGE;
	if (plain[0] == 2 && n == RECORD2_LEN) {
		memcpy(a->mime, plain + 2, mlen);
		a->mime[mlen] = '\0';
		a->width = get_le32(plain + 65);
		a->height = get_le32(plain + 69);
		memcpy(a->sha256, plain + 73, 32);
		a->size = get_le64(plain + 105);
		a->form = 2;
		return 0;
	}
	if (plain[0] != 1 || n != 2 + mlen + 8 + 32)
		return -IV_EDAMAGE;
	memcpy(a->mime, plain + 2, mlen);
	a->mime[mlen] = '\0';
	a->width = get_le32(plain + 2 + mlen);
	a->height = get_le32(plain + 2 + mlen + 4);
	memcpy(a->sha256, plain + 2 + mlen + 8, 32);
	a->form = 1;
	return 0;
}

void vault_seal_record(const struct user_keys *k, const char *tag, const struct blob_id *blob,
		       int64_t owner, const struct version_attrs *a, uint8_t *out, size_t *outlen)
{
	uint8_t id[8];

	put_le64(id, (uint64_t)owner);
	seal_record(k, tag, blob, id, sizeof(id), a, out, outlen);
}

int vault_open_record(const struct user_keys *k, const char *tag, const struct blob_id *blob,
		      int64_t owner, const uint8_t *enc, size_t enclen, struct version_attrs *a)
{
	uint8_t id[8];

	put_le64(id, (uint64_t)owner);
	return open_record(k, tag, blob, id, sizeof(id), enc, enclen, a);
}

void vault_seal_attrs(const struct user_keys *k, const struct blob_id *blob,
		      const uint8_t pid[CATALOG_PID_LEN], const struct version_attrs *a,
		      struct catalog_version *v)
{
	seal_record(k, "attrs", blob, pid, CATALOG_PID_LEN, a, v->attrs_enc, &v->attrs_enc_len);
}

int vault_open_attrs(const struct user_keys *k, const struct catalog_version *v,
		     const uint8_t pid[CATALOG_PID_LEN], struct version_attrs *a)
{
	return open_record(k, "attrs", &v->blob, pid, CATALOG_PID_LEN, v->attrs_enc,
			   v->attrs_enc_len, a);
}
