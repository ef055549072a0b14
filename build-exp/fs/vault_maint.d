build-exp/fs/vault_maint.o: fs/vault_maint.c fs/audit.h fs/catalog.h \
 fs/blobstore.h fs/iverr.h fs/keys.h fs/bytes.h fs/vault_i.h fs/blob.h \
 fs/image.h fs/vault.h
fs/audit.h:
fs/catalog.h:
fs/blobstore.h:
fs/iverr.h:
fs/keys.h:
fs/bytes.h:
fs/vault_i.h:
fs/blob.h:
fs/image.h:
fs/vault.h:
