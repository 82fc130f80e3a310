// SPDX-License-Identifier: GPL-2.0
/*
 * Modules coming and going, as /proc/allocinfo and the kernel log show it:
 * a module's tags appear at load (allocations in its init included), a
 * clean unload removes them silently, and an unload with live allocations
 * reports once per leaking tag and still succeeds. The kernel's source
 * says how (alloc_tag.contract): UNLOAD_REPORT "warn" is a WARN (taint W)
 * followed by "cannot unload cleanly", "info" one pr_info per tag; with
 * MODULE_TAGS "kept" the tags' counters outlive the module. MODULE_COUNTERS
 * "shared" (modules with weak per-CPU variables) gives every module tag one
 * counter, charged by all module allocations: each tag reads the total.
 *
 * The helper module is module/alloc_tag_test_mod.c, built against the
 * kernel under test, in module/ beside this program (see helper_module()).
 */
#define _GNU_SOURCE
#include <ctype.h>
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

/* Skips unless profiling counts and the helper module is there. */
#define NEED_MODULE(path)							\
	do {									\
		SKIP_UNLESS_COUNTING();						\
		path = helper_module(MOD);					\
		if (!path)							\
			SKIP(return, "helper module " MOD ".ko not built (module/)"); \
	} while (0)


static int count(const char *log, const char *text)
{
	int n = 0;

	for (log = strstr(log, text); log; log = strstr(log + 1, text))
		n++;
	return n;
}

static int load(const char *path, const char *params)
{
	return module_load(path, params);
}

static int unload(void)
{
	return module_unload(MOD);
}

/* Unloads the module: 0 or -errno, with what the kernel logged meanwhile in @log. */
static int unload_logged(char *log, size_t size)
{
	int fd = kmsg_open(0);
	int ret;

	log[0] = '\0';
	if (fd < 0)
		return -errno;
	ret = unload();
	kmsg_append(fd, log, size);
	close(fd);
	return ret;
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
		if (sscanf(line, "%lld %lld", &s->bytes, &s->calls) != 2)
			continue;
		colon = strstr(line, ".c:");
		s->line = colon ? atoi(colon + 3) : -1;
		s->found++;
	}
	fclose(f);
	return n;
}

static long taint_flags(void)
{
	return read_long("/proc/sys/kernel/tainted", 0);
}

TEST(load_shows_module_tags)
{
	const char *path;
	long ps = sysconf(_SC_PAGESIZE);
	struct site init, alloc, rcu;
	long rcu_size, total;
	int shared;

	NEED_MODULE(path);
	NEED_CONTRACT(shared, "MODULE_COUNTERS", "shared");
	ASSERT_EQ(0, load(path, ""));
	module_lines("alloc_tag_test_mod_init", &init);
	module_lines("alloc_tag_test_mod_alloc", &alloc);
	/* The object its exit frees through kfree_rcu(): the slab size. */
	module_lines("alloc_tag_test_mod_rcu_obj", &rcu);
	rcu_size = param("rcu_size");
	/* The first module loaded here: the shared counter holds only its own. */
	total = rcu_size + (INIT_PAGES + ALLOC_PAGES) * ps;
	EXPECT_EQ(1, rcu.found);
	EXPECT_EQ(shared ? total : rcu_size, rcu.bytes);
	EXPECT_EQ(shared ? 3 : 1, rcu.calls);
	EXPECT_EQ(1, init.found);
	EXPECT_EQ(shared ? total : INIT_PAGES * ps, init.bytes);
	EXPECT_EQ(shared ? 3 : 1, init.calls);
	EXPECT_EQ(param("init_line"), init.line);
	EXPECT_EQ(1, alloc.found);
	EXPECT_EQ(shared ? total : ALLOC_PAGES * ps, alloc.bytes);
	EXPECT_EQ(shared ? 3 : 1, alloc.calls);
	EXPECT_EQ(param("alloc_line"), alloc.line);
	ASSERT_EQ(0, unload());
}

TEST(clean_unload_is_silent_and_removes_tags)
{
	const char *path;
	static char log[65536];
	struct site s;

	NEED_MODULE(path);
	ASSERT_EQ(0, load(path, ""));
	ASSERT_EQ(0, unload_logged(log, sizeof(log)));
	EXPECT_EQ(0, module_lines("alloc_tag_test_mod_init", &s));
	EXPECT_EQ(NULL, strstr(log, "allocated at module unload")) TH_LOG("%s", log);
	EXPECT_EQ(NULL, strstr(log, "cannot unload cleanly")) TH_LOG("%s", log);
}

TEST(leaking_unload_reports_each_tag_once)
{
	const char *path;
	long ps = sysconf(_SC_PAGESIZE);
	static char log[65536];
	int init_line, alloc_line;
	long taint_before, leaked;
	char want[256];
	struct site s;
	int warns, shared;

	NEED_MODULE(path);
	/* UNLOAD_REPORT: a WARN per tag and taint W, or one pr_info per tag. */
	NEED_CONTRACT(warns, "UNLOAD_REPORT", "warn");
	NEED_CONTRACT(shared, "MODULE_COUNTERS", "shared");
	ASSERT_EQ(0, load(path, "leak=1"));
	/* After the load, which may taint O (and E) the first time. */
	taint_before = taint_flags();
	init_line = param("init_line");
	alloc_line = param("alloc_line");
	/* rmmod still succeeds: the module is gone, its data kept. */
	ASSERT_EQ(0, unload_logged(log, sizeof(log)));

	/*
	 * Shared: every tag of the module reads the leak of both (the earlier
	 * tests freed all they took), the kfree_rcu() object's tag too.
	 */
	leaked = (INIT_PAGES + ALLOC_PAGES) * ps;
	snprintf(want, sizeof(want), "%s.c:%d module %s func:%s has %ld allocated at module unload",
		 MOD, init_line, MOD, "alloc_tag_test_mod_init", shared ? leaked : INIT_PAGES * ps);
	EXPECT_EQ(1, count(log, want)) TH_LOG("want '%s' once in:\n%s", want, log);
	snprintf(want, sizeof(want), "%s.c:%d module %s func:%s has %ld allocated at module unload",
		 MOD, alloc_line, MOD, "alloc_tag_test_mod_alloc", shared ? leaked : ALLOC_PAGES * ps);
	EXPECT_EQ(1, count(log, want)) TH_LOG("want '%s' once in:\n%s", want, log);
	EXPECT_EQ(shared ? 3 : 2, count(log, "allocated at module unload")) TH_LOG("%s", log);
	snprintf(want, sizeof(want),
		 "%s: memory allocation(s) from the module still alive, cannot unload cleanly",
		 MOD);
	if (!warns) {
		/* Logged, not warned: no taint, nothing "unclean". */
		EXPECT_EQ(taint_before, taint_flags());
		EXPECT_EQ(0, count(log, want)) TH_LOG("%s", log);
		EXPECT_EQ(0, count(log, "WARNING:")) TH_LOG("%s", log);
	} else {
		EXPECT_EQ(1, count(log, want)) TH_LOG("want '%s' once in:\n%s", want, log);
		EXPECT_EQ(taint_before | (1 << 9), taint_flags()) TH_LOG("kernel not tainted W");
	}
	EXPECT_EQ(0, module_lines("alloc_tag_test_mod_init", &s));
	EXPECT_EQ(-1, param("leak"));
}

TEST(reload_after_leak_works)
{
	const char *path;
	long ps = sysconf(_SC_PAGESIZE);
	struct site init, again;
	int shared;

	NEED_MODULE(path);
	NEED_CONTRACT(shared, "MODULE_COUNTERS", "shared");
	ASSERT_EQ(0, load(path, ""));
	module_lines("alloc_tag_test_mod_init", &init);
	if (!shared) {
		EXPECT_EQ(INIT_PAGES * ps, init.bytes);
		EXPECT_EQ(1, init.calls);
		ASSERT_EQ(0, unload());
		return;
	}
	/*
	 * Shared: the counter still holds the leak of the test before, which no
	 * module tag can show once its module is gone. A clean unload gives back
	 * exactly its own: a second load reads what the first one did.
	 */
	ASSERT_EQ(0, unload());
	ASSERT_EQ(0, load(path, ""));
	module_lines("alloc_tag_test_mod_init", &again);
	EXPECT_EQ(init.bytes, again.bytes);
	EXPECT_EQ(init.calls, again.calls);
	ASSERT_EQ(0, unload());
}

/*
 * Where module tags outlive the module, memory it leaked may be freed
 * later by other code: here by a second module, given the addresses. The
 * free must be silent (no BUG, no WARN, taint unchanged).
 */
TEST(leaked_blocks_freed_later_by_another_module)
{
	static char log[65536];
	const char *path, *freer;
	char addrs[256], params[512], freer_path[4096];
	long taint_before;
	FILE *f;
	int fd, kept;

	NEED_MODULE(path);
	NEED_CONTRACT(kept, "MODULE_TAGS", "kept");
	if (!kept)
		SKIP(return, "not in this kernel: module tags are freed at unload, so a later free would use a freed tag");
	freer = helper_module("alloc_tag_free_mod");
	if (!freer)
		SKIP(return, "helper module alloc_tag_free_mod.ko not built");
	snprintf(freer_path, sizeof(freer_path), "%s", freer);
	/* helper_module() returns one buffer: look this one up again. */
	path = helper_module(MOD);
	ASSERT_EQ(0, load(path, "leak=1"));
	taint_before = taint_flags();
	f = fopen("/sys/module/" MOD "/parameters/leaked", "r");
	ASSERT_NE(NULL, f) TH_LOG("leaked: %s", strerror(errno));
	ASSERT_NE(NULL, fgets(addrs, sizeof(addrs), f));
	fclose(f);
	addrs[strcspn(addrs, "\n")] = '\0';
	ASSERT_EQ(0, unload());
	fd = kmsg_open(0);
	ASSERT_GE(fd, 0);
	log[0] = '\0';
	snprintf(params, sizeof(params), "addr=%s order=1,2", addrs);
	ASSERT_EQ(0, module_load(freer_path, params)) TH_LOG("%s", params);
	ASSERT_EQ(0, module_unload("alloc_tag_free_mod"));
	kmsg_append(fd, log, sizeof(log));
	close(fd);
	EXPECT_EQ(0, count(log, "WARNING:")) TH_LOG("%s", log);
	EXPECT_EQ(0, count(log, "BUG:")) TH_LOG("%s", log);
	EXPECT_EQ(0, count(log, "Oops")) TH_LOG("%s", log);
	EXPECT_EQ(taint_before, taint_flags());
}

/* The built-in lines of /proc/allocinfo (no " ["), without their counters. */
static int builtin_tags(const char *text, char ***tags)
{
	const char *line = text;
	int n = 0, cap = 0;

	*tags = NULL;
	while (line && *line) {
		const char *end = strchr(line, '\n');
		size_t len = end ? (size_t)(end - line) : strlen(line);
		const char *tag = line;
		int field;

		/* Past "<bytes> <calls> ". */
		for (field = 0; field < 2 && tag < line + len; field++) {
			while (tag < line + len && *tag == ' ')
				tag++;
			while (tag < line + len && *tag != ' ')
				tag++;
		}
		if (isdigit(line[strspn(line, " ")]) && !memmem(line, len, " [", 2)) {
			if (n == cap) {
				cap = cap ? 2 * cap : 4096;
				*tags = realloc(*tags, cap * sizeof(char *));
				if (!*tags)
					return -1;
			}
			(*tags)[n++] = strndup(tag, line + len - tag);
		}
		line = end ? end + 1 : NULL;
	}
	return n;
}

/* Reads /proc/allocinfo @chunk bytes at a time into a new string. */
static char *read_allocinfo(size_t chunk)
{
	size_t size = 1 << 20, used = 0;
	char *buf = malloc(size);
	int fd = open(ALLOC_TAG_PROC, O_RDONLY);
	ssize_t r;

	if (!buf || fd < 0) {
		free(buf);
		return NULL;
	}
	while ((r = read(fd, buf + used, chunk)) > 0) {
		used += r;
		if (used + chunk + 1 > size) {
			char *bigger = realloc(buf, size *= 2);

			if (!bigger)
				break;
			buf = bigger;
		}
	}
	close(fd);
	buf[used] = '\0';
	return buf;
}

#define CHURN_CYCLES 8

/* One one-byte pass: NULL if it saw every built-in line once, in order. */
static char *check_pass(char **want, int nwant, int pass)
{
	char **got, *text = read_allocinfo(1), *why = NULL;
	int ngot = text ? builtin_tags(text, &got) : -1, i;

	for (i = 0; !why && i < ngot && i < nwant; i++)
		if (strcmp(got[i], want[i]) &&
		    asprintf(&why, "pass %d, line %d: '%s', want '%s'", pass, i, got[i],
			     want[i]) < 0)
			why = "out of memory";
	if (!why && ngot != nwant &&
	    asprintf(&why, "pass %d: %d built-in lines, want %d", pass, ngot, nwant) < 0)
		why = "out of memory";
	free(text);
	return why;
}

/*
 * A reader taking /proc/allocinfo one byte per read() while a module is
 * loaded and unloaded over and over sees every built-in line exactly
 * once, in order, in every pass.
 */
TEST(one_byte_reader_under_module_churn)
{
	char **want, *text, report[4096] = "";
	int nwant, pass, passes = 0, status, cycle, stop[2], out[2], started[2];
	const char *path;
	char go;
	pid_t pid;

	NEED_MODULE(path);
	text = read_allocinfo(1 << 16);
	ASSERT_NE(NULL, text);
	nwant = builtin_tags(text, &want);
	free(text);
	ASSERT_LT(0, nwant);
	ASSERT_EQ(0, pipe(stop));
	ASSERT_EQ(0, pipe(out));
	ASSERT_EQ(0, pipe(started));
	pid = fork();
	ASSERT_LE(0, pid);
	if (!pid) {
		char *why = NULL, c;

		close(stop[1]);
		fcntl(stop[0], F_SETFL, O_NONBLOCK);
		/* The churn starts once the reader runs: they overlap. */
		if (write(started[1], "r", 1) != 1)
			_exit(1);
		/* Passes until one ends after the churn is over. */
		for (pass = 0; !why; pass++) {
			why = check_pass(want, nwant, pass);
			if (read(stop[0], &c, 1) == 0)
				break;
		}
		dprintf(out[1], "%d passes%s%s", pass + 1, why ? ": " : "", why ? why : "");
		_exit(why ? 1 : 0);
	}
	close(stop[0]);
	close(out[1]);
	close(started[1]);
	ASSERT_EQ(1, read(started[0], &go, 1));
	close(started[0]);
	for (cycle = 0; cycle < CHURN_CYCLES; cycle++) {
		ASSERT_EQ(0, load(path, ""));
		ASSERT_EQ(0, unload());
	}
	close(stop[1]);
	ASSERT_EQ(pid, waitpid(pid, &status, 0));
	ASSERT_LE(0, read(out[0], report, sizeof(report) - 1));
	close(out[0]);
	TH_LOG("%d load/unload cycles, %s", CHURN_CYCLES, report);
	EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0);
	/*
	 * The reader began before the first load and stops only after a pass
	 * that ended once the churn was over: its passes cover the churn.
	 */
	passes = atoi(report);
	EXPECT_LE(1, passes) TH_LOG("%s", report);
}

ALLOC_TAG_TEST_MAIN
