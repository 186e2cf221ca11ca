/* SPDX-License-Identifier: GPL-2.0 */
/*
 * memfile_notifier: the contract between a backing store that hands out
 * pages of a file by pfn and the consumers of those pages.
 *
 * See Documentation/mm/memfile_notifier.rst.
 */
#ifndef _LINUX_MEMFILE_NOTIFIER_H
#define _LINUX_MEMFILE_NOTIFIER_H

#include <linux/err.h>
#include <linux/list.h>
#include <linux/mutex.h>
#include <linux/types.h>

struct file;
struct module;
struct memfile_notifier;

/*
 * Properties a consumer can demand of a file's pages.  A backing store
 * states which ones a file provides; registration fails if any demanded
 * property is missing.
 */
/* No userspace access: no read/write/mmap/splice/GUP of the pages. */
#define MEMFILE_F_USER_INACCESSIBLE	BIT(0)
/* The pages never move: no migration, compaction or offlining. */
#define MEMFILE_F_UNMOVABLE		BIT(1)
/* The pages are never reclaimed: no swap, no writeback. */
#define MEMFILE_F_UNRECLAIMABLE		BIT(2)

#define MEMFILE_F_ALLOWED_MASK		(MEMFILE_F_USER_INACCESSIBLE | \
					 MEMFILE_F_UNMOVABLE | \
					 MEMFILE_F_UNRECLAIMABLE)

/**
 * struct memfile_notifier_ops - callbacks from the backing store
 * @owner: module that provides the callbacks; held while registered
 * @invalidate_begin: pages in [@start, @end) are about to change: either
 *	they are about to be freed (hole punch, truncate) or the range is
 *	about to be allocated.  Stop using pages in the range before
 *	returning.  May sleep.
 * @invalidate_end: the change announced by @invalidate_begin for the same
 *	range is complete.  May sleep.
 *
 * Offsets are in pages of the file and are clamped to the range the
 * consumer registered on.  A begin is always followed by the end for the
 * same range, from the same task.
 */
struct memfile_notifier_ops {
	struct module *owner;
	void (*invalidate_begin)(struct memfile_notifier *notifier,
				 pgoff_t start, pgoff_t end);
	void (*invalidate_end)(struct memfile_notifier *notifier,
			       pgoff_t start, pgoff_t end);
};

/**
 * struct memfile_node - per-file state kept by a backing store
 * @lock: serialises registration against invalidation brackets
 * @notifiers: consumers registered on this file
 * @flags: MEMFILE_F_* properties the file's pages have
 *
 * Embedded in the backing store's per-inode data and set up with
 * memfile_node_init().
 */
struct memfile_node {
	struct mutex lock;		/* held from invalidate_begin to _end */
	struct list_head notifiers;
	unsigned long flags;
};

/**
 * struct memfile_notifier - a consumer's registration on a file range
 * @ops: the consumer's callbacks; set before registering
 * @list: entry in the file's list of consumers
 * @file: the file, referenced while registered
 * @node: the file's memfile_node
 * @start: first page offset of the registered range
 * @end: page offset just past the registered range
 *
 * Consumers set @ops and leave the other fields to the core.
 */
struct memfile_notifier {
	const struct memfile_notifier_ops *ops;
	struct list_head list;
	struct file *file;
	struct memfile_node *node;
	pgoff_t start;
	pgoff_t end;
};

#ifdef CONFIG_MEMFILE_NOTIFIER
/* Backing store side. */
void memfile_node_init(struct memfile_node *node, unsigned long flags);
void memfile_notifier_invalidate_begin(struct memfile_node *node,
				       pgoff_t start, pgoff_t end);
void memfile_notifier_invalidate_end(struct memfile_node *node,
				     pgoff_t start, pgoff_t end);

/* Consumer side. */
int memfile_register_notifier(struct file *file, pgoff_t start,
			      pgoff_t nr_pages, unsigned long flags,
			      struct memfile_notifier *notifier);
void memfile_unregister_notifier(struct memfile_notifier *notifier);
int memfile_get_pfn(struct memfile_notifier *notifier, pgoff_t offset,
		    unsigned long *pfn, int *order);
bool memfile_range_has_pages(struct memfile_notifier *notifier, pgoff_t start,
			     pgoff_t end);

/* Inaccessible files: memfd_create(MFD_INACCESSIBLE). */
struct file *inaccessible_file_create(const char *name, loff_t size,
				      unsigned int flags);
unsigned int *inaccessible_file_seals(struct file *file);
#else
static inline struct file *inaccessible_file_create(const char *name,
						    loff_t size,
						    unsigned int flags)
{
	return ERR_PTR(-EINVAL);
}

static inline unsigned int *inaccessible_file_seals(struct file *file)
{
	return NULL;
}
#endif /* CONFIG_MEMFILE_NOTIFIER */

#endif /* _LINUX_MEMFILE_NOTIFIER_H */
