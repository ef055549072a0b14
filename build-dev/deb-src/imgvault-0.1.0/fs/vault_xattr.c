/* Extended attributes of images and their expiry (vault.h, "attributes"). */
#define _GNU_SOURCE   /* strptime, timegm */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <sodium.h>

#include "bytes.h"
#include "vault_i.h"

#define TEXT_MAX 4096   /* tags or comment, plaintext */

static const char *const xattr_names[] = {
	"user.xdg.tags", "user.xdg.comment", "user.imgvault.expires", "user.imgvault.id",
	"user.imgvault.sha256", "user.imgvault.mime", "user.imgvault.width",
	"user.imgvault.height",
};
#define N_XATTRS (sizeof(xattr_names) / sizeof(xattr_names[0]))

/* 2026-12-01T00:00:00Z, 2026-12-01, or seconds since the epoch. */
static int parse_time(const char *s, int64_t *out)
{
	struct tm tm = { 0 };
	char *end;
	long long n;

	n = strtoll(s, &end, 10);
	if (*s && !*end) {
		*out = n;
		return n >= 0 ? 0 : -1;
	}
	end = strptime(s, "%Y-%m-%dT%H:%M:%S", &tm);
	if (!end)
		end = strptime(s, "%Y-%m-%d", &tm);
	if (!end || (*end && strcmp(end, "Z") && strcmp(end, "+00:00")))
		return -1;
	*out = (int64_t)timegm(&tm);
	return 0;
}

static int image_row(struct vault_session *s, int64_t id, struct catalog_image *ci,
		     struct iverr *e)
{
	int ret = catalog_image_get(s->v->cat, id, ci, e);

	if (ret == 0 && ci->uid != s->uid)
		ret = -ENOENT;
	return ret == -ENOENT ? iverr_set(e, ENOENT, "no such image") : ret;
}

int vault_xattr_get(struct vault_session *s, int64_t image_id, const char *name, char *buf,
		    size_t cap, size_t *len, struct iverr *e)
{
	struct catalog_image ci;
	struct vault_image im;
	char tmp[TEXT_MAX + 1];
	uint8_t sealed[VAULT_TEXT_ENC_MAX];
	size_t n = 0, slen;
	int64_t when;
	int ret;

	if ((ret = image_row(s, image_id, &ci, e)) < 0)
		return ret;
	if (!strcmp(name, "user.xdg.tags") || !strcmp(name, "user.xdg.comment")) {
		bool tags = name[9] == 't';
		ret = catalog_image_text_get(s->v->cat, image_id, tags ? CATALOG_TAGS : CATALOG_COMMENT,
					     sealed, sizeof(sealed), &slen, e);
		if (ret < 0)
			return ret;
		if (vault_open_text(s->keys, tags ? "tags" : "comment", ci.pid, sealed, slen, tmp,
				    TEXT_MAX, &n) < 0)
			return iverr_set(e, IV_EDAMAGE, "the attribute fails authentication");
	} else if (!strcmp(name, "user.imgvault.expires")) {
		if ((ret = catalog_image_expires_get(s->v->cat, image_id, &when, e)) < 0)
			return ret;
		if (!when)
			return -ENODATA;
		time_t t = (time_t)when;
		struct tm tm;
		n = strftime(tmp, sizeof(tmp), "%Y-%m-%dT%H:%M:%SZ", gmtime_r(&t, &tm));
	} else if (!strcmp(name, "user.imgvault.id")) {
		hex_encode(ci.pid, 16, tmp);
		n = 32;
	} else if (!strncmp(name, "user.imgvault.", 14)) {
		if ((ret = vault_image_describe(s, &ci, &im, e)) < 0)
			return ret;
		if (!ci.current_version)
			return -ENODATA;   /* a placeholder has no content yet */
		if (!strcmp(name + 14, "sha256")) {
			hex_encode(im.sha256, 32, tmp);
			n = 64;
		} else if (!strcmp(name + 14, "mime")) {
			n = (size_t)snprintf(tmp, sizeof(tmp), "%s", im.mime);
		} else if (!strcmp(name + 14, "width")) {
			n = (size_t)snprintf(tmp, sizeof(tmp), "%u", im.width);
		} else if (!strcmp(name + 14, "height")) {
			n = (size_t)snprintf(tmp, sizeof(tmp), "%u", im.height);
		} else {
			return -ENODATA;
		}
	} else {
		return -ENODATA;
	}
	*len = n;
	if (cap) {
		if (n > cap) {
			sodium_memzero(tmp, sizeof(tmp));
			return -ERANGE;
		}
		memcpy(buf, tmp, n);
	}
	sodium_memzero(tmp, sizeof(tmp));
	return 0;
}

int vault_xattr_set(struct vault_session *s, int64_t image_id, const char *name,
		    const char *value, size_t len, struct iverr *e)
{
	struct catalog_image ci;
	uint8_t sealed[VAULT_TEXT_ENC_MAX];
	char when_text[64];
	size_t slen = 0;
	int64_t when;
	int ret;

	if ((ret = image_row(s, image_id, &ci, e)) < 0)
		return ret;
	if (!strcmp(name, "user.xdg.tags") || !strcmp(name, "user.xdg.comment")) {
		bool tags = name[9] == 't';
		if (value && len > TEXT_MAX)
			return iverr_set(e, E2BIG, "%s is limited to %d bytes", name, TEXT_MAX);
		if (value)
			vault_seal_text(s->keys, tags ? "tags" : "comment", ci.pid, value, len,
					sealed, &slen);
		return catalog_image_text_set(s->v->cat, image_id, tags ? CATALOG_TAGS
					      : CATALOG_COMMENT, value ? sealed : NULL, slen, e);
	}
	if (!strcmp(name, "user.imgvault.expires")) {
		when = 0;
		if (value) {
			if (len == 0 || len >= sizeof(when_text))
				return iverr_set(e, EINVAL, "user.imgvault.expires takes a time like "
						 "2026-12-01T00:00:00Z");
			memcpy(when_text, value, len);
			when_text[len] = '\0';
			if (parse_time(when_text, &when) < 0)
				return iverr_set(e, EINVAL, "user.imgvault.expires takes a time like "
						 "2026-12-01T00:00:00Z, not '%s'", when_text);
		}
		return catalog_image_expires_set(s->v->cat, image_id, when, e);
	}
	for (size_t i = 0; i < N_XATTRS; i++)
		if (!strcmp(name, xattr_names[i]))
			return iverr_set(e, EPERM, "%s is read-only", name);
	return iverr_set(e, ENOTSUP, "only user.xdg.tags, user.xdg.comment and "
			 "user.imgvault.expires can be set");
}

int vault_xattr_list(struct vault_session *s, int64_t image_id, char *buf, size_t cap,
		     size_t *len, struct iverr *e)
{
	size_t n = 0, vlen;
	int ret;

	for (size_t i = 0; i < N_XATTRS; i++) {
		ret = vault_xattr_get(s, image_id, xattr_names[i], NULL, 0, &vlen, e);
		if (ret == -ENODATA)
			continue;
		if (ret < 0)
			return ret;
		size_t k = strlen(xattr_names[i]) + 1;
		if (cap && n + k <= cap)
			memcpy(buf + n, xattr_names[i], k);
		else if (cap)
			return -ERANGE;
		n += k;
	}
	*len = n;
	return 0;
}

int vault_expire(struct vault_session *s, int64_t now, size_t *removed, struct iverr *e)
{
	int64_t ids[64];
	size_t n;
	int ret;

	*removed = 0;
	do {
		if ((ret = catalog_expired(s->v->cat, s->uid, now, ids, 64, &n, e)) < 0)
			return ret;
		for (size_t i = 0; i < n; i++) {
			if ((ret = vault_image_remove(s, ids[i], e)) < 0)
				return ret;
			(*removed)++;
		}
	} while (n == 64);
	return 0;
}
