// SPDX-License-Identifier: GPL-2.0
/*
 * p2pgpu: HMM device-private memory backed by VRAM.
 *
 * A free physical range gets MEMORY_DEVICE_PRIVATE struct pages
 * (memremap_pages); page N of it stands for VRAM at hmm_off + N pages, handed
 * out by a gen_pool over that VRAM.  MIGRATE_TO_DEV moves a range of the
 * caller's anonymous memory there with migrate_vma_setup/pages/finalize; the
 * CPU cannot touch such a page, so its next access faults into
 * migrate_to_ram, which copies it back.  Both ways, the data moves through
 * the copy engine, between VRAM and system pages DMA-mapped for the device.
 * This is the seed thread's "the device driver can migrate any part of the
 * process address space to device memory".
 */
#include <linux/dma-mapping.h>
#include <linux/highmem.h>
#include <linux/ioport.h>
#include <linux/memremap.h>
#include <linux/migrate.h>
#include <linux/mm.h>
#include <linux/mmap_lock.h>
#include <linux/module.h>
#include <linux/pagemap.h>
#include <linux/slab.h>

#include "p2pgpu_drv.h"
#include "p2pgpu_compat.h"

#define P2PGPU_POOL_BIAS	(1UL << 48)	/* gen_pool uses 0 for failure */
#define P2PGPU_MIGRATE_BATCH	64		/* pages per migrate_vma round */

struct p2pgpu_hmm {
	struct p2pgpu_dev *gpu;
	struct dev_pagemap pagemap;
	struct resource *res;
	struct gen_pool *pool;		/* VRAM behind the pages */
	unsigned long pfn_first;
	unsigned long npages;
};

static struct p2pgpu_hmm *p2pgpu_page_hmm(struct page *page)
{
	return container_of(page_pgmap(page), struct p2pgpu_hmm, pagemap);
}

static u64 p2pgpu_page_vram(struct p2pgpu_hmm *hmm, struct page *page)
{
	return hmm->gpu->hmm_off + ((page_to_pfn(page) - hmm->pfn_first) << PAGE_SHIFT);
}

/* A locked device-private page with one reference, or NULL when VRAM is full. */
static struct page *p2pgpu_hmm_alloc_page(struct p2pgpu_hmm *hmm)
{
	unsigned long a = gen_pool_alloc(hmm->pool, PAGE_SIZE);
	struct page *page;

	if (!a)
		return NULL;
	page = pfn_to_page(hmm->pfn_first +
			   ((a - P2PGPU_POOL_BIAS - hmm->gpu->hmm_off) >> PAGE_SHIFT));
	p2pgpu_zone_device_page_init(page, &hmm->pagemap);
	return page;
}

static void p2pgpu_hmm_free_vram(struct page *page)
{
	struct p2pgpu_hmm *hmm = p2pgpu_page_hmm(page);

	gen_pool_free(hmm->pool, P2PGPU_POOL_BIAS + p2pgpu_page_vram(hmm, page), PAGE_SIZE);
}

#ifdef P2PGPU_HAVE_FOLIO_FREE
static void p2pgpu_hmm_folio_free(struct folio *folio)
{
	p2pgpu_hmm_free_vram(&folio->page);
}
#else
static void p2pgpu_hmm_page_free(struct page *page)
{
	p2pgpu_hmm_free_vram(page);
}
#endif

/*
 * Copy each migrating page of @src to @dst (both migrate-pfn arrays) with the
 * engine.  System pages are DMA-mapped for the device; a missing source page
 * (never touched) is the zero page.  On failure nothing is installed: every
 * destination is dropped, so the migration leaves the sources in place;
 * except with @must_install (eviction at remove, where the source pages are
 * about to vanish), which installs zeroed pages instead: data lost, said so,
 * but no process is left mapping device pages that remove then waits for.
 */
static int __p2pgpu_hmm_copy(struct p2pgpu_hmm *hmm, unsigned long *src,
			     unsigned long *dst, unsigned long npages, bool to_dev,
			     bool must_install, u32 *dev_status)
{
	struct p2pgpu_dev *gpu = hmm->gpu;
	struct device *dev = &gpu->pdev->dev;
	enum dma_data_direction dir = to_dev ? DMA_TO_DEVICE : DMA_FROM_DEVICE;
	struct p2pgpu_xfer *x;
	dma_addr_t *dma;
	unsigned long i, n = 0;
	int ret = 0;

	x = kcalloc(npages, sizeof(*x), GFP_KERNEL);
	dma = kcalloc(npages, sizeof(*dma), GFP_KERNEL);
	if (!x || !dma) {
		ret = -ENOMEM;
		goto out;
	}
	for (i = 0; i < npages; i++) {
		struct page *spage = migrate_pfn_to_page(src[i]);
		struct page *dpage = migrate_pfn_to_page(dst[i]);
		struct page *host;

		if (!dpage || (!to_dev && !spage))
			continue;
		host = to_dev ? (spage ? spage : ZERO_PAGE(0)) : dpage;
		dma[n] = dma_map_page(dev, host, 0, PAGE_SIZE, dir);
		if (dma_mapping_error(dev, dma[n])) {
			ret = -ENOMEM;
			break;
		}
		x[n] = (struct p2pgpu_xfer){
			.op = to_dev ? P2P_GPU_OP_HOST_TO_VRAM : P2P_GPU_OP_VRAM_TO_HOST,
			.vram_off = p2pgpu_page_vram(hmm, to_dev ? dpage : spage),
			.addr = dma[n],
			.len = PAGE_SIZE,
		};
		n++;
	}
	if (!ret && n)
		ret = p2pgpu_ce_run(gpu, x, n, dev_status);
	while (n--)
		dma_unmap_page(dev, dma[n], PAGE_SIZE, dir);
out:
	kfree(x);
	kfree(dma);
	if (ret) {
		for (i = 0; i < npages; i++) {
			struct page *dpage = migrate_pfn_to_page(dst[i]);

			if (!dpage)
				continue;
			if (must_install) {
				clear_highpage(dpage);
				continue;
			}
			unlock_page(dpage);
			put_page(dpage);
			dst[i] = 0;
		}
	}
	return ret;
}

static int p2pgpu_hmm_copy(struct p2pgpu_hmm *hmm, unsigned long *src,
			   unsigned long *dst, unsigned long npages, bool to_dev,
			   u32 *dev_status)
{
	return __p2pgpu_hmm_copy(hmm, src, dst, npages, to_dev, false, dev_status);
}

/* Destination pages for migrating @src; stops quietly when memory runs out. */
static void p2pgpu_hmm_alloc_dst(struct p2pgpu_hmm *hmm, unsigned long *src,
				 unsigned long *dst, unsigned long npages, bool to_dev)
{
	unsigned long i;

	memset(dst, 0, npages * sizeof(*dst));
	for (i = 0; i < npages; i++) {
		struct page *dpage;

		if (!(src[i] & MIGRATE_PFN_MIGRATE))
			continue;
		/*
		 * Back to system memory, an entry without a page is a hole
		 * (never populated, or zapped): nothing of ours to bring home,
		 * and a fresh zero page will fill it on the next touch.
		 */
		if (!to_dev && !migrate_pfn_to_page(src[i]))
			continue;
		if (to_dev) {
			dpage = p2pgpu_hmm_alloc_page(hmm);
		} else {
			dpage = alloc_page(GFP_HIGHUSER_MOVABLE);
			if (dpage)
				lock_page(dpage);
		}
		if (!dpage)
			break;
		dst[i] = migrate_pfn(page_to_pfn(dpage)) | (src[i] & MIGRATE_PFN_WRITE);
	}
}

static unsigned long p2pgpu_hmm_count(unsigned long *src, unsigned long *dst,
				      unsigned long npages)
{
	unsigned long i, n = 0;

	for (i = 0; i < npages; i++)
		if ((src[i] & MIGRATE_PFN_MIGRATE) && dst[i])
			n++;
	return n;
}

static vm_fault_t p2pgpu_hmm_migrate_to_ram(struct vm_fault *vmf)
{
	struct p2pgpu_hmm *hmm = p2pgpu_page_hmm(vmf->page);
	unsigned long src = 0, dst = 0;
	struct migrate_vma args = {
		.vma = vmf->vma,
		.start = ALIGN_DOWN(vmf->address, PAGE_SIZE),
		.end = ALIGN_DOWN(vmf->address, PAGE_SIZE) + PAGE_SIZE,
		.src = &src,
		.dst = &dst,
		.pgmap_owner = hmm->gpu,
		.flags = MIGRATE_VMA_SELECT_DEVICE_PRIVATE,
		.fault_page = vmf->page,
	};
	u32 dev_status = 0;
	int ret;

	if (migrate_vma_setup(&args))
		return VM_FAULT_SIGBUS;
	if (!args.cpages)
		return 0;	/* someone else migrated it meanwhile */
	p2pgpu_hmm_alloc_dst(hmm, &src, &dst, 1, false);
	ret = dst ? p2pgpu_hmm_copy(hmm, &src, &dst, 1, false, &dev_status) : -ENOMEM;
	if (!ret)
		P2PGPU_STAT_ADD(hmm->gpu, migrate_to_ram, p2pgpu_hmm_count(&src, &dst, 1));
	migrate_vma_pages(&args);
	migrate_vma_finalize(&args);
	if (ret) {
		dev_err_ratelimited(&hmm->gpu->pdev->dev,
				    "CPU fault at %#lx: page not copied back (%d, device status %u)\n",
				    vmf->address, ret, dev_status);
		return ret == -ENOMEM ? VM_FAULT_OOM : VM_FAULT_SIGBUS;
	}
	return 0;
}

static const struct dev_pagemap_ops p2pgpu_hmm_pagemap_ops = {
#ifdef P2PGPU_HAVE_FOLIO_FREE
	.folio_free = p2pgpu_hmm_folio_free,
#else
	.page_free = p2pgpu_hmm_page_free,
#endif
	.migrate_to_ram = p2pgpu_hmm_migrate_to_ram,
};

int p2pgpu_migrate(struct p2pgpu_dev *gpu, struct p2pgpu_migrate *m, bool to_dev)
{
	struct p2pgpu_hmm *hmm = gpu->hmm;
	struct mm_struct *mm = current->mm;
	unsigned long src[P2PGPU_MIGRATE_BATCH], dst[P2PGPU_MIGRATE_BATCH];
	unsigned long addr = m->addr, end;
	int ret = 0;

	if (!hmm)
		return -EOPNOTSUPP;
	if (!m->npages || !PAGE_ALIGNED(m->addr) || m->npages > (ULONG_MAX >> PAGE_SHIFT))
		return -EINVAL;
	end = addr + (m->npages << PAGE_SHIFT);
	if (end < addr)
		return -EINVAL;
	if (!mmget_not_zero(mm))
		return -EINVAL;
	mmap_read_lock(mm);
	while (addr < end && !ret) {
		struct vm_area_struct *vma = vma_lookup(mm, addr);
		unsigned long next, npages;
		struct migrate_vma args = {
			.src = src,
			.dst = dst,
			.pgmap_owner = gpu,
			.flags = to_dev ? MIGRATE_VMA_SELECT_SYSTEM :
					  MIGRATE_VMA_SELECT_DEVICE_PRIVATE,
		};

		if (!vma || !vma_is_anonymous(vma) || (vma->vm_flags & VM_SHARED)) {
			ret = -EINVAL;
			break;
		}
		next = min3(end, vma->vm_end, addr + P2PGPU_MIGRATE_BATCH * PAGE_SIZE);
		npages = (next - addr) >> PAGE_SHIFT;
		args.vma = vma;
		args.start = addr;
		args.end = next;
		ret = migrate_vma_setup(&args);
		if (ret)
			break;
		if (args.cpages) {
			p2pgpu_hmm_alloc_dst(hmm, src, dst, npages, to_dev);
			ret = p2pgpu_hmm_copy(hmm, src, dst, npages, to_dev, &m->dev_status);
			if (!ret && to_dev && !p2pgpu_hmm_count(src, dst, npages) &&
			    args.cpages)
				ret = -ENOMEM;
			migrate_vma_pages(&args);
			if (!ret) {
				unsigned long n = p2pgpu_hmm_count(src, dst, npages);

				m->migrated += n;
				if (to_dev)
					P2PGPU_STAT_ADD(gpu, migrate_to_dev, n);
				else
					P2PGPU_STAT_ADD(gpu, migrate_to_sys, n);
			}
			migrate_vma_finalize(&args);
		}
		addr = next;
	}
	mmap_read_unlock(mm);
	mmput(mm);
	return ret;
}

/*
 * Bring every device-private page home before the pages go away, a batch at
 * a time (memunmap_pages() would otherwise wait for them for ever).
 */
static void p2pgpu_hmm_evict_all(struct p2pgpu_hmm *hmm)
{
	unsigned long src[P2PGPU_MIGRATE_BATCH], dst[P2PGPU_MIGRATE_BATCH];
	unsigned long first, i, n;
	u32 dev_status = 0;

	for (first = 0; first < hmm->npages; first += n) {
		n = min_t(unsigned long, P2PGPU_MIGRATE_BATCH, hmm->npages - first);
		memset(src, 0, sizeof(src));
		memset(dst, 0, sizeof(dst));
		migrate_device_range(src, hmm->pfn_first + first, n);
		for (i = 0; i < n; i++) {
			struct page *dpage;

			if (!(src[i] & MIGRATE_PFN_MIGRATE))
				continue;
			dpage = alloc_page(GFP_HIGHUSER_MOVABLE | __GFP_NOFAIL);
			lock_page(dpage);
			dst[i] = migrate_pfn(page_to_pfn(dpage));
		}
		if (__p2pgpu_hmm_copy(hmm, src, dst, n, false, true, &dev_status))
			dev_err(&hmm->gpu->pdev->dev,
				"device-private pages zeroed on remove: copy failed (status %u)\n",
				dev_status);
		migrate_device_pages(src, dst, n);
		migrate_device_finalize(src, dst, n);
	}
}

int p2pgpu_hmm_init(struct p2pgpu_dev *gpu)
{
	struct p2pgpu_hmm *hmm;
	void *addr;
	int ret;

	if (!gpu->hmm_size)
		return 0;
	hmm = kzalloc(sizeof(*hmm), GFP_KERNEL);
	if (!hmm)
		return -ENOMEM;
	hmm->gpu = gpu;
	hmm->res = request_free_mem_region(&iomem_resource, gpu->hmm_size,
					   "p2pgpu device-private");
	if (IS_ERR(hmm->res)) {
		ret = PTR_ERR(hmm->res);
		goto err_free;
	}
	hmm->pagemap.type = MEMORY_DEVICE_PRIVATE;
	hmm->pagemap.range.start = hmm->res->start;
	hmm->pagemap.range.end = hmm->res->end;
	hmm->pagemap.nr_range = 1;
	hmm->pagemap.ops = &p2pgpu_hmm_pagemap_ops;
	hmm->pagemap.owner = gpu;
	addr = memremap_pages(&hmm->pagemap, dev_to_node(&gpu->pdev->dev));
	if (IS_ERR(addr)) {
		ret = PTR_ERR(addr);
		goto err_region;
	}
	hmm->pfn_first = PHYS_PFN(hmm->res->start);
	hmm->npages = gpu->hmm_size >> PAGE_SHIFT;
	hmm->pool = gen_pool_create(PAGE_SHIFT, dev_to_node(&gpu->pdev->dev));
	if (!hmm->pool) {
		ret = -ENOMEM;
		goto err_unmap;
	}
	ret = gen_pool_add(hmm->pool, P2PGPU_POOL_BIAS + gpu->hmm_off, gpu->hmm_size,
			   dev_to_node(&gpu->pdev->dev));
	if (ret)
		goto err_pool;
	gpu->hmm = hmm;
	return 0;

err_pool:
	gen_pool_destroy(hmm->pool);
err_unmap:
	memunmap_pages(&hmm->pagemap);
err_region:
	if (!IS_ERR(hmm->res))
		release_mem_region(hmm->res->start, resource_size(hmm->res));
err_free:
	kfree(hmm);
	return ret;
}

void p2pgpu_hmm_fini(struct p2pgpu_dev *gpu)
{
	struct p2pgpu_hmm *hmm = gpu->hmm;

	if (!hmm)
		return;
	p2pgpu_hmm_evict_all(hmm);
	memunmap_pages(&hmm->pagemap);
	gen_pool_destroy(hmm->pool);
	release_mem_region(hmm->res->start, resource_size(hmm->res));
	kfree(hmm);
	gpu->hmm = NULL;
}
