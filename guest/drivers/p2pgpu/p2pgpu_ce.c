// SPDX-License-Identifier: GPL-2.0
/*
 * p2pgpu: the copy engine.
 *
 * One ring of descriptors in coherent memory and one job on it at a time
 * (ce.lock): a job is up to ring-1 descriptors, the last one asks for an
 * interrupt, and the submitter sleeps until the engine's completed count has
 * moved past the job (or the engine halted).  Both MSI-X vectors wake it: a
 * job whose last descriptor fails raises COPY_ERROR instead of COPY_DONE.
 * Each descriptor's own status word says how it ended; the first failure is
 * returned as an errno together with the device's code.
 *
 * A job that does not complete in copy_timeout_ms is a device hang as far as
 * the driver is concerned: the engine is reset (which stops any DMA before
 * the caller unpins its pages) and the job fails with -ETIMEDOUT.
 */
#include <linux/dma-mapping.h>
#include <linux/module.h>
#include <linux/mm.h>
#include <linux/pci-p2pdma.h>
#include <linux/scatterlist.h>
#include <linux/slab.h>

#include "p2pgpu_drv.h"

static unsigned int copy_timeout_ms = 10000;
module_param(copy_timeout_ms, uint, 0644);
MODULE_PARM_DESC(copy_timeout_ms, "Copy-engine job timeout before the engine is reset");

#define P2PGPU_RING_SIZE	256
#define P2PGPU_SG_ENTRIES	4096	/* 64 KiB of sg lists per job */
#define P2PGPU_PIN_CHUNK	1024	/* user pages pinned per job */

int p2pgpu_ce_errno(u32 code)
{
	switch (code) {
	case P2P_GPU_CE_OK:
		return 0;
	case P2P_GPU_CE_VRAM_RANGE:
		return -ERANGE;
	case P2P_GPU_CE_BAD_DESC:
	case P2P_GPU_CE_BAD_LEN:
	case P2P_GPU_CE_SG_FAULT:
		return -EINVAL;
	default:		/* DMA_FAULT, INJECTED, RING_FAULT, unknown */
		return -EIO;
	}
}

void p2pgpu_ce_wake(struct p2pgpu_dev *gpu)
{
	wake_up(&gpu->ce.wq);
}

/* Program the ring; the engine starts empty.  Called with ce.lock or at init. */
int p2pgpu_ce_start(struct p2pgpu_dev *gpu)
{
	struct p2pgpu_ce *ce = &gpu->ce;

	p2pgpu_wr(gpu, P2P_GPU_REG_CE_CTRL, P2P_GPU_CE_CTRL_RESET);
	p2pgpu_wr64(gpu, P2P_GPU_REG_CE_RING_BASE, ce->ring_dma);
	p2pgpu_wr(gpu, P2P_GPU_REG_CE_RING_SIZE, ce->ring_size);
	p2pgpu_wr(gpu, P2P_GPU_REG_CE_CTRL, P2P_GPU_CE_CTRL_ENABLE);
	ce->tail = 0;
	if (p2pgpu_rd(gpu, P2P_GPU_REG_CE_HEAD) != 0 ||
	    !(p2pgpu_rd(gpu, P2P_GPU_REG_CE_CTRL) & P2P_GPU_CE_CTRL_ENABLE))
		return -EIO;
	return 0;
}

int p2pgpu_ce_init(struct p2pgpu_dev *gpu)
{
	struct p2pgpu_ce *ce = &gpu->ce;
	struct device *dev = &gpu->pdev->dev;

	ce->ring_size = P2PGPU_RING_SIZE;
	ce->ring = dma_alloc_coherent(dev, ce->ring_size * sizeof(*ce->ring),
				      &ce->ring_dma, GFP_KERNEL);
	ce->sg_entries = P2PGPU_SG_ENTRIES;
	ce->sg = dma_alloc_coherent(dev, ce->sg_entries * sizeof(*ce->sg),
				    &ce->sg_dma, GFP_KERNEL);
	if (!ce->ring || !ce->sg) {
		p2pgpu_ce_fini(gpu);
		return -ENOMEM;
	}
	if (p2pgpu_ce_start(gpu)) {
		dev_err(dev, "copy engine does not start\n");
		p2pgpu_ce_fini(gpu);
		return -EIO;
	}
	return 0;
}

void p2pgpu_ce_fini(struct p2pgpu_dev *gpu)
{
	struct p2pgpu_ce *ce = &gpu->ce;
	struct device *dev = &gpu->pdev->dev;

	p2pgpu_wr(gpu, P2P_GPU_REG_CE_CTRL, P2P_GPU_CE_CTRL_RESET);
	if (ce->sg)
		dma_free_coherent(dev, ce->sg_entries * sizeof(*ce->sg), ce->sg, ce->sg_dma);
	if (ce->ring)
		dma_free_coherent(dev, ce->ring_size * sizeof(*ce->ring), ce->ring,
				  ce->ring_dma);
	ce->sg = NULL;
	ce->ring = NULL;
}

static bool p2pgpu_ce_idle(struct p2pgpu_dev *gpu, u32 start, u32 n)
{
	return p2pgpu_rd(gpu, P2P_GPU_REG_CE_COMPLETED) - start >= n ||
	       (p2pgpu_rd(gpu, P2P_GPU_REG_CE_STATUS) & P2P_GPU_CE_STATUS_HALTED);
}

/*
 * Run the @n descriptors written at ring[tail...] and wait for them.  The
 * first failed descriptor's code goes to *dev_status (if still 0).
 */
static int p2pgpu_ce_exec(struct p2pgpu_dev *gpu, u32 n, u32 *dev_status)
{
	struct p2pgpu_ce *ce = &gpu->ce;
	u32 start, i, code;
	bool halted;
	long left;
	int ret = 0;

	lockdep_assert_held(&ce->lock);
	if (gpu->dead)
		return -ENODEV;
	ce->ring[(ce->tail + n - 1) % ce->ring_size].ctrl |= P2P_GPU_DESC_INTR;
	start = p2pgpu_rd(gpu, P2P_GPU_REG_CE_COMPLETED);
	/* Descriptors and sg lists are in coherent memory: order, then ring. */
	dma_wmb();
	p2pgpu_wr(gpu, P2P_GPU_REG_CE_TAIL, (ce->tail + n) % ce->ring_size);
	left = wait_event_timeout(ce->wq, p2pgpu_ce_idle(gpu, start, n),
				  msecs_to_jiffies(copy_timeout_ms));
	dma_rmb();
	halted = p2pgpu_rd(gpu, P2P_GPU_REG_CE_STATUS) & P2P_GPU_CE_STATUS_HALTED;

	for (i = 0; i < n; i++) {
		struct p2p_gpu_desc *d = &ce->ring[(ce->tail + i) % ce->ring_size];
		u32 status = READ_ONCE(d->status);

		if (!(status & P2P_GPU_DESC_DONE)) {
			/* Never reached: the ring faulted, or time ran out. */
			if (!halted) {
				ret = ret ?: -ETIMEDOUT;
				continue;
			}
			code = P2P_GPU_CE_RING_FAULT;
		} else {
			code = status & P2P_GPU_DESC_ERR_MASK;
			if (!code) {
				P2PGPU_STAT_INC(gpu, copies);
				P2PGPU_STAT_ADD(gpu, copy_bytes, READ_ONCE(d->xfer));
				continue;
			}
		}
		/* A descriptor the engine never reached is not a copy error. */
		if (status & P2P_GPU_DESC_DONE)
			P2PGPU_STAT_INC(gpu, copy_errors);
		if (!ret) {
			ret = p2pgpu_ce_errno(code);
			if (dev_status && !*dev_status)
				*dev_status = code;
			dev_dbg(&gpu->pdev->dev,
				"copy failed: op %u vram %#llx addr %#llx len %u: status %u\n",
				d->ctrl & P2P_GPU_DESC_OP_MASK, d->vram_off, d->addr,
				d->len, code);
		}
	}
	ce->tail = (ce->tail + n) % ce->ring_size;

	if (!left || halted) {
		if (!halted) {
			P2PGPU_STAT_INC(gpu, copy_timeouts);
			dev_err(&gpu->pdev->dev, "copy engine: no completion in %u ms, resetting it\n",
				copy_timeout_ms);
			ret = -ETIMEDOUT;
		} else {
			/* The device counts a ring fault as one more error. */
			P2PGPU_STAT_INC(gpu, ring_faults);
			P2PGPU_STAT_INC(gpu, copy_errors);
			dev_err(&gpu->pdev->dev, "copy engine halted on a ring fault, resetting it\n");
			ret = -EIO;
		}
		if (p2pgpu_ce_start(gpu)) {
			dev_err(&gpu->pdev->dev, "copy engine does not restart: device disabled\n");
			gpu->dead = true;
		}
	}
	return ret;
}

static void p2pgpu_ce_desc(struct p2pgpu_ce *ce, u32 i, u32 ctrl, u32 len,
			   u64 vram_off, u64 addr)
{
	struct p2p_gpu_desc *d = &ce->ring[(ce->tail + i) % ce->ring_size];

	d->ctrl = ctrl;
	d->len = len;
	d->vram_off = vram_off;
	d->addr = addr;
	d->status = 0;
	d->xfer = 0;
}

int p2pgpu_ce_run(struct p2pgpu_dev *gpu, const struct p2pgpu_xfer *x,
		  unsigned int n, u32 *dev_status)
{
	struct p2pgpu_ce *ce = &gpu->ce;
	unsigned int done = 0;
	int ret = 0;

	mutex_lock(&ce->lock);
	while (done < n && !ret) {
		u32 batch = min_t(u32, n - done, ce->ring_size - 1), i;

		for (i = 0; i < batch; i++) {
			const struct p2pgpu_xfer *t = &x[done + i];

			p2pgpu_ce_desc(ce, i, t->op, t->len, t->vram_off, t->addr);
		}
		ret = p2pgpu_ce_exec(gpu, batch, dev_status);
		done += batch;
	}
	mutex_unlock(&ce->lock);
	return ret;
}

/*
 * Copy between VRAM [vram_off, ...) and a DMA-mapped scatterlist, in SGL
 * descriptors of at most 256 entries and 64 MiB each.
 */
int p2pgpu_ce_run_sg(struct p2pgpu_dev *gpu, u32 op, u64 vram_off,
		     struct scatterlist *sgl, unsigned int nents, u32 *dev_status)
{
	struct p2pgpu_ce *ce = &gpu->ce;
	struct scatterlist *sg = sgl;
	dma_addr_t seg_addr = 0;
	u32 seg_left = 0, ndesc = 0, nsg = 0, first_sg = 0, desc_len = 0;
	int ret = 0;

	mutex_lock(&ce->lock);
	for (;;) {
		bool flush_desc, last;

		if (!seg_left && sg && nents) {
			seg_addr = sg_dma_address(sg);
			seg_left = sg_dma_len(sg);
			sg = sg_next(sg);
			nents--;
		}
		if (seg_left) {
			u32 len = min_t(u32, seg_left, P2P_GPU_CE_MAX_LEN - desc_len);
			struct p2p_gpu_sg *e = &ce->sg[nsg++];

			e->addr = seg_addr;
			e->len = len;
			e->rsvd = 0;
			seg_addr += len;
			seg_left -= len;
			desc_len += len;
		}
		last = !seg_left && (!sg || !nents);
		flush_desc = desc_len && (last || nsg - first_sg == P2P_GPU_CE_MAX_SEGS ||
					  desc_len == P2P_GPU_CE_MAX_LEN ||
					  nsg == ce->sg_entries);
		if (flush_desc) {
			p2pgpu_ce_desc(ce, ndesc++, op | P2P_GPU_DESC_SGL, nsg - first_sg,
				       vram_off, ce->sg_dma + first_sg * sizeof(*ce->sg));
			vram_off += desc_len;
			desc_len = 0;
			first_sg = nsg;
		}
		if (ndesc && (last || ndesc == ce->ring_size - 1 || nsg == ce->sg_entries)) {
			ret = p2pgpu_ce_exec(gpu, ndesc, dev_status);
			ndesc = 0;
			nsg = 0;
			first_sg = 0;
			if (ret)
				break;
		}
		if (last)
			break;
	}
	mutex_unlock(&ce->lock);
	return ret;
}

/* A run of user pages that are this GPU's own VRAM: VRAM-to-VRAM copies. */
static int p2pgpu_copy_local(struct p2pgpu_dev *gpu, struct page **pages,
			     unsigned int n, u32 first_off, u64 len, u64 bo_vram,
			     bool to_bo, u32 *dev_status)
{
	struct p2pgpu_xfer *x;
	unsigned int i, nx = 0;
	u64 done = 0;
	int ret;

	x = kcalloc(n, sizeof(*x), GFP_KERNEL);
	if (!x)
		return -ENOMEM;
	for (i = 0; i < n && done < len; i++) {
		u32 poff = i ? 0 : first_off;
		u32 plen = min_t(u64, PAGE_SIZE - poff, len - done);
		u64 v;

		if (!p2pgpu_bar_to_vram(gpu, page_to_phys(pages[i]), &v)) {
			kfree(x);
			return -EFAULT;
		}
		v += poff;
		x[nx++] = (struct p2pgpu_xfer){
			.op = P2P_GPU_OP_VRAM_TO_VRAM,
			.vram_off = to_bo ? bo_vram + done : v,
			.addr = to_bo ? v : bo_vram + done,
			.len = plen,
		};
		done += plen;
	}
	ret = p2pgpu_ce_run(gpu, x, nx, dev_status);
	kfree(x);
	return ret;
}

/* A run of system (or another device's P2PDMA) pages: map them, SGL copy. */
static int p2pgpu_copy_mapped(struct p2pgpu_dev *gpu, struct page **pages,
			      unsigned int n, u32 first_off, u64 len, u64 bo_vram,
			      bool to_bo, u32 *dev_status)
{
	enum dma_data_direction dir = to_bo ? DMA_TO_DEVICE : DMA_FROM_DEVICE;
	struct device *dev = &gpu->pdev->dev;
	struct sg_table sgt;
	int ret;

	ret = sg_alloc_table_from_pages_segment(&sgt, pages, n, first_off, len,
						dma_get_max_seg_size(dev), GFP_KERNEL);
	if (ret)
		return ret;
	/* P2P-aware: another device's P2PDMA pages get bus or IOVA addresses. */
	ret = dma_map_sgtable(dev, &sgt, dir, 0);
	if (ret)
		goto out;
	ret = p2pgpu_ce_run_sg(gpu, to_bo ? P2P_GPU_OP_HOST_TO_VRAM : P2P_GPU_OP_VRAM_TO_HOST,
			       bo_vram, sgt.sgl, sgt.nents, dev_status);
	dma_unmap_sgtable(dev, &sgt, dir, 0);
out:
	sg_free_table(&sgt);
	return ret;
}

static bool p2pgpu_page_is_local(struct p2pgpu_dev *gpu, struct page *page)
{
	phys_addr_t phys = page_to_phys(page);

	return is_pci_p2pdma_page(page) && phys >= gpu->bar_phys &&
	       phys - gpu->bar_phys < gpu->bar_size;
}

/* One pinned chunk: split into runs of local VRAM pages and other pages. */
static int p2pgpu_copy_chunk(struct p2pgpu_dev *gpu, struct p2pgpu_bo *bo,
			     u64 bo_off, struct page **pages, unsigned int n,
			     u32 first_off, u64 len, bool to_bo, u32 *dev_status)
{
	unsigned int i = 0;
	u64 done = 0;
	int ret = 0;

	mutex_lock(&gpu->mm_lock);
	while (i < n && !ret) {
		bool local = p2pgpu_page_is_local(gpu, pages[i]);
		u32 off = i ? 0 : first_off;
		unsigned int j = i + 1;
		u64 run;

		while (j < n && p2pgpu_page_is_local(gpu, pages[j]) == local)
			j++;
		run = min_t(u64, (u64)(j - i) * PAGE_SIZE - off, len - done);
		ret = (local ? p2pgpu_copy_local : p2pgpu_copy_mapped)
			(gpu, pages + i, j - i, off, run, bo->vram_off + bo_off + done,
			 to_bo, dev_status);
		done += run;
		i = j;
	}
	mutex_unlock(&gpu->mm_lock);
	return ret;
}

int p2pgpu_copy_user(struct p2pgpu_dev *gpu, struct p2pgpu_bo *bo,
		     struct p2pgpu_copy *args)
{
	bool to_bo = args->direction == P2PGPU_COPY_TO_BO;
	unsigned int gup = FOLL_PCI_P2PDMA | (to_bo ? 0 : FOLL_WRITE);
	u64 addr = args->user_addr, left = args->size, bo_off = args->bo_offset;
	struct page **pages;
	int ret = 0;

	if (args->direction != P2PGPU_COPY_TO_BO && args->direction != P2PGPU_COPY_FROM_BO)
		return -EINVAL;
	if (!args->size || args->bo_offset > bo->size ||
	    args->size > bo->size - args->bo_offset)
		return -EINVAL;
	if (addr + args->size < addr)
		return -EFAULT;
	pages = kvmalloc_array(P2PGPU_PIN_CHUNK, sizeof(*pages), GFP_KERNEL);
	if (!pages)
		return -ENOMEM;
	while (left && !ret) {
		u32 first_off = offset_in_page(addr);
		u64 len = min_t(u64, left, (u64)P2PGPU_PIN_CHUNK * PAGE_SIZE - first_off);
		unsigned int n = DIV_ROUND_UP(first_off + len, PAGE_SIZE);
		int pinned;

		pinned = pin_user_pages_fast(addr & PAGE_MASK, n, gup, pages);
		if (pinned < 0) {
			ret = pinned;
			break;
		}
		if (pinned != n) {
			unpin_user_pages(pages, pinned);
			ret = -EFAULT;
			break;
		}
		ret = p2pgpu_copy_chunk(gpu, bo, bo_off, pages, n, first_off, len,
					to_bo, &args->dev_status);
		unpin_user_pages_dirty_lock(pages, n, !to_bo && !ret);
		addr += len;
		bo_off += len;
		left -= len;
	}
	kvfree(pages);
	return ret;
}
