build-exp/daemon/cli.o: daemon/cli.c daemon/cli.h fs/keys.h fs/iverr.h \
 fs/thumbnailer.h fs/vault.h fs/blobstore.h fs/catalog.h fs/keys.h \
 fs/image.h fs/vault.h daemon/prompt.h fs/iverr.h
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
daemon/prompt.h:
fs/iverr.h:
