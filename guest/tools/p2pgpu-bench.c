// SPDX-License-Identifier: GPL-2.0
/*
 * p2pgpu-bench: throughput through the p2pgpu driver, as one JSON object.
 *
 *   p2pgpu-bench [--dev /dev/p2pgpu0] [--size-mib 64] [--reps 5] [--migrate-mib 32]
 *
 * Measures, best of --reps, each checked for the bytes it moved:
 *   copy_to_bo / copy_from_bo   COPY ioctl: pin, DMA-map, SGL descriptors, IRQ
 *   bar_write / bar_read        the CPU through a BO mapping (BAR2, write-combined)
 *   migrate_to_dev / _to_sys    HMM migration of anonymous memory (copy engine)
 *   fault_to_ram                CPU faults bringing device-private pages back
 *   guest_memcpy                memcpy in the guest, the in-guest baseline
 * bench/p2pgpu_driver.py runs it in a guest and sets the host-side baselines
 * (host memcpy, the qtest figure of the device alone) beside it.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#include <p2pgpu.h>

#define MiB (1ull << 20)

static double now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec + ts.tv_nsec / 1e9;
}

static void *pages(size_t n, int fill)
{
	void *p = mmap(NULL, n, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);

	if (p == MAP_FAILED) {
		perror("mmap");
		exit(1);
	}
	memset(p, fill, n);	/* faulted in, and no zero page */
	return p;
}

static void die(const char *what)
{
	fprintf(stderr, "p2pgpu-bench: %s: %s\n", what, strerror(errno));
	exit(1);
}

static int copy(int fd, uint32_t h, uint32_t dir, void *user, uint64_t size)
{
	struct p2pgpu_copy c = {
		.handle = h, .direction = dir, .user_addr = (uintptr_t)user, .size = size,
	};

	return ioctl(fd, P2PGPU_IOC_COPY, &c);
}

static int migrate(int fd, unsigned long req, void *p, uint64_t npages, uint64_t *moved)
{
	struct p2pgpu_migrate m = { .addr = (uintptr_t)p, .npages = npages };
	int ret = ioctl(fd, req, &m);

	*moved = m.migrated;
	return ret;
}

int main(int argc, char **argv)
{
	const char *dev = "/dev/p2pgpu0";
	uint64_t size = 64 * MiB, msize = 32 * MiB;
	double best[8] = { 0 }, t;
	int reps = 5, fd, r, i;
	struct p2pgpu_alloc a = { 0 };
	unsigned char *src, *dst, *map, *m;
	uint64_t moved;

	for (i = 1; i + 1 < argc; i += 2) {
		if (!strcmp(argv[i], "--dev"))
			dev = argv[i + 1];
		else if (!strcmp(argv[i], "--size-mib"))
			size = strtoull(argv[i + 1], NULL, 0) * MiB;
		else if (!strcmp(argv[i], "--reps"))
			reps = atoi(argv[i + 1]);
		else if (!strcmp(argv[i], "--migrate-mib"))
			msize = strtoull(argv[i + 1], NULL, 0) * MiB;
		else
			break;
	}
	if (i != argc || !size || reps < 1 || !msize) {
		fprintf(stderr, "usage: %s [--dev PATH] [--size-mib N] [--reps N] [--migrate-mib N]\n",
			argv[0]);
		return 2;
	}
	fd = open(dev, O_RDWR | O_CLOEXEC);
	if (fd < 0)
		die(dev);
	a.size = size;
	if (ioctl(fd, P2PGPU_IOC_ALLOC, &a))
		die("ALLOC");
	map = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, a.mmap_offset);
	if (map == MAP_FAILED)
		die("mmap BO");
	src = pages(size, 0x5a);
	dst = pages(size, 0);

	for (r = 0; r < reps; r++) {
		double d[6];

		src[r] = (unsigned char)r;
		t = now();
		if (copy(fd, a.handle, P2PGPU_COPY_TO_BO, src, size))
			die("COPY to BO");
		d[0] = now() - t;
		t = now();
		if (copy(fd, a.handle, P2PGPU_COPY_FROM_BO, dst, size))
			die("COPY from BO");
		d[1] = now() - t;
		if (memcmp(src, dst, size)) {
			fprintf(stderr, "p2pgpu-bench: COPY round trip differs\n");
			return 1;
		}
		t = now();
		memcpy(map, src, size);
		d[2] = now() - t;
		t = now();
		memcpy(dst, map, size);
		d[3] = now() - t;
		if (memcmp(src, dst, size)) {
			fprintf(stderr, "p2pgpu-bench: BAR round trip differs\n");
			return 1;
		}
		t = now();
		memcpy(dst, src, size);
		d[4] = now() - t;
		for (i = 0; i < 5; i++)
			if (!best[i] || d[i] < best[i])
				best[i] = d[i];
	}

	for (r = 0; r < reps; r++) {
		uint64_t npages = msize / 4096;
		double d[3];

		m = pages(msize, 0x30 + r);
		t = now();
		if (migrate(fd, P2PGPU_IOC_MIGRATE_TO_DEV, m, npages, &moved) || moved != npages)
			die("MIGRATE_TO_DEV");
		d[0] = now() - t;
		t = now();
		if (migrate(fd, P2PGPU_IOC_MIGRATE_TO_SYS, m, npages, &moved) || moved != npages)
			die("MIGRATE_TO_SYS");
		d[1] = now() - t;
		if (migrate(fd, P2PGPU_IOC_MIGRATE_TO_DEV, m, npages, &moved) || moved != npages)
			die("MIGRATE_TO_DEV");
		t = now();
		for (uint64_t off = 0; off < msize; off += 4096)
			if (m[off] != (unsigned char)(0x30 + r)) {
				fprintf(stderr, "p2pgpu-bench: page %lu came back wrong\n",
					(unsigned long)(off / 4096));
				return 1;
			}
		d[2] = now() - t;
		for (i = 0; i < 3; i++)
			if (!best[5 + i] || d[i] < best[5 + i])
				best[5 + i] = d[i];
		if (memchr(m, 0, msize) || m[msize - 1] != (unsigned char)(0x30 + r)) {
			fprintf(stderr, "p2pgpu-bench: migrated data differs\n");
			return 1;
		}
		munmap(m, msize);
	}

	printf("{\"tool\":\"p2pgpu-bench\",\"bytes\":%llu,\"migrate_bytes\":%llu,\"reps\":%d,"
	       "\"copy_to_bo_gbps\":%.3f,\"copy_from_bo_gbps\":%.3f,"
	       "\"bar_write_gbps\":%.3f,\"bar_read_gbps\":%.3f,\"guest_memcpy_gbps\":%.3f,"
	       "\"migrate_to_dev_gbps\":%.3f,\"migrate_to_sys_gbps\":%.3f,"
	       "\"fault_to_ram_gbps\":%.3f}\n",
	       (unsigned long long)size, (unsigned long long)msize, reps,
	       size / best[0] / 1e9, size / best[1] / 1e9, size / best[2] / 1e9,
	       size / best[3] / 1e9, size / best[4] / 1e9, msize / best[5] / 1e9,
	       msize / best[6] / 1e9, msize / best[7] / 1e9);
	return 0;
}
