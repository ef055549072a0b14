/*
 * The gateway's fetches over the control socket (docs/PROTOCOL.md).
 *
 * A fetch is a conversation on one connection: FETCH_OPEN (the daemon
 * decides, opens the variant and says what it serves; a small body comes
 * along), FETCH_BODY (the range about to be sent: for a limited link it is
 * reserved from the link's byte budget, and a range that reaches the last
 * byte also reserves a use), FETCH_READ… (the bytes), FETCH_DONE (how it
 * ended: a use is counted only for a complete transfer holding a
 * reservation).  Fetches go to the audit trail in batches.
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

#define THUMB_WAIT_MS 15000
#define MAX_NOTES 8192
#define INLINE_MAX (PROTO_DATA_MAX - 2048)   /* room for the other fields */
#define CACHE_SLOTS 512
#define CACHE_WAYS 4                     /* a tag may sit in one set of 4 slots */
#define CACHE_BYTES (16u << 20)

struct fetch {
	struct share_grant g;
	struct vault_file *f;        /* pristine and thumbnail: read as stored */
	uint8_t *buf;                /* original: the stripped copy */
	uint64_t size;
	char mime[VAULT_MIME_MAX];
	char client[CIDR_STR_MAX];
	char name[CATALOG_NAME_MAX + 1];
	uint8_t sha[32];             /* of the version served */
	bool reserved;               /* holds part of a limited link's budget */
	bool reserved_eof;           /* and a use: the range reaches the end */
	uint64_t reserved_len;
	bool announced;              /* FETCH_BODY named the range below */
	uint64_t body_off, body_len; /* the only bytes FETCH_READ hands out */
	uint64_t handed;             /* bytes given to the gateway */
	bool preview;                /* the thumbnail for the preview page */
	bool held;                   /* the owner's vault cannot be locked */
};

/*
 * Small bodies served lately (thumbnails, mostly), by content tag
 * (share_grant): every fetch is still decided by share_authorize, only the
 * opening and decryption are saved.  Entries of a vault are wiped when it
 * is locked; the rest when the daemon stops.
 */
struct cached {
	uint8_t tag[16];
	uint32_t uid;
	uint64_t used;               /* LRU clock; 0: empty */
	uint8_t *data;
	size_t size;
	char mime[VAULT_MIME_MAX];
	char name[CATALOG_NAME_MAX + 1];
	uint8_t sha[32];
};

struct fetch_cache {
	struct cached slot[CACHE_SLOTS];
	uint64_t clock;
	size_t bytes;
};

static void cached_drop(struct fetch_cache *fc, struct cached *e)
{
	if (e->data) {
		sodium_memzero(e->data, e->size);
		free(e->data);
		fc->bytes -= e->size;
	}
	memset(e, 0, sizeof(*e));
}

void control_fetch_forget(struct control *c, uint32_t uid)
{
	pthread_mutex_lock(&c->lock);
	if (c->cache) {
		for (size_t i = 0; i < CACHE_SLOTS; i++)
			if (c->cache->slot[i].used && (uid == CONTROL_NOBODY ||
						       c->cache->slot[i].uid == uid))
				cached_drop(c->cache, &c->cache->slot[i]);
		if (uid == CONTROL_NOBODY) {
			free(c->cache);
			c->cache = NULL;
		}
	}
	pthread_mutex_unlock(&c->lock);
}

/* The set of slots a tag may sit in: a fetch looks at four, not 512. */
static struct cached *cache_set(struct fetch_cache *fc, const uint8_t tag[16])
{
	size_t set = (size_t)(tag[0] | tag[1] << 8) % (CACHE_SLOTS / CACHE_WAYS);

	return &fc->slot[set * CACHE_WAYS];
}

/* Fills @f from the cache: true on a hit. */
static bool cache_get(struct control *c, struct fetch *f, const uint8_t tag[16])
{
	bool hit = false;
	static const uint8_t none[16];

	if (!memcmp(tag, none, sizeof(none)))
		return false;
	pthread_mutex_lock(&c->lock);
	for (size_t i = 0; c->cache && i < CACHE_WAYS && !hit; i++) {
		struct cached *e = &cache_set(c->cache, tag)[i];
		if (!e->used || e->uid != f->g.link.uid || memcmp(e->tag, tag, 16))
			continue;
		f->buf = malloc(e->size ? e->size : 1);
		if (!f->buf)
			break;
		memcpy(f->buf, e->data, e->size);
		f->size = e->size;
		memcpy(f->mime, e->mime, sizeof(f->mime));
		memcpy(f->name, e->name, sizeof(f->name));
		memcpy(f->sha, e->sha, sizeof(f->sha));
		e->used = ++c->cache->clock;
		hit = true;
	}
	pthread_mutex_unlock(&c->lock);
	return hit;
}

/* Keeps a copy of @f's body (already in f->buf) under @tag. */
static void cache_put(struct control *c, const struct fetch *f, const uint8_t tag[16])
{
	struct cached *victim = NULL;
	uint8_t *copy;
	static const uint8_t none[16];

	if (!memcmp(tag, none, sizeof(none)) || !f->buf || f->size > INLINE_MAX ||
	    !(copy = malloc(f->size ? f->size : 1)))
		return;
	memcpy(copy, f->buf, f->size);
	pthread_mutex_lock(&c->lock);
	if (!c->cache)
		c->cache = calloc(1, sizeof(*c->cache));
	for (size_t i = 0; c->cache && i < CACHE_WAYS; i++) {
		struct cached *e = &cache_set(c->cache, tag)[i];
		if (!victim || e->used < victim->used)
			victim = e;
	}
	if (victim) {
		cached_drop(c->cache, victim);
		/* Stay under the byte cap: the oldest go first. */
		while (c->cache->bytes + f->size > CACHE_BYTES) {
			struct cached *old = NULL;
			for (size_t i = 0; i < CACHE_SLOTS; i++) {
				struct cached *e = &c->cache->slot[i];
				if (e->used && (!old || e->used < old->used))
					old = e;
			}
			if (!old)
				break;
			cached_drop(c->cache, old);
		}
		memcpy(victim->tag, tag, 16);
		victim->uid = f->g.link.uid;
		victim->used = ++c->cache->clock;
		victim->data = copy;
		victim->size = f->size;
		c->cache->bytes += f->size;
		memcpy(victim->mime, f->mime, sizeof(victim->mime));
		memcpy(victim->name, f->name, sizeof(victim->name));
		memcpy(victim->sha, f->sha, sizeof(victim->sha));
		copy = NULL;
	}
	pthread_mutex_unlock(&c->lock);
	free(copy);
}

static int64_t now_s(void)
{
	return (int64_t)time(NULL);
}

static bool may_fetch(const struct conn *k)
{
	const struct control_ops *o = &k->c->ops;

	return (o->gateway_uid != CONTROL_NOBODY && k->uid == o->gateway_uid) ||
	       (o->owner_uid != CONTROL_NOBODY && k->uid == o->owner_uid);
}

static int http_status(int err)
{
	switch (err < 0 ? -err : err) {
	case ENOENT: return 404;
	case EKEYEXPIRED: case EKEYREVOKED: return 410;
	case EPERM: case EACCES: return 403;
	case EAGAIN: return 503;
	default: return 500;
	}
}

/* ---- the audit of fetches: noted here, written in batches ---- */

static void note_fetch(struct control *c, const struct share_grant *g, bool valid,
		       const char *client, int status, uint64_t bytes)
{
	struct share_fetch_note n = { .has_tid = valid, .uid = -1, .status = status,
				      .bytes = bytes };

	if (valid) {
		memcpy(n.tid, g->t.id, sizeof(n.tid));
		n.uid = g->link.uid == UINT32_MAX ? -1 : (int64_t)g->link.uid;
		n.partner_id = (int64_t)g->t.partner;
		n.variant = g->t.variant;
	}
	snprintf(n.client, sizeof(n.client), "%s", client ? client : "");
	pthread_mutex_lock(&c->lock);
	if (c->n_notes == c->cap_notes && c->cap_notes < MAX_NOTES) {
		size_t cap = c->cap_notes ? 2 * c->cap_notes : 64;
		struct share_fetch_note *p = realloc(c->notes, cap * sizeof(*p));
		if (p) {
			c->notes = p;
			c->cap_notes = cap;
		}
	}
	if (c->n_notes < c->cap_notes)
		c->notes[c->n_notes++] = n;
	else
		c->dropped_notes++;   /* said in the trail at the next flush */
	pthread_mutex_unlock(&c->lock);
}

struct notes { struct share_fetch_note *v; size_t n; uint64_t dropped; struct iverr e; };

static int write_notes(struct vault *v, void *arg)
{
	struct notes *n = arg;

	if (n->dropped) {
		char detail[96];
		snprintf(detail, sizeof(detail), "%" PRIu64 " fetches not itemised: the audit "
			 "trail fell behind", n->dropped);
		vault_audit(v, -1, "share.fetch", "-", "dropped", detail);
	}
	return share_audit_fetches(v, n->v, n->n, &n->e);
}

/* The audit trail is synchronous (one fsync per transaction): fetches are
 * written once a second, or every AUDIT_BATCH, in one transaction. */
void control_flush_notes(struct control *c, bool force)
{
	struct notes n = { 0 };

	pthread_mutex_lock(&c->lock);
	if ((c->n_notes || c->dropped_notes) &&
	    (force || c->n_notes >= AUDIT_BATCH || now_s() != c->flushed)) {
		n.v = c->notes;
		n.n = c->n_notes;
		n.dropped = c->dropped_notes;
		c->notes = NULL;
		c->n_notes = c->cap_notes = 0;
		c->dropped_notes = 0;
		c->flushed = now_s();
	}
	pthread_mutex_unlock(&c->lock);
	if ((n.n || n.dropped) && c->ops.call_vault)
		c->ops.call_vault(c->ops.arg, c->ops.gateway_uid == CONTROL_NOBODY ?
				  (uint32_t)getuid() : c->ops.gateway_uid, write_notes, &n);
	free(n.v);
}

/* ---- reservations ---- */

/* Reserves @len bytes (and, with @eof, a use) of a limited link: false
 * when its uses or its byte budget are spent. */
static bool reserve(struct control *c, const struct fetch *f, uint64_t len, bool eof)
{
	struct reservation *r = NULL;
	uint64_t budget = share_byte_budget(&f->g.link, f->size);
	bool ok = false;

	pthread_mutex_lock(&c->lock);
	for (size_t i = 0; i < c->n_reserved && !r; i++)
		if (!memcmp(c->reserved[i].tid, f->g.t.id, TOKEN_ID_LEN))
			r = &c->reserved[i];
	if (!r && c->n_reserved < MAX_RESERVED) {
		r = &c->reserved[c->n_reserved++];
		memcpy(r->tid, f->g.t.id, TOKEN_ID_LEN);
		r->count = 0;
		r->bytes = 0;
	}
	if (r && (!eof || f->g.link.uses + r->count < f->g.link.uses_max) &&
	    f->g.link.served <= budget && r->bytes <= budget - f->g.link.served &&
	    len <= budget - f->g.link.served - r->bytes) {
		r->count += eof;
		r->bytes += len;
		ok = true;
	} else if (r && r->count == 0 && r->bytes == 0) {
		*r = c->reserved[--c->n_reserved];
	}
	pthread_mutex_unlock(&c->lock);
	return ok;
}

static void unreserve(struct control *c, const struct fetch *f)
{
	pthread_mutex_lock(&c->lock);
	for (size_t i = 0; i < c->n_reserved; i++) {
		struct reservation *r = &c->reserved[i];
		if (memcmp(r->tid, f->g.t.id, TOKEN_ID_LEN))
			continue;
		r->count -= f->reserved_eof;
		r->bytes -= f->reserved_len;
		if (r->count == 0 && r->bytes == 0)
			*r = c->reserved[--c->n_reserved];
		break;
	}
	pthread_mutex_unlock(&c->lock);
}

/* ---- fetches ---- */

struct authorize {
	const char *token;
	size_t len;
	const struct cidr *client;
	bool checked;                /* the signature is known good */
	struct share_grant *g;
	char url[256];               /* share.base-url: the page's absolute links */
	struct iverr e;
};

static int do_authorize(struct vault *v, void *arg)
{
	struct authorize *a = arg;

	snprintf(a->url, sizeof(a->url), "%s", share_base_url(v));
	return share_authorize(v, a->token, a->len, a->client, now_s(), a->checked, a->g,
			       &a->e);
}

struct public_key { const uint8_t *kid; uint8_t pk[TOKEN_PK_LEN]; };

static int do_public_key(struct vault *v, void *arg)
{
	struct public_key *p = arg;

	return share_public_key(v, p->kid, p->pk, NULL);
}

/* Verifies the token's signature outside the daemon's lock, once per
 * token: afterwards a keyed hash of it says it was good.  false: not
 * verified (malformed, unknown key, bad signature: share_authorize will
 * say which). */
static bool signature_good(struct conn *k, const char *token, size_t len)
{
	struct control *c = k->c;
	uint8_t h[16];
	size_t slot;
	struct token_wire w;
	struct public_key p;
	bool hit;

	crypto_generichash(h, sizeof(h), (const uint8_t *)token, len, c->sig_key,
			   sizeof(c->sig_key));
	slot = (size_t)(h[0] | h[1] << 8 | h[2] << 16) % SIG_CACHE;
	pthread_mutex_lock(&c->lock);
	hit = sodium_memcmp(c->sig_seen[slot], h, sizeof(h)) == 0;
	pthread_mutex_unlock(&c->lock);
	if (hit)
		return true;
	if (token_decode(token, len, &w) < 0)
		return false;
	p.kid = w.t.kid;
	if (c->ops.call_vault(c->ops.arg, k->uid, do_public_key, &p) < 0 || !token_verify(&w, p.pk))
		return false;
	pthread_mutex_lock(&c->lock);
	memcpy(c->sig_seen[slot], h, sizeof(h));
	pthread_mutex_unlock(&c->lock);
	return true;
}

struct open_file {
	struct fetch *f;
	struct vault_file *vf;
	struct iverr e;
};

static int do_open_file(struct vault_session *s, void *arg)
{
	struct open_file *o = arg;
	int ret = vault_file_open(s, o->f->g.link.image_id, (enum vault_variant)o->f->g.t.variant,
				  &o->vf, &o->e);

	if (ret == -EAGAIN)   /* a thumbnail not made yet: to the front of the queue */
		vault_thumb_queue(s, o->f->g.link.image_id, true, false, NULL);
	return ret;
}

static int do_report_damage(struct vault_session *s, void *arg)
{
	struct open_file *o = arg;

	(void)s;
	vault_file_report_damage(o->vf, o->e.msg);
	return 0;
}

static void fetch_free(struct control *c, struct fetch *f)
{
	if (!f)
		return;
	vault_file_close(f->f);
	if (f->held)
		c->ops.unhold(c->ops.arg, f->g.link.uid);
	free(f->buf);
	free(f);
}

/* Opens what the link serves; a thumbnail not made yet is waited for. */
static int fetch_open_variant(struct conn *k, struct fetch *f, struct iverr *e)
{
	const struct control_ops *ops = &k->c->ops;
	struct open_file o = { .f = f };
	int ret;

	/* The file is read outside the lock: its vault must stay unlocked. */
	if (ops->hold) {
		if ((ret = ops->hold(ops->arg, f->g.link.uid)) < 0)
			return iverr_set(e, EAGAIN, "the vault is locked; its links work again "
					 "once its owner unlocks it");
		f->held = true;
	}
	for (int waited = 0;; waited += 50) {
		iverr_clear(&o.e);
		ret = ops->call(ops->arg, f->g.link.uid, do_open_file, &o);
		if (ret != -EAGAIN || waited >= THUMB_WAIT_MS)
			break;
		if (waited == 0)
			ops->changed(ops->arg, f->g.link.image_id);   /* wakes the worker */
		usleep(50 * 1000);
	}
	if (ret < 0) {
		*e = o.e;
		return ret == -EAGAIN ? iverr_set(e, EAGAIN, "the thumbnail is not made yet; "
						  "try again in a moment") : ret;
	}
	memcpy(f->sha, vault_file_sha256(o.vf), sizeof(f->sha));
	snprintf(f->name, sizeof(f->name), "%s", vault_file_image(o.vf)->name);
	if (f->g.t.variant == TOKEN_ORIGINAL) {
		/* Links serve originals without location and device metadata. */
		ret = share_read_stripped(o.vf, &f->buf, &f->size, f->mime, &o.e);
		if (ret == -IV_EDAMAGE)
			ops->call(ops->arg, f->g.link.uid, do_report_damage, &o);
		vault_file_close(o.vf);
		if (ret < 0)
			*e = o.e;
		return ret;
	}
	f->f = o.vf;
	f->size = vault_file_size(o.vf);
	snprintf(f->mime, sizeof(f->mime), "%s", vault_file_mime(o.vf));
	return 0;
}

/* An entity tag that changes with the bytes served: the version's SHA-256,
 * the variant and the stripper's version. */
static void fetch_etag(const struct fetch *f, char out[36])
{
	static const char stripper[] = "strip-1";
	uint8_t h[16];
	crypto_generichash_state st;

	crypto_generichash_init(&st, NULL, 0, sizeof(h));
	crypto_generichash_update(&st, f->sha, sizeof(f->sha));
	crypto_generichash_update(&st, &f->g.t.variant, 1);
	crypto_generichash_update(&st, (const uint8_t *)stripper, sizeof(stripper));
	crypto_generichash_final(&st, h, sizeof(h));
	out[0] = '"';
	sodium_bin2hex(out + 1, 33, h, sizeof(h));
	out[33] = '"';
	out[34] = '\0';
}

struct retag { struct share_grant *g; };

/* The preview's thumbnail is not the link's own variant: its own tag. */
static int do_retag(struct vault *v, void *arg)
{
	struct retag *t = arg;

	return share_content_tag(v, t->g, TOKEN_THUMB, t->g->content_tag);
}

/* A small file read whole into f->buf, so it can be kept (and the file
 * closed at once). */
static int fetch_read_whole(struct conn *k, struct fetch *f, struct iverr *e)
{
	ssize_t n;

	if (f->buf || !f->f)
		return 0;
	f->buf = malloc(f->size ? f->size : 1);
	if (!f->buf)
		return iverr_set(e, ENOMEM, "out of memory");
	n = vault_file_pread(f->f, f->buf, f->size, 0, e);
	if (n != (ssize_t)f->size) {
		struct open_file o = { .f = f, .vf = f->f, .e = *e };
		if (n < 0)
			k->c->ops.call(k->c->ops.arg, f->g.link.uid, do_report_damage, &o);
		return n < 0 ? (int)n : iverr_set(e, EIO, "short read");
	}
	vault_file_close(f->f);
	f->f = NULL;
	return 0;
}

static int handle_fetch_open(struct conn *k, const struct proto_msg *m)
{
	struct control *c = k->c;
	const struct proto_field *tok = proto_get(m, T_TOKEN);
	struct fetch *f = calloc(1, sizeof(*f));
	struct cidr client;
	bool have_client;
	struct authorize a = { .g = f ? &f->g : NULL };
	char etag[36];
	int ret;

	control_fetch_end(k);
	if (!f)
		return send_error(k, -ENOMEM, NULL);
	if (!tok) {
		free(f);
		return -EPROTO;
	}
	proto_get_str(m, T_CLIENT, f->client, sizeof(f->client));
	have_client = cidr_parse_addr(f->client, &client) == 0;
	/* The audit names the address as parsed, never the bytes the peer sent. */
	if (have_client)
		cidr_format(&client, false, f->client);
	else
		snprintf(f->client, sizeof(f->client), "%s", f->client[0] ? "invalid" : "");
	a.token = (const char *)tok->val;
	a.len = tok->len;
	a.client = have_client ? &client : NULL;
	a.checked = signature_good(k, a.token, a.len);
	ret = c->ops.call_vault(c->ops.arg, k->uid, do_authorize, &a);
	/* Any valid link shows its image's thumbnail on its preview page. */
	uint64_t want;
	if (ret == 0 && proto_get_u64(m, T_VARIANT, &want) == 0 && want == TOKEN_THUMB) {
		struct retag t = { .g = &f->g };
		f->preview = true;
		f->g.t.variant = TOKEN_THUMB;
		c->ops.call_vault(c->ops.arg, k->uid, do_retag, &t);
	}
	if (ret == 0 && !cache_get(c, f, f->g.content_tag)) {
		ret = fetch_open_variant(k, f, &a.e);
		if (ret == 0 && f->size <= INLINE_MAX && (ret = fetch_read_whole(k, f, &a.e)) == 0)
			cache_put(c, f, f->g.content_tag);
	}
	if (ret < 0) {
		note_fetch(c, &f->g, f->g.t.expires != 0, f->client,
			   http_status(ret), 0);
		fetch_free(k->c, f);
		return send_error(k, ret, a.e.msg);
	}
	k->fetch = f;
	fetch_etag(f, etag);
	proto_begin(&k->out, P_OK);
	proto_put_u64(&k->out, T_SIZE, f->size);
	proto_put_str(&k->out, T_MIME, f->mime);
	proto_put_str(&k->out, T_ETAG, etag);
	proto_put(&k->out, T_NAME, f->name, strlen(f->name));
	proto_put_u64(&k->out, T_DISPOSITION, f->g.t.disposition);
	proto_put_u64(&k->out, T_EXPIRES, (uint64_t)f->g.t.expires);
	proto_put(&k->out, T_TOKEN_ID, f->g.t.id, TOKEN_ID_LEN);
	proto_put_str(&k->out, T_PARTNER, f->g.partner);
	proto_put_u64(&k->out, T_VARIANT, f->g.t.variant);
	proto_put_u64(&k->out, T_USES_MAX, f->g.link.uses_max);
	proto_put_u64(&k->out, T_USES, f->g.link.uses);
	/* Where the gateway is reached: its preview page never takes that
	 * from a request's Host header. */
	if (a.url[0])
		proto_put_str(&k->out, T_URL, a.url);
	/* A small body of an unlimited link comes with the answer: one round
	 * trip serves a thumbnail. */
	uint64_t inline_max = 0;
	if (proto_get_u64(m, T_LENGTH, &inline_max) == 0 && f->size <= inline_max &&
	    f->size <= INLINE_MAX && (!f->g.link.uses_max || f->preview)) {
		uint8_t *dst = k->out.buf + k->out.len + 3;
		if (f->buf) {
			memcpy(dst, f->buf, f->size);
		} else {
			struct iverr e = { 0 };
			ssize_t n = vault_file_pread(f->f, dst, f->size, 0, &e);
			if (n != (ssize_t)f->size) {
				struct open_file o = { .f = f, .vf = f->f, .e = e };
				if (n < 0)
					c->ops.call(c->ops.arg, f->g.link.uid, do_report_damage, &o);
				return send_error(k, n < 0 ? (int)n : -EIO, e.msg);
			}
		}
		proto_put(&k->out, T_DATA, dst, f->size);
	}
	return send_msg(k);
}

static int handle_fetch_body(struct conn *k, const struct proto_msg *m)
{
	struct fetch *f = k->fetch;
	uint64_t off, len;

	if (!f || proto_get_u64(m, T_OFFSET, &off) < 0 || proto_get_u64(m, T_LENGTH, &len) < 0)
		return -EPROTO;
	if (off > f->size || len > f->size - off)
		return send_error(k, -ERANGE, "the range is outside the file");
	/* One range per fetch: a second would let one reservation cover two
	 * transfers. */
	if (f->announced)
		return send_error(k, -EALREADY, "this fetch announced its range already; "
				  "open the link again for another range");
	/* A limited link: the bytes come out of its budget, and a transfer
	 * that reaches the last byte holds a use until it ends. */
	if (f->g.link.uses_max && !f->preview) {
		bool eof = off + len == f->size;
		if (!reserve(k->c, f, len, eof)) {
			note_fetch(k->c, &f->g, true, f->client, 410, 0);
			return send_error(k, -EKEYREVOKED, "the link was used up");
		}
		f->reserved = true;
		f->reserved_eof = eof;
		f->reserved_len = len;
	}
	f->announced = true;
	f->body_off = off;
	f->body_len = len;
	return send_type(k, P_OK);
}

/* Bytes are handed out only inside the range FETCH_BODY announced (and,
 * for a limited link, reserved), and each of them once: the use count and
 * the byte budget do not rest on the gateway's word.  NULL when [off, off +
 * *len) may be read (*len cut to what may); else why not. */
static const char *read_refused(const struct fetch *f, uint64_t off, uint64_t *len)
{
	uint64_t end = f->body_off + f->body_len;

	if (!f->announced)
		return "FETCH_READ before FETCH_BODY: announce the range to be sent first "
		       "(docs/PROTOCOL.md)";
	if (off < f->body_off || off >= end || f->handed >= f->body_len)
		return "FETCH_READ outside the range announced by FETCH_BODY, or past its "
		       "length; open the link again";
	if (*len > end - off)
		*len = end - off;
	if (*len > f->body_len - f->handed)
		*len = f->body_len - f->handed;
	return NULL;
}

static int handle_fetch_read(struct conn *k, const struct proto_msg *m)
{
	struct fetch *f = k->fetch;
	uint64_t off, len;
	struct iverr e = { 0 };
	const char *why;

	if (!f || proto_get_u64(m, T_OFFSET, &off) < 0 || proto_get_u64(m, T_LENGTH, &len) < 0)
		return -EPROTO;
	if (off > f->size)
		return send_error(k, -ERANGE, "the offset is past the end of the file");
	if (len > PROTO_DATA_MAX - 16)
		len = PROTO_DATA_MAX - 16;
	if ((why = read_refused(f, off, &len)))
		return send_error(k, -EPERM, why);
	proto_begin(&k->out, P_DATA);
	if (f->buf) {
		proto_put(&k->out, T_DATA, f->buf + off, (size_t)len);
		f->handed += len;
	} else {
		/* Decrypted straight into the reply; no lock is needed for it. */
		uint8_t *dst = k->out.buf + k->out.len + 3;
		ssize_t n = vault_file_pread(f->f, dst, (size_t)len, off, &e);
		if (n < 0) {
			struct open_file o = { .f = f, .vf = f->f, .e = e };
			k->c->ops.call(k->c->ops.arg, f->g.link.uid, do_report_damage, &o);
			return send_error(k, (int)n, e.msg);
		}
		proto_put(&k->out, T_DATA, dst, (size_t)n);
		f->handed += (uint64_t)n;
	}
	return send_msg(k);
}

struct use { const uint8_t *tid; bool completed; uint64_t bytes; struct iverr e; };

static int do_count_use(struct vault *v, void *arg)
{
	struct use *u = arg;

	return share_count_use(v, u->tid, u->completed, u->bytes, &u->e);
}

static int handle_fetch_done(struct conn *k, const struct proto_msg *m)
{
	struct fetch *f = k->fetch;
	uint64_t status = 0, bytes = 0, complete = 0;

	if (!f)
		return -EPROTO;
	proto_get_u64(m, T_STATUS, &status);
	proto_get_u64(m, T_BYTES, &bytes);
	proto_get_u64(m, T_COMPLETE, &complete);
	if (f->reserved) {
		/* The budget is charged what this daemon handed out, whatever the
		 * gateway says it sent. */
		struct use u = { .tid = f->g.t.id, .completed = f->reserved_eof && complete,
				 .bytes = f->handed < f->reserved_len ? f->handed : f->reserved_len };
		if (u.completed || u.bytes)
			k->c->ops.call_vault(k->c->ops.arg, k->uid, do_count_use, &u);
	}
	if (f->reserved)
		unreserve(k->c, f);
	note_fetch(k->c, &f->g, true, f->client, status > 999 ? 0 : (int)status, bytes);
	fetch_free(k->c, f);
	k->fetch = NULL;
	return send_type(k, P_OK);
}

void control_fetch_end(struct conn *k)
{
	struct fetch *f = k->fetch;

	if (!f)
		return;
	if (f->reserved)
		unreserve(k->c, f);
	note_fetch(k->c, &f->g, true, f->client, 0, 0);   /* the gateway went away */
	fetch_free(k->c, f);
	k->fetch = NULL;
}

int control_fetch_request(struct conn *k, const struct proto_msg *m)
{
	if (!k->c->ops.call_vault)
		return send_error(k, -ENOTSUP, "share links are off in this daemon");
	if (!may_fetch(k))
		return send_error(k, -EPERM, "only the gateway fetches through links");
	switch (m->type) {
	case P_FETCH_OPEN: return handle_fetch_open(k, m);
	case P_FETCH_BODY: return handle_fetch_body(k, m);
	case P_FETCH_READ: return handle_fetch_read(k, m);
	case P_FETCH_DONE: return handle_fetch_done(k, m);
	default: return -EPROTO;
	}
}
