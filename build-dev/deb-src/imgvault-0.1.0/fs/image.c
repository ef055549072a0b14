#include "image.h"
#include "strip.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <magic.h>
#include <vips/vips.h>

struct image_sniffer {
	magic_t magic;
};

static const struct {
	enum image_type type;
	const char *name;
	const char *mime;
	const char *loader_class; /* libvips' loaders of this format start so */
} types[] = {
	{ IMAGE_JPEG, "jpeg", "image/jpeg", "VipsForeignLoadJpeg" },
	{ IMAGE_PNG, "png", "image/png", "VipsForeignLoadPng" },
	{ IMAGE_GIF, "gif", "image/gif", "VipsForeignLoadNsgif" },
	{ IMAGE_WEBP, "webp", "image/webp", "VipsForeignLoadWebp" },
	{ IMAGE_HEIC, "heic", "image/heic", "VipsForeignLoadHeif" },
	{ IMAGE_AVIF, "avif", "image/avif", "VipsForeignLoadHeif" },
};
#define N_TYPES (sizeof(types) / sizeof(types[0]))

void image_limits_default(struct image_limits *l)
{
	l->max_bytes = 50u << 20;
	l->max_pixels = 100000000;
	l->max_frames = 500;
	l->max_total_pixels = 4 * l->max_pixels;
	l->decode_memory = 512u << 20;
	l->types = IMAGE_ALL_TYPES;
	l->thumb_size = 256;
}

int image_types_parse(const char *list, unsigned *out, struct iverr *e)
{
	unsigned bits = 0;
	const char *p = list;

	while (*p) {
		size_t n = strcspn(p, ", ");
		bool found = false;

		for (size_t i = 0; n && i < N_TYPES; i++) {
			if (strlen(types[i].name) == n && !strncmp(p, types[i].name, n)) {
				bits |= types[i].type;
				found = true;
			}
		}
		if (n && !found)
			return iverr_set(e, EINVAL, "unknown image type '%.*s': the types are "
					 "jpeg, png, gif, webp, heic, avif", (int)n, p);
		p += n;
		p += strspn(p, ", ");
	}
	if (!bits)
		return iverr_set(e, EINVAL, "the list of image types is empty");
	*out = bits;
	return 0;
}

const char *image_types_format(unsigned bits, char *buf, size_t cap)
{
	size_t n = 0;

	buf[0] = '\0';
	for (size_t i = 0; i < N_TYPES; i++)
		if (bits & types[i].type)
			n += (size_t)snprintf(buf + n, n < cap ? cap - n : 0, "%s%s",
					      n ? "," : "", types[i].name);
	return buf;
}

const char *image_mime(enum image_type type)
{
	for (size_t i = 0; i < N_TYPES; i++)
		if (types[i].type == type)
			return types[i].mime;
	return "application/octet-stream";
}

enum image_type image_type_of(const char *mime)
{
	for (size_t i = 0; i < N_TYPES; i++)
		if (!strcmp(mime, types[i].mime))
			return types[i].type;
	return 0;
}

/* libvips is process-wide state: it is set up once. */
static pthread_once_t vips_once = PTHREAD_ONCE_INIT;
static int vips_ready = -1;

/* libvips' warnings ("premature end of JPEG file") describe hostile input
 * the caller already reports as an error; they must not reach stderr. */
static void vips_quiet(const gchar *domain, GLogLevelFlags level, const gchar *msg,
		       gpointer arg)
{
	(void)domain;
	(void)level;
	(void)msg;
	(void)arg;
}

static void vips_setup(void)
{
	if (VIPS_INIT("imgvault") != 0)
		return;
	g_log_set_handler("VIPS", G_LOG_LEVEL_WARNING | G_LOG_LEVEL_MESSAGE | G_LOG_LEVEL_INFO |
			  G_LOG_LEVEL_DEBUG, vips_quiet, NULL);
	/* Only the loaders of the formats we store, never the untrusted ones
	 * (ImageMagick, PDF, SVG, …), whatever libvips would otherwise try. */
#if VIPS_MAJOR_VERSION > 8 || (VIPS_MAJOR_VERSION == 8 && VIPS_MINOR_VERSION >= 13)
	vips_block_untrusted_set(TRUE);
#endif
	vips_operation_block_set("VipsForeignLoad", TRUE);
	for (size_t i = 0; i < N_TYPES; i++)
		vips_operation_block_set(types[i].loader_class, FALSE);
	/* Thumbnails of one image at a time per worker; nothing kept around. */
	vips_concurrency_set(1);
	vips_cache_set_max(0);
	vips_cache_set_max_mem(0);
	vips_cache_set_max_files(0);
	vips_leak_set(FALSE);
	vips_ready = 0;
}

int image_global_init(struct iverr *e)
{
	pthread_once(&vips_once, vips_setup);
	if (vips_ready < 0)
		return iverr_set(e, EIO, "cannot initialise libvips: %s; reinstall libvips42",
				 vips_error_buffer());
	return 0;
}

int image_sniffer_new(struct image_sniffer **out, struct iverr *e)
{
	struct image_sniffer *s;
	int ret;

	*out = NULL;
	if ((ret = image_global_init(e)) < 0)
		return ret;
	s = calloc(1, sizeof(*s));
	if (!s)
		return iverr_set(e, ENOMEM, "out of memory");
	/* No decompression, no following of anything: the type of the bytes. */
	s->magic = magic_open(MAGIC_MIME_TYPE | MAGIC_NO_CHECK_COMPRESS |
			      MAGIC_NO_CHECK_ELF | MAGIC_NO_CHECK_TAR);
	if (!s->magic || magic_load(s->magic, NULL) != 0) {
		ret = iverr_set(e, EIO, "cannot load libmagic's database: %s; "
				"reinstall libmagic1", s->magic ? magic_error(s->magic) : "?");
		image_sniffer_free(s);
		return ret;
	}
	*out = s;
	return 0;
}

void image_sniffer_free(struct image_sniffer *s)
{
	if (!s)
		return;
	if (s->magic)
		magic_close(s->magic);
	free(s);
}

/* libvips' last error, cleaned up for a one-line message. */
static const char *vips_reason(char *buf, size_t cap)
{
	const char *err = vips_error_buffer();
	size_t n;

	snprintf(buf, cap, "%s", err && *err ? err : "unknown error");
	n = strlen(buf);
	while (n && (buf[n - 1] == '\n' || buf[n - 1] == ' '))
		buf[--n] = '\0';
	for (char *p = buf; *p; p++)
		if (*p == '\n')
			*p = ';';
	vips_error_clear();
	return buf;
}

/*
 * Whether a ZIP archive ends the file (its end-of-central-directory record,
 * whose comment length reaches exactly to the end): ZIP readers look there,
 * so an image with one appended is also an archive — a JAR, an Office
 * file, a payload.  Other trailing data (camera trailers, MPF second
 * images) is common in real photos and kept.
 */
static bool has_zip_tail(const uint8_t *p, size_t len)
{
	size_t lo = len > 65557 ? len - 65557 : 0;

	for (size_t i = len >= 22 ? len - 22 + 1 : 0; i-- > lo;) {
		if (p[i] == 'P' && p[i + 1] == 'K' && p[i + 2] == 5 && p[i + 3] == 6 &&
		    i + 22 + (size_t)(p[i + 20] | p[i + 21] << 8) == len)
			return true;
	}
	return false;
}

int image_admit(struct image_sniffer *s, const struct image_limits *limits,
		const void *buf, size_t len, struct image_info *out, struct iverr *e)
{
	char reason[256];
	const char *m, *loader;
	VipsImage *im = NULL;
	size_t t;
	int ret = 0;

	memset(out, 0, sizeof(*out));
	if (len == 0)
		return iverr_set(e, IV_EREJECT, "the file is empty");
	if (len > limits->max_bytes)
		return iverr_set(e, IV_EREJECT, "the file is %zu bytes, over the %llu-byte limit",
				 len, (unsigned long long)limits->max_bytes);
	m = magic_buffer(s->magic, buf, len);
	if (!m)
		return iverr_set(e, IV_EREJECT, "cannot tell the file's type: %s",
				 magic_error(s->magic));
	for (t = 0; t < N_TYPES && strcmp(m, types[t].mime); t++)
		;
	if (t == N_TYPES && !strcmp(m, "image/heif"))
		for (t = 0; t < N_TYPES && types[t].type != IMAGE_HEIC; t++)
			;
	if (t == N_TYPES)
		return iverr_set(e, IV_EREJECT, strncmp(m, "image/", 6)
				 ? "not an image: its content is %s"
				 : "%s is not a type imgvault stores", m);
	if (!(limits->types & types[t].type))
		return iverr_set(e, IV_EREJECT, "%s images are not allowed in this store",
				 types[t].name);
	if (has_zip_tail(buf, len))
		return iverr_set(e, IV_EREJECT, "the %s has a ZIP archive appended (a polyglot); "
				 "refused: store the image and the archive separately",
				 types[t].name);
	/* libvips must see the same format as libmagic: a file that two parsers
	 * read differently is a polyglot, and refused. */
	loader = vips_foreign_find_load_buffer(buf, len);
	if (!loader || strncmp(loader, types[t].loader_class, strlen(types[t].loader_class))) {
		vips_error_clear();
		return iverr_set(e, IV_EREJECT, "the file looks like %s to libmagic but not to "
				 "libvips (%s): refused as malformed or a polyglot",
				 types[t].name, loader ? loader : "no loader");
	}
	/* Header only: no pixel is decoded here. */
	im = vips_image_new_from_buffer(buf, len, "", "access", VIPS_ACCESS_SEQUENTIAL, NULL);
	if (!im)
		return iverr_set(e, IV_EREJECT, "unreadable %s header: %s", types[t].name,
				 vips_reason(reason, sizeof(reason)));
	out->mime = types[t].mime;
	out->type = types[t].type;
	out->width = (uint32_t)vips_image_get_width(im);
	out->frames = (uint32_t)vips_image_get_n_pages(im);
	out->height = (uint32_t)vips_image_get_page_height(im);
	if (out->frames < 1)
		out->frames = 1;
	if (!out->width || !out->height)
		ret = iverr_set(e, IV_EREJECT, "the image has no pixels");
	else if ((uint64_t)out->width * out->height > limits->max_pixels)
		ret = iverr_set(e, IV_EREJECT, "the image is %u×%u pixels, over the limit of "
				"%llu pixels", out->width, out->height,
				(unsigned long long)limits->max_pixels);
	else if (out->frames > limits->max_frames)
		ret = iverr_set(e, IV_EREJECT, "the image has %u frames, over the limit of %u",
				out->frames, limits->max_frames);
	else if ((uint64_t)out->width * out->height * out->frames > limits->max_total_pixels)
		ret = iverr_set(e, IV_EREJECT, "the image has %u frames of %u×%u pixels, %llu "
				"pixels in all, over the limit of %llu (image.max-total-pixels)",
				out->frames, out->width, out->height,
				(unsigned long long)out->width * out->height * out->frames,
				(unsigned long long)limits->max_total_pixels);
	g_object_unref(im);
	return ret;
}

int image_decode_cost(const void *buf, size_t len, enum image_type type, uint32_t thumb_size,
		      uint64_t *bytes, struct iverr *e)
{
	VipsImage *im;
	char reason[256];
	uint64_t w, h, bands, sample, longest;
	unsigned shrink = 1;

	*bytes = 0;
	im = vips_image_new_from_buffer(buf, len, "", "access", VIPS_ACCESS_SEQUENTIAL, NULL);
	if (!im)
		return iverr_set(e, IV_EDAMAGE, "the image cannot be decoded: %s",
				 vips_reason(reason, sizeof(reason)));
	w = (uint64_t)vips_image_get_width(im);
	h = (uint64_t)vips_image_get_page_height(im);
	bands = (uint64_t)vips_image_get_bands(im);
	sample = vips_format_sizeof(vips_image_get_format(im));
	switch (type) {
	case IMAGE_JPEG:
		longest = w > h ? w : h;
		while (shrink < 8 && longest / (shrink * 2) >= (thumb_size ? thumb_size : 1))
			shrink *= 2;
		*bytes = ((w + shrink - 1) / shrink) * ((h + shrink - 1) / shrink) * bands;
		break;
	case IMAGE_PNG:
		if (vips_image_get_typeof(im, "interlaced"))
			*bytes = w * h * bands * sample;
		else
			*bytes = w * (h < 256 ? h : 256) * bands * sample;
		break;
	default:
		*bytes = w * h * 4 * (sample > 1 ? sample : 1);
	}
	g_object_unref(im);
	return 0;
}

/* Replaces a g_malloc'd WebP with its stripped copy (strip.h). */
static int strip_in_place(void **buf, size_t *len, struct iverr *e)
{
	uint8_t *clean = NULL;
	size_t clean_len = 0;
	int ret = strip_metadata(*buf, *len, "image/webp", &clean, &clean_len, e);

	if (ret < 0)
		return ret;
	g_free(*buf);
	*buf = g_malloc(clean_len ? clean_len : 1);
	memcpy(*buf, clean, clean_len);
	*len = clean_len;
	free(clean);
	return 0;
}

int image_thumbnail(const void *buf, size_t len, enum image_type type, uint32_t size,
		    void **out, size_t *out_len, enum image_type *out_type, struct iverr *e)
{
	VipsImage *lazy = NULL, *thumb = NULL, *all = NULL;
	char reason[256];
	double avg;
	int rc, ret;

	*out = NULL;
	*out_len = 0;
	/* fail_on=truncated: a damaged file is an error, not a grey half.  (The
	 * buffer variant honours it only as a loader option.)  libvips is lazy:
	 * the decode happens in copy_memory, so a failure there is damage and a
	 * failure to save is ours. */
	if (vips_thumbnail_buffer((void *)buf, len, &lazy, (int)size, "height", (int)size,
				  "size", VIPS_SIZE_DOWN, "option_string", "fail_on=truncated",
				  NULL) != 0 ||
	    !(thumb = vips_image_copy_memory(lazy))) {
		if (lazy)
			g_object_unref(lazy);
		return iverr_set(e, IV_EDAMAGE, "the image cannot be decoded: %s",
				 vips_reason(reason, sizeof(reason)));
	}
	g_object_unref(lazy);
	/* libnsgif decodes a frame cut short as a partial one, without an
	 * error: a GIF that does not end with its trailer byte is truncated. */
	if (type == IMAGE_GIF && (len == 0 || ((const uint8_t *)buf)[len - 1] != 0x3b)) {
		g_object_unref(thumb);
		return iverr_set(e, IV_EDAMAGE, "the image cannot be decoded: the GIF is "
				 "truncated (it has no trailer)");
	}
	if (type == IMAGE_GIF || type == IMAGE_WEBP) {
		/* The thumbnail decoded the first frame: decode the others too. */
		all = vips_image_new_from_buffer(buf, len, "n=-1,fail_on=truncated", "access",
						 VIPS_ACCESS_SEQUENTIAL, NULL);
		if (!all || vips_avg(all, &avg, NULL) != 0) {
			if (all)
				g_object_unref(all);
			g_object_unref(thumb);
			return iverr_set(e, IV_EDAMAGE, "the image cannot be decoded: %s",
					 vips_reason(reason, sizeof(reason)));
		}
		g_object_unref(all);
	}
	switch (type) {
	case IMAGE_PNG:
		rc = vips_pngsave_buffer(thumb, out, out_len, "strip", TRUE, "compression", 6, NULL);
		*out_type = IMAGE_PNG;
		break;
	case IMAGE_GIF:
		rc = vips_gifsave_buffer(thumb, out, out_len, "strip", TRUE, NULL);
		*out_type = IMAGE_GIF;
		break;
	case IMAGE_WEBP:
		rc = vips_webpsave_buffer(thumb, out, out_len, "strip", TRUE, "Q", 80, NULL);
		*out_type = IMAGE_WEBP;
		/* libvips 8.14 ignores strip for WebP: strip it ourselves. */
		if (rc == 0 && (ret = strip_in_place(out, out_len, e)) < 0) {
			g_object_unref(thumb);
			return ret;
		}
		break;
	default:   /* JPEG, and HEIC/AVIF become JPEG */
		if (vips_image_hasalpha(thumb)) {
			VipsImage *flat;
			if (vips_flatten(thumb, &flat, NULL) == 0) {
				g_object_unref(thumb);
				thumb = flat;
			}
		}
		rc = vips_jpegsave_buffer(thumb, out, out_len, "strip", TRUE, "Q", 82,
					  "optimize_coding", TRUE, NULL);
		*out_type = IMAGE_JPEG;
	}
	g_object_unref(thumb);
	if (rc != 0)
		return iverr_set(e, EIO, "cannot encode the thumbnail: %s",
				 vips_reason(reason, sizeof(reason)));
	return 0;
}

void image_buffer_free(void *buf)
{
	g_free(buf);
}

int image_reencode(const void *buf, size_t len, enum image_type type, void **out,
		   size_t *out_len, enum image_type *out_type, struct iverr *e)
{
	VipsImage *in, *rot = NULL;
	char reason[256];
	int rc;

	*out = NULL;
	*out_len = 0;
	in = vips_image_new_from_buffer(buf, len, type == IMAGE_GIF ? "n=-1,fail_on=truncated"
					: "fail_on=truncated", "access", VIPS_ACCESS_SEQUENTIAL,
					NULL);
	if (!in)
		return iverr_set(e, IV_EDAMAGE, "the image cannot be decoded: %s",
				 vips_reason(reason, sizeof(reason)));
	if (type == IMAGE_GIF) {
		rc = vips_gifsave_buffer(in, out, out_len, "strip", TRUE, NULL);
		*out_type = IMAGE_GIF;
	} else {
		if (vips_autorot(in, &rot, NULL) != 0) {
			g_object_unref(in);
			return iverr_set(e, IV_EDAMAGE, "the image cannot be decoded: %s",
					 vips_reason(reason, sizeof(reason)));
		}
		rc = vips_jpegsave_buffer(rot, out, out_len, "strip", TRUE, "Q", 90, NULL);
		*out_type = IMAGE_JPEG;
		g_object_unref(rot);
	}
	g_object_unref(in);
	if (rc != 0)
		return iverr_set(e, EIO, "cannot encode the image: %s",
				 vips_reason(reason, sizeof(reason)));
	return 0;
}
