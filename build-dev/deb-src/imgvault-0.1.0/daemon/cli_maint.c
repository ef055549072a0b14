/* imgvault fsck, rekey and audit. */
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <sodium.h>

#include "audit.h"
#include "bytes.h"
#include "cli.h"
#include "progress.h"
#include "prompt.h"

struct fsck_out {
	struct cli *c;
	struct progress bar;
};

static void fsck_problem(void *arg, const char *problem)
{
	struct fsck_out *o = arg;

	progress_done(&o->bar);
	if (o->c->json) {
		printf("{\"problem\":");
		cli_json_string(stdout, problem, strlen(problem));
		printf("}\n");
	} else {
		printf("damaged: ");
		cli_print_name(stdout, problem, strlen(problem));
		putchar('\n');
	}
	fflush(stdout);
}

static void fsck_progress(void *arg, uint64_t items, uint64_t total, uint64_t b, uint64_t bt)
{
	struct fsck_out *o = arg;

	progress_update(&o->bar, items, total, b, bt);
}

/* Unlocks every vault the caller can: all of them with the server key in a
 * system store, else the caller's own with the passphrase. */
static int fsck_sessions(struct cli *c, struct vault *v, struct vault_session ***out,
			 size_t *n, struct iverr *e)
{
	uint32_t *uids = NULL;
	size_t nuids = 0;
	struct server_key *sk = NULL;
	struct vault_session **ss = NULL;
	int ret;

	*out = NULL;
	*n = 0;
	if (!(vault_is_system(v) && geteuid() == 0 && !c->user)) {
		if (!(ss = calloc(1, sizeof(*ss))))
			return iverr_set(e, ENOMEM, "out of memory");
		ret = cli_session(c, v, &ss[0], e);
		if (ret < 0) {
			free(ss);
			return ret;
		}
		*out = ss;
		*n = 1;
		return 0;
	}
	ret = cli_load_server_key(c, &sk, e);
	if (ret < 0) {
		/* Still useful: structure, orphans, catalog, audit chain. */
		fprintf(stderr, "%s: fsck: %s; checking structure only, not content\n",
			c->prog, e->msg);
		iverr_clear(e);
		return 0;
	}
	if ((ret = vault_check_server_key(v, sk, e)) < 0 ||
	    (ret = vault_user_uids(v, &uids, &nuids, e)) < 0)
		goto out;
	if (!(ss = calloc(nuids ? nuids : 1, sizeof(*ss)))) {
		ret = iverr_set(e, ENOMEM, "out of memory");
		goto out;
	}
	for (size_t i = 0; i < nuids; i++) {
		struct iverr err = { 0 };
		if (vault_unlock(v, uids[i], KEY_SLOT_SERVER, sk->k, KEYS_KEY_LEN, &ss[*n], &err) == 0)
			(*n)++;
		else
			fprintf(stderr, "%s: fsck: uid %u: %s; checking its structure only\n",
				c->prog, uids[i], err.msg);
	}
	*out = ss;
out:
	free(uids);
	keys_server_free(sk);
	return ret;
}

int cmd_fsck(struct cli *c)
{
	struct iverr e = { 0 };
	struct vault *v = NULL;
	struct vault_session **ss = NULL;
	struct vault_fsck_report r;
	struct fsck_out o = { .c = c };
	char bytes[32];
	size_t n = 0;
	int ret;

	if (c->nargs)
		return cli_usage(c, "usage: imgvault fsck [--repair]");
	if ((ret = cli_open_store(c, &v, &e)) < 0)
		goto out;
	vault_set_lenient(v, true);   /* report a forged catalog, do not stop at it */
	if ((ret = fsck_sessions(c, v, &ss, &n, &e)) < 0)
		goto out;
	progress_init(&o.bar, "checking", c->progress && !c->json && !c->quiet);
	ret = vault_fsck(v, ss, n, c->repair, fsck_problem, fsck_progress, &o, &r, &e);
	progress_done(&o.bar);
	if (ret < 0)
		goto out;
	if (c->json) {
		printf("{\"versions_checked\":%" PRIu64 ",\"bytes_verified\":%" PRIu64
		       ",\"problems\":%" PRIu64 ",\"orphans_removed\":%" PRIu64
		       ",\"users_unverified\":%" PRIu64 ",\"catalog_damaged\":%s,"
		       "\"audit_broken\":%s}\n", r.versions_checked, r.bytes_verified,
		       r.problems, r.orphans_removed, r.users_unverified,
		       r.catalog_damaged ? "true" : "false", r.audit_broken ? "true" : "false");
	} else if (!c->quiet || r.problems) {
		printf("fsck: %" PRIu64 " versions checked, %s verified, %" PRIu64 " problems, "
		       "%" PRIu64 " orphans removed%s\n", r.versions_checked,
		       progress_bytes(r.bytes_verified, bytes), r.problems, r.orphans_removed,
		       r.users_unverified ? " (some vaults checked for structure only: their "
		       "keys were not at hand)" : "");
		if (r.problems)
			printf("fsck: the store is damaged: restore the images named above from a "
			       "backup%s\n", c->repair ? "" : "; --repair marks them damaged");
	}
out:
	for (size_t i = 0; i < n; i++)
		vault_session_close(ss[i]);
	free(ss);
	vault_close(v);
	if (ret < 0)
		return cli_fail(c, ret, "fsck: %s", e.msg);
	return r.problems ? EXIT_DAMAGE : EXIT_OK;
}

int cmd_rekey(struct cli *c)
{
	struct iverr e = { 0 };
	struct vault *v = NULL;
	struct vault_session *s = NULL;
	struct server_key *sk = NULL;
	struct secret pass = { 0 };
	struct keys_kdf_cost cost;
	struct progress bar;
	char recovery[KEYS_RECOVERY_CODE_LEN + 1] = "";
	bool dropped = false, resuming = false;
	struct vault_user_info info;
	struct thumbnailer *thumbs = NULL;
	int ret;

	if (c->nargs)
		return cli_usage(c, "usage: imgvault rekey [--full]");
	if ((ret = cli_kdf_cost(c, &cost, &e)) < 0 || (ret = cli_open_store(c, &v, &e)) < 0)
		goto out;
	if (vault_is_system(v) && geteuid() == 0) {
		if ((ret = cli_load_server_key(c, &sk, &e)) < 0 ||
		    (ret = cli_session(c, v, &s, &e)) < 0)
			goto out;
	} else {
		/* The passphrase unlocks and then reseals the new key. */
		if ((ret = prompt_secret(c->passphrase_file, "Passphrase: ", 0, 0, &pass, &e)) < 0 ||
		    (ret = vault_unlock(v, (uint32_t)getuid(), KEY_SLOT_PASSPHRASE, pass.buf,
					pass.len, &s, &e)) < 0)
			goto out;
	}
	if ((ret = vault_user_info(v, vault_session_uid(s), &info, &e)) < 0)
		goto out;
	if (info.rekey == CATALOG_REKEY_NONE) {
		/* The new code is shown before the rotation commits: if it cannot
		 * be shown, nothing changes and the old code keeps working. */
		keys_recovery_code_new(recovery);
		if (c->json)
			printf("{\"recovery_code\":\"%s\",\"passphrase_removed\":%s}\n", recovery,
			       (info.slots & (1u << KEY_SLOT_PASSPHRASE)) && !pass.buf ? "true"
			       : "false");
		else
			printf("The vault's key is being rotated.  Its new recovery code (the old "
			       "one stops working now):\n\n    %s\n\n", recovery);
		if (fflush(stdout) != 0 || ferror(stdout)) {
			ret = iverr_set(&e, errno ? errno : EIO, "cannot show the new recovery "
					"code (%s); nothing was changed", strerror(errno ? errno : EIO));
			goto out;
		}
	}
	if ((ret = vault_rekey_begin(s, c->full, sk, pass.buf, pass.len, &cost,
				     info.rekey == CATALOG_REKEY_NONE ? recovery : NULL,
				     &dropped, &resuming, &e)) < 0)
		goto out;
	if (resuming && !c->quiet && !c->json)
		printf("resuming an interrupted key rotation%s\n",
		       c->full ? " (as it was begun: --full applies to a new one)" : "");
	if (dropped && !c->json)
		printf("The passphrase slot was removed (its passphrase was not given); set a "
		       "new one with: imgvault user passwd %s\n", c->user ? c->user : "");
	progress_init(&bar, "rotating", c->progress && !c->json && !c->quiet);
	ret = vault_rekey_run(s, progress_callback, &bar, &e);
	progress_done(&bar);
	if (ret == 0 && !c->quiet && !c->json)
		printf("every blob of the vault is now under the new key\n");
	/* Thumbnails were dropped with the old key: make them again. */
	c->session = s;
	if (ret == 0 && (ret = thumbnailer_start(s, THUMB_WORKERS, &thumbs, &e)) == 0)
		ret = cli_make_thumbs(c, thumbs, true, 0, &e);
out:
	thumbnailer_stop(thumbs);
	sodium_memzero(recovery, sizeof(recovery));
	prompt_secret_free(&pass);
	keys_server_free(sk);
	vault_session_close(s);
	vault_close(v);
	return ret < 0 ? cli_fail(c, ret, "rekey: %s", e.msg) : EXIT_OK;
}

struct audit_ctx {
	struct cli *c;
	int64_t from;       /* first seq to print */
};

/* @text escaped, padded to @width bytes, and a space. */
static void print_field(const char *text, int width)
{
	size_t len = strlen(text);

	cli_print_name(stdout, text, len);
	for (size_t i = len; i < (size_t)width; i++)
		putchar(' ');
	putchar(' ');
}

static int print_entry(const struct catalog_audit *a, void *arg)
{
	struct audit_ctx *x = arg;
	char when[32], actor[64], subject[64];
	time_t t = (time_t)a->time;
	struct tm tm;

	if (a->seq < x->from)
		return 0;
	if (x->c->json) {
		printf("{\"seq\":%" PRId64 ",\"time\":%" PRId64 ",\"actor\":%" PRId64
		       ",\"subject\":%" PRId64 ",\"action\":", a->seq, a->time, a->actor, a->subject);
		cli_json_string(stdout, a->action, strlen(a->action));
		printf(",\"object\":");
		cli_json_string(stdout, a->object, strlen(a->object));
		printf(",\"result\":");
		cli_json_string(stdout, a->result, strlen(a->result));
		printf(",\"detail\":");
		cli_json_string(stdout, a->detail, strlen(a->detail));
		printf("}\n");
		return 0;
	}
	strftime(when, sizeof(when), "%Y-%m-%dT%H:%M:%S", gmtime_r(&t, &tm));
	cli_user_name((uid_t)a->actor, actor, sizeof(actor));
	if (a->subject >= 0)
		cli_user_name((uid_t)a->subject, subject, sizeof(subject));
	else
		strcpy(subject, "-");
	/* Every text field may hold what a peer sent (a client address, a
	 * partner's name): escaped, so no entry can fake another or drive the
	 * terminal (cli_print_name). */
	printf("%6" PRId64 " %sZ ", a->seq, when);
	print_field(actor, 10);
	print_field(subject, 10);
	print_field(a->action, 10);
	print_field(a->result, 9);
	print_field(a->object[0] ? a->object : "-", 0);
	cli_print_name(stdout, a->detail, strnlen(a->detail, sizeof(a->detail)));
	putchar('\n');
	return 0;
}

/* Gives the catalog the store scope's key if the caller has it at hand —
 * root's server key in a system store, the owner's passphrase (given with
 * --passphrase-file) in a desktop one — so the sealed head can be checked. */
static void audit_take_key(struct cli *c, struct vault *v, struct vault_session **s)
{
	struct server_key *sk = NULL;
	struct iverr ignored = { 0 };

	if (vault_is_system(v)) {
		if (geteuid() == 0 && cli_load_server_key(c, &sk, &ignored) == 0)
			vault_check_server_key(v, sk, &ignored);
		keys_server_free(sk);
	} else if (c->passphrase_file) {
		vault_set_lenient(v, true);   /* the trail is read even from a forged catalog */
		if (cli_session(c, v, s, &ignored) < 0)
			*s = NULL;
	}
}

int cmd_audit(struct cli *c)
{
	struct iverr e = { 0 };
	struct vault *v = NULL;
	struct vault_session *s = NULL;
	struct audit_report r = { 0 };
	struct audit_ctx x = { .c = c, .from = 0 };
	struct catalog_audit last;
	char head[65];
	bool verify = c->nargs == 1 && !strcmp(c->args[0], "verify");
	bool show_head = c->nargs == 1 && !strcmp(c->args[0], "head");
	int ret;

	if (c->nargs > 1 || (c->nargs == 1 && !verify && !show_head))
		return cli_usage(c, "usage: imgvault audit [-n N] | audit verify | audit head");
	if ((ret = cli_open_store(c, &v, &e)) < 0)
		goto out;
	if (c->nargs == 0) {
		if (c->limit >= 0 && catalog_audit_last(vault_catalog(v), &last, NULL) == 0)
			x.from = last.seq - c->limit + 1;
		ret = catalog_audit_list(vault_catalog(v), print_entry, &x, &e);
		goto out;
	}
	audit_take_key(c, v, &s);
	if ((ret = audit_verify(vault_catalog(v), &r, &e)) < 0)
		goto out;
	hex_encode(r.head, sizeof(r.head), head);
	if (show_head) {
		/* What an operator keeps outside the store, to compare later. */
		if (c->json)
			printf("{\"entries\":%" PRIu64 ",\"head\":\"%s\"}\n", r.entries, head);
		else
			printf("%" PRIu64 " %s\n", r.entries, head);
		goto out;
	}
	if (c->json)
		printf("{\"entries\":%" PRIu64 ",\"intact\":%s,\"first_bad\":%" PRId64
		       ",\"head\":\"%s\",\"tail_cut\":%s,\"sealed_head\":%" PRId64
		       ",\"seal_checked\":%s}\n", r.entries,
		       r.first_bad || r.tail_cut || r.seal_broken ? "false" : "true",
		       r.first_bad, head, r.tail_cut ? "true" : "false", r.sealed_seq,
		       r.head_checked ? "true" : "false");
	else if (r.seal_broken)
		printf("audit trail BROKEN: its sealed head fails authentication (catalog.db was "
		       "edited)\n");
	else if (r.first_bad && r.tail_cut)
		printf("audit trail BROKEN at entry %" PRId64 ": it is not the entry the sealed head "
		       "names: entries were removed (and others appended) or rewritten from "
		       "there on\n", r.first_bad);
	else if (r.first_bad)
		printf("audit trail BROKEN at entry %" PRId64 ": an entry was edited, deleted or "
		       "reordered there\n", r.first_bad);
	else if (r.tail_cut)
		printf("audit trail BROKEN: it ends at entry %" PRIu64 " but its sealed head is "
		       "entry %" PRId64 ": the entries after %" PRIu64 " were removed\n", r.entries,
		       r.sealed_seq, r.entries);
	else
		printf("audit trail intact: %" PRIu64 " entries, head %s%s\n", r.entries, head,
		       r.head_checked ? "" : " (its sealed head was not checked: that needs the "
		       "server key, or the owner's --passphrase-file)");
out:
	vault_session_close(s);
	vault_close(v);
	if (ret < 0)
		return cli_fail(c, ret, "audit: %s", e.msg);
	return verify && (r.first_bad || r.tail_cut || r.seal_broken) ? EXIT_DAMAGE : EXIT_OK;
}

struct thumbs_out {
	struct cli *c;
	struct vault_session *s;
	struct progress bar;
};

static void thumb_damaged(void *arg, int64_t image_id, const char *why)
{
	struct thumbs_out *o = arg;
	struct vault_image im;

	progress_done(&o->bar);
	fprintf(stderr, "%s: damaged: ", o->c->prog);
	if (vault_image_get(o->s, image_id, &im, NULL) == 0)
		cli_print_name(stderr, im.name, im.name_len);
	else
		fprintf(stderr, "image %lld", (long long)image_id);
	fprintf(stderr, ": %s; it is kept, marked damaged\n", why);
}

static void thumb_progress(void *arg, uint64_t items, uint64_t total, uint64_t b, uint64_t bt)
{
	struct thumbs_out *o = arg;

	progress_update(&o->bar, items, total, b, bt);
}

int cli_make_thumbs(struct cli *c, struct thumbnailer *t, bool wait, int64_t until,
		    struct iverr *e)
{
	struct thumbs_out o = { .c = c, .s = NULL };
	struct thumbnailer_report r = { 0 };
	int ret;

	o.s = c->session;
	progress_init(&o.bar, "thumbnails", wait && c->progress && !c->json && !c->quiet && !until);
	ret = thumbnailer_run(t, wait, until, thumb_progress, thumb_damaged, &o, &r, e);
	progress_done(&o.bar);
	c->thumbs_made += r.made;
	c->thumbs_damaged += r.damaged;
	return ret;
}

static int queue_all(const struct vault_image *im, void *arg)
{
	struct vault_session *s = arg;

	return vault_thumb_queue(s, im->id, false, true, NULL);
}

static int queue_album(int64_t id, const char *name, size_t len, void *arg)
{
	(void)name;
	(void)len;
	return vault_image_list(arg, id, queue_all, arg, NULL);
}

int cmd_thumbs(struct cli *c)
{
	struct iverr e = { 0 };
	struct vault *v = NULL;
	struct vault_session *s = NULL;
	struct thumbnailer *t = NULL;
	int ret;

	if (c->nargs)
		return cli_usage(c, "usage: imgvault thumbs [--rebuild]");
	if ((ret = cli_open_store(c, &v, &e)) < 0 || (ret = cli_session(c, v, &s, &e)) < 0)
		goto out;
	c->session = s;
	if (c->rebuild && (ret = vault_album_list(s, queue_album, s, &e)) < 0)
		goto out;
	if ((ret = thumbnailer_start(s, THUMB_WORKERS, &t, &e)) < 0 ||
	    (ret = cli_make_thumbs(c, t, true, 0, &e)) < 0)
		goto out;
	if (c->json)
		printf("{\"made\":%llu,\"damaged\":%llu}\n", (unsigned long long)c->thumbs_made,
		       (unsigned long long)c->thumbs_damaged);
	else if (!c->quiet)
		printf("%llu thumbnails made, %llu images damaged\n",
		       (unsigned long long)c->thumbs_made, (unsigned long long)c->thumbs_damaged);
out:
	thumbnailer_stop(t);
	vault_session_close(s);
	vault_close(v);
	if (ret < 0)
		return cli_fail(c, ret, "thumbs: %s", e.msg);
	return c->thumbs_damaged ? EXIT_DAMAGE : EXIT_OK;
}

static int print_setting(const char *key, const char *value, void *arg)
{
	const struct cli *c = arg;

	if (c->json)
		printf("{\"key\":\"%s\",\"value\":\"%s\"}\n", key, value);
	else
		printf("%s=%s\n", key, value);
	return 0;
}

int cmd_config(struct cli *c)
{
	struct iverr e = { 0 };
	struct vault *v = NULL;
	char key[64];
	int ret;

	if ((ret = cli_open_store(c, &v, &e)) < 0)
		goto out;
	if (c->nargs && getuid() != 0 && vault_is_system(v)) {
		ret = iverr_set(&e, EPERM, "only root changes a system store's settings");
		goto out;
	}
	for (int i = 0; i < c->nargs; i++) {
		const char *eq = strchr(c->args[i], '=');
		if (!eq || eq == c->args[i] || (size_t)(eq - c->args[i]) >= sizeof(key)) {
			ret = iverr_set(&e, EINVAL, "'%s' is not KEY=VALUE (image.max-pixels=50000000)",
					c->args[i]);
			goto out;
		}
		snprintf(key, sizeof(key), "%.*s", (int)(eq - c->args[i]), c->args[i]);
		if ((ret = vault_config_set(v, key, eq + 1, &e)) < 0)
			goto out;
	}
	if (!c->nargs || !c->quiet)
		ret = vault_config_list(v, print_setting, c);
out:
	vault_close(v);
	return ret < 0 ? cli_fail(c, ret, "config: %s", e.msg) : EXIT_OK;
}
