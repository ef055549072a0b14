/* The local directory backend of blobstore.h. */
#include "blobstore.h"

#include <dirent.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <sodium.h>

#include "bytes.h"

struct local_store {
	struct blobstore base;
	int dirfd;      /* the store directory */
	char *path;
};

struct blobstore_wfile {
	struct local_store *ls;
	struct blob_id id;
	int fd;
	char tmpname[96];
};

struct blobstore_rfile {
	int fd;
};

void blob_id_random(struct blob_id *id)
{
	randombytes_buf(id->b, sizeof(id->b));
}

void blob_id_hex(const struct blob_id *id, char out[2 * BLOB_ID_LEN + 1])
{
	hex_encode(id->b, BLOB_ID_LEN, out);
}

int blob_id_parse(const char *hex, struct blob_id *id)
{
	return hex_decode(hex, id->b, BLOB_ID_LEN);
}

/* "blobs/3f/a1/3fa1…", relative to the store directory. */
static void local_blob_path(const struct blob_id *id, char out[64])
{
	char hex[2 * BLOB_ID_LEN + 1];

	blob_id_hex(id, hex);
	snprintf(out, 64, "blobs/%.2s/%.2s/%s", hex, hex + 2, hex);
}

/* 1 if it was created, 0 if it existed, or -errno. */
static int mkdirat_p(int dirfd, const char *rel)
{
	if (mkdirat(dirfd, rel, 0700) == 0)
		return 1;
	return errno == EEXIST ? 0 : -errno;
}

static int local_fsync_dir(int dirfd, const char *rel)
{
	int fd = openat(dirfd, rel, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	int ret = 0;

	if (fd < 0)
		return -errno;
	if (fsync(fd) < 0)
		ret = -errno;
	close(fd);
	return ret;
}

/* "blobs/3f/a1" -> "blobs/3f" */
static const char *parent_of(const char *dir, char out[64])
{
	snprintf(out, 64, "%.*s", (int)(strrchr(dir, '/') - dir), dir);
	return out;
}

static int local_create(struct blobstore *bs, const struct blob_id *id,
			struct blobstore_wfile **out, struct iverr *e)
{
	struct local_store *ls = (struct local_store *)bs;
	struct blobstore_wfile *w;
	char hex[2 * BLOB_ID_LEN + 1];

	*out = NULL;
	w = calloc(1, sizeof(*w));
	if (!w)
		return iverr_set(e, ENOMEM, "out of memory");
	blob_id_hex(id, hex);
	snprintf(w->tmpname, sizeof(w->tmpname), "tmp/%s.%ld.%08x", hex, (long)getpid(),
		 randombytes_random());
	w->fd = openat(ls->dirfd, w->tmpname, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
	if (w->fd < 0) {
		int err = errno;
		free(w);
		return iverr_set(e, err, "cannot create a blob in %s/tmp: %s", ls->path,
				 strerror(err));
	}
	w->ls = ls;
	w->id = *id;
	*out = w;
	return 0;
}

static int local_pwrite(struct blobstore_wfile *w, const void *buf, size_t len,
			uint64_t off, struct iverr *e)
{
	const uint8_t *p = buf;

	while (len) {
		ssize_t n = pwrite(w->fd, p, len, (off_t)off);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			return iverr_set(e, errno, "cannot write to the store %s: %s%s",
					 w->ls->path, strerror(errno),
					 errno == ENOSPC ? "; free some space and try again" : "");
		}
		p += n;
		off += (uint64_t)n;
		len -= (size_t)n;
	}
	return 0;
}

static void local_abort(struct blobstore_wfile *w)
{
	if (!w)
		return;
	close(w->fd);
	unlinkat(w->ls->dirfd, w->tmpname, 0);
	free(w);
}

static int local_commit(struct blobstore_wfile *w, struct iverr *e)
{
	struct local_store *ls = w->ls;
	char path[64], dir[64], parent[64];
	int ret;

	if (fsync(w->fd) < 0) {
		ret = iverr_set(e, errno, "cannot sync a blob to %s: %s", ls->path, strerror(errno));
		goto out_abort;
	}
	local_blob_path(&w->id, path);
	/* A new shard directory is durable only once its parent is synced. */
	snprintf(dir, sizeof(dir), "%.8s", path);      /* blobs/3f */
	if ((ret = mkdirat_p(ls->dirfd, dir)) < 0 ||
	    (ret == 1 && (ret = local_fsync_dir(ls->dirfd, "blobs")) < 0))
		goto out_mkdir;
	snprintf(dir, sizeof(dir), "%.11s", path);     /* blobs/3f/a1 */
	if ((ret = mkdirat_p(ls->dirfd, dir)) < 0 ||
	    (ret == 1 && (ret = local_fsync_dir(ls->dirfd, parent_of(dir, parent))) < 0))
		goto out_mkdir;
	/* renameat2(RENAME_NOREPLACE) would be stricter; ids are random 128-bit. */
	if (renameat(ls->dirfd, w->tmpname, ls->dirfd, path) < 0) {
		ret = iverr_set(e, errno, "cannot move a blob into %s/blobs: %s", ls->path,
				strerror(errno));
		goto out_abort;
	}
	if ((ret = local_fsync_dir(ls->dirfd, dir)) < 0) {
		iverr_set(e, -ret, "cannot sync %s/%s: %s", ls->path, dir, strerror(-ret));
		unlinkat(ls->dirfd, path, 0);
		goto out_abort;
	}
	close(w->fd);
	free(w);
	return 0;
out_mkdir:
	iverr_set(e, -ret, "cannot create %s/%s: %s", ls->path, dir, strerror(-ret));
out_abort:
	local_abort(w);
	return ret;
}

static int local_open(struct blobstore *bs, const struct blob_id *id,
		      struct blobstore_rfile **out, uint64_t *size, struct iverr *e)
{
	struct local_store *ls = (struct local_store *)bs;
	struct blobstore_rfile *r;
	struct stat st;
	char path[64], hex[2 * BLOB_ID_LEN + 1];
	int fd;

	*out = NULL;
	local_blob_path(id, path);
	fd = openat(ls->dirfd, path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
	if (fd < 0) {
		blob_id_hex(id, hex);
		return iverr_set(e, errno == ENOENT ? IV_EDAMAGE : errno,
				 "blob %s is %s", hex,
				 errno == ENOENT ? "missing from the store" : strerror(errno));
	}
	if (fstat(fd, &st) < 0 || !(r = malloc(sizeof(*r)))) {
		close(fd);
		return iverr_set(e, ENOMEM, "cannot open a blob: %s", strerror(errno));
	}
	r->fd = fd;
	*size = (uint64_t)st.st_size;
	*out = r;
	return 0;
}

static int local_pread(struct blobstore_rfile *r, void *buf, size_t len, uint64_t off,
		       struct iverr *e)
{
	uint8_t *p = buf;

	while (len) {
		ssize_t n = pread(r->fd, p, len, (off_t)off);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			return iverr_set(e, errno, "cannot read a blob: %s", strerror(errno));
		}
		if (n == 0)
			return iverr_set(e, IV_EDAMAGE, "blob is shorter than its header says");
		p += n;
		off += (uint64_t)n;
		len -= (size_t)n;
	}
	return 0;
}

static void local_close(struct blobstore_rfile *r)
{
	if (r) {
		close(r->fd);
		free(r);
	}
}

static int local_rewrite_head(struct blobstore *bs, const struct blob_id *id,
			      const void *buf, size_t len, struct iverr *e)
{
	struct local_store *ls = (struct local_store *)bs;
	char path[64];
	int fd, ret = 0;

	local_blob_path(id, path);
	fd = openat(ls->dirfd, path, O_WRONLY | O_CLOEXEC | O_NOFOLLOW);
	if (fd < 0)
		return iverr_set(e, errno, "cannot open blob %s for rewrapping: %s", path + 12,
				 strerror(errno));
	/* One small write inside the first sector: atomic in practice. */
	if (pwrite(fd, buf, len, 0) != (ssize_t)len || fsync(fd) < 0)
		ret = iverr_set(e, errno ? errno : EIO, "cannot rewrite blob %s: %s", path + 12,
				strerror(errno));
	close(fd);
	return ret;
}

static int local_remove(struct blobstore *bs, const struct blob_id *id, struct iverr *e)
{
	struct local_store *ls = (struct local_store *)bs;
	char path[64];

	local_blob_path(id, path);
	if (unlinkat(ls->dirfd, path, 0) < 0 && errno != ENOENT)
		return iverr_set(e, errno, "cannot remove blob %s: %s", path + 12, strerror(errno));
	return 0;
}

static int local_list(struct blobstore *bs, blobstore_list_fn fn, void *arg, struct iverr *e)
{
	struct local_store *ls = (struct local_store *)bs;
	int ret = 0;
	int fd = openat(ls->dirfd, "blobs", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	DIR *top;
	struct dirent *d1;

	if (fd < 0)
		return iverr_set(e, errno, "cannot list %s/blobs: %s", ls->path, strerror(errno));
	top = fdopendir(fd);
	if (!top) {
		close(fd);
		return iverr_set(e, errno, "cannot list %s/blobs", ls->path);
	}
	while (!ret && (d1 = readdir(top))) {
		DIR *mid;
		struct dirent *d2;
		int fd2;

		if (d1->d_name[0] == '.')
			continue;
		fd2 = openat(dirfd(top), d1->d_name, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
		if (fd2 < 0 || !(mid = fdopendir(fd2))) {
			if (fd2 >= 0)
				close(fd2);
			continue;
		}
		while (!ret && (d2 = readdir(mid))) {
			DIR *leaf;
			struct dirent *d3;
			int fd3;

			if (d2->d_name[0] == '.')
				continue;
			fd3 = openat(dirfd(mid), d2->d_name, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
			if (fd3 < 0 || !(leaf = fdopendir(fd3))) {
				if (fd3 >= 0)
					close(fd3);
				continue;
			}
			while (!ret && (d3 = readdir(leaf))) {
				struct blob_id id;
				struct stat st;

				if (d3->d_name[0] == '.' || blob_id_parse(d3->d_name, &id) < 0)
					continue;
				if (fstatat(dirfd(leaf), d3->d_name, &st, AT_SYMLINK_NOFOLLOW) < 0)
					continue;
				ret = fn(&id, (uint64_t)st.st_size, arg);
			}
			closedir(leaf);
		}
		closedir(mid);
	}
	closedir(top);
	return ret;
}

static int local_sweep(struct blobstore *bs, struct iverr *e)
{
	struct local_store *ls = (struct local_store *)bs;
	int fd = openat(ls->dirfd, "tmp", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	struct dirent *d;
	int count = 0;
	DIR *dir;

	if (fd < 0)
		return iverr_set(e, errno, "cannot open %s/tmp: %s", ls->path, strerror(errno));
	dir = fdopendir(fd);
	if (!dir) {
		close(fd);
		return iverr_set(e, errno, "cannot open %s/tmp", ls->path);
	}
	while ((d = readdir(dir))) {
		if (d->d_name[0] == '.')
			continue;
		if (unlinkat(dirfd(dir), d->d_name, 0) == 0)
			count++;
	}
	closedir(dir);
	return count;
}

static void local_free(struct blobstore *bs)
{
	struct local_store *ls = (struct local_store *)bs;

	close(ls->dirfd);
	free(ls->path);
	free(ls);
}

static const struct blobstore_ops local_ops = {
	.create = local_create,
	.pwrite = local_pwrite,
	.commit = local_commit,
	.abort = local_abort,
	.open = local_open,
	.pread = local_pread,
	.close = local_close,
	.rewrite_head = local_rewrite_head,
	.remove = local_remove,
	.list = local_list,
	.sweep = local_sweep,
	.free = local_free,
};

int blobstore_local_open(const char *dir, struct blobstore **out, struct iverr *e)
{
	struct local_store *ls;
	int ret;

	*out = NULL;
	ls = calloc(1, sizeof(*ls));
	if (!ls || !(ls->path = strdup(dir))) {
		free(ls);
		return iverr_set(e, ENOMEM, "out of memory");
	}
	ls->base.ops = &local_ops;
	ls->dirfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (ls->dirfd < 0) {
		ret = iverr_set(e, errno, "cannot open store %s: %s", dir, strerror(errno));
		goto out_free;
	}
	ret = mkdirat_p(ls->dirfd, "blobs");
	if (ret >= 0) {
		int made_tmp = mkdirat_p(ls->dirfd, "tmp");
		ret = made_tmp < 0 ? made_tmp : (ret || made_tmp) ? local_fsync_dir(ls->dirfd, ".") : 0;
	}
	if (ret < 0) {
		iverr_set(e, -ret, "cannot create the blob directories in %s: %s", dir,
			  strerror(-ret));
		close(ls->dirfd);
		goto out_free;
	}
	*out = &ls->base;
	return 0;
out_free:
	free(ls->path);
	free(ls);
	return ret;
}
