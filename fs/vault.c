#include "vault.h"

#include <dirent.h>
#include <fcntl.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <sodium.h>

#include "audit.h"
#include "blob.h"
#include "blobstore.h"
#include "bytes.h"
#include "image.h"
#include "vault_i.h"
#include "share.h"

static int config_load(struct vault *v, struct iverr *e);

#define MARKER_NAME "imgvault-store"
#define MARKER_TEXT "imgvault store format %d\n"

/* ---- stores ---- */

static int write_marker(int dirfd, struct iverr *e)
{
	char text[64];
	int fd, n = snprintf(text, sizeof(text), MARKER_TEXT, VAULT_FORMAT);
	int ret = 0;

	fd = openat(dirfd, MARKER_NAME, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
	if (fd < 0)
		return iverr_set(e, errno, "cannot create the store marker: %s", strerror(errno));
	if (write(fd, text, (size_t)n) != n || fsync(fd) < 0)
		ret = iverr_set(e, errno ? errno : EIO, "cannot write the store marker: %s",
				strerror(errno));
	close(fd);
	return ret;
}

static int read_marker(const char *dir, struct iverr *e)
{
	char path[4096], text[64] = { 0 };
	int fd, format;
	ssize_t n;

	snprintf(path, sizeof(path), "%s/" MARKER_NAME, dir);
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0) {
		struct stat st;
		if (errno == EACCES)
			return iverr_set(e, EACCES, "cannot open store %s: permission denied; "
					 "it belongs to uid %d", dir,
					 stat(dir, &st) == 0 ? (int)st.st_uid : -1);
		if (stat(dir, &st) < 0)
			return iverr_set(e, ENOENT, "store %s does not exist: create one with "
					 "imgvault init %s", dir, dir);
		return iverr_set(e, IV_ENOSTORE, "%s is not an imgvault store (it has no %s "
				 "file); give the right --store, or create one with "
				 "imgvault init", dir, MARKER_NAME);
	}
	n = read(fd, text, sizeof(text) - 1);
	close(fd);
	if (n <= 0 || sscanf(text, "imgvault store format %d", &format) != 1)
		return iverr_set(e, IV_ENOSTORE, "%s/%s is damaged: it does not name a store "
				 "format", dir, MARKER_NAME);
	if (format > VAULT_FORMAT)
		return iverr_set(e, IV_EVERSION, "store %s has format version %d, this "
				 "imgvault (%s) reads up to %d: upgrade imgvault", dir, format,
				 IMGVAULT_VERSION, VAULT_FORMAT);
	return 0;
}

int vault_init(const char *dir, const char *server_key_path, struct iverr *e)
{
	struct catalog *cat = NULL;
	struct server_key *sk = NULL;
	uint8_t store_id[KEYS_STORE_ID_LEN], check[32];
	char path[4096];
	int dirfd, ret;
	uint8_t created[8];

	if (mkdir(dir, 0700) < 0 && errno != EEXIST)
		return iverr_set(e, errno, "cannot create %s: %s", dir, strerror(errno));
	dirfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (dirfd < 0)
		return iverr_set(e, errno, "cannot open %s: %s", dir, strerror(errno));
	{
		int fd2 = dup(dirfd);
		DIR *d = fd2 >= 0 ? fdopendir(fd2) : NULL;
		struct dirent *de;
		bool empty = true;

		while (d && (de = readdir(d)))
			if (strcmp(de->d_name, ".") && strcmp(de->d_name, ".."))
				empty = false;
		if (d)
			closedir(d);
		if (!empty) {
			ret = iverr_set(e, EEXIST, "%s is not empty: a new store needs an empty "
					"or missing directory", dir);
			goto out_close;
		}
	}
	fchmod(dirfd, 0700);
	if (server_key_path) {
		ret = keys_server_load(server_key_path, &sk, e);
		if (ret == -ENOENT) {
			iverr_clear(e);
			ret = keys_server_create(server_key_path, &sk, e);
		}
		if (ret < 0)
			goto out_close;
	}
	randombytes_buf(store_id, sizeof(store_id));
	put_le64(created, (uint64_t)vault_now());
	snprintf(path, sizeof(path), "%s/catalog.db", dir);
	if ((ret = catalog_open(path, true, &cat, e)) < 0)
		goto out_close;
	/* sqlite honours the umask; its -wal and -shm files copy this mode. */
	if (chmod(path, 0600) < 0) {
		ret = iverr_set(e, errno, "cannot restrict %s: %s", path, strerror(errno));
		goto out_close;
	}
	if ((ret = catalog_begin(cat, e)) < 0)
		goto out_close;
	if ((ret = catalog_meta_set(cat, "store_id", store_id, sizeof(store_id), e)) < 0 ||
	    (ret = catalog_meta_set(cat, "mode", server_key_path ? "system" : "desktop",
				    server_key_path ? 6 : 7, e)) < 0 ||
	    (ret = catalog_meta_set(cat, "created", created, sizeof(created), e)) < 0)
		goto out_rollback;
	if (sk) {
		keys_server_check(sk, store_id, check);
		if ((ret = catalog_meta_set(cat, "server_check", check, sizeof(check), e)) < 0)
			goto out_rollback;
	}
	if ((ret = audit_append(cat, (int64_t)getuid(), -1, "init", "", "ok", e,
				"format %d, %s mode", VAULT_FORMAT,
				server_key_path ? "system" : "desktop")) < 0)
		goto out_rollback;
	if ((ret = catalog_commit(cat, e)) < 0)
		goto out_close;
	/* The marker goes last: a half-made store is not mistaken for one. */
	ret = write_marker(dirfd, e);
	goto out_close;
out_rollback:
	catalog_rollback(cat);
out_close:
	catalog_close(cat);
	keys_server_free(sk);
	close(dirfd);
	return ret;
}

/* Takes the store's lock or says who holds it. */
static int take_lock(struct vault *v, const char *purpose, struct iverr *e)
{
	char path[4096], owner[256] = { 0 };
	ssize_t n;

	snprintf(path, sizeof(path), "%s/lock", v->path);
	v->lock_fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600);
	if (v->lock_fd < 0)
		return iverr_set(e, errno, "cannot open %s: %s", path, strerror(errno));
	if (flock(v->lock_fd, LOCK_EX | LOCK_NB) < 0) {
		if (errno != EWOULDBLOCK)
			return iverr_set(e, errno, "cannot lock %s: %s", path, strerror(errno));
		n = pread(v->lock_fd, owner, sizeof(owner) - 1, 0);
		if (n > 0 && owner[n - 1] == '\n')
			owner[n - 1] = '\0';
		return iverr_set(e, IV_EBUSY, "store %s is in use by %s; wait for it to "
				 "finish, or stop it (with a daemon running, use its mount or "
				 "its control socket)", v->path,
				 n > 0 ? owner : "another process");
	}
	n = snprintf(owner, sizeof(owner), "%s (pid %ld, uid %ld)\n", purpose,
		     (long)getpid(), (long)getuid());
	if (ftruncate(v->lock_fd, 0) < 0 || pwrite(v->lock_fd, owner, (size_t)n, 0) != n)
		return iverr_set(e, errno, "cannot write %s: %s", path, strerror(errno));
	return 0;
}

int vault_open(const char *dir, const char *purpose, struct vault **out, struct iverr *e)
{
	struct vault *v;
	char path[4096], mode[16] = { 0 };
	size_t len;
	int ret;

	*out = NULL;
	if ((ret = read_marker(dir, e)) < 0)
		return ret;
	v = calloc(1, sizeof(*v));
	if (!v || !(v->path = strdup(dir))) {
		free(v);
		return iverr_set(e, ENOMEM, "out of memory");
	}
	v->lock_fd = -1;
	v->actor = (int64_t)getuid();
	if ((ret = take_lock(v, purpose, e)) < 0)
		goto out_close;
	snprintf(path, sizeof(path), "%s/catalog.db", dir);
	if ((ret = catalog_open(path, false, &v->cat, e)) < 0)
		goto out_close;
	ret = catalog_meta_get(v->cat, "store_id", v->store_id, sizeof(v->store_id), &len, e);
	if (ret == 0 && len != sizeof(v->store_id))
		ret = -ENOENT;
	if (ret == 0)
		ret = catalog_meta_get(v->cat, "mode", mode, sizeof(mode) - 1, &len, e);
	if (ret < 0) {
		ret = iverr_set(e, IV_EDAMAGE, "catalog %s is damaged: its store settings are "
				"missing; restore catalog.db from a backup", path);
		goto out_close;
	}
	v->system = !strcmp(mode, "system");
	if ((ret = config_load(v, e)) < 0)
		goto out_close;
	if ((ret = blobstore_local_open(dir, &v->bs, e)) < 0)
		goto out_close;
	*out = v;
	return 0;
out_close:
	vault_close(v);
	return ret;
}

void vault_close(struct vault *v)
{
	if (!v)
		return;
	image_sniffer_free(v->sniffer);
	blobstore_free(v->bs);
	catalog_close(v->cat);
	if (v->lock_fd >= 0)
		close(v->lock_fd);   /* releases the flock */
	free(v->path);
	free(v);
}

void vault_set_actor(struct vault *v, int64_t uid)
{
	v->actor = uid;
}

uint64_t vault_image_thumb_size(struct vault_session *s, const struct vault_image *im)
{
	struct catalog_thumb t;
	struct version_attrs at;
	uint64_t size = im->thumb_size;

	if (im->thumb_ready && catalog_thumb_get(s->v->cat, im->current_version, &t, NULL) == 0 &&
	    vault_open_record(s->keys, "thumb", &t.blob, im->current_version, t.attrs_enc,
			      t.attrs_enc_len, &at) == 0)
		vault_content_size(t.size, &at, &size);
	return size;
}

uint64_t vault_rows_hidden(struct vault *v)
{
	return catalog_auth_hidden(v->cat);
}

void vault_set_lenient(struct vault *v, bool lenient)
{
	v->lenient = lenient;
	catalog_auth_set_lenient(v->cat, lenient);
}

bool vault_is_system(const struct vault *v)
{
	return v->system;
}

const char *vault_path(const struct vault *v)
{
	return v->path;
}

struct catalog *vault_catalog(struct vault *v)
{
	return v->cat;
}

int vault_check_server_key(struct vault *v, const struct server_key *sk, struct iverr *e)
{
	uint8_t want[32], have[32];
	size_t len;
	int ret;

	ret = catalog_meta_get(v->cat, "server_check", want, sizeof(want), &len, e);
	if (ret == -ENOENT)
		return iverr_set(e, EINVAL, "store %s is a desktop store: it has no server "
				 "key; unlock it with your passphrase", v->path);
	if (ret < 0)
		return ret;
	keys_server_check(sk, v->store_id, have);
	if (len != sizeof(want) || !keys_equal32(want, have))
		return iverr_set(e, IV_EAUTH, "that server key does not belong to store %s; "
				 "give the store's own key with --server-key", v->path);
	/* The store's own rows are authenticated under it. */
	return vault_auth_server_key(v, sk, e);
}

void vault_audit(struct vault *v, int64_t subject, const char *action, const char *object,
		 const char *result, const char *detail)
{
	audit_append(v->cat, v->actor, subject, action, object, result, NULL, "%s",
		     detail ? detail : "");
}

/* ---- settings ---- */

static const char *const config_keys[] = {
	"image.max-bytes", "image.max-pixels", "image.max-frames", "image.max-total-pixels",
	"image.decode-memory", "image.types", "thumb.size",
	"share.ttl", "share.max-ttl", "share.base-url",
};

static int parse_size(const char *s, uint64_t *out);

static void settings_default(struct vault *v)
{
	image_limits_default(&v->limits);
	v->share.ttl = SHARE_DEFAULT_TTL;
	v->share.max_ttl = SHARE_DEFAULT_MAX_TTL;
	snprintf(v->share.base_url, sizeof(v->share.base_url), "%s", SHARE_DEFAULT_BASE_URL);
}

/* An http(s) URL with nothing a page or a header could trip on. */
static int config_base_url(struct share_settings *sh, const char *value, struct iverr *e)
{
	size_t len = strlen(value);

	if ((strncmp(value, "http://", 7) != 0 && strncmp(value, "https://", 8) != 0) ||
	    len >= sizeof(sh->base_url) || strcspn(value, " \t\r\n\"'<>\\`{}|^?#") != len)
		return iverr_set(e, EINVAL, "share.base-url takes the gateway's public URL, "
				 "http(s)://host[:port][/path], not '%s'", value);
	snprintf(sh->base_url, sizeof(sh->base_url), "%.*s", (int)len -
		 (len > 8 && value[len - 1] == '/'), value);
	return 0;
}

static int config_share(struct share_settings *sh, const char *key, const char *value,
			struct iverr *e)
{
	int64_t secs;

	if (!strcmp(key, "share.base-url"))
		return config_base_url(sh, value, e);
	if (share_parse_duration(value, &secs) < 0 || secs <= 0)
		return iverr_set(e, EINVAL, "%s takes a duration such as 90s, 30m, 1h, 7d, "
				 "not '%s'", key, value);
	if (!strcmp(key, "share.ttl"))
		sh->ttl = secs;
	else
		sh->max_ttl = secs;
	if (sh->ttl > sh->max_ttl)
		return iverr_set(e, EINVAL, "share.ttl would be longer than share.max-ttl; "
				 "raise share.max-ttl first");
	return 0;
}

/* Applies one setting; -EINVAL with a message for a bad value. */
static int config_apply(struct image_limits *l, struct share_settings *sh, const char *key,
			const char *value, struct iverr *e)
{
	uint64_t n;

	if (!strncmp(key, "share.", 6))
		return config_share(sh, key, value, e);
	if (!strcmp(key, "image.types"))
		return image_types_parse(value, &l->types, e);
	if (parse_size(value, &n) < 0 || n == 0)
		return iverr_set(e, EINVAL, "%s takes a positive number (K, M, G suffixes "
				 "allowed), not '%s'", key, value);
	if (!strcmp(key, "image.max-bytes"))
		l->max_bytes = n;
	else if (!strcmp(key, "image.max-pixels"))
		l->max_pixels = n;
	else if (!strcmp(key, "image.max-frames") && n <= UINT32_MAX)
		l->max_frames = (uint32_t)n;
	else if (!strcmp(key, "image.max-total-pixels"))
		l->max_total_pixels = n;
	else if (!strcmp(key, "image.decode-memory"))
		l->decode_memory = n;
	else if (!strcmp(key, "thumb.size") && n >= 16 && n <= 4096)
		l->thumb_size = (uint32_t)n;
	else
		return iverr_set(e, EINVAL, "%s: '%s' is out of range", key, value);
	return 0;
}

static int config_load(struct vault *v, struct iverr *e)
{
	char name[64], value[256];
	size_t len;
	int ret;

	settings_default(v);
	for (size_t i = 0; i < sizeof(config_keys) / sizeof(config_keys[0]); i++) {
		snprintf(name, sizeof(name), "config.%s", config_keys[i]);
		ret = catalog_meta_get(v->cat, name, value, sizeof(value) - 1, &len, e);
		if (ret == -ENOENT)
			continue;
		if (ret < 0)
			return ret;
		value[len] = '\0';
		if ((ret = config_apply(&v->limits, &v->share, config_keys[i], value, e)) < 0)
			return iverr_reset(e, -ret, "store setting %s is invalid ('%s'); set it "
					   "again with imgvault config", config_keys[i], value);
	}
	return 0;
}

int vault_config_set(struct vault *v, const char *key, const char *value, struct iverr *e)
{
	struct image_limits l = v->limits;
	struct share_settings sh = v->share;
	char name[64];
	bool known = false;
	int ret;

	for (size_t i = 0; i < sizeof(config_keys) / sizeof(config_keys[0]); i++)
		known |= !strcmp(key, config_keys[i]);
	if (!known)
		return iverr_set(e, EINVAL, "unknown setting '%s': the settings are "
				 "image.max-bytes, image.max-pixels, image.max-frames, "
				 "image.max-total-pixels, image.decode-memory, image.types, thumb.size, share.ttl, share.max-ttl and "
				 "share.base-url", key);
	if (strlen(value) > 200)
		return iverr_set(e, EINVAL, "%s: the value is too long", key);
	if ((ret = config_apply(&l, &sh, key, value, e)) < 0)
		return ret;
	snprintf(name, sizeof(name), "config.%s", key);
	if ((ret = catalog_meta_set(v->cat, name, value, strlen(value), e)) < 0)
		return ret;
	v->limits = l;
	v->share = sh;
	audit_append(v->cat, v->actor, -1, "config", "", "ok", NULL, "%s=%s", key, value);
	return 0;
}

int vault_config_list(struct vault *v, vault_config_fn fn, void *arg)
{
	char buf[128];
	const struct image_limits *l = &v->limits;
	char num[32];
	int ret = 0;

	for (size_t i = 0; !ret && i < sizeof(config_keys) / sizeof(config_keys[0]); i++) {
		const char *k = config_keys[i];
		if (!strcmp(k, "image.types")) {
			ret = fn(k, image_types_format(l->types, buf, sizeof(buf)), arg);
			continue;
		}
		if (!strcmp(k, "share.base-url")) {
			ret = fn(k, v->share.base_url, arg);
			continue;
		}
		if (!strncmp(k, "share.", 6)) {
			share_format_duration(!strcmp(k, "share.ttl") ? v->share.ttl
					      : v->share.max_ttl, num, sizeof(num));
			ret = fn(k, num, arg);
			continue;
		}
		uint64_t n = !strcmp(k, "image.max-bytes") ? l->max_bytes
			   : !strcmp(k, "image.max-pixels") ? l->max_pixels
			   : !strcmp(k, "image.max-frames") ? l->max_frames
			   : !strcmp(k, "image.max-total-pixels") ? l->max_total_pixels
			   : !strcmp(k, "image.decode-memory") ? l->decode_memory : l->thumb_size;
		snprintf(num, sizeof(num), "%llu", (unsigned long long)n);
		ret = fn(k, num, arg);
	}
	return ret;
}

const struct image_limits *vault_limits(const struct vault *v)
{
	return &v->limits;
}

int vault_config_reload(struct vault *v, struct iverr *e)
{
	struct image_limits old = v->limits;
	struct share_settings old_share = v->share;
	int ret = config_load(v, e);

	if (ret < 0) {
		v->limits = old;   /* a bad setting leaves the running ones */
		v->share = old_share;
	}
	return ret;
}

/* ---- users ---- */

struct key_slot_binding vault_binding(const struct vault *v, uint32_t uid)
{
	struct key_slot_binding b;

	memcpy(b.store_id, v->store_id, sizeof(b.store_id));
	b.uid = uid;
	return b;
}

int vault_seal_slot(struct vault *v, uint32_t uid, const struct user_keys *k,
		     enum key_slot_kind kind, const void *secret, size_t len,
		     const struct keys_kdf_cost *cost, struct iverr *e)
{
	struct key_slot_binding b = vault_binding(v, uid);
	struct key_slot slot;
	int ret = keys_slot_seal(&slot, kind, k, secret, len, cost, &b, e);

	if (ret == 0)
		ret = catalog_slot_put(v->cat, uid, &slot, e);
	return ret;
}

/* Creates an album under @k without a session (user creation). */
static int album_insert(struct vault *v, uint32_t uid, const struct user_keys *k,
			const char *name, size_t len, int64_t *id, struct iverr *e)
{
	struct catalog_album a = { 0 };
	int ret;

	a.uid = uid;
	randombytes_buf(a.pid, sizeof(a.pid));
	keys_name_index(k, ALBUM_PARENT, name, len, a.name_idx);
	vault_seal_name(k, "album", a.pid, name, len, a.name_enc, &a.name_enc_len);
	a.created = vault_now();
	ret = catalog_album_add(v->cat, &a, e);
	if (ret == -EEXIST)
		return iverr_set(e, EEXIST, "an album of that name exists");
	if (ret == 0 && id)
		*id = a.id;
	return ret;
}

int vault_user_add(struct vault *v, uint32_t uid, const struct server_key *sk,
		   const char *pass, size_t pass_len, const struct keys_kdf_cost *cost,
		   char recovery[KEYS_RECOVERY_CODE_LEN + 1], struct iverr *e)
{
	struct catalog_user u = { 0 };
	struct user_keys *k;
	bool store_key = false, keys_in = false;
	int ret;

	if (!sk && !pass)
		return iverr_set(e, EINVAL, "a user needs a passphrase or the server key");
	k = keys_user_new();
	if (!k)
		return iverr_set(e, ENOMEM, "out of memory");
	keys_recovery_code_new(recovery);
	u.uid = uid;
	u.created = vault_now();
	if ((ret = catalog_begin(v->cat, e)) < 0)
		goto out_free;
	if ((ret = vault_auth_user_new(v, uid, k, &store_key, e)) < 0)
		goto out_rollback;
	keys_in = true;
	ret = catalog_user_add(v->cat, &u, e);
	if (ret == -EEXIST)
		ret = iverr_set(e, EEXIST, "uid %u already has a vault in this store", uid);
	if (ret < 0)
		goto out_rollback;
	if ((sk && (ret = vault_seal_slot(v, uid, k, KEY_SLOT_SERVER, sk->k, KEYS_KEY_LEN, NULL, e)) < 0) ||
	    (pass && (ret = vault_seal_slot(v, uid, k, KEY_SLOT_PASSPHRASE, pass, pass_len, cost, e)) < 0) ||
	    (ret = vault_seal_slot(v, uid, k, KEY_SLOT_RECOVERY, recovery, strlen(recovery), NULL, e)) < 0 ||
	    (ret = album_insert(v, uid, k, VAULT_DEFAULT_ALBUM, strlen(VAULT_DEFAULT_ALBUM), NULL, e)) < 0 ||
	    (ret = audit_append(v->cat, v->actor, uid, "user-add", "", "ok", e, "slots:%s%s recovery",
				sk ? " server" : "", pass ? " passphrase" : "")) < 0)
		goto out_rollback;
	ret = catalog_commit(v->cat, e);
	goto out_free;
out_rollback:
	catalog_rollback(v->cat);
out_free:
	if (keys_in)
		vault_auth_user_new_done(v, uid, store_key);
	if (ret < 0)
		sodium_memzero(recovery, KEYS_RECOVERY_CODE_LEN + 1);
	keys_user_free(k);
	return ret;
}

/* Restores the previous user key saved by an interrupted rotation. */
static int session_load_prev(struct vault_session *s, const struct catalog_user *u,
			     struct iverr *e)
{
	uint8_t ad[32], uid_le[4], *uk;
	size_t adlen;
	int ret = 0;

	uk = sodium_malloc(KEYS_KEY_LEN);
	if (!uk)
		return iverr_set(e, ENOMEM, "out of memory");
	put_le32(uid_le, s->uid);
	vault_seal_ad("prevuk", uid_le, 4, ad, &adlen);
	if (u->prev_uk_len != KEYS_KEY_LEN + KEYS_SEAL_OVERHEAD ||
	    keys_open(s->keys->rekey, ad, adlen, u->prev_uk, u->prev_uk_len, uk) < 0)
		ret = iverr_set(e, IV_EDAMAGE, "uid %u's interrupted key rotation cannot be "
				"resumed: its saved key is damaged", s->uid);
	else if (!(s->prev = keys_user_from_uk(uk)))
		ret = iverr_set(e, ENOMEM, "out of memory");
	sodium_free(uk);
	return ret;
}

static const char *slot_word(enum key_slot_kind kind)
{
	switch (kind) {
	case KEY_SLOT_PASSPHRASE: return "passphrase";
	case KEY_SLOT_SERVER: return "server key";
	case KEY_SLOT_RECOVERY: return "recovery code";
	}
	return "key";
}

/* What an unlock read from the catalog, for the key derivation to use
 * outside the caller's lock (vault.h). */
struct vault_unlocking {
	struct vault *v;
	uint32_t uid;
	enum key_slot_kind kind;
	struct catalog_user u;
	struct key_slot slot;
	struct key_slot_binding b;
	struct user_keys *keys;      /* set by vault_unlock_derive */
	int derived;                 /* its result: 0, -IV_EAUTH … */
	struct iverr derive_err;
};

int vault_unlock_begin(struct vault *v, uint32_t uid, enum key_slot_kind kind,
		       struct vault_unlocking **out, struct iverr *e)
{
	struct vault_unlocking *un;
	int ret;

	*out = NULL;
	un = calloc(1, sizeof(*un));
	if (!un)
		return iverr_set(e, ENOMEM, "out of memory");
	un->v = v;
	un->uid = uid;
	un->kind = kind;
	un->b = vault_binding(v, uid);
	un->derived = -EINVAL;
	ret = catalog_user_get(v->cat, uid, &un->u, e);
	if (ret == -ENOENT)
		ret = iverr_set(e, ENOENT, "uid %u has no vault in store %s; add it with "
				"imgvault user add", uid, v->path);
	if (ret == 0) {
		ret = catalog_slot_get(v->cat, uid, kind, &un->slot, e);
		if (ret == -ENOENT)
			ret = iverr_set(e, ENOENT, "uid %u's vault has no %s slot", uid,
					slot_word(kind));
	}
	if (ret < 0) {
		free(un);
		return ret;
	}
	*out = un;
	return 0;
}

void vault_unlock_derive(struct vault_unlocking *un, const void *secret, size_t len)
{
	un->derived = keys_slot_open(&un->slot, secret, len, &un->b, &un->keys, &un->derive_err);
}

int vault_unlock_finish(struct vault_unlocking *un, struct vault_session **out,
			struct iverr *e)
{
	struct vault *v = un->v;
	struct vault_session *s = NULL;
	int ret = un->derived;

	*out = NULL;
	if (ret == -IV_EAUTH) {
		vault_audit(v, un->uid, "unlock", "", "refused", slot_word(un->kind));
		ret = iverr_set(e, IV_EAUTH, "wrong %s for uid %u's vault%s", slot_word(un->kind),
				un->uid, un->kind == KEY_SLOT_PASSPHRASE ? "; try again, or use "
				"imgvault user recover with the recovery code" : "");
		goto out;
	}
	if (ret < 0) {
		ret = iverr_set(e, -ret, "%s", un->derive_err.msg);
		goto out;
	}
	s = calloc(1, sizeof(*s));
	if (!s) {
		ret = iverr_set(e, ENOMEM, "out of memory");
		goto out;
	}
	s->v = v;
	s->uid = un->uid;
	s->key_epoch = un->u.key_epoch;
	s->keys = un->keys;
	un->keys = NULL;
	if (un->u.rekey != CATALOG_REKEY_NONE && (ret = session_load_prev(s, &un->u, e)) < 0) {
		vault_session_close(s);
		goto out;
	}
	/* The vault's rows are checked against their seal before anything of
	 * it is used. */
	{
		struct iverr err = { 0 };
		/* fsck goes on: it reports what fails. */
		if ((ret = vault_auth_session_open(s, &err)) < 0 && v->lenient)
			ret = 0;
		if (ret < 0) {
			vault_audit(v, un->uid, "unlock", "", "damaged", err.msg);
			iverr_set(e, -ret, "%s", err.msg);
			vault_session_close(s);
			goto out;
		}
	}
	vault_audit(v, un->uid, "unlock", "", "ok", slot_word(un->kind));
	*out = s;
out:
	vault_unlock_abandon(un);
	return ret;
}

void vault_unlock_abandon(struct vault_unlocking *un)
{
	if (!un)
		return;
	keys_user_free(un->keys);
	sodium_memzero(un, sizeof(*un));
	free(un);
}

int vault_unlock(struct vault *v, uint32_t uid, enum key_slot_kind kind,
		 const void *secret, size_t len, struct vault_session **out,
		 struct iverr *e)
{
	struct vault_unlocking *un;
	int ret = vault_unlock_begin(v, uid, kind, &un, e);

	*out = NULL;
	if (ret < 0)
		return ret;
	vault_unlock_derive(un, secret, len);
	return vault_unlock_finish(un, out, e);
}

void vault_session_close(struct vault_session *s)
{
	if (!s)
		return;
	vault_auth_session_close(s);
	keys_user_free(s->keys);
	keys_user_free(s->prev);
	free(s);
}

struct vault *vault_session_vault(const struct vault_session *s)
{
	return s->v;
}

uint32_t vault_session_uid(const struct vault_session *s)
{
	return s->uid;
}

int vault_set_slot(struct vault_session *s, enum key_slot_kind kind, const void *secret,
		   size_t len, const struct keys_kdf_cost *cost,
		   char recovery[KEYS_RECOVERY_CODE_LEN + 1], struct iverr *e)
{
	int ret;

	if (kind == KEY_SLOT_RECOVERY) {
		keys_recovery_code_new(recovery);
		secret = recovery;
		len = strlen(recovery);
	}
	if ((ret = catalog_begin(s->v->cat, e)) < 0)
		return ret;
	if ((ret = vault_seal_slot(s->v, s->uid, s->keys, kind, secret, len, cost, e)) < 0 ||
	    (ret = audit_append(s->v->cat, s->v->actor, s->uid, "slot-set", "", "ok", e,
				"%s", slot_word(kind))) < 0) {
		catalog_rollback(s->v->cat);
		return ret;
	}
	return catalog_commit(s->v->cat, e);
}

struct blob_list {
	struct blob_id *ids;
	size_t n, cap;
};

static int blob_list_push(struct blob_list *l, const struct blob_id *id)
{
	if (l->n == l->cap) {
		size_t cap = l->cap ? 2 * l->cap : 64;
		struct blob_id *p = realloc(l->ids, cap * sizeof(*p));
		if (!p)
			return -ENOMEM;
		l->ids = p;
		l->cap = cap;
	}
	l->ids[l->n++] = *id;
	return 0;
}

static int collect_version_blob(const struct catalog_version *ver, void *arg)
{
	return blob_list_push(arg, &ver->blob);
}

static int collect_thumb_blob(const struct catalog_thumb *t, void *arg)
{
	return blob_list_push(arg, &t->blob);
}

int vault_user_delete(struct vault *v, uint32_t uid, struct iverr *e)
{
	struct blob_list blobs = { 0 };
	struct catalog_user u;
	size_t failed = 0;
	int ret;

	ret = catalog_user_get(v->cat, uid, &u, e);
	if (ret == -ENOENT)
		return iverr_set(e, ENOENT, "uid %u has no vault in store %s", uid, v->path);
	if (ret < 0)
		return ret;
	ret = catalog_version_list_user(v->cat, uid, 0, collect_version_blob, &blobs, e);
	if (ret == 0)
		ret = catalog_thumb_list_user(v->cat, uid, collect_thumb_blob, &blobs, e);
	if (ret < 0)
		goto out_free;
	if ((ret = catalog_begin(v->cat, e)) < 0)
		goto out_free;
	/* The vault's seal goes first: every row of it goes too, and deleting
	 * them needs no key of the vault. */
	if ((ret = catalog_auth_forget_scope(v->cat, uid, e)) < 0)
		goto out_rollback;
	/* Slots first: once they are wiped, nothing of the user can be decrypted. */
	for (int kind = KEY_SLOT_PASSPHRASE; kind <= KEY_SLOT_RECOVERY; kind++)
		if ((ret = catalog_slot_delete(v->cat, uid, (enum key_slot_kind)kind, e)) < 0)
			goto out_rollback;
	if ((ret = catalog_user_delete(v->cat, uid, e)) < 0 ||
	    (ret = audit_append(v->cat, v->actor, uid, "user-del", "", "ok", e,
				"%zu blobs removed", blobs.n)) < 0)
		goto out_rollback;
	if ((ret = catalog_commit(v->cat, e)) < 0)
		goto out_free;
	for (size_t i = 0; i < blobs.n; i++)
		if (v->bs->ops->remove(v->bs, &blobs.ids[i], NULL) < 0)
			failed++;
	if (failed)
		ret = iverr_set(e, EIO, "uid %u deleted, but %zu of its blobs could not be "
				"removed; imgvault fsck removes them", uid, failed);
	goto out_free;
out_rollback:
	catalog_rollback(v->cat);
out_free:
	free(blobs.ids);
	return ret;
}

static int user_info_fill(struct vault *v, const struct catalog_user *u,
			  struct vault_user_info *out, struct iverr *e)
{
	int ret;

	memset(out, 0, sizeof(*out));
	out->uid = u->uid;
	out->web_read = u->web_read;
	out->quota = u->quota;
	out->rekey = u->rekey;
	if ((ret = catalog_slot_kinds(v->cat, u->uid, &out->slots, e)) < 0)
		return ret;
	return catalog_user_usage(v->cat, u->uid, &out->images, &out->bytes, e);
}

struct user_list_ctx {
	struct vault *v;
	vault_user_fn fn;
	void *arg;
	struct iverr *e;
};

static int user_list_one(const struct catalog_user *u, void *arg)
{
	struct user_list_ctx *ctx = arg;
	struct vault_user_info info;
	int ret = user_info_fill(ctx->v, u, &info, ctx->e);

	return ret < 0 ? ret : ctx->fn(&info, ctx->arg);
}

int vault_user_list(struct vault *v, vault_user_fn fn, void *arg, struct iverr *e)
{
	struct user_list_ctx ctx = { v, fn, arg, e };

	return catalog_user_list(v->cat, user_list_one, &ctx, e);
}

int vault_user_info(struct vault *v, uint32_t uid, struct vault_user_info *out,
		    struct iverr *e)
{
	struct catalog_user u;
	int ret = catalog_user_get(v->cat, uid, &u, e);

	if (ret == -ENOENT)
		return iverr_set(e, ENOENT, "uid %u has no vault in store %s", uid, v->path);
	if (ret < 0)
		return ret;
	return user_info_fill(v, &u, out, e);
}

struct uid_list {
	uint32_t *v;
	size_t n;
};

static int push_uid(const struct catalog_user *u, void *arg)
{
	struct uid_list *l = arg;
	uint32_t *p = realloc(l->v, (l->n + 1) * sizeof(*p));

	if (!p)
		return -ENOMEM;
	l->v = p;
	l->v[l->n++] = u->uid;
	return 0;
}

int vault_user_uids(struct vault *v, uint32_t **uids, size_t *n, struct iverr *e)
{
	struct uid_list l = { NULL, 0 };
	int ret = catalog_user_list(v->cat, push_uid, &l, e);

	if (ret < 0) {
		free(l.v);
		return ret == -ENOMEM ? iverr_set(e, ENOMEM, "out of memory") : ret;
	}
	*uids = l.v;
	*n = l.n;
	return 0;
}

static int parse_size(const char *s, uint64_t *out)
{
	char *end;
	unsigned long long n;
	int shift = 0;

	if (!strcmp(s, "none")) {
		*out = 0;
		return 0;
	}
	errno = 0;
	n = strtoull(s, &end, 10);
	if (errno || end == s || *s == '-')
		return -1;
	switch (*end) {
	case 'T': case 't': shift += 10; /* fall through */
	case 'G': case 'g': shift += 10; /* fall through */
	case 'M': case 'm': shift += 10; /* fall through */
	case 'K': case 'k': shift += 10; end++; break;
	case '\0': break;
	default: return -1;
	}
	if (*end == 'i' || *end == 'B' || *end == 'b')
		end += (*end == 'i' && (end[1] == 'B' || end[1] == 'b')) ? 2 : 1;
	if (*end || (shift && n > (UINT64_MAX >> shift)))
		return -1;
	*out = (uint64_t)n << shift;
	return 0;
}

int vault_user_set(struct vault *v, uint32_t uid, const char *key, const char *value,
		   struct iverr *e)
{
	struct catalog_user u;
	int ret = catalog_user_get(v->cat, uid, &u, e);

	if (ret == -ENOENT)
		return iverr_set(e, ENOENT, "uid %u has no vault in store %s", uid, v->path);
	if (ret < 0)
		return ret;
	if (!strcmp(key, "web-read")) {
		if (!strcmp(value, "on"))
			u.web_read = true;
		else if (!strcmp(value, "off"))
			u.web_read = false;
		else
			return iverr_set(e, EINVAL, "web-read takes on or off, not '%s'", value);
	} else if (!strcmp(key, "quota")) {
		if (parse_size(value, &u.quota) < 0)
			return iverr_set(e, EINVAL, "quota takes a size like 500M, 20G or none, "
					 "not '%s'", value);
	} else {
		return iverr_set(e, EINVAL, "unknown setting '%s': the settings are web-read "
				 "and quota", key);
	}
	if ((ret = catalog_user_update(v->cat, &u, e)) < 0)
		return ret;
	audit_append(v->cat, v->actor, uid, "user-set", "", "ok", NULL, "%s=%s", key, value);
	return 0;
}

/* ---- albums ---- */

int vault_check_name(const char *name, size_t len, const char *what, struct iverr *e)
{
	if (len == 0)
		return iverr_set(e, EINVAL, "%s name is empty", what);
	if (len > CATALOG_NAME_MAX)
		return iverr_set(e, ENAMETOOLONG, "%s name is %zu bytes, the limit is %d",
				 what, len, CATALOG_NAME_MAX);
	if (memchr(name, '/', len) || memchr(name, '\0', len))
		return iverr_set(e, EINVAL, "%s name may not contain '/' or NUL", what);
	if ((len == 1 && name[0] == '.') || (len == 2 && name[0] == '.' && name[1] == '.'))
		return iverr_set(e, EINVAL, "%s name may not be '.' or '..'", what);
	return 0;
}

int vault_album_find(struct vault_session *s, const char *name, size_t len, int64_t *id,
		     struct iverr *e)
{
	struct catalog_album a;
	uint8_t idx[CATALOG_INDEX_LEN];
	int ret = vault_check_name(name, len, "album", e);

	if (ret < 0)
		return ret;
	keys_name_index(s->keys, ALBUM_PARENT, name, len, idx);
	ret = catalog_album_find(s->v->cat, s->uid, idx, &a, e);
	if (ret == -ENOENT)
		return iverr_set(e, ENOENT, "no album '%.*s'", (int)len, name);
	if (ret == 0)
		*id = a.id;
	return ret;
}

int vault_album_create(struct vault_session *s, const char *name, size_t len, int64_t *id,
		       struct iverr *e)
{
	int ret = vault_check_name(name, len, "album", e);

	if (ret < 0)
		return ret;
	ret = album_insert(s->v, s->uid, s->keys, name, len, id, e);
	if (ret == 0)
		vault_audit(s->v, s->uid, "album-add", "", "ok", "");
	return ret;
}

int vault_album_ensure(struct vault_session *s, const char *name, size_t len, int64_t *id,
		       struct iverr *e)
{
	struct iverr tmp = { 0 };
	int ret = vault_album_find(s, name, len, id, &tmp);

	if (ret == -ENOENT)
		return vault_album_create(s, name, len, id, e);
	if (ret < 0)
		iverr_set(e, tmp.code, "%s", tmp.msg);
	return ret;
}

static int album_owned(struct vault_session *s, int64_t id, struct catalog_album *a,
		       struct iverr *e)
{
	int ret = catalog_album_get(s->v->cat, id, a, e);

	if (ret == 0 && a->uid != s->uid)
		ret = -ENOENT;
	if (ret == -ENOENT)
		return iverr_set(e, ENOENT, "no such album");
	return ret;
}

int vault_album_remove(struct vault_session *s, int64_t id, struct iverr *e)
{
	struct catalog_album a;
	int ret = album_owned(s, id, &a, e);

	if (ret < 0)
		return ret;
	ret = catalog_album_delete(s->v->cat, id, e);
	if (ret == -ENOTEMPTY)
		return iverr_set(e, ENOTEMPTY, "the album is not empty: remove its images first");
	if (ret == 0)
		vault_audit(s->v, s->uid, "album-rm", "", "ok", "");
	return ret;
}

struct album_list_ctx {
	struct vault_session *s;
	vault_album_fn fn;
	void *arg;
};

static int album_list_one(const struct catalog_album *a, void *arg)
{
	struct album_list_ctx *ctx = arg;
	char name[CATALOG_NAME_MAX + 1];
	size_t len;

	if (vault_open_name(ctx->s->keys, "album", a->pid, a->name_enc, a->name_enc_len, name, &len) < 0) {
		/* Not fatal for a listing: show the album by id so fsck can be run. */
		len = (size_t)snprintf(name, sizeof(name), "damaged-album-%" PRId64, a->id);
	}
	return ctx->fn(a->id, name, len, ctx->arg);
}

int vault_album_list(struct vault_session *s, vault_album_fn fn, void *arg, struct iverr *e)
{
	struct album_list_ctx ctx = { s, fn, arg };

	return catalog_album_list(s->v->cat, s->uid, album_list_one, &ctx, e);
}

/* ---- images ---- */

/* Fills @out from a catalog row: decrypts the name and current attributes. */
int vault_image_describe(struct vault_session *s, const struct catalog_image *ci,
			  struct vault_image *out, struct iverr *e)
{
	struct catalog_version ver;
	struct version_attrs at;
	char pid[33];
	int ret;

	memset(out, 0, sizeof(*out));
	out->id = ci->id;
	out->album_id = ci->album_id;
	memcpy(out->pid, ci->pid, sizeof(out->pid));
	out->created = ci->created;
	out->mtime = ci->mtime;
	out->damaged = ci->damaged;
	out->current_version = ci->current_version;
	out->pristine_version = ci->pristine_version;
	out->edited = ci->current_version != ci->pristine_version;
	hex_encode(ci->pid, 16, pid);
	if (vault_open_name(s->keys, "name", ci->pid, ci->name_enc, ci->name_enc_len, out->name,
		      &out->name_len) < 0) {
		out->name_len = (size_t)snprintf(out->name, sizeof(out->name), "damaged-%s", pid);
		out->damaged = true;
	}
	/* Sizes are the content's, sealed in the records (blobs are padded);
	 * an unedited image's pristine version is its current one. */
	if (ci->pristine_version && ci->pristine_version != ci->current_version &&
	    catalog_version_get(s->v->cat, ci->pristine_version, &ver, NULL) == 0) {
		out->pristine_size = ver.size;
		if (vault_open_attrs(s->keys, &ver, ci->pid, &at) == 0)
			vault_content_size(ver.size, &at, &out->pristine_size);
	}
	if (!ci->current_version)
		return 0;
	{
		struct catalog_thumb t;
		if (catalog_thumb_get(s->v->cat, ci->current_version, &t, NULL) == 0) {
			out->thumb_ready = true;
			out->thumb_size = t.size;   /* stored: vault_image_thumb_size */
		}
	}
	if ((ret = catalog_version_get(s->v->cat, ci->current_version, &ver, e)) < 0)
		return ret;
	out->size = ver.size;
	if (ver.image_id != ci->id) {
		out->damaged = true;
		return 0;
	}
	const struct user_keys *k = (s->prev && ver.key_epoch != s->key_epoch) ? s->prev : s->keys;
	/* Attributes are resealed with the rotation, names too: try both keys. */
	if ((vault_open_attrs(s->keys, &ver, ci->pid, &at) < 0 &&
	     vault_open_attrs(k, &ver, ci->pid, &at) < 0) ||
	    vault_content_size(ver.size, &at, &out->size) < 0) {
		out->damaged = true;
		return 0;
	}
	if (ci->pristine_version == ci->current_version)
		out->pristine_size = out->size;
	snprintf(out->mime, sizeof(out->mime), "%s", at.mime);
	out->width = at.width;
	out->height = at.height;
	memcpy(out->sha256, at.sha256, 32);
	return 0;
}

static int image_owned(struct vault_session *s, int64_t id, struct catalog_image *ci,
		       struct iverr *e)
{
	int ret = catalog_image_get(s->v->cat, id, ci, e);

	if (ret == 0 && ci->uid != s->uid)
		ret = -ENOENT;
	if (ret == -ENOENT)
		return iverr_set(e, ENOENT, "no such image");
	return ret;
}

int vault_image_find(struct vault_session *s, int64_t album_id, const char *name,
		     size_t len, struct vault_image *out, struct iverr *e)
{
	struct catalog_album a;
	struct catalog_image ci;
	uint8_t idx[CATALOG_INDEX_LEN];
	int ret = vault_check_name(name, len, "image", e);

	if (ret < 0)
		return ret;
	/* One read transaction for the handful of rows: one snapshot, one lock. */
	catalog_read_begin(s->v->cat);
	if ((ret = album_owned(s, album_id, &a, e)) < 0)
		goto out;
	keys_name_index(s->keys, album_id, name, len, idx);
	ret = catalog_image_find(s->v->cat, album_id, idx, &ci, e);
	if (ret == -ENOENT)
		ret = iverr_set(e, ENOENT, "no image '%.*s' in that album", (int)len, name);
	if (ret == 0)
		ret = vault_image_describe(s, &ci, out, e);
out:
	catalog_read_end(s->v->cat);
	return ret;
}

int vault_image_get(struct vault_session *s, int64_t image_id, struct vault_image *out,
		    struct iverr *e)
{
	struct catalog_image ci;
	int ret;

	catalog_read_begin(s->v->cat);
	ret = image_owned(s, image_id, &ci, e);
	if (ret == 0)
		ret = vault_image_describe(s, &ci, out, e);
	catalog_read_end(s->v->cat);
	return ret;
}

int vault_image_set_mtime(struct vault_session *s, int64_t image_id, int64_t mtime,
			  struct iverr *e)
{
	struct catalog_image ci;
	int ret = image_owned(s, image_id, &ci, e);

	if (ret < 0)
		return ret;
	ci.mtime = mtime;
	return catalog_image_update(s->v->cat, &ci, e);
}

int vault_album_owner(struct vault *v, int64_t album_id, uint32_t *uid, struct iverr *e)
{
	struct catalog_album a;
	int ret = catalog_album_get(v->cat, album_id, &a, e);

	if (ret == 0)
		*uid = a.uid;
	return ret;
}

int vault_image_owner(struct vault *v, int64_t image_id, uint32_t *uid, int64_t *album_id,
		      struct iverr *e)
{
	struct catalog_image ci;
	int ret = catalog_image_get(v->cat, image_id, &ci, e);

	if (ret == 0) {
		*uid = ci.uid;
		*album_id = ci.album_id;
	}
	return ret;
}

struct image_list_ctx {
	struct vault_session *s;
	vault_image_fn fn;
	void *arg;
	struct iverr *e;
};

static int image_list_one(const struct catalog_image *ci, void *arg)
{
	struct image_list_ctx *ctx = arg;
	struct vault_image im;
	int ret = vault_image_describe(ctx->s, ci, &im, ctx->e);

	return ret < 0 ? ret : ctx->fn(&im, ctx->arg);
}

int vault_image_list(struct vault_session *s, int64_t album_id, vault_image_fn fn,
		     void *arg, struct iverr *e)
{
	struct image_list_ctx ctx = { s, fn, arg, e };
	struct catalog_album a;
	int ret = album_owned(s, album_id, &a, e);

	if (ret < 0)
		return ret;
	return catalog_image_list(s->v->cat, album_id, image_list_one, &ctx, e);
}

static int check_quota(struct vault_session *s, uint64_t add, struct iverr *e)
{
	struct catalog_user u;
	uint64_t images, bytes;
	int ret;

	if ((ret = catalog_user_get(s->v->cat, s->uid, &u, e)) < 0)
		return ret;
	if (!u.quota)
		return 0;
	if ((ret = catalog_user_usage(s->v->cat, s->uid, &images, &bytes, e)) < 0)
		return ret;
	if (bytes + add > u.quota)
		return iverr_set(e, EDQUOT, "over quota: %llu of %llu bytes used, %llu more "
				 "needed; remove images or raise the quota",
				 (unsigned long long)bytes, (unsigned long long)u.quota,
				 (unsigned long long)add);
	return 0;
}

#define HASH_THREAD_MIN (262144)

struct hash_job {
	const void *data;
	size_t size;
	uint8_t digest[32];
};

static void *hash_job_run(void *arg)
{
	struct hash_job *job = arg;

	crypto_hash_sha256(job->digest, job->data, job->size);
	return NULL;
}

int vault_stage(struct vault_session *s, struct image_sniffer *sniffer, const void *data,
		size_t size, struct vault_staged *out, struct iverr *e)
{
	struct blob_writer *w = NULL;
	struct hash_job job = { .data = data, .size = size };
	pthread_t hasher;
	bool threaded;
	struct image_info info;
	int ret;

	memset(out, 0, sizeof(*out));
	if ((ret = image_admit(sniffer, &s->v->limits, data, size, &info, e)) < 0)
		return ret;
	snprintf(out->attrs.mime, sizeof(out->attrs.mime), "%s", info.mime);
	out->attrs.width = info.width;
	out->attrs.height = info.height;
	/* SHA-256 is as slow as the encryption: hash on another core meanwhile. */
	threaded = size >= HASH_THREAD_MIN &&
		   pthread_create(&hasher, NULL, hash_job_run, &job) == 0;
	if (!threaded)
		hash_job_run(&job);
	/* The blob is durable before any catalog names it. */
	ret = blob_writer_open(s->v->bs, s->keys->file_wrap, s->uid, &w, e);
	if (ret == 0 && (ret = vault_write_padded(w, data, size, &out->stored, e)) < 0)
		blob_writer_abort(w);
	else if (ret == 0)
		ret = blob_writer_commit(w, &out->blob, e);
	if (threaded)
		pthread_join(hasher, NULL);
	if (ret < 0)
		return ret;
	memcpy(out->attrs.sha256, job.digest, sizeof(job.digest));
	out->size = size;
	out->attrs.size = size;
	out->key_epoch = s->key_epoch;
	out->staged = true;
	return 0;
}

void vault_discard_staged(struct vault_session *s, struct vault_staged *st)
{
	if (st->staged)
		s->v->bs->ops->remove(s->v->bs, &st->blob, NULL);
	st->staged = false;
}

void vault_note_refused(struct vault_session *s, const char *why)
{
	vault_audit(s->v, s->uid, "import", "", "refused", why);
}

/* Blobs a transaction made unreferenced: unlinked once it has committed. */
struct dropped {
	struct blob_id ids[4];
	size_t n;
};

static void dropped_remove(struct vault *v, const struct dropped *d)
{
	for (size_t i = 0; i < d->n; i++)
		v->bs->ops->remove(v->bs, &d->ids[i], NULL);   /* else fsck removes it */
}

/* Drops the thumbnail of version @vid, if any (inside a transaction). */
static int drop_thumb(struct vault *v, int64_t vid, struct dropped *d, struct iverr *e)
{
	struct catalog_thumb t;
	int ret;

	if (!vid || catalog_thumb_get(v->cat, vid, &t, NULL) < 0)
		return 0;
	if ((ret = catalog_thumb_delete(v->cat, vid, e)) == 0)
		d->ids[d->n++] = t.blob;
	return ret;
}

/*
 * Inside a transaction: makes @st the current version of image @ci (added
 * first when ci->id is 0).  Only the current and the pristine version are
 * kept, and only the current one has a thumbnail; the new one is queued.
 */
static int commit_version(struct vault_session *s, struct catalog_image *ci,
			  struct vault_staged *st, struct dropped *d, struct iverr *e)
{
	struct vault *v = s->v;
	struct catalog_version ver = { 0 };
	char pid[33], bid[33];
	int ret;

	if (!ci->id && (ret = catalog_image_add(v->cat, ci, e)) < 0)
		return ret;
	ver.blob = st->blob;
	ver.size = st->stored ? st->stored : st->size;
	ver.key_epoch = st->key_epoch;
	ver.created = vault_now();
	ver.image_id = ci->id;
	vault_seal_attrs(s->keys, &ver.blob, ci->pid, &st->attrs, &ver);
	if ((ret = catalog_version_add(v->cat, &ver, e)) < 0 ||
	    (ret = drop_thumb(v, ci->current_version, d, e)) < 0)
		return ret;
	if (ci->current_version && ci->current_version != ci->pristine_version) {
		struct catalog_version old;
		if ((ret = catalog_version_get(v->cat, ci->current_version, &old, e)) < 0 ||
		    (ret = catalog_version_delete(v->cat, old.id, e)) < 0)
			return ret;
		d->ids[d->n++] = old.blob;
	}
	if ((ret = catalog_queue_push(v->cat, ver.id, s->uid, 0, vault_now(), e)) < 0)
		return ret;
	if (!ci->pristine_version)
		ci->pristine_version = ver.id;
	ci->current_version = ver.id;
	ci->damaged = false;
	ci->mtime = vault_now();
	if ((ret = catalog_image_update(v->cat, ci, e)) < 0)
		return ret;
	hex_encode(ci->pid, 16, pid);
	blob_id_hex(&ver.blob, bid);
	/* Ids and sizes only: a stolen store must not learn names or types. */
	return audit_append(v->cat, v->actor, s->uid, "import", pid, "ok", e,
			    "version %s, %" PRIu64 " bytes", bid, st->size);
}

/* Runs commit_version in its own transaction and cleans up after it. */
static int commit_in_txn(struct vault_session *s, struct catalog_image *ci,
			 struct vault_staged *st, struct vault_image *out, struct iverr *e)
{
	struct vault *v = s->v;
	struct dropped d = { .n = 0 };
	int ret;

	if (st->key_epoch != s->key_epoch) {
		ret = iverr_set(e, EAGAIN, "the vault's key changed while the image was "
				"written; write it again");
		goto out_discard;
	}
	if ((ret = check_quota(s, st->stored ? st->stored : st->size, e)) < 0 || (ret = catalog_begin(v->cat, e)) < 0)
		goto out_discard;
	if ((ret = commit_version(s, ci, st, &d, e)) < 0) {
		catalog_rollback(v->cat);
		goto out_discard;
	}
	if ((ret = catalog_commit(v->cat, e)) < 0)
		goto out_discard;
	st->staged = false;   /* the catalog owns the blob now */
	dropped_remove(v, &d);
	return out ? vault_image_describe(s, ci, out, e) : 0;
out_discard:
	vault_discard_staged(s, st);
	return ret;
}

int vault_commit_staged(struct vault_session *s, int64_t album_id, const char *name,
			size_t len, struct vault_staged *st, struct vault_image *out,
			struct iverr *e)
{
	struct catalog_album a;
	struct catalog_image ci;
	uint8_t idx[CATALOG_INDEX_LEN];
	int ret;

	if ((ret = vault_check_name(name, len, "image", e)) < 0 ||
	    (ret = album_owned(s, album_id, &a, e)) < 0) {
		vault_discard_staged(s, st);
		return ret;
	}
	keys_name_index(s->keys, album_id, name, len, idx);
	ret = catalog_image_find(s->v->cat, album_id, idx, &ci, e);
	if (ret == -ENOENT) {
		memset(&ci, 0, sizeof(ci));
		ci.uid = s->uid;
		ci.album_id = album_id;
		randombytes_buf(ci.pid, sizeof(ci.pid));
		memcpy(ci.name_idx, idx, sizeof(idx));
		vault_seal_name(s->keys, "name", ci.pid, name, len, ci.name_enc, &ci.name_enc_len);
		ci.created = ci.mtime = vault_now();
		ret = 0;
	}
	if (ret < 0) {
		vault_discard_staged(s, st);
		return ret;
	}
	return commit_in_txn(s, &ci, st, out, e);
}

int vault_commit_staged_to(struct vault_session *s, int64_t image_id, struct vault_staged *st,
			   struct vault_image *out, struct iverr *e)
{
	struct catalog_image ci;
	int ret = image_owned(s, image_id, &ci, e);

	if (ret < 0) {
		vault_discard_staged(s, st);
		return ret;
	}
	return commit_in_txn(s, &ci, st, out, e);
}

int vault_image_create(struct vault_session *s, int64_t album_id, const char *name,
		       size_t len, struct vault_image *out, struct iverr *e)
{
	struct catalog_album a;
	struct catalog_image ci = { 0 };
	char pid[33];
	int ret;

	if ((ret = vault_check_name(name, len, "image", e)) < 0 ||
	    (ret = album_owned(s, album_id, &a, e)) < 0)
		return ret;
	ci.uid = s->uid;
	ci.album_id = album_id;
	randombytes_buf(ci.pid, sizeof(ci.pid));
	keys_name_index(s->keys, album_id, name, len, ci.name_idx);
	vault_seal_name(s->keys, "name", ci.pid, name, len, ci.name_enc, &ci.name_enc_len);
	ci.created = ci.mtime = vault_now();
	ret = catalog_image_add(s->v->cat, &ci, e);
	if (ret == -EEXIST)
		return iverr_set(e, EEXIST, "an image of that name exists");
	if (ret < 0)
		return ret;
	hex_encode(ci.pid, 16, pid);
	vault_audit(s->v, s->uid, "create", pid, "ok", "empty placeholder");
	return out ? vault_image_describe(s, &ci, out, e) : 0;
}

int vault_import(struct vault_session *s, int64_t album_id, const char *name, size_t len,
		 const void *data, size_t size, struct vault_image *out, struct iverr *e)
{
	struct vault *v = s->v;
	struct vault_staged st;
	int ret;

	if ((ret = vault_check_name(name, len, "image", e)) < 0)
		return ret;
	if (!v->sniffer && (ret = image_sniffer_new(&v->sniffer, e)) < 0)
		return ret;
	ret = vault_stage(s, v->sniffer, data, size, &st, e);
	if (ret == -IV_EREJECT)
		vault_note_refused(s, "content refused");
	if (ret < 0)
		return ret;
	return vault_commit_staged(s, album_id, name, len, &st, out, e);
}

int vault_album_rename(struct vault_session *s, int64_t album_id, const char *name,
		       size_t len, struct iverr *e)
{
	struct catalog_album a;
	int ret;

	if ((ret = vault_check_name(name, len, "album", e)) < 0 ||
	    (ret = album_owned(s, album_id, &a, e)) < 0)
		return ret;
	keys_name_index(s->keys, ALBUM_PARENT, name, len, a.name_idx);
	vault_seal_name(s->keys, "album", a.pid, name, len, a.name_enc, &a.name_enc_len);
	ret = catalog_album_update(s->v->cat, &a, e);
	if (ret == -EEXIST)
		return iverr_set(e, EEXIST, "an album of that name exists");
	if (ret == 0)
		vault_audit(s->v, s->uid, "album-mv", "", "ok", "");
	return ret;
}

/* Inside a transaction: image @src's current version becomes @dst's, and
 * @src goes (DESIGN §5: rename over an existing image is a new version). */
static int replace_image(struct vault_session *s, struct catalog_image *src,
			 struct catalog_image *dst, struct dropped *d, struct iverr *e)
{
	struct vault *v = s->v;
	struct catalog_version ver, old;
	struct version_attrs at;
	char pid[33];
	int ret;

	if ((ret = drop_thumb(v, dst->current_version, d, e)) < 0)
		return ret;
	if (dst->current_version && dst->current_version != dst->pristine_version) {
		if ((ret = catalog_version_get(v->cat, dst->current_version, &old, e)) < 0 ||
		    (ret = catalog_version_delete(v->cat, old.id, e)) < 0)
			return ret;
		d->ids[d->n++] = old.blob;
	}
	if (src->pristine_version && src->pristine_version != src->current_version) {
		if ((ret = drop_thumb(v, src->pristine_version, d, e)) < 0 ||
		    (ret = catalog_version_get(v->cat, src->pristine_version, &old, e)) < 0 ||
		    (ret = catalog_version_delete(v->cat, old.id, e)) < 0)
			return ret;
		d->ids[d->n++] = old.blob;
	}
	dst->current_version = src->current_version;
	if (src->current_version) {
		/* Its attributes are bound to the image: reseal them for @dst. */
		if ((ret = catalog_version_get(v->cat, src->current_version, &ver, e)) < 0)
			return ret;
		if (vault_open_attrs(s->keys, &ver, src->pid, &at) < 0)
			return iverr_set(e, IV_EDAMAGE, "its recorded attributes fail authentication");
		ver.image_id = dst->id;
		vault_seal_attrs(s->keys, &ver.blob, dst->pid, &at, &ver);
		if ((ret = catalog_version_update(v->cat, &ver, e)) < 0)
			return ret;
		if (!dst->pristine_version)
			dst->pristine_version = ver.id;
	}
	dst->damaged = src->damaged;
	dst->mtime = vault_now();
	if ((ret = catalog_image_update(v->cat, dst, e)) < 0 ||
	    (ret = catalog_image_delete(v->cat, src->id, e)) < 0)
		return ret;
	hex_encode(dst->pid, 16, pid);
	return audit_append(v->cat, v->actor, s->uid, "replace", pid, "ok", e,
			    "a new version by rename");
}

int vault_image_rename(struct vault_session *s, int64_t image_id, int64_t album_id,
		       const char *name, size_t len, int64_t *result, struct iverr *e)
{
	struct vault *v = s->v;
	struct catalog_image src, dst;
	struct catalog_album a;
	struct dropped d = { .n = 0 };
	uint8_t idx[CATALOG_INDEX_LEN];
	char pid[33];
	int ret;

	if ((ret = vault_check_name(name, len, "image", e)) < 0 ||
	    (ret = album_owned(s, album_id, &a, e)) < 0 ||
	    (ret = image_owned(s, image_id, &src, e)) < 0)
		return ret;
	keys_name_index(s->keys, album_id, name, len, idx);
	if ((ret = catalog_begin(v->cat, e)) < 0)
		return ret;
	ret = catalog_image_find(v->cat, album_id, idx, &dst, e);
	if (ret == 0 && dst.id == src.id) {
		*result = src.id;          /* renamed onto itself */
		catalog_commit(v->cat, e);
		return 0;
	}
	if (ret == 0) {
		ret = replace_image(s, &src, &dst, &d, e);
		*result = dst.id;
	} else if (ret == -ENOENT) {
		src.album_id = album_id;
		memcpy(src.name_idx, idx, sizeof(idx));
		vault_seal_name(s->keys, "name", src.pid, name, len, src.name_enc, &src.name_enc_len);
		src.mtime = vault_now();
		hex_encode(src.pid, 16, pid);
		if ((ret = catalog_image_update(v->cat, &src, e)) == 0)
			ret = audit_append(v->cat, v->actor, s->uid, "rename", pid, "ok", e, "%s", "");
		*result = src.id;
	}
	if (ret < 0) {
		catalog_rollback(v->cat);
		return ret;
	}
	if ((ret = catalog_commit(v->cat, e)) < 0)
		return ret;
	dropped_remove(v, &d);
	return 0;
}

int vault_image_remove(struct vault_session *s, int64_t image_id, struct iverr *e)
{
	struct catalog_image ci;
	struct catalog_version ver;
	struct catalog_thumb t;
	struct blob_id blobs[4];
	int64_t vids[2];
	size_t n = 0;
	char pid[33];
	int ret = image_owned(s, image_id, &ci, e);

	if (ret < 0)
		return ret;
	vids[0] = ci.current_version;
	vids[1] = ci.pristine_version != ci.current_version ? ci.pristine_version : 0;
	for (int i = 0; i < 2; i++) {
		if (!vids[i])
			continue;
		if (catalog_version_get(s->v->cat, vids[i], &ver, NULL) == 0)
			blobs[n++] = ver.blob;
		if (catalog_thumb_get(s->v->cat, vids[i], &t, NULL) == 0)
			blobs[n++] = t.blob;
	}
	hex_encode(ci.pid, 16, pid);
	if ((ret = catalog_begin(s->v->cat, e)) < 0)
		return ret;
	if ((ret = catalog_image_delete(s->v->cat, image_id, e)) < 0 ||
	    (ret = audit_append(s->v->cat, s->v->actor, s->uid, "remove", pid, "ok", e,
				"%zu blobs", n)) < 0) {
		catalog_rollback(s->v->cat);
		return ret;
	}
	if ((ret = catalog_commit(s->v->cat, e)) < 0)
		return ret;
	for (size_t i = 0; i < n; i++)
		s->v->bs->ops->remove(s->v->bs, &blobs[i], NULL);
	return 0;
}

/* ---- reading ---- */

/* Opens a version's blob with the key its epoch says, falling back to the
 * other one during a rotation (a header rewrapped just before a crash). */
int vault_open_version_blob(struct vault_session *s, const struct catalog_version *ver,
			     struct blob_reader **out, struct iverr *e)
{
	const struct user_keys *first = s->keys, *second = s->prev;
	struct iverr tmp = { 0 };
	int ret;

	if (s->prev && ver->key_epoch != s->key_epoch) {
		first = s->prev;
		second = s->keys;
	}
	ret = blob_reader_open(s->v->bs, &ver->blob, first->file_wrap, s->uid, ver->size, out, &tmp);
	if (ret == -IV_EDAMAGE && second) {
		struct iverr tmp2 = { 0 };
		if (blob_reader_open(s->v->bs, &ver->blob, second->file_wrap, s->uid, ver->size,
				     out, &tmp2) == 0)
			return 0;
	}
	if (ret < 0)
		iverr_set(e, tmp.code, "%s", tmp.msg);
	return ret;
}

static void report_damage(struct vault_session *s, const struct vault_image *im,
			  struct iverr *e)
{
	char pid[33];

	hex_encode(im->pid, 16, pid);
	vault_audit(s->v, s->uid, "read", pid, "damaged", e && e->code ? e->msg : "");
	if (e) {
		char inner[sizeof(e->msg)];
		snprintf(inner, sizeof(inner), "%s", e->msg);
		iverr_reset(e, IV_EDAMAGE, "image '%s' is damaged: %s; run imgvault fsck, and "
			    "restore the store from a backup", im->name, inner);
	}
}

/* Opens the thumbnail of version @vid into @f: -EAGAIN while it is queued. */
static int thumb_open(struct vault_session *s, int64_t vid, struct vault_file *f,
		      struct iverr *e)
{
	struct catalog_thumb t;
	int ret = catalog_thumb_get(s->v->cat, vid, &t, e);

	if (ret == -ENOENT)
		return iverr_set(e, EAGAIN, "its thumbnail is not made yet");
	if (ret < 0)
		return ret;
	if (vault_open_record(s->keys, "thumb", &t.blob, vid, t.attrs_enc, t.attrs_enc_len,
			      &f->attrs) < 0 &&
	    (!s->prev || vault_open_record(s->prev, "thumb", &t.blob, vid, t.attrs_enc,
					   t.attrs_enc_len, &f->attrs) < 0))
		return iverr_set(e, IV_EDAMAGE, "its thumbnail's attributes fail authentication");
	if (vault_content_size(t.size, &f->attrs, &f->size) < 0)
		return iverr_set(e, IV_EDAMAGE, "its thumbnail's record claims more bytes than "
				 "its blob holds");
	/* A thumbnail's blob is read like a version's: same key epochs. */
	f->ver.id = vid;
	f->ver.image_id = f->im.id;
	f->ver.blob = t.blob;
	f->ver.size = t.size;
	f->ver.key_epoch = t.key_epoch;
	return vault_open_version_blob(s, &f->ver, &f->r, e);
}

int vault_file_open(struct vault_session *s, int64_t image_id, enum vault_variant which,
		    struct vault_file **out, struct iverr *e)
{
	struct catalog_image ci;
	struct vault_file *f;
	int64_t vid;
	int ret;

	*out = NULL;
	if ((ret = image_owned(s, image_id, &ci, e)) < 0)
		return ret;
	f = calloc(1, sizeof(*f));
	if (!f)
		return iverr_set(e, ENOMEM, "out of memory");
	f->s = s;
	if ((ret = vault_image_describe(s, &ci, &f->im, e)) < 0)
		goto out_free;
	vid = which == VAULT_PRISTINE ? ci.pristine_version : ci.current_version;
	if (!vid) {
		*out = f;   /* an empty placeholder */
		return 0;
	}
	if (which == VAULT_THUMB) {
		ret = thumb_open(s, vid, f, e);
		if (ret == -IV_EDAMAGE)
			report_damage(s, &f->im, e);
		if (ret < 0)
			goto out_free;
		*out = f;
		return 0;
	}
	if ((ret = catalog_version_get(s->v->cat, vid, &f->ver, e)) < 0)
		goto out_free;
	if (f->ver.image_id != ci.id)
		ret = iverr_set(e, IV_EDAMAGE, "the catalog points it at another image's content");
	else if (vault_open_attrs(s->keys, &f->ver, ci.pid, &f->attrs) < 0 &&
	    (!s->prev || vault_open_attrs(s->prev, &f->ver, ci.pid, &f->attrs) < 0))
		ret = iverr_set(e, IV_EDAMAGE, "its recorded attributes fail authentication");
	else if (vault_content_size(f->ver.size, &f->attrs, &f->size) < 0)
		ret = iverr_set(e, IV_EDAMAGE, "its record claims more bytes than its blob holds");
	else
		ret = vault_open_version_blob(s, &f->ver, &f->r, e);
	if (ret == -IV_EDAMAGE)
		report_damage(s, &f->im, e);
	if (ret < 0)
		goto out_free;
	*out = f;
	return 0;
out_free:
	vault_file_close(f);
	return ret;
}

uint64_t vault_file_size(const struct vault_file *f)
{
	return f->r ? f->size : 0;
}

ssize_t vault_file_pread(struct vault_file *f, void *buf, size_t len, uint64_t off,
			 struct iverr *e)
{
	ssize_t n;

	if (!f->r || off >= f->size)
		return 0;
	if (len > f->size - off)
		len = (size_t)(f->size - off);   /* the padding is not content */
	n = blob_reader_pread(f->r, buf, len, off, e);
	if (n == -IV_EDAMAGE && e) {
		char inner[sizeof(e->msg)];
		snprintf(inner, sizeof(inner), "%s", e->msg);
		iverr_reset(e, IV_EDAMAGE, "image '%s' is damaged: %s; run imgvault fsck, and "
			    "restore the store from a backup", f->im.name, inner);
	}
	return n;
}

void vault_file_report_damage(struct vault_file *f, const char *why)
{
	char pid[33];

	hex_encode(f->im.pid, 16, pid);
	(void)why;   /* names the image: kept out of the store's audit trail */
	vault_audit(f->s->v, f->s->uid, "read", pid, "damaged", "");
}

int vault_file_verify(struct vault_file *f, struct iverr *e)
{
	crypto_hash_sha256_state st;
	uint8_t *buf, digest[32];
	uint64_t off = 0;
	ssize_t n;
	int ret = 0;

	if (!f->r)
		return 0;
	buf = malloc(1 << 20);
	if (!buf)
		return iverr_set(e, ENOMEM, "out of memory");
	crypto_hash_sha256_init(&st);
	while ((n = vault_file_pread(f, buf, 1 << 20, off, e)) > 0) {
		crypto_hash_sha256_update(&st, buf, (size_t)n);
		off += (uint64_t)n;
	}
	free(buf);
	if (n == -IV_EDAMAGE)
		vault_file_report_damage(f, NULL);
	if (n < 0)
		return (int)n;
	crypto_hash_sha256_final(&st, digest);
	if (sodium_memcmp(digest, f->attrs.sha256, 32) != 0) {
		iverr_set(e, IV_EDAMAGE, "its content does not match the recorded SHA-256");
		report_damage(f->s, &f->im, e);
		ret = -IV_EDAMAGE;
	}
	return ret;
}

const struct vault_image *vault_file_image(const struct vault_file *f)
{
	return &f->im;
}

const uint8_t *vault_file_sha256(const struct vault_file *f)
{
	return f->attrs.sha256;
}

const char *vault_file_mime(const struct vault_file *f)
{
	return f->attrs.mime;
}

void vault_file_close(struct vault_file *f)
{
	if (!f)
		return;
	blob_reader_close(f->r);
	free(f);
}
