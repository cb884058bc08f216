# Build and install uvfsd with the vhost-user description that lets libvirt find it.
#
#   make                  build ./uvfsd (CGO_ENABLED=0: see README, "Running uvfsd yourself")
#   sudo make install     install $(BINDIR)/uvfsd and $(VHOSTUSERDIR)/$(VHOSTUSER_JSON)
#   sudo make uninstall   remove both
#
# libvirt and other management tools look for QEMU's vhost-user backend descriptions
# (docs/interop/vhost-user.json) in /usr/share/qemu/vhost-user and /etc/qemu/vhost-user, never
# under /usr/local, and take the first of "type": "fs" by file name: install as
# VHOSTUSER_JSON=40-uvfsd.json to come before another daemon's 50-*.json.

PREFIX ?= /usr/local
BINDIR ?= $(PREFIX)/bin
VHOSTUSERDIR ?= /usr/share/qemu/vhost-user
VHOSTUSER_JSON ?= 50-uvfsd.json
GO ?= go

all: uvfsd

# Always handed to go build, which knows what changed.
uvfsd:
	CGO_ENABLED=0 $(GO) build -trimpath -o $@ ./cmd/uvfsd

install: uvfsd
	install -D -m 0755 uvfsd $(DESTDIR)$(BINDIR)/uvfsd
	install -d $(DESTDIR)$(VHOSTUSERDIR)
	sed 's|"binary": ".*"|"binary": "$(BINDIR)/uvfsd"|' packaging/50-uvfsd.json > $(DESTDIR)$(VHOSTUSERDIR)/$(VHOSTUSER_JSON)
	chmod 0644 $(DESTDIR)$(VHOSTUSERDIR)/$(VHOSTUSER_JSON)

uninstall:
	rm -f $(DESTDIR)$(BINDIR)/uvfsd $(DESTDIR)$(VHOSTUSERDIR)/$(VHOSTUSER_JSON)

clean:
	rm -f uvfsd

.PHONY: all uvfsd install uninstall clean
