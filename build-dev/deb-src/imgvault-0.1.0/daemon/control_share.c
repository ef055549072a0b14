/*
 * Share links for the command line over the control socket
 * (docs/PROTOCOL.md): SHARE, SHARES, REVOKE, KEYS and PARTNER.  The signing
 * key lives in this process only, so links are made here and nowhere else.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <sodium.h>

#include "control_i.h"

static int64_t now_s(void)
{
	return (int64_t)time(NULL);
}

static bool is_admin(const struct conn *k)
{
	const struct control_ops *o = &k->c->ops;

	return o->system ? k->uid == 0 : k->uid == o->owner_uid;
}

/* ---- the command line: links ---- */

struct mint {
	const struct proto_msg *m;
	struct share_keys *keys;
	struct share_minted out;
	char url[SHARE_URL_MAX];
	struct iverr e;
};

static int find_image(struct vault_session *s, const struct proto_msg *m, int64_t *id,
		      struct iverr *e)
{
	char album[CATALOG_NAME_MAX + 1], name[CATALOG_NAME_MAX + 1];
	struct vault_image im;
	int64_t aid;
	int ret;

	if (proto_get_str(m, T_ALBUM, album, sizeof(album)) < 0 ||
	    proto_get_str(m, T_NAME, name, sizeof(name)) < 0)
		return iverr_set(e, EINVAL, "which image? give ALBUM/NAME");
	if ((ret = vault_album_find(s, album, strlen(album), &aid, e)) < 0 ||
	    (ret = vault_image_find(s, aid, name, strlen(name), &im, e)) < 0)
		return ret;
	*id = im.id;
	return 0;
}

static int do_mint(struct vault_session *s, void *arg)
{
	struct mint *mt = arg;
	const struct proto_msg *m = mt->m;
	struct share_request r = { 0 };
	char partner[CATALOG_PARTNER_NAME_MAX + 1];
	uint64_t v = 0;
	int ret;

	if ((ret = find_image(s, m, &r.image_id, &mt->e)) < 0)
		return ret;
	if (proto_get_u64(m, T_VARIANT, &v) == 0 && v > VAULT_THUMB)
		return iverr_set(&mt->e, EINVAL, "unknown variant");
	r.variant = (enum vault_variant)v;
	if (proto_get_u64(m, T_DISPOSITION, &v) == 0)
		r.attachment = v != 0;
	if (proto_get_u64(m, T_TTL, &v) == 0)
		r.ttl = v > INT32_MAX * 16LL ? INT32_MAX * 16LL : (int64_t)v;
	if (proto_get_u64(m, T_NOT_BEFORE, &v) == 0)
		r.not_before = v > INT64_MAX / 4 ? INT64_MAX / 4 : (int64_t)v;
	if (proto_get_u64(m, T_USES, &v) == 0)
		r.uses = v > UINT32_MAX ? UINT32_MAX : (uint32_t)v;
	if (proto_get_str(m, T_PARTNER, partner, sizeof(partner)) == 0 && partner[0])
		r.partner = partner;
	if ((ret = share_mint(s, mt->keys, &r, &mt->out, &mt->e)) < 0)
		return ret;
	snprintf(mt->url, sizeof(mt->url), "%s", share_base_url(vault_session_vault(s)));
	return 0;
}

static int handle_share(struct conn *k, const struct proto_msg *m)
{
	struct control *c = k->c;
	struct mint mt = { .m = m, .keys = c->ops.keys };
	int ret;

	if (!c->ops.keys)
		return send_error(k, -ENOTSUP, "share links are off in this daemon");
	ret = control_call_own(k, do_mint, &mt, &mt.e);
	if (ret < 0)
		return send_error(k, ret, mt.e.msg);
	proto_begin(&k->out, P_OK);
	proto_put_str(&k->out, T_TOKEN, mt.out.token);
	proto_put(&k->out, T_TOKEN_ID, mt.out.tid, sizeof(mt.out.tid));
	proto_put_u64(&k->out, T_NOT_BEFORE, (uint64_t)mt.out.not_before);
	proto_put_u64(&k->out, T_EXPIRES, (uint64_t)mt.out.expires);
	proto_put_str(&k->out, T_URL, mt.url);
	ret = send_msg(k);
	sodium_memzero(&mt.out, sizeof(mt.out));
	sodium_memzero(k->out.buf, k->out.len);   /* the token */
	return ret;
}

/* One listed link, with its image's name when the peer owns it. */
struct listed {
	struct catalog_share l;
	char name[CATALOG_NAME_MAX + 1];
	char partner[CATALOG_PARTNER_NAME_MAX + 1];
};

struct listing {
	const struct proto_msg *m;
	int64_t uid;                 /* -1: everyone's (root) */
	struct listed *v;
	size_t n;
	struct iverr e;
};

static int listing_push(const struct catalog_share *l, void *arg)
{
	struct listing *ls = arg;
	struct listed *p = realloc(ls->v, (ls->n + 1) * sizeof(*p));

	if (!p)
		return iverr_set(&ls->e, ENOMEM, "out of memory");
	ls->v = p;
	memset(&p[ls->n], 0, sizeof(p[ls->n]));
	p[ls->n++].l = *l;
	return 0;
}

static int list_links(struct vault *v, struct listing *ls, int64_t image_id)
{
	char partner[CATALOG_PARTNER_NAME_MAX + 1];
	struct catalog_partner p = { 0 };
	int ret;

	if (proto_get_str(ls->m, T_PARTNER, partner, sizeof(partner)) == 0 && partner[0] &&
	    (ret = share_partner_find(v, partner, &p, &ls->e)) < 0)
		return ret;
	if ((ret = catalog_share_list(vault_catalog(v), ls->uid, image_id, p.id, now_s(),
				      listing_push, ls, &ls->e)) < 0)
		return ret;
	for (size_t i = 0; i < ls->n; i++) {
		struct catalog_partner q;
		if (ls->v[i].l.partner_id &&
		    catalog_partner_get(vault_catalog(v), ls->v[i].l.partner_id, &q, NULL) == 0)
			snprintf(ls->v[i].partner, sizeof(ls->v[i].partner), "%s", q.name);
	}
	return 0;
}

static int do_list_own(struct vault_session *s, void *arg)
{
	struct listing *ls = arg;
	int64_t image_id = 0;
	int ret;

	if (proto_get(ls->m, T_NAME) && (ret = find_image(s, ls->m, &image_id, &ls->e)) < 0)
		return ret;
	if ((ret = list_links(vault_session_vault(s), ls, image_id)) < 0)
		return ret;
	for (size_t i = 0; i < ls->n; i++) {
		struct vault_image im;
		if (vault_image_get(s, ls->v[i].l.image_id, &im, NULL) == 0)
			snprintf(ls->v[i].name, sizeof(ls->v[i].name), "%s", im.name);
	}
	return 0;
}

static int do_list_all(struct vault *v, void *arg)
{
	return list_links(v, arg, 0);
}

static int handle_shares(struct conn *k, const struct proto_msg *m)
{
	struct control *c = k->c;
	struct listing ls = { .m = m, .uid = k->uid };
	int ret;

	if (k->uid == 0 && c->ops.system && !proto_get(m, T_NAME)) {
		ls.uid = -1;
		ret = c->ops.call_vault(c->ops.arg, k->uid, do_list_all, &ls);
	} else {
		ret = control_call_own(k, do_list_own, &ls, &ls.e);
	}
	if (ret < 0) {
		free(ls.v);
		return send_error(k, ret, ls.e.msg);
	}
	for (size_t i = 0; i < ls.n && ret == 0; i++) {
		const struct listed *l = &ls.v[i];
		proto_begin(&k->out, P_ENTRY);
		proto_put(&k->out, T_TOKEN_ID, l->l.tid, sizeof(l->l.tid));
		proto_put_u64(&k->out, T_OWNER, l->l.uid);
		if (l->name[0])
			proto_put(&k->out, T_NAME, l->name, strlen(l->name));
		proto_put_u64(&k->out, T_VARIANT, (uint64_t)l->l.variant);
		proto_put_u64(&k->out, T_DISPOSITION, (uint64_t)l->l.disposition);
		proto_put_str(&k->out, T_PARTNER, l->partner);
		proto_put_u64(&k->out, T_NOT_BEFORE, (uint64_t)l->l.not_before);
		proto_put_u64(&k->out, T_EXPIRES, (uint64_t)l->l.expires);
		proto_put_u64(&k->out, T_USES, l->l.uses);
		proto_put_u64(&k->out, T_USES_MAX, l->l.uses_max);
		proto_put_u64(&k->out, T_CREATED, (uint64_t)l->l.created);
		ret = send_msg(k);
	}
	free(ls.v);
	return ret < 0 ? ret : send_type(k, P_END);
}

struct revoke {
	const struct proto_msg *m;
	int64_t uid;
	size_t n;
	struct iverr e;
};

static int do_revoke_image(struct vault_session *s, void *arg)
{
	struct revoke *r = arg;
	int64_t id;
	int ret = find_image(s, r->m, &id, &r->e);

	return ret < 0 ? ret : share_revoke_image(s, id, &r->n, &r->e);
}

static int do_revoke_vault(struct vault *v, void *arg)
{
	struct revoke *r = arg;
	const struct proto_field *tid = proto_get(r->m, T_TOKEN_ID);
	char partner[CATALOG_PARTNER_NAME_MAX + 1];

	if (tid) {
		if (tid->len != TOKEN_ID_LEN)
			return iverr_set(&r->e, EINVAL, "a token id is 32 hex digits");
		r->n = 1;
		return share_revoke_id(v, r->uid, tid->val, &r->e);
	}
	if (proto_get_str(r->m, T_PARTNER, partner, sizeof(partner)) < 0)
		return iverr_set(&r->e, EINVAL, "revoke what? a token id, --image or --partner");
	return share_revoke_partner(v, r->uid, partner, &r->n, &r->e);
}

static int handle_revoke(struct conn *k, const struct proto_msg *m)
{
	struct control *c = k->c;
	struct revoke r = { .m = m, .uid = is_admin(k) && c->ops.system ? -1 : (int64_t)k->uid };
	int ret;

	if (proto_get(m, T_NAME))
		ret = control_call_own(k, do_revoke_image, &r, &r.e);
	else
		ret = c->ops.call_vault(c->ops.arg, k->uid, do_revoke_vault, &r);
	if (ret < 0)
		return send_error(k, ret, r.e.msg);
	proto_begin(&k->out, P_OK);
	proto_put_u64(&k->out, T_COUNT, r.n);
	return send_msg(k);
}

/* ---- the command line: signing keys and partners ---- */

struct admin {
	struct conn *k;
	const struct proto_msg *m;
	char op[16];
	char kid[2 * TOKEN_KID_LEN + 1];
	char *text;
	struct iverr e;
};

static int key_entry(const struct catalog_signkey *key, void *arg)
{
	struct admin *a = arg;
	struct conn *k = a->k;
	uint8_t cur[TOKEN_KID_LEN] = { 0 };

	if (k->c->ops.keys)
		share_keys_current(k->c->ops.keys, cur);
	proto_begin(&k->out, P_ENTRY);
	proto_put(&k->out, T_KID, key->kid, sizeof(key->kid));
	proto_put_u64(&k->out, T_OWNER, (uint64_t)key->owner);
	proto_put_u64(&k->out, T_CREATED, (uint64_t)key->created);
	proto_put_u64(&k->out, T_RETIRED, (uint64_t)key->retired);
	proto_put_u64(&k->out, T_CURRENT, !memcmp(cur, key->kid, sizeof(cur)));
	return send_msg(k);
}

static int do_keys(struct vault *v, void *arg)
{
	struct admin *a = arg;
	struct control *c = a->k->c;
	uint8_t kid[TOKEN_KID_LEN];
	int ret;

	if (!strcmp(a->op, "list"))
		return catalog_signkey_list(vault_catalog(v), key_entry, a, &a->e);
	if (!strcmp(a->op, "export"))
		return share_keys_export(v, &a->text, &a->e);
	if (!is_admin(a->k))
		return iverr_set(&a->e, EPERM, "only %s rotates and retires signing keys",
				 c->ops.system ? "root" : "the vault's owner");
	if (!strcmp(a->op, "rotate"))
		ret = share_keys_rotate(c->ops.keys, a->kid, &a->e);
	else if (!strcmp(a->op, "retire")) {
		char hex[2 * TOKEN_KID_LEN + 1];
		if (proto_get_str(a->m, T_KID, hex, sizeof(hex)) < 0 ||
		    token_unhex(hex, kid, sizeof(kid)) < 0)
			return iverr_set(&a->e, EINVAL, "a key id is 16 hex digits (imgvault "
					 "keys lists them)");
		ret = share_keys_retire(c->ops.keys, kid, &a->e);
	} else
		return iverr_set(&a->e, EINVAL, "unknown keys operation '%s'", a->op);
	/* The gateway must learn of the change: publish the keyring. */
	if (ret == 0 && c->ops.keyring)
		ret = share_keys_publish(v, c->ops.keyring, &a->e);
	return ret;
}

static int handle_keys(struct conn *k, const struct proto_msg *m)
{
	struct control *c = k->c;
	struct admin a = { .k = k, .m = m };
	int ret;

	if (!c->ops.keys)
		return send_error(k, -ENOTSUP, "share links are off in this daemon");
	proto_get_str(m, T_OP, a.op, sizeof(a.op));
	ret = c->ops.call_vault(c->ops.arg, k->uid, do_keys, &a);
	if (ret < 0) {
		free(a.text);
		return send_error(k, ret, a.e.msg);
	}
	if (!strcmp(a.op, "list"))
		return send_type(k, P_END);
	proto_begin(&k->out, P_OK);
	if (a.kid[0])
		proto_put_str(&k->out, T_KID, a.kid);
	if (a.text)
		proto_put(&k->out, T_DATA, a.text, strlen(a.text));
	free(a.text);
	return send_msg(k);
}

static int partner_entry(const struct catalog_partner *p, void *arg)
{
	struct admin *a = arg;
	struct conn *k = a->k;

	proto_begin(&k->out, P_ENTRY);
	proto_put_str(&k->out, T_PARTNER, p->name);
	proto_put_str(&k->out, T_CIDRS, p->cidrs);
	proto_put_u64(&k->out, T_TTL, (uint64_t)p->ttl);
	proto_put_u64(&k->out, T_MAX_TTL, (uint64_t)p->max_ttl);
	proto_put_u64(&k->out, T_DISABLED, p->disabled);
	proto_put_u64(&k->out, T_CREATED, (uint64_t)p->created);
	return send_msg(k);
}

static int do_partner(struct vault *v, void *arg)
{
	struct admin *a = arg;
	char name[CATALOG_PARTNER_NAME_MAX + 1], cidrs[CATALOG_CIDRS_MAX] = "";
	uint64_t ttl = 0, max_ttl = 0;

	if (!strcmp(a->op, "list"))
		return catalog_partner_list(vault_catalog(v), partner_entry, a, &a->e);
	if (!is_admin(a->k))
		return iverr_set(&a->e, EPERM, "only %s adds and disables partners",
				 a->k->c->ops.system ? "root" : "the vault's owner");
	if (proto_get_str(a->m, T_PARTNER, name, sizeof(name)) < 0)
		return iverr_set(&a->e, EINVAL, "which partner? a name of at most %d characters",
				 CATALOG_PARTNER_NAME_MAX);
	if (!strcmp(a->op, "disable"))
		return share_partner_disable(v, name, &a->e);
	if (strcmp(a->op, "add"))
		return iverr_set(&a->e, EINVAL, "unknown partner operation '%s'", a->op);
	proto_get_str(a->m, T_CIDRS, cidrs, sizeof(cidrs));
	proto_get_u64(a->m, T_TTL, &ttl);
	proto_get_u64(a->m, T_MAX_TTL, &max_ttl);
	if (ttl > INT32_MAX * 16ULL || max_ttl > INT32_MAX * 16ULL)
		return iverr_set(&a->e, EINVAL, "the lifetime is too long");
	return share_partner_add(v, name, cidrs, (int64_t)ttl, (int64_t)max_ttl, &a->e);
}

static int handle_partner(struct conn *k, const struct proto_msg *m)
{
	struct control *c = k->c;
	struct admin a = { .k = k, .m = m };
	int ret;

	proto_get_str(m, T_OP, a.op, sizeof(a.op));
	ret = c->ops.call_vault(c->ops.arg, k->uid, do_partner, &a);
	if (ret < 0)
		return send_error(k, ret, a.e.msg);
	return send_type(k, strcmp(a.op, "list") ? P_OK : P_END);
}

int control_share_request(struct conn *k, const struct proto_msg *m)
{
	if (!k->c->ops.call_vault)
		return send_error(k, -ENOTSUP, "share links are off in this daemon");
	switch (m->type) {
	case P_SHARE: return handle_share(k, m);
	case P_SHARES: return handle_shares(k, m);
	case P_REVOKE: return handle_revoke(k, m);
	case P_KEYS: return handle_keys(k, m);
	case P_PARTNER: return handle_partner(k, m);
	default: return -EPROTO;
	}
}
