/* Sealing of catalog metadata under a user's meta key (see vault_i.h). */
#include <string.h>
#include <time.h>

#include "bytes.h"
#include "vault_i.h"

#define ATTRS_PLAIN_MAX (2 + VAULT_MIME_MAX + 8 + 32)

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

void vault_seal_name(const struct user_keys *k, const char *tag, const uint8_t pid[16],
		     const char *name, size_t len, uint8_t *out, size_t *outlen)
{
	uint8_t ad[32];
	size_t adlen;

	vault_seal_ad(tag, pid, 16, ad, &adlen);
	keys_seal(k->meta, ad, adlen, name, len, out);
	*outlen = len + KEYS_SEAL_OVERHEAD;
}

int vault_open_name(const struct user_keys *k, const char *tag, const uint8_t pid[16],
		    const uint8_t *enc, size_t enclen, char out[CATALOG_NAME_MAX + 1],
		    size_t *len)
{
	uint8_t ad[32];
	size_t adlen;

	if (enclen < KEYS_SEAL_OVERHEAD || enclen - KEYS_SEAL_OVERHEAD > CATALOG_NAME_MAX)
		return -IV_EDAMAGE;
	vault_seal_ad(tag, pid, 16, ad, &adlen);
	if (keys_open(k->meta, ad, adlen, enc, enclen, (uint8_t *)out) < 0)
		return -IV_EDAMAGE;
	*len = enclen - KEYS_SEAL_OVERHEAD;
	out[*len] = '\0';
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

static void seal_record(const struct user_keys *k, const char *tag, const struct blob_id *blob,
			const uint8_t *owner, size_t owner_len, const struct version_attrs *a,
			uint8_t *out, size_t *outlen)
{
	uint8_t plain[ATTRS_PLAIN_MAX], ad[48];
	size_t n = 0, mlen = strnlen(a->mime, VAULT_MIME_MAX - 1), adlen;

	plain[n++] = 1;                      /* record version */
	plain[n++] = (uint8_t)mlen;
	memcpy(plain + n, a->mime, mlen);
	n += mlen;
	put_le32(plain + n, a->width);
	put_le32(plain + n + 4, a->height);
	n += 8;
	memcpy(plain + n, a->sha256, 32);
	n += 32;
	record_ad(tag, blob, owner, owner_len, ad, &adlen);
	keys_seal(k->meta, ad, adlen, plain, n, out);
	*outlen = n + KEYS_SEAL_OVERHEAD;
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
	if (plain[0] != 1 || mlen >= VAULT_MIME_MAX || n != 2 + mlen + 8 + 32)
		return -IV_EDAMAGE;
	memcpy(a->mime, plain + 2, mlen);
	a->mime[mlen] = '\0';
	a->width = get_le32(plain + 2 + mlen);
	a->height = get_le32(plain + 2 + mlen + 4);
	memcpy(a->sha256, plain + 2 + mlen + 8, 32);
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
