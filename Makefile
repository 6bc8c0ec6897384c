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
# Every package the venvs install, pinned (`make lock` writes them): a fresh clone, CI
# and the image install the versions the tests last ran against (on the lock's Python;
# scripts/lock_constraint.sh).
LOCK      := requirements.lock
IAC_LOCK  := requirements-iac.lock
STACK     := $(BIN)/python scripts/localstack.py --run-dir $(RUN_DIR) --port $(PORT)
# $(call new_venv,DIR): a venv at DIR (made if missing) with the latest pip.
new_venv = $(PYTHON) -m venv $(1) && $(1)/bin/pip install -q --upgrade pip

.PHONY: help setup lock system-packages bench-packages serve up down local-status logs test bench bench-parts clean

help: ## List the targets
	@awk 'BEGIN {FS = ":.*## "} /^[a-zA-Z_-]+:.*## / {printf "  \033[36m%-16s\033[0m %s\n", $$1, $$2}' $(MAKEFILE_LIST)

setup: system-packages $(INSTALLED) $(DEMO_MODEL) ## Install everything needed here (idempotent)

system-packages: ## apt-get install nginx, curl (the README's examples, run by the tests) and python3-venv when missing
	@command -v nginx >/dev/null || [ -x /usr/sbin/nginx ] || \
		{ $(SUDO) apt-get update -qq && $(SUDO) apt-get install -y -qq --no-install-recommends nginx; }
	@command -v curl >/dev/null || \
		{ $(SUDO) apt-get update -qq && $(SUDO) apt-get install -y -qq --no-install-recommends curl; }
	@$(PYTHON) -c 'import ensurepip, venv' 2>/dev/null || \
		{ $(SUDO) apt-get update -qq && $(SUDO) apt-get install -y -qq python3-venv; }

$(INSTALLED): setup.py $(LOCK)
	$(call new_venv,$(VENV))
	$(BIN)/pip install -q -e '.[test]' $$(scripts/lock_constraint.sh $(BIN)/python $(LOCK))
	touch $@

$(DEMO_MODEL): | $(INSTALLED)
	$(BIN)/python scripts/train_demo_model.py --output $@

lock: ## Resolve setup.py's and IAC_TOOLS' packages afresh and pin them all (after changing either)
	scripts/lock_requirements.sh $(PYTHON) $(LOCK) $(IAC_LOCK) $(foreach t,$(IAC_TOOLS),'$(t)')

serve: setup ## Serve MODEL_PATH (default: the demo model) on http://127.0.0.1:$(PORT), in the foreground
	$(STACK) serve

up: setup ## Start the same stack in the background (pid files and logs in RUN_DIR)
	$(STACK) up

down: ## Stop the background stack gracefully
	@[ -x $(BIN)/python ] && $(STACK) down || echo "not running"

local-status: ## Show whether the background stack is up and ready
	@$(STACK) status

logs: ## Follow the background stack's logs: app and gunicorn (JSON) and nginx's access log (a line per request)
	@tail -n 20 -F $(RUN_DIR)/logs/app.log $(RUN_DIR)/logs/access.log

test: setup bench-packages ## Run the whole test suite (what CI runs)
	$(BIN)/python -m pytest $(PYTEST_ARGS)

bench-packages: ## apt-get install the benchmark's load generator (wrk) when missing
	@command -v wrk >/dev/null || \
		{ $(SUDO) apt-get update -qq && $(SUDO) apt-get install -y -qq wrk; }

bench: setup bench-packages ## Benchmark floor, naive, fleet and raw side by side; writes reports/bench.json and .md
	$(BIN)/python scripts/bench.py $(BENCH_ARGS)

bench-parts: setup bench-packages ## What each part of the fleet's work costs on the small model; writes reports/bench_parts.*
	$(BIN)/python scripts/bench_parts.py $(BENCH_ARGS)

clean: down ## Remove the run directory and build leftovers (keeps the venv and models)
	rm -rf $(RUN_DIR) build *.egg-info .pytest_cache

# --- Load testing ---
# Locust against HOST, by default the local stack that `make up` starts. The SLO and the
# autoscaler headroom are in loadtest/locust.conf; change one for a run with
#   make loadtest LOCUST_ARGS="--slo-p95-ms 150"     (every option: $(BIN)/python -m loadtest.options)

HOST        ?= http://127.0.0.1:$(PORT)
USERS       ?= 10
SPAWN_RATE  ?= 10
DURATION    ?= 30s
# Requests per second of each user; 0: each sends its next request as soon as it has an answer.
USER_RPS    ?= 0
INSTANCES   ?= 1
# Model to load (/v1/models/<name>); empty: the one the server names on /healthz/ready.
MODEL_NAME  ?=
REPORTS     ?= reports
LOCUST_ARGS ?=

# A load-generator machine that does not serve: LOADTEST_ONLY=1 installs only what the
# load test runs on (loadtest/requirements.txt: Locust, numpy, orjson; pinned by the
# lock), not the app's packages (TensorFlow's half a gigabyte among them).
LOADTEST_ONLY ?=
LOADTEST_INSTALLED := $(if $(LOADTEST_ONLY),$(VENV)/.installed-loadtest,$(INSTALLED))

$(VENV)/.installed-loadtest: setup.py loadtest/requirements.txt $(LOCK)
	$(call new_venv,$(VENV))
	$(BIN)/pip install -q -r loadtest/requirements.txt $$(scripts/lock_constraint.sh $(BIN)/python $(LOCK))
	$(BIN)/pip install -q --no-deps -e .
	touch $@

LOCUST := $(BIN)/locust --config loadtest/locust.conf --headless --host $(HOST) \
	--model-name "$(MODEL_NAME)" --instances $(INSTANCES) $(LOCUST_ARGS)

.PHONY: loadtest capacity

loadtest: $(LOADTEST_INSTALLED) ## Locust at HOST with USERS, SPAWN_RATE, DURATION; reports/loadtest.*; exit code = SLO verdict
	$(LOCUST) -f loadtest/locustfile.py -u $(USERS) -r $(SPAWN_RATE) -t $(DURATION) --user-rps $(USER_RPS) \
		--html $(REPORTS)/loadtest.html --csv $(REPORTS)/loadtest --slo-report $(REPORTS)/loadtest.json

capacity: $(LOADTEST_INSTALLED) ## Step the rate at HOST up until the SLO fails; reports/capacity.json sizes the autoscaler
	$(LOCUST) -f loadtest/locustfile.py,loadtest/capacity.py \
		--html $(REPORTS)/capacity.html --csv $(REPORTS)/capacity --capacity-report $(REPORTS)/capacity.json

# --- Image (Packer) ---
# The AMI recipe is deploy/packer/; `make bake-local` and `make test-image` prove it
# offline (README, "The image (AMI)").

# AWS_REGION (AWS fleet section below) is where the AMI is baked; unset, the template's default.
INSTANCE_TYPE ?= t3.medium
# MODEL_NAME (above, empty: the model file's stem) names the model in the image too.
MODEL_VERSION ?= 1
IMAGE_STAGE   ?= build/image
# Production settings baked into the image: VARIABLE=value lines of api/config.py's
# variables (scripts/image_settings.py checks them); empty: the defaults.
SETTINGS      ?=
MANIFEST      ?= reports/packer-manifest.json
# The Debian 12 base root of `make bake-local` and the tests, kept between runs.
IMAGE_CACHE   ?= /var/cache/keras-fleet
DEBIAN_MIRROR ?= http://deb.debian.org/debian
APP_VERSION   ?= $(shell sed -n 's/^ *version="\(.*\)",/\1/p' setup.py)
GIT_COMMIT    ?= $(shell git rev-parse --short HEAD 2>/dev/null || echo unknown)

PACKER_VARS = $(if $(AWS_REGION),-var region=$(AWS_REGION)) -var instance_type=$(INSTANCE_TYPE) \
	-var model_path=$(MODEL_PATH) -var model_name=$(MODEL_NAME) -var model_version=$(MODEL_VERSION) \
	-var app_version=$(APP_VERSION) -var git_commit=$(GIT_COMMIT) -var stage_dir=$(IMAGE_STAGE) \
	-var settings_digest=$$(cat $(IMAGE_STAGE)/settings-digest)
# A model other than the demo must exist: the demo is trained when missing.
CHECK_MODEL = $(if $(filter $(DEMO_MODEL),$(MODEL_PATH))$(wildcard $(MODEL_PATH)),,$(error MODEL_PATH=$(MODEL_PATH): no such file))

.PHONY: image-packages image-stage packer-validate bake-ami bake-local test-image

image-packages: ## apt-get install packer, debootstrap and systemd-nspawn when missing
	@command -v packer >/dev/null && command -v debootstrap >/dev/null && command -v systemd-nspawn >/dev/null || \
		{ $(SUDO) apt-get update -qq && $(SUDO) apt-get install -y -qq --no-install-recommends \
			packer debootstrap systemd-container openssh-client; }

image-stage: setup ## Stage the wheelhouse and configs the image installs, in IMAGE_STAGE
	scripts/stage_image.sh $(IMAGE_STAGE) $(BIN)/python "$(SETTINGS)"

packer-validate: image-packages image-stage ## Validate the Packer template (offline; it checks the stage and model exist)
	CHECKPOINT_DISABLE=1 packer validate $(PACKER_VARS) deploy/packer

bake-ami: image-packages image-stage ## Build the AMI on AWS (needs AWS credentials); prints its id, writes MANIFEST
	$(CHECK_MODEL)
	scripts/bake_ami.sh $(MANIFEST) $(PACKER_VARS)

bake-local: image-packages image-stage ## Bake the same recipe into a local Debian 12 root, boot it, check it serves
	$(CHECK_MODEL)
	$(SUDO) $(BIN)/python scripts/bake_local.py --stage $(IMAGE_STAGE) --model-path $(MODEL_PATH) \
		--model-name "$(MODEL_NAME)" --model-version $(MODEL_VERSION) --app-version $(APP_VERSION) \
		--cache-dir $(IMAGE_CACHE) --mirror $(DEBIAN_MIRROR)

test-image: image-packages setup ## Prove the image offline: packer validate, local bake and boot, build against moto (CI)
	IMAGE_CACHE=$(IMAGE_CACHE) DEBIAN_MIRROR=$(DEBIAN_MIRROR) $(BIN)/python -m pytest -m image $(PYTEST_ARGS)

# --- AWS fleet ---
# CloudFormation stack, rolls and status of the fleet on AWS, through boto3
# (scripts/fleetctl.py; the logic is in scripts/fleet/). Region, stack name and
# profile come from these variables or the environment:
#   make stack AWS_REGION=us-east-1 VPC_ID=vpc-0abc SUBNETS=subnet-0a,subnet-0b
#   make roll AWS_REGION=us-east-1 [AMI=ami-0123...]
#   make teardown AWS_REGION=us-east-1 CONFIRM=keras-fleet
STACK_NAME       ?= keras-fleet
AWS_REGION       ?= $(AWS_DEFAULT_REGION)
AWS_PROFILE      ?=
# AMI to roll to (default: the last build in reports/packer-manifest.json).
AMI              ?=
# Needed to create the stack; INSTANCE_SUBNETS defaults to SUBNETS.
VPC_ID           ?=
SUBNETS          ?=
INSTANCE_SUBNETS ?=
# Any other template parameter, e.g. STACK_PARAMS="InstanceType=c7i.xlarge MaxSize=10".
STACK_PARAMS     ?=
# `make teardown` deletes the stack only when this repeats its name.
CONFIRM          ?=
# cfn-lint and checkov live in their own venv: checkov pins boto3 exactly and many
# other packages, which would downgrade the app's.
IAC_VENV         ?= .venv-iac
IAC_TOOLS        ?= cfn-lint>=1.20,<2 checkov>=3.2,<4
TEMPLATE         := deploy/aws/fleet.yaml

FLEET := $(BIN)/python scripts/fleetctl.py --region $(AWS_REGION) --stack-name $(STACK_NAME) \
	$(if $(AWS_PROFILE),--profile $(AWS_PROFILE))
IAC_INSTALLED := $(IAC_VENV)/.installed
export IAC_VENV

# The fleet's targets need a region; fail before anything runs when it is missing.
ifneq ($(filter stack roll status rollback teardown,$(MAKECMDGOALS)),)
  ifeq ($(strip $(AWS_REGION)),)
    $(error AWS_REGION is not set: name the fleet's region, e.g. make $(firstword $(filter stack roll status rollback teardown,$(MAKECMDGOALS))) AWS_REGION=us-east-1)
  endif
endif

.PHONY: stack roll status rollback teardown lint-template

stack: $(INSTALLED) ## Create or update the fleet's stack and print its URL (first time: VPC_ID, SUBNETS)
	$(FLEET) stack $(if $(VPC_ID),--vpc-id $(VPC_ID)) $(if $(SUBNETS),--subnets $(SUBNETS)) \
		$(if $(INSTANCE_SUBNETS),--instance-subnets $(INSTANCE_SUBNETS)) $(if $(AMI),--ami $(AMI)) \
		--manifest $(MANIFEST) $(foreach p,$(STACK_PARAMS),--param $(p))

roll: $(INSTALLED) ## Roll the fleet to AMI (default: the last Packer build, in MANIFEST); rolls back by itself on alarms
	$(FLEET) roll $(if $(AMI),--ami $(AMI)) --manifest $(MANIFEST)

status: $(INSTALLED) ## Show the fleet's instances, their health and AMI, and the last roll
	@$(FLEET) status

rollback: $(INSTALLED) ## Undo the last roll (or the one in progress)
	$(FLEET) rollback

teardown: $(INSTALLED) ## Delete the fleet's stack: instances, load balancer, alarms (CONFIRM=<stack name>)
	$(FLEET) teardown $(if $(CONFIRM),--confirm $(CONFIRM))

lint-template: $(IAC_INSTALLED) ## cfn-lint and checkov on the CloudFormation template
	$(IAC_VENV)/bin/cfn-lint $(TEMPLATE)
	@# Offline: no update check, no guideline download from the vendor.
	CKV_SKIP_PACKAGE_UPDATE_CHECK=true BC_SKIP_MAPPING=TRUE \
		$(IAC_VENV)/bin/checkov --quiet --compact --skip-download --framework cloudformation -f $(TEMPLATE)

$(IAC_INSTALLED): $(IAC_LOCK)
	$(call new_venv,$(IAC_VENV))
	$(IAC_VENV)/bin/pip install -q $(foreach t,$(IAC_TOOLS),'$(t)') $$(scripts/lock_constraint.sh $(IAC_VENV)/bin/python $(IAC_LOCK))
	touch $@

# The test suite lints and scans the template with the tools above.
test: $(IAC_INSTALLED)

# --- Local fleet ---
# N instances of the stack (nginx + gunicorn, the image's deploy configs), each on its own
# loopback address, behind HAProxy on 127.0.0.1:$(FLEET_PORT): rehearse a roll before
# trusting `make roll`. Logic in scripts/localfleetctl.py (package scripts/localfleet/).

N              ?= 3
FLEET_PORT     ?= 8000
FLEET_DIR      ?= $(RUN_DIR)/fleet
# MODEL_VERSION (image section, default 1) labels the fleet's model; roll-local wants it given.
# Seconds between HAProxy's health checks; empty keeps the AWS target group's 10 s.
CHECK_INTERVAL ?=
# roll-local: seconds a new instance gets to become healthy, and an old one to drain;
# empty keeps the AWS group's 180 s grace period and the target group's 70 s delay.
WARMUP         ?=
DRAIN_TIMEOUT  ?=
LOCAL_FLEET    := $(BIN)/python scripts/localfleetctl.py --run-dir $(FLEET_DIR)

.PHONY: fleet-packages fleet-up fleet-status roll-local fleet-down

fleet-packages: ## apt-get install HAProxy (Debian's) when missing
	@command -v haproxy >/dev/null || [ -x /usr/sbin/haproxy ] || \
		{ $(SUDO) apt-get update -qq && $(SUDO) apt-get install -y -qq --no-install-recommends haproxy; }

fleet-up: setup fleet-packages ## Start N instances (MODEL_PATH, MODEL_VERSION) behind HAProxy on 127.0.0.1:FLEET_PORT
	$(LOCAL_FLEET) up --instances $(N) --port $(FLEET_PORT) --model-path $(MODEL_PATH) \
		$(if $(MODEL_VERSION),--model-version $(MODEL_VERSION)) $(if $(CHECK_INTERVAL),--check-interval $(CHECK_INTERVAL))

fleet-status: ## Show HAProxy and each instance: address, model version, health, requests in flight
	@$(LOCAL_FLEET) status

roll-local: ## Roll the local fleet to MODEL_PATH / MODEL_VERSION, one instance at a time; rolls back on failure
	$(if $(filter command line environment,$(origin MODEL_VERSION)),,$(error MODEL_VERSION is not set: make roll-local MODEL_VERSION=2 [MODEL_PATH=...]))
	$(LOCAL_FLEET) roll --model-path $(MODEL_PATH) --model-version $(MODEL_VERSION) \
		$(if $(WARMUP),--warmup $(WARMUP)) $(if $(DRAIN_TIMEOUT),--drain-timeout $(DRAIN_TIMEOUT))

fleet-down: ## Stop HAProxy, then every instance, gracefully
	@[ -x $(BIN)/python ] && $(LOCAL_FLEET) down || echo "not running"

# The test suite runs real HAProxy; `make clean` must not orphan a running fleet.
test: fleet-packages
clean: fleet-down
