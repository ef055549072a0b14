#include "progress.h"

#include <stdio.h>
#include <time.h>
#include <unistd.h>

static double now_seconds(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

void progress_init(struct progress *p, const char *verb, bool want)
{
	p->verb = verb;
	p->enabled = want && isatty(STDERR_FILENO);
	p->start = now_seconds();
	p->last_draw = 0;
	p->width = 0;
}

const char *progress_bytes(uint64_t n, char buf[32])
{
	static const char *const unit[] = { "B", "kB", "MB", "GB", "TB" };
	double v = (double)n;
	int u = 0;

	while (v >= 1000 && u < 4) {
		v /= 1000;
		u++;
	}
	snprintf(buf, 32, u ? "%.1f %s" : "%.0f %s", v, unit[u]);
	return buf;
}

void progress_update(struct progress *p, uint64_t items, uint64_t items_total,
		     uint64_t bytes, uint64_t bytes_total)
{
	char done[32], total[32], rate[32], eta[32] = "--:--", bar[21];
	double t = now_seconds(), elapsed = t - p->start;
	double frac = bytes_total ? (double)bytes / (double)bytes_total
				  : items_total ? (double)items / (double)items_total : 0;
	int filled = (int)(frac * 20);

	if (!p->enabled || (t - p->last_draw < 0.1 && items < items_total))
		return;
	p->last_draw = t;
	for (int i = 0; i < 20; i++)
		bar[i] = i < filled ? '#' : '.';
	bar[20] = '\0';
	if (elapsed > 0.5 && bytes > 0 && bytes_total > bytes) {
		double left = (double)(bytes_total - bytes) / ((double)bytes / elapsed);
		snprintf(eta, sizeof(eta), "%d:%02d", (int)left / 60, (int)left % 60);
	} else if (bytes_total && bytes >= bytes_total) {
		snprintf(eta, sizeof(eta), "0:00");
	}
	progress_bytes(elapsed > 0 ? (uint64_t)((double)bytes / elapsed) : 0, rate);
	int w = fprintf(stderr, "\r%s [%s] %llu/%llu files  %s/%s  %s/s  ETA %s ",
			p->verb, bar, (unsigned long long)items, (unsigned long long)items_total,
			progress_bytes(bytes, done), progress_bytes(bytes_total, total), rate, eta);
	if (w < p->width)
		fprintf(stderr, "%*s", p->width - w, "");
	p->width = w;
	fflush(stderr);
}

void progress_done(struct progress *p)
{
	if (p->enabled && p->width) {
		fprintf(stderr, "\r%*s\r", p->width, "");
		fflush(stderr);
	}
	p->width = 0;
}

void progress_callback(void *arg, uint64_t items, uint64_t items_total,
		       uint64_t bytes, uint64_t bytes_total)
{
	progress_update(arg, items, items_total, bytes, bytes_total);
}
