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
 * Time is CLOCK_MONOTONIC of the host, taken when the guest reports the
 * start of a phase (GUEST_SYNC) and at the start of the next one.  Under
 * QEMU's -icount (or Bochs with clock sync=none) it counts instructions,
 * so the figures model path length, not caches, TLBs or memory bandwidth.
 *
 * Output, one line per phase, for the harness to tabulate:
 *   bench: <kernel> <phase> <value> <unit> <counter>=<delta>...
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
#else
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
 * refused hypercall instead (GUEST_ASSERT differs between the two
 * libraries, GUEST_SYNC does not).
 */
enum { PH_A, PH_B, PH_C, PH_D, PH_E, PH_F, PH_G, PH_H, PH_END, PH_FAILED };

/* What each phase's figure is per. */
static const char *const phase_unit[] = {
	[PH_A] = "page", [PH_B] = "page", [PH_C] = "page", [PH_D] = "trip",
	[PH_E] = "page", [PH_F] = "conversion", [PH_G] = "conversion",
	[PH_H] = "page",
};

/* The workload, synced to the guest before it runs. */
static uint64_t npages = 4096;
static uint64_t trips = 512;
static uint64_t scattered = 512;
static bool use_vmmcall;
static bool implicit_conversions;
static bool huge;	/* -H: privmem's private memory in 2 MiB folios */

/* The guest's own hypercall, so both builds run the same instructions. */
static uint64_t guest_map_range(uint64_t page, uint64_t count, bool private)
{
	uint64_t ret, attrs = private ? KVM_MAP_GPA_RANGE_ENCRYPTED :
					KVM_MAP_GPA_RANGE_DECRYPTED;

	if (use_vmmcall)
		asm volatile("vmmcall" : "=a"(ret)
			     : "a"(KVM_HC_MAP_GPA_RANGE), "b"(DATA_GPA + page * PAGE),
			       "c"(count), "d"(attrs)
			     : "memory");
	else
		asm volatile("vmcall" : "=a"(ret)
			     : "a"(KVM_HC_MAP_GPA_RANGE), "b"(DATA_GPA + page * PAGE),
			       "c"(count), "d"(attrs)
			     : "memory");
	return ret;
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

/* A page for the i-th scattered operation: a bijection of [0, npages). */
static uint64_t scatter(uint64_t i)
{
	return (i * 2654435761ULL + 977) & (npages - 1);
}

static void guest_code(void)
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

/* The counters a reader needs to see that both kernels did the same work. */
static const char *const counter_names[] = {
	"exits", "hypercalls", "pf_taken", "pf_fixed", "pages_4k", "pages_2m",
	"private_mem_faults", "private_mem_faults_2m",
	"private_mem_shared_faults", "private_mem_zapped_pages",
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
}

static void set_attributes(struct bench *b, uint64_t gpa, uint64_t size,
			   bool private)
{
	uint64_t t = now_ns();

	vm_set_memory_attributes(b->vm, gpa, size,
				 private ? KVM_MEMORY_ATTRIBUTE_PRIVATE : 0);
	b->ns_attributes += now_ns() - t;
}

/* A conversion request: true and the range if the exit is one. */
static bool conversion_exit(struct bench *b, uint64_t *gpa, uint64_t *size,
			    bool *private)
{
	struct kvm_run *run = b->vcpu->run;

	TEST_ASSERT(run->exit_reason != KVM_EXIT_MEMORY_FAULT,
		    "unexpected memory fault exit at 0x%llx",
		    run->memory_fault.gpa);
	if (run->exit_reason != KVM_EXIT_HYPERCALL)
		return false;
	TEST_ASSERT(run->hypercall.nr == KVM_HC_MAP_GPA_RANGE,
		    "unexpected hypercall %llu", run->hypercall.nr);
	*gpa = run->hypercall.args[0];
	*size = run->hypercall.args[1] * PAGE;
	*private = run->hypercall.args[2] & KVM_MAP_GPA_RANGE_ENCRYPTED;
	run->hypercall.ret = 0;
	set_attributes(b, *gpa, *size, *private);
	return true;
}
#else
static void bench_create(struct bench *b)
{
	struct private_region r;

	b->vm = vm_create_private(1, guest_code, &b->vcpu);
	if (huge)
		private_region_add_memfd(&r, b->vm, VM_MEM_SRC_ANONYMOUS_THP,
					 SLOT, DATA_GPA, npages,
					 __private_memfd_create(npages * PAGE,
								MFD_INACCESSIBLE_HUGE),
					 0);
	else
		private_region_add(&r, b->vm, SLOT, DATA_GPA, npages);
	private_region_map(&r, SHARED_GVA, PRIVATE_GVA);
	b->fd = r.memfd;
	b->hva = r.hva;
	implicit_conversions = true;
}

static bool conversion_exit(struct bench *b, uint64_t *gpa, uint64_t *size,
			    bool *private)
{
	struct kvm_run *run = b->vcpu->run;

	if (run->exit_reason != KVM_EXIT_MEMORY_ERROR)
		return false;
	TEST_ASSERT(!(run->memory.flags & ~(KVM_MEMORY_EXIT_FLAG_PRIVATE |
					    KVM_MEMORY_EXIT_FLAG_EXPLICIT)),
		    "unknown memory error flags 0x%llx", run->memory.flags);
	/* Only phase G converts by access, one page at a time. */
	TEST_ASSERT(run->memory.flags & KVM_MEMORY_EXIT_FLAG_EXPLICIT ||
		    (b->phase == PH_G && run->memory.size == PAGE),
		    "implicit conversion of [0x%llx, +0x%llx) in phase %c",
		    run->memory.gpa, run->memory.size, 'A' + b->phase);
	*gpa = run->memory.gpa;
	*size = run->memory.size;
	*private = run->memory.flags & KVM_MEMORY_EXIT_FLAG_PRIVATE;
	return true;
}
#endif

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
	}
	if (!private)
		return;
	t = now_ns();
	TEST_ASSERT(!madvise(b->hva + off, size, MADV_DONTNEED),
		    "madvise(MADV_DONTNEED) failed");
	b->ns_madvise += now_ns() - t;
}

/* Run the guest, converting what it asks for, to its next GUEST_SYNC. */
static int run_to_sync(struct bench *b)
{
	uint64_t gpa, size;
	struct ucall uc;
	bool private;

	for (;;) {
		vcpu_run(b->vcpu);
		if (conversion_exit(b, &gpa, &size, &private)) {
			convert(b, gpa, size, private);
			continue;
		}
		switch (get_ucall(b->vcpu, &uc)) {
		case UCALL_SYNC:
			TEST_ASSERT(uc.args[1] != PH_FAILED,
				    "the guest's conversion of %lu pages at page %lu to %s returned %ld",
				    uc.args[3], uc.args[2],
				    uc.args[4] ? "private" : "shared", uc.args[5]);
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

static void print_phase(int phase, double value, const int64_t before[],
			const int64_t after[])
{
	uint32_t j;

	printf("bench: %s %c %.0f %s", kernel_name, 'A' + phase, value,
	       phase_unit[phase]);
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
		"  pages: a power of two, at least 2 * scattered and trips;\n"
		"  trips and scattered: at least 1;\n"
		"  -l (guest_memfd only): no fallocate() on conversions to private\n"
		"  -H (privmem only): private memory in 2 MiB folios\n",
		prog);
	exit(KSFT_FAIL);
}

int main(int argc, char *argv[])
{
	int64_t before[NR_COUNTERS], after[NR_COUNTERS];
	uint64_t start = 0, end, unevictable_kb;
	struct bench b = { .phase = -1 };
	int opt, phase = -1, next;
	struct ucall uc;

	while ((opt = getopt(argc, argv, "n:t:s:lH")) != -1) {
		switch (opt) {
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
	if (!npages || npages & (npages - 1) || !trips || !scattered ||
	    2 * scattered > npages || trips > npages)
		help(argv[0]);

	unevictable_kb = meminfo_kb("Unevictable");
	use_vmmcall = host_cpu_amd();
	bench_create(&b);
	sync_global_to_guest(b.vm, npages);
	sync_global_to_guest(b.vm, trips);
	sync_global_to_guest(b.vm, scattered);
	sync_global_to_guest(b.vm, use_vmmcall);
	sync_global_to_guest(b.vm, implicit_conversions);
	stats_open(&b.vm_stats, b.vm->fd);
	stats_open(&b.vcpu_stats, b.vcpu->fd);

	printf("bench: %s workload pages=%lu trips=%lu scattered=%lu hypercall=%s\n",
	       kernel_name, npages, trips, scattered,
	       use_vmmcall ? "vmmcall" : "vmcall");
	for (;;) {
		next = run_to_sync(&b);
		end = now_ns();
		if (phase >= 0) {
			counters(&b, after);
			report_phase(&b, phase, end - start, before, after,
				     unevictable_kb);
		}
		TEST_ASSERT(next == phase + 1, "guest reported phase %d after %d",
			    next, phase);
		if (next == PH_END)
			break;
		phase = next;
		b.phase = phase;
		counters(&b, before);
		b.ns_attributes = 0;
		b.ns_fallocate = 0;
		b.ns_madvise = 0;
		fflush(stdout);
		start = now_ns();
	}
	/* The guest finishes after the last phase. */
	vcpu_run(b.vcpu);
	TEST_ASSERT(get_ucall(b.vcpu, &uc) == UCALL_DONE, "guest did not finish");
	close(b.vm_stats.fd);
	close(b.vcpu_stats.fd);
	kvm_vm_free(b.vm);
	printf("bench: %s done\n", kernel_name);
	return 0;
}
