#include "cli.h"

#include <limits.h>
#include <pwd.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "prompt.h"

#define DEFAULT_SYSTEM_STORE "/var/lib/imgvault"
#define DEFAULT_SERVER_KEY   "/etc/imgvault/server.key"

int cli_exit_code(int err)
{
	switch (err < 0 ? -err : err) {
	case 0: return EXIT_OK;
	case IV_EAUTH: return EXIT_AUTH;
	case IV_EBUSY: return EXIT_BUSY;
	case IV_EDAMAGE: return EXIT_DAMAGE;
	default: return EXIT_FAIL;
	}
}

int cli_fail(const struct cli *c, int err, const char *fmt, ...)
{
	va_list ap;

	fprintf(stderr, "%s: ", c->prog);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
	return cli_exit_code(err);
}

int cli_usage(const struct cli *c, const char *fmt, ...)
{
	va_list ap;

	fprintf(stderr, "%s: ", c->prog);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fprintf(stderr, "\n");
	return EXIT_USAGE;
}

static const char *default_store(char *buf, size_t cap)
{
	const char *env = getenv("IMGVAULT_STORE"), *home, *xdg;

	if (env && *env)
		return env;
	if (geteuid() == 0)
		return DEFAULT_SYSTEM_STORE;
	xdg = getenv("XDG_DATA_HOME");
	if (xdg && *xdg) {
		snprintf(buf, cap, "%s/imgvault", xdg);
		return buf;
	}
	home = getenv("HOME");
	snprintf(buf, cap, "%s/.local/share/imgvault", home ? home : ".");
	return buf;
}

const char *cli_default_store(struct cli *c)
{
	return default_store(c->store_buf, sizeof(c->store_buf));
}

int cli_open_store(struct cli *c, struct vault **out, struct iverr *e)
{
	char purpose[64];

	if (!c->store)
		c->store = cli_default_store(c);
	snprintf(purpose, sizeof(purpose), "imgvault %s", c->command);
	return vault_open(c->store, purpose, out, e);
}

int cli_lookup_user(const char *name, uid_t *uid, struct iverr *e)
{
	struct passwd *pw = getpwnam(name);
	char *end;
	unsigned long n;

	if (pw) {
		*uid = pw->pw_uid;
		return 0;
	}
	n = strtoul(name, &end, 10);
	if (*name && !*end && n < UINT32_MAX) {
		*uid = (uid_t)n;
		return 0;
	}
	return iverr_set(e, ENOENT, "no Unix user '%s': create it first (useradd), or give "
			 "a numeric uid", name);
}

const char *cli_user_name(uid_t uid, char *buf, size_t cap)
{
	struct passwd *pw = getpwuid(uid);

	if (pw)
		snprintf(buf, cap, "%s", pw->pw_name);
	else
		snprintf(buf, cap, "%u", (unsigned)uid);
	return buf;
}

int cli_load_server_key(const struct cli *c, struct server_key **out, struct iverr *e)
{
	char cred[PATH_MAX];
	const char *path = c->server_key_path, *env;

	if (!path && (env = getenv("IMGVAULT_SERVER_KEY")) && *env)
		path = env;
	if (!path && (env = getenv("CREDENTIALS_DIRECTORY")) && *env) {
		snprintf(cred, sizeof(cred), "%s/server.key", env);
		if (access(cred, F_OK) == 0)
			path = cred;
	}
	if (!path)
		path = DEFAULT_SERVER_KEY;
	return keys_server_load(path, out, e);
}

int cli_kdf_cost(const struct cli *c, struct keys_kdf_cost *out, struct iverr *e)
{
	if (!c->kdf) {
		*out = keys_kdf_cost_default();
		return 0;
	}
	if (keys_kdf_cost_by_name(c->kdf, out) < 0)
		return iverr_set(e, EINVAL, "--kdf takes interactive, moderate or sensitive, "
				 "not '%s'", c->kdf);
	return 0;
}

int cli_session(struct cli *c, struct vault *v, struct vault_session **out, struct iverr *e)
{
	struct server_key *sk = NULL;
	struct secret pass = { 0 };
	char question[128], who[64];
	uid_t uid = getuid();
	int ret;

	if (c->user && (ret = cli_lookup_user(c->user, &uid, e)) < 0)
		return ret;
	if (c->user && uid != getuid() && geteuid() != 0)
		return iverr_set(e, EPERM, "only root may act on another user's vault");
	if (vault_is_system(v) && geteuid() == 0) {
		if (!c->user)
			return iverr_set(e, EINVAL, "this is a system store: say whose vault with "
					 "--user NAME");
		if ((ret = cli_load_server_key(c, &sk, e)) < 0)
			return ret;
		if ((ret = vault_check_server_key(v, sk, e)) == 0)
			ret = vault_unlock(v, (uint32_t)uid, KEY_SLOT_SERVER, sk->k, KEYS_KEY_LEN,
					   out, e);
		keys_server_free(sk);
		return ret;
	}
	snprintf(question, sizeof(question), "Passphrase for %s's vault: ",
		 cli_user_name(uid, who, sizeof(who)));
	if ((ret = prompt_secret(c->passphrase_file, question, 0, 0, &pass, e)) < 0)
		return ret;
	ret = vault_unlock(v, (uint32_t)uid, KEY_SLOT_PASSPHRASE, pass.buf, pass.len, out, e);
	prompt_secret_free(&pass);
	return ret;
}

/* The length of the valid UTF-8 sequence at @p (0 if it is not one: a
 * stray byte, an overlong form, a surrogate, past U+10FFFF), its code
 * point in *cp. */
static size_t utf8_sequence(const unsigned char *p, size_t left, uint32_t *cp)
{
	size_t n = p[0] >= 0xc2 && p[0] < 0xe0 ? 2 : p[0] >= 0xe0 && p[0] < 0xf0 ? 3
		 : p[0] >= 0xf0 && p[0] < 0xf5 ? 4 : 0;
	uint32_t v;

	if (!n || n > left)
		return 0;
	v = p[0] & (0x7f >> n);
	for (size_t k = 1; k < n; k++) {
		if ((p[k] & 0xc0) != 0x80)
			return 0;
		v = v << 6 | (p[k] & 0x3f);
	}
	if ((n == 3 && v < 0x800) || (n == 4 && (v < 0x10000 || v > 0x10ffff)) ||
	    (v >= 0xd800 && v <= 0xdfff))
		return 0;
	*cp = v;
	return n;
}

/* Code points a terminal acts on, or that reorder or break a line: the C1
 * controls (U+009B is CSI), line and paragraph separators, bidi controls. */
static bool unsafe_code_point(uint32_t cp)
{
	return (cp >= 0x80 && cp <= 0x9f) || cp == 0x2028 || cp == 0x2029 ||
	       (cp >= 0x200e && cp <= 0x200f) || (cp >= 0x202a && cp <= 0x202e) ||
	       (cp >= 0x2066 && cp <= 0x2069) || cp == 0x061c;
}

/* A valid sequence of @n bytes: as it is, or escaped when unsafe; -> @n. */
static size_t put_code_point(FILE *f, const unsigned char *p, size_t n, uint32_t cp)
{
	if (unsafe_code_point(cp))
		fprintf(f, "\\u%04x", (unsigned)cp);
	else
		fwrite(p, 1, n, f);
	return n;
}

void cli_print_name(FILE *f, const char *name, size_t len)
{
	const unsigned char *p = (const unsigned char *)name;

	for (size_t i = 0; i < len; i++) {
		unsigned char ch = p[i];
		uint32_t cp = 0;
		size_t n;

		if (ch == '\\')
			fputs("\\\\", f);
		else if (ch == '\n')
			fputs("\\n", f);
		else if (ch == '\t')
			fputs("\\t", f);
		else if (ch < 0x20 || ch == 0x7f)
			fprintf(f, "\\x%02x", ch);
		else if (ch < 0x80)
			fputc(ch, f);
		else if (!(n = utf8_sequence(p + i, len - i, &cp)))
			fprintf(f, "\\x%02x", ch);   /* not UTF-8: the byte, escaped */
		else
			i += put_code_point(f, p + i, n, cp) - 1;
	}
}

void cli_json_string(FILE *f, const char *s, size_t len)
{
	const unsigned char *p = (const unsigned char *)s;

	fputc('"', f);
	for (size_t i = 0; i < len; i++) {
		unsigned char ch = p[i];
		uint32_t cp = 0;
		size_t n;

		if (ch == '"' || ch == '\\')
			fprintf(f, "\\%c", ch);
		else if (ch == '\n')
			fputs("\\n", f);
		else if (ch < 0x20 || ch == 0x7f)
			fprintf(f, "\\u%04x", ch);
		else if (ch < 0x80)
			fputc(ch, f);
		else if (!(n = utf8_sequence(p + i, len - i, &cp)))
			fprintf(f, "\\udc%02x", ch);
		else
			i += put_code_point(f, p + i, n, cp) - 1;
	}
	fputc('"', f);
}

int cli_split_path(const char *arg, const char **album, size_t *album_len,
		   const char **name, size_t *name_len, struct iverr *e)
{
	const char *slash = strchr(arg, '/');

	if (!slash) {
		*album = VAULT_DEFAULT_ALBUM;
		*album_len = strlen(VAULT_DEFAULT_ALBUM);
		*name = arg;
	} else {
		*album = arg;
		*album_len = (size_t)(slash - arg);
		*name = slash + 1;
	}
	*name_len = strlen(*name);
	if (strchr(*name, '/'))
		return iverr_set(e, EINVAL, "'%s' is not ALBUM/NAME: names hold no '/'", arg);
	if (!*name_len || !*album_len)
		return iverr_set(e, EINVAL, "'%s' is not ALBUM/NAME", arg);
	return 0;
}
