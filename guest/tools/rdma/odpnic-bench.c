// SPDX-License-Identifier: GPL-2.0
/*
 * odpnic-bench: the ODP page-fault round trip through the real driver.
 *
 * Two RC QPs of one NIC in loopback.  Each sample zaps one page of an ODP
 * destination (MADV_DONTNEED: the notifier fences it out of the NIC), then
 * times one 4 KiB RDMA WRITE into it, from post to completion: the device
 * fetches the WQE, faults, the driver's event thread runs hmm_range_fault(),
 * UPDATE_XLT and RESUME, the device finishes the copy.  The same WRITE into
 * a present page is the baseline, measured in the same run.  A burst of
 * writes into freshly zapped pages gives faults per second.  Every write's
 * bytes are checked, and the device's fault counter must have moved by the
 * number of faults measured (odpnic; other providers, such as rxe with
 * --gid-index, count theirs elsewhere: -1).  Prints one JSON line.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <inttypes.h>
#include <stdbool.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#include <infiniband/verbs.h>

#include "../lib/selftest.h"
#include "verbs-lab.h"

#define ACC_ALL (IBV_ACCESS_LOCAL_WRITE | IBV_ACCESS_REMOTE_WRITE | IBV_ACCESS_REMOTE_READ)
#define PAGE 4096

static struct ibv_context *ctx;
static struct ibv_pd *pd;
static struct ibv_cq *cq;
static struct ibv_qp *qp[2];
static const char *dev_name = "odpnic0";

static double now_us(void)
{
	struct timespec t;

	clock_gettime(CLOCK_MONOTONIC, &t);
	return t.tv_sec * 1e6 + t.tv_nsec / 1e3;
}

static long long hw_counter(const char *name)
{
	return lab_hw_counter(dev_name, name);
}

/* RoCE (rxe) addresses by GID; odpnic's IB port by LID. */
static int gid_index = -1;
static union ibv_gid gid;

static int setup(void)
{
	struct ibv_port_attr port;
	int i;

	ctx = lab_open(dev_name);
	CHECK(ctx, "no RDMA device %s", dev_name);
	CHECK(!ibv_query_port(ctx, 1, &port), "query_port: %s", strerror(errno));
	if (gid_index >= 0)
		CHECK(!ibv_query_gid(ctx, 1, gid_index, &gid), "query_gid: %s", strerror(errno));
	/* Not every provider has hw_counters (rxe's differ). */
	lab_counters_uncached(dev_name);
	pd = ibv_alloc_pd(ctx);
	cq = ibv_create_cq(ctx, 4096, NULL, NULL, 0);
	CHECK(pd && cq, "PD/CQ: %s", strerror(errno));
	for (i = 0; i < 2; i++) {
		struct ibv_qp_init_attr ia = {
			.send_cq = cq, .recv_cq = cq, .qp_type = IBV_QPT_RC, .sq_sig_all = 1,
			.cap = { .max_send_wr = 1024, .max_recv_wr = 1, .max_send_sge = 1,
				 .max_recv_sge = 1 },
		};

		qp[i] = ibv_create_qp(pd, &ia);
		CHECK(qp[i], "create_qp: %s", strerror(errno));
	}
	CHECK(!lab_qp_connect(qp[0], qp[1]->qp_num, port.lid, gid_index, &gid) &&
	      !lab_qp_connect(qp[1], qp[0]->qp_num, port.lid, gid_index, &gid),
	      "connect: %s", strerror(errno));
	return 0;
}

static int post_write(struct ibv_mr *ms, char *src, struct ibv_mr *md, char *dst, uint64_t id)
{
	struct ibv_sge sge = { .addr = (uintptr_t)src, .length = PAGE, .lkey = ms->lkey };
	struct ibv_send_wr wr = { .wr_id = id, .sg_list = &sge, .num_sge = 1,
				  .opcode = IBV_WR_RDMA_WRITE, .send_flags = IBV_SEND_SIGNALED,
				  .wr.rdma = { .remote_addr = (uintptr_t)dst, .rkey = md->rkey } },
			   *bad;

	return ibv_post_send(qp[0], &wr, &bad);
}

/* Wait for @n completions, all successful; -1 after 30 s. */
static int reap(int n)
{
	struct ibv_wc wc[64];
	double t0 = now_us();

	while (n > 0) {
		int got = ibv_poll_cq(cq, n < 64 ? n : 64, wc);

		CHECK(got >= 0, "poll_cq: %d", got);
		for (int i = 0; i < got; i++)
			CHECK(wc[i].status == IBV_WC_SUCCESS, "wr %" PRIu64 ": %s",
			      (uint64_t)wc[i].wr_id, ibv_wc_status_str(wc[i].status));
		n -= got;
		CHECK(now_us() - t0 < 30e6, "%d completions missing after 30 s", n);
	}
	return 0;
}

static int cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;

	return x < y ? -1 : x > y;
}

static double pct(double *v, int n, double p)
{
	int i = (int)(p * (n - 1) + 0.5);

	return v[i < n ? i : n - 1];
}

int main(int argc, char **argv)
{
	int samples = 200, burst = 512, i;
	double *fault, *present, t0, burst_us;
	char *src, *dst;
	struct ibv_mr *ms, *md;
	long long f0, f1, fb;

	for (i = 1; i + 1 < argc; i += 2) {
		if (!strcmp(argv[i], "--samples"))
			samples = atoi(argv[i + 1]);
		else if (!strcmp(argv[i], "--burst"))
			burst = atoi(argv[i + 1]);
		else if (!strcmp(argv[i], "--dev"))
			dev_name = argv[i + 1];
		else if (!strcmp(argv[i], "--gid-index"))
			gid_index = atoi(argv[i + 1]);
	}
	if (samples < 10 || burst < 1 || burst > 1024 || i != argc) {
		fprintf(stderr, "usage: %s [--dev NAME] [--gid-index N (RoCE)] [--samples N>=10] "
			"[--burst 1..1024]\n",
			argv[0]);
		return 2;
	}
	if (setup()) {
		printf("{\"tool\":\"odpnic-bench\",\"error\":\"%s\"}\n", fail_msg);
		return 1;
	}
	fault = calloc(samples, sizeof(double));
	present = calloc(samples, sizeof(double));
	src = mmap(NULL, PAGE * 2, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	dst = mmap(NULL, (size_t)PAGE * burst, PROT_READ | PROT_WRITE,
		   MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (!fault || !present || src == MAP_FAILED || dst == MAP_FAILED) {
		printf("{\"tool\":\"odpnic-bench\",\"error\":\"out of memory\"}\n");
		return 1;
	}
	ms = ibv_reg_mr(pd, src, PAGE * 2, ACC_ALL);
	md = ibv_reg_mr(pd, dst, (size_t)PAGE * burst, ACC_ALL | IBV_ACCESS_ON_DEMAND);
	if (!ms || !md) {
		printf("{\"tool\":\"odpnic-bench\",\"error\":\"reg_mr: %s\"}\n", strerror(errno));
		return 1;
	}

	/* One page, faulted in and out: the round trip, and its baseline. */
	f0 = hw_counter("odp_faults_raised");
	for (i = 0; i < samples; i++) {
		fill(src, PAGE, i + 1);
		madvise(dst, PAGE, MADV_DONTNEED);
		t0 = now_us();
		if (post_write(ms, src, md, dst, i) || reap(1))
			goto fail;
		fault[i] = now_us() - t0;
		if (memcmp(src, dst, PAGE)) {
			snprintf(fail_msg, sizeof(fail_msg), "sample %d: bytes differ", i);
			goto fail;
		}
		fill(src, PAGE, ~i);
		t0 = now_us();
		if (post_write(ms, src, md, dst, i) || reap(1))
			goto fail;
		present[i] = now_us() - t0;
		if (memcmp(src, dst, PAGE)) {
			snprintf(fail_msg, sizeof(fail_msg), "sample %d: bytes differ", i);
			goto fail;
		}
	}
	f1 = hw_counter("odp_faults_raised");
	if (f0 >= 0 && f1 - f0 < samples) {
		snprintf(fail_msg, sizeof(fail_msg), "%lld faults for %d faulting writes",
			 f1 - f0, samples);
		goto fail;
	}

	/* Faults per second: a burst of writes into @burst zapped pages. */
	fill(src, PAGE, 77);
	madvise(dst, (size_t)PAGE * burst, MADV_DONTNEED);
	t0 = now_us();
	for (i = 0; i < burst; i++)
		if (post_write(ms, src, md, dst + (size_t)i * PAGE, i))
			goto fail;
	if (reap(burst))
		goto fail;
	burst_us = now_us() - t0;
	for (i = 0; i < burst; i++)
		if (memcmp(src, dst + (size_t)i * PAGE, PAGE)) {
			snprintf(fail_msg, sizeof(fail_msg), "burst page %d: bytes differ", i);
			goto fail;
		}
	fb = f0 >= 0 ? hw_counter("odp_faults_raised") - f1 : -1;

	qsort(fault, samples, sizeof(double), cmp_double);
	qsort(present, samples, sizeof(double), cmp_double);
	{
		char faults[64] = "null", fps[64] = "null";

		if (fb >= 0) {
			snprintf(faults, sizeof(faults), "%lld", fb);
			snprintf(fps, sizeof(fps), "%.0f", fb * 1e6 / burst_us);
		}
		printf("{\"tool\":\"odpnic-bench\",\"device\":\"%s\",\"samples\":%d,"
		       "\"fault_us\":{\"p50\":%.1f,\"p99\":%.1f,\"max\":%.1f},"
		       "\"present_us\":{\"p50\":%.1f,\"p99\":%.1f,\"max\":%.1f},"
		       "\"faults_counted\":%lld,\"burst_pages\":%d,\"burst_faults\":%s,"
		       "\"burst_us\":%.0f,\"faults_per_s\":%s,\"pages_per_s\":%.0f}\n",
		       dev_name, samples, pct(fault, samples, .5), pct(fault, samples, .99),
		       fault[samples - 1], pct(present, samples, .5), pct(present, samples, .99),
		       present[samples - 1], f0 >= 0 ? f1 - f0 : -1, burst, faults, burst_us,
		       fps, burst * 1e6 / burst_us);
	}
	return 0;
fail:
	printf("{\"tool\":\"odpnic-bench\",\"error\":\"%s\"}\n", fail_msg);
	return 1;
}
