build-exp/daemon/imgvaultd.o: daemon/imgvaultd.c \
 /usr/include/fuse3/fuse_lowlevel.h /usr/include/fuse3/fuse_common.h \
 /usr/include/fuse3/libfuse_config.h /usr/include/fuse3/fuse_opt.h \
 /usr/include/fuse3/fuse_log.h daemon/cli.h fs/keys.h fs/iverr.h \
 fs/thumbnailer.h fs/vault.h fs/blobstore.h fs/catalog.h fs/keys.h \
 fs/image.h fs/vault.h daemon/conf.h daemon/control.h fs/iverr.h \
 daemon/logline.h daemon/prompt.h daemon/rundir.h fs/share.h fs/cidr.h \
 fs/token.h fs/tree.h
/usr/include/fuse3/fuse_lowlevel.h:
/usr/include/fuse3/fuse_common.h:
/usr/include/fuse3/libfuse_config.h:
/usr/include/fuse3/fuse_opt.h:
/usr/include/fuse3/fuse_log.h:
daemon/cli.h:
fs/keys.h:
fs/iverr.h:
fs/thumbnailer.h:
fs/vault.h:
fs/blobstore.h:
fs/catalog.h:
fs/keys.h:
fs/image.h:
fs/vault.h:
daemon/conf.h:
daemon/control.h:
fs/iverr.h:
daemon/logline.h:
daemon/prompt.h:
daemon/rundir.h:
fs/share.h:
fs/cidr.h:
fs/token.h:
fs/tree.h:
