#include "proto.h"

#include <errno.h>
#include <string.h>

#include "bytes.h"

int proto_parse(const uint8_t *buf, size_t len, struct proto_msg *out)
{
	size_t off = PROTO_HEADER;

	out->nfields = 0;
	if (len < PROTO_HEADER || len > PROTO_MAX || buf[0] != 'I' || buf[1] != 'V' ||
	    buf[2] != PROTO_VERSION || buf[3] == 0 || buf[3] > P_TYPE_MAX ||
	    get_le32(buf + 4) != len - PROTO_HEADER)
		return -EPROTO;
	out->type = buf[3];
	while (off < len) {
		struct proto_field *f;

		if (len - off < 3 || out->nfields == PROTO_MAX_FIELDS)
			return -EPROTO;
		f = &out->fields[out->nfields++];
		f->tag = buf[off];
		f->len = get_le16(buf + off + 1);
		off += 3;
		if (f->len > len - off)
			return -EPROTO;
		f->val = buf + off;
		off += f->len;
	}
	return 0;
}

const struct proto_field *proto_get(const struct proto_msg *m, uint8_t tag)
{
	for (size_t i = 0; i < m->nfields; i++)
		if (m->fields[i].tag == tag)
			return &m->fields[i];
	return NULL;
}

int proto_get_str(const struct proto_msg *m, uint8_t tag, char *buf, size_t cap)
{
	const struct proto_field *f = proto_get(m, tag);

	if (!f || f->len >= cap || memchr(f->val, '\0', f->len))
		return -EPROTO;
	memcpy(buf, f->val, f->len);
	buf[f->len] = '\0';
	return 0;
}

int proto_get_u64(const struct proto_msg *m, uint8_t tag, uint64_t *out)
{
	const struct proto_field *f = proto_get(m, tag);

	if (!f || f->len != 8)
		return -EPROTO;
	*out = get_le64(f->val);
	return 0;
}

void proto_begin(struct proto_out *o, enum proto_type type)
{
	o->buf[0] = 'I';
	o->buf[1] = 'V';
	o->buf[2] = PROTO_VERSION;
	o->buf[3] = (uint8_t)type;
	o->len = PROTO_HEADER;
	o->overflow = false;
}

void proto_put(struct proto_out *o, enum proto_tag tag, const void *val, size_t len)
{
	if (len > UINT16_MAX || o->len + 3 + len > PROTO_MAX) {
		o->overflow = true;
		return;
	}
	o->buf[o->len] = (uint8_t)tag;
	put_le16(o->buf + o->len + 1, (uint16_t)len);
	if (len)
		memcpy(o->buf + o->len + 3, val, len);
	o->len += 3 + len;
}

void proto_put_str(struct proto_out *o, enum proto_tag tag, const char *s)
{
	proto_put(o, tag, s, strlen(s));
}

void proto_put_u64(struct proto_out *o, enum proto_tag tag, uint64_t v)
{
	uint8_t b[8];

	put_le64(b, v);
	proto_put(o, tag, b, sizeof(b));
}

int proto_finish(struct proto_out *o)
{
	if (o->overflow)
		return -EMSGSIZE;
	put_le32(o->buf + 4, (uint32_t)(o->len - PROTO_HEADER));
	return 0;
}
