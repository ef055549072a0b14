/*
 * prompt — secrets from the terminal (no echo) or from a file, never argv.
 *
 * Every secret returned lives in sodium_malloc memory: release it with
 * prompt_secret_free, which wipes it.
 */
#ifndef IMGVAULT_PROMPT_H
#define IMGVAULT_PROMPT_H

#include <stddef.h>

#include "iverr.h"

struct secret {
	char *buf;      /* NUL-terminated */
	size_t len;
};

/*
 * Reads a secret: the first line of @file if it is not NULL, otherwise
 * from /dev/tty after printing @question, with echo off.  With @confirm
 * (new passphrases) the terminal asks twice and the answers must match,
 * and a passphrase shorter than @min_len is refused.  The caller owns
 * *out (prompt_secret_free).
 */
int prompt_secret(const char *file, const char *question, int confirm, size_t min_len,
		  struct secret *out, struct iverr *e);
void prompt_secret_free(struct secret *s);

/* Asks a yes/no question on /dev/tty; 0 for no or no terminal, 1 for yes. */
int prompt_yes(const char *question);

#endif
