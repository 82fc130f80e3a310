/* SPDX-License-Identifier: GPL-2.0 */
/*
 * Small helpers shared by the alloc_tag selftests: reading the kernel log
 * and one-number files.
 */
#ifndef ALLOC_TAG_HELPERS_H
#define ALLOC_TAG_HELPERS_H

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <grp.h>
#include <libgen.h>
#include <sys/syscall.h>
#include <sys/wait.h>

/* A /dev/kmsg reader, from the oldest record or only for new ones. */
static inline int kmsg_open(int from_start)
{
	int fd = open("/dev/kmsg", O_RDONLY | O_NONBLOCK);

	if (fd >= 0 && !from_start)
		lseek(fd, 0, SEEK_END);
	return fd;
}

/* Appends the text of every record not read yet to @buf (NUL-terminated). */
static inline void kmsg_append(int fd, char *buf, size_t size)
{
	size_t used = strlen(buf);
	char rec[2048];
	ssize_t r;

	while ((r = read(fd, rec, sizeof(rec) - 1)) > 0 || (r < 0 && errno == EPIPE)) {
		char *text;

		if (r <= 0)
			continue;	/* EPIPE: records were overwritten */
		rec[r] = '\0';
		text = strchr(rec, ';');
		text = text ? text + 1 : rec;
		if (used + strlen(text) + 1 < size) {
			memcpy(buf + used, text, strlen(text) + 1);
			used += strlen(text);
		}
	}
}

/* The number in a one-number file, or @fallback. */
static inline long read_long(const char *path, long fallback)
{
	FILE *f = fopen(path, "r");
	long v = fallback;

	if (f) {
		if (fscanf(f, "%ld", &v) != 1)
			v = fallback;
		fclose(f);
	}
	return v;
}

/*
 * The errno of open(@path, @flags) by an unprivileged user (nobody), 0 if
 * it opened, -1 if that could not be tried. Needs root to drop to nobody.
 */
static inline int errno_as_nobody(const char *path, int flags)
{
	int status, fd;
	pid_t pid;

	if (geteuid())
		return -1;
	pid = fork();
	if (pid < 0)
		return -1;
	if (!pid) {
		if (setgroups(0, NULL) || setgid(65534) || setuid(65534))
			_exit(255);
		fd = open(path, flags);
		_exit(fd < 0 ? errno : 0);
	}
	if (waitpid(pid, &status, 0) != pid || !WIFEXITED(status) ||
	    WEXITSTATUS(status) == 255)
		return -1;
	return WEXITSTATUS(status);
}

/* Whether the kernel's log since boot has @text; -1 if it cannot be read. */
static inline int boot_log_has(const char *text)
{
	static char *log;
	int fd;

	if (!log) {
		fd = kmsg_open(1);
		if (fd < 0)
			return -1;
		log = calloc(1, 1 << 20);
		if (!log) {
			close(fd);
			return -1;
		}
		kmsg_append(fd, log, 1 << 20);
		close(fd);
	}
	return strstr(log, text) != NULL;
}

#define CONTRACT_FILE	"alloc_tag.contract"

/*
 * The value of contract @name (runner/contracts.py lists them) for the
 * kernel under test: ALLOC_TAG_CONTRACT_<name> from the environment, else
 * the NAME=value line of alloc_tag.contract beside this program (or in the
 * current directory). NULL when neither says. The value is in a buffer the
 * next call reuses.
 */
static inline const char *contract(const char *name)
{
	static char value[64];
	char key[96], path[4200], line[160], *dir;
	const char *env;
	ssize_t n;
	FILE *f;

	snprintf(key, sizeof(key), "ALLOC_TAG_CONTRACT_%s", name);
	env = getenv(key);
	if (env && *env)
		return env;
	n = readlink("/proc/self/exe", path, sizeof(path) - sizeof(CONTRACT_FILE) - 2);
	if (n > 0) {
		path[n] = '\0';
		dir = strrchr(path, '/');
		dir = dir ? dir + 1 : path;
		snprintf(dir, sizeof(path) - (dir - path), "%s", CONTRACT_FILE);
	}
	f = fopen(n > 0 ? path : CONTRACT_FILE, "r");
	if (!f)
		f = fopen(CONTRACT_FILE, "r");
	if (!f)
		return NULL;
	snprintf(key, sizeof(key), "%s=", name);
	value[0] = '\0';
	while (fgets(line, sizeof(line), f)) {
		if (strncmp(line, key, strlen(key)))
			continue;
		snprintf(value, sizeof(value), "%s", line + strlen(key));
		value[strcspn(value, "\n")] = '\0';
		break;
	}
	fclose(f);
	return value[0] ? value : NULL;
}

/* Whether contract @name has @value; -1 when the contract is not known. */
static inline int contract_is(const char *name, const char *value)
{
	const char *v = contract(name);

	return v ? !strcmp(v, value) : -1;
}

/* The skip reason of a test whose contract is not known. */
#define CONTRACT_UNKNOWN							\
	"contract unknown: run through the runner, or set ALLOC_TAG_CONTRACT_<NAME> (see " \
	CONTRACT_FILE ")"

/* Sets @var to contract @name's value (0 or 1 for @value), or skips. */
#define NEED_CONTRACT(var, name, value)						\
	do {									\
		var = contract_is(name, value);					\
		if (var < 0)							\
			SKIP(return, CONTRACT_UNKNOWN ": %s", name);		\
	} while (0)

/*
 * A helper module built against the running kernel: @name.ko in module/
 * beside this program (lib.mk builds TEST_GEN_MODS_DIR there), or beside
 * the module ALLOCPROF_TEST_MODULE names, which overrides. NULL when it is
 * not there. The path is in a buffer the next call reuses.
 */
static inline const char *helper_module(const char *name)
{
	const char *override = getenv("ALLOCPROF_TEST_MODULE");
	static char path[4096];
	char dir[4096];
	ssize_t n;

	if (override) {
		if (strlen(override) >= sizeof(dir))
			return NULL;
		memcpy(dir, override, strlen(override) + 1);
		snprintf(path, sizeof(path), "%s/%s.ko", dirname(dir), name);
	} else {
		n = readlink("/proc/self/exe", dir, sizeof(dir) - 1);
		if (n <= 0)
			return NULL;
		dir[n] = '\0';
		snprintf(path, sizeof(path), "%s/module/%s.ko", dirname(dir), name);
	}
	return access(path, R_OK) ? NULL : path;
}

/* finit_module(@path, @params): 0 or -errno. */
static inline int module_load(const char *path, const char *params)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	int ret;

	if (fd < 0)
		return -errno;
	ret = syscall(SYS_finit_module, fd, params, 0);
	close(fd);
	return ret ? -errno : 0;
}

/* delete_module(@name): 0 or -errno. */
static inline int module_unload(const char *name)
{
	return syscall(SYS_delete_module, name, O_NONBLOCK) ? -errno : 0;
}

#define ALLOC_TAG_SYSCTL	"/proc/sys/vm/mem_profiling"
#define ALLOC_TAG_COMPRESSED	"/proc/sys/vm/mem_profiling_compressed"
#define ALLOC_TAG_PROC		"/proc/allocinfo"

/*
 * The running kernel's CONFIG_@name ("MEM_ALLOC_PROFILING_DEBUG"): 'y',
 * 'm' or 'n', read from /proc/config.gz; CONFIG_@name=y|n in the
 * environment overrides it. 0 when neither tells.
 */
static inline char kernel_config(const char *name)
{
	char set[128], unset[160], line[512];
	const char *env;
	char found = 0;
	FILE *f;

	snprintf(set, sizeof(set), "CONFIG_%s", name);
	env = getenv(set);
	if (env && *env)
		return env[0];
	if (access("/proc/config.gz", R_OK))
		return 0;
	f = popen("gzip -dc /proc/config.gz 2>/dev/null || zcat /proc/config.gz", "r");
	if (!f)
		return 0;
	snprintf(unset, sizeof(unset), "# %s is not set\n", set);
	strcat(set, "=");
	while (fgets(line, sizeof(line), f)) {
		if (!strncmp(line, set, strlen(set)))
			found = line[strlen(set)];
		else if (!strcmp(line, unset))
			found = 'n';
	}
	if (pclose(f) != 0 && !found)
		return 0;
	/* Not listed: its dependencies are not met, so it is off. */
	return found ? found : 'n';
}

/* The value of sysctl.vm.mem_profiling= on the command line, or NULL. */
static inline char *boot_option(char *buf, size_t size)
{
	const char *key = " sysctl.vm.mem_profiling=";
	FILE *f = fopen("/proc/cmdline", "r");
	char *p;

	buf[0] = ' ';
	if (!f || !fgets(buf + 1, size - 1, f)) {
		if (f)
			fclose(f);
		return NULL;
	}
	fclose(f);
	p = strstr(buf, key);
	if (!p)
		return NULL;
	p += strlen(key);
	p[strcspn(p, "\n ")] = '\0';
	return p;
}

/*
 * kstrtobool() as the kernel parses it: -1 when malformed. @ed: the kernel
 * also takes e(nable)/d(isable), as 7.x does (taken with its grammar).
 */
static inline int kstrtobool_like(const char *s, int ed)
{
	if (ed && (s[0] == 'e' || s[0] == 'E'))
		return 1;
	if (ed && (s[0] == 'd' || s[0] == 'D'))
		return 0;
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

/*
 * What the kernel makes of its configuration and boot option. Kernels
 * that have vm.mem_profiling_compressed take {0|1|never}[,compressed];
 * older ones take "never" or any kstrtobool() value.
 */
struct profiling_boot {
	int known;		/* 0: the configuration or grammar is not known */
	int malformed;		/* the kernel rejects the option */
	int supported;		/* profiling can run in this boot */
	int enabled;		/* vm.mem_profiling as booted */
	int asked;		/* what the option asked for, before any give-up */
	int compressed;		/* tags in page flags */
	const char *option;	/* the option's value, or NULL */
};

static inline struct profiling_boot profiling_boot(char *buf, size_t size)
{
	struct profiling_boot b = { 0 };
	char by_default = kernel_config("MEM_ALLOC_PROFILING_ENABLED_BY_DEFAULT");
	const char *opt = boot_option(buf, size);
	int grammar7 = contract_is("BOOT_GRAMMAR", "compressed");

	b.option = opt;
	if (!by_default || grammar7 < 0)
		return b;
	b.known = 1;
	b.supported = b.enabled = b.asked = by_default == 'y';
	if (!opt)
		return b;
	if (!opt[0]) {
		b.malformed = 1;
	} else if (!strncmp(opt, "never", 5)) {
		b.supported = b.enabled = b.asked = 0;
	} else {
		const char *comma = strchr(opt, ',');
		int v = kstrtobool_like(opt, grammar7);

		if (grammar7 && comma && strcmp(comma + 1, "compressed"))
			v = -1;
		if (v < 0) {
			b.malformed = 1;
		} else {
			b.supported = 1;
			b.enabled = b.asked = v;
			b.compressed = grammar7 && comma;
		}
	}
	/* Compression needs free page flag bits; without, the kernel gives up. */
	if (b.compressed && boot_log_has("allocation tags cannot be references using") == 1)
		b.supported = b.enabled = 0;
	return b;
}

/*
 * Why a test that needs profiling counting cannot run in this boot, or
 * NULL when it can: the true reason, as the kernel and its boot show it.
 */
static inline const char *profiling_off_reason(void)
{
	char buf[4096];
	struct profiling_boot b;

	if (access(ALLOC_TAG_SYSCTL, F_OK))
		return "CONFIG_MEM_ALLOC_PROFILING is not set";
	if (read_long(ALLOC_TAG_SYSCTL, 0) == 1)
		return NULL;
	b = profiling_boot(buf, sizeof(buf));
	if (b.option && !b.malformed && !strncmp(b.option, "never", 5))
		return "profiling disabled at boot (sysctl.vm.mem_profiling=never)";
	if (b.option && !b.malformed && b.supported && !b.enabled) {
		static char why[128];

		snprintf(why, sizeof(why), "profiling off from boot (sysctl.vm.mem_profiling=%.60s)",
			 b.option);
		return why;
	}
	if (b.known && !b.supported && b.option && !b.malformed)
		return "profiling not supported in this boot: the kernel gave up on compression";
	if (b.known && !b.supported && b.option)
		return "profiling not supported in this boot: its sysctl.vm.mem_profiling= was rejected and CONFIG_MEM_ALLOC_PROFILING_ENABLED_BY_DEFAULT=n";
	if (b.known && !b.supported)
		return "profiling not supported in this boot: CONFIG_MEM_ALLOC_PROFILING_ENABLED_BY_DEFAULT=n and no sysctl.vm.mem_profiling= option";
	return "profiling switched off (vm.mem_profiling reads 0)";
}

/* Skips the test (and says why) unless /proc/allocinfo can be read. */
#define SKIP_WITHOUT_ALLOCINFO()						\
	do {									\
		if (access(ALLOC_TAG_PROC, F_OK)) {				\
			const char *why = profiling_off_reason();		\
			SKIP(return, "no " ALLOC_TAG_PROC ": %s",		\
			     why ? why : "profiling not supported in this boot");\
		}								\
	} while (0)

/* Skips the test (and says why) unless profiling is counting now. */
#define SKIP_UNLESS_COUNTING()							\
	do {									\
		const char *why = profiling_off_reason();			\
		if (why)							\
			SKIP(return, "%s", why);				\
	} while (0)

/*
 * The tests' main(): on a kernel without the feature, one plan-level skip
 * and exit code 4 (KSFT_SKIP), as the kselftest runner expects.
 */
#define ALLOC_TAG_TEST_MAIN							\
int main(int argc, char **argv)							\
{										\
	if (access(ALLOC_TAG_SYSCTL, F_OK)) {					\
		ksft_print_header();						\
		ksft_exit_skip("CONFIG_MEM_ALLOC_PROFILING is not set\n");	\
	}									\
	return test_harness_run(argc, argv);					\
}

#endif /* ALLOC_TAG_HELPERS_H */
