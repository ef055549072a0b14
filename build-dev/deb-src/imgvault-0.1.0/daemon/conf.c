/*
 * conf — imgvault.conf, read and checked (conf.h, imgvault.conf(5)).
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cidr.h"
#include "conf.h"
#include "share.h"

#define LINE_MAX_LEN 4096
#define MAX_SETTINGS 256

enum conf_type {
	T_PATH,      /* an absolute path */
	T_NAME,      /* a user or group name (or number) */
	T_BOOL,
	T_COUNT,     /* a whole number in [min, max] */
	T_SECONDS,   /* a duration in [min, max] seconds: 90, 90s, 30m, 1h, 7d */
	T_ADDR,      /* ADDR:PORT, [IPV6]:PORT */
	T_URL,       /* http(s)://… */
	T_ORIGIN,    /* http(s)://host[:port], never '*' */
	T_CIDR,      /* an address or a network */
};

struct conf_key {
	const char *name;
	enum conf_type type;
	unsigned long min, max;
	bool list;   /* may repeat; a value may hold several, comma-separated */
};

static const struct conf_key imgvaultd_keys[] = {
	{ "store", T_PATH, 0, 0, false },
	{ "mountpoint", T_PATH, 0, 0, false },
	{ "server-key", T_PATH, 0, 0, false },
	{ "passphrase-file", T_PATH, 0, 0, false },
	{ "readers-group", T_NAME, 0, 0, false },
	{ "allow-root-reads", T_BOOL, 0, 0, false },
	{ "control", T_PATH, 0, 0, false },
	{ "gateway-user", T_NAME, 0, 0, false },
	{ "keyring", T_PATH, 0, 0, false },
	{ "control-timeout", T_SECONDS, 1, 3600, false },
	{ "log-json", T_BOOL, 0, 0, false },
	{ NULL, T_BOOL, 0, 0, false },
};

/* The ranges are the gateway's own (gateway.c, parse_options). */
static const struct conf_key gateway_keys[] = {
	{ "listen", T_ADDR, 0, 0, false },
	{ "control", T_PATH, 0, 0, false },
	{ "keys", T_PATH, 0, 0, false },
	{ "metrics", T_ADDR, 0, 0, false },
	{ "public-url", T_URL, 0, 0, false },
	{ "trusted-proxy", T_CIDR, 0, 0, true },
	{ "cors-origin", T_ORIGIN, 0, 0, true },
	{ "tls-cert", T_PATH, 0, 0, false },
	{ "tls-key", T_PATH, 0, 0, false },
	{ "threads", T_COUNT, 1, 64, false },
	{ "max-connections", T_COUNT, 1, 65536, false },
	{ "max-per-ip", T_COUNT, 1, 65536, false },
	{ "rate", T_COUNT, 1, 1000000, false },
	{ "burst", T_COUNT, 1, 1000000, false },
	{ "ban-after", T_COUNT, 1, 1000000, false },
	{ "ban-time", T_SECONDS, 1, 86400 * 30, false },
	{ "timeout", T_SECONDS, 1, 3600, false },
	{ "header-timeout", T_SECONDS, 1, 3600, false },
	{ "daemon-connections", T_COUNT, 1, 48, false },
	{ "log-json", T_BOOL, 0, 0, false },
	{ NULL, T_BOOL, 0, 0, false },
};

static const struct conf_key imgvault_keys[] = {
	{ "store", T_PATH, 0, 0, false },
	{ "server-key", T_PATH, 0, 0, false },
	{ "control", T_PATH, 0, 0, false },
	{ NULL, T_BOOL, 0, 0, false },
};

static const struct {
	const char *name;
	const struct conf_key *keys;
} sections[] = {
	[CONF_IMGVAULTD] = { "imgvaultd", imgvaultd_keys },
	[CONF_GATEWAY] = { "gateway", gateway_keys },
	[CONF_IMGVAULT] = { "imgvault", imgvault_keys },
};
#define N_SECTIONS (sizeof(sections) / sizeof(sections[0]))

/* What the reader is doing: the file, the line, the settings so far. */
struct reader {
	const char *path;
	unsigned line;
	int section;                  /* -1 before the first [section] */
	enum conf_section want;
	char *err;
	size_t errcap;
	char *args[MAX_SETTINGS];     /* "--key=value" of the wanted section */
	int nargs;
	unsigned seen[N_SECTIONS][32];   /* the line each key was set on */
};

static int fail(struct reader *r, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static int fail(struct reader *r, const char *fmt, ...)
{
	va_list ap;
	int n = snprintf(r->err, r->errcap, "%s:%u: ", r->path, r->line);

	va_start(ap, fmt);
	if (n >= 0 && (size_t)n < r->errcap)
		vsnprintf(r->err + n, r->errcap - (size_t)n, fmt, ap);
	va_end(ap);
	return -EINVAL;
}

static void known_keys(const struct conf_key *keys, char *out, size_t cap)
{
	size_t n = 0;

	out[0] = '\0';
	for (size_t i = 0; keys[i].name && n < cap; i++) {
		int w = snprintf(out + n, cap - n, "%s%s", i ? ", " : "", keys[i].name);
		if (w < 0)
			break;
		n += (size_t)w;
	}
}

static const char *expected(const struct conf_key *k, char *buf, size_t cap)
{
	switch (k->type) {
	case T_PATH: return "an absolute path";
	case T_NAME: return "a user or group name";
	case T_BOOL: return "yes or no (true/false, on/off, 1/0)";
	case T_COUNT:
		snprintf(buf, cap, "a whole number from %lu to %lu", k->min, k->max);
		return buf;
	case T_SECONDS: {
		char lo[32], hi[32];
		share_format_duration((int64_t)k->min, lo, sizeof(lo));
		share_format_duration((int64_t)k->max, hi, sizeof(hi));
		snprintf(buf, cap, "a duration from %s to %s (90s, 30m, 1h, 7d; a bare "
			 "number is seconds)", lo, hi);
		return buf;
	}
	case T_ADDR: return "ADDR:PORT (127.0.0.1:8080, [::1]:8080)";
	case T_URL: return "an http:// or https:// URL";
	case T_ORIGIN: return "an origin such as https://app.example (no '*')";
	case T_CIDR: return "an address or a CIDR network (192.0.2.0/24, 2001:db8::/32)";
	}
	return "?";
}

static bool parse_bool(const char *v, bool *out)
{
	static const char *const yes[] = { "yes", "true", "on", "1" };
	static const char *const no[] = { "no", "false", "off", "0" };

	for (size_t i = 0; i < 4; i++) {
		if (strcasecmp(v, yes[i]) == 0)
			return *out = true, true;
		if (strcasecmp(v, no[i]) == 0)
			return *out = false, true;
	}
	return false;
}

static bool valid_addr(const char *v)
{
	const char *colon = strrchr(v, ':');
	char host[64], *end;
	unsigned char buf[16];
	unsigned long port;

	if (!colon || colon == v || (size_t)(colon - v) >= sizeof(host))
		return false;
	port = strtoul(colon + 1, &end, 10);
	if (*end || !isdigit((unsigned char)colon[1]) || port == 0 || port > 65535)
		return false;
	memcpy(host, v, (size_t)(colon - v));
	host[colon - v] = '\0';
	if (host[0] == '[') {
		size_t n = strlen(host);
		if (n < 3 || host[n - 1] != ']')
			return false;
		host[n - 1] = '\0';
		return inet_pton(AF_INET6, host + 1, buf) == 1;
	}
	return inet_pton(AF_INET, host, buf) == 1;
}

static bool is_http_url(const char *v)
{
	return (strncmp(v, "http://", 7) == 0 && v[7]) || (strncmp(v, "https://", 8) == 0 && v[8]);
}

/* Checks one value; *canon is what the option gets ("" for a false flag). */
static bool check_value(const struct conf_key *k, const char *v, char *canon, size_t cap)
{
	bool b;
	int64_t secs;
	char *end;
	unsigned long n;
	struct cidr c;

	snprintf(canon, cap, "%s", v);
	switch (k->type) {
	case T_PATH: return v[0] == '/';
	case T_NAME: return v[0] && !strpbrk(v, " \t:/");
	case T_BOOL:
		if (!parse_bool(v, &b))
			return false;
		snprintf(canon, cap, "%s", b ? "yes" : "");
		return true;
	case T_COUNT:
		errno = 0;
		n = strtoul(v, &end, 10);
		return isdigit((unsigned char)v[0]) && !*end && !errno && n >= k->min && n <= k->max;
	case T_SECONDS:
		if (share_parse_duration(v, &secs) < 0 || secs < (int64_t)k->min ||
		    secs > (int64_t)k->max)
			return false;
		snprintf(canon, cap, "%" PRId64, secs);
		return true;
	case T_ADDR: return valid_addr(v);
	case T_URL: return is_http_url(v) && !strpbrk(v, " \t");
	case T_ORIGIN: return is_http_url(v) && !strpbrk(v, " \t*");
	case T_CIDR: return cidr_parse(v, &c) == 0;
	}
	return false;
}

static const struct conf_key *find_key(int section, const char *name, size_t *index)
{
	const struct conf_key *keys = sections[section].keys;

	for (size_t i = 0; keys[i].name; i++)
		if (strcmp(keys[i].name, name) == 0) {
			*index = i;
			return &keys[i];
		}
	return NULL;
}

static int add_arg(struct reader *r, const struct conf_key *k, const char *canon)
{
	char *a;

	if (k->type == T_BOOL && !*canon)
		return 0;             /* "no": the default, nothing to pass */
	if (r->nargs == MAX_SETTINGS)
		return fail(r, "more than %d settings", MAX_SETTINGS);
	if (k->type == T_BOOL ? asprintf(&a, "--%s", k->name) < 0 :
	    asprintf(&a, "--%s=%s", k->name, canon) < 0)
		return -ENOMEM;
	r->args[r->nargs++] = a;
	return 0;
}

static char *trim(char *s)
{
	char *e;

	while (isspace((unsigned char)*s))
		s++;
	e = s + strlen(s);
	while (e > s && isspace((unsigned char)e[-1]))
		*--e = '\0';
	return s;
}

/* One value of @k (a list's values one at a time). */
static int take_value(struct reader *r, const struct conf_key *k, char *v)
{
	char canon[1024], buf[128];

	if (strlen(v) >= sizeof(canon) - 1)
		return fail(r, "the value of '%s' is too long", k->name);
	if (!check_value(k, v, canon, sizeof(canon)))
		return fail(r, "bad value '%s' for %s: expected %s", v, k->name,
			    expected(k, buf, sizeof(buf)));
	if (r->section != (int)r->want)
		return 0;
	return add_arg(r, k, canon);
}

static int take_setting(struct reader *r, char *line)
{
	char *eq = strchr(line, '='), *key, *value, known[512];
	const struct conf_key *k;
	size_t idx = 0;
	int ret = 0;

	if (!eq)
		return fail(r, "expected 'key = value', a [section] or a # comment");
	*eq = '\0';
	key = trim(line);
	value = trim(eq + 1);
	if (r->section < 0)
		return fail(r, "'%s' outside a section: put it under [imgvaultd], [gateway] "
			    "or [imgvault]", key);
	if (!(k = find_key(r->section, key, &idx))) {
		known_keys(sections[r->section].keys, known, sizeof(known));
		return fail(r, "unknown key '%s' in [%s]; known: %s", key,
			    sections[r->section].name, known);
	}
	if (!k->list && r->seen[r->section][idx])
		return fail(r, "'%s' is set twice in [%s] (first on line %u); keep one",
			    key, sections[r->section].name, r->seen[r->section][idx]);
	r->seen[r->section][idx] = r->line;
	/* A quoted value keeps its spaces: "a b". */
	size_t n = strlen(value);
	if (n >= 2 && value[0] == '"' && value[n - 1] == '"') {
		value[n - 1] = '\0';
		value++;
	} else if (!*value) {
		char buf[128];
		return fail(r, "'%s' has no value: expected %s (or remove the line for the "
			    "default)", key, expected(k, buf, sizeof(buf)));
	}
	if (!k->list)
		return take_value(r, k, value);
	for (char *save = NULL, *tok = strtok_r(value, ", \t", &save); tok && ret == 0;
	     tok = strtok_r(NULL, ", \t", &save))
		ret = take_value(r, k, tok);
	return ret;
}

static int take_section(struct reader *r, char *line)
{
	char *end = strchr(line, ']');

	if (!end || trim(end + 1)[0])
		return fail(r, "a section is written [name], alone on its line");
	*end = '\0';
	char *name = trim(line + 1);
	for (size_t i = 0; i < N_SECTIONS; i++)
		if (strcmp(sections[i].name, name) == 0) {
			r->section = (int)i;
			return 0;
		}
	return fail(r, "unknown section [%s]; known: [imgvaultd], [gateway], [imgvault] "
		    "(store settings such as image limits live in the store: imgvault config)",
		    name);
}

/* Drops a comment: a line that starts with '#' or ';', or " #" after a value. */
static void strip_comment(char *line)
{
	char *s = trim(line);

	if (*s == '#' || *s == ';') {
		*line = '\0';
		return;
	}
	for (char *p = line + 1; *p; p++)
		if (*p == '#' && isspace((unsigned char)p[-1])) {
			*p = '\0';
			return;
		}
}

static int read_lines(struct reader *r, FILE *f)
{
	char buf[LINE_MAX_LEN + 2];
	int ret = 0;

	while (ret == 0 && fgets(buf, sizeof(buf), f)) {
		r->line++;
		if (!strchr(buf, '\n') && !feof(f))
			return fail(r, "line longer than %d characters", LINE_MAX_LEN);
		strip_comment(buf);
		char *s = trim(buf);
		if (!*s)
			continue;
		ret = *s == '[' ? take_section(r, s) : take_setting(r, s);
	}
	if (ret == 0 && ferror(f))
		ret = fail(r, "cannot read: %s", strerror(errno));
	return ret;
}

/* argv[0], the file's options, the rest of the command line, NULL. */
static int build_args(struct reader *r, int argc, char **argv, struct conf_args *out)
{
	int n = 1 + r->nargs + (argc > 0 ? argc - 1 : 0);
	char **v = calloc((size_t)n + 1, sizeof(*v));
	int i = 0;

	if (!v)
		return -ENOMEM;
	v[i++] = strdup(argc > 0 ? argv[0] : "imgvault");
	for (int j = 0; j < r->nargs; j++) {
		v[i++] = r->args[j];
		r->args[j] = NULL;
	}
	for (int j = 1; j < argc; j++)
		v[i++] = strdup(argv[j]);
	out->argv = v;
	out->argc = n;
	out->n_file = r->nargs;
	for (int j = 0; j < n; j++)
		if (!v[j]) {
			conf_args_release(out);
			return -ENOMEM;
		}
	return 0;
}

const char *conf_path(const char *given)
{
	return given ? given : CONF_DEFAULT_PATH;
}

int conf_load(const char *path, enum conf_section sec, int argc, char **argv,
	      struct conf_args *out, char *err, size_t errcap)
{
	struct reader *r = calloc(1, sizeof(*r));
	FILE *f = NULL;
	int ret = 0;

	*out = (struct conf_args){ 0 };
	if (!r)
		return -ENOMEM;
	*r = (struct reader){ .path = conf_path(path), .section = -1, .want = sec,
			      .err = err, .errcap = errcap };
	f = fopen(r->path, "re");
	if (!f && (!path && (errno == ENOENT || (errno == EACCES && geteuid() != 0))))
		goto out_build;        /* no default file: the built-in defaults */
	if (!f) {
		snprintf(err, errcap, "cannot read the settings file %s: %s%s", r->path,
			 strerror(errno), path ? " (check --config)" : "");
		ret = -EINVAL;
		goto out_free;
	}
	if ((ret = read_lines(r, f)) < 0)
		goto out_close;
out_build:
	ret = build_args(r, argc, argv, out);
out_close:
	if (f)
		fclose(f);
out_free:
	for (int i = 0; i < r->nargs; i++)
		free(r->args[i]);
	free(r);
	return ret;
}

void conf_args_release(struct conf_args *a)
{
	if (!a->argv)
		return;
	for (int i = 0; i < a->argc; i++)
		free(a->argv[i]);
	free(a->argv);
	*a = (struct conf_args){ 0 };
}

const char *conf_find_option(int argc, char **argv, const char *name, bool takes_value)
{
	size_t n = strlen(name);
	const char *found = NULL;

	for (int i = 1; i < argc; i++) {
		const char *a = argv[i];
		if (strcmp(a, "--") == 0)
			break;
		if (strncmp(a, "--", 2) != 0 || strncmp(a + 2, name, n) != 0)
			continue;
		if (!takes_value && a[2 + n] == '\0')
			found = "";
		else if (takes_value && a[2 + n] == '=')
			found = a + 3 + n;
		else if (takes_value && a[2 + n] == '\0' && i + 1 < argc)
			found = argv[++i];
	}
	return found;
}
