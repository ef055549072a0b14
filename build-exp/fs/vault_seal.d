build-exp/fs/vault_seal.o: fs/vault_seal.c fs/bytes.h fs/vault_i.h \
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
