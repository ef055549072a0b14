/* Unit tests of fs/keys: key slots, subkeys, sealing, the server key file. */
#define _GNU_SOURCE
#include <ctype.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "keys.h"
#include "tap.h"
#include "testutil.h"

static const struct key_slot_binding bind_a = {
	.store_id = { 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16 },
	.uid = 1000,
};

static struct keys_kdf_cost fast_cost;

/* Whether two user key sets are identical, subkeys included. */
static bool same_keys(const struct user_keys *a, const struct user_keys *b)
{
	return a && b && memcmp(a, b, sizeof(*a)) == 0;
}

static bool all_zero(const uint8_t *p, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if (p[i])
			return false;
	return true;
}

static void test_basics(void)
{
	struct keys_kdf_cost c, d;
	struct user_keys *k1, *k2, *k3;

	is_int(keys_kdf_cost_by_name("interactive", &c), 0, "cost 'interactive' is known");
	ok(c.opslimit >= 1 && c.memlimit >= 8192, "interactive cost is sane (ops %llu, mem %llu)",
	   (unsigned long long)c.opslimit, (unsigned long long)c.memlimit);
	is_int(keys_kdf_cost_by_name("moderate", &d), 0, "cost 'moderate' is known");
	ok(d.memlimit > c.memlimit, "moderate costs more memory than interactive");
	is_int(keys_kdf_cost_by_name("sensitive", &d), 0, "cost 'sensitive' is known");
	is_int(keys_kdf_cost_by_name("bogus", &d), -EINVAL, "unknown cost name is refused");
	d = keys_kdf_cost_default();
	ok(d.opslimit >= c.opslimit && d.memlimit >= c.memlimit,
	   "the default cost is at least interactive");

	k1 = keys_user_new();
	k2 = keys_user_new();
	ok(k1 && k2, "keys_user_new allocates");
	if (!k1 || !k2)
		BAIL_OUT("out of memory");
	ok(memcmp(k1->uk, k2->uk, KEYS_KEY_LEN) != 0, "two new user keys differ");
	ok(!all_zero(k1->uk, KEYS_KEY_LEN), "a new user key is not all zero");
	ok(memcmp(k1->uk, k1->file_wrap, 32) && memcmp(k1->uk, k1->meta, 32) &&
	   memcmp(k1->file_wrap, k1->meta, 32) && memcmp(k1->meta, k1->name_index, 32) &&
	   memcmp(k1->name_index, k1->rekey, 32) && memcmp(k1->file_wrap, k1->rekey, 32) &&
	   memcmp(k1->file_wrap, k1->name_index, 32) && memcmp(k1->meta, k1->rekey, 32),
	   "the user key and its four subkeys are pairwise distinct");
	k3 = keys_user_from_uk(k1->uk);
	ok(same_keys(k1, k3), "keys_user_from_uk derives the same subkeys");
	ok(memcmp(k1->file_wrap, k2->file_wrap, 32) != 0, "subkeys differ between users");
	keys_user_free(k1);
	keys_user_free(k2);
	keys_user_free(k3);
	keys_user_free(NULL);
	ok(1, "keys_user_free(NULL) is a no-op");

	uint8_t a[32], b[32];
	memset(a, 7, 32);
	memcpy(b, a, 32);
	ok(keys_equal32(a, b), "keys_equal32: equal values");
	b[31] ^= 1;
	ok(!keys_equal32(a, b), "keys_equal32: last byte differs");
	b[31] ^= 1;
	b[0] ^= 0x80;
	ok(!keys_equal32(a, b), "keys_equal32: first byte differs");
}

static void test_passphrase_slot(void)
{
	static const char pass[] = "correct horse battery staple";
	struct key_slot slot, copy;
	struct key_slot_binding other;
	struct user_keys *uk = keys_user_new(), *got = NULL;
	struct iverr e = { 0 };
	int ret;

	if (!uk)
		BAIL_OUT("out of memory");
	ret = keys_slot_seal(&slot, KEY_SLOT_PASSPHRASE, uk, pass, strlen(pass), &fast_cost,
			     &bind_a, &e);
	is_int(ret, 0, "passphrase slot seals");
	is_int(slot.kind, KEY_SLOT_PASSPHRASE, "slot kind is passphrase");
	is_int(slot.opslimit, fast_cost.opslimit, "slot records the opslimit it used");
	is_int(slot.memlimit, fast_cost.memlimit, "slot records the memlimit it used");
	ok(!all_zero(slot.salt, sizeof(slot.salt)), "slot has a salt");
	ok(memmem(slot.wrapped, sizeof(slot.wrapped), uk->uk, 8) == NULL,
	   "the wrapped key does not contain the user key in the clear");

	ret = keys_slot_open(&slot, pass, strlen(pass), &bind_a, &got, &e);
	is_int(ret, 0, "passphrase slot opens with the right passphrase");
	ok(same_keys(uk, got), "it yields the same user key and subkeys");
	keys_user_free(got);
	got = NULL;

	ret = keys_slot_open(&slot, "correct horse battery stapl", strlen(pass) - 1, &bind_a,
			     &got, NULL);
	is_int(ret, -IV_EAUTH, "a wrong passphrase gives -IV_EAUTH");
	ok(got == NULL, "and no keys");

	other = bind_a;
	other.uid = 1001;
	got = (struct user_keys *)&other;   /* must be reset to NULL */
	ret = keys_slot_open(&slot, pass, strlen(pass), &other, &got, NULL);
	is_int(ret, -IV_EAUTH, "the slot does not open for another uid");
	ok(got == NULL, "*out is NULL after a failure");

	other = bind_a;
	other.store_id[15] ^= 1;
	ret = keys_slot_open(&slot, pass, strlen(pass), &other, &got, NULL);
	is_int(ret, -IV_EAUTH, "the slot does not open in another store");

	copy = slot;
	copy.wrapped[5] ^= 0x10;
	ret = keys_slot_open(&copy, pass, strlen(pass), &bind_a, &got, NULL);
	is_int(ret, -IV_EAUTH, "a slot with a flipped wrapped byte does not open");

	copy = slot;
	copy.nonce[0] ^= 1;
	ret = keys_slot_open(&copy, pass, strlen(pass), &bind_a, &got, NULL);
	is_int(ret, -IV_EAUTH, "a slot with a flipped nonce byte does not open");

	/* Lowering the cost changes the associated data: no downgrade. */
	copy = slot;
	copy.opslimit = slot.opslimit + 1;
	ret = keys_slot_open(&copy, pass, strlen(pass), &bind_a, &got, NULL);
	is_int(ret, -IV_EAUTH, "a slot whose opslimit was edited does not open");

	copy = slot;
	copy.memlimit = 0;
	ret = keys_slot_open(&copy, pass, strlen(pass), &bind_a, &got, &e);
	is_int(ret, -IV_EDAMAGE, "a slot with an impossible memlimit is reported damaged");

	copy = slot;
	copy.kind = (enum key_slot_kind)9;
	ret = keys_slot_open(&copy, pass, strlen(pass), &bind_a, &got, NULL);
	is_int(ret, -IV_EDAMAGE, "a slot of unknown kind is reported damaged");
	ok(got == NULL, "no keys from damaged slots");

	/* Two slots of the same key and passphrase are still unlinkable. */
	ret = keys_slot_seal(&copy, KEY_SLOT_PASSPHRASE, uk, pass, strlen(pass), &fast_cost,
			     &bind_a, NULL);
	is_int(ret, 0, "sealing again works");
	ok(memcmp(copy.salt, slot.salt, sizeof(slot.salt)) != 0 &&
	   memcmp(copy.wrapped, slot.wrapped, sizeof(slot.wrapped)) != 0,
	   "a second seal uses a fresh salt and gives a different wrap");

	/* The empty passphrase is a passphrase like any other. */
	ret = keys_slot_seal(&copy, KEY_SLOT_PASSPHRASE, uk, "", 0, &fast_cost, &bind_a, NULL);
	is_int(ret, 0, "sealing with an empty passphrase works");
	ret = keys_slot_open(&copy, "x", 1, &bind_a, &got, NULL);
	is_int(ret, -IV_EAUTH, "a slot sealed with '' refuses 'x'");
	keys_user_free(uk);
}

static void test_server_slot(void)
{
	struct key_slot slot, copy;
	struct user_keys *uk = keys_user_new(), *got = NULL;
	uint8_t sk[32], sk2[32];
	struct key_slot_binding other = bind_a;
	int ret;

	if (!uk)
		BAIL_OUT("out of memory");
	memset(sk, 0x42, sizeof(sk));
	memcpy(sk2, sk, sizeof(sk));
	sk2[31] ^= 1;

	ret = keys_slot_seal(&slot, KEY_SLOT_SERVER, uk, sk, sizeof(sk), NULL, &bind_a, NULL);
	is_int(ret, 0, "server slot seals");
	is_int(slot.opslimit, 0, "server slot has no Argon2id cost");
	ret = keys_slot_open(&slot, sk, sizeof(sk), &bind_a, &got, NULL);
	is_int(ret, 0, "server slot opens with the server key");
	ok(same_keys(uk, got), "it yields the same keys");
	keys_user_free(got);
	got = NULL;

	ret = keys_slot_open(&slot, sk2, sizeof(sk2), &bind_a, &got, NULL);
	is_int(ret, -IV_EAUTH, "another server key gives -IV_EAUTH");
	ret = keys_slot_open(&slot, sk, 31, &bind_a, &got, NULL);
	is_int(ret, -EINVAL, "a server key of the wrong length is refused");
	ret = keys_slot_seal(&copy, KEY_SLOT_SERVER, uk, sk, 16, NULL, &bind_a, NULL);
	is_int(ret, -EINVAL, "sealing with a short server key is refused");

	other.uid = 0;
	ret = keys_slot_open(&slot, sk, sizeof(sk), &other, &got, NULL);
	is_int(ret, -IV_EAUTH, "the server slot does not open for another uid");
	other = bind_a;
	other.store_id[0] ^= 0xff;
	ret = keys_slot_open(&slot, sk, sizeof(sk), &other, &got, NULL);
	is_int(ret, -IV_EAUTH, "the server slot does not open in another store");

	/* A server slot cannot be presented as a recovery or passphrase slot. */
	copy = slot;
	copy.kind = KEY_SLOT_PASSPHRASE;
	copy.opslimit = fast_cost.opslimit;
	copy.memlimit = fast_cost.memlimit;
	ret = keys_slot_open(&copy, sk, sizeof(sk), &bind_a, &got, NULL);
	is_int(ret, -IV_EAUTH, "a server slot relabelled as passphrase slot does not open");
	ok(got == NULL, "no keys");
	keys_user_free(uk);
}

static bool recovery_format_ok(const char *code)
{
	static const char alphabet[] = "0123456789ABCDEFGHJKMNPQRSTVWXYZ";

	if (strlen(code) != KEYS_RECOVERY_CODE_LEN)
		return false;
	for (int i = 0; i < KEYS_RECOVERY_CODE_LEN; i++) {
		if (i % 6 == 5) {
			if (code[i] != '-')
				return false;
		} else if (!strchr(alphabet, code[i]) || !code[i]) {
			return false;
		}
	}
	return true;
}

/* The message of the last open_recovery, to tell "not a code" from "wrong code". */
static struct iverr recovery_err;

static int open_recovery(const struct key_slot *slot, const char *code,
			 const struct user_keys *want)
{
	struct user_keys *got = NULL;
	int ret;

	iverr_clear(&recovery_err);
	ret = keys_slot_open(slot, code, strlen(code), &bind_a, &got, &recovery_err);

	if (ret == 0 && !same_keys(want, got))
		ret = 1;   /* opened, but with the wrong keys */
	keys_user_free(got);
	return ret;
}

static void test_recovery_slot(void)
{
	/* A fixed code holding 0 and 1, so that O/I/L can stand in for them. */
	static const char code[] = "01234-56789-ABCDE-FGHJK-MNPQR";
	struct key_slot slot, slot2;
	struct user_keys *uk = keys_user_new();
	char rnd[KEYS_RECOVERY_CODE_LEN + 1], rnd2[KEYS_RECOVERY_CODE_LEN + 1];
	char lower[KEYS_RECOVERY_CODE_LEN + 1];
	struct user_keys *got = NULL;
	bool formats = true;
	int ret;

	if (!uk)
		BAIL_OUT("out of memory");

	keys_recovery_code_new(rnd);
	keys_recovery_code_new(rnd2);
	ok(recovery_format_ok(rnd), "a new recovery code looks like XXXXX-XXXXX-… (%s)", rnd);
	ok(strcmp(rnd, rnd2) != 0, "two new recovery codes differ");
	for (int i = 0; i < 200; i++) {
		keys_recovery_code_new(rnd2);
		formats = formats && recovery_format_ok(rnd2);
	}
	ok(formats, "200 new recovery codes are all well formed");

	ret = keys_slot_seal(&slot, KEY_SLOT_RECOVERY, uk, rnd, strlen(rnd), NULL, &bind_a, NULL);
	is_int(ret, 0, "a recovery slot seals with a new code");
	is_int(open_recovery(&slot, rnd, uk), 0, "and opens with it");
	for (size_t i = 0; i <= strlen(rnd); i++)
		lower[i] = (char)tolower((unsigned char)rnd[i]);
	is_int(open_recovery(&slot, lower, uk), 0, "and opens with it in lower case");

	ret = keys_slot_seal(&slot, KEY_SLOT_RECOVERY, uk, code, strlen(code), NULL, &bind_a, NULL);
	is_int(ret, 0, "a recovery slot seals with a fixed code");
	is_int(open_recovery(&slot, code, uk), 0, "opens with the exact code");
	is_int(open_recovery(&slot, "01234-56789-abcde-fghjk-mnpqr", uk), 0,
	       "opens with the code in lower case");
	is_int(open_recovery(&slot, "0123456789ABCDEFGHJKMNPQR", uk), 0,
	       "opens with the dashes removed");
	is_int(open_recovery(&slot, "01234 56789 ABCDE FGHJK MNPQR", uk), 0,
	       "opens with spaces instead of dashes");
	is_int(open_recovery(&slot, " 012-34-567 89ABC DEFGH-JKMNPQR\n", uk), 0,
	       "opens with odd grouping and a trailing newline");
	is_int(open_recovery(&slot, "O1234-56789-ABCDE-FGHJK-MNPQR", uk), 0,
	       "opens with O for 0");
	is_int(open_recovery(&slot, "o1234-56789-abcde-fghjk-mnpqr", uk), 0,
	       "opens with o for 0");
	is_int(open_recovery(&slot, "0I234-56789-ABCDE-FGHJK-MNPQR", uk), 0,
	       "opens with I for 1");
	is_int(open_recovery(&slot, "0L234-56789-ABCDE-FGHJK-MNPQR", uk), 0,
	       "opens with L for 1");
	is_int(open_recovery(&slot, "0l234-56789-abcde-fghjk-mnpqr", uk), 0,
	       "opens with l for 1");

	static const struct { const char *code, *what; } malformed[] = {
		{ "01234-56789-ABCDE-FGHJK-MNPQ", "a code one digit short" },
		{ "01234-56789-ABCDE-FGHJK-MNP", "a code two digits short" },
		{ "01234-56789-ABCDE-FGHJK-MNPQRS", "a code one digit long" },
		{ "01234-56789-ABCDE-FGHJK-MNPQR-0", "a code with a sixth group" },
		{ "", "an empty code" },
		{ "-----", "only dashes" },
		{ "01234-56789-ABCDE-FGHJK-MNPQU", "a letter outside the alphabet (U)" },
		{ "01234_56789_ABCDE_FGHJK_MNPQR", "underscores as separators" },
		{ "01234-56789-ABCDE-FGHJK-MNPQ!", "punctuation" },
	};
	for (size_t i = 0; i < sizeof(malformed) / sizeof(malformed[0]); i++) {
		is_int(open_recovery(&slot, malformed[i].code, uk), -IV_EAUTH,
		       "%s is refused", malformed[i].what);
		ok(strstr(recovery_err.msg, "not a recovery code") != NULL,
		   "%s: the message says it is not a recovery code", malformed[i].what);
		ret = keys_slot_seal(&slot2, KEY_SLOT_RECOVERY, uk, malformed[i].code,
				     strlen(malformed[i].code), NULL, &bind_a, NULL);
		ok(ret < 0, "%s: sealing with it fails (%d)", malformed[i].what, ret);
	}
	is_int(open_recovery(&slot, "01234-56789-ABCDE-FGHJK-MNPQS", uk), -IV_EAUTH,
	       "a well-formed code with one digit wrong is refused");
	is_int(recovery_err.msg[0], 0, "without claiming it is malformed");

	/* Sealing normalises too: a lower-case, dashless, O/L code seals the same slot. */
	ret = keys_slot_seal(&slot2, KEY_SLOT_RECOVERY, uk, "oL234 56789 abcde fghjk mnpqr",
			     strlen("oL234 56789 abcde fghjk mnpqr"), NULL, &bind_a, NULL);
	is_int(ret, 0, "sealing with a sloppy spelling of the code works");
	is_int(open_recovery(&slot2, code, uk), 0, "and the canonical spelling opens it");
	ret = keys_slot_seal(&slot2, KEY_SLOT_RECOVERY, uk, "not a code", 10, NULL, &bind_a, NULL);
	ok(ret < 0, "sealing with something that is not a code fails (%d)", ret);

	/* A NUL byte is not a digit (strchr finds the alphabet's terminator). */
	{
		static const char nul24[] = "0123456789ABCDEFGHJKMNPQ";   /* 24 digits */
		struct iverr e = { 0 };

		ret = keys_slot_seal(&slot2, KEY_SLOT_RECOVERY, uk, nul24, sizeof(nul24), NULL,
				     &bind_a, &e);
		ok(ret < 0, "sealing with 24 digits and a NUL byte fails (%d)", ret);
		iverr_clear(&e);
		ret = keys_slot_open(&slot, "01234-56789-ABCDE-FGHJK-MNPQ\0", 29, &bind_a, &got, &e);
		is_int(ret, -IV_EAUTH, "opening with 24 digits and a NUL byte fails");
		ok(strstr(e.msg, "not a recovery code") != NULL,
		   "and says it is not a recovery code: '%s'", e.msg);
		keys_user_free(got);
		got = NULL;
	}

	/* Binding. */
	struct key_slot_binding other = bind_a;
	other.uid = 4242;
	ret = keys_slot_open(&slot, code, strlen(code), &other, &got, NULL);
	is_int(ret, -IV_EAUTH, "the recovery slot does not open for another uid");
	keys_user_free(got);
	keys_user_free(uk);
}

static void test_seal_open(void)
{
	static const char ad[] = "album:42", pt[] = "holiday 2024/beach.jpg";
	enum { LEN = sizeof(pt) - 1, CLEN = LEN + KEYS_SEAL_OVERHEAD };
	uint8_t key[32], key2[32], c[CLEN], c2[CLEN], t[CLEN], out[LEN + 1];
	bool all_fail = true, all_zeroed = true;
	int ret;

	memset(key, 0x11, sizeof(key));
	memcpy(key2, key, sizeof(key));
	key2[7] ^= 4;

	keys_seal(key, ad, strlen(ad), pt, LEN, c);
	keys_seal(key, ad, strlen(ad), pt, LEN, c2);
	ok(memcmp(c, c2, CLEN) != 0, "two seals of the same value differ (random nonce)");
	ok(memmem(c, CLEN, "beach", 5) == NULL, "the sealed value hides the plaintext");
	memset(out, 0xee, sizeof(out));
	ret = keys_open(key, ad, strlen(ad), c, CLEN, out);
	is_int(ret, 0, "keys_open opens a sealed value");
	is_mem(out, pt, LEN, "and gives back the plaintext");
	is_int(out[LEN], 0xee, "and writes no more than clen - overhead bytes");

	for (size_t i = 0; i < CLEN; i++) {
		for (int bit = 0; bit < 8; bit += 7) {
			memcpy(t, c, CLEN);
			t[i] ^= (uint8_t)(1u << bit);
			memset(out, 0xee, LEN);
			if (keys_open(key, ad, strlen(ad), t, CLEN, out) != -IV_EDAMAGE)
				all_fail = false;
		}
	}
	ok(all_fail, "flipping any bit 0 or 7 of any of the %d sealed bytes gives -IV_EDAMAGE",
	   (int)CLEN);

	memset(out, 0xee, LEN);
	ret = keys_open(key, "album:43", 8, c, CLEN, out);
	is_int(ret, -IV_EDAMAGE, "wrong associated data gives -IV_EDAMAGE");
	for (size_t i = 0; i < LEN; i++)
		if (out[i] != 0 && out[i] != 0xee)
			all_zeroed = false;
	ok(all_zeroed, "and no decrypted bytes are left in the output");
	ret = keys_open(key, ad, strlen(ad) - 1, c, CLEN, out);
	is_int(ret, -IV_EDAMAGE, "truncated associated data gives -IV_EDAMAGE");
	ret = keys_open(key, NULL, 0, c, CLEN, out);
	is_int(ret, -IV_EDAMAGE, "missing associated data gives -IV_EDAMAGE");
	ret = keys_open(key2, ad, strlen(ad), c, CLEN, out);
	is_int(ret, -IV_EDAMAGE, "another key gives -IV_EDAMAGE");
	ret = keys_open(key, ad, strlen(ad), c, CLEN - 1, out);
	is_int(ret, -IV_EDAMAGE, "a sealed value one byte short gives -IV_EDAMAGE");
	ret = keys_open(key, ad, strlen(ad), c, KEYS_SEAL_OVERHEAD - 1, out);
	is_int(ret, -IV_EDAMAGE, "a value shorter than the overhead gives -IV_EDAMAGE");

	/* The empty value. */
	uint8_t e0[KEYS_SEAL_OVERHEAD];
	keys_seal(key, NULL, 0, "", 0, e0);
	is_int(keys_open(key, NULL, 0, e0, sizeof(e0), out), 0, "an empty value round-trips");
	e0[KEYS_SEAL_OVERHEAD - 1] ^= 1;
	is_int(keys_open(key, NULL, 0, e0, sizeof(e0), out), -IV_EDAMAGE,
	       "a tampered empty value is refused");
}

static void test_name_index(void)
{
	struct user_keys *k = keys_user_new(), *k2 = keys_user_new(), *k3;
	uint8_t a[32], b[32], z[32] = { 0 };

	if (!k || !k2)
		BAIL_OUT("out of memory");
	keys_name_index(k, 7, "beach.jpg", 9, a);
	keys_name_index(k, 7, "beach.jpg", 9, b);
	is_mem(a, b, 32, "the name index is deterministic");
	ok(memcmp(a, z, 32) != 0, "and not all zero");
	k3 = keys_user_from_uk(k->uk);
	keys_name_index(k3, 7, "beach.jpg", 9, b);
	is_mem(a, b, 32, "the same user key gives the same index after unlocking again");
	keys_name_index(k, 8, "beach.jpg", 9, b);
	ok(memcmp(a, b, 32) != 0, "the index differs by parent");
	keys_name_index(k, -7, "beach.jpg", 9, b);
	ok(memcmp(a, b, 32) != 0, "the index differs by the sign of the parent");
	keys_name_index(k, 7, "beach.jpeg", 10, b);
	ok(memcmp(a, b, 32) != 0, "the index differs by name");
	keys_name_index(k, 7, "Beach.jpg", 9, b);
	ok(memcmp(a, b, 32) != 0, "the index is case sensitive");
	keys_name_index(k, 7, "beach.jp", 8, b);
	ok(memcmp(a, b, 32) != 0, "the index differs for a prefix of the name");
	keys_name_index(k2, 7, "beach.jpg", 9, b);
	ok(memcmp(a, b, 32) != 0, "the index differs by user key");
	keys_name_index(k, 7, "", 0, a);
	keys_name_index(k, 7, "", 0, b);
	is_mem(a, b, 32, "the empty name has a stable index");
	keys_user_free(k);
	keys_user_free(k2);
	keys_user_free(k3);
}

static void test_server_key_file(const char *dir)
{
	char path[512], path2[512], link[512];
	struct server_key *sk = NULL, *sk2 = NULL;
	struct iverr e = { 0 };
	struct stat st;
	uint8_t *buf, junk[64];
	size_t len = 0;
	int ret;

	snprintf(path, sizeof(path), "%s/server.key", dir);
	ret = keys_server_create(path, &sk, &e);
	is_int(ret, 0, "keys_server_create creates a key file");
	ok(sk != NULL, "and returns the key");
	if (!sk)
		BAIL_OUT("no server key: %s", e.msg);
	ok(stat(path, &st) == 0, "the file exists");
	is_int(st.st_mode & 07777, 0400, "the key file has mode 0400");
	ok(S_ISREG(st.st_mode), "the key file is a regular file");
	is_int(st.st_size, KEYS_KEY_LEN, "the key file holds exactly 32 bytes");
	buf = tu_read_file(path, &len);
	ok(buf && len == 32 && memcmp(buf, sk->k, 32) == 0, "the file holds the returned key");
	free(buf);

	iverr_clear(&e);
	ret = keys_server_create(path, &sk2, &e);
	is_int(ret, -EEXIST, "keys_server_create refuses to overwrite an existing file");
	ok(sk2 == NULL, "and returns no key");
	buf = tu_read_file(path, &len);
	ok(buf && len == 32 && memcmp(buf, sk->k, 32) == 0, "the existing key is unchanged");
	free(buf);

	iverr_clear(&e);
	ret = keys_server_load(path, &sk2, &e);
	is_int(ret, 0, "keys_server_load loads the 0400 file");
	ok(sk2 && memcmp(sk2->k, sk->k, 32) == 0, "and gets the same key");

	uint8_t id1[16] = { 1 }, id2[16] = { 2 }, c1[32], c2[32], c3[32];
	keys_server_check(sk, id1, c1);
	keys_server_check(sk2, id1, c2);
	is_mem(c1, c2, 32, "keys_server_check is deterministic");
	keys_server_check(sk, id2, c3);
	ok(memcmp(c1, c3, 32) != 0, "the check value depends on the store id");
	ok(memcmp(c1, sk->k, 32) != 0, "the check value is not the key");
	keys_server_free(sk2);
	sk2 = NULL;

	/* Permissions. */
	snprintf(path2, sizeof(path2), "%s/loose.key", dir);
	memset(junk, 0x5a, sizeof(junk));
	ok(tu_write_file(path2, junk, 32, 0600) == 0 && chmod(path2, 0644) == 0,
	   "made a 0644 key file");
	iverr_clear(&e);
	ret = keys_server_load(path2, &sk2, &e);
	ok(ret < 0, "keys_server_load refuses a 0644 file (%d)", ret);
	ok(sk2 == NULL, "and returns no key");
	ok(strstr(e.msg, "chmod 0400") != NULL, "the message says to chmod 0400: %s", e.msg);
	ok(strstr(e.msg, path2) != NULL, "the message names the file");
	ok(strstr(e.msg, "0644") != NULL, "the message gives the mode");

	ok(chmod(path2, 0440) == 0, "made it 0440");
	iverr_clear(&e);
	ret = keys_server_load(path2, &sk2, &e);
	ok(ret < 0 && strstr(e.msg, "chmod 0400"), "a group-readable key file is refused");
	ok(chmod(path2, 0402) == 0, "made it 0402");
	iverr_clear(&e);
	ret = keys_server_load(path2, &sk2, &e);
	ok(ret < 0 && strstr(e.msg, "chmod 0400"), "an other-writable key file is refused");
	ok(chmod(path2, 0600) == 0, "made it 0600");
	iverr_clear(&e);
	ret = keys_server_load(path2, &sk2, &e);
	is_int(ret, 0, "a 0600 key file is accepted");
	keys_server_free(sk2);
	sk2 = NULL;

	/* Size. */
	ok(tu_write_file(path2, junk, 31, 0600) == 0, "rewrote it with 31 bytes");
	iverr_clear(&e);
	ret = keys_server_load(path2, &sk2, &e);
	is_int(ret, -EINVAL, "a 31-byte key file is refused");
	ok(strstr(e.msg, "31") != NULL, "the message gives the size: %s", e.msg);
	ok(tu_write_file(path2, junk, 33, 0600) == 0, "rewrote it with 33 bytes");
	ret = keys_server_load(path2, &sk2, NULL);
	is_int(ret, -EINVAL, "a 33-byte key file is refused");
	ok(tu_write_file(path2, junk, 0, 0600) == 0, "emptied it");
	ret = keys_server_load(path2, &sk2, NULL);
	is_int(ret, -EINVAL, "an empty key file is refused");
	ok(sk2 == NULL, "no key from a refused file");

	/* Missing files, symlinks, directories. */
	snprintf(path2, sizeof(path2), "%s/missing.key", dir);
	iverr_clear(&e);
	ret = keys_server_load(path2, &sk2, &e);
	is_int(ret, -ENOENT, "a missing key file gives -ENOENT");
	ok(strstr(e.msg, path2) != NULL, "naming the file: %s", e.msg);
	snprintf(link, sizeof(link), "%s/link.key", dir);
	ok(symlink(path, link) == 0, "made a symlink to the key");
	ret = keys_server_load(link, &sk2, NULL);
	ok(ret < 0, "a symlinked key file is refused (%d)", ret);
	ret = keys_server_create(link, &sk2, NULL);
	ok(ret < 0, "keys_server_create does not follow a symlink (%d)", ret);
	ret = keys_server_load(dir, &sk2, NULL);
	ok(ret < 0, "a directory is not a key file (%d)", ret);
	snprintf(path2, sizeof(path2), "%s/nodir/new.key", dir);
	iverr_clear(&e);
	ret = keys_server_create(path2, &sk2, &e);
	is_int(ret, -ENOENT, "creating a key in a missing directory fails with -ENOENT");
	ok(e.msg[0] != '\0', "with a message: %s", e.msg);
	keys_server_free(sk);
}

static void test_iverr(void)
{
	struct iverr e = { 0 };

	is_int(iverr_set(&e, EIO, "first %d", 1), -EIO, "iverr_set returns -code");
	is_int(iverr_set(&e, EPERM, "second"), -EPERM, "a second iverr_set still returns -code");
	is_str(e.msg, "first 1", "but the first message is kept");
	is_int(e.code, EIO, "with the first code");
	is_int(iverr_reset(&e, ENOENT, "third"), -ENOENT, "iverr_reset returns -code");
	is_str(e.msg, "third", "and overwrites the message");
	iverr_clear(&e);
	ok(e.code == 0 && e.msg[0] == '\0', "iverr_clear clears");
	is_int(iverr_set(NULL, EIO, "x"), -EIO, "iverr_set(NULL) just returns -code");
}

int main(void)
{
	char dir[256];

	is_int(keys_init(), 0, "keys_init");
	is_int(keys_init(), 0, "keys_init a second time is harmless");
	if (keys_kdf_cost_by_name("interactive", &fast_cost) < 0)
		BAIL_OUT("no interactive cost");
	tu_mkdtemp(dir, sizeof(dir), "keys");

	test_basics();
	test_passphrase_slot();
	test_server_slot();
	test_recovery_slot();
	test_seal_open();
	test_name_index();
	test_server_key_file(dir);
	test_iverr();

	ok(tu_rm_rf(dir) == 0, "removed the test directory");
	return done_testing();
}
