# Orderflow: the two commands a new machine needs are `make demo` and `make test`.
# Everything they need (the pinned emulators, cargo lambda, cfn-lint, SAM CLI) is installed by the
# scripts in infra/. `make help` lists the targets.

# One default for Cargo's build cache, shared with every script (infra/common.sh).
export CARGO_TARGET_DIR ?= $(shell ROOT=$(CURDIR) bash -c '. infra/common.sh && echo $$CARGO_TARGET_DIR')
# The target triple every build names (infra/common.sh says why: one compile for tests and deployment).
export CARGO_BUILD_TARGET ?= $(shell ROOT=$(CURDIR) bash -c '. infra/common.sh && echo $$CARGO_BUILD_TARGET')

.PHONY: help demo test unit deploy up down lint deny fuzz generate bench schemas redrive replay

## List the targets.
help:
	@awk '/^## /{ doc = substr($$0, 4); next } /^[a-z-]+:/ && doc { split($$0, t, ":"); printf "  make %-8s %s\n", t[1], doc } { doc = "" }' $(MAKEFILE_LIST)

## Bring the local AWS up, build and deploy the stack, place four orders and follow them to their end.
demo: deploy
	cargo run --quiet -p orderflow-e2e --bin demo

## Every test: formatting, lints, template checks, unit, adapters and end to end on the emulators.
test:
	bash tests/run.sh

## Only the tests that need no emulator (the cache and reporting adapters use the machine's Redis and PostgreSQL).
unit:
	infra/local-services.sh up
	cargo test --workspace

## Build the functions and deploy infra/template.yaml to the local emulator (ORDERFLOW_PROFILE=release for release binaries).
deploy:
	infra/deploy-local.sh

## Start the local emulator (MiniStack).
up:
	infra/local-aws.sh up

## Stop the local emulators and every Lambda process they started.
down:
	infra/local-aws.sh down
	infra/localstack.sh down

## Lint the template: cfn-lint with the serverless rules, checkov's policy checks (suppressions and their reasons are in the template), and SAM's own validation.
lint:
	infra/local-aws.sh setup
	.venv/bin/cfn-lint --append-rules cfn_lint_serverless.rules -- infra/template.yaml
	ROOT=$(CURDIR) bash -c '. infra/common.sh && venv_install .venv-checkov infra/requirements-checkov.txt'
	.venv-checkov/bin/checkov --quiet --compact --framework cloudformation -f infra/template.yaml
	infra/sam.sh validate --lint

## Licenses, banned crates and sources of every dependency (cargo deny, offline once cargo has fetched the crates; deny.toml says what is allowed and why).
deny:
	cargo fetch --locked --quiet
	deny=$$(ROOT=$(CURDIR) bash -c '. infra/common.sh && cargo_tool cargo-deny') && "$$deny" --offline check --hide-inclusion-graph licenses bans sources

## Fuzz the API's request body and the harness's SQS record path, 5 minutes a target (FUZZ_SECONDS to change; nightly).
fuzz:
	shared/fuzz/run.sh

## Write the consumers' blocks of infra/template.yaml and the README's flow diagram from the consumer table.
generate:
	cargo run --quiet -p orderflow-consumers --bin generate

## Move a consumer's dead letters back to its queue: make redrive CONSUMER=reporting
redrive:
	eval "$$(infra/local-aws.sh env)" && cargo run --quiet -p orderflow-ops -- redrive $(CONSUMER)

## Rebuild a read model from the bus archive: make replay CONSUMER=reporting FROM=2026-11-29T00:00:00Z
replay:
	eval "$$(infra/local-aws.sh env)" && cargo run --quiet -p orderflow-ops -- replay $(CONSUMER) --from $(FROM)

## The README's performance figures in one run: the harness beside its floors, then release binaries on the emulator: latency of one order and of 200 at once, AWS requests per order, cost per million orders, a PNG chart (docs/bench/).
bench:
	tests/bench/run.sh

## Regenerate events-samples/schemas/ and the README's status diagram from the Rust types.
schemas:
	UPDATE_SCHEMAS=1 cargo test -p orderflow-contracts --test contracts
