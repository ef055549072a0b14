/*
 * Unit tests of fs/strip, the lossless metadata stripper.
 *
 *  - Synthetic files (libvips encodes the image, the test splices in
 *    hand-made metadata): the output must be exactly the expected bytes,
 *    decode to the same pixels, and keep the orientation.
 *  - Damaged files: every truncation, random byte flips, lengths that
 *    point past the end, empty files, and the inputs the fuzzer found
 *    (tests/fuzz/fuzz_strip.c): an error with a message or a valid
 *    output, never a crash (run under `make unit SANITIZE=1` too).
 *  - Real files made at run time by ImageMagick (/usr/bin/convert) and
 *    exiftool, with GPS, serial numbers, maker notes, XMP, IPTC, comments,
 *    PNG text/time chunks and every orientation: `exiftool -j` must find
 *    none of it in the output, the orientation and ICC profile must stay,
 *    and both libvips and ImageMagick must decode the same pixels.  Without
 *    the tools these tests are skipped, not passed.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <spawn.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/wait.h>
#include <unistd.h>

#include <vips/vips.h>

#include "strip.h"
#include "tap.h"
#include "testutil.h"

/* ImageMagick itself: /usr/local/bin/convert may be a stand-in. */
#define CONVERT  "/usr/bin/convert"
#define EXIFTOOL "/usr/bin/exiftool"

#define W 32
#define H 24

extern char **environ;

static char tmp_dir[256];
static bool have_convert, have_exiftool;

/* libvips and GLib keep caches and type tables for the whole process. */
const char *__lsan_default_suppressions(void);
const char *__lsan_default_suppressions(void)
{
	return "leak:libvips\nleak:libglib\nleak:libgobject\nleak:libgio\n"
	       "leak:libfontconfig\nleak:libexif\nleak:liborc\n";
}

/* ---- small helpers ----------------------------------------------------- */

static void skip(int n, const char *why)
{
	for (int i = 0; i < n; i++) {
		tap_state.run++;
		printf("ok %d # skip %s\n", tap_state.run, why);
	}
	fflush(stdout);
}

struct buf {
	uint8_t *p;
	size_t len, cap;
};

static void buf_add(struct buf *b, const void *p, size_t n)
{
	if (b->cap - b->len < n) {
		size_t cap = b->cap ? b->cap : 256;
		while (cap - b->len < n)
			cap *= 2;
		if (!(b->p = realloc(b->p, cap)))
			BAIL_OUT("out of memory");
		b->cap = cap;
	}
	if (n)
		memcpy(b->p + b->len, p, n);
	b->len += n;
}

static void buf_str(struct buf *b, const char *s)
{
	buf_add(b, s, strlen(s));
}

static void buf_u8(struct buf *b, uint8_t v)
{
	buf_add(b, &v, 1);
}

static void buf_be16(struct buf *b, uint16_t v)
{
	uint8_t p[2] = { (uint8_t)(v >> 8), (uint8_t)v };
	buf_add(b, p, 2);
}

static void buf_be32(struct buf *b, uint32_t v)
{
	uint8_t p[4] = { (uint8_t)(v >> 24), (uint8_t)(v >> 16), (uint8_t)(v >> 8), (uint8_t)v };
	buf_add(b, p, 4);
}

static void buf_le32(struct buf *b, uint32_t v)
{
	uint8_t p[4] = { (uint8_t)v, (uint8_t)(v >> 8), (uint8_t)(v >> 16), (uint8_t)(v >> 24) };
	buf_add(b, p, 4);
}

static void buf_free(struct buf *b)
{
	free(b->p);
	memset(b, 0, sizeof(*b));
}

static uint16_t be16(const uint8_t *p)
{
	return (uint16_t)(p[0] << 8 | p[1]);
}

static uint32_t be32(const uint8_t *p)
{
	return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

static uint32_t le32(const uint8_t *p)
{
	return (uint32_t)p[3] << 24 | (uint32_t)p[2] << 16 | (uint32_t)p[1] << 8 | p[0];
}

/* A string literal and its length, embedded NULs included. */
#define S(lit) lit, sizeof(lit) - 1

static bool contains(const uint8_t *p, size_t n, const char *needle)
{
	return memmem(p, n, needle, strlen(needle)) != NULL;
}

static void tmp_path(char *out, size_t cap, const char *name)
{
	snprintf(out, cap, "%s/%s", tmp_dir, name);
}

/* ---- running the tools ------------------------------------------------- */

/*
 * Runs @argv (no shell) with stdin from /dev/null, stdout into a pipe and,
 * if @quiet, stderr to /dev/null;
 * returns the exit status (-1: could not run) and, if @out is not NULL,
 * what it printed, NUL-terminated (caller frees).
 */
static int run_capture(const char *const argv[], struct buf *out, bool quiet)
{
	posix_spawn_file_actions_t fa;
	int pfd[2], status, ret = -1;
	uint8_t chunk[65536];
	ssize_t n;
	pid_t pid;

	if (pipe2(pfd, O_CLOEXEC) < 0)
		return -1;
	posix_spawn_file_actions_init(&fa);
	posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0);
	posix_spawn_file_actions_adddup2(&fa, pfd[1], 1);
	if (quiet)
		posix_spawn_file_actions_addopen(&fa, 2, "/dev/null", O_WRONLY, 0);
	if (posix_spawn(&pid, argv[0], &fa, NULL, (char *const *)argv, environ) != 0) {
		posix_spawn_file_actions_destroy(&fa);
		close(pfd[0]);
		close(pfd[1]);
		return -1;
	}
	posix_spawn_file_actions_destroy(&fa);
	close(pfd[1]);
	while ((n = read(pfd[0], chunk, sizeof(chunk))) > 0 || (n < 0 && errno == EINTR))
		if (n > 0 && out)
			buf_add(out, chunk, (size_t)n);
	close(pfd[0]);
	if (out)
		buf_add(out, "", 1), out->len--;
	while (waitpid(pid, &status, 0) < 0)
		if (errno != EINTR)
			return -1;
	if (WIFEXITED(status))
		ret = WEXITSTATUS(status);
	return ret;
}

static int run(const char *const argv[])
{
	return run_capture(argv, NULL, false);
}

/* exiftool -j on @path: every tag, group-qualified, numbers as numbers. */
static int exif_json(const char *path, struct buf *json)
{
	const char *argv[] = { EXIFTOOL, "-j", "-a", "-u", "-G1", "-n", path, NULL };

	return run_capture(argv, json, false) == 0 && json->len ? 0 : -1;
}

/* The raw JSON value of key @key ("Group:Tag") in @json, in @out; 0 or -1. */
static int json_get(const char *json, const char *key, char *out, size_t cap)
{
	char pat[128];
	const char *p, *end;

	snprintf(pat, sizeof(pat), "\"%s\": ", key);
	if (!(p = strstr(json, pat)))
		return -1;
	p += strlen(pat);
	end = strchr(p, '\n');
	if (!end)
		end = p + strlen(p);
	if (end > p && end[-1] == ',')
		end--;
	snprintf(out, cap, "%.*s", (int)(end - p), p);
	return 0;
}

/* Whether a group-qualified exiftool key is metadata the stripper must drop. */
static bool key_forbidden(const char *key)
{
	static const char *const anywhere[] = {
		"GPS", "SerialNumber", "MakerNote", "Comment", "XMP", "IPTC",
		"Photoshop", "Canon", "Location", "City", "OwnerName",
	};
	static const char *const prefix[] = {
		"IFD1:", "ExifIFD:", "InteropIFD:", "MakerNotes:",
	};
	/* PNG tags that describe the image, not where or with what it was made:
	 * anything else in the PNG group came from a text or time chunk. */
	static const char *const png_ok[] = {
		"ImageWidth", "ImageHeight", "BitDepth", "ColorType", "Compression",
		"Filter", "Interlace", "Gamma", "WhitePointX", "WhitePointY", "RedX",
		"RedY", "GreenX", "GreenY", "BlueX", "BlueY", "BackgroundColor",
		"SRGBRendering", "PixelsPerUnitX", "PixelsPerUnitY", "PixelUnits",
		"ProfileName", "AnimationFrames", "AnimationPlays", "Palette",
		"Transparency", "SignificantBits",
	};

	for (size_t i = 0; i < sizeof(anywhere) / sizeof(anywhere[0]); i++)
		if (strstr(key, anywhere[i]))
			return true;
	for (size_t i = 0; i < sizeof(prefix) / sizeof(prefix[0]); i++)
		if (!strncmp(key, prefix[i], strlen(prefix[i])))
			return true;
	if (!strncmp(key, "PNG:", 4)) {
		for (size_t i = 0; i < sizeof(png_ok) / sizeof(png_ok[0]); i++)
			if (!strcmp(key + 4, png_ok[i]))
				return false;
		return true;
	}
	/* Of EXIF's IFD0, only the orientation may stay. */
	return !strncmp(key, "IFD0:", 5) && strcmp(key, "IFD0:Orientation");
}

/* The forbidden keys in @json, comma-separated, in @out; their count. */
static int forbidden_keys(const char *json, char *out, size_t cap)
{
	const char *line = json;
	int n = 0;

	out[0] = '\0';
	while (line && *line) {
		const char *q1 = strchr(line, '"'), *nl = strchr(line, '\n');
		const char *q2 = q1 ? strchr(q1 + 1, '"') : NULL;

		if (q1 && q2 && (!nl || q1 < nl)) {
			char key[256];

			snprintf(key, sizeof(key), "%.*s", (int)(q2 - q1 - 1), q1 + 1);
			if (key_forbidden(key)) {
				size_t l = strlen(out);
				snprintf(out + l, cap - l, "%s%s", n ? ", " : "", key);
				n++;
			}
		}
		line = nl ? nl + 1 : NULL;
	}
	return n;
}

/* ---- decoding ------------------------------------------------------------ */

/* Decodes with libvips, strictly (warnings fail); every frame of a WebP. */
static int vips_pixels(const uint8_t *p, size_t n, const char *mime, struct buf *pix,
		       int *w, int *h)
{
	VipsImage *img = NULL;
	void *mem;
	size_t len;

	if (!strcmp(mime, "image/webp"))
		img = vips_image_new_from_buffer(p, n, "", "fail_on", VIPS_FAIL_ON_WARNING,
						 "n", -1, NULL);
	else
		img = vips_image_new_from_buffer(p, n, "", "fail_on", VIPS_FAIL_ON_WARNING,
						 NULL);
	if (!img) {
		diag("libvips cannot decode: %s", vips_error_buffer());
		vips_error_clear();
		return -1;
	}
	*w = vips_image_get_width(img);
	*h = vips_image_get_height(img);
	mem = vips_image_write_to_memory(img, &len);
	g_object_unref(img);
	if (!mem) {
		diag("libvips cannot decode: %s", vips_error_buffer());
		vips_error_clear();
		return -1;
	}
	buf_add(pix, mem, len);
	g_free(mem);
	return 0;
}

static bool same_pixels_vips(const uint8_t *a, size_t an, const uint8_t *b, size_t bn,
			     const char *mime)
{
	struct buf pa = { 0 }, pb = { 0 };
	int wa, ha, wb, hb;
	bool same = false;

	if (!vips_pixels(a, an, mime, &pa, &wa, &ha) && !vips_pixels(b, bn, mime, &pb, &wb, &hb))
		same = wa == wb && ha == hb && pa.len == pb.len && pa.len &&
		       !memcmp(pa.p, pb.p, pa.len);
	buf_free(&pa);
	buf_free(&pb);
	return same;
}

/* The ICC profile libvips sees, in @icc (empty if none). */
static void vips_icc(const uint8_t *p, size_t n, struct buf *icc)
{
	VipsImage *img = vips_image_new_from_buffer(p, n, "", NULL);
	const void *data;
	size_t len;

	if (!img) {
		vips_error_clear();
		return;
	}
	if (vips_image_get_typeof(img, VIPS_META_ICC_NAME) &&
	    !vips_image_get_blob(img, VIPS_META_ICC_NAME, &data, &len))
		buf_add(icc, data, len);
	g_object_unref(img);
}

/* `convert FILE rgba:-` of two files: the same pixels? */
static bool same_pixels_magick(const char *a, const char *b)
{
	const char *av[] = { CONVERT, a, "-depth", "16", "rgba:-", NULL };
	const char *bv[] = { CONVERT, b, "-depth", "16", "rgba:-", NULL };
	struct buf pa = { 0 }, pb = { 0 };
	bool same;

	/* Quiet: ImageMagick 6 calls exiftool's XMP in WebP "corrupt". */
	same = run_capture(av, &pa, true) == 0 && run_capture(bv, &pb, true) == 0 && pa.len &&
	       pa.len == pb.len && !memcmp(pa.p, pb.p, pa.len);
	buf_free(&pa);
	buf_free(&pb);
	return same;
}

/* ---- encoding the synthetic images --------------------------------------- */

/*
 * A W x H RGB gradient (@frames of them, as one animation) encoded by
 * libvips with @suffix, options included: ".jpg[strip,Q=90]".
 */
static void vips_encode(const char *suffix, int frames, struct buf *out)
{
	VipsImage *xyz = NULL, *scaled = NULL, *rgb = NULL, *u8 = NULL, *img = NULL;
	double scale[3] = { 7, 10, 1 }, offset[3] = { 0, 0, 0 };
	void *mem = NULL;
	size_t len;

	if (vips_xyz(&xyz, W, H * frames, NULL) ||
	    vips_bandjoin_const1(xyz, &rgb, 128, NULL) ||
	    vips_linear(rgb, &scaled, scale, offset, 3, NULL) ||
	    vips_cast_uchar(scaled, &u8, NULL) ||
	    vips_copy(u8, &img, NULL))
		BAIL_OUT("libvips cannot make a test image: %s", vips_error_buffer());
	if (frames > 1)
		vips_image_set_int(img, "page-height", H);
	if (vips_image_write_to_buffer(img, suffix, &mem, &len, NULL))
		BAIL_OUT("libvips cannot encode %s: %s", suffix, vips_error_buffer());
	buf_add(out, mem, len);
	g_free(mem);
	g_object_unref(img);
	g_object_unref(u8);
	g_object_unref(scaled);
	g_object_unref(rgb);
	g_object_unref(xyz);
}

static void tiff16(struct buf *b, bool big, uint16_t v)
{
	uint8_t p[2] = { (uint8_t)(big ? v >> 8 : v), (uint8_t)(big ? v : v >> 8) };
	buf_add(b, p, 2);
}

static void tiff32(struct buf *b, bool big, uint32_t v)
{
	(big ? buf_be32 : buf_le32)(b, v);
}

/*
 * An EXIF TIFF structure full of what must go (make, serial number, maker
 * note, GPS position) and, unless @orientation is 0, an Orientation tag of
 * type @otype (3, SHORT, as the standard says).
 */
static void exif_tiff(struct buf *b, bool big, int orientation, uint16_t otype)
{
	unsigned n0 = orientation ? 4 : 3;
	uint32_t make = 8 + 2 + 12 * n0 + 4, exif = make + 12, sn = exif + 2 + 24 + 4;
	uint32_t mn = sn + 10, gps = mn + 16, rat = gps + 2 + 24 + 4;
	struct ent { uint16_t tag, type; uint32_t count, value; } ents[4];
	unsigned k = 0;

	buf_add(b, big ? "MM\0\x2a" : "II\x2a\0", 4);
	tiff32(b, big, 8);
	ents[k++] = (struct ent){ 0x010f, 2, 12, make };
	if (orientation)
		ents[k++] = (struct ent){ 0x0112, otype, 1, (uint32_t)orientation };
	ents[k++] = (struct ent){ 0x8769, 4, 1, exif };
	ents[k++] = (struct ent){ 0x8825, 4, 1, gps };
	tiff16(b, big, (uint16_t)k);
	for (unsigned i = 0; i < k; i++) {
		tiff16(b, big, ents[i].tag);
		tiff16(b, big, ents[i].type);
		tiff32(b, big, ents[i].count);
		if (ents[i].type == 3) {
			tiff16(b, big, (uint16_t)ents[i].value);
			tiff16(b, big, 0);
		} else {
			tiff32(b, big, ents[i].value);
		}
	}
	tiff32(b, big, 0);
	buf_add(b, "CANARY-Make", 12);
	tiff16(b, big, 2);                                        /* Exif IFD */
	tiff16(b, big, 0xa431); tiff16(b, big, 2);                /* BodySerialNumber */
	tiff32(b, big, 10); tiff32(b, big, sn);
	tiff16(b, big, 0x927c); tiff16(b, big, 7);                /* MakerNote */
	tiff32(b, big, 16); tiff32(b, big, mn);
	tiff32(b, big, 0);
	buf_add(b, "CANARY-SN", 10);
	buf_add(b, "CANARY-MAKERNOTE", 16);
	tiff16(b, big, 2);                                        /* GPS IFD */
	tiff16(b, big, 0x0001); tiff16(b, big, 2);                /* GPSLatitudeRef */
	tiff32(b, big, 2); buf_add(b, "N\0\0\0", 4);
	tiff16(b, big, 0x0002); tiff16(b, big, 5);                /* GPSLatitude */
	tiff32(b, big, 3); tiff32(b, big, rat);
	tiff32(b, big, 0);
	for (int i = 0; i < 6; i++)                               /* 51° 30' 0" */
		tiff32(b, big, (const uint32_t[]){ 51, 1, 30, 1, 0, 1 }[i]);
}

/* What strip.c must write for orientation @o: written out independently. */
static void exif_minimal(struct buf *b, bool big, int o)
{
	static const uint8_t be[26] = { 'M', 'M', 0, 0x2a, 0, 0, 0, 8, 0, 1, 0x01, 0x12,
					0, 3, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0 };
	static const uint8_t le[26] = { 'I', 'I', 0x2a, 0, 8, 0, 0, 0, 1, 0, 0x12, 0x01,
					3, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0 };
	uint8_t t[26];

	memcpy(t, big ? be : le, 26);
	t[big ? 19 : 18] = (uint8_t)o;
	buf_add(b, t, 26);
}

static void jpeg_seg(struct buf *b, uint8_t marker, const void *sig, size_t siglen,
		     const void *data, size_t n)
{
	buf_u8(b, 0xff);
	buf_u8(b, marker);
	buf_be16(b, (uint16_t)(2 + siglen + n));
	buf_add(b, sig, siglen);
	buf_add(b, data, n);
}

/* CRC-32 for PNG chunks, table-driven: independent of strip.c's. */
static uint32_t png_crc(const uint8_t *p, size_t n)
{
	static uint32_t table[256];
	uint32_t c = 0xffffffffu;

	if (!table[1])
		for (uint32_t i = 0; i < 256; i++) {
			uint32_t v = i;
			for (int k = 0; k < 8; k++)
				v = v & 1 ? 0xedb88320u ^ (v >> 1) : v >> 1;
			table[i] = v;
		}
	while (n--)
		c = table[(c ^ *p++) & 0xff] ^ (c >> 8);
	return c ^ 0xffffffffu;
}

/* A zlib stream of @data in one stored (uncompressed) deflate block. */
static void zlib_stored(struct buf *b, const char *data, size_t n)
{
	uint32_t a = 1, s2 = 0;

	for (size_t i = 0; i < n; i++) {
		a = (a + (uint8_t)data[i]) % 65521;
		s2 = (s2 + a) % 65521;
	}
	buf_add(b, "\x78\x01\x01", 3);
	buf_u8(b, (uint8_t)n);
	buf_u8(b, (uint8_t)(n >> 8));
	buf_u8(b, (uint8_t)~n);
	buf_u8(b, (uint8_t)(~n >> 8));
	buf_add(b, data, n);
	buf_be32(b, s2 << 16 | a);
}

static void png_chunk(struct buf *b, const char *type, const void *data, size_t n)
{
	size_t at = b->len + 4;

	buf_be32(b, (uint32_t)n);
	buf_add(b, type, 4);
	buf_add(b, data, n);
	buf_be32(b, png_crc(b->p + at, 4 + n));
}

/* Every chunk of a PNG (up to IEND) has the right CRC and IEND ends it. */
static bool png_crcs_ok(const uint8_t *p, size_t n)
{
	size_t pos = 8;

	while (n - pos >= 12) {
		uint32_t len = be32(p + pos);
		if (len > n - pos - 12 || png_crc(p + pos + 4, 4 + len) != be32(p + pos + 8 + len))
			return false;
		if (!memcmp(p + pos + 4, "IEND", 4))
			return pos + 12 + len == n;
		pos += 12 + len;
	}
	return false;
}

static void webp_chunk(struct buf *b, const char *fourcc, const void *data, size_t n)
{
	buf_add(b, fourcc, 4);
	buf_le32(b, (uint32_t)n);
	buf_add(b, data, n);
	if (n & 1)
		buf_u8(b, 0);
}

static void webp_vp8x(struct buf *b, uint8_t flags, int w, int h)
{
	uint8_t d[10] = { flags, 0, 0, 0,
			  (uint8_t)(w - 1), (uint8_t)((w - 1) >> 8), (uint8_t)((w - 1) >> 16),
			  (uint8_t)(h - 1), (uint8_t)((h - 1) >> 8), (uint8_t)((h - 1) >> 16) };
	webp_chunk(b, "VP8X", d, 10);
}

static void webp_finish(struct buf *b)
{
	uint8_t size[4] = { (uint8_t)(b->len - 8), (uint8_t)((b->len - 8) >> 8),
			    (uint8_t)((b->len - 8) >> 16), (uint8_t)((b->len - 8) >> 24) };
	memcpy(b->p + 4, size, 4);
}

/*
 * The chunks of a well-formed WebP other than @drop (libvips 8.14 writes
 * an EXIF chunk even when told to strip), with the VP8X EXIF flag cleared;
 * with @simple, only the first image chunk, in a simple-format file.
 */
static struct buf webp_rebuild(const struct buf *f, const char *drop, bool simple)
{
	struct buf out = { 0 };

	buf_add(&out, "RIFF\0\0\0\0WEBP", 12);
	for (size_t pos = 12; pos + 8 <= f->len; ) {
		size_t n = 8 + le32(f->p + pos + 4) + (le32(f->p + pos + 4) & 1);
		bool image = !memcmp(f->p + pos, "VP8 ", 4) || !memcmp(f->p + pos, "VP8L", 4);

		if (simple ? image : !drop || memcmp(f->p + pos, drop, 4) != 0)
			buf_add(&out, f->p + pos, n);
		if (simple && image)
			break;
		pos += n;
	}
	if (!memcmp(out.p + 12, "VP8X", 4))
		out.p[20] &= (uint8_t)~0x08;
	webp_finish(&out);
	return out;
}

/* ---- the properties every output must have -------------------------------- */

/*
 * Strips @p as @mime and checks strip.h's promises: a -EINVAL error with a
 * message and no output, or an output at most 64 bytes longer that keeps
 * the orientation and strips to itself.  Returns 0, or -1 with the broken
 * promise in @why; *refused tells which way it went.
 */
static int check_promises(const uint8_t *p, size_t n, const char *mime, bool *refused,
			  char *why, size_t cap)
{
	struct iverr e = { 0 };
	uint8_t *out = NULL, *again = NULL;
	size_t out_len = 77, again_len = 0;
	int ret, o = strip_orientation(p, n, mime), rc = -1;

	*refused = false;
	if (o < 1 || o > 8) {
		snprintf(why, cap, "orientation %d", o);
		return -1;
	}
	ret = strip_metadata(p, n, mime, &out, &out_len, &e);
	if (ret < 0) {
		*refused = true;
		if (ret != -EINVAL || out || out_len || e.code != EINVAL || !e.msg[0]) {
			snprintf(why, cap, "error %d (%s) with out %p, out_len %zu", ret,
				 e.msg, (void *)out, out_len);
			return -1;
		}
		return 0;
	}
	if (!out || out_len > n + 64) {
		snprintf(why, cap, "output of %zu bytes from %zu", out_len, n);
	} else if (strip_orientation(out, out_len, mime) != o) {
		snprintf(why, cap, "orientation %d became %d", o,
			 strip_orientation(out, out_len, mime));
	} else if (strip_metadata(out, out_len, mime, &again, &again_len, &e) < 0) {
		snprintf(why, cap, "the output is refused: %s", e.msg);
	} else if (again_len != out_len || memcmp(again, out, out_len)) {
		snprintf(why, cap, "stripping twice changed the output");
	} else {
		rc = 0;
	}
	free(again);
	free(out);
	return rc;
}

static const char *const mimes[] = { "image/jpeg", "image/png", "image/webp" };

/*
 * Every proper prefix of a well-formed file is refused, under every type,
 * except those that only cut into the @tail of bytes after the image's end
 * (a polyglot's ZIP), which must then be valid.
 */
static void test_truncations(const char *name, const struct buf *f, const char *mime,
			     size_t tail)
{
	char why[600] = "";
	size_t bad = SIZE_MAX;

	/* Every length up to 16 KiB; past that the ends and a stride between. */
	for (size_t n = 0; n < f->len && bad == SIZE_MAX;
	     n += f->len <= 16384 || n < 4096 || f->len - n <= 4096 ? 1 : 61) {
		/* An exact-size copy so that ASan sees any read past the end. */
		uint8_t *cut = malloc(n ? n : 1);

		memcpy(cut, f->p, n);
		for (size_t m = 0; m < 3 && bad == SIZE_MAX; m++) {
			bool refused;

			if (check_promises(cut, n, mimes[m], &refused, why, sizeof(why)) < 0 ||
			    (!refused && n < f->len - tail) ||
			    (refused && n >= f->len - tail && !strcmp(mimes[m], mime))) {
				if (!why[0])
					snprintf(why, sizeof(why), "%s as %s",
						 refused ? "refused" : "accepted", mimes[m]);
				bad = n;
			}
		}
		free(cut);
	}
	if (!ok(bad == SIZE_MAX, "%s: %s truncations are refused as any type", name,
		f->len <= 16384 ? "all" : "the first, last and every 61st"))
		diag("    at length %zu: %s", bad, why);
}

static uint64_t rng_state = 0x9e3779b97f4a7c15ull;

static uint64_t rng(void)
{
	rng_state ^= rng_state << 13;
	rng_state ^= rng_state >> 7;
	rng_state ^= rng_state << 17;
	return rng_state;
}

/* Random damage: byte flips, 0xff/0x00 runs, cuts; every result obeys. */
static void test_mutations(const char *name, const struct buf *f, const char *mime,
			   int rounds)
{
	int refused_n = 0, accepted_n = 0, broken = 0;
	char why[600];

	for (int r = 0; r < rounds && !broken; r++) {
		size_t n = f->len;
		uint8_t *m = malloc(n);
		int edits = 1 + (int)(rng() % 4);
		bool refused;

		memcpy(m, f->p, n);
		for (int k = 0; k < edits; k++) {
			size_t at = rng() % n;
			switch (rng() % 4) {
			case 0: m[at] ^= (uint8_t)(1u << (rng() % 8)); break;
			case 1: m[at] = (uint8_t)rng(); break;
			case 2: m[at] = 0xff; break;
			default: m[at] = 0x00; break;
			}
		}
		if (rng() % 8 == 0)
			n = rng() % n;
		if (check_promises(m, n, mime, &refused, why, sizeof(why)) < 0) {
			diag("    round %d: %s", r, why);
			broken++;
		}
		refused ? refused_n++ : accepted_n++;
		free(m);
	}
	ok(!broken, "%s: %d random corruptions: errors or valid output (%d refused, "
	   "%d accepted)", name, rounds, refused_n, accepted_n);
}

/* Strips a synthetic file and checks the exact expected output and pixels. */
static void expect_strip(const char *name, const struct buf *in, const struct buf *want,
			 const char *mime, int orientation)
{
	struct iverr e = { 0 };
	uint8_t *out = NULL;
	size_t out_len = 0;
	int ret = strip_metadata(in->p, in->len, mime, &out, &out_len, &e);

	if (!is_int(ret, 0, "%s: stripped", name))
		diag("    %s", e.msg);
	if (ret < 0) {
		skip(5, "nothing to check");
		return;
	}
	if (!is_int(out_len, want->len, "%s: output is %zu bytes", name, want->len) ||
	    want->len != out_len)
		skip(1, "lengths differ");
	else
		is_mem(out, want->p, out_len, "%s: output is exactly the expected bytes", name);
	ok(!contains(out, out_len, "CANARY"), "%s: no metadata left in the bytes", name);
	is_int(strip_orientation(in->p, in->len, mime) * 10 +
	       strip_orientation(out, out_len, mime), orientation * 11,
	       "%s: orientation %d in input and output", name, orientation);
	ok(same_pixels_vips(in->p, in->len, out, out_len, mime),
	   "%s: libvips decodes the same pixels", name);
	free(out);
}

static void expect_refused(const char *name, const struct buf *in, const char *mime,
			   const char *words)
{
	struct iverr e = { 0 };
	uint8_t *out = (uint8_t *)1;
	size_t out_len = 1;
	int ret = strip_metadata(in->p, in->len, mime, &out, &out_len, &e);

	is_int(ret, -EINVAL, "%s: refused with -EINVAL", name);
	if (!ok(!out && !out_len && strstr(e.msg, words), "%s: no output, message says '%s'",
		name, words))
		diag("    message: %s", e.msg);
	else
		note("%s: %s", name, e.msg);
	if (!ret)
		free(out);
}

/* ---- API edges ----------------------------------------------------------- */

static void test_api(void)
{
	static const uint8_t junk[16] = "not an image....";
	struct iverr e = { 0 };
	uint8_t *out = (uint8_t *)1;
	size_t out_len = 1;

	is_int(strip_metadata(junk, sizeof(junk), "image/gif", &out, &out_len, &e), -ENOTSUP,
	       "GIF: -ENOTSUP (the caller re-encodes)");
	ok(!out && !out_len && e.code == ENOTSUP && strstr(e.msg, "image/gif"),
	   "-ENOTSUP clears the output and names the type: %s", e.msg);
	iverr_clear(&e);
	is_int(strip_metadata(junk, sizeof(junk), NULL, &out, &out_len, &e), -ENOTSUP,
	       "no type: -ENOTSUP");
	is_int(strip_orientation(junk, sizeof(junk), "image/heic"), 1,
	       "strip_orientation of an unsupported type is 1");
	for (size_t m = 0; m < 3; m++) {
		iverr_clear(&e);
		out = (uint8_t *)1;
		is_int(strip_metadata(NULL, 0, mimes[m], &out, &out_len, &e), -EINVAL,
		       "%s: an empty file is refused", mimes[m]);
		ok(!out && !out_len && e.msg[0], "%s: empty: %s", mimes[m], e.msg);
		iverr_clear(&e);
		is_int(strip_metadata(junk, sizeof(junk), mimes[m], &out, &out_len, &e),
		       -EINVAL, "%s: junk is refused: %s", mimes[m], e.msg);
		is_int(strip_orientation(NULL, 0, mimes[m]), 1,
		       "%s: strip_orientation of nothing is 1", mimes[m]);
	}
}

/* ---- JPEG ------------------------------------------------------------------- */

/* The part of a libvips JPEG after SOI and any APP0: tables, scans, EOI. */
static struct buf jpeg_body(const struct buf *jpg)
{
	struct buf body = { 0 };
	size_t at = 2;

	if (jpg->len < 6 || be16(jpg->p) != 0xffd8)
		BAIL_OUT("libvips made no JPEG");
	if (jpg->p[2] == 0xff && jpg->p[3] == 0xe0)
		at += 2 + be16(jpg->p + 4);
	buf_add(&body, jpg->p + at, jpg->len - at);
	return body;
}

static const uint8_t jfif[14] = { 'J', 'F', 'I', 'F', 0, 1, 1, 0, 0, 1, 0, 1, 0, 0 };
static const uint8_t adobe[12] = { 'A', 'd', 'o', 'b', 'e', 0, 100, 0, 0, 0, 0, 1 };

/*
 * A JPEG carrying every kind of metadata around a libvips body, and the
 * expected stripped version (built from the parts that must stay).
 */
static void jpeg_synthetic(const struct buf *body, bool big, int orientation,
			   struct buf *in, struct buf *want)
{
	static const uint8_t soi[2] = { 0xff, 0xd8 };
	struct buf tiff = { 0 }, icc1 = { 0 }, icc2 = { 0 }, app = { 0 };

	exif_tiff(&tiff, big, orientation, 3);
	buf_add(in, soi, 2);
	buf_add(want, soi, 2);
	jpeg_seg(in, 0xe0, jfif, sizeof(jfif), NULL, 0);
	jpeg_seg(want, 0xe0, jfif, sizeof(jfif), NULL, 0);
	jpeg_seg(in, 0xe1, S("Exif\0\0"), tiff.p, tiff.len);
	if (orientation > 1) {
		struct buf min = { 0 };
		exif_minimal(&min, big, orientation);
		jpeg_seg(want, 0xe1, S("Exif\0\0"), min.p, min.len);
		buf_free(&min);
	}
	jpeg_seg(in, 0xe1, S("http://ns.adobe.com/xap/1.0/\0"),
		 S("<x:xmpmeta><exif:GPSLatitude>CANARY</exif:GPSLatitude></x:xmpmeta>"));
	jpeg_seg(in, 0xe1, S("http://ns.adobe.com/xmp/extension/\0"),
		 S("0123456789ABCDEF0123456789ABCDEF\0\0\0\x10\0\0\0\0CANARY-extended"));
	/* A second Exif block: dropped, its orientation ignored. */
	jpeg_seg(in, 0xe1, S("Exif\0\0"), tiff.p, tiff.len);
	/* A two-part ICC profile: both parts stay, in order. */
	buf_add(&icc1, "\x01\x02", 2);
	for (int i = 0; i < 300; i++)
		buf_str(&icc1, "icc1");
	buf_add(&icc2, "\x02\x02", 2);
	buf_str(&icc2, "the second part of the profile");
	jpeg_seg(in, 0xe2, S("ICC_PROFILE\0"), icc1.p, icc1.len);
	jpeg_seg(want, 0xe2, S("ICC_PROFILE\0"), icc1.p, icc1.len);
	jpeg_seg(in, 0xe2, S("MPF\0"), S("MM\0\x2a CANARY-MPF"));
	jpeg_seg(in, 0xe2, S("ICC_PROFILE\0"), icc2.p, icc2.len);
	jpeg_seg(want, 0xe2, S("ICC_PROFILE\0"), icc2.p, icc2.len);
	buf_add(&app, S("Photoshop 3.0\0" "8BIM\x04\x04\0\0\0\0\0\x10" "CANARY-IPTC-City"));
	jpeg_seg(in, 0xed, app.p, app.len, NULL, 0);
	jpeg_seg(in, 0xfe, S("CANARY comment"), NULL, 0);
	jpeg_seg(in, 0xee, adobe, sizeof(adobe), NULL, 0);
	jpeg_seg(want, 0xee, adobe, sizeof(adobe), NULL, 0);
	jpeg_seg(in, 0xe0, S("AVI1\0CANARY"), NULL, 0);       /* not JFIF: dropped */
	jpeg_seg(in, 0xeb, S("JP\0CANARY-JUMBF"), NULL, 0);   /* APP11 (C2PA) */
	jpeg_seg(in, 0xe5, S("CANARY-APP5"), NULL, 0);
	/* Fill bytes before a marker, a TEM and an RST before SOS: legal. */
	buf_add(in, S("\xff\xff\xff\xff\x01"));
	buf_add(want, S("\xff\x01"));
	buf_add(in, S("\xff\xd0"));
	buf_add(want, S("\xff\xd0"));
	buf_add(in, body->p, body->len);
	buf_add(want, body->p, body->len);
	/* A JPEG+ZIP polyglot: everything after EOI goes. */
	buf_add(in, S("PK\x03\x04" "CANARY-zip"));
	buf_free(&tiff);
	buf_free(&icc1);
	buf_free(&icc2);
	buf_free(&app);
}

/* Inserts @seg before the second SOS of a progressive JPEG. */
static void insert_between_scans(struct buf *jpg, const void *seg, size_t n)
{
	struct buf out = { 0 };
	int sos = 0;

	for (size_t i = 2; i + 1 < jpg->len; i++) {
		/* FF DA cannot occur inside entropy-coded data: a real SOS. */
		if (jpg->p[i] == 0xff && jpg->p[i + 1] == 0xda && ++sos == 2) {
			buf_add(&out, jpg->p, i);
			buf_add(&out, seg, n);
			buf_add(&out, jpg->p + i, jpg->len - i);
			buf_free(jpg);
			*jpg = out;
			return;
		}
	}
	BAIL_OUT("libvips made a progressive JPEG with one scan");
}

static void test_jpeg_synthetic(struct buf *samples)
{
	struct buf base = { 0 }, body;
	char name[128];

	vips_encode(".jpg[strip,Q=90]", 1, &base);
	body = jpeg_body(&base);
	for (int o = 1; o <= 8; o++) {
		bool big = o % 2;
		struct buf in = { 0 }, want = { 0 };

		snprintf(name, sizeof(name), "JPEG %s-endian EXIF, orientation %d",
			 big ? "big" : "little", o);
		jpeg_synthetic(&body, big, o, &in, &want);
		expect_strip(name, &in, &want, "image/jpeg", o);
		if (o == 6)
			samples[0] = in;
		else
			buf_free(&in);
		buf_free(&want);
	}

	/* EXIF without an orientation, and with one of the wrong type. */
	{
		struct buf in = { 0 }, want = { 0 }, tiff = { 0 };

		buf_add(&in, "\xff\xd8", 2);
		exif_tiff(&tiff, true, 0, 3);
		jpeg_seg(&in, 0xe1, S("Exif\0\0"), tiff.p, tiff.len);
		buf_add(&in, body.p, body.len);
		buf_add(&want, "\xff\xd8", 2);
		buf_add(&want, body.p, body.len);
		expect_strip("JPEG EXIF without orientation", &in, &want, "image/jpeg", 1);
		buf_free(&tiff);
		buf_free(&in);
		exif_tiff(&tiff, false, 6, 4);
		buf_add(&in, "\xff\xd8", 2);
		jpeg_seg(&in, 0xe1, S("Exif\0\0"), tiff.p, tiff.len);
		buf_add(&in, body.p, body.len);
		expect_strip("JPEG orientation as LONG (ignored)", &in, &want, "image/jpeg", 1);
		buf_free(&tiff);
		buf_free(&in);

		/* Damaged EXIF: IFD offset past the end, absurd entry count. */
		buf_add(&in, "\xff\xd8", 2);
		jpeg_seg(&in, 0xe1, S("Exif\0\0"), S("MM\0\x2a\x7f\xff\xff\xf0"));
		jpeg_seg(&in, 0xe1, S("Exif\0\0"), S("II\x2a\0\x08\0\0\0\xff\xff\x12\x01"));
		buf_add(&in, body.p, body.len);
		expect_strip("JPEG damaged EXIF (dropped, not an error)", &in, &want,
			     "image/jpeg", 1);
		buf_free(&in);
		/* The entry count claims 65535, but the one entry that fits counts. */
		buf_add(&in, "\xff\xd8", 2);
		jpeg_seg(&in, 0xe1, S("Exif\0\0"),
			 S("II\x2a\0\x08\0\0\0\xff\xff\x12\x01\x03\0\x01\0\0\0\x03\0\0\0"));
		buf_add(&in, body.p, body.len);
		want.len = 2;
		{
			struct buf min = { 0 };
			exif_minimal(&min, false, 3);
			jpeg_seg(&want, 0xe1, S("Exif\0\0"), min.p, min.len);
			buf_free(&min);
		}
		buf_add(&want, body.p, body.len);
		expect_strip("JPEG EXIF entry count past the end (capped)", &in, &want,
			     "image/jpeg", 3);
		buf_free(&in);
		buf_free(&want);
	}

	/* A clean file comes out unchanged; trailing data after EOI goes. */
	{
		struct buf in = { 0 };

		expect_strip("JPEG without metadata", &base, &base, "image/jpeg", 1);
		buf_add(&in, base.p, base.len);
		buf_add(&in, S("PK\x03\x04" "CANARY-zip-with-\xff\xd9-inside"));
		expect_strip("JPEG+ZIP polyglot", &in, &base, "image/jpeg", 1);
		buf_free(&in);
	}

	/* Progressive: a COM and an APP1 between scans go; scans stay verbatim. */
	{
		struct buf prog = { 0 }, in = { 0 }, seg = { 0 };

		vips_encode(".jpg[strip,interlace]", 1, &prog);
		buf_add(&in, prog.p, prog.len);
		jpeg_seg(&seg, 0xfe, S("CANARY between scans"), NULL, 0);
		jpeg_seg(&seg, 0xe1, S("http://ns.adobe.com/xap/1.0/\0"), S("CANARY-xmp"));
		buf_add(&seg, "\xff\xff", 2);
		insert_between_scans(&in, seg.p, seg.len);
		expect_strip("progressive JPEG with metadata between scans", &in, &prog,
			     "image/jpeg", 1);
		samples[1] = in;
		buf_free(&prog);
		buf_free(&seg);
	}

	/* Restart markers inside the entropy-coded data stay where they are. */
	{
		struct buf rst = { 0 };

		vips_encode(".jpg[strip,restart_interval=1]", 1, &rst);
		ok(contains(rst.p, rst.len, "\xff\xd1"), "libvips wrote restart markers");
		expect_strip("JPEG with restart markers", &rst, &rst, "image/jpeg", 1);
		buf_free(&rst);
	}

	/* Malformed structure. */
	{
		struct buf in = { 0 };

		buf_add(&in, base.p, base.len);
		for (size_t i = 2; i + 3 < in.len; i += 2 + be16(in.p + i + 2)) {
			if (in.p[i + 1] == 0xdb) {        /* DQT */
				in.p[i + 2] = 0xff;
				in.p[i + 3] = 0xf0;
				break;
			}
		}
		expect_refused("JPEG segment length past the end", &in, "image/jpeg", "claims");
		buf_free(&in);
		buf_add(&in, "\xff\xd8\xff\xe1\x00\x01", 6);
		buf_add(&in, body.p, body.len);
		expect_refused("JPEG segment length 1", &in, "image/jpeg", "impossible length");
		buf_free(&in);
		buf_add(&in, "\xff\xd8junk", 6);
		buf_add(&in, body.p, body.len);
		expect_refused("JPEG junk between segments", &in, "image/jpeg",
			       "expected a marker");
		buf_free(&in);
		buf_add(&in, base.p, base.len - 2);
		expect_refused("JPEG without EOI", &in, "image/jpeg", "end-of-image");
		buf_free(&in);
		buf_add(&in, "\xff\xd8\xff\xdb\x00\x04\x00\x00\xff\xd9", 10);
		expect_refused("JPEG with EOI before any scan", &in, "image/jpeg",
			       "before any image data");
		buf_free(&in);
		buf_add(&in, "\xff\xd8\xff\xd8", 4);
		buf_add(&in, body.p, body.len);
		expect_refused("JPEG with two SOI", &in, "image/jpeg", "second start-of-image");
		buf_free(&in);
	}
	samples[2] = base;
	buf_free(&body);
}

/* ---- PNG ---------------------------------------------------------------- */

static void test_png_synthetic(struct buf *samples)
{
	struct buf base = { 0 }, in = { 0 }, want = { 0 }, tiff = { 0 }, min = { 0 };
	uint8_t actl[8] = { 0, 0, 0, 1, 0, 0, 0, 0 }, fctl[26] = { 0 };
	static const uint8_t iend_crc[4] = { 0xae, 0x42, 0x60, 0x82 };
	size_t ihdr_end;

	ok(png_crc((const uint8_t *)"IEND", 4) == be32(iend_crc), "test CRC-32 is right");
	vips_encode(".png[strip]", 1, &base);
	if (memcmp(base.p + 12, "IHDR", 4))
		BAIL_OUT("libvips made a PNG without IHDR first");
	ihdr_end = 8 + 12 + be32(base.p + 8);

	/* An APNG whose one frame is the default image: acTL/fcTL must stay. */
	fctl[11] = W;
	fctl[15] = H;
	fctl[23] = 1;
	for (int i = 0; i < 3; i++) {
		static const int orients[3] = { 1, 3, 8 };
		int o = orients[i];
		char name[64];

		buf_add(&in, base.p, ihdr_end);
		buf_add(&want, base.p, ihdr_end);
		exif_tiff(&tiff, o != 3, o, 3);
		png_chunk(&in, "tEXt", S("Comment\0CANARY-text"));
		png_chunk(&in, "tIME", S("\x07\xe4\x01\x02\x03\x04\x05"));
		png_chunk(&in, "eXIf", tiff.p, tiff.len);
		if (o > 1) {
			exif_minimal(&min, o != 3, o);
			png_chunk(&want, "eXIf", min.p, min.len);
			buf_free(&min);
		}
		png_chunk(&in, "iTXt", S("XML:com.adobe.xmp\0\0\0\0\0<x>CANARY-itxt</x>"));
		{
			struct buf z = { 0 };
			buf_add(&z, S("Author\0\0"));
			zlib_stored(&z, S("CANARY in a zTXt chunk"));
			png_chunk(&in, "zTXt", z.p, z.len);
			buf_free(&z);
		}
		png_chunk(&in, "sRGB", "\0", 1);
		png_chunk(&want, "sRGB", "\0", 1);
		png_chunk(&in, "acTL", actl, sizeof(actl));
		png_chunk(&want, "acTL", actl, sizeof(actl));
		png_chunk(&in, "fcTL", fctl, sizeof(fctl));
		png_chunk(&want, "fcTL", fctl, sizeof(fctl));
		png_chunk(&in, "prVt", S("private, kept"));
		png_chunk(&want, "prVt", S("private, kept"));
		png_chunk(&in, "exIf", tiff.p, tiff.len);           /* pre-standard */
		buf_add(&in, base.p + ihdr_end, base.len - ihdr_end);
		buf_add(&want, base.p + ihdr_end, base.len - ihdr_end);
		/* A PNG+ZIP polyglot: nothing after IEND is kept. */
		buf_add(&in, S("PK\x03\x04" "CANARY-zip"));
		snprintf(name, sizeof(name), "PNG with text, time, EXIF (orientation %d)", o);
		expect_strip(name, &in, &want, "image/png", o);
		ok(png_crcs_ok(want.p, want.len), "PNG orientation %d: every CRC is right", o);
		if (o == 8) {
			samples[0] = in;
			memset(&in, 0, sizeof(in));
		}
		buf_free(&in);
		buf_free(&want);
		buf_free(&tiff);
	}
	expect_strip("PNG without metadata", &base, &base, "image/png", 1);

	/* The standard says no "Exif\0\0" in eXIf; some writers add it anyway. */
	buf_add(&in, base.p, ihdr_end);
	buf_add(&tiff, S("Exif\0\0"));
	exif_tiff(&tiff, true, 5, 3);
	png_chunk(&in, "eXIf", tiff.p, tiff.len);
	buf_add(&in, base.p + ihdr_end, base.len - ihdr_end);
	buf_add(&want, base.p, ihdr_end);
	exif_minimal(&min, true, 5);
	png_chunk(&want, "eXIf", min.p, min.len);
	buf_add(&want, base.p + ihdr_end, base.len - ihdr_end);
	expect_strip("PNG eXIf with an Exif\\0\\0 prefix", &in, &want, "image/png", 5);
	buf_free(&in);
	buf_free(&want);
	buf_free(&tiff);
	buf_free(&min);

	/* Malformed structure. */
	buf_add(&in, base.p, base.len);
	in.p[ihdr_end] = 0x7f;                    /* the chunk after IHDR */
	expect_refused("PNG chunk length past the end", &in, "image/png", "claims");
	in.p[ihdr_end] = 0xff;
	expect_refused("PNG chunk length over 2^31", &in, "image/png", "claims");
	buf_free(&in);
	buf_add(&in, base.p, base.len - 12);
	expect_refused("PNG without IEND", &in, "image/png", "without an IEND");
	buf_free(&in);
	buf_add(&in, base.p, 8);
	buf_add(&in, base.p + ihdr_end, base.len - ihdr_end);
	expect_refused("PNG without IHDR", &in, "image/png", "instead of IHDR");
	buf_free(&in);
	buf_add(&in, base.p, base.len);
	memcpy(in.p + ihdr_end + 4, "I\x01" "AT", 4);
	expect_refused("PNG with a bad chunk type", &in, "image/png", "invalid chunk type");
	buf_free(&in);
	samples[1] = base;
}

/* ---- WebP --------------------------------------------------------------- */

static void test_webp_synthetic(struct buf *samples)
{
	struct buf lossy, anim, vips_out = { 0 }, in = { 0 }, want = { 0 }, tiff = { 0 };
	struct buf min = { 0 };
	const uint8_t *vp8;
	size_t vp8_len;

	vips_encode(".webp[strip,Q=80]", 1, &vips_out);
	lossy = webp_rebuild(&vips_out, NULL, true);
	buf_free(&vips_out);
	if (memcmp(lossy.p + 12, "VP8 ", 4))
		BAIL_OUT("libvips made no lossy WebP");
	vp8 = lossy.p + 12;
	vp8_len = 8 + le32(lossy.p + 16) + (le32(lossy.p + 16) & 1);

	expect_strip("simple WebP (no VP8X): a copy", &lossy, &lossy, "image/webp", 1);
	for (int o = 1; o <= 8; o += 5) {                       /* 1, 6 */
		bool big = o == 6;
		char name[64];

		/* VP8X claims EXIF, XMP and ICC; EXIF and XMP go, ICC stays. */
		buf_add(&in, "RIFF\0\0\0\0WEBP", 12);
		buf_add(&want, "RIFF\0\0\0\0WEBP", 12);
		webp_vp8x(&in, 0x20 | 0x08 | 0x04, W, H);
		webp_vp8x(&want, 0x20 | (o > 1 ? 0x08 : 0), W, H);
		webp_chunk(&in, "ICCP", S("fake-icc"));
		webp_chunk(&want, "ICCP", S("fake-icc"));
		buf_add(&in, vp8, vp8_len);
		buf_add(&want, vp8, vp8_len);
		buf_add(&tiff, "Exif\0\0", big ? 6 : 0);   /* both forms are seen */
		exif_tiff(&tiff, big, o, 3);
		webp_chunk(&in, "EXIF", tiff.p, tiff.len);
		if (o > 1) {
			exif_minimal(&min, big, o);
			webp_chunk(&want, "EXIF", min.p, min.len);
			buf_free(&min);
		}
		webp_chunk(&in, "XMP ", S("<x:xmpmeta>CANARY</x:xmpmeta>"));   /* odd: padded */
		webp_chunk(&in, "EXIF", tiff.p, tiff.len);
		webp_chunk(&in, "unkn", S("odd"));
		webp_chunk(&want, "unkn", S("odd"));
		webp_finish(&in);
		webp_finish(&want);
		buf_add(&in, S("PK\x03\x04" "CANARY-zip"));
		snprintf(name, sizeof(name), "extended WebP with EXIF and XMP (orientation %d)",
			 o);
		/* libvips would refuse the fake ICC profile: compare without it. */
		{
			struct iverr e = { 0 };
			uint8_t *out = NULL;
			size_t out_len = 0;

			is_int(strip_metadata(in.p, in.len, "image/webp", &out, &out_len, &e), 0,
			       "%s: stripped %s", name, e.msg);
			ok(out && out_len == want.len && !memcmp(out, want.p, want.len),
			   "%s: output is exactly the expected bytes", name);
			ok(out && !contains(out, out_len, "CANARY"),
			   "%s: no metadata left in the bytes", name);
			is_int(strip_orientation(out, out_len, "image/webp"), o,
			       "%s: orientation kept", name);
			free(out);
		}
		if (o == 6) {
			samples[0] = in;
			memset(&in, 0, sizeof(in));
		}
		buf_free(&in);
		buf_free(&want);
		buf_free(&tiff);
	}

	/* A real extended file libvips decodes: animation, EXIF, XMP. */
	vips_encode(".webp[strip,Q=80]", 2, &vips_out);
	anim = webp_rebuild(&vips_out, "EXIF", false);
	buf_free(&vips_out);
	if (memcmp(anim.p + 12, "VP8X", 4) || !(anim.p[20] & 0x02))
		BAIL_OUT("libvips made no animated WebP");
	buf_add(&in, anim.p, anim.len);
	buf_add(&want, anim.p, anim.len);
	in.p[20] |= 0x08 | 0x04;
	exif_tiff(&tiff, false, 7, 3);
	webp_chunk(&in, "EXIF", tiff.p, tiff.len);
	webp_chunk(&in, "XMP ", S("<x:xmpmeta>CANARY</x:xmpmeta>"));
	webp_finish(&in);
	want.p[20] |= 0x08;
	exif_minimal(&min, false, 7);
	webp_chunk(&want, "EXIF", min.p, min.len);
	webp_finish(&want);
	expect_strip("animated WebP with EXIF and XMP", &in, &want, "image/webp", 7);
	samples[1] = in;
	memset(&in, 0, sizeof(in));
	buf_free(&want);
	buf_free(&tiff);
	buf_free(&min);

	/* Without VP8X an EXIF chunk means nothing: dropped, orientation 1. */
	buf_add(&in, lossy.p, lossy.len);
	exif_tiff(&tiff, true, 6, 3);
	webp_chunk(&in, "EXIF", tiff.p, tiff.len);
	webp_finish(&in);
	expect_strip("simple WebP with a stray EXIF chunk", &in, &lossy, "image/webp", 1);
	buf_free(&in);
	buf_free(&tiff);

	/* Malformed structure. */
	buf_add(&in, lossy.p, lossy.len);
	in.p[7] = 0x10;
	expect_refused("WebP RIFF size past the end", &in, "image/webp", "RIFF header claims");
	buf_free(&in);
	buf_add(&in, lossy.p, lossy.len);
	in.p[18] = 0x10;
	expect_refused("WebP chunk size past the end", &in, "image/webp", "claims");
	buf_free(&in);
	buf_add(&in, lossy.p, lossy.len);
	webp_chunk(&in, "XMP ", S("odd"));
	in.len--;
	webp_finish(&in);
	expect_refused("WebP without the padding byte", &in, "image/webp", "padding");
	buf_free(&in);
	buf_add(&in, "RIFF\0\0\0\0WEBP", 12);
	webp_chunk(&in, "XMP ", S("CANARY"));
	webp_finish(&in);
	expect_refused("WebP of metadata only", &in, "image/webp", "nothing but metadata");
	buf_free(&in);
	buf_add(&in, "RIFF\x04\0\0\0WEBP", 12);
	expect_refused("WebP without chunks", &in, "image/webp", "no chunks");
	buf_free(&in);
	buf_add(&in, "RIFF\0\0\0\0WEBP", 12);
	buf_add(&in, vp8, vp8_len);
	webp_vp8x(&in, 0, W, H);
	webp_finish(&in);
	expect_refused("WebP with VP8X after the image", &in, "image/webp",
		       "not the first chunk");
	buf_free(&in);
	samples[2] = lossy;
	buf_free(&anim);
}

/* ---- inputs the fuzzer found -------------------------------------------- */

static void test_fuzz_regressions(void)
{
	/* JPEG data with fill before a stuffed byte: ff ff 00 is a data 0xff,
	 * not fill before a marker 0x00 (found by fuzz_strip). */
	static const uint8_t stuffed_fill[] = {
		0xff, 0xd8, 0xff, 0xda, 0x00, 0x02, 0x12, 0xff, 0xff, 0x00, 0x34,
		0xff, 0xd1, 0x56, 0xff, 0xff, 0xff, 0x00, 0xff, 0xd9,
	};
	/* A WebP that holds nothing but XMP: stripping left a file without
	 * chunks that the stripper itself then refused (found by fuzz_strip). */
	static const uint8_t webp_xmp_only[] = {
		'R', 'I', 'F', 'F', 12, 0, 0, 0, 'W', 'E', 'B', 'P', 'X', 'M', 'P', ' ',
		0, 0, 0, 0,
	};
	struct iverr e = { 0 };
	uint8_t *out = NULL;
	size_t out_len = 0;
	char why[600];
	bool refused;

	is_int(strip_metadata(stuffed_fill, sizeof(stuffed_fill), "image/jpeg", &out,
			      &out_len, &e), 0, "fuzz: JPEG fill before a stuffed byte is accepted %s", e.msg);
	ok(out && out_len == sizeof(stuffed_fill) && !memcmp(out, stuffed_fill, out_len),
	   "fuzz: the entropy-coded data is kept verbatim");
	free(out);
	ok(!check_promises(stuffed_fill, sizeof(stuffed_fill), "image/jpeg", &refused, why,
			   sizeof(why)), "fuzz: JPEG fill before a stuffed byte keeps promises");
	ok(!check_promises(webp_xmp_only, sizeof(webp_xmp_only), "image/webp", &refused, why,
			   sizeof(why)) && refused, "fuzz: a WebP of XMP only is refused");
}

/* ---- real files from ImageMagick and exiftool --------------------------- */

#define TOOL_TESTS 8

/*
 * Checks one tool-made file: stripped, exiftool finds nothing it must not,
 * orientation @o kept, same pixels for libvips and ImageMagick, no canary.
 */
static void tool_check(const char *label, const char *path, const char *mime, int o,
		       bool icc, const char *const *want_keys)
{
	struct buf in = { 0 }, json_in = { 0 }, json_out = { 0 }, icc_in = { 0 }, icc_out = { 0 };
	char out_path[512], keys[4096], val[256];
	struct iverr e = { 0 };
	uint8_t *out = NULL;
	size_t out_len = 0;
	int got = 1;

	snprintf(out_path, sizeof(out_path), "%s.stripped", path);
	if (!(in.p = tu_read_file(path, &in.len)))
		BAIL_OUT("cannot read %s", path);
	if (exif_json(path, &json_in) < 0)
		BAIL_OUT("exiftool cannot read %s", path);
	keys[0] = '\0';
	for (size_t i = 0; want_keys[i]; i++) {
		char pat[128];
		snprintf(pat, sizeof(pat), "\"%s\":", want_keys[i]);
		if (!strstr((char *)json_in.p, pat))
			snprintf(keys + strlen(keys), sizeof(keys) - strlen(keys), " %s",
				 want_keys[i]);
	}
	if (!ok(!keys[0], "%s: the input carries the metadata (exiftool sees it)", label))
		diag("    missing:%s", keys);
	if (!is_int(strip_metadata(in.p, in.len, mime, &out, &out_len, &e), 0,
		    "%s: stripped", label)) {
		diag("    %s", e.msg);
		skip(TOOL_TESTS - 2, "not stripped");
		goto out_free;
	}
	if (tu_write_file(out_path, out, out_len, 0600) < 0 || exif_json(out_path, &json_out) < 0)
		BAIL_OUT("cannot check %s", out_path);
	if (!is_int(forbidden_keys((char *)json_out.p, keys, sizeof(keys)), 0,
		    "%s: exiftool finds no location or device metadata", label))
		diag("    found: %s", keys);
	if (!ok(!strstr((char *)json_out.p, "ExifTool:Warning"), "%s: exiftool has no "
		"warning about the output", label))
		diag("%s", (char *)json_out.p);
	if (!json_get((char *)json_out.p, "IFD0:Orientation", val, sizeof(val)))
		got = atoi(val);
	ok(got == o && strip_orientation(in.p, in.len, mime) == o &&
	   strip_orientation(out, out_len, mime) == o,
	   "%s: orientation %d kept (exiftool sees %d)", label, o, got);
	ok(same_pixels_vips(in.p, in.len, out, out_len, mime),
	   "%s: libvips decodes the same pixels", label);
	ok(same_pixels_magick(path, out_path), "%s: ImageMagick decodes the same pixels", label);
	ok(!contains(out, out_len, "CANARY"), "%s: no canary string left in the bytes", label);
	if (icc) {
		vips_icc(in.p, in.len, &icc_in);
		vips_icc(out, out_len, &icc_out);
		ok(icc_in.len > 0 && icc_in.len == icc_out.len &&
		   !memcmp(icc_in.p, icc_out.p, icc_in.len),
		   "%s: the ICC profile (%zu bytes) is kept byte for byte", label, icc_in.len);
		ok(!json_get((char *)json_out.p, "ICC-header:ColorSpaceData", val, sizeof(val)),
		   "%s: exiftool still sees the ICC profile (%s)", label, val);
	}
	if (!strcmp(mime, "image/webp") &&
	    !json_get((char *)json_out.p, "RIFF:WebP_Flags", val, sizeof(val)))
		note("%s: VP8X flags now %s", label, val);
out_free:
	free(out);
	free(in.p);
	buf_free(&json_in);
	buf_free(&json_out);
	buf_free(&icc_in);
	buf_free(&icc_out);
}

/* What the tools must have put in, as exiftool names it. */
static const char *const jpeg_keys[] = {
	"GPS:GPSLatitude", "GPS:GPSAltitude", "ExifIFD:SerialNumber",
	"ExifIFD:LensSerialNumber", "ExifIFD:OwnerName", "Canon:SerialNumber",
	"Canon:InternalSerialNumber", "IFD0:Make", "IPTC:City", "XMP-iptcCore:Location",
	"XMP-exif:GPSLatitude", "XMP-aux:SerialNumber", "File:Comment", NULL,
};
static const char *const png_keys[] = {
	"GPS:GPSLatitude", "ExifIFD:SerialNumber", "IFD0:Make", "PNG:Comment",
	"PNG:Title-de", "PNG:ModifyDate", "PNG:Author", "XMP-iptcCore:Location", NULL,
};
static const char *const webp_keys[] = {
	"GPS:GPSLatitude", "ExifIFD:SerialNumber", "IFD0:Make", "XMP-iptcCore:Location",
	"XMP-exif:GPSLatitude", NULL,
};

/* A raw Canon maker note IFD (exiftool cannot create one from nothing):
 * SerialNumber and a 4-byte InternalSerialNumber exiftool then rewrites. */
static void write_makernote(const char *path, bool big)
{
	struct buf b = { 0 };

	if (big) {
		buf_add(&b, "\x00\x02\x00\x0c\x00\x04\x00\x00\x00\x01\x12\x34\x56\x78"
			"\x00\x96\x00\x02\x00\x00\x00\x04SN2\0\0\0\0\0", 30);
	} else {
		buf_add(&b, "\x02\x00\x0c\x00\x04\x00\x01\x00\x00\x00\x78\x56\x34\x12"
			"\x96\x00\x02\x00\x04\x00\x00\x00SN2\0\0\0\0\0", 30);
	}
	if (tu_write_file(path, b.p, b.len, 0600) < 0)
		BAIL_OUT("cannot write %s", path);
	buf_free(&b);
}

/* exiftool -overwrite_original on @path with the NULL-terminated argument
 * lists that follow, up to END. */
#define END ((const char *const *)NULL)

static int exiftool_write(const char *path, ...)
{
	const char *argv[96];
	const char *const *args;
	va_list ap;
	int n = 0;

	argv[n++] = EXIFTOOL;
	argv[n++] = "-q";
	argv[n++] = "-q";
	argv[n++] = "-overwrite_original";
	va_start(ap, path);
	while ((args = va_arg(ap, const char *const *)))
		for (int i = 0; args[i] && n < 94; i++)
			argv[n++] = args[i];
	va_end(ap);
	argv[n++] = path;
	argv[n] = NULL;
	return run(argv);
}

static const char *const gps_device_args[] = {
	"-GPSLatitude=51.5", "-GPSLatitudeRef=N", "-GPSLongitude=0.12",
	"-GPSLongitudeRef=W", "-GPSAltitude=35", "-SerialNumber=CANARY-SN1",
	"-BodySerialNumber=CANARY-SN3", "-LensSerialNumber=CANARY-SN4",
	"-XMP-aux:SerialNumber=CANARY-SN5", "-XMP:GPSLatitude=51.5 N",
	"-XMP:GPSLongitude=0.12 W", "-XMP-iptcCore:Location=CANARY-Location",
	"-XMP-photoshop:City=CANARY-City", "-OwnerName=CANARY-Owner", NULL,
};

/* A JPEG with everything exiftool can put in, Canon maker note included. */
static int make_tool_jpeg(const char *path, int o, bool big, const char *icc)
{
	char mn[512], mn_arg[600], orient[32];
	const char *canon[] = { big ? "-ExifByteOrder=Big-endian" : "-ExifByteOrder=Little-endian",
				"-Make=Canon", "-Model=Canon EOS 50D", NULL };
	const char *notes[] = { mn_arg, NULL };
	const char *internal[] = { "-Canon:InternalSerialNumber=CANARY-SN2", NULL };
	const char *more[] = { "-IPTC:City=CANARY-IPTC", "-IPTC:Sub-location=CANARY-Sub",
			       "-Comment=CANARY-Comment", "-Exif:ImageDescription=CANARY-D",
			       orient, NULL };
	const char *conv[] = { CONVERT, "-seed", "5", "-size", "64x48", "plasma:fractal",
			       "-quality", "90", path, NULL };
	const char *conv_icc[] = { CONVERT, "-seed", "5", "-size", "64x48", "plasma:fractal",
				   "-profile", icc, "-quality", "90", path, NULL };

	snprintf(orient, sizeof(orient), "-Orientation#=%d", o);
	tmp_path(mn, sizeof(mn), big ? "makernote-be.bin" : "makernote-le.bin");
	snprintf(mn_arg, sizeof(mn_arg), "-MakerNotes<=%s", mn);
	write_makernote(mn, big);
	/* The maker note must exist before exiftool edits a tag in it. */
	if (run(icc ? conv_icc : conv) || exiftool_write(path, canon, notes, END) ||
	    exiftool_write(path, internal, gps_device_args, more, END))
		return -1;
	return 0;
}

static int make_tool_png(const char *path, int o, const char *icc)
{
	char orient[32], longtext[600] = "-PNG:Author=";
	const char *conv[] = { CONVERT, "-seed", "5", "-size", "64x48", "plasma:fractal",
			       "-depth", "8", path, NULL };
	const char *conv_icc[] = { CONVERT, "-seed", "5", "-size", "64x48", "plasma:fractal",
				   "-depth", "8", "-profile", icc, path, NULL };
	const char *text[] = { "-PNG:Comment=CANARY-tEXt", "-PNG:Title-de=CANARY-iTXt",
			       "-PNG:ModifyDate=2020:01:02 03:04:05", "-Make=Canon",
			       "-Model=CANARY-Model", orient, NULL };
	const char *ztxt[] = { "-z", longtext, NULL };

	for (int i = 0; i < 40; i++)
		strcat(longtext, "CANARY-zTXt ");
	snprintf(orient, sizeof(orient), "-EXIF:Orientation#=%d", o);
	if (run(icc ? conv_icc : conv) || exiftool_write(path, text, gps_device_args, END) ||
	    exiftool_write(path, ztxt, END))
		return -1;
	return 0;
}

static int make_tool_webp(const char *path, int o, bool lossless, const char *icc)
{
	char orient[32];
	const char *conv[] = { CONVERT, "-seed", "5", "-size", "64x48", "plasma:fractal",
			       "-define", lossless ? "webp:lossless=true" : "webp:lossless=false",
			       "-quality", "80", path, NULL };
	const char *conv_icc[] = { CONVERT, "-seed", "5", "-size", "64x48", "plasma:fractal",
				   "-profile", icc, "-quality", "80", path, NULL };
	const char *dev[] = { "-Make=Canon", "-Model=CANARY-Model", orient, NULL };

	snprintf(orient, sizeof(orient), "-EXIF:Orientation#=%d", o);
	if (run(icc ? conv_icc : conv) || exiftool_write(path, dev, gps_device_args, END))
		return -1;
	return 0;
}

/* An ICC profile for `convert -profile`: a system one, else libvips' sRGB. */
static bool find_icc(char *out, size_t cap)
{
	static const char *const known[] = {
		"/usr/share/color/icc/sRGB.icc", "/usr/share/color/icc/colord/sRGB.icc",
		"/usr/share/color/icc/ghostscript/srgb.icc",
	};
	VipsBlob *blob = NULL;
	const void *data;
	size_t len;

	for (size_t i = 0; i < sizeof(known) / sizeof(known[0]); i++) {
		if (!access(known[i], R_OK)) {
			snprintf(out, cap, "%s", known[i]);
			return true;
		}
	}
	if (vips_profile_load("srgb", &blob, NULL)) {
		vips_error_clear();
		return false;
	}
	data = vips_blob_get(blob, &len);
	tmp_path(out, cap, "srgb.icc");
	if (tu_write_file(out, data, len, 0600) < 0)
		BAIL_OUT("cannot write %s", out);
	vips_area_unref((VipsArea *)blob);
	return true;
}

static void test_tools(struct buf *samples)
{
	char path[512], label[128], icc[512];
	bool have_icc;

	if (!have_convert || !have_exiftool) {
		skip(8 * TOOL_TESTS + 4 * TOOL_TESTS + 4 * TOOL_TESTS + 3 * (TOOL_TESTS + 2),
		     "needs " CONVERT " (imagemagick) and " EXIFTOOL
		     " (libimage-exiftool-perl)");
		return;
	}
	have_icc = find_icc(icc, sizeof(icc));
	note("ICC profile for the tests: %s", have_icc ? icc : "none");

	for (int o = 1; o <= 8; o++) {
		bool big = o % 2;

		snprintf(label, sizeof(label), "exiftool JPEG (%s-endian), orientation %d",
			 big ? "big" : "little", o);
		snprintf(path, sizeof(path), "%s/tool-%d.jpg", tmp_dir, o);
		if (make_tool_jpeg(path, o, big, NULL) < 0)
			BAIL_OUT("cannot make %s with convert and exiftool", path);
		tool_check(label, path, "image/jpeg", o, false, jpeg_keys);
		if (o == 6 && !(samples[0].p = tu_read_file(path, &samples[0].len)))
			BAIL_OUT("cannot read %s", path);
	}
	for (int o = 1; o <= 8; o += o < 3 ? 2 : o < 6 ? 3 : 2) {   /* 1, 3, 6, 8 */
		snprintf(label, sizeof(label), "exiftool PNG, orientation %d", o);
		snprintf(path, sizeof(path), "%s/tool-%d.png", tmp_dir, o);
		if (make_tool_png(path, o, NULL) < 0)
			BAIL_OUT("cannot make %s with convert and exiftool", path);
		tool_check(label, path, "image/png", o, false, png_keys);
		if (o == 6 && !(samples[1].p = tu_read_file(path, &samples[1].len)))
			BAIL_OUT("cannot read %s", path);
	}
	for (int i = 0; i < 4; i++) {
		bool lossless = i & 1;
		int o = i < 2 ? 1 : 6;

		snprintf(label, sizeof(label), "exiftool WebP (%s), orientation %d",
			 lossless ? "lossless" : "lossy", o);
		snprintf(path, sizeof(path), "%s/tool-%d.webp", tmp_dir, i);
		if (make_tool_webp(path, o, lossless, NULL) < 0)
			BAIL_OUT("cannot make %s with convert and exiftool", path);
		tool_check(label, path, "image/webp", o, false, webp_keys);
		if (i == 3 && !(samples[2].p = tu_read_file(path, &samples[2].len)))
			BAIL_OUT("cannot read %s", path);
	}
	if (!have_icc) {
		skip(3 * (TOOL_TESTS + 2), "no ICC profile to embed");
		return;
	}
	snprintf(path, sizeof(path), "%s/icc.jpg", tmp_dir);
	if (make_tool_jpeg(path, 6, true, icc) < 0)
		BAIL_OUT("cannot make %s", path);
	tool_check("exiftool JPEG with an ICC profile", path, "image/jpeg", 6, true,
		   jpeg_keys);
	snprintf(path, sizeof(path), "%s/icc.png", tmp_dir);
	if (make_tool_png(path, 3, icc) < 0)
		BAIL_OUT("cannot make %s", path);
	tool_check("exiftool PNG with an ICC profile", path, "image/png", 3, true, png_keys);
	snprintf(path, sizeof(path), "%s/icc.webp", tmp_dir);
	if (make_tool_webp(path, 8, false, icc) < 0)
		BAIL_OUT("cannot make %s", path);
	tool_check("exiftool WebP with an ICC profile", path, "image/webp", 8, true,
		   webp_keys);
}

/* ---- damage ----------------------------------------------------------------- */

/* Where a file's length fields are: offset and width (2: BE16, 4: BE32,
 * -4: LE32), found by the test's own walk of the structure. */
struct field { size_t at; int width; };

static size_t length_fields(const struct buf *f, const char *mime, struct field *out,
			    size_t cap)
{
	const uint8_t *p = f->p;
	size_t n = 0, pos;

	if (!strcmp(mime, "image/jpeg")) {
		for (pos = 2; pos + 4 <= f->len && n < cap; ) {
			uint8_t m;
			while (pos + 1 < f->len && p[pos + 1] == 0xff)
				pos++;
			m = p[pos + 1];
			if (m == 0x01 || (m >= 0xd0 && m <= 0xd9)) {
				pos += 2;
				continue;
			}
			out[n++] = (struct field){ pos + 2, 2 };
			if (m == 0xda)
				break;
			pos += 2 + be16(p + pos + 2);
		}
	} else if (!strcmp(mime, "image/png")) {
		for (pos = 8; pos + 12 <= f->len && n < cap; pos += 12 + be32(p + pos))
			out[n++] = (struct field){ pos, 4 };
	} else {
		out[n++] = (struct field){ 4, -4 };
		for (pos = 12; pos + 8 <= f->len && n < cap; pos += 8 + ((le32(p + pos + 4) + 1) & ~1u))
			out[n++] = (struct field){ pos + 4, -4 };
	}
	return n;
}

/* Every segment or chunk length of a file set to wrong values, pointing
 * short, past the end, or to nonsense: an error or a valid output. */
static void test_lengths(const char *name, const struct buf *f, const char *mime)
{
	struct field fields[256];
	size_t nf = length_fields(f, mime, fields, 256);
	int tried = 0, refused_n = 0, broken = 0;
	uint8_t *m = malloc(f->len);
	char why[600];

	for (size_t i = 0; i < nf; i++) {
		size_t at = fields[i].at;
		int w = fields[i].width;
		uint32_t cur = w == 2 ? be16(f->p + at) : w == 4 ? be32(f->p + at) : le32(f->p + at);
		uint32_t past = (uint32_t)(f->len - at);
		const uint32_t vals[] = { 0, 1, 2, 3, cur - 1, cur + 1, cur + 2, past - 1, past,
					  past + 1, 0x7fff, 0xffff, 0x7fffffff, 0xfffffff0,
					  0xffffffff };

		for (size_t v = 0; v < sizeof(vals) / sizeof(vals[0]); v++) {
			bool refused;

			memcpy(m, f->p, f->len);
			for (int k = 0; k < (w == 2 ? 2 : 4); k++)
				m[at + k] = (uint8_t)(w == -4 ? vals[v] >> (8 * k) :
						      vals[v] >> (8 * ((w == 2 ? 1 : 3) - k)));
			tried++;
			if (check_promises(m, f->len, mime, &refused, why, sizeof(why)) < 0 &&
			    !broken++)
				diag("    length at %zu set to %u: %s", at, vals[v], why);
			refused_n += refused;
		}
	}
	free(m);
	ok(nf >= 2 && !broken, "%s: %d wrong lengths in %zu fields: errors or valid output "
	   "(%d refused)", name, tried, nf, refused_n);
}

static void test_damage(const char *name, const struct buf *f, const char *mime, size_t tail)
{
	char label[160];

	if (!f->p) {
		skip(3, "no sample");
		return;
	}
	snprintf(label, sizeof(label), "%s (%zu bytes)", name, f->len);
	test_truncations(label, f, mime, tail);
	test_mutations(label, f, mime, f->len > 20000 ? 1500 : 4000);
	test_lengths(label, f, mime);
}

/* libvips warnings (libpng's about the odd chunks we make) as TAP notes. */
static void log_as_note(const gchar *domain, GLogLevelFlags level, const gchar *msg,
		     gpointer data)
{
	(void)level;
	(void)data;
	note("%s: %s", domain ? domain : "glib", msg);
}

int main(int argc, char **argv)
{
	struct buf jpeg[3] = { 0 }, png[2] = { 0 }, webp[3] = { 0 }, tool[3] = { 0 };

	(void)argc;
	if (VIPS_INIT(argv[0]))
		BAIL_OUT("cannot start libvips");
	vips_cache_set_max(0);
	g_log_set_handler("VIPS", G_LOG_LEVEL_WARNING | G_LOG_LEVEL_MESSAGE, log_as_note, NULL);
	tu_mkdtemp(tmp_dir, sizeof(tmp_dir), "strip");
	have_convert = !access(CONVERT, X_OK);
	have_exiftool = !access(EXIFTOOL, X_OK);

	test_api();
	test_jpeg_synthetic(jpeg);
	test_png_synthetic(png);
	test_webp_synthetic(webp);
	test_fuzz_regressions();
	test_tools(tool);

	/* The synthetic files with metadata end in a 14-byte "ZIP". */
	test_damage("JPEG with metadata", &jpeg[0], "image/jpeg", 14);
	test_damage("progressive JPEG", &jpeg[1], "image/jpeg", 0);
	test_damage("plain JPEG", &jpeg[2], "image/jpeg", 0);
	test_damage("PNG with metadata", &png[0], "image/png", 14);
	test_damage("plain PNG", &png[1], "image/png", 0);
	test_damage("extended WebP", &webp[0], "image/webp", 14);
	test_damage("animated WebP", &webp[1], "image/webp", 0);
	test_damage("simple WebP", &webp[2], "image/webp", 0);
	test_damage("exiftool JPEG", &tool[0], "image/jpeg", 0);
	test_damage("exiftool PNG", &tool[1], "image/png", 0);
	test_damage("exiftool WebP", &tool[2], "image/webp", 0);

	for (int i = 0; i < 3; i++) {
		buf_free(&jpeg[i]);
		buf_free(&webp[i]);
		buf_free(&tool[i]);
	}
	buf_free(&png[0]);
	buf_free(&png[1]);
	tu_rm_rf(tmp_dir);
	vips_shutdown();
	return done_testing();
}
