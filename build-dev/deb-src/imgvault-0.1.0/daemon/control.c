#define _GNU_SOURCE   /* struct ucred */
#include "control.h"

#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include <sodium.h>

#include "image.h"
#include "control_i.h"
#include "proto.h"

#define STR_(x) #x
#define STR(x) STR_(x)

static bool stopping(struct control *c)
{
	return __atomic_load_n(&c->stop, __ATOMIC_ACQUIRE);
}

/* ---- sending ---- */

int send_msg(struct conn *k)
{
	if (proto_finish(&k->out) < 0)
		return -EMSGSIZE;
	if (send(k->fd, k->out.buf, k->out.len, MSG_NOSIGNAL) != (ssize_t)k->out.len)
		return -errno;
	return 0;
}

int send_error(struct conn *k, int err, const char *msg)
{
	proto_begin(&k->out, P_ERROR);
	proto_put_u64(&k->out, T_ERRNO, (uint64_t)(err < 0 ? -err : err));
	proto_put_str(&k->out, T_MESSAGE, msg && *msg ? msg : strerror(err < 0 ? -err : err));
	return send_msg(k);
}

int send_type(struct conn *k, enum proto_type type)
{
	proto_begin(&k->out, type);
	return send_msg(k);
}

/* ---- requests ---- */

struct request {
	struct conn *k;
	const struct proto_msg *m;
	char album[CATALOG_NAME_MAX + 1];
	char name[CATALOG_NAME_MAX + 1];
	struct iverr e;
	/* results */
	struct vault_file *f;
	int64_t image_id;
	struct vault_staged st;
	struct listing { char name[CATALOG_NAME_MAX + 1]; struct vault_image im; bool album; } *v;
	size_t n, cap;
	uint64_t pending;
};

static int listing_push(struct request *r, const char *name, size_t len,
			const struct vault_image *im)
{
	if (r->n == r->cap) {
		size_t cap = r->cap ? 2 * r->cap : 64;
		struct listing *p = realloc(r->v, cap * sizeof(*p));
		if (!p)
			return -ENOMEM;
		r->v = p;
		r->cap = cap;
	}
	struct listing *l = &r->v[r->n++];
	snprintf(l->name, sizeof(l->name), "%.*s", (int)len, name);
	l->album = !im;
	if (im)
		l->im = *im;
	return 0;
}

static int ls_album_fn(int64_t id, const char *name, size_t len, void *arg)
{
	(void)id;
	return listing_push(arg, name, len, NULL);
}

static int ls_image_fn(const struct vault_image *im, void *arg)
{
	return listing_push(arg, im->name, im->name_len, im);
}

static int do_ls(struct vault_session *s, void *arg)
{
	struct request *r = arg;
	int64_t album;
	int ret;

	if (!r->album[0])
		return vault_album_list(s, ls_album_fn, r, &r->e);
	if ((ret = vault_album_find(s, r->album, strlen(r->album), &album, &r->e)) < 0)
		return ret;
	return vault_image_list(s, album, ls_image_fn, r, &r->e);
}

static int find_image(struct vault_session *s, struct request *r, struct vault_image *im)
{
	int64_t album;
	int ret = vault_album_find(s, r->album, strlen(r->album), &album, &r->e);

	return ret < 0 ? ret : vault_image_find(s, album, r->name, strlen(r->name), im, &r->e);
}

static int do_cat_open(struct vault_session *s, void *arg)
{
	struct request *r = arg;
	struct vault_image im;
	uint64_t variant = VAULT_ORIGINAL;
	int ret;

	proto_get_u64(r->m, T_VARIANT, &variant);
	if (variant > VAULT_THUMB)
		return iverr_set(&r->e, EINVAL, "unknown variant");
	if ((ret = find_image(s, r, &im)) < 0)
		return ret;
	return vault_file_open(s, im.id, (enum vault_variant)variant, &r->f, &r->e);
}

static int do_cat_damage(struct vault_session *s, void *arg)
{
	struct request *r = arg;

	(void)s;
	vault_file_report_damage(r->f, r->e.msg);
	return 0;
}

static int do_rm(struct vault_session *s, void *arg)
{
	struct request *r = arg;
	struct vault_image im;
	int ret = find_image(s, r, &im);

	if (ret == 0 && (ret = vault_image_remove(s, im.id, &r->e)) == 0)
		r->image_id = im.id;
	return ret;
}

static int do_import_commit(struct vault_session *s, void *arg)
{
	struct request *r = arg;
	struct vault_image im;
	int64_t album;
	int ret = vault_album_ensure(s, r->album, strlen(r->album), &album, &r->e);

	if (ret < 0) {
		vault_discard_staged(s, &r->st);
		return ret;
	}
	ret = vault_commit_staged(s, album, r->name, strlen(r->name), &r->st, &im, &r->e);
	if (ret == 0)
		r->image_id = im.id;
	return ret;
}

static int do_refused(struct vault_session *s, void *arg)
{
	(void)arg;
	vault_note_refused(s, "content refused");
	return 0;
}

static int do_pending(struct vault_session *s, void *arg)
{
	struct request *r = arg;

	return vault_thumb_pending_count(s, &r->pending, NULL);
}

static int64_t now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static int timeout_ms(const struct control *c)
{
	return c->ops.timeout_ms > 0 ? c->ops.timeout_ms : IDLE_TIMEOUT_MS;
}

/* ---- each uid's share of the socket ---- */

/* How many connections @uid may hold, and whether from an allowance of its
 * own (root, the gateway, a desktop daemon's owner) or from the pool that
 * ordinary users share. */
static int allowance(const struct control *c, uint32_t uid, bool *own)
{
	*own = true;
	if (uid == 0)
		return MAX_ROOT;
	if (c->ops.gateway_uid != CONTROL_NOBODY && uid == c->ops.gateway_uid)
		return MAX_GATEWAY;
	if (!c->ops.system && uid == c->ops.owner_uid)
		return MAX_GATEWAY;
	*own = false;
	return MAX_PER_UID;
}

/* Under c->lock: @uid's slot, or with @add a free one for it. */
static struct uid_share *share_of(struct control *c, uint32_t uid, bool add)
{
	struct uid_share *free_slot = NULL;

	for (size_t i = 0; i < MAX_UIDS; i++) {
		if (c->shares[i].conns && c->shares[i].uid == uid)
			return &c->shares[i];
		if (!c->shares[i].conns && !free_slot)
			free_slot = &c->shares[i];
	}
	if (!add || !free_slot)
		return NULL;
	*free_slot = (struct uid_share){ .uid = uid };
	return free_slot;
}

/* Counts a new connection of @uid in; false when its share is spent. */
static bool admit(struct control *c, uint32_t uid)
{
	bool own, ok = false;
	int cap = allowance(c, uid, &own);
	struct uid_share *sh;

	pthread_mutex_lock(&c->lock);
	sh = share_of(c, uid, true);
	if (sh && sh->conns < cap && (own || c->others < MAX_CONNECTIONS)) {
		sh->conns++;
		c->others += !own;
		c->connections++;
		ok = true;
	}
	pthread_mutex_unlock(&c->lock);
	return ok;
}

static void release(struct control *c, uint32_t uid)
{
	bool own;
	struct uid_share *sh;

	allowance(c, uid, &own);
	pthread_mutex_lock(&c->lock);
	if ((sh = share_of(c, uid, false)))
		sh->conns--;
	c->others -= !own;
	c->connections--;
	pthread_cond_broadcast(&c->idle);
	pthread_mutex_unlock(&c->lock);
}

/* Takes @n bytes of import buffer for @k's uid from the daemon's budget:
 * one uid holds at most the store's image size limit, everyone together
 * at most the budget.  -EBUSY when either is spent. */
static int upload_take(struct conn *k, uint64_t n, struct iverr *e)
{
	struct control *c = k->c;
	uint64_t budget = c->ops.upload_budget ? c->ops.upload_budget : UPLOAD_BUDGET;
	struct uid_share *sh;
	int ret = 0;

	pthread_mutex_lock(&c->lock);
	sh = share_of(c, k->uid, false);
	if (!sh || sh->upload + n > c->ops.max_bytes)
		ret = iverr_set(e, EBUSY, "your imports in flight already hold %llu of the %llu "
				"bytes one user may upload at once; import one file at a time",
				(unsigned long long)(sh ? sh->upload : 0),
				(unsigned long long)c->ops.max_bytes);
	else if (c->upload + n > budget)
		ret = iverr_set(e, EBUSY, "imgvaultd is receiving too many imports at once; try "
				"again shortly");
	if (ret == 0) {
		sh->upload += n;
		c->upload += n;
	}
	pthread_mutex_unlock(&c->lock);
	return ret;
}

static void upload_give(struct conn *k, uint64_t n)
{
	struct control *c = k->c;
	struct uid_share *sh;

	if (!n)
		return;
	pthread_mutex_lock(&c->lock);
	if ((sh = share_of(c, k->uid, false)))
		sh->upload -= n;
	c->upload -= n;
	pthread_mutex_unlock(&c->lock);
}

/* Waits for the next message of a transfer: -ETIMEDOUT when none comes
 * within the timeout, or past @deadline, or the daemon stops. */
static int wait_message(struct conn *k, int64_t deadline, struct iverr *e)
{
	struct pollfd p = { .fd = k->fd, .events = POLLIN };
	int64_t until = now_ms() + timeout_ms(k->c);

	if (until > deadline)
		until = deadline;
	for (;;) {
		int64_t left = until - now_ms();
		int r;

		if (left <= 0 || stopping(k->c))
			return iverr_set(e, ETIMEDOUT, "the import stalled: no data for %d ms",
					 timeout_ms(k->c));
		r = poll(&p, 1, left < STOP_POLL_MS ? (int)left : STOP_POLL_MS);
		if (r > 0)
			return 0;
		if (r < 0 && errno != EINTR)
			return iverr_set(e, EPROTO, "poll: %s", strerror(errno));
	}
}

/*
 * Receives the DATA messages of an import, up to END, into a buffer charged
 * to the peer's share of the upload budget (*cap bytes; the caller gives
 * them back).  Bounded in bytes (@max), in time (data must keep coming, and
 * all of it within TRANSFER_ROUNDS timeouts) and so in messages (each
 * carries at least one byte).
 */
static int recv_data(struct conn *k, uint8_t **buf, size_t *len, size_t *cap, uint64_t max,
		     struct iverr *e)
{
	uint8_t *msg = malloc(PROTO_MAX), *all = NULL;
	int64_t deadline = now_ms() + (int64_t)timeout_ms(k->c) * TRANSFER_ROUNDS;
	struct proto_msg m;
	int ret = 0;

	*buf = NULL;
	*len = *cap = 0;
	if (!msg)
		return iverr_set(e, ENOMEM, "out of memory");
	for (;;) {
		const struct proto_field *f;
		ssize_t n;

		if ((ret = wait_message(k, deadline, e)) < 0)
			break;
		n = recv(k->fd, msg, PROTO_MAX, 0);
		if (n <= 0 || proto_parse(msg, (size_t)n, &m) < 0) {
			ret = -EPROTO;
			break;
		}
		if (m.type == P_END)
			break;
		f = proto_get(&m, T_DATA);
		if (m.type != P_DATA || !f || !f->len) {
			ret = -EPROTO;
			break;
		}
		if (*len + f->len > max) {
			ret = iverr_set(e, EFBIG, "the image is over the store's size limit");
			break;
		}
		if (*len + f->len > *cap) {
			/* Grow by steps, never past @max: no doubling into memory the
			 * budget did not grant. */
			size_t ncap = (*len + f->len + UPLOAD_STEP - 1) / UPLOAD_STEP * UPLOAD_STEP;
			uint8_t *p;

			if (ncap > max)
				ncap = (size_t)max;
			if ((ret = upload_take(k, ncap - *cap, e)) < 0)
				break;
			if (!(p = realloc(all, ncap))) {
				upload_give(k, ncap - *cap);
				ret = iverr_set(e, ENOMEM, "out of memory");
				break;
			}
			all = p;
			*cap = ncap;
		}
		memcpy(all + *len, f->val, f->len);
		*len += f->len;
	}
	free(msg);
	*buf = all;   /* on failure too: the caller frees it and gives *cap back */
	return ret;
}

int control_locked(int ret, struct iverr *e)
{
	if (ret == -ENOKEY)
		return iverr_set(e, ENOKEY, LOCKED_MESSAGE);
	return ret;
}

int control_call_own(struct conn *k, int (*fn)(struct vault_session *s, void *arg), void *arg,
		     struct iverr *e)
{
	return control_locked(k->c->ops.call(k->c->ops.arg, k->uid, fn, arg), e);
}

static int locked_words(struct request *r, int ret)
{
	return control_locked(ret, &r->e);
}

/* Runs @fn with the peer's session under the daemon's lock. */
static int call(struct conn *k, int (*fn)(struct vault_session *s, void *arg),
		struct request *r)
{
	return control_call_own(k, fn, r, &r->e);
}

/* The session stays the peer's until unhold(): a lock waits for it. */
static int hold(struct conn *k, struct request *r)
{
	return locked_words(r, k->c->ops.hold(k->c->ops.arg, k->uid));
}

static void unhold(struct conn *k)
{
	k->c->ops.unhold(k->c->ops.arg, k->uid);
}

/* The peer's uid and, when it has a vault here, whether it is locked: uid
 * without pending means locked. */
static int handle_status(struct conn *k, struct request *r)
{
	struct control *c = k->c;
	int ret = call(k, do_pending, r);

	proto_begin(&k->out, P_OK);
	proto_put_str(&k->out, T_STORE, c->ops.store);
	proto_put_str(&k->out, T_MOUNT, c->ops.mountpoint);
	proto_put_str(&k->out, T_MODE, c->ops.system ? "system" : "desktop");
	if (ret == 0 || ret == -ENOKEY)
		proto_put_u64(&k->out, T_UID, k->uid);
	if (ret == 0)
		proto_put_u64(&k->out, T_PENDING, r->pending);
	return send_msg(k);
}

static int handle_ls(struct conn *k, struct request *r)
{
	int ret = call(k, do_ls, r);

	if (ret < 0)
		return send_error(k, ret, r->e.msg);
	for (size_t i = 0; i < r->n; i++) {
		const struct listing *l = &r->v[i];
		proto_begin(&k->out, P_ENTRY);
		proto_put_str(&k->out, T_KIND, l->album ? "album" : "image");
		proto_put(&k->out, T_NAME, l->name, strlen(l->name));
		if (!l->album) {
			proto_put_u64(&k->out, T_SIZE, l->im.size);
			proto_put_str(&k->out, T_MIME, l->im.mime);
			proto_put_u64(&k->out, T_MTIME, (uint64_t)l->im.mtime);
			proto_put(&k->out, T_ID, l->im.pid, sizeof(l->im.pid));
			proto_put(&k->out, T_SHA256, l->im.sha256, sizeof(l->im.sha256));
			proto_put_u64(&k->out, T_DAMAGED, l->im.damaged);
			proto_put_u64(&k->out, T_WIDTH, l->im.width);
			proto_put_u64(&k->out, T_HEIGHT, l->im.height);
		}
		if ((ret = send_msg(k)) < 0)
			return ret;
	}
	return send_type(k, P_END);
}

static int handle_cat(struct conn *k, struct request *r)
{
	uint8_t *buf;
	uint64_t off = 0;
	ssize_t n;
	int ret = hold(k, r);

	if (ret < 0)
		return send_error(k, ret, r->e.msg);
	if ((ret = call(k, do_cat_open, r)) < 0) {
		unhold(k);
		return send_error(k, ret, r->e.msg);
	}
	buf = malloc(PROTO_DATA_MAX);
	if (!buf) {
		vault_file_close(r->f);
		unhold(k);
		return send_error(k, -ENOMEM, NULL);
	}
	/* Decryption needs no lock: only a damaged chunk goes to the audit. */
	while ((n = vault_file_pread(r->f, buf, PROTO_DATA_MAX - 16, off, &r->e)) > 0) {
		proto_begin(&k->out, P_DATA);
		proto_put(&k->out, T_DATA, buf, (size_t)n);
		if ((ret = send_msg(k)) < 0)
			break;
		off += (uint64_t)n;
	}
	free(buf);
	if (n < 0) {
		call(k, do_cat_damage, r);
		ret = send_error(k, (int)n, r->e.msg);
	} else if (ret == 0) {
		ret = send_type(k, P_END);
	}
	vault_file_close(r->f);
	r->f = NULL;
	unhold(k);
	return ret;
}

static int stage_fn(struct vault_session *s, void *arg);

struct stage_args {
	struct request *r;
	struct image_sniffer *sniffer;
	const uint8_t *data;
	size_t len;
};

/* Staging touches only keys and blobs: run it outside the lock, with the
 * session fetched under it. */
static int get_session(struct vault_session *s, void *arg)
{
	*(struct vault_session **)arg = s;
	return 0;
}

static int stage_fn(struct vault_session *s, void *arg)
{
	struct stage_args *a = arg;

	return vault_stage(s, a->sniffer, a->data, a->len, &a->r->st, &a->r->e);
}

static int do_nothing(struct vault_session *s, void *arg)
{
	(void)s;
	(void)arg;
	return 0;
}

/*
 * A peer with no vault here, or a locked one, is refused before a byte of
 * payload is read or buffered.  A transfer refused or stalled half-way ends
 * the connection (after the ERROR, if any): the rest of it is not read.
 */
static int handle_import(struct conn *k, struct request *r)
{
	struct control *c = k->c;
	struct image_sniffer *sniffer = NULL;
	struct vault_session *s = NULL;
	uint8_t *data = NULL;
	size_t len = 0, cap = 0;
	int ret = call(k, do_nothing, r);

	if (ret == -ENOENT)
		iverr_set(&r->e, ENOENT, "you have no vault in this store");
	if (ret < 0) {
		send_error(k, ret, r->e.msg);
		return -ECONNABORTED;
	}
	ret = recv_data(k, &data, &len, &cap, c->ops.max_bytes, &r->e);
	if (ret == -EPROTO || ret == -ETIMEDOUT)
		goto out_free;   /* the connection is off the rails, or stalled */
	if (ret < 0) {
		send_error(k, ret, r->e.msg);
		ret = -ECONNABORTED;
		goto out_free;
	}
	if ((ret = image_sniffer_new(&sniffer, &r->e)) < 0 || (ret = hold(k, r)) < 0)
		goto out;
	if ((ret = locked_words(r, c->ops.call(c->ops.arg, k->uid, get_session, &s))) == 0) {
		struct stage_args a = { r, sniffer, data, len };
		ret = stage_fn(s, &a);
	}
	if (ret == -IV_EREJECT)
		call(k, do_refused, r);
	if (ret == 0 && (ret = call(k, do_import_commit, r)) == 0)
		c->ops.changed(c->ops.arg, r->image_id);
	unhold(k);
out:
	image_sniffer_free(sniffer);
	free(data);
	upload_give(k, cap);
	if (ret < 0)
		return send_error(k, ret, r->e.msg);
	proto_begin(&k->out, P_OK);
	proto_put_str(&k->out, T_NAME, r->name);
	return send_msg(k);
out_free:
	free(data);
	upload_give(k, cap);
	return ret;
}

static int handle_rm(struct conn *k, struct request *r)
{
	int ret = call(k, do_rm, r);

	if (ret < 0)
		return send_error(k, ret, r->e.msg);
	k->c->ops.changed(k->c->ops.arg, r->image_id);
	return send_type(k, P_OK);
}

/*
 * Whose vault a LOCK or UNLOCK is for: the peer's own, or with a uid field
 * another's, which only root may name, and only in system mode (a desktop
 * daemon serves one user).
 */
static int target_uid(struct conn *k, struct request *r, uint32_t *uid)
{
	uint64_t want;

	*uid = k->uid;
	if (!proto_get(r->m, T_UID))
		return 0;
	if (proto_get_u64(r->m, T_UID, &want) < 0 || want > UINT32_MAX)
		return iverr_set(&r->e, EINVAL, "the uid field is not a 64-bit number");
	if (want == k->uid)
		return 0;
	if (k->uid != 0 || !k->c->ops.system)
		return iverr_set(&r->e, EPERM, "only root may lock or unlock another user's "
				 "vault, and only on a system mount");
	*uid = (uint32_t)want;
	return 0;
}

static int handle_lock(struct conn *k, struct request *r)
{
	uint32_t uid;
	int ret = target_uid(k, r, &uid);

	if (ret == 0)
		ret = k->c->ops.lock(k->c->ops.arg, uid, k->uid, &r->e);
	if (ret < 0)
		return send_error(k, ret, r->e.msg);
	control_fetch_forget(k->c, uid);   /* no plaintext of a locked vault stays */
	return send_type(k, P_OK);
}

/*
 * Root on a system mount unlocks with the server key the daemon holds;
 * everyone else proves the passphrase.  The message holding it is wiped by
 * conn_main.
 */
static int handle_unlock(struct conn *k, struct request *r)
{
	const struct proto_field *pass = proto_get(r->m, T_PASSPHRASE);
	bool server = k->c->ops.system && k->uid == 0;
	uint32_t uid;
	int ret = target_uid(k, r, &uid);

	if (ret == 0 && !server && (!pass || !pass->len))
		ret = iverr_set(&r->e, EINVAL, "unlocking needs the vault's passphrase; "
				"imgvault unlock asks for it");
	else if (ret == 0 && !server && pass->len > PROTO_PASSPHRASE_MAX)
		ret = iverr_set(&r->e, EINVAL, "the passphrase is longer than %d bytes",
				PROTO_PASSPHRASE_MAX);
	if (ret == 0)
		ret = k->c->ops.unlock(k->c->ops.arg, uid, k->uid, server ? NULL : pass->val,
				       server ? 0 : pass->len, &r->e);
	if (ret < 0)
		return send_error(k, ret, r->e.msg);
	return send_type(k, P_OK);
}

/* One request: -EPROTO (or a failed send) ends the connection. */
static int handle(struct conn *k, const uint8_t *buf, size_t len)
{
	struct request r = { .k = k };
	struct proto_msg m;
	int ret;

	if (proto_parse(buf, len, &m) < 0)
		return -EPROTO;
	r.m = &m;
	proto_get_str(&m, T_ALBUM, r.album, sizeof(r.album));
	proto_get_str(&m, T_NAME, r.name, sizeof(r.name));
	switch (m.type) {
	case P_STATUS:
		ret = handle_status(k, &r);
		break;
	case P_LS:
		ret = handle_ls(k, &r);
		break;
	case P_CAT:
		ret = handle_cat(k, &r);
		break;
	case P_IMPORT:
		ret = handle_import(k, &r);
		break;
	case P_RM:
		ret = handle_rm(k, &r);
		break;
	case P_LOCK:
		ret = handle_lock(k, &r);
		break;
	case P_UNLOCK:
		ret = handle_unlock(k, &r);
		break;
	case P_SHARE: case P_SHARES: case P_REVOKE: case P_KEYS: case P_PARTNER:
		ret = control_share_request(k, &m);
		break;
	case P_FETCH_OPEN: case P_FETCH_BODY: case P_FETCH_READ: case P_FETCH_DONE:
		ret = control_fetch_request(k, &m);
		break;
	default:
		ret = -EPROTO;   /* a reply type sent as a request: fatal */
	}
	free(r.v);
	return ret;
}

static void *conn_main(void *arg)
{
	struct conn *k = arg;
	struct control *c = k->c;
	uint8_t *buf = malloc(PROTO_MAX);
	struct pollfd p = { .fd = k->fd, .events = POLLIN };
	int idle = 0;

	/* Short polls: a stopping daemon must not wait out an idle peer (the
	 * gateway keeps its connections open). */
	while (buf && !stopping(c) && idle < timeout_ms(c)) {
		int r = poll(&p, 1, STOP_POLL_MS);
		if (r == 0) {
			idle += STOP_POLL_MS;
			continue;
		}
		if (r < 0)
			break;
		idle = 0;
		ssize_t n = recv(k->fd, buf, PROTO_MAX, 0);
		int ret = n <= 0 ? -EPIPE : handle(k, buf, (size_t)n);
		/* An UNLOCK carried a passphrase: no copy of it stays here. */
		if (n > 3 && buf[3] == P_UNLOCK)
			sodium_memzero(buf, (size_t)n);
		if (ret < 0)
			break;
	}
	free(buf);
	control_fetch_end(k);
	close(k->fd);
	release(c, k->uid);
	free(k);
	return NULL;
}

static void *accept_main(void *arg)
{
	struct control *c = arg;
	struct pollfd p = { .fd = c->fd, .events = POLLIN };
	struct timeval sndtimeo = { .tv_sec = timeout_ms(c) / 1000,
				    .tv_usec = timeout_ms(c) % 1000 * 1000 };

	while (!stopping(c)) {
		struct ucred cred;
		socklen_t clen = sizeof(cred);
		struct conn *k;
		pthread_t t;
		int fd;

		control_flush_notes(c, false);
		if (poll(&p, 1, 200) != 1)
			continue;
		fd = accept4(c->fd, NULL, NULL, SOCK_CLOEXEC);
		if (fd < 0)
			continue;
		if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &clen) < 0 ||
		    !(k = calloc(1, sizeof(*k)))) {
			close(fd);
			continue;
		}
		k->c = c;
		k->fd = fd;
		k->uid = cred.uid;
		/* A reader that stops reading cannot hold a thread for ever. */
		setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &sndtimeo, sizeof(sndtimeo));
		if (!admit(c, k->uid)) {
			send_error(k, -EBUSY, "too many connections to imgvaultd from your uid (at "
				   "most " STR(MAX_PER_UID) " each, " STR(MAX_CONNECTIONS) " for all "
				   "users); close some and try again");
			close(fd);
			free(k);
			continue;
		}
		if (pthread_create(&t, NULL, conn_main, k) != 0) {
			close(fd);
			release(c, k->uid);
			free(k);
			continue;
		}
		pthread_detach(t);
	}
	return NULL;
}

int control_start(const char *path, const struct control_ops *ops, struct control **out,
		  struct iverr *e)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	struct control *c;
	int ret;

	*out = NULL;
	if (strlen(path) >= sizeof(sa.sun_path))
		return iverr_set(e, ENAMETOOLONG, "control socket path %s is too long", path);
	c = calloc(1, sizeof(*c));
	if (!c)
		return iverr_set(e, ENOMEM, "out of memory");
	c->ops = *ops;
	randombytes_buf(c->sig_key, sizeof(c->sig_key));
	snprintf(c->path, sizeof(c->path), "%s", path);
	pthread_mutex_init(&c->lock, NULL);
	pthread_cond_init(&c->idle, NULL);
	strcpy(sa.sun_path, path);
	c->fd = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0);
	if (c->fd < 0) {
		ret = iverr_set(e, errno, "cannot create the control socket: %s", strerror(errno));
		goto out_free;
	}
	unlink(path);   /* left by a crash: we hold the store's lock, so it is ours */
	if (bind(c->fd, (struct sockaddr *)&sa, sizeof(sa)) < 0 || listen(c->fd, 16) < 0) {
		ret = iverr_set(e, errno, "cannot listen on %s: %s", path, strerror(errno));
		goto out_close;
	}
	/* Anyone may connect: SO_PEERCRED decides what they may do. */
	chmod(path, 0666);
	if (pthread_create(&c->thread, NULL, accept_main, c) != 0) {
		ret = iverr_set(e, EAGAIN, "cannot start the control thread");
		goto out_close;
	}
	*out = c;
	return 0;
out_close:
	close(c->fd);
	unlink(path);
out_free:
	free(c);
	return ret;
}

void control_stop(struct control *c)
{
	if (!c)
		return;
	__atomic_store_n(&c->stop, true, __ATOMIC_RELEASE);
	pthread_join(c->thread, NULL);
	close(c->fd);
	unlink(c->path);
	pthread_mutex_lock(&c->lock);
	while (c->connections)
		pthread_cond_wait(&c->idle, &c->lock);
	pthread_mutex_unlock(&c->lock);
	control_flush_notes(c, true);
	control_fetch_forget(c, CONTROL_NOBODY);
	free(c->notes);
	free(c);
}
