#define _GNU_SOURCE   /* struct ucred */
#include "rundir.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#define TAKEN "someone else may have made it to catch what you send (your passphrase, " \
	"your images)"

int rundir_private(const char *dir, uid_t uid, struct iverr *e)
{
	struct stat st;
	int ret = 0, fd;

	if (mkdir(dir, 0700) < 0 && errno != EEXIST)
		return iverr_set(e, errno, "cannot make the runtime directory %s: %s; give the "
				 "control socket's path with --control", dir, strerror(errno));
	fd = open(dir, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	if (fd < 0 && (errno == ELOOP || errno == ENOTDIR))
		return iverr_set(e, EPERM, "the runtime directory %s is not a directory (a "
				 "symbolic link?): " TAKEN "; remove it, or set XDG_RUNTIME_DIR",
				 dir);
	if (fd < 0)
		return iverr_set(e, errno, "cannot open the runtime directory %s: %s", dir,
				 strerror(errno));
	if (fstat(fd, &st) < 0)
		ret = iverr_set(e, errno, "cannot stat %s: %s", dir, strerror(errno));
	else if (st.st_uid != uid)
		ret = iverr_set(e, EPERM, "the runtime directory %s belongs to uid %u, not to "
				"you (uid %u): " TAKEN "; remove it, or set XDG_RUNTIME_DIR", dir,
				(unsigned)st.st_uid, (unsigned)uid);
	else if ((st.st_mode & 07777) != 0700)
		ret = iverr_set(e, EPERM, "the runtime directory %s has mode %04o, not 0700: "
				"others could swap the socket in it; chmod 0700 %s", dir,
				(unsigned)(st.st_mode & 07777), dir);
	close(fd);
	return ret;
}

int rundir_check_socket(const char *path, uid_t uid, struct iverr *e)
{
	char dir[4096];
	const char *slash = strrchr(path, '/');
	struct stat st;

	if (!slash)
		snprintf(dir, sizeof(dir), ".");
	else if (slash == path)
		snprintf(dir, sizeof(dir), "/");
	else
		snprintf(dir, sizeof(dir), "%.*s", (int)(slash - path), path);
	if (lstat(dir, &st) < 0)
		return iverr_set(e, errno, "cannot reach imgvaultd's directory %s: %s; is it "
				 "running?", dir, strerror(errno));
	if (S_ISLNK(st.st_mode))
		return iverr_set(e, EPERM, "imgvaultd's socket directory %s is a symbolic link: "
				 TAKEN "; nothing was sent; remove it and restart imgvaultd", dir);
	if (!S_ISDIR(st.st_mode))
		return iverr_set(e, ENOTDIR, "%s is not a directory", dir);
	if (st.st_uid != uid && st.st_uid != 0)
		return iverr_set(e, EPERM, "imgvaultd's socket directory %s belongs to uid %u, "
				 "not to you or root: " TAKEN "; nothing was sent; remove it and "
				 "restart imgvaultd", dir, (unsigned)st.st_uid);
	if ((st.st_mode & 022) && !(st.st_uid == 0 && (st.st_mode & S_ISVTX)))
		return iverr_set(e, EPERM, "imgvaultd's socket directory %s is writable by "
				 "others (mode %04o): the socket in it could be anyone's; nothing "
				 "was sent; chmod go-w %s", dir, (unsigned)(st.st_mode & 07777), dir);
	return 0;
}

int rundir_check_peer(int fd, const char *path, uid_t uid, struct iverr *e)
{
	struct ucred cred;
	socklen_t len = sizeof(cred);

	if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &len) < 0)
		return iverr_set(e, errno, "cannot tell who listens on %s: %s", path,
				 strerror(errno));
	if (cred.uid != uid && cred.uid != 0)
		return iverr_set(e, EPERM, "%s is served by uid %u, not by you or root: it is "
				 "not your imgvaultd (someone may be impersonating it); nothing "
				 "was sent", path, (unsigned)cred.uid);
	return 0;
}
