// SPDX-License-Identifier: GPL-2.0
/*
 * The ioctl interface of /proc/allocinfo (include/uapi/linux/alloc_tag.h),
 * checked exactly against the text of the same file and against the tags
 * of a helper module whose bytes and calls are known
 * (module/alloc_tag_ioctl_mod.c):
 *
 *  - the ABI: ioctl numbers, struct sizes and offsets, at compile time;
 *  - a GET_NEXT walk equals the text, line for line, counters included;
 *  - every filter alone and combined, against the text and the module;
 *  - the errors: EINVAL, ENOENT, ENOTTY, EFAULT, and the restart after
 *    the end;
 *  - one ioctl iterator per open file, apart from read();
 *  - the content id moves once per load and unload of a tagged module,
 *    and not for a module without tags.
 *
 * Kernels without the interface (before 7.x) skip with that reason.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <unistd.h>

#if __has_include("linux/alloc_tag.h")
#include <linux/alloc_tag.h>
#endif

#include "../kselftest_harness.h"
#include "alloc_tag_helpers.h"

#define MOD "alloc_tag_ioctl_mod"
#define TAGLESS_MOD "alloc_tag_free_mod"
#define LONG_FUNC \
	"ioctl_mod_function_whose_name_is_longer_than_the_sixty_three_characters_kept"

#ifdef ALLOCINFO_IOC_BASE
#define HAVE_IOCTL 1

/* The helper module's tags, in the order of its source file. */
static const struct {
	const char *func;
	int pages, calls, accurate;
} mod_tags[] = {
	{ "ioctl_mod_one", 1, 1, 1 },
	{ "ioctl_mod_four", 4, 1, 1 },
	{ "ioctl_mod_twice", 2, 2, 1 },
	{ "ioctl_mod_marked", 2, 1, 0 },
	{ LONG_FUNC, 1, 1, 1 },
};

#define N_MOD_TAGS ARRAY_SIZE(mod_tags)
/* The long name is matched on its last 63 characters only. */
_Static_assert(sizeof(LONG_FUNC) - 1 > 63, "LONG_FUNC must be longer than 63 characters");

/* One line of the text, or one answer of the ioctl. */
struct tag {
	char mod[128];
	char func[256];
	char file[256];
	unsigned long long line;
	long long bytes;
	unsigned long long calls;
	int accurate;
};

struct tags {
	struct tag *v;
	size_t n, cap;
};

static void tags_free(struct tags *t)
{
	free(t->v);
	memset(t, 0, sizeof(*t));
}

static struct tag *tags_add(struct tags *t)
{
	if (t->n == t->cap) {
		size_t cap = t->cap ? 2 * t->cap : 1024;
		struct tag *v = realloc(t->v, cap * sizeof(*v));

		if (!v)
			return NULL;
		t->v = v;
		t->cap = cap;
	}
	memset(&t->v[t->n], 0, sizeof(t->v[0]));
	return &t->v[t->n++];
}

/*
 * Room for @cap tags, every page of it touched: filling the list later
 * maps no new memory (and allocates no page tables) while counters are
 * compared.
 */
static int tags_reserve(struct tags *t, size_t cap)
{
	struct tag *v = realloc(t->v, cap * sizeof(*v));

	if (!v)
		return -1;
	memset(v, 0, cap * sizeof(*v));
	t->v = v;
	t->cap = cap;
	t->n = 0;
	return 0;
}

/* A name as the ioctl gives it: its last 63 characters. */
static const char *last63(const char *s)
{
	size_t len = strlen(s);

	return len > 63 ? s + len - 63 : s;
}

/*
 * Parses "<bytes> <calls> <file>:<line> [<mod>] func:<name>[ accurate:no] "
 * into @t, names cut to their last 63 characters. 0 on success.
 */
static int parse_line(char *s, struct tag *t)
{
	char *tok, *save, *colon;
	int n = 0;

	if (sscanf(s, "%lld %llu %n", &t->bytes, &t->calls, &n) != 2 || !n)
		return -1;
	t->accurate = 1;
	for (tok = strtok_r(s + n, "\n ", &save); tok; tok = strtok_r(NULL, "\n ", &save)) {
		size_t len = strlen(tok);

		if (tok[0] == '[' && tok[len - 1] == ']') {
			tok[len - 1] = '\0';
			snprintf(t->mod, sizeof(t->mod), "%.63s", last63(tok + 1));
		} else if (!strncmp(tok, "func:", 5)) {
			snprintf(t->func, sizeof(t->func), "%.63s", last63(tok + 5));
		} else if (!strcmp(tok, "accurate:no")) {
			t->accurate = 0;
		} else if (strrchr(tok, ':') && !t->file[0]) {
			colon = strrchr(tok, ':');
			*colon = '\0';
			snprintf(t->file, sizeof(t->file), "%.63s", last63(tok));
			t->line = strtoull(colon + 1, NULL, 10);
		} else {
			return -1;
		}
	}
	return t->func[0] && t->file[0] ? 0 : -1;
}

/*
 * The text of @fd from its start, parsed (the header skipped). One buffer
 * serves every read, so reading maps new memory only the first time.
 */
static int read_text(int fd, struct tags *t)
{
	static size_t size;
	static char *buf;
	char *line, *save;
	size_t used = 0;
	ssize_t r;

	t->n = 0;
	if (lseek(fd, 0, SEEK_SET))
		return -1;
	for (;;) {
		if (used + 1 >= size) {
			char *bigger = realloc(buf, size ? 2 * size : 4 << 20);

			if (!bigger)
				return -1;
			buf = bigger;
			size = size ? 2 * size : 4 << 20;
			memset(buf + used, 0, size - used);
		}
		r = read(fd, buf + used, size - used - 1);
		if (r <= 0)
			break;
		used += r;
	}
	if (r < 0)
		return -1;
	buf[used] = '\0';
	for (line = strtok_r(buf, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
		struct tag *tag;

		if (!strncmp(line, "allocinfo - version:", 20) || line[0] == '#')
			continue;
		tag = tags_add(t);
		if (!tag || parse_line(line, tag))
			return -1;
	}
	return 0;
}

static int same_tag(const struct tag *a, const struct tag *b)
{
	return !strcmp(a->mod, b->mod) && !strcmp(a->func, b->func) &&
	       !strcmp(a->file, b->file) && a->line == b->line;
}

static int same_counts(const struct tag *a, const struct tag *b)
{
	return a->bytes == b->bytes && a->calls == b->calls && a->accurate == b->accurate;
}

static const char *describe(const struct tag *t)
{
	static char out[2][768];
	static int i;

	i = !i;
	snprintf(out[i], sizeof(out[i]), "%lld %llu %s:%llu [%s] func:%s%s", t->bytes,
		 t->calls, t->file, t->line, t->mod, t->func, t->accurate ? "" : " accurate:no");
	return out[i];
}

enum counts { IGNORE_COUNTS, ALL_COUNTS, STABLE_COUNTS };

/*
 * The first difference between two lists of tags, or NULL: identity
 * always; counters never, always, or (STABLE_COUNTS) for the tags whose
 * counters in @want and @again are the same.
 */
static const char *first_difference(const struct tags *got, const struct tags *want,
				    enum counts mode, const struct tags *again)
{
	static char why[2048];
	size_t i;

	for (i = 0; i < got->n && i < want->n; i++) {
		int check = mode == ALL_COUNTS ||
			    (mode == STABLE_COUNTS && i < again->n &&
			     same_counts(&again->v[i], &want->v[i]));

		if (!same_tag(&got->v[i], &want->v[i]) ||
		    (check && !same_counts(&got->v[i], &want->v[i]))) {
			snprintf(why, sizeof(why), "entry %zu: got '%s', want '%s'", i,
				 describe(&got->v[i]), describe(&want->v[i]));
			return why;
		}
	}
	if (got->n != want->n) {
		snprintf(why, sizeof(why), "got %zu entries, want %zu", got->n, want->n);
		return why;
	}
	return NULL;
}

static void keep_if(struct tags *out, const struct tags *in,
		    int (*keep)(const struct tag *, const void *), const void *arg)
{
	size_t i;

	tags_free(out);
	for (i = 0; i < in->n; i++)
		if (keep(&in->v[i], arg))
			*tags_add(out) = in->v[i];
}

static int is_mod(const struct tag *t, const void *mod)
{
	return !strcmp(t->mod, mod);
}

static int has_func(const struct tag *t, const void *func)
{
	return !strcmp(t->func, func);
}

static int has_file(const struct tag *t, const void *file)
{
	return !strcmp(t->file, file);
}

static int has_line(const struct tag *t, const void *line)
{
	return t->line == *(const unsigned long long *)line;
}

static int is_accurate(const struct tag *t, const void *accurate)
{
	return t->accurate == *(const int *)accurate;
}

/* The ABI, as a 64-bit and a 32-bit process see it alike. */
_Static_assert(ALLOCINFO_STR_SIZE == 64, "name size");
_Static_assert(sizeof(struct allocinfo_content_id) == 8, "content_id size");
_Static_assert(offsetof(struct allocinfo_tag, modname) == 0, "tag.modname");
_Static_assert(offsetof(struct allocinfo_tag, function) == 64, "tag.function");
_Static_assert(offsetof(struct allocinfo_tag, filename) == 128, "tag.filename");
_Static_assert(offsetof(struct allocinfo_tag, lineno) == 192, "tag.lineno");
_Static_assert(sizeof(struct allocinfo_tag) == 200, "tag size");
_Static_assert(offsetof(struct allocinfo_counter, bytes) == 0, "counter.bytes");
_Static_assert(offsetof(struct allocinfo_counter, calls) == 8, "counter.calls");
_Static_assert(offsetof(struct allocinfo_counter, accurate) == 16, "counter.accurate");
_Static_assert(sizeof(struct allocinfo_counter) == 24, "counter size");
_Static_assert(_Alignof(struct allocinfo_counter) == 8, "counter alignment");
_Static_assert(offsetof(struct allocinfo_tag_data, counter) == 200, "data.counter");
_Static_assert(sizeof(struct allocinfo_tag_data) == 224, "data size");
_Static_assert(offsetof(struct allocinfo_filter, mask) == 0, "filter.mask");
_Static_assert(offsetof(struct allocinfo_filter, fields) == 8, "filter.fields");
_Static_assert(offsetof(struct allocinfo_filter, min_size) == 208, "filter.min_size");
_Static_assert(offsetof(struct allocinfo_filter, max_size) == 216, "filter.max_size");
_Static_assert(offsetof(struct allocinfo_filter, inaccurate) == 224, "filter.inaccurate");
_Static_assert(sizeof(struct allocinfo_filter) == 232, "filter size");
_Static_assert(offsetof(struct allocinfo_get_at, pos) == 0, "get_at.pos");
_Static_assert(offsetof(struct allocinfo_get_at, filter) == 8, "get_at.filter");
_Static_assert(offsetof(struct allocinfo_get_at, data) == 240, "get_at.data");
_Static_assert(sizeof(struct allocinfo_get_at) == 464, "get_at size");
_Static_assert(ALLOCINFO_IOC_BASE == 0xA6, "ioctl type");
_Static_assert(_IOC(_IOC_READ, 0xA6, 0, 8) == ALLOCINFO_IOC_CONTENT_ID, "CONTENT_ID");
_Static_assert(_IOC(_IOC_READ | _IOC_WRITE, 0xA6, 1, 464) == ALLOCINFO_IOC_GET_AT, "GET_AT");
_Static_assert(_IOC(_IOC_READ, 0xA6, 2, 224) == ALLOCINFO_IOC_GET_NEXT, "GET_NEXT");
_Static_assert(ALLOCINFO_FILTER_MASK_MODNAME == 1 && ALLOCINFO_FILTER_MASK_FUNCTION == 2 &&
	       ALLOCINFO_FILTER_MASK_FILENAME == 4 && ALLOCINFO_FILTER_MASK_LINENO == 8 &&
	       ALLOCINFO_FILTER_MASK_INACCURATE == 16 && ALLOCINFO_FILTER_MASK_MIN_SIZE == 32 &&
	       ALLOCINFO_FILTER_MASK_MAX_SIZE == 64 && ALLOCINFO_FILTER_MASKS == 127,
	       "filter masks");
#if defined(__x86_64__) || defined(__i386__) || defined(__aarch64__) || defined(__riscv)
/* The generic encoding these arches use: the numbers programs were built with. */
_Static_assert((unsigned int)ALLOCINFO_IOC_CONTENT_ID == 0x8008A600U, "CONTENT_ID number");
_Static_assert((unsigned int)ALLOCINFO_IOC_GET_AT == 0xC1D0A601U, "GET_AT number");
_Static_assert((unsigned int)ALLOCINFO_IOC_GET_NEXT == 0x80E0A602U, "GET_NEXT number");
#endif

static void from_ioctl(struct tag *t, const struct allocinfo_tag_data *d)
{
	snprintf(t->mod, sizeof(t->mod), "%.*s", ALLOCINFO_STR_SIZE, d->tag.modname);
	snprintf(t->func, sizeof(t->func), "%.*s", ALLOCINFO_STR_SIZE, d->tag.function);
	snprintf(t->file, sizeof(t->file), "%.*s", ALLOCINFO_STR_SIZE, d->tag.filename);
	t->line = d->tag.lineno;
	t->bytes = d->counter.bytes;
	t->calls = d->counter.calls;
	t->accurate = d->counter.accurate;
}

static int get_next(int fd, struct tag *t)
{
	struct allocinfo_tag_data d;

	memset(&d, 0xa5, sizeof(d));
	if (ioctl(fd, ALLOCINFO_IOC_GET_NEXT, &d))
		return -errno;
	from_ioctl(t, &d);
	return 0;
}

static int get_at(int fd, __u64 pos, const struct allocinfo_filter *f, struct tag *t)
{
	struct allocinfo_get_at g;

	memset(&g, 0, sizeof(g));
	g.pos = pos;
	if (f)
		g.filter = *f;
	if (ioctl(fd, ALLOCINFO_IOC_GET_AT, &g))
		return -errno;
	if (t)
		from_ioctl(t, &g.data);
	return 0;
}

static __u64 content_id(int fd)
{
	struct allocinfo_content_id id = { .id = ~0ULL };

	return ioctl(fd, ALLOCINFO_IOC_CONTENT_ID, &id) ? ~0ULL : id.id;
}

/* Every entry from the current position on, until ENOENT. 0 or -errno. */
static int walk(int fd, struct tags *t)
{
	struct tag one;
	int ret;

	while (!(ret = get_next(fd, &one)))
		*tags_add(t) = one;
	return ret == -ENOENT ? 0 : ret;
}

/* The entries @f selects, on a fresh file: GET_AT 0, then GET_NEXT. */
static int query(const struct allocinfo_filter *f, struct tags *t)
{
	int fd = open(ALLOC_TAG_PROC, O_RDONLY), ret;
	struct tag first;

	tags_free(t);
	if (fd < 0)
		return -errno;
	ret = get_at(fd, 0, f, &first);
	if (!ret) {
		*tags_add(t) = first;
		ret = walk(fd, t);
	}
	close(fd);
	return ret;
}

/* The built-in function (or file) with the most tags: NULL if unreadable or none. */
static const char *most_common(int file)
{
	static char best[2][256];
	struct tags all = { 0 };
	size_t i, j, n, most = 0;
	int fd = open(ALLOC_TAG_PROC, O_RDONLY);

	best[file][0] = '\0';
	if (fd < 0 || read_text(fd, &all)) {
		if (fd >= 0)
			close(fd);
		return NULL;
	}
	close(fd);
	for (i = 0; i < all.n; i++) {
		const char *name = file ? all.v[i].file : all.v[i].func;

		if (all.v[i].mod[0])
			continue;
		for (j = i, n = 0; j < all.n; j++)
			n += !all.v[j].mod[0] && !strcmp(name, file ? all.v[j].file : all.v[j].func);
		if (n > most) {
			most = n;
			snprintf(best[file], sizeof(best[file]), "%s", name);
		}
	}
	tags_free(&all);
	return best[file][0] ? best[file] : NULL;
}

static void set_name(char *field, const char *name)
{
	const char *last = last63(name);

	memset(field, 0, ALLOCINFO_STR_SIZE);
	memcpy(field, last, strlen(last));
}


/*
 * The helper module's tags as the text shows them, checked exactly, in
 * the order of mod_tags[] (the text's order is the linker's).
 */
static const char *mod_text(struct tags *mod)
{
	static char why[1024];
	long ps = sysconf(_SC_PAGESIZE);
	struct tags all = { 0 }, lines = { 0 };
	int fd = open(ALLOC_TAG_PROC, O_RDONLY);
	size_t i, j;

	if (fd < 0 || read_text(fd, &all))
		return "cannot read " ALLOC_TAG_PROC;
	close(fd);
	keep_if(&lines, &all, is_mod, MOD);
	tags_free(&all);
	tags_free(mod);
	if (lines.n != N_MOD_TAGS) {
		snprintf(why, sizeof(why), "%zu lines of [%s], want %zu", lines.n, MOD, N_MOD_TAGS);
		tags_free(&lines);
		return why;
	}
	for (i = 0; i < N_MOD_TAGS; i++) {
		struct tag want = { 0 }, *got = NULL;

		for (j = 0; j < lines.n; j++)
			if (!strcmp(lines.v[j].func, last63(mod_tags[i].func)))
				got = &lines.v[j];
		want = got ? *got : want;
		snprintf(want.func, sizeof(want.func), "%s", last63(mod_tags[i].func));
		want.bytes = mod_tags[i].pages * ps;
		want.calls = mod_tags[i].calls;
		want.accurate = mod_tags[i].accurate;
		if (!got || !same_counts(&want, got)) {
			snprintf(why, sizeof(why), "[%s] func:%s: got '%s', want '%s'", MOD,
				 mod_tags[i].func, got ? describe(got) : "no line", describe(&want));
			tags_free(&lines);
			return why;
		}
		*tags_add(mod) = *got;
	}
	tags_free(&lines);
	return NULL;
}

#else
#define HAVE_IOCTL 0
#endif /* ALLOCINFO_IOC_BASE */

/* Why this build of the cases cannot run them (see ioctl_compat_test.c). */
static const char *cannot_run;

/* Skips unless this kernel has the ioctl and this program was built for it. */
#define NEED_IOCTL()								\
	do {									\
		int _fd;							\
		if (cannot_run)							\
			SKIP(return, "%s", cannot_run);				\
		SKIP_WITHOUT_ALLOCINFO();					\
		switch (contract_is("IOCTL", "yes")) {				\
		case -1:							\
			SKIP(return, CONTRACT_UNKNOWN ": IOCTL");		\
		case 0:								\
			SKIP(return, "not in this kernel: no include/uapi/linux/alloc_tag.h"); \
		}								\
		_fd = open(ALLOC_TAG_PROC, O_RDONLY);				\
		ASSERT_LE(0, _fd);						\
		/* The tree ships the ioctl: ENOTTY is a failure. */		\
		ASSERT_FALSE(ioctl(_fd, _IOC(_IOC_READ, 0xA6, 0, 8), NULL) &&	\
			     errno == ENOTTY) TH_LOG("/proc/allocinfo has no ioctl"); \
		close(_fd);							\
		if (!HAVE_IOCTL)						\
			SKIP(return, "built without <linux/alloc_tag.h>: build with the running kernel's uapi headers (KHDR_INCLUDES)"); \
	} while (0)

/* Loads the helper module, or skips saying why it cannot. */
#define NEED_MODULE()								\
	do {									\
		const char *_path;						\
		SKIP_UNLESS_COUNTING();						\
		_path = helper_module(MOD);					\
		if (!_path)							\
			SKIP(return, "helper module " MOD ".ko not built (module/)"); \
		module_unload(MOD);						\
		ASSERT_EQ(0, module_load(_path, ""));				\
	} while (0)

TEST(abi_is_stable)
{
	NEED_IOCTL();
#if HAVE_IOCTL
	{
		/* The layout was checked when this program was compiled. */
		int fd = open(ALLOC_TAG_PROC, O_RDONLY);
		struct tags t = { 0 };

		ASSERT_LE(0, fd);
		EXPECT_NE(~0ULL, content_id(fd));
		EXPECT_EQ(0, get_at(fd, 0, NULL, NULL));
		EXPECT_EQ(0, walk(fd, &t));
		EXPECT_LT(0, t.n);
		tags_free(&t);
		close(fd);
	}
#endif
}

/*
 * A walk on a fresh file equals the text: the same tags in the same
 * order, and the same counters for every tag that did not change while
 * it was read (the text is read before and after the walk, through one
 * open file whose buffer stays allocated).
 */
TEST(walk_equals_text)
{
	NEED_IOCTL();
	NEED_MODULE();
#if HAVE_IOCTL
	{
		struct tags before = { 0 }, after = { 0 }, got = { 0 }, mod = { 0 };
		const char *why = mod_text(&mod);
		int tries, text, fd;

		EXPECT_FALSE(why != NULL) TH_LOG("%s", why);
		text = open(ALLOC_TAG_PROC, O_RDONLY);
		ASSERT_LE(0, text);
		/* All the memory the comparison needs, mapped beforehand. */
		ASSERT_EQ(0, read_text(text, &before));
		ASSERT_EQ(0, tags_reserve(&before, 2 * before.n));
		ASSERT_EQ(0, tags_reserve(&after, before.cap));
		ASSERT_EQ(0, tags_reserve(&got, before.cap));
		for (tries = 0; tries < 5; tries++) {
			fd = open(ALLOC_TAG_PROC, O_RDONLY);
			ASSERT_LE(0, fd);
			ASSERT_EQ(0, read_text(text, &before));
			got.n = 0;
			ASSERT_EQ(0, walk(fd, &got));
			ASSERT_EQ(0, read_text(text, &after));
			close(fd);
			/* The tags themselves never differ. */
			why = first_difference(&got, &before, IGNORE_COUNTS, NULL);
			ASSERT_FALSE(why != NULL) TH_LOG("%s", why);
			why = first_difference(&got, &before, STABLE_COUNTS, &after);
			if (!why) {
				TH_LOG("%zu tags, try %d", got.n, tries);
				break;
			}
			TH_LOG("try %d: %s", tries, why);
		}
		EXPECT_FALSE(why != NULL) TH_LOG("%s", why);
		close(text);
		tags_free(&before);
		tags_free(&after);
		tags_free(&got);
		tags_free(&mod);
	}
#endif
	EXPECT_EQ(0, module_unload(MOD));
}

#if HAVE_IOCTL
/*
 * The entries @f selects equal the text's lines that @keep selects, tags
 * and counters; for tags outside the helper module only the tags.
 */
static const char *filter_equals(const struct allocinfo_filter *f,
				 int (*keep)(const struct tag *, const void *), const void *arg)
{
	struct tags all = { 0 }, want = { 0 }, got = { 0 };
	static char why[2048];
	const char *diff;
	size_t i;
	int fd = open(ALLOC_TAG_PROC, O_RDONLY), ret;

	if (fd < 0 || read_text(fd, &all))
		return "cannot read " ALLOC_TAG_PROC;
	close(fd);
	keep_if(&want, &all, keep, arg);
	ret = query(f, &got);
	/* ENOENT (no entry at all) is the answer exactly when none is wanted. */
	if (ret && !(ret == -ENOENT && !want.n)) {
		snprintf(why, sizeof(why), "query: %s", strerror(-ret));
		return why;
	}
	/* Counters outside the module move: compare them only in it. */
	for (i = 0; i < got.n && i < want.n; i++)
		if (strcmp(want.v[i].mod, MOD)) {
			got.v[i].bytes = want.v[i].bytes;
			got.v[i].calls = want.v[i].calls;
		}
	diff = first_difference(&got, &want, ALL_COUNTS, NULL);
	if (diff)
		snprintf(why, sizeof(why), "mask %#llx: %s", (unsigned long long)f->mask, diff);
	tags_free(&all);
	tags_free(&want);
	tags_free(&got);
	return diff ? why : NULL;
}

/* The entries @f selects equal the text's lines that @keep selects. */
#define EXPECT_FILTER_EQUALS(f, keep, arg)					\
	do {									\
		const char *_why = filter_equals(f, keep, arg);			\
		EXPECT_FALSE(_why != NULL) TH_LOG("%s", _why);			\
	} while (0)
#endif

TEST(filter_by_modname)
{
	NEED_IOCTL();
	NEED_MODULE();
#if HAVE_IOCTL
	{
		struct allocinfo_filter f = { .mask = ALLOCINFO_FILTER_MASK_MODNAME };
		struct tags mod = { 0 };
		const char *why = mod_text(&mod);

		ASSERT_FALSE(why != NULL) TH_LOG("%s", why);
		set_name(f.fields.modname, MOD);
		EXPECT_FILTER_EQUALS(&f, is_mod, MOD);
		/* "" is built-in code only. */
		set_name(f.fields.modname, "");
		EXPECT_FILTER_EQUALS(&f, is_mod, "");
		set_name(f.fields.modname, "no_such_module");
		EXPECT_EQ(-ENOENT, query(&f, &mod));
		tags_free(&mod);
	}
#endif
	EXPECT_EQ(0, module_unload(MOD));
}

TEST(filter_by_function)
{
	NEED_IOCTL();
	NEED_MODULE();
#if HAVE_IOCTL
	{
		struct allocinfo_filter f = { .mask = ALLOCINFO_FILTER_MASK_FUNCTION };
		const char *why, *name;
		size_t i;

		for (i = 0; i < N_MOD_TAGS; i++) {
			set_name(f.fields.function, mod_tags[i].func);
			why = filter_equals(&f, has_func, last63(mod_tags[i].func));
			EXPECT_FALSE(why != NULL) TH_LOG("%s: %s", mod_tags[i].func, why);
		}
		/* The built-in function with the most sites: all of them, in order. */
		name = most_common(0);
		ASSERT_NE(NULL, name) TH_LOG("no built-in function in " ALLOC_TAG_PROC);
		set_name(f.fields.function, name);
		why = filter_equals(&f, has_func, name);
		EXPECT_FALSE(why != NULL) TH_LOG("%s: %s", name, why);
	}
#endif
	EXPECT_EQ(0, module_unload(MOD));
}

TEST(filter_by_filename_and_line)
{
	NEED_IOCTL();
	NEED_MODULE();
#if HAVE_IOCTL
	{
		struct allocinfo_filter f = { 0 };
		struct tags mod = { 0 };
		const char *why = mod_text(&mod), *file;
		unsigned long long line;

		ASSERT_FALSE(why != NULL) TH_LOG("%s", why);
		f.mask = ALLOCINFO_FILTER_MASK_FILENAME;
		set_name(f.fields.filename, mod.v[0].file);
		EXPECT_FILTER_EQUALS(&f, has_file, mod.v[0].file);
		/* The built-in file with the most sites. */
		file = most_common(1);
		ASSERT_NE(NULL, file) TH_LOG("no built-in file in " ALLOC_TAG_PROC);
		set_name(f.fields.filename, file);
		why = filter_equals(&f, has_file, file);
		EXPECT_FALSE(why != NULL) TH_LOG("%s: %s", file, why);
		/* Every tag on that line number, in any file. */
		f.mask = ALLOCINFO_FILTER_MASK_LINENO;
		line = mod.v[1].line;
		f.fields.lineno = line;
		EXPECT_FILTER_EQUALS(&f, has_line, &line);
		tags_free(&mod);
	}
#endif
	EXPECT_EQ(0, module_unload(MOD));
}

TEST(filter_by_accuracy)
{
	NEED_IOCTL();
	NEED_MODULE();
#if HAVE_IOCTL
	{
		struct allocinfo_filter f = { .mask = ALLOCINFO_FILTER_MASK_INACCURATE };
		struct tags got = { 0 };
		int accurate;
		size_t i;

		/* Exactly the lines that end in " accurate:no", the module's one among them. */
		f.inaccurate = 1;
		accurate = 0;
		EXPECT_FILTER_EQUALS(&f, is_accurate, &accurate);
		EXPECT_EQ(0, query(&f, &got));
		for (i = 0; i < got.n; i++)
			TH_LOG("inaccurate: %s", describe(&got.v[i]));
		tags_free(&got);
		/* Any non-zero value means inaccurate. */
		f.inaccurate = 0x100000000ULL;
		EXPECT_FILTER_EQUALS(&f, is_accurate, &accurate);
		f.inaccurate = 0;
		accurate = 1;
		EXPECT_FILTER_EQUALS(&f, is_accurate, &accurate);
	}
#endif
	EXPECT_EQ(0, module_unload(MOD));
}

#if HAVE_IOCTL
static int mod_pages_between(const struct tag *t, const void *range)
{
	const long long *r = range;

	return !strcmp(t->mod, MOD) && t->bytes >= r[0] && t->bytes <= r[1];
}
#endif

TEST(filter_by_size)
{
	NEED_IOCTL();
	NEED_MODULE();
#if HAVE_IOCTL
	{
		struct allocinfo_filter f = { 0 };
		long long ps = sysconf(_SC_PAGESIZE), r[2];

		set_name(f.fields.modname, MOD);
		/* Bounds are inclusive. */
		f.mask = ALLOCINFO_FILTER_MASK_MODNAME | ALLOCINFO_FILTER_MASK_MIN_SIZE |
			 ALLOCINFO_FILTER_MASK_MAX_SIZE;
		f.min_size = f.max_size = 4 * ps;
		r[0] = r[1] = 4 * ps;
		EXPECT_FILTER_EQUALS(&f, mod_pages_between, r);
		f.mask = ALLOCINFO_FILTER_MASK_MODNAME | ALLOCINFO_FILTER_MASK_MIN_SIZE;
		f.min_size = 2 * ps;
		r[0] = 2 * ps;
		r[1] = 1LL << 62;
		EXPECT_FILTER_EQUALS(&f, mod_pages_between, r);
		f.mask = ALLOCINFO_FILTER_MASK_MODNAME | ALLOCINFO_FILTER_MASK_MAX_SIZE;
		f.max_size = 2 * ps - 1;
		r[0] = 0;
		r[1] = 2 * ps - 1;
		EXPECT_FILTER_EQUALS(&f, mod_pages_between, r);
	}
#endif
	EXPECT_EQ(0, module_unload(MOD));
}

TEST(filters_combine)
{
	NEED_IOCTL();
	NEED_MODULE();
#if HAVE_IOCTL
	{
		struct allocinfo_filter f = { 0 };
		struct tags mod = { 0 }, got = { 0 };
		const char *why = mod_text(&mod);
		long ps = sysconf(_SC_PAGESIZE);
		struct tag *marked;

		ASSERT_FALSE(why != NULL) TH_LOG("%s", why);
		marked = &mod.v[3];	/* mod_tags[3]: ioctl_mod_marked */
		f.mask = ALLOCINFO_FILTER_MASKS;
		set_name(f.fields.modname, MOD);
		set_name(f.fields.function, marked->func);
		set_name(f.fields.filename, marked->file);
		f.fields.lineno = marked->line;
		f.inaccurate = 1;
		f.min_size = f.max_size = 2 * ps;
		ASSERT_EQ(0, query(&f, &got));
		ASSERT_EQ(1, got.n);
		EXPECT_TRUE(same_tag(&got.v[0], marked)) TH_LOG("%s", describe(&got.v[0]));
		EXPECT_TRUE(same_counts(&got.v[0], marked)) TH_LOG("%s", describe(&got.v[0]));
		/* Any one criterion off, and nothing matches. */
		f.inaccurate = 0;
		EXPECT_EQ(-ENOENT, query(&f, &got));
		f.inaccurate = 1;
		f.min_size = 2 * ps + 1;
		f.max_size = 3 * ps;
		EXPECT_EQ(-ENOENT, query(&f, &got));
		f.min_size = f.max_size = 2 * ps;
		f.fields.lineno = marked->line + 1;
		EXPECT_EQ(-ENOENT, query(&f, &got));
		f.mask = ALLOCINFO_FILTER_MASK_MODNAME | ALLOCINFO_FILTER_MASK_FUNCTION;
		set_name(f.fields.modname, "");
		EXPECT_EQ(-ENOENT, query(&f, &got));
		tags_free(&mod);
		tags_free(&got);
	}
#endif
	EXPECT_EQ(0, module_unload(MOD));
}

TEST(errors_are_exact)
{
	NEED_IOCTL();
#if HAVE_IOCTL
	{
		struct allocinfo_filter f = { 0 };
		struct tags text = { 0 }, got = { 0 };
		struct tag t;
		int fd = open(ALLOC_TAG_PROC, O_RDONLY);

		ASSERT_LE(0, fd);
		ASSERT_EQ(0, read_text(fd, &text));
		/* A mask bit the kernel does not know. */
		f.mask = ALLOCINFO_FILTER_MASKS + 1;
		EXPECT_EQ(-EINVAL, get_at(fd, 0, &f, NULL));
		f.mask = 1ULL << 63;
		EXPECT_EQ(-EINVAL, get_at(fd, 0, &f, NULL));
		/* min > max, only when both are in the mask. */
		f.mask = ALLOCINFO_FILTER_MASK_MIN_SIZE | ALLOCINFO_FILTER_MASK_MAX_SIZE;
		f.min_size = 2;
		f.max_size = 1;
		EXPECT_EQ(-EINVAL, get_at(fd, 0, &f, NULL));
		f.mask = ALLOCINFO_FILTER_MASK_MIN_SIZE;
		f.min_size = 0;
		EXPECT_EQ(0, get_at(fd, 0, &f, NULL));
		/* Positions: the last tag, then past the end. */
		EXPECT_EQ(0, get_at(fd, text.n - 1, NULL, &t));
		EXPECT_TRUE(same_tag(&t, &text.v[text.n - 1])) TH_LOG("%s", describe(&t));
		EXPECT_EQ(-ENOENT, get_at(fd, text.n, NULL, NULL));
		EXPECT_EQ(-ENOENT, get_at(fd, ~0ULL, NULL, NULL));
		/* After ENOENT, GET_NEXT starts again from the first tag. */
		EXPECT_EQ(0, get_at(fd, text.n - 1, NULL, &t));
		EXPECT_EQ(-ENOENT, get_next(fd, &t));
		EXPECT_EQ(0, get_next(fd, &t));
		EXPECT_TRUE(same_tag(&t, &text.v[0])) TH_LOG("%s", describe(&t));
		EXPECT_EQ(0, walk(fd, &got));
		EXPECT_EQ(text.n - 1, got.n);
		/* Commands it does not know. */
		EXPECT_EQ(-1, ioctl(fd, _IOR(ALLOCINFO_IOC_BASE, 3, __u64), &f));
		EXPECT_EQ(ENOTTY, errno);
		EXPECT_EQ(-1, ioctl(fd, _IOR(ALLOCINFO_IOC_BASE, 0, __u32), &f));
		EXPECT_EQ(ENOTTY, errno);
		EXPECT_EQ(-1, ioctl(fd, _IOR(0xA5, 0, struct allocinfo_content_id), &f));
		EXPECT_EQ(ENOTTY, errno);
		/* Bad pointers, in and out. */
		EXPECT_EQ(-1, ioctl(fd, ALLOCINFO_IOC_CONTENT_ID, NULL));
		EXPECT_EQ(EFAULT, errno);
		EXPECT_EQ(-1, ioctl(fd, ALLOCINFO_IOC_GET_AT, NULL));
		EXPECT_EQ(EFAULT, errno);
		EXPECT_EQ(-1, ioctl(fd, ALLOCINFO_IOC_GET_NEXT, (void *)8));
		EXPECT_EQ(EFAULT, errno);
		tags_free(&text);
		tags_free(&got);
		close(fd);
	}
#endif
}

TEST(iterator_is_per_file_and_apart_from_read)
{
	NEED_IOCTL();
#if HAVE_IOCTL
	{
		struct tags text = { 0 };
		int a = open(ALLOC_TAG_PROC, O_RDONLY);
		int b = open(ALLOC_TAG_PROC, O_RDONLY);
		char buf[4096];
		struct tag t;

		ASSERT_LE(0, a);
		ASSERT_LE(0, b);
		ASSERT_EQ(0, read_text(a, &text));
		ASSERT_LT(8, text.n);
		ASSERT_EQ(0, lseek(a, 0, SEEK_SET));
		EXPECT_EQ(0, get_at(a, 5, NULL, &t));
		EXPECT_TRUE(same_tag(&t, &text.v[5])) TH_LOG("%s", describe(&t));
		/* Another file starts from the first tag. */
		EXPECT_EQ(0, get_next(b, &t));
		EXPECT_TRUE(same_tag(&t, &text.v[0])) TH_LOG("%s", describe(&t));
		/* read() moves neither. */
		EXPECT_LT(0, read(a, buf, 100));
		EXPECT_LT(0, read(b, buf, sizeof(buf)));
		EXPECT_EQ(0, get_next(a, &t));
		EXPECT_TRUE(same_tag(&t, &text.v[6])) TH_LOG("%s", describe(&t));
		EXPECT_EQ(0, get_next(b, &t));
		EXPECT_TRUE(same_tag(&t, &text.v[1])) TH_LOG("%s", describe(&t));
		/* ... nor does a seek. */
		EXPECT_EQ(0, lseek(a, 0, SEEK_SET));
		EXPECT_EQ(0, get_next(a, &t));
		EXPECT_TRUE(same_tag(&t, &text.v[7])) TH_LOG("%s", describe(&t));
		tags_free(&text);
		close(a);
		close(b);
	}
#endif
}

TEST(content_id_moves_once_per_tagged_module_change)
{
	NEED_IOCTL();
#if HAVE_IOCTL
	{
		const char *tagged = helper_module(MOD), *tagless;
		char tagless_path[4096];
		__u64 id;
		int fd;

		if (!tagged)
			SKIP(return, "helper module " MOD ".ko not built (module/)");
		tagged = strdup(tagged);
		tagless = helper_module(TAGLESS_MOD);
		if (!tagless)
			SKIP(return, "helper module " TAGLESS_MOD ".ko not built");
		snprintf(tagless_path, sizeof(tagless_path), "%s", tagless);
		module_unload(MOD);
		fd = open(ALLOC_TAG_PROC, O_RDONLY);
		ASSERT_LE(0, fd);
		id = content_id(fd);
		ASSERT_NE(~0ULL, id);
		EXPECT_EQ(id, content_id(fd));
		ASSERT_EQ(0, module_load(tagged, ""));
		EXPECT_EQ(id + 1, content_id(fd));
		ASSERT_EQ(0, module_unload(MOD));
		EXPECT_EQ(id + 2, content_id(fd));
		/* A module without tags: no change. */
		ASSERT_EQ(0, module_load(tagless_path, ""));
		EXPECT_EQ(id + 2, content_id(fd));
		ASSERT_EQ(0, module_unload(TAGLESS_MOD));
		EXPECT_EQ(id + 2, content_id(fd));
		close(fd);
		free((void *)tagged);
	}
#endif
}

#ifndef ALLOC_TAG_OWN_MAIN
ALLOC_TAG_TEST_MAIN
#endif
