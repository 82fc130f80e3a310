// SPDX-License-Identifier: GPL-2.0
/*
 * KUnit tests for the warnings of CONFIG_MEM_ALLOC_PROFILING_DEBUG: each
 * documented warning is provoked once, and seen on a console that this
 * suite registers for the purpose.
 */
#include <kunit/test.h>
#include <linux/alloc_tag.h>
#include <linux/atomic.h>
#include <linux/console.h>
#include <linux/sched.h>
#include <linux/string.h>

#include "alloc_tag_kunit.h"

static const char * const debug_msgs[] = {
	"alloc_tag was not cleared (got tag for ",
	"current->alloc_tag not set",
	"alloc_tag was not set",
	"current->alloc_tag was changed:",
};

static atomic_t debug_seen[ARRAY_SIZE(debug_msgs)];

static void debug_console_write(struct console *con, const char *s,
				unsigned int n)
{
	int i;

	for (i = 0; i < ARRAY_SIZE(debug_msgs); i++)
		if (strnstr(s, debug_msgs[i], n))
			atomic_inc(&debug_seen[i]);
}

static struct console debug_console = {
	.name	= "atdebug",
	.write	= debug_console_write,
	.flags	= CON_ENABLED,
	.index	= -1,
};

/* How often message @i reached the consoles while @fn ran. */
static int debug_count(int i, void (*fn)(void))
{
	int before = atomic_read(&debug_seen[i]);

	fn();
	/* Make sure every pending record has been written out. */
	console_lock();
	console_unlock();
	return atomic_read(&debug_seen[i]) - before;
}

static struct alloc_tag *debug_tag(void)
{
	DEFINE_ALLOC_TAG(tag);

	return &tag;
}

static struct alloc_tag *debug_other_tag(void)
{
	DEFINE_ALLOC_TAG(tag);

	return &tag;
}

static void provoke_not_cleared(void)
{
	union codetag_ref ref = { .ct = &debug_other_tag()->ct };

	/* A reference that still points at a tag gets a new one. */
	alloc_tag_add(&ref, debug_tag(), 8);
	alloc_tag_sub(&ref, 8);
}

static void provoke_current_not_set(void)
{
	union codetag_ref ref = { .ct = NULL };

	alloc_tag_add(&ref, NULL, 8);
}

static void provoke_not_set(void)
{
	union codetag_ref ref = { .ct = NULL };

	alloc_tag_sub(&ref, 8);
}

static void provoke_changed(void)
{
	struct alloc_tag *old = alloc_tag_save(debug_tag());

	/* Something swapped current->alloc_tag without restoring it. */
	current->alloc_tag = debug_other_tag();
	alloc_tag_restore(debug_tag(), old);
}

static void (*const debug_provokers[])(void) = {
	provoke_not_cleared,
	provoke_current_not_set,
	provoke_not_set,
	provoke_changed,
};

static int debug_suite_init(struct kunit_suite *suite)
{
	if (IS_ENABLED(CONFIG_MEM_ALLOC_PROFILING_DEBUG))
		register_console(&debug_console);
	return 0;
}

static void debug_suite_exit(struct kunit_suite *suite)
{
	if (IS_ENABLED(CONFIG_MEM_ALLOC_PROFILING_DEBUG))
		unregister_console(&debug_console);
}

static void debug_check(struct kunit *test, int i)
{
	if (!IS_ENABLED(CONFIG_MEM_ALLOC_PROFILING_DEBUG))
		kunit_skip(test, "needs CONFIG_MEM_ALLOC_PROFILING_DEBUG=y");
	skip_unless_profiling(test);
	KUNIT_EXPECT_EQ_MSG(test, debug_count(i, debug_provokers[i]), 1,
			    "expected one warning \"%s\"", debug_msgs[i]);
}

static void warns_tag_not_cleared(struct kunit *test)
{
	debug_check(test, 0);
}

static void warns_current_tag_not_set(struct kunit *test)
{
	debug_check(test, 1);
}

static void warns_tag_not_set(struct kunit *test)
{
	debug_check(test, 2);
}

static void warns_current_tag_changed(struct kunit *test)
{
	debug_check(test, 3);
}

static struct kunit_case alloc_tag_debug_cases[] = {
	KUNIT_CASE(warns_tag_not_cleared),
	KUNIT_CASE(warns_current_tag_not_set),
	KUNIT_CASE(warns_tag_not_set),
	KUNIT_CASE(warns_current_tag_changed),
	{}
};

static struct kunit_suite alloc_tag_debug_suite = {
	.name = "alloc_tag_debug",
	.suite_init = debug_suite_init,
	.suite_exit = debug_suite_exit,
	.test_cases = alloc_tag_debug_cases,
};

kunit_test_suite(alloc_tag_debug_suite);

MODULE_DESCRIPTION("KUnit tests for memory allocation profiling debug warnings");
MODULE_LICENSE("GPL");
