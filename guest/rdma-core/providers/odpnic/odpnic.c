// SPDX-License-Identifier: GPL-2.0 OR Linux-OpenIB
/*
 * Userspace provider for p2plab's odp-nic (PCI 1234:0d1c), an emulated RDMA
 * NIC with On-Demand Paging.  See odpnic.h for why every verb, the data path
 * included, is a uverbs command without driver udata.
 */

#include <config.h>

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <infiniband/driver.h>
#include <infiniband/verbs.h>

#include "odpnic.h"

static void odpnic_free_context(struct ibv_context *ibctx);

static const struct verbs_match_ent hca_table[] = {
	/* The kernel registers RDMA_DRIVER_UNKNOWN: only the PCI ID can match. */
	VERBS_PCI_MATCH(PCI_VENDOR_ID_ODPNIC, PCI_DEVICE_ID_ODPNIC, NULL),
	{},
};

static int odpnic_query_device(struct ibv_context *context,
			       const struct ibv_query_device_ex_input *input,
			       struct ibv_device_attr_ex *attr,
			       size_t attr_size)
{
	struct ib_uverbs_ex_query_device_resp resp;
	size_t resp_size = sizeof(resp);
	uint64_t raw_fw_ver;
	unsigned int major, minor, sub_minor;
	int ret;

	/* Also serves ibv_query_device(): attr_size tells which caller. */
	ret = ibv_cmd_query_device_any(context, input, attr, attr_size, &resp,
				       &resp_size);
	if (ret)
		return ret;

	raw_fw_ver = resp.base.fw_ver;
	major = (raw_fw_ver >> 32) & 0xffff;
	minor = (raw_fw_ver >> 16) & 0xffff;
	sub_minor = raw_fw_ver & 0xffff;
	snprintf(attr->orig_attr.fw_ver, sizeof(attr->orig_attr.fw_ver),
		 "%u.%u.%u", major, minor, sub_minor);

	return 0;
}

static int odpnic_query_port(struct ibv_context *context, uint8_t port,
			     struct ibv_port_attr *attr)
{
	struct ibv_query_port cmd;

	return ibv_cmd_query_port(context, port, attr, &cmd, sizeof(cmd));
}

static struct ibv_pd *odpnic_alloc_pd(struct ibv_context *context)
{
	struct ib_uverbs_alloc_pd_resp resp;
	struct ibv_alloc_pd cmd;
	struct ibv_pd *pd;
	int ret;

	pd = calloc(1, sizeof(*pd));
	if (!pd)
		return NULL;

	ret = ibv_cmd_alloc_pd(context, pd, &cmd, sizeof(cmd), &resp,
			       sizeof(resp));
	if (ret) {
		free(pd);
		errno = ret;
		return NULL;
	}

	return pd;
}

static int odpnic_dealloc_pd(struct ibv_pd *pd)
{
	int ret;

	ret = ibv_cmd_dealloc_pd(pd);
	if (ret)
		return ret;

	free(pd);
	return 0;
}

/*
 * Pinned and On-Demand Paging regions alike: IBV_ACCESS_ON_DEMAND travels in
 * the access flags and the kernel driver picks the umem kind from it.
 */
static struct ibv_mr *odpnic_reg_mr(struct ibv_pd *pd, void *addr,
				    size_t length, uint64_t hca_va, int access)
{
	struct ib_uverbs_reg_mr_resp resp;
	struct ibv_reg_mr cmd;
	struct verbs_mr *vmr;
	int ret;

	vmr = calloc(1, sizeof(*vmr));
	if (!vmr)
		return NULL;

	ret = ibv_cmd_reg_mr(pd, addr, length, hca_va, access, vmr, &cmd,
			     sizeof(cmd), &resp, sizeof(resp));
	if (ret) {
		free(vmr);
		errno = ret;
		return NULL;
	}

	return &vmr->ibv_mr;
}

static struct ibv_mr *odpnic_reg_dmabuf_mr(struct ibv_pd *pd, uint64_t offset,
					   size_t length, uint64_t iova, int fd,
					   int access)
{
	struct verbs_mr *vmr;
	int ret;

	vmr = calloc(1, sizeof(*vmr));
	if (!vmr)
		return NULL;

	ret = ibv_cmd_reg_dmabuf_mr(pd, offset, length, iova, fd, access, vmr,
				    NULL);
	if (ret) {
		free(vmr);
		errno = ret;
		return NULL;
	}

	return &vmr->ibv_mr;
}

static int odpnic_dereg_mr(struct verbs_mr *vmr)
{
	int ret;

	ret = ibv_cmd_dereg_mr(vmr);
	if (ret)
		return ret;

	free(vmr);
	return 0;
}

static struct ibv_cq *odpnic_create_cq(struct ibv_context *context, int cqe,
				       struct ibv_comp_channel *channel,
				       int comp_vector)
{
	struct ib_uverbs_create_cq_resp resp;
	struct ibv_create_cq cmd;
	struct ibv_cq *cq;
	int ret;

	cq = calloc(1, sizeof(*cq));
	if (!cq)
		return NULL;

	ret = ibv_cmd_create_cq(context, cqe, channel, comp_vector, cq, &cmd,
				sizeof(cmd), &resp, sizeof(resp));
	if (ret) {
		free(cq);
		errno = ret;
		return NULL;
	}

	return cq;
}

static int odpnic_destroy_cq(struct ibv_cq *cq)
{
	int ret;

	ret = ibv_cmd_destroy_cq(cq);
	if (ret)
		return ret;

	free(cq);
	return 0;
}

static struct ibv_qp *odpnic_create_qp(struct ibv_pd *pd,
				       struct ibv_qp_init_attr *attr)
{
	struct ib_uverbs_create_qp_resp resp;
	struct ibv_create_qp cmd;
	struct ibv_qp *qp;
	int ret;

	/* QP type, SGE and depth limits are the kernel driver's to check. */
	qp = calloc(1, sizeof(*qp));
	if (!qp)
		return NULL;

	ret = ibv_cmd_create_qp(pd, qp, attr, &cmd, sizeof(cmd), &resp,
				sizeof(resp));
	if (ret) {
		free(qp);
		errno = ret;
		return NULL;
	}

	return qp;
}

static int odpnic_query_qp(struct ibv_qp *qp, struct ibv_qp_attr *attr,
			   int attr_mask, struct ibv_qp_init_attr *init_attr)
{
	struct ibv_query_qp cmd;

	return ibv_cmd_query_qp(qp, attr, attr_mask, init_attr, &cmd,
				sizeof(cmd));
}

static int odpnic_modify_qp(struct ibv_qp *qp, struct ibv_qp_attr *attr,
			    int attr_mask)
{
	struct ibv_modify_qp cmd;

	return ibv_cmd_modify_qp(qp, attr, attr_mask, &cmd, sizeof(cmd));
}

static int odpnic_destroy_qp(struct ibv_qp *qp)
{
	int ret;

	ret = ibv_cmd_destroy_qp(qp);
	if (ret)
		return ret;

	free(qp);
	return 0;
}

static const struct verbs_context_ops odpnic_ctx_ops = {
	.advise_mr = ibv_cmd_advise_mr,
	.alloc_pd = odpnic_alloc_pd,
	.create_cq = odpnic_create_cq,
	.create_qp = odpnic_create_qp,
	.dealloc_pd = odpnic_dealloc_pd,
	.dereg_mr = odpnic_dereg_mr,
	.destroy_cq = odpnic_destroy_cq,
	.destroy_qp = odpnic_destroy_qp,
	.free_context = odpnic_free_context,
	.modify_qp = odpnic_modify_qp,
	/* The data path: the kernel checks every lkey the device cannot. */
	.poll_cq = ibv_cmd_poll_cq,
	.post_recv = ibv_cmd_post_recv,
	.post_send = ibv_cmd_post_send,
	.query_device_ex = odpnic_query_device,
	.query_port = odpnic_query_port,
	.query_qp = odpnic_query_qp,
	.reg_dmabuf_mr = odpnic_reg_dmabuf_mr,
	.reg_mr = odpnic_reg_mr,
	.req_notify_cq = ibv_cmd_req_notify_cq,
};

static struct verbs_context *odpnic_alloc_context(struct ibv_device *ibdev,
						  int cmd_fd,
						  void *private_data)
{
	struct ib_uverbs_get_context_resp resp;
	struct odpnic_context *context;
	struct ibv_get_context cmd;

	context = verbs_init_and_alloc_context(ibdev, cmd_fd, context, ibv_ctx,
					       RDMA_DRIVER_UNKNOWN);
	if (!context)
		return NULL;

	if (ibv_cmd_get_context(&context->ibv_ctx, &cmd, sizeof(cmd), NULL,
				&resp, sizeof(resp)))
		goto err;

	verbs_set_ops(&context->ibv_ctx, &odpnic_ctx_ops);

	return &context->ibv_ctx;

err:
	verbs_uninit_context(&context->ibv_ctx);
	free(context);
	return NULL;
}

static void odpnic_free_context(struct ibv_context *ibctx)
{
	struct odpnic_context *context = to_octx(ibctx);

	verbs_uninit_context(&context->ibv_ctx);
	free(context);
}

static struct verbs_device *odpnic_device_alloc(struct verbs_sysfs_dev *unused)
{
	struct odpnic_device *dev;

	dev = calloc(1, sizeof(*dev));
	if (!dev)
		return NULL;

	return &dev->ibv_dev;
}

static void odpnic_uninit_device(struct verbs_device *verbs_device)
{
	free(to_odev(&verbs_device->device));
}

static const struct verbs_device_ops odpnic_dev_ops = {
	.name = "odpnic",
	.match_min_abi_version = ODPNIC_UVERBS_ABI_VERSION,
	.match_max_abi_version = ODPNIC_UVERBS_ABI_VERSION,
	.match_table = hca_table,
	.alloc_device = odpnic_device_alloc,
	.uninit_device = odpnic_uninit_device,
	.alloc_context = odpnic_alloc_context,
};
PROVIDER_DRIVER(odpnic, odpnic_dev_ops);
