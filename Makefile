# kbootstrap: build, test, and the test lab (test/lab; design.md "The lab").

GO      ?= go
PKG     := github.com/kbootstrap/kbootstrap
VERSION ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
COMMIT  ?= $(shell git rev-parse --short --verify -q HEAD 2>/dev/null || echo unknown)
LDFLAGS := -X $(PKG)/cmd/kbootstrap/app.version=$(VERSION) -X $(PKG)/cmd/kbootstrap/app.commit=$(COMMIT)

# The lab: `make lab` brings up Kubernetes nodes (systemd, containerd, ...: design.md "A Kubernetes
# node") cp1..cp3, worker1..worker2 and lb1 (LAB_CP, LAB_WORKERS, LAB_LB change the counts;
# LAB_KUBERNETES=0 makes the minimal tini+sshd nodes instead) and writes .lab/kbootstrap.yaml
# (controlPlaneEndpoint on lb1), .lab/id_ed25519 and .lab/known_hosts. Needs root. Each step prints
# its time.
LAB_DIR ?= $(CURDIR)/.lab
LAB_ID  ?= lab
LAB     := $(CURDIR)/bin/lab
LABFLAGS = --dir $(LAB_DIR) --id $(LAB_ID)
LAB_CP         ?= 3
LAB_WORKERS    ?= 2
LAB_LB         ?= 1
LAB_KUBERNETES ?= 1

.PHONY: demo prereqs prereqs-demo lab-host-limits build test test-upgrade test-unit test-vuln test-fuzz test-lab lab-bin lab lab-down lab-status lab-stop lab-start lab-partition lab-heal lab-exec lab-ssh lab-test lab-images lab-artifacts lab-artifacts-previous lab-routes

# The main job on the lab: bare nodes → prepare-node → init → certs check → etcd members.
demo: prereqs-demo lab-host-limits
	test/demo.sh

# The machine's prerequisites (Debian packages), checked in a second and installed when missing
# (root), before any long build: test/prereqs.sh, which .ci/run calls too.
prereqs:
	test/prereqs.sh test
prereqs-demo:
	test/prereqs.sh demo

# Kubernetes lab nodes share the host's inotify limits (kubelets, containerd): raise them to what
# kind documents when they are lower (never lowers them). lab.Up refuses Kubernetes nodes below.
lab-host-limits:
	@for kv in fs.inotify.max_user_instances=1024 fs.inotify.max_user_watches=524288; do \
	  k=$${kv%=*}; v=$${kv#*=}; cur=$$(sysctl -n $$k); \
	  if [ "$$cur" -lt "$$v" ]; then echo "lab-host-limits: $$k $$cur -> $$v"; sysctl -qw $$k=$$v; fi; \
	done

# Releases are built with a Go whose standard library carries no advisory reachable from
# kbootstrap (the machine's go1.26.8 has some: README "Security"); the go command fetches it
# from the module proxy once (about 20 s). RELEASE_GO= builds with the machine's Go.
RELEASE_GO ?= go1.27.3
build:
	GOTOOLCHAIN=$(or $(RELEASE_GO),local) $(GO) build -ldflags "$(LDFLAGS)" -o bin/kbootstrap ./cmd/kbootstrap

# govulncheck against a local database built from the golang.org/x/vulndb module (no online
# database is reachable): fails on a vulnerability reachable from kbootstrap's code in a
# dependency; lists those of the standard library (fixed by RELEASE_GO).
VULNDB_VERSION ?= v0.0.0-20261105234957-e22db6528018
GOVULNCHECK    ?= golang.org/x/vuln/cmd/govulncheck@v1.9.0
test-vuln:
	@src=$$($(GO) mod download -json golang.org/x/vulndb@$(VULNDB_VERSION) | sed -n 's/.*"Dir": "\(.*\)",/\1/p'); \
	test -n "$$src" || { echo "test-vuln: golang.org/x/vulndb@$(VULNDB_VERSION) could not be downloaded" >&2; exit 2; }; \
	cd test && $(GO) run ./vulndb build -src "$$src/data/osv" -out $(CURDIR)/.lab/vulndb
	$(GO) run $(GOVULNCHECK) -db file://$(CURDIR)/.lab/vulndb -format json ./... > .lab/govulncheck.json
	cd test && $(GO) run ./vulndb check < $(CURDIR)/.lab/govulncheck.json

# The whole suite (what .ci/run calls): unit tests, short fuzz runs of the parsers that read
# what nodes send back, then the lab tests (root; they skip, saying why, without it).
FUZZTIME ?= 10s
test: prereqs test-unit test-vuln test-fuzz test-lab

test-unit:
	$(GO) vet ./...
	$(GO) test -count=1 ./...

# Every parser of what nodes, the API, files and other runs hand kbootstrap, fuzzed in turn.
FUZZ_TARGETS = pki:FuzzLoadCertificate pki:FuzzLoadKubeconfig pki:FuzzParseBatch pki:FuzzParseManifest \
	etcd:FuzzParseArgs etcd:FuzzManifestCommand \
	inventory:FuzzParse inventory:FuzzVagrant \
	ansible-free-playbooks:FuzzParse ansible-free-playbooks:FuzzParseFacts ansible-free-playbooks:FuzzParseHashListing \
	bootstrap:FuzzParseFacts bootstrap:FuzzParseNodes bootstrap:FuzzRuntimeFailure \
	node:FuzzParseStatLine node:FuzzRedact renew:FuzzHeartbeat nodetimer:FuzzPreviousJitter
# With RELEASE_GO (go1.27.3): Go 1.26's fuzz coordinator can fail a target with a bare "context
# deadline exceeded" when -fuzztime ends while a worker is mid-call (golang/go#75804, fixed in 1.27).
test-fuzz:
	@for t in $(FUZZ_TARGETS); do p=$${t%%:*}; f=$${t#*:}; echo "fuzz ./$$p $$f ($(FUZZTIME))"; \
	  out=$$(GOTOOLCHAIN=$(or $(RELEASE_GO),local) $(GO) test ./$$p -run '^$$' -fuzz "^$$f\$$" -fuzztime $(FUZZTIME) 2>&1); rc=$$?; \
	  printf '%s\n' "$$out" | tail -n 3; [ $$rc = 0 ] || { printf '%s\n' "$$out"; exit 1; }; done

# Its whole output (-v) is kept in .lab/test-lab.log; what it prints is every test's result and
# time, and after a failure the failed tests' own messages (test/test-summary.sh).
# The upstream binaries come first (a second when cached): both minors, for TestUpgrade.
test-lab: lab-host-limits lab-artifacts lab-artifacts-previous
	mkdir -p .lab && cd test && $(GO) vet ./... && \
	  { $(GO) test -v -p 1 -count=1 -timeout 75m ./... > ../.lab/test-lab.log 2>&1; rc=$$?; \
	    ./test-summary.sh ../.lab/test-lab.log; exit $$rc; }

# The upgrade test alone (TestUpgrade, part of make test: 3+2 nodes formed at the previous minor,
# upgraded by kbootstrap upgrade).
test-upgrade: lab-host-limits lab-artifacts lab-artifacts-previous
	cd test && $(GO) test -count=1 -v -timeout 40m -run 'TestUpgrade$$' ./e2e/

lab-bin:
	cd test && $(GO) build -o $(LAB) ./lab/cmd/lab

lab: lab-bin lab-host-limits
	$(LAB) up $(LABFLAGS) --cp $(LAB_CP) --workers $(LAB_WORKERS) --lb $(LAB_LB) $(if $(filter 1,$(LAB_KUBERNETES)),--kubernetes)

# The offline artifacts an air-gapped user hands to kbootstrap, built by version into
# /var/cache/kbootstrap-lab/artifacts and installed into .lab/artifacts: the static binaries
# (test/upstream/build.sh: kubeadm, kubelet, kubectl, kube-*, etcd*; images.sh: coredns, pause) in
# bin/ and the images kubeadm pulls in images/ (images.sh). Cold: minutes; warm: seconds.
lab-artifacts:
	test/upstream/build.sh $(LAB_DIR)/artifacts
	test/upstream/images.sh $(LAB_DIR)/artifacts

# The minor before the lab's (test/upstream/kubernetes-previous, etcd-previous, coredns-previous:
# v1.33.13, the etcd and CoreDNS its kubeadm names), which upgrade tests start from: built and cached
# the same way into .lab/artifacts-previous/{bin,images,VERSION}.
lab-artifacts-previous:
	UPSTREAM_SET=previous test/upstream/build.sh $(LAB_DIR)/artifacts-previous
	UPSTREAM_SET=previous test/upstream/images.sh $(LAB_DIR)/artifacts-previous

# Only the images (and coredns, pause); needs the binaries of build.sh in .lab/artifacts/bin.
lab-images:
	test/upstream/images.sh $(LAB_DIR)/artifacts

lab-down: lab-bin
	$(LAB) down $(LABFLAGS)

lab-status: lab-bin
	$(LAB) status $(LABFLAGS)

# make lab-routes [FROM=cp1]: routes between the nodes' pod CIDRs (as the controller-manager assigned
# them) in every node, for a bridge + host-local pod network.
FROM ?= cp1
lab-routes: lab-bin
	$(LAB) routes $(LABFLAGS) --from $(FROM)

lab-stop lab-start lab-partition lab-heal: lab-bin
	@test -n "$(NODE)" || { echo "usage: make $@ NODE=name" >&2; exit 2; }
	$(LAB) $(patsubst lab-%,%,$@) $(LABFLAGS) $(NODE)

# make lab-exec NODE=cp1 CMD='hostname; id'   (runs as root inside the node, no SSH involved)
lab-exec: lab-bin
	@test -n "$(NODE)" -a -n "$$CMD" || { echo "usage: make lab-exec NODE=name CMD='command'" >&2; exit 2; }
	$(LAB) exec $(LABFLAGS) $(NODE) -- sh -c "$$CMD"

# make lab-ssh NODE=cp1 [LAB_USER=vagrant]
LAB_USER ?= root
lab-ssh: lab-bin
	@test -n "$(NODE)" || { echo "usage: make lab-ssh NODE=name [LAB_USER=vagrant]" >&2; exit 2; }
	$(LAB) ssh $(LABFLAGS) --user $(LAB_USER) $(NODE)

# The lab's own tests (root; the first run builds the rootfs, about a minute).
lab-test:
	cd test && $(GO) test -count=1 -v -run 'TestLab' ./lab/
