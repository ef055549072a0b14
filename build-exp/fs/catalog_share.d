build-exp/fs/catalog_share.o: fs/catalog_share.c fs/catalog.h \
 fs/blobstore.h fs/iverr.h fs/keys.h fs/catalog_i.h
fs/catalog.h:
fs/blobstore.h:
fs/iverr.h:
fs/keys.h:
fs/catalog_i.h:
