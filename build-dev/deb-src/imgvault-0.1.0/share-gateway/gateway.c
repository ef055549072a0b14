/*
 * imgvault-gateway — serves share links over HTTP (DESIGN §8,
 * docs/GATEWAY.md).
 *
 * It holds public keys only: a token's signature and times are checked
 * here, to turn garbage away cheaply, and everything else — revocation, the
 * partner's networks, the use count, the bytes — is asked of imgvaultd over
 * its control socket.  It can read no store and mint no link.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <inttypes.h>
#include <netinet/in.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <microhttpd.h>
#include <sodium.h>

#include "cidr.h"
#include "conf.h"
#include "gw_daemon.h"
#include "gw_http.h"
#include "gw_limits.h"
#include "logline.h"
#include "token.h"

#define MAX_LIST 16
#define BUFFER_MAX (1 << 20)       /* smaller bodies are read whole, then sent */
/* Bodies held in memory, all connections together: past it a body streams
 * through one STREAM_BLOCK while its daemon connection is held (or gets 503
 * when none is free), so slow readers cannot make the gateway grow. */
#define BUFFER_BUDGET (8u << 20)
#define STREAM_BLOCK 65536
#define MAX_AGE_CAP 300            /* revocation reaches caches within this */
#define SIG_CACHE 4096             /* tokens whose signature checked out */
/* Request headers: MHD parses them into a per-connection pool; ours are
 * limits well under what the pool holds, so that a request that passes
 * them always leaves room for the response's headers, and one that does
 * not gets a small 431 (past the pool MHD answers 431 itself). */
#define CONN_MEMORY (32u << 10)
#define HEADERS_MAX 100
#define HEADER_BYTES_MAX (8u << 10)

struct options {
	const char *listen, *control, *keys, *metrics, *public_url;
	const char *tls_cert, *tls_key;
	const char *cors[MAX_LIST];
	size_t n_cors;
	struct cidr proxies[MAX_LIST];
	size_t n_proxies;
	unsigned threads, max_conns, max_per_ip, timeout, header_timeout, pool;
	unsigned ban_after, ban_secs;
	double rate, burst;
	bool json_log, check_config;
};

/* One TCP connection, watched for slow request headers. */
struct watched {
	int fd;
	double since;                /* connected, or last request finished */
	bool in_request;
	struct watched *prev, *next;
};

struct counters {
	uint64_t status[600];
	uint64_t bytes;
	uint64_t forged, expired, rate_limited, banned, daemon_down;
};

struct gateway {
	struct options o;
	struct gw_daemon *daemon;
	struct gw_limits *limits;
	pthread_rwlock_t keys_lock;
	struct token_keyring keys;
	struct stat keys_stat;
	double keys_checked;
	pthread_mutex_t watch_lock;
	struct watched *watched;
	struct counters n;           /* updated with __atomic */
	uint64_t buffered;           /* bytes of bodies held, <= BUFFER_BUDGET (__atomic) */
	/* Keyed hashes of tokens whose signature was good: a verification
	 * costs more than the rest of a request. */
	pthread_mutex_t sig_lock;
	uint8_t sig_key[16];
	uint8_t sig_seen[SIG_CACHE][16];
	volatile sig_atomic_t *stop;
};

/* A request's state, from its headers to its completion. */
struct req {
	struct gateway *g;
	struct gw_conn *conn;        /* held while a body streams */
	struct gw_meta meta;
	uint64_t off, len, sent;
	int status;
	bool head, has_meta, streamed;
	char method[8];
	const char *route;
	char client[CIDR_STR_MAX];
	double start;
};

static double now_mono(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

/* ---- logs: priority prefixes for journald, or JSON; never a token ---- */

static void logf_(const struct gateway *g, int level, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

static void logf_(const struct gateway *g, int level, const char *fmt, ...)
{
	char msg[1024];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	log_line("imgvault-gateway", level, g && g->o.json_log, msg);
}

static void access_log(struct req *r)
{
	char tid[2 * TOKEN_ID_LEN + 1] = "-";

	if (r->has_meta)
		token_hex(r->meta.tid, TOKEN_ID_LEN, tid);
	logf_(r->g, 6, "%s \"%s %s\" %d %" PRIu64 " tid=%s partner=%s %.1fms", r->client,
	      r->method, r->route ? r->route : "-", r->status, r->sent, tid,
	      r->has_meta && r->meta.partner[0] ? r->meta.partner : "-",
	      (now_mono() - r->start) * 1000.0);
}

/* ---- the keyring: re-read when the daemon publishes a new one ---- */

static int keys_refresh(struct gateway *g, bool force)
{
	struct token_keyring fresh;
	struct iverr e = { 0 };
	struct stat st;
	double now = now_mono();

	if (!force && now - g->keys_checked < 1.0)
		return 0;
	g->keys_checked = now;
	if (stat(g->o.keys, &st) < 0)
		return force ? -errno : 0;
	if (!force && st.st_mtim.tv_sec == g->keys_stat.st_mtim.tv_sec &&
	    st.st_mtim.tv_nsec == g->keys_stat.st_mtim.tv_nsec && st.st_ino == g->keys_stat.st_ino)
		return 0;
	if (token_keyring_load(g->o.keys, &fresh, &e) < 0) {
		logf_(g, 3, "%s; keeping the keys loaded before", e.msg);
		return -EINVAL;
	}
	pthread_rwlock_wrlock(&g->keys_lock);
	token_keyring_free(&g->keys);
	g->keys = fresh;
	g->keys_stat = st;
	pthread_rwlock_unlock(&g->keys_lock);
	logf_(g, 6, "loaded %zu signing key(s) from %s", fresh.n, g->o.keys);
	return 0;
}

/* The gateway's own check of a token: 0, 404 (malformed or forged),
 * 410 (expired, or its key retired) or 403 (not valid yet). */
static int token_precheck(struct gateway *g, const char *tok, size_t len)
{
	struct token_wire w;
	const struct token_key *k;
	int64_t now = (int64_t)time(NULL);
	int status;

	uint8_t h[16];
	size_t slot;
	bool seen;

	if (token_decode(tok, len, &w) < 0)
		return 404;
	crypto_generichash(h, sizeof(h), (const uint8_t *)tok, len, g->sig_key, sizeof(g->sig_key));
	slot = (size_t)(h[0] | h[1] << 8 | h[2] << 16) % SIG_CACHE;
	pthread_mutex_lock(&g->sig_lock);
	seen = sodium_memcmp(g->sig_seen[slot], h, sizeof(h)) == 0;
	pthread_mutex_unlock(&g->sig_lock);
	pthread_rwlock_rdlock(&g->keys_lock);
	k = token_keyring_find(&g->keys, w.t.kid);
	if (k && !seen && token_verify(&w, k->pk)) {
		seen = true;
		pthread_mutex_lock(&g->sig_lock);
		memcpy(g->sig_seen[slot], h, sizeof(h));
		pthread_mutex_unlock(&g->sig_lock);
	}
	if (!k || !seen)
		status = 404;
	else if (k->retired || now >= w.t.expires)
		status = 410;
	else if (now < w.t.not_before)
		status = 403;
	else
		status = 0;
	pthread_rwlock_unlock(&g->keys_lock);
	return status;
}

/* ---- responses ---- */

static const char page_csp[] = "default-src 'none'; img-src 'self'; base-uri 'none'; "
			       "form-action 'none'; frame-ancestors 'none'";
static const char file_csp[] = "default-src 'none'; frame-ancestors 'none'; sandbox";

static void security_headers(struct gateway *g, struct MHD_Response *resp, bool page)
{
	MHD_add_response_header(resp, "Content-Security-Policy", page ? page_csp : file_csp);
	MHD_add_response_header(resp, "X-Content-Type-Options", "nosniff");
	MHD_add_response_header(resp, "Referrer-Policy", "no-referrer");
	MHD_add_response_header(resp, "X-Frame-Options", "DENY");
	if (g->o.tls_cert)
		MHD_add_response_header(resp, "Strict-Transport-Security", "max-age=31536000");
}

/* CORS: only for configured origins, never a wildcard. */
static void cors_headers(struct gateway *g, struct MHD_Connection *mc, struct MHD_Response *resp)
{
	const char *origin = MHD_lookup_connection_value(mc, MHD_HEADER_KIND, "Origin");

	if (!origin)
		return;
	for (size_t i = 0; i < g->o.n_cors; i++) {
		if (strcmp(origin, g->o.cors[i]) == 0) {
			MHD_add_response_header(resp, "Access-Control-Allow-Origin", origin);
			MHD_add_response_header(resp, "Access-Control-Expose-Headers",
						"Content-Length, Content-Range, ETag");
			break;
		}
	}
	MHD_add_response_header(resp, "Vary", "Origin");
}

static enum MHD_Result queue(struct req *r, struct MHD_Connection *mc, int status,
			     struct MHD_Response *resp)
{
	enum MHD_Result ret;

	if (!resp)
		return MHD_NO;
	r->status = status;
	ret = MHD_queue_response(mc, (unsigned)status, resp);
	MHD_destroy_response(resp);
	return ret;
}

static enum MHD_Result respond_text(struct req *r, struct MHD_Connection *mc, int status,
				    const char *text)
{
	struct MHD_Response *resp =
		MHD_create_response_from_buffer(strlen(text), (void *)text, MHD_RESPMEM_MUST_COPY);

	if (!resp)
		return MHD_NO;
	MHD_add_response_header(resp, "Content-Type", "text/plain; charset=utf-8");
	MHD_add_response_header(resp, "Cache-Control", "no-store");
	security_headers(r->g, resp, false);
	if (status == 429 || status == 503)
		MHD_add_response_header(resp, "Retry-After", status == 429 ? "10" : "2");
	return queue(r, mc, status, resp);
}

/* The error page of a refused link: no oracle beyond DESIGN §8's codes. */
static enum MHD_Result respond_refused(struct req *r, struct MHD_Connection *mc, int status)
{
	switch (status) {
	case 404: return respond_text(r, mc, 404, "No such link.\n");
	case 410: return respond_text(r, mc, 410, "This link has expired or was revoked; "
				       "ask its owner for a new one.\n");
	case 403: return respond_text(r, mc, 403, "This link cannot be used from here, or not "
				       "yet.\n");
	case 429: return respond_text(r, mc, 429, "Too many requests; slow down.\n");
	case 503: return respond_text(r, mc, 503, "The vault is not answering; try again "
				       "shortly.\n");
	default: return respond_text(r, mc, 500, "Something went wrong on our side.\n");
	}
}

static int status_of_errno(int err)
{
	switch (-err) {
	case ENOENT: return 404;
	case EKEYEXPIRED: case EKEYREVOKED: return 410;
	case EPERM: case EACCES: return 403;
	case EAGAIN: case EBUSY: return 503;
	default: return 500;
	}
}

/* ---- serving a link ---- */

static ssize_t read_body(void *cls, uint64_t pos, char *buf, size_t max)
{
	struct req *r = cls;
	ssize_t n;

	if (!r->conn || pos >= r->len)
		return MHD_CONTENT_READER_END_WITH_ERROR;
	if (max > r->len - pos)
		max = (size_t)(r->len - pos);
	n = gw_fetch_read(r->conn, r->off + pos, buf, max);
	if (n <= 0) {
		logf_(r->g, 3, "reading a link's bytes failed: %s", strerror(n < 0 ? (int)-n : EIO));
		return MHD_CONTENT_READER_END_WITH_ERROR;
	}
	r->sent += (uint64_t)n;
	return n;
}

/* Reads [off, off + len) whole into @buf, for a small body: 0 or -1. */
static int read_whole(struct req *r, uint8_t *buf)
{
	for (uint64_t got = 0; got < r->len;) {
		ssize_t n = gw_fetch_read(r->conn, r->off + got, buf + got, (size_t)(r->len - got));
		if (n <= 0)
			return -1;
		got += (uint64_t)n;
	}
	return 0;
}

/* ---- bodies held in memory, under BUFFER_BUDGET ---- */

struct held {
	struct gateway *g;
	size_t n;
	uint8_t data[];
};

static bool budget_take(struct gateway *g, uint64_t n)
{
	uint64_t cur = __atomic_load_n(&g->buffered, __ATOMIC_RELAXED);

	do {
		if (n > BUFFER_BUDGET - cur)
			return false;
	} while (!__atomic_compare_exchange_n(&g->buffered, &cur, cur + n, false, __ATOMIC_RELAXED,
					      __ATOMIC_RELAXED));
	return true;
}

/* Room for @n bytes of body, or NULL when the budget is spent. */
static struct held *held_new(struct gateway *g, uint64_t n)
{
	struct held *h;

	if (!budget_take(g, n))
		return NULL;
	h = malloc(sizeof(*h) + (n ? n : 1));
	if (!h) {
		__atomic_sub_fetch(&g->buffered, n, __ATOMIC_RELAXED);
		return NULL;
	}
	h->g = g;
	h->n = (size_t)n;
	return h;
}

static void held_free(void *cls)
{
	struct held *h = cls;

	__atomic_sub_fetch(&h->g->buffered, h->n, __ATOMIC_RELAXED);
	free(h);
}

/* MHD sends @h and frees it (and its budget) when done. */
static struct MHD_Response *held_response(struct held *h)
{
	struct MHD_Response *resp =
		MHD_create_response_from_buffer_with_free_callback_cls(h->n, h->data, held_free, h);

	if (!resp)
		held_free(h);
	return resp;
}

static void link_headers(struct req *r, struct MHD_Response *resp, bool partial)
{
	char cc[64], cd[1024], cr[96];
	int64_t left = r->meta.expires - (int64_t)time(NULL);

	if (left < 0)
		left = 0;
	if (left > MAX_AGE_CAP)
		left = MAX_AGE_CAP;
	snprintf(cc, sizeof(cc), "private, max-age=%" PRId64, left);
	MHD_add_response_header(resp, "Cache-Control", cc);
	MHD_add_response_header(resp, "ETag", r->meta.etag);
	MHD_add_response_header(resp, "Accept-Ranges", "bytes");
	MHD_add_response_header(resp, "Content-Type", r->meta.mime);
	gw_disposition(r->meta.name, r->meta.attachment, cd, sizeof(cd));
	MHD_add_response_header(resp, "Content-Disposition", cd);
	if (partial) {
		snprintf(cr, sizeof(cr), "bytes %" PRIu64 "-%" PRIu64 "/%" PRIu64, r->off,
			 r->off + r->len - 1, r->meta.size);
		MHD_add_response_header(resp, "Content-Range", cr);
	}
}

/* Ends the fetch with the daemon now (no body will stream). */
static void fetch_finish(struct req *r, int status, uint64_t bytes, bool complete)
{
	int ret = gw_fetch_done(r->conn, status, bytes, complete);

	gw_conn_give(r->g->daemon, r->conn, ret == -EPROTO);
	r->conn = NULL;
}

/*
 * The body of a GET: from memory when it is small, unlimited and fits the
 * budget (the daemon connection goes back at once), else streamed through
 * one STREAM_BLOCK while the connection is held.  The daemon hands out
 * only the range announced first.  NULL with *@refused set: answer that.
 */
static struct MHD_Response *body_response(struct req *r, int status, int *refused)
{
	struct held *h;
	int ret;

	if (r->meta.data && (h = held_new(r->g, r->len))) {
		/* The body came with the answer. */
		memcpy(h->data, r->meta.data + r->off, r->len);
		r->sent = r->len;
		fetch_finish(r, status, r->sent, true);
		return held_response(h);
	}
	ret = gw_fetch_body(r->conn, r->off, r->len);
	if (ret < 0) {
		*refused = status_of_errno(ret);
		fetch_finish(r, *refused, 0, false);
		return NULL;
	}
	if (!r->meta.uses_max && r->len <= BUFFER_MAX && (h = held_new(r->g, r->len))) {
		if (read_whole(r, h->data) < 0) {
			held_free(h);
			*refused = 500;
			fetch_finish(r, 500, 0, false);
			return NULL;
		}
		r->sent = r->len;
		fetch_finish(r, status, r->len, true);
		return held_response(h);
	}
	r->streamed = true;   /* the connection goes back at completion */
	return MHD_create_response_from_callback(r->len, STREAM_BLOCK, read_body, r, NULL);
}

static enum MHD_Result serve_file(struct req *r, struct MHD_Connection *mc)
{
	const char *range = MHD_lookup_connection_value(mc, MHD_HEADER_KIND, "Range");
	const char *inm = MHD_lookup_connection_value(mc, MHD_HEADER_KIND, "If-None-Match");
	const char *if_range = MHD_lookup_connection_value(mc, MHD_HEADER_KIND, "If-Range");
	struct MHD_Response *resp;
	bool partial = false;
	int ret, refused = 0;

	if (gw_etag_matches(inm, r->meta.etag)) {
		fetch_finish(r, 304, 0, false);
		resp = MHD_create_response_from_buffer(0, NULL, MHD_RESPMEM_PERSISTENT);
		if (!resp)
			return MHD_NO;
		link_headers(r, resp, false);
		security_headers(r->g, resp, false);
		cors_headers(r->g, mc, resp);
		return queue(r, mc, 304, resp);
	}
	r->off = 0;
	r->len = r->meta.size;
	if (range && (!if_range || !strcmp(if_range, r->meta.etag))) {
		ret = gw_range_parse(range, r->meta.size, &r->off, &r->len);
		if (ret == -ERANGE) {
			char cr[64];
			fetch_finish(r, 416, 0, false);
			resp = MHD_create_response_from_buffer(0, NULL, MHD_RESPMEM_PERSISTENT);
			if (!resp)
				return MHD_NO;
			snprintf(cr, sizeof(cr), "bytes */%" PRIu64, r->meta.size);
			MHD_add_response_header(resp, "Content-Range", cr);
			security_headers(r->g, resp, false);
			return queue(r, mc, 416, resp);
		}
		partial = ret == 0;
		if (!partial) {
			r->off = 0;
			r->len = r->meta.size;
		}
	}
	int status = partial ? 206 : 200;
	if (r->head) {
		fetch_finish(r, status, 0, false);
		resp = MHD_create_response_from_callback(r->len, STREAM_BLOCK, read_body, r, NULL);
	} else {
		resp = body_response(r, status, &refused);
		if (refused)
			return respond_refused(r, mc, refused);
	}
	if (!resp)
		return MHD_NO;
	link_headers(r, resp, partial);
	security_headers(r->g, resp, false);
	cors_headers(r->g, mc, resp);
	return queue(r, mc, status, resp);
}

static enum MHD_Result serve_page(struct req *r, struct MHD_Connection *mc, const char *token)
{
	/* Absolute URLs never come from the request (its Host header is the
	 * client's to choose): --public-url, else the store's share.base-url,
	 * else none — the page then has no og:url or og:image. */
	const char *base = r->g->o.public_url ? r->g->o.public_url
			 : r->meta.base_url[0] ? r->meta.base_url : NULL;
	struct MHD_Response *resp;
	char *page;
	/* A limited link's page shows the thumbnail: looking must not use it up. */
	bool limited = r->meta.uses_max != 0;

	fetch_finish(r, 200, 0, false);
	page = gw_preview_page(r->meta.name, base, token,
			       limited || r->meta.attachment ? "/p/" : "/s/", r->meta.attachment);
	if (!page)
		return respond_refused(r, mc, 500);
	resp = MHD_create_response_from_buffer_with_free_callback(strlen(page), page, free);
	if (!resp) {
		free(page);
		return MHD_NO;
	}
	MHD_add_response_header(resp, "Content-Type", "text/html; charset=utf-8");
	MHD_add_response_header(resp, "Cache-Control", "private, no-cache");
	security_headers(r->g, resp, true);
	return queue(r, mc, 200, resp);
}

/* /s/TOKEN (the bytes), /p/TOKEN (the thumbnail, for the page) and
 * /v/TOKEN (the page). */
static enum MHD_Result serve_link(struct req *r, struct MHD_Connection *mc, char kind,
				  const char *token)
{
	struct gateway *g = r->g;
	size_t len = strlen(token);
	char why[256];
	struct cidr addr;
	int status, ret;

	keys_refresh(g, false);
	status = token_precheck(g, token, len);
	if (status) {
		if (status == 404) {
			__atomic_add_fetch(&g->n.forged, 1, __ATOMIC_RELAXED);
			if (cidr_parse_addr(r->client, &addr) == 0)
				gw_limits_bad_token(g->limits, &addr, now_mono());
		} else {
			__atomic_add_fetch(&g->n.expired, 1, __ATOMIC_RELAXED);
		}
		return respond_refused(r, mc, status);
	}
	ret = gw_fetch_begin(g->daemon, token, len, r->client, kind == 'p',
			     kind != 'v' && !r->head, &r->meta, &r->conn, why, sizeof(why));
	if (ret == -EBUSY || ret == -ENOTCONN || ret == -EPROTO) {
		__atomic_add_fetch(&g->n.daemon_down, 1, __ATOMIC_RELAXED);
		logf_(g, ret == -EBUSY ? 4 : 3, "imgvaultd: %s", why);
		return respond_refused(r, mc, 503);
	}
	if (ret < 0)
		return respond_refused(r, mc, status_of_errno(ret));
	r->has_meta = true;
	if (kind == 'v')
		return serve_page(r, mc, token);
	return serve_file(r, mc);
}

/* ---- health and metrics ---- */

static enum MHD_Result serve_health(struct req *r, struct MHD_Connection *mc)
{
	char why[256];
	int ret = gw_daemon_ping(r->g->daemon, why, sizeof(why));

	if (ret < 0) {
		logf_(r->g, 4, "health check: imgvaultd: %s", why);
		return respond_text(r, mc, 503, "imgvaultd is not answering\n");
	}
	return respond_text(r, mc, 200, "ok\n");
}

static enum MHD_Result serve_metrics(struct gateway *g, struct MHD_Connection *mc)
{
	char *text = malloc(65536);
	size_t o = 0, cap = 65536;
	struct MHD_Response *resp;
	enum MHD_Result ret;

	if (!text)
		return MHD_NO;
	o += (size_t)snprintf(text + o, cap - o,
		"# HELP imgvault_gateway_responses_total Responses by HTTP status.\n"
		"# TYPE imgvault_gateway_responses_total counter\n");
	for (int s = 100; s < 600; s++) {
		uint64_t n = __atomic_load_n(&g->n.status[s], __ATOMIC_RELAXED);
		if (n)
			o += (size_t)snprintf(text + o, cap - o,
				"imgvault_gateway_responses_total{status=\"%d\"} %" PRIu64 "\n", s, n);
	}
	o += (size_t)snprintf(text + o, cap - o,
		"# HELP imgvault_gateway_sent_bytes_total Body bytes sent.\n"
		"# TYPE imgvault_gateway_sent_bytes_total counter\n"
		"imgvault_gateway_sent_bytes_total %" PRIu64 "\n"
		"# HELP imgvault_gateway_refused_total Requests refused before the daemon.\n"
		"# TYPE imgvault_gateway_refused_total counter\n"
		"imgvault_gateway_refused_total{reason=\"bad_token\"} %" PRIu64 "\n"
		"imgvault_gateway_refused_total{reason=\"expired\"} %" PRIu64 "\n"
		"imgvault_gateway_refused_total{reason=\"rate\"} %" PRIu64 "\n"
		"imgvault_gateway_refused_total{reason=\"banned\"} %" PRIu64 "\n"
		"# HELP imgvault_gateway_daemon_unavailable_total Fetches imgvaultd could not take.\n"
		"# TYPE imgvault_gateway_daemon_unavailable_total counter\n"
		"imgvault_gateway_daemon_unavailable_total %" PRIu64 "\n"
		"# HELP imgvault_gateway_buffered_bytes Bodies held in memory now.\n"
		"# TYPE imgvault_gateway_buffered_bytes gauge\n"
		"imgvault_gateway_buffered_bytes %" PRIu64 "\n",
		__atomic_load_n(&g->n.bytes, __ATOMIC_RELAXED),
		__atomic_load_n(&g->n.forged, __ATOMIC_RELAXED),
		__atomic_load_n(&g->n.expired, __ATOMIC_RELAXED),
		__atomic_load_n(&g->n.rate_limited, __ATOMIC_RELAXED),
		__atomic_load_n(&g->n.banned, __ATOMIC_RELAXED),
		__atomic_load_n(&g->n.daemon_down, __ATOMIC_RELAXED),
		__atomic_load_n(&g->buffered, __ATOMIC_RELAXED));
	resp = MHD_create_response_from_buffer_with_free_callback(o, text, free);
	if (!resp) {
		free(text);
		return MHD_NO;
	}
	MHD_add_response_header(resp, "Content-Type", "text/plain; version=0.0.4");
	ret = MHD_queue_response(mc, 200, resp);
	MHD_destroy_response(resp);
	return ret;
}

static enum MHD_Result on_metrics(void *cls, struct MHD_Connection *mc, const char *url,
				  const char *method, const char *version, const char *upload,
				  size_t *upload_size, void **req_cls)
{
	(void)version;
	(void)upload;
	(void)upload_size;
	if (!*req_cls) {
		*req_cls = (void *)1;
		return MHD_YES;
	}
	if (strcmp(method, "GET") || strcmp(url, "/metrics"))
		return MHD_NO;
	return serve_metrics(cls, mc);
}

/* ---- requests ---- */

struct header_size { unsigned n; size_t bytes; };

static enum MHD_Result count_header(void *cls, enum MHD_ValueKind kind, const char *key,
				    const char *value)
{
	struct header_size *h = cls;

	(void)kind;
	h->n++;
	h->bytes += strlen(key) + (value ? strlen(value) : 0) + 4;   /* ": " and CRLF */
	return MHD_YES;
}

/* Too many or too large request headers: 431 with a body, before anything
 * else is looked at.  Its headers are few: it must fit where the request's
 * left little room. */
static enum MHD_Result refuse_headers(struct req *r, struct MHD_Connection *mc)
{
	static const char text[] = "request headers too large: at most 100 fields and 8 KiB; "
				   "send fewer or shorter headers\n";
	struct MHD_Response *resp = MHD_create_response_from_buffer(sizeof(text) - 1,
								    (void *)text,
								    MHD_RESPMEM_PERSISTENT);

	if (!resp)
		return MHD_NO;
	MHD_add_response_header(resp, "Content-Type", "text/plain; charset=utf-8");
	MHD_add_response_header(resp, "Connection", "close");
	return queue(r, mc, MHD_HTTP_REQUEST_HEADER_FIELDS_TOO_LARGE, resp);
}

static bool is_trusted(const struct gateway *g, const struct cidr *addr)
{
	for (size_t i = 0; i < g->o.n_proxies; i++)
		if (cidr_contains(&g->o.proxies[i], addr))
			return true;
	return false;
}

/* The client's address: the peer, or — from a trusted proxy only — the
 * last address in X-Forwarded-For that is not a trusted proxy itself. */
static void client_address(struct gateway *g, struct MHD_Connection *mc, char out[CIDR_STR_MAX])
{
	const union MHD_ConnectionInfo *ci =
		MHD_get_connection_info(mc, MHD_CONNECTION_INFO_CLIENT_ADDRESS);
	const char *xff;
	struct cidr peer;
	char addr[INET6_ADDRSTRLEN] = "";

	out[0] = '\0';
	if (!ci || !ci->client_addr)
		return;
	if (ci->client_addr->sa_family == AF_INET)
		inet_ntop(AF_INET, &((const struct sockaddr_in *)ci->client_addr)->sin_addr, addr,
			  sizeof(addr));
	else if (ci->client_addr->sa_family == AF_INET6)
		inet_ntop(AF_INET6, &((const struct sockaddr_in6 *)ci->client_addr)->sin6_addr, addr,
			  sizeof(addr));
	if (cidr_parse_addr(addr, &peer) < 0)
		return;
	cidr_format(&peer, false, out);
	xff = MHD_lookup_connection_value(mc, MHD_HEADER_KIND, "X-Forwarded-For");
	if (!xff || !is_trusted(g, &peer))
		return;
	/* Walk X-Forwarded-For from the right while the hop is a trusted proxy. */
	char hops[2048], *save = NULL, *list[32];
	size_t n = 0;
	if (strlen(xff) >= sizeof(hops))
		return;
	snprintf(hops, sizeof(hops), "%s", xff);
	for (char *h = strtok_r(hops, ", \t", &save); h; h = strtok_r(NULL, ", \t", &save)) {
		if (n == 32) {   /* keep the last 32: the right end is the trusted one */
			memmove(list, list + 1, 31 * sizeof(list[0]));
			n--;
		}
		list[n++] = h;
	}
	while (n--) {
		if (cidr_parse_addr(list[n], &peer) < 0)
			return;
		cidr_format(&peer, false, out);
		if (!is_trusted(g, &peer))
			return;
	}
}

static void watch_mark(struct MHD_Connection *mc, bool in_request, struct gateway *g)
{
	const union MHD_ConnectionInfo *ci =
		MHD_get_connection_info(mc, MHD_CONNECTION_INFO_SOCKET_CONTEXT);
	struct watched *w = ci ? ci->socket_context : NULL;

	if (!w)
		return;
	pthread_mutex_lock(&g->watch_lock);
	w->in_request = in_request;
	w->since = now_mono();
	pthread_mutex_unlock(&g->watch_lock);
}

static enum MHD_Result on_request(void *cls, struct MHD_Connection *mc, const char *url,
				  const char *method, const char *version, const char *upload,
				  size_t *upload_size, void **req_cls)
{
	struct gateway *g = cls;
	struct req *r = *req_cls;
	struct cidr addr;

	(void)version;
	(void)upload;
	if (!r) {
		/* The headers are in: the slow-header watch is over. */
		r = calloc(1, sizeof(*r));
		if (!r)
			return MHD_NO;
		r->g = g;
		r->start = now_mono();
		snprintf(r->method, sizeof(r->method), "%.7s", method);
		*req_cls = r;
		watch_mark(mc, true, g);
		struct header_size hs = { 0 };
		MHD_get_connection_values(mc, MHD_HEADER_KIND, count_header, &hs);
		if (hs.n > HEADERS_MAX || hs.bytes > HEADER_BYTES_MAX) {
			client_address(g, mc, r->client);
			r->route = "-";
			return refuse_headers(r, mc);
		}
		return MHD_YES;
	}
	if (*upload_size) {
		*upload_size = 0;   /* no route takes a body: it is read and dropped */
		return MHD_YES;
	}
	client_address(g, mc, r->client);
	r->head = !strcmp(method, "HEAD");
	r->route = !strncmp(url, "/s/", 3) ? "/s/…" : !strncmp(url, "/v/", 3) ? "/v/…"
		 : !strncmp(url, "/p/", 3) ? "/p/…" : !strcmp(url, "/healthz") ? "/healthz" : "?";
	if (cidr_parse_addr(r->client, &addr) == 0) {
		enum gw_verdict v = gw_limits_take(g->limits, &addr, now_mono());
		if (v != GW_PASS) {
			__atomic_add_fetch(v == GW_BANNED ? &g->n.banned : &g->n.rate_limited, 1,
					   __ATOMIC_RELAXED);
			return respond_refused(r, mc, 429);
		}
	}
	if (!strcmp(method, "OPTIONS")) {
		struct MHD_Response *resp =
			MHD_create_response_from_buffer(0, NULL, MHD_RESPMEM_PERSISTENT);
		if (!resp)
			return MHD_NO;
		cors_headers(g, mc, resp);
		MHD_add_response_header(resp, "Access-Control-Allow-Methods", "GET, HEAD");
		MHD_add_response_header(resp, "Access-Control-Allow-Headers", "Range, If-None-Match");
		MHD_add_response_header(resp, "Access-Control-Max-Age", "600");
		MHD_add_response_header(resp, "Allow", "GET, HEAD, OPTIONS");
		return queue(r, mc, 204, resp);
	}
	if (strcmp(method, "GET") && !r->head) {
		struct MHD_Response *resp = MHD_create_response_from_buffer(
			19, (void *)"Method not allowed\n", MHD_RESPMEM_PERSISTENT);
		if (!resp)
			return MHD_NO;
		MHD_add_response_header(resp, "Allow", "GET, HEAD, OPTIONS");
		security_headers(g, resp, false);
		return queue(r, mc, 405, resp);
	}
	if (!strcmp(url, "/healthz"))
		return serve_health(r, mc);
	if ((url[1] == 's' || url[1] == 'v' || url[1] == 'p') && url[2] == '/' && url[0] == '/')
		return serve_link(r, mc, url[1], url + 3);
	return respond_refused(r, mc, 404);
}

static void on_completed(void *cls, struct MHD_Connection *mc, void **req_cls,
			 enum MHD_RequestTerminationCode toe)
{
	struct gateway *g = cls;
	struct req *r = *req_cls;

	watch_mark(mc, false, g);
	if (!r)
		return;
	if (r->conn) {
		bool complete = toe == MHD_REQUEST_TERMINATED_COMPLETED_OK && r->sent == r->len;
		int ret = gw_fetch_done(r->conn, complete ? r->status : 499, r->sent, complete);
		gw_conn_give(g->daemon, r->conn, ret == -EPROTO);
		r->conn = NULL;
	}
	if (toe != MHD_REQUEST_TERMINATED_COMPLETED_OK && r->status && r->streamed)
		r->status = 499;   /* the client went away (nginx's word for it) */
	if (r->status >= 100 && r->status < 600)
		__atomic_add_fetch(&g->n.status[r->status], 1, __ATOMIC_RELAXED);
	__atomic_add_fetch(&g->n.bytes, r->sent, __ATOMIC_RELAXED);
	if (r->status)
		access_log(r);
	free(r);
	*req_cls = NULL;
}

/* ---- slow clients: request headers must arrive within header_timeout ---- */

static void on_connection(void *cls, struct MHD_Connection *mc, void **socket_context,
			  enum MHD_ConnectionNotificationCode toe)
{
	struct gateway *g = cls;
	struct watched *w = *socket_context;

	if (toe == MHD_CONNECTION_NOTIFY_STARTED) {
		const union MHD_ConnectionInfo *ci =
			MHD_get_connection_info(mc, MHD_CONNECTION_INFO_CONNECTION_FD);
		w = calloc(1, sizeof(*w));
		if (!w || !ci) {
			free(w);
			return;
		}
		w->fd = ci->connect_fd;
		w->since = now_mono();
		pthread_mutex_lock(&g->watch_lock);
		w->next = g->watched;
		if (g->watched)
			g->watched->prev = w;
		g->watched = w;
		pthread_mutex_unlock(&g->watch_lock);
		*socket_context = w;
	} else if (w) {
		pthread_mutex_lock(&g->watch_lock);
		if (w->prev)
			w->prev->next = w->next;
		else
			g->watched = w->next;
		if (w->next)
			w->next->prev = w->prev;
		pthread_mutex_unlock(&g->watch_lock);
		free(w);
		*socket_context = NULL;
	}
}

/* Shuts down connections whose request headers take too long; MHD then
 * closes them itself (the descriptor stays valid: a connection leaves the
 * list, under the same lock, before MHD closes it). */
static void watch_slow(struct gateway *g)
{
	double now = now_mono();

	pthread_mutex_lock(&g->watch_lock);
	for (struct watched *w = g->watched; w; w = w->next)
		if (!w->in_request && now - w->since > g->o.header_timeout) {
			shutdown(w->fd, SHUT_RDWR);
			w->since = now + 3600;   /* once */
		}
	pthread_mutex_unlock(&g->watch_lock);
}

/* ---- start-up ---- */

static const char usage_text[] =
	"usage: imgvault-gateway [OPTIONS]\n"
	"\n"
	"Serves imgvault share links over HTTP: GET/HEAD /s/TOKEN (the image), /v/TOKEN\n"
	"(a preview page), /p/TOKEN (the preview's thumbnail), /healthz.  It holds public\n"
	"keys only and asks imgvaultd, over its control socket, for every fetch.\n"
	"\n"
	"Options:\n"
	"      --listen ADDR:PORT       where to serve (default 127.0.0.1:8080; [::1]:8080)\n"
	"      --control PATH           imgvaultd's control socket\n"
	"                               (default /run/imgvault/control.sock)\n"
	"      --keys PATH              the public signing keys imgvaultd publishes\n"
	"                               (default /run/imgvault/signing-keys.pub)\n"
	"      --metrics ADDR:PORT      serve /metrics (Prometheus) there\n"
	"      --public-url URL         the gateway's public address, for the preview\n"
	"                               page's absolute links (default: the store's\n"
	"                               share.base-url; never the Host header)\n"
	"      --trusted-proxy CIDR     believe X-Forwarded-For from these (repeatable)\n"
	"      --cors-origin ORIGIN     allow this origin to fetch links (repeatable)\n"
	"      --tls-cert FILE --tls-key FILE   serve HTTPS\n"
	"      --threads N              HTTP threads (default 4)\n"
	"      --max-connections N      connections in all (default 1024)\n"
	"      --max-per-ip N           connections per address (default 32)\n"
	"      --rate N                 requests per second per address (default 50)\n"
	"      --burst N                and bursts of (default 100)\n"
	"      --ban-after N            bad tokens in a minute before a ban (default 20)\n"
	"      --ban-time SECONDS       how long a ban lasts (default 600)\n"
	"      --timeout SECONDS        idle connections are closed (default 15)\n"
	"      --header-timeout SECONDS a request's headers must arrive within (default 10)\n"
	"      --daemon-connections N   connections to imgvaultd (default 32)\n"
	"      --log-json               log lines as JSON\n"
	"      --config FILE            settings, [gateway] section (default\n"
	"                               /etc/imgvault/imgvault.conf when it exists);\n"
	"                               flags given here override it\n"
	"      --check-config           check the settings and the command line, start\n"
	"                               nothing\n"
	"  -h, --help, -V, --version\n"
	"\n"
	"Refused links: malformed or forged 404, expired or revoked 410, wrong network or\n"
	"not valid yet 403, too many requests 429.  Tokens never appear in the logs.\n";

static int parse_addr(const char *s, struct sockaddr_storage *ss, socklen_t *len)
{
	char host[128];
	const char *colon = strrchr(s, ':');
	char *end;
	unsigned long port;

	if (!colon || (size_t)(colon - s) >= sizeof(host))
		return -EINVAL;
	port = strtoul(colon + 1, &end, 10);
	if (*end || port == 0 || port > 65535)
		return -EINVAL;
	memcpy(host, s, (size_t)(colon - s));
	host[colon - s] = '\0';
	memset(ss, 0, sizeof(*ss));
	if (host[0] == '[' && host[strlen(host) - 1] == ']') {
		struct sockaddr_in6 *a = (struct sockaddr_in6 *)ss;
		host[strlen(host) - 1] = '\0';
		if (inet_pton(AF_INET6, host + 1, &a->sin6_addr) != 1)
			return -EINVAL;
		a->sin6_family = AF_INET6;
		a->sin6_port = htons((uint16_t)port);
		*len = sizeof(*a);
		return AF_INET6;
	}
	struct sockaddr_in *a = (struct sockaddr_in *)ss;
	if (inet_pton(AF_INET, host, &a->sin_addr) != 1)
		return -EINVAL;
	a->sin_family = AF_INET;
	a->sin_port = htons((uint16_t)port);
	*len = sizeof(*a);
	return AF_INET;
}

static char *read_file(const char *path)
{
	FILE *f = fopen(path, "re");
	char *buf = NULL;
	size_t n = 0;

	if (!f)
		return NULL;
	buf = calloc(1, 1 << 20);
	if (buf)
		n = fread(buf, 1, (1 << 20) - 1, f);
	fclose(f);
	if (buf && (n == 0 || n == (1 << 20) - 1)) {
		free(buf);
		buf = NULL;
	}
	return buf;
}

static unsigned parse_uint(const char *s, const char *what, unsigned lo, unsigned hi)
{
	char *end;
	unsigned long n = strtoul(s, &end, 10);

	if (*end || !*s || n < lo || n > hi) {
		fprintf(stderr, "imgvault-gateway: %s takes a number from %u to %u, not '%s'\n",
			what, lo, hi, s);
		exit(2);
	}
	return (unsigned)n;
}

static volatile sig_atomic_t stop_flag;

static void on_signal(int sig)
{
	(void)sig;
	stop_flag = 1;
}

/*
 * The options: imgvault.conf's [gateway] settings are the first @n_file
 * (conf.h), the command line's follow and override them; a list given on
 * the command line replaces the file's.
 */
static void parse_options(int argc, char **argv, struct options *o, int n_file)
{
	enum { O_LISTEN = 256, O_CONTROL, O_KEYS, O_METRICS, O_PUBLIC, O_PROXY, O_CORS,
	       O_CERT, O_KEY, O_THREADS, O_MAXC, O_PERIP, O_RATE, O_BURST, O_BAN_AFTER,
	       O_BAN_TIME, O_TIMEOUT, O_HTIMEOUT, O_POOL, O_JSON, O_CONFIG, O_CHECK };
	static const struct option longopts[] = {
		{ "listen", required_argument, NULL, O_LISTEN },
		{ "control", required_argument, NULL, O_CONTROL },
		{ "keys", required_argument, NULL, O_KEYS },
		{ "metrics", required_argument, NULL, O_METRICS },
		{ "public-url", required_argument, NULL, O_PUBLIC },
		{ "trusted-proxy", required_argument, NULL, O_PROXY },
		{ "cors-origin", required_argument, NULL, O_CORS },
		{ "tls-cert", required_argument, NULL, O_CERT },
		{ "tls-key", required_argument, NULL, O_KEY },
		{ "threads", required_argument, NULL, O_THREADS },
		{ "max-connections", required_argument, NULL, O_MAXC },
		{ "max-per-ip", required_argument, NULL, O_PERIP },
		{ "rate", required_argument, NULL, O_RATE },
		{ "burst", required_argument, NULL, O_BURST },
		{ "ban-after", required_argument, NULL, O_BAN_AFTER },
		{ "ban-time", required_argument, NULL, O_BAN_TIME },
		{ "timeout", required_argument, NULL, O_TIMEOUT },
		{ "header-timeout", required_argument, NULL, O_HTIMEOUT },
		{ "daemon-connections", required_argument, NULL, O_POOL },
		{ "log-json", no_argument, NULL, O_JSON },
		{ "config", required_argument, NULL, O_CONFIG },
		{ "check-config", no_argument, NULL, O_CHECK },
		{ "help", no_argument, NULL, 'h' },
		{ "version", no_argument, NULL, 'V' },
		{ NULL, 0, NULL, 0 },
	};
	int opt, n_seen = 0;
	bool cli_proxies = false, cli_cors = false;

	*o = (struct options){
		.listen = "127.0.0.1:8080", .control = "/run/imgvault/control.sock",
		.keys = "/run/imgvault/signing-keys.pub", .threads = 4, .max_conns = 1024,
		.max_per_ip = 32, .rate = 50, .burst = 100, .ban_after = 20, .ban_secs = 600,
		.timeout = 15, .header_timeout = 10, .pool = 32,
	};
	while ((opt = getopt_long(argc, argv, "hV", longopts, NULL)) != -1) {
		bool from_cli = ++n_seen > n_file;

		if (opt == O_PROXY && from_cli && !cli_proxies) {
			cli_proxies = true;
			o->n_proxies = 0;
		}
		if (opt == O_CORS && from_cli && !cli_cors) {
			cli_cors = true;
			o->n_cors = 0;
		}
		switch (opt) {
		case O_LISTEN: o->listen = optarg; break;
		case O_CONTROL: o->control = optarg; break;
		case O_KEYS: o->keys = optarg; break;
		case O_METRICS: o->metrics = optarg; break;
		case O_PUBLIC:
			if (strncmp(optarg, "http://", 7) && strncmp(optarg, "https://", 8)) {
				fprintf(stderr, "imgvault-gateway: --public-url takes http(s)://…, "
					"not '%s'\n", optarg);
				exit(2);
			}
			o->public_url = optarg;
			break;
		case O_PROXY:
			if (o->n_proxies == MAX_LIST || cidr_parse(optarg, &o->proxies[o->n_proxies]) < 0) {
				fprintf(stderr, "imgvault-gateway: --trusted-proxy takes an address "
					"or CIDR network (at most %d), not '%s'\n", MAX_LIST, optarg);
				exit(2);
			}
			o->n_proxies++;
			break;
		case O_CORS:
			if (o->n_cors == MAX_LIST || strcmp(optarg, "*") == 0) {
				fprintf(stderr, "imgvault-gateway: --cors-origin takes an origin "
					"such as https://app.example (no '*', at most %d)\n", MAX_LIST);
				exit(2);
			}
			o->cors[o->n_cors++] = optarg;
			break;
		case O_CERT: o->tls_cert = optarg; break;
		case O_KEY: o->tls_key = optarg; break;
		case O_THREADS: o->threads = parse_uint(optarg, "--threads", 1, 64); break;
		case O_MAXC: o->max_conns = parse_uint(optarg, "--max-connections", 1, 65536); break;
		case O_PERIP: o->max_per_ip = parse_uint(optarg, "--max-per-ip", 1, 65536); break;
		case O_RATE: o->rate = parse_uint(optarg, "--rate", 1, 1000000); break;
		case O_BURST: o->burst = parse_uint(optarg, "--burst", 1, 1000000); break;
		case O_BAN_AFTER: o->ban_after = parse_uint(optarg, "--ban-after", 1, 1000000); break;
		case O_BAN_TIME: o->ban_secs = parse_uint(optarg, "--ban-time", 1, 86400 * 30); break;
		case O_TIMEOUT: o->timeout = parse_uint(optarg, "--timeout", 1, 3600); break;
		case O_HTIMEOUT:
			o->header_timeout = parse_uint(optarg, "--header-timeout", 1, 3600);
			break;
		case O_POOL: o->pool = parse_uint(optarg, "--daemon-connections", 1, 48); break;
		case O_JSON: o->json_log = true; break;
		case O_CONFIG: break;           /* read before parsing (main) */
		case O_CHECK: o->check_config = true; break;
		case 'h': fputs(usage_text, stdout); exit(0);
		case 'V': printf("imgvault-gateway %s\n", IMGVAULT_VERSION); exit(0);
		default: fputs(usage_text, stderr); exit(2);
		}
	}
	if (optind != argc || !o->tls_cert != !o->tls_key) {
		fprintf(stderr, "imgvault-gateway: %s\n", optind != argc ? "takes no arguments "
			"(see --help)" : "--tls-cert and --tls-key go together");
		exit(2);
	}
}

static struct MHD_Daemon *start_http(struct gateway *g, char *cert, char *key)
{
	struct sockaddr_storage ss;
	socklen_t sl;
	int family = parse_addr(g->o.listen, &ss, &sl);
	unsigned flags = MHD_USE_EPOLL_INTERNAL_THREAD | MHD_USE_ERROR_LOG;

	if (family < 0) {
		logf_(g, 3, "--listen takes ADDR:PORT (127.0.0.1:8080, [::1]:8080), not '%s'",
		      g->o.listen);
		return NULL;
	}
	if (family == AF_INET6)
		flags |= MHD_USE_IPv6;
	if (cert)
		flags |= MHD_USE_TLS;
	return MHD_start_daemon(flags, 0, NULL, NULL, on_request, g,
		MHD_OPTION_SOCK_ADDR, (struct sockaddr *)&ss,
		MHD_OPTION_THREAD_POOL_SIZE, g->o.threads,
		MHD_OPTION_CONNECTION_LIMIT, g->o.max_conns,
		MHD_OPTION_PER_IP_CONNECTION_LIMIT, g->o.max_per_ip,
		MHD_OPTION_CONNECTION_TIMEOUT, g->o.timeout,
		/* Request headers past the pool are refused (431) by MHD; past
		 * HEADERS_MAX or HEADER_BYTES_MAX by refuse_headers. */
		MHD_OPTION_CONNECTION_MEMORY_LIMIT, (size_t)CONN_MEMORY,
		/* Strict HTTP: no Host in HTTP/1.1, stray bytes in the request
		 * line and the like are 400, not guessed at. */
		MHD_OPTION_STRICT_FOR_CLIENT, 1,
		MHD_OPTION_NOTIFY_COMPLETED, on_completed, g,
		MHD_OPTION_NOTIFY_CONNECTION, on_connection, g,
		cert ? MHD_OPTION_HTTPS_MEM_CERT : MHD_OPTION_END, cert,
		MHD_OPTION_HTTPS_MEM_KEY, key,
		MHD_OPTION_END);
}

int main(int argc, char **argv)
{
	struct gateway *g = calloc(1, sizeof(*g));
	struct MHD_Daemon *http = NULL, *metrics = NULL;
	char *cert = NULL, *key = NULL;
	int ret = 1;

	static struct conf_args ca;     /* g->o points into it to the end */
	char err[1024];
	const char *config = conf_find_option(argc, argv, "config", true);

	if (!g || sodium_init() < 0)
		return 1;
	if ((ret = conf_load(config, CONF_GATEWAY, argc, argv, &ca, err, sizeof(err))) < 0) {
		fprintf(stderr, "<3>imgvault-gateway: %s\n", ret == -ENOMEM ? "out of memory" : err);
		free(g);
		return ret == -ENOMEM ? 1 : CONF_EXIT_BAD;
	}
	ret = 1;
	/* g->o points into ca: it lives as long as the gateway. */
	parse_options(ca.argc, ca.argv, &g->o, ca.n_file);
	if (g->o.check_config) {
		printf("imgvault-gateway: settings are valid (%s); would listen on %s\n",
		       access(conf_path(config), F_OK) == 0 ? conf_path(config) :
		       "no settings file", g->o.listen);
		ret = 0;
		goto out;
	}
	signal(SIGPIPE, SIG_IGN);
	signal(SIGTERM, on_signal);
	signal(SIGINT, on_signal);
	pthread_rwlock_init(&g->keys_lock, NULL);
	pthread_mutex_init(&g->watch_lock, NULL);
	pthread_mutex_init(&g->sig_lock, NULL);
	randombytes_buf(g->sig_key, sizeof(g->sig_key));
	if (geteuid() == 0)
		logf_(g, 4, "running as root: run the gateway as its own user (imgvault-gw) so "
		      "that it can read no store and no secret");
	if (keys_refresh(g, true) < 0) {
		logf_(g, 3, "cannot load the signing keys from %s: %s; imgvaultd publishes them "
		      "when it starts (give the path with --keys)", g->o.keys, strerror(errno));
		goto out;
	}
	if (gw_daemon_new(g->o.control, g->o.pool, &g->daemon) < 0 ||
	    gw_limits_new(g->o.rate, g->o.burst, g->o.ban_after, g->o.ban_secs, &g->limits) < 0) {
		logf_(g, 3, "cannot start: out of memory or a control path too long");
		goto out;
	}
	if (g->o.tls_cert && (!(cert = read_file(g->o.tls_cert)) || !(key = read_file(g->o.tls_key)))) {
		logf_(g, 3, "cannot read the TLS certificate or key (%s, %s)", g->o.tls_cert,
		      g->o.tls_key);
		goto out;
	}
	http = start_http(g, cert, key);
	if (key)
		sodium_memzero(key, strlen(key));
	if (!http) {
		logf_(g, 3, "cannot listen on %s: in use, or not an address of this machine",
		      g->o.listen);
		goto out;
	}
	if (g->o.metrics) {
		struct sockaddr_storage ss;
		socklen_t sl;
		int family = parse_addr(g->o.metrics, &ss, &sl);
		if (family > 0)
			metrics = MHD_start_daemon(MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_ERROR_LOG |
						   (family == AF_INET6 ? MHD_USE_IPv6 : 0), 0, NULL,
						   NULL, on_metrics, g, MHD_OPTION_SOCK_ADDR,
						   (struct sockaddr *)&ss, MHD_OPTION_CONNECTION_LIMIT,
						   16u, MHD_OPTION_END);
		if (!metrics) {
			logf_(g, 3, "cannot serve metrics on %s", g->o.metrics);
			goto out;
		}
	}
	logf_(g, 6, "serving links on %s (imgvaultd at %s)", g->o.listen, g->o.control);
	while (!stop_flag) {
		usleep(250 * 1000);
		watch_slow(g);
		keys_refresh(g, false);
	}
	logf_(g, 6, "stopping");
	ret = 0;
out:
	if (http)
		MHD_stop_daemon(http);
	if (metrics)
		MHD_stop_daemon(metrics);
	free(cert);
	free(key);
	gw_daemon_free(g->daemon);
	gw_limits_free(g->limits);
	token_keyring_free(&g->keys);
	free(g);
	conf_args_release(&ca);
	return ret;
}
