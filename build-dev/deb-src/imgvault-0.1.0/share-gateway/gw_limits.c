#include "gw_limits.h"

#include <errno.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include <sodium.h>

#define SLOTS 4096
#define PROBE 8
#define BAD_WINDOW 60.0

struct entry {
	struct cidr addr;
	bool used;
	double seen;
	double tokens;
	unsigned bad;
	double bad_since;
	double banned_until;
};

struct gw_limits {
	pthread_mutex_t lock;
	double rate, burst, ban_secs;
	unsigned ban_after;
	uint8_t hash_key[crypto_shorthash_KEYBYTES];   /* no address can aim at a slot */
	struct entry slots[SLOTS];
};

int gw_limits_new(double rate, double burst, unsigned ban_after, unsigned ban_secs,
		  struct gw_limits **out)
{
	struct gw_limits *l = calloc(1, sizeof(*l));

	if (!l)
		return -ENOMEM;
	pthread_mutex_init(&l->lock, NULL);
	l->rate = rate;
	l->burst = burst;
	l->ban_after = ban_after;
	l->ban_secs = ban_secs;
	randombytes_buf(l->hash_key, sizeof(l->hash_key));
	*out = l;
	return 0;
}

void gw_limits_free(struct gw_limits *l)
{
	if (!l)
		return;
	pthread_mutex_destroy(&l->lock);
	free(l);
}

static bool same(const struct cidr *a, const struct cidr *b)
{
	return a->family == b->family && !memcmp(a->addr, b->addr, sizeof(a->addr));
}

/* The address's entry, made if needed (under the lock). */
static struct entry *lookup(struct gw_limits *l, const struct cidr *addr, double now)
{
	uint8_t h[crypto_shorthash_BYTES];
	struct entry *oldest = NULL;
	struct cidr key = *addr;
	uint64_t start;

	/* An IPv6 client usually holds a whole /64: it counts as one. */
	if (key.family == AF_INET6)
		memset(key.addr + 8, 0, 8);
	addr = &key;

	crypto_shorthash(h, key.addr, sizeof(key.addr), l->hash_key);
	memcpy(&start, h, sizeof(start));
	for (unsigned i = 0; i < PROBE; i++) {
		struct entry *e = &l->slots[(start + i) % SLOTS];
		if (e->used && same(&e->addr, addr))
			return e;
		if (!oldest || !e->used || (oldest->used && e->seen < oldest->seen))
			oldest = e;
	}
	memset(oldest, 0, sizeof(*oldest));
	oldest->used = true;
	oldest->addr = *addr;
	oldest->tokens = l->burst;
	oldest->seen = now;
	return oldest;
}

enum gw_verdict gw_limits_take(struct gw_limits *l, const struct cidr *addr, double now)
{
	enum gw_verdict v = GW_PASS;
	struct entry *e;

	pthread_mutex_lock(&l->lock);
	e = lookup(l, addr, now);
	e->tokens += (now - e->seen) * l->rate;
	if (e->tokens > l->burst)
		e->tokens = l->burst;
	e->seen = now;
	if (now < e->banned_until)
		v = GW_BANNED;
	else if (e->tokens < 1.0)
		v = GW_RATE;
	else
		e->tokens -= 1.0;
	pthread_mutex_unlock(&l->lock);
	return v;
}

void gw_limits_bad_token(struct gw_limits *l, const struct cidr *addr, double now)
{
	struct entry *e;

	pthread_mutex_lock(&l->lock);
	e = lookup(l, addr, now);
	if (now - e->bad_since > BAD_WINDOW) {
		e->bad = 0;
		e->bad_since = now;
	}
	if (++e->bad >= l->ban_after)
		e->banned_until = now + l->ban_secs;
	pthread_mutex_unlock(&l->lock);
}
