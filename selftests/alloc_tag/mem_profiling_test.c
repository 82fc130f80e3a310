// SPDX-License-Identifier: GPL-2.0
/*
 * vm.mem_profiling as userspace sees it: its value and mode for the
 * kernel's configuration and boot option, what writes it accepts, and
 * that switching it stops and resumes counting at a known call site.
 *
 * The configuration is read from the kernel (/proc/config.gz), with
 * CONFIG_<NAME>=y|n in the environment as an override. The contract comes
 * from the kernel's source (alloc_tag.contract): SYSCTL_UNSWITCHABLE says
 * whether a sysctl that cannot be switched (DEBUG=y, or profiling not
 * supported) is read-only (0444) or 0644 with a handler that answers
 * EACCES under DEBUG and EINVAL when profiling is not supported.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "../kselftest_harness.h"
#include "alloc_tag_helpers.h"

#define NR_PIPES 64

struct expected {
	struct profiling_boot boot;
	int debug;
	int switchable;		/* a root write may change the value */
	int readonly;		/* SYSCTL_UNSWITCHABLE: refused by mode 0444 */
	int boot_ignored;	/* BOOT_WRITE: the handler ignores the boot's write */
	int boot_message;	/* BOOT_MESSAGE: the kernel says what it made of it */
	int compressed_sysctl;	/* COMPRESSED_SYSCTL */
	char buf[4096];
};

/* 0, or the reason the expectation cannot be known. */
static const char *expected_state(struct expected *e)
{
	char debug = kernel_config("MEM_ALLOC_PROFILING_DEBUG");

	e->readonly = contract_is("SYSCTL_UNSWITCHABLE", "readonly");
	e->boot_ignored = contract_is("BOOT_WRITE", "ignored");
	e->boot_message = contract_is("BOOT_MESSAGE", "yes");
	e->compressed_sysctl = contract_is("COMPRESSED_SYSCTL", "yes");
	if (e->readonly < 0 || e->boot_ignored < 0 || e->boot_message < 0 ||
	    e->compressed_sysctl < 0 || contract("BOOT_GRAMMAR") == NULL)
		return CONTRACT_UNKNOWN;
	e->boot = profiling_boot(e->buf, sizeof(e->buf));
	if (!debug || !e->boot.known)
		return "kernel config unknown: enable CONFIG_IKCONFIG_PROC or set CONFIG_MEM_ALLOC_PROFILING_DEBUG and _ENABLED_BY_DEFAULT";
	e->debug = debug == 'y';
	e->switchable = e->boot.supported && !e->debug;
	return NULL;
}

#define NEED_CONFIG(e)								\
	do {									\
		const char *_why = expected_state(e);				\
		if (_why)							\
			SKIP(return, "%s", _why);				\
	} while (0)

static mode_t sysctl_mode(void)
{
	struct stat st;

	return stat(ALLOC_TAG_SYSCTL, &st) ? 0 : st.st_mode & 0777;
}

static int read_sysctl(void)
{
	char c = 0;
	int fd = open(ALLOC_TAG_SYSCTL, O_RDONLY);

	if (fd < 0)
		return -1;
	if (read(fd, &c, 1) != 1)
		c = 0;
	close(fd);
	return c == '1' ? 1 : c == '0' ? 0 : -1;
}

/* Returns 0 or the errno of writing @s. */
static int write_sysctl(const char *s)
{
	int fd = open(ALLOC_TAG_SYSCTL, O_WRONLY);
	int err = 0;

	if (fd < 0)
		return errno;
	if (write(fd, s, strlen(s)) < 0)
		err = errno;
	close(fd);
	return err;
}

TEST(value_and_mode_as_documented)
{
	struct expected e;
	mode_t mode = sysctl_mode();

	NEED_CONFIG(&e);
	EXPECT_EQ(e.boot.enabled, read_sysctl());
	/* Refused by its mode, or (0644) by its handler: the kernel's contract. */
	EXPECT_EQ(!e.switchable && e.readonly ? 0444 : 0644, mode) TH_LOG("mode %o", mode);
	EXPECT_EQ(e.compressed_sysctl, !access(ALLOC_TAG_COMPRESSED, F_OK));
	if (e.compressed_sysctl) {
		struct stat st;

		ASSERT_EQ(0, stat(ALLOC_TAG_COMPRESSED, &st));
		EXPECT_EQ(0444, st.st_mode & 0777);
		EXPECT_EQ(e.boot.compressed, read_long(ALLOC_TAG_COMPRESSED, -1));
	}
}

/*
 * The errno of a root write of @value: only "0" and "1" (a newline may
 * follow) are values; then the sysctl's contract decides.
 */
static int write_errno(const struct expected *e, const char *value)
{
	int err = EINVAL;

	if (!e->switchable)
		err = e->readonly || e->debug ? EACCES : EINVAL;
	else if (!strcmp(value, "0") || !strcmp(value, "1") ||
		 !strcmp(value, "0\n") || !strcmp(value, "1\n"))
		err = 0;
	return err;
}

TEST(writes_are_checked)
{
	static const char * const values[] = {
		"0", "1", "0\n", "1\n", "2", "-1", "10", "abc", "never", "1,compressed",
	};
	long compressed = read_long(ALLOC_TAG_COMPRESSED, -1);
	struct expected e;
	int before, i;

	NEED_CONFIG(&e);
	if (geteuid())
		SKIP(return, "needs root");
	before = read_sysctl();
	for (i = 0; i < ARRAY_SIZE(values); i++) {
		int want = write_errno(&e, values[i]);
		int now = read_sysctl();
		int err = write_sysctl(values[i]);

		EXPECT_EQ(want, err) TH_LOG("writing '%s': %s, want %s", values[i],
					    strerror(err), strerror(want));
		/* An accepted value is the new value; a refused one changes nothing. */
		EXPECT_EQ(want ? now : values[i][0] - '0', read_sysctl())
			TH_LOG("after writing '%s'", values[i]);
		/* Compression is chosen at boot: switching leaves it alone. */
		EXPECT_EQ(compressed, read_long(ALLOC_TAG_COMPRESSED, -1));
	}
	if (e.switchable)
		EXPECT_EQ(0, write_sysctl(before ? "1" : "0"));
	EXPECT_EQ(before, read_sysctl());
	/* Others may not even open it for writing. */
	EXPECT_EQ(EACCES, errno_as_nobody(ALLOC_TAG_SYSCTL, O_WRONLY));
}

/*
 * page_ext holds the page tags unless they are compressed into page
 * flags; its memory is logged at boot when some user needs it. With no
 * other user configured, the log line is there exactly when tags need it.
 */
TEST(page_ext_only_without_compression)
{
	static const char * const others[] = {
		"PAGE_OWNER", "PAGE_TABLE_CHECK", "IOMMU_DEBUG_PAGEALLOC", "PAGE_IDLE_FLAG",
	};
	struct expected e;
	int i, logged;

	NEED_CONFIG(&e);
	for (i = 0; i < ARRAY_SIZE(others); i++)
		if (kernel_config(others[i]) == 'y')
			SKIP(return, "CONFIG_%s=y may use page_ext too", others[i]);
	logged = boot_log_has(" bytes of page_ext");
	if (logged < 0)
		SKIP(return, "cannot read the kernel log (/dev/kmsg)");
	if (!boot_log_has("Linux version"))
		SKIP(return, "the boot messages left the log buffer");
	EXPECT_EQ(e.boot.supported && !e.boot.compressed, logged)
		TH_LOG("supported %d, compressed %d", e.boot.supported, e.boot.compressed);
}

/* Sum of the counters of every line of @func in /proc/allocinfo. */
static int site_counters(const char *func, long long *bytes, long long *calls)
{
	char line[1024], key[128];
	FILE *f = fopen(ALLOC_TAG_PROC, "r");

	if (!f)
		return -1;
	snprintf(key, sizeof(key), " func:%s ", func);
	*bytes = 0;
	*calls = 0;
	while (fgets(line, sizeof(line), f)) {
		long long b, c;

		if (strstr(line, key) && sscanf(line, "%lld %lld", &b, &c) == 2) {
			*bytes += b;
			*calls += c;
		}
	}
	fclose(f);
	return 0;
}

/* Opens @n pipes: each allocates at alloc_pipe_info() in fs/pipe.c. */
static void open_pipes(int fds[][2], int n)
{
	int i;

	for (i = 0; i < n; i++)
		if (pipe(fds[i]))
			fds[i][0] = fds[i][1] = -1;
}

static void close_pipes(int fds[][2], int n)
{
	int i;

	for (i = 0; i < n; i++) {
		close(fds[i][0]);
		close(fds[i][1]);
	}
}

TEST(switching_stops_and_resumes_counting)
{
	long long b0, c0, b1, c1, b2, c2, one;
	int fds[NR_PIPES][2];
	struct expected e;
	int before;

	NEED_CONFIG(&e);
	if (e.debug)
		SKIP(return, "vm.mem_profiling cannot be switched with CONFIG_MEM_ALLOC_PROFILING_DEBUG=y");
	if (!e.switchable)
		SKIP(return, "%s", profiling_off_reason());
	if (geteuid())
		SKIP(return, "needs root");
	before = read_sysctl();

	ASSERT_EQ(0, write_sysctl("0"));
	ASSERT_EQ(0, site_counters("alloc_pipe_info", &b0, &c0));
	open_pipes(fds, NR_PIPES);
	ASSERT_EQ(0, site_counters("alloc_pipe_info", &b1, &c1));
	close_pipes(fds, NR_PIPES);
	EXPECT_EQ(b0, b1);
	EXPECT_EQ(c0, c1);

	ASSERT_EQ(0, write_sysctl("1"));
	ASSERT_EQ(0, site_counters("alloc_pipe_info", &b1, &c1));
	open_pipes(fds, NR_PIPES);
	ASSERT_EQ(0, site_counters("alloc_pipe_info", &b2, &c2));
	close_pipes(fds, NR_PIPES);
	/* Each pipe: its pipe_inode_info and its buffer array. */
	EXPECT_EQ(2 * NR_PIPES, c2 - c1);
	/* ... and each charges exactly what one pipe alone charges. */
	ASSERT_EQ(0, site_counters("alloc_pipe_info", &b0, &c0));
	open_pipes(fds, 1);
	ASSERT_EQ(0, site_counters("alloc_pipe_info", &one, &c0));
	close_pipes(fds, 1);
	one -= b0;
	EXPECT_LT(0, one);
	EXPECT_EQ(NR_PIPES * one, b2 - b1) TH_LOG("one pipe charges %lld bytes", one);

	ASSERT_EQ(0, write_sysctl(before ? "1" : "0"));
}

/*
 * What the generic sysctl code logs when it replays the boot option as a
 * write (BOOT_WRITE): nothing when the handler ignores writes from boot;
 * else the write meets the mode, then the handler or kstrtobool.
 */
static const char *expected_sysctl_failure(const struct expected *e)
{
	const char *opt = e->boot.option;

	if (!opt || !opt[0] || e->boot_ignored)
		return NULL;
	if (!e->switchable && (e->readonly || e->debug))
		return "permission denied (read-only?)";
	if (!e->switchable || (strcmp(opt, "0") && strcmp(opt, "1")))
		return "invalid value";
	return NULL;
}

TEST(boot_log_as_documented)
{
	const char *fail, *opt;
	char want[4200];
	struct expected e;

	NEED_CONFIG(&e);
	opt = e.boot.option;
	ASSERT_LE(0, boot_log_has("Linux version"))
		TH_LOG("cannot read the kernel log (/dev/kmsg)");
	if (!boot_log_has("Linux version"))
		SKIP(return, "the boot messages left the log buffer");
	EXPECT_EQ(e.boot.malformed,
		  boot_log_has("Malformed early option 'sysctl.vm.mem_profiling'"));
	/* An empty value is refused by the command-line parser itself. */
	EXPECT_EQ(opt && !opt[0], boot_log_has(
		"Setting sysctl args: `' invalid for parameter `sysctl.vm.mem_profiling'"));
	fail = expected_sysctl_failure(&e);
	if (fail) {
		snprintf(want, sizeof(want),
			 "Failed to set sysctl parameter 'vm.mem_profiling=%s': %s", opt, fail);
		EXPECT_TRUE(boot_log_has(want)) TH_LOG("missing: %s", want);
	} else {
		EXPECT_FALSE(boot_log_has("Failed to set sysctl parameter 'vm.mem_profiling"));
	}
	if (e.boot_message && opt && !e.boot.malformed) {
		/*
		 * Kernels with compression say what they made of the option,
		 * as parsed: before any later give-up on compression.
		 */
		if (!strncmp(opt, "never", 5))
			snprintf(want, sizeof(want), "Memory allocation profiling is disabled!");
		else
			snprintf(want, sizeof(want),
				 "Memory allocation profiling is enabled %s compression and is turned %s!",
				 e.boot.compressed ? "with" : "without",
				 e.boot.asked ? "on" : "off");
		EXPECT_TRUE(boot_log_has(want)) TH_LOG("missing: %s", want);
	}
}

ALLOC_TAG_TEST_MAIN
