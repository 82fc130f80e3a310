// SPDX-License-Identifier: GPL-2.0
/*
 * KUnit tests for how memory allocation profiling follows pages that are
 * split: every new piece takes a reference to the original tag (one more
 * call, same bytes), and freeing a piece gives back one page and one call.
 * Also where a page keeps its tag when tags are compressed into page flags.
 */
#include <kunit/test.h>
#include <linux/alloc_tag.h>
#include <linux/gfp.h>
#include <linux/mm.h>
#include <linux/pgalloc_tag.h>
#include <linux/string.h>

#include "alloc_tag_kunit.h"

#define EXPECT_SPLIT(test, tag, base, npages, ncalls)			\
	EXPECT_CHARGE(test, tag, base, (u64)(npages) * PAGE_SIZE, ncalls)

static const unsigned int split_orders[] = { 1, 2, 3, 5 };

static void split_order_desc(const unsigned int *order, char *desc)
{
	snprintf(desc, KUNIT_PARAM_DESC_SIZE, "order-%u", *order);
}

KUNIT_ARRAY_PARAM(split_order, split_orders, split_order_desc);

static void split_page_counts_every_piece(struct kunit *test)
{
	unsigned int order = *(const unsigned int *)test->param_value;
	unsigned int nr = 1U << order, i;
	DEFINE_ALLOC_TAG(tag);
	struct charge base;
	struct page *page;

	skip_unless_profiling(test);
	page = alloc_pages_tagged(test, &tag, GFP_KERNEL, order, &base);
	EXPECT_SPLIT(test, &tag, base, nr, 1);

	split_page(page, order);
	EXPECT_SPLIT(test, &tag, base, nr, nr);

	/* Free from the tail so the head's tag is checked last. */
	for (i = nr; i > 0; i--) {
		__free_page(page + i - 1);
		EXPECT_SPLIT(test, &tag, base, i - 1, i - 1);
	}
}

static void alloc_pages_exact_counts_kept_pages(struct kunit *test)
{
	static const unsigned int npages[] = { 1, 3, 5, 7 };
	DEFINE_ALLOC_TAG(tag);
	struct charge base;
	void *p;
	int i;

	skip_unless_profiling(test);
	for (i = 0; i < ARRAY_SIZE(npages); i++) {
		base = tag_charge(&tag);
		p = alloc_hooks_tag(&tag, alloc_pages_exact_noprof(npages[i] * PAGE_SIZE,
								  GFP_KERNEL));
		KUNIT_ASSERT_NOT_NULL(test, p);
		/* The order-N block is split and the unused tail freed. */
		EXPECT_SPLIT(test, &tag, base, npages[i], npages[i]);
		free_pages_exact(p, npages[i] * PAGE_SIZE);
		EXPECT_SPLIT(test, &tag, base, 0, 0);
	}
}

static void free_pages_with_extra_reference(struct kunit *test)
{
	const unsigned int order = 2;
	DEFINE_ALLOC_TAG(tag);
	struct charge base;
	struct page *page;

	skip_unless_profiling(test);
	page = alloc_pages_tagged(test, &tag, GFP_KERNEL, order, &base);
	get_page(page);

	/*
	 * The extra reference keeps the first page; __free_pages() frees
	 * the others and must give back their bytes. The call stays with
	 * the page that is still allocated.
	 */
	__free_pages(page, order);
	EXPECT_SPLIT(test, &tag, base, 1, 1);
	put_page(page);
	EXPECT_SPLIT(test, &tag, base, 0, 0);
}

/*
 * With sysctl.vm.mem_profiling=1,compressed a page's tag is not a pointer
 * in page_ext but an index in spare page flag bits: the tag's position
 * among the kernel's tags, after the reserved indexes.
 */
static void page_flags_carry_tag_index(struct kunit *test)
{
#if defined(CODETAG_ID_FIRST) && !defined(MODULE)
	DEFINE_ALLOC_TAG(tag);
	union pgtag_ref_handle handle;
	union codetag_ref ref;
	unsigned long flags;
	struct page *page;

	skip_unless_profiling(test);
	if (!static_key_enabled(&mem_profiling_compressed))
		kunit_skip(test, "tags are in page_ext: booted without sysctl.vm.mem_profiling=...,compressed");
	page = alloc_hooks_tag(&tag, alloc_pages_noprof(GFP_KERNEL, 0));
	KUNIT_ASSERT_NOT_NULL(test, page);
	memcpy(&flags, &page->flags, sizeof(flags));
	KUNIT_EXPECT_EQ(test, (flags >> alloc_tag_ref_offs) & alloc_tag_ref_mask,
			CODETAG_ID_FIRST + (unsigned long)(&tag - kernel_tags.first_tag));
	/* The kernel's own reading of those bits finds the tag. */
	KUNIT_EXPECT_TRUE(test, get_page_tag_ref(page, &ref, &handle));
	KUNIT_EXPECT_PTR_EQ(test, ref.ct, &tag.ct);
	put_page_tag_ref(handle);
	__free_page(page);
#else
	kunit_skip(test, "not in this kernel: page tags are never compressed into page flags");
#endif
}

/*
 * Booted with ...,compressed the kernel counts its own tags and keeps their
 * indexes in page flags only if the spare bits can hold every index;
 * otherwise it turns profiling off.  Report the kernel's numbers (the runner
 * compares them with its prediction from the build) and check that the
 * decision follows from them.
 */
static void compressed_tags_fit_page_flags(struct kunit *test)
{
#if defined(CODETAG_ID_FIRST) && !defined(MODULE)
	unsigned long indexes = 1UL << NR_UNUSED_PAGEFLAG_BITS;
	bool fit = CODETAG_ID_FIRST + kernel_tags.count <= indexes;

	if (!static_key_enabled(&mem_profiling_compressed))
		kunit_skip(test, "tags are in page_ext: booted without sysctl.vm.mem_profiling=...,compressed");
	kunit_info(test, "%lu kernel tags, %d page flag bits, tags in page flags: %s\n",
		   kernel_tags.count, NR_UNUSED_PAGEFLAG_BITS,
		   alloc_tag_ref_mask ? "yes" : "no");
	if (fit) {
		KUNIT_EXPECT_EQ(test, alloc_tag_ref_mask, indexes - 1);
		KUNIT_EXPECT_EQ(test, alloc_tag_ref_offs,
				LRU_REFS_PGOFF - NR_UNUSED_PAGEFLAG_BITS);
	} else {
		KUNIT_EXPECT_EQ(test, alloc_tag_ref_mask, 0UL);
		KUNIT_EXPECT_FALSE(test, mem_alloc_profiling_enabled());
	}
#else
	kunit_skip(test, "not in this kernel: page tags are never compressed into page flags");
#endif
}

static struct kunit_case alloc_tag_page_split_cases[] = {
	KUNIT_CASE_PARAM(split_page_counts_every_piece, split_order_gen_params),
	KUNIT_CASE(alloc_pages_exact_counts_kept_pages),
	KUNIT_CASE(free_pages_with_extra_reference),
	KUNIT_CASE(page_flags_carry_tag_index),
	KUNIT_CASE(compressed_tags_fit_page_flags),
	{}
};

static struct kunit_suite alloc_tag_page_split_suite = {
	.name = "alloc_tag_page_split",
	.test_cases = alloc_tag_page_split_cases,
};

kunit_test_suite(alloc_tag_page_split_suite);

MODULE_DESCRIPTION("KUnit tests for memory allocation profiling of split pages");
MODULE_LICENSE("GPL");
