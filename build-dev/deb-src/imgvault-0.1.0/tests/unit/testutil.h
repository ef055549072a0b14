/*
 * testutil — small file-system helpers shared by the unit tests: a private
 * temporary directory per test program, removed at the end, and whole-file
 * read/write/patch helpers for tampering with stored data.
 */
#ifndef IMGVAULT_TESTUTIL_H
#define IMGVAULT_TESTUTIL_H

#include <errno.h>
#include <fcntl.h>
#include <dirent.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* Creates a fresh directory under $TMPDIR (or /tmp); aborts on failure. */
static inline void tu_mkdtemp(char *out, size_t cap, const char *tag)
{
	const char *base = getenv("TMPDIR");

	snprintf(out, cap, "%s/imgvault-%s-XXXXXX", base && *base ? base : "/tmp", tag);
	if (!mkdtemp(out)) {
		fprintf(stderr, "cannot create a temporary directory %s: %s\n", out,
			strerror(errno));
		exit(255);
	}
}

/* rm -rf @path (does not follow symlinks); returns 0 or -1. */
static inline int tu_rm_rf(const char *path)
{
	struct stat st;
	struct dirent *de;
	DIR *d;
	int ret = 0;

	if (lstat(path, &st) < 0)
		return errno == ENOENT ? 0 : -1;
	if (!S_ISDIR(st.st_mode))
		return unlink(path);
	if (!(d = opendir(path)))
		return -1;
	while ((de = readdir(d))) {
		char sub[4096];

		if (!strcmp(de->d_name, ".") || !strcmp(de->d_name, ".."))
			continue;
		if (snprintf(sub, sizeof(sub), "%s/%s", path, de->d_name) >= (int)sizeof(sub) ||
		    tu_rm_rf(sub) < 0)
			ret = -1;
	}
	closedir(d);
	return rmdir(path) < 0 ? -1 : ret;
}

/* Reads a whole file into a malloc'd buffer; NULL on failure. */
static inline uint8_t *tu_read_file(const char *path, size_t *len)
{
	struct stat st;
	uint8_t *buf;
	ssize_t n;
	int fd = open(path, O_RDONLY | O_CLOEXEC);

	if (fd < 0)
		return NULL;
	if (fstat(fd, &st) < 0) {
		close(fd);
		return NULL;
	}
	buf = malloc((size_t)st.st_size + 1);
	n = buf ? pread(fd, buf, (size_t)st.st_size, 0) : -1;
	close(fd);
	if (n != (ssize_t)st.st_size) {
		free(buf);
		return NULL;
	}
	*len = (size_t)st.st_size;
	return buf;
}

/* Replaces a file's content (O_TRUNC, keeping the inode); 0 or -1. */
static inline int tu_write_file(const char *path, const void *buf, size_t len, mode_t mode)
{
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, mode);
	ssize_t n;

	if (fd < 0)
		return -1;
	n = len ? write(fd, buf, len) : 0;
	close(fd);
	return n == (ssize_t)len ? 0 : -1;
}

/* XORs byte @off of a file with @mask in place; 0 or -1. */
static inline int tu_flip_byte(const char *path, uint64_t off, uint8_t mask)
{
	uint8_t b;
	int ret = -1, fd = open(path, O_RDWR | O_CLOEXEC);

	if (fd < 0)
		return -1;
	if (pread(fd, &b, 1, (off_t)off) == 1) {
		b ^= mask;
		if (pwrite(fd, &b, 1, (off_t)off) == 1)
			ret = 0;
	}
	close(fd);
	return ret;
}

/* Size of a file, or -1. */
static inline long long tu_file_size(const char *path)
{
	struct stat st;

	return stat(path, &st) < 0 ? -1 : (long long)st.st_size;
}

#endif
