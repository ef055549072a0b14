/*
 * tree — the mounted tree of DESIGN §5, as FUSE low-level operations.
 *
 *   system mode:  /<user>/<album>/{original,thumb,pristine}/<name>
 *   desktop mode: /<album>/{original,thumb,pristine}/<name>
 *
 * Inode numbers are catalog ids with their kind in the top byte, so the
 * tree needs no table of its own: an album is (ALBUM, album id), a file
 * (FILE, image id << 2 | view), and original/ of an image with content is
 * its current version (VERSION, version id): a version never changes, so
 * nothing the kernel caches of it goes stale.  Every node's st_uid is its
 * owner; modes
 * are real (directories 0700, files 0600, pristine 0400; group read for
 * the readers group where the owner opted into web reading, never on
 * pristine/), the mount uses default_permissions, and every operation
 * checks the caller's uid again here.
 *
 * Writes go to memory and are committed as a new version at flush or
 * fsync (stage on the writer's thread, catalog commit under the lock); a
 * refused image fails close() with the reason in the log and the audit
 * trail, and the previous content stays.  Thumbnails are made by a
 * background worker; a read of one that is not ready waits for it.
 *
 * A vault can be locked while mounted (tree_lock_user): its keys are
 * wiped, its part of the tree answers EACCES, and tree_unlock_user brings
 * it back.
 *
 * Thread-safety: the vault is driven under one lock; decryption of reads
 * and encryption of writes run outside it.
 */
#ifndef IMGVAULT_TREE_H
#define IMGVAULT_TREE_H

#define FUSE_USE_VERSION 34
#include <fuse_lowlevel.h>
#include <stdbool.h>
#include <sys/types.h>

#include "vault.h"

struct tree_config {
	bool system;             /* /<user>/… and allow_other */
	gid_t readers_gid;       /* group of web readers; (gid_t)-1: none */
	bool root_reads;         /* let root read user content (audited) */
	double timeout;          /* attribute and entry cache, seconds */
	void (*log)(void *arg, int level, const char *msg);  /* never keys */
	void *log_arg;
};

struct tree;

/* A tree over @v; sessions are added with tree_add_session.  The caller
 * owns *out (tree_free) and keeps @v open while it lives. */
int tree_new(struct vault *v, const struct tree_config *cfg, struct tree **out,
	     struct iverr *e);
/* Hands an unlocked user to the tree (which then owns the session). */
int tree_add_session(struct tree *t, struct vault_session *s, struct iverr *e);
/* The FUSE session, for cache invalidation notices. */
void tree_set_fuse(struct tree *t, struct fuse_session *se);
/* Starts the background workers (thumbnails, expiry). */
int tree_start(struct tree *t, struct iverr *e);
/* Commits what open files still hold and stops the workers. */
void tree_stop(struct tree *t);
void tree_free(struct tree *t);

/* Runs @fn with @uid's session under the tree's lock (the control socket);
 * -ENOENT when @uid has no vault in this mount, -ENOKEY while it is locked. */
int tree_call(struct tree *t, uint32_t uid, int (*fn)(struct vault_session *s, void *arg),
	      void *arg);
/* Marks @uid's session in use outside the lock (a control-socket read or
 * import): tree_lock_user refuses until tree_unhold.  -ENOENT, -ENOKEY as
 * tree_call. */
int tree_hold(struct tree *t, uint32_t uid);
void tree_unhold(struct tree *t, uint32_t uid);

/*
 * imgvault lock: forgets @uid's keys while the mount stays.  The thumbnail
 * workers are stopped (their jobs stay queued), the session is closed
 * (vault_session_close wipes the keys), and the kernel is told to drop the
 * vault's entries, attributes and cached pages before this returns.  Below
 * the vault's own directory every operation then fails with EACCES.
 * -EBUSY while files of the vault are open in the mount or a tree_hold is
 * in force; -EALREADY when already locked; -ENOENT when @uid has no vault
 * here.  @actor is who asked, for the audit trail.
 */
int tree_lock_user(struct tree *t, uint32_t uid, uint32_t actor, struct iverr *e);
/*
 * imgvault unlock: takes @uid's keys back with the secret of a slot of
 * @kind (vault_unlock: a wrong one is -IV_EAUTH, audited) and restarts its
 * thumbnail queue.  -EALREADY when it is not locked.
 */
int tree_unlock_user(struct tree *t, uint32_t uid, uint32_t actor, enum key_slot_kind kind,
		     const void *secret, size_t len, struct iverr *e);
/* Runs @fn on the store under the tree's lock, with @uid as the actor the
 * audit trail names (vault-wide requests of the control socket). */
int tree_call_vault(struct tree *t, uint32_t uid, int (*fn)(struct vault *v, void *arg),
		    void *arg);
/* Reads the store's settings again (SIGHUP). */
int tree_reload(struct tree *t, struct iverr *e);
/* An image changed outside the mount: invalidate the kernel's caches. */
void tree_changed(struct tree *t, int64_t image_id);

/* The operations table, with the tree as userdata. */
extern const struct fuse_lowlevel_ops tree_ops;

#endif
