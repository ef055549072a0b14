#include "audit.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include <sodium.h>

#include "bytes.h"

static void hash_field(crypto_generichash_state *st, const char *s)
{
	uint8_t len[4];

	put_le32(len, (uint32_t)strlen(s));
	crypto_generichash_update(st, len, sizeof(len));
	crypto_generichash_update(st, (const uint8_t *)s, strlen(s));
}

void audit_hash(const uint8_t prev[32], const struct catalog_audit *a, uint8_t out[32])
{
	static const char tag[] = "imgvault-audit-v1";
	crypto_generichash_state st;
	uint8_t num[32];

	put_le64(num, (uint64_t)a->seq);
	put_le64(num + 8, (uint64_t)a->time);
	put_le64(num + 16, (uint64_t)a->actor);
	put_le64(num + 24, (uint64_t)a->subject);
	crypto_generichash_init(&st, NULL, 0, 32);
	crypto_generichash_update(&st, (const uint8_t *)tag, sizeof(tag) - 1);
	crypto_generichash_update(&st, prev, 32);
	crypto_generichash_update(&st, num, sizeof(num));
	hash_field(&st, a->action);
	hash_field(&st, a->object);
	hash_field(&st, a->result);
	hash_field(&st, a->detail);
	crypto_generichash_final(&st, out, 32);
}

/*
 * Whether the chain still holds the entry its seal names (the new entry
 * @seq is not in it yet).  A tail cut below the seal, or rewritten through
 * it, must not be sealed over by the next entry: the seal stays, and
 * audit_verify reports it.  Without the store key nothing is checked, and
 * nothing is sealed either.
 */
static bool head_intact(struct catalog *c, int64_t seq)
{
	struct catalog_audit at;
	uint8_t hash[32];
	int64_t sealed;
	bool checked;
	int ret = catalog_audit_sealed_head(c, &sealed, hash, &checked, NULL);

	if (ret == -ENOENT)
		return true;    /* nothing sealed yet */
	if (ret < 0 || !checked)
		return ret == 0;
	if (sealed >= seq || catalog_audit_get(c, sealed, &at, NULL) < 0)
		return false;
	return sodium_memcmp(at.hash, hash, 32) == 0;
}

int audit_append(struct catalog *c, int64_t actor, int64_t subject, const char *action,
		 const char *object, const char *result, struct iverr *e,
		 const char *detail, ...)
{
	struct catalog_audit a = { 0 }, last;
	uint8_t prev[32] = { 0 };
	va_list ap;
	int ret;

	a.time = (int64_t)time(NULL);
	a.actor = actor;
	a.subject = subject;
	snprintf(a.action, sizeof(a.action), "%s", action);
	snprintf(a.object, sizeof(a.object), "%s", object ? object : "");
	snprintf(a.result, sizeof(a.result), "%s", result);
	va_start(ap, detail);
	vsnprintf(a.detail, sizeof(a.detail), detail, ap);
	va_end(ap);

	if ((ret = catalog_begin(c, e)) < 0)
		return ret;
	ret = catalog_audit_last(c, &last, e);
	if (ret == 0) {
		memcpy(prev, last.hash, 32);
		a.seq = last.seq + 1;
	} else if (ret == -ENOENT) {
		a.seq = 1;
	} else {
		goto out_rollback;
	}
	audit_hash(prev, &a, a.hash);
	if ((ret = catalog_audit_insert(c, &a, e)) < 0 ||
	    (head_intact(c, a.seq) && (ret = catalog_audit_seal(c, a.seq, a.hash, e)) < 0))
		goto out_rollback;
	return catalog_commit(c, e);
out_rollback:
	catalog_rollback(c);
	return ret;
}

struct verify_state {
	struct audit_report *r;
	uint8_t prev[32];
	int64_t expect_seq;
	int64_t sealed_seq;          /* the sealed head to meet, 0 if none */
	uint8_t sealed_hash[32];
	bool sealed_met;
};

static int verify_one(const struct catalog_audit *a, void *arg)
{
	struct verify_state *vs = arg;
	uint8_t h[32];

	vs->r->entries++;
	audit_hash(vs->prev, a, h);
	if (a->seq != vs->expect_seq || sodium_memcmp(h, a->hash, 32) != 0) {
		/* 0 means "intact": a forged seq of 0 or less still reports. */
		vs->r->first_bad = a->seq > 0 ? a->seq : vs->expect_seq;
		return 1;
	}
	if (a->seq == vs->sealed_seq) {
		if (sodium_memcmp(h, vs->sealed_hash, 32) != 0) {
			/* Cut below the seal and appended again, or rewritten. */
			vs->r->first_bad = a->seq;
			vs->r->tail_cut = true;
			return 1;
		}
		vs->sealed_met = true;
	}
	memcpy(vs->prev, a->hash, 32);
	memcpy(vs->r->head, a->hash, 32);
	vs->expect_seq++;
	return 0;
}

int audit_verify(struct catalog *c, struct audit_report *r, struct iverr *e)
{
	struct verify_state vs = { .r = r, .expect_seq = 1 };
	int ret;

	memset(r, 0, sizeof(*r));
	ret = catalog_audit_sealed_head(c, &vs.sealed_seq, vs.sealed_hash, &r->head_checked, e);
	if (ret == -ENOENT) {
		vs.sealed_seq = 0;
		ret = 0;
	}
	if (ret == -IV_EDAMAGE) {
		r->seal_broken = true;
		return 0;
	}
	if (ret < 0)
		return ret;
	if (!r->head_checked)
		vs.sealed_seq = 0;   /* not to be trusted without the key */
	r->sealed_seq = vs.sealed_seq;
	ret = catalog_audit_list(c, verify_one, &vs, e);
	if (ret < 0)
		return ret;
	/* The chain ends before the entry its seal names: its tail was cut. */
	if (!r->first_bad && vs.sealed_seq && !vs.sealed_met)
		r->tail_cut = true;
	return 0;
}
