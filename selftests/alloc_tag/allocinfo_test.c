// SPDX-License-Identifier: GPL-2.0
/*
 * /proc/allocinfo as userspace sees it: its header, the format of every
 * line, its mode, and what reading it in chunks of any size gives.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <regex.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "../kselftest_harness.h"
#include "alloc_tag_helpers.h"

#define ALLOCINFO ALLOC_TAG_PROC
/* The version is the kernel's ALLOCINFO_VERSION contract. */
#define VERSION_LINE "allocinfo - version: "
#define COLUMNS_LINE "#     <size>  <calls> <tag info>\n"
#define HEADER_LEN (strlen(VERSION_LINE "1.0\n") + strlen(COLUMNS_LINE))

/* Reads the whole file with read(2) calls of @chunk bytes. */
static char *slurp(const char *path, size_t chunk, size_t *len)
{
	size_t cap = 1 << 20, n = 0;
	char *buf = malloc(cap + 1);
	char *tmp = malloc(chunk);
	ssize_t r;
	int fd = open(path, O_RDONLY);

	if (fd < 0 || !buf || !tmp) {
		free(buf);
		free(tmp);
		if (fd >= 0)
			close(fd);
		return NULL;
	}
	while ((r = read(fd, tmp, chunk)) > 0) {
		if (n + r > cap) {
			cap *= 2;
			buf = realloc(buf, cap + 1);
			if (!buf)
				break;
		}
		memcpy(buf + n, tmp, r);
		n += r;
	}
	close(fd);
	free(tmp);
	if (buf)
		buf[n] = '\0';
	*len = n;
	return buf;
}

/*
 * The header the kernel under test promises: "allocinfo - version: "
 * with its ALLOCINFO_VERSION contract, then the columns line. Returns its
 * length, 0 when the contract is not known.
 */
static size_t expected_header(char *buf, size_t size)
{
	const char *version = contract("ALLOCINFO_VERSION");

	if (!version)
		return 0;
	snprintf(buf, size, "%s%s\n%s", VERSION_LINE, version, COLUMNS_LINE);
	return strlen(buf);
}

TEST(header_is_exact)
{
	char want[128];
	size_t len, n;
	char *text;

	SKIP_WITHOUT_ALLOCINFO();
	n = expected_header(want, sizeof(want));
	if (!n)
		SKIP(return, CONTRACT_UNKNOWN ": ALLOCINFO_VERSION");
	text = slurp(ALLOCINFO, 4096, &len);
	ASSERT_NE(NULL, text);
	ASSERT_LE(n, len);
	EXPECT_EQ(0, strncmp(text, want, n)) TH_LOG("header was: %.80s; want: %s", text, want);
	free(text);
}

/*
 * "%12lli %8llu " then "file:line func:name" or "file:line [mod] func:name",
 * in version 2.0 " accurate:no" when the counters are not exact, and a
 * trailing space.
 */
TEST(every_line_matches_format)
{
	static const char * const rx[] = {
		"^ *-?[0-9]+ +[0-9]+ [^ ]+:[0-9]+ (\\[[^] ]+\\] )?func:[^ ]+ $",
		"^ *-?[0-9]+ +[0-9]+ [^ ]+:[0-9]+ (\\[[^] ]+\\] )?func:[^ ]+( accurate:no)? $",
	};
	size_t len, bad = 0, lines = 0;
	char *text, *line, *save;
	int marker;
	regex_t re;

	SKIP_WITHOUT_ALLOCINFO();
	NEED_CONTRACT(marker, "ACCURATE_MARKER", "yes");
	text = slurp(ALLOCINFO, 4096, &len);
	ASSERT_NE(NULL, text);
	ASSERT_EQ(0, regcomp(&re, rx[marker], REG_EXTENDED | REG_NOSUB));
	line = strtok_r(text + HEADER_LEN, "\n", &save);
	for (; line; line = strtok_r(NULL, "\n", &save)) {
		/* Widths: bytes right-aligned in 12, calls in 8. */
		bool ok = !regexec(&re, line, 0, NULL, 0) && strlen(line) > 22 &&
			  (line[12] == ' ' || line[11] != ' ') &&
			  line[strlen(line) - 1] == ' ';

		if (ok && line[12] == ' ' && line[21] != ' ')
			ok = false;
		if (!ok && bad++ < 5)
			TH_LOG("bad line: '%s'", line);
		lines++;
	}
	EXPECT_GT(lines, 0);
	EXPECT_EQ(0, bad);
	regfree(&re);
	free(text);
}

TEST(mode_is_0400_and_others_get_eacces)
{
	struct stat st;

	SKIP_WITHOUT_ALLOCINFO();
	ASSERT_EQ(0, stat(ALLOCINFO, &st));
	EXPECT_EQ(0400, st.st_mode & 07777);
	EXPECT_EQ(0, st.st_uid);
	if (geteuid())
		SKIP(return, "the EACCES check needs root to drop privileges");
	EXPECT_EQ(EACCES, errno_as_nobody(ALLOCINFO, O_RDONLY));
}

/*
 * The ALLOCINFO_UNSUPPORTED contract: "present", the file exists whenever
 * the feature is built; "absent", only when profiling is supported in this
 * boot, and the kernel says so when it is not.
 */
TEST(exists_exactly_when_supported)
{
	const char *msg = "Memory allocation profiling is not supported!";
	struct profiling_boot b;
	char buf[4096];
	int absent;

	NEED_CONTRACT(absent, "ALLOCINFO_UNSUPPORTED", "absent");
	b = profiling_boot(buf, sizeof(buf));
	if (!b.known)
		SKIP(return, "%s", "kernel config unknown: enable CONFIG_IKCONFIG_PROC or set CONFIG_MEM_ALLOC_PROFILING_ENABLED_BY_DEFAULT");
	ASSERT_LE(0, boot_log_has(msg)) TH_LOG("cannot read the kernel log (/dev/kmsg)");
	if (b.supported || !absent) {
		EXPECT_EQ(0, access(ALLOCINFO, F_OK));
		EXPECT_EQ(0, boot_log_has(msg));
	} else {
		EXPECT_EQ(-1, access(ALLOCINFO, F_OK));
		EXPECT_EQ(ENOENT, errno);
		EXPECT_EQ(1, boot_log_has(msg));
	}
}

TEST(no_negative_size_or_underflowed_calls)
{
	char *text, *line, *save;
	size_t len, bad = 0, lines = 0;

	SKIP_WITHOUT_ALLOCINFO();
	text = slurp(ALLOCINFO, 65536, &len);
	ASSERT_NE(NULL, text);
	line = strtok_r(text + HEADER_LEN, "\n", &save);
	for (; line; line = strtok_r(NULL, "\n", &save)) {
		long long bytes;
		unsigned long long calls;

		lines++;
		if (sscanf(line, "%lld %llu", &bytes, &calls) != 2 || bytes < 0 ||
		    calls > (unsigned long long)LLONG_MAX) {
			if (bad++ < 5)
				TH_LOG("underflow: '%s'", line);
		}
	}
	/* Profiling counts in every boot this test runs in: tags exist. */
	EXPECT_LT(0, lines);
	EXPECT_EQ(0, bad);
	free(text);
}

/* The tag part of each line: what must not depend on how it was read. */
static size_t tags_of(char *text, char ***out)
{
	size_t n = 0, cap = 4096;
	char **tags = malloc(cap * sizeof(*tags));
	char *line, *save;

	line = strtok_r(text, "\n", &save);
	for (; line && tags; line = strtok_r(NULL, "\n", &save)) {
		char *p = line;

		/* Skip the two counter fields; keep the header as is. */
		if (line[0] == ' ' || (line[0] >= '0' && line[0] <= '9') || line[0] == '-') {
			p += strspn(p, " ");
			p += strcspn(p, " ");
			p += strspn(p, " ");
			p += strcspn(p, " ");
		}
		if (n == cap)
			tags = realloc(tags, (cap *= 2) * sizeof(*tags));
		tags[n++] = p;
	}
	*out = tags;
	return n;
}

TEST(chunked_reads_give_the_same_lines)
{
	static const size_t chunks[] = { 1, 4096, 1 << 20 };
	char *text[3], **tags[3];
	size_t len, n[3], i, j;

	SKIP_WITHOUT_ALLOCINFO();
	for (i = 0; i < 3; i++) {
		text[i] = slurp(ALLOCINFO, chunks[i], &len);
		ASSERT_NE(NULL, text[i]);
		EXPECT_EQ(text[i], strstr(text[i], "allocinfo - version:"));
		EXPECT_EQ(NULL, strstr(text[i] + 1, "allocinfo - version:"))
			TH_LOG("header repeated with %zu-byte reads", chunks[i]);
		n[i] = tags_of(text[i], &tags[i]);
	}
	for (i = 1; i < 3; i++) {
		EXPECT_EQ(n[0], n[i]) TH_LOG("%zu-byte reads", chunks[i]);
		for (j = 0; j < n[0] && j < n[i]; j++)
			if (strcmp(tags[0][j], tags[i][j])) {
				TH_LOG("line %zu differs: '%s' vs '%s'", j, tags[0][j], tags[i][j]);
				EXPECT_EQ(0, 1);
				break;
			}
	}
	for (i = 0; i < 3; i++) {
		free(tags[i]);
		free(text[i]);
	}
}

/* Address of a symbol in /proc/kallsyms, 0 if not found or hidden. */
static unsigned long long ksym(const char *name)
{
	unsigned long long addr, found = 0;
	char sym[256], type;
	FILE *f = fopen("/proc/kallsyms", "r");

	if (!f)
		return 0;
	while (fscanf(f, "%llx %c %255s%*[^\n]", &addr, &type, sym) == 3)
		if (!strcmp(sym, name)) {
			found = addr;
			break;
		}
	fclose(f);
	return found;
}

/*
 * struct alloc_tag: struct codetag (two u32, three pointers) and a
 * pointer, each struct __aligned(8): 40 bytes on 64-bit, 32 on 32-bit
 * (24 + 4 padded to 8), where the unpadded sum would be 24.
 */
#define ALIGN8(x) (((x) + 7) & ~(size_t)7)
#define CODETAG_SIZE ALIGN8(2 * sizeof(unsigned int) + 3 * sizeof(void *))
#define ALLOC_TAG_SIZE ALIGN8(CODETAG_SIZE + sizeof(void *))

TEST(builtin_lines_match_tag_section)
{
	unsigned long long start, stop;
	char *text, *line, *save;
	size_t len, builtin = 0;

	SKIP_WITHOUT_ALLOCINFO();
	start = ksym("__start_alloc_tags");
	stop = ksym("__stop_alloc_tags");
	if (!start || !stop)
		SKIP(return, "tag section symbols not visible in /proc/kallsyms");
	text = slurp(ALLOCINFO, 65536, &len);
	ASSERT_NE(NULL, text);
	line = strtok_r(text + HEADER_LEN, "\n", &save);
	for (; line; line = strtok_r(NULL, "\n", &save))
		if (!strstr(line, " ["))
			builtin++;
	EXPECT_EQ(0, (stop - start) % ALLOC_TAG_SIZE);
	EXPECT_EQ((stop - start) / ALLOC_TAG_SIZE, builtin);
	free(text);
}

ALLOC_TAG_TEST_MAIN
