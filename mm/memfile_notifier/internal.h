/* SPDX-License-Identifier: GPL-2.0 */
/*
 * What the memfile_notifier core asks of the store of inaccessible
 * files, its one backing store (inaccessible.c).
 */
#ifndef _MM_MEMFILE_NOTIFIER_INTERNAL_H
#define _MM_MEMFILE_NOTIFIER_INTERNAL_H

#include <linux/memfile_notifier.h>

/* The memfile_node of @file, or NULL if @file is not an inaccessible file. */
struct memfile_node *inaccessible_file_node(struct file *file);

/* The pfn of the page at @offset of @file, referenced; see memfile_get_pfn(). */
int inaccessible_get_pfn(struct file *file, pgoff_t offset, unsigned long *pfn,
			 int *order);

/* Whether @file holds a page in [@start, @end); see memfile_range_has_pages(). */
bool inaccessible_has_pages(struct file *file, pgoff_t start, pgoff_t end);

#ifdef CONFIG_MEMFILE_NOTIFIER_FAULT_INJECTION
/* Add the store's fault injection attributes and change delay to @dir. */
void inaccessible_init_debugfs(struct dentry *dir);
#else
static inline void inaccessible_init_debugfs(struct dentry *dir)
{
}
#endif

#endif /* _MM_MEMFILE_NOTIFIER_INTERNAL_H */
