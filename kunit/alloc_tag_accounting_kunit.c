// SPDX-License-Identifier: GPL-2.0
/*
 * KUnit tests for the exact bytes and calls that memory allocation
 * profiling charges to a tag, for every allocator family it tags.
 *
 * Each test allocates under a private tag (DEFINE_ALLOC_TAG plus
 * alloc_hooks_tag() around a *_noprof allocator), frees synchronously and
 * compares the tag's counters with what the kernel defines: the slab
 * cache's object slot, whole pages, the vmalloc area's pages and page
 * array, per-CPU units. Sizes are read from the running kernel, never
 * assumed.
 */
#include <kunit/test.h>
#include <linux/alloc_tag.h>
#include <linux/gfp.h>
#include <linux/mempool.h>
#include <linux/mm.h>
#include <linux/percpu.h>
#include <linux/rcupdate.h>
#include <linux/rhashtable.h>
#include <linux/sched.h>
#include <linux/slab.h>
#include <linux/vmalloc.h>

#include "../../mm/slab.h"
#include "alloc_tag_kunit.h"

/* What the kernel charges for one kmalloc()/kvmalloc()ed object @p. */
static struct charge object_charge(const void *p)
{
	struct charge c = { 0, 0 };
	struct vm_struct *area;
	struct slab *slab;

	if (is_vmalloc_addr(p)) {
		/* Every page of the area, split to order 0, and its array. */
		area = find_vm_area(p);
		if (!area)
			return c;
		c.bytes = (u64)area->nr_pages * PAGE_SIZE;
		c.calls = area->nr_pages;
		if (area->pages) {
			struct charge arr = object_charge(area->pages);

			c.bytes += arr.bytes;
			c.calls += arr.calls;
		}
		return c;
	}
	slab = virt_to_slab(p);
	if (slab)
		c.bytes = slab->slab_cache->size;
	else	/* large kmalloc */
		c.bytes = PAGE_SIZE << folio_order(virt_to_folio(p));
	c.calls = 1;
	return c;
}

/*
 * DEFINE_ALLOC_TAG() names its per-CPU counters the same way every time,
 * so a function can define only one tag: tests that need several get
 * them from these helpers.
 */
static struct alloc_tag *krealloc_first_tag(void)
{
	DEFINE_ALLOC_TAG(tag);

	return &tag;
}

static struct alloc_tag *krealloc_grow_tag(void)
{
	DEFINE_ALLOC_TAG(tag);

	return &tag;
}

static struct alloc_tag *krealloc_shrink_tag(void)
{
	DEFINE_ALLOC_TAG(tag);

	return &tag;
}

static struct alloc_tag *bulk_tag(void)
{
	DEFINE_ALLOC_TAG(tag);

	return &tag;
}

static struct alloc_tag *mempool_create_tag(void)
{
	DEFINE_ALLOC_TAG(tag);

	return &tag;
}

static struct alloc_tag *outer_tag(void)
{
	DEFINE_ALLOC_TAG(tag);

	return &tag;
}

static void kmalloc_charges_slab_object_size(struct kunit *test)
{
	static const size_t sizes[] = { 8, 24, 100, 192, 1000, 4000 };
	DEFINE_ALLOC_TAG(tag);
	struct charge base, c;
	void *p;
	int i;

	skip_unless_profiling(test);
	for (i = 0; i < ARRAY_SIZE(sizes); i++) {
		base = tag_charge(&tag);
		p = alloc_hooks_tag(&tag, kmalloc_noprof(sizes[i], GFP_KERNEL));
		KUNIT_ASSERT_NOT_NULL(test, p);
		c = object_charge(p);
		KUNIT_EXPECT_TRUE(test, folio_test_slab(virt_to_folio(p)));
		KUNIT_EXPECT_GE(test, c.bytes, (u64)sizes[i]);
		EXPECT_CHARGE(test, &tag, base, c.bytes, 1);
		kfree(p);
		EXPECT_CHARGE(test, &tag, base, 0, 0);
	}
}

static void kmalloc_large_charges_pages(struct kunit *test)
{
	size_t size = KMALLOC_MAX_CACHE_SIZE + 1;
	DEFINE_ALLOC_TAG(tag);
	struct charge base;
	void *p;

	skip_unless_profiling(test);
	base = tag_charge(&tag);
	p = alloc_hooks_tag(&tag, kmalloc_noprof(size, GFP_KERNEL));
	KUNIT_ASSERT_NOT_NULL(test, p);
	KUNIT_EXPECT_FALSE(test, folio_test_slab(virt_to_folio(p)));
	EXPECT_CHARGE(test, &tag, base, PAGE_SIZE << get_order(size), 1);
	kfree(p);
	EXPECT_CHARGE(test, &tag, base, 0, 0);
}

static void krealloc_moves_charge_with_object(struct kunit *test)
{
	struct alloc_tag *first = krealloc_first_tag();
	struct alloc_tag *grow = krealloc_grow_tag();
	struct alloc_tag *shrink = krealloc_shrink_tag();
	struct charge b1, b2, b3, c;
	void *p, *q, *r;

	skip_unless_profiling(test);
	b1 = tag_charge(first);
	b2 = tag_charge(grow);
	b3 = tag_charge(shrink);
	p = alloc_hooks_tag(first, kmalloc_noprof(64, GFP_KERNEL));
	KUNIT_ASSERT_NOT_NULL(test, p);
	EXPECT_CHARGE(test, first, b1, object_charge(p).bytes, 1);

	/* Growing past the slot moves the object: the new site pays. */
	q = alloc_hooks_tag(grow, krealloc_noprof(p, 2048, GFP_KERNEL));
	KUNIT_ASSERT_NOT_NULL(test, q);
	KUNIT_EXPECT_PTR_NE(test, p, q);
	c = object_charge(q);
	EXPECT_CHARGE(test, first, b1, 0, 0);
	EXPECT_CHARGE(test, grow, b2, c.bytes, 1);

	/* Shrinking fits in place: nothing moves, nothing is re-charged. */
	r = alloc_hooks_tag(shrink, krealloc_noprof(q, 16, GFP_KERNEL));
	KUNIT_ASSERT_PTR_EQ(test, q, r);
	EXPECT_CHARGE(test, grow, b2, c.bytes, 1);
	EXPECT_CHARGE(test, shrink, b3, 0, 0);

	kfree(r);
	EXPECT_CHARGE(test, grow, b2, 0, 0);
}

static void kmem_cache_alloc_and_bulk(struct kunit *test)
{
	struct alloc_tag *btag = bulk_tag();
	DEFINE_ALLOC_TAG(tag);
	struct kmem_cache *s;
	struct charge base, bbase;
	void *objs[16];
	void *p;
	bool ok;

	skip_unless_profiling(test);
	s = kmem_cache_create("alloc_tag_kunit", 200, 0, SLAB_NO_MERGE, NULL);
	KUNIT_ASSERT_NOT_NULL(test, s);

	base = tag_charge(&tag);
	p = alloc_hooks_tag(&tag, kmem_cache_alloc_noprof(s, GFP_KERNEL));
	KUNIT_ASSERT_NOT_NULL(test, p);
	EXPECT_CHARGE(test, &tag, base, s->size, 1);
	kmem_cache_free(s, p);
	EXPECT_CHARGE(test, &tag, base, 0, 0);

	bbase = tag_charge(btag);
	ok = bulk_ok(alloc_hooks_tag(btag,
				     kmem_cache_alloc_bulk_noprof(s, GFP_KERNEL,
								  ARRAY_SIZE(objs), objs)),
		     ARRAY_SIZE(objs));
	KUNIT_ASSERT_TRUE(test, ok);
	EXPECT_CHARGE(test, btag, bbase, ARRAY_SIZE(objs) * s->size,
		      ARRAY_SIZE(objs));
	kmem_cache_free_bulk(s, ARRAY_SIZE(objs), objs);
	EXPECT_CHARGE(test, btag, bbase, 0, 0);
	kmem_cache_destroy(s);
}

static void page_allocators_charge_whole_allocation(struct kunit *test)
{
	DEFINE_ALLOC_TAG(tag);
	struct charge base;
	struct folio *folio;
	struct page *page;
	unsigned long addr;
	unsigned int order;

	skip_unless_profiling(test);
	for (order = 0; order <= 3; order++) {
		page = alloc_pages_tagged(test, &tag, GFP_KERNEL, order, &base);
		EXPECT_CHARGE(test, &tag, base, PAGE_SIZE << order, 1);
		__free_pages(page, order);
		EXPECT_CHARGE(test, &tag, base, 0, 0);

		page = alloc_hooks_tag(&tag, alloc_pages_noprof(GFP_KERNEL | __GFP_COMP,
								order));
		KUNIT_ASSERT_NOT_NULL(test, page);
		EXPECT_CHARGE(test, &tag, base, PAGE_SIZE << order, 1);
		__free_pages(page, order);
		EXPECT_CHARGE(test, &tag, base, 0, 0);

		addr = alloc_hooks_tag(&tag, get_free_pages_noprof(GFP_KERNEL, order));
		KUNIT_ASSERT_NE(test, addr, 0UL);
		EXPECT_CHARGE(test, &tag, base, PAGE_SIZE << order, 1);
		free_pages(addr, order);
		EXPECT_CHARGE(test, &tag, base, 0, 0);

		folio = alloc_hooks_tag(&tag, folio_alloc_noprof(GFP_KERNEL, order));
		KUNIT_ASSERT_NOT_NULL(test, folio);
		EXPECT_CHARGE(test, &tag, base, PAGE_SIZE << order, 1);
		folio_put(folio);
		EXPECT_CHARGE(test, &tag, base, 0, 0);
	}
}

static void vmalloc_charges_pages_and_page_array(struct kunit *test)
{
	static const unsigned long pages[] = { 1, 4, 600 };
	DEFINE_ALLOC_TAG(tag);
	struct vm_struct *area;
	struct charge base, c;
	void *p;
	int i;

	skip_unless_profiling(test);
	for (i = 0; i < ARRAY_SIZE(pages); i++) {
		base = tag_charge(&tag);
		p = alloc_hooks_tag(&tag, vmalloc_noprof(pages[i] * PAGE_SIZE));
		KUNIT_ASSERT_NOT_NULL(test, p);
		area = find_vm_area(p);
		KUNIT_ASSERT_NOT_NULL(test, area);
		KUNIT_EXPECT_EQ(test, (unsigned long)area->nr_pages, pages[i]);
		c = object_charge(p);
		/* The page array is itself charged: n pages plus one array. */
		KUNIT_EXPECT_GT(test, c.bytes, (u64)pages[i] * PAGE_SIZE);
		EXPECT_CHARGE(test, &tag, base, c.bytes, c.calls);
		vfree(p);
		EXPECT_CHARGE(test, &tag, base, 0, 0);
	}
}

static void kvmalloc_both_ways(struct kunit *test)
{
	DEFINE_ALLOC_TAG(tag);
	struct charge base, c;
	void *p;

	skip_unless_profiling(test);
	/* Small: served by kmalloc. */
	base = tag_charge(&tag);
	p = alloc_hooks_tag(&tag, kvmalloc_node_noprof(512, GFP_KERNEL, NUMA_NO_NODE));
	KUNIT_ASSERT_NOT_NULL(test, p);
	KUNIT_EXPECT_FALSE(test, is_vmalloc_addr(p));
	EXPECT_CHARGE(test, &tag, base, object_charge(p).bytes, 1);
	kvfree(p);
	EXPECT_CHARGE(test, &tag, base, 0, 0);

	/* Larger than kmalloc can ever serve: falls back to vmalloc. */
	p = alloc_hooks_tag(&tag, kvmalloc_node_noprof(KMALLOC_MAX_SIZE + PAGE_SIZE,
						      GFP_KERNEL, NUMA_NO_NODE));
	KUNIT_ASSERT_NOT_NULL(test, p);
	KUNIT_EXPECT_TRUE(test, is_vmalloc_addr(p));
	c = object_charge(p);
	EXPECT_CHARGE(test, &tag, base, c.bytes, c.calls);
	kvfree(p);
	EXPECT_CHARGE(test, &tag, base, 0, 0);
}

/*
 * The first chunk can hold a whole atom per CPU: 1 MiB on ppc64 with the
 * hash MMU, so allocate up to 4 MiB per CPU before giving up.
 */
#define PCPU_TEST_SIZE 2048
#define PCPU_TEST_MAX ((4 << 20) / PCPU_TEST_SIZE)

static void percpu_charges_size_times_possible_cpus(struct kunit *test)
{
	size_t full = ALIGN(PCPU_TEST_SIZE, PCPU_MIN_ALLOC_SIZE) * num_possible_cpus();
	void __percpu **ptrs;
	DEFINE_ALLOC_TAG(tag);
	struct charge base, before, after;
	int i, n, counted = 0, odd = 0;

	skip_unless_profiling(test);
	if (IS_ENABLED(CONFIG_MEMCG))
		kunit_skip(test, "memcg adds per-object extras; covered without MEMCG");
	ptrs = kunit_kcalloc(test, PCPU_TEST_MAX, sizeof(*ptrs), GFP_KERNEL);
	KUNIT_ASSERT_NOT_NULL(test, ptrs);

	/*
	 * The first chunk has no tag storage, so what it serves is not
	 * counted; allocate until one lands in a chunk that counts. Each
	 * allocation must charge exactly 0 or exactly the full size.
	 */
	base = tag_charge(&tag);
	for (n = 0; n < PCPU_TEST_MAX && !counted; n++) {
		before = tag_charge(&tag);
		ptrs[n] = alloc_hooks_tag(&tag, pcpu_alloc_noprof(PCPU_TEST_SIZE, 8,
								  false, GFP_KERNEL));
		KUNIT_ASSERT_NOT_NULL(test, ptrs[n]);
		after = tag_charge(&tag);
		if (after.bytes - before.bytes == full && after.calls - before.calls == 1)
			counted++;
		else if (after.bytes != before.bytes || after.calls != before.calls)
			odd++;
	}
	KUNIT_EXPECT_EQ(test, odd, 0);
	KUNIT_EXPECT_EQ(test, counted, 1);
	EXPECT_CHARGE(test, &tag, base, full, 1);
	for (i = 0; i < n; i++)
		free_percpu(ptrs[i]);
	EXPECT_CHARGE(test, &tag, base, 0, 0);
}

static void mempool_lifecycle(struct kunit *test)
{
	const size_t elem = 100;
	const int min_nr = 4;
	struct alloc_tag *create_tag = mempool_create_tag();
	DEFINE_ALLOC_TAG(alloc_tag);
	struct charge cbase, abase;
	u64 expect_bytes;
	mempool_t *pool;
	void *p;
	int i;

	skip_unless_profiling(test);
	cbase = tag_charge(create_tag);
	pool = alloc_hooks_tag(create_tag,
			       mempool_create_node_noprof(min_nr, mempool_kmalloc,
							  mempool_kfree, (void *)elem,
							  GFP_KERNEL, NUMA_NO_NODE));
	KUNIT_ASSERT_NOT_NULL(test, pool);
	/*
	 * The pool and the min_nr preallocated elements; the element array
	 * is allocated through kmalloc_array_node(), which tags its own
	 * call site in mm/mempool.c.
	 */
	expect_bytes = object_charge(pool).bytes;
	for (i = 0; i < pool->curr_nr; i++)
		expect_bytes += object_charge(pool->elements[i]).bytes;
	KUNIT_EXPECT_EQ(test, pool->curr_nr, min_nr);
	EXPECT_CHARGE(test, create_tag, cbase, expect_bytes, 1 + min_nr);

	/* mempool_alloc() allocates afresh while it can: its site pays. */
	abase = tag_charge(&alloc_tag);
	p = alloc_hooks_tag(&alloc_tag, mempool_alloc_noprof(pool, GFP_KERNEL));
	KUNIT_ASSERT_NOT_NULL(test, p);
	EXPECT_CHARGE(test, &alloc_tag, abase, object_charge(p).bytes, 1);
	EXPECT_CHARGE(test, create_tag, cbase, expect_bytes, 1 + min_nr);
	mempool_free(p, pool);	/* pool is full: the element is freed */
	EXPECT_CHARGE(test, &alloc_tag, abase, 0, 0);

	mempool_destroy(pool);
	EXPECT_CHARGE(test, create_tag, cbase, 0, 0);
}

struct rht_test_obj {
	int key;
	struct rhash_head node;
};

static const struct rhashtable_params rht_test_params = {
	.key_len = sizeof(int),
	.key_offset = offsetof(struct rht_test_obj, key),
	.head_offset = offsetof(struct rht_test_obj, node),
	.automatic_shrinking = false,
};

#define RHT_TEST_OBJS 512

static void rhashtable_growth_charged_to_init_site(struct kunit *test)
{
	DEFINE_ALLOC_TAG(tag);
	struct rht_test_obj *objs;
	struct bucket_table *tbl;
	struct rhashtable ht;
	struct charge base, c;
	unsigned int initial;
	int i;

	skip_unless_profiling(test);
	objs = kunit_kcalloc(test, RHT_TEST_OBJS, sizeof(*objs), GFP_KERNEL);
	KUNIT_ASSERT_NOT_NULL(test, objs);

	base = tag_charge(&tag);
	KUNIT_ASSERT_EQ(test, alloc_hooks_tag(&tag, rhashtable_init_noprof(&ht,
						&rht_test_params)), 0);
	tbl = rcu_dereference_protected(ht.tbl, 1);
	initial = tbl->size;
	c = object_charge(tbl);
	EXPECT_CHARGE(test, &tag, base, c.bytes, c.calls);

	/* Growth runs in a worker, outside any tag of ours. */
	for (i = 0; i < RHT_TEST_OBJS; i++) {
		objs[i].key = i;
		KUNIT_ASSERT_EQ(test, rhashtable_insert_fast(&ht, &objs[i].node,
							     rht_test_params), 0);
	}
	do {
		flush_work(&ht.run_work);
		tbl = rcu_dereference_protected(ht.tbl, 1);
	} while (rcu_access_pointer(tbl->future_tbl));
	rcu_barrier();	/* old tables are freed by RCU callbacks */
	KUNIT_EXPECT_GT(test, tbl->size, initial);
	c = object_charge(tbl);
	EXPECT_CHARGE(test, &tag, base, c.bytes, c.calls);

	rhashtable_destroy(&ht);
	EXPECT_CHARGE(test, &tag, base, 0, 0);
}

static void nested_tags_charge_inner_only(struct kunit *test)
{
	struct alloc_tag *outer = outer_tag();
	DEFINE_ALLOC_TAG(inner);
	struct alloc_tag *saved = current->alloc_tag;
	struct charge obase, ibase;
	void *p;

	skip_unless_profiling(test);
	obase = tag_charge(outer);
	ibase = tag_charge(&inner);
	p = alloc_hooks_tag(outer, ({
		struct alloc_tag *seen = current->alloc_tag;
		void *q = alloc_hooks_tag(&inner, kmalloc_noprof(128, GFP_KERNEL));

		KUNIT_EXPECT_PTR_EQ(test, seen, outer);
		KUNIT_EXPECT_PTR_EQ(test, current->alloc_tag, outer);
		q;
	}));
	KUNIT_ASSERT_NOT_NULL(test, p);
	KUNIT_EXPECT_PTR_EQ(test, current->alloc_tag, saved);
	EXPECT_CHARGE(test, &inner, ibase, object_charge(p).bytes, 1);
	EXPECT_CHARGE(test, outer, obase, 0, 0);
	kfree(p);
	EXPECT_CHARGE(test, &inner, ibase, 0, 0);
}

static struct kunit_case alloc_tag_accounting_cases[] = {
	KUNIT_CASE(kmalloc_charges_slab_object_size),
	KUNIT_CASE(kmalloc_large_charges_pages),
	KUNIT_CASE(krealloc_moves_charge_with_object),
	KUNIT_CASE(kmem_cache_alloc_and_bulk),
	KUNIT_CASE(page_allocators_charge_whole_allocation),
	KUNIT_CASE(vmalloc_charges_pages_and_page_array),
	KUNIT_CASE(kvmalloc_both_ways),
	KUNIT_CASE(percpu_charges_size_times_possible_cpus),
	KUNIT_CASE(mempool_lifecycle),
	KUNIT_CASE(rhashtable_growth_charged_to_init_site),
	KUNIT_CASE(nested_tags_charge_inner_only),
	{}
};

static struct kunit_suite alloc_tag_accounting_suite = {
	.name = "alloc_tag_accounting",
	.test_cases = alloc_tag_accounting_cases,
};

kunit_test_suite(alloc_tag_accounting_suite);

MODULE_DESCRIPTION("KUnit tests for memory allocation profiling accounting");
MODULE_LICENSE("GPL");
