#include "gw_http.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* A decimal number of at most 19 digits; the end in *end. */
static int number(const char *s, const char **end, uint64_t *out)
{
	uint64_t n = 0;
	int digits = 0;

	while (*s >= '0' && *s <= '9') {
		if (++digits > 19)
			return -EINVAL;
		n = n * 10 + (uint64_t)(*s++ - '0');
	}
	if (!digits)
		return -EINVAL;
	*end = s;
	*out = n;
	return 0;
}

int gw_range_parse(const char *hdr, uint64_t size, uint64_t *off, uint64_t *len)
{
	const char *p;
	uint64_t a, b;

	if (!hdr)
		return 1;
	if (strncmp(hdr, "bytes=", 6) != 0)
		return 1;
	p = hdr + 6;
	while (*p == ' ')
		p++;
	if (strchr(p, ','))
		return 1;
	if (*p == '-') {                          /* the last N bytes */
		if (number(p + 1, &p, &b) < 0)
			return -EINVAL;
		while (*p == ' ')
			p++;
		if (*p)
			return -EINVAL;
		if (b == 0 || size == 0)
			return -ERANGE;
		*len = b < size ? b : size;
		*off = size - *len;
		return 0;
	}
	if (number(p, &p, &a) < 0 || *p++ != '-')
		return -EINVAL;
	if (*p == '\0' || *p == ' ') {
		b = UINT64_MAX;
	} else if (number(p, &p, &b) < 0 || b < a) {
		return -EINVAL;
	}
	while (*p == ' ')
		p++;
	if (*p)
		return -EINVAL;
	if (a >= size)
		return -ERANGE;
	if (b >= size)
		b = size - 1;
	*off = a;
	*len = b - a + 1;
	return 0;
}

bool gw_etag_matches(const char *inm, const char *etag)
{
	size_t elen = strlen(etag);

	if (!inm)
		return false;
	for (const char *p = inm; *p;) {
		while (*p == ' ' || *p == ',' || *p == '\t')
			p++;
		if (*p == '*')
			return true;
		if (!strncmp(p, "W/", 2))
			p += 2;
		size_t n = strcspn(p, ",");
		while (n && (p[n - 1] == ' ' || p[n - 1] == '\t'))
			n--;
		if (n == elen && !memcmp(p, etag, n))
			return true;
		p += strcspn(p, ",");
	}
	return false;
}

void gw_disposition(const char *name, bool attachment, char *out, size_t cap)
{
	char ascii[128], ext[768];
	size_t a = 0, x = 0;

	for (const unsigned char *p = (const unsigned char *)name; *p && a < sizeof(ascii) - 1; p++)
		ascii[a++] = (*p >= 'A' && *p <= 'Z') || (*p >= 'a' && *p <= 'z') ||
			     (*p >= '0' && *p <= '9') || *p == '.' || *p == '-' || *p == '_' ?
			     (char)*p : '_';
	ascii[a] = '\0';
	if (!a || ascii[0] == '.')
		snprintf(ascii, sizeof(ascii), "image");
	/* RFC 5987: attr-char stays, every other byte is %XX; a long name is
	 * cut between characters, never inside a UTF-8 sequence. */
	for (const unsigned char *p = (const unsigned char *)name; *p;) {
		size_t seq = *p < 0x80 ? 1 : *p >= 0xf0 ? 4 : *p >= 0xe0 ? 3 : *p >= 0xc0 ? 2 : 1;
		if (x + 3 * seq >= sizeof(ext))
			break;
		for (size_t i = 0; i < seq && *p; i++, p++) {
			if ((*p >= 'A' && *p <= 'Z') || (*p >= 'a' && *p <= 'z') ||
			    (*p >= '0' && *p <= '9') || strchr("!#$&+-.^_`|~", *p))
				ext[x++] = (char)*p;
			else
				x += (size_t)snprintf(ext + x, sizeof(ext) - x, "%%%02X", *p);
		}
	}
	ext[x] = '\0';
	snprintf(out, cap, "%s; filename=\"%s\"; filename*=UTF-8''%s",
		 attachment ? "attachment" : "inline", ascii, ext);
}

void gw_html_escape(const char *s, char *out, size_t cap)
{
	size_t o = 0;

	for (; *s && o + 7 < cap; s++) {
		const char *rep = NULL;
		switch (*s) {
		case '&': rep = "&amp;"; break;
		case '<': rep = "&lt;"; break;
		case '>': rep = "&gt;"; break;
		case '"': rep = "&quot;"; break;
		case '\'': rep = "&#39;"; break;
		default:
			out[o++] = (unsigned char)*s < 0x20 ? ' ' : *s;
			continue;
		}
		o += (size_t)snprintf(out + o, cap - o, "%s", rep);
	}
	out[o] = '\0';
}

char *gw_preview_page(const char *name, const char *base, const char *token,
		      const char *img_path, bool attachment)
{
	static const char fmt[] =
		"<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\n"
		"<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n"
		"<meta name=\"robots\" content=\"noindex, nofollow\">\n"
		"<title>%s</title>\n"
		"<meta property=\"og:type\" content=\"website\">\n"
		"<meta property=\"og:title\" content=\"%s\">\n"
		"%s"
		"<meta name=\"twitter:card\" content=\"summary_large_image\">\n"
		"</head><body>\n"
		"<h1>%s</h1>\n"
		"<p><img src=\"%s%s\" alt=\"%s\" width=\"800\"></p>\n"
		"%s%s%s"
		"</body></html>\n";
	static const char og_fmt[] =
		"<meta property=\"og:url\" content=\"%s/v/%s\">\n"
		"<meta property=\"og:image\" content=\"%s/p/%s\">\n";
	char ename[1600], ebase[1600], og[2 * sizeof(ebase) + 1024] = "";
	size_t cap = sizeof(fmt) + 4 * sizeof(ename) + sizeof(og) + 6 * 256;
	char *out = malloc(cap);

	if (!out)
		return NULL;
	gw_html_escape(name, ename, sizeof(ename));
	/* Open Graph wants absolute URLs: without a base, no such tags. */
	if (base) {
		gw_html_escape(base, ebase, sizeof(ebase));
		snprintf(og, sizeof(og), og_fmt, ebase, token, ebase, token);
	}
	snprintf(out, cap, fmt, ename, ename, og, ename, img_path, token, ename,
		 attachment ? "<p><a href=\"/s/" : "", attachment ? token : "",
		 attachment ? "\" download>Download</a></p>\n" : "");
	return out;
}
