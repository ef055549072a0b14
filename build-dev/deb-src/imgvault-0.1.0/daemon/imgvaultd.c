/*
 * imgvaultd — mounts a store as the tree of DESIGN §5 (fs/tree.h).
 *
 *   imgvaultd [OPTIONS] STORE MOUNTPOINT            desktop: your vault
 *   imgvaultd --system [OPTIONS] STORE MOUNTPOINT   every user's, as root
 *   imgvaultd --system                              both from imgvault.conf
 *   mount.fuse3: imgvaultd STORE MOUNTPOINT -o system,server-key=…,rw,…
 *
 * The process owns the store while it runs (its lock), keeps the keys in
 * locked memory, never dumps core, and on SIGTERM or SIGINT unmounts after
 * committing what open files still hold.  See imgvaultd(8).
 */
#define FUSE_USE_VERSION 34
#include <fuse_lowlevel.h>
#include <getopt.h>
#include <grp.h>
#include <pwd.h>
#include <limits.h>
#include <pthread.h>
#include <malloc.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include "cli.h"
#include "conf.h"
#include "control.h"
#include "keys.h"
#include "logline.h"
#include "prompt.h"
#include "rundir.h"
#include "share.h"
#include "tree.h"
#include "vault.h"

/* System mode's defaults, as the shipped imgvault.conf says. */
#define SYSTEM_STORE "/var/lib/imgvault"
#define SYSTEM_MOUNTPOINT "/srv/imgvault"

struct options {
	bool system, foreground, debug, root_reads, json_log, check_config, detach_stale;
	const char *store, *mountpoint;
	const char *server_key, *passphrase_file, *readers_group;
	char extra[1024];        /* -o options that are FUSE's, comma-separated */
	const char *config;      /* the settings file read (NULL: none) */
	const char *control;     /* the control socket's path */
	const char *gateway_user, *keyring;   /* share links */
	int control_timeout_s;   /* idle and transfer timeout of the control socket */
};

static const char usage_text[] =
	"usage: imgvaultd [OPTIONS] STORE MOUNTPOINT\n"
	"       imgvaultd --system [OPTIONS] [STORE MOUNTPOINT]\n"
	"\n"
	"In system mode STORE and MOUNTPOINT default to /var/lib/imgvault and\n"
	"/srv/imgvault (made if missing), or to store and mountpoint in imgvault.conf.\n"
	"\n"
	"Mounts an imgvault store: /<album>/{original,thumb,pristine}/<name> for you\n"
	"(desktop), or /<user>/<album>/... for every user of a system store (as root,\n"
	"unlocked by the server key, with allow_other and the kernel checking modes).\n"
	"\n"
	"Options:\n"
	"      --system                 system mode (root, server key, allow_other)\n"
	"  -k, --server-key FILE        the server key (system mode; default as imgvault)\n"
	"      --passphrase-file FILE   desktop mode: read the passphrase from FILE\n"
	"      --readers-group GROUP    web-read users' files get this group (system)\n"
	"      --allow-root-reads       let root read user content (audited either way)\n"
	"      --control PATH           the control socket (default: /run/imgvault/ in\n"
	"                               system mode, $XDG_RUNTIME_DIR/imgvault/ otherwise)\n"
	"      --gateway-user USER      the user imgvault-gateway runs as: the only one\n"
	"                               that may fetch through links (system mode;\n"
	"                               default imgvault-gw if it exists)\n"
	"      --keyring PATH           where the public signing keys are published for\n"
	"                               the gateway (default: signing-keys.pub beside\n"
	"                               the control socket)\n"
	"      --control-timeout S      close an idle control connection, and drop an\n"
	"                               import whose data stops coming, after S\n"
	"                               seconds (1-3600, default 30)\n"
	"      --store DIR, --mountpoint DIR   instead of STORE MOUNTPOINT\n"
	"      --config FILE            settings (default /etc/imgvault/imgvault.conf,\n"
	"                               read in system mode when it exists); flags\n"
	"                               given here override it\n"
	"      --check-config           check the settings and the command line, start\n"
	"                               nothing\n"
	"      --detach-stale           only detach a mount a killed daemon left at the\n"
	"                               mount point, then exit (systemd ExecStopPost=)\n"
	"  -o OPTIONS                   mount options: this program's own (system,\n"
	"                               server-key=F, readers-group=G, allow-root-reads,\n"
	"                               control=P, gateway-user=U, keyring=P,\n"
	"                               passphrase-file=F, config=F, log-json) as\n"
	"                               /etc/fstab and mount.fuse3 give them; the rest\n"
	"                               (rw, nosuid, noatime, ...) goes to FUSE\n"
	"  -f, --foreground             stay in the foreground\n"
	"  -d, --debug                  FUSE debug output (implies -f)\n"
	"      --log-json               log lines as JSON\n"
	"  -h, --help, -V, --version\n"
	"\n"
	"SIGTERM or SIGINT unmount cleanly after in-flight commits; SIGHUP re-reads the\n"
	"store's settings.  A stale mount left\n"
	"by a crash (\"Transport endpoint is not connected\") is cleaned up first.\n";

/* Log lines: a priority prefix journald understands, or JSON (logline.h). */
static void daemon_log(void *arg, int level, const char *msg)
{
	const struct options *o = arg;

	log_line("imgvaultd", level, o && o->json_log, msg);
}

static void logf_(const struct options *o, int level, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

static void logf_(const struct options *o, int level, const char *fmt, ...)
{
	char msg[1024];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	daemon_log((void *)o, level, msg);
}

/* Absolute paths: the daemon changes to / once it is one.  0 or an exit code. */
static int resolve_paths(struct options *o)
{
	static char store_abs[PATH_MAX], mnt_abs[PATH_MAX];

	if (!realpath(o->store, store_abs)) {
		logf_(o, 3, "cannot use the store %s: %s", o->store, strerror(errno));
		return 1;
	}
	o->store = store_abs;
	/* The system mount point is the admin's choice: made if missing. */
	if (o->system && mkdir(o->mountpoint, 0755) < 0 && errno != EEXIST && errno != ENOTCONN)
		logf_(o, 4, "cannot make the mount point %s: %s", o->mountpoint, strerror(errno));
	if (realpath(o->mountpoint, mnt_abs))
		o->mountpoint = mnt_abs;
	return 0;
}

/* Who we run as and for: libsodium, root for --system, the readers group.
 * 0 or an exit code. */
static int check_identities(const struct options *o, struct tree_config *cfg)
{
	if (keys_init() < 0) {
		logf_(o, 2, "cannot initialise libsodium");
		return 1;
	}
	if (o->system && geteuid() != 0) {
		logf_(o, 3, "--system needs root: it serves every user's vault");
		return 1;
	}
	if (o->readers_group) {
		struct group *g = getgrnam(o->readers_group);
		if (!g) {
			logf_(o, 3, "no group '%s': create it (groupadd) or give another "
			      "--readers-group", o->readers_group);
			return 1;
		}
		cfg->readers_gid = g->gr_gid;
	}
	return 0;
}

/* Readiness for systemd (Type=notify): one datagram to $NOTIFY_SOCKET. */
static void notify_ready(void)
{
	const char *path = getenv("NOTIFY_SOCKET");
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	int fd;

	if (!path || !*path || strlen(path) >= sizeof(sa.sun_path))
		return;
	strcpy(sa.sun_path, path);
	if (path[0] == '@')
		sa.sun_path[0] = '\0';   /* abstract namespace */
	fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return;
	sendto(fd, "READY=1", 7, 0, (struct sockaddr *)&sa,
	       (socklen_t)(offsetof(struct sockaddr_un, sun_path) + strlen(path)));
	close(fd);
}

/* A mount left behind by a crashed daemon answers ENOTCONN: detach it. */
static int clean_stale_mount(const struct options *o)
{
	struct statvfs sv;

	/* statfs always reaches the filesystem; stat may be answered from the
	 * kernel's attribute cache for a second after the daemon died. */
	if (statvfs(o->mountpoint, &sv) == 0 || errno != ENOTCONN)
		return 0;
	logf_(o, 4, "%s: a stale mount (transport endpoint is not connected); "
	      "detaching it", o->mountpoint);
	if (geteuid() == 0 && umount2(o->mountpoint, MNT_DETACH) == 0)
		return 0;
	pid_t pid = fork();
	if (pid == 0) {
		execlp("fusermount3", "fusermount3", "-u", "-z", o->mountpoint, (char *)NULL);
		_exit(127);
	}
	int status = 0;
	if (pid < 0 || waitpid(pid, &status, 0) < 0 || !WIFEXITED(status) ||
	    WEXITSTATUS(status) != 0) {
		logf_(o, 3, "cannot detach the stale mount %s: run fusermount3 -u -z %s",
		      o->mountpoint, o->mountpoint);
		return -1;
	}
	return 0;
}

/* Where the control socket goes: a fixed name for the system daemon, the
 * user's runtime directory otherwise (the pid keeps two daemons apart).
 * The path is written into the store's lock, where the command line finds
 * it. */
static int control_path(const struct options *o, char *out, size_t cap, struct iverr *e)
{
	const char *rt = getenv("XDG_RUNTIME_DIR");
	char dir[200];
	int ret;

	if (o->control) {
		snprintf(out, cap, "%s", o->control);
		return 0;
	}
	if (o->system) {
		/* One system daemon: a fixed name that users can find without
		 * reading the (root-only) store. */
		if (mkdir("/run/imgvault", 0755) < 0 && errno != EEXIST)
			return iverr_set(e, errno, "cannot make /run/imgvault: %s; give the "
					 "control socket's path with --control", strerror(errno));
		snprintf(out, cap, "%s", CLI_SYSTEM_CONTROL);
		return 0;
	}
	if (rt && *rt)
		snprintf(dir, sizeof(dir), "%s/imgvault", rt);
	else
		snprintf(dir, sizeof(dir), "/tmp/imgvault-%u", (unsigned)getuid());
	/* Anyone can make /tmp/imgvault-UID first: take it only if it is ours
	 * and private, or the command line's passphrase could go to them. */
	if ((ret = rundir_private(dir, getuid(), e)) < 0)
		return ret;
	snprintf(out, cap, "%s/imgvaultd-%ld.sock", dir, (long)getpid());
	return 0;
}

/* What the control socket acts on: the tree, and in system mode the server
 * key, kept (in locked memory) so that root can unlock a user again. */
struct served {
	const struct options *o;
	struct tree *t;
	struct server_key *sk;
	struct share_keys *keys;     /* a desktop vault's go with its lock */
};

struct forget { struct served *sv; uint32_t uid; };

static int keys_forget(struct vault *v, void *arg)
{
	struct forget *f = arg;

	(void)v;
	share_keys_forget(f->sv->keys, f->uid);
	return 0;
}

struct restore { struct served *sv; struct iverr *e; };

static int keys_restore(struct vault_session *s, void *arg)
{
	struct restore *r = arg;

	return share_keys_restore(r->sv->keys, s, r->e);
}

static int ctl_call(void *arg, uint32_t uid, int (*fn)(struct vault_session *, void *),
		    void *fnarg)
{
	struct served *sv = arg;

	return tree_call(sv->t, uid, fn, fnarg);
}

static int ctl_call_vault(void *arg, uint32_t uid, int (*fn)(struct vault *, void *),
			  void *fnarg)
{
	struct served *sv = arg;

	return tree_call_vault(sv->t, uid, fn, fnarg);
}

/* The uid that may fetch through links: --gateway-user, or imgvault-gw. */
static int gateway_uid(const struct options *o, uint32_t *uid)
{
	const char *name = o->gateway_user ? o->gateway_user : "imgvault-gw";
	struct passwd *pw = getpwnam(name);
	char *end;
	unsigned long n = strtoul(name, &end, 10);

	*uid = CONTROL_NOBODY;
	if (pw)
		*uid = pw->pw_uid;
	else if (o->gateway_user && *name && !*end && n < UINT32_MAX)
		*uid = (uint32_t)n;
	else if (o->gateway_user) {
		logf_(o, 3, "no user '%s': create the gateway's user (useradd --system %s) or "
		      "give another --gateway-user", name, name);
		return -1;
	}
	return 0;
}

/* The public keyring's path: --keyring, or beside the control socket. */
static void keyring_path(const struct options *o, const char *sock, char *out, size_t cap)
{
	const char *slash = strrchr(sock, '/');

	if (o->keyring)
		snprintf(out, cap, "%s", o->keyring);
	else if (slash)
		snprintf(out, cap, "%.*s/signing-keys.pub", (int)(slash - sock), sock);
	else
		snprintf(out, cap, "signing-keys.pub");
}

static void ctl_changed(void *arg, int64_t image_id)
{
	struct served *sv = arg;

	tree_changed(sv->t, image_id);
}

static int ctl_hold(void *arg, uint32_t uid)
{
	struct served *sv = arg;

	return tree_hold(sv->t, uid);
}

static void ctl_unhold(void *arg, uint32_t uid)
{
	struct served *sv = arg;

	tree_unhold(sv->t, uid);
}

static int ctl_lock(void *arg, uint32_t uid, uint32_t actor, struct iverr *e)
{
	struct served *sv = arg;
	int ret = tree_lock_user(sv->t, uid, actor, e);

	if (ret == 0) {
		struct forget f = { sv, uid };
		tree_call_vault(sv->t, actor, keys_forget, &f);   /* serialised with minting */
		logf_(sv->o, 6, "uid %u's vault locked (asked by uid %u): its keys are wiped",
		      uid, actor);
	}
	return ret;
}

static int ctl_unlock(void *arg, uint32_t uid, uint32_t actor, const void *pass, size_t len,
		      struct iverr *e)
{
	struct served *sv = arg;
	int ret;

	if (!pass && !sv->sk)
		return iverr_set(e, EINVAL, "this daemon holds no server key: unlock with "
				 "the vault's passphrase");
	if (pass)
		ret = tree_unlock_user(sv->t, uid, actor, KEY_SLOT_PASSPHRASE, pass, len, e);
	else
		ret = tree_unlock_user(sv->t, uid, actor, KEY_SLOT_SERVER, sv->sk->k,
				       KEYS_KEY_LEN, e);
	if (ret == 0) {
		struct restore r = { sv, e };
		if (tree_call(sv->t, uid, keys_restore, &r) < 0)
			logf_(sv->o, 4, "uid %u's link signing key not restored: %s", uid, e->msg);
		logf_(sv->o, 6, "uid %u's vault unlocked (asked by uid %u)", uid, actor);
	} else
		logf_(sv->o, 5, "uid %u's vault not unlocked (asked by uid %u): %s", uid, actor,
		      e->msg);
	return ret;
}

struct reloader {
	const struct options *o;
	struct tree *t;
	sigset_t set;
};

/* SIGHUP is blocked in every thread; this one waits for it and reloads. */
static void *reload_main(void *arg)
{
	struct reloader *r = arg;
	int sig;

	while (sigwait(&r->set, &sig) == 0) {
		struct iverr e = { 0 };
		if (sig != SIGHUP)
			continue;
		if (tree_reload(r->t, &e) < 0)
			logf_(r->o, 3, "SIGHUP: settings not reloaded: %s", e.msg);
		else
			logf_(r->o, 6, "SIGHUP: settings reloaded");
	}
	return NULL;
}

/* Unlocks the vaults the tree serves.  In system mode the server key is
 * kept in *sk (the caller frees it) for imgvault unlock. */
static int unlock_all(const struct options *o, struct vault *v, struct tree *t,
		      struct server_key **sk_out, struct share_keys **keys, struct iverr *e)
{
	struct vault_session *s = NULL;
	int ret;

	if (o->system) {
		struct cli c = { .prog = "imgvaultd", .server_key_path = o->server_key };
		struct server_key *sk = NULL;
		struct uid_vec { uint32_t *v; size_t n; } uids = { 0 };

		if ((ret = cli_load_server_key(&c, &sk, e)) < 0 ||
		    (ret = vault_check_server_key(v, sk, e)) < 0)
			goto out_sk;
		ret = vault_user_uids(v, &uids.v, &uids.n, e);
		for (size_t i = 0; ret == 0 && i < uids.n; i++) {
			struct iverr err = { 0 };
			if (vault_unlock(v, uids.v[i], KEY_SLOT_SERVER, sk->k, KEYS_KEY_LEN, &s,
					 &err) < 0) {
				logf_(o, 4, "uid %u not served: %s", uids.v[i], err.msg);
				continue;
			}
			ret = tree_add_session(t, s, e);
			if (ret < 0)
				vault_session_close(s);
		}
		free(uids.v);
		/* The link signing key is unsealed once, with the server key. */
		if (ret == 0)
			ret = share_keys_open(v, sk, NULL, keys, e);
out_sk:
		if (ret == 0)
			*sk_out = sk;
		else
			keys_server_free(sk);
		return ret;
	}
	struct secret pass = { 0 };
	if ((ret = prompt_secret(o->passphrase_file, "Passphrase: ", 0, 0, &pass, e)) < 0)
		return ret;
	ret = vault_unlock(v, (uint32_t)getuid(), KEY_SLOT_PASSPHRASE, pass.buf, pass.len, &s, e);
	prompt_secret_free(&pass);
	if (ret == 0 && (ret = share_keys_open(v, NULL, s, keys, e)) < 0) {
		vault_session_close(s);
		return ret;
	}
	if (ret == 0 && (ret = tree_add_session(t, s, e)) < 0)
		vault_session_close(s);
	return ret;
}

/* Options that only mount(8) and fstab mean: nothing for the kernel. */
static bool mount_only_option(const char *opt)
{
	static const char *const names[] = { "defaults", "auto", "noauto", "user", "users",
					     "nouser", "owner", "group", "nofail", "_netdev" };

	for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++)
		if (strcmp(opt, names[i]) == 0)
			return true;
	return strncmp(opt, "x-", 2) == 0 || strncmp(opt, "comment=", 8) == 0;
}

/* One of this program's options given in -o (fstab, mount.fuse3); false
 * for an option that is FUSE's. */
static bool own_mount_option(struct options *o, char *opt)
{
	static const struct { const char *name; size_t field; } paths[] = {
		{ "server-key=", offsetof(struct options, server_key) },
		{ "readers-group=", offsetof(struct options, readers_group) },
		{ "control=", offsetof(struct options, control) },
		{ "gateway-user=", offsetof(struct options, gateway_user) },
		{ "keyring=", offsetof(struct options, keyring) },
		{ "passphrase-file=", offsetof(struct options, passphrase_file) },
		{ "config=", offsetof(struct options, config) },
	};

	if (strcmp(opt, "system") == 0)
		return o->system = true;
	if (strcmp(opt, "allow-root-reads") == 0)
		return o->root_reads = true;
	if (strcmp(opt, "log-json") == 0)
		return o->json_log = true;
	for (size_t i = 0; i < sizeof(paths) / sizeof(paths[0]); i++) {
		size_t n = strlen(paths[i].name);
		if (strncmp(opt, paths[i].name, n) == 0) {
			*(const char **)((char *)o + paths[i].field) = opt + n;
			return true;
		}
	}
	return false;
}

/* -o A,B,...: ours taken (@copy is kept: the options point into it), the
 * rest appended to o->extra for FUSE. */
static int take_mount_options(struct options *o, char *copy)
{
	char *save = NULL;

	for (char *opt = strtok_r(copy, ",", &save); opt; opt = strtok_r(NULL, ",", &save)) {
		size_t have = strlen(o->extra);
		if (!*opt || mount_only_option(opt) || own_mount_option(o, opt))
			continue;
		if (have + strlen(opt) + 2 > sizeof(o->extra))
			return -E2BIG;
		snprintf(o->extra + have, sizeof(o->extra) - have, "%s%s", have ? "," : "", opt);
	}
	return 0;
}

/* The settings file, looked for before parsing: --config FILE, or config=
 * in -o; *system when --system or -o system is given, since only the
 * system daemon reads the default file (a user's desktop daemon is theirs
 * to configure, with --config). */
static const char *find_config(int argc, char **argv, bool *system)
{
	const char *path = conf_find_option(argc, argv, "config", true);

	*system = conf_find_option(argc, argv, "system", false) != NULL;
	for (int i = 1; i < argc && strcmp(argv[i], "--"); i++) {
		const char *v = strcmp(argv[i], "-o") == 0 && i + 1 < argc ? argv[++i] :
				strncmp(argv[i], "-o", 2) == 0 ? argv[i] + 2 : NULL;
		const char *c = v ? strstr(v, "config=") : NULL;
		if (c && (c == v || c[-1] == ','))
			path = c + 7;   /* up to the next comma: copied by the caller */
		if (v && (strcmp(v, "system") == 0 || strncmp(v, "system,", 7) == 0 ||
			  strstr(v, ",system,") || (strlen(v) > 7 && strcmp(v + strlen(v) - 7,
									  ",system") == 0)))
			*system = true;
	}
	return path;
}

/* Reads the settings file (if any) into *ca: the file's options first,
 * then the command line's.  Returns 0 or an exit code. */
static int load_settings(int argc, char **argv, struct conf_args *ca, char *path_buf,
			 size_t cap, const char **used)
{
	char err[1024];
	bool system;
	const char *given = find_config(argc, argv, &system);
	int ret;

	*used = NULL;
	if (given) {
		snprintf(path_buf, cap, "%.*s", (int)strcspn(given, ","), given);
		given = path_buf;
	}
	if (!given && !system)
		return 0;
	if ((ret = conf_load(given, CONF_IMGVAULTD, argc, argv, ca, err, sizeof(err))) < 0) {
		fprintf(stderr, "<3>imgvaultd: %s\n", ret == -ENOMEM ? "out of memory" : err);
		return ret == -ENOMEM ? 1 : CONF_EXIT_BAD;
	}
	*used = conf_path(given);
	return 0;
}

int main(int argc, char **argv)
{
	enum { O_STORE = 256, O_MOUNTPOINT, O_CONFIG, O_CHECK, O_DETACH, O_CTL_TIMEOUT };
	static const struct option longopts[] = {
		{ "system", no_argument, NULL, 'S' },
		{ "server-key", required_argument, NULL, 'k' },
		{ "passphrase-file", required_argument, NULL, 'P' },
		{ "readers-group", required_argument, NULL, 'G' },
		{ "allow-root-reads", no_argument, NULL, 'R' },
		{ "foreground", no_argument, NULL, 'f' },
		{ "debug", no_argument, NULL, 'd' },
		{ "log-json", no_argument, NULL, 'J' },
		{ "control", required_argument, NULL, 'C' },
		{ "gateway-user", required_argument, NULL, 'g' },
		{ "keyring", required_argument, NULL, 'K' },
		{ "control-timeout", required_argument, NULL, O_CTL_TIMEOUT },
		{ "store", required_argument, NULL, O_STORE },
		{ "mountpoint", required_argument, NULL, O_MOUNTPOINT },
		{ "config", required_argument, NULL, O_CONFIG },
		{ "check-config", no_argument, NULL, O_CHECK },
		{ "detach-stale", no_argument, NULL, O_DETACH },
		{ "help", no_argument, NULL, 'h' },
		{ "version", no_argument, NULL, 'V' },
		{ NULL, 0, NULL, 0 },
	};
	struct options o = { 0 };
	struct iverr e = { 0 };
	struct vault *v = NULL;
	struct tree *t = NULL;
	struct fuse_session *se = NULL;
	struct fuse_args args = FUSE_ARGS_INIT(0, NULL);
	struct tree_config cfg = { .readers_gid = (gid_t)-1, .timeout = 1.0 };
	struct rlimit no_core = { 0, 0 };
	char mount_opts[1200], sock[256], purpose[320], keyring[300];
	struct share_keys *keys = NULL;
	uint32_t gw_uid = CONTROL_NOBODY;
	struct reloader reload;
	pthread_t reload_thread;
	struct control *ctl = NULL;
	struct served served = { .o = &o };
	static struct conf_args ca;     /* options point into it to the end */
	char config_path[PATH_MAX];
	char *mount_args[16] = { 0 };   /* -o values, copied: options point into them */
	size_t n_mount_args = 0;
	const char *config_used = NULL;
	int opt, ret = 1;

	setrlimit(RLIMIT_CORE, &no_core);
	prctl(PR_SET_DUMPABLE, 0);
	/* Every FUSE thread would get its own malloc arena: keep memory flat. */
	mallopt(M_ARENA_MAX, 2);   /* keys are in this process: no core, no ptrace */
	if ((ret = load_settings(argc, argv, &ca, config_path, sizeof(config_path),
				 &config_used)) != 0)
		return ret;
	if (ca.argv) {
		argc = ca.argc;
		argv = ca.argv;
	}
	ret = 1;
	while ((opt = getopt_long(argc, argv, "k:o:fdhV", longopts, NULL)) != -1) {
		switch (opt) {
		case 'S': o.system = true; break;
		case 'k': o.server_key = optarg; break;
		case 'P': o.passphrase_file = optarg; break;
		case 'G': o.readers_group = optarg; break;
		case 'R': o.root_reads = true; break;
		case 'o':
			if (n_mount_args == sizeof(mount_args) / sizeof(mount_args[0]) ||
			    !(mount_args[n_mount_args] = strdup(optarg)) ||
			    take_mount_options(&o, mount_args[n_mount_args++]) < 0) {
				fprintf(stderr, "<3>imgvaultd: too many -o options\n");
				ret = 2;
				goto out;
			}
			break;
		case O_STORE: o.store = optarg; break;
		case O_CTL_TIMEOUT: {
			char *end;
			long secs = strtol(optarg, &end, 10);
			if (*end || secs < 1 || secs > 3600) {
				fprintf(stderr, "<3>imgvaultd: --control-timeout takes seconds, 1 to "
					"3600, not '%s'\n", optarg);
				ret = 2;
				goto out;
			}
			o.control_timeout_s = (int)secs;
			break;
		}
		case O_MOUNTPOINT: o.mountpoint = optarg; break;
		case O_CONFIG: break;           /* read before parsing */
		case O_CHECK: o.check_config = true; break;
		case O_DETACH: o.detach_stale = true; break;
		case 'f': o.foreground = true; break;
		case 'd': o.debug = o.foreground = true; break;
		case 'J': o.json_log = true; break;
		case 'C': o.control = optarg; break;
		case 'g': o.gateway_user = optarg; break;
		case 'K': o.keyring = optarg; break;
		case 'h': fputs(usage_text, stdout); ret = 0; goto out;
		case 'V': printf("imgvaultd %s\n", IMGVAULT_VERSION); ret = 0; goto out;
		default: fputs(usage_text, stderr); ret = 2; goto out;
		}
	}
	o.config = config_used;
	if (o.system && !o.store)
		o.store = SYSTEM_STORE;
	if (o.system && !o.mountpoint)
		o.mountpoint = SYSTEM_MOUNTPOINT;
	if (argc - optind == 2) {
		o.store = argv[optind];
		o.mountpoint = argv[optind + 1];
	} else if (argc - optind != 0 || !o.store || !o.mountpoint) {
		fprintf(stderr, "<3>imgvaultd: %s\n%s", argc - optind > 2 || argc - optind == 1 ?
			"give STORE and MOUNTPOINT, both" : "no store or mount point: give STORE "
			"MOUNTPOINT, or set store and mountpoint in [imgvaultd] of imgvault.conf",
			usage_text);
		ret = 2;
		goto out;
	}
	if (o.detach_stale) {
		ret = clean_stale_mount(&o) < 0 ? 1 : 0;
		goto out;
	}
	if (o.check_config) {
		printf("imgvaultd: settings are valid (%s); would serve %s on %s%s\n",
		       o.config ? o.config : "no settings file", o.store, o.mountpoint,
		       o.system ? " in system mode" : "");
		ret = 0;
		goto out;
	}
	if ((ret = resolve_paths(&o)) != 0 || (ret = check_identities(&o, &cfg)) != 0)
		goto out;
	cfg.system = o.system;
	cfg.root_reads = o.root_reads;
	cfg.log = daemon_log;
	cfg.log_arg = &o;
	if (clean_stale_mount(&o) < 0) {
		ret = 1;
		goto out;
	}
	if (control_path(&o, sock, sizeof(sock), &e) < 0) {
		logf_(&o, 3, "refusing to start: %s", e.msg);
		ret = 1;
		goto out;
	}
	snprintf(purpose, sizeof(purpose), "imgvaultd control=%s", sock);
	keyring_path(&o, sock, keyring, sizeof(keyring));
	if (o.system && gateway_uid(&o, &gw_uid) < 0) {
		ret = 1;
		goto out;
	}
	if ((ret = vault_open(o.store, purpose, &v, &e)) < 0 ||
	    (ret = tree_new(v, &cfg, &t, &e)) < 0 ||
	    (ret = unlock_all(&o, v, t, &served.sk, &keys, &e)) < 0 ||
	    (ret = share_keys_publish(v, keyring, &e)) < 0) {
		logf_(&o, 3, "cannot serve %s: %s", o.store, e.msg);
		ret = cli_exit_code(ret);
		goto out;
	}
	snprintf(mount_opts, sizeof(mount_opts), "fsname=imgvault,subtype=imgvaultd,"
		 "default_permissions%s%s%s", o.system ? ",allow_other" : "",
		 o.extra[0] ? "," : "", o.extra);
	if (fuse_opt_add_arg(&args, "imgvaultd") || fuse_opt_add_arg(&args, "-o") ||
	    fuse_opt_add_arg(&args, mount_opts) || (o.debug && fuse_opt_add_arg(&args, "-d"))) {
		logf_(&o, 3, "out of memory");
		ret = 1;
		goto out;
	}
	se = fuse_session_new(&args, &tree_ops, sizeof(tree_ops), t);
	if (!se) {
		logf_(&o, 3, "cannot create the FUSE session (bad -o options?)");
		ret = 1;
		goto out;
	}
	/* Before any thread starts, so that all of them inherit the mask. */
	sigemptyset(&reload.set);
	sigaddset(&reload.set, SIGHUP);
	reload.o = &o;
	reload.t = t;
	if (fuse_set_signal_handlers(se) != 0 || fuse_session_mount(se, o.mountpoint) != 0) {
		logf_(&o, 3, "cannot mount on %s: is it an empty directory you own, and "
		      "is /dev/fuse there?", o.mountpoint);
		ret = 1;
		goto out_session;
	}
	fuse_daemonize(o.foreground);
	pthread_sigmask(SIG_BLOCK, &reload.set, NULL);
	if (pthread_create(&reload_thread, NULL, reload_main, &reload) == 0)
		pthread_detach(reload_thread);
	tree_set_fuse(t, se);
	served.t = t;
	served.keys = keys;
	if ((ret = tree_start(t, &e)) < 0) {
		logf_(&o, 3, "cannot start: %s", e.msg);
		ret = 1;
		goto out_unmount;
	}
	{
		struct control_ops ops = {
			.call = ctl_call, .changed = ctl_changed, .hold = ctl_hold,
			.unhold = ctl_unhold, .lock = ctl_lock, .unlock = ctl_unlock,
			.arg = &served, .store = o.store,
			.call_vault = ctl_call_vault, .keys = keys, .keyring = keyring,
			.gateway_uid = gw_uid,
			.owner_uid = o.system ? CONTROL_NOBODY : (uint32_t)getuid(),
			.mountpoint = o.mountpoint, .system = o.system,
			.max_bytes = vault_limits(v)->max_bytes,
			.timeout_ms = o.control_timeout_s * 1000,
		};
		if ((ret = control_start(sock, &ops, &ctl, &e)) < 0) {
			logf_(&o, 3, "cannot start the control socket: %s", e.msg);
			ret = 1;
			tree_stop(t);
			goto out_unmount;
		}
	}
	logf_(&o, 6, "serving %s on %s", o.store, o.mountpoint);
	notify_ready();
	{
		struct fuse_loop_config loop = { .clone_fd = 0, .max_idle_threads = 10 };
		ret = fuse_session_loop_mt(se, &loop);
	}
	control_stop(ctl);
	tree_stop(t);
	logf_(&o, 6, "unmounting %s", o.mountpoint);
	ret = ret < 0 ? 1 : 0;
out_unmount:
	fuse_session_unmount(se);
	fuse_remove_signal_handlers(se);
out_session:
	fuse_session_destroy(se);
out:
	fuse_opt_free_args(&args);
	for (size_t i = 0; i < n_mount_args; i++)
		free(mount_args[i]);
	conf_args_release(&ca);
	tree_free(t);
	keys_server_free(served.sk);
	share_keys_free(keys);
	vault_close(v);
	return ret;
}
