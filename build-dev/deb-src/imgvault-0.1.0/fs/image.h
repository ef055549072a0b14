/*
 * image — what an image is, decided by content, never by name (DESIGN §7),
 * and what is made from one: thumbnails.
 *
 * Admission (image_admit) is the fast check at commit: the size limit
 * first, then libmagic's type against the allow-list, then libvips reads
 * the header only — width, height and frames are checked against their
 * limits before any pixel is decoded, so a 50 KiB file that claims
 * 60000×60000 is refused without allocating anything large.  The full
 * decode happens later, in image_thumbnail, off the write path.
 *
 * libvips is set up once by image_global_init: loaders marked untrusted are
 * blocked (vips_block_untrusted_set), only the loaders of allowed formats
 * stay enabled, the operation cache is off and concurrency bounded, so
 * memory stays flat.  Decoding is always from memory: plaintext never
 * touches the disk.
 */
#ifndef IMGVAULT_IMAGE_H
#define IMGVAULT_IMAGE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "iverr.h"

/* The formats imgvault knows, as bits of an allow-list. */
enum image_type {
	IMAGE_JPEG = 1 << 0,
	IMAGE_PNG  = 1 << 1,
	IMAGE_GIF  = 1 << 2,
	IMAGE_WEBP = 1 << 3,
	IMAGE_HEIC = 1 << 4,
	IMAGE_AVIF = 1 << 5,
};
#define IMAGE_ALL_TYPES 0x3f

struct image_limits {
	uint64_t max_bytes;     /* default 50 MiB */
	uint64_t max_pixels;    /* width × height, default 100 megapixels */
	uint32_t max_frames;    /* default 500 */
	uint64_t max_total_pixels; /* width × height × frames, default 400 megapixels */
	uint64_t decode_memory; /* bytes concurrent decodes share, default 512 MiB */
	unsigned types;         /* allow-list, enum image_type bits */
	uint32_t thumb_size;    /* long edge of thumbnails, default 256 */
};

void image_limits_default(struct image_limits *l);
/* Parses "jpeg,png,gif" into type bits; -EINVAL names the unknown word. */
int image_types_parse(const char *list, unsigned *types, struct iverr *e);
/* Writes the names of @types ("jpeg,png") into @buf. */
const char *image_types_format(unsigned types, char *buf, size_t cap);

/* Sets libvips up as described above; safe to call more than once. */
int image_global_init(struct iverr *e);

struct image_sniffer;

/* Loads libmagic's database.  The caller owns *out (image_sniffer_free).
 * A sniffer is not thread-safe: one per thread. */
int image_sniffer_new(struct image_sniffer **out, struct iverr *e);
void image_sniffer_free(struct image_sniffer *s);

struct image_info {
	const char *mime;       /* static: "image/jpeg", … */
	enum image_type type;
	uint32_t width, height;
	uint32_t frames;
};

/*
 * Decides whether @buf is an image imgvault accepts under @limits, from
 * its header only.  A refusal returns -IV_EREJECT with the reason in @e:
 * empty, too large, not an image, a type not allowed, libmagic and libvips
 * disagreeing, a header libvips cannot read, too many pixels or frames.
 */
int image_admit(struct image_sniffer *s, const struct image_limits *limits,
		const void *buf, size_t len, struct image_info *out, struct iverr *e);

/* The MIME type of @type. */
const char *image_mime(enum image_type type);
/* The type of a MIME string, 0 if unknown. */
enum image_type image_type_of(const char *mime);

/*
 * The memory image_thumbnail of @buf (an admitted image of @type) will
 * take, from its header alone, for a decode-memory budget (membudget.h):
 *  - JPEG: the frame at the scale shrink-on-load decodes it (1/2…1/8 while
 *    the long edge stays at least @thumb_size), width × height × bands;
 *  - PNG: interlaced, the whole frame (width × height × bands × bytes per
 *    sample); otherwise decoded a strip at a time: 256 rows;
 *  - GIF, WebP, HEIC, AVIF: their decoders hold a whole canvas, width ×
 *    height × 4 (× bytes per sample); the frames of an animation are
 *    decoded one at a time into the same canvas, so frames do not add to it
 *    (image.max-total-pixels bounds the time they take).
 * -IV_EDAMAGE when the header cannot be read.
 */
int image_decode_cost(const void *buf, size_t len, enum image_type type, uint32_t thumb_size,
		      uint64_t *bytes, struct iverr *e);

/*
 * Makes a thumbnail of @buf (an admitted image of @type): long edge @size
 * pixels (never enlarged), EXIF orientation applied, no metadata at all,
 * the same format family (JPEG→JPEG, PNG→PNG with alpha, GIF→GIF of the
 * first frame, WebP→WebP, HEIC/AVIF→JPEG).  This is where the image is
 * decoded in full: a decode error returns -IV_EDAMAGE with the reason.
 * *out is g_malloc'd: release it with image_buffer_free.
 */
int image_thumbnail(const void *buf, size_t len, enum image_type type, uint32_t size,
		    void **out, size_t *out_len, enum image_type *out_type, struct iverr *e);
void image_buffer_free(void *buf);

/*
 * For formats without a lossless metadata stripper (GIF, HEIC, AVIF):
 * decodes @buf in full and encodes it again with no metadata at all, every
 * frame of a GIF kept, orientation applied to the pixels.  GIF stays GIF;
 * HEIC and AVIF become JPEG.  *out is released with image_buffer_free.
 */
int image_reencode(const void *buf, size_t len, enum image_type type, void **out,
		   size_t *out_len, enum image_type *out_type, struct iverr *e);

#endif
