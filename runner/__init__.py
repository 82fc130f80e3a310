"""allocprof-ktest runner: build, boot and read test kernels for memory
allocation profiling."""

__version__ = "0.1.0"
