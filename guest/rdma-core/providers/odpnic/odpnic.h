/* SPDX-License-Identifier: GPL-2.0 OR Linux-OpenIB */
/*
 * Userspace provider for odp-nic, the emulated RDMA NIC with On-Demand
 * Paging of p2plab (docs/devices/odp-nic.md in the p2plab tree).
 *
 * The device checks no protection domains, so the kernel driver validates
 * every lkey and the whole data path (post send/recv, poll, notify) goes
 * through the uverbs write commands.  No command carries driver-specific
 * udata: this provider is a thin layer over the ibv_cmd_* helpers.
 */

#ifndef __ODPNIC_H__
#define __ODPNIC_H__

#include <infiniband/driver.h>

/* Must match qemu-devices/include/p2plab/odp_nic_hw.h. */
#define PCI_VENDOR_ID_ODPNIC	0x1234
#define PCI_DEVICE_ID_ODPNIC	0x0d1c

/* The kernel driver's uverbs_abi_ver. */
#define ODPNIC_UVERBS_ABI_VERSION	1

struct odpnic_device {
	struct verbs_device ibv_dev;
};

struct odpnic_context {
	struct verbs_context ibv_ctx;
};

static inline struct odpnic_context *to_octx(struct ibv_context *ibctx)
{
	return container_of(ibctx, struct odpnic_context, ibv_ctx.context);
}

static inline struct odpnic_device *to_odev(struct ibv_device *ibdev)
{
	return container_of(ibdev, struct odpnic_device, ibv_dev.device);
}

#endif /* __ODPNIC_H__ */
