build-exp/daemon/control_share.o: daemon/control_share.c \
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
