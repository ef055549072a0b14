/*
 * gw_http — the gateway's HTTP pieces that need no socket: Range and
 * If-None-Match, Content-Disposition, and the preview page.  Pure
 * functions, unit-tested in tests/unit/test_gw_http.c.
 */
#ifndef IMGVAULT_GW_HTTP_H
#define IMGVAULT_GW_HTTP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* One range of a "Range: bytes=…" header over @size bytes:
 *   0        serve [*off, *off + *len)
 *   1        serve the whole file (no header, another unit, or several
 *            ranges: RFC 9110 lets a server ignore Range)
 *   -ERANGE  unsatisfiable (416)
 *   -EINVAL  malformed (ignored like 1 by callers, per RFC 9110) */
int gw_range_parse(const char *hdr, uint64_t size, uint64_t *off, uint64_t *len);

/* Whether an If-None-Match header matches @etag (a quoted strong tag);
 * weak comparison, "*" matches. */
bool gw_etag_matches(const char *if_none_match, const char *etag);

/* Content-Disposition for @name: an ASCII fallback with anything risky
 * replaced by '_', and the exact name as RFC 5987 filename*. */
void gw_disposition(const char *name, bool attachment, char *out, size_t cap);

/* @s with & < > " ' escaped for HTML, in @out (truncated to @cap). */
void gw_html_escape(const char *s, char *out, size_t cap);

/* The preview page of a link: its name, the picture (@img_path: /s/ or /p/
 * then the token), Open Graph tags with absolute URLs under @base (none
 * when @base is NULL), and a download button for an attachment link.  The
 * caller frees it. */
char *gw_preview_page(const char *name, const char *base, const char *token,
		      const char *img_path, bool attachment);

#endif
