// SPDX-License-Identifier: GPL-2.0
/*
 * private_mem_bench: one conversion workload, timed phase by phase, on
 * privmem and on upstream's guest_memfd.
 *
 * The same source is built twice, against each kernel's KVM selftests
 * library.  The guest code is identical; the host differs only in the
 * uAPI it drives:
 *
 *   privmem (6.1 + this series)      guest_memfd (6.12, the anchor)
 *   KVM_X86_PRIVATE_MEM_VM           KVM_X86_SW_PROTECTED_VM
 *   MFD_INACCESSIBLE memfd           KVM_CREATE_GUEST_MEMFD
 *   KVM_EXIT_MEMORY_ERROR            KVM_EXIT_HYPERCALL + memory attributes
 *
 * The VMM policy is the same on both: a conversion to private allocates
 * the range in the private fd (fallocate) and drops the shared pages
 * (MADV_DONTNEED), as this repository's QEMU does for privmem; a
 * conversion to shared punches the range out of the private fd.  The
 * anchor also sets the range's memory attributes first, which its design
 * requires.  With -l the anchor allocates nothing on a conversion to
 * private, as upstream QEMU does with guest_memfd, whose first private
 * fault allocates the page.  With -H privmem's private memfd is
 * MFD_INACCESSIBLE_HUGE, which holds a 2 MiB folio for each aligned 2 MiB
 * that one conversion covers whole, and its shared memory has transparent
 * huge pages (KVM maps a memslot huge only where the shared memory's
 * address is 2 MiB-congruent to the gfn).
 *
 * With -B it runs the batch workload instead: the guest converts
 * scattered 4 KiB pages, then scattered 2 MiB ranges, to private in up to
 * three ways, (a) one KVM_HC_MAP_GPA_RANGE per range, as upstream does,
 * (b) KVM_HC_MAP_GPA_BATCH lists that the VMM applies one entry at a time
 * and (c) the same lists applied with one io_uring submission each.  The
 * anchor has no batches and runs (a) only.
 *
 * Time is CLOCK_MONOTONIC of the host, taken when the guest reports the
 * start of a phase (GUEST_SYNC) and at the start of the next one.  Under
 * QEMU's -icount (or Bochs with clock sync=none) it counts instructions,
 * so the figures model path length, not caches, TLBs or memory bandwidth.
 *
 * Output, one line per phase, for the harness to tabulate:
 *   bench: <kernel> <phase> <value> <unit> <counter>=<delta>...
 *   bench: <kernel> batch <way>-<4k|2m> <value> page <counter>=<delta>...
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <linux/falloc.h>
#include <linux/kvm_para.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#include "kvm_util.h"
#include "processor.h"

#ifdef KVM_CAP_GUEST_MEMFD
#define BENCH_KERNEL	"guest_memfd"
/*
 * The anchor has no batches; its guest code still names the hypercall and
 * the list, so that both builds' guest code is the same instructions.
 */
#define KVM_HC_MAP_GPA_BATCH		0x1000
#define KVM_MAP_GPA_BATCH_MAX_ENTRIES	255
#define KVM_MAP_GPA_BATCH_OP_PRIVATE	1
#define KVM_MAP_GPA_BATCH_PAGE_4K	0
#define KVM_MAP_GPA_BATCH_PAGE_2M	1

struct kvm_map_gpa_batch_entry {
	__u64 gfn;
	__u8 op;
	__u8 page_size;
	__u16 status;
	__u32 reserved;
};

struct kvm_map_gpa_batch {
	__u16 cur_entry;
	__u16 end_entry;
	__u32 reserved;
	struct kvm_map_gpa_batch_entry entries[];
};
#else
#include <liburing.h>
#include "private_mem.h"
#define BENCH_KERNEL	"privmem"
#endif

/* The name the results go by: the kernel, and the anchor's VMM policy. */
static const char *kernel_name = BENCH_KERNEL;

#define SLOT		10
#define DATA_GPA	0x40000000ULL
#define SHARED_GVA	0x40000000ULL
#define PRIVATE_GVA	0x100000000ULL
#define PAGE		4096ULL

/*
 * The phases, in the order the guest reports them.  PH_FAILED reports a
 * refused hypercall instead, PH_BATCH_FAILED a batch not done whole
 * (GUEST_ASSERT differs between the two libraries, GUEST_SYNC does not).
 */
enum { PH_A, PH_B, PH_C, PH_D, PH_E, PH_F, PH_G, PH_H, PH_END };
#define PH_FAILED	0xff
#define PH_BATCH_FAILED	0xfe

/* What each phase's figure is per. */
static const char *const phase_unit[] = {
	[PH_A] = "page", [PH_B] = "page", [PH_C] = "page", [PH_D] = "trip",
	[PH_E] = "page", [PH_F] = "conversion", [PH_G] = "conversion",
	[PH_H] = "page",
};

/*
 * The batch workload's phases: for each way, an untimed phase that makes
 * everything shared again and touches the pages to convert, then the
 * timed conversion, first of 4 KiB pages, then of 2 MiB ranges.
 */
enum { WAY_RANGE, WAY_SYNC, WAY_URING, NR_WAYS };
#define BP_PHASE(way, blocks, timed)	(4 * (way) + 2 * (blocks) + (timed))
#define BP_WAY(phase)			((phase) / 4)
#define BP_BLOCKS(phase)		((phase) / 2 % 2)
#define BP_TIMED(phase)			((phase) % 2)
#define BP_END		BP_PHASE(NR_WAYS, 0, 0)
#define PAGES_2M	512ULL

/* The workload, synced to the guest before it runs. */
static uint64_t npages = 4096;
static uint64_t trips = 512;
static uint64_t scattered = 512;
static bool use_vmmcall;
static bool implicit_conversions;
static bool huge;	/* -H: privmem's private memory in 2 MiB folios */
static bool batch;	/* -B: the batch workload */
static uint64_t ranges = 16;	/* -r: 2 MiB ranges of the batch workload */
static uint64_t nr_ways = NR_WAYS;	/* the anchor: WAY_RANGE only */
static struct kvm_map_gpa_batch *list_gva;	/* a page of shared memory */
static uint64_t list_gpa;

/* The guest's own hypercall, so both builds run the same instructions. */
static uint64_t guest_hypercall(uint64_t nr, uint64_t a0, uint64_t a1,
				uint64_t a2)
{
	uint64_t ret;

	if (use_vmmcall)
		asm volatile("vmmcall" : "=a"(ret)
			     : "a"(nr), "b"(a0), "c"(a1), "d"(a2), "S"(0ULL)
			     : "memory");
	else
		asm volatile("vmcall" : "=a"(ret)
			     : "a"(nr), "b"(a0), "c"(a1), "d"(a2), "S"(0ULL)
			     : "memory");
	return ret;
}

static uint64_t guest_map_range(uint64_t page, uint64_t count, bool private)
{
	return guest_hypercall(KVM_HC_MAP_GPA_RANGE, DATA_GPA + page * PAGE,
			       count, private ? KVM_MAP_GPA_RANGE_ENCRYPTED :
						KVM_MAP_GPA_RANGE_DECRYPTED);
}

static void guest_convert(uint64_t page, uint64_t count, bool private)
{
	uint64_t ret = guest_map_range(page, count, private);

	if (ret)
		GUEST_SYNC_ARGS(PH_FAILED, page, count, private, ret);
}

static void guest_touch(uint64_t page, bool private)
{
	uint64_t gva = (private ? PRIVATE_GVA : SHARED_GVA) + page * PAGE;

	WRITE_ONCE(*(uint64_t *)gva, page);
}

/* The i-th of @n places, @n a power of two: a bijection of [0, n). */
static uint64_t scatter_in(uint64_t i, uint64_t n)
{
	return (i * 2654435761ULL + 977) & (n - 1);
}

/* A page for the i-th scattered operation. */
static uint64_t scatter(uint64_t i)
{
	return scatter_in(i, npages);
}

/*
 * The first page of the i-th unit that the batch workload converts: a
 * scattered page, or with @blocks a scattered 2 MiB range.
 */
static uint64_t batch_unit(uint64_t i, bool blocks)
{
	return blocks ? scatter_in(i, npages / PAGES_2M) * PAGES_2M : scatter(i);
}

/*
 * Units @first to @first + @count - 1 to private with one
 * KVM_HC_MAP_GPA_BATCH list, which the host must do whole.
 */
static void guest_map_batch(uint64_t first, uint64_t count, bool blocks)
{
	struct kvm_map_gpa_batch *list = list_gva;
	uint64_t i, ret;

	for (i = 0; i < count; i++)
		list->entries[i] = (struct kvm_map_gpa_batch_entry){
			.gfn = DATA_GPA / PAGE + batch_unit(first + i, blocks),
			.op = KVM_MAP_GPA_BATCH_OP_PRIVATE,
			.page_size = blocks ? KVM_MAP_GPA_BATCH_PAGE_2M :
					      KVM_MAP_GPA_BATCH_PAGE_4K,
			.status = 0xffff,
		};
	WRITE_ONCE(list->cur_entry, 0);
	WRITE_ONCE(list->end_entry, count - 1);
	ret = guest_hypercall(KVM_HC_MAP_GPA_BATCH, list_gpa, 0, 0);
	if (ret || READ_ONCE(list->cur_entry) != count)
		GUEST_SYNC_ARGS(PH_BATCH_FAILED, first, count, list->cur_entry,
				ret);
	for (i = 0; i < count; i++)
		if (READ_ONCE(list->entries[i].status))
			GUEST_SYNC_ARGS(PH_BATCH_FAILED, first, count, i,
					list->entries[i].status);
}

/* The batch workload: each way converts the same units to private. */
static void guest_batch_code(void)
{
	uint64_t way, blocks, i, n, pages, count;

	for (way = 0; way < nr_ways; way++) {
		for (blocks = 0; blocks < 2; blocks++) {
			n = blocks ? ranges : scattered;
			pages = blocks ? PAGES_2M : 1;

			GUEST_SYNC(BP_PHASE(way, blocks, 0));
			guest_convert(0, npages, false);
			for (i = 0; i < n * pages; i++)
				guest_touch(batch_unit(i / pages, blocks) +
					    i % pages, false);

			GUEST_SYNC(BP_PHASE(way, blocks, 1));
			for (i = 0; i < n; i += count) {
				if (way == WAY_RANGE) {
					count = 1;
					guest_convert(batch_unit(i, blocks),
						      pages, true);
				} else {
					count = min_t(uint64_t, n - i,
						      KVM_MAP_GPA_BATCH_MAX_ENTRIES);
					guest_map_batch(i, count, blocks);
				}
			}
		}
	}
	GUEST_SYNC(BP_END);
	GUEST_DONE();
}

static void guest_phases(void)
{
	uint64_t i;

	GUEST_SYNC(PH_A);
	for (i = 0; i < npages; i++)
		guest_touch(i, false);

	GUEST_SYNC(PH_B);
	guest_convert(0, npages, true);

	GUEST_SYNC(PH_C);
	for (i = 0; i < npages; i++)
		guest_touch(i, true);

	GUEST_SYNC(PH_D);
	for (i = 0; i < trips; i++) {
		guest_convert(i, 1, false);
		guest_touch(i, false);
		guest_convert(i, 1, true);
		guest_touch(i, true);
	}

	GUEST_SYNC(PH_E);
	guest_convert(0, npages, false);

	GUEST_SYNC(PH_F);
	for (i = 0; i < scattered; i++)
		guest_convert(scatter(i), 1, true);

	GUEST_SYNC(PH_G);
	/* Private accesses to shared pages: the host converts each one. */
	if (implicit_conversions)
		for (i = scattered; i < 2 * scattered; i++)
			guest_touch(scatter(i), true);

	GUEST_SYNC(PH_H);
	guest_convert(0, npages, true);
	for (i = 0; i < npages; i++)
		guest_touch(i, true);

	GUEST_SYNC(PH_END);
	GUEST_DONE();
}

static void guest_code(void)
{
	if (batch)
		guest_batch_code();
	else
		guest_phases();
}

/* The counters a reader needs to see that both kernels did the same work. */
static const char *const counter_names[] = {
	"exits", "hypercalls", "pf_taken", "pf_fixed", "pages_4k", "pages_2m",
	"private_mem_faults", "private_mem_faults_2m",
	"private_mem_shared_faults", "private_mem_zapped_pages",
	"tlb_flush",
};

#define NR_COUNTERS	ARRAY_SIZE(counter_names)

/* One binary statistics fd (KVM_GET_STATS_FD) and where its values are. */
struct stats_fd {
	int fd;
	off_t data_offset;
	int64_t offset[NR_COUNTERS];	/* of each counter's value, or -1 */
};

static void stats_open(struct stats_fd *s, int kvm_object_fd)
{
	struct kvm_stats_header hdr;
	struct kvm_stats_desc *desc;
	size_t desc_size;
	char *descs;
	uint32_t i, j;

	s->fd = ioctl(kvm_object_fd, KVM_GET_STATS_FD, NULL);
	TEST_ASSERT(s->fd >= 0, "KVM_GET_STATS_FD failed");
	TEST_ASSERT(pread(s->fd, &hdr, sizeof(hdr), 0) == sizeof(hdr),
		    "cannot read the statistics header");
	desc_size = sizeof(*desc) + hdr.name_size;
	descs = calloc(hdr.num_desc, desc_size);
	TEST_ASSERT(descs, "out of memory");
	TEST_ASSERT(pread(s->fd, descs, hdr.num_desc * desc_size,
			  hdr.desc_offset) == (ssize_t)(hdr.num_desc * desc_size),
		    "cannot read the statistics descriptors");
	s->data_offset = hdr.data_offset;
	for (j = 0; j < NR_COUNTERS; j++) {
		s->offset[j] = -1;
		for (i = 0; i < hdr.num_desc; i++) {
			desc = (struct kvm_stats_desc *)(descs + i * desc_size);
			if (!strcmp(desc->name, counter_names[j]))
				s->offset[j] = desc->offset;
		}
	}
	free(descs);
}

/* Add the values @s has to @val; counters it lacks stay as they are. */
static void stats_read(struct stats_fd *s, int64_t val[NR_COUNTERS])
{
	uint64_t v;
	uint32_t j;

	for (j = 0; j < NR_COUNTERS; j++) {
		if (s->offset[j] < 0)
			continue;
		TEST_ASSERT(pread(s->fd, &v, sizeof(v), s->data_offset +
				  s->offset[j]) == sizeof(v),
			    "cannot read statistic %s", counter_names[j]);
		val[j] = val[j] < 0 ? (int64_t)v : val[j] + (int64_t)v;
	}
}

struct bench {
	struct kvm_vm *vm;
	struct kvm_vcpu *vcpu;
	int fd;			/* the private pages */
	uint8_t *hva;		/* the shared pages */
	int phase;		/* the phase the guest is in */
	bool lazy;		/* -l: no fallocate() on conversions to private */
	struct stats_fd vm_stats, vcpu_stats;
	/* VMM time inside conversions during the current phase, in ns */
	uint64_t ns_attributes, ns_fallocate, ns_madvise;
	/* conversion exits, the system calls and the VMM time they cost */
	uint64_t vmm_exits, syscalls, ns_vmm;
#ifndef KVM_CAP_GUEST_MEMFD
	struct private_region r;
	struct io_uring ring;	/* for the batches of WAY_URING */
#endif
};

static uint64_t now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec * 1000000000ULL + ts.tv_nsec;
}

static bool host_cpu_amd(void)
{
	uint32_t eax, ebx, ecx, edx;

	cpuid(0, &eax, &ebx, &ecx, &edx);
	return ebx == 0x68747541 && ecx == 0x444d4163 && edx == 0x69746e65;
}

/*
 * The VMM's half of a conversion, the same policy on both kernels.  With
 * -l (lazy, the anchor only), a conversion to private allocates nothing
 * and leaves it to the first private fault, as upstream QEMU does with
 * guest_memfd.
 */
static void convert(struct bench *b, uint64_t gpa, uint64_t size, bool private)
{
	uint64_t off = gpa - DATA_GPA, t;
	int mode = FALLOC_FL_KEEP_SIZE | (private ? 0 : FALLOC_FL_PUNCH_HOLE);

	TEST_ASSERT(gpa >= DATA_GPA && off + size <= npages * PAGE,
		    "conversion of [0x%lx, +0x%lx) outside the benchmark's memory",
		    gpa, size);
	if (!private || !b->lazy) {
		t = now_ns();
		TEST_ASSERT(!fallocate(b->fd, mode, off, size),
			    "fallocate(mode 0x%x, 0x%lx, 0x%lx) failed", mode, off, size);
		b->ns_fallocate += now_ns() - t;
		b->syscalls++;
	}
	if (!private)
		return;
	t = now_ns();
	TEST_ASSERT(!madvise(b->hva + off, size, MADV_DONTNEED),
		    "madvise(MADV_DONTNEED) failed");
	b->ns_madvise += now_ns() - t;
	b->syscalls++;
}

#ifdef KVM_CAP_GUEST_MEMFD
static void bench_create(struct bench *b)
{
	const struct vm_shape shape = {
		.mode = VM_MODE_DEFAULT,
		.type = KVM_X86_SW_PROTECTED_VM,
	};

	TEST_REQUIRE(kvm_check_cap(KVM_CAP_VM_TYPES) &
		     BIT(KVM_X86_SW_PROTECTED_VM));
	b->vm = __vm_create_shape_with_one_vcpu(shape, &b->vcpu, 0, guest_code);
	vm_enable_cap(b->vm, KVM_CAP_EXIT_HYPERCALL, BIT(KVM_HC_MAP_GPA_RANGE));
	b->fd = vm_create_guest_memfd(b->vm, npages * PAGE, 0);
	vm_mem_add(b->vm, VM_MEM_SRC_ANONYMOUS, DATA_GPA, SLOT, npages,
		   KVM_MEM_GUEST_MEMFD, b->fd, 0);
	/* Private or shared is the gfn's attribute: one view serves both. */
	virt_map(b->vm, SHARED_GVA, DATA_GPA, npages);
	virt_map(b->vm, PRIVATE_GVA, DATA_GPA, npages);
	b->hva = addr_gpa2hva(b->vm, DATA_GPA);
	implicit_conversions = false;
	nr_ways = WAY_RANGE + 1;
}

static void set_attributes(struct bench *b, uint64_t gpa, uint64_t size,
			   bool private)
{
	uint64_t t = now_ns();

	vm_set_memory_attributes(b->vm, gpa, size,
				 private ? KVM_MEMORY_ATTRIBUTE_PRIVATE : 0);
	b->ns_attributes += now_ns() - t;
	b->syscalls++;
}

/* A conversion request: carry it out and return true, if the exit is one. */
static bool conversion_exit(struct bench *b)
{
	struct kvm_run *run = b->vcpu->run;
	uint64_t gpa, size;
	bool private;

	TEST_ASSERT(run->exit_reason != KVM_EXIT_MEMORY_FAULT,
		    "unexpected memory fault exit at 0x%llx",
		    run->memory_fault.gpa);
	if (run->exit_reason != KVM_EXIT_HYPERCALL)
		return false;
	TEST_ASSERT(run->hypercall.nr == KVM_HC_MAP_GPA_RANGE,
		    "unexpected hypercall %llu", run->hypercall.nr);
	gpa = run->hypercall.args[0];
	size = run->hypercall.args[1] * PAGE;
	private = run->hypercall.args[2] & KVM_MAP_GPA_RANGE_ENCRYPTED;
	run->hypercall.ret = 0;
	set_attributes(b, gpa, size, private);
	convert(b, gpa, size, private);
	return true;
}
#else
static void bench_create(struct bench *b)
{
	struct private_region *r = &b->r;

	b->vm = vm_create_private(1, guest_code, &b->vcpu);
	if (huge)
		private_region_add_memfd(r, b->vm, VM_MEM_SRC_ANONYMOUS_THP,
					 SLOT, DATA_GPA, npages,
					 __private_memfd_create(npages * PAGE,
								MFD_INACCESSIBLE_HUGE),
					 0);
	else
		private_region_add(r, b->vm, SLOT, DATA_GPA, npages);
	private_region_map(r, SHARED_GVA, PRIVATE_GVA);
	b->fd = r->memfd;
	b->hva = r->hva;
	implicit_conversions = true;
	if (batch) {
		vm_enable_cap(b->vm, KVM_CAP_MAP_GPA_BATCH, 0);
		batch_ring_init(&b->ring);
	}
}

/*
 * A KVM_HC_MAP_GPA_BATCH exit: (b) applies the list one entry at a time,
 * (c) with one io_uring submission.  The guest checks that all was done.
 */
static void batch_exit(struct bench *b)
{
	struct kvm_run *run = b->vcpu->run;
	int way = BP_WAY(b->phase);
	struct batch_stats st = {};

	TEST_ASSERT(batch && BP_TIMED(b->phase) && way != WAY_RANGE,
		    "a batch of %llu entries in phase %d", run->memory.size,
		    b->phase);
	private_region_apply_batch(&b->r, addr_gpa2hva(b->vm, run->memory.gpa),
				   way == WAY_URING ? &b->ring : NULL, &st);
	b->syscalls += st.syscalls;
}

static bool conversion_exit(struct bench *b)
{
	struct kvm_run *run = b->vcpu->run;

	if (run->exit_reason != KVM_EXIT_MEMORY_ERROR)
		return false;
	TEST_ASSERT(!(run->memory.flags & ~(KVM_MEMORY_EXIT_FLAG_PRIVATE |
					    KVM_MEMORY_EXIT_FLAG_EXPLICIT |
					    KVM_MEMORY_EXIT_FLAG_BATCH)),
		    "unknown memory error flags 0x%llx", run->memory.flags);
	if (run->memory.flags & KVM_MEMORY_EXIT_FLAG_BATCH) {
		batch_exit(b);
		return true;
	}
	/* Only phase G converts by access, one page at a time. */
	TEST_ASSERT(run->memory.flags & KVM_MEMORY_EXIT_FLAG_EXPLICIT ||
		    (!batch && b->phase == PH_G && run->memory.size == PAGE),
		    "implicit conversion of [0x%llx, +0x%llx) in phase %d",
		    run->memory.gpa, run->memory.size, b->phase);
	convert(b, run->memory.gpa, run->memory.size,
		run->memory.flags & KVM_MEMORY_EXIT_FLAG_PRIVATE);
	return true;
}
#endif

/* Run the guest, converting what it asks for, to its next GUEST_SYNC. */
static int run_to_sync(struct bench *b)
{
	struct ucall uc;
	uint64_t t;

	for (;;) {
		vcpu_run(b->vcpu);
		t = now_ns();
		if (conversion_exit(b)) {
			b->ns_vmm += now_ns() - t;
			b->vmm_exits++;
			b->syscalls++;	/* the KVM_RUN that returned it */
			continue;
		}
		switch (get_ucall(b->vcpu, &uc)) {
		case UCALL_SYNC:
			TEST_ASSERT(uc.args[1] != PH_FAILED,
				    "the guest's conversion of %lu pages at page %lu to %s returned %ld",
				    uc.args[3], uc.args[2],
				    uc.args[4] ? "private" : "shared", uc.args[5]);
			TEST_ASSERT(uc.args[1] != PH_BATCH_FAILED,
				    "the guest's batch of %lu units from unit %lu stopped at entry %lu: %ld",
				    uc.args[3], uc.args[2], uc.args[4], uc.args[5]);
			return uc.args[1];
		case UCALL_ABORT:
			REPORT_GUEST_ASSERT(uc);
			/* not reached */
		default:
			TEST_FAIL("unexpected exit %u (%s), ucall %lu",
				  b->vcpu->run->exit_reason,
				  exit_reason_str(b->vcpu->run->exit_reason),
				  uc.cmd);
		}
	}
}

static void counters(struct bench *b, int64_t val[NR_COUNTERS])
{
	uint32_t j;

	for (j = 0; j < NR_COUNTERS; j++)
		val[j] = -1;
	stats_read(&b->vm_stats, val);
	stats_read(&b->vcpu_stats, val);
}

static void write_sysctl(const char *path)
{
	int fd = open(path, O_WRONLY);

	TEST_ASSERT(fd >= 0 && write(fd, "1", 1) == 1, "cannot write %s", path);
	close(fd);
}

/*
 * A /proc/meminfo field once every CPU's LRU batches are drained (which
 * compact_memory does first) and its per-CPU counters folded in.
 */
static long meminfo_kb(const char *field)
{
	char line[128];
	long kb = -1;
	FILE *f;

	write_sysctl("/proc/sys/vm/compact_memory");
	write_sysctl("/proc/sys/vm/stat_refresh");
	f = fopen("/proc/meminfo", "r");

	TEST_ASSERT(f, "cannot open /proc/meminfo");
	while (fgets(line, sizeof(line), f))
		if (!strncmp(line, field, strlen(field)) &&
		    line[strlen(field)] == ':')
			kb = atol(line + strlen(field) + 1);
	fclose(f);
	TEST_ASSERT(kb >= 0, "no %s in /proc/meminfo", field);
	return kb;
}

/* Shared pages the VMM holds: present in its page tables (pagemap). */
static uint64_t shared_pages_held(struct bench *b)
{
	uint64_t i, entry, held = 0;
	int fd = open("/proc/self/pagemap", O_RDONLY);

	TEST_ASSERT(fd >= 0, "cannot open /proc/self/pagemap");
	for (i = 0; i < npages; i++) {
		off_t off = ((uintptr_t)b->hva / PAGE + i) * sizeof(entry);

		TEST_ASSERT(pread(fd, &entry, sizeof(entry), off) == sizeof(entry),
			    "cannot read pagemap");
		held += !!(entry & (BIT_ULL(63) | BIT_ULL(62)));
	}
	close(fd);
	return held;
}

/* The rest of a figure's line: the counters' deltas over its phase. */
static void print_counters(const int64_t before[], const int64_t after[])
{
	uint32_t j;

	for (j = 0; j < NR_COUNTERS; j++) {
		if (after[j] < 0)
			printf(" %s=-", counter_names[j]);
		/* pages_* are levels (mapped now), the others are events. */
		else if (!strncmp(counter_names[j], "pages_", 6))
			printf(" %s=%ld", counter_names[j], after[j]);
		else
			printf(" %s=%ld", counter_names[j], after[j] - before[j]);
	}
	printf("\n");
}

static void print_phase(int phase, double value, const int64_t before[],
			const int64_t after[])
{
	printf("bench: %s %c %.0f %s", kernel_name, 'A' + phase, value,
	       phase_unit[phase]);
	print_counters(before, after);
}

/* TLB shootdown IPIs so far, on all CPUs (/proc/interrupts), or -1. */
static int64_t tlb_shootdowns(void)
{
	FILE *f = fopen("/proc/interrupts", "r");
	char line[4096], *p, *end;
	int64_t n = -1;

	TEST_ASSERT(f, "cannot open /proc/interrupts");
	while (fgets(line, sizeof(line), f)) {
		p = line + strspn(line, " ");
		if (strncmp(p, "TLB:", 4))
			continue;
		for (n = 0, p += 4;; p = end) {
			long v = strtol(p, &end, 10);

			if (end == p)
				break;
			n += v;
		}
	}
	fclose(f);
	return n;
}

/*
 * The line of a timed phase of the batch workload: its time per page, and
 * what its conversions cost the VMM.
 */
static void report_batch_phase(struct bench *b, int phase, uint64_t ns,
			       const int64_t before[], const int64_t after[],
			       int64_t shootdowns)
{
	bool blocks = BP_BLOCKS(phase);
	uint64_t pages = blocks ? ranges * PAGES_2M : scattered;
	int64_t now = tlb_shootdowns();

	printf("bench: %s batch %c-%s %.0f page pages=%lu vmm_ns=%.0f vmm_exits=%lu syscalls=%lu",
	       kernel_name, 'a' + BP_WAY(phase), blocks ? "2m" : "4k",
	       (double)ns / pages, pages, (double)b->ns_vmm / pages,
	       b->vmm_exits, b->syscalls);
	if (now < 0)
		printf(" tlb_shootdowns=-");
	else
		printf(" tlb_shootdowns=%ld", now - shootdowns);
	print_counters(before, after);
}

static uint64_t phase_count(int phase)
{
	switch (phase) {
	case PH_D:
		return trips;
	case PH_F:
	case PH_G:
		return scattered;
	default:
		return npages;
	}
}

/* The lines of one phase that took @ns, for the harness's tables. */
static void report_phase(struct bench *b, int phase, uint64_t ns,
			 const int64_t before[], const int64_t after[],
			 uint64_t unevictable_kb)
{
	uint64_t n = phase_count(phase), shared;
	long priv;

	if (phase == PH_H) {
		shared = shared_pages_held(b);
		priv = (meminfo_kb("Unevictable") - unevictable_kb) / 4;
		print_phase(phase, shared + priv, before, after);
		printf("bench: %s H-split shared=%lu private=%ld\n",
		       kernel_name, shared, priv);
	} else if (phase == PH_G && !implicit_conversions) {
		printf("bench: %s G - conversion (no implicit conversions)\n",
		       kernel_name);
	} else {
		print_phase(phase, (double)ns / n, before, after);
	}
	if (phase != PH_B)
		return;
	printf("bench: %s B-split attributes=%.0f fallocate=%.0f",
	       kernel_name, (double)b->ns_attributes / n,
	       (double)b->ns_fallocate / n);
	printf(" madvise=%.0f rest=%.0f\n", (double)b->ns_madvise / n,
	       (double)(ns - b->ns_attributes - b->ns_fallocate -
			b->ns_madvise) / n);
}

static void help(const char *prog)
{
	fprintf(stderr, "usage: %s [-n pages] [-t trips] [-s scattered] [-l] [-H]\n"
		"       %s -B [-s scattered] [-r ranges] [-H]\n"
		"  pages: a power of two, at least 2 * scattered and trips;\n"
		"  trips and scattered: at least 1;\n"
		"  -l (guest_memfd only): no fallocate() on conversions to private\n"
		"  -H (privmem only): private memory in 2 MiB folios\n"
		"  -B: the batch workload, over 2 * ranges * 512 pages;\n"
		"  ranges: a power of two; scattered: at most 2 * ranges * 512\n",
		prog, prog);
	exit(KSFT_FAIL);
}

int main(int argc, char *argv[])
{
	int64_t before[NR_COUNTERS], after[NR_COUNTERS];
	uint64_t start = 0, end, unevictable_kb;
	struct bench b = { .phase = -1 };
	int opt, phase = -1, next, last;
	int64_t shootdowns = 0;
	struct ucall uc;

	while ((opt = getopt(argc, argv, "n:t:s:r:lHB")) != -1) {
		switch (opt) {
		case 'B':
			batch = true;
			break;
		case 'r':
			ranges = strtoull(optarg, NULL, 0);
			break;
		case 'H':
#ifdef KVM_CAP_GUEST_MEMFD
			/* The anchor maps private memory 4 KiB at a time. */
			fprintf(stderr, "-H is for privmem only\n");
			exit(KSFT_FAIL);
#else
			huge = true;
			kernel_name = BENCH_KERNEL "_huge";
			break;
#endif
		case 'l':
#ifdef KVM_CAP_GUEST_MEMFD
			b.lazy = true;
			kernel_name = BENCH_KERNEL "_lazy";
			break;
#else
			/* A privmem gfn is private because it is allocated. */
			fprintf(stderr, "-l is for guest_memfd only\n");
			exit(KSFT_FAIL);
#endif
		case 'n':
			npages = strtoull(optarg, NULL, 0);
			break;
		case 't':
			trips = strtoull(optarg, NULL, 0);
			break;
		case 's':
			scattered = strtoull(optarg, NULL, 0);
			break;
		default:
			help(argv[0]);
		}
	}
	if (batch) {
		if (!ranges || ranges & (ranges - 1) || ranges > 1024)
			help(argv[0]);
		npages = 2 * ranges * PAGES_2M;
		if (!scattered || scattered > npages)
			help(argv[0]);
	} else if (!npages || npages & (npages - 1) || !trips || !scattered ||
		   2 * scattered > npages || trips > npages) {
		help(argv[0]);
	}

	unevictable_kb = meminfo_kb("Unevictable");
	use_vmmcall = host_cpu_amd();
	bench_create(&b);
	sync_global_to_guest(b.vm, npages);
	sync_global_to_guest(b.vm, trips);
	sync_global_to_guest(b.vm, scattered);
	sync_global_to_guest(b.vm, use_vmmcall);
	sync_global_to_guest(b.vm, implicit_conversions);
	list_gva = (void *)vm_vaddr_alloc_page(b.vm);
	list_gpa = addr_gva2gpa(b.vm, (vm_vaddr_t)list_gva);
	sync_global_to_guest(b.vm, batch);
	sync_global_to_guest(b.vm, ranges);
	sync_global_to_guest(b.vm, nr_ways);
	sync_global_to_guest(b.vm, list_gva);
	sync_global_to_guest(b.vm, list_gpa);
	stats_open(&b.vm_stats, b.vm->fd);
	stats_open(&b.vcpu_stats, b.vcpu->fd);

	if (batch)
		printf("bench: %s batch workload pages=%lu scattered=%lu ranges=%lu hypercall=%s\n",
		       kernel_name, npages, scattered, ranges, use_vmmcall ? "vmmcall" : "vmcall");
	else
		printf("bench: %s workload pages=%lu trips=%lu scattered=%lu hypercall=%s\n",
		       kernel_name, npages, trips, scattered,
		       use_vmmcall ? "vmmcall" : "vmcall");
	last = batch ? BP_END : PH_END;
	for (;;) {
		next = run_to_sync(&b);
		end = now_ns();
		if (phase >= 0) {
			counters(&b, after);
			if (!batch)
				report_phase(&b, phase, end - start, before,
					     after, unevictable_kb);
			else if (BP_TIMED(phase))
				report_batch_phase(&b, phase, end - start,
						   before, after, shootdowns);
		}
		/* The anchor's batch workload ends after its one way. */
		TEST_ASSERT(next == phase + 1 ||
			    (batch && next == last &&
			     phase + 1 == BP_PHASE(nr_ways, 0, 0)),
			    "guest reported phase %d after %d", next, phase);
		if (next == last)
			break;
		phase = next;
		b.phase = phase;
		counters(&b, before);
		if (batch)
			shootdowns = tlb_shootdowns();
		b.ns_attributes = 0;
		b.ns_fallocate = 0;
		b.ns_madvise = 0;
		b.vmm_exits = 0;
		b.syscalls = 0;
		b.ns_vmm = 0;
		fflush(stdout);
		start = now_ns();
	}
	/* The guest finishes after the last phase. */
	vcpu_run(b.vcpu);
	TEST_ASSERT(get_ucall(b.vcpu, &uc) == UCALL_DONE, "guest did not finish");
	close(b.vm_stats.fd);
	close(b.vcpu_stats.fd);
	kvm_vm_free(b.vm);
#ifndef KVM_CAP_GUEST_MEMFD
	if (batch)
		io_uring_queue_exit(&b.ring);
#endif
	printf("bench: %s %sdone\n", kernel_name, batch ? "batch " : "");
	return 0;
}
