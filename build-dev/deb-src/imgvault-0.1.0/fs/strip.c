#include "strip.h"

#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

/*
 * Output buffer.  A walker given a NULL buffer only reads (that is how
 * strip_orientation shares the walkers with strip_metadata), so every
 * writer below accepts NULL and does nothing.
 */
struct obuf {
	uint8_t *p;
	size_t len, cap;
};

static int obuf_put(struct obuf *o, const void *src, size_t n, struct iverr *e)
{
	if (!o || !n)
		return 0;
	if (n > o->cap - o->len) {
		size_t cap = o->cap ? o->cap : 64;
		uint8_t *p;

		while (cap - o->len < n) {
			if (cap > SIZE_MAX / 2)
				return iverr_set(e, ENOMEM, "out of memory");
			cap *= 2;
		}
		if (!(p = realloc(o->p, cap)))
			return iverr_set(e, ENOMEM, "out of memory");
		o->p = p;
		o->cap = cap;
	}
	memcpy(o->p + o->len, src, n);
	o->len += n;
	return 0;
}

static uint16_t get_be16(const uint8_t *p)
{
	return (uint16_t)(p[0] << 8 | p[1]);
}

static uint32_t get_be32(const uint8_t *p)
{
	return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

static uint32_t get_le32(const uint8_t *p)
{
	return (uint32_t)p[3] << 24 | (uint32_t)p[2] << 16 | (uint32_t)p[1] << 8 | p[0];
}

static void put_be16(uint8_t *p, uint16_t v)
{
	p[0] = (uint8_t)(v >> 8);
	p[1] = (uint8_t)v;
}

static void put_be32(uint8_t *p, uint32_t v)
{
	for (int i = 0; i < 4; i++)
		p[i] = (uint8_t)(v >> (24 - 8 * i));
}

static void put_le32(uint8_t *p, uint32_t v)
{
	for (int i = 0; i < 4; i++)
		p[i] = (uint8_t)(v >> (8 * i));
}

/* A chunk name fit for a message: non-printing bytes become '?'. */
static void fourcc_str(const uint8_t *p, char out[5])
{
	for (int i = 0; i < 4; i++)
		out[i] = p[i] >= 0x20 && p[i] < 0x7f ? (char)p[i] : '?';
	out[4] = '\0';
}

/* ---- EXIF ------------------------------------------------------------- */

#define TIFF_MIN_ORIENTED 26   /* header, IFD count, one entry, next IFD */
#define TAG_ORIENTATION   0x0112
#define TIFF_SHORT        3

static uint16_t tiff16(const uint8_t *p, bool big)
{
	return big ? get_be16(p) : (uint16_t)(p[0] | p[1] << 8);
}

static uint32_t tiff32(const uint8_t *p, bool big)
{
	return big ? get_be32(p) : get_le32(p);
}

/*
 * The Orientation of IFD0 of the TIFF structure @t (an EXIF block after
 * its "Exif\0\0"), 1 if there is none or the structure is damaged.  Every
 * offset is checked against @n; the entry count is capped at what fits.
 * *big receives the byte order, for writing the replacement in the same.
 */
static int tiff_orientation(const uint8_t *t, size_t n, bool *big)
{
	uint32_t ifd;
	size_t count;

	*big = false;
	if (n < 8)
		return 1;
	if (t[0] == 'I' && t[1] == 'I')
		*big = false;
	else if (t[0] == 'M' && t[1] == 'M')
		*big = true;
	else
		return 1;
	if (tiff16(t + 2, *big) != 42)
		return 1;
	ifd = tiff32(t + 4, *big);
	if (ifd < 8 || ifd > n - 2)
		return 1;
	count = tiff16(t + ifd, *big);
	if (count > (n - ifd - 2) / 12)
		count = (n - ifd - 2) / 12;
	for (size_t i = 0; i < count; i++) {
		const uint8_t *ent = t + ifd + 2 + 12 * i;
		unsigned v;

		if (tiff16(ent, *big) != TAG_ORIENTATION)
			continue;
		if (tiff16(ent + 2, *big) != TIFF_SHORT || tiff32(ent + 4, *big) != 1)
			return 1;
		v = tiff16(ent + 8, *big);
		return v >= 1 && v <= 8 ? (int)v : 1;
	}
	return 1;
}

/* Writes the 26-byte TIFF structure that holds only @orientation. */
static void tiff_minimal(uint8_t t[TIFF_MIN_ORIENTED], int orientation, bool big)
{
	memset(t, 0, TIFF_MIN_ORIENTED);
	if (big) {
		memcpy(t, "MM\0\x2a", 4);
		put_be32(t + 4, 8);
		put_be16(t + 8, 1);
		put_be16(t + 10, TAG_ORIENTATION);
		put_be16(t + 12, TIFF_SHORT);
		put_be32(t + 14, 1);
		put_be16(t + 18, (uint16_t)orientation);
	} else {
		memcpy(t, "II\x2a\0", 4);
		put_le32(t + 4, 8);
		t[8] = 1;
		t[10] = TAG_ORIENTATION & 0xff;
		t[11] = TAG_ORIENTATION >> 8;
		t[12] = TIFF_SHORT;
		t[14] = 1;
		t[18] = (uint8_t)orientation;
	}
	/* bytes 22..25: no next IFD */
}

/* ---- JPEG ------------------------------------------------------------- */

#define M_SOI  0xd8
#define M_EOI  0xd9
#define M_SOS  0xda
#define M_TEM  0x01
#define M_APP0 0xe0
#define M_APP1 0xe1
#define M_APP2 0xe2
#define M_APP14 0xee
#define M_COM  0xfe

static bool has_prefix(const uint8_t *p, size_t n, const char *sig, size_t siglen)
{
	return n >= siglen && !memcmp(p, sig, siglen);
}

/* Whether an APPn or COM segment survives; every other marker does. */
static bool jpeg_keep(uint8_t m, const uint8_t *p, size_t n)
{
	switch (m) {
	case M_APP0:
		return has_prefix(p, n, "JFIF\0", 5) || has_prefix(p, n, "JFXX\0", 5);
	case M_APP2:
		return has_prefix(p, n, "ICC_PROFILE\0", 12);
	case M_APP14:
		return has_prefix(p, n, "Adobe", 5);
	case M_COM:
		return false;
	default:
		return m < 0xe0 || m > 0xef;
	}
}

static int jpeg_put_exif(struct obuf *o, int orientation, bool big, struct iverr *e)
{
	uint8_t seg[4 + 6 + TIFF_MIN_ORIENTED];

	seg[0] = 0xff;
	seg[1] = M_APP1;
	put_be16(seg + 2, sizeof(seg) - 2);
	memcpy(seg + 4, "Exif\0\0", 6);
	tiff_minimal(seg + 10, orientation, big);
	return obuf_put(o, seg, sizeof(seg), e);
}

/*
 * Finds the end of the entropy-coded data that starts at @pos: the offset
 * of the next marker, or 0 if the data runs to the end of the file.  In
 * the data, 0xff is followed (after optional 0xff fill bytes) by 0x00, a
 * stuffed 0xff byte, or by RSTn; both belong to the data.
 */
static size_t jpeg_scan(const uint8_t *in, size_t len, size_t pos)
{
	while (pos < len) {
		const uint8_t *ff = memchr(in + pos, 0xff, len - pos);
		size_t i, j;

		if (!ff)
			return 0;
		i = j = (size_t)(ff - in);
		while (j + 1 < len && in[j + 1] == 0xff)
			j++;
		if (j + 1 >= len)
			return 0;
		if (in[j + 1] != 0x00 && (in[j + 1] < 0xd0 || in[j + 1] > 0xd7))
			return i;
		pos = j + 2;
	}
	return 0;
}

static int jpeg_walk(const uint8_t *in, size_t len, struct obuf *o, int *orientation,
		     struct iverr *e)
{
	static const uint8_t soi[2] = { 0xff, M_SOI };
	bool in_scans = false, seen_exif = false;
	size_t pos = 2;
	int ret;

	*orientation = 1;
	if (len < 2 || in[0] != 0xff || in[1] != M_SOI)
		return iverr_set(e, IV_EREJECT, "not a JPEG: it does not start with a "
				 "start-of-image marker");
	if ((ret = obuf_put(o, soi, 2, e)) < 0)
		return ret;
	for (;;) {
		size_t seglen, fill;
		uint8_t m;

		if (pos >= len)
			return iverr_set(e, IV_EREJECT, "damaged JPEG: it ends at byte %zu "
					 "without an end-of-image marker", pos);
		/* Fill bytes: any number of 0xff before a marker; dropped. */
		fill = pos;
		if (in[pos] == 0xff) {
			while (fill + 1 < len && in[fill + 1] == 0xff)
				fill++;
			if (fill + 1 >= len)
				return iverr_set(e, IV_EREJECT, "damaged JPEG: it ends at "
						 "byte %zu without an end-of-image marker", len);
		}
		/* Entropy-coded data: anything but a marker, once a scan began. */
		if (in[pos] != 0xff || in[fill + 1] == 0x00) {
			size_t end;

			if (!in_scans)
				return iverr_set(e, IV_EREJECT, "damaged JPEG: expected a "
						 "marker at byte %zu", pos);
			if (!(end = jpeg_scan(in, len, pos)))
				return iverr_set(e, IV_EREJECT, "damaged JPEG: the image data "
						 "is cut short (no end-of-image marker)");
			if ((ret = obuf_put(o, in + pos, end - pos, e)) < 0)
				return ret;
			pos = end;
			continue;
		}
		pos = fill;
		m = in[pos + 1];
		if (m == M_EOI) {
			if (!in_scans)
				return iverr_set(e, IV_EREJECT, "damaged JPEG: it ends at byte "
						 "%zu before any image data", pos);
			/* Whatever follows EOI (a thumbnail stream, a ZIP) is dropped. */
			return obuf_put(o, in + pos, 2, e);
		}
		if (m == M_SOI)
			return iverr_set(e, IV_EREJECT, "damaged JPEG: a second start-of-image "
					 "marker at byte %zu", pos);
		if (m == M_TEM || (m >= 0xd0 && m <= 0xd7)) {
			if ((ret = obuf_put(o, in + pos, 2, e)) < 0)
				return ret;
			pos += 2;
			continue;
		}
		if (len - pos < 4)
			return iverr_set(e, IV_EREJECT, "damaged JPEG: segment 0x%02x at byte "
					 "%zu is cut short", m, pos);
		seglen = get_be16(in + pos + 2);
		if (seglen < 2)
			return iverr_set(e, IV_EREJECT, "damaged JPEG: segment 0x%02x at byte "
					 "%zu has an impossible length %zu", m, pos, seglen);
		if (seglen > len - pos - 2)
			return iverr_set(e, IV_EREJECT, "damaged JPEG: segment 0x%02x at byte "
					 "%zu claims %zu bytes but only %zu remain", m, pos,
					 seglen, len - pos - 2);
		if (m == M_APP1 && !in_scans && !seen_exif &&
		    has_prefix(in + pos + 4, seglen - 2, "Exif\0", 5)) {
			bool big = false;

			seen_exif = true;
			*orientation = seglen - 2 >= 6 ?
				tiff_orientation(in + pos + 10, seglen - 8, &big) : 1;
			/* The replacement takes the original's place. */
			if (*orientation != 1 &&
			    (ret = jpeg_put_exif(o, *orientation, big, e)) < 0)
				return ret;
		} else if (jpeg_keep(m, in + pos + 4, seglen - 2) &&
			   (ret = obuf_put(o, in + pos, seglen + 2, e)) < 0) {
			return ret;
		}
		pos += seglen + 2;
		if (m == M_SOS)
			in_scans = true;
	}
}

/* ---- PNG -------------------------------------------------------------- */

static const uint8_t png_signature[8] = { 0x89, 'P', 'N', 'G', '\r', '\n', 0x1a, '\n' };

/*
 * CRC-32 (ISO-HDLC, as PNG and zlib use), bit by bit: it only ever covers
 * the 30 bytes of the eXIf chunk we write, so a table would buy nothing.
 */
static uint32_t crc32_png(const uint8_t *p, size_t n)
{
	uint32_t c = 0xffffffffu;

	while (n--) {
		c ^= *p++;
		for (int k = 0; k < 8; k++)
			c = (c >> 1) ^ (0xedb88320u & (0u - (c & 1)));
	}
	return c ^ 0xffffffffu;
}

static bool png_type_valid(const uint8_t *t)
{
	for (int i = 0; i < 4; i++)
		if (!((t[i] >= 'A' && t[i] <= 'Z') || (t[i] >= 'a' && t[i] <= 'z')))
			return false;
	return true;
}

/* Chunks that carry metadata: EXIF (and its pre-standard forms), text, time. */
static bool png_drop(const uint8_t *t)
{
	static const char *const drop[] = {
		"eXIf", "exIf", "zxIf", "tEXt", "iTXt", "zTXt", "tIME",
	};

	for (size_t i = 0; i < sizeof(drop) / sizeof(drop[0]); i++)
		if (!memcmp(t, drop[i], 4))
			return true;
	return false;
}

static int png_put_exif(struct obuf *o, int orientation, bool big, struct iverr *e)
{
	uint8_t chunk[12 + TIFF_MIN_ORIENTED];

	put_be32(chunk, TIFF_MIN_ORIENTED);
	memcpy(chunk + 4, "eXIf", 4);
	tiff_minimal(chunk + 8, orientation, big);
	put_be32(chunk + 8 + TIFF_MIN_ORIENTED, crc32_png(chunk + 4, 4 + TIFF_MIN_ORIENTED));
	return obuf_put(o, chunk, sizeof(chunk), e);
}

static int png_walk(const uint8_t *in, size_t len, struct obuf *o, int *orientation,
		    struct iverr *e)
{
	bool seen_exif = false;
	size_t pos = sizeof(png_signature);
	int ret;

	*orientation = 1;
	if (len < sizeof(png_signature) || memcmp(in, png_signature, sizeof(png_signature)))
		return iverr_set(e, IV_EREJECT, "not a PNG: the PNG signature is missing");
	if ((ret = obuf_put(o, in, pos, e)) < 0)
		return ret;
	for (;;) {
		const uint8_t *type, *data;
		size_t clen;
		char name[5];

		if (pos == len)
			return iverr_set(e, IV_EREJECT, "damaged PNG: it ends at byte %zu "
					 "without an IEND chunk", pos);
		if (len - pos < 12)
			return iverr_set(e, IV_EREJECT, "damaged PNG: the chunk at byte %zu "
					 "is cut short", pos);
		clen = get_be32(in + pos);
		type = in + pos + 4;
		data = in + pos + 8;
		if (!png_type_valid(type))
			return iverr_set(e, IV_EREJECT, "damaged PNG: invalid chunk type "
					 "at byte %zu", pos);
		fourcc_str(type, name);
		if (pos == sizeof(png_signature) && memcmp(type, "IHDR", 4))
			return iverr_set(e, IV_EREJECT, "damaged PNG: it starts with a %s "
					 "chunk instead of IHDR", name);
		if (clen > 0x7fffffffu || clen > len - pos - 12)
			return iverr_set(e, IV_EREJECT, "damaged PNG: the %s chunk at byte "
					 "%zu claims %zu bytes but only %zu remain", name, pos,
					 clen, len - pos - 12);
		if (!memcmp(type, "eXIf", 4) && !seen_exif) {
			bool big;

			seen_exif = true;
			/* The standard says no "Exif\0\0"; some writers add it anyway. */
			if (has_prefix(data, clen, "Exif\0\0", 6))
				*orientation = tiff_orientation(data + 6, clen - 6, &big);
			else
				*orientation = tiff_orientation(data, clen, &big);
			if (*orientation != 1 &&
			    (ret = png_put_exif(o, *orientation, big, e)) < 0)
				return ret;
		} else if (!png_drop(type) &&
			   (ret = obuf_put(o, in + pos, clen + 12, e)) < 0) {
			return ret;
		}
		pos += clen + 12;
		/* Nothing after IEND is kept: it also defuses PNG+ZIP polyglots. */
		if (!memcmp(type, "IEND", 4))
			return 0;
	}
}

/* ---- WebP ------------------------------------------------------------- */

#define VP8X_FLAG_EXIF 0x08
#define VP8X_FLAG_XMP  0x04

static int webp_put_exif(struct obuf *o, int orientation, bool big, struct iverr *e)
{
	uint8_t chunk[8 + TIFF_MIN_ORIENTED];  /* 26: even, needs no padding */

	memcpy(chunk, "EXIF", 4);
	put_le32(chunk + 4, TIFF_MIN_ORIENTED);
	tiff_minimal(chunk + 8, orientation, big);
	return obuf_put(o, chunk, sizeof(chunk), e);
}

static int webp_walk(const uint8_t *in, size_t len, struct obuf *o, int *orientation,
		     struct iverr *e)
{
	bool seen_exif = false, put_exif = false, kept = false;
	size_t pos = 12, end, vp8x_flags = 0;  /* 0: no VP8X chunk */
	uint32_t riff;
	int ret;

	*orientation = 1;
	if (len < 12 || memcmp(in, "RIFF", 4) || memcmp(in + 8, "WEBP", 4))
		return iverr_set(e, IV_EREJECT, "not a WebP: the RIFF WEBP header is missing");
	riff = get_le32(in + 4);
	if (riff > len - 8)
		return iverr_set(e, IV_EREJECT, "damaged WebP: the RIFF header claims %lu "
				 "bytes but only %zu follow it", (unsigned long)riff, len - 8);
	/* Nothing after the RIFF extent is kept (polyglots, trailing junk). */
	end = 8 + (size_t)riff;
	if (riff <= 4)
		return iverr_set(e, IV_EREJECT, "damaged WebP: the file holds no chunks");
	if ((ret = obuf_put(o, in, pos, e)) < 0)
		return ret;
	while (pos < end) {
		const uint8_t *id = in + pos;
		size_t clen, padded;
		char name[5];

		if (end - pos < 8)
			return iverr_set(e, IV_EREJECT, "damaged WebP: the chunk at byte %zu "
					 "is cut short", pos);
		fourcc_str(id, name);
		clen = get_le32(in + pos + 4);
		if (clen > end - pos - 8)
			return iverr_set(e, IV_EREJECT, "damaged WebP: the %s chunk at byte "
					 "%zu claims %zu bytes but only %zu remain", name, pos,
					 clen, end - pos - 8);
		padded = clen + (clen & 1);
		if (padded > end - pos - 8)
			return iverr_set(e, IV_EREJECT, "damaged WebP: the %s chunk at byte "
					 "%zu lacks its padding byte", name, pos);
		if (!memcmp(id, "VP8X", 4)) {
			if (pos != 12)
				return iverr_set(e, IV_EREJECT, "damaged WebP: a VP8X chunk at "
						 "byte %zu is not the first chunk", pos);
			if (clen < 10)
				return iverr_set(e, IV_EREJECT, "damaged WebP: the VP8X chunk "
						 "is %zu bytes long, not 10", clen);
			vp8x_flags = o ? o->len + 8 : 1;
		}
		if (!memcmp(id, "EXIF", 4) && !seen_exif) {
			const uint8_t *d = in + pos + 8;
			bool big;
			int r;

			seen_exif = true;
			if (has_prefix(d, clen, "Exif\0\0", 6))
				r = tiff_orientation(d + 6, clen - 6, &big);
			else
				r = tiff_orientation(d, clen, &big);
			/* Without VP8X, readers ignore EXIF: so do we. */
			if (vp8x_flags && r != 1) {
				*orientation = r;
				put_exif = true;
				if ((ret = webp_put_exif(o, r, big, e)) < 0)
					return ret;
			}
		} else if (memcmp(id, "EXIF", 4) && memcmp(id, "XMP ", 4)) {
			if ((ret = obuf_put(o, id, 8 + padded, e)) < 0)
				return ret;
			kept = true;
		}
		pos += 8 + padded;
	}
	if (!kept)
		return iverr_set(e, IV_EREJECT, "damaged WebP: the file holds nothing "
				 "but metadata");
	if (o) {
		if (o->len - 8 > UINT32_MAX)
			return iverr_set(e, IV_EREJECT, "damaged WebP: the file is too "
					 "large for a RIFF container");
		if (vp8x_flags)
			o->p[vp8x_flags] = (uint8_t)((o->p[vp8x_flags] &
						      ~(VP8X_FLAG_EXIF | VP8X_FLAG_XMP)) |
						     (put_exif ? VP8X_FLAG_EXIF : 0));
		put_le32(o->p + 4, (uint32_t)(o->len - 8));
	}
	return 0;
}

/* ---- API -------------------------------------------------------------- */

typedef int (*walker)(const uint8_t *, size_t, struct obuf *, int *, struct iverr *);

static walker walker_for(const char *mime)
{
	if (!mime)
		return NULL;
	if (!strcmp(mime, "image/jpeg"))
		return jpeg_walk;
	if (!strcmp(mime, "image/png"))
		return png_walk;
	if (!strcmp(mime, "image/webp"))
		return webp_walk;
	return NULL;
}

int strip_metadata(const uint8_t *in, size_t len, const char *mime,
		   uint8_t **out, size_t *out_len, struct iverr *e)
{
	struct obuf o = { 0 };
	walker walk = walker_for(mime);
	int orientation, ret;

	*out = NULL;
	*out_len = 0;
	if (!walk)
		return iverr_set(e, ENOTSUP, "no lossless metadata stripper for %s",
				 mime ? mime : "an unknown type");
	if (!in)
		len = 0;
	if (len > SIZE_MAX - 64)
		return iverr_set(e, ENOMEM, "out of memory");
	/* The output is at most a few bytes longer than the input: one go. */
	o.cap = len + 64;
	if (!(o.p = malloc(o.cap)))
		return iverr_set(e, ENOMEM, "out of memory");
	if ((ret = walk(in ? in : (const uint8_t *)"", len, &o, &orientation, e)) < 0)
		goto out_free;
	*out = o.p;
	*out_len = o.len;
	return 0;

out_free:
	free(o.p);
	return ret;
}

int strip_orientation(const uint8_t *in, size_t len, const char *mime)
{
	walker walk = walker_for(mime);
	int orientation = 1;

	if (!walk || !in)
		return 1;
	/* A walk that fails after the EXIF block still found the orientation;
	 * strip_metadata would refuse that file, so there is no output to
	 * disagree with. */
	(void)walk(in, len, NULL, &orientation, NULL);
	return orientation;
}
