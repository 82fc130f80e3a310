/* SPDX-License-Identifier: GPL-2.0 */
/*
 * Helpers shared by the alloc_tag KUnit suites: exact charges of a tag,
 * skips that give their true reason, and the few calls whose form changed
 * since 6.10, so that one copy of each test builds on every kernel.
 */
#ifndef ALLOC_TAG_KUNIT_H
#define ALLOC_TAG_KUNIT_H

#include <kunit/test.h>
#include <linux/alloc_tag.h>
#include <linux/codetag.h>
#include <linux/gfp.h>
#include <linux/init.h>
#include <linux/kstrtox.h>
#include <linux/minmax.h>
#include <linux/string.h>

/* What a tag is charged: bytes and live calls. */
struct charge {
	u64 bytes;
	u64 calls;
};

static inline struct charge tag_charge(struct alloc_tag *tag)
{
	struct alloc_tag_counters c = alloc_tag_read(tag);

	return (struct charge){ c.bytes, c.calls };
}

/* Expects @tag to be charged exactly @dbytes and @dcalls more than @base. */
#define EXPECT_CHARGE(test, tag, base, dbytes, dcalls)			\
	do {								\
		struct charge __now = tag_charge(tag);			\
		KUNIT_EXPECT_EQ_MSG(test, __now.bytes - (base).bytes,	\
				    (u64)(dbytes), "bytes");		\
		KUNIT_EXPECT_EQ_MSG(test, __now.calls - (base).calls,	\
				    (u64)(dcalls), "calls");		\
	} while (0)

/*
 * Why profiling is not counting in this boot, as the command line and the
 * configuration tell it: the same words as the selftests use.
 */
#define MEM_PROFILING_OPT "sysctl.vm.mem_profiling="
#define COMPRESSED_OPT ",compressed"

static inline const char *profiling_off_reason(void)
{
	const char *opt = strstr(saved_command_line, MEM_PROFILING_OPT);
	char val[16];
	bool on;

	if (!opt)
		return IS_ENABLED(CONFIG_MEM_ALLOC_PROFILING_ENABLED_BY_DEFAULT) ?
			"profiling switched off (vm.mem_profiling reads 0)" :
			"profiling not supported in this boot: CONFIG_MEM_ALLOC_PROFILING_ENABLED_BY_DEFAULT=n and no sysctl.vm.mem_profiling= option";
	opt += sizeof(MEM_PROFILING_OPT) - 1;
	if (str_has_prefix(opt, "never"))
		return "profiling disabled at boot (sysctl.vm.mem_profiling=never)";
	strscpy(val, opt, min(strcspn(opt, " ,") + 1, sizeof(val)));
	if (kstrtobool(val, &on))
		return IS_ENABLED(CONFIG_MEM_ALLOC_PROFILING_ENABLED_BY_DEFAULT) ?
			"profiling switched off (vm.mem_profiling reads 0)" :
			"profiling not supported in this boot: its sysctl.vm.mem_profiling= was rejected and CONFIG_MEM_ALLOC_PROFILING_ENABLED_BY_DEFAULT=n";
	if (!on)
		return "profiling off from boot (sysctl.vm.mem_profiling=0)";
	/*
	 * Asked for on with compressed tags, and off while KUnit runs at boot:
	 * the kernel found too few free page flag bits for its tags.
	 */
	opt += strcspn(opt, " ,");
	/* ",compressed" ends the value: a space or the end follows it. */
	if (str_has_prefix(opt, COMPRESSED_OPT) &&
	    strchr(" ", opt[sizeof(COMPRESSED_OPT) - 1]))
		return "profiling not supported in this boot: the kernel gave up on compression";
	return "profiling switched off (vm.mem_profiling reads 0)";
}

/* Charges are made only while profiling is on. */
static inline void skip_unless_profiling(struct kunit *test)
{
	if (!mem_alloc_profiling_enabled())
		kunit_skip(test, "%s", profiling_off_reason());
}

/*
 * 2^@order pages (@gfp) charged to @tag, with @tag's charge before the
 * allocation in @base; fails the test if there are none.
 */
static inline struct page *alloc_pages_tagged(struct kunit *test, struct alloc_tag *tag,
					      gfp_t gfp, unsigned int order,
					      struct charge *base)
{
	struct page *page;

	*base = tag_charge(tag);
	page = alloc_hooks_tag(tag, alloc_pages_noprof(gfp, order));
	KUNIT_ASSERT_NOT_NULL(test, page);
	return page;
}

/*
 * The codetag module list lock: codetag_lock_module_list(type, bool) until
 * a lock/unlock pair replaced it in 7.x. The hook that builds the iterator
 * suite into alloc_tag.c defines ALLOC_TAG_KUNIT_CT_UNLOCK when the tree's
 * <linux/codetag.h> declares codetag_unlock_module_list().
 */
#ifdef ALLOC_TAG_KUNIT_CT_UNLOCK
#define ct_list_lock(type)	codetag_lock_module_list(type)
#define ct_list_unlock(type)	codetag_unlock_module_list(type)
#else
#define ct_list_lock(type)	codetag_lock_module_list(type, true)
#define ct_list_unlock(type)	codetag_lock_module_list(type, false)
#endif

/*
 * kmem_cache_alloc_bulk() returned the number of objects until 7.x and
 * returns a bool since: either way, success is @n in the result's type.
 */
#define bulk_ok(ret, n)	((ret) == (typeof(ret))(n))

#endif /* ALLOC_TAG_KUNIT_H */
