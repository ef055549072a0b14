/*
 * rundir — where a control socket may live, and who may be on the other end
 * of it (DESIGN §1 T2, docs/SECURITY.md "The control socket's directory").
 *
 * A socket in a directory someone else made or can write can be swapped for
 * theirs: the daemon refuses to listen in one, the command line refuses to
 * talk through one, and the command line sends nothing (no passphrase, no
 * image) until SO_PEERCRED says the daemon is the user itself or root.
 */
#ifndef IMGVAULT_RUNDIR_H
#define IMGVAULT_RUNDIR_H

#include <stddef.h>
#include <sys/types.h>

#include "iverr.h"

/* Makes (0700) or checks @uid's private runtime directory @dir: a
 * directory, not a symbolic link, owned by @uid, mode 0700. */
int rundir_private(const char *dir, uid_t uid, struct iverr *e);

/* Checks the directory that holds the socket @path before a connect: not a
 * symbolic link, owned by @uid or root, writable by nobody else (root's
 * sticky directories, /tmp, pass: the peer check guards what is in them). */
int rundir_check_socket(const char *path, uid_t uid, struct iverr *e);

/* Checks the peer of the connected socket @fd: the process that listens
 * must run as @uid or as root. */
int rundir_check_peer(int fd, const char *path, uid_t uid, struct iverr *e);

#endif
