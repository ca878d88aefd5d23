// SPDX-License-Identifier: GPL-2.0
/*
 * odpnic: hardware counters for `rdma statistic`.
 *
 * The device's own counters (BAR0 0x100, docs/devices/odp-nic.md §7) come
 * first, under the names the device uses; the driver's follow.  A scenario
 * can then compare the two sides of one event: faults the device raised
 * against faults the driver handled, fences sent against fences executed.
 */
#include "odpnic_drv.h"

static const struct rdma_stat_desc odpnic_stat_descs[] = {
	[ODP_NIC_CNT_WRS] = { .name = "wrs" },
	[ODP_NIC_CNT_WR_ERRORS] = { .name = "wr_errors" },
	[ODP_NIC_CNT_BYTES] = { .name = "bytes" },
	[ODP_NIC_CNT_COMMANDS] = { .name = "commands" },
	[ODP_NIC_CNT_FAULTS_RAISED] = { .name = "odp_faults_raised" },
	[ODP_NIC_CNT_FAULTS_RESOLVED] = { .name = "odp_faults_resolved" },
	[ODP_NIC_CNT_FAULTS_FAILED] = { .name = "odp_faults_failed" },
	[ODP_NIC_CNT_INVALIDATIONS] = { .name = "invalidations" },
	[ODP_NIC_CNT_DMA_ERRORS] = { .name = "dma_errors" },
	[ODP_NIC_CNT_LINK_TX] = { .name = "link_tx" },
	[ODP_NIC_CNT_LINK_RX] = { .name = "link_rx" },
	[ODP_NIC_CNT_LINK_DROPPED] = { .name = "link_dropped" },
	[ODP_NIC_CNT_LINK_RETRIES] = { .name = "link_retries" },
	[ODP_NIC_CNT_EQ_OVERFLOWS] = { .name = "eq_overflows" },
	[ODP_NIC_CNT_CQ_OVERFLOWS] = { .name = "cq_overflows" },
	[ODP_NIC_CNT_NUM + ODPNIC_SW_FAULTS_HANDLED] = {
		.name = "drv_faults_handled" },
	[ODP_NIC_CNT_NUM + ODPNIC_SW_FAULT_ERRORS] = {
		.name = "drv_fault_errors" },
	[ODP_NIC_CNT_NUM + ODPNIC_SW_PAGES_MAPPED] = {
		.name = "drv_pages_mapped" },
	[ODP_NIC_CNT_NUM + ODPNIC_SW_ODP_INVALIDATIONS] = {
		.name = "drv_odp_invalidations" },
	[ODP_NIC_CNT_NUM + ODPNIC_SW_DMABUF_INVALIDATIONS] = {
		.name = "drv_dmabuf_invalidations" },
	[ODP_NIC_CNT_NUM + ODPNIC_SW_PREFETCHES] = {
		.name = "drv_prefetches" },
	[ODP_NIC_CNT_NUM + ODPNIC_SW_EQ_OVERFLOWS_SEEN] = {
		.name = "drv_cq_overflow_events" },
};

static_assert(ARRAY_SIZE(odpnic_stat_descs) ==
	      ODP_NIC_CNT_NUM + ODPNIC_SW_NUM);

static struct rdma_hw_stats *odpnic_alloc_port_stats(struct ib_device *ibdev,
						     u32 port)
{
	return rdma_alloc_hw_stats_struct(odpnic_stat_descs,
					  ARRAY_SIZE(odpnic_stat_descs),
					  RDMA_HW_STATS_DEFAULT_LIFESPAN);
}

static int odpnic_get_hw_stats(struct ib_device *ibdev,
			       struct rdma_hw_stats *stats, u32 port,
			       int index)
{
	struct odpnic_dev *dev = to_odev(ibdev);
	int i;

	for (i = 0; i < ODP_NIC_CNT_NUM; i++)
		stats->value[i] = odpnic_counter(dev, i);
	for (i = 0; i < ODPNIC_SW_NUM; i++)
		stats->value[ODP_NIC_CNT_NUM + i] = atomic64_read(&dev->sw[i]);
	return ARRAY_SIZE(odpnic_stat_descs);
}

const struct ib_device_ops odpnic_stats_ops = {
	.alloc_hw_port_stats = odpnic_alloc_port_stats,
	.get_hw_stats = odpnic_get_hw_stats,
};
