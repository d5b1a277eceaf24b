# lw4o6: every target runs unprivileged unless noted.
GO      ?= go
PKGS    ?= ./...
FUZZTIME ?= 30s
SOAK_TIME ?= 3m
SOAK_B4S ?= 200
SOAK_TIMEOUT ?= 30m
SOAK_FLAGS ?=

.PHONY: all build test race lab bench fuzz soak lint ci

all: lint test

build:
	$(GO) build $(PKGS)
	$(GO) build -o bin/ ./cmd/...

# The README's test command: vet, then every test with the race detector.
test:
	$(GO) vet $(PKGS)
	$(GO) test -race -count=1 $(PKGS)

lab:
	$(GO) run ./cmd/lw4o6-lab

bench:
	$(GO) test -run=NONE -bench=. -benchmem $(PKGS)

# Each fuzz target for FUZZTIME; the seed corpora under testdata/ run in `make test`.
fuzz:
	$(GO) test -run=NONE -fuzz=FuzzParse -fuzztime=$(FUZZTIME) ./stack/pcp/
	$(GO) test -run=NONE -fuzz=FuzzServerHandle -fuzztime=$(FUZZTIME) ./stack/pcp/
	$(GO) test -run=NONE -fuzz=FuzzOutboundInbound -fuzztime=$(FUZZTIME) ./b4/nat/
	$(GO) test -run=NONE -fuzz=FuzzHandle -fuzztime=$(FUZZTIME) ./b4/lanpcp/
	$(GO) test -run=NONE -fuzz=FuzzNATPMP -fuzztime=$(FUZZTIME) ./b4/lanpcp/
	$(GO) test -run=NONE -fuzz=FuzzParsePackets -fuzztime=$(FUZZTIME) ./stack/packet/
	$(GO) test -run=NONE -fuzz=FuzzFromAccess -fuzztime=$(FUZZTIME) ./aftr/
	$(GO) test -run=NONE -fuzz=FuzzServeConn -fuzztime=$(FUZZTIME) ./stack/socks5/
	$(GO) test -run=NONE -fuzz=FuzzReassemble -fuzztime=$(FUZZTIME) ./stack/frag/
	$(GO) test -run=NONE -fuzz=FuzzParse -fuzztime=$(FUZZTIME) ./aftr/snabbconf/
	$(GO) test -run=NONE -fuzz=FuzzReplay -fuzztime=$(FUZZTIME) ./aftr/journal/
	$(GO) test -run=NONE -fuzz=FuzzIsPCPRequest -fuzztime=$(FUZZTIME) ./internal/lab/
	$(GO) test -run=NONE -fuzz=FuzzParseReply -fuzztime=$(FUZZTIME) ./b4/dhcp6/
	$(GO) test -run=NONE -fuzz=FuzzFailoverFromAccess -fuzztime=$(FUZZTIME) ./b4/
	$(GO) test -run=NONE -fuzz=FuzzNonceFile -fuzztime=$(FUZZTIME) ./cmd/lw4o6-b4/
	$(GO) test -run=NONE -fuzz=FuzzClientInput -fuzztime=$(FUZZTIME) ./stack/pcp/
	$(GO) test -run=NONE -fuzz=FuzzReader -fuzztime=$(FUZZTIME) ./stack/pcap/
	$(GO) test -run=NONE -fuzz=FuzzServerBinding -fuzztime=$(FUZZTIME) ./tun/udpunder/
	$(GO) test -run=NONE -fuzz=FuzzUnderlayPredicates -fuzztime=$(FUZZTIME) ./aftr/
	$(GO) test -run=NONE -fuzz=FuzzApplySnabb -fuzztime=$(FUZZTIME) ./aftr/
	$(GO) test -run=NONE -fuzz='^FuzzCompileFilter$$' -fuzztime=$(FUZZTIME) ./aftr/
	$(GO) test -run=NONE -fuzz='^FuzzCheckPacket$$' -fuzztime=$(FUZZTIME) ./tun/rawip6/
	$(GO) test -run=NONE -fuzz='^FuzzParseCmsgs$$' -fuzztime=$(FUZZTIME) ./tun/rawip6/
	$(GO) test -run=NONE -fuzz='^FuzzReviewDataPath$$' -fuzztime=$(FUZZTIME) ./b4/

# The soak test (internal/lab/soak_test.go, build tag soak, not in `make
# test`): SOAK_B4S B4s through SOAK_TIME of churn, renumbering and AFTR
# restarts, then goroutines, heap and gVisor refs back to the baseline.
# SOAK_FLAGS=-race runs it with the race detector.
soak:
	$(GO) vet -tags soak ./internal/lab/
	$(GO) test $(SOAK_FLAGS) -tags soak -run '^TestSoak' -count=1 -v -timeout $(SOAK_TIMEOUT) ./internal/lab/ -args -soak.time=$(SOAK_TIME) -soak.b4s=$(SOAK_B4S)

lint:
	@out=$$(gofmt -l $$(git ls-files '*.go')); if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi
	$(GO) vet $(PKGS)

ci:
	.ci/run
