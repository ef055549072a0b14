build-dev/daemon/cli_share.o: daemon/cli_share.c daemon/cli.h fs/keys.h \
 fs/iverr.h fs/thumbnailer.h fs/vault.h fs/blobstore.h fs/catalog.h \
 fs/keys.h fs/image.h fs/vault.h daemon/remote.h fs/iverr.h \
 daemon/proto.h fs/share.h fs/cidr.h fs/token.h fs/token.h
daemon/cli.h:
fs/keys.h:
fs/iverr.h:
fs/thumbnailer.h:
fs/vault.h:
fs/blobstore.h:
fs/catalog.h:
fs/keys.h:
fs/image.h:
fs/vault.h:
daemon/remote.h:
fs/iverr.h:
daemon/proto.h:
fs/share.h:
fs/cidr.h:
fs/token.h:
fs/token.h:
