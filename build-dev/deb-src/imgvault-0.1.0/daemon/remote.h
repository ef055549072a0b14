/*
 * remote — the command line's side of the control socket of a running
 * imgvaultd (docs/PROTOCOL.md): finding the socket, one connection, one
 * message out and one in at a time.
 *
 * cli_remote.c runs status, ls, cat, import and rm through it when a daemon
 * holds the store; cli_share.c runs the share-link commands, which exist
 * only through it (the signing key lives in the daemon alone).
 */
#ifndef IMGVAULT_REMOTE_H
#define IMGVAULT_REMOTE_H

#include <stddef.h>
#include <stdint.h>

#include "iverr.h"
#include "proto.h"

struct remote {
	int fd;
	char path[108];                /* where it connected */
	struct proto_out out;          /* the message being built */
	uint8_t in[PROTO_MAX];         /* the last message received */
	struct proto_msg m;            /* ...parsed; points into @in */
};

/* The control socket named in @store's lock file when a daemon holds the
 * store (or the system socket when the lock is root's); -ENOENT if none. */
struct cli;

int remote_daemon_socket(const char *store, char *path, size_t cap);
/* The socket the command line talks to: --control, else the one named in
 * the store's lock (the default store's without --store); -ENOENT: none. */
int remote_socket_of(struct cli *c, char *path, size_t cap);
/* Connects @r to the socket at @path; r->fd is closed by remote_close. */
int remote_connect(struct remote *r, const char *path, struct iverr *e);
/* Sends r->out (begun with proto_begin and filled). */
int remote_send(struct remote *r, struct iverr *e);
/* Receives one message into r->m; an ERROR reply becomes -errno with the
 * daemon's message in @e. */
int remote_recv(struct remote *r, struct iverr *e);
/* Closes the connection and wipes both buffers (replies may hold tokens). */
void remote_close(struct remote *r);

#endif
