build-exp/fs/catalog.o: fs/catalog.c fs/catalog.h fs/blobstore.h \
 fs/iverr.h fs/keys.h fs/catalog_i.h
fs/catalog.h:
fs/blobstore.h:
fs/iverr.h:
fs/keys.h:
fs/catalog_i.h:
