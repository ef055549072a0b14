/*
 * libFuzzer target for fs/strip: every input goes through the JPEG, PNG
 * and WebP strippers and strip_orientation.  Besides memory errors (run it
 * with ASan and UBSan) it checks the promises of strip.h:
 *
 *   - an error is -EINVAL or -ENOMEM with a message, and leaves *out NULL;
 *   - an output is at most 64 bytes longer than the input;
 *   - stripping an output again gives the same bytes (idempotence);
 *   - the output keeps the input's orientation.
 *
 *   make fuzz            # builds build/fuzz/fuzz_strip and runs it
 *
 * or by hand, with tests/fuzz/make-seeds.sh for a seed corpus:
 *
 *   clang-14 -g -O1 -fsanitize=fuzzer,address,undefined -Ifs \
 *       tests/fuzz/fuzz_strip.c fs/strip.c fs/iverr.c fs/bytes.c -o /tmp/fuzz_strip
 *   tests/fuzz/make-seeds.sh /tmp/seeds
 *   /tmp/fuzz_strip -max_total_time=60 /tmp/seeds
 *
 * A finding is a crash with "fuzz_strip: <type>: <broken promise>" above
 * it; add the input to tests/unit/test_strip.c (test_fuzz_regressions).
 */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "strip.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* Reports which promise broke, then crashes so libFuzzer keeps the input. */
#define FAIL(what) do {                                                    \
		fprintf(stderr, "fuzz_strip: %s: %s\n", mime, what);      \
		abort();                                                   \
	} while (0)

static const char *const mimes[] = { "image/jpeg", "image/png", "image/webp" };

static void check(const uint8_t *data, size_t size, const char *mime)
{
	struct iverr e = { 0 };
	uint8_t *out = NULL, *again = NULL;
	size_t out_len = 0, again_len = 0;
	int ret, o1;

	o1 = strip_orientation(data, size, mime);
	if (o1 < 1 || o1 > 8)
		FAIL("orientation out of range");
	ret = strip_metadata(data, size, mime, &out, &out_len, &e);
	if (ret < 0) {
		if ((ret != -EINVAL && ret != -ENOMEM) || out || out_len || !e.msg[0] ||
		    e.code != -ret)
			FAIL("error without a message, or with an output");
		return;
	}
	if (!out || out_len > size + 64)
		FAIL("output missing or too long");
	if (strip_orientation(out, out_len, mime) != o1)
		FAIL("output changed the orientation");
	iverr_clear(&e);
	if (strip_metadata(out, out_len, mime, &again, &again_len, &e) < 0)
		FAIL(e.msg);
	if (again_len != out_len || memcmp(again, out, out_len))
		FAIL("stripping twice changed the output");
	free(again);
	free(out);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	/* libFuzzer hands over a heap copy of exactly @size bytes, so ASan
	 * catches any read past the end. */
	for (size_t i = 0; i < sizeof(mimes) / sizeof(mimes[0]); i++)
		check(data, size, mimes[i]);
	return 0;
}
