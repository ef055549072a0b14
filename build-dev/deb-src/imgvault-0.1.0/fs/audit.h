/*
 * audit — the append-only, hash-chained audit trail (DESIGN §4).
 *
 * Each entry's hash is BLAKE2b-256 over the previous entry's hash and the
 * entry's own fields, so deleting, reordering or editing an entry breaks
 * the chain at that point.  Entries name ids, never image or album names:
 * the trail lives in the store, which T1 assumes stolen.
 *
 * The chain is unkeyed, but each append made with the store scope's key
 * (catalog.h) seals the newest entry's seq and hash, so a cut tail or a
 * chain rebuilt from an edit onwards is found while that seal stands.
 * audit_verify returns the head hash so it can also be anchored outside the
 * store (docs/SECURITY.md): a rollback of the whole catalog is found only so.
 */
#ifndef IMGVAULT_AUDIT_H
#define IMGVAULT_AUDIT_H

#include <stdint.h>

#include "catalog.h"

/*
 * Appends an entry in its own transaction (or the caller's).  @subject is
 * the uid whose vault it concerns, or -1.  @detail is printf-style.
 */
int audit_append(struct catalog *c, int64_t actor, int64_t subject, const char *action,
		 const char *object, const char *result, struct iverr *e,
		 const char *detail, ...) __attribute__((format(printf, 8, 9)));

struct audit_report {
	uint64_t entries;
	int64_t first_bad;      /* seq of the first entry that breaks the chain, 0 if none */
	uint8_t head[32];       /* hash of the newest entry */
	bool head_checked;      /* the sealed head was checked (the store key was at hand) */
	int64_t sealed_seq;     /* the entry the sealed head names */
	bool tail_cut;          /* the chain ends before it, or holds another entry there:
				   entries were removed (first_bad says where, when set) */
	bool seal_broken;       /* the sealed head itself fails */
};

/*
 * Walks the chain.  Returns 0 with r->first_bad set when it is broken.  With
 * the store scope's key in the catalog, the head sealed at each append is
 * checked too: a chain that ends before it, or passes it with another hash,
 * was cut or rewritten (r->tail_cut, r->first_bad).
 */
int audit_verify(struct catalog *c, struct audit_report *r, struct iverr *e);

/* The hash of @a chained after @prev (exposed for tests). */
void audit_hash(const uint8_t prev[32], const struct catalog_audit *a, uint8_t out[32]);

#endif
