/*
 * control — imgvaultd's control socket (DESIGN §6, docs/PROTOCOL.md).
 *
 * Each peer is identified by SO_PEERCRED: a uid acts on its own vault only;
 * root may ask for the status, in system mode lock and unlock anyone's, and
 * runs the vault-wide commands (partners, signing keys); the gateway's uid
 * may only fetch through links.  While the daemon runs, the command line
 * works through this socket (status, ls, cat, import, rm, lock, unlock,
 * share, revoke …), so only one process ever writes the store.
 */
#ifndef IMGVAULT_CONTROL_H
#define IMGVAULT_CONTROL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "iverr.h"
#include "vault.h"

#define CONTROL_NOBODY UINT32_MAX

struct share_keys;

/* What the control socket needs of the daemon. */
struct control_ops {
	/* Runs @fn with @uid's session under the daemon's lock; -ENOENT when
	 * @uid has no vault here. */
	int (*call)(void *arg, uint32_t uid, int (*fn)(struct vault_session *s, void *fnarg),
		    void *fnarg);
	/* Tells the mount that an image changed (cache invalidation). */
	void (*changed)(void *arg, int64_t image_id);
	/* Keeps @uid's session from being locked while it is used outside
	 * call() (a read, an import); -ENOKEY when it is locked. */
	int (*hold)(void *arg, uint32_t uid);
	void (*unhold)(void *arg, uint32_t uid);
	/* imgvault lock and unlock of @uid's vault, asked by @actor.  unlock
	 * with @pass NULL uses the server key the daemon holds (system mode). */
	int (*lock)(void *arg, uint32_t uid, uint32_t actor, struct iverr *e);
	int (*unlock)(void *arg, uint32_t uid, uint32_t actor, const void *pass, size_t len,
		      struct iverr *e);
	/* Runs @fn on the store under the daemon's lock, with @uid named in the
	 * audit trail (share links, partners, keys). */
	int (*call_vault)(void *arg, uint32_t uid, int (*fn)(struct vault *v, void *fnarg),
			  void *fnarg);
	void *arg;
	struct share_keys *keys;    /* signs links; NULL: links are off */
	const char *keyring;        /* where the public keyring is published */
	uint32_t gateway_uid;       /* may fetch through links; CONTROL_NOBODY: none */
	uint32_t owner_uid;         /* desktop mode: the one user; CONTROL_NOBODY */
	const char *store;
	const char *mountpoint;
	bool system;
	uint64_t max_bytes;      /* the store's image size limit */
	/* An idle connection is closed, and an import whose next message does
	 * not come, after this many ms (0: 30 s); an import must end within 10
	 * of them. */
	int timeout_ms;
	/* Bytes all imports may buffer together (0: 256 MiB); one uid's share
	 * is at most max_bytes. */
	uint64_t upload_budget;
};

struct control;

/* Listens on @path (replacing a stale socket) and serves in the
 * background.  The caller owns *out (control_stop). */
int control_start(const char *path, const struct control_ops *ops, struct control **out,
		  struct iverr *e);
/* Stops listening, waits for connections to end, removes the socket. */
void control_stop(struct control *c);

#endif
