build-exp/tests/test_catalog_auth: tests/unit/test_catalog_auth.c \
 fs/catalog.h fs/blobstore.h fs/iverr.h fs/keys.h fs/keys.h \
 tests/unit/tap.h tests/unit/testutil.h
fs/catalog.h:
fs/blobstore.h:
fs/iverr.h:
fs/keys.h:
fs/keys.h:
tests/unit/tap.h:
tests/unit/testutil.h:
