#include "membudget.h"

#include <errno.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdlib.h>

struct membudget {
	pthread_mutex_t lock;
	pthread_cond_t changed;     /* bytes released, the budget changed or a turn passed */
	uint64_t cap;               /* 0: no limit */
	uint64_t in_use, peak;
	uint64_t next_ticket;       /* given to the next waiter */
	uint64_t serving;           /* the ticket whose turn it is */
};

int membudget_new(uint64_t cap, struct membudget **out)
{
	struct membudget *b;

	*out = NULL;
	b = calloc(1, sizeof(*b));
	if (!b)
		return -ENOMEM;
	if (pthread_mutex_init(&b->lock, NULL) != 0)
		goto out_free;
	if (pthread_cond_init(&b->changed, NULL) != 0)
		goto out_mutex;
	b->cap = cap;
	*out = b;
	return 0;
out_mutex:
	pthread_mutex_destroy(&b->lock);
out_free:
	free(b);
	return -ENOMEM;
}

void membudget_free(struct membudget *b)
{
	if (!b)
		return;
	pthread_cond_destroy(&b->changed);
	pthread_mutex_destroy(&b->lock);
	free(b);
}

void membudget_set_cap(struct membudget *b, uint64_t cap)
{
	pthread_mutex_lock(&b->lock);
	b->cap = cap;
	pthread_cond_broadcast(&b->changed);
	pthread_mutex_unlock(&b->lock);
}

/* Whether @bytes may start now.  The lock is held. */
static bool fits(const struct membudget *b, uint64_t bytes)
{
	if (!b->cap || b->in_use == 0)
		return true;   /* no limit, or alone: even one larger than the budget */
	return b->in_use <= b->cap && bytes <= b->cap - b->in_use;
}

uint64_t membudget_acquire(struct membudget *b, uint64_t bytes)
{
	uint64_t ticket;

	if (!b)
		return 0;
	pthread_mutex_lock(&b->lock);
	ticket = b->next_ticket++;
	while (ticket != b->serving || !fits(b, bytes))
		pthread_cond_wait(&b->changed, &b->lock);
	b->serving++;
	b->in_use += bytes;
	if (b->in_use > b->peak)
		b->peak = b->in_use;
	pthread_cond_broadcast(&b->changed);   /* the next in line may fit too */
	pthread_mutex_unlock(&b->lock);
	return bytes;
}

void membudget_release(struct membudget *b, uint64_t bytes)
{
	if (!b)
		return;
	pthread_mutex_lock(&b->lock);
	b->in_use -= bytes <= b->in_use ? bytes : b->in_use;
	pthread_cond_broadcast(&b->changed);
	pthread_mutex_unlock(&b->lock);
}

uint64_t membudget_in_use(struct membudget *b)
{
	uint64_t n;

	pthread_mutex_lock(&b->lock);
	n = b->in_use;
	pthread_mutex_unlock(&b->lock);
	return n;
}

uint64_t membudget_peak(struct membudget *b)
{
	uint64_t n;

	pthread_mutex_lock(&b->lock);
	n = b->peak;
	pthread_mutex_unlock(&b->lock);
	return n;
}
