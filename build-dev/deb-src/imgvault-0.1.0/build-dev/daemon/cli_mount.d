build-dev/daemon/cli_mount.o: daemon/cli_mount.c daemon/cli.h fs/keys.h \
 fs/iverr.h fs/thumbnailer.h fs/vault.h fs/blobstore.h fs/catalog.h \
 fs/keys.h fs/image.h fs/vault.h
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
