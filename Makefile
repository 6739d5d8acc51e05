# cvi-lab: the two commands are `make demo` and `make test`; both set everything up on a fresh machine.
SHELL := /bin/bash
VENV := .venv
PY := $(VENV)/bin/python
export PYTHONPATH := $(CURDIR)
export HF_HUB_OFFLINE := 1
export TRANSFORMERS_OFFLINE := 1
export CVI_LAB_HOME ?= $(CURDIR)/var

.PHONY: setup lock wheel-check system-deps demo test test-fast serve lab bench bench-stages bench-avatar bench-latency bench-barge-in bench-playout bench-answers bench-asr-window bench-turn-taking bench-peer bench-audio-only bench-capacity bench-remote bench-store clean

# The venv, built from requirements.lock + requirements-nodeps.lock (hashes) and keyed by them, shared by clones.
setup:
	@bash scripts/ensure_venv.sh

# Regenerate the lock files after a change of pyproject.toml's dependencies (ARGS=--upgrade: newest allowed).
lock: setup
	bash scripts/lock.sh $(ARGS)

# The wheel in a fresh venv from the lock: cvi-lab serve / demo / experiment from an empty directory (heavy).
wheel-check: system-deps
	bash scripts/wheel_check.sh

# Debian packages some tests need (a real browser for the meeting-page test, ffmpeg for previews).
system-deps:
	@bash scripts/ensure_system_deps.sh

demo: setup
	$(PY) -m cvi_lab demo

test: setup system-deps
	$(PY) -m pytest -q -rs --durations=15 -p no:cacheprovider $(PYTEST_ARGS)

test-fast: setup
	$(PY) -m pytest -q -rs -p no:cacheprovider -m "not slow and not browser" $(PYTEST_ARGS)

serve: setup
	$(PY) -m cvi_lab serve $(ARGS)

lab: setup
	$(VENV)/bin/jupyter lab --no-browser --ip=127.0.0.1 $$([ "$$(id -u)" = 0 ] && echo --allow-root) notebooks/

bench: bench-stages bench-asr-window bench-avatar bench-latency bench-barge-in bench-playout bench-answers bench-turn-taking bench-peer bench-audio-only bench-remote bench-store bench-capacity

bench-stages: setup
	$(PY) -m benchmarks.bench_stages

bench-avatar: setup
	$(PY) -m benchmarks.bench_avatar

bench-latency: setup
	$(PY) -m benchmarks.bench_latency

bench-barge-in: setup
	$(PY) -m benchmarks.bench_barge_in

bench-playout: setup
	$(PY) -m benchmarks.bench_playout

bench-answers: setup
	$(PY) -m benchmarks.bench_answers $(ARGS)

bench-asr-window: setup
	$(PY) -m benchmarks.bench_asr_window

bench-audio-only: setup
	$(PY) -m benchmarks.bench_audio_only

bench-capacity: setup
	$(PY) -m benchmarks.bench_capacity $(ARGS)

bench-remote: setup
	$(PY) -m benchmarks.bench_remote_stages $(ARGS)

bench-turn-taking: setup
	$(PY) -m benchmarks.bench_turn_taking $(ARGS)

# SQLite vs PostgreSQL per store call (a throwaway PostgreSQL cluster, or ARGS=--pg-url=postgresql://...).
bench-store: setup
	$(PY) -m benchmarks.bench_store $(ARGS)

# The same scripted participant against Pipecat (pinned, in its own cached venv) and cvi-lab, on the same models.
bench-peer: setup
	pipecat_py=$$(bash scripts/ensure_pipecat_venv.sh) && $(PY) -m benchmarks.bench_peer --pipecat-python "$$pipecat_py" $(ARGS)

clean:
	rm -rf var outputs multirun .pytest_cache

# The lab: experiments, sweeps and comparisons (see experiments/README.md).
.PHONY: experiment sweep compare
experiment: setup
	$(PY) -m cvi_lab experiment $(ARGS)

# One sweep, its axes from its config's hydra.sweeper.params: make sweep [SWEEP=turn_sweep|llm_sweep|tts_sweep] [ARGS=...]
SWEEP ?= asr_sweep
sweep: setup
	$(PY) -m cvi_lab experiment -m experiment=$(SWEEP) $(ARGS)

compare: setup
	$(PY) -m cvi_lab compare $(ARGS)
