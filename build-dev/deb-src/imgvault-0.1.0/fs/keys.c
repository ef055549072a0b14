#include "keys.h"

#include <fcntl.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <sodium.h>

#include "bytes.h"

static const char slot_ad_tag[] = "imgvault-slot-v1";
static const char server_msg[] = "imgvault server slot";
static const char recovery_msg[] = "imgvault recovery slot";
static const char check_msg[] = "imgvault server key check";
static const char crockford[] = "0123456789ABCDEFGHJKMNPQRSTVWXYZ";

#define RECOVERY_DIGITS 25

int keys_init(void)
{
	return sodium_init() < 0 ? -1 : 0;
}

int keys_kdf_cost_by_name(const char *name, struct keys_kdf_cost *out)
{
	if (!strcmp(name, "interactive")) {
		out->opslimit = crypto_pwhash_OPSLIMIT_INTERACTIVE;
		out->memlimit = crypto_pwhash_MEMLIMIT_INTERACTIVE;
	} else if (!strcmp(name, "moderate")) {
		out->opslimit = crypto_pwhash_OPSLIMIT_MODERATE;
		out->memlimit = crypto_pwhash_MEMLIMIT_MODERATE;
	} else if (!strcmp(name, "sensitive")) {
		out->opslimit = crypto_pwhash_OPSLIMIT_SENSITIVE;
		out->memlimit = crypto_pwhash_MEMLIMIT_SENSITIVE;
	} else {
		return -EINVAL;
	}
	return 0;
}

struct keys_kdf_cost keys_kdf_cost_default(void)
{
	struct keys_kdf_cost c = {
		crypto_pwhash_OPSLIMIT_MODERATE, crypto_pwhash_MEMLIMIT_MODERATE
	};
	return c;
}

static struct user_keys *keys_user_alloc(void)
{
	struct user_keys *k = sodium_malloc(sizeof(*k));
	if (k)
		sodium_memzero(k, sizeof(*k));
	return k;
}

/* Fills the subkeys from k->uk. */
static void keys_user_derive(struct user_keys *k)
{
	crypto_kdf_derive_from_key(k->file_wrap, KEYS_KEY_LEN, 1, "ivfwrap_", k->uk);
	crypto_kdf_derive_from_key(k->meta, KEYS_KEY_LEN, 1, "ivmeta__", k->uk);
	crypto_kdf_derive_from_key(k->name_index, KEYS_KEY_LEN, 1, "ivnidx__", k->uk);
	crypto_kdf_derive_from_key(k->rekey, KEYS_KEY_LEN, 1, "ivrekey_", k->uk);
	crypto_kdf_derive_from_key(k->catalog, KEYS_KEY_LEN, 1, "ivcatlog", k->uk);
	crypto_kdf_derive_from_key(k->store, KEYS_KEY_LEN, 1, "ivstore_", k->uk);
}

struct user_keys *keys_user_new(void)
{
	struct user_keys *k = keys_user_alloc();
	if (!k)
		return NULL;
	crypto_kdf_keygen(k->uk);
	keys_user_derive(k);
	return k;
}

struct user_keys *keys_user_from_uk(const uint8_t uk[KEYS_KEY_LEN])
{
	struct user_keys *k = keys_user_alloc();
	if (!k)
		return NULL;
	memcpy(k->uk, uk, KEYS_KEY_LEN);
	keys_user_derive(k);
	return k;
}

void keys_user_free(struct user_keys *k)
{
	sodium_free(k);  /* wipes before freeing; NULL is fine */
}

int keys_server_load(const char *path, struct server_key **out, struct iverr *e)
{
	struct server_key *sk = NULL;
	struct stat st;
	ssize_t n;
	int ret, fd;

	*out = NULL;
	fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
	if (fd < 0)
		return iverr_set(e, errno, "cannot open server key %s: %s; give the "
				 "right file with --server-key", path, strerror(errno));
	if (fstat(fd, &st) < 0) {
		ret = iverr_set(e, errno, "cannot stat server key %s: %s", path, strerror(errno));
		goto out_close;
	}
	if (!S_ISREG(st.st_mode)) {
		ret = iverr_set(e, EINVAL, "server key %s is not a regular file", path);
		goto out_close;
	}
	if (st.st_mode & (S_IRWXG | S_IRWXO)) {
		ret = iverr_set(e, EPERM, "server key %s is accessible by group or others "
				"(mode %04o); refusing to use it: run chmod 0400 %s",
				path, (unsigned)(st.st_mode & 07777), path);
		goto out_close;
	}
	if (st.st_size != KEYS_KEY_LEN) {
		ret = iverr_set(e, EINVAL, "server key %s is %lld bytes, expected %d: "
				"it is not an imgvault server key", path,
				(long long)st.st_size, KEYS_KEY_LEN);
		goto out_close;
	}
	sk = sodium_malloc(sizeof(*sk));
	if (!sk) {
		ret = iverr_set(e, ENOMEM, "out of memory loading server key");
		goto out_close;
	}
	n = read(fd, sk->k, KEYS_KEY_LEN);
	if (n != KEYS_KEY_LEN) {
		ret = iverr_set(e, EIO, "cannot read server key %s", path);
		sodium_free(sk);
		goto out_close;
	}
	*out = sk;
	ret = 0;
out_close:
	close(fd);
	return ret;
}

int keys_server_create(const char *path, struct server_key **out, struct iverr *e)
{
	struct server_key *sk;
	int ret, fd;

	*out = NULL;
	sk = sodium_malloc(sizeof(*sk));
	if (!sk)
		return iverr_set(e, ENOMEM, "out of memory creating server key");
	crypto_kdf_keygen(sk->k);
	fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0400);
	if (fd < 0) {
		ret = iverr_set(e, errno, "cannot create server key %s: %s", path, strerror(errno));
		goto out_free;
	}
	if (write(fd, sk->k, KEYS_KEY_LEN) != KEYS_KEY_LEN || fsync(fd) < 0) {
		ret = iverr_set(e, errno ? errno : EIO, "cannot write server key %s: %s",
				path, strerror(errno));
		close(fd);
		unlink(path);
		goto out_free;
	}
	close(fd);
	*out = sk;
	return 0;
out_free:
	sodium_free(sk);
	return ret;
}

void keys_server_free(struct server_key *sk)
{
	sodium_free(sk);
}

void keys_server_check(const struct server_key *sk,
		       const uint8_t store_id[KEYS_STORE_ID_LEN], uint8_t out[32])
{
	crypto_generichash_state st;

	crypto_generichash_init(&st, sk->k, KEYS_KEY_LEN, 32);
	crypto_generichash_update(&st, (const uint8_t *)check_msg, sizeof(check_msg) - 1);
	crypto_generichash_update(&st, store_id, KEYS_STORE_ID_LEN);
	crypto_generichash_final(&st, out, 32);
	sodium_memzero(&st, sizeof(st));
}

void keys_server_store_key(const struct server_key *sk, uint8_t out[KEYS_KEY_LEN])
{
	crypto_kdf_derive_from_key(out, KEYS_KEY_LEN, 1, "ivstore_", sk->k);
}

/* Reduces a recovery code to its 25 digits; -1 if it is not one. */
static int recovery_normalize(const char *code, size_t len, char digits[RECOVERY_DIGITS])
{
	size_t n = 0;

	for (size_t i = 0; i < len; i++) {
		char c = code[i];
		if (c == '-' || c == ' ' || c == '\n' || c == '\t' || c == '\r')
			continue;
		if (c >= 'a' && c <= 'z')
			c = (char)(c - 'a' + 'A');
		/* Crockford: O reads as 0, I and L as 1. */
		if (c == 'O')
			c = '0';
		else if (c == 'I' || c == 'L')
			c = '1';
		if (!memchr(crockford, c, sizeof(crockford) - 1) || n == RECOVERY_DIGITS)
			return -1;
		digits[n++] = c;
	}
	return n == RECOVERY_DIGITS ? 0 : -1;
}

void keys_recovery_code_new(char out[KEYS_RECOVERY_CODE_LEN + 1])
{
	size_t o = 0;

	for (int i = 0; i < RECOVERY_DIGITS; i++) {
		if (i && i % 5 == 0)
			out[o++] = '-';
		out[o++] = crockford[randombytes_uniform(32)];
	}
	out[o] = '\0';
}

/* The associated data of a slot: everything about it but the wrapped key. */
static size_t slot_ad(const struct key_slot *s, const struct key_slot_binding *b,
		      uint8_t ad[128])
{
	size_t n = 0;

	memcpy(ad, slot_ad_tag, sizeof(slot_ad_tag) - 1);
	n += sizeof(slot_ad_tag) - 1;
	memcpy(ad + n, b->store_id, KEYS_STORE_ID_LEN);
	n += KEYS_STORE_ID_LEN;
	put_le32(ad + n, b->uid);
	n += 4;
	ad[n++] = (uint8_t)s->kind;
	memcpy(ad + n, s->salt, KEYS_SALT_LEN);
	n += KEYS_SALT_LEN;
	put_le64(ad + n, s->opslimit);
	n += 8;
	put_le64(ad + n, s->memlimit);
	n += 8;
	return n;
}

/* Derives the key-encryption key of a slot from its secret. */
static int slot_kek(const struct key_slot *s, const void *secret, size_t len,
		    uint8_t kek[KEYS_KEY_LEN], struct iverr *e)
{
	char digits[RECOVERY_DIGITS];
	crypto_generichash_state st;

	switch (s->kind) {
	case KEY_SLOT_PASSPHRASE:
		/* Capped at "sensitive": an edited catalog must not make an
		 * unlock take hours or all memory. */
		if (s->opslimit < crypto_pwhash_OPSLIMIT_MIN ||
		    s->opslimit > crypto_pwhash_OPSLIMIT_SENSITIVE ||
		    s->memlimit < crypto_pwhash_MEMLIMIT_MIN ||
		    s->memlimit > crypto_pwhash_MEMLIMIT_SENSITIVE)
			return iverr_set(e, IV_EDAMAGE, "passphrase slot has invalid "
					 "Argon2id parameters; the catalog is damaged");
		if (crypto_pwhash(kek, KEYS_KEY_LEN, secret, len, s->salt, s->opslimit,
				  (size_t)s->memlimit, crypto_pwhash_ALG_ARGON2ID13) != 0)
			return iverr_set(e, ENOMEM, "not enough memory for Argon2id "
					 "(%llu MiB needed)",
					 (unsigned long long)(s->memlimit >> 20));
		return 0;
	case KEY_SLOT_SERVER:
		if (len != KEYS_KEY_LEN)
			return iverr_set(e, EINVAL, "server key must be %d bytes", KEYS_KEY_LEN);
		crypto_generichash_init(&st, secret, KEYS_KEY_LEN, KEYS_KEY_LEN);
		break;
	case KEY_SLOT_RECOVERY:
		if (recovery_normalize(secret, len, digits) < 0)
			return iverr_set(e, IV_EAUTH, "that is not a recovery code: it has "
					 "25 letters and digits in five groups, like 7GQ2M-…");
		crypto_generichash_init(&st, (const uint8_t *)digits, RECOVERY_DIGITS,
					KEYS_KEY_LEN);
		sodium_memzero(digits, sizeof(digits));
		break;
	default:
		return iverr_set(e, IV_EDAMAGE, "key slot of unknown kind %d", (int)s->kind);
	}
	if (s->kind == KEY_SLOT_SERVER)
		crypto_generichash_update(&st, (const uint8_t *)server_msg, sizeof(server_msg) - 1);
	else
		crypto_generichash_update(&st, (const uint8_t *)recovery_msg, sizeof(recovery_msg) - 1);
	crypto_generichash_update(&st, s->salt, KEYS_SALT_LEN);
	crypto_generichash_final(&st, kek, KEYS_KEY_LEN);
	sodium_memzero(&st, sizeof(st));
	return 0;
}

int keys_slot_seal(struct key_slot *slot, enum key_slot_kind kind,
		   const struct user_keys *uk, const void *secret, size_t secret_len,
		   const struct keys_kdf_cost *cost,
		   const struct key_slot_binding *b, struct iverr *e)
{
	uint8_t kek[KEYS_KEY_LEN], ad[128];
	size_t adlen;
	int ret;

	memset(slot, 0, sizeof(*slot));
	slot->kind = kind;
	randombytes_buf(slot->salt, sizeof(slot->salt));
	randombytes_buf(slot->nonce, sizeof(slot->nonce));
	if (kind == KEY_SLOT_PASSPHRASE) {
		struct keys_kdf_cost c = cost ? *cost : keys_kdf_cost_default();
		slot->opslimit = c.opslimit;
		slot->memlimit = c.memlimit;
	}
	ret = slot_kek(slot, secret, secret_len, kek, e);
	if (ret < 0)
		goto out;
	adlen = slot_ad(slot, b, ad);
	crypto_aead_xchacha20poly1305_ietf_encrypt(slot->wrapped, NULL, uk->uk, KEYS_KEY_LEN,
						   ad, adlen, NULL, slot->nonce, kek);
out:
	sodium_memzero(kek, sizeof(kek));
	return ret;
}

int keys_slot_open(const struct key_slot *slot, const void *secret, size_t secret_len,
		   const struct key_slot_binding *b, struct user_keys **out,
		   struct iverr *e)
{
	uint8_t kek[KEYS_KEY_LEN], ad[128];
	struct user_keys *k = NULL;
	size_t adlen;
	int ret;

	*out = NULL;
	ret = slot_kek(slot, secret, secret_len, kek, e);
	if (ret < 0)
		goto out;
	k = keys_user_alloc();
	if (!k) {
		ret = iverr_set(e, ENOMEM, "out of memory unlocking keys");
		goto out;
	}
	adlen = slot_ad(slot, b, ad);
	if (crypto_aead_xchacha20poly1305_ietf_decrypt(k->uk, NULL, NULL, slot->wrapped,
						       KEYS_WRAPPED_LEN, ad, adlen,
						       slot->nonce, kek) != 0) {
		keys_user_free(k);
		ret = -IV_EAUTH;  /* the caller words it: it knows which secret */
		goto out;
	}
	keys_user_derive(k);
	*out = k;
	ret = 0;
out:
	sodium_memzero(kek, sizeof(kek));
	return ret;
}

void keys_seal(const uint8_t key[KEYS_KEY_LEN], const void *ad, size_t adlen,
	       const void *pt, size_t len, uint8_t *out)
{
	randombytes_buf(out, KEYS_NONCE_LEN);
	crypto_aead_xchacha20poly1305_ietf_encrypt(out + KEYS_NONCE_LEN, NULL, pt, len,
						   ad, adlen, NULL, out, key);
}

int keys_open(const uint8_t key[KEYS_KEY_LEN], const void *ad, size_t adlen,
	      const uint8_t *c, size_t clen, uint8_t *out)
{
	if (clen < KEYS_SEAL_OVERHEAD)
		return -IV_EDAMAGE;
	if (crypto_aead_xchacha20poly1305_ietf_decrypt(out, NULL, NULL, c + KEYS_NONCE_LEN,
						       clen - KEYS_NONCE_LEN, ad, adlen,
						       c, key) != 0)
		return -IV_EDAMAGE;
	return 0;
}

void keys_name_index(const struct user_keys *k, int64_t parent,
		     const void *name, size_t len, uint8_t out[32])
{
	crypto_generichash_state st;
	uint8_t p[8];

	put_le64(p, (uint64_t)parent);
	crypto_generichash_init(&st, k->name_index, KEYS_KEY_LEN, 32);
	crypto_generichash_update(&st, p, sizeof(p));
	crypto_generichash_update(&st, name, len);
	crypto_generichash_final(&st, out, 32);
}

bool keys_equal32(const uint8_t a[32], const uint8_t b[32])
{
	return sodium_memcmp(a, b, 32) == 0;
}
