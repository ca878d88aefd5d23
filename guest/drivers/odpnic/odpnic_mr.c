// SPDX-License-Identifier: GPL-2.0
/*
 * odpnic: memory regions.
 *
 * The device's key is the region's index (0..MAX_MRS-1), so lkey = rkey =
 * key.  The device checks no protection domain: the kernel does, at post
 * time (odpnic_mr_hold), which is why the data path goes through it,
 * and a key returns to the pool only when no posted WQE names it.
 *
 * Pinned: ib_umem_get(), then the translation list at CREATE_MR.
 * ODP:    ib_umem_odp_get() with our interval notifier; the region starts
 *         empty and faults (odpnic_odp.c).
 * dma-buf: ib_umem_dmabuf_get(), a dynamic attachment; the device region is
 *         an ODP one, so that an access after move_notify faults and maps
 *         again.
 */
#include <linux/dma-buf.h>
#include <linux/dma-resv.h>
#include <rdma/iter.h>
#include <rdma/uverbs_ioctl.h>

#include "odpnic_compat.h"
#include "odpnic_drv.h"

struct odpnic_mr *odpnic_mr_get(struct odpnic_dev *dev, u32 key)
{
	struct odpnic_mr *mr;

	xa_lock(&dev->mrs);
	mr = xa_load(&dev->mrs, key);
	if (mr && !refcount_inc_not_zero(&mr->users))
		mr = NULL;
	xa_unlock(&dev->mrs);
	return mr;
}

void odpnic_mr_put(struct odpnic_mr *mr)
{
	if (refcount_dec_and_test(&mr->users))
		complete(&mr->released);
}

/*
 * A key a work request of a QP of @pd names: a scatter element's lkey, or in
 * loopback (this NIC is then the responder) the target's rkey.  It must name
 * a region of the same protection domain with @hw_right (0 for local read):
 * the device checks ranges and rights again, but no PD.  Returns the region
 * with a WQE reference (NULL and *err on a refusal): its key stays out of the
 * pool until poll retires the WQE.
 */
struct odpnic_mr *odpnic_mr_hold(struct odpnic_dev *dev, struct ib_pd *pd,
				 u32 key, u32 hw_right, int *err)
{
	struct odpnic_mr *mr;

	*err = 0;
	/* Under the posting QP's lock: RCU, not the xarray's lock. */
	rcu_read_lock();
	mr = xa_load(&dev->mrs, key);
	if (!mr || mr->ibmr.pd != pd)
		*err = -EINVAL;
	else if ((mr->hw_access & hw_right) != hw_right)
		*err = -EACCES;
	else if (!atomic_inc_not_zero(&mr->wqe_refs))
		*err = -EINVAL;		/* deregistered under us */
	rcu_read_unlock();
	return *err ? NULL : mr;
}

static void odpnic_mr_free(struct odpnic_mr *mr)
{
	xa_erase(&mr->dev->mrs, mr->key);
	kfree_rcu(mr, rcu);
}

void odpnic_mr_unhold(struct odpnic_mr *mr)
{
	if (atomic_dec_and_test(&mr->wqe_refs))
		odpnic_mr_free(mr);
}

/* A WQE left the queue (completed, flushed or dropped): its keys may go. */
void odpnic_wq_unhold(struct odpnic_wq *wq, u32 slot)
{
	int i;

	for (i = 0; i < ODPNIC_WQE_KEYS; i++) {
		if (wq->mrs[slot][i])
			odpnic_mr_unhold(wq->mrs[slot][i]);
		wq->mrs[slot][i] = NULL;
	}
}

static u32 odpnic_hw_access(int access)
{
	u32 hw = 0;

	if (access & IB_ACCESS_LOCAL_WRITE)
		hw |= ODP_NIC_ACCESS_LOCAL_WRITE;
	if (access & IB_ACCESS_REMOTE_READ)
		hw |= ODP_NIC_ACCESS_REMOTE_READ;
	if (access & IB_ACCESS_REMOTE_WRITE)
		hw |= ODP_NIC_ACCESS_REMOTE_WRITE;
	return hw;
}

static struct odpnic_mr *odpnic_mr_alloc(struct odpnic_dev *dev,
					 struct ib_pd *pd, u64 iova,
					 u64 length, int access)
{
	u64 pages = ((iova + length - 1) >> PAGE_SHIFT) - (iova >> PAGE_SHIFT) + 1;
	struct odpnic_mr *mr;
	u32 key;
	int ret;

	if (access & ~(IB_ACCESS_LOCAL_WRITE | IB_ACCESS_REMOTE_READ |
		       IB_ACCESS_REMOTE_WRITE | IB_ACCESS_ON_DEMAND |
		       IB_ACCESS_RELAXED_ORDERING))
		return ERR_PTR(-EOPNOTSUPP);
	if (!length || iova + length < iova)
		return ERR_PTR(-EINVAL);
	if (pages > dev->max_xlt_pages)
		return ERR_PTR(-E2BIG);
	mr = kzalloc(sizeof(*mr), GFP_KERNEL);
	if (!mr)
		return ERR_PTR(-ENOMEM);
	mr->dev = dev;
	mr->iova = iova;
	mr->length = length;
	mr->npages = pages;
	mr->hw_access = odpnic_hw_access(access);
	refcount_set(&mr->users, 1);
	init_completion(&mr->released);
	atomic_set(&mr->wqe_refs, 1);
	mr->ibmr.pd = pd;
	mr->ibmr.iova = iova;
	mr->ibmr.length = length;
	/* Not visible to faults or posts until the device has the region. */
	ret = xa_alloc_cyclic(&dev->mrs, &key, NULL,
			      XA_LIMIT(0, dev->max_mrs - 1), &dev->next_key,
			      GFP_KERNEL);
	if (ret < 0) {
		kfree(mr);
		return ERR_PTR(ret == -EBUSY ? -ENOSPC : ret);
	}
	mr->key = key;
	mr->ibmr.lkey = key;
	mr->ibmr.rkey = key;
	return mr;
}

static int odpnic_create_mr(struct odpnic_mr *mr, u8 mode, u64 xlt,
			    u32 xlt_count)
{
	struct odp_nic_cmd cmd = { .opcode = ODP_NIC_CMD_CREATE_MR };

	cmd.u.create_mr.key = mr->key;
	cmd.u.create_mr.access = mr->hw_access;
	cmd.u.create_mr.start = mr->iova;
	cmd.u.create_mr.length = mr->length;
	cmd.u.create_mr.xlt_addr = xlt;
	cmd.u.create_mr.xlt_count = xlt_count;
	cmd.u.create_mr.mode = mode;
	cmd.u.create_mr.page_shift = ODP_NIC_PAGE_SHIFT;
	return odpnic_cmd(mr->dev, &cmd, NULL);
}

static void odpnic_mr_publish(struct odpnic_mr *mr)
{
	xa_store(&mr->dev->mrs, mr->key, mr, GFP_KERNEL);
}

struct odpnic_pinned_fill {
	struct ib_block_iter biter;
	u64 flags;
};

static int odpnic_pinned_fill(void *ctx, u64 first, u32 count, u64 *xlt)
{
	struct odpnic_pinned_fill *f = ctx;
	u32 i;

	for (i = 0; i < count; i++) {
		if (!__rdma_block_iter_next(&f->biter))
			return -EFAULT;
		xlt[i] = rdma_block_iter_dma_address(&f->biter) | f->flags;
	}
	return 0;
}

static int odpnic_reg_pinned(struct odpnic_mr *mr, u64 start, int access)
{
	struct odpnic_dev *dev = mr->dev;
	struct odpnic_pinned_fill fill = {};
	int ret;

	mr->kind = ODPNIC_MR_PINNED;
	mr->umem = ib_umem_get_va(&dev->ibdev, start, mr->length, access);
	if (IS_ERR(mr->umem))
		return PTR_ERR(mr->umem);
	/* Device page i is iova page i: the offsets in a page must agree. */
	if (!ib_umem_find_best_pgsz(mr->umem, SZ_4K, mr->iova) ||
	    ib_umem_num_dma_blocks(mr->umem, SZ_4K) != mr->npages) {
		ret = -EINVAL;
		goto err;
	}
	ret = odpnic_create_mr(mr, ODP_NIC_MR_PINNED, 0, 0);
	if (ret)
		goto err;
	mr->live = true;
	__rdma_umem_block_iter_start(&fill.biter, mr->umem, SZ_4K);
	fill.flags = ODP_NIC_XLT_VALID | ODP_NIC_XLT_READ;
	if (mr->umem->writable)
		fill.flags |= ODP_NIC_XLT_WRITE;
	ret = odpnic_xlt_write(dev, mr->key, 0, mr->npages, odpnic_pinned_fill,
			       &fill);
	if (ret) {
		odpnic_cmd_num(dev, ODP_NIC_CMD_DESTROY_MR, mr->key);
		goto err;
	}
	return 0;
err:
	ib_umem_release(mr->umem);
	return ret;
}

static int odpnic_reg_odp(struct odpnic_mr *mr, u64 start, int access)
{
	struct odpnic_dev *dev = mr->dev;
	struct ib_umem_odp *odp;
	int ret;

	/* The device region is in the process's own address space. */
	if (start != mr->iova)
		return -EOPNOTSUPP;
	mr->kind = ODPNIC_MR_ODP;
	odp = ib_umem_odp_get(&dev->ibdev, start, mr->length, access,
			      &odpnic_mni_ops);
	if (IS_ERR(odp))
		return PTR_ERR(odp);
	mr->umem = &odp->umem;
	ret = odpnic_create_mr(mr, ODP_NIC_MR_ODP, 0, 0);
	if (ret) {
		ib_umem_odp_release(odp);
		return ret;
	}
	mutex_lock(&odp->umem_mutex);
	odp->private = mr;
	mr->live = true;
	mutex_unlock(&odp->umem_mutex);
	return 0;
}

static struct ib_mr *odpnic_reg_user_mr(struct ib_pd *pd, u64 start,
					u64 length, u64 virt_addr, int access,
					struct ib_udata *udata)
{
	struct odpnic_dev *dev = to_odev(pd->device);
	struct odpnic_mr *mr;
	int ret;

	mr = odpnic_mr_alloc(dev, pd, virt_addr, length, access);
	if (IS_ERR(mr))
		return ERR_CAST(mr);
	if (access & IB_ACCESS_ON_DEMAND)
		ret = odpnic_reg_odp(mr, start, access);
	else
		ret = odpnic_reg_pinned(mr, start, access);
	if (ret) {
		odpnic_mr_free(mr);
		return ERR_PTR(ret);
	}
	odpnic_mr_publish(mr);
	return &mr->ibmr;
}

static struct ib_mr *odpnic_reg_user_mr_dmabuf(struct ib_pd *pd, u64 offset,
					       u64 length, u64 virt_addr,
					       int fd, int access,
					       struct uverbs_attr_bundle *attrs)
{
	struct odpnic_dev *dev = to_odev(pd->device);
	struct ib_umem_dmabuf *umem_dmabuf;
	struct odpnic_mr *mr;
	int ret;

	if (access & IB_ACCESS_ON_DEMAND)
		return ERR_PTR(-EOPNOTSUPP);
	/* Device page i is iova page i: the offsets in a page must agree. */
	if ((offset ^ virt_addr) & (SZ_4K - 1))
		return ERR_PTR(-EINVAL);
	mr = odpnic_mr_alloc(dev, pd, virt_addr, length, access);
	if (IS_ERR(mr))
		return ERR_CAST(mr);
	mr->kind = ODPNIC_MR_DMABUF;
	umem_dmabuf = ib_umem_dmabuf_get(&dev->ibdev, offset, length, fd,
					 access, &odpnic_dmabuf_attach_ops);
	if (IS_ERR(umem_dmabuf)) {
		ret = PTR_ERR(umem_dmabuf);
		goto err_free;
	}
	mr->umem = &umem_dmabuf->umem;
	ret = odpnic_create_mr(mr, ODP_NIC_MR_ODP, 0, 0);
	if (ret)
		goto err_umem;
	dma_resv_lock(umem_dmabuf->attach->dmabuf->resv, NULL);
	umem_dmabuf->private = mr;
	mr->live = true;
	dma_resv_unlock(umem_dmabuf->attach->dmabuf->resv);
	/* Map now, as mlx5 does; later moves fault and map again. */
	ret = odpnic_dmabuf_map(mr);
	if (ret) {
		odpnic_dmabuf_retire(mr);
		goto err_umem;
	}
	odpnic_mr_publish(mr);
	return &mr->ibmr;

err_umem:
	ib_umem_release(mr->umem);
err_free:
	odpnic_mr_free(mr);
	return ERR_PTR(ret);
}

static int odpnic_dereg_mr(struct ib_mr *ibmr, struct ib_udata *udata)
{
	struct odpnic_mr *mr = to_omr(ibmr);
	struct odpnic_dev *dev = mr->dev;

	/* No new fault finds it; wait for the ones that did. */
	xa_store(&dev->mrs, mr->key, NULL, GFP_KERNEL);
	odpnic_mr_put(mr);
	wait_for_completion(&mr->released);

	switch (mr->kind) {
	case ODPNIC_MR_ODP:
		odpnic_odp_retire(mr);
		ib_umem_odp_release(to_ib_umem_odp(mr->umem));
		break;
	case ODPNIC_MR_DMABUF:
		odpnic_dmabuf_retire(mr);
		ib_umem_release(mr->umem);
		break;
	default:
		odpnic_cmd_num(dev, ODP_NIC_CMD_DESTROY_MR, mr->key);
		ib_umem_release(mr->umem);
	}
	/* The key itself waits for the WQEs still naming it. */
	odpnic_mr_unhold(mr);
	return 0;
}

/*
 * The device needs a translation for everything it touches: there is no
 * physical-address region for kernel consumers.
 */
static struct ib_mr *odpnic_get_dma_mr(struct ib_pd *pd, int access)
{
	return ERR_PTR(-EOPNOTSUPP);
}

static int odpnic_prefetch_one(struct odpnic_dev *dev, struct ib_pd *pd,
			       const struct ib_sge *sge, bool write, bool flush)
{
	struct odp_nic_cmd cmd = { .opcode = ODP_NIC_CMD_PREFETCH };
	struct odpnic_mr *mr;
	u64 raised = 0;
	int ret;

	mr = odpnic_mr_get(dev, sge->lkey);
	if (!mr)
		return -EINVAL;
	if (mr->ibmr.pd != pd) {
		ret = -EINVAL;
		goto out;
	}
	if (mr->kind != ODPNIC_MR_ODP) {
		ret = mr->kind == ODPNIC_MR_PINNED ? 0 : -EOPNOTSUPP;
		goto out;
	}
	ODPNIC_SW_INC(dev, PREFETCHES);
	cmd.u.range.key = mr->key;
	cmd.u.range.flags = write ? ODP_NIC_PREFETCH_WRITE : 0;
	cmd.u.range.va = sge->addr;
	cmd.u.range.length = sge->length;
	/*
	 * The device raises one fault event for the range if anything in it
	 * lacks a translation; the event thread resolves it.  FLUSH asks for
	 * the pages to be mapped on return: resolve the range here too (the
	 * event then finds it present and costs one hmm_range_fault()).
	 */
	ret = odpnic_cmd(dev, &cmd, &raised);
	if (!ret && raised && flush)
		ret = odpnic_odp_resolve(mr, sge->addr, sge->length, write,
					 U64_MAX);
out:
	odpnic_mr_put(mr);
	return ret;
}

static int odpnic_advise_mr(struct ib_pd *pd,
			    enum ib_uverbs_advise_mr_advice advice, u32 flags,
			    struct ib_sge *sg_list, u32 num_sge,
			    struct uverbs_attr_bundle *attrs)
{
	struct odpnic_dev *dev = to_odev(pd->device);
	bool flush = flags & IB_UVERBS_ADVISE_MR_FLAG_FLUSH;
	bool write;
	u32 i;
	int ret;

	switch (advice) {
	case IB_UVERBS_ADVISE_MR_ADVICE_PREFETCH:
		write = false;
		break;
	case IB_UVERBS_ADVISE_MR_ADVICE_PREFETCH_WRITE:
		write = true;
		break;
	default:
		/* PREFETCH_NO_FAULT maps only what is present: not offered. */
		return -EOPNOTSUPP;
	}
	for (i = 0; i < num_sge; i++) {
		ret = odpnic_prefetch_one(dev, pd, &sg_list[i], write, flush);
		if (ret)
			return ret;
	}
	return 0;
}

#ifdef ODPNIC_HAVE_DMAH
/* DMA handles (TPH steering hints) mean nothing to the device. */
static struct ib_mr *odpnic_reg_user_mr_dmah(struct ib_pd *pd, u64 start,
					     u64 length, u64 virt_addr,
					     int access, struct ib_dmah *dmah,
					     struct ib_udata *udata)
{
	if (dmah)
		return ERR_PTR(-EOPNOTSUPP);
	return odpnic_reg_user_mr(pd, start, length, virt_addr, access, udata);
}

static struct ib_mr *
odpnic_reg_user_mr_dmabuf_dmah(struct ib_pd *pd, u64 offset, u64 length,
			       u64 virt_addr, int fd, int access,
			       struct ib_dmah *dmah,
			       struct uverbs_attr_bundle *attrs)
{
	if (dmah)
		return ERR_PTR(-EOPNOTSUPP);
	return odpnic_reg_user_mr_dmabuf(pd, offset, length, virt_addr, fd,
					 access, attrs);
}
#endif

const struct ib_device_ops odpnic_mr_ops = {
#ifdef ODPNIC_HAVE_DMAH
	.reg_user_mr = odpnic_reg_user_mr_dmah,
	.reg_user_mr_dmabuf = odpnic_reg_user_mr_dmabuf_dmah,
#else
	.reg_user_mr = odpnic_reg_user_mr,
	.reg_user_mr_dmabuf = odpnic_reg_user_mr_dmabuf,
#endif
	.dereg_mr = odpnic_dereg_mr,
	.get_dma_mr = odpnic_get_dma_mr,
	.advise_mr = odpnic_advise_mr,
};
