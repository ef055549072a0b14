#include "image.h"

#include <stdlib.h>
#include <string.h>

#include <magic.h>

struct image_sniffer {
	magic_t magic;
};

/* The allow-list: MIME types libmagic reports for the formats we store. */
static const char *const allowed[] = {
	"image/jpeg", "image/png", "image/gif", "image/webp", "image/heic",
	"image/heif", "image/avif",
};

int image_sniffer_new(struct image_sniffer **out, struct iverr *e)
{
	struct image_sniffer *s;

	*out = NULL;
	s = calloc(1, sizeof(*s));
	if (!s)
		return iverr_set(e, ENOMEM, "out of memory");
	/* No decompression, no following of anything: the type of the bytes. */
	s->magic = magic_open(MAGIC_MIME_TYPE | MAGIC_NO_CHECK_COMPRESS |
			      MAGIC_NO_CHECK_ELF | MAGIC_NO_CHECK_TAR);
	if (!s->magic || magic_load(s->magic, NULL) != 0) {
		int ret = iverr_set(e, EIO, "cannot load libmagic's database: %s; "
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

int image_sniff(struct image_sniffer *s, const void *buf, size_t len, const char **mime,
		struct iverr *e)
{
	const char *m;

	*mime = NULL;
	if (len == 0)
		return iverr_set(e, IV_EREJECT, "the file is empty");
	m = magic_buffer(s->magic, buf, len);
	if (!m)
		return iverr_set(e, IV_EREJECT, "cannot tell the file's type: %s",
				 magic_error(s->magic));
	for (size_t i = 0; i < sizeof(allowed) / sizeof(allowed[0]); i++) {
		if (!strcmp(m, allowed[i])) {
			*mime = allowed[i];
			return 0;
		}
	}
	if (!strncmp(m, "image/", 6))
		return iverr_set(e, IV_EREJECT, "%s is not an allowed image type "
				 "(JPEG, PNG, GIF, WebP, HEIC, AVIF are)", m);
	return iverr_set(e, IV_EREJECT, "not an image: its content is %s", m);
}
