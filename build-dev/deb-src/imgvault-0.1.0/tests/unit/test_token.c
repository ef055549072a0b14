/* Unit tests of fs/token: the share-link token format and the public keyring. */
#define _GNU_SOURCE
#include <inttypes.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <sodium.h>

#include "bytes.h"
#include "token.h"
#include "tap.h"
#include "testutil.h"

#define B64 sodium_base64_VARIANT_URLSAFE_NO_PADDING
#define PAYLOAD_B64_LEN 95
#define SIG_B64_LEN 86

static const char b64url[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

static uint8_t pk_a[TOKEN_PK_LEN], sk_a[TOKEN_SK_LEN];
static uint8_t pk_b[TOKEN_PK_LEN], sk_b[TOKEN_SK_LEN];
static char tmpdir[256];

/* The payload exactly as token.h documents it, built independently of
 * token.c so that the two can be compared. */
static void doc_payload(const struct token *t, uint8_t version, uint8_t p[TOKEN_PAYLOAD_LEN])
{
	p[0] = version;
	memcpy(p + 1, t->kid, TOKEN_KID_LEN);
	memcpy(p + 1 + TOKEN_KID_LEN, t->id, TOKEN_ID_LEN);
	memcpy(p + 1 + TOKEN_KID_LEN + TOKEN_ID_LEN, t->image, TOKEN_IMAGE_LEN);
	p[41] = t->variant;
	p[42] = t->disposition;
	put_le64(p + 43, (uint64_t)t->not_before);
	put_le64(p + 51, (uint64_t)t->expires);
	put_le64(p + 59, t->partner);
	put_le32(p + 67, t->uses);
}

/* "payload.signature" from raw bytes (the signature need not be valid). */
static void raw_string(const uint8_t payload[TOKEN_PAYLOAD_LEN], const uint8_t sig[TOKEN_SIG_LEN],
		       char out[TOKEN_STR_LEN + 1])
{
	sodium_bin2base64(out, PAYLOAD_B64_LEN + 1, payload, TOKEN_PAYLOAD_LEN, B64);
	out[PAYLOAD_B64_LEN] = '.';
	sodium_bin2base64(out + PAYLOAD_B64_LEN + 1, SIG_B64_LEN + 1, sig, TOKEN_SIG_LEN, B64);
}

/* A token string for a payload with @version, signed properly with sk_a
 * (the signature covers the domain and the payload, as token.h says). */
static void signed_string(const struct token *t, uint8_t version, char out[TOKEN_STR_LEN + 1])
{
	uint8_t p[TOKEN_PAYLOAD_LEN], sig[TOKEN_SIG_LEN];
	uint8_t m[sizeof(TOKEN_DOMAIN) + TOKEN_PAYLOAD_LEN];

	doc_payload(t, version, p);
	memcpy(m, TOKEN_DOMAIN, sizeof(TOKEN_DOMAIN));
	memcpy(m + sizeof(TOKEN_DOMAIN), p, TOKEN_PAYLOAD_LEN);
	crypto_sign_detached(sig, NULL, m, sizeof(m), sk_a);
	raw_string(p, sig, out);
}

static uint64_t rnd64(void)
{
	uint64_t v;

	randombytes_buf(&v, sizeof(v));
	return v;
}

static void random_token(struct token *t)
{
	randombytes_buf(t->kid, sizeof(t->kid));
	randombytes_buf(t->id, sizeof(t->id));
	randombytes_buf(t->image, sizeof(t->image));
	t->variant = (uint8_t)randombytes_uniform(3);
	t->disposition = (uint8_t)randombytes_uniform(2);
	switch (randombytes_uniform(4)) {
	case 0:   /* anywhere in the positive range */
		t->not_before = (int64_t)(rnd64() >> 2);
		t->expires = t->not_before + 1 + (int64_t)(rnd64() >> 3);
		break;
	case 1:   /* edges */
		t->not_before = 0;
		t->expires = randombytes_uniform(2) ? 1 : INT64_MAX;
		break;
	case 2:
		t->not_before = INT64_MAX - 1;
		t->expires = INT64_MAX;
		break;
	default:  /* realistic */
		t->not_before = 1700000000 + randombytes_uniform(100000000);
		t->expires = t->not_before + 1 + randombytes_uniform(86400 * 365);
		break;
	}
	t->partner = randombytes_uniform(2) ? 0 : rnd64();
	t->uses = randombytes_uniform(2) ? 0 : (uint32_t)rnd64();
}

static bool same_token(const struct token *a, const struct token *b)
{
	return !memcmp(a->kid, b->kid, sizeof(a->kid)) && !memcmp(a->id, b->id, sizeof(a->id)) &&
	       !memcmp(a->image, b->image, sizeof(a->image)) && a->variant == b->variant &&
	       a->disposition == b->disposition && a->not_before == b->not_before &&
	       a->expires == b->expires && a->partner == b->partner && a->uses == b->uses;
}

static bool all_b64url(const char *s, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if (!s[i] || !strchr(b64url, s[i]))
			return false;
	return true;
}

/* Whether @s (of @len bytes) is accepted as a token signed by @pk. */
static bool accepted(const char *s, size_t len, const uint8_t *pk)
{
	struct token_wire w;

	return token_decode(s, len, &w) == 0 && token_verify(&w, pk);
}

static void test_round_trip(void)
{
	int bad_len = 0, bad_chars = 0, bad_decode = 0, bad_fields = 0, bad_payload = 0;
	int bad_verify = 0, other_key = 0, bad_determinism = 0;
	const int N = 500;

	for (int i = 0; i < N; i++) {
		struct token t, t2;
		struct token_wire w;
		uint8_t p[TOKEN_PAYLOAD_LEN];
		char s[TOKEN_STR_LEN + 1], s2[TOKEN_STR_LEN + 1];

		memset(&t, 0, sizeof(t));
		random_token(&t);
		memset(s, 'Z', sizeof(s));
		token_encode(&t, sk_a, s);
		if (strlen(s) != TOKEN_STR_LEN)
			bad_len++;
		if (s[PAYLOAD_B64_LEN] != '.' || !all_b64url(s, PAYLOAD_B64_LEN) ||
		    !all_b64url(s + PAYLOAD_B64_LEN + 1, SIG_B64_LEN))
			bad_chars++;
		memset(&w, 0xa5, sizeof(w));
		if (token_decode(s, strlen(s), &w) != 0) {
			bad_decode++;
			continue;
		}
		if (!same_token(&t, &w.t))
			bad_fields++;
		doc_payload(&t, TOKEN_VERSION, p);
		if (memcmp(p, w.payload, sizeof(p)))
			bad_payload++;
		if (!token_verify(&w, pk_a))
			bad_verify++;
		if (token_verify(&w, pk_b))
			other_key++;
		/* Ed25519 is deterministic: the same token twice is the same string. */
		t2 = t;
		token_encode(&t2, sk_a, s2);
		if (strcmp(s, s2))
			bad_determinism++;
	}
	is_int(bad_len, 0, "%d random tokens: each string is exactly TOKEN_STR_LEN (%d) chars", N,
	       TOKEN_STR_LEN);
	is_int(bad_chars, 0, "each is base64url, a dot at %d, base64url", PAYLOAD_B64_LEN);
	is_int(bad_decode, 0, "each decodes");
	is_int(bad_fields, 0, "every field survives the round trip");
	is_int(bad_payload, 0, "the payload bytes follow the layout documented in token.h");
	is_int(bad_verify, 0, "each verifies with its key");
	is_int(other_key, 0, "none verifies with another key");
	is_int(bad_determinism, 0, "encoding is deterministic");

	/* Extreme field values. */
	struct token t = { 0 };
	struct token_wire w;
	char s[TOKEN_STR_LEN + 1];

	memset(t.kid, 0xff, sizeof(t.kid));
	memset(t.id, 0xff, sizeof(t.id));
	memset(t.image, 0xff, sizeof(t.image));
	t.variant = TOKEN_THUMB;
	t.disposition = TOKEN_ATTACHMENT;
	t.not_before = 0;
	t.expires = INT64_MAX;
	t.partner = UINT64_MAX;
	t.uses = UINT32_MAX;
	token_encode(&t, sk_a, s);
	ok(token_decode(s, strlen(s), &w) == 0 && same_token(&t, &w.t) && token_verify(&w, pk_a),
	   "all-ones ids, variant 2, attachment, max expiry/partner/uses round-trip");
	memset(&t, 0, sizeof(t));
	t.expires = 1;
	token_encode(&t, sk_a, s);
	ok(token_decode(s, strlen(s), &w) == 0 && same_token(&t, &w.t) && token_verify(&w, pk_a),
	   "all-zero token with expires 1 round-trips");
	/* The signature covers the domain string: a signature over the bare
	 * payload must not verify. */
	uint8_t sig[TOKEN_SIG_LEN];
	crypto_sign_detached(sig, NULL, w.payload, sizeof(w.payload), sk_a);
	memcpy(w.sig, sig, sizeof(sig));
	ok(!token_verify(&w, pk_a), "a signature over the payload without the domain is refused");
	/* My own domain-prefixed signature is accepted: the documented format. */
	signed_string(&t, TOKEN_VERSION, s);
	ok(accepted(s, strlen(s), pk_a), "a token built from the documented format verifies");
}

static void test_tamper(void)
{
	struct token t;
	struct token_wire w, w0;
	char s[TOKEN_STR_LEN + 1], m[TOKEN_STR_LEN + 8];
	int payload_ok = 0, sig_ok = 0;

	memset(&t, 0, sizeof(t));
	random_token(&t);
	t.not_before = 1700000000;
	t.expires = 1800000000;
	token_encode(&t, sk_a, s);
	if (token_decode(s, TOKEN_STR_LEN, &w0) != 0 || !token_verify(&w0, pk_a))
		BAIL_OUT("the tamper test's token does not verify");

	/* Every bit of the decoded payload and signature. */
	for (size_t i = 0; i < TOKEN_PAYLOAD_LEN * 8; i++) {
		w = w0;
		w.payload[i / 8] ^= (uint8_t)(1u << (i % 8));
		payload_ok += token_verify(&w, pk_a);
	}
	for (size_t i = 0; i < TOKEN_SIG_LEN * 8; i++) {
		w = w0;
		w.sig[i / 8] ^= (uint8_t)(1u << (i % 8));
		sig_ok += token_verify(&w, pk_a);
	}
	is_int(payload_ok, 0, "no single payload bit flip (of %d) verifies", TOKEN_PAYLOAD_LEN * 8);
	is_int(sig_ok, 0, "no single signature bit flip (of %d) verifies", TOKEN_SIG_LEN * 8);

	/* Every character of the string: each bit flipped and each other
	 * base64url character in its place. */
	int any = 0, tried = 0, high_ok = 0;
	for (size_t i = 0; i < TOKEN_STR_LEN; i++) {
		int pos_ok = 0;
		for (int b = 0; b < 7; b++) {
			memcpy(m, s, sizeof(s));
			m[i] ^= (char)(1 << b);
			pos_ok += accepted(m, TOKEN_STR_LEN, pk_a);
			tried++;
		}
		/* Bit 7: a byte >= 0x80; see test_non_ascii. */
		memcpy(m, s, sizeof(s));
		m[i] ^= (char)0x80;
		high_ok += accepted(m, TOKEN_STR_LEN, pk_a);
		for (const char *c = b64url; *c; c++) {
			if (*c == s[i])
				continue;
			memcpy(m, s, sizeof(s));
			m[i] = *c;
			pos_ok += accepted(m, TOKEN_STR_LEN, pk_a);
			tried++;
		}
		if (pos_ok) {
			diag("a change at string position %zu still verifies", i);
			any++;
		}
	}
	is_int(any, 0, "no change of any one character to another ASCII byte (%d variants) decodes "
	       "and verifies", tried);
	ok(high_ok == 0, "no character with bit 7 flipped decodes and verifies");
	if (high_ok)
		note("%d of %d strings with one bit-7 flip verify", high_ok, TOKEN_STR_LEN);
	ok(accepted(s, TOKEN_STR_LEN, pk_a), "the untouched string still verifies");

	/* Lengths. */
	for (size_t n = 0; n < TOKEN_STR_LEN; n += (n < 170 ? 17 : 1))
		if (!ok(token_decode(s, n, &w) == -EINVAL, "truncated to %zu chars: refused", n))
			break;
	memcpy(m, s, sizeof(s));
	strcpy(m + TOKEN_STR_LEN, "A");
	is_int(token_decode(m, TOKEN_STR_LEN + 1, &w), -EINVAL, "one extra 'A': refused");
	strcpy(m + TOKEN_STR_LEN, "=");
	is_int(token_decode(m, TOKEN_STR_LEN + 1, &w), -EINVAL, "one '=' of padding: refused");
	strcpy(m + TOKEN_STR_LEN, "==");
	is_int(token_decode(m, TOKEN_STR_LEN + 2, &w), -EINVAL, "'==' padding: refused");
	strcpy(m + TOKEN_STR_LEN, "\n");
	is_int(token_decode(m, TOKEN_STR_LEN + 1, &w), -EINVAL, "a trailing newline: refused");
	/* Padding in place of the payload's last character. */
	memcpy(m, s, sizeof(s));
	m[PAYLOAD_B64_LEN - 1] = '=';
	is_int(token_decode(m, TOKEN_STR_LEN, &w), -EINVAL, "'=' inside the payload: refused");

	/* The dot. */
	memcpy(m, s, sizeof(s));
	m[PAYLOAD_B64_LEN] = 'A';
	is_int(token_decode(m, TOKEN_STR_LEN, &w), -EINVAL, "no dot: refused");
	for (int d = -3; d <= 3; d++) {
		if (!d)
			continue;
		/* Move the dot by d, keeping the length. */
		char tmp[TOKEN_STR_LEN + 1];
		size_t at = (size_t)(PAYLOAD_B64_LEN + d), k = 0;
		for (size_t i = 0; i < TOKEN_STR_LEN; i++)
			if (i != PAYLOAD_B64_LEN)
				tmp[k++] = s[i];
		tmp[k] = '\0';
		memcpy(m, tmp, at);
		m[at] = '.';
		memcpy(m + at + 1, tmp + at, TOKEN_STR_LEN - 1 - at);
		m[TOKEN_STR_LEN] = '\0';
		is_int(token_decode(m, TOKEN_STR_LEN, &w), -EINVAL, "the dot at %zu instead of %d: "
		       "refused", at, PAYLOAD_B64_LEN);
	}
	memcpy(m, s, sizeof(s));
	m[10] = '.';
	is_int(token_decode(m, TOKEN_STR_LEN, &w), -EINVAL, "a second dot: refused");
	memcpy(m, s, sizeof(s));
	m[20] = '\0';
	is_int(token_decode(m, TOKEN_STR_LEN, &w), -EINVAL, "an embedded NUL: refused");
	memcpy(m, s, sizeof(s));
	m[20] = '+';
	is_int(token_decode(m, TOKEN_STR_LEN, &w), -EINVAL, "standard base64 '+': refused");
	memcpy(m, s, sizeof(s));
	m[150] = '/';
	is_int(token_decode(m, TOKEN_STR_LEN, &w), -EINVAL, "standard base64 '/': refused");
	memcpy(m, s, sizeof(s));
	m[30] = ' ';
	is_int(token_decode(m, TOKEN_STR_LEN, &w), -EINVAL, "a space inside: refused");

	/* Non-canonical base64: the payload's last character carries 2 unused
	 * bits (95 * 6 - 71 * 8), the signature's 4 (86 * 6 - 64 * 8). */
	struct { size_t pos; unsigned unused; const char *what; } last[] = {
		{ PAYLOAD_B64_LEN - 1, 2, "payload" },
		{ TOKEN_STR_LEN - 1, 4, "signature" },
	};
	for (size_t k = 0; k < 2; k++) {
		unsigned v = (unsigned)(strchr(b64url, s[last[k].pos]) - b64url);
		int refused = 0, n = 0;
		ok((v & ((1u << last[k].unused) - 1)) == 0, "the encoder leaves the %s's unused "
		   "bits clear", last[k].what);
		for (unsigned extra = 1; extra < (1u << last[k].unused); extra++) {
			memcpy(m, s, sizeof(s));
			m[last[k].pos] = b64url[v | extra];
			refused += token_decode(m, TOKEN_STR_LEN, &w) == -EINVAL;
			n++;
		}
		is_int(refused, n, "a %s last character with unused bits set is refused (%d "
		       "variants)", last[k].what, n);
	}
}

/*
 * Bytes >= 0x80 in place of a base64url character.  libsodium 1.0.18's
 * sodium_base642bin (URL-safe variant) reads such a byte as a sign-extended
 * int and decodes it as '_' (63), so token_decode accepts, and token_verify
 * passes, a token whose '_' characters are replaced by any of 0x80-0xff:
 * one token, 129 spellings per '_'.  token.c's b64_exact promises "strict
 * base64url" and should check the alphabet itself.
 */
static void test_non_ascii(void)
{
	struct token t = { 0 };
	struct token_wire w;
	char s[TOKEN_STR_LEN + 1], m[TOKEN_STR_LEN + 1];
	int decoded = 0, verified = 0, unders = 0;

	t.not_before = 1;
	t.expires = 2;
	/* A payload with '_' in known places: 0xff bytes are "__" in base64url. */
	memset(t.id, 0xff, sizeof(t.id));
	token_encode(&t, sk_a, s);
	for (size_t i = 0; i < TOKEN_STR_LEN; i++) {
		if (i == PAYLOAD_B64_LEN)
			continue;
		memcpy(m, s, sizeof(s));
		m[i] = (char)0xff;
		decoded += token_decode(m, TOKEN_STR_LEN, &w) == 0;
		if (s[i] == '_') {
			unders++;
			verified += accepted(m, TOKEN_STR_LEN, pk_a);
		}
	}
	ok(unders > 0, "the test token has '_' characters (%d)", unders);
	ok(decoded == 0, "a 0xff byte in any position is refused");
	if (decoded)
		note("0xff accepted by token_decode at %d of %d positions", decoded,
		     TOKEN_STR_LEN - 1);
	ok(verified == 0, "a '_' replaced by 0xff does not "
	     "verify");
	if (verified)
		note("%d of %d '_' replaced by 0xff still verify", verified, unders);
	memcpy(m, s, sizeof(s));
	m[3] = (char)0xc3;
	m[4] = (char)0xa9;   /* "é" in UTF-8 */
	ok(token_decode(m, TOKEN_STR_LEN, &w) != 0, "UTF-8 inside the payload is "
	     "refused");
}

/* A structurally checked payload field: @mutate changes it, @want is the
 * expected decode result. */
static void expect_payload(const struct token *t, uint8_t version, int want, const char *what)
{
	char s[TOKEN_STR_LEN + 1];
	struct token_wire w;

	signed_string(t, version, s);
	is_int(token_decode(s, TOKEN_STR_LEN, &w), want, "%s", what);
}

static void test_fields(void)
{
	struct token base = { 0 }, t;

	randombytes_buf(base.kid, sizeof(base.kid));
	randombytes_buf(base.id, sizeof(base.id));
	base.not_before = 100;
	base.expires = 200;
	expect_payload(&base, TOKEN_VERSION, 0, "the base token decodes");

	for (unsigned v = 0; v < 256; v += (v < 3 ? 1 : 37))
		if (v != TOKEN_VERSION)
			expect_payload(&base, (uint8_t)v, -EINVAL, v == 0 ? "version 0: refused" :
				       v == 2 ? "version 2: refused" : "another version: refused");
	expect_payload(&base, 255, -EINVAL, "version 255: refused");

	t = base; t.variant = 2;
	expect_payload(&t, 1, 0, "variant 2 (thumb): accepted");
	t.variant = 3;
	expect_payload(&t, 1, -EINVAL, "variant 3: refused");
	t.variant = 255;
	expect_payload(&t, 1, -EINVAL, "variant 255: refused");
	t = base; t.disposition = 1;
	expect_payload(&t, 1, 0, "disposition 1: accepted");
	t.disposition = 2;
	expect_payload(&t, 1, -EINVAL, "disposition 2: refused");
	t.disposition = 0x80;
	expect_payload(&t, 1, -EINVAL, "disposition 128: refused");
	t = base; t.expires = t.not_before;
	expect_payload(&t, 1, -EINVAL, "expires == not_before: refused");
	t.expires = t.not_before - 1;
	expect_payload(&t, 1, -EINVAL, "expires < not_before: refused");
	t.expires = t.not_before + 1;
	expect_payload(&t, 1, 0, "expires == not_before + 1: accepted");
	t = base; t.not_before = -1;
	expect_payload(&t, 1, -EINVAL, "not_before -1: refused");
	t.not_before = INT64_MIN;
	expect_payload(&t, 1, -EINVAL, "not_before INT64_MIN: refused");
	t = base; t.expires = -5;
	expect_payload(&t, 1, -EINVAL, "negative expires: refused");
	t = base; t.not_before = 0; t.expires = 1;
	expect_payload(&t, 1, 0, "not_before 0, expires 1: accepted");
	t = base; t.not_before = INT64_MAX; t.expires = INT64_MAX;
	expect_payload(&t, 1, -EINVAL, "not_before = expires = INT64_MAX: refused");
}

static void test_hex(void)
{
	uint8_t id[TOKEN_ID_LEN], back[TOKEN_ID_LEN];
	char hex[2 * TOKEN_ID_LEN + 1], up[2 * TOKEN_ID_LEN + 1];
	int bad = 0;

	for (int i = 0; i < 200; i++) {
		randombytes_buf(id, sizeof(id));
		memset(hex, 'x', sizeof(hex));
		token_hex(id, sizeof(id), hex);
		if (strlen(hex) != 2 * TOKEN_ID_LEN || strspn(hex, "0123456789abcdef") != strlen(hex))
			bad++;
		memset(back, 0, sizeof(back));
		if (token_unhex(hex, back, sizeof(back)) != 0 || memcmp(id, back, sizeof(id)))
			bad++;
		for (size_t k = 0; k <= strlen(hex); k++)
			up[k] = (char)(hex[k] >= 'a' && hex[k] <= 'f' ? hex[k] - 32 : hex[k]);
		memset(back, 0, sizeof(back));
		if (token_unhex(up, back, sizeof(back)) != 0 || memcmp(id, back, sizeof(id)))
			bad++;
	}
	is_int(bad, 0, "token_hex / token_unhex round-trip 200 ids, lowercase out, both cases in");

	const uint8_t kid[8] = { 0x01, 0x23, 0x45, 0x67, 0x89, 0xab, 0xcd, 0xef };
	char khex[17];
	token_hex(kid, 8, khex);
	is_str(khex, "0123456789abcdef", "token_hex of a known kid");
	uint8_t k2[8];
	is_int(token_unhex("0123456789ABCDEF", k2, 8), 0, "uppercase hex parses");
	is_mem(k2, kid, 8, "to the same bytes");
	is_int(token_unhex("0123456789abcde", k2, 8), -EINVAL, "15 digits for 8 bytes: refused");
	is_int(token_unhex("0123456789abcdef0", k2, 8), -EINVAL, "17 digits: refused");
	is_int(token_unhex("0123456789abcdef00", k2, 8), -EINVAL, "18 digits: refused");
	is_int(token_unhex("0123456789abcdeg", k2, 8), -EINVAL, "a 'g' at the end: refused");
	is_int(token_unhex("g123456789abcdef", k2, 8), -EINVAL, "a 'g' at the start: refused");
	is_int(token_unhex("01234567 9abcdef", k2, 8), -EINVAL, "a space inside: refused");
	is_int(token_unhex("01:23:45:67:89:ab", k2, 8), -EINVAL, "colons: refused");
	is_int(token_unhex("", k2, 8), -EINVAL, "empty: refused");
	is_int(token_unhex("0x23456789abcdef", k2, 8), -EINVAL, "0x prefix: refused");
}

/* ---- the keyring ---- */

static void key_text(const uint8_t kid[8], const uint8_t pk[32], char *kh, char *pb)
{
	token_hex(kid, 8, kh);
	sodium_bin2base64(pb, sodium_base64_ENCODED_LEN(32, B64), pk, 32, B64);
}

/* Parses @text expecting failure, with @needle in the message. */
static void expect_refused(const char *text, const char *needle, const char *what)
{
	struct token_keyring r = { (struct token_key *)0x1, 77 };
	struct iverr e = { 0 };
	int ret = token_keyring_parse(text, strlen(text), &r, &e);

	is_int(ret, -EINVAL, "%s: refused", what);
	if (!ok(e.code == EINVAL && strstr(e.msg, needle), "%s: the message says '%s'", what,
		needle))
		diag("message: %s", e.msg);
	ok(r.keys == (struct token_key *)0x1 && r.n == 77, "%s: *out untouched", what);
}

static void test_keyring_parse(void)
{
	uint8_t kid1[8], kid2[8], kid3[8], pk1[32], pk2[32], pk3[32];
	char kh1[17], kh2[17], kh3[17], pb1[44], pb2[44], pb3[44];
	char text[4096];
	struct token_keyring r = { 0 };
	struct iverr e = { 0 };

	randombytes_buf(kid1, 8); randombytes_buf(kid2, 8); randombytes_buf(kid3, 8);
	randombytes_buf(pk1, 32); randombytes_buf(pk2, 32); randombytes_buf(pk3, 32);
	key_text(kid1, pk1, kh1, pb1);
	key_text(kid2, pk2, kh2, pb2);
	key_text(kid3, pk3, kh3, pb3);
	is_int(strlen(pb1), 43, "a public key is 43 base64url characters");

	snprintf(text, sizeof(text),
		 "# a comment first\n"
		 "\n"
		 "imgvault-keyring 1\n"
		 "# another comment\n"
		 "%s %s live\n"
		 "\n"
		 "%s   %s\tretired\n"
		 "#%s %s live\n"
		 "%s %s live",            /* no final newline */
		 kh1, pb1, kh2, pb2, kh3, pb3, kh3, pb3);
	is_int(token_keyring_parse(text, strlen(text), &r, &e), 0,
	       "a keyring with comments, blank lines and no final newline parses");
	if (e.code)
		diag("message: %s", e.msg);
	is_int(r.n, 3, "three keys (the commented one is not a key)");
	if (r.n == 3) {
		is_mem(r.keys[0].kid, kid1, 8, "key 1 kid");
		is_mem(r.keys[0].pk, pk1, 32, "key 1 public key");
		ok(!r.keys[0].retired, "key 1 live");
		is_mem(r.keys[1].kid, kid2, 8, "key 2 kid (spaces and a tab between fields)");
		is_mem(r.keys[1].pk, pk2, 32, "key 2 public key");
		ok(r.keys[1].retired, "key 2 retired");
		is_mem(r.keys[2].pk, pk3, 32, "key 3 public key");
		ok(!r.keys[2].retired, "key 3 live");
		ok(token_keyring_find(&r, kid2) == &r.keys[1], "find: key 2");
		uint8_t none[8] = { 0 };
		ok(token_keyring_find(&r, none) == NULL, "find: an unknown kid is NULL");
	}
	token_keyring_free(&r);
	ok(r.keys == NULL && r.n == 0, "free empties the ring");
	token_keyring_free(&r);
	ok(1, "free twice is harmless");

	/* Uppercase kid hex is accepted (token_unhex takes both). */
	char up[17];
	for (int i = 0; i < 17; i++)
		up[i] = (char)(kh1[i] >= 'a' && kh1[i] <= 'f' ? kh1[i] - 32 : kh1[i]);
	snprintf(text, sizeof(text), "imgvault-keyring 1\n%s %s live\n", up, pb1);
	iverr_clear(&e);
	ok(token_keyring_parse(text, strlen(text), &r, &e) == 0 && r.n == 1 &&
	   !memcmp(r.keys[0].kid, kid1, 8), "an uppercase kid parses");
	token_keyring_free(&r);

	snprintf(text, sizeof(text), "imgvault-keyring 1\n");
	iverr_clear(&e);
	ok(token_keyring_parse(text, strlen(text), &r, &e) == 0 && r.n == 0,
	   "the magic line alone: an empty keyring");
	token_keyring_free(&r);

	/* Duplicates, with the line number. */
	snprintf(text, sizeof(text),
		 "imgvault-keyring 1\n# c\n%s %s live\n\n%s %s live\n%s %s retired\n",
		 kh1, pb1, kh2, pb2, kh1, pb3);
	expect_refused(text, "line 6", "a duplicate kid on line 6");
	char needle[64];
	snprintf(needle, sizeof(needle), "key %s is listed twice", kh1);
	expect_refused(text, needle, "a duplicate kid");

	/* The magic line. */
	snprintf(text, sizeof(text), "%s %s live\n", kh1, pb1);
	expect_refused(text, "line 1: expected \"imgvault-keyring 1\"", "no magic line");
	snprintf(text, sizeof(text), "# c\n\n%s %s live\nimgvault-keyring 1\n", kh1, pb1);
	expect_refused(text, "line 3", "the magic line after a key");
	expect_refused("imgvault-keyring 2\n", "not an imgvault keyring", "magic version 2");
	expect_refused("imgvault-keyring 1 \n", "line 1", "the magic line with a trailing space");
	expect_refused("", "empty", "an empty file");
	expect_refused("# only\n# comments\n\n", "empty", "only comments");

	/* Bad lines. */
	struct { const char *fmt; const char *what; } bad[] = {
		{ "%s %s live extra\n", "an extra field" },
		{ "%s %s live live\n", "the state twice" },
		{ "%s %s\n", "no state" },
		{ "%s\n", "a kid alone" },
		{ "%s %s dead\n", "an unknown state" },
		{ "%s %s LIVE\n", "an uppercase state" },
		{ "%.15s %s live\n", "a 15-digit kid" },
		{ "%s0 %s live\n", "a 17-digit kid" },
		{ "%s00 %s live\n", "an 18-digit kid" },
		{ "%s %.42s live\n", "a 42-character public key (31 bytes)" },
		{ "%s %sAA live\n", "a 45-character public key" },
		{ "%s %s= live\n", "a public key with padding" },
		{ "%s %sAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA "
		  "live\n", "a very long public key" },
	};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		char line[512];
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wformat-nonliteral"
		snprintf(line, sizeof(line), bad[i].fmt, kh1, pb1);
#pragma GCC diagnostic pop
		snprintf(text, sizeof(text), "imgvault-keyring 1\n%s %s live\n%s", kh2, pb2, line);
		expect_refused(text, "line 3", bad[i].what);
	}
	/* A public key of 33 bytes, and one with a non-canonical last character. */
	uint8_t pk33[33];
	char pb33[64];
	randombytes_buf(pk33, sizeof(pk33));
	sodium_bin2base64(pb33, sizeof(pb33), pk33, sizeof(pk33), B64);
	snprintf(text, sizeof(text), "imgvault-keyring 1\n%s %s live\n", kh1, pb33);
	expect_refused(text, "line 2", "a 33-byte public key");
	char pbn[44];
	memcpy(pbn, pb1, sizeof(pbn));
	unsigned v = (unsigned)(strchr(b64url, pbn[42]) - b64url);
	pbn[42] = b64url[v | 1];   /* 43 * 6 - 256 = 2 unused bits */
	snprintf(text, sizeof(text), "imgvault-keyring 1\n%s %s live\n", kh1, pbn);
	expect_refused(text, "line 2", "a non-canonical public key");
	/* Standard base64 instead of base64url. */
	char pbs[44];
	memcpy(pbs, pb1, sizeof(pbs));
	pbs[5] = '+';
	snprintf(text, sizeof(text), "imgvault-keyring 1\n%s %s live\n", kh1, pbs);
	expect_refused(text, "line 2", "a '+' in the public key");

	/* A line too long, a NUL inside. */
	char longl[400];
	memset(longl, 'a', sizeof(longl));
	longl[0] = '#';
	longl[sizeof(longl) - 1] = '\0';
	snprintf(text, sizeof(text), "imgvault-keyring 1\n%s\n", longl);
	expect_refused(text, "line 2", "a 399-character line (even a comment)");
	static const char withnul[] = "imgvault-keyring 1\n# x\0y\n";
	iverr_clear(&e);
	is_int(token_keyring_parse(withnul, sizeof(withnul) - 1, &r, &e), -EINVAL,
	       "a NUL inside a line: refused");
	ok(strstr(e.msg, "line 2") != NULL, "naming line 2");
	/* CR LF line ends: the magic line then carries a CR. */
	iverr_clear(&e);
	snprintf(text, sizeof(text), "imgvault-keyring 1\r\n%s %s live\r\n", kh1, pb1);
	is_int(token_keyring_parse(text, strlen(text), &r, &e), 0,
	       "CR LF line ends are read like LF ones");
	is_int((int)r.n, 1, "and give the one key");
	token_keyring_free(&r);
	/* NULL iverr is allowed. */
	is_int(token_keyring_parse("nope", 4, &r, NULL), -EINVAL, "a NULL iverr is allowed");
	/* Only @len bytes are read. */
	snprintf(text, sizeof(text), "imgvault-keyring 1\n%s %s live\ngarbage", kh1, pb1);
	iverr_clear(&e);
	ok(token_keyring_parse(text, strlen(text) - 7, &r, &e) == 0 && r.n == 1,
	   "parsing stops at len (the garbage after it is not read)");
	token_keyring_free(&r);
}

static void test_keyring_format(void)
{
	size_t counts[] = { 0, 1, 2, 7, 200 };

	for (size_t c = 0; c < sizeof(counts) / sizeof(counts[0]); c++) {
		size_t n = counts[c];
		struct token_key *keys = calloc(n ? n : 1, sizeof(*keys));
		struct token_keyring r = { 0 };
		struct iverr e = { 0 };
		char *text;

		if (!keys)
			BAIL_OUT("out of memory");
		for (size_t i = 0; i < n; i++) {
			randombytes_buf(keys[i].kid, 8);
			keys[i].kid[0] = (uint8_t)i;   /* distinct */
			keys[i].kid[1] = (uint8_t)(i >> 8);
			randombytes_buf(keys[i].pk, 32);
			keys[i].retired = randombytes_uniform(2);
		}
		text = token_keyring_format(keys, n);
		ok(text != NULL, "format %zu keys", n);
		if (!text) {
			free(keys);
			continue;
		}
		ok(strstr(text, "imgvault-keyring 1\n") != NULL, "%zu keys: the magic line is there",
		   n);
		is_int(token_keyring_parse(text, strlen(text), &r, &e), 0, "%zu keys: parses back",
		       n);
		is_int(r.n, n, "%zu keys: as many keys", n);
		bool same = r.n == n;
		for (size_t i = 0; same && i < n; i++)
			same = !memcmp(r.keys[i].kid, keys[i].kid, 8) &&
			       !memcmp(r.keys[i].pk, keys[i].pk, 32) &&
			       r.keys[i].retired == keys[i].retired;
		ok(same, "%zu keys: kids, public keys and states survive, in order", n);
		token_keyring_free(&r);
		free(text);
		free(keys);
	}
}

static void test_keyring_load(void)
{
	char path[512], text[512];
	uint8_t kid[8], pk[32];
	char kh[17], pb[44];
	struct token_keyring r = { 0 };
	struct iverr e = { 0 };

	randombytes_buf(kid, 8);
	randombytes_buf(pk, 32);
	key_text(kid, pk, kh, pb);

	snprintf(path, sizeof(path), "%s/keyring", tmpdir);
	snprintf(text, sizeof(text), "imgvault-keyring 1\n%s %s retired\n", kh, pb);
	if (tu_write_file(path, text, strlen(text), 0644) < 0)
		BAIL_OUT("cannot write %s", path);
	ok(token_keyring_load(path, &r, &e) == 0 && r.n == 1 && r.keys[0].retired &&
	   !memcmp(r.keys[0].pk, pk, 32), "load: a small keyring file");
	token_keyring_free(&r);

	/* An error inside the file: the message names the file and the line. */
	snprintf(text, sizeof(text), "imgvault-keyring 1\n%s %s sideways\n", kh, pb);
	tu_write_file(path, text, strlen(text), 0644);
	iverr_clear(&e);
	is_int(token_keyring_load(path, &r, &e), -EINVAL, "load: a bad line is refused");
	ok(strstr(e.msg, path) != NULL, "load: the message names the file");
	/*
	 * token_keyring_load rewrites the parser's message with
	 * iverr_reset(e, …, "keyring %s: %s", path, e->msg): e->msg is both the
	 * destination and an argument of the same vsnprintf (undefined; glibc
	 * writes the prefix over the text it is about to copy).
	 */
	char want[600];
	snprintf(want, sizeof(want), "keyring %s: line 2: expected \"KID PUBLIC-KEY live|retired\"",
		 path);
	if (!ok(strcmp(e.msg, want) == 0, "load: the message keeps the parser's words"))
		note("got:      %s\nexpected: %s", e.msg, want);

	/* Over 1 MiB: refused before parsing. */
	size_t big = (1u << 20) + 100;
	char *buf = malloc(big);
	if (!buf)
		BAIL_OUT("out of memory");
	/* A valid keyring padded with comment lines, so only the size is wrong. */
	size_t o = (size_t)snprintf(buf, big, "imgvault-keyring 1\n%s %s live\n", kh, pb);
	while (o < big) {
		size_t n = big - o < 100 ? big - o : 100;
		memset(buf + o, 'x', n);
		buf[o] = '#';
		buf[o + n - 1] = '\n';
		o += n;
	}
	tu_write_file(path, buf, big, 0644);
	iverr_clear(&e);
	is_int(token_keyring_load(path, &r, &e), -EFBIG, "load: a file over 1 MiB is refused");
	ok(strstr(e.msg, "1 MiB") != NULL, "load: saying it is over 1 MiB");
	/* Exactly 1 MiB is refused too; 1 MiB - 1 is read. */
	tu_write_file(path, buf, 1u << 20, 0644);
	iverr_clear(&e);
	is_int(token_keyring_load(path, &r, &e), -EFBIG, "load: exactly 1 MiB is refused");
	size_t just = (1u << 20) - 1;
	buf[just - 1] = '\n';
	tu_write_file(path, buf, just, 0644);
	iverr_clear(&e);
	ok(token_keyring_load(path, &r, &e) == 0 && r.n == 1, "load: 1 MiB - 1 of comments and "
	   "one key is read");
	if (e.code)
		diag("message: %s", e.msg);
	token_keyring_free(&r);
	free(buf);

	snprintf(path, sizeof(path), "%s/missing", tmpdir);
	iverr_clear(&e);
	is_int(token_keyring_load(path, &r, &e), -ENOENT, "load: a missing file: -ENOENT");
	ok(strstr(e.msg, path) != NULL, "load: naming the path");
	snprintf(path, sizeof(path), "%s", tmpdir);
	iverr_clear(&e);
	ok(token_keyring_load(path, &r, &e) < 0, "load: a directory is refused");
	token_keyring_free(&r);
}

int main(void)
{
	if (sodium_init() < 0)
		BAIL_OUT("sodium_init failed");
	crypto_sign_keypair(pk_a, sk_a);
	crypto_sign_keypair(pk_b, sk_b);
	tu_mkdtemp(tmpdir, sizeof(tmpdir), "token");

	test_round_trip();
	test_tamper();
	test_non_ascii();
	test_fields();
	test_hex();
	test_keyring_parse();
	test_keyring_format();
	test_keyring_load();

	tu_rm_rf(tmpdir);
	return done_testing();
}
