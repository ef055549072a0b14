/*
 * thumbnailer — a pool of worker threads that works through a user's
 * thumbnail queue (DESIGN §5, §7): never on the write path, bounded in
 * memory (a few images in flight), and a request for one that is not ready
 * jumps the queue.
 *
 * Workers only decrypt, decode, resize and encrypt (vault_thumb_make); the
 * catalog is touched by the owner thread alone, inside thumbnailer_run.
 * Jobs left unfinished stay in the catalog's queue for the next run.
 */
#ifndef IMGVAULT_THUMBNAILER_H
#define IMGVAULT_THUMBNAILER_H

#include <stdbool.h>
#include <stdint.h>

#include "vault.h"

struct thumbnailer;

struct thumbnailer_report {
	uint64_t made;          /* thumbnails committed */
	uint64_t damaged;       /* images that failed the full decode */
};

/* Starts @workers threads for session @s.  The caller owns *out and stops
 * it with thumbnailer_stop before closing the session.  The workers'
 * decodes share a budget of the store's image.decode-memory (membudget.h)
 * that the thumbnailer owns. */
int thumbnailer_start(struct vault_session *s, unsigned workers, struct thumbnailer **out,
		      struct iverr *e);
/* The same, the decodes sharing @budget with whatever else uses it (every
 * user's thumbnailer of a mount): the caller keeps @budget until after
 * thumbnailer_stop. */
int thumbnailer_start_shared(struct vault_session *s, unsigned workers,
			     struct membudget *budget, struct thumbnailer **out,
			     struct iverr *e);

/*
 * Hands queued jobs to the workers and commits what they finished.  With
 * @wait it returns once the queue is empty (or, with @until > 0, once the
 * job of version @until is done); without, it returns at once.  Each
 * damaged image is reported through @damaged (may be NULL) and counted.
 */
typedef void (*thumbnailer_damaged_fn)(void *arg, int64_t image_id, const char *why);
int thumbnailer_run(struct thumbnailer *t, bool wait, int64_t until,
		    vault_progress_fn progress, thumbnailer_damaged_fn damaged,
		    void *arg, struct thumbnailer_report *r, struct iverr *e);

/* Calls @fn from a worker each time a job is done, so that an owner that
 * runs thumbnailer_run without waiting can commit at once instead of on
 * its next round.  @fn must not block or call back into @t. */
void thumbnailer_on_done(struct thumbnailer *t, void (*fn)(void *arg), void *arg);

/* Joins the workers; work in flight is discarded (it stays queued). */
void thumbnailer_stop(struct thumbnailer *t);

#endif
