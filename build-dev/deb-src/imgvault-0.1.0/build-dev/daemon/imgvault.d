build-dev/daemon/imgvault.o: daemon/imgvault.c daemon/cli.h fs/keys.h \
 fs/iverr.h fs/thumbnailer.h fs/vault.h fs/blobstore.h fs/catalog.h \
 fs/keys.h fs/image.h fs/vault.h daemon/conf.h
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
daemon/conf.h:
