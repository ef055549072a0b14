#include "token.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <sodium.h>

#include "bytes.h"

#define B64 sodium_base64_VARIANT_URLSAFE_NO_PADDING
#define PAYLOAD_B64_LEN 95
#define SIG_B64_LEN 86
#define KEYRING_MAGIC "imgvault-keyring 1"
#define KEYRING_MAX (1 << 20)

/* ---- tokens ---- */

static void payload_put(const struct token *t, uint8_t p[TOKEN_PAYLOAD_LEN])
{
	p[0] = TOKEN_VERSION;
	memcpy(p + 1, t->kid, TOKEN_KID_LEN);
	memcpy(p + 9, t->id, TOKEN_ID_LEN);
	memcpy(p + 25, t->image, TOKEN_IMAGE_LEN);
	p[41] = t->variant;
	p[42] = t->disposition;
	put_le64(p + 43, (uint64_t)t->not_before);
	put_le64(p + 51, (uint64_t)t->expires);
	put_le64(p + 59, t->partner);
	put_le32(p + 67, t->uses);
}

static int payload_get(const uint8_t p[TOKEN_PAYLOAD_LEN], struct token *t)
{
	if (p[0] != TOKEN_VERSION)
		return -EINVAL;
	memcpy(t->kid, p + 1, TOKEN_KID_LEN);
	memcpy(t->id, p + 9, TOKEN_ID_LEN);
	memcpy(t->image, p + 25, TOKEN_IMAGE_LEN);
	t->variant = p[41];
	t->disposition = p[42];
	t->not_before = (int64_t)get_le64(p + 43);
	t->expires = (int64_t)get_le64(p + 51);
	t->partner = get_le64(p + 59);
	t->uses = get_le32(p + 67);
	if (t->variant > TOKEN_THUMB || t->disposition > TOKEN_ATTACHMENT ||
	    t->not_before < 0 || t->expires <= t->not_before)
		return -EINVAL;
	return 0;
}

/* Strict base64url: exactly @want bytes from exactly @len characters. */
static int b64_exact(const char *s, size_t len, uint8_t *out, size_t want)
{
	static const char alphabet[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
				       "0123456789-_";
	size_t got = 0;
	const char *end = NULL;

	/* libsodium 1.0.18 reads any byte >= 0x80 as '_': one token would have
	 * many spellings.  Only the alphabet itself is accepted. */
	for (size_t i = 0; i < len; i++)
		if (!s[i] || !memchr(alphabet, s[i], sizeof(alphabet) - 1))
			return -EINVAL;
	if (sodium_base642bin(out, want, s, len, NULL, &got, &end, B64) != 0 ||
	    got != want || end != s + len)
		return -EINVAL;
	return 0;
}

int token_decode(const char *s, size_t len, struct token_wire *out)
{
	if (len != TOKEN_STR_LEN || s[PAYLOAD_B64_LEN] != '.')
		return -EINVAL;
	if (b64_exact(s, PAYLOAD_B64_LEN, out->payload, TOKEN_PAYLOAD_LEN) < 0 ||
	    b64_exact(s + PAYLOAD_B64_LEN + 1, SIG_B64_LEN, out->sig, TOKEN_SIG_LEN) < 0)
		return -EINVAL;
	return payload_get(out->payload, &out->t);
}

/* What the signature covers: the domain string with its NUL, then the
 * payload, so a signature can never be taken for one over other data. */
static void signed_message(const uint8_t payload[TOKEN_PAYLOAD_LEN],
			   uint8_t m[sizeof(TOKEN_DOMAIN) + TOKEN_PAYLOAD_LEN])
{
	memcpy(m, TOKEN_DOMAIN, sizeof(TOKEN_DOMAIN));
	memcpy(m + sizeof(TOKEN_DOMAIN), payload, TOKEN_PAYLOAD_LEN);
}

bool token_verify(const struct token_wire *w, const uint8_t pk[TOKEN_PK_LEN])
{
	uint8_t m[sizeof(TOKEN_DOMAIN) + TOKEN_PAYLOAD_LEN];

	signed_message(w->payload, m);
	return crypto_sign_verify_detached(w->sig, m, sizeof(m), pk) == 0;
}

void token_encode(const struct token *t, const uint8_t sk[TOKEN_SK_LEN],
		  char out[TOKEN_STR_LEN + 1])
{
	uint8_t payload[TOKEN_PAYLOAD_LEN], sig[TOKEN_SIG_LEN];
	uint8_t m[sizeof(TOKEN_DOMAIN) + TOKEN_PAYLOAD_LEN];

	payload_put(t, payload);
	signed_message(payload, m);
	crypto_sign_detached(sig, NULL, m, sizeof(m), sk);
	sodium_bin2base64(out, PAYLOAD_B64_LEN + 1, payload, sizeof(payload), B64);
	out[PAYLOAD_B64_LEN] = '.';
	sodium_bin2base64(out + PAYLOAD_B64_LEN + 1, SIG_B64_LEN + 1, sig, sizeof(sig), B64);
}

void token_hex(const uint8_t *id, size_t len, char *out)
{
	sodium_bin2hex(out, 2 * len + 1, id, len);
}

int token_unhex(const char *s, uint8_t *out, size_t len)
{
	size_t got = 0;
	const char *end = NULL;

	if (strlen(s) != 2 * len ||
	    sodium_hex2bin(out, len, s, 2 * len, NULL, &got, &end) != 0 || got != len)
		return -EINVAL;
	return 0;
}

/* ---- the keyring ---- */

static int keyring_push(struct token_keyring *r, const struct token_key *k)
{
	struct token_key *p = realloc(r->keys, (r->n + 1) * sizeof(*p));

	if (!p)
		return -ENOMEM;
	r->keys = p;
	r->keys[r->n++] = *k;
	return 0;
}

/* One "KID PK state" line. */
static int keyring_line(const char *line, struct token_key *k)
{
	char kid[2 * TOKEN_KID_LEN + 2], pk[64], state[16], extra[2];

	if (sscanf(line, "%17s %63s %15s %1s", kid, pk, state, extra) != 3 ||
	    token_unhex(kid, k->kid, TOKEN_KID_LEN) < 0 ||
	    b64_exact(pk, strlen(pk), k->pk, TOKEN_PK_LEN) < 0)
		return -EINVAL;
	if (strcmp(state, "live") == 0)
		k->retired = false;
	else if (strcmp(state, "retired") == 0)
		k->retired = true;
	else
		return -EINVAL;
	return 0;
}

int token_keyring_parse(const char *text, size_t len, struct token_keyring *out,
			struct iverr *e)
{
	struct token_keyring r = { 0 };
	unsigned lineno = 0;
	bool magic = false;
	int ret = 0;

	for (size_t pos = 0; pos < len;) {
		const char *nl = memchr(text + pos, '\n', len - pos);
		size_t n = nl ? (size_t)(nl - (text + pos)) : len - pos;
		char line[256];
		struct token_key k;

		lineno++;
		if (n >= sizeof(line) || memchr(text + pos, '\0', n)) {
			ret = iverr_set(e, EINVAL, "line %u is not a keyring line", lineno);
			goto out;
		}
		memcpy(line, text + pos, n);
		line[n] = '\0';
		if (n && line[n - 1] == '\r')   /* a file written on another system */
			line[n - 1] = '\0';
		pos += n + 1;
		if (!line[0] || line[0] == '#')
			continue;
		if (!magic) {
			if (strcmp(line, KEYRING_MAGIC) != 0) {
				ret = iverr_set(e, EINVAL, "line %u: expected \"%s\": this is not "
						"an imgvault keyring (imgvault keys export writes one)",
						lineno, KEYRING_MAGIC);
				goto out;
			}
			magic = true;
			continue;
		}
		if (keyring_line(line, &k) < 0) {
			ret = iverr_set(e, EINVAL, "line %u: expected \"KID PUBLIC-KEY live|retired\"",
					lineno);
			goto out;
		}
		if (token_keyring_find(&r, k.kid)) {
			ret = iverr_set(e, EINVAL, "line %u: key %s is listed twice", lineno,
					strtok(line, " "));
			goto out;
		}
		if ((ret = keyring_push(&r, &k)) < 0) {
			iverr_set(e, ENOMEM, "out of memory");
			goto out;
		}
	}
	if (!magic)
		ret = iverr_set(e, EINVAL, "the keyring is empty: imgvaultd writes it when it "
				"starts; check the path");
out:
	if (ret < 0)
		token_keyring_free(&r);
	else
		*out = r;
	return ret;
}

int token_keyring_load(const char *path, struct token_keyring *out, struct iverr *e)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	char *buf = NULL;
	ssize_t n;
	int ret;

	if (fd < 0)
		return iverr_set(e, errno, "cannot open the keyring %s: %s", path,
				 strerror(errno));
	buf = malloc(KEYRING_MAX);
	if (!buf) {
		ret = iverr_set(e, ENOMEM, "out of memory");
		goto out;
	}
	n = read(fd, buf, KEYRING_MAX);
	if (n < 0) {
		ret = iverr_set(e, errno, "cannot read the keyring %s: %s", path, strerror(errno));
		goto out;
	}
	if (n == KEYRING_MAX) {
		ret = iverr_set(e, EFBIG, "the keyring %s is over 1 MiB: not a keyring", path);
		goto out;
	}
	ret = token_keyring_parse(buf, (size_t)n, out, e);
	if (ret < 0 && e) {
		char why[sizeof(e->msg)];
		snprintf(why, sizeof(why), "%s", e->msg);   /* not read while written */
		iverr_reset(e, -ret, "keyring %s: %s", path, why);
	}
out:
	free(buf);
	close(fd);
	return ret;
}

const struct token_key *token_keyring_find(const struct token_keyring *r,
					   const uint8_t kid[TOKEN_KID_LEN])
{
	for (size_t i = 0; i < r->n; i++)
		if (memcmp(r->keys[i].kid, kid, TOKEN_KID_LEN) == 0)
			return &r->keys[i];
	return NULL;
}

void token_keyring_free(struct token_keyring *r)
{
	free(r->keys);
	r->keys = NULL;
	r->n = 0;
}

char *token_keyring_format(const struct token_key *keys, size_t n)
{
	static const char head[] = "# imgvault share-link signing keys, public halves only\n"
				   KEYRING_MAGIC "\n";
	size_t cap = sizeof(head) + n * 80;
	char *out = malloc(cap), *p;

	if (!out)
		return NULL;
	p = out + snprintf(out, cap, "%s", head);
	for (size_t i = 0; i < n; i++) {
		char kid[2 * TOKEN_KID_LEN + 1], pk[sodium_base64_ENCODED_LEN(TOKEN_PK_LEN, B64)];

		token_hex(keys[i].kid, TOKEN_KID_LEN, kid);
		sodium_bin2base64(pk, sizeof(pk), keys[i].pk, TOKEN_PK_LEN, B64);
		p += snprintf(p, cap - (size_t)(p - out), "%s %s %s\n", kid, pk,
			      keys[i].retired ? "retired" : "live");
	}
	return out;
}
