// SPDX-License-Identifier: GPL-2.0
/*
 * odpnic: RC queue pairs and the data path.
 *
 * The device has no QP state machine: a QP exists in it from CREATE_QP,
 * which needs the remote QP number, to DESTROY_QP.  So the verbs QP lives
 * in the driver from create_qp on, and enters the device at the RTR
 * transition (dest_qp_num and the address vector known then).  Receives
 * posted in INIT wait in the ring; their doorbell is rung at RTR.
 *
 * The destination LID decides where the messages go: our own LID means the
 * device's loopback, any other the peer at the end of the link (the link is
 * point to point; there is no fabric to route on).
 *
 * post_send/post_recv are the kernel's: the device checks no protection
 * domain, so every lkey is checked here against the QP's PD.
 */
#include <linux/dma-mapping.h>
#include <rdma/ib_cache.h>
#include <rdma/uverbs_ioctl.h>

#include "odpnic_drv.h"

static int odpnic_wq_alloc(struct odpnic_dev *dev, struct odpnic_wq *wq,
			   u32 wrs, bool send)
{
	wq->log = wrs ? max_t(u32, 1, order_base_2(wrs)) : 0;
	wq->pi = 0;
	wq->ci = 0;
	if (!wq->log)
		return 0;
	if (wq->log > ODPNIC_MAX_LOG_Q)
		return -EINVAL;
	wq->ring = dma_alloc_coherent(&dev->pdev->dev,
				      sizeof(struct odp_nic_wqe) << wq->log,
				      &wq->ring_dma, GFP_KERNEL);
	if (!wq->ring)
		return -ENOMEM;
	wq->mrs = kcalloc(1u << wq->log, sizeof(*wq->mrs), GFP_KERNEL);
	if (send)
		wq->signaled = kcalloc(1u << wq->log, sizeof(u8), GFP_KERNEL);
	if (!wq->mrs || (send && !wq->signaled)) {
		kfree(wq->mrs);
		kfree(wq->signaled);
		dma_free_coherent(&dev->pdev->dev,
				  sizeof(struct odp_nic_wqe) << wq->log,
				  wq->ring, wq->ring_dma);
		return -ENOMEM;
	}
	return 0;
}

static void odpnic_wq_free(struct odpnic_dev *dev, struct odpnic_wq *wq)
{
	if (!wq->log)
		return;
	kfree(wq->mrs);
	kfree(wq->signaled);
	dma_free_coherent(&dev->pdev->dev,
			  sizeof(struct odp_nic_wqe) << wq->log, wq->ring,
			  wq->ring_dma);
}

static u32 odpnic_wq_depth(const struct odpnic_wq *wq)
{
	return wq->log ? 1u << wq->log : 0;
}

/* Reserve room on a CQ for every completion a queue can have in flight. */
static int odpnic_cq_attach(struct ib_cq *ibcq, u32 wrs)
{
	struct odpnic_cq *cq = to_ocq(ibcq);
	unsigned long flags;
	int ret = 0;

	spin_lock_irqsave(&cq->lock, flags);
	if (cq->attached_wrs + wrs > ODPNIC_CQ_DEPTH)
		ret = -ENOSPC;
	else
		cq->attached_wrs += wrs;
	spin_unlock_irqrestore(&cq->lock, flags);
	return ret;
}

static void odpnic_cq_detach(struct ib_cq *ibcq, u32 wrs)
{
	struct odpnic_cq *cq = to_ocq(ibcq);
	unsigned long flags;

	spin_lock_irqsave(&cq->lock, flags);
	cq->attached_wrs -= wrs;
	spin_unlock_irqrestore(&cq->lock, flags);
}

static int odpnic_create_qp(struct ib_qp *ibqp,
			    struct ib_qp_init_attr *init,
			    struct ib_udata *udata)
{
	struct odpnic_dev *dev = to_odev(ibqp->device);
	struct odpnic_qp *qp = to_oqp(ibqp);
	struct ib_qp_cap *cap = &init->cap;
	int ret;

	if (init->qp_type != IB_QPT_RC || init->srq || init->create_flags ||
	    init->rwq_ind_tbl)
		return -EOPNOTSUPP;
	if (cap->max_send_sge > ODP_NIC_MAX_SGE ||
	    cap->max_recv_sge > ODP_NIC_MAX_SGE ||
	    cap->max_send_wr > ODPNIC_MAX_WR || !cap->max_send_wr ||
	    cap->max_recv_wr > ODPNIC_MAX_WR || cap->max_inline_data)
		return -EINVAL;

	qp->dev = dev;
	qp->state = IB_QPS_RESET;
	qp->sq_sig_all = init->sq_sig_type == IB_SIGNAL_ALL_WR;
	spin_lock_init(&qp->sq_lock);
	spin_lock_init(&qp->rq_lock);
	mutex_init(&qp->mutex);
	INIT_LIST_HEAD(&qp->sflush.node);
	INIT_LIST_HEAD(&qp->rflush.node);
	qp->sflush.qp = qp;
	qp->sflush.send = true;
	qp->rflush.qp = qp;

	ret = odpnic_wq_alloc(dev, &qp->sq, cap->max_send_wr, true);
	if (ret)
		return ret;
	ret = odpnic_wq_alloc(dev, &qp->rq, cap->max_recv_wr, false);
	if (ret)
		goto err_sq;
	ret = odpnic_cq_attach(init->send_cq, odpnic_wq_depth(&qp->sq));
	if (ret)
		goto err_rq;
	ret = odpnic_cq_attach(init->recv_cq, odpnic_wq_depth(&qp->rq));
	if (ret)
		goto err_scq;
	ret = xa_alloc_cyclic(&dev->qps, &qp->qpn, qp,
			      XA_LIMIT(0, dev->max_qps - 1), &dev->next_qpn,
			      GFP_KERNEL);
	if (ret < 0) {
		ret = ret == -EBUSY ? -ENOSPC : ret;
		goto err_rcq;
	}
	ibqp->qp_num = qp->qpn;
	cap->max_send_wr = odpnic_wq_depth(&qp->sq);
	cap->max_recv_wr = odpnic_wq_depth(&qp->rq);
	cap->max_send_sge = ODP_NIC_MAX_SGE;
	cap->max_recv_sge = ODP_NIC_MAX_SGE;
	return 0;

err_rcq:
	odpnic_cq_detach(init->recv_cq, odpnic_wq_depth(&qp->rq));
err_scq:
	odpnic_cq_detach(init->send_cq, odpnic_wq_depth(&qp->sq));
err_rq:
	odpnic_wq_free(dev, &qp->rq);
err_sq:
	odpnic_wq_free(dev, &qp->sq);
	return ret;
}

static int odpnic_hw_create(struct odpnic_qp *qp)
{
	struct odpnic_dev *dev = qp->dev;
	struct odp_nic_cmd cmd = { .opcode = ODP_NIC_CMD_CREATE_QP };
	int ret;

	/*
	 * The device starts its indices at 0: a QP enters it only from a reset
	 * state (nothing sent, nothing flushing), or old WQEs would replay.
	 */
	if (qp->sq.pi || qp->sq.ci || qp->rq.ci || !list_empty(&qp->sflush.node) ||
	    !list_empty(&qp->rflush.node))
		return -EINVAL;
	/*
	 * The device checks no QP ownership: a loopback QP may only send to a
	 * QP of its own protection domain (odpnic_post_send checks its rkeys
	 * the same way).
	 */
	if (qp->dest == ODP_NIC_QP_DEST_LOOPBACK) {
		struct odpnic_qp *peer;

		xa_lock(&dev->qps);
		peer = xa_load(&dev->qps, qp->remote_qpn);
		ret = peer && peer->ibqp.pd == qp->ibqp.pd ? 0 : -EINVAL;
		xa_unlock(&dev->qps);
		if (ret)
			return ret;
	}
	cmd.u.create_qp.qpn = qp->qpn;
	cmd.u.create_qp.send_cqn = to_ocq(qp->ibqp.send_cq)->cqn;
	cmd.u.create_qp.recv_cqn = to_ocq(qp->ibqp.recv_cq)->cqn;
	cmd.u.create_qp.sq_log_size = qp->sq.log;
	cmd.u.create_qp.rq_log_size = qp->rq.log;
	cmd.u.create_qp.dest = qp->dest;
	cmd.u.create_qp.sq_base = qp->sq.ring_dma;
	cmd.u.create_qp.rq_base = qp->rq.log ? qp->rq.ring_dma : 0;
	cmd.u.create_qp.remote_qpn = qp->remote_qpn;
	ret = odpnic_cmd(dev, &cmd, NULL);
	if (ret)
		return ret;
	/* Receives posted in INIT; later ones ring their own doorbell. */
	spin_lock_irq(&qp->sq_lock);
	spin_lock(&qp->rq_lock);
	qp->hw_created = true;
	if (qp->rq.pi)
		odpnic_wr(dev, ODP_NIC_DB_QP_BASE + qp->qpn * ODP_NIC_DB_QP_STRIDE +
			  ODP_NIC_DB_RQ_PI, qp->rq.pi);
	spin_unlock(&qp->rq_lock);
	spin_unlock_irq(&qp->sq_lock);
	return 0;
}

static void odpnic_hw_destroy(struct odpnic_qp *qp)
{
	struct odpnic_dev *dev = qp->dev;

	if (!qp->hw_created)
		return;
	spin_lock_irq(&qp->sq_lock);
	spin_lock(&qp->rq_lock);
	qp->hw_created = false;
	spin_unlock(&qp->rq_lock);
	spin_unlock_irq(&qp->sq_lock);
	/*
	 * Also drops a WR stalled on a fault; its CQE never comes.  A device
	 * that fails this may still write into the rings: reset it before
	 * they are freed.
	 */
	if (odpnic_cmd_num(dev, ODP_NIC_CMD_DESTROY_QP, qp->qpn) && !dev->dead) {
		dev_err(&dev->pdev->dev, "DESTROY_QP %u failed: resetting\n",
			qp->qpn);
		odpnic_wr(dev, ODP_NIC_REG_CTRL, ODP_NIC_CTRL_RESET);
		dev->dead = true;
	}
	/* A fault event of this QP still queued must not RESUME a successor. */
	synchronize_irq(pci_irq_vector(dev->pdev, ODP_NIC_VEC_EQ));
	odpnic_cq_scrub(to_ocq(qp->ibqp.send_cq), qp->qpn);
	odpnic_cq_scrub(to_ocq(qp->ibqp.recv_cq), qp->qpn);
}

/* The device holds none of the QP's WQEs any more: their keys may go. */
static void odpnic_wq_drop(spinlock_t *lock, struct odpnic_wq *wq)
{
	spin_lock_irq(lock);
	for (; wq->log && wq->ci != wq->pi; wq->ci++)
		odpnic_wq_unhold(wq, wq->ci & ((1u << wq->log) - 1));
	wq->pi = 0;
	wq->ci = 0;
	spin_unlock_irq(lock);
}

static void odpnic_qp_reset(struct odpnic_qp *qp)
{
	odpnic_cq_flush_del(to_ocq(qp->ibqp.send_cq), &qp->sflush);
	odpnic_cq_flush_del(to_ocq(qp->ibqp.recv_cq), &qp->rflush);
	odpnic_wq_drop(&qp->sq_lock, &qp->sq);
	odpnic_wq_drop(&qp->rq_lock, &qp->rq);
}

static int odpnic_modify_qp(struct ib_qp *ibqp, struct ib_qp_attr *attr,
			    int mask, struct ib_udata *udata)
{
	struct odpnic_qp *qp = to_oqp(ibqp);
	struct odpnic_dev *dev = qp->dev;
	enum ib_qp_state cur, next;
	int ret = 0;

	if (mask & ~IB_QP_ATTR_STANDARD_BITS)
		return -EOPNOTSUPP;
	mutex_lock(&qp->mutex);
	/* The driver is the only state machine: the caller cannot override it. */
	if (mask & IB_QP_CUR_STATE && attr->cur_qp_state != qp->state) {
		ret = -EINVAL;
		goto out;
	}
	cur = qp->state;
	next = mask & IB_QP_STATE ? attr->qp_state : cur;
	if (!ib_modify_qp_is_ok(cur, next, IB_QPT_RC, mask)) {
		ret = -EINVAL;
		goto out;
	}
	if ((mask & IB_QP_PORT && attr->port_num != ODPNIC_PORT) ||
	    (mask & IB_QP_PKEY_INDEX && attr->pkey_index)) {
		ret = -EINVAL;
		goto out;
	}
	if (mask & IB_QP_PATH_MTU)
		qp->path_mtu = attr->path_mtu;
	if (mask & IB_QP_DEST_QPN)
		qp->remote_qpn = attr->dest_qp_num;
	if (mask & IB_QP_AV)
		qp->dest = rdma_ah_get_dlid(&attr->ah_attr) == dev->lid ?
			   ODP_NIC_QP_DEST_LOOPBACK : ODP_NIC_QP_DEST_LINK;

	if (next == cur)
		goto out;
	switch (next) {
	case IB_QPS_RTR:
		ret = odpnic_hw_create(qp);
		break;
	case IB_QPS_ERR:
		odpnic_hw_destroy(qp);
		odpnic_cq_flush_add(to_ocq(qp->ibqp.send_cq), &qp->sflush);
		if (qp->rq.log)
			odpnic_cq_flush_add(to_ocq(qp->ibqp.recv_cq),
					    &qp->rflush);
		break;
	case IB_QPS_RESET:
		odpnic_hw_destroy(qp);
		odpnic_qp_reset(qp);
		break;
	default:
		break;
	}
	if (!ret)
		WRITE_ONCE(qp->state, next);
out:
	mutex_unlock(&qp->mutex);
	return ret;
}

static int odpnic_query_qp(struct ib_qp *ibqp, struct ib_qp_attr *attr,
			   int mask, struct ib_qp_init_attr *init)
{
	struct odpnic_qp *qp = to_oqp(ibqp);

	memset(attr, 0, sizeof(*attr));
	memset(init, 0, sizeof(*init));
	mutex_lock(&qp->mutex);
	attr->qp_state = qp->state;
	attr->cur_qp_state = qp->state;
	attr->path_mtu = qp->path_mtu;
	attr->dest_qp_num = qp->remote_qpn;
	attr->port_num = ODPNIC_PORT;
	attr->ah_attr.type = RDMA_AH_ATTR_TYPE_IB;
	rdma_ah_set_port_num(&attr->ah_attr, ODPNIC_PORT);
	rdma_ah_set_dlid(&attr->ah_attr,
			 qp->dest == ODP_NIC_QP_DEST_LOOPBACK ? qp->dev->lid : 0);
	mutex_unlock(&qp->mutex);
	attr->cap.max_send_wr = odpnic_wq_depth(&qp->sq);
	attr->cap.max_recv_wr = odpnic_wq_depth(&qp->rq);
	attr->cap.max_send_sge = ODP_NIC_MAX_SGE;
	attr->cap.max_recv_sge = ODP_NIC_MAX_SGE;
	init->qp_type = IB_QPT_RC;
	init->send_cq = ibqp->send_cq;
	init->recv_cq = ibqp->recv_cq;
	init->cap = attr->cap;
	init->sq_sig_type = qp->sq_sig_all ? IB_SIGNAL_ALL_WR :
					     IB_SIGNAL_REQ_WR;
	return 0;
}

static int odpnic_destroy_qp(struct ib_qp *ibqp, struct ib_udata *udata)
{
	struct odpnic_qp *qp = to_oqp(ibqp);
	struct odpnic_dev *dev = qp->dev;
	struct odpnic_cq *scq = to_ocq(ibqp->send_cq);
	struct odpnic_cq *rcq = to_ocq(ibqp->recv_cq);
	unsigned long flags;

	mutex_lock(&qp->mutex);
	odpnic_hw_destroy(qp);
	mutex_unlock(&qp->mutex);
	xa_erase(&dev->qps, qp->qpn);
	/* poll_cq looks QPs up under the CQ lock: wait out any that did. */
	spin_lock_irqsave(&scq->lock, flags);
	spin_unlock_irqrestore(&scq->lock, flags);
	spin_lock_irqsave(&rcq->lock, flags);
	spin_unlock_irqrestore(&rcq->lock, flags);
	odpnic_qp_reset(qp);
	odpnic_cq_detach(ibqp->send_cq, odpnic_wq_depth(&qp->sq));
	odpnic_cq_detach(ibqp->recv_cq, odpnic_wq_depth(&qp->rq));
	odpnic_wq_free(dev, &qp->rq);
	odpnic_wq_free(dev, &qp->sq);
	mutex_destroy(&qp->mutex);
	return 0;
}

static int odpnic_wr_opcode(enum ib_wr_opcode op, u8 *hw)
{
	switch (op) {
	case IB_WR_RDMA_WRITE:
		*hw = ODP_NIC_WR_RDMA_WRITE;
		return 0;
	case IB_WR_RDMA_READ:
		*hw = ODP_NIC_WR_RDMA_READ;
		return 0;
	case IB_WR_SEND:
	case IB_WR_SEND_WITH_IMM:
		*hw = ODP_NIC_WR_SEND;
		return 0;
	default:
		return -EOPNOTSUPP;
	}
}

static int odpnic_post_one_send(struct odpnic_qp *qp,
				const struct ib_send_wr *wr)
{
	struct odpnic_mr *held[ODPNIC_WQE_KEYS] = {};
	u32 mask = (1u << qp->sq.log) - 1, slot;
	struct odp_nic_wqe wqe = {};
	u64 total = 0;
	int i, ret;

	if (wr->num_sge > ODP_NIC_MAX_SGE || wr->num_sge < 0)
		return -EINVAL;
	if (wr->send_flags & IB_SEND_INLINE)
		return -EINVAL;
	ret = odpnic_wr_opcode(wr->opcode, &wqe.opcode);
	if (ret)
		return ret;
	if (qp->sq.pi - qp->sq.ci >= (1u << qp->sq.log))
		return -ENOMEM;
	wqe.num_sge = wr->num_sge;
	wqe.wr_id = wr->wr_id;
	if (wr->opcode == IB_WR_SEND_WITH_IMM)
		wqe.imm = be32_to_cpu(wr->ex.imm_data);
	for (i = 0; i < wr->num_sge; i++) {
		const struct ib_sge *sge = &wr->sg_list[i];

		if (sge->length) {
			held[i] = odpnic_mr_hold(qp->dev, qp->ibqp.pd, sge->lkey,
						 wr->opcode == IB_WR_RDMA_READ ?
						 ODP_NIC_ACCESS_LOCAL_WRITE : 0,
						 &ret);
			if (ret)
				goto err;
		}
		wqe.sge[i].lkey = sge->lkey;
		wqe.sge[i].length = sge->length;
		wqe.sge[i].va = sge->addr;
		total += sge->length;
	}
	ret = -EMSGSIZE;
	if (total > ODP_NIC_MAX_WR_LEN)
		goto err;
	if (wr->opcode == IB_WR_RDMA_WRITE || wr->opcode == IB_WR_RDMA_READ) {
		wqe.rkey = rdma_wr(wr)->rkey;
		wqe.remote_va = rdma_wr(wr)->remote_addr;
		/*
		 * In loopback this NIC is the responder, and it checks no PD:
		 * the target region must be ours, with the remote right.  (Over
		 * the link the peer's device decides.)
		 */
		if (qp->dest == ODP_NIC_QP_DEST_LOOPBACK && total) {
			held[ODP_NIC_MAX_SGE] =
				odpnic_mr_hold(qp->dev, qp->ibqp.pd, wqe.rkey,
					       wr->opcode == IB_WR_RDMA_WRITE ?
					       ODP_NIC_ACCESS_REMOTE_WRITE :
					       ODP_NIC_ACCESS_REMOTE_READ, &ret);
			if (ret)
				goto err;
		}
	}
	slot = qp->sq.pi & mask;
	memcpy(qp->sq.ring + slot * sizeof(wqe), &wqe, sizeof(wqe));
	memcpy(qp->sq.mrs[slot], held, sizeof(held));
	qp->sq.signaled[slot] = qp->sq_sig_all ||
				(wr->send_flags & IB_SEND_SIGNALED);
	qp->sq.pi++;
	return 0;

err:
	for (i = 0; i < ODPNIC_WQE_KEYS; i++)
		if (held[i])
			odpnic_mr_unhold(held[i]);
	return ret;
}

static int odpnic_post_send(struct ib_qp *ibqp, const struct ib_send_wr *wr,
			    const struct ib_send_wr **bad_wr)
{
	struct odpnic_qp *qp = to_oqp(ibqp);
	unsigned long flags;
	u32 start;
	int ret = 0;

	spin_lock_irqsave(&qp->sq_lock, flags);
	start = qp->sq.pi;
	if (READ_ONCE(qp->state) != IB_QPS_RTS || !qp->hw_created) {
		ret = -EINVAL;
		*bad_wr = wr;
	}
	for (; wr && !ret; wr = wr->next) {
		ret = odpnic_post_one_send(qp, wr);
		if (ret)
			*bad_wr = wr;
	}
	if (qp->sq.pi != start) {
		/* The WQEs must be in memory before the doorbell. */
		dma_wmb();
		odpnic_wr(qp->dev, ODP_NIC_DB_QP_BASE +
			  qp->qpn * ODP_NIC_DB_QP_STRIDE + ODP_NIC_DB_SQ_PI,
			  qp->sq.pi);
	}
	spin_unlock_irqrestore(&qp->sq_lock, flags);
	return ret;
}

static int odpnic_post_recv(struct ib_qp *ibqp, const struct ib_recv_wr *wr,
			    const struct ib_recv_wr **bad_wr)
{
	struct odpnic_qp *qp = to_oqp(ibqp);
	enum ib_qp_state state;
	unsigned long flags;
	u32 start;
	int ret = 0;

	spin_lock_irqsave(&qp->rq_lock, flags);
	state = READ_ONCE(qp->state);
	start = qp->rq.pi;
	if (!qp->rq.log || state == IB_QPS_RESET || state == IB_QPS_ERR) {
		ret = -EINVAL;
		*bad_wr = wr;
	}
	for (; wr && !ret; wr = wr->next) {
		struct odpnic_mr *held[ODPNIC_WQE_KEYS] = {};
		u32 slot = qp->rq.pi & ((1u << qp->rq.log) - 1);
		struct odp_nic_wqe wqe = {};
		int i;

		if (wr->num_sge > ODP_NIC_MAX_SGE || wr->num_sge < 0) {
			ret = -EINVAL;
		} else if (qp->rq.pi - qp->rq.ci >= (1u << qp->rq.log)) {
			ret = -ENOMEM;
		} else {
			for (i = 0; i < wr->num_sge && !ret; i++) {
				const struct ib_sge *sge = &wr->sg_list[i];

				if (sge->length)
					held[i] = odpnic_mr_hold(qp->dev,
								 ibqp->pd,
								 sge->lkey,
								 ODP_NIC_ACCESS_LOCAL_WRITE,
								 &ret);
				wqe.sge[i].lkey = sge->lkey;
				wqe.sge[i].length = sge->length;
				wqe.sge[i].va = sge->addr;
			}
		}
		if (ret) {
			for (i = 0; i < ODPNIC_WQE_KEYS; i++)
				if (held[i])
					odpnic_mr_unhold(held[i]);
			*bad_wr = wr;
			break;
		}
		wqe.num_sge = wr->num_sge;
		wqe.wr_id = wr->wr_id;
		memcpy(qp->rq.ring + slot * sizeof(wqe), &wqe, sizeof(wqe));
		memcpy(qp->rq.mrs[slot], held, sizeof(held));
		qp->rq.pi++;
	}
	if (qp->rq.pi != start && qp->hw_created) {
		dma_wmb();
		odpnic_wr(qp->dev, ODP_NIC_DB_QP_BASE +
			  qp->qpn * ODP_NIC_DB_QP_STRIDE + ODP_NIC_DB_RQ_PI,
			  qp->rq.pi);
	}
	spin_unlock_irqrestore(&qp->rq_lock, flags);
	return ret;
}

const struct ib_device_ops odpnic_qp_ops = {
	.create_qp = odpnic_create_qp,
	.modify_qp = odpnic_modify_qp,
	.query_qp = odpnic_query_qp,
	.destroy_qp = odpnic_destroy_qp,
	.post_send = odpnic_post_send,
	.post_recv = odpnic_post_recv,
};
