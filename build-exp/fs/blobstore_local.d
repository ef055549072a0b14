build-exp/fs/blobstore_local.o: fs/blobstore_local.c fs/blobstore.h \
 fs/iverr.h fs/bytes.h
fs/blobstore.h:
fs/iverr.h:
fs/bytes.h:
