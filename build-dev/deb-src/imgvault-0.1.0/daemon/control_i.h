/*
 * control_i.h — internals shared by control.c (the socket, the vault
 * requests), control_share.c (share links for the command line) and
 * control_fetch.c (the gateway's fetches).
 * Not an API.
 */
#ifndef IMGVAULT_CONTROL_I_H
#define IMGVAULT_CONTROL_I_H

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>

#include "control.h"
#include "proto.h"
#include "share.h"

/* Connections (DESIGN §6: each uid gets a bounded share).  Ordinary users
 * share MAX_CONNECTIONS, at most MAX_PER_UID each; root, the gateway's uid
 * and a desktop daemon's owner have allowances of their own, so no one else
 * can starve them. */
#define MAX_CONNECTIONS 64
#define MAX_PER_UID 8
#define MAX_GATEWAY 40            /* imgvault-gateway keeps up to 32; also a
				   * desktop daemon's owner's, who may run it */
#define MAX_ROOT 48               /* root may run the gateway and the CLI */
#define MAX_UIDS (MAX_CONNECTIONS + 3)
#define IDLE_TIMEOUT_MS 30000     /* default of ops.timeout_ms */
#define TRANSFER_ROUNDS 10        /* an import's deadline: this many timeouts */
#define UPLOAD_BUDGET ((uint64_t)256 << 20)   /* every import buffer together */
#define UPLOAD_STEP ((size_t)1 << 20)         /* buffers grow by this much */
#define STOP_POLL_MS 200
#define MAX_RESERVED 256          /* limited links being downloaded at once */
#define AUDIT_BATCH 256           /* fetches noted before a flush is forced */
#define SIG_CACHE 4096            /* tokens whose signature was verified */

/* A limited link whose last byte is being sent: counted against its uses
 * until the transfer ends, so two downloads cannot both take the last use. */
struct reservation {
	uint8_t tid[TOKEN_ID_LEN];
	uint32_t count;          /* transfers reaching the last byte */
	uint64_t bytes;          /* bytes of every transfer under way */
};

struct control {
	struct control_ops ops;
	char path[108];
	int fd;
	pthread_t thread;
	pthread_mutex_t lock;
	pthread_cond_t idle;
	int connections;
	bool stop;               /* read with __atomic_load_n: threads poll it */
	/* under lock: */
	struct uid_share {       /* what one uid holds; conns 0: a free slot */
		uint32_t uid;
		int conns;
		uint64_t upload;     /* bytes of import buffers */
	} shares[MAX_UIDS];
	int others;              /* connections of ordinary users */
	uint64_t upload;         /* bytes of import buffers, everyone's */
	struct reservation reserved[MAX_RESERVED];
	size_t n_reserved;
	struct share_fetch_note *notes;   /* fetches not yet in the audit trail */
	size_t n_notes, cap_notes;
	uint64_t dropped_notes;           /* fetches past MAX_NOTES, not itemised */
	int64_t flushed;                  /* when notes were last written */
	/* Keyed hashes of tokens whose signature checked out: an Ed25519
	 * verification is the costliest step of a fetch. */
	uint8_t sig_key[16];
	uint8_t sig_seen[SIG_CACHE][16];
	struct fetch_cache *cache;        /* small bodies served lately */
};

struct fetch;
struct fetch_cache;

struct conn {
	struct control *c;
	int fd;
	uint32_t uid;
	struct fetch *fetch;     /* the link being served on this connection */
	struct proto_out out;
};

#define LOCKED_MESSAGE "the vault is locked; run imgvault unlock"

/* A locked vault's answer, in words: -ENOKEY (from ops.call, ops.hold)
 * gets LOCKED_MESSAGE in @e; any other @ret is passed on. */
int control_locked(int ret, struct iverr *e);
/* Runs @fn with the peer's own vault (ops.call), a locked one in words. */
int control_call_own(struct conn *k, int (*fn)(struct vault_session *s, void *arg), void *arg,
		     struct iverr *e);

int send_msg(struct conn *k);
int send_error(struct conn *k, int err, const char *msg);
int send_type(struct conn *k, enum proto_type type);

/* Share-link requests of the command line (control_share.c) and the
 * gateway's fetches (control_fetch.c): 0, or < 0 to end the connection. */
int control_share_request(struct conn *k, const struct proto_msg *m);
int control_fetch_request(struct conn *k, const struct proto_msg *m);
/* Ends the connection's fetch (an aborted transfer, if it was not done). */
void control_fetch_end(struct conn *k);
/* Forgets what the fetch cache holds of @uid's vault (imgvault lock), or
 * of everyone's with CONTROL_NOBODY; frees it at the end. */
void control_fetch_forget(struct control *c, uint32_t uid);
/* Writes the noted fetches to the audit trail (@force: whatever their age). */
void control_flush_notes(struct control *c, bool force);

#endif
