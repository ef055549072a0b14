/* imgvault mount and unmount: imgvaultd and fusermount3, found and run. */
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "cli.h"

/* imgvaultd next to this program, else on $PATH. */
static const char *find_daemon(char *buf, size_t cap)
{
	ssize_t n = readlink("/proc/self/exe", buf, cap - 16);
	char *slash;

	if (n > 0) {
		buf[n] = '\0';
		slash = strrchr(buf, '/');
		if (slash) {
			strcpy(slash + 1, "imgvaultd");
			if (access(buf, X_OK) == 0)
				return buf;
			/* installed: bin/imgvault and sbin/imgvaultd */
			snprintf(slash + 1, cap - (size_t)(slash + 1 - buf), "../sbin/imgvaultd");
			if (access(buf, X_OK) == 0)
				return buf;
		}
	}
	return "imgvaultd";
}

/* Runs @argv and waits: its exit status, or -1. */
static int run(char *const argv[])
{
	int status;
	pid_t pid = fork();

	if (pid < 0)
		return -1;
	if (pid == 0) {
		execvp(argv[0], argv);
		fprintf(stderr, "imgvault: cannot run %s: %s\n", argv[0], strerror(errno));
		_exit(127);
	}
	if (waitpid(pid, &status, 0) < 0)
		return -1;
	return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

int cmd_mount(struct cli *c)
{
	char daemon[PATH_MAX];
	char *argv[12];
	int n = 0, status;

	if (c->nargs != 1)
		return cli_usage(c, "usage: imgvault mount [--store STORE] MOUNTPOINT");
	if (!c->store)
		c->store = cli_default_store(c);
	argv[n++] = (char *)find_daemon(daemon, sizeof(daemon));
	if (c->passphrase_file) {
		argv[n++] = "--passphrase-file";
		argv[n++] = (char *)c->passphrase_file;
	}
	argv[n++] = (char *)c->store;
	argv[n++] = c->args[0];
	argv[n] = NULL;
	/* The daemon asks for the passphrase, mounts, then goes to the background. */
	status = run(argv);
	if (status != 0)
		return cli_fail(c, -EIO, "mount: imgvaultd could not mount %s on %s (see its "
				"message above)", c->store, c->args[0]);
	if (!c->quiet)
		printf("%s mounted on %s; unmount with: imgvault unmount %s\n", c->store,
		       c->args[0], c->args[0]);
	return EXIT_OK;
}

int cmd_unmount(struct cli *c)
{
	char *argv[] = { "fusermount3", "-u", NULL, NULL };

	if (c->nargs != 1)
		return cli_usage(c, "usage: imgvault unmount MOUNTPOINT");
	argv[2] = c->args[0];
	/* imgvaultd commits what open files hold before the unmount completes. */
	if (run(argv) != 0)
		return cli_fail(c, -EIO, "unmount: %s is not an imgvault mount, or files on it "
				"are still open (close them, or unmount with fusermount3 -u -z)",
				c->args[0]);
	return EXIT_OK;
}
