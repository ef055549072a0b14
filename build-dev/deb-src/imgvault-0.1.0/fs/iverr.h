/*
 * iverr — one error, said once, in words a user can act on.
 *
 * Engine functions return 0 or -errno (so results map straight onto FUSE
 * replies) and, when given a struct iverr, also leave a message there that
 * names the failing object and says what to do:
 *
 *     cannot open blob 3fa1…: permission denied; check the store's owner
 *
 * Messages never contain keys, passphrases or tokens.
 */
#ifndef IMGVAULT_IVERR_H
#define IMGVAULT_IVERR_H

#include <errno.h>

/* Errno values the engine gives a specific meaning to. */
#define IV_EAUTH    EKEYREJECTED  /* wrong passphrase, key or recovery code */
#define IV_EBUSY    EBUSY         /* another process owns the store */
#define IV_EDAMAGE  EBADMSG       /* authentication of stored data failed */
#define IV_ENOSTORE EMEDIUMTYPE   /* the directory is not an imgvault store */
#define IV_EVERSION EPROTONOSUPPORT /* store written by a newer imgvault */
#define IV_EREJECT  EINVAL        /* content refused: not an allowed image */

struct iverr {
	int code;          /* positive errno, 0 if none */
	char msg[512];
};

/*
 * Records the error (printf-style) if @e is not NULL and returns -@code.
 * A second call does not overwrite the first: the first failure is the
 * most specific one.
 */
int iverr_set(struct iverr *e, int code, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

/* Like iverr_set, but overwrites: for adding context around a lower error. */
int iverr_reset(struct iverr *e, int code, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

/* Clears @e for reuse. */
void iverr_clear(struct iverr *e);

#endif
