/* Unit tests of fs/cidr: IPv4 and IPv6 networks, IPv4-mapped addresses, lists. */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <string.h>
#include <sys/socket.h>

#include "cidr.h"
#include "tap.h"

/* Parses @s as a network and returns its canonical text with the prefix
 * ("" when refused). */
static const char *canon(const char *s)
{
	static char buf[CIDR_STR_MAX];
	struct cidr c;

	if (cidr_parse(s, &c) < 0)
		return "";
	cidr_format(&c, true, buf);
	return buf;
}

static bool net_has(const char *net, const char *addr)
{
	struct cidr n, a;

	if (cidr_parse(net, &n) < 0 || cidr_parse_addr(addr, &a) < 0)
		BAIL_OUT("test setup: cannot parse %s or %s", net, addr);
	return cidr_contains(&n, &a);
}

static void test_parse(void)
{
	struct cidr c;

	is_int(cidr_parse("192.0.2.0/24", &c), 0, "192.0.2.0/24 parses");
	is_int(c.family, AF_INET, "as IPv4");
	is_int(c.bits, 24, "with 24 bits");
	is_mem(c.addr, ((uint8_t[]){ 192, 0, 2, 0 }), 4, "the address in the first 4 bytes");
	uint8_t zero[12] = { 0 };
	is_mem(c.addr + 4, zero, 12, "the other 12 bytes zero");

	is_int(cidr_parse("192.0.2.7", &c), 0, "a bare IPv4 address parses");
	is_int(c.bits, 32, "as a /32");
	is_int(cidr_parse("2001:db8::/32", &c), 0, "2001:db8::/32 parses");
	is_int(c.family, AF_INET6, "as IPv6");
	is_int(c.bits, 32, "with 32 bits");
	is_int(cidr_parse("2001:db8::1", &c), 0, "a bare IPv6 address parses");
	is_int(c.bits, 128, "as a /128");
	is_int(cidr_parse("0.0.0.0/0", &c), 0, "0.0.0.0/0 parses");
	is_int(c.bits, 0, "with 0 bits");
	is_int(cidr_parse("::/0", &c), 0, "::/0 parses");
	is_int(c.family == AF_INET6 && c.bits == 0, 1, "as IPv6 with 0 bits");
	is_int(cidr_parse("10.1.2.3/32", &c), 0, "a /32 with all bits");
	is_int(cidr_parse("2001:db8::1/128", &c), 0, "a /128 with all bits");
	is_int(cidr_parse("255.255.255.255/32", &c), 0, "255.255.255.255/32");
	is_int(cidr_parse("10.0.0.0/08", &c), 0, "a prefix with a leading zero (08) parses");
	is_int(c.bits, 8, "as 8");

	is_int(cidr_parse_addr("192.0.2.1", &c), 0, "cidr_parse_addr: IPv4");
	is_int(cidr_parse_addr("2001:db8::1", &c), 0, "cidr_parse_addr: IPv6");
	is_int(cidr_parse_addr("192.0.2.0/24", &c), -EINVAL, "cidr_parse_addr: a prefix is refused");
	is_int(cidr_parse_addr("", &c), -EINVAL, "cidr_parse_addr: empty is refused");

	/* Host bits under the prefix. */
	is_int(cidr_parse("10.1.2.3/8", &c), -EINVAL, "10.1.2.3/8 (host bits set): refused");
	is_int(cidr_parse("192.0.2.1/24", &c), -EINVAL, "192.0.2.1/24: refused");
	is_int(cidr_parse("192.0.2.128/24", &c), -EINVAL, "192.0.2.128/24: refused");
	is_int(cidr_parse("192.0.2.128/25", &c), 0, "192.0.2.128/25: accepted");
	is_int(cidr_parse("192.0.2.64/25", &c), -EINVAL, "192.0.2.64/25: refused");
	is_int(cidr_parse("1.0.0.0/0", &c), -EINVAL, "1.0.0.0/0: refused");
	is_int(cidr_parse("2001:db8::1/64", &c), -EINVAL, "2001:db8::1/64: refused");
	is_int(cidr_parse("2001:db8:8000::/33", &c), 0, "2001:db8:8000::/33: accepted");
	is_int(cidr_parse("2001:db8:8000::/32", &c), -EINVAL, "2001:db8:8000::/32: refused");
	is_int(cidr_parse("::1/127", &c), -EINVAL, "::1/127: refused");

	/* Garbage. */
	static const char *const garbage[] = {
		"300.1.1.1", "1.2.3.4/33", "", "/8", "1.2.3.4/", "1.2.3.4/-1", "1.2.3.4/ 8",
		"1.2.3.4/+8", "1.2.3.4/8 ", " 1.2.3.4", "1.2.3.4 ", "1.2.3", "1.2.3.4.5",
		"1.2.3.4/8/8", "1.2.3.4/0x8", "1.2.3.4/99999999999999999999999", "01.2.3.4",
		"1.2.3.4/4294967328", "2001:db8::/129", "2001:db8:::/32", "2001:db8::g/32",
		"fe80::1%eth0", "localhost", "/", "//", "1.2.3.4//8", "::ffff:1.2.3.4/95",
		"::ffff:1.2.3.4/129", "::ffff:0:0/-1", "a.b.c.d", "1.2.3.4/8a", "1.2.3.4\n",
		"0:0:0:0:0:0:0:0:0/0",
		"0000000000000000000000000000000000000000000000000000000000001.2.3.4",
	};
	for (size_t i = 0; i < sizeof(garbage) / sizeof(garbage[0]); i++) {
		char shown[128];
		size_t k = 0;
		for (const char *p = garbage[i]; *p && k < sizeof(shown) - 3; p++) {
			if (*p == '\n') {
				shown[k++] = '\\';
				shown[k++] = 'n';
			} else {
				shown[k++] = *p;
			}
		}
		shown[k] = '\0';
		is_int(cidr_parse(garbage[i], &c), -EINVAL, "'%s': refused", shown);
	}
	/* An address longer than the buffer, and a long prefix. */
	char longs[300];
	memset(longs, '1', sizeof(longs));
	longs[sizeof(longs) - 1] = '\0';
	is_int(cidr_parse(longs, &c), -EINVAL, "300 digits: refused");
	snprintf(longs, sizeof(longs), "1.2.3.0/%0200d", 24);
	is_int(cidr_parse(longs, &c), 0, "a prefix with 198 leading zeros is still 24");
}

static void test_mapped(void)
{
	struct cidr c;

	is_int(cidr_parse_addr("::ffff:192.0.2.1", &c), 0, "::ffff:192.0.2.1 parses");
	is_int(c.family, AF_INET, "as IPv4");
	is_mem(c.addr, ((uint8_t[]){ 192, 0, 2, 1 }), 4, "carrying 192.0.2.1");
	is_int(c.bits, 32, "all 32 bits");
	ok(net_has("192.0.2.0/24", "::ffff:192.0.2.1"), "::ffff:192.0.2.1 is in 192.0.2.0/24");
	ok(net_has("192.0.2.0/24", "::FFFF:c000:0201"), "::FFFF:c000:0201 (hex form) too");
	ok(!net_has("192.0.2.0/24", "::ffff:192.0.3.1"), "::ffff:192.0.3.1 is not");
	ok(net_has("192.0.2.1", "::ffff:192.0.2.1"), "a bare IPv4 address matches its mapped form");
	ok(!net_has("2001:db8::/32", "::ffff:192.0.2.1"), "a mapped address is not in an IPv6 net");
	ok(!net_has("::/0", "::ffff:192.0.2.1"), "nor in ::/0 (it is IPv4)");

	is_str(canon("::ffff:0:0/96"), "0.0.0.0/0", "::ffff:0:0/96 means 0.0.0.0/0");
	ok(net_has("::ffff:0:0/96", "203.0.113.9"), "which contains 203.0.113.9");
	ok(net_has("::ffff:0:0/96", "::ffff:203.0.113.9"), "and ::ffff:203.0.113.9");
	ok(!net_has("::ffff:0:0/96", "2001:db8::1"), "but not 2001:db8::1");
	is_str(canon("::ffff:192.0.2.0/120"), "192.0.2.0/24", "::ffff:192.0.2.0/120 is 192.0.2.0/24");
	is_str(canon("::ffff:192.0.2.1/128"), "192.0.2.1/32", "::ffff:192.0.2.1/128 is /32");
	is_str(canon("::ffff:192.0.2.1"), "192.0.2.1/32", "a bare mapped address is /32");
	is_int(cidr_parse("::ffff:192.0.2.1/120", &c), -EINVAL, "::ffff:192.0.2.1/120 (host bits): "
	       "refused");
	is_int(cidr_parse("::ffff:0:0/95", &c), -EINVAL, "::ffff:0:0/95: refused");
	/* Not mapped: IPv4-compatible and NAT64 stay IPv6. */
	is_int(cidr_parse_addr("::192.0.2.1", &c), 0, "::192.0.2.1 parses");
	is_int(c.family, AF_INET6, "and stays IPv6 (not the mapped prefix)");
	ok(!net_has("192.0.2.0/24", "::192.0.2.1"), "so 192.0.2.0/24 does not contain it");
	ok(!net_has("192.0.2.0/24", "64:ff9b::192.0.2.1"), "nor 64:ff9b::192.0.2.1");
}

static void test_contains(void)
{
	ok(net_has("10.0.0.0/8", "10.255.255.255"), "10.255.255.255 in 10/8");
	ok(net_has("10.0.0.0/8", "10.0.0.0"), "10.0.0.0 in 10/8");
	ok(!net_has("10.0.0.0/8", "11.0.0.0"), "11.0.0.0 not in 10/8");
	ok(!net_has("10.0.0.0/8", "9.255.255.255"), "9.255.255.255 not in 10/8");
	ok(net_has("0.0.0.0/0", "255.255.255.255"), "0/0 contains everything IPv4");
	ok(!net_has("0.0.0.0/0", "::1"), "0/0 does not contain ::1");
	ok(net_has("::/0", "::1"), "::/0 contains ::1");
	ok(!net_has("::/0", "127.0.0.1"), "::/0 does not contain 127.0.0.1");
	ok(net_has("192.0.2.128/25", "192.0.2.200"), "192.0.2.200 in 192.0.2.128/25");
	ok(!net_has("192.0.2.128/25", "192.0.2.127"), "192.0.2.127 not in 192.0.2.128/25");
	ok(net_has("192.0.2.5/32", "192.0.2.5"), "/32 contains itself");
	ok(!net_has("192.0.2.5/32", "192.0.2.4"), "/32 contains nothing else");
	ok(net_has("2001:db8::/32", "2001:db8:ffff:ffff:ffff:ffff:ffff:ffff"), "top of 2001:db8::/32");
	ok(!net_has("2001:db8::/32", "2001:db9::"), "2001:db9:: not in 2001:db8::/32");
	ok(net_has("2001:db8::/31", "2001:db9::1"), "2001:db9::1 in 2001:db8::/31");
	ok(net_has("2001:db8::1/128", "2001:db8::1"), "/128 contains itself");
	ok(!net_has("2001:db8::1/128", "2001:db8::2"), "/128 contains nothing else");
	ok(net_has("2001:db8:0:0:8000::/65", "2001:db8::8000:0:0:1"), "a /65");
	ok(!net_has("2001:db8:0:0:8000::/65", "2001:db8::7fff:0:0:1"), "outside a /65");
	/* Across families: the same bytes never match. */
	struct cidr v4, v6;
	cidr_parse("1.2.3.4", &v4);
	cidr_parse("102:304::", &v6);
	ok(!cidr_contains(&v4, &v6), "IPv4 net, IPv6 address with the same first bytes: false");
	ok(!cidr_contains(&v6, &v4), "IPv6 net, IPv4 address with the same first bytes: false");
	cidr_parse("0.0.0.0/0", &v4);
	cidr_parse("::/0", &v6);
	struct cidr a4, a6;
	cidr_parse_addr("8.8.8.8", &a4);
	cidr_parse_addr("2001:4860::8888", &a6);
	ok(!cidr_contains(&v4, &a6) && !cidr_contains(&v6, &a4), "/0 of one family never contains "
	   "the other");
}

static void test_format(void)
{
	struct cidr c;
	char out[CIDR_STR_MAX];

	is_str(canon("192.0.2.0/24"), "192.0.2.0/24", "IPv4 canonical");
	is_str(canon("192.0.2.7"), "192.0.2.7/32", "a bare IPv4 address: /32");
	is_str(canon("2001:DB8:0:0::/32"), "2001:db8::/32", "IPv6: lowercase, zeros compressed");
	is_str(canon("2001:0db8:0000:0000:0000:0000:0000:0001"), "2001:db8::1/128",
	       "IPv6 leading zeros dropped");
	is_str(canon("::/0"), "::/0", "::/0");
	is_str(canon("0.0.0.0/0"), "0.0.0.0/0", "0.0.0.0/0");
	is_str(canon("10.0.0.0/008"), "10.0.0.0/8", "a prefix with leading zeros prints plainly");
	cidr_parse("2001:db8::1", &c);
	cidr_format(&c, false, out);
	is_str(out, "2001:db8::1", "without bits: the bare address");
	cidr_parse_addr("::ffff:192.0.2.1", &c);
	cidr_format(&c, false, out);
	is_str(out, "192.0.2.1", "a mapped address prints as IPv4");
	cidr_parse("ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff", &c);
	cidr_format(&c, true, out);
	is_str(out, "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff/128", "the longest text fits");
	memset(&c, 0, sizeof(c));
	c.family = 12345;
	cidr_format(&c, true, out);
	is_str(out, "?/0", "an unknown family prints as ?");
	/* Parse, format, parse: the same network. */
	static const char *const nets[] = { "198.51.100.0/22", "2001:db8:abcd::/48", "::1",
					    "::ffff:10.0.0.0/104", "fe80::/10", "224.0.0.0/4" };
	int bad = 0;
	for (size_t i = 0; i < sizeof(nets) / sizeof(nets[0]); i++) {
		struct cidr a, b;
		if (cidr_parse(nets[i], &a) < 0) {
			bad++;
			continue;
		}
		cidr_format(&a, true, out);
		if (cidr_parse(out, &b) < 0 || memcmp(&a, &b, sizeof(a)))
			bad++;
	}
	is_int(bad, 0, "parse, format, parse gives the same network for 6 networks");
}

static void test_list(void)
{
	struct cidr l[8];
	size_t n = 99, bad = 99;

	is_int(cidr_parse_list("10.0.0.0/8,192.168.0.0/16, 2001:db8::/32  ::1 ,,, 127.0.0.1",
			       l, 8, &n, &bad), 0, "a list with commas and spaces parses");
	is_int(n, 5, "five entries");
	char out[CIDR_STR_MAX];
	if (n == 5) {
		cidr_format(&l[0], true, out);
		is_str(out, "10.0.0.0/8", "entry 0");
		cidr_format(&l[2], true, out);
		is_str(out, "2001:db8::/32", "entry 2");
		cidr_format(&l[3], true, out);
		is_str(out, "::1/128", "entry 3");
		cidr_format(&l[4], true, out);
		is_str(out, "127.0.0.1/32", "entry 4");
	}
	is_int(cidr_parse_list("", l, 8, &n, &bad), 0, "an empty list parses");
	is_int(n, 0, "to nothing");
	is_int(cidr_parse_list(" , ,, ", l, 8, &n, &bad), 0, "separators only: nothing");
	is_int(n, 0, "to nothing");
	is_int(cidr_parse_list("10.0.0.0/8, 10.1.2.3/8, 1.1.1.1", l, 8, &n, &bad), -EINVAL,
	       "a bad entry: refused");
	is_int(bad, 1, "naming entry 1");
	is_int(cidr_parse_list("junk", l, 8, &n, &bad), -EINVAL, "junk: refused");
	is_int(bad, 0, "naming entry 0");
	is_int(cidr_parse_list("1.1.1.1,2.2.2.2,3.3.3.3", l, 3, &n, &bad), 0,
	       "exactly the cap: accepted");
	is_int(n, 3, "three entries");
	is_int(cidr_parse_list("1.1.1.1,2.2.2.2,3.3.3.3,4.4.4.4", l, 3, &n, &bad), -E2BIG,
	       "one over the cap: -E2BIG");
	is_int(bad, 3, "naming entry 3");
	is_int(cidr_parse_list("1.1.1.1,2.2.2.2,3.3.3.3, , ,", l, 3, &n, &bad), 0,
	       "the cap followed by separators only: accepted");
	is_int(cidr_parse_list("1.1.1.1", l, 0, &n, &bad), -E2BIG, "a cap of 0: -E2BIG");
	char longl[200];
	memset(longl, '1', sizeof(longl));
	longl[sizeof(longl) - 1] = '\0';
	is_int(cidr_parse_list(longl, l, 8, &n, &bad), -EINVAL, "a 199-character entry: refused");
	is_int(cidr_parse_list("10.0.0.0/8\t192.168.0.0/16", l, 8, &n, &bad), -EINVAL,
	       "a tab is not a separator (the entry is refused, not silently split)");
}

int main(void)
{
	test_parse();
	test_mapped();
	test_contains();
	test_format();
	test_list();
	return done_testing();
}
