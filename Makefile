# Keras Fleet: the front door. `make` (or `make help`) lists every target.
# Variables use ?= so the environment or the command line can set them:
#   make serve MODEL_PATH=/path/to/model.keras PORT=9000

.DEFAULT_GOAL := help
SHELL := /bin/bash

PYTHON     ?= python3
VENV       ?= .venv
PORT       ?= 8080
RUN_DIR    ?= run
DEMO_MODEL ?= models/digits.keras
MODEL_PATH ?= $(DEMO_MODEL)
PYTEST_ARGS ?=
BENCH_ARGS ?=
# apt-get needs root; use sudo when not root.
SUDO       ?= $(shell [ "$$(id -u)" = 0 ] || echo sudo)

# The app and gunicorn read these from the environment (see api/config.py).
export MODEL_PATH

BIN       := $(VENV)/bin
INSTALLED := $(VENV)/.installed
STACK     := $(BIN)/python scripts/localstack.py --run-dir $(RUN_DIR) --port $(PORT)

.PHONY: help setup system-packages bench-packages serve up down status logs test bench clean

help: ## List the targets
	@awk 'BEGIN {FS = ":.*## "} /^[a-zA-Z_-]+:.*## / {printf "  \033[36m%-16s\033[0m %s\n", $$1, $$2}' $(MAKEFILE_LIST)

setup: system-packages $(INSTALLED) $(DEMO_MODEL) ## Install everything needed here (idempotent)

system-packages: ## apt-get install nginx and python3-venv when missing
	@command -v nginx >/dev/null || [ -x /usr/sbin/nginx ] || \
		{ $(SUDO) apt-get update -qq && $(SUDO) apt-get install -y -qq --no-install-recommends nginx; }
	@$(PYTHON) -c 'import ensurepip, venv' 2>/dev/null || \
		{ $(SUDO) apt-get update -qq && $(SUDO) apt-get install -y -qq python3-venv; }

$(INSTALLED): setup.py
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[test]'
	touch $@

$(DEMO_MODEL): | $(INSTALLED)
	$(BIN)/python scripts/train_demo_model.py --output $@

serve: setup ## Serve MODEL_PATH (default: the demo model) on http://127.0.0.1:$(PORT), in the foreground
	$(STACK) serve

up: setup ## Start the same stack in the background (pid files and logs in RUN_DIR)
	$(STACK) up

down: ## Stop the background stack gracefully
	@[ -x $(BIN)/python ] && $(STACK) down || echo "not running"

status: ## Show whether the background stack is up and ready
	@$(STACK) status

logs: ## Follow the background stack's logs: app and gunicorn (JSON) and nginx's access log
	@tail -n 20 -F $(RUN_DIR)/logs/app.log $(RUN_DIR)/logs/access.log

test: setup ## Run the whole test suite (what CI runs)
	$(BIN)/python -m pytest $(PYTEST_ARGS)

bench-packages: ## apt-get install the load generators of the benchmark (wrk, hey) when missing
	@command -v wrk >/dev/null && command -v hey >/dev/null || \
		{ $(SUDO) apt-get update -qq && $(SUDO) apt-get install -y -qq wrk hey; }

bench: setup bench-packages ## Benchmark floor, naive, fleet and raw side by side; writes reports/bench.json and .md
	$(BIN)/python scripts/bench.py $(BENCH_ARGS)

clean: down ## Remove the run directory and build leftovers (keeps the venv and models)
	rm -rf $(RUN_DIR) build *.egg-info .pytest_cache

# --- Local fleet ---
# N instances of the stack (nginx + gunicorn, the image's deploy configs), each on its own
# loopback address, behind HAProxy on 127.0.0.1:$(FLEET_PORT): rehearse a roll before
# trusting `make roll`. Logic in scripts/localfleetctl.py (package scripts/localfleet/).

N              ?= 3
FLEET_PORT     ?= 8000
FLEET_DIR      ?= $(RUN_DIR)/fleet
MODEL_VERSION  ?=
# Seconds between HAProxy's health checks; empty keeps the AWS target group's 10 s.
CHECK_INTERVAL ?=
FLEET          := $(BIN)/python scripts/localfleetctl.py --run-dir $(FLEET_DIR)

.PHONY: fleet-packages fleet-up fleet-status roll-local fleet-down

fleet-packages: ## apt-get install HAProxy (Debian's) when missing
	@command -v haproxy >/dev/null || [ -x /usr/sbin/haproxy ] || \
		{ $(SUDO) apt-get update -qq && $(SUDO) apt-get install -y -qq --no-install-recommends haproxy; }

fleet-up: setup fleet-packages ## Start N instances (MODEL_PATH, MODEL_VERSION) behind HAProxy on 127.0.0.1:FLEET_PORT
	$(FLEET) up --instances $(N) --port $(FLEET_PORT) --model-path $(MODEL_PATH) \
		$(if $(MODEL_VERSION),--model-version $(MODEL_VERSION)) $(if $(CHECK_INTERVAL),--check-interval $(CHECK_INTERVAL))

fleet-status: ## Show HAProxy and each instance: address, model version, health, requests in flight
	@$(FLEET) status

roll-local: ## Roll the local fleet to MODEL_PATH / MODEL_VERSION, one instance at a time; rolls back on failure
	$(if $(MODEL_VERSION),,$(error MODEL_VERSION is not set: make roll-local MODEL_VERSION=2 [MODEL_PATH=...]))
	$(FLEET) roll --model-path $(MODEL_PATH) --model-version $(MODEL_VERSION)

fleet-down: ## Stop HAProxy, then every instance, gracefully
	@[ -x $(BIN)/python ] && $(FLEET) down || echo "not running"

# The test suite runs real HAProxy; `make clean` must not orphan a running fleet.
test: fleet-packages
clean: fleet-down
