/* Unit tests of fs/audit: the append-only, hash-chained audit trail. */
#include <string.h>
#include <unistd.h>

#include <sqlite3.h>

#include "audit.h"
#include "catalog.h"
#include "keys.h"
#include "tap.h"
#include "testutil.h"

#define N_ENTRIES 9

static char dir[256], db_path[512];

/* Runs SQL through a separate sqlite connection; the sqlite result code. */
static int raw_exec(const char *sql, char *err, size_t cap)
{
	sqlite3 *db = NULL;
	int rc = sqlite3_open_v2(db_path, &db, SQLITE_OPEN_READWRITE, NULL);

	if (rc == SQLITE_OK)
		rc = sqlite3_exec(db, sql, NULL, NULL, NULL);
	if (err)
		snprintf(err, cap, "%s", db ? sqlite3_errmsg(db) : "cannot open");
	sqlite3_close(db);
	return rc;
}

static int64_t raw_count(void)
{
	sqlite3 *db = NULL;
	sqlite3_stmt *st = NULL;
	int64_t n = -1;

	if (sqlite3_open_v2(db_path, &db, SQLITE_OPEN_READWRITE, NULL) == SQLITE_OK &&
	    sqlite3_prepare_v2(db, "SELECT count(*) FROM audit", -1, &st, NULL) == SQLITE_OK &&
	    sqlite3_step(st) == SQLITE_ROW)
		n = sqlite3_column_int64(st, 0);
	sqlite3_finalize(st);
	sqlite3_close(db);
	return n;
}

static struct catalog *open_catalog(bool create)
{
	struct catalog *c = NULL;
	struct iverr e = { 0 };

	if (catalog_open(db_path, create, &c, &e) < 0)
		BAIL_OUT("cannot open catalog: %s", e.msg);
	return c;
}

/* Opens the catalog, verifies the chain, closes; returns verify's result. */
static int verify_now(struct audit_report *r)
{
	struct catalog *c = open_catalog(false);
	struct iverr e = { 0 };
	int ret = audit_verify(c, r, &e);

	if (ret < 0)
		diag("audit_verify: %s", e.msg);
	catalog_close(c);
	return ret;
}

struct collect {
	int n;
	struct catalog_audit a[N_ENTRIES + 4];
};

static int collect_cb(const struct catalog_audit *a, void *arg)
{
	struct collect *cl = arg;

	if (cl->n < (int)(sizeof(cl->a) / sizeof(cl->a[0])))
		cl->a[cl->n] = *a;
	cl->n++;
	return 0;
}

static void collect_now(struct collect *cl)
{
	struct catalog *c = open_catalog(false);

	memset(cl, 0, sizeof(*cl));
	if (catalog_audit_list(c, collect_cb, cl, NULL) < 0)
		BAIL_OUT("cannot list the audit trail");
	catalog_close(c);
}

/* Quotes @s as an SQL string literal into @out. */
static void sql_quote(const char *s, char *out, size_t cap)
{
	size_t o = 0;

	out[o++] = '\'';
	for (; *s && o + 3 < cap; s++) {
		if (*s == '\'')
			out[o++] = '\'';
		out[o++] = *s;
	}
	out[o++] = '\'';
	out[o] = '\0';
}

/* Puts entry @a back exactly as it was (triggers dropped). */
static int reinsert(const struct catalog_audit *a)
{
	char sql[2048], act[80], obj[200], res[40], det[600], hex[65];
	static const char digits[] = "0123456789abcdef";

	sql_quote(a->action, act, sizeof(act));
	sql_quote(a->object, obj, sizeof(obj));
	sql_quote(a->result, res, sizeof(res));
	sql_quote(a->detail, det, sizeof(det));
	for (int i = 0; i < 32; i++) {
		hex[2 * i] = digits[a->hash[i] >> 4];
		hex[2 * i + 1] = digits[a->hash[i] & 15];
	}
	hex[64] = '\0';
	snprintf(sql, sizeof(sql), "INSERT INTO audit(seq, time, actor, subject, action, object,"
		 " result, detail, hash) VALUES (%lld, %lld, %lld, %lld, %s, %s, %s, %s, X'%s')",
		 (long long)a->seq, (long long)a->time, (long long)a->actor,
		 (long long)a->subject, act, obj, res, det, hex);
	return raw_exec(sql, NULL, 0);
}

static void test_append(void)
{
	struct catalog *c = open_catalog(true);
	struct audit_report r;
	struct iverr e = { 0 };
	struct collect cl;
	struct catalog_audit last;
	char longdetail[400];

	memset(&r, 0xff, sizeof(r));
	is_int(audit_verify(c, &r, &e), 0, "audit_verify of an empty trail");
	ok(r.entries == 0 && r.first_bad == 0, "no entries, nothing bad");
	is_int(catalog_audit_last(c, &last, &e), -ENOENT, "audit_last of an empty trail: -ENOENT");

	is_int(audit_append(c, 0, 1000, "user-add", "1000", "ok", &e, "created user %u", 1000u), 0,
	       "append entry 1");
	is_int(audit_append(c, 1000, 1000, "unlock", "", "ok", &e, "passphrase slot"), 0,
	       "append entry 2");
	is_int(audit_append(c, 1000, 1000, "import", "3fa1c0de", "ok", &e, "version %s, %d bytes",
			    "aa55", 4096), 0, "append entry 3");
	is_int(audit_append(c, 1001, 1000, "read", "3fa1c0de", "denied", &e, "uid %d is not the "
			    "owner", 1001), 0, "append entry 4");
	is_int(audit_append(c, 33, -1, "fetch", "tok-9", "ok", &e, "partner %s from %s", "print",
			    "192.0.2.7"), 0, "append entry 5 (subject -1)");
	is_int(audit_append(c, 1000, 1000, "delete", NULL, "ok", &e, "%s", "no object"), 0,
	       "append entry 6 (NULL object)");
	is_int(audit_append(c, 0, 1000, "note", "x", "ok", &e, "quote ' and percent %%"), 0,
	       "append entry 7 (odd characters)");
	is_int(audit_append(c, 0, -1, "fsck", "", "damaged", &e, "blob %s", "77"), 0,
	       "append entry 8");
	memset(longdetail, 'd', sizeof(longdetail) - 1);
	longdetail[sizeof(longdetail) - 1] = '\0';
	is_int(audit_append(c, 0, -1, "long", "", "ok", &e, "%s", longdetail), 0,
	       "append entry 9 (a detail longer than the field)");

	/* Inside a caller's transaction that is rolled back: nothing is appended. */
	is_int(catalog_begin(c, &e), 0, "begin a caller's transaction");
	is_int(audit_append(c, 0, -1, "ghost", "", "ok", &e, "rolled back"), 0,
	       "append inside it");
	catalog_rollback(c);

	memset(&r, 0, sizeof(r));
	is_int(audit_verify(c, &r, &e), 0, "audit_verify of the trail");
	is_int(r.entries, N_ENTRIES, "%d entries (the rolled-back one is not there)", N_ENTRIES);
	is_int(r.first_bad, 0, "first_bad is 0: the chain is intact");
	is_int(catalog_audit_last(c, &last, &e), 0, "audit_last");
	is_int(last.seq, N_ENTRIES, "the last entry has seq %d", N_ENTRIES);
	is_mem(r.head, last.hash, 32, "the reported head is the last entry's hash");
	catalog_close(c);

	collect_now(&cl);
	is_int(cl.n, N_ENTRIES, "audit_list gives %d entries", N_ENTRIES);
	bool seq_ok = true, chain_ok = true;
	uint8_t prev[32] = { 0 }, h[32];
	for (int i = 0; i < cl.n && i < N_ENTRIES; i++) {
		seq_ok = seq_ok && cl.a[i].seq == i + 1;
		audit_hash(prev, &cl.a[i], h);
		chain_ok = chain_ok && !memcmp(h, cl.a[i].hash, 32);
		memcpy(prev, cl.a[i].hash, 32);
	}
	ok(seq_ok, "sequence numbers run 1..%d", N_ENTRIES);
	ok(chain_ok, "each hash is audit_hash(previous hash, entry), starting from zeros");
	is_str(cl.a[0].action, "user-add", "entry 1 action");
	is_str(cl.a[0].object, "1000", "entry 1 object");
	is_str(cl.a[0].result, "ok", "entry 1 result");
	is_str(cl.a[0].detail, "created user 1000", "entry 1 detail is formatted");
	is_int(cl.a[0].actor, 0, "entry 1 actor");
	is_int(cl.a[0].subject, 1000, "entry 1 subject");
	ok(cl.a[0].time > 1600000000, "entry 1 has a current time (%lld)", (long long)cl.a[0].time);
	is_str(cl.a[2].detail, "version aa55, 4096 bytes", "entry 3 detail is formatted");
	is_str(cl.a[3].result, "denied", "entry 4 result");
	is_int(cl.a[4].subject, -1, "entry 5 subject -1");
	is_str(cl.a[5].object, "", "entry 6: a NULL object is stored as empty");
	is_str(cl.a[6].detail, "quote ' and percent %", "entry 7 detail with odd characters");
	is_int(strlen(cl.a[8].detail), sizeof(cl.a[8].detail) - 1,
	       "entry 9 detail is cut to the field size");

	/* audit_hash depends on every field. */
	struct catalog_audit t = cl.a[2];
	uint8_t base[32], z[32] = { 0 };
	audit_hash(z, &t, base);
	bool all_differ = true;
#define CHANGED(stmt) do { t = cl.a[2]; stmt; audit_hash(z, &t, h); \
			   all_differ = all_differ && memcmp(h, base, 32) != 0; } while (0)
	CHANGED(t.seq++);
	CHANGED(t.time++);
	CHANGED(t.actor++);
	CHANGED(t.subject++);
	CHANGED(t.action[0] ^= 1);
	CHANGED(t.object[0] ^= 1);
	CHANGED(t.result[0] ^= 1);
	CHANGED(t.detail[0] ^= 1);
	/* Moving a character between adjacent fields. */
	CHANGED(snprintf(t.action, sizeof(t.action), "impor");
		snprintf(t.object, sizeof(t.object), "t3fa1c0de"));
#undef CHANGED
	t = cl.a[2];
	z[0] = 1;
	audit_hash(z, &t, h);
	all_differ = all_differ && memcmp(h, base, 32) != 0;
	ok(all_differ, "audit_hash changes with seq, time, actor, subject, each text field, "
	   "field boundaries and the previous hash");
}

static void test_triggers(void)
{
	struct audit_report r;
	char err[256];
	int rc;

	rc = raw_exec("UPDATE audit SET detail = 'nothing happened' WHERE seq = 3", err, sizeof(err));
	ok(rc != SQLITE_OK, "UPDATE of an audit entry fails while the triggers exist (%d)", rc);
	ok(strstr(err, "append-only") != NULL, "with the trigger's message: %s", err);
	rc = raw_exec("DELETE FROM audit WHERE seq = 3", err, sizeof(err));
	ok(rc != SQLITE_OK, "DELETE of an audit entry fails while the triggers exist (%d)", rc);
	ok(strstr(err, "append-only") != NULL, "with the trigger's message: %s", err);
	rc = raw_exec("DELETE FROM audit", err, sizeof(err));
	ok(rc != SQLITE_OK, "DELETE of the whole trail fails (%d)", rc);
	is_int(raw_count(), N_ENTRIES, "all %d entries are still there", N_ENTRIES);
	ok(verify_now(&r) == 0 && r.first_bad == 0 && r.entries == N_ENTRIES,
	   "and the chain is intact");

	/* Inserting is allowed, but a forged entry breaks the chain. */
	rc = raw_exec("INSERT INTO audit(seq, time, actor, subject, action, object, result,"
		      " detail, hash) VALUES (10, 1, 0, -1, 'forged', '', 'ok', '', zeroblob(32))",
		      err, sizeof(err));
	is_int(rc, SQLITE_OK, "a forged entry can be inserted with sqlite");
	ok(verify_now(&r) == 0, "audit_verify runs");
	is_int(r.first_bad, 10, "and names the forged entry 10 as the first bad one");

	/* A forged entry numbered 0 sorts first: it must not read as "nothing bad". */
	rc = raw_exec("INSERT INTO audit(seq, time, actor, subject, action, object, result,"
		      " detail, hash) VALUES (0, 1, 0, -1, 'forged', '', 'ok', '', zeroblob(32))",
		      err, sizeof(err));
	is_int(rc, SQLITE_OK, "a forged entry with seq 0 can be inserted with sqlite");
	ok(verify_now(&r) == 0, "audit_verify runs");
	ok(r.first_bad != 0, "audit_verify reports the chain broken (first_bad %lld, entries %llu)",
	   (long long)r.first_bad, (unsigned long long)r.entries);
	rc = raw_exec("INSERT INTO audit(seq, time, actor, subject, action, object, result,"
		      " detail, hash) VALUES (-3, 1, 0, -1, 'forged', '', 'ok', '', zeroblob(32))",
		      err, sizeof(err));
	is_int(rc, SQLITE_OK, "a forged entry with seq -3 can be inserted with sqlite");
	ok(verify_now(&r) == 0, "audit_verify runs");
	ok(r.first_bad != 0, "a negative seq is reported as well (first_bad %lld)",
	   (long long)r.first_bad);

	/* From here on the triggers are gone: someone with write access to the file. */
	rc = raw_exec("DROP TRIGGER audit_no_update; DROP TRIGGER audit_no_delete;", err,
		      sizeof(err));
	is_int(rc, SQLITE_OK, "dropped the append-only triggers: %s", err);
	is_int(raw_exec("DELETE FROM audit WHERE seq = 10 OR seq <= 0", NULL, 0), SQLITE_OK,
	       "removed the forged entries");
	ok(verify_now(&r) == 0 && r.first_bad == 0 && r.entries == N_ENTRIES,
	   "the chain is intact again");
}

static void test_tampering(void)
{
	struct audit_report r, clean;
	struct collect orig, cl;
	char err[256];

	collect_now(&orig);
	if (orig.n != N_ENTRIES)
		BAIL_OUT("expected %d entries, found %d", N_ENTRIES, orig.n);
	ok(verify_now(&clean) == 0 && clean.first_bad == 0, "baseline: the chain is intact");

	/* Edit one entry's detail. */
	is_int(raw_exec("UPDATE audit SET detail = 'nothing happened' WHERE seq = 3", err,
			sizeof(err)), SQLITE_OK, "edited entry 3's detail with sqlite");
	ok(verify_now(&r) == 0, "audit_verify returns 0 on a broken chain");
	is_int(r.first_bad, 3, "and reports first_bad 3");
	is_int(raw_exec("DELETE FROM audit WHERE seq = 3", NULL, 0), SQLITE_OK, "removed it");
	is_int(reinsert(&orig.a[2]), SQLITE_OK, "put the original entry 3 back");
	ok(verify_now(&r) == 0 && r.first_bad == 0 && r.entries == N_ENTRIES,
	   "the chain is intact again");

	/* Each numeric field. */
	struct { const char *sql; int seq; const char *what; } edits[] = {
		{ "UPDATE audit SET actor = 0 WHERE seq = 4", 4, "entry 4's actor" },
		{ "UPDATE audit SET subject = 1001 WHERE seq = 2", 2, "entry 2's subject" },
		{ "UPDATE audit SET time = time - 3600 WHERE seq = 7", 7, "entry 7's time" },
		{ "UPDATE audit SET result = 'ok' WHERE seq = 4", 4, "entry 4's result" },
		{ "UPDATE audit SET action = 'nop' WHERE seq = 1", 1, "entry 1's action" },
		{ "UPDATE audit SET object = '' WHERE seq = 5", 5, "entry 5's object" },
		{ "UPDATE audit SET hash = zeroblob(32) WHERE seq = 9", 9, "the last entry's hash" },
		{ "UPDATE audit SET hash = zeroblob(32) WHERE seq = 5", 5, "entry 5's hash" },
	};
	for (size_t i = 0; i < sizeof(edits) / sizeof(edits[0]); i++) {
		int s = edits[i].seq;
		char del[64];
		is_int(raw_exec(edits[i].sql, err, sizeof(err)), SQLITE_OK, "edited %s", edits[i].what);
		ok(verify_now(&r) == 0, "audit_verify runs");
		is_int(r.first_bad, s, "editing %s gives first_bad %d", edits[i].what, s);
		snprintf(del, sizeof(del), "DELETE FROM audit WHERE seq = %d", s);
		if (raw_exec(del, NULL, 0) != SQLITE_OK || reinsert(&orig.a[s - 1]) != SQLITE_OK)
			BAIL_OUT("cannot restore entry %d", s);
	}
	ok(verify_now(&r) == 0 && r.first_bad == 0 && r.entries == N_ENTRIES,
	   "the chain is intact after restoring every edit");

	/* Delete one entry. */
	is_int(raw_exec("DELETE FROM audit WHERE seq = 6", err, sizeof(err)), SQLITE_OK,
	       "deleted entry 6 with sqlite");
	ok(verify_now(&r) == 0, "audit_verify runs");
	is_int(r.first_bad, 7, "deleting entry 6 gives first_bad 7 (the entry after the gap)");

	/* Close the gap by renumbering: the hashes still give it away. */
	is_int(raw_exec("UPDATE audit SET seq = seq - 1 WHERE seq > 6", err, sizeof(err)),
	       SQLITE_OK, "renumbered entries 7.. to close the gap");
	ok(verify_now(&r) == 0, "audit_verify runs");
	is_int(r.first_bad, 6, "the renumbered entry now at 6 is the first bad one");
	is_int(raw_exec("DELETE FROM audit WHERE seq >= 6", NULL, 0), SQLITE_OK, "undo");
	for (int s = 6; s <= N_ENTRIES; s++)
		if (reinsert(&orig.a[s - 1]) != SQLITE_OK)
			BAIL_OUT("cannot restore entry %d", s);
	ok(verify_now(&r) == 0 && r.first_bad == 0 && r.entries == N_ENTRIES,
	   "restored: the chain is intact");

	/* Delete the first entry. */
	is_int(raw_exec("DELETE FROM audit WHERE seq = 1", NULL, 0), SQLITE_OK, "deleted entry 1");
	ok(verify_now(&r) == 0, "audit_verify runs");
	is_int(r.first_bad, 2, "deleting entry 1 gives first_bad 2");
	is_int(reinsert(&orig.a[0]), SQLITE_OK, "restored entry 1");

	/* Swap two entries' contents (reordering). */
	is_int(raw_exec("UPDATE audit SET seq = 100 WHERE seq = 4;"
			"UPDATE audit SET seq = 4 WHERE seq = 5;"
			"UPDATE audit SET seq = 5 WHERE seq = 100;", err, sizeof(err)), SQLITE_OK,
	       "swapped entries 4 and 5");
	ok(verify_now(&r) == 0, "audit_verify runs");
	is_int(r.first_bad, 4, "reordering gives first_bad 4");
	is_int(raw_exec("DELETE FROM audit WHERE seq IN (4, 5)", NULL, 0), SQLITE_OK, "undo");
	ok(reinsert(&orig.a[3]) == SQLITE_OK && reinsert(&orig.a[4]) == SQLITE_OK, "restored 4, 5");
	ok(verify_now(&r) == 0 && r.first_bad == 0 && r.entries == N_ENTRIES,
	   "restored: the chain is intact");

	/* Dropping the newest entry leaves a valid chain: only the anchored head tells. */
	is_int(raw_exec("DELETE FROM audit WHERE seq = 9", NULL, 0), SQLITE_OK,
	       "deleted the newest entry");
	ok(verify_now(&r) == 0 && r.first_bad == 0, "the shorter chain is still consistent");
	is_int(r.entries, N_ENTRIES - 1, "with one entry fewer");
	ok(memcmp(r.head, clean.head, 32) != 0, "but its head differs from the anchored head");

	/* A new append after tampering continues from the current head. */
	struct catalog *c = open_catalog(false);
	struct iverr e = { 0 };
	is_int(audit_append(c, 0, -1, "after", "", "ok", &e, "x"), 0, "append after truncation");
	catalog_close(c);
	collect_now(&cl);
	is_int(cl.n, N_ENTRIES, "%d entries again", N_ENTRIES);
	is_int(cl.a[N_ENTRIES - 1].seq, N_ENTRIES, "the new one takes seq %d", N_ENTRIES);
	ok(verify_now(&r) == 0 && r.first_bad == 0, "and the chain verifies");
}

int main(void)
{
	if (keys_init() < 0)
		BAIL_OUT("keys_init failed");
	tu_mkdtemp(dir, sizeof(dir), "audit");
	snprintf(db_path, sizeof(db_path), "%s/catalog.db", dir);

	test_append();
	test_triggers();
	test_tampering();

	ok(tu_rm_rf(dir) == 0, "removed the test directory");
	return done_testing();
}
