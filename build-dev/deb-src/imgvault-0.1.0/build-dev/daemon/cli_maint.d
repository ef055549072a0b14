build-dev/daemon/cli_maint.o: daemon/cli_maint.c fs/audit.h fs/catalog.h \
 fs/blobstore.h fs/iverr.h fs/keys.h fs/bytes.h daemon/cli.h fs/keys.h \
 fs/thumbnailer.h fs/vault.h fs/image.h fs/vault.h daemon/progress.h \
 daemon/prompt.h fs/iverr.h
fs/audit.h:
fs/catalog.h:
fs/blobstore.h:
fs/iverr.h:
fs/keys.h:
fs/bytes.h:
daemon/cli.h:
fs/keys.h:
fs/thumbnailer.h:
fs/vault.h:
fs/image.h:
fs/vault.h:
daemon/progress.h:
daemon/prompt.h:
fs/iverr.h:
