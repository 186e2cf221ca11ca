// SPDX-License-Identifier: GPL-2.0
/*
 * privmem-demo: the main job's demonstration, told in plain words.
 *
 * A guest of type KVM_X86_PRIVATE_MEM_VM writes into private memory, the
 * host tries to read it and is refused, the guest converts pages
 * explicitly (by hypercall) and implicitly (by accessing them), and the
 * host reads what the guest shares.  Runs inside the test VM; each line it
 * prints starts with "privmem-demo:" so the harness can show just these.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "kvm_util.h"
#include "private_mem.h"
#include "processor.h"

#define SLOT		10
#define GPA		0x40000000ULL
#define NPAGES		512		/* 2 MiB */
#define PAGE		4096
#define SHARED_GVA	0x40000000ULL
#define PRIVATE_GVA	0x80000000ULL

static const char secret[] = "the guest's secret";
static const char hello[] = "hello from the guest, in shared memory";
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

/* The guest's part; each GUEST_SYNC hands the story to the host. */
static void guest_code(void)
{
	char *private0 = (char *)PRIVATE_GVA, *shared0 = (char *)SHARED_GVA;
	uint64_t *private1 = (uint64_t *)(PRIVATE_GVA + PAGE);

	GUEST_ASSERT(!guest_map_gpa_range(GPA, 1, true));
	memcpy(private0, secret, sizeof(secret));
	GUEST_SYNC(1);

	GUEST_ASSERT(!guest_map_gpa_range(GPA, 1, false));
	GUEST_ASSERT(!memcmp(shared0, host_data, sizeof(host_data)));
	memcpy(shared0, hello, sizeof(hello));
	GUEST_SYNC(2);

	/* No hypercall: the access itself asks for page 1. */
	GUEST_SYNC(READ_ONCE(private1[0]) | READ_ONCE(private1[511]));
	GUEST_DONE();
}

static const char *direction(struct kvm_run *run)
{
	return run->memory.flags & KVM_MEMORY_EXIT_FLAG_PRIVATE ?
	       "to private" : "to shared";
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
		say("[host ] KVM_EXIT_MEMORY_ERROR: %s conversion %s of gpa 0x%llx, %llu bytes",
		    run->memory.flags & KVM_MEMORY_EXIT_FLAG_EXPLICIT ?
		    "explicit" : "implicit", direction(run),
		    run->memory.gpa, run->memory.size);
		say("[host ]   -> %s", private ?
		    "fallocate() allocates the page in the private memfd" :
		    "a hole punch frees the private page; its content is destroyed");
		private_region_convert(r, run->memory.gpa, run->memory.size,
				       private);
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

/* Every way the host has to read the guest's private page. */
static void host_tries_to_read(struct private_region *r)
{
	char buf[sizeof(secret)];
	void *map;

	say("[host ] tries to read the secret:");
	errno = 0;
	TEST_ASSERT(pread(r->memfd, buf, sizeof(buf), 0) == -1 && errno == EINVAL,
		    "read() of the private memfd did not fail with EINVAL");
	say("[host ]   read() of the private memfd:  refused (EINVAL)");
	map = mmap(NULL, PAGE, PROT_READ, MAP_SHARED, r->memfd, 0);
	TEST_ASSERT(map == MAP_FAILED && errno == ENODEV,
		    "mmap() of the private memfd did not fail with ENODEV");
	say("[host ]   mmap() of the private memfd:  refused (ENODEV)");
	TEST_ASSERT(!memcmp(r->hva, host_data, sizeof(host_data)),
		    "the host's own mapping changed");
	say("[host ]   its own mapping of the page:  \"%s\", not the secret",
	    (char *)r->hva);
}

int main(void)
{
	struct private_region r;
	struct kvm_vcpu *vcpu;
	struct kvm_vm *vm;
	uint64_t zeros;

	say("a guest with private memory, on a VM without any confidential-computing hardware");
	vm = vm_create_private(1, guest_code, &vcpu);
	private_region_add(&r, vm, SLOT, GPA, NPAGES);
	private_region_map(&r, SHARED_GVA, PRIVATE_GVA);
	memcpy(r.hva, host_data, sizeof(host_data));
	say("[host ] created a KVM_X86_PRIVATE_MEM_VM whose guest marks private accesses with GPA bit %d",
	    kvm_check_cap(KVM_CAP_PRIVATE_MEM));
	say("[host ] gave it 2 MiB at gpa 0x%llx: shared pages from the host's memory, private ones from an MFD_INACCESSIBLE memfd",
	    GPA);
	say("[host ] put \"%s\" in the shared page at gpa 0x%llx", host_data, GPA);

	say("[guest] asks by hypercall for page 0x%llx to become private", GPA);
	run_guest(vcpu, &r);
	say("[guest] wrote \"%s\" into the page, through its private view", secret);
	host_tries_to_read(&r);

	say("[guest] asks by hypercall for the page to become shared again");
	run_guest(vcpu, &r);
	say("[guest] found \"%s\" there, and wrote \"%s\"", host_data, hello);
	TEST_ASSERT(!strcmp((char *)r.hva, hello), "the host missed the guest's write");
	say("[host ] reads the shared page: \"%s\"", (char *)r.hva);

	say("[guest] reads page 0x%llx privately, without asking first", GPA + PAGE);
	zeros = run_guest(vcpu, &r);
	TEST_ASSERT(!zeros, "a new private page did not read as zeros");
	say("[guest] the new private page reads as zeros");
	run_guest(vcpu, &r);

	kvm_vm_free(vm);
	close(r.memfd);
	say("done: private memory stayed private, and shared memory was shared");
	return 0;
}
