# Orderflow: the two commands a new machine needs are `make demo` and `make test`.
# Everything they need (the pinned emulator, cargo lambda, cfn-lint) is installed by infra/local-aws.sh.

# Cargo's build cache lives outside the checkout so fresh clones (and CI) build incrementally.
export CARGO_TARGET_DIR ?= $(HOME)/.cache/orderflow/target

.PHONY: demo test unit deploy up down lint bench schemas

## Bring the local AWS up, build and deploy the stack, place three orders and follow them to their end.
demo: deploy
	cargo run --quiet -p orderflow-e2e --bin demo

## Every test: formatting, template lint, unit tests, adapter tests and end-to-end tests on the emulator.
test:
	bash tests/run.sh

## Only the tests that need no emulator.
unit:
	cargo test --workspace

deploy:
	infra/deploy-local.sh

up:
	infra/local-aws.sh up

down:
	infra/local-aws.sh down

lint:
	infra/local-aws.sh setup
	.venv/bin/cfn-lint infra/template.yaml

## Harness records/s beside its serde floor and Powertools (Python), in one run.
bench:
	shared/harness/benches/run.sh

## Regenerate events-samples/schemas/ from the Rust types.
schemas:
	UPDATE_SCHEMAS=1 cargo test -p orderflow-contracts --test contracts committed_json_schemas_match_the_types
