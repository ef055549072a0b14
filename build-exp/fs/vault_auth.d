build-exp/fs/vault_auth.o: fs/vault_auth.c fs/audit.h fs/catalog.h \
 fs/blobstore.h fs/iverr.h fs/keys.h fs/vault_i.h fs/blob.h fs/image.h \
 fs/vault.h
fs/audit.h:
fs/catalog.h:
fs/blobstore.h:
fs/iverr.h:
fs/keys.h:
fs/vault_i.h:
fs/blob.h:
fs/image.h:
fs/vault.h:
