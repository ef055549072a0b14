build-dev/share-gateway/gw_daemon.o: share-gateway/gw_daemon.c \
 share-gateway/gw_daemon.h fs/token.h fs/iverr.h daemon/proto.h
share-gateway/gw_daemon.h:
fs/token.h:
fs/iverr.h:
daemon/proto.h:
