// SPDX-License-Identifier: GPL-2.0
/*
 * MFD_INACCESSIBLE: no userspace path reaches the pages of the file, the
 * size is set once, and fallocate() converts whole pages inside it.
 *
 * Every access path is tried on the descriptor memfd_create() returned, on
 * a reopen through /proc/self/fd/N and on a copy received over SCM_RIGHTS.
 */
#define _GNU_SOURCE
#define __EXPORTED_HEADERS__

#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/falloc.h>
#include <linux/memfd.h>
#include <liburing.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/sendfile.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <unistd.h>

#include "common.h"
#include "../kselftest_harness.h"

#define PAGE		4096
#define NR_PAGES	16
#define SIZE		(NR_PAGES * PAGE)

static int new_inaccessible(unsigned int extra_flags)
{
	return sys_memfd_create("inaccessible", MFD_INACCESSIBLE | extra_flags);
}

/* An ordinary memfd with one page of recognisable data. */
static int new_ordinary(struct __test_metadata *_metadata)
{
	char buf[PAGE];
	int fd;

	fd = sys_memfd_create("ordinary", 0);
	ASSERT_GE(fd, 0);
	memset(buf, 0x5a, sizeof(buf));
	ASSERT_EQ(pwrite(fd, buf, sizeof(buf), 0), sizeof(buf));
	return fd;
}

/* Pass @fd through a UNIX socket and return the received copy. */
static int scm_copy(struct __test_metadata *_metadata, int fd)
{
	union {
		char buf[CMSG_SPACE(sizeof(int))];
		struct cmsghdr align;
	} u;
	struct msghdr msg = { 0 };
	struct cmsghdr *cmsg;
	struct iovec iov;
	char byte = 0;
	int sv[2], copy;

	ASSERT_EQ(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
	iov.iov_base = &byte;
	iov.iov_len = 1;
	msg.msg_iov = &iov;
	msg.msg_iovlen = 1;
	msg.msg_control = u.buf;
	msg.msg_controllen = sizeof(u.buf);
	cmsg = CMSG_FIRSTHDR(&msg);
	cmsg->cmsg_level = SOL_SOCKET;
	cmsg->cmsg_type = SCM_RIGHTS;
	cmsg->cmsg_len = CMSG_LEN(sizeof(int));
	memcpy(CMSG_DATA(cmsg), &fd, sizeof(int));
	ASSERT_EQ(sendmsg(sv[0], &msg, 0), 1);

	memset(u.buf, 0, sizeof(u.buf));
	msg.msg_controllen = sizeof(u.buf);
	ASSERT_EQ(recvmsg(sv[1], &msg, 0), 1);
	cmsg = CMSG_FIRSTHDR(&msg);
	ASSERT_NE(cmsg, NULL);
	ASSERT_EQ(cmsg->cmsg_type, SCM_RIGHTS);
	memcpy(&copy, CMSG_DATA(cmsg), sizeof(int));
	close(sv[0]);
	close(sv[1]);
	return copy;
}

enum fd_origin { DIRECT, PROC_REOPEN, SCM_RIGHTS_COPY };

FIXTURE(access) {
	int memfd;	/* as memfd_create() returned it */
	int fd;		/* the descriptor under test */
	int other;	/* an ordinary memfd holding data */
	char buf[PAGE];
};

FIXTURE_VARIANT(access) {
	enum fd_origin origin;
};

FIXTURE_VARIANT_ADD(access, direct) {
	.origin = DIRECT,
};

FIXTURE_VARIANT_ADD(access, proc_reopen) {
	.origin = PROC_REOPEN,
};

FIXTURE_VARIANT_ADD(access, scm_rights) {
	.origin = SCM_RIGHTS_COPY,
};

FIXTURE_SETUP(access)
{
	char path[64];

	self->memfd = new_inaccessible(0);
	ASSERT_GE(self->memfd, 0);
	ASSERT_EQ(ftruncate(self->memfd, SIZE), 0);
	/* Allocated pages, so a refusal is not just a read of a hole. */
	ASSERT_EQ(fallocate(self->memfd, 0, 0, SIZE), 0);

	switch (variant->origin) {
	case DIRECT:
		self->fd = self->memfd;
		break;
	case PROC_REOPEN:
		snprintf(path, sizeof(path), "/proc/self/fd/%d", self->memfd);
		self->fd = open(path, O_RDWR);
		ASSERT_GE(self->fd, 0);
		break;
	case SCM_RIGHTS_COPY:
		self->fd = scm_copy(_metadata, self->memfd);
		ASSERT_GE(self->fd, 0);
		break;
	}
	self->other = new_ordinary(_metadata);
	memset(self->buf, 0xa5, sizeof(self->buf));
}

FIXTURE_TEARDOWN(access)
{
	if (self->fd != self->memfd)
		close(self->fd);
	close(self->memfd);
	close(self->other);
}

#define ASSERT_FAILS_WITH(expr, err) do {	\
	errno = 0;				\
	ASSERT_EQ((long)(expr), -1);		\
	ASSERT_EQ(errno, err);			\
} while (0)

TEST_F(access, read)
{
	ASSERT_FAILS_WITH(read(self->fd, self->buf, PAGE), EINVAL);
}

TEST_F(access, write)
{
	ASSERT_FAILS_WITH(write(self->fd, self->buf, PAGE), EINVAL);
}

TEST_F(access, pread)
{
	ASSERT_FAILS_WITH(pread(self->fd, self->buf, PAGE, 0), EINVAL);
}

TEST_F(access, pwrite)
{
	ASSERT_FAILS_WITH(pwrite(self->fd, self->buf, PAGE, 0), EINVAL);
}

TEST_F(access, readv)
{
	struct iovec iov = { self->buf, PAGE };

	ASSERT_FAILS_WITH(readv(self->fd, &iov, 1), EINVAL);
}

TEST_F(access, writev)
{
	struct iovec iov = { self->buf, PAGE };

	ASSERT_FAILS_WITH(writev(self->fd, &iov, 1), EINVAL);
}

TEST_F(access, preadv2)
{
	struct iovec iov = { self->buf, PAGE };

	ASSERT_FAILS_WITH(preadv2(self->fd, &iov, 1, 0, 0), EINVAL);
	ASSERT_FAILS_WITH(preadv2(self->fd, &iov, 1, -1, RWF_NOWAIT), EINVAL);
}

TEST_F(access, pwritev2)
{
	struct iovec iov = { self->buf, PAGE };

	ASSERT_FAILS_WITH(pwritev2(self->fd, &iov, 1, 0, 0), EINVAL);
}

TEST_F(access, mmap)
{
	static const int prots[] = {
		PROT_READ | PROT_WRITE, PROT_READ, PROT_WRITE, PROT_EXEC,
		PROT_NONE,
	};
	static const int types[] = { MAP_SHARED, MAP_PRIVATE };
	unsigned int p, t;

	for (p = 0; p < ARRAY_SIZE(prots); p++) {
		for (t = 0; t < ARRAY_SIZE(types); t++) {
			void *addr;

			errno = 0;
			addr = mmap(NULL, PAGE, prots[p], types[t], self->fd, 0);
			ASSERT_EQ(addr, MAP_FAILED) {
				TH_LOG("mmap(prot %#x, flags %#x) succeeded",
				       prots[p], types[t]);
			}
			ASSERT_EQ(errno, ENODEV);
		}
	}
}

TEST_F(access, splice_from)
{
	loff_t off = 0;
	int pipefd[2];

	ASSERT_EQ(pipe(pipefd), 0);
	ASSERT_FAILS_WITH(splice(self->fd, &off, pipefd[1], NULL, PAGE, 0),
			  EINVAL);
	close(pipefd[0]);
	close(pipefd[1]);
}

TEST_F(access, splice_to)
{
	loff_t off = 0;
	int pipefd[2];

	ASSERT_EQ(pipe(pipefd), 0);
	ASSERT_EQ(write(pipefd[1], self->buf, PAGE), PAGE);
	ASSERT_FAILS_WITH(splice(pipefd[0], NULL, self->fd, &off, PAGE, 0),
			  EINVAL);
	close(pipefd[0]);
	close(pipefd[1]);
}

TEST_F(access, sendfile_from)
{
	off_t off = 0;

	ASSERT_FAILS_WITH(sendfile(self->other, self->fd, &off, PAGE), EINVAL);
}

TEST_F(access, sendfile_to)
{
	off_t off = 0;

	ASSERT_FAILS_WITH(sendfile(self->fd, self->other, &off, PAGE), EINVAL);
}

/*
 * An inaccessible file lives on a filesystem of its own, so a copy to or
 * from another file is refused before it reaches the file (EXDEV), and a
 * copy inside it finds no way to read or write its pages (EINVAL).
 */
TEST_F(access, copy_file_range_from)
{
	loff_t in = 0, out = 0;

	ASSERT_FAILS_WITH(copy_file_range(self->fd, &in, self->other, &out,
					  PAGE, 0), EXDEV);
}

TEST_F(access, copy_file_range_to)
{
	loff_t in = 0, out = 0;

	ASSERT_FAILS_WITH(copy_file_range(self->other, &in, self->fd, &out,
					  PAGE, 0), EXDEV);
}

TEST_F(access, copy_file_range_within)
{
	loff_t in = 0, out = PAGE;

	ASSERT_FAILS_WITH(copy_file_range(self->fd, &in, self->memfd, &out,
					  PAGE, 0), EINVAL);
}

/* Submit one read or write and return the completion's result. */
static int uring_rw(struct __test_metadata *_metadata, int fd, void *buf,
		    bool write)
{
	struct io_uring_sqe *sqe;
	struct io_uring_cqe *cqe;
	struct io_uring ring;
	int res;

	ASSERT_EQ(io_uring_queue_init(4, &ring, 0), 0);
	sqe = io_uring_get_sqe(&ring);
	ASSERT_NE(sqe, NULL);
	if (write)
		io_uring_prep_write(sqe, fd, buf, PAGE, 0);
	else
		io_uring_prep_read(sqe, fd, buf, PAGE, 0);
	ASSERT_EQ(io_uring_submit(&ring), 1);
	ASSERT_EQ(io_uring_wait_cqe(&ring, &cqe), 0);
	res = cqe->res;
	io_uring_cqe_seen(&ring, cqe);
	io_uring_queue_exit(&ring);
	return res;
}

TEST_F(access, io_uring_read)
{
	ASSERT_EQ(uring_rw(_metadata, self->fd, self->buf, false), -EINVAL);
}

TEST_F(access, io_uring_write)
{
	ASSERT_EQ(uring_rw(_metadata, self->fd, self->buf, true), -EINVAL);
}

/* The refusals must not be because of the descriptor: allocation works. */
TEST_F(access, fallocate_works)
{
	ASSERT_EQ(fallocate(self->fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE,
			    0, PAGE), 0);
	ASSERT_EQ(fallocate(self->fd, 0, 0, PAGE), 0);
}

TEST(create_flags)
{
	int fd;

	ASSERT_FAILS_WITH(new_inaccessible(MFD_HUGETLB), EINVAL);
	ASSERT_FAILS_WITH(new_inaccessible(MFD_HUGETLB | MFD_HUGE_2MB), EINVAL);
	/* Unknown bits next to the new flags fail too. */
	ASSERT_FAILS_WITH(new_inaccessible(MFD_INACCESSIBLE_HUGE << 1), EINVAL);
	ASSERT_FAILS_WITH(new_inaccessible(0x0100), EINVAL);

	fd = new_inaccessible(MFD_CLOEXEC);
	ASSERT_GE(fd, 0);
	ASSERT_EQ(fcntl(fd, F_GETFD), FD_CLOEXEC);
	close(fd);
}

TEST(size_is_set_once)
{
	struct stat st;
	int fd;

	fd = new_inaccessible(0);
	ASSERT_GE(fd, 0);
	ASSERT_EQ(fstat(fd, &st), 0);
	ASSERT_EQ(st.st_size, 0);

	ASSERT_FAILS_WITH(ftruncate(fd, SIZE + 1), EINVAL);
	ASSERT_FAILS_WITH(ftruncate(fd, PAGE / 2), EINVAL);
	ASSERT_EQ(ftruncate(fd, SIZE), 0);
	/* Setting the same size again changes nothing and is fine. */
	ASSERT_EQ(ftruncate(fd, SIZE), 0);
	ASSERT_FAILS_WITH(ftruncate(fd, 2 * SIZE), EPERM);
	ASSERT_FAILS_WITH(ftruncate(fd, PAGE), EPERM);
	ASSERT_FAILS_WITH(ftruncate(fd, 0), EPERM);
	ASSERT_EQ(fstat(fd, &st), 0);
	ASSERT_EQ(st.st_size, SIZE);
	close(fd);
}

TEST(open_with_o_trunc_fails)
{
	char path[64];
	int fd;

	fd = new_inaccessible(0);
	ASSERT_GE(fd, 0);
	ASSERT_EQ(ftruncate(fd, SIZE), 0);
	snprintf(path, sizeof(path), "/proc/self/fd/%d", fd);
	ASSERT_FAILS_WITH(open(path, O_RDWR | O_TRUNC), EPERM);
	close(fd);
}

TEST(fallocate_rules)
{
	struct stat st;
	int fd;

	fd = new_inaccessible(0);
	ASSERT_GE(fd, 0);
	/* No size yet: nothing lies inside it. */
	ASSERT_FAILS_WITH(fallocate(fd, 0, 0, PAGE), EINVAL);
	ASSERT_EQ(ftruncate(fd, SIZE), 0);

	ASSERT_EQ(fallocate(fd, 0, 0, PAGE), 0);
	ASSERT_EQ(fallocate(fd, FALLOC_FL_KEEP_SIZE, PAGE, PAGE), 0);
	ASSERT_EQ(fstat(fd, &st), 0);
	ASSERT_EQ(st.st_blocks, 2 * PAGE / 512);
	ASSERT_EQ(st.st_size, SIZE);
	ASSERT_EQ(fallocate(fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE,
			    0, PAGE), 0);
	ASSERT_EQ(fstat(fd, &st), 0);
	ASSERT_EQ(st.st_blocks, PAGE / 512);

	/* Whole pages only. */
	ASSERT_FAILS_WITH(fallocate(fd, 0, 1, PAGE), EINVAL);
	ASSERT_FAILS_WITH(fallocate(fd, 0, 0, PAGE + 1), EINVAL);
	ASSERT_FAILS_WITH(fallocate(fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE,
				    PAGE / 2, PAGE), EINVAL);
	/* Inside the size only, in both modes. */
	ASSERT_FAILS_WITH(fallocate(fd, 0, SIZE, PAGE), EINVAL);
	ASSERT_FAILS_WITH(fallocate(fd, 0, SIZE - PAGE, 2 * PAGE), EINVAL);
	ASSERT_FAILS_WITH(fallocate(fd, FALLOC_FL_KEEP_SIZE, SIZE, PAGE), EINVAL);
	ASSERT_FAILS_WITH(fallocate(fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE,
				    SIZE, PAGE), EINVAL);
	/* Modes other than allocate and punch-with-keep-size. */
	ASSERT_FAILS_WITH(fallocate(fd, FALLOC_FL_PUNCH_HOLE, 0, PAGE),
			  EOPNOTSUPP);
	ASSERT_FAILS_WITH(fallocate(fd, FALLOC_FL_ZERO_RANGE, 0, PAGE),
			  EOPNOTSUPP);
	ASSERT_FAILS_WITH(fallocate(fd, FALLOC_FL_COLLAPSE_RANGE, 0, PAGE),
			  EOPNOTSUPP);
	ASSERT_FAILS_WITH(fallocate(fd, FALLOC_FL_INSERT_RANGE, 0, PAGE),
			  EOPNOTSUPP);

	ASSERT_EQ(fstat(fd, &st), 0);
	ASSERT_EQ(st.st_size, SIZE);
	ASSERT_EQ(st.st_blocks, PAGE / 512);
	close(fd);
}

TEST(seek_data_and_hole)
{
	int fd;

	fd = new_inaccessible(0);
	ASSERT_GE(fd, 0);
	ASSERT_EQ(ftruncate(fd, SIZE), 0);
	ASSERT_EQ(fallocate(fd, 0, 4 * PAGE, 2 * PAGE), 0);
	ASSERT_EQ(lseek(fd, 0, SEEK_DATA), 4 * PAGE);
	ASSERT_EQ(lseek(fd, 4 * PAGE, SEEK_HOLE), 6 * PAGE);
	close(fd);
}

/*
 * Dropping the page cache leaves the pages alone: they are dirty from
 * their allocation on, so they are never clean page-cache pages to drop.
 */
TEST(drop_caches_keeps_pages)
{
	struct stat st;
	int fd, dc;

	dc = open("/proc/sys/vm/drop_caches", O_WRONLY);
	if (dc < 0)
		SKIP(return, "cannot open /proc/sys/vm/drop_caches: %s",
		     strerror(errno));
	fd = new_inaccessible(0);
	ASSERT_GE(fd, 0);
	ASSERT_EQ(ftruncate(fd, SIZE), 0);
	ASSERT_EQ(fallocate(fd, 0, 0, SIZE), 0);
	ASSERT_EQ(write(dc, "3", 1), 1);
	close(dc);
	ASSERT_EQ(fstat(fd, &st), 0);
	ASSERT_EQ(st.st_blocks, SIZE / 512);
	ASSERT_EQ(lseek(fd, 0, SEEK_HOLE), SIZE);
	close(fd);
}

TEST(sealing_is_opt_in)
{
	int fd;

	fd = new_inaccessible(0);
	ASSERT_GE(fd, 0);
	ASSERT_FAILS_WITH(fcntl(fd, F_ADD_SEALS, F_SEAL_WRITE), EPERM);
	close(fd);
}

TEST(write_seal_freezes_allocation)
{
	int fd;

	fd = new_inaccessible(MFD_ALLOW_SEALING);
	ASSERT_GE(fd, 0);
	ASSERT_EQ(ftruncate(fd, SIZE), 0);
	ASSERT_EQ(fallocate(fd, 0, 0, PAGE), 0);
	ASSERT_EQ(fcntl(fd, F_ADD_SEALS, F_SEAL_WRITE), 0);
	ASSERT_FAILS_WITH(fallocate(fd, 0, PAGE, PAGE), EPERM);
	ASSERT_FAILS_WITH(fallocate(fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE,
				    0, PAGE), EPERM);
	close(fd);

	fd = new_inaccessible(MFD_ALLOW_SEALING);
	ASSERT_GE(fd, 0);
	ASSERT_EQ(ftruncate(fd, SIZE), 0);
	ASSERT_EQ(fcntl(fd, F_ADD_SEALS, F_SEAL_FUTURE_WRITE), 0);
	ASSERT_FAILS_WITH(fallocate(fd, 0, 0, PAGE), EPERM);
	close(fd);
}

TEST(grow_seal_blocks_the_size)
{
	int fd;

	fd = new_inaccessible(MFD_ALLOW_SEALING);
	ASSERT_GE(fd, 0);
	ASSERT_EQ(fcntl(fd, F_ADD_SEALS, F_SEAL_GROW), 0);
	ASSERT_FAILS_WITH(ftruncate(fd, SIZE), EPERM);
	close(fd);
}

#define BIG_PAGES	(16 * 1024)	/* 64 MiB */
#define SLACK_KB	2048		/* per-cpu counter drift */

/* The pages show up in both fields while allocated. */
static const char * const fields[] = { "Cached", "Unevictable" };
#define NR_FIELDS	ARRAY_SIZE(fields)

static void expect_meminfo(struct __test_metadata *_metadata,
			   const long *base, long delta_kb, const char *when)
{
	unsigned int i;

	for (i = 0; i < NR_FIELDS; i++) {
		long now = meminfo_kb(fields[i]);

		ASSERT_LE(labs(now - base[i] - delta_kb), SLACK_KB) {
			TH_LOG("%s: %ld kB %s, expected %ld + %ld kB",
			       fields[i], now, when, base[i], delta_kb);
		}
	}
}

TEST(memory_comes_back)
{
	long base[NR_FIELDS];
	unsigned int i;
	int fd;

	for (i = 0; i < NR_FIELDS; i++) {
		base[i] = meminfo_kb(fields[i]);
		ASSERT_GE(base[i], 0);
	}

	fd = new_inaccessible(0);
	ASSERT_GE(fd, 0);
	ASSERT_EQ(ftruncate(fd, (off_t)BIG_PAGES * PAGE), 0);
	ASSERT_EQ(fallocate(fd, 0, 0, (off_t)BIG_PAGES * PAGE), 0);
	expect_meminfo(_metadata, base, BIG_PAGES * 4, "after fallocate");

	/* After a punch of everything... */
	ASSERT_EQ(fallocate(fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE,
			    0, (off_t)BIG_PAGES * PAGE), 0);
	expect_meminfo(_metadata, base, 0, "after punch");

	/* ...and after the last close of an allocated file. */
	ASSERT_EQ(fallocate(fd, 0, 0, (off_t)BIG_PAGES * PAGE), 0);
	close(fd);
	expect_meminfo(_metadata, base, 0, "after close");
}

#define MEMLOCK_LIMIT	(1024 * 1024)
#define NOBODY		65534

/* Drop to an unprivileged user, which also drops CAP_IPC_LOCK. */
static void become_nobody(struct __test_metadata *_metadata,
			  unsigned long memlock)
{
	struct rlimit lim = { memlock, memlock };

	ASSERT_EQ(setrlimit(RLIMIT_MEMLOCK, &lim), 0);
	ASSERT_EQ(setgid(NOBODY), 0);
	ASSERT_EQ(setuid(NOBODY), 0);
}

static int sized_inaccessible(struct __test_metadata *_metadata, off_t size)
{
	int fd = new_inaccessible(0);

	ASSERT_GE(fd, 0);
	ASSERT_EQ(ftruncate(fd, size), 0);
	return fd;
}

/*
 * Allocation is charged to RLIMIT_MEMLOCK, per user, and the charge comes
 * back on punch and on close.  Runs as an unprivileged user, since
 * CAP_IPC_LOCK lifts the limit.
 */
TEST(memlock_is_charged)
{
	int fd, fd2;

	if (geteuid() != 0)
		SKIP(return, "must start as root to drop to uid %d", NOBODY);
	become_nobody(_metadata, MEMLOCK_LIMIT);

	fd = sized_inaccessible(_metadata, 4 * MEMLOCK_LIMIT);
	ASSERT_EQ(fallocate(fd, 0, 0, MEMLOCK_LIMIT), 0);
	ASSERT_FAILS_WITH(fallocate(fd, 0, MEMLOCK_LIMIT, PAGE), ENOMEM);
	/* Pages already there are not charged again. */
	ASSERT_EQ(fallocate(fd, 0, 0, MEMLOCK_LIMIT), 0);

	/* A punch gives the charge back... */
	ASSERT_EQ(fallocate(fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE,
			    0, 16 * PAGE), 0);
	ASSERT_EQ(fallocate(fd, 0, MEMLOCK_LIMIT, 16 * PAGE), 0);
	ASSERT_FAILS_WITH(fallocate(fd, 0, 0, PAGE), ENOMEM);

	/* ...the limit is per user, not per file... */
	fd2 = sized_inaccessible(_metadata, MEMLOCK_LIMIT);
	ASSERT_FAILS_WITH(fallocate(fd2, 0, 0, PAGE), ENOMEM);

	/* ...and the last close gives back all of the file's charge. */
	close(fd);
	ASSERT_EQ(fallocate(fd2, 0, 0, MEMLOCK_LIMIT), 0);
	close(fd2);
}

/* A failed allocation leaves nothing allocated and nothing charged. */
TEST(memlock_failure_is_clean)
{
	struct stat st;
	int fd;

	if (geteuid() != 0)
		SKIP(return, "must start as root to drop to uid %d", NOBODY);
	become_nobody(_metadata, MEMLOCK_LIMIT);

	fd = sized_inaccessible(_metadata, 4 * MEMLOCK_LIMIT);
	ASSERT_FAILS_WITH(fallocate(fd, 0, 0, 2 * MEMLOCK_LIMIT), ENOMEM);
	ASSERT_EQ(fstat(fd, &st), 0);
	ASSERT_EQ(st.st_blocks, 0);
	ASSERT_EQ(fallocate(fd, 0, 0, MEMLOCK_LIMIT), 0);
	close(fd);
}

/* CAP_IPC_LOCK lifts the limit, as it does for SHM_LOCK. */
TEST(cap_ipc_lock_lifts_the_limit)
{
	struct rlimit lim = { PAGE, PAGE };
	int fd;

	if (geteuid() != 0)
		SKIP(return, "needs CAP_IPC_LOCK (run as root)");
	ASSERT_EQ(setrlimit(RLIMIT_MEMLOCK, &lim), 0);
	fd = sized_inaccessible(_metadata, MEMLOCK_LIMIT);
	ASSERT_EQ(fallocate(fd, 0, 0, MEMLOCK_LIMIT), 0);
	close(fd);
}

/*
 * MFD_INACCESSIBLE_HUGE: whole aligned 2 MiB allocations get one huge
 * folio, everything else 4 KiB folios, and which pages the file holds
 * stays exact to the page.  The huge folios count in FileHugePages.
 */
#define HUGE		(2UL << 20)
#define HUGE_KB		(HUGE >> 10)
#define HUGE_FILE	(8 * HUGE)
#define PUNCH		(FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE)
#define SHMEM_ENABLED	"/sys/kernel/mm/transparent_hugepage/shmem_enabled"
#define FAIL_SPLIT	"/sys/kernel/debug/memfile_notifier/fail_inaccessible_split/"

/* The selected value of shmem_enabled, "[never]" read as "never". */
static int read_shmem_enabled(char *buf, size_t size)
{
	char line[128], *start, *end;
	FILE *f = fopen(SHMEM_ENABLED, "r");

	if (!f)
		return -1;
	start = fgets(line, sizeof(line), f);
	fclose(f);
	if (!start)
		return -1;
	start = strchr(line, '[');
	end = start ? strchr(start, ']') : NULL;
	if (!end || end - start > (long)size)
		return -1;
	*end = '\0';
	snprintf(buf, size, "%s", start + 1);
	return 0;
}

static long st_blocks_of(struct __test_metadata *_metadata, int fd)
{
	struct stat st;

	ASSERT_EQ(fstat(fd, &st), 0);
	return st.st_blocks;
}

FIXTURE(huge) {
	int fd;
	long file_huge_kb;
	long shmem_huge_kb;
	char shmem_enabled[16];
};

FIXTURE_SETUP(huge)
{
	/* Huge folios are an opportunity: give the test free 2 MiB blocks. */
	write_str("/proc/sys/vm/compact_memory", "1");
	self->file_huge_kb = meminfo_kb("FileHugePages");
	self->shmem_huge_kb = meminfo_kb("ShmemHugePages");
	ASSERT_GE(self->file_huge_kb, 0);
	ASSERT_GE(self->shmem_huge_kb, 0);
	ASSERT_EQ(read_shmem_enabled(self->shmem_enabled,
				     sizeof(self->shmem_enabled)), 0);
	self->fd = new_inaccessible(MFD_INACCESSIBLE_HUGE);
	ASSERT_GE(self->fd, 0);
	ASSERT_EQ(ftruncate(self->fd, HUGE_FILE), 0);
}

FIXTURE_TEARDOWN(huge)
{
	close(self->fd);
	write_str(SHMEM_ENABLED, self->shmem_enabled);
	write_str(FAIL_SPLIT "probability", "0");
	/* Every huge folio goes with the file. */
	EXPECT_EQ(meminfo_kb("FileHugePages"), self->file_huge_kb);
}

/* FileHugePages rose by @nr huge pages, and ShmemHugePages did not move. */
static void expect_huge(struct __test_metadata *_metadata,
			FIXTURE_DATA(huge) * self, long nr, const char *when)
{
	long now = meminfo_kb("FileHugePages");

	ASSERT_EQ(now, self->file_huge_kb + nr * HUGE_KB) {
		TH_LOG("FileHugePages: %ld kB %s, expected %ld + %ld kB",
		       now, when, self->file_huge_kb, nr * HUGE_KB);
	}
	ASSERT_EQ(meminfo_kb("ShmemHugePages"), self->shmem_huge_kb);
}

TEST(huge_flag_rules)
{
	int fd;

	/* Only for inaccessible files, and never with hugetlbfs. */
	ASSERT_FAILS_WITH(sys_memfd_create("huge", MFD_INACCESSIBLE_HUGE),
			  EINVAL);
	ASSERT_FAILS_WITH(sys_memfd_create("huge", MFD_INACCESSIBLE_HUGE |
					   MFD_HUGETLB), EINVAL);
	ASSERT_FAILS_WITH(new_inaccessible(MFD_INACCESSIBLE_HUGE | MFD_HUGETLB),
			  EINVAL);

	fd = new_inaccessible(MFD_INACCESSIBLE_HUGE | MFD_ALLOW_SEALING);
	ASSERT_GE(fd, 0);
	close(fd);
}

/* One page of a flagged file is one page, not 512. */
TEST_F(huge, small_fallocate_is_small)
{
	ASSERT_EQ(fallocate(self->fd, 0, 0, PAGE), 0);
	ASSERT_EQ(st_blocks_of(_metadata, self->fd), PAGE / 512);
	ASSERT_EQ(lseek(self->fd, 0, SEEK_HOLE), PAGE);
	expect_huge(_metadata, self, 0, "after a 4 KiB fallocate");
}

TEST_F(huge, aligned_2m_is_huge)
{
	ASSERT_EQ(fallocate(self->fd, 0, HUGE, HUGE), 0);
	ASSERT_EQ(st_blocks_of(_metadata, self->fd), HUGE / 512);
	ASSERT_EQ(lseek(self->fd, 0, SEEK_DATA), HUGE);
	ASSERT_EQ(lseek(self->fd, HUGE, SEEK_HOLE), 2 * HUGE);
	expect_huge(_metadata, self, 1, "after an aligned 2 MiB fallocate");
}

/* Only the aligned 2 MiB blocks a range covers whole become huge. */
TEST_F(huge, only_whole_blocks_are_huge)
{
	ASSERT_EQ(fallocate(self->fd, 0, PAGE, 3 * HUGE), 0);
	ASSERT_EQ(st_blocks_of(_metadata, self->fd), 3 * HUGE / 512);
	ASSERT_EQ(lseek(self->fd, 0, SEEK_DATA), PAGE);
	ASSERT_EQ(lseek(self->fd, PAGE, SEEK_HOLE), 3 * HUGE + PAGE);
	expect_huge(_metadata, self, 2, "after an unaligned 6 MiB fallocate");
}

/* A block that already holds a page is no hole: it stays small. */
TEST_F(huge, partly_held_block_stays_small)
{
	ASSERT_EQ(fallocate(self->fd, 0, HUGE / 2, PAGE), 0);
	ASSERT_EQ(fallocate(self->fd, 0, 0, HUGE), 0);
	ASSERT_EQ(st_blocks_of(_metadata, self->fd), HUGE / 512);
	expect_huge(_metadata, self, 0, "after filling a partly held block");
}

/* A punch inside a huge page splits it and frees just the punched page. */
TEST_F(huge, punch_splits)
{
	ASSERT_EQ(fallocate(self->fd, 0, 0, HUGE), 0);
	expect_huge(_metadata, self, 1, "after fallocate");
	ASSERT_EQ(fallocate(self->fd, PUNCH, HUGE / 2, PAGE), 0);
	ASSERT_EQ(st_blocks_of(_metadata, self->fd), (HUGE - PAGE) / 512);
	ASSERT_EQ(lseek(self->fd, 0, SEEK_HOLE), HUGE / 2);
	ASSERT_EQ(lseek(self->fd, HUGE / 2, SEEK_DATA), HUGE / 2 + PAGE);
	expect_huge(_metadata, self, 0, "after a 4 KiB punch inside");

	/* The page comes back as a 4 KiB page; the block stays small. */
	ASSERT_EQ(fallocate(self->fd, 0, 0, HUGE), 0);
	ASSERT_EQ(st_blocks_of(_metadata, self->fd), HUGE / 512);
	expect_huge(_metadata, self, 0, "after filling the hole again");
}

/*
 * A punch whose ends cut into two huge pages splits both, frees the huge
 * page between them whole, and leaves the one after them alone.
 */
TEST_F(huge, punch_across_blocks_splits_both_ends)
{
	ASSERT_EQ(fallocate(self->fd, 0, 0, 4 * HUGE), 0);
	expect_huge(_metadata, self, 4, "after fallocate");
	ASSERT_EQ(fallocate(self->fd, PUNCH, HUGE - PAGE, HUGE + 2 * PAGE), 0);
	ASSERT_EQ(st_blocks_of(_metadata, self->fd),
		  (3 * HUGE - 2 * PAGE) / 512);
	ASSERT_EQ(lseek(self->fd, 0, SEEK_HOLE), HUGE - PAGE);
	ASSERT_EQ(lseek(self->fd, HUGE - PAGE, SEEK_DATA), 2 * HUGE + PAGE);
	expect_huge(_metadata, self, 1, "after a punch across three blocks");
}

/* Punching a whole block frees it whole, and it can be huge again. */
TEST_F(huge, whole_block_comes_back_huge)
{
	ASSERT_EQ(fallocate(self->fd, 0, 0, HUGE), 0);
	ASSERT_EQ(fallocate(self->fd, PUNCH, 0, PAGE), 0);
	expect_huge(_metadata, self, 0, "after a split");
	ASSERT_EQ(fallocate(self->fd, PUNCH, 0, HUGE), 0);
	ASSERT_EQ(st_blocks_of(_metadata, self->fd), 0);
	ASSERT_EQ(fallocate(self->fd, 0, 0, HUGE), 0);
	expect_huge(_metadata, self, 1, "after a whole punch and fallocate");
	ASSERT_EQ(fallocate(self->fd, PUNCH, 0, HUGE), 0);
	expect_huge(_metadata, self, 0, "after punching a whole huge page");
	ASSERT_EQ(st_blocks_of(_metadata, self->fd), 0);
}

/*
 * If the split fails, the punch fails and frees nothing.  Stock 6.1
 * truncation would zero the range, keep the huge page, and succeed.
 */
TEST_F(huge, failed_split_changes_nothing)
{
	if (access(FAIL_SPLIT "probability", W_OK))
		SKIP(return, "needs CONFIG_MEMFILE_NOTIFIER_FAULT_INJECTION");
	ASSERT_EQ(fallocate(self->fd, 0, 0, HUGE), 0);
	ASSERT_EQ(write_str(FAIL_SPLIT "verbose", "0"), 0);
	ASSERT_EQ(write_str(FAIL_SPLIT "times", "1"), 0);
	ASSERT_EQ(write_str(FAIL_SPLIT "probability", "100"), 0);
	ASSERT_FAILS_WITH(fallocate(self->fd, PUNCH, PAGE, PAGE), EBUSY);
	ASSERT_EQ(st_blocks_of(_metadata, self->fd), HUGE / 512);
	ASSERT_EQ(lseek(self->fd, 0, SEEK_HOLE), HUGE);
	expect_huge(_metadata, self, 1, "after a failed split");

	/* The injection is spent: the same punch now works. */
	ASSERT_EQ(fallocate(self->fd, PUNCH, PAGE, PAGE), 0);
	ASSERT_EQ(st_blocks_of(_metadata, self->fd), (HUGE - PAGE) / 512);
	expect_huge(_metadata, self, 0, "after the punch");
}

/* The charge is the pages held, at 4 KiB, huge pages or not. */
TEST_F(huge, memlock_counts_4k_pages)
{
	int fd;

	if (geteuid() != 0)
		SKIP(return, "must start as root to drop to uid %d", NOBODY);
	become_nobody(_metadata, HUGE);
	/* The charge goes to the file's creator, so nobody creates it. */
	fd = new_inaccessible(MFD_INACCESSIBLE_HUGE);
	ASSERT_GE(fd, 0);
	ASSERT_EQ(ftruncate(fd, HUGE_FILE), 0);

	ASSERT_EQ(fallocate(fd, 0, 0, HUGE), 0);
	expect_huge(_metadata, self, 1, "after fallocate");
	ASSERT_FAILS_WITH(fallocate(fd, 0, HUGE, PAGE), ENOMEM);
	/* One page punched out of the huge page frees one page of charge. */
	ASSERT_EQ(fallocate(fd, PUNCH, 0, PAGE), 0);
	ASSERT_EQ(fallocate(fd, 0, HUGE, PAGE), 0);
	ASSERT_FAILS_WITH(fallocate(fd, 0, 0, PAGE), ENOMEM);
	close(fd);
}

/* shmem_enabled's "deny" takes huge pages away from flagged files too. */
TEST_F(huge, shmem_deny_wins)
{
	ASSERT_EQ(write_str(SHMEM_ENABLED, "deny"), 0);
	ASSERT_EQ(fallocate(self->fd, 0, 0, HUGE), 0);
	ASSERT_EQ(st_blocks_of(_metadata, self->fd), HUGE / 512);
	expect_huge(_metadata, self, 0, "under deny");
}

/* No shmem_enabled setting gives a file without the flag huge pages. */
TEST_F(huge, unflagged_files_stay_small)
{
	static const char * const settings[] = {
		"always", "within_size", "advise", "force",
	};
	unsigned int i;
	int fd;

	for (i = 0; i < ARRAY_SIZE(settings); i++) {
		ASSERT_EQ(write_str(SHMEM_ENABLED, settings[i]), 0);
		fd = sized_inaccessible(_metadata, HUGE_FILE);
		ASSERT_EQ(fallocate(fd, 0, 0, HUGE_FILE), 0);
		expect_huge(_metadata, self, 0, settings[i]);
		close(fd);
	}
}

/*
 * Memory offlining: a memory block that holds pages of an inaccessible
 * file cannot go offline, since those pages never migrate, and must say
 * so at once with EBUSY, as for any unmovable page, instead of retrying
 * the migration until a signal arrives.  Unmovable pageblocks fill up, so
 * with a good part of memory in such pages, some blocks hold no other
 * unmovable page.  Every online block is tried, and put back online if it
 * went offline.
 */
#define MEMORY_DIR	"/sys/devices/system/memory"
#define OFFLINE_SIZE	(512UL << 20)
#define OFFLINE_LIMIT	10	/* seconds that one block may take */

static void on_alarm(int sig)
{
}

/* Write @state to block @name: 0, or the negative errno. */
static int block_state(const char *name, const char *state)
{
	char path[128];
	ssize_t r;
	int fd;

	snprintf(path, sizeof(path), MEMORY_DIR "/%s/state", name);
	fd = open(path, O_WRONLY);
	if (fd < 0)
		return -errno;
	r = write(fd, state, strlen(state)) < 0 ? -errno : 0;
	close(fd);
	return r;
}

static bool block_online(const char *name)
{
	char path[128], buf[16] = "";
	FILE *f;

	snprintf(path, sizeof(path), MEMORY_DIR "/%s/state", name);
	f = fopen(path, "r");
	if (!f)
		return false;
	if (!fgets(buf, sizeof(buf), f))
		buf[0] = '\0';
	fclose(f);
	return !strcmp(buf, "online\n");
}

/* A fixture only for TEST_F_TIMEOUT(): offlining blocks takes time. */
FIXTURE(offline) {
};

FIXTURE_SETUP(offline)
{
}

FIXTURE_TEARDOWN(offline)
{
}

TEST_F_TIMEOUT(offline, fails_fast, 600)
{
	struct sigaction sa = { .sa_handler = on_alarm };
	int fd, r, tried = 0, offlined = 0, busy = 0;
	char removable[4] = "";
	struct dirent *e;
	FILE *f;
	DIR *dir;

	f = fopen(MEMORY_DIR "/memory0/removable", "r");
	if (!f || !fgets(removable, sizeof(removable), f) || removable[0] != '1')
		SKIP(return, "the kernel cannot offline memory (MEMORY_HOTREMOVE)");
	fclose(f);
	if (geteuid() != 0)
		SKIP(return, "offlining memory needs root");

	fd = sized_inaccessible(_metadata, OFFLINE_SIZE);
	ASSERT_EQ(fallocate(fd, 0, 0, OFFLINE_SIZE), 0);
	/* No SA_RESTART: the alarm interrupts an offline that retries. */
	ASSERT_EQ(sigaction(SIGALRM, &sa, NULL), 0);
	dir = opendir(MEMORY_DIR);
	ASSERT_NE(dir, NULL);
	while ((e = readdir(dir))) {
		if (strncmp(e->d_name, "memory", 6) || !isdigit(e->d_name[6]) ||
		    !block_online(e->d_name))
			continue;
		tried++;
		alarm(OFFLINE_LIMIT);
		r = block_state(e->d_name, "offline");
		alarm(0);
		if (r == -EINTR)
			TH_LOG("%s: still offlining after %d s", e->d_name,
			       OFFLINE_LIMIT);
		ASSERT_NE(r, -EINTR);
		if (!r) {
			offlined++;
			ASSERT_EQ(block_state(e->d_name, "online"), 0);
		} else {
			/* EINVAL: a block that spans zones. */
			ASSERT_TRUE(r == -EBUSY || r == -EINVAL);
			busy += r == -EBUSY;
		}
	}
	closedir(dir);
	TH_LOG("%d blocks tried: %d went offline and back, %d busy", tried,
	       offlined, busy);
	ASSERT_GT(busy, 0);
	close(fd);
}

TEST_HARNESS_MAIN
