build-dev/daemon/cli_content.o: daemon/cli_content.c fs/bytes.h \
 daemon/cli.h fs/keys.h fs/iverr.h fs/thumbnailer.h fs/vault.h \
 fs/blobstore.h fs/catalog.h fs/keys.h fs/image.h fs/vault.h \
 daemon/progress.h fs/share.h fs/cidr.h fs/token.h fs/strip.h
fs/bytes.h:
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
daemon/progress.h:
fs/share.h:
fs/cidr.h:
fs/token.h:
fs/strip.h:
