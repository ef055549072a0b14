/*
 * cli — what the imgvault commands share: the parsed options, the open
 * store, and the ways to reach a user's session, print names and fail.
 *
 * Commands live in cli_store.c (init, user), cli_content.c (import,
 * export, ls, cat, rm), cli_maint.c (fsck, rekey, audit) and cli_share.c
 * (share, shares, revoke, keys, partner, through the daemon: remote.h);
 * imgvault.c parses the command line and dispatches.
 */
#ifndef IMGVAULT_CLI_H
#define IMGVAULT_CLI_H

#include <stdbool.h>
#include <stdio.h>
#include <sys/types.h>

#include "keys.h"
#include "thumbnailer.h"
#include "vault.h"

/* Exit codes (documented in imgvault(1) and --help). */
enum cli_exit {
	EXIT_OK = 0,
	EXIT_FAIL = 1,        /* the command failed; the message says why */
	EXIT_USAGE = 2,       /* bad command line */
	EXIT_AUTH = 3,        /* wrong passphrase, server key or recovery code */
	EXIT_BUSY = 4,        /* another process owns the store */
	EXIT_DAMAGE = 5,      /* damage found: fsck, a read, audit verify */
	EXIT_PARTIAL = 6,     /* some inputs were refused, the rest was done */
};

/* How many --cidr options partner add takes (the daemon counts networks). */
#define CLI_MAX_CIDRS 16

struct cli {
	const char *prog;
	const char *command;          /* "import", "user add", … for messages */
	const char *store;
	const char *server_key_path;
	const char *passphrase_file;
	const char *new_passphrase_file;
	const char *recovery_code_file;
	const char *user;
	const char *album;
	const char *kdf;
	const char *control;          /* --control: a running imgvaultd's socket */
	long limit;                   /* audit -n */
	/* share links (cli_share.c): as given, checked by the command */
	const char *ttl, *max_ttl, *variant, *not_before, *uses, *partner, *image;
	const char *cidrs[CLI_MAX_CIDRS];   /* partner add --cidr, each may hold commas */
	int ncidrs;
	bool download;
	bool json, quiet, progress;
	bool full, repair, pristine, yes, no_passphrase, force;
	bool thumb, stripped, no_thumbs, rebuild;
	char **args;                  /* positional arguments after the command */
	int nargs;
	char store_buf[4096];         /* holds the default store's path */
	/* set while a command runs */
	struct vault_session *session;
	uint64_t thumbs_made, thumbs_damaged;
};

/* The control socket of a system-mode imgvaultd. */
#define CLI_SYSTEM_CONTROL "/run/imgvault/control.sock"

/* Thumbnail workers of a command: one per core is all libvips needs. */
#define THUMB_WORKERS 2

/* Prints "imgvault: MSG" to stderr and returns the exit code for @err. */
int cli_fail(const struct cli *c, int err, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
/* The exit code an engine error (negative errno) maps to. */
int cli_exit_code(int err);
int cli_usage(const struct cli *c, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));

/* Opens the store named by --store (or the default) for @c->command. */
int cli_open_store(struct cli *c, struct vault **out, struct iverr *e);

/* Resolves a user name (or a numeric uid) to a uid. */
int cli_lookup_user(const char *name, uid_t *uid, struct iverr *e);
/* The name of @uid, or its number, in @buf. */
const char *cli_user_name(uid_t uid, char *buf, size_t cap);

/* Loads the server key from --server-key or its default places. */
int cli_load_server_key(const struct cli *c, struct server_key **out, struct iverr *e);

/*
 * Unlocks the vault the command acts on: in a system store as root with
 * the server key, --user NAME's; otherwise the caller's own (or --user,
 * as root) with the passphrase.  The caller owns *out.
 */
int cli_session(struct cli *c, struct vault *v, struct vault_session **out, struct iverr *e);

/* The kdf cost of --kdf (or the default). */
int cli_kdf_cost(const struct cli *c, struct keys_kdf_cost *out, struct iverr *e);

/* Writes @name (any text from the store or a peer) for a person: control
 * characters, backslashes and bytes that are not UTF-8 as escapes (\n, \\,
 * \xff), and so are C1 controls, line separators and bidi controls (\u009b):
 * nothing printed can move the cursor, start a line or reorder one. */
void cli_print_name(FILE *f, const char *name, size_t len);
/* Writes @s as a JSON string; bytes that are not UTF-8 become \udcXX (the
 * "surrogateescape" convention, so the exact bytes can be recovered); the
 * code points cli_print_name escapes are \uXXXX escapes here too. */
void cli_json_string(FILE *f, const char *s, size_t len);

/* Splits "album/name" (album may be omitted: "default"). */
int cli_split_path(const char *arg, const char **album, size_t *album_len,
		   const char **name, size_t *name_len, struct iverr *e);

int cmd_init(struct cli *c);
int cmd_user(struct cli *c);
int cmd_import(struct cli *c);
int cmd_export(struct cli *c);
int cmd_ls(struct cli *c);
int cmd_cat(struct cli *c);
int cmd_rm(struct cli *c);
int cmd_fsck(struct cli *c);
int cmd_rekey(struct cli *c);
int cmd_audit(struct cli *c);
int cmd_thumbs(struct cli *c);
int cmd_status(struct cli *c);
int cmd_mount(struct cli *c);
int cmd_unmount(struct cli *c);
/* lock and unlock act on a running imgvaultd only: these say so when none
 * holds the store (cli_remote does the work). */
int cmd_lock(struct cli *c);
int cmd_unlock(struct cli *c);
/* Share links, through a running imgvaultd only (cli_share.c). */
int cmd_share(struct cli *c);
int cmd_shares(struct cli *c);
int cmd_revoke(struct cli *c);
int cmd_keys(struct cli *c);
int cmd_partner(struct cli *c);

/* When a running imgvaultd holds the store (or --control names its
 * socket), runs status, ls, cat, import, rm, lock or unlock through its
 * control socket: returns 1 with *exit_code set.  0: no daemon, open the
 * store as usual. */
int cli_remote(struct cli *c, int *exit_code);
/* The store used when --store is not given (kept in @c). */
const char *cli_default_store(struct cli *c);
int cmd_config(struct cli *c);

/* Runs the session's thumbnail queue: with @wait to the end (or to version
 * @until) with a progress bar, else only what is ready now.  Damaged
 * images are reported on stderr and counted in @c. */
int cli_make_thumbs(struct cli *c, struct thumbnailer *t, bool wait, int64_t until,
		    struct iverr *e);

#endif
