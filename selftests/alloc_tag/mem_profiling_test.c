// SPDX-License-Identifier: GPL-2.0
/*
 * vm.mem_profiling as userspace sees it: its value and mode for the
 * kernel's configuration and boot option, what writes it accepts, and
 * that switching it stops and resumes counting at a known call site.
 *
 * The configuration is read from the environment (ALLOCPROF_ENABLED_BY_DEFAULT
 * and ALLOCPROF_DEBUG, "y" or "n"), as the test runner knows it.
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

#define SYSCTL "/proc/sys/vm/mem_profiling"
#define NR_PIPES 64

static void skip_without_sysctl(struct __test_metadata *_metadata)
{
	if (access(SYSCTL, F_OK))
		SKIP(exit(KSFT_SKIP), "CONFIG_MEM_ALLOC_PROFILING is not set");
}

/* The value of sysctl.vm.mem_profiling= on the command line, or NULL. */
static char *boot_option(char *buf, size_t size)
{
	const char *key = "sysctl.vm.mem_profiling=";
	FILE *f = fopen("/proc/cmdline", "r");
	char *p;

	if (!f || !fgets(buf, size, f)) {
		if (f)
			fclose(f);
		return NULL;
	}
	fclose(f);
	p = strstr(buf, key);
	if (!p)
		return NULL;
	p += strlen(key);
	p[strcspn(p, " \n")] = '\0';
	return p;
}

/* kstrtobool() as the kernel parses it: -1 when malformed. */
static int kstrtobool_like(const char *s)
{
	if (!s[0])
		return -1;
	switch (s[0]) {
	case 'y': case 'Y': case 't': case 'T': case '1':
		return 1;
	case 'n': case 'N': case 'f': case 'F': case '0':
		return 0;
	case 'o': case 'O':
		if (s[1] == 'n' || s[1] == 'N')
			return 1;
		if (s[1] == 'f' || s[1] == 'F')
			return 0;
	}
	return -1;
}

static int config(const char *name)
{
	const char *v = getenv(name);

	return v ? v[0] == 'y' : -1;
}

struct expected {
	int value;
	mode_t mode;
};

/* What lib/alloc_tag.c makes of the configuration and boot option. */
static int expected_state(struct expected *e)
{
	int by_default = config("ALLOCPROF_ENABLED_BY_DEFAULT");
	int debug = config("ALLOCPROF_DEBUG");
	char buf[4096], *opt = boot_option(buf, sizeof(buf));
	int supported, value;

	if (by_default < 0 || debug < 0)
		return -1;
	supported = by_default;
	value = by_default;
	if (opt && !strncmp(opt, "never", 5)) {
		supported = 0;
		value = 0;
	} else if (opt && kstrtobool_like(opt) >= 0) {
		supported = 1;
		value = kstrtobool_like(opt);
	}
	e->value = value;
	e->mode = (debug || !supported) ? 0444 : 0644;
	return 0;
}

static int read_sysctl(void)
{
	char c = 0;
	int fd = open(SYSCTL, O_RDONLY);

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
	int fd = open(SYSCTL, O_WRONLY);
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
	struct stat st;

	skip_without_sysctl(_metadata);
	if (expected_state(&e))
		SKIP(return, "ALLOCPROF_ENABLED_BY_DEFAULT/ALLOCPROF_DEBUG not set");
	ASSERT_EQ(0, stat(SYSCTL, &st));
	EXPECT_EQ(e.mode, st.st_mode & 0777);
	EXPECT_EQ(e.value, read_sysctl());
}

TEST(writes_are_checked)
{
	struct stat st;
	int before;

	skip_without_sysctl(_metadata);
	if (geteuid())
		SKIP(return, "needs root");
	ASSERT_EQ(0, stat(SYSCTL, &st));
	before = read_sysctl();
	if ((st.st_mode & 0777) == 0444) {
		/* Read-only: even root cannot write it. */
		EXPECT_EQ(EACCES, write_sysctl(before ? "0" : "1"));
	} else {
		EXPECT_EQ(EINVAL, write_sysctl("2"));
	}
	EXPECT_EQ(before, read_sysctl());
}

/* Sum of the counters of every line of @func in /proc/allocinfo. */
static int site_counters(const char *func, long long *bytes, long long *calls)
{
	char line[1024], key[128];
	FILE *f = fopen("/proc/allocinfo", "r");

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
	long long b0, c0, b1, c1, b2, c2;
	int fds[NR_PIPES][2];
	struct stat st;
	int before;

	skip_without_sysctl(_metadata);
	ASSERT_EQ(0, stat(SYSCTL, &st));
	if ((st.st_mode & 0777) != 0644 || geteuid())
		SKIP(return, "vm.mem_profiling is read-only here");
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
	EXPECT_EQ(0, (b2 - b1) % NR_PIPES);
	EXPECT_GT(b2 - b1, 0);

	ASSERT_EQ(0, write_sysctl(before ? "1" : "0"));
}

/* The kernel log since boot, as one string (record texts only). */
static char *boot_log(void)
{
	char *buf = calloc(1, 1 << 20);
	int fd = kmsg_open(1);

	if (fd < 0 || !buf) {
		free(buf);
		return NULL;
	}
	kmsg_append(fd, buf, 1 << 20);
	close(fd);
	return buf;
}

TEST(boot_log_as_documented)
{
	char cmd[4096], want[256], *opt = boot_option(cmd, sizeof(cmd));
	int malformed = opt && strncmp(opt, "never", 5) && kstrtobool_like(opt) < 0;
	char *log;
	struct stat st;

	skip_without_sysctl(_metadata);
	ASSERT_EQ(0, stat(SYSCTL, &st));
	log = boot_log();
	ASSERT_NE(NULL, log);
	EXPECT_EQ(malformed, !!strstr(log, "Malformed early option 'sysctl.vm.mem_profiling'"));
	if (opt) {
		/* The generic sysctl code then writes the value too. */
		snprintf(want, sizeof(want), "Failed to set sysctl parameter 'vm.mem_profiling=%s': %s",
			 opt, (st.st_mode & 0777) == 0444 ? "permission denied (read-only?)" :
			 malformed ? "invalid value" : "");
		if ((st.st_mode & 0777) == 0444 || malformed) {
			EXPECT_NE(NULL, strstr(log, want)) TH_LOG("missing: %s", want);
		} else {
			EXPECT_EQ(NULL, strstr(log, want)) TH_LOG("unexpected: %s", want);
		}
	} else {
		EXPECT_EQ(NULL, strstr(log, "Failed to set sysctl parameter 'vm.mem_profiling"));
	}
	free(log);
}

ALLOC_TAG_TEST_MAIN
