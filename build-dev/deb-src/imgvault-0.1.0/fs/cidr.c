#include "cidr.h"

#include <arpa/inet.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const uint8_t v4mapped[12] = { 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff };

int cidr_parse_addr(const char *s, struct cidr *out)
{
	memset(out, 0, sizeof(*out));
	if (inet_pton(AF_INET, s, out->addr) == 1) {
		out->family = AF_INET;
		out->bits = 32;
		return 0;
	}
	if (inet_pton(AF_INET6, s, out->addr) != 1)
		return -EINVAL;
	if (memcmp(out->addr, v4mapped, sizeof(v4mapped)) == 0) {
		memmove(out->addr, out->addr + 12, 4);
		memset(out->addr + 4, 0, 12);
		out->family = AF_INET;
		out->bits = 32;
		return 0;
	}
	out->family = AF_INET6;
	out->bits = 128;
	return 0;
}

/* Whether the first @bits of @a and @b agree. */
static bool prefix_equal(const uint8_t *a, const uint8_t *b, unsigned bits)
{
	unsigned whole = bits / 8, rest = bits % 8;

	if (memcmp(a, b, whole) != 0)
		return false;
	if (!rest)
		return true;
	uint8_t mask = (uint8_t)(0xff << (8 - rest));
	return (a[whole] & mask) == (b[whole] & mask);
}

int cidr_parse(const char *s, struct cidr *out)
{
	char addr[CIDR_STR_MAX];
	const char *slash = strchr(s, '/');
	size_t n = slash ? (size_t)(slash - s) : strlen(s);
	struct cidr net;

	if (n == 0 || n >= sizeof(addr))
		return -EINVAL;
	memcpy(addr, s, n);
	addr[n] = '\0';
	if (cidr_parse_addr(addr, out) < 0)
		return -EINVAL;
	if (!slash)
		return 0;
	char *end;
	errno = 0;
	unsigned long bits = strtoul(slash + 1, &end, 10);
	unsigned max = out->family == AF_INET ? 32 : 128;
	/* A mapped IPv6 prefix counts its bits after the 96 mapping ones. */
	if (out->family == AF_INET && strchr(addr, ':')) {
		if (bits < 96)
			return -EINVAL;
		bits -= 96;
	}
	if (errno || end == slash + 1 || *end || bits > max || !(slash[1] >= '0' && slash[1] <= '9'))
		return -EINVAL;
	out->bits = (unsigned)bits;
	/* Host bits must be zero. */
	memset(&net, 0, sizeof(net));
	memcpy(net.addr, out->addr, sizeof(net.addr));
	for (unsigned i = out->bits; i < max; i++)
		net.addr[i / 8] &= (uint8_t)~(0x80 >> (i % 8));
	if (memcmp(net.addr, out->addr, sizeof(net.addr)) != 0)
		return -EINVAL;
	return 0;
}

bool cidr_contains(const struct cidr *net, const struct cidr *addr)
{
	return net->family == addr->family && prefix_equal(net->addr, addr->addr, net->bits);
}

void cidr_format(const struct cidr *c, bool with_bits, char out[CIDR_STR_MAX])
{
	char a[INET6_ADDRSTRLEN];

	if (!inet_ntop(c->family, c->addr, a, sizeof(a)))
		snprintf(a, sizeof(a), "?");
	if (with_bits)
		snprintf(out, CIDR_STR_MAX, "%s/%u", a, c->bits);
	else
		snprintf(out, CIDR_STR_MAX, "%s", a);
}

int cidr_parse_list(const char *s, struct cidr *out, size_t cap, size_t *n, size_t *bad)
{
	*n = 0;
	*bad = 0;
	while (*s) {
		char item[CIDR_STR_MAX];
		size_t len = strcspn(s, ", ");

		if (len == 0) {
			s++;
			continue;
		}
		if (len >= sizeof(item) || *n == cap) {
			*bad = *n;
			return len >= sizeof(item) ? -EINVAL : -E2BIG;
		}
		memcpy(item, s, len);
		item[len] = '\0';
		if (cidr_parse(item, &out[*n]) < 0) {
			*bad = *n;
			return -EINVAL;
		}
		(*n)++;
		s += len;
	}
	return 0;
}
