/*
 * blob_throughput — encrypt and decrypt throughput of the blob format
 * against a plain write and read of the same bytes, in the same directory,
 * on one core.
 *
 *   blob_throughput DIR [MIB]
 *
 * Each figure is the best of five runs; reads are from the page cache for
 * both, so the ratio is the cost of the cryptography, not of the disk.
 */
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <sodium.h>

#include "blob.h"
#include "blobstore.h"
#include "keys.h"

#define RUNS 5
#define IO (1 << 20)

static double now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static double plain_write(const char *path, const uint8_t *data, size_t len)
{
	double t = now();
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600);

	if (fd < 0)
		return -1;
	for (size_t off = 0; off < len; off += IO)
		if (write(fd, data + off, len - off < IO ? len - off : IO) < 0)
			return -1;
	fsync(fd);
	close(fd);
	return now() - t;
}

static double plain_read(const char *path, uint8_t *buf, size_t len)
{
	double t = now();
	int fd = open(path, O_RDONLY);

	if (fd < 0)
		return -1;
	for (size_t off = 0; off < len; off += IO)
		if (pread(fd, buf + off, len - off < IO ? len - off : IO, (off_t)off) < 0)
			return -1;
	close(fd);
	return now() - t;
}

static double blob_write(struct blobstore *bs, const uint8_t key[32], const uint8_t *data,
			 size_t len, struct blob_id *id)
{
	struct blob_writer *w;
	double t = now();

	if (blob_writer_open(bs, key, 1000, &w, NULL) < 0)
		return -1;
	for (size_t off = 0; off < len; off += IO)
		if (blob_writer_write(w, data + off, len - off < IO ? len - off : IO, NULL) < 0)
			return -1;
	if (blob_writer_commit(w, id, NULL) < 0)
		return -1;
	return now() - t;
}

static double blob_read(struct blobstore *bs, const uint8_t key[32], const struct blob_id *id,
			uint8_t *buf, size_t len)
{
	struct blob_reader *r;
	double t = now();

	if (blob_reader_open(bs, id, key, 1000, len, &r, NULL) < 0)
		return -1;
	for (size_t off = 0; off < len; off += IO)
		if (blob_reader_pread(r, buf + off, len - off < IO ? len - off : IO, off, NULL) < 0)
			return -1;
	blob_reader_close(r);
	return now() - t;
}

static double best(double a, double b)
{
	return a < 0 ? b : (b < a ? b : a);
}

int main(int argc, char **argv)
{
	struct blobstore *bs;
	struct blob_id id;
	uint8_t key[32], *data, *back;
	char path[4096];
	size_t mib = argc > 2 ? (size_t)atoi(argv[2]) : 256, len;
	double pw = -1, pr = -1, bw = -1, br = -1;

	if (argc < 2 || keys_init() < 0) {
		fprintf(stderr, "usage: blob_throughput DIR [MIB]\n");
		return 2;
	}
	len = mib << 20;
	data = malloc(len);
	back = malloc(len);
	if (!data || !back || blobstore_local_open(argv[1], &bs, NULL) < 0) {
		fprintf(stderr, "blob_throughput: cannot set up in %s\n", argv[1]);
		return 1;
	}
	randombytes_buf(data, len);
	randombytes_buf(key, sizeof(key));
	snprintf(path, sizeof(path), "%s/plain.bin", argv[1]);
	for (int i = 0; i < RUNS; i++) {
		double t;
		pw = best(pw, plain_write(path, data, len));
		pr = best(pr, plain_read(path, back, len));
		if (i)
			bs->ops->remove(bs, &id, NULL);
		t = blob_write(bs, key, data, len, &id);
		if (t < 0) {
			fprintf(stderr, "blob_throughput: blob write failed\n");
			return 1;
		}
		bw = best(bw, t);
		br = best(br, blob_read(bs, key, &id, back, len));
		if (memcmp(back, data, len) != 0) {
			fprintf(stderr, "blob_throughput: read back differs\n");
			return 1;
		}
	}
	bs->ops->remove(bs, &id, NULL);
	unlink(path);
	printf("%-28s %10s %10s %8s\n", "blob throughput (" "1 core)", "plain", "imgvault", "ratio");
	printf("%-28s %7.0f MB/s %7.0f MB/s %7.2fx\n", "write (encrypt + fsync)",
	       len / pw / 1e6, len / bw / 1e6, pw / bw);
	printf("%-28s %7.0f MB/s %7.0f MB/s %7.2fx\n", "read (decrypt, page cache)",
	       len / pr / 1e6, len / br / 1e6, pr / br);
	printf("decrypt: %.2f GB/s (goal: 1 GB/s or more on one core)\n", len / br / 1e9);
	blobstore_free(bs);
	free(data);
	free(back);
	return 0;
}
