/*
 * cidr — IPv4 and IPv6 addresses and networks, for partner allow-lists and
 * the gateway's trusted proxies.  An IPv4-mapped IPv6 address
 * (::ffff:192.0.2.1) is taken as the IPv4 address it carries, so a dual-stack
 * socket cannot slip past an IPv4 rule.
 */
#ifndef IMGVAULT_CIDR_H
#define IMGVAULT_CIDR_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define CIDR_STR_MAX 64   /* "ffff:…:ffff/128" and a NUL, with room */

struct cidr {
	int family;           /* AF_INET or AF_INET6 */
	uint8_t addr[16];     /* network order; IPv4 in the first 4 bytes */
	unsigned bits;        /* prefix length */
};

/* "192.0.2.0/24", "2001:db8::/32", or a bare address (all bits).  Host
 * bits set under the prefix are refused (-EINVAL): "10.1.2.3/8" is almost
 * always a typo for something else. */
int cidr_parse(const char *s, struct cidr *out);
/* An address only, no prefix. */
int cidr_parse_addr(const char *s, struct cidr *out);
/* Whether @addr (all bits) lies in @net. */
bool cidr_contains(const struct cidr *net, const struct cidr *addr);
/* Canonical text ("192.0.2.0/24"; a bare address without the prefix when
 * @with_bits is false). */
void cidr_format(const struct cidr *c, bool with_bits, char out[CIDR_STR_MAX]);
/* Parses a comma- or space-separated list; -EINVAL names nothing, the
 * caller says which entry failed through *bad (index). */
int cidr_parse_list(const char *s, struct cidr *out, size_t cap, size_t *n, size_t *bad);

#endif
