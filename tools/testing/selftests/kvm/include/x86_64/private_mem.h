/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * Helpers for guests with private memory (KVM_X86_PRIVATE_MEM_VM).
 *
 * A private region is a memslot with KVM_MEM_PRIVATE: its shared pages are
 * anonymous memory the test can read and write, its private pages come
 * from an MFD_INACCESSIBLE memfd.  The guest reaches a page privately at
 * its gpa with the private GPA bit set, and shared at the plain gpa.
 */
#ifndef SELFTEST_KVM_PRIVATE_MEM_H
#define SELFTEST_KVM_PRIVATE_MEM_H

#include <linux/kvm_para.h>
#include <linux/memfd.h>
#include <stdbool.h>
#include <stdint.h>

#include "kvm_util.h"
#include "processor.h"

/* The reserved-bit flag of a #PF error code, which processor.h lacks. */
#define PF_ERROR_RSVD	BIT_ULL(3)

struct io_uring;

struct private_region {
	struct kvm_vm *vm;
	uint64_t gpa;		/* plain gpa of the first page */
	uint64_t size;		/* bytes */
	int memfd;		/* the private pages */
	uint64_t offset;	/* byte offset in memfd of the first page */
	uint8_t *hva;		/* the shared pages */
	struct io_uring *ring;	/* for batches, or NULL: entry by entry */
};

/* What a run with vcpu_run_converting() saw. */
struct conversion_counts {
	uint64_t explicit_private;	/* hypercalls asking for private */
	uint64_t explicit_shared;
	uint64_t implicit_private;	/* private accesses to shared pages */
	uint64_t implicit_shared;
	uint64_t batches;		/* KVM_HC_MAP_GPA_BATCH exits */
	uint64_t batch_entries;		/* the entries they carried */
};

/* What private_region_apply_batch() did. */
struct batch_stats {
	uint64_t entries;	/* entries done */
	uint64_t runs;		/* runs of adjacent entries it submitted */
	uint64_t syscalls;	/* system calls it made */
};

int __private_memfd_create(uint64_t size, unsigned int flags);
int private_memfd_create(uint64_t size);
struct kvm_vm *vm_create_private(uint32_t nr_vcpus, void *guest_code,
				 struct kvm_vcpu *vcpus[]);
uint64_t vm_private_gpa_mask(struct kvm_vm *vm);
void private_region_add(struct private_region *r, struct kvm_vm *vm,
			uint32_t slot, uint64_t gpa, uint64_t npages);
void private_region_add_src(struct private_region *r, struct kvm_vm *vm,
			    enum vm_mem_backing_src_type src, uint32_t slot,
			    uint64_t gpa, uint64_t npages);
void private_region_add_memfd(struct private_region *r, struct kvm_vm *vm,
			      enum vm_mem_backing_src_type src, uint32_t slot,
			      uint64_t gpa, uint64_t npages, int memfd,
			      uint64_t offset);
void private_region_map(struct private_region *r, uint64_t shared_gva,
			uint64_t private_gva);
void private_region_convert(struct private_region *r, uint64_t gpa,
			    uint64_t size, bool private);
bool kvm_param_set(const char *name, const char *val);
bool kvm_debugfs_set(const char *name, const char *val);
bool memfile_debugfs_set(const char *name, const char *val);
int kvm_param_get(const char *name);
uint64_t vcpu_run_converting(struct kvm_vcpu *vcpu, struct private_region *r,
			     struct conversion_counts *counts,
			     struct ucall *uc);
void batch_ring_init(struct io_uring *ring);
unsigned int private_region_apply_batch(struct private_region *r,
					struct kvm_map_gpa_batch *list,
					struct io_uring *ring,
					struct batch_stats *st);

/* Guest side: ask for a conversion of @npages pages at plain @gpa. */
static inline uint64_t guest_map_gpa_range(uint64_t gpa, uint64_t npages,
					   bool private)
{
	return kvm_hypercall(KVM_HC_MAP_GPA_RANGE, gpa, npages,
			     private ? KVM_MAP_GPA_RANGE_ENCRYPTED :
				       KVM_MAP_GPA_RANGE_DECRYPTED, 0);
}

/* Guest side: ask for the conversions of the list at plain @gpa. */
static inline uint64_t guest_map_gpa_batch(uint64_t gpa)
{
	return kvm_hypercall(KVM_HC_MAP_GPA_BATCH, gpa, 0, 0, 0);
}

#endif /* SELFTEST_KVM_PRIVATE_MEM_H */
