#define _GNU_SOURCE   /* SCHED_IDLE */
#include "thumbnailer.h"
#include "membudget.h"

#include <pthread.h>
#include <sched.h>
#include <stdlib.h>
#include <string.h>

#define MAX_WORKERS 8
#define IN_FLIGHT_PER_WORKER 2

enum slot_state { SLOT_FREE, SLOT_QUEUED, SLOT_RUNNING, SLOT_DONE };

struct slot {
	enum slot_state state;
	struct vault_thumb_job job;
	struct vault_staged st;
	struct iverr err;
	int ret;
};

struct thumbnailer {
	struct vault_session *s;
	pthread_mutex_t lock;
	pthread_cond_t work;        /* a slot was queued, or stop */
	pthread_cond_t done;        /* a slot is done */
	pthread_t threads[MAX_WORKERS];
	unsigned nthreads;
	struct slot *slots;
	size_t nslots;
	struct membudget *budget;   /* the decodes' memory, shared */
	struct membudget *own;      /* the budget, when it is ours */
	bool stop;
	void (*on_done)(void *arg);  /* under @lock; see thumbnailer_on_done */
	void *on_done_arg;
};

static void *worker(void *arg)
{
	struct thumbnailer *t = arg;
	struct sched_param idle = { .sched_priority = 0 };

	/* Thumbnails are background work: they get the CPU nobody else wants,
	 * so imports and reads are never slowed down by them. */
	pthread_setschedparam(pthread_self(), SCHED_IDLE, &idle);

	pthread_mutex_lock(&t->lock);
	for (;;) {
		struct slot *sl = NULL;

		for (size_t i = 0; !sl && i < t->nslots; i++)
			if (t->slots[i].state == SLOT_QUEUED)
				sl = &t->slots[i];
		if (!sl) {
			if (t->stop)
				break;
			pthread_cond_wait(&t->work, &t->lock);
			continue;
		}
		sl->state = SLOT_RUNNING;
		pthread_mutex_unlock(&t->lock);
		iverr_clear(&sl->err);
		sl->ret = vault_thumb_make(t->s, &sl->job, &sl->st, &sl->err);
		pthread_mutex_lock(&t->lock);
		sl->state = SLOT_DONE;
		pthread_cond_broadcast(&t->done);
		if (t->on_done)
			t->on_done(t->on_done_arg);
	}
	pthread_mutex_unlock(&t->lock);
	return NULL;
}

int thumbnailer_start(struct vault_session *s, unsigned workers, struct thumbnailer **out,
		      struct iverr *e)
{
	return thumbnailer_start_shared(s, workers, NULL, out, e);
}

int thumbnailer_start_shared(struct vault_session *s, unsigned workers,
			     struct membudget *budget, struct thumbnailer **out,
			     struct iverr *e)
{
	struct thumbnailer *t;
	int ret;

	*out = NULL;
	if ((ret = image_global_init(e)) < 0)
		return ret;
	if (workers < 1)
		workers = 1;
	if (workers > MAX_WORKERS)
		workers = MAX_WORKERS;
	t = calloc(1, sizeof(*t));
	if (!t)
		return iverr_set(e, ENOMEM, "out of memory");
	t->s = s;
	t->nslots = workers * IN_FLIGHT_PER_WORKER;
	t->slots = calloc(t->nslots, sizeof(*t->slots));
	if (!t->slots)
		goto out_nomem;
	if (!budget && membudget_new(vault_limits(vault_session_vault(s))->decode_memory,
				     &t->own) < 0)
		goto out_slots;
	t->budget = budget ? budget : t->own;
	pthread_mutex_init(&t->lock, NULL);
	pthread_cond_init(&t->work, NULL);
	pthread_cond_init(&t->done, NULL);
	for (unsigned i = 0; i < workers; i++)
		if (pthread_create(&t->threads[t->nthreads], NULL, worker, t) == 0)
			t->nthreads++;
	if (!t->nthreads) {
		thumbnailer_stop(t);
		return iverr_set(e, EAGAIN, "cannot start a thumbnail worker thread");
	}
	*out = t;
	return 0;
out_slots:
	free(t->slots);
out_nomem:
	free(t);
	return iverr_set(e, ENOMEM, "out of memory");
}

/* Whether @version_id is in a slot already.  Called with the lock held. */
static bool in_flight(const struct thumbnailer *t, int64_t version_id)
{
	for (size_t i = 0; i < t->nslots; i++)
		if (t->slots[i].state != SLOT_FREE && t->slots[i].job.version_id == version_id)
			return true;
	return false;
}

/* Fills free slots from the catalog's queue; returns how many are busy. */
static int dispatch(struct thumbnailer *t, size_t *busy, struct iverr *e)
{
	int64_t ids[64];
	size_t n, free_slots = 0;
	int ret;

	pthread_mutex_lock(&t->lock);
	for (size_t i = 0; i < t->nslots; i++)
		free_slots += t->slots[i].state == SLOT_FREE;
	pthread_mutex_unlock(&t->lock);
	if (free_slots) {
		if ((ret = vault_thumb_pending(t->s, ids, 64, &n, e)) < 0)
			return ret;
		for (size_t k = 0; k < n && free_slots; k++) {
			struct vault_thumb_job job;
			struct iverr err = { 0 };

			pthread_mutex_lock(&t->lock);
			bool busy_already = in_flight(t, ids[k]);
			pthread_mutex_unlock(&t->lock);
			if (busy_already)
				continue;
			ret = vault_thumb_job(t->s, ids[k], &job, &err);
			if (ret == -ENOENT)
				continue;
			if (ret == -IV_EDAMAGE) {
				vault_thumb_failed(t->s, &job, err.msg, NULL);
				continue;
			}
			if (ret < 0)
				return iverr_set(e, err.code, "%s", err.msg);
			pthread_mutex_lock(&t->lock);
			for (size_t i = 0; i < t->nslots; i++) {
				if (t->slots[i].state == SLOT_FREE) {
					t->slots[i].state = SLOT_QUEUED;
					t->slots[i].job = job;
					t->slots[i].job.budget = t->budget;
					break;
				}
			}
			free_slots--;
			pthread_cond_broadcast(&t->work);
			pthread_mutex_unlock(&t->lock);
		}
	}
	pthread_mutex_lock(&t->lock);
	*busy = 0;
	for (size_t i = 0; i < t->nslots; i++)
		*busy += t->slots[i].state != SLOT_FREE;
	pthread_mutex_unlock(&t->lock);
	return 0;
}

int thumbnailer_run(struct thumbnailer *t, bool wait, int64_t until,
		    vault_progress_fn progress, thumbnailer_damaged_fn damaged,
		    void *arg, struct thumbnailer_report *r, struct iverr *e)
{
	uint64_t total = 0, done = 0;
	int ret = 0;

	if (progress && vault_thumb_pending_count(t->s, &total, NULL) < 0)
		total = 0;
	for (;;) {
		size_t busy = 0;
		bool reached = false;

		if ((ret = dispatch(t, &busy, e)) < 0)
			break;
		/* Commit what is done, in the owner thread. */
		pthread_mutex_lock(&t->lock);
		if (wait && busy) {
			bool any = false;
			for (size_t i = 0; i < t->nslots; i++)
				any |= t->slots[i].state == SLOT_DONE;
			if (!any)
				pthread_cond_wait(&t->done, &t->lock);
		}
		for (size_t i = 0; i < t->nslots; i++) {
			struct slot *sl = &t->slots[i];
			struct slot copy;

			if (sl->state != SLOT_DONE)
				continue;
			copy = *sl;
			sl->state = SLOT_FREE;
			pthread_mutex_unlock(&t->lock);
			if (copy.ret == 0) {
				ret = vault_thumb_commit(t->s, &copy.job, &copy.st, e);
				if (ret == 0 && r)
					r->made++;
			} else if (copy.ret == -IV_EDAMAGE) {
				if (damaged)
					damaged(arg, copy.job.image_id, copy.err.msg);
				ret = vault_thumb_failed(t->s, &copy.job, copy.err.msg, e);
				if (ret == 0 && r)
					r->damaged++;
			} else {
				/* Out of space, out of memory…: stays queued, stop here. */
				ret = iverr_set(e, copy.err.code, "%s", copy.err.msg);
			}
			reached |= until && copy.job.version_id == until;
			done++;
			if (progress)
				progress(arg, done, total > done ? total : done, 0, 0);
			pthread_mutex_lock(&t->lock);
			if (ret < 0)
				break;
		}
		pthread_mutex_unlock(&t->lock);
		if (ret < 0 || !wait || reached)
			break;
		if (!busy) {
			uint64_t left = 0;
			if ((ret = vault_thumb_pending_count(t->s, &left, e)) < 0 || !left)
				break;
		}
	}
	return ret;
}

void thumbnailer_stop(struct thumbnailer *t)
{
	if (!t)
		return;
	pthread_mutex_lock(&t->lock);
	t->stop = true;
	/* Queued but not started: take back. */
	for (size_t i = 0; i < t->nslots; i++)
		if (t->slots[i].state == SLOT_QUEUED)
			t->slots[i].state = SLOT_FREE;
	pthread_cond_broadcast(&t->work);
	pthread_mutex_unlock(&t->lock);
	for (unsigned i = 0; i < t->nthreads; i++)
		pthread_join(t->threads[i], NULL);
	for (size_t i = 0; i < t->nslots; i++)
		if (t->slots[i].state == SLOT_DONE && t->slots[i].ret == 0)
			vault_discard_staged(t->s, &t->slots[i].st);
	pthread_mutex_destroy(&t->lock);
	pthread_cond_destroy(&t->work);
	pthread_cond_destroy(&t->done);
	free(t->slots);
	membudget_free(t->own);
	free(t);
}

void thumbnailer_on_done(struct thumbnailer *t, void (*fn)(void *arg), void *arg)
{
	pthread_mutex_lock(&t->lock);
	t->on_done = fn;
	t->on_done_arg = arg;
	pthread_mutex_unlock(&t->lock);
}
