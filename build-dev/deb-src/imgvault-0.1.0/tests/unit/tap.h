/*
 * tap — a tiny header-only Test Anything Protocol helper for the C unit
 * tests, read by prove(1).
 *
 *     plan(n);                       optional: announce n tests up front
 *     ok(cond, "name %d", i);        one test; returns cond (0 or 1)
 *     is_int(got, want, "name");     integer equality, shows both on failure
 *     is_mem(got, want, n, "name");  byte equality, shows the first difference
 *     is_str(got, want, "name");     string equality
 *     diag("note %s", s);            a "# " comment on stderr
 *     note("note %s", s);            a "# " comment on stdout
 *     return done_testing();         prints the plan if none was given and
 *                                    returns the process exit code
 *
 * The exit code is 0 when every test passed and the count matches the plan,
 * otherwise the number of failures (at most 254), or 255 for a plan mismatch
 * with no failure.  The only state is the counter below, one per test
 * program (the header is included by exactly one translation unit).
 */
#ifndef IMGVAULT_TAP_H
#define IMGVAULT_TAP_H

#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static struct {
	int planned;    /* -1: no plan yet */
	int run;
	int failed;
} tap_state = { -1, 0, 0 };

#define TAP_PRINTF(a, b) __attribute__((format(printf, a, b)))

static inline void tap_vcomment(FILE *f, const char *fmt, va_list ap)
{
	char buf[2048];
	const char *p = buf;

	vsnprintf(buf, sizeof(buf), fmt, ap);
	/* One "# " per line so that multi-line messages stay comments. */
	while (*p) {
		const char *nl = strchr(p, '\n');
		int n = nl ? (int)(nl - p) : (int)strlen(p);
		fprintf(f, "# %.*s\n", n, p);
		p += n + (nl ? 1 : 0);
	}
	fflush(f);
}

static inline TAP_PRINTF(1, 2) void diag(const char *fmt, ...)
{
	va_list ap;

	fflush(stdout);
	va_start(ap, fmt);
	tap_vcomment(stderr, fmt, ap);
	va_end(ap);
}

static inline TAP_PRINTF(1, 2) void note(const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	tap_vcomment(stdout, fmt, ap);
	va_end(ap);
}

static inline void plan(int n)
{
	tap_state.planned = n;
	printf("1..%d\n", n);
	fflush(stdout);
}

static inline int tap_vok(int pass, const char *file, int line, const char *fmt,
			  va_list ap)
{
	char name[1024];

	vsnprintf(name, sizeof(name), fmt, ap);
	tap_state.run++;
	if (!pass)
		tap_state.failed++;
	printf("%sok %d - %s\n", pass ? "" : "not ", tap_state.run, name);
	fflush(stdout);
	if (!pass)
		diag("  Failed test '%s'\n  at %s line %d.", name, file, line);
	return pass;
}

static inline TAP_PRINTF(4, 5) int tap_ok(int pass, const char *file, int line,
					  const char *fmt, ...)
{
	va_list ap;
	int r;

	va_start(ap, fmt);
	r = tap_vok(pass, file, line, fmt, ap);
	va_end(ap);
	return r;
}

static inline TAP_PRINTF(5, 6) int tap_is_int(long long got, long long want,
					      const char *file, int line,
					      const char *fmt, ...)
{
	va_list ap;
	int r;

	va_start(ap, fmt);
	r = tap_vok(got == want, file, line, fmt, ap);
	va_end(ap);
	if (!r)
		diag("         got: %lld\n    expected: %lld", got, want);
	return r;
}

static inline TAP_PRINTF(6, 7) int tap_is_mem(const void *got, const void *want, size_t n,
					      const char *file, int line,
					      const char *fmt, ...)
{
	const unsigned char *g = got, *w = want;
	size_t i = 0;
	va_list ap;
	int r;

	if (g && w)
		while (i < n && g[i] == w[i])
			i++;
	va_start(ap, fmt);
	r = tap_vok(g && w && i == n, file, line, fmt, ap);
	va_end(ap);
	if (!r && g && w)
		diag("    first difference at byte %zu of %zu: got 0x%02x, expected 0x%02x",
		     i, n, g[i], w[i]);
	else if (!r)
		diag("    NULL buffer");
	return r;
}

static inline TAP_PRINTF(5, 6) int tap_is_str(const char *got, const char *want,
					      const char *file, int line,
					      const char *fmt, ...)
{
	va_list ap;
	int r;

	va_start(ap, fmt);
	r = tap_vok(got && want && strcmp(got, want) == 0, file, line, fmt, ap);
	va_end(ap);
	if (!r)
		diag("         got: '%s'\n    expected: '%s'", got ? got : "(null)",
		     want ? want : "(null)");
	return r;
}

#define ok(cond, ...) tap_ok(!!(cond), __FILE__, __LINE__, __VA_ARGS__)
#define is_int(got, want, ...) \
	tap_is_int((long long)(got), (long long)(want), __FILE__, __LINE__, __VA_ARGS__)
#define is_mem(got, want, n, ...) tap_is_mem((got), (want), (n), __FILE__, __LINE__, __VA_ARGS__)
#define is_str(got, want, ...) tap_is_str((got), (want), __FILE__, __LINE__, __VA_ARGS__)

/* Stops the whole test program: the rest cannot run (setup failed). */
#define BAIL_OUT(...) do {                                              \
		printf("Bail out! ");                                   \
		printf(__VA_ARGS__);                                    \
		printf("\n");                                           \
		fflush(stdout);                                         \
		exit(255);                                              \
	} while (0)

static inline int done_testing(void)
{
	if (tap_state.planned < 0) {
		printf("1..%d\n", tap_state.run);
	} else if (tap_state.planned != tap_state.run) {
		diag("Looks like you planned %d tests but ran %d.", tap_state.planned,
		     tap_state.run);
	}
	fflush(stdout);
	if (tap_state.failed) {
		diag("Looks like you failed %d test%s of %d.", tap_state.failed,
		     tap_state.failed == 1 ? "" : "s", tap_state.run);
		return tap_state.failed > 254 ? 254 : tap_state.failed;
	}
	if (tap_state.planned >= 0 && tap_state.planned != tap_state.run)
		return 255;
	return 0;
}

#endif
