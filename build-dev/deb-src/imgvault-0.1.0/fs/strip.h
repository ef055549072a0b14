/*
 * strip — lossless removal of location and device metadata (DESIGN §7).
 *
 * Share links serve an original with EXIF GPS, maker notes, serial numbers,
 * XMP, IPTC and comments removed, without re-encoding: the image data is
 * copied byte for byte, so the decoded pixels are exactly the original's.
 * What a viewer needs to show the picture right stays: the EXIF orientation
 * (rewritten as a minimal EXIF block holding nothing else) and the colour
 * profile.
 *
 * Per format:
 *
 *   JPEG  keeps every non-APP marker segment (DQT, DHT, SOFn, DRI, SOS,
 *         DNL, RSTn, TEM …), the entropy-coded data verbatim, APP0
 *         JFIF/JFXX (with the small thumbnail they may hold), APP2
 *         ICC_PROFILE (every part, in order) and APP14 Adobe.  Drops APP1
 *         (Exif, XMP, extended XMP), APP13 (IPTC/Photoshop), COM, every
 *         other APPn (MPF, FlashPix, JUMBF/C2PA, maker-specific …), fill
 *         bytes between segments and anything after the first EOI.
 *         Segments between the scans of a progressive JPEG are judged by
 *         the same rules.
 *   PNG   keeps every chunk (IHDR, PLTE, IDAT, iCCP, sRGB, gAMA, cHRM,
 *         pHYs, tRNS, acTL/fcTL/fdAT, unknown ones …) except eXIf (and the
 *         pre-standard exIf/zxIf), tEXt, iTXt, zTXt and tIME, which it
 *         drops.  Anything after IEND is dropped.  CRCs are not checked:
 *         kept chunks are copied as they are.
 *   WebP  keeps every chunk except EXIF and XMP, clears the VP8X EXIF/XMP
 *         flags to match and rewrites the RIFF size.  Anything after the
 *         RIFF extent is dropped.
 *
 * Dropping what follows the end of the image (JPEG EOI, PNG IEND, the RIFF
 * size) also defuses polyglots such as an image with a ZIP archive
 * appended.
 *
 * The orientation is read from the first EXIF block only (in a JPEG, the
 * first APP1 Exif before the first SOS; in a WebP, only when a VP8X chunk
 * makes the EXIF chunk meaningful).  A damaged EXIF block, or an
 * Orientation that is not one SHORT of 1..8, is not an error: the block is
 * dropped like any other and the orientation counts as 1.  The replacement
 * block keeps the original's byte order.
 *
 * Both functions are pure (no I/O, no global state) and thread-safe.
 */
#ifndef IMGVAULT_STRIP_H
#define IMGVAULT_STRIP_H

#include <stddef.h>
#include <stdint.h>

#include "iverr.h"

/*
 * Strips location and device metadata from an image without re-encoding.
 * @mime is the detected type ("image/jpeg", "image/png", "image/webp").
 * On success *out is a malloc'd copy (caller frees) of *out_len bytes.
 * -ENOTSUP: no lossless stripper for this format (caller re-encodes).
 * -EINVAL (IV_EREJECT): the file is malformed; message in @e. Never reads
 * out of bounds, whatever the input.
 * -ENOMEM: out of memory.
 *
 * *out and *out_len are cleared first, so they are NULL and 0 on any
 * error.  The output is never longer than @len + 64 bytes, and stripping
 * it again gives the same bytes.
 */
int strip_metadata(const uint8_t *in, size_t len, const char *mime,
		   uint8_t **out, size_t *out_len, struct iverr *e)
	__attribute__((warn_unused_result));

/*
 * The EXIF orientation (1..8) found in the image, 1 if none, if the EXIF
 * block is damaged, or if @mime is not one strip_metadata handles.  It is
 * the orientation strip_metadata keeps: for any output of strip_metadata,
 * strip_orientation(output) == strip_orientation(input).
 */
int strip_orientation(const uint8_t *in, size_t len, const char *mime);

#endif
