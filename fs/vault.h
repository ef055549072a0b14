/*
 * vault — the engine: a store, its users, albums and images.
 *
 * A store is a directory:
 *
 *     STORE/imgvault-store     marker: "imgvault store format 1"
 *     STORE/lock               held (flock) by the one process that owns the store
 *     STORE/catalog.db         sqlite catalog (catalog.h), WAL mode
 *     STORE/blobs/, STORE/tmp/ encrypted blobs (blob.h, blobstore.h)
 *
 * Opening a store takes its lock: one process owns a store at a time and a
 * second one gets -IV_EBUSY naming the owner.  Content is reached through a
 * session, the unlocked keys of one user; a session only ever sees its own
 * user's albums and images.
 *
 * Functions return 0 or -errno with a message in @e.  Nothing here is
 * thread-safe: the owner of a struct vault serialises calls.
 */
#ifndef IMGVAULT_VAULT_H
#define IMGVAULT_VAULT_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#include "blobstore.h"
#include "catalog.h"
#include "image.h"
#include "iverr.h"
#include "keys.h"

#define VAULT_FORMAT 1
#define VAULT_DEFAULT_ALBUM "default"
#define VAULT_MIME_MAX 64

struct vault;
struct vault_session;
struct membudget;
struct vault_file;

/* What the catalog records of a version, sealed: type, size in pixels and
 * the SHA-256 of the plaintext. */
struct version_attrs {
	char mime[VAULT_MIME_MAX];
	uint32_t width, height;
	uint8_t sha256[32];
	uint64_t size;       /* plaintext bytes; 0: the catalog's size */
	int form;            /* record form read (1 or 2); written: 2 */
};

/* ---- stores ----------------------------------------------------------- */

/*
 * Creates an empty store at @dir (which must be missing or empty).  With
 * @server_key_path it is a system-mode store: the key file is created
 * (0400) if it does not exist, and its check value recorded.
 */
int vault_init(const char *dir, const char *server_key_path, struct iverr *e);

/*
 * Opens the store at @dir and takes its lock; @purpose ("imgvault import")
 * is what a second process is told.  The caller owns *out (vault_close).
 */
int vault_open(const char *dir, const char *purpose, struct vault **out, struct iverr *e);
void vault_close(struct vault *v);

bool vault_is_system(const struct vault *v);
/* How many rows listings left out since the last call, because they fail
 * authentication (catalog.h); resets the count. */
uint64_t vault_rows_hidden(struct vault *v);
/* fsck: a catalog whose rows or seal fail is reported instead of refused
 * (unlocks go through, listings show every row). */
void vault_set_lenient(struct vault *v, bool lenient);
/* Who the audit trail names as acting (default: the calling process's
 * uid; a daemon sets its peer's). */
void vault_set_actor(struct vault *v, int64_t uid);
const char *vault_path(const struct vault *v);
struct catalog *vault_catalog(struct vault *v);

/* Whether @sk is this store's server key: -IV_EAUTH when it is not. */
int vault_check_server_key(struct vault *v, const struct server_key *sk, struct iverr *e);

/* Appends to the audit trail as the calling process (best effort: a failure
 * to audit is reported in @e but never hides the original result). */
void vault_audit(struct vault *v, int64_t subject, const char *action, const char *object,
		 const char *result, const char *detail);

/* Store settings: image.max-bytes, image.max-pixels, image.max-frames,
 * image.max-total-pixels, image.decode-memory,
 * image.types (jpeg,png,gif,webp,heic,avif), thumb.size.  Kept in the
 * catalog, so every process that opens the store applies them. */
int vault_config_set(struct vault *v, const char *key, const char *value, struct iverr *e);
typedef int (*vault_config_fn)(const char *key, const char *value, void *arg);
int vault_config_list(struct vault *v, vault_config_fn fn, void *arg);
const struct image_limits *vault_limits(const struct vault *v);
/* Reads the settings again (a daemon's SIGHUP). */
int vault_config_reload(struct vault *v, struct iverr *e);

/* ---- users ------------------------------------------------------------ */

/*
 * Adds a vault for @uid with a fresh user key, sealed in: a server slot
 * (when @sk), a passphrase slot (when @pass), and a recovery slot whose new
 * code is written to @recovery (show it once).  Creates the album "default".
 */
int vault_user_add(struct vault *v, uint32_t uid, const struct server_key *sk,
		   const char *pass, size_t pass_len, const struct keys_kdf_cost *cost,
		   char recovery[KEYS_RECOVERY_CODE_LEN + 1], struct iverr *e);

/*
 * Unlocks @uid's vault with the secret of a slot of @kind.  A wrong secret
 * gives -IV_EAUTH and an audit entry.  The caller owns *out.
 */
int vault_unlock(struct vault *v, uint32_t uid, enum key_slot_kind kind,
		 const void *secret, size_t len, struct vault_session **out,
		 struct iverr *e);
/*
 * vault_unlock in three steps, so that a daemon does not hold its lock for
 * the key derivation (Argon2id: up to a second, and anyone may try a
 * passphrase): begin reads the slot (catalog), derive runs the KDF and
 * touches nothing shared, finish audits and makes the session (catalog)
 * and frees @un.  vault_unlock_abandon frees an @un that will not finish.
 */
struct vault_unlocking;
int vault_unlock_begin(struct vault *v, uint32_t uid, enum key_slot_kind kind,
		       struct vault_unlocking **out, struct iverr *e);
void vault_unlock_derive(struct vault_unlocking *un, const void *secret, size_t len);
int vault_unlock_finish(struct vault_unlocking *un, struct vault_session **out,
			struct iverr *e);
void vault_unlock_abandon(struct vault_unlocking *un);

/* Wipes the keys and frees; NULL is a no-op. */
void vault_session_close(struct vault_session *s);
uint32_t vault_session_uid(const struct vault_session *s);
/* The store a session belongs to. */
struct vault *vault_session_vault(const struct vault_session *s);

/* Seals the session's user key into a (new) slot of @kind, replacing the
 * old one: changing a passphrase re-encrypts nothing.  For a recovery slot
 * a new code is made and written to @recovery. */
int vault_set_slot(struct vault_session *s, enum key_slot_kind kind, const void *secret,
		   size_t len, const struct keys_kdf_cost *cost,
		   char recovery[KEYS_RECOVERY_CODE_LEN + 1], struct iverr *e);

/* Crypto-shreds @uid: key slots wiped, blobs removed, rows deleted. */
int vault_user_delete(struct vault *v, uint32_t uid, struct iverr *e);

struct vault_user_info {
	uint32_t uid;
	bool web_read;
	uint64_t quota;
	unsigned slots;            /* bit (1 << enum key_slot_kind) */
	uint64_t images;
	uint64_t bytes;
	enum catalog_rekey rekey;
};
typedef int (*vault_user_fn)(const struct vault_user_info *u, void *arg);
int vault_user_list(struct vault *v, vault_user_fn fn, void *arg, struct iverr *e);
int vault_user_info(struct vault *v, uint32_t uid, struct vault_user_info *out,
		    struct iverr *e);
/* Every user's uid; the caller frees *uids. */
int vault_user_uids(struct vault *v, uint32_t **uids, size_t *n, struct iverr *e);
/* Settings by name: "web-read" = on|off, "quota" = bytes with an optional
 * K, M, G or T suffix (0 or "none" for none). */
int vault_user_set(struct vault *v, uint32_t uid, const char *key, const char *value,
		   struct iverr *e);

/* ---- albums ----------------------------------------------------------- */

/* Names: 1..255 bytes, no '/', no NUL, not "." or "..".  Any other bytes
 * (newlines, invalid UTF-8) are kept as they are.  -EINVAL or
 * -ENAMETOOLONG otherwise. */
int vault_check_name(const char *name, size_t len, const char *what, struct iverr *e);

int vault_album_find(struct vault_session *s, const char *name, size_t len, int64_t *id,
		     struct iverr *e);
int vault_album_create(struct vault_session *s, const char *name, size_t len, int64_t *id,
		       struct iverr *e);
/* Finds the album or creates it. */
int vault_album_ensure(struct vault_session *s, const char *name, size_t len, int64_t *id,
		       struct iverr *e);
/* -ENOTEMPTY while it holds images. */
int vault_album_remove(struct vault_session *s, int64_t id, struct iverr *e);
/* @name is not NUL-terminated in general; it may hold any byte but '/'. */
typedef int (*vault_album_fn)(int64_t id, const char *name, size_t len, void *arg);
int vault_album_list(struct vault_session *s, vault_album_fn fn, void *arg, struct iverr *e);

/* ---- images ----------------------------------------------------------- */

struct vault_image {
	int64_t id;
	int64_t album_id;
	uint8_t pid[CATALOG_PID_LEN];
	char name[CATALOG_NAME_MAX + 1];   /* NUL-terminated, may hold any byte */
	size_t name_len;
	uint64_t size;                      /* current version; 0 for a placeholder */
	char mime[VAULT_MIME_MAX];
	uint32_t width, height;             /* from the header, at admission */
	uint8_t sha256[32];
	int64_t created, mtime;
	bool damaged;                       /* a stored check failed */
	bool edited;                        /* current differs from pristine */
	int64_t current_version, pristine_version;
	uint64_t pristine_size;
	uint64_t thumb_size;                /* stored (padded); 0 while not made */
	bool thumb_ready;
};

/* The content size of @im's thumbnail (thumb_size is its blob's, padded):
 * one more catalog read and decryption, so asked only when shown. */
uint64_t vault_image_thumb_size(struct vault_session *s, const struct vault_image *im);

int vault_image_find(struct vault_session *s, int64_t album_id, const char *name,
		     size_t len, struct vault_image *out, struct iverr *e);
int vault_image_get(struct vault_session *s, int64_t image_id, struct vault_image *out,
		    struct iverr *e);
/* Sets the image's modification time (utimensat on the mount). */
int vault_image_set_mtime(struct vault_session *s, int64_t image_id, int64_t mtime,
			  struct iverr *e);
/* Owners, for a caller that does not know whose session to use yet. */
int vault_album_owner(struct vault *v, int64_t album_id, uint32_t *uid, struct iverr *e);
int vault_image_owner(struct vault *v, int64_t image_id, uint32_t *uid, int64_t *album_id,
		      struct iverr *e);
typedef int (*vault_image_fn)(const struct vault_image *im, void *arg);
int vault_image_list(struct vault_session *s, int64_t album_id, vault_image_fn fn,
		     void *arg, struct iverr *e);

/*
 * Stores @data as image @name in album @album_id: a new image, or a new
 * version of an existing one (its pristine version stays).  Content is
 * admitted by image.h first; a refusal gives -IV_EREJECT and stores
 * nothing.  The blob is durable before the catalog points at it, so a crash
 * at any moment leaves the old version or the new one.  *out describes the
 * result (may be NULL).
 */
int vault_import(struct vault_session *s, int64_t album_id, const char *name, size_t len,
		 const void *data, size_t size, struct vault_image *out, struct iverr *e);

/*
 * vault_import in two steps, so several images can be encrypted at once:
 * vault_stage admits the content and writes its blob (durable, not yet
 * referenced); vault_commit_staged points the catalog at it in one
 * transaction.  vault_stage touches only the session's keys and the blob
 * store: it may run in several threads at once, each with its own
 * @sniffer, alongside vault_commit_staged and vault_discard_staged in the
 * session's owning thread (but not alongside vault_rekey).  A staged blob
 * that is neither committed nor discarded is an orphan that fsck removes.
 */
struct vault_staged {
	struct blob_id blob;
	uint64_t size;                /* content bytes */
	uint64_t stored;              /* the blob's (padded) plaintext bytes */
	int64_t key_epoch;
	struct version_attrs attrs;
	bool staged;
};
int vault_stage(struct vault_session *s, struct image_sniffer *sniffer, const void *data,
		size_t size, struct vault_staged *out, struct iverr *e);
/* Commits or, on failure, discards @st. */
int vault_commit_staged(struct vault_session *s, int64_t album_id, const char *name,
			size_t len, struct vault_staged *st, struct vault_image *out,
			struct iverr *e);
void vault_discard_staged(struct vault_session *s, struct vault_staged *st);
/* Like vault_commit_staged, as the new version of image @image_id. */
int vault_commit_staged_to(struct vault_session *s, int64_t image_id, struct vault_staged *st,
			   struct vault_image *out, struct iverr *e);
/* Adds an empty placeholder image (no version: size 0, no thumbnail, no
 * pristine); -EEXIST if the name is taken. */
int vault_image_create(struct vault_session *s, int64_t album_id, const char *name,
		       size_t len, struct vault_image *out, struct iverr *e);
/* Records a refused import in the audit trail (@why holds no names). */
void vault_note_refused(struct vault_session *s, const char *why);

/* Renames an album; -EEXIST if the name is taken. */
int vault_album_rename(struct vault_session *s, int64_t album_id, const char *name,
		       size_t len, struct iverr *e);
/*
 * Moves image @image_id to @name in album @album_id.  When that name is
 * taken, the target keeps its identity (id, pristine version, links) and
 * gets the moved image's current version as its new version, atomically;
 * the moved image is gone then.  *result is the image that now has @name.
 */
int vault_image_rename(struct vault_session *s, int64_t image_id, int64_t album_id,
		       const char *name, size_t len, int64_t *result, struct iverr *e);

/* Deletes the image, its pristine version included. */
int vault_image_remove(struct vault_session *s, int64_t image_id, struct iverr *e);

/* ---- reading ---------------------------------------------------------- */

enum vault_variant {
	VAULT_ORIGINAL = 0,   /* the current version */
	VAULT_PRISTINE = 1,   /* the first version ever committed */
	VAULT_THUMB = 2,      /* the current version's thumbnail: -EAGAIN while
			       * it is not made yet (vault_thumb_*) */
};

/*
 * Opens a version of an image for reading; its header is authenticated
 * here.  Damage gives -IV_EDAMAGE with a message naming the image, and an
 * audit entry.  The caller owns *out (vault_file_close).
 */
int vault_file_open(struct vault_session *s, int64_t image_id, enum vault_variant which,
		    struct vault_file **out, struct iverr *e);
uint64_t vault_file_size(const struct vault_file *f);
/* The image the file belongs to (name, ids, current attributes). */
const struct vault_image *vault_file_image(const struct vault_file *f);
/* The SHA-256 the catalog records for the opened version. */
const uint8_t *vault_file_sha256(const struct vault_file *f);
/* The opened file's own type (a thumbnail's may differ from its image's). */
const char *vault_file_mime(const struct vault_file *f);
/*
 * Like pread(2): bytes read, 0 at the end, or -errno; -IV_EDAMAGE with a
 * message naming the image when a chunk fails authentication.  It touches
 * no catalog, so reads of different files may run in parallel with each
 * other and with catalog calls; a file itself is one reader at a time.
 */
ssize_t vault_file_pread(struct vault_file *f, void *buf, size_t len, uint64_t off,
			 struct iverr *e);
/* Records damage found by vault_file_pread in the audit trail (a catalog
 * call: the vault's thread rules apply). */
void vault_file_report_damage(struct vault_file *f, const char *why);
/* Reads the whole file and compares its SHA-256 with the catalog's. */
int vault_file_verify(struct vault_file *f, struct iverr *e);
void vault_file_close(struct vault_file *f);

/* ---- extended attributes ---------------------------------------------- */

/*
 * user.xdg.tags and user.xdg.comment (sealed like names), user.imgvault.
 * expires (ISO 8601 UTC; the image is deleted when it passes), and the
 * read-only user.imgvault.id, .sha256, .mime, .width, .height.  Getting an
 * unset one gives -ENODATA; with @cap 0 only *len is set (its size).
 */
int vault_xattr_get(struct vault_session *s, int64_t image_id, const char *name, char *buf,
		    size_t cap, size_t *len, struct iverr *e);
/* Sets (or with @value NULL removes) one; -EPERM for a read-only one. */
int vault_xattr_set(struct vault_session *s, int64_t image_id, const char *name,
		    const char *value, size_t len, struct iverr *e);
/* The NUL-separated names present; with @cap 0 only *len. */
int vault_xattr_list(struct vault_session *s, int64_t image_id, char *buf, size_t cap,
		     size_t *len, struct iverr *e);
/* Deletes the session user's images whose expiry is at or before @now. */
int vault_expire(struct vault_session *s, int64_t now, size_t *removed, struct iverr *e);

/* ---- thumbnails --------------------------------------------------------- */

/*
 * Every committed version is queued (in the catalog) for a thumbnail;
 * thumbnailer.h runs the queue.  Making one is split like an import:
 * vault_thumb_make may run in any thread (it decrypts, decodes in full,
 * resizes, encrypts), the other calls are for the session's thread.
 */
struct vault_thumb_job {
	int64_t version_id;
	int64_t image_id;
	struct catalog_version ver;
	uint64_t content;             /* the version's content bytes (its blob is padded) */
	enum image_type type;
	uint32_t size;                /* long edge */
	struct membudget *budget;     /* decode memory, shared (membudget.h); NULL: none */
};

/* Loads the job for a queued version of the session's user; -ENOENT if the
 * version is gone or no longer current (the job is dropped then). */
int vault_thumb_job(struct vault_session *s, int64_t version_id, struct vault_thumb_job *job,
		    struct iverr *e);
/* Up to @cap queued version ids, most urgent first. */
int vault_thumb_pending(struct vault_session *s, int64_t *ids, size_t cap, size_t *n,
			struct iverr *e);
int vault_thumb_pending_count(struct vault_session *s, uint64_t *n, struct iverr *e);
/* Queues the thumbnail of the image's current version (again), @urgent
 * ahead of the rest; with @rebuild an existing one is remade. */
int vault_thumb_queue(struct vault_session *s, int64_t image_id, bool urgent, bool rebuild,
		      struct iverr *e);
/* Makes the thumbnail as a staged blob.  -IV_EDAMAGE: the image does not
 * decode (vault_thumb_failed records that). */
int vault_thumb_make(struct vault_session *s, const struct vault_thumb_job *job,
		     struct vault_staged *out, struct iverr *e);
/* Points the catalog at the thumbnail and unqueues the job (or discards
 * it, if the image changed meanwhile). */
int vault_thumb_commit(struct vault_session *s, const struct vault_thumb_job *job,
		       struct vault_staged *st, struct iverr *e);
/* The full decode failed: the image is marked damaged, audited, unqueued
 * (only unqueued when the version is no longer the image's current one). */
int vault_thumb_failed(struct vault_session *s, const struct vault_thumb_job *job,
		       const char *why, struct iverr *e);

/* ---- maintenance ------------------------------------------------------ */

/* Progress of a long operation: items and bytes done out of totals. */
typedef void (*vault_progress_fn)(void *arg, uint64_t items, uint64_t items_total,
				  uint64_t bytes, uint64_t bytes_total);
/* One problem found by fsck, in words ("alice: trips/a.jpg: blob … truncated"). */
typedef void (*vault_problem_fn)(void *arg, const char *problem);

struct vault_fsck_report {
	uint64_t versions_checked;
	uint64_t bytes_verified;      /* decrypted and hashed */
	uint64_t problems;            /* damage: the store is not clean */
	uint64_t orphans_removed;     /* unreferenced blobs and temporaries */
	uint64_t users_unverified;    /* users whose keys were not at hand */
	bool catalog_damaged;
	bool audit_broken;
};

/*
 * Checks the store: catalog integrity, the audit chain, every blob's
 * structure, and for each user with an open session in @sessions, every
 * chunk and SHA-256.  Leftovers of interrupted writes (temporaries and
 * unreferenced blobs) are removed.  With @repair, damaged images are marked
 * damaged in the catalog.  Each problem goes to @problem and the audit trail.
 */
int vault_fsck(struct vault *v, struct vault_session *const *sessions, size_t n_sessions,
	       bool repair, vault_problem_fn problem, vault_progress_fn progress, void *arg,
	       struct vault_fsck_report *r, struct iverr *e);

/*
 * Key rotation, in two calls so the new recovery code can be shown before
 * the long part starts.
 *
 * vault_rekey_begin rotates the session's user key in one transaction: a
 * new key is sealed into the slots that can be resealed (the server slot
 * with @sk, the passphrase slot with @pass; a passphrase slot that cannot be
 * resealed is removed and *dropped_passphrase set), the recovery slot is
 * resealed with @recovery — a code from keys_recovery_code_new that the
 * caller has already shown the user, so that no rotation ever commits with
 * a code nobody saw — all metadata (names, tags, comments, attributes) is
 * re-encrypted, and the old key is
 * kept sealed under the new one.  When a rotation of this user was already
 * under way it changes nothing and sets *resuming (@recovery may be NULL
 * then: vault_user_info says whether one is under way).
 *
 * vault_rekey_run then rewraps every blob header — or, if the rotation was
 * begun with @full, re-encrypts every blob under a new file key — and
 * forgets the old key.  Interrupted, it is resumed by the next begin + run.
 */
int vault_rekey_begin(struct vault_session *s, bool full, const struct server_key *sk,
		      const char *pass, size_t pass_len, const struct keys_kdf_cost *cost,
		      const char *recovery, bool *dropped_passphrase, bool *resuming,
		      struct iverr *e);
int vault_rekey_run(struct vault_session *s, vault_progress_fn progress, void *arg,
		    struct iverr *e);

#endif
