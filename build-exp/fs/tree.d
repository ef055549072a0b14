build-exp/fs/tree.o: fs/tree.c fs/tree.h \
 /usr/include/fuse3/fuse_lowlevel.h /usr/include/fuse3/fuse_common.h \
 /usr/include/fuse3/libfuse_config.h /usr/include/fuse3/fuse_opt.h \
 /usr/include/fuse3/fuse_log.h fs/vault.h fs/blobstore.h fs/iverr.h \
 fs/catalog.h fs/keys.h fs/image.h fs/membudget.h fs/thumbnailer.h
fs/tree.h:
/usr/include/fuse3/fuse_lowlevel.h:
/usr/include/fuse3/fuse_common.h:
/usr/include/fuse3/libfuse_config.h:
/usr/include/fuse3/fuse_opt.h:
/usr/include/fuse3/fuse_log.h:
fs/vault.h:
fs/blobstore.h:
fs/iverr.h:
fs/catalog.h:
fs/keys.h:
fs/image.h:
fs/membudget.h:
fs/thumbnailer.h:
