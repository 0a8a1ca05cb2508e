# Everyday commands. `make run` and `make test` do their own set-up on a fresh machine.
.PHONY: build build-deploy-profile deploy template-check bench bench-quick chaos soak monitoring-check openapi fuzz-api run dev test test-unit test-integration test-lambda-loop test-coverage migrate-up lint fmt token services

run: ## Run API + consumers locally against PostgreSQL and RabbitMQ (migrations included)
	scripts/run-local.sh

dev: ## The local Lambda loop: functions under cargo lambda watch on :9000, LocalStack, local triggers
	scripts/dev.sh

test: ## Every test, against the real PostgreSQL and RabbitMQ
	scripts/test.sh

test-unit: ## Unit tests only (no services needed)
	cargo test --workspace --lib --bins

test-integration: ## Integration tests only
	scripts/test.sh --test it

test-lambda-loop: ## The functions under cargo lambda watch: fixture events and the end-to-end loop
	scripts/test.sh -p system-tests --test lambda_loop

test-coverage: ## Line coverage (cargo-tarpaulin, installed if missing); leaves out the system tests, which spawn and trace whole binaries
	command -v cargo-tarpaulin >/dev/null || cargo install --locked cargo-tarpaulin
	scripts/services.sh
	TEST_DATABASE_URL=$${TEST_DATABASE_URL:-postgres://postgres@127.0.0.1:5432/msgsvc_test} \
	  cargo tarpaulin --workspace --exclude system-tests --skip-clean --timeout 300 --target-dir target/coverage --out Stdout \
	    -- --skip a_short_drain

migrate-up: ## Create the database if needed and apply migrations
	scripts/services.sh
	cargo run -q -p api -- migrate

lint: ## rustfmt, clippy (warnings as errors), sam validate with and without --lint, checkov, docker-compose.yml
	cargo fmt --all -- --check
	cargo clippy --workspace --all-targets -- -D warnings
	scripts/template-check.sh

template-check: ## Offline checks of template.yaml (SAM transform, cfn-lint, checkov) and docker-compose.yml
	scripts/template-check.sh

fmt:
	cargo fmt --all

token: ## Print an admin JWT for local use (TENANT=<id> for a tenant token)
	@if [ -n "$(TENANT)" ]; then cargo run -q -p api -- token --tenant $(TENANT); \
	else cargo run -q -p api -- token --admin; fi

openapi: ## Regenerate docs/openapi.json from the code (a unit test fails while it is stale)
	UPDATE_OPENAPI=1 cargo test -q -p api --lib openapi::tests::committed_document_is_current

fuzz-api: ## schemathesis against the real API, PostgreSQL and RabbitMQ (FUZZ_MAX_TIME=60 seconds per token)
	scripts/schemathesis.sh

monitoring-check: ## Prometheus (Debian's) against the running system: targets up, rules load, dashboard queries return data
	scripts/monitoring-check.sh

build: ## Lambda packages for AWS (arm64, provided.al2023) in target/lambda/<function>/bootstrap
	scripts/cargo-lambda.sh build --release --arm64 -p api -p consumer -p provisioner

build-deploy-profile: ## Host binaries in the size-optimised deploy profile; make bench reports their sizes
	cargo build --profile deploy --bins

deploy: ## sam build + sam deploy (guided on the first run; it writes samconfig.toml)
	scripts/sam.sh build --template template.yaml
	if [ -f samconfig.toml ]; then scripts/sam.sh deploy; else scripts/sam.sh deploy --guided; fi

chaos: ## Faults under load against the real services, alone and overlapping; checks every guarantee, rewrites docs/RELIABILITY.md (CHAOS_SEED, CHAOS_OVERLAPS)
	scripts/services.sh
	cargo test -p system-tests --test chaos -- --ignored --nocapture --exact chaos

soak: ## The chaos load without faults for SOAK_DURATION seconds (1200); memory must stay flat; docs/RELIABILITY.md and docs/soak.svg
	scripts/services.sh
	cargo test -p system-tests --test chaos -- --ignored --nocapture --exact soak

bench: ## Benchmarks against the raw baseline, then the large-table scenario (release builds, about 20 minutes; BENCH_ONLY=large alone); writes docs/BENCHMARKS.md
	scripts/services.sh
	cargo build --release --bins
	target/release/bench

bench-quick: ## A short smoke run of the benchmarks
	scripts/services.sh
	cargo build --release --bins
	target/release/bench --quick

services: ## Start PostgreSQL and RabbitMQ if they are not running
	scripts/services.sh
