// SPDX-License-Identifier: GPL-2.0
/*
 * Allocation microbenchmark for memory allocation profiling overhead, as
 * described in the series' cover letter: many kmalloc/kfree pairs with
 * sizes growing from 8 to 240 bytes, and many __get_free_page/free_page
 * pairs, on one CPU. Each loop is timed with the kernel clock and reported
 * in KTAP, one test per loop, with the time in a diagnostic line:
 *
 *   # alloc_tag_bench: kmalloc iterations=1000000 ns=123456789
 *
 * All the work happens at load time; the module frees everything it
 * allocates, so it unloads cleanly.
 */
#include <linux/completion.h>
#include <linux/gfp.h>
#include <linux/kthread.h>
#include <linux/module.h>
#include <linux/slab.h>
#include <linux/timekeeping.h>

static unsigned int iterations = 1000000;
module_param(iterations, uint, 0444);
MODULE_PARM_DESC(iterations, "allocation/free pairs per loop");

static unsigned int cpu;
module_param(cpu, uint, 0444);
MODULE_PARM_DESC(cpu, "CPU the loops run on");

#define BENCH_MIN_SIZE 8
#define BENCH_MAX_SIZE 240

struct bench_run {
	struct completion done;
	u64 kmalloc_ns;
	u64 pgalloc_ns;
	int err;
};

static u64 bench_kmalloc(struct bench_run *run)
{
	size_t size = BENCH_MIN_SIZE;
	u64 start = ktime_get_ns();
	unsigned int i;

	for (i = 0; i < iterations; i++) {
		void *p = kmalloc(size, GFP_KERNEL);

		if (!p) {
			run->err = -ENOMEM;
			break;
		}
		kfree(p);
		size = size >= BENCH_MAX_SIZE ? BENCH_MIN_SIZE : size + 8;
	}
	return ktime_get_ns() - start;
}

static u64 bench_pgalloc(struct bench_run *run)
{
	u64 start = ktime_get_ns();
	unsigned int i;

	for (i = 0; i < iterations; i++) {
		unsigned long page = __get_free_page(GFP_KERNEL);

		if (!page) {
			run->err = -ENOMEM;
			break;
		}
		free_page(page);
	}
	return ktime_get_ns() - start;
}

static int bench_thread(void *data)
{
	struct bench_run *run = data;

	run->kmalloc_ns = bench_kmalloc(run);
	run->pgalloc_ns = bench_pgalloc(run);
	complete(&run->done);
	return 0;
}

static void bench_report(int n, const char *name, u64 ns, int err)
{
	pr_info("    # alloc_tag_bench: %s iterations=%u ns=%llu\n", name,
		iterations, ns);
	pr_info("    %s %d %s\n", err ? "not ok" : "ok", n, name);
}

static int __init alloc_tag_bench_init(void)
{
	struct bench_run run = { .err = 0 };
	struct task_struct *task;

	if (cpu >= nr_cpu_ids || !cpu_online(cpu))
		return -EINVAL;
	init_completion(&run.done);
	task = kthread_run_on_cpu(bench_thread, &run, cpu, "alloc_tag_bench/%u");
	if (IS_ERR(task))
		return PTR_ERR(task);
	wait_for_completion(&run.done);

	pr_info("    KTAP version 1\n");
	pr_info("    # Subtest: alloc_tag_bench\n");
	pr_info("    1..2\n");
	bench_report(1, "kmalloc", run.kmalloc_ns, run.err);
	bench_report(2, "pgalloc", run.pgalloc_ns, run.err);
	pr_info("%s 1 alloc_tag_bench\n", run.err ? "not ok" : "ok");
	return run.err;
}

static void __exit alloc_tag_bench_exit(void)
{
}

module_init(alloc_tag_bench_init);
module_exit(alloc_tag_bench_exit);
MODULE_DESCRIPTION("Memory allocation profiling overhead microbenchmark");
MODULE_LICENSE("GPL");
