# The two quick-start commands: `make up` and `make test`. Everything else is a convenience.
SHELL := /bin/bash
ENV := . scripts/env.sh &&
STACK ?= local

.PHONY: setup up preview refresh destroy test sim sim-stop bench lint postgres postgres-stop fleet-preview fleet-up
setup:
	@bash scripts/setup.sh

## Sets up, starts qubes-sim (the local Qubes) and runs `pulumi up` of the local stack, gated by
## the policy pack (the CLI previews first: a violation stops it before anything changes). What a
## killed run left (a stale lock, pending operations) is settled first, so `make up` is also the
## recovery after an interrupted run.
up: setup
	@$(ENV) bash scripts/sim.sh start
	@$(ENV) pulumi stack select --create $(STACK) >/dev/null && bin/qubes-build-infra settle --stack $(STACK) && \
	  pulumi up --yes --non-interactive --stack $(STACK) --policy-pack policy

preview: setup
	@$(ENV) bash scripts/sim.sh start && pulumi preview --non-interactive --diff --stack $(STACK) --policy-pack policy

refresh: setup
	@$(ENV) bash scripts/sim.sh start && pulumi refresh --yes --non-interactive --stack $(STACK)

## Removes the site but what is protected (keys VMs, logs VMs and their keys): `make up` brings it
## back as it was. Everything: `pulumi destroy --ignore-protect` (see README, "When things go wrong").
destroy: setup
	@$(ENV) bash scripts/sim.sh start && bin/qubes-build-infra settle --stack $(STACK) && \
	  pulumi destroy --yes --non-interactive --stack $(STACK) --exclude-protected

## Sets up, then lint, type-check, the Go tests of tools/tlog and every jest test.
test: setup
	@$(ENV) npm test

sim: setup
	@$(ENV) bash scripts/sim.sh start

sim-stop:
	@$(ENV) bash scripts/sim.sh stop

bench: setup
	@$(ENV) npm run bench

## The team's shared Pulumi state: a PostgreSQL server in .postgres/ (README, "Team"); it prints
## the `pulumi login` line. Without a login, the file backend in .pulumi-state/ stays the default.
postgres: setup
	@bash scripts/postgres.sh start

postgres-stop:
	@bash scripts/postgres.sh stop

## Several Qubes machines, one stack each (README, "Fleet"): STACKS=a,b or FLEET=<file> (default fleet.yaml).
FLEET_ARGS = $(if $(STACKS),--stacks $(STACKS),--file $(or $(FLEET),fleet.yaml))
fleet-preview: setup
	@$(ENV) bin/qubes-build-infra fleet preview $(FLEET_ARGS)

fleet-up: setup
	@$(ENV) bin/qubes-build-infra fleet up $(FLEET_ARGS)
