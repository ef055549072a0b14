/*
 * libFuzzer target for the control socket's parser (daemon/proto.c): any
 * bytes a peer sends.  Checks that a parsed message's fields lie inside the
 * buffer and that a message rebuilt from them parses to the same fields,
 * LOCK and UNLOCK (types 11, 12, fields uid and passphrase) included.
 */
#include <stdlib.h>
#include <string.h>

#include "proto.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static struct proto_out o;   /* 64 KiB: not on the stack */
	struct proto_msg m, again;
	char s[256];
	uint64_t v;

	if (proto_parse(data, size, &m) != 0)
		return 0;
	o.len = 0;
	proto_begin(&o, m.type);
	for (size_t i = 0; i < m.nfields; i++) {
		const struct proto_field *f = &m.fields[i];
		if (f->val < data || f->val + f->len > data + size)
			abort();
		proto_put(&o, f->tag, f->val, f->len);
	}
	if (proto_finish(&o) != 0 || proto_parse(o.buf, o.len, &again) != 0 ||
	    again.nfields != m.nfields || again.type != m.type)
		abort();
	for (size_t i = 0; i < m.nfields; i++)
		if (again.fields[i].len != m.fields[i].len ||
		    memcmp(again.fields[i].val, m.fields[i].val, m.fields[i].len))
			abort();
	(void)proto_get_str(&m, T_NAME, s, sizeof(s));
	(void)proto_get_u64(&m, T_SIZE, &v);
	/* What LOCK and UNLOCK read: a uid, a passphrase inside the message. */
	if (proto_get_u64(&m, T_UID, &v) == 0 && proto_get(&m, T_UID)->len != 8)
		abort();
	const struct proto_field *pass = proto_get(&m, T_PASSPHRASE);
	if (pass && (pass->val < data || pass->val + pass->len > data + size))
		abort();
	return 0;
}
