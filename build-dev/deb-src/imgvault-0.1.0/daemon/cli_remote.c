/*
 * The command line through a running imgvaultd: when the daemon holds the
 * store, status, ls, cat, import and rm go over its control socket
 * (docs/PROTOCOL.md) instead of opening the store, so only one process ever
 * writes it.  lock and unlock exist only there: they act on the daemon's
 * keys.
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include <sodium.h>

#include "bytes.h"
#include "cli.h"
#include "prompt.h"
#include "remote.h"
#include "rundir.h"

int remote_daemon_socket(const char *store, char *path, size_t cap)
{
	char lock[4096], text[512] = { 0 };
	const char *p;
	ssize_t n;
	int fd;

	snprintf(lock, sizeof(lock), "%s/lock", store);
	fd = open(lock, O_RDONLY | O_CLOEXEC);
	if (fd < 0 && errno == EACCES && access(CLI_SYSTEM_CONTROL, F_OK) == 0) {
		/* A system store is root's: its daemon's socket has a fixed name. */
		snprintf(path, cap, "%s", CLI_SYSTEM_CONTROL);
		return 0;
	}
	if (fd < 0)
		return -ENOENT;
	/* A lock we can take is nobody's: no daemon. */
	if (flock(fd, LOCK_SH | LOCK_NB) == 0) {
		close(fd);
		return -ENOENT;
	}
	n = pread(fd, text, sizeof(text) - 1, 0);
	close(fd);
	if (n <= 0 || strncmp(text, "imgvaultd", 9) || !(p = strstr(text, "control=")))
		return -ENOENT;
	p += 8;
	snprintf(path, cap, "%.*s", (int)strcspn(p, " )\n"), p);
	return 0;
}

/*
 * Nothing is sent until we know whom we talk to: the socket's directory must
 * be ours or root's and closed to others, and the listening process must
 * run as us or as root (SO_PEERCRED), or a passphrase or an image could go
 * to another user's fake daemon.
 */
int remote_connect(struct remote *r, const char *path, struct iverr *e)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	uid_t self = getuid();
	int ret;

	r->fd = -1;
	snprintf(r->path, sizeof(r->path), "%s", path);
	if ((ret = rundir_check_socket(path, self, e)) < 0)
		return ret;
	snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", path);
	r->fd = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0);
	if (r->fd < 0 || connect(r->fd, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
		int err = errno;
		ret = iverr_set(e, err, "cannot reach imgvaultd at %s: %s; is it running?", path,
				strerror(err));
		goto out_close;
	}
	if ((ret = rundir_check_peer(r->fd, path, self, e)) < 0)
		goto out_close;
	return 0;
out_close:
	if (r->fd >= 0)
		close(r->fd);
	r->fd = -1;
	return ret;
}

int remote_send(struct remote *r, struct iverr *e)
{
	if (proto_finish(&r->out) < 0)
		return iverr_set(e, EMSGSIZE, "request too large");
	if (send(r->fd, r->out.buf, r->out.len, MSG_NOSIGNAL) != (ssize_t)r->out.len)
		return iverr_set(e, errno, "imgvaultd went away: %s", strerror(errno));
	return 0;
}

int remote_recv(struct remote *r, struct iverr *e)
{
	ssize_t n = recv(r->fd, r->in, sizeof(r->in), 0);
	char msg[512];
	uint64_t err;

	/* A daemon that refused an import and closed without reading the rest
	 * makes the first recv say ECONNRESET; its ERROR is still queued. */
	if (n < 0 && errno == ECONNRESET)
		n = recv(r->fd, r->in, sizeof(r->in), 0);

	if (n <= 0 || proto_parse(r->in, (size_t)n, &r->m) < 0)
		return iverr_set(e, EPROTO, "imgvaultd sent no valid answer");
	if (r->m.type != P_ERROR)
		return 0;
	if (proto_get_u64(&r->m, T_ERRNO, &err) < 0 || !err || err > 4095)
		err = EIO;
	if (proto_get_str(&r->m, T_MESSAGE, msg, sizeof(msg)) < 0)
		snprintf(msg, sizeof(msg), "%s", strerror((int)err));
	return iverr_set(e, (int)err, "%s", msg);
}

void remote_close(struct remote *r)
{
	if (r->fd >= 0)
		close(r->fd);
	r->fd = -1;
	sodium_memzero(r->in, sizeof(r->in));
	sodium_memzero(r->out.buf, r->out.len);
}

static void put_path(struct remote *r, const char *album, size_t alen, const char *name,
		     size_t nlen)
{
	proto_put(&r->out, T_ALBUM, album, alen);
	proto_put(&r->out, T_NAME, name, nlen);
}

static int remote_status(struct cli *c, struct remote *r, struct iverr *e)
{
	char store[4096], mnt[4096], mode[16];
	uint64_t pending = 0;
	int ret;

	proto_begin(&r->out, P_STATUS);
	if ((ret = remote_send(r, e)) < 0 || (ret = remote_recv(r, e)) < 0)
		return ret;
	if (proto_get_str(&r->m, T_STORE, store, sizeof(store)) < 0 ||
	    proto_get_str(&r->m, T_MOUNT, mnt, sizeof(mnt)) < 0 ||
	    proto_get_str(&r->m, T_MODE, mode, sizeof(mode)) < 0)
		return iverr_set(e, EPROTO, "imgvaultd's status is incomplete");
	/* uid: the peer has a vault here; pending only while it is unlocked. */
	bool mine = proto_get(&r->m, T_UID) != NULL;
	bool locked = mine && proto_get_u64(&r->m, T_PENDING, &pending) < 0;
	if (c->json) {
		printf("{\"store\":");
		cli_json_string(stdout, store, strlen(store));
		printf(",\"mountpoint\":");
		cli_json_string(stdout, mnt, strlen(mnt));
		printf(",\"mode\":\"%s\",\"daemon\":true", mode);
		if (mine)
			printf(",\"locked\":%s", locked ? "true" : "false");
		if (mine && !locked)
			printf(",\"thumbnails_pending\":%" PRIu64, pending);
		printf("}\n");
	} else {
		printf("store %s is served by imgvaultd (%s mode), mounted on %s\n", store, mode, mnt);
		if (locked)
			printf("your vault is locked: its keys are not in memory; unlock it with "
			       "imgvault unlock\n");
		else if (mine)
			printf("your vault is unlocked: %" PRIu64 " thumbnails still to make\n",
			       pending);
	}
	return 0;
}

/* Adds the uid of --user, if given: whose vault a lock or unlock is for. */
static int put_target(struct cli *c, struct remote *r, struct iverr *e)
{
	uid_t uid;
	int ret;

	if (!c->user)
		return 0;
	if ((ret = cli_lookup_user(c->user, &uid, e)) < 0)
		return ret;
	proto_put_u64(&r->out, T_UID, uid);
	return 0;
}

/* "your vault" or "NAME's vault", for messages. */
static const char *whose(const struct cli *c, char *buf, size_t cap)
{
	if (!c->user)
		return "your vault";
	snprintf(buf, cap, "%s's vault", c->user);
	return buf;
}

static int remote_lock(struct cli *c, struct remote *r, struct iverr *e)
{
	char who[300];
	int ret;

	if (c->nargs != 0)
		return iverr_set(e, EINVAL, "usage: imgvault lock [--user NAME]");
	proto_begin(&r->out, P_LOCK);
	if ((ret = put_target(c, r, e)) < 0 || (ret = remote_send(r, e)) < 0 ||
	    (ret = remote_recv(r, e)) < 0)
		return ret;
	if (!c->quiet)
		printf("%s is locked: imgvaultd wiped its keys and the mount stays; unlock it "
		       "with imgvault unlock\n", whose(c, who, sizeof(who)));
	return 0;
}

/* Whether the daemon is in system mode (root unlocks with its server key)
 * and whether the peer's own vault there is unlocked already. */
static int remote_unlock_state(struct remote *r, bool *system, bool *unlocked,
			       struct iverr *e)
{
	char mode[16];
	int ret;

	proto_begin(&r->out, P_STATUS);
	if ((ret = remote_send(r, e)) < 0 || (ret = remote_recv(r, e)) < 0)
		return ret;
	if (proto_get_str(&r->m, T_MODE, mode, sizeof(mode)) < 0)
		return iverr_set(e, EPROTO, "imgvaultd's status is incomplete");
	*system = !strcmp(mode, "system");
	*unlocked = proto_get(&r->m, T_UID) && proto_get(&r->m, T_PENDING);
	return 0;
}

static int remote_unlock(struct cli *c, struct remote *r, struct iverr *e)
{
	struct secret pass = { 0 };
	bool system = false, unlocked = false;
	char who[300];
	int ret;

	if (c->nargs != 0)
		return iverr_set(e, EINVAL, "usage: imgvault unlock [--passphrase-file F] "
				 "[--user NAME]");
	if ((ret = remote_unlock_state(r, &system, &unlocked, e)) < 0)
		return ret;
	/* Not worth a passphrase prompt (the daemon would say so too). */
	if (unlocked && !c->user)
		return iverr_set(e, EALREADY, "your vault is not locked");
	/* Root on a system mount: the daemon's server key, no passphrase. */
	if (!(system && geteuid() == 0) &&
	    (ret = prompt_secret(c->passphrase_file, "Passphrase: ", 0, 0, &pass, e)) < 0)
		return ret;
	proto_begin(&r->out, P_UNLOCK);
	if ((ret = put_target(c, r, e)) == 0) {
		if (pass.buf)
			proto_put(&r->out, T_PASSPHRASE, pass.buf, pass.len);
		ret = remote_send(r, e);
	}
	sodium_memzero(r->out.buf, sizeof(r->out.buf));
	prompt_secret_free(&pass);
	if (ret < 0 || (ret = remote_recv(r, e)) < 0)
		return ret;
	if (!c->quiet)
		printf("%s is unlocked\n", whose(c, who, sizeof(who)));
	return 0;
}

static int remote_ls(struct cli *c, struct remote *r, struct iverr *e)
{
	int ret;

	if (c->nargs > 1)
		return iverr_set(e, EINVAL, "usage: imgvault ls [ALBUM]");
	proto_begin(&r->out, P_LS);
	if (c->nargs == 1)
		proto_put_str(&r->out, T_ALBUM, c->args[0]);
	if ((ret = remote_send(r, e)) < 0)
		return ret;
	while ((ret = remote_recv(r, e)) == 0 && r->m.type == P_ENTRY) {
		const struct proto_field *name = proto_get(&r->m, T_NAME);
		const struct proto_field *id = proto_get(&r->m, T_ID);
		const struct proto_field *sha = proto_get(&r->m, T_SHA256);
		char mime[64] = "", hex[65] = "", pid[33] = "", when[32];
		uint64_t size = 0, mtime = 0, damaged = 0, w = 0, h = 0;

		if (!name)
			return iverr_set(e, EPROTO, "imgvaultd sent an entry without a name");
		if (c->nargs == 0) {
			if (c->json) {
				printf("{\"album\":");
				cli_json_string(stdout, (const char *)name->val, name->len);
				printf("}\n");
			} else {
				cli_print_name(stdout, (const char *)name->val, name->len);
				putchar('\n');
			}
			continue;
		}
		proto_get_u64(&r->m, T_SIZE, &size);
		proto_get_u64(&r->m, T_MTIME, &mtime);
		proto_get_u64(&r->m, T_DAMAGED, &damaged);
		proto_get_u64(&r->m, T_WIDTH, &w);
		proto_get_u64(&r->m, T_HEIGHT, &h);
		proto_get_str(&r->m, T_MIME, mime, sizeof(mime));
		if (id && id->len == 16)
			hex_encode(id->val, 16, pid);
		if (sha && sha->len == 32)
			hex_encode(sha->val, 32, hex);
		if (c->json) {
			printf("{\"album\":");
			cli_json_string(stdout, c->args[0], strlen(c->args[0]));
			printf(",\"name\":");
			cli_json_string(stdout, (const char *)name->val, name->len);
			printf(",\"id\":\"%s\",\"size\":%" PRIu64 ",\"mime\":\"%s\",\"width\":%" PRIu64
			       ",\"height\":%" PRIu64 ",\"sha256\":\"%s\",\"mtime\":%" PRIu64
			       ",\"damaged\":%s}\n", pid, size, mime, w, h, size ? hex : "", mtime,
			       damaged ? "true" : "false");
		} else {
			time_t t = (time_t)mtime;
			struct tm tm;
			strftime(when, sizeof(when), "%Y-%m-%d %H:%M", localtime_r(&t, &tm));
			printf("%10" PRIu64 "  %s  %-11s%s ", size, when, size ? mime : "(empty)",
			       damaged ? " DAMAGED" : "");
			cli_print_name(stdout, (const char *)name->val, name->len);
			putchar('\n');
		}
	}
	if (ret == 0 && r->m.type != P_END)
		ret = iverr_set(e, EPROTO, "imgvaultd ended the listing oddly");
	return ret;
}

static int remote_cat(struct cli *c, struct remote *r, struct iverr *e)
{
	const char *album, *name;
	size_t alen, nlen;
	int ret;

	if (c->nargs != 1)
		return iverr_set(e, EINVAL, "usage: imgvault cat [--pristine | --thumb] ALBUM/NAME");
	if (c->stripped)
		return iverr_set(e, ENOTSUP, "cat --stripped needs the store: stop imgvaultd, or "
				 "read the file from the mount");
	if (isatty(STDOUT_FILENO))
		return iverr_set(e, EINVAL, "refusing to write image bytes to a terminal");
	if ((ret = cli_split_path(c->args[0], &album, &alen, &name, &nlen, e)) < 0)
		return ret;
	proto_begin(&r->out, P_CAT);
	put_path(r, album, alen, name, nlen);
	proto_put_u64(&r->out, T_VARIANT, c->pristine ? VAULT_PRISTINE : c->thumb ? VAULT_THUMB
		      : VAULT_ORIGINAL);
	if ((ret = remote_send(r, e)) < 0)
		return ret;
	while ((ret = remote_recv(r, e)) == 0 && r->m.type == P_DATA) {
		const struct proto_field *d = proto_get(&r->m, T_DATA);
		if (!d || write(STDOUT_FILENO, d->val, d->len) != (ssize_t)d->len)
			return iverr_set(e, EIO, "cannot write the image out");
	}
	return ret;
}

/* Sends a message of an upload.  A daemon that refused it half-way (no
 * vault, locked, too big, busy) closed the connection: its ERROR says why. */
static int send_upload(struct remote *r, struct iverr *e)
{
	struct iverr why = { 0 };
	int ret = remote_send(r, e);

	if (ret < 0 && remote_recv(r, &why) < 0 && why.code != EPROTO)
		ret = iverr_set(e, why.code, "%s", why.msg);
	return ret;
}

static int remote_import_one(struct cli *c, struct remote *r, const char *path,
			     const char *album, struct iverr *e)
{
	const char *base = strrchr(path, '/');
	uint8_t *buf = malloc(PROTO_DATA_MAX);
	struct stat st;
	ssize_t n;
	int ret = 0, fd;

	base = base ? base + 1 : path;
	if (!buf)
		return iverr_set(e, ENOMEM, "out of memory");
	/* Never through a symbolic link; the type is checked on the fd read. */
	fd = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK | O_NOCTTY | O_NOFOLLOW);
	if (fd < 0 && errno == ELOOP) {
		ret = iverr_set(e, EPERM, "a symbolic link: import does not follow links; name "
				"the file it points to");
		goto out;
	}
	if (fd < 0 || fstat(fd, &st) < 0 || !S_ISREG(st.st_mode)) {
		ret = iverr_set(e, fd < 0 ? errno : EINVAL, "%s", fd < 0 ? strerror(errno)
				: "not a regular file");
		goto out;
	}
	proto_begin(&r->out, P_IMPORT);
	put_path(r, album, strlen(album), base, strlen(base));
	if ((ret = remote_send(r, e)) < 0)
		goto out;
	while ((n = read(fd, buf, PROTO_DATA_MAX - 16)) > 0) {
		proto_begin(&r->out, P_DATA);
		proto_put(&r->out, T_DATA, buf, (size_t)n);
		if ((ret = send_upload(r, e)) < 0)
			goto out;
	}
	proto_begin(&r->out, P_END);
	if ((ret = send_upload(r, e)) < 0 || (ret = remote_recv(r, e)) < 0)
		goto out;
	if (!c->quiet && !c->json)
		printf("imported %s as %s/%s\n", path, album, base);
	else if (c->json)
		printf("{\"path\":\"%s\",\"album\":\"%s\",\"name\":\"%s\"}\n", path, album, base);
out:
	if (fd >= 0)
		close(fd);
	free(buf);
	return ret;
}

static bool closed_by_daemon(struct remote *r)
{
	char b;

	return recv(r->fd, &b, 1, MSG_PEEK | MSG_DONTWAIT) == 0;
}

static int remote_import(struct cli *c, struct remote *r, struct iverr *e)
{
	const char *album = c->album ? c->album : VAULT_DEFAULT_ALBUM;
	size_t imported = 0, refused = 0;

	for (int i = 0; i < c->nargs; i++) {
		struct iverr err = { 0 };
		int ret = remote_import_one(c, r, c->args[i], album, &err);
		if (ret == -EPROTO || ret == -EPIPE || ret == -ECONNRESET)
			return iverr_set(e, err.code, "%s", err.msg);
		if (ret < 0) {
			fprintf(stderr, "%s: skipped %s: %s\n", c->prog, c->args[i], err.msg);
			refused++;
			/* A refusal half-way closes the connection: open another. */
			if (closed_by_daemon(r) && i + 1 < c->nargs) {
				char path[sizeof(r->path)];
				snprintf(path, sizeof(path), "%s", r->path);
				close(r->fd);
				if (remote_connect(r, path, &err) < 0)
					return iverr_set(e, err.code, "%s", err.msg);
			}
		} else {
			imported++;
		}
	}
	if (!c->quiet && !c->json)
		printf("%zu imported, %zu refused (through imgvaultd)\n", imported, refused);
	return refused ? 1 : 0;
}

static int remote_rm(struct cli *c, struct remote *r, struct iverr *e)
{
	int failed = 0;

	for (int i = 0; i < c->nargs; i++) {
		const char *album, *name;
		size_t alen, nlen;
		struct iverr err = { 0 };
		int ret = cli_split_path(c->args[i], &album, &alen, &name, &nlen, &err);

		if (ret == 0) {
			proto_begin(&r->out, P_RM);
			put_path(r, album, alen, name, nlen);
			if ((ret = remote_send(r, &err)) == 0)
				ret = remote_recv(r, &err);
		}
		if (ret == -EPROTO)
			return iverr_set(e, err.code, "%s", err.msg);
		if (ret < 0) {
			failed = cli_fail(c, ret, "rm %s: %s", c->args[i], err.msg);
			continue;
		}
		if (!c->quiet && !c->json)
			printf("removed %s\n", c->args[i]);
	}
	return failed ? -1 : 0;
}

int remote_socket_of(struct cli *c, char *path, size_t cap)
{
	if (!c->store)
		c->store = cli_default_store(c);
	if (c->control) {
		snprintf(path, cap, "%s", c->control);
		return 0;
	}
	return remote_daemon_socket(c->store, path, cap);
}

int cli_remote(struct cli *c, int *exit_code)
{
	struct remote *r;
	struct iverr e = { 0 };
	char path[108];
	int ret;

	if (remote_socket_of(c, path, sizeof(path)) < 0)
		return 0;   /* not held by a daemon: the command opens the store */
	r = calloc(1, sizeof(*r));
	if (!r) {
		*exit_code = cli_fail(c, -ENOMEM, "out of memory");
		return 1;
	}
	if ((ret = remote_connect(r, path, &e)) == 0) {
		if (!strcmp(c->command, "status"))
			ret = remote_status(c, r, &e);
		else if (!strcmp(c->command, "ls"))
			ret = remote_ls(c, r, &e);
		else if (!strcmp(c->command, "cat"))
			ret = remote_cat(c, r, &e);
		else if (!strcmp(c->command, "import"))
			ret = remote_import(c, r, &e);
		else if (!strcmp(c->command, "lock"))
			ret = remote_lock(c, r, &e);
		else if (!strcmp(c->command, "unlock"))
			ret = remote_unlock(c, r, &e);
		else
			ret = remote_rm(c, r, &e);
		remote_close(r);
	}
	if (ret < 0 && e.code)
		*exit_code = cli_fail(c, ret, "%s: %s", c->command, e.msg);
	else if (ret < 0)
		*exit_code = EXIT_FAIL;
	else
		*exit_code = ret == 1 ? EXIT_PARTIAL : EXIT_OK;
	free(r);
	return 1;
}

int cmd_status(struct cli *c)
{
	struct iverr e = { 0 };
	struct vault *v = NULL;
	int ret = cli_open_store(c, &v, &e);

	if (ret < 0)
		return cli_fail(c, ret, "status: %s", e.msg);
	if (c->json)
		printf("{\"store\":\"%s\",\"daemon\":false,\"mode\":\"%s\"}\n", c->store,
		       vault_is_system(v) ? "system" : "desktop");
	else
		printf("store %s (%s mode) is not mounted: no imgvaultd holds it\n", c->store,
		       vault_is_system(v) ? "system" : "desktop");
	vault_close(v);
	return EXIT_OK;
}

/* Reached when no imgvaultd holds the store. */
static int not_mounted(struct cli *c)
{
	return cli_fail(c, -ENOENT, "%s: no imgvaultd holds store %s: lock and unlock act on "
			"the keys of a mounted vault (imgvault mount; --control PATH names "
			"another daemon's socket)", c->command, c->store);
}

int cmd_lock(struct cli *c)
{
	return not_mounted(c);
}

int cmd_unlock(struct cli *c)
{
	return not_mounted(c);
}
