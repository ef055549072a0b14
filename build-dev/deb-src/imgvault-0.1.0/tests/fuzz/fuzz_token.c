/*
 * libFuzzer target for what a share-link gateway parses from strangers:
 * tokens (fs/token.c token_decode, as given and forced to TOKEN_STR_LEN with
 * the dot in place), the keyring file (token_keyring_parse), CIDR text
 * (fs/cidr.c), and the HTTP pieces of share-gateway/gw_http.c (Range,
 * If-None-Match, Content-Disposition, HTML escaping).  Invariants checked:
 *
 *   - a decoded token's fields are in range and, laid out again as token.h
 *     documents, give exactly the decoded payload bytes; for ASCII input the
 *     string is the canonical base64url of payload and signature
 *   - a parsed keyring has distinct kids and survives format + parse
 *   - a parsed network survives format + parse, and contains its own address
 *   - a served range is non-empty and inside the file
 *   - Content-Disposition is printable ASCII with no CR/LF, and the quoted
 *     filename holds no quote; escaped HTML holds no < > " '
 *
 * Seeds: tests/fuzz/make-seeds.sh writes token, keyring and header seeds
 * (tok-*, keyring-*, hdr-*) next to the image ones.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include <sodium.h>

#include "bytes.h"
#include "cidr.h"
#include "gw_http.h"
#include "token.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define B64 sodium_base64_VARIANT_URLSAFE_NO_PADDING
#define PAYLOAD_B64_LEN 95

/* The public half of the fixed seed make-seeds.sh signs its tokens with
 * (bytes 1..32), so valid seeds reach token_verify's success path. */
static uint8_t seed_pk[TOKEN_PK_LEN];

static void check_token(const char *s, size_t len)
{
	struct token_wire w;
	uint8_t p[TOKEN_PAYLOAD_LEN];
	const struct token *t = &w.t;

	if (token_decode(s, len, &w) != 0)
		return;
	if (len != TOKEN_STR_LEN || s[PAYLOAD_B64_LEN] != '.')
		abort();
	if (t->variant > TOKEN_THUMB || t->disposition > TOKEN_ATTACHMENT || t->not_before < 0 ||
	    t->expires <= t->not_before)
		abort();
	/* The payload as token.h documents it, from the decoded fields. */
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
	if (memcmp(p, w.payload, sizeof(p)))
		abort();
	/* Canonical text: a decoded token has exactly one spelling (token_decode
	 * accepts the base64url alphabet only). */
	char again[TOKEN_STR_LEN + 1];
	sodium_bin2base64(again, PAYLOAD_B64_LEN + 1, w.payload, TOKEN_PAYLOAD_LEN, B64);
	again[PAYLOAD_B64_LEN] = '.';
	sodium_bin2base64(again + PAYLOAD_B64_LEN + 1, TOKEN_STR_LEN - PAYLOAD_B64_LEN,
			  w.sig, TOKEN_SIG_LEN, B64);
	if (memcmp(again, s, TOKEN_STR_LEN))
		abort();
	(void)token_verify(&w, seed_pk);
}

static void check_keyring(const char *s, size_t len)
{
	struct token_keyring r = { 0 }, again = { 0 };
	struct iverr e = { 0 };
	char *text;

	if (token_keyring_parse(s, len, &r, &e) != 0) {
		if (!e.code || !e.msg[0] || r.keys)
			abort();
		return;
	}
	for (size_t i = 0; i < r.n; i++)
		if (token_keyring_find(&r, r.keys[i].kid) != &r.keys[i])
			abort();
	text = token_keyring_format(r.keys, r.n);
	if (!text)
		abort();
	if (token_keyring_parse(text, strlen(text), &again, NULL) != 0 || again.n != r.n ||
	    (r.n && memcmp(again.keys, r.keys, r.n * sizeof(*r.keys))))
		abort();
	free(text);
	token_keyring_free(&again);
	token_keyring_free(&r);
}

static void check_cidr(const char *s)
{
	struct cidr c, d, l[4];
	char out[CIDR_STR_MAX];
	size_t n, bad;

	if (cidr_parse(s, &c) == 0) {
		if ((c.family != AF_INET || c.bits > 32) && (c.family != AF_INET6 || c.bits > 128))
			abort();
		cidr_format(&c, true, out);
		if (cidr_parse(out, &d) != 0 || memcmp(&c, &d, sizeof(c)) || !cidr_contains(&c, &d))
			abort();
	}
	if (cidr_parse_list(s, l, 4, &n, &bad) == 0 && n > 4)
		abort();
}

static void check_http(const char *s)
{
	static const uint64_t sizes[] = { 0, 1, 1000, 9999999999999999999ULL, UINT64_MAX };
	char out[1024], html[512];

	for (size_t i = 0; i < sizeof(sizes) / sizeof(sizes[0]); i++) {
		uint64_t off = 0, len = 0;
		int r = gw_range_parse(s, sizes[i], &off, &len);
		if (r != 0 && r != 1 && r != -ERANGE && r != -EINVAL)
			abort();
		if (r == 0 && (len == 0 || off >= sizes[i] || len > sizes[i] - off))
			abort();
	}
	(void)gw_etag_matches(s, "\"3fa1c0de\"");
	if (!gw_etag_matches(s, s) && s[0] == '"' && !strpbrk(s, ", \t") && strncmp(s, "W/", 2))
		abort();

	for (int att = 0; att < 2; att++) {
		gw_disposition(s, att, out, sizeof(out));
		for (const unsigned char *p = (const unsigned char *)out; *p; p++)
			if (*p < 0x20 || *p >= 0x7f)
				abort();
		const char *q = strchr(out, '"');
		const char *endq = q ? strchr(q + 1, '"') : NULL;
		if (!q || !endq || endq == q + 1 || q[1] == '.' ||
		    strncmp(endq, "\"; filename*=UTF-8''", 20) || strchr(endq + 1, '"'))
			abort();
	}
	gw_html_escape(s, html, sizeof(html));
	if (strpbrk(html, "<>\"'") || strlen(html) >= sizeof(html))
		abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static bool init;
	char *s, forced[TOKEN_STR_LEN];

	if (!init) {
		uint8_t seed[32], sk[TOKEN_SK_LEN];
		if (sodium_init() < 0)
			abort();
		for (int i = 0; i < 32; i++)
			seed[i] = (uint8_t)(i + 1);
		crypto_sign_seed_keypair(seed_pk, sk, seed);
		init = true;
	}
	/* Tokens: the bytes as given (no NUL needed), then forced to the token
	 * length with the dot in place, so the base64 and field checks run. */
	check_token((const char *)data, size);
	memset(forced, 'A', sizeof(forced));
	memcpy(forced, data, size < sizeof(forced) ? size : sizeof(forced));
	forced[PAYLOAD_B64_LEN] = '.';
	check_token(forced, sizeof(forced));

	check_keyring((const char *)data, size);

	/* The rest take C strings: up to the first NUL. */
	if (!(s = malloc(size + 1)))
		return 0;
	memcpy(s, data, size);
	s[size] = '\0';
	check_cidr(s);
	check_http(s);
	free(s);
	return 0;
}
