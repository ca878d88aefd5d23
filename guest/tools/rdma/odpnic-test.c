// SPDX-License-Identifier: GPL-2.0
/*
 * odpnic-test: the odpnic driver's test tool, through libibverbs as any RDMA
 * application would use it.  Two RC QPs of one NIC are connected to each
 * other (the device's loopback: the destination LID is our own), so every
 * case runs on one machine.  Prints TAP (kselftest style), then one JSON
 * summary line.
 *
 * Cases: pinned and ODP regions (WRITE, READ, SEND with immediate), an ODP
 * access to an unmapped range (an error completion, never a hang), the
 * invalidation paths (munmap/mmap, MADV_DONTNEED, mprotect) with a check
 * that no DMA reaches a page after it left the region, prefetch through
 * ibv_advise_mr, and, with --gpu, a p2pgpu BO imported as a dma-buf region
 * that the NIC writes through the GPU's BAR while the BO moves.
 *
 * Device and driver counters come from the port's hw_counters in sysfs.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdlib.h>
#include <sys/ioctl.h>
#include <netdb.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <infiniband/verbs.h>
#include <p2pgpu.h>

#include "../lib/selftest.h"
#include "verbs-lab.h"

#define MiB (1ull << 20)
#define WC_TIMEOUT_MS 20000

static const char *dev_name = "odpnic0";
static const char *gpu_path;
static const char *peer_host;	/* --connect: the target machine */
static int listen_port;		/* --listen: we are the target */
static int tcp_port = 7471;
static long page_size;

static struct ibv_context *ctx;
static struct ibv_pd *pd;
static struct ibv_cq *cq;
static struct ibv_qp *qp[2];	/* qp[0] posts, qp[1] is its peer */
static uint16_t lid;

/* ---- verbs plumbing ---------------------------------------------------- */

static long long hw_counter(const char *name)
{
	return lab_hw_counter(dev_name, name);
}

static int setup(void)
{
	struct ibv_port_attr port;
	int i;

	ctx = lab_open(dev_name);
	CHECK(ctx, "no RDMA device %s", dev_name);
	CHECK(!ibv_query_port(ctx, 1, &port), "query_port: %s", strerror(errno));
	lid = port.lid;
	CHECK(!lab_counters_uncached(dev_name), "%s's hw_counters: %s", dev_name,
	      strerror(errno));
	pd = ibv_alloc_pd(ctx);
	cq = ibv_create_cq(ctx, 512, NULL, NULL, 0);
	CHECK(pd && cq, "PD/CQ: %s", strerror(errno));
	for (i = 0; i < 2; i++) {
		struct ibv_qp_init_attr ia = {
			.send_cq = cq, .recv_cq = cq, .qp_type = IBV_QPT_RC,
			.sq_sig_all = 1,
			.cap = { .max_send_wr = 64, .max_recv_wr = 64,
				 .max_send_sge = 2, .max_recv_sge = 2 },
		};

		qp[i] = ibv_create_qp(pd, &ia);
		CHECK(qp[i], "create_qp: %s", strerror(errno));
	}
	/* With a peer, qp[0] is connected to it by the case, over TCP. */
	if (!peer_host && !listen_port)
		CHECK(!lab_qp_connect(qp[0], qp[1]->qp_num, lid, -1, NULL) &&
		      !lab_qp_connect(qp[1], qp[0]->qp_num, lid, -1, NULL),
		      "connecting the loopback QPs: %s", strerror(errno));
	return 0;
}

/* The next completion, or -1 (and a message) after WC_TIMEOUT_MS. */
static int wait_wc(struct ibv_wc *wc)
{
	struct timespec t0, t;
	int n;

	clock_gettime(CLOCK_MONOTONIC, &t0);
	for (;;) {
		n = ibv_poll_cq(cq, 1, wc);
		if (n < 0)
			CHECK(0, "poll_cq: %d", n);
		if (n)
			return 0;
		clock_gettime(CLOCK_MONOTONIC, &t);
		CHECK((t.tv_sec - t0.tv_sec) * 1000 + (t.tv_nsec - t0.tv_nsec) / 1000000 <
		      WC_TIMEOUT_MS, "no completion in %d ms", WC_TIMEOUT_MS);
	}
}

static int rdma_op(enum ibv_wr_opcode op, struct ibv_mr *lmr, void *laddr, uint32_t len,
		   struct ibv_mr *rmr, uint64_t raddr, uint64_t wr_id)
{
	struct ibv_sge sge = { .addr = (uintptr_t)laddr, .length = len, .lkey = lmr->lkey };
	struct ibv_send_wr wr = {
		.wr_id = wr_id, .sg_list = &sge, .num_sge = 1, .opcode = op,
		.send_flags = IBV_SEND_SIGNALED,
	}, *bad;

	if (rmr) {
		wr.wr.rdma.rkey = rmr->rkey;
		wr.wr.rdma.remote_addr = raddr;
	}
	return ibv_post_send(qp[0], &wr, &bad);
}

/* Post one RDMA op and wait for it; returns the completion status, or -1. */
static int rdma_sync(enum ibv_wr_opcode op, struct ibv_mr *lmr, void *laddr, uint32_t len,
		     struct ibv_mr *rmr, uint64_t raddr)
{
	static uint64_t id = 1000;
	struct ibv_wc wc;
	int err = rdma_op(op, lmr, laddr, len, rmr, raddr, ++id);

	CHECK(!err, "post_send: %s", strerror(err));
	if (wait_wc(&wc))
		return -1;
	CHECK(wc.wr_id == id, "completion for wr %" PRIu64 ", expected %" PRIu64,
	      (uint64_t)wc.wr_id, id);
	return wc.status;
}

static void *map_anon(size_t n)
{
	void *p = mmap(NULL, n, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);

	return p == MAP_FAILED ? NULL : p;
}

#define ACC_ALL (IBV_ACCESS_LOCAL_WRITE | IBV_ACCESS_REMOTE_WRITE | IBV_ACCESS_REMOTE_READ)

/*
 * The two buffers most cases move bytes between: a pinned source, and a
 * destination registered with @dst_access, @n bytes each.  The case's
 * cleanup passes them to buf_pair_free() whatever was set up.
 */
static int buf_pair(size_t n, int dst_access, char **src, char **dst,
		    struct ibv_mr **ms, struct ibv_mr **md)
{
	*src = map_anon(n);
	*dst = map_anon(n);
	CHECK(*src && *dst, "mmap: %s", strerror(errno));
	*ms = ibv_reg_mr(pd, *src, n, ACC_ALL);
	*md = ibv_reg_mr(pd, *dst, n, dst_access);
	CHECK(*ms && *md, "reg_mr: %s", strerror(errno));
	return 0;
}

static void buf_pair_free(size_t n, char *src, char *dst, struct ibv_mr *ms,
			  struct ibv_mr *md)
{
	if (md)
		ibv_dereg_mr(md);
	if (ms)
		ibv_dereg_mr(ms);
	if (src)
		munmap(src, n);
	if (dst)
		munmap(dst, n);
}

/* ---- cases ------------------------------------------------------------- */

/* WRITE, READ and SEND between two regions of @extra access (0 or ODP). */
static int move_bytes(int extra, bool fresh_dst)
{
	size_t n = 4 * MiB;
	char *src = map_anon(n), *dst = map_anon(n), *back = map_anon(n);
	struct ibv_mr *ms = NULL, *md = NULL, *mb = NULL;
	struct ibv_recv_wr rwr, *rbad;
	struct ibv_sge rsge;
	struct ibv_wc wc;
	int st, ret = -1;

	FAIL_IF(out, !src || !dst || !back, "mmap: %s", strerror(errno));
	fill(src, n, 7);
	if (!fresh_dst)
		memset(dst, 0, n);
	ms = ibv_reg_mr(pd, src, n, ACC_ALL | extra);
	md = ibv_reg_mr(pd, dst, n, ACC_ALL | extra);
	mb = ibv_reg_mr(pd, back, n, ACC_ALL | extra);
	FAIL_IF(out, !ms || !md || !mb, "reg_mr: %s", strerror(errno));

	st = rdma_sync(IBV_WR_RDMA_WRITE, ms, src, n, md, (uintptr_t)dst);
	if (st < 0)
		goto out;
	FAIL_IF(out, st, "WRITE 4 MiB: status %d (%s)", st, st > 0 ? ibv_wc_status_str(st) : "");
	FAIL_IF(out, memcmp(src, dst, n), "WRITE: destination differs");
	/* Odd offsets and lengths, across pages. */
	st = rdma_sync(IBV_WR_RDMA_WRITE, ms, src + 4093, 12345, md, (uintptr_t)dst + 77);
	if (st < 0)
		goto out;
	FAIL_IF(out, st || memcmp(src + 4093, dst + 77, 12345), "odd WRITE: status %d", st);
	st = rdma_sync(IBV_WR_RDMA_READ, mb, back, n, ms, (uintptr_t)src);
	if (st < 0)
		goto out;
	FAIL_IF(out, st || memcmp(src, back, n), "READ 4 MiB: status %d", st);

	rsge = (struct ibv_sge){ .addr = (uintptr_t)dst, .length = 65536, .lkey = md->lkey };
	rwr = (struct ibv_recv_wr){ .wr_id = 42, .sg_list = &rsge, .num_sge = 1 };
	st = ibv_post_recv(qp[1], &rwr, &rbad);
	FAIL_IF(out, st, "post_recv: %s", strerror(st));
	{
		struct ibv_sge s = { .addr = (uintptr_t)src + 100, .length = 30000,
				     .lkey = ms->lkey };
		struct ibv_send_wr w = { .wr_id = 43, .sg_list = &s, .num_sge = 1,
					 .opcode = IBV_WR_SEND_WITH_IMM,
					 .send_flags = IBV_SEND_SIGNALED,
					 .imm_data = htobe32(0x1234) }, *b;

		st = ibv_post_send(qp[0], &w, &b);
		FAIL_IF(out, st, "post SEND: %s", strerror(st));
	}
	for (int i = 0; i < 2; i++) {
		if (wait_wc(&wc))
			goto out;
		FAIL_IF(out, wc.status, "SEND wr %" PRIu64 ": %s", (uint64_t)wc.wr_id,
			ibv_wc_status_str(wc.status));
		if (wc.wr_id == 42)
			FAIL_IF(out, wc.opcode != IBV_WC_RECV || wc.byte_len != 30000 ||
				!(wc.wc_flags & IBV_WC_WITH_IMM) || be32toh(wc.imm_data) != 0x1234 ||
				wc.qp_num != qp[1]->qp_num,
				"RECV: opcode %d len %u flags %#x imm %#x", wc.opcode, wc.byte_len,
				wc.wc_flags, be32toh(wc.imm_data));
	}
	FAIL_IF(out, memcmp(src + 100, dst, 30000), "SEND: received bytes differ");
	ret = 0;
out:
	if (mb)
		ibv_dereg_mr(mb);
	if (md)
		ibv_dereg_mr(md);
	if (ms)
		ibv_dereg_mr(ms);
	munmap(src, n);
	munmap(dst, n);
	munmap(back, n);
	return ret;
}

static int case_pinned(void)
{
	long long f0 = hw_counter("odp_faults_raised");
	int ret = move_bytes(0, false);

	if (!ret)
		CHECK(hw_counter("odp_faults_raised") == f0,
		      "pinned regions raised %lld faults", hw_counter("odp_faults_raised") - f0);
	return ret;
}

static int case_odp(void)
{
	long long f0 = hw_counter("odp_faults_raised"), h0 = hw_counter("drv_faults_handled");
	int ret = move_bytes(IBV_ACCESS_ON_DEMAND, true);

	if (ret)
		return ret;
	/* Untouched destination pages: the NIC's faults brought them in. */
	CHECK(hw_counter("odp_faults_raised") > f0, "ODP regions raised no fault");
	CHECK(hw_counter("drv_faults_handled") - h0 == hw_counter("odp_faults_raised") - f0,
	      "device raised %lld faults, driver handled %lld",
	      hw_counter("odp_faults_raised") - f0, hw_counter("drv_faults_handled") - h0);
	return 0;
}

/* A WR on an unmapped part of an ODP region completes with an error. */
static int case_odp_unmapped(void)
{
	size_t n = 1 * MiB;
	char *src = NULL, *dst = NULL;
	struct ibv_mr *ms = NULL, *md = NULL;
	long long failed0 = hw_counter("odp_faults_failed");
	int st, ret = -1;

	if (buf_pair(n, ACC_ALL | IBV_ACCESS_ON_DEMAND, &src, &dst, &ms, &md))
		goto out;
	fill(src, n, 3);
	FAIL_IF(out, munmap(dst + n / 2, n / 4), "munmap: %s", strerror(errno));
	st = rdma_sync(IBV_WR_RDMA_WRITE, ms, src, 8192, md, (uintptr_t)dst + n / 2 + 4096);
	if (st < 0)
		goto out;
	FAIL_IF(out, st <= 0, "WRITE into the hole: status %d, expected an error", st);
	FAIL_IF(out, hw_counter("odp_faults_failed") <= failed0,
		"the device counted no failed fault");
	/* The queue goes on: the mapped part still takes writes. */
	st = rdma_sync(IBV_WR_RDMA_WRITE, ms, src, 8192, md, (uintptr_t)dst);
	if (st < 0)
		goto out;
	FAIL_IF(out, st || memcmp(src, dst, 8192), "WRITE after the error: status %d", st);
	ret = 0;
out:
	buf_pair_free(n, src, dst, ms, md);
	return ret;
}

/* MADV_DONTNEED and mprotect on an ODP destination, one at a time. */
static int case_odp_madvise_mprotect(void)
{
	size_t n = 1 * MiB;
	char *src = NULL, *dst = NULL;
	struct ibv_mr *ms = NULL, *md = NULL;
	long long inv0 = hw_counter("invalidations");
	int st, ret = -1;

	if (buf_pair(n, ACC_ALL | IBV_ACCESS_ON_DEMAND, &src, &dst, &ms, &md))
		goto out;
	fill(src, n, 11);
	st = rdma_sync(IBV_WR_RDMA_WRITE, ms, src, n, md, (uintptr_t)dst);
	if (st < 0)
		goto out;
	FAIL_IF(out, st || memcmp(src, dst, n), "first WRITE: status %d", st);
	FAIL_IF(out, madvise(dst, n / 2, MADV_DONTNEED), "madvise: %s", strerror(errno));
	FAIL_IF(out, dst[0] || dst[n / 2 - 1], "MADV_DONTNEED left data behind");
	FAIL_IF(out, hw_counter("invalidations") <= inv0, "MADV_DONTNEED sent no fence");
	fill(src, n, 12);
	st = rdma_sync(IBV_WR_RDMA_WRITE, ms, src, n, md, (uintptr_t)dst);
	if (st < 0)
		goto out;
	FAIL_IF(out, st || memcmp(src, dst, n), "WRITE after MADV_DONTNEED: status %d", st);

	inv0 = hw_counter("invalidations");
	FAIL_IF(out, mprotect(dst, n / 4, PROT_READ), "mprotect: %s", strerror(errno));
	FAIL_IF(out, hw_counter("invalidations") <= inv0,
		"mprotect sent no fence (device %lld -> %lld, driver %lld)", inv0,
		hw_counter("invalidations"), hw_counter("drv_odp_invalidations"));
	st = rdma_sync(IBV_WR_RDMA_WRITE, ms, src, 4096, md, (uintptr_t)dst);
	if (st < 0)
		goto out;
	FAIL_IF(out, st <= 0, "WRITE into a read-only page: status %d, expected an error", st);
	/* Reading it is still allowed. */
	st = rdma_sync(IBV_WR_RDMA_READ, ms, src, 4096, md, (uintptr_t)dst);
	if (st < 0)
		goto out;
	FAIL_IF(out, st, "READ from a read-only page: status %d", st);
	FAIL_IF(out, mprotect(dst, n / 4, PROT_READ | PROT_WRITE), "mprotect: %s",
		strerror(errno));
	fill(src, n, 13);
	st = rdma_sync(IBV_WR_RDMA_WRITE, ms, src, n, md, (uintptr_t)dst);
	if (st < 0)
		goto out;
	FAIL_IF(out, st || memcmp(src, dst, n), "WRITE after mprotect RW: status %d", st);
	ret = 0;
out:
	buf_pair_free(n, src, dst, ms, md);
	return ret;
}

/*
 * Traffic into an ODP region while another thread remaps, zaps and
 * write-protects parts of it.  The region is a window on a memfd whose
 * chunks the mutator swaps for fresh ones (mmap MAP_FIXED); a retired chunk
 * is hashed right after the swap returns and again at the end, through a
 * second mapping of the memfd: any DMA that reached it after the swap, a
 * stale translation, changes the hash.
 */
#define INV_CHUNK (64 * 1024)
#define INV_CHUNKS 32
#define INV_SLOTS (INV_CHUNKS * 4)

static struct {
	int fd;
	char *win, *all;
	struct ibv_mr *mr;
	int slot_of[INV_CHUNKS];
	uint64_t retired_hash[INV_SLOTS];
	bool retired[INV_SLOTS];
	atomic_bool stop;
	atomic_int writes, errors, bad_status;
} inv;

static void *inv_mutator(void *arg)
{
	unsigned int seed = 1, next = INV_CHUNKS, i;

	(void)arg;
	for (i = 0; next < INV_SLOTS && !atomic_load(&inv.stop); i++) {
		int c = rand_r(&seed) % INV_CHUNKS;
		char *p = inv.win + (size_t)c * INV_CHUNK;

		switch (i % 3) {
		case 0: {	/* swap the chunk for a fresh slot */
			int old = inv.slot_of[c], s = next++;

			if (mmap(p, INV_CHUNK, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_FIXED,
				 inv.fd, (off_t)s * INV_CHUNK) == MAP_FAILED)
				return (void *)1;
			inv.slot_of[c] = s;
			inv.retired_hash[old] = fnv1a(inv.all + (size_t)old * INV_CHUNK,
						      INV_CHUNK);
			inv.retired[old] = true;
			break;
		}
		case 1:
			madvise(p, INV_CHUNK, MADV_DONTNEED);
			break;
		case 2:
			mprotect(p, INV_CHUNK, PROT_READ);
			usleep(1000);
			mprotect(p, INV_CHUNK, PROT_READ | PROT_WRITE);
			break;
		}
		usleep(2000);
	}
	return NULL;
}

static int case_odp_invalidate(void)
{
	size_t wn = (size_t)INV_CHUNKS * INV_CHUNK, an = (size_t)INV_SLOTS * INV_CHUNK;
	char *src = map_anon(INV_CHUNK);
	struct ibv_mr *ms = NULL;
	long long inv0 = hw_counter("invalidations"), dinv0 = hw_counter("drv_odp_invalidations");
	unsigned int seed = 99;
	pthread_t mut;
	void *mres = NULL;
	int c, st, ret = -1, started = 0, bad = 0;

	memset(&inv, 0, sizeof(inv));
	inv.fd = memfd_create("odpnic-test", 0);
	FAIL_IF(out, inv.fd < 0 || ftruncate(inv.fd, an), "memfd: %s", strerror(errno));
	inv.all = mmap(NULL, an, PROT_READ, MAP_SHARED, inv.fd, 0);
	inv.win = mmap(NULL, wn, PROT_READ | PROT_WRITE, MAP_SHARED, inv.fd, 0);
	FAIL_IF(out, inv.all == MAP_FAILED || inv.win == MAP_FAILED || !src, "mmap: %s",
		strerror(errno));
	for (c = 0; c < INV_CHUNKS; c++)
		inv.slot_of[c] = c;
	ms = ibv_reg_mr(pd, src, INV_CHUNK, ACC_ALL);
	inv.mr = ibv_reg_mr(pd, inv.win, wn, ACC_ALL | IBV_ACCESS_ON_DEMAND);
	FAIL_IF(out, !ms || !inv.mr, "reg_mr: %s", strerror(errno));

	FAIL_IF(out, pthread_create(&mut, NULL, inv_mutator, NULL), "pthread_create");
	started = 1;
	while (!atomic_load(&inv.stop)) {
		c = rand_r(&seed) % INV_CHUNKS;
		fill(src, INV_CHUNK, seed);
		st = rdma_sync(IBV_WR_RDMA_WRITE, ms, src, INV_CHUNK, inv.mr,
			       (uintptr_t)inv.win + (size_t)c * INV_CHUNK);
		if (st < 0)
			goto out;	/* rdma_sync() said why */
		inv.writes++;
		/* A write-protected chunk fails the WR; nothing else may. */
		if (st && st != IBV_WC_LOC_ACCESS_ERR) {
			inv.bad_status++;
			bad = st;
		}
		inv.errors += !!st;
		if (pthread_tryjoin_np(mut, &mres) == 0) {
			started = 0;
			break;
		}
	}
	FAIL_IF(out, mres, "the mutator failed: %s", strerror(errno));
	FAIL_IF(out, inv.bad_status, "%d WRs completed with an unexpected status, last %s",
		inv.bad_status, ibv_wc_status_str(bad));
	/* Quiet now: every chunk takes a write, and holds it. */
	for (c = 0; c < INV_CHUNKS; c++) {
		fill(src, INV_CHUNK, 1000 + c);
		st = rdma_sync(IBV_WR_RDMA_WRITE, ms, src, INV_CHUNK, inv.mr,
			       (uintptr_t)inv.win + (size_t)c * INV_CHUNK);
		if (st < 0)
			goto out;
		FAIL_IF(out, st, "final WRITE to chunk %d: status %d", c, st);
		FAIL_IF(out, memcmp(src, inv.win + (size_t)c * INV_CHUNK, INV_CHUNK),
			"chunk %d does not hold its final write", c);
	}
	for (c = 0; c < INV_SLOTS; c++)
		FAIL_IF(out, inv.retired[c] &&
			fnv1a(inv.all + (size_t)c * INV_CHUNK, INV_CHUNK) != inv.retired_hash[c],
			"stale DMA: memfd slot %d changed after it left the region", c);
	/* A change to a chunk the NIC never mapped needs no fence. */
	FAIL_IF(out, hw_counter("invalidations") == inv0, "no fence for %d remaps",
		INV_SLOTS - INV_CHUNKS);
	FAIL_IF(out, hw_counter("drv_odp_invalidations") - dinv0 !=
		hw_counter("invalidations") - inv0,
		"driver sent %lld fences, device executed %lld",
		hw_counter("drv_odp_invalidations") - dinv0, hw_counter("invalidations") - inv0);
	printf("# %d writes (%d failed on write-protected chunks), %d remaps, %lld fences\n",
	       inv.writes, inv.errors, INV_SLOTS - INV_CHUNKS,
	       hw_counter("invalidations") - inv0);
	ret = 0;
out:
	atomic_store(&inv.stop, true);
	if (started)
		pthread_join(mut, NULL);
	if (inv.mr)
		ibv_dereg_mr(inv.mr);
	if (ms)
		ibv_dereg_mr(ms);
	if (inv.win && inv.win != MAP_FAILED)
		munmap(inv.win, wn);
	if (inv.all && inv.all != MAP_FAILED)
		munmap(inv.all, an);
	if (inv.fd > 0)
		close(inv.fd);
	munmap(src, INV_CHUNK);
	return ret;
}

/* ibv_advise_mr(PREFETCH_WRITE, FLUSH): the pages are there on return. */
static int case_prefetch(void)
{
	size_t n = 2 * MiB;
	char *src = NULL, *dst = NULL;
	struct ibv_mr *ms = NULL, *md = NULL;
	struct ibv_sge sge;
	long long p0 = hw_counter("drv_prefetches"), f1;
	int st, ret = -1;

	if (buf_pair(n, ACC_ALL | IBV_ACCESS_ON_DEMAND, &src, &dst, &ms, &md))
		goto out;
	fill(src, n, 21);
	sge = (struct ibv_sge){ .addr = (uintptr_t)dst, .length = n, .lkey = md->lkey };
	st = ibv_advise_mr(pd, IBV_ADVISE_MR_ADVICE_PREFETCH_WRITE,
			   IBV_ADVISE_MR_FLAG_FLUSH, &sge, 1);
	FAIL_IF(out, st, "ibv_advise_mr: %s", strerror(st));
	FAIL_IF(out, hw_counter("drv_prefetches") != p0 + 1, "the driver counted %lld prefetches",
		hw_counter("drv_prefetches") - p0);
	/* The device's prefetch event may still be in flight: let it land. */
	usleep(100000);
	f1 = hw_counter("odp_faults_raised");
	st = rdma_sync(IBV_WR_RDMA_WRITE, ms, src, n, md, (uintptr_t)dst);
	if (st < 0)
		goto out;
	FAIL_IF(out, st || memcmp(src, dst, n), "WRITE: status %d", st);
	FAIL_IF(out, hw_counter("odp_faults_raised") != f1,
		"the prefetched region still faulted %lld times",
		hw_counter("odp_faults_raised") - f1);
	ret = 0;
out:
	buf_pair_free(n, src, dst, ms, md);
	return ret;
}

/* Protection domains are checked by the driver: another PD's key is refused. */
static int case_pd_check(void)
{
	struct ibv_pd *other = ibv_alloc_pd(ctx);
	char *buf = map_anon(4096);
	struct ibv_mr *mr = NULL;
	int ret = -1, st;

	FAIL_IF(out, !other || !buf, "alloc_pd: %s", strerror(errno));
	mr = ibv_reg_mr(other, buf, 4096, ACC_ALL);
	FAIL_IF(out, !mr, "reg_mr: %s", strerror(errno));
	FAIL_IF(out, !rdma_op(IBV_WR_RDMA_WRITE, mr, buf, 4096, mr, (uintptr_t)buf, 1),
		"a WR with another PD's lkey was posted");
	/* In loopback this NIC is the responder: another PD's rkey is refused too. */
	{
		struct ibv_mr *own = ibv_reg_mr(pd, buf, 4096, ACC_ALL);

		FAIL_IF(out, !own, "reg_mr: %s", strerror(errno));
		st = rdma_op(IBV_WR_RDMA_WRITE, own, buf, 4096, mr, (uintptr_t)buf, 2);
		ibv_dereg_mr(own);
		FAIL_IF(out, !st, "a loopback WRITE into another PD's region was posted");
	}
	ret = 0;
out:
	if (mr)
		ibv_dereg_mr(mr);
	if (other)
		ibv_dealloc_pd(other);
	munmap(buf, 4096);
	return ret;
}

/*
 * Completions left unpolled when a QP is reset belong to its old life: after
 * ERR, RESET and a new connection, only the new WRs complete, in order.
 */
static int case_qp_reset(void)
{
	size_t n = 64 * 1024;
	char *src = NULL, *dst = NULL;
	struct ibv_mr *ms = NULL, *md = NULL;
	struct ibv_qp_attr a = {};
	struct ibv_wc wc;
	int i, st, ret = -1;

	if (buf_pair(n, ACC_ALL, &src, &dst, &ms, &md))
		goto out;
	for (i = 0; i < 8; i++)
		FAIL_IF(out, rdma_op(IBV_WR_RDMA_WRITE, ms, src, 4096, md, (uintptr_t)dst, 500 + i),
			"post %d", i);
	usleep(200000);		/* let them complete, unpolled */
	a.qp_state = IBV_QPS_ERR;
	FAIL_IF(out, ibv_modify_qp(qp[0], &a, IBV_QP_STATE), "to ERR: %s", strerror(errno));
	a.qp_state = IBV_QPS_RESET;
	FAIL_IF(out, ibv_modify_qp(qp[0], &a, IBV_QP_STATE), "to RESET: %s", strerror(errno));
	FAIL_IF(out, lab_qp_connect(qp[0], qp[1]->qp_num, lid, -1, NULL), "reconnect: %s",
		strerror(errno));
	for (i = 0; i < 4; i++) {
		fill(src, n, 70 + i);
		st = rdma_sync(IBV_WR_RDMA_WRITE, ms, src, n, md, (uintptr_t)dst);
		if (st < 0)
			goto out;
		FAIL_IF(out, st || memcmp(src, dst, n), "WRITE %d after the reset: status %d", i, st);
	}
	FAIL_IF(out, ibv_poll_cq(cq, 1, &wc) != 0, "a stray completion (wr %" PRIu64 ")",
		(uint64_t)wc.wr_id);
	ret = 0;
out:
	buf_pair_free(n, src, dst, ms, md);
	return ret;
}

/*
 * A key named by a queued WQE stays out of the pool after dereg: a region
 * registered meanwhile, by anyone, must not get it (the WQE would then reach
 * that region).  A SEND to a QP with no receive posted holds the queue.
 */
static int case_key_quarantine(void)
{
	struct ibv_qp_init_attr ia = {
		.send_cq = cq, .recv_cq = cq, .qp_type = IBV_QPT_RC, .sq_sig_all = 1,
		.cap = { .max_send_wr = 4, .max_recv_wr = 4, .max_send_sge = 1,
			 .max_recv_sge = 1 },
	};
	struct ibv_qp *qa = NULL, *qb = NULL;
	struct ibv_mr *many[4096], *msrc = NULL, *mk = NULL, *mr;
	char *buf = map_anon(1 << 20);
	struct ibv_sge sge;
	struct ibv_send_wr w, *bw;
	struct ibv_recv_wr rw, *br;
	struct ibv_wc wc;
	int nmany = 0, i, st, got = 0, ret = -1;
	uint32_t key;

	FAIL_IF(out, !buf, "mmap: %s", strerror(errno));
	qa = ibv_create_qp(pd, &ia);
	qb = ibv_create_qp(pd, &ia);
	FAIL_IF(out, !qa || !qb, "create_qp: %s", strerror(errno));
	FAIL_IF(out, lab_qp_connect(qa, qb->qp_num, lid, -1, NULL) ||
		lab_qp_connect(qb, qa->qp_num, lid, -1, NULL),
		"connect: %s", strerror(errno));
	msrc = ibv_reg_mr(pd, buf, 4096, ACC_ALL);
	mk = ibv_reg_mr(pd, buf + 4096, 4096, ACC_ALL);
	FAIL_IF(out, !msrc || !mk, "reg_mr: %s", strerror(errno));
	key = mk->lkey;
	/* The SEND waits for a receive; the WRITE naming key waits behind it. */
	sge = (struct ibv_sge){ .addr = (uintptr_t)buf, .length = 64, .lkey = msrc->lkey };
	w = (struct ibv_send_wr){ .wr_id = 1, .sg_list = &sge, .num_sge = 1,
				  .opcode = IBV_WR_SEND, .send_flags = IBV_SEND_SIGNALED };
	st = ibv_post_send(qa, &w, &bw);
	FAIL_IF(out, st, "post SEND: %s", strerror(st));
	sge = (struct ibv_sge){ .addr = (uintptr_t)buf + 4096, .length = 64, .lkey = key };
	w = (struct ibv_send_wr){ .wr_id = 2, .sg_list = &sge, .num_sge = 1,
				  .opcode = IBV_WR_RDMA_WRITE, .send_flags = IBV_SEND_SIGNALED,
				  .wr.rdma = { .remote_addr = (uintptr_t)buf, .rkey = msrc->rkey } };
	st = ibv_post_send(qa, &w, &bw);
	FAIL_IF(out, st, "post WRITE: %s", strerror(st));
	FAIL_IF(out, ibv_poll_cq(cq, 1, &wc) != 0, "the stalled SEND completed");
	FAIL_IF(out, ibv_dereg_mr(mk), "dereg_mr: %s", strerror(errno));
	mk = NULL;
	/* Take every free key: the deregistered one must not be among them. */
	while (nmany < 4096 && (mr = ibv_reg_mr(pd, buf + 8192, 4096, ACC_ALL)))
		many[nmany++] = mr;
	FAIL_IF(out, errno != ENOSPC && errno != ENOMEM, "reg_mr: %s", strerror(errno));
	for (i = 0; i < nmany; i++)
		FAIL_IF(out, many[i]->lkey == key,
			"key %u was given out again while a queued WQE names it", key);
	/* Let the queue go: the SEND completes, the WRITE fails (no region). */
	sge = (struct ibv_sge){ .addr = (uintptr_t)buf + 8192, .length = 64, .lkey = many[0]->lkey };
	rw = (struct ibv_recv_wr){ .wr_id = 3, .sg_list = &sge, .num_sge = 1 };
	st = ibv_post_recv(qb, &rw, &br);
	FAIL_IF(out, st, "post_recv: %s", strerror(st));
	while (got < 3) {
		if (wait_wc(&wc))
			goto out;
		got++;
		FAIL_IF(out, wc.wr_id == 2 && wc.status == IBV_WC_SUCCESS,
			"the WRITE with a deregistered lkey succeeded");
	}
	/* Retired: the key is free again. */
	for (i = 0; i < nmany; i++)
		ibv_dereg_mr(many[i]);
	nmany = 0;
	mk = ibv_reg_mr(pd, buf + 4096, 4096, ACC_ALL);
	FAIL_IF(out, !mk, "reg_mr after the WQE retired: %s", strerror(errno));
	ret = 0;
out:
	for (i = 0; i < nmany; i++)
		ibv_dereg_mr(many[i]);
	if (qa)
		ibv_destroy_qp(qa);
	if (qb)
		ibv_destroy_qp(qb);
	while (ibv_poll_cq(cq, 1, &wc) > 0)
		;
	if (mk)
		ibv_dereg_mr(mk);
	if (msrc)
		ibv_dereg_mr(msrc);
	munmap(buf, 1 << 20);
	return ret;
}

/* ---- dma-buf: a p2pgpu BO ---------------------------------------------- */

static int bo_copy_from(int gpu, uint32_t handle, uint64_t off, void *dst, uint64_t n)
{
	struct p2pgpu_copy c = { .handle = handle, .direction = P2PGPU_COPY_FROM_BO,
				 .bo_offset = off, .user_addr = (uintptr_t)dst, .size = n };

	return ioctl(gpu, P2PGPU_IOC_COPY, &c);
}

static int case_dmabuf(void)
{
	size_t n = 4 * MiB;
	char *src = map_anon(n), *chk = map_anon(n);
	struct p2pgpu_alloc a = { .size = n };
	struct p2pgpu_export ex = {};
	struct p2pgpu_evict ev = {};
	struct ibv_mr *ms = NULL, *mg = NULL;
	long long dinv0 = hw_counter("drv_dmabuf_invalidations");
	long long f0 = hw_counter("odp_faults_raised");
	int gpu = -1, st, ret = -1, i;
	bool have_bo = false;

	FAIL_IF(out, !gpu_path, "give --gpu /dev/p2pgpuN");
	gpu = open(gpu_path, O_RDWR | O_CLOEXEC);
	FAIL_IF(out, gpu < 0 || !src || !chk, "%s: %s", gpu_path, strerror(errno));
	FAIL_IF(out, ioctl(gpu, P2PGPU_IOC_ALLOC, &a), "ALLOC: %s", strerror(errno));
	have_bo = true;
	ex.handle = a.handle;
	ex.flags = O_CLOEXEC | O_RDWR;
	FAIL_IF(out, ioctl(gpu, P2PGPU_IOC_EXPORT, &ex), "EXPORT: %s", strerror(errno));
	ms = ibv_reg_mr(pd, src, n, ACC_ALL);
	/* iova 0x10000000: any address the QP's peer names it by. */
	mg = ibv_reg_dmabuf_mr(pd, 0, n, 0x10000000, ex.fd, ACC_ALL);
	FAIL_IF(out, !ms || !mg, "reg_dmabuf_mr: %s", strerror(errno));

	for (i = 0; i < 4; i++) {
		fill(src, n, 31 + i);
		st = rdma_sync(IBV_WR_RDMA_WRITE, ms, src, n, mg, 0x10000000);
		if (st < 0)
			goto out;
		FAIL_IF(out, st, "WRITE %d into VRAM: status %d", i, st);
		/* The GPU's copy engine reads VRAM back: the bytes are there. */
		FAIL_IF(out, bo_copy_from(gpu, a.handle, 0, chk, n), "COPY: %s", strerror(errno));
		FAIL_IF(out, memcmp(src, chk, n), "WRITE %d: VRAM differs", i);
		/* The BO moves: move_notify, the NIC fences and faults it back. */
		ev.handle = a.handle;
		ev.op = i % 2 ? P2PGPU_EVICT_APERTURE : P2PGPU_EVICT_MOVE;
		FAIL_IF(out, ioctl(gpu, P2PGPU_IOC_EVICT, &ev), "EVICT: %s", strerror(errno));
	}
	/* READ back through the NIC after the last move. */
	memset(chk, 0, n);
	{
		struct ibv_mr *mc = ibv_reg_mr(pd, chk, n, ACC_ALL);

		FAIL_IF(out, !mc, "reg_mr: %s", strerror(errno));
		st = rdma_sync(IBV_WR_RDMA_READ, mc, chk, n, mg, 0x10000000);
		if (st < 0)
			goto out;
		ibv_dereg_mr(mc);
		FAIL_IF(out, st || memcmp(src, chk, n), "READ from VRAM: status %d", st);
	}
	FAIL_IF(out, hw_counter("drv_dmabuf_invalidations") - dinv0 < 2,
		"%lld dma-buf fences for 4 moves", hw_counter("drv_dmabuf_invalidations") - dinv0);
	FAIL_IF(out, hw_counter("odp_faults_raised") - f0 < 2,
		"%lld faults after 4 moves", hw_counter("odp_faults_raised") - f0);
	ret = 0;
out:
	if (mg)
		ibv_dereg_mr(mg);
	if (ms)
		ibv_dereg_mr(ms);
	if (ex.fd > 0)
		close(ex.fd);
	if (have_bo) {
		struct p2pgpu_handle f = { .handle = a.handle };

		ioctl(gpu, P2PGPU_IOC_FREE, &f);
	}
	if (gpu >= 0)
		close(gpu);
	munmap(src, n);
	munmap(chk, n);
	return ret;
}

/* ---- two machines: the peer writes into our GPU's VRAM ----------------- */

/* What the sides tell each other over TCP (the management LAN). */
struct peer_info {
	uint32_t lid, qpn, rkey, pad;
	uint64_t addr, len;
};

struct peer_msg {
	uint32_t round, seed;	/* round UINT32_MAX: done */
};

static int xfer(int fd, void *buf, size_t n, bool out)
{
	char *p = buf;

	while (n) {
		ssize_t r = out ? write(fd, p, n) : read(fd, p, n);

		if (r <= 0)
			return -1;
		p += r;
		n -= r;
	}
	return 0;
}

static int tcp_listen_accept(int port)
{
	/* The guest kernels have no IPv6: the management LAN is IPv4. */
	struct sockaddr_in a = { .sin_family = AF_INET, .sin_port = htons(port) };
	int one = 1, s = socket(AF_INET, SOCK_STREAM, 0), c;

	if (s < 0)
		return -1;
	setsockopt(s, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	if (bind(s, (struct sockaddr *)&a, sizeof(a)) || listen(s, 1)) {
		close(s);
		return -1;
	}
	c = accept(s, NULL, NULL);
	close(s);
	return c;
}

/* The target may not listen yet: retry for 60 s. */
static int tcp_connect(const char *host, int port)
{
	struct addrinfo hints = { .ai_family = AF_INET, .ai_socktype = SOCK_STREAM }, *res, *ai;
	char svc[16];
	int i, fd = -1;

	snprintf(svc, sizeof(svc), "%d", port);
	for (i = 0; i < 600 && fd < 0; i++) {
		if (i)
			usleep(100000);
		if (getaddrinfo(host, svc, &hints, &res))
			continue;
		for (ai = res; ai && fd < 0; ai = ai->ai_next) {
			fd = socket(ai->ai_family, ai->ai_socktype, 0);
			if (fd >= 0 && connect(fd, ai->ai_addr, ai->ai_addrlen)) {
				close(fd);
				fd = -1;
			}
		}
		freeaddrinfo(res);
	}
	return fd;
}

#define PEER_ROUNDS 8
#define PEER_STORM 64
/*
 * After an RNR the initiator resends the whole message behind the frames of
 * the one the responder is still dropping: keep a message well inside the
 * link's retry timeout (the scenario raises it; 20 ms of virtual time is
 * short for 1024 frames between two emulated machines on a busy host).
 */
#define PEER_BYTES (1 * MiB)

/*
 * The target: a p2pgpu BO, exported as a dma-buf and registered; the peer
 * writes it through our NIC (a responder: its faults answer RNR, the peer
 * retries).  Each round the GPU's copy engine checks VRAM, then the BO
 * moves (move_notify: our NIC fences).  In the storm the BO moves while
 * the peer's writes are in flight; the last write must then be intact.
 */
static int case_dmabuf_target(void)
{
	size_t n = PEER_BYTES;
	char *want = map_anon(n), *chk = map_anon(n);
	struct p2pgpu_alloc a = { .size = n };
	struct p2pgpu_export ex = { .fd = -1 };
	struct peer_info me = {}, peer;
	struct peer_msg m;
	struct ibv_mr *mg = NULL;
	long long dinv0 = hw_counter("drv_dmabuf_invalidations");
	int gpu = -1, sock = -1, ret = -1, moves = 0;
	bool have_bo = false;

	FAIL_IF(out, !gpu_path || !listen_port, "give --gpu and --listen");
	gpu = open(gpu_path, O_RDWR | O_CLOEXEC);
	FAIL_IF(out, gpu < 0 || !want || !chk, "%s: %s", gpu_path, strerror(errno));
	FAIL_IF(out, ioctl(gpu, P2PGPU_IOC_ALLOC, &a), "ALLOC: %s", strerror(errno));
	have_bo = true;
	ex.handle = a.handle;
	ex.flags = O_CLOEXEC | O_RDWR;
	FAIL_IF(out, ioctl(gpu, P2PGPU_IOC_EXPORT, &ex), "EXPORT: %s", strerror(errno));
	mg = ibv_reg_dmabuf_mr(pd, 0, n, 0x10000000, ex.fd, ACC_ALL);
	FAIL_IF(out, !mg, "reg_dmabuf_mr: %s", strerror(errno));
	sock = tcp_listen_accept(listen_port);
	FAIL_IF(out, sock < 0, "listen on %d: %s", listen_port, strerror(errno));
	me = (struct peer_info){ .lid = lid, .qpn = qp[0]->qp_num, .rkey = mg->rkey,
				 .addr = 0x10000000, .len = n };
	FAIL_IF(out, xfer(sock, &me, sizeof(me), true) || xfer(sock, &peer, sizeof(peer), false),
		"exchange: %s", strerror(errno));
	FAIL_IF(out, lab_qp_connect(qp[0], peer.qpn, peer.lid, -1, NULL), "connect: %s",
		strerror(errno));
	/* Our QP is in the device now: the peer may write. */
	m = (struct peer_msg){};
	FAIL_IF(out, xfer(sock, &m, sizeof(m), true), "peer went away");
	for (;;) {
		FAIL_IF(out, xfer(sock, &m, sizeof(m), false), "peer went away");
		if (m.round == UINT32_MAX)
			break;
		if (m.seed) {	/* the peer's write of this round completed */
			fill(want, n, m.seed);
			FAIL_IF(out, bo_copy_from(gpu, a.handle, 0, chk, n), "COPY: %s",
				strerror(errno));
			FAIL_IF(out, memcmp(want, chk, n), "round %u: VRAM differs from the "
				"peer's write (seed %u)", m.round, m.seed);
		}
		/* Move the BO, then let the peer go on (or, in the storm, go on
		 * moving it while the peer writes). */
		{
			struct p2pgpu_evict ev = { .handle = a.handle,
						   .op = moves % 2 ? P2PGPU_EVICT_APERTURE :
								     P2PGPU_EVICT_MOVE };

			FAIL_IF(out, ioctl(gpu, P2PGPU_IOC_EVICT, &ev), "EVICT: %s",
				strerror(errno));
			moves++;
		}
		FAIL_IF(out, xfer(sock, &m, sizeof(m), true), "peer went away");
	}
	FAIL_IF(out, hw_counter("drv_dmabuf_invalidations") - dinv0 < PEER_ROUNDS / 2,
		"%lld dma-buf fences for %d moves",
		hw_counter("drv_dmabuf_invalidations") - dinv0, moves);
	printf("# %d moves, %lld fences, %lld faults raised\n", moves,
	       hw_counter("drv_dmabuf_invalidations") - dinv0, hw_counter("odp_faults_raised"));
	ret = 0;
out:
	if (sock >= 0)
		close(sock);
	if (mg)
		ibv_dereg_mr(mg);
	if (ex.fd >= 0)
		close(ex.fd);
	if (have_bo) {
		struct p2pgpu_handle f = { .handle = a.handle };

		ioctl(gpu, P2PGPU_IOC_FREE, &f);
	}
	if (gpu >= 0)
		close(gpu);
	munmap(want, n);
	munmap(chk, n);
	return ret;
}

/* The initiator: RDMA WRITEs into the target's VRAM over the link. */
static int case_dmabuf_initiator(void)
{
	size_t n = PEER_BYTES;
	char *src = map_anon(n);
	struct peer_info me = {}, peer;
	struct peer_msg m;
	struct ibv_mr *ms = NULL;
	struct ibv_mr remote = {};
	int sock = -1, st, ret = -1;
	uint32_t r;

	FAIL_IF(out, !peer_host || !src, "give --connect HOST");
	ms = ibv_reg_mr(pd, src, n, ACC_ALL);
	FAIL_IF(out, !ms, "reg_mr: %s", strerror(errno));
	sock = tcp_connect(peer_host, tcp_port);
	FAIL_IF(out, sock < 0, "connect to %s:%d: %s", peer_host, tcp_port, strerror(errno));
	me = (struct peer_info){ .lid = lid, .qpn = qp[0]->qp_num };
	FAIL_IF(out, xfer(sock, &peer, sizeof(peer), false) || xfer(sock, &me, sizeof(me), true),
		"exchange: %s", strerror(errno));
	FAIL_IF(out, lab_qp_connect(qp[0], peer.qpn, peer.lid, -1, NULL), "connect: %s",
		strerror(errno));
	FAIL_IF(out, xfer(sock, &m, sizeof(m), false), "the target did not get ready");
	remote.rkey = peer.rkey;
	for (r = 0; r < PEER_ROUNDS; r++) {
		m = (struct peer_msg){ .round = r, .seed = 100 + r };
		fill(src, n, m.seed);
		st = rdma_sync(IBV_WR_RDMA_WRITE, ms, src, n, &remote, peer.addr);
		if (st < 0)
			goto out;
		FAIL_IF(out, st, "round %u: WRITE status %s", r, ibv_wc_status_str(st));
		FAIL_IF(out, xfer(sock, &m, sizeof(m), true) || xfer(sock, &m, sizeof(m), false),
			"target went away in round %u", r);
	}
	/* The storm: the target moves the BO while our writes fly. */
	for (r = 0; r < PEER_STORM; r++) {
		m = (struct peer_msg){ .round = PEER_ROUNDS + r, .seed = 0 };
		FAIL_IF(out, xfer(sock, &m, sizeof(m), true), "target went away");
		st = rdma_sync(IBV_WR_RDMA_WRITE, ms, src, n / 4, &remote, peer.addr + r % 4 * n / 4);
		if (st < 0)
			goto out;
		FAIL_IF(out, st, "storm write %u: status %s", r, ibv_wc_status_str(st));
		FAIL_IF(out, xfer(sock, &m, sizeof(m), false), "target went away");
	}
	m = (struct peer_msg){ .round = PEER_ROUNDS + PEER_STORM, .seed = 999 };
	fill(src, n, m.seed);
	st = rdma_sync(IBV_WR_RDMA_WRITE, ms, src, n, &remote, peer.addr);
	if (st < 0)
		goto out;
	FAIL_IF(out, st, "final WRITE: status %s", ibv_wc_status_str(st));
	FAIL_IF(out, xfer(sock, &m, sizeof(m), true) || xfer(sock, &m, sizeof(m), false),
		"the target did not confirm the final write");
	m.round = UINT32_MAX;
	FAIL_IF(out, xfer(sock, &m, sizeof(m), true), "target went away");
	ret = 0;
out:
	if (sock >= 0)
		close(sock);
	if (ms)
		ibv_dereg_mr(ms);
	munmap(src, n);
	return ret;
}

static const struct selftest_case cases[] = {
	{ "pinned", case_pinned, 0 },
	{ "odp", case_odp, 0 },
	{ "odp_unmapped", case_odp_unmapped, 0 },
	{ "odp_madvise_mprotect", case_odp_madvise_mprotect, 0 },
	{ "odp_invalidate", case_odp_invalidate, 0 },
	{ "prefetch", case_prefetch, 0 },
	{ "pd_check", case_pd_check, 0 },
	{ "qp_reset", case_qp_reset, 0 },
	{ "key_quarantine", case_key_quarantine, 0 },
	{ "dmabuf", case_dmabuf, 1 },
	{ "dmabuf_target", case_dmabuf_target, 1 },
	{ "dmabuf_initiator", case_dmabuf_initiator, 1 },
};

int main(int argc, char **argv)
{
	struct selftest t = { .tool = "odpnic-test", .cases = cases,
			      .ncases = sizeof(cases) / sizeof(cases[0]) };
	char extra[256];
	int i;

	setvbuf(stdout, NULL, _IOLBF, 0);
	page_size = sysconf(_SC_PAGESIZE);
	for (i = 1; i < argc; i += 2) {
		const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;

		if (v && !strcmp(a, "--dev"))
			dev_name = v;
		else if (v && !strcmp(a, "--gpu"))
			gpu_path = v;
		else if (v && !strcmp(a, "--connect"))
			peer_host = v;
		else if (v && !strcmp(a, "--listen"))
			listen_port = tcp_port = atoi(v);
		else if (v && !strcmp(a, "--port"))
			tcp_port = atoi(v);
		else if (v && !strcmp(a, "--only") && t.nonly < 32)
			t.only[t.nonly++] = v;
		else {
			fprintf(stderr, "usage: %s [--dev odpnicN] [--gpu /dev/p2pgpuN] "
				"[--listen PORT | --connect HOST [--port PORT]] "
				"[--only CASE]...\n", argv[0]);
			return 2;
		}
	}
	if (setup()) {
		printf("TAP version 13\n1..0\n# setup: %s\n", fail_msg);
		printf("{\"tool\":\"odpnic-test\",\"device\":\"%s\",\"error\":\"%s\",\"pass\":0,"
		       "\"fail\":1}\n", dev_name, fail_msg);
		return 1;
	}
	snprintf(extra, sizeof(extra), "\"device\":\"%s\",\"lid\":%u", dev_name, lid);
	return selftest_run(&t, extra);
}
