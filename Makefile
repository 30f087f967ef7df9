# Builds vigil in release mode and installs it:
#   make install [PREFIX=/usr/local] [DESTDIR=]
# DIR/bin: vigild, vigil, pmfadm; DIR/lib: libsam.so.4, libcmap.so.4, libcorosync_common.so.4, libcfg.so.1,
# libdsdev.so.1 with their links; DIR/include: vigil's headers (corosync/sam.h, corosync/cmap.h, cfg.h, psm.h, rgm/libdsdev.h);
# DIR/lib/pkgconfig: a .pc per library, whose Libs carry -Wl,-rpath,DIR/lib: a program built with them
# loads vigil's libraries from DIR/lib even where corosync's own libsam.so.4 and libcmap.so.4 are
# installed in the system's library directories (which the loader would otherwise find first).

PREFIX ?= /usr/local
DESTDIR ?=
CARGO ?= cargo
BINDIR = $(PREFIX)/bin
LIBDIR = $(PREFIX)/lib
INCLUDEDIR = $(PREFIX)/include
PCDIR = $(LIBDIR)/pkgconfig
# Where cargo puts the release build (CARGO_TARGET_DIR is honoured).
RELEASE ?= $(or $(CARGO_TARGET_DIR),target)/release
VERSION = $(shell sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -1)

# name:major.minor.patch (sam, cmap, corosync_common: the ABI level of corosync 3's libraries; cfg, dsdev:
# their own).
LIBS = sam:4.4.0 cmap:4.1.0 corosync_common:4.0.0 cfg:1.0.0 dsdev:1.0.0
BINS = vigild vigil pmfadm

.PHONY: all build install uninstall
all: build

build:
	$(CARGO) build --release --workspace

install: build
	install -d $(DESTDIR)$(BINDIR) $(DESTDIR)$(LIBDIR) $(DESTDIR)$(INCLUDEDIR) $(DESTDIR)$(PCDIR)
	for b in $(BINS); do install -m 755 $(RELEASE)/$$b $(DESTDIR)$(BINDIR)/$$b; done
	for l in $(LIBS); do \
		n=$${l%%:*}; v=$${l#*:}; major=$${v%%.*}; \
		install -m 755 $(RELEASE)/lib$$n.so $(DESTDIR)$(LIBDIR)/lib$$n.so.$$v || exit 1; \
		ln -sfn lib$$n.so.$$v $(DESTDIR)$(LIBDIR)/lib$$n.so.$$major; \
		ln -sfn lib$$n.so.$$major $(DESTDIR)$(LIBDIR)/lib$$n.so; \
		sed -e 's|@PREFIX@|$(PREFIX)|' -e 's|@LIBDIR@|$(LIBDIR)|' -e 's|@VERSION@|$(VERSION)|' \
			pkgconfig/lib$$n.pc.in > $(DESTDIR)$(PCDIR)/lib$$n.pc || exit 1; \
	done
	cd include && for h in $$(find . -name '*.h'); do \
		install -D -m 644 $$h $(DESTDIR)$(INCLUDEDIR)/$$h || exit 1; \
	done

uninstall:
	for b in $(BINS); do rm -f $(DESTDIR)$(BINDIR)/$$b; done
	for l in $(LIBS); do n=$${l%%:*}; rm -f $(DESTDIR)$(LIBDIR)/lib$$n.so* $(DESTDIR)$(PCDIR)/lib$$n.pc; done
	cd include && for h in $$(find . -name '*.h'); do rm -f $(DESTDIR)$(INCLUDEDIR)/$$h; done
