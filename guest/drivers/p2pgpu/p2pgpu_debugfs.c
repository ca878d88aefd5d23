// SPDX-License-Identifier: GPL-2.0
/*
 * p2pgpu: debugfs, /sys/kernel/debug/p2pgpu/<pci name>/:
 *   info      what probe made of the device (BAR2 size, aperture mode, layout)
 *   counters  the driver's event counters, "name value" per line
 *   aperture  the windows: slot, VRAM granule, pins
 */
#include <linux/debugfs.h>
#include <linux/seq_file.h>

#include "p2pgpu_drv.h"

static struct dentry *p2pgpu_debugfs_root;

static int p2pgpu_info_show(struct seq_file *m, void *unused)
{
	struct p2pgpu_dev *gpu = m->private;

	seq_printf(m, "name %s\n", gpu->name);
	seq_printf(m, "vram_size %llu\n", gpu->vram_size);
	seq_printf(m, "bar_size %llu\n", gpu->bar_size);
	seq_printf(m, "bar_size_initial %llu\n", (u64)gpu->bar_size_initial);
	seq_printf(m, "resize_status %d\n", gpu->resize_status);
	seq_printf(m, "aperture_mode %s\n",
		   gpu->mode == P2PGPU_APERTURE_DIRECT ? "direct" : "windowed");
	seq_printf(m, "granule %llu\n", 1ull << gpu->granule_shift);
	seq_printf(m, "slots %u\n", gpu->nslots);
	seq_printf(m, "dynamic_slots %u\n", gpu->nslots - gpu->first_dyn_slot);
	seq_printf(m, "p2pmem %#llx+%#llx\n", gpu->p2pmem_off, gpu->p2pmem_size);
	seq_printf(m, "device_private %#llx+%#llx\n", gpu->hmm_off, gpu->hmm_size);
	seq_printf(m, "bo_vram %#llx+%#llx\n", gpu->bo_off, gpu->bo_size);
	seq_printf(m, "bo_vram_free %zu\n", gen_pool_avail(gpu->vram));
	return 0;
}
DEFINE_SHOW_ATTRIBUTE(p2pgpu_info);

static int p2pgpu_counters_show(struct seq_file *m, void *unused)
{
	struct p2pgpu_dev *gpu = m->private;
	struct p2pgpu_stats *s = &gpu->stats;

#define P2PGPU_SHOW(name) seq_printf(m, #name " %lld\n", atomic64_read(&s->name))
	P2PGPU_SHOW(resize_attempts);
	P2PGPU_SHOW(resizes);
	P2PGPU_SHOW(resets);
	P2PGPU_SHOW(aperture_maps);
	P2PGPU_SHOW(aperture_unmaps);
	P2PGPU_SHOW(aperture_map_failures);
	P2PGPU_SHOW(aperture_full);
	P2PGPU_SHOW(aperture_evictions);
	P2PGPU_SHOW(aperture_no_room);
	P2PGPU_SHOW(copies);
	P2PGPU_SHOW(copy_bytes);
	P2PGPU_SHOW(copy_errors);
	P2PGPU_SHOW(copy_timeouts);
	P2PGPU_SHOW(ring_faults);
	P2PGPU_SHOW(cpu_faults);
	P2PGPU_SHOW(revocations);
	P2PGPU_SHOW(move_notifies);
	P2PGPU_SHOW(exports);
	P2PGPU_SHOW(migrate_to_dev);
	P2PGPU_SHOW(migrate_to_sys);
	P2PGPU_SHOW(migrate_to_ram);
	P2PGPU_SHOW(reg_errors);
	P2PGPU_SHOW(interrupts);
#undef P2PGPU_SHOW
	return 0;
}
DEFINE_SHOW_ATTRIBUTE(p2pgpu_counters);

static int p2pgpu_aperture_show(struct seq_file *m, void *unused)
{
	struct p2pgpu_dev *gpu = m->private;
	u32 slot;

	mutex_lock(&gpu->mm_lock);
	seq_printf(m, "mode %s\n",
		   gpu->mode == P2PGPU_APERTURE_DIRECT ? "direct" : "windowed");
	for (slot = 0; slot < gpu->nslots; slot++) {
		struct p2pgpu_slot *s = &gpu->slots[slot];

		if (s->granule != P2PGPU_NONE)
			seq_printf(m, "slot %u vram %#llx pins %u\n", slot,
				   (u64)s->granule << gpu->granule_shift, s->pins);
	}
	mutex_unlock(&gpu->mm_lock);
	return 0;
}
DEFINE_SHOW_ATTRIBUTE(p2pgpu_aperture);

void p2pgpu_debugfs_init(struct p2pgpu_dev *gpu)
{
	gpu->debugfs = debugfs_create_dir(pci_name(gpu->pdev), p2pgpu_debugfs_root);
	debugfs_create_file("info", 0444, gpu->debugfs, gpu, &p2pgpu_info_fops);
	debugfs_create_file("counters", 0444, gpu->debugfs, gpu, &p2pgpu_counters_fops);
	debugfs_create_file("aperture", 0444, gpu->debugfs, gpu, &p2pgpu_aperture_fops);
}

void p2pgpu_debugfs_fini(struct p2pgpu_dev *gpu)
{
	debugfs_remove_recursive(gpu->debugfs);
	gpu->debugfs = NULL;
}

void p2pgpu_debugfs_root_init(void)
{
	p2pgpu_debugfs_root = debugfs_create_dir("p2pgpu", NULL);
}

void p2pgpu_debugfs_root_fini(void)
{
	debugfs_remove_recursive(p2pgpu_debugfs_root);
}
