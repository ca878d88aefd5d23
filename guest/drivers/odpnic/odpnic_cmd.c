// SPDX-License-Identifier: GPL-2.0
/*
 * odpnic: the command queue.
 *
 * One command is in flight at a time, under cmd_lock, and its caller sleeps
 * until the device hands the entry back (owner = 0, vector 0).  The device
 * executes a command within one main-loop turn, so queueing more would only
 * buy parallelism the device does not have, and INVALIDATE, the command a
 * notifier waits for, must not sit behind a queue of others.
 */
#include <linux/dma-mapping.h>

#include "odpnic_drv.h"

int odpnic_cmdq_init(struct odpnic_dev *dev)
{
	struct device *d = &dev->pdev->dev;
	size_t size = sizeof(*dev->cmdq) << ODPNIC_CMDQ_LOG;

	dev->cmdq = dma_alloc_coherent(d, size, &dev->cmdq_dma, GFP_KERNEL);
	if (!dev->cmdq)
		return -ENOMEM;
	dev->xlt = dma_alloc_coherent(d, ODPNIC_XLT_CHUNK * sizeof(u64),
				      &dev->xlt_dma, GFP_KERNEL);
	if (!dev->xlt) {
		dma_free_coherent(d, size, dev->cmdq, dev->cmdq_dma);
		return -ENOMEM;
	}
	dev->cmdq_pi = 0;
	odpnic_wr(dev, ODP_NIC_REG_CMDQ_BASE_LO, lower_32_bits(dev->cmdq_dma));
	odpnic_wr(dev, ODP_NIC_REG_CMDQ_BASE_HI, upper_32_bits(dev->cmdq_dma));
	odpnic_wr(dev, ODP_NIC_REG_CMDQ_LOG_SIZE, ODPNIC_CMDQ_LOG);
	return 0;
}

void odpnic_cmdq_fini(struct odpnic_dev *dev)
{
	struct device *d = &dev->pdev->dev;

	odpnic_wr(dev, ODP_NIC_REG_CMDQ_LOG_SIZE, 0);
	dma_free_coherent(d, ODPNIC_XLT_CHUNK * sizeof(u64), dev->xlt,
			  dev->xlt_dma);
	dma_free_coherent(d, sizeof(*dev->cmdq) << ODPNIC_CMDQ_LOG, dev->cmdq,
			  dev->cmdq_dma);
}

void odpnic_cmd_irq(struct odpnic_dev *dev)
{
	wake_up(&dev->cmd_wq);
}

static int odpnic_cmd_errno(u8 status)
{
	switch (status) {
	case ODP_NIC_CMD_OK:
		return 0;
	case ODP_NIC_CMD_BAD_OPCODE:
		return -EOPNOTSUPP;
	case ODP_NIC_CMD_BAD_PARAM:
		return -EINVAL;
	case ODP_NIC_CMD_BAD_INDEX:
		return -ENOENT;
	case ODP_NIC_CMD_BUSY:
		return -EBUSY;
	case ODP_NIC_CMD_BAD_STATE:
		return -EALREADY;
	case ODP_NIC_CMD_NO_RESOURCES:
		return -ENOSPC;
	case ODP_NIC_CMD_DMA_ERROR:
	default:
		return -EIO;
	}
}

static bool odpnic_cmd_done(struct odpnic_dev *dev, struct odp_nic_cmd *slot)
{
	return !READ_ONCE(slot->owner) ||
	       (odpnic_rd(dev, ODP_NIC_REG_STATUS) & ODP_NIC_STATUS_FATAL);
}

int odpnic_cmd_locked(struct odpnic_dev *dev, struct odp_nic_cmd *cmd,
		      u64 *out)
{
	struct odp_nic_cmd *slot;
	long left;
	int ret;

	lockdep_assert_held(&dev->cmd_lock);
	if (dev->dead)
		return -ENODEV;
	slot = &dev->cmdq[dev->cmdq_pi & ((1u << ODPNIC_CMDQ_LOG) - 1)];
	memcpy(&slot->u, &cmd->u, sizeof(slot->u));
	slot->opcode = cmd->opcode;
	slot->status = 0;
	slot->token = dev->cmdq_pi;
	slot->out = 0;
	/* The device must see the arguments before it sees the entry as its. */
	dma_wmb();
	WRITE_ONCE(slot->owner, 1);
	dev->cmdq_pi++;
	odpnic_wr(dev, ODP_NIC_REG_CMDQ_PI, dev->cmdq_pi);

	left = wait_event_timeout(dev->cmd_wq, odpnic_cmd_done(dev, slot),
				  msecs_to_jiffies(ODPNIC_CMD_TIMEOUT_MS));
	if (READ_ONCE(slot->owner)) {
		/*
		 * A device that stops answering may still own our memory: reset
		 * it, so that nothing it holds is used after we free it.
		 */
		dev_err(&dev->pdev->dev, "command %u %s: resetting the device\n",
			cmd->opcode, left ? "hit a fatal device error" :
			"timed out");
		odpnic_wr(dev, ODP_NIC_REG_CTRL, ODP_NIC_CTRL_RESET);
		dev->dead = true;
		return left ? -EIO : -ETIMEDOUT;
	}
	dma_rmb();
	ret = odpnic_cmd_errno(slot->status);
	if (ret)
		dev_dbg(&dev->pdev->dev, "command %u: status %u\n", cmd->opcode,
			slot->status);
	if (out)
		*out = slot->out;
	return ret;
}

int odpnic_cmd(struct odpnic_dev *dev, struct odp_nic_cmd *cmd, u64 *out)
{
	int ret;

	mutex_lock(&dev->cmd_lock);
	ret = odpnic_cmd_locked(dev, cmd, out);
	mutex_unlock(&dev->cmd_lock);
	return ret;
}

int odpnic_cmd_num(struct odpnic_dev *dev, u8 opcode, u32 num)
{
	struct odp_nic_cmd cmd = { .opcode = opcode };

	cmd.u.num.num = num;
	return odpnic_cmd(dev, &cmd, NULL);
}

/*
 * Write @count translation entries of region @key from page @first, in
 * chunks of the list buffer; @fill produces each chunk.  The fill runs under
 * cmd_lock because the buffer is shared: it must not allocate or sleep on
 * anything an mmu notifier could be waiting for.
 */
int odpnic_xlt_write(struct odpnic_dev *dev, u32 key, u64 first, u64 count,
		     odpnic_xlt_fill_t fill, void *ctx)
{
	struct odp_nic_cmd cmd = { .opcode = ODP_NIC_CMD_UPDATE_XLT };
	int ret = 0;

	mutex_lock(&dev->cmd_lock);
	while (count) {
		u32 n = min_t(u64, count, ODPNIC_XLT_CHUNK);

		ret = fill(ctx, first, n, dev->xlt);
		if (ret)
			break;
		cmd.u.update_xlt.key = key;
		cmd.u.update_xlt.count = n;
		cmd.u.update_xlt.page_index = first;
		cmd.u.update_xlt.list_addr = dev->xlt_dma;
		ret = odpnic_cmd_locked(dev, &cmd, NULL);
		if (ret)
			break;
		ODPNIC_SW_ADD(dev, PAGES_MAPPED, n);
		first += n;
		count -= n;
	}
	mutex_unlock(&dev->cmd_lock);
	return ret;
}

int odpnic_cmd_invalidate(struct odpnic_dev *dev, u32 key, u64 va, u64 len)
{
	struct odp_nic_cmd cmd = { .opcode = ODP_NIC_CMD_INVALIDATE };

	cmd.u.range.key = key;
	cmd.u.range.va = va;
	cmd.u.range.length = len;
	return odpnic_cmd(dev, &cmd, NULL);
}

int odpnic_cmd_resume(struct odpnic_dev *dev, u32 qpn, bool ok)
{
	struct odp_nic_cmd cmd = { .opcode = ODP_NIC_CMD_RESUME };

	cmd.u.resume.qpn = qpn;
	cmd.u.resume.status = ok ? ODP_NIC_RESUME_OK : ODP_NIC_RESUME_ERROR;
	return odpnic_cmd(dev, &cmd, NULL);
}
