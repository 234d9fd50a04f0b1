# Benchmarks. bench-convert: the converter's transcode against bare ffmpeg on
# the same generated files (3 and 60 minutes; about 10 minutes on 2 cores).
# BENCH_ARGS passes options, e.g. BENCH_ARGS="--long-minutes 0 --runs 3".
.PHONY: bench-convert

bench-convert: $(VENV)/.installed
	$(PY) -m bench.convert $(BENCH_ARGS)
