/*
 * libFuzzer target for image admission (fs/image.c): libmagic, then
 * libvips' header reader, on arbitrary bytes.  Besides memory errors it
 * checks the promises of image.h: a refusal is -EINVAL (IV_EREJECT) with a
 * message, an admitted image has a known type and pixels within the
 * limits.  Admission must never decode pixels, so tiny limits stay cheap.
 *
 *   make fuzz            # builds build/fuzz/fuzz_admit and runs it
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "image.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static struct image_sniffer *sniffer;   /* libFuzzer calls us in one thread */
	struct image_limits limits;
	struct image_info info;
	struct iverr e = { 0 };
	int ret;

	if (!sniffer && image_sniffer_new(&sniffer, &e) < 0) {
		fprintf(stderr, "fuzz_admit: %s\n", e.msg);
		abort();
	}
	image_limits_default(&limits);
	limits.max_pixels = 4096 * 4096;
	ret = image_admit(sniffer, &limits, data, size, &info, &e);
	if (ret == 0) {
		if (!info.type || !info.mime || !info.width || !info.height ||
		    (uint64_t)info.width * info.height > limits.max_pixels ||
		    info.frames < 1 || info.frames > limits.max_frames)
			abort();
	} else if (ret != -IV_EREJECT || !e.msg[0]) {
		fprintf(stderr, "fuzz_admit: unexpected %d: %s\n", ret, e.msg);
		abort();
	}
	return 0;
}
