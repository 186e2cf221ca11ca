// SPDX-License-Identifier: GPL-2.0
/*
 * privmem_qemu_test: the patched QEMU (-accel kvm, machine pc) with RAM
 * that has private memory, driven from the host side.
 *
 * Each test starts QEMU with the privmem test guest (qemu/tests/guest) or
 * with a stock Linux, and checks what QEMU refuses to start with, what it
 * lets out of private memory (its own memory, its files, HMP, the
 * gdbstub), what it holds, and what a private access to MMIO and a reset
 * do.  It runs as root inside the test VM.  The files it needs, each
 * overridable from the environment:
 *
 *	PRIVMEM_QEMU		/usr/libexec/privmem/qemu-system-x86_64
 *	PRIVMEM_QEMU_FW		/usr/share/privmem-qemu (QEMU's -L)
 *	PRIVMEM_GUEST		/tests/qemu/privmem-guest.elf
 *	PRIVMEM_STOCK_KERNEL	/tests/qemu/bzImage
 *	PRIVMEM_STOCK_INITRD	/tests/qemu/stock-initrd.cpio.gz
 *
 * A missing one fails the tests that need it.  Each test works in a fresh
 * /tmp/privmem-qemu.XXXXXX: QEMU's monitor and gdbstub sockets, its stderr
 * (qemu.err) and the files that HMP commands write.  QEMU's stdin and
 * stdout are the guest's COM1; every line the guest prints is echoed as a
 * "guest:" diagnostic.
 */
#define _GNU_SOURCE
#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/un.h>
#include <sys/wait.h>

/* The 6.1 harness's SIGALRM handler has an unused parameter. */
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wunused-parameter"
#include "kselftest_harness.h"
#pragma GCC diagnostic pop

/* In seconds.  QEMU runs nested under emulation: be generous. */
#define BOOT_TIMEOUT		120
#define STOCK_BOOT_TIMEOUT	300
#define EXIT_TIMEOUT		60
#define CONNECT_TIMEOUT		60
#define HMP_TIMEOUT		60
#define STOP_TIMEOUT		60

#define GUEST_PAGE		4096ull
#define GUEST_RAM		"64M"
#define GUEST_RAM_BYTES		(64ull << 20)
#define STOCK_RAM		"256M"

/* The test guest's layout (qemu/tests/guest/main.c). */
#define SECRET_PA		0x803000ull	/* T(3): the private secret */
#define CONTROL_PA		0x805000ull	/* T(5): the shared control */
#define PRIV_VA			0x40000000ull	/* the private view of PA 0 */

#define SECRET_PREFIX		"privmem-secret-"
#define CONTROL_PREFIX		"privmem-shared-"
#define TAG_LEN			16

/* readlink() of QEMU's fds: the shared RAM and its private memory. */
#define SHARED_MEMFD		"/memfd:memory-backend-memfd (deleted)"
#define PRIVATE_MEMFD		"/memfd:ram0 (deleted)"

#define SCAN_CHUNK		(1ul << 20)
#define LINE_LEN		1024
#define MAX_ARGS		64
#define HMP_REPLY		65536

/* A diagnostic on stdout, flushed: the harness's child may abort(). */
#define diag(fmt, ...) do { \
	ksft_print_msg(fmt, ##__VA_ARGS__); \
	fflush(stdout); \
} while (0)

struct qemu {
	char dir[64];		/* the test's work directory, or "" */
	char path[PATH_MAX];	/* scratch for paths in dir */
	pid_t pid;		/* 0: not started or reaped */
	int status;		/* wait() status, once reaped */
	bool started;
	int in_fd;		/* QEMU's stdin: COM1 input */
	int out_fd;		/* QEMU's stdout: COM1 output; -1 at EOF */
	int mon_fd;
	int gdb_fd;

	/* COM1 output, without escape sequences, one string per line */
	char **lines;
	size_t nr_lines, max_lines;
	char line[LINE_LEN];
	size_t line_len;
	int esc;		/* 1: after ESC, 2: in a CSI sequence */

	/* bytes received from the gdbstub and not consumed yet */
	char gdb_buf[4096];
	size_t gdb_len, gdb_pos;
};

struct qemu_opts {
	const char *kernel;	/* NULL: the test guest */
	const char *initrd;
	const char *append;	/* the guest's mode, or a command line */
	const char *ram;	/* -m and ram0's size; NULL: GUEST_RAM */
	const char *m_arg;	/* -m's whole value instead of ram */
	const char *machine_extra;	/* appended to -machine's value */
	const char *pm_extra;	/* appended to kvm-private-mem's value */
	bool no_private_vm;	/* without kvm-private-mem */
	bool plain_vm;		/* a stock VM: no kvm-private-mem, shared RAM */
	bool gdb;		/* -gdb on DIR/gdb.sock */
	bool paused;		/* -S */
	const char *const *extra;	/* more arguments, NULL-terminated */
};

struct cmd {
	char *argv[MAX_ARGS + 1];
	int argc;
	bool overflow;
	char pool[8192];
	size_t used;
};

/* ---- small helpers ---------------------------------------------------- */

static double now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec + ts.tv_nsec / 1e9;
}

/* Milliseconds until @deadline, at most @cap, at least 0. */
static int ms_left(double deadline, int cap)
{
	double ms = (deadline - now()) * 1000;

	if (ms <= 0)
		return 0;
	return ms < cap ? (int)ms + 1 : cap;
}

static const char *env_or(const char *name, const char *def)
{
	const char *v = getenv(name);

	return v && *v ? v : def;
}

static int send_all(int fd, const void *buf, size_t len)
{
	const char *p = buf;

	while (len) {
		ssize_t n = send(fd, p, len, MSG_NOSIGNAL);

		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			return -1;
		p += n;
		len -= n;
	}
	return 0;
}

/* The whole of a file, NUL-terminated (NULs inside become '.'), or NULL. */
static char *slurp(const char *path, size_t *lenp)
{
	size_t len = 0, size = 4096, i;
	char *buf = malloc(size), *nbuf;
	int fd;

	if (!buf)
		return NULL;
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0) {
		free(buf);
		return NULL;
	}
	for (;;) {
		ssize_t n;

		if (len + 1 >= size) {
			nbuf = realloc(buf, size * 2);
			if (!nbuf)
				break;
			buf = nbuf;
			size *= 2;
		}
		n = read(fd, buf + len, size - len - 1);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			break;
		len += n;
	}
	close(fd);
	if (lenp)
		*lenp = len;
	for (i = 0; i < len; i++)
		if (!buf[i])
			buf[i] = '.';
	buf[len] = '\0';
	return buf;
}

/*
 * Removes escape sequences (ESC [ ... final, or ESC and one byte), carriage
 * returns and other control characters but tabs and newlines, in place.
 */
static void strip_controls(char *s)
{
	char *d = s;

	while (*s) {
		unsigned char c = *s++;

		if (c == 0x1b) {
			if (*s == '[') {
				s++;
				while (*s && !(*s >= 0x40 && *s <= 0x7e))
					s++;
			}
			if (*s)
				s++;
			continue;
		}
		if ((c < 0x20 && c != '\n' && c != '\t') || c == 0x7f)
			continue;
		*d++ = c;
	}
	*d = '\0';
}

/* Prints each line of @text as a diagnostic, at most @max lines. */
static void diag_lines(const char *prefix, const char *text, int max)
{
	const char *p = text;
	int n = 0;

	while (*p) {
		const char *e = strchrnul(p, '\n');

		if (n++ == max) {
			diag("%s[...]\n", prefix);
			return;
		}
		diag("%s%.*s\n", prefix, (int)(e - p), p);
		p = *e ? e + 1 : e;
	}
}

static const char *qemu_file(struct qemu *q, const char *name)
{
	snprintf(q->path, sizeof(q->path), "%s/%s", q->dir, name);
	return q->path;
}

static void require_file(struct __test_metadata *_metadata, const char *path,
			 const char *what, const char *env, bool dir)
{
	const char *why = NULL;
	struct stat st;

	if (stat(path, &st))
		why = strerror(errno);
	else if (dir && !S_ISDIR(st.st_mode))
		why = "not a directory";
	else if (!dir && !S_ISREG(st.st_mode))
		why = "not a regular file";
	ASSERT_EQ(NULL, why) {
		TH_LOG("%s %s is missing (%s); %s overrides the path",
		       what, path, why, env);
	}
}

/* ---- the command line ------------------------------------------------- */

static void __attribute__((format(printf, 2, 3)))
cmd_add(struct cmd *c, const char *fmt, ...)
{
	size_t room = sizeof(c->pool) - c->used;
	va_list ap;
	int n;

	if (c->argc >= MAX_ARGS) {
		c->overflow = true;
		return;
	}
	va_start(ap, fmt);
	n = vsnprintf(c->pool + c->used, room, fmt, ap);
	va_end(ap);
	if (n < 0 || (size_t)n >= room) {
		c->overflow = true;
		return;
	}
	c->argv[c->argc++] = c->pool + c->used;
	c->argv[c->argc] = NULL;
	c->used += n + 1;
}

/*
 * The base command line of the tests, with @o's changes.  Fails the test
 * if a file it names is missing.
 */
static void base_cmd(struct __test_metadata *_metadata, struct qemu *q,
		     struct cmd *c, const struct qemu_opts *o)
{
	const char *qemu = env_or("PRIVMEM_QEMU",
				  "/usr/libexec/privmem/qemu-system-x86_64");
	const char *fw = env_or("PRIVMEM_QEMU_FW", "/usr/share/privmem-qemu");
	const char *kernel = o->kernel;
	const char *ram = o->ram ? o->ram : GUEST_RAM;
	const char *const *e;

	require_file(_metadata, qemu, "the patched QEMU", "PRIVMEM_QEMU",
		     false);
	ASSERT_EQ(0, access(qemu, X_OK)) {
		TH_LOG("the patched QEMU %s is not executable", qemu);
	}
	require_file(_metadata, fw, "QEMU's firmware directory",
		     "PRIVMEM_QEMU_FW", true);
	if (!kernel) {
		kernel = env_or("PRIVMEM_GUEST", "/tests/qemu/privmem-guest.elf");
		require_file(_metadata, kernel, "the test guest",
			     "PRIVMEM_GUEST", false);
	}

	memset(c, 0, sizeof(*c));
	cmd_add(c, "%s", qemu);
	cmd_add(c, "-L");
	cmd_add(c, "%s", fw);
	cmd_add(c, "-accel");
	cmd_add(c, "kvm");
	cmd_add(c, "-nodefaults");
	cmd_add(c, "-display");
	cmd_add(c, "none");
	cmd_add(c, "-vga");
	cmd_add(c, "none");
	cmd_add(c, "-machine");
	cmd_add(c, "pc,memory-backend=ram0%s%s",
		o->no_private_vm || o->plain_vm ? "" :
		",confidential-guest-support=pm",
		o->machine_extra ? o->machine_extra : "");
	if (!o->no_private_vm && !o->plain_vm) {
		cmd_add(c, "-object");
		cmd_add(c, "kvm-private-mem,id=pm%s",
			o->pm_extra ? o->pm_extra : "");
	}
	cmd_add(c, "-object");
	cmd_add(c, "memory-backend-memfd,id=ram0,size=%s,share=on%s",
		ram, o->plain_vm ? "" : ",private-memory=on");
	cmd_add(c, "-m");
	cmd_add(c, "%s", o->m_arg ? o->m_arg : ram);
	cmd_add(c, "-serial");
	cmd_add(c, "stdio");
	cmd_add(c, "-monitor");
	cmd_add(c, "unix:%s/mon.sock,server=on,wait=off", q->dir);
	if (o->gdb) {
		cmd_add(c, "-gdb");
		cmd_add(c, "unix:%s/gdb.sock,server=on,wait=off", q->dir);
	}
	cmd_add(c, "-device");
	cmd_add(c, "isa-debug-exit,iobase=0xf4,iosize=0x04");
	cmd_add(c, "-kernel");
	cmd_add(c, "%s", kernel);
	if (o->initrd) {
		cmd_add(c, "-initrd");
		cmd_add(c, "%s", o->initrd);
	}
	cmd_add(c, "-append");
	cmd_add(c, "%s", o->append);
	if (o->paused)
		cmd_add(c, "-S");
	for (e = o->extra; e && *e; e++)
		cmd_add(c, "%s", *e);
	ASSERT_FALSE(c->overflow) {
		TH_LOG("the command line is too long");
	}
}

static void diag_cmd(const struct cmd *c)
{
	char buf[4096];
	size_t len = 0;
	int i;

	buf[0] = '\0';
	for (i = 0; i < c->argc && len < sizeof(buf); i++) {
		bool quote = strchr(c->argv[i], ' ') != NULL;

		len += snprintf(buf + len, sizeof(buf) - len, "%s%s%s%s",
				i ? " " : "", quote ? "\"" : "", c->argv[i],
				quote ? "\"" : "");
	}
	diag("  qemu: %s\n", buf);
}

/* ---- COM1 ------------------------------------------------------------- */

static void serial_end_line(struct qemu *q)
{
	char *s;

	q->line[q->line_len] = '\0';
	q->line_len = 0;
	diag("  guest: %s\n", q->line);
	if (q->nr_lines == q->max_lines) {
		size_t max = q->max_lines ? q->max_lines * 2 : 256;
		char **lines = realloc(q->lines, max * sizeof(*lines));

		if (!lines)
			return;
		q->lines = lines;
		q->max_lines = max;
	}
	s = strdup(q->line);
	if (s)
		q->lines[q->nr_lines++] = s;
}

static void serial_feed(struct qemu *q, const char *buf, size_t len)
{
	size_t i;

	for (i = 0; i < len; i++) {
		unsigned char c = buf[i];

		if (q->esc == 1) {
			q->esc = c == '[' ? 2 : 0;
			continue;
		}
		if (q->esc == 2) {
			if (c >= 0x40 && c <= 0x7e)
				q->esc = 0;
			continue;
		}
		if (c == 0x1b) {
			q->esc = 1;
			continue;
		}
		if (c == '\n') {
			serial_end_line(q);
			continue;
		}
		if (c < 0x20 && c != '\t')
			continue;
		if (c >= 0x7f)
			c = '?';
		q->line[q->line_len++] = c;
		if (q->line_len == sizeof(q->line) - 1)
			serial_end_line(q);
	}
}

static void serial_read(struct qemu *q)
{
	char buf[4096];
	ssize_t n = read(q->out_fd, buf, sizeof(buf));

	if (n < 0 && (errno == EINTR || errno == EAGAIN))
		return;
	if (n <= 0) {
		if (q->line_len)
			serial_end_line(q);
		close(q->out_fd);
		q->out_fd = -1;
		return;
	}
	serial_feed(q, buf, n);
}

/*
 * One poll() over QEMU's COM1 output and @fd (unless -1), for at most @ms:
 * reads what COM1 has, so that QEMU never blocks on it.  Returns @fd's
 * revents, 0 if it is not ready.
 */
static short pump(struct qemu *q, int fd, short events, int ms)
{
	struct pollfd p[2];
	int n = 0, si = -1, fi = -1;

	if (q->out_fd >= 0) {
		p[n].fd = q->out_fd;
		p[n].events = POLLIN;
		si = n++;
	}
	if (fd >= 0) {
		p[n].fd = fd;
		p[n].events = events;
		fi = n++;
	}
	if (poll(p, n, ms) <= 0)
		return 0;
	if (si >= 0 && p[si].revents)
		serial_read(q);
	return fi >= 0 ? p[fi].revents : 0;
}

/* The first line the guest printed that contains @sub, or NULL. */
static const char *find_line(struct qemu *q, const char *sub)
{
	size_t i;

	for (i = 0; i < q->nr_lines; i++)
		if (strstr(q->lines[i], sub))
			return q->lines[i];
	return NULL;
}

/* The first line that starts with @prefix, or NULL. */
static const char *find_line_start(struct qemu *q, const char *prefix)
{
	size_t i, n = strlen(prefix);

	for (i = 0; i < q->nr_lines; i++)
		if (!strncmp(q->lines[i], prefix, n))
			return q->lines[i];
	return NULL;
}

/*
 * Waits up to @timeout_s seconds for a line that contains @sub; returns
 * it, or NULL on timeout or if QEMU closed its stdout.
 */
static const char *wait_for_line(struct qemu *q, const char *sub,
				 int timeout_s)
{
	double deadline = now() + timeout_s;

	for (;;) {
		const char *line = find_line(q, sub);

		if (line)
			return line;
		if (q->out_fd < 0 || now() >= deadline)
			return NULL;
		pump(q, -1, 0, ms_left(deadline, 1000));
	}
}

/* ---- QEMU's life ------------------------------------------------------ */

static void qemu_init(struct qemu *q)
{
	memset(q, 0, sizeof(*q));
	q->in_fd = -1;
	q->out_fd = -1;
	q->mon_fd = -1;
	q->gdb_fd = -1;
}

static void close_fd(int *fd)
{
	if (*fd >= 0)
		close(*fd);
	*fd = -1;
}

static void free_lines(struct qemu *q)
{
	size_t i;

	for (i = 0; i < q->nr_lines; i++)
		free(q->lines[i]);
	free(q->lines);
	q->lines = NULL;
	q->nr_lines = 0;
	q->max_lines = 0;
	q->line_len = 0;
	q->esc = 0;
}

/* Reads COM1 to its end, for at most @timeout_s: QEMU is gone. */
static void serial_drain(struct qemu *q, int timeout_s)
{
	double deadline = now() + timeout_s;

	while (q->out_fd >= 0 && now() < deadline)
		pump(q, -1, 0, ms_left(deadline, 1000));
}

/* Reaps QEMU if it has exited; returns true if it is gone. */
static bool qemu_reap(struct qemu *q)
{
	pid_t r;

	if (q->pid <= 0)
		return true;
	r = waitpid(q->pid, &q->status, WNOHANG);
	if (r == 0)
		return false;
	if (r < 0)
		q->status = -1;
	q->pid = 0;
	return true;
}

/* Waits up to @timeout_s seconds for QEMU to exit; true if it did. */
static bool qemu_wait_exit(struct qemu *q, int timeout_s)
{
	double deadline = now() + timeout_s;

	for (;;) {
		if (qemu_reap(q)) {
			serial_drain(q, 5);
			return true;
		}
		if (now() >= deadline)
			return false;
		pump(q, -1, 0, ms_left(deadline, 100));
	}
}

/* Kills and reaps QEMU, if it runs, and closes everything to it. */
static void qemu_kill(struct qemu *q)
{
	if (q->pid > 0) {
		kill(q->pid, SIGKILL);
		if (waitpid(q->pid, &q->status, 0) < 0)
			q->status = -1;
		q->pid = 0;
	}
	close_fd(&q->mon_fd);
	close_fd(&q->gdb_fd);
	close_fd(&q->in_fd);
	serial_drain(q, 2);
	close_fd(&q->out_fd);
}

/* QEMU's exit status; 128 + the signal if a signal ended it. */
static int qemu_exit_code(struct qemu *q)
{
	if (q->status == -1)
		return -1;
	if (WIFEXITED(q->status))
		return WEXITSTATUS(q->status);
	if (WIFSIGNALED(q->status))
		return 128 + WTERMSIG(q->status);
	return -1;
}

/* "QEMU runs", or how it ended: for messages, once QEMU was started. */
static const char *qemu_state(struct qemu *q)
{
	static char buf[64];

	if (!qemu_reap(q))
		return "QEMU runs";
	if (q->status != -1 && WIFEXITED(q->status))
		snprintf(buf, sizeof(buf), "QEMU exited with status %d",
			 WEXITSTATUS(q->status));
	else if (q->status != -1 && WIFSIGNALED(q->status))
		snprintf(buf, sizeof(buf), "QEMU was killed by signal %d",
			 WTERMSIG(q->status));
	else
		snprintf(buf, sizeof(buf), "QEMU is gone");
	return buf;
}

static void qemu_start(struct __test_metadata *_metadata, struct qemu *q,
		       const struct cmd *c)
{
	int in[2], out[2], err, e;
	pid_t parent = getpid();

	qemu_kill(q);
	free_lines(q);
	q->gdb_len = 0;
	q->gdb_pos = 0;
	unlink(qemu_file(q, "mon.sock"));
	unlink(qemu_file(q, "gdb.sock"));

	ASSERT_EQ(0, pipe2(in, O_CLOEXEC));
	ASSERT_EQ(0, pipe2(out, O_CLOEXEC));
	err = open(qemu_file(q, "qemu.err"),
		   O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
	e = errno;
	ASSERT_LE(0, err) {
		TH_LOG("%s: %s", q->path, strerror(e));
	}

	diag_cmd(c);
	fflush(stdout);
	fflush(stderr);
	q->pid = fork();
	e = errno;
	ASSERT_LE(0, q->pid) {
		TH_LOG("fork: %s", strerror(e));
	}
	if (!q->pid) {
		/* QEMU dies with the test, even if the test cannot kill it. */
		prctl(PR_SET_PDEATHSIG, SIGKILL);
		if (getppid() != parent)
			_exit(127);
		if (dup2(in[0], 0) < 0 || dup2(out[1], 1) < 0 ||
		    dup2(err, 2) < 0)
			_exit(127);
		signal(SIGPIPE, SIG_DFL);
		execv(c->argv[0], c->argv);
		dprintf(2, "privmem_qemu_test: exec %s: %s\n", c->argv[0],
			strerror(errno));
		_exit(127);
	}
	q->started = true;
	close(in[0]);
	close(out[1]);
	close(err);
	q->in_fd = in[1];
	q->out_fd = out[0];
	fcntl(q->out_fd, F_SETFL, fcntl(q->out_fd, F_GETFL) | O_NONBLOCK);
}

/* QEMU's stderr so far; free() it. */
static char *qemu_stderr(struct qemu *q)
{
	char *s = slurp(qemu_file(q, "qemu.err"), NULL);

	return s ? s : strdup("");
}

static void diag_stderr(struct qemu *q, int max)
{
	char *err = qemu_stderr(q);

	if (err && *err)
		diag_lines("  qemu stderr: ", err, max);
	else
		diag("  qemu stderr: (empty)\n");
	free(err);
}

/*
 * The conversions QEMU made, from its kvm_convert_memory trace on stderr:
 * counts[explicit][to_private].  The explicit ones, which are few, are
 * shown.
 */
static void count_conversions(struct qemu *q, unsigned int counts[2][2])
{
	char *err = qemu_stderr(q), *p, *nl, *t;
	int shown = 0;

	memset(counts, 0, 4 * sizeof(counts[0][0]));
	for (p = err; p && *p; p = nl + 1) {
		bool explicit, to_private;

		nl = strchr(p, '\n');
		if (!nl)
			nl = p + strlen(p) - 1;
		else
			*nl = '\0';
		t = strstr(p, "kvm_convert_memory ");
		if (!t)
			continue;
		explicit = strstr(t, " explicit 1");
		to_private = strstr(t, " to private 1");
		counts[explicit][to_private]++;
		if (explicit && shown++ < 8)
			diag("conversions:   %s\n", t);
	}
	free(err);
	diag("conversions: QEMU made %u explicit (%u to private, %u to shared) and %u implicit (%u to private, %u to shared)\n",
	     counts[1][1] + counts[1][0], counts[1][1], counts[1][0],
	     counts[0][1] + counts[0][0], counts[0][1], counts[0][0]);
}

/* Waits up to @timeout_s seconds for @sub in QEMU's stderr. */
static bool wait_for_stderr(struct qemu *q, const char *sub, int timeout_s)
{
	double deadline = now() + timeout_s;

	for (;;) {
		char *err = qemu_stderr(q);
		bool found = err && strstr(err, sub);

		free(err);
		if (found)
			return true;
		if (now() >= deadline)
			return false;
		pump(q, -1, 0, ms_left(deadline, 200));
	}
}

static void rm_dir(const char *dir)
{
	char path[PATH_MAX];
	struct dirent *de;
	DIR *d = opendir(dir);

	if (!d)
		return;
	while ((de = readdir(d))) {
		if (!strcmp(de->d_name, ".") || !strcmp(de->d_name, ".."))
			continue;
		snprintf(path, sizeof(path), "%s/%s", dir, de->d_name);
		unlink(path);
	}
	closedir(d);
	rmdir(dir);
}

/* ---- sockets: HMP and the gdbstub ------------------------------------ */

/* Connects to QEMU's unix socket @path, retrying while QEMU starts. */
static int unix_connect(struct qemu *q, const char *path, int timeout_s)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	double deadline = now() + timeout_s;

	if (strlen(path) >= sizeof(sa.sun_path))
		return -1;
	strcpy(sa.sun_path, path);
	for (;;) {
		int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
		int e;

		if (fd < 0)
			return -1;
		if (!connect(fd, (struct sockaddr *)&sa, sizeof(sa)))
			return fd;
		e = errno;
		close(fd);
		if (e != ENOENT && e != ECONNREFUSED) {
			errno = e;
			return -1;
		}
		if (qemu_reap(q) || now() >= deadline) {
			errno = e;
			return -1;
		}
		pump(q, -1, 0, ms_left(deadline, 100));
	}
}

/*
 * Reads from the monitor up to and with its prompt "(qemu) ".  Returns the
 * text before the prompt, malloc()ed, or NULL if the monitor closed or
 * did not prompt within HMP_TIMEOUT.
 */
static char *hmp_read_prompt(struct qemu *q)
{
	static const char prompt[] = "(qemu) ";
	double deadline = now() + HMP_TIMEOUT;
	size_t len = 0, size = 4096;
	char *buf = malloc(size), *p;

	if (!buf)
		return NULL;
	buf[0] = '\0';
	for (;;) {
		short rev;
		ssize_t n;

		p = strstr(buf, prompt);
		if (p) {
			*p = '\0';
			return buf;
		}
		if (now() >= deadline)
			break;
		rev = pump(q, q->mon_fd, POLLIN, ms_left(deadline, 1000));
		if (!rev)
			continue;
		if (len + 1 >= size) {
			char *nbuf = size < (16u << 20) ?
				     realloc(buf, size * 2) : NULL;

			if (!nbuf)
				break;
			buf = nbuf;
			size *= 2;
		}
		n = recv(q->mon_fd, buf + len, size - len - 1, 0);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			break;
		len += n;
		/* NULs would hide the prompt from strstr() */
		for (p = buf + len - n; p < buf + len; p++)
			if (!*p)
				*p = '.';
		buf[len] = '\0';
	}
	free(buf);
	return NULL;
}

/*
 * Runs @cmd on the monitor and leaves in @buf its reply up to the next
 * prompt, without the echoed command line, escape sequences and carriage
 * returns.  Returns the reply's length, or -1 if QEMU closed the monitor or
 * did not answer within HMP_TIMEOUT.
 */
static int hmp(struct qemu *q, const char *cmd, char *buf, size_t size)
{
	char line[1024];
	char *reply, *text, *nl;
	int n;

	buf[0] = '\0';
	n = snprintf(line, sizeof(line), "%s\n", cmd);
	if (n < 0 || (size_t)n >= sizeof(line) || q->mon_fd < 0 ||
	    send_all(q->mon_fd, line, n))
		return -1;
	reply = hmp_read_prompt(q);
	if (!reply)
		return -1;
	strip_controls(reply);
	text = reply;
	/* The monitor echoes what it reads: skip that line. */
	nl = strchr(text, '\n');
	if (nl) {
		*nl = '\0';
		if (strstr(text, cmd))
			text = nl + 1;
		else
			*nl = '\n';
	}
	snprintf(buf, size, "%s", text);
	free(reply);
	return strlen(buf);
}

/* Connects to the monitor and reads its greeting. */
static void hmp_open(struct __test_metadata *_metadata, struct qemu *q)
{
	char *greeting;
	int e;

	q->mon_fd = unix_connect(q, qemu_file(q, "mon.sock"),
				 CONNECT_TIMEOUT);
	e = errno;
	ASSERT_LE(0, q->mon_fd) {
		TH_LOG("cannot connect to the monitor at %s: %s", q->path,
		       qemu_reap(q) ? qemu_state(q) : strerror(e));
	}
	greeting = hmp_read_prompt(q);
	ASSERT_NE(NULL, greeting) {
		TH_LOG("the monitor closed or did not prompt within %d s (%s)",
		       HMP_TIMEOUT, qemu_state(q));
	}
	free(greeting);
}

/*
 * Runs @cmd, shows its reply and, unless @want is NULL, expects the reply
 * to contain @want.  Fails the test if the monitor does not answer.
 */
static void hmp_expect(struct __test_metadata *_metadata, struct qemu *q,
		       const char *cmd, const char *want, char *buf,
		       size_t size)
{
	int ret = hmp(q, cmd, buf, size);

	ASSERT_LE(0, ret) {
		TH_LOG("HMP \"%s\": no reply within %d s (%s)", cmd,
		       HMP_TIMEOUT, qemu_state(q));
	}
	diag("  hmp: (qemu) %s\n", cmd);
	diag_lines("  hmp:   ", buf, 8);
	if (want) {
		EXPECT_NE(NULL, strstr(buf, want)) {
			TH_LOG("HMP \"%s\": the reply lacks \"%s\"", cmd,
			       want);
		}
	}
}

/* Sends "quit" and waits for QEMU to exit; expects exit status 0. */
static void hmp_quit(struct __test_metadata *_metadata, struct qemu *q)
{
	diag("  hmp: (qemu) quit\n");
	ASSERT_EQ(0, send_all(q->mon_fd, "quit\n", 5));
	ASSERT_TRUE(qemu_wait_exit(q, EXIT_TIMEOUT)) {
		TH_LOG("QEMU still runs %d s after quit", EXIT_TIMEOUT);
	}
	EXPECT_EQ(0, qemu_exit_code(q)) {
		TH_LOG("after quit, %s", qemu_state(q));
	}
}

/* The next byte from the gdbstub, or -1 on EOF or at @deadline. */
static int gdb_getc(struct qemu *q, double deadline)
{
	while (q->gdb_pos == q->gdb_len) {
		ssize_t n;

		if (now() >= deadline)
			return -1;
		if (!pump(q, q->gdb_fd, POLLIN, ms_left(deadline, 1000)))
			continue;
		n = recv(q->gdb_fd, q->gdb_buf, sizeof(q->gdb_buf), 0);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			return -1;
		q->gdb_len = n;
		q->gdb_pos = 0;
	}
	return (unsigned char)q->gdb_buf[q->gdb_pos++];
}

static int gdb_send(struct qemu *q, const char *payload)
{
	char pkt[512];
	unsigned int sum = 0;
	const char *p;
	int n;

	for (p = payload; *p; p++)
		sum += (unsigned char)*p;
	n = snprintf(pkt, sizeof(pkt), "$%s#%02x", payload, sum & 0xff);
	if (n < 0 || (size_t)n >= sizeof(pkt))
		return -1;
	return send_all(q->gdb_fd, pkt, n);
}

/*
 * Reads one packet "$<data>#<checksum>" into @buf (NUL-terminated) and
 * acknowledges it.  Returns the data's length; -1 on EOF or timeout; -2 if
 * the stub asked with '-' for our last packet again.
 */
static int gdb_recv(struct qemu *q, char *buf, size_t size, double deadline)
{
	for (;;) {
		unsigned int sum = 0;
		size_t len = 0;
		char cs[3];
		int c, i;

		do {
			c = gdb_getc(q, deadline);
			if (c < 0)
				return -1;
			if (c == '-')
				return -2;
		} while (c != '$');	/* skips the stub's acks '+' */
		for (;;) {
			c = gdb_getc(q, deadline);
			if (c < 0)
				return -1;
			if (c == '#')
				break;
			sum += c;
			if (len + 1 < size)
				buf[len++] = c;
		}
		buf[len] = '\0';
		for (i = 0; i < 2; i++) {
			c = gdb_getc(q, deadline);
			if (c < 0)
				return -1;
			cs[i] = c;
		}
		cs[2] = '\0';
		if (strtoul(cs, NULL, 16) != (sum & 0xff)) {
			if (send_all(q->gdb_fd, "-", 1))
				return -1;
			continue;
		}
		if (send_all(q->gdb_fd, "+", 1))
			return -1;
		return len;
	}
}

/* Stop replies that the stub may send unasked (it stops the VM on connect). */
static bool gdb_is_stop_reply(const char *r)
{
	return r[0] == 'T' || r[0] == 'S' || r[0] == 'W' || r[0] == 'X' ||
	       (r[0] == 'O' && strcmp(r, "OK"));
}

/* Sends @payload and reads its reply; returns its length or -1. */
static int gdb_command(struct qemu *q, const char *payload, char *reply,
		       size_t size)
{
	double deadline = now() + HMP_TIMEOUT;
	int tries = 0, n;

	if (gdb_send(q, payload))
		return -1;
	for (;;) {
		n = gdb_recv(q, reply, size, deadline);
		if (n == -2 && ++tries < 5) {
			if (gdb_send(q, payload))
				return -1;
			continue;
		}
		if (n < 0)
			return -1;
		if (payload[0] != '?' && gdb_is_stop_reply(reply)) {
			diag("  gdb: stop reply %s\n", reply);
			continue;
		}
		return n;
	}
}

static int hexval(int c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
}

/*
 * Reads @len bytes of guest memory at the virtual address @addr through
 * the gdbstub.  Returns 0 with the bytes in @out, -1 if the stub answered
 * with an error "E<nn>", -2 on no or a malformed answer.
 */
static int gdb_read_mem(struct qemu *q, uint64_t addr, size_t len,
			unsigned char *out)
{
	char cmd[64], reply[1024];
	size_t i;
	int n;

	if (2 * len >= sizeof(reply))
		return -2;
	snprintf(cmd, sizeof(cmd), "m%llx,%zx", (unsigned long long)addr, len);
	n = gdb_command(q, cmd, reply, sizeof(reply));
	diag("  gdb: %s -> %s\n", cmd, n < 0 ? "(no reply)" : reply);
	if (n < 0)
		return -2;
	if (reply[0] == 'E')
		return -1;
	if ((size_t)n != 2 * len)
		return -2;
	for (i = 0; i < len; i++) {
		int hi = hexval(reply[2 * i]), lo = hexval(reply[2 * i + 1]);

		if (hi < 0 || lo < 0)
			return -2;
		out[i] = hi << 4 | lo;
	}
	return 0;
}

/* ---- what QEMU holds -------------------------------------------------- */

struct scan {
	const char *needle[2];
	size_t len[2];
	unsigned long hits[2];
	unsigned long long first[2];	/* the first hit's address */
	char where[2][256];		/* and its line of maps */
	unsigned long long bytes;
	unsigned long mappings, failed_chunks;
};

/*
 * Reads every readable mapping of process @pid through /proc/PID/mem, in
 * chunks of SCAN_CHUNK that overlap by the longest needle but one byte, and
 * counts the places where each needle starts.  Chunks that cannot be read
 * are counted and skipped.  Returns 0, or -1 if /proc cannot be read.
 */
static int scan_memory(pid_t pid, struct scan *s)
{
	size_t overlap = (s->len[0] > s->len[1] ? s->len[0] : s->len[1]) - 1;
	char path[64], *line = NULL, *buf;
	size_t line_size = 0;
	FILE *maps;
	int mem, i;

	snprintf(path, sizeof(path), "/proc/%d/maps", pid);
	maps = fopen(path, "re");
	if (!maps)
		return -1;
	snprintf(path, sizeof(path), "/proc/%d/mem", pid);
	mem = open(path, O_RDONLY | O_CLOEXEC);
	buf = malloc(SCAN_CHUNK + overlap);
	if (mem < 0 || !buf) {
		fclose(maps);
		if (mem >= 0)
			close(mem);
		free(buf);
		return -1;
	}

	while (getline(&line, &line_size, maps) > 0) {
		unsigned long long start, end, addr;
		char perms[8];

		if (sscanf(line, "%llx-%llx %7s", &start, &end, perms) != 3 ||
		    perms[0] != 'r')
			continue;
		line[strcspn(line, "\n")] = '\0';
		s->mappings++;
		for (addr = start; addr < end; addr += SCAN_CHUNK) {
			size_t own = end - addr < SCAN_CHUNK ? end - addr :
							       SCAN_CHUNK;
			size_t want = end - addr < SCAN_CHUNK + overlap ?
				      end - addr : SCAN_CHUNK + overlap;
			ssize_t got = -1;

			if (addr <= INT64_MAX - want)
				got = pread(mem, buf, want, (off_t)addr);
			if (got <= 0) {
				s->failed_chunks++;
				continue;
			}
			s->bytes += (size_t)got < own ? (size_t)got : own;
			for (i = 0; i < 2; i++) {
				const char *p = buf, *e = buf + got;

				while ((p = memmem(p, e - p, s->needle[i],
						   s->len[i]))) {
					/* one that starts in the overlap is the next chunk's */
					if ((size_t)(p - buf) >= own)
						break;
					if (!s->hits[i]++) {
						s->first[i] = addr + (p - buf);
						snprintf(s->where[i],
							 sizeof(s->where[i]),
							 "%s", line);
					}
					p++;
				}
			}
		}
	}
	free(line);
	free(buf);
	close(mem);
	fclose(maps);
	return 0;
}

/*
 * The bytes that the files QEMU has open as @link hold (st_blocks * 512),
 * each file counted once however many fds it has.  Returns the number of
 * such files, or -1 if /proc cannot be read.
 */
static int memfd_bytes(pid_t pid, const char *link, unsigned long long *bytes)
{
	struct { dev_t dev; ino_t ino; } seen[16];
	char dir[64], path[PATH_MAX], target[PATH_MAX];
	struct dirent *de;
	int nr = 0, i;
	DIR *d;

	*bytes = 0;
	snprintf(dir, sizeof(dir), "/proc/%d/fd", pid);
	d = opendir(dir);
	if (!d)
		return -1;
	while ((de = readdir(d))) {
		struct stat st;
		ssize_t n;

		if (de->d_name[0] == '.')
			continue;
		snprintf(path, sizeof(path), "%s/%s", dir, de->d_name);
		n = readlink(path, target, sizeof(target) - 1);
		if (n < 0)
			continue;
		target[n] = '\0';
		if (strcmp(target, link) || stat(path, &st))
			continue;
		for (i = 0; i < nr; i++)
			if (seen[i].dev == st.st_dev && seen[i].ino == st.st_ino)
				break;
		if (i < nr || nr == (int)ARRAY_SIZE(seen))
			continue;
		seen[nr].dev = st.st_dev;
		seen[nr].ino = st.st_ino;
		nr++;
		*bytes += (unsigned long long)st.st_blocks * 512;
	}
	closedir(d);
	return nr;
}

/*
 * Finds the statistic @name, as a whole word, in the output of "info stats"
 * and parses the first decimal number after it on its line (after the ':'
 * that follows it, if there is one: "    name (cumulative): 12").
 */
static bool stat_value(const char *text, const char *name, long long *val)
{
	size_t n = strlen(name);
	const char *p;

	for (p = strstr(text, name); p; p = strstr(p + 1, name)) {
		const char *eol, *colon, *q = p + n;

		if ((p > text && (isalnum((unsigned char)p[-1]) ||
				  p[-1] == '_')) ||
		    isalnum((unsigned char)*q) || *q == '_')
			continue;
		eol = strchrnul(q, '\n');
		colon = memchr(q, ':', eol - q);
		if (colon)
			q = colon + 1;
		while (q < eol && !isdigit((unsigned char)*q))
			q++;
		if (q == eol)
			return false;
		*val = strtoll(q, NULL, 10);
		if (q > p + n && q[-1] == '-')
			*val = -*val;
		return true;
	}
	return false;
}

/* Shows the lines of @text that contain @sub. */
static void diag_matching_lines(const char *prefix, const char *text,
				const char *sub)
{
	const char *p = text;

	while (*p) {
		const char *e = strchrnul(p, '\n');
		const char *m = strstr(p, sub);

		if (m && m < e)
			diag("%s%.*s\n", prefix, (int)(e - p), p);
		p = *e ? e + 1 : e;
	}
}

/*
 * The end of a test guest that finished: no test of its failed, and QEMU
 * exits with status 1, which isa-debug-exit gives when all passed.
 */
static void expect_guest_passed(struct __test_metadata *_metadata,
				struct qemu *q)
{
	EXPECT_EQ(NULL, find_line(q, "not ok")) {
		TH_LOG("the guest failed a test: %s", find_line(q, "not ok"));
	}
	ASSERT_TRUE(qemu_wait_exit(q, EXIT_TIMEOUT)) {
		TH_LOG("QEMU still runs %d s after the guest's end",
		       EXIT_TIMEOUT);
	}
	EXPECT_EQ(1, qemu_exit_code(q)) {
		TH_LOG("%s, want exit status 1 (all passed)",
		       qemu_state(q));
	}
}

/* Waits for the convert guest to hold after its tests, before test 11's check. */
static void wait_for_hold(struct __test_metadata *_metadata, struct qemu *q)
{
	ASSERT_NE(NULL, wait_for_line(q, "holding, send a byte",
				      BOOT_TIMEOUT)) {
		TH_LOG("the guest did not get to its hold within %d s (%s)",
		       BOOT_TIMEOUT, qemu_state(q));
	}
}

/* Lets the held convert guest go on, to its end with every test passed. */
static void release_to_the_end(struct __test_metadata *_metadata,
			       struct qemu *q)
{
	ASSERT_EQ(1, write(q->in_fd, "g", 1));
	ASSERT_NE(NULL, wait_for_line(q, "privmem-guest: done",
				      BOOT_TIMEOUT)) {
		TH_LOG("the guest did not finish within %d s (%s)",
		       BOOT_TIMEOUT, qemu_state(q));
	}
	expect_guest_passed(_metadata, q);
}

/* ---- the tests -------------------------------------------------------- */

FIXTURE(privmem) {
	struct qemu q;
};

FIXTURE_SETUP(privmem)
{
	struct qemu *q = &self->q;

	qemu_init(q);
	signal(SIGPIPE, SIG_IGN);
	strcpy(q->dir, "/tmp/privmem-qemu.XXXXXX");
	if (!mkdtemp(q->dir)) {
		int e = errno;

		q->dir[0] = '\0';
		ASSERT_TRUE(false) {
			TH_LOG("mkdtemp: %s", strerror(e));
		}
	}
}

FIXTURE_TEARDOWN(privmem)
{
	struct qemu *q = &self->q;

	if (!_metadata->passed && q->started) {
		diag("  QEMU's stderr, the test having failed:\n");
		diag_stderr(q, 200);
	}
	qemu_kill(q);
	free_lines(q);
	if (q->dir[0])
		rm_dir(q->dir);
	fflush(stdout);
	fflush(stderr);
}

static const char *const virtio_balloon[] = {
	"-device", "virtio-balloon-pci", NULL
};

static const char *const virtio_mem[] = {
	"-object", "memory-backend-ram,id=vm0,size=128M,private-memory=on",
	"-device", "virtio-mem-pci,memdev=vm0,id=vmem0,requested-size=0",
	NULL
};

static const char *const small_phys_bits[] = {
	"-cpu", "qemu64,phys-bits=32", NULL
};

static const struct refusal {
	const char *what;
	struct qemu_opts opts;
	const char *expect;
} refusals[] = {
	{
		"SMM",
		{ .machine_extra = ",smm=on" },
		"SMM is not available with private memory",
	}, {
		"private-memory=on without kvm-private-mem",
		{ .no_private_vm = true },
		"private-memory=on needs a VM with private memory",
	}, {
		"phys-bits=32",
		{ .extra = small_phys_bits },
		"below the private GPA bit",
	}, {
		"virtio-balloon",
		{ .extra = virtio_balloon },
		"virtio-balloon is not available with private memory",
	}, {
		"virtio-mem",
		{ .m_arg = GUEST_RAM ",maxmem=512M", .extra = virtio_mem },
		"which virtio-mem cannot plug or unplug",
	},
};

TEST_F_TIMEOUT(privmem, refusals_at_start, 600)
{
	struct qemu *q = &self->q;
	struct qemu_opts paused = { .append = "convert", .paused = true };
	char buf[HMP_REPLY];
	struct cmd c;
	size_t i;

	for (i = 0; i < ARRAY_SIZE(refusals); i++) {
		const struct refusal *r = &refusals[i];
		struct qemu_opts o = r->opts;
		bool exited;
		char *err;

		diag("refusal %zu: %s\n", i + 1, r->what);
		o.append = "convert";
		base_cmd(_metadata, q, &c, &o);
		qemu_start(_metadata, q, &c);
		exited = qemu_wait_exit(q, EXIT_TIMEOUT);
		err = qemu_stderr(q);
		diag_lines("  qemu stderr: ", err, 20);
		EXPECT_TRUE(exited) {
			TH_LOG("%s: QEMU still runs after %d s", r->what,
			       EXIT_TIMEOUT);
		}
		if (exited) {
			EXPECT_TRUE(WIFEXITED(q->status) &&
				    WEXITSTATUS(q->status) != 0) {
				TH_LOG("%s: %s, want a non-zero exit status",
				       r->what, qemu_state(q));
			}
		}
		EXPECT_NE(NULL, strstr(err, r->expect)) {
			TH_LOG("%s: QEMU's stderr lacks \"%s\"", r->what,
			       r->expect);
		}
		free(err);
		qemu_kill(q);
	}

	diag("control: the base command line, paused\n");
	base_cmd(_metadata, q, &c, &paused);
	qemu_start(_metadata, q, &c);
	hmp_open(_metadata, q);
	hmp_expect(_metadata, q, "info status", "paused", buf, sizeof(buf));
	hmp_quit(_metadata, q);
}

TEST_F_TIMEOUT(privmem, conversions_secret_and_refusals, 900)
{
	struct qemu *q = &self->q;
	static const char *const trace[] = {
		"-trace", "kvm_convert_memory", NULL
	};
	struct qemu_opts o = {
		.append = "convert", .gdb = true, .extra = trace
	};
	unsigned int conv[2][2];
	char tag[TAG_LEN + 1], secret[64], control[64], cmd[PATH_MAX + 64];
	unsigned long long shared, priv, total;
	unsigned int n_priv, n_shared;
	long long batches;
	unsigned char mem[0x20];
	static char buf[HMP_REPLY];
	struct scan s = { 0 };
	const char *line;
	size_t len, i;
	int nsh, npr, ret, e;
	struct cmd c;
	char *file;

	base_cmd(_metadata, q, &c, &o);
	qemu_start(_metadata, q, &c);
	wait_for_hold(_metadata, q);
	ASSERT_EQ(NULL, find_line(q, "secret not stored")) {
		TH_LOG("the guest could not store its secret");
	}
	line = find_line(q, "secret held, tag ");
	ASSERT_NE(NULL, line) {
		TH_LOG("the guest did not say which secret it holds");
	}
	line = strstr(line, "secret held, tag ") + strlen("secret held, tag ");
	for (i = 0; i < TAG_LEN && isxdigit((unsigned char)line[i]); i++)
		tag[i] = line[i];
	tag[i] = '\0';
	ASSERT_EQ((size_t)TAG_LEN, i) {
		TH_LOG("cannot parse the tag in \"%s\"", line);
	}
	snprintf(secret, sizeof(secret), SECRET_PREFIX "%s", tag);
	snprintf(control, sizeof(control), CONTROL_PREFIX "%s", tag);
	line = find_line(q, "touched ");
	ASSERT_NE(NULL, line) {
		TH_LOG("the guest did not say how many pages it touched");
	}
	ASSERT_EQ(2, sscanf(strstr(line, "touched "),
			    "touched %u pages private, %u shared",
			    &n_priv, &n_shared)) {
		TH_LOG("cannot parse \"%s\"", line);
	}

	/*
	 * What QEMU holds, before the scan below: reading the shared mapping
	 * through /proc/PID/mem faults in the pages that conversions to
	 * private discarded.
	 */
	nsh = memfd_bytes(q->pid, SHARED_MEMFD, &shared);
	npr = memfd_bytes(q->pid, PRIVATE_MEMFD, &priv);
	ASSERT_LT(0, nsh) {
		TH_LOG("QEMU has no fd that reads as \"%s\"", SHARED_MEMFD);
	}
	ASSERT_LT(0, npr) {
		TH_LOG("QEMU has no fd that reads as \"%s\"", PRIVATE_MEMFD);
	}
	total = shared + priv;
	diag("memory: shared %llu KiB + private %llu KiB = %llu KiB for %llu KiB of guest RAM\n",
	     shared >> 10, priv >> 10, total >> 10, GUEST_RAM_BYTES >> 10);
	diag("memory: the guest left %u pages private and %u shared (%llu KiB)\n",
	     n_priv, n_shared, (n_priv + n_shared) * GUEST_PAGE >> 10);
	EXPECT_LE(n_priv * GUEST_PAGE, priv) {
		TH_LOG("the private memory holds less than the guest's %u private pages",
		       n_priv);
	}
	EXPECT_GE(GUEST_RAM_BYTES, total) {
		TH_LOG("QEMU holds more than one copy of some guest pages");
	}
	EXPECT_LE((n_priv + n_shared) * GUEST_PAGE, total) {
		TH_LOG("QEMU holds less than the pages the guest wrote");
	}

	/* The secret must be nowhere in QEMU's memory; the control must be. */
	s.needle[0] = secret;
	s.needle[1] = control;
	s.len[0] = strlen(secret);
	s.len[1] = strlen(control);
	ret = scan_memory(q->pid, &s);
	e = errno;
	ASSERT_EQ(0, ret) {
		TH_LOG("cannot read QEMU's memory through /proc/%d: %s",
		       q->pid, strerror(e));
	}
	diag("scan: %llu bytes (%llu MiB) in %lu mappings, %lu chunks unreadable; secret found %lu times, shared control %lu times\n",
	     s.bytes, s.bytes >> 20, s.mappings, s.failed_chunks, s.hits[0],
	     s.hits[1]);
	if (s.hits[1])
		diag("scan: the shared control first at 0x%llx, in %s\n",
		     s.first[1], s.where[1]);
	EXPECT_EQ(0ul, s.hits[0]) {
		TH_LOG("QEMU's memory holds the secret \"%s\": first at 0x%llx, in %s",
		       secret, s.first[0], s.where[0]);
	}
	EXPECT_LT(0ul, s.hits[1]) {
		TH_LOG("the scan did not find the shared control \"%s\": it misses guest RAM",
		       control);
	}

	/* HMP: what reads private memory refuses, and migration is blocked. */
	hmp_open(_metadata, q);
	hmp_expect(_metadata, q, "info status", "running", buf, sizeof(buf));

	/*
	 * File names go in quotes: HMP would read "4096 /tmp/..." as a
	 * division.
	 */
	snprintf(cmd, sizeof(cmd), "dump-guest-memory \"%s\"",
		 qemu_file(q, "dump.elf"));
	hmp_expect(_metadata, q, cmd, "private memory", buf, sizeof(buf));
	file = slurp(qemu_file(q, "dump.elf"), &len);
	if (file) {
		diag("  %s: %zu bytes\n", q->path, len);
		EXPECT_EQ(NULL, memmem(file, len, secret, strlen(secret))) {
			TH_LOG("the dump holds the secret");
		}
		free(file);
	}

	snprintf(cmd, sizeof(cmd), "pmemsave 0x%llx 4096 \"%s\"", SECRET_PA,
		 qemu_file(q, "p.bin"));
	hmp_expect(_metadata, q, cmd, "private memory", buf, sizeof(buf));
	file = slurp(qemu_file(q, "p.bin"), &len);
	if (file) {
		EXPECT_EQ(NULL, memmem(file, len, secret, strlen(secret))) {
			TH_LOG("pmemsave of the private page saved the secret");
		}
		free(file);
	}

	snprintf(cmd, sizeof(cmd), "pmemsave 0x%llx 4096 \"%s\"", CONTROL_PA,
		 qemu_file(q, "s.bin"));
	hmp_expect(_metadata, q, cmd, NULL, buf, sizeof(buf));
	EXPECT_EQ(NULL, strcasestr(buf, "error")) {
		TH_LOG("pmemsave of the shared page failed");
	}
	file = slurp(qemu_file(q, "s.bin"), &len);
	EXPECT_NE(NULL, file) {
		TH_LOG("pmemsave of the shared page wrote no %s", q->path);
	}
	if (file) {
		EXPECT_NE(NULL, memmem(file, len, control, strlen(control))) {
			TH_LOG("pmemsave of the shared page lacks \"%s\"",
			       control);
		}
		free(file);
	}

	snprintf(cmd, sizeof(cmd), "xp /4wx 0x%llx", SECRET_PA);
	hmp_expect(_metadata, q, cmd, "Cannot read private memory", buf,
		   sizeof(buf));
	snprintf(cmd, sizeof(cmd), "x /4wx 0x%llx", PRIV_VA + SECRET_PA);
	hmp_expect(_metadata, q, cmd, "Cannot access memory", buf,
		   sizeof(buf));
	hmp_expect(_metadata, q, "migrate \"exec:cat > /dev/null\"",
		   "cannot be migrated", buf, sizeof(buf));
	hmp_expect(_metadata, q, "savevm snap0", "cannot be migrated", buf,
		   sizeof(buf));
	hmp_expect(_metadata, q, "calc_dirty_rate 1", "cannot be measured",
		   buf, sizeof(buf));

	ret = hmp(q, "info stats vm", buf, sizeof(buf));
	ASSERT_LE(0, ret) {
		TH_LOG("HMP \"info stats vm\": no reply");
	}
	diag("  hmp: (qemu) info stats vm, the private_mem_ lines:\n");
	diag_matching_lines("  hmp:   ", buf, "private_mem_");
	EXPECT_NE(NULL, strstr(buf, "private_mem_faults")) {
		TH_LOG("\"info stats vm\" lacks private_mem_faults");
	}
	/* The guest's test 11: one batch, which QEMU must have enabled. */
	EXPECT_TRUE(stat_value(buf, "private_mem_batches", &batches) &&
		    batches == 1) {
		TH_LOG("private_mem_batches is not 1: QEMU did not enable KVM_CAP_MAP_GPA_BATCH, or the guest's batch never exited");
	}

	/* The gdbstub: the private view fails, the shared one reads. */
	q->gdb_fd = unix_connect(q, qemu_file(q, "gdb.sock"), CONNECT_TIMEOUT);
	ASSERT_LE(0, q->gdb_fd) {
		TH_LOG("cannot connect to the gdbstub at %s", q->path);
	}
	ret = gdb_read_mem(q, PRIV_VA + SECRET_PA, sizeof(mem), mem);
	ASSERT_NE(-2, ret) {
		TH_LOG("the gdbstub did not answer a memory read");
	}
	if (!ret) {
		diag("  gdb: the read of the private view returned data\n");
		EXPECT_EQ(NULL, memmem(mem, sizeof(mem), SECRET_PREFIX,
				       strlen(SECRET_PREFIX))) {
			TH_LOG("the gdbstub read the secret");
		}
	}
	ret = gdb_read_mem(q, CONTROL_PA, sizeof(mem), mem);
	EXPECT_EQ(0, ret) {
		TH_LOG("the gdbstub cannot read the shared page");
	}
	if (!ret) {
		EXPECT_NE(NULL, memmem(mem, sizeof(mem), control,
				       strlen(control))) {
			TH_LOG("the gdbstub's read of the shared page lacks \"%s\"",
			       control);
		}
	}
	ret = gdb_command(q, "D", buf, sizeof(buf));
	diag("  gdb: D -> %s\n", ret < 0 ? "(no reply)" : buf);
	EXPECT_EQ(0, strcmp(ret < 0 ? "" : buf, "OK")) {
		TH_LOG("the gdbstub did not detach");
	}
	close_fd(&q->gdb_fd);
	hmp_expect(_metadata, q, "info status", "running", buf, sizeof(buf));

	/* Let the guest go on: its secret must be intact. */
	release_to_the_end(_metadata, q);

	/* Every private page the guest left came through QEMU. */
	count_conversions(q, conv);
	EXPECT_LE(n_priv, conv[0][1]) {
		TH_LOG("%u implicit conversions to private for %u private pages",
		       conv[0][1], n_priv);
	}
	EXPECT_LE(4u, conv[1][1] + conv[1][0]) {
		TH_LOG("the guest asked for 4 conversions at least");
	}
}

/*
 * batch-io-uring=on: the guest's batch (test 10: pages 7 and 8 made
 * private, then 7 shared) goes to io_uring as two runs, the two adjacent
 * pages merged, in four linked requests: for the run made private, the
 * private memfd's fallocate(), the shared memfd's punch and the
 * madvise(); for the other, a punch.  The guest checks the result.
 */
TEST_F_TIMEOUT(privmem, batch_io_uring, 900)
{
	struct qemu *q = &self->q;
	static const char *const trace[] = {
		"-trace", "kvm_private_mem_batch_*", NULL
	};
	struct qemu_opts o = {
		.append = "convert", .pm_extra = ",batch-io-uring=on",
		.extra = trace
	};
	static const char want[] =
		" from entry 0: 2 runs in 4 linked requests, 2 runs done";
	char *err, *line;
	struct cmd c;

	base_cmd(_metadata, q, &c, &o);
	qemu_start(_metadata, q, &c);
	wait_for_hold(_metadata, q);
	release_to_the_end(_metadata, q);
	err = qemu_stderr(q);
	ASSERT_NE(NULL, err);
	EXPECT_EQ(NULL, strstr(err, "kvm_private_mem_batch_entry ")) {
		TH_LOG("QEMU carried out an entry one at a time");
	}
	line = strstr(err, "kvm_private_mem_batch_submit ");
	EXPECT_NE(NULL, line) {
		TH_LOG("QEMU traced no io_uring submission of a batch");
	}
	if (line) {
		line[strcspn(line, "\n")] = '\0';
		diag("  qemu: %s\n", line);
		EXPECT_NE(NULL, strstr(line, want)) {
			TH_LOG("the submission is not the batch's two runs, all done");
		}
	}
	free(err);
}

TEST_F_TIMEOUT(privmem, private_mmio_stops_the_vm, 400)
{
	static const char msg[] =
		"as private, but no RAM with private memory is there";
	struct qemu *q = &self->q;
	struct qemu_opts o = { .append = "mmio" };
	char buf[HMP_REPLY];
	bool stopped = false;
	double deadline;
	struct cmd c;

	base_cmd(_metadata, q, &c, &o);
	qemu_start(_metadata, q, &c);
	ASSERT_NE(NULL, wait_for_line(q, "touching the private alias",
				      BOOT_TIMEOUT)) {
		TH_LOG("the guest did not get to its access within %d s (%s)",
		       BOOT_TIMEOUT, qemu_state(q));
	}
	hmp_open(_metadata, q);
	deadline = now() + STOP_TIMEOUT;
	do {
		ASSERT_LE(0, hmp(q, "info status", buf, sizeof(buf))) {
			TH_LOG("HMP \"info status\": no reply");
		}
		if (strstr(buf, "internal-error")) {
			stopped = true;
			break;
		}
		pump(q, -1, 0, 500);
	} while (now() < deadline);
	diag("  hmp: (qemu) info status\n");
	diag_lines("  hmp:   ", buf, 4);
	ASSERT_TRUE(stopped) {
		TH_LOG("the VM did not stop with internal-error within %d s",
		       STOP_TIMEOUT);
	}
	EXPECT_TRUE(wait_for_stderr(q, msg, 10)) {
		TH_LOG("QEMU's stderr lacks \"%s\"", msg);
	}
	if (!_metadata->passed)
		diag_stderr(q, 40);
	EXPECT_EQ(NULL, find_line(q, "privmem-guest: done")) {
		TH_LOG("the guest went on after the access");
	}
	ASSERT_FALSE(qemu_reap(q)) {
		TH_LOG("QEMU exited instead of keeping the stopped VM");
	}
	hmp_quit(_metadata, q);
}

TEST_F_TIMEOUT(privmem, reset_empties_private_memory, 400)
{
	struct qemu *q = &self->q;
	struct qemu_opts o = { .append = "reset" };
	struct cmd c;

	base_cmd(_metadata, q, &c, &o);
	qemu_start(_metadata, q, &c);
	/* two boots, and the reset between them */
	ASSERT_NE(NULL, wait_for_line(q, "privmem-guest: done",
				      2 * BOOT_TIMEOUT)) {
		TH_LOG("the guest did not finish within %d s (%s)",
		       2 * BOOT_TIMEOUT, qemu_state(q));
	}
	EXPECT_NE(NULL, find_line_start(q, "ok 1 ")) {
		TH_LOG("no \"ok 1\": boot 1 could not write its private page");
	}
	EXPECT_NE(NULL, find_line_start(q, "ok 2 ")) {
		TH_LOG("no \"ok 2\": the reset did not empty private memory");
	}
	expect_guest_passed(_metadata, q);
}

/* What the harness counts as a kernel problem, in the stock guest's log. */
static const char *const kernel_problems[] = {
	"BUG:", "WARNING:", "Oops", "general protection", "recursive locking",
	"circular locking", "Kernel panic", "suspicious RCU usage",
};

/* The first line of the stock guest that reports a kernel problem. */
static const char *stock_problem(struct qemu *q)
{
	size_t i, j;

	for (i = 0; i < q->nr_lines; i++)
		for (j = 0; j < ARRAY_SIZE(kernel_problems); j++)
			if (strstr(q->lines[i], kernel_problems[j]))
				return q->lines[i];
	return NULL;
}

/*
 * Nested under emulation, the stock guest's kernel now and then takes an
 * interrupt with interrupts disabled early in its boot, in a plain VM as
 * much as with private memory, and lockdep reports it ("possible
 * recursive locking", "spinlock recursion").  That is the emulated host,
 * not private memory; a boot that does so is tried again.  Under QEMU's
 * SVM most boots can fail so (3 of 4 plain boots and 12 of 12 private
 * ones in one run), under Bochs's VMX none did; a failed boot costs some
 * 7 seconds.
 */
#define STOCK_ATTEMPTS	24

/*
 * Boot the stock guest, as a private-memory VM or, with @plain, as a
 * plain one, until a boot runs its command with a clean kernel log.
 * Returns the attempts it took, or 0 if none did; QEMU is left running
 * after a clean boot.
 */
static int boot_stock(struct __test_metadata *_metadata, struct qemu *q,
		      bool plain)
{
	struct qemu_opts o = {
		.kernel = env_or("PRIVMEM_STOCK_KERNEL", "/tests/qemu/bzImage"),
		.initrd = env_or("PRIVMEM_STOCK_INITRD",
				 "/tests/qemu/stock-initrd.cpio.gz"),
		.append = "console=ttyS0 panic=-1 quiet",
		.ram = STOCK_RAM,
		.plain_vm = plain,
	};
	const char *kind = plain ? "plain" : "private-memory";
	int attempt;

	require_file(_metadata, o.kernel, "the stock guest's kernel",
		     "PRIVMEM_STOCK_KERNEL", false);
	require_file(_metadata, o.initrd, "the stock guest's initrd",
		     "PRIVMEM_STOCK_INITRD", false);
	for (attempt = 1; attempt <= STOCK_ATTEMPTS; attempt++) {
		double deadline = now() + STOCK_BOOT_TIMEOUT;
		const char *problem = NULL;
		bool ran = false;
		struct cmd c;

		if (attempt > 1) {
			qemu_kill(q);
			free_lines(q);
		}
		base_cmd(_metadata, q, &c, &o);
		qemu_start(_metadata, q, &c);
		while (!ran && !problem && q->out_fd >= 0 && now() < deadline) {
			pump(q, -1, 0, ms_left(deadline, 1000));
			ran = find_line(q, "privmem-stock: ran");
			problem = stock_problem(q);
		}
		if (ran && !problem) {
			diag("the stock guest in a %s VM ran its command, boot %d: %s\n",
			     kind, attempt, find_line(q, "privmem-stock: ran"));
			return attempt;
		}
		diag("the stock guest in a %s VM, boot %d: %s\n", kind, attempt,
		     problem ? problem : ran ? "?" :
		     "did not run its command in time");
	}
	return 0;
}

TEST_F_TIMEOUT(privmem, stock_guest_is_unaffected, 1500)
{
	static const char *const names[] = {
		"private_mem_explicit_exits", "private_mem_implicit_exits",
	};
	struct qemu *q = &self->q;
	unsigned long long shared, priv;
	static char buf[HMP_REPLY];
	int nsh, npr, plain;
	size_t i;

	/* The control: the same guest in a plain VM, on the same host. */
	plain = boot_stock(_metadata, q, true);
	qemu_kill(q);
	free_lines(q);
	if (!plain)
		SKIP(return, "the stock guest's kernel failed %d boots in a plain VM: the nested host cannot judge it",
		     STOCK_ATTEMPTS);

	ASSERT_NE(0, boot_stock(_metadata, q, false)) {
		TH_LOG("the stock guest failed %d boots with private-capable RAM, where a plain VM booted it",
		       STOCK_ATTEMPTS);
	}

	nsh = memfd_bytes(q->pid, SHARED_MEMFD, &shared);
	npr = memfd_bytes(q->pid, PRIVATE_MEMFD, &priv);
	ASSERT_LT(0, npr) {
		TH_LOG("QEMU has no fd that reads as \"%s\"", PRIVATE_MEMFD);
	}
	diag("memory: shared %llu KiB%s + private %llu KiB for %s of guest RAM\n",
	     shared >> 10, nsh > 0 ? "" : " (no shared memfd found)",
	     priv >> 10, STOCK_RAM);
	EXPECT_EQ(0ull, priv) {
		TH_LOG("the private memory of a guest that never uses it holds %llu KiB",
		       priv >> 10);
	}

	hmp_open(_metadata, q);
	ASSERT_LE(0, hmp(q, "info stats vm", buf, sizeof(buf))) {
		TH_LOG("HMP \"info stats vm\": no reply");
	}
	diag("  hmp: (qemu) info stats vm, the private_mem_ lines:\n");
	diag_matching_lines("  hmp:   ", buf, "private_mem_");
	for (i = 0; i < ARRAY_SIZE(names); i++) {
		long long v = -1;
		bool found = stat_value(buf, names[i], &v);

		EXPECT_TRUE(found) {
			TH_LOG("\"info stats vm\" lacks %s", names[i]);
		}
		if (!found)
			continue;
		diag("stats: %s = %lld\n", names[i], v);
		EXPECT_EQ(0, v) {
			TH_LOG("%s is %lld for a guest that never uses the private bit",
			       names[i], v);
		}
	}
	hmp_quit(_metadata, q);
}

/*
 * "privmem_qemu_test [test...]" runs only the tests named, as the demo
 * does; without names, all of them.  The 6.1 harness has no option for it.
 */
static bool keep_named_tests(int argc, char **argv)
{
	struct __fixture_metadata *f;
	struct __test_metadata *t, *next, *head, *tail;
	int i, found = 0;

	for (f = __fixture_list; f; f = f->next) {
		head = NULL;
		tail = NULL;
		for (t = f->tests; t; t = next) {
			next = t->next;
			for (i = 1; i < argc && strcmp(argv[i], t->name); i++)
				;
			if (i == argc)
				continue;
			found++;
			t->next = NULL;
			if (head)
				tail->next = t;
			else
				head = t;
			tail = t;
		}
		if (head)
			head->prev = tail;
		f->tests = head;
	}
	return found == argc - 1;
}

int main(int argc, char **argv)
{
	/* Line by line: the harness forks with whatever stdout holds. */
	setvbuf(stdout, NULL, _IOLBF, 0);
	if (argc > 1 && !keep_named_tests(argc, argv)) {
		fprintf(stderr, "usage: %s [test...]: a test named is not one of this program's\n",
			argv[0]);
		return 2;
	}
	return test_harness_run(argc, argv);
}
