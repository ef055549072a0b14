#include "prompt.h"

#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <termios.h>
#include <unistd.h>

#include <sodium.h>

#define SECRET_MAX 1024

/* Reads one line from @fd into @buf (room for SECRET_MAX), without the newline. */
static ssize_t read_line(int fd, char *buf)
{
	size_t n = 0;
	char c;

	while (n < SECRET_MAX - 1) {
		ssize_t r = read(fd, &c, 1);
		if (r < 0)
			return -1;
		if (r == 0 || c == '\n')
			break;
		buf[n++] = c;
	}
	if (n && buf[n - 1] == '\r')
		n--;
	buf[n] = '\0';
	return (ssize_t)n;
}

static int read_tty(int tty, const char *question, char *buf, struct iverr *e)
{
	struct termios old, quiet;
	ssize_t n;
	int echo_off;

	if (write(tty, question, strlen(question)) < 0)
		return iverr_set(e, errno, "cannot write to the terminal");
	echo_off = tcgetattr(tty, &old) == 0;
	if (echo_off) {
		quiet = old;
		quiet.c_lflag &= ~(tcflag_t)(ECHO | ECHONL);
		quiet.c_lflag |= ICANON;
		tcsetattr(tty, TCSAFLUSH, &quiet);
	}
	n = read_line(tty, buf);
	if (echo_off)
		tcsetattr(tty, TCSAFLUSH, &old);
	if (write(tty, "\n", 1) < 0)
		n = -1;
	if (n < 0)
		return iverr_set(e, EIO, "cannot read from the terminal");
	return 0;
}

int prompt_secret(const char *file, const char *question, int confirm, size_t min_len,
		  struct secret *out, struct iverr *e)
{
	char *again = NULL;
	int fd = -1, ret = 0;

	out->len = 0;
	out->buf = sodium_malloc(SECRET_MAX);
	if (!out->buf)
		return iverr_set(e, ENOMEM, "out of memory");
	out->buf[0] = '\0';
	if (file) {
		fd = open(file, O_RDONLY | O_CLOEXEC);
		if (fd < 0) {
			ret = iverr_set(e, errno, "cannot open %s: %s", file, strerror(errno));
			goto out;
		}
		if (read_line(fd, out->buf) < 0) {
			ret = iverr_set(e, errno, "cannot read %s: %s", file, strerror(errno));
			goto out;
		}
	} else {
		fd = open("/dev/tty", O_RDWR | O_CLOEXEC | O_NOCTTY);
		if (fd < 0) {
			ret = iverr_set(e, ENOTTY, "no terminal to ask for the secret: give it "
					"in a file with --passphrase-file (or the option named "
					"in --help)");
			goto out;
		}
		if ((ret = read_tty(fd, question, out->buf, e)) < 0)
			goto out;
		if (confirm) {
			again = sodium_malloc(SECRET_MAX);
			if (!again) {
				ret = iverr_set(e, ENOMEM, "out of memory");
				goto out;
			}
			if ((ret = read_tty(fd, "Again: ", again, e)) < 0)
				goto out;
			if (strcmp(again, out->buf) != 0) {
				ret = iverr_set(e, EINVAL, "the two passphrases differ; nothing "
						"was changed");
				goto out;
			}
		}
	}
	out->len = strlen(out->buf);
	if (out->len == 0)
		ret = iverr_set(e, EINVAL, "the passphrase is empty%s", file ? " (the file's "
				"first line is read)" : "");
	else if (confirm && out->len < min_len)
		ret = iverr_set(e, EINVAL, "a passphrase needs at least %zu characters", min_len);
out:
	if (fd >= 0)
		close(fd);
	sodium_free(again);
	if (ret < 0)
		prompt_secret_free(out);
	return ret;
}

void prompt_secret_free(struct secret *s)
{
	sodium_free(s->buf);   /* wipes */
	s->buf = NULL;
	s->len = 0;
}

int prompt_yes(const char *question)
{
	char answer[16] = { 0 };
	int fd = open("/dev/tty", O_RDWR | O_CLOEXEC | O_NOCTTY);
	ssize_t n;

	if (fd < 0)
		return 0;
	if (write(fd, question, strlen(question)) < 0) {
		close(fd);
		return 0;
	}
	n = read(fd, answer, sizeof(answer) - 1);
	close(fd);
	return n > 0 && (answer[0] == 'y' || answer[0] == 'Y');
}
