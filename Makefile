# fooking: event-driven socket gateway. `make` builds ./fooking.
PKGS     := libevent libevent_openssl libevent_pthreads lua5.3 hiredis libnats openssl jansson
CC       ?= cc
PREFIX   ?= /usr/local
DESTDIR  ?=
BUILD    ?= build
PYTHON   ?= /usr/bin/python3
OPT      ?= -O2 -g
CFLAGS   := $(OPT) -std=c11 -D_GNU_SOURCE -Wall -Wextra -Werror -Wshadow -Wno-unused-parameter \
            $(shell pkg-config --cflags $(PKGS) 2>/dev/null)
LDLIBS   += $(shell pkg-config --libs $(PKGS) 2>/dev/null) -lm

SRCS     := $(wildcard src/*.c)
LIBSRCS  := $(filter-out src/main.c,$(SRCS))
OBJS     := $(patsubst src/%.c,$(BUILD)/%.o,$(LIBSRCS))
UNIT_SRCS := $(wildcard tests/unit/test_*.c)
UNIT_BINS := $(patsubst tests/unit/%.c,$(BUILD)/tests/%,$(UNIT_SRCS))

.PHONY: all clean install deps test test-unit test-integration test-asan fuzz fuzz-build

# Pure codecs: the fuzz targets link these and nothing else.
CODECS   := src/fcgi.c src/rmsg.c src/ws.c src/static.c src/frame.c src/natsq.c src/hmap.c
FUZZ_TARGETS := $(patsubst tests/fuzz/%.c,%,$(wildcard tests/fuzz/fuzz_*.c))
FUZZ_SECONDS ?= 15
CLANG    ?= clang

all: fooking

deps:
	@scripts/deps.sh build

$(BUILD)/%.o: src/%.c $(wildcard src/*.h) | $(BUILD)
	@echo "  CC    $<"
	@$(CC) $(CFLAGS) -c -o $@ $<

$(BUILD):
	mkdir -p $(BUILD)/tests

$(BUILD)/libfooking.a: $(OBJS)
	@rm -f $@
	@ar rcs $@ $^

fooking: $(BUILD)/main.o $(BUILD)/libfooking.a
	@echo "  LD    $@"
	@$(CC) $(CFLAGS) -o $@ $^ $(LDLIBS)

$(BUILD)/tests/%: tests/unit/%.c $(BUILD)/libfooking.a
	@echo "  CC    $<"
	@$(CC) $(CFLAGS) -Isrc $(shell pkg-config --cflags cmocka) -o $@ $< $(BUILD)/libfooking.a \
	    $(LDLIBS) $(shell pkg-config --libs cmocka)

# What the router's tables cost per session, uid and membership (bench/rtable_mem.c).
$(BUILD)/rtable_mem: bench/rtable_mem.c $(BUILD)/libfooking.a
	@$(CC) $(CFLAGS) -Isrc -o $@ $< $(BUILD)/libfooking.a $(LDLIBS)

# What a gateway worker keeps per bound uid and membership (bench/gw_mem.c).
$(BUILD)/gw_mem: bench/gw_mem.c $(BUILD)/libfooking.a
	@$(CC) $(CFLAGS) -Isrc -o $@ $< $(BUILD)/libfooking.a $(LDLIBS)

test-unit: $(UNIT_BINS)
	@set -e; for t in $(UNIT_BINS); do echo "== $$t"; $$t; done

test-integration: fooking
	cd tests/integration && FOOKING_STRICT=1 $(PYTHON) -m pytest -q -p no:cacheprovider $(PYTEST_ARGS)

test:
	@scripts/deps.sh test
	$(MAKE) all
	$(MAKE) test-unit
	$(MAKE) fuzz FUZZ_SECONDS=$(FUZZ_SECONDS)
	$(MAKE) test-integration

# The unit and integration suites against an AddressSanitizer + UBSan build
# (leak detection on); the instrumented binary lives in build-asan/.
ASAN_FLAGS := -O1 -g -fno-omit-frame-pointer -fsanitize=address,undefined -fno-sanitize-recover=undefined
test-asan:
	@scripts/deps.sh test
	$(MAKE) BUILD=build-asan OPT="$(ASAN_FLAGS)" build-asan/fooking-asan test-unit
	cd tests/integration && FOOKING=$(CURDIR)/build-asan/fooking-asan \
	    ASAN_OPTIONS=detect_leaks=1:abort_on_error=0:exitcode=23:log_path=$(CURDIR)/build-asan/asan \
	    UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1:log_path=$(CURDIR)/build-asan/ubsan \
	    FOOKING_STRICT=1 $(PYTHON) -m pytest -q -p no:cacheprovider $(PYTEST_ARGS)
	@if ls build-asan/asan.* build-asan/ubsan.* >/dev/null 2>&1; then \
	    echo "sanitizer reports:"; cat build-asan/asan.* build-asan/ubsan.* 2>/dev/null; exit 1; fi

build-asan/fooking-asan: build-asan/main.o build-asan/libfooking.a
	@echo "  LD    $@"
	@$(CC) $(CFLAGS) -o $@ $^ $(LDLIBS)

# libFuzzer targets (clang), one per codec, each run FUZZ_SECONDS on a copy of
# its seed corpus in tests/fuzz/corpus/<target>.
fuzz-build: $(patsubst %,$(BUILD)/fuzz/%,$(FUZZ_TARGETS))

$(BUILD)/fuzz/%: tests/fuzz/%.c $(CODECS) $(wildcard src/*.h)
	@mkdir -p $(BUILD)/fuzz
	@echo "  FUZZ  $@"
	@$(CLANG) -g -O1 -fsanitize=fuzzer,address,undefined -Isrc -o $@ $< $(CODECS) \
	    $(shell pkg-config --libs --cflags openssl libevent)

fuzz: fuzz-build
	@set -e; for t in $(FUZZ_TARGETS); do \
	    rm -rf $(BUILD)/fuzz/work-$$t; mkdir -p $(BUILD)/fuzz/work-$$t; \
	    cp tests/fuzz/corpus/$$t/* $(BUILD)/fuzz/work-$$t/ 2>/dev/null || true; \
	    echo "== $$t ($(FUZZ_SECONDS) s)"; \
	    $(BUILD)/fuzz/$$t -max_total_time=$(FUZZ_SECONDS) -print_final_stats=1 \
	        -artifact_prefix=$(BUILD)/fuzz/$$t- $(BUILD)/fuzz/work-$$t 2>$(BUILD)/fuzz/$$t.log \
	        || { tail -50 $(BUILD)/fuzz/$$t.log; exit 1; }; \
	    grep -E "stat::number_of_executed_units" $(BUILD)/fuzz/$$t.log; \
	done

demo:
	@scripts/demo.sh

# Soak: SOAK_SECONDS (default 300) of mixed load on a router, a 2-worker gateway and
# php-fpm; every process's RSS into build/soak/rss.tsv and build/soak/rss.png; fails
# when a process's RSS grows past the tolerance it prints.
.PHONY: soak
soak: fooking
	SOAK_SECONDS=$(or $(SOAK_SECONDS),300) $(PYTHON) tests/soak/soak.py

# Install layout. PREFIX=/usr (a package) puts the configs and the logrotate file
# under /etc; any other prefix under $(PREFIX)/etc. Configs in SYSCONFDIR/fooking
# are installed only when absent (never overwritten); the same files are always
# installed as examples in DOCDIR/examples.
BINDIR      ?= $(PREFIX)/bin
SYSCONFDIR  ?= $(if $(filter /usr,$(PREFIX)),/etc,$(PREFIX)/etc)
MANDIR      ?= $(PREFIX)/share/man
DOCDIR      ?= $(PREFIX)/share/doc/fooking
UNITDIR     ?= $(if $(filter /usr,$(PREFIX)),/lib/systemd/system,$(PREFIX)/lib/systemd/system)
LOGROTATEDIR ?= $(SYSCONFDIR)/logrotate.d
LOGDIR      ?= /var/log/fooking
UNITS       := fooking.service fooking@.service fooking-router.service
MANPAGES    := fooking.1 fooking.lua.5
SUBST        = sed -e 's|@BINDIR@|$(BINDIR)|g' -e 's|@SYSCONFDIR@|$(SYSCONFDIR)|g' \
                   -e 's|@LOGDIR@|$(LOGDIR)|g'

.PHONY: deb
install: fooking
	install -d $(DESTDIR)$(BINDIR) $(DESTDIR)$(SYSCONFDIR)/fooking $(DESTDIR)$(DOCDIR)/examples \
	    $(DESTDIR)$(MANDIR)/man1 $(DESTDIR)$(MANDIR)/man5 $(DESTDIR)$(UNITDIR) \
	    $(DESTDIR)$(LOGROTATEDIR)
	install -m 755 fooking $(DESTDIR)$(BINDIR)/fooking
	install -m 644 README.md $(DESTDIR)$(DOCDIR)/
	install -m 644 config.lua router.lua $(DESTDIR)$(DOCDIR)/examples/
	for f in config.lua router.lua; do \
	    [ -e $(DESTDIR)$(SYSCONFDIR)/fooking/$$f ] || install -m 644 $$f $(DESTDIR)$(SYSCONFDIR)/fooking/$$f; \
	done
	for m in $(MANPAGES); do \
	    s=$${m##*.}; gzip -9n < packaging/man/$$m > $(DESTDIR)$(MANDIR)/man$$s/$$m.gz; \
	    chmod 644 $(DESTDIR)$(MANDIR)/man$$s/$$m.gz; done
	for u in $(UNITS); do \
	    $(SUBST) packaging/systemd/$$u > $(DESTDIR)$(UNITDIR)/$$u; chmod 644 $(DESTDIR)$(UNITDIR)/$$u; done
	$(SUBST) packaging/logrotate/fooking > $(DESTDIR)$(LOGROTATEDIR)/fooking
	chmod 644 $(DESTDIR)$(LOGROTATEDIR)/fooking

# A Debian package of this build: build/fooking_<version>_<arch>.deb, with
# Depends computed by dpkg-shlibdeps from the libraries the binary links.
DEBDIR  ?= $(BUILD)/deb
deb: fooking
	@command -v dpkg-shlibdeps >/dev/null || { echo "make deb needs dpkg-dev"; exit 1; }
	rm -rf $(DEBDIR)/debian
	$(MAKE) --no-print-directory install DESTDIR=$(abspath $(DEBDIR))/debian/fooking PREFIX=/usr
	install -d $(DEBDIR)/debian/fooking/DEBIAN
	printf 'Source: fooking\n\nPackage: fooking\nArchitecture: any\n' > $(DEBDIR)/debian/control
	set -e; cd $(DEBDIR); \
	    version=$$(debian/fooking/usr/bin/fooking -v | awk '{print $$2}'); \
	    arch=$$(dpkg --print-architecture); \
	    depends=$$(dpkg-shlibdeps -O -e debian/fooking/usr/bin/fooking | sed -n 's/^shlibs:Depends=//p'); \
	    size=$$(du -sk --exclude=DEBIAN debian/fooking | cut -f1); \
	    sed -e "s|@VERSION@|$$version|" -e "s|@ARCH@|$$arch|" -e "s|@DEPENDS@|$$depends|" \
	        -e "s|@SIZE@|$$size|" $(CURDIR)/packaging/debian/control > debian/fooking/DEBIAN/control; \
	    (cd debian/fooking && find etc -type f | sed 's|^|/|' | sort) > debian/fooking/DEBIAN/conffiles; \
	    install -m 755 $(CURDIR)/packaging/debian/postinst $(CURDIR)/packaging/debian/postrm debian/fooking/DEBIAN/; \
	    rm -f fooking_*.deb; \
	    dpkg-deb --root-owner-group -Zxz --build debian/fooking fooking_$${version}_$${arch}.deb
	@ls $(DEBDIR)/fooking_*.deb

clean:
	rm -rf $(BUILD) build-asan fooking

bench:: ; QUICK=$(QUICK) bench/run.sh

# Planted bugs (tests/mutants/run.py): each mutant must make its named tests
# fail. Slow (minutes), so not part of `make test`. MUTANTS_ARGS="-k wrr".
.PHONY: mutants
mutants:
	$(PYTHON) tests/mutants/run.py $(MUTANTS_ARGS)
