/* imgvault init and imgvault user. */
#include <dirent.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cli.h"
#include "progress.h"
#include "prompt.h"

#include <sodium.h>

#define MIN_PASSPHRASE 8

/* Shows a new recovery code; -errno when it could not be written (the
 * caller undoes what the code was for: a code nobody saw is no code). */
static int show_recovery(const struct cli *c, uid_t uid, const char *code)
{
	char who[64];

	cli_user_name(uid, who, sizeof(who));
	if (c->json) {
		printf("{\"user\":");
		cli_json_string(stdout, who, strlen(who));
		printf(",\"uid\":%u,\"recovery_code\":\"%s\"}\n", (unsigned)uid, code);
	} else {
		printf("Recovery code for %s's vault (write it down: it is shown only now,\n"
		       "and it unlocks the vault if the passphrase is lost):\n\n    %s\n\n",
		       who, code);
	}
	if (fflush(stdout) != 0 || ferror(stdout))
		return -(errno ? errno : EIO);
	return 0;
}

/* Removes a store this command has just made (and nothing else). */
static void remove_new_store(const char *dir)
{
	static const char *const files[] = {
		"imgvault-store", "catalog.db", "catalog.db-wal", "catalog.db-shm", "lock",
	};
	char path[4096];

	for (size_t i = 0; i < sizeof(files) / sizeof(files[0]); i++) {
		snprintf(path, sizeof(path), "%s/%s", dir, files[i]);
		unlink(path);
	}
	snprintf(path, sizeof(path), "%s/blobs", dir);
	rmdir(path);
	snprintf(path, sizeof(path), "%s/tmp", dir);
	rmdir(path);
	rmdir(dir);
}

static int new_passphrase(const char *file, struct secret *out, struct iverr *e)
{
	return prompt_secret(file, "New passphrase: ", 1, MIN_PASSPHRASE, out, e);
}

/* Root made a desktop store for someone else: all of it is theirs.  A new
 * store is one level deep (blobs/ and tmp/ are still empty). */
static int chown_tree(const char *dir, uid_t uid)
{
	int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	struct dirent *d;
	int ret = 0;
	DIR *dp;

	if (fd < 0)
		return -errno;
	if (fchown(fd, uid, (gid_t)-1) < 0 || !(dp = fdopendir(fd))) {
		ret = -errno;
		close(fd);
		return ret;
	}
	while (!ret && (d = readdir(dp)))
		if (strcmp(d->d_name, ".") && strcmp(d->d_name, "..") &&
		    fchownat(dirfd(dp), d->d_name, uid, (gid_t)-1, AT_SYMLINK_NOFOLLOW) < 0)
			ret = -errno;
	closedir(dp);
	return ret;
}

int cmd_init(struct cli *c)
{
	struct iverr e = { 0 };
	struct vault *v = NULL;
	struct vault_session *s = NULL;
	struct secret pass = { 0 };
	struct keys_kdf_cost cost;
	char recovery[KEYS_RECOVERY_CODE_LEN + 1] = "";
	uid_t uid = getuid();
	int ret;

	if (c->nargs != 1)
		return cli_usage(c, "usage: imgvault init STORE [--server-key FILE]");
	c->store = c->args[0];
	if (c->user && (ret = cli_lookup_user(c->user, &uid, &e)) < 0)
		goto out;
	if (c->user && uid != getuid() && geteuid() != 0) {
		ret = iverr_set(&e, EPERM, "only root may create a store for another user");
		goto out;
	}
	if ((ret = cli_kdf_cost(c, &cost, &e)) < 0)
		goto out;
	if (c->server_key_path) {
		ret = vault_init(c->store, c->server_key_path, &e);
		if (ret == 0 && !c->quiet)
			printf("created system store %s; its server key is %s\n"
			       "add users with: imgvault --store %s user add NAME\n",
			       c->store, c->server_key_path, c->store);
		goto out;
	}
	/* Desktop: the store and its one user, unlocked by a passphrase. */
	if ((ret = new_passphrase(c->passphrase_file, &pass, &e)) < 0)
		goto out;
	if ((ret = vault_init(c->store, NULL, &e)) < 0 ||
	    (ret = cli_open_store(c, &v, &e)) < 0 ||
	    (ret = vault_user_add(v, (uint32_t)uid, NULL, pass.buf, pass.len, &cost, recovery, &e)) < 0)
		goto out;
	if (uid != getuid() && (ret = chown_tree(c->store, uid)) < 0)
		iverr_set(&e, -ret, "cannot give the store to uid %u: %s", (unsigned)uid,
			  strerror(-ret));
	if (ret == 0) {
		if (!c->quiet && !c->json)
			printf("created store %s\n", c->store);
		if ((ret = show_recovery(c, uid, recovery)) < 0) {
			iverr_set(&e, -ret, "its recovery code could not be shown (%s), so the "
				  "store was removed again; run init where its output can be seen",
				  strerror(-ret));
			vault_close(v);
			v = NULL;
			remove_new_store(c->store);
		}
	}
out:
	sodium_memzero(recovery, sizeof(recovery));
	prompt_secret_free(&pass);
	vault_session_close(s);
	vault_close(v);
	return ret < 0 ? cli_fail(c, ret, "cannot create store %s: %s", c->store, e.msg) : EXIT_OK;
}

/* ---- imgvault user ---- */

static int user_add(struct cli *c, struct vault *v, struct iverr *e)
{
	struct server_key *sk = NULL;
	struct secret pass = { 0 };
	struct keys_kdf_cost cost;
	char recovery[KEYS_RECOVERY_CODE_LEN + 1] = "";
	uid_t uid;
	int ret;

	if (c->nargs != 2)
		return iverr_set(e, EINVAL, "usage: imgvault user add NAME");
	if (!vault_is_system(v))
		return iverr_set(e, EINVAL, "%s is a desktop store: it holds one user; make a "
				 "system store (imgvault init --server-key FILE) for several",
				 vault_path(v));
	if ((ret = cli_lookup_user(c->args[1], &uid, e)) < 0)
		return ret;
	if (uid == 0)
		return iverr_set(e, EINVAL, "root is not a vault user: add the Unix users "
				 "whose images the store keeps");
	if ((ret = cli_kdf_cost(c, &cost, e)) < 0 ||
	    (ret = cli_load_server_key(c, &sk, e)) < 0 ||
	    (ret = vault_check_server_key(v, sk, e)) < 0)
		goto out;
	if (!c->no_passphrase) {
		if (!c->passphrase_file && !c->new_passphrase_file && !isatty(STDIN_FILENO)) {
			ret = iverr_set(e, EINVAL, "give --passphrase-file FILE for %s's passphrase, "
					"or --no-passphrase for a vault unlocked by the server key "
					"only", c->args[1]);
			goto out;
		}
		if ((ret = new_passphrase(c->new_passphrase_file ? c->new_passphrase_file
					  : c->passphrase_file, &pass, e)) < 0)
			goto out;
	}
	ret = vault_user_add(v, (uint32_t)uid, sk, pass.buf, pass.len, &cost, recovery, e);
	if (ret == 0 && (ret = show_recovery(c, uid, recovery)) < 0) {
		iverr_set(e, -ret, "the recovery code could not be shown (%s), so the user was "
			  "removed again; run user add where its output can be seen", strerror(-ret));
		vault_user_delete(v, (uint32_t)uid, NULL);
	}
out:
	sodium_memzero(recovery, sizeof(recovery));
	prompt_secret_free(&pass);
	keys_server_free(sk);
	return ret;
}

static int print_user(const struct vault_user_info *u, void *arg)
{
	const struct cli *c = arg;
	char who[64], bytes[32], quota[32];

	cli_user_name(u->uid, who, sizeof(who));
	if (c->json) {
		printf("{\"user\":");
		cli_json_string(stdout, who, strlen(who));
		printf(",\"uid\":%u,\"passphrase\":%s,\"server_key\":%s,\"recovery\":%s,"
		       "\"images\":%llu,\"bytes\":%llu,\"web_read\":%s,\"quota\":%llu,"
		       "\"rekey_in_progress\":%s}\n", u->uid,
		       u->slots & (1u << KEY_SLOT_PASSPHRASE) ? "true" : "false",
		       u->slots & (1u << KEY_SLOT_SERVER) ? "true" : "false",
		       u->slots & (1u << KEY_SLOT_RECOVERY) ? "true" : "false",
		       (unsigned long long)u->images, (unsigned long long)u->bytes,
		       u->web_read ? "true" : "false", (unsigned long long)u->quota,
		       u->rekey ? "true" : "false");
		return 0;
	}
	printf("%-16s %6u  %-20s %7llu %10s  web-read=%s quota=%s%s\n", who, u->uid,
	       u->slots & (1u << KEY_SLOT_PASSPHRASE)
		       ? (u->slots & (1u << KEY_SLOT_SERVER) ? "passphrase,server" : "passphrase")
		       : "server",
	       (unsigned long long)u->images, progress_bytes(u->bytes, bytes),
	       u->web_read ? "on" : "off",
	       u->quota ? progress_bytes(u->quota, quota) : "none",
	       u->rekey ? "  (key rotation in progress)" : "");
	return 0;
}

static int user_list(struct cli *c, struct vault *v, struct iverr *e)
{
	if (!c->json && !c->quiet)
		printf("%-16s %6s  %-20s %7s %10s\n", "USER", "UID", "SLOTS", "IMAGES", "SIZE");
	return vault_user_list(v, print_user, c, e);
}

/* Unlocks NAME (or the caller) by passphrase, server key or recovery code. */
static int user_unlock_for_change(struct cli *c, struct vault *v, bool recover,
				  struct vault_session **s, struct iverr *e)
{
	struct secret code = { 0 };
	uid_t uid = getuid();
	int ret;

	if (c->nargs >= 2)
		c->user = c->args[1];
	if (!recover)
		return cli_session(c, v, s, e);
	if (c->user && (ret = cli_lookup_user(c->user, &uid, e)) < 0)
		return ret;
	if (uid != getuid() && geteuid() != 0)
		return iverr_set(e, EPERM, "only root may recover another user's vault");
	if ((ret = prompt_secret(c->recovery_code_file, "Recovery code: ", 0, 0, &code, e)) < 0)
		return ret;
	ret = vault_unlock(v, (uint32_t)uid, KEY_SLOT_RECOVERY, code.buf, code.len, s, e);
	prompt_secret_free(&code);
	return ret;
}

static int user_passwd(struct cli *c, struct vault *v, bool recover, struct iverr *e)
{
	struct vault_session *s = NULL;
	struct secret pass = { 0 };
	struct keys_kdf_cost cost;
	char unused[KEYS_RECOVERY_CODE_LEN + 1];
	int ret;

	if (c->nargs > 2)
		return iverr_set(e, EINVAL, "usage: imgvault user %s [NAME]", recover ? "recover" : "passwd");
	if ((ret = cli_kdf_cost(c, &cost, e)) < 0 ||
	    (ret = user_unlock_for_change(c, v, recover, &s, e)) < 0 ||
	    (ret = new_passphrase(c->new_passphrase_file, &pass, e)) < 0)
		goto out;
	ret = vault_set_slot(s, KEY_SLOT_PASSPHRASE, pass.buf, pass.len, &cost, unused, e);
	if (ret == 0 && !c->quiet)
		printf("passphrase %s\n", recover ? "reset with the recovery code" : "changed");
out:
	prompt_secret_free(&pass);
	vault_session_close(s);
	return ret;
}

/* The store's own rows (users) are authenticated under the server key in
 * a system store and under its owner's key in a desktop one: a change to
 * them needs that key at hand.  *s is the owner's session (desktop). */
static int take_store_key(struct cli *c, struct vault *v, struct vault_session **s,
			  struct iverr *e)
{
	struct server_key *sk = NULL;
	int ret;

	*s = NULL;
	if (!vault_is_system(v))
		return cli_session(c, v, s, e);
	if ((ret = cli_load_server_key(c, &sk, e)) == 0)
		ret = vault_check_server_key(v, sk, e);
	keys_server_free(sk);
	return ret;
}

static int user_set(struct cli *c, struct vault *v, struct iverr *e)
{
	struct vault_session *s = NULL;
	uid_t uid;
	char *eq, key[64];
	int ret;

	if (c->nargs < 3)
		return iverr_set(e, EINVAL, "usage: imgvault user set NAME KEY=VALUE...");
	if ((ret = cli_lookup_user(c->args[1], &uid, e)) < 0)
		return ret;
	if (uid != getuid() && geteuid() != 0)
		return iverr_set(e, EPERM, "only root may change another user's settings");
	for (int i = 2; i < c->nargs; i++) {
		eq = strchr(c->args[i], '=');
		if (!eq || eq == c->args[i] || (size_t)(eq - c->args[i]) >= sizeof(key))
			return iverr_set(e, EINVAL, "'%s' is not KEY=VALUE (web-read=on, quota=20G)",
					 c->args[i]);
	}
	if ((ret = take_store_key(c, v, &s, e)) < 0)
		return ret;
	for (int i = 2; i < c->nargs && ret == 0; i++) {
		eq = strchr(c->args[i], '=');
		snprintf(key, sizeof(key), "%.*s", (int)(eq - c->args[i]), c->args[i]);
		ret = vault_user_set(v, (uint32_t)uid, key, eq + 1, e);
	}
	vault_session_close(s);
	return ret;
}

static int user_del(struct cli *c, struct vault *v, struct iverr *e)
{
	struct vault_session *s = NULL;
	char question[160];
	uid_t uid;
	int ret;

	if (c->nargs != 2)
		return iverr_set(e, EINVAL, "usage: imgvault user del NAME --yes");
	if ((ret = cli_lookup_user(c->args[1], &uid, e)) < 0)
		return ret;
	if (uid != getuid() && geteuid() != 0)
		return iverr_set(e, EPERM, "only root may delete another user's vault");
	snprintf(question, sizeof(question), "Destroy %s's vault and every image in it, "
		 "for good? [y/N] ", c->args[1]);
	if (!c->yes && !prompt_yes(question))
		return iverr_set(e, ECANCELED, "not deleted: confirm with --yes");
	if ((ret = take_store_key(c, v, &s, e)) < 0)
		return ret;
	ret = vault_user_delete(v, (uint32_t)uid, e);
	vault_session_close(s);
	if (ret == 0 && !c->quiet)
		printf("%s's vault is destroyed: its keys are wiped and its blobs removed\n",
		       c->args[1]);
	return ret;
}

int cmd_user(struct cli *c)
{
	struct iverr e = { 0 };
	struct vault *v = NULL;
	const char *sub = c->nargs ? c->args[0] : "";
	int ret;

	if (strcmp(sub, "add") && strcmp(sub, "list") && strcmp(sub, "passwd") &&
	    strcmp(sub, "recover") && strcmp(sub, "set") && strcmp(sub, "del"))
		return cli_usage(c, "usage: imgvault user add|list|passwd|recover|set|del ...; "
				 "see imgvault user --help");
	if ((ret = cli_open_store(c, &v, &e)) < 0)
		goto out;
	if (!strcmp(sub, "add"))
		ret = user_add(c, v, &e);
	else if (!strcmp(sub, "list"))
		ret = user_list(c, v, &e);
	else if (!strcmp(sub, "passwd"))
		ret = user_passwd(c, v, false, &e);
	else if (!strcmp(sub, "recover"))
		ret = user_passwd(c, v, true, &e);
	else if (!strcmp(sub, "set"))
		ret = user_set(c, v, &e);
	else
		ret = user_del(c, v, &e);
out:
	vault_close(v);
	if (ret == -EINVAL && !strncmp(e.msg, "usage:", 6))
		return cli_usage(c, "%s", e.msg);
	return ret < 0 ? cli_fail(c, ret, "user %s: %s", sub, e.msg) : EXIT_OK;
}
