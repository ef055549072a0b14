build-exp/daemon/conf.o: daemon/conf.c fs/cidr.h daemon/conf.h fs/share.h \
 fs/catalog.h fs/blobstore.h fs/iverr.h fs/keys.h fs/cidr.h fs/token.h \
 fs/vault.h fs/image.h
fs/cidr.h:
daemon/conf.h:
fs/share.h:
fs/catalog.h:
fs/blobstore.h:
fs/iverr.h:
fs/keys.h:
fs/cidr.h:
fs/token.h:
fs/vault.h:
fs/image.h:
