/*
 * membudget — a budget of bytes that concurrent decodes share (DESIGN §7,
 * docs/IMAGES.md "Decode memory").
 *
 * Whoever owns the decoding threads owns one budget (the mounted tree for
 * all its users' thumbnail workers, a thumbnailer for its own) and hands it
 * to them.  A decode estimates its memory from the image's header, takes
 * that much with membudget_acquire — waiting while the decodes in flight
 * would go over the budget — and gives it back with membudget_release.  A
 * decode larger than the whole budget waits until nothing else runs, then
 * runs alone.  Waiters are served in the order they came, so a large decode
 * is not starved by a stream of small ones.
 */
#ifndef IMGVAULT_MEMBUDGET_H
#define IMGVAULT_MEMBUDGET_H

#include <stdint.h>

struct membudget;

/* A budget of @cap bytes (0: no limit).  -ENOMEM; the caller owns *out. */
int membudget_new(uint64_t cap, struct membudget **out);
/* The caller makes sure nothing is acquired or waiting any more. */
void membudget_free(struct membudget *b);

/* Changes the budget (0: no limit), for a reload of the settings; waiters
 * that now fit go on. */
void membudget_set_cap(struct membudget *b, uint64_t cap);

/*
 * Waits until @bytes fit beside what is in flight (or until nothing else is
 * in flight, for more than the whole budget), then counts them as in use.
 * Returns the amount to give back to membudget_release.  A NULL budget
 * waits for nothing and returns 0.
 */
uint64_t membudget_acquire(struct membudget *b, uint64_t bytes);
void membudget_release(struct membudget *b, uint64_t bytes);

/* Bytes in use now, and the most ever in use at once (for tests). */
uint64_t membudget_in_use(struct membudget *b);
uint64_t membudget_peak(struct membudget *b);

#endif
