/* imgvault import, export, ls, cat and rm. */
#include <dirent.h>
#include <fcntl.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <sodium.h>

#include "bytes.h"
#include "cli.h"
#include "progress.h"
#include "share.h"
#include "strip.h"
#include "thumbnailer.h"

/* Until the image pipeline brings configurable limits, a hard ceiling keeps
 * one import from exhausting memory. */
#define IMPORT_MAX ((uint64_t)256 << 20)
#define IO_CHUNK (1 << 20)

/*
 * What import reads is opened without following a symbolic link anywhere
 * below what the caller named: each file through its directory's fd, with
 * O_NOFOLLOW, and checked (fstat) on the fd it is read from.  A file swapped
 * for a link between listing and reading is refused, never followed (root's
 * import must not be turned against root).
 */
#define WALK_DEPTH_MAX 64
#define OPEN_FLAGS (O_RDONLY | O_CLOEXEC | O_NONBLOCK | O_NOCTTY | O_NOFOLLOW)

struct import_file {
	char *path;      /* for messages; below a directory: its top's path + rel */
	int top;         /* index in import_list.tops, or -1: @path itself */
	size_t rel;      /* where the part below the top starts in @path */
	uint64_t size;
};

struct import_list {
	struct import_file *v;
	size_t n, cap;
	uint64_t bytes;
	int *tops;       /* directories named on the command line, open */
	size_t n_tops;
};

static int list_add(struct import_list *l, const char *path, int top, size_t rel,
		    uint64_t size)
{
	if (l->n == l->cap) {
		size_t cap = l->cap ? 2 * l->cap : 64;
		struct import_file *p = realloc(l->v, cap * sizeof(*p));
		if (!p)
			return -ENOMEM;
		l->v = p;
		l->cap = cap;
	}
	if (!(l->v[l->n].path = strdup(path)))
		return -ENOMEM;
	l->v[l->n].top = top;
	l->v[l->n].rel = rel;
	l->v[l->n++].size = size;
	l->bytes += size;
	return 0;
}

static void list_free(struct import_list *l)
{
	for (size_t i = 0; i < l->n; i++)
		free(l->v[i].path);
	free(l->v);
	for (size_t i = 0; i < l->n_tops; i++)
		close(l->tops[i]);
	free(l->tops);
}

static int by_name(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

static void skipped(const struct cli *c, const char *path, const char *why, size_t *refused)
{
	fprintf(stderr, "%s: skipped %s: %s\n", c->prog, path, why);
	(*refused)++;
}

/* The names in @dp but . and .., sorted; the caller frees them. */
static int read_names(DIR *dp, char ***out, size_t *count)
{
	char **names = NULL;
	size_t n = 0, cap = 0;
	struct dirent *d;

	while ((d = readdir(dp))) {
		if (!strcmp(d->d_name, ".") || !strcmp(d->d_name, ".."))
			continue;
		if (n == cap) {
			char **p = realloc(names, (cap = cap ? 2 * cap : 64) * sizeof(*p));
			if (!p)
				goto fail;
			names = p;
		}
		if (!(names[n] = strdup(d->d_name)))
			goto fail;
		n++;
	}
	qsort(names, n, sizeof(*names), by_name);
	*out = names;
	*count = n;
	return 0;
fail:
	for (size_t i = 0; i < n; i++)
		free(names[i]);
	free(names);
	return -ENOMEM;
}

/* Adds every regular file below the directory @fd (which it closes), in name
 * order; symbolic links are skipped, as cp -r would copy the link, not an
 * image. */
static int walk(const struct cli *c, int fd, const char *dir, int top, size_t rel,
		int depth, struct import_list *l, size_t *refused)
{
	char **names = NULL, path[4096];
	size_t n = 0;
	struct stat st;
	int ret;
	DIR *dp = fdopendir(fd);

	if (!dp) {
		close(fd);
		skipped(c, dir, strerror(errno), refused);
		return 0;
	}
	if ((ret = read_names(dp, &names, &n)) < 0)
		goto out;
	for (size_t i = 0; ret >= 0 && i < n; i++) {
		if ((size_t)snprintf(path, sizeof(path), "%s/%s", dir, names[i]) >= sizeof(path)) {
			skipped(c, path, "the path is too long", refused);
			continue;
		}
		if (fstatat(dirfd(dp), names[i], &st, AT_SYMLINK_NOFOLLOW) < 0)
			continue;
		if (S_ISDIR(st.st_mode) && depth >= WALK_DEPTH_MAX) {
			skipped(c, path, "directories nested too deep", refused);
		} else if (S_ISDIR(st.st_mode)) {
			int sub = openat(dirfd(dp), names[i], O_RDONLY | O_DIRECTORY | O_NOFOLLOW |
					 O_CLOEXEC);
			if (sub < 0)
				skipped(c, path, strerror(errno), refused);
			else
				ret = walk(c, sub, path, top, rel, depth + 1, l, refused);
		} else if (S_ISREG(st.st_mode)) {
			ret = list_add(l, path, top, rel, (uint64_t)st.st_size);
		} else {
			/* FIFOs, devices, symbolic links: not images (cp -r would copy a
			 * link as a link). */
			skipped(c, path, "not a regular file", refused);
		}
	}
out:
	for (size_t i = 0; i < n; i++)
		free(names[i]);
	free(names);
	closedir(dp);
	return ret;
}

/* Lists what the command line names: a regular file, or a directory to
 * walk; a symbolic link is refused (name what it points to). */
static int list_arg(const struct cli *c, const char *arg, struct import_list *l,
		    size_t *refused)
{
	struct stat st;
	int *tops, fd = open(arg, OPEN_FLAGS);

	if (fd < 0 && errno == ELOOP) {
		skipped(c, arg, "a symbolic link: import does not follow links; name the file "
			"it points to", refused);
		return 0;
	}
	if (fd < 0 || fstat(fd, &st) < 0) {
		skipped(c, arg, strerror(errno), refused);
		if (fd >= 0)
			close(fd);
		return 0;
	}
	if (S_ISREG(st.st_mode)) {
		close(fd);
		return list_add(l, arg, -1, 0, (uint64_t)st.st_size);
	}
	if (!S_ISDIR(st.st_mode)) {
		/* A FIFO or a device would block, or never end: not an image. */
		close(fd);
		skipped(c, arg, "not a regular file", refused);
		return 0;
	}
	if (!(tops = realloc(l->tops, (l->n_tops + 1) * sizeof(*tops))) ||
	    (tops[l->n_tops] = dup(fd)) < 0) {
		if (tops)
			l->tops = tops;
		close(fd);
		return -ENOMEM;
	}
	l->tops = tops;
	l->n_tops++;
	return walk(c, fd, arg, (int)l->n_tops - 1, strlen(arg) + 1, 1, l, refused);
}

/* Opens @f for reading without following a link on the way: its path below
 * its top directory, one component at a time. */
static int open_listed(const struct import_list *l, const struct import_file *f)
{
	char part[4096], *save = NULL, *next;
	int dir, fd;

	if (f->top < 0)
		return open(f->path, OPEN_FLAGS);
	snprintf(part, sizeof(part), "%s", f->path + f->rel);
	dir = l->tops[f->top];
	for (char *p = strtok_r(part, "/", &save); p; p = next) {
		next = strtok_r(NULL, "/", &save);
		fd = openat(dir, p, next ? O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC
			    : OPEN_FLAGS);
		if (dir != l->tops[f->top])
			close(dir);
		if (fd < 0 || !next)
			return fd;
		dir = fd;
	}
	errno = ENOENT;
	return -1;
}

/* Reads a whole listed file; the caller owns *out. */
static int read_file(const struct import_list *l, const struct import_file *f, uint8_t **out,
		     size_t *len, struct iverr *e)
{
	struct stat st;
	uint8_t *buf = NULL;
	size_t done = 0;
	int ret = 0, fd = open_listed(l, f);

	*out = NULL;
	if (fd < 0 && (errno == ELOOP || errno == ENOTDIR))
		return iverr_set(e, EPERM, "it (or a directory on the way) became a symbolic "
				 "link: import does not follow links");
	if (fd < 0)
		return iverr_set(e, errno, "%s", strerror(errno));
	if (fstat(fd, &st) < 0) {
		ret = iverr_set(e, errno, "%s", strerror(errno));
		goto out;
	}
	if (!S_ISREG(st.st_mode)) {
		ret = iverr_set(e, EINVAL, "not a regular file");
		goto out;
	}
	if ((uint64_t)st.st_size > IMPORT_MAX) {
		ret = iverr_set(e, EFBIG, "%lld bytes is over the %llu MiB import limit",
				(long long)st.st_size, (unsigned long long)(IMPORT_MAX >> 20));
		goto out;
	}
	buf = malloc(st.st_size ? (size_t)st.st_size : 1);
	if (!buf) {
		ret = iverr_set(e, ENOMEM, "out of memory");
		goto out;
	}
	while (done < (size_t)st.st_size) {
		ssize_t n = read(fd, buf + done, (size_t)st.st_size - done);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0) {
			ret = iverr_set(e, n < 0 ? errno : EIO, "%s",
					n < 0 ? strerror(errno) : "it shrank while being read");
			goto out;
		}
		done += (size_t)n;
	}
	*out = buf;
	*len = done;
	buf = NULL;
out:
	free(buf);
	close(fd);
	return ret;
}

static void print_image_json(const char *album, size_t album_len, const struct vault_image *im)
{
	char pid[33], sha[65];

	hex_encode(im->pid, sizeof(im->pid), pid);
	hex_encode(im->sha256, sizeof(im->sha256), sha);
	printf("\"album\":");
	cli_json_string(stdout, album, album_len);
	printf(",\"name\":");
	cli_json_string(stdout, im->name, im->name_len);
	printf(",\"id\":\"%s\",\"size\":%" PRIu64 ",\"mime\":\"%s\",\"width\":%u,"
	       "\"height\":%u,\"sha256\":\"%s\",\"mtime\":%" PRId64 ",\"damaged\":%s,"
	       "\"edited\":%s", pid, im->size, im->mime, im->width, im->height,
	       im->size ? sha : "", im->mtime, im->damaged ? "true" : "false",
	       im->edited ? "true" : "false");
}

/* A problem with one input file (not with the store): reported, skipped. */
static bool input_problem(int ret)
{
	return ret == -IV_EREJECT || ret == -ENAMETOOLONG || ret == -EACCES || ret == -EFBIG ||
	       ret == -ENOENT || ret == -EISDIR || ret == -EPERM;
}

/*
 * Import runs as a pipeline: workers read, admit, hash and encrypt files
 * (vault_stage) a few files ahead, while this thread commits them to the
 * catalog in order and reports each one as soon as it is committed.
 */
#define IMPORT_WORKERS 1
#define IMPORT_AHEAD 4

struct import_result {
	bool ready;
	int ret;
	struct iverr err;
	struct vault_staged st;
};

struct import_pool {
	pthread_mutex_t lock;
	pthread_cond_t cond;
	const struct import_list *files;
	struct vault_session *s;
	struct import_result *results;
	size_t next;          /* the next file a worker takes */
	size_t committed;     /* files the committer is done with */
	bool stop;
};

static void *import_worker(void *arg)
{
	struct import_pool *p = arg;
	struct image_sniffer *sniffer = NULL;
	struct iverr serr = { 0 };
	int sret = image_sniffer_new(&sniffer, &serr);

	for (;;) {
		struct import_result r = { .ready = true };
		uint8_t *data = NULL;
		size_t i, len = 0;

		pthread_mutex_lock(&p->lock);
		while (!p->stop && p->next < p->files->n && p->next >= p->committed + IMPORT_AHEAD)
			pthread_cond_wait(&p->cond, &p->lock);
		if (p->stop || p->next >= p->files->n) {
			pthread_mutex_unlock(&p->lock);
			break;
		}
		i = p->next++;
		pthread_mutex_unlock(&p->lock);

		if (sret < 0) {
			r.ret = sret;
			r.err = serr;
		} else if ((r.ret = read_file(p->files, &p->files->v[i], &data, &len, &r.err)) == 0) {
			r.ret = vault_stage(p->s, sniffer, data, len, &r.st, &r.err);
			free(data);
		}
		pthread_mutex_lock(&p->lock);
		p->results[i] = r;
		pthread_cond_broadcast(&p->cond);
		pthread_mutex_unlock(&p->lock);
	}
	image_sniffer_free(sniffer);
	return NULL;
}

int cmd_import(struct cli *c)
{
	struct iverr e = { 0 };
	struct vault *v = NULL;
	struct vault_session *s = NULL;
	struct import_list files = { 0 };
	struct import_pool pool = { .lock = PTHREAD_MUTEX_INITIALIZER,
				    .cond = PTHREAD_COND_INITIALIZER };
	pthread_t workers[IMPORT_WORKERS];
	struct thumbnailer *thumbs = NULL;
	int nworkers = 0;
	struct progress bar;
	const char *album = c->album ? c->album : VAULT_DEFAULT_ALBUM;
	uint64_t done_bytes = 0;
	size_t imported = 0, refused = 0, i = 0;
	int64_t album_id;
	int ret = 0;

	if (c->nargs < 1)
		return cli_usage(c, "usage: imgvault import [--album ALBUM] PATH...");
	for (int a = 0; a < c->nargs && ret >= 0; a++)
		ret = list_arg(c, c->args[a], &files, &refused);
	if (ret < 0) {
		ret = iverr_set(&e, ENOMEM, "out of memory listing the files");
		goto out;
	}
	if ((ret = cli_open_store(c, &v, &e)) < 0 || (ret = cli_session(c, v, &s, &e)) < 0 ||
	    (ret = vault_album_ensure(s, album, strlen(album), &album_id, &e)) < 0)
		goto out;
	c->session = s;
	if (!c->no_thumbs && (ret = thumbnailer_start(s, 1, &thumbs, &e)) < 0)
		goto out;
	pool.files = &files;
	pool.s = s;
	pool.results = calloc(files.n ? files.n : 1, sizeof(*pool.results));
	if (!pool.results) {
		ret = iverr_set(&e, ENOMEM, "out of memory");
		goto out;
	}
	for (int w = 0; w < IMPORT_WORKERS; w++)
		if (pthread_create(&workers[nworkers], NULL, import_worker, &pool) == 0)
			nworkers++;
	if (!nworkers) {
		ret = iverr_set(&e, EAGAIN, "cannot start a thread");
		goto out;
	}
	progress_init(&bar, "importing", c->progress && !c->json && !c->quiet);
	for (i = 0; i < files.n; i++) {
		const char *path = files.v[i].path, *base = strrchr(path, '/');
		struct import_result *r = &pool.results[i];
		struct vault_image im;

		base = base ? base + 1 : path;
		pthread_mutex_lock(&pool.lock);
		while (!r->ready)
			pthread_cond_wait(&pool.cond, &pool.lock);
		pthread_mutex_unlock(&pool.lock);
		e = r->err;
		ret = r->ret;
		if (ret == 0)
			ret = vault_commit_staged(s, album_id, base, strlen(base), &r->st, &im, &e);
		else if (ret == -IV_EREJECT)
			vault_note_refused(s, "content refused");
		done_bytes += files.v[i].size;
		pthread_mutex_lock(&pool.lock);
		pool.committed = i + 1;
		pthread_cond_broadcast(&pool.cond);
		pthread_mutex_unlock(&pool.lock);
		if (ret < 0 && input_problem(ret)) {
			progress_done(&bar);
			refused++;
			fprintf(stderr, "%s: skipped %s: %s\n", c->prog, path, e.msg);
			if (c->json) {
				printf("{\"path\":");
				cli_json_string(stdout, path, strlen(path));
				printf(",\"error\":");
				cli_json_string(stdout, e.msg, strlen(e.msg));
				printf("}\n");
			}
			ret = 0;
			continue;
		}
		if (ret < 0)
			break;   /* a store problem: stop, the store is consistent */
		imported++;
		progress_done(&bar);
		if (c->json) {
			printf("{\"path\":");
			cli_json_string(stdout, path, strlen(path));
			printf(",");
			print_image_json(album, strlen(album), &im);
			printf("}\n");
		} else if (!c->quiet) {
			printf("imported %s as %s/", path, album);
			cli_print_name(stdout, im.name, im.name_len);
			putchar('\n');
		}
		fflush(stdout);   /* "imported" is a promise: say it as soon as it holds */
		progress_update(&bar, i + 1, files.n, done_bytes, files.bytes);
		/* Thumbnails as images arrive, off the commit path: only what is done. */
		if (thumbs && (ret = cli_make_thumbs(c, thumbs, false, 0, &e)) < 0)
			break;
	}
	progress_done(&bar);
	pthread_mutex_lock(&pool.lock);
	pool.stop = true;
	pthread_cond_broadcast(&pool.cond);
	pthread_mutex_unlock(&pool.lock);
	while (nworkers)
		pthread_join(workers[--nworkers], NULL);
	/* After a stop, what the workers staged ahead is not wanted. */
	for (size_t k = i; k < files.n; k++)
		if (pool.results[k].ready && pool.results[k].ret == 0)
			vault_discard_staged(s, &pool.results[k].st);
	if (ret < 0) {
		ret = cli_fail(c, ret, "import stopped at %s: %s; %zu of %zu files were imported "
			       "and the store is consistent; fix the cause and run the import "
			       "again", files.v[i].path, e.msg, imported, files.n);
		goto out_quiet;
	}
	if (thumbs && (ret = cli_make_thumbs(c, thumbs, true, 0, &e)) < 0) {
		ret = cli_fail(c, ret, "import: every image is imported, but making thumbnails "
			       "stopped: %s; run imgvault thumbs to finish them", e.msg);
		goto out_quiet;
	}
	if (c->json)
		printf("{\"imported\":%zu,\"refused\":%zu,\"damaged\":%llu}\n", imported, refused,
		       (unsigned long long)c->thumbs_damaged);
	else if (!c->quiet)
		printf("%zu imported, %zu refused%s\n", imported, refused,
		       c->thumbs_damaged ? ", some marked damaged (see above)" : "");
	ret = refused ? EXIT_PARTIAL : c->thumbs_damaged ? EXIT_DAMAGE : EXIT_OK;
	goto out_quiet;
out:
	ret = ret < 0 ? cli_fail(c, ret, "import: %s", e.msg) : EXIT_OK;
out_quiet:
	thumbnailer_stop(thumbs);
	free(pool.results);
	list_free(&files);
	vault_session_close(s);
	vault_close(v);
	return ret;
}

/* Copies an open file to @fd (or stdout), hashing; -IV_EDAMAGE on mismatch. */
static int copy_out(struct vault_file *f, int fd, struct iverr *e)
{
	crypto_hash_sha256_state st;
	uint8_t digest[32], *buf = malloc(IO_CHUNK);
	uint64_t off = 0;
	ssize_t n;
	int ret = 0;

	if (!buf)
		return iverr_set(e, ENOMEM, "out of memory");
	crypto_hash_sha256_init(&st);
	while ((n = vault_file_pread(f, buf, IO_CHUNK, off, e)) > 0) {
		crypto_hash_sha256_update(&st, buf, (size_t)n);
		for (ssize_t w = 0; w < n;) {
			ssize_t k = write(fd, buf + w, (size_t)(n - w));
			if (k < 0 && errno == EINTR)
				continue;
			if (k < 0) {
				ret = iverr_set(e, errno, "cannot write: %s", strerror(errno));
				goto out;
			}
			w += k;
		}
		off += (uint64_t)n;
	}
	if (n == -IV_EDAMAGE)
		vault_file_report_damage(f, e->msg);
	if (n < 0) {
		ret = (int)n;
		goto out;
	}
	crypto_hash_sha256_final(&st, digest);
	if (off && sodium_memcmp(digest, vault_file_sha256(f), 32) != 0)
		ret = iverr_set(e, IV_EDAMAGE, "image '%s' does not match its recorded SHA-256; "
				"run imgvault fsck", vault_file_image(f)->name);
out:
	free(buf);
	return ret;
}

/* The current version with location and device metadata removed, as share
 * links serve it (share_read_stripped). */
static int copy_stripped(struct vault_file *f, int fd, struct iverr *e)
{
	uint8_t *out = NULL;
	size_t out_len = 0;
	char mime[VAULT_MIME_MAX];
	int ret = share_read_stripped(f, &out, &out_len, mime, e);

	if (ret < 0)
		goto out;
	for (size_t w = 0; w < out_len;) {
		ssize_t k = write(fd, out + w, out_len - w);
		if (k < 0 && errno == EINTR)
			continue;
		if (k < 0) {
			ret = iverr_set(e, errno, "cannot write: %s", strerror(errno));
			goto out;
		}
		w += (size_t)k;
	}
out:
	free(out);
	return ret;
}

struct export_ctx {
	struct cli *c;
	struct vault_session *s;
	int dirfd;
	const char *album;
	size_t album_len;
	size_t exported, damaged;
	struct progress bar;
	uint64_t items, items_total, bytes, bytes_total;
	bool counting;           /* the first pass only sums up, for the bar */
	int err;                 /* first store-level failure */
	struct iverr *e;
};

#define CREATE_FLAGS (O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC)

/*
 * Creates the file @name of an export in x->dirfd: always a new file, never
 * through a symbolic link, never one that was there (root's export into a
 * directory a user can write must not be turned against root).  With
 * --force, a new temporary file (its name in @tmp) that the caller renames
 * over @name once written; otherwise @tmp is "".  -> an fd or -errno.
 */
static int create_out(struct export_ctx *x, const char *name, char *tmp, size_t cap,
		      struct iverr *e)
{
	uint8_t rnd[8];
	char hex[17];
	int fd = -1;

	tmp[0] = '\0';
	if (!x->c->force) {
		fd = openat(x->dirfd, name, CREATE_FLAGS, 0600);
		if (fd < 0 && errno == EEXIST)
			return iverr_set(e, EEXIST, "it exists already (a file, a directory or a "
					 "symbolic link) and export never overwrites: remove it, "
					 "export into an empty directory, or give --force to replace "
					 "it");
		if (fd < 0)
			return iverr_set(e, errno, "cannot create it: %s", strerror(errno));
		return fd;
	}
	for (int i = 0; i < 8 && fd < 0; i++) {
		randombytes_buf(rnd, sizeof(rnd));
		hex_encode(rnd, sizeof(rnd), hex);
		snprintf(tmp, cap, ".imgvault-export-%s.tmp", hex);
		fd = openat(x->dirfd, tmp, CREATE_FLAGS, 0600);
		if (fd < 0 && errno != EEXIST)
			break;
	}
	if (fd < 0) {
		int err = errno;
		tmp[0] = '\0';
		return iverr_set(e, err, "cannot create a temporary file beside it: %s",
				 strerror(err));
	}
	return fd;
}

static int export_image(const struct vault_image *im, void *arg)
{
	struct export_ctx *x = arg;
	struct vault_file *f = NULL;
	struct iverr err = { 0 };
	struct timespec times[2];
	char tmp[64];
	int fd, ret;

	if (x->counting) {
		x->items_total++;
		x->bytes_total += im->size;
		return 0;
	}
	x->items++;
	x->bytes += im->size;
	progress_update(&x->bar, x->items, x->items_total, x->bytes, x->bytes_total);
	ret = vault_file_open(x->s, im->id, x->c->pristine ? VAULT_PRISTINE : VAULT_ORIGINAL,
			      &f, &err);
	if (ret == 0 && (fd = create_out(x, im->name, tmp, sizeof(tmp), &err)) < 0)
		ret = fd;
	else if (ret == 0) {
		ret = copy_out(f, fd, &err);
		times[0].tv_sec = times[1].tv_sec = im->mtime;
		times[0].tv_nsec = times[1].tv_nsec = 0;
		futimens(fd, times);
		if (close(fd) < 0 && ret == 0)
			ret = iverr_set(&err, errno, "cannot write it: %s", strerror(errno));
		if (ret == 0 && tmp[0] && renameat(x->dirfd, tmp, x->dirfd, im->name) < 0)
			ret = iverr_set(&err, errno, "cannot replace it: %s", strerror(errno));
		/* Never leave wrong bytes; only a file this export created goes. */
		if (ret < 0)
			unlinkat(x->dirfd, tmp[0] ? tmp : im->name, 0);
	}
	vault_file_close(f);
	if (ret == -IV_EDAMAGE) {
		x->damaged++;
		progress_done(&x->bar);
		fprintf(stderr, "%s: not exported: %s\n", x->c->prog, err.msg);
		return 0;
	}
	if (ret < 0) {
		x->err = ret;
		iverr_set(x->e, err.code, "%.*s/%s: %s", (int)x->album_len, x->album, im->name,
			  err.msg);
		return ret;
	}
	x->exported++;
	if (x->c->json) {
		progress_done(&x->bar);
		printf("{");
		print_image_json(x->album, x->album_len, im);
		printf("}\n");
	}
	return 0;
}

static int export_album(int64_t id, const char *name, size_t len, void *arg)
{
	struct export_ctx *x = arg;
	int parent = x->dirfd, ret;
	char dname[CATALOG_NAME_MAX + 1];

	if (x->c->album && (strlen(x->c->album) != len || memcmp(x->c->album, name, len)))
		return 0;
	if (x->counting)
		return vault_image_list(x->s, id, export_image, x, x->e);
	snprintf(dname, sizeof(dname), "%.*s", (int)len, name);
	if (mkdirat(parent, dname, 0700) < 0 && errno != EEXIST)
		return iverr_set(x->e, errno, "cannot create %s: %s", dname, strerror(errno));
	/* Never a symbolic link below DEST: it could point anywhere. */
	x->dirfd = openat(parent, dname, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	if (x->dirfd < 0) {
		int err = errno;
		x->dirfd = parent;
		if (err == ELOOP || err == ENOTDIR)
			return iverr_set(x->e, err, "%s in the destination is not a directory (a "
					 "symbolic link?) and export never follows links: remove "
					 "it or export into an empty directory", dname);
		return iverr_set(x->e, err, "cannot open %s: %s", dname, strerror(err));
	}
	x->album = name;
	x->album_len = len;
	ret = vault_image_list(x->s, id, export_image, x, x->e);
	close(x->dirfd);
	x->dirfd = parent;
	return ret;
}

int cmd_export(struct cli *c)
{
	struct iverr e = { 0 };
	struct vault *v = NULL;
	struct vault_session *s = NULL;
	struct export_ctx x = { .c = c, .e = &e, .dirfd = -1 };
	int64_t album_id;
	int ret;

	if (c->nargs != 1)
		return cli_usage(c, "usage: imgvault export [--album ALBUM] DEST");
	if (mkdir(c->args[0], 0700) < 0 && errno != EEXIST)
		return cli_fail(c, -errno, "export: cannot create %s: %s", c->args[0], strerror(errno));
	x.dirfd = open(c->args[0], O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	if (x.dirfd < 0 && (errno == ELOOP || errno == ENOTDIR))
		return cli_fail(c, -errno, "export: %s is not a directory (a symbolic link?): "
				"give the directory itself", c->args[0]);
	if (x.dirfd < 0)
		return cli_fail(c, -errno, "export: cannot open %s: %s", c->args[0], strerror(errno));
	if ((ret = cli_open_store(c, &v, &e)) < 0 || (ret = cli_session(c, v, &s, &e)) < 0)
		goto out;
	x.s = s;
	if (c->album && (ret = vault_album_find(s, c->album, strlen(c->album), &album_id, &e)) < 0)
		goto out;
	x.counting = true;
	if ((ret = vault_album_list(s, export_album, &x, &e)) < 0)
		goto out;
	x.counting = false;
	progress_init(&x.bar, "exporting", c->progress && !c->json && !c->quiet);
	ret = vault_album_list(s, export_album, &x, &e);
	progress_done(&x.bar);
	if (ret == 0 && !c->json && !c->quiet)
		printf("%zu images exported to %s%s\n", x.exported, c->args[0],
		       x.damaged ? " (damaged ones were not)" : "");
out:
	close(x.dirfd);
	vault_session_close(s);
	vault_close(v);
	if (ret < 0)
		return cli_fail(c, ret, "export: %s", e.msg);
	return x.damaged ? EXIT_DAMAGE : EXIT_OK;
}

struct ls_ctx {
	struct cli *c;
	struct vault_session *s;
	const char *album;
	size_t album_len;
	uint64_t count, bytes;
};

static int count_image(const struct vault_image *im, void *arg)
{
	struct ls_ctx *x = arg;

	x->count++;
	x->bytes += im->size;
	return 0;
}

static int ls_album(int64_t id, const char *name, size_t len, void *arg)
{
	struct ls_ctx *x = arg;
	char size[32];
	int ret;

	x->count = x->bytes = 0;
	if ((ret = vault_image_list(x->s, id, count_image, x, NULL)) < 0)
		return ret;
	if (x->c->json) {
		printf("{\"album\":");
		cli_json_string(stdout, name, len);
		printf(",\"images\":%" PRIu64 ",\"bytes\":%" PRIu64 "}\n", x->count, x->bytes);
	} else {
		printf("%6" PRIu64 " images %10s  ", x->count, progress_bytes(x->bytes, size));
		cli_print_name(stdout, name, len);
		putchar('\n');
	}
	return 0;
}

static int ls_image(const struct vault_image *im, void *arg)
{
	struct ls_ctx *x = arg;
	char when[32];
	time_t t = (time_t)im->mtime;
	struct tm tm;

	if (x->c->json) {
		printf("{");
		print_image_json(x->album, x->album_len, im);
		printf("}\n");
		return 0;
	}
	strftime(when, sizeof(when), "%Y-%m-%d %H:%M", localtime_r(&t, &tm));
	printf("%10" PRIu64 "  %s  %-11s%s ", im->size, when, im->size ? im->mime : "(empty)",
	       im->damaged ? " DAMAGED" : im->edited ? " edited" : "");
	cli_print_name(stdout, im->name, im->name_len);
	putchar('\n');
	return 0;
}

int cmd_ls(struct cli *c)
{
	uint64_t hidden;
	struct iverr e = { 0 };
	struct vault *v = NULL;
	struct vault_session *s = NULL;
	struct ls_ctx x = { .c = c };
	int64_t album_id;
	int ret;

	if (c->nargs > 1)
		return cli_usage(c, "usage: imgvault ls [ALBUM]");
	if ((ret = cli_open_store(c, &v, &e)) < 0 || (ret = cli_session(c, v, &s, &e)) < 0)
		goto out;
	x.s = s;
	vault_rows_hidden(v);   /* counts from here */
	if (c->nargs == 0) {
		ret = vault_album_list(s, ls_album, &x, &e);
		goto out;
	}
	x.album = c->args[0];
	x.album_len = strlen(c->args[0]);
	if ((ret = vault_album_find(s, x.album, x.album_len, &album_id, &e)) < 0)
		goto out;
	ret = vault_image_list(s, album_id, ls_image, &x, &e);
out:
	/* A listing leaves out rows that fail authentication: say so. */
	if (ret == 0 && v && (hidden = vault_rows_hidden(v)) > 0)
		ret = iverr_set(&e, IV_EDAMAGE, "%" PRIu64 " entr%s not shown: %s catalog row%s "
				"fail%s authentication (catalog.db was edited); run imgvault fsck",
				hidden, hidden == 1 ? "y is" : "ies are", hidden == 1 ? "its" : "their",
				hidden == 1 ? "" : "s", hidden == 1 ? "s" : "");
	vault_session_close(s);
	vault_close(v);
	return ret < 0 ? cli_fail(c, ret, "ls: %s", e.msg) : EXIT_OK;
}

/* Finds ALBUM/NAME in the session's vault. */
static int find_path(struct vault_session *s, const char *arg, struct vault_image *im,
		     struct iverr *e)
{
	const char *album, *name;
	size_t album_len, name_len;
	int64_t album_id;
	int ret;

	if ((ret = cli_split_path(arg, &album, &album_len, &name, &name_len, e)) < 0 ||
	    (ret = vault_album_find(s, album, album_len, &album_id, e)) < 0)
		return ret;
	return vault_image_find(s, album_id, name, name_len, im, e);
}

int cmd_cat(struct cli *c)
{
	struct iverr e = { 0 };
	struct vault *v = NULL;
	struct vault_session *s = NULL;
	struct vault_file *f = NULL;
	struct thumbnailer *thumbs = NULL;
	enum vault_variant which;
	struct vault_image im;
	int ret;

	if (c->nargs != 1)
		return cli_usage(c, "usage: imgvault cat [--pristine | --thumb | --stripped] ALBUM/NAME");
	if (isatty(STDOUT_FILENO))
		return cli_fail(c, -EINVAL, "cat: refusing to write image bytes to a terminal; "
				"redirect to a file (imgvault cat %s > FILE)", c->args[0]);
	if (c->pristine + c->thumb + c->stripped > 1)
		return cli_usage(c, "cat takes one of --pristine, --thumb and --stripped");
	which = c->pristine ? VAULT_PRISTINE : c->thumb ? VAULT_THUMB : VAULT_ORIGINAL;
	if ((ret = cli_open_store(c, &v, &e)) < 0 || (ret = cli_session(c, v, &s, &e)) < 0 ||
	    (ret = find_path(s, c->args[0], &im, &e)) < 0)
		goto out;
	c->session = s;
	ret = vault_file_open(s, im.id, which, &f, &e);
	if (ret == -EAGAIN && which == VAULT_THUMB) {
		/* Not made yet: ahead of the queue, now. */
		iverr_clear(&e);
		if ((ret = vault_thumb_queue(s, im.id, true, false, &e)) < 0 ||
		    (ret = thumbnailer_start(s, 1, &thumbs, &e)) < 0 ||
		    (ret = cli_make_thumbs(c, thumbs, true, im.current_version, &e)) < 0)
			goto out;
		if (c->thumbs_damaged) {
			ret = iverr_set(&e, IV_EDAMAGE, "it does not decode: no thumbnail");
			goto out;
		}
		ret = vault_file_open(s, im.id, which, &f, &e);
	}
	if (ret < 0)
		goto out;
	if (c->stripped)
		ret = copy_stripped(f, STDOUT_FILENO, &e);
	else
		ret = copy_out(f, STDOUT_FILENO, &e);
out:
	thumbnailer_stop(thumbs);
	vault_file_close(f);
	vault_session_close(s);
	vault_close(v);
	return ret < 0 ? cli_fail(c, ret, "cat %s: %s", c->args[0], e.msg) : EXIT_OK;
}

int cmd_rm(struct cli *c)
{
	struct iverr e = { 0 };
	struct vault *v = NULL;
	struct vault_session *s = NULL;
	struct vault_image im;
	int ret, failed = 0;

	if (c->nargs < 1)
		return cli_usage(c, "usage: imgvault rm ALBUM/NAME...");
	if ((ret = cli_open_store(c, &v, &e)) < 0 || (ret = cli_session(c, v, &s, &e)) < 0)
		goto out;
	for (int i = 0; i < c->nargs; i++) {
		iverr_clear(&e);
		if ((ret = find_path(s, c->args[i], &im, &e)) < 0 ||
		    (ret = vault_image_remove(s, im.id, &e)) < 0) {
			failed = cli_fail(c, ret, "rm %s: %s", c->args[i], e.msg);
			continue;
		}
		if (!c->quiet && !c->json)
			printf("removed %s\n", c->args[i]);
	}
	ret = 0;
out:
	vault_session_close(s);
	vault_close(v);
	if (ret < 0)
		return cli_fail(c, ret, "rm: %s", e.msg);
	return failed;
}
