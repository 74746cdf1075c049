# fooking: event-driven socket gateway. `make` builds ./fooking.
PKGS     := libevent libevent_openssl lua5.3 hiredis openssl
CC       ?= cc
PREFIX   ?= /usr/local
DESTDIR  ?=
BUILD    ?= build
PYTHON   ?= /usr/bin/python3
CFLAGS   ?= -O2 -g
CFLAGS   += -std=c11 -D_GNU_SOURCE -Wall -Wextra -Werror -Wshadow -Wno-unused-parameter \
            $(shell pkg-config --cflags $(PKGS) 2>/dev/null)
LDLIBS   += $(shell pkg-config --libs $(PKGS) 2>/dev/null) -lm

SRCS     := $(wildcard src/*.c)
LIBSRCS  := $(filter-out src/main.c,$(SRCS))
OBJS     := $(patsubst src/%.c,$(BUILD)/%.o,$(LIBSRCS))
UNIT_SRCS := $(wildcard tests/unit/test_*.c)
UNIT_BINS := $(patsubst tests/unit/%.c,$(BUILD)/tests/%,$(UNIT_SRCS))

.PHONY: all clean install deps test test-unit test-integration demo fuzz

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

test-unit: $(UNIT_BINS)
	@set -e; for t in $(UNIT_BINS); do echo "== $$t"; $$t; done

test-integration: fooking
	cd tests/integration && $(PYTHON) -m pytest -q -x -p no:cacheprovider $(PYTEST_ARGS)

test:
	@scripts/deps.sh test
	$(MAKE) all
	$(MAKE) test-unit
	$(MAKE) test-integration

install: fooking
	install -d $(DESTDIR)$(PREFIX)/bin $(DESTDIR)$(PREFIX)/etc/fooking
	install -m 755 fooking $(DESTDIR)$(PREFIX)/bin/fooking
	install -m 644 config.lua router.lua $(DESTDIR)$(PREFIX)/etc/fooking/

clean:
	rm -rf $(BUILD) fooking
