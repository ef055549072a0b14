build-dev/bench/catalog_auth: bench/catalog_auth.c fs/catalog.h \
 fs/blobstore.h fs/iverr.h fs/keys.h fs/keys.h
fs/catalog.h:
fs/blobstore.h:
fs/iverr.h:
fs/keys.h:
fs/keys.h:
