// SPDX-License-Identifier: GPL-2.0
/*
 * p2pgpu: the Linux driver of the p2p-gpu device (docs/devices/p2p-gpu.md).
 *
 * The device is a GPU as far as peer-to-peer DMA is concerned: VRAM behind a
 * resizable BAR, an aperture that maps VRAM granules into that BAR on demand,
 * and a copy engine.  This file holds the PCI driver: probe, remove, the two
 * MSI-X vectors and the FLR handlers.  docs/drivers/p2pgpu.md explains the
 * design path by path.
 */
#include <linux/delay.h>
#include <linux/dma-mapping.h>
#include <linux/interrupt.h>
#include <linux/io-64-nonatomic-lo-hi.h>
#include <linux/module.h>
#include <linux/pci.h>

#include "p2pgpu_drv.h"

static DEFINE_IDA(p2pgpu_ida);

u32 p2pgpu_rd(struct p2pgpu_dev *gpu, u32 reg)
{
	return readl(gpu->regs + reg);
}

void p2pgpu_wr(struct p2pgpu_dev *gpu, u32 reg, u32 val)
{
	writel(val, gpu->regs + reg);
}

/* The device takes 64-bit registers as two 32-bit accesses, low half first. */
u64 p2pgpu_rd64(struct p2pgpu_dev *gpu, u32 reg)
{
	return lo_hi_readq(gpu->regs + reg);
}

void p2pgpu_wr64(struct p2pgpu_dev *gpu, u32 reg, u64 val)
{
	lo_hi_writeq(val, gpu->regs + reg);
}

static irqreturn_t p2pgpu_irq_copy(int irq, void *data)
{
	struct p2pgpu_dev *gpu = data;
	u32 st = p2pgpu_rd(gpu, P2P_GPU_REG_INT_STATUS) & P2P_GPU_INT_COPY_DONE;

	if (!st)
		return IRQ_NONE;
	p2pgpu_wr(gpu, P2P_GPU_REG_INT_STATUS, st);
	P2PGPU_STAT_INC(gpu, interrupts);
	p2pgpu_ce_wake(gpu);
	return IRQ_HANDLED;
}

static irqreturn_t p2pgpu_irq_error(int irq, void *data)
{
	struct p2pgpu_dev *gpu = data;
	u32 st = p2pgpu_rd(gpu, P2P_GPU_REG_INT_STATUS) &
		 (P2P_GPU_INT_COPY_ERROR | P2P_GPU_INT_REG_ERROR);

	if (!st)
		return IRQ_NONE;
	p2pgpu_wr(gpu, P2P_GPU_REG_INT_STATUS, st);
	P2PGPU_STAT_INC(gpu, interrupts);
	if (st & P2P_GPU_INT_REG_ERROR) {
		/* A register error is a driver bug: say which one. */
		P2PGPU_STAT_INC(gpu, reg_errors);
		dev_err_ratelimited(&gpu->pdev->dev, "register error %u (count %u)\n",
				    p2pgpu_rd(gpu, P2P_GPU_REG_ERR_STATUS),
				    p2pgpu_rd(gpu, P2P_GPU_REG_ERR_COUNT));
		p2pgpu_wr(gpu, P2P_GPU_REG_ERR_STATUS, 0);
	}
	if (st & P2P_GPU_INT_COPY_ERROR)
		p2pgpu_ce_wake(gpu);
	return IRQ_HANDLED;
}

/*
 * Aperture failures are reported synchronously in APER_STATUS, and FULL is a
 * normal outcome, so APER_FAIL stays masked.
 */
static void p2pgpu_irq_enable(struct p2pgpu_dev *gpu)
{
	p2pgpu_wr(gpu, P2P_GPU_REG_INT_STATUS, P2P_GPU_INT_ALL);
	p2pgpu_wr(gpu, P2P_GPU_REG_INT_ENABLE, P2P_GPU_INT_COPY_DONE |
		  P2P_GPU_INT_COPY_ERROR | P2P_GPU_INT_REG_ERROR);
}

static int p2pgpu_irq_init(struct p2pgpu_dev *gpu)
{
	struct pci_dev *pdev = gpu->pdev;
	int ret;

	ret = pci_alloc_irq_vectors(pdev, P2P_GPU_MSIX_VECTORS,
				    P2P_GPU_MSIX_VECTORS, PCI_IRQ_MSIX);
	if (ret < 0)
		return ret;
	ret = request_irq(pci_irq_vector(pdev, P2P_GPU_VEC_COPY),
			  p2pgpu_irq_copy, 0, "p2pgpu-copy", gpu);
	if (ret)
		goto err_vectors;
	ret = request_irq(pci_irq_vector(pdev, P2P_GPU_VEC_ERROR),
			  p2pgpu_irq_error, 0, "p2pgpu-error", gpu);
	if (ret)
		goto err_copy;
	p2pgpu_irq_enable(gpu);
	return 0;

err_copy:
	free_irq(pci_irq_vector(pdev, P2P_GPU_VEC_COPY), gpu);
err_vectors:
	pci_free_irq_vectors(pdev);
	return ret;
}

static void p2pgpu_irq_fini(struct p2pgpu_dev *gpu)
{
	struct pci_dev *pdev = gpu->pdev;

	p2pgpu_wr(gpu, P2P_GPU_REG_INT_ENABLE, 0);
	free_irq(pci_irq_vector(pdev, P2P_GPU_VEC_ERROR), gpu);
	free_irq(pci_irq_vector(pdev, P2P_GPU_VEC_COPY), gpu);
	pci_free_irq_vectors(pdev);
}

static int p2pgpu_check_device(struct p2pgpu_dev *gpu)
{
	struct device *dev = &gpu->pdev->dev;
	u32 id = p2pgpu_rd(gpu, P2P_GPU_REG_ID);
	u32 ver = p2pgpu_rd(gpu, P2P_GPU_REG_VERSION);
	u32 caps = p2pgpu_rd(gpu, P2P_GPU_REG_CAPS);
	u32 need = P2P_GPU_CAP_SGL | P2P_GPU_CAP_V2V | P2P_GPU_CAP_DIRECT;

	if (id != P2P_GPU_MAGIC) {
		dev_err(dev, "ID register is %#x, not %#x: not a p2p-gpu\n",
			id, P2P_GPU_MAGIC);
		return -ENODEV;
	}
	if ((ver >> 16) != (P2P_GPU_VERSION >> 16)) {
		dev_err(dev, "interface version %#x: this driver speaks major %u\n",
			ver, P2P_GPU_VERSION >> 16);
		return -ENODEV;
	}
	if ((caps & need) != need) {
		dev_err(dev, "capabilities %#x lack %#x\n", caps, need);
		return -ENODEV;
	}
	gpu->granule_shift = p2pgpu_rd(gpu, P2P_GPU_REG_APER_GRANULE_SHIFT);
	if (gpu->granule_shift < PAGE_SHIFT || gpu->granule_shift > 36) {
		dev_err(dev, "aperture granule of 2^%u bytes\n", gpu->granule_shift);
		return -ENODEV;
	}
	gpu->vram_size = p2pgpu_rd64(gpu, P2P_GPU_REG_VRAM_SIZE);
	gpu->bar_size = p2pgpu_rd64(gpu, P2P_GPU_REG_BAR2_SIZE);
	gpu->bar_phys = pci_resource_start(gpu->pdev, P2P_GPU_APERTURE_BAR);
	if (gpu->bar_size != pci_resource_len(gpu->pdev, P2P_GPU_APERTURE_BAR) ||
	    !gpu->vram_size || gpu->bar_size > gpu->vram_size) {
		dev_err(dev, "BAR2 is %pR but the device reports %llu bytes (VRAM %llu)\n",
			pci_resource_n(gpu->pdev, P2P_GPU_APERTURE_BAR),
			gpu->bar_size, gpu->vram_size);
		return -ENODEV;
	}
	return 0;
}

static int p2pgpu_probe(struct pci_dev *pdev, const struct pci_device_id *ent)
{
	struct p2pgpu_dev *gpu;
	int ret;

	gpu = kzalloc(sizeof(*gpu), GFP_KERNEL);
	if (!gpu)
		return -ENOMEM;
	gpu->pdev = pdev;
	mutex_init(&gpu->mm_lock);
	/* Before the interrupt handlers can run. */
	mutex_init(&gpu->ce.lock);
	init_waitqueue_head(&gpu->ce.wq);
	INIT_LIST_HEAD(&gpu->lru);
	xa_init_flags(&gpu->bos, XA_FLAGS_ALLOC1);
	pci_set_drvdata(pdev, gpu);

	gpu->id = ida_alloc(&p2pgpu_ida, GFP_KERNEL);
	if (gpu->id < 0) {
		ret = gpu->id;
		goto err_free;
	}
	snprintf(gpu->name, sizeof(gpu->name), "p2pgpu%d", gpu->id);

	ret = pci_enable_device_mem(pdev);
	if (ret)
		goto err_ida;

	/* Before anything maps a BAR: the PCI core may move them all. */
	gpu->bar_size_initial = pci_resource_len(pdev, P2P_GPU_APERTURE_BAR);
	p2pgpu_rebar_resize(gpu);

	ret = pci_request_mem_regions(pdev, KBUILD_MODNAME);
	if (ret)
		goto err_disable;
	gpu->regs = pci_iomap(pdev, P2P_GPU_REGS_BAR, P2P_GPU_REGS_SIZE);
	if (!gpu->regs) {
		ret = -ENOMEM;
		goto err_regions;
	}
	ret = p2pgpu_check_device(gpu);
	if (ret)
		goto err_unmap;

	ret = dma_set_mask_and_coherent(&pdev->dev, DMA_BIT_MASK(64));
	if (ret)
		goto err_unmap;
	/* An sg entry takes any length a descriptor takes. */
	dma_set_max_seg_size(&pdev->dev, P2P_GPU_CE_MAX_LEN);
	pci_set_master(pdev);

	ret = p2pgpu_irq_init(gpu);
	if (ret)
		goto err_master;
	ret = p2pgpu_vram_init(gpu);
	if (ret)
		goto err_irq;
	ret = p2pgpu_aperture_init(gpu);
	if (ret)
		goto err_vram;
	ret = p2pgpu_ce_init(gpu);
	if (ret)
		goto err_aperture;
	ret = p2pgpu_p2pdma_init(gpu);
	if (ret)
		goto err_ce;
	ret = p2pgpu_hmm_init(gpu);
	if (ret)
		goto err_p2pdma;
	p2pgpu_debugfs_init(gpu);
	ret = p2pgpu_cdev_init(gpu);
	if (ret)
		goto err_debugfs;

	dev_info(&pdev->dev,
		 "%s: VRAM %llu MiB, BAR2 %llu MiB (was %llu MiB), %s aperture, p2pmem %llu MiB, device-private %llu MiB\n",
		 gpu->name, gpu->vram_size >> 20, gpu->bar_size >> 20,
		 (u64)gpu->bar_size_initial >> 20,
		 gpu->mode == P2PGPU_APERTURE_DIRECT ? "direct" : "windowed",
		 gpu->p2pmem_size >> 20, gpu->hmm_size >> 20);
	return 0;

err_debugfs:
	p2pgpu_debugfs_fini(gpu);
	p2pgpu_hmm_fini(gpu);
err_p2pdma:
	p2pgpu_p2pdma_fini(gpu);
err_ce:
	p2pgpu_ce_fini(gpu);
err_aperture:
	p2pgpu_aperture_fini(gpu);
err_vram:
	p2pgpu_vram_fini(gpu);
err_irq:
	p2pgpu_irq_fini(gpu);
err_master:
	pci_clear_master(pdev);
err_unmap:
	pci_iounmap(pdev, gpu->regs);
err_regions:
	pci_release_mem_regions(pdev);
err_disable:
	pci_disable_device(pdev);
err_ida:
	ida_free(&p2pgpu_ida, gpu->id);
err_free:
	xa_destroy(&gpu->bos);
	kfree(gpu);
	return ret;
}

static void p2pgpu_remove(struct pci_dev *pdev)
{
	struct p2pgpu_dev *gpu = pci_get_drvdata(pdev);

	/*
	 * The misc device goes first so no new file appears; files still open
	 * keep the module (fops owner), so by the time module unload gets here
	 * they are closed.  Sysfs unbind with files open is refused by
	 * p2pgpu_cdev_fini() waiting for them.
	 */
	p2pgpu_cdev_fini(gpu);
	p2pgpu_debugfs_fini(gpu);
	p2pgpu_hmm_fini(gpu);
	p2pgpu_p2pdma_fini(gpu);
	p2pgpu_ce_fini(gpu);
	p2pgpu_aperture_fini(gpu);
	p2pgpu_vram_fini(gpu);
	p2pgpu_irq_fini(gpu);
	pci_clear_master(pdev);
	pci_iounmap(pdev, gpu->regs);
	pci_release_mem_regions(pdev);
	pci_disable_device(pdev);
	ida_free(&p2pgpu_ida, gpu->id);
	xa_destroy(&gpu->bos);
	kfree(gpu);
}

/*
 * FLR: the device drops its aperture windows, direct mode, interrupt enables
 * and the copy engine's ring, and BAR2 returns to its power-on size; VRAM
 * survives.  Hold mm_lock and the engine lock across the reset so no one sees
 * the half-reset device, then put back what the driver had programmed.  The
 * PCI core restores BAR addresses and MSI-X; the ReBAR size is restored by
 * the core's pci_restore_rebar_state().
 */
static void p2pgpu_reset_prepare(struct pci_dev *pdev)
{
	struct p2pgpu_dev *gpu = pci_get_drvdata(pdev);

	mutex_lock(&gpu->mm_lock);
	mutex_lock(&gpu->ce.lock);
}

static void p2pgpu_reset_done(struct pci_dev *pdev)
{
	struct p2pgpu_dev *gpu = pci_get_drvdata(pdev);
	int ret;

	P2PGPU_STAT_INC(gpu, resets);
	/*
	 * Keep the driver's counts in step with the device's: the reset
	 * dropped every window, and when probe had resized BAR2, the PCI
	 * core's ReBAR restore has just changed it back from the power-on
	 * size.
	 */
	P2PGPU_STAT_ADD(gpu, aperture_unmaps, p2pgpu_aperture_mapped(gpu));
	if (gpu->bar_size != gpu->bar_size_initial)
		P2PGPU_STAT_INC(gpu, resizes);
	p2pgpu_irq_enable(gpu);
	ret = p2pgpu_ce_start(gpu);
	if (!ret)
		ret = p2pgpu_aperture_restore(gpu);
	if (ret) {
		dev_err(&pdev->dev, "device state not restored after reset: %d\n", ret);
		gpu->dead = true;
	}
	mutex_unlock(&gpu->ce.lock);
	mutex_unlock(&gpu->mm_lock);
}

static const struct pci_error_handlers p2pgpu_err_handlers = {
	.reset_prepare = p2pgpu_reset_prepare,
	.reset_done = p2pgpu_reset_done,
};

static const struct pci_device_id p2pgpu_ids[] = {
	{ PCI_DEVICE(P2P_GPU_VENDOR_ID, P2P_GPU_DEVICE_ID) },
	{ }
};
MODULE_DEVICE_TABLE(pci, p2pgpu_ids);

static struct pci_driver p2pgpu_driver = {
	.name = KBUILD_MODNAME,
	.id_table = p2pgpu_ids,
	.probe = p2pgpu_probe,
	.remove = p2pgpu_remove,
	.err_handler = &p2pgpu_err_handlers,
};

static int __init p2pgpu_init(void)
{
	int ret;

	ret = p2pgpu_fs_init();
	if (ret)
		return ret;
	p2pgpu_debugfs_root_init();
	ret = pci_register_driver(&p2pgpu_driver);
	if (ret) {
		p2pgpu_debugfs_root_fini();
		p2pgpu_fs_fini();
	}
	return ret;
}

static void __exit p2pgpu_exit(void)
{
	pci_unregister_driver(&p2pgpu_driver);
	p2pgpu_debugfs_root_fini();
	p2pgpu_fs_fini();
	ida_destroy(&p2pgpu_ida);
}

module_init(p2pgpu_init);
module_exit(p2pgpu_exit);
MODULE_DESCRIPTION("p2p-gpu: VRAM, ReBAR aperture, copy engine, P2PDMA, dma-buf and HMM");
MODULE_LICENSE("GPL");
