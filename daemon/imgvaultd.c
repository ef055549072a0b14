/*
 * imgvaultd — mounts a store as the tree of DESIGN §5 (fs/tree.h).
 *
 *   imgvaultd [OPTIONS] STORE MOUNTPOINT            desktop: your vault
 *   imgvaultd --system [OPTIONS] STORE MOUNTPOINT   every user's, as root
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
#include "control.h"
#include "keys.h"
#include "logline.h"
#include "prompt.h"
#include "share.h"
#include "tree.h"
#include "vault.h"

struct options {
	bool system, foreground, debug, root_reads, json_log;
	const char *store, *mountpoint;
	const char *server_key, *passphrase_file, *readers_group;
	const char *extra;       /* -o, passed to FUSE */
	const char *control;     /* the control socket's path */
	const char *gateway_user, *keyring;   /* share links */
};

static const char usage_text[] =
	"usage: imgvaultd [OPTIONS] STORE MOUNTPOINT\n"
	"       imgvaultd --system [OPTIONS] STORE MOUNTPOINT\n"
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
	"  -o OPTIONS                   extra FUSE mount options\n"
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
static int control_path(const struct options *o, char *out, size_t cap)
{
	const char *rt = getenv("XDG_RUNTIME_DIR");
	char dir[200];

	if (o->control) {
		snprintf(out, cap, "%s", o->control);
		return 0;
	}
	if (o->system) {
		/* One system daemon: a fixed name that users can find without
		 * reading the (root-only) store. */
		if (mkdir("/run/imgvault", 0755) < 0 && errno != EEXIST)
			return -errno;
		snprintf(out, cap, "%s", CLI_SYSTEM_CONTROL);
		return 0;
	}
	if (rt && *rt)
		snprintf(dir, sizeof(dir), "%s/imgvault", rt);
	else
		snprintf(dir, sizeof(dir), "/tmp/imgvault-%u", (unsigned)getuid());
	if (mkdir(dir, 0700) < 0 && errno != EEXIST)
		return -errno;
	snprintf(out, cap, "%s/imgvaultd-%ld.sock", dir, (long)getpid());
	return 0;
}

/* What the control socket acts on: the tree, and in system mode the server
 * key, kept (in locked memory) so that root can unlock a user again. */
struct served {
	const struct options *o;
	struct tree *t;
	struct server_key *sk;
};

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

	if (ret == 0)
		logf_(sv->o, 6, "uid %u's vault locked (asked by uid %u): its keys are wiped",
		      uid, actor);
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
	if (ret == 0)
		logf_(sv->o, 6, "uid %u's vault unlocked (asked by uid %u)", uid, actor);
	else
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

int main(int argc, char **argv)
{
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
	char mount_opts[512], sock[256], purpose[320], keyring[300];
	struct share_keys *keys = NULL;
	uint32_t gw_uid = CONTROL_NOBODY;
	struct reloader reload;
	pthread_t reload_thread;
	struct control *ctl = NULL;
	struct served served = { .o = &o };
	int opt, ret = 1;

	setrlimit(RLIMIT_CORE, &no_core);
	prctl(PR_SET_DUMPABLE, 0);
	/* Every FUSE thread would get its own malloc arena: keep memory flat. */
	mallopt(M_ARENA_MAX, 2);   /* keys are in this process: no core, no ptrace */
	while ((opt = getopt_long(argc, argv, "k:o:fdhV", longopts, NULL)) != -1) {
		switch (opt) {
		case 'S': o.system = true; break;
		case 'k': o.server_key = optarg; break;
		case 'P': o.passphrase_file = optarg; break;
		case 'G': o.readers_group = optarg; break;
		case 'R': o.root_reads = true; break;
		case 'o': o.extra = optarg; break;
		case 'f': o.foreground = true; break;
		case 'd': o.debug = o.foreground = true; break;
		case 'J': o.json_log = true; break;
		case 'C': o.control = optarg; break;
		case 'g': o.gateway_user = optarg; break;
		case 'K': o.keyring = optarg; break;
		case 'h': fputs(usage_text, stdout); return 0;
		case 'V': printf("imgvaultd %s\n", IMGVAULT_VERSION); return 0;
		default: fputs(usage_text, stderr); return 2;
		}
	}
	if (argc - optind != 2) {
		fputs(usage_text, stderr);
		return 2;
	}
	/* Absolute: the daemon changes to / once it is one. */
	static char store_abs[PATH_MAX], mnt_abs[PATH_MAX];
	if (!realpath(argv[optind], store_abs)) {
		fprintf(stderr, "imgvaultd: %s: %s\n", argv[optind], strerror(errno));
		return 1;
	}
	o.store = store_abs;
	o.mountpoint = realpath(argv[optind + 1], mnt_abs) ? mnt_abs : argv[optind + 1];
	if (keys_init() < 0) {
		logf_(&o, 2, "cannot initialise libsodium");
		return 1;
	}
	if (o.system && geteuid() != 0) {
		logf_(&o, 3, "--system needs root: it serves every user's vault");
		return 1;
	}
	if (o.readers_group) {
		struct group *g = getgrnam(o.readers_group);
		if (!g) {
			logf_(&o, 3, "no group '%s': create it (groupadd) or give another "
			      "--readers-group", o.readers_group);
			return 1;
		}
		cfg.readers_gid = g->gr_gid;
	}
	cfg.system = o.system;
	cfg.root_reads = o.root_reads;
	cfg.log = daemon_log;
	cfg.log_arg = &o;
	if (clean_stale_mount(&o) < 0)
		return 1;
	if (control_path(&o, sock, sizeof(sock)) < 0) {
		logf_(&o, 3, "cannot make a directory for the control socket: %s; give one "
		      "with --control", strerror(errno));
		return 1;
	}
	snprintf(purpose, sizeof(purpose), "imgvaultd control=%s", sock);
	keyring_path(&o, sock, keyring, sizeof(keyring));
	if (o.system && gateway_uid(&o, &gw_uid) < 0)
		return 1;
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
		 o.extra ? "," : "", o.extra ? o.extra : "");
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
	tree_free(t);
	keys_server_free(served.sk);
	share_keys_free(keys);
	vault_close(v);
	return ret;
}
