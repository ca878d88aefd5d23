// SPDX-License-Identifier: GPL-2.0
/*
 * odpnic: completion queues.
 *
 * The device writes a CQE for every work request, signalled or not, so the
 * device ring is always the largest one (4096 entries) and a CQ takes QPs
 * only while their queue depths fit in it: a full ring loses completions.
 * poll_cq reports what the verbs caller asked for (errors always, successes
 * of unsignalled sends never) and retires send-queue slots as it goes.
 */
#include <linux/dma-mapping.h>
#include <rdma/uverbs_ioctl.h>

#include "odpnic_drv.h"

static void odpnic_cq_vec_add(struct odpnic_cq *cq)
{
	struct odpnic_dev *dev = cq->dev;

	spin_lock_irq(&dev->cq_vec_lock);
	list_add_tail(&cq->vec_node, &dev->cq_vec[cq->vector]);
	spin_unlock_irq(&dev->cq_vec_lock);
}

static void odpnic_cq_vec_del(struct odpnic_cq *cq)
{
	struct odpnic_dev *dev = cq->dev;

	spin_lock_irq(&dev->cq_vec_lock);
	list_del(&cq->vec_node);
	spin_unlock_irq(&dev->cq_vec_lock);
}

static int odpnic_create_cq(struct ib_cq *ibcq,
			    const struct ib_cq_init_attr *attr,
			    struct uverbs_attr_bundle *attrs)
{
	struct odpnic_dev *dev = to_odev(ibcq->device);
	struct odpnic_cq *cq = to_ocq(ibcq);
	struct odp_nic_cmd cmd = { .opcode = ODP_NIC_CMD_CREATE_CQ };
	int ret;

	if (attr->flags)
		return -EOPNOTSUPP;
	if (!attr->cqe || attr->cqe > ODPNIC_CQ_DEPTH)
		return -EINVAL;
	cq->dev = dev;
	spin_lock_init(&cq->lock);
	INIT_LIST_HEAD(&cq->flush_list);
	atomic_set(&cq->armed, 0);
	cq->ring = dma_alloc_coherent(&dev->pdev->dev,
				      sizeof(*cq->ring) * ODPNIC_CQ_DEPTH,
				      &cq->ring_dma, GFP_KERNEL);
	if (!cq->ring)
		return -ENOMEM;
	ret = xa_alloc_cyclic(&dev->cqs, &cq->cqn, NULL,
			      XA_LIMIT(0, dev->max_cqs - 1), &dev->next_cqn,
			      GFP_KERNEL);
	if (ret < 0) {
		ret = ret == -EBUSY ? -ENOSPC : ret;
		goto err_ring;
	}
	/* Spread CQs over the completion vectors; comp_vector picks one. */
	cq->vector = ODP_NIC_VEC_CQ_FIRST +
		     (attr->comp_vector + cq->cqn) %
		     (ODP_NIC_MSIX_VECTORS - ODP_NIC_VEC_CQ_FIRST);
	cmd.u.create_cq.num = cq->cqn;
	cmd.u.create_cq.log_size = ODPNIC_CQ_LOG;
	cmd.u.create_cq.vector = cq->vector;
	cmd.u.create_cq.base = cq->ring_dma;
	ret = odpnic_cmd(dev, &cmd, NULL);
	if (ret)
		goto err_xa;
	cq->ibcq.cqe = attr->cqe;
	xa_store(&dev->cqs, cq->cqn, cq, GFP_KERNEL);
	odpnic_cq_vec_add(cq);
	return 0;

err_xa:
	xa_erase(&dev->cqs, cq->cqn);
err_ring:
	dma_free_coherent(&dev->pdev->dev, sizeof(*cq->ring) * ODPNIC_CQ_DEPTH,
			  cq->ring, cq->ring_dma);
	return ret;
}

static int odpnic_destroy_cq(struct ib_cq *ibcq, struct ib_udata *udata)
{
	struct odpnic_cq *cq = to_ocq(ibcq);
	struct odpnic_dev *dev = cq->dev;
	int ret;

	ret = odpnic_cmd_num(dev, ODP_NIC_CMD_DESTROY_CQ, cq->cqn);
	/* The core destroys QPs first; a dead device has let go already. */
	WARN_ON(ret == -EBUSY);
	odpnic_cq_vec_del(cq);
	xa_erase(&dev->cqs, cq->cqn);
	dma_free_coherent(&dev->pdev->dev, sizeof(*cq->ring) * ODPNIC_CQ_DEPTH,
			  cq->ring, cq->ring_dma);
	return 0;
}

static enum ib_wc_status odpnic_wc_status(u8 status)
{
	switch (status) {
	case ODP_NIC_WC_SUCCESS:
		return IB_WC_SUCCESS;
	case ODP_NIC_WC_LOC_LEN_ERR:
		return IB_WC_LOC_LEN_ERR;
	case ODP_NIC_WC_LOC_PROT_ERR:
		return IB_WC_LOC_PROT_ERR;
	case ODP_NIC_WC_REM_ACCESS_ERR:
		return IB_WC_REM_ACCESS_ERR;
	case ODP_NIC_WC_BAD_WR:
		return IB_WC_LOC_QP_OP_ERR;
	case ODP_NIC_WC_DMA_ERR:
		return IB_WC_LOC_PROT_ERR;
	case ODP_NIC_WC_FAULT_ABORT:
		/* The page fault could not be resolved: a bad local access. */
		return IB_WC_LOC_ACCESS_ERR;
	case ODP_NIC_WC_RNR_RETRY_EXC:
		return IB_WC_RNR_RETRY_EXC_ERR;
	case ODP_NIC_WC_RETRY_EXC:
		return IB_WC_RETRY_EXC_ERR;
	case ODP_NIC_WC_REM_OP_ERR:
		return IB_WC_REM_OP_ERR;
	case ODP_NIC_WC_FLUSH:
		return IB_WC_WR_FLUSH_ERR;
	default:
		return IB_WC_GENERAL_ERR;
	}
}

static enum ib_wc_opcode odpnic_wc_opcode(u8 opcode)
{
	switch (opcode) {
	case ODP_NIC_WR_RDMA_WRITE:
		return IB_WC_RDMA_WRITE;
	case ODP_NIC_WR_RDMA_READ:
		return IB_WC_RDMA_READ;
	case ODP_NIC_WR_RECV:
		return IB_WC_RECV;
	default:
		return IB_WC_SEND;
	}
}

/*
 * One device CQE.  Returns true when it becomes a work completion; unknown
 * QPs (destroyed since) and unsignalled successes are consumed silently.
 */
static bool odpnic_cqe_to_wc(struct odpnic_cq *cq,
			     const struct odp_nic_cqe *cqe, struct ib_wc *wc)
{
	struct odpnic_qp *qp = xa_load(&cq->dev->qps, cqe->qpn);
	bool recv = cqe->opcode == ODP_NIC_WR_RECV;
	bool report = true;

	if (!qp)
		return false;
	if (recv) {
		spin_lock(&qp->rq_lock);
		if (qp->rq.ci != qp->rq.pi)
			odpnic_wq_unhold(&qp->rq,
					 qp->rq.ci++ & ((1u << qp->rq.log) - 1));
		spin_unlock(&qp->rq_lock);
	} else {
		u32 slot;

		spin_lock(&qp->sq_lock);
		slot = qp->sq.ci & ((1u << qp->sq.log) - 1);
		if (qp->sq.ci != qp->sq.pi) {
			qp->sq.ci++;
			odpnic_wq_unhold(&qp->sq, slot);
		}
		report = qp->sq.signaled[slot] ||
			 cqe->status != ODP_NIC_WC_SUCCESS;
		spin_unlock(&qp->sq_lock);
	}
	if (!report)
		return false;
	memset(wc, 0, sizeof(*wc));
	wc->wr_id = cqe->wr_id;
	wc->status = odpnic_wc_status(cqe->status);
	wc->opcode = odpnic_wc_opcode(cqe->opcode);
	wc->byte_len = cqe->byte_len;
	wc->qp = &qp->ibqp;
	wc->src_qp = qp->remote_qpn;
	wc->port_num = ODPNIC_PORT;
	/* The wire carries imm with every SEND; 0 is "none". */
	if (recv && cqe->imm) {
		wc->ex.imm_data = cpu_to_be32(cqe->imm);
		wc->wc_flags |= IB_WC_WITH_IMM;
	}
	if (wc->status != IB_WC_SUCCESS)
		wc->vendor_err = cqe->status;
	return true;
}

/* Flush completions for the outstanding WRs of QPs in the error state. */
static int odpnic_poll_flush(struct odpnic_cq *cq, int n, struct ib_wc *wc)
{
	int done = 0;

	while (done < n && !list_empty(&cq->flush_list)) {
		struct odpnic_flush *fl = list_first_entry(&cq->flush_list,
							   struct odpnic_flush,
							   node);
		struct odpnic_qp *qp = fl->qp;
		struct odpnic_wq *wq = fl->send ? &qp->sq : &qp->rq;
		spinlock_t *lock = fl->send ? &qp->sq_lock : &qp->rq_lock;
		struct odp_nic_wqe *wqe;

		spin_lock(lock);
		if (wq->ci == wq->pi) {
			list_del_init(&fl->node);
			spin_unlock(lock);
			continue;
		}
		wqe = wq->ring + (wq->ci & ((1u << wq->log) - 1)) * sizeof(*wqe);
		odpnic_wq_unhold(wq, wq->ci & ((1u << wq->log) - 1));
		wq->ci++;
		spin_unlock(lock);
		memset(&wc[done], 0, sizeof(*wc));
		wc[done].wr_id = wqe->wr_id;
		wc[done].status = IB_WC_WR_FLUSH_ERR;
		wc[done].opcode = fl->send ? odpnic_wc_opcode(wqe->opcode) :
					     IB_WC_RECV;
		wc[done].qp = &qp->ibqp;
		done++;
	}
	return done;
}

static int odpnic_poll_cq(struct ib_cq *ibcq, int num_entries,
			  struct ib_wc *wc)
{
	struct odpnic_cq *cq = to_ocq(ibcq);
	u32 mask = ODPNIC_CQ_DEPTH - 1, start;
	unsigned long flags;
	int n = 0;

	spin_lock_irqsave(&cq->lock, flags);
	start = cq->ci;
	while (n < num_entries) {
		struct odp_nic_cqe *cqe = &cq->ring[cq->ci & mask];
		u8 phase = !((cq->ci >> ODPNIC_CQ_LOG) & 1);

		if (READ_ONCE(cqe->owner) != phase)
			break;
		dma_rmb();
		cq->ci++;
		if (odpnic_cqe_to_wc(cq, cqe, &wc[n]))
			n++;
	}
	if (cq->ci != start)
		odpnic_wr(cq->dev, ODP_NIC_DB_CQ_BASE +
			  cq->cqn * ODP_NIC_DB_CQ_STRIDE, cq->ci);
	/* The device has written all it will for a QP in the error state. */
	if (n < num_entries)
		n += odpnic_poll_flush(cq, num_entries - n, wc + n);
	spin_unlock_irqrestore(&cq->lock, flags);
	return n;
}

static bool odpnic_cq_pending(struct odpnic_cq *cq)
{
	struct odp_nic_cqe *cqe = &cq->ring[cq->ci & (ODPNIC_CQ_DEPTH - 1)];

	return READ_ONCE(cqe->owner) == !((cq->ci >> ODPNIC_CQ_LOG) & 1) ||
	       !list_empty(&cq->flush_list);
}

static int odpnic_req_notify_cq(struct ib_cq *ibcq,
				enum ib_cq_notify_flags flags)
{
	struct odpnic_cq *cq = to_ocq(ibcq);
	unsigned long irqflags;
	int ret = 0;

	/* Solicited-only is not on the wire: every completion notifies. */
	atomic_set(&cq->armed, 1);
	if (flags & IB_CQ_REPORT_MISSED_EVENTS) {
		spin_lock_irqsave(&cq->lock, irqflags);
		ret = odpnic_cq_pending(cq);
		spin_unlock_irqrestore(&cq->lock, irqflags);
	}
	return ret;
}

/*
 * Forget the completions of QP @qpn still in the ring (it was destroyed in
 * the device, or reset): poll must not retire them against a later QP of
 * the same number, or a later life of this one.  The device writes nothing
 * more for the QP, so the entries up to the first not yet written are all.
 */
void odpnic_cq_scrub(struct odpnic_cq *cq, u32 qpn)
{
	u32 mask = ODPNIC_CQ_DEPTH - 1, i;
	unsigned long flags;

	spin_lock_irqsave(&cq->lock, flags);
	for (i = cq->ci; i != cq->ci + ODPNIC_CQ_DEPTH; i++) {
		struct odp_nic_cqe *cqe = &cq->ring[i & mask];

		if (READ_ONCE(cqe->owner) != !((i >> ODPNIC_CQ_LOG) & 1))
			break;
		if (cqe->qpn == qpn)
			WRITE_ONCE(cqe->qpn, ODP_NIC_QPN_NONE);
	}
	spin_unlock_irqrestore(&cq->lock, flags);
}

void odpnic_cq_flush_add(struct odpnic_cq *cq, struct odpnic_flush *fl)
{
	unsigned long flags;

	spin_lock_irqsave(&cq->lock, flags);
	if (list_empty(&fl->node))
		list_add_tail(&fl->node, &cq->flush_list);
	spin_unlock_irqrestore(&cq->lock, flags);
	/* An armed CQ learns of the flush as of any completion. */
	if (atomic_xchg(&cq->armed, 0) && cq->ibcq.comp_handler)
		cq->ibcq.comp_handler(&cq->ibcq, cq->ibcq.cq_context);
}

void odpnic_cq_flush_del(struct odpnic_cq *cq, struct odpnic_flush *fl)
{
	unsigned long flags;

	spin_lock_irqsave(&cq->lock, flags);
	list_del_init(&fl->node);
	spin_unlock_irqrestore(&cq->lock, flags);
}

/* A completion vector fired: notify every armed CQ on it that has work. */
irqreturn_t odpnic_cq_irq(int irq, void *data)
{
	struct odpnic_vec *v = data;
	struct odpnic_dev *dev = v->dev;
	struct odpnic_cq *cq;

	spin_lock(&dev->cq_vec_lock);
	list_for_each_entry(cq, &dev->cq_vec[v->vec], vec_node) {
		if (!atomic_read(&cq->armed) || !odpnic_cq_pending(cq))
			continue;
		if (atomic_xchg(&cq->armed, 0) && cq->ibcq.comp_handler)
			cq->ibcq.comp_handler(&cq->ibcq, cq->ibcq.cq_context);
	}
	spin_unlock(&dev->cq_vec_lock);
	return IRQ_HANDLED;
}

const struct ib_device_ops odpnic_cq_ops = {
	.create_cq = odpnic_create_cq,
	.destroy_cq = odpnic_destroy_cq,
	.poll_cq = odpnic_poll_cq,
	.req_notify_cq = odpnic_req_notify_cq,
};
