build-exp/fs/vault.o: fs/vault.c fs/vault.h fs/blobstore.h fs/iverr.h \
 fs/catalog.h fs/keys.h fs/image.h fs/audit.h fs/blob.h fs/bytes.h \
 fs/vault_i.h fs/share.h fs/cidr.h fs/token.h
fs/vault.h:
fs/blobstore.h:
fs/iverr.h:
fs/catalog.h:
fs/keys.h:
fs/image.h:
fs/audit.h:
fs/blob.h:
fs/bytes.h:
fs/vault_i.h:
fs/share.h:
fs/cidr.h:
fs/token.h:
