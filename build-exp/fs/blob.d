build-exp/fs/blob.o: fs/blob.c fs/blob.h fs/blobstore.h fs/iverr.h \
 fs/bytes.h
fs/blob.h:
fs/blobstore.h:
fs/iverr.h:
fs/bytes.h:
