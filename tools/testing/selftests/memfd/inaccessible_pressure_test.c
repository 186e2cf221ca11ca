// SPDX-License-Identifier: GPL-2.0
/*
 * The pages of an MFD_INACCESSIBLE file stay where they are, whatever the
 * rest of the system does: compaction, soft offlining and reclaim under
 * memory pressure move or swap ordinary pages around them, and never
 * theirs.  A consumer such as KVM maps those pages by pfn, so a page that
 * moved would leave it using memory that is no longer the file's.
 *
 * Userspace cannot see the pages, so the test learns their pfns from
 * /sys/kernel/debug/memfile_notifier/pfn (CONFIG_MEMFILE_NOTIFIER_TEST_PFN)
 * and the pfns of its ordinary pages from /proc/self/pagemap.  Each test
 * shows that the same event does move or swap ordinary pages, so that a
 * pass means something.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <linux/falloc.h>
#include <linux/memfd.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common.h"
#include "../kselftest_harness.h"

#define PAGE		4096UL
#define NR_PAGES	4096		/* 16 MiB */
#define PRESSURE_PAGES	8192		/* swap-outs that count as pressure */
#define PFN_FILE	"/sys/kernel/debug/memfile_notifier/pfn"
#define SOFT_OFFLINE	"/sys/devices/system/memory/soft_offline_page"

/* A counter of /proc/vmstat, or -1 if there is none of that name. */
static long read_vmstat(const char *name)
{
	char key[64];
	long val;
	FILE *f;

	f = fopen("/proc/vmstat", "r");
	if (!f)
		return -1;
	while (fscanf(f, "%63s %ld", key, &val) == 2) {
		if (!strcmp(key, name)) {
			fclose(f);
			return val;
		}
	}
	fclose(f);
	return -1;
}

/* The pfn of page @index of inaccessible file @fd, through @dbg. */
static unsigned long inaccessible_pfn(int dbg, int fd, unsigned long index)
{
	char buf[32];
	ssize_t n;
	int len;

	len = snprintf(buf, sizeof(buf), "%d %lu", fd, index);
	if (pwrite(dbg, buf, len, 0) != len)
		return 0;
	n = pread(dbg, buf, sizeof(buf) - 1, 0);
	if (n <= 0)
		return 0;
	buf[n] = '\0';
	return strtoul(buf, NULL, 10);
}

/* The pfn behind a mapped address of ours, or 0. */
static unsigned long mapped_pfn(void *addr)
{
	uint64_t entry = 0;
	int fd;

	fd = open("/proc/self/pagemap", O_RDONLY);
	if (fd < 0)
		return 0;
	if (pread(fd, &entry, sizeof(entry),
		  (uintptr_t)addr / PAGE * sizeof(entry)) != sizeof(entry))
		entry = 0;
	close(fd);
	if (!(entry & (1ULL << 63)))
		return 0;
	return entry & ((1ULL << 55) - 1);
}

/*
 * An inaccessible file of NR_PAGES, allocated page by page between the
 * pages of an ordinary memfd, so that anything that moves the ordinary
 * pages comes by ours too; then every other ordinary page is freed, to
 * leave holes for compaction to fill.
 */
FIXTURE(pressure) {
	int dbg;
	int fd;
	int ordinary;
	char *map;
	unsigned long pfns[NR_PAGES];
	blkcnt_t blocks;
};

FIXTURE_SETUP(pressure)
{
	struct rlimit lim = { RLIM_INFINITY, RLIM_INFINITY };
	struct stat st;
	unsigned long i;

	self->fd = -1;
	self->ordinary = -1;
	self->map = MAP_FAILED;
	self->dbg = open(PFN_FILE, O_RDWR);
	if (self->dbg < 0)
		SKIP(return, "no %s (CONFIG_MEMFILE_NOTIFIER_TEST_PFN): %s",
		     PFN_FILE, strerror(errno));
	ASSERT_EQ(setrlimit(RLIMIT_MEMLOCK, &lim), 0);
	self->fd = sys_memfd_create("pressure", MFD_INACCESSIBLE);
	ASSERT_GE(self->fd, 0);
	ASSERT_EQ(ftruncate(self->fd, NR_PAGES * PAGE), 0);
	self->ordinary = sys_memfd_create("ordinary", 0);
	ASSERT_GE(self->ordinary, 0);
	ASSERT_EQ(ftruncate(self->ordinary, NR_PAGES * PAGE), 0);
	self->map = mmap(NULL, NR_PAGES * PAGE, PROT_READ | PROT_WRITE,
			 MAP_SHARED, self->ordinary, 0);
	ASSERT_NE(self->map, MAP_FAILED);

	for (i = 0; i < NR_PAGES; i++) {
		ASSERT_EQ(fallocate(self->fd, 0, i * PAGE, PAGE), 0);
		self->map[i * PAGE] = 1;
	}
	for (i = 0; i < NR_PAGES; i++) {
		self->pfns[i] = inaccessible_pfn(self->dbg, self->fd, i);
		ASSERT_NE(self->pfns[i], 0) TH_LOG("no pfn for page %lu", i);
	}
	for (i = 0; i < NR_PAGES; i += 2)
		ASSERT_EQ(fallocate(self->ordinary,
				    FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE,
				    i * PAGE, PAGE), 0);
	ASSERT_EQ(fstat(self->fd, &st), 0);
	self->blocks = st.st_blocks;
	ASSERT_EQ(self->blocks, NR_PAGES * (PAGE / 512));
}

FIXTURE_TEARDOWN(pressure)
{
	if (self->map != MAP_FAILED)
		munmap(self->map, NR_PAGES * PAGE);
	if (self->ordinary >= 0)
		close(self->ordinary);
	if (self->fd >= 0)
		close(self->fd);
	if (self->dbg >= 0)
		close(self->dbg);
}

/*
 * Every page of inaccessible file @fd still held, each at the pfn in
 * @pfns, and st_blocks still @blocks.
 */
static void expect_in_place(struct __test_metadata *_metadata, int dbg,
			    int fd, const unsigned long *pfns, blkcnt_t blocks)
{
	int moved = 0, missing = 0;
	unsigned long i, pfn;
	struct stat st;

	for (i = 0; i < NR_PAGES; i++) {
		pfn = inaccessible_pfn(dbg, fd, i);
		if (!pfn)
			missing++;
		else if (pfn != pfns[i])
			moved++;
	}
	EXPECT_EQ(missing, 0);
	EXPECT_EQ(moved, 0);
	ASSERT_EQ(fstat(fd, &st), 0);
	EXPECT_EQ(st.st_blocks, blocks);
}

/* Compaction runs, isolates other memory, and leaves ours alone. */
TEST_F_TIMEOUT(pressure, compaction_leaves_pages_in_place, 300)
{
	long isolated = read_vmstat("compact_isolated");

	if (isolated < 0)
		SKIP(return, "no compaction (CONFIG_COMPACTION)");
	ASSERT_EQ(write_str("/proc/sys/vm/compact_memory", "1"), 0);
	isolated = read_vmstat("compact_isolated") - isolated;
	TH_LOG("compaction isolated %ld pages", isolated);
	EXPECT_GT(isolated, 0);
	expect_in_place(_metadata, self->dbg, self->fd, self->pfns,
			self->blocks);
}

static int soft_offline(unsigned long pfn)
{
	char buf[32];

	snprintf(buf, sizeof(buf), "%#lx", pfn * PAGE);
	return write_str(SOFT_OFFLINE, buf);
}

/*
 * Soft offlining migrates one given page away: it does for an ordinary
 * page, and is refused for ours.
 */
TEST_F_TIMEOUT(pressure, soft_offline_is_refused, 300)
{
	char *page = self->map + PAGE;	/* odd pages stayed */
	unsigned long pfn;

	if (access(SOFT_OFFLINE, W_OK))
		SKIP(return, "no %s (MEMORY_FAILURE, MEMORY_HOTPLUG)",
		     SOFT_OFFLINE);
	pfn = mapped_pfn(page);
	ASSERT_NE(pfn, 0);
	ASSERT_EQ(soft_offline(pfn), 0);
	EXPECT_EQ(page[0], 1);
	EXPECT_NE(mapped_pfn(page), pfn);

	EXPECT_EQ(soft_offline(self->pfns[NR_PAGES / 2]), -EBUSY);
	expect_in_place(_metadata, self->dbg, self->fd, self->pfns,
			self->blocks);
}

/*
 * Fill memory with ordinary shmem pages until reclaim has swapped out
 * PRESSURE_PAGES of them; ours stay.
 */
TEST_F_TIMEOUT(pressure, reclaim_leaves_pages_resident, 600)
{
	long total = meminfo_kb("MemTotal"), swapped, i, pages;
	int hog;
	char *p;

	if (meminfo_kb("SwapFree") <= 0)
		SKIP(return, "no free swap; the harness sets up zram swap");
	pages = total / (PAGE / 1024) * 5 / 4;
	hog = sys_memfd_create("hog", 0);
	ASSERT_GE(hog, 0);
	ASSERT_EQ(ftruncate(hog, pages * PAGE), 0);
	p = mmap(NULL, pages * PAGE, PROT_READ | PROT_WRITE, MAP_SHARED,
		 hog, 0);
	ASSERT_NE(p, MAP_FAILED);
	swapped = read_vmstat("pswpout");
	for (i = 0; i < pages; i++) {
		/* Same-filled, so zram stores it in no memory. */
		memset(p + i * PAGE, 0x3c, PAGE);
		if (!(i % 1024) && read_vmstat("pswpout") - swapped >= PRESSURE_PAGES)
			break;
	}
	swapped = read_vmstat("pswpout") - swapped;
	munmap(p, pages * PAGE);
	close(hog);
	TH_LOG("wrote %ld pages, %ld were swapped out", i, swapped);
	EXPECT_GE(swapped, PRESSURE_PAGES);
	expect_in_place(_metadata, self->dbg, self->fd, self->pfns,
			self->blocks);
}

TEST_HARNESS_MAIN
