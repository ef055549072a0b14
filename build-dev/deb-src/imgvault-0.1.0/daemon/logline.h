/*
 * logline — one log line on stderr, the way journald keeps it: a syslog
 * priority prefix ("<6>imgvaultd: …"), or with --log-json a JSON object
 * {"priority":6,"program":"imgvaultd","message":"…"}.  The line is built
 * first and written with one write(2), so threads never interleave.
 * Callers never pass a key, a passphrase or a token.
 */
#ifndef IMGVAULT_LOGLINE_H
#define IMGVAULT_LOGLINE_H

#include <stdbool.h>

void log_line(const char *prog, int level, bool json, const char *msg);

#endif
