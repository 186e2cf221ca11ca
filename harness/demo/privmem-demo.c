// SPDX-License-Identifier: GPL-2.0
/*
 * privmem-demo: the main job's demonstration, told in plain words.
 *
 * A guest of type KVM_X86_PRIVATE_MEM_VM writes into private memory, the
 * host tries every way it has to read it and is refused, the guest
 * converts pages explicitly (by hypercall) and implicitly (by accessing
 * them), the host reads what the guest shares, and the demo shows the VM's
 * statistics and where the memory went.  Runs inside the test VM; each
 * line it prints starts with "privmem-demo:" so the harness can show just
 * these.  Any surprise fails it.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <liburing.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/sendfile.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <unistd.h>

#include "kvm_util.h"
#include "private_mem.h"
#include "processor.h"

#define SLOT		10
#define GPA		0x40000000ULL
#define NPAGES		512		/* 2 MiB */
#define PRIVATE_PAGES	256		/* what the guest makes private first */
#define ZERO_PAGE_IDX	300		/* read privately without asking */
#define PAGE		4096
#define SHARED_GVA	0x40000000ULL
#define PRIVATE_GVA	0x80000000ULL

static const char secret[] = "the guest's secret";
static const char hello[] = "hello from the guest, in shared memory";
static const char hello2[] = "written to a private page, through the shared view";
static const char host_data[] = "host data";

static void say(const char *fmt, ...)
{
	va_list ap;

	printf("privmem-demo: ");
	va_start(ap, fmt);
	vprintf(fmt, ap);
	va_end(ap);
	printf("\n");
	fflush(stdout);
}

static char *page_gva(uint64_t page, bool private)
{
	return (char *)((private ? PRIVATE_GVA : SHARED_GVA) + page * PAGE);
}

/*
 * Byte by byte through volatile accesses, so the compiler does not turn
 * these into calls to the C library, which the guest does not have.
 */
static void guest_copy(char *dst, const char *src, size_t n)
{
	size_t i;

	for (i = 0; i < n; i++)
		WRITE_ONCE(dst[i], src[i]);
}

static bool all_zero(const char *p, size_t n)
{
	size_t i;

	for (i = 0; i < n; i++)
		if (READ_ONCE(p[i]))
			return false;
	return true;
}

/* The guest's part; each GUEST_SYNC hands the story to the host. */
static void guest_code(void)
{
	uint64_t *fresh = (uint64_t *)page_gva(ZERO_PAGE_IDX, true);

	GUEST_ASSERT(!guest_map_gpa_range(GPA, PRIVATE_PAGES, true));
	guest_copy(page_gva(0, true), secret, sizeof(secret));
	GUEST_SYNC(1);

	/* Explicitly back to shared; the host released what was there. */
	GUEST_ASSERT(!guest_map_gpa_range(GPA, 1, false));
	GUEST_ASSERT(all_zero(page_gva(0, false), PAGE));
	guest_copy(page_gva(0, false), hello, sizeof(hello));
	GUEST_SYNC(2);

	/* No hypercall: a private read of a shared page asks for it. */
	GUEST_SYNC(READ_ONCE(fresh[0]) | READ_ONCE(fresh[PAGE / 8 - 1]));

	/* No hypercall: a shared write to a private page asks for it. */
	guest_copy(page_gva(1, false), hello2, sizeof(hello2));
	GUEST_SYNC(4);
	GUEST_DONE();
}

/*
 * The VMM's conversion: fallocate() or punch the private memfd, and when a
 * range goes private, release the shared memory behind it too, so that no
 * page of the guest is held twice.
 */
static void convert(struct private_region *r, uint64_t gpa, uint64_t size,
		    bool private)
{
	private_region_convert(r, gpa, size, private);
	if (private)
		TEST_ASSERT(!madvise(r->hva + (gpa - r->gpa), size, MADV_DONTNEED),
			    "cannot release the shared backing: %s",
			    strerror(errno));
}

/* Run until the guest stops for something other than a conversion. */
static uint64_t run_guest(struct kvm_vcpu *vcpu, struct private_region *r)
{
	struct kvm_run *run = vcpu->run;
	struct ucall uc;

	for (;;) {
		bool private;

		vcpu_run(vcpu);
		if (run->exit_reason != KVM_EXIT_MEMORY_ERROR)
			break;
		private = run->memory.flags & KVM_MEMORY_EXIT_FLAG_PRIVATE;
		say("[host ] KVM_EXIT_MEMORY_ERROR: %s conversion to %s of gpa 0x%llx, %llu KiB",
		    run->memory.flags & KVM_MEMORY_EXIT_FLAG_EXPLICIT ?
		    "explicit" : "implicit", private ? "private" : "shared",
		    run->memory.gpa, run->memory.size / 1024);
		say("[host ]   -> %s", private ?
		    "fallocate() in the private memfd, MADV_DONTNEED on the shared memory" :
		    "a hole punch frees the private pages; their content is destroyed");
		convert(r, run->memory.gpa, run->memory.size, private);
	}

	switch (get_ucall(vcpu, &uc)) {
	case UCALL_SYNC:
		return uc.args[1];
	case UCALL_DONE:
		return 0;
	case UCALL_ABORT:
		REPORT_GUEST_ASSERT(uc);
	default:
		TEST_FAIL("the guest stopped with %s",
			  exit_reason_str(run->exit_reason));
	}
	return 0;
}

/* The ways to read the private page through the memfd; -1 and errno. */
static long by_read(int fd, char *buf)
{
	return read(fd, buf, PAGE);
}

static long by_pread(int fd, char *buf)
{
	return pread(fd, buf, PAGE, 0);
}

static long by_readv(int fd, char *buf)
{
	struct iovec iov = { buf, PAGE };

	return preadv2(fd, &iov, 1, 0, 0);
}

static long via_mmap(int fd, char *buf, int flags)
{
	void *map = mmap(NULL, PAGE, PROT_READ, flags, fd, 0);

	if (map == MAP_FAILED)
		return -1;
	memcpy(buf, map, PAGE);
	munmap(map, PAGE);
	return PAGE;
}

static long by_mmap(int fd, char *buf)
{
	return via_mmap(fd, buf, MAP_SHARED);
}

static long by_mmap_private(int fd, char *buf)
{
	return via_mmap(fd, buf, MAP_PRIVATE);
}

static long by_splice(int fd, char *buf)
{
	loff_t off = 0;
	int p[2];
	long n;

	TEST_ASSERT(!pipe(p), "pipe: %s", strerror(errno));
	n = splice(fd, &off, p[1], NULL, PAGE, 0);
	if (n > 0)
		n = read(p[0], buf, n);
	close(p[0]);
	close(p[1]);
	return n;
}

/* Copy into an ordinary memfd with @copy, then read that. */
static long via_memfd(int fd, char *buf, bool sendfile_not_cfr)
{
	int out = memfd_create("demo-copy", 0);
	loff_t in_off = 0, out_off = 0;
	off_t sf_off = 0;
	long n;

	TEST_ASSERT(out >= 0, "memfd_create: %s", strerror(errno));
	if (sendfile_not_cfr)
		n = sendfile(out, fd, &sf_off, PAGE);
	else
		n = copy_file_range(fd, &in_off, out, &out_off, PAGE, 0);
	if (n > 0)
		n = pread(out, buf, n, 0);
	close(out);
	return n;
}

static long by_sendfile(int fd, char *buf)
{
	return via_memfd(fd, buf, true);
}

static long by_copy_file_range(int fd, char *buf)
{
	return via_memfd(fd, buf, false);
}

static long by_io_uring(int fd, char *buf)
{
	struct io_uring_sqe *sqe;
	struct io_uring_cqe *cqe;
	struct io_uring ring;
	long n;

	TEST_ASSERT(!io_uring_queue_init(2, &ring, 0), "io_uring unavailable");
	sqe = io_uring_get_sqe(&ring);
	io_uring_prep_read(sqe, fd, buf, PAGE, 0);
	TEST_ASSERT(io_uring_submit(&ring) == 1, "io_uring_submit failed");
	TEST_ASSERT(!io_uring_wait_cqe(&ring, &cqe), "io_uring_wait_cqe failed");
	n = cqe->res;
	io_uring_cqe_seen(&ring, cqe);
	io_uring_queue_exit(&ring);
	if (n < 0) {
		errno = -n;
		return -1;
	}
	return n;
}

static long by_reopen(int fd, char *buf)
{
	char path[64];
	int fd2;
	long n;

	snprintf(path, sizeof(path), "/proc/self/fd/%d", fd);
	fd2 = open(path, O_RDONLY);
	if (fd2 < 0)
		return -1;
	n = pread(fd2, buf, PAGE, 0);
	close(fd2);
	return n;
}

static const struct {
	const char *how;
	long (*fn)(int fd, char *buf);
} fd_ways[] = {
	{ "read()",				by_read },
	{ "pread()",				by_pread },
	{ "preadv2()",				by_readv },
	{ "mmap(MAP_SHARED)",			by_mmap },
	{ "mmap(MAP_PRIVATE)",			by_mmap_private },
	{ "splice() into a pipe",		by_splice },
	{ "sendfile() into another memfd",	by_sendfile },
	{ "copy_file_range() into a memfd",	by_copy_file_range },
	{ "io_uring read",			by_io_uring },
	{ "read() after reopening /proc/self/fd/N", by_reopen },
};

/* The ways to read the guest's page through the host's own mapping. */
static long by_hva(struct private_region *r, char *buf)
{
	memcpy(buf, r->hva, PAGE);
	return PAGE;
}

static long by_proc_mem(struct private_region *r, char *buf)
{
	int fd = open("/proc/self/mem", O_RDONLY);
	long n;

	if (fd < 0)
		return -1;
	n = pread(fd, buf, PAGE, (off_t)(uintptr_t)r->hva);
	close(fd);
	return n;
}

static long by_process_vm_readv(struct private_region *r, char *buf)
{
	struct iovec local = { buf, PAGE }, remote = { r->hva, PAGE };

	return process_vm_readv(getpid(), &local, 1, &remote, 1, 0);
}

static const struct {
	const char *how;
	long (*fn)(struct private_region *r, char *buf);
} hva_ways[] = {
	{ "its own mapping of the guest page",	by_hva },
	{ "/proc/self/mem at that address",	by_proc_mem },
	{ "process_vm_readv() of that address",	by_process_vm_readv },
};

static const char *seen(const char *buf)
{
	if (all_zero(buf, PAGE))
		return "zeros";
	return buf;
}

/* Every way the host has to read the guest's private page. */
static void host_tries_to_read(struct private_region *r)
{
	static char buf[PAGE];
	unsigned int i;
	long n;

	say("[host ] tries to read the secret:");
	for (i = 0; i < ARRAY_SIZE(fd_ways); i++) {
		errno = 0;
		n = fd_ways[i].fn(r->memfd, buf);
		TEST_ASSERT(n == -1 && errno, "%s of the private memfd returned %ld",
			    fd_ways[i].how, n);
		say("[host ]   %-40s refused (%s)", fd_ways[i].how,
		    strerrorname_np(errno));
	}
	for (i = 0; i < ARRAY_SIZE(hva_ways); i++) {
		memset(buf, 0xff, sizeof(buf));
		n = hva_ways[i].fn(r, buf);
		TEST_ASSERT(n == PAGE, "%s failed: %s", hva_ways[i].how,
			    strerror(errno));
		TEST_ASSERT(!memmem(buf, PAGE, secret, sizeof(secret)),
			    "%s shows the secret", hva_ways[i].how);
		say("[host ]   %-40s shared view only: %s", hva_ways[i].how,
		    seen(buf));
	}
	TEST_ASSERT(!memmem(r->hva, r->size, secret, sizeof(secret)),
		    "the secret is in the host's memory");
	say("[host ]   the secret is nowhere in the host's 2 MiB of the guest's memory");
}

#define PM_PRESENT	BIT_ULL(63)
#define PM_PFN		(BIT_ULL(55) - 1)

/* The /proc/self/pagemap entry of the page at @addr. */
static uint64_t pagemap_entry(int fd, const void *addr)
{
	uint64_t ent;

	TEST_ASSERT(pread(fd, &ent, sizeof(ent),
			  (uintptr_t)addr / PAGE * sizeof(ent)) == sizeof(ent),
		    "cannot read /proc/self/pagemap: %s", strerror(errno));
	return ent;
}

/*
 * The shared pages the host holds: mapped, and not the zero page, which
 * reading a released page maps and which costs nothing.
 */
static uint64_t shared_pages_held(struct private_region *r)
{
	uint64_t held = 0, zero, ent, i;
	volatile char *probe;
	int fd;

	fd = open("/proc/self/pagemap", O_RDONLY);
	TEST_ASSERT(fd >= 0, "cannot open /proc/self/pagemap: %s",
		    strerror(errno));
	probe = mmap(NULL, PAGE, PROT_READ, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	TEST_ASSERT(probe != MAP_FAILED, "mmap: %s", strerror(errno));
	(void)probe[0];
	zero = pagemap_entry(fd, (const void *)probe) & PM_PFN;
	munmap((void *)probe, PAGE);

	for (i = 0; i < NPAGES; i++) {
		ent = pagemap_entry(fd, r->hva + i * PAGE);
		held += (ent & PM_PRESENT) && (ent & PM_PFN) != zero;
	}
	close(fd);
	return held;
}

/* Where the region's memory is: the host's shared pages, the memfd's. */
static void show_memory(struct private_region *r, const char *when)
{
	uint64_t shared, private;
	struct stat st;

	shared = shared_pages_held(r);
	TEST_ASSERT(!fstat(r->memfd, &st), "fstat: %s", strerror(errno));
	private = st.st_blocks * 512 / PAGE;
	say("[host ] memory %s: %lu shared pages + %lu private pages = %lu of the guest's %d",
	    when, shared, private, shared + private, NPAGES);
	TEST_ASSERT(shared + private <= NPAGES,
		    "some pages are held both shared and private");
}

static void show_stats(struct kvm_vm *vm)
{
	static const char * const names[] = {
		"private_mem_faults", "private_mem_shared_faults",
		"private_mem_explicit_exits", "private_mem_implicit_exits",
		"private_mem_zapped_pages",
	};
	unsigned int i;

	say("[host ] the VM's statistics (KVM_GET_STATS_FD):");
	for (i = 0; i < ARRAY_SIZE(names); i++)
		say("[host ]   %-28s %lu", names[i], vm_get_stat(vm, names[i]));
}

int main(void)
{
	struct private_region r;
	struct kvm_vcpu *vcpu;
	struct kvm_vm *vm;
	uint64_t i;

	say("a guest with private memory, on a VM without any confidential-computing hardware");
	vm = vm_create_private(1, guest_code, &vcpu);
	private_region_add(&r, vm, SLOT, GPA, NPAGES);
	private_region_map(&r, SHARED_GVA, PRIVATE_GVA);
	/* 4 KiB pages, so that releasing one frees it at once. */
	TEST_ASSERT(!madvise(r.hva, r.size, MADV_NOHUGEPAGE), "madvise: %s",
		    strerror(errno));
	for (i = 0; i < NPAGES; i++)
		memcpy(r.hva + i * PAGE, host_data, sizeof(host_data));
	say("[host ] created a KVM_X86_PRIVATE_MEM_VM whose guest marks private accesses with GPA bit %d",
	    kvm_check_cap(KVM_CAP_PRIVATE_MEM));
	say("[host ] gave it 2 MiB at gpa 0x%llx: shared pages from the host's memory, private ones from an MFD_INACCESSIBLE memfd",
	    GPA);
	say("[host ] put \"%s\" in every shared page", host_data);
	show_memory(&r, "at the start");

	say("[guest] asks by hypercall for its first %d pages to become private",
	    PRIVATE_PAGES);
	run_guest(vcpu, &r);
	say("[guest] wrote \"%s\" into page 0, through its private view", secret);
	show_memory(&r, "now");
	host_tries_to_read(&r);

	say("[guest] asks by hypercall for page 0 to become shared again");
	run_guest(vcpu, &r);
	say("[guest] found zeros there (the host had released it), and wrote \"%s\"",
	    hello);
	TEST_ASSERT(!strcmp((char *)r.hva, hello), "the host missed the guest's write");
	say("[host ] reads the shared page: \"%s\"", (char *)r.hva);

	say("[guest] reads page %d privately, without asking first", ZERO_PAGE_IDX);
	TEST_ASSERT(!run_guest(vcpu, &r), "a new private page did not read as zeros");
	say("[guest] the new private page reads as zeros, not as \"%s\"", host_data);

	say("[guest] writes to page 1, private, through its shared view, without asking first");
	run_guest(vcpu, &r);
	TEST_ASSERT(!strcmp((char *)r.hva + PAGE, hello2),
		    "the host missed the guest's write");
	say("[host ] reads page 1: \"%s\"", (char *)r.hva + PAGE);
	run_guest(vcpu, &r);

	show_stats(vm);
	show_memory(&r, "at the end");
	kvm_vm_free(vm);
	close(r.memfd);
	say("done: private memory stayed private, and shared memory was shared");
	return 0;
}
