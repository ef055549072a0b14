# imgvault — plain GNU make.
#   make            build the library and every program
#   make check      install missing packages, build, run unit and integration tests
#   make check SANITIZE=1   the same with ASan + UBSan
#   make run        demo vault (see README)
#   make bench      benchmarks against gocryptfs on the photo corpus
#   make install PREFIX=/usr/local [DESTDIR=…]   programs, man pages, systemd units,
#                   bash completion, the default config (GATEWAY_PROG when built)
#   make deb        a Debian package (dpkg-buildpackage, packaging/debian), lintian-checked,
#                   into $(BUILD)/deb/
#   make clean

PREFIX    ?= /usr/local
BINDIR    ?= $(PREFIX)/bin
SBINDIR   ?= $(PREFIX)/sbin
MANDIR    ?= $(PREFIX)/share/man
DATADIR   ?= $(PREFIX)/share
LIBEXECDIR ?= $(PREFIX)/libexec
SYSCONFDIR ?= /etc
SYSTEMDUNITDIR ?= $(PREFIX)/lib/systemd/system
SYSTEMDUSERUNITDIR ?= $(PREFIX)/lib/systemd/user
BASHCOMPDIR ?= $(DATADIR)/bash-completion/completions
PKGS      := fuse3 libsodium sqlite3 libmagic libmicrohttpd vips
VERSION   := 0.1.0

CC        ?= cc
BUILD     ?= build
WARN      := -Wall -Wextra -Werror -Wshadow -Wstrict-prototypes -Wmissing-prototypes \
             -Wpointer-arith -Wformat=2 -Wvla
OPT       ?= -O2 -g
CFLAGS    += -std=gnu11 $(OPT) $(WARN) -D_FILE_OFFSET_BITS=64 -DIMGVAULT_VERSION='"$(VERSION)"' \
             -fstack-protector-strong -fPIC -pthread -MMD -MP -Ifs
LDFLAGS   += -pthread -Wl,-z,relro,-z,now

ifeq ($(SANITIZE),1)
BUILD     := build-san
CFLAGS    += -fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=all
LDFLAGS   += -fsanitize=address,undefined
OPT       := -O1 -g
endif

# pkg-config is asked only when a target needs it, so `make clean` works anywhere.
PKG_CFLAGS = $(shell pkg-config --cflags $(PKGS) 2>/dev/null)
PKG_LIBS   = $(shell pkg-config --libs $(PKGS) 2>/dev/null)

FS_SRC    := $(wildcard fs/*.c)
FS_OBJ    := $(FS_SRC:%.c=$(BUILD)/%.o)
CLI_SRC   := $(wildcard daemon/cli*.c daemon/progress.c daemon/prompt.c) daemon/proto.c \
             daemon/rundir.c \
             daemon/conf.c daemon/imgvault.c
CLI_OBJ   := $(CLI_SRC:%.c=$(BUILD)/%.o)
DAEMON_OBJ := $(addprefix $(BUILD)/daemon/,imgvaultd.o control.o control_share.o control_fetch.o logline.o proto.o cli.o prompt.o conf.o rundir.o)
GW_SRC    := $(wildcard share-gateway/*.c)
GW_OBJ    := $(GW_SRC:%.c=$(BUILD)/%.o) $(BUILD)/daemon/proto.o $(BUILD)/daemon/logline.o $(BUILD)/daemon/conf.o
UNIT_SRC  := $(wildcard tests/unit/test_*.c)
UNIT_BIN  := $(UNIT_SRC:tests/unit/%.c=$(BUILD)/tests/%)
LIB       := $(BUILD)/libimgvault.a
PROGS     := $(BUILD)/imgvault $(BUILD)/imgvaultd $(BUILD)/imgvault-gateway
GATEWAY_PROG ?= $(BUILD)/imgvault-gateway
BENCH_BIN := $(BUILD)/bench/blob_throughput $(BUILD)/bench/catalog_auth

PYTEST    := /usr/bin/python3 -m pytest

.PHONY: all check unit integration run bench fuzz install clean deps deb
all: $(PROGS)

V ?= 0
Q := $(if $(filter 1,$(V)),,@)

$(BUILD)/share-gateway/%.o: CFLAGS += -Idaemon

$(BUILD)/%.o: %.c
	@mkdir -p $(dir $@)
	@$(if $(Q),echo "  CC      $<")
	$(Q)$(CC) $(CPPFLAGS) $(CFLAGS) $(PKG_CFLAGS) -c -o $@ $<

$(LIB): $(FS_OBJ)
	@rm -f $@
	$(Q)ar rcs $@ $^

$(BUILD)/imgvault: $(CLI_OBJ) $(LIB)
	@$(if $(Q),echo "  LD      $@")
	$(Q)$(CC) $(LDFLAGS) -o $@ $^ $(PKG_LIBS)

$(BUILD)/imgvaultd: $(DAEMON_OBJ) $(LIB)
	@$(if $(Q),echo "  LD      $@")
	$(Q)$(CC) $(LDFLAGS) -o $@ $^ $(PKG_LIBS)

$(BUILD)/imgvault-gateway: $(GW_OBJ) $(LIB)
	@$(if $(Q),echo "  LD      $@")
	$(Q)$(CC) $(LDFLAGS) -o $@ $^ $(PKG_LIBS)

$(BUILD)/tests/%: tests/unit/%.c tests/unit/tap.h $(LIB)
	@mkdir -p $(dir $@)
	@$(if $(Q),echo "  CC      $<")
	$(Q)$(CC) $(CPPFLAGS) $(CFLAGS) $(PKG_CFLAGS) -Itests/unit -o $@ $< $(LIB) $(LDFLAGS) $(PKG_LIBS)

# The gateway's socket-free pieces are not in the library: linked in.
GW_UNIT_OBJ := $(BUILD)/share-gateway/gw_http.o $(BUILD)/share-gateway/gw_limits.o
$(BUILD)/tests/test_gw_http: tests/unit/test_gw_http.c tests/unit/tap.h $(GW_UNIT_OBJ) $(LIB)
	@mkdir -p $(dir $@)
	@$(if $(Q),echo "  CC      $<")
	$(Q)$(CC) $(CPPFLAGS) $(CFLAGS) $(PKG_CFLAGS) -Itests/unit -Ishare-gateway -o $@ $< $(GW_UNIT_OBJ) \
		$(LIB) $(LDFLAGS) $(PKG_LIBS)

$(BUILD)/bench/%: bench/%.c $(LIB)
	@mkdir -p $(dir $@)
	@$(if $(Q),echo "  CC      $<")
	$(Q)$(CC) $(CFLAGS) $(PKG_CFLAGS) -o $@ $< $(LIB) $(LDFLAGS) $(PKG_LIBS)

# libFuzzer targets: clang, ASan + UBSan, the module under test compiled in.
FUZZ_CC    ?= clang-14
FUZZ_FLAGS := -g -O1 -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=all -Ifs \
              -DIMGVAULT_VERSION='"$(VERSION)"'
FUZZ_TIME  ?= 300
FUZZ_BIN   := $(BUILD)/fuzz/fuzz_strip $(BUILD)/fuzz/fuzz_admit $(BUILD)/fuzz/fuzz_proto \
              $(BUILD)/fuzz/fuzz_token

$(BUILD)/fuzz/fuzz_strip: tests/fuzz/fuzz_strip.c fs/strip.c fs/iverr.c fs/bytes.c fs/strip.h
	@mkdir -p $(dir $@)
	$(Q)$(FUZZ_CC) $(FUZZ_FLAGS) -o $@ $(filter %.c,$^)

$(BUILD)/fuzz/fuzz_proto: tests/fuzz/fuzz_proto.c daemon/proto.c fs/bytes.c daemon/proto.h
	@mkdir -p $(dir $@)
	$(Q)$(FUZZ_CC) $(FUZZ_FLAGS) -Idaemon -o $@ $(filter %.c,$^)

$(BUILD)/fuzz/fuzz_admit: tests/fuzz/fuzz_admit.c fs/image.c fs/strip.c fs/iverr.c fs/bytes.c \
		fs/image.h
	@mkdir -p $(dir $@)
	$(Q)$(FUZZ_CC) $(FUZZ_FLAGS) $(shell pkg-config --cflags vips libmagic) -o $@ \
		$(filter %.c,$^) $(shell pkg-config --libs vips libmagic)

$(BUILD)/fuzz/fuzz_token: tests/fuzz/fuzz_token.c fs/token.c fs/cidr.c fs/iverr.c \
		share-gateway/gw_http.c fs/token.h fs/cidr.h share-gateway/gw_http.h
	@mkdir -p $(dir $@)
	$(Q)$(FUZZ_CC) $(FUZZ_FLAGS) -Ishare-gateway $(shell pkg-config --cflags libsodium) -o $@ \
		$(filter %.c,$^) $(shell pkg-config --libs libsodium)

fuzz: deps
	@$(MAKE) --no-print-directory $(FUZZ_BIN)
	@bash tests/fuzz/run.sh $(abspath $(BUILD)) $(FUZZ_TIME)

deps:
	@bash packaging/deps.sh

check: deps
	@$(MAKE) --no-print-directory all $(UNIT_BIN)
	@$(MAKE) --no-print-directory unit integration

unit: $(UNIT_BIN)
	prove $(UNIT_BIN)

integration: $(PROGS)
	IMGVAULT_BUILD=$(abspath $(BUILD)) $(PYTEST) -q -p no:cacheprovider tests/integration $(PYTEST_ARGS)

run: deps
	@$(MAKE) --no-print-directory all
	@bash packaging/demo.sh $(abspath $(BUILD))

bench: deps
	@$(MAKE) --no-print-directory all $(BENCH_BIN)
	@bash bench/run.sh $(abspath $(BUILD))

# Units name /usr/sbin, /usr/bin and /usr/libexec; other prefixes are substituted.
UNIT_SED  := -e 's|/usr/sbin/imgvault|$(SBINDIR)/imgvault|g' \
             -e 's|/usr/bin/imgvault|$(BINDIR)/imgvault|g' \
             -e 's|/usr/libexec/imgvault/|$(LIBEXECDIR)/imgvault/|g' \
             -e 's|/etc/imgvault/|$(SYSCONFDIR)/imgvault/|g'
SYSTEM_UNITS := packaging/systemd/imgvaultd.service packaging/systemd/imgvault-gateway.service
USER_UNITS   := packaging/systemd/imgvault@.service

install: all
	install -d $(DESTDIR)$(BINDIR) $(DESTDIR)$(SBINDIR) $(DESTDIR)$(MANDIR)/man1 \
		$(DESTDIR)$(MANDIR)/man5 $(DESTDIR)$(MANDIR)/man8 $(DESTDIR)$(SYSTEMDUNITDIR) $(DESTDIR)$(SYSTEMDUSERUNITDIR) \
		$(DESTDIR)$(LIBEXECDIR)/imgvault $(DESTDIR)$(BASHCOMPDIR) $(DESTDIR)$(SYSCONFDIR)/imgvault
	install -m 0755 $(BUILD)/imgvault $(DESTDIR)$(BINDIR)/imgvault
	install -m 0755 $(BUILD)/imgvaultd $(DESTDIR)$(SBINDIR)/imgvaultd
	@if [ -f $(GATEWAY_PROG) ]; then \
		echo "install -m 0755 $(GATEWAY_PROG) $(DESTDIR)$(SBINDIR)/imgvault-gateway"; \
		install -m 0755 $(GATEWAY_PROG) $(DESTDIR)$(SBINDIR)/imgvault-gateway; \
	else \
		echo "install: $(GATEWAY_PROG) not built yet; imgvault-gateway not installed"; \
	fi
	install -m 0644 $(wildcard packaging/man/*.1) $(DESTDIR)$(MANDIR)/man1/
	install -m 0644 $(wildcard packaging/man/*.5) $(DESTDIR)$(MANDIR)/man5/
	install -m 0644 $(wildcard packaging/man/*.8) $(DESTDIR)$(MANDIR)/man8/
	for u in $(SYSTEM_UNITS); do \
		sed $(UNIT_SED) $$u >$(DESTDIR)$(SYSTEMDUNITDIR)/$${u##*/} && \
		chmod 0644 $(DESTDIR)$(SYSTEMDUNITDIR)/$${u##*/} || exit 1; \
	done
	for u in $(USER_UNITS); do \
		sed $(UNIT_SED) $$u >$(DESTDIR)$(SYSTEMDUSERUNITDIR)/$${u##*/} && \
		chmod 0644 $(DESTDIR)$(SYSTEMDUSERUNITDIR)/$${u##*/} || exit 1; \
	done
	sed $(UNIT_SED) packaging/systemd/imgvault-user-mount \
		>$(DESTDIR)$(LIBEXECDIR)/imgvault/imgvault-user-mount
	chmod 0755 $(DESTDIR)$(LIBEXECDIR)/imgvault/imgvault-user-mount
	install -m 0644 packaging/bash-completion/imgvault $(DESTDIR)$(BASHCOMPDIR)/imgvault
	install -m 0644 packaging/imgvault.conf $(DESTDIR)$(SYSCONFDIR)/imgvault/imgvault.conf

# The Debian package, built in a copy of the tree under $(BUILD)/deb-src (so no
# debian/ ever appears at the top of the repository), with packaging/debian
# copied in; this make's variables (BUILD=, SANITIZE=) are kept from the
# package's own build.  Needs the build dependencies (packaging/deps.sh installs them).
DEB_SRC   := $(BUILD)/deb-src/imgvault-$(VERSION)
deb: deps
	rm -rf $(BUILD)/deb-src $(BUILD)/deb
	mkdir -p $(DEB_SRC) $(BUILD)/deb
	if git rev-parse --is-inside-work-tree >/dev/null 2>&1; then \
		git ls-files -z --cached --others --exclude-standard | \
			tar --null --ignore-failed-read -T - -cf - | tar -C $(DEB_SRC) -xf -; \
	else \
		tar --exclude=./build --exclude=./build-san --exclude=./.git -cf - . | \
			tar -C $(DEB_SRC) -xf -; \
	fi
	cp -a packaging/debian $(DEB_SRC)/debian
	cd $(DEB_SRC) && env -u MAKEFLAGS -u MFLAGS -u MAKELEVEL -u BUILD -u SANITIZE -u OPT \
		-u PREFIX -u DESTDIR -u GATEWAY_PROG \
		dpkg-buildpackage -us -uc -b -j$$(nproc) >../build.log 2>&1 || \
		{ tail -40 ../build.log; echo "deb: dpkg-buildpackage failed; see $(BUILD)/deb-src/build.log"; exit 1; }
	mv $(BUILD)/deb-src/*.deb $(BUILD)/deb/
	lintian --fail-on error --info $(BUILD)/deb/*.deb
	@ls -l $(BUILD)/deb/*.deb

clean:
	rm -rf build build-san

-include $(shell find $(BUILD) -name '*.d' 2>/dev/null)
