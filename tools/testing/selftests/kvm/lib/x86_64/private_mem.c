// SPDX-License-Identifier: GPL-2.0-only
/*
 * Helpers for guests with private memory (KVM_X86_PRIVATE_MEM_VM).
 */
#define _GNU_SOURCE
#include <fcntl.h>
#include <linux/falloc.h>
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

/*
 * Make [@gpa, @gpa + @size) of the region private, by allocating it in
 * the memfd, or shared, by punching it out, which destroys its private
 * content.
 */
void private_region_convert(struct private_region *r, uint64_t gpa,
			    uint64_t size, bool private)
{
	int mode = private ? 0 : FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE;
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
				KVM_MEMORY_EXIT_FLAG_EXPLICIT)),
			    "unknown flags 0x%llx", run->memory.flags);
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
