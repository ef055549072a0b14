build-exp/daemon/control.o: daemon/control.c daemon/control.h fs/iverr.h \
 fs/vault.h fs/blobstore.h fs/iverr.h fs/catalog.h fs/keys.h fs/image.h \
 fs/image.h daemon/control_i.h daemon/proto.h fs/share.h fs/cidr.h \
 fs/token.h fs/vault.h
daemon/control.h:
fs/iverr.h:
fs/vault.h:
fs/blobstore.h:
fs/iverr.h:
fs/catalog.h:
fs/keys.h:
fs/image.h:
fs/image.h:
daemon/control_i.h:
daemon/proto.h:
fs/share.h:
fs/cidr.h:
fs/token.h:
fs/vault.h:
