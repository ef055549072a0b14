/* Unit tests of fs/membudget: the decode-memory budget the thumbnail workers share. */
#define _GNU_SOURCE
#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "membudget.h"
#include "tap.h"

static void pause_ms(long ms)
{
	struct timespec ts = { .tv_sec = ms / 1000, .tv_nsec = (ms % 1000) * 1000000L };

	nanosleep(&ts, NULL);
}

static void test_alone(void)
{
	struct membudget *b;

	is_int(membudget_acquire(NULL, 123), 0, "a NULL budget limits nothing");
	membudget_release(NULL, 0);
	if (membudget_new(100, &b) < 0)
		BAIL_OUT("out of memory");
	is_int(membudget_acquire(b, 40), 40, "40 of 100: taken");
	is_int(membudget_acquire(b, 60), 60, "60 more: exactly the budget, taken");
	is_int(membudget_in_use(b), 100, "100 in use");
	membudget_release(b, 40);
	membudget_release(b, 60);
	is_int(membudget_in_use(b), 0, "all given back");
	is_int(membudget_acquire(b, 1000), 1000, "more than the whole budget runs when alone");
	is_int(membudget_peak(b), 1000, "and is counted");
	membudget_release(b, 1000);
	membudget_free(b);
}

/* Many decodes at once: never more than the budget in flight. */
struct crowd {
	struct membudget *b;
	atomic_ullong running, worst;
	uint64_t each;
};

static void *crowd_worker(void *arg)
{
	struct crowd *c = arg;

	for (int i = 0; i < 20; i++) {
		uint64_t got = membudget_acquire(c->b, c->each);
		unsigned long long now = atomic_fetch_add(&c->running, got) + got;
		unsigned long long w = atomic_load(&c->worst);

		while (now > w && !atomic_compare_exchange_weak(&c->worst, &w, now))
			;
		pause_ms(1);
		atomic_fetch_sub(&c->running, got);
		membudget_release(c->b, got);
	}
	return NULL;
}

static void test_crowd(void)
{
	struct crowd c = { .each = 30 };
	pthread_t th[8];

	if (membudget_new(100, &c.b) < 0)
		BAIL_OUT("out of memory");
	for (int i = 0; i < 8; i++)
		pthread_create(&th[i], NULL, crowd_worker, &c);
	for (int i = 0; i < 8; i++)
		pthread_join(th[i], NULL);
	ok(atomic_load(&c.worst) <= 90, "8 threads taking 30 of 100: at most 90 in flight "
	   "(saw %llu)", (unsigned long long)atomic_load(&c.worst));
	ok(membudget_peak(c.b) <= 100, "the budget's own peak is within it");
	is_int(membudget_in_use(c.b), 0, "nothing left in use");
	membudget_free(c.b);
}

/* A decode larger than the budget waits for the others, runs alone, and
 * those that came after it wait their turn. */
struct turn {
	struct membudget *b;
	uint64_t bytes;
	atomic_int *order;
	int mine;
	uint64_t in_use_when_started;
};

static void *turn_worker(void *arg)
{
	struct turn *t = arg;
	uint64_t got = membudget_acquire(t->b, t->bytes);

	t->mine = atomic_fetch_add(t->order, 1);
	t->in_use_when_started = membudget_in_use(t->b);
	pause_ms(20);
	membudget_release(t->b, got);
	return NULL;
}

static void test_big_runs_alone_in_turn(void)
{
	struct membudget *b;
	atomic_int order = 0;
	struct turn big = { .bytes = 500, .order = &order, .mine = -1 };
	struct turn small = { .bytes = 10, .order = &order, .mine = -1 };
	pthread_t tb, ts;
	uint64_t held;

	if (membudget_new(100, &b) < 0)
		BAIL_OUT("out of memory");
	big.b = small.b = b;
	held = membudget_acquire(b, 50);
	pthread_create(&tb, NULL, turn_worker, &big);
	pause_ms(50);
	pthread_create(&ts, NULL, turn_worker, &small);
	pause_ms(50);
	is_int(atomic_load(&order), 0, "the large one waits while another decode runs, and the "
	       "small one that came after it waits behind it");
	membudget_release(b, held);
	pthread_join(tb, NULL);
	pthread_join(ts, NULL);
	is_int(big.mine, 0, "the large one went first");
	is_int(big.in_use_when_started, 500, "alone");
	is_int(small.mine, 1, "the small one after it");
	is_int(small.in_use_when_started, 10, "once the large one was done");
	membudget_free(b);
}

static void test_set_cap_wakes(void)
{
	struct membudget *b;
	atomic_int order = 0;
	struct turn t = { .bytes = 50, .order = &order, .mine = -1 };
	pthread_t th;
	uint64_t held;

	if (membudget_new(60, &b) < 0)
		BAIL_OUT("out of memory");
	t.b = b;
	held = membudget_acquire(b, 40);
	pthread_create(&th, NULL, turn_worker, &t);
	pause_ms(50);
	is_int(atomic_load(&order), 0, "40 + 50 > 60: waits");
	membudget_set_cap(b, 200);
	pthread_join(th, NULL);
	is_int(t.mine, 0, "a larger budget lets it go on");
	is_int(t.in_use_when_started, 90, "beside the other");
	membudget_release(b, held);
	membudget_set_cap(b, 0);
	is_int(membudget_acquire(b, 1ull << 40), 1ull << 40, "a budget of 0 limits nothing");
	is_int(membudget_acquire(b, 1ull << 40), 1ull << 40, "even twice");
	membudget_release(b, 1ull << 40);
	membudget_release(b, 1ull << 40);
	membudget_free(b);
}

int main(void)
{
	test_alone();
	test_crowd();
	test_big_runs_alone_in_turn();
	test_set_cap_wakes();
	return done_testing();
}
