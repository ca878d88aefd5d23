// SPDX-License-Identifier: GPL-2.0
/*
 * p2pgpu-test: one case per behaviour of the p2pgpu driver, through its ABI
 * (guest/drivers/p2pgpu/uapi/p2pgpu.h), the kernel's sysfs p2pmem and a real
 * NVMe disk.  Prints TAP (kselftest style), then one JSON summary line.
 *
 *   p2pgpu-test [--dev /dev/p2pgpu0] [--peer /dev/p2pgpu1] [--nvme /dev/nvme0n1]
 *               [--expect-bar BYTES] [--expect-mode direct|windowed]
 *               [--p2p allowed|refused] [--only CASE]...
 *
 * --p2p says what P2PDMA must do on this platform: "allowed" (the NVMe read
 * lands in GPU memory, the peer GPU imports the dma-buf), "refused" (both
 * fail cleanly, with nothing written).  copy_error_injected runs only when named
 * with --only: the host arms the device's fail-next-copy first.
 * Every check that fails says what it saw; nothing is skipped.
 */
#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <p2pgpu.h>

#include "lib/selftest.h"

#define MiB (1ull << 20)

static const char *dev_path = "/dev/p2pgpu0";
static const char *peer_path;
static const char *nvme_path;
static const char *p2p_expect = "allowed";
static const char *expect_mode;
static uint64_t expect_bar;

static int gpu = -1;
static struct p2pgpu_info info;
static char pci_dir[256];	/* /sys/bus/pci/devices/<bdf> */
static char dbg_dir[256];	/* /sys/kernel/debug/p2pgpu/<bdf> */
static long page_size;

/* ---- helpers ----------------------------------------------------------- */

static void *xmalloc_pages(size_t n)
{
	void *p = mmap(NULL, n, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);

	return p == MAP_FAILED ? NULL : p;
}

static int bo_alloc(int fd, uint64_t size, struct p2pgpu_alloc *a)
{
	memset(a, 0, sizeof(*a));
	a->size = size;
	return ioctl(fd, P2PGPU_IOC_ALLOC, a);
}

static int bo_free(int fd, uint32_t handle)
{
	struct p2pgpu_handle h = { .handle = handle };

	return ioctl(fd, P2PGPU_IOC_FREE, &h);
}

static int bo_copy(int fd, uint32_t handle, uint32_t dir, uint64_t off, void *user,
		   uint64_t size, uint32_t *dev_status)
{
	struct p2pgpu_copy c = {
		.handle = handle, .direction = dir, .bo_offset = off,
		.user_addr = (uintptr_t)user, .size = size,
	};
	int ret = ioctl(fd, P2PGPU_IOC_COPY, &c);

	if (dev_status)
		*dev_status = c.dev_status;
	return ret;
}

static int bo_evict(int fd, uint32_t handle, uint32_t op, struct p2pgpu_evict *e)
{
	memset(e, 0, sizeof(*e));
	e->handle = handle;
	e->op = op;
	return ioctl(fd, P2PGPU_IOC_EVICT, e);
}

/* One counter of the driver's debugfs "counters" file, or -1. */
static long long counter(const char *name)
{
	char path[512], key[64];
	long long v, found = -1;
	FILE *f;

	snprintf(path, sizeof(path), "%s/counters", dbg_dir);
	f = fopen(path, "r");
	if (!f)
		return -1;
	while (fscanf(f, "%63s %lld", key, &v) == 2)
		if (!strcmp(key, name))
			found = v;
	fclose(f);
	return found;
}

static int read_sysfs_u64(const char *path, uint64_t *v)
{
	char buf[64];
	FILE *f = fopen(path, "r");
	int ok;

	if (!f)
		return -1;
	ok = fgets(buf, sizeof(buf), f) != NULL;
	fclose(f);
	if (!ok)
		return -1;
	*v = strtoull(buf, NULL, 0);
	return 0;
}

static uint64_t parse_size(const char *s)
{
	char *end;
	uint64_t v = strtoull(s, &end, 0);

	switch (*end) {
	case 'K': return v << 10;
	case 'M': return v << 20;
	case 'G': return v << 30;
	default: return v;
	}
}

/* ---- cases ------------------------------------------------------------- */

static int case_resize(void)
{
	const char *mode = info.aperture_mode == P2PGPU_APERTURE_DIRECT ? "direct" : "windowed";
	char path[512], line[128];
	bool seen = false;
	FILE *f;

	printf("# VRAM %" PRIu64 " MiB, BAR2 %" PRIu64 " MiB (was %" PRIu64 " MiB), %s, "
	       "%u slots (%u dynamic), resize status %d\n",
	       (uint64_t)info.vram_size >> 20, (uint64_t)info.bar_size >> 20,
	       (uint64_t)info.bar_size_initial >> 20, mode, info.slots,
	       info.dynamic_slots, info.resize_status);
	CHECK(expect_bar && expect_mode, "give --expect-bar and --expect-mode for this topology");
	CHECK(info.bar_size == expect_bar, "BAR2 is %" PRIu64 " bytes, expected %" PRIu64,
	      (uint64_t)info.bar_size, expect_bar);
	CHECK(!strcmp(mode, expect_mode), "aperture mode %s, expected %s", mode, expect_mode);
	CHECK((info.bar_size == info.vram_size) == (info.aperture_mode == P2PGPU_APERTURE_DIRECT),
	      "mode %s with BAR2 %" PRIu64 " and VRAM %" PRIu64, mode,
	      (uint64_t)info.bar_size, (uint64_t)info.vram_size);
	/* The PCI core's view of BAR2 agrees with the driver's. */
	snprintf(path, sizeof(path), "%s/resource", pci_dir);
	f = fopen(path, "r");
	CHECK(f, "%s: %s", path, strerror(errno));
	for (int i = 0; fgets(line, sizeof(line), f); i++) {
		unsigned long long s, e;

		if (i == 2 && sscanf(line, "%llx %llx", &s, &e) == 2) {
			seen = true;
			fclose(f);
			CHECK(e - s + 1 == info.bar_size, "sysfs BAR2 is %llu bytes", e - s + 1);
			break;
		}
	}
	if (!seen)
		fclose(f);
	CHECK(seen, "no BAR2 line in %s", path);
	/* debugfs says the same. */
	snprintf(path, sizeof(path), "%s/info", dbg_dir);
	f = fopen(path, "r");
	CHECK(f, "%s: %s", path, strerror(errno));
	seen = false;
	while (fgets(line, sizeof(line), f))
		if (!strncmp(line, "aperture_mode ", 14) && !strncmp(line + 14, mode, strlen(mode)))
			seen = true;
	fclose(f);
	CHECK(seen, "debugfs info does not say aperture_mode %s", mode);
	return 0;
}

static int case_mmap_rw(void)
{
	const size_t sz = 4 * MiB;
	struct p2pgpu_alloc a;
	unsigned char *map, *buf, *chk;
	int ret = -1;

	CHECK(!bo_alloc(gpu, sz, &a), "ALLOC: %s", strerror(errno));
	map = mmap(NULL, sz, PROT_READ | PROT_WRITE, MAP_SHARED, gpu, a.mmap_offset);
	buf = xmalloc_pages(sz);
	chk = xmalloc_pages(sz);
	FAIL_IF(out, map == MAP_FAILED || !buf || !chk,
		"mmap: %s", strerror(errno));
	/* CPU writes through BAR2, the engine reads VRAM. */
	fill(buf, sz, 1);
	memcpy(map, buf, sz);
	FAIL_IF(out, bo_copy(gpu, a.handle, P2PGPU_COPY_FROM_BO, 0, chk, sz, NULL),
		"COPY from BO: %s", strerror(errno));
	FAIL_IF(out, memcmp(buf, chk, sz),
		"VRAM differs from what was written through the mapping");
	/* The engine writes VRAM, the CPU reads it through BAR2. */
	fill(buf, sz, 2);
	FAIL_IF(out, bo_copy(gpu, a.handle, P2PGPU_COPY_TO_BO, 0, buf, sz, NULL),
		"COPY to BO: %s", strerror(errno));
	FAIL_IF(out, memcmp(buf, map, sz),
		"the mapping does not show what the engine wrote");
	/* A private mapping of BAR pages cannot be copied on write: refused. */
	FAIL_IF(out, mmap(NULL, sz, PROT_READ, MAP_PRIVATE, gpu, a.mmap_offset) != MAP_FAILED ||
	             errno != EINVAL,
		"MAP_PRIVATE of a BO was not refused with EINVAL");
	/* Out-of-range offsets are refused, not clamped. */
	FAIL_IF(out, bo_copy(gpu, a.handle, P2PGPU_COPY_TO_BO, sz - 4096, buf, 8192, NULL) != -1 ||
	             errno != EINVAL,
		"COPY past the BO's end was not refused with EINVAL");
	ret = 0;
out:
	if (map != MAP_FAILED)
		munmap(map, sz);
	if (buf)
		munmap(buf, sz);
	if (chk)
		munmap(chk, sz);
	bo_free(gpu, a.handle);
	return ret;
}

static int case_copy_sg(void)
{
	/* More than one pinned chunk, odd offsets in both the BO and the page. */
	const size_t sz = 6 * MiB + 4096 * 3 + 123, bo_off = 777;
	struct p2pgpu_alloc a;
	unsigned char *src, *dst;
	uint64_t h_in, h_out;
	long long before = counter("copies");
	int ret = -1;

	CHECK(!bo_alloc(gpu, 8 * MiB, &a), "ALLOC: %s", strerror(errno));
	src = xmalloc_pages(sz + 2 * 4096);
	dst = xmalloc_pages(sz + 2 * 4096);
	if (!src || !dst)
		goto out;
	fill(src + 45, sz, 3);
	h_in = fnv1a(src + 45, sz);
	FAIL_IF(out, bo_copy(gpu, a.handle, P2PGPU_COPY_TO_BO, bo_off, src + 45, sz, NULL) ||
	             bo_copy(gpu, a.handle, P2PGPU_COPY_FROM_BO, bo_off, dst + 4000, sz, NULL),
		"COPY: %s", strerror(errno));
	h_out = fnv1a(dst + 4000, sz);
	printf("# %zu bytes: fnv1a in %016" PRIx64 " out %016" PRIx64 ", %lld descriptors\n",
	       sz, h_in, h_out, counter("copies") - before);
	FAIL_IF(out, h_in != h_out,
		"checksum in %016" PRIx64 " != out %016" PRIx64, h_in, h_out);
	/* An unmapped user address is an EFAULT, not a device fault. */
	FAIL_IF(out, bo_copy(gpu, a.handle, P2PGPU_COPY_TO_BO, 0, (void *)8192, 4096, NULL) != -1 ||
	             errno != EFAULT,
		"COPY from an unmapped address: not EFAULT");
	ret = 0;
out:
	if (src)
		munmap(src, sz + 2 * 4096);
	if (dst)
		munmap(dst, sz + 2 * 4096);
	bo_free(gpu, a.handle);
	return ret;
}

static int check_granule_words(uint32_t *map, uint64_t size, uint64_t gran, uint32_t seed,
			       const char *how)
{
	for (uint64_t off = 0; off < size; off += gran)
		CHECK(map[off / 4] == (uint32_t)(seed + off / gran),
		      "%s: granule %" PRIu64 " holds %#x, not %#x", how, off / gran,
		      map[off / 4], (uint32_t)(seed + off / gran));
	return 0;
}

static int case_aperture_evict(void)
{
	bool windowed = info.aperture_mode == P2PGPU_APERTURE_WINDOWED;
	uint64_t gran = info.granule;
	uint64_t size = windowed ? (uint64_t)(info.dynamic_slots + 8) * gran : 64 * MiB;
	long long ev0 = counter("aperture_evictions"), full0 = counter("aperture_full");
	long long ev, full;
	struct p2pgpu_alloc a;
	struct p2pgpu_evict e;
	uint32_t *map, *buf = NULL;
	int ret = -1;

	CHECK(!bo_alloc(gpu, size, &a), "ALLOC %" PRIu64 ": %s", size, strerror(errno));
	map = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED, gpu, a.mmap_offset);
	FAIL_IF(out_free, map == MAP_FAILED,
		"mmap: %s", strerror(errno));
	/* One word per granule: more granules than the BAR has windows. */
	for (uint64_t off = 0; off < size; off += gran)
		map[off / 4] = (uint32_t)(7 + off / gran);
	ev = counter("aperture_evictions") - ev0;
	full = counter("aperture_full") - full0;
	printf("# %" PRIu64 " granules through %u dynamic slots: %lld FULL answers, %lld evictions\n",
	       size / gran, info.dynamic_slots, full, ev);
	FAIL_IF(out, windowed && (ev < 8 || full < 1),
		"windowed: %lld evictions and %lld FULL, expected >= 8 and >= 1", ev, full);
	FAIL_IF(out, !windowed && (ev || full),
		"direct mode evicted (%lld) or saw FULL (%lld)", ev, full);
	/* The evicted granules fault back in with their data. */
	if (check_granule_words(map, size, gran, 7, "read back through the mapping"))
		goto out;
	/* And the engine sees the same VRAM. */
	buf = xmalloc_pages(size);
	FAIL_IF(out, !buf || bo_copy(gpu, a.handle, P2PGPU_COPY_FROM_BO, 0, buf, size, NULL),
		"COPY: %s", strerror(errno));
	if (check_granule_words(buf, size, gran, 7, "read back through COPY"))
		goto out;
	/* Forced eviction out of the aperture, then a move inside VRAM. */
	FAIL_IF(out, bo_evict(gpu, a.handle, P2PGPU_EVICT_APERTURE, &e),
		"EVICT APERTURE: %s", strerror(errno));
	FAIL_IF(out, windowed && !e.windows,
		"EVICT APERTURE dropped no window");
	if (check_granule_words(map, size, gran, 7, "after EVICT APERTURE"))
		goto out;
	{
		uint64_t before = 0;
		struct p2pgpu_alloc pad;

		/* Something after it, so the move has to land elsewhere. */
		bo_alloc(gpu, gran, &pad);
		FAIL_IF(out, bo_evict(gpu, a.handle, P2PGPU_EVICT_MOVE, &e),
			"EVICT MOVE: %s", strerror(errno));
		before = e.vram_offset;
		FAIL_IF(out, bo_evict(gpu, a.handle, P2PGPU_EVICT_MOVE, &e) ||
		             e.vram_offset == before,
			"second EVICT MOVE stayed at %#" PRIx64 ": %s", before, strerror(errno));
		bo_free(gpu, pad.handle);
		printf("# moved to VRAM %#" PRIx64 ", then %#" PRIx64 "; %lld revocations so far\n",
		       before, (uint64_t)e.vram_offset, counter("revocations"));
	}
	if (check_granule_words(map, size, gran, 7, "after EVICT MOVE"))
		goto out;
	ret = 0;
out:
	munmap(map, size);
	if (buf)
		munmap(buf, size);
out_free:
	bo_free(gpu, a.handle);
	return ret;
}

/* Map @len bytes of this GPU's published p2pmem (sysfs p2pmem/allocate). */
static void *p2pmem_map(size_t len, int *fdp)
{
	char path[512];
	uint64_t published = 0;
	void *p;
	int fd;

	snprintf(path, sizeof(path), "%s/p2pmem/published", pci_dir);
	if (read_sysfs_u64(path, &published) || !published) {
		snprintf(fail_msg, sizeof(fail_msg), "%s: not published", path);
		return NULL;
	}
	snprintf(path, sizeof(path), "%s/p2pmem/allocate", pci_dir);
	fd = open(path, O_RDWR);
	if (fd < 0) {
		snprintf(fail_msg, sizeof(fail_msg), "%s: %s", path, strerror(errno));
		return NULL;
	}
	p = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	if (p == MAP_FAILED) {
		snprintf(fail_msg, sizeof(fail_msg), "mmap %s: %s", path, strerror(errno));
		close(fd);
		return NULL;
	}
	*fdp = fd;
	return p;
}

/* Read @len bytes of user memory (maybe p2pmem) through COPY into @out. */
static int read_via_copy(void *user, size_t len, void *out, uint32_t *dev_status)
{
	struct p2pgpu_alloc a;
	int ret;

	if (bo_alloc(gpu, len, &a))
		return -1;
	ret = bo_copy(gpu, a.handle, P2PGPU_COPY_TO_BO, 0, user, len, dev_status);
	if (!ret)
		ret = bo_copy(gpu, a.handle, P2PGPU_COPY_FROM_BO, 0, out, len, dev_status);
	bo_free(gpu, a.handle);
	return ret;
}

static int case_p2pmem_sysfs(void)
{
	const size_t len = 2 * MiB;
	char path[512];
	uint64_t size = 0, avail0 = 0, avail1 = 0;
	unsigned char *p, *chk;
	int fd, ret = -1;

	/*
	 * Direct mode registers the whole BAR and the driver takes all but the
	 * published part out of the pool; windowed mode registers that part.
	 */
	snprintf(path, sizeof(path), "%s/p2pmem/size", pci_dir);
	CHECK(!read_sysfs_u64(path, &size), "%s: %s", path, strerror(errno));
	CHECK(size == (info.aperture_mode == P2PGPU_APERTURE_DIRECT ? info.bar_size : info.p2pmem_size),
	      "%s is %" PRIu64 " with BAR2 %" PRIu64 " and %" PRIu64 " published", path, size,
	      (uint64_t)info.bar_size, (uint64_t)info.p2pmem_size);
	snprintf(path, sizeof(path), "%s/p2pmem/available", pci_dir);
	CHECK(!read_sysfs_u64(path, &avail0) && avail0 == info.p2pmem_size,
	      "%s is %" PRIu64 ", the driver published %" PRIu64, path, avail0,
	      (uint64_t)info.p2pmem_size);
	p = p2pmem_map(len, &fd);
	if (!p)
		return -1;
	read_sysfs_u64(path, &avail1);
	chk = xmalloc_pages(len);
	fill(p, len, 11);
	FAIL_IF(out, read_via_copy(p, len, chk, NULL),
		"COPY through p2pmem: %s", strerror(errno));
	FAIL_IF(out, fnv1a(p, len) != fnv1a(chk, len),
		"p2pmem read back through COPY differs");
	printf("# p2pmem %" PRIu64 " bytes, available %" PRIu64 " -> %" PRIu64 " while mapped\n",
	       size, avail0, avail1);
	FAIL_IF(out, avail0 - avail1 != len,
		"mapping %zu bytes took %" PRIu64 " from the pool", len, avail0 - avail1);
	ret = 0;
out:
	munmap(p, len);
	close(fd);
	munmap(chk, len);
	return ret;
}

static int case_nvme_p2pdma(void)
{
	const size_t len = 1 * MiB;
	bool allowed = !strcmp(p2p_expect, "allowed");
	unsigned char *sysbuf, *p, *chk;
	ssize_t n;
	int nv, fd, ret = -1;

	CHECK(nvme_path, "give --nvme: the O_DIRECT read into p2pmem needs an NVMe namespace");
	nv = open(nvme_path, O_RDWR | O_DIRECT);
	CHECK(nv >= 0, "%s: %s", nvme_path, strerror(errno));
	sysbuf = xmalloc_pages(len);
	chk = xmalloc_pages(len);
	p = p2pmem_map(len, &fd);
	if (!p || !sysbuf || !chk)
		goto out_close;
	/* Known bytes on the disk, written from system memory. */
	fill(sysbuf, len, 21);
	n = pwrite(nv, sysbuf, len, 0);
	FAIL_IF(out, n != (ssize_t)len,
		"O_DIRECT write: %zd (%s)", n, strerror(errno));
	memset(p, 0xee, len);
	n = pread(nv, p, len, 0);
	printf("# O_DIRECT read of %zu bytes into p2pmem: %zd (%s), P2P %s here\n", len, n,
	       n < 0 ? strerror(errno) : "ok", p2p_expect);
	if (allowed) {
		FAIL_IF(out, n != (ssize_t)len,
			"read into p2pmem: %zd (%s)", n, strerror(errno));
		FAIL_IF(out, read_via_copy(p, len, chk, NULL) || memcmp(chk, sysbuf, len),
			"GPU memory does not hold the disk's bytes");
	} else {
		/*
		 * The block layer says no before any DMA: 6.12's nvme maps
		 * the request and fails it with EREMOTEIO, 7.x's blk-mq DMA
		 * iterator with EINVAL.  Either way nothing reached p2pmem.
		 */
		FAIL_IF(out, n != -1 || (errno != EREMOTEIO && errno != EINVAL),
			"refused P2P read gave %zd (%s), expected EREMOTEIO or EINVAL", n, strerror(errno));
		memset(sysbuf, 0xee, len);
		FAIL_IF(out, read_via_copy(p, len, chk, NULL) || memcmp(chk, sysbuf, len),
			"a refused read changed GPU memory");
		fill(sysbuf, len, 21);
		/* And the disk itself is fine: the same read into system memory works. */
		FAIL_IF(out, pread(nv, chk, len, 0) != (ssize_t)len || memcmp(chk, sysbuf, len),
			"read into system memory failed after the refusal");
	}
	ret = 0;
out:
	if (p) {
		munmap(p, len);
		close(fd);
	}
out_close:
	close(nv);
	return ret;
}

static int import(int importer, int fd, uint32_t flags, uint32_t handle, uint64_t size,
		  struct p2pgpu_import *im)
{
	memset(im, 0, sizeof(*im));
	im->fd = fd;
	im->flags = flags;
	im->handle = handle;
	im->size = size;
	return ioctl(importer, P2PGPU_IOC_IMPORT, im);
}

static int case_dmabuf(void)
{
	const size_t sz = 3 * MiB + 8192;	/* crosses granules */
	bool allowed = !strcmp(p2p_expect, "allowed");
	int importer, peer, ret = -1, dfd = -1, dfd2 = -1;
	struct p2pgpu_alloc a, b;
	struct p2pgpu_export ex = { 0 };
	struct p2pgpu_import im;
	struct p2pgpu_evict e;
	unsigned char *src, *chk;
	long long mn0 = counter("move_notifies");

	/*
	 * The importer is a second GPU: a GPU importing its own BO gets bus
	 * addresses from 6.19's P2PDMA helper (same device, no host bridge),
	 * which QEMU's vIOMMU translates like any other DMA and so refuses.
	 */
	CHECK(peer_path, "give --peer: the importer is a second p2pgpu");
	peer = open(peer_path, O_RDWR);
	CHECK(peer >= 0, "%s: %s", peer_path, strerror(errno));
	importer = peer;
	src = xmalloc_pages(sz);
	chk = xmalloc_pages(sz);
	CHECK(!bo_alloc(gpu, sz, &a), "ALLOC: %s", strerror(errno));
	fill(src, sz, 31);
	if (bo_copy(gpu, a.handle, P2PGPU_COPY_TO_BO, 0, src, sz, NULL))
		goto out;
	ex.handle = a.handle;
	ex.flags = O_CLOEXEC;
	FAIL_IF(out, ioctl(gpu, P2PGPU_IOC_EXPORT, &ex),
		"EXPORT: %s", strerror(errno));
	dfd = ex.fd;
	if (bo_alloc(peer, sz, &b))
		goto out;
	if (!allowed) {
		/* Refused at attach, and the exporter is none the worse. */
		ret = import(peer, dfd, 0, b.handle, sz, &im);
		printf("# peer import: %s\n", ret ? strerror(errno) : "ok");
		if (ret != -1 || errno != EREMOTEIO) {
			snprintf(fail_msg, sizeof(fail_msg), "peer import where P2P is refused: %s",
				 ret ? strerror(errno) : "succeeded");
			ret = -1;
			goto out;
		}
		ret = -1;
		FAIL_IF(out, bo_evict(gpu, a.handle, P2PGPU_EVICT_MOVE, &e) ||
		             bo_copy(gpu, a.handle, P2PGPU_COPY_FROM_BO, 0, chk, sz, NULL) ||
		             memcmp(src, chk, sz),
			"the exported BO after a refused attach: %s", strerror(errno));
		ret = 0;
		goto out;
	}
	FAIL_IF(out, import(importer, dfd, 0, b.handle, sz, &im),
		"IMPORT: %s (device status %u)", strerror(errno), im.dev_status);
	FAIL_IF(out, bo_copy(importer, b.handle, P2PGPU_COPY_FROM_BO, 0, chk, sz, NULL) ||
	             memcmp(src, chk, sz),
		"importer read wrong bytes through the dma-buf");
	printf("# imported through %u DMA segments by %s\n", im.nents, peer_path);
	/* A move tells the dynamic importer, which maps again on next use. */
	FAIL_IF(out, bo_evict(gpu, a.handle, P2PGPU_EVICT_MOVE, &e),
		"EVICT MOVE of an exported BO: %s", strerror(errno));
	memset(chk, 0, sz);
	FAIL_IF(out, bo_copy(importer, b.handle, P2PGPU_COPY_TO_BO, 0, chk, sz, NULL) ||
	             import(importer, dfd, 0, b.handle, sz, &im),
		"IMPORT after the move: %s", strerror(errno));
	FAIL_IF(out, im.move_notifies != 1 || im.maps != 2,
		"importer saw %u move_notify and %u maps, expected 1 and 2", im.move_notifies, im.maps);
	FAIL_IF(out, bo_copy(importer, b.handle, P2PGPU_COPY_FROM_BO, 0, chk, sz, NULL) ||
	             memcmp(src, chk, sz),
		"importer read wrong bytes after the move");
	/* A pinned attachment holds the BO in place. */
	ex.fd = -1;
	FAIL_IF(out, ioctl(gpu, P2PGPU_IOC_EXPORT, &ex) ||
	             import(importer, ex.fd, P2PGPU_IMPORT_PINNED, b.handle, sz, &im),
		"pinned import: %s", strerror(errno));
	dfd2 = ex.fd;
	FAIL_IF(out, bo_evict(gpu, a.handle, P2PGPU_EVICT_MOVE, &e) != -1 || errno != EBUSY,
		"EVICT MOVE under a pinned attachment: not EBUSY");
	printf("# move_notify calls: %lld\n", counter("move_notifies") - mn0);
	ret = 0;
out:
	if (dfd >= 0)
		close(dfd);
	if (dfd2 >= 0)
		close(dfd2);
	if (peer >= 0)
		close(peer);	/* detaches its imports, frees its BO */
	munmap(src, sz);
	munmap(chk, sz);
	return ret;
}

static int case_migrate(void)
{
	/* 64 pages with data, then 64 never touched (holes) in the same VMA. */
	const size_t npages = 64, len = npages * 4096;
	long long d0 = counter("migrate_to_dev"), s0 = counter("migrate_to_sys");
	struct p2pgpu_migrate m = { 0 };
	unsigned char *p, *ref = xmalloc_pages(len);

	p = mmap(NULL, 2 * len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	CHECK(p != MAP_FAILED && ref, "mmap: %s", strerror(errno));
	fill(p, len, 41);
	memcpy(ref, p, len);
	m.addr = (uintptr_t)p;
	m.npages = npages;
	CHECK(!ioctl(gpu, P2PGPU_IOC_MIGRATE_TO_DEV, &m), "MIGRATE_TO_DEV: %s (status %u)",
	      strerror(errno), m.dev_status);
	CHECK(m.migrated == npages, "%" PRIu64 " of %zu pages moved to the device",
	      (uint64_t)m.migrated, npages);
	CHECK(counter("migrate_to_dev") - d0 == (long long)npages, "driver counted %lld",
	      counter("migrate_to_dev") - d0);
	/* Back, over a range that also covers the holes: only ours move. */
	memset(&m, 0, sizeof(m));
	m.addr = (uintptr_t)p;
	m.npages = 2 * npages;
	CHECK(!ioctl(gpu, P2PGPU_IOC_MIGRATE_TO_SYS, &m), "MIGRATE_TO_SYS: %s", strerror(errno));
	CHECK(m.migrated == npages, "%" PRIu64 " of %zu pages came back", (uint64_t)m.migrated, npages);
	CHECK(counter("migrate_to_sys") - s0 == (long long)npages, "driver counted %lld back",
	      counter("migrate_to_sys") - s0);
	CHECK(!memcmp(p, ref, len), "data changed on the round trip");
	CHECK(!memchr(p + len, 0xff, len) && !p[2 * len - 1], "the holes are not zero");
	munmap(p, 2 * len);
	munmap(ref, len);
	return 0;
}

static int case_cpu_fault(void)
{
	const size_t npages = 16, len = npages * 4096;
	long long r0 = counter("migrate_to_ram");
	struct p2pgpu_migrate m = { 0 };
	unsigned char *p = xmalloc_pages(len), *ref = xmalloc_pages(len);
	volatile unsigned char sink;

	CHECK(p && ref, "mmap: %s", strerror(errno));
	fill(p, len, 51);
	memcpy(ref, p, len);
	m.addr = (uintptr_t)p;
	m.npages = npages;
	CHECK(!ioctl(gpu, P2PGPU_IOC_MIGRATE_TO_DEV, &m) && m.migrated == npages,
	      "MIGRATE_TO_DEV: %s, %" PRIu64 " pages", strerror(errno), (uint64_t)m.migrated);
	/* One CPU touch brings back one page. */
	sink = p[4096 * 5 + 17];
	(void)sink;
	CHECK(counter("migrate_to_ram") - r0 == 1, "one CPU read faulted back %lld pages",
	      counter("migrate_to_ram") - r0);
	CHECK(!memcmp(p, ref, len), "data differs after the CPU faults");
	CHECK(counter("migrate_to_ram") - r0 == (long long)npages,
	      "reading all pages faulted back %lld of %zu", counter("migrate_to_ram") - r0, npages);
	munmap(p, len);
	munmap(ref, len);
	return 0;
}

static int case_copy_error_injected(void)
{
	const size_t sz = 64 * 1024;
	long long e0 = counter("copy_errors");
	unsigned char *buf = xmalloc_pages(sz);
	struct p2pgpu_alloc a;
	uint32_t st = 0;
	int r;

	CHECK(buf && !bo_alloc(gpu, sz, &a), "ALLOC: %s", strerror(errno));
	fill(buf, sz, 61);
	r = bo_copy(gpu, a.handle, P2PGPU_COPY_TO_BO, 0, buf, sz, &st);
	printf("# armed copy: %d (%s), device status %u\n", r, r ? strerror(errno) : "ok", st);
	CHECK(r == -1 && errno == EIO && st == 6,
	      "expected EIO with device status 6 (INJECTED), got %d/%s/%u", r, strerror(errno), st);
	CHECK(counter("copy_errors") - e0 == 1, "driver counted %lld copy errors",
	      counter("copy_errors") - e0);
	/* The flag cleared itself: the engine works again. */
	CHECK(!bo_copy(gpu, a.handle, P2PGPU_COPY_TO_BO, 0, buf, sz, &st) && !st,
	      "copy after the injected error: %s, status %u", strerror(errno), st);
	bo_free(gpu, a.handle);
	munmap(buf, sz);
	return 0;
}

/*
 * Function Level Reset through the PCI core (sysfs reset): the device drops
 * its windows, direct mode and engine ring; the driver's reset handlers put
 * them back.  VRAM survives, so a BO's bytes must too, through the engine
 * and through a mapping made before the reset.
 */
static int case_flr(void)
{
	const size_t sz = 4 * MiB;
	char path[512];
	struct p2pgpu_alloc a;
	unsigned char *map, *buf, *chk;
	int fd, ret = -1;

	CHECK(!bo_alloc(gpu, sz, &a), "ALLOC: %s", strerror(errno));
	map = mmap(NULL, sz, PROT_READ | PROT_WRITE, MAP_SHARED, gpu, a.mmap_offset);
	buf = xmalloc_pages(sz);
	chk = xmalloc_pages(sz);
	if (map == MAP_FAILED || !buf || !chk)
		goto out;
	fill(buf, sz, 71);
	memcpy(map, buf, sz);
	snprintf(path, sizeof(path), "%s/reset", pci_dir);
	fd = open(path, O_WRONLY);
	if (fd < 0 || write(fd, "1", 1) != 1) {
		snprintf(fail_msg, sizeof(fail_msg), "%s: %s", path, strerror(errno));
		if (fd >= 0)
			close(fd);
		goto out;
	}
	close(fd);
	FAIL_IF(out, bo_copy(gpu, a.handle, P2PGPU_COPY_FROM_BO, 0, chk, sz, NULL) ||
	             memcmp(buf, chk, sz),
		"after the reset the engine reads other bytes (%s)", strerror(errno));
	FAIL_IF(out, memcmp(buf, map, sz),
		"after the reset the old mapping shows other bytes");
	ret = 0;
out:
	if (map != MAP_FAILED)
		munmap(map, sz);
	munmap(buf, sz);
	munmap(chk, sz);
	bo_free(gpu, a.handle);
	return ret;
}

/*
 * Unbind the driver while a process still has pages in device-private VRAM
 * (their file closed): remove must bring them home before their struct pages
 * go, with their data; then bind again.  Resets the driver's counters, so it
 * runs only when named.
 */
static int case_unbind_private(void)
{
	const size_t npages = 16, len = npages * 4096;
	const char *bdf = strrchr(pci_dir, '/') + 1;
	struct p2pgpu_migrate m = { 0 };
	unsigned char *p = xmalloc_pages(len), *ref = xmalloc_pages(len);
	int fd, n;

	CHECK(p && ref, "mmap: %s", strerror(errno));
	fill(p, len, 81);
	memcpy(ref, p, len);
	m.addr = (uintptr_t)p;
	m.npages = npages;
	CHECK(!ioctl(gpu, P2PGPU_IOC_MIGRATE_TO_DEV, &m) && m.migrated == npages,
	      "MIGRATE_TO_DEV: %s, %" PRIu64 " pages", strerror(errno), (uint64_t)m.migrated);
	close(gpu);
	gpu = -1;
	fd = open("/sys/bus/pci/drivers/p2pgpu/unbind", O_WRONLY);
	n = fd < 0 ? -1 : write(fd, bdf, strlen(bdf));
	if (fd >= 0)
		close(fd);
	CHECK(n == (int)strlen(bdf), "unbind %s: %s", bdf, strerror(errno));
	CHECK(!memcmp(p, ref, len), "pages evicted at remove lost their data");
	fd = open("/sys/bus/pci/drivers/p2pgpu/bind", O_WRONLY);
	n = fd < 0 ? -1 : write(fd, bdf, strlen(bdf));
	if (fd >= 0)
		close(fd);
	CHECK(n == (int)strlen(bdf), "bind %s: %s", bdf, strerror(errno));
	gpu = open(dev_path, O_RDWR | O_CLOEXEC);
	CHECK(gpu >= 0 && !ioctl(gpu, P2PGPU_IOC_INFO, &info), "%s after bind: %s", dev_path,
	      strerror(errno));
	munmap(p, len);
	munmap(ref, len);
	return 0;
}

static const struct selftest_case cases[] = {
	{ "resize", case_resize, 0 },
	{ "mmap_rw", case_mmap_rw, 0 },
	{ "copy_sg", case_copy_sg, 0 },
	{ "aperture_evict", case_aperture_evict, 0 },
	{ "p2pmem_sysfs", case_p2pmem_sysfs, 0 },
	{ "nvme_p2pdma", case_nvme_p2pdma, 0 },
	{ "dmabuf", case_dmabuf, 0 },
	{ "migrate", case_migrate, 0 },
	{ "cpu_fault", case_cpu_fault, 0 },
	{ "flr", case_flr, 0 },
	{ "copy_error_injected", case_copy_error_injected, 1 },
	{ "unbind_private", case_unbind_private, 1 },
};

/* /sys/class/misc/p2pgpuN/device -> the PCI device; debugfs is named after it. */
static int find_dirs(void)
{
	char link[PATH_MAX], target[PATH_MAX];
	const char *base = strrchr(dev_path, '/');
	ssize_t n;

	snprintf(link, sizeof(link), "/sys/class/misc/%s/device", base ? base + 1 : dev_path);
	n = readlink(link, target, sizeof(target) - 1);
	if (n < 0)
		return -1;
	target[n] = 0;
	base = strrchr(target, '/');
	/* A PCI device name is 12 characters ("0000:03:00.0"). */
	snprintf(pci_dir, sizeof(pci_dir), "/sys/bus/pci/devices/%.64s", base ? base + 1 : target);
	snprintf(dbg_dir, sizeof(dbg_dir), "/sys/kernel/debug/p2pgpu/%.64s", base ? base + 1 : target);
	return 0;
}

int main(int argc, char **argv)
{
	struct selftest t = { .tool = "p2pgpu-test", .cases = cases,
			      .ncases = sizeof(cases) / sizeof(cases[0]) };
	char extra[512];
	int i;

	setvbuf(stdout, NULL, _IOLBF, 0);
	page_size = sysconf(_SC_PAGESIZE);
	for (i = 1; i < argc; i++) {
		const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;

		if (!v) {
			fprintf(stderr, "%s: %s needs a value\n", argv[0], a);
			return 2;
		}
		if (!strcmp(a, "--dev"))
			dev_path = v;
		else if (!strcmp(a, "--peer"))
			peer_path = v;
		else if (!strcmp(a, "--nvme"))
			nvme_path = v;
		else if (!strcmp(a, "--expect-bar"))
			expect_bar = parse_size(v);
		else if (!strcmp(a, "--expect-mode"))
			expect_mode = v;
		else if (!strcmp(a, "--p2p") && (!strcmp(v, "allowed") || !strcmp(v, "refused")))
			p2p_expect = v;
		else if (!strcmp(a, "--only") && t.nonly < 32)
			t.only[t.nonly++] = v;
		else {
			fprintf(stderr, "usage: %s [--dev PATH] [--peer PATH] [--nvme PATH] "
				"[--expect-bar BYTES] [--expect-mode direct|windowed] "
				"[--p2p allowed|refused] [--only CASE]...\n", argv[0]);
			return 2;
		}
		i++;
	}
	gpu = open(dev_path, O_RDWR | O_CLOEXEC);
	if (gpu < 0 || ioctl(gpu, P2PGPU_IOC_INFO, &info) || find_dirs()) {
		printf("TAP version 13\n1..0\n# %s: %s\n", dev_path, strerror(errno));
		printf("{\"tool\":\"p2pgpu-test\",\"device\":\"%s\",\"error\":\"%s\",\"pass\":0,\"fail\":1}\n",
		       dev_path, strerror(errno));
		return 1;
	}
	snprintf(extra, sizeof(extra), "\"device\":\"%s\",\"pci\":\"%s\",\"vram\":%" PRIu64
		 ",\"bar\":%" PRIu64 ",\"mode\":\"%s\",\"p2p\":\"%s\"", dev_path,
		 strrchr(pci_dir, '/') + 1, (uint64_t)info.vram_size, (uint64_t)info.bar_size,
		 info.aperture_mode == P2PGPU_APERTURE_DIRECT ? "direct" : "windowed", p2p_expect);
	return selftest_run(&t, extra);
}
