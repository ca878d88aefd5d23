// SPDX-License-Identifier: GPL-2.0
/*
 * p2pgpu: BOs as dma-bufs, and a test importer.
 *
 * Exporter.  A BO lives in VRAM only, so an importer can reach it only
 * through BAR2, peer to peer.  Attach therefore refuses an importer that
 * cannot do P2P or whose PCI path P2PDMA does not allow (as amdgpu does, minus
 * the fallback to system memory that a BO here does not have).  A mapping
 * gives the importer DMA addresses of the BO's BAR2 windows, mapped for the
 * importer with dma_map_resource() (through its IOMMU): the windows stay
 * pinned in the aperture while the mapping exists.  Before the BO moves or
 * its windows go, dynamic importers get move_notify and must unmap; pinned
 * attachments hold the BO in place and keep EVICT away (-EBUSY).
 *
 * Importer (IMPORT ioctl).  The same thing an RDMA driver's ib_umem_dmabuf
 * does, on this GPU's copy engine: attach dynamically (or dynamically and
 * pinned, as ib_umem_dmabuf_get_pinned()), map under the reservation lock,
 * and read the exporter's memory at the DMA addresses it was given into a
 * local BO.  move_notify unmaps at once, so the next IMPORT maps again.
 */
#include <linux/dma-buf.h>
#include <linux/dma-mapping.h>
#include <linux/dma-resv.h>
#include <linux/file.h>
#include <linux/pci-p2pdma.h>
#include <linux/scatterlist.h>
#include <linux/sizes.h>
#include <linux/slab.h>
#include <linux/module.h>

#include "p2pgpu_drv.h"
#include "p2pgpu_compat.h"

P2PGPU_IMPORT_DMA_BUF_NS();

struct p2pgpu_exported {
	struct p2pgpu_bo *bo;
	struct dma_buf *dmabuf;
	struct list_head link;		/* on bo->exports, under bo->resv */
};

static int p2pgpu_dmabuf_attach(struct dma_buf *dmabuf,
				struct dma_buf_attachment *attach)
{
	struct p2pgpu_exported *exp = dmabuf->priv;
	struct p2pgpu_dev *gpu = exp->bo->gpu;

	if (!attach->peer2peer) {
		dev_dbg(&gpu->pdev->dev, "%s cannot take peer-to-peer memory\n",
			dev_name(attach->dev));
		return -EREMOTEIO;
	}
	if (pci_p2pdma_distance(gpu->pdev, attach->dev, true) < 0)
		return -EREMOTEIO;
	return 0;
}

/* Pin every granule of the BO in the aperture; undo on failure. */
static int p2pgpu_bo_pin_windows(struct p2pgpu_bo *bo)
{
	struct p2pgpu_dev *gpu = bo->gpu;
	u64 g = 1ull << gpu->granule_shift, off, bar;
	int ret;

	lockdep_assert_held(&gpu->mm_lock);
	for (off = round_down(bo->vram_off, g); off < bo->vram_off + bo->size; off += g) {
		ret = p2pgpu_aperture_get(gpu, off, true, &bar);
		if (ret) {
			while (off > round_down(bo->vram_off, g)) {
				off -= g;
				p2pgpu_aperture_unpin(gpu, off);
			}
			return ret;
		}
	}
	return 0;
}

static void p2pgpu_bo_unpin_windows(struct p2pgpu_bo *bo)
{
	struct p2pgpu_dev *gpu = bo->gpu;
	u64 g = 1ull << gpu->granule_shift, off;

	lockdep_assert_held(&gpu->mm_lock);
	for (off = round_down(bo->vram_off, g); off < bo->vram_off + bo->size; off += g)
		p2pgpu_aperture_unpin(gpu, off);
}

static int p2pgpu_dmabuf_pin(struct dma_buf_attachment *attach)
{
	struct p2pgpu_exported *exp = attach->dmabuf->priv;
	struct p2pgpu_dev *gpu = exp->bo->gpu;
	int ret;

	mutex_lock(&gpu->mm_lock);
	ret = p2pgpu_bo_pin_windows(exp->bo);
	if (!ret)
		exp->bo->pins++;
	mutex_unlock(&gpu->mm_lock);
	return ret;
}

static void p2pgpu_dmabuf_unpin(struct dma_buf_attachment *attach)
{
	struct p2pgpu_exported *exp = attach->dmabuf->priv;
	struct p2pgpu_dev *gpu = exp->bo->gpu;

	mutex_lock(&gpu->mm_lock);
	p2pgpu_bo_unpin_windows(exp->bo);
	exp->bo->pins--;
	mutex_unlock(&gpu->mm_lock);
}

/*
 * The length of the run of @bo at @off that is contiguous in BAR2 (the rest
 * of the BO in direct mode, at most the rest of the granule when windowed),
 * capped at @seg_max.
 */
static u64 p2pgpu_dmabuf_run(struct p2pgpu_bo *bo, u64 off, u64 seg_max)
{
	struct p2pgpu_dev *gpu = bo->gpu;
	u64 g = 1ull << gpu->granule_shift, vram = bo->vram_off + off;
	u64 len = bo->size - off;

	if (gpu->mode == P2PGPU_APERTURE_WINDOWED)
		len = min(len, round_down(vram, g) + g - vram);
	return min(len, seg_max);
}

/* The largest DMA segment the importer takes, within sg's 32-bit lengths. */
static u64 p2pgpu_dmabuf_seg_max(struct dma_buf_attachment *attach)
{
	u64 max = min_t(u64, dma_get_max_seg_size(attach->dev), SZ_2G);

	return max_t(u64, round_down(max, PAGE_SIZE), PAGE_SIZE);
}

#ifdef P2PGPU_HAVE_DMA_BUF_PHYS_VEC
/*
 * The P2P-aware way: dma_buf_phys_vec_to_sgt() asks P2PDMA how the importer
 * reaches BAR2 (pci_p2pdma_map_type() is not exported) and gives bus
 * addresses under a common switch, IOVAs of the importer's IOMMU through the
 * host bridge, nothing where P2PDMA refuses.
 *
 * 7.2.13's helper links every range at IOVA offset 0 (dma_iova_link(...,
 * paddr, 0, len, ...)), so with an IOMMU a call with more than one range
 * fails with -EADDRINUSE: a windowed BO across granules.  The driver calls it
 * once per range and gathers the results; dmabuf_one_call=1 makes one call
 * for all ranges, to reproduce the bug or to test a fix.
 */
static bool dmabuf_one_call;
module_param(dmabuf_one_call, bool, 0444);
MODULE_PARM_DESC(dmabuf_one_call,
		 "Map a dma-buf with one dma_buf_phys_vec_to_sgt() call for all its ranges");

/* What the importer gets, and the helper's per-range tables behind it. */
struct p2pgpu_dmabuf_sgt {
	struct sg_table sgt;
	unsigned int nparts;
	struct sg_table *part[] __counted_by(nparts);
};

static void p2pgpu_dmabuf_free_parts(struct dma_buf_attachment *attach,
				     struct p2pgpu_dmabuf_sgt *m,
				     enum dma_data_direction dir)
{
	unsigned int i;

	for (i = 0; i < m->nparts; i++)
		if (!IS_ERR_OR_NULL(m->part[i]))
			dma_buf_free_sgt(attach, m->part[i], dir);
	kfree(m);
}

static struct sg_table *p2pgpu_dmabuf_map_parts(struct dma_buf_attachment *attach,
						struct p2pgpu_bo *bo, struct phys_vec *vec,
						unsigned int n, enum dma_data_direction dir)
{
	struct p2pgpu_dmabuf_sgt *m;
	struct scatterlist *sg, *out;
	unsigned int i, j, nents = 0;
	int ret;

	m = kzalloc(struct_size(m, part, n), GFP_KERNEL);
	if (!m)
		return ERR_PTR(-ENOMEM);
	m->nparts = n;
	for (i = 0; i < n; i++) {
		m->part[i] = dma_buf_phys_vec_to_sgt(attach, bo->gpu->provider, &vec[i], 1,
						     vec[i].len, dir);
		if (IS_ERR(m->part[i])) {
			ret = PTR_ERR(m->part[i]);
			goto err;
		}
		nents += m->part[i]->nents;
	}
	ret = sg_alloc_table(&m->sgt, nents, GFP_KERNEL);
	if (ret)
		goto err;
	out = m->sgt.sgl;
	for (i = 0; i < n; i++) {
		for_each_sgtable_dma_sg(m->part[i], sg, j) {
			sg_dma_address(out) = sg_dma_address(sg);
			sg_dma_len(out) = sg_dma_len(sg);
			out = sg_next(out);
		}
	}
	m->sgt.orig_nents = 0;	/* DMA addresses only, as the helper's */
	return &m->sgt;

err:
	p2pgpu_dmabuf_free_parts(attach, m, dir);
	return ERR_PTR(ret);
}

static struct sg_table *p2pgpu_dmabuf_map_ranges(struct dma_buf_attachment *attach,
						 struct p2pgpu_bo *bo,
						 enum dma_data_direction dir)
{
	struct p2pgpu_dev *gpu = bo->gpu;
	u64 seg_max = p2pgpu_dmabuf_seg_max(attach);
	struct phys_vec *vec;
	struct sg_table *sgt;
	unsigned int n = 0;
	u64 off, len, bar;

	for (off = 0; off < bo->size; off += p2pgpu_dmabuf_run(bo, off, seg_max))
		n++;
	vec = kcalloc(n, sizeof(*vec), GFP_KERNEL);
	if (!vec)
		return ERR_PTR(-ENOMEM);
	for (off = 0, n = 0; off < bo->size; off += len, n++) {
		len = p2pgpu_dmabuf_run(bo, off, seg_max);
		p2pgpu_aperture_get(gpu, bo->vram_off + off, false, &bar); /* pinned */
		vec[n].paddr = gpu->bar_phys + bar;
		vec[n].len = len;
	}
	if (dmabuf_one_call)
		sgt = dma_buf_phys_vec_to_sgt(attach, gpu->provider, vec, n, bo->size, dir);
	else
		sgt = p2pgpu_dmabuf_map_parts(attach, bo, vec, n, dir);
	kfree(vec);
	return sgt;
}

static void p2pgpu_dmabuf_unmap_ranges(struct dma_buf_attachment *attach,
				       struct sg_table *sgt, enum dma_data_direction dir)
{
	struct p2pgpu_dmabuf_sgt *m;

	if (dmabuf_one_call) {
		dma_buf_free_sgt(attach, sgt, dir);
		return;
	}
	m = container_of(sgt, struct p2pgpu_dmabuf_sgt, sgt);
	sg_free_table(&m->sgt);
	p2pgpu_dmabuf_free_parts(attach, m, dir);
}
#else
/*
 * Before the P2PDMA provider API (6.19), as amdgpu does: each BAR2 run mapped
 * for the importer with dma_map_resource(), through its IOMMU, in segments
 * its DMA parameters allow (sg lengths are 32-bit).
 */
static void p2pgpu_sgt_unmap(struct device *dev, struct sg_table *sgt,
			     unsigned int n, enum dma_data_direction dir)
{
	struct scatterlist *sg;
	unsigned int i;

	for_each_sgtable_dma_sg(sgt, sg, i) {
		if (i == n)
			break;
		dma_unmap_resource(dev, sg_dma_address(sg), sg_dma_len(sg), dir,
				   DMA_ATTR_SKIP_CPU_SYNC);
	}
}

static struct sg_table *p2pgpu_dmabuf_map_ranges(struct dma_buf_attachment *attach,
						 struct p2pgpu_bo *bo,
						 enum dma_data_direction dir)
{
	struct p2pgpu_dev *gpu = bo->gpu;
	u64 seg_max = p2pgpu_dmabuf_seg_max(attach);
	unsigned int nsegs = 0, mapped = 0;
	struct scatterlist *sg;
	struct sg_table *sgt;
	u64 off, len, bar;
	int ret;

	sgt = kzalloc(sizeof(*sgt), GFP_KERNEL);
	if (!sgt)
		return ERR_PTR(-ENOMEM);
	for (off = 0; off < bo->size; off += p2pgpu_dmabuf_run(bo, off, seg_max))
		nsegs++;
	ret = sg_alloc_table(sgt, nsegs, GFP_KERNEL);
	if (ret)
		goto err_free;
	sg = sgt->sgl;
	for (off = 0; off < bo->size; off += len) {
		dma_addr_t addr;

		len = p2pgpu_dmabuf_run(bo, off, seg_max);
		p2pgpu_aperture_get(gpu, bo->vram_off + off, false, &bar); /* pinned */
		addr = dma_map_resource(attach->dev, gpu->bar_phys + bar, len, dir,
					DMA_ATTR_SKIP_CPU_SYNC);
		if (dma_mapping_error(attach->dev, addr)) {
			ret = -ENOMEM;
			goto err_map;
		}
		sg_set_page(sg, NULL, len, 0);
		sg_dma_address(sg) = addr;
		sg_dma_len(sg) = len;
		mapped++;
		sg = sg_next(sg);
	}
	sgt->nents = mapped;
	return sgt;

err_map:
	p2pgpu_sgt_unmap(attach->dev, sgt, mapped, dir);
	sg_free_table(sgt);
err_free:
	kfree(sgt);
	return ERR_PTR(ret);
}

static void p2pgpu_dmabuf_unmap_ranges(struct dma_buf_attachment *attach,
				       struct sg_table *sgt, enum dma_data_direction dir)
{
	p2pgpu_sgt_unmap(attach->dev, sgt, sgt->nents, dir);
	sg_free_table(sgt);
	kfree(sgt);
}
#endif

/* The BO's windows stay pinned while the importer holds the mapping. */
static struct sg_table *p2pgpu_dmabuf_map(struct dma_buf_attachment *attach,
					  enum dma_data_direction dir)
{
	struct p2pgpu_exported *exp = attach->dmabuf->priv;
	struct p2pgpu_bo *bo = exp->bo;
	struct p2pgpu_dev *gpu = bo->gpu;
	struct sg_table *sgt;
	int ret;

	dma_resv_assert_held(&bo->resv);
	mutex_lock(&gpu->mm_lock);
	ret = p2pgpu_bo_pin_windows(bo);
	if (ret) {
		mutex_unlock(&gpu->mm_lock);
		return ERR_PTR(ret);
	}
	sgt = p2pgpu_dmabuf_map_ranges(attach, bo, dir);
	if (IS_ERR(sgt))
		p2pgpu_bo_unpin_windows(bo);
	else
		bo->mapped++;
	mutex_unlock(&gpu->mm_lock);
	return sgt;
}

static void p2pgpu_dmabuf_unmap(struct dma_buf_attachment *attach,
				struct sg_table *sgt, enum dma_data_direction dir)
{
	struct p2pgpu_exported *exp = attach->dmabuf->priv;
	struct p2pgpu_dev *gpu = exp->bo->gpu;

	p2pgpu_dmabuf_unmap_ranges(attach, sgt, dir);
	mutex_lock(&gpu->mm_lock);
	p2pgpu_bo_unpin_windows(exp->bo);
	exp->bo->mapped--;
	mutex_unlock(&gpu->mm_lock);
}

static void p2pgpu_dmabuf_release(struct dma_buf *dmabuf)
{
	struct p2pgpu_exported *exp = dmabuf->priv;
	struct p2pgpu_bo *bo = exp->bo;
	struct p2pgpu_dev *gpu = bo->gpu;

	dma_resv_lock(&bo->resv, NULL);
	list_del(&exp->link);
	dma_resv_unlock(&bo->resv);
	kfree(exp);
	p2pgpu_bo_put(bo);
	p2pgpu_user_put(gpu);
}

static const struct dma_buf_ops p2pgpu_dmabuf_ops = {
	.attach = p2pgpu_dmabuf_attach,
	.pin = p2pgpu_dmabuf_pin,
	.unpin = p2pgpu_dmabuf_unpin,
	.map_dma_buf = p2pgpu_dmabuf_map,
	.unmap_dma_buf = p2pgpu_dmabuf_unmap,
	.release = p2pgpu_dmabuf_release,
};

int p2pgpu_dmabuf_export(struct p2pgpu_bo *bo, u32 flags)
{
	DEFINE_DMA_BUF_EXPORT_INFO(info);
	struct p2pgpu_dev *gpu = bo->gpu;
	struct p2pgpu_exported *exp;
	struct dma_buf *dmabuf;
	int fd;

	exp = kzalloc(sizeof(*exp), GFP_KERNEL);
	if (!exp)
		return -ENOMEM;
	exp->bo = bo;
	info.ops = &p2pgpu_dmabuf_ops;
	info.size = bo->size;
	info.flags = O_RDWR;
	info.priv = exp;
	info.resv = &bo->resv;
	kref_get(&bo->ref);
	atomic_inc(&gpu->users);
	dmabuf = dma_buf_export(&info);
	if (IS_ERR(dmabuf)) {
		atomic_dec(&gpu->users);
		p2pgpu_bo_put(bo);
		kfree(exp);
		return PTR_ERR(dmabuf);
	}
	exp->dmabuf = dmabuf;
	dma_resv_lock(&bo->resv, NULL);
	list_add(&exp->link, &bo->exports);
	dma_resv_unlock(&bo->resv);
	P2PGPU_STAT_INC(gpu, exports);

	fd = dma_buf_fd(dmabuf, flags);
	if (fd < 0)
		dma_buf_put(dmabuf);	/* release undoes the rest */
	return fd;
}

/*
 * Tell every dynamic importer of every export of @bo that its mappings are
 * going, and wait for the fences they leave on the reservation.  Called with
 * bo->resv held and mm_lock not held: importers unmap from the callback.
 */
void p2pgpu_dmabuf_move_notify(struct p2pgpu_bo *bo)
{
	struct p2pgpu_exported *exp;

	dma_resv_assert_held(&bo->resv);
	list_for_each_entry(exp, &bo->exports, link) {
		p2pgpu_dma_buf_notify(exp->dmabuf);
		P2PGPU_STAT_INC(bo->gpu, move_notifies);
	}
	dma_resv_wait_timeout(&bo->resv, DMA_RESV_USAGE_BOOKKEEP, false,
			      MAX_SCHEDULE_TIMEOUT);
}

/* ---- the test importer ------------------------------------------------- */

struct p2pgpu_import_att {
	struct p2pgpu_dev *gpu;
	struct dma_buf *dmabuf;
	struct dma_buf_attachment *attach;
	struct sg_table *sgt;		/* current mapping, under dmabuf->resv */
	bool pinned;
	u32 move_notifies;
	u32 maps;
};

static void p2pgpu_importer_notify(struct dma_buf_attachment *attach)
{
	struct p2pgpu_import_att *att = attach->importer_priv;

	dma_resv_assert_held(attach->dmabuf->resv);
	att->move_notifies++;
	/* Our copies finish before the ioctl returns: nothing is in flight. */
	if (att->sgt) {
		dma_buf_unmap_attachment(attach, att->sgt, DMA_BIDIRECTIONAL);
		att->sgt = NULL;
	}
}

static const struct dma_buf_attach_ops p2pgpu_importer_ops = {
	.allow_peer2peer = true,
	.P2PGPU_IMPORTER_NOTIFY = p2pgpu_importer_notify,
};

static void p2pgpu_import_detach(struct p2pgpu_import_att *att)
{
	struct dma_resv *resv = att->dmabuf->resv;

	dma_resv_lock(resv, NULL);
	if (att->sgt)
		dma_buf_unmap_attachment(att->attach, att->sgt, DMA_BIDIRECTIONAL);
	if (att->pinned)
		dma_buf_unpin(att->attach);
	dma_resv_unlock(resv);
	dma_buf_detach(att->dmabuf, att->attach);
	dma_buf_put(att->dmabuf);
	kfree(att);
}

void p2pgpu_dmabuf_imports_release(struct xarray *imports)
{
	struct p2pgpu_import_att *att;
	unsigned long idx;

	xa_for_each(imports, idx, att)
		p2pgpu_import_detach(att);
	xa_destroy(imports);
}

static struct p2pgpu_import_att *
p2pgpu_import_attach(struct p2pgpu_dev *gpu, struct dma_buf *dmabuf, bool pinned)
{
	struct p2pgpu_import_att *att;
	int ret;

	att = kzalloc(sizeof(*att), GFP_KERNEL);
	if (!att)
		return ERR_PTR(-ENOMEM);
	att->gpu = gpu;
	att->dmabuf = dmabuf;
	att->attach = dma_buf_dynamic_attach(dmabuf, &gpu->pdev->dev,
					     &p2pgpu_importer_ops, att);
	if (IS_ERR(att->attach)) {
		ret = PTR_ERR(att->attach);
		kfree(att);
		return ERR_PTR(ret);
	}
	if (pinned) {
		dma_resv_lock(dmabuf->resv, NULL);
		ret = dma_buf_pin(att->attach);
		dma_resv_unlock(dmabuf->resv);
		if (ret) {
			dma_buf_detach(dmabuf, att->attach);
			kfree(att);
			return ERR_PTR(ret);
		}
		att->pinned = true;
	}
	return att;
}

/*
 * The DMA segments of [offset, offset + size) of the importer's mapping, as
 * a scatterlist the copy engine can take.
 */
static int p2pgpu_import_slice(struct sg_table *map, u64 offset, u64 size,
			       struct sg_table *out)
{
	struct scatterlist *sg, *o;
	unsigned int i, n = 0;
	u64 pos = 0;
	int ret;

	for_each_sgtable_dma_sg(map, sg, i) {
		if (pos + sg_dma_len(sg) > offset && pos < offset + size)
			n++;
		pos += sg_dma_len(sg);
	}
	if (!n || offset + size > pos)
		return -EINVAL;
	ret = sg_alloc_table(out, n, GFP_KERNEL);
	if (ret)
		return ret;
	o = out->sgl;
	pos = 0;
	for_each_sgtable_dma_sg(map, sg, i) {
		u64 start = max(pos, offset), end = min(pos + sg_dma_len(sg), offset + size);

		if (start < end) {
			sg_dma_address(o) = sg_dma_address(sg) + (start - pos);
			sg_dma_len(o) = end - start;
			o = sg_next(o);
		}
		pos += sg_dma_len(sg);
	}
	out->nents = n;
	return 0;
}

int p2pgpu_dmabuf_import(struct p2pgpu_dev *gpu, struct xarray *imports,
			 struct p2pgpu_bo *dst, struct p2pgpu_import *args)
{
	struct p2pgpu_import_att *att;
	struct dma_buf *dmabuf;
	struct sg_table slice;
	int ret;

	dmabuf = dma_buf_get(args->fd);
	if (IS_ERR(dmabuf))
		return PTR_ERR(dmabuf);
	if (!args->size || args->size > dst->size ||
	    args->offset > dmabuf->size || args->size > dmabuf->size - args->offset) {
		dma_buf_put(dmabuf);
		return -EINVAL;
	}
	att = xa_load(imports, (unsigned long)dmabuf);
	if (att) {
		dma_buf_put(dmabuf);	/* the attachment holds one */
	} else {
		att = p2pgpu_import_attach(gpu, dmabuf,
					   args->flags & P2PGPU_IMPORT_PINNED);
		if (IS_ERR(att)) {
			dma_buf_put(dmabuf);
			return PTR_ERR(att);
		}
		ret = xa_insert(imports, (unsigned long)dmabuf, att, GFP_KERNEL);
		if (ret) {
			p2pgpu_import_detach(att);
			return ret;
		}
	}

	dma_resv_lock(dmabuf->resv, NULL);
	if (!att->sgt) {
		struct sg_table *sgt;

		sgt = dma_buf_map_attachment(att->attach, DMA_BIDIRECTIONAL);
		if (IS_ERR(sgt)) {
			ret = PTR_ERR(sgt);
			goto out_unlock;
		}
		att->sgt = sgt;
		att->maps++;
		/* As a dynamic importer must: the move that made us remap may still run. */
		dma_resv_wait_timeout(dmabuf->resv, DMA_RESV_USAGE_KERNEL, false,
				      MAX_SCHEDULE_TIMEOUT);
	}
	args->nents = att->sgt->nents;
	ret = p2pgpu_import_slice(att->sgt, args->offset, args->size, &slice);
	if (ret)
		goto out_unlock;
	/* The mapping cannot go while we hold the reservation: copy through it. */
	mutex_lock(&gpu->mm_lock);
	ret = p2pgpu_ce_run_sg(gpu, P2P_GPU_OP_HOST_TO_VRAM, dst->vram_off,
			       slice.sgl, slice.nents, &args->dev_status);
	mutex_unlock(&gpu->mm_lock);
	sg_free_table(&slice);
out_unlock:
	args->move_notifies = att->move_notifies;
	args->maps = att->maps;
	dma_resv_unlock(dmabuf->resv);
	return ret;
}
