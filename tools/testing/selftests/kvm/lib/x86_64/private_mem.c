// SPDX-License-Identifier: GPL-2.0-only
/*
 * Helpers for guests with private memory (KVM_X86_PRIVATE_MEM_VM).
 */
#define _GNU_SOURCE
#include <fcntl.h>
#include <linux/falloc.h>
#include <liburing.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "private_mem.h"

/*
 * An MFD_INACCESSIBLE memfd of @size bytes, with no page allocated, and
 * with memfd_create() @flags besides.
 */
int __private_memfd_create(uint64_t size, unsigned int flags)
{
	int fd = syscall(__NR_memfd_create, "private_mem",
			 MFD_INACCESSIBLE | flags);

	TEST_ASSERT(fd >= 0, __KVM_SYSCALL_ERROR("memfd_create()", fd));
	TEST_ASSERT(!ftruncate(fd, size), "ftruncate(%lu) failed, errno %d",
		    size, errno);
	return fd;
}

/* The same, with no other flag. */
int private_memfd_create(uint64_t size)
{
	return __private_memfd_create(size, 0);
}

/*
 * A KVM_X86_PRIVATE_MEM_VM with @nr_vcpus vCPUs running @guest_code.  Its
 * code, stack and ucall pages are in ordinary memory, memslot 0.
 */
struct kvm_vm *vm_create_private(uint32_t nr_vcpus, void *guest_code,
				 struct kvm_vcpu *vcpus[])
{
	struct kvm_vm *vm;
	uint32_t i;

	TEST_REQUIRE(kvm_check_cap(KVM_CAP_PRIVATE_MEM));

	vm = __vm_create_type(VM_MODE_DEFAULT, KVM_X86_PRIVATE_MEM_VM,
			      nr_vcpus, 0);
	for (i = 0; i < nr_vcpus; i++)
		vcpus[i] = vm_vcpu_add(vm, i, guest_code);
	return vm;
}

/* The private GPA bit of @vm, as a mask. */
uint64_t vm_private_gpa_mask(struct kvm_vm *vm)
{
	int bit = vm_check_cap(vm, KVM_CAP_PRIVATE_MEM);

	TEST_ASSERT(bit > 0, "VM has no private GPA bit");
	return BIT_ULL(bit);
}

/*
 * Add memslot @slot at plain @gpa, @npages pages whose shared half is
 * memory of type @src and whose private half comes from a new memfd.
 * Every page starts shared.
 */
void private_region_add_src(struct private_region *r, struct kvm_vm *vm,
			    enum vm_mem_backing_src_type src, uint32_t slot,
			    uint64_t gpa, uint64_t npages)
{
	private_region_add_memfd(r, vm, src, slot, gpa, npages,
				 private_memfd_create(npages * vm->page_size),
				 0);
}

/*
 * The same, with the private pages from @memfd, which the region takes,
 * from byte @offset of it on.
 */
void private_region_add_memfd(struct private_region *r, struct kvm_vm *vm,
			      enum vm_mem_backing_src_type src, uint32_t slot,
			      uint64_t gpa, uint64_t npages, int memfd,
			      uint64_t offset)
{
	r->vm = vm;
	r->gpa = gpa;
	r->size = npages * vm->page_size;
	r->memfd = memfd;
	r->offset = offset;
	r->ring = NULL;
	vm_mem_add(vm, src, gpa, slot, npages, KVM_MEM_PRIVATE, memfd, offset);
	r->hva = addr_gpa2hva(vm, gpa);
}

/* The same, with ordinary anonymous memory for the shared half. */
void private_region_add(struct private_region *r, struct kvm_vm *vm,
			uint32_t slot, uint64_t gpa, uint64_t npages)
{
	private_region_add_src(r, vm, VM_MEM_SRC_ANONYMOUS, slot, gpa, npages);
}

/*
 * Map the region twice in the guest: at @shared_gva the plain gpas, at
 * @private_gva the gpas with the private GPA bit.
 */
void private_region_map(struct private_region *r, uint64_t shared_gva,
			uint64_t private_gva)
{
	uint64_t npages = r->size / r->vm->page_size;

	virt_map(r->vm, shared_gva, r->gpa, npages);
	virt_map(r->vm, private_gva, r->gpa | vm_private_gpa_mask(r->vm),
		 npages);
}

/* The fallocate() mode that makes a range private, or shared. */
static int convert_mode(bool private)
{
	return private ? 0 : FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE;
}

/*
 * Make [@gpa, @gpa + @size) of the region private, by allocating it in
 * the memfd, or shared, by punching it out, which destroys its private
 * content.
 */
void private_region_convert(struct private_region *r, uint64_t gpa,
			    uint64_t size, bool private)
{
	int mode = convert_mode(private);
	uint64_t off = r->offset + (gpa - r->gpa);

	TEST_ASSERT(gpa >= r->gpa && gpa + size <= r->gpa + r->size,
		    "conversion of [0x%lx, +0x%lx) outside the region", gpa,
		    size);
	TEST_ASSERT(!fallocate(r->memfd, mode, off, size),
		    "fallocate(mode 0x%x, 0x%lx, 0x%lx) failed, errno %d",
		    mode, off, size, errno);
}

/*
 * Run @vcpu, converting whatever it asks for in @r, explicitly or by its
 * accesses, until it stops for another reason; count the conversions in
 * @counts.  Returns the ucall the vCPU stopped with.
 */
uint64_t vcpu_run_converting(struct kvm_vcpu *vcpu, struct private_region *r,
			     struct conversion_counts *counts,
			     struct ucall *uc)
{
	struct kvm_run *run = vcpu->run;

	for (;;) {
		bool private, explicit;

		vcpu_run(vcpu);
		if (run->exit_reason != KVM_EXIT_MEMORY_ERROR)
			return get_ucall(vcpu, uc);

		private = run->memory.flags & KVM_MEMORY_EXIT_FLAG_PRIVATE;
		explicit = run->memory.flags & KVM_MEMORY_EXIT_FLAG_EXPLICIT;
		TEST_ASSERT(!(run->memory.flags &
			      ~(KVM_MEMORY_EXIT_FLAG_PRIVATE |
				KVM_MEMORY_EXIT_FLAG_EXPLICIT |
				KVM_MEMORY_EXIT_FLAG_BATCH)),
			    "unknown flags 0x%llx", run->memory.flags);
		if (run->memory.flags & KVM_MEMORY_EXIT_FLAG_BATCH) {
			private_region_apply_batch(r,
						   addr_gpa2hva(r->vm, run->memory.gpa),
						   r->ring, NULL);
			if (counts) {
				counts->batches++;
				counts->batch_entries += run->memory.size;
			}
			continue;
		}
		TEST_ASSERT(explicit || run->memory.size == r->vm->page_size,
			    "implicit exit for 0x%llx bytes", run->memory.size);
		private_region_convert(r, run->memory.gpa, run->memory.size,
				       private);
		if (!counts)
			continue;
		if (explicit && private)
			counts->explicit_private++;
		else if (explicit)
			counts->explicit_shared++;
		else if (private)
			counts->implicit_private++;
		else
			counts->implicit_shared++;
	}
}

/*
 * An entry of a KVM_HC_MAP_GPA_BATCH list, or a run of adjacent entries
 * that all make their range private, or all shared.
 */
struct batch_run {
	uint64_t gpa;
	uint64_t size;
	bool private;
	unsigned int first, last;	/* the entries it covers */
};

/*
 * Read entry @i of @list into @run, once: the list is in guest memory, and
 * the guest may change it at any time.  Returns 0, or -EINVAL for an
 * entry that KVM would refuse or that lies outside @r.
 */
static int batch_entry_read(struct private_region *r,
			    struct kvm_map_gpa_batch *list, unsigned int i,
			    struct batch_run *run)
{
	struct kvm_map_gpa_batch_entry e;
	uint64_t size, gpa;

	memcpy(&e, &list->entries[i], sizeof(e));
	if (e.reserved ||
	    (e.op != KVM_MAP_GPA_BATCH_OP_PRIVATE &&
	     e.op != KVM_MAP_GPA_BATCH_OP_SHARED) ||
	    (e.page_size != KVM_MAP_GPA_BATCH_PAGE_4K &&
	     e.page_size != KVM_MAP_GPA_BATCH_PAGE_2M))
		return -EINVAL;
	size = r->vm->page_size;
	if (e.page_size == KVM_MAP_GPA_BATCH_PAGE_2M)
		size = 512 * size;
	gpa = e.gfn * r->vm->page_size;
	if (gpa & (size - 1) || gpa < r->gpa || gpa - r->gpa >= r->size ||
	    r->size - (gpa - r->gpa) < size)
		return -EINVAL;
	*run = (struct batch_run){ gpa, size,
				   e.op == KVM_MAP_GPA_BATCH_OP_PRIVATE, i, i };
	return 0;
}

/*
 * Carry out @run the synchronous way: fallocate(), and for a range made
 * private madvise(MADV_DONTNEED) to release its shared pages.  Returns 0
 * or the negative errno of the call that failed.
 */
static int batch_convert(struct private_region *r, const struct batch_run *run,
			 struct batch_stats *st)
{
	st->syscalls++;
	if (fallocate(r->memfd, convert_mode(run->private),
		      r->offset + (run->gpa - r->gpa), run->size))
		return -errno;
	if (!run->private)
		return 0;
	st->syscalls++;
	if (madvise(r->hva + (run->gpa - r->gpa), run->size, MADV_DONTNEED))
		return -errno;
	return 0;
}

/*
 * Entries @i to @end of @list, one at a time, each its status; stop at
 * the first that fails.  Returns the index of the first entry not done.
 */
static unsigned int batch_apply_sync(struct private_region *r,
				     struct kvm_map_gpa_batch *list,
				     unsigned int i, unsigned int end,
				     struct batch_stats *st)
{
	struct batch_run run;
	int err;

	for (; i <= end; i++) {
		err = batch_entry_read(r, list, i, &run);
		if (!err)
			err = batch_convert(r, &run, st);
		WRITE_ONCE(list->entries[i].status, -err);
		if (err)
			break;
		st->entries++;
		st->runs++;
	}
	return i;
}

/* Room for a fallocate and a madvise for every entry of a list. */
#define BATCH_RING_ENTRIES	(2 * KVM_MAP_GPA_BATCH_MAX_ENTRIES + 2)

/* Set up @ring for private_region_apply_batch(). */
void batch_ring_init(struct io_uring *ring)
{
	int ret = io_uring_queue_init(BATCH_RING_ENTRIES, ring, 0);

	TEST_ASSERT(!ret, "io_uring_queue_init() failed, errno %d", -ret);
}

/*
 * Entries @cur to @end of @list with one io_uring submission: adjacent
 * entries that go the same way make one run, each run an
 * IORING_OP_FALLOCATE, followed for a run made private by an
 * IORING_OP_MADVISE that releases its shared pages, all linked so that a
 * failure cancels what comes after it.  A run that fails, or an entry
 * that is not valid, is done again one entry at a time, from there to
 * @end, so that the batch stops at exactly the entry where
 * batch_apply_sync() would.  The store's fallocate() changes nothing when
 * it fails, so a run that failed left nothing half done.  Returns the
 * index of the first entry not done.
 */
static unsigned int batch_apply_uring(struct private_region *r,
				      struct kvm_map_gpa_batch *list,
				      unsigned int cur, unsigned int end,
				      struct io_uring *ring,
				      struct batch_stats *st)
{
	struct batch_run runs[KVM_MAP_GPA_BATCH_MAX_ENTRIES], e;
	unsigned int i, k, nr = 0, sqes = 0, failed;
	struct io_uring_sqe *sqe = NULL;
	struct io_uring_cqe *cqe;
	int ret;

	for (i = cur; i <= end && !batch_entry_read(r, list, i, &e); i++) {
		struct batch_run *last = nr ? &runs[nr - 1] : NULL;

		if (last && last->private == e.private &&
		    last->gpa + last->size == e.gpa) {
			last->size += e.size;
			last->last = i;
		} else {
			runs[nr++] = e;
		}
	}

	for (k = 0; k < nr; k++) {
		uint64_t off = runs[k].gpa - r->gpa;

		sqe = io_uring_get_sqe(ring);
		TEST_ASSERT(sqe, "io_uring has no room");
		io_uring_prep_fallocate(sqe, r->memfd,
					convert_mode(runs[k].private),
					r->offset + off, runs[k].size);
		io_uring_sqe_set_data64(sqe, k);
		sqe->flags |= IOSQE_IO_LINK;
		sqes++;
		if (!runs[k].private)
			continue;
		sqe = io_uring_get_sqe(ring);
		TEST_ASSERT(sqe, "io_uring has no room");
		io_uring_prep_madvise(sqe, r->hva + off, runs[k].size,
				      MADV_DONTNEED);
		io_uring_sqe_set_data64(sqe, k);
		sqe->flags |= IOSQE_IO_LINK;
		sqes++;
	}

	failed = nr;
	if (sqes) {
		sqe->flags &= ~IOSQE_IO_LINK;
		st->syscalls++;
		ret = io_uring_submit_and_wait(ring, sqes);
		TEST_ASSERT(ret == (int)sqes, "io_uring_submit_and_wait() = %d",
			    ret);
		for (k = 0; k < sqes; k++) {
			TEST_ASSERT(!io_uring_peek_cqe(ring, &cqe),
				    "io_uring completion missing");
			if (cqe->res < 0 && cqe->res != -ECANCELED &&
			    cqe->user_data < failed)
				failed = cqe->user_data;
			io_uring_cqe_seen(ring, cqe);
		}
	}

	for (k = 0; k < failed; k++) {
		for (i = runs[k].first; i <= runs[k].last; i++)
			WRITE_ONCE(list->entries[i].status, 0);
		st->entries += runs[k].last - runs[k].first + 1;
	}
	st->runs += failed;
	i = failed < nr ? runs[failed].first : nr ? runs[nr - 1].last + 1 : cur;
	return i <= end ? batch_apply_sync(r, list, i, end, st) : i;
}

/**
 * private_region_apply_batch - carry out a KVM_HC_MAP_GPA_BATCH list
 * @r: the region that every entry must lie in
 * @list: the list, in the guest's shared memory
 * @ring: an io_uring set up by batch_ring_init() to carry out the batch
 *	with one submission, or NULL to do it one entry at a time
 * @st: where to add up what it did, or NULL
 *
 * Does the entries from the list's cur_entry to its end_entry in order,
 * as KVM_MEMORY_EXIT_FLAG_BATCH asks: an entry made private is allocated
 * in the region's memfd and its shared pages released, an entry made
 * shared is punched out of the memfd.  Sets the status of each entry it
 * tried, 0 or the errno that stopped it (EINVAL for an entry outside @r
 * or malformed), and leaves cur_entry at the first entry not done.  Both
 * ways stop at the same entry with the same status and leave the memfd
 * the same.  Entries are read once each, since the guest may change the
 * list at any time.
 *
 * Return: the number of entries done.
 */
unsigned int private_region_apply_batch(struct private_region *r,
					struct kvm_map_gpa_batch *list,
					struct io_uring *ring,
					struct batch_stats *st)
{
	unsigned int cur = READ_ONCE(list->cur_entry);
	unsigned int end = READ_ONCE(list->end_entry);
	struct batch_stats unused = {};
	unsigned int next;

	if (!st)
		st = &unused;
	if (end >= KVM_MAP_GPA_BATCH_MAX_ENTRIES || cur > end)
		return 0;
	if (ring)
		next = batch_apply_uring(r, list, cur, end, ring, st);
	else
		next = batch_apply_sync(r, list, cur, end, st);
	WRITE_ONCE(list->cur_entry, next);
	return next - cur;
}

#define KVM_PARAM_DIR	"/sys/module/kvm/parameters/"
#define KVM_DEBUGFS_DIR	"/sys/kernel/debug/kvm/"
#define MEMFILE_DEBUGFS_DIR	"/sys/kernel/debug/memfile_notifier/"

/* Write @val to the file @dir@name; false if it is absent or refuses it. */
static bool write_str(const char *dir, const char *name, const char *val)
{
	ssize_t len = strlen(val);
	char path[256];
	bool ok;
	int fd;

	snprintf(path, sizeof(path), "%s%s", dir, name);
	fd = open(path, O_WRONLY);
	if (fd < 0)
		return false;
	ok = write(fd, val, len) == len;
	close(fd);
	return ok;
}

/*
 * Set kvm module parameter @name to @val, for a test that flips it and
 * puts it back.  False if the parameter is absent or cannot be written.
 */
bool kvm_param_set(const char *name, const char *val)
{
	return write_str(KVM_PARAM_DIR, name, val);
}

/*
 * Write @val to @name below KVM's debugfs directory, for instance a fault
 * injection attribute.  False if the file is absent or refuses the value.
 */
bool kvm_debugfs_set(const char *name, const char *val)
{
	return write_str(KVM_DEBUGFS_DIR, name, val);
}

/* The same below memfile_notifier's debugfs directory. */
bool memfile_debugfs_set(const char *name, const char *val)
{
	return write_str(MEMFILE_DEBUGFS_DIR, name, val);
}

/*
 * The kvm module parameter @name: 1 for Y, 0 for N, else its number; -1
 * if it is absent.
 */
int kvm_param_get(const char *name)
{
	char path[128], buf[16] = "";
	int fd;

	snprintf(path, sizeof(path), KVM_PARAM_DIR "%s", name);
	fd = open(path, O_RDONLY);
	if (fd < 0)
		return -1;
	if (read(fd, buf, sizeof(buf) - 1) <= 0)
		buf[0] = '\0';
	close(fd);
	return buf[0] == 'Y' ? 1 : buf[0] == 'N' ? 0 : atoi(buf);
}
