// SPDX-License-Identifier: GPL-2.0
/*
 * KUnit tests for walking allocation tags with the codetag iterator.
 *
 * This file is included at the end of alloc_tag.c (in lib/ until 6.x, in
 * mm/ since): the iterator needs alloc_tag_cttype, which is private to that
 * file and not exported, so the tests must be built in.
 */
#include <kunit/test.h>
#include <linux/gfp.h>
#include <linux/kallsyms.h>
#include <linux/slab.h>
#include <linux/string.h>

#include "../../mm/slab.h"
#include "alloc_tag_kunit.h"

#define ITER_TEST_ALLOCS 3
#define ITER_TEST_SIZE 100

struct iter_probe {
	struct alloc_tag *tag;
	const char *file;
	unsigned int line;
	const char *func;
};

/*
 * Defines a private tag and records where it was defined. The tag is
 * static, so every call returns the same tag.
 */
static noinline void iter_probe_site(struct iter_probe *probe)
{
	DEFINE_ALLOC_TAG(iter_probe_tag);

	probe->line = __LINE__ - 2;
	probe->tag = &iter_probe_tag;
	probe->file = __FILE__;
	probe->func = __func__;
}

/*
 * Bounds of the built-in tag section, looked up the way lib/codetag.c
 * finds them for vmlinux.
 */
static struct alloc_tag *iter_start, *iter_stop;

static void iter_skip_if_disabled(struct kunit *test)
{
	if (IS_ERR_OR_NULL(alloc_tag_cttype))
		kunit_skip(test, "no allocation tags registered: %s", profiling_off_reason());
	iter_start = (struct alloc_tag *)kallsyms_lookup_name("__start_alloc_tags");
	iter_stop = (struct alloc_tag *)kallsyms_lookup_name("__stop_alloc_tags");
	KUNIT_ASSERT_NOT_NULL(test, iter_start);
	KUNIT_ASSERT_NOT_NULL(test, iter_stop);
}

static bool ct_is_builtin(const struct codetag *ct)
{
	return (void *)ct >= (void *)iter_start && (void *)ct < (void *)iter_stop;
}

/*
 * Counts the tags the iterator returns, those of vmlinux's section and
 * those of modules (which name theirs); the list lock must be held.
 */
static size_t iter_count(size_t *builtin, size_t *out_of_order, size_t *in_modules)
{
	struct codetag_iterator iter = codetag_get_ct_iter(alloc_tag_cttype);
	struct codetag *ct;
	size_t total = 0;

	*builtin = 0;
	*out_of_order = 0;
	*in_modules = 0;
	while ((ct = codetag_next_ct(&iter))) {
		if (ct_is_builtin(ct)) {
			/* vmlinux tags come first, in section order. */
			if (ct != &iter_start[*builtin].ct)
				(*out_of_order)++;
			(*builtin)++;
		} else if (ct->modname) {
			(*in_modules)++;
		}
		total++;
	}
	return total;
}

static void codetag_walk_matches_section(struct kunit *test)
{
	size_t section, builtin, out_of_order, total, in_modules;

	iter_skip_if_disabled(test);
	section = iter_stop - iter_start;
	ct_list_lock(alloc_tag_cttype);
	total = iter_count(&builtin, &out_of_order, &in_modules);
	ct_list_unlock(alloc_tag_cttype);

	KUNIT_EXPECT_GT(test, section, 0);
	KUNIT_EXPECT_EQ(test, builtin, section);
	KUNIT_EXPECT_EQ(test, out_of_order, 0);
	/* Every other tag is a module's: nothing is walked twice or lost. */
	KUNIT_EXPECT_EQ(test, total, builtin + in_modules);
}

static void codetag_walk_is_repeatable(struct kunit *test)
{
	size_t builtin1, builtin2, ooo, mods, total1, total2;

	iter_skip_if_disabled(test);
	ct_list_lock(alloc_tag_cttype);
	total1 = iter_count(&builtin1, &ooo, &mods);
	total2 = iter_count(&builtin2, &ooo, &mods);
	ct_list_unlock(alloc_tag_cttype);

	KUNIT_EXPECT_EQ(test, total1, total2);
	KUNIT_EXPECT_EQ(test, builtin1, builtin2);
}

static bool ct_text_valid(const char *s)
{
	const char *p;

	if (!s || !*s)
		return false;
	for (p = s; *p; p++)
		if (*p < ' ' || *p > '~')
			return false;
	return true;
}

static void codetag_fields_valid(struct kunit *test)
{
	struct codetag_iterator iter;
	struct codetag *ct, *bad = NULL;
	size_t nr_bad = 0, nr = 0;

	iter_skip_if_disabled(test);
	ct_list_lock(alloc_tag_cttype);
	iter = codetag_get_ct_iter(alloc_tag_cttype);
	while ((ct = codetag_next_ct(&iter))) {
		bool ok = ct_text_valid(ct->filename) && ct->lineno > 0 &&
			  ct_text_valid(ct->function);

		/* Built-in tags carry no module name; module tags must. */
		if (ct_is_builtin(ct))
			ok = ok && !ct->modname;
		else
			ok = ok && ct_text_valid(ct->modname);
		if (!ok) {
			nr_bad++;
			if (!bad)
				bad = ct;
		}
		nr++;
	}
	ct_list_unlock(alloc_tag_cttype);

	KUNIT_EXPECT_GT(test, nr, 0);
	KUNIT_EXPECT_EQ_MSG(test, nr_bad, 0, "first bad tag: %s:%u func:%s",
			    bad && bad->filename ? bad->filename : "(null)",
			    bad ? bad->lineno : 0,
			    bad && bad->function ? bad->function : "(null)");
}

/* Finds @tag by walking the iterator; returns how often it was seen. */
static int iter_find(struct alloc_tag *tag, struct codetag **found)
{
	struct codetag_iterator iter;
	struct codetag *ct;
	int seen = 0;

	*found = NULL;
	ct_list_lock(alloc_tag_cttype);
	iter = codetag_get_ct_iter(alloc_tag_cttype);
	while ((ct = codetag_next_ct(&iter))) {
		if (ct == &tag->ct) {
			*found = ct;
			seen++;
		}
	}
	ct_list_unlock(alloc_tag_cttype);
	return seen;
}

static void codetag_finds_test_tag(struct kunit *test)
{
	struct iter_probe probe;
	struct codetag *ct;

	iter_skip_if_disabled(test);
	iter_probe_site(&probe);

	KUNIT_ASSERT_EQ(test, iter_find(probe.tag, &ct), 1);
	KUNIT_ASSERT_NOT_NULL(test, ct);
	KUNIT_EXPECT_STREQ(test, ct->filename, probe.file);
	KUNIT_EXPECT_EQ(test, ct->lineno, probe.line);
	KUNIT_EXPECT_STREQ(test, ct->function, "iter_probe_site");
	KUNIT_EXPECT_STREQ(test, ct->function, probe.func);
	KUNIT_EXPECT_NULL(test, ct->modname);
	KUNIT_EXPECT_TRUE(test, ct_is_builtin(ct));
}

static void codetag_counters_follow_allocations(struct kunit *test)
{
	struct alloc_tag_counters before, mid, after;
	void *objs[ITER_TEST_ALLOCS];
	struct iter_probe probe;
	struct page *page;
	struct codetag *ct;
	size_t slab_size;
	int i;

	iter_skip_if_disabled(test);
	skip_unless_profiling(test);
	iter_probe_site(&probe);
	KUNIT_ASSERT_EQ(test, iter_find(probe.tag, &ct), 1);

	before = alloc_tag_read(ct_to_alloc_tag(ct));
	for (i = 0; i < ITER_TEST_ALLOCS; i++) {
		objs[i] = alloc_hooks_tag(probe.tag,
				kmalloc_noprof(ITER_TEST_SIZE, GFP_KERNEL));
		KUNIT_ASSERT_NOT_NULL(test, objs[i]);
	}
	page = alloc_hooks_tag(probe.tag, alloc_pages_noprof(GFP_KERNEL, 2));
	KUNIT_ASSERT_NOT_NULL(test, page);
	mid = alloc_tag_read(ct_to_alloc_tag(ct));

	/* Slab charges the size of the object's cache slot. */
	slab_size = virt_to_slab(objs[0])->slab_cache->size;
	__free_pages(page, 2);
	for (i = 0; i < ITER_TEST_ALLOCS; i++)
		kfree(objs[i]);
	after = alloc_tag_read(ct_to_alloc_tag(ct));

	KUNIT_EXPECT_EQ(test, mid.bytes - before.bytes,
			ITER_TEST_ALLOCS * slab_size + 4 * PAGE_SIZE);
	KUNIT_EXPECT_EQ(test, mid.calls - before.calls, ITER_TEST_ALLOCS + 1);
	KUNIT_EXPECT_EQ(test, after.bytes, before.bytes);
	KUNIT_EXPECT_EQ(test, after.calls, before.calls);
}

#define TOP_USERS 4
#define TOP_MAX_BLOCKS 64

static struct alloc_tag *top_users_tag(void)
{
	DEFINE_ALLOC_TAG(tag);

	return &tag;
}

static void top_users_puts_large_allocation_first(struct kunit *test)
{
	struct alloc_tag *tag = top_users_tag();
	const unsigned int order = min(9, MAX_PAGE_ORDER);
	struct codetag_bytes top[TOP_USERS];
	struct page **blocks;
	s64 ours = 0;
	size_t nr;
	int n = 0;

	iter_skip_if_disabled(test);
	skip_unless_profiling(test);
	blocks = kunit_kcalloc(test, TOP_MAX_BLOCKS, sizeof(*blocks), GFP_KERNEL);
	KUNIT_ASSERT_NOT_NULL(test, blocks);

	/*
	 * Outgrow the largest user, reading the ranking again after each
	 * block: the largest may itself grow meanwhile (page cache while
	 * userspace runs beside the suite).
	 */
	for (;;) {
		nr = alloc_tag_top_users(top, 1, true);
		if (nr != 1 || top[0].ct == &tag->ct || n == TOP_MAX_BLOCKS)
			break;
		blocks[n] = alloc_hooks_tag(tag, alloc_pages_noprof(GFP_KERNEL, order));
		if (!blocks[n])
			break;
		ours += PAGE_SIZE << order;
		n++;
	}
	if (nr != 1) {
		KUNIT_FAIL(test, "alloc_tag_top_users() found %zu users, not 1", nr);
		goto out;
	}
	if (top[0].ct != &tag->ct) {
		KUNIT_FAIL(test, "could not outgrow %s:%u (%lld bytes, ours %lld)",
			   top[0].ct->filename, top[0].ct->lineno, top[0].bytes, ours);
		goto out;
	}
	/* One block more, a margin against a user growing meanwhile. */
	if (n < TOP_MAX_BLOCKS) {
		blocks[n] = alloc_hooks_tag(tag, alloc_pages_noprof(GFP_KERNEL, order));
		if (blocks[n]) {
			ours += PAGE_SIZE << order;
			n++;
		}
	}

	nr = alloc_tag_top_users(top, TOP_USERS, true);
	KUNIT_EXPECT_EQ(test, nr, TOP_USERS);
	KUNIT_EXPECT_PTR_EQ(test, top[0].ct, &tag->ct);
	KUNIT_EXPECT_EQ(test, top[0].bytes, ours);
	/* Sorted by bytes, largest first. */
	KUNIT_EXPECT_GE(test, top[0].bytes, top[1].bytes);
	KUNIT_EXPECT_GE(test, top[1].bytes, top[2].bytes);

out:
	while (n--)
		__free_pages(blocks[n], order);
	KUNIT_EXPECT_EQ(test, alloc_tag_read(tag).bytes, 0);
}

#ifdef CONFIG_SYSCTL
static struct alloc_tag *switch_tag(void)
{
	DEFINE_ALLOC_TAG(tag);

	return &tag;
}

/*
 * Whether vm.mem_profiling may be switched in this boot. Never with
 * DEBUG=y (read-only until 7.x, EACCES since). Not when profiling is not
 * supported: no tags are registered (7.x) or the sysctl is read-only.
 */
static void iter_skip_unless_switchable(struct kunit *test)
{
	if (IS_ENABLED(CONFIG_MEM_ALLOC_PROFILING_DEBUG))
		kunit_skip(test, "vm.mem_profiling cannot be switched with CONFIG_MEM_ALLOC_PROFILING_DEBUG=y");
	if (memory_allocation_profiling_sysctls[0].mode != 0644)
		kunit_skip(test, "vm.mem_profiling is read-only: profiling is not supported in this boot");
}

static void runtime_switch_stops_and_resumes_counting(struct kunit *test)
{
	bool was_enabled = mem_alloc_profiling_enabled();
	struct alloc_tag *tag = switch_tag();
	struct alloc_tag_counters before, off, on;
	void *p, *q;

	iter_skip_if_disabled(test);
	iter_skip_unless_switchable(test);

	static_branch_disable(&mem_alloc_profiling_key);
	before = alloc_tag_read(tag);
	p = alloc_hooks_tag(tag, kmalloc_noprof(ITER_TEST_SIZE, GFP_KERNEL));
	KUNIT_ASSERT_NOT_NULL(test, p);
	off = alloc_tag_read(tag);
	kfree(p);

	static_branch_enable(&mem_alloc_profiling_key);
	q = alloc_hooks_tag(tag, kmalloc_noprof(ITER_TEST_SIZE, GFP_KERNEL));
	KUNIT_ASSERT_NOT_NULL(test, q);
	on = alloc_tag_read(tag);
	kfree(q);
	if (!was_enabled)
		static_branch_disable(&mem_alloc_profiling_key);

	KUNIT_EXPECT_EQ(test, off.bytes, before.bytes);
	KUNIT_EXPECT_EQ(test, off.calls, before.calls);
	KUNIT_EXPECT_EQ(test, on.bytes - before.bytes,
			(u64)virt_to_slab(q)->slab_cache->size);
	KUNIT_EXPECT_EQ(test, on.calls - before.calls, 1);
	KUNIT_EXPECT_EQ(test, alloc_tag_read(tag).bytes, before.bytes);
}
#endif

static struct kunit_case alloc_tag_iter_cases[] = {
	KUNIT_CASE(codetag_walk_matches_section),
	KUNIT_CASE(codetag_walk_is_repeatable),
	KUNIT_CASE(codetag_fields_valid),
	KUNIT_CASE(codetag_finds_test_tag),
	KUNIT_CASE(codetag_counters_follow_allocations),
	KUNIT_CASE(top_users_puts_large_allocation_first),
#ifdef CONFIG_SYSCTL
	KUNIT_CASE(runtime_switch_stops_and_resumes_counting),
#endif
	{}
};

static struct kunit_suite alloc_tag_iter_suite = {
	.name = "alloc_tag_iter",
	.test_cases = alloc_tag_iter_cases,
};

kunit_test_suite(alloc_tag_iter_suite);
