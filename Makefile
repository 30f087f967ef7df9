# Builds vigil in release mode and installs it:
#   make install [PREFIX=/usr/local] [DESTDIR=]
# DIR/bin: vigild, vigil; DIR/lib: libsam.so.4, libcmap.so.4, libdsdev.so.1 with their links;
# DIR/include: vigil's headers (corosync/, rgm/); DIR/lib/pkgconfig: a .pc file per library.

PREFIX ?= /usr/local
DESTDIR ?=
CARGO ?= cargo
BINDIR = $(PREFIX)/bin
LIBDIR = $(PREFIX)/lib
INCLUDEDIR = $(PREFIX)/include
PCDIR = $(LIBDIR)/pkgconfig
RELEASE = $(or $(CARGO_TARGET_DIR),target)/release
VERSION = $(shell sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -1)

# name:soname major.minor.patch (the ABI level of corosync 3's libraries; libdsdev's own).
LIBS = sam:4.4.0 cmap:4.1.0 dsdev:1.0.0
HEADERDIRS = corosync rgm
BINS = vigild vigil

.PHONY: all build install uninstall
all: build

build:
	$(CARGO) build --release --workspace

install: build
	install -d $(DESTDIR)$(BINDIR) $(DESTDIR)$(LIBDIR) $(DESTDIR)$(PCDIR)
	for b in $(BINS); do install -m 755 $(RELEASE)/$$b $(DESTDIR)$(BINDIR)/$$b; done
	for l in $(LIBS); do \
		n=$${l%%:*}; v=$${l#*:}; major=$${v%%.*}; \
		install -m 755 $(RELEASE)/lib$$n.so $(DESTDIR)$(LIBDIR)/lib$$n.so.$$v || exit 1; \
		ln -sfn lib$$n.so.$$v $(DESTDIR)$(LIBDIR)/lib$$n.so.$$major; \
		ln -sfn lib$$n.so.$$major $(DESTDIR)$(LIBDIR)/lib$$n.so; \
		sed -e 's|@PREFIX@|$(PREFIX)|' -e 's|@LIBDIR@|$(LIBDIR)|' -e 's|@VERSION@|$(VERSION)|' \
			pkgconfig/lib$$n.pc.in > $(DESTDIR)$(PCDIR)/lib$$n.pc || exit 1; \
	done
	for d in $(HEADERDIRS); do \
		install -d $(DESTDIR)$(INCLUDEDIR)/$$d && install -m 644 include/$$d/*.h $(DESTDIR)$(INCLUDEDIR)/$$d/ || exit 1; \
	done

uninstall:
	for b in $(BINS); do rm -f $(DESTDIR)$(BINDIR)/$$b; done
	for l in $(LIBS); do n=$${l%%:*}; rm -f $(DESTDIR)$(LIBDIR)/lib$$n.so* $(DESTDIR)$(PCDIR)/lib$$n.pc; done
	for d in $(HEADERDIRS); do for h in include/$$d/*.h; do rm -f $(DESTDIR)$(INCLUDEDIR)/$$d/$$(basename $$h); done; done
