/*
 * gw_daemon — the gateway's side of the control socket: a pool of
 * connections to imgvaultd and the fetch conversation (docs/PROTOCOL.md):
 * open a link, announce the body, read it, say how the transfer ended.
 *
 * A connection is taken from the pool for one fetch and given back when the
 * fetch is done; taking never blocks (an exhausted pool is a 503), so an
 * HTTP thread never waits on a transfer another thread is serving.  A
 * pooled connection imgvaultd has closed (it closes idle ones) is never
 * mistaken for a daemon that is down.
 */
#ifndef IMGVAULT_GW_DAEMON_H
#define IMGVAULT_GW_DAEMON_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "token.h"

struct gw_daemon;
struct gw_conn;

/* What the daemon says a link serves. */
struct gw_meta {
	uint64_t size;
	char mime[64];
	char etag[40];
	char name[256];
	bool attachment;
	int64_t expires;
	uint8_t tid[TOKEN_ID_LEN];
	char partner[65];
	unsigned variant;
	uint64_t uses, uses_max;
	char base_url[256];          /* the store's share.base-url; "" if not said */
	const uint8_t *data;         /* the whole body, when it came inline */
};

/* A pool of at most @max connections to the socket at @path. */
int gw_daemon_new(const char *path, unsigned max, struct gw_daemon **out);
void gw_daemon_free(struct gw_daemon *d);
/* Gives it back; @broken: close it instead (after a protocol failure). */
void gw_conn_give(struct gw_daemon *d, struct gw_conn *c, bool broken);

/*
 * Takes a connection and asks the daemon to open @token for @client (an
 * address in text) on it; @preview: its thumbnail, for the preview page
 * (never counted); @want_body: a small body may come inline (m->data).
 * A pooled connection the daemon closed meanwhile (its idle timeout) is
 * not an answer: the request is sent again, once, on a new connection —
 * nothing has reached the HTTP client yet and the daemon decided nothing.
 * 0 with the connection in *@out (give it back after gw_fetch_done), or
 * -errno with words in @why: the daemon's -ENOENT, -EKEYEXPIRED,
 * -EKEYREVOKED, -EPERM, -EACCES, -EAGAIN …; -EBUSY (every connection
 * busy), -ENOTCONN (imgvaultd cannot be reached), -EPROTO (it broke off).
 */
int gw_fetch_begin(struct gw_daemon *d, const char *token, size_t len, const char *client,
		   bool preview, bool want_body, struct gw_meta *m, struct gw_conn **out,
		   char *why, size_t whycap);
/* m->data, when set, points into @c's buffer: valid until the next call. */
/* The range about to be sent, before any FETCH_READ (the daemon hands out
 * nothing outside it): -EKEYREVOKED when a limited link has no use left
 * for it. */
int gw_fetch_body(struct gw_conn *c, uint64_t off, uint64_t len);
/* Up to @cap bytes at @off into @buf: bytes read or -errno. */
ssize_t gw_fetch_read(struct gw_conn *c, uint64_t off, void *buf, size_t cap);
/* How the transfer ended: the status sent, bytes sent, and whether it
 * completed (only then is a use counted).  Sent without waiting: the answer
 * is read before the connection's next request. */
int gw_fetch_done(struct gw_conn *c, int status, uint64_t bytes, bool complete);
/* A STATUS round trip over a pooled connection, as a fetch takes one
 * (retried like gw_fetch_begin): 0, or -errno with words in @why. */
int gw_daemon_ping(struct gw_daemon *d, char *why, size_t whycap);

#endif
