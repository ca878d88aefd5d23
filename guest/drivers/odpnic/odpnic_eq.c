// SPDX-License-Identifier: GPL-2.0
/*
 * odpnic: the event queue, and the page faults it carries.
 *
 * Faults are resolved in the threaded handler of the EQ vector, one after
 * the other.  Resolving one sleeps (hmm_range_fault, a dma-buf fence, two
 * commands), and the device stalls only the faulting queue, so a fault
 * never waits for an interrupt of its own vector.  A fault that cannot be
 * resolved ends its work request with an error completion instead of
 * leaving the queue stalled: RESUME with an error status.
 */
#include <linux/dma-mapping.h>

#include "odpnic_drv.h"

int odpnic_eq_init(struct odpnic_dev *dev)
{
	struct odp_nic_cmd cmd = { .opcode = ODP_NIC_CMD_CREATE_EQ };
	size_t size = sizeof(*dev->eq) << ODPNIC_EQ_LOG;
	int ret;

	dev->eq = dma_alloc_coherent(&dev->pdev->dev, size, &dev->eq_dma,
				     GFP_KERNEL);
	if (!dev->eq)
		return -ENOMEM;
	dev->eq_ci = 0;
	cmd.u.create_cq.num = 0;
	cmd.u.create_cq.log_size = ODPNIC_EQ_LOG;
	cmd.u.create_cq.vector = ODP_NIC_VEC_EQ;
	cmd.u.create_cq.base = dev->eq_dma;
	ret = odpnic_cmd(dev, &cmd, NULL);
	if (ret) {
		dma_free_coherent(&dev->pdev->dev, size, dev->eq, dev->eq_dma);
		dev->eq = NULL;
	}
	return ret;
}

void odpnic_eq_fini(struct odpnic_dev *dev)
{
	if (!dev->eq)
		return;
	odpnic_cmd_num(dev, ODP_NIC_CMD_DESTROY_EQ, 0);
	dma_free_coherent(&dev->pdev->dev, sizeof(*dev->eq) << ODPNIC_EQ_LOG,
			  dev->eq, dev->eq_dma);
	dev->eq = NULL;
}

static void odpnic_page_fault(struct odpnic_dev *dev,
			      const struct odp_nic_eqe *eqe)
{
	bool write = eqe->access & ODP_NIC_FAULT_WRITE;
	bool queue = eqe->qpn != ODP_NIC_QPN_NONE;
	struct odpnic_mr *mr;
	int ret = -ENOENT;

	ODPNIC_SW_INC(dev, FAULTS_HANDLED);
	mr = odpnic_mr_get(dev, eqe->key);
	if (mr) {
		switch (mr->kind) {
		case ODPNIC_MR_ODP:
			/*
			 * A stalled queue needs the pages in front of it; a
			 * responder or a prefetch fault names its whole range.
			 */
			ret = odpnic_odp_resolve(mr, eqe->va, eqe->length,
						 write, queue ?
						 ODPNIC_FAULT_PAGES : U64_MAX);
			break;
		case ODPNIC_MR_DMABUF:
			ret = odpnic_dmabuf_map(mr);
			break;
		default:
			/* The device never faults on a pinned region. */
			ret = -EPROTO;
		}
		odpnic_mr_put(mr);
	}
	if (ret) {
		ODPNIC_SW_INC(dev, FAULT_ERRORS);
		dev_dbg(&dev->pdev->dev,
			"fault key %u va %#llx len %u qpn %#x: %d\n", eqe->key,
			eqe->va, eqe->length, eqe->qpn, ret);
	}
	if (queue) {
		int r = odpnic_cmd_resume(dev, eqe->qpn, !ret);

		/* The queue may have been destroyed since it stalled. */
		if (r && r != -EALREADY && r != -ENOENT)
			dev_warn_ratelimited(&dev->pdev->dev,
					     "RESUME of QP %u: %d\n",
					     eqe->qpn, r);
	}
}

static void odpnic_event(struct odpnic_dev *dev, const struct odp_nic_eqe *eqe)
{
	switch (eqe->type) {
	case ODP_NIC_EV_PAGE_FAULT:
		odpnic_page_fault(dev, eqe);
		break;
	case ODP_NIC_EV_CQ_OVERFLOW: {
		struct odpnic_cq *cq;
		struct ib_event ev = { .event = IB_EVENT_CQ_ERR };

		ODPNIC_SW_INC(dev, EQ_OVERFLOWS_SEEN);
		xa_lock(&dev->cqs);
		cq = xa_load(&dev->cqs, eqe->qpn);
		if (cq && cq->ibcq.event_handler) {
			ev.device = &dev->ibdev;
			ev.element.cq = &cq->ibcq;
			cq->ibcq.event_handler(&ev, cq->ibcq.cq_context);
		}
		xa_unlock(&dev->cqs);
		dev_err_ratelimited(&dev->pdev->dev, "CQ %u overflowed\n",
				    eqe->qpn);
		break;
	}
	case ODP_NIC_EV_FATAL: {
		struct ib_event ev = { .event = IB_EVENT_DEVICE_FATAL,
				       .device = &dev->ibdev };

		dev_err(&dev->pdev->dev, "the device reports a fatal error\n");
		/* A command in flight will not complete: let it see FATAL now. */
		wake_up(&dev->cmd_wq);
		ib_dispatch_event(&ev);
		break;
	}
	default:
		dev_warn_ratelimited(&dev->pdev->dev, "unknown event %u\n",
				     eqe->type);
	}
}

irqreturn_t odpnic_eq_thread(int irq, void *data)
{
	struct odpnic_dev *dev = data;
	u32 mask = (1u << ODPNIC_EQ_LOG) - 1;

	for (;;) {
		struct odp_nic_eqe *slot = &dev->eq[dev->eq_ci & mask];
		u8 phase = !((dev->eq_ci >> ODPNIC_EQ_LOG) & 1);
		struct odp_nic_eqe eqe;

		if (READ_ONCE(slot->owner) != phase)
			break;
		dma_rmb();
		eqe = *slot;
		/* Give the slot back before the (slow) handling. */
		dev->eq_ci++;
		odpnic_wr(dev, ODP_NIC_DB_EQ, dev->eq_ci);
		odpnic_event(dev, &eqe);
	}
	/* An event handled by the previous run still raised this one. */
	return IRQ_HANDLED;
}
