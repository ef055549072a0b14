build-exp/fs/vault_share.o: fs/vault_share.c fs/share.h fs/catalog.h \
 fs/blobstore.h fs/iverr.h fs/keys.h fs/cidr.h fs/token.h fs/vault.h \
 fs/image.h fs/audit.h fs/strip.h fs/bytes.h fs/vault_i.h fs/blob.h
fs/share.h:
fs/catalog.h:
fs/blobstore.h:
fs/iverr.h:
fs/keys.h:
fs/cidr.h:
fs/token.h:
fs/vault.h:
fs/image.h:
fs/audit.h:
fs/strip.h:
fs/bytes.h:
fs/vault_i.h:
fs/blob.h:
