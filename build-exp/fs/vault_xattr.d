build-exp/fs/vault_xattr.o: fs/vault_xattr.c fs/bytes.h fs/vault_i.h \
 fs/blob.h fs/blobstore.h fs/iverr.h fs/image.h fs/vault.h fs/catalog.h \
 fs/keys.h
fs/bytes.h:
fs/vault_i.h:
fs/blob.h:
fs/blobstore.h:
fs/iverr.h:
fs/image.h:
fs/vault.h:
fs/catalog.h:
fs/keys.h:
