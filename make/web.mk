# The browser client (web/): npm packages, the Vite build that `make up` serves at the
# gateway's address, and its browser tests in Debian's Chromium (never a downloaded browser).
#
# npm's cache (~/.npm) survives between CI runs, so `npm ci` is quick after the first.

WEB := web
WEB_STAMP := $(WEB)/node_modules/.stamp-lock
WEB_DIST := $(WEB)/dist/index.html
WEB_SOURCES := $(shell find $(WEB)/src -type f 2>/dev/null) $(WEB)/index.html $(WEB)/vite.config.ts $(WEB)/tsconfig.json
SDK_TS_SOURCES := $(shell find gen/ts/chatmesh gen/ts/buf -name '*.ts' 2>/dev/null)
CHROMIUM := /usr/bin/chromium
# CI runs as root; elsewhere apt-get needs sudo.
APT_SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

$(WEB_STAMP): $(WEB)/package.json $(WEB)/package-lock.json
	cd $(WEB) && npm ci --no-audit --no-fund --loglevel=error
	touch $@

# tsc --noEmit (type checks, generated code included), then vite build.
$(WEB_DIST): $(WEB_STAMP) $(WEB_SOURCES) $(SDK_TS_SOURCES)
	cd $(WEB) && npm run --silent build
	touch $@

.PHONY: web
web: $(WEB_DIST) ## Build the browser client (type check + Vite) into web/dist
	@:

.PHONY: setup-web
setup-web: ## Install Debian's Chromium for the browser tests if missing
	@test -x $(CHROMIUM) || { $(APT_SUDO) apt-get update && $(APT_SUDO) apt-get install -y chromium; }

.PHONY: test-web
test-web: setup web setup-web ## Browser tests in headless Chromium against a real mesh on free ports
	$(PY) -m pytest tests/web

SDK_TS_STAMP := gen/ts/node_modules/.stamp-lock
SDK_TS_DIST := gen/ts/dist/.stamp

$(SDK_TS_STAMP): gen/ts/package.json gen/ts/package-lock.json
	cd gen/ts && npm ci --no-audit --no-fund --loglevel=error
	touch $@

$(SDK_TS_DIST): $(SDK_TS_STAMP) $(SDK_TS_SOURCES) gen/ts/tsconfig.json
	rm -rf gen/ts/dist
	cd gen/ts && npm run --silent build
	touch $@

.PHONY: sdk-ts
sdk-ts: $(SDK_TS_DIST) ## Build gen/ts as the @chatmesh/sdk package (dist/: JS + .d.ts)
	@:

TEST_PREREQS += web sdk-ts setup-web
UP_PREREQS += web
