// SPDX-License-Identifier: GPL-2.0
/*
 * memfile_notifier: hand the pages of a file to in-kernel consumers by pfn
 * and tell them, before and after, when the file's pages change.
 *
 * See Documentation/mm/memfile_notifier.rst for the contract.
 */

#include <linux/debugfs.h>
#include <linux/file.h>
#include <linux/fs.h>
#include <linux/memfile_notifier.h>
#include <linux/module.h>
#include <linux/overflow.h>
#include <linux/pagemap.h>

#include "internal.h"

/* Consumers registered on any file, for debugfs. */
static atomic_long_t memfile_nr_consumers;

/**
 * memfile_node_init - set up the per-file state of a backing store file
 * @node: the node, embedded in the backing store's per-inode data
 * @flags: MEMFILE_F_* properties the file's pages have
 */
void memfile_node_init(struct memfile_node *node, unsigned long flags)
{
	mutex_init(&node->lock);
	INIT_LIST_HEAD(&node->notifiers);
	node->flags = flags;
}

/**
 * memfile_notifier_invalidate_begin - announce a change of a file range
 * @node: the file's node
 * @start: first page offset of the range
 * @end: page offset just past the range
 *
 * Called by the backing store before it frees pages of [@start, @end) or
 * before it allocates pages there.  Every consumer whose registered range
 * intersects the range is called with the intersection.  The node stays
 * locked until memfile_notifier_invalidate_end() for the same range, which
 * the same task must call once the change is complete; consumers cannot
 * register or unregister in between.
 */
void memfile_notifier_invalidate_begin(struct memfile_node *node,
				       pgoff_t start, pgoff_t end)
	__acquires(&node->lock)
{
	struct memfile_notifier *notifier;

	mutex_lock(&node->lock);
	list_for_each_entry(notifier, &node->notifiers, list) {
		pgoff_t s = max(start, notifier->start);
		pgoff_t e = min(end, notifier->end);

		if (s < e)
			notifier->ops->invalidate_begin(notifier, s, e);
	}
}

/**
 * memfile_notifier_invalidate_end - the change of a file range is complete
 * @node: the file's node
 * @start: first page offset of the range, as given to the begin call
 * @end: page offset just past the range, as given to the begin call
 *
 * Calls the consumers that were called by the matching begin, then unlocks
 * the node.
 */
void memfile_notifier_invalidate_end(struct memfile_node *node,
				     pgoff_t start, pgoff_t end)
	__releases(&node->lock)
{
	struct memfile_notifier *notifier;

	lockdep_assert_held(&node->lock);
	list_for_each_entry(notifier, &node->notifiers, list) {
		pgoff_t s = max(start, notifier->start);
		pgoff_t e = min(end, notifier->end);

		if (s < e)
			notifier->ops->invalidate_end(notifier, s, e);
	}
	mutex_unlock(&node->lock);
}

/**
 * memfile_register_notifier - register a consumer on a range of a file
 * @file: the file
 * @start: first page offset of the range
 * @nr_pages: number of pages in the range
 * @flags: MEMFILE_F_* properties the consumer demands of the pages
 * @notifier: the consumer, with @notifier->ops set
 *
 * On success the consumer receives the invalidation callbacks for the
 * range and may look up its pages with memfile_get_pfn().  The file is
 * referenced and the module that owns @notifier->ops is pinned until
 * memfile_unregister_notifier().  The ranges of the consumers of one file
 * never overlap, so every page of a file has at most one consumer.
 *
 * Return: 0 on success;
 * -EINVAL if @flags has unknown bits, @notifier->ops lacks a callback, or
 * the range is empty, wraps or does not lie within the file's size;
 * -EOPNOTSUPP if @file is not an inaccessible file or its pages lack a
 * property demanded in @flags;
 * -EBUSY if the range overlaps the range of another consumer;
 * -ENODEV if the owning module is being unloaded.
 */
int memfile_register_notifier(struct file *file, pgoff_t start,
			      pgoff_t nr_pages, unsigned long flags,
			      struct memfile_notifier *notifier)
{
	const struct memfile_notifier_ops *ops = notifier->ops;
	struct memfile_notifier *other;
	struct memfile_node *node;
	pgoff_t end;
	int ret = 0;

	if (flags & ~MEMFILE_F_ALLOWED_MASK)
		return -EINVAL;
	if (!ops || !ops->invalidate_begin || !ops->invalidate_end)
		return -EINVAL;

	node = inaccessible_file_node(file);
	if (!node || (flags & ~node->flags))
		return -EOPNOTSUPP;

	if (!nr_pages || check_add_overflow(start, nr_pages, &end) ||
	    end > DIV_ROUND_UP(i_size_read(file_inode(file)), PAGE_SIZE))
		return -EINVAL;

	if (!try_module_get(ops->owner))
		return -ENODEV;

	mutex_lock(&node->lock);
	list_for_each_entry(other, &node->notifiers, list) {
		if (start < other->end && other->start < end) {
			ret = -EBUSY;
			goto out;
		}
	}
	notifier->file = get_file(file);
	notifier->node = node;
	notifier->start = start;
	notifier->end = end;
	list_add_tail(&notifier->list, &node->notifiers);
	atomic_long_inc(&memfile_nr_consumers);
out:
	mutex_unlock(&node->lock);
	if (ret)
		module_put(ops->owner);
	return ret;
}
EXPORT_SYMBOL_GPL(memfile_register_notifier);

/**
 * memfile_unregister_notifier - undo memfile_register_notifier()
 * @notifier: a registered consumer
 *
 * Waits for an invalidation in flight on the file to complete, so no
 * callback runs once this returns.  Must not be called from the consumer's
 * own callbacks.  Drops the file reference and the module pin.
 */
void memfile_unregister_notifier(struct memfile_notifier *notifier)
{
	struct memfile_node *node = notifier->node;

	mutex_lock(&node->lock);
	list_del(&notifier->list);
	atomic_long_dec(&memfile_nr_consumers);
	mutex_unlock(&node->lock);
	/* The node lives in the file's inode: release the file last. */
	fput(notifier->file);
	module_put(notifier->ops->owner);
}
EXPORT_SYMBOL_GPL(memfile_unregister_notifier);

/**
 * memfile_get_pfn - look up and reference the page at a file offset
 * @notifier: a registered consumer
 * @offset: page offset in the file, within the consumer's range
 * @pfn: on success, the page's pfn
 * @order: on success, the order of the folio that holds the page
 *
 * Never allocates.  Every page was zeroed when it was allocated, so no
 * earlier content of the memory is ever visible through it.  The
 * reference keeps the page from being freed (but not from being
 * invalidated) until the consumer drops it with put_page().
 *
 * Return: 0 on success; -EINVAL if @offset is outside the consumer's
 * range; -ENOENT if the file has no page at @offset; -EHWPOISON if the
 * page there is poisoned (the consumer was invalidated for it, and it
 * stays until the range is punched).
 */
int memfile_get_pfn(struct memfile_notifier *notifier, pgoff_t offset,
		    unsigned long *pfn, int *order)
{
	if (offset < notifier->start || offset >= notifier->end)
		return -EINVAL;
	return inaccessible_get_pfn(notifier->file, offset, pfn, order);
}
EXPORT_SYMBOL_GPL(memfile_get_pfn);

/**
 * memfile_range_has_pages - whether a range of the file holds any page
 * @notifier: a registered consumer
 * @start: first page offset of the range, within the consumer's range
 * @end: page offset after the range, within the consumer's range
 *
 * Takes no lock and no reference, so it may be called in atomic context,
 * and its answer may be stale by the time it returns: a consumer that
 * acts on it must hold off, as for memfile_get_pfn(), until invalidations
 * that raced with it are done.
 *
 * Return: true if the file has a page at some offset of [@start, @end),
 * false if the range is a hole throughout or is empty or lies outside
 * the consumer's range.
 */
bool memfile_range_has_pages(struct memfile_notifier *notifier, pgoff_t start,
			     pgoff_t end)
{
	if (start >= end || start < notifier->start || end > notifier->end)
		return false;
	return inaccessible_has_pages(notifier->file, start, end);
}
EXPORT_SYMBOL_GPL(memfile_range_has_pages);

/*
 * /sys/kernel/debug/memfile_notifier/consumers: how many consumers are
 * registered on all files together, so tests can check that teardown
 * leaves none behind.
 */
static int memfile_consumers_get(void *data, u64 *val)
{
	*val = atomic_long_read(&memfile_nr_consumers);
	return 0;
}
DEFINE_DEBUGFS_ATTRIBUTE(memfile_consumers_fops, memfile_consumers_get,
			 NULL, "%llu\n");

#ifdef CONFIG_MEMFILE_NOTIFIER_TEST_PFN
/*
 * /sys/kernel/debug/memfile_notifier/pfn: write "FD OFFSET", a file
 * descriptor of the writer's for an inaccessible file and a page offset in
 * it, then read back the pfn of the page there, as memfile_get_pfn() gives
 * it to a consumer.  Tests use it to check from userspace that the pages
 * stay where they are; it tells no more than /proc/<pid>/pagemap tells
 * CAP_SYS_ADMIN about mapped pages.
 */
static int memfile_pfn_open(struct inode *inode, struct file *file)
{
	unsigned long *pfn;

	if (!capable(CAP_SYS_ADMIN))
		return -EPERM;
	pfn = kmalloc(sizeof(*pfn), GFP_KERNEL);
	if (!pfn)
		return -ENOMEM;
	*pfn = ULONG_MAX;
	file->private_data = pfn;
	return 0;
}

static int memfile_pfn_release(struct inode *inode, struct file *file)
{
	kfree(file->private_data);
	return 0;
}

static ssize_t memfile_pfn_write(struct file *file, const char __user *ubuf,
				 size_t count, loff_t *ppos)
{
	unsigned long *result = file->private_data, pfn;
	struct file *target;
	pgoff_t offset;
	unsigned int fd;
	char buf[48];
	int order, ret;

	if (count >= sizeof(buf))
		return -EINVAL;
	if (copy_from_user(buf, ubuf, count))
		return -EFAULT;
	buf[count] = '\0';
	if (sscanf(buf, "%u %lu", &fd, &offset) != 2)
		return -EINVAL;

	target = fget(fd);
	if (!target)
		return -EBADF;
	ret = -EINVAL;
	if (inaccessible_file_node(target))
		ret = inaccessible_get_pfn(target, offset, &pfn, &order);
	fput(target);
	if (ret)
		return ret;
	put_page(pfn_to_page(pfn));
	*result = pfn;
	return count;
}

static ssize_t memfile_pfn_read(struct file *file, char __user *ubuf,
				size_t count, loff_t *ppos)
{
	unsigned long *pfn = file->private_data;
	char buf[24];
	int len;

	if (*pfn == ULONG_MAX)
		return -ENODATA;
	len = scnprintf(buf, sizeof(buf), "%lu\n", *pfn);
	return simple_read_from_buffer(ubuf, count, ppos, buf, len);
}

static const struct file_operations memfile_pfn_fops = {
	.owner		= THIS_MODULE,
	.open		= memfile_pfn_open,
	.release	= memfile_pfn_release,
	.read		= memfile_pfn_read,
	.write		= memfile_pfn_write,
	.llseek		= default_llseek,
};
#endif

static int __init memfile_notifier_debugfs_init(void)
{
	struct dentry *dir = debugfs_create_dir("memfile_notifier", NULL);

	debugfs_create_file_unsafe("consumers", 0444, dir, NULL,
				   &memfile_consumers_fops);
#ifdef CONFIG_MEMFILE_NOTIFIER_TEST_PFN
	debugfs_create_file("pfn", 0600, dir, NULL, &memfile_pfn_fops);
#endif
	inaccessible_init_debugfs(dir);
	return 0;
}
late_initcall(memfile_notifier_debugfs_init);
