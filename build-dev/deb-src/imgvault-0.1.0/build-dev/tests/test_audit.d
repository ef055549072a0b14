build-dev/tests/test_audit: tests/unit/test_audit.c fs/audit.h \
 fs/catalog.h fs/blobstore.h fs/iverr.h fs/keys.h fs/catalog.h fs/keys.h \
 tests/unit/tap.h tests/unit/testutil.h
fs/audit.h:
fs/catalog.h:
fs/blobstore.h:
fs/iverr.h:
fs/keys.h:
fs/catalog.h:
fs/keys.h:
tests/unit/tap.h:
tests/unit/testutil.h:
