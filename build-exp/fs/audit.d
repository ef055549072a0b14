build-exp/fs/audit.o: fs/audit.c fs/audit.h fs/catalog.h fs/blobstore.h \
 fs/iverr.h fs/keys.h fs/bytes.h
fs/audit.h:
fs/catalog.h:
fs/blobstore.h:
fs/iverr.h:
fs/keys.h:
fs/bytes.h:
