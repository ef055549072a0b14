#include "iverr.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

static void iverr_vformat(struct iverr *e, int code, const char *fmt, va_list ap)
{
	e->code = code;
	vsnprintf(e->msg, sizeof(e->msg), fmt, ap);
}

int iverr_set(struct iverr *e, int code, const char *fmt, ...)
{
	if (e && !e->code) {
		va_list ap;
		va_start(ap, fmt);
		iverr_vformat(e, code, fmt, ap);
		va_end(ap);
	}
	return -code;
}

int iverr_reset(struct iverr *e, int code, const char *fmt, ...)
{
	if (e) {
		va_list ap;
		va_start(ap, fmt);
		iverr_vformat(e, code, fmt, ap);
		va_end(ap);
	}
	return -code;
}

void iverr_clear(struct iverr *e)
{
	e->code = 0;
	e->msg[0] = '\0';
}
