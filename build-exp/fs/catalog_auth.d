build-exp/fs/catalog_auth.o: fs/catalog_auth.c fs/bytes.h fs/catalog_i.h \
 fs/catalog.h fs/blobstore.h fs/iverr.h fs/keys.h
fs/bytes.h:
fs/catalog_i.h:
fs/catalog.h:
fs/blobstore.h:
fs/iverr.h:
fs/keys.h:
