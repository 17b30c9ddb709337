# The container image and the Kubernetes manifests (Dockerfile, deploy/k8s/): rendered,
# validated against the bundled API schemas and checked for their hardening, all offline.
#
#   make kube-validate        kustomize build every overlay; kubernetes-validate --strict every object
#   make test-deploy         the above, hadolint, and tests/deploy (probes, limits, securityContext,
#                            PDBs, NetworkPolicies, RBAC, the gateway bootstrap against the contracts)
#   make kube-gateway-config  re-render deploy/k8s/base/gateway/envoy.yaml after a gateway/ change
#   make kube-render          write build/k8s/<overlay>.yaml (what `kubectl apply -f` takes)
#
# No Docker engine runs here: the image is linted (hadolint) and checked by tests, not built.

KUSTOMIZE_VERSION := v5.8.2
KUSTOMIZE := bin/kustomize
HADOLINT := $(VENV)/bin/hadolint
K8S_OVERLAYS := dev prod
# The oldest Kubernetes the manifests promise to run on, and the newest schemas bundled.
K8S_VERSIONS := 1.31.0 1.37.0
K8S_BUILD := build/k8s

$(KUSTOMIZE):
	GOBIN=$(CURDIR)/bin go install sigs.k8s.io/kustomize/kustomize/v5@$(KUSTOMIZE_VERSION)

.PHONY: kube-render
kube-render: $(KUSTOMIZE) ## Render every kustomize overlay into build/k8s/<overlay>.yaml
	@mkdir -p $(K8S_BUILD)
	@for overlay in $(K8S_OVERLAYS); do \
	  $(KUSTOMIZE) build deploy/k8s/overlays/$$overlay > $(K8S_BUILD)/$$overlay.yaml || exit 1; \
	  echo "$(K8S_BUILD)/$$overlay.yaml: $$(grep -c '^kind:' $(K8S_BUILD)/$$overlay.yaml) objects"; \
	done

.PHONY: kube-validate
kube-validate: $(STAMP_PY) kube-render ## Validate every rendered object against the Kubernetes schemas (strict)
	@for overlay in $(K8S_OVERLAYS); do for version in $(K8S_VERSIONS); do \
	  $(VENV)/bin/kubernetes-validate --strict --quiet -k $$version $(K8S_BUILD)/$$overlay.yaml || exit 1; \
	  echo "$$overlay: valid against Kubernetes $$version (strict)"; \
	done; done

.PHONY: kube-gateway-config
kube-gateway-config: $(STAMP_PY) ## Re-render the Kubernetes gateway's Envoy bootstrap from gateway/ and the contracts
	$(PY) -m deploy.k8s.render_gateway

.PHONY: lint-docker
lint-docker: $(STAMP_PY) ## hadolint the Dockerfile
	$(HADOLINT) --failure-threshold info Dockerfile

.PHONY: test-deploy
test-deploy: setup kube-validate lint-docker ## The image's and the manifests' checks (tests/deploy)
	$(PY) -m pytest tests/deploy -q

# tests/deploy renders the overlays with bin/kustomize, validates them (kubernetes-validate) and
# runs hadolint itself: `make test` needs only the binary.
TEST_PREREQS += $(KUSTOMIZE)
