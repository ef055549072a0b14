#include "logline.h"

#include <stdio.h>
#include <string.h>
#include <unistd.h>

void log_line(const char *prog, int level, bool json, const char *msg)
{
	char line[4096];
	size_t n;

	if (!json) {
		n = (size_t)snprintf(line, sizeof(line) - 1, "<%d>%s: %s", level, prog, msg);
	} else {
		n = (size_t)snprintf(line, sizeof(line), "{\"priority\":%d,\"program\":\"%s\","
				     "\"message\":\"", level, prog);
		for (const char *p = msg; *p && n < sizeof(line) - 16; p++) {
			if (*p == '"' || *p == '\\')
				n += (size_t)snprintf(line + n, sizeof(line) - n, "\\%c", *p);
			else if ((unsigned char)*p < 0x20)
				n += (size_t)snprintf(line + n, sizeof(line) - n, "\\u%04x", *p);
			else
				line[n++] = *p;
		}
		n += (size_t)snprintf(line + n, sizeof(line) - n, "\"}");
	}
	if (n > sizeof(line) - 2)
		n = sizeof(line) - 2;
	line[n++] = '\n';
	if (write(STDERR_FILENO, line, n) < 0)
		return;   /* nowhere left to say it */
}
