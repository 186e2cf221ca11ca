// SPDX-License-Identifier: GPL-2.0-only
/*
 * Teardown of private memory in every order: close the memfd (C), delete
 * the memslot (S), destroy the VM (D), kill the process (K), each plainly
 * or while a conversion runs, and with the vCPU running (R).  Afterwards
 * Cached, Unevictable, Mlocked and FileHugePages in /proc/meminfo and the
 * memfile consumer count must be back where they were, within DEADLINE_MS.
 * The huge variants take the private pages from an MFD_INACCESSIBLE_HUGE
 * memfd, in whole 2 MiB folios, which the guest maps 2 MiB at a time.
 */
#define _GNU_SOURCE
#include <fcntl.h>
#include <linux/falloc.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "kvm_util.h"
#include "private_mem.h"
#include "processor.h"

/* test_util.h's ASSERT_EQ() predates the harness's; use the harness's. */
#undef ASSERT_EQ
#include "../kselftest_harness.h"

#define SLOT		10
#define GPA		BIT_ULL(30)
#define NPAGES		16384ULL		/* 64 MiB */
#define TOUCHED		1024ULL			/* faulted in by the guest */
#define SHARED_GVA	0x40000000ULL
#define PRIVATE_GVA	0x80000000ULL
#define SLACK_KB	2048			/* per-cpu counter drift */
#define DEADLINE_MS	5000			/* deferred frees after teardown */
#define CONSUMERS	"/sys/kernel/debug/memfile_notifier/consumers"

/* Value of a /proc/meminfo field, in KiB. */
static long meminfo_kb(const char *field)
{
	size_t len = strlen(field);
	char line[128];
	long val = -1;
	FILE *f;

	f = fopen("/proc/meminfo", "r");
	if (!f)
		return -1;
	while (fgets(line, sizeof(line), f)) {
		if (!strncmp(line, field, len) && line[len] == ':') {
			val = strtol(line + len + 1, NULL, 10);
			break;
		}
	}
	fclose(f);
	return val;
}

static long consumers(void)
{
	char buf[32] = "";
	int fd;

	fd = open(CONSUMERS, O_RDONLY);
	if (fd < 0)
		return -1;
	if (read(fd, buf, sizeof(buf) - 1) <= 0)
		buf[0] = '\0';
	close(fd);
	return strtol(buf, NULL, 10);
}

struct baseline {
	long cached, unevictable, mlocked, file_huge, consumers;
};

static struct baseline now(void)
{
	return (struct baseline) {
		.cached = meminfo_kb("Cached"),
		.unevictable = meminfo_kb("Unevictable"),
		.mlocked = meminfo_kb("Mlocked"),
		.file_huge = meminfo_kb("FileHugePages"),
		.consumers = consumers(),
	};
}

/*
 * The counters once the previous test's teardown has drained: two equal
 * readings 100 ms apart, or the last one after DEADLINE_MS.
 */
static struct baseline settled(void)
{
	struct timespec ts = { 0, 100 * 1000 * 1000 };
	struct baseline prev = now(), cur = prev;
	int waited;

	for (waited = 0; waited < DEADLINE_MS; waited += 100) {
		nanosleep(&ts, NULL);
		cur = now();
		if (!memcmp(&cur, &prev, sizeof(cur)))
			break;
		prev = cur;
	}
	return cur;
}

static void log_counters(struct __test_metadata *_metadata,
			 struct baseline n, struct baseline b, long delta_kb)
{
	TH_LOG("now/baseline: Cached %ld/%ld kB, Unevictable %ld/%ld kB",
	       n.cached, b.cached, n.unevictable, b.unevictable);
	TH_LOG("now/baseline: Mlocked %ld/%ld kB, consumers %ld/%ld",
	       n.mlocked, b.mlocked, n.consumers, b.consumers);
	TH_LOG("now/baseline: FileHugePages %ld/%ld kB", n.file_huge,
	       b.file_huge);
	TH_LOG("expected: the baseline, with %ld kB more Cached and Unevictable",
	       delta_kb);
}

/* Memory @delta_kb above @b, the same consumers. */
static bool near(struct baseline b, struct baseline n, long delta_kb)
{
	return labs(b.cached + delta_kb - n.cached) <= SLACK_KB &&
	       labs(b.unevictable + delta_kb - n.unevictable) <= SLACK_KB &&
	       labs(b.mlocked - n.mlocked) <= SLACK_KB &&
	       b.file_huge == n.file_huge && b.consumers == n.consumers;
}

/* Wait up to DEADLINE_MS for everything to return to @b. */
static bool back_to(struct baseline b)
{
	struct timespec ts = { 0, 50 * 1000 * 1000 };
	int waited;

	for (waited = 0; waited <= DEADLINE_MS; waited += 50) {
		if (near(b, now(), 0))
			return true;
		nanosleep(&ts, NULL);
	}
	return false;
}

static void guest_touch_private(uint64_t gva, uint64_t npages)
{
	uint64_t i;

	for (;;) {
		for (i = 0; i < npages; i++)
			WRITE_ONCE(*(uint64_t *)(gva + i * 4096), i);
		GUEST_SYNC(0);
	}
}

struct victim {
	struct kvm_vm *vm;
	struct kvm_vcpu *vcpu;
	struct private_region r;
	pthread_t converter;
	bool converting;
	pthread_t runner;
	bool running;
};

/*
 * A private VM whose slot has TOUCHED private pages the guest mapped, in
 * huge folios if @huge.
 */
static void victim_create(struct victim *v, bool huge)
{
	struct ucall uc;

	memset(v, 0, sizeof(*v));
	v->vm = vm_create_private(1, guest_touch_private, &v->vcpu);
	if (huge)
		private_region_add_memfd(&v->r, v->vm, VM_MEM_SRC_ANONYMOUS_THP,
					 SLOT, GPA, NPAGES,
					 __private_memfd_create(NPAGES * 4096,
								MFD_INACCESSIBLE_HUGE),
					 0);
	else
		private_region_add(&v->r, v->vm, SLOT, GPA, NPAGES);
	private_region_map(&v->r, SHARED_GVA, PRIVATE_GVA);
	private_region_convert(&v->r, GPA, TOUCHED * 4096, true);
	vcpu_args_set(v->vcpu, 2, PRIVATE_GVA, TOUCHED);
	vcpu_run(v->vcpu);
	TEST_ASSERT(get_ucall(v->vcpu, &uc) == UCALL_SYNC,
		    "guest could not use its private memory");
	TEST_ASSERT(!huge || vm_get_stat(v->vm, "private_mem_faults_2m"),
		    "the guest mapped no private memory 2 MiB at a time");
}

/* Convert the rest of the slot to private, then all of it to shared. */
static void *converter(void *arg)
{
	struct victim *v = arg;
	uint64_t off = TOUCHED * 4096, len = (NPAGES - TOUCHED) * 4096;

	/* The fd may be closed under us: that ends the conversions early. */
	if (!fallocate(v->r.memfd, 0, off, len))
		fallocate(v->r.memfd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE,
			  0, off + len);
	return NULL;
}

/* Run the guest until its private access finds no memory. */
static void *runner(void *arg)
{
	struct victim *v = arg;

	do {
		vcpu_run(v->vcpu);
	} while (v->vcpu->run->exit_reason == KVM_EXIT_IO);
	return NULL;
}

static void conversion_start(struct victim *v)
{
	struct timespec ts = { 0, 20 * 1000 * 1000 };

	pthread_create(&v->converter, NULL, converter, v);
	v->converting = true;
	/* Let it get going: the next action then lands in the middle. */
	nanosleep(&ts, NULL);
}

static void conversion_wait(struct victim *v)
{
	if (v->converting)
		pthread_join(v->converter, NULL);
	v->converting = false;
}

/*
 * Do @action to @v: 'R' set the vCPU running, 'C' close the memfd, 'S'
 * delete the slot, 'D' destroy the VM; in lower case, while a conversion
 * runs.
 */
static void act(struct victim *v, char action)
{
	bool during = action >= 'a';

	if (during)
		conversion_start(v);
	switch (action & ~0x20) {
	case 'R':
		pthread_create(&v->runner, NULL, runner, v);
		v->running = true;
		break;
	case 'C':
		close(v->r.memfd);
		v->r.memfd = -1;
		break;
	case 'S':
		vm_mem_region_delete(v->vm, SLOT);
		/* A private access now finds no private memory. */
		if (v->running)
			pthread_join(v->runner, NULL);
		else
			vcpu_run(v->vcpu);
		v->running = false;
		TEST_ASSERT(v->vcpu->run->exit_reason == KVM_EXIT_MEMORY_ERROR,
			    "private access without the slot: exit %s",
			    exit_reason_str(v->vcpu->run->exit_reason));
		break;
	case 'D':
		kvm_vm_free(v->vm);
		v->vm = NULL;
		break;
	}
	conversion_wait(v);
}

/* Finish the teardown that @order left undone. */
static void finish(struct victim *v)
{
	if (v->vm)
		kvm_vm_free(v->vm);
	if (v->r.memfd >= 0)
		close(v->r.memfd);
}

FIXTURE(teardown) {
	struct baseline base;
};

FIXTURE_VARIANT(teardown) {
	const char *order;
	bool huge;
};

/* Every order of C, S and D; S is implied by D. */
FIXTURE_VARIANT_ADD(teardown, close_delete_destroy) { .order = "CSD" };
FIXTURE_VARIANT_ADD(teardown, close_destroy) { .order = "CD" };
FIXTURE_VARIANT_ADD(teardown, delete_close_destroy) { .order = "SCD" };
FIXTURE_VARIANT_ADD(teardown, delete_destroy_close) { .order = "SDC" };
FIXTURE_VARIANT_ADD(teardown, destroy_close) { .order = "DC" };
/* The slot deleted while the vCPU runs. */
FIXTURE_VARIANT_ADD(teardown, delete_running_destroy) { .order = "RSD" };
FIXTURE_VARIANT_ADD(teardown, delete_running_close_destroy) { .order = "RSCD" };
/* The same, each action while a conversion runs. */
FIXTURE_VARIANT_ADD(teardown, close_converting_delete_destroy) { .order = "cSD" };
FIXTURE_VARIANT_ADD(teardown, delete_converting_close_destroy) { .order = "sCD" };
FIXTURE_VARIANT_ADD(teardown, delete_destroy_converting_close) { .order = "SdC" };
FIXTURE_VARIANT_ADD(teardown, destroy_converting_close) { .order = "dC" };
FIXTURE_VARIANT_ADD(teardown, destroy_close_converting) { .order = "Dc" };
/*
 * Killed in KVM_RUN with everything in place, or after one of the others;
 * 'k' is killed while a conversion runs too.
 */
FIXTURE_VARIANT_ADD(teardown, kill) { .order = "K" };
FIXTURE_VARIANT_ADD(teardown, close_kill) { .order = "CK" };
FIXTURE_VARIANT_ADD(teardown, delete_kill) { .order = "SK" };
FIXTURE_VARIANT_ADD(teardown, destroy_kill) { .order = "DK" };
FIXTURE_VARIANT_ADD(teardown, kill_converting) { .order = "k" };
/* Some of the same with huge folios and 2 MiB mappings. */
FIXTURE_VARIANT_ADD(teardown, huge_close_delete_destroy) { .order = "CSD", .huge = true };
FIXTURE_VARIANT_ADD(teardown, huge_delete_running_destroy) { .order = "RSD", .huge = true };
FIXTURE_VARIANT_ADD(teardown, huge_destroy_converting_close) { .order = "dC", .huge = true };
FIXTURE_VARIANT_ADD(teardown, huge_kill_converting) { .order = "k", .huge = true };

/*
 * A skip here still runs the test body under the 6.1 harness, so the
 * body checks _metadata->skip first.
 */
FIXTURE_SETUP(teardown)
{
	if (!kvm_check_cap(KVM_CAP_PRIVATE_MEM))
		SKIP(return, "no private memory on this host");
	if (consumers() < 0)
		SKIP(return, "no %s (needs debugfs)", CONSUMERS);
	self->base = settled();
}

FIXTURE_TEARDOWN(teardown)
{
}

/*
 * Run @order; 'k' or 'K' at the end kills the process doing it, while it
 * runs the vCPU, if it still has one, or just waits.
 */
static void run_order(const char *order, bool huge, int ready_fd)
{
	struct victim v;
	const char *a;

	victim_create(&v, huge);
	for (a = order; *a; a++) {
		if ((*a & ~0x20) == 'K') {
			if (*a == 'k')
				conversion_start(&v);
			TEST_ASSERT(write(ready_fd, "r", 1) == 1, "cannot report");
			for (;;) {
				if (v.vm)
					vcpu_run(v.vcpu);
				else
					pause();
			}
		}
		act(&v, *a);
	}
	finish(&v);
}

TEST_F_TIMEOUT(teardown, order, 120)
{
	bool killed = strchr(variant->order, 'K') || strchr(variant->order, 'k');
	int status, ready[2];
	pid_t pid;
	char c;

	if (_metadata->skip)
		return;
	ASSERT_EQ(pipe(ready), 0);
	pid = fork();
	ASSERT_GE(pid, 0);
	if (!pid) {
		run_order(variant->order, variant->huge, ready[1]);
		exit(0);
	}
	if (killed) {
		ASSERT_EQ(read(ready[0], &c, 1), 1);
		ASSERT_EQ(kill(pid, SIGKILL), 0);
	}
	ASSERT_EQ(waitpid(pid, &status, 0), pid);
	if (killed) {
		ASSERT_TRUE(WIFSIGNALED(status));
	} else {
		ASSERT_TRUE(WIFEXITED(status));
		ASSERT_EQ(WEXITSTATUS(status), 0);
	}
	ASSERT_TRUE(back_to(self->base))
		log_counters(_metadata, now(), self->base, 0);
}

/*
 * While the memfd is closed but the slot lives, the slot holds the file
 * and its pages, and its registration stays.
 */
TEST(closed_fd_keeps_pages_until_slot_goes)
{
	struct baseline base, held;
	struct victim v;

	if (consumers() < 0)
		SKIP(return, "no %s (needs debugfs)", CONSUMERS);
	base = settled();
	victim_create(&v, false);
	close(v.r.memfd);
	v.r.memfd = -1;
	held = base;
	held.consumers++;
	ASSERT_TRUE(near(held, now(), TOUCHED * 4))
		log_counters(_metadata, now(), held, TOUCHED * 4);
	vm_mem_region_delete(v.vm, SLOT);
	ASSERT_TRUE(back_to(base))
		log_counters(_metadata, now(), base, 0);
	kvm_vm_free(v.vm);
}

TEST_HARNESS_MAIN
