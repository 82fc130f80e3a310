// SPDX-License-Identifier: GPL-2.0
/*
 * Modules coming and going, as /proc/allocinfo and the kernel log show it:
 * a module's tags appear at load (allocations in its init included), a
 * clean unload removes them silently, and an unload with live allocations
 * warns once per leaking tag, taints the kernel and still succeeds.
 *
 * The helper module is module/alloc_tag_test_mod.c, built against the
 * kernel under test; its path comes from ALLOCPROF_TEST_MODULE.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "../kselftest_harness.h"
#include "alloc_tag_helpers.h"

#define MOD "alloc_tag_test_mod"
#define INIT_PAGES 2	/* order 1 */
#define ALLOC_PAGES 4	/* order 2 */

static const char *module_path(struct __test_metadata *_metadata)
{
	const char *path = getenv("ALLOCPROF_TEST_MODULE");

	if (access("/proc/allocinfo", F_OK))
		SKIP(exit(KSFT_SKIP), "CONFIG_MEM_ALLOC_PROFILING is not set");
	if (!path || access(path, R_OK))
		SKIP(exit(KSFT_SKIP), "helper module not built (ALLOCPROF_TEST_MODULE)");
	if (read_long("/proc/sys/vm/mem_profiling", -1) == 0)
		SKIP(exit(KSFT_SKIP), "memory allocation profiling is switched off");
	return path;
}

static int load(const char *path, const char *params)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	int ret;

	if (fd < 0)
		return -errno;
	ret = syscall(SYS_finit_module, fd, params, 0);
	close(fd);
	return ret ? -errno : 0;
}

static int unload(void)
{
	return syscall(SYS_delete_module, MOD, O_NONBLOCK) ? -errno : 0;
}

static int param(const char *name)
{
	char path[256];

	snprintf(path, sizeof(path), "/sys/module/%s/parameters/%s", MOD, name);
	return read_long(path, -1);
}

struct site {
	long long bytes, calls;
	int line;
	int found;
};

/* The module's line for @func, and how many module lines there are. */
static int module_lines(const char *func, struct site *s)
{
	char line[1024], key[128];
	FILE *f = fopen("/proc/allocinfo", "r");
	int n = 0;

	memset(s, 0, sizeof(*s));
	if (!f)
		return -1;
	snprintf(key, sizeof(key), " [" MOD "] func:%s ", func);
	while (fgets(line, sizeof(line), f)) {
		char *colon;

		if (!strstr(line, " [" MOD "] "))
			continue;
		n++;
		if (!strstr(line, key))
			continue;
		sscanf(line, "%lld %lld", &s->bytes, &s->calls);
		colon = strstr(line, ".c:");
		s->line = colon ? atoi(colon + 3) : -1;
		s->found++;
	}
	fclose(f);
	return n;
}

static long tainted(void)
{
	return read_long("/proc/sys/kernel/tainted", 0);
}

TEST(load_shows_module_tags)
{
	const char *path = module_path(_metadata);
	long ps = sysconf(_SC_PAGESIZE);
	struct site init, alloc;

	ASSERT_EQ(0, load(path, ""));
	module_lines("alloc_tag_test_mod_init", &init);
	module_lines("alloc_tag_test_mod_alloc", &alloc);
	EXPECT_EQ(1, init.found);
	EXPECT_EQ(INIT_PAGES * ps, init.bytes);
	EXPECT_EQ(1, init.calls);
	EXPECT_EQ(param("init_line"), init.line);
	EXPECT_EQ(1, alloc.found);
	EXPECT_EQ(ALLOC_PAGES * ps, alloc.bytes);
	EXPECT_EQ(1, alloc.calls);
	EXPECT_EQ(param("alloc_line"), alloc.line);
	ASSERT_EQ(0, unload());
}

TEST(clean_unload_is_silent_and_removes_tags)
{
	const char *path = module_path(_metadata);
	static char log[65536];
	struct site s;
	int fd;

	ASSERT_EQ(0, load(path, ""));
	fd = kmsg_open(0);
	ASSERT_GE(fd, 0);
	log[0] = '\0';
	ASSERT_EQ(0, unload());
	kmsg_append(fd, log, sizeof(log));
	close(fd);
	EXPECT_EQ(0, module_lines("alloc_tag_test_mod_init", &s));
	EXPECT_EQ(NULL, strstr(log, "allocated at module unload")) TH_LOG("%s", log);
	EXPECT_EQ(NULL, strstr(log, "cannot unload cleanly")) TH_LOG("%s", log);
}

TEST(leaking_unload_warns_per_tag_and_taints)
{
	const char *path = module_path(_metadata);
	long ps = sysconf(_SC_PAGESIZE);
	static char log[65536];
	int fd, init_line, alloc_line;
	char want[256];
	struct site s;

	ASSERT_EQ(0, load(path, "leak=1"));
	init_line = param("init_line");
	alloc_line = param("alloc_line");
	fd = kmsg_open(0);
	ASSERT_GE(fd, 0);
	log[0] = '\0';
	/* rmmod still succeeds: the module is gone, its data kept. */
	ASSERT_EQ(0, unload());
	kmsg_append(fd, log, sizeof(log));
	close(fd);

	snprintf(want, sizeof(want), "%s.c:%d module %s func:%s has %ld allocated at module unload",
		 MOD, init_line, MOD, "alloc_tag_test_mod_init", INIT_PAGES * ps);
	EXPECT_NE(NULL, strstr(log, want)) TH_LOG("missing '%s' in:\n%s", want, log);
	snprintf(want, sizeof(want), "%s.c:%d module %s func:%s has %ld allocated at module unload",
		 MOD, alloc_line, MOD, "alloc_tag_test_mod_alloc", ALLOC_PAGES * ps);
	EXPECT_NE(NULL, strstr(log, want)) TH_LOG("missing '%s' in:\n%s", want, log);
	snprintf(want, sizeof(want),
		 "%s: memory allocation(s) from the module still alive, cannot unload cleanly",
		 MOD);
	EXPECT_NE(NULL, strstr(log, want)) TH_LOG("missing '%s' in:\n%s", want, log);
	EXPECT_TRUE(tainted() & (1 << 9)) TH_LOG("kernel not tainted W");
	EXPECT_EQ(0, module_lines("alloc_tag_test_mod_init", &s));
	EXPECT_EQ(-1, param("leak"));
}

TEST(reload_after_leak_works)
{
	const char *path = module_path(_metadata);
	long ps = sysconf(_SC_PAGESIZE);
	struct site init;

	ASSERT_EQ(0, load(path, ""));
	module_lines("alloc_tag_test_mod_init", &init);
	EXPECT_EQ(INIT_PAGES * ps, init.bytes);
	EXPECT_EQ(1, init.calls);
	ASSERT_EQ(0, unload());
}

ALLOC_TAG_TEST_MAIN
