// SPDX-License-Identifier: GPL-2.0
/*
 * odpnic: On-Demand Paging and dma-buf regions.
 *
 * Both kinds are ODP regions on the device: a missing translation faults.
 *
 * ODP (ib_umem_odp): a fault runs ib_umem_odp_map_dma_and_lock(), which
 * calls hmm_range_fault() and returns with umem_mutex held; the translations
 * are written under it, so the notifier's sequence check covers them.  The
 * notifier takes umem_mutex, sends INVALIDATE (a fence: once it completes
 * the device uses none of the zapped entries) and only then unmaps.  This is
 * mlx5's flow (drivers/infiniband/hw/mlx5/odp.c) on our command set.
 *
 * dma-buf (ib_umem_dmabuf, a dynamic attachment): the exporter's
 * move_notify/invalidate_mappings, called with the reservation held, fences
 * the whole region and unmaps; the next access faults and maps again under
 * the reservation, waiting for the exporter's fences.
 */
#include <linux/dma-buf.h>
#include <linux/dma-resv.h>
#include <rdma/iter.h>

#include "odpnic_compat.h"
#include "odpnic_drv.h"

struct odpnic_odp_fill {
	struct ib_umem_odp *odp;
	u64 first;		/* region page of odp page 0 */
	struct odpnic_p2p_state p2p;
};

static int odpnic_odp_fill(void *ctx, u64 first, u32 count, u64 *xlt)
{
	struct odpnic_odp_fill *f = ctx;
	u32 i;
	int ret;

	for (i = 0; i < count; i++) {
		ret = odpnic_odp_entry(f->odp, first - f->first + i, &f->p2p,
				       &xlt[i]);
		if (ret)
			return ret;
	}
	return 0;
}

/*
 * Make [va, va + len) of @mr present (at most @max_pages pages of it) and
 * write its translations.  @write asks for writable pages.
 */
int odpnic_odp_resolve(struct odpnic_mr *mr, u64 va, u64 len, bool write,
		       u64 max_pages)
{
	struct ib_umem_odp *odp = to_ib_umem_odp(mr->umem);
	struct odpnic_odp_fill fill = { .odp = odp };
	u64 start = ib_umem_start(odp), end = ib_umem_end(odp);
	int ret = 0;

	if (write && !mr->umem->writable)
		return -EACCES;
	va = max(va, start);
	len = min(len, end - va);
	if (va >= end || !len)
		return -EFAULT;
	fill.first = 0;
	while (len && max_pages) {
		u64 page = (va - start) >> PAGE_SHIFT;
		u64 n = min3(len, max_pages << PAGE_SHIFT,
			     (u64)ODPNIC_XLT_CHUNK << PAGE_SHIFT);
		int np;

		np = ib_umem_odp_map_dma_and_lock(odp, va, n,
						  odpnic_odp_access_mask(write),
						  true);
		if (np < 0)
			return np;
		/* umem_mutex is held: no invalidation runs until unlock. */
		if (mr->live)
			ret = odpnic_xlt_write(mr->dev, mr->key, page, np,
					       odpnic_odp_fill, &fill);
		else
			ret = -ENOENT;
		mutex_unlock(&odp->umem_mutex);
		if (ret)
			return ret;
		n = min_t(u64, len, ((page + np) << PAGE_SHIFT) + start - va);
		va += n;
		len -= n;
		max_pages -= min_t(u64, max_pages, np);
	}
	return 0;
}

static bool odpnic_odp_invalidate(struct mmu_interval_notifier *mni,
				  const struct mmu_notifier_range *range,
				  unsigned long cur_seq)
{
	struct ib_umem_odp *odp = container_of(mni, struct ib_umem_odp,
					       notifier);
	struct odpnic_mr *mr = odp->private;
	u64 start, end, idx, last;
	bool mapped = false;

	if (!mmu_notifier_range_blockable(range))
		return false;

	mutex_lock(&odp->umem_mutex);
	mmu_interval_set_seq(mni, cur_seq);
	start = max_t(u64, ib_umem_start(odp), range->start);
	end = min_t(u64, ib_umem_end(odp), range->end);
	if (start >= end)
		goto out;
	last = (end - 1 - ib_umem_start(odp)) >> PAGE_SHIFT;
	for (idx = (start - ib_umem_start(odp)) >> PAGE_SHIFT; idx <= last;
	     idx++) {
		if (odpnic_odp_page_mapped(odp, idx)) {
			mapped = true;
			break;
		}
	}
	/* Nothing of the range reached the device: no fence to send. */
	if (mapped && mr && mr->live) {
		int ret = odpnic_cmd_invalidate(mr->dev, mr->key, start,
						end - start);

		/*
		 * A failed fence leaves the device reset (odpnic_cmd_locked),
		 * so unmapping below is safe either way.
		 */
		if (ret)
			dev_err(&mr->dev->pdev->dev,
				"INVALIDATE of key %u: %d\n", mr->key, ret);
		ODPNIC_SW_INC(mr->dev, ODP_INVALIDATIONS);
	}
	ib_umem_odp_unmap_dma_pages(odp, start, end);
out:
	mutex_unlock(&odp->umem_mutex);
	return true;
}

const struct mmu_interval_notifier_ops odpnic_mni_ops = {
	.invalidate = odpnic_odp_invalidate,
};

/* Dereg: the device forgets the region before its pages are unmapped. */
void odpnic_odp_retire(struct odpnic_mr *mr)
{
	struct ib_umem_odp *odp = to_ib_umem_odp(mr->umem);

	mutex_lock(&odp->umem_mutex);
	mr->live = false;
	odpnic_cmd_num(mr->dev, ODP_NIC_CMD_DESTROY_MR, mr->key);
	mutex_unlock(&odp->umem_mutex);
}

/* ---- dma-buf ---------------------------------------------------------- */

struct odpnic_dmabuf_fill {
	struct ib_block_iter biter;
	struct ib_umem *umem;
	bool started;
	u64 flags;
};

static int odpnic_dmabuf_fill(void *ctx, u64 first, u32 count, u64 *xlt)
{
	struct odpnic_dmabuf_fill *f = ctx;
	u32 i;

	if (!f->started) {
		__rdma_umem_block_iter_start(&f->biter, f->umem, SZ_4K);
		f->started = true;
	}
	for (i = 0; i < count; i++) {
		if (!__rdma_block_iter_next(&f->biter))
			return -EFAULT;
		xlt[i] = rdma_block_iter_dma_address(&f->biter) | f->flags;
	}
	return 0;
}

/* Map the whole buffer and write its translations; under the reservation. */
static int odpnic_dmabuf_map_locked(struct odpnic_mr *mr)
{
	struct ib_umem_dmabuf *umem_dmabuf = to_ib_umem_dmabuf(mr->umem);
	struct odpnic_dmabuf_fill fill = { .umem = mr->umem };
	int ret;

	dma_resv_assert_held(umem_dmabuf->attach->dmabuf->resv);
	if (!mr->live)
		return -ENOENT;
	ret = ib_umem_dmabuf_map_pages(umem_dmabuf);
	if (ret)
		return ret;
	fill.flags = ODP_NIC_XLT_VALID | ODP_NIC_XLT_READ;
	if (mr->umem->writable)
		fill.flags |= ODP_NIC_XLT_WRITE;
	ret = odpnic_xlt_write(mr->dev, mr->key, 0, mr->npages,
			       odpnic_dmabuf_fill, &fill);
	if (ret) {
		/* Part of it may have reached the device: fence before unmap. */
		odpnic_cmd_invalidate(mr->dev, mr->key, mr->iova, mr->length);
		ib_umem_dmabuf_unmap_pages(umem_dmabuf);
	}
	return ret;
}

int odpnic_dmabuf_map(struct odpnic_mr *mr)
{
	struct dma_resv *resv = to_ib_umem_dmabuf(mr->umem)->attach->dmabuf->resv;
	int ret;

	dma_resv_lock(resv, NULL);
	ret = odpnic_dmabuf_map_locked(mr);
	dma_resv_unlock(resv);
	return ret;
}

static void odpnic_dmabuf_invalidate(struct dma_buf_attachment *attach)
{
	struct ib_umem_dmabuf *umem_dmabuf = attach->importer_priv;
	struct odpnic_mr *mr = umem_dmabuf->private;
	int ret;

	dma_resv_assert_held(attach->dmabuf->resv);
	if (!mr || !umem_dmabuf->sgt)
		return;
	if (mr->live) {
		ret = odpnic_cmd_invalidate(mr->dev, mr->key, mr->iova,
					    mr->length);
		if (ret)
			dev_err(&mr->dev->pdev->dev,
				"INVALIDATE of dma-buf key %u: %d\n", mr->key,
				ret);
		ODPNIC_SW_INC(mr->dev, DMABUF_INVALIDATIONS);
	}
	ib_umem_dmabuf_unmap_pages(umem_dmabuf);
}

const struct dma_buf_attach_ops odpnic_dmabuf_attach_ops = {
	.allow_peer2peer = true,
	.ODPNIC_IMPORTER_NOTIFY = odpnic_dmabuf_invalidate,
};

void odpnic_dmabuf_retire(struct odpnic_mr *mr)
{
	struct ib_umem_dmabuf *umem_dmabuf = to_ib_umem_dmabuf(mr->umem);
	struct dma_resv *resv = umem_dmabuf->attach->dmabuf->resv;

	dma_resv_lock(resv, NULL);
	mr->live = false;
	odpnic_cmd_num(mr->dev, ODP_NIC_CMD_DESTROY_MR, mr->key);
	if (umem_dmabuf->sgt)
		ib_umem_dmabuf_unmap_pages(umem_dmabuf);
	dma_resv_unlock(resv);
}
