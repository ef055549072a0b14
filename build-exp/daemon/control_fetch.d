build-exp/daemon/control_fetch.o: daemon/control_fetch.c \
 daemon/control_i.h daemon/control.h fs/iverr.h fs/vault.h fs/blobstore.h \
 fs/iverr.h fs/catalog.h fs/keys.h fs/image.h daemon/proto.h fs/share.h \
 fs/cidr.h fs/token.h fs/vault.h
daemon/control_i.h:
daemon/control.h:
fs/iverr.h:
fs/vault.h:
fs/blobstore.h:
fs/iverr.h:
fs/catalog.h:
fs/keys.h:
fs/image.h:
daemon/proto.h:
fs/share.h:
fs/cidr.h:
fs/token.h:
fs/vault.h:
