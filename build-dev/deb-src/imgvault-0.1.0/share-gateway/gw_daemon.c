#define _GNU_SOURCE   /* POLLRDHUP */
#include "gw_daemon.h"

#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/types.h>
#include <sys/un.h>
#include <unistd.h>

#include <sodium.h>

#include "proto.h"

#define REPLY_TIMEOUT_S 30

struct gw_conn {
	int fd;
	unsigned unread;             /* answers of requests sent without waiting */
	bool reused;                 /* came from the pool: the daemon may have closed it */
	struct gw_conn *next;        /* in the idle list */
	struct proto_out out;
	uint8_t in[PROTO_MAX];
	struct proto_msg m;
};

struct gw_daemon {
	char path[108];
	unsigned max, open;
	pthread_mutex_t lock;
	struct gw_conn *idle;
};

int gw_daemon_new(const char *path, unsigned max, struct gw_daemon **out)
{
	struct gw_daemon *d = calloc(1, sizeof(*d));

	if (!d)
		return -ENOMEM;
	if (strlen(path) >= sizeof(d->path)) {
		free(d);
		return -ENAMETOOLONG;
	}
	snprintf(d->path, sizeof(d->path), "%s", path);
	d->max = max;
	pthread_mutex_init(&d->lock, NULL);
	*out = d;
	return 0;
}

static void conn_close(struct gw_conn *c)
{
	close(c->fd);
	free(c);
}

void gw_daemon_free(struct gw_daemon *d)
{
	if (!d)
		return;
	while (d->idle) {
		struct gw_conn *c = d->idle;
		d->idle = c->next;
		conn_close(c);
	}
	pthread_mutex_destroy(&d->lock);
	free(d);
}

static struct gw_conn *conn_new(const char *path)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	struct timeval tv = { .tv_sec = REPLY_TIMEOUT_S };
	struct gw_conn *c = malloc(sizeof(*c));
	int err;

	if (!c)
		return NULL;
	snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", path);
	c->fd = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0);
	if (c->fd < 0 || connect(c->fd, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
		err = errno;
		if (c->fd >= 0)
			close(c->fd);
		free(c);
		errno = err;
		return NULL;
	}
	/* A daemon that stops answering must not hold an HTTP thread forever. */
	setsockopt(c->fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	c->next = NULL;
	c->unread = 0;
	c->reused = false;
	return c;
}

/* False when the daemon has closed its end (its idle timeout, a restart):
 * a pooled connection is checked before it is used. */
static bool conn_alive(const struct gw_conn *c)
{
	struct pollfd p = { .fd = c->fd, .events = POLLRDHUP };

	return poll(&p, 1, 0) >= 0 && !(p.revents & (POLLHUP | POLLRDHUP | POLLERR | POLLNVAL));
}

/* A pooled connection that is still open, or (@fresh, or none pooled) a
 * new one. */
static struct gw_conn *conn_take(struct gw_daemon *d, bool fresh)
{
	struct gw_conn *c = NULL;
	int err;

	pthread_mutex_lock(&d->lock);
	while (!fresh && d->idle) {
		c = d->idle;
		d->idle = c->next;
		if (conn_alive(c)) {
			c->reused = true;
			pthread_mutex_unlock(&d->lock);
			return c;
		}
		d->open--;
		conn_close(c);
		c = NULL;
	}
	if (d->open >= d->max) {
		pthread_mutex_unlock(&d->lock);
		errno = EBUSY;
		return NULL;
	}
	d->open++;
	pthread_mutex_unlock(&d->lock);
	c = conn_new(d->path);
	if (c)
		return c;
	err = errno;
	pthread_mutex_lock(&d->lock);
	d->open--;
	pthread_mutex_unlock(&d->lock);
	errno = err;
	return NULL;
}

void gw_conn_give(struct gw_daemon *d, struct gw_conn *c, bool broken)
{
	if (!c)
		return;
	pthread_mutex_lock(&d->lock);
	if (broken) {
		d->open--;
		pthread_mutex_unlock(&d->lock);
		conn_close(c);
		return;
	}
	c->next = d->idle;
	d->idle = c;
	pthread_mutex_unlock(&d->lock);
}

/* Sends the built request and receives one reply: 0, -errno from an ERROR
 * reply (its message in @why), or -EPROTO when the connection failed. */
/* Reads the answers still owed for requests sent without waiting. */
static int drain(struct gw_conn *c)
{
	for (; c->unread; c->unread--) {
		ssize_t n = recv(c->fd, c->in, sizeof(c->in), 0);
		if (n <= 0 || proto_parse(c->in, (size_t)n, &c->m) < 0)
			return -EPROTO;
	}
	return 0;
}

static int roundtrip(struct gw_conn *c, char *why, size_t whycap)
{
	ssize_t n;
	uint64_t err;

	if (drain(c) < 0 || proto_finish(&c->out) < 0 ||
	    send(c->fd, c->out.buf, c->out.len, MSG_NOSIGNAL) != (ssize_t)c->out.len)
		return -EPROTO;
	n = recv(c->fd, c->in, sizeof(c->in), 0);
	if (n <= 0 || proto_parse(c->in, (size_t)n, &c->m) < 0)
		return -EPROTO;
	if (c->m.type != P_ERROR)
		return 0;
	if (proto_get_u64(&c->m, T_ERRNO, &err) < 0 || !err || err > 4095)
		err = EIO;
	if (why && proto_get_str(&c->m, T_MESSAGE, why, whycap) < 0)
		snprintf(why, whycap, "%s", strerror((int)err));
	return -(int)err;
}

static int fetch_open(struct gw_conn *c, const char *token, size_t len, const char *client,
		  bool preview, bool want_body, struct gw_meta *m, char *why, size_t whycap)
{
	const struct proto_field *f;
	uint64_t v;
	int ret;

	memset(m, 0, sizeof(*m));
	proto_begin(&c->out, P_FETCH_OPEN);
	proto_put(&c->out, T_TOKEN, token, len);
	proto_put_str(&c->out, T_CLIENT, client);
	if (preview)
		proto_put_u64(&c->out, T_VARIANT, TOKEN_THUMB);
	if (want_body)
		proto_put_u64(&c->out, T_LENGTH, PROTO_DATA_MAX);   /* a small body inline */
	ret = roundtrip(c, why, whycap);
	sodium_memzero(c->out.buf, c->out.len);   /* the token */
	if (ret < 0)
		return ret;
	if (c->m.type != P_OK || proto_get_u64(&c->m, T_SIZE, &m->size) < 0 ||
	    proto_get_str(&c->m, T_MIME, m->mime, sizeof(m->mime)) < 0 ||
	    proto_get_str(&c->m, T_ETAG, m->etag, sizeof(m->etag)) < 0 ||
	    !(f = proto_get(&c->m, T_TOKEN_ID)) || f->len != TOKEN_ID_LEN)
		return -EPROTO;
	memcpy(m->tid, f->val, TOKEN_ID_LEN);
	if ((f = proto_get(&c->m, T_NAME)) && f->len < sizeof(m->name)) {
		memcpy(m->name, f->val, f->len);
		m->name[f->len] = '\0';
	}
	proto_get_str(&c->m, T_PARTNER, m->partner, sizeof(m->partner));
	if (proto_get_u64(&c->m, T_DISPOSITION, &v) == 0)
		m->attachment = v != 0;
	if (proto_get_u64(&c->m, T_EXPIRES, &v) == 0)
		m->expires = (int64_t)v;
	if (proto_get_u64(&c->m, T_VARIANT, &v) == 0)
		m->variant = (unsigned)v;
	proto_get_u64(&c->m, T_USES, &m->uses);
	proto_get_u64(&c->m, T_USES_MAX, &m->uses_max);
	if (proto_get_str(&c->m, T_URL, m->base_url, sizeof(m->base_url)) < 0 ||
	    (strncmp(m->base_url, "http://", 7) && strncmp(m->base_url, "https://", 8)))
		m->base_url[0] = '\0';
	if ((f = proto_get(&c->m, T_DATA))) {
		if (f->len != m->size)
			return -EPROTO;
		m->data = f->val;
	}
	return 0;
}

int gw_fetch_body(struct gw_conn *c, uint64_t off, uint64_t len)
{
	proto_begin(&c->out, P_FETCH_BODY);
	proto_put_u64(&c->out, T_OFFSET, off);
	proto_put_u64(&c->out, T_LENGTH, len);
	return roundtrip(c, NULL, 0);
}

ssize_t gw_fetch_read(struct gw_conn *c, uint64_t off, void *buf, size_t cap)
{
	const struct proto_field *f;
	int ret;

	proto_begin(&c->out, P_FETCH_READ);
	proto_put_u64(&c->out, T_OFFSET, off);
	proto_put_u64(&c->out, T_LENGTH, cap);
	if ((ret = roundtrip(c, NULL, 0)) < 0)
		return ret;
	if (c->m.type != P_DATA || !(f = proto_get(&c->m, T_DATA)) || f->len > cap)
		return -EPROTO;
	memcpy(buf, f->val, f->len);
	return f->len;
}

int gw_fetch_done(struct gw_conn *c, int status, uint64_t bytes, bool complete)
{
	if (drain(c) < 0)
		return -EPROTO;
	proto_begin(&c->out, P_FETCH_DONE);
	proto_put_u64(&c->out, T_STATUS, (uint64_t)status);
	proto_put_u64(&c->out, T_BYTES, bytes);
	proto_put_u64(&c->out, T_COMPLETE, complete);
	if (proto_finish(&c->out) < 0 ||
	    send(c->fd, c->out.buf, c->out.len, MSG_NOSIGNAL) != (ssize_t)c->out.len)
		return -EPROTO;
	c->unread++;
	return 0;
}

/* A connection for a request, the second time (@attempt 1) a new one;
 * NULL with -EBUSY or -ENOTCONN (the connect error in @why) in *@err. */
static struct gw_conn *take_for(struct gw_daemon *d, int attempt, int *err, char *why,
				size_t whycap)
{
	struct gw_conn *c = conn_take(d, attempt > 0);

	if (c)
		return c;
	*err = errno == EBUSY ? -EBUSY : -ENOTCONN;
	if (why)
		snprintf(why, whycap, "%s", errno == EBUSY ? "every connection to imgvaultd is "
			 "busy" : strerror(errno));
	return NULL;
}

/* Whether a failed first request should be tried again on a new
 * connection: the pooled one was closed under it, so the daemon decided
 * nothing. */
static bool retry(struct gw_daemon *d, struct gw_conn *c, int ret, int attempt)
{
	if (ret != -EPROTO || !c->reused || attempt > 0)
		return false;
	gw_conn_give(d, c, true);
	return true;
}

int gw_fetch_begin(struct gw_daemon *d, const char *token, size_t len, const char *client,
		   bool preview, bool want_body, struct gw_meta *m, struct gw_conn **out,
		   char *why, size_t whycap)
{
	struct gw_conn *c;
	int ret;

	*out = NULL;
	for (int attempt = 0;; attempt++) {
		if (!(c = take_for(d, attempt, &ret, why, whycap)))
			return ret;
		ret = fetch_open(c, token, len, client, preview, want_body, m, why, whycap);
		if (!retry(d, c, ret, attempt))
			break;
	}
	if (ret < 0) {
		gw_conn_give(d, c, ret == -EPROTO);
		return ret;
	}
	*out = c;
	return 0;
}

int gw_daemon_ping(struct gw_daemon *d, char *why, size_t whycap)
{
	struct gw_conn *c;
	int ret;

	for (int attempt = 0;; attempt++) {
		if (!(c = take_for(d, attempt, &ret, why, whycap)))
			return ret;
		proto_begin(&c->out, P_STATUS);
		ret = roundtrip(c, why, whycap);
		if (ret == 0 && c->m.type != P_OK)
			ret = -EPROTO;
		if (!retry(d, c, ret, attempt))
			break;
	}
	if (ret == -EPROTO && why)
		snprintf(why, whycap, "imgvaultd closed the connection or answered garbage");
	gw_conn_give(d, c, ret == -EPROTO);
	return ret;
}
