build-dev/daemon/cli_remote.o: daemon/cli_remote.c fs/bytes.h \
 daemon/cli.h fs/keys.h fs/iverr.h fs/thumbnailer.h fs/vault.h \
 fs/blobstore.h fs/catalog.h fs/keys.h fs/image.h fs/vault.h \
 daemon/prompt.h fs/iverr.h daemon/remote.h daemon/proto.h \
 daemon/rundir.h
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
daemon/prompt.h:
fs/iverr.h:
daemon/remote.h:
daemon/proto.h:
daemon/rundir.h:
