build-exp/fs/thumbnailer.o: fs/thumbnailer.c fs/thumbnailer.h fs/vault.h \
 fs/blobstore.h fs/iverr.h fs/catalog.h fs/keys.h fs/image.h \
 fs/membudget.h
fs/thumbnailer.h:
fs/vault.h:
fs/blobstore.h:
fs/iverr.h:
fs/catalog.h:
fs/keys.h:
fs/image.h:
fs/membudget.h:
