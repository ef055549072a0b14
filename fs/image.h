/*
 * image — what an image is, decided by content, never by name (DESIGN §7).
 *
 * This module holds the admission rules.  Today it asks libmagic for the
 * MIME type and checks it against the allow-list; the header and decode
 * checks with libvips come with the image pipeline.
 */
#ifndef IMGVAULT_IMAGE_H
#define IMGVAULT_IMAGE_H

#include <stddef.h>

#include "iverr.h"

struct image_sniffer;

/* Loads libmagic's database.  The caller owns *out (image_sniffer_free).
 * A sniffer is not thread-safe. */
int image_sniffer_new(struct image_sniffer **out, struct iverr *e);
void image_sniffer_free(struct image_sniffer *s);

/*
 * Decides whether @buf is an image imgvault accepts.  On success *mime
 * points at a static string ("image/jpeg", …).  A refusal returns
 * -IV_EREJECT with the reason in @e (empty, not an image, type not allowed).
 */
int image_sniff(struct image_sniffer *s, const void *buf, size_t len, const char **mime,
		struct iverr *e);

#endif
