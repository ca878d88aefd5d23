// SPDX-License-Identifier: GPL-2.0
/*
 * p2pgpu: the BAR2 aperture.
 *
 * Direct mode, when BAR2 is as large as VRAM: BAR2 offset == VRAM offset, and
 * nothing is ever mapped or evicted.
 *
 * Windowed mode otherwise: BAR2 is cut into slots of one granule each.  The
 * first slots hold the published p2pmem for good (pages handed out by
 * pci_alloc_p2pmem() cannot be called back); the rest map VRAM granules on
 * demand.  A granule is mapped once, wherever it is needed, and its slot sits
 * on an LRU list while nobody pins it.  When the device answers FULL, the
 * oldest unpinned slot is taken back: first every user of the window is
 * revoked (CPU mappings zapped, dynamic dma-buf importers told), because the
 * device has no fence on UNMAP, then it is unmapped and reused.  "No room in
 * the BAR" (-ENOSPC, every slot pinned) is a normal answer the caller handles.
 */
#include <linux/slab.h>

#include "p2pgpu_drv.h"

static u32 p2pgpu_aper_cmd(struct p2pgpu_dev *gpu, u32 cmd)
{
	p2pgpu_wr(gpu, P2P_GPU_REG_APER_CMD, cmd);
	return p2pgpu_rd(gpu, P2P_GPU_REG_APER_STATUS);
}

static u32 p2pgpu_aper_map(struct p2pgpu_dev *gpu, u32 granule, u32 slot)
{
	u32 st;

	p2pgpu_wr64(gpu, P2P_GPU_REG_APER_VRAM_OFF, (u64)granule << gpu->granule_shift);
	p2pgpu_wr(gpu, P2P_GPU_REG_APER_SLOT, slot);
	st = p2pgpu_aper_cmd(gpu, P2P_GPU_APER_CMD_MAP);
	if (st == P2P_GPU_APER_OK) {
		P2PGPU_STAT_INC(gpu, aperture_maps);
	} else {
		P2PGPU_STAT_INC(gpu, aperture_map_failures);
		if (st == P2P_GPU_APER_FULL)
			P2PGPU_STAT_INC(gpu, aperture_full);
	}
	return st;
}

static int p2pgpu_aper_unmap(struct p2pgpu_dev *gpu, u32 slot)
{
	u32 st;

	p2pgpu_wr(gpu, P2P_GPU_REG_APER_SLOT, slot);
	st = p2pgpu_aper_cmd(gpu, P2P_GPU_APER_CMD_UNMAP);
	if (st != P2P_GPU_APER_OK) {
		dev_err(&gpu->pdev->dev, "UNMAP of slot %u failed: status %u\n", slot, st);
		return -EIO;
	}
	P2PGPU_STAT_INC(gpu, aperture_unmaps);
	return 0;
}

static void p2pgpu_slot_clear(struct p2pgpu_dev *gpu, u32 slot)
{
	struct p2pgpu_slot *s = &gpu->slots[slot];

	gpu->granule_slot[s->granule] = P2PGPU_NONE;
	s->granule = P2PGPU_NONE;
	list_del_init(&s->lru);
}

/*
 * Take back the oldest window nobody pins.  Its users are revoked before the
 * device unmaps it.  Returns the freed slot, or P2PGPU_NONE.
 */
static u32 p2pgpu_aper_evict_one(struct p2pgpu_dev *gpu)
{
	struct p2pgpu_slot *s;
	u32 slot;

	s = list_first_entry_or_null(&gpu->lru, struct p2pgpu_slot, lru);
	if (!s)
		return P2PGPU_NONE;
	slot = s - gpu->slots;
	p2pgpu_revoke_vram(gpu, (u64)s->granule << gpu->granule_shift,
			   1ull << gpu->granule_shift);
	if (p2pgpu_aper_unmap(gpu, slot))
		return P2PGPU_NONE;
	p2pgpu_slot_clear(gpu, slot);
	P2PGPU_STAT_INC(gpu, aperture_evictions);
	return slot;
}

/*
 * Give the BAR2 offset at which VRAM offset @vram_off is visible, mapping its
 * granule if needed (and evicting to make room).  With @pin the window stays
 * until p2pgpu_aperture_unpin().  -ENOSPC: no room in the BAR.
 */
int p2pgpu_aperture_get(struct p2pgpu_dev *gpu, u64 vram_off, bool pin,
			u64 *bar_off)
{
	u32 granule = vram_off >> gpu->granule_shift;
	u64 in_granule = vram_off & ((1ull << gpu->granule_shift) - 1);
	struct p2pgpu_slot *s;
	u32 slot, st;
	int tries;

	lockdep_assert_held(&gpu->mm_lock);
	if (vram_off >= gpu->vram_size)
		return -EINVAL;
	if (gpu->mode == P2PGPU_APERTURE_DIRECT) {
		*bar_off = vram_off;
		return 0;
	}

	slot = gpu->granule_slot[granule];
	if (slot == P2PGPU_NONE) {
		/*
		 * FULL can also come from the device itself (fault injection,
		 * host memory-slot pressure) while our own books show free
		 * slots, so each refusal evicts one more, a bounded number of
		 * times.
		 */
		for (tries = 0; tries <= 8; tries++) {
			st = p2pgpu_aper_map(gpu, granule, P2P_GPU_APER_SLOT_ANY);
			if (st == P2P_GPU_APER_OK)
				break;
			if (st != P2P_GPU_APER_FULL) {
				dev_err(&gpu->pdev->dev, "MAP of granule %u failed: status %u\n",
					granule, st);
				return -EIO;
			}
			if (p2pgpu_aper_evict_one(gpu) == P2PGPU_NONE)
				break;
		}
		if (st != P2P_GPU_APER_OK) {
			P2PGPU_STAT_INC(gpu, aperture_no_room);
			return -ENOSPC;
		}
		slot = p2pgpu_rd(gpu, P2P_GPU_REG_APER_RESULT_SLOT);
		if (slot < gpu->first_dyn_slot || slot >= gpu->nslots ||
		    gpu->slots[slot].granule != P2PGPU_NONE) {
			dev_err(&gpu->pdev->dev, "MAP chose slot %u, which is not free\n", slot);
			return -EIO;
		}
		gpu->slots[slot].granule = granule;
		gpu->granule_slot[granule] = slot;
	}
	s = &gpu->slots[slot];
	if (pin) {
		if (!s->pins++)
			list_del_init(&s->lru);
	} else if (!s->pins) {
		list_move_tail(&s->lru, &gpu->lru);
	}
	*bar_off = ((u64)slot << gpu->granule_shift) + in_granule;
	return 0;
}

void p2pgpu_aperture_unpin(struct p2pgpu_dev *gpu, u64 vram_off)
{
	u32 slot, granule = vram_off >> gpu->granule_shift;
	struct p2pgpu_slot *s;

	lockdep_assert_held(&gpu->mm_lock);
	if (gpu->mode == P2PGPU_APERTURE_DIRECT)
		return;
	slot = gpu->granule_slot[granule];
	if (WARN_ON(slot == P2PGPU_NONE))
		return;
	s = &gpu->slots[slot];
	if (WARN_ON(!s->pins))
		return;
	if (!--s->pins)
		list_add_tail(&s->lru, &gpu->lru);
}

/*
 * Drop the windows of VRAM [vram_off, +size) that nobody pins, revoking
 * their users first.  -EBUSY if one is pinned (it stays).
 */
int p2pgpu_aperture_drop(struct p2pgpu_dev *gpu, u64 vram_off, u64 size,
			 u32 *dropped)
{
	u32 g, first = vram_off >> gpu->granule_shift;
	u32 last = (vram_off + size - 1) >> gpu->granule_shift;
	int ret = 0;

	lockdep_assert_held(&gpu->mm_lock);
	*dropped = 0;
	if (gpu->mode == P2PGPU_APERTURE_DIRECT)
		return 0;
	for (g = first; g <= last; g++) {
		u32 slot = gpu->granule_slot[g];

		if (slot == P2PGPU_NONE)
			continue;
		if (gpu->slots[slot].pins) {
			ret = -EBUSY;
			continue;
		}
		p2pgpu_revoke_vram(gpu, (u64)g << gpu->granule_shift,
				   1ull << gpu->granule_shift);
		if (p2pgpu_aper_unmap(gpu, slot))
			return -EIO;
		p2pgpu_slot_clear(gpu, slot);
		(*dropped)++;
	}
	return ret;
}

/* Is @phys in this GPU's BAR2, and if so, which VRAM is behind it? */
bool p2pgpu_bar_to_vram(struct p2pgpu_dev *gpu, phys_addr_t phys, u64 *vram_off)
{
	u64 off, granule;
	u32 slot;

	lockdep_assert_held(&gpu->mm_lock);
	if (phys < gpu->bar_phys || phys - gpu->bar_phys >= gpu->bar_size)
		return false;
	off = phys - gpu->bar_phys;
	if (gpu->mode == P2PGPU_APERTURE_DIRECT) {
		*vram_off = off;
		return true;
	}
	slot = off >> gpu->granule_shift;
	granule = gpu->slots[slot].granule;
	if (granule == P2PGPU_NONE)
		return false;
	*vram_off = (granule << gpu->granule_shift) +
		    (off & ((1ull << gpu->granule_shift) - 1));
	return true;
}

static int p2pgpu_aperture_program(struct p2pgpu_dev *gpu)
{
	u32 slot, st;

	if (gpu->mode == P2PGPU_APERTURE_DIRECT) {
		p2pgpu_wr(gpu, P2P_GPU_REG_APER_CTRL, P2P_GPU_APER_CTRL_DIRECT);
		st = p2pgpu_rd(gpu, P2P_GPU_REG_APER_STATUS);
		if (st != P2P_GPU_APER_OK) {
			dev_err(&gpu->pdev->dev, "direct mode refused: status %u\n", st);
			return -EIO;
		}
		return 0;
	}
	p2pgpu_wr(gpu, P2P_GPU_REG_APER_CTRL, 0);
	p2pgpu_aper_cmd(gpu, P2P_GPU_APER_CMD_UNMAP_ALL);
	for (slot = 0; slot < gpu->nslots; slot++) {
		u32 g = gpu->slots[slot].granule;

		if (g == P2PGPU_NONE)
			continue;
		st = p2pgpu_aper_map(gpu, g, slot);
		if (st != P2P_GPU_APER_OK) {
			dev_err(&gpu->pdev->dev, "re-MAP of slot %u failed: status %u\n",
				slot, st);
			return -EIO;
		}
	}
	return 0;
}

int p2pgpu_aperture_init(struct p2pgpu_dev *gpu)
{
	u32 granules, slot;
	int ret;

	if (gpu->bar_size >= gpu->vram_size) {
		gpu->mode = P2PGPU_APERTURE_DIRECT;
		return p2pgpu_aperture_program(gpu);
	}

	gpu->mode = P2PGPU_APERTURE_WINDOWED;
	gpu->nslots = p2pgpu_rd(gpu, P2P_GPU_REG_APER_SLOTS);
	if (gpu->nslots != gpu->bar_size >> gpu->granule_shift) {
		dev_err(&gpu->pdev->dev, "%u slots for a BAR2 of %llu bytes\n",
			gpu->nslots, gpu->bar_size);
		return -ENODEV;
	}
	granules = gpu->vram_size >> gpu->granule_shift;
	gpu->slots = kvcalloc(gpu->nslots, sizeof(*gpu->slots), GFP_KERNEL);
	gpu->granule_slot = kvcalloc(granules, sizeof(u32), GFP_KERNEL);
	if (!gpu->slots || !gpu->granule_slot) {
		p2pgpu_aperture_fini(gpu);
		return -ENOMEM;
	}
	memset(gpu->granule_slot, 0xff, granules * sizeof(u32));
	for (slot = 0; slot < gpu->nslots; slot++) {
		gpu->slots[slot].granule = P2PGPU_NONE;
		INIT_LIST_HEAD(&gpu->slots[slot].lru);
	}
	/* p2pmem owns the first slots, mapped 1:1 and pinned for good. */
	gpu->first_dyn_slot = gpu->p2pmem_size >> gpu->granule_shift;
	for (slot = 0; slot < gpu->first_dyn_slot; slot++) {
		u32 g = (gpu->p2pmem_off >> gpu->granule_shift) + slot;

		gpu->slots[slot].granule = g;
		gpu->slots[slot].pins = 1;
		gpu->granule_slot[g] = slot;
	}
	ret = p2pgpu_aperture_program(gpu);
	if (ret)
		p2pgpu_aperture_fini(gpu);
	return ret;
}

/* Windows the driver has mapped (all of them are gone after a reset). */
u32 p2pgpu_aperture_mapped(struct p2pgpu_dev *gpu)
{
	u32 slot, n = 0;

	for (slot = 0; gpu->slots && slot < gpu->nslots; slot++)
		n += gpu->slots[slot].granule != P2PGPU_NONE;
	return n;
}

/* After a reset: the device forgot its windows; map them again. */
int p2pgpu_aperture_restore(struct p2pgpu_dev *gpu)
{
	lockdep_assert_held(&gpu->mm_lock);
	return p2pgpu_aperture_program(gpu);
}

void p2pgpu_aperture_fini(struct p2pgpu_dev *gpu)
{
	p2pgpu_wr(gpu, P2P_GPU_REG_APER_CTRL, 0);
	p2pgpu_aper_cmd(gpu, P2P_GPU_APER_CMD_UNMAP_ALL);
	P2PGPU_STAT_ADD(gpu, aperture_unmaps, p2pgpu_aperture_mapped(gpu));
	kvfree(gpu->slots);
	kvfree(gpu->granule_slot);
	gpu->slots = NULL;
	gpu->granule_slot = NULL;
}
