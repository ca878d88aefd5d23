// SPDX-License-Identifier: GPL-2.0
/*
 * odpnic: the Linux RDMA provider of the odp-nic device
 * (docs/devices/odp-nic.md); docs/drivers/odpnic.md explains the design.
 *
 * This file holds the PCI driver and the device-wide verbs: device, port,
 * GID and P_Key queries, user contexts and protection domains.
 *
 * Link layer: InfiniBand, without MAD services.  The device has no QP0/QP1,
 * no subnet manager and no addressing on its point-to-point link, so the
 * port advertises only the IB transport (RDMA_CORE_CAP_PROT_IB): the core
 * then starts no MAD agent, CM or SA client on it, and the verbs tools use
 * the LID the driver assigns (from the MAC), exchanged out of band.  RoCE
 * (rxe) would need a netdev and a GID table the device cannot back; iWARP
 * (siw) a TCP stream it does not carry.
 */
#include <linux/dma-mapping.h>
#include <linux/etherdevice.h>
#include <linux/io-64-nonatomic-lo-hi.h>
#include <linux/module.h>
#include <rdma/ib_umem_odp.h>

#include "odpnic_drv.h"

#define ODPNIC_ABI_VERSION	1

u32 odpnic_rd(struct odpnic_dev *dev, u32 reg)
{
	return readl(dev->regs + reg);
}

void odpnic_wr(struct odpnic_dev *dev, u32 reg, u32 val)
{
	writel(val, dev->regs + reg);
}

/* 64-bit registers are two 32-bit accesses, low half first. */
u64 odpnic_counter(struct odpnic_dev *dev, unsigned int index)
{
	return lo_hi_readq(dev->regs + ODP_NIC_REG_COUNTERS + 8 * index);
}

struct odpnic_pd {
	struct ib_pd ibpd;
};

struct odpnic_ucontext {
	struct ib_ucontext ibuc;
};

static int odpnic_query_device(struct ib_device *ibdev,
			       struct ib_device_attr *attr,
			       struct ib_udata *udata)
{
	struct odpnic_dev *dev = to_odev(ibdev);
	struct ib_odp_caps *odp = &attr->odp_caps;

	if (udata && udata->inlen && !ib_is_udata_cleared(udata, 0,
							  udata->inlen))
		return -EINVAL;
	memset(attr, 0, sizeof(*attr));
	attr->fw_ver = ODP_NIC_VERSION;
	attr->sys_image_guid = dev->guid;
	attr->max_mr_size = (u64)dev->max_xlt_pages << ODP_NIC_PAGE_SHIFT;
	attr->page_size_cap = SZ_4K;
	attr->vendor_id = ODP_NIC_VENDOR_ID;
	attr->vendor_part_id = ODP_NIC_DEVICE_ID;
	attr->hw_ver = dev->pdev->revision;
	attr->max_qp = dev->max_qps;
	attr->max_qp_wr = ODPNIC_MAX_WR;
	attr->max_send_sge = ODP_NIC_MAX_SGE;
	attr->max_recv_sge = ODP_NIC_MAX_SGE;
	attr->max_sge_rd = ODP_NIC_MAX_SGE;
	attr->max_cq = dev->max_cqs;
	attr->max_cqe = ODPNIC_CQ_DEPTH;
	attr->max_mr = dev->max_mrs;
	attr->max_pd = U16_MAX;
	/* A link QP has one message in flight (stop-and-wait). */
	attr->max_qp_rd_atom = 1;
	attr->max_qp_init_rd_atom = 1;
	attr->max_res_rd_atom = dev->max_qps;
	attr->atomic_cap = IB_ATOMIC_NONE;
	attr->max_pkeys = 1;
	attr->kernel_cap_flags = IBK_ON_DEMAND_PAGING;
	odp->general_caps = IB_ODP_SUPPORT;
	odp->per_transport_caps.rc_odp_caps = IB_ODP_SUPPORT_SEND |
		IB_ODP_SUPPORT_RECV | IB_ODP_SUPPORT_WRITE |
		IB_ODP_SUPPORT_READ;
	return 0;
}

static int odpnic_query_port(struct ib_device *ibdev, u32 port,
			     struct ib_port_attr *attr)
{
	struct odpnic_dev *dev = to_odev(ibdev);
	bool up = odpnic_rd(dev, ODP_NIC_REG_STATUS) & ODP_NIC_STATUS_LINK_UP;

	/* The caller has zeroed attr. */
	attr->state = up ? IB_PORT_ACTIVE : IB_PORT_DOWN;
	attr->phys_state = up ? IB_PORT_PHYS_STATE_LINK_UP :
				IB_PORT_PHYS_STATE_POLLING;
	attr->max_mtu = IB_MTU_4096;
	attr->active_mtu = IB_MTU_4096;
	attr->gid_tbl_len = 1;
	attr->pkey_tbl_len = 1;
	attr->lid = dev->lid;
	attr->max_msg_sz = ODP_NIC_MAX_WR_LEN;
	attr->max_vl_num = 1;
	/* The model has no line rate: claim the smallest, not a real one. */
	attr->active_width = IB_WIDTH_1X;
	attr->active_speed = IB_SPEED_SDR;
	return 0;
}

static int odpnic_get_port_immutable(struct ib_device *ibdev, u32 port,
				     struct ib_port_immutable *imm)
{
	imm->core_cap_flags = RDMA_CORE_CAP_PROT_IB;
	imm->gid_tbl_len = 1;
	imm->pkey_tbl_len = 1;
	imm->max_mad_size = 0;
	return 0;
}

static int odpnic_query_gid(struct ib_device *ibdev, u32 port, int index,
			    union ib_gid *gid)
{
	struct odpnic_dev *dev = to_odev(ibdev);

	if (index)
		return -EINVAL;
	gid->global.subnet_prefix = cpu_to_be64(0xfe80000000000000ULL);
	gid->global.interface_id = dev->guid;
	return 0;
}

static int odpnic_query_pkey(struct ib_device *ibdev, u32 port, u16 index,
			     u16 *pkey)
{
	if (index)
		return -EINVAL;
	*pkey = 0xffff;
	return 0;
}

static int odpnic_alloc_ucontext(struct ib_ucontext *uc,
				 struct ib_udata *udata)
{
	return 0;
}

static void odpnic_dealloc_ucontext(struct ib_ucontext *uc)
{
}

/*
 * Nothing of the device is mapped into user space, so a hot-unplug has
 * nothing to zap: the core destroys the objects through the usual verbs.
 */
static void odpnic_disassociate_ucontext(struct ib_ucontext *uc)
{
}

static int odpnic_alloc_pd(struct ib_pd *pd, struct ib_udata *udata)
{
	return 0;
}

static int odpnic_dealloc_pd(struct ib_pd *pd, struct ib_udata *udata)
{
	return 0;
}

static const struct ib_device_ops odpnic_dev_ops = {
	.owner = THIS_MODULE,
	.driver_id = RDMA_DRIVER_UNKNOWN,
	.uverbs_abi_ver = ODPNIC_ABI_VERSION,

	.query_device = odpnic_query_device,
	.query_port = odpnic_query_port,
	.get_port_immutable = odpnic_get_port_immutable,
	.query_gid = odpnic_query_gid,
	.query_pkey = odpnic_query_pkey,
	.alloc_ucontext = odpnic_alloc_ucontext,
	.dealloc_ucontext = odpnic_dealloc_ucontext,
	.disassociate_ucontext = odpnic_disassociate_ucontext,
	.alloc_pd = odpnic_alloc_pd,
	.dealloc_pd = odpnic_dealloc_pd,

	INIT_RDMA_OBJ_SIZE(ib_pd, odpnic_pd, ibpd),
	INIT_RDMA_OBJ_SIZE(ib_ucontext, odpnic_ucontext, ibuc),
	INIT_RDMA_OBJ_SIZE(ib_cq, odpnic_cq, ibcq),
	INIT_RDMA_OBJ_SIZE(ib_qp, odpnic_qp, ibqp),
};

static irqreturn_t odpnic_irq_cmd(int irq, void *data)
{
	odpnic_cmd_irq(data);
	return IRQ_HANDLED;
}

static void odpnic_free_irqs(struct odpnic_dev *dev, unsigned int n)
{
	while (n--) {
		void *ctx = n == ODP_NIC_VEC_CMD ? (void *)dev :
			    n == ODP_NIC_VEC_EQ ? (void *)dev :
			    (void *)&dev->vecs[n];

		free_irq(pci_irq_vector(dev->pdev, n), ctx);
	}
	pci_free_irq_vectors(dev->pdev);
}

static int odpnic_setup_irqs(struct odpnic_dev *dev)
{
	struct pci_dev *pdev = dev->pdev;
	unsigned int v;
	int ret;

	ret = pci_alloc_irq_vectors(pdev, ODP_NIC_MSIX_VECTORS,
				    ODP_NIC_MSIX_VECTORS, PCI_IRQ_MSIX);
	if (ret < 0)
		return ret;
	for (v = 0; v < ODP_NIC_MSIX_VECTORS; v++) {
		int irq = pci_irq_vector(pdev, v);

		dev->vecs[v].dev = dev;
		dev->vecs[v].vec = v;
		if (v == ODP_NIC_VEC_CMD)
			ret = request_irq(irq, odpnic_irq_cmd, 0, "odpnic-cmd",
					  dev);
		else if (v == ODP_NIC_VEC_EQ)
			ret = request_threaded_irq(irq, NULL, odpnic_eq_thread,
						   IRQF_ONESHOT, "odpnic-eq",
						   dev);
		else
			ret = request_irq(irq, odpnic_cq_irq, 0, "odpnic-cq",
					  &dev->vecs[v]);
		if (ret) {
			odpnic_free_irqs(dev, v);
			return ret;
		}
	}
	return 0;
}

/* LID and GUID from the MAC: stable across boots, distinct per NIC. */
static void odpnic_addresses(struct odpnic_dev *dev)
{
	u32 lo = odpnic_rd(dev, ODP_NIC_REG_MAC_LO);
	u32 hi = odpnic_rd(dev, ODP_NIC_REG_MAC_HI);
	u8 *m = dev->mac;
	u8 eui[8];

	m[0] = lo;
	m[1] = lo >> 8;
	m[2] = lo >> 16;
	m[3] = lo >> 24;
	m[4] = hi;
	m[5] = hi >> 8;
	/* Unicast LIDs are 1..0xbfff. */
	dev->lid = 1 + ((m[4] << 8) | m[5]) % 0xbffe;
	eui[0] = m[0] ^ 2;
	eui[1] = m[1];
	eui[2] = m[2];
	eui[3] = 0xff;
	eui[4] = 0xfe;
	eui[5] = m[3];
	eui[6] = m[4];
	eui[7] = m[5];
	memcpy(&dev->guid, eui, sizeof(eui));
}

static int odpnic_probe(struct pci_dev *pdev, const struct pci_device_id *id)
{
	struct odpnic_dev *dev;
	unsigned int i;
	int ret;

	dev = ib_alloc_device(odpnic_dev, ibdev);
	if (!dev)
		return -ENOMEM;
	dev->pdev = pdev;
	mutex_init(&dev->cmd_lock);
	init_waitqueue_head(&dev->cmd_wq);
	xa_init_flags(&dev->mrs, XA_FLAGS_ALLOC);
	xa_init_flags(&dev->qps, XA_FLAGS_ALLOC);
	xa_init_flags(&dev->cqs, XA_FLAGS_ALLOC);
	spin_lock_init(&dev->cq_vec_lock);
	for (i = 0; i < ODP_NIC_MSIX_VECTORS; i++)
		INIT_LIST_HEAD(&dev->cq_vec[i]);
	pci_set_drvdata(pdev, dev);

	ret = pci_enable_device_mem(pdev);
	if (ret)
		goto err_dealloc;
	ret = pci_request_regions(pdev, "odpnic");
	if (ret)
		goto err_disable;
	dev->regs = pci_iomap(pdev, ODP_NIC_REGS_BAR, ODP_NIC_REGS_SIZE);
	if (!dev->regs) {
		ret = -ENOMEM;
		goto err_regions;
	}
	if (odpnic_rd(dev, ODP_NIC_REG_MAGIC) != ODP_NIC_MAGIC ||
	    odpnic_rd(dev, ODP_NIC_REG_VERSION) != ODP_NIC_VERSION) {
		dev_err(&pdev->dev, "not an odp-nic of interface version %u\n",
			ODP_NIC_VERSION);
		ret = -ENODEV;
		goto err_unmap;
	}
	ret = dma_set_mask_and_coherent(&pdev->dev, DMA_BIT_MASK(64));
	if (ret)
		goto err_unmap;
	pci_set_master(pdev);
	/* Whatever a previous driver instance left in the device goes. */
	odpnic_wr(dev, ODP_NIC_REG_CTRL, ODP_NIC_CTRL_RESET);

	dev->max_mrs = odpnic_rd(dev, ODP_NIC_REG_MAX_MRS);
	dev->max_qps = odpnic_rd(dev, ODP_NIC_REG_MAX_QPS);
	dev->max_cqs = odpnic_rd(dev, ODP_NIC_REG_MAX_CQS);
	dev->max_xlt_pages = odpnic_rd(dev, ODP_NIC_REG_MAX_XLT_PAGES);
	if (!dev->max_mrs || !dev->max_qps || !dev->max_cqs ||
	    !dev->max_xlt_pages ||
	    odpnic_rd(dev, ODP_NIC_REG_MAX_LOG_Q) < ODPNIC_MAX_LOG_Q) {
		dev_err(&pdev->dev, "device limits out of range\n");
		ret = -ENODEV;
		goto err_unmap;
	}
	odpnic_addresses(dev);

	ret = odpnic_setup_irqs(dev);
	if (ret)
		goto err_unmap;
	ret = odpnic_cmdq_init(dev);
	if (ret)
		goto err_irqs;
	ret = odpnic_eq_init(dev);
	if (ret)
		goto err_cmdq;

	ib_set_device_ops(&dev->ibdev, &odpnic_dev_ops);
	ib_set_device_ops(&dev->ibdev, &odpnic_mr_ops);
	ib_set_device_ops(&dev->ibdev, &odpnic_cq_ops);
	ib_set_device_ops(&dev->ibdev, &odpnic_qp_ops);
	ib_set_device_ops(&dev->ibdev, &odpnic_stats_ops);
	/* The kernel data path is opt-in: its four commands. */
	dev->ibdev.uverbs_cmd_mask |= BIT_ULL(IB_USER_VERBS_CMD_POST_SEND) |
				      BIT_ULL(IB_USER_VERBS_CMD_POST_RECV) |
				      BIT_ULL(IB_USER_VERBS_CMD_POLL_CQ) |
				      BIT_ULL(IB_USER_VERBS_CMD_REQ_NOTIFY_CQ);
	dev->ibdev.node_type = RDMA_NODE_IB_CA;
	dev->ibdev.phys_port_cnt = 1;
	dev->ibdev.num_comp_vectors = ODP_NIC_MSIX_VECTORS -
				      ODP_NIC_VEC_CQ_FIRST;
	dev->ibdev.node_guid = dev->guid;
	dev->ibdev.dev.parent = &pdev->dev;
	strscpy(dev->ibdev.node_desc, "odp-nic", sizeof(dev->ibdev.node_desc));
	ret = ib_register_device(&dev->ibdev, "odpnic%d", &pdev->dev);
	if (ret)
		goto err_eq;
	dev_info(&pdev->dev, "%s: lid %u, mac %pM, %u keys, %u QPs, %u CQs\n",
		 dev_name(&dev->ibdev.dev), dev->lid, dev->mac, dev->max_mrs,
		 dev->max_qps, dev->max_cqs);
	return 0;

err_eq:
	odpnic_eq_fini(dev);
err_cmdq:
	odpnic_cmdq_fini(dev);
err_irqs:
	odpnic_free_irqs(dev, ODP_NIC_MSIX_VECTORS);
err_unmap:
	odpnic_wr(dev, ODP_NIC_REG_CTRL, ODP_NIC_CTRL_RESET);
	pci_clear_master(pdev);
	pci_iounmap(pdev, dev->regs);
err_regions:
	pci_release_regions(pdev);
err_disable:
	pci_disable_device(pdev);
err_dealloc:
	ib_dealloc_device(&dev->ibdev);
	return ret;
}

static void odpnic_remove(struct pci_dev *pdev)
{
	struct odpnic_dev *dev = pci_get_drvdata(pdev);

	/* Destroys every user object through our verbs first. */
	ib_unregister_device(&dev->ibdev);
	/*
	 * The event thread may still be resolving a fault (its RESUME needs the
	 * command queue): let it finish before the queues go.
	 */
	disable_irq(pci_irq_vector(pdev, ODP_NIC_VEC_EQ));
	odpnic_eq_fini(dev);
	odpnic_cmdq_fini(dev);
	odpnic_free_irqs(dev, ODP_NIC_MSIX_VECTORS);
	odpnic_wr(dev, ODP_NIC_REG_CTRL, ODP_NIC_CTRL_RESET);
	pci_clear_master(pdev);
	pci_iounmap(pdev, dev->regs);
	pci_release_regions(pdev);
	pci_disable_device(pdev);
	WARN_ON(!xa_empty(&dev->mrs) || !xa_empty(&dev->qps) ||
		!xa_empty(&dev->cqs));
	xa_destroy(&dev->mrs);
	xa_destroy(&dev->qps);
	xa_destroy(&dev->cqs);
	mutex_destroy(&dev->cmd_lock);
	ib_dealloc_device(&dev->ibdev);
}

static const struct pci_device_id odpnic_ids[] = {
	{ PCI_DEVICE(ODP_NIC_VENDOR_ID, ODP_NIC_DEVICE_ID) },
	{ }
};
MODULE_DEVICE_TABLE(pci, odpnic_ids);

static struct pci_driver odpnic_driver = {
	.name = "odpnic",
	.id_table = odpnic_ids,
	.probe = odpnic_probe,
	.remove = odpnic_remove,
};
module_pci_driver(odpnic_driver);

MODULE_DESCRIPTION("odp-nic: RDMA with On-Demand Paging, pinned and dma-buf regions");
MODULE_LICENSE("GPL");
