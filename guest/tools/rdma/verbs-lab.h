/* SPDX-License-Identifier: GPL-2.0 */
/*
 * What our verbs tools (odpnic-test, odpnic-bench) share: opening a device
 * by name, connecting an RC QP, and reading the port's hw_counters fresh.
 *
 * Header-only, like ../lib/selftest.h: each tool is one program.
 */
#ifndef P2PLAB_VERBS_LAB_H
#define P2PLAB_VERBS_LAB_H

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <infiniband/verbs.h>

/* The device named @name, or NULL. */
static inline struct ibv_context *lab_open(const char *name)
{
	struct ibv_device **list = ibv_get_device_list(NULL);
	struct ibv_context *ctx = NULL;
	int i;

	for (i = 0; list && list[i]; i++)
		if (!strcmp(ibv_get_device_name(list[i]), name))
			ctx = ibv_open_device(list[i]);
	if (list)
		ibv_free_device_list(list);
	return ctx;
}

/*
 * The RDMA core caches hw_counters for their "lifespan" (10 ms by default):
 * make it 0, so every read asks the driver.  -1 when the port has no
 * hw_counters (rxe's differ from ours).
 */
static inline int lab_counters_uncached(const char *dev)
{
	char path[256];
	FILE *f;

	snprintf(path, sizeof(path), "/sys/class/infiniband/%s/ports/1/hw_counters/lifespan",
		 dev);
	f = fopen(path, "w");
	if (!f)
		return -1;
	return fputs("0\n", f) >= 0 && !fclose(f) ? 0 : -1;
}

/*
 * Counter @name of @dev's port, -1 if it has none.  Even uncached, the core
 * keeps a value for a jiffy: wait one out, so a read sees what just happened.
 */
static inline long long lab_hw_counter(const char *dev, const char *name)
{
	char path[256], buf[64];
	long long v = -1;
	FILE *f;

	usleep(20000);
	snprintf(path, sizeof(path), "/sys/class/infiniband/%s/ports/1/hw_counters/%s",
		 dev, name);
	f = fopen(path, "r");
	if (!f)
		return -1;
	if (fgets(buf, sizeof(buf), f))
		v = strtoll(buf, NULL, 0);
	fclose(f);
	return v;
}

/*
 * Take RC QP @q from RESET to RTS towards QP @dqpn: by LID on an IB port
 * (odpnic: our own LID is the device's loopback), by GID on RoCE (rxe:
 * @sgid_index >= 0, @dgid the destination).
 */
static inline int lab_qp_connect(struct ibv_qp *q, uint32_t dqpn, uint16_t dlid,
				 int sgid_index, const union ibv_gid *dgid)
{
	struct ibv_qp_attr a = {
		.qp_state = IBV_QPS_INIT,
		.port_num = 1,
		.qp_access_flags = IBV_ACCESS_REMOTE_WRITE | IBV_ACCESS_REMOTE_READ,
	};

	if (ibv_modify_qp(q, &a, IBV_QP_STATE | IBV_QP_PKEY_INDEX | IBV_QP_PORT |
			  IBV_QP_ACCESS_FLAGS))
		return -1;
	memset(&a, 0, sizeof(a));
	a.qp_state = IBV_QPS_RTR;
	a.path_mtu = IBV_MTU_4096;
	a.dest_qp_num = dqpn;
	a.max_dest_rd_atomic = 1;
	a.min_rnr_timer = 1;
	a.ah_attr.dlid = dlid;
	a.ah_attr.port_num = 1;
	if (sgid_index >= 0) {
		a.ah_attr.is_global = 1;
		a.ah_attr.grh.dgid = *dgid;
		a.ah_attr.grh.sgid_index = sgid_index;
		a.ah_attr.grh.hop_limit = 1;
	}
	if (ibv_modify_qp(q, &a, IBV_QP_STATE | IBV_QP_AV | IBV_QP_PATH_MTU |
			  IBV_QP_DEST_QPN | IBV_QP_RQ_PSN | IBV_QP_MAX_DEST_RD_ATOMIC |
			  IBV_QP_MIN_RNR_TIMER))
		return -1;
	memset(&a, 0, sizeof(a));
	a.qp_state = IBV_QPS_RTS;
	a.timeout = 14;
	a.retry_cnt = 7;
	a.rnr_retry = 7;
	a.max_rd_atomic = 1;
	return ibv_modify_qp(q, &a, IBV_QP_STATE | IBV_QP_TIMEOUT | IBV_QP_RETRY_CNT |
			     IBV_QP_RNR_RETRY | IBV_QP_SQ_PSN | IBV_QP_MAX_QP_RD_ATOMIC);
}

#endif /* P2PLAB_VERBS_LAB_H */
