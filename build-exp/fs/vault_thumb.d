build-exp/fs/vault_thumb.o: fs/vault_thumb.c fs/audit.h fs/catalog.h \
 fs/blobstore.h fs/iverr.h fs/keys.h fs/bytes.h fs/membudget.h \
 fs/vault_i.h fs/blob.h fs/image.h fs/vault.h
fs/audit.h:
fs/catalog.h:
fs/blobstore.h:
fs/iverr.h:
fs/keys.h:
fs/bytes.h:
fs/membudget.h:
fs/vault_i.h:
fs/blob.h:
fs/image.h:
fs/vault.h:
