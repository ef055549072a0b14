#include "tree.h"

#include <errno.h>
#include <grp.h>
#include <inttypes.h>
#include <pthread.h>
#include <pwd.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <time.h>
#include <unistd.h>

#include <sodium.h>

#include "image.h"
#include "membudget.h"
#include "thumbnailer.h"

/* ---- inode numbers: kind in the top byte, a catalog id below ---------- */

enum kind { K_ROOT, K_USER, K_ALBUM, K_VIEW, K_FILE, K_VERSION };
enum view { V_ORIGINAL, V_THUMB, V_PRISTINE, V_COUNT };

static const char *const view_names[V_COUNT] = { "original", "thumb", "pristine" };

#define INO(kind, val) (((uint64_t)(kind) << 56) | (uint64_t)(val))
#define INO_KIND(ino)  ((ino) == FUSE_ROOT_ID ? K_ROOT : (enum kind)((ino) >> 56))
#define INO_VAL(ino)   ((int64_t)((ino) & ((1ULL << 56) - 1)))
#define VIEW_INO(album, view) INO(K_VIEW, ((uint64_t)(album) << 2) | (view))
#define FILE_INO(image, view) INO(K_FILE, ((uint64_t)(image) << 2) | (view))
#define VERSION_INO(version)  INO(K_VERSION, ((uint64_t)(version) << 2) | V_ORIGINAL)
#define IS_FILE(ino)          (INO_KIND(ino) == K_FILE || INO_KIND(ino) == K_VERSION)

#define THUMB_WAIT_SECONDS 60
#define EXPIRY_EVERY_SECONDS 5
#define RETIRED_SLOTS 256          /* versions replaced lately: see retire() */
#define EXPECTED_SLOTS 64          /* writers on their way: see tree_open() */
#define EXPECTED_SECONDS 2

#ifndef RENAME_NOREPLACE
#define RENAME_NOREPLACE (1 << 0)   /* <linux/fs.h>, not in every libc header */
#endif

struct user_ctx {
	struct tree *t;
	uint32_t uid;
	gid_t gid;                   /* primary group */
	char name[64];
	struct vault_session *s;     /* NULL while locked (tree_lock_user) */
	struct thumbnailer *thumbs;  /* NULL while locked */
	unsigned holds;              /* control-socket uses outside the lock (tree_hold) */
};

/* A cache invalidation to send outside any request handler. */
struct notice {
	fuse_ino_t ino;
	fuse_ino_t parent;           /* with @name: an entry */
	char name[CATALOG_NAME_MAX + 1];
};

struct notices {
	struct notice *v;
	size_t n, cap;
};

struct handle {
	struct handle *prev, *next;  /* tree->handles, under tree->lock */
	pthread_mutex_t lock;
	struct user_ctx *u;
	fuse_ino_t ino;
	int64_t image_id;
	enum view view;
	struct vault_file *f;        /* readers */
	bool writer;
	uint8_t *buf;                /* writers: the pending version */
	size_t len, cap;
	bool loaded;                 /* writers: buf holds a whole content */
	bool dirty;
	bool too_big;                /* writers: a write was refused for size */
	int64_t mtime;               /* writers: set while pending (tree lock) */
	bool mtime_set;
};

struct dirent_buf {
	pthread_mutex_t lock;        /* a reply from data against releasedir */
	struct user_ctx *u;          /* whose names these are; NULL: the system root */
	char *data;
	size_t len, cap;
};

struct tree {
	struct vault *v;
	struct tree_config cfg;
	pthread_mutex_t lock;        /* the vault and everything below */
	pthread_cond_t changed;      /* a thumbnail was made; work to do */
	struct fuse_session *se;
	struct user_ctx *users;
	size_t nusers;
	struct handle *handles;
	struct notices notices;      /* for the worker to send */
	pthread_t worker;
	bool worker_running, stop;
	pthread_key_t sniffer_key;   /* one libmagic handle per FUSE thread */
	uint64_t max_bytes;          /* the size limit, read without the lock: atomic */
	struct membudget *decodes;   /* every user's thumbnail decodes share it */
	struct {
		int64_t version, image;
		uint64_t size;
	} retired[RETIRED_SLOTS];
	size_t nretired;
	struct {
		int64_t image;
		pid_t pid;
		time_t until;
	} expected[EXPECTED_SLOTS];
	size_t nexpected;
};

/* ---- small helpers ---------------------------------------------------- */

static struct tree *tree_of(fuse_req_t req)
{
	return fuse_req_userdata(req);
}

/* The store's image size limit, for writers that do not hold the lock. */
static uint64_t max_bytes(struct tree *t)
{
	return __atomic_load_n(&t->max_bytes, __ATOMIC_RELAXED);
}

static void tree_log(struct tree *t, int level, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

static void tree_log(struct tree *t, int level, const char *fmt, ...)
{
	char msg[768];
	va_list ap;

	if (!t->cfg.log)
		return;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	t->cfg.log(t->cfg.log_arg, level, msg);
}

static struct user_ctx *user_by_uid(struct tree *t, uint32_t uid)
{
	for (size_t i = 0; i < t->nusers; i++)
		if (t->users[i].uid == uid)
			return &t->users[i];
	return NULL;
}

static int notices_push(struct notices *l, fuse_ino_t ino, fuse_ino_t parent,
			const char *name, size_t len)
{
	if (l->n == l->cap) {
		size_t cap = l->cap ? 2 * l->cap : 16;
		struct notice *p = realloc(l->v, cap * sizeof(*p));
		if (!p)
			return -ENOMEM;
		l->v = p;
		l->cap = cap;
	}
	struct notice *n = &l->v[l->n++];
	n->ino = ino;
	n->parent = parent;
	snprintf(n->name, sizeof(n->name), "%.*s", (int)len, name ? name : "");
	return 0;
}

/* Sends invalidations to the kernel.  Never with the lock held: the
 * kernel may call back in. */
static void notices_send(struct tree *t, const struct notices *l)
{
	if (!t->se)
		return;
	for (size_t i = 0; i < l->n; i++) {
		const struct notice *n = &l->v[i];
		if (n->name[0])
			fuse_lowlevel_notify_inval_entry(t->se, n->parent, n->name, strlen(n->name));
		else
			fuse_lowlevel_notify_inval_inode(t->se, n->ino, 0, 0);
	}
}

/* Queues an invalidation; the worker thread sends it.  Lock held. */
static void notice(struct tree *t, fuse_ino_t ino, fuse_ino_t parent, const char *name)
{
	/* Out of memory: caches expire by their timeout anyway. */
	notices_push(&t->notices, ino, parent, name, name ? strlen(name) : 0);
	pthread_cond_broadcast(&t->changed);
}

static void notice_image(struct tree *t, int64_t image_id)
{
	for (int v = 0; v < V_COUNT; v++)
		notice(t, FILE_INO(image_id, v), 0, NULL);
}

/*
 * A file's inode number.  original/ of an image with content is numbered
 * by its current version: a version never changes, so what the kernel
 * caches of it is never stale, and an overwrite or a rename over the image
 * gives the name another inode, while readers still on the old one keep
 * their bytes.  Nothing a writer does to its inode (truncation, size)
 * reaches the inode of the version after its own.  The other files are
 * numbered by their image.
 */
static fuse_ino_t file_ino(const struct vault_image *im, enum view view)
{
	if (view == V_ORIGINAL && im->current_version)
		return VERSION_INO(im->current_version);
	return FILE_INO(im->id, view);
}

/* Whether image @image_id has a writer, or one on its way.  Lock held. */
static bool being_written(struct tree *t, int64_t image_id)
{
	time_t now = time(NULL);

	for (struct handle *h = t->handles; h; h = h->next)
		if (h->writer && h->image_id == image_id)
			return true;
	for (size_t i = 0; i < EXPECTED_SLOTS; i++)
		if (t->expected[i].image == image_id && t->expected[i].until >= now)
			return true;
	return false;
}

/*
 * Notes that process @pid, a writer of @image_id, is on its way back
 * through a lookup; false if it was already (it came back to the version's
 * inode all the same: let it write there rather than fail).  Lock held.
 */
static bool expect_writer(struct tree *t, int64_t image_id, pid_t pid)
{
	time_t now = time(NULL);
	size_t i;

	for (i = 0; i < EXPECTED_SLOTS; i++)
		if (t->expected[i].image == image_id && t->expected[i].pid == pid &&
		    t->expected[i].until >= now)
			return false;
	i = t->nexpected++ % EXPECTED_SLOTS;
	t->expected[i].image = image_id;
	t->expected[i].pid = pid;
	t->expected[i].until = now + EXPECTED_SECONDS;
	return true;
}

/*
 * The inode a name shows.  While an image is being written, its original/
 * is the image's own inode, not its version's: the kernel grows the size
 * of the inode a writer writes to, and readers of the version must not see
 * that (they would read zeros past its end).  Lock held.
 */
static fuse_ino_t name_ino(struct tree *t, const struct vault_image *im, enum view view)
{
	if (view == V_ORIGINAL && im->current_version && being_written(t, im->id))
		return FILE_INO(im->id, V_ORIGINAL);
	return file_ino(im, view);
}

/*
 * Version @version of image @image_id was replaced (its row may be gone).
 * The kernel may have checked a name against it just before, and its open
 * or stat is on the way: they still find the image.  Lock held.
 */
static void retire(struct tree *t, int64_t version, int64_t image_id, uint64_t size)
{
	size_t i = t->nretired % RETIRED_SLOTS;

	if (!version)
		return;
	t->nretired++;
	t->retired[i].version = version;
	t->retired[i].image = image_id;
	t->retired[i].size = size;
}

/* An open file on inode @ino, if any.  Lock held. */
static struct handle *handle_on(struct tree *t, fuse_ino_t ino)
{
	for (struct handle *h = t->handles; h; h = h->next)
		if (h->ino == ino)
			return h;
	return NULL;
}

/*
 * The image a file node shows, or 0.  A version's inode outlives the
 * version while files are open on it; they know their image.  Lock held.
 */
static int64_t file_image(struct tree *t, fuse_ino_t ino)
{
	struct catalog_version ver;
	struct handle *h;

	if (INO_KIND(ino) == K_FILE)
		return INO_VAL(ino) >> 2;
	if (catalog_version_get(vault_catalog(t->v), INO_VAL(ino) >> 2, &ver, NULL) == 0)
		return ver.image_id;
	if ((h = handle_on(t, ino)))
		return h->image_id;
	for (size_t i = 0; i < RETIRED_SLOTS; i++)
		if (t->retired[i].version == INO_VAL(ino) >> 2)
			return t->retired[i].image;
	return 0;
}

/*
 * The size of a version's inode: that version's, whoever asks.  The kernel
 * keeps one size per inode for every file open on it, and a reader still
 * on a replaced version must not be cut to the new one's.  -1: unknown.
 * Lock held.
 */
static off_t version_size(struct tree *t, fuse_ino_t ino, const struct vault_image *im)
{
	int64_t vid = INO_VAL(ino) >> 2;

	/* Content sizes, from the sealed records (blobs are padded). */
	if (vid == im->current_version)
		return (off_t)im->size;
	if (vid == im->pristine_version)
		return (off_t)im->pristine_size;
	for (size_t i = 0; i < RETIRED_SLOTS; i++)
		if (t->retired[i].version == INO_VAL(ino) >> 2)
			return (off_t)t->retired[i].size;
	for (struct handle *h = t->handles; h; h = h->next)
		if (h->ino == ino && h->f && !h->writer &&
		    file_ino(vault_file_image(h->f), V_ORIGINAL) == ino)
			return (off_t)vault_file_size(h->f);
	return -1;
}

/* A file's generation: image ids are reused after a delete, and the kernel
 * must not take a new image for an old one it still holds. */
static uint64_t file_generation(const struct vault_image *im)
{
	uint64_t g;

	memcpy(&g, im->pid, sizeof(g));
	return g;
}

static struct image_sniffer *thread_sniffer(struct tree *t)
{
	struct image_sniffer *s = pthread_getspecific(t->sniffer_key);

	if (!s && image_sniffer_new(&s, NULL) == 0)
		pthread_setspecific(t->sniffer_key, s);
	return s;
}

static void free_sniffer(void *p)
{
	image_sniffer_free(p);
}

/* Whether the caller is in group @gid. */
static bool caller_in_group(fuse_req_t req, gid_t gid)
{
	const struct fuse_ctx *ctx = fuse_req_ctx(req);
	gid_t groups[64];
	int n;

	if (ctx->gid == gid)
		return true;
	n = fuse_req_getgroups(req, 64, groups);
	for (int i = 0; i < n && i < 64; i++)
		if (groups[i] == gid)
			return true;
	return false;
}

static bool web_readable(struct tree *t, struct user_ctx *u, enum view view)
{
	struct vault_user_info info;

	if (t->cfg.readers_gid == (gid_t)-1 || view == V_PRISTINE)
		return false;
	return vault_user_info(t->v, u->uid, &info, NULL) == 0 && info.web_read;
}

/*
 * May the caller do this to @u's vault?  The kernel has checked the mode
 * bits already (default_permissions); this is the daemon's own check, as
 * the kernel's attribute cache is shared by every user.
 */
static int allowed(struct tree *t, fuse_req_t req, struct user_ctx *u, enum view view,
		   bool write)
{
	const struct fuse_ctx *ctx = fuse_req_ctx(req);

	if (ctx->uid == u->uid)
		return 0;
	if (ctx->uid == 0) {
		bool ok = !write && t->cfg.root_reads;
		vault_audit(t->v, u->uid, "root-access", "", ok ? "ok" : "refused",
			    write ? "write" : "read");
		return ok ? 0 : -EACCES;
	}
	if (!write && web_readable(t, u, view) && caller_in_group(req, t->cfg.readers_gid))
		return 0;
	return -EACCES;
}

/*
 * allowed(), and the vault's keys at hand: below a locked vault's own
 * directory nothing can be read or changed, whoever asks (docs/MOUNT.md).
 * Lock held.
 */
static int reachable(struct tree *t, fuse_req_t req, struct user_ctx *u, enum view view,
		     bool write)
{
	int ret = allowed(t, req, u, view, write);

	return ret == 0 && !u->s ? -EACCES : ret;
}

/* The owner of a node, or NULL (-ENOENT). */
static struct user_ctx *owner_of(struct tree *t, fuse_ino_t ino, int64_t *album, int *view)
{
	uint32_t uid;
	int64_t val = INO_VAL(ino), a = 0;

	*view = V_ORIGINAL;
	switch (INO_KIND(ino)) {
	case K_ROOT:
		return t->cfg.system ? NULL : &t->users[0];
	case K_USER:
		return user_by_uid(t, (uint32_t)val);
	case K_ALBUM:
		a = val;
		break;
	case K_VIEW:
		a = val >> 2;
		*view = (int)(val & 3);
		break;
	case K_FILE:
	case K_VERSION:
		*view = (int)(val & 3);
		if (vault_image_owner(t->v, file_image(t, ino), &uid, &a, NULL) < 0)
			return NULL;
		*album = a;
		return user_by_uid(t, uid);
	}
	if (vault_album_owner(t->v, a, &uid, NULL) < 0)
		return NULL;
	*album = a;
	return user_by_uid(t, uid);
}

/* ---- attributes ------------------------------------------------------- */

static void dir_attr(struct tree *t, struct user_ctx *u, fuse_ino_t ino, enum view view,
		     struct stat *st)
{
	bool web = u && web_readable(t, u, view);

	memset(st, 0, sizeof(*st));
	st->st_ino = ino;
	st->st_nlink = 2;
	st->st_mode = S_IFDIR | 0700 | (web ? 0050 : 0);
	st->st_uid = u ? u->uid : 0;
	st->st_gid = u ? (web ? t->cfg.readers_gid : u->gid) : 0;
	if (!u)
		st->st_mode = S_IFDIR | 0755;   /* the system root: users traverse it */
	st->st_mtime = st->st_ctime = st->st_atime = time(NULL);
}

static void file_attr(struct tree *t, struct user_ctx *u, const struct vault_image *im,
		      enum view view, struct stat *st)
{
	bool web = web_readable(t, u, view);

	memset(st, 0, sizeof(*st));
	st->st_ino = name_ino(t, im, view);
	st->st_nlink = 1;
	st->st_uid = u->uid;
	st->st_gid = web ? t->cfg.readers_gid : u->gid;
	switch (view) {
	case V_ORIGINAL:
		st->st_mode = S_IFREG | 0600 | (web ? 0040 : 0);
		st->st_size = (off_t)im->size;
		break;
	case V_THUMB:
		st->st_mode = S_IFREG | 0400 | (web ? 0040 : 0);
		st->st_size = u->s ? (off_t)vault_image_thumb_size(u->s, im) : (off_t)im->thumb_size;
		break;
	default:
		st->st_mode = S_IFREG | 0400;
		st->st_size = (off_t)im->pristine_size;
	}
	st->st_blksize = 65536;
	st->st_blocks = (st->st_size + 511) / 512;
	st->st_mtime = st->st_atime = (time_t)im->mtime;
	st->st_ctime = (time_t)im->mtime;
}

/* Whether image @im shows in @view. */
static bool visible(const struct vault_image *im, enum view view)
{
	return view == V_ORIGINAL || (view == V_THUMB && im->current_version) ||
	       (view == V_PRISTINE && im->pristine_version);
}

/*
 * Fills @st for any node; @h is the open file the request came through, if
 * any.  A file replaced since it was opened keeps the attributes of what
 * its readers read.  The caller holds the lock.
 */
static int node_attr(struct tree *t, fuse_req_t req, fuse_ino_t ino, struct handle *h,
		     struct stat *st)
{
	struct vault_image im;
	struct user_ctx *u;
	int64_t album;
	off_t size;
	int view, ret;

	if (INO_KIND(ino) == K_ROOT && t->cfg.system) {
		dir_attr(t, NULL, ino, V_ORIGINAL, st);
		return 0;
	}
	u = owner_of(t, ino, &album, &view);
	if (!u)
		return -ENOENT;
	if ((ret = allowed(t, req, u, view, false)) < 0 && !IS_FILE(ino) &&
	    INO_KIND(ino) != K_VIEW)
		ret = 0;   /* a directory's own attributes are not content */
	/* Locked: the vault's own directory stays, nothing below it. */
	if (ret == 0 && !u->s && INO_KIND(ino) != K_ROOT && INO_KIND(ino) != K_USER)
		ret = -EACCES;
	if (ret < 0)
		return ret;
	if (!IS_FILE(ino)) {
		dir_attr(t, u, ino, view, st);
		return 0;
	}
	if (!h)
		h = handle_on(t, ino);
	if (vault_image_get(u->s, file_image(t, ino), &im, NULL) < 0)
		return -ENOENT;
	if (!visible(&im, view) && !h)
		return -ENOENT;
	file_attr(t, u, &im, view, st);
	st->st_ino = ino;
	if (INO_KIND(ino) == K_VERSION && (size = version_size(t, ino, &im)) >= 0)
		st->st_size = size;
	else if (INO_KIND(ino) == K_FILE && h && h->f)
		st->st_size = (off_t)vault_file_size(h->f);   /* a thumbnail made since */
	st->st_blocks = (st->st_size + 511) / 512;
	return 0;
}

/*
 * A writer sees the size of its pending bytes on the image's own inode
 * (name_ino).  On a version's inode (a writer that came another way) the
 * kernel keeps the committed size: a writer's size would cut the reads of
 * that version's readers short.
 */
static void pending_size(struct handle *h, struct stat *st)
{
	if (!h->writer || (INO_KIND(h->ino) != K_FILE && st->st_size != 0))
		return;
	pthread_mutex_lock(&h->lock);
	if (h->loaded)
		st->st_size = (off_t)h->len;
	pthread_mutex_unlock(&h->lock);
	st->st_blocks = (st->st_size + 511) / 512;
}

static void reply_entry(struct tree *t, fuse_req_t req, const struct stat *st,
			uint64_t generation)
{
	struct fuse_entry_param e;

	memset(&e, 0, sizeof(e));
	e.ino = st->st_ino;
	e.generation = generation;
	e.attr = *st;
	e.attr_timeout = t->cfg.timeout;
	/* A file's name is looked up again at every use: a commit gives it
	 * another inode (file_ino), and so may a rename over it. */
	e.entry_timeout = S_ISDIR(st->st_mode) ? t->cfg.timeout : 0;
	fuse_reply_entry(req, &e);
}

/* ---- lookup and listing ----------------------------------------------- */

static void tree_lookup(fuse_req_t req, fuse_ino_t parent, const char *name)
{
	struct tree *t = tree_of(req);
	struct vault_image im;
	struct user_ctx *u;
	struct stat st;
	uint64_t gen = 0;
	int64_t album, id;
	int view, ret = 0;
	size_t len = strlen(name);

	pthread_mutex_lock(&t->lock);
	if (INO_KIND(parent) == K_ROOT && t->cfg.system) {
		struct passwd *pw = getpwnam(name);
		u = pw ? user_by_uid(t, pw->pw_uid) : NULL;
		if (!u)
			ret = -ENOENT;
		else
			dir_attr(t, u, INO(K_USER, u->uid), V_ORIGINAL, &st);
		goto out;
	}
	u = owner_of(t, parent, &album, &view);
	if (!u) {
		ret = -ENOENT;
		goto out;
	}
	if ((ret = reachable(t, req, u, INO_KIND(parent) == K_VIEW ? view : V_ORIGINAL,
			     false)) < 0)
		goto out;
	switch (INO_KIND(parent)) {
	case K_ROOT:
	case K_USER:
		if ((ret = vault_album_find(u->s, name, len, &id, NULL)) == 0)
			dir_attr(t, u, INO(K_ALBUM, id), V_ORIGINAL, &st);
		break;
	case K_ALBUM:
		ret = -ENOENT;
		for (int v = 0; v < V_COUNT; v++) {
			if (!strcmp(name, view_names[v])) {
				dir_attr(t, u, VIEW_INO(album, v), v, &st);
				ret = 0;
			}
		}
		break;
	case K_VIEW:
		ret = vault_image_find(u->s, album, name, len, &im, NULL);
		if (ret == 0 && !visible(&im, view))
			ret = -ENOENT;
		if (ret == 0) {
			file_attr(t, u, &im, view, &st);
			gen = file_generation(&im);
		}
		break;
	default:
		ret = -ENOTDIR;
	}
out:
	pthread_mutex_unlock(&t->lock);
	if (ret < 0)
		fuse_reply_err(req, ret == -EINVAL || ret == -ENAMETOOLONG ? -ret :
			       ret == -EACCES ? EACCES :
			       ret == -IV_EDAMAGE ? EIO : ENOENT);   /* a row that fails: damage */
	else
		reply_entry(t, req, &st, gen);
}

static void tree_getattr(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	struct tree *t = tree_of(req);
	struct handle *h = fi ? (struct handle *)(uintptr_t)fi->fh : NULL;
	struct stat st;
	int ret;

	pthread_mutex_lock(&t->lock);
	ret = node_attr(t, req, ino, h, &st);
	pthread_mutex_unlock(&t->lock);
	if (ret == 0 && h)
		pending_size(h, &st);
	if (ret < 0)
		fuse_reply_err(req, -ret);
	else
		fuse_reply_attr(req, &st, t->cfg.timeout);
}

static int dirbuf_add(fuse_req_t req, struct dirent_buf *b, const char *name, fuse_ino_t ino,
		      mode_t mode)
{
	struct stat st = { .st_ino = ino, .st_mode = mode };
	size_t need = fuse_add_direntry(req, NULL, 0, name, NULL, 0);

	if (b->len + need > b->cap) {
		size_t cap = b->cap ? 2 * b->cap : 4096;
		while (cap < b->len + need)
			cap *= 2;
		char *p = realloc(b->data, cap);
		if (!p)
			return -ENOMEM;
		b->data = p;
		b->cap = cap;
	}
	fuse_add_direntry(req, b->data + b->len, need, name, &st, (off_t)(b->len + need));
	b->len += need;
	return 0;
}

struct list_ctx {
	fuse_req_t req;
	struct dirent_buf *b;
	enum view view;
};

static int list_album(int64_t id, const char *name, size_t len, void *arg)
{
	struct list_ctx *x = arg;
	char n[CATALOG_NAME_MAX + 1];

	snprintf(n, sizeof(n), "%.*s", (int)len, name);
	return dirbuf_add(x->req, x->b, n, INO(K_ALBUM, id), S_IFDIR);
}

static int list_image(const struct vault_image *im, void *arg)
{
	struct list_ctx *x = arg;

	if (!visible(im, x->view))
		return 0;
	return dirbuf_add(x->req, x->b, im->name, name_ino(tree_of(x->req), im, x->view),
			  S_IFREG);
}

static void tree_opendir(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	struct tree *t = tree_of(req);
	struct dirent_buf *b = calloc(1, sizeof(*b));
	struct list_ctx x = { .req = req, .b = b };
	struct user_ctx *u = NULL;
	int64_t album;
	int view = V_ORIGINAL, ret = 0;

	if (!b) {
		fuse_reply_err(req, ENOMEM);
		return;
	}
	pthread_mutex_init(&b->lock, NULL);
	pthread_mutex_lock(&t->lock);
	if (!(INO_KIND(ino) == K_ROOT && t->cfg.system)) {
		u = owner_of(t, ino, &album, &view);
		if (!u)
			ret = -ENOENT;
		else
			ret = reachable(t, req, u, view, false);
	}
	b->u = u;
	if (ret == 0)
		ret = dirbuf_add(req, b, ".", ino, S_IFDIR);
	if (ret == 0)
		ret = dirbuf_add(req, b, "..", FUSE_ROOT_ID, S_IFDIR);
	if (ret < 0)
		goto out;
	switch (INO_KIND(ino)) {
	case K_ROOT:
		if (t->cfg.system) {
			/* Only the vaults the caller may enter are listed. */
			const struct fuse_ctx *ctx = fuse_req_ctx(req);
			for (size_t i = 0; ret == 0 && i < t->nusers; i++) {
				struct user_ctx *w = &t->users[i];
				if (ctx->uid == 0 || ctx->uid == w->uid ||
				    (web_readable(t, w, V_ORIGINAL) &&
				     caller_in_group(req, t->cfg.readers_gid)))
					ret = dirbuf_add(req, b, w->name, INO(K_USER, w->uid), S_IFDIR);
			}
			break;
		}
		/* the desktop root lists albums */
		/* fall through */
	case K_USER:
		ret = vault_album_list(u->s, list_album, &x, NULL);
		break;
	case K_ALBUM:
		for (int v = 0; ret == 0 && v < V_COUNT; v++)
			ret = dirbuf_add(req, b, view_names[v], VIEW_INO(album, v), S_IFDIR);
		break;
	case K_VIEW:
		x.view = view;
		ret = vault_image_list(u->s, album, list_image, &x, NULL);
		break;
	default:
		ret = -ENOTDIR;
	}
out:
	pthread_mutex_unlock(&t->lock);
	if (ret < 0) {
		pthread_mutex_destroy(&b->lock);
		free(b->data);
		free(b);
		fuse_reply_err(req, -ret);
		return;
	}
	fi->fh = (uintptr_t)b;
	fi->cache_readdir = 0;
	fuse_reply_open(req, fi);
}

/*
 * Whether the vault whose names @b holds was locked since opendir; then
 * the names are wiped, and the directory answers EACCES like a new one.
 */
static bool dirbuf_locked(struct tree *t, struct dirent_buf *b)
{
	bool locked;

	pthread_mutex_lock(&t->lock);
	locked = b->u && !b->u->s;
	pthread_mutex_unlock(&t->lock);
	if (locked) {
		pthread_mutex_lock(&b->lock);
		if (b->data)
			sodium_memzero(b->data, b->cap);
		b->len = 0;
		pthread_mutex_unlock(&b->lock);
	}
	return locked;
}

static void tree_readdir(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off,
			 struct fuse_file_info *fi)
{
	struct dirent_buf *b = (struct dirent_buf *)(uintptr_t)fi->fh;
	size_t start = (size_t)off, end;

	(void)ino;
	if (dirbuf_locked(tree_of(req), b)) {
		fuse_reply_err(req, EACCES);
		return;
	}
	if (start >= b->len) {
		fuse_reply_buf(req, NULL, 0);
		return;
	}
	/* Whole entries only: walk them until @size is reached. */
	end = start;
	while (end < b->len) {
		struct { uint64_t ino, off; uint32_t namelen, type; } hdr;
		memcpy(&hdr, b->data + end, sizeof(hdr));
		size_t next = (size_t)hdr.off;
		if (next - start > size)
			break;
		end = next;
	}
	/* The caller may close the directory as soon as the kernel has the
	 * reply, before fuse_reply_buf returns. */
	pthread_mutex_lock(&b->lock);
	fuse_reply_buf(req, b->data + start, end - start);
	pthread_mutex_unlock(&b->lock);
}

static void tree_releasedir(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	struct dirent_buf *b = (struct dirent_buf *)(uintptr_t)fi->fh;

	(void)ino;
	pthread_mutex_lock(&b->lock);   /* a readdir still replying */
	pthread_mutex_unlock(&b->lock);
	pthread_mutex_destroy(&b->lock);
	free(b->data);
	free(b);
	fuse_reply_err(req, 0);
}

/* ---- directories: albums ---------------------------------------------- */

static void tree_mkdir(fuse_req_t req, fuse_ino_t parent, const char *name, mode_t mode)
{
	struct tree *t = tree_of(req);
	struct user_ctx *u;
	struct stat st;
	int64_t album, id;
	int view, ret;

	(void)mode;
	pthread_mutex_lock(&t->lock);
	u = owner_of(t, parent, &album, &view);
	/* The caller first: whoever may not write here learns nothing more. */
	if (!u)
		ret = t->cfg.system && INO_KIND(parent) == K_ROOT ? -EPERM : -ENOENT;
	else if ((ret = reachable(t, req, u, V_ORIGINAL, true)) == 0) {
		if (INO_KIND(parent) != K_USER && INO_KIND(parent) != K_ROOT)
			ret = -EPERM;   /* albums hold the three views, nothing else */
		else if ((ret = vault_album_create(u->s, name, strlen(name), &id, NULL)) == 0)
			dir_attr(t, u, INO(K_ALBUM, id), V_ORIGINAL, &st);
	}
	pthread_mutex_unlock(&t->lock);
	if (ret < 0)
		fuse_reply_err(req, -ret);
	else
		reply_entry(t, req, &st, 0);
}

static void tree_rmdir(fuse_req_t req, fuse_ino_t parent, const char *name)
{
	struct tree *t = tree_of(req);
	struct user_ctx *u;
	int64_t album, id;
	int view, ret;

	pthread_mutex_lock(&t->lock);
	u = owner_of(t, parent, &album, &view);
	if (!u)
		ret = t->cfg.system && INO_KIND(parent) == K_ROOT ? -EPERM : -ENOENT;
	else if ((ret = reachable(t, req, u, V_ORIGINAL, true)) == 0) {
		if (INO_KIND(parent) != K_USER && INO_KIND(parent) != K_ROOT)
			ret = -EPERM;   /* the views go with their album */
		else if ((ret = vault_album_find(u->s, name, strlen(name), &id, NULL)) == 0)
			ret = vault_album_remove(u->s, id, NULL);
	}
	if (ret == 0)
		notice(t, 0, parent, name);
	pthread_mutex_unlock(&t->lock);
	fuse_reply_err(req, -ret);
}

/* ---- files: reading --------------------------------------------------- */

static struct handle *handle_new(struct tree *t, struct user_ctx *u, fuse_ino_t ino,
				 int64_t image_id, enum view view)
{
	struct handle *h = calloc(1, sizeof(*h));

	if (!h)
		return NULL;
	pthread_mutex_init(&h->lock, NULL);
	h->u = u;
	h->ino = ino;
	h->image_id = image_id;
	h->view = view;
	h->next = t->handles;
	if (t->handles)
		t->handles->prev = h;
	t->handles = h;
	return h;
}

/* Called with the tree lock held. */
static void handle_free(struct tree *t, struct handle *h)
{
	if (h->prev)
		h->prev->next = h->next;
	else
		t->handles = h->next;
	if (h->next)
		h->next->prev = h->prev;
	vault_file_close(h->f);
	free(h->buf);
	pthread_mutex_destroy(&h->lock);
	free(h);
}

static int buf_reserve(struct handle *h, size_t need, uint64_t max)
{
	if (need > max)
		return -EFBIG;
	if (need > h->cap) {
		size_t cap = h->cap ? h->cap : 65536;
		while (cap < need)
			cap *= 2;
		uint8_t *p = realloc(h->buf, cap);
		if (!p)
			return -ENOMEM;
		h->buf = p;
		h->cap = cap;
	}
	return 0;
}

/*
 * Loads the current content into a writer's buffer, on its first read or
 * write: most writers truncate first, and then nothing need be decrypted.
 * The handle's lock is held.
 */
static int handle_load(struct tree *t, struct handle *h)
{
	struct vault_file *f = NULL;
	uint64_t size;
	ssize_t n;
	int ret;

	if (h->loaded)
		return 0;
	pthread_mutex_lock(&t->lock);
	ret = vault_file_open(h->u->s, h->image_id, VAULT_ORIGINAL, &f, NULL);
	pthread_mutex_unlock(&t->lock);
	if (ret < 0)
		return ret == -EBADMSG ? -EIO : ret;
	size = vault_file_size(f);
	if ((ret = buf_reserve(h, size ? size : 1, max_bytes(t) + 1)) == 0) {
		n = vault_file_pread(f, h->buf, size, 0, NULL);
		if (n < 0) {
			ret = n == -EBADMSG ? -EIO : (int)n;
		} else {
			h->len = (size_t)n;
			h->loaded = true;
		}
	}
	vault_file_close(f);
	return ret;
}

/* Waits (lock held) until the thumbnail of @image_id is made: -EAGAIN on time out. */
static int wait_thumb(struct tree *t, struct user_ctx *u, int64_t image_id)
{
	struct vault_image im;
	struct timespec until;
	int ret;

	clock_gettime(CLOCK_REALTIME, &until);
	until.tv_sec += THUMB_WAIT_SECONDS;
	for (;;) {
		if (!u->s)
			return -EACCES;   /* locked while it waited */
		if ((ret = vault_image_get(u->s, image_id, &im, NULL)) < 0)
			return ret;
		if (im.thumb_ready)
			return 0;
		if (im.damaged)
			return -EIO;   /* it will not decode: no thumbnail */
		/* Ahead of the queue, and wake the worker. */
		vault_thumb_queue(u->s, image_id, true, false, NULL);
		pthread_cond_broadcast(&t->changed);
		if (pthread_cond_timedwait(&t->changed, &t->lock, &until) == ETIMEDOUT)
			return -EAGAIN;
	}
}

static void tree_open(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	struct tree *t = tree_of(req);
	struct user_ctx *u;
	struct handle *h = NULL;
	int64_t album, image_id;
	bool write = (fi->flags & O_ACCMODE) != O_RDONLY, stale = false;
	int view, ret;

	if (!IS_FILE(ino)) {
		fuse_reply_err(req, EISDIR);
		return;
	}
	pthread_mutex_lock(&t->lock);
	u = owner_of(t, ino, &album, &view);
	image_id = file_image(t, ino);
	if (!u) {
		ret = -ENOENT;
		goto out;
	}
	if (write && view != V_ORIGINAL) {
		ret = -EACCES;   /* thumb/ and pristine/ are read-only */
		goto out;
	}
	if ((ret = reachable(t, req, u, view, write)) < 0)
		goto out;
	/* A writer is not to share the inode of the version readers read
	 * (name_ino): ESTALE makes the kernel look the name up again, and
	 * it now finds the image's own inode. */
	if (write && INO_KIND(ino) == K_VERSION &&
	    expect_writer(t, image_id, fuse_req_ctx(req)->pid)) {
		ret = -ESTALE;
		goto out;
	}
	if (view == V_THUMB && (ret = wait_thumb(t, u, image_id)) < 0)
		goto out;
	h = handle_new(t, u, ino, image_id, view);
	if (!h) {
		ret = -ENOMEM;
		goto out;
	}
	if (write) {
		h->writer = true;
		/* O_TRUNC comes as a truncation (tree_init): load lazily. */
		h->loaded = h->dirty = (fi->flags & O_TRUNC) != 0;
	} else {
		ret = vault_file_open(u->s, image_id, view == V_PRISTINE ? VAULT_PRISTINE
				      : view == V_THUMB ? VAULT_THUMB : VAULT_ORIGINAL, &h->f, NULL);
		/* Not the version's inode: replaced since the lookup, or a
		 * writer's (name_ino).  Its page cache is not this version's. */
		stale = ret == 0 && file_ino(vault_file_image(h->f), view) != ino;
	}
out:
	if (ret < 0 && h)
		handle_free(t, h);
	pthread_mutex_unlock(&t->lock);
	if (ret < 0) {
		fuse_reply_err(req, ret == -EBADMSG ? EIO : -ret);
		return;
	}
	fi->fh = (uintptr_t)h;
	/*
	 * An inode's page cache holds one version's bytes (file_ino), so it is
	 * kept, but an open that reached another inode reads the current
	 * version past the cache.  A writer's bytes are pending and may be
	 * refused: they never enter the cache readers share.  A thumbnail's
	 * size may have been 0 at lookup.
	 */
	fi->keep_cache = !stale;
	fi->direct_io = write || stale || view == V_THUMB;
	fuse_reply_open(req, fi);
}

static void tree_read(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off,
		      struct fuse_file_info *fi)
{
	struct tree *t = tree_of(req);
	struct handle *h = (struct handle *)(uintptr_t)fi->fh;
	struct iverr e = { 0 };
	char *buf;
	ssize_t n;
	int ret;

	(void)ino;
	pthread_mutex_lock(&h->lock);
	if (h->writer) {
		if ((ret = handle_load(t, h)) < 0) {
			fuse_reply_err(req, -ret);
		} else {
			size_t start = (size_t)off < h->len ? (size_t)off : h->len;
			size_t len = h->len - start < size ? h->len - start : size;
			fuse_reply_buf(req, (const char *)h->buf + start, len);
		}
		pthread_mutex_unlock(&h->lock);
		return;
	}
	buf = malloc(size ? size : 1);
	if (!buf) {
		pthread_mutex_unlock(&h->lock);
		fuse_reply_err(req, ENOMEM);
		return;
	}
	/* Decryption runs outside the tree lock: reads of files run in parallel. */
	n = vault_file_pread(h->f, buf, size, (uint64_t)off, &e);
	pthread_mutex_unlock(&h->lock);
	if (n == -EBADMSG) {
		tree_log(t, 3, "read failed: %s", e.msg);
		pthread_mutex_lock(&t->lock);
		vault_file_report_damage(h->f, e.msg);
		pthread_mutex_unlock(&t->lock);
		fuse_reply_err(req, EIO);   /* never wrong bytes (DESIGN T1) */
	} else if (n < 0) {
		fuse_reply_err(req, (int)-n);
	} else {
		fuse_reply_buf(req, buf, (size_t)n);
	}
	free(buf);
}

/* ---- files: writing and committing ------------------------------------ */

static void tree_write(fuse_req_t req, fuse_ino_t ino, const char *data, size_t size,
		       off_t off, struct fuse_file_info *fi)
{
	struct tree *t = tree_of(req);
	struct handle *h = (struct handle *)(uintptr_t)fi->fh;
	int ret;

	(void)ino;
	if (!h->writer) {
		fuse_reply_err(req, EBADF);
		return;
	}
	pthread_mutex_lock(&h->lock);
	if ((ret = handle_load(t, h)) == 0)
		ret = buf_reserve(h, (size_t)off + size, max_bytes(t));
	if (ret == -EFBIG)
		h->too_big = true;   /* what is pending is cut short: never committed */
	if (ret == 0) {
		if ((size_t)off > h->len)
			memset(h->buf + h->len, 0, (size_t)off - h->len);
		memcpy(h->buf + off, data, size);
		if ((size_t)off + size > h->len)
			h->len = (size_t)off + size;
		h->dirty = true;
	}
	pthread_mutex_unlock(&h->lock);
	if (ret < 0)
		fuse_reply_err(req, -ret);
	else
		fuse_reply_write(req, size);
}

/*
 * Commits a writer's pending version: admitted and encrypted on this
 * thread, pointed at under the lock.  The handle's lock is held.
 */
static int commit(struct tree *t, struct handle *h)
{
	struct image_sniffer *sn;
	struct vault_staged st;
	struct vault_image old;
	struct iverr e = { 0 };
	int ret;

	if (h->too_big) {
		/* The pending version lost the writes refused for size: committing
		 * it would store a truncated image.  It is dropped, the old content
		 * stays, and the next write starts again from that. */
		h->too_big = false;
		h->dirty = false;
		h->loaded = false;
		h->len = 0;
		pthread_mutex_lock(&t->lock);
		vault_note_refused(h->u->s, "too large");
		pthread_mutex_unlock(&t->lock);
		tree_log(t, 4, "uid %u: write refused, the previous content stays: the file "
			 "grew over the %llu-byte limit (image.max-bytes); raise it with "
			 "imgvault config to store it", h->u->uid, (unsigned long long)max_bytes(t));
		return -EFBIG;
	}
	if (!h->dirty)
		return 0;
	if (h->len == 0) {
		/* Truncated to nothing: an empty file is a placeholder only while
		 * it has never held an image; otherwise the old content stays. */
		struct vault_image im;
		pthread_mutex_lock(&t->lock);
		ret = vault_image_get(h->u->s, h->image_id, &im, NULL);
		pthread_mutex_unlock(&t->lock);
		h->dirty = false;
		if (ret == 0 && im.current_version) {
			tree_log(t, 4, "uid %u: an image cannot be emptied; its content stays",
				 h->u->uid);
			return -EINVAL;
		}
		return ret;
	}
	sn = thread_sniffer(t);
	if (!sn)
		return -ENOMEM;
	ret = vault_stage(h->u->s, sn, h->buf, h->len, &st, &e);
	pthread_mutex_lock(&t->lock);
	if (ret == 0 && (ret = vault_image_get(h->u->s, h->image_id, &old, &e)) < 0)
		vault_discard_staged(h->u->s, &st);
	if (ret == 0 && (ret = vault_commit_staged_to(h->u->s, h->image_id, &st, NULL, &e)) == 0)
		retire(t, old.current_version, h->image_id, old.size);
	else if (ret == -IV_EREJECT)
		vault_note_refused(h->u->s, "content refused");
	if (ret == 0 && h->mtime_set)   /* cp -p sets it before close() */
		vault_image_set_mtime(h->u->s, h->image_id, h->mtime, NULL);
	if (ret == 0) {
		notice_image(t, h->image_id);
		pthread_cond_broadcast(&t->changed);   /* a thumbnail to make */
	}
	pthread_mutex_unlock(&t->lock);
	h->dirty = false;   /* committed, or refused: the old content stays */
	if (ret < 0)
		tree_log(t, 4, "uid %u: write refused, the previous content stays: %s",
			 h->u->uid, e.msg);
	return ret == -EBADMSG ? -EIO : ret;
}

static void tree_flush(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	struct handle *h = (struct handle *)(uintptr_t)fi->fh;
	int ret = 0;

	(void)ino;
	if (h->writer) {
		pthread_mutex_lock(&h->lock);
		ret = commit(tree_of(req), h);
		pthread_mutex_unlock(&h->lock);
	}
	fuse_reply_err(req, -ret);
}

static void tree_fsync(fuse_req_t req, fuse_ino_t ino, int datasync, struct fuse_file_info *fi)
{
	(void)datasync;
	tree_flush(req, ino, fi);
}

static void tree_release(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	struct tree *t = tree_of(req);
	struct handle *h = (struct handle *)(uintptr_t)fi->fh;

	(void)ino;
	if (h->writer) {
		pthread_mutex_lock(&h->lock);
		commit(t, h);   /* nobody to tell: logged */
		pthread_mutex_unlock(&h->lock);
	}
	pthread_mutex_lock(&t->lock);
	handle_free(t, h);
	pthread_mutex_unlock(&t->lock);
	fuse_reply_err(req, 0);
}

static void tree_create(fuse_req_t req, fuse_ino_t parent, const char *name, mode_t mode,
			struct fuse_file_info *fi)
{
	struct tree *t = tree_of(req);
	struct vault_image im;
	struct user_ctx *u;
	struct handle *h = NULL;
	struct fuse_entry_param e;
	int64_t album;
	int view, ret;

	(void)mode;
	pthread_mutex_lock(&t->lock);
	u = owner_of(t, parent, &album, &view);
	if (!u)
		ret = -ENOENT;
	else if (INO_KIND(parent) != K_VIEW || view != V_ORIGINAL)
		ret = -EACCES;   /* images are created in original/ only */
	else if ((ret = reachable(t, req, u, V_ORIGINAL, true)) == 0 &&
		 (ret = vault_image_create(u->s, album, name, strlen(name), &im, NULL)) == 0 &&
		 !(h = handle_new(t, u, FILE_INO(im.id, V_ORIGINAL), im.id, V_ORIGINAL)))
		ret = -ENOMEM;
	if (ret == 0) {
		h->writer = true;
		h->loaded = true;   /* empty */
		memset(&e, 0, sizeof(e));
		file_attr(t, u, &im, V_ORIGINAL, &e.attr);
		e.ino = e.attr.st_ino;
		e.generation = file_generation(&im);
		e.attr_timeout = t->cfg.timeout;
		e.entry_timeout = 0;   /* as reply_entry */
	}
	pthread_mutex_unlock(&t->lock);
	if (ret < 0) {
		fuse_reply_err(req, -ret);
		return;
	}
	fi->fh = (uintptr_t)h;
	fi->direct_io = 1;   /* as a writer in tree_open */
	fuse_reply_create(req, &e, fi);
}

/*
 * open(O_TRUNC) reaches setattr without its file (the kernel drops it when
 * O_TRUNC is not atomic: tree_init).  It is for the writers opened on @ino
 * that have done nothing yet; one that is busy is not one.  Lock held.
 */
static bool truncate_opened(struct tree *t, fuse_ino_t ino)
{
	bool any = false;

	for (struct handle *w = t->handles; w; w = w->next) {
		if (!w->writer || w->ino != ino)
			continue;
		any = true;   /* another's truncation may have cut this one already */
		if (pthread_mutex_trylock(&w->lock) != 0)
			continue;
		if (!w->loaded && !w->dirty) {
			w->len = 0;
			w->loaded = w->dirty = true;
		}
		pthread_mutex_unlock(&w->lock);
	}
	return any;
}

static void tree_setattr(fuse_req_t req, fuse_ino_t ino, struct stat *attr, int to_set,
			 struct fuse_file_info *fi)
{
	struct tree *t = tree_of(req);
	struct handle *h = fi ? (struct handle *)(uintptr_t)fi->fh : NULL;
	struct user_ctx *u;
	struct stat st;
	int64_t album, image_id;
	int view, ret = 0;

	pthread_mutex_lock(&t->lock);
	u = owner_of(t, ino, &album, &view);
	image_id = IS_FILE(ino) ? file_image(t, ino) : 0;
	/* The caller first, as in tree_mkdir. */
	if (!u)
		ret = INO_KIND(ino) == K_ROOT ? -EPERM : -ENOENT;   /* the system root */
	else if (to_set & (FUSE_SET_ATTR_SIZE | FUSE_SET_ATTR_MTIME | FUSE_SET_ATTR_MODE |
			   FUSE_SET_ATTR_UID | FUSE_SET_ATTR_GID))
		ret = reachable(t, req, u, view, true);
	if (ret == 0 && (to_set & (FUSE_SET_ATTR_SIZE | FUSE_SET_ATTR_MTIME)) &&
	    IS_FILE(ino) && view != V_ORIGINAL)
		ret = -EACCES;   /* thumb/ and pristine/ are read-only */
	/* A directory's times are accepted and change nothing, as chmod
	 * (rsync -a and tar set them). */
	if (!IS_FILE(ino))
		to_set &= ~(FUSE_SET_ATTR_MTIME | FUSE_SET_ATTR_MTIME_NOW);
	/* Ownership is the vault's: a chown that would change it is refused,
	 * one that changes nothing (tar and cp -p as root do that) is not. */
	if (ret == 0 && (to_set & (FUSE_SET_ATTR_UID | FUSE_SET_ATTR_GID)) &&
	    (ret = node_attr(t, req, ino, h, &st)) == 0 &&
	    (((to_set & FUSE_SET_ATTR_UID) && attr->st_uid != st.st_uid) ||
	     ((to_set & FUSE_SET_ATTR_GID) && attr->st_gid != st.st_gid)))
		ret = -EPERM;
	if (ret == 0 && (to_set & FUSE_SET_ATTR_MTIME)) {
		int64_t mtime = (to_set & FUSE_SET_ATTR_MTIME_NOW) ? (int64_t)time(NULL)
				: (int64_t)attr->st_mtime;
		ret = vault_image_set_mtime(u->s, image_id, mtime, NULL);
		/* A pending version keeps it: its commit must not undo it. */
		for (struct handle *w = t->handles; ret == 0 && w; w = w->next) {
			if (w->writer && w->image_id == image_id) {
				w->mtime = mtime;
				w->mtime_set = true;
			}
		}
	}
	if (ret == 0 && (to_set & FUSE_SET_ATTR_SIZE) && !h)
		ret = attr->st_size == 0 && truncate_opened(t, ino) ? 0
		      : attr->st_size == 0 ? -EINVAL : -EACCES;   /* open it to edit */
	pthread_mutex_unlock(&t->lock);
	/* chmod is accepted and changes nothing: modes follow the vault's rules. */
	if (ret == 0 && (to_set & FUSE_SET_ATTR_SIZE) && h) {
		pthread_mutex_lock(&h->lock);
		if (!h->writer)
			ret = -EBADF;
		else if (attr->st_size == 0)
			h->loaded = true;   /* nothing to load */
		else
			ret = handle_load(t, h);
		if (ret == 0)
			ret = buf_reserve(h, (size_t)attr->st_size, max_bytes(t));
		if (ret == -EFBIG)
			h->too_big = true;
		if (ret == 0) {
			if ((size_t)attr->st_size > h->len)
				memset(h->buf + h->len, 0, (size_t)attr->st_size - h->len);
			h->len = (size_t)attr->st_size;
			h->dirty = true;
		}
		pthread_mutex_unlock(&h->lock);
	}
	if (ret == 0) {
		pthread_mutex_lock(&t->lock);
		ret = node_attr(t, req, ino, h, &st);
		pthread_mutex_unlock(&t->lock);
		if (ret == 0 && h)
			pending_size(h, &st);
	}
	if (ret < 0)
		fuse_reply_err(req, -ret);
	else
		fuse_reply_attr(req, &st, t->cfg.timeout);
}

/* ---- names: unlink, rename -------------------------------------------- */

static void tree_unlink(fuse_req_t req, fuse_ino_t parent, const char *name)
{
	struct tree *t = tree_of(req);
	struct vault_image im;
	struct user_ctx *u;
	int64_t album;
	int view, ret;

	pthread_mutex_lock(&t->lock);
	u = owner_of(t, parent, &album, &view);
	if (!u)
		ret = -ENOENT;
	else if (INO_KIND(parent) != K_VIEW)
		ret = -EPERM;
	else if (view != V_ORIGINAL)
		ret = -EACCES;   /* delete the image in original/ */
	else if ((ret = reachable(t, req, u, view, true)) == 0 &&
		 (ret = vault_image_find(u->s, album, name, strlen(name), &im, NULL)) == 0 &&
		 (ret = vault_image_remove(u->s, im.id, NULL)) == 0) {
		notice_image(t, im.id);
		for (int v = 1; v < V_COUNT; v++)
			notice(t, 0, VIEW_INO(album, v), name);
	}
	pthread_mutex_unlock(&t->lock);
	fuse_reply_err(req, -ret);
}

static void tree_rename(fuse_req_t req, fuse_ino_t parent, const char *name,
			fuse_ino_t newparent, const char *newname, unsigned int flags)
{
	struct tree *t = tree_of(req);
	struct user_ctx *u, *nu;
	struct vault_image im, other;
	int64_t album, nalbum, id, result;
	int view, nview, ret;

	if (flags & ~RENAME_NOREPLACE) {
		fuse_reply_err(req, EINVAL);   /* RENAME_EXCHANGE, RENAME_WHITEOUT */
		return;
	}
	pthread_mutex_lock(&t->lock);
	u = owner_of(t, parent, &album, &view);
	nu = owner_of(t, newparent, &nalbum, &nview);
	if (!u || !nu) {
		ret = -ENOENT;
		goto out;
	}
	if (u != nu) {
		ret = -EXDEV;   /* between two users' vaults: copy, not rename */
		goto out;
	}
	if ((ret = reachable(t, req, u, V_ORIGINAL, true)) < 0)
		goto out;
	if ((INO_KIND(parent) == K_USER || INO_KIND(parent) == K_ROOT) &&
	    INO_KIND(newparent) == INO_KIND(parent)) {
		/* An album. */
		ret = vault_album_find(u->s, name, strlen(name), &id, NULL);
		if (ret == 0 && (flags & RENAME_NOREPLACE) &&
		    vault_album_find(u->s, newname, strlen(newname), &album, NULL) == 0)
			ret = -EEXIST;
		if (ret == 0)
			ret = vault_album_rename(u->s, id, newname, strlen(newname), NULL);
		if (ret == -EEXIST && !(flags & RENAME_NOREPLACE))
			ret = -ENOTEMPTY;   /* as rename(2) over a non-empty directory */
		if (ret == 0) {
			notice(t, 0, parent, name);
			notice(t, 0, newparent, newname);
		}
		goto out;
	}
	if (INO_KIND(parent) != K_VIEW || INO_KIND(newparent) != K_VIEW ||
	    view != V_ORIGINAL || nview != V_ORIGINAL) {
		ret = -EACCES;   /* images move between original/ directories */
		goto out;
	}
	if ((ret = vault_image_find(u->s, album, name, strlen(name), &im, NULL)) < 0)
		goto out;
	if ((flags & RENAME_NOREPLACE) &&
	    vault_image_find(u->s, nalbum, newname, strlen(newname), &other, NULL) == 0) {
		ret = -EEXIST;
		goto out;
	}
	if (vault_image_find(u->s, nalbum, newname, strlen(newname), &other, NULL) < 0)
		other.current_version = 0;
	ret = vault_image_rename(u->s, im.id, nalbum, newname, strlen(newname), &result, NULL);
	if (ret == 0 && result != im.id)
		retire(t, other.current_version, result, other.size);
	/* A rename moves content, it does not modify it: the moved file's
	 * mtime goes with it (rsync sets it on its temporary, then renames). */
	if (ret == 0)
		vault_image_set_mtime(u->s, result, im.mtime, NULL);
	if (ret == 0) {
		for (int v = 0; v < V_COUNT; v++) {
			notice(t, 0, VIEW_INO(album, v), name);
			notice(t, 0, VIEW_INO(nalbum, v), newname);
		}
		notice_image(t, result);
		notice_image(t, im.id);
		pthread_cond_broadcast(&t->changed);
	}
out:
	pthread_mutex_unlock(&t->lock);
	fuse_reply_err(req, ret == -EBADMSG ? EIO : -ret);
}

static void tree_refuse(fuse_req_t req)
{
	fuse_reply_err(req, EPERM);
}

static void tree_link(fuse_req_t req, fuse_ino_t ino, fuse_ino_t newparent, const char *newname)
{
	(void)ino;
	(void)newparent;
	(void)newname;
	tree_refuse(req);   /* one name per image */
}

static void tree_symlink(fuse_req_t req, const char *link, fuse_ino_t parent, const char *name)
{
	(void)link;
	(void)parent;
	(void)name;
	tree_refuse(req);
}

static void tree_mknod(fuse_req_t req, fuse_ino_t parent, const char *name, mode_t mode,
		       dev_t rdev)
{
	(void)parent;
	(void)name;
	(void)mode;
	(void)rdev;
	tree_refuse(req);
}

/* ---- extended attributes ---------------------------------------------- */

/* The file node @ino and its owner, for attribute calls; lock held. */
static int xattr_target(struct tree *t, fuse_req_t req, fuse_ino_t ino, bool write,
			struct user_ctx **u)
{
	int64_t album;
	int view;

	if (!IS_FILE(ino))
		return write ? -ENOTSUP : -ENODATA;
	*u = owner_of(t, ino, &album, &view);
	if (!*u)
		return -ENOENT;
	if (write && view != V_ORIGINAL)
		return -EACCES;
	return reachable(t, req, *u, view, write);
}

/* Answers a getxattr or listxattr: the size when @size is 0, else the bytes. */
static void reply_xattr(fuse_req_t req, int ret, size_t size, const char *buf, size_t len)
{
	if (ret < 0)
		fuse_reply_err(req, ret == -EBADMSG ? EIO : -ret);
	else if (!size)
		fuse_reply_xattr(req, len);
	else
		fuse_reply_buf(req, buf, len);
}

static void tree_getxattr(fuse_req_t req, fuse_ino_t ino, const char *name, size_t size)
{
	struct tree *t = tree_of(req);
	struct user_ctx *u;
	char *buf = size ? malloc(size) : NULL;
	size_t len = 0;
	int ret;

	if (size && !buf) {
		fuse_reply_err(req, ENOMEM);
		return;
	}
	pthread_mutex_lock(&t->lock);
	ret = xattr_target(t, req, ino, false, &u);
	if (ret == 0)
		ret = vault_xattr_get(u->s, file_image(t, ino), name, buf, size, &len, NULL);
	pthread_mutex_unlock(&t->lock);
	reply_xattr(req, ret, size, buf, len);
	free(buf);
}

static void tree_listxattr(fuse_req_t req, fuse_ino_t ino, size_t size)
{
	struct tree *t = tree_of(req);
	struct user_ctx *u;
	char *buf = size ? malloc(size) : NULL;
	size_t len = 0;
	int ret = 0;

	if (size && !buf) {
		fuse_reply_err(req, ENOMEM);
		return;
	}
	/* Directories have no attributes: an empty list. */
	if (IS_FILE(ino)) {
		pthread_mutex_lock(&t->lock);
		ret = xattr_target(t, req, ino, false, &u);
		if (ret == 0)
			ret = vault_xattr_list(u->s, file_image(t, ino), buf, size, &len, NULL);
		pthread_mutex_unlock(&t->lock);
	}
	reply_xattr(req, ret, size, buf, len);
	free(buf);
}

static void change_xattr(fuse_req_t req, fuse_ino_t ino, const char *name, const char *value,
			 size_t size)
{
	struct tree *t = tree_of(req);
	struct iverr e = { 0 };
	struct user_ctx *u;
	int ret;

	pthread_mutex_lock(&t->lock);
	ret = xattr_target(t, req, ino, true, &u);
	if (ret == 0)
		ret = vault_xattr_set(u->s, file_image(t, ino), name, value, size, &e);
	pthread_mutex_unlock(&t->lock);
	if (ret < 0 && e.msg[0])
		tree_log(t, 6, "uid %u: %s", u->uid, e.msg);
	fuse_reply_err(req, -ret);
}

static void tree_setxattr(fuse_req_t req, fuse_ino_t ino, const char *name, const char *value,
			  size_t size, int flags)
{
	(void)flags;
	change_xattr(req, ino, name, value, size);
}

static void tree_removexattr(fuse_req_t req, fuse_ino_t ino, const char *name)
{
	change_xattr(req, ino, name, NULL, 0);
}

/* ---- statfs: the caller's quota --------------------------------------- */

static void tree_statfs(fuse_req_t req, fuse_ino_t ino)
{
	struct tree *t = tree_of(req);
	const struct fuse_ctx *ctx = fuse_req_ctx(req);
	struct vault_user_info info;
	struct statvfs st;
	struct user_ctx *u;

	(void)ino;
	if (statvfs(vault_path(t->v), &st) < 0) {
		fuse_reply_err(req, errno);
		return;
	}
	st.f_namemax = CATALOG_NAME_MAX;
	pthread_mutex_lock(&t->lock);
	u = user_by_uid(t, ctx->uid);
	if (u && vault_user_info(t->v, u->uid, &info, NULL) == 0 && info.quota) {
		uint64_t bsize = st.f_frsize ? st.f_frsize : 4096;
		uint64_t used = info.bytes < info.quota ? info.bytes : info.quota;
		uint64_t free_bytes = info.quota - used;
		st.f_blocks = info.quota / bsize;
		st.f_bfree = st.f_bavail = free_bytes / bsize < st.f_bavail ? free_bytes / bsize
									      : st.f_bavail;
	}
	pthread_mutex_unlock(&t->lock);
	fuse_reply_statfs(req, &st);
}

/* ---- the background worker: thumbnails and cache notices -------------- */

/* The worker's full decode failed: the image is marked damaged. */
static void log_damaged(void *arg, int64_t image_id, const char *why)
{
	struct user_ctx *u = arg;

	tree_log(u->t, 4, "uid %u: image %" PRId64 " does not decode, marked damaged: %s",
		 u->uid, image_id, why);
}

/* A thumbnail is made: the worker commits it now, not on its next round
 * (which would make one thumbnail per round, ten a second). */
static void wake_worker(void *arg)
{
	struct tree *t = arg;

	pthread_cond_broadcast(&t->changed);
}

static void *worker_main(void *arg)
{
	struct tree *t = arg;
	struct notices batch;
	time_t last_expiry = 0;

	pthread_mutex_lock(&t->lock);
	while (!t->stop) {
		struct timespec until;
		struct iverr e = { 0 };

		if (time(NULL) - last_expiry >= EXPIRY_EVERY_SECONDS) {
			last_expiry = time(NULL);
			for (size_t i = 0; i < t->nusers; i++) {
				size_t removed = 0;
				if (!t->users[i].s)
					continue;   /* locked: its images expire at unlock */
				iverr_clear(&e);
				if (vault_expire(t->users[i].s, (int64_t)last_expiry, &removed, &e) < 0)
					tree_log(t, 3, "uid %u: expiry: %s", t->users[i].uid, e.msg);
				else if (removed)
					tree_log(t, 6, "uid %u: %zu expired images deleted",
						 t->users[i].uid, removed);
			}
		}

		for (size_t i = 0; i < t->nusers; i++) {
			struct thumbnailer_report r = { 0 };
			int ret;
			if (!t->users[i].thumbs)
				continue;   /* none, or locked: the queue waits for unlock */
			iverr_clear(&e);
			ret = thumbnailer_run(t->users[i].thumbs, false, 0, NULL, log_damaged,
					      &t->users[i], &r, &e);
			/* -ENOENT: the image was deleted or renamed over while its
			 * thumbnail was made; the job is dropped or redone for the
			 * version's new image on the next round. */
			if (ret < 0)
				tree_log(t, ret == -ENOENT ? 7 : 3, "uid %u: thumbnails: %s",
					 t->users[i].uid, e.msg[0] ? e.msg : strerror(-ret));
			if (r.made || r.damaged)
				pthread_cond_broadcast(&t->changed);
		}
		/* Notices go out without the lock: the kernel may call back in. */
		batch = t->notices;
		memset(&t->notices, 0, sizeof(t->notices));
		if (batch.n && t->se) {
			pthread_mutex_unlock(&t->lock);
			notices_send(t, &batch);
			pthread_mutex_lock(&t->lock);
		}
		free(batch.v);
		clock_gettime(CLOCK_REALTIME, &until);
		until.tv_nsec += 100 * 1000 * 1000;
		if (until.tv_nsec >= 1000000000) {
			until.tv_sec++;
			until.tv_nsec -= 1000000000;
		}
		pthread_cond_timedwait(&t->changed, &t->lock, &until);
	}
	pthread_mutex_unlock(&t->lock);
	return NULL;
}

/* ---- life cycle ------------------------------------------------------- */

int tree_new(struct vault *v, const struct tree_config *cfg, struct tree **out,
	     struct iverr *e)
{
	struct tree *t;
	int ret;

	*out = NULL;
	if ((ret = image_global_init(e)) < 0)
		return ret;
	t = calloc(1, sizeof(*t));
	if (!t)
		return iverr_set(e, ENOMEM, "out of memory");
	t->v = v;
	t->cfg = *cfg;
	t->max_bytes = vault_limits(v)->max_bytes;
	if (t->cfg.timeout <= 0)
		t->cfg.timeout = 1.0;
	pthread_mutex_init(&t->lock, NULL);
	pthread_cond_init(&t->changed, NULL);
	if (pthread_key_create(&t->sniffer_key, free_sniffer) != 0) {
		free(t);
		return iverr_set(e, EAGAIN, "cannot create a thread key");
	}
	if (membudget_new(vault_limits(v)->decode_memory, &t->decodes) < 0) {
		tree_free(t);
		return iverr_set(e, ENOMEM, "out of memory");
	}
	*out = t;
	return 0;
}

int tree_add_session(struct tree *t, struct vault_session *s, struct iverr *e)
{
	struct user_ctx *p = realloc(t->users, (t->nusers + 1) * sizeof(*p)), *u;
	struct passwd *pw;

	if (!p)
		return iverr_set(e, ENOMEM, "out of memory");
	t->users = p;
	u = &t->users[t->nusers];
	memset(u, 0, sizeof(*u));
	u->t = t;
	u->uid = vault_session_uid(s);
	u->s = s;
	pw = getpwuid(u->uid);
	u->gid = pw ? pw->pw_gid : (gid_t)u->uid;
	snprintf(u->name, sizeof(u->name), "%s", pw ? pw->pw_name : "");
	if (!u->name[0])
		snprintf(u->name, sizeof(u->name), "%u", u->uid);
	t->nusers++;
	return 0;
}

void tree_set_fuse(struct tree *t, struct fuse_session *se)
{
	t->se = se;
}

int tree_start(struct tree *t, struct iverr *e)
{
	int ret;

	for (size_t i = 0; i < t->nusers; i++) {
		if (t->users[i].s &&
		    (ret = thumbnailer_start_shared(t->users[i].s, 1, t->decodes,
						    &t->users[i].thumbs, e)) < 0)
			return ret;
		if (t->users[i].thumbs)
			thumbnailer_on_done(t->users[i].thumbs, wake_worker, t);
	}
	if (pthread_create(&t->worker, NULL, worker_main, t) != 0)
		return iverr_set(e, EAGAIN, "cannot start the background thread");
	t->worker_running = true;
	return 0;
}

void tree_stop(struct tree *t)
{
	/* Files still open at unmount: what they hold is committed. */
	pthread_mutex_lock(&t->lock);
	while (t->handles) {
		struct handle *h = t->handles;
		if (h->writer && h->dirty) {
			pthread_mutex_unlock(&t->lock);
			pthread_mutex_lock(&h->lock);
			commit(t, h);
			pthread_mutex_unlock(&h->lock);
			pthread_mutex_lock(&t->lock);
		}
		handle_free(t, h);
	}
	t->stop = true;
	pthread_cond_broadcast(&t->changed);
	pthread_mutex_unlock(&t->lock);
	if (t->worker_running)
		pthread_join(t->worker, NULL);
	t->worker_running = false;
	for (size_t i = 0; i < t->nusers; i++) {
		thumbnailer_stop(t->users[i].thumbs);
		t->users[i].thumbs = NULL;
	}
}

void tree_free(struct tree *t)
{
	if (!t)
		return;
	for (size_t i = 0; i < t->nusers; i++)
		vault_session_close(t->users[i].s);
	free(t->users);
	free(t->notices.v);
	pthread_key_delete(t->sniffer_key);
	membudget_free(t->decodes);
	pthread_cond_destroy(&t->changed);
	pthread_mutex_destroy(&t->lock);
	free(t);
}

static void tree_init(void *userdata, struct fuse_conn_info *conn)
{
	(void)userdata;
	/* Large writes: fewer round trips for whole images. */
	if (conn->capable & FUSE_CAP_SPLICE_READ)
		conn->want &= ~FUSE_CAP_SPLICE_READ;
	conn->max_write = 1 << 20;
	conn->max_readahead = 1 << 20;
	/* An atomic O_TRUNC would make the kernel empty the inode at open,
	 * under readers of the committed version; as a separate truncation
	 * it comes here and only the writer's pending bytes are cut. */
	conn->want &= ~FUSE_CAP_ATOMIC_O_TRUNC;
}

const struct fuse_lowlevel_ops tree_ops = {
	.init = tree_init,
	.lookup = tree_lookup,
	.getattr = tree_getattr,
	.setattr = tree_setattr,
	.mknod = tree_mknod,
	.mkdir = tree_mkdir,
	.unlink = tree_unlink,
	.rmdir = tree_rmdir,
	.symlink = tree_symlink,
	.rename = tree_rename,
	.link = tree_link,
	.open = tree_open,
	.read = tree_read,
	.write = tree_write,
	.flush = tree_flush,
	.release = tree_release,
	.fsync = tree_fsync,
	.opendir = tree_opendir,
	.readdir = tree_readdir,
	.releasedir = tree_releasedir,
	.statfs = tree_statfs,
	.setxattr = tree_setxattr,
	.getxattr = tree_getxattr,
	.listxattr = tree_listxattr,
	.removexattr = tree_removexattr,
	.create = tree_create,
};

/* ---- for the control socket ------------------------------------------- */

int tree_call(struct tree *t, uint32_t uid, int (*fn)(struct vault_session *s, void *arg),
	      void *arg)
{
	struct user_ctx *u;
	int ret;

	pthread_mutex_lock(&t->lock);
	u = user_by_uid(t, uid);
	vault_set_actor(t->v, uid);   /* the audit names the peer, not the daemon */
	ret = !u ? -ENOENT : !u->s ? -ENOKEY : fn(u->s, arg);
	vault_set_actor(t->v, (int64_t)getuid());
	pthread_mutex_unlock(&t->lock);
	return ret;
}

int tree_hold(struct tree *t, uint32_t uid)
{
	struct user_ctx *u;
	int ret = 0;

	pthread_mutex_lock(&t->lock);
	u = user_by_uid(t, uid);
	if (!u)
		ret = -ENOENT;
	else if (!u->s)
		ret = -ENOKEY;
	else
		u->holds++;
	pthread_mutex_unlock(&t->lock);
	return ret;
}

void tree_unhold(struct tree *t, uint32_t uid)
{
	struct user_ctx *u;

	pthread_mutex_lock(&t->lock);
	u = user_by_uid(t, uid);
	if (u && u->holds)
		u->holds--;
	pthread_mutex_unlock(&t->lock);
}

/* Files open on @u's vault in the mount.  Lock held. */
static size_t files_open(struct tree *t, const struct user_ctx *u)
{
	size_t n = 0;

	for (const struct handle *h = t->handles; h; h = h->next)
		if (h->u == u)
			n++;
	return n;
}

struct forget_ctx {
	struct tree *t;
	struct notices *l;
	fuse_ino_t home;             /* the vault's own directory */
	int64_t *albums;
	size_t nalbums, cap;
	int64_t album;               /* the one being listed */
};

static int forget_album(int64_t id, const char *name, size_t len, void *arg)
{
	struct forget_ctx *x = arg;

	if (x->nalbums == x->cap) {
		size_t cap = x->cap ? 2 * x->cap : 16;
		int64_t *p = realloc(x->albums, cap * sizeof(*p));
		if (!p)
			return -ENOMEM;
		x->albums = p;
		x->cap = cap;
	}
	x->albums[x->nalbums++] = id;
	/* Dropping an album's entry drops every entry below it. */
	return notices_push(x->l, 0, x->home, name, len);
}

static int forget_image(const struct vault_image *im, void *arg)
{
	struct forget_ctx *x = arg;
	struct tree *t = x->t;
	int ret = 0;

	for (int v = 0; ret == 0 && v < V_COUNT; v++)
		ret = notices_push(x->l, FILE_INO(im->id, v), 0, NULL, 0);
	if (ret == 0 && im->current_version)
		ret = notices_push(x->l, VERSION_INO(im->current_version), 0, NULL, 0);
	/* Replaced versions whose readers left pages in the kernel's cache. */
	for (size_t i = 0; ret == 0 && i < RETIRED_SLOTS; i++)
		if (t->retired[i].version && t->retired[i].image == im->id)
			ret = notices_push(x->l, VERSION_INO(t->retired[i].version), 0, NULL, 0);
	return ret;
}

/*
 * The invalidations that make the kernel forget @u's vault: the entries of
 * its albums, and the attributes and cached pages (plaintext) of every
 * file inode it may know.  Read with the session, before it is closed.
 * Lock held.
 */
static int forget_list(struct tree *t, struct user_ctx *u, struct notices *l)
{
	struct forget_ctx x = { .t = t, .l = l };
	int ret;

	x.home = t->cfg.system ? INO(K_USER, u->uid) : FUSE_ROOT_ID;
	ret = vault_album_list(u->s, forget_album, &x, NULL);
	for (size_t i = 0; ret == 0 && i < x.nalbums; i++)
		ret = vault_image_list(u->s, x.albums[i], forget_image, &x, NULL);
	free(x.albums);
	return ret;
}

/* EBUSY, and why, while @u's session is in use.  Lock held. */
static int lock_refused(struct tree *t, struct user_ctx *u, size_t open, struct iverr *e)
{
	vault_audit(t->v, u->uid, "lock", "", "refused", "in use");
	if (open)
		return iverr_set(e, EBUSY, "%zu file%s of this vault %s open; close %s and "
				 "try again", open, open == 1 ? "" : "s", open == 1 ? "is" : "are",
				 open == 1 ? "it" : "them");
	return iverr_set(e, EBUSY, "a command (cat, import) is using this vault through "
			 "imgvaultd; try again when it ends");
}

int tree_lock_user(struct tree *t, uint32_t uid, uint32_t actor, struct iverr *e)
{
	struct notices forget = { 0 };
	struct vault_session *s = NULL;
	struct thumbnailer *thumbs = NULL;
	struct user_ctx *u;
	size_t open;
	int ret;

	pthread_mutex_lock(&t->lock);
	vault_set_actor(t->v, actor);
	u = user_by_uid(t, uid);
	if (!u) {
		ret = iverr_set(e, ENOENT, "uid %u has no vault in this mount", uid);
		goto out;
	}
	if (!u->s) {
		ret = iverr_set(e, EALREADY, "%s's vault is already locked", u->name);
		goto out;
	}
	if ((open = files_open(t, u)) || u->holds) {
		ret = lock_refused(t, u, open, e);
		goto out;
	}
	if ((ret = forget_list(t, u, &forget)) < 0) {
		ret = iverr_set(e, -ret, "cannot list the vault's files to drop them from the "
				"kernel's cache (%s); nothing was locked", strerror(-ret));
		goto out;
	}
	/* From here on every operation on the vault finds no session. */
	s = u->s;
	thumbs = u->thumbs;
	u->s = NULL;
	u->thumbs = NULL;
	vault_audit(t->v, uid, "lock", "", "ok", "");
out:
	vault_set_actor(t->v, (int64_t)getuid());
	pthread_mutex_unlock(&t->lock);
	/* The workers use the keys until they are joined (their jobs stay
	 * queued); only then are the keys wiped. */
	thumbnailer_stop(thumbs);
	vault_session_close(s);
	notices_send(t, &forget);
	free(forget.v);
	return ret;
}

int tree_unlock_user(struct tree *t, uint32_t uid, uint32_t actor, enum key_slot_kind kind,
		     const void *secret, size_t len, struct iverr *e)
{
	struct vault_unlocking *un = NULL;
	struct vault_session *s = NULL;
	struct thumbnailer *thumbs = NULL;
	struct user_ctx *u;
	int ret;

	pthread_mutex_lock(&t->lock);
	vault_set_actor(t->v, actor);
	u = user_by_uid(t, uid);
	if (!u) {
		ret = iverr_set(e, ENOENT, "uid %u has no vault in this mount", uid);
		goto out;
	}
	if (u->s) {
		ret = iverr_set(e, EALREADY, "%s's vault is not locked", u->name);
		goto out;
	}
	if ((ret = vault_unlock_begin(t->v, uid, kind, &un, e)) < 0)
		goto out;
	/* The key derivation runs without the lock: the mount goes on meanwhile,
	 * and a stream of wrong passphrases cannot stall everyone's vault. */
	pthread_mutex_unlock(&t->lock);
	vault_unlock_derive(un, secret, len);
	pthread_mutex_lock(&t->lock);
	vault_set_actor(t->v, actor);
	if (u->s) {   /* another unlock won meanwhile */
		vault_unlock_abandon(un);
		ret = iverr_set(e, EALREADY, "%s's vault is not locked", u->name);
		goto out;
	}
	/* A wrong secret is audited here. */
	if ((ret = vault_unlock_finish(un, &s, e)) < 0)
		goto out;
	if ((ret = thumbnailer_start_shared(s, 1, t->decodes, &thumbs, e)) < 0) {
		vault_session_close(s);
		goto out;
	}
	u->s = s;
	u->thumbs = thumbs;
	thumbnailer_on_done(thumbs, wake_worker, t);
	pthread_cond_broadcast(&t->changed);   /* thumbnails queued while locked */
out:
	vault_set_actor(t->v, (int64_t)getuid());
	pthread_mutex_unlock(&t->lock);
	return ret;
}

int tree_call_vault(struct tree *t, uint32_t uid, int (*fn)(struct vault *v, void *arg),
		    void *arg)
{
	int ret;

	pthread_mutex_lock(&t->lock);
	vault_set_actor(t->v, uid);
	ret = fn(t->v, arg);
	vault_set_actor(t->v, (int64_t)getuid());
	pthread_mutex_unlock(&t->lock);
	return ret;
}

void tree_changed(struct tree *t, int64_t image_id)
{
	pthread_mutex_lock(&t->lock);
	notice_image(t, image_id);
	pthread_cond_broadcast(&t->changed);   /* and a thumbnail to make */
	pthread_mutex_unlock(&t->lock);
}

int tree_reload(struct tree *t, struct iverr *e)
{
	int ret;

	pthread_mutex_lock(&t->lock);
	ret = vault_config_reload(t->v, e);
	__atomic_store_n(&t->max_bytes, vault_limits(t->v)->max_bytes, __ATOMIC_RELAXED);
	membudget_set_cap(t->decodes, vault_limits(t->v)->decode_memory);
	pthread_mutex_unlock(&t->lock);
	return ret;
}
