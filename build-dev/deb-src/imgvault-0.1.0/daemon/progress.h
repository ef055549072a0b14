/*
 * progress — a one-line progress bar on standard error for long commands:
 * files, bytes, rate and time left.  Drawn only on a terminal, at most ten
 * times a second; silent otherwise.
 */
#ifndef IMGVAULT_PROGRESS_H
#define IMGVAULT_PROGRESS_H

#include <stdbool.h>
#include <stdint.h>

struct progress {
	const char *verb;       /* "importing" */
	bool enabled;
	double start;           /* seconds, monotonic */
	double last_draw;
	int width;              /* of the last line drawn */
};

/* Enabled when @want and standard error is a terminal. */
void progress_init(struct progress *p, const char *verb, bool want);
void progress_update(struct progress *p, uint64_t items, uint64_t items_total,
		     uint64_t bytes, uint64_t bytes_total);
/* Clears the line. */
void progress_done(struct progress *p);
/* A vault_progress_fn: @arg is a struct progress. */
void progress_callback(void *arg, uint64_t items, uint64_t items_total,
		       uint64_t bytes, uint64_t bytes_total);

/* "12.3 MB" into @buf. */
const char *progress_bytes(uint64_t n, char buf[32]);

#endif
