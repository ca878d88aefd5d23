// SPDX-License-Identifier: GPL-2.0
/*
 * p2pgpu: VRAM and buffer objects.
 *
 * VRAM is laid out as [p2pmem][device-private][buffer objects].  BOs come
 * from a gen_pool over the last part; each BO is one contiguous VRAM range,
 * so the copy engine moves it in a few descriptors and a dma-buf of it is a
 * few segments.
 *
 * A BO is mapped into user space through BAR2, like TTM maps VRAM: a
 * VM_PFNMAP | VM_IO VMA, write-combined, filled by a fault handler.  In
 * windowed mode the fault maps the granule into an aperture slot first; when
 * a slot is taken back, the PTEs are zapped through the address space that
 * every open file of the device shares, and the next access faults again.
 */
#include <linux/dma-buf.h>
#include <linux/dma-resv.h>
#include <linux/fs.h>
#include <linux/mm.h>
#include <linux/module.h>
#include <linux/sizes.h>

#include "p2pgpu_drv.h"

static unsigned int p2pmem_mb = 32;
module_param(p2pmem_mb, uint, 0444);
MODULE_PARM_DESC(p2pmem_mb, "VRAM published as P2PDMA memory, in MiB (granule multiple)");

static unsigned int hmm_mb = 64;
module_param(hmm_mb, uint, 0444);
MODULE_PARM_DESC(hmm_mb, "VRAM backing HMM device-private pages, in MiB");

/*
 * gen_pool hands out addresses and uses 0 for failure; VRAM offsets start at
 * 0, so the pool holds them shifted by this bias.
 */
#define P2PGPU_POOL_BIAS	(1UL << 48)

/* mmap offsets: BO id << 36 (VRAM is at most 64 GiB), as a page offset. */
#define P2PGPU_MMAP_SHIFT	36
#define P2PGPU_MMAP_PGSHIFT	(P2PGPU_MMAP_SHIFT - PAGE_SHIFT)

/* TTM's figure: faulting a few neighbours at once saves most fault round trips. */
#define P2PGPU_PREFAULT		16

int p2pgpu_vram_init(struct p2pgpu_dev *gpu)
{
	u64 granule = 1ull << gpu->granule_shift;
	u64 p2pmem = ALIGN((u64)p2pmem_mb * SZ_1M, granule);
	u64 hmm = ALIGN((u64)hmm_mb * SZ_1M, granule);

	/*
	 * In windowed mode p2pmem holds its slots for good: leave at least half
	 * of the BAR to the on-demand windows.
	 */
	if (gpu->bar_size < gpu->vram_size)
		p2pmem = min(p2pmem, round_down(gpu->bar_size / 2, granule));
	/* And leave at least half of VRAM to BOs. */
	if (p2pmem + hmm > gpu->vram_size / 2) {
		dev_info(&gpu->pdev->dev,
			 "VRAM of %llu MiB: no room for p2pmem %llu MiB + device-private %llu MiB; neither is used\n",
			 gpu->vram_size >> 20, p2pmem >> 20, hmm >> 20);
		p2pmem = 0;
		hmm = 0;
	}
	gpu->p2pmem_off = 0;
	gpu->p2pmem_size = p2pmem;
	gpu->hmm_off = p2pmem;
	gpu->hmm_size = hmm;
	gpu->bo_off = p2pmem + hmm;
	gpu->bo_size = gpu->vram_size - gpu->bo_off;

	gpu->vram = gen_pool_create(PAGE_SHIFT, dev_to_node(&gpu->pdev->dev));
	if (!gpu->vram)
		return -ENOMEM;
	if (gen_pool_add(gpu->vram, P2PGPU_POOL_BIAS + gpu->bo_off, gpu->bo_size,
			 dev_to_node(&gpu->pdev->dev))) {
		gen_pool_destroy(gpu->vram);
		gpu->vram = NULL;
		return -ENOMEM;
	}
	return 0;
}

void p2pgpu_vram_fini(struct p2pgpu_dev *gpu)
{
	/* Every BO is gone: files and dma-bufs hold the device until then. */
	gen_pool_destroy(gpu->vram);
	gpu->vram = NULL;
}

static int p2pgpu_vram_alloc(struct p2pgpu_dev *gpu, u64 size, u64 *off)
{
	unsigned long a = gen_pool_alloc(gpu->vram, size);

	if (!a)
		return -ENOSPC;
	*off = a - P2PGPU_POOL_BIAS;
	return 0;
}

static void p2pgpu_vram_free(struct p2pgpu_dev *gpu, u64 off, u64 size)
{
	gen_pool_free(gpu->vram, P2PGPU_POOL_BIAS + off, size);
}

struct p2pgpu_bo *p2pgpu_bo_create(struct p2pgpu_dev *gpu, u64 size)
{
	struct p2pgpu_bo *bo;
	int ret;

	if (!size)
		return ERR_PTR(-EINVAL);
	if (size > gpu->bo_size)
		return ERR_PTR(-E2BIG);
	size = PAGE_ALIGN(size);
	bo = kzalloc(sizeof(*bo), GFP_KERNEL);
	if (!bo)
		return ERR_PTR(-ENOMEM);
	kref_init(&bo->ref);
	dma_resv_init(&bo->resv);
	INIT_LIST_HEAD(&bo->exports);
	bo->gpu = gpu;
	bo->size = size;
	ret = p2pgpu_vram_alloc(gpu, size, &bo->vram_off);
	if (ret)
		goto err_free;
	ret = xa_alloc(&gpu->bos, &bo->id, bo,
		       XA_LIMIT(1, (1u << (63 - P2PGPU_MMAP_SHIFT)) - 1), GFP_KERNEL);
	if (ret)
		goto err_vram;
	return bo;

err_vram:
	p2pgpu_vram_free(gpu, bo->vram_off, size);
err_free:
	dma_resv_fini(&bo->resv);
	kfree(bo);
	return ERR_PTR(ret == -EBUSY ? -ENOSPC : ret);
}

static void p2pgpu_bo_release(struct kref *ref)
{
	struct p2pgpu_bo *bo = container_of(ref, struct p2pgpu_bo, ref);
	struct p2pgpu_dev *gpu = bo->gpu;

	xa_erase(&gpu->bos, bo->id);
	/* No mapping is left: VMAs and dma-bufs hold references. */
	mutex_lock(&gpu->mm_lock);
	p2pgpu_vram_free(gpu, bo->vram_off, bo->size);
	mutex_unlock(&gpu->mm_lock);
	dma_resv_fini(&bo->resv);
	kfree(bo);
}

void p2pgpu_bo_put(struct p2pgpu_bo *bo)
{
	kref_put(&bo->ref, p2pgpu_bo_release);
}

u64 p2pgpu_bo_mmap_offset(const struct p2pgpu_bo *bo)
{
	return (u64)bo->id << P2PGPU_MMAP_SHIFT;
}

/* Zap the CPU mappings of [off, off + len) of @bo; the next access faults. */
void p2pgpu_bo_revoke(struct p2pgpu_bo *bo, u64 off, u64 len)
{
	struct p2pgpu_dev *gpu = bo->gpu;

	unmap_mapping_range(gpu->inode->i_mapping,
			    p2pgpu_bo_mmap_offset(bo) + off, len, 1);
	P2PGPU_STAT_INC(gpu, revocations);
}

/*
 * Revoke every CPU mapping of VRAM [vram_off, +len), whichever BOs hold it.
 * Called with mm_lock held, which keeps BO placement still.
 */
void p2pgpu_revoke_vram(struct p2pgpu_dev *gpu, u64 vram_off, u64 len)
{
	struct p2pgpu_bo *bo;
	unsigned long id;

	lockdep_assert_held(&gpu->mm_lock);
	xa_for_each(&gpu->bos, id, bo) {
		u64 start = max(vram_off, bo->vram_off);
		u64 end = min(vram_off + len, bo->vram_off + bo->size);

		if (start < end)
			p2pgpu_bo_revoke(bo, start - bo->vram_off, end - start);
	}
}

/*
 * Take every user off @bo before it moves or loses its windows: dynamic
 * importers are told with move_notify, CPU mappings are zapped.  The caller
 * holds bo->resv; on success mm_lock is held and the BO can go anywhere.
 * -EBUSY: a pinned importer, or a dynamic one that kept its mapping.
 */
static int p2pgpu_bo_revoke_users(struct p2pgpu_bo *bo)
{
	struct p2pgpu_dev *gpu = bo->gpu;

	dma_resv_assert_held(&bo->resv);
	/*
	 * Pins change only under the reservation, which we hold: refuse before
	 * telling anyone, since importers may take the notice as final.
	 */
	if (bo->pins)
		return -EBUSY;
	/* No new dma-buf mapping can start while we hold the reservation. */
	p2pgpu_dmabuf_move_notify(bo);
	mutex_lock(&gpu->mm_lock);
	if (bo->mapped) {
		mutex_unlock(&gpu->mm_lock);
		return -EBUSY;
	}
	p2pgpu_bo_revoke(bo, 0, bo->size);
	return 0;
}

/* Drop the BO's aperture windows, as memory pressure on the BAR would. */
int p2pgpu_bo_evict_aperture(struct p2pgpu_bo *bo, u32 *windows)
{
	int ret = p2pgpu_bo_revoke_users(bo);

	if (ret)
		return ret;
	ret = p2pgpu_aperture_drop(bo->gpu, bo->vram_off, bo->size, windows);
	mutex_unlock(&bo->gpu->mm_lock);
	return ret;
}

/*
 * Move @bo to another VRAM range, as a memory-pressure eviction would: take
 * every user off it first, copy with the engine, then free the old range.
 * The caller holds bo->resv.
 */
int p2pgpu_bo_move(struct p2pgpu_bo *bo, u32 *dev_status)
{
	struct p2pgpu_dev *gpu = bo->gpu;
	struct p2pgpu_xfer x[4];
	u64 new_off, done = 0;
	unsigned int n = 0;
	int ret;

	ret = p2pgpu_bo_revoke_users(bo);
	if (ret)
		return ret;
	ret = p2pgpu_vram_alloc(gpu, bo->size, &new_off);
	if (ret)
		goto out;
	while (done < bo->size) {
		u32 len = min_t(u64, bo->size - done, P2P_GPU_CE_MAX_LEN);

		x[n++] = (struct p2pgpu_xfer){
			.op = P2P_GPU_OP_VRAM_TO_VRAM,
			.vram_off = new_off + done,
			.addr = bo->vram_off + done,
			.len = len,
		};
		done += len;
		if (n == ARRAY_SIZE(x) || done == bo->size) {
			ret = p2pgpu_ce_run(gpu, x, n, dev_status);
			if (ret)
				break;
			n = 0;
		}
	}
	if (ret) {
		p2pgpu_vram_free(gpu, new_off, bo->size);
		goto out;
	}
	p2pgpu_vram_free(gpu, bo->vram_off, bo->size);
	bo->vram_off = new_off;
out:
	mutex_unlock(&gpu->mm_lock);
	return ret;
}

static void p2pgpu_bo_vm_open(struct vm_area_struct *vma)
{
	struct p2pgpu_bo *bo = vma->vm_private_data;

	kref_get(&bo->ref);
}

static void p2pgpu_bo_vm_close(struct vm_area_struct *vma)
{
	p2pgpu_bo_put(vma->vm_private_data);
}

static vm_fault_t p2pgpu_bo_fault(struct vm_fault *vmf)
{
	struct vm_area_struct *vma = vmf->vma;
	struct p2pgpu_bo *bo = vma->vm_private_data;
	struct p2pgpu_dev *gpu = bo->gpu;
	u64 off = (u64)(vmf->pgoff & ((1UL << P2PGPU_MMAP_PGSHIFT) - 1)) << PAGE_SHIFT;
	u64 granule = 1ull << gpu->granule_shift;
	unsigned long addr = vmf->address;
	vm_fault_t vret = VM_FAULT_NOPAGE;
	u64 vram, bar_off;
	unsigned int i;
	int ret;

	if (off >= bo->size)
		return VM_FAULT_SIGBUS;
	P2PGPU_STAT_INC(gpu, cpu_faults);
	mutex_lock(&gpu->mm_lock);
	if (gpu->dead) {
		vret = VM_FAULT_SIGBUS;
		goto out;
	}
	vram = bo->vram_off + off;
	ret = p2pgpu_aperture_get(gpu, vram, false, &bar_off);
	if (ret) {
		/* Every slot is pinned: nothing can be evicted for a CPU access. */
		dev_dbg_ratelimited(&gpu->pdev->dev,
				    "no BAR2 window for VRAM %#llx: %d\n", vram, ret);
		vret = VM_FAULT_SIGBUS;
		goto out;
	}
	/*
	 * Map this page and a few following ones in the same granule; the
	 * window cannot go away while mm_lock is held, and eviction zaps
	 * whatever we insert here.
	 */
	for (i = 0; i < P2PGPU_PREFAULT; i++) {
		vm_fault_t r;

		r = vmf_insert_pfn(vma, addr,
				   (gpu->bar_phys + bar_off) >> PAGE_SHIFT);
		if (i == 0)
			vret = r;
		if (r & VM_FAULT_ERROR)
			break;
		addr += PAGE_SIZE;
		off += PAGE_SIZE;
		bar_off += PAGE_SIZE;
		if (addr >= vma->vm_end || off >= bo->size ||
		    !((vram + PAGE_SIZE * (i + 1)) & (granule - 1)))
			break;
	}
out:
	mutex_unlock(&gpu->mm_lock);
	return vret;
}

const struct vm_operations_struct p2pgpu_bo_vm_ops = {
	.open = p2pgpu_bo_vm_open,
	.close = p2pgpu_bo_vm_close,
	.fault = p2pgpu_bo_fault,
};

u32 p2pgpu_bo_mmap_id(unsigned long pgoff)
{
	return pgoff >> P2PGPU_MMAP_PGSHIFT;
}

/*
 * mmap of a BO's fake offset.  @bo is a reference the caller took through
 * the file's own handle; on success the VMA keeps it.  A private mapping is
 * refused, as TTM refuses it: PFN maps cannot be copied on write.
 */
int p2pgpu_bo_mmap(struct p2pgpu_bo *bo, struct vm_area_struct *vma)
{
	u64 off = (u64)(vma->vm_pgoff & ((1UL << P2PGPU_MMAP_PGSHIFT) - 1)) << PAGE_SHIFT;

	if (is_cow_mapping(vma->vm_flags))
		return -EINVAL;
	if (off >= bo->size || vma->vm_end - vma->vm_start > bo->size - off)
		return -EINVAL;
	vma->vm_private_data = bo;
	vma->vm_ops = &p2pgpu_bo_vm_ops;
	vm_flags_set(vma, VM_PFNMAP | VM_IO | VM_DONTEXPAND | VM_DONTDUMP);
	vma->vm_page_prot = pgprot_writecombine(vm_get_page_prot(vma->vm_flags));
	return 0;
}
