/*
 * Share links from the command line (DESIGN §8): share, shares, revoke,
 * keys and partner.  They exist only through a running imgvaultd, which
 * alone holds the signing key; every one is a request on its control
 * socket (docs/PROTOCOL.md, daemon/control_share.c answers).
 *
 * A token is a bearer secret: it is printed once, on standard output, by
 * share, and never anywhere else (not in errors, not by shares); the
 * buffers that held it are wiped.  Links are named by their token id.
 */
#define _GNU_SOURCE   /* strptime, timegm */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <sodium.h>

#include "cli.h"
#include "remote.h"
#include "share.h"
#include "token.h"

#define NO_DAEMON "share links are made by a running imgvaultd: mount the vault first " \
	"(imgvault mount MOUNTPOINT, or imgvaultd)"
#define NAME_CAP 1024                  /* album and image names: the daemon checks */

static const char *const variant_names[] = { "original", "pristine", "thumb" };

/* ---- small helpers ---- */

static const char *variant_name(uint64_t v)
{
	return v < 3 ? variant_names[v] : "?";
}

static int variant_parse(const char *s)
{
	for (int i = 0; i < 3; i++)
		if (!strcmp(s, variant_names[i]))
			return i;
	return -1;
}

static void iso_time(int64_t t, char out[32])
{
	time_t tt = (time_t)t;
	struct tm tm;

	if (!gmtime_r(&tt, &tm) || !strftime(out, 32, "%Y-%m-%dT%H:%M:%SZ", &tm))
		snprintf(out, 32, "%" PRId64, t);
}

/* A time left for people: "45s", "59m", "1h", "2h 5m", "6d 23h". */
static void format_left(int64_t secs, char *out, size_t cap)
{
	int64_t m;

	if (secs <= 0) {
		snprintf(out, cap, "now");
		return;
	}
	if (secs < 60) {
		snprintf(out, cap, "%" PRId64 "s", secs);
		return;
	}
	m = (secs + 30) / 60;
	if (m < 60)
		snprintf(out, cap, "%" PRId64 "m", m);
	else if (m < 1440 && m % 60)
		snprintf(out, cap, "%" PRId64 "h %" PRId64 "m", m / 60, m % 60);
	else if (m < 1440)
		snprintf(out, cap, "%" PRId64 "h", m / 60);
	else if ((m % 1440) / 60)
		snprintf(out, cap, "%" PRId64 "d %" PRId64 "h", m / 1440, (m % 1440) / 60);
	else
		snprintf(out, cap, "%" PRId64 "d", m / 1440);
}

static int64_t now_s(void)
{
	return (int64_t)time(NULL);
}

/* Appends @s to @out as a JSON string's contents (the URL comes from the
 * store's config: quote what needs it). */
static void json_escape(char *out, size_t cap, const char *s)
{
	size_t n = strlen(out);

	for (; *s && n + 7 < cap; s++) {
		unsigned char ch = (unsigned char)*s;
		if (ch == '"' || ch == '\\')
			n += (size_t)snprintf(out + n, cap - n, "\\%c", ch);
		else if (ch < 0x20 || ch == 0x7f)
			n += (size_t)snprintf(out + n, cap - n, "\\u%04x", ch);
		else
			out[n++] = (char)ch;
	}
	out[n] = '\0';
}

/* Writes @len bytes straight to fd 1, past stdio, so no copy of a token
 * stays behind in stdio's buffer. */
static int write_out(const char *buf, size_t len, struct iverr *e)
{
	fflush(stdout);
	while (len) {
		ssize_t n = write(STDOUT_FILENO, buf, len);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			return iverr_set(e, errno ? errno : EIO, "cannot write the link out: %s",
					 strerror(errno ? errno : EIO));
		buf += n;
		len -= (size_t)n;
	}
	return 0;
}

/* A field as text with a fallback, for optional fields of a listing. */
static void get_str(const struct proto_msg *m, uint8_t tag, char *buf, size_t cap)
{
	if (proto_get_str(m, tag, buf, cap) < 0)
		buf[0] = '\0';
}

static uint64_t get_u64(const struct proto_msg *m, uint8_t tag)
{
	uint64_t v = 0;

	proto_get_u64(m, tag, &v);
	return v;
}

/* ---- the connection ---- */

/* The daemon holding --store (or the default store), else the system
 * daemon's socket when there is one. */
static int share_connect(struct cli *c, struct remote *r, struct iverr *e)
{
	char path[108];
	int ret;

	if (remote_socket_of(c, path, sizeof(path)) < 0) {
		if (access(CLI_SYSTEM_CONTROL, F_OK) < 0)
			return iverr_set(e, ENOENT, NO_DAEMON);
		snprintf(path, sizeof(path), "%s", CLI_SYSTEM_CONTROL);
	}
	ret = remote_connect(r, path, e);
	/* A socket left behind by a daemon that is gone. */
	if (ret == -ECONNREFUSED || ret == -ENOENT)
		return iverr_set(e, ENOENT, NO_DAEMON);
	return ret;
}

/* One request and its answer: OK, or the daemon's ERROR as -errno. */
static int request(struct remote *r, struct iverr *e)
{
	int ret = remote_send(r, e);

	return ret < 0 ? ret : remote_recv(r, e);
}

typedef int (*remote_fn)(struct cli *c, struct remote *r, const void *arg, struct iverr *e);

/* Connects, runs @fn, reports a failure as "COMMAND: what went wrong". */
static int run_remote(struct cli *c, remote_fn fn, const void *arg)
{
	struct iverr e = { 0 };
	struct remote *r = calloc(1, sizeof(*r));
	int ret;

	if (!r)
		return cli_fail(c, -ENOMEM, "%s: out of memory", c->command);
	r->fd = -1;
	ret = share_connect(c, r, &e);
	if (ret == 0)
		ret = fn(c, r, arg, &e);
	remote_close(r);
	free(r);
	if (ret < 0)
		return cli_fail(c, ret, "%s: %s", c->command, e.msg[0] ? e.msg : strerror(-ret));
	return EXIT_OK;
}

/* Reads an ENTRY… END listing, calling @each for every entry. */
static int read_listing(struct cli *c, struct remote *r,
			void (*each)(struct cli *c, const struct proto_msg *m), struct iverr *e)
{
	int ret;

	if ((ret = remote_send(r, e)) < 0)
		return ret;
	while ((ret = remote_recv(r, e)) == 0 && r->m.type == P_ENTRY)
		each(c, &r->m);
	if (ret == 0 && r->m.type != P_END)
		ret = iverr_set(e, EPROTO, "imgvaultd ended the listing oddly");
	return ret;
}

/* ---- which image: ALBUM/NAME or a file inside the mount ---- */

struct image_ref {
	char album[NAME_CAP], name[NAME_CAP];
	int variant;                 /* from the path's view; -1: none */
};

/* The daemon's mount point and mode, from its STATUS. */
static int daemon_mount(struct remote *r, char *mnt, size_t cap, bool *system,
			struct iverr *e)
{
	char mode[16];
	int ret;

	proto_begin(&r->out, P_STATUS);
	if ((ret = request(r, e)) < 0)
		return ret;
	if (proto_get_str(&r->m, T_MOUNT, mnt, cap) < 0 ||
	    proto_get_str(&r->m, T_MODE, mode, sizeof(mode)) < 0)
		return iverr_set(e, EPROTO, "imgvaultd's status is incomplete");
	*system = !strcmp(mode, "system");
	return 0;
}

/* @full's part below @mnt ("" if it is not below it). */
static const char *below(const char *full, const char *mnt)
{
	size_t n = strlen(mnt);

	while (n > 1 && mnt[n - 1] == '/')
		n--;
	if (strncmp(full, mnt, n) || full[n] != '/')
		return NULL;
	return full + n + 1;
}

/* Splits "[USER/]ALBUM/VIEW/NAME" below the mount point into @out. */
static int split_mount_path(const char *arg, const char *rel, bool system,
			    struct image_ref *out, struct iverr *e)
{
	char buf[PATH_MAX], me[64], *part[5], *save = NULL;
	int n = 0, want = system ? 4 : 3;

	snprintf(buf, sizeof(buf), "%s", rel);
	for (char *p = strtok_r(buf, "/", &save); p; p = strtok_r(NULL, "/", &save))
		if (n < 5)
			part[n++] = p;
		else
			n++;
	if (n != want || (out->variant = variant_parse(part[want - 2])) < 0)
		return iverr_set(e, EINVAL, "%s is not an image file of the mount: "
				 "%sALBUM/{original,thumb,pristine}/NAME", arg,
				 system ? "USER/" : "");
	if (system && strcmp(part[0], cli_user_name(getuid(), me, sizeof(me))))
		return iverr_set(e, EPERM, "%s is in %s's vault: only %s makes links to it",
				 arg, part[0], part[0]);
	snprintf(out->album, sizeof(out->album), "%s", part[want - 3]);
	snprintf(out->name, sizeof(out->name), "%s", part[want - 1]);
	return 0;
}

/* A path of the filesystem inside the daemon's mount; 1 (with a message)
 * when it is not inside it. */
static int resolve_mount_path(struct remote *r, const char *arg, const char *full,
			      struct image_ref *out, struct iverr *e)
{
	char mnt[PATH_MAX], real_mnt[PATH_MAX];
	const char *rel;
	bool is_system = false;
	int ret;

	if ((ret = daemon_mount(r, mnt, sizeof(mnt), &is_system, e)) < 0)
		return ret;
	rel = below(full, mnt);
	if (!rel && realpath(mnt, real_mnt))
		rel = below(full, real_mnt);
	if (!rel) {
		iverr_set(e, EINVAL, "%s is not inside the mount %s: give a file there, or "
			  "ALBUM/NAME", arg, mnt);
		return 1;
	}
	return split_mount_path(arg, rel, is_system, out, e);
}

static int resolve_image(struct remote *r, const char *arg, struct image_ref *out,
			 struct iverr *e)
{
	char full[PATH_MAX];
	const char *album, *name;
	size_t alen, nlen;
	int ret;

	out->variant = -1;
	if (arg[0] == '/') {
		/* Unresolvable (another user's file): judged by its name alone. */
		int err = realpath(arg, full) ? 0 : errno;
		ret = resolve_mount_path(r, arg, err ? arg : full, out, e);
		if (ret > 0 && err)
			return iverr_set(e, err, "%s: %s", arg, strerror(err));
		return ret > 0 ? -EINVAL : ret;
	}
	/* A relative path that exists inside the mount is a file of it; anything
	 * else is ALBUM/NAME. */
	if (strchr(arg, '/') && realpath(arg, full) &&
	    (ret = resolve_mount_path(r, arg, full, out, e)) <= 0)
		return ret;
	iverr_clear(e);
	if ((ret = cli_split_path(arg, &album, &alen, &name, &nlen, e)) < 0)
		return iverr_set(e, EINVAL, "'%s' is neither ALBUM/NAME nor an image file "
				 "inside the mount", arg);
	if (alen >= sizeof(out->album) || nlen >= sizeof(out->name))
		return iverr_set(e, ENAMETOOLONG, "'%s': the name is too long", arg);
	snprintf(out->album, sizeof(out->album), "%.*s", (int)alen, album);
	snprintf(out->name, sizeof(out->name), "%.*s", (int)nlen, name);
	return 0;
}

static void put_image(struct remote *r, const struct image_ref *im)
{
	proto_put(&r->out, T_ALBUM, im->album, strlen(im->album));
	proto_put(&r->out, T_NAME, im->name, strlen(im->name));
}

/* ---- share ---- */

struct share_args {
	const char *path;
	int variant;                 /* -1: from the path, else original */
	bool download;
	int64_t ttl;                 /* 0: the default */
	int64_t not_before;          /* 0: now */
	uint64_t uses;               /* 0: unlimited */
	const char *partner;
};

/* "+10m" (from now), Unix seconds, or "YYYY-MM-DDTHH:MM:SSZ" (UTC). */
static int parse_time(const char *s, int64_t *out)
{
	struct tm tm = { 0 };
	const char *end;
	int64_t d;

	if (s[0] == '+') {
		if (share_parse_duration(s + 1, &d) < 0)
			return -EINVAL;
		*out = now_s() + d;
		return 0;
	}
	if (s[0] && strspn(s, "0123456789") == strlen(s) && strlen(s) < 13) {
		*out = strtoll(s, NULL, 10);
		return 0;
	}
	end = strptime(s, "%Y-%m-%dT%H:%M:%SZ", &tm);
	if (!end || *end)
		return -EINVAL;
	*out = (int64_t)timegm(&tm);
	return 0;
}

static int parse_share_args(const struct cli *c, struct share_args *a)
{
	char *end;

	if (c->nargs != 1)
		return cli_usage(c, "usage: imgvault share PATH [--ttl 1h] [--variant "
				 "original|thumb|pristine] [--download] [--uses N] [--partner "
				 "NAME] [--not-before TIME]");
	*a = (struct share_args){ .path = c->args[0], .variant = -1, .download = c->download,
				  .partner = c->partner };
	if (c->variant && (a->variant = variant_parse(c->variant)) < 0)
		return cli_usage(c, "--variant takes original, thumb or pristine, not '%s'",
				 c->variant);
	if (c->ttl && (share_parse_duration(c->ttl, &a->ttl) < 0 || a->ttl <= 0))
		return cli_usage(c, "--ttl takes a lifetime such as 90s, 30m, 1h, 48h or 7d, "
				 "not '%s'", c->ttl);
	if (c->not_before && parse_time(c->not_before, &a->not_before) < 0)
		return cli_usage(c, "--not-before takes +DURATION (+10m), Unix seconds or "
				 "YYYY-MM-DDTHH:MM:SSZ (UTC), not '%s'", c->not_before);
	if (c->uses) {
		errno = 0;
		a->uses = strtoull(c->uses, &end, 10);
		if (errno || *end || c->uses[0] == '-' || !a->uses || a->uses > UINT32_MAX)
			return cli_usage(c, "--uses takes how many times the link may be fetched "
					 "(1 or more), not '%s'", c->uses);
	}
	if (c->partner && !c->partner[0])
		return cli_usage(c, "--partner takes a partner's name (imgvault partner list)");
	return EXIT_OK;
}

/* Formats what share prints into @out: the link first, for scripts. */
static void format_link(const struct cli *c, const char *url, const char *token,
			const char *tid, int64_t not_before, int64_t expires,
			char *out, size_t cap)
{
	char when[32], left[32], from[32];

	if (c->json) {
		snprintf(out, cap, "{\"url\":\"");
		json_escape(out, cap, url);
		snprintf(out + strlen(out), cap - strlen(out), "/s/%s\",\"page\":\"", token);
		json_escape(out, cap, url);
		snprintf(out + strlen(out), cap - strlen(out), "/v/%s\",\"token_id\":\"%s\","
			 "\"not_before\":%" PRId64 ",\"expires\":%" PRId64 "}\n", token, tid,
			 not_before, expires);
		return;
	}
	iso_time(expires, when);
	format_left(expires - now_s(), left, sizeof(left));
	snprintf(out, cap, "%s/s/%s\npreview: %s/v/%s\n", url, token, url, token);
	if (not_before > now_s()) {
		iso_time(not_before, from);
		snprintf(out + strlen(out), cap - strlen(out), "valid from: %s\n", from);
	}
	snprintf(out + strlen(out), cap - strlen(out), "expires: %s (in %s)\nid: %s\n", when,
		 left, tid);
}

static int print_minted(const struct cli *c, struct remote *r, struct iverr *e)
{
	const struct proto_field *tid = proto_get(&r->m, T_TOKEN_ID);
	char token[TOKEN_STR_LEN + 1], url[SHARE_URL_MAX], hex[2 * TOKEN_ID_LEN + 1];
	char out[2 * SHARE_URL_MAX + 3 * TOKEN_STR_LEN + 256];
	uint64_t nb = 0, exp = 0;
	size_t n;
	int ret;

	if (proto_get_str(&r->m, T_TOKEN, token, sizeof(token)) < 0 || !tid ||
	    tid->len != TOKEN_ID_LEN || proto_get_str(&r->m, T_URL, url, sizeof(url)) < 0 ||
	    proto_get_u64(&r->m, T_EXPIRES, &exp) < 0) {
		ret = iverr_set(e, EPROTO, "imgvaultd's answer is incomplete");
		goto out;
	}
	proto_get_u64(&r->m, T_NOT_BEFORE, &nb);
	token_hex(tid->val, TOKEN_ID_LEN, hex);
	for (n = strlen(url); n && url[n - 1] == '/'; n--)   /* base-url may end in '/' */
		url[n - 1] = '\0';
	format_link(c, url, token, hex, (int64_t)nb, (int64_t)exp, out, sizeof(out));
	ret = write_out(out, strlen(out), e);
out:
	sodium_memzero(token, sizeof(token));
	sodium_memzero(out, sizeof(out));
	return ret;
}

static int remote_share(struct cli *c, struct remote *r, const void *arg, struct iverr *e)
{
	const struct share_args *a = arg;
	struct image_ref im;
	int ret, variant;

	if ((ret = resolve_image(r, a->path, &im, e)) < 0)
		return ret;
	variant = a->variant >= 0 ? a->variant : im.variant >= 0 ? im.variant : TOKEN_ORIGINAL;
	proto_begin(&r->out, P_SHARE);
	put_image(r, &im);
	proto_put_u64(&r->out, T_VARIANT, (uint64_t)variant);
	if (a->download)
		proto_put_u64(&r->out, T_DISPOSITION, TOKEN_ATTACHMENT);
	if (a->ttl)
		proto_put_u64(&r->out, T_TTL, (uint64_t)a->ttl);
	if (a->not_before)
		proto_put_u64(&r->out, T_NOT_BEFORE, (uint64_t)a->not_before);
	if (a->uses)
		proto_put_u64(&r->out, T_USES, a->uses);
	if (a->partner)
		proto_put_str(&r->out, T_PARTNER, a->partner);
	if ((ret = request(r, e)) < 0)
		return ret;
	return print_minted(c, r, e);
}

int cmd_share(struct cli *c)
{
	struct share_args a;
	int ret = parse_share_args(c, &a);

	return ret ? ret : run_remote(c, remote_share, &a);
}

/* ---- shares ---- */

static void print_share_entry(struct cli *c, const struct proto_msg *m)
{
	const struct proto_field *tid = proto_get(m, T_TOKEN_ID);
	const struct proto_field *name = proto_get(m, T_NAME);
	char hex[2 * TOKEN_ID_LEN + 1] = "?", partner[128], uses[48], left[32], who[64];
	uint64_t owner = get_u64(m, T_OWNER), variant = get_u64(m, T_VARIANT);
	uint64_t n = get_u64(m, T_USES), max = get_u64(m, T_USES_MAX);
	int64_t expires = (int64_t)get_u64(m, T_EXPIRES);

	if (tid && tid->len == TOKEN_ID_LEN)
		token_hex(tid->val, TOKEN_ID_LEN, hex);
	get_str(m, T_PARTNER, partner, sizeof(partner));
	if (c->json) {
		printf("{\"token_id\":\"%s\",\"owner\":%" PRIu64 ",\"image\":", hex, owner);
		if (name)
			cli_json_string(stdout, (const char *)name->val, name->len);
		else
			printf("null");
		printf(",\"variant\":\"%s\",\"download\":%s,\"partner\":", variant_name(variant),
		       get_u64(m, T_DISPOSITION) ? "true" : "false");
		if (partner[0])
			cli_json_string(stdout, partner, strlen(partner));
		else
			printf("null");
		printf(",\"not_before\":%" PRIu64 ",\"expires\":%" PRId64 ",\"uses\":%" PRIu64
		       ",\"uses_max\":%" PRIu64 ",\"created\":%" PRIu64 "}\n",
		       get_u64(m, T_NOT_BEFORE), expires, n, max, get_u64(m, T_CREATED));
		return;
	}
	if (max)
		snprintf(uses, sizeof(uses), "%" PRIu64 "/%" PRIu64, n, max);
	else
		snprintf(uses, sizeof(uses), "-");
	format_left(expires - now_s(), left, sizeof(left));
	printf("%s  %-8s  %-12s  %-7s  %-8s  ", hex, variant_name(variant),
	       partner[0] ? partner : "-", uses, left);
	if (name)
		cli_print_name(stdout, (const char *)name->val, name->len);
	else   /* another user's image (root's listing): its owner */
		printf("(%s's)", cli_user_name((uid_t)owner, who, sizeof(who)));
	putchar('\n');
}

static int remote_shares(struct cli *c, struct remote *r, const void *arg, struct iverr *e)
{
	struct image_ref im;
	int ret;

	(void)arg;
	if (c->image && (ret = resolve_image(r, c->image, &im, e)) < 0)
		return ret;
	proto_begin(&r->out, P_SHARES);
	if (c->image)
		put_image(r, &im);
	else if (c->partner)
		proto_put_str(&r->out, T_PARTNER, c->partner);
	if (!c->json)
		printf("%-32s  %-8s  %-12s  %-7s  %-8s  %s\n", "TOKEN ID", "VARIANT", "PARTNER",
		       "USES", "EXPIRES", "IMAGE");
	return read_listing(c, r, print_share_entry, e);
}

int cmd_shares(struct cli *c)
{
	if (c->nargs || (c->image && c->partner))
		return cli_usage(c, "usage: imgvault shares [--image PATH | --partner NAME]");
	return run_remote(c, remote_shares, NULL);
}

/* ---- revoke ---- */

static int remote_revoke(struct cli *c, struct remote *r, const void *arg, struct iverr *e)
{
	const uint8_t *tid = arg;
	struct image_ref im;
	uint64_t n = 0;
	int ret;

	if (c->image && (ret = resolve_image(r, c->image, &im, e)) < 0)
		return ret;
	proto_begin(&r->out, P_REVOKE);
	if (c->image)
		put_image(r, &im);   /* every variant's links to it */
	else if (c->partner)
		proto_put_str(&r->out, T_PARTNER, c->partner);
	else
		proto_put(&r->out, T_TOKEN_ID, tid, TOKEN_ID_LEN);
	if ((ret = request(r, e)) < 0)
		return ret;
	if (proto_get_u64(&r->m, T_COUNT, &n) < 0)
		return iverr_set(e, EPROTO, "imgvaultd's answer is incomplete");
	if (c->json)
		printf("{\"revoked\":%" PRIu64 "}\n", n);
	else if (!c->quiet)
		printf("revoked %" PRIu64 " link%s\n", n, n == 1 ? "" : "s");
	return 0;
}

int cmd_revoke(struct cli *c)
{
	uint8_t tid[TOKEN_ID_LEN];
	int given = (c->nargs > 0) + !!c->image + !!c->partner;

	if (given != 1 || c->nargs > 1)
		return cli_usage(c, "usage: imgvault revoke TOKEN-ID | --image PATH | --partner "
				 "NAME (one of them)");
	/* The argument is never echoed: it might be a whole token pasted by mistake. */
	if (c->nargs && strchr(c->args[0], '.'))
		return cli_usage(c, "revoke takes a link's token id, not the link or its token: "
				 "imgvault shares lists the ids");
	if (c->nargs && token_unhex(c->args[0], tid, sizeof(tid)) < 0)
		return cli_usage(c, "a token id is %d hex digits, as imgvault share and imgvault "
				 "shares print them", 2 * TOKEN_ID_LEN);
	return run_remote(c, remote_revoke, tid);
}

/* ---- keys ---- */

static void print_key_entry(struct cli *c, const struct proto_msg *m)
{
	const struct proto_field *kid = proto_get(m, T_KID);
	char hex[2 * TOKEN_KID_LEN + 1] = "?", owner[64], created[32], retired[32];
	uint64_t uid = get_u64(m, T_OWNER), ret_at = get_u64(m, T_RETIRED);
	bool current = get_u64(m, T_CURRENT) != 0, vault = uid == UINT64_MAX;

	if (kid && kid->len == TOKEN_KID_LEN)
		token_hex(kid->val, TOKEN_KID_LEN, hex);
	if (c->json) {
		printf("{\"kid\":\"%s\",\"owner\":", hex);
		if (vault)
			printf("null");
		else
			printf("%" PRIu64, uid);
		printf(",\"created\":%" PRIu64 ",\"retired\":%" PRIu64 ",\"current\":%s}\n",
		       get_u64(m, T_CREATED), ret_at, current ? "true" : "false");
		return;
	}
	if (vault)
		snprintf(owner, sizeof(owner), "(the vault)");
	else
		cli_user_name((uid_t)uid, owner, sizeof(owner));
	iso_time((int64_t)get_u64(m, T_CREATED), created);
	iso_time((int64_t)ret_at, retired);
	printf("%s  %-12s  %s  %s%s\n", hex, owner, created,
	       current ? "current" : ret_at ? "retired " : "live", ret_at ? retired : "");
}

static int keys_list(struct cli *c, struct remote *r, struct iverr *e)
{
	if (!c->json)
		printf("%-16s  %-12s  %-20s  %s\n", "KEY ID", "OWNER", "CREATED", "STATE");
	return read_listing(c, r, print_key_entry, e);
}

/* Writes @len bytes to @path atomically, mode 0644 (the gateway reads it). */
static int write_public_file(const char *path, const uint8_t *data, size_t len,
			     struct iverr *e)
{
	char tmp[PATH_MAX];
	int fd, ret = 0;

	if (snprintf(tmp, sizeof(tmp), "%s.XXXXXX", path) >= (int)sizeof(tmp))
		return iverr_set(e, ENAMETOOLONG, "%s: the path is too long", path);
	fd = mkstemp(tmp);
	if (fd < 0)
		return iverr_set(e, errno, "cannot write %s: %s", path, strerror(errno));
	if (fchmod(fd, 0644) < 0 || write(fd, data, len) != (ssize_t)len || fsync(fd) < 0)
		ret = iverr_set(e, errno ? errno : EIO, "cannot write %s: %s", tmp,
				strerror(errno ? errno : EIO));
	if (close(fd) < 0 && ret == 0)
		ret = iverr_set(e, errno, "cannot write %s: %s", tmp, strerror(errno));
	if (ret == 0 && rename(tmp, path) < 0)
		ret = iverr_set(e, errno, "cannot write %s: %s", path, strerror(errno));
	if (ret < 0)
		unlink(tmp);
	return ret;
}

static int keys_export(struct cli *c, struct remote *r, struct iverr *e)
{
	const struct proto_field *d;
	int ret;

	if ((ret = request(r, e)) < 0)
		return ret;
	if (!(d = proto_get(&r->m, T_DATA)))
		return iverr_set(e, EPROTO, "imgvaultd sent no keyring");
	if (c->nargs < 2) {
		if (fwrite(d->val, 1, d->len, stdout) != d->len || fflush(stdout) != 0)
			return iverr_set(e, EIO, "cannot write the keyring out");
		return 0;
	}
	if ((ret = write_public_file(c->args[1], d->val, d->len, e)) < 0)
		return ret;
	if (!c->quiet && !c->json)
		printf("wrote the public signing keys to %s\n", c->args[1]);
	return 0;
}

static int remote_keys(struct cli *c, struct remote *r, const void *arg, struct iverr *e)
{
	const char *op = arg;
	char kid[2 * TOKEN_KID_LEN + 1];
	int ret;

	proto_begin(&r->out, P_KEYS);
	proto_put_str(&r->out, T_OP, op);
	if (!strcmp(op, "retire"))
		proto_put_str(&r->out, T_KID, c->args[1]);
	if (!strcmp(op, "list"))
		return keys_list(c, r, e);
	if (!strcmp(op, "export"))
		return keys_export(c, r, e);
	if ((ret = request(r, e)) < 0)
		return ret;
	if (!strcmp(op, "rotate")) {
		if (proto_get_str(&r->m, T_KID, kid, sizeof(kid)) < 0)
			return iverr_set(e, EPROTO, "imgvaultd did not name the new key");
		if (c->json)
			printf("{\"kid\":\"%s\"}\n", kid);
		else if (!c->quiet)
			printf("new signing key %s: new links are signed with it; links signed "
			       "with older keys work until those are retired\n", kid);
	} else if (!c->quiet && !c->json) {
		printf("retired key %s: links signed with it no longer work\n", c->args[1]);
	}
	return 0;
}

int cmd_keys(struct cli *c)
{
	const char *op = c->nargs ? c->args[0] : "list";
	uint8_t kid[TOKEN_KID_LEN];
	int want = !strcmp(op, "retire") ? 2 : !strcmp(op, "export") ? -1 : 1;

	if (strcmp(op, "list") && strcmp(op, "rotate") && strcmp(op, "retire") &&
	    strcmp(op, "export"))
		return cli_usage(c, "keys takes list, rotate, retire KID or export [FILE], not "
				 "'%s'", op);
	if ((want > 0 && c->nargs > want) || (want == 2 && c->nargs != 2) ||
	    (want < 0 && c->nargs > 2))
		return cli_usage(c, "usage: imgvault keys [list] | keys rotate | keys retire KID "
				 "| keys export [FILE]");
	if (want == 2 && token_unhex(c->args[1], kid, sizeof(kid)) < 0)
		return cli_usage(c, "a key id is %d hex digits, as imgvault keys lists them, not "
				 "'%s'", 2 * TOKEN_KID_LEN, c->args[1]);
	return run_remote(c, remote_keys, op);
}

/* ---- partner ---- */

struct partner_args {
	const char *op;
	char cidrs[1024];            /* the --cidr values, comma-joined */
	int64_t ttl, max_ttl;
};

static void print_partner_entry(struct cli *c, const struct proto_msg *m)
{
	char name[128], cidrs[1024], ttl[32], max[32], created[32];
	bool disabled = get_u64(m, T_DISABLED) != 0;

	get_str(m, T_PARTNER, name, sizeof(name));
	get_str(m, T_CIDRS, cidrs, sizeof(cidrs));
	share_format_duration((int64_t)get_u64(m, T_TTL), ttl, sizeof(ttl));
	share_format_duration((int64_t)get_u64(m, T_MAX_TTL), max, sizeof(max));
	iso_time((int64_t)get_u64(m, T_CREATED), created);
	if (c->json) {
		printf("{\"name\":");
		cli_json_string(stdout, name, strlen(name));
		printf(",\"cidrs\":[");
		for (char *p = cidrs, *save = NULL, *tok; (tok = strtok_r(p, ",", &save)); p = NULL)
			printf("%s\"%s\"", p ? "" : ",", tok);
		printf("],\"ttl\":%" PRIu64 ",\"max_ttl\":%" PRIu64 ",\"disabled\":%s,"
		       "\"created\":%" PRIu64 "}\n", get_u64(m, T_TTL), get_u64(m, T_MAX_TTL),
		       disabled ? "true" : "false", get_u64(m, T_CREATED));
		return;
	}
	printf("%-16s  %-8s  %-7s  %-7s  %-20s  %s\n", name, disabled ? "disabled" : "active",
	       ttl, max, created, cidrs[0] ? cidrs : "(anywhere)");
}

static int remote_partner(struct cli *c, struct remote *r, const void *arg, struct iverr *e)
{
	const struct partner_args *a = arg;
	int ret;

	proto_begin(&r->out, P_PARTNER);
	proto_put_str(&r->out, T_OP, a->op);
	if (!strcmp(a->op, "list")) {
		if (!c->json)
			printf("%-16s  %-8s  %-7s  %-7s  %-20s  %s\n", "NAME", "STATE", "TTL",
			       "MAX-TTL", "CREATED", "NETWORKS");
		return read_listing(c, r, print_partner_entry, e);
	}
	proto_put_str(&r->out, T_PARTNER, c->args[1]);
	if (!strcmp(a->op, "add")) {
		proto_put_str(&r->out, T_CIDRS, a->cidrs);
		if (a->ttl)
			proto_put_u64(&r->out, T_TTL, (uint64_t)a->ttl);
		if (a->max_ttl)
			proto_put_u64(&r->out, T_MAX_TTL, (uint64_t)a->max_ttl);
	}
	if ((ret = request(r, e)) < 0)
		return ret;
	if (!c->quiet && !c->json)
		printf("%s partner %s\n", strcmp(a->op, "add") ? "disabled" : "added",
		       c->args[1]);
	return 0;
}

static int parse_partner_add(const struct cli *c, struct partner_args *a)
{
	size_t used = 0;

	for (int i = 0; i < c->ncidrs; i++) {
		int n = snprintf(a->cidrs + used, sizeof(a->cidrs) - used, "%s%s", used ? "," : "",
				 c->cidrs[i]);
		if (n < 0 || (size_t)n >= sizeof(a->cidrs) - used)
			return cli_usage(c, "the --cidr networks are too long together");
		used += (size_t)n;
	}
	if (c->ttl && (share_parse_duration(c->ttl, &a->ttl) < 0 || a->ttl <= 0))
		return cli_usage(c, "--ttl takes a lifetime such as 1h, 48h or 7d, not '%s'",
				 c->ttl);
	if (c->max_ttl && (share_parse_duration(c->max_ttl, &a->max_ttl) < 0 || a->max_ttl <= 0))
		return cli_usage(c, "--max-ttl takes a lifetime such as 1h, 48h or 7d, not '%s'",
				 c->max_ttl);
	return EXIT_OK;
}

int cmd_partner(struct cli *c)
{
	struct partner_args a = { .op = c->nargs ? c->args[0] : "" };
	bool add = !strcmp(a.op, "add"), list = !strcmp(a.op, "list");
	int ret;

	if (!add && !list && strcmp(a.op, "disable"))
		return cli_usage(c, "usage: imgvault partner add NAME [--cidr CIDR]... [--ttl "
				 "48h] [--max-ttl 7d] | partner list | partner disable NAME");
	if (c->nargs != (list ? 1 : 2))
		return cli_usage(c, "usage: imgvault partner %s", list ? "list" : add ?
				 "add NAME [--cidr CIDR]... [--ttl 48h] [--max-ttl 7d]" :
				 "disable NAME");
	if (!add && (c->ncidrs || c->ttl || c->max_ttl))
		return cli_usage(c, "--cidr, --ttl and --max-ttl go with partner add");
	if (add && (ret = parse_partner_add(c, &a)) != EXIT_OK)
		return ret;
	return run_remote(c, remote_partner, &a);
}
