/* Unit tests of the gateway's socket-free pieces: share-gateway/gw_http
 * (Range, If-None-Match, Content-Disposition, HTML escaping, the preview
 * page) and share-gateway/gw_limits (rate limits and bans). */
#define _GNU_SOURCE
#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <string.h>

#include <sodium.h>

#include "gw_http.h"
#include "gw_limits.h"
#include "tap.h"

/* ---- Range ---- */

static void range_is(const char *hdr, uint64_t size, int want, uint64_t woff, uint64_t wlen)
{
	uint64_t off = 0xdead, len = 0xbeef;
	int r = gw_range_parse(hdr, size, &off, &len);

	if (want == 0) {
		if (!ok(r == 0 && off == woff && len == wlen, "Range '%s' of %" PRIu64 ": [%" PRIu64
			", +%" PRIu64 ")", hdr ? hdr : "(none)", size, woff, wlen))
			diag("got %d, off %" PRIu64 ", len %" PRIu64, r, off, len);
	} else {
		is_int(r, want, "Range '%s' of %" PRIu64 ": %s", hdr ? hdr : "(none)", size,
		       want == 1 ? "whole file" : want == -ERANGE ? "416" : "malformed");
	}
}

static void test_range(void)
{
	/* First, middle, last, suffix, open-ended. */
	range_is("bytes=0-99", 1000, 0, 0, 100);
	range_is("bytes=0-0", 1000, 0, 0, 1);
	range_is("bytes=100-199", 1000, 0, 100, 100);
	range_is("bytes=999-999", 1000, 0, 999, 1);
	range_is("bytes=-100", 1000, 0, 900, 100);
	range_is("bytes=-1", 1000, 0, 999, 1);
	range_is("bytes=-1000", 1000, 0, 0, 1000);
	range_is("bytes=-5000", 1000, 0, 0, 1000);
	range_is("bytes=500-", 1000, 0, 500, 500);
	range_is("bytes=0-", 1000, 0, 0, 1000);
	range_is("bytes=999-", 1000, 0, 999, 1);
	/* Beyond the end: clamped. */
	range_is("bytes=900-5000", 1000, 0, 900, 100);
	range_is("bytes=0-999", 1000, 0, 0, 1000);
	range_is("bytes=0-1000", 1000, 0, 0, 1000);
	/* Spaces around. */
	range_is("bytes= 1-2", 1000, 0, 1, 2);
	range_is("bytes=1-2  ", 1000, 0, 1, 2);
	range_is("bytes=5- ", 1000, 0, 5, 995);
	range_is("bytes=-7 ", 1000, 0, 993, 7);
	/* Unsatisfiable. */
	range_is("bytes=1000-", 1000, -ERANGE, 0, 0);
	range_is("bytes=1000-1001", 1000, -ERANGE, 0, 0);
	range_is("bytes=5000-6000", 1000, -ERANGE, 0, 0);
	range_is("bytes=-0", 1000, -ERANGE, 0, 0);
	range_is("bytes=9999999999999999999-", 1000, -ERANGE, 0, 0);
	/* Zero-size files: nothing is satisfiable. */
	range_is("bytes=0-", 0, -ERANGE, 0, 0);
	range_is("bytes=0-0", 0, -ERANGE, 0, 0);
	range_is("bytes=-1", 0, -ERANGE, 0, 0);
	range_is("bytes=-0", 0, -ERANGE, 0, 0);
	/* The whole file: no header, another unit, several ranges. */
	range_is(NULL, 1000, 1, 0, 0);
	range_is("items=0-1", 1000, 1, 0, 0);
	range_is("", 1000, 1, 0, 0);
	range_is("bytes=0-1,5-6", 1000, 1, 0, 0);
	range_is("bytes=0-1, 5-6", 1000, 1, 0, 0);
	range_is("bytes=-5,0-1", 1000, 1, 0, 0);
	range_is("bytes=junk,junk", 1000, 1, 0, 0);
	/* Malformed. */
	static const char *const bad[] = {
		"bytes=", "bytes=-", "bytes=abc", "bytes=5-1", "bytes=1-2-3", "bytes=--1",
		"bytes=1 -2", "bytes=1- 2", "bytes=0x10-20", "bytes=+1-2", "bytes=1-+2",
		"bytes=-+5", "bytes=- 5", "bytes=1-2x", "bytes=\t1-2", "bytes=1.5-2",
		"bytes=-1-2", "bytes= ", "bytes=1",
	};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		range_is(bad[i], 1000, -EINVAL, 0, 0);
	/* Huge numbers: 19 digits fit, 20 are refused (no overflow). */
	range_is("bytes=0-9999999999999999999", 1000, 0, 0, 1000);
	range_is("bytes=-9999999999999999999", 1000, 0, 0, 1000);
	range_is("bytes=18446744073709551615-", 1000, -EINVAL, 0, 0);
	range_is("bytes=99999999999999999999-", 1000, -EINVAL, 0, 0);
	range_is("bytes=0-18446744073709551616", 1000, -EINVAL, 0, 0);
	range_is("bytes=-18446744073709551616", 1000, -EINVAL, 0, 0);
	range_is("bytes=00000000000000000000000001-2", 1000, -EINVAL, 0, 0);
	/* Huge sizes. */
	range_is("bytes=0-", UINT64_MAX, 0, 0, UINT64_MAX);
	range_is("bytes=-1", UINT64_MAX, 0, UINT64_MAX - 1, 1);
	range_is("bytes=9999999999999999998-", 9999999999999999999ULL, 0, 9999999999999999998ULL, 1);

	/* Random headers: whatever is served lies inside the file. */
	int outside = 0, served = 0;
	for (int i = 0; i < 20000; i++) {
		char h[64];
		uint64_t size = randombytes_uniform(5) == 0 ? 0 : randombytes_uniform(3000);
		uint64_t a = randombytes_uniform(4000), b = randombytes_uniform(4000);
		uint64_t off, len;
		switch (randombytes_uniform(4)) {
		case 0: snprintf(h, sizeof(h), "bytes=%" PRIu64 "-%" PRIu64, a, b); break;
		case 1: snprintf(h, sizeof(h), "bytes=%" PRIu64 "-", a); break;
		case 2: snprintf(h, sizeof(h), "bytes=-%" PRIu64, b); break;
		default: snprintf(h, sizeof(h), "bytes=%" PRIu64 "%c%" PRIu64, a,
				  "- ,0x"[randombytes_uniform(5)], b); break;
		}
		if (gw_range_parse(h, size, &off, &len) == 0) {
			served++;
			if (len == 0 || off >= size || len > size - off)
				outside++;
		}
	}
	ok(served > 1000, "random ranges: %d served", served);
	is_int(outside, 0, "random ranges: every served range is non-empty and inside the file");
}

/* ---- If-None-Match ---- */

static void test_etag(void)
{
	const char *e = "\"3fa1c0de\"";
	struct { const char *inm; bool want; } cases[] = {
		{ "\"3fa1c0de\"", true },
		{ "\"00000000\"", false },
		{ "\"00000000\", \"3fa1c0de\"", true },
		{ "\"00000000\",\"3fa1c0de\"", true },
		{ "\"3fa1c0de\", \"00000000\"", true },
		{ "W/\"3fa1c0de\"", true },
		{ "\"x\", W/\"3fa1c0de\"", true },
		{ " W/\"3fa1c0de\" , \"x\"", true },
		{ "*", true },
		{ " * ", true },
		{ "  \"3fa1c0de\"  ", true },
		{ "\t\"3fa1c0de\"\t", true },
		{ ",,\"3fa1c0de\",,", true },
		{ "\"3fa1c0de", false },
		{ "3fa1c0de", false },
		{ "\"3fa1c0dee\"", false },
		{ "\"3fa1c0d\"", false },
		{ "\"3FA1C0DE\"", false },
		{ "w/\"3fa1c0de\"", false },
		{ "W/ \"3fa1c0de\"", false },
		{ "W/W/\"3fa1c0de\"", false },
		{ "\"3fa1c0de\"x", false },
		{ "x\"3fa1c0de\"", false },
		{ "", false },
		{ " ", false },
		{ ",", false },
		{ "W/", false },
		{ "\"\"", false },
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++)
		is_int(gw_etag_matches(cases[i].inm, e), cases[i].want, "If-None-Match '%s': %s",
		       cases[i].inm, cases[i].want ? "matches" : "does not match");
	ok(!gw_etag_matches(NULL, e), "no If-None-Match: no match");
	/* A long list with the tag last. */
	char lst[4096];
	size_t o = 0;
	for (int i = 0; i < 300; i++)
		o += (size_t)snprintf(lst + o, sizeof(lst) - o, "\"%08x\", ", i);
	snprintf(lst + o, sizeof(lst) - o, "W/%s", e);
	ok(gw_etag_matches(lst, e), "a 301-tag list with the tag last, weak");
	lst[o] = '\0';
	ok(!gw_etag_matches(lst, e), "the same list without it");
}

/* ---- Content-Disposition ---- */

/* Checks the invariants of a Content-Disposition value for @name; returns
 * NULL or what is wrong. */
static const char *disposition_problem(const char *name, bool attachment, const char *cd,
				       bool want_roundtrip)
{
	static char why[256];
	const char *kind = attachment ? "attachment; filename=\"" : "inline; filename=\"";
	const char *q, *endq, *star;

	if (strpbrk(cd, "\r\n"))
		return "CR or LF in the header";
	for (const unsigned char *p = (const unsigned char *)cd; *p; p++)
		if (*p < 0x20 || *p >= 0x7f)
			return "a control or non-ASCII byte in the header";
	if (strncmp(cd, kind, strlen(kind)))
		return "does not start with the disposition and filename=\"";
	q = cd + strlen(kind);
	endq = strchr(q, '"');
	if (!endq)
		return "filename is not closed";
	if (endq == q)
		return "an empty filename";
	for (const char *p = q; p < endq; p++)
		if (!(strchr("._-", *p) || (*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') ||
		      (*p >= '0' && *p <= '9')))
			return "a risky character in filename";
	if (*q == '.')
		return "filename starts with a dot";
	if (strncmp(endq, "\"; filename*=UTF-8''", 20))
		return "no filename*=UTF-8'' after filename";
	star = endq + 20;
	/* filename*: attr-chars and %XX only, decoding to the name. */
	char dec[2048];
	size_t d = 0;
	for (const char *p = star; *p; p++) {
		if (*p == '%') {
			unsigned v;
			if (!(strchr("0123456789ABCDEF", p[1]) && p[1] && strchr("0123456789ABCDEF", p[2]) &&
			      p[2]))
				return "a bad %XX escape in filename*";
			sscanf(p + 1, "%2x", &v);
			dec[d++] = (char)v;
			p += 2;
		} else if ((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') ||
			   (*p >= '0' && *p <= '9') || strchr("!#$&+-.^_`|~", *p)) {
			dec[d++] = *p;
		} else {
			snprintf(why, sizeof(why), "'%c' is not an attr-char in filename*", *p);
			return why;
		}
		if (d >= sizeof(dec) - 1)
			return "filename* too long";
	}
	dec[d] = '\0';
	if (want_roundtrip && strcmp(dec, name))
		return "filename* does not decode to the name";
	if (!want_roundtrip && strncmp(dec, name, d))
		return "filename* is not a prefix of the name";
	return NULL;
}

static void disp_ok(const char *name, bool attachment, const char *what)
{
	char cd[2048];
	const char *why;

	gw_disposition(name, attachment, cd, sizeof(cd));
	why = disposition_problem(name, attachment, cd, true);
	if (!ok(!why, "disposition of %s: well-formed", what))
		diag("%s: %s", why, cd);
}

/* Whether @s (of @n bytes) is complete UTF-8. */
static bool valid_utf8(const unsigned char *s, size_t n)
{
	for (size_t i = 0; i < n;) {
		size_t k = s[i] < 0x80 ? 1 : (s[i] & 0xe0) == 0xc0 ? 2 : (s[i] & 0xf0) == 0xe0 ? 3 :
			   (s[i] & 0xf8) == 0xf0 ? 4 : 0;
		if (!k || i + k > n)
			return false;
		for (size_t j = 1; j < k; j++)
			if ((s[i + j] & 0xc0) != 0x80)
				return false;
		i += k;
	}
	return true;
}

static void test_disposition(void)
{
	char cd[2048];

	gw_disposition("photo.jpg", false, cd, sizeof(cd));
	is_str(cd, "inline; filename=\"photo.jpg\"; filename*=UTF-8''photo.jpg", "a plain name, "
	       "inline");
	gw_disposition("photo.jpg", true, cd, sizeof(cd));
	is_str(cd, "attachment; filename=\"photo.jpg\"; filename*=UTF-8''photo.jpg", "attachment");
	gw_disposition("a\"b.jpg", true, cd, sizeof(cd));
	is_str(cd, "attachment; filename=\"a_b.jpg\"; filename*=UTF-8''a%22b.jpg",
	       "a quote: '_' in filename, %%22 in filename*");
	gw_disposition("x\r\nSet-Cookie: a=b.jpg", false, cd, sizeof(cd));
	is_str(cd, "inline; filename=\"x__Set-Cookie__a_b.jpg\"; "
	       "filename*=UTF-8''x%0D%0ASet-Cookie%3A%20a%3Db.jpg", "CR LF: no header injection");
	gw_disposition("\xc3\xa9t\xc3\xa9.jpg", false, cd, sizeof(cd));
	is_str(cd, "inline; filename=\"__t__.jpg\"; filename*=UTF-8''%C3%A9t%C3%A9.jpg",
	       "UTF-8: '_' per byte in filename, percent-encoded in filename*");
	gw_disposition(".htaccess", false, cd, sizeof(cd));
	is_str(cd, "inline; filename=\"image\"; filename*=UTF-8''.htaccess",
	       "a leading dot: filename falls back to 'image'");
	gw_disposition("", true, cd, sizeof(cd));
	is_str(cd, "attachment; filename=\"image\"; filename*=UTF-8''", "an empty name: 'image'");
	gw_disposition("a;b=c\\d/e%f.jpg", false, cd, sizeof(cd));
	is_str(cd, "inline; filename=\"a_b_c_d_e_f.jpg\"; filename*=UTF-8''a%3Bb%3Dc%5Cd%2Fe%25f.jpg",
	       "; = \\ / %%: replaced and escaped");

	disp_ok("photo.jpg", false, "a plain name");
	disp_ok("a\"b\".jpg", true, "quotes");
	disp_ok("\r\n\r\n", true, "CR LF only");
	disp_ok("a\rb\nc\td\x7f" "e.jpg", false, "control characters");
	disp_ok("\xe6\x97\xa5\xe6\x9c\xac\xe8\xaa\x9e.png", false, "Japanese");
	disp_ok("\xf0\x9f\x93\xb7 camera.webp", true, "an emoji and a space");
	disp_ok("..", false, "'..'");
	disp_ok("../../etc/passwd", true, "a path");
	disp_ok("'+!#$&^`|~.jpg", false, "every attr-char");
	disp_ok("", false, "an empty name");

	/* Random names of every byte value. */
	int bad = 0;
	for (int i = 0; i < 5000; i++) {
		char name[64];
		size_t n = randombytes_uniform(sizeof(name) - 1);
		for (size_t k = 0; k < n; k++)
			name[k] = (char)(1 + randombytes_uniform(255));
		name[n] = '\0';
		gw_disposition(name, i & 1, cd, sizeof(cd));
		const char *why = disposition_problem(name, i & 1, cd, true);
		if (why && bad++ < 3)
			diag("random name %d: %s: %s", i, why, cd);
	}
	is_int(bad, 0, "5000 random names: well-formed, no CR/LF/quote in filename, filename* "
	       "decodes back");

	/* Long names: truncated, still well-formed. */
	char longn[1200];
	memset(longn, 'a', sizeof(longn));
	longn[sizeof(longn) - 1] = '\0';
	gw_disposition(longn, false, cd, sizeof(cd));
	const char *why = disposition_problem(longn, false, cd, false);
	ok(!why, "a 1199-character name: truncated, well-formed");
	if (why)
		diag("%s", why);
	ok(strlen(cd) < sizeof(cd), "and fits");
	/* A small buffer is truncated, NUL-terminated. */
	char small[16];
	memset(small, 'Z', sizeof(small));
	gw_disposition("photo.jpg", true, small, sizeof(small));
	ok(memchr(small, '\0', sizeof(small)) != NULL, "a 16-byte buffer: NUL-terminated");
	/*
	 * A long UTF-8 name: filename* keeps at most 255 bytes of the name and
	 * can cut a multi-byte character in half, so the header then carries
	 * invalid UTF-8 in filename* (and browsers may drop it).
	 */
	char utf[1200];
	size_t u = 0;
	while (u + 2 < sizeof(utf)) {
		utf[u++] = (char)0xc3;
		utf[u++] = (char)0xa9;
	}
	utf[u] = '\0';
	gw_disposition(utf, true, cd, sizeof(cd));
	why = disposition_problem(utf, true, cd, false);
	ok(!why, "a long UTF-8 name: truncated, well-formed");
	if (why)
		diag("%s", why);
	const char *star = strstr(cd, "UTF-8''");
	unsigned char dec[1024];
	size_t dn = 0;
	for (const char *p = star ? star + 7 : ""; *p && dn < sizeof(dec); p++) {
		unsigned v;
		if (*p == '%' && sscanf(p + 1, "%2x", &v) == 1) {
			dec[dn++] = (unsigned char)v;
			p += 2;
		} else {
			dec[dn++] = (unsigned char)*p;
		}
	}
	ok(valid_utf8(dec, dn),
	     "a long UTF-8 name: filename* is still whole UTF-8 characters");
}

/* ---- HTML ---- */

static void test_html(void)
{
	char out[256];

	gw_html_escape("<script>alert('x')</script>&\"", out, sizeof(out));
	is_str(out, "&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt;&amp;&quot;", "all five escaped");
	gw_html_escape("plain \xc3\xa9t\xc3\xa9", out, sizeof(out));
	is_str(out, "plain \xc3\xa9t\xc3\xa9", "plain text and UTF-8 pass through");
	gw_html_escape("a\nb\rc\td\x01" "e", out, sizeof(out));
	is_str(out, "a b c d e", "control characters become spaces");
	gw_html_escape("", out, sizeof(out));
	is_str(out, "", "empty");
	gw_html_escape("&amp;", out, sizeof(out));
	is_str(out, "&amp;amp;", "an entity is escaped again");

	/* Truncation never leaves half an entity, and stays inside cap. */
	int bad = 0;
	for (size_t cap = 1; cap < 40; cap++) {
		char buf[64];
		memset(buf, 'Z', sizeof(buf));
		gw_html_escape("&&&&<<<<>>>>\"\"\"\"''''abcd", buf, cap);
		size_t n = strnlen(buf, sizeof(buf));
		if (n >= cap || buf[cap] != 'Z' || buf[n] != '\0')
			bad++;
		const char *amp = strrchr(buf, '&');
		if (amp && !strchr(amp, ';'))
			bad++;
		if (strpbrk(buf, "<>\"'"))
			bad++;
	}
	is_int(bad, 0, "caps 1..39: inside the buffer, no half entity, nothing raw");
	/* Random input: nothing dangerous survives. */
	bad = 0;
	for (int i = 0; i < 2000; i++) {
		char in[100], buf[800];
		for (size_t k = 0; k < sizeof(in) - 1; k++)
			in[k] = (char)(1 + randombytes_uniform(255));
		in[sizeof(in) - 1] = '\0';
		gw_html_escape(in, buf, sizeof(buf));
		if (strpbrk(buf, "<>\"'\r\n"))
			bad++;
	}
	is_int(bad, 0, "2000 random strings: no < > \" ' CR LF in the output");
}

static void test_preview(void)
{
	const char *tok = "AQID.sig-_x";
	char *p;

	p = gw_preview_page("<script>alert(1)</script>.jpg", "https://share.example", tok, "/s/",
			    false);
	ok(p != NULL, "a preview page");
	if (!p)
		return;
	ok(!strstr(p, "<script"), "the raw <script> never appears");
	ok(!strstr(p, "</script"), "nor </script>");
	ok(strstr(p, "<title>&lt;script&gt;alert(1)&lt;/script&gt;.jpg</title>") != NULL,
	   "the title is the escaped name");
	ok(strstr(p, "<h1>&lt;script&gt;alert(1)&lt;/script&gt;.jpg</h1>") != NULL,
	   "so is the heading");
	ok(strstr(p, "<meta property=\"og:image\" content=\"https://share.example/p/AQID.sig-_x\">")
	   != NULL, "og:image is absolute under the base, /p/");
	ok(strstr(p, "<meta property=\"og:url\" content=\"https://share.example/v/AQID.sig-_x\">")
	   != NULL, "og:url is absolute under the base, /v/");
	ok(strstr(p, "<img src=\"/s/AQID.sig-_x\"") != NULL, "the picture comes from img_path");
	ok(!strstr(p, "download"), "inline: no download link");
	ok(strstr(p, "noindex") != NULL, "robots: noindex");
	free(p);

	p = gw_preview_page("holiday.jpg", "https://share.example", tok, "/p/", true);
	ok(p && strstr(p, "<a href=\"/s/AQID.sig-_x\" download>Download</a>") != NULL,
	   "attachment: a download link to /s/");
	ok(p && strstr(p, "<img src=\"/p/AQID.sig-_x\"") != NULL, "the picture from /p/");
	free(p);

	/* Attribute breaking attempts in the name and the base. */
	p = gw_preview_page("\" onerror=\"alert(1)' x='", "https://x\"><script>y", tok, "/s/",
			    false);
	ok(p && !strstr(p, "onerror=\"") && !strstr(p, "x='") && !strstr(p, "<script"),
	   "quotes in the name and the base cannot leave the attribute");
	ok(p && strstr(p, "content=\"https://x&quot;&gt;&lt;script&gt;y/p/") != NULL,
	   "the base is escaped in og:image");
	free(p);

	/* A very long name is truncated, not overflowed. */
	char *big = malloc(20000);
	if (!big)
		BAIL_OUT("out of memory");
	for (size_t i = 0; i < 19999; i++)
		big[i] = "<&\"'a"[i % 5];
	big[19999] = '\0';
	p = gw_preview_page(big, "https://share.example", tok, "/s/", true);
	ok(p && strstr(p, "</body></html>\n") != NULL, "a 20000-character hostile name: the page "
	   "is complete");
	ok(p && !strstr(p, "<&") && !strstr(p, "\"'"), "and escaped");
	free(p);
	free(big);

	/* No base known: no absolute URL at all (never one from Host). */
	p = gw_preview_page("holiday.jpg", NULL, tok, "/s/", false);
	ok(p && !strstr(p, "og:url") && !strstr(p, "og:image"), "no base: no og:url, og:image");
	ok(p && strstr(p, "<img src=\"/s/AQID.sig-_x\"") != NULL && !strstr(p, "://"),
	   "no base: the picture is relative, nothing absolute");
	free(p);
}

/* ---- limits ---- */

static struct cidr addr(const char *s)
{
	struct cidr c;

	if (cidr_parse_addr(s, &c) < 0)
		BAIL_OUT("bad test address %s", s);
	return c;
}

/* How many of @n requests from @a at @now pass. */
static int passes(struct gw_limits *l, const struct cidr *a, double now, int n)
{
	int k = 0;

	for (int i = 0; i < n; i++)
		k += gw_limits_take(l, a, now) == GW_PASS;
	return k;
}

struct hammer {
	struct gw_limits *l;
	int id;
	int pass;
};

static void *hammer_run(void *arg)
{
	struct hammer *h = arg;
	char s[32];

	for (int i = 0; i < 20000; i++) {
		snprintf(s, sizeof(s), "10.%d.%d.%d", h->id, (i >> 8) & 0xff, i & 0xff);
		struct cidr c = addr(s);
		h->pass += gw_limits_take(h->l, &c, 1000.0 + i * 0.001) == GW_PASS;
		if (i % 7 == 0)
			gw_limits_bad_token(h->l, &c, 1000.0 + i * 0.001);
	}
	return NULL;
}

static void test_limits(void)
{
	struct gw_limits *l = NULL;
	struct cidr a = addr("192.0.2.1"), b = addr("192.0.2.2"), a6 = addr("::ffff:192.0.2.1");
	struct cidr v6 = addr("2001:db8::1");

	is_int(gw_limits_new(1.0, 5.0, 3, 60, &l), 0, "gw_limits_new (1/s, burst 5, ban after 3 "
	       "for 60 s)");
	if (!l)
		BAIL_OUT("no limits");
	is_int(passes(l, &a, 1000.0, 5), 5, "a burst of 5 passes");
	is_int(gw_limits_take(l, &a, 1000.0), GW_RATE, "the 6th is rate-limited");
	is_int(gw_limits_take(l, &a6, 1000.0), GW_RATE, "the mapped IPv6 form is the same client");
	is_int(passes(l, &b, 1000.0, 5), 5, "another address has its own burst");
	is_int(passes(l, &v6, 1000.0, 5), 5, "so does an IPv6 address");
	is_int(gw_limits_take(l, &a, 1000.5), GW_RATE, "half a second later: still limited");
	is_int(gw_limits_take(l, &a, 1001.01), GW_PASS, "a second later: one more");
	is_int(gw_limits_take(l, &a, 1001.02), GW_RATE, "and only one");
	is_int(passes(l, &a, 1100.0, 10), 5, "after a long pause: a full burst, not more");
	is_int(passes(l, &a, 1103.0, 10), 3, "3 s later: 3 requests");

	/* Bans. */
	is_int(passes(l, &b, 2000.0, 1), 1, "before bad tokens: pass");
	gw_limits_bad_token(l, &b, 2000.0);
	gw_limits_bad_token(l, &b, 2001.0);
	is_int(gw_limits_take(l, &b, 2002.0), GW_PASS, "two bad tokens: not banned yet");
	gw_limits_bad_token(l, &b, 2002.0);
	is_int(gw_limits_take(l, &b, 2002.5), GW_BANNED, "the third: banned");
	is_int(gw_limits_take(l, &a, 2002.5), GW_PASS, "another address is not");
	is_int(gw_limits_take(l, &b, 2061.0), GW_BANNED, "still banned after 58.5 s");
	is_int(gw_limits_take(l, &b, 2062.5), GW_PASS, "free again after 60 s");
	gw_limits_bad_token(l, &v6, 3000.0);
	gw_limits_bad_token(l, &v6, 3030.0);
	gw_limits_bad_token(l, &v6, 3070.0);
	is_int(gw_limits_take(l, &v6, 3070.0), GW_PASS, "three bad tokens over 70 s: no ban");
	gw_limits_bad_token(l, &v6, 3080.0);
	gw_limits_bad_token(l, &v6, 3090.0);
	is_int(gw_limits_take(l, &v6, 3090.0), GW_BANNED, "but three within the minute: banned");
	struct cidr same64 = addr("2001:db8::ffff:1234"), other64 = addr("2001:db8:0:1::1");
	is_int(gw_limits_take(l, &same64, 3090.0), GW_BANNED,
	       "another address of the same IPv6 /64 is the same client: banned too");
	is_int(gw_limits_take(l, &other64, 3090.0), GW_PASS, "the next /64 is not");

	/* A full table: 10000 addresses in a 4096-slot table. */
	int first = 0, unbanned = 0;
	char s[64];
	for (int i = 0; i < 10000; i++) {
		snprintf(s, sizeof(s), "198.%d.%d.%d", 18 + i / 65536, (i >> 8) & 0xff, i & 0xff);
		struct cidr c = addr(s);
		first += gw_limits_take(l, &c, 3090.0 + i * 0.001) == GW_PASS;
		if (i % 100 == 0)   /* a banned client that keeps trying stays banned */
			unbanned += gw_limits_take(l, &v6, 3090.0 + i * 0.001) != GW_BANNED;
		if (i == 5000)
			gw_limits_bad_token(l, &v6, 3095.0);
	}
	is_int(first, 10000, "10000 new addresses each pass their first request");
	is_int(unbanned, 0, "a banned client that keeps trying during the flood stays banned "
	       "(100 tries)");
	struct cidr n = addr("203.0.113.77");
	is_int(passes(l, &n, 3101.0, 8), 5, "with the table full: a new address gets its burst of 5");
	is_int(gw_limits_take(l, &n, 3101.0), GW_RATE, "and is limited after it");
	gw_limits_bad_token(l, &n, 3101.0);
	gw_limits_bad_token(l, &n, 3101.0);
	gw_limits_bad_token(l, &n, 3101.0);
	is_int(gw_limits_take(l, &n, 3102.0), GW_BANNED, "and banned after 3 bad tokens");
	is_int(gw_limits_take(l, &v6, 3101.0), GW_BANNED, "the client banned before the flood "
	       "still is");
	gw_limits_free(l);
	gw_limits_free(NULL);
	ok(1, "gw_limits_free(NULL) is harmless");

	/* ban_after 1: the first bad token bans. */
	is_int(gw_limits_new(100.0, 100.0, 1, 5, &l), 0, "limits with ban after 1");
	gw_limits_bad_token(l, &a, 10.0);
	is_int(gw_limits_take(l, &a, 10.0), GW_BANNED, "one bad token bans");
	is_int(gw_limits_take(l, &a, 15.0), GW_PASS, "for 5 s");
	gw_limits_free(l);

	/* Threads: no crash, no lost lock (run under SANITIZE=1 too). */
	is_int(gw_limits_new(1.0, 2.0, 3, 60, &l), 0, "limits for threads");
	pthread_t th[4];
	struct hammer h[4];
	for (int i = 0; i < 4; i++) {
		h[i] = (struct hammer){ l, i + 1, 0 };
		pthread_create(&th[i], NULL, hammer_run, &h[i]);
	}
	int total = 0;
	for (int i = 0; i < 4; i++) {
		pthread_join(th[i], NULL);
		total += h[i].pass;
	}
	ok(total > 0, "4 threads x 20000 requests: done (%d passed)", total);
	gw_limits_free(l);
}

int main(void)
{
	if (sodium_init() < 0)
		BAIL_OUT("sodium_init failed");
	test_range();
	test_etag();
	test_disposition();
	test_html();
	test_preview();
	test_limits();
	return done_testing();
}
