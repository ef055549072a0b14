/* Thumbnails: jobs, making, committing (vault.h, "thumbnails"). */
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include <sodium.h>

#include "audit.h"
#include "bytes.h"
#include "membudget.h"
#include "vault_i.h"

int vault_thumb_job(struct vault_session *s, int64_t version_id, struct vault_thumb_job *job,
		    struct iverr *e)
{
	struct catalog_image ci;
	struct version_attrs at;
	int ret;

	memset(job, 0, sizeof(*job));
	ret = catalog_version_get(s->v->cat, version_id, &job->ver, e);
	if (ret == 0)
		ret = catalog_image_get(s->v->cat, job->ver.image_id, &ci, e);
	if (ret == 0 && (ci.uid != s->uid || ci.current_version != version_id))
		ret = -ENOENT;
	if (ret == -ENOENT) {
		/* Superseded or removed since it was queued: nothing to make. */
		catalog_queue_delete(s->v->cat, version_id, NULL);
		return ret;
	}
	if (ret < 0)
		return ret;
	job->version_id = version_id;
	job->image_id = ci.id;
	if (vault_open_attrs(s->keys, &job->ver, ci.pid, &at) < 0 &&
	    (!s->prev || vault_open_attrs(s->prev, &job->ver, ci.pid, &at) < 0))
		return iverr_set(e, IV_EDAMAGE, "its recorded attributes fail authentication");
	if (vault_content_size(job->ver.size, &at, &job->content) < 0)
		return iverr_set(e, IV_EDAMAGE, "its record claims more bytes than its blob holds");
	job->type = image_type_of(at.mime);
	job->size = s->v->limits.thumb_size;
	return 0;
}

int vault_thumb_pending(struct vault_session *s, int64_t *ids, size_t cap, size_t *n,
			struct iverr *e)
{
	return catalog_queue_list(s->v->cat, s->uid, ids, cap, n, e);
}

int vault_thumb_pending_count(struct vault_session *s, uint64_t *n, struct iverr *e)
{
	return catalog_queue_count(s->v->cat, s->uid, n, e);
}

int vault_thumb_queue(struct vault_session *s, int64_t image_id, bool urgent, bool rebuild,
		      struct iverr *e)
{
	struct catalog_image ci;
	struct catalog_thumb t;
	int ret = catalog_image_get(s->v->cat, image_id, &ci, e);

	if (ret == 0 && ci.uid != s->uid)
		ret = -ENOENT;
	if (ret < 0)
		return ret == -ENOENT ? iverr_set(e, ENOENT, "no such image") : ret;
	if (!ci.current_version)
		return 0;   /* an empty placeholder has no thumbnail */
	if (!rebuild && catalog_thumb_get(s->v->cat, ci.current_version, &t, NULL) == 0)
		return 0;
	return catalog_queue_push(s->v->cat, ci.current_version, s->uid, urgent ? 1 : 0,
				  vault_now(), e);
}

int vault_thumb_make(struct vault_session *s, const struct vault_thumb_job *job,
		     struct vault_staged *out, struct iverr *e)
{
	struct blob_reader *r = NULL;
	struct blob_writer *w = NULL;
	enum image_type type;
	uint8_t *plain = NULL;
	void *thumb = NULL;
	size_t thumb_len = 0;
	uint64_t cost = 0, held;
	ssize_t n;
	int ret;

	memset(out, 0, sizeof(*out));
	if (!job->type)
		return iverr_set(e, IV_EDAMAGE, "its recorded type is not an image type");
	if ((ret = vault_open_version_blob(s, &job->ver, &r, e)) < 0)
		return ret;
	plain = malloc(job->content ? job->content : 1);
	if (!plain) {
		ret = iverr_set(e, ENOMEM, "out of memory");
		goto out;
	}
	n = blob_reader_pread(r, plain, job->content, 0, e);
	if (n < 0 || (uint64_t)n != job->content) {
		ret = n < 0 ? (int)n : iverr_set(e, IV_EDAMAGE, "its blob is short");
		goto out;
	}
	/* The decode waits until its memory fits beside the others' in flight. */
	if ((ret = image_decode_cost(plain, job->content, job->type, job->size, &cost, e)) < 0)
		goto out;
	held = membudget_acquire(job->budget, cost);
	ret = image_thumbnail(plain, job->content, job->type, job->size, &thumb, &thumb_len,
			      &type, e);
	membudget_release(job->budget, held);
	if (ret < 0)
		goto out;
	snprintf(out->attrs.mime, sizeof(out->attrs.mime), "%s", image_mime(type));
	crypto_hash_sha256(out->attrs.sha256, thumb, thumb_len);
	if ((ret = blob_writer_open(s->v->bs, s->keys->file_wrap, s->uid, &w, e)) < 0)
		goto out;
	if ((ret = vault_write_padded(w, thumb, thumb_len, &out->stored, e)) < 0)
		goto out;
	ret = blob_writer_commit(w, &out->blob, e);
	w = NULL;
	if (ret < 0)
		goto out;
	out->size = thumb_len;
	out->attrs.size = thumb_len;
	out->key_epoch = s->key_epoch;
	out->staged = true;
out:
	blob_writer_abort(w);
	blob_reader_close(r);
	if (plain)
		sodium_memzero(plain, job->content);
	free(plain);
	image_buffer_free(thumb);
	return ret;
}

int vault_thumb_commit(struct vault_session *s, const struct vault_thumb_job *job,
		       struct vault_staged *st, struct iverr *e)
{
	struct catalog *cat = s->v->cat;
	struct catalog_image ci;
	struct catalog_thumb t = { 0 }, old;
	bool replaced;
	int ret;

	if ((ret = catalog_begin(cat, e)) < 0)
		goto out_discard;
	ret = catalog_image_get(cat, job->image_id, &ci, e);
	if (ret == -ENOENT || (ret == 0 && (ci.current_version != job->version_id ||
					    st->key_epoch != s->key_epoch))) {
		/* The image changed (or the key did) while the thumbnail was made. */
		catalog_queue_delete(cat, job->version_id, NULL);
		catalog_commit(cat, NULL);
		vault_discard_staged(s, st);
		return 0;
	}
	if (ret < 0)
		goto out_rollback;
	replaced = catalog_thumb_get(cat, job->version_id, &old, NULL) == 0;
	t.version_id = job->version_id;
	t.blob = st->blob;
	t.size = st->stored ? st->stored : st->size;
	t.key_epoch = st->key_epoch;
	t.created = vault_now();
	vault_seal_record(s->keys, "thumb", &t.blob, t.version_id, &st->attrs, t.attrs_enc,
			  &t.attrs_enc_len);
	if ((ret = catalog_thumb_put(cat, &t, e)) < 0 ||
	    (ret = catalog_queue_delete(cat, job->version_id, e)) < 0)
		goto out_rollback;
	/* A new thumbnail is derived data: if a crash loses this commit, the
	 * queue still holds the job and fsck removes the blob.  A replacement
	 * is synced, since the old blob goes right after. */
	if ((ret = replaced ? catalog_commit(cat, e) : catalog_commit_relaxed(cat, e)) < 0)
		goto out_discard;
	st->staged = false;
	if (replaced)
		s->v->bs->ops->remove(s->v->bs, &old.blob, NULL);
	return 0;
out_rollback:
	catalog_rollback(cat);
out_discard:
	vault_discard_staged(s, st);
	return ret;
}

int vault_thumb_failed(struct vault_session *s, const struct vault_thumb_job *job,
		       const char *why, struct iverr *e)
{
	struct catalog *cat = s->v->cat;
	struct catalog_image ci;
	char pid[33];
	int ret;

	(void)why;   /* may name the file: kept out of the store's audit trail */
	if ((ret = catalog_begin(cat, e)) < 0)
		return ret;
	ret = catalog_image_get(cat, job->image_id, &ci, e);
	if (ret == -ENOENT || (ret == 0 && ci.current_version != job->version_id)) {
		/* Replaced or removed while it was decoded (its blob may be gone
		 * with it): nothing is wrong with what the image is now. */
		catalog_queue_delete(cat, job->version_id, NULL);
		return catalog_commit(cat, e);
	}
	if (ret < 0)
		goto out_rollback;
	ci.damaged = true;
	hex_encode(ci.pid, sizeof(ci.pid), pid);
	if ((ret = catalog_image_update(cat, &ci, e)) < 0 ||
	    (ret = catalog_queue_delete(cat, job->version_id, e)) < 0 ||
	    (ret = audit_append(cat, s->v->actor, s->uid, "decode", pid, "damaged", e,
				"version %" PRId64 " does not decode", job->version_id)) < 0)
		goto out_rollback;
	return catalog_commit(cat, e);
out_rollback:
	catalog_rollback(cat);
	return ret;
}
